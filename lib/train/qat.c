/* qat.c: qtool qat: quantization-aware training.
 *
 * 1. The float model is prepared as calib prepares it (qt_qplan_build: same
 *    quantization settings, BatchNormalization folded, activations fused)
 *    and its activation ranges are calibrated on the first calib_images
 *    training images (qt_calib_observe); or, with init_info, the plan a
 *    quant_info.json describes is rebuilt (qt_qplan_from_info: its settings,
 *    steps and tuned weights, e.g. finetune's) and training starts there.
 * 2. The training graph is a copy of the prepared graph with a FakeQuant
 *    node after every quantized activation (one learnable LSQ scale per
 *    activation group, initialised from calibration, zero point fixed) and
 *    on every quantized weight: per-channel LSQ scales initialised from the
 *    weights' min/max (default), or with weight_minmax a min/max observer
 *    recomputed every step, as calib computes them. Biases stay float.
 * 3. Training: shuffled batches (seeded), optional random resized crop +
 *    flip, KL against the float model's outputs (distillation, the default
 *    when quantizing) or cross-entropy on folder labels, Adam (default) or
 *    SGD with a schedule, optional gradient clipping; learnt scales always
 *    take Adam's step on their logarithm (qt_optim_step), so they stay
 *    positive and move by about exp(+-lr) per step at most. After
 *    freeze_observers_after epochs the scales and zero points stop
 *    changing; the weights keep training. The start and every epoch are
 *    validated on val or on every hold_back-th training image (held back
 *    from training and calibration); the best of them is written.
 * 4. Export: trained weights back into the plan, activation (and weight)
 *    parameters from the learnt scales, weights and biases quantized with
 *    them, then calib's QDQ writer and quant_info.json.
 * no_quant trains the float graph itself (BatchNormalization with batch
 * statistics until freeze_bn_after) and writes a float model.
 * Determinism: batches, augmentation and Dropout draw from the seed only;
 * every kernel is thread-count independent, so the output bytes are too. */
#include "quant/quant.h"
#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void qt_qat_opts_init(struct qt_qat_opts *o) {
    memset(o, 0, sizeof *o);
    qt_preproc_default(&o->pp);
    qt_quant_opts_init(&o->q);
    o->epochs = 1;
    o->batch = 32;
    o->lr = 0.003;
    o->optimizer = QT_QAT_ADAM;
    o->relative_lr = -1;
    o->wd = 1e-4;
    o->momentum = 0.9;
    o->schedule = QT_SCHED_COSINE;
    o->step_epochs = 1;
    o->gamma = 0.1;
    o->freeze_bn_after = QT_QAT_AUTO_BN;
    o->distill = -1;
    o->freeze_observers_after = -1;
    o->temperature = 4;
    o->augment = 0;
    o->hold_back = 10;
    o->rrc_min_scale = 0.08;
    o->calib_images = 256;
}

/* A Conv whose BatchNormalization the plan folded, trained unfolded: tg's
 * Conv reads the original weights and bias (values vw, vb, the plan's
 * indices) and writes vpre, read by a BatchNormalization node (bn) with
 * copies of the parameters and running statistics (vg, vbeta, vmean, vvar). */
struct bnc {
    int conv, bn, vw, vb, vg, vbeta, vmean, vvar;
    float eps;
};

struct qat {
    const struct qt_qat_opts *o; /* the options with every automatic choice resolved (eo) */
    struct qt_qat_opts *eo;
    struct qt_graph *g;      /* the float model (teacher) */
    struct qt_qplan *p;      /* quantized mode */
    struct qt_graph *tg;     /* training graph */
    unsigned char *params;   /* per value of tg */
    int *wfq, *afq;          /* weight and activation FakeQuant nodes of tg */
    int nwfq, nafq;
    int *act_scale;          /* scale parameters (values of tg) */
    int nact;
    unsigned char *act_pact; /* per activation group: its scale value holds a PACT clipping level */
    int *wscale;             /* per plan tensor: its weight scale value in tg, or -1 */
    struct bnc *bnc;         /* BatchNormalization trained unfolded (freeze_bn_after > 0) */
    int nbnc;
    struct qt_exec *x, *tx;  /* training plan, teacher plan */
    struct qt_optim opt;
    struct qt_dataset *ds, *vds;
    struct qt_preproc pp, pp_train;
    int c, h, w, ncls;
    int *order, *labels;
    float *tlogits;
    float **snap;            /* the best epoch's float initializers of tg (NULL: not taken) */
    float *scale0;           /* learnt scales at the start, in optimizer order */
    int nscale0;
    int ck_best_epoch;       /* the validation record read from a checkpoint */
    struct qt_mixed mx;      /* widths chosen within --weight-budget/--act-budget */
    struct qt_layer_set *mls; /* those and o->q.layers, the plan's per-node settings */
    double ck_start_val, ck_best_val;
};

static int is_float_init(const struct qt_graph *g, int v);

/* The learnt scales against their values at the start: lo..hi of the
 * ratios; with lo NULL, records the start. */
static void scale_ratio(struct qat *q, double *lo, double *hi) {
    int k = 0;
    double a = INFINITY, b = -INFINITY;
    for (int i = 0; i < q->opt.np; i++) {
        const struct qt_param *p = &q->opt.p[i];
        for (int64_t e = 0; p->log && e < p->n; e++, k++) {
            if (!lo) {
                q->scale0[k] = p->w[e];
                continue;
            }
            double r = q->scale0[k] > 0 ? p->w[e] / q->scale0[k] : 1;
            a = r < a ? r : a;
            b = r > b ? r : b;
        }
    }
    if (lo) {
        *lo = k ? a : 1;
        *hi = k ? b : 1;
    }
}

/* The best epoch's parameters: every float initializer of the training
 * graph (weights, biases, scales, BatchNormalization statistics). */
static int snap_take(struct qat *q, struct qt_err *err) {
    struct qt_graph *tg = q->tg;
    if (!q->snap && !(q->snap = calloc((size_t)tg->nv + 1, sizeof *q->snap)))
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int v = 0; v < tg->nv; v++) {
        if (!is_float_init(tg, v))
            continue;
        if (!q->snap[v] && !(q->snap[v] = malloc(tg->v[v].init->nbytes + 1)))
            return qt_errf(err, QT_ENOMEM, "out of memory keeping the best epoch");
        memcpy(q->snap[v], tg->v[v].init->data, tg->v[v].init->nbytes);
    }
    return 0;
}

static void snap_restore(struct qat *q) {
    for (int v = 0; q->snap && v < q->tg->nv; v++)
        if (q->snap[v] && is_float_init(q->tg, v))
            memcpy(q->tg->v[v].init->data, q->snap[v], q->tg->v[v].init->nbytes);
}

static void snap_free(struct qat *q) {
    for (int v = 0; q->snap && q->tg && v < q->tg->nv; v++)
        free(q->snap[v]);
    free(q->snap);
    q->snap = NULL;
}

static void logf_(struct qat *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct qat *q, const char *fmt, ...) {
    char line[512];
    va_list ap;
    if (!q->o->log)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    q->o->log(q->o->log_ud, line);
}

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

