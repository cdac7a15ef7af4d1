/* calib.c: qtool calib: prepare the graph, stream calibration images
 * through it with an observer on every quantized activation, choose ranges,
 * quantize weights and biases, write the QDQ model and quant_info.json.
 * Memory: one batch of images, the planned activations and one fixed-size
 * observer per activation group, whatever the number of images. */
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void qt_calib_opts_init(struct qt_calib_opts *o) {
    memset(o, 0, sizeof *o);
    qt_preproc_default(&o->pp);
    qt_quant_opts_init(&o->q);
    o->batch = 32;
    o->ft.iters = 300;
    o->ft.lr = 3e-3;
    o->ft.batch = 8;
    o->ft.max_memory = (int64_t)384 << 20;
    qt_fallback_opts_init(&o->fb);
}

struct calib_ctx {
    struct qt_qplan *p;
    struct qt_observer *obs; /* per group */
    /* per thread: partial statistics and histograms of one tensor */
    struct qt_obs_stats *stats;
    double *hist, *zeros;
};

/* Observers run over the threads in fixed chunks: min/max and whole-number
 * histogram counts do not depend on how the chunks fall on threads. */
#define OBS_CHUNK 16384

struct obs_job {
    struct calib_ctx *c;
    const struct qt_observer *o;
    const float *v;
    int64_t n, ntasks;
};

static void scan_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct obs_job *j = arg;
    int64_t a = t0 * OBS_CHUNK, b = t1 * OBS_CHUNK < j->n ? t1 * OBS_CHUNK : j->n;
    qt_obs_scan(j->v + a, b - a, &j->c->stats[tid]);
}

static void bin_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct obs_job *j = arg;
    int64_t a = t0 * OBS_CHUNK, b = t1 * OBS_CHUNK < j->n ? t1 * OBS_CHUNK : j->n;
    qt_obs_bin(j->o, j->v + a, b - a, j->c->hist + (size_t)tid * QT_HIST_BINS, &j->c->zeros[tid]);
}

static int observe_value(struct calib_ctx *c, struct qt_exec *x, int v) {
    int t = c->p->tensor_of[v];
    if (t < 0 || c->p->t[t].q.role != QT_ROLE_ACT)
        return 0;
    const struct qt_tensor *tt = &x->t[v];
    if (tt->dtype != QT_FLOAT)
        return 0;
    struct qt_observer *o = &c->obs[c->p->t[t].group];
    int64_t cnt = qt_tensor_numel(tt);
    struct obs_job j = {c, o, tt->data, cnt, (cnt + OBS_CHUNK - 1) / OBS_CHUNK};
    for (int i = 0; i < x->nthreads; i++)
        qt_obs_stats_init(&c->stats[i]);
    qt_parallel_for(x, j.ntasks, scan_task, &j);
    for (int i = 1; i < x->nthreads; i++)
        qt_obs_stats_merge(&c->stats[0], &c->stats[i]);
    if (!qt_obs_begin(o, &c->stats[0]))
        return 0;
    memset(c->hist, 0, sizeof(double) * QT_HIST_BINS * (size_t)x->nthreads);
    memset(c->zeros, 0, sizeof(double) * (size_t)x->nthreads);
    qt_parallel_for(x, j.ntasks, bin_task, &j);
    for (int i = 0; i < x->nthreads; i++) {
        const double *h = c->hist + (size_t)i * QT_HIST_BINS;
        for (int k = 0; k < QT_HIST_BINS; k++)
            o->hist[k] += h[k];
        o->zeros += c->zeros[i];
    }
    return 0;
}

/* The executor lets a Conv apply the Relu/Clip that follows it; the Conv's
 * output then holds activated values. Fine unless that output is observed
 * (--no-fuse, a Clip that is not fused, exclusions): then keep them apart. */
static int conv_out_observed(const struct qt_qplan *p) {
    for (int i = 0; i < p->g->nn; i++) {
        const struct qt_node *n = &p->g->n[i];
        int c;
        if (!n->op || !(n->op->flags & QT_OPF_POST_ACT) || n->nout < 1 || n->out[0] < 0 || p->tensor_of[n->out[0]] < 0 ||
            qt_graph_consumers(p->g, n->out[0], &c, 1) != 1)
            continue;
        if (qt_qf(&p->g->n[c])->act)
            return 1;
    }
    return 0;
}

