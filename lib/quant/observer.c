/* observer.c: streaming range observers and the choice of a clipping range.
 *
 * minmax      the range of everything seen.
 * ema         moving average of per-batch min and max (constant 0.01, first
 *             batch taken as is), as PyTorch's MovingAverageMinMaxObserver.
 * percentile  the pct and (100 - pct) percentiles of the histogram.
 * entropy     TensorRT's KL-divergence calibration on |x|: the threshold T
 *             whose 2^(bits-1)-level quantized distribution diverges least
 *             from the clipped reference distribution. Exact zeros are left
 *             out (quantization represents them exactly).
 * mse         the range [lo, hi] minimising the expected squared error of
 *             quantizing the histogram: clipping error outside, delta^2/12
 *             inside (prefix sums over bins, exhaustive search over ends).
 *
 * The histogram: QT_HIST_BINS bins over [-R, R] with 0 on a bin edge. R is
 * the power of two above the first batch's largest |x| and doubles (pairs of
 * bins merged: exact) whenever a value falls outside, so the final histogram
 * depends only on the values, not on their order or batching; no sample is
 * ever kept, so memory is fixed. */
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

static const char *names[] = {"minmax", "ema", "percentile", "entropy", "mse"};

const char *qt_obs_name(int kind) {
    return kind >= 0 && kind < 5 ? names[kind] : "?";
}

int qt_obs_parse(const char *name, int *kind) {
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, names[i])) {
            *kind = i;
            return 0;
        }
    return -1;
}

int qt_obs_init(struct qt_observer *o, int kind, struct qt_err *err) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->min = INFINITY;
    o->max = -INFINITY;
    o->ema_c = 0.01;
    if (kind == QT_OBS_PERCENTILE || kind == QT_OBS_ENTROPY || kind == QT_OBS_MSE) {
        o->hist = qt_calloc(QT_HIST_BINS, sizeof(double), err);
        if (!o->hist)
            return err->code;
    }
    return 0;
}

void qt_obs_release(struct qt_observer *o) {
    free(o->hist);
    o->hist = NULL;
}

static void hist_grow(struct qt_observer *o, double need) {
    double r = o->hist_r;
    while (r <= need) {
        /* new bin j covers old bins 2j - H/2 and 2j - H/2 + 1 (H = bins) */
        double *h = o->hist;
        int H = QT_HIST_BINS, q = H / 4;
        double tmp[QT_HIST_BINS];
        memset(tmp, 0, sizeof tmp);
        for (int i = 0; i < H; i++)
            tmp[q + i / 2] += h[i];
        memcpy(h, tmp, sizeof tmp);
        r *= 2;
    }
    o->hist_r = r;
}

void qt_obs_stats_init(struct qt_obs_stats *s) {
    s->mn = INFINITY;
    s->mx = -INFINITY;
    s->good = s->bad = 0;
}

/* A non-finite value counts as bad and leaves min and max alone. Min and max
 * are exact whatever the order, so the AVX-512 path gives the same result. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX512_PATH 1
__attribute__((target("avx512f"))) static int64_t scan512(const float *v, int64_t n, float *mn, float *mx) {
    __m512 vmn = _mm512_set1_ps(*mn), vmx = _mm512_set1_ps(*mx), big = _mm512_set1_ps(FLT_MAX);
    int64_t bad = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(v + i);
        __mmask16 ok = _mm512_cmp_ps_mask(_mm512_abs_ps(x), big, _CMP_LE_OQ);
        vmn = _mm512_mask_min_ps(vmn, ok, x, vmn);
        vmx = _mm512_mask_max_ps(vmx, ok, x, vmx);
        bad += 16 - __builtin_popcount(ok);
    }
    if (i < n) {
        __mmask16 in = (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(in, v + i);
        __mmask16 ok = _mm512_mask_cmp_ps_mask(in, _mm512_abs_ps(x), big, _CMP_LE_OQ);
        vmn = _mm512_mask_min_ps(vmn, ok, x, vmn);
        vmx = _mm512_mask_max_ps(vmx, ok, x, vmx);
        bad += (n - i) - __builtin_popcount(ok);
    }
    *mn = _mm512_reduce_min_ps(vmn);
    *mx = _mm512_reduce_max_ps(vmx);
    return bad;
}
#endif

void qt_obs_scan(const float *v, int64_t n, struct qt_obs_stats *s) {
    float mn = s->mn, mx = s->mx;
    int64_t bad = 0;
#ifdef HAVE_AVX512_PATH
    if (__builtin_cpu_supports("avx512f")) {
        bad = scan512(v, n, &mn, &mx);
    } else
#endif
    {
        for (int64_t i = 0; i < n; i++) {
            float x = v[i];
            if (!(fabsf(x) <= FLT_MAX)) { /* NaN, +-Inf */
                bad++;
                continue;
            }
            mn = x < mn ? x : mn;
            mx = x > mx ? x : mx;
        }
    }
    s->mn = mn;
    s->mx = mx;
    s->bad += bad;
    s->good += n - bad;
}

