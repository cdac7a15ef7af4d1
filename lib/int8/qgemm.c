/* qgemm.c: the u8 x s8 -> int32 matrix product and the depthwise kernel of
 * the quantized operators, with their requantization (see int8.h).
 *
 * Packed X: panels of QT_QG_NR columns; in a panel, for each group of four
 * k, the four bytes of column 0, then of column 1...: offset
 * (k/4)*4*NR + (col%NR)*4 + k%4. One int32 lane of a vector register then
 * holds four k of one column, which is what vpdpbusd (and vpmaddubsw +
 * vpmaddwd) multiply with four broadcast weight bytes of one row.
 *
 * The micro kernels compute a tile of up to QT_QG_MR rows x QT_QG_NR columns
 * into an int32 array; the epilogue (zero-point corrections, bias, scale,
 * rounding, clamp, store) is the same C for every ISA, compiled for each.
 * The AVX-512 kernel requantizes uint8/int8 tiles straight from its
 * registers with the same operations (vcvtps2dq rounds half to even). */
#include "int8/int8.h"
#include "ops/conv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define QT_X86 1
#else
#define QT_X86 0
#endif

/* ---- ISA selection ---------------------------------------------------- */

static int isa_cur = -1;

int qt_int8_isa_max(void) {
#if QT_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vnni"))
        return QT_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return QT_ISA_AVX2;
#endif
    return QT_ISA_REF;
}

int qt_int8_set_isa(int isa) {
    int mx = qt_int8_isa_max();
    if (isa < QT_ISA_REF)
        isa = QT_ISA_REF;
    __atomic_store_n(&isa_cur, isa > mx ? mx : isa, __ATOMIC_RELAXED);
    return isa_cur;
}

int qt_int8_isa(void) {
    int isa = __atomic_load_n(&isa_cur, __ATOMIC_RELAXED);
    if (isa >= 0)
        return isa;
    const char *e = getenv("QT_INT8_ISA");
    isa = qt_int8_isa_max();
    if (e && !strcmp(e, "ref"))
        isa = QT_ISA_REF;
    else if (e && !strcmp(e, "avx2"))
        isa = QT_ISA_AVX2;
    else if (e && !strcmp(e, "avx512"))
        isa = QT_ISA_AVX512;
    return qt_int8_set_isa(isa);
}

const char *qt_int8_isa_name(int isa) {
    return isa == QT_ISA_AVX512 ? "avx512-vnni" : isa == QT_ISA_AVX2 ? "avx2" : "ref";
}

/* ---- packing ------------------------------------------------------------ */

#define NR QT_QG_NR
#define MR QT_QG_MR
#define QT_QEPI_MAX 256 /* columns per epilogue call */

size_t qt_qweights_size(int64_t m, int64_t k) {
    int64_t kp = (k + 3) / 4 * 4;
    return (size_t)(m * kp) + sizeof(int32_t) * (size_t)(2 * m) + 64;
}

void qt_qweights_pack(struct qt_qweights *qw, void *mem, const void *w, int u8, int64_t m, int64_t k, int64_t rs,
                      int64_t cs, const void *wzp, int64_t wzp_n) {
    int64_t kp = (k + 3) / 4 * 4;
    qw->m = m;
    qw->k = k;
    qw->kp = kp;
    qw->wsum = mem;
    qw->wzp = qw->wsum + m;
    qw->w = (int8_t *)(qw->wzp + m);
    qw->wzp_any = 0;
    for (int64_t r = 0; r < m; r++) {
        int32_t sum = 0, z = 0;
        if (wzp)
            z = u8 ? (int32_t)((const uint8_t *)wzp)[wzp_n == 1 ? 0 : r] - 128
                   : (int32_t)((const int8_t *)wzp)[wzp_n == 1 ? 0 : r];
        else if (u8)
            z = -128;
        for (int64_t c = 0; c < kp; c++) {
            int8_t v = 0;
            if (c < k)
                v = u8 ? (int8_t)((int32_t)((const uint8_t *)w)[r * rs + c * cs] - 128)
                       : ((const int8_t *)w)[r * rs + c * cs];
            qw->w[r * kp + c] = v;
            sum += v;
        }
        qw->wsum[r] = sum;
        qw->wzp[r] = z;
        qw->wzp_any |= z != 0;
    }
}

size_t qt_qpack_size(int64_t kp, int64_t n) {
    return (size_t)(kp * ((n + NR - 1) / NR * NR));
}

/* Four rows of 16 columns interleaved into 64 bytes: column c's four bytes
 * at 4c (SSE2, the x86-64 baseline). */
static void interleave4(uint8_t *d, const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, const uint8_t *r3,
                        int64_t nc, uint8_t flip) {
    int64_t c = 0;
#if QT_X86
    const __m128i f = _mm_set1_epi8((char)flip);
    for (; c + 16 <= nc; c += 16) {
        __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r0 + c)), f);
        __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r1 + c)), f);
        __m128i e = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r2 + c)), f);
        __m128i g = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r3 + c)), f);
        __m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
        __m128i eg0 = _mm_unpacklo_epi8(e, g), eg1 = _mm_unpackhi_epi8(e, g);
        _mm_storeu_si128((__m128i *)(d + 4 * c), _mm_unpacklo_epi16(ab0, eg0));
        _mm_storeu_si128((__m128i *)(d + 4 * c + 16), _mm_unpackhi_epi16(ab0, eg0));
        _mm_storeu_si128((__m128i *)(d + 4 * c + 32), _mm_unpacklo_epi16(ab1, eg1));
        _mm_storeu_si128((__m128i *)(d + 4 * c + 48), _mm_unpackhi_epi16(ab1, eg1));
    }
