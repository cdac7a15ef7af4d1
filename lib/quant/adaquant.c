/* adaquant.c: the layer-local loss of AdaQuant and its gradient.
 *
 * One Conv (any groups, strides, dilations, padding) or Gemm (a 1x1 Conv on
 * N x K x 1 x 1) with fake-quantized input and weights:
 *   xq = as * (clamp(round(x / as) + azp, aqmin, aqmax) - azp)
 *   wq = ws[o] * clamp(round(w / ws[o]), wqmin, wqmax)
 *   y  = conv(xq, wq) + b,   loss = mean((y - t)^2)
 * Gradients: the straight-through estimator for the rounding (1 inside the
 * clamp range, 0 outside) and LSQ for the steps (Esser et al. 2019):
 *   d q_hat / d s = round(v / s) - v / s inside, the clamp bound outside,
 * "inside" meaning qmin <= v / s + zp <= qmax before rounding, as LSQ and
 * the engine's FakeQuant define it.
 * These are the exact gradients of the same loss with the rounding residuals
 * round(v / s) - v / s frozen at their current values; qt_aq_loss takes
 * frozen residuals so the test can check the gradient by finite differences.
 * No step gradient for the zero point (kept from calibration). */
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline float fq(float v, float s, int zp, int qmin, int qmax, const float *e, int64_t i, float *dv,
                       float *ds) {
    float u = v / s;
    if (u + (float)zp < (float)qmin) {
        *dv = 0;
        *ds = (float)(qmin - zp);
        return s * (float)(qmin - zp);
    }
    if (u + (float)zp > (float)qmax) {
        *dv = 0;
        *ds = (float)(qmax - zp);
        return s * (float)(qmax - zp);
    }
    float r = e ? u + e[i] : __builtin_nearbyintf(u);
    *dv = 1;
    *ds = r - u;
    return s * r;
}

void qt_aq_residuals(const struct qt_aq_layer *L, const struct qt_aq_params *p, const float *x, float *ew,
                     float *ex) {
    int64_t nw = (int64_t)L->cout * (L->cin / L->groups) * L->kh * L->kw, per = nw / L->cout;
    for (int64_t i = 0; ew && i < nw; i++) {
        float u = p->w[i] / p->ws[i / per];
        ew[i] = __builtin_nearbyintf(u) - u;
    }
    int64_t nx = (int64_t)L->n * L->cin * L->h * L->w;
    for (int64_t i = 0; ex && x && i < nx; i++) {
        float u = x[i] / p->as;
        ex[i] = __builtin_nearbyintf(u) - u;
    }
}

