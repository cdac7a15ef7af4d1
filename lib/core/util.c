/* util.c: files, time, CPUs, dtypes. */
#include "qtool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

size_t qt_dtype_size(int dtype) {
    switch (dtype) {
    case QT_FLOAT: case QT_INT32: case QT_UINT32: return 4;
    case QT_UINT8: case QT_INT8: case QT_BOOL: return 1;
    case QT_UINT16: case QT_INT16: case QT_FLOAT16: return 2;
    case QT_INT64: case QT_DOUBLE: case QT_UINT64: return 8;
    default: return 0;
    }
}

const char *qt_dtype_name(int dtype) {
    static const char *names[] = {"undefined", "float32", "uint8",  "int8",   "uint16",
                                  "int16",     "int32",   "int64",  "string", "bool",
                                  "float16",   "float64", "uint32", "uint64"};
    if (dtype >= 0 && dtype < (int)(sizeof names / sizeof names[0]))
        return names[dtype];
    return "unknown";
}

int64_t qt_numel(int ndim, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0)
            return -1;
        if (dims[i] && n > INT64_MAX / dims[i])
            return -1;
        n *= dims[i];
    }
    return n;
}

const char *qt_dims_str(int ndim, const int64_t *dims, char *buf, size_t len) {
    size_t o = 0;
    if (len == 0)
        return buf;
    buf[0] = 0;
    o += snprintf(buf + o, len - o, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += snprintf(buf + o, len - o, i ? ",%lld" : "%lld", (long long)dims[i]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
    return buf;
}

int qt_ncpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

double qt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int qt_read_file(const char *path, size_t max_bytes, void **buf, size_t *len, struct qt_err *err) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *p = NULL;
    size_t n = 0, cap = 0;
    *buf = NULL;
    *len = 0;
    if (!f)
        return qt_errf(err, QT_EIO, "cannot open '%s': %s", path, strerror(errno));
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return qt_errf(err, QT_EIO, "cannot read '%s': is a directory", path);
    }
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode))
        cap = (size_t)st.st_size + 1;
    if (cap < 4096)
        cap = 4096;
    for (;;) {
        if (n + 1 >= cap || !p) {
            size_t ncap = p ? cap * 2 : cap;
            char *q = realloc(p, ncap);
            if (!q) {
                free(p);
                fclose(f);
                return qt_errf(err, QT_ENOMEM, "out of memory reading '%s'", path);
            }
            p = q;
            cap = ncap;
        }
        size_t r = fread(p + n, 1, cap - n - 1, f);
        n += r;
        if (max_bytes && n > max_bytes) {
            free(p);
            fclose(f);
            return qt_errf(err, QT_EDATA, "'%s' is larger than %zu bytes", path, max_bytes);
        }
        if (r == 0) {
            if (ferror(f)) {
                free(p);
                fclose(f);
                return qt_errf(err, QT_EIO, "cannot read '%s': %s", path, strerror(errno));
            }
            break;
        }
    }
    fclose(f);
    p[n] = 0;
    *buf = p;
    *len = n;
    return 0;
}

int qt_write_file_atomic(const char *path, const void *buf, size_t len, struct qt_err *err) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    const char *p = buf;
    int fd;
    if (!tmp)
        return qt_errf(err, QT_ENOMEM, "out of memory writing '%s'", path);
    snprintf(tmp, pl + 32, "%s.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return qt_errf(err, QT_EIO, "cannot write '%s': %s", path, strerror(e));
    }
    {
        mode_t um = umask(0);
        umask(um);
        fchmod(fd, 0644 & ~um);
    }
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            free(tmp);
            return qt_errf(err, QT_EIO, "cannot write '%s': %s", path, strerror(e));
        }
        p += w;
        len -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return qt_errf(err, QT_EIO, "cannot write '%s': %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return qt_errf(err, QT_EIO, "cannot write '%s': %s", path, strerror(e));
    }
    free(tmp);
    return 0;
}
