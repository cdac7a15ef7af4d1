/* concat.c: ONNX Concat (opsets 7-21), any dtype.
 *
 * y = the inputs joined along `axis` (negative from opset 11); all other
 * dims must match. Empty inputs of another rank are skipped, as ONNX Runtime
 * does (exporters emit them for shape vectors).
 * Gradient (training): dx_i = the slice of dy that x_i filled. */
#include "ops/layout.h"

static int concat_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    int64_t *axis = calloc(1, sizeof *axis);
    if (!axis)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = axis;
    if (n->nin < 1)
        return qt_node_err(n, QT_EMODEL, err, "needs at least one input");
    for (int i = 0; i < n->nin; i++)
        if (n->in[i] < 0)
            return qt_node_err(n, QT_EMODEL, err, "input %d is missing", i);
    if (!qt_attr_find(n, "axis"))
        return qt_node_err(n, QT_EMODEL, err, "attribute 'axis' is missing");
    *axis = qt_attr_int(n, "axis", 0, err);
    return err->code;
}

/* The input every other is checked against: the first non-empty one. */
static const struct qt_tensor *concat_ref(struct qt_exec *x, const struct qt_node *n) {
    for (int i = 0; i < n->nin; i++)
        if (qt_tensor_numel(qt_in(x, n, i)) > 0)
            return qt_in(x, n, i);
    return qt_in(x, n, 0);
}

static int skipped(const struct qt_tensor *t, const struct qt_tensor *ref) {
    return t->ndim != ref->ndim && qt_tensor_numel(t) == 0;
}

static int concat_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *ref = concat_ref(x, n);
    int64_t d[QT_MAXDIM];
    char b1[160], b2[160];
    int ax;
    if (ref->ndim < 1)
        return qt_node_err(n, QT_EMODEL, err, "cannot concatenate scalars");
    if (qt_axis(n, *(const int64_t *)n->priv, ref->ndim, &ax, err))
        return err->code;
    for (int k = 0; k < ref->ndim; k++)
        d[k] = k == ax ? 0 : ref->dims[k];
    for (int i = 0; i < n->nin; i++) {
        const struct qt_tensor *t = qt_in(x, n, i);
        if (t->dtype != ref->dtype)
            return qt_node_err(n, QT_EMODEL, err, "input %d has type %s, input 0 %s", i, qt_dtype_name(t->dtype),
                               qt_dtype_name(ref->dtype));
        if (skipped(t, ref))
            continue;
        int ok = t->ndim == ref->ndim;
        for (int k = 0; ok && k < t->ndim; k++)
            ok = k == ax || t->dims[k] == ref->dims[k];
        if (!ok)
            return qt_node_err(n, QT_EMODEL, err, "input %d %s does not match %s along axis %d", i,
                               qt_dims_str(t->ndim, t->dims, b1, sizeof b1),
                               qt_dims_str(ref->ndim, ref->dims, b2, sizeof b2), ax);
        if (t->dims[ax] > ((int64_t)1 << 40) - d[ax])
            return qt_node_err(n, QT_EMODEL, err, "output is too large");
        d[ax] += t->dims[ax];
    }
    return qt_set_out(x, n, 0, ref->dtype, ref->ndim, d, err);
}

static int concat_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *ref = concat_ref(x, n);
    struct qt_tensor *y = qt_out(x, n, 0);
    size_t es = qt_dtype_size(y->dtype);
    int ax;
    if (qt_axis(n, *(const int64_t *)n->priv, ref->ndim, &ax, err))
        return err->code;
    if (qt_tensor_numel(y) == 0)
        return 0;
    int64_t outer = qt_numel(ax, y->dims), inner = qt_numel(y->ndim - ax - 1, y->dims + ax + 1);
    size_t orow = (size_t)(y->dims[ax] * inner) * es, off = 0;
    for (int i = 0; i < n->nin; i++) {
        const struct qt_tensor *t = qt_in(x, n, i);
        if (skipped(t, ref))
            continue;
        size_t row = (size_t)(t->dims[ax] * inner) * es;
        qt_copy_rows(x, outer, row, t->data, row, (unsigned char *)y->data + off, orow);
        off += row;
    }
    return 0;
}

static int concat_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *ref = concat_ref(x, n), *y = qt_out(x, n, 0);
    const float *dy = qt_gout(x, n, 0);
    int ax;
    if (qt_axis(n, *(const int64_t *)n->priv, ref->ndim, &ax, err))
        return err->code;
    int64_t outer = qt_numel(ax, y->dims), inner = qt_numel(y->ndim - ax - 1, y->dims + ax + 1);
    int64_t orow = y->dims[ax] * inner, off = 0;
    for (int i = 0; i < n->nin; i++) {
        const struct qt_tensor *t = qt_in(x, n, i);
        float *dx = qt_gin(x, n, i);
        if (skipped(t, ref))
            continue;
        int64_t row = t->dims[ax] * inner;
        for (int64_t o = 0; dx && o < outer; o++)
            for (int64_t k = 0; k < row; k++)
                dx[o * row + k] += dy[o * orow + off + k];
        off += row;
    }
    return 0;
}

const struct qt_op qt_op_concat = {
    .name = "Concat",
    .flags = QT_OPF_EMPTY,
    .init = concat_init,
    .infer = concat_infer,
    .fwd = concat_fwd,
    .bwd = concat_bwd,
    .quant = {.role = QT_QR_CONCAT},
};
