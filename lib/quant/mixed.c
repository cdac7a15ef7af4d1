/* mixed.c: mixed precision within a memory budget (--weight-budget,
 * --act-budget, --mixed per-layer|per-channel).
 *
 * 1. Memory figures of a plan (qt_mem_figures): ROM = every quantized weight
 *    at its width, packed (ceil(elements x bits / 8) per tensor, per channel
 *    in per-channel mode), int32 biases, float layers' weights at 4 bytes;
 *    RAM = the largest set of activations alive at once at batch 1 (a value
 *    lives from its producer's step to its last reader's), each at its
 *    width, float ones at 4 bytes, the pre-activation output of a fused
 *    Conv+Relu unit not counted (never materialised).
 * 2. Sensitivity (kept separate, so it can be swapped for another measure):
 *    on the first few calibration images, the float model's logits are the
 *    reference; for every quantized weight tensor and every width, only that
 *    tensor is quantized (symmetric, min/max, per channel as the plan says)
 *    and the mean squared error of the logits is recorded; for activations
 *    (with --act-budget) the same with only that tensor fake-quantized
 *    (asymmetric min/max of the reference run). Errors of different layers
 *    are treated as additive (the usual first-order model).
 * 3. Choice: weights by Lagrangian relaxation of the multiple-choice
 *    knapsack (each unit takes the width minimising error + lambda x bytes;
 *    lambda bisected to the smallest value that fits), then the bytes left
 *    over are spent greedily on the best error drop per byte. Per-channel
 *    mode splits a layer's measured error over its channels in proportion
 *    to each channel's own weight quantization error and chooses per
 *    channel. Activations: while the peak is over the budget, the tensor
 *    alive at the peak whose next lower width costs least error per byte
 *    saved is lowered.
 * Everything runs in a fixed order on one thread's worth of arithmetic per
 * value, so the choice is the same at any thread count. */
#include "quant/quant.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int widths[] = {8, 6, 5, 4, 3, 2};
#define NW 6

int qt_budget_parse(const char *s, const char *what, struct qt_budget *b, struct qt_err *err) {
    char *end;
    b->kind = QT_BUDGET_NONE;
    b->value = 0;
    if (!s || !*s || isspace((unsigned char)*s))
        return qt_errf(err, QT_EUSAGE, "%s takes a size (bytes, KiB, MiB) or an average width (4bits), not '%s'",
                       what, s ? s : "");
    double v = strtod(s, &end);
    if (end == s || !isfinite(v))
        return qt_errf(err, QT_EUSAGE, "%s takes a size (bytes, KiB, MiB) or an average width (4bits), not '%s'",
                       what, s);
    if (v < 0)
        return qt_errf(err, QT_EUSAGE, "%s '%s': a budget cannot be negative", what, s);
    if (!strcmp(end, "bits")) {
        if (v < 2 || v > 8)
            return qt_errf(err, QT_EUSAGE, "%s '%s': an average width must be from 2 to 8 bits", what, s);
        b->kind = QT_BUDGET_BITS;
        b->value = v;
        return 0;
    }
    double mul = 1;
    if (!strcmp(end, "KiB"))
        mul = 1024;
    else if (!strcmp(end, "MiB"))
        mul = 1024 * 1024;
    else if (*end)
        return qt_errf(err, QT_EUSAGE, "%s '%s': unknown suffix '%s' (bytes, KiB, MiB or bits)", what, s, end);
    v *= mul;
    if (v < 1)
        return qt_errf(err, QT_EUSAGE, "%s '%s': a budget must be at least one byte", what, s);
    if (v > 9e15)
        return qt_errf(err, QT_EUSAGE, "%s '%s' is too large", what, s);
    b->kind = QT_BUDGET_BYTES;
    b->value = floor(v);
    return 0;
}

/* ---- memory figures --------------------------------------------------- */

static int64_t packed_bytes(int64_t n, double bits) {
    return (int64_t)ceil((double)n * bits / 8 - 1e-9);
}

/* Weight tensors of the plan's compute nodes, and ROM parts that do not
 * depend on the widths (biases, float layers). */
struct wunit {
    int t;              /* plan tensor */
    int node;
    int64_t numel, nch, inner, axis_len;
};

static int64_t rom_fixed(const struct qt_qplan *p) {
    const struct qt_graph *g = p->g;
    int64_t fixed = 0;
    for (int i = 0; i < g->nn; i++) {
        const struct qt_node *n = &g->n[i];
        if (p->qn[i].kind != QT_QN_COMPUTE)
            continue;
        const struct qt_qfacts *f = qt_qf(n);
        int w = n->in[f->weight], b = f->bias && n->nin > f->bias ? n->in[f->bias] : -1;
        if (p->qn[i].excluded || p->tensor_of[w] < 0)
            fixed += (int64_t)g->v[w].init->nbytes;
        if (b >= 0 && g->v[b].init)
            fixed += qt_tensor_numel(g->v[b].init) * 4; /* int32 or float: 4 bytes */
    }
    return fixed;
}

