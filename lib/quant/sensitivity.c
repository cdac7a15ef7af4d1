/* sensitivity.c: a quantization simulator over a calibrated plan, the
 * per-layer sensitivity analysis built on it, and the figures the
 * accuracy-driven search (--max-drop, maxdrop.c) measures with.
 *
 * The simulator runs the plan's prepared float graph (no activation fusion,
 * so every tensor is there) on images held in memory. Every quantized
 * weight and activation of the plan is a unit that is either on or off:
 * a weight unit on points the executor's copy of the weight at its
 * fake-quantized values (dequantized integers, as DequantizeLinear gives);
 * an activation unit on fake-quantizes the tensor in place right after its
 * producer, as QuantizeLinear -> DequantizeLinear would (round half to even,
 * saturate to [qmin, qmax]), and its node's bias is rounded to its int32
 * grid. With every unit on, the outputs are those of the QDQ model within
 * float rounding (t_sens checks it).
 *
 * Sensitivity shares work between units: per batch, one walk through the
 * float network; at the step where a unit acts, the tensors alive there are
 * saved, the rest of the network runs from that step with only this unit
 * on, and the saved tensors are put back before the walk goes on. The same
 * walk through the quantized network gives "all but this unit". So a unit
 * costs the part of the network after it, twice, not two whole passes. */
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct sunit {
    int t, v, weight;
    int node;        /* weight: the reading node; activation: the producer (-1: graph input) */
    int owner;       /* the node named for it (a fused Relu/Clip's compute node) */
    int step;        /* the step at which it acts (0 for a graph input) */
    int on, bits;    /* state; bits used when on */
    int next;        /* next activation unit of the same producer, -1 */
    /* weights */
    void *wf;        /* the float data (the graph's) */
    const float *wref; /* the reference's float weights (before corrections and tuning), else wf */
    int bv;          /* the node's bias value, -1 */
    void *bq;        /* its data in the plan (corrected) */
    float *bqq;      /* the same as the plan quantizes it (int32, input step x weight step), or NULL */
    const void *bref; /* in the reference, else bq */
    float *wq;       /* at the plan's bits */
    float *walt;     /* at alt_bits */
    int alt_bits;
    /* activations: the plan's parameters and those at alt_bits */
    float s, as;
    int32_t z, az;
    int qmin, qmax, aqmin, aqmax;
    /* own figures (accumulated in the float walk) */
    double o_sig, o_noise, o_dot, o_qq;
};

struct fig {
    long long n1, nag, nlab, n;
    long long lost, gained; /* labeled images float gets right and this wrong, the reverse */
    double sig, noise;
};

struct qt_qsim {
    const struct qt_qplan *p;
    struct qt_exec *x;
    struct sunit *u;
    int nu;
    int *act_head;   /* per node: first activation unit it produces, -1 */
    int in_head;     /* activation units on graph inputs */
    const float *img;
    const int *lab;
    int nimg, batch, nout;
    size_t per;      /* floats per image */
    float *flog;     /* float logits, nimg x nout */
    int *ftop;
    double float_top1;
    int labeled;
    /* tensors alive at a step: produced before it, read at or after it */
    int *prod_step, *last_use; /* per value */
    float *snap;
    size_t snap_cap;
    /* own-figure capture */
    int own;         /* accumulate activation units' own figures while fake-quantizing */
    float *yf;       /* a node's float output */
    size_t yf_cap;
};

/* QuantizeLinear then DequantizeLinear, in float as they compute. */
static float fq1(float v, float s, int32_t z, int qmin, int qmax) {
    return (float)(qt_quantize(v, s, z, qmin, qmax) - z) * s;
}

/* Fake-quantizes a weight tensor per channel (q->axis) or per tensor with
 * steps sc (n of them) into out. */
static void fq_weight(const struct qt_tensor *w, int axis, const float *sc, int n, int qmin, int qmax, float *out) {
    int64_t total = qt_tensor_numel(w), inner = 1;
    const float *W = w->data;
    if (axis >= 0)
        for (int d = axis + 1; d < w->ndim; d++)
            inner *= w->dims[d];
    for (int64_t i = 0; i < total; i++) {
        int64_t c = axis >= 0 ? (i / inner) % n : 0;
        out[i] = fq1(W[i], sc[c], 0, qmin, qmax);
    }
}

/* The weight fake-quantized at `bits` (symmetric, per channel, steps as
 * the plan's weights: qt_weight_step). */