void qt_obs_stats_merge(struct qt_obs_stats *a, const struct qt_obs_stats *b) {
    a->mn = b->mn < a->mn ? b->mn : a->mn;
    a->mx = b->mx > a->mx ? b->mx : a->mx;
    a->good += b->good;
    a->bad += b->bad;
}

int qt_obs_begin(struct qt_observer *o, const struct qt_obs_stats *s) {
    float mn = s->mn, mx = s->mx;
    o->nonfinite += s->bad;
    if (s->good <= 0)
        return 0;
    if (mn < o->min)
        o->min = mn;
    if (mx > o->max)
        o->max = mx;
    if (o->batches == 0) {
        o->ema_min = mn;
        o->ema_max = mx;
    } else {
        o->ema_min += o->ema_c * (mn - o->ema_min);
        o->ema_max += o->ema_c * (mx - o->ema_max);
    }
    o->batches++;
    o->count += s->good;
    if (!o->hist)
        return 0;
    double amax = fabs(mn) > fabs(mx) ? fabs(mn) : fabs(mx);
    if (amax == 0 && o->hist_r == 0) {
        o->hist[QT_HIST_BINS / 2] += (double)s->good; /* all zeros: first bin above 0 */
        o->zeros += (double)s->good;
        return 0;
    }
    if (o->hist_r == 0) {
        /* R is the power of two strictly above max |x|, so the histogram is
         * the one a single pass with that R would give, whatever the order
         * and batching of the values; zeros seen before sit in the bin just
         * above 0 whatever R becomes */
        int e;
        frexp(amax, &e);
        o->hist_r = ldexp(1.0, e); /* > amax */
    } else if (amax >= o->hist_r) {
        hist_grow(o, amax);
    }
    return 1;
}

/* Bin indices are computed a block at a time (vectorised), then counted in
 * two interleaved integer histograms (a run of equal values does not wait on
 * the previous increment); exact zeros, most of a ReLU output, are counted
 * apart and added to their bin at the end. Counts are whole numbers, so the
 * result does not depend on how the data was split. */
#define BIN_BLOCK 512
/* idx[i]: 2 + the bin of v[i], 1 when not finite, 0 for an exact zero */
static void bin_index(const float *v, int64_t n, double r, double inv, int32_t *idx) {
    for (int64_t i = 0; i < n; i++) {
        float x = v[i];
        double d = ((double)x + r) * inv;
        int32_t b = fabsf(x) <= FLT_MAX ? (int32_t)(d < 0 ? 0 : d >= QT_HIST_BINS ? QT_HIST_BINS - 1 : d) : -1;
        idx[i] = x == 0 ? 0 : b + 2;
    }
}

