/* qat_graph.c: qtool qat's training graph: FakeQuant on every quantized
 * activation and weight of the prepared graph, the trainable values, and
 * --from-scratch's re-initialisation (see qat.c). */
#include "train/qat.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int new_init(struct qt_graph *g, const char *name, int64_t n, const float *v, struct qt_err *err) {
    int64_t d[1] = {n};
    struct qt_tensor *t = qt_tensor_new(QT_FLOAT, 1, d);
    if (!t)
        return qt_errf(err, QT_ENOMEM, "out of memory"), -1;
    memcpy(t->data, v, sizeof(float) * (size_t)n);
    return qt_graph_add_init(g, qt_graph_unique_name(g, name, ""), t, err);
}

/* Inserts FakeQuant after value v (all readers but the new node read its
 * output), or on input `slot` of node k when k >= 0. Returns the node. */
static int insert_fq(struct qt_graph *g, int v, int k, int slot, int s, int z, const struct qt_qparam *qp, int axis,
                     float gscale, int pact, struct qt_err *err) {
    char name[600];
    snprintf(name, sizeof name, "%s", qt_graph_unique_name(g, g->v[v].name, "_fq"));
    int y = qt_graph_add_value(g, name, QT_V_ACT, err);
    if (y < 0)
        return -1;
    int node = qt_fq_add(g, name, v, s, z, y, qp->qmin, qp->qmax, axis, pact, qp->symmetric, gscale, "minmax", err);
    if (node < 0)
        return -1;
    if (k >= 0) {
        g->n[k].in[slot] = y;
        return node;
    }
    for (int i = 0; i < g->nn; i++)
        for (int j = 0; i != node && j < g->n[i].nin; j++)
            if (g->n[i].in[j] == v)
                g->n[i].in[j] = y;
    return node;
}

int qt_qat_is_float_init(const struct qt_graph *g, int v) {
    return v >= 0 && g->v[v].kind == QT_V_INIT && g->v[v].init && g->v[v].init->dtype == QT_FLOAT;
}

/* Learnt weight scales below 8 bits start from the per-channel clipping
 * that minimises the squared quantization error (min/max wastes most of 4
 * bits on outliers): t = k/64 * max|w|, k = 16..64, s = t / ((qmax-qmin)/2). */
static void mse_init(float *scale, const struct qt_tensor *w, const struct qt_qparam *qp) {
    const float *W = w->data;
    int64_t total = qt_tensor_numel(w), C = qp->n, axis = qp->axis < 0 ? 0 : qp->axis;
    int64_t inner = C == 1 ? total : qt_numel(w->ndim - (int)axis - 1, w->dims + axis + 1);
    int64_t outer = total / (C * inner);
    float half = (float)(qp->qmax - qp->qmin) / 2;
    for (int64_t c = 0; c < C; c++) {
        float mx = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++)
                mx = fmaxf(mx, fabsf(W[(o * C + c) * inner + i]));
        if (!(mx > 0))
            continue;
        double best = INFINITY;
        for (int k = 16; k <= 64; k++) {
            float s = mx * (float)k / 64 / half;
            double e = 0;
            for (int64_t o = 0; o < outer; o++)
                for (int64_t i = 0; i < inner; i++) {
                    float x = W[(o * C + c) * inner + i];
                    float d = (float)qt_quantize(x, s, 0, qp->qmin, qp->qmax) * s - x;
                    e += (double)d * d;
                }
            if (e < best) {
                best = e;
                scale[c] = s;
            }
        }
    }
}


