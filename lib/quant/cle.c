/* cle.c: cross-layer equalization (Nagel et al. 2019, "Data-Free
 * Quantization Through Weight Equalization and Bias Correction", arXiv
 * 1906.04721), on the prepared float graph of a plan, before its weights
 * are quantized.
 *
 * A pair is a Conv or Gemm A whose only reader is (optionally) a Relu or a
 * Clip with lower bound 0, then optionally GlobalAveragePool and Flatten,
 * then a Conv (group 1 or depthwise) or Gemm B, every value on the way read
 * once. Since relu(x / s) = relu(x) / s for s > 0, dividing output channel i
 * of A (weights and bias) by s_i and multiplying input channel i of B's
 * weights by s_i leaves B's output unchanged. With r1_i the largest |w| of
 * A's channel i and r2_i that of B's input channel i,
 *   s_i = sqrt(r1_i r2_i) / r2_i
 * makes both r1_i / s_i and r2_i s_i equal to sqrt(r1_i r2_i): one weight
 * scale per tensor then fits every channel about as well. Chains
 * (Conv -> depthwise -> Conv) are equalized pair by pair, repeated until the
 * factors are all within 1e-4 of 1 (at most 100 rounds).
 *
 * Clip(0, M) (ReLU6) is not positively homogeneous: clip(x / s, 0, M) s =
 * clip(x, 0, M s). AIMET replaces ReLU6 by ReLU for CLE, which changes the
 * float model (MobileNetV1-0.75 of ../shared: 77.03 -> 70.27 top-1). qtool
 * keeps the Clip and scales only the channels whose largest value before it
 * on the calibration images, m_i, stays below M / 2, and only so far that
 * it stays there (s_i >= 2 m_i / M); channels that come nearer M keep
 * s_i = 1. On those images the Clip then never acts on a changed channel,
 * so the float outputs are the same up to rounding; elsewhere a value would
 * have to exceed twice the calibration maximum (measured: the equalized
 * MobileNetV2 agrees with the original on all 154 held-out images, output
 * SQNR 113 dB).
 * A channel that is never positive on the calibration images (dead after
 * the Relu/Clip) is not equalized to sqrt(r1_i r2_i): its weights can be
 * tiny (a BatchNorm with a tiny variance folded) and its bias then grows
 * by 1 / s_i past what an int32 bias at the weight step holds
 * (MobileNetV1's first layer: -3.4e7). It is enlarged only as far as B's
 * column comes down to the largest of the live channels' (r2 of the first
 * depthwise layer: 224 -> 3.1), which is what matters for a per-tensor
 * step, and stays dead, so this is exact on those images too.
 * High-bias absorption (the paper's section 4.1): through a Relu (no upper
 * bound) into a B that reads no padding (a Gemm, or a Conv with zero pads,
 * whose bias exists), c_i = the smallest value of A's channel i over the
 * calibration images when positive is subtracted from A's bias and
 * W_B[:, i] c_i added to B's bias: relu(x - c) = relu(x) - c for x >= c.
 * (The paper takes c = max(0, beta - 3 gamma) from BatchNorm statistics;
 * qtool's graphs are BatchNorm-folded, so the calibration minimum stands
 * in for it.)
 *
 * Deterministic: one thread of float arithmetic on the weights; the data
 * pass only takes minima and maxima. */
#include "quant/quant.h"

#include <cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLE_ROUNDS 100
#define CLE_CLIP_MARGIN 2.0

struct cle_pair {
    int a, b;          /* nodes of p->g */
    int act;           /* the activation node or -1 */
    float hi;          /* the activation's upper bound (INFINITY: none) */
    int absorb;        /* high-bias absorption possible (Relu, B reads no padding, both biases) */
    int64_t nch;
    /* A: weights [nch x aper] (a_col: [aper x nch], Gemm without transB) */
    float *aw, *ab;
    int64_t aper;
    int a_col;
    /* B: element (o, i, k): bk 0: w[(o C + i) K + k]; 1 (depthwise): w[i K + k], o = i; 2: w[i O + o] */
    float *bw, *bb;
    int64_t bo, bk_n;
    int bk;
    float *mn, *mx;    /* per channel of A's output over the calibration images (NULL: not needed) */
};

static int const_init(const struct qt_graph *g, int v) {
    return v >= 0 && g->v[v].kind == QT_V_INIT && g->v[v].init && g->v[v].init->dtype == QT_FLOAT;
}

