/* qparams.c: checks and per-call arrays shared by the quantized operators:
 * quantization parameters read from constant inputs, and the per-row bias
 * (zero points folded in) and scale of the requantization (int8.h). */
#include "int8/qparams.h"

#include <string.h>

int qt_qtype_ok(int dt) {
    return dt == QT_UINT8 || dt == QT_INT8;
}

int qt_qp_read(struct qt_exec *x, const struct qt_node *n, int si, int zi, int64_t want, const char *what,
               struct qt_qp *q, struct qt_err *err) {
    const struct qt_tensor *s = si >= 0 ? qt_in(x, n, si) : NULL, *z = qt_in(x, n, zi);
    memset(q, 0, sizeof *q);
    q->n = 1;
    if (si >= 0 && !s)
        return qt_node_err(n, QT_EMODEL, err, "%s scale is missing", what);
    if ((s && !qt_in_const(x, n, si)) || (z && !qt_in_const(x, n, zi)))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "%s scale and zero point must be constant", what);
    if (s && s->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EMODEL, err, "%s scale must be float32", what);
    if (z && !qt_qtype_ok(z->dtype))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "%s zero point type %s is not supported", what,
                           qt_dtype_name(z->dtype));
    int64_t ns = s ? qt_tensor_numel(s) : 1, nz = z ? qt_tensor_numel(z) : 1;
    if ((ns != 1 && ns != want) || (nz != 1 && nz != want) || (s && z && ns != nz && nz != 1))
        return qt_node_err(n, QT_EMODEL, err, "%s scale/zero point have %lld/%lld values, expected 1 or %lld", what,
                           (long long)ns, (long long)nz, (long long)want);
    q->n = ns > nz ? ns : nz;
    q->s = s ? s->data : NULL;
    q->ns = ns;
    q->z = z;
    q->nz = nz;
    return 0;
}

float qt_qp_scale(const struct qt_qp *q, int64_t i) {
    return q->s ? q->s[q->ns == 1 ? 0 : i] : 1.0f;
}

int32_t qt_qp_zp(const struct qt_qp *q, int64_t i) {
    return q->z ? (int32_t)qt_tensor_geti(q->z, q->nz == 1 ? 0 : i) : 0;
}

int qt_qrows_new(struct qt_qrows *r, int64_t m, struct qt_err *err) {
    r->bias = qt_malloc(sizeof(int32_t) * (size_t)(m + 1), err);
    r->scale = qt_malloc(sizeof(float) * (size_t)(m + 1), err);
    if (!r->bias || !r->scale) {
        qt_qrows_free(r);
        return err->code;
    }
    return 0;
}

void qt_qrows_free(struct qt_qrows *r) {
    free(r->bias);
    free(r->scale);
    r->bias = NULL;
    r->scale = NULL;
}

void qt_qrows_fill(struct qt_qrows *r, const struct qt_qweights *qw, int32_t xzp_u8, const int32_t *bias,
                   int centered, const struct qt_qp *xq, const struct qt_qp *wq, const struct qt_qp *yq,
                   float alpha) {
    for (int64_t m = 0; m < qw->m; m++) {
        /* int32 with wrap-around, as ONNX Runtime adds the bias (a saturated
         * bias such as INT32_MIN must give the same result) */
        uint32_t b = bias ? (uint32_t)bias[m] : 0;
        if (!centered)
            b += (uint32_t)((int32_t)qw->k * xzp_u8 * qw->wzp[m] - xzp_u8 * qw->wsum[m]);
        r->bias[m] = (int32_t)b;
        float s = alpha * qt_qp_scale(xq, 0) * qt_qp_scale(wq, m);
        r->scale[m] = yq ? s / qt_qp_scale(yq, 0) : s;
    }
}


void qt_qout_init(struct qt_qrequant *rq, int out_dtype, int32_t zp, int32_t act_lo, int32_t act_hi) {
    memset(rq, 0, sizeof *rq);
    if (out_dtype == QT_UINT8) {
        rq->out = QT_QOUT_U8;
        rq->lo = 0, rq->hi = 255;
    } else if (out_dtype == QT_INT8) {
        rq->out = QT_QOUT_S8;
        rq->lo = -128, rq->hi = 127;
    } else if (out_dtype == QT_FLOAT) {
        rq->out = QT_QOUT_F32;
    } else {
        rq->out = QT_QOUT_I32;
    }
    rq->zp = zp;
    if (act_lo > rq->lo)
        rq->lo = act_lo;
    if (act_hi < rq->hi)
        rq->hi = act_hi;
}
