/* lower.c: QDQ patterns -> quantized operators, so that qtool eval runs a
 * QDQ model on integer kernels, as ONNX Runtime does:
 *
 *   DQ(x u8/s8) ┐
 *   DQ(w const) ┼─ Conv ─ [Relu | Clip] ─ Q   =>  QLinearConv
 *   DQ(b int32) ┘
 *   ... Gemm ... ─ [Relu | Clip] ─ Q            =>  com.microsoft QGemm
 *   ... Gemm (no Q: float output)               =>  QGemm without y_scale
 *   ... MatMul ─ [Relu | Clip] ─ Q              =>  QLinearMatMul
 *   DQ(a), DQ(b) both activations ─ MatMul ─ Q  =>  QLinearMatMul (batched, per tensor)
 *   DQ, DQ ─ Add ─ Q                            =>  com.microsoft QLinearAdd
 *   DQ ─ GlobalAveragePool ─ Q                  =>  com.microsoft QLinearGlobalAveragePool
 *
 * Conditions: scales and zero points are initializers, x per tensor, w per
 * tensor or per output channel (axis 0 for Conv, the output axis for Gemm,
 * 1 for a 2-D MatMul weight), the bias int32 with zero point 0 and scale
 * x_scale * w_scale (what ONNX Runtime requires to fuse), the intermediate
 * tensors read by nothing else. A Relu/Clip between the op and Q is kept as
 * bounds in output units (Q is monotone, so clamping the quantized value to
 * [Q(lo), Q(hi)] equals quantizing the clipped float). Everything else stays
 * DQ -> float op -> Q. */
#include "int8/qparams.h"

#include <math.h>
#include <string.h>

#define const_of qt_graph_const

static int is_op(const struct qt_graph *g, int node, const struct qt_op *op) {
    return node >= 0 && g->n[node].op == op;
}

static int is_graph_output(const struct qt_graph *g, int v) {
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] == v)
            return 1;
    return 0;
}

/* The single reader of v (not a graph output), or -1. */
static int only_reader(const struct qt_graph *g, int v) {
    int c;
    if (is_graph_output(g, v) || qt_graph_consumers(g, v, &c, 1) != 1)
        return -1;
    return c;
}

struct dq { /* a DequantizeLinear feeding the op */
    int node, q, s, z; /* node, its quantized input, scale, zero point values */
    const struct qt_tensor *qt, *st, *zt; /* constants (qt only for weights) */
    int axis;
};

static int dq_of(const struct qt_graph *g, int v, struct dq *d) {
    memset(d, 0, sizeof *d);
    d->node = v >= 0 ? g->v[v].producer : -1;
    if (!is_op(g, d->node, &qt_op_dequantizelinear))
        return 0;
    const struct qt_node *n = &g->n[d->node];
    struct qt_err e = {0};
    d->q = n->in[0];
    d->s = n->nin > 1 ? n->in[1] : -1;
    d->z = n->nin > 2 ? n->in[2] : -1;
    d->qt = const_of(g, d->q);
    d->st = const_of(g, d->s);
    d->zt = const_of(g, d->z);
    d->axis = (int)qt_attr_int(n, "axis", 1, &e);
    if (!d->st || d->st->dtype != QT_FLOAT || (d->z >= 0 && !d->zt) || e.code)
        return 0;
    return 1;
}

static int per_tensor(const struct qt_tensor *t) {
    return qt_tensor_numel(t) == 1;
}

/* x's DQ: per tensor, u8/s8 (from the zero point; uint8 when absent). */
static int act_ok(const struct dq *d) {
    if (!per_tensor(d->st) || (d->zt && (!per_tensor(d->zt) || !qt_qtype_ok(d->zt->dtype))))
        return 0;
    return !d->qt; /* an activation, not a constant */
}

/* w's DQ: constant u8/s8, per tensor or per channel on axis `axis`. */
static int weight_ok(const struct dq *d, int axis) {
    if (!d->qt || !qt_qtype_ok(d->qt->dtype) || (d->zt && d->zt->dtype != d->qt->dtype))
        return 0;
    if (per_tensor(d->st))
        return !d->zt || per_tensor(d->zt);
    int ax = d->axis < 0 ? d->axis + d->qt->ndim : d->axis;
    return ax == axis && d->st->ndim == 1 && d->st->dims[0] == d->qt->dims[axis] &&
           (!d->zt || qt_tensor_numel(d->zt) == d->st->dims[0]);
}