#endif
    for (; c < nc; c++) {
        d[4 * c] = r0[c] ^ flip;
        d[4 * c + 1] = r1[c] ^ flip;
        d[4 * c + 2] = r2[c] ^ flip;
        d[4 * c + 3] = r3[c] ^ flip;
    }
}

void qt_qpack_colsum(const uint8_t *dst, int64_t kp, int64_t n, int32_t *colsum) {
    for (int64_t c = 0; c < n; c++) {
        const uint8_t *pan = dst + (c / NR) * kp * NR + (c % NR) * 4;
        int32_t s = 0;
        for (int64_t r = 0; r < kp; r++)
            s += pan[(r / 4) * 4 * NR + r % 4];
        colsum[c] = s;
    }
}

/* n contiguous columns of X (rows rs apart) into panel columns [d0, d0 + n)
 * of dst, which the caller zeroed where panels are partial */
static void pack_cols(uint8_t *dst, const uint8_t *X, uint8_t flip, int64_t k, int64_t kp, int64_t d0, int64_t n,
                      int64_t rs) {
    static const uint8_t zeros[NR];
    for (int64_t c = 0; c < n;) {
        int64_t dc = d0 + c, p = dc / NR, run = NR - dc % NR < n - c ? NR - dc % NR : n - c;
        uint8_t *pan = dst + p * kp * NR + (dc % NR) * 4;
        for (int64_t r = 0; r < kp; r += 4) {
            const uint8_t *rr[4];
            for (int t = 0; t < 4; t++)
                rr[t] = r + t < k ? X + (r + t) * rs + c : zeros;
            interleave4(pan + (r / 4) * 4 * NR, rr[0], rr[1], rr[2], rr[3], run, flip);
            for (int t = 0; t < 4; t++) /* padded k rows hold 0, not 0 ^ flip */
                if (r + t >= k)
                    for (int64_t q = 0; q < run; q++)
                        pan[(r / 4) * 4 * NR + q * 4 + t] = 0;
        }
        c += run;
    }
}

void qt_qpack_seg(uint8_t *dst, const void *x, int s8, int64_t k, int64_t kp, int64_t d0, int64_t n, int64_t rs) {
    pack_cols(dst, x, s8 ? 0x80 : 0, k, kp, d0, n, rs);
}

void qt_qpack_x(uint8_t *dst, const void *x, int s8, int64_t k, int64_t kp, int64_t n, int64_t rs, int64_t cs,
                int32_t *colsum) {
    const uint8_t *X = x;
    uint8_t flip = s8 ? 0x80 : 0;
    int64_t npan = (n + NR - 1) / NR;
    if (n % NR)
        memset(dst + (npan - 1) * kp * NR, 0, (size_t)(kp * NR));
    if (cs == 1) { /* rows contiguous: four at a time */
        pack_cols(dst, X, flip, k, kp, 0, n, rs);
    } else {
        for (int64_t p = 0; p < npan; p++) {
            uint8_t *pan = dst + p * kp * NR;
            int64_t c0 = p * NR, nc = n - c0 < NR ? n - c0 : NR;
            for (int64_t r = 0; r < kp; r++) {
                uint8_t *d = pan + (r / 4) * 4 * NR + (r % 4);
                for (int64_t c = 0; c < nc; c++)
                    d[c * 4] = r < k ? X[r * rs + (c0 + c) * cs] ^ flip : 0;
            }
        }
    }
    if (colsum)
        qt_qpack_colsum(dst, kp, n, colsum);
}

void qt_qpack_im2col(uint8_t *dst, const void *x, int s8, uint8_t xzp, const struct qt_conv_shape *s, int64_t cg,
                     int64_t kp, int64_t c0, int64_t c1, int32_t *colsum, uint8_t *rows) {
    /* the k x n matrix row by row in rows (x's own bytes, padding = the zero
     * point in x's type), then interleaved into panels like any X */
    const uint8_t *X = x;
    uint8_t pad = xzp ^ (s8 ? 0x80 : 0);
    int64_t n = c1 - c0, k = cg * s->kh * s->kw;
    for (int64_t r = 0; r < k; r++) {
        int64_t c = r / (s->kh * s->kw), ki = (r / s->kw) % s->kh, kj = r % s->kw;
        const uint8_t *xc = X + c * s->ih * s->iw;
        uint8_t *d = rows + r * n;
        int64_t o = c0, oy = c0 / s->ow, ox = c0 % s->ow;
        while (o < c1) {
            int64_t run = s->ow - ox;
            if (run > c1 - o)
                run = c1 - o;
            int64_t iy = oy * s->sh - s->ph + ki * s->dh;
            if (iy < 0 || iy >= s->ih) {
                memset(d, pad, (size_t)run);
            } else {
                const uint8_t *row = xc + iy * s->iw;
                int64_t ix = ox * s->sw - s->pw + kj * s->dw;
                if (s->sw == 1 && ix >= 0 && ix + run <= s->iw) {
                    memcpy(d, row + ix, (size_t)run);
                } else { /* padding, the columns inside the row, padding */
                    int64_t sw = s->sw, t0 = ix < 0 ? (-ix + sw - 1) / sw : 0, t1 = 0;
                    if (ix + (run - 1) * sw < s->iw)
                        t1 = run;
                    else if (s->iw - 1 >= ix)
                        t1 = (s->iw - 1 - ix) / sw + 1;
                    if (t1 < t0)
                        t1 = t0;
                    if (t0 > run)
                        t0 = t1 = run;
                    memset(d, pad, (size_t)t0);
                    const uint8_t *src = row + ix;
                    for (int64_t t = t0; t < t1; t++)
                        d[t] = src[t * sw];
                    memset(d + t1, pad, (size_t)(run - t1));
                }
            }
            d += run;
            o += run;
            ox = 0;
            oy++;
        }
    }
    qt_qpack_x(dst, rows, s8, k, kp, n, n, 1, colsum);
}

