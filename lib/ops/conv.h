/* conv.h: convolution geometry shared by Conv and the quantized kernels. */
#ifndef QT_OPS_CONV_H
#define QT_OPS_CONV_H
#include "engine.h"

enum { QT_PAD_NOTSET, QT_PAD_SAME_UPPER, QT_PAD_SAME_LOWER, QT_PAD_VALID };

struct qt_conv { /* attributes */
    int64_t group;
    int nkernel;
    int64_t kernel[2], strides[2], dilations[2], pads[4];
    int auto_pad;
};

struct qt_conv_shape { /* 1-D convolutions have ih = kh = 1 */
    int64_t n, c, m, group;
    int64_t ih, iw, kh, kw, oh, ow;
    int64_t sh, sw, dh, dw, ph, pw, ph_end, pw_end;
};

int qt_conv_parse(struct qt_node *n, struct qt_conv *p, struct qt_err *err);
int qt_conv_params(const struct qt_node *n, const struct qt_tensor *x, const struct qt_tensor *w,
                   const struct qt_conv *p, struct qt_conv_shape *s, struct qt_err *err);
int qt_conv_is_depthwise(const struct qt_conv_shape *s);
/* The auto_pad attribute of Conv and the pools as QT_PAD_*; QT_EMODEL for an
 * unknown value. */
int qt_auto_pad(const struct qt_node *n, int *out, struct qt_err *err);
int qt_conv_is_pointwise(const struct qt_conv_shape *s);
/* Y[m][n] = act(bias[m] + sum_k W[m][k] X[k][n]) for m < M, n < N
 * (lib/ops/convgemm.c); bias may be NULL. Returns 0 when this CPU has no
 * direct kernel (the caller then uses the BLAS). */
int qt_conv_gemm(int64_t M, int64_t N, int64_t K, const float *W, int64_t ldw, const float *X, int64_t ldx,
                 const float *bias, const struct qt_post *post, float *Y, int64_t ldy);
/* One channel of a 3x3 depthwise convolution (stride 1 or 2 in both
 * directions, dilation 1) read straight from the plane x, activation
 * applied (lib/ops/dw3x3.c): the bytes of conv.c's padded-plane loops.
 * Returns 0 for other shapes or without AVX-512 (the caller then runs
 * those loops). */
int qt_dw3x3(const float *x, const struct qt_conv_shape *s, const float *w, float b, float *y,
             const struct qt_post *post);
/* 1 when qt_conv_gemm and qt_gemm_dot run on this CPU. */
int qt_gemm_direct(void);
/* Y[m*ldym + n*ldyn] = act(bias[m] + sum_k W[m][k] XT[n][k]) for m < M,
 * n < N: both operands contiguous in k (a Gemm with transB, or a Conv on a
 * transposed small map). Returns 0 when this CPU has no direct kernel. */
int qt_gemm_dot(int64_t M, int64_t N, int64_t K, const float *W, int64_t ldw, const float *XT, int64_t ldxt,
                const float *bias, const struct qt_post *post, float *Y, int64_t ldym, int64_t ldyn);
#endif
