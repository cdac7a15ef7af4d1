/* reducemean.c: ONNX ReduceMean (opsets 7-21; axes is an input from opset 18).
 * y = mean of x over the reduced axes (integer inputs: truncated).
 * Gradient (training): dx = dy / (reduced count), broadcast back.
 * Axes, keepdims, noop_with_empty_axes and types as in reduce.h. */
#include "ops/reduce.h"

static int reducemean_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    return qt_reduce_run(x, n, QT_REDUCE_MEAN, err);
}

const struct qt_op qt_op_reducemean = {
    .name = "ReduceMean",
    .init = qt_reduce_init,
    .infer = qt_reduce_infer,
    .fwd = reducemean_fwd,
    .bwd = qt_reduce_mean_bwd,
    .quant = {.unit = qt_ln_unit}, /* the first node of a decomposed LayerNorm */
};
