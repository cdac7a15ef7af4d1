/* reduce.h: shared machinery of ReduceSum, ReduceMean, ReduceMax, ReduceMin.
 *
 * Axes come from the `axes` attribute (before opset 18, 13 for ReduceSum)
 * or from input 1 (after), which must then be known at plan time; no axes
 * reduce everything unless noop_with_empty_axes = 1 (output = input).
 * keepdims (default 1) keeps reduced axes as 1. float32 (accumulated in
 * double), int32 and int64 (accumulated in int64, wrapping). Each output
 * element is reduced by one task in row-major order of the reduced axes, so
 * results do not depend on the thread count. */
#ifndef QT_OPS_REDUCE_H
#define QT_OPS_REDUCE_H
#include "engine.h"

enum qt_reduce_kind { QT_REDUCE_SUM, QT_REDUCE_MEAN, QT_REDUCE_MAX, QT_REDUCE_MIN };

int qt_reduce_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err);
int qt_reduce_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err);
int qt_reduce_run(struct qt_exec *x, const struct qt_node *n, enum qt_reduce_kind kind, struct qt_err *err);
/* ReduceMean's backward: dx += dy / (reduced count), broadcast back. */
int qt_reduce_mean_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err);
#endif