/* The quantized training graph (see the top of the file). */
int qt_qat_build_graph(struct qat *q, struct qt_err *err) {
    struct qt_qplan *p = q->p;
    int *gs = NULL;
    if (qt_graph_clone(&q->tg, p->g, err))
        return err->code;
    if (q->o->freeze_bn_after > 0 && qt_qat_unfold_bn(q, err))
        return err->code;
    struct qt_graph *tg = q->tg;
    gs = malloc(sizeof(int) * 2 * ((size_t)p->ngroups + 1));
    q->wfq = malloc(sizeof(int) * ((size_t)p->nt + 1));
    q->afq = malloc(sizeof(int) * ((size_t)p->nt + 1));
    q->wscale = malloc(sizeof(int) * ((size_t)p->nt + 1));
    q->act_scale = malloc(sizeof(int) * ((size_t)p->ngroups + 1));
    q->act_pact = calloc((size_t)p->ngroups + 1, 1);
    if (!gs || !q->wfq || !q->afq || !q->wscale || !q->act_scale || !q->act_pact) {
        free(gs);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    for (int i = 0; i < 2 * p->ngroups; i++)
        gs[i] = -1;
    for (int t = 0; t < p->nt; t++) {
        const struct qt_qtensor *qt = &p->t[t];
        const struct qt_qparam *qp = &qt->q;
        q->wscale[t] = -1;
        if (qp->role == QT_ROLE_ACT) {
            int grp = qt->group;
            if (gs[2 * grp] < 0) {
                char nm[64];
                float zf = (float)qp->zp[0];
                /* PACT where the range starts at 0 (after Relu/Clip): the
                 * clipping level a = s (qmax - qmin) is learnt instead of s */
                q->act_pact[grp] = q->o->act_range == QT_ACT_PACT && !qp->symmetric && qp->zp[0] == qp->qmin;
                float a = q->act_pact[grp] ? qp->scale[0] * (float)(qp->qmax - qp->qmin) : qp->scale[0];
                snprintf(nm, sizeof nm, "qat_act%d_scale", grp);
                gs[2 * grp] = new_init(tg, nm, 1, &a, err);
                snprintf(nm, sizeof nm, "qat_act%d_zp", grp);
                gs[2 * grp + 1] = new_init(tg, nm, 1, &zf, err);
                if (gs[2 * grp] < 0 || gs[2 * grp + 1] < 0)
                    goto fail;
                q->act_scale[q->nact++] = gs[2 * grp];
            }
            /* LSQ's gradient scale: set once the shapes are known (qt_qat_lsq_scales) */
            int k = insert_fq(tg, qt->v, -1, 0, gs[2 * grp], q->act_pact[grp] ? -1 : gs[2 * grp + 1], qp, -1, 1.0f,
                              q->act_pact[grp], err);
            if (k < 0)
                goto fail;
            q->afq[q->nafq++] = k;
        } else if (qp->role == QT_ROLE_WEIGHT) {
            const struct qt_node *n = &tg->n[qt->node];
            int slot = -1;
            for (int j = 0; j < n->nin; j++)
                if (n->in[j] == qt->v)
                    slot = j;
            if (slot < 0)
                continue;
            float *zf = malloc(sizeof(float) * (size_t)qp->n);
            if (!zf) {
                qt_errf(err, QT_ENOMEM, "out of memory");
                goto fail;
            }
            for (int c = 0; c < qp->n; c++)
                zf[c] = (float)qp->zp[c];
            char nm[600];
            snprintf(nm, sizeof nm, "%s_qat_scale", tg->v[qt->v].name);
            int s = new_init(tg, nm, qp->n, qp->scale, err);
            for (int i = 0; s >= 0 && i < q->nbnc; i++) /* unfolded weights: steps / |k| */
                if (q->bnc[i].vw == qt->v && qp->n == tg->v[qt->v].init->dims[0])
                    for (int c = 0; c < qp->n; c++)
                        ((float *)tg->v[s].init->data)[c] = (float)(qp->scale[c] / fabs(qt_qat_bn_k(q, &q->bnc[i], c)));
            if (s >= 0 && qp->bits < 8 && !q->o->weight_minmax && !q->from_plan)
                mse_init(tg->v[s].init->data, tg->v[qt->v].init, qp);
            snprintf(nm, sizeof nm, "%s_qat_zp", tg->v[qt->v].name);
            int z = s < 0 ? -1 : new_init(tg, nm, qp->n, zf, err);
            free(zf);
            if (z < 0)
                goto fail;
            int k = insert_fq(tg, qt->v, qt->node, slot, s, z, qp, qp->axis, 1.0f, 0, err);
            if (k < 0)
                goto fail;
            q->wfq[q->nwfq++] = k;
            q->wscale[t] = s;
        }
    }
    free(gs);
    return 0;
fail:
    free(gs);
    return err->code;
}

/* Trainable values: weights and biases of Conv/Gemm/MatMul (initializers),
 * BatchNormalization scale and bias, activation scales. */
int qt_qat_mark_params(struct qat *q, struct qt_err *err) {
    struct qt_graph *tg = q->tg;
    q->params = calloc((size_t)tg->nv + 1, 1);
    if (!q->params)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int i = 0; i < tg->nn; i++) {
        const struct qt_node *n = &tg->n[i];
        if (qt_qf(n)->role == QT_QR_COMPUTE || (qt_qf(n)->flags & QT_QF_BN)) {
            for (int j = 1; j < 3 && j < n->nin; j++) {
                int v = n->in[j];
                if (v >= 0 && !qt_qat_is_float_init(tg, v) && tg->v[v].producer >= 0 &&
                    tg->n[tg->v[v].producer].op == &qt_op_fakequant)
                    v = tg->n[tg->v[v].producer].in[0]; /* the float weight behind its FakeQuant */
                if (qt_qat_is_float_init(tg, v))
                    q->params[v] = 1;
            }
        }
    }
    for (int i = 0; q->o->act_range != QT_ACT_FIXED && i < q->nact; i++)
        q->params[q->act_scale[i]] = 1;
    for (int t = 0; q->p && !q->o->weight_minmax && t < q->p->nt; t++)
        if (q->wscale[t] >= 0)
            q->params[q->wscale[t]] = 1;
    return 0;
}

