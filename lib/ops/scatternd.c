/* scatternd.c: ONNX ScatterND (opsets 11-18), any dtype.
 *
 * y = a copy of data (rank r); indices (int64, shape [..., k], k <= r) lists
 * positions of data's first k dims (negative counts from the end) and for
 * each one the slice of the remaining r-k dims is set from updates (shape
 * indices.shape[:-1] + data.shape[k:]). reduction (opset 16, 18): none,
 * add, mul, max, min (float32, int32, int64). Updates apply in index order,
 * in one task, so repeated indices give the same bytes at any thread count.
 * Exported models use it for in-place slice assignment (Swin's attention
 * masks), where every input is constant and the plan folds it. */
#include "engine.h"

#include <string.h>

enum { SND_NONE, SND_ADD, SND_MUL, SND_MAX, SND_MIN };

struct snd_attr {
    int red;
};

static int snd_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct snd_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    if (n->nin != 3 || n->in[1] < 0 || n->in[2] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs data, indices and updates");
    const char *r = qt_attr_str(n, "reduction", "none", err);
    if (err->code)
        return err->code;
    static const char *const names[] = {"none", "add", "mul", "max", "min"};
    a->red = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(r, names[i]))
            a->red = i;
    if (a->red < 0)
        return qt_node_err(n, QT_EMODEL, err, "reduction '%s' is not one of none, add, mul, max, min", r);
    return 0;
}

static int snd_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct snd_attr *a = n->priv;
    const struct qt_tensor *d = qt_in(x, n, 0), *ix = qt_in(x, n, 1), *u = qt_in(x, n, 2);
    if (ix->dtype != QT_INT64)
        return qt_node_err(n, QT_EMODEL, err, "indices must be int64, not %s", qt_dtype_name(ix->dtype));
    if (u->dtype != d->dtype)
        return qt_node_err(n, QT_EMODEL, err, "updates type %s differs from data type %s", qt_dtype_name(u->dtype),
                           qt_dtype_name(d->dtype));
    if (!qt_dtype_size(d->dtype) || d->dtype == QT_STRING)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "data type %s is not supported", qt_dtype_name(d->dtype));
    if (a->red != SND_NONE && d->dtype != QT_FLOAT && d->dtype != QT_INT64 && d->dtype != QT_INT32)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "a reduction on %s is not supported", qt_dtype_name(d->dtype));
    if (ix->ndim < 1 || d->ndim < 1)
        return qt_node_err(n, QT_EMODEL, err, "data and indices need at least one dimension");
    int64_t k = ix->dims[ix->ndim - 1];
    if (k < 1 || k > d->ndim)
        return qt_node_err(n, QT_EMODEL, err, "indices' last dimension %lld must be 1 to %d (data's rank)",
                           (long long)k, d->ndim);
    /* updates: indices.shape[:-1] + data.shape[k:] */
    int un = ix->ndim - 1 + d->ndim - (int)k;
    int ok = u->ndim == un;
    for (int i = 0; ok && i < ix->ndim - 1; i++)
        ok = u->dims[i] == ix->dims[i];
    for (int i = 0; ok && i < d->ndim - (int)k; i++)
        ok = u->dims[ix->ndim - 1 + i] == d->dims[k + i];
    if (!ok) {
        char b1[160], b2[160];
        return qt_node_err(n, QT_EMODEL, err, "updates have shape %s, not indices' %s without its last dim followed "
                           "by data's dims from %lld", qt_dims_str(u->ndim, u->dims, b1, sizeof b1),
                           qt_dims_str(ix->ndim, ix->dims, b2, sizeof b2), (long long)k);
    }
    return qt_set_out(x, n, 0, d->dtype, d->ndim, d->dims, err);
}

#define SND_REDUCE(T)                                                                     \
    static void snd_##T(T *y, const T *u, int64_t cnt, int red) {                         \
        for (int64_t i = 0; i < cnt; i++)                                                 \
            switch (red) {                                                                \
            case SND_ADD: y[i] = (T)(y[i] + u[i]); break;                                 \
            case SND_MUL: y[i] = (T)(y[i] * u[i]); break;                                 \
            case SND_MAX: y[i] = u[i] > y[i] ? u[i] : y[i]; break;                        \
            case SND_MIN: y[i] = u[i] < y[i] ? u[i] : y[i]; break;                        \
            default: y[i] = u[i];                                                         \
            }                                                                             \
    }
SND_REDUCE(float)
SND_REDUCE(int32_t)

static void snd_int64_t(int64_t *y, const int64_t *u, int64_t cnt, int red) {
    for (int64_t i = 0; i < cnt; i++)
        switch (red) { /* wrap-around as two's complement, like the other integer ops */
        case SND_ADD: y[i] = (int64_t)((uint64_t)y[i] + (uint64_t)u[i]); break;
        case SND_MUL: y[i] = (int64_t)((uint64_t)y[i] * (uint64_t)u[i]); break;
        case SND_MAX: y[i] = u[i] > y[i] ? u[i] : y[i]; break;
        case SND_MIN: y[i] = u[i] < y[i] ? u[i] : y[i]; break;
        default: y[i] = u[i];
        }
}

static int snd_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct snd_attr *a = n->priv;
    const struct qt_tensor *d = qt_in(x, n, 0), *ix = qt_in(x, n, 1), *u = qt_in(x, n, 2);
    struct qt_tensor *y = qt_out(x, n, 0);
    size_t es = qt_dtype_size(d->dtype);
    int k = (int)ix->dims[ix->ndim - 1];
    int64_t slice = qt_numel(d->ndim - k, d->dims + k), nidx = qt_tensor_numel(ix) / k;
    const int64_t *id = ix->data;
    if (y->data != d->data)
        memcpy(y->data, d->data, d->nbytes);
    for (int64_t i = 0; i < nidx; i++) {
        int64_t off = 0;
        for (int j = 0; j < k; j++) {
            int64_t v = id[i * k + j], dim = d->dims[j];
            if (v < -dim || v >= dim)
                return qt_node_err(n, QT_EMODEL, err, "index %lld is out of range for dimension %d of size %lld",
                                   (long long)v, j, (long long)dim);
            off = off * dim + (v < 0 ? v + dim : v);
        }
        char *dst = (char *)y->data + (size_t)(off * slice) * es;
        const char *src = (const char *)u->data + (size_t)(i * slice) * es;
        if (a->red == SND_NONE)
            memcpy(dst, src, (size_t)slice * es);
        else if (d->dtype == QT_FLOAT)
            snd_float((float *)dst, (const float *)src, slice, a->red);
        else if (d->dtype == QT_INT32)
            snd_int32_t((int32_t *)dst, (const int32_t *)src, slice, a->red);
        else
            snd_int64_t((int64_t *)dst, (const int64_t *)src, slice, a->red);
    }
    return 0;
}

const struct qt_op qt_op_scatternd = {.name = "ScatterND", .init = snd_init, .infer = snd_infer, .fwd = snd_fwd};