#ifdef HAVE_AVX512_PATH
/* the same, 8 at a time: max(d, 0), min(., BINS - 1), truncation */
__attribute__((target("avx512f"))) static void bin_index512(const float *v, int64_t n, double r, double inv,
                                                            int32_t *idx) {
    __m512d vr = _mm512_set1_pd(r), vinv = _mm512_set1_pd(inv), zero = _mm512_setzero_pd();
    __m512d top = _mm512_set1_pd(QT_HIST_BINS - 1);
    __m256 big = _mm256_set1_ps(FLT_MAX), fz = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(v + i);
        __m512d d = _mm512_mul_pd(_mm512_add_pd(_mm512_cvtps_pd(x), vr), vinv);
        d = _mm512_min_pd(_mm512_max_pd(d, zero), top);
        __m256i b = _mm512_cvttpd_epi32(d);
        __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.f), x);
        __m256i fin = _mm256_castps_si256(_mm256_cmp_ps(ax, big, _CMP_LE_OQ));
        __m256i isz = _mm256_castps_si256(_mm256_cmp_ps(x, fz, _CMP_EQ_OQ));
        b = _mm256_add_epi32(_mm256_blendv_epi8(_mm256_set1_epi32(-1), b, fin), _mm256_set1_epi32(2));
        b = _mm256_blendv_epi8(b, _mm256_setzero_si256(), isz);
        _mm256_storeu_si256((__m256i *)(idx + i), b);
    }
    bin_index(v + i, n - i, r, inv, idx + i);
}
#endif

void qt_obs_bin(const struct qt_observer *o, const float *v, int64_t n, double *hist, double *zeros) {
    double r = o->hist_r, inv = QT_HIST_BINS / (2 * r);
    static _Thread_local uint32_t h2[2][QT_HIST_BINS + 2]; /* [0] zeros, [1] non-finite, [2 + b] bin b */
    int32_t idx[BIN_BLOCK];
    int64_t z = 0;
    memset(h2, 0, sizeof h2);
    for (int64_t i0 = 0; i0 < n; i0 += BIN_BLOCK) {
        int64_t m = n - i0 < BIN_BLOCK ? n - i0 : BIN_BLOCK;
#ifdef HAVE_AVX512_PATH
        if (__builtin_cpu_supports("avx512f"))
            bin_index512(v + i0, m, r, inv, idx);
        else
#endif
            bin_index(v + i0, m, r, inv, idx);
        for (int64_t i = 0; i + 1 < m; i += 2) {
            h2[0][idx[i]]++;
            h2[1][idx[i + 1]]++;
        }
        if (m & 1)
            h2[0][idx[m - 1]]++;
    }
    z = (int64_t)h2[0][0] + h2[1][0];
    for (int b = 0; b < QT_HIST_BINS; b++)
        hist[b] += (double)h2[0][b + 2] + (double)h2[1][b + 2];
    if (z) {
        int zb = (int)(r * inv); /* the bin of 0, as the formula puts it */
        hist[zb < QT_HIST_BINS ? zb : QT_HIST_BINS - 1] += (double)z;
    }
    *zeros += (double)z;
}

void qt_obs_update(struct qt_observer *o, const float *v, int64_t n) {
    struct qt_obs_stats s;
    qt_obs_stats_init(&s);
    qt_obs_scan(v, n, &s);
    if (qt_obs_begin(o, &s))
        qt_obs_bin(o, v, n, o->hist, &o->zeros);
}

/* bin centre */
static double centre(const struct qt_observer *o, int b) {
    return -o->hist_r + (b + 0.5) * (2 * o->hist_r / QT_HIST_BINS);
}

static void percentile(const struct qt_observer *o, double pct, double *lo, double *hi) {
    double total = 0, acc = 0, w = 2 * o->hist_r / QT_HIST_BINS;
    for (int b = 0; b < QT_HIST_BINS; b++)
        total += o->hist[b];
    double want_lo = total * (100 - pct) / 100, want_hi = total * pct / 100;
    *lo = o->min;
    *hi = o->max;
    for (int b = 0; b < QT_HIST_BINS; b++) {
        double nacc = acc + o->hist[b];
        if (acc <= want_lo && nacc > want_lo && o->hist[b] > 0) {
            double f = (want_lo - acc) / o->hist[b];
            *lo = -o->hist_r + (b + f) * w;
        }
        if (acc < want_hi && nacc >= want_hi && o->hist[b] > 0) {
            double f = (want_hi - acc) / o->hist[b];
            *hi = -o->hist_r + (b + f) * w;
            break;
        }
        acc = nacc;
    }
    if (*lo < o->min)
        *lo = o->min;
    if (*hi > o->max)
        *hi = o->max;
}

