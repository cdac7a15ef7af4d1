/* unsqueeze.c: ONNX Unsqueeze (opsets 7-21), any dtype.
 *
 * y = x with size-1 axes inserted at the listed positions of the output
 * (the `axes` attribute before opset 13, input 1 from 13, known at plan
 * time; negative counts from the output's end). Output 0 aliases the input
 * buffer when the planner allows it.
 * Gradient (training): dx = dy reshaped back. */
#include "ops/layout.h"

static int unsqueeze_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    unsigned char ins[QT_MAXDIM] = {0};
    int64_t axes[QT_MAXDIM], d[QT_MAXDIM];
    int na;
    if (qt_axes_get(x, n, n->priv, 1, axes, &na, err))
        return err->code;
    int ond = t->ndim + na;
    if (ond > QT_MAXDIM)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "output would have %d dims (at most %d)", ond, QT_MAXDIM);
    for (int i = 0; i < na; i++) {
        int ax;
        if (qt_axis(n, axes[i], ond, &ax, err))
            return err->code;
        if (ins[ax])
            return qt_node_err(n, QT_EMODEL, err, "axis %d is listed twice", ax);
        ins[ax] = 1;
    }
    for (int i = 0, k = 0; i < ond; i++)
        d[i] = ins[i] ? 1 : t->dims[k++];
    return qt_set_out(x, n, 0, t->dtype, ond, d, err);
}

static int unsqueeze_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    qt_copy_input(x, n);
    return 0;
}

const struct qt_op qt_op_unsqueeze = {
    .name = "Unsqueeze",
    .flags = QT_OPF_ALIAS | QT_OPF_EMPTY,
    .init = qt_axes_init,
    .infer = unsqueeze_infer,
    .fwd = unsqueeze_fwd,
    .bwd = qt_bwd_pass,
    .quant = {.role = QT_QR_PASS},
};
