/* util.c: files, time, CPUs, dtypes. */
#include "engine.h"

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

const char *qt_path_with_ext(const char *path, const char *ext, const char *new_ext, char *buf, size_t len) {
    size_t l = strlen(path), e = strlen(ext);
    if (l >= e && !strcmp(path + l - e, ext))
        l -= e;
    snprintf(buf, len, "%.*s%s", (int)l, path, new_ext);
    return buf;
}

double qt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* What a file of mode m is when it is not a regular file, for messages. */
static const char *mode_kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket"
           : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
           : S_ISLNK(m) ? "a symbolic link" : "a special file";
}

static int read_stream(FILE *f, const char *path, size_t max_bytes, void **buf, size_t *len, struct qt_err *err);

int qt_read_file(const char *path, size_t max_bytes, void **buf, size_t *len, struct qt_err *err) {
    FILE *f = fopen(path, "rb");
    *buf = NULL;
    *len = 0;
    if (!f)
        return qt_errf(err, QT_EIO, "cannot open '%s': %s", path, strerror(errno));
    return read_stream(f, path, max_bytes, buf, len, err);
}

/* The open is non-blocking (a FIFO without a writer would block it) and the
 * type is checked on the open descriptor, so nothing can be swapped in
 * between the check and the read. */
int qt_read_regular_file(const char *path, size_t max_bytes, void **buf, size_t *len, struct qt_err *err) {
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    *buf = NULL;
    *len = 0;
    if (fd < 0)
        return qt_errf(err, QT_EIO, "cannot open '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qt_errf(err, QT_EIO, "cannot read '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qt_errf(err, QT_EDATA, "'%s' is %s, not a regular file", path, mode_kind(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    FILE *f = fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 ? NULL : fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return qt_errf(err, QT_EIO, "cannot read '%s': %s", path, strerror(e));
    }
    return read_stream(f, path, max_bytes, buf, len, err);
}

static int read_stream(FILE *f, const char *path, size_t max_bytes, void **buf, size_t *len, struct qt_err *err) {
    struct stat st;
    char *p = NULL;
    size_t n = 0, cap = 0;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return qt_errf(err, QT_EIO, "cannot read '%s': is a directory", path);
    }
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
        if (max_bytes && (uint64_t)st.st_size > max_bytes) {
            fclose(f);
            return qt_errf(err, QT_EDATA, "'%s' is larger than %zu bytes", path, max_bytes);
        }
        cap = (size_t)st.st_size + 1;
    }
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

/* Writes all of buf to fd; 0 or errno. */
static int write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : ENOSPC;
        p += w;
        len -= (size_t)w;
    }
    return fsync(fd) != 0 ? errno : 0;
}

static int wfile_fail(struct qt_wfile *f, int e, struct qt_err *err) {
    qt_errf(err, QT_EIO, "cannot write '%s': %s", f->path ? f->path : "", strerror(e));
    qt_wfile_abort(f);
    return QT_EIO;
}

/* An existing path that is not a regular file is never replaced: the
 * rename would put a regular file where a device, FIFO, socket, symbolic
 * link or directory was. 0 when path is missing or a regular file. */
static int out_kind_ok(const char *path, struct qt_err *err) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return qt_errf(err, QT_EIO, "cannot write '%s': %s", path, strerror(errno));
    }
    if (S_ISREG(st.st_mode))
        return 0;
    if (S_ISDIR(st.st_mode))
        return qt_errf(err, QT_EIO, "cannot write '%s': %s", path, strerror(EISDIR));
    return qt_errf(err, QT_EIO, "cannot write '%s': it is %s, and qtool replaces only regular files", path,
                   mode_kind(st.st_mode));
}

int qt_out_check(const char *path, struct qt_err *err) {
    if (!path || !*path)
        return qt_errf(err, QT_EIO, "cannot write '': empty output path");
    if (out_kind_ok(path, err))
        return err->code;
    /* the folder must take a new file: a nameless one, created and dropped */
    size_t pl = strlen(path);
    char *dir = malloc(pl + 16);
    int fd = -1, e = 0;
    if (!dir)
        return qt_errf(err, QT_ENOMEM, "out of memory checking '%s'", path);
    memcpy(dir, path, pl + 1);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else
        slash[slash == dir ? 1 : 0] = 0;
#ifdef O_TMPFILE
    fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        e = errno;
#endif
    if (fd < 0 && !e) { /* no O_TMPFILE here: a named probe */
        snprintf(dir + strlen(dir), 16, "/.qtXXXXXX");
        fd = mkstemp(dir);
        if (fd < 0)
            e = errno;
        else
            unlink(dir);
    }
    if (fd >= 0)
        close(fd);
    free(dir);
    if (e)
        return qt_errf(err, QT_EIO, "cannot write '%s': %s", path, strerror(e));
    return 0;
}

/* The file is written nameless (O_TMPFILE in the target directory) so a
 * process killed before the commit leaves nothing behind; it gets a
 * temporary name only for the rename. Where O_TMPFILE is not supported, a
 * named temporary file (path.XXXXXX) is written instead. */