/* Per value at batch 1: elements (0 for values that are not activations or
 * are not materialised) and the steps it lives over. */
struct live {
    int nv, nsteps;
    int64_t *numel;
    int *first, *last;
    int *order;
};

static void live_free(struct live *l) {
    free(l->numel);
    free(l->first);
    free(l->last);
    free(l->order);
}

static int live_init(const struct qt_qplan *p, struct live *l, struct qt_err *err) {
    struct qt_graph *g = p->g;
    struct qt_exec *x = NULL;
    memset(l, 0, sizeof *l);
    l->nv = g->nv;
    l->nsteps = g->nn;
    l->numel = calloc((size_t)g->nv + 1, sizeof *l->numel);
    l->first = malloc(sizeof(int) * ((size_t)g->nv + 1));
    l->last = malloc(sizeof(int) * ((size_t)g->nv + 1));
    if (!l->numel || !l->first || !l->last) {
        live_free(l);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    if (qt_graph_topo(g, &l->order, err) || qt_exec_new(&x, g, 1, 1, err)) {
        live_free(l);
        return err->code;
    }
    for (int v = 0; v < g->nv; v++) {
        l->first[v] = -1;
        l->last[v] = -2;
        if (p->vact[v])
            l->numel[v] = qt_tensor_numel(&x->t[v]);
    }
    qt_exec_free(x);
    for (int k = 0; k < g->nn; k++) {
        int i = l->order[k];
        const struct qt_node *n = &g->n[i];
        for (int j = 0; j < n->nout; j++)
            if (n->out[j] >= 0)
                l->first[n->out[j]] = k;
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] >= 0 && k > l->last[n->in[j]])
                l->last[n->in[j]] = k;
        /* the output of a fused unit's compute node is never materialised */
        if (p->qn[i].fused >= 0 && !p->qn[i].excluded && n->nout > 0 && n->out[0] >= 0 &&
            p->tensor_of[n->out[0]] < 0)
            l->numel[n->out[0]] = 0;
    }
    for (int i = 0; i < g->ninputs; i++)
        l->first[g->inputs[i]] = 0;
    for (int i = 0; i < g->noutputs; i++)
        l->last[g->outputs[i]] = g->nn - 1;
    for (int v = 0; v < g->nv; v++)
        if (l->first[v] < 0 || l->last[v] < l->first[v])
            l->numel[v] = 0;
    return 0;
}

/* Peak bytes with vbits[v] per value (0: float, 32 bits); *at: the step. */
static int64_t live_peak(const struct live *l, const int *vbits, int *at) {
    int64_t peak = 0;
    int pk = 0;
    for (int k = 0; k < l->nsteps; k++) {
        int64_t s = 0;
        for (int v = 0; v < l->nv; v++)
            if (l->numel[v] && l->first[v] <= k && k <= l->last[v])
                s += packed_bytes(l->numel[v], vbits[v] ? vbits[v] : 32);
        if (s > peak) {
            peak = s;
            pk = k;
        }
    }
    if (at)
        *at = pk;
    return peak;
}

static int64_t weight_bytes(const struct qt_qplan *p, const struct qt_qtensor *qt, int bits8) {
    const struct qt_tensor *w = p->g->v[qt->v].init;
    int64_t n = qt_tensor_numel(w);
    if (bits8)
        return n;
    if (qt->q.cbits) {
        int64_t per = qt->q.n > 0 ? n / qt->q.n : 0, s = 0;
        for (int c = 0; c < qt->q.n; c++)
            s += per * qt->q.cbits[c];
        return (s + 7) / 8;
    }
    return packed_bytes(n, qt->q.bits);
}

int qt_mem_figures(const struct qt_qplan *p, struct qt_mem_figures *m, struct qt_err *err) {
    struct live l;
    int *vb = NULL, *vb8 = NULL;
    int64_t fixed = rom_fixed(p), nw = 0;
    double wsum = 0, asum = 0, an = 0;
    memset(m, 0, sizeof *m);
    m->rom = m->rom8 = fixed;
    for (int t = 0; t < p->nt; t++) {
        const struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role != QT_ROLE_WEIGHT)
            continue;
        int64_t n = qt_tensor_numel(p->g->v[qt->v].init);
        m->rom += weight_bytes(p, qt, 0);
        m->rom8 += weight_bytes(p, qt, 1);
        m->nweights++;
        nw += n;
        if (qt->q.cbits) {
            for (int c = 0; c < qt->q.n; c++) {
                wsum += (double)(n / qt->q.n) * qt->q.cbits[c];
                m->hist[qt->q.cbits[c]]++;
            }
        } else {
            wsum += (double)n * qt->q.bits;
            m->hist[qt->q.bits >= 0 && qt->q.bits <= 8 ? qt->q.bits : 0]++;
        }
    }
    m->wbits_avg = nw ? wsum / (double)nw : 0;
    if (live_init(p, &l, err))
        return err->code;
    vb = calloc((size_t)p->g->nv + 1, sizeof *vb);
    vb8 = calloc((size_t)p->g->nv + 1, sizeof *vb8);
    if (!vb || !vb8) {
        free(vb);
        free(vb8);
        live_free(&l);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    for (int v = 0; v < p->g->nv; v++) {
        int t = p->tensor_of[v];
        if (t >= 0 && p->t[t].q.role == QT_ROLE_ACT) {
            vb[v] = p->t[t].q.bits;
            vb8[v] = 8;
            asum += (double)l.numel[v] * vb[v];
            an += (double)l.numel[v];
        }
    }
    m->abits_avg = an > 0 ? asum / an : 0;
    m->ram = live_peak(&l, vb, NULL);
    m->ram8 = live_peak(&l, vb8, NULL);
    free(vb);
    free(vb8);
    live_free(&l);
    return 0;
}