static int weight_at(const struct qt_qplan *p, struct sunit *u, int bits, struct qt_err *err) {
    struct qt_tensor wt = *p->g->v[u->v].init, *w = &wt;
    wt.data = (void *)u->wref;
    const struct qt_qparam *q = &p->t[u->t].q;
    int64_t total = qt_tensor_numel(w), inner = 1;
    int qmin, qmax, n = q->n;
    if (u->walt && u->alt_bits == bits)
        return 0;
    if (!u->walt && !(u->walt = malloc(sizeof(float) * (size_t)(total + 1))))
        return qt_errf(err, QT_ENOMEM, "out of memory");
    float *sc = calloc((size_t)n + 1, sizeof(float));
    if (!sc)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    qt_qrange(QT_INT8, bits - (p->o.reduce_range ? 1 : 0), p->o.narrow, &qmin, &qmax);
    if (q->axis >= 0)
        for (int d = q->axis + 1; d < w->ndim; d++)
            inner *= w->dims[d];
    int64_t nch = q->axis >= 0 ? n : 1, outer = total / (nch * inner > 0 ? nch * inner : 1);
    for (int c = 0; c < n; c++)
        sc[c] = qt_weight_step(w->data, outer, nch, inner, c, qmin, qmax, p->o.weight_mse, NULL);
    fq_weight(w, q->axis, sc, n, qmin, qmax, u->walt);
    free(sc);
    u->alt_bits = bits;
    return 0;
}

/* Activation parameters at `bits` from the observed range (min/max). */
static void act_at(const struct qt_qplan *p, struct sunit *u, int bits) {
    const struct qt_qparam *q = &p->t[u->t].q;
    qt_qrange(q->dtype, bits, 0, &u->aqmin, &u->aqmax);
    double lo = fmin(0.0, q->obs_min[0]), hi = fmax(0.0, q->obs_max[0]);
    qt_qparams_from_range(lo, hi, u->aqmin, u->aqmax, q->symmetric, &u->as, &u->az);
    u->alt_bits = bits;
}

/* A weight unit on at the plan's bits reads the plan's quantized weights
 * and its (corrected) bias; off or at other bits, the reference's float
 * weights and bias (bias correction and tuning fit the plan's widths). */
static void unit_set(struct qt_qsim *s, struct sunit *u, int on) {
    u->on = on;
    if (u->weight) {
        int planned = on && u->bits == s->p->t[u->t].q.bits;
        s->x->t[u->v].data = !on ? (void *)u->wref : planned ? u->wq : u->walt;
        if (u->bv >= 0)
            s->x->t[u->bv].data = planned ? (u->bqq ? (void *)u->bqq : u->bq) : (void *)u->bref;
    }
}

/* Fake-quantizes activation unit u in place (with its own figures when
 * s->own). */
static void act_apply(struct qt_qsim *s, struct sunit *u) {
    struct qt_tensor *t = &s->x->t[u->v];
    float *v = t->data;
    int64_t n = qt_tensor_numel(t);
    int alt = u->bits != s->p->t[u->t].q.bits;
    float sc = alt ? u->as : u->s;
    int32_t z = alt ? u->az : u->z;
    int qmin = alt ? u->aqmin : u->qmin, qmax = alt ? u->aqmax : u->qmax;
    double sig = 0, noise = 0, dot = 0, qq = 0;
    for (int64_t i = 0; i < n; i++) {
        float f = v[i], q = fq1(f, sc, z, qmin, qmax);
        if (s->own) {
            double d = (double)q - f;
            sig += (double)f * f;
            noise += d * d;
            dot += (double)f * q;
            qq += (double)q * q;
        }
        v[i] = q;
    }
    if (s->own) {
        u->o_sig += sig;
        u->o_noise += noise;
        u->o_dot += dot;
        u->o_qq += qq;
    }
}

static int run_step(struct qt_qsim *s, int k, struct qt_err *err) {
    struct qt_exec *x = s->x;
    if (k == 0)
        for (int i = s->in_head; i >= 0; i = s->u[i].next)
            if (s->u[i].on)
                act_apply(s, &s->u[i]);
    const struct qt_node *n = &x->g->n[x->steps[k]];
    if (!x->skip[x->steps[k]] && n->op->fwd(x, n, err))
        return err->code;
    for (int i = s->act_head[x->steps[k]]; i >= 0; i = s->u[i].next)
        if (s->u[i].on)
            act_apply(s, &s->u[i]);
    return 0;
}

static int run_from(struct qt_qsim *s, int k0, struct qt_err *err) {
    for (int k = k0; k < s->x->nsteps; k++)
        if (run_step(s, k, err))
            return err->code;
    return 0;
}

/* Compares a batch's outputs (nb images from image i0) with the float
 * logits. */
