/* qdq.c: weight and bias quantization, and the QDQ model.
 *
 * Weights: symmetric, signed, per output channel (axis 0 for Conv and for
 * Gemm with transB = 1, 1 for Gemm with transB = 0, the last axis for
 * MatMul) or per tensor; scale = max|w| / ((qmax - qmin) / 2).
 * Biases: int32, scale = input scale x weight scale (per channel), zero
 * point 0: ONNX Runtime fuses Conv only when the bias scale is exactly that.
 * A channel whose bias would not fit in int32 at that scale (a dead channel:
 * weights near zero, a bias that is not) gets a larger weight scale, as
 * ONNX Runtime's quantizer does, instead of a clamped bias.
 * Activations: QuantizeLinear -> DequantizeLinear after the producer, every
 * reader rewired to the DequantizeLinear output. A fused Relu/Clip is
 * dropped when the quantized range already clips like it (uint8 with zero
 * point 0, and for Clip a range inside the clip bounds), so ONNX Runtime sees
 * DQ -> Conv -> Q and fuses QLinearConv. Sub-8-bit activations get a Clip to
 * their representable range before QuantizeLinear, since the 8-bit
 * container would otherwise hold 256 levels. */
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int qt_qplan_weights(struct qt_qplan *p, struct qt_err *err) {
    struct qt_graph *g = p->g;
    for (int t = 0; t < p->nt; t++) {
        struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role != QT_ROLE_WEIGHT)
            continue;
        const struct qt_node *n = &g->n[qt->node];
        const struct qt_tensor *w = g->v[qt->v].init;
        const float *W = w->data;
        int per_ch = p->qn[qt->node].per_channel;
        int axis = qt_qf_weight_axis(n, w->ndim);
        int64_t nch = per_ch ? w->dims[axis] : 1, total = qt_tensor_numel(w);
        int64_t inner = 1;
        for (int d = axis + 1; d < w->ndim; d++)
            inner *= w->dims[d];
        struct qt_qparam *q = &qt->q;
        qt_qparam_release(q);
        q->role = QT_ROLE_WEIGHT;
        q->bits = p->qn[qt->node].wbits;
        if (qt_qparam_alloc(q, (int)nch, err))
            return err->code;
        q->dtype = QT_INT8;
        q->symmetric = 1;
        q->axis = per_ch ? axis : -1;
        q->method = "minmax";
        qt_qrange(QT_INT8, q->bits - (p->o.reduce_range ? 1 : 0), p->o.narrow, &q->qmin, &q->qmax);
        const unsigned char *cb = p->qn[qt->node].cbits;
        if (cb && per_ch && p->qn[qt->node].ncbits == nch) { /* per-channel widths: int8 container */
            if (!(q->cbits = malloc((size_t)nch)))
                return qt_errf(err, QT_ENOMEM, "out of memory");
            memcpy(q->cbits, cb, (size_t)nch);
        }
        for (int64_t c = 0; c < nch; c++) {
            q->obs_min[c] = INFINITY;
            q->obs_max[c] = -INFINITY;
        }
        for (int64_t i = 0; i < total; i++) {
            float x = W[i];
            if (!isfinite(x))
                return qt_node_err(n, QT_EMODEL, err, "weight '%s' has NaN or infinite values", g->v[qt->v].name);
            int64_t c = per_ch ? (i / inner) % nch : 0;
            if (x < q->obs_min[c])
                q->obs_min[c] = x;
            if (x > q->obs_max[c])
                q->obs_max[c] = x;
        }
        int64_t outer = total / (nch * inner > 0 ? nch * inner : 1);
        for (int64_t c = 0; c < nch; c++) {
            if (total == 0)
                q->obs_min[c] = q->obs_max[c] = 0;
            int cmin = q->qmin, cmax = q->qmax;
            if (q->cbits)
                qt_qrange(QT_INT8, q->cbits[c] - (p->o.reduce_range ? 1 : 0), p->o.narrow, &cmin, &cmax);
            float t;
            q->scale[c] = qt_weight_step(W, outer, nch, inner, c, cmin, cmax, p->o.weight_mse, &t);
            q->zp[c] = 0;
            q->rng_min[c] = -t;
            q->rng_max[c] = t;
            if (t < fmaxf(fabsf(q->obs_min[c]), fabsf(q->obs_max[c])))
                q->method = "mse";
        }
    }
    return 0;
}