/* ---- sensitivity ------------------------------------------------------- */

/* Fake-quantizes weights w in place: symmetric, steps as the plan's
 * (qt_weight_step), per channel when nch > 1 (channel c = (i / inner) %
 * nch), `bits` or cbits[c] wide. Adds each channel's squared error to cerr
 * (may be NULL). */
static void fq_weights(float *w, int64_t total, int64_t nch, int64_t inner, int bits, const unsigned char *cbits,
                       const struct qt_quant_opts *o, double *cerr) {
    int64_t outer = total / (nch * inner > 0 ? nch * inner : 1);
    for (int64_t c = 0; c < nch; c++) {
        int qmin, qmax, b = cbits ? cbits[c] : bits;
        qt_qrange(QT_INT8, b - (o->reduce_range ? 1 : 0), o->narrow, &qmin, &qmax);
        float s = qt_weight_step(w, outer, nch, inner, c, qmin, qmax, o->weight_mse, NULL);
        for (int64_t i = 0; i < total; i++) {
            if ((i / inner) % nch != c)
                continue;
            float q = s * (float)qt_quantize(w[i], s, 0, qmin, qmax);
            if (cerr)
                cerr[c] += ((double)q - w[i]) * ((double)q - w[i]);
            w[i] = q;
        }
    }
}

struct sens {
    int nw;                 /* weight units (plan weight tensors) */
    int *wt;                /* their plan tensors */
    double (*dw)[NW];       /* logits MSE per width index */
    double **cerr;          /* per weight unit: per channel x width, own weight squared error */
    int na;
    int *av;                /* activation values (quantized, with a producer) */
    double (*da)[NW];
};

static void sens_free(struct sens *s) {
    for (int i = 0; s->cerr && i < s->nw; i++)
        free(s->cerr[i]);
    free(s->cerr);
    free(s->wt);
    free(s->dw);
    free(s->av);
    free(s->da);
}

struct act_hook {
    int v;                  /* value to fake-quantize (-1: none) */
    int bits;
    const float *lo, *hi;   /* per value: the reference run's range */
    float *rlo, *rhi;       /* recording (reference run) or NULL */
};

static int act_after(struct qt_exec *x, int node, void *ud, struct qt_err *err) {
    struct act_hook *h = ud;
    const struct qt_node *n = &x->g->n[node];
    (void)err;
    for (int j = 0; j < n->nout; j++) {
        int v = n->out[j];
        if (v < 0 || x->t[v].dtype != QT_FLOAT || !x->t[v].data)
            continue;
        float *d = x->t[v].data;
        int64_t cnt = qt_tensor_numel(&x->t[v]);
        if (h->rlo) {
            float mn = 0, mx = 0;
            for (int64_t i = 0; i < cnt; i++) {
                mn = d[i] < mn ? d[i] : mn;
                mx = d[i] > mx ? d[i] : mx;
            }
            h->rlo[v] = mn < h->rlo[v] ? mn : h->rlo[v]; /* over the batches (from 0) */
            h->rhi[v] = mx > h->rhi[v] ? mx : h->rhi[v];
        } else if (v == h->v) {
            int qmin = 0, qmax = (1 << h->bits) - 1;
            float s;
            int32_t zp;
            qt_qparams_from_range(h->lo[v], h->hi[v], qmin, qmax, 0, &s, &zp);
            for (int64_t i = 0; i < cnt; i++)
                d[i] = s * (float)(qt_quantize(d[i], s, zp, qmin, qmax) - zp);
        }
    }
    return 0;
}

static double mse(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return n ? s / (double)n : 0;
}

/* Whether activation value v can take another width: a quantized
 * activation produced by a node (the graph input stays as the plan says). */
static int act_unit(const struct qt_qplan *p, int v) {
    int t = p->tensor_of[v];
    return t >= 0 && p->t[t].q.role == QT_ROLE_ACT && p->g->v[v].producer >= 0;
}

/* Images run through x at its batch size (run_all). */
struct batches {
    struct qt_exec *x;
    const float *img;
    size_t per;             /* floats per image */
    int nimg;
    int64_t nout;           /* output floats per image */
};