int qt_aq_loss(const struct qt_aq_layer *L, const struct qt_aq_params *p, const float *x, const float *t,
               const float *ew, const float *ex, struct qt_aq_params *g, double *loss, struct qt_err *err) {
    int cpg = L->cin / L->groups, opg = L->cout / L->groups;
    int64_t nw = (int64_t)L->cout * cpg * L->kh * L->kw, per = nw / L->cout;
    int64_t nx = (int64_t)L->n * L->cin * L->h * L->w, plane = (int64_t)L->oh * L->ow;
    int64_t ny = (int64_t)L->n * L->cout * plane;
    float *xq = malloc(sizeof(float) * (size_t)(2 * nx + 2 * nw + ny + 1));
    if (!xq)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    float *xd = xq + nx, *xs = xd + nx; /* dxq/dx unused: x is data; xs: dxq/das */
    float *wq = xq + 2 * nx, *wd = wq + nw, *dy = wd + nw;
    float *wsd = malloc(sizeof(float) * (size_t)(nw + 1));
    if (!wsd) {
        free(xq);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    (void)xs;
    /* xd holds d xq / d as (the input needs no gradient) */
    for (int64_t i = 0; i < nx; i++) {
        float dv;
        xq[i] = fq(x[i], p->as, L->azp, L->aqmin, L->aqmax, ex, i, &dv, &xd[i]);
    }
    for (int64_t i = 0; i < nw; i++)
        wq[i] = fq(p->w[i], p->ws[i / per], 0, L->wqmin, L->wqmax, ew, i, &wd[i], &wsd[i]);
    /* forward */
    double sse = 0;
    for (int b = 0; b < L->n; b++)
        for (int o = 0; o < L->cout; o++) {
            int grp = o / opg;
            for (int oy = 0; oy < L->oh; oy++)
                for (int ox = 0; ox < L->ow; ox++) {
                    double a = p->b ? p->b[o] : 0;
                    for (int c = 0; c < cpg; c++) {
                        int ci = grp * cpg + c;
                        for (int ky = 0; ky < L->kh; ky++) {
                            int iy = oy * L->sh - L->pt + ky * L->dh;
                            if (iy < 0 || iy >= L->h)
                                continue;
                            for (int kx = 0; kx < L->kw; kx++) {
                                int ix = ox * L->sw - L->pl + kx * L->dw;
                                if (ix < 0 || ix >= L->w)
                                    continue;
                                a += (double)wq[((int64_t)o * cpg + c) * L->kh * L->kw + ky * L->kw + kx] *
                                     xq[(((int64_t)b * L->cin + ci) * L->h + iy) * L->w + ix];
                            }
                        }
                    }
                    int64_t yi = ((int64_t)b * L->cout + o) * plane + (int64_t)oy * L->ow + ox;
                    double d = a - t[yi];
                    sse += d * d;
                    dy[yi] = (float)(2 * d / (double)ny);
                }
        }
    *loss = sse / (double)ny;
    if (g) {
        double gas = 0;
        memset(g->w, 0, sizeof(float) * (size_t)nw);
        for (int o = 0; o < L->cout; o++)
            g->ws[o] = 0;
        for (int o = 0; g->b && o < L->cout; o++) {
            double s = 0;
            for (int b = 0; b < L->n; b++)
                for (int64_t k = 0; k < plane; k++)
                    s += dy[((int64_t)b * L->cout + o) * plane + k];
            g->b[o] = (float)s;
        }
        for (int o = 0; o < L->cout; o++) {
            int grp = o / opg;
            double gws = 0;
            for (int c = 0; c < cpg; c++) {
                int ci = grp * cpg + c;
                for (int ky = 0; ky < L->kh; ky++)
                    for (int kx = 0; kx < L->kw; kx++) {
                        int64_t wi = ((int64_t)o * cpg + c) * L->kh * L->kw + ky * L->kw + kx;
                        double gw = 0;
                        for (int b = 0; b < L->n; b++)
                            for (int oy = 0; oy < L->oh; oy++) {
                                int iy = oy * L->sh - L->pt + ky * L->dh;
                                if (iy < 0 || iy >= L->h)
                                    continue;
                                for (int ox = 0; ox < L->ow; ox++) {
                                    int ix = ox * L->sw - L->pl + kx * L->dw;
                                    if (ix < 0 || ix >= L->w)
                                        continue;
                                    int64_t xi = (((int64_t)b * L->cin + ci) * L->h + iy) * L->w + ix;
                                    double d = dy[((int64_t)b * L->cout + o) * plane + (int64_t)oy * L->ow + ox];
                                    gw += d * xq[xi];
                                    /* d loss / d as through xq */
                                    gas += d * wq[wi] * xd[xi];
                                }
                            }
                        g->w[wi] = (float)(gw * wd[wi]);
                        gws += gw * wsd[wi];
                    }
            }
            g->ws[o] = (float)gws;
        }
        g->as = (float)gas;
    }
    free(xq);
    free(wsd);
    return 0;
}

/* Adam on every parameter; steps stay positive. */
void qt_aq_adam(struct qt_aq_adam *a, const struct qt_aq_layer *L, struct qt_aq_params *p,
                const struct qt_aq_params *g) {
    int64_t nw = (int64_t)L->cout * (L->cin / L->groups) * L->kh * L->kw;
    a->t++;
    double c1 = 1 - pow(0.9, a->t), c2 = 1 - pow(0.999, a->t);
    int64_t k = 0;
#define ADAM(ptr, grad, lr)                                                                                   \
    do {                                                                                                      \
        qt_aq_adam1((ptr), (grad), &a->m[k], &a->v[k], (lr), c1, c2);                                         \
        k++;                                                                                                  \
    } while (0)
    for (int64_t i = 0; i < nw; i++)
        ADAM(&p->w[i], g->w[i], a->lr * p->ws[i / (nw / L->cout)]);
    for (int o = 0; p->b && o < L->cout; o++)
        ADAM(&p->b[o], g->b[o], a->lr * p->ws[o]);
    for (int o = 0; !a->fixed_ws && o < L->cout; o++) {
        float s0 = p->ws[o];
        ADAM(&p->ws[o], g->ws[o], a->lr * s0);
        if (!(p->ws[o] > s0 * 0.5f))
            p->ws[o] = s0 * 0.5f;
    }
    if (a->learn_as) {
        float s0 = p->as;
        ADAM(&p->as, g->as, a->lr * s0);
        if (!(p->as > s0 * 0.5f))
            p->as = s0 * 0.5f;
    }
#undef ADAM
}

/* ---- the same loss on the engine ------------------------------------------
 *
 * The layer as a graph of its own: input x (one image batch, fed per step),
 * FakeQuant(x, as, azp) and FakeQuant(w, ws) into a copy of the node, its
 * output the graph output. The engine's forward and backward (GEMM kernels,
 * threads, deterministic at any thread count) replace qt_aq_loss's loops,
 * which remain the reference the test compares against. */

int qt_aq_net_new(struct qt_aq_net *a, const struct qt_graph *src, int node, const struct qt_tensor *xs,
                  const struct qt_qparam *qa, const struct qt_qparam *qw, int cout, int batch, int threads,
                  int flags, struct qt_err *err) {
    int learn_as = (flags & QT_AQ_LEARN_AS) != 0, soft = (flags & QT_AQ_SOFT_W) != 0;
    struct qt_graph *g = NULL;
    unsigned char *dead = NULL, *params = NULL;
    float *ws = NULL;
    memset(a, 0, sizeof *a);
    if (qt_graph_clone(&g, src, err))
        return err->code;
    const struct qt_node *sn = &src->n[node];
    const char *lname = sn->name, *xname = src->v[sn->in[0]].name, *yname = src->v[sn->out[0]].name;
    int vx = sn->in[0];
    g->v[vx].kind = QT_V_INPUT;
    g->v[vx].producer = -1;
    g->v[vx].dtype = QT_FLOAT;
    g->v[vx].ndim = xs->ndim;
    for (int d = 0; d < xs->ndim; d++)
        g->v[vx].dims[d] = d ? xs->dims[d] : -1;
    g->inputs[0] = vx;
    g->ninputs = 1;
    g->outputs[0] = sn->out[0];
    g->noutputs = 1;
    dead = calloc((size_t)g->nn + 1, 1);
    ws = malloc(sizeof(float) * (size_t)cout);
    if (!dead || !ws) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < g->nn; i++)
        dead[i] = i != node;
    if (qt_graph_compact(g, dead, err))
        goto fail;
    /* per-tensor weights: one step per channel, all equal (the optimiser
     * keeps them fixed, qt_aq_adam's fixed_ws) */
    for (int o = 0; o < cout; o++)
        ws[o] = qw->scale[qw->n == 1 ? 0 : o];
    float azp = (float)qa->zp[0];
    int64_t d1[1] = {cout}, d0[1] = {1};
    struct qt_tensor *tws = qt_tensor_new(QT_FLOAT, 1, d1), *tas = qt_tensor_new(QT_FLOAT, 1, d0),
                     *tzp = qt_tensor_new(QT_FLOAT, 1, d0);
    if (!tws || !tas || !tzp) {
        qt_tensor_free(tws);
        qt_tensor_free(tas);
        qt_tensor_free(tzp);
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(tws->data, ws, sizeof(float) * (size_t)cout);
    memcpy(tas->data, &qa->scale[0], sizeof(float));
    memcpy(tzp->data, &azp, sizeof(float));
    struct qt_node *n = &g->n[qt_graph_find_node(g, lname)];
    int k = (int)(n - g->n);
    int vws = qt_graph_add_init(g, "aq_ws", tws, err), vas = qt_graph_add_init(g, "aq_as", tas, err);
    int vzp = qt_graph_add_init(g, "aq_azp", tzp, err);
    int vxq = qt_graph_add_value(g, "aq_xq", QT_V_ACT, err);
    int vwq = soft ? 0 : qt_graph_add_value(g, "aq_wq", QT_V_ACT, err);
    if (vws < 0 || vas < 0 || vzp < 0 || vxq < 0 || vwq < 0)
        goto fail;
    n = &g->n[k];
    int vw = n->in[1];
    if (qt_fq_add(g, "aq_xfq", qt_graph_find(g, xname), vas, vzp, vxq, qa->qmin, qa->qmax, -1, 0, qa->symmetric, 1.0f,
                  "minmax", err) < 0 ||
        (!soft && qt_fq_add(g, "aq_wfq", vw, vws, -1, vwq, qw->qmin, qw->qmax, 0, 0, 1, 1.0f, "minmax", err) < 0))
        goto fail;
    n = &g->n[k];
    n->in[0] = vxq;
    if (!soft)
        n->in[1] = vwq;
    if (qt_node_changed(g, k, err) || qt_graph_check(g, err))
        goto fail;
    params = calloc((size_t)g->nv + 1, 1);
    if (!params) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto fail;
    }
    a->vw = vw;
    a->vws = vws;
    a->vb = n->nin > 2 && n->in[2] >= 0 ? n->in[2] : -1;
    a->vy = qt_graph_find(g, yname);
    a->vas = vas;
    a->learn_as = learn_as;
    params[vw] = 1;
    params[vws] = (unsigned char)!soft;
    params[vas] = (unsigned char)(learn_as != 0);
    if (a->vb >= 0)
        params[a->vb] = (unsigned char)!soft;
    if (qt_exec_new_train(&a->x, g, batch, threads, params, err))
        goto fail;
    a->g = g;
    a->batch = batch;
    a->cout = cout;
    a->per_x = qt_tensor_numel(xs) / xs->dims[0];
    a->per_y = qt_tensor_numel(&a->x->t[a->vy]) / batch;
    free(dead);
    free(params);
    free(ws);
    return 0;
fail:
    qt_graph_free(g);
    free(dead);
    free(params);
    free(ws);
    return err->code ? err->code : qt_errf(err, QT_EFAIL, "internal error building the layer '%s'", lname);
}