static int after_node(struct qt_exec *x, int node, void *ud, struct qt_err *err) {
    struct calib_ctx *c = ud;
    const struct qt_node *n = &x->g->n[node];
    (void)err;
    for (int j = 0; j < n->nout; j++)
        if (n->out[j] >= 0)
            observe_value(c, x, n->out[j]);
    return 0;
}

/* A batch is loaded: per-thread statistics once the thread count is known,
 * then the graph inputs observed. */
static int calib_before(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err) {
    struct calib_ctx *c = ud;
    (void)done;
    (void)nb;
    if (!c->stats) {
        c->stats = calloc((size_t)x->nthreads, sizeof *c->stats);
        c->hist = calloc((size_t)x->nthreads * QT_HIST_BINS, sizeof(double));
        c->zeros = calloc((size_t)x->nthreads, sizeof(double));
        if (!c->stats || !c->hist || !c->zeros)
            return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    for (int i = 0; i < c->p->g->ninputs; i++)
        observe_value(c, x, c->p->g->inputs[i]);
    return 0;
}

/* Sets activation tensor qt's parameters for the range [lo, hi]; omin and
 * omax are the observed extremes, method the observer's name. */
static int act_set(struct qt_qplan *p, struct qt_qtensor *qt, const char *method, float omin, float omax, double lo,
                   double hi, struct qt_err *err) {
    struct qt_qparam *q = &qt->q;
    int bits = q->bits;
    qt_qparam_release(q);
    q->role = QT_ROLE_ACT;
    q->bits = bits;
    if (qt_qparam_alloc(q, 1, err))
        return err->code;
    q->dtype = p->o.act_signed ? QT_INT8 : QT_UINT8;
    q->symmetric = p->o.act_signed;
    q->axis = -1;
    q->method = method;
    qt_qrange(q->dtype, bits, 0, &q->qmin, &q->qmax);
    q->obs_min[0] = omin;
    q->obs_max[0] = omax;
    q->rng_min[0] = (float)lo;
    q->rng_max[0] = (float)hi;
    qt_qparams_from_range(lo, hi, q->qmin, q->qmax, q->symmetric, &q->scale[0], &q->zp[0]);
    return 0;
}

/* The bounds every value of group gi lies in (a Softmax or GELU output, or
 * what shares its parameters): [*lo, *hi], infinite when unknown. Returns
 * 1 when the group's range is fixed to them (Softmax). */
static int group_bounds(const struct qt_qplan *p, int gi, double *lo, double *hi) {
    int fixed = 0;
    *lo = -INFINITY;
    *hi = INFINITY;
    for (int t = 0; t < p->nt; t++)
        if (p->t[t].q.role == QT_ROLE_ACT && p->t[t].group == gi && p->t[t].bounded) {
            *lo = fmax(*lo, p->t[t].lo);
            *hi = fmin(*hi, p->t[t].hi);
            fixed |= p->t[t].bounded == 2;
        }
    return fixed;
}

/* Activation parameters from the group observers; a bounded group's range
 * is clamped to its bounds (still containing 0). */
static int act_params(struct qt_qplan *p, struct qt_observer *obs, struct qt_err *err) {
    for (int t = 0; t < p->nt; t++) {
        if (p->t[t].q.role != QT_ROLE_ACT)
            continue;
        const struct qt_observer *o = &obs[p->t[t].group];
        double lo, hi, blo, bhi;
        qt_obs_range(o, p->t[t].q.bits, p->o.act_signed, qt_act_percentile(&p->o, p->t[t].q.bits), &lo, &hi);
        int fixed = group_bounds(p, p->t[t].group, &blo, &bhi);
        if (fixed && blo <= 0 && bhi > 0 && !p->o.act_signed) {
            lo = blo;
            hi = bhi;
        } else if (blo <= 0 && bhi >= 0 && blo <= bhi && !p->o.act_signed) {
            lo = fmax(lo, blo);
            hi = fmin(hi, bhi);
        } else if (blo <= 0 && bhi >= 0 && blo <= bhi) { /* symmetric: [-t, t] */
            double m = fmax(fabs(blo), fabs(bhi));
            lo = fmax(lo, -m);
            hi = fmin(hi, m);
        }
        if (act_set(p, &p->t[t], qt_obs_name(o->kind), o->count ? (float)o->min : 0, o->count ? (float)o->max : 0,
                    lo, hi, err))
            return err->code;
    }
    return 0;
}

int qt_qplan_act_fixed(struct qt_qplan *p, double lo, double hi, struct qt_err *err) {
    for (int t = 0; t < p->nt; t++)
        if (p->t[t].q.role == QT_ROLE_ACT && act_set(p, &p->t[t], "minmax", (float)lo, (float)hi, lo, hi, err))
            return err->code;
    return 0;
}

/* Releases the n group observers obs (may be NULL). */
static void obs_free(struct qt_observer *obs, int n) {
    for (int i = 0; obs && i < n; i++)
        qt_obs_release(&obs[i]);
    free(obs);
}

/* qt_calib_observe, and *keep (when not NULL): the group observers (the caller releases them with
 * obs_free), to set the activations' parameters again at another percentile. */
static int observe(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w,
                   int limit, int batch, int fixed, int threads, int *images, void (*progress)(void *, int, int),
                   void *progress_ud, struct qt_observer **keep, struct qt_err *err) {
    struct qt_observer *obs = NULL;
    struct calib_ctx ctx = {NULL, NULL, NULL, NULL, NULL};
    int ngroups = p->ngroups, total = qt_dataset_count(ds);
    *images = 0;
    obs = calloc((size_t)ngroups + 1, sizeof *obs);
    if (!obs) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    for (int gi = 0; gi < ngroups; gi++) {
        int kind = p->o.observer;
        for (int t = 0; t < p->nt; t++)
            if (p->t[t].q.role == QT_ROLE_ACT && p->t[t].group == gi) {
                kind = p->t[t].obs_kind;
                break;
            }
        if (qt_obs_init(&obs[gi], kind, err))
            goto out;
    }
    if (limit > 0 && limit < total)
        total = limit;
    batch = fixed ? fixed : (batch > 0 ? batch : 32);
    if (!fixed && batch > total)
        batch = total;
    if (fixed && total % fixed) {
        qt_errf(err, QT_EUSAGE, "the model has a fixed batch of %d; use --limit a multiple of it", fixed);
        goto out;
    }
    ctx.p = p;
    ctx.obs = obs;
    threads = threads > 0 ? threads : qt_ncpus();
    {
        struct qt_image_run run = {.pp = pp, .c = c, .h = h, .w = w, .total = total, .batch = batch,
                                   .threads = threads,
                                   .exec_flags = conv_out_observed(p) ? QT_EXEC_NOFUSE : 0,
                                   .before_run = calib_before, .after_node = after_node, .ud = &ctx,
                                   .progress = progress, .progress_ud = progress_ud};
        if (qt_run_images(p->g, ds, &run, err))
            goto out;
    }
    *images = total;
    act_params(p, obs, err);
out:
    if (keep && !err->code) {
        *keep = obs;
        obs = NULL;
    }
    obs_free(obs, ngroups);
    free(ctx.stats);
    free(ctx.hist);
    free(ctx.zeros);
    return err->code;
}

int qt_calib_observe(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w,
                     int limit, int batch, int fixed, int threads, int *images,
                     void (*progress)(void *, int, int), void *progress_ud, struct qt_err *err) {
    return observe(p, ds, pp, c, h, w, limit, batch, fixed, threads, images, progress, progress_ud, NULL, err);
}

/* Whether a weight of p is below 8 bits. */
static int low_bits(const struct qt_qplan *p) {
    for (int t = 0; t < p->nt; t++)
        if (p->t[t].q.role == QT_ROLE_WEIGHT && p->t[t].q.bits < 8)
            return 1;
    return 0;
}

/* The weight steps, calibrated plan p's weights and biases again with
 * rule mse (qt_weight_step's clip). */
static int weight_steps(struct qt_qplan *p, int mse, struct qt_err *err) {
    p->o.weight_mse = mse;
    if (qt_qplan_weights(p, err))
        return err->code;
    qt_qplan_pow2(p);
    return qt_qplan_biases(p, err);
}

/* What calib_plan's corrections need: the calibration images and how the
 * passes run. */
struct corr_ctx {
    struct qt_dataset *ds;
    const struct qt_preproc *pp;
    int total, batch, c, h, w, threads;
    int bias_correction, bnre; /* the corrections asked for */
};

/* Bias correction or BN re-estimation (as x asks) of the calibrated plan p:
 * its float weights and biases edited, the weight steps rescaled. */
static int correct(struct qt_qplan *p, const struct corr_ctx *x, struct qt_calib_result *r, struct qt_err *err) {
    struct qt_bc_report bc;
    if (!x->bias_correction && !x->bnre)
        return 0;
    if (qt_bias_correct(p, x->ds, x->pp, x->total, x->batch, x->c, x->h, x->w, x->threads, x->bnre, &bc, err))
        return err->code;
    r->bc_layers = p->bc_layers = bc.layers;
    p->bias = x->bnre ? QT_BIAS_BNRE : QT_BIAS_CORRECT;
    return 0;
}

/* The weight steps of a plan (per weight tensor: each channel's step and
 * range ends, and the method), kept to be put back. */
struct wsteps {
    float *v;
    const char **method;
};

static int wsteps_save(const struct qt_qplan *p, struct wsteps *ws, struct qt_err *err) {
    size_t nv = 0, k = 0;
    for (int t = 0; t < p->nt; t++)
        nv += p->t[t].q.role == QT_ROLE_WEIGHT ? 3 * (size_t)p->t[t].q.n : 0;
    ws->v = malloc(sizeof(float) * (nv + 1));
    ws->method = malloc(sizeof(char *) * ((size_t)p->nt + 1));
    if (!ws->v || !ws->method)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int t = 0; t < p->nt; t++) {
        const struct qt_qparam *q = &p->t[t].q;
        if (q->role != QT_ROLE_WEIGHT)
            continue;
        memcpy(ws->v + k, q->scale, sizeof(float) * (size_t)q->n);
        memcpy(ws->v + k + q->n, q->rng_min, sizeof(float) * (size_t)q->n);
        memcpy(ws->v + k + 2 * (size_t)q->n, q->rng_max, sizeof(float) * (size_t)q->n);
        ws->method[t] = q->method;
        k += 3 * (size_t)q->n;
    }
    return 0;
}