/* ---- epilogue, compiled once per ISA ---------------------------------- */

/* scale, clamp, round half to even, add the zero point, store as T */
#define EPI_Q8_LOOP(T, IDX)                                                                                    \
    for (int c = 0; c < nc; c++) {                                                                             \
        float v = (float)a[c] * sc;                                                                            \
        v = v >= flo ? v : flo; /* NaN (a scale of 0 or inf in the file) too */                                \
        v = v > fhi ? fhi : v;                                                                                 \
        o[IDX] = (T)((int32_t)__builtin_nearbyintf(v) + zp);                                                   \
    }
#define EPI_Q8(T)                                                                                              \
    {                                                                                                          \
        T *o = (T *)out + m * ldr;                                                                             \
        if (ldc == 1)                                                                                          \
            EPI_Q8_LOOP(T, c)                                                                                  \
        else                                                                                                   \
            EPI_Q8_LOOP(T, c * ldc)                                                                            \
        break;                                                                                                 \
    }

#define EPILOGUE_BODY                                                                                          \
    for (int r = 0; r < mr; r++) {                                                                             \
        int64_t m = m0 + r;                                                                                    \
        int32_t b = rq->bias ? rq->bias[m] : 0, wz = qw->wzp[m];                                               \
        float sc = rq->scale ? rq->scale[m] : 1.0f;                                                            \
        int32_t a[QT_QEPI_MAX];                                                                                \
        const int32_t *ar = acc + r * NR;                                                                      \
        if (wz && colsum)                                                                                      \
            for (int c = 0; c < nc; c++)                                                                       \
                a[c] = (int32_t)((uint32_t)ar[c] + (uint32_t)b - (uint32_t)(wz * colsum[c]));                  \
        else                                                                                                   \
            for (int c = 0; c < nc; c++)                                                                       \
                a[c] = (int32_t)((uint32_t)ar[c] + (uint32_t)b);                                               \
        float flo = (float)(rq->lo - rq->zp), fhi = (float)(rq->hi - rq->zp);                                  \
        int32_t zp = rq->zp;                                                                                   \
        switch (rq->out) {                                                                                     \
        case QT_QOUT_U8:                                                                                       \
            EPI_Q8(uint8_t)                                                                                    \
        case QT_QOUT_S8:                                                                                       \
            EPI_Q8(int8_t)                                                                                     \
        case QT_QOUT_F32: {                                                                                    \
            float *o = (float *)out + m * ldr;                                                                 \
            for (int c = 0; c < nc; c++)                                                                       \
                o[c * ldc] = (float)a[c] * sc;                                                                 \
            break;                                                                                             \
        }                                                                                                      \
        default: {                                                                                             \
            int32_t *o = (int32_t *)out + m * ldr;                                                             \
            for (int c = 0; c < nc; c++)                                                                       \
                o[c * ldc] = a[c];                                                                             \
        }                                                                                                      \
        }                                                                                                      \
    }

#define EPILOGUE_ARGS                                                                                          \
    const int32_t *restrict acc, int mr, int nc, int64_t m0, const int32_t *colsum, const struct qt_qweights *qw, \
        const struct qt_qrequant *rq, void *out, int64_t ldr, int64_t ldc

static void epilogue_ref(EPILOGUE_ARGS) {
    EPILOGUE_BODY
}

/* ---- reference micro kernel ------------------------------------------- */

static void kern_ref(const int8_t *w, int64_t kp, const uint8_t *bp, int mr, int nc, int32_t *acc) {
    for (int r = 0; r < mr; r++) {
        const int8_t *wr = w + r * kp;
        for (int c = 0; c < nc; c++) {
            int32_t s = 0;
            for (int64_t k = 0; k < kp; k++)
                s += (int32_t)bp[(k / 4) * 4 * NR + c * 4 + k % 4] * wr[k];
            acc[r * NR + c] = s;
        }
    }
}

#if QT_X86
/* ---- AVX2: vpmaddubsw on the low 7 bits and on the top bit separately, so
 * no int16 pair sum saturates (exact for any u8 x s8) ---------------------- */

__attribute__((target("avx2,fma"))) static void epilogue_avx2(EPILOGUE_ARGS) {
    EPILOGUE_BODY
}