static int readers(const struct qt_graph *g, int v) {
    int c = 0;
    for (int i = 0; i < g->nn; i++)
        for (int j = 0; j < g->n[i].nin; j++)
            c += g->n[i].in[j] == v;
    for (int i = 0; i < g->noutputs; i++)
        c += g->outputs[i] == v;
    return c;
}

/* The single reader of v (-1 when v has none, several or is an output). */
static int only_reader(const struct qt_graph *g, int v) {
    int c;
    if (v < 0 || readers(g, v) != 1 || qt_graph_consumers(g, v, &c, 1) != 1)
        return -1;
    return c;
}

/* A's weights and bias as output channels. */
static int view_a(const struct qt_graph *g, const struct qt_node *n, struct cle_pair *P) {
    struct qt_err e = {0};
    int conv = n->op == &qt_op_conv;
    if ((!conv && n->op != &qt_op_gemm) || n->nin < 2 || !const_init(g, n->in[1]) ||
        readers(g, n->in[1]) != 1)
        return -1;
    struct qt_tensor *w = g->v[n->in[1]].init;
    if (conv) {
        if (w->ndim < 3)
            return -1;
        P->nch = w->dims[0];
        P->a_col = 0;
    } else {
        if (w->ndim != 2 || qt_attr_int(n, "transA", 0, &e) || qt_attr_float(n, "alpha", 1, &e) != 1.0f ||
            qt_attr_float(n, "beta", 1, &e) != 1.0f || e.code)
            return -1;
        P->a_col = !qt_attr_int(n, "transB", 0, &e);
        P->nch = P->a_col ? w->dims[1] : w->dims[0];
    }
    P->aw = w->data;
    P->aper = qt_tensor_numel(w) / P->nch;
    P->ab = NULL;
    if (n->nin > 2 && n->in[2] >= 0) {
        if (!const_init(g, n->in[2]) || readers(g, n->in[2]) != 1 || qt_tensor_numel(g->v[n->in[2]].init) != P->nch)
            return -1;
        P->ab = g->v[n->in[2]].init->data;
    }
    return 0;
}

/* B's weights as input channels; *pads: B reads zero padding. */
static int view_b(const struct qt_graph *g, const struct qt_node *n, int x, struct cle_pair *P, int *pads) {
    struct qt_err e = {0};
    int conv = n->op == &qt_op_conv;
    *pads = 0;
    if ((!conv && n->op != &qt_op_gemm) || n->nin < 2 || n->in[0] != x ||
        !const_init(g, n->in[1]) || readers(g, n->in[1]) != 1)
        return -1;
    for (int j = 1; j < n->nin; j++)
        if (n->in[j] == x)
            return -1;
    struct qt_tensor *w = g->v[n->in[1]].init;
    if (conv) {
        int64_t grp = qt_attr_int(n, "group", 1, &e);
        const int64_t *pv;
        int np = qt_attr_ints(n, "pads", &pv, &e);
        const char *ap = qt_attr_str(n, "auto_pad", "NOTSET", &e);
        if (e.code || w->ndim < 3)
            return -1;
        for (int k = 0; k < np; k++)
            *pads |= pv[k] != 0;
        if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID"))
            *pads = 1;
        int64_t K = qt_tensor_numel(w) / (w->dims[0] * w->dims[1]);
        if (grp == 1 && w->dims[1] == P->nch) {
            P->bk = 0;
            P->bo = w->dims[0];
            P->bk_n = K;
        } else if (grp == P->nch && w->dims[0] == P->nch && w->dims[1] == 1) {
            P->bk = 1;
            P->bo = P->nch;
            P->bk_n = K;
        } else {
            return -1;
        }
    } else {
        if (w->ndim != 2 || qt_attr_int(n, "transA", 0, &e) || qt_attr_float(n, "alpha", 1, &e) != 1.0f ||
            qt_attr_float(n, "beta", 1, &e) != 1.0f || e.code)
            return -1;
        int tb = (int)qt_attr_int(n, "transB", 0, &e);
        if ((tb ? w->dims[1] : w->dims[0]) != P->nch)
            return -1;
        P->bk = tb ? 0 : 2;
        P->bo = tb ? w->dims[0] : w->dims[1];
        P->bk_n = 1;
    }
    P->bw = w->data;
    P->bb = NULL;
    if (n->nin > 2 && n->in[2] >= 0 && const_init(g, n->in[2]) && readers(g, n->in[2]) == 1 &&
        qt_tensor_numel(g->v[n->in[2]].init) == P->bo)
        P->bb = g->v[n->in[2]].init->data;
    return 0;
}