/* Puts back what wsteps_save kept (into the same layout: the plan's weights
 * quantized again since, by the same tensors and channels). */
static void wsteps_load(struct qt_qplan *p, const struct wsteps *ws) {
    size_t k = 0;
    for (int t = 0; t < p->nt; t++) {
        struct qt_qparam *q = &p->t[t].q;
        if (q->role != QT_ROLE_WEIGHT)
            continue;
        memcpy(q->scale, ws->v + k, sizeof(float) * (size_t)q->n);
        memcpy(q->rng_min, ws->v + k + q->n, sizeof(float) * (size_t)q->n);
        memcpy(q->rng_max, ws->v + k + 2 * (size_t)q->n, sizeof(float) * (size_t)q->n);
        q->method = ws->method[t];
        k += 3 * (size_t)q->n;
    }
}

/* --weight-observer auto when a weight is below 8 bits: the calibrated plan
 * p with clipped weight steps and with max |w| ones, each corrected as x
 * asks (from g0, p's float graph before the corrections, again) and
 * measured by its output SQNR against g0 on the first (up to 32)
 * calibration images; the higher kept (a tie keeps max |w|), as
 * --weight-observer would have made it: the clipped plan's corrected graph
 * and steps are kept aside while the other is measured. Neither rule wins
 * on every model: clipped steps lift MobileNetV1 at 4 bits and lower
 * MobileNetV2 (man/qtool-calib.1). */
