/* qdw.c: the depthwise integer convolution of QLinearConv/ConvInteger
 * (one channel at a time; see int8.h), reference and per-ISA row kernels,
 * and the AVX-512 3x3 kernel; requantized by the GEMM's epilogues. */
#include "int8/qkern.h"
#include "ops/conv.h"

#if QT_X86
#include <immintrin.h>
#endif

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
/* the constants of one channel: requantization and the paired taps */
struct dw3k {
    __m512 vlo, vhi, vs;
    __m512i vzp, vb, w01[3], w2[3], w2h[3];
};

#define DW3_LOCALS(K)                                                                                          \
    const __m512 vlo = (K)->vlo, vhi = (K)->vhi, vs = (K)->vs;                                                 \
    const __m512i vzp = (K)->vzp, vb = (K)->vb;                                                                \
    const __m512i *w01 = (K)->w01, *w2 = (K)->w2, *w2h = (K)->w2h
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

/* the plane as int16 x - xzp into P (pitch pp), zero borders; zeros past
 * the plane too: the stride-1 small-plane loop reads up to 33 elements
 * beyond it (into Q's space, unused there) */
T512 static void dw3_plane(const void *x, int s8, int32_t xzp, const struct qt_conv_shape *s, int16_t *P,
                           int64_t pp, int64_t phgt) {
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
}

T512 static void dw3_consts(const int32_t *wk, const struct qt_qrequant *r1, struct dw3k *K) {
    K->vlo = _mm512_set1_ps((float)(r1->lo - r1->zp));
    K->vhi = _mm512_set1_ps((float)(r1->hi - r1->zp));
    K->vzp = _mm512_set1_epi32(r1->zp);
    K->vb = _mm512_set1_epi32(r1->bias ? r1->bias[0] : 0);
    K->vs = _mm512_set1_ps(r1->scale ? r1->scale[0] : 1.0f);
    for (int ki = 0; ki < 3; ki++) {
        K->w01[ki] = _mm512_set1_epi32((int32_t)(((uint32_t)wk[ki * 3] & 0xffff) | ((uint32_t)wk[ki * 3 + 1] << 16)));
        K->w2[ki] = _mm512_set1_epi32((int32_t)((uint32_t)wk[ki * 3 + 2] & 0xffff));
        K->w2h[ki] = _mm512_set1_epi32((int32_t)((uint32_t)wk[ki * 3 + 2] << 16));
    }
}

/* stride 1, uint8/int8 output: 32 outputs from three loads per row: read
 * as int32 lanes, P + ox holds the taps 0, 1 of the even outputs, P + ox + 1
 * those of the odd ones, P + ox + 2 tap 2 of both (low half even, high half
 * odd); the plane's slack (Q's space) covers the reads past a row */
T512 static void dw3_s1_q8(const int16_t *P, int64_t pp, const struct qt_conv_shape *s, const struct dw3k *K,
                           uint8_t *tb, uint8_t *o8) {
    DW3_LOCALS(K);
    const int64_t oh = s->oh, ow = s->ow;
    if (ow < 32) {
        /* a narrow plane (MobileNet's 14x14 and 7x7): its rows one after
         * the other at the pitch pp, 32 outputs a step across rows, into
         * tb; output (oy, ox) is flat index oy * pp + ox, whose taps are
         * P[j + ki * pp + kj] as within a row; the columns from ow to pp
         * are computed and dropped */
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
}

/* every other case: rows of int32 lanes L (pitch lp) holding tap pairs;
 * uint8/int8 outputs requantized here, as the epilogue does, else int32
 * sums into acc for the epilogue */
T512 static void dw3_lanes(const int32_t *L, int64_t lp, int64_t off2, const struct qt_conv_shape *s,
                           const struct dw3k *K, int q8, int32_t *acc, void *out) {
    DW3_LOCALS(K);
    (void)w2h;
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
            if (q8) {
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
}

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
    dw3_plane(x, s8, xzp, s, P, pp, phgt);
    int q8 = r1->out == QT_QOUT_U8 || r1->out == QT_QOUT_S8;
    struct dw3k K;
    dw3_consts(wk, r1, &K);
    if (s->sw == 1 && q8) {
        dw3_s1_q8(P, pp, s, &K, (uint8_t *)acc, out);
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
    dw3_lanes(L, lp, off2, s, &K, q8, acc, out);
    if (q8)
        return;
    for (int64_t oy = 0; oy < s->oh; oy++) {
        char *o = (char *)out + (size_t)(oy * s->ow) * es;
        for (int64_t c0 = 0; c0 < s->ow; c0 += QT_QEPI_MAX)
            qt_qepi__avx512(acc + oy * s->ow + c0, 1, (int)(s->ow - c0 < QT_QEPI_MAX ? s->ow - c0 : QT_QEPI_MAX), 0,
                            NULL, qw, r1, o + c0 * (int64_t)es, 0, 1);
    }
}
#endif

#define DW_EPILOGUE(isa)                                                                                       \
    for (int64_t c0 = 0; c0 < s->ow; c0 += QT_QEPI_MAX)                                                        \
    qt_qepi__##isa(acc + c0, 1, (int)(s->ow - c0 < QT_QEPI_MAX ? s->ow - c0 : QT_QEPI_MAX), 0, NULL, &qw, &r1,  \
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