/* The pair starting at node a, or -1. */
static int find_pair(const struct qt_graph *g, int a, struct cle_pair *P) {
    memset(P, 0, sizeof *P);
    P->a = a;
    P->act = -1;
    P->hi = INFINITY;
    const struct qt_node *n = &g->n[a];
    if (n->nout < 1 || view_a(g, n, P))
        return -1;
    int v = n->out[0], k = only_reader(g, v), relu = 1;
    if (k < 0)
        return -1;
    float lo;
    if (qt_act_bounds(g, &g->n[k], &lo, &P->hi)) { /* a Relu or a Clip (NaN: bounds not constant) */
        if (lo != 0.0f || !(P->hi > 0))
            return -1;
        P->act = k;
        v = g->n[k].out[0];
        if ((k = only_reader(g, v)) < 0)
            return -1;
    } else {
        relu = 0; /* linear: nothing to absorb through */
    }
    int gap = 0;
    if (g->n[k].op == &qt_op_globalaveragepool) {
        gap = 1;
        v = g->n[k].out[0];
        if ((k = only_reader(g, v)) < 0)
            return -1;
    }
    if (gap && g->n[k].op == &qt_op_flatten) {
        struct qt_err e = {0};
        if (qt_attr_int(&g->n[k], "axis", 1, &e) != 1 || e.code)
            return -1;
        v = g->n[k].out[0];
        if ((k = only_reader(g, v)) < 0)
            return -1;
    }
    int pads;
    if (view_b(g, &g->n[k], v, P, &pads))
        return -1;
    if (g->n[k].op == &qt_op_gemm && !gap && n->op == &qt_op_conv)
        return -1; /* a Conv's [N, C, H, W] output read by a Gemm directly: not channel for channel */
    if (g->n[k].op == &qt_op_conv && (gap || n->op == &qt_op_gemm))
        return -1;
    P->b = k;
    P->absorb = relu && P->act >= 0 && isinf(P->hi) && !pads && P->ab && P->bb;
    return 0;
}

static float a_range(const struct cle_pair *P, int64_t i) {
    float r = 0;
    for (int64_t e = 0; e < P->aper; e++)
        r = fmaxf(r, fabsf(P->a_col ? P->aw[e * P->nch + i] : P->aw[i * P->aper + e]));
    return r;
}

static void a_scale(struct cle_pair *P, int64_t i, float f) {
    for (int64_t e = 0; e < P->aper; e++) {
        float *w = P->a_col ? &P->aw[e * P->nch + i] : &P->aw[i * P->aper + e];
        *w *= f;
    }
    if (P->ab)
        P->ab[i] *= f;
}

static float *b_at(const struct cle_pair *P, int64_t o, int64_t i, int64_t k) {
    switch (P->bk) {
    case 0: return &P->bw[(o * P->nch + i) * P->bk_n + k];
    case 1: return &P->bw[i * P->bk_n + k];
    default: return &P->bw[i * P->bo + o];
    }
}

/* Output channels of B that read input channel i: [o0, o1). */
static void b_outs(const struct cle_pair *P, int64_t i, int64_t *o0, int64_t *o1) {
    *o0 = P->bk == 1 ? i : 0;
    *o1 = P->bk == 1 ? i + 1 : P->bo;
}

static float b_range(const struct cle_pair *P, int64_t i) {
    int64_t o0, o1;
    float r = 0;
    b_outs(P, i, &o0, &o1);
    for (int64_t o = o0; o < o1; o++)
        for (int64_t k = 0; k < P->bk_n; k++)
            r = fmaxf(r, fabsf(*b_at(P, o, i, k)));
    return r;
}

static void b_scale(struct cle_pair *P, int64_t i, float f) {
    int64_t o0, o1;
    b_outs(P, i, &o0, &o1);
    for (int64_t o = o0; o < o1; o++)
        for (int64_t k = 0; k < P->bk_n; k++)
            *b_at(P, o, i, k) *= f;
}

/* Per-channel minima and maxima of the pairs' A outputs. */
struct cle_pass {
    struct cle_pair *P;
    int np;
};

