/* convgemm.c: the direct matrix product of Conv (1x1 and im2col'd).
 *
 *     Y[m][n] = act(bias[m] + sum_k W[m][k] X[k][n]),  m < M, n < N
 *
 * W is the Conv weight as it lies ([M][K], row stride ldw), X the input
 * channels (or im2col rows) as they lie ([K][N], row stride ldx); only
 * strips of X are copied (conv_gemm512_kb). An AVX-512 micro-kernel keeps a 6 x 64 block of Y in 24 registers
 * over a block of KC terms of K (one fused multiply-add per term, k in
 * increasing order), reading each X row of the strip once per 6 output
 * channels and W by broadcast. K is taken in blocks of KC (KC_PACK where
 * strips are copied, conv_gemm512_kb): the first block
 * starts from the bias, each later one from the partial sums it stored in Y
 * (a float stored and loaded back is the same float, so the chain of
 * fused multiply-adds is the one an unblocked loop computes); Relu or Clip
 * are applied in registers before the last block's store. Per K block the
 * 64-column strips are the outer loop and the 6-row panels the inner one,
 * so the strip (KC x 64 floats, 64 KB) is read from L1/L2 by every panel
 * instead of the whole X block (K x N, megabytes for ResNet's 3x3 layers
 * through im2col) streaming from L3 once per 6 output channels.
 *
 * Each Y element is summed the same way whatever block or thread computes
 * it, so results do not depend on the blocking or the thread count. On a CPU
 * without AVX-512 qt_conv_gemm returns 0 and the caller uses the BLAS. */
#include "ops/conv.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define MR 6    /* output channels per micro-tile */
#define KC 256  /* terms of K per pass over Y */
#define KC_PACK 128 /* the same, when a strip of X is copied: 32 KB, held in L1 */

#define AVX512 __attribute__((target("avx512f")))

/* Relu: v > 0 ? v : 0 (max returns its second operand for NaN); Clip:
 * v < lo ? lo : v, then v > hi ? hi : v, as the operators compute them */
static AVX512 inline __m512 act(int kind, __m512 v, __m512 lo, __m512 hi) {
    if (kind == QT_POST_RELU)
        return _mm512_max_ps(v, lo);
    if (kind == QT_POST_CLIP)
        return _mm512_min_ps(hi, _mm512_max_ps(lo, v));
    return v;
}

/* The micro-tiles: 6 rows x NV vectors of 16 columns in named registers
 * (an array of accumulators was spilled to the stack by gcc 12), written
 * out by the preprocessor. tile4 is the full 64-column strip; tileNm mask
 * their last vector (MASK = 1). tile4m with an all-ones mask measured 3-4%
 * slower than tile4 (the masked load costs an extra uop), hence both. Each
 * accumulator c<r><v> gets one fused multiply-add per k, in k order. */
#define CG_R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define CG_V1(X, r) X(0, r)
#define CG_V2(X, r) X(0, r) X(1, r)
#define CG_V3(X, r) X(0, r) X(1, r) X(2, r)
#define CG_V4(X, r) X(0, r) X(1, r) X(2, r) X(3, r)
#define CG_RV(NV, X) CG_V##NV(X, 0) CG_V##NV(X, 1) CG_V##NV(X, 2) CG_V##NV(X, 3) CG_V##NV(X, 4) CG_V##NV(X, 5)
#define CG_W(r) const float *w##r = w[r];
#define CG_INIT(r) __m512 i##r = bias ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
/* the first K block starts at the bias, a later one at the sums in Y */
#define CG_ACC(v, r)                                                                                           \
    __m512 c##r##v = first || !y[r] ? i##r                                                                     \
                     : CG_MASKED(v) ? _mm512_maskz_loadu_ps(last, y[r] + 16 * (v))                              \
                                    : _mm512_loadu_ps(y[r] + 16 * (v));
#define CG_MASKED(v) (cg_mask && (v) == cg_nv - 1)
#define CG_LOAD(v, r_)                                                                                         \
    __m512 b##v = CG_MASKED(v) ? _mm512_maskz_loadu_ps(last, xk + 16 * (v)) : _mm512_loadu_ps(xk + 16 * (v));
