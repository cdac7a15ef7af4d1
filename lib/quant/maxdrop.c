/* maxdrop.c: the accuracy-driven search behind --max-drop (quant.h says
 * what it does), and the images it measures on.
 *
 * The corrections (bias correction, observer, CLE) change every layer's
 * parameters: each is a real calibration measured on the search's images.
 * Every raised-layer configuration is then measured on the simulator of the
 * best calibrated plan (sensitivity.c): a plan built with the raised layers set
 * says which tensors stay quantized and at what width, so one measurement
 * costs one pass over the search's images, not a calibration. Only the
 * configuration chosen is calibrated (and tuned) again and measured for
 * real; when that misses the target, more layers are raised. */
#include "quant/quant.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int qt_evalset_load(struct qt_evalset *e, struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w,
                    int max, int threads, struct qt_err *err) {
    int n = qt_dataset_count(ds);
    memset(e, 0, sizeof *e);
    if (max <= 0)
        max = 512;
    if (n > max)
        n = max;
    if (n <= 0)
        return 0;
    e->img = malloc(sizeof(float) * (size_t)c * h * w * (size_t)n);
    e->lab = malloc(sizeof(int) * (size_t)n);
    if (!e->img || !e->lab)
        return qt_errf(err, QT_ENOMEM, "out of memory for %d evaluation images", n);
    if (qt_dataset_load(ds, pp, 0, n, c, h, w, e->img, e->lab, threads > 0 ? threads : qt_ncpus(), 0, err))
        return err->code;
    e->n = n;
    return 0;
}

void qt_evalset_release(struct qt_evalset *e) {
    free(e->img);
    free(e->lab);
    memset(e, 0, sizeof *e);
}

void qt_fallback_opts_init(struct qt_fallback_opts *f) {
    memset(f, 0, sizeof *f);
    f->max_drop = -1;
    f->metric = -1;
    f->sens_images = 32;
}

int qt_fallback_evalset(const struct qt_fallback_opts *f, struct qt_dataset *dflt, const char *dflt_name,
                        const char *classes, const struct qt_preproc *pp, int c, int h, int w, int threads,
                        struct qt_evalset *es, struct qt_err *err) {
    struct qt_dataset *eds = NULL;
    int search = f->max_drop >= 0;
    const char *opt = search ? "--max-drop" : "--sensitivity";
    memset(es, 0, sizeof *es);
    if (f->eval_data) {
        if (qt_dataset_open(&eds, f->eval_data, classes, err)) {
            if (err->code == QT_EDATA && strstr(err->msg, "no images")) { /* nothing to measure on */
                err->code = QT_EUSAGE;
                qt_err_prefix(err, "%s needs evaluation images: --eval-data", opt);
            }
            return err->code;
        }
    } else if (!dflt) {
        return qt_errf(err, QT_EUSAGE, "%s needs evaluation images: %s; give --eval-data DIR", opt, dflt_name);
    }
    int rc = qt_evalset_load(es, eds ? eds : dflt, pp, c, h, w,
                             search ? 0 : (f->sens_images > 0 ? f->sens_images : 32), threads, err);
    qt_dataset_free(eds);
    if (!rc && es->n < 1)
        rc = qt_errf(err, QT_EUSAGE, "%s needs evaluation images: '%s' has none", opt,
                     f->eval_data ? f->eval_data : dflt_name);
    int labeled = 0;
    for (int i = 0; !rc && i < es->n; i++)
        labeled += es->lab[i] >= 0;
    if (!rc && search && f->metric == QT_METRIC_TOP1 && !labeled) /* before any calibration or training */
        rc = qt_errf(err, QT_EUSAGE, "--metric top1 needs labeled evaluation images (class folders)");
    return rc;
}