static int choose_weight_steps(struct qt_qplan *p, const struct qt_graph *g0, const struct corr_ctx *x,
                               struct qt_calib_result *r, struct qt_err *err) {
    struct qt_evalset es = {0};
    struct qt_figures f[2];
    struct qt_graph *g1 = NULL;
    struct wsteps ws = {NULL, NULL};
    if (qt_evalset_load(&es, x->ds, x->pp, x->c, x->h, x->w, x->total < 32 ? x->total : 32, x->threads, err) ||
        weight_steps(p, 1, err) || correct(p, x, r, err))
        goto out;
    int measured = !qt_qplan_figures(p, g0, &es, x->threads, &f[1], NULL, err);
    if (!measured) { /* the simulator cannot run this model: max |w| steps, unmeasured */
        if (err->code != QT_EUNSUPPORTED)
            goto out;
        qt_qplan_logf(p, "weight steps: max |w| (not chosen: %s)", err->msg);
        *err = (struct qt_err){0};
    }
    if ((measured && wsteps_save(p, &ws, err)) || qt_graph_clone(&g1, g0, err))
        goto out;
    struct qt_graph *t = p->g; /* the clipped plan's graph aside, g0's copy in */
    p->g = g1;
    g1 = t;
    if (weight_steps(p, 0, err) || correct(p, x, r, err) || !measured ||
        qt_qplan_figures(p, g0, &es, x->threads, &f[0], NULL, err))
        goto out;
    p->wchoice.images = es.n;
    p->wchoice.sqnr_db[0] = f[0].sqnr_db;
    p->wchoice.sqnr_db[1] = f[1].sqnr_db;
    if (f[1].sqnr_db > f[0].sqnr_db) { /* the clipped plan back */
        t = p->g;
        p->g = g1;
        g1 = t;
        p->o.weight_mse = 1;
        wsteps_load(p, &ws);
        if (qt_qplan_biases(p, err))
            goto out;
    }
    qt_qplan_logf(p, "weight steps: %s (output SQNR %.2f dB clipped, %.2f dB max |w|, on %d calibration images)",
                  p->o.weight_mse ? "clipped for the least squared error" : "max |w|", f[1].sqnr_db, f[0].sqnr_db,
                  es.n);
out:
    qt_graph_free(g1);
    free(ws.v);
    free(ws.method);
    qt_evalset_release(&es);
    return err->code;
}

