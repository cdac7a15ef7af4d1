/* qkern.h (private to lib/int8): what the u8 x s8 GEMM files share.
 *
 * Packed X: panels of QT_QG_NR columns; in a panel, for each group of four
 * k, the four bytes of column 0, then of column 1...: offset
 * (k/4)*4*NR + (col%NR)*4 + k%4. One int32 lane of a vector register then
 * holds four k of one column, which is what vpdpbusd (and vpmaddubsw +
 * vpmaddwd) multiply with four broadcast weight bytes of one row.
 *
 * The micro kernels qt_qkern__<isa> compute a tile of up to QT_QG_MR rows x
 * QT_QG_NR columns into an int32 array; the epilogue qt_qepi__<isa>
 * (zero-point corrections, bias, scale, rounding, clamp, store) is the same
 * C (EPILOGUE_BODY) for every ISA, compiled for each. The AVX-512 kernel
 * requantizes uint8/int8 tiles straight from its registers with the same
 * operations (vcvtps2dq rounds half to even).
 *
 * Files: isa.c (ISA choice), qpack.c (packing), qgemm.c (reference kernel,
 * dispatch), qgemm_avx2.c, qgemm_avx512.c, qdw.c (depthwise). */
#ifndef QT_INT8_QKERN_H
#define QT_INT8_QKERN_H
#include "int8/int8.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define QT_X86 1
#else
#define QT_X86 0
#endif

#define NR QT_QG_NR
#define MR QT_QG_MR
#define QT_QEPI_MAX 256 /* columns per epilogue call */
#define T512 __attribute__((target("avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma")))

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

void qt_qepi__ref(EPILOGUE_ARGS);
void qt_qkern__ref(const int8_t *w, int64_t kp, const uint8_t *bp, int mr, int nc, int32_t *acc);
#if QT_X86
void qt_qepi__avx2(EPILOGUE_ARGS);
void qt_qkern__avx2(const int8_t *w, int64_t kp, const uint8_t *bp, int mr, int nc, int32_t *acc);
void qt_qepi__avx512(EPILOGUE_ARGS);
/* q: uint8/int8 output straight from the registers (NULL: int32 into acc) */
void qt_qkern__avx512(const int8_t *w, int64_t kp, const uint8_t *bp, int mr, int nc, int32_t *acc,
                      const struct q8out *q);
#endif
#endif