/* TensorRT entropy calibration on the |x| histogram (H/2 bins above 0). */
static double entropy_threshold(const struct qt_observer *o, int bits, int symmetric) {
    /* levels on [0, T]: all 2^bits of them for a one-sided (ReLU-like)
     * tensor quantized asymmetrically, half of them otherwise */
    int H = QT_HIST_BINS / 2, levels = !symmetric && o->min >= 0 ? 1 << bits : 1 << (bits - 1);
    double *a = malloc(sizeof(double) * (size_t)H);
    double *p = malloc(sizeof(double) * (size_t)H), *q = malloc(sizeof(double) * (size_t)H);
    double best = INFINITY, w = o->hist_r / H;
    int best_i = H;
    if (!a || !p || !q) {
        free(a);
        free(p);
        free(q);
        return o->hist_r;
    }
    for (int i = 0; i < H; i++)
        a[i] = o->hist[H + i] + o->hist[H - 1 - i];
    /* exact zeros (ReLU outputs, padding) are represented exactly whatever
     * the threshold: left in, their spike merged with its neighbours would
     * dominate the divergence and pull the threshold far down */
    a[0] = a[0] > o->zeros ? a[0] - o->zeros : 0;
    int last = H;
    while (last > 1 && a[last - 1] == 0)
        last--;
    if (last <= levels) {
        free(a);
        free(p);
        free(q);
        return last * w;
    }
    for (int i = levels; i <= last; i++) {
        /* reference: first i bins, the tail folded into the last */
        double tail = 0;
        for (int k = i; k < H; k++)
            tail += a[k];
        memcpy(p, a, sizeof(double) * (size_t)i);
        p[i - 1] += tail;
        /* candidate: i bins merged into `levels` groups, spread back over the
         * non-empty bins of each group */
        double psum = 0;
        for (int k = 0; k < i; k++)
            psum += p[k];
        for (int g = 0; g < levels; g++) {
            int b0 = (int)((double)g * i / levels), b1 = (int)((double)(g + 1) * i / levels);
            double s = 0;
            int nz = 0;
            for (int k = b0; k < b1; k++) {
                s += a[k];
                nz += a[k] != 0;
            }
            for (int k = b0; k < b1; k++)
                q[k] = a[k] != 0 && nz ? s / nz : 0;
        }
        double qsum = 0;
        for (int k = 0; k < i; k++)
            qsum += q[k];
        if (psum <= 0 || qsum <= 0)
            continue;
        double kl = 0;
        for (int k = 0; k < i; k++) {
            if (p[k] == 0)
                continue;
            double pk = p[k] / psum, qk = q[k] / qsum;
            kl += pk * log(pk / (qk > 0 ? qk : 1e-12));
        }
        if (kl < best) {
            best = kl;
            best_i = i;
        }
    }
    free(a);
    free(p);
    free(q);
    return (best_i + 0.5) * w;
}

static double mse_err(const double *c, const double *cx, const double *cxx, int H, double r, double w,
                      double levels, double L, double R) {
    double d = (R - L) / levels;
    int li = (int)floor((L + r) / w), hi = (int)ceil((R + r) / w);
    if (li < 0)
        li = 0;
    if (hi > H)
        hi = H;
    /* below L: sum c (x - L)^2; above R: sum c (x - R)^2; inside: n d^2/12 */
    double e = cxx[li] - 2 * L * cx[li] + L * L * c[li];
    e += (cxx[H] - cxx[hi]) - 2 * R * (cx[H] - cx[hi]) + R * R * (c[H] - c[hi]);
    e += (c[hi] - c[li]) * d * d / 12;
    return e;
}

