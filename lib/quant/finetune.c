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
#include <sys/mman.h>
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

struct cap {
    const char *name; /* value to copy */
    const char *node; /* stop after this node */
    float *dst;
    int64_t per;      /* floats per image */
    int off;          /* images done */
};

static int cap_after(struct qt_exec *x, int node, void *ud, struct qt_err *err) {
    struct cap *c = ud;
    const struct qt_node *n = &x->g->n[node];
    for (int j = 0; j < n->nout; j++) {
        int v = n->out[j];
        if (v >= 0 && !strcmp(x->g->v[v].name, c->name) && qt_tensor_numel(&x->t[v]) == c->per * x->batch)
            memcpy(c->dst + (size_t)c->off * c->per, x->t[v].data, sizeof(float) * (size_t)(c->per * x->batch));
    }
    (void)err;
    return !n->name || strcmp(n->name, c->node) ? 0 : QT_HOOK_STOP;
}

/* A graph input is captured straight from the loaded images. */
static int cap_before(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err) {
    struct cap *cp = ud;
    (void)err;
    cp->off = done;
    if (!strcmp(x->g->v[x->g->inputs[0]].name, cp->name))
        memcpy(cp->dst + (size_t)done * cp->per, qt_exec_input(x, 0), sizeof(float) * (size_t)(cp->per * nb));
    return 0;
}

static int capture(struct qt_graph *g, struct qt_dataset *ds, const struct qt_preproc *pp, int total, int batch,
                   int c, int h, int w, int threads, struct cap *cp, struct qt_err *err) {
    struct qt_image_run run = {.pp = pp, .c = c, .h = h, .w = w, .total = total, .batch = batch,
                               .threads = threads, .exec_flags = QT_EXEC_NOFUSE, .before_run = cap_before,
                               .after_node = cap_after, .ud = cp};
    return qt_run_images(g, ds, &run, err);
}

/* One layer's inputs and targets: in memory, or over max_memory in an
 * unlinked temporary file (TMPDIR, else /tmp) mapped shared, so the kernel
 * can write pages out and read them back instead of holding them all. */
struct held {
    float *p;
    size_t bytes;
    int mapped;
};

static int hold(struct held *h, size_t bytes, int spill, struct qt_err *err) {
    h->bytes = bytes;
    h->mapped = 0;
    if (!spill) {
        h->p = malloc(bytes ? bytes : 1);
        return h->p ? 0 : qt_errf(err, QT_ENOMEM, "out of memory holding a layer's inputs (%zu bytes)", bytes);
    }
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/qtool-finetune-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return qt_errf(err, QT_EIO, "cannot create a temporary file in %s: %s", dir && *dir ? dir : "/tmp",
                       strerror(errno));
    unlink(path);
    int rc = posix_fallocate(fd, 0, (off_t)bytes);
    if (rc) {
        close(fd);
        return qt_errf(err, QT_EIO, "cannot spill %zu bytes of layer inputs to %s: %s", bytes,
                       dir && *dir ? dir : "/tmp", strerror(rc));
    }
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return qt_errf(err, QT_EIO, "cannot map the temporary file: %s", strerror(errno));
    h->p = m;
    h->mapped = 1;
    return 0;
}