/* The images img[0..nimg) through x, x's batch at a time (the last batch
 * padded with zeros), output 0 of each into out. */
static int run_all(const struct batches *b, float *out, struct qt_err *err) {
    int bs = qt_exec_batch(b->x);
    float *in = qt_exec_input(b->x, 0);
    for (int i0 = 0; i0 < b->nimg; i0 += bs) {
        int nb = b->nimg - i0 < bs ? b->nimg - i0 : bs;
        memcpy(in, b->img + (size_t)i0 * b->per, sizeof(float) * b->per * (size_t)nb);
        if (nb < bs)
            memset(in + (size_t)nb * b->per, 0, sizeof(float) * b->per * (size_t)(bs - nb));
        if (qt_exec_run(b->x, err))
            return err->code;
        memcpy(out + (size_t)i0 * (size_t)b->nout, qt_exec_output(b->x, 0), sizeof(float) * (size_t)(nb * b->nout));
    }
    return 0;
}

static int measure(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w,
                   int nimg, int threads, int acts, struct sens *s, struct qt_err *err) {
    struct qt_graph *g = p->g;
    struct qt_exec *x = NULL;
    float *ref = NULL, *outb = NULL, *img = NULL, *lo = NULL, *hi = NULL, *save = NULL;
    int *labels = NULL;
    struct act_hook hk = {-1, 8, NULL, NULL, NULL, NULL};
    int fixed = qt_graph_fixed_batch(g);
    memset(s, 0, sizeof *s);
    /* all images in one run; a model of fixed batch size at its batch */
    if (qt_exec_new_flags(&x, g, fixed ? fixed : nimg, threads, QT_EXEC_NOFUSE, err))
        return err->code;
    int bs = qt_exec_batch(x);
    size_t per = (size_t)(qt_tensor_numel(qt_exec_input_tensor(x, 0)) / bs);
    int64_t per_out = qt_tensor_numel(qt_exec_output_tensor(x, 0)) / bs, nout = per_out * nimg;
    struct batches bt = {x, NULL, per, nimg, per_out};
    labels = malloc(sizeof(int) * (size_t)nimg);
    img = malloc(sizeof(float) * (per * (size_t)nimg + 1));
    ref = malloc(sizeof(float) * ((size_t)nout + 1));
    outb = malloc(sizeof(float) * ((size_t)nout + 1));
    lo = calloc((size_t)g->nv + 1, sizeof *lo);
    hi = calloc((size_t)g->nv + 1, sizeof *hi);
    if (!labels || !img || !ref || !outb || !lo || !hi) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    bt.img = img;
    if (qt_dataset_load(ds, pp, 0, nimg, c, h, w, img, labels, threads, 0, err))
        goto out;
    hk.rlo = lo;
    hk.rhi = hi;
    x->after_node = act_after;
    x->after_ud = &hk;
    if (run_all(&bt, ref, err))
        goto out;
    hk.rlo = hk.rhi = NULL;
    hk.lo = lo;
    hk.hi = hi;
    for (int t = 0; t < p->nt; t++)
        s->nw += p->t[t].q.role == QT_ROLE_WEIGHT;
    for (int v = 0; acts && v < g->nv; v++)
        s->na += act_unit(p, v);
    s->wt = calloc((size_t)s->nw + 1, sizeof *s->wt);
    s->dw = calloc((size_t)s->nw + 1, sizeof *s->dw);
    s->cerr = calloc((size_t)s->nw + 1, sizeof *s->cerr);
    s->av = calloc((size_t)s->na + 1, sizeof *s->av);
    s->da = calloc((size_t)s->na + 1, sizeof *s->da);
    if (!s->wt || !s->dw || !s->cerr || !s->av || !s->da) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    int k = 0;
    for (int t = 0; t < p->nt; t++) {
        struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role != QT_ROLE_WEIGHT)
            continue;
        struct qt_tensor *wt = g->v[qt->v].init;
        const struct qt_node *n = &g->n[qt->node];
        int per_ch = p->qn[qt->node].per_channel, axis = qt_qf_weight_axis(n, wt->ndim);
        int64_t nch = per_ch ? wt->dims[axis] : 1, total = qt_tensor_numel(wt), inner = 1;
        for (int d = axis + 1; d < wt->ndim; d++)
            inner *= wt->dims[d];
        s->wt[k] = t;
        s->cerr[k] = calloc((size_t)(per_ch ? nch : 1) * NW + 1, sizeof(double));
        free(save);
        save = malloc(wt->nbytes + 1);
        if (!s->cerr[k] || !save) {
            qt_errf(err, QT_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(save, wt->data, wt->nbytes);
        for (int b = 0; b < NW; b++) {
            double *ce = calloc((size_t)nch + 1, sizeof *ce);
            if (!ce) {
                qt_errf(err, QT_ENOMEM, "out of memory");
                goto out;
            }
            fq_weights(wt->data, total, nch, inner, widths[b], NULL, &p->o, ce);
            for (int64_t ch = 0; ch < nch; ch++)
                s->cerr[k][ch * NW + b] = ce[ch];
            free(ce);
            int rc = run_all(&bt, outb, err);
            memcpy(wt->data, save, wt->nbytes);
            if (rc)
                goto out;
            s->dw[k][b] = mse(outb, ref, nout);
        }
        k++;
    }
    k = 0;
    for (int v = 0; acts && v < g->nv; v++) {
        if (!act_unit(p, v))
            continue;
        s->av[k] = v;
        for (int b = 0; b < NW; b++) {
            hk.v = v;
            hk.bits = widths[b];
            if (run_all(&bt, outb, err))
                goto out;
            s->da[k][b] = mse(outb, ref, nout);
        }
        k++;
    }
out:
    free(save);
    free(labels);
    free(img);
    free(outb);
    free(ref);
    free(lo);
    free(hi);
    qt_exec_free(x);
    return err->code;
}

/* Errors that do not grow as the width shrinks are noise of the measure:
 * make each row non-increasing in width (never better with fewer bits). */
static void monotone(double *d) {
    for (int b = 1; b < NW; b++)
        if (d[b] < d[b - 1])
            d[b] = d[b - 1];
}

/* ---- choice ------------------------------------------------------------ */

struct unit {
    int64_t n;              /* weight elements */
    double d[NW];
    int pick;               /* width index */
};

/* Each unit's width for lambda: argmin d + lambda * bits * n / 8. */
static int64_t pick_all(struct unit *u, int nu, double lambda, int minb) {
    double bytes = 0;
    for (int i = 0; i < nu; i++) {
        int best = 0;
        double bv = INFINITY;
        for (int b = 0; b < NW; b++) {
            if (widths[b] < minb)
                continue;
            double v = u[i].d[b] + lambda * (double)u[i].n * widths[b] / 8;
            if (v < bv) {
                bv = v;
                best = b;
            }
        }
        u[i].pick = best;
        bytes += (double)u[i].n * widths[best] / 8;
    }
    return (int64_t)ceil(bytes);
}

/* Chooses widths for units within `budget` bytes of packed weights
 * (units' own bytes only). bytes_of: exact packed bytes of the choice. */
static void choose(struct unit *u, int nu, double budget) {
    double lo = 0, hi = 1;
    if (pick_all(u, nu, 0, 2) <= budget)
        return;
    while (pick_all(u, nu, hi, 2) > budget && hi < 1e300)
        hi *= 4;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (pick_all(u, nu, mid, 2) > budget)
            lo = mid;
        else
            hi = mid;
    }
    pick_all(u, nu, hi, 2);
    /* spend what is left: best error drop per byte that still fits */
    double used = 0;
    for (int i = 0; i < nu; i++)
        used += (double)u[i].n * widths[u[i].pick] / 8;
    for (;;) {
        int bi = -1, bb = 0;
        double best = 0;
        for (int i = 0; i < nu; i++)
            for (int b = 0; b < u[i].pick; b++) {
                double extra = (double)u[i].n * (widths[b] - widths[u[i].pick]) / 8;
                double gain = u[i].d[u[i].pick] - u[i].d[b];
                if (used + extra > budget || gain <= 0)
                    continue;
                if (gain / extra > best) {
                    best = gain / extra;
                    bi = i;
                    bb = b;
                }
            }
        if (bi < 0)
            break;
        used += (double)u[bi].n * (widths[bb] - widths[u[bi].pick]) / 8;
        u[bi].pick = bb;
    }
}

