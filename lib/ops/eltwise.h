/* eltwise.h: shared machinery of element-wise operators.
 *
 * Unary ops: output = f(input), same dtype and shape.
 * Binary ops: numpy broadcasting; the loop walks the output in order and
 * steps each input by its own broadcast strides. */
#ifndef QT_ELTWISE_H
#define QT_ELTWISE_H
#include "engine.h"

/* Output 0 gets input 0's dtype and shape. */
int qt_unary_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err);
/* y[i] = fn(x[i], ctx) over float32 in parallel. QT_EUNSUPPORTED for other dtypes. */
typedef void (*qt_unary_f32_fn)(const float *x, float *y, int64_t n, const void *ctx);
int qt_unary_run_f32(struct qt_exec *x, const struct qt_node *n, qt_unary_f32_fn fn, const void *ctx,
                     struct qt_err *err);

/* Backward of a float32 unary op: dx[i] += g(x[i], y[i], dy[i], ctx), in
 * parallel over fixed blocks. A no-op when the input needs no gradient. */
typedef void (*qt_unary_bwd_fn)(const float *x, const float *y, const float *dy, float *dx, int64_t n,
                                const void *ctx);
int qt_unary_bwd_f32(struct qt_exec *x, const struct qt_node *n, qt_unary_bwd_fn fn, const void *ctx);

enum qt_binop {
    QT_BIN_ADD, QT_BIN_SUB, QT_BIN_MUL, QT_BIN_DIV, QT_BIN_POW, QT_BIN_MIN, QT_BIN_MAX,
    QT_BIN_EQUAL, QT_BIN_LESS, QT_BIN_GREATER, QT_BIN_AND, QT_BIN_OR, QT_BIN_MOD, QT_BIN_PRELU,
    QT_BIN_XOR, QT_BIN_FMOD,
};
/* Broadcast shape; output dtype = input dtype (bool for comparisons). Both
 * inputs must have the same dtype. */
int qt_binary_infer(struct qt_exec *x, const struct qt_node *n, enum qt_binop op, struct qt_err *err);
/* Computes output 0 = a op b for float32, int64, int32 (and bool for AND/OR). */
int qt_binary_run(struct qt_exec *x, const struct qt_node *n, enum qt_binop op, struct qt_err *err);

/* Backward of Add, Sub, Mul, Div (float32): each input's gradient is the
 * element gradient summed over the dimensions it was broadcast along. */
int qt_binary_bwd(struct qt_exec *x, const struct qt_node *n, enum qt_binop op, struct qt_err *err);

/* Broadcast iteration helper: strides of an input of dims `d` (nd dims)
 * against an output of `ond` dims, 0 where the input broadcasts. */
void qt_bcast_strides(int nd, const int64_t *d, int ond, const int64_t *od, int64_t *strides);
#endif
