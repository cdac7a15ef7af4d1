/* dw3x3.c: one channel of a 3x3 depthwise convolution, stride 1 or 2,
 * dilation 1, read straight from the input plane (AVX-512).
 *
 *     y[oy][ox] = act(b + w0 x[iy][ix] + w1 x[iy][ix+1] + ... + w8 x[iy+2][ix+2]),
 *     iy = oy*s - ph, ix = ox*s - pw
 *
 * conv.c's portable path copies the plane into a zero-bordered buffer, sums
 * over it and applies the activation in a second pass. Here 16 outputs of a
 * row are summed in registers from masked loads of the input rows (a lane
 * outside the plane loads 0.0, the border's value; a row outside it is a
 * row of zeros) and activated before the one store: the same multiplies and
 * adds in the same order (a multiply, then an add, tap by tap: no fused
 * multiply-add), so the same bytes, without the copy or the second pass.
 * Stride 2 loads 32 consecutive inputs and takes the even and odd lanes
 * apart with two permutes. */
#include "ops/conv.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

/* lanes l of a load at column c of a row of iw that lie in [0, iw) */
static __mmask16 in_row(int64_t c, int64_t iw) {
    int64_t lo = c < 0 ? -c : 0, hi = iw - c < 16 ? iw - c : 16;
    if (hi <= lo)
        return 0;
    return (__mmask16)((hi >= 16 ? 0xffffu : (1u << hi) - 1) & ~((1u << lo) - 1));
}

/* Relu: v > 0 ? v : 0; Clip: v < lo ? lo : v, then v > hi ? hi : v (max
 * and min return their second operand for NaN and equal values, as the
 * comparisons do) */
#define INLINE static inline __attribute__((always_inline, target("avx512f")))
INLINE __m512 dw_act(int kind, __m512 v, __m512 lo, __m512 hi) {
    if (kind == QT_POST_RELU)
        return _mm512_max_ps(v, lo);
    if (kind == QT_POST_CLIP)
        return _mm512_min_ps(hi, _mm512_max_ps(lo, v));
    return v;
}

/* the j-th load of a row for one vector of outputs: a row outside the
 * plane is zeros, a vector inside the row a plain load, one across its
 * ends a masked load (lanes outside the row load 0, the border's value) */
INLINE __m512 ld(const float *q, int64_t c, int valid, int inner, __mmask16 m) {
    if (!valid)
        return _mm512_setzero_ps();
    return inner ? _mm512_loadu_ps(q + c) : _mm512_maskz_loadu_ps(m, q + c);
}

INLINE __m512 tap3(__m512 acc, __m512 wa, __m512 wb, __m512 wc, __m512 t0, __m512 t1, __m512 t2) {
    acc = _mm512_add_ps(acc, _mm512_mul_ps(wa, t0));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(wb, t1));
    return _mm512_add_ps(acc, _mm512_mul_ps(wc, t2));
}

/* taps wa, wb, wc of input row q for the 16 outputs whose first tap is
 * column c: ((acc + wa x[c + l]) + wb x[c + l + 1]) + wc x[c + l + 2] at
 * stride 1, x[c + 2l], x[c + 2l + 1], x[c + 2l + 2] at stride 2 (32
 * consecutive inputs, even and odd lanes taken apart by permutes); m: the
 * masks of the loads at c, c + 1 or c + 16, c + 2, c + 18 */
INLINE __m512 row1(__m512 acc, const float *q, int64_t c, int valid, int inner, const __mmask16 *m, __m512 wa,
                   __m512 wb, __m512 wc) {
    return tap3(acc, wa, wb, wc, ld(q, c, valid, inner, m[0]), ld(q, c + 1, valid, inner, m[1]),
                ld(q, c + 2, valid, inner, m[2]));
}

INLINE __m512 row2(__m512 acc, const float *q, int64_t c, int valid, int inner, const __mmask16 *m, __m512 wa,
                   __m512 wb, __m512 wc) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    __m512 a = ld(q, c, valid, inner, m[0]), b = ld(q, c + 16, valid, inner, m[1]);
    __m512 a2 = ld(q, c + 2, valid, inner, m[2]), b2 = ld(q, c + 18, valid, inner, m[3]);
    return tap3(acc, wa, wb, wc, _mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b),
                _mm512_permutex2var_ps(a2, even, b2));
}

/* 16 outputs of output row r of the group from column c: the three input
 * rows' taps in kernel order */
#define OUT16(ROW, r, c, inner, m)                                                                               \
    ROW(ROW(ROW(bv, p[(r) * st], c, ok[(r) * st], inner, m, w0, w1, w2), p[(r) * st + 1], c, ok[(r) * st + 1],     \
            inner, m, w3, w4, w5),                                                                               \
        p[(r) * st + 2], c, ok[(r) * st + 2], inner, m, w6, w7, w8)

#define MAXV 64 /* vectors of 16 outputs a row at most (wider rows: conv.c's loops) */
#define RG 4    /* output rows summed together: four independent chains of 18 operations */

/* dw3x3_s1 and dw3x3_s2: the kernel at stride 1 and 2 (ROW row1, row2).
 * Output rows are taken RG at a time, each vector of 16 columns of the RG
 * rows summed side by side. Vector v (outputs 16v..) is "inner" when all
 * its loads lie inside the row; the masks of the others are the same on
 * every row, made once. */