/* p's activation parameters from the observers obs at p's percentiles, and the biases quantized
 * with them. */
static int acts_from(struct qt_qplan *p, struct qt_observer *obs, struct qt_err *err) {
    if (act_params(p, obs, err))
        return err->code;
    qt_qplan_pow2(p);
    return qt_qplan_biases(p, err);
}

/* The default percentile of 8-bit activations when every weight is 8 bits: the calibrated plan p's
 * activations set from the observers obs at 99.999 and at 99.99, each measured by its output SQNR
 * against p's float graph on the first (up to 32) calibration images, the higher kept (a tie keeps
 * 99.999) in p->o.percentile8. Neither wins on every model: 99.999 on the MobileNets and SqueezeNet,
 * 99.99 on vit_b_32 (man/qtool-calib.1). */
static int choose_percentile(struct qt_qplan *p, struct qt_observer *obs, const struct corr_ctx *x,
                             struct qt_err *err) {
    static const double pct[2] = {99.999, 99.99};
    struct qt_evalset es = {0};
    struct qt_figures f[2];
    int measured = 1;
    if (qt_evalset_load(&es, x->ds, x->pp, x->c, x->h, x->w, x->total < 32 ? x->total : 32, x->threads, err))
        goto out;
    for (int k = 0; k < 2 && measured; k++) {
        p->o.percentile8 = pct[k];
        if (acts_from(p, obs, err))
            goto out;
        if (qt_qplan_figures(p, NULL, &es, x->threads, &f[k], NULL, err)) {
            if (err->code != QT_EUNSUPPORTED) /* the simulator cannot run this model: 99.999, unmeasured */
                goto out;
            qt_qplan_logf(p, "percentile: 99.999 (not chosen: %s)", err->msg);
            *err = (struct qt_err){0};
            measured = 0;
        }
    }
    p->o.percentile8 = measured && f[1].sqnr_db > f[0].sqnr_db ? pct[1] : pct[0];
    if (measured) {
        p->pchoice.images = es.n;
        p->pchoice.sqnr_db[0] = f[0].sqnr_db;
        p->pchoice.sqnr_db[1] = f[1].sqnr_db;
        qt_qplan_logf(p, "percentile of 8-bit activations: %g (output SQNR %.2f dB at 99.999, %.2f dB at 99.99, on %d "
                      "calibration images)", p->o.percentile8, f[0].sqnr_db, f[1].sqnr_db, es.n);
    }
    acts_from(p, obs, err);
out:
    qt_evalset_release(&es);
    return err->code;
}

/* Whether p has an activation of 8 bits. */
static int act8(const struct qt_qplan *p) {
    for (int t = 0; t < p->nt; t++)
        if (p->t[t].q.role == QT_ROLE_ACT && p->t[t].q.bits >= 8)
            return 1;
    return 0;
}

/* The plan for g quantized as q says, calibrated on the first images of
 * ds with the corrections and the tuning o asks for. *ref (when ref is not
 * NULL): a copy of the prepared float graph before any of them. */
