/* maxpool.c: ONNX MaxPool (opsets 7-12), float32 (int8/uint8 from opset 12),
 * 1-D and 2-D.
 *
 * y[n, c, oy, ox] = max over ky < kh, kx < kw of
 *                   x[n, c, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw]
 * taken over the taps inside the input (padding never wins). Geometry,
 * ceil_mode and auto_pad as in pool.h. storage_order must be 0 and the
 * optional Indices output is not supported.
 * Gradient (training): dy flows to the arg-max tap of each window. */
#include "ops/pool.h"

#include <float.h>
#include <stdlib.h>

static int maxpool_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct qt_pooling *p = calloc(1, sizeof *p);
    if (!p)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = p;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs input X");
    if (n->nout > 1 && n->out[1] >= 0)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "the Indices output is not supported");
    if (qt_attr_int(n, "storage_order", 0, err) != 0)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "storage_order 1 (column major) is not supported");
    if (err->code)
        return err->code;
    return qt_pooling_parse(n, p, err);
}

static int maxpool_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0);
    struct qt_pooling_shape s;
    int64_t d[4];
    if (xt->dtype != QT_FLOAT && xt->dtype != QT_INT8 && xt->dtype != QT_UINT8)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported (float32, int8, uint8)",
                           qt_dtype_name(xt->dtype));
    if (qt_pooling_params(n, xt, n->priv, &s, err))
        return err->code;
    qt_pooling_out_dims(xt, &s, d);
    return qt_set_out(x, n, 0, xt->dtype, xt->ndim, d, err);
}

struct pool_job {
    const struct qt_pooling_shape *s;
    const void *x;
    void *y;
};

/* One kernel per element type: T, the type, and LOWEST, the max of no taps.
 * Columns whose windows lie inside the row run tap by tap over the whole
 * interior (vectorisable); the border columns check every tap. */
