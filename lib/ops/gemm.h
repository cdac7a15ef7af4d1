/* gemm.h: the float matrix product shared by Gemm and MatMul.
 *
 * qt_gemm_rows computes rows [r0, r1) (at most QT_GEMM_ROWS) of
 *     Y = alpha * A' B' + beta * Y,   A' = ta ? A^T : A,  B' = tb ? B^T : B
 * with one BLAS call on a [QT_GEMM_ROWS, K] block packed in scratch (zero
 * rows past r1). The BLAS so always sees the same sizes and layout: OpenBLAS
 * picks other kernels for other sizes, and a row's result would otherwise
 * depend on the batch size it ran with. Callers split rows into tasks of
 * QT_GEMM_ROWS, so results depend neither on threads nor on the batch. */
#ifndef QT_OPS_GEMM_H
#define QT_OPS_GEMM_H
#include "engine.h"

#define QT_GEMM_ROWS 16 /* one SkylakeX sgemm tile; the batch-1 overhead stays small */

/* Floats of scratch qt_gemm_rows needs. */
static inline size_t qt_gemm_scratch(int64_t N, int64_t K) {
    return (size_t)QT_GEMM_ROWS * (size_t)(K + N);
}

void qt_gemm_rows(int64_t r0, int64_t r1, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, int ta,
                  const float *B, int64_t ldb, int tb, float beta, float *Y, int64_t ldy, float *scratch);
/* Gradients of Y[M, N] = alpha * A' B' (A' = ta ? A^T : A, B' likewise):
 * dA += alpha * dY B'^T (in A's layout), dB += alpha * A'^T dY (in B's
 * layout); either may be NULL. One BLAS call each, in the caller's thread. */
void qt_gemm_bwd(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, int ta, const float *B,
                 int64_t ldb, int tb, const float *dY, float *dA, float *dB);
#endif