static int64_t budget_bytes(const struct qt_budget *b, double per_bit_elems, int64_t fixed) {
    if (b->kind == QT_BUDGET_BITS)
        return (int64_t)ceil(per_bit_elems * b->value / 8 - 1e-9) + fixed;
    return (int64_t)b->value;
}

static int width_index(int bits) {
    for (int b = 0; b < NW; b++)
        if (widths[b] == bits)
            return b;
    return 0;
}

void qt_mixed_free(struct qt_mixed *m) {
    if (!m)
        return;
    for (int i = 0; m->layers && i < m->nlayers; i++)
        free((char *)m->layers[i].node);
    for (int i = 0; m->cbits && i < m->ncbits; i++) {
        free((char *)m->cbits[i].node);
        free((unsigned char *)m->cbits[i].bits);
    }
    free(m->layers);
    free(m->cbits);
    memset(m, 0, sizeof *m);
}

static int add_layer(struct qt_mixed *m, const char *node, int wbits, int abits, unsigned char *cbits, int ncb,
                     struct qt_err *err) {
    if (cbits) {
        struct qt_layer_cbits *nc = realloc(m->cbits, sizeof *nc * ((size_t)m->ncbits + 1));
        char *nm = strdup(node);
        if (nc)
            m->cbits = nc;
        if (!nc || !nm) {
            free(nm);
            free(cbits);
            return qt_errf(err, QT_ENOMEM, "out of memory");
        }
        nc[m->ncbits++] = (struct qt_layer_cbits){nm, cbits, ncb};
    }
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i].node, node)) {
            if (wbits)
                m->layers[i].wbits = wbits;
            if (abits)
                m->layers[i].abits = abits;
            return 0;
        }
    struct qt_layer_set *nl = realloc(m->layers, sizeof *nl * ((size_t)m->nlayers + 1));
    char *nm = strdup(node);
    if (nl)
        m->layers = nl;
    if (!nl || !nm) {
        free(nm);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    nl[m->nlayers++] = (struct qt_layer_set){nm, wbits, abits, 0};
    return 0;
}

