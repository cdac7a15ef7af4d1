/* int8.h: integer kernels of the quantized operators (QLinearConv,
 * QLinearMatMul, QGemm, ConvInteger, MatMulInteger) and of the QDQ patterns
 * lowered to them (lib/int8/lower.c).
 *
 * Everything is one matrix product C[m][n] = sum_k W[m][k] * X[k][n] with
 * W signed 8-bit (the weights, packed once) and X unsigned 8-bit (the
 * activations, packed per call; int8 activations are shifted by +128 and
 * their zero point with them, uint8 weights by -128: exact). The int32
 * accumulator is corrected for the zero points,
 *
 *   acc = sum x w - xzp sum_k w[m] - wzp[m] sum_k x[n] + K xzp wzp[m] + bias[m]
 *
 * and then, as ONNX Runtime's MLAS does (MlasRequantizeOutput):
 *
 *   y = clamp(round_half_even(float(acc) * scale[m]), lo - zp, hi - zp) + zp
 *
 * with scale = x_scale * w_scale[m] / y_scale in float32; lo/hi = the output
 * type's range narrowed by a fused Relu/Clip. Or a float output
 * float(acc) * scale[m] (QGemm without y_scale), or the int32 acc itself.
 *
 * Kernels: a portable C reference, AVX2 (exact: u8 split into 7 + 1 bits so
 * vpmaddubsw never saturates) and AVX-512 VNNI (vpdpbusd), chosen at run
 * time from the CPU; QT_INT8_ISA=ref|avx2|avx512 or qt_int8_set_isa() forces
 * one (never above what the CPU has). All give bit-identical results.
 * Files: isa.c (the choice), qpack.c (packing), qgemm.c (reference kernel,
 * dispatch), qgemm_avx2.c, qgemm_avx512.c, qdw.c (depthwise); qkern.h is
 * what they share. */
#ifndef QT_INT8_H
#define QT_INT8_H

#include "engine.h"

enum qt_isa { QT_ISA_REF = 0, QT_ISA_AVX2 = 1, QT_ISA_AVX512 = 2 };

/* The ISA the kernels use now. */
int qt_int8_isa(void);
/* The best ISA of this CPU. */
int qt_int8_isa_max(void);
/* Forces an ISA (clamped to qt_int8_isa_max()); returns the one set. */
int qt_int8_set_isa(int isa);
const char *qt_int8_isa_name(int isa);

#define QT_QG_NR 48 /* columns per packed panel */
#define QT_QG_MR 8  /* rows per micro tile */

enum qt_qout { QT_QOUT_U8, QT_QOUT_S8, QT_QOUT_F32, QT_QOUT_I32 };

/* Packed weights: m rows of kp = roundup(k, 4) signed bytes (zero padded),
 * row sums, per-row zero points (already shifted to the signed domain). */
struct qt_qweights {
    int64_t m, k, kp;
    int8_t *w;
    int32_t *wsum;
    int32_t *wzp;  /* per row */
    int wzp_any;   /* some wzp != 0: column sums of x needed */
};

/* The output side: per-row bias (zero points folded in) and scale. */
struct qt_qrequant {
    int out;           /* enum qt_qout */
    const int32_t *bias; /* per row: bias + K xzp wzp - xzp wsum */
    const float *scale;  /* per row */
    int32_t zp, lo, hi;  /* u8/s8 outputs: zero point, clamp (quantized) */
};

/* Packs rows of w (m x k; element (r, c) at w[r*rs + c*cs]) into qw (whose
 * buffers the caller allocates with qt_qweights_size). u8 = 1: w is uint8
 * (shifted to int8); wzp: per-row zero points of w in its own type (NULL = 0);
 * wzp_n 1 = per tensor. */
size_t qt_qweights_size(int64_t m, int64_t k);
void qt_qweights_pack(struct qt_qweights *qw, void *mem, const void *w, int u8, int64_t m, int64_t k, int64_t rs,
                      int64_t cs, const void *wzp, int64_t wzp_n);

/* Bytes of a packed X block of n columns (panels of QT_QG_NR). */
size_t qt_qpack_size(int64_t kp, int64_t n);
/* Packs X (k x n, element (r, c) at x[r*rs + c*cs]) into panels; s8 = 1:
 * x is int8 (shifted by +128). colsum (n entries, may be NULL) gets sum_k x
 * of the shifted values. */