/* bias: int32 constant, zero point 0, scale = x_scale * w_scale[c]. */
static int bias_ok(const struct dq *b, const struct dq *x, const struct dq *w, int64_t m) {
    if (!b->qt || b->qt->dtype != QT_INT32 || qt_tensor_numel(b->qt) != m)
        return 0;
    if (b->zt)
        for (int64_t i = 0; i < qt_tensor_numel(b->zt); i++)
            if (qt_tensor_geti(b->zt, i))
                return 0;
    float xs = *(const float *)x->st->data;
    const float *ws = w->st->data, *bs = b->st->data;
    int64_t nb = qt_tensor_numel(b->st), nw = qt_tensor_numel(w->st);
    if (nb != 1 && nb != m)
        return 0;
    for (int64_t i = 0; i < m; i++) {
        float want = xs * ws[nw == 1 ? 0 : i], got = bs[nb == 1 ? 0 : i];
        if (fabsf(want - got) > 1e-6f * fabsf(want))
            return 0;
    }
    return 1;
}

/* Relu / Clip with constant bounds: the float bounds. */
static int act_bounds(const struct qt_graph *g, int node, float *lo, float *hi) {
    return qt_act_bounds(g, &g->n[node], lo, hi) && !isnan(*lo) && !isnan(*hi);
}

/* Q(v) with the output's scale and zero point, in int (saturated). */
static int32_t quant(float v, float s, int32_t zp, int32_t qmin, int32_t qmax) {
    if (v == INFINITY)
        return qmax;
    if (v == -INFINITY)
        return qmin;
    float r = nearbyintf(v / s) + (float)zp;
    return r < (float)qmin ? qmin : r > (float)qmax ? qmax : (int32_t)r;
}

static int copy_attrs(struct qt_node *d, const struct qt_node *s) {
    for (int i = 0; i < s->nattr; i++) {
        const struct qt_attr *a = &s->attr[i];
        int rc = 0;
        if (!strcmp(a->name, "beta"))
            continue;
        if (a->type == QT_ATTR_INT)
            rc = qt_node_set_int(d, a->name, a->i);
        else if (a->type == QT_ATTR_INTS)
            rc = qt_node_set_ints(d, a->name, a->ints, a->n);
        else if (a->type == QT_ATTR_STRING)
            rc = qt_node_set_str(d, a->name, a->s);
        else if (a->type == QT_ATTR_FLOAT)
            rc = qt_node_set_float(d, a->name, a->f);
        if (rc)
            return -1;
    }
    return 0;
}

/* Adds the node replacing node i: op (com.microsoft when contrib) on in,
 * writing yv, with node i's attributes when copy and the fused activation
 * bounds when act; then parses it. Returns 1, or -code on error. */
static int replace_node(struct qt_graph *g, int i, const char *op, int contrib, const int *in, int nin, int yv,
                        int copy, int act, int32_t alo, int32_t ahi, struct qt_err *err) {
    char *name = qt_strdup(g->n[i].name);
    if (!name)
        return -qt_errf(err, QT_ENOMEM, "out of memory");
    int ni = qt_graph_add_node(g, name, op, in, nin, &yv, 1, err);
    free(name);
    if (ni < 0)
        return -err->code;
    struct qt_node *nn = &g->n[ni]; /* g->n may have moved: node i through g->n */
    if ((copy && copy_attrs(nn, &g->n[i])) ||
        (act && (qt_node_set_int(nn, QT_ACT_LO_ATTR, alo) || qt_node_set_int(nn, QT_ACT_HI_ATTR, ahi))))
        return -qt_errf(err, QT_ENOMEM, "out of memory");
    if (contrib) {
        free(nn->domain);
        if (!(nn->domain = qt_strdup("com.microsoft")))
            return -qt_errf(err, QT_ENOMEM, "out of memory");
    }
    return qt_node_changed(g, ni, err) ? -err->code : 1;
}

/* The QuantizeLinear that alone reads v, per tensor: fills yq; -1 if none. */
static int q_after(const struct qt_graph *g, int v, struct dq *yq) {
    int r = only_reader(g, v);
    memset(yq, 0, sizeof *yq);
    if (r < 0 || !is_op(g, r, &qt_op_quantizelinear))
        return -1;
    const struct qt_node *qn = &g->n[r];
    yq->s = qn->in[1];
    yq->z = qn->nin > 2 ? qn->in[2] : -1;
    yq->st = const_of(g, yq->s);
    yq->zt = const_of(g, yq->z);
    if (!yq->st || yq->st->dtype != QT_FLOAT || !per_tensor(yq->st) || (yq->z >= 0 && !yq->zt) ||
        (yq->zt && (!per_tensor(yq->zt) || !qt_qtype_ok(yq->zt->dtype))) || qt_attr_find(qn, "output_dtype"))
        return -1;
    return r;
}

