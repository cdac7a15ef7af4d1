/* averagepool.c: ONNX AveragePool (opsets 7-19), float32, 1-D and 2-D.
 *
 * y[n, c, oy, ox] = sum of the window's taps inside the input / count, where
 * count is the number of those taps (count_include_pad = 0) or the number of
 * taps inside the padded input (count_include_pad = 1): a ceil_mode window
 * that runs past the end padding is not charged for the part beyond it, as
 * in ONNX Runtime and PyTorch. Sums run in float, row by row. Geometry as in
 * pool.h.
 * Gradient (training): dx[tap] += dy / count for every tap inside the input. */
#include "ops/pool.h"

#include <stdlib.h>

static int avgpool_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct qt_pooling *p = calloc(1, sizeof *p);
    if (!p)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = p;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs input X");
    return qt_pooling_parse(n, p, err);
}

static int avgpool_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0);
    struct qt_pooling_shape s;
    int64_t d[4];
    if (xt->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "float32 input only (got %s)", qt_dtype_name(xt->dtype));
    if (qt_pooling_params(n, xt, n->priv, &s, err))
        return err->code;
    qt_pooling_out_dims(xt, &s, d);
    return qt_set_out(x, n, 0, QT_FLOAT, xt->ndim, d, err);
}

struct pool_job {
    const struct qt_pooling_shape *s;
    int include_pad;
    const float *x;
    float *y;
};

/* Taps of a window starting at `start` that lie inside [-pad_begin, size + pad_end). */
static int64_t padded_taps(int64_t start, int64_t step, int64_t kn, int64_t size, int64_t pad_end) {
    int64_t end = start + kn * step;
    if (end > size + pad_end)
        end = size + pad_end;
    return end > start ? 1 + (end - start - 1) / step : 0;
}

/* Border columns check every tap; interior columns (windows inside the row)
 * run tap by tap over the whole interior, adding in the same order. */
static void avgpool_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct pool_job *j = arg;
    const struct qt_pooling_shape *s = j->s;
    int64_t x0, x1;
    (void)tid;
    qt_pooling_interior(s, &x0, &x1);
    for (int64_t t = t0; t < t1; t++) {
        const float *xc = j->x + t * s->ih * s->iw;
        float *y = j->y + t * s->oh * s->ow;
        for (int64_t oy = 0; oy < s->oh; oy++) {
            int64_t hs = oy * s->sh - s->ph, ky0, ky1;
            float *yr = y + oy * s->ow;
            qt_pooling_taps(hs, s->dh, s->kh, s->ih, &ky0, &ky1);
            int64_t ph = padded_taps(hs, s->dh, s->kh, s->ih, s->ph_end), rows = ky1 > ky0 ? ky1 - ky0 : 0;
            for (int64_t ox = 0; ox < s->ow; ox++) {
                if (ox == x0 && x1 > x0)
                    ox = x1;
                if (ox >= s->ow)
                    break;
                int64_t ws = ox * s->sw - s->pw, kx0, kx1;
                qt_pooling_taps(ws, s->dw, s->kw, s->iw, &kx0, &kx1);
                float sum = 0;
                for (int64_t ky = ky0; ky < ky1; ky++) {
                    int64_t r = (hs + ky * s->dh) * s->iw + ws;
                    for (int64_t kx = kx0; kx < kx1; kx++)
                        sum += xc[r + kx * s->dw];
                }
                int64_t inside = rows * (kx1 > kx0 ? kx1 - kx0 : 0);
                int64_t cnt = j->include_pad ? ph * padded_taps(ws, s->dw, s->kw, s->iw, s->pw_end) : inside;
                yr[ox] = inside > 0 && cnt > 0 ? sum / (float)cnt : 0.f;
            }
            for (int64_t ox = x0; ox < x1; ox++)
                yr[ox] = 0;
            for (int64_t ky = ky0; ky < ky1; ky++) {
                const float *row = xc + (hs + ky * s->dh) * s->iw;
                for (int64_t kx = 0; kx < s->kw; kx++) {
                    int64_t off = kx * s->dw - s->pw;
                    if (s->sw == 1) {
                        for (int64_t ox = x0; ox < x1; ox++)
                            yr[ox] += row[ox + off];
                    } else {
                        for (int64_t ox = x0; ox < x1; ox++)
                            yr[ox] += row[ox * s->sw + off];
                    }
                }
            }
            int64_t inside = rows * s->kw, cnt = j->include_pad ? ph * s->kw : inside;
            for (int64_t ox = x0; ox < x1; ox++)
                yr[ox] = inside > 0 && cnt > 0 ? yr[ox] / (float)cnt : 0.f;
        }
    }
}

static int avgpool_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0);
    const struct qt_pooling *p = n->priv;
    struct qt_pooling_shape s;
    if (qt_pooling_params(n, xt, p, &s, err))
        return err->code;
    struct pool_job j = {&s, p->count_include_pad, xt->data, qt_out(x, n, 0)->data};
    qt_parallel_for(x, s.n * s.c, avgpool_task, &j);
    return 0;
}

struct pool_bwd_job {
    const struct qt_pooling_shape *s;
    int include_pad;
    const float *dy;
    float *dx;
};

/* One task per (image, channel): every window hands dy / count to its taps. */
static void avgpool_bwd_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct pool_bwd_job *j = arg;
    const struct qt_pooling_shape *s = j->s;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        float *dx = j->dx + t * s->ih * s->iw;
        const float *dy = j->dy + t * s->oh * s->ow;
        for (int64_t oy = 0; oy < s->oh; oy++) {
            int64_t hs = oy * s->sh - s->ph, ky0, ky1;
            qt_pooling_taps(hs, s->dh, s->kh, s->ih, &ky0, &ky1);
            int64_t ph = padded_taps(hs, s->dh, s->kh, s->ih, s->ph_end), rows = ky1 > ky0 ? ky1 - ky0 : 0;
            for (int64_t ox = 0; ox < s->ow; ox++) {
                int64_t ws = ox * s->sw - s->pw, kx0, kx1;
                qt_pooling_taps(ws, s->dw, s->kw, s->iw, &kx0, &kx1);
                int64_t inside = rows * (kx1 > kx0 ? kx1 - kx0 : 0);
                int64_t cnt = j->include_pad ? ph * padded_taps(ws, s->dw, s->kw, s->iw, s->pw_end) : inside;
                if (inside <= 0 || cnt <= 0)
                    continue;
                float g = dy[oy * s->ow + ox] / (float)cnt;
                for (int64_t ky = ky0; ky < ky1; ky++) {
                    int64_t r = (hs + ky * s->dh) * s->iw + ws;
                    for (int64_t kx = kx0; kx < kx1; kx++)
                        dx[r + kx * s->dw] += g;
                }
            }
        }
    }
}

static int avgpool_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0);
    const struct qt_pooling *p = n->priv;
    struct qt_pooling_shape s;
    if (qt_pooling_params(n, xt, p, &s, err))
        return err->code;
    struct pool_bwd_job j = {&s, p->count_include_pad, qt_gout(x, n, 0), qt_gin(x, n, 0)};
    if (j.dx)
        qt_parallel_for(x, s.n * s.c, avgpool_bwd_task, &j);
    return 0;
}

const struct qt_op qt_op_averagepool = {
    .name = "AveragePool",
    .init = avgpool_init,
    .infer = avgpool_infer,
    .fwd = avgpool_fwd,
    .bwd = avgpool_bwd,
    .quant = {.role = QT_QR_UNARY},
};
