/* finetune.c: AdaQuant after calibration. For every quantized Conv/Gemm, in
 * execution order: hold that layer's inputs (from the QDQ model with the
 * earlier layers already tuned, or from the float model in parallel mode)
 * and its float outputs (pre-activation) for the tuning images, minimise
 * the mean squared error over weights, bias and per-channel weight steps
 * with Adam on minibatches (adaquant.c), keep the best iterate, and write
 * the tuned values back into the plan. The input quantizer's step is learned
 * too when this layer is the only reader of a tensor whose parameters no
 * other tensor shares (a scale group of one); otherwise it stays, since
 * changing it would move the inputs of layers already tuned.
 * Memory: one layer's inputs and targets (in a temporary file when they
 * exceed max_memory); the images are rounded down to whole minibatches.
 * The layer's forward and backward run on the engine (qt_aq_net: FakeQuant
 * and the node's own op, threaded and deterministic at any thread count);
 * the optimiser is serial, so the result does not depend on --threads. */
#include "ops/conv.h"
#include "quant/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* node k is the only reader of its input, and no other tensor shares that
 * input's quantization parameters */
static int sole_reader(const struct qt_qplan *p, int k) {
    int v = p->g->n[k].in[0], t = p->tensor_of[v], readers = 0;
    if (t < 0)
        return 0;
    for (int i = 0; i < p->g->nn; i++)
        for (int j = 0; j < p->g->n[i].nin; j++)
            readers += p->g->n[i].in[j] == v;
    for (int u = 0; u < p->nt; u++)
        if (u != t && p->t[t].group >= 0 && p->t[u].group == p->t[t].group)
            return 0;
    return readers == 1;
}

/* Where a capture goes: memory at dst, or (fd >= 0) the file at pos. With
 * codes set, the values are stored as input codes (one byte each) as the
 * layer's input FakeQuant would round them: code = clamp(round(v / s) + z)
 * - qmin. */
struct cap {
    const char *name; /* value to copy */
    const char *node; /* stop after this node */
    void *dst;
    int fd;
    int64_t pos;
    int64_t per;      /* values per image */
    int off;          /* images done */
    int codes, qmin, qmax;
    float s, z;
    unsigned char *tmp; /* codes of one batch */
    int rc;           /* QT_EIO after a failed write */
};

/* nb images of values v, the images from cp->off on */
static int cap_store(struct cap *cp, const float *v, int nb, struct qt_err *err) {
    size_t n = (size_t)(cp->per * nb), esz = cp->codes ? 1 : sizeof(float);
    const void *src = v;
    if (cp->codes) {
        for (size_t i = 0; i < n; i++) { /* the FakeQuant forward's rounding (fakequant.c) */
            float u = nearbyintf(v[i] / cp->s) + cp->z;
            u = u < cp->qmin ? (float)cp->qmin : u > cp->qmax ? (float)cp->qmax : u;
            cp->tmp[i] = (unsigned char)((int)u - cp->qmin);
        }
        src = cp->tmp;
    }
    size_t at = (size_t)cp->off * (size_t)cp->per * esz;
    if (cp->fd < 0) {
        memcpy((unsigned char *)cp->dst + at, src, n * esz);
        return 0;
    }
    if (qt_write_at(cp->fd, src, n * esz, cp->pos + (int64_t)at))
        return qt_errf(err, QT_EIO, "cannot spill layer inputs to the temporary file: %s", strerror(errno));
    return 0;
}

static int cap_visit(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err) {
    struct cap *cp = ud;
    int v = qt_graph_find(x->g, cp->name);
    if (v < 0 || qt_tensor_numel(&x->t[v]) != cp->per * nb)
        return qt_errf(err, QT_EFAIL, "internal error: value '%s' not captured", cp->name);
    cp->off = done;
    return cap_store(cp, x->t[v].data, nb, err);
}

/* The captured value at step cut of the walk, for every image. */
static int capture_walk(struct qt_walk *wk, int cut, struct cap *cp, struct qt_dataset *ds, const struct qt_preproc *pp,
                        int total, int batch, int c, int h, int w, int threads, struct qt_err *err) {
    if (cut < 0)
        return qt_errf(err, QT_EFAIL, "internal error: no step makes value '%s'", cp->name);
    if (cp->codes && !(cp->tmp = malloc((size_t)(cp->per * batch) + 1)))
        return qt_errf(err, QT_ENOMEM, "out of memory");
    int rc = qt_walk_to(wk, cut, ds, pp, total, batch, c, h, w, threads, cap_visit, cp, err);
    free(cp->tmp);
    cp->tmp = NULL;
    return rc;
}

