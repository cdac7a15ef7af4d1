/* t_adaquant.c: AdaQuant's layer-local gradients (Conv, depthwise Conv,
 * Gemm; weights, bias, LSQ weight and input steps) against central finite
 * differences of the loss with the rounding residuals frozen (where the
 * STE/LSQ gradient is exact), and Adam lowering the real quantized loss.
 * AdaRound: its start reproduces the float weights, the gradient over the
 * rounding variables (reconstruction + regulariser) against central finite
 * differences, the engine's soft-weight layer against the reference loops,
 * and qt_ar_tune ending on grid weights with a lower loss. */
#include "test/aq_ref.h"
#include "test/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 12345;
static float urand(void) {
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rs >> 40) / (double)(1ULL << 24));
}

struct setup {
    struct qt_aq_layer L;
    float *x, *t, *w, *b, *ws, *ew, *ex;
    float *gw, *gb, *gws;
    int64_t nx, nw, ny;
};

static void make(struct setup *s, const char *kind, int wbits) {
    struct qt_aq_layer *L = &s->L;
    memset(L, 0, sizeof *L);
    L->n = 2, L->sh = L->sw = L->dh = L->dw = 1, L->groups = 1;
    if (!strcmp(kind, "conv")) {
        L->cin = 3, L->h = L->w = 7, L->cout = 4, L->kh = L->kw = 3, L->sh = L->sw = 2, L->pt = L->pl = 1;
        L->oh = L->ow = 4;
    } else if (!strcmp(kind, "depthwise")) {
        L->cin = L->cout = L->groups = 4, L->h = L->w = 6, L->kh = L->kw = 3, L->pt = L->pl = 1;
        L->oh = L->ow = 6;
    } else { /* gemm */
        L->cin = 10, L->h = L->w = 1, L->cout = 5, L->kh = L->kw = 1, L->oh = L->ow = 1, L->n = 6;
    }
    L->wqmin = -(1 << (wbits - 1)), L->wqmax = (1 << (wbits - 1)) - 1;
    L->aqmin = 0, L->aqmax = 255, L->azp = 10;
    s->nx = (int64_t)L->n * L->cin * L->h * L->w;
    s->nw = (int64_t)L->cout * (L->cin / L->groups) * L->kh * L->kw;
    s->ny = (int64_t)L->n * L->cout * L->oh * L->ow;
    s->x = malloc(sizeof(float) * s->nx);
    s->ex = malloc(sizeof(float) * s->nx);
    s->t = malloc(sizeof(float) * s->ny);
    s->w = malloc(sizeof(float) * s->nw);
    s->ew = malloc(sizeof(float) * s->nw);
    s->gw = malloc(sizeof(float) * s->nw);
    s->b = malloc(sizeof(float) * L->cout);
    s->gb = malloc(sizeof(float) * L->cout);
    s->ws = malloc(sizeof(float) * L->cout);
    s->gws = malloc(sizeof(float) * L->cout);
    for (int64_t i = 0; i < s->nx; i++)
        s->x[i] = 3 * urand() - 0.3f; /* some values below the range (clamped at qmin) */
    for (int64_t i = 0; i < s->nw; i++)
        s->w[i] = urand() - 0.5f;
    for (int o = 0; o < L->cout; o++) {
        s->b[o] = 0.2f * (urand() - 0.5f);
        s->ws[o] = 0.5f / (float)L->wqmax * 0.9f; /* a few weights clamp */
    }
    for (int64_t i = 0; i < s->ny; i++)
        s->t[i] = 2 * (urand() - 0.5f);
}

static void release(struct setup *s) {
    free(s->x), free(s->ex), free(s->t), free(s->w), free(s->ew), free(s->gw);
    free(s->b), free(s->gb), free(s->ws), free(s->gws);
}

static double loss_at(struct setup *s, struct qt_aq_params *p) {
    double l;
    struct qt_err e = {0};
    qt_aq_loss(&s->L, p, s->x, s->t, s->ew, s->ex, NULL, &l, &e);
    return l;
}

/* relative error of a central difference against the analytic value */
static int close(double fd, double an) {
    return fabs(fd - an) <= 2e-2 * fmax(fabs(fd), fabs(an)) + 2e-5;
}

