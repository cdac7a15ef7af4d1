/* dataset.c: image folders in torchvision ImageFolder layout.
 *
 * Class sub-folders sorted by name (strcmp, as Python's sorted) give label
 * indices, or with a class list the line of the folder's name; files are
 * found recursively inside each class folder, sorted by path; only .png,
 * .jpg and .jpeg files (any case) count, hidden entries are skipped. A
 * folder with image files and no sub-folders is unlabeled (label -1). Only
 * paths are kept: images are decoded on demand, a batch at a time, by a
 * pool of threads, each image into its own slot, so the result does not
 * depend on the thread count. */
#include "engine.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct qt_dataset {
    char **paths;
    int *labels;
    int n, cap;
    int nclasses;
    int labeled;
    struct qt_pool *pool;
    int pool_threads;
};

static int is_image(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    char ext[8];
    size_t l = strlen(dot + 1);
    if (l == 0 || l > 4)
        return 0;
    for (size_t i = 0; i <= l; i++)
        ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    return !strcmp(ext, "png") || !strcmp(ext, "jpg") || !strcmp(ext, "jpeg");
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted non-hidden entries of dir; dirs_only/files_only filter. */
static int list(const char *dir, char ***out, int *n, struct qt_err *err) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char **v = NULL;
    int cnt = 0, cap = 0;
    *out = NULL;
    *n = 0;
    if (!d)
        return qt_errf(err, QT_EIO, "cannot read folder '%s': %s", dir, strerror(errno));
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(v, sizeof *nv * (size_t)cap);
            if (!nv)
                goto oom;
            v = nv;
        }
        if (!(v[cnt] = strdup(e->d_name)))
            goto oom;
        cnt++;
    }
    closedir(d);
    if (cnt)
        qsort(v, (size_t)cnt, sizeof *v, cmp_str);
    *out = v;
    *n = cnt;
    return 0;
