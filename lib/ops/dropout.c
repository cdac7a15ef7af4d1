/* dropout.c: ONNX Dropout in inference mode: y = x, the optional mask all
 * true. training_mode (input 2, opset 12+) must be absent or a constant
 * false: training runs through the engine's training path.
 * Gradient (training): dx = dy * mask / (1 - ratio). */
#include "ops/layout.h"

#include <string.h>

static int dropout_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs an input");
    return 0;
}

static int dropout_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *tm = qt_in(x, n, 2);
    if (tm) {
        if (!qt_in_const(x, n, 2))
            return qt_node_err(n, QT_EUNSUPPORTED, err, "training_mode is not known before the run");
        if (qt_tensor_numel(tm) != 1 || qt_tensor_get(tm, 0) != 0)
            return qt_node_err(n, QT_EUNSUPPORTED, err, "training_mode=true is not supported for inference");
    }
    if (qt_set_out(x, n, 0, t->dtype, t->ndim, t->dims, err))
        return err->code;
    if (qt_out(x, n, 1))
        return qt_set_out(x, n, 1, QT_BOOL, t->ndim, t->dims, err);
    return 0;
}

static int dropout_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct qt_tensor *m = qt_out(x, n, 1);
    (void)err;
    qt_copy_input(x, n);
    if (m)
        memset(m->data, 1, m->nbytes);
    return 0;
}

const struct qt_op qt_op_dropout = {
    .name = "Dropout",
    .flags = QT_OPF_ALIAS,
    .init = dropout_init,
    .infer = dropout_infer,
    .fwd = dropout_fwd,
};
