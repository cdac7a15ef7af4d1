/* t_grad.c: every backward of the engine against central finite
 * differences.
 *
 * Each case is a small graph whose tensors are all initializers; the float
 * ones not marked constant are trained (qt_exec_new_train). The loss is
 * L = sum_i r_i * y_i over the output with fixed random r, summed in double.
 * The analytic gradient (backward from dL/dy = r) of up to 48 elements of
 * every parameter is compared with (L(w + h) - L(w - h)) / 2h, h = 1e-2:
 * |analytic - numeric| <= 2e-3 + 1e-2 |numeric|. A wrong sign, a transposed
 * index or a missing term is off by the size of the gradient itself
 * (~0.1..10 here), far outside that.
 *
 * FakeQuant is piecewise constant, so its STE/LSQ/PACT gradients are checked
 * against finite differences (in double) of the functions they are the
 * derivatives of (see lib/quant/fakequant.c), and its forward against
 * QuantizeLinear/DequantizeLinear arithmetic. The losses, optimizers,
 * schedules and gradient clipping are checked against their formulas. */
#include "engine.h"
#include "quant/quant.h"
#include "test/tap.h"
#include "train/train.h"

#include <math.h>
#include <string.h>

static struct qt_err err;
static uint64_t rng = 12345;

static float urand(float lo, float hi) {
    return lo + (hi - lo) * qt_rand01(&rng);
}

/* A float initializer with values uniform in [lo, hi] (|v| >= gap when gap > 0:
 * away from kinks at 0). */
static int tensor(struct qt_graph *g, const char *name, int nd, const int64_t *d, float lo, float hi, float gap) {
    struct qt_tensor *t = qt_tensor_new(QT_FLOAT, nd, d);
    float *p = t->data;
    for (int64_t i = 0; i < qt_tensor_numel(t); i++) {
        p[i] = urand(lo, hi);
        if (gap > 0 && fabsf(p[i]) < gap)
            p[i] = p[i] < 0 ? -gap - urand(0, gap) : gap + urand(0, gap);
    }
    return qt_graph_add_init(g, name, t, &err);
}

static int ints(struct qt_graph *g, const char *name, int n, const int64_t *v) {
    int64_t d[1] = {n};
    struct qt_tensor *t = qt_tensor_new(QT_INT64, 1, d);
    memcpy(t->data, v, sizeof(int64_t) * (size_t)n);
    return qt_graph_add_init(g, name, t, &err);
}

static int scalar(struct qt_graph *g, const char *name, float v) {
    struct qt_tensor *t = qt_tensor_new(QT_FLOAT, 0, NULL);
    *(float *)t->data = v;
    return qt_graph_add_init(g, name, t, &err);
}

/* Adds node op(in...) -> "y" and makes y the graph output. */
static struct qt_node *node(struct qt_graph *g, const char *op, const int *in, int nin) {
    int y = qt_graph_add_value(g, "y", QT_V_ACT, &err);
    int k = qt_graph_add_node(g, "n", op, in, nin, &y, 1, &err);
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = y;
    g->noutputs = 1;
    return &g->n[k];
}

static double loss_of(struct qt_exec *x, const float *r, int yv) {
    const float *y = x->t[yv].data;
    double s = 0;
    for (int64_t i = 0; i < qt_tensor_numel(&x->t[yv]); i++)
        s += (double)r[i] * y[i];
    return s;
}

static int run(struct qt_exec *x) {
    x->rng = 7; /* Dropout: the same mask every run */
    return qt_exec_run(x, &err);
}

/* Ops with a backward that some case checked (the coverage assertion). */
static const struct qt_op *covered[256];
static int ncovered;

static void cover(const struct qt_graph *g) {
    for (int i = 0; i < g->nn; i++) {
        int seen = 0;
        for (int k = 0; k < ncovered; k++)
            seen |= covered[k] == g->n[i].op;
        if (!seen && g->n[i].op && g->n[i].op->bwd && ncovered < 256)
            covered[ncovered++] = g->n[i].op;
    }
}

/* Checks every float initializer of g except those in `fixed` (names). */
static void check(struct qt_graph *g, const char *label, const char *const *fixed, int nfixed) {
    unsigned char *params = calloc((size_t)g->nv + 1, 1);
    struct qt_exec *x = NULL;
    memset(&err, 0, sizeof err);
    if (qt_node_changed(g, 0, &err)) {
        T_OK(0, "%s: node init: %s", label, err.msg);
        free(params);
        return;
    }
    for (int v = 0; v < g->nv; v++) {
        params[v] = g->v[v].kind == QT_V_INIT && g->v[v].init->dtype == QT_FLOAT;
        for (int k = 0; k < nfixed; k++)
            if (!strcmp(g->v[v].name, fixed[k]))
                params[v] = 0;
    }
    if (qt_exec_new_train(&x, g, 1, 2, params, &err)) {
        T_OK(0, "%s: plan: %s", label, err.msg);
        free(params);
        return;
    }
    int yv = g->outputs[0];
    int64_t ny = qt_tensor_numel(&x->t[yv]);
    float *r = malloc(sizeof(float) * (size_t)ny);
    for (int64_t i = 0; i < ny; i++)
        r[i] = urand(-1, 1);
    if (run(x)) {
        T_OK(0, "%s: forward: %s", label, err.msg);
        goto out;
    }
    memcpy(qt_exec_grad(x, yv), r, sizeof(float) * (size_t)ny);
    if (qt_exec_backward(x, &err)) {
        T_OK(0, "%s: backward: %s", label, err.msg);
        goto out;
    }
    cover(g);
    for (int v = 0; v < g->nv; v++) {
        if (!params[v])
            continue;
        float *w = g->v[v].init->data;
        int64_t n = qt_tensor_numel(g->v[v].init), step = n > 48 ? n / 48 : 1;
        float *an = malloc(sizeof(float) * (size_t)n);
        memcpy(an, qt_exec_grad(x, v), sizeof(float) * (size_t)n);
        double worst = 0, wa = 0, wn = 0, gmax = 0, amax = 0;
        int rc = 0;
        for (int64_t k = 0; k < n && !rc; k += step) {
            float w0 = w[k], h = 1e-2f;
            w[k] = w0 + h;
            rc = run(x);
            double lp = loss_of(x, r, yv);
            w[k] = w0 - h;
            rc = rc ? rc : run(x);
            double lm = loss_of(x, r, yv);
            w[k] = w0;
            double num = (lp - lm) / (2.0 * h), e = fabs(an[k] - num) / (2e-3 + 1e-2 * fabs(num));
            gmax = fabs(num) > gmax ? fabs(num) : gmax;
            amax = fabs(an[k]) > amax ? fabs(an[k]) : amax;
            if (e > worst) {
                worst = e;
                wa = an[k];
                wn = num;
            }
        }
        /* an all-zero gradient (analytic or numeric) checks nothing: a failure */
        T_OK(!rc && worst <= 1 && gmax > 1e-3 && amax > 1e-3,
             "%s: d/d%s matches finite differences (worst analytic %.5f numeric %.5f, max |g| %.3f)%s%s", label,
             g->v[v].name, wa, wn, gmax, rc ? ": forward failed: " : "", rc ? err.msg : "");
        free(an);
    }
out:
    free(r);
    qt_exec_free(x);
    free(params);
}

