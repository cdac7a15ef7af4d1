/* flatten.c: ONNX Flatten (opsets 7-21), any dtype.
 *
 * y = x reshaped to [d0 * ... * d(axis-1), d(axis) * ... * d(r-1)]; axis
 * (default 1) may be r, or negative from opset 11. Output 0 aliases the
 * input buffer when the planner allows it.
 * Gradient (training): dx = dy reshaped back. */
#include "ops/layout.h"

static int flatten_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    int64_t *axis = qt_node_priv(n, sizeof *axis, err);
    if (!axis)
        return err->code;
    *axis = qt_attr_int(n, "axis", 1, err);
    return err->code;
}

static int flatten_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t axis = *(const int64_t *)n->priv;
    if (axis < -t->ndim || axis > t->ndim)
        return qt_node_err(n, QT_EMODEL, err, "axis %lld is out of range for %d dims", (long long)axis, t->ndim);
    if (axis < 0)
        axis += t->ndim;
    int64_t d[2] = {qt_numel((int)axis, t->dims), qt_numel(t->ndim - (int)axis, t->dims + axis)};
    return qt_set_out(x, n, 0, t->dtype, 2, d, err);
}

static int flatten_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    qt_copy_input(x, n);
    return 0;
}

const struct qt_op qt_op_flatten = {
    .name = "Flatten",
    .flags = QT_OPF_ALIAS,
    .init = flatten_init,
    .infer = flatten_infer,
    .fwd = flatten_fwd,
    .bwd = qt_bwd_pass,
    .quant = {.role = QT_QR_PASS},
};
