/* reducemin.c: ONNX ReduceMin (opsets 7-21; axes is an input from opset 18).
 * y = min of x over the reduced axes (a NaN counts only as the first element,
 * as in ONNX Runtime).
 * No backward: a training plan through this op fails, naming the node.
 * Axes, keepdims, noop_with_empty_axes and types as in reduce.h. */
#include "ops/reduce.h"

static int reducemin_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    return qt_reduce_run(x, n, QT_REDUCE_MIN, err);
}

const struct qt_op qt_op_reducemin = {
    .name = "ReduceMin",
    .init = qt_reduce_init,
    .infer = qt_reduce_infer,
    .fwd = reducemin_fwd,
};
