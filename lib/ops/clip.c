/* clip.c: ONNX Clip. y = min(max(x, lo), hi).
 *
 * Opsets 6-10 take lo/hi as attributes `min`/`max`; from opset 11 they are
 * optional scalar inputs 1 and 2 (absent = no bound). float32 and, from
 * opset 12, int32/int64.
 * Gradient (training): dx = dy where lo <= x <= hi, 0 elsewhere. */
#include "ops/eltwise.h"

#include <float.h>
#include <math.h>

struct clip_attr {
    int inputs; /* bounds come from inputs 1, 2 (opset >= 11) */
    float lo, hi;
};

struct clip_f32 {
    float lo, hi;
};

static void clip_f32(const float *x, float *y, int64_t n, const void *ctx) {
    const struct clip_f32 *c = ctx;
    float lo = c->lo, hi = c->hi;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] < lo ? lo : x[i];
        y[i] = v > hi ? hi : v;
    }
}

static int clip_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    struct clip_attr *a = calloc(1, sizeof *a);
    if (!a)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = a;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs an input");
    a->inputs = !g || g->opset >= 11;
    a->lo = qt_attr_float(n, "min", -FLT_MAX, err);
    a->hi = qt_attr_float(n, "max", FLT_MAX, err);
    return err->code;
}

static int clip_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    if (t->dtype != QT_FLOAT && t->dtype != QT_INT64 && t->dtype != QT_INT32)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(t->dtype));
    for (int i = 1; i < 3; i++) {
        const struct qt_tensor *b = qt_in(x, n, i);
        if (b && (b->dtype != t->dtype || qt_tensor_numel(b) != 1))
            return qt_node_err(n, QT_EMODEL, err, "bound %s must be a scalar of the input's type",
                               i == 1 ? "min" : "max");
    }
    return qt_unary_infer(x, n, err);
}

static int clip_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct clip_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0), *lo = qt_in(x, n, 1), *hi = qt_in(x, n, 2);
    if (t->dtype == QT_FLOAT) {
        struct clip_f32 c = {a->lo, a->hi};
        if (a->inputs) {
            c.lo = lo ? *(const float *)lo->data : -INFINITY;
            c.hi = hi ? *(const float *)hi->data : INFINITY;
        }
        return qt_unary_run_f32(x, n, clip_f32, &c, err);
    }
    int64_t l = lo ? qt_tensor_geti(lo, 0) : INT64_MIN, h = hi ? qt_tensor_geti(hi, 0) : INT64_MAX;
    struct qt_tensor *y = qt_out(x, n, 0);
    for (int64_t i = 0, cnt = qt_tensor_numel(t); i < cnt; i++) {
        int64_t v = qt_tensor_geti(t, i);
        v = v < l ? l : v > h ? h : v;
        if (t->dtype == QT_INT64)
            ((int64_t *)y->data)[i] = v;
        else
            ((int32_t *)y->data)[i] = (int32_t)v;
    }
    return 0;
}

static void clip_g(const float *x, const float *y, const float *dy, float *dx, int64_t n, const void *ctx) {
    const struct clip_f32 *c = ctx;
    /* bounds in registers and no aliasing: one vectorised pass */
    const float *restrict xr = x, *restrict g = dy;
    float *restrict d = dx;
    float lo = c->lo, hi = c->hi;
    (void)y;
    for (int64_t i = 0; i < n; i++) {
        float v = xr[i], gv = g[i];
        d[i] += v >= lo && v <= hi ? gv : 0;
    }
}

static int clip_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct clip_attr *a = n->priv;
    const struct qt_tensor *lo = qt_in(x, n, 1), *hi = qt_in(x, n, 2);
    struct clip_f32 c = {a->lo, a->hi};
    if (qt_in(x, n, 0)->dtype != QT_FLOAT || qt_gin(x, n, 1) || qt_gin(x, n, 2))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "backward needs float32 input and constant bounds");
    if (a->inputs) {
        c.lo = lo ? *(const float *)lo->data : -INFINITY;
        c.hi = hi ? *(const float *)hi->data : INFINITY;
    }
    return qt_unary_bwd_f32(x, n, clip_g, &c);
}

const struct qt_op qt_op_clip = {
    .bwd = clip_bwd,
    .name = "Clip",
    .init = clip_init,
    .infer = clip_infer,
    .fwd = clip_fwd,
    .quant = {.role = QT_QR_UNARY, .act = QT_QA_CLIP},
};

int qt_act_bounds(const struct qt_graph *g, const struct qt_node *n, float *lo, float *hi) {
    int act = qt_qf(n)->act;
    *lo = -INFINITY;
    *hi = INFINITY;
    if (act == QT_QA_RELU)
        *lo = 0;
    if (act != QT_QA_CLIP)
        return act == QT_QA_RELU;
    if (g->opset < 11) {
        struct qt_err e = {0};
        *lo = qt_attr_float(n, "min", -INFINITY, &e);
        *hi = qt_attr_float(n, "max", INFINITY, &e);
        if (e.code)
            *lo = *hi = NAN;
        return 1;
    }
    for (int i = 1; i < 3 && i < n->nin; i++) {
        const struct qt_tensor *t = n->in[i] >= 0 ? qt_graph_const(g, n->in[i]) : NULL;
        if (n->in[i] >= 0)
            *(i == 1 ? lo : hi) = t && t->dtype == QT_FLOAT && qt_tensor_numel(t) == 1 ? *(const float *)t->data : NAN;
    }
    return 1;
}
