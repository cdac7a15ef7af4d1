/* qparams.h: quantization parameters of the quantized operators' inputs and
 * the per-call requantization arrays (see qparams.c). */
#ifndef QT_INT8_QPARAMS_H
#define QT_INT8_QPARAMS_H

#include "int8/int8.h"

struct qt_qp { /* a scale / zero point pair: 1 value (per tensor) or n */
    const float *s;
    const struct qt_tensor *z;
    int64_t n, ns, nz;
};

int qt_qtype_ok(int dtype);
/* Reads scale input si (-1: none, scale 1) and zero point input zi (may be
 * omitted: 0), constant, with 1 or want values; what names them in errors. */
int qt_qp_read(struct qt_exec *x, const struct qt_node *n, int si, int zi, int64_t want, const char *what,
               struct qt_qp *q, struct qt_err *err);
float qt_qp_scale(const struct qt_qp *q, int64_t i);
int32_t qt_qp_zp(const struct qt_qp *q, int64_t i);

struct qt_qrows {
    int32_t *bias;
    float *scale;
};
int qt_qrows_new(struct qt_qrows *r, int64_t m, struct qt_err *err);
void qt_qrows_free(struct qt_qrows *r);
/* bias[m] = bias_in[m] (+ K xzp wzp[m] - xzp wsum[m] unless centered);
 * scale[m] = alpha x_scale w_scale[m] (/ y_scale when yq). */
void qt_qrows_fill(struct qt_qrows *r, const struct qt_qweights *qw, int32_t xzp_u8, const int32_t *bias,
                   int centered, const struct qt_qp *xq, const struct qt_qp *wq, const struct qt_qp *yq,
                   float alpha);
/* Output kind and range (uint8/int8 narrowed to [act_lo, act_hi]; float;
 * int32). */
void qt_qout_init(struct qt_qrequant *rq, int out_dtype, int32_t zp, int32_t act_lo, int32_t act_hi);

/* Optional fused activation of a lowered node: attributes qtool_act_lo /
 * qtool_act_hi (quantized output units), set only by qt_int8_lower. */
#define QT_ACT_LO_ATTR "qtool_act_lo"
#define QT_ACT_HI_ATTR "qtool_act_hi"

#endif
