/* unary.c: the element-wise unary operators of ONNX, y = f(x), same shape.
 *
 *   Sigmoid 1/(1+e^-x)    Tanh            Exp          Log         Sqrt
 *   Reciprocal 1/x        Floor, Ceil     Round (half to even)     Erf
 *   Neg, Abs (also int32/int64)           Not (bool)
 *   LeakyRelu  x<0 ? alpha*x : x              (alpha 0.01)
 *   Elu        x<0 ? alpha*(e^x-1) : x        (alpha 1)
 *   Softplus   log(1+e^x)
 *   HardSigmoid max(0, min(1, alpha*x+beta))  (alpha 0.2, beta 0.5)
 *   HardSwish  x * max(0, min(1, x/6+1/2))
 *   Identity   y = x, any type (shares x's buffer when the planner allows)
 *   Gelu       (opset 20) approximate "none": x/2 * (1 + erf(x/sqrt(2)));
 *              "tanh": x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
 *
 * Gradients (training): Sigmoid dy*y*(1-y), Tanh dy*(1-y^2), LeakyRelu
 * dy*(x<0 ? alpha : 1), HardSigmoid dy*alpha inside (0,1), HardSwish
 * dy*(x<-3 ? 0 : x>3 ? 1 : x/3+1/2), Sqrt dy/(2y), Erf dy*2/sqrt(pi)*e^(-x^2), Gelu
 * (none) dy*(Phi(x) + x*phi(x)) with phi(x) = e^(-x^2/2)/sqrt(2 pi), Gelu (tanh)
 * dy*(0.5(1+t) + 0.5x(1-t^2) sqrt(2/pi)(1 + 3*0.044715 x^2)), t the tanh. */
#include "ops/eltwise.h"
#include "ops/layout.h"

#include <math.h>
#include <string.h>

struct unary_attr {
    float alpha, beta;
    int tanh_approx; /* Gelu approximate="tanh" */
};

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

static inline float gelu_f(float v, int tanh_approx) {
    if (tanh_approx)
        return 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v)));
    return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
}

static inline float gelu_d(float v, int tanh_approx) {
    if (tanh_approx) {
        float t = tanhf(GELU_K * (v + 0.044715f * v * v * v));
        return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
    }
    return 0.5f * (1.0f + erff(v * 0.70710678118654752f)) + v * expf(-0.5f * v * v) * 0.3989422804014327f;
}

#define F32_KERNEL(fn, expr)                                                         \
    static void fn##_f32(const float *x, float *y, int64_t n, const void *ctx) {     \
        const struct unary_attr *p = ctx;                                            \
        (void)p;                                                                     \
        for (int64_t i = 0; i < n; i++) {                                            \
            float v = x[i];                                                          \
            y[i] = (expr);                                                           \
        }                                                                            \
    }

F32_KERNEL(sigmoid, 1.0f / (1.0f + expf(-v)))
F32_KERNEL(tanh, tanhf(v))
F32_KERNEL(exp, expf(v))
F32_KERNEL(log, logf(v))
F32_KERNEL(sqrt, sqrtf(v))
F32_KERNEL(reciprocal, 1.0f / v)
F32_KERNEL(floor, floorf(v))
F32_KERNEL(ceil, ceilf(v))
F32_KERNEL(round, nearbyintf(v))
F32_KERNEL(erf, erff(v))
F32_KERNEL(neg, -v)
F32_KERNEL(abs, fabsf(v))
F32_KERNEL(leakyrelu, v < 0 ? p->alpha * v : v)
F32_KERNEL(elu, v < 0 ? p->alpha * (expf(v) - 1.0f) : v)
F32_KERNEL(softplus, v > 20.0f ? v : log1pf(expf(v)))
F32_KERNEL(hardsigmoid, fmaxf(0.0f, fminf(1.0f, p->alpha * v + p->beta)))
F32_KERNEL(hardswish, v * fmaxf(0.0f, fminf(1.0f, v * (1.0f / 6.0f) + 0.5f)))
F32_KERNEL(gelu, gelu_f(v, p->tanh_approx))