#define D(...) ((const int64_t[]){__VA_ARGS__})
#define IN(...) ((const int[]){__VA_ARGS__})

static void conv_case(const char *label, const int64_t *xd, const int64_t *wd, int group, const int64_t *strides,
                      const int64_t *pads, const int64_t *dil) {
    struct qt_graph *g = qt_graph_new(13);
    int a = tensor(g, "x", 4, xd, -1, 1, 0), w = tensor(g, "w", 4, wd, -1, 1, 0);
    int b = tensor(g, "b", 1, D(wd[0]), -1, 1, 0);
    struct qt_node *n = node(g, "Conv", IN(a, w, b), 3);
    qt_node_set_int(n, "group", group);
    qt_node_set_ints(n, "strides", strides, 2);
    qt_node_set_ints(n, "pads", pads, 4);
    qt_node_set_ints(n, "dilations", dil, 2);
    check(g, label, NULL, 0);
    qt_graph_free(g);
}

static void unary_case(const char *op, float lo, float hi, float gap) {
    struct qt_graph *g = qt_graph_new(13);
    int a = tensor(g, "x", 3, D(2, 3, 4), lo, hi, gap);
    struct qt_node *n = node(g, op, IN(a), 1);
    if (!strcmp(op, "LeakyRelu"))
        qt_node_set_float(n, "alpha", 0.1f);
    check(g, op, NULL, 0);
    qt_graph_free(g);
}

static void binary_case(const char *op, const char *label, int nda, const int64_t *da, int ndb, const int64_t *db) {
    struct qt_graph *g = qt_graph_new(13);
    int a = tensor(g, "a", nda, da, -1, 1, 0);
    int b = !strcmp(op, "Div") ? tensor(g, "b", ndb, db, 0.5f, 1.5f, 0) : tensor(g, "b", ndb, db, -1, 1, 0);
    node(g, op, IN(a, b), 2);
    check(g, label, NULL, 0);
    qt_graph_free(g);
}

static void pool_case(const char *op, const char *label, int include_pad, int ceil) {
    struct qt_graph *g = qt_graph_new(13);
    int a = tensor(g, "x", 4, D(2, 2, 7, 6), -1, 1, 0);
    float *xv = g->v[a].init->data;
    for (int i = 0; i < 168; i++) /* distinct values 0.05 apart: no tie within the step */
        xv[i] = 0.05f * (float)((i * 97) % 168) - 4.0f;
    struct qt_node *n = node(g, op, IN(a), 1);
    qt_node_set_ints(n, "kernel_shape", D(3, 3), 2);
    qt_node_set_ints(n, "strides", D(2, 2), 2);
    qt_node_set_ints(n, "pads", D(1, 0, 1, 1), 4);
    qt_node_set_int(n, "count_include_pad", include_pad);
    qt_node_set_int(n, "ceil_mode", ceil);
    check(g, label, NULL, 0);
    qt_graph_free(g);
}

static void op_cases(void) {
    conv_case("Conv 3x3 pad 1", D(2, 3, 5, 5), D(4, 3, 3, 3), 1, D(1, 1), D(1, 1, 1, 1), D(1, 1));
    conv_case("Conv groups 2, stride 2, asymmetric pads", D(2, 4, 7, 7), D(6, 2, 3, 3), 2, D(2, 2), D(1, 0, 0, 1),
              D(1, 1));
    conv_case("Conv depthwise stride 2", D(2, 3, 6, 6), D(3, 1, 3, 3), 3, D(2, 2), D(1, 1, 1, 1), D(1, 1));
    conv_case("Conv depthwise dilation 2", D(1, 2, 7, 7), D(2, 1, 3, 3), 2, D(1, 1), D(2, 2, 2, 2), D(2, 2));
    conv_case("Conv 1x1", D(2, 3, 4, 4), D(5, 3, 1, 1), 1, D(1, 1), D(0, 0, 0, 0), D(1, 1));
    conv_case("Conv dilation 2 stride (2,1)", D(1, 2, 7, 7), D(3, 2, 3, 2), 1, D(2, 1), D(2, 1, 2, 0), D(2, 2));

    struct qt_graph *g = qt_graph_new(13);
    int a = tensor(g, "A", 2, D(3, 4), -1, 1, 0), b = tensor(g, "B", 2, D(5, 4), -1, 1, 0);
    int c = tensor(g, "C", 1, D(5), -1, 1, 0);
    struct qt_node *n = node(g, "Gemm", IN(a, b, c), 3);
    qt_node_set_int(n, "transB", 1);
    qt_node_set_float(n, "alpha", 0.5f);
    qt_node_set_float(n, "beta", 2.0f);
    check(g, "Gemm transB, C [N]", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "A", 2, D(4, 3), -1, 1, 0);
    b = tensor(g, "B", 2, D(4, 5), -1, 1, 0);
    c = tensor(g, "C", 2, D(3, 1), -1, 1, 0);
    n = node(g, "Gemm", IN(a, b, c), 3);
    qt_node_set_int(n, "transA", 1);
    check(g, "Gemm transA, C [M,1]", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "A", 3, D(2, 3, 4), -1, 1, 0);
    b = tensor(g, "B", 2, D(4, 5), -1, 1, 0);
    node(g, "MatMul", IN(a, b), 2);
    check(g, "MatMul [2,3,4] x [4,5] (broadcast B)", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "A", 3, D(2, 3, 4), -1, 1, 0);
    b = tensor(g, "B", 3, D(2, 4, 2), -1, 1, 0);
    node(g, "MatMul", IN(a, b), 2);
    check(g, "MatMul batched", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 4, D(3, 4, 3, 3), -1, 2, 0);
    int s = tensor(g, "scale", 1, D(4), 0.5f, 1.5f, 0), bb = tensor(g, "bias", 1, D(4), -1, 1, 0);
    int m = tensor(g, "mean", 1, D(4), -1, 1, 0), v = tensor(g, "var", 1, D(4), 0.5f, 1.5f, 0);
    node(g, "BatchNormalization", IN(a, s, bb, m, v), 5);
    check(g, "BatchNormalization (training, batch statistics)", (const char *const[]){"mean", "var"}, 2);
    qt_graph_free(g);

}