void qt_maxdrop_init(struct qt_maxdrop *m, const struct qt_fallback_opts *f, const struct qt_quant_opts *q,
                     const struct qt_graph *g, const struct qt_graph *ref, const struct qt_evalset *es, int threads) {
    memset(m, 0, sizeof *m);
    m->q = q;
    m->g = g;
    m->ref = ref;
    m->es = es;
    m->metric = f->metric;
    m->max_drop = f->max_drop;
    m->search = f->max_drop >= 0;
    m->sensitivity = f->sensitivity;
    m->sens_images = f->sens_images > 0 ? f->sens_images : 32;
    m->threads = threads;
    m->max_raise = f->max_raise;
}

/* The error when the target is missed names the layers it could not save
 * (fb->unsaved, the most sensitive left quantized), as many as fit. */
int qt_fallback_missed(const struct qt_fallback *fb, struct qt_err *err) {
    char names[240] = "";
    size_t len = 0;
    if (!fb->ran || fb->met)
        return 0;
    for (int i = 0; i < fb->nunsaved; i++) {
        size_t n = strlen(fb->unsaved[i]);
        if (len + n + 6 >= sizeof names) {
            snprintf(names + len, sizeof names - len, " ...");
            break;
        }
        len += (size_t)snprintf(names + len, sizeof names - len, " %s", fb->unsaved[i]);
    }
    return qt_errf(err, QT_EDROP, "the target (%s drop at most %g) is not met; wrote the best model found (%d layer%s "
                   "raised; %s drop %.3g on the search's images); could not save:%s", qt_metric_name(fb->metric),
                   fb->max_drop, fb->nlayers, fb->nlayers == 1 ? "" : "s", qt_metric_name(fb->metric),
                   qt_figures_drop(&fb->after, fb->metric), fb->nunsaved ? names : " -");
}

struct cand {
    const char *node;
    const char *fused; /* the Relu/Clip fused into it (raised with it), or NULL */
    int first;     /* its worst unit's place in the sensitivity order */
};

struct search {
    const struct qt_maxdrop *m;
    struct qt_qsim *sim;
    struct cand *c;
    int nc, metric;
    struct qt_layer_set *set; /* the raised layers (+ the caller's own) */
    int nset, nraised;        /* settings; candidates raised */
    const struct qt_qplan *p;
    struct qt_fallback *fb;
};

static void logf_(const struct qt_maxdrop *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const struct qt_maxdrop *m, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    qt_logv(m->log, m->log_ud, fmt, ap);
    va_end(ap);
}

static int meets(const struct search *s, const struct qt_figures *f) {
    double d = qt_figures_drop(f, s->metric);
    return d <= s->m->max_drop + 1e-9;
}

/* Per-layer settings: the caller's, then the first k candidates raised
 * (level 8: 8-bit weights and activations; 0: float), without `skip`
 * (a candidate index, -1 none). */
static void settings(struct search *s, int k, int level, const unsigned char *drop, struct qt_quant_opts *q) {
    const struct qt_quant_opts *o = s->m->q;
    int n = 0;
    s->nraised = 0;
    for (int i = 0; i < o->nlayers; i++)
        s->set[n++] = o->layers[i];
    for (int i = 0; i < k; i++) {
        if (drop && drop[i])
            continue;
        for (int j = 0; j < 2; j++) {
            const char *nm = j ? s->c[i].fused : s->c[i].node;
            if (!nm)
                continue;
            s->set[n] = (struct qt_layer_set){.node = nm};
            if (level == 8)
                s->set[n].wbits = s->set[n].abits = 8;
            else
                s->set[n].keep_float = 1;
            n++;
        }
        s->nraised++;
    }
    s->nset = n;
    *q = *o;
    q->layers = s->set;
    q->nlayers = n;
}

