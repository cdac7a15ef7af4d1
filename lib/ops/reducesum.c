/* reducesum.c: ONNX ReduceSum (opsets 7-21; axes is an input from opset 13).
 * y = sum of x over the reduced axes.
 * No backward: a training plan through this op fails, naming the node.
 * Axes, keepdims, noop_with_empty_axes and types as in reduce.h. */
#include "ops/reduce.h"

static int reducesum_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    return qt_reduce_run(x, n, QT_REDUCE_SUM, err);
}

const struct qt_op qt_op_reducesum = {
    .name = "ReduceSum",
    .init = qt_reduce_init,
    .infer = qt_reduce_infer,
    .fwd = reducesum_fwd,
};