static void score(struct qt_qsim *s, int i0, int nb, struct fig *f) {
    const float *out = qt_exec_output(s->x, 0);
    for (int b = 0; b < nb; b++) {
        const float *v = out + (size_t)b * s->nout, *r = s->flog + (size_t)(i0 + b) * s->nout;
        int top = 0;
        for (int j = 1; j < s->nout; j++)
            if (v[j] > v[top])
                top = j;
        for (int j = 0; j < s->nout; j++) {
            double d = (double)v[j] - r[j];
            f->sig += (double)r[j] * r[j];
            f->noise += d * d;
        }
        f->n++;
        f->nag += top == s->ftop[i0 + b];
        int l = s->lab ? s->lab[i0 + b] : -1;
        if (l >= 0 && l < s->nout) {
            f->nlab++;
            f->n1 += top == l;
            f->lost += s->ftop[i0 + b] == l && top != l;
            f->gained += s->ftop[i0 + b] != l && top == l;
        }
    }
}

static void load_batch(struct qt_qsim *s, int i0, int nb) {
    float *in = qt_exec_input(s->x, 0);
    memcpy(in, s->img + (size_t)i0 * s->per, sizeof(float) * s->per * (size_t)nb);
    if (nb < s->batch)
        memset(in + (size_t)nb * s->per, 0, sizeof(float) * s->per * (size_t)(s->batch - nb));
}

static void fig_out(const struct qt_qsim *s, const struct fig *f, struct qt_figures *o) {
    memset(o, 0, sizeof *o);
    o->images = (int)f->n;
    o->labeled = (int)f->nlab;
    o->float_top1 = s->float_top1;
    o->top1 = f->nlab ? 100.0 * f->n1 / f->nlab : NAN;
    o->top1_drop = f->nlab ? s->float_top1 - o->top1 : NAN;
    o->agree = f->n ? 100.0 * f->nag / f->n : NAN;
    o->sqnr_db = f->noise > 0 ? 10 * log10(f->sig / f->noise) : INFINITY;
    o->lost = (int)f->lost;
    o->gained = (int)f->gained;
}

double qt_figures_drop_se(const struct qt_figures *f, int metric) {
    double n = metric == QT_METRIC_TOP1 ? f->labeled : f->images;
    if (n < 1 || metric == QT_METRIC_SQNR)
        return NAN;
    if (metric == QT_METRIC_AGREE) { /* disagreements: a binomial proportion */
        double p = 1 - f->agree / 100;
        return 100 * sqrt(fmax(p * (1 - p), 0) / n);
    }
    /* per image +1 lost, -1 gained, 0 else: the standard error of their mean */
    double m = (f->lost - f->gained) / n;
    return 100 * sqrt(fmax((f->lost + f->gained) / n - m * m, 0) / n);
}

double qt_figures_drop(const struct qt_figures *f, int metric) {
    switch (metric) {
    case QT_METRIC_TOP1: return f->top1_drop;
    case QT_METRIC_AGREE: return 100.0 - f->agree;
    default: return 100.0 * pow(10.0, -f->sqnr_db / 10.0);
    }
}

const char *qt_metric_name(int metric) {
    return metric == QT_METRIC_TOP1 ? "top1" : metric == QT_METRIC_AGREE ? "agreement" : "sqnr";
}

void qt_qsim_free(struct qt_qsim *s) {
    if (!s)
        return;
    for (int i = 0; s->u && i < s->nu; i++) {
        if (s->x && s->u[i].weight) {
            s->x->t[s->u[i].v].data = s->u[i].wf;
            if (s->u[i].bv >= 0)
                s->x->t[s->u[i].bv].data = s->u[i].bq;
        }
        free(s->u[i].wq);
        free(s->u[i].bqq);
        free(s->u[i].walt);
    }
    qt_exec_free(s->x);
    free(s->u);
    free(s->act_head);
    free(s->flog);
    free(s->ftop);
    free(s->prod_step);
    free(s->last_use);
    free(s->snap);
    free(s->yf);
    free(s);
}

/* The compute node a fused Relu/Clip belongs to, else the node itself. */
static int owner_of(const struct qt_qplan *p, int node) {
    if (node < 0 || p->qn[node].kind != QT_QN_ACT_FUSED)
        return node;
    for (int i = 0; i < p->g->nn; i++)
        if (p->qn[i].fused == node)
            return i;
    return node;
}

/* Fills step_of (node -> execution step, -1 if not run), s->act_head (-1), s->prod_step (the step
   producing each value: -2 constant, -1 graph input) and s->last_use (the last step reading each
   value; x->nsteps for graph outputs). */
