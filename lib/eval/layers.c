/* layers.c: per-layer figures of a QDQ model against its float model, for
 * qtool eval --report. Both models run as written (no int8 lowering, no
 * activation fusion, so every tensor is there) on the same images; an
 * after-node hook copies the reference's copy of each quantized tensor, and
 * the quantized model's hook accumulates the squared error of the
 * DequantizeLinear output against it. Nothing is kept per image but those
 * tensors of one batch. */
#include "engine.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct track {
    int qt_v;        /* T in the quantized graph */
    int qd_v;        /* its DequantizeLinear output */
    int ref_v;       /* T in the reference graph, -1 if it has none */
    float *buf;      /* the reference's T, this batch */
    int64_t n;
    double sig, noise;
};

struct lrun {
    struct qt_layer_report *rep;
    struct track *tr;
    int *of_ref, *of_qd, *of_qt; /* value -> track, -1 */
    const struct qt_graph *qg;
    struct qt_exec *qx, *rx;     /* quantized and reference runs */
};

static float tval(const struct qt_tensor *t, int64_t i) {
    switch (t->dtype) {
    case QT_FLOAT: return ((const float *)t->data)[i];
    case QT_UINT8: return ((const uint8_t *)t->data)[i];
    case QT_INT8: return ((const int8_t *)t->data)[i];
    }
    return 0;
}

static const struct qt_tensor *init_of(const struct qt_graph *g, const struct qt_node *n, int i) {
    if (i >= n->nin || n->in[i] < 0 || g->v[n->in[i]].kind != QT_V_INIT)
        return NULL;
    return g->v[n->in[i]].init;
}

static void hist_add(struct qt_layer_stats *L, const float *v, int64_t n) {
    float w = (L->hhi - L->hlo) / QT_LAYER_BINS;
    for (int64_t i = 0; i < n; i++) {
        float x = v[i];
        if (x != x)
            continue;
        L->min = x < L->min ? x : L->min;
        L->max = x > L->max ? x : L->max;
        L->count++;
        if (x < L->hlo) {
            L->under++;
        } else if (x > L->hhi) {
            L->over++;
        } else {
            int b = w > 0 ? (int)((x - L->hlo) / w) : 0;
            L->hist[b < QT_LAYER_BINS ? b : QT_LAYER_BINS - 1]++;
        }
    }
}

static int keep_ref(struct lrun *r, int k, const struct qt_tensor *t, struct qt_err *err) {
    struct track *tr = &r->tr[k];
    int64_t n = qt_tensor_numel(t);
    if (t->dtype != QT_FLOAT || n <= 0)
        return 0;
    if (n != tr->n) {
        free(tr->buf);
        if (!(tr->buf = malloc(sizeof(float) * (size_t)n)))
            return qt_errf(err, QT_ENOMEM, "out of memory");
        tr->n = n;
    }
    memcpy(tr->buf, t->data, sizeof(float) * (size_t)n);
    hist_add(&r->rep->layer[k], tr->buf, n);
    return 0;
}

static void compare(struct lrun *r, int k, const struct qt_tensor *t) {
    struct track *tr = &r->tr[k];
    int64_t n = qt_tensor_numel(t);
    if (tr->ref_v < 0 || t->dtype != QT_FLOAT || n != tr->n)
        return;
    const float *q = t->data;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)q[i] - tr->buf[i];
        tr->sig += (double)tr->buf[i] * tr->buf[i];
        tr->noise += d * d;
    }
}

static int ref_after(struct qt_exec *x, int node, void *ud, struct qt_err *err) {
    struct lrun *r = ud;
    const struct qt_node *n = &x->g->n[node];
    for (int j = 0; j < n->nout; j++)
        if (n->out[j] >= 0 && r->of_ref[n->out[j]] >= 0 && keep_ref(r, r->of_ref[n->out[j]], &x->t[n->out[j]], err))
            return err->code;
    return 0;
}

static int q_after(struct qt_exec *x, int node, void *ud, struct qt_err *err) {
    struct lrun *r = ud;
    const struct qt_node *n = &x->g->n[node];
    (void)err;
    for (int j = 0; j < n->nout; j++) {
        int v = n->out[j];
        if (v < 0)
            continue;
        if (r->of_qd[v] >= 0)
            compare(r, r->of_qd[v], &x->t[v]);
        if (r->of_qt[v] >= 0 && r->tr[r->of_qt[v]].ref_v < 0 && x->t[v].dtype == QT_FLOAT)
            hist_add(&r->rep->layer[r->of_qt[v]], x->t[v].data, qt_tensor_numel(&x->t[v]));
    }
    return 0;
}

/* The quantized activations: QuantizeLinear on a non-initializer with a
 * per-tensor scale, followed by a DequantizeLinear. */