static int one_input(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs an input");
    return 0;
}

static int attr_init(struct qt_node *n, float alpha, float beta, struct qt_err *err) {
    struct unary_attr *a = calloc(1, sizeof *a);
    if (!a)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = a;
    if (one_input(NULL, n, err))
        return err->code;
    a->alpha = qt_attr_float(n, "alpha", alpha, err);
    a->beta = qt_attr_float(n, "beta", beta, err);
    return err->code;
}

static int leakyrelu_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    return attr_init(n, 0.01f, 0, err);
}
static int elu_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    return attr_init(n, 1.0f, 0, err);
}
static int hardsigmoid_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    return attr_init(n, 0.2f, 0.5f, err);
}

static int gelu_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (attr_init(n, 0, 0, err))
        return err->code;
    struct unary_attr *a = n->priv;
    const char *ap = qt_attr_str(n, "approximate", "none", err);
    if (err->code)
        return err->code;
    if (strcmp(ap, "none") && strcmp(ap, "tanh"))
        return qt_node_err(n, QT_EMODEL, err, "approximate '%s' must be 'none' or 'tanh'", ap);
    a->tanh_approx = !strcmp(ap, "tanh");
    return 0;
}

#define F32_GRAD(fn, expr)                                                                                \
    static void fn##_g(const float *x, const float *y, const float *dy, float *dx, int64_t n, const void *ctx) { \
        const struct unary_attr *p = ctx;                                                                 \
        (void)p;                                                                                          \
        (void)x;                                                                                          \
        (void)y;                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                                 \
            float v = x[i], u = y[i];                                                                     \
            (void)v;                                                                                      \
            (void)u;                                                                                      \
            dx[i] += dy[i] * (expr);                                                                      \
        }                                                                                                 \
    }                                                                                                     \
    static int fn##_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {                 \
        (void)err;                                                                                        \
        return qt_unary_bwd_f32(x, n, fn##_g, n->priv);                                                   \
    }

F32_GRAD(sigmoid, u * (1.0f - u))
F32_GRAD(tanh, 1.0f - u * u)
F32_GRAD(leakyrelu, v < 0 ? p->alpha : 1.0f)
F32_GRAD(hardsigmoid, p->alpha * v + p->beta > 0 && p->alpha * v + p->beta < 1 ? p->alpha : 0.0f)
F32_GRAD(hardswish, v < -3.0f ? 0.0f : v > 3.0f ? 1.0f : v * (1.0f / 3.0f) + 0.5f)
F32_GRAD(erf, 1.1283791670955126f * expf(-v * v))
F32_GRAD(sqrt, 0.5f / u)
F32_GRAD(gelu, gelu_d(v, p->tanh_approx))

/* float32 ops; those with a backward (Sigmoid, Tanh, LeakyRelu, HardSigmoid,
 * HardSwish) are quantized as one activation in, their own output out */
#define F32_OP_BWD_Q(fn, onnx, ini, q)                                                     \
    static int fn##_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) { \
        return qt_unary_run_f32(x, n, fn##_f32, n->priv, err);                             \
    }                                                                                      \
    const struct qt_op qt_op_##fn = {.name = onnx,                                         \
                                     .init = ini,                                          \
                                     .infer = qt_unary_infer,                              \
                                     .fwd = fn##_fwd,                                      \
                                     .bwd = fn##_bwd,                                      \
                                     .quant = q}
#define F32_OP_BWD(fn, onnx, ini) F32_OP_BWD_Q(fn, onnx, ini, {.role = QT_QR_UNARY})
#define F32_OP(fn, onnx, ini)                                                              \
    static int fn##_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) { \
        return qt_unary_run_f32(x, n, fn##_f32, n->priv, err);                             \
    }                                                                                      \
    const struct qt_op qt_op_##fn = {.name = onnx, .init = ini, .infer = qt_unary_infer, .fwd = fn##_fwd}