#define CG_FMA(v, r) c##r##v = _mm512_fmadd_ps(a##r, b##v, c##r##v);
#define CG_ROW(NV, r)                                                                                          \
    __m512 a##r = _mm512_set1_ps(w##r[k]);                                                                     \
    CG_V##NV(CG_FMA, r)
#define CG_STORE(v, r)                                                                                         \
    if (y[r]) {                                                                                                \
        if (CG_MASKED(v))                                                                                      \
            _mm512_mask_storeu_ps(y[r] + 16 * (v), last, act(kind, c##r##v, lo, hi));                         \
        else                                                                                                   \
            _mm512_storeu_ps(y[r] + 16 * (v), act(kind, c##r##v, lo, hi));                                     \
    }
#define CG_TILE(name, NV, MASK)                                                                                \
    static AVX512 void name(__mmask16 last, int64_t K, const float *const *w, const float *x, int64_t ldx,     \
                            const float *bias, const struct qt_post *post, float *const *y, int first,         \
                            int final) {                                                                       \
        enum { cg_nv = NV, cg_mask = MASK };                                                                   \
        int kind = final ? post->kind : QT_POST_NONE;                                                          \
        (void)last; /* tile4: full strips only */                                                              \
        CG_R6(CG_W)                                                                                            \
        CG_R6(CG_INIT)                                                                                         \
        CG_RV(NV, CG_ACC)                                                                                      \
        for (int64_t k = 0; k < K; k++) {                                                                      \
            const float *xk = x + k * ldx;                                                                     \
            CG_V##NV(CG_LOAD, 0)                                                                               \
            CG_ROW(NV, 0) CG_ROW(NV, 1) CG_ROW(NV, 2) CG_ROW(NV, 3) CG_ROW(NV, 4) CG_ROW(NV, 5)                \
        }                                                                                                      \
        __m512 lo = _mm512_set1_ps(post->kind == QT_POST_CLIP ? post->lo : 0.f);                              \
        __m512 hi = _mm512_set1_ps(post->hi);                                                                  \
        CG_RV(NV, CG_STORE)                                                                                    \
    }
CG_TILE(tile4, 4, 0)
CG_TILE(tile1m, 1, 1)
CG_TILE(tile2m, 2, 1)
CG_TILE(tile3m, 3, 1)
CG_TILE(tile4m, 4, 1)

typedef void (*tile_fn)(__mmask16, int64_t, const float *const *, const float *, int64_t, const float *,
                        const struct qt_post *, float *const *, int, int);
static const tile_fn tail_tiles[5] = {NULL, tile1m, tile2m, tile3m, tile4m};

/* one K block [k0, k0 + kc): strips outer, 6-row panels inner. When more
 * than two panels read a strip whose rows lie apart (a 1x1 convolution's
 * input planes), the strip is first copied into a contiguous 32 KB buffer
 * (kc <= KC_PACK) that stays in L1 for all panels: rows 4 KB apart share L1
 * sets, and the copy let the kernel run at 135-145 GFLOP/s instead of
 * 105-125 on 1x1 layers of MobileNetV1 (lib/test harness shapes). Copying
 * moves floats only: every output's chain of multiply-adds is unchanged. */
static AVX512 void conv_gemm512_kb(int64_t M, int64_t N, int64_t k0, int64_t kc, int final, const float *W,
                                   int64_t ldw, const float *X, int64_t ldx, const float *bias,
                                   const struct qt_post *post, float *Y, int64_t ldy) {
    static _Thread_local float strip[KC_PACK * 64] __attribute__((aligned(64)));
    int pack = kc <= KC_PACK && ldx > 64 && M > 2 * MR;
    for (int64_t n0 = 0; n0 < N;) {
        /* 64-column strips, then one of 1 to 4 vectors, the last masked */
        int64_t nn = N - n0 < 64 ? N - n0 : 64;
        int nv = (int)((nn + 15) / 16);
        __mmask16 last = (__mmask16)((1u << (nn - 16 * (nv - 1))) - 1);
        const float *xs = X + k0 * ldx + n0;
        int64_t lds = ldx;
        if (pack) { /* vector moves: memcpy's rep movsq took a quarter of the time */
            for (int64_t k = 0; k < kc; k++)
                for (int v = 0; v < nv; v++) {
                    const float *src = xs + k * ldx + 16 * v;
                    __m512 e = v < nv - 1 ? _mm512_loadu_ps(src) : _mm512_maskz_loadu_ps(last, src);
                    _mm512_store_ps(strip + k * 64 + 16 * v, e);
                }
            xs = strip;
            lds = 64;
        }
        for (int64_t m0 = 0; m0 < M; m0 += MR) {
            const float *w[MR];
            float b[MR], *y[MR];
            for (int r = 0; r < MR; r++) {
                int64_t m = m0 + r < M ? m0 + r : M - 1; /* past M: repeat the last row, not stored */
                w[r] = W + m * ldw + k0;
                b[r] = bias ? bias[m] : 0.f;
                y[r] = m0 + r < M ? Y + m * ldy + n0 : NULL;
            }
            const float *bp = bias ? b : NULL;
            if (n0 == 0 && m0 + MR < M) /* the next panel's weights, on their first strip */
                for (int r = 0; r < MR && m0 + MR + r < M; r++)
                    for (int64_t k = 0; k < kc; k += 16)
                        _mm_prefetch((const char *)(W + (m0 + MR + r) * ldw + k0 + k), _MM_HINT_T0);
            if (nn == 64)
                tile4(last, kc, w, xs, lds, bp, post, y, k0 == 0, final);
            else
                tail_tiles[nv](last, kc, w, xs, lds, bp, post, y, k0 == 0, final);
        }
        n0 += nn;
    }
}

static AVX512 void conv_gemm512(int64_t M, int64_t N, int64_t K, const float *W, int64_t ldw, const float *X,
                                int64_t ldx, const float *bias, const struct qt_post *post, float *Y,
                                int64_t ldy) {
    int64_t k0 = 0;
    do { /* K = 0: one empty block, Y = act(bias) */
        int64_t kb = ldx > 64 && M > 2 * MR ? KC_PACK : KC; /* conv_gemm512_kb copies strips of KC_PACK */
        int64_t kc = K - k0 < kb ? K - k0 : kb;
        conv_gemm512_kb(M, N, k0, kc, k0 + kc == K, W, ldw, X, ldx, bias, post, Y, ldy);
        k0 += kc;
    } while (k0 < K);
}

/* The dot form, for few columns (a 7x7 map, a Gemm on a small batch):
 * Y[m*ldym + n*ldyn] = act(bias[m] + sum_k W[m][k] XT[n][k]), both operands
 * contiguous in k. An 8 x 3 tile of (m, n) pairs keeps 24 vector sums over
 * 16 values of k each (lane j sums k = j mod 16, k increasing), then adds the
 * 16 lanes pairwise in a fixed tree. */
#define DR 8
#define DC 3
static AVX512 inline float hsum(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

static AVX512 void dot_tile(int64_t K, const float *const *w, const float *const *xt, float *acc) {
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c02 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps(), c12 = _mm512_setzero_ps(), c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c22 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(), c32 = _mm512_setzero_ps(), c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c42 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps(), c52 = _mm512_setzero_ps(), c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c62 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps(), c72 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 b0 = _mm512_loadu_ps(xt[0] + k);
        __m512 b1 = _mm512_loadu_ps(xt[1] + k);
        __m512 b2 = _mm512_loadu_ps(xt[2] + k);
        __m512 a0 = _mm512_loadu_ps(w[0] + k);
        c00 = _mm512_fmadd_ps(a0, b0, c00); c01 = _mm512_fmadd_ps(a0, b1, c01); c02 = _mm512_fmadd_ps(a0, b2, c02);
        __m512 a1 = _mm512_loadu_ps(w[1] + k);
        c10 = _mm512_fmadd_ps(a1, b0, c10); c11 = _mm512_fmadd_ps(a1, b1, c11); c12 = _mm512_fmadd_ps(a1, b2, c12);
        __m512 a2 = _mm512_loadu_ps(w[2] + k);
        c20 = _mm512_fmadd_ps(a2, b0, c20); c21 = _mm512_fmadd_ps(a2, b1, c21); c22 = _mm512_fmadd_ps(a2, b2, c22);
        __m512 a3 = _mm512_loadu_ps(w[3] + k);
        c30 = _mm512_fmadd_ps(a3, b0, c30); c31 = _mm512_fmadd_ps(a3, b1, c31); c32 = _mm512_fmadd_ps(a3, b2, c32);
        __m512 a4 = _mm512_loadu_ps(w[4] + k);
        c40 = _mm512_fmadd_ps(a4, b0, c40); c41 = _mm512_fmadd_ps(a4, b1, c41); c42 = _mm512_fmadd_ps(a4, b2, c42);
        __m512 a5 = _mm512_loadu_ps(w[5] + k);
        c50 = _mm512_fmadd_ps(a5, b0, c50); c51 = _mm512_fmadd_ps(a5, b1, c51); c52 = _mm512_fmadd_ps(a5, b2, c52);
        __m512 a6 = _mm512_loadu_ps(w[6] + k);
        c60 = _mm512_fmadd_ps(a6, b0, c60); c61 = _mm512_fmadd_ps(a6, b1, c61); c62 = _mm512_fmadd_ps(a6, b2, c62);
        __m512 a7 = _mm512_loadu_ps(w[7] + k);
        c70 = _mm512_fmadd_ps(a7, b0, c70); c71 = _mm512_fmadd_ps(a7, b1, c71); c72 = _mm512_fmadd_ps(a7, b2, c72);
    }
    if (k < K) { /* masked loads cost an extra uop: the tail only */
        __mmask16 mk = (__mmask16)((1u << (K - k)) - 1);
        __m512 b0 = _mm512_maskz_loadu_ps(mk, xt[0] + k);
        __m512 b1 = _mm512_maskz_loadu_ps(mk, xt[1] + k);
        __m512 b2 = _mm512_maskz_loadu_ps(mk, xt[2] + k);
        __m512 a0 = _mm512_maskz_loadu_ps(mk, w[0] + k);
        c00 = _mm512_fmadd_ps(a0, b0, c00); c01 = _mm512_fmadd_ps(a0, b1, c01); c02 = _mm512_fmadd_ps(a0, b2, c02);
        __m512 a1 = _mm512_maskz_loadu_ps(mk, w[1] + k);
        c10 = _mm512_fmadd_ps(a1, b0, c10); c11 = _mm512_fmadd_ps(a1, b1, c11); c12 = _mm512_fmadd_ps(a1, b2, c12);
        __m512 a2 = _mm512_maskz_loadu_ps(mk, w[2] + k);
        c20 = _mm512_fmadd_ps(a2, b0, c20); c21 = _mm512_fmadd_ps(a2, b1, c21); c22 = _mm512_fmadd_ps(a2, b2, c22);
        __m512 a3 = _mm512_maskz_loadu_ps(mk, w[3] + k);
        c30 = _mm512_fmadd_ps(a3, b0, c30); c31 = _mm512_fmadd_ps(a3, b1, c31); c32 = _mm512_fmadd_ps(a3, b2, c32);
        __m512 a4 = _mm512_maskz_loadu_ps(mk, w[4] + k);
        c40 = _mm512_fmadd_ps(a4, b0, c40); c41 = _mm512_fmadd_ps(a4, b1, c41); c42 = _mm512_fmadd_ps(a4, b2, c42);
        __m512 a5 = _mm512_maskz_loadu_ps(mk, w[5] + k);
        c50 = _mm512_fmadd_ps(a5, b0, c50); c51 = _mm512_fmadd_ps(a5, b1, c51); c52 = _mm512_fmadd_ps(a5, b2, c52);
        __m512 a6 = _mm512_maskz_loadu_ps(mk, w[6] + k);
        c60 = _mm512_fmadd_ps(a6, b0, c60); c61 = _mm512_fmadd_ps(a6, b1, c61); c62 = _mm512_fmadd_ps(a6, b2, c62);
        __m512 a7 = _mm512_maskz_loadu_ps(mk, w[7] + k);
        c70 = _mm512_fmadd_ps(a7, b0, c70); c71 = _mm512_fmadd_ps(a7, b1, c71); c72 = _mm512_fmadd_ps(a7, b2, c72);
    }
    acc[0] = hsum(c00); acc[1] = hsum(c01); acc[2] = hsum(c02);
    acc[3] = hsum(c10); acc[4] = hsum(c11); acc[5] = hsum(c12);
    acc[6] = hsum(c20); acc[7] = hsum(c21); acc[8] = hsum(c22);
    acc[9] = hsum(c30); acc[10] = hsum(c31); acc[11] = hsum(c32);
    acc[12] = hsum(c40); acc[13] = hsum(c41); acc[14] = hsum(c42);
    acc[15] = hsum(c50); acc[16] = hsum(c51); acc[17] = hsum(c52);
    acc[18] = hsum(c60); acc[19] = hsum(c61); acc[20] = hsum(c62);
    acc[21] = hsum(c70); acc[22] = hsum(c71); acc[23] = hsum(c72);
}

static AVX512 void gemm_dot512(int64_t M, int64_t N, int64_t K, const float *W, int64_t ldw, const float *XT,
                               int64_t ldxt, const float *bias, const struct qt_post *post, float *Y, int64_t ldym,
                               int64_t ldyn) {
    for (int64_t m0 = 0; m0 < M; m0 += DR) {
        const float *w[DR];
        for (int r = 0; r < DR; r++)
            w[r] = W + (m0 + r < M ? m0 + r : M - 1) * ldw;
        for (int64_t n0 = 0; n0 < N; n0 += DC) {
            const float *xt[DC];
            float acc[DR * DC];
            for (int c = 0; c < DC; c++)
                xt[c] = XT + (n0 + c < N ? n0 + c : N - 1) * ldxt;
            dot_tile(K, w, xt, acc);
            for (int r = 0; r < DR && m0 + r < M; r++)
                for (int c = 0; c < DC && n0 + c < N; c++) {
                    float v = acc[r * DC + c];
                    if (bias)
                        v = bias[m0 + r] + v;
                    if (post->kind == QT_POST_RELU)
                        v = v > 0 ? v : 0;
                    else if (post->kind == QT_POST_CLIP) {
                        v = v < post->lo ? post->lo : v;
                        v = v > post->hi ? post->hi : v;
                    }
                    Y[(m0 + r) * ldym + (n0 + c) * ldyn] = v;
                }
        }
    }
}

int qt_gemm_direct(void) {
#ifndef QT_NO_DIRECT_GEMM
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

int qt_gemm_dot(int64_t M, int64_t N, int64_t K, const float *W, int64_t ldw, const float *XT, int64_t ldxt,
                const float *bias, const struct qt_post *post, float *Y, int64_t ldym, int64_t ldyn) {
#ifndef QT_NO_DIRECT_GEMM
    if (__builtin_cpu_supports("avx512f")) {
        gemm_dot512(M, N, K, W, ldw, XT, ldxt, bias, post, Y, ldym, ldyn);
        return 1;
    }
#endif
    return 0;
}

int qt_conv_gemm(int64_t M, int64_t N, int64_t K, const float *W, int64_t ldw, const float *X, int64_t ldx,
                 const float *bias, const struct qt_post *post, float *Y, int64_t ldy) {
#ifndef QT_NO_DIRECT_GEMM
    if (__builtin_cpu_supports("avx512f")) {
        conv_gemm512(M, N, K, W, ldw, X, ldx, bias, post, Y, ldy);
        return 1;
    }
#endif
    return 0;
}
#else
int qt_gemm_direct(void) {
    return 0;
}
int qt_gemm_dot(int64_t M, int64_t N, int64_t K, const float *W, int64_t ldw, const float *XT, int64_t ldxt,
                const float *bias, const struct qt_post *post, float *Y, int64_t ldym, int64_t ldyn) {
    (void)M, (void)N, (void)K, (void)W, (void)ldw, (void)XT, (void)ldxt, (void)bias, (void)post, (void)Y;
    (void)ldym, (void)ldyn;
    return 0;
}
int qt_conv_gemm(int64_t M, int64_t N, int64_t K, const float *W, int64_t ldw, const float *X, int64_t ldx,
                 const float *bias, const struct qt_post *post, float *Y, int64_t ldy) {
    (void)M, (void)N, (void)K, (void)W, (void)ldw, (void)X, (void)ldx, (void)bias, (void)post, (void)Y, (void)ldy;
    return 0;
}
#endif
