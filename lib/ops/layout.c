/* layout.c: byte-moving helpers shared by the shape and layout operators. */
#include "ops/layout.h"

#include <string.h>

#define TASK_ELEMS 32768 /* elements per copy task */

void qt_copy_input(const struct qt_exec *x, const struct qt_node *n) {
    const struct qt_tensor *a = &x->t[n->in[0]];
    struct qt_tensor *y = &x->t[n->out[0]];
    if (y->data != a->data && a->nbytes)
        memcpy(y->data, a->data, a->nbytes < y->nbytes ? a->nbytes : y->nbytes);
}

struct pass_job {
    const float *dy;
    float *dx;
    int64_t total;
};

#define PASS_BLOCK 65536

static void pass_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct pass_job *j = arg;
    (void)tid;
    int64_t b = t1 * PASS_BLOCK < j->total ? t1 * PASS_BLOCK : j->total;
    for (int64_t i = t0 * PASS_BLOCK; i < b; i++)
        j->dx[i] += j->dy[i];
}

int qt_bwd_pass(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct pass_job j = {qt_gout(x, n, 0), qt_gin(x, n, 0), qt_tensor_numel(qt_in(x, n, 0))};
    if (!j.dx)
        return 0;
    if (qt_in(x, n, 0)->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "backward is float32 only");
    qt_parallel_for(x, (j.total + PASS_BLOCK - 1) / PASS_BLOCK, pass_task, &j);
    return 0;
}

static void strided_add(int ndim, const int64_t *dims, const int64_t *strides, int64_t off, const float *src,
                        float *dst, float scale, int scatter) {
    int64_t idx[2 * QT_MAXDIM] = {0}, total = qt_numel(ndim, dims), p = off;
    for (int64_t o = 0; o < total; o++) {
        if (scatter)
            dst[p] += src[o];
        else
            dst[o] += scale * src[p];
        for (int k = ndim - 1; k >= 0; k--) {
            p += strides[k];
            if (++idx[k] < dims[k])
                break;
            p -= strides[k] * dims[k];
            idx[k] = 0;
        }
    }
}

void qt_strided_scatter_add(int ndim, const int64_t *dims, const int64_t *strides, int64_t off, const float *src,
                            float *dst) {
    strided_add(ndim, dims, strides, off, src, dst, 1, 1);
}

void qt_strided_gather_add(int ndim, const int64_t *dims, const int64_t *strides, int64_t off, const float *src,
                           float *dst, float scale) {
    strided_add(ndim, dims, strides, off, src, dst, scale, 0);
}

int qt_const_ints(struct qt_exec *x, const struct qt_node *n, int i, const char *what, int64_t *v, int max,
                  int *cnt, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, i);
    char b[160];
    if (!t)
        return qt_node_err(n, QT_EMODEL, err, "input '%s' is missing", what);
    if (!qt_in_const(x, n, i))
        return qt_node_err(n, QT_EUNSUPPORTED, err,
                           "input '%s' must be known at plan time (it depends on the graph's inputs)", what);
    if (t->dtype != QT_INT64 && t->dtype != QT_INT32)
        return qt_node_err(n, QT_EMODEL, err, "input '%s' has type %s, expected int64", what,
                           qt_dtype_name(t->dtype));
    if (t->ndim > 1)
        return qt_node_err(n, QT_EMODEL, err, "input '%s' has shape %s, expected a vector", what,
                           qt_dims_str(t->ndim, t->dims, b, sizeof b));
    int64_t ne = qt_tensor_numel(t);
    if (ne < 0 || ne > max)
        return qt_node_err(n, QT_EMODEL, err, "input '%s' has %lld values, at most %d allowed", what,
                           (long long)ne, max);
    for (int64_t k = 0; k < ne; k++)
        v[k] = qt_tensor_geti(t, k);
    *cnt = (int)ne;
    return 0;
}

int qt_attr_ints_max(const struct qt_node *n, const char *name, int64_t *v, int max, int *cnt,
                     struct qt_err *err) {
    const int64_t *a;
    int c = qt_attr_ints(n, name, &a, err);
    *cnt = -1;
    if (err->code)
        return err->code;
    if (c > max)
        return qt_node_err(n, QT_EMODEL, err, "attribute '%s' has %d values, at most %d allowed", name, c, max);
    for (int k = 0; k < c; k++)
        v[k] = a[k];
    *cnt = c;
    return 0;
}

int qt_axes_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct qt_axes *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    return qt_attr_ints_max(n, "axes", a->v, QT_MAXDIM, &a->n, err);
}

int qt_axes_get(struct qt_exec *x, const struct qt_node *n, const struct qt_axes *a, int required, int64_t *v,
                int *cnt, struct qt_err *err) {
    *cnt = 0;
    if (a->n >= 0) {
        memcpy(v, a->v, sizeof(int64_t) * (size_t)a->n);
        *cnt = a->n;
        return 0;
    }
    if (!required && !qt_in(x, n, 1))
        return 0;
    return qt_const_ints(x, n, 1, "axes", v, QT_MAXDIM, cnt, err);
}

void qt_strides(int ndim, const int64_t *dims, int64_t *strides) {
    uint64_t s = 1; /* wraps only for empty tensors with absurd dims, whose strides are never used */
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = (int64_t)s;
        s *= (uint64_t)dims[d];
    }
}

/* ---- strided copy ------------------------------------------------------ */

