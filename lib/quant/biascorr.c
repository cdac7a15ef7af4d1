/* biascorr.c: empirical bias correction. After the ranges are set, the
 * float model and the QDQ-simulated model run on the calibration images;
 * for every quantized Conv/Gemm with a bias, in execution order, the mean
 * output error per output channel (E[y_q] - E[y_f], before any fused
 * activation) is subtracted from the float bias, which is then re-quantized.
 * Each layer is corrected with the earlier layers already corrected (one
 * quantized pass per layer, stopped right after that layer).
 * BatchNorm re-estimation (rescale = 1) also matches the per-channel
 * variance, as re-estimating the statistics of a BatchNormalization folded
 * into the layer on the quantized model would: with k = sd_f / sd_q (within
 * [1/2, 2]) the channel's float weights and weight step are both multiplied
 * by k (the integer weights do not change) and the bias becomes
 * mean_f - k * (mean_q - bias), so the output has the float mean and
 * standard deviation. Per-tensor weight steps cannot scale per channel:
 * those layers get the mean correction only.
 * Memory: one batch of activations and two doubles per output channel. */
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct bc_layer {
    int node;      /* in p->g */
    int bias_v;    /* float bias value in p->g */
    int nch;
    double *sum_f; /* per channel, float model */
    double *sq_f;  /* per channel, sums of squares */
    double cnt;    /* values per channel seen */
};

struct bc_pass {
    struct bc_layer *L;
    int nl;
    int target;        /* -1: float pass (every layer); else the layer index */
    const char *name;  /* target node name (quantized pass) */
    double *sum_q, *sq_q;
};

/* Per-channel sums of y and of y^2 (N x C x ...), channel axis 1, in a fixed
 * order. */
static double channel_sums(const struct qt_tensor *y, int nch, double *sum, double *sq) {
    if (y->ndim < 2 || y->dims[1] != nch)
        return 0;
    int64_t n = y->dims[0], inner = 1;
    for (int d = 2; d < y->ndim; d++)
        inner *= y->dims[d];
    const float *v = y->data;
    for (int64_t b = 0; b < n; b++)
        for (int c = 0; c < nch; c++) {
            const float *s = v + ((size_t)b * nch + c) * inner;
            double a = 0, a2 = 0;
            for (int64_t i = 0; i < inner; i++) {
                a += s[i];
                a2 += (double)s[i] * s[i];
            }
            sum[c] += a;
            sq[c] += a2;
        }
    return (double)n * (double)inner;
}

static int bc_after(struct qt_exec *x, int node, void *ud, struct qt_err *err) {
    struct bc_pass *b = ud;
    (void)err;
    const struct qt_node *n = &x->g->n[node];
    if (b->target < 0) {
        for (int l = 0; l < b->nl; l++)
            if (b->L[l].node == node)
                b->L[l].cnt += channel_sums(&x->t[n->out[0]], b->L[l].nch, b->L[l].sum_f, b->L[l].sq_f);
        return 0;
    }
    if (!n->name || strcmp(n->name, b->name))
        return 0;
    channel_sums(&x->t[n->out[0]], b->L[b->target].nch, b->sum_q, b->sq_q);
    return QT_HOOK_STOP;
}

/* the target layer's output statistics on a walk */
struct bc_visit {
    struct bc_pass *b;
};

static int bc_visit(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err) {
    struct bc_visit *bv = ud;
    int k = qt_graph_find_node(x->g, bv->b->name), v = k >= 0 ? x->g->n[k].out[0] : -1;
    (void)done, (void)nb;
    if (v < 0)
        return qt_errf(err, QT_EFAIL, "internal error: no layer '%s'", bv->b->name);
    channel_sums(&x->t[v], bv->b->L[bv->b->target].nch, bv->b->sum_q, bv->b->sq_q);
    return 0;
}

