/* reshape.c: ONNX Reshape (opsets 7-21), any dtype.
 *
 * y = x with the shape given by input 1, which must be known at plan time:
 * 0 copies the input's dim at that position (unless allowzero = 1, opset 14,
 * where 0 is a zero-size dim), -1 is inferred from the element count.
 * Output 0 aliases the input buffer when the planner allows it.
 * Gradient (training): dx = dy reshaped back. */
#include "ops/layout.h"

static int reshape_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    int *allowzero = calloc(1, sizeof *allowzero);
    if (!allowzero)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = allowzero;
    if (n->nin < 2 || n->in[0] < 0 || n->in[1] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs data and shape");
    *allowzero = qt_attr_int(n, "allowzero", 0, err) != 0;
    return err->code;
}

static int reshape_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int allowzero = *(const int *)n->priv;
    int64_t d[QT_MAXDIM], known = 1;
    int nd, infer = -1;
    char b1[160], b2[160];
    if (qt_const_ints(x, n, 1, "shape", d, QT_MAXDIM, &nd, err))
        return err->code;
    int64_t ne = qt_tensor_numel(t);
    for (int i = 0; i < nd; i++) {
        if (d[i] == 0 && !allowzero) {
            if (i >= t->ndim)
                return qt_node_err(n, QT_EMODEL, err, "shape[%d] = 0 copies a dim the input %s does not have", i,
                                   qt_dims_str(t->ndim, t->dims, b1, sizeof b1));
            d[i] = t->dims[i];
        }
        if (d[i] == -1) {
            if (infer >= 0)
                return qt_node_err(n, QT_EMODEL, err, "shape has more than one -1");
            infer = i;
        } else if (d[i] < 0) {
            return qt_node_err(n, QT_EMODEL, err, "shape[%d] = %lld is negative", i, (long long)d[i]);
        } else if (d[i] && known > INT64_MAX / d[i]) {
            return qt_node_err(n, QT_EMODEL, err, "shape %s is too large", qt_dims_str(nd, d, b1, sizeof b1));
        } else {
            known *= d[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || ne % known)
            return qt_node_err(n, QT_EMODEL, err, "cannot reshape %s to %s",
                               qt_dims_str(t->ndim, t->dims, b1, sizeof b1), qt_dims_str(nd, d, b2, sizeof b2));
        d[infer] = ne / known;
    } else if (known != ne) {
        return qt_node_err(n, QT_EMODEL, err, "cannot reshape %s to %s",
                           qt_dims_str(t->ndim, t->dims, b1, sizeof b1), qt_dims_str(nd, d, b2, sizeof b2));
    }
    return qt_set_out(x, n, 0, t->dtype, nd, d, err);
}

static int reshape_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    qt_copy_input(x, n);
    return 0;
}

const struct qt_op qt_op_reshape = {
    .name = "Reshape",
    .flags = QT_OPF_ALIAS | QT_OPF_EMPTY,
    .init = reshape_init,
    .infer = reshape_infer,
    .fwd = reshape_fwd,
    .bwd = qt_bwd_pass,
    .quant = {.role = QT_QR_PASS},
};