struct scopy {
    size_t es;
    int nd;
    int64_t dims[2 * QT_MAXDIM], strides[2 * QT_MAXDIM];
    const unsigned char *src;
    unsigned char *dst;
    int64_t nrows, rows_per_task;
};

/* n elements to dst from src stepping by stride elements */
static void copy_run(unsigned char *dst, const unsigned char *src, int64_t n, int64_t stride, size_t es) {
    if (stride == 1) {
        memcpy(dst, src, (size_t)n * es);
        return;
    }
    switch (es) {
    case 1:
        for (int64_t i = 0; i < n; i++)
            dst[i] = src[i * stride];
        break;
    case 2: {
        uint16_t *d = (uint16_t *)(void *)dst;
        const uint16_t *s = (const uint16_t *)(const void *)src;
        for (int64_t i = 0; i < n; i++)
            d[i] = s[i * stride];
        break;
    }
    case 4: {
        uint32_t *d = (uint32_t *)(void *)dst;
        const uint32_t *s = (const uint32_t *)(const void *)src;
        for (int64_t i = 0; i < n; i++)
            d[i] = s[i * stride];
        break;
    }
    case 8: {
        uint64_t *d = (uint64_t *)(void *)dst;
        const uint64_t *s = (const uint64_t *)(const void *)src;
        for (int64_t i = 0; i < n; i++)
            d[i] = s[i * stride];
        break;
    }
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + (size_t)i * es, src + i * stride * (int64_t)es, es);
    }
}

static void scopy_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct scopy *c = arg;
    int outer = c->nd - 1;
    int64_t inner = c->dims[outer], is = c->strides[outer];
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t r0 = t * c->rows_per_task, r1 = r0 + c->rows_per_task;
        int64_t coord[2 * QT_MAXDIM], off = 0, r = r0;
        if (r1 > c->nrows)
            r1 = c->nrows;
        for (int d = outer - 1; d >= 0; d--) {
            coord[d] = r % c->dims[d];
            r /= c->dims[d];
            off += coord[d] * c->strides[d];
        }
        for (r = r0; r < r1; r++) {
            copy_run(c->dst + (size_t)(r * inner) * c->es, c->src + off * (int64_t)c->es, inner, is, c->es);
            for (int d = outer - 1; d >= 0; d--) { /* odometer over the outer axes */
                off += c->strides[d];
                if (++coord[d] < c->dims[d])
                    break;
                off -= coord[d] * c->strides[d];
                coord[d] = 0;
            }
        }
    }
}

void qt_strided_copy(struct qt_exec *x, size_t es, int ndim, const int64_t *dims, const int64_t *strides,
                     const void *src, void *dst) {
    struct scopy c = {.es = es, .src = src, .dst = dst};
    int k = 0;
    if (qt_numel(ndim, dims) <= 0)
        return;
    /* drop unit axes and merge axes that are contiguous in the source, so
     * the inner runs are as long as possible */
    for (int d = 0; d < ndim; d++) {
        if (dims[d] == 1)
            continue;
        if (k > 0 && c.strides[k - 1] == strides[d] * dims[d]) {
            c.dims[k - 1] *= dims[d];
            c.strides[k - 1] = strides[d];
        } else {
            c.dims[k] = dims[d];
            c.strides[k] = strides[d];
            k++;
        }
    }
    if (k == 0) {
        c.dims[0] = 1;
        c.strides[0] = 1;
        k = 1;
    }
    c.nd = k;
    int64_t inner = c.dims[k - 1];
    c.nrows = 1;
    for (int d = 0; d < k - 1; d++)
        c.nrows *= c.dims[d];
    c.rows_per_task = inner >= TASK_ELEMS ? 1 : TASK_ELEMS / inner;
    qt_parallel_for(x, (c.nrows + c.rows_per_task - 1) / c.rows_per_task, scopy_task, &c);
}

void qt_permute(struct qt_exec *x, size_t es, int ndim, const int64_t *in_dims, const int *perm, const void *src,
                void *dst) {
    int64_t is[QT_MAXDIM], od[QT_MAXDIM], os[QT_MAXDIM];
    qt_strides(ndim, in_dims, is);
    for (int k = 0; k < ndim; k++) {
        od[k] = in_dims[perm[k]];
        os[k] = is[perm[k]];
    }
    qt_strided_copy(x, es, ndim, od, os, src, dst);
}

/* ---- row copies -------------------------------------------------------- */

struct rcopy {
    size_t len, ss, ds;
    const unsigned char *src;
    unsigned char *dst;
    int64_t rows, per;
};

static void rcopy_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct rcopy *c = arg;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t r1 = (t + 1) * c->per < c->rows ? (t + 1) * c->per : c->rows;
        for (int64_t r = t * c->per; r < r1; r++)
            memcpy(c->dst + (size_t)r * c->ds, c->src + (size_t)r * c->ss, c->len);
    }
}

void qt_copy_rows(struct qt_exec *x, int64_t rows, size_t len, const void *src, size_t src_stride, void *dst,
                  size_t dst_stride) {
    struct rcopy c = {len, src_stride, dst_stride, src, dst, rows, 1};
    if (rows <= 0 || len == 0)
        return;
    if (len < TASK_ELEMS * 4)
        c.per = (int64_t)(TASK_ELEMS * 4 / len);
    qt_parallel_for(x, (rows + c.per - 1) / c.per, rcopy_task, &c);
}