static int dq_type(const struct dq *d) {
    return d->zt ? d->zt->dtype : QT_UINT8;
}

/* Tries to lower node i; *dead gets the nodes it replaces. Returns 1 when
 * lowered, 0 when the pattern does not apply, < 0 on error. */
static int lower_one(struct qt_graph *g, int i, unsigned flags, unsigned char *dead, struct qt_err *err) {
    struct qt_node *n = &g->n[i];
    const struct qt_qfacts *f = qt_qf(n);
    int linear = f->lower == QT_QL_LINEAR, gemm = f->lower == QT_QL_GEMM;
    int kernel = f->flags & QT_QF_CONV_KERNEL;
    struct dq x, w, b;
    struct qt_err e = {0};
    if (f->role != QT_QR_COMPUTE || (!linear && !gemm) || n->nin < 2 || n->nout < 1 ||
        (f->lower_contrib && (flags & QT_LOWER_NO_CONTRIB)))
        return 0;
    if (!dq_of(g, n->in[0], &x) || !act_ok(&x) || !dq_of(g, n->in[1], &w))
        return 0;
    /* Gemm's transA and beta (absent elsewhere) at their defaults */
    if (qt_attr_int(n, "transA", 0, &e) || qt_attr_float(n, "beta", 1, &e) != 1.0f || e.code)
        return 0;
    /* MatMul of two activations (attention): QLinearMatMul on both, per tensor */
    int wact = !w.qt && linear && !kernel && n->nin == 2 && act_ok(&w);
    int64_t m = 0;
    if (!wact) {
        if (!w.qt || (!kernel && w.qt->ndim != 2) || (kernel && w.qt->ndim < 3))
            return 0;
        int axis = qt_qf_weight_axis(n, w.qt->ndim);
        if (!weight_ok(&w, axis))
            return 0;
        m = w.qt->dims[axis];
    }
    int has_b = n->nin > 2 && n->in[2] >= 0;
    if (has_b && (!f->bias || !dq_of(g, n->in[2], &b) || !bias_ok(&b, &x, &w, m)))
        return 0;
    /* the output side */
    int out = n->out[0], r = only_reader(g, out), act = -1, q = -1;
    float lo = -INFINITY, hi = INFINITY;
    if (r >= 0 && qt_qf(&g->n[r])->act && g->n[r].in[0] == out) {
        if (!act_bounds(g, r, &lo, &hi))
            return 0;
        if (flags & QT_LOWER_NO_ACT)
            return 0;
        act = r;
        r = only_reader(g, g->n[act].out[0]);
    }
    struct dq yq;
    q = r >= 0 && is_op(g, r, &qt_op_quantizelinear) ? q_after(g, act >= 0 ? g->n[act].out[0] : out, &yq) : -1;
    if (q < 0) {
        if (r >= 0 && is_op(g, r, &qt_op_quantizelinear))
            return 0; /* a Q this cannot take */
        if (!gemm || act >= 0)
            return 0; /* float output: Gemm only, without activation */
        memset(&yq, 0, sizeof yq);
        yq.s = yq.z = -1;
    }
    int32_t alo = -2147483647, ahi = 2147483647;
    if (act >= 0) {
        int u8 = !yq.zt || yq.zt->dtype == QT_UINT8;
        int32_t zp = yq.zt ? (int32_t)qt_tensor_geti(yq.zt, 0) : 0;
        float s = *(const float *)yq.st->data;
        alo = quant(lo, s, zp, u8 ? 0 : -128, u8 ? 255 : 127);
        ahi = quant(hi, s, zp, u8 ? 0 : -128, u8 ? 255 : 127);
    }
    /* the new node */
    int in[9], nin;
    if (linear) {
        int k = 0;
        in[k++] = x.q, in[k++] = x.s, in[k++] = x.z, in[k++] = w.q, in[k++] = w.s, in[k++] = w.z;
        in[k++] = yq.s, in[k++] = yq.z;
        if (has_b)
            in[k++] = b.q;
        nin = k;
    } else {
        nin = 0;
        in[nin++] = x.q, in[nin++] = x.s, in[nin++] = x.z, in[nin++] = w.q, in[nin++] = w.s, in[nin++] = w.z;
        in[nin++] = has_b ? b.q : -1;
        if (q >= 0)
            in[nin++] = yq.s, in[nin++] = yq.z;
    }
    int rc = replace_node(g, i, f->lower_op, f->lower_contrib, in, nin, q >= 0 ? g->n[q].out[0] : out, 1, act >= 0, alo, ahi, err);
    if (rc < 0)
        return rc;
    dead[i] = 1;
    if (act >= 0)
        dead[act] = 1;
    if (q >= 0)
        dead[q] = 1;
    return 1;
}