/* activations, elementwise, pooling and shape ops */
static void op_cases2(void) {
    struct qt_graph *g;
    struct qt_node *n;
    int a, b;
    unary_case("Relu", -1, 1, 0.05f);
    unary_case("LeakyRelu", -1, 1, 0.05f);
    unary_case("Sigmoid", -3, 3, 0);
    unary_case("Tanh", -2, 2, 0);
    unary_case("HardSigmoid", -4, 4, 0);
    unary_case("HardSwish", -4, 4, 0);

    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(2, 3, 4), -1, 1, 0);
    int lo = scalar(g, "lo", -0.5f), hi = scalar(g, "hi", 0.6f);
    node(g, "Clip", IN(a, lo, hi), 3);
    check(g, "Clip", (const char *const[]){"lo", "hi"}, 2);
    qt_graph_free(g);

    binary_case("Add", "Add same shape", 3, D(2, 3, 4), 3, D(2, 3, 4));
    binary_case("Add", "Add broadcast [2,3,4] + [3,1]", 3, D(2, 3, 4), 2, D(3, 1));
    binary_case("Sub", "Sub broadcast [1,4] - [2,3,4]", 2, D(1, 4), 3, D(2, 3, 4));
    binary_case("Mul", "Mul broadcast [2,3,4] * [2,1,4]", 3, D(2, 3, 4), 3, D(2, 1, 4));
    binary_case("Mul", "Mul by a scalar", 3, D(2, 3, 4), 0, NULL);
    binary_case("Div", "Div broadcast [2,3,4] / [4]", 3, D(2, 3, 4), 1, D(4));

    pool_case("MaxPool", "MaxPool 3x3 stride 2 pads", 0, 0);
    pool_case("AveragePool", "AveragePool count_include_pad 0", 0, 0);
    pool_case("AveragePool", "AveragePool count_include_pad 1 ceil_mode", 1, 1);

    g = qt_graph_new(13);
    a = tensor(g, "x", 4, D(2, 3, 4, 5), -1, 1, 0);
    node(g, "GlobalAveragePool", IN(a), 1);
    check(g, "GlobalAveragePool", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 4, D(2, 3, 4, 5), -1, 1, 0);
    node(g, "GlobalMaxPool", IN(a), 1);
    check(g, "GlobalMaxPool", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 4, D(2, 3, 2, 2), -1, 1, 0);
    n = node(g, "Flatten", IN(a), 1);
    check(g, "Flatten", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(2, 3, 4), -1, 1, 0);
    int sh = ints(g, "shape", 2, D(4, -1));
    node(g, "Reshape", IN(a, sh), 2);
    check(g, "Reshape", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "a", 3, D(2, 3, 4), -1, 1, 0);
    b = tensor(g, "b", 3, D(2, 2, 4), -1, 1, 0);
    n = node(g, "Concat", IN(a, b), 2);
    qt_node_set_int(n, "axis", 1);
    check(g, "Concat axis 1", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 4, D(2, 3, 4, 5), -1, 1, 0);
    n = node(g, "ReduceMean", IN(a), 1);
    qt_node_set_ints(n, "axes", D(1, 3), 2);
    check(g, "ReduceMean axes (1,3) keepdims", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(2, 3, 4), -1, 1, 0);
    n = node(g, "ReduceMean", IN(a), 1);
    qt_node_set_ints(n, "axes", D(-1), 1);
    qt_node_set_int(n, "keepdims", 0);
    check(g, "ReduceMean last axis, no keepdims", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(2, 3, 4), -1, 1, 0);
    n = node(g, "Transpose", IN(a), 1);
    qt_node_set_ints(n, "perm", D(2, 0, 1), 3);
    check(g, "Transpose perm (2,0,1)", NULL, 0);
    qt_graph_free(g);

}