static int calib_plan(const struct qt_calib_opts *o, const struct qt_quant_opts *q, const struct qt_graph *g,
                      struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w, int fixed,
                      struct qt_qplan **out, struct qt_graph **ref, struct qt_calib_result *r, struct qt_err *err) {
    struct qt_qplan *p = NULL;
    struct qt_graph *fref = NULL;
    struct qt_observer *obs = NULL;
    int total = 0, batch, threads = o->threads > 0 ? o->threads : qt_ncpus(), bnre = o->bn_reestimate;
    *out = NULL;
    if (qt_qplan_build(&p, g, q, o->log, o->log_ud, err))
        goto out;
    r->nfolded_bn = p->nfolded;
    r->nfused_act = p->nfused;
    r->nexcluded = p->nexcluded;
    r->nquant_act = r->nquant_weight = 0;
    for (int t = 0; t < p->nt; t++) {
        r->nquant_act += p->t[t].q.role == QT_ROLE_ACT;
        r->nquant_weight += p->t[t].q.role == QT_ROLE_WEIGHT;
    }
    if (qt_qplan_weights(p, err))
        goto out;
    if (o->dry_run) {
        *out = p;
        return 0;
    }
    if (q->weight_budget.kind || q->act_budget.kind) { /* widths within the budgets, then the plan again */
        double tm = qt_now();
        if (qt_mixed_replan(&p, g, q, ds, pp, c, h, w, threads, err))
            goto out;
        p->log = o->log;
        p->log_ud = o->log_ud;
        r->mixed_s = qt_now() - tm;
    }
    if (bnre < 0) /* automatic: when a chosen width is below 8 bits */
        bnre = low_bits(p);
    if (qt_cle_wanted(&p->o)) { /* before the weights are quantized and the ranges observed */
        int n = qt_dataset_count(ds), tot = o->limit > 0 && o->limit < n ? o->limit : n;
        int b = fixed ? fixed : (o->batch > 0 ? o->batch : 32);
        struct qt_cle_report cr;
        if (!fixed || tot % fixed == 0) {
            if (qt_cle(p, ds, pp, tot, b < tot || fixed ? b : tot, c, h, w, o->threads > 0 ? o->threads : qt_ncpus(),
                       &cr, err) ||
                qt_qplan_weights(p, err))
                goto out;
            r->cle_pairs = cr.pairs;
            r->cle_absorbed = cr.absorbed;
        }
    }
    /* the simulator's float reference: after CLE (which keeps the float
     * function), before the corrections and the tuning */
    if (ref && !*ref && qt_graph_clone(ref, p->g, err))
        goto out;
    int choose_pct = p->o.percentile <= 0 && p->o.percentile8 <= 0 && p->o.observer == QT_OBS_PERCENTILE &&
                     !qt_cle_wanted(&p->o) && !low_bits(p) && act8(p);
    if (observe(p, ds, pp, c, h, w, o->limit, o->batch, fixed, o->threads, &total, o->progress, o->progress_ud,
                choose_pct ? &obs : NULL, err))
        goto out;
    r->images = total;
    batch = fixed ? fixed : (o->batch > 0 ? o->batch : 32);
    if (!fixed && batch > total)
        batch = total;
    qt_qplan_pow2(p);
    if (qt_qplan_biases(p, err))
        goto out;
    struct corr_ctx x = {ds, pp, total, batch, c, h, w, threads, o->bias_correction, bnre};
    if (choose_pct && choose_percentile(p, obs, &x, err))
        goto out;
    obs_free(obs, p->ngroups);
    obs = NULL;
    int choose = p->o.weight_mse < 0 && low_bits(p);
    /* the corrections edit p->g's weights and biases: finetune's float
     * targets, and the choice's, come from the prepared graph before them */
    if ((choose || (o->finetune && (o->bias_correction || bnre))) && qt_graph_clone(&fref, p->g, err))
        goto out;
    if (choose ? choose_weight_steps(p, fref, &x, r, err) : correct(p, &x, r, err))
        goto out;
    free(r->ft.layer);
    memset(&r->ft, 0, sizeof r->ft);
    if (o->finetune && qt_finetune(p, fref, ds, pp, total, batch, c, h, w, threads, &o->ft, &r->ft, err))
        goto out;
    if (o->finetune)
        qt_mixed_clamp(p); /* per-channel widths: the tuned weights back within each channel's grid */
    if (o->finetune && p->o.pow2_scales) { /* the learnt weight steps back on powers of two */
        qt_qplan_pow2(p);
        if (qt_qplan_biases(p, err))
            goto out;
    }
    *out = p;
    p = NULL;
out:
    obs_free(obs, p ? p->ngroups : 0);
    qt_graph_free(fref);
    qt_qplan_free(p);
    return err->code;
}