/* DQ -> Add <- DQ, -> Q: com.microsoft QLinearAdd; DQ -> GlobalAveragePool
 * -> Q: com.microsoft QLinearGlobalAveragePool (as ONNX Runtime fuses them;
 * same type in and out, per tensor). Returns as lower_one. */
static int lower_eltwise(struct qt_graph *g, int i, unsigned flags, unsigned char *dead, struct qt_err *err) {
    struct qt_node *n = &g->n[i];
    const struct qt_qfacts *f = qt_qf(n);
    int add = f->role == QT_QR_BINARY;
    struct dq a, b, yq;
    if (f->lower != QT_QL_ELTWISE || n->nout < 1 || n->nin != (add ? 2 : 1) || (flags & QT_LOWER_NO_CONTRIB))
        return 0;
    if (!dq_of(g, n->in[0], &a) || !per_tensor(a.st) || (a.zt && (!per_tensor(a.zt) || !qt_qtype_ok(a.zt->dtype))))
        return 0;
    if (add && (!dq_of(g, n->in[1], &b) || !per_tensor(b.st) ||
                (b.zt && (!per_tensor(b.zt) || !qt_qtype_ok(b.zt->dtype))) || dq_type(&b) != dq_type(&a)))
        return 0;
    if ((a.qt && !qt_qtype_ok(a.qt->dtype)) || (add && b.qt && !qt_qtype_ok(b.qt->dtype)))
        return 0;
    int q = q_after(g, n->out[0], &yq);
    if (q < 0 || dq_type(&yq) != dq_type(&a))
        return 0;
    int in[8], nin = 0;
    in[nin++] = a.q, in[nin++] = a.s, in[nin++] = a.z;
    if (add)
        in[nin++] = b.q, in[nin++] = b.s, in[nin++] = b.z;
    in[nin++] = yq.s, in[nin++] = yq.z;
    int rc = replace_node(g, i, f->lower_op, f->lower_contrib, in, nin, g->n[q].out[0], 0, 0, 0, 0, err);
    if (rc < 0)
        return rc;
    dead[i] = 1;
    dead[q] = 1;
    return 1;
}

int qt_int8_lower(struct qt_graph *g, int *nfused, struct qt_err *err) {
    return qt_int8_lower_flags(g, 0, nfused, err);
}

int qt_int8_lower_flags(struct qt_graph *g, unsigned flags, int *nfused, struct qt_err *err) {
    int n0 = g->nn, count = 0, rc = 0;
    unsigned char *dead = calloc((size_t)n0 * 2 + 16, 1);
    *nfused = 0;
    if (!dead)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int i = 0; i < n0; i++) {
        if (dead[i])
            continue;
        int r = lower_one(g, i, flags, dead, err);
        if (r == 0)
            r = lower_eltwise(g, i, flags, dead, err);
        if (r < 0) {
            rc = err->code;
            goto out;
        }
        count += r;
        if (g->nn > n0 * 2 + 16) { /* cannot happen: one new node per lowered node */
            rc = qt_errf(err, QT_EFAIL, "internal error lowering the graph");
            goto out;
        }
    }
    /* DequantizeLinear / Constant nodes whose outputs nobody reads any more */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < g->nn; i++) {
            if (dead[i] || (!is_op(g, i, &qt_op_dequantizelinear) && !is_op(g, i, &qt_op_constant)))
                continue;
            int used = is_graph_output(g, g->n[i].out[0]);
            for (int k = 0; k < g->nn && !used; k++)
                if (!dead[k])
                    for (int j = 0; j < g->n[k].nin; j++)
                        used |= g->n[k].in[j] == g->n[i].out[0];
            if (!used)
                dead[i] = 1, changed = 1;
        }
    }
    if (qt_graph_compact(g, dead, err) || qt_graph_check(g, err))
        rc = err->code;
    *nfused = count;
out:
    free(dead);
    return rc;
}