int qt_qplan_biases(struct qt_qplan *p, struct qt_err *err) {
    struct qt_graph *g = p->g;
    for (int t = 0; t < p->nt; t++) {
        struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role != QT_ROLE_BIAS)
            continue;
        const struct qt_node *n = &g->n[qt->node];
        int ti = p->tensor_of[n->in[0]], tw = p->tensor_of[n->in[1]];
        if (ti < 0 || tw < 0)
            return qt_node_err(n, QT_EFAIL, err, "internal error: bias without quantized input or weight");
        const struct qt_qparam *qi = &p->t[ti].q;
        struct qt_qparam *qw = &p->t[tw].q;
        const struct qt_tensor *b = g->v[qt->v].init;
        int64_t m = qt_tensor_numel(b);
        for (int64_t c = 0; c < m; c++) {
            /* smallest bias scale that keeps |b| inside int32, with a margin */
            double need = fabs(((const float *)b->data)[c]) * 1.0001 / 2147483647.0;
            float *sw = &qw->scale[qw->n == 1 ? 0 : c];
            if (!((double)qi->scale[0] * *sw < need) || !(qi->scale[0] > 0))
                continue;
            *sw = (float)(need / qi->scale[0]);
            while ((double)(qi->scale[0] * *sw) < need)
                *sw = nextafterf(*sw, INFINITY);
            double t = (double)*sw * (qw->qmax - qw->qmin) / 2;
            qw->rng_min[qw->n == 1 ? 0 : c] = (float)-t;
            qw->rng_max[qw->n == 1 ? 0 : c] = (float)t;
            qw->method = "minmax+bias";
        }
        struct qt_qparam *q = &qt->q;
        qt_qparam_release(q);
        q->role = QT_ROLE_BIAS;
        if (qt_qparam_alloc(q, (int)m, err))
            return err->code;
        q->dtype = QT_INT32;
        q->bits = 32;
        q->symmetric = 1;
        q->axis = 0;
        q->method = "derived";
        qt_qrange(QT_INT32, 32, 0, &q->qmin, &q->qmax);
        for (int64_t c = 0; c < m; c++) {
            float v = ((const float *)b->data)[c];
            if (!isfinite(v))
                return qt_node_err(n, QT_EMODEL, err, "bias '%s' has NaN or infinite values", g->v[qt->v].name);
            q->scale[c] = qi->scale[0] * qw->scale[qw->n == 1 ? 0 : c];
            q->obs_min[c] = q->obs_max[c] = q->rng_min[c] = q->rng_max[c] = v;
        }
    }
    return 0;
}

/* ---- export --------------------------------------------------------------- */

/* ONNX INT4 (opset 21): two values a byte, the first in the low nibble. The
 * int8 initializer t (values in [-8, 7]) is rewritten in place. */
static void to_int4(struct qt_tensor *t) {
    int64_t n = qt_tensor_numel(t);
    const int8_t *s = t->data;
    unsigned char *d = t->data;
    for (int64_t i = 0; i < n; i += 2) {
        unsigned lo = (unsigned)s[i] & 15u, hi = i + 1 < n ? (unsigned)s[i + 1] & 15u : 0u;
        d[i / 2] = (unsigned char)(lo | hi << 4);
    }
    t->dtype = QT_INT4;
    t->nbytes = (size_t)(n + 1) / 2;
}

/* --pack: weights of 4 bits or fewer (every channel) go to INT4, their zero
 * points with them; the model becomes opset 21. Done last: qtool's engine
 * does not compute with INT4, the file is for other runtimes. */
void qt_qdq_pack_int4(const struct qt_qplan *p, struct qt_graph *g) {
    int packed = 0;
    for (int t = 0; t < p->nt; t++) {
        const struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role != QT_ROLE_WEIGHT || qt->q.dtype != QT_INT8 || qt->q.qmin < -8 || qt->q.qmax > 7)
            continue;
        /* the DequantizeLinear that reads this weight's integers */
        char nm[600];
        snprintf(nm, sizeof nm, "%s_DequantizeLinear", p->g->v[qt->v].name);
        int k = qt_graph_find_node(g, nm);
        if (k < 0 || g->n[k].nin < 3)
            continue;
        int vq = g->n[k].in[0], vz = g->n[k].in[2];
        if (!g->v[vq].init || !g->v[vz].init || g->v[vq].init->dtype != QT_INT8 || g->v[vz].init->dtype != QT_INT8)
            continue;
        to_int4(g->v[vq].init);
        to_int4(g->v[vz].init);
        g->v[vq].dtype = g->v[vz].dtype = QT_INT4;
        g->v[vq].orig = g->v[vz].orig = NULL;
        packed++;
    }
    if (packed && g->opset < 21)
        g->opset = 21;
}

static int add_scalar_init(struct qt_graph *g, const char *name, int dtype, double v, int n, const float *fv,
                           const int32_t *iv, struct qt_err *err) {
    int64_t d[1] = {n};
    struct qt_tensor *t = qt_tensor_new(dtype, n > 1 ? 1 : 0, d);
    if (!t) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        double x = fv ? fv[i] : iv ? iv[i] : v;
        switch (dtype) {
        case QT_FLOAT: ((float *)t->data)[i] = (float)x; break;
        case QT_UINT8: ((uint8_t *)t->data)[i] = (uint8_t)x; break;
        case QT_INT8: ((int8_t *)t->data)[i] = (int8_t)x; break;
        case QT_INT32: ((int32_t *)t->data)[i] = (int32_t)x; break;
        }
    }
    return qt_graph_add_init(g, name, t, err);
}

