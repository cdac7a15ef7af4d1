/* t_int8.c: every SIMD integer kernel (lib/int8) bit-exact against the
 * portable C reference, on random data over the kernels' edge cases: k not a
 * multiple of 4, rows not a multiple of 8, column counts around the 16/48
 * panel widths, uint8/int8 activations, weight zero points (column sums),
 * every output kind, clamp bounds, strided outputs, depthwise geometries.
 * The reference itself is checked against a naive double loop. Run on an
 * ISA the CPU lacks, the case is skipped with a message. */
#include "int8/int8.h"
#include "ops/conv.h"
#include "tap.h"

#include <math.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

struct gcase {
    int64_t m, k, n;
    int s8, wu8, wzp, out, ldc_t; /* ldc_t: transposed output (ldr 1, ldc m) */
};

/* Runs one GEMM case with the current ISA into out (es bytes/element). */
static void run_gemm(const struct gcase *c, const uint8_t *x, const void *w, const int32_t *bias, const float *sc,
                     void *out) {
    size_t wsz = qt_qweights_size(c->m, c->k);
    void *wmem = malloc(wsz);
    struct qt_qweights qw;
    uint8_t zp8 = (uint8_t)c->wzp;
    qt_qweights_pack(&qw, wmem, w, c->wu8, c->m, c->k, c->k, 1, c->wzp || c->wu8 ? &zp8 : NULL, 1);
    uint8_t *xp = malloc(qt_qpack_size(qw.kp, c->n));
    int32_t *cs = malloc(sizeof(int32_t) * (size_t)(c->n + 1));
    qt_qpack_x(xp, x, c->s8, c->k, qw.kp, c->n, c->n, 1, cs);
    struct qt_qrequant rq;
    int dt = c->out == QT_QOUT_U8 ? QT_UINT8 : c->out == QT_QOUT_S8 ? QT_INT8 : c->out == QT_QOUT_F32 ? QT_FLOAT : QT_INT32;
    memset(&rq, 0, sizeof rq);
    rq.out = c->out;
    rq.zp = dt == QT_UINT8 ? 77 : dt == QT_INT8 ? -9 : 0;
    rq.lo = dt == QT_UINT8 ? 3 : -120;
    rq.hi = dt == QT_UINT8 ? 250 : 100;
    rq.bias = bias;
    rq.scale = c->out == QT_QOUT_I32 ? NULL : sc;
    if (c->ldc_t)
        qt_qgemm(&qw, 0, c->m, xp, c->n, qw.wzp_any ? cs : NULL, &rq, out, 1, c->m);
    else
        qt_qgemm(&qw, 0, c->m, xp, c->n, qw.wzp_any ? cs : NULL, &rq, out, c->n, 1);
    free(wmem);
    free(xp);
    free(cs);
}