/* Simulated figures with the first k candidates raised to level. */
static int measure(struct search *s, int k, int level, const unsigned char *drop, struct qt_figures *f,
                   struct qt_err *err) {
    struct qt_quant_opts q;
    struct qt_qplan *cfg = NULL;
    settings(s, k, level, drop, &q);
    if (qt_qplan_build(&cfg, s->m->g, &q, NULL, NULL, err) || qt_qsim_eval(s->sim, cfg, f, err)) {
        qt_qplan_free(cfg);
        return err->code;
    }
    qt_qplan_free(cfg);
    s->fb->evals++;
    logf_(s->m, "max-drop: %d layer%s at %s: %s drop %.3g", s->nraised, s->nraised == 1 ? "" : "s",
          level == 8 ? "8 bits" : "float",
          qt_metric_name(s->metric), qt_figures_drop(f, s->metric));
    return 0;
}

/* The fewest candidates (a prefix of the ranking) at level that meet the
 * target on the simulator: *k, or -1 when even all of them miss. */
static int bisect(struct search *s, int level, int lo, int *k, struct qt_figures *best, struct qt_err *err) {
    struct qt_figures f;
    int hi = s->nc;
    *k = -1;
    if (measure(s, hi, level, NULL, &f, err))
        return err->code;
    if (qt_figures_drop(&f, s->metric) < qt_figures_drop(best, s->metric))
        *best = f;
    if (!meets(s, &f))
        return 0;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (measure(s, mid, level, NULL, &f, err))
            return err->code;
        if (meets(s, &f))
            hi = mid;
        else
            lo = mid;
    }
    *k = hi;
    return 0;
}

/* The layers in the order of the sensitivity table: a layer's place is its
 * worst unit's (lowest output SQNR with only that unit quantized). That
 * figure does not depend on the corrections fitted to the other layers'
 * errors, which "all but this one" does (MobileNetV1 W4 with BN
 * re-estimation: ranked by the all-but gain, 26 of 30 layers at 8 bits still
 * lost 13 points on the search's images). */
static int rank(struct search *s, const struct qt_sens_report *r, struct qt_err *err) {
    int *ord = malloc(sizeof(int) * ((size_t)r->nunits + 1));
    s->c = calloc((size_t)r->nunits + 1, sizeof *s->c);
    if (!s->c || !ord) {
        free(ord);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    qt_sens_order(r, ord);
    for (int k = 0; k < r->nunits; k++) {
        const struct qt_sens_unit *u = &r->unit[ord[k]];
        if (!u->node[0])
            continue;
        int j = 0;
        while (j < s->nc && strcmp(s->c[j].node, u->node))
            j++;
        if (j == s->nc) {
            int n = qt_graph_find_node(s->p->g, u->node), f = n >= 0 ? s->p->qn[n].fused : -1;
            s->c[s->nc++] = (struct cand){u->node, f >= 0 ? s->p->g->n[f].name : NULL, k};
        }
    }
    free(ord);
    return 0;
}

/* The first guess on the simulator: the fewest candidates at 8 bits that meet the target when the
 * plan has lower-bit layers, else the fewest in float (all of them in float when nothing meets it),
 * then without the raised layers the target does not need, least gain first (marked in drop). */
static int first_guess(struct search *s, const struct qt_qplan *p, unsigned char *drop, int *k, int *level,
                       struct qt_figures *bestf, struct qt_err *err) {
    int low = 0;
    for (int t = 0; t < p->nt; t++)
        if ((p->t[t].q.role == QT_ROLE_WEIGHT || p->t[t].q.role == QT_ROLE_ACT) && p->t[t].q.bits < 8)
            low = 1;
    *k = -1, *level = 0;
    if (low && bisect(s, 8, 0, k, bestf, err))
        return err->code;
    if (*k > 0)
        *level = 8;
    else if (bisect(s, 0, 0, k, bestf, err))
        return err->code;
    if (*k < 0) /* nothing meets it: the best found is every candidate in float */
        *k = s->nc, *level = 0;
    /* fewer: drop raised layers the target does not need, least gain first */
    for (int i = *k - 2, tries = 0; i >= 0 && tries < 6 && *k > 1; i--, tries++) {
        struct qt_figures f;
        drop[i] = 1;
        if (measure(s, *k, *level, drop, &f, err))
            return err->code;
        if (!meets(s, &f))
            drop[i] = 0;
    }
    return 0;
}

/* Builds the plan for real with the first k candidates (but those in drop) at level into *np and
 * measures it on the simulator into *f. */
static int build_and_measure(struct search *s, int k, int level, const unsigned char *drop, struct qt_qplan **np,
                             struct qt_figures *f, struct qt_err *err) {
    const struct qt_maxdrop *m = s->m;
    struct qt_quant_opts q;
    struct qt_corr c = {s->fb->bias, s->fb->observer, s->fb->cle}; /* the corrections kept */
    settings(s, k, level, drop, &q);
    if (m->rebuild(m->rebuild_ud, &q, &c, np, err))
        return err->code;
    s->fb->rebuilds++;
    if (qt_qplan_figures(*np, m->ref, m->es, m->threads, f, NULL, err))
        return err->code;
    s->fb->evals++;
    return 0;
}

/* Records in fb the layers of the best plan so far: the first k candidates but those in drop, at
 * level (their fused Relu/Clip go with them). */
static int record_layers(const struct search *s, struct qt_fallback *fb, int k, int level,
                         const unsigned char *drop, struct qt_err *err) {
    free(fb->layer);
    fb->nlayers = 0;
    if (!(fb->layer = calloc((size_t)k + 1, sizeof *fb->layer)))
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int i = 0; i < k; i++) {
        if (drop[i])
            continue;
        struct qt_fallback_layer *l = &fb->layer[fb->nlayers++];
        snprintf(l->node, sizeof l->node, "%s", s->c[i].node);
        l->wbits = l->abits = level == 8 ? 8 : 0;
        l->keep_float = level != 8;
    }
    return 0;
}