static int is_float_init(const struct qt_graph *g, int v) {
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

/* BatchNormalization trained with batch statistics before freeze_bn_after:
 * every Conv of tg into which the plan folded a BatchNormalization gets its
 * original weights and bias back and the BatchNormalization after it again
 * (as PyTorch's QAT ConvBn before freeze_bn_stats). Weight FakeQuant then
 * acts on the unfolded weights with per-channel steps s / |k|, k = gamma /
 * sqrt(var + eps): folding at export (fold_back) turns them into the folded
 * weights with steps s exactly, the quantized weights scaled by k. From
 * freeze_bn_after on the running statistics are used, which is the folded
 * Conv itself (exactly, while gamma stays positive: see the sign below). */
static int unfold_bn(struct qat *q, struct qt_err *err) {
    struct qt_graph *tg = q->tg;
    const struct qt_graph *g = q->g;
    int nn = tg->nn;
    q->bnc = calloc((size_t)nn + 1, sizeof *q->bnc);
    if (!q->bnc)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int k = 0; k < nn; k++) {
        const struct qt_node *c = &tg->n[k];
        if (!(qt_qf(c)->flags & QT_QF_CONV_KERNEL) || c->nin < 3 || c->in[2] < 0 || c->nout < 1)
            continue;
        const char *yn = tg->v[c->out[0]].name;
        const struct qt_node *bn = NULL;
        for (int i = 0; i < g->nn && !bn; i++)
            if ((qt_qf(&g->n[i])->flags & QT_QF_BN) && g->n[i].nout > 0 && g->n[i].nin >= 5 &&
                !strcmp(g->v[g->n[i].out[0]].name, yn))
                bn = &g->n[i];
        if (!bn || g->v[bn->in[0]].producer < 0)
            continue;
        const struct qt_node *c0 = &g->n[g->v[bn->in[0]].producer];
        const struct qt_tensor *w0 = c0->nin > 1 && c0->in[1] >= 0 ? g->v[c0->in[1]].init : NULL;
        const struct qt_tensor *b0 = c0->nin > 2 && c0->in[2] >= 0 ? g->v[c0->in[2]].init : NULL;
        struct qt_tensor *wt = tg->v[c->in[1]].init, *bt = tg->v[c->in[2]].init;
        if (!w0 || !wt || !bt || w0->dtype != QT_FLOAT || w0->nbytes != wt->nbytes ||
            (b0 && (b0->dtype != QT_FLOAT || b0->nbytes != bt->nbytes)))
            continue;
        struct bnc *r = &q->bnc[q->nbnc];
        r->conv = k;
        r->vw = c->in[1];
        r->vb = c->in[2];
        r->eps = qt_attr_float(bn, "epsilon", 1e-5f, err);
        float momentum = qt_attr_float(bn, "momentum", 0.9f, err);
        int in[5], *dst[4] = {&r->vg, &r->vbeta, &r->vmean, &r->vvar};
        char name[600];
        for (int j = 1; j < 5; j++) {
            struct qt_tensor *t = qt_tensor_clone(g->v[bn->in[j]].init);
            if (!t)
                return qt_errf(err, QT_ENOMEM, "out of memory");
            snprintf(name, sizeof name, "%s", qt_graph_unique_name(tg, g->v[bn->in[j]].name, "_qat"));
            if ((in[j] = *dst[j - 1] = qt_graph_add_init(tg, name, t, err)) < 0)
                return err->code;
        }
        memcpy(wt->data, w0->data, wt->nbytes);
        if (b0)
            memcpy(bt->data, b0->data, bt->nbytes);
        else
            memset(bt->data, 0, bt->nbytes);
        /* a channel with gamma < 0 is trained negated (weights, bias, gamma
         * and running mean: the same function), so that k > 0 and the
         * folded weights' quantization is exactly the unfolded one scaled
         * (the clamp range [qmin, qmax] is not symmetric) */
        float *ga = tg->v[r->vg].init->data, *mu = tg->v[r->vmean].init->data, *W = wt->data, *B = bt->data;
        int64_t m = wt->dims[0], per = qt_tensor_numel(wt) / m;
        for (int64_t o = 0; o < m; o++)
            if (ga[o] < 0) {
                ga[o] = -ga[o];
                mu[o] = -mu[o];
                B[o] = -B[o];
                for (int64_t e = 0; e < per; e++)
                    W[o * per + e] = -W[o * per + e];
            }
        tg->v[r->vw].orig = tg->v[r->vb].orig = NULL;
        snprintf(name, sizeof name, "%s", qt_graph_unique_name(tg, yn, "_prebn"));
        if ((in[0] = qt_graph_add_value(tg, name, QT_V_ACT, err)) < 0)
            return err->code;
        int y = tg->n[k].out[0];
        snprintf(name, sizeof name, "%s", qt_graph_unique_name(tg, bn->name, "_qat"));
        int b = qt_graph_add_node(tg, name, "BatchNormalization", in, 5, &y, 1, err);
        if (b < 0 || qt_node_set_float(&tg->n[b], "epsilon", r->eps) ||
            qt_node_set_float(&tg->n[b], "momentum", momentum))
            return err->code ? err->code : qt_errf(err, QT_ENOMEM, "out of memory");
        tg->n[k].out[0] = in[0];
        r->bn = b;
        q->nbnc++;
        if (qt_node_changed(tg, b, err) || qt_node_changed(tg, k, err))
            return err->code;
    }
    logf_(q, "%d BatchNormalization trained with batch statistics until epoch %d, then folded", q->nbnc,
          q->o->freeze_bn_after + 1);
    return qt_graph_check(tg, err);
}

/* the BatchNormalization factor k = gamma / sqrt(var + eps) of channel o */
static double bn_k(const struct qat *q, const struct bnc *r, int64_t o) {
    const float *ga = q->tg->v[r->vg].init->data, *var = q->tg->v[r->vvar].init->data;
    return ga[o] / sqrt((double)var[o] + r->eps);
}

/* Folds every unfolded BatchNormalization back into its Conv (weights, bias
 * and weight steps in tg, running statistics), for export. */
static void fold_back(struct qat *q) {
    for (int i = 0; i < q->nbnc; i++) {
        const struct bnc *r = &q->bnc[i];
        struct qt_tensor *wt = q->tg->v[r->vw].init;
        float *W = wt->data, *B = q->tg->v[r->vb].init->data;
        const float *be = q->tg->v[r->vbeta].init->data, *mu = q->tg->v[r->vmean].init->data;
        int64_t m = wt->dims[0], per = qt_tensor_numel(wt) / m;
        int t = q->p->tensor_of[r->vw];
        float *ws = t >= 0 && q->wscale[t] >= 0 ? q->tg->v[q->wscale[t]].init->data : NULL;
        for (int64_t o = 0; o < m; o++) {
            double f = bn_k(q, r, o);
            B[o] = (float)((B[o] - mu[o]) * f + be[o]);
            for (int64_t e = 0; e < per; e++)
                W[o * per + e] = (float)(W[o * per + e] * f);
            if (ws)
                ws[o] = (float)(ws[o] * fabs(f));
        }
    }
}