void qt_aq_net_params(struct qt_aq_net *a, struct qt_aq_params *p, struct qt_aq_params *g) {
    *p = (struct qt_aq_params){a->g->v[a->vw].init->data, a->vb >= 0 ? a->g->v[a->vb].init->data : NULL,
                               a->g->v[a->vws].init->data, *(float *)a->g->v[a->vas].init->data};
    *g = (struct qt_aq_params){qt_exec_grad(a->x, a->vw), a->vb >= 0 ? qt_exec_grad(a->x, a->vb) : NULL,
                               qt_exec_grad(a->x, a->vws), 0};
}

int qt_aq_net_loss(struct qt_aq_net *a, const float *X, const float *T, int grad, double *loss, struct qt_err *err) {
    memcpy(qt_exec_input(a->x, 0), X, sizeof(float) * (size_t)(a->per_x * a->batch));
    if (qt_exec_run(a->x, err))
        return err->code;
    int64_t ny = a->per_y * a->batch;
    const float *y = a->x->t[a->vy].data;
    float *dy = grad ? qt_exec_grad(a->x, a->vy) : NULL;
    double sse = 0;
    for (int64_t i = 0; i < ny; i++) {
        double d = (double)y[i] - T[i];
        sse += d * d;
        if (dy)
            dy[i] = (float)(2 * d / (double)ny);
    }
    *loss = sse / (double)ny;
    return grad ? qt_exec_backward(a->x, err) : 0;
}

int qt_aq_net_set_loss(struct qt_aq_net *a, const float *X, const float *T, int nchunk, double *loss,
                       struct qt_err *err) {
    double s = 0, l = 0;
    for (int i = 0; i < nchunk; i++) {
        if (qt_aq_net_loss(a, X + (size_t)i * a->batch * a->per_x, T + (size_t)i * a->batch * a->per_y, 0, &l, err))
            return err->code;
        s += l;
    }
    *loss = s / nchunk;
    return 0;
}

int qt_aq_pick(uint64_t *seed, int nimg, int mb) {
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return mb < nimg ? (int)((*seed >> 33) % (uint64_t)(nimg - mb + 1)) : 0;
}

float qt_aq_net_as_grad(const struct qt_aq_net *a) {
    const float *g = a->learn_as ? qt_exec_grad((struct qt_exec *)a->x, a->vas) : NULL;
    return g ? g[0] : 0.0f;
}

void qt_aq_net_set_as(struct qt_aq_net *a, float as) {
    *(float *)a->g->v[a->vas].init->data = as;
}

void qt_aq_net_free(struct qt_aq_net *a) {
    qt_exec_free(a->x);
    qt_graph_free(a->g);
    memset(a, 0, sizeof *a);
}
