/* qat_bn.c: qtool qat's BatchNormalization, unfolded for training and
 * folded back for export (see qat.c). */
#include "train/qat.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* BatchNormalization trained with batch statistics before freeze_bn_after:
 * every Conv of tg into which the plan folded a BatchNormalization gets its
 * original weights and bias back and the BatchNormalization after it again
 * (as PyTorch's QAT ConvBn before freeze_bn_stats). Weight FakeQuant then
 * acts on the unfolded weights with per-channel steps s / |k|, k = gamma /
 * sqrt(var + eps): folding at export (qt_qat_fold_back) turns them into the folded
 * weights with steps s exactly, the quantized weights scaled by k. From
 * freeze_bn_after on the running statistics are used, which is the folded
 * Conv itself (exactly, while gamma stays positive: see the sign below). */
int qt_qat_unfold_bn(struct qat *q, struct qt_err *err) {
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
    qt_qat_log(q, "%d BatchNormalization trained with batch statistics until epoch %d, then folded", q->nbnc,
          q->o->freeze_bn_after + 1);
    return qt_graph_check(tg, err);
}

/* the BatchNormalization factor k = gamma / sqrt(var + eps) of channel o */
double qt_qat_bn_k(const struct qat *q, const struct bnc *r, int64_t o) {
    const float *ga = q->tg->v[r->vg].init->data, *var = q->tg->v[r->vvar].init->data;
    return ga[o] / sqrt((double)var[o] + r->eps);
}

/* Folds every unfolded BatchNormalization back into its Conv (weights, bias
 * and weight steps in tg, running statistics), for export. */
void qt_qat_fold_back(struct qat *q) {
    for (int i = 0; i < q->nbnc; i++) {
        const struct bnc *r = &q->bnc[i];
        struct qt_tensor *wt = q->tg->v[r->vw].init;
        float *W = wt->data, *B = q->tg->v[r->vb].init->data;
        const float *be = q->tg->v[r->vbeta].init->data, *mu = q->tg->v[r->vmean].init->data;
        int64_t m = wt->dims[0], per = qt_tensor_numel(wt) / m;
        int t = q->p->tensor_of[r->vw];
        float *ws = t >= 0 && q->wscale[t] >= 0 ? q->tg->v[q->wscale[t]].init->data : NULL;
        for (int64_t o = 0; o < m; o++) {
            double f = qt_qat_bn_k(q, r, o);
            B[o] = (float)((B[o] - mu[o]) * f + be[o]);
            for (int64_t e = 0; e < per; e++)
                W[o * per + e] = (float)(W[o * per + e] * f);
            if (ws)
                ws[o] = (float)(ws[o] * fabs(f));
        }
    }
}