static void qsim_index_steps(struct qt_qsim *s, int *step_of) {
    const struct qt_exec *x = s->x;
    const struct qt_graph *g = s->p->g;
    for (int i = 0; i < g->nn; i++)
        step_of[i] = -1, s->act_head[i] = -1;
    for (int k = 0; k < x->nsteps; k++)
        step_of[x->steps[k]] = k;
    s->in_head = -1;
    for (int v = 0; v < g->nv; v++) {
        s->prod_step[v] = x->isconst[v] ? -2 : g->v[v].producer >= 0 ? step_of[g->v[v].producer] : -1;
        s->last_use[v] = -1;
    }
    for (int k = 0; k < x->nsteps; k++) {
        const struct qt_node *n = &g->n[x->steps[k]];
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] >= 0)
                s->last_use[n->in[j]] = k;
    }
    for (int i = 0; i < g->noutputs; i++)
        s->last_use[g->outputs[i]] = x->nsteps;
}

/* Sets up weight unit u of plan tensor qt: its float weight (and the reference one from fref when
   there), its fake-quantized copy, and its node's bias with the bias as int32-quantized. */
static int qsim_weight_unit(struct qt_qsim *s, struct sunit *u, const struct qt_qtensor *qt,
                            const struct qt_graph *fref, struct qt_err *err) {
    const struct qt_qplan *p = s->p;
    const struct qt_graph *g = p->g;
    const struct qt_exec *x = s->x;
    int v = qt->v;
    const struct qt_tensor *w = g->v[v].init;
    u->wf = w->data;
    u->wref = w->data;
    u->bv = -1;
    int rv = fref ? qt_graph_find(fref, g->v[v].name) : -1;
    if (rv >= 0 && fref->v[rv].kind == QT_V_INIT && fref->v[rv].init->nbytes == w->nbytes &&
        fref->v[rv].init->dtype == QT_FLOAT)
        u->wref = fref->v[rv].init->data;
    const struct qt_node *n = &g->n[qt->node];
    int bi = qt_qf(n)->bias, b = bi && n->nin > bi ? n->in[bi] : -1;
    if (b >= 0 && g->v[b].kind == QT_V_INIT && x->t[b].data == g->v[b].init->data) {
        int rb = fref ? qt_graph_find(fref, g->v[b].name) : -1;
        u->bv = b;
        u->bq = g->v[b].init->data;
        u->bref = u->bq;
        if (rb >= 0 && fref->v[rb].kind == QT_V_INIT && fref->v[rb].init->nbytes == g->v[b].init->nbytes)
            u->bref = fref->v[rb].init->data;
        int tb = p->tensor_of[b];
        int64_t nb = qt_tensor_numel(g->v[b].init);
        if (tb >= 0 && p->t[tb].q.role == QT_ROLE_BIAS && p->t[tb].q.n == nb && g->v[b].init->dtype == QT_FLOAT) {
            const struct qt_qparam *qb = &p->t[tb].q;
            if (!(u->bqq = malloc(sizeof(float) * (size_t)(nb + 1))))
                return qt_errf(err, QT_ENOMEM, "out of memory");
            for (int64_t c = 0; c < nb; c++) { /* as qdq.c quantizes an int32 bias */
                double r = nearbyint((double)((const float *)u->bq)[c] / qb->scale[c]);
                r = r > INT32_MAX ? INT32_MAX : r < INT32_MIN ? INT32_MIN : r;
                u->bqq[c] = (float)(int32_t)r * qb->scale[c];
            }
        }
    }
    if (!(u->wq = malloc(sizeof(float) * (size_t)(qt_tensor_numel(w) + 1))))
        return qt_errf(err, QT_ENOMEM, "out of memory");
    fq_weight(w, qt->q.axis, qt->q.scale, qt->q.n, qt->q.qmin, qt->q.qmax, u->wq);
    return 0;
}

/* Appends the units to s->u in execution order: each float weight the plan quantizes, at its
   node's step, and each per-tensor activation, on its producer's list (s->in_head for inputs). */