F32_OP_BWD(sigmoid, "Sigmoid", one_input);
F32_OP_BWD(tanh, "Tanh", one_input);
F32_OP(exp, "Exp", one_input);
F32_OP(log, "Log", one_input);
F32_OP_BWD(sqrt, "Sqrt", one_input);
F32_OP(reciprocal, "Reciprocal", one_input);
F32_OP(floor, "Floor", one_input);
F32_OP(ceil, "Ceil", one_input);
F32_OP(round, "Round", one_input);
/* Erf: one activation in, its own output; Gelu: the same, its output
 * clamped to GELU's minimum; GELU exported as Div, Erf, Add, Mul, Mul is one
 * unit anchored at the Erf (qt_gelu_unit) */
/* GELU's minimum, x Phi(x) at x = -0.7518: -0.16997, rounded outwards. */
#define QT_GELU_MIN (-0.17f)
#define Q_ERF {.role = QT_QR_UNARY, .unit = qt_gelu_unit}
#define Q_GELU {.role = QT_QR_UNARY, .flags = QT_QF_BOUNDED, .lo = QT_GELU_MIN, .hi = INFINITY}
F32_OP_BWD_Q(erf, "Erf", one_input, Q_ERF);
F32_OP_BWD_Q(gelu, "Gelu", gelu_init, Q_GELU);
F32_OP_BWD(leakyrelu, "LeakyRelu", leakyrelu_init);
F32_OP(elu, "Elu", elu_init);
F32_OP(softplus, "Softplus", one_input);
F32_OP_BWD(hardsigmoid, "HardSigmoid", hardsigmoid_init);
F32_OP_BWD(hardswish, "HardSwish", one_input);

extern const struct qt_op qt_op_div, qt_op_add, qt_op_mul;

/* Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(0.5) (or Mul(0.5)
 * first), inner values read only inside: one GELU, output >= -0.17. */
int qt_gelu_unit(const struct qt_graph *g, int k, struct qt_qunit *u) {
    float c;
    memset(u, 0, sizeof *u);
    const struct qt_node *e = &g->n[k];
    if (e->nin < 1 || e->nout < 1)
        return 0;
    int dv = g->v[e->in[0]].producer;
    if (dv < 0 || g->n[dv].op != &qt_op_div || g->n[dv].nin != 2 || !qt_qunit_scalar(g, g->n[dv].in[1], &c) ||
        fabsf(c - 1.41421356f) > 1e-3f || qt_qunit_reader(g, e->in[0]) != k)
        return 0;
    int x = g->n[dv].in[0];
    int ad = qt_qunit_reader(g, e->out[0]);
    if (ad < 0 || g->n[ad].op != &qt_op_add || g->n[ad].nin != 2)
        return 0;
    int oth = g->n[ad].in[0] == e->out[0] ? 1 : 0;
    if (!qt_qunit_scalar(g, g->n[ad].in[oth], &c) || c != 1.0f)
        return 0;
    int m1 = qt_qunit_reader(g, g->n[ad].out[0]);
    if (m1 < 0 || g->n[m1].op != &qt_op_mul || g->n[m1].nin != 2)
        return 0;
    int o1 = g->n[m1].in[0] == g->n[ad].out[0] ? 1 : 0, half = -1;
    if (g->n[m1].in[o1] != x) { /* Mul(Mul(x, 0.5), 1 + erf) */
        int h = g->v[g->n[m1].in[o1]].producer;
        if (h < 0 || g->n[h].op != &qt_op_mul || g->n[h].nin != 2 || qt_qunit_reader(g, g->n[h].out[0]) != m1)
            return 0;
        int oh = g->n[h].in[0] == x ? 1 : 0;
        if (g->n[h].in[1 - oh] != x || !qt_qunit_scalar(g, g->n[h].in[oh], &c) || c != 0.5f)
            return 0;
        half = h;
    }
    int nodes[6], nn = 0;
    nodes[nn++] = dv;
    if (half >= 0)
        nodes[nn++] = half;
    nodes[nn++] = k;
    nodes[nn++] = ad;
    nodes[nn++] = m1;
    if (half < 0) { /* Mul(Mul(x, 1 + erf), 0.5) */
        int m2 = qt_qunit_reader(g, g->n[m1].out[0]);
        if (m2 < 0 || g->n[m2].op != &qt_op_mul || g->n[m2].nin != 2)
            return 0;
        int o2 = g->n[m2].in[0] == g->n[m1].out[0] ? 1 : 0;
        if (!qt_qunit_scalar(g, g->n[m2].in[o2], &c) || c != 0.5f)
            return 0;
        nodes[nn++] = m2;
    }
    u->in = x;
    for (int i = 0; i < nn; i++)
        u->nodes[u->n++] = nodes[i];
    u->out = nodes[nn - 1];
    u->bounded = 1;
    u->lo = QT_GELU_MIN;
    u->hi = INFINITY;
    return 1;
}

