/* adaround.c: AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for
 * Post-Training Quantization", arXiv 2004.10568), finetune --method adaround.
 *
 * The weight steps stay as calibrated; each weight chooses between the grid
 * points below and above it through a rounding variable v:
 *   w(v) = s * clamp(floor(w0 / s) + h(v), qmin, qmax)
 *   h(v) = clamp(sigmoid(v) (zeta - gamma) + gamma, 0, 1), zeta 1.1, gamma -0.1
 * v starts where h(v) is the fractional part of w0 / s (w(v) = w0 inside
 * the range). The layer's output on quantized inputs must match the float
 * layer's output:
 *   loss = cout * mean((y - t)^2) + lambda * sum (1 - |2 h(v) - 1|^beta)
 * (the reconstruction as AIMET sums it over channels, lambda 0.01); the
 * first 20% of the steps without the regulariser, then beta from 20 down to
 * 2 on a cosine, which pushes every h to 0 or 1. At the end h is rounded
 * (v >= 0: up). The bias and the steps are not learnt. The layer's forward
 * and backward run on the engine (qt_aq_net with QT_AQ_SOFT_W: the node reads
 * w(v) as it is); the gradient over v is the chain rule through h and the
 * clamps (qt_ar_grad, checked against finite differences by
 * lib/test/t_adaquant.c). */
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AR_ZETA 1.1f
#define AR_GAMMA (-0.1f)
#define AR_LAMBDA 0.01
#define AR_WARM 0.2

static float sigm(float v) {
    return 1.0f / (1.0f + expf(-v));
}

float qt_ar_h(float v) {
    float h = sigm(v) * (AR_ZETA - AR_GAMMA) + AR_GAMMA;
    return h < 0 ? 0 : h > 1 ? 1 : h;
}

void qt_ar_init(struct qt_ar *r, const float *w0) {
    for (int64_t i = 0; i < r->nw; i++) {
        float u = w0[i] / r->ws[i / r->per], f = floorf(u), rest = u - f;
        r->fl[i] = f;
        r->v[i] = -logf((AR_ZETA - AR_GAMMA) / (rest - AR_GAMMA) - 1.0f);
    }
}

static float clampq(const struct qt_ar *r, float q) {
    return q < (float)r->qmin ? (float)r->qmin : q > (float)r->qmax ? (float)r->qmax : q;
}

void qt_ar_weights(const struct qt_ar *r, int hard, float *w) {
    for (int64_t i = 0; i < r->nw; i++) {
        float h = hard ? (float)(r->v[i] >= 0) : qt_ar_h(r->v[i]);
        w[i] = r->ws[i / r->per] * clampq(r, r->fl[i] + h);
    }
}

double qt_ar_grad(const struct qt_ar *r, const float *gw, double cout, double lambda, double beta, float *gv) {
    double reg = 0;
    for (int64_t i = 0; i < r->nw; i++) {
        float sg = sigm(r->v[i]), hr = sg * (AR_ZETA - AR_GAMMA) + AR_GAMMA;
        float h = hr < 0 ? 0 : hr > 1 ? 1 : hr, q = r->fl[i] + h;
        double dh = hr > 0 && hr < 1 ? (double)(AR_ZETA - AR_GAMMA) * sg * (1 - sg) : 0;
        double g = q >= (float)r->qmin && q <= (float)r->qmax ? cout * gw[i] * r->ws[i / r->per] : 0;
        if (lambda > 0) {
            double a = 2.0 * h - 1, m = fabs(a);
            reg += 1 - pow(m, beta);
            if (m > 0)
                g -= lambda * beta * pow(m, beta - 1) * (a > 0 ? 2 : -2);
        }
        gv[i] = (float)(g * dh);
    }
    return reg;
}

int qt_ar_tune(struct qt_aq_net *net, const float *w0, const float *ws, int qmin, int qmax,
               const struct qt_aq_set *set, int iters, double lr, uint64_t seed, const volatile int *stop,
               const char *name, float *w, double *before, double *after, struct qt_err *err) {
    struct qt_aq_params prm, grd;
    qt_aq_net_params(net, &prm, &grd);
    int64_t nw = qt_tensor_numel(net->g->v[net->vw].init);
    int mb = net->batch, nimg = set->nimg, nchunk = nimg / mb, warm = (int)(AR_WARM * iters);
    float *buf = calloc((size_t)(5 * nw + 1), sizeof(float));
    if (!buf)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    float *fl = buf, *v = fl + nw, *m = v + nw, *s2 = m + nw, *gv = s2 + nw;
    struct qt_ar r = {nw, nw / net->cout, qmin, qmax, ws, fl, v};
    double l;
    const float *T;
    qt_ar_init(&r, w0);
    /* round to nearest: the starting point and the fallback */
    for (int64_t i = 0; i < nw; i++)
        w[i] = ws[i / r.per] * clampq(&r, __builtin_nearbyintf(w0[i] / ws[i / r.per]));
    memcpy(prm.w, w, sizeof(float) * (size_t)nw);
    if (qt_aq_net_set_loss(net, set, nchunk, before, err))
        goto out;
    *after = *before;
    for (int it = 0; it < iters; it++) {
        if (stop && *stop) {
            qt_errf(err, QT_EFAIL, "interrupted while tuning layer '%s'", name);
            goto out;
        }
        qt_ar_weights(&r, 0, prm.w);
        int start = qt_aq_pick(&seed, nimg, mb);
        if (qt_aq_set_feed(net, set, start, &T, err) || qt_aq_net_loss(net, NULL, T, 1, &l, err))
            goto out;
        double beta = 0, lambda = 0;
        if (it >= warm) {
            double t = (double)(it - warm) / (double)(iters - warm);
            beta = 2 + 0.5 * (20 - 2) * (1 + cos(M_PI * t));
            lambda = AR_LAMBDA;
        }
        qt_ar_grad(&r, grd.w, net->cout, lambda, beta, gv);
        double c1 = 1 - pow(0.9, it + 1), c2 = 1 - pow(0.999, it + 1);
        for (int64_t i = 0; i < nw; i++)
            qt_aq_adam1(&v[i], gv[i], &m[i], &s2[i], lr, c1, c2);
        /* the rounded weights, judged on all images after the warm-up at
         * three points and at the end; the best one is kept */
        int check = it + 1 == iters || (it >= warm && (it + 1 - warm) % ((iters - warm) / 3 + 1) == 0);
        if (check) {
            qt_ar_weights(&r, 1, prm.w);
            if (qt_aq_net_set_loss(net, set, nchunk, &l, err))
                goto out;
            if (l < *after) {
                *after = l;
                memcpy(w, prm.w, sizeof(float) * (size_t)nw);
            }
        }
    }
out:
    free(buf);
    return err->code;
}
