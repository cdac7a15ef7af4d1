/* cast.c: ONNX Cast. y = x converted to the type `to`.
 *
 * Numeric types, float16 and bool (not strings, bfloat16 or float8).
 * To float16: through float32, rounded to nearest even (overflow gives
 * infinity), as ONNX Runtime does.
 * Floating to integer truncates toward zero as C (and ONNX Runtime) does;
 * values outside the target's range saturate instead of being undefined,
 * NaN becomes 0. Anything to bool is x != 0. Integer to integer wraps to
 * the target width (two's complement) as a C conversion does.
 * No backward: a training plan through this op fails, naming the node. */
#include "engine.h"

#include <math.h>
#include <string.h>

static int castable(int t) {
    switch (t) {
    case QT_FLOAT: case QT_DOUBLE: case QT_UINT8: case QT_INT8: case QT_UINT16: case QT_INT16:
    case QT_INT32: case QT_UINT32: case QT_INT64: case QT_UINT64: case QT_BOOL: case QT_FLOAT16:
        return 1;
    default:
        return 0;
    }
}

static int is_float(int t) {
    return t == QT_FLOAT || t == QT_DOUBLE || t == QT_FLOAT16;
}

static int cast_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    int *to = calloc(1, sizeof *to);
    if (!to)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = to;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs an input");
    if (!qt_attr_find(n, "to"))
        return qt_node_err(n, QT_EMODEL, err, "attribute 'to' is missing");
    int64_t t = qt_attr_int(n, "to", 0, err);
    if (err->code)
        return err->code;
    if (t < 0 || t > 64 || !castable((int)t))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "cast to type %lld (%s) is not supported", (long long)t,
                           qt_dtype_name((int)t));
    *to = (int)t;
    return 0;
}

static int cast_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    if (!castable(t->dtype))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "cast from %s is not supported", qt_dtype_name(t->dtype));
    return qt_set_out(x, n, 0, *(const int *)n->priv, t->ndim, t->dims, err);
}

/* Saturating double -> integer in [lo, hi]. */
static int64_t sat(double d, double lo, double hi) {
    if (d != d)
        return 0;
    if (d <= lo)
        return (int64_t)lo;
    if (d >= hi)
        return hi >= 9.2e18 ? INT64_MAX : (int64_t)hi;
    return (int64_t)d;
}

static void put(struct qt_tensor *y, int64_t i, const struct qt_tensor *a) {
    int ft = is_float(a->dtype);
    double d = ft ? qt_tensor_get(a, i) : 0;
    int64_t v = ft ? 0 : qt_tensor_geti(a, i);
    uint64_t u = (uint64_t)v; /* integer sources: wrap to the target width */
    switch (y->dtype) {
    case QT_FLOAT: ((float *)y->data)[i] = ft ? (float)d : a->dtype == QT_UINT64 ? (float)u : (float)v; break;
    case QT_FLOAT16:
        ((uint16_t *)y->data)[i] = qt_float_to_half(ft ? (float)d : a->dtype == QT_UINT64 ? (float)u : (float)v);
        break;
    case QT_DOUBLE: ((double *)y->data)[i] = ft ? d : a->dtype == QT_UINT64 ? (double)u : (double)v; break;
    case QT_BOOL: ((uint8_t *)y->data)[i] = ft ? d != 0 : v != 0; break;
    case QT_UINT8: ((uint8_t *)y->data)[i] = (uint8_t)(ft ? sat(d, 0, 255) : (int64_t)(u & 0xff)); break;
    case QT_INT8: ((int8_t *)y->data)[i] = (int8_t)(ft ? sat(d, -128, 127) : (int8_t)(uint8_t)u); break;
    case QT_UINT16: ((uint16_t *)y->data)[i] = (uint16_t)(ft ? sat(d, 0, 65535) : (int64_t)(u & 0xffff)); break;
    case QT_INT16: ((int16_t *)y->data)[i] = (int16_t)(ft ? sat(d, -32768, 32767) : (int16_t)(uint16_t)u); break;
    case QT_INT32:
        ((int32_t *)y->data)[i] = ft ? (int32_t)sat(d, -2147483648.0, 2147483647.0) : (int32_t)(uint32_t)u;
        break;
    case QT_UINT32: ((uint32_t *)y->data)[i] = ft ? (uint32_t)sat(d, 0, 4294967295.0) : (uint32_t)u; break;
    case QT_INT64: ((int64_t *)y->data)[i] = ft ? sat(d, -9.2e18, 9.2e18) : v; break;
    case QT_UINT64: ((uint64_t *)y->data)[i] = ft ? (uint64_t)sat(d, 0, 9.2e18) : u; break;
    }
}

static int cast_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *a = qt_in(x, n, 0);
    struct qt_tensor *y = qt_out(x, n, 0);
    (void)err;
    if (a->dtype == y->dtype) {
        if (a->data != y->data)
            memcpy(y->data, a->data, a->nbytes);
        return 0;
    }
    int64_t cnt = qt_tensor_numel(a);
    if (a->dtype == QT_UINT8 && y->dtype == QT_FLOAT) { /* image inputs */
        const uint8_t *s = a->data;
        float *d = y->data;
        for (int64_t i = 0; i < cnt; i++)
            d[i] = s[i];
        return 0;
    }
    for (int64_t i = 0; i < cnt; i++)
        put(y, i, a);
    return 0;
}

const struct qt_op qt_op_cast = {
    .name = "Cast",
    .flags = QT_OPF_EMPTY,
    .init = cast_init,
    .infer = cast_infer,
    .fwd = cast_fwd,
};
