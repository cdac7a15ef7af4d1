/* finetune.c: AdaQuant after calibration. For every quantized Conv/Gemm, in
 * execution order: hold that layer's inputs (from the QDQ model with the
 * earlier layers already tuned, or from the float model in parallel mode)
 * and its float outputs (pre-activation) for the tuning images, minimise
 * the mean squared error over weights, bias and per-channel weight steps
 * with Adam on minibatches (adaquant.c), keep the best iterate, and write
 * the tuned values back into the plan. The input quantizer's step stays
 * (it can be shared by several readers through scale groups).
 * Memory: one layer's inputs and targets; the number of tuning images is cut
 * so that they fit under max_memory. Single-threaded optimisation, so the
 * result does not depend on --threads. */
#include "ops/conv.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cap {
    const char *name; /* value to copy */
    const char *node; /* stop after this node */
    float *dst;
    int64_t per;      /* floats per image */
    int off;          /* images done */
    int stopped;
};

static int cap_after(struct qt_exec *x, int node, void *ud, struct qt_err *err) {
    struct cap *c = ud;
    const struct qt_node *n = &x->g->n[node];
    for (int j = 0; j < n->nout; j++) {
        int v = n->out[j];
        if (v >= 0 && !strcmp(x->g->v[v].name, c->name) && qt_tensor_numel(&x->t[v]) == c->per * x->batch)
            memcpy(c->dst + (size_t)c->off * c->per, x->t[v].data, sizeof(float) * (size_t)(c->per * x->batch));
    }
    if (!n->name || strcmp(n->name, c->node))
        return 0;
    c->stopped = 1;
    err->code = 0x5108;
    return err->code;
}