struct rebuild_ctx {
    const struct qt_calib_opts *o;
    const struct qt_graph *g;
    struct qt_dataset *ds;
    const struct qt_preproc *pp;
    int c, h, w, fixed;
    struct qt_calib_result *r;
};

/* The search's calibration: settings q, corrections c (cli's options
 * --bias-correction, --bn-reestimate, --observer and --cle as they say). */
static int rebuild(void *ud, const struct qt_quant_opts *q, const struct qt_corr *c, struct qt_qplan **out,
                   struct qt_err *err) {
    struct rebuild_ctx *b = ud;
    struct qt_calib_opts o = *b->o;
    struct qt_quant_opts qc = *q;
    o.bias_correction = c->bias == QT_BIAS_CORRECT;
    o.bn_reestimate = c->bias == QT_BIAS_BNRE;
    qc.observer = c->observer;
    qc.cle = c->cle;
    return calib_plan(&o, &qc, b->g, b->ds, b->pp, b->c, b->h, b->w, b->fixed, out, NULL, b->r, err);
}

void qt_calib_result_free(struct qt_calib_result *r) {
    free(r->ft.layer);
    r->ft.layer = NULL;
    qt_sens_report_free(&r->sens);
    free(r->fb.layer);
    r->fb.layer = NULL;
}

