/* squeeze.c: ONNX Squeeze (opsets 7-21), any dtype.
 *
 * y = x without the listed axes, which must have size 1 (the `axes`
 * attribute before opset 13, input 1 from 13, known at plan time); without
 * axes every size-1 axis goes. Output 0 aliases the input buffer when the
 * planner allows it.
 * Gradient (training): dx = dy reshaped back. */
#include "ops/layout.h"

static int squeeze_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    unsigned char drop[QT_MAXDIM] = {0};
    int64_t axes[QT_MAXDIM], d[QT_MAXDIM];
    int na, nd = 0;
    if (qt_axes_get(x, n, n->priv, 0, axes, &na, err))
        return err->code;
    for (int i = 0; i < na; i++) {
        int ax;
        if (qt_axis(n, axes[i], t->ndim, &ax, err))
            return err->code;
        if (t->dims[ax] != 1)
            return qt_node_err(n, QT_EMODEL, err, "axis %d has size %lld, not 1", ax, (long long)t->dims[ax]);
        drop[ax] = 1;
    }
    for (int i = 0; i < t->ndim; i++)
        if (!(na ? drop[i] : t->dims[i] == 1))
            d[nd++] = t->dims[i];
    return qt_set_out(x, n, 0, t->dtype, nd, d, err);
}

static int squeeze_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    qt_copy_input(x, n);
    return 0;
}

const struct qt_op qt_op_squeeze = {
    .name = "Squeeze",
    .flags = QT_OPF_ALIAS | QT_OPF_EMPTY,
    .init = qt_axes_init,
    .infer = squeeze_infer,
    .fwd = squeeze_fwd,
    .bwd = qt_bwd_pass,
    .quant = {.role = QT_QR_PASS},
};