/* --weight-budget: sets m->rom_budget and *fixed (the bytes of biases and
 * float layers); a budget the weights cannot meet at 2 bits is a usage error */
static int mixed_rom_budget(const struct qt_qplan *p, struct qt_mixed *m, int64_t *fixed, struct qt_err *err) {
    const struct qt_quant_opts *o = &p->o;
    int64_t welems = 0, w2;
    *fixed = rom_fixed(p);
    w2 = *fixed;
    for (int t = 0; t < p->nt; t++)
        if (p->t[t].q.role == QT_ROLE_WEIGHT) {
            int64_t n = qt_tensor_numel(p->g->v[p->t[t].v].init);
            welems += n;
            w2 += packed_bytes(n, 2);
        }
    if (o->weight_budget.kind) {
        m->rom_budget = budget_bytes(&o->weight_budget, (double)welems, *fixed);
        if (m->rom_budget < w2)
            return qt_errf(err, QT_EUSAGE,
                           "--weight-budget %lld bytes is below what the weights need at 2 bits (%lld bytes: "
                           "%lld weights, %lld bytes of biases and float layers)",
                           (long long)m->rom_budget, (long long)w2, (long long)welems, (long long)*fixed);
    }
    return 0;
}

/* every quantized activation's current width into vb (0 for the rest) */
static void act_widths(const struct qt_qplan *p, int *vb) {
    for (int v = 0; v < p->g->nv; v++) {
        int t = p->tensor_of[v];
        vb[v] = t >= 0 && p->t[t].q.role == QT_ROLE_ACT ? p->t[t].q.bits : 0;
    }
}

/* --act-budget: sets m->ram_budget and leaves vb at the activations' current
 * widths; a budget the activations cannot meet at 2 bits is a usage error */
static int mixed_ram_budget(const struct qt_qplan *p, const struct live *l, int *vb, struct qt_mixed *m,
                            struct qt_err *err) {
    const struct qt_quant_opts *o = &p->o;
    for (int v = 0; v < p->g->nv; v++) {
        int t = p->tensor_of[v];
        vb[v] = t >= 0 && p->t[t].q.role == QT_ROLE_ACT ? (act_unit(p, v) ? 2 : p->t[t].q.bits) : 0;
    }
    int64_t a2 = live_peak(l, vb, NULL);
    act_widths(p, vb);
    if (o->act_budget.kind == QT_BUDGET_BITS) {
        /* the peak with every quantized activation at that width */
        for (int v = 0; v < p->g->nv; v++)
            if (vb[v])
                vb[v] = (int)ceil(o->act_budget.value - 1e-9);
        int at;
        m->ram_budget = live_peak(l, vb, &at);
        act_widths(p, vb);
    } else {
        m->ram_budget = (int64_t)o->act_budget.value;
    }
    if (m->ram_budget < a2)
        return qt_errf(err, QT_EUSAGE,
                       "--act-budget %lld bytes is below what the activations need at 2 bits (%lld bytes at "
                       "their peak, float inputs and outputs at 4 bytes)",
                       (long long)m->ram_budget, (long long)a2);
    return 0;
}

/* the units the weight widths are chosen over: one per weight tensor, or in
 * per-channel mode one per channel of a per-channel tensor; returns their count */
static int weight_units(const struct qt_qplan *p, const struct sens *s, int per_ch_mode, struct unit *u) {
    int ui = 0;
    for (int k = 0; k < s->nw; k++) {
        const struct qt_qtensor *qt = &p->t[s->wt[k]];
        const struct qt_tensor *wt = p->g->v[qt->v].init;
        int64_t n = qt_tensor_numel(wt);
        monotone(s->dw[k]);
        int per_ch = p->qn[qt->node].per_channel;
        int64_t nch = wt->dims[qt_qf_weight_axis(&p->g->n[qt->node], wt->ndim)];
        if (!per_ch_mode || !per_ch) {
            u[ui].n = n;
            memcpy(u[ui].d, s->dw[k], sizeof u[ui].d);
            ui++;
            continue;
        }
        /* the layer's error split over its channels by their own weight error */
        for (int64_t ch = 0; ch < nch; ch++) {
            u[ui].n = n / nch;
            for (int b = 0; b < NW; b++) {
                double tot = 0;
                for (int64_t cc = 0; cc < nch; cc++)
                    tot += s->cerr[k][cc * NW + b];
                u[ui].d[b] = tot > 0 ? s->dw[k][b] * s->cerr[k][ch * NW + b] / tot : 0;
            }
            monotone(u[ui].d);
            ui++;
        }
    }
    return ui;
}