/* slicing, splitting, padding, softmax and pass-through ops */
static void op_cases3(void) {
    struct qt_graph *g;
    struct qt_node *n;
    int a;
    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(2, 6, 5), -1, 1, 0);
    int st = ints(g, "starts", 2, D(1, -1)), en = ints(g, "ends", 2, D(6, -6)), ax = ints(g, "axes", 2, D(1, 2));
    int sp = ints(g, "steps", 2, D(2, -2));
    node(g, "Slice", IN(a, st, en, ax, sp), 5);
    check(g, "Slice steps 2 and -2", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(2, 5, 3), -1, 1, 0);
    int y0 = qt_graph_add_value(g, "y", QT_V_ACT, &err), y1 = qt_graph_add_value(g, "y1", QT_V_ACT, &err);
    int k = qt_graph_add_node(g, "n", "Split", IN(a), 1, IN(y0, y1), 2, &err);
    qt_node_set_int(&g->n[k], "axis", 1);
    qt_node_set_ints(&g->n[k], "split", D(2, 3), 2);
    int w2 = tensor(g, "w2", 3, D(2, 3, 3), -1, 1, 0), z = qt_graph_add_value(g, "z", QT_V_ACT, &err);
    qt_graph_add_node(g, "mul", "Mul", IN(y1, w2), 2, &z, 1, &err);
    int z2 = qt_graph_add_value(g, "z2", QT_V_ACT, &err);
    qt_graph_add_node(g, "red", "ReduceMean", IN(z), 1, &z2, 1, &err); /* both outputs reach the loss */
    qt_node_set_ints(&g->n[2], "axes", D(1), 1);
    int z3 = qt_graph_add_value(g, "z3", QT_V_ACT, &err);
    qt_graph_add_node(g, "cat", "Concat", IN(y0, z2), 2, &z3, 1, &err);
    qt_node_set_int(&g->n[3], "axis", 1);
    for (int i = 1; i < 4; i++)
        qt_node_changed(g, i, &err);
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = z3;
    g->noutputs = 1;
    check(g, "Split (two outputs) -> Mul, ReduceMean, Concat", NULL, 0);
    qt_graph_free(g);

    static const char *const modes[] = {"constant", "edge", "reflect"};
    for (int m = 0; m < 3; m++) {
        char label[64];
        g = qt_graph_new(13);
        a = tensor(g, "x", 4, D(1, 2, 4, 3), -1, 1, 0);
        int pads = ints(g, "pads", 8, D(0, 0, 2, 1, 0, 1, 1, 2));
        n = node(g, "Pad", IN(a, pads), 2);
        qt_node_set_str(n, "mode", modes[m]);
        snprintf(label, sizeof label, "Pad %s", modes[m]);
        check(g, label, NULL, 0);
        qt_graph_free(g);
    }

    g = qt_graph_new(13);
    a = tensor(g, "x", 2, D(3, 6), -2, 2, 0);
    node(g, "Softmax", IN(a), 1);
    check(g, "Softmax", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(2, 4, 3), -2, 2, 0);
    n = node(g, "LogSoftmax", IN(a), 1);
    qt_node_set_int(n, "axis", 1);
    check(g, "LogSoftmax axis 1", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(2, 3, 4), -1, 1, 0);
    node(g, "Identity", IN(a), 1);
    check(g, "Identity", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 4, D(2, 1, 4, 1), -1, 1, 0);
    int sq = ints(g, "axes", 2, D(1, -1));
    node(g, "Squeeze", IN(a, sq), 2);
    check(g, "Squeeze axes (1,-1)", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 2, D(3, 4), -1, 1, 0);
    int usq = ints(g, "axes", 2, D(0, 3));
    node(g, "Unsqueeze", IN(a, usq), 2);
    check(g, "Unsqueeze axes (0,3)", NULL, 0);
    qt_graph_free(g);

    g = qt_graph_new(13);
    a = tensor(g, "x", 2, D(8, 16), -1, 1, 0);
    int ratio = scalar(g, "ratio", 0.3f);
    node(g, "Dropout", IN(a, ratio), 2);
    check(g, "Dropout (training, seeded mask)", (const char *const[]){"ratio"}, 1);
    qt_graph_free(g);

}

/* transformer ops (after the others: their random draws leave the earlier
 * cases' data as it was) */
static void op_cases4(void) {
    struct qt_graph *g;
    struct qt_node *n;
    int a, b, s, bb;
    unary_case("Erf", -2, 2, 0);
    unary_case("Gelu", -3, 3, 0);
    g = qt_graph_new(20);
    a = tensor(g, "x", 3, D(2, 3, 4), -3, 3, 0);
    n = node(g, "Gelu", IN(a), 1);
    qt_node_set_str(n, "approximate", "tanh");
    check(g, "Gelu approximate tanh", NULL, 0);
    qt_graph_free(g);

    /* LayerNormalization: x, Scale and B all trained */
    g = qt_graph_new(17);
    a = tensor(g, "x", 3, D(2, 3, 6), -2, 2, 0);
    s = tensor(g, "scale", 1, D(6), 0.5f, 1.5f, 0);
    bb = tensor(g, "bias", 1, D(6), -1, 1, 0);
    node(g, "LayerNormalization", IN(a, s, bb), 3);
    check(g, "LayerNormalization last axis", NULL, 0);
    qt_graph_free(g);
    g = qt_graph_new(17);
    a = tensor(g, "x", 3, D(2, 3, 4), -2, 2, 0);
    s = tensor(g, "scale", 2, D(3, 4), 0.5f, 1.5f, 0);
    n = node(g, "LayerNormalization", IN(a, s), 2);
    qt_node_set_int(n, "axis", 1);
    qt_node_set_float(n, "epsilon", 1e-3f);
    check(g, "LayerNormalization axis 1, no B", NULL, 0);
    qt_graph_free(g);
    g = qt_graph_new(17);
    a = tensor(g, "x", 2, D(3, 5), -2, 2, 0);
    s = tensor(g, "scale", 1, D(1), 0.5f, 1.5f, 0);
    bb = tensor(g, "bias", 1, D(1), -1, 1, 0);
    node(g, "LayerNormalization", IN(a, s, bb), 3);
    check(g, "LayerNormalization scalar Scale and B", NULL, 0);
    qt_graph_free(g);

    /* Einsum: both inputs trained (maxvit's attention product), a broadcast
     * ellipsis, a diagonal */
    g = qt_graph_new(13);
    a = tensor(g, "q", 4, D(2, 2, 3, 4), -1, 1, 0);
    b = tensor(g, "k", 4, D(2, 2, 5, 4), -1, 1, 0);
    n = node(g, "Einsum", IN(a, b), 2);
    qt_node_set_str(n, "equation", "B H I D, B H J D -> B H I J");
    check(g, "Einsum B H I D, B H J D -> B H I J", NULL, 0);
    qt_graph_free(g);
    g = qt_graph_new(13);
    a = tensor(g, "a", 3, D(2, 3, 4), -1, 1, 0);
    b = tensor(g, "b", 3, D(1, 4, 2), -1, 1, 0);
    n = node(g, "Einsum", IN(a, b), 2);
    qt_node_set_str(n, "equation", "...ij,...jk->...ik");
    check(g, "Einsum ...ij,...jk->...ik (b broadcast)", NULL, 0);
    qt_graph_free(g);
    g = qt_graph_new(13);
    a = tensor(g, "a", 3, D(2, 4, 4), -1, 1, 0);
    n = node(g, "Einsum", IN(a), 1);
    qt_node_set_str(n, "equation", "bii->bi");
    check(g, "Einsum bii->bi (diagonal)", NULL, 0);
    qt_graph_free(g);

    /* what the torchvision transformer and segmentation exports train
     * through: Gather of an activation, Expand, Pow and Sqrt (LayerNorm
     * decomposed at opset 13), Resize */
    unary_case("Sqrt", 0.5f, 2, 0);
    g = qt_graph_new(13);
    a = tensor(g, "a", 3, D(2, 3, 4), 0.5f, 2, 0);
    b = tensor(g, "b", 1, D(4), 0.5f, 2.5f, 0);
    node(g, "Pow", IN(a, b), 2);
    check(g, "Pow a^b (both trained, b broadcast)", NULL, 0);
    qt_graph_free(g);
    g = qt_graph_new(13);
    a = tensor(g, "a", 3, D(2, 3, 4), -2, 2, 0);
    b = scalar(g, "two", 2.0f);
    node(g, "Pow", IN(a, b), 2);
    check(g, "Pow x^2 (constant exponent)", (const char *const[]){"two"}, 1);
    qt_graph_free(g);
    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(3, 4, 5), -1, 1, 0);
    b = ints(g, "idx", 4, D(2, 0, 2, -1));
    n = node(g, "Gather", IN(a, b), 2);
    qt_node_set_int(n, "axis", 1);
    check(g, "Gather axis 1, repeated and negative indices", NULL, 0);
    qt_graph_free(g);
    g = qt_graph_new(13);
    a = tensor(g, "x", 3, D(1, 3, 1), -1, 1, 0);
    b = ints(g, "shape", 3, D(2, 3, 4));
    node(g, "Expand", IN(a, b), 2);
    check(g, "Expand [1,3,1] to [2,3,4]", NULL, 0);
    qt_graph_free(g);
    static const struct {
        const char *label, *mode, *coord;
        float sh, sw;
    } rz[] = {
        {"Resize linear pytorch_half_pixel x2", "linear", "pytorch_half_pixel", 2, 2},
        {"Resize linear align_corners (1.5, 0.75)", "linear", "align_corners", 1.5f, 0.75f},
        {"Resize cubic half_pixel (2, 1.5)", "cubic", "half_pixel", 2, 1.5f},
        {"Resize nearest asymmetric (2, 0.5)", "nearest", "asymmetric", 2, 0.5f},
    };
    for (size_t k = 0; k < sizeof rz / sizeof rz[0]; k++) {
        g = qt_graph_new(13);
        a = tensor(g, "x", 4, D(2, 2, 4, 6), -1, 1, 0);
        int64_t four = 4;
        struct qt_tensor *sc = qt_tensor_new(QT_FLOAT, 1, &four);
        float *sv = sc->data;
        sv[0] = sv[1] = 1, sv[2] = rz[k].sh, sv[3] = rz[k].sw;
        int sv_v = qt_graph_add_init(g, "scales", sc, &err);
        n = node(g, "Resize", IN(a, -1, sv_v), 3);
        qt_node_set_str(n, "mode", rz[k].mode);
        qt_node_set_str(n, "coordinate_transformation_mode", rz[k].coord);
        check(g, rz[k].label, (const char *const[]){"scales"}, 1);
        qt_graph_free(g);
    }
}