/* When the target is missed: up to 4 of the nall ranked candidates left not in float, costing most
 * first, into fb->unsaved. */
static void list_unsaved(const struct search *s, struct qt_fallback *fb, int nall) {
    for (int i = 0; i < nall && fb->nunsaved < 4; i++) {
        int raised = 0;
        for (int j = 0; j < fb->nlayers; j++)
            raised |= !strcmp(fb->layer[j].node, s->c[i].node) && fb->layer[j].keep_float;
        if (!raised)
            snprintf(fb->unsaved[fb->nunsaved++], sizeof fb->unsaved[0], "%s", s->c[i].node);
    }
}

/* The i-th correction to try from c, cheap first: the other bias
 * corrections, the MSE observer, cross-layer equalization toggled. Applies
 * it to c, names it (as the option) in name and returns its kind
 * (QT_CORR_*), or 0 when there is none. */
static int corr_step(int i, int try_corr, struct qt_corr *c, char *name, size_t len) {
    static const int bias[3] = {QT_BIAS_CORRECT, QT_BIAS_BNRE, QT_BIAS_NONE};
    static const char *const bname[3] = {"bias-correction", "bn-reestimate", "no-bn-reestimate"};
    int k = 0;
    for (int j = 0; j < 3 && (try_corr & QT_CORR_BIAS); j++)
        if (bias[j] != c->bias && k++ == i) {
            c->bias = bias[j];
            snprintf(name, len, "%s", bname[j]);
            return QT_CORR_BIAS;
        }
    if ((try_corr & QT_CORR_OBSERVER) && k++ == i) {
        c->observer = c->observer == QT_OBS_MSE ? QT_OBS_PERCENTILE : QT_OBS_MSE;
        snprintf(name, len, "observer=%s", qt_obs_name(c->observer));
        return QT_CORR_OBSERVER;
    }
    if ((try_corr & QT_CORR_CLE) && k++ == i) {
        c->cle = !c->cle;
        snprintf(name, len, "%s", c->cle ? "cle" : "no-cle");
        return QT_CORR_CLE;
    }
    return 0;
}

/* Before raising layers: each correction the caller left to the search
 * (m->try_corr) calibrated for real from the best configuration so far and
 * measured on the search's images; one that lowers the drop is kept. *pp
 * and s->sim become the best plan's; fb->after its figures. */