__attribute__((target("avx2,fma"))) static void kern_avx2(const int8_t *w, int64_t kp, const uint8_t *bp, int mr,
                                                          int nc, int32_t *acc) {
    const int8_t *wr[MR];
    for (int r = 0; r < MR; r++)
        wr[r] = w + (r < mr ? r : 0) * kp;
    const __m256i m7 = _mm256_set1_epi8(0x7f), one8 = _mm256_set1_epi8(1);
    const __m256i ones = _mm256_set1_epi16(1), c128 = _mm256_set1_epi16(128);
    int nv = (nc + 7) / 8;
    for (int v = 0; v < nv; v++) {
        __m256i c[MR];
        for (int r = 0; r < MR; r++)
            c[r] = _mm256_setzero_si256();
        for (int64_t k4 = 0; k4 < kp / 4; k4++) {
            __m256i b = _mm256_loadu_si256((const __m256i *)(bp + k4 * 4 * NR + v * 32));
            __m256i lo = _mm256_and_si256(b, m7);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 7), one8);
            for (int r = 0; r < MR; r++) {
                int32_t wv;
                memcpy(&wv, wr[r] + k4 * 4, 4);
                __m256i wb = _mm256_set1_epi32(wv);
                __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, wb), ones);
                __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, wb), c128);
                c[r] = _mm256_add_epi32(c[r], _mm256_add_epi32(pl, ph));
            }
        }
        for (int r = 0; r < mr; r++)
            _mm256_storeu_si256((__m256i *)(acc + r * NR + v * 8), c[r]);
    }
}

/* ---- AVX-512 VNNI: 8 rows x up to 3 vectors of 16 columns --------------- */

#define T512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma")))

T512 static void epilogue_generic_avx512(EPILOGUE_ARGS) {
    EPILOGUE_BODY
}

/* uint8/int8 rows: 16 lanes, the same operations as the C epilogue
 * (vcvtps2dq rounds half to even, as nearbyintf in the default mode) */