/* ---- FakeQuant ------------------------------------------------------------ */

/* The function LSQ differentiates: s * (v + c - z), v = clamp(x/s + z),
 * the rounding offsets c = round(v) - v frozen at (x0, s0). */
static double lsq_ref(const float *x, const float *s, const float *z, const double *c, const float *r, int64_t n,
                      int64_t C, int64_t inner, int qmin, int qmax) {
    double L = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t ch = (i / inner) % C;
        double v = (double)x[i] / s[ch] + z[ch];
        v = v < qmin ? qmin : v > qmax ? qmax : v;
        L += r[i] * (v + c[i] - z[ch]) * s[ch];
    }
    return L;
}

static void fq_case(const char *label, int per_channel, int qmin, int qmax) {
    struct qt_graph *g = qt_graph_new(13);
    /* 7x7 maps: rows of 98 / 294 elements, past one segment of the
     * backward's row loop (256) and not a multiple of its 8 lanes */
    int64_t C = per_channel ? 3 : 1, n = 2 * 3 * 7 * 7, inner = per_channel ? 98 : n;
    float span = 0.045f * (float)(qmax - qmin); /* some values fall outside the range */
    int a = tensor(g, "x", 4, per_channel ? D(3, 2, 7, 7) : D(2, 3, 7, 7), -span, 0.8f * span, 0);
    int s = tensor(g, "s", 1, D(C), 0.04f, 0.08f, 0), z = tensor(g, "z", 1, D(C), 0, 0, 0);
    float *zp = g->v[z].init->data;
    for (int64_t k = 0; k < C; k++)
        zp[k] = qmin < 0 ? 0 : (float)(qmin + qmax + 1) / 2 + (float)k;
    int y = qt_graph_add_value(g, "y", QT_V_ACT, &err);
    int k = qt_fq_add(g, "fq", a, s, z, y, qmin, qmax, per_channel ? 0 : -1, 0, 0, 1.0f, "minmax", &err);
    T_OK(k >= 0, "%s: node added (%s)", label, err.msg);
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = y;
    g->noutputs = 1;
    unsigned char params[8] = {0};
    params[a] = params[s] = 1;
    struct qt_exec *x = NULL;
    if (qt_exec_new_train(&x, g, 1, 2, params, &err)) {
        T_OK(0, "%s: plan: %s", label, err.msg);
        qt_graph_free(g);
        return;
    }
    float *xv = g->v[a].init->data, *sv = g->v[s].init->data, r[294];
    double c[294];
    for (int64_t i = 0; i < n; i++) {
        r[i] = urand(-1, 1);
        int64_t ch = (i / inner) % C;
        /* keep clear of the clamping kinks, where a finite difference straddles two slopes */
        double t = (double)xv[i] / sv[ch] + zp[ch];
        if (fabs(t - qmin) < 0.02 || fabs(t - qmax) < 0.02)
            xv[i] += 0.05f * sv[ch];
        double v = (double)xv[i] / sv[ch] + zp[ch];
        v = v < qmin ? qmin : v > qmax ? qmax : v;
        c[i] = nearbyint(v) - v;
    }
    qt_exec_run(x, &err);
    const float *yv = x->t[y].data;
    int exact = 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t ch = (i / inner) % C;
        int32_t q = qt_quantize(xv[i], sv[ch], (int32_t)zp[ch], qmin, qmax);
        exact &= yv[i] == (float)(q - (int32_t)zp[ch]) * sv[ch];
    }
    T_OK(exact, "%s: forward equals QuantizeLinear + DequantizeLinear", label);
    memcpy(qt_exec_grad(x, y), r, sizeof(float) * (size_t)n);
    qt_exec_backward(x, &err);
    const float *dx = qt_exec_grad(x, a), *ds = qt_exec_grad(x, s);
    double worst = 0;
    int clamped = 0;
    for (int64_t i = 0; i < n; i++) {
        float x0 = xv[i];
        double h = 1e-4;
        xv[i] = (float)(x0 + h);
        double lp = lsq_ref(xv, sv, zp, c, r, n, C, inner, qmin, qmax);
        xv[i] = (float)(x0 - h);
        double lm = lsq_ref(xv, sv, zp, c, r, n, C, inner, qmin, qmax);
        xv[i] = x0;
        double num = (lp - lm) / ((double)(float)(x0 + h) - (double)(float)(x0 - h));
        worst = fmax(worst, fabs(num - dx[i]));
        clamped += num == 0;
    }
    T_OK(worst < 1e-3 && clamped > 0 && clamped < n, "%s: STE input gradient (%d of %lld clamped, worst %.2g)", label,
         clamped, (long long)n, worst);
    worst = 0;
    for (int64_t ch = 0; ch < C; ch++) {
        float s0 = sv[ch];
        double h = 1e-5;
        sv[ch] = (float)(s0 + h);
        double lp = lsq_ref(xv, sv, zp, c, r, n, C, inner, qmin, qmax);
        sv[ch] = (float)(s0 - h);
        double lm = lsq_ref(xv, sv, zp, c, r, n, C, inner, qmin, qmax);
        sv[ch] = s0;
        double num = (lp - lm) / ((double)(float)(s0 + h) - (double)(float)(s0 - h));
        worst = fmax(worst, fabs(num - ds[ch]) / (1e-3 + 1e-3 * fabs(num)));
    }
    T_OK(worst <= 1, "%s: LSQ scale gradient", label);
    qt_exec_free(x);
    qt_graph_free(g);
}

