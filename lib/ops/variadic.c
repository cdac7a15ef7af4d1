/* variadic.c: ONNX Max, Min, Sum, Mean: y = the element-wise max / min /
 * sum / mean of one or more inputs broadcast together (numpy rules).
 * float32, float64, int32, int64 (Sum/Max/Min). The inputs are folded
 * in order (y = in0; y = op(y, in_k)), so Sum's rounding is ONNX Runtime's.
 * No backward: a training plan through this op fails, naming the node. */
#include "ops/eltwise.h"

#include <string.h>

enum { V_MAX, V_MIN, V_SUM, V_MEAN };

static int var_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (n->nin < 1)
        return qt_node_err(n, QT_EMODEL, err, "needs at least one input");
    for (int i = 0; i < n->nin; i++)
        if (n->in[i] < 0)
            return qt_node_err(n, QT_EMODEL, err, "input %d is missing", i);
    return 0;
}

static int var_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *a = qt_in(x, n, 0);
    int64_t d[QT_MAXDIM], t[QT_MAXDIM];
    int nd = a->ndim;
    if (a->dtype != QT_FLOAT && a->dtype != QT_DOUBLE && a->dtype != QT_INT64 && a->dtype != QT_INT32)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(a->dtype));
    memcpy(d, a->dims, sizeof(int64_t) * (size_t)nd);
    for (int i = 1; i < n->nin; i++) {
        const struct qt_tensor *b = qt_in(x, n, i);
        if (b->dtype != a->dtype)
            return qt_node_err(n, QT_EMODEL, err, "input %d has type %s, input 0 %s", i, qt_dtype_name(b->dtype),
                               qt_dtype_name(a->dtype));
        if (qt_broadcast(n, nd, d, b->ndim, b->dims, &nd, t, err))
            return err->code;
        memcpy(d, t, sizeof(int64_t) * (size_t)nd);
    }
    return qt_set_out(x, n, 0, a->dtype, nd, d, err);
}

static inline double apply(int op, double acc, double v) {
    switch (op) {
    case V_MAX: return v > acc || v != v ? v : acc;
    case V_MIN: return v < acc || v != v ? v : acc;
    default: return acc + v;
    }
}

static inline int64_t applyi(int op, int64_t acc, int64_t v) {
    switch (op) {
    case V_MAX: return v > acc ? v : acc;
    case V_MIN: return v < acc ? v : acc;
    default: return (int64_t)((uint64_t)acc + (uint64_t)v);
    }
}

/* y = in (k == 0) or y = op(y, in), walking y in order. */
static void fold_in(int op, int k, const struct qt_tensor *in, struct qt_tensor *y) {
    int64_t st[QT_MAXDIM], idx[QT_MAXDIM] = {0}, o = 0, cnt = qt_tensor_numel(y);
    int nd = y->ndim;
    qt_bcast_strides(in->ndim, in->dims, nd, y->dims, st);
    for (int64_t i = 0; i < cnt; i++) {
        switch (y->dtype) {
        case QT_FLOAT: {
            float v = ((const float *)in->data)[o], *Y = (float *)y->data + i;
            *Y = k == 0 ? v : op >= V_SUM ? *Y + v : (float)apply(op, *Y, v);
            break;
        }
        case QT_DOUBLE: {
            double v = ((const double *)in->data)[o], *Y = (double *)y->data + i;
            *Y = k == 0 ? v : apply(op, *Y, v);
            break;
        }
        case QT_INT64: {
            int64_t v = ((const int64_t *)in->data)[o], *Y = (int64_t *)y->data + i;
            *Y = k == 0 ? v : applyi(op, *Y, v);
            break;
        }
        case QT_INT32: {
            int32_t v = ((const int32_t *)in->data)[o], *Y = (int32_t *)y->data + i;
            *Y = k == 0 ? v : (int32_t)applyi(op, *Y, v);
            break;
        }
        }
        for (int d = nd - 1; d >= 0; d--) {
            idx[d]++;
            o += st[d];
            if (idx[d] < y->dims[d])
                break;
            o -= st[d] * idx[d];
            idx[d] = 0;
        }
    }
}

static int var_run(struct qt_exec *x, const struct qt_node *n, int op, struct qt_err *err) {
    struct qt_tensor *y = qt_out(x, n, 0);
    (void)err;
    /* an input may share y's buffer only if the planner aliased it: it does not (no ALIAS flag) */
    for (int k = 0; k < n->nin; k++)
        fold_in(op, k, qt_in(x, n, k), y);
    if (op == V_MEAN && n->nin > 1) {
        int64_t cnt = qt_tensor_numel(y);
        for (int64_t i = 0; i < cnt; i++) {
            if (y->dtype == QT_FLOAT)
                ((float *)y->data)[i] /= (float)n->nin;
            else if (y->dtype == QT_DOUBLE)
                ((double *)y->data)[i] /= n->nin;
            else if (y->dtype == QT_INT64)
                ((int64_t *)y->data)[i] /= n->nin;
            else
                ((int32_t *)y->data)[i] /= n->nin;
        }
    }
    return 0;
}

#define VAR(fn, onnx, op)                                                                   \
    static int fn##_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) { \
        return var_run(x, n, op, err);                                                      \
    }                                                                                       \
    const struct qt_op qt_op_##fn = {.name = onnx, .init = var_init, .infer = var_infer, .fwd = fn##_fwd}

VAR(max, "Max", V_MAX);
VAR(min, "Min", V_MIN);
VAR(sum, "Sum", V_SUM);
VAR(mean, "Mean", V_MEAN);
