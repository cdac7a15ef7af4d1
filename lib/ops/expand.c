/* expand.c: ONNX Expand (opsets 8-21), any dtype.
 *
 * y = x broadcast (numpy rules, both ways) with the shape in input 1, which
 * must be known at plan time: y's shape is broadcast(x.shape, shape).
 * No backward: a training plan through this op fails, naming the node. */
#include "ops/eltwise.h"
#include "ops/layout.h"

static int expand_shape(struct qt_exec *x, const struct qt_node *n, int *nd, int64_t *d, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t s[QT_MAXDIM];
    int ns;
    if (!t)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs input and shape");
    if (qt_const_ints(x, n, 1, "shape", s, QT_MAXDIM, &ns, err))
        return err->code;
    for (int i = 0; i < ns; i++)
        if (s[i] < 0)
            return qt_node_err(n, QT_EMODEL, err, "shape[%d] = %lld is negative", i, (long long)s[i]);
    return qt_broadcast(n, t->ndim, t->dims, ns, s, nd, d, err);
}

static int expand_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    int64_t d[QT_MAXDIM];
    int nd;
    if (expand_shape(x, n, &nd, d, err))
        return err->code;
    return qt_set_out(x, n, 0, qt_in(x, n, 0)->dtype, nd, d, err);
}

static int expand_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    struct qt_tensor *y = qt_out(x, n, 0);
    int64_t st[QT_MAXDIM];
    if (qt_tensor_numel(y) == 0)
        return 0;
    qt_bcast_strides(t->ndim, t->dims, y->ndim, y->dims, st);
    (void)err;
    qt_strided_copy(x, qt_dtype_size(t->dtype), y->ndim, y->dims, st, t->data, y->data);
    return 0;
}

/* backward: dy summed into dx over the broadcast axes, in output order (one
 * task: the sums are reductions) */
static int expand_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *y = qt_out(x, n, 0);
    const float *dy = qt_gout(x, n, 0);
    float *dx = qt_gin(x, n, 0);
    int64_t st[QT_MAXDIM], idx[QT_MAXDIM] = {0}, off = 0;
    if (!dx || !dy || qt_tensor_numel(y) == 0)
        return 0;
    if (t->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "backward is float32 only");
    qt_bcast_strides(t->ndim, t->dims, y->ndim, y->dims, st);
    for (int64_t o = 0, cnt = qt_tensor_numel(y); o < cnt; o++) {
        dx[off] += dy[o];
        for (int d = y->ndim - 1; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < y->dims[d])
                break;
            off -= st[d] * y->dims[d];
            idx[d] = 0;
        }
    }
    return 0;
}

const struct qt_op qt_op_expand = {
    .name = "Expand",
    .flags = QT_OPF_EMPTY,
    .infer = expand_infer,
    .fwd = expand_fwd,
    .bwd = expand_bwd,
    .quant = {.role = QT_QR_PASS}, /* moves values: input 0 and output share parameters */
};