static void pact_case(void) {
    struct qt_graph *g = qt_graph_new(13);
    int64_t n = 64;
    int a = tensor(g, "x", 2, D(4, 16), -0.5f, 1.5f, 0), al = tensor(g, "alpha", 1, D(1), 1.0f, 1.0f, 0);
    int y = qt_graph_add_value(g, "y", QT_V_ACT, &err);
    qt_fq_add(g, "fq", a, al, -1, y, 0, 15, -1, 1, 0, 1.0f, "minmax", &err);
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = y;
    g->noutputs = 1;
    unsigned char params[4] = {0};
    params[a] = params[al] = 1;
    struct qt_exec *x = NULL;
    if (qt_exec_new_train(&x, g, 1, 1, params, &err)) {
        T_OK(0, "PACT: plan: %s", err.msg);
        qt_graph_free(g);
        return;
    }
    float *xv = g->v[a].init->data, *av = g->v[al].init->data, r[64];
    for (int64_t i = 0; i < n; i++)
        r[i] = urand(-1, 1);
    qt_exec_run(x, &err);
    const float *yv = x->t[y].data;
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        float cx = xv[i] < 0 ? 0 : xv[i] > av[0] ? av[0] : xv[i];
        ok &= fabsf(yv[i] - cx) <= av[0] / 15 / 2 + 1e-6f;
    }
    T_OK(ok, "PACT: forward within half a step of clip(x, 0, alpha)");
    memcpy(qt_exec_grad(x, y), r, sizeof r);
    qt_exec_backward(x, &err);
    /* the reference clip(x, 0, alpha) in double */
    double worst = 0, h = 1e-4, la = 0, lb = 0;
    for (int64_t i = 0; i < n; i++) {
        double num = 0;
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            double xx = xv[i] + sgn * h, cx = xx < 0 ? 0 : xx > av[0] ? av[0] : xx;
            num += sgn * r[i] * cx / (2 * h);
        }
        worst = fmax(worst, fabs(num - qt_exec_grad(x, a)[i]));
        double al0 = av[0];
        la += r[i] * (xv[i] < 0 ? 0 : xv[i] > al0 + h ? al0 + h : xv[i]);
        lb += r[i] * (xv[i] < 0 ? 0 : xv[i] > al0 - h ? al0 - h : xv[i]);
    }
    T_OK(worst < 1e-3, "PACT: input gradient (worst %.2g)", worst);
    double num = (la - lb) / (2 * h), an = qt_exec_grad(x, al)[0];
    T_OK(fabs(num - an) < 1e-3 * (1 + fabs(num)) && fabs(num) > 0.1, "PACT: clipping-level gradient %.4f vs %.4f",
         an, num);
    qt_exec_free(x);
    qt_graph_free(g);
}

static void fq_observer_case(void) {
    struct qt_graph *g = qt_graph_new(13);
    int a = tensor(g, "w", 2, D(3, 5), -1, 1, 0), s = tensor(g, "s", 1, D(3), 1, 1, 0);
    int z = tensor(g, "z", 1, D(3), 0, 0, 0);
    int y = qt_graph_add_value(g, "y", QT_V_ACT, &err);
    int k = qt_fq_add(g, "fq", a, s, z, y, -7, 7, 0, 0, 1, 1.0f, "minmax", &err);
    g->outputs = malloc(sizeof(int));
    g->outputs[0] = y;
    g->noutputs = 1;
    unsigned char params[4] = {0};
    params[a] = 1;
    struct qt_exec *x = NULL;
    qt_exec_new_train(&x, g, 1, 1, params, &err);
    ((struct qt_fq *)g->n[k].priv)->observe = 1;
    qt_exec_run(x, &err);
    const float *w = g->v[a].init->data, *sv = g->v[s].init->data;
    int ok = 1;
    for (int c = 0; c < 3; c++) {
        float m = 0;
        for (int i = 0; i < 5; i++)
            m = fmaxf(m, fabsf(w[c * 5 + i]));
        ok &= fabsf(sv[c] - m / 7) < 1e-6f;
    }
    T_OK(ok, "FakeQuant observer: per-channel scale = max|w| / 7");
    ((struct qt_fq *)g->n[k].priv)->observe = 0;
    g->v[a].init->data = g->v[a].init->data; /* unchanged */
    float before = sv[0];
    ((float *)g->v[a].init->data)[0] = 10;
    qt_exec_run(x, &err);
    T_OK(sv[0] == before, "FakeQuant observer disabled: scale frozen");
    qt_exec_free(x);
    qt_graph_free(g);
}

/* ---- losses, optimizers, schedules ---------------------------------------- */

