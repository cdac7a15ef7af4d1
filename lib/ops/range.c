/* range.c: ONNX Range (opset 11+). y[i] = start + i * delta for
 * i < max(ceil((limit - start) / delta), 0). The three scalar inputs must be
 * known at plan time (they fix the output's length): exporters use Range for
 * index vectors that the planner folds. float, double, int32, int64. */
#include "engine.h"

#include <math.h>

static int range_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (n->nin != 3 || n->in[0] < 0 || n->in[1] < 0 || n->in[2] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs start, limit and delta");
    return 0;
}

static int range_len(struct qt_exec *x, const struct qt_node *n, int64_t *len, struct qt_err *err) {
    const struct qt_tensor *s = qt_in(x, n, 0), *l = qt_in(x, n, 1), *d = qt_in(x, n, 2);
    for (int i = 0; i < 3; i++) {
        const struct qt_tensor *t = qt_in(x, n, i);
        if (!qt_in_const(x, n, i))
            return qt_node_err(n, QT_EUNSUPPORTED, err, "input %d is not known before the run", i);
        if (qt_tensor_numel(t) != 1 || t->dtype != s->dtype)
            return qt_node_err(n, QT_EMODEL, err, "inputs must be scalars of one type");
    }
    if (s->dtype == QT_INT64 || s->dtype == QT_INT32) {
        int64_t a = qt_tensor_geti(s, 0), b = qt_tensor_geti(l, 0), c = qt_tensor_geti(d, 0);
        if (c == 0)
            return qt_node_err(n, QT_EMODEL, err, "delta is 0");
        if (a < -((int64_t)1 << 60) || a > ((int64_t)1 << 60) || b < -((int64_t)1 << 60) || b > ((int64_t)1 << 60))
            return qt_node_err(n, QT_EMODEL, err, "start or limit is out of range");
        int64_t span = b - a; /* |span| <= 2^61: no overflow */
        /* ceil(span / c) when span and c have one sign, else 0; no sum with
         * c, which may be any nonzero int64 (fuzzing found span + c overflow) */
        *len = span != 0 && (span > 0) == (c > 0) ? span / c + (span % c != 0) : 0;
    } else if (s->dtype == QT_FLOAT || s->dtype == QT_DOUBLE) {
        double a = qt_tensor_get(s, 0), b = qt_tensor_get(l, 0), c = qt_tensor_get(d, 0);
        double q = ceil((b - a) / c);
        if (c == 0 || q != q || q > 1e12)
            return qt_node_err(n, QT_EMODEL, err, "start, limit and delta give no valid length");
        *len = q > 0 ? (int64_t)q : 0;
    } else {
        return qt_node_err(n, QT_EUNSUPPORTED, err, "type %s is not supported", qt_dtype_name(s->dtype));
    }
    if (*len > ((int64_t)1 << 32))
        return qt_node_err(n, QT_EMODEL, err, "output of %lld elements is too large", (long long)*len);
    return 0;
}

static int range_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    int64_t len;
    if (range_len(x, n, &len, err))
        return err->code;
    return qt_set_out(x, n, 0, qt_in(x, n, 0)->dtype, 1, &len, err);
}

static int range_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *s = qt_in(x, n, 0), *d = qt_in(x, n, 2);
    struct qt_tensor *y = qt_out(x, n, 0);
    int64_t len = y->dims[0];
    (void)err;
    for (int64_t i = 0; i < len; i++) {
        switch (y->dtype) {
        case QT_INT64: ((int64_t *)y->data)[i] = qt_tensor_geti(s, 0) + i * qt_tensor_geti(d, 0); break;
        case QT_INT32: ((int32_t *)y->data)[i] = (int32_t)(qt_tensor_geti(s, 0) + i * qt_tensor_geti(d, 0)); break;
        case QT_FLOAT: /* ONNX Runtime accumulates in the element type */
            ((float *)y->data)[i] = *(const float *)s->data + (float)i * *(const float *)d->data;
            break;
        case QT_DOUBLE: ((double *)y->data)[i] = qt_tensor_get(s, 0) + (double)i * qt_tensor_get(d, 0); break;
        }
    }
    return 0;
}

const struct qt_op qt_op_range = {
    .name = "Range",
    .flags = QT_OPF_EMPTY,
    .init = range_init,
    .infer = range_infer,
    .fwd = range_fwd,
};