/* Neg and Abs also on integers (shape arithmetic). */
static int int_unary(struct qt_exec *x, const struct qt_node *n, int neg, qt_unary_f32_fn f, struct qt_err *err) {
    const struct qt_tensor *a = qt_in(x, n, 0);
    struct qt_tensor *y = qt_out(x, n, 0);
    int64_t cnt = qt_tensor_numel(a);
    if (a->dtype == QT_FLOAT)
        return qt_unary_run_f32(x, n, f, NULL, err);
    if (a->dtype == QT_INT64) {
        const int64_t *s = a->data;
        int64_t *d = y->data;
        for (int64_t i = 0; i < cnt; i++) {
            uint64_t u = (uint64_t)s[i], m = 0 - u;
            d[i] = (int64_t)(neg || s[i] < 0 ? m : u);
        }
        return 0;
    }
    if (a->dtype == QT_INT32) {
        const int32_t *s = a->data;
        int32_t *d = y->data;
        for (int64_t i = 0; i < cnt; i++) {
            uint32_t u = (uint32_t)s[i], m = 0 - u;
            d[i] = (int32_t)(neg || s[i] < 0 ? m : u);
        }
        return 0;
    }
    return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(a->dtype));
}

static int neg_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    return int_unary(x, n, 1, neg_f32, err);
}
static int abs_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    return int_unary(x, n, 0, abs_f32, err);
}
const struct qt_op qt_op_neg = {.name = "Neg", .init = one_input, .infer = qt_unary_infer, .fwd = neg_fwd};
const struct qt_op qt_op_abs = {.name = "Abs", .init = one_input, .infer = qt_unary_infer, .fwd = abs_fwd};

static int not_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    if (qt_in(x, n, 0)->dtype != QT_BOOL)
        return qt_node_err(n, QT_EMODEL, err, "input must be bool, not %s", qt_dtype_name(qt_in(x, n, 0)->dtype));
    return qt_unary_infer(x, n, err);
}
static int not_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *a = qt_in(x, n, 0);
    const uint8_t *s = a->data;
    uint8_t *d = qt_out(x, n, 0)->data;
    (void)err;
    for (int64_t i = 0, cnt = qt_tensor_numel(a); i < cnt; i++)
        d[i] = !s[i];
    return 0;
}
const struct qt_op qt_op_not = {.name = "Not", .init = one_input, .infer = not_infer, .fwd = not_fwd};

static int identity_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    (void)err;
    qt_copy_input(x, n);
    return 0;
}
const struct qt_op qt_op_identity = {
    .name = "Identity",
    .flags = QT_OPF_ALIAS | QT_OPF_EMPTY,
    .init = one_input,
    .infer = qt_unary_infer,
    .fwd = identity_fwd,
    .bwd = qt_bwd_pass,
    .quant = {.role = QT_QR_PASS},
};