static int qsim_add_units(struct qt_qsim *s, const int *step_of, const struct qt_graph *fref,
                          struct qt_err *err) {
    const struct qt_qplan *p = s->p;
    const struct qt_graph *g = p->g;
    const struct qt_exec *x = s->x;
    for (int k = -1; k < x->nsteps; k++) {
        for (int t = 0; t < p->nt; t++) {
            const struct qt_qtensor *qt = &p->t[t];
            int v = qt->v;
            if (qt->q.role == QT_ROLE_WEIGHT) {
                if (qt->node < 0 || step_of[qt->node] != k || x->t[v].dtype != QT_FLOAT ||
                    x->t[v].data != g->v[v].init->data)
                    continue;
            } else if (qt->q.role == QT_ROLE_ACT) {
                if (s->prod_step[v] != k || x->t[v].dtype != QT_FLOAT || qt->q.n != 1)
                    continue;
            } else {
                continue;
            }
            struct sunit *u = &s->u[s->nu];
            u->t = t;
            u->v = v;
            u->weight = qt->q.role == QT_ROLE_WEIGHT;
            u->node = u->weight ? qt->node : g->v[v].producer;
            u->owner = owner_of(p, u->node);
            u->step = k < 0 ? 0 : k;
            u->bits = qt->q.bits;
            u->next = -1;
            if (u->weight) {
                if (qsim_weight_unit(s, u, qt, fref, err))
                    return err->code;
            } else {
                u->s = qt->q.scale[0];
                u->z = qt->q.zp[0];
                u->qmin = qt->q.qmin;
                u->qmax = qt->q.qmax;
                /* appended to its producer's list, in plan order */
                int *h = k < 0 ? &s->in_head : &s->act_head[x->steps[k]];
                while (*h >= 0)
                    h = &s->u[*h].next;
                *h = s->nu;
            }
            s->nu++;
        }
    }
    return 0;
}

/* Float logits, top-1 class and float top-1 of every image into s->flog, s->ftop, s->labeled and
   s->float_top1: from the reference graph (the prepared model before corrections and tuning) when
   given, else p->g. */
static int qsim_float_logits(struct qt_qsim *s, const struct qt_graph *fref, int threads, struct qt_err *err) {
    struct qt_exec *x = s->x, *fx = NULL, *rx = x;
    if (fref) {
        if (qt_exec_new(&fx, (struct qt_graph *)fref, s->batch, threads, err))
            return err->code;
        rx = fx;
    }
    long long n1 = 0, nl = 0;
    for (int i0 = 0; i0 < s->nimg; i0 += s->batch) {
        int nb = s->nimg - i0 < s->batch ? s->nimg - i0 : s->batch;
        float *in = qt_exec_input(rx, 0);
        memcpy(in, s->img + (size_t)i0 * s->per, sizeof(float) * s->per * (size_t)nb);
        if (nb < s->batch)
            memset(in + (size_t)nb * s->per, 0, sizeof(float) * s->per * (size_t)(s->batch - nb));
        if (rx == x ? run_from(s, 0, err) : qt_exec_run(rx, err)) {
            qt_exec_free(fx);
            return err->code;
        }
        const float *o = qt_exec_output(rx, 0);
        memcpy(s->flog + (size_t)i0 * s->nout, o, sizeof(float) * (size_t)nb * s->nout);
        for (int b = 0; b < nb; b++) {
            const float *v = o + (size_t)b * s->nout;
            int top = 0;
            for (int j = 1; j < s->nout; j++)
                if (v[j] > v[top])
                    top = j;
            s->ftop[i0 + b] = top;
            int l = s->lab ? s->lab[i0 + b] : -1;
            if (l >= 0 && l < s->nout) {
                nl++;
                n1 += top == l;
            }
        }
    }
    s->labeled = (int)nl;
    s->float_top1 = nl ? 100.0 * n1 / nl : NAN;
    qt_exec_free(fx);
    return 0;
}

int qt_qsim_new(struct qt_qsim **out, const struct qt_qplan *p, const struct qt_graph *fref, const float *images,
                const int *labels, int nimg, int threads, struct qt_err *err) {
    struct qt_qsim *s = calloc(1, sizeof *s);
    int *step_of = NULL;
    *out = NULL;
    if (!s)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    if (nimg < 1) {
        qt_errf(err, QT_EUSAGE, "no evaluation images");
        goto fail;
    }
    s->p = p;
    s->img = images;
    s->lab = labels;
    s->nimg = nimg;
    /* a model of fixed batch size runs at it (the last batch padded) */
    s->batch = qt_graph_fixed_batch(p->g);
    if (!s->batch)
        s->batch = nimg < 16 ? nimg : 16;
    threads = threads > 0 ? threads : qt_ncpus();
    if (qt_exec_new_flags(&s->x, p->g, s->batch, threads, QT_EXEC_NOFUSE, err))
        goto fail;
    const struct qt_graph *g = p->g;
    const struct qt_tensor *ot = qt_exec_output_tensor(s->x, 0);
    if (ot->dtype != QT_FLOAT || ot->ndim < 1 || ot->dims[0] != s->batch) {
        qt_errf(err, QT_EUNSUPPORTED, "output 0 is not a float32 [N,...] tensor");
        goto fail;
    }
    s->nout = (int)(qt_tensor_numel(ot) / s->batch);
    s->per = (size_t)(qt_tensor_numel(qt_exec_input_tensor(s->x, 0)) / s->batch);
    step_of = malloc(sizeof(int) * ((size_t)g->nn + 1));
    s->act_head = malloc(sizeof(int) * ((size_t)g->nn + 1));
    s->prod_step = malloc(sizeof(int) * ((size_t)g->nv + 1));
    s->last_use = malloc(sizeof(int) * ((size_t)g->nv + 1));
    s->u = calloc((size_t)p->nt + 1, sizeof *s->u);
    s->flog = malloc(sizeof(float) * (size_t)nimg * s->nout);
    s->ftop = malloc(sizeof(int) * (size_t)nimg);
    if (!step_of || !s->act_head || !s->prod_step || !s->last_use || !s->u || !s->flog || !s->ftop) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto fail;
    }
    qsim_index_steps(s, step_of);
    if (qsim_add_units(s, step_of, fref, err) || qsim_float_logits(s, fref, threads, err))
        goto fail;
    free(step_of);
    *out = s;
    return 0;