/* scale and zero-point initializers for q, named after base */
static int qparam_inits(struct qt_graph *g, const char *base, const struct qt_qparam *q, int *vs, int *vz,
                        struct qt_err *err) {
    char nm[600];
    int zdt = q->dtype == QT_INT32 ? QT_INT32 : q->dtype;
    snprintf(nm, sizeof nm, "%s", qt_graph_unique_name(g, base, "_scale"));
    *vs = add_scalar_init(g, nm, QT_FLOAT, 0, q->n, q->scale, NULL, err);
    snprintf(nm, sizeof nm, "%s", qt_graph_unique_name(g, base, "_zero_point"));
    *vz = *vs < 0 ? -1 : add_scalar_init(g, nm, zdt, 0, q->n, NULL, q->zp, err);
    return *vz < 0 ? err->code : 0;
}

static int add_node(struct qt_graph *g, const char *base, const char *suffix, const char *op, const int *in,
                    int nin, int out, struct qt_err *err) {
    char nm[600];
    snprintf(nm, sizeof nm, "%s%s", base, suffix);
    int k = qt_graph_add_node(g, nm, op, in, nin, &out, 1, err);
    return k;
}

static int new_act(struct qt_graph *g, const char *base, const char *suffix, struct qt_err *err) {
    char nm[600];
    snprintf(nm, sizeof nm, "%s", qt_graph_unique_name(g, base, suffix));
    return qt_graph_add_value(g, nm, QT_V_ACT, err);
}

static int quantize_const(struct qt_graph *g, int v, const struct qt_qparam *q, int consumer, int slot,
                          struct qt_err *err) {
    const struct qt_tensor *w = g->v[v].init;
    char base[512];
    snprintf(base, sizeof base, "%s", g->v[v].name);
    struct qt_tensor *qw = qt_tensor_new(q->dtype, w->ndim, w->dims);
    if (!qw)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    int64_t total = qt_tensor_numel(w), inner = 1, nch = q->n;
    for (int d = q->axis + 1; q->axis >= 0 && d < w->ndim; d++)
        inner *= w->dims[d];
    for (int64_t i = 0; i < total; i++) {
        int64_t c = q->axis >= 0 && nch > 1 ? (i / inner) % nch : 0;
        float x = ((const float *)w->data)[i];
        if (q->dtype == QT_INT32) {
            double r = nearbyint((double)x / q->scale[c]);
            if (r > INT32_MAX)
                r = INT32_MAX;
            if (r < INT32_MIN)
                r = INT32_MIN;
            ((int32_t *)qw->data)[i] = (int32_t)r;
        } else {
            int lo = q->qmin, hi = q->qmax;
            if (q->cbits) /* this channel's own width within the int8 container (reduced, narrow as the tensor) */
                qt_qrange(QT_INT8, q->cbits[c] - (q->qmax + 1 < (1 << (q->bits - 1))), q->qmin == -q->qmax, &lo, &hi);
            ((int8_t *)qw->data)[i] = (int8_t)qt_quantize(x, q->scale[c], q->zp[c], lo, hi);
        }
    }
    char nm[600];
    snprintf(nm, sizeof nm, "%s", qt_graph_unique_name(g, base, "_quantized"));
    int vq = qt_graph_add_init(g, nm, qw, err), vs, vz;
    if (vq < 0 || qparam_inits(g, base, q, &vs, &vz, err))
        return err->code;
    int vo = new_act(g, base, "_DequantizeLinear_Output", err);
    if (vo < 0)
        return err->code;
    int in[3] = {vq, vs, vz};
    int k = add_node(g, base, "_DequantizeLinear", "DequantizeLinear", in, 3, vo, err);
    if (k < 0)
        return err->code;
    if (q->axis >= 0 && q->n > 1 && qt_node_set_int(&g->n[k], "axis", q->axis))
        return qt_errf(err, QT_ENOMEM, "out of memory");
    g->n[consumer].in[slot] = vo;
    g->n[consumer].orig = NULL;
    return qt_node_changed(g, k, err);
}

static int clip_drops(const struct qt_graph *g, const struct qt_node *act, const struct qt_qparam *q) {
    if (q->symmetric || q->zp[0] != q->qmin)
        return 0; /* the quantizer does not clip at 0 */
    /* the quantized range must lie within [0, max] */
    float lo, mx;
    if (!qt_act_bounds(g, act, &lo, &mx) || isnan(mx))
        return 0;
    double top = (double)q->scale[0] * (q->qmax - q->zp[0]);
    return top <= (double)mx * (1 + 1e-6);
}

