/* batchnormalization.c: ONNX BatchNormalization, inference mode.
 *
 * y = scale * (x - mean) / sqrt(var + epsilon) + B, per channel (dim 1) of
 * an [N, C, ...] input. Computed as y = x * a + b with a, b per channel, as
 * ONNX Runtime does. training_mode=1 (opset 14+) and the training outputs are
 * rejected here: training goes through the engine's backward pass (calib
 * folds BatchNormalization into the preceding Conv or Gemm).
 * Gradient (training, batch statistics): the usual
 * dx = a/N * (N*dy - sum(dy) - xhat*sum(dy*xhat)). */
#include "engine.h"

#include <math.h>

struct bn_priv {
    float eps;
};

static int bn_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct bn_priv *p = calloc(1, sizeof *p);
    if (!p)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = p;
    if (n->nin != 5)
        return qt_node_err(n, QT_EMODEL, err, "needs 5 inputs (X, scale, B, mean, var), has %d", n->nin);
    for (int i = 0; i < 5; i++)
        if (n->in[i] < 0)
            return qt_node_err(n, QT_EMODEL, err, "input %d is missing", i);
    p->eps = qt_attr_float(n, "epsilon", 1e-5f, err);
    if (qt_attr_int(n, "training_mode", 0, err) != 0)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "training_mode=1 is not supported for inference");
    if (qt_attr_int(n, "spatial", 1, err) != 1)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "spatial=0 is not supported");
    for (int i = 1; i < n->nout; i++)
        if (n->out[i] >= 0)
            return qt_node_err(n, QT_EUNSUPPORTED, err, "training outputs (mean, var) are not supported");
    return err->code;
}

static int bn_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    char b[160];
    if (t->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(t->dtype));
    if (t->ndim < 2)
        return qt_node_err(n, QT_EMODEL, err, "input %s needs a channel dimension",
                           qt_dims_str(t->ndim, t->dims, b, sizeof b));
    for (int i = 1; i < 5; i++) {
        const struct qt_tensor *p = qt_in(x, n, i);
        if (p->dtype != QT_FLOAT || qt_tensor_numel(p) != t->dims[1] || p->ndim != 1)
            return qt_node_err(n, QT_EMODEL, err, "input %d must be float [%lld]", i, (long long)t->dims[1]);
    }
    qt_exec_scratch(x, 2 * (size_t)t->dims[1]);
    return qt_set_out(x, n, 0, QT_FLOAT, t->ndim, t->dims, err);
}

struct bn_job {
    const float *x, *a, *b;
    float *y;
    int64_t C, inner;
};

static void bn_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct bn_job *j = arg;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r % j->C;
        float a = j->a[c], b = j->b[c];
        const float *s = j->x + r * j->inner;
        float *d = j->y + r * j->inner;
        for (int64_t i = 0; i < j->inner; i++)
            d[i] = s[i] * a + b;
    }
}

static int bn_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct bn_priv *p = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    const float *scale = qt_in(x, n, 1)->data, *bias = qt_in(x, n, 2)->data;
    const float *mean = qt_in(x, n, 3)->data, *var = qt_in(x, n, 4)->data;
    int64_t C = t->dims[1];
    float *ab = qt_scratch(x, 0);
    (void)err;
    for (int64_t c = 0; c < C; c++) {
        ab[c] = scale[c] / sqrtf(var[c] + p->eps);
        ab[C + c] = bias[c] - mean[c] * ab[c];
    }
    struct bn_job j = {t->data, ab, ab + C, qt_out(x, n, 0)->data, C, qt_numel(t->ndim - 2, t->dims + 2)};
    int64_t rows = t->dims[0] * C;
    if (rows * j.inner < 65536)
        bn_task(&j, 0, rows, 0);
    else
        qt_parallel_for(x, rows, bn_task, &j);
    return 0;
}

const struct qt_op qt_op_batchnormalization = {
    .name = "BatchNormalization",
    .init = bn_init,
    .infer = bn_infer,
    .fwd = bn_fwd,
};