/* Expected squared error of quantizing the histogram on [lo, hi] with
 * `levels` steps, from prefix sums of c, c*x, c*x^2 over bins. */
static void mse_search(const struct qt_observer *o, int bits, int symmetric, double *lo, double *hi) {
    int H = QT_HIST_BINS;
    double *c = malloc(sizeof(double) * (size_t)(H + 1) * 3);
    if (!c)
        return;
    double *cx = c + H + 1, *cxx = cx + H + 1;
    c[0] = cx[0] = cxx[0] = 0;
    for (int b = 0; b < H; b++) {
        double x = centre(o, b), h = o->hist[b];
        c[b + 1] = c[b] + h;
        cx[b + 1] = cx[b] + h * x;
        cxx[b + 1] = cxx[b] + h * x * x;
    }
    double levels = (double)((1 << bits) - 1), w = 2 * o->hist_r / H, best = INFINITY;
    int first = 0, last = H - 1;
    while (first < H && o->hist[first] == 0)
        first++;
    while (last > 0 && o->hist[last] == 0)
        last--;
    if (first > last) {
        free(c);
        return;
    }
    int zb = H / 2; /* bin edge at 0: lo edge index <= zb <= hi edge index */
    int lo0 = first < zb ? first : zb, hi0 = last + 1 > zb ? last + 1 : zb;
    /* ends are bin edges: lo = edge l, hi = edge h, l in [lo0, zb], h in [zb, hi0] */
    if (symmetric) { /* one search over the half-width t, in bins */
        int tmax = hi0 - zb > zb - lo0 ? hi0 - zb : zb - lo0, step = tmax / 1024 + 1;
        for (int k = tmax; k >= 1; k -= step) {
            double e = mse_err(c, cx, cxx, H, o->hist_r, w, levels, -k * w, k * w);
            if (e < best) {
                best = e;
                *lo = -k * w;
                *hi = k * w;
            }
        }
        free(c);
        return;
    }
    int step_l = (zb - lo0) / 256 + 1, step_h = (hi0 - zb) / 256 + 1;
    for (int l = lo0; l <= zb; l += step_l) {
        for (int h = hi0; h >= zb; h -= step_h) {
            double L = -o->hist_r + l * w, R = -o->hist_r + h * w;
            if (R - L <= 0)
                continue;
            double e = mse_err(c, cx, cxx, H, o->hist_r, w, levels, L, R);
            if (e < best) {
                best = e;
                *lo = L;
                *hi = R;
            }
        }
    }
    free(c);
}

void qt_obs_range(const struct qt_observer *o, int bits, int symmetric, double pct, double *lo, double *hi) {
    double mn = o->min, mx = o->max;
    if (!(o->count > 0)) {
        *lo = *hi = 0;
        return;
    }
    switch (o->kind) {
    case QT_OBS_EMA:
        mn = o->ema_min;
        mx = o->ema_max;
        break;
    case QT_OBS_PERCENTILE:
        if (o->hist_r > 0)
            percentile(o, pct > 0 && pct <= 100 ? pct : 99.99, &mn, &mx);
        break;
    case QT_OBS_ENTROPY:
        if (o->hist_r > 0) {
            double t = entropy_threshold(o, bits, symmetric);
            mn = o->min < -t ? -t : o->min;
            mx = o->max > t ? t : o->max;
        }
        break;
    case QT_OBS_MSE:
        if (o->hist_r > 0)
            mse_search(o, bits, symmetric, &mn, &mx);
        break;
    default:
        break;
    }
    if (mn > 0)
        mn = 0;
    if (mx < 0)
        mx = 0;
    if (symmetric) {
        double t = fabs(mn) > fabs(mx) ? fabs(mn) : fabs(mx);
        mn = -t;
        mx = t;
    }
    *lo = mn;
    *hi = mx;
}