static void gemm_cases(void) {
    static const struct gcase cases[] = {
        {8, 16, 48, 0, 0, 0, QT_QOUT_U8, 0},   {13, 27, 49, 0, 0, 0, QT_QOUT_U8, 0},
        {24, 20, 17, 1, 0, 0, QT_QOUT_S8, 0},  {7, 5, 3, 0, 1, 131, QT_QOUT_U8, 0},
        {40, 72, 400, 0, 0, 0, QT_QOUT_U8, 0}, {9, 33, 95, 1, 1, 120, QT_QOUT_S8, 0},
        {10, 30, 5, 0, 0, 0, QT_QOUT_F32, 1},  {16, 64, 32, 0, 0, 0, QT_QOUT_I32, 0},
        {5, 1, 1, 0, 0, 0, QT_QOUT_U8, 1},     {33, 300, 100, 0, 0, 0, QT_QOUT_U8, 0},
    };
    int maxisa = qt_int8_isa_max();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const struct gcase *c = &cases[ci];
        int64_t mn = c->m * c->n;
        uint8_t *x = malloc((size_t)(c->k * c->n));
        uint8_t *w = malloc((size_t)(c->m * c->k));
        int32_t *bias = malloc(sizeof(int32_t) * (size_t)c->m);
        float *sc = malloc(sizeof(float) * (size_t)c->m);
        for (int64_t i = 0; i < c->k * c->n; i++)
            x[i] = (uint8_t)rnd();
        for (int64_t i = 0; i < c->m * c->k; i++)
            w[i] = (uint8_t)rnd();
        for (int64_t i = 0; i < c->m; i++) {
            bias[i] = (int32_t)(rnd() % 20001) - 10000;
            sc[i] = 1.0f / (float)(64 + rnd() % 4000);
        }
        size_t es = c->out == QT_QOUT_U8 || c->out == QT_QOUT_S8 ? 1 : 4;
        void *ref = calloc((size_t)mn, es), *got = calloc((size_t)mn, es);
        qt_int8_set_isa(QT_ISA_REF);
        run_gemm(c, x, w, bias, sc, ref);
        /* the reference against a naive loop (int32 output only: exact) */
        if (c->out == QT_QOUT_I32) {
            int bad = 0;
            for (int64_t r = 0; r < c->m; r++)
                for (int64_t j = 0; j < c->n; j++) {
                    int64_t s = bias[r];
                    for (int64_t kk = 0; kk < c->k; kk++) {
                        int32_t xv = c->s8 ? (int8_t)x[kk * c->n + j] : x[kk * c->n + j];
                        int32_t wv = c->wu8 ? w[r * c->k + kk] - c->wzp : (int8_t)w[r * c->k + kk] - c->wzp;
                        s += (int64_t)xv * wv;
                    }
                    bad += ((int32_t *)ref)[r * c->n + j] != s;
                }
            T_OK(bad == 0, "gemm %lldx%lldx%lld: reference equals a naive loop", (long long)c->m, (long long)c->k,
                 (long long)c->n);
        }
        for (int isa = QT_ISA_AVX2; isa <= QT_ISA_AVX512; isa++) {
            if (isa > maxisa) {
                T_SKIP("this CPU has no %s", qt_int8_isa_name(isa));
                continue;
            }
            qt_int8_set_isa(isa);
            memset(got, 0xa5, (size_t)mn * es);
            run_gemm(c, x, w, bias, sc, got);
            T_OK(!memcmp(ref, got, (size_t)mn * es), "gemm %s m=%lld k=%lld n=%lld %s%s%s: bit-exact with ref",
                 qt_int8_isa_name(isa), (long long)c->m, (long long)c->k, (long long)c->n, c->s8 ? "s8" : "u8",
                 c->wu8 ? " u8 weights" : "", c->ldc_t ? " transposed" : "");
        }
        free(x);
        free(w);
        free(bias);
        free(sc);
        free(ref);
        free(got);
    }
}

