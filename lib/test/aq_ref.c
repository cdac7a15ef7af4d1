/* aq_ref.c (test only): AdaQuant's layer-local loss and its gradient written
 * out by hand, the reference t_adaquant.c checks the engine's version
 * (lib/quant/adaquant.c) against.
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
#include "test/aq_ref.h"

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