fail:
    free(step_of);
    qt_qsim_free(s);
    return err->code;
}


int qt_qsim_units(const struct qt_qsim *s) {
    return s->nu;
}

int qt_qsim_labeled(const struct qt_qsim *s) {
    return s->labeled;
}

int qt_qplan_figures(const struct qt_qplan *p, const struct qt_graph *fref, const struct qt_evalset *es,
                     int threads, struct qt_figures *f, int *labeled, struct qt_err *err) {
    struct qt_qsim *s = NULL;
    if (!qt_qsim_new(&s, p, fref, es->img, es->lab, es->n, threads, err) && !qt_qsim_eval(s, NULL, f, err) &&
        labeled)
        *labeled = qt_qsim_labeled(s);
    qt_qsim_free(s);
    return err->code;
}

/* Sets every unit as configuration cfg quantizes it: on when cfg
 * quantizes the tensor of that name, at cfg's bits. */
static int configure(struct qt_qsim *s, const struct qt_qplan *cfg, struct qt_err *err) {
    const struct qt_qplan *p = s->p;
    for (int i = 0; i < s->nu; i++) {
        struct sunit *u = &s->u[i];
        int on = 1, bits = p->t[u->t].q.bits;
        if (cfg && cfg != p) {
            int v = qt_graph_find(cfg->g, p->g->v[u->v].name), t = v >= 0 ? cfg->tensor_of[v] : -1;
            on = t >= 0 && cfg->t[t].q.role == p->t[u->t].q.role;
            if (on && cfg->t[t].q.bits > 0)
                bits = cfg->t[t].q.bits;
        }
        if (on && bits != p->t[u->t].q.bits) {
            if (u->weight ? weight_at(p, u, bits, err) : (act_at(p, u, bits), 0))
                return err->code;
        }
        u->bits = bits;
        unit_set(s, u, on);
    }
    return 0;
}

void qt_qsim_set(struct qt_qsim *s, int unit, int on) {
    if (unit >= 0 && unit < s->nu) {
        s->u[unit].bits = s->p->t[s->u[unit].t].q.bits;
        unit_set(s, &s->u[unit], on);
    }
}

int qt_qsim_eval(struct qt_qsim *s, const struct qt_qplan *cfg, struct qt_figures *f, struct qt_err *err) {
    if (configure(s, cfg, err))
        return err->code;
    return qt_qsim_run(s, f, err);
}

int qt_qsim_run(struct qt_qsim *s, struct qt_figures *f, struct qt_err *err) {
    struct fig a = {0};
    for (int i0 = 0; i0 < s->nimg; i0 += s->batch) {
        int nb = s->nimg - i0 < s->batch ? s->nimg - i0 : s->batch;
        load_batch(s, i0, nb);
        if (run_from(s, 0, err))
            return err->code;
        score(s, i0, nb, &a);
    }
    fig_out(s, &a, f);
    return 0;
}

/* ---- sensitivity --------------------------------------------------------- */

/* Saves (save = 1) or restores the tensors alive at step k. */
static int snapshot(struct qt_qsim *s, int k, int save, struct qt_err *err) {
    const struct qt_graph *g = s->p->g;
    size_t need = 0, off = 0;
    for (int v = 0; v < g->nv; v++)
        if (s->prod_step[v] > -2 && s->prod_step[v] < k && s->last_use[v] >= k)
            need += s->x->t[v].nbytes;
    if (save && need > s->snap_cap) {
        free(s->snap);
        if (!(s->snap = malloc(need)))
            return qt_errf(err, QT_ENOMEM, "out of memory");
        s->snap_cap = need;
    }
    for (int v = 0; v < g->nv; v++)
        if (s->prod_step[v] > -2 && s->prod_step[v] < k && s->last_use[v] >= k) {
            struct qt_tensor *t = &s->x->t[v];
            if (save)
                memcpy((char *)s->snap + off, t->data, t->nbytes);
            else
                memcpy(t->data, (char *)s->snap + off, t->nbytes);
            off += t->nbytes;
        }
    return 0;
}