T512 static void epilogue_avx512(EPILOGUE_ARGS) {
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

/* uint8/int8 output of a tile straight from the accumulators (no weight
 * zero point): the epilogue's operations on 16 lanes */
struct q8out {
    int8_t *o;           /* row 0, column 0 of the tile */
    int64_t ldr;
    const int32_t *bias; /* row 0 of the tile */
    const float *scale;
    float flo, fhi;
    int32_t zp;
    int nc;
};

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

T512 static void kern_avx512(const int8_t *w, int64_t kp, const uint8_t *bp, int mr, int nc, int32_t *acc,
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

void qt_qgemm(const struct qt_qweights *qw, int64_t m0, int64_t m1, const uint8_t *xp, int64_t n,
              const int32_t *colsum, const struct qt_qrequant *rq, void *out, int64_t ldr, int64_t ldc) {
    int isa = qt_int8_isa();
    int32_t acc[MR * NR] __attribute__((aligned(64)));
    int64_t kp = qw->kp;
    for (int64_t c0 = 0; c0 < n; c0 += NR) {
        int nc = (int)(n - c0 < NR ? n - c0 : NR);
        const uint8_t *pan = xp + (c0 / NR) * kp * NR;
        const int32_t *cs = colsum ? colsum + c0 : NULL;
        for (int64_t m = m0; m < m1; m += MR) {
            int mr = (int)(m1 - m < MR ? m1 - m : MR);
            const int8_t *w = qw->w + m * kp;
            char *o = (char *)out;
            size_t es = rq->out == QT_QOUT_U8 || rq->out == QT_QOUT_S8 ? 1 : 4;
            o += (size_t)(c0 * ldc) * es;
            /* the epilogue indexes rows by absolute m: shift out back by m0 rows */
#if QT_X86
            if (isa == QT_ISA_AVX512) {
                if ((rq->out == QT_QOUT_U8 || rq->out == QT_QOUT_S8) && ldc == 1 && !qw->wzp_any) {
                    struct q8out q = {(int8_t *)o + m * ldr, ldr, rq->bias ? rq->bias + m : NULL,
                                      rq->scale ? rq->scale + m : NULL, (float)(rq->lo - rq->zp),
                                      (float)(rq->hi - rq->zp), rq->zp, nc};
                    kern_avx512(w, kp, pan, mr, nc, acc, &q);
                } else {
                    kern_avx512(w, kp, pan, mr, nc, acc, NULL);
                    epilogue_avx512(acc, mr, nc, m, cs, qw, rq, o, ldr, ldc);
                }
                continue;
            }
            if (isa == QT_ISA_AVX2) {
                kern_avx2(w, kp, pan, mr, nc, acc);
                epilogue_avx2(acc, mr, nc, m, cs, qw, rq, o, ldr, ldc);
                continue;
            }
#endif
            (void)isa;
            kern_ref(w, kp, pan, mr, nc, acc);
            epilogue_ref(acc, mr, nc, m, cs, qw, rq, o, ldr, ldc);
        }
    }
}

void qt_qgemm_seg(const struct qt_qweights *qw, int64_t m0, int64_t m1, const uint8_t *xp, int64_t n,
                  const int32_t *colsum, const struct qt_qrequant *rq, void *out, int64_t ldr, int64_t g0, int64_t hw,
                  int64_t istride) {
    int isa = qt_int8_isa();
    int32_t acc[MR * NR] __attribute__((aligned(64)));
    int64_t kp = qw->kp;
    size_t es = rq->out == QT_QOUT_U8 || rq->out == QT_QOUT_S8 ? 1 : 4;
    for (int64_t c0 = 0; c0 < n; c0 += NR) {
        int nc = (int)(n - c0 < NR ? n - c0 : NR);
        const uint8_t *pan = xp + (c0 / NR) * kp * NR;
        for (int64_t m = m0; m < m1; m += MR) {
            int mr = (int)(m1 - m < MR ? m1 - m : MR);
            const int8_t *w = qw->w + m * kp;
#if QT_X86
            if (isa == QT_ISA_AVX512)
                kern_avx512(w, kp, pan, mr, nc, acc, NULL);
            else if (isa == QT_ISA_AVX2)
                kern_avx2(w, kp, pan, mr, nc, acc);
            else
#endif
                kern_ref(w, kp, pan, mr, nc, acc);
            /* runs of columns inside one image */
            for (int c = 0; c < nc;) {
                int64_t g = g0 + c0 + c, img = g / hw, p = g % hw;
                int run = (int)(hw - p < nc - c ? hw - p : nc - c);
                char *o = (char *)out + (size_t)(img * istride + p) * es;
                const int32_t *cs = colsum ? colsum + c0 + c : NULL;
#if QT_X86
                if (isa == QT_ISA_AVX512)
                    epilogue_avx512(acc + c, mr, run, m, cs, qw, rq, o, ldr, 1);
                else if (isa == QT_ISA_AVX2)
                    epilogue_avx2(acc + c, mr, run, m, cs, qw, rq, o, ldr, 1);
                else
#endif
                    epilogue_ref(acc + c, mr, run, m, cs, qw, rq, o, ldr, 1);
                c += run;
            }
        }
    }
}

/* ---- depthwise ---------------------------------------------------------- */

/* Scratch: the padded plane P = x - xzp (int16, 0 in the padding), for
 * stride 2 also split into even and odd columns so every tap reads
 * contiguous memory, and one row of int32 sums. */
size_t qt_qdw_scratch(const struct qt_conv_shape *s) {
    int64_t pw = s->iw + s->pw + s->pw_end + 4, ph = s->ih + s->ph + s->ph_end + 1;
    return 8 * (size_t)(pw * ph) + sizeof(int32_t) * (size_t)(s->oh * s->ow + 16) + 256;
}

struct dwrow {
    const int16_t *P, *E, *O; /* padded plane; even / odd columns (stride 2) */
    int64_t pwid, we, wo;
    const int32_t *wk;        /* kh x kw centred weights */
    int small;                /* every |w| <= 128: products fit int16 */
    int64_t kh, kw, ow, sh, sw, dh, dw;
};

/* One output row: acc[ox] = sum_taps w * P[oy*sh + ki*dh][ox*sw + kj*dw].
 * |x - xzp| <= 255, so with |w| <= 128 each product is exact in int16. */
#define DW_ROW_BODY                                                                                            \
    for (int64_t ox = 0; ox < d->ow; ox++)                                                                     \
        acc[ox] = 0;                                                                                           \
    for (int64_t ki = 0; ki < d->kh; ki++) {                                                                   \
        int64_t y = oy * d->sh + ki * d->dh;                                                                   \
        for (int64_t kj = 0; kj < d->kw; kj++) {                                                               \
            int64_t t = kj * d->dw, ow = d->ow;                                                                \
            int32_t wv = d->wk[ki * d->kw + kj];                                                               \
            const int16_t *restrict r;                                                                         \
            if (d->sw == 1 || d->sw == 2) {                                                                    \
                r = d->sw == 1 ? d->P + y * d->pwid + t                                                        \
                               : (t & 1 ? d->O + y * d->wo : d->E + y * d->we) + (t >> 1);                     \
                if (d->small) {                                                                                \
                    int16_t w16 = (int16_t)wv;                                                                 \
                    for (int64_t ox = 0; ox < ow; ox++)                                                        \
                        acc[ox] += (int16_t)(w16 * r[ox]);                                                     \
                } else {                                                                                       \
                    for (int64_t ox = 0; ox < ow; ox++)                                                        \
                        acc[ox] += wv * r[ox];                                                                 \
                }                                                                                              \
            } else {                                                                                           \
                r = d->P + y * d->pwid + t;                                                                    \
                for (int64_t ox = 0; ox < ow; ox++)                                                            \
                    acc[ox] += wv * r[ox * d->sw];                                                             \
            }                                                                                                  \
        }                                                                                                      \
    }

#define DW_ARGS const struct dwrow *d, int64_t oy, int32_t *restrict acc

/* the padded plane: P = x - xzp, 0 in the padding; E/O its columns */
#define DW_PAD_BODY                                                                                            \
    for (int64_t y = 0; y < ih; y++) {                                                                         \
        int16_t *dd = P + (y + ph) * pwid + pw;                                                                \
        if (s8) {                                                                                              \
            const int8_t *src = (const int8_t *)x + y * iw;                                                    \
            for (int64_t i = 0; i < iw; i++)                                                                   \
                dd[i] = (int16_t)(src[i] - xzp);                                                               \
        } else {                                                                                               \
            const uint8_t *src = (const uint8_t *)x + y * iw;                                                  \
            for (int64_t i = 0; i < iw; i++)                                                                   \
                dd[i] = (int16_t)(src[i] - xzp);                                                               \
        }                                                                                                      \
    }                                                                                                          \
    if (E)                                                                                                     \
        for (int64_t y = 0; y < nrows; y++) {                                                                  \
            const int16_t *src = P + y * pwid;                                                                 \
            int16_t *e = E + y * we, *o = O + y * wo;                                                          \
            for (int64_t i = 0; i < pwid / 2; i++) {                                                           \
                e[i] = src[2 * i];                                                                             \
                o[i] = src[2 * i + 1];                                                                         \
            }                                                                                                  \
            if (pwid & 1)                                                                                      \
                e[pwid / 2] = src[pwid - 1];                                                                   \
        }
#define DW_PAD_ARGS                                                                                            \
    int16_t *restrict P, int16_t *restrict E, int16_t *restrict O, int64_t pwid, int64_t we, int64_t wo,       \
        int64_t nrows, const void *x, int s8, int32_t xzp, int64_t ih, int64_t iw, int64_t ph, int64_t pw

static void dw_row_ref(DW_ARGS) {
    DW_ROW_BODY
}
static void dw_pad_ref(DW_PAD_ARGS) {
    DW_PAD_BODY
}
#if QT_X86
__attribute__((target("avx2,fma"))) static void dw_row_avx2(DW_ARGS) {
    DW_ROW_BODY
}
__attribute__((target("avx2,fma"))) static void dw_pad_avx2(DW_PAD_ARGS) {
    DW_PAD_BODY
}
T512 static void dw_row_avx512(DW_ARGS) {
    DW_ROW_BODY
}
T512 static void dw_pad_avx512(DW_PAD_ARGS) {
    DW_PAD_BODY
}
#endif

#if QT_X86
/* 3x3, dilation 1, stride 1 or 2 on AVX-512: vpmaddwd on pairs of taps.
 * Stride 2: the int16 plane read as int32 lanes holds (P[2i], P[2i+1]), the
 * taps kj = 0, 1 of output i; tap 2 is the low half of lane i+1 (its high
 * half times 0). Stride 1: lanes Q[i] = (P[i], P[i+1]) built once. Each
 * pair sum is exact in int32 (|x - xzp|, |w - wzp| <= 255). */
T512 static void dw3_avx512(const void *x, int s8, int32_t xzp, const int32_t *wk, const struct qt_conv_shape *s,
                            void *tmp, const struct qt_qweights *qw, const struct qt_qrequant *r1, void *out,
                            size_t es) {
    int64_t phgt = s->ih + s->ph + s->ph_end, pp = (s->iw + s->pw + s->pw_end + 1) / 2 * 2;
    int16_t *P = tmp;
    int32_t *Q = (int32_t *)(((uintptr_t)(P + pp * phgt + 4) + 63) & ~(uintptr_t)63);
    int32_t *acc = Q + (s->sw == 1 ? pp * phgt + 16 : 0);
    acc = (int32_t *)(((uintptr_t)acc + 63) & ~(uintptr_t)63);
    /* zeros past the plane too: the stride-1 small-plane loop reads up to
     * 33 elements beyond it (into Q's space, unused there) */
    memset(P, 0, sizeof(int16_t) * (size_t)(pp * phgt + 40));
    const __m512i vxz = _mm512_set1_epi16((short)xzp);
    for (int64_t y = 0; y < s->ih; y++) {
        int16_t *d = P + (y + s->ph) * pp + s->pw;
        const uint8_t *src = (const uint8_t *)x + y * s->iw;
        for (int64_t i = 0; i < s->iw; i += 32) {
            __mmask32 k = s->iw - i >= 32 ? 0xffffffffu : (__mmask32)((1u << (s->iw - i)) - 1);
            __m256i b = _mm256_maskz_loadu_epi8(k, src + i);
            __m512i v = s8 ? _mm512_cvtepi8_epi16(b) : _mm512_cvtepu8_epi16(b);
            _mm512_mask_storeu_epi16(d + i, k, _mm512_sub_epi16(v, vxz));
        }
    }
    int q8 = r1->out == QT_QOUT_U8 || r1->out == QT_QOUT_S8;
    const __m512 vlo = _mm512_set1_ps((float)(r1->lo - r1->zp)), vhi = _mm512_set1_ps((float)(r1->hi - r1->zp));
    const __m512i vzp = _mm512_set1_epi32(r1->zp), vb = _mm512_set1_epi32(r1->bias ? r1->bias[0] : 0);
    const __m512 vs = _mm512_set1_ps(r1->scale ? r1->scale[0] : 1.0f);
    __m512i w01[3], w2[3], w2h[3];
    for (int ki = 0; ki < 3; ki++) {
        w01[ki] = _mm512_set1_epi32((int32_t)(((uint32_t)wk[ki * 3] & 0xffff) | ((uint32_t)wk[ki * 3 + 1] << 16)));
        w2[ki] = _mm512_set1_epi32((int32_t)((uint32_t)wk[ki * 3 + 2] & 0xffff));
        w2h[ki] = _mm512_set1_epi32((int32_t)((uint32_t)wk[ki * 3 + 2] << 16));
    }
#define DW3_REQ(a)                                                                                             \
    _mm512_cvtepi32_epi8(_mm512_add_epi32(                                                                     \
        _mm512_cvtps_epi32(_mm512_min_ps(                                                                      \
            _mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(a), vs), vlo), vhi)),                               \
        vzp))
/* 32 stride-1 outputs whose top-left tap is at r (three rows at pitch pp),
 * requantized: the even ones into E8, the odd ones into O8 */
#define DW3_S1_32(r, E8, O8)                                                                                   \
    do {                                                                                                       \
        __m512i e_ = vb, o_ = vb; /* the sums start at the bias */                                             \
        for (int ki = 0; ki < 3; ki++) {                                                                       \
            const int16_t *r_ = (r) + ki * pp;                                                                 \
            __m512i a0 = _mm512_loadu_si512((const void *)r_), a1 = _mm512_loadu_si512((const void *)(r_ + 1)); \
            __m512i a2 = _mm512_loadu_si512((const void *)(r_ + 2));                                           \
            e_ = _mm512_add_epi32(e_, _mm512_madd_epi16(a0, w01[ki]));                                        \
            e_ = _mm512_add_epi32(e_, _mm512_madd_epi16(a2, w2[ki]));                                          \
            o_ = _mm512_add_epi32(o_, _mm512_madd_epi16(a1, w01[ki]));                                        \
            o_ = _mm512_add_epi32(o_, _mm512_madd_epi16(a2, w2h[ki]));                                         \
        }                                                                                                      \
        E8 = DW3_REQ(e_);                                                                                      \
        O8 = DW3_REQ(o_);                                                                                      \
    } while (0)
    if (s->sw == 1 && q8) {
        /* 32 outputs from three loads per row: read as int32 lanes, P + ox
         * holds the taps 0, 1 of the even outputs, P + ox + 1 those of the
         * odd ones, P + ox + 2 tap 2 of both (low half even, high half odd);
         * the plane's slack (Q's space) covers the reads past a row */
        const int64_t oh = s->oh, ow = s->ow;
        uint8_t *o8 = out;
        if (ow < 32) {
            /* a narrow plane (MobileNet's 14x14 and 7x7): its rows one
             * after the other at the pitch pp, 32 outputs a step across
             * rows, into acc's space; output (oy, ox) is flat index
             * oy * pp + ox, whose taps are P[j + ki * pp + kj] as within a
             * row; the columns from ow to pp are computed and dropped */
            uint8_t *tb = (uint8_t *)acc;
            const int64_t tot = oh * pp;
            for (int64_t j = 0; j < tot; j += 32) {
                __m128i e8, o8v;
                DW3_S1_32(P + j, e8, o8v);
                _mm_storeu_si128((__m128i *)(tb + j), _mm_unpacklo_epi8(e8, o8v));
                _mm_storeu_si128((__m128i *)(tb + j + 16), _mm_unpackhi_epi8(e8, o8v));
            }
            for (int64_t oy = 0; oy < oh; oy++)
                memcpy(o8 + oy * ow, tb + oy * pp, (size_t)ow);
            return;
        }
        for (int64_t oy = 0; oy < oh; oy++) {
            for (int64_t ox = 0; ox < ow; ox += 32) {
                __m128i e8, o8v;
                DW3_S1_32(P + oy * s->sh * pp + ox, e8, o8v);
                int64_t nleft = ow - ox;
                __mmask16 k0 = nleft >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nleft) - 1);
                __mmask16 k1 = nleft >= 32 ? (__mmask16)0xffff : nleft > 16 ? (__mmask16)((1u << (nleft - 16)) - 1) : 0;
                _mm_mask_storeu_epi8(o8 + oy * ow + ox, k0, _mm_unpacklo_epi8(e8, o8v));
                _mm_mask_storeu_epi8(o8 + oy * ow + ox + 16, k1, _mm_unpackhi_epi8(e8, o8v));
            }
        }
        return;
    }
    const int32_t *L = (const int32_t *)P;
    int64_t lp = pp / 2, off2 = 1;
    if (s->sw == 1) { /* Q[i] = (P[i], P[i+1]): P[i + 1] shifted into the high half */
        int64_t tot = pp * phgt;
        for (int64_t i = 0; i < tot; i += 16) {
            __mmask16 k = tot - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (tot - i)) - 1);
            __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, P + i));
            __m512i hi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, P + i + 1));
            _mm512_mask_storeu_epi32(Q + i, k, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
        L = Q;
        lp = pp;
        off2 = 2;
    }
    /* locals: the byte stores below may alias anything */
    const int64_t oh = s->oh, ow = s->ow, sh = s->sh;
    int8_t *o8 = out;
    for (int64_t oy = 0; oy < oh; oy++) {
        const int32_t *row0 = L + oy * sh * lp, *row1 = row0 + lp, *row2 = row1 + lp;
        for (int64_t ox = 0; ox < ow; ox += 16) {
            __mmask16 k = ow - ox >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (ow - ox)) - 1);
            __m512i a = _mm512_madd_epi16(_mm512_maskz_loadu_epi32(k, row0 + ox), w01[0]);
            a = _mm512_add_epi32(a, _mm512_madd_epi16(_mm512_maskz_loadu_epi32(k, row0 + ox + off2), w2[0]));
            a = _mm512_add_epi32(a, _mm512_madd_epi16(_mm512_maskz_loadu_epi32(k, row1 + ox), w01[1]));
            a = _mm512_add_epi32(a, _mm512_madd_epi16(_mm512_maskz_loadu_epi32(k, row1 + ox + off2), w2[1]));
            a = _mm512_add_epi32(a, _mm512_madd_epi16(_mm512_maskz_loadu_epi32(k, row2 + ox), w01[2]));
            a = _mm512_add_epi32(a, _mm512_madd_epi16(_mm512_maskz_loadu_epi32(k, row2 + ox + off2), w2[2]));
            if (q8) { /* requantized here, as the epilogue does */
                a = _mm512_add_epi32(a, vb);
                __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(a), vs);
                f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi);
                __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), vzp);
                _mm512_mask_cvtepi32_storeu_epi8(o8 + oy * ow + ox, k, q);
            } else {
                _mm512_mask_storeu_epi32(acc + oy * ow + ox, k, a);
            }
        }
    }
    if (q8)
        return;
    for (int64_t oy = 0; oy < oh; oy++) {
        char *o = (char *)out + (size_t)(oy * ow) * es;
        for (int64_t c0 = 0; c0 < ow; c0 += QT_QEPI_MAX)
            epilogue_avx512(acc + oy * ow + c0, 1, (int)(ow - c0 < QT_QEPI_MAX ? ow - c0 : QT_QEPI_MAX), 0, NULL, qw,
                            r1, o + c0 * (int64_t)es, 0, 1);
    }
}
#endif