/* The quantized training graph (see the top of the file). */
static int build_qat_graph(struct qat *q, struct qt_err *err) {
    struct qt_qplan *p = q->p;
    int *gs = NULL;
    if (qt_graph_clone(&q->tg, p->g, err))
        return err->code;
    if (q->o->freeze_bn_after > 0 && unfold_bn(q, err))
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
            /* LSQ's gradient scale: set once the shapes are known (lsq_scales) */
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
                        ((float *)tg->v[s].init->data)[c] = (float)(qp->scale[c] / fabs(bn_k(q, &q->bnc[i], c)));
            if (s >= 0 && qp->bits < 8 && !q->o->weight_minmax && !q->o->init_info)
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
static int mark_params(struct qat *q, struct qt_err *err) {
    struct qt_graph *tg = q->tg;
    q->params = calloc((size_t)tg->nv + 1, 1);
    if (!q->params)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int i = 0; i < tg->nn; i++) {
        const struct qt_node *n = &tg->n[i];
        if (qt_qf(n)->role == QT_QR_COMPUTE || (qt_qf(n)->flags & QT_QF_BN)) {
            for (int j = 1; j < 3 && j < n->nin; j++) {
                int v = n->in[j];
                if (v >= 0 && !is_float_init(tg, v) && tg->v[v].producer >= 0 &&
                    tg->n[tg->v[v].producer].op == &qt_op_fakequant)
                    v = tg->n[tg->v[v].producer].in[0]; /* the float weight behind its FakeQuant */
                if (is_float_init(tg, v))
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
static void reinit(struct qat *q) {
    struct qt_graph *g = q->tg;
    uint64_t st = q->o->seed * 0x2545f4914f6cdd1dull + 1;
    for (int i = 0; i < g->nn; i++) {
        const struct qt_node *n = &g->n[i];
        const struct qt_qfacts *f = qt_qf(n);
        if (f->flags & QT_QF_BN) {
            for (int j = 1; j < 5; j++) {
                if (!is_float_init(g, n->in[j]))
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
        if (n->nin > 1 && is_float_init(g, n->in[1])) {
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
        if (n->nin > 2 && is_float_init(g, n->in[2])) {
            struct qt_tensor *t = g->v[n->in[2]].init;
            memset(t->data, 0, t->nbytes);
            g->v[n->in[2]].orig = NULL;
        }
    }
}

/* LSQ's gradient scale 1 / sqrt(features * qmax), features per image; a
 * scale shared by a group gets the sum of its members' gradients. */
static void lsq_scales(struct qat *q) {
    for (int i = 0; i < q->nafq; i++) {
        struct qt_node *n = &q->tg->n[q->afq[i]];
        struct qt_fq *f = n->priv;
        double feat = (double)qt_tensor_numel(&q->x->t[n->in[0]]) / qt_exec_batch(q->x);
        f->grad_scale = (float)(1.0 / sqrt(feat * f->qmax));
    }
    for (int i = 0; i < q->nwfq; i++) { /* weights per scale */
        struct qt_node *n = &q->tg->n[q->wfq[i]];
        struct qt_fq *f = n->priv;
        double per = (double)qt_tensor_numel(&q->x->t[n->in[0]]) / (double)qt_tensor_numel(&q->x->t[n->in[1]]);
        f->grad_scale = (float)(1.0 / sqrt(per * f->qmax));
    }
}

/* --init: each weight moved onto its quantization grid point, (q - z) * s.
 * The plan's file holds these values, so the model is unchanged; but tuned
 * weights (finetune's AdaQuant, a previous qat) end where straight-through
 * training left them, many on a rounding boundary, and the first update of
 * any size flips them all: on MobileNet W4A8 one Adam step of 5e-5 took
 * top-1 from 74 to 6%. On the grid a weight moves half a step before its
 * quantized value changes. */
static void snap_weights(struct qat *q) {
    for (int i = 0; i < q->nwfq; i++) {
        const struct qt_node *n = &q->tg->n[q->wfq[i]];
        const struct qt_fq *f = n->priv;
        struct qt_tensor *w = q->tg->v[n->in[0]].init;
        const float *s = q->tg->v[n->in[1]].init->data;
        const float *z = n->nin > 2 && n->in[2] >= 0 ? q->tg->v[n->in[2]].init->data : NULL;
        int64_t C = 1, inner = 1, numel = qt_tensor_numel(w);
        if (f->axis >= 0) {
            C = w->dims[f->axis];
            for (int d = f->axis + 1; d < w->ndim; d++)
                inner *= w->dims[d];
        }
        float *d = w->data;
        for (int64_t k = 0; k < numel; k++) {
            int64_t c = (k / inner) % C;
            float zc = z ? z[c] : 0;
            d[k] = ((float)qt_quantize(d[k], s[c], (int32_t)zc, f->qmin, f->qmax) - zc) * s[c];
        }
    }
}

static int is_scale(const struct qat *q, int v);

/* --relative-lr: each weight's update scaled by its channel's quantization
 * step at the start, and its node's bias by the same step per output
 * channel; each learnt scale's by its starting value. lr is then a fraction
 * of a step whatever the channel's magnitude: BN-folded weights span orders
 * of magnitude between channels (MobileNet: steps from 1e-8 to 29), and one
 * absolute lr either freezes the large channels or scrambles the small ones.
 * Other parameters (BatchNormalization's scale and bias) keep lr itself. */
static int step_relative_lr(struct qat *q, struct qt_err *err) {
    for (int i = 0; i < q->nwfq; i++) {
        const struct qt_node *n = &q->tg->n[q->wfq[i]];
        const struct qt_fq *f = n->priv;
        struct qt_tensor *w = q->tg->v[n->in[0]].init;
        const float *s = q->tg->v[n->in[1]].init->data;
        struct qt_param *pp = NULL;
        for (int k = 0; k < q->opt.np; k++)
            if (q->opt.p[k].w == w->data)
                pp = &q->opt.p[k];
        if (!pp)
            continue;
        int64_t C = 1, inner = 1, numel = qt_tensor_numel(w);
        if (f->axis >= 0) {
            C = w->dims[f->axis];
            for (int d = f->axis + 1; d < w->ndim; d++)
                inner *= w->dims[d];
        }
        pp->lr_elem = malloc(sizeof(float) * (size_t)(numel + 1));
        if (!pp->lr_elem)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        for (int64_t k = 0; k < numel; k++)
            pp->lr_elem[k] = s[(k / inner) % C];
        /* the bias of the node reading the weights: per output channel */
        const struct qt_node *cn = NULL;
        for (int j = 0; j < q->tg->nn; j++)
            for (int a = 0; a < q->tg->n[j].nin; a++)
                if (q->tg->n[j].in[a] == n->out[0])
                    cn = &q->tg->n[j];
        if (cn && cn->nin > 2 && cn->in[2] >= 0 && C > 1 && f->axis == 0) {
            for (int k = 0; k < q->opt.np; k++)
                if (q->opt.p[k].w == q->tg->v[cn->in[2]].init->data && q->opt.p[k].n == C && !q->opt.p[k].lr_elem) {
                    q->opt.p[k].lr_elem = malloc(sizeof(float) * (size_t)(C + 1));
                    if (!q->opt.p[k].lr_elem)
                        return qt_errf(err, QT_ENOMEM, "out of memory");
                    for (int64_t c = 0; c < C; c++)
                        q->opt.p[k].lr_elem[c] = s[c];
                }
        }
    }
    /* learnt scales: relative to their own starting value */
    for (int k = 0; k < q->opt.np; k++) {
        struct qt_param *pp = &q->opt.p[k];
        int sc = 0;
        for (int v = 0; v < q->tg->nv; v++)
            if (q->params[v] && q->tg->v[v].init->data == pp->w && is_scale(q, v))
                sc = 1;
        if (!sc || pp->lr_elem || pp->log) /* log-space steps are relative already */
            continue;
        pp->lr_elem = malloc(sizeof(float) * (size_t)(pp->n + 1));
        if (!pp->lr_elem)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        for (int64_t e = 0; e < pp->n; e++)
            pp->lr_elem[e] = pp->w[e];
    }
    return 0;
}

static int is_scale(const struct qat *q, int v) {
    for (int i = 0; i < q->nact; i++)
        if (q->act_scale[i] == v)
            return 1;
    for (int t = 0; q->p && t < q->p->nt; t++)
        if (q->wscale[t] == v)
            return 1;
    return 0;
}

static void set_observe(struct qat *q, int on) {
    for (int i = 0; i < q->nwfq; i++)
        ((struct qt_fq *)q->tg->n[q->wfq[i]].priv)->observe = on;
}

/* ---- checkpoints --------------------------------------------------------
 * DIR/checkpoint.bin: "QTCK", version 2, epoch, optimizer step, then for
 * every float initializer of the training graph in order its name, element
 * count and values, then per parameter the optimizer state (m, v), then the
 * validation record (int32 best epoch, -1 none; double start and best val
 * top-1) and, with a best epoch, its float initializers' values in the same
 * order (so that --resume writes the epoch an uninterrupted run would). */

struct ck_head {
    char magic[4];
    uint32_t version;
    int32_t epoch;
    int32_t nvalues;
    int64_t step;
};

static int ck_path(const struct qt_qat_opts *o, char *buf, size_t len, struct qt_err *err) {
    if ((size_t)snprintf(buf, len, "%s/checkpoint.bin", o->checkpoint) >= len)
        return qt_errf(err, QT_EUSAGE, "checkpoint directory name is too long");
    return 0;
}

static int ck_write(struct qat *q, int epoch, const struct qt_qat_result *r, struct qt_err *err) {
    struct qt_graph *tg = q->tg;
    char path[4096];
    size_t len = sizeof(struct ck_head), off = 0;
    int nvals = 0;
    if (!q->o->checkpoint)
        return 0;
    if (ck_path(q->o, path, sizeof path, err))
        return err->code;
    if (mkdir(q->o->checkpoint, 0777) && errno != EEXIST)
        return qt_errf(err, QT_EIO, "cannot create checkpoint directory '%s': %s", q->o->checkpoint,
                       strerror(errno));
    for (int v = 0; v < tg->nv; v++)
        if (is_float_init(tg, v)) {
            len += 4 + strlen(tg->v[v].name) + 8 + tg->v[v].init->nbytes;
            nvals++;
        }
    for (int i = 0; i < q->opt.np; i++)
        len += 2 * sizeof(float) * (size_t)q->opt.p[i].n;
    int32_t best = q->snap ? r->best_epoch : -1;
    len += 4 + 2 * sizeof(double);
    for (int v = 0; best >= 0 && v < tg->nv; v++)
        if (is_float_init(tg, v))
            len += tg->v[v].init->nbytes;
    unsigned char *buf = malloc(len);
    if (!buf)
        return qt_errf(err, QT_ENOMEM, "out of memory writing a checkpoint");
    struct ck_head h = {{'Q', 'T', 'C', 'K'}, 2, epoch, nvals, q->opt.t};
    memcpy(buf, &h, sizeof h);
    off = sizeof h;
    for (int v = 0; v < tg->nv; v++) {
        if (!is_float_init(tg, v))
            continue;
        uint32_t nl = (uint32_t)strlen(tg->v[v].name);
        int64_t n = qt_tensor_numel(tg->v[v].init);
        memcpy(buf + off, &nl, 4);
        memcpy(buf + off + 4, tg->v[v].name, nl);
        memcpy(buf + off + 4 + nl, &n, 8);
        memcpy(buf + off + 12 + nl, tg->v[v].init->data, tg->v[v].init->nbytes);
        off += 12 + nl + tg->v[v].init->nbytes;
    }
    for (int i = 0; i < q->opt.np; i++) {
        size_t b = sizeof(float) * (size_t)q->opt.p[i].n;
        memcpy(buf + off, q->opt.p[i].m, b);
        memcpy(buf + off + b, q->opt.p[i].v, b);
        off += 2 * b;
    }
    double vals[2] = {r->start_val_top1, r->best_val_top1};
    memcpy(buf + off, &best, 4);
    memcpy(buf + off + 4, vals, sizeof vals);
    off += 4 + sizeof vals;
    for (int v = 0; best >= 0 && v < tg->nv; v++)
        if (is_float_init(tg, v)) {
            memcpy(buf + off, q->snap[v], tg->v[v].init->nbytes);
            off += tg->v[v].init->nbytes;
        }
    int rc = qt_write_file_atomic(path, buf, off, err);
    free(buf);
    return rc;
}

static int ck_read(struct qat *q, int *epoch, struct qt_err *err) {
    struct qt_graph *tg = q->tg;
    char path[4096];
    void *data;
    size_t len, off = sizeof(struct ck_head);
    struct ck_head h;
    if (ck_path(q->o, path, sizeof path, err) || qt_read_file(path, (size_t)1 << 34, &data, &len, err))
        return err->code;
    unsigned char *buf = data;
    if (len < sizeof h)
        goto bad;
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, "QTCK", 4) || h.version != 2)
        goto bad;
    for (int k = 0; k < h.nvalues; k++) {
        uint32_t nl;
        int64_t n;
        if (off + 12 > len)
            goto bad;
        memcpy(&nl, buf + off, 4);
        if (off + 12 + nl > len)
            goto bad;
        memcpy(&n, buf + off + 4 + nl, 8);
        char name[1024];
        if (nl >= sizeof name)
            goto bad;
        memcpy(name, buf + off + 4, nl);
        name[nl] = 0;
        int v = qt_graph_find(tg, name);
        if (v < 0 || !is_float_init(tg, v) || qt_tensor_numel(tg->v[v].init) != n ||
            off + 12 + nl + tg->v[v].init->nbytes > len) {
            free(data);
            return qt_errf(err, QT_EDATA, "checkpoint '%s' does not match this model and settings ('%s')", path,
                           name);
        }
        memcpy(tg->v[v].init->data, buf + off + 12 + nl, tg->v[v].init->nbytes);
        off += 12 + nl + tg->v[v].init->nbytes;
    }
    for (int i = 0; i < q->opt.np; i++) {
        size_t b = sizeof(float) * (size_t)q->opt.p[i].n;
        if (off + 2 * b > len)
            goto bad;
        memcpy(q->opt.p[i].m, buf + off, b);
        memcpy(q->opt.p[i].v, buf + off + b, b);
        off += 2 * b;
    }
    int32_t best;
    double vals[2];
    if (off + 4 + sizeof vals > len)
        goto bad;
    memcpy(&best, buf + off, 4);
    memcpy(vals, buf + off + 4, sizeof vals);
    off += 4 + sizeof vals;
    q->ck_best_epoch = best;
    q->ck_start_val = vals[0];
    q->ck_best_val = vals[1];
    if (best >= 0) {
        if (!(q->snap = calloc((size_t)tg->nv + 1, sizeof *q->snap))) {
            free(data);
            return qt_errf(err, QT_ENOMEM, "out of memory");
        }
        for (int v = 0; v < tg->nv; v++) {
            if (!is_float_init(tg, v))
                continue;
            size_t b = tg->v[v].init->nbytes;
            if (off + b > len || !(q->snap[v] = malloc(b + 1)))
                goto bad;
            memcpy(q->snap[v], buf + off, b);
            off += b;
        }
    }
    if (off != len)
        goto bad;
    q->opt.t = h.step;
    *epoch = h.epoch;
    free(data);
    return 0;
bad:
    free(data);
    return qt_errf(err, QT_EDATA, "checkpoint '%s' is truncated or not a qtool checkpoint", path);
}

/* ---- evaluation ---------------------------------------------------------- */

static int argmax_row(const float *z, int64_t i, int ncls) {
    int best = 0;
    for (int k = 1; k < ncls; k++)
        if (z[i * ncls + k] > z[i * ncls + best])
            best = k;
    return best;
}

/* Top-1 of the training graph (fake-quantized, BatchNormalization on running
 * statistics) on the validation images; on images without labels, its top-1
 * agreement with the float model (the distillation target). */
static int validate(struct qat *q, double *top1, int *images, struct qt_err *err) {
    struct qt_exec *vx = NULL, *fx = NULL;
    int total = qt_dataset_count(q->vds), hits = 0, labeled = 0, batch = q->o->batch;
    int agree = !qt_dataset_labeled(q->vds);
    int *labels = malloc(sizeof(int) * (size_t)batch);
    if (!labels)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int done = 0; done < total;) {
        int nb = total - done < batch ? total - done : batch;
        if (!vx || qt_exec_batch(vx) != nb) {
            qt_exec_free(vx);
            vx = NULL;
            if (qt_exec_new(&vx, q->tg, nb, q->o->threads, err))
                goto out;
            qt_exec_free(fx);
            fx = NULL;
            if (agree && qt_exec_new(&fx, q->g, nb, q->o->threads, err))
                goto out;
        }
        if (qt_dataset_load(q->vds, &q->pp, done, nb, q->c, q->h, q->w, qt_exec_input(vx, 0), labels, q->o->threads,
                            0, err) ||
            qt_exec_run(vx, err))
            goto out;
        if (agree) {
            memcpy(qt_exec_input(fx, 0), qt_exec_input(vx, 0), sizeof(float) * (size_t)nb * q->c * q->h * q->w);
            if (qt_exec_run(fx, err))
                goto out;
        }
        const float *z = qt_exec_output(vx, 0), *f = agree ? qt_exec_output(fx, 0) : NULL;
        for (int i = 0; i < nb; i++) {
            int want = agree ? argmax_row(f, i, q->ncls) : labels[i];
            if (want < 0 || want >= q->ncls)
                continue;
            hits += argmax_row(z, i, q->ncls) == want;
            labeled++;
        }
        done += nb;
    }
    *top1 = labeled ? 100.0 * hits / labeled : 0;
    *images = labeled;
out:
    qt_exec_free(vx);
    qt_exec_free(fx);
    free(labels);
    return err->code;
}

/* ---- export --------------------------------------------------------------- */

static int export_quant(struct qat *q, int images, struct qt_err *err) {
    struct qt_qplan *p = q->p;
    struct qt_graph *qg = NULL;
    fold_back(q);
    for (int v = 0; v < p->g->nv; v++) /* training graph values keep the plan's indices */
        if (q->params[v] && is_float_init(p->g, v)) {
            memcpy(p->g->v[v].init->data, q->tg->v[v].init->data, p->g->v[v].init->nbytes);
            p->g->v[v].orig = NULL;
        }
    for (int t = 0; t < p->nt; t++) {
        struct qt_qparam *qp = &p->t[t].q;
        if (qp->role != QT_ROLE_ACT)
            continue;
        char nm[64];
        snprintf(nm, sizeof nm, "qat_act%d_scale", p->t[t].group);
        int sv = qt_graph_find(q->tg, nm);
        snprintf(nm, sizeof nm, "qat_act%d_zp", p->t[t].group);
        int zv = qt_graph_find(q->tg, nm);
        if (sv < 0 || zv < 0)
            return qt_errf(err, QT_EFAIL, "internal error: activation group %d has no scale", p->t[t].group);
        float s = *(const float *)q->tg->v[sv].init->data, z = *(const float *)q->tg->v[zv].init->data;
        if (q->o->act_range == QT_ACT_FIXED)
            continue; /* the calibrated parameters, untouched */
        if (q->act_pact[p->t[t].group]) { /* s holds the clipping level: [0, a] */
            s = s / (float)(qp->qmax - qp->qmin);
            z = (float)qp->qmin;
        }
        qp->scale[0] = s;
        qp->zp[0] = (int32_t)z;
        qp->rng_min[0] = s * (float)(qp->qmin - qp->zp[0]);
        qp->rng_max[0] = s * (float)(qp->qmax - qp->zp[0]);
        qp->method = q->act_pact[p->t[t].group] ? "pact" : "lsq";
    }
    if (qt_qplan_weights(p, err))
        return err->code;
    for (int t = 0; !q->o->weight_minmax && t < p->nt; t++) {
        struct qt_qparam *qp = &p->t[t].q;
        if (q->wscale[t] < 0)
            continue;
        const float *s = q->tg->v[q->wscale[t]].init->data;
        for (int c = 0; c < qp->n; c++) {
            qp->scale[c] = s[c];
            qp->rng_min[c] = s[c] * (float)(qp->qmin - qp->zp[c]);
            qp->rng_max[c] = s[c] * (float)(qp->qmax - qp->zp[c]);
        }
        qp->method = "lsq";
    }
    p->tuned = 1;
    qt_qplan_pow2(p);
    int rc = qt_qplan_biases(p, err) || qt_qplan_export_qdq(p, &qg, err) ||
             qt_qplan_save(p, qg, q->o->out, q->o->quant_info, q->o->model, &q->pp, images, q->o->train, err);
    qt_graph_free(qg);
    return rc ? err->code : 0;
}

static int export_float(struct qat *q, struct qt_err *err) {
    for (int v = 0; v < q->tg->nv; v++)
        if (is_float_init(q->tg, v))
            q->tg->v[v].orig = NULL; /* weights and running statistics changed */
    return qt_graph_save(q->tg, q->o->out, err);
}

/* ---- the run ---------------------------------------------------------------- */

static void shuffle(int *order, int n, uint64_t seed) {
    uint64_t st = seed;
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(qt_rand01(&st) * (float)(i + 1));
        if (j > i)
            j = i;
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static int setup(struct qat *q, struct qt_qat_result *r, struct qt_err *err) {
    const struct qt_qat_opts *o = q->o;
    int fixed;
    if (o->batch > QT_QAT_MAX_BATCH) /* the step's index array */
        return qt_errf(err, QT_EUSAGE, "batch %d is above %d, the most images per qat step", o->batch,
                       QT_QAT_MAX_BATCH);
    q->pp = o->pp;
    if (qt_graph_load(&q->g, o->model, err) || qt_graph_check_weights(q->g, err) ||
        qt_model_image_shape(q->g, &q->pp, &q->c, &q->h, &q->w, &fixed, err))
        return err->code;
    if (fixed)
        return qt_errf(err, QT_EUNSUPPORTED, "model '%s' has a fixed batch size; qat needs a dynamic batch",
                       o->model);
    if (!o->channels_set)
        q->pp.channels = q->c;
    if (qt_dataset_open(&q->ds, o->train, o->classes, err))
        return err->code;
    if (!o->distill && !qt_dataset_labeled(q->ds))
        return qt_errf(err, QT_EDATA, "training folder '%s' has no class sub-folders; use --distill", o->train);
    /* without --val, every hold_back-th training image is held back (never
     * trained on, nor calibrated on) to measure the start and each epoch */
    if (!o->val && o->hold_back > 1 && qt_dataset_count(q->ds) >= 2 * o->hold_back) {
        if (qt_dataset_hold_back(q->ds, o->hold_back, &q->vds, err))
            return err->code;
        r->held_back = qt_dataset_count(q->vds);
        logf_(q, "validation: %d of the training images held back (every %dth), %d trained on", r->held_back,
              o->hold_back, qt_dataset_count(q->ds));
    }
    if (qt_dataset_count(q->ds) < o->batch)
        return qt_errf(err, QT_EDATA, "training folder '%s' has %d images, fewer than a batch (%d)", o->train,
                       qt_dataset_count(q->ds), o->batch);
    if (o->val && qt_dataset_open(&q->vds, o->val, o->classes, err))
        return err->code;
    q->pp_train = q->pp;
    if (o->augment) {
        q->pp_train.rrc = 1;
        q->pp_train.hflip = 1;
        q->pp_train.rrc_min_scale = (float)o->rrc_min_scale;
        q->pp_train.crop_h = q->h;
        q->pp_train.crop_w = q->w;
    }
    if (o->no_quant) {
        if (o->freeze_bn_after == QT_QAT_AUTO_BN)
            q->eo->freeze_bn_after = -1;
        if (qt_graph_clone(&q->tg, q->g, err))
            return err->code;
        if (o->from_scratch)
            reinit(q);
    } else {
        if (o->from_scratch)
            return qt_errf(err, QT_EUSAGE, "--from-scratch trains a float model: add --no-quant");
        if (o->init_info) { /* a finished plan: settings, steps and tuned weights */
            int ntuned;
            if (qt_qplan_from_info(&q->p, q->g, o->model, o->init_info, &ntuned, err))
                return err->code;
            logf_(q, "started from %s: %d tensors, %d tuned weight tensors", o->init_info, q->p->nt, ntuned);
        } else {
            if (qt_qplan_build(&q->p, q->g, &o->q, NULL, NULL, err))
                return err->code;
            if (o->q.weight_budget.kind || o->q.act_budget.kind) { /* widths within the budgets */
                struct qt_quant_opts q2 = o->q;
                if (o->q.mixed == QT_MIXED_CHANNEL)
                    return qt_errf(err, QT_EUSAGE, "--mixed per-channel is for calib and finetune: qat trains "
                                                   "one width per weight tensor (use --mixed per-layer)");
                if (qt_mixed_choose(q->p, q->ds, &q->pp, q->c, q->h, q->w, o->threads > 0 ? o->threads : qt_ncpus(),
                                    &q->mx, err))
                    return err->code;
                q->mls = malloc(sizeof *q->mls * ((size_t)q->mx.nlayers + (size_t)o->q.nlayers + 1));
                if (!q->mls)
                    return qt_errf(err, QT_ENOMEM, "out of memory");
                memcpy(q->mls, q->mx.layers, sizeof *q->mls * (size_t)q->mx.nlayers);
                if (o->q.nlayers)
                    memcpy(q->mls + q->mx.nlayers, o->q.layers, sizeof *q->mls * (size_t)o->q.nlayers);
                q2.layers = q->mls;
                q2.nlayers = q->mx.nlayers + o->q.nlayers;
                qt_qplan_free(q->p);
                q->p = NULL;
                if (qt_qplan_build(&q->p, q->g, &q2, NULL, NULL, err))
                    return err->code;
                logf_(q, "mixed precision: %d layers given their own widths (ROM budget %lld bytes, RAM %lld)",
                      q->mx.nlayers, (long long)q->mx.rom_budget, (long long)q->mx.ram_budget);
            }
            /* CLE rescales folded weights, which unfolding BatchNormalization would undo for some layers */
            if (qt_cle_wanted(&o->q) && o->freeze_bn_after <= 0) {
                struct qt_cle_report cr;
                int n = qt_dataset_count(q->ds), tot = o->calib_images < n ? o->calib_images : n;
                if (qt_cle(q->p, q->ds, &q->pp, tot, o->batch < tot ? o->batch : tot, q->c, q->h, q->w,
                           o->threads > 0 ? o->threads : qt_ncpus(),
                           &cr, err))
                    return err->code;
                logf_(q, "cross-layer equalization: %d layer pairs, %d high biases absorbed", cr.pairs, cr.absorbed);
            }
            if (qt_qplan_weights(q->p, err))
                return err->code;
            if (qt_calib_observe(q->p, q->ds, &q->pp, q->c, q->h, q->w, o->calib_images, o->batch, 0, o->threads,
                                 &r->calib_images, NULL, NULL, err))
                return err->code;
            logf_(q, "calibrated %d activation groups on %d images; %d BatchNormalization folded", q->p->ngroups,
                  r->calib_images, q->p->nfolded);
        }
        /* BatchNormalization trains unfolded below 8 bits (batch statistics
         * re-centre every layer; folded from the start, a collapsed 4-bit
         * calibration never recovers), folded for the last epoch */
        if (o->freeze_bn_after == QT_QAT_AUTO_BN)
            q->eo->freeze_bn_after = !o->init_info && q->p->nfolded > 0 && o->q.per_channel &&
                                             !qt_cle_wanted(&o->q) /* CLE rescaled the folded weights */ &&
                                             o->epochs > 1 &&
                                             (o->q.wbits < 8 || o->q.abits < 8 || o->q.weight_budget.kind ||
                                              o->q.act_budget.kind)
                                         ? o->epochs - 1
                                         : -1;
        if (build_qat_graph(q, err))
            return err->code;
        r->bn_unfolded = q->nbnc;
    }
    if (mark_params(q, err))
        return err->code;
    if (qt_exec_new_train(&q->x, q->tg, o->batch, o->threads, q->params, err))
        return err->code;
    set_observe(q, o->weight_minmax);
    lsq_scales(q);
    if (o->init_info)
        snap_weights(q);
    const struct qt_tensor *out = qt_exec_output_tensor(q->x, 0);
    if (out->ndim != 2 || out->dims[0] != o->batch)
        return qt_errf(err, QT_EUNSUPPORTED, "model output must be [N, classes] logits");
    q->ncls = (int)out->dims[1];
    if (o->distill) {
        if (qt_exec_new(&q->tx, q->g, o->batch, o->threads, err))
            return err->code;
        q->tlogits = malloc(sizeof(float) * (size_t)o->batch * (size_t)q->ncls);
        if (!q->tlogits)
            return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    qt_optim_init(&q->opt, o->optimizer == QT_QAT_ADAM ? QT_OPT_ADAM : QT_OPT_SGD, (float)o->momentum,
                  (float)o->wd);
    for (int v = 0; v < q->tg->nv; v++) {
        if (!q->params[v])
            continue;
        /* decay only weights (more than one dim); scales stay positive by
         * their log-space step, with no floor (BN-folded channels have
         * steps down to 1e-14: a floor of 1e-6, LSQ's old guard, moved
         * them by 1e8 on MobileNetV1 unfolded) */
        int scale = is_scale(q, v);
        if (qt_optim_add(&q->opt, q->tg->v[v].init->data, qt_exec_grad(q->x, v), qt_tensor_numel(q->tg->v[v].init),
                         q->tg->v[v].init->ndim > 1 && !scale ? 1.0f : 0.0f, scale ? 0.0f : -INFINITY, err))
            return err->code;
        q->opt.p[q->opt.np - 1].log = scale; /* relative, bounded steps: see qt_optim_step */
        if (scale)
            q->nscale0 += (int)qt_tensor_numel(q->tg->v[v].init);
        r->nparams++;
    }
    if (o->relative_lr && step_relative_lr(q, err))
        return err->code;
    q->scale0 = malloc(sizeof(float) * ((size_t)q->nscale0 + 1));
    if (!q->scale0)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    scale_ratio(q, NULL, NULL);
    q->order = malloc(sizeof(int) * (size_t)qt_dataset_count(q->ds));
    q->labels = malloc(sizeof(int) * (size_t)o->batch);
    if (!q->order || !q->labels)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    return 0;
}

/* Freezes what the schedule says is frozen from `epoch` (0-based) on. */
static void apply_freeze(struct qat *q, int epoch) {
    const struct qt_qat_opts *o = q->o;
    if (o->freeze_bn_after >= 0 && epoch >= o->freeze_bn_after)
        q->x->bn_frozen = 1;
    if (o->freeze_observers_after >= 0 && epoch >= o->freeze_observers_after) {
        set_observe(q, 0);
        for (int i = 0; i < q->opt.np; i++)
            for (int v = 0; v < q->tg->nv; v++)
                if (q->params[v] && q->opt.p[i].w == q->tg->v[v].init->data && is_scale(q, v))
                    q->opt.p[i].lr_mult = 0;
    }
}

int qt_qat_run(const struct qt_qat_opts *uo, struct qt_qat_result *r, struct qt_err *err) {
    struct qat q;
    double t0 = qt_now();
    int start = 0;
    double *steps = NULL;
    struct qt_qat_opts eo = *uo;
    const struct qt_qat_opts *o = &eo;
    memset(&q, 0, sizeof q);
    memset(r, 0, sizeof *r);
    /* automatic choices (see qt_qat_opts_init): quantized training
     * distils from the float model and steps relative to the quantization
     * steps; float training uses the labels and absolute steps */
    if (eo.distill < 0)
        eo.distill = !eo.no_quant;
    if (eo.relative_lr < 0)
        eo.relative_lr = !eo.no_quant;
    q.o = q.eo = &eo;
    if (!o->model || !o->train || !o->out || (!o->no_quant && !o->quant_info))
        return qt_errf(err, QT_EUSAGE, "model, training folder and output are required");
    if (o->epochs < 1 || o->batch < 1 || !(o->lr > 0))
        return qt_errf(err, QT_EUSAGE, "epochs, batch and lr must be positive");
    if (o->relative_lr && o->no_quant)
        return qt_errf(err, QT_EUSAGE, "--relative-lr scales lr by quantization steps: it excludes --no-quant");
    if (o->init_info && o->freeze_bn_after == QT_QAT_AUTO_BN)
        eo.freeze_bn_after = -1;
    if (o->q.cle > 0 && (o->init_info || o->freeze_bn_after > 0 || o->no_quant))
        return qt_errf(err, QT_EUSAGE, "--cle cannot be combined with %s",
                       o->init_info ? "--init (the plan is made)" : o->no_quant ? "--no-quant" :
                       "--freeze-bn-after (BatchNormalization is trained unfolded)");
    if (o->init_info && (o->no_quant || o->freeze_bn_after > 0))
        return qt_errf(err, QT_EUSAGE, "--init starts from a folded, quantized plan: it excludes --no-quant and "
                                       "--freeze-bn-after > 0");
    if (!o->no_quant && o->freeze_bn_after > 0 && !o->q.per_channel)
        return qt_errf(err, QT_EUSAGE,
                       "--freeze-bn-after %d trains BatchNormalization unfolded, which needs per-channel weight "
                       "steps (fold them exactly at export); drop --per-tensor or use --freeze-bn-after 0",
                       o->freeze_bn_after);
    if (qt_qplan_outputs_check(o->out, o->no_quant ? NULL : o->quant_info, 1, err))
        return err->code;
    if (setup(&q, r, err))
        goto out;
    if (o->resume) {
        if (!o->checkpoint) {
            qt_errf(err, QT_EUSAGE, "--resume needs --checkpoint DIR");
            goto out;
        }
        if (ck_read(&q, &start, err))
            goto out;
        logf_(&q, "resumed from %s/checkpoint.bin after epoch %d", o->checkpoint, start);
    }
    r->epoch = calloc((size_t)o->epochs + 1, sizeof *r->epoch);
    if (!r->epoch) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    int count = qt_dataset_count(q.ds);
    int iters = o->iters_per_epoch > 0 ? o->iters_per_epoch : count / o->batch;
    struct qt_sched sch = {o->schedule, (float)o->lr, (int64_t)iters * o->epochs, (int64_t)iters * o->step_epochs,
                           (float)o->gamma, 0};
    steps = malloc(sizeof(double) * ((size_t)iters + 1));
    if (!steps) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    r->start_val_top1 = r->best_val_top1 = -1;
    r->best_epoch = -1;
    if (q.vds && !start) { /* the starting point: calibrated (or --init) model */
        if (validate(&q, &r->start_val_top1, &r->val_images, err) || snap_take(&q, err))
            goto out;
        r->best_epoch = 0;
        r->best_val_top1 = r->start_val_top1;
        logf_(&q, "start: val top-1 %.2f (%d images)", r->start_val_top1, r->val_images);
    } else if (q.vds) {
        r->start_val_top1 = q.ck_start_val;
        r->best_val_top1 = q.ck_best_val;
        r->best_epoch = q.ck_best_epoch;
    }
    float *input = qt_exec_input(q.x, 0);
    int yv = q.tg->outputs[0];
    size_t isz = (size_t)q.c * q.h * q.w;
    for (int ep = start; ep < o->epochs; ep++) {
        struct qt_qat_epoch *e = &r->epoch[r->nepoch];
        double et = qt_now(), lsum = 0;
        int hits = 0, seen = 0, nsteps = 0;
        apply_freeze(&q, ep);
        shuffle(q.order, count, o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)ep * 0x632be59bd9b4e019ull + 1);
        float lr = 0;
        for (int it = 0; it < iters; it++) {
            int idx[4096];
            for (int i = 0; i < o->batch && i < 4096; i++)
                idx[i] = q.order[((int64_t)it * o->batch + i) % count];
            uint64_t bseed = o->seed * 1000003ull + (uint64_t)ep * 7919ull + (uint64_t)it;
            if (qt_dataset_load_idx(q.ds, &q.pp_train, idx, o->batch, q.c, q.h, q.w, input, q.labels, o->threads,
                                    bseed, err))
                goto out;
            double st = qt_now();
            if (o->distill) {
                memcpy(qt_exec_input(q.tx, 0), input, sizeof(float) * isz * (size_t)o->batch);
                if (qt_exec_run(q.tx, err))
                    goto out;
                memcpy(q.tlogits, qt_exec_output(q.tx, 0), sizeof(float) * (size_t)o->batch * (size_t)q.ncls);
            }
            q.x->rng = bseed ^ 0x5bd1e995ull;
            if (qt_exec_run(q.x, err))
                goto out;
            const float *z = qt_exec_output(q.x, 0);
            double loss;
            int c1 = 0;
            if (o->distill) {
                qt_loss_kl(z, q.tlogits, o->batch, q.ncls, (float)o->temperature, qt_exec_grad(q.x, yv), &loss,
                           NULL);
                for (int i = 0; i < o->batch; i++) {
                    int best = 0;
                    for (int k = 1; k < q.ncls; k++)
                        if (z[(int64_t)i * q.ncls + k] > z[(int64_t)i * q.ncls + best])
                            best = k;
                    c1 += q.labels[i] >= 0 && best == q.labels[i];
                }
            } else {
                qt_loss_xent(z, q.labels, o->batch, q.ncls, qt_exec_grad(q.x, yv), &loss, &c1);
            }
            if (!isfinite(loss)) {
                qt_errf(err, QT_EFAIL, "training diverged at epoch %d step %d (loss %g): lower --lr", ep + 1, it + 1,
                        loss);
                goto out;
            }
            lsum += loss;
            hits += c1;
            seen += o->batch;
            if (qt_exec_backward(q.x, err))
                goto out;
            if (o->clip_grad > 0)
                qt_clip_grad_norm(&q.opt, o->clip_grad);
            lr = qt_sched_lr(&sch, (int64_t)ep * iters + it);
            qt_optim_step(&q.opt, lr);
            if (ep > start || it > 0)
                steps[nsteps++] = qt_now() - st;
            if (o->progress)
                o->progress(o->progress_ud, (ep - start) * iters + it + 1, (o->epochs - start) * iters);
            if (o->stop && *o->stop) {
                /* the finished epochs and the optimizer state; the partial epoch reruns on --resume */
                if (ck_write(&q, ep, r, err))
                    goto out;
                r->interrupted = 1;
                logf_(&q, "interrupted at epoch %d step %d%s", ep + 1, it + 1,
                      o->checkpoint ? ": checkpoint written" : "");
                goto out;
            }
        }
        for (int a = 1; a < nsteps; a++) /* median: insertion sort, iters is small */
            for (int b = a; b > 0 && steps[b - 1] > steps[b]; b--) {
                double t = steps[b];
                steps[b] = steps[b - 1];
                steps[b - 1] = t;
            }
        e->step_ms = nsteps ? 1000 * steps[nsteps / 2] : 0;
        e->epoch = ep + 1;
        e->loss = iters ? lsum / iters : 0;
        e->train_top1 = seen ? 100.0 * hits / seen : 0;
        e->lr = lr;
        e->val_top1 = -1;
        if (q.vds && validate(&q, &e->val_top1, &e->val_images, err))
            goto out;
        scale_ratio(&q, &e->scale_lo, &e->scale_hi);
        if (q.vds && e->val_top1 >= r->best_val_top1) { /* ties: the later epoch */
            if (snap_take(&q, err))
                goto out;
            r->best_val_top1 = e->val_top1;
            r->best_epoch = ep + 1;
        }
        e->wall_s = qt_now() - et;
        r->nepoch++;
        r->epochs_done = ep + 1;
        if (q.vds)
            logf_(&q, "epoch %d/%d: loss %.4f, train top-1 %.2f, val top-1 %.2f (%d images), lr %.3g, %.1f s",
                  ep + 1, o->epochs, e->loss, e->train_top1, e->val_top1, e->val_images, e->lr, e->wall_s);
        else
            logf_(&q, "epoch %d/%d: loss %.4f, train top-1 %.2f, lr %.3g, %.1f s", ep + 1, o->epochs, e->loss,
                  e->train_top1, e->lr, e->wall_s);
        if (ck_write(&q, ep + 1, r, err))
            goto out;
    }
    if (q.vds && r->nepoch) {
        double last = r->epoch[r->nepoch - 1].val_top1;
        r->ended_below_start = r->start_val_top1 >= 0 && last < r->start_val_top1;
        if (r->best_epoch != r->epochs_done) {
            snap_restore(&q);
            logf_(&q, "writing epoch %d (val top-1 %.2f), the best; the last epoch gave %.2f", r->best_epoch,
                  r->best_val_top1, last);
        }
    }
    if (o->no_quant)
        export_float(&q, err);
    else if (!export_quant(&q, r->calib_images, err) && !qt_mem_figures(q.p, &r->mem, err)) {
        r->mem.rom_budget = q.mx.rom_budget;
        r->mem.ram_budget = q.mx.ram_budget;
    }
out:
    r->wall_s = qt_now() - t0;
    free(steps);
    qt_optim_release(&q.opt);
    qt_exec_free(q.x);
    qt_exec_free(q.tx);
    qt_dataset_free(q.ds);
    qt_dataset_free(q.vds);
    snap_free(&q);
    qt_graph_free(q.tg);
    qt_qplan_free(q.p);
    qt_mixed_free(&q.mx);
    free(q.mls);
    qt_graph_free(q.g);
    free(q.params);
    free(q.wfq);
    free(q.afq);
    free(q.act_scale);
    free(q.act_pact);
    free(q.wscale);
    free(q.bnc);
    free(q.order);
    free(q.labels);
    free(q.tlogits);
    snap_free(&q);
    free(q.scale0);
    r->freeze_bn_after = eo.freeze_bn_after;
    r->distill = eo.distill;
    r->relative_lr = eo.relative_lr;
    return err->code;
}