#define MAXPOOL_TASK(name, T, LOWEST)                                                                   \
    static void name(void *arg, int64_t t0, int64_t t1, int tid) {                                      \
        const struct pool_job *j = arg;                                                                 \
        const struct qt_pooling_shape *s = j->s;                                                        \
        int64_t x0, x1;                                                                                 \
        (void)tid;                                                                                      \
        qt_pooling_interior(s, &x0, &x1);                                                               \
        for (int64_t t = t0; t < t1; t++) {                                                             \
            const T *xc = (const T *)j->x + t * s->ih * s->iw;                                          \
            T *y = (T *)j->y + t * s->oh * s->ow;                                                       \
            for (int64_t oy = 0; oy < s->oh; oy++) {                                                    \
                int64_t hs = oy * s->sh - s->ph, ky0, ky1;                                              \
                T *yr = y + oy * s->ow;                                                                 \
                qt_pooling_taps(hs, s->dh, s->kh, s->ih, &ky0, &ky1);                                   \
                for (int64_t ox = 0; ox < s->ow; ox++) {                                                \
                    if (ox == x0 && x1 > x0)                                                            \
                        ox = x1;                                                                        \
                    if (ox >= s->ow)                                                                    \
                        break;                                                                          \
                    int64_t ws = ox * s->sw - s->pw, kx0, kx1;                                          \
                    qt_pooling_taps(ws, s->dw, s->kw, s->iw, &kx0, &kx1);                               \
                    T m = LOWEST;                                                                       \
                    for (int64_t ky = ky0; ky < ky1; ky++) {                                            \
                        int64_t r = (hs + ky * s->dh) * s->iw + ws;                                     \
                        for (int64_t kx = kx0; kx < kx1; kx++) {                                        \
                            T v = xc[r + kx * s->dw];                                                   \
                            if (v > m)                                                                  \
                                m = v;                                                                  \
                        }                                                                               \
                    }                                                                                   \
                    yr[ox] = m;                                                                         \
                }                                                                                       \
                for (int64_t ox = x0; ox < x1; ox++)                                                    \
                    yr[ox] = LOWEST;                                                                    \
                for (int64_t ky = ky0; ky < ky1; ky++) {                                                \
                    const T *row = xc + (hs + ky * s->dh) * s->iw;                                      \
                    for (int64_t kx = 0; kx < s->kw; kx++) {                                            \
                        int64_t off = kx * s->dw - s->pw;                                               \
                        if (s->sw == 1) {                                                               \
                            for (int64_t ox = x0; ox < x1; ox++) {                                      \
                                T v = row[ox + off];                                                    \
                                yr[ox] = v > yr[ox] ? v : yr[ox];                                       \
                            }                                                                           \
                        } else {                                                                        \
                            for (int64_t ox = x0; ox < x1; ox++) {                                      \
                                T v = row[ox * s->sw + off];                                            \
                                yr[ox] = v > yr[ox] ? v : yr[ox];                                       \
                            }                                                                           \
                        }                                                                               \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }

MAXPOOL_TASK(maxpool_f32, float, -FLT_MAX)
MAXPOOL_TASK(maxpool_s8, int8_t, INT8_MIN)
MAXPOOL_TASK(maxpool_u8, uint8_t, 0)

static int maxpool_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0);
    struct qt_pooling_shape s;
    if (qt_pooling_params(n, xt, n->priv, &s, err))
        return err->code;
    struct pool_job j = {&s, xt->data, qt_out(x, n, 0)->data};
    qt_parallel_for(x, s.n * s.c, xt->dtype == QT_INT8 ? maxpool_s8 : xt->dtype == QT_UINT8 ? maxpool_u8 : maxpool_f32,
                    &j);
    return 0;
}

struct pool_bwd_job {
    const struct qt_pooling_shape *s;
    const float *x, *dy;
    float *dx;
};

/* One task per (image, channel): dy goes to the first tap holding the max
 * (the tap the forward's strict > kept). */
static void maxpool_bwd_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct pool_bwd_job *j = arg;
    const struct qt_pooling_shape *s = j->s;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        const float *xc = j->x + t * s->ih * s->iw, *dy = j->dy + t * s->oh * s->ow;
        float *dx = j->dx + t * s->ih * s->iw;
        for (int64_t oy = 0; oy < s->oh; oy++) {
            int64_t hs = oy * s->sh - s->ph, ky0, ky1;
            qt_pooling_taps(hs, s->dh, s->kh, s->ih, &ky0, &ky1);
            for (int64_t ox = 0; ox < s->ow; ox++) {
                int64_t ws = ox * s->sw - s->pw, kx0, kx1, best = -1;
                float m = -FLT_MAX;
                qt_pooling_taps(ws, s->dw, s->kw, s->iw, &kx0, &kx1);
                for (int64_t ky = ky0; ky < ky1; ky++) {
                    int64_t r = (hs + ky * s->dh) * s->iw + ws;
                    for (int64_t kx = kx0; kx < kx1; kx++)
                        if (best < 0 || xc[r + kx * s->dw] > m) {
                            m = xc[r + kx * s->dw];
                            best = r + kx * s->dw;
                        }
                }
                if (best >= 0)
                    dx[best] += dy[oy * s->ow + ox];
            }
        }
    }
}

static int maxpool_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0);
    struct qt_pooling_shape s;
    if (xt->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "backward is float32 only");
    if (qt_pooling_params(n, xt, n->priv, &s, err))
        return err->code;
    struct pool_bwd_job j = {&s, xt->data, qt_gout(x, n, 0), qt_gin(x, n, 0)};
    if (j.dx)
        qt_parallel_for(x, s.n * s.c, maxpool_bwd_task, &j);
    return 0;
}

const struct qt_op qt_op_maxpool = {
    .name = "MaxPool",
    .init = maxpool_init,
    .infer = maxpool_infer,
    .fwd = maxpool_fwd,
    .bwd = maxpool_bwd,
    .quant = {.role = QT_QR_PASS},
};