int qt_calib_run(const struct qt_calib_opts *o, struct qt_calib_result *r, struct qt_err *err) {
    struct qt_graph *g = NULL, *qg = NULL, *ref = NULL;
    struct qt_qplan *p = NULL;
    struct qt_dataset *ds = NULL, *eds = NULL;
    struct qt_preproc pp = o->pp;
    struct qt_evalset es = {0};
    struct qt_quant_opts qs;
    int c, h, w, fixed, search = o->fb.max_drop >= 0, sens = o->fb.sensitivity;
    double t0 = qt_now();
    memset(r, 0, sizeof *r);

    if (!o->dry_run && qt_qplan_outputs_check(o->out, o->quant_info,
                                              o->finetune || o->bias_correction || o->bn_reestimate ||
                                                  qt_cle_wanted(&o->q) || (o->fb.max_drop >= 0 && o->try_corr),
                                              err))
        return err->code;
    if (qt_graph_load(&g, o->model, err) || qt_graph_check_weights(g, err) ||
        qt_model_image_shape(g, &pp, &c, &h, &w, &fixed, err))
        goto out;
    if (!o->channels_set)
        pp.channels = c;
    if (o->dry_run) {
        if (calib_plan(o, &o->q, g, NULL, &pp, c, h, w, fixed, &p, NULL, r, err))
            goto out;
        goto out;
    }
    if (qt_dataset_open(&ds, o->data, o->classes, err))
        goto out;
    /* the search's images: never the ones calibration or tuning see */
    if (search && !o->fb.eval_data) {
        if (qt_dataset_count(ds) < 2) {
            qt_errf(err, QT_EUSAGE, "--max-drop needs evaluation images: '%s' has %d image%s, too few to hold "
                    "some back; give --eval-data DIR", o->data, qt_dataset_count(ds),
                    qt_dataset_count(ds) == 1 ? "" : "s");
            goto out;
        }
        if (qt_dataset_hold_back(ds, 4, &eds, err))
            goto out;
    }
    if ((search || sens) &&
        qt_fallback_evalset(&o->fb, eds ? eds : ds, o->data, o->classes, &pp, c, h, w, o->threads, &es, err))
        goto out;
    if (calib_plan(o, &o->q, g, ds, &pp, c, h, w, fixed, &p, search || sens ? &ref : NULL, r, err))
        goto out;
    if (search || sens) {
        struct rebuild_ctx bx = {o, g, ds, &pp, c, h, w, fixed, r};
        struct qt_maxdrop md;
        qs = o->q;
        qs.weight_mse = p->o.weight_mse; /* the rebuilds keep the weight steps and percentile chosen */
        qs.percentile8 = p->o.percentile8;
        qt_maxdrop_init(&md, &o->fb, &qs, g, ref, &es, o->threads);
        md.rebuild = rebuild;
        md.rebuild_ud = &bx;
        md.log = o->log;
        md.log_ud = o->log_ud;
        md.try_corr = o->try_corr;
        md.base = (struct qt_corr){p->bias, o->q.observer, qt_cle_wanted(&o->q)};
        struct qt_pchoice pc0 = p->pchoice; /* the rebuilds keep the percentile chosen, not the record */
        if (qt_maxdrop_run(&md, &p, &r->sens, &r->fb, err))
            goto out;
        if (!p->pchoice.images && pc0.images && p->o.percentile8 == qs.percentile8 &&
            p->o.observer == QT_OBS_PERCENTILE && !qt_cle_wanted(&p->o))
            p->pchoice = pc0;
    }
    /* the plan written's (a rebuild the search measured and left may have set them) */
    r->bc_layers = p->bc_layers;
    r->weight_mse = p->o.weight_mse > 0;
    r->wchoice_images = p->wchoice.images;
    r->wchoice_sqnr_db[0] = p->wchoice.sqnr_db[0];
    r->wchoice_sqnr_db[1] = p->wchoice.sqnr_db[1];
    r->cle_pairs = p->cle.pairs;
    r->cle_absorbed = p->cle.absorbed;
    if (r->fb.ran) { /* the counts of the plan written */
        r->nquant_act = r->nquant_weight = 0;
        for (int t = 0; t < p->nt; t++) {
            r->nquant_act += p->t[t].q.role == QT_ROLE_ACT;
            r->nquant_weight += p->t[t].q.role == QT_ROLE_WEIGHT;
        }
        r->nexcluded = p->nexcluded;
    }
    p->fallback = r->fb.ran ? &r->fb : NULL;
    if (qt_qplan_export_qdq(p, &qg, err))
        goto out;
    if (qt_mem_figures(p, &r->mem, err))
        goto out;
    if (p->mixed) {
        r->mem.rom_budget = p->mixed->rom_budget;
        r->mem.ram_budget = p->mixed->ram_budget;
    }
    if (qt_qplan_save(p, qg, o->out, o->quant_info, o->model, &pp, r->images, o->data, err))
        goto out;
    qt_fallback_missed(&r->fb, err);
out:
    r->wall_s = qt_now() - t0;
    qt_evalset_release(&es);
    qt_dataset_free(ds);
    qt_dataset_free(eds);
    qt_graph_free(qg);
    qt_graph_free(ref);
    qt_qplan_free(p);
    qt_graph_free(g);
    return err->code;
}

int qt_qplan_save(const struct qt_qplan *p, const struct qt_graph *qg, const char *out, const char *qinfo,
                  const char *model_path, const struct qt_preproc *pp, int images, const char *data,
                  struct qt_err *err) {
    void *buf;
    size_t len;
    struct qt_graph *pg = NULL;
    if (p->o.pack) { /* INT4 weights in the file only */
        if (qt_graph_clone(&pg, qg, err))
            return err->code;
        qt_qdq_pack_int4(p, pg);
        qg = pg;
    }
    if (!qinfo) {
        int rc = qt_graph_save(qg, out, err);
        qt_graph_free(pg);
        return rc;
    }
    int prc = qt_graph_pack(qg, &buf, &len, err);
    qt_graph_free(pg);
    if (prc)
        return qt_err_prefix(err, "writing '%s'", out);
    struct qt_wfile fs[3];
    int rc = qt_wfile_begin(&fs[0], out, buf, len, err);
    free(buf);
    if (rc)
        return rc;
    if (qt_qplan_info_begin(p, qinfo, model_path, pp, images, data, &fs[1], &fs[2], err)) {
        qt_wfile_abort(&fs[0]);
        qt_wfile_abort(&fs[2]);
        return err->code;
    }
    /* the weights first, so a quant_info.json in place always has its file */
    if (fs[2].path) {
        struct qt_wfile t = fs[2];
        fs[2] = fs[1];
        fs[1] = fs[0];
        fs[0] = t;
        return qt_wfile_commit_all(fs, 3, err);
    }
    return qt_wfile_commit_all(fs, 2, err);
}