static int find_layers(const struct qt_graph *qg, const struct qt_graph *rg, struct lrun *r, struct qt_err *err) {
    struct qt_layer_report *rep = r->rep;
    rep->layer = calloc((size_t)qg->nn + 1, sizeof *rep->layer);
    r->tr = calloc((size_t)qg->nn + 1, sizeof *r->tr);
    if (!rep->layer || !r->tr)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int i = 0; i < qg->nn; i++) {
        const struct qt_node *n = &qg->n[i];
        if (n->op != &qt_op_quantizelinear || n->nin < 2 || n->in[0] < 0 ||
            qg->v[n->in[0]].kind == QT_V_INIT)
            continue;
        const struct qt_tensor *s = init_of(qg, n, 1), *z = init_of(qg, n, 2);
        if (!s || qt_tensor_numel(s) != 1 || (z && qt_tensor_numel(z) != 1))
            continue;
        int cons[8], nc = qt_graph_consumers(qg, n->out[0], cons, 8), dq = -1;
        for (int k = 0; k < nc && k < 8; k++)
            if (qg->n[cons[k]].op == &qt_op_dequantizelinear)
                dq = qg->n[cons[k]].out[0];
        if (dq < 0)
            continue;
        int sgn = z && z->dtype == QT_INT8;
        float sc = tval(s, 0), zp = z ? tval(z, 0) : 0, qmin = sgn ? -128 : 0, qmax = sgn ? 127 : 255;
        struct qt_layer_stats *L = &rep->layer[rep->nlayers];
        struct track *tr = &r->tr[rep->nlayers];
        int v = n->in[0], p = qg->v[v].producer;
        snprintf(L->name, sizeof L->name, "%s", qg->v[v].name);
        if (p >= 0) {
            snprintf(L->node, sizeof L->node, "%s", qg->n[p].name ? qg->n[p].name : "");
            snprintf(L->op, sizeof L->op, "%s", qg->n[p].op_type);
        }
        L->clip_min = sc * (qmin - zp);
        L->clip_max = sc * (qmax - zp);
        float w = L->clip_max - L->clip_min;
        L->hlo = L->clip_min - w;
        L->hhi = L->clip_max + w;
        L->min = INFINITY;
        L->max = -INFINITY;
        tr->qt_v = v;
        tr->qd_v = dq;
        tr->ref_v = qt_graph_find(rg, qg->v[v].name);
        if (tr->ref_v >= 0 && rg->v[tr->ref_v].kind == QT_V_INIT)
            tr->ref_v = -1;
        r->of_qd[dq] = rep->nlayers;
        r->of_qt[v] = rep->nlayers;
        if (tr->ref_v >= 0)
            r->of_ref[tr->ref_v] = rep->nlayers;
        rep->nlayers++;
    }
    return 0;
}

/* Depthwise Conv (group = output channels, one input channel per group):
 * the per-channel range of its weights, dequantized when a
 * DequantizeLinear feeds them, and the grid's limits. */
static int find_depthwise(const struct qt_graph *g, struct qt_layer_report *rep, struct qt_err *err) {
    rep->dw = calloc((size_t)g->nn + 1, sizeof *rep->dw);
    if (!rep->dw)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int i = 0; i < g->nn; i++) {
        const struct qt_node *n = &g->n[i];
        struct qt_err e = {0};
        if (!(qt_qf(n)->flags & QT_QF_CONV_KERNEL) || n->nin < 2 || n->in[1] < 0)
            continue;
        int64_t group = qt_attr_int(n, "group", 1, &e);
        const struct qt_tensor *wt = init_of(g, n, 1), *s = NULL, *z = NULL;
        int p = g->v[n->in[1]].producer;
        if (!wt && p >= 0 && g->n[p].op == &qt_op_dequantizelinear) {
            wt = init_of(g, &g->n[p], 0);
            s = init_of(g, &g->n[p], 1);
            z = init_of(g, &g->n[p], 2);
        }
        if (e.code || group < 2 || !wt || wt->ndim != 4 || wt->dims[0] != group || wt->dims[1] != 1 || (wt->dtype != QT_FLOAT && !s))
            continue;
        int C = (int)group;
        int64_t per = wt->dims[2] * wt->dims[3];
        struct qt_dw_stats *d = &rep->dw[rep->ndw];
        snprintf(d->node, sizeof d->node, "%s", n->name ? n->name : "");
        d->channels = C;
        float *m = malloc(sizeof(float) * 4 * (size_t)C);
        if (!m)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        d->wmin = m;
        d->wmax = m + C;
        d->gmin = m + 2 * C;
        d->gmax = m + 3 * C;
        rep->ndw++;
        int sgn = wt->dtype == QT_INT8;
        for (int c = 0; c < C; c++) {
            float sc = s ? tval(s, qt_tensor_numel(s) == C ? c : 0) : 1;
            float zp = z ? tval(z, qt_tensor_numel(z) == C ? c : 0) : 0;
            float lo = INFINITY, hi = -INFINITY;
            for (int64_t k = 0; k < per; k++) {
                float v = s ? sc * (tval(wt, c * per + k) - zp) : tval(wt, c * per + k);
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            d->wmin[c] = lo;
            d->wmax[c] = hi;
            d->gmin[c] = s ? sc * ((sgn ? -128.f : 0.f) - zp) : lo;
            d->gmax[c] = s ? sc * ((sgn ? 127.f : 255.f) - zp) : hi;
        }
    }
    return 0;
}

