/* layout.h: shared machinery of the shape and layout operators (Reshape,
 * Transpose, Slice, Concat, Gather, Pad...).
 *
 * These operators move bytes, so they work on any dtype by element size:
 * int64 shape vectors flow through them while the planner folds PyTorch's
 * shape glue. Integer inputs that fix an output shape (Reshape's shape,
 * Slice's starts...) must be known at plan time. */
#ifndef QT_OPS_LAYOUT_H
#define QT_OPS_LAYOUT_H
#include "engine.h"

/* Output 0 = input 0, byte for byte. For QT_OPF_ALIAS ops the planner may have
 * given both the same buffer: then there is nothing to do. */
void qt_copy_input(const struct qt_exec *x, const struct qt_node *n);

/* Backward of ops that only move input 0's elements in order (Reshape,
 * Flatten, Identity, Squeeze, Unsqueeze): dx += dy. */
int qt_bwd_pass(struct qt_exec *x, const struct qt_node *n, struct qt_err *err);

/* Gradients of the ops that copy elements by strides (Slice, Transpose,
 * Split, ReduceMean, Pad), float32, one pass in order (never split, so a
 * position written twice sums in the same order at any thread count). For
 * every coordinate o over dims (row-major):
 *   scatter: dst[off + sum_d o_d * strides[d]] += src[o]
 *   gather:  dst[o] += scale * src[off + sum_d o_d * strides[d]] */
void qt_strided_scatter_add(int ndim, const int64_t *dims, const int64_t *strides, int64_t off, const float *src,
                            float *dst);
void qt_strided_gather_add(int ndim, const int64_t *dims, const int64_t *strides, int64_t off, const float *src,
                           float *dst, float scale);

/* Reads integer input i (int64 or int32) into v (at most max values) and sets
 * *cnt. QT_EUNSUPPORTED naming the node and `what` when the input is not known
 * at plan time, QT_EMODEL for another dtype, more than one dimension, or more
 * than max values. */
int qt_const_ints(struct qt_exec *x, const struct qt_node *n, int i, const char *what, int64_t *v, int max,
                  int *cnt, struct qt_err *err);

/* The INTS attribute `name` into v (at most max values); *cnt = -1 when it is
 * absent. QT_EMODEL naming the node for a wrong type or more than max values. */
int qt_attr_ints_max(const struct qt_node *n, const char *name, int64_t *v, int max, int *cnt,
                     struct qt_err *err);

/* The axes of Squeeze, Unsqueeze and the Reduce ops: the `axes` attribute
 * of the older opsets (n = -1 when absent), else input 1 of the newer ones. */
struct qt_axes {
    int n;
    int64_t v[QT_MAXDIM];
};
/* Op init for ops whose priv is a struct qt_axes (input 0 required). */
int qt_axes_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err);
/* The axes into v and *cnt: the attribute when given, else input 1 (known
 * at plan time); with neither, *cnt = 0, or when `required` the error
 * naming the node that input 'axes' is missing. */
int qt_axes_get(struct qt_exec *x, const struct qt_node *n, const struct qt_axes *a, int required, int64_t *v,
                int *cnt, struct qt_err *err);

/* Strided copy of es-byte elements: for every output coordinate o over dims
 * (row-major, 0 <= ndim <= 2 * QT_MAXDIM), dst[o] = src[sum_d o_d * strides[d]] (strides in
 * elements; 0 broadcasts, negative walks backwards). Split over blocks of
 * rows in parallel; the bytes never depend on the split. */
void qt_strided_copy(struct qt_exec *x, size_t es, int ndim, const int64_t *dims, const int64_t *strides,
                     const void *src, void *dst);

/* dst = src with its axes permuted: output axis k is input axis perm[k]. */
void qt_permute(struct qt_exec *x, size_t es, int ndim, const int64_t *in_dims, const int *perm, const void *src,
                void *dst);

/* Row-major strides (in elements) of dims (meaningless for an empty tensor). */
void qt_strides(int ndim, const int64_t *dims, int64_t *strides);

/* rows x len bytes: dst + r*dst_stride <- src + r*src_stride, in parallel. */
void qt_copy_rows(struct qt_exec *x, int64_t rows, size_t len, const void *src, size_t src_stride, void *dst,
                  size_t dst_stride);
#endif