/* ---- parameters ---------------------------------------------------------- */

void qt_qrange(int dtype, int bits, int narrow, int *qmin, int *qmax) {
    if (dtype == QT_UINT8) {
        *qmin = 0;
        *qmax = (1 << bits) - 1;
    } else if (dtype == QT_INT32) {
        *qmin = INT32_MIN;
        *qmax = INT32_MAX;
    } else {
        *qmin = -(1 << (bits - 1)) + (narrow ? 1 : 0);
        *qmax = (1 << (bits - 1)) - 1;
    }
}

void qt_qparams_from_range(double lo, double hi, int qmin, int qmax, int symmetric, float *scale, int32_t *zp) {
    if (lo > 0)
        lo = 0;
    if (hi < 0)
        hi = 0;
    if (symmetric) {
        double t = fabs(lo) > fabs(hi) ? fabs(lo) : fabs(hi);
        double s = t / ((double)(qmax - qmin) / 2);
        *scale = s > 0 ? (float)s : 1.0f;
        /* zero point: the middle of the range (0 for int8, 128 for uint8) */
        *zp = (int32_t)((qmin + qmax + 1) / 2);
        if (qmin < 0)
            *zp = 0;
        return;
    }
    double s = (hi - lo) / (double)(qmax - qmin);
    if (!(s > 0)) {
        *scale = 1.0f;
        *zp = qmin < 0 && qmax > 0 ? 0 : qmin;
        return;
    }
    *scale = (float)s;
    double z = qmin - lo / (double)*scale;
    z = nearbyint(z);
    if (z < qmin)
        z = qmin;
    if (z > qmax)
        z = qmax;
    *zp = (int32_t)z;
}

/* Squared error of channel c of w (outer x nch x inner) on the grid of step s. */
static double step_err(const float *w, int64_t outer, int64_t nch, int64_t inner, int64_t c, float s, int qmin,
                       int qmax) {
    double e = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            float x = w[(o * nch + c) * inner + i];
            float d = (float)qt_quantize(x, s, 0, qmin, qmax) * s - x;
            e += (double)d * d;
        }
    return e;
}

float qt_weight_step(const float *w, int64_t outer, int64_t nch, int64_t inner, int64_t c, int qmin, int qmax,
                     int clip, float *t_out) {
    float mx = 0, s;
    int32_t z;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            mx = fmaxf(mx, fabsf(w[(o * nch + c) * inner + i]));
    qt_qparams_from_range(-mx, mx, qmin, qmax, 1, &s, &z);
    float t = mx;
    if (clip > 0 && mx > 0) {
        double best = step_err(w, outer, nch, inner, c, s, qmin, qmax);
        for (int k = 63; k >= 16; k--) { /* ties keep the wider range */
            float tk = mx * (float)k / 64, sk;
            qt_qparams_from_range(-tk, tk, qmin, qmax, 1, &sk, &z);
            double e = step_err(w, outer, nch, inner, c, sk, qmin, qmax);
            if (e < best) {
                best = e;
                s = sk;
                t = tk;
            }
        }
    }
    if (t_out)
        *t_out = t;
    return s;
}

int qt_qparam_alloc(struct qt_qparam *q, int n, struct qt_err *err) {
    q->n = n;
    q->scale = qt_calloc((size_t)n, sizeof(float), err);
    q->zp = qt_calloc((size_t)n, sizeof(int32_t), err);
    q->obs_min = qt_calloc((size_t)n, sizeof(float), err);
    q->obs_max = qt_calloc((size_t)n, sizeof(float), err);
    q->rng_min = qt_calloc((size_t)n, sizeof(float), err);
    q->rng_max = qt_calloc((size_t)n, sizeof(float), err);
    return err->code;
}

void qt_qparam_release(struct qt_qparam *q) {
    free(q->scale);
    free(q->zp);
    free(q->obs_min);
    free(q->obs_max);
    free(q->rng_min);
    free(q->rng_max);
    free(q->cbits);
    memset(q, 0, sizeof *q);
}