static int cle_after(struct qt_exec *x, int node, void *ud, struct qt_err *err) {
    struct cle_pass *c = ud;
    (void)err;
    for (int l = 0; l < c->np; l++) {
        struct cle_pair *P = &c->P[l];
        if (P->a != node || !P->mx)
            continue;
        const struct qt_tensor *y = &x->t[x->g->n[node].out[0]];
        if (y->ndim < 2 || y->dims[1] != P->nch)
            continue;
        int64_t n = y->dims[0], inner = qt_tensor_numel(y) / (n * P->nch);
        const float *v = y->data;
        for (int64_t b = 0; b < n; b++)
            for (int64_t ch = 0; ch < P->nch; ch++) {
                const float *s = v + (b * P->nch + ch) * inner;
                float mn = P->mn[ch], mx = P->mx[ch];
                for (int64_t i = 0; i < inner; i++) { /* not fminf/fmaxf: a library call each */
                    mn = s[i] < mn ? s[i] : mn;
                    mx = s[i] > mx ? s[i] : mx;
                }
                P->mn[ch] = mn;
                P->mx[ch] = mx;
            }
    }
    return 0;
}

/* One round over the pairs; returns the largest |s - 1|. */
static double cle_round(struct cle_pair *P, int np, int *nclamped) {
    double worst = 0;
    for (int l = 0; l < np; l++) {
        struct cle_pair *L = &P[l];
        float live = 0; /* largest r2 of the channels that are positive somewhere */
        for (int64_t i = 0; L->mx && i < L->nch; i++)
            if (L->mx[i] > 0)
                live = fmaxf(live, b_range(L, i));
        for (int64_t i = 0; i < L->nch; i++) {
            float r1 = a_range(L, i), r2 = b_range(L, i);
            if (!(r1 > 0) || !(r2 > 0))
                continue;
            double s = sqrt((double)r1 * r2) / r2;
            if (L->mx && !(L->mx[i] > 0)) {
                /* dead on the images: enlarging it stays exact, but only as far as
                 * B's column comes down to the live channels' largest (its bias
                 * grows by 1 / s) */
                if (!(r2 > live) || !(live > 0))
                    continue;
                s = fmax(s, (double)live / r2);
            } else if (isfinite(L->hi)) {
                /* only channels below M / margin, and only while they stay there */
                double lo = CLE_CLIP_MARGIN * L->mx[i] >= L->hi ? 1.0 : CLE_CLIP_MARGIN * L->mx[i] / L->hi;
                double c = lo >= 1.0 ? 1.0 : fmax(s, lo);
                if (c != s && nclamped)
                    (*nclamped)++;
                s = c;
            }
            if (!(s > 1e-30) || !isfinite(s) || fabs(s - 1) < 1e-7)
                continue;
            a_scale(L, i, (float)(1 / s));
            b_scale(L, i, (float)s);
            if (L->mx) {
                L->mx[i] = (float)(L->mx[i] / s);
                L->mn[i] = (float)(L->mn[i] / s);
            }
            worst = fmax(worst, fabs(s - 1));
        }
    }
    return worst;
}