void qt_qpack_x(uint8_t *dst, const void *x, int s8, int64_t k, int64_t kp, int64_t n, int64_t rs, int64_t cs,
                int32_t *colsum);
/* n contiguous columns (rows rs apart) packed into panel columns
 * [d0, d0 + n) of dst (partial panels zeroed by the caller); and the column
 * sums of a packed block. For blocks whose columns span several images. */
void qt_qpack_seg(uint8_t *dst, const void *x, int s8, int64_t k, int64_t kp, int64_t d0, int64_t n, int64_t rs);
void qt_qpack_colsum(const uint8_t *dst, int64_t kp, int64_t n, int32_t *colsum);
/* im2col of one image's group into panels: columns [c0, c1) of the
 * output, the padding holds the zero point xzp (already shifted); rows:
 * k x (c1 - c0) bytes of scratch. */
struct qt_conv_shape;
void qt_qpack_im2col(uint8_t *dst, const void *x, int s8, uint8_t xzp, const struct qt_conv_shape *s, int64_t cg,
                     int64_t kp, int64_t c0, int64_t c1, int32_t *colsum, uint8_t *rows);

/* C = W[m0, m1) x X (n columns of the packed block), requantized into out:
 * element (row r, col c) at out + (r*ldr + c*ldc) elements of its type. */
void qt_qgemm(const struct qt_qweights *qw, int64_t m0, int64_t m1, const uint8_t *xp, int64_t n,
              const int32_t *colsum, const struct qt_qrequant *rq, void *out, int64_t ldr, int64_t ldc);

/* qt_qgemm over packed columns g0 .. g0 + n of several images of hw
 * columns each: column g goes to image g / hw (istride elements apart),
 * position g % hw; rows ldr apart. */
void qt_qgemm_seg(const struct qt_qweights *qw, int64_t m0, int64_t m1, const uint8_t *xp, int64_t n,
                  const int32_t *colsum, const struct qt_qrequant *rq, void *out, int64_t ldr, int64_t g0, int64_t hw,
                  int64_t istride);

/* Depthwise convolution of one channel (at most QT_QDW_MAXTAPS = kh x kw;
 * larger kernels go through the matrix product): x (ih x iw, uint8 or int8 by s8)
 * with the kh x kw int8 kernel w, zero points xzp (of x's type) and wzp;
 * row r of the output requantized with bias/scale of entry 0 of rq. tmp:
 * qt_qdw_scratch(s) bytes. */
#define QT_QDW_MAXTAPS 64
size_t qt_qdw_scratch(const struct qt_conv_shape *s);
void qt_qdwconv(const void *x, int s8, int32_t xzp, const int8_t *w, int32_t wzp, const struct qt_conv_shape *s,
                const struct qt_qrequant *rq, int64_t ch, void *out, void *tmp);

/* Float32 -> requant helpers shared by the ops. */
static inline int32_t qt_qclamp_round(float v, int32_t zp, int32_t lo, int32_t hi) {
    float flo = (float)(lo - zp), fhi = (float)(hi - zp);
    v = v < flo ? flo : v; /* NaN stays NaN: MLAS max/min give the bound */
    v = v > fhi ? fhi : v;
    if (v != v)
        v = fhi;
    return (int32_t)__builtin_nearbyintf(v) + zp;
}

/* ---- lowering (lower.c) --------------------------------------------------- */

/* Rewrites g in place: DequantizeLinear -> Conv / Gemm / MatMul -> [Relu |
 * Clip] -> QuantizeLinear (u8/s8 activations, constant int8/uint8 weights
 * per tensor or per output channel, int32 bias of scale x_scale*w_scale)
 * becomes QLinearConv / QGemm / QLinearMatMul (a Gemm or MatMul without Q
 * becomes a float-output QGemm). *nfused counts the rewritten nodes. */
int qt_int8_lower(struct qt_graph *g, int *nfused, struct qt_err *err);
/* The same for a model to save (qtool export --format qoperator):
 * QT_LOWER_NO_ACT leaves Conv/MatMul -> Relu/Clip -> Q in QDQ form (the
 * fused bounds are qtool attributes), QT_LOWER_NO_CONTRIB leaves what only
 * com.microsoft operators express (QGemm, QLinearAdd,
 * QLinearGlobalAveragePool) in QDQ form. */
#define QT_LOWER_NO_ACT 1u
#define QT_LOWER_NO_CONTRIB 2u
int qt_int8_lower_flags(struct qt_graph *g, unsigned flags, int *nfused, struct qt_err *err);

#endif
