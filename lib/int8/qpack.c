/* qpack.c: the integer GEMM's operand layouts (see qkern.h): weights
 * padded to four k per row, X packed into panels of QT_QG_NR columns (from a
 * matrix, image segments or im2col), and the packed columns' sums. */
#include "int8/qkern.h"
#include "ops/conv.h"

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

/* a / sw for a >= 0, without a division for the usual strides 1 and 2 */
static inline int64_t div_sw(int64_t a, int64_t sw) {
    return sw == 1 ? a : sw == 2 ? a >> 1 : a / sw;
}

void qt_qpack_im2col(uint8_t *dst, const void *x, int s8, uint8_t xzp, const struct qt_conv_shape *s, int64_t cg,
                     int64_t kp, int64_t c0, int64_t c1, int32_t *colsum, uint8_t *rows) {
    /* the k x n matrix row by row in rows (x's own bytes, padding = the zero
     * point in x's type), then interleaved into panels like any X */
    const uint8_t *X = x;
    uint8_t pad = xzp ^ (s8 ? 0x80 : 0);
    int64_t n = c1 - c0, k = cg * s->kh * s->kw;
    const int64_t oy0 = c0 / s->ow, ox0 = c0 % s->ow; /* divisions once, not per row */
    for (int64_t r = 0, c = 0, ki = 0, kj = 0; r < k; r++) { /* r = (c * kh + ki) * kw + kj */
        if (r) {
            kj = kj + 1 < s->kw ? kj + 1 : 0;
            ki = kj ? ki : ki + 1 < s->kh ? ki + 1 : 0;
            c = kj || ki ? c : c + 1;
        }
        const uint8_t *xc = X + c * s->ih * s->iw;
        uint8_t *d = rows + r * n;
        int64_t o = c0, oy = oy0, ox = ox0;
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
                    int64_t sw = s->sw, t0 = ix < 0 ? div_sw(-ix + sw - 1, sw) : 0, t1 = 0;
                    if (ix + (run - 1) * sw < s->iw)
                        t1 = run;
                    else if (s->iw - 1 >= ix)
                        t1 = div_sw(s->iw - 1 - ix, sw) + 1;
                    if (t1 < t0)
                        t1 = t0;
                    if (t0 > run)
                        t0 = t1 = run;
                    memset(d, pad, (size_t)t0);
                    if (sw == 1) {
                        memcpy(d + t0, row + ix + t0, (size_t)(t1 - t0));
                    } else if (sw == 2) { /* a constant stride: vectorized */
                        const uint8_t *src = row + ix + 2 * t0;
                        for (int64_t t = 0; t < t1 - t0; t++)
                            d[t0 + t] = src[2 * t];
                    } else {
                        for (int64_t t = t0; t < t1; t++)
                            d[t] = row[ix + t * sw];
                    }
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