static void check_grad(const char *kind) {
    struct setup s;
    make(&s, kind, 4);
    struct qt_aq_params p = {s.w, s.b, s.ws, 3.0f / 200};
    struct qt_aq_params g = {s.gw, s.gb, s.gws, 0};
    struct qt_err e = {0};
    double l;
    qt_aq_residuals(&s.L, &p, s.x, s.ew, s.ex);
    /* values that round onto a clamp bound sit on the kink of the clamp:
     * move them 0.3 inside so central differences see one side only */
    for (int64_t i = 0; i < s.nw; i++) {
        float r = s.w[i] / s.ws[i / (s.nw / s.L.cout)] + s.ew[i];
        s.ew[i] += r == (float)s.L.wqmax ? -0.3f : r == (float)s.L.wqmin ? 0.3f : 0;
    }
    for (int64_t i = 0; i < s.nx; i++) {
        float r = s.x[i] / p.as + s.ex[i] + (float)s.L.azp;
        s.ex[i] += r == (float)s.L.aqmax ? -0.3f : r == (float)s.L.aqmin ? 0.3f : 0;
    }
    T_OK(qt_aq_loss(&s.L, &p, s.x, s.t, s.ew, s.ex, &g, &l, &e) == 0 && l > 0, "%s: loss %.5f", kind, l);
    int bad = 0, n = 0, clamped = 0;
    for (int64_t i = 0; i < s.nw; i++) {
        float v = s.w[i], h = 1e-3f;
        s.w[i] = v + h;
        double lp = loss_at(&s, &p);
        s.w[i] = v - h;
        double lm = loss_at(&s, &p);
        s.w[i] = v;
        double fd = (lp - lm) / (2 * h);
        clamped += s.gw[i] == 0;
        bad += !close(fd, s.gw[i]);
        n++;
    }
    T_OK(bad == 0, "%s: weight gradients match finite differences (%d of %d off, %d clamped)", kind, bad, n,
         clamped);
    bad = 0;
    for (int o = 0; o < s.L.cout; o++) {
        float v = s.b[o], h = 1e-3f;
        s.b[o] = v + h;
        double lp = loss_at(&s, &p);
        s.b[o] = v - h;
        double lm = loss_at(&s, &p);
        s.b[o] = v;
        bad += !close((lp - lm) / (2 * h), s.gb[o]);
    }
    T_OK(bad == 0, "%s: bias gradients match", kind);
    bad = 0;
    double worst = 0;
    for (int o = 0; o < s.L.cout; o++) {
        float v = s.ws[o], h = v * 1e-3f;
        s.ws[o] = v + h;
        double lp = loss_at(&s, &p);
        s.ws[o] = v - h;
        double lm = loss_at(&s, &p);
        s.ws[o] = v;
        double fd = (lp - lm) / (2 * (double)h);
        bad += !close(fd, s.gws[o]);
        worst = fmax(worst, fabs(fd - s.gws[o]));
    }
    T_OK(bad == 0, "%s: LSQ weight-step gradients match (worst abs diff %.2e)", kind, worst);
    {
        float v = p.as, h = v * 1e-3f;
        p.as = v + h;
        double lp = loss_at(&s, &p);
        p.as = v - h;
        double lm = loss_at(&s, &p);
        p.as = v;
        double fd = (lp - lm) / (2 * (double)h);
        T_OK(close(fd, g.as) && fabs(g.as) > 0, "%s: LSQ input-step gradient %.5f matches %.5f", kind, g.as, fd);
    }
    release(&s);
}