static void dw_cases(void) {
    struct {
        int64_t ih, iw, k, st, pad0, pad1, dil;
        int s8;
    } cases[] = {{13, 13, 3, 1, 1, 1, 1, 0}, {112, 112, 3, 2, 0, 1, 1, 0}, {7, 9, 3, 2, 1, 1, 1, 1},
                 {10, 10, 5, 1, 2, 2, 1, 0}, {11, 11, 3, 1, 2, 2, 2, 1}, {1, 1, 1, 1, 0, 0, 1, 0},
                 /* 3x3 stride 1 on narrow planes (one pass across rows) and at the width where that stops */
                 {14, 14, 3, 1, 1, 1, 1, 0}, {7, 7, 3, 1, 1, 1, 1, 1}, {1, 1, 3, 1, 1, 1, 1, 0},
                 {5, 31, 3, 1, 1, 1, 1, 0}, {6, 32, 3, 1, 1, 1, 1, 1}, {9, 4, 3, 1, 0, 0, 1, 0}};
    int maxisa = qt_int8_isa_max();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        struct qt_conv_shape s = {0};
        s.n = s.c = s.m = s.group = 1;
        s.ih = cases[ci].ih, s.iw = cases[ci].iw, s.kh = s.kw = cases[ci].k;
        s.sh = s.sw = cases[ci].st, s.dh = s.dw = cases[ci].dil;
        s.ph = s.pw = cases[ci].pad0, s.ph_end = s.pw_end = cases[ci].pad1;
        s.oh = (s.ih + s.ph + s.ph_end - s.dh * (s.kh - 1) - 1) / s.sh + 1;
        s.ow = (s.iw + s.pw + s.pw_end - s.dw * (s.kw - 1) - 1) / s.sw + 1;
        int64_t no = s.oh * s.ow;
        uint8_t *x = malloc((size_t)(s.ih * s.iw));
        int8_t w[25];
        for (int64_t i = 0; i < s.ih * s.iw; i++)
            x[i] = (uint8_t)rnd();
        for (int i = 0; i < 25; i++)
            w[i] = (int8_t)rnd();
        int32_t bias = 1234;
        float sc = 1.0f / 700;
        struct qt_qrequant rq = {QT_QOUT_U8, &bias, &sc, 128, 0, 255};
        void *tmp = malloc(qt_qdw_scratch(&s));
        uint8_t *ref = malloc((size_t)no), *got = malloc((size_t)no);
        qt_int8_set_isa(QT_ISA_REF);
        qt_qdwconv(x, cases[ci].s8, 5, w, 0, &s, &rq, 0, ref, tmp);
        /* reference against a naive loop */
        int bad = 0;
        for (int64_t oy = 0; oy < s.oh; oy++)
            for (int64_t ox = 0; ox < s.ow; ox++) {
                int32_t acc = bias;
                for (int64_t i = 0; i < s.kh; i++)
                    for (int64_t j = 0; j < s.kw; j++) {
                        int64_t iy = oy * s.sh - s.ph + i * s.dh, ix = ox * s.sw - s.pw + j * s.dw;
                        if (iy < 0 || iy >= s.ih || ix < 0 || ix >= s.iw)
                            continue;
                        int32_t xv = cases[ci].s8 ? (int8_t)x[iy * s.iw + ix] : x[iy * s.iw + ix];
                        acc += (xv - 5) * w[i * s.kw + j];
                    }
                float v = (float)acc * sc;
                v = v < -128 ? -128 : v > 127 ? 127 : v;
                bad += ref[oy * s.ow + ox] != (uint8_t)((int)nearbyintf(v) + 128);
            }
        T_OK(bad == 0, "depthwise %lldx%lld k%lld s%lld: reference equals a naive loop", (long long)s.ih,
             (long long)s.iw, (long long)s.kh, (long long)s.sh);
        for (int isa = QT_ISA_AVX2; isa <= QT_ISA_AVX512; isa++) {
            if (isa > maxisa) {
                T_SKIP("this CPU has no %s", qt_int8_isa_name(isa));
                continue;
            }
            qt_int8_set_isa(isa);
            memset(got, 0xa5, (size_t)no);
            qt_qdwconv(x, cases[ci].s8, 5, w, 0, &s, &rq, 0, got, tmp);
            T_OK(!memcmp(ref, got, (size_t)no), "depthwise %s %lldx%lld k%lld s%lld: bit-exact with ref",
                 qt_int8_isa_name(isa), (long long)s.ih, (long long)s.iw, (long long)s.kh, (long long)s.sh);
        }
        free(x);
        free(tmp);
        free(ref);
        free(got);
    }
}

int main(void) {
    printf("# int8 kernels: this CPU's best is %s\n", qt_int8_isa_name(qt_int8_isa_max()));
    T_OK(qt_int8_set_isa(QT_ISA_REF) == QT_ISA_REF, "the reference can be forced");
    gemm_cases();
    dw_cases();
    return t_done();
}
