/* qgemm_avx512.c: the AVX-512 VNNI micro kernels and epilogue of the
 * integer GEMM (see qkern.h); t_int8 checks them against the reference bit
 * for bit. */
#include "int8/qkern.h"

#if QT_X86
#include <immintrin.h>

/* ---- AVX-512 VNNI: 8 rows x up to 3 vectors of 16 columns --------------- */

T512 static void epilogue_generic_avx512(EPILOGUE_ARGS) {
    EPILOGUE_BODY
}

/* uint8/int8 rows: 16 lanes, the same operations as the C epilogue
 * (vcvtps2dq rounds half to even, as nearbyintf in the default mode) */
T512 void qt_qepi__avx512(EPILOGUE_ARGS) {
    if (ldc != 1 || (rq->out != QT_QOUT_U8 && rq->out != QT_QOUT_S8)) {
        epilogue_generic_avx512(acc, mr, nc, m0, colsum, qw, rq, out, ldr, ldc);
        return;
    }
    const __m512 vlo = _mm512_set1_ps((float)(rq->lo - rq->zp)), vhi = _mm512_set1_ps((float)(rq->hi - rq->zp));
    const __m512i vzp = _mm512_set1_epi32(rq->zp);
    for (int r = 0; r < mr; r++) {
        int64_t m = m0 + r;
        int32_t wz = qw->wzp[m];
        const __m512i vb = _mm512_set1_epi32(rq->bias ? rq->bias[m] : 0), vwz = _mm512_set1_epi32(wz);
        const __m512 vs = _mm512_set1_ps(rq->scale ? rq->scale[m] : 1.0f);
        const int32_t *ar = acc + r * NR;
        int8_t *o = (int8_t *)out + m * ldr;
        for (int c = 0; c < nc; c += 16) {
            __mmask16 k = nc - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nc - c)) - 1);
            __m512i a = _mm512_add_epi32(_mm512_maskz_loadu_epi32(k, ar + c), vb);
            if (wz && colsum)
                a = _mm512_sub_epi32(a, _mm512_mullo_epi32(vwz, _mm512_maskz_loadu_epi32(k, colsum + c)));
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(a), vs);
            f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi);
            __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), vzp);
            _mm512_mask_cvtepi32_storeu_epi8(o + c, k, q);
        }
    }
}

/* 8 rows x NV vectors, written out so the 8 x NV accumulators stay in
 * registers and vpdpbusd updates them in place */
#define K512_ACC(v) __m512i c0##v = z, c1##v = z, c2##v = z, c3##v = z, c4##v = z, c5##v = z, c6##v = z, c7##v = z
#define K512_ROW(r, v) c##r##v = _mm512_dpbusd_epi32(c##r##v, b##v, w##r)
#define K512_ROWS(v)                                                                                           \
    K512_ROW(0, v);                                                                                            \
    K512_ROW(1, v);                                                                                            \
    K512_ROW(2, v);                                                                                            \
    K512_ROW(3, v);                                                                                            \
    K512_ROW(4, v);                                                                                            \
    K512_ROW(5, v);                                                                                            \
    K512_ROW(6, v);                                                                                            \
    K512_ROW(7, v)
#define K512_STORE(v)                                                                                          \
    do {                                                                                                       \
        __m512i cs_[8] = {c0##v, c1##v, c2##v, c3##v, c4##v, c5##v, c6##v, c7##v};                             \
        for (int r = 0; r < mr; r++) {                                                                         \
            if (q)                                                                                             \
                req_store(cs_[r], r, v, q);                                                                    \
            else                                                                                               \
                _mm512_storeu_si512((void *)(acc + r * NR + v * 16), cs_[r]);                                  \
        }                                                                                                      \
    } while (0)


T512 static inline __attribute__((always_inline)) void req_store(__m512i a, int r, int v, const struct q8out *q) {
    int c = v * 16;
    if (c >= q->nc)
        return;
    __mmask16 k = q->nc - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (q->nc - c)) - 1);
    a = _mm512_add_epi32(a, _mm512_set1_epi32(q->bias ? q->bias[r] : 0));
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_set1_ps(q->scale ? q->scale[r] : 1.0f));
    f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps(q->flo)), _mm512_set1_ps(q->fhi));
    __m512i y = _mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(q->zp));
    _mm512_mask_cvtepi32_storeu_epi8(q->o + r * q->ldr + c, k, y);
}
#define K512_W(r) const __m512i w##r = _mm512_set1_epi32(*(const int32_t *)(wr[r] + k4 * 4))

#define K512_EACH1(X) X(0)
#define K512_EACH2(X) X(0) X(1)
#define K512_EACH3(X) X(0) X(1) X(2)
#define K512_ACC_(v) K512_ACC(v);
#define K512_LOAD_(v) const __m512i b##v = _mm512_loadu_si512((const void *)(b + v * 64));
#define K512_ROWS_(v) K512_ROWS(v);
#define K512_STORE_(v) K512_STORE(v);
/* kern512_N: 8 rows x N vectors of 16 columns */
#define K512_DEF(N)                                                                                            \
    T512 static void kern512_##N(const int8_t *const *wr, int64_t kp, const uint8_t *bp, int mr, int32_t *acc, \
                                 const struct q8out *q) {                                                      \
        const __m512i z = _mm512_setzero_si512();                                                              \
        K512_EACH##N(K512_ACC_) for (int64_t k4 = 0; k4 < kp / 4; k4++) {                                      \
            const uint8_t *b = bp + k4 * 4 * NR;                                                               \
            K512_EACH##N(K512_LOAD_) K512_W(0);                                                                \
            K512_W(1);                                                                                         \
            K512_W(2);                                                                                         \
            K512_W(3);                                                                                         \
            K512_W(4);                                                                                         \
            K512_W(5);                                                                                         \
            K512_W(6);                                                                                         \
            K512_W(7);                                                                                         \
            K512_EACH##N(K512_ROWS_)                                                                           \
        }                                                                                                      \
        K512_EACH##N(K512_STORE_)                                                                              \
    }
K512_DEF(3)
K512_DEF(2)
K512_DEF(1)

T512 void qt_qkern__avx512(const int8_t *w, int64_t kp, const uint8_t *bp, int mr, int nc, int32_t *acc,
                             const struct q8out *q) {
    const int8_t *wr[MR];
    for (int r = 0; r < MR; r++)
        wr[r] = w + (r < mr ? r : 0) * kp;
    int nv = (nc + 15) / 16;
    if (nv == 3)
        kern512_3(wr, kp, bp, mr, acc, q);
    else if (nv == 2)
        kern512_2(wr, kp, bp, mr, acc, q);
    else
        kern512_1(wr, kp, bp, mr, acc, q);
}
#endif