static int node_out_copy(struct qt_qsim *s, int node, struct qt_err *err) {
    const struct qt_tensor *t = &s->x->t[s->x->g->n[node].out[0]];
    if (t->nbytes > s->yf_cap) {
        free(s->yf);
        if (!(s->yf = malloc(t->nbytes)))
            return qt_errf(err, QT_ENOMEM, "out of memory");
        s->yf_cap = t->nbytes;
    }
    memcpy(s->yf, t->data, t->nbytes);
    return 0;
}

/* One walk over a batch: every unit on (quant = 1) or off; at each unit's
 * step, the rest runs with that unit flipped, into f[unit]. In the float
 * walk, weight units' own figures compare their node's output with it. */
static int walk(struct qt_qsim *s, int quant, int i0, int nb, struct fig *f, struct qt_err *err) {
    int k = 0;
    for (int i = 0; i < s->nu; i++)
        unit_set(s, &s->u[i], quant);
    load_batch(s, i0, nb);
    for (int step = 0; step < s->x->nsteps; step++) {
        int any = 0;
        for (; k < s->nu && s->u[k].step == step; k++) {
            struct sunit *u = &s->u[k];
            if (!any) {
                if (snapshot(s, step, 1, err))
                    return err->code;
                if (!quant) { /* this step's float output, for weight units' own figures */
                    if (run_step(s, step, err) || node_out_copy(s, s->x->steps[step], err))
                        return err->code;
                }
                any = 1;
            }
            if (snapshot(s, step, 0, err))
                return err->code;
            unit_set(s, u, !quant);
            s->own = !quant && !u->weight;
            if (run_step(s, step, err))
                return err->code;
            s->own = 0;
            if (!quant && u->weight) {
                const struct qt_tensor *t = &s->x->t[s->x->g->n[u->node].out[0]];
                const float *q = t->data, *fl = s->yf;
                int64_t n = qt_tensor_numel(t);
                for (int64_t j = 0; j < n; j++) {
                    double d = (double)q[j] - fl[j];
                    u->o_sig += (double)fl[j] * fl[j];
                    u->o_noise += d * d;
                    u->o_dot += (double)fl[j] * q[j];
                    u->o_qq += (double)q[j] * q[j];
                }
            }
            if (run_from(s, step + 1, err))
                return err->code;
            score(s, i0, nb, &f[k]);
            unit_set(s, u, quant);
        }
        if (any && snapshot(s, step, 0, err))
            return err->code;
        if (run_step(s, step, err))
            return err->code;
    }
    return 0;
}

int qt_sensitivity(struct qt_qsim *s, int nimg, struct qt_sens_report *r, struct qt_err *err) {
    const struct qt_qplan *p = s->p;
    const struct qt_graph *g = p->g;
    struct fig *fq = NULL, *ff = NULL, all = {0};
    double t0 = qt_now();
    memset(r, 0, sizeof *r);
    if (nimg <= 0 || nimg > s->nimg)
        nimg = s->nimg;
    fq = calloc((size_t)s->nu + 1, sizeof *fq);
    ff = calloc((size_t)s->nu + 1, sizeof *ff);
    r->unit = calloc((size_t)s->nu + 1, sizeof *r->unit);
    if (!fq || !ff || !r->unit) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    if (configure(s, p, err))
        goto out;
    for (int i = 0; i < s->nu; i++)
        s->u[i].o_sig = s->u[i].o_noise = s->u[i].o_dot = s->u[i].o_qq = 0;
    for (int i0 = 0; i0 < nimg; i0 += s->batch) {
        int nb = nimg - i0 < s->batch ? nimg - i0 : s->batch;
        if (walk(s, 0, i0, nb, fq, err) || walk(s, 1, i0, nb, ff, err))
            goto out;
        score(s, i0, nb, &all); /* the quantized walk ends with every unit on */
    }
    r->nunits = s->nu;
    r->images = nimg;
    fig_out(s, &all, &r->all);
    {
        long long n1 = 0, nl = 0;
        for (int i = 0; i < nimg; i++) {
            int l = s->lab ? s->lab[i] : -1;
            if (l >= 0 && l < s->nout)
                nl++, n1 += s->ftop[i] == l;
        }
        r->all.float_top1 = nl ? 100.0 * n1 / nl : NAN;
        r->all.top1_drop = nl ? r->all.float_top1 - r->all.top1 : NAN;
        r->labeled = (int)nl;
    }
    for (int i = 0; i < s->nu; i++) {
        const struct sunit *u = &s->u[i];
        struct qt_sens_unit *o = &r->unit[i];
        int nd = u->owner >= 0 ? u->owner : u->node;
        snprintf(o->node, sizeof o->node, "%s", nd >= 0 && g->n[nd].name ? g->n[nd].name : "");
        snprintf(o->op, sizeof o->op, "%s", nd >= 0 ? g->n[nd].op_type : "input");
        snprintf(o->tensor, sizeof o->tensor, "%s", g->v[u->v].name ? g->v[u->v].name : "");
        o->weight = u->weight;
        o->bits = p->t[u->t].q.bits;
        fig_out(s, &fq[i], &o->only_quant);
        fig_out(s, &ff[i], &o->only_float);
        o->only_quant.float_top1 = o->only_float.float_top1 = r->all.float_top1;
        o->only_quant.top1_drop = r->all.float_top1 - o->only_quant.top1;
        o->only_float.top1_drop = r->all.float_top1 - o->only_float.top1;
        o->sqnr_db = u->o_noise > 0 ? 10 * log10(u->o_sig / u->o_noise) : INFINITY;
        o->cosine = u->o_sig > 0 && u->o_qq > 0 ? u->o_dot / sqrt(u->o_sig * u->o_qq) : 1.0;
    }
    configure(s, p, err);
    r->wall_s = qt_now() - t0;
out:
    free(fq);
    free(ff);
    if (err->code)
        qt_sens_report_free(r);
    return err->code;
}