/* Adam lowers the real (rounded) loss towards the float layer's output */
static void check_adam(const char *kind) {
    struct setup s;
    make(&s, kind, 4);
    struct qt_aq_layer *L = &s.L;
    float *w0 = malloc(sizeof(float) * s.nw);
    memcpy(w0, s.w, sizeof(float) * s.nw);
    for (int64_t i = 0; i < s.nx; i++)
        s.x[i] = fabsf(s.x[i]);
    /* target: the float layer */
    {
        struct qt_aq_layer F = *L;
        F.wqmin = -(1 << 23), F.wqmax = 1 << 23, F.aqmin = -(1 << 23), F.aqmax = 1 << 23;
        float fs[64];
        for (int o = 0; o < L->cout; o++)
            fs[o] = 1e-6f;
        struct qt_aq_params pf = {s.w, s.b, fs, 1e-6f};
        double l, l0;
        struct qt_err e = {0};
        /* y from the loss alone: with t = 0 except t_i = 1, l - l0 = (1 - 2 y_i) / ny */
        float *y = malloc(sizeof(float) * s.ny);
        memset(s.t, 0, sizeof(float) * s.ny);
        qt_aq_loss(&F, &pf, s.x, s.t, NULL, NULL, NULL, &l0, &e);
        for (int64_t i = 0; i < s.ny; i++) {
            s.t[i] = 1;
            qt_aq_loss(&F, &pf, s.x, s.t, NULL, NULL, NULL, &l, &e);
            s.t[i] = 0;
            y[i] = (float)((1 - (l - l0) * (double)s.ny) / 2);
        }
        memcpy(s.t, y, sizeof(float) * s.ny);
        free(y);
    }
    struct qt_aq_params p = {s.w, s.b, s.ws, 3.0f / 200};
    struct qt_aq_params g = {s.gw, s.gb, s.gws, 0};
    int64_t np = s.nw + 2 * L->cout + 1;
    struct qt_aq_adam a = {3e-3, 0, 0, 0, calloc(np, sizeof(float)), calloc(np, sizeof(float))};
    struct qt_err e = {0};
    double before, after, l;
    qt_aq_loss(L, &p, s.x, s.t, NULL, NULL, NULL, &before, &e);
    after = before;
    int best = -1;
    for (int it = 0; it < 300; it++) {
        qt_aq_loss(L, &p, s.x, s.t, NULL, NULL, &g, &l, &e);
        if (l < after)
            after = l, best = it;
        qt_aq_adam(&a, L, &p, &g);
    }
    T_OK(after < 0.7 * before,
         "%s W4: Adam lowers the quantized loss %.3g -> %.3g (best at iteration %d)", kind, before, after, best);
    free(a.m), free(a.v), free(w0);
    release(&s);
}


/* AdaRound's objective at its variables: cout * mse of the layer with the
 * soft weights (qt_aq_loss with zero residuals runs the node on w as it is)
 * + lambda * the regulariser */
static double ar_objective(struct setup *s, struct qt_ar *r, float *ew0, double lambda, double beta, float *gv) {
    struct qt_err e = {0};
    struct qt_aq_params p = {s->w, s->b, s->ws, 3.0f / 200}, g = {s->gw, s->gb, s->gws, 0};
    double l;
    qt_ar_weights(r, 0, s->w);
    qt_aq_loss(&s->L, &p, s->x, s->t, ew0, NULL, &g, &l, &e);
    double reg = qt_ar_grad(r, s->gw, s->L.cout, lambda, beta, gv);
    return s->L.cout * l + lambda * reg;
}

static void check_ar_grad(const char *kind) {
    struct setup s;
    make(&s, kind, 4);
    int64_t nw = s.nw;
    float *w0 = malloc(sizeof(float) * nw), *fl = malloc(sizeof(float) * nw), *v = malloc(sizeof(float) * nw);
    float *gv = malloc(sizeof(float) * nw), *tmp = malloc(sizeof(float) * nw), *ew0 = calloc(nw, sizeof(float));
    memcpy(w0, s.w, sizeof(float) * nw);
    struct qt_ar r = {nw, nw / s.L.cout, s.L.wqmin, s.L.wqmax, s.ws, fl, v};
    qt_ar_init(&r, w0);
    double worst = 0;
    int inrange = 0;
    qt_ar_weights(&r, 0, s.w);
    for (int64_t i = 0; i < nw; i++) {
        float q = w0[i] / s.ws[i / r.per];
        if (q > s.L.wqmin && q < s.L.wqmax) {
            inrange++;
            worst = fmax(worst, fabs(s.w[i] - w0[i]) / s.ws[i / r.per]);
        }
    }
    T_OK(inrange > nw / 2 && worst < 1e-4, "%s: AdaRound starts at the float weights (%d in range, worst %.2g steps)",
         kind, inrange, worst);
    /* away from the start, where h is not the fractional part */
    for (int64_t i = 0; i < nw; i++)
        v[i] += 1.6f * (urand() - 0.5f);
    double lambda = 0.05, beta = 3.0;
    ar_objective(&s, &r, ew0, lambda, beta, gv);
    int bad = 0, flat = 0, checked = 0;
    for (int64_t i = 0; i < nw; i++) {
        float hr = 1.0f / (1.0f + expf(-v[i])) * 1.2f - 0.1f;
        if (hr < 0.02f || hr > 0.98f) /* the kinks of h's clamp */
            continue;
        float vi = v[i], h = 1e-3f;
        v[i] = vi + h;
        double lp = ar_objective(&s, &r, ew0, lambda, beta, tmp);
        v[i] = vi - h;
        double lm = ar_objective(&s, &r, ew0, lambda, beta, tmp);
        v[i] = vi;
        double fd = (lp - lm) / (2 * h);
        bad += !close(fd, gv[i]);
        flat += gv[i] == 0;
        checked++;
    }
    T_OK(bad == 0 && checked > nw / 2 && flat < checked,
         "%s: AdaRound gradient over the rounding variables matches finite differences (%d of %d off, %d zero)", kind,
         bad, checked, flat);
    free(w0), free(fl), free(v), free(gv), free(tmp), free(ew0);
    release(&s);
}