static int try_corrections(struct search *s, struct qt_qplan **pp, struct qt_err *err) {
    const struct qt_maxdrop *m = s->m;
    struct qt_fallback *fb = s->fb;
    struct qt_corr cur = m->base, tried[8];
    struct qt_qplan *best = NULL, *np = NULL;
    int kind[8];
    double curd = qt_figures_drop(&fb->after, s->metric);
    for (int i = 0; fb->ncorr < 8; i++) {
        struct qt_fallback_corr *e = &fb->corr[fb->ncorr];
        struct qt_corr c = m->base;
        if (!(kind[fb->ncorr] = corr_step(i, m->try_corr, &c, e->option, sizeof e->option)))
            break;
        struct qt_corr t = cur; /* one change from the best so far */
        if (kind[fb->ncorr] == QT_CORR_BIAS)
            t.bias = c.bias;
        else if (kind[fb->ncorr] == QT_CORR_OBSERVER)
            t.observer = c.observer;
        else
            t.cle = c.cle;
        tried[fb->ncorr] = t;
        if (m->rebuild(m->rebuild_ud, m->q, &t, &np, err))
            goto out;
        fb->rebuilds++;
        if (qt_qplan_figures(np, m->ref, m->es, m->threads, &e->f, NULL, err))
            goto out;
        fb->evals++;
        fb->ncorr++;
        double d = qt_figures_drop(&e->f, s->metric);
        logf_(m, "max-drop: with %s: %s drop %.3g", e->option, qt_metric_name(s->metric), d);
        if (d < curd - 1e-9) {
            cur = t;
            curd = d;
            fb->after = e->f;
            qt_qplan_free(best);
            best = np;
        } else {
            qt_qplan_free(np);
        }
        np = NULL;
    }
    for (int i = 0; i < fb->ncorr; i++) /* kept: the change is in the configuration chosen */
        fb->corr[i].kept = kind[i] == QT_CORR_BIAS     ? cur.bias == tried[i].bias && cur.bias != m->base.bias
                           : kind[i] == QT_CORR_OBSERVER ? cur.observer == tried[i].observer &&
                                                               cur.observer != m->base.observer
                                                         : cur.cle == tried[i].cle && cur.cle != m->base.cle;
    if (best) {
        qt_qsim_free(s->sim); /* before its plan goes */
        s->sim = NULL;
        qt_qplan_free(*pp);
        *pp = best;
        best = NULL;
        s->p = *pp;
        if (qt_qsim_new(&s->sim, *pp, m->ref, m->es->img, m->es->lab, m->es->n, m->threads, err))
            goto out;
    }
out:
    fb->bias = cur.bias;
    fb->observer = cur.observer;
    fb->cle = cur.cle;
    qt_qplan_free(best);
    qt_qplan_free(np);
    return err->code;
}

/* The search's record started: the first plan measured as it is. */
static int measure_first(struct search *s, struct qt_err *err) {
    const struct qt_maxdrop *m = s->m;
    struct qt_fallback *fb = s->fb;
    fb->ran = 1;
    fb->metric = s->metric;
    fb->max_drop = m->max_drop;
    fb->eval_images = m->es->n;
    fb->bias = m->base.bias;
    fb->observer = m->base.observer;
    fb->cle = m->base.cle;
    if (qt_qsim_eval(s->sim, NULL, &fb->before, err))
        return err->code;
    fb->evals = 1;
    fb->after = fb->before;
    logf_(m, "max-drop: %s drop %.3g on %d images (target %g)", qt_metric_name(s->metric),
          qt_figures_drop(&fb->before, s->metric), m->es->n, m->max_drop);
    return 0;
}