/* Runs g on the first `total` images with the hook. */
static int bc_run(struct qt_graph *g, struct qt_dataset *ds, const struct qt_preproc *pp, int total, int batch,
                  int c, int h, int w, int threads, struct bc_pass *b, struct qt_err *err) {
    struct qt_image_run run = {.pp = pp, .c = c, .h = h, .w = w, .total = total, .batch = batch,
                               .threads = threads, .exec_flags = QT_EXEC_NOFUSE, .after_node = bc_after, .ud = b};
    return qt_run_images(g, ds, &run, err);
}

/* The layers with a bias the plan quantizes, into L[0..*nl) with their float sums allocated;
 * *maxch: the most channels of any. */
static int collect_layers(const struct qt_qplan *p, struct bc_layer *L, int *nl, int *maxch, struct qt_err *err) {
    for (int t = 0; t < p->nt; t++) {
        const struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role != QT_ROLE_BIAS || p->qn[qt->node].excluded)
            continue;
        const struct qt_node *n = &p->g->n[qt->node];
        int64_t m = qt_tensor_numel(p->g->v[qt->v].init);
        if (qt_qf(n)->role != QT_QR_COMPUTE || !qt_qf(n)->bias)
            continue;
        struct bc_layer *l = &L[(*nl)++];
        l->node = qt->node;
        l->bias_v = qt->v;
        l->nch = (int)m;
        l->sum_f = calloc((size_t)m + 1, sizeof(double));
        l->sq_f = calloc((size_t)m + 1, sizeof(double));
        if (!l->sum_f || !l->sq_f)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        if (m > *maxch)
            *maxch = (int)m;
    }
    return 0;
}

/* Sorts L[0..nl) into the execution order of the float graph. */
static int order_layers(const struct qt_qplan *p, struct bc_layer *L, int nl, struct qt_err *err) {
    struct qt_exec *x = NULL;
    if (qt_exec_new_flags(&x, p->g, 1, 1, QT_EXEC_NOFUSE, err))
        return err->code;
    int k = 0;
    for (int s = 0; s < x->nsteps; s++)
        for (int l = k; l < nl; l++)
            if (L[l].node == x->steps[s]) {
                struct bc_layer tmp = L[k];
                L[k++] = L[l];
                L[l] = tmp;
                break;
            }
    qt_exec_free(x);
    return 0;
}

/* Moves layer L's bias so each channel's quantized mean (sum_q over L->cnt) meets the float one;
 * with rescale and per-channel weight steps, first scales each channel's weights and step by the
 * ratio of the float to the quantized deviation (within 0.5..2). Returns the sum of |bias shift|. */
static double correct_layer(struct qt_qplan *p, const struct bc_layer *L, const double *sum_q, const double *sq_q,
                            int rescale) {
    const struct qt_node *n = &p->g->n[L->node];
    float *bias = p->g->v[L->bias_v].init->data;
    int tw = n->nin > 1 && n->in[1] >= 0 ? p->tensor_of[n->in[1]] : -1;
    struct qt_qparam *qw = tw >= 0 ? &p->t[tw].q : NULL;
    struct qt_tensor *wt = n->nin > 1 && n->in[1] >= 0 ? p->g->v[n->in[1]].init : NULL;
    int per_ch = rescale && qw && wt && qw->n == L->nch && qw->axis == 0;
    int64_t inner = per_ch ? qt_tensor_numel(wt) / L->nch : 0;
    if (per_ch)
        p->tuned = 1; /* float weights changed: quant_info.json records them */
    double shift = 0;
    for (int ch = 0; L->cnt > 0 && ch < L->nch; ch++) {
        double mq = sum_q[ch] / L->cnt, mf = L->sum_f[ch] / L->cnt;
        double k = 1;
        if (per_ch) {
            double vq = sq_q[ch] / L->cnt - mq * mq, vf = L->sq_f[ch] / L->cnt - mf * mf;
            if (vq > 0 && vf > 0)
                k = fmin(2.0, fmax(0.5, sqrt(vf / vq)));
            float *wc = (float *)wt->data + ch * inner;
            for (int64_t i = 0; i < inner; i++)
                wc[i] = (float)(wc[i] * k);
            qw->scale[ch] = (float)(qw->scale[ch] * k);
            qw->rng_min[ch] = (float)(qw->rng_min[ch] * k);
            qw->rng_max[ch] = (float)(qw->rng_max[ch] * k);
        }
        double nb = mf - k * (mq - bias[ch]);
        shift += fabs(nb - bias[ch]);
        bias[ch] = (float)nb;
    }
    return shift;
}