#define DW_EPILOGUE(isa)                                                                                       \
    for (int64_t c0 = 0; c0 < s->ow; c0 += QT_QEPI_MAX)                                                        \
    epilogue_##isa(acc + c0, 1, (int)(s->ow - c0 < QT_QEPI_MAX ? s->ow - c0 : QT_QEPI_MAX), 0, NULL, &qw, &r1,  \
                   o + c0 * (int64_t)es, 0, 1)

void qt_qdwconv(const void *x, int s8, int32_t xzp, const int8_t *w, int32_t wzp, const struct qt_conv_shape *s,
                const struct qt_qrequant *rq, int64_t ch, void *out, void *tmp) {
    int64_t pwid = s->iw + s->pw + s->pw_end, phgt = s->ih + s->ph + s->ph_end;
    int16_t *P = tmp, *E = NULL, *O = NULL;
    int64_t we = (pwid + 1) / 2, wo = pwid / 2;
    uintptr_t end = (uintptr_t)(P + pwid * phgt);
    if (s->sw == 2) {
        E = (int16_t *)((end + 63) & ~(uintptr_t)63);
        O = E + we * phgt;
        end = (uintptr_t)(O + wo * phgt);
    }
    int32_t *acc = (int32_t *)((end + 63) & ~(uintptr_t)63);
    int32_t wkp[QT_QDW_MAXTAPS];
    int isa = qt_int8_isa();
    struct qt_qweights qw = {0};
    int32_t zero = 0;
    qw.wzp = &zero;
    int small = 1;
    for (int64_t i = 0; i < s->kh * s->kw; i++) {
        wkp[i] = (int32_t)w[i] - wzp;
        small &= wkp[i] >= -128 && wkp[i] <= 128;
    }
    struct dwrow d = {P, E, O, pwid, we, wo, wkp, small, s->kh, s->kw, s->ow, s->sh, s->sw, s->dh, s->dw};
    size_t es = rq->out == QT_QOUT_U8 || rq->out == QT_QOUT_S8 ? 1 : 4;
    /* the epilogue sees this channel as row 0 */
    struct qt_qrequant r1 = *rq;
    r1.bias = rq->bias ? rq->bias + ch : NULL;
    r1.scale = rq->scale ? rq->scale + ch : NULL;
#if QT_X86
    if (isa == QT_ISA_AVX512 && s->kh == 3 && s->kw == 3 && s->dh == 1 && s->dw == 1 && (s->sw == 1 || s->sw == 2)) {
        dw3_avx512(x, s8, xzp, wkp, s, tmp, &qw, &r1, out, es);
        return;
    }
#endif
    /* only the padding needs zeros: the rows above and below, the columns at the sides */
    memset(P, 0, sizeof(int16_t) * (size_t)(pwid * s->ph));
    memset(P + (s->ph + s->ih) * pwid, 0, sizeof(int16_t) * (size_t)(pwid * s->ph_end));
    for (int64_t y = s->ph; y < s->ph + s->ih; y++) {
        for (int64_t i = 0; i < s->pw; i++)
            P[y * pwid + i] = 0;
        for (int64_t i = s->pw + s->iw; i < pwid; i++)
            P[y * pwid + i] = 0;
    }
#if QT_X86
    if (isa == QT_ISA_AVX512)
        dw_pad_avx512(P, E, O, pwid, we, wo, phgt, x, s8, xzp, s->ih, s->iw, s->ph, s->pw);
    else if (isa == QT_ISA_AVX2)
        dw_pad_avx2(P, E, O, pwid, we, wo, phgt, x, s8, xzp, s->ih, s->iw, s->ph, s->pw);
    else
#endif
        dw_pad_ref(P, E, O, pwid, we, wo, phgt, x, s8, xzp, s->ih, s->iw, s->ph, s->pw);
    for (int64_t oy = 0; oy < s->oh; oy++) {
        char *o = (char *)out + (size_t)(oy * s->ow) * es;
#if QT_X86
        if (isa == QT_ISA_AVX512) {
            dw_row_avx512(&d, oy, acc);
            DW_EPILOGUE(avx512);
            continue;
        }
        if (isa == QT_ISA_AVX2) {
            dw_row_avx2(&d, oy, acc);
            DW_EPILOGUE(avx2);
            continue;
        }
#endif
        dw_row_ref(&d, oy, acc);
        DW_EPILOGUE(ref);
    }
}