oom:
    closedir(d);
    for (int i = 0; i < cnt; i++)
        free(v[i]);
    free(v);
    return qt_errf(err, QT_ENOMEM, "out of memory listing '%s'", dir);
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int add(struct qt_dataset *ds, const char *path, int label, struct qt_err *err) {
    if (ds->n == ds->cap) {
        int nc = ds->cap ? ds->cap * 2 : 256;
        char **np = realloc(ds->paths, sizeof *np * (size_t)nc);
        if (!np)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        ds->paths = np;
        int *nl = realloc(ds->labels, sizeof *nl * (size_t)nc);
        if (!nl)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        ds->labels = nl;
        ds->cap = nc;
    }
    if (!(ds->paths[ds->n] = strdup(path)))
        return qt_errf(err, QT_ENOMEM, "out of memory");
    ds->labels[ds->n++] = label;
    return 0;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* All images below dir (recursively), sorted by path. */
static int walk(struct qt_dataset *ds, const char *dir, int label, int depth, struct qt_err *err) {
    char **v;
    int n;
    if (depth > 32)
        return qt_errf(err, QT_EDATA, "folder '%s' is nested too deeply", dir);
    if (list(dir, &v, &n, err))
        return err->code;
    for (int i = 0; i < n && !err->code; i++) {
        size_t l = strlen(dir) + strlen(v[i]) + 2;
        char *p = malloc(l);
        if (!p) {
            qt_errf(err, QT_ENOMEM, "out of memory");
            break;
        }
        snprintf(p, l, "%s/%s", dir, v[i]);
        struct stat st;
        if (is_dir(p))
            walk(ds, p, label, depth + 1, err);
        else if (!is_image(v[i]))
            ;
        else if (stat(p, &st) == 0 && !S_ISREG(st.st_mode)) /* a FIFO would block the reader */
            qt_errf(err, QT_EDATA, "image '%s' is %s, not a regular file", p,
                    S_ISFIFO(st.st_mode)  ? "a FIFO"
                    : S_ISSOCK(st.st_mode) ? "a socket"
                    : S_ISCHR(st.st_mode)  ? "a character device"
                    : S_ISBLK(st.st_mode)  ? "a block device"
                                           : "a special file");
        else
            add(ds, p, label, err);
        free(p);
    }
    free_list(v, n);
    return err->code;
}

static int read_classes(const char *path, char ***names, int *n, struct qt_err *err) {
    void *buf;
    size_t len;
    *names = NULL;
    *n = 0;
    if (qt_read_file(path, 64 << 20, &buf, &len, err))
        return err->code;
    char *s = buf, **v = NULL;
    int cnt = 0, cap = 0;
    for (char *line = strtok(s, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        while (isspace((unsigned char)*line))
            line++;
        char *e = line + strlen(line);
        while (e > line && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (!*line)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 1024;
            char **nv = realloc(v, sizeof *nv * (size_t)cap);
            if (!nv) {
                free_list(v, cnt);
                free(buf);
                return qt_errf(err, QT_ENOMEM, "out of memory");
            }
            v = nv;
        }
        if (!(v[cnt++] = strdup(line))) {
            free_list(v, cnt - 1);
            free(buf);
            return qt_errf(err, QT_ENOMEM, "out of memory");
        }
    }
    free(buf);
    if (!cnt)
        return qt_errf(err, QT_EDATA, "class list '%s' is empty", path);
    *names = v;
    *n = cnt;
    return 0;
}

int qt_dataset_open(struct qt_dataset **out, const char *dir, const char *classes_file, struct qt_err *err) {
    struct qt_dataset *ds = calloc(1, sizeof *ds);
    char **v = NULL, **cls = NULL;
    int n = 0, ncls = 0, ndirs = 0;
    *out = NULL;
    if (!ds)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    if (!is_dir(dir)) {
        qt_errf(err, QT_EIO, "image folder '%s' does not exist or is not a folder", dir);
        goto fail;
    }
    if (classes_file && read_classes(classes_file, &cls, &ncls, err))
        goto fail;
    if (list(dir, &v, &n, err))
        goto fail;
    for (int i = 0; i < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, v[i]);
        ndirs += is_dir(p);
    }
    if (ndirs) {
        ds->labeled = 1;
        int label = 0;
        for (int i = 0; i < n && !err->code; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, v[i]);
            if (!is_dir(p))
                continue;
            int lab = label++;
            if (cls) {
                lab = -1;
                for (int k = 0; k < ncls; k++)
                    if (!strcmp(cls[k], v[i]))
                        lab = k;
                if (lab < 0) {
                    qt_errf(err, QT_EDATA, "class folder '%s' is not in the class list '%s'", p, classes_file);
                    break;
                }
            }
            walk(ds, p, lab, 0, err);
        }
        ds->nclasses = cls ? ncls : label;
    } else {
        walk(ds, dir, -1, 0, err);
    }
    if (err->code)
        goto fail;
    if (ds->n == 0) {
        qt_errf(err, QT_EDATA, "no images (.png, .jpg, .jpeg) in '%s'", dir);
        goto fail;
    }
    free_list(v, n);
    free_list(cls, ncls);
    *out = ds;
    return 0;
fail:
    free_list(v, n);
    free_list(cls, ncls);
    qt_dataset_free(ds);
    return err->code;
}

void qt_dataset_free(struct qt_dataset *ds) {
    if (!ds)
        return;
    free_list(ds->paths, ds->n);
    free(ds->labels);
    qt_pool_free(ds->pool);
    free(ds);
}

int qt_dataset_count(const struct qt_dataset *ds) {
    return ds->n;
}

int qt_dataset_nclasses(const struct qt_dataset *ds) {
    return ds->nclasses;
}

int qt_dataset_labeled(const struct qt_dataset *ds) {
    return ds->labeled;
}