static int capture(const struct qt_graph *g, struct qt_dataset *ds, const struct qt_preproc *pp, int total,
                   int batch, int c, int h, int w, int threads, struct cap *cp, struct qt_err *err) {
    struct qt_exec *x = NULL;
    int done = 0, cur = 0;
    /* a graph input is captured straight from the loaded images */
    while (done < total) {
        int nb = total - done < batch ? total - done : batch;
        if (nb != cur) {
            qt_exec_free(x);
            x = NULL;
            if (qt_exec_new_flags(&x, (struct qt_graph *)g, nb, threads, QT_EXEC_NOFUSE, err))
                return err->code;
            x->after_node = cap_after;
            x->after_ud = cp;
            cur = nb;
        }
        if (qt_dataset_load(ds, pp, done, nb, c, h, w, qt_exec_input(x, 0), NULL, threads, 0, err))
            break;
        cp->off = done;
        if (!strcmp(g->v[g->inputs[0]].name, cp->name))
            memcpy(cp->dst + (size_t)done * cp->per, qt_exec_input(x, 0), sizeof(float) * (size_t)(cp->per * nb));
        cp->stopped = 0;
        if (qt_exec_run(x, err)) {
            if (!cp->stopped)
                break;
            *err = (struct qt_err){0};
        }
        done += nb;
    }
    qt_exec_free(x);
    return err->code;
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

int qt_finetune(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int total, int batch,
                int c, int h, int w, int threads, const struct qt_ft_opts *fo, struct qt_ft_report *rep,
                struct qt_err *err) {
    struct qt_exec *x1 = NULL;
    struct qt_graph *qg = NULL, *fg = NULL; /* fg: the untouched float graph (targets) */
    int *order = NULL, nl = 0, rc = 0;
    float *X = NULL, *T = NULL, *buf = NULL;
    memset(rep, 0, sizeof *rep);
    if (qt_graph_clone(&fg, p->g, err))
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
    for (int s = 0; s < x1->nsteps; s++) {
        int k = x1->steps[s];
        const struct qt_node *n = &p->g->n[k];
        if ((strcmp(n->op_type, "Conv") && strcmp(n->op_type, "Gemm")) || p->qn[k].excluded || n->nin < 2 ||
            !n->name || !n->name[0] || p->tensor_of[n->in[0]] < 0 || p->tensor_of[n->in[1]] < 0)
            continue;
        if (!strcmp(n->op_type, "Gemm")) {
            struct qt_err e = {0};
            if (!qt_attr_int(n, "transB", 0, &e) || qt_attr_int(n, "transA", 0, &e) || x1->t[n->in[0]].ndim != 2)
                continue;
        }
        order[nl++] = k;
    }
    for (int li = 0; li < nl; li++) {
        int k = order[li];
        struct qt_node *n = &p->g->n[k];
        const struct qt_tensor *xt = &x1->t[n->in[0]], *yt = &x1->t[n->out[0]];
        struct qt_aq_layer L;
        memset(&L, 0, sizeof L);
        if (!strcmp(n->op_type, "Conv")) {
            struct qt_conv_shape s;
            if (qt_conv_params(n, xt, &x1->t[n->in[1]], n->priv, &s, err))
                goto out;
            if (s.ph != s.ph_end || s.pw != s.pw_end) {
                /* bottom/right padding larger than top/left is what the loops assume
                 * (extra rows read as zero); both fine, nothing to do */
            }
            L = (struct qt_aq_layer){0, (int)s.c, (int)s.ih, (int)s.iw, (int)s.m, (int)s.oh, (int)s.ow, (int)s.kh,
                                     (int)s.kw, (int)s.group, (int)s.sh, (int)s.sw, (int)s.ph, (int)s.pw,
                                     (int)s.dh, (int)s.dw, 0, 0, 0, 0, 0};
        } else {
            L = (struct qt_aq_layer){0, (int)xt->dims[1], 1, 1, (int)yt->dims[1], 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1,
                                     0, 0, 0, 0, 0};
        }
        struct qt_qparam *qw = &p->t[p->tensor_of[n->in[1]]].q, *qa = &p->t[p->tensor_of[n->in[0]]].q;
        L.wqmin = qw->qmin, L.wqmax = qw->qmax;
        L.aqmin = qa->qmin, L.aqmax = qa->qmax, L.azp = qa->zp[0];
        int64_t per_x = (int64_t)L.cin * L.h * L.w, per_y = (int64_t)L.cout * L.oh * L.ow;
        int nimg = total;
        int64_t bytes_per = (int64_t)sizeof(float) * (per_x + per_y);
        if (fo->max_memory > 0 && (int64_t)nimg * bytes_per > fo->max_memory)
            nimg = (int)(fo->max_memory / bytes_per);
        if (nimg < 1) {
            qt_node_err(n, QT_EUSAGE, err, "one image's layer inputs and outputs (%lld bytes) exceed --max-memory",
                        (long long)bytes_per);
            goto out;
        }
        free(X);
        free(T);
        X = malloc(sizeof(float) * (size_t)(per_x * nimg));
        T = malloc(sizeof(float) * (size_t)(per_y * nimg));
        if (!X || !T) {
            qt_errf(err, QT_ENOMEM, "out of memory");
            goto out;
        }
        /* inputs: QDQ model (tuned prefix) or float model; targets: float */
        qt_graph_free(qg);
        qg = NULL;
        if (qt_qplan_biases(p, err))
            goto out;
        if (!fo->parallel && qt_qplan_export_qdq(p, &qg, err))
            goto out;
        struct cap cx = {p->g->v[n->in[0]].name, n->name, X, per_x, 0, 0};
        struct cap cy = {p->g->v[n->out[0]].name, n->name, T, per_y, 0, 0};
        if (capture(fo->parallel ? fg : qg, ds, pp, nimg, batch, c, h, w, threads, &cx, err) ||
            capture(fg, ds, pp, nimg, batch, c, h, w, threads, &cy, err))
            goto out;
        /* parameters */
        struct qt_tensor *wt = p->g->v[n->in[1]].init;
        struct qt_tensor *bt = n->nin > 2 && n->in[2] >= 0 ? p->g->v[n->in[2]].init : NULL;
        int64_t nw = qt_tensor_numel(wt), np = nw + 2 * (int64_t)L.cout + 1;
        free(buf);
        buf = calloc((size_t)(4 * np + 4 * L.cout + nw + 8), sizeof(float));
        if (!buf) {
            qt_errf(err, QT_ENOMEM, "out of memory");
            goto out;
        }
        float *ws = buf, *gw = ws + L.cout, *gb = gw + nw, *gws = gb + L.cout, *bz = gws + L.cout;
        float *m = bz + L.cout, *v = m + np, *best = v + np;
        for (int o = 0; o < L.cout; o++)
            ws[o] = qw->scale[qw->n == 1 ? 0 : o];
        struct qt_aq_params prm = {wt->data, bt ? bt->data : NULL, ws, qa->scale[0]};
        struct qt_aq_params grd = {gw, gb, gws, 0};
        struct qt_aq_adam ad = {fo->lr, 0, 0, qw->n != L.cout, m, v};
        L.n = nimg;
        double before, after, l;
        if (qt_aq_loss(&L, &prm, X, T, NULL, NULL, NULL, &before, err))
            goto out;
        /* keep the best iterate (full-set loss checked four times) */
        memcpy(best, prm.w, sizeof(float) * (size_t)nw);
        if (prm.b)
            memcpy(best + nw, prm.b, sizeof(float) * (size_t)L.cout);
        memcpy(best + nw + L.cout, ws, sizeof(float) * (size_t)L.cout);
        after = before;
        uint64_t seed = fo->seed * 1000003ULL + (uint64_t)li;
        int mb = fo->batch > 0 && fo->batch < nimg ? fo->batch : nimg;
        int check_every = fo->iters / 4 > 0 ? fo->iters / 4 : 1;
        for (int it = 0; it < fo->iters; it++) {
            int start = mb < nimg ? (int)(lcg(&seed) % (uint64_t)(nimg - mb + 1)) : 0;
            struct qt_aq_layer Lb = L;
            Lb.n = mb;
            if (qt_aq_loss(&Lb, &prm, X + (size_t)start * per_x, T + (size_t)start * per_y, NULL, NULL, &grd, &l,
                           err))
                goto out;
            qt_aq_adam(&ad, &L, &prm, &grd);
            if ((it + 1) % check_every == 0 || it + 1 == fo->iters) {
                if (qt_aq_loss(&L, &prm, X, T, NULL, NULL, NULL, &l, err))
                    goto out;
                if (l < after) {
                    after = l;
                    memcpy(best, prm.w, sizeof(float) * (size_t)nw);
                    if (prm.b)
                        memcpy(best + nw, prm.b, sizeof(float) * (size_t)L.cout);
                    memcpy(best + nw + L.cout, ws, sizeof(float) * (size_t)L.cout);
                }
            }
        }
        memcpy(prm.w, best, sizeof(float) * (size_t)nw);
        if (prm.b)
            memcpy(prm.b, best + nw, sizeof(float) * (size_t)L.cout);
        memcpy(ws, best + nw + L.cout, sizeof(float) * (size_t)L.cout);
        /* write back: per-channel weight steps (per tensor: keep the scale) */
        if (qw->n == L.cout)
            for (int o = 0; o < L.cout; o++) {
                qw->scale[o] = ws[o];
                qw->rng_min[o] = ws[o] * (float)qw->qmin;
                qw->rng_max[o] = ws[o] * (float)qw->qmax;
            }
        qw->method = "adaquant";
        struct qt_ft_layer *r = &rep->layer[rep->nlayers++];
        snprintf(r->name, sizeof r->name, "%s", n->name);
        r->before = before;
        r->after = after;
        r->images = nimg;
        if (fo->log) {
            char line[300];
            snprintf(line, sizeof line, "finetune: layer %d/%d %s: loss %.6g -> %.6g (%d images)", li + 1, nl,
                     n->name, before, after, nimg);
            fo->log(fo->log_ud, line);
        }
        if (fo->progress)
            fo->progress(fo->progress_ud, li + 1, nl);
    }
    rc = qt_qplan_biases(p, err);
    (void)rc;
out:
    qt_exec_free(x1);
    qt_graph_free(qg);
    qt_graph_free(fg);
    free(order);
    free(X);
    free(T);
    free(buf);
    return err->code;
}