int qt_maxdrop_run(const struct qt_maxdrop *m, struct qt_qplan **pp, struct qt_sens_report *sens,
                   struct qt_fallback *fb, struct qt_err *err) {
    struct search s = {.m = m, .fb = fb, .p = *pp};
    struct qt_qplan *p = *pp, *best = NULL, *np = NULL;
    unsigned char *drop = NULL;
    double t0 = qt_now();
    memset(fb, 0, sizeof *fb);
    if (qt_qsim_new(&s.sim, p, m->ref, m->es->img, m->es->lab, m->es->n, m->threads, err))
        goto out;
    s.metric = m->metric >= 0 ? m->metric : qt_qsim_labeled(s.sim) ? QT_METRIC_TOP1 : QT_METRIC_AGREE;
    if (s.metric == QT_METRIC_TOP1 && !qt_qsim_labeled(s.sim)) {
        qt_errf(err, QT_EUSAGE, "--metric top1 needs labeled evaluation images (class folders)");
        goto out;
    }
    if (m->sensitivity && qt_sensitivity(s.sim, m->sens_images, sens, err))
        goto out;
    if (!m->search)
        goto out;
    if (measure_first(&s, err))
        goto out;
    if (meets(&s, &fb->before)) {
        fb->met = 1;
        goto out;
    }
    if (m->try_corr && try_corrections(&s, pp, err))
        goto out;
    p = *pp;
    if (meets(&s, &fb->after)) {
        fb->met = 1;
        goto out;
    }
    if (!sens->unit && qt_sensitivity(s.sim, m->sens_images, sens, err))
        goto out;
    if (rank(&s, sens, err))
        goto out;
    int nall = s.nc;
    if (m->max_raise > 0 && s.nc > m->max_raise)
        s.nc = m->max_raise;
    fb->candidates = s.nc;
    s.set = calloc((size_t)(2 * s.nc + m->q->nlayers) + 1, sizeof *s.set);
    drop = calloc((size_t)s.nc + 1, 1);
    if (!s.set || !drop) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    struct qt_figures bestf = fb->after;
    int k, level;
    if (first_guess(&s, p, drop, &k, &level, &bestf, err))
        goto out;
    /* built for real, measured, more raised while it misses; the first
     * plan stays the best until a rebuild beats it */
    double bestd = qt_figures_drop(&fb->after, s.metric);
    for (int round = 0; round < 4; round++) {
        struct qt_figures f;
        if (build_and_measure(&s, k, level, drop, &np, &f, err))
            goto out;
        double d = qt_figures_drop(&f, s.metric);
        logf_(m, "max-drop: built with %d layer%s raised: %s drop %.3g", s.nraised, s.nraised == 1 ? "" : "s",
              qt_metric_name(s.metric), d);
        if (d < bestd) {
            bestd = d;
            qt_qplan_free(best);
            best = np;
            np = NULL;
            fb->after = f;
            if (record_layers(&s, fb, k, level, drop, err))
                goto out;
        }
        qt_qplan_free(np);
        np = NULL;
        if (meets(&s, &f)) {
            fb->met = 1;
            break;
        }
        int pruned = 0;
        for (int i = 0; i < k; i++)
            pruned |= drop[i];
        memset(drop, 0, (size_t)s.nc);
        if (pruned) /* first the layers the simulator let go */
            continue;
        if (k == s.nc && level == 0)
            break;
        if (k == s.nc) { /* every candidate at 8 bits misses: float */
            level = 0;
            if (bisect(&s, 0, 0, &k, &bestf, err))
                goto out;
            if (k < 0)
                k = s.nc;
        } else {
            k = k + (k / 2 > 1 ? k / 2 : 1);
            k = k < s.nc ? k : s.nc;
        }
    }
    if (!fb->met) /* what is left costing most: raised ones first when the limit stopped it */
        list_unsaved(&s, fb, nall);
out:
    fb->wall_s = qt_now() - t0;
    qt_qsim_free(s.sim); /* before its plan goes */
    if (best && !err->code) {
        qt_qplan_free(*pp);
        *pp = best;
        best = NULL;
    }
    qt_qplan_free(best);
    qt_qplan_free(np);
    free(s.c);
    free(s.set);
    free(drop);
    return err->code;
}