int qt_dataset_hold_back(struct qt_dataset *ds, int every, struct qt_dataset **held, struct qt_err *err) {
    struct qt_dataset *h = calloc(1, sizeof *h);
    int nh = every > 0 ? ds->n / every : 0, k = 0, j = 0;
    *held = NULL;
    if (!h || !(h->paths = calloc((size_t)nh + 1, sizeof *h->paths)) ||
        !(h->labels = calloc((size_t)nh + 1, sizeof *h->labels))) {
        qt_dataset_free(h);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    h->cap = nh + 1;
    h->nclasses = ds->nclasses;
    h->labeled = ds->labeled;
    for (int i = 0; i < ds->n; i++) {
        if (every > 0 && i % every == every - 1) {
            h->paths[k] = ds->paths[i];
            h->labels[k++] = ds->labels[i];
        } else {
            ds->paths[j] = ds->paths[i];
            ds->labels[j++] = ds->labels[i];
        }
    }
    h->n = k;
    ds->n = j;
    *held = h;
    return 0;
}

const char *qt_dataset_path(const struct qt_dataset *ds, int i) {
    return i >= 0 && i < ds->n ? ds->paths[i] : NULL;
}

int qt_dataset_label(const struct qt_dataset *ds, int i) {
    return i >= 0 && i < ds->n ? ds->labels[i] : -1;
}

struct load_job {
    struct qt_dataset *ds;
    const struct qt_preproc *p;
    int start, c, h, w;
    float *out;
    uint64_t seed;
    struct qt_err *errs; /* one per image */
    const int *idx;      /* image indices (qt_dataset_load_idx), or NULL: start + i */
};

static void load_task(void *arg, int64_t i0, int64_t i1, int tid) {
    struct load_job *j = arg;
    (void)tid;
    for (int64_t i = i0; i < i1; i++) {
        int idx = j->idx ? j->idx[i] : j->start + (int)i;
        struct qt_image img;
        struct qt_err *e = &j->errs[i];
        const char *path = j->ds->paths[idx];
        if (qt_image_load(&img, path, j->c, e))
            continue;
        uint64_t rng = j->seed * 0x9e3779b97f4a7c15ull ^ ((uint64_t)idx * 0xd1b54a32d192ed03ull);
        if (qt_preprocess(&img, j->p, j->out + (size_t)i * j->c * j->h * j->w, j->h, j->w, &rng, e) &&
            e->code == QT_EDATA) {
            char msg[sizeof e->msg];
            memcpy(msg, e->msg, sizeof msg);
            e->code = 0;
            qt_errf(e, QT_EDATA, "image '%s' is %s", path, msg);
        }
        qt_image_release(&img);
    }
}

static int load(struct qt_dataset *ds, const struct qt_preproc *p, int start, const int *idx, int n, int c, int h,
                int w, float *out, int *labels, int nthreads, uint64_t seed, struct qt_err *err);

int qt_dataset_load(struct qt_dataset *ds, const struct qt_preproc *p, int start, int n, int c, int h, int w,
                    float *out, int *labels, int nthreads, uint64_t seed, struct qt_err *err) {
    if (start < 0 || n < 0 || start + n > ds->n)
        return qt_errf(err, QT_EUSAGE, "images %d..%d requested of %d", start, start + n, ds->n);
    return load(ds, p, start, NULL, n, c, h, w, out, labels, nthreads, seed, err);
}

int qt_dataset_load_idx(struct qt_dataset *ds, const struct qt_preproc *p, const int *idx, int n, int c, int h,
                        int w, float *out, int *labels, int nthreads, uint64_t seed, struct qt_err *err) {
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return qt_errf(err, QT_EUSAGE, "image %d requested of %d", idx[i], ds->n);
    return load(ds, p, 0, idx, n, c, h, w, out, labels, nthreads, seed, err);
}

static int load(struct qt_dataset *ds, const struct qt_preproc *p, int start, const int *idx, int n, int c, int h,
                int w, float *out, int *labels, int nthreads, uint64_t seed, struct qt_err *err) {
    if (p->channels != c)
        return qt_errf(err, QT_EUSAGE, "preprocessing gives %d channels, the model takes %d", p->channels, c);
    if (nthreads < 1)
        nthreads = qt_ncpus();
    if (!ds->pool || ds->pool_threads != nthreads) {
        qt_pool_free(ds->pool);
        ds->pool = NULL;
        if (qt_pool_new(&ds->pool, nthreads, err))
            return err->code;
        ds->pool_threads = nthreads;
    }
    struct qt_err *errs = calloc((size_t)n + 1, sizeof *errs);
    if (!errs)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    struct load_job j = {ds, p, start, c, h, w, out, seed, errs, idx};
    qt_pool_run(ds->pool, n, load_task, &j);
    for (int i = 0; i < n; i++) {
        if (errs[i].code) {
            qt_errf(err, errs[i].code, "%s", errs[i].msg);
            break;
        }
        if (labels)
            labels[i] = ds->labels[idx ? idx[i] : start + i];
    }
    free(errs);
    return err->code;
}
