/* gather.c: ONNX Gather (opsets 7-21), any data dtype, int32/int64 indices.
 *
 * y[i0..i(a-1), j..., k...] = x[i0..i(a-1), idx[j...], k...] along `axis`
 * (default 0); negative indices count from the end. y's shape is x's with
 * the axis replaced by the indices' shape (a scalar index drops the axis).
 * No backward: a training plan through this op fails, naming the node. */
#include "ops/layout.h"

#include <string.h>

static int gather_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    int64_t *axis = calloc(1, sizeof *axis);
    if (!axis)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = axis;
    if (n->nin < 2 || n->in[0] < 0 || n->in[1] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs data and indices");
    *axis = qt_attr_int(n, "axis", 0, err);
    return err->code;
}

/* Index k of idx normalised against dim, or -1 when out of range. */
static int64_t index_at(const struct qt_tensor *idx, int64_t k, int64_t dim) {
    int64_t v = idx->dtype == QT_INT64 ? ((const int64_t *)idx->data)[k] : ((const int32_t *)idx->data)[k];
    if (v < 0)
        v += dim;
    return v >= 0 && v < dim ? v : -1;
}

static int check_indices(const struct qt_node *n, const struct qt_tensor *idx, int64_t dim, struct qt_err *err) {
    int64_t ni = qt_tensor_numel(idx);
    for (int64_t k = 0; k < ni; k++)
        if (index_at(idx, k, dim) < 0)
            return qt_node_err(n, QT_EMODEL, err, "index %lld is out of range for an axis of size %lld",
                               (long long)qt_tensor_geti(idx, k), (long long)dim);
    return 0;
}

static int gather_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *idx = qt_in(x, n, 1);
    int64_t d[QT_MAXDIM];
    int ax, nd = 0;
    if (idx->dtype != QT_INT64 && idx->dtype != QT_INT32)
        return qt_node_err(n, QT_EMODEL, err, "indices have type %s, expected int32 or int64",
                           qt_dtype_name(idx->dtype));
    if (t->ndim < 1)
        return qt_node_err(n, QT_EMODEL, err, "data is a scalar");
    if (qt_axis(n, *(const int64_t *)n->priv, t->ndim, &ax, err))
        return err->code;
    if (t->ndim - 1 + idx->ndim > QT_MAXDIM)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "output would have %d dims (at most %d)",
                           t->ndim - 1 + idx->ndim, QT_MAXDIM);
    if (qt_in_const(x, n, 1) && check_indices(n, idx, t->dims[ax], err))
        return err->code;
    for (int k = 0; k < ax; k++)
        d[nd++] = t->dims[k];
    for (int k = 0; k < idx->ndim; k++)
        d[nd++] = idx->dims[k];
    for (int k = ax + 1; k < t->ndim; k++)
        d[nd++] = t->dims[k];
    return qt_set_out(x, n, 0, t->dtype, nd, d, err);
}

struct gather_job {
    const struct qt_tensor *t, *idx;
    unsigned char *y;
    int64_t dim, ni, rows, per;
    size_t row; /* bytes after the axis */
};

static void gather_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct gather_job *j = arg;
    const unsigned char *src = j->t->data;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t r1 = (t + 1) * j->per < j->rows ? (t + 1) * j->per : j->rows;
        for (int64_t r = t * j->per; r < r1; r++) { /* r = outer * ni + k */
            int64_t o = r / j->ni, k = r % j->ni;
            int64_t v = index_at(j->idx, k, j->dim);
            memcpy(j->y + (size_t)r * j->row, src + (size_t)(o * j->dim + v) * j->row, j->row);
        }
    }
}

static int gather_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *idx = qt_in(x, n, 1);
    int ax;
    if (qt_axis(n, *(const int64_t *)n->priv, t->ndim, &ax, err))
        return err->code;
    if (qt_tensor_numel(qt_out(x, n, 0)) == 0)
        return 0;
    struct gather_job j = {t, idx, qt_out(x, n, 0)->data, t->dims[ax], qt_tensor_numel(idx), 0, 1, 0};
    j.row = (size_t)qt_numel(t->ndim - ax - 1, t->dims + ax + 1) * qt_dtype_size(t->dtype);
    j.rows = qt_numel(ax, t->dims) * j.ni;
    if (j.rows == 0 || j.row == 0)
        return 0;
    if (check_indices(n, idx, j.dim, err)) /* indices computed at run time */
        return err->code;
    if (j.row < 65536)
        j.per = (int64_t)(65536 / j.row);
    qt_parallel_for(x, (j.rows + j.per - 1) / j.per, gather_task, &j);
    return 0;
}

/* backward: one task per outer row o, its indices in order (repeated
 * indices add up in the same order at any thread count) */
struct gather_bwd_job {
    const struct qt_tensor *idx;
    const float *dy;
    float *dx;
    int64_t dim, ni, inner;
};

static void gather_bwd_task(void *arg, int64_t o0, int64_t o1, int tid) {
    const struct gather_bwd_job *j = arg;
    (void)tid;
    for (int64_t o = o0; o < o1; o++)
        for (int64_t k = 0; k < j->ni; k++) {
            const float *g = j->dy + (o * j->ni + k) * j->inner;
            float *d = j->dx + (o * j->dim + index_at(j->idx, k, j->dim)) * j->inner;
            for (int64_t i = 0; i < j->inner; i++)
                d[i] += g[i];
        }
}

static int gather_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *idx = qt_in(x, n, 1);
    struct gather_bwd_job j = {idx, qt_gout(x, n, 0), qt_gin(x, n, 0), 0, qt_tensor_numel(idx), 0};
    int ax;
    if (!j.dx || !j.dy)
        return 0;
    if (t->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "backward is float32 only");
    if (qt_axis(n, *(const int64_t *)n->priv, t->ndim, &ax, err))
        return err->code;
    j.dim = t->dims[ax];
    j.inner = qt_numel(t->ndim - ax - 1, t->dims + ax + 1);
    int64_t outer = qt_numel(ax, t->dims);
    if (outer == 0 || j.ni == 0 || j.inner == 0)
        return 0;
    if (check_indices(n, idx, j.dim, err))
        return err->code;
    qt_parallel_for(x, outer, gather_bwd_task, &j);
    return 0;
}

const struct qt_op qt_op_gather = {
    .name = "Gather",
    .flags = QT_OPF_EMPTY,
    .init = gather_init,
    .infer = gather_infer,
    .fwd = gather_fwd,
    .bwd = gather_bwd,
    .quant = {.role = QT_QR_PASS}, /* moves values: input 0 and output share parameters */
};