/* Worst first: the lowest output SQNR with only this unit quantized, then
 * the largest gain with only this unit in float; ties by position. */
static const struct qt_sens_report *sort_rep;
static int cmp_unit(const void *a, const void *b) {
    const struct qt_sens_unit *x = &sort_rep->unit[*(const int *)a], *y = &sort_rep->unit[*(const int *)b];
    if (x->only_quant.sqnr_db != y->only_quant.sqnr_db)
        return x->only_quant.sqnr_db < y->only_quant.sqnr_db ? -1 : 1;
    if (x->only_float.sqnr_db != y->only_float.sqnr_db)
        return x->only_float.sqnr_db > y->only_float.sqnr_db ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

void qt_sens_order(const struct qt_sens_report *r, int *order) {
    for (int i = 0; i < r->nunits; i++)
        order[i] = i;
    sort_rep = r;
    qsort(order, (size_t)r->nunits, sizeof *order, cmp_unit);
    sort_rep = NULL;
}

void qt_sens_report_free(struct qt_sens_report *r) {
    free(r->unit);
    memset(r, 0, sizeof *r);
}

int qt_eval_sensitivity(const struct qt_eval_opts *o, int images, struct qt_layer_report *rep, struct qt_err *err) {
    struct qt_graph *rg = NULL, *fg = NULL;
    struct qt_qplan *p = NULL;
    struct qt_dataset *ds = NULL;
    struct qt_qsim *s = NULL;
    struct qt_evalset es = {0};
    struct qt_preproc pp = o->pp;
    struct qt_err e = {0};
    char qinfo[4096];
    int c, h, w, fixed, ntuned;
    FILE *f;
    rep->sens = NULL;
    qt_path_with_ext(o->model, ".onnx", ".json", qinfo, sizeof qinfo);
    if (!(f = fopen(qinfo, "rb"))) {
        snprintf(rep->sens_note, sizeof rep->sens_note, "no quant_info.json beside the model ('%.180s')", qinfo);
        return 0;
    }
    fclose(f);
    if (qt_graph_load(&rg, o->ref, err) || qt_model_image_shape(rg, &pp, &c, &h, &w, &fixed, err))
        goto out;
    if (qt_qplan_from_info_ref(&p, &fg, rg, o->ref, qinfo, &ntuned, &e)) { /* another model's, or not qtool's */
        snprintf(rep->sens_note, sizeof rep->sens_note, "%.250s", e.msg);
        goto out;
    }
    if (!o->channels_set)
        pp.channels = c;
    if (qt_dataset_open(&ds, o->data, o->classes, err) ||
        qt_evalset_load(&es, ds, &pp, c, h, w, images > 0 && images < 32 ? images : 32, o->threads, err) ||
        qt_qsim_new(&s, p, fg, es.img, es.lab, es.n, o->threads, err))
        goto out;
    if (!(rep->sens = calloc(1, sizeof *rep->sens))) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    if (qt_sensitivity(s, 0, rep->sens, err)) {
        free(rep->sens);
        rep->sens = NULL;
    }
out:
    qt_qsim_free(s);
    qt_evalset_release(&es);
    qt_dataset_free(ds);
    qt_qplan_free(p);
    qt_graph_free(fg);
    qt_graph_free(rg);
    return err->code;
}
