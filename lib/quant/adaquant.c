/* adaquant.c: AdaQuant's layer-wise tuning on the engine: the layer as a
 * graph of its own (FakeQuant on input and weights, the node's own op,
 * forward and backward by the engine) and Adam with a learning rate
 * relative to each channel's step. The hand-written reference loss the test
 * checks this against is lib/test/aq_ref.c. */
#include "quant/quant.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
 * threads, deterministic at any thread count) replace the hand-written loops
 * of lib/test/aq_ref.c (qt_aq_loss), the reference t_adaquant.c compares against. */

int qt_aq_net_new(struct qt_aq_net *a, const struct qt_graph *src, int node, const struct qt_tensor *xs,
                  const struct qt_qparam *qa, const struct qt_qparam *qw, int cout, int batch, int threads,
                  int flags, struct qt_err *err) {
    int learn_as = (flags & QT_AQ_LEARN_AS) != 0, soft = (flags & QT_AQ_SOFT_W) != 0, qin = (flags & QT_AQ_QIN) != 0;
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
    int vxq = qin ? 0 : qt_graph_add_value(g, "aq_xq", QT_V_ACT, err);
    int vwq = soft ? 0 : qt_graph_add_value(g, "aq_wq", QT_V_ACT, err);
    if (vws < 0 || vas < 0 || vzp < 0 || vxq < 0 || vwq < 0)
        goto fail;
    n = &g->n[k];
    int vw = n->in[1];
    if ((!qin && qt_fq_add(g, "aq_xfq", qt_graph_find(g, xname), vas, vzp, vxq, qa->qmin, qa->qmax, -1, 0,
                           qa->symmetric, 1.0f, "minmax", err) < 0) ||
        (!soft && qt_fq_add(g, "aq_wfq", vw, vws, -1, vwq, qw->qmin, qw->qmax, 0, 0, 1, 1.0f, "minmax", err) < 0))
        goto fail;
    n = &g->n[k];
    if (!qin)
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
    params[vas] = (unsigned char)(learn_as && !qin);
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
    if (X)
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

/* n bytes at pos of fd into dst */
static int read_at(int fd, void *dst, size_t n, int64_t pos, struct qt_err *err) {
    unsigned char *d = dst;
    while (n) {
        ssize_t r = pread(fd, d, n, (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return qt_errf(err, QT_EIO, "cannot read the spilled layer inputs back: %s",
                           r < 0 ? strerror(errno) : "short read");
        d += r;
        n -= (size_t)r;
        pos += r;
    }
    return 0;
}

int qt_aq_set_feed(struct qt_aq_net *a, const struct qt_aq_set *s, int start, const float **T, struct qt_err *err) {
    size_t nx = (size_t)(s->per_x * a->batch), ny = (size_t)(s->per_y * a->batch);
    size_t xsz = s->codes ? 1 : sizeof(float);
    const void *x;
    if (s->fd < 0) {
        x = s->codes ? (const void *)(s->Xq + (size_t)start * s->per_x) : (const void *)(s->X + (size_t)start * s->per_x);
        *T = s->T + (size_t)start * s->per_y;
    } else { /* targets first in buf (float aligned), then the inputs */
        float *tb = s->buf;
        x = tb + ny;
        if (read_at(s->fd, tb, ny * sizeof(float), s->tpos + (int64_t)start * s->per_y * (int64_t)sizeof(float),
                    err) ||
            read_at(s->fd, tb + ny, nx * xsz, s->xpos + (int64_t)start * s->per_x * (int64_t)xsz, err))
            return err->code;
        *T = tb;
    }
    float *in = qt_exec_input(a->x, 0);
    if (!s->codes) {
        memcpy(in, x, nx * sizeof(float));
        return 0;
    }
    const unsigned char *q = x;
    for (size_t i = 0; i < nx; i++)
        in[i] = (float)((int)q[i] + s->xoff) * s->xs;
    return 0;
}

int qt_aq_net_set_loss(struct qt_aq_net *a, const struct qt_aq_set *s, int nchunk, double *loss, struct qt_err *err) {
    double sum = 0, l = 0;
    const float *T;
    for (int i = 0; i < nchunk; i++) {
        if (qt_aq_set_feed(a, s, i * a->batch, &T, err) || qt_aq_net_loss(a, NULL, T, 0, &l, err))
            return err->code;
        sum += l;
    }
    *loss = sum / nchunk;
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