/* the chosen units' widths into m: a layer's width, or its channels' widths
 * and their largest */
static int record_weight_widths(const struct qt_qplan *p, const struct sens *s, int per_ch_mode,
                                const struct unit *u, struct qt_mixed *m, struct qt_err *err) {
    int ui = 0;
    for (int k = 0; k < s->nw; k++) {
        const struct qt_qtensor *qt = &p->t[s->wt[k]];
        const struct qt_tensor *wt = p->g->v[qt->v].init;
        int per_ch = p->qn[qt->node].per_channel;
        int64_t nch = wt->dims[qt_qf_weight_axis(&p->g->n[qt->node], wt->ndim)];
        const char *name = p->g->n[qt->node].name;
        if (!per_ch_mode || !per_ch) {
            if (add_layer(m, name, widths[u[ui].pick], 0, NULL, 0, err))
                return err->code;
            ui++;
            continue;
        }
        unsigned char *cb = malloc((size_t)nch + 1);
        int mx = 2;
        if (!cb)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        for (int64_t ch = 0; ch < nch; ch++) {
            cb[ch] = (unsigned char)widths[u[ui + ch].pick];
            mx = cb[ch] > mx ? cb[ch] : mx;
        }
        if (add_layer(m, name, mx, 0, cb, (int)nch, err))
            return err->code;
        ui += (int)nch;
    }
    return 0;
}

/* weights: widths within m->rom_budget, fixed bytes aside */
static int choose_weights(const struct qt_qplan *p, const struct sens *s, int per_ch_mode, int64_t fixed,
                          struct qt_mixed *m, struct qt_err *err) {
    int nu = 0;
    for (int k = 0; k < s->nw; k++) {
        const struct qt_qtensor *qt = &p->t[s->wt[k]];
        const struct qt_tensor *wt = p->g->v[qt->v].init;
        nu += per_ch_mode && p->qn[qt->node].per_channel
                  ? (int)wt->dims[qt_qf_weight_axis(&p->g->n[qt->node], wt->ndim)]
                  : 1;
    }
    struct unit *u = calloc((size_t)nu + 1, sizeof *u);
    if (!u)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    nu = weight_units(p, s, per_ch_mode, u);
    /* per-unit byte rounding: budget on the units' own bytes, with a
     * byte per tensor of slack for the ceil of packing */
    double room = (double)(m->rom_budget - fixed) - (per_ch_mode ? 0 : s->nw) - (per_ch_mode ? s->nw : 0);
    choose(u, nu, room);
    record_weight_widths(p, s, per_ch_mode, u, m, err);
    free(u);
    return err->code;
}

/* activations: lower the cheapest tensor alive at the peak until the peak
 * fits m->ram_budget, then record the changed widths in m */
static int choose_acts(const struct qt_qplan *p, struct sens *s, const struct live *l, int *vb, struct qt_mixed *m,
                       struct qt_err *err) {
    int *cur = calloc((size_t)p->g->nv + 1, sizeof *cur);
    if (!cur)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int k = 0; k < s->na; k++) {
        monotone(s->da[k]);
        cur[s->av[k]] = k + 1;
    }
    for (;;) {
        int at;
        if (live_peak(l, vb, &at) <= m->ram_budget)
            break;
        int bk = -1, bb = 0;
        double best = INFINITY;
        for (int k = 0; k < s->na; k++) {
            int v = s->av[k];
            if (!l->numel[v] || l->first[v] > at || at > l->last[v])
                continue;
            int b = width_index(vb[v]);
            if (b + 1 >= NW)
                continue;
            double saved = (double)(packed_bytes(l->numel[v], vb[v]) - packed_bytes(l->numel[v], widths[b + 1]));
            double cost = (s->da[k][b + 1] - s->da[k][b]) / (saved > 0 ? saved : 1);
            if (cost < best) {
                best = cost;
                bk = k;
                bb = b + 1;
            }
        }
        if (bk < 0) {
            free(cur);
            return qt_errf(err, QT_EUSAGE, "--act-budget %lld bytes cannot be met: the activations alive at node '%s' "
                                           "need more at 2 bits",
                           (long long)m->ram_budget, p->g->n[l->order[at]].name);
        }
        vb[s->av[bk]] = widths[bb];
    }
    free(cur);
    for (int k = 0; k < s->na; k++) {
        int v = s->av[k], t = p->tensor_of[v];
        if (vb[v] == p->t[t].q.bits)
            continue;
        /* abits of the node that produces it (a fused unit: its compute node) */
        int prod = p->g->v[v].producer;
        if (p->qn[prod].kind == QT_QN_ACT_FUSED)
            for (int i = 0; i < p->g->nn; i++)
                if (p->qn[i].fused == prod)
                    prod = i;
        if (add_layer(m, p->g->n[prod].name, 0, vb[v], NULL, 0, err))
            return err->code;
    }
    return 0;
}