/* The report entry, log line and progress of a tuned layer. */
static void ft_layer_done(struct qt_ft_report *rep, const char *name, double before, double after, int nimg,
                         float as0, float as1, int learn_as, const struct qt_ft_opts *fo, int li, int nl) {
    struct qt_ft_layer *r = &rep->layer[rep->nlayers++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->before = before;
    r->after = after;
    r->images = nimg;
    r->as_before = as0;
    r->as_after = as1;
    r->learn_as = learn_as;
    if (fo->log) {
        char line[300];
        snprintf(line, sizeof line, "finetune: layer %d/%d %s: loss %.6g -> %.6g (%d images)", li + 1, nl, name,
                 before, after, nimg);
        fo->log(fo->log_ud, line);
    }
    if (fo->progress)
        fo->progress(fo->progress_ud, li + 1, nl);
}

/* Every input but the activation is a graph initializer, so the node can
 * run as a graph of its own (qt_aq_net_new); torch exports parameters of
 * equal value (ViT's attention biases) as Identity of one initializer. */
static int params_are_inits(const struct qt_graph *g, const struct qt_node *n) {
    for (int j = 1; j < n->nin; j++)
        if (n->in[j] >= 0 && g->v[n->in[j]].kind != QT_V_INIT)
            return 0;
    return 1;
}

/* The nodes AdaQuant tunes, in execution order: quantized, named, a
 * convolution on the plan's inputs (struct qt_qfacts.as_conv) whose
 * parameters are initializers. Returns how many, or -1 (err filled). */
static int tunable_layers(const struct qt_qplan *p, const struct qt_exec *x1, int *order, struct qt_err *err) {
    int nl = 0;
    for (int s = 0; s < x1->nsteps; s++) {
        int k = x1->steps[s];
        const struct qt_node *n = &p->g->n[k];
        struct qt_conv_shape cs;
        if (!qt_qf(n)->as_conv || p->qn[k].excluded || n->nin < 2 || !n->name || !n->name[0] ||
            p->tensor_of[n->in[0]] < 0 || p->tensor_of[n->in[1]] < 0 || !params_are_inits(p->g, n))
            continue;
        int rc = qt_qf(n)->as_conv(x1, n, &cs, err);
        if (rc < 0)
            return -1;
        if (rc)
            order[nl++] = k;
    }
    return nl;
}

/* The node as AdaQuant's convolution layer with its quantizers (bottom/right
 * padding beyond top/left reads as zero). */
static int layer_of(const struct qt_exec *x1, const struct qt_node *n, const struct qt_qparam *qw,
                    const struct qt_qparam *qa, struct qt_aq_layer *L, struct qt_err *err) {
    struct qt_conv_shape s;
    if (qt_qf(n)->as_conv(x1, n, &s, err) < 0)
        return err->code;
    *L = (struct qt_aq_layer){0, (int)s.c, (int)s.ih, (int)s.iw, (int)s.m, (int)s.oh, (int)s.ow, (int)s.kh,
                              (int)s.kw, (int)s.group, (int)s.sh, (int)s.sw, (int)s.ph, (int)s.pw,
                              (int)s.dh, (int)s.dw, qw->qmin, qw->qmax, qa->qmin, qa->qmax, qa->zp[0]};
    return 0;
}

/* One layer's AdaQuant: the engine's layer net, its Adam, the captured
 * inputs and targets (nimg images, in nchunk minibatches of mb). */
struct aq_run {
    struct qt_aq_net *net;
    struct qt_aq_adam *ad;
    const struct qt_aq_layer *L;
    struct qt_aq_params *prm, *grd;
    const struct qt_aq_set *set;
    int nimg, mb, nchunk;
    int64_t nw;
    int learn_as;
    const char *name;
};

/* best := the current weights, bias and weight steps */
static void keep_best(const struct aq_run *a, float *best) {
    memcpy(best, a->prm->w, sizeof(float) * (size_t)a->nw);
    if (a->prm->b)
        memcpy(best + a->nw, a->prm->b, sizeof(float) * (size_t)a->L->cout);
    memcpy(best + a->nw + a->L->cout, a->prm->ws, sizeof(float) * (size_t)a->L->cout);
}

/* fo->iters Adam steps on random minibatches; the full-set loss is checked
 * four times and the best iterate kept (best, *best_as, *after; *after
 * starts at the loss before). */
static int aq_steps(const struct aq_run *a, const struct qt_ft_opts *fo, uint64_t *seed, float *best,
                    float *best_as, double *after, struct qt_err *err) {
    double l = 0;
    const float *T;
    keep_best(a, best);
    int check_every = fo->iters / 4 > 0 ? fo->iters / 4 : 1;
    for (int it = 0; it < fo->iters; it++) {
        if (fo->stop && *fo->stop)
            return qt_errf(err, QT_EFAIL, "interrupted while tuning layer '%s'", a->name);
        int start = qt_aq_pick(seed, a->nimg, a->mb);
        if (qt_aq_set_feed(a->net, a->set, start, &T, err) || qt_aq_net_loss(a->net, NULL, T, 1, &l, err))
            return err->code;
        a->grd->as = qt_aq_net_as_grad(a->net);
        qt_aq_adam(a->ad, a->L, a->prm, a->grd);
        if (a->learn_as)
            qt_aq_net_set_as(a->net, a->prm->as);
        if ((it + 1) % check_every == 0 || it + 1 == fo->iters) {
            if (qt_aq_net_set_loss(a->net, a->set, a->nchunk, &l, err))
                return err->code;
            if (l < *after) {
                *after = l;
                keep_best(a, best);
                *best_as = a->prm->as;
            }
        }
    }
    return 0;
}

/* The best iterate into the plan's weight, bias, weight steps (per tensor:
 * the scale is kept) and, when learnt, input step. */
static void write_back(const struct aq_run *a, const float *best, struct qt_tensor *wt, struct qt_tensor *bt,
                       struct qt_qparam *qw, struct qt_qparam *qa, float as0, float best_as) {
    int cout = a->L->cout;
    float *ws = a->prm->ws;
    memcpy(wt->data, best, sizeof(float) * (size_t)a->nw);
    if (bt)
        memcpy(bt->data, best + a->nw, sizeof(float) * (size_t)cout);
    memcpy(ws, best + a->nw + cout, sizeof(float) * (size_t)cout);
    if (qw->n == cout)
        for (int o = 0; o < cout; o++) {
            qw->scale[o] = ws[o];
            qw->rng_min[o] = ws[o] * (float)qw->qmin;
            qw->rng_max[o] = ws[o] * (float)qw->qmax;
        }
    qw->method = "adaquant";
    if (a->learn_as && best_as != as0) {
        qa->scale[0] = best_as;
        qa->rng_min[0] = best_as * (float)(qa->qmin - qa->zp[0]);
        qa->rng_max[0] = best_as * (float)(qa->qmax - qa->zp[0]);
        qa->method = "adaquant";
    }
}

/* What qt_finetune's layers share: its arguments, the executor that orders the layers, the
 * engine's copy of the layer being tuned, the held inputs and targets, the walks that capture
 * them and the scratch buffers. */
struct ft {
    struct qt_qplan *p;
    struct qt_dataset *ds;
    const struct qt_preproc *pp;
    int total, batch, c, h, w, threads, nl;
    const struct qt_ft_opts *fo;
    struct qt_ft_report *rep;
    struct qt_exec *x1;
    struct qt_aq_net net;
    struct qt_held held;
    /* wq: through the QDQ model (sequential mode), wf: the float model */
    struct qt_walk wq, wf;
    struct qt_graph *qg, *fg; /* fg: the untouched float graph (targets) */
    float *buf;
    void *iobuf;
};

/* Holds the inputs of node n (from the QDQ model with the layers tuned so far, or from the float
 * model with --parallel; as their codes when codes) and its float outputs (the targets) for
 * F->total images: inputs at F->held offset 0, targets at xbytes. */
static int capture_layer(struct ft *F, const struct qt_node *n, const struct qt_qparam *qa, int codes,
                         int64_t per_x, int64_t per_y, int64_t xbytes, struct qt_err *err) {
    struct qt_qplan *p = F->p;
    const struct qt_ft_opts *fo = F->fo;
    int nimg = F->total;
    int64_t bytes = xbytes + (int64_t)sizeof(float) * per_y * nimg;
    qt_held_release(&F->held);
    if (qt_held_new(&F->held, (size_t)bytes, fo->max_memory > 0 && bytes > fo->max_memory, err))
        return err->code;
    /* inputs: QDQ model (tuned prefix) or float model; targets: float */
    qt_walk_graph(&F->wq, NULL); /* its executor reads qg */
    qt_graph_free(F->qg);
    F->qg = NULL;
    if (qt_qplan_biases(p, err))
        return err->code;
    if (!fo->parallel && qt_qplan_export_qdq(p, &F->qg, err))
        return err->code;
    struct cap cx = {.name = p->g->v[n->in[0]].name, .node = n->name, .dst = F->held.p, .fd = F->held.fd, .pos = 0,
                     .per = per_x, .codes = codes, .qmin = qa->qmin, .qmax = qa->qmax, .s = qa->scale[0],
                     .z = (float)qa->zp[0]};
    struct cap cy = {.name = p->g->v[n->out[0]].name, .node = n->name,
                     .dst = F->held.p ? (unsigned char *)F->held.p + xbytes : NULL, .fd = F->held.fd, .pos = xbytes,
                     .per = per_y};
    struct qt_walk *wx = fo->parallel ? &F->wf : &F->wq;
    if (!fo->parallel)
        qt_walk_graph(&F->wq, F->qg);
    int cutx = qt_walk_cut_after_value(wx, cx.name, F->threads, err);
    if (cutx == -2 || capture_walk(wx, cutx, &cx, F->ds, F->pp, nimg, F->batch, F->c, F->h, F->w, F->threads, err))
        return err->code;
    int cuty = qt_walk_cut_after_value(&F->wf, cy.name, F->threads, err);
    if (cuty == -2 || capture_walk(&F->wf, cuty, &cy, F->ds, F->pp, nimg, F->batch, F->c, F->h, F->w, F->threads,
                                   err))
        return err->code;
    return 0;
}

/* Tunes layer li of the order, node k: captures its inputs and targets, then fits its weights
 * (AdaRound: their rounding; AdaQuant: weights, bias, weight steps and below 8-bit inputs the
 * input step) on whole minibatches and writes the best back into the plan. */
static int tune_layer(struct ft *F, int li, int k, struct qt_err *err) {
    struct qt_qplan *p = F->p;
    const struct qt_ft_opts *fo = F->fo;
    struct qt_node *n = &p->g->n[k];
    const struct qt_tensor *xt = &F->x1->t[n->in[0]];
    struct qt_aq_layer L;
    struct qt_qparam *qw = &p->t[p->tensor_of[n->in[1]]].q, *qa = &p->t[p->tensor_of[n->in[0]]].q;
    if (layer_of(F->x1, n, qw, qa, &L, err))
        return err->code;
    int64_t per_x = (int64_t)L.cin * L.h * L.w, per_y = (int64_t)L.cout * L.oh * L.ow;
    int adaround = fo->method == QT_FT_ADAROUND;
    /* the input step is learnt below 8-bit inputs only (at 8 bits it
     * did not change the result, man qtool-finetune); a fixed one lets
     * the inputs be held as their codes, quantized once */
    int learn_as = !adaround && !fo->fixed_act_steps && qa->n == 1 && qa->qmax - qa->qmin < 255 &&
                   sole_reader(p, k);
    int codes = !learn_as && qa->n == 1 && qa->qmax - qa->qmin <= 255;
    int nimg = F->total;
    int64_t xsz = codes ? 1 : (int64_t)sizeof(float);
    int64_t xbytes = (per_x * nimg * xsz + 63) / 64 * 64;
    if (capture_layer(F, n, qa, codes, per_x, per_y, xbytes, err))
        return err->code;
    /* parameters: a private copy of the layer run by the engine */
    struct qt_tensor *wt = p->g->v[n->in[1]].init;
    struct qt_tensor *bt = n->nin > 2 && n->in[2] >= 0 ? p->g->v[n->in[2]].init : NULL;
    int64_t nw = qt_tensor_numel(wt), np = nw + 2 * (int64_t)L.cout + 1;
    int mb = fo->batch > 0 && fo->batch < nimg ? fo->batch : nimg;
    int nchunk = nimg / mb;
    nimg = nchunk * mb; /* whole minibatches */
    qt_aq_net_free(&F->net);
    if (qt_aq_net_new(&F->net, p->g, k, xt, qa, qw, L.cout, mb, F->threads,
                      (adaround ? QT_AQ_SOFT_W : learn_as ? QT_AQ_LEARN_AS : 0) | (codes ? QT_AQ_QIN : 0), err))
        return err->code;
    free(F->buf);
    free(F->iobuf);
    struct qt_held *held = &F->held;
    F->buf = calloc((size_t)(3 * np + 8), sizeof(float));
    F->iobuf = held->fd >= 0 ? malloc((size_t)(mb * (per_y * (int64_t)sizeof(float) + per_x * xsz))) : NULL;
    if (!F->buf || (held->fd >= 0 && !F->iobuf))
        return qt_errf(err, QT_ENOMEM, "out of memory");
    struct qt_aq_set set = {nimg, per_x, per_y, codes || !held->p ? NULL : (const float *)held->p,
                            held->p ? (const float *)((unsigned char *)held->p + xbytes) : NULL,
                            codes && held->p ? (const unsigned char *)held->p : NULL, codes, qa->scale[0],
                            qa->qmin - qa->zp[0], held->fd, 0, xbytes, F->iobuf};
    uint64_t seed = fo->seed * 1000003ULL + (uint64_t)li;
    double before = 0, after = 0;
    if (adaround) {
        struct qt_aq_params prm, grd;
        qt_aq_net_params(&F->net, &prm, &grd);
        if (qt_ar_tune(&F->net, wt->data, prm.ws, qw->qmin, qw->qmax, &set, fo->iters, fo->lr, seed,
                       fo->stop, n->name, F->buf, &before, &after, err))
            return err->code;
        memcpy(wt->data, F->buf, sizeof(float) * (size_t)nw);
        qw->method = "adaround";
        p->tuned = 1;
        ft_layer_done(F->rep, n->name, before, after, nimg, qa->scale[0], qa->scale[0], 0, fo, li, F->nl);
        return 0;
    }
    float *m = F->buf, *v = m + np, *best = v + np;
    struct qt_aq_params prm, grd;
    qt_aq_net_params(&F->net, &prm, &grd);
    struct qt_aq_adam ad = {fo->lr, 0, learn_as, qw->n != L.cout, m, v};
    float as0 = prm.as, best_as = prm.as;
    L.n = nimg;
    if (qt_aq_net_set_loss(&F->net, &set, nchunk, &before, err))
        return err->code;
    struct aq_run ar = {&F->net, &ad, &L, &prm, &grd, &set, nimg, mb, nchunk, nw, learn_as, n->name};
    after = before;
    if (aq_steps(&ar, fo, &seed, best, &best_as, &after, err))
        return err->code;
    write_back(&ar, best, wt, bt, qw, qa, as0, best_as);
    p->tuned = 1;
    ft_layer_done(F->rep, n->name, before, after, nimg, as0, learn_as ? best_as : as0, learn_as, fo, li, F->nl);
    return 0;
}

int qt_finetune(struct qt_qplan *p, const struct qt_graph *fref, struct qt_dataset *ds, const struct qt_preproc *pp,
                int total, int batch, int c, int h, int w, int threads, const struct qt_ft_opts *fo,
                struct qt_ft_report *rep, struct qt_err *err) {
    struct ft F = {.p = p, .ds = ds, .pp = pp, .total = total, .batch = batch, .c = c, .h = h, .w = w,
                   .threads = threads, .fo = fo, .rep = rep, .held = {NULL, 0, -1},
                   .wq = {.st = {NULL, 0, -1}, .max_memory = fo->max_memory / 4},
                   .wf = {.st = {NULL, 0, -1}, .max_memory = fo->max_memory / 4}};
    int *order = NULL, rc = 0;
    memset(rep, 0, sizeof *rep);
    if (qt_graph_clone(&F.fg, fref ? fref : p->g, err))
        return err->code;
    F.wf.g = F.fg;
    if (qt_exec_new_flags(&F.x1, p->g, 1, 1, QT_EXEC_NOFUSE, err)) {
        qt_graph_free(F.fg);
        return err->code;
    }
    order = malloc(sizeof(int) * (size_t)(F.x1->nsteps + 1));
    rep->layer = calloc((size_t)F.x1->nsteps + 1, sizeof *rep->layer);
    if (!order || !rep->layer) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    if ((F.nl = tunable_layers(p, F.x1, order, err)) < 0)
        goto out;
    for (int li = 0; li < F.nl; li++)
        if (tune_layer(&F, li, order[li], err))
            goto out;
    rc = qt_qplan_biases(p, err);
    (void)rc;
out:
    qt_aq_net_free(&F.net);
    qt_exec_free(F.x1);
    qt_walk_free(&F.wq);
    qt_walk_free(&F.wf);
    qt_graph_free(F.qg);
    qt_graph_free(F.fg);
    free(order);
    qt_held_release(&F.held);
    free(F.buf);
    free(F.iobuf);
    return err->code;
}