#define DW3X3(name, ROW, ST)                                                                                     \
    static AVX512 void name(const float *x, const struct qt_conv_shape *s, const float *wt, float b, float *y,     \
                            const struct qt_post *post) {                                                        \
        enum { st = ST };                                                                                        \
        const __m512 w0 = _mm512_set1_ps(wt[0]), w1 = _mm512_set1_ps(wt[1]), w2 = _mm512_set1_ps(wt[2]);        \
        const __m512 w3 = _mm512_set1_ps(wt[3]), w4 = _mm512_set1_ps(wt[4]), w5 = _mm512_set1_ps(wt[5]);        \
        const __m512 w6 = _mm512_set1_ps(wt[6]), w7 = _mm512_set1_ps(wt[7]), w8 = _mm512_set1_ps(wt[8]);        \
        const __m512 bv = _mm512_set1_ps(b);                                                                     \
        const __m512 lo = _mm512_set1_ps(post->kind == QT_POST_CLIP ? post->lo : 0.f);                           \
        const __m512 hi = _mm512_set1_ps(post->hi);                                                              \
        int kind = post->kind;                                                                                   \
        int64_t iw = s->iw, ow = s->ow, nv = (ow + 15) / 16;                                                     \
        __mmask16 mk[MAXV][4];                                                                                   \
        unsigned char inner[MAXV];                                                                               \
        for (int64_t v = 0; v < nv; v++) {                                                                       \
            int64_t c = 16 * v * st - s->pw;                                                                     \
            inner[v] = c >= 0 && c + 16 * st + 2 <= iw;                                                          \
            for (int j = 0; j < 4; j++) /* loads at c, c + 1, c + 2 or c, c + 16, c + 2, c + 18 */               \
                mk[v][j] = in_row(c + (st == 1 ? j : (j & 1) * 16 + (j & 2)), iw);                               \
        }                                                                                                        \
        for (int64_t oy = 0; oy < s->oh;) {                                                                      \
            int64_t iy = oy * st - s->ph;                                                                        \
            const float *p[RG * st + 2]; /* the group's input rows, read only where ok */                       \
            int ok[RG * st + 2];                                                                                 \
            for (int j = 0; j < RG * st + 2; j++) {                                                              \
                ok[j] = iy + j >= 0 && iy + j < s->ih;                                                           \
                p[j] = ok[j] ? x + (iy + j) * iw : x;                                                            \
            }                                                                                                    \
            float *yr = y + oy * ow;                                                                             \
            if (oy + RG <= s->oh) {                                                                              \
                for (int64_t v = 0; v < nv; v++) {                                                               \
                    int64_t c = 16 * v * st - s->pw, n = ow - 16 * v < 16 ? ow - 16 * v : 16;                    \
                    __mmask16 sm = (__mmask16)((1u << n) - 1);                                                   \
                    int in = inner[v];                                                                           \
                    __m512 a0 = OUT16(ROW, 0, c, in, mk[v]), a1 = OUT16(ROW, 1, c, in, mk[v]);                   \
                    __m512 a2 = OUT16(ROW, 2, c, in, mk[v]), a3 = OUT16(ROW, 3, c, in, mk[v]);                   \
                    _mm512_mask_storeu_ps(yr + 16 * v, sm, dw_act(kind, a0, lo, hi));                            \
                    _mm512_mask_storeu_ps(yr + ow + 16 * v, sm, dw_act(kind, a1, lo, hi));                       \
                    _mm512_mask_storeu_ps(yr + 2 * ow + 16 * v, sm, dw_act(kind, a2, lo, hi));                   \
                    _mm512_mask_storeu_ps(yr + 3 * ow + 16 * v, sm, dw_act(kind, a3, lo, hi));                   \
                }                                                                                                \
                oy += RG;                                                                                        \
            } else { /* the last rows one by one */                                                              \
                for (int64_t v = 0; v < nv; v++) {                                                               \
                    int64_t c = 16 * v * st - s->pw, n = ow - 16 * v < 16 ? ow - 16 * v : 16;                    \
                    __m512 a0 = OUT16(ROW, 0, c, inner[v], mk[v]);                                               \
                    _mm512_mask_storeu_ps(yr + 16 * v, (__mmask16)((1u << n) - 1), dw_act(kind, a0, lo, hi));    \
                }                                                                                                \
                oy++;                                                                                            \
            }                                                                                                    \
        }                                                                                                        \
    }
DW3X3(dw3x3_s1, row1, 1)
DW3X3(dw3x3_s2, row2, 2)

int qt_dw3x3(const float *x, const struct qt_conv_shape *s, const float *w, float b, float *y,
             const struct qt_post *post) {
    if (s->kh != 3 || s->kw != 3 || s->dh != 1 || s->dw != 1 || s->sh != s->sw || (s->sh != 1 && s->sh != 2) ||
        s->ow > 16 * MAXV || !__builtin_cpu_supports("avx512f"))
        return 0;
    if (s->sh == 1)
        dw3x3_s1(x, s, w, b, y, post);
    else
        dw3x3_s2(x, s, w, b, y, post);
    return 1;
}
#else
int qt_dw3x3(const float *x, const struct qt_conv_shape *s, const float *w, float b, float *y,
             const struct qt_post *post) {
    (void)x, (void)s, (void)w, (void)b, (void)y, (void)post;
    return 0;
}
#endif