int qt_wfile_begin(struct qt_wfile *f, const char *path, const void *buf, size_t len, struct qt_err *err) {
    size_t pl = strlen(path);
    mode_t um = umask(0);
    int e;
    umask(um);
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = malloc(pl + 1);
    f->tmp = malloc(pl + 32);
    f->dir = malloc(pl + 2);
    if (!f->path || !f->tmp || !f->dir) {
        qt_wfile_abort(f);
        return qt_errf(err, QT_ENOMEM, "out of memory writing '%s'", path);
    }
    memcpy(f->path, path, pl + 1);
    memcpy(f->dir, path, pl + 1);
    if (out_kind_ok(path, err)) {
        qt_wfile_abort(f);
        return err->code;
    }
    char *slash = strrchr(f->dir, '/');
    if (!slash)
        strcpy(f->dir, ".");
    else
        slash[slash == f->dir ? 1 : 0] = 0;
#ifdef O_TMPFILE
    f->fd = open(f->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644 & ~um);
    if (f->fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        return wfile_fail(f, errno, err);
#endif
    if (f->fd < 0) { /* no O_TMPFILE here */
        snprintf(f->tmp, pl + 32, "%s.XXXXXX", path);
        f->fd = mkstemp(f->tmp);
        if (f->fd < 0)
            return wfile_fail(f, errno, err);
        f->named = 1;
        fchmod(f->fd, 0644 & ~um);
    }
    if ((e = write_all(f->fd, buf, len)))
        return wfile_fail(f, e, err);
    return 0;
}

/* Gives f's nameless file a temporary name in its directory. */
static int wfile_link(struct qt_wfile *f) {
    static unsigned seq;
    char proc[64];
    if (f->named)
        return 0;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
    for (int tries = 0;; tries++) {
        unsigned r = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED) * 2654435761u ^ (unsigned)getpid();
        snprintf(f->tmp, strlen(f->path) + 32, "%s.%08x.tmp", f->path, r);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, f->tmp, AT_SYMLINK_FOLLOW) == 0)
            break;
        if (errno != EEXIST || tries > 100)
            return errno;
    }
    f->named = 1;
    return 0;
}

int qt_wfile_commit_all(struct qt_wfile *f, int n, struct qt_err *err) {
    int e = 0, k;
    for (k = 0; k < n && !e; k++) /* temporary names and closed files first ... */
        if (!(e = wfile_link(&f[k]))) {
            int fd = f[k].fd;
            f[k].fd = -1;
            if (close(fd) != 0)
                e = errno;
        }
    for (k = 0; k < n && !e; k++) /* nothing but regular files is replaced (see out_kind_ok) */
        if (out_kind_ok(f[k].path, err)) {
            for (k = 0; k < n; k++)
                qt_wfile_abort(&f[k]);
            return err->code;
        }
    for (k = 0; k < n && !e; k++) { /* ... so the renames follow each other */
        if (rename(f[k].tmp, f[k].path) != 0)
            e = errno;
        else
            f[k].named = 0;
    }
    if (e) {
        int bad = k > 0 ? k - 1 : 0;
        qt_errf(err, QT_EIO, "cannot write '%s': %s", f[bad].path ? f[bad].path : "", strerror(e));
        for (k = 0; k < n; k++)
            qt_wfile_abort(&f[k]);
        return QT_EIO;
    }
    for (k = 0; k < n; k++) { /* the renames reach the disk with their directories */
        int fd = open(f[k].dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        qt_wfile_abort(&f[k]);
    }
    return 0;
}

int qt_wfile_commit(struct qt_wfile *f, struct qt_err *err) {
    return qt_wfile_commit_all(f, 1, err);
}

void qt_wfile_abort(struct qt_wfile *f) {
    if (f->fd >= 0)
        close(f->fd);
    if (f->named && f->tmp)
        unlink(f->tmp);
    free(f->path);
    free(f->tmp);
    free(f->dir);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

int qt_write_file_atomic(const char *path, const void *buf, size_t len, struct qt_err *err) {
    struct qt_wfile f;
    if (qt_wfile_begin(&f, path, buf, len, err))
        return err->code;
    return qt_wfile_commit(&f, err);
}

size_t qt_mem_limit(void) {
    static size_t limit;
    size_t l = __atomic_load_n(&limit, __ATOMIC_RELAXED);
    if (l)
        return l;
    const char *s = getenv("QT_MEM_LIMIT_MB");
    char *end;
    unsigned long long mb = s ? strtoull(s, &end, 10) : 0;
    if (s && *s && !*end && mb > 0 && mb < ((unsigned long long)1 << 40))
        l = (size_t)mb << 20;
    else {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        l = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : (size_t)1 << 40;
    }
    __atomic_store_n(&limit, l, __ATOMIC_RELAXED);
    return l;
}

int qt_argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t j = 0; j < n; j++) {
        if (v[j] != v[j])
            return (int)j;
        if (v[j] > v[best])
            best = j;
    }
    return (int)best;
}

uint64_t qt_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float qt_rand01(uint64_t *state) {
    return (float)(qt_splitmix64(state) >> 40) * (1.0f / 16777216.0f);
}

void qt_logv(void (*log)(void *, const char *), void *ud, const char *fmt, va_list ap) {
    char line[512];
    if (!log)
        return;
    vsnprintf(line, sizeof line, fmt, ap);
    log(ud, line);
}
