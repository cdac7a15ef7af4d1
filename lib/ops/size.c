/* size.c: ONNX Size (opsets 7-21).
 *
 * y = the input's element count, an int64 scalar. Depends only on the shape,
 * so the planner folds it to a constant. Not differentiable. */
#include "engine.h"

static int size_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    if (!qt_in(x, n, 0))
        return qt_node_err(n, QT_EMODEL, err, "needs input data");
    return qt_set_out(x, n, 0, QT_INT64, 0, NULL, err);
}

static int size_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    *(int64_t *)qt_out(x, n, 0)->data = qt_tensor_numel(qt_in(x, n, 0));
    return 0;
}

const struct qt_op qt_op_size = {
    .name = "Size",
    .flags = QT_OPF_SHAPE_ONLY | QT_OPF_EMPTY,
    .infer = size_infer,
    .fwd = size_fwd,
};