int qt_mixed_choose(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w,
                    int threads, struct qt_mixed *m, struct qt_err *err) {
    const struct qt_quant_opts *o = &p->o;
    struct sens s;
    struct live l;
    int *vb = NULL;
    int nimg = o->mixed_images > 0 ? o->mixed_images : 16, nds = qt_dataset_count(ds);
    int per_ch_mode = o->mixed == QT_MIXED_CHANNEL;
    memset(m, 0, sizeof *m);
    memset(&s, 0, sizeof s);
    memset(&l, 0, sizeof l);
    if (nimg > nds)
        nimg = nds;
    if (nimg < 1)
        return qt_errf(err, QT_EUSAGE, "mixed precision needs calibration images to measure sensitivity");
    /* the budgets first: a budget nothing can meet is a usage error before
     * any measuring */
    int64_t fixed;
    if (mixed_rom_budget(p, m, &fixed, err))
        return err->code;
    if (live_init(p, &l, err))
        return err->code;
    vb = calloc((size_t)p->g->nv + 1, sizeof *vb);
    if (!vb) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    if (o->act_budget.kind && mixed_ram_budget(p, &l, vb, m, err))
        return live_free(&l), free(vb), err->code;
    if (measure(p, ds, pp, c, h, w, nimg, threads, o->act_budget.kind != QT_BUDGET_NONE, &s, err))
        goto out;
    m->images = nimg;
    if (o->weight_budget.kind && choose_weights(p, &s, per_ch_mode, fixed, m, err))
        goto out;
    if (o->act_budget.kind)
        choose_acts(p, &s, &l, vb, m, err);
out:
    free(vb);
    live_free(&l);
    sens_free(&s);
    if (err->code)
        qt_mixed_free(m);
    return err->code;
}

/* Per-channel widths of weight tensors after tuning: weights clamped to each
 * channel's own grid, so the written integers stay within its width. */
void qt_mixed_clamp(struct qt_qplan *p) {
    for (int t = 0; t < p->nt; t++) {
        struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role != QT_ROLE_WEIGHT || !qt->q.cbits || qt->q.axis < 0)
            continue;
        struct qt_tensor *wt = p->g->v[qt->v].init;
        float *W = wt->data;
        int64_t total = qt_tensor_numel(wt), inner = 1;
        for (int d = qt->q.axis + 1; d < wt->ndim; d++)
            inner *= wt->dims[d];
        for (int64_t i = 0; i < total; i++) {
            int64_t c = (i / inner) % qt->q.n;
            int qmin, qmax;
            qt_qrange(QT_INT8, qt->q.cbits[c] - (p->o.reduce_range ? 1 : 0), p->o.narrow, &qmin, &qmax);
            float lo = qt->q.scale[c] * (float)qmin, hi = qt->q.scale[c] * (float)qmax;
            W[i] = W[i] < lo ? lo : W[i] > hi ? hi : W[i];
        }
    }
}

int qt_quant_info_memory(const char *model, const char *quant_info, struct qt_mem_figures *m, struct qt_err *err) {
    struct qt_graph *g = NULL;
    struct qt_qplan *p = NULL;
    int ntuned;
    memset(m, 0, sizeof *m);
    if (!qt_graph_load(&g, model, err) && !qt_qplan_from_info(&p, g, model, quant_info, &ntuned, err))
        qt_mem_figures(p, m, err);
    qt_qplan_free(p);
    qt_graph_free(g);
    return err->code;
}

int qt_mixed_replan(struct qt_qplan **pp_, const struct qt_graph *g, const struct qt_quant_opts *q,
                    struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w, int threads,
                    struct qt_err *err) {
    struct qt_mixed *mx = calloc(1, sizeof *mx);
    struct qt_layer_set *mls = NULL;
    struct qt_qplan *np = NULL;
    if (!mx)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    if (qt_mixed_choose(*pp_, ds, pp, c, h, w, threads, mx, err))
        goto fail;
    mls = malloc(sizeof *mls * ((size_t)mx->nlayers + (size_t)q->nlayers + 1));
    if (!mls) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(mls, mx->layers, sizeof *mls * (size_t)mx->nlayers);
    if (q->nlayers) /* the caller's own settings (--max-drop's raised layers) after the chosen widths */
        memcpy(mls + mx->nlayers, q->layers, sizeof *mls * (size_t)q->nlayers);
    struct qt_quant_opts q2 = *q;
    q2.layers = mls;
    q2.nlayers = mx->nlayers + q->nlayers;
    if (mx->ncbits) {
        q2.cbits = mx->cbits;
        q2.ncbits = mx->ncbits;
    }
    if (qt_qplan_build(&np, g, &q2, NULL, NULL, err) || qt_qplan_weights(np, err))
        goto fail;
    np->mixed = mx;
    np->mixed_layers = mls;
    qt_qplan_free(*pp_);
    *pp_ = np;
    return 0;
fail:
    qt_qplan_free(np);
    free(mls);
    qt_mixed_free(mx);
    free(mx);
    return err->code;
}