/* qt_ar_tune on the engine's soft-weight layer: grid weights, lower loss */
static void check_ar_tune(const char *kind, struct qt_aq_net *net, struct setup *s) {
    struct qt_err e = {0};
    float *w = malloc(sizeof(float) * s->nw);
    double before, after;
    int per = (int)(s->nw / s->L.cout), offgrid = 0;
    struct qt_aq_set set = {.nimg = s->L.n, .per_x = net->per_x, .per_y = net->per_y, .X = s->x, .T = s->t, .fd = -1};
    int rc = qt_ar_tune(net, s->w, s->ws, s->L.wqmin, s->L.wqmax, &set, 400, 1e-2, 7, NULL, kind, w,
                        &before, &after, &e);
    for (int64_t i = 0; i < s->nw; i++) {
        float q = w[i] / s->ws[i / per];
        offgrid += fabsf(q - nearbyintf(q)) > 1e-4f || q < s->L.wqmin || q > s->L.wqmax;
    }
    T_OK(rc == 0 && offgrid == 0, "%s: AdaRound weights on the grid (%d off)", kind, offgrid);
    T_OK(after < 0.95 * before, "%s: AdaRound lowers the layer loss %.4g -> %.4g", kind, before, after);
    free(w);
}

/* A fixed input step: the inputs held as codes, fed to the net without its
 * input FakeQuant (QT_AQ_QIN), from memory and read back from a file, give
 * the bytes of the loss and weight gradients of the net with the FakeQuant
 * fed the float inputs. */
static void check_codes(const char *kind, struct qt_graph *g, int k, const struct qt_tensor *xs,
                        const struct qt_qparam *qa, const struct qt_qparam *qw, struct setup *s) {
    struct qt_err e = {0};
    struct qt_aq_net nf, nq;
    int rc = qt_aq_net_new(&nf, g, k, xs, qa, qw, s->L.cout, s->L.n, 2, 0, &e) ||
             qt_aq_net_new(&nq, g, k, xs, qa, qw, s->L.cout, s->L.n, 1, QT_AQ_QIN, &e);
    T_OK(rc == 0, "%s: nets with and without the input FakeQuant built (%s)", kind, e.msg);
    if (rc)
        return;
    int64_t nx = nf.per_x * s->L.n, ny = nf.per_y * s->L.n, nw = s->nw;
    unsigned char *codes = malloc((size_t)nx);
    float *gw = malloc(sizeof(float) * (size_t)nw), *buf = malloc(sizeof(float) * (size_t)(nx + ny));
    int clamped = 0;
    for (int64_t i = 0; i < nx; i++) { /* some inputs outside the range, some inside */
        float u = nearbyintf(s->x[i] / qa->scale[0]) + (float)qa->zp[0];
        clamped += u < qa->qmin || u > qa->qmax;
        u = u < qa->qmin ? (float)qa->qmin : u > qa->qmax ? (float)qa->qmax : u;
        codes[i] = (unsigned char)((int)u - qa->qmin);
    }
    double lf, lq;
    struct qt_aq_params pf, gf, pq, gq;
    qt_aq_net_params(&nf, &pf, &gf);
    qt_aq_net_params(&nq, &pq, &gq);
    T_OK(qt_aq_net_loss(&nf, s->x, s->t, 1, &lf, &e) == 0, "%s: float inputs through the input FakeQuant", kind);
    memcpy(gw, gf.w, sizeof(float) * (size_t)nw);
    FILE *f = tmpfile();
    int fd = f ? fileno(f) : -1;
    int wrote = f && fwrite(s->t, sizeof(float), (size_t)ny, f) == (size_t)ny &&
                fwrite(codes, 1, (size_t)nx, f) == (size_t)nx && fflush(f) == 0;
    for (int from_file = 0; from_file < 2; from_file++) {
        struct qt_aq_set set = {s->L.n, nf.per_x, nf.per_y, NULL, s->t, codes, 1, qa->scale[0], qa->qmin - qa->zp[0],
                                from_file ? fd : -1, (int64_t)sizeof(float) * ny, 0, buf};
        const float *T = NULL;
        memset(gq.w, 0, sizeof(float) * (size_t)nw);
        rc = (from_file && !wrote) || qt_aq_set_feed(&nq, &set, 0, &T, &e) || qt_aq_net_loss(&nq, NULL, T, 1, &lq, &e);
        T_OK(rc == 0 && lq == lf && !memcmp(gq.w, gw, sizeof(float) * (size_t)nw) &&
                 (!gq.b || !memcmp(gq.b, gf.b, sizeof(float) * (size_t)s->L.cout)),
             "%s: inputs as codes %s: loss %.9g = %.9g, same weight and bias gradients (%d of %lld codes clamped)",
             kind, from_file ? "read back from a file" : "in memory", lq, lf, clamped, (long long)nx);
    }
    T_OK(qt_aq_net_as_grad(&nq) == 0, "%s: the input step is no parameter of the net without its FakeQuant", kind);
    if (f)
        fclose(f);
    free(codes), free(gw), free(buf);
    qt_aq_net_free(&nf);
    qt_aq_net_free(&nq);
}

