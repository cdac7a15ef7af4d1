/* qgemm.c: the u8 x s8 -> int32 matrix product of the quantized
 * operators with its requantization (see int8.h; the layout and the per-ISA
 * files in qkern.h): the reference micro kernel and epilogue, and the tile
 * loops that dispatch to the chosen ISA's. */
#include "int8/qkern.h"

void qt_qepi__ref(EPILOGUE_ARGS) {
    EPILOGUE_BODY
}

/* ---- reference micro kernel ------------------------------------------- */

void qt_qkern__ref(const int8_t *w, int64_t kp, const uint8_t *bp, int mr, int nc, int32_t *acc) {
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
                    qt_qkern__avx512(w, kp, pan, mr, nc, acc, &q);
                } else {
                    qt_qkern__avx512(w, kp, pan, mr, nc, acc, NULL);
                    qt_qepi__avx512(acc, mr, nc, m, cs, qw, rq, o, ldr, ldc);
                }
                continue;
            }
            if (isa == QT_ISA_AVX2) {
                qt_qkern__avx2(w, kp, pan, mr, nc, acc);
                qt_qepi__avx2(acc, mr, nc, m, cs, qw, rq, o, ldr, ldc);
                continue;
            }
#endif
            (void)isa;
            qt_qkern__ref(w, kp, pan, mr, nc, acc);
            qt_qepi__ref(acc, mr, nc, m, cs, qw, rq, o, ldr, ldc);
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
                qt_qkern__avx512(w, kp, pan, mr, nc, acc, NULL);
            else if (isa == QT_ISA_AVX2)
                qt_qkern__avx2(w, kp, pan, mr, nc, acc);
            else
#endif
                qt_qkern__ref(w, kp, pan, mr, nc, acc);
            /* runs of columns inside one image */
            for (int c = 0; c < nc;) {
                int64_t g = g0 + c0 + c, img = g / hw, p = g % hw;
                int run = (int)(hw - p < nc - c ? hw - p : nc - c);
                char *o = (char *)out + (size_t)(img * istride + p) * es;
                const int32_t *cs = colsum ? colsum + c0 + c : NULL;
#if QT_X86
                if (isa == QT_ISA_AVX512)
                    qt_qepi__avx512(acc + c, mr, run, m, cs, qw, rq, o, ldr, 1);
                else if (isa == QT_ISA_AVX2)
                    qt_qepi__avx2(acc + c, mr, run, m, cs, qw, rq, o, ldr, 1);
                else
#endif
                    qt_qepi__ref(acc + c, mr, run, m, cs, qw, rq, o, ldr, 1);
                c += run;
            }
        }
    }
}