int qt_cle(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int total, int batch, int c,
           int h, int w, int threads, struct qt_cle_report *rep, struct qt_err *err) {
    struct qt_graph *g = p->g;
    struct cle_pair *P = calloc((size_t)g->nn + 1, sizeof *P);
    int *order = NULL, np = 0, need_data = 0;
    memset(rep, 0, sizeof *rep);
    if (!P)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    if (qt_graph_topo(g, &order, err))
        goto out;
    for (int k = 0; k < g->nn; k++) {
        if (find_pair(g, order[k], &P[np]))
            continue;
        struct cle_pair *L = &P[np++];
        if (L->act >= 0) {
            L->mn = malloc(sizeof(float) * (size_t)L->nch);
            L->mx = malloc(sizeof(float) * (size_t)L->nch);
            if (!L->mn || !L->mx) {
                qt_errf(err, QT_ENOMEM, "out of memory");
                goto out;
            }
            for (int64_t i = 0; i < L->nch; i++) {
                L->mn[i] = INFINITY;
                L->mx[i] = -INFINITY;
            }
            need_data = 1;
        }
    }
    if (need_data) {
        if (!ds || total <= 0) { /* no images: the Clip pairs and absorption are off */
            for (int l = 0; l < np; l++)
                if (P[l].mx)
                    for (int64_t i = 0; i < P[l].nch; i++)
                        P[l].mx[i] = P[l].hi, P[l].mn[i] = -INFINITY;
        } else {
            struct cle_pass cp = {P, np};
            /* the executor may apply the Relu/Clip inside A: its output is then
             * activated, which decides the same (a maximum at or above M / 2, a
             * maximum of 0, a positive minimum are the same before and after) */
            struct qt_image_run run = {.pp = pp, .c = c, .h = h, .w = w, .total = total, .batch = batch,
                                       .threads = threads, .after_node = cle_after, .ud = &cp};
            if (qt_run_images(g, ds, &run, err))
                goto out;
        }
    }
    int clamped = 0, rounds = 0;
    for (rounds = 1; rounds <= CLE_ROUNDS; rounds++) {
        int cl = 0;
        double d = cle_round(P, np, &cl);
        clamped = cl;
        if (d < 1e-4)
            break;
    }
    rep->pairs = np;
    rep->rounds = rounds > CLE_ROUNDS ? CLE_ROUNDS : rounds;
    rep->limited = clamped;
    for (int l = 0; l < np; l++) {
        struct cle_pair *L = &P[l];
        rep->clip_pairs += isfinite(L->hi) != 0;
        if (!L->absorb)
            continue;
        for (int64_t i = 0; i < L->nch; i++) {
            float cb = L->mn[i];
            if (!(cb > 0) || !isfinite(cb))
                continue;
            int64_t o0, o1;
            b_outs(L, i, &o0, &o1);
            for (int64_t o = o0; o < o1; o++) {
                double s = 0;
                for (int64_t k = 0; k < L->bk_n; k++)
                    s += *b_at(L, o, i, k);
                L->bb[o] = (float)(L->bb[o] + s * cb);
            }
            L->ab[i] -= cb;
            L->mn[i] -= cb;
            L->mx[i] -= cb;
            rep->absorbed++;
        }
    }
    if (np) {
        for (int l = 0; l < np; l++) { /* the weights changed: the file no longer holds them */
            const struct qt_node *a = &g->n[P[l].a], *b = &g->n[P[l].b];
            for (int j = 1; j < 3; j++) {
                if (j < a->nin && a->in[j] >= 0)
                    g->v[a->in[j]].orig = NULL;
                if (j < b->nin && b->in[j] >= 0)
                    g->v[b->in[j]].orig = NULL;
            }
        }
        p->tuned = 1;
    }
    p->cle = *rep;
    if (p->log) {
        char line[256];
        snprintf(line, sizeof line,
                 "cross-layer equalization: %d layer pairs (%d through a bounded Clip, %d channels held by it), "
                 "%d rounds, %d high biases absorbed",
                 rep->pairs, rep->clip_pairs, rep->limited, rep->rounds, rep->absorbed);
        p->log(p->log_ud, line);
    }
out:
    for (int l = 0; l < np; l++)
        free(P[l].mn), free(P[l].mx);
    free(P);
    free(order);
    return err->code;
}

int qt_cle_info(const struct qt_qplan *p, void *json) {
    cJSON *d = json, *cl = cJSON_AddObjectToObject(d, "cle"), *arr;
    const struct qt_graph *g = p->g;
    int *order = NULL;
    struct qt_err e = {0};
    if (!cl)
        return -1;
    cJSON_AddNumberToObject(cl, "clip_pairs", p->cle.clip_pairs);
    cJSON_AddNumberToObject(cl, "limited_channels", p->cle.limited);
    cJSON_AddNumberToObject(cl, "rounds", p->cle.rounds);
    cJSON_AddNumberToObject(cl, "absorbed_biases", p->cle.absorbed);
    arr = cJSON_AddArrayToObject(cl, "pairs");
    if (!arr || qt_graph_topo(g, &order, &e))
        return -1;
    for (int k = 0; k < g->nn; k++) { /* the same pairs qt_cle found: the graph's shape is unchanged */
        struct cle_pair P;
        if (find_pair(g, order[k], &P))
            continue;
        cJSON *o = cJSON_CreateObject();
        const struct qt_node *a = &g->n[P.a], *b = &g->n[P.b];
        cJSON_AddStringToObject(o, "from", a->name ? a->name : "");
        cJSON_AddStringToObject(o, "to", b->name ? b->name : "");
        cJSON_AddStringToObject(o, "activation", P.act >= 0 ? g->n[P.act].op_type : "");
        cJSON_AddNumberToObject(o, "channels", (double)P.nch);
        cJSON_AddStringToObject(o, "from_weight", g->v[a->in[1]].name);
        cJSON_AddStringToObject(o, "to_weight", g->v[b->in[1]].name);
        cJSON_AddStringToObject(o, "to_layout", P.bk == 0 ? "oik" : P.bk == 1 ? "depthwise" : "io");
        cJSON_AddNumberToObject(o, "kernel", (double)P.bk_n);
        cJSON_AddItemToArray(arr, o);
    }
    free(order);
    return 0;
}