/* --from-scratch: Kaiming-uniform weights (fan-in, ReLU gain), zero
 * biases, BatchNormalization scale 1, bias 0, mean 0, var 1. */
void qt_qat_reinit(struct qat *q) {
    struct qt_graph *g = q->tg;
    uint64_t st = q->o->seed * 0x2545f4914f6cdd1dull + 1;
    for (int i = 0; i < g->nn; i++) {
        const struct qt_node *n = &g->n[i];
        const struct qt_qfacts *f = qt_qf(n);
        if (f->flags & QT_QF_BN) {
            for (int j = 1; j < 5; j++) {
                if (!qt_qat_is_float_init(g, n->in[j]))
                    continue;
                struct qt_tensor *t = g->v[n->in[j]].init;
                for (int64_t k = 0; k < qt_tensor_numel(t); k++)
                    ((float *)t->data)[k] = j == 1 || j == 4 ? 1.0f : 0.0f;
                g->v[n->in[j]].orig = NULL;
            }
            continue;
        }
        if (f->role != QT_QR_COMPUTE)
            continue;
        if (n->nin > 1 && qt_qat_is_float_init(g, n->in[1])) {
            struct qt_tensor *t = g->v[n->in[1]].init;
            int64_t fan = 1;
            int conv = f->flags & QT_QF_CONV_KERNEL;
            if (conv)
                fan = qt_tensor_numel(t) / (t->dims[0] ? t->dims[0] : 1);
            else if (t->ndim == 2) /* the input axis: the one that is not the output channels' */
                fan = t->dims[1 - qt_qf_weight_axis(n, 2)];
            double bound = conv ? sqrt(6.0 / (double)fan) : 1.0 / sqrt((double)fan);
            for (int64_t k = 0; k < qt_tensor_numel(t); k++)
                ((float *)t->data)[k] = (float)((2 * qt_rand01(&st) - 1) * bound);
            g->v[n->in[1]].orig = NULL;
        }
        if (n->nin > 2 && qt_qat_is_float_init(g, n->in[2])) {
            struct qt_tensor *t = g->v[n->in[2]].init;
            memset(t->data, 0, t->nbytes);
            g->v[n->in[2]].orig = NULL;
        }
    }
}