int qt_bias_correct(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int total, int batch,
                    int c, int h, int w, int threads, int rescale, struct qt_bc_report *rep, struct qt_err *err) {
    struct bc_layer *L = calloc((size_t)p->nt + 1, sizeof *L);
    double *sum_q = NULL, *sq_q = NULL;
    struct qt_graph *qg = NULL;
    int nl = 0, maxch = 1;
    /* the quantized passes walk the QDQ model from one layer's input to the
     * next instead of running its prefix from the images every time */
    struct qt_walk wq = {.st = {NULL, 0, -1}, .max_memory = (int64_t)1 << 28};
    if (rep)
        memset(rep, 0, sizeof *rep);
    if (!L)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    if (collect_layers(p, L, &nl, &maxch, err))
        goto out;
    sum_q = malloc(sizeof(double) * (size_t)maxch);
    sq_q = malloc(sizeof(double) * (size_t)maxch);
    if (!sum_q || !sq_q) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    struct bc_pass b = {L, nl, -1, NULL, sum_q, sq_q};
    if (bc_run(p->g, ds, pp, total, batch, c, h, w, threads, &b, err))
        goto out;
    /* layers in execution order of the float graph */
    if (order_layers(p, L, nl, err))
        goto out;
    for (int l = 0; l < nl; l++) {
        const struct qt_node *n = &p->g->n[L[l].node];
        if (!n->name || !n->name[0])
            continue;
        qt_walk_graph(&wq, NULL); /* its executor reads qg */
        qt_graph_free(qg);
        qg = NULL;
        if (qt_qplan_biases(p, err) || qt_qplan_export_qdq(p, &qg, err))
            goto out;
        memset(sum_q, 0, sizeof(double) * (size_t)L[l].nch);
        memset(sq_q, 0, sizeof(double) * (size_t)L[l].nch);
        b = (struct bc_pass){L, nl, l, n->name, sum_q, sq_q};
        qt_walk_graph(&wq, qg);
        int kq = qt_graph_find_node(qg, n->name);
        if (kq < 0 || n->nin < 1 || qg->n[kq].nout < 1) {
            qt_errf(err, QT_EFAIL, "internal error: layer '%s' not in the QDQ model", n->name);
            goto out;
        }
        struct bc_visit bv = {&b};
        int cutx = qt_walk_cut_after_value(&wq, p->g->v[n->in[0]].name, threads, err);
        int cuty = cutx < -1 ? -2 : qt_walk_cut_after_node(&wq, n->name, threads, err);
        if (cutx == -2 || cuty == -2)
            goto out;
        if (cutx < 0 || cuty < cutx) { /* the whole prefix, as a plain run */
            if (bc_run(qg, ds, pp, total, batch, c, h, w, threads, &b, err))
                goto out;
        } else if (qt_walk_to(&wq, cutx, ds, pp, total, batch, c, h, w, threads, NULL, NULL, err) ||
                   qt_walk_peek(&wq, cuty, ds, pp, total, batch, c, h, w, threads, bc_visit, &bv, err)) {
            goto out;
        }
        double shift = correct_layer(p, &L[l], sum_q, sq_q, rescale);
        if (rep) {
            rep->layers++;
            rep->mean_abs_shift += shift / (L[l].nch ? L[l].nch : 1);
        }
    }
    if (rep && rep->layers)
        rep->mean_abs_shift /= rep->layers;
    qt_qplan_biases(p, err);
out:
    qt_walk_free(&wq);
    qt_graph_free(qg);
    for (int l = 0; l < nl; l++)
        free(L[l].sum_f), free(L[l].sq_f);
    free(L);
    free(sum_q);
    free(sq_q);
    return err->code;
}
