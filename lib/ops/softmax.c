/* softmax.c: ONNX Softmax and LogSoftmax.
 *
 * Opset 13+: along `axis` (default -1). Opsets 1-12: the input is seen as
 * a matrix [prod(dims[:axis]), prod(dims[axis:])] (axis default 1) and each
 * row is normalised. y_i = e^(x_i - max) / sum_j e^(x_j - max); LogSoftmax
 * y_i = x_i - max - log(sum_j e^(x_j - max)).
 * Gradient (training): Softmax dx = y * (dy - sum(dy * y)); with
 * cross-entropy the loss's gradient is (y - target) / N. */
#include "engine.h"

#include <math.h>

struct softmax_attr {
    int64_t axis;
    int coerce2d; /* opset < 13 */
    int log;
};

static int sm_init_common(struct qt_graph *g, struct qt_node *n, int log, struct qt_err *err) {
    struct softmax_attr *a = calloc(1, sizeof *a);
    if (!a)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = a;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs an input");
    a->coerce2d = g && g->opset < 13;
    a->axis = qt_attr_int(n, "axis", a->coerce2d ? 1 : -1, err);
    a->log = log;
    return err->code;
}
static int softmax_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    return sm_init_common(g, n, 0, err);
}
static int logsoftmax_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    return sm_init_common(g, n, 1, err);
}

static int sm_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct softmax_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    int ax;
    if (t->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(t->dtype));
    if (t->ndim < 1)
        return qt_node_err(n, QT_EMODEL, err, "input must have at least one dimension");
    if (qt_axis(n, a->axis, t->ndim, &ax, err))
        return err->code;
    return qt_set_out(x, n, 0, QT_FLOAT, t->ndim, t->dims, err);
}

struct sm_job {
    const float *x;
    float *y;
    int64_t len, inner; /* elements along the axis; stride between them */
    int log;
    const float *dy; /* backward */
    float *dx;
};

/* One task = one (outer, inner) position; the reduction stays in one task. */
static void sm_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct sm_job *j = arg;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        int64_t o = r / j->inner, i = r % j->inner, st = j->inner;
        const float *s = j->x + o * j->len * st + i;
        float *d = j->y + o * j->len * st + i;
        float m = -INFINITY;
        for (int64_t k = 0; k < j->len; k++)
            m = s[k * st] > m ? s[k * st] : m;
        double sum = 0;
        if (j->log) {
            for (int64_t k = 0; k < j->len; k++)
                sum += expf(s[k * st] - m);
            float ls = (float)log(sum);
            for (int64_t k = 0; k < j->len; k++)
                d[k * st] = s[k * st] - m - ls;
        } else {
            for (int64_t k = 0; k < j->len; k++) {
                d[k * st] = expf(s[k * st] - m);
                sum += d[k * st];
            }
            float inv = (float)(1.0 / sum);
            for (int64_t k = 0; k < j->len; k++)
                d[k * st] *= inv;
        }
    }
}

/* dx = y * (dy - sum(dy * y)); LogSoftmax dx = dy - e^y * sum(dy). */
static void sm_bwd_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct sm_job *j = arg;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        int64_t o = r / j->inner, i = r % j->inner, st = j->inner, base = o * j->len * st + i;
        const float *y = j->y + base, *dy = j->dy + base;
        float *dx = j->dx + base;
        double s = 0;
        for (int64_t k = 0; k < j->len; k++)
            s += j->log ? dy[k * st] : dy[k * st] * y[k * st];
        for (int64_t k = 0; k < j->len; k++)
            dx[k * st] += j->log ? dy[k * st] - expf(y[k * st]) * (float)s : y[k * st] * (dy[k * st] - (float)s);
    }
}

static int sm_job_init(struct qt_exec *x, const struct qt_node *n, struct sm_job *j, int64_t *rows,
                       struct qt_err *err) {
    const struct softmax_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    int ax;
    if (qt_axis(n, a->axis, t->ndim, &ax, err))
        return err->code;
    *j = (struct sm_job){t->data, qt_out(x, n, 0)->data, 0, 1, a->log, qt_gout(x, n, 0), qt_gin(x, n, 0)};
    int64_t outer = qt_numel(ax, t->dims);
    if (a->coerce2d) {
        j->len = qt_numel(t->ndim - ax, t->dims + ax);
    } else {
        j->len = t->dims[ax];
        j->inner = qt_numel(t->ndim - ax - 1, t->dims + ax + 1);
    }
    *rows = j->len == 0 ? 0 : outer * j->inner;
    return 0;
}

static int sm_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct sm_job j;
    int64_t rows = 0;
    if (sm_job_init(x, n, &j, &rows, err))
        return err->code;
    if (j.dx && rows)
        qt_parallel_for(x, rows, sm_bwd_task, &j);
    return 0;
}

static int sm_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct sm_job j;
    int64_t rows = 0;
    if (sm_job_init(x, n, &j, &rows, err))
        return err->code;
    if (rows)
        qt_parallel_for(x, rows, sm_task, &j);
    return 0;
}

const struct qt_op qt_op_softmax = {
    .name = "Softmax",
    .init = softmax_init,
    .infer = sm_infer,
    .fwd = sm_fwd,
    .bwd = sm_bwd,
    /* output range fixed to [0, 255/256]: uint8 scale 1/256, zero point 0,
     * as PyTorch FX fixes it; ONNX Runtime fuses DQ, Softmax, Q into its
     * QLinearSoftmax, which assumes that scale (with another one, measured,
     * its outputs are wrong) */
    .quant = {.role = QT_QR_UNARY, .flags = QT_QF_BOUNDED | QT_QF_FIXED, .lo = 0.0f, .hi = 255.0f / 256.0f},
};
const struct qt_op qt_op_logsoftmax = {
    .name = "LogSoftmax",
    .init = logsoftmax_init,
    .infer = sm_infer,
    .fwd = sm_fwd,
    .bwd = sm_bwd,
};
