/* relu.c: ONNX Relu. y = max(x, 0).
 * Gradient (training): dx = dy * (x > 0). */
#include "ops/eltwise.h"

static void relu_f32(const float *x, float *y, int64_t n, const void *ctx) {
    (void)ctx;
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] > 0 ? x[i] : 0;
}

static int relu_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    return qt_unary_run_f32(x, n, relu_f32, NULL, err);
}

static void relu_g(const float *x, const float *y, const float *dy, float *dx, int64_t n, const void *ctx) {
    const float *restrict xr = x, *restrict g = dy;
    float *restrict d = dx;
    (void)y;
    (void)ctx;
    for (int64_t i = 0; i < n; i++) {
        float gv = g[i];
        d[i] += xr[i] > 0 ? gv : 0;
    }
}

static int relu_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    return qt_unary_bwd_f32(x, n, relu_g, NULL);
}

const struct qt_op qt_op_relu = {
    .name = "Relu",
    .infer = qt_unary_infer,
    .fwd = relu_fwd,
    .bwd = relu_bwd,
    .quant = {.role = QT_QR_UNARY, .act = QT_QA_RELU},
};