static void loss_cases(void) {
    float z[12], t[12], d[12];
    int labels[3] = {2, 0, -1}, correct;
    double L, Lp, Lm;
    for (int i = 0; i < 12; i++) {
        z[i] = urand(-2, 2);
        t[i] = urand(-2, 2);
    }
    int nl = qt_loss_xent(z, labels, 3, 4, d, &L, &correct);
    double worst = 0;
    for (int i = 0; i < 12; i++) {
        float z0 = z[i], dd[12];
        z[i] = z0 + 1e-3f;
        qt_loss_xent(z, labels, 3, 4, dd, &Lp, NULL);
        z[i] = z0 - 1e-3f;
        qt_loss_xent(z, labels, 3, 4, dd, &Lm, NULL);
        z[i] = z0;
        worst = fmax(worst, fabs((Lp - Lm) / ((double)(z0 + 1e-3f) - (double)(z0 - 1e-3f)) - d[i]));
    }
    T_OK(nl == 2 && worst < 1e-4 && d[8] == 0, "cross-entropy gradient (worst %.2g, unlabeled row ignored)", worst);
    double ref = 0;
    for (int r = 0; r < 2; r++) {
        double m = -INFINITY, s = 0;
        for (int k = 0; k < 4; k++)
            m = fmax(m, z[r * 4 + k]);
        for (int k = 0; k < 4; k++)
            s += exp(z[r * 4 + k] - m);
        ref += -(z[r * 4 + labels[r]] - m - log(s)) / 2;
    }
    T_OK(fabs(ref - L) < 1e-9, "cross-entropy value %.6f", L);
    qt_loss_kl(z, t, 3, 4, 3.0f, d, &L, NULL);
    worst = 0;
    for (int i = 0; i < 12; i++) {
        float z0 = z[i], dd[12];
        z[i] = z0 + 1e-3f;
        qt_loss_kl(z, t, 3, 4, 3.0f, dd, &Lp, NULL);
        z[i] = z0 - 1e-3f;
        qt_loss_kl(z, t, 3, 4, 3.0f, dd, &Lm, NULL);
        z[i] = z0;
        worst = fmax(worst, fabs((Lp - Lm) / ((double)(z0 + 1e-3f) - (double)(z0 - 1e-3f)) - d[i]));
    }
    T_OK(L > 0 && worst < 1e-4, "KL distillation gradient at T=3 (worst %.2g)", worst);
    qt_loss_kl(t, t, 3, 4, 3.0f, d, &L, NULL);
    T_OK(fabs(L) < 1e-12, "KL of the teacher against itself is 0");

    /* more classes than the old 4096-entry buffers: the gradient is not
     * silently zeroed (softmax - onehot for cross-entropy, sums to 0) */
    enum { C = 5000 };
    float *zb = malloc(sizeof(float) * 2 * C), *tb = malloc(sizeof(float) * 2 * C), *db = malloc(sizeof(float) * 2 * C);
    int lb[2] = {4321, 7};
    for (int i = 0; i < 2 * C; i++)
        zb[i] = urand(-2, 2), tb[i] = urand(-2, 2);
    nl = qt_loss_xent(zb, lb, 2, C, db, &L, NULL);
    double m = -INFINITY, se = 0, sum = 0, werr = 0;
    for (int k = 0; k < C; k++)
        m = fmax(m, zb[k]);
    for (int k = 0; k < C; k++)
        se += exp(zb[k] - m);
    for (int k = 0; k < C; k++) {
        double want = (exp(zb[k] - m) / se - (k == lb[0])) / 2;
        werr = fmax(werr, fabs(db[k] - want));
        sum += db[k];
    }
    T_OK(nl == 2 && werr < 1e-7 && fabs(sum) < 1e-5 && db[lb[0]] < -0.4f,
         "cross-entropy over %d classes: gradient = (softmax - onehot) / 2 (worst %.2g, row sum %.2g)", C, werr, sum);
    qt_loss_kl(zb, tb, 2, C, 2.0f, db, &L, NULL);
    double amax = 0;
    for (int i = 0; i < 2 * C; i++)
        amax = fmax(amax, fabs(db[i]));
    T_OK(L > 0 && amax > 1e-6, "KL over %d classes: loss %.4f, gradient not zeroed (max %.2g)", C, L, amax);
    free(zb);
    free(tb);
    free(db);
}

static void optim_cases(void) {
    struct qt_optim o;
    float w[2] = {1, -2}, g[2] = {0.5f, 0.25f};
    qt_optim_init(&o, QT_OPT_SGD, 0.9f, 0.1f);
    qt_optim_add(&o, w, g, 2, 1, -INFINITY, &err);
    qt_optim_step(&o, 0.1f); /* m = g + 0.1 w = (0.6, 0.05); w -= 0.1 m */
    qt_optim_step(&o, 0.1f); /* m = 0.9 m + g + 0.1 w */
    double m0 = 0.6, w0 = 1 - 0.06, m1 = 0.9 * m0 + 0.5 + 0.1 * w0, w1 = w0 - 0.1 * m1;
    T_OK(fabs(w[0] - w1) < 1e-6, "SGD momentum + weight decay, two steps: %.6f (expected %.6f)", w[0], w1);
    qt_optim_release(&o);
    w[0] = 1;
    w[1] = -2;
    qt_optim_init(&o, QT_OPT_ADAM, 0, 0);
    qt_optim_add(&o, w, g, 2, 1, -INFINITY, &err);
    qt_optim_step(&o, 0.01f); /* first Adam step moves each weight by lr against the gradient's sign */
    T_OK(fabs(w[0] - 0.99) < 1e-6 && fabs(w[1] + 2.01) < 1e-6, "Adam first step: %.6f %.6f", w[0], w[1]);
    qt_optim_step(&o, 0.01f);
    T_OK(fabs(w[0] - 0.98) < 1e-6, "Adam second step with a constant gradient: %.6f", w[0]);
    qt_optim_release(&o);
    w[0] = 1;
    w[1] = -2;
    qt_optim_init(&o, QT_OPT_ADAM, 0, 0);
    qt_optim_add(&o, w, g, 2, 1, -INFINITY, &err);
    o.p[0].lr_elem = malloc(2 * sizeof(float)); /* per-element factors (qat --relative-lr), freed by release */
    o.p[0].lr_elem[0] = 0.5f;
    o.p[0].lr_elem[1] = 3.0f;
    qt_optim_step(&o, 0.01f);
    T_OK(fabs(w[0] - 0.995) < 1e-6 && fabs(w[1] + 2.03) < 1e-6, "Adam, per-element lr factors 0.5 and 3: %.6f %.6f",
         w[0], w[1]);
    /* a learnt scale (log set): Adam's step on log w, whatever the kind and
     * the gradient's size; positive, a factor of exp(-+lr) on the first step */
    qt_optim_release(&o);
    float sc[2] = {0.5f, 1e-9f}, sg[2] = {2, -1e6f};
    qt_optim_init(&o, QT_OPT_SGD, 0.9f, 0.1f);
    qt_optim_add(&o, sc, sg, 2, 1, 0.0f, &err);
    o.p[0].log = 1;
    qt_optim_step(&o, 0.1f);
    T_OK(fabs(sc[0] - 0.5 * exp(-0.1)) < 1e-6 && fabs(sc[1] / (1e-9 * exp(0.1)) - 1) < 1e-4,
         "log-space scale step (SGD kind): 0.5 -> %.6f, 1e-9 -> %.4g with gradient -1e6", sc[0], sc[1]);
    float gg[2] = {3, 4};
    qt_optim_release(&o);
    qt_optim_init(&o, QT_OPT_SGD, 0, 0);
    qt_optim_add(&o, w, gg, 2, 1, -INFINITY, &err);
    double norm = qt_clip_grad_norm(&o, 1.0);
    T_OK(fabs(norm - 5) < 1e-9 && fabs(gg[0] - 0.6) < 1e-5 && fabs(gg[1] - 0.8) < 1e-5,
         "gradient clipping to norm 1 (was %.3f)", norm);
    qt_optim_release(&o);

    struct qt_sched s = {QT_SCHED_COSINE, 0.1f, 100, 0, 0.1f, 0};
    T_OK(fabsf(qt_sched_lr(&s, 0) - 0.1f) < 1e-7f && fabsf(qt_sched_lr(&s, 50) - 0.05f) < 1e-7f &&
             qt_sched_lr(&s, 100) < 1e-7f,
         "cosine schedule: 0.1, 0.05, 0");
    s = (struct qt_sched){QT_SCHED_STEP, 0.1f, 100, 30, 0.1f, 0};
    T_OK(fabsf(qt_sched_lr(&s, 29) - 0.1f) < 1e-7f && fabsf(qt_sched_lr(&s, 30) - 0.01f) < 1e-8f &&
             fabsf(qt_sched_lr(&s, 65) - 0.001f) < 1e-9f,
         "step schedule: x0.1 every 30 steps");
    s.warmup = 10;
    T_OK(fabsf(qt_sched_lr(&s, 0) - 0.01f) < 1e-8f, "warm-up: first step at lr/10");
}

