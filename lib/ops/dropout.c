/* dropout.c: ONNX Dropout. Inference: y = x, the optional mask all true.
 * training_mode (input 2, opset 12+) must be absent or a constant false in
 * the model (or true with a constant ratio 0, which drops nothing): training
 * is a mode of the plan (qt_exec_new_train).
 * Training plans: mask[i] = u_i >= ratio with u_i uniform from x->rng
 * (drawn in element order, so the same seed gives the same mask at any
 * thread count), y = x * mask / (1 - ratio). ratio: input 1 (opset 12+) or
 * the attribute, default 0.5.
 * Gradient: dx = dy * mask / (1 - ratio). */
#include "ops/layout.h"

#include <string.h>

static int dropout_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs an input");
    return 0;
}

static int dropout_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *tm = qt_in(x, n, 2);
    if (tm) {
        if (!qt_in_const(x, n, 2))
            return qt_node_err(n, QT_EUNSUPPORTED, err, "training_mode is not known before the run");
        /* true with a constant ratio 0 drops nothing: y = x (Swin's exports) */
        const struct qt_tensor *r = qt_in(x, n, 1);
        int zero = r && qt_in_const(x, n, 1) && qt_tensor_numel(r) == 1 && qt_tensor_get(r, 0) == 0;
        if ((qt_tensor_numel(tm) != 1 || qt_tensor_get(tm, 0) != 0) && !zero)
            return qt_node_err(n, QT_EUNSUPPORTED, err, "training_mode=true is not supported for inference");
    }
    if (qt_set_out(x, n, 0, t->dtype, t->ndim, t->dims, err))
        return err->code;
    if (qt_out(x, n, 1))
        return qt_set_out(x, n, 1, QT_BOOL, t->ndim, t->dims, err);
    return 0;
}

static float dropout_ratio(struct qt_exec *x, const struct qt_node *n) {
    const struct qt_tensor *r = qt_in(x, n, 1);
    struct qt_err e = {0};
    if (r && qt_tensor_numel(r) == 1)
        return (float)qt_tensor_get(r, 0);
    return qt_attr_float(n, "ratio", 0.5f, &e);
}

static int dropout_train(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    struct qt_tensor *m = qt_out(x, n, 1);
    int64_t cnt = qt_tensor_numel(t);
    unsigned char *mask = qt_exec_save(x, n, (size_t)cnt, err);
    float ratio = dropout_ratio(x, n);
    if (!mask)
        return err->code;
    if (t->dtype != QT_FLOAT || !(ratio >= 0 && ratio < 1))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "training needs float32 input and ratio in [0, 1)");
    const float *s = t->data;
    float *d = qt_out(x, n, 0)->data, k = 1.0f / (1.0f - ratio);
    for (int64_t i = 0; i < cnt; i++) {
        mask[i] = qt_rand01(&x->rng) >= ratio;
        d[i] = mask[i] ? s[i] * k : 0;
    }
    if (m)
        memcpy(m->data, mask, (size_t)cnt);
    return 0;
}

static int dropout_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct qt_tensor *m = qt_out(x, n, 1);
    if (x->training)
        return dropout_train(x, n, err);
    qt_copy_input(x, n);
    if (m)
        memset(m->data, 1, m->nbytes);
    return 0;
}

static int dropout_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const unsigned char *mask = qt_exec_save(x, n, (size_t)qt_tensor_numel(qt_in(x, n, 0)), err);
    const float *dy = qt_gout(x, n, 0);
    float *dx = qt_gin(x, n, 0), k = 1.0f / (1.0f - dropout_ratio(x, n));
    if (!mask)
        return err->code;
    for (int64_t i = 0, cnt = qt_tensor_numel(qt_in(x, n, 0)); dx && i < cnt; i++)
        dx[i] += mask[i] ? dy[i] * k : 0;
    return 0;
}

const struct qt_op qt_op_dropout = {
    .bwd = dropout_bwd,
    .name = "Dropout",
    .flags = QT_OPF_ALIAS,
    .init = dropout_init,
    .infer = dropout_infer,
    .fwd = dropout_fwd,
    .quant = {.role = QT_QR_PASS},
};