static void release_held(struct held *h) {
    if (h->mapped)
        munmap(h->p, h->bytes);
    else
        free(h->p);
    h->p = NULL;
    h->mapped = 0;
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
 * inputs X and targets T (nimg images, in nchunk minibatches of mb). */
struct aq_run {
    struct qt_aq_net *net;
    struct qt_aq_adam *ad;
    const struct qt_aq_layer *L;
    struct qt_aq_params *prm, *grd;
    const float *X, *T;
    int nimg, mb, nchunk;
    int64_t per_x, per_y, nw;
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
    keep_best(a, best);
    int check_every = fo->iters / 4 > 0 ? fo->iters / 4 : 1;
    for (int it = 0; it < fo->iters; it++) {
        if (fo->stop && *fo->stop)
            return qt_errf(err, QT_EFAIL, "interrupted while tuning layer '%s'", a->name);
        int start = qt_aq_pick(seed, a->nimg, a->mb);
        if (qt_aq_net_loss(a->net, a->X + (size_t)start * a->per_x, a->T + (size_t)start * a->per_y, 1, &l, err))
            return err->code;
        a->grd->as = qt_aq_net_as_grad(a->net);
        qt_aq_adam(a->ad, a->L, a->prm, a->grd);
        if (a->learn_as)
            qt_aq_net_set_as(a->net, a->prm->as);
        if ((it + 1) % check_every == 0 || it + 1 == fo->iters) {
            if (qt_aq_net_set_loss(a->net, a->X, a->T, a->nchunk, &l, err))
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

int qt_finetune(struct qt_qplan *p, const struct qt_graph *fref, struct qt_dataset *ds, const struct qt_preproc *pp,
                int total, int batch, int c, int h, int w, int threads, const struct qt_ft_opts *fo,
                struct qt_ft_report *rep, struct qt_err *err) {
    struct qt_exec *x1 = NULL;
    struct qt_aq_net net = {0};
    struct held held = {NULL, 0, 0};
    struct qt_graph *qg = NULL, *fg = NULL; /* fg: the untouched float graph (targets) */
    int *order = NULL, nl = 0, rc = 0;
    float *X = NULL, *T = NULL, *buf = NULL;
    memset(rep, 0, sizeof *rep);
    if (qt_graph_clone(&fg, fref ? fref : p->g, err))
        return err->code;
    if (qt_exec_new_flags(&x1, p->g, 1, 1, QT_EXEC_NOFUSE, err)) {
        qt_graph_free(fg);
        return err->code;
    }
    order = malloc(sizeof(int) * (size_t)(x1->nsteps + 1));
    rep->layer = calloc((size_t)x1->nsteps + 1, sizeof *rep->layer);
    if (!order || !rep->layer) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    if ((nl = tunable_layers(p, x1, order, err)) < 0)
        goto out;
    for (int li = 0; li < nl; li++) {
        int k = order[li];
        struct qt_node *n = &p->g->n[k];
        const struct qt_tensor *xt = &x1->t[n->in[0]];
        struct qt_aq_layer L;
        struct qt_qparam *qw = &p->t[p->tensor_of[n->in[1]]].q, *qa = &p->t[p->tensor_of[n->in[0]]].q;
        if (layer_of(x1, n, qw, qa, &L, err))
            goto out;
        int64_t per_x = (int64_t)L.cin * L.h * L.w, per_y = (int64_t)L.cout * L.oh * L.ow;
        int nimg = total;
        int64_t bytes_per = (int64_t)sizeof(float) * (per_x + per_y);
        release_held(&held);
        if (hold(&held, (size_t)(bytes_per * nimg), fo->max_memory > 0 && (int64_t)nimg * bytes_per > fo->max_memory,
                 err))
            goto out;
        X = held.p;
        T = X + (size_t)per_x * nimg;
        /* inputs: QDQ model (tuned prefix) or float model; targets: float */
        qt_graph_free(qg);
        qg = NULL;
        if (qt_qplan_biases(p, err))
            goto out;
        if (!fo->parallel && qt_qplan_export_qdq(p, &qg, err))
            goto out;
        struct cap cx = {p->g->v[n->in[0]].name, n->name, X, per_x, 0};
        struct cap cy = {p->g->v[n->out[0]].name, n->name, T, per_y, 0};
        if (capture(fo->parallel ? fg : qg, ds, pp, nimg, batch, c, h, w, threads, &cx, err) ||
            capture(fg, ds, pp, nimg, batch, c, h, w, threads, &cy, err))
            goto out;
        /* parameters: a private copy of the layer run by the engine */
        struct qt_tensor *wt = p->g->v[n->in[1]].init;
        struct qt_tensor *bt = n->nin > 2 && n->in[2] >= 0 ? p->g->v[n->in[2]].init : NULL;
        int64_t nw = qt_tensor_numel(wt), np = nw + 2 * (int64_t)L.cout + 1;
        int mb = fo->batch > 0 && fo->batch < nimg ? fo->batch : nimg;
        int nchunk = nimg / mb;
        nimg = nchunk * mb; /* whole minibatches */
        qt_aq_net_free(&net);
        int adaround = fo->method == QT_FT_ADAROUND;
        int learn_as = !adaround && !fo->fixed_act_steps && qa->n == 1 && sole_reader(p, k);
        if (qt_aq_net_new(&net, p->g, k, xt, qa, qw, L.cout, mb, threads,
                          adaround ? QT_AQ_SOFT_W : learn_as ? QT_AQ_LEARN_AS : 0, err))
            goto out;
        free(buf);
        buf = calloc((size_t)(3 * np + 8), sizeof(float));
        if (!buf) {
            qt_errf(err, QT_ENOMEM, "out of memory");
            goto out;
        }
        uint64_t seed = fo->seed * 1000003ULL + (uint64_t)li;
        double before = 0, after = 0;
        if (adaround) {
            struct qt_aq_params prm, grd;
            qt_aq_net_params(&net, &prm, &grd);
            if (qt_ar_tune(&net, wt->data, prm.ws, qw->qmin, qw->qmax, X, T, nimg, fo->iters, fo->lr, seed,
                           fo->stop, n->name, buf, &before, &after, err))
                goto out;
            memcpy(wt->data, buf, sizeof(float) * (size_t)nw);
            qw->method = "adaround";
            p->tuned = 1;
            ft_layer_done(rep, n->name, before, after, nimg, qa->scale[0], qa->scale[0], 0, fo, li, nl);
            continue;
        }
        float *m = buf, *v = m + np, *best = v + np;
        struct qt_aq_params prm, grd;
        qt_aq_net_params(&net, &prm, &grd);
        struct qt_aq_adam ad = {fo->lr, 0, learn_as, qw->n != L.cout, m, v};
        float as0 = prm.as, best_as = prm.as;
        L.n = nimg;
        if (qt_aq_net_set_loss(&net, X, T, nchunk, &before, err))
            goto out;
        struct aq_run ar = {&net, &ad, &L, &prm, &grd, X, T, nimg, mb, nchunk, per_x, per_y, nw, learn_as, n->name};
        after = before;
        if (aq_steps(&ar, fo, &seed, best, &best_as, &after, err))
            goto out;
        write_back(&ar, best, wt, bt, qw, qa, as0, best_as);
        p->tuned = 1;
        ft_layer_done(rep, n->name, before, after, nimg, as0, learn_as ? best_as : as0, learn_as, fo, li, nl);
    }
    rc = qt_qplan_biases(p, err);
    (void)rc;
out:
    qt_aq_net_free(&net);
    qt_exec_free(x1);
    qt_graph_free(qg);
    qt_graph_free(fg);
    free(order);
    release_held(&held);
    free(buf);
    return err->code;
}