int qt_qplan_export_qdq(const struct qt_qplan *p, struct qt_graph **out, struct qt_err *err) {
    struct qt_graph *g = NULL;
    unsigned char *dead = NULL;
    *out = NULL;
    if (qt_graph_clone(&g, p->g, err))
        return err->code;
    int nn0 = g->nn, nv0 = g->nv;
    dead = calloc((size_t)nn0 + 1, 1);
    if (!dead) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto fail;
    }
    if (g->opset < 13)
        g->opset = 13; /* per-channel DequantizeLinear (axis) */
    /* weights and biases */
    for (int t = 0; t < p->nt; t++) {
        const struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role == QT_ROLE_ACT)
            continue;
        const struct qt_node *n = &g->n[qt->node];
        int slot = -1;
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] == qt->v)
                slot = j;
        if (slot < 0 || quantize_const(g, qt->v, &qt->q, qt->node, slot, err))
            goto fail;
    }
    /* fused activations that the quantizer makes redundant */
    for (int i = 0; i < nn0; i++) {
        int a = p->qn[i].fused;
        if (a < 0 || p->qn[i].excluded)
            continue;
        int y = g->n[a].out[0], ti = p->tensor_of[y];
        if (ti < 0 || !clip_drops(g, &g->n[a], &p->t[ti].q))
            continue;
        /* the compute node writes the activation's output directly */
        g->n[i].out[0] = y;
        g->n[i].orig = NULL;
        dead[a] = 1;
    }
    /* activations */
    for (int t = 0; t < p->nt; t++) {
        const struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role != QT_ROLE_ACT)
            continue;
        int v = qt->v;
        char base[512];
        snprintf(base, sizeof base, "%s", g->v[v].name);
        int vs, vz, src = v;
        if (qparam_inits(g, base, &qt->q, &vs, &vz, err))
            goto fail;
        int readers[4096], nr = 0;
        for (int i = 0; i < g->nn && nr < 4096; i++) {
            if (i < nn0 && dead[i])
                continue;
            for (int j = 0; j < g->n[i].nin; j++)
                if (g->n[i].in[j] == v) {
                    readers[nr++] = i;
                    break;
                }
        }
        if (qt->q.bits < 8) { /* restrict the container to 2^bits levels */
            double lo = (double)qt->q.scale[0] * (qt->q.qmin - qt->q.zp[0]);
            double hi = (double)qt->q.scale[0] * (qt->q.qmax - qt->q.zp[0]);
            char nm[600];
            snprintf(nm, sizeof nm, "%s", qt_graph_unique_name(g, base, "_clip_min"));
            int vmin = add_scalar_init(g, nm, QT_FLOAT, lo, 1, NULL, NULL, err);
            snprintf(nm, sizeof nm, "%s", qt_graph_unique_name(g, base, "_clip_max"));
            int vmax = vmin < 0 ? -1 : add_scalar_init(g, nm, QT_FLOAT, hi, 1, NULL, NULL, err);
            int vc = vmax < 0 ? -1 : new_act(g, base, "_Clip_Output", err);
            int in[3] = {v, vmin, vmax};
            if (vc < 0 || add_node(g, base, "_Clip", "Clip", in, 3, vc, err) < 0)
                goto fail;
            src = vc;
        }
        int vq = new_act(g, base, "_QuantizeLinear_Output", err);
        if (vq < 0)
            goto fail;
        int inq[3] = {src, vs, vz};
        int kq = add_node(g, base, "_QuantizeLinear", "QuantizeLinear", inq, 3, vq, err);
        int vd = kq < 0 ? -1 : new_act(g, base, "_DequantizeLinear_Output", err);
        int ind[3] = {vq, vs, vz};
        if (vd < 0 || add_node(g, base, "_DequantizeLinear", "DequantizeLinear", ind, 3, vd, err) < 0)
            goto fail;
        for (int r = 0; r < nr; r++) {
            struct qt_node *n = &g->n[readers[r]];
            for (int j = 0; j < n->nin; j++)
                if (n->in[j] == v)
                    n->in[j] = vd;
            n->orig = NULL;
        }
    }
    for (int i = 0; i < g->nn; i++)
        if (!g->n[i].orig && qt_node_changed(g, i, err))
            goto fail;
    {
        unsigned char *d2 = calloc((size_t)g->nn + 1, 1);
        if (!d2) {
            qt_errf(err, QT_ENOMEM, "out of memory");
            goto fail;
        }
        memcpy(d2, dead, (size_t)nn0);
        int rc = qt_graph_compact(g, d2, err);
        free(d2);
        if (rc)
            goto fail;
    }
    (void)nv0;
    free(dead);
    *out = g;
    return 0;
fail:
    free(dead);
    qt_graph_free(g);
    return err->code;
}