/* Backward bytes do not depend on the thread count. */
static void determinism_case(void) {
    float *res[2] = {NULL, NULL};
    for (int th = 1; th <= 2; th++) {
        rng = 99;
        struct qt_graph *g = qt_graph_new(13);
        int a = tensor(g, "x", 4, D(4, 8, 9, 9), -1, 1, 0), w = tensor(g, "w", 4, D(16, 8, 3, 3), -1, 1, 0);
        struct qt_node *n = node(g, "Conv", IN(a, w), 2);
        qt_node_set_ints(n, "pads", D(1, 1, 1, 1), 4);
        unsigned char params[4] = {1, 1, 0, 0};
        struct qt_exec *x = NULL;
        memset(&err, 0, sizeof err);
        res[th - 1] = calloc(16 * 8 * 9 + 4 * 8 * 81, sizeof(float));
        if (qt_node_changed(g, 0, &err) || qt_exec_new_train(&x, g, 1, th, params, &err) ||
            qt_exec_run(x, &err)) {
            T_OK(0, "Conv backward at %d threads: %s", th, err.msg);
            qt_exec_free(x);
            qt_graph_free(g);
            continue;
        }
        int64_t ny = qt_tensor_numel(&x->t[g->outputs[0]]);
        for (int64_t i = 0; i < ny; i++)
            qt_exec_grad(x, g->outputs[0])[i] = urand(-1, 1);
        if (qt_exec_backward(x, &err))
            T_OK(0, "Conv backward at %d threads: %s", th, err.msg);
        else
            memcpy(res[th - 1], qt_exec_grad(x, w), sizeof(float) * 16 * 8 * 9),
                memcpy(res[th - 1] + 16 * 8 * 9, qt_exec_grad(x, a), sizeof(float) * 4 * 8 * 81);
        qt_exec_free(x);
        qt_graph_free(g);
    }
    int nonzero = 0;
    for (int i = 0; i < 16 * 8 * 9 + 4 * 8 * 81; i++)
        nonzero += res[0][i] != 0;
    T_OK(nonzero > (16 * 8 * 9 + 4 * 8 * 81) / 2 && !memcmp(res[0], res[1], sizeof(float) * (16 * 8 * 9 + 4 * 8 * 81)),
         "Conv backward: identical bytes at 1 and 2 threads (%d nonzero gradient elements)", nonzero);
    free(res[0]);
    free(res[1]);
}

/* Every registered op with a backward has a case above (as t_ops.c checks
 * for the forward). */
static void coverage_case(void) {
    int missing = 0;
    for (int i = 0; i < qt_op_count(); i++) {
        const struct qt_op *op = qt_op_at(i);
        int seen = 0;
        for (int k = 0; k < ncovered; k++)
            seen |= covered[k] == op;
        if (op->bwd && !seen) {
            T_OK(0, "%s has a backward but no gradient case", op->name);
            missing++;
        }
    }
    T_OK(!missing && ncovered > 0, "every op with a backward has a gradient case (%d ops)", ncovered);
}

int main(void) {
    op_cases();
    op_cases2();
    op_cases3();
    op_cases4();
    coverage_case();
    fq_case("FakeQuant per tensor uint8", 0, 0, 255);
    fq_case("FakeQuant per tensor 4-bit", 0, 0, 15);
    fq_case("FakeQuant per channel int4", 1, -8, 7);
    fq_case("FakeQuant per channel 2-bit", 1, -2, 1);
    pact_case();
    fq_observer_case();
    loss_cases();
    optim_cases();
    determinism_case();
    /* last: cases added here leave the random inputs of the others as they were */
    conv_case("Conv depthwise asymmetric pads", D(2, 3, 6, 5), D(3, 1, 3, 3), 3, D(1, 1), D(0, 2, 1, 0), D(1, 1));
    /* 9 taps x 464 columns: past the row accumulators (DW_ACC_MAX floats) */
    conv_case("Conv depthwise long rows", D(1, 2, 1, 470), D(2, 1, 1, 9), 2, D(1, 1), D(0, 1, 0, 2), D(1, 1));
    return t_done();
}