/* The engine's layer (qt_aq_net: FakeQuant + the node's op, forward and
 * backward on the executor) gives the reference loss and gradients. */
static void check_engine(const char *kind, int soft) {
    struct setup s;
    struct qt_err e = {0};
    make(&s, kind, 4);
    float *ew0 = calloc((size_t)s.nw, sizeof(float)); /* soft: the node reads w as it is */
    for (int64_t i = 0; soft && i < s.nw; i++) { /* as AdaRound's weights, inside the grid's range */
        float lo = s.L.wqmin * s.ws[i / (s.nw / s.L.cout)], hi = s.L.wqmax * s.ws[i / (s.nw / s.L.cout)];
        s.w[i] = s.w[i] < lo ? lo : s.w[i] > hi ? hi : s.w[i];
    }
    struct qt_aq_layer *L = &s.L;
    int gemm = !strcmp(kind, "gemm");
    struct qt_graph *g = qt_graph_new(13);
    int64_t xd[4] = {L->n, L->cin, L->h, L->w}, wd[4] = {L->cout, L->cin / L->groups, L->kh, L->kw};
    int64_t bd[1] = {L->cout};
    int xnd = gemm ? 2 : 4;
    struct qt_tensor *xs = qt_tensor_new(QT_FLOAT, xnd, xd), *wt = qt_tensor_new(QT_FLOAT, gemm ? 2 : 4, wd);
    struct qt_tensor *bt = qt_tensor_new(QT_FLOAT, 1, bd);
    memcpy(wt->data, s.w, sizeof(float) * (size_t)s.nw);
    memcpy(bt->data, s.b, sizeof(float) * (size_t)L->cout);
    int vx = qt_graph_add_value(g, "x", QT_V_INPUT, &e);
    int vw = qt_graph_add_init(g, "w", wt, &e), vb = qt_graph_add_init(g, "b", bt, &e);
    int vy = qt_graph_add_value(g, "y", QT_V_ACT, &e);
    g->v[vx].dtype = QT_FLOAT;
    g->v[vx].ndim = xnd;
    memcpy(g->v[vx].dims, xd, sizeof xd);
    g->v[vx].dims[0] = -1;
    g->inputs = malloc(sizeof(int));
    g->inputs[0] = vx;
    g->ninputs = 1;
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = vy;
    g->noutputs = 1;
    int k = qt_graph_add_node(g, "layer", gemm ? "Gemm" : "Conv", (const int[]){vx, vw, vb}, 3, &vy, 1, &e);
    struct qt_node *n = &g->n[k];
    if (gemm) {
        qt_node_set_int(n, "transB", 1);
    } else {
        qt_node_set_int(n, "group", L->groups);
        qt_node_set_ints(n, "strides", (const int64_t[]){L->sh, L->sw}, 2);
        qt_node_set_ints(n, "pads", (const int64_t[]){L->pt, L->pl, L->pt, L->pl}, 4);
    }
    struct qt_qparam qa = {0}, qw = {0};
    qt_qparam_alloc(&qa, 1, &e);
    qt_qparam_alloc(&qw, L->cout, &e);
    qa.qmin = L->aqmin, qa.qmax = L->aqmax, qa.scale[0] = 3.0f / 200, qa.zp[0] = L->azp;
    qw.qmin = L->wqmin, qw.qmax = L->wqmax, qw.symmetric = 1, qw.axis = 0;
    memcpy(qw.scale, s.ws, sizeof(float) * (size_t)L->cout);
    struct qt_aq_net net;
    int rc = qt_node_changed(g, k, &e) || qt_graph_check(g, &e) ||
             qt_aq_net_new(&net, g, k, xs, &qa, &qw, L->cout, L->n, 2, soft ? QT_AQ_SOFT_W : QT_AQ_LEARN_AS, &e);
    const char *what = soft ? "soft-weight layer" : "layer";
    T_OK(rc == 0, "%s: %s net built (%s)", kind, what, e.msg);
    if (rc)
        goto out;
    double le, lr;
    struct qt_aq_params p = {s.w, s.b, s.ws, qa.scale[0]}, gr = {s.gw, s.gb, s.gws, 0}, pe, ge;
    qt_aq_loss(L, &p, s.x, s.t, soft ? ew0 : NULL, NULL, &gr, &lr, &e);
    T_OK(qt_aq_net_loss(&net, s.x, s.t, 1, &le, &e) == 0, "%s: engine forward and backward (%s)", kind, what);
    qt_aq_net_params(&net, &pe, &ge);
    T_OK(fabs(le - lr) <= 1e-5 * lr, "%s: engine %s loss %.8g = reference %.8g", kind, what, le, lr);
    if (soft) {
        T_OK(!ge.b && !ge.ws && qt_aq_net_as_grad(&net) == 0, "%s: only the weights are parameters of the %s", kind,
             what);
        double worst = 0, mx = 0;
        for (int64_t i = 0; i < s.nw; i++) {
            worst = fmax(worst, fabs((double)ge.w[i] - s.gw[i]));
            mx = fmax(mx, fabs(s.gw[i]));
        }
        T_OK(mx > 0 && worst <= 1e-4 * mx, "%s: engine gradient of the unquantized weights = reference (max diff "
             "%.3g of %.3g)", kind, worst, mx);
        check_ar_tune(kind, &net, &s);
        qt_aq_net_free(&net);
        goto out;
    }
    struct { const char *name; const float *a, *b; int64_t n; } cmp[3] = {
        {"weights", ge.w, s.gw, s.nw}, {"bias", ge.b, s.gb, L->cout}, {"weight steps", ge.ws, s.gws, L->cout}};
    for (int c = 0; c < 3; c++) {
        double worst = 0, mx = 0;
        for (int64_t i = 0; i < cmp[c].n; i++) {
            worst = fmax(worst, fabs((double)cmp[c].a[i] - cmp[c].b[i]));
            mx = fmax(mx, fabs(cmp[c].b[i]));
        }
        T_OK(mx > 0 && worst <= 1e-4 * mx, "%s: engine gradient of the %s = reference (max diff %.3g of %.3g)", kind,
             cmp[c].name, worst, mx);
    }
    float gas = qt_aq_net_as_grad(&net);
    T_OK(gr.as != 0 && fabs(gas - gr.as) <= 1e-3 * fabs(gr.as), "%s: engine gradient of the input step %.6g = reference %.6g",
         kind, gas, gr.as);
    qt_aq_net_free(&net);
    check_codes(kind, g, k, xs, &qa, &qw, &s);
out:
    qt_tensor_free(xs);
    qt_qparam_release(&qa);
    qt_qparam_release(&qw);
    qt_graph_free(g);
    free(ew0);
    release(&s);
}

int main(void) {
    check_grad("conv");
    check_grad("depthwise");
    check_grad("gemm");
    check_adam("conv");
    check_adam("depthwise");
    check_adam("gemm");
    check_engine("conv", 0);
    check_engine("depthwise", 0);
    check_engine("gemm", 0);
    check_ar_grad("conv");
    check_ar_grad("depthwise");
    check_ar_grad("gemm");
    check_engine("conv", 1);
    check_engine("depthwise", 1);
    check_engine("gemm", 1);
    return t_done();
}
