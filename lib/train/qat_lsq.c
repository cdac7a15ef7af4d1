/* qat_lsq.c: qtool qat's learnt (LSQ) scales: their gradient scales, the
 * weights snapped to their grid, the relative learning rate and the scale
 * ratios the epoch log reports (see qat.c). */
#include "train/qat.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The learnt scales against their values at the start: lo..hi of the
 * ratios; with lo NULL, records the start. */
void qt_qat_scale_ratio(struct qat *q, double *lo, double *hi) {
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


/* LSQ's gradient scale 1 / sqrt(features * qmax), features per image; a
 * scale shared by a group gets the sum of its members' gradients. */
void qt_qat_lsq_scales(struct qat *q) {
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
void qt_qat_snap_weights(struct qat *q) {
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

/* --relative-lr: each weight's update scaled by its channel's quantization
 * step at the start, and its node's bias by the same step per output
 * channel; each learnt scale's by its starting value. lr is then a fraction
 * of a step whatever the channel's magnitude: BN-folded weights span orders
 * of magnitude between channels (MobileNet: steps from 1e-8 to 29), and one
 * absolute lr either freezes the large channels or scrambles the small ones.
 * Other parameters (BatchNormalization's scale and bias) keep lr itself. */
int qt_qat_step_relative_lr(struct qat *q, struct qt_err *err) {
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
        /* (a bias that is no initializer, e.g. torch's Identity of a shared one, is no parameter here) */
        if (cn && cn->nin > 2 && cn->in[2] >= 0 && q->tg->v[cn->in[2]].init && C > 1 && f->axis == 0) {
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
            if (q->params[v] && q->tg->v[v].init->data == pp->w && qt_qat_is_scale(q, v))
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

int qt_qat_is_scale(const struct qat *q, int v) {
    for (int i = 0; i < q->nact; i++)
        if (q->act_scale[i] == v)
            return 1;
    for (int t = 0; q->p && t < q->p->nt; t++)
        if (q->wscale[t] == v)
            return 1;
    return 0;
}

void qt_qat_set_observe(struct qat *q, int on) {
    for (int i = 0; i < q->nwfq; i++)
        ((struct qt_fq *)q->tg->n[q->wfq[i]].priv)->observe = on;
}

