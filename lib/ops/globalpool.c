/* globalpool.c: ONNX GlobalAveragePool and GlobalMaxPool, float32, any
 * spatial rank.
 *
 * y[n, c, 1, ...] = the mean (summed in double) or the max of x[n, c, ...]
 * over all spatial positions. One task per (image, channel).
 * Gradient (training): average dx[n, c, ...] = dy[n, c] / (spatial size);
 * max: dy[n, c] flows to the arg-max position. */
#include "engine.h"

#include <float.h>

static int gpool_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0);
    int64_t d[QT_MAXDIM];
    if (!xt)
        return qt_node_err(n, QT_EMODEL, err, "needs input X");
    if (xt->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "float32 input only (got %s)", qt_dtype_name(xt->dtype));
    if (xt->ndim < 3)
        return qt_node_err(n, QT_EMODEL, err, "input has %d dims, expected [N, C, spatial...]", xt->ndim);
    for (int i = 0; i < xt->ndim; i++)
        d[i] = i < 2 ? xt->dims[i] : 1;
    return qt_set_out(x, n, 0, QT_FLOAT, xt->ndim, d, err);
}

struct gpool_job {
    const float *x;
    float *y;
    int64_t hw;
    int max;
};

static void gpool_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct gpool_job *j = arg;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        const float *p = j->x + t * j->hw;
        if (j->max) {
            float m = -FLT_MAX;
            for (int64_t i = 0; i < j->hw; i++)
                if (p[i] > m)
                    m = p[i];
            j->y[t] = m;
        } else {
            double s = 0;
            for (int64_t i = 0; i < j->hw; i++)
                s += p[i];
            j->y[t] = j->hw ? (float)(s / (double)j->hw) : 0.f;
        }
    }
}

static int gpool_run(struct qt_exec *x, const struct qt_node *n, int max) {
    const struct qt_tensor *xt = qt_in(x, n, 0);
    struct gpool_job j = {xt->data, qt_out(x, n, 0)->data, qt_numel(xt->ndim - 2, xt->dims + 2), max};
    qt_parallel_for(x, xt->dims[0] * xt->dims[1], gpool_task, &j);
    return 0;
}

struct gpool_bwd_job {
    const float *x, *y, *dy;
    float *dx;
    int64_t hw;
    int max;
};

static void gpool_bwd_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct gpool_bwd_job *j = arg;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        float *d = j->dx + t * j->hw;
        if (j->max) { /* the first position holding the max */
            const float *p = j->x + t * j->hw;
            for (int64_t i = 0; i < j->hw; i++)
                if (p[i] == j->y[t]) {
                    d[i] += j->dy[t];
                    break;
                }
        } else {
            float g = j->dy[t] / (float)j->hw;
            for (int64_t i = 0; i < j->hw; i++)
                d[i] += g;
        }
    }
}

static int gpool_bwd(struct qt_exec *x, const struct qt_node *n, int max) {
    const struct qt_tensor *xt = qt_in(x, n, 0);
    struct gpool_bwd_job j = {xt->data, qt_out(x, n, 0)->data, qt_gout(x, n, 0), qt_gin(x, n, 0),
                              qt_numel(xt->ndim - 2, xt->dims + 2), max};
    if (j.dx && j.hw)
        qt_parallel_for(x, xt->dims[0] * xt->dims[1], gpool_bwd_task, &j);
    return 0;
}

static int gap_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    return gpool_bwd(x, n, 0);
}

static int gmp_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    return gpool_bwd(x, n, 1);
}

static int gap_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    return gpool_run(x, n, 0);
}

static int gmp_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    return gpool_run(x, n, 1);
}

const struct qt_op qt_op_globalaveragepool = {
    .name = "GlobalAveragePool",
    .infer = gpool_infer,
    .fwd = gap_fwd,
    .bwd = gap_bwd,
    .quant = {.role = QT_QR_UNARY, .lower = QT_QL_ELTWISE, .lower_contrib = 1, .lower_op = "QLinearGlobalAveragePool"},
};
const struct qt_op qt_op_globalmaxpool = {
    .name = "GlobalMaxPool",
    .infer = gpool_infer,
    .fwd = gmp_fwd,
    .bwd = gmp_bwd,
};
