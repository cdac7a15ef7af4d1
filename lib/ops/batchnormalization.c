/* batchnormalization.c: ONNX BatchNormalization.
 *
 * Inference: y = scale * (x - mean) / sqrt(var + epsilon) + B, per channel
 * (dim 1) of an [N, C, ...] input. Computed as y = x * a + b with a, b per
 * channel, as ONNX Runtime does. training_mode=1 (opset 14+) and the
 * training outputs are rejected in models: training is a mode of the
 * engine's plan (qt_exec_new_train), not of the file.
 *
 * Training plans: batch statistics over the M = N * spatial values of each
 * channel, mu and biased var; y = scale * xhat + B, xhat = (x - mu) * r,
 * r = 1 / sqrt(var + eps). The running statistics (inputs 3, 4) are updated
 * in place as ONNX specifies: mean = mean * momentum + mu * (1 - momentum),
 * var likewise with the unbiased variance (as PyTorch; momentum default 0.9).
 * When x->bn_frozen is set the running statistics are used as in inference.
 * Gradients: dB = sum(dy), dscale = sum(dy * xhat),
 *   batch statistics: dx = scale * r / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))
 *   running statistics: dx = dy * scale * r. */
#include "engine.h"

#include <math.h>

struct bn_priv {
    float eps, momentum;
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
    p->momentum = qt_attr_float(n, "momentum", 0.9f, err);
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

struct bnt_job {
    const float *x, *scale, *bias, *dy;
    float *y, *mean, *rstd, *dx, *dscale, *dbias;
    float *rmean, *rvar;
    float eps, momentum;
    int64_t N, C, inner;
    int frozen;
};

/* One task per channel: its statistics over the whole batch. */
static void bnt_fwd_task(void *arg, int64_t c0, int64_t c1, int tid) {
    const struct bnt_job *j = arg;
    (void)tid;
    for (int64_t c = c0; c < c1; c++) {
        double s = 0, ss = 0, M = (double)(j->N * j->inner);
        float mu, r;
        if (j->frozen) {
            mu = j->rmean[c];
            r = 1.0f / sqrtf(j->rvar[c] + j->eps);
        } else {
            for (int64_t k = 0; k < j->N; k++) {
                const float *p = j->x + (k * j->C + c) * j->inner;
                for (int64_t i = 0; i < j->inner; i++)
                    s += p[i];
            }
            double m = s / M;
            for (int64_t k = 0; k < j->N; k++) {
                const float *p = j->x + (k * j->C + c) * j->inner;
                for (int64_t i = 0; i < j->inner; i++)
                    ss += (p[i] - m) * (p[i] - m);
            }
            double var = ss / M;
            mu = (float)m;
            r = (float)(1.0 / sqrt(var + j->eps));
            j->rmean[c] = j->rmean[c] * j->momentum + mu * (1 - j->momentum);
            j->rvar[c] = j->rvar[c] * j->momentum + (float)(M > 1 ? ss / (M - 1) : 0) * (1 - j->momentum);
        }
        j->mean[c] = mu;
        j->rstd[c] = r;
        float a = j->scale[c] * r, b = j->bias[c] - mu * a;
        for (int64_t k = 0; k < j->N; k++) {
            const float *p = j->x + (k * j->C + c) * j->inner;
            float *d = j->y + (k * j->C + c) * j->inner;
            for (int64_t i = 0; i < j->inner; i++)
                d[i] = p[i] * a + b;
        }
    }
}

static void bnt_bwd_task(void *arg, int64_t c0, int64_t c1, int tid) {
    const struct bnt_job *j = arg;
    (void)tid;
    for (int64_t c = c0; c < c1; c++) {
        double sdy = 0, sdyx = 0, M = (double)(j->N * j->inner);
        float mu = j->mean[c], r = j->rstd[c];
        for (int64_t k = 0; k < j->N; k++) {
            const float *p = j->x + (k * j->C + c) * j->inner, *g = j->dy + (k * j->C + c) * j->inner;
            for (int64_t i = 0; i < j->inner; i++) {
                sdy += g[i];
                sdyx += g[i] * (p[i] - mu) * r;
            }
        }
        if (j->dbias)
            j->dbias[c] += (float)sdy;
        if (j->dscale)
            j->dscale[c] += (float)sdyx;
        if (!j->dx)
            continue;
        float a = j->scale[c] * r;
        float m1 = j->frozen ? 0 : (float)(sdy / M), m2 = j->frozen ? 0 : (float)(sdyx / M);
        for (int64_t k = 0; k < j->N; k++) {
            const float *p = j->x + (k * j->C + c) * j->inner, *g = j->dy + (k * j->C + c) * j->inner;
            float *d = j->dx + (k * j->C + c) * j->inner;
            for (int64_t i = 0; i < j->inner; i++)
                d[i] += a * (g[i] - m1 - (p[i] - mu) * r * m2);
        }
    }
}

static int bnt_job_init(struct qt_exec *x, const struct qt_node *n, struct bnt_job *j, struct qt_err *err) {
    const struct bn_priv *p = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t C = t->dims[1];
    float *st = qt_exec_save(x, n, sizeof(float) * 2 * (size_t)C, err);
    if (!st)
        return err->code;
    *j = (struct bnt_job){.x = t->data, .scale = qt_in(x, n, 1)->data, .bias = qt_in(x, n, 2)->data,
                          .dy = qt_gout(x, n, 0), .y = qt_out(x, n, 0)->data, .mean = st, .rstd = st + C,
                          .dx = qt_gin(x, n, 0), .dscale = qt_gin(x, n, 1), .dbias = qt_gin(x, n, 2),
                          .rmean = qt_in(x, n, 3)->data, .rvar = qt_in(x, n, 4)->data, .eps = p->eps,
                          .momentum = p->momentum, .N = t->dims[0], .C = C,
                          .inner = qt_numel(t->ndim - 2, t->dims + 2), .frozen = x->bn_frozen};
    return 0;
}

static int bn_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct bnt_job j;
    if (qt_gin(x, n, 3) || qt_gin(x, n, 4))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "the running statistics cannot be trained");
    if (bnt_job_init(x, n, &j, err))
        return err->code;
    qt_parallel_for(x, j.C, bnt_bwd_task, &j);
    return 0;
}

static int bn_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct bn_priv *p = n->priv;
    if (x->training) {
        struct bnt_job j;
        if (bnt_job_init(x, n, &j, err))
            return err->code;
        qt_parallel_for(x, j.C, bnt_fwd_task, &j);
        return 0;
    }
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
    .bwd = bn_bwd,
    .quant = {.flags = QT_QF_BN},
};
