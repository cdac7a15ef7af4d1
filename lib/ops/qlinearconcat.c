/* qlinearconcat.c: ONNX Runtime's com.microsoft QLinearConcat, uint8 or int8.
 *
 * QLinearConcat(Y_scale, Y_zp, X0, X0_scale, X0_zp, X1, ...), attribute axis:
 * each input requantized to (Y_scale, Y_zp), y = Q(DQ(x)) with
 * DQ(x) = x_scale * (x - x_zp) and Q the QuantizeLinear rounding, through a
 * 256-entry table per input as ONNX Runtime builds it, then joined along
 * axis. Scales and zero points per tensor. */
#include "int8/qparams.h"

#include <math.h>
#include <string.h>

struct qlconcat {
    int64_t axis;
};

static int qlconcat_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct qlconcat *a = calloc(1, sizeof *a);
    if (!a)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = a;
    if (n->nin < 5 || (n->nin - 2) % 3)
        return qt_node_err(n, QT_EMODEL, err, "needs Y_scale, Y_zero_point and (X, X_scale, X_zero_point) triplets");
    for (int i = 0; i < n->nin; i++)
        if (n->in[i] < 0)
            return qt_node_err(n, QT_EMODEL, err, "input %d is missing", i);
    if (!qt_attr_find(n, "axis"))
        return qt_node_err(n, QT_EMODEL, err, "attribute 'axis' is missing");
    a->axis = qt_attr_int(n, "axis", 0, err);
    return err->code;
}

static int qlconcat_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qlconcat *a = n->priv;
    const struct qt_tensor *r = qt_in(x, n, 2);
    struct qt_qp q;
    int ax;
    char b1[160], b2[160];
    if (!qt_qtype_ok(r->dtype))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "inputs must be uint8 or int8 (got %s)", qt_dtype_name(r->dtype));
    if (qt_axis(n, a->axis, r->ndim, &ax, err) || qt_qp_read(x, n, 0, 1, 1, "Y", &q, err))
        return err->code;
    if (q.z && q.z->dtype != r->dtype)
        return qt_node_err(n, QT_EMODEL, err, "Y zero point type differs from the inputs");
    int64_t d[QT_MAXDIM];
    memcpy(d, r->dims, sizeof(int64_t) * (size_t)r->ndim);
    d[ax] = 0;
    for (int i = 2; i < n->nin; i += 3) {
        const struct qt_tensor *t = qt_in(x, n, i);
        if (t->dtype != r->dtype || t->ndim != r->ndim)
            return qt_node_err(n, QT_EMODEL, err, "input %d does not match input 2", i);
        for (int k = 0; k < r->ndim; k++)
            if (k != ax && t->dims[k] != r->dims[k])
                return qt_node_err(n, QT_EMODEL, err, "input %d %s does not match %s on axis %d", i,
                                   qt_dims_str(t->ndim, t->dims, b1, sizeof b1),
                                   qt_dims_str(r->ndim, r->dims, b2, sizeof b2), k);
        if (qt_qp_read(x, n, i + 1, i + 2, 1, "X", &q, err))
            return err->code;
        if (q.z && q.z->dtype != r->dtype)
            return qt_node_err(n, QT_EMODEL, err, "input %d zero point type differs from the input", i);
        d[ax] += t->dims[ax];
    }
    return qt_set_out(x, n, 0, r->dtype, r->ndim, d, err);
}

static int qlconcat_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qlconcat *a = n->priv;
    struct qt_tensor *y = qt_out(x, n, 0);
    struct qt_qp yq, xq;
    int ax, s8 = y->dtype == QT_INT8;
    if (qt_axis(n, a->axis, y->ndim, &ax, err) || qt_qp_read(x, n, 0, 1, 1, "Y", &yq, err))
        return err->code;
    int64_t outer = qt_numel(ax, y->dims), inner = qt_numel(y->ndim - ax - 1, y->dims + ax + 1), off = 0;
    float ys = qt_qp_scale(&yq, 0);
    int32_t yz = qt_qp_zp(&yq, 0), lo = s8 ? -128 : 0, hi = s8 ? 127 : 255;
    for (int i = 2; i < n->nin; i += 3) {
        const struct qt_tensor *t = qt_in(x, n, i);
        uint8_t lut[256];
        if (qt_qp_read(x, n, i + 1, i + 2, 1, "X", &xq, err))
            return err->code;
        float xs = qt_qp_scale(&xq, 0);
        int32_t xz = qt_qp_zp(&xq, 0);
        for (int v = 0; v < 256; v++) { /* v: the byte; its value in x's type */
            int32_t xv = s8 ? (int32_t)(int8_t)v : v;
            float dq = xs * (float)(xv - xz);
            float q = nearbyintf(dq / ys) + (float)yz;
            q = q >= (float)lo ? q : (float)lo; /* NaN (inf * 0 from hostile scales) too */
            q = q > (float)hi ? (float)hi : q;
            lut[v] = (uint8_t)(int32_t)q;
        }
        int64_t span = t->dims[ax] * inner;
        for (int64_t o = 0; o < outer; o++) {
            const uint8_t *src = (const uint8_t *)t->data + o * span;
            uint8_t *dst = (uint8_t *)y->data + o * y->dims[ax] * inner + off;
            for (int64_t k = 0; k < span; k++)
                dst[k] = lut[src[k]];
        }
        off += span;
    }
    return 0;
}

const struct qt_op qt_op_qlinearconcat = {
    .name = "QLinearConcat",
    .domain = "com.microsoft",
    .init = qlconcat_init,
    .infer = qlconcat_infer,
    .fwd = qlconcat_fwd,
};