static float *lr_input(void *ud, int nb, struct qt_err *err) {
    struct lrun *r = ud;
    (void)nb;
    (void)err;
    return qt_exec_input(r->rx, 0);
}

/* One batch (whole: the image count is a multiple of the batch) through
 * both graphs; their hooks compare the tracked tensors. */
static int lr_batch(void *ud, float *in, const int *labels, int done, int nb, struct qt_err *err) {
    struct lrun *r = ud;
    struct qt_layer_report *rep = r->rep;
    (void)labels;
    (void)done;
    memcpy(qt_exec_input(r->qx, 0), in, sizeof(float) * qt_tensor_numel(qt_exec_input_tensor(r->rx, 0)));
    /* a quantized graph input is no node's output: feed the hooks directly */
    for (int k = 0; k < rep->nlayers; k++)
        if (r->qg->v[r->tr[k].qt_v].kind == QT_V_INPUT && r->tr[k].ref_v >= 0 &&
            keep_ref(r, k, qt_exec_input_tensor(r->rx, 0), err))
            return err->code;
    if (qt_exec_run(r->rx, err) || qt_exec_run(r->qx, err))
        return err->code;
    rep->images += nb;
    return 0;
}

int qt_eval_layers(const struct qt_eval_opts *o, int images, struct qt_layer_report *rep, struct qt_err *err) {
    struct qt_graph *qg = NULL, *rg = NULL;
    struct qt_exec *qx = NULL, *rx = NULL;
    struct qt_dataset *ds = NULL;
    struct qt_preproc pp = o->pp;
    struct lrun r = {.rep = rep};
    int c, h, w, fixed, threads = o->threads > 0 ? o->threads : qt_ncpus();
    memset(rep, 0, sizeof *rep);
    if (!o->ref)
        return qt_errf(err, QT_EUSAGE, "the per-layer report compares with a reference: give --ref FLOAT.onnx");
    if (qt_graph_load(&qg, o->model, err) || qt_graph_load(&rg, o->ref, err))
        goto out;
    if (qt_model_image_shape(qg, &pp, &c, &h, &w, &fixed, err))
        goto out;
    if (!o->channels_set)
        pp.channels = c;
    r.of_ref = malloc(sizeof(int) * (size_t)(rg->nv + 1));
    r.of_qd = malloc(sizeof(int) * (size_t)(qg->nv + 1));
    r.of_qt = malloc(sizeof(int) * (size_t)(qg->nv + 1));
    if (!r.of_ref || !r.of_qd || !r.of_qt) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    memset(r.of_ref, 0xff, sizeof(int) * (size_t)(rg->nv + 1));
    memset(r.of_qd, 0xff, sizeof(int) * (size_t)(qg->nv + 1));
    memset(r.of_qt, 0xff, sizeof(int) * (size_t)(qg->nv + 1));
    if (find_layers(qg, rg, &r, err) || find_depthwise(qg, rep, err))
        goto out;
    int batch = fixed ? fixed : 1;
    if (qt_exec_new_flags(&qx, qg, batch, threads, QT_EXEC_NOFUSE, err) ||
        qt_exec_new_flags(&rx, rg, batch, threads, QT_EXEC_NOFUSE, err))
        goto out;
    qx->after_node = q_after;
    qx->after_ud = &r;
    rx->after_node = ref_after;
    rx->after_ud = &r;
    if (qt_dataset_open(&ds, o->data, o->classes, err))
        goto out;
    int total = qt_dataset_count(ds);
    if (o->limit > 0 && o->limit < total)
        total = o->limit;
    if (images > 0 && images < total)
        total = images;
    total -= total % batch;
    r.qg = qg;
    r.qx = qx;
    r.rx = rx;
    struct qt_stream s = {.ds = ds, .pp = &pp, .c = c, .h = h, .w = w, .total = total, .batch = batch,
                          .threads = threads, .input = lr_input, .run = lr_batch, .ud = &r};
    if (qt_stream_images(&s, err))
        goto out;
    for (int k = 0; k < rep->nlayers; k++) {
        struct track *tr = &r.tr[k];
        rep->layer[k].sqnr_db = tr->ref_v < 0 ? NAN : tr->noise > 0 ? 10 * log10(tr->sig / tr->noise) : INFINITY;
    }
    if (qt_eval_sensitivity(o, images, rep, err))
        goto out;
out:
    for (int k = 0; r.tr && k < rep->nlayers; k++)
        free(r.tr[k].buf);
    free(r.tr);
    free(r.of_ref);
    free(r.of_qd);
    free(r.of_qt);
    qt_exec_free(qx);
    qt_exec_free(rx);
    qt_graph_free(qg);
    qt_graph_free(rg);
    qt_dataset_free(ds);
    return err->code;
}

void qt_layer_report_free(struct qt_layer_report *rep) {
    for (int i = 0; rep->dw && i < rep->ndw; i++)
        free(rep->dw[i].wmin);
    free(rep->dw);
    free(rep->layer);
    if (rep->sens)
        qt_sens_report_free(rep->sens);
    free(rep->sens);
    memset(rep, 0, sizeof *rep);
}
