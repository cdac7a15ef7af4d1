/* upsample.c: ONNX Upsample (opsets 7-9; deprecated by Resize).
 *
 * y = x scaled by `scales` (the attribute in opsets 7-8, input 1 in 9, known
 * at plan time; every scale >= 1), output dims floor(in * scale). mode
 * nearest (any dtype) or linear (bilinear over the last two axes of a 2-D or
 * NCHW input), with asymmetric coordinates and the "simple" nearest rounding
 * of resize.h.
 * No backward: a training plan through this op fails, naming the node. */
#include "ops/resize.h"

#include <string.h>

static int upsample_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct qt_resize *r = calloc(1, sizeof *r);
    if (!r)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = r;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs input X");
    const char *mode = qt_attr_str(n, "mode", "nearest", err);
    if (err->code)
        return err->code;
    if (!strcmp(mode, "nearest"))
        r->mode = QT_RESIZE_NEAREST;
    else if (!strcmp(mode, "linear") || !strcmp(mode, "bilinear"))
        r->mode = QT_RESIZE_LINEAR;
    else
        return qt_node_err(n, QT_EMODEL, err, "unknown mode '%s'", mode);
    r->coord = QT_COORD_ASYMMETRIC;
    r->round = QT_ROUND_SIMPLE;
    if (!qt_attr_find(n, "scales") && (n->nin < 2 || n->in[1] < 0))
        return qt_node_err(n, QT_EMODEL, err, "needs scales");
    return 0;
}

static int upsample_scales(struct qt_exec *x, const struct qt_node *n, float *s, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *st = qt_in(x, n, 1);
    const float *v;
    int cnt = qt_attr_floats(n, "scales", &v, err);
    if (err->code)
        return err->code;
    if (cnt < 0) {
        if (!qt_in_const(x, n, 1))
            return qt_node_err(n, QT_EUNSUPPORTED, err,
                               "input 'scales' must be known at plan time (it depends on the graph's inputs)");
        if (st->dtype != QT_FLOAT)
            return qt_node_err(n, QT_EMODEL, err, "scales have type %s, expected float32", qt_dtype_name(st->dtype));
        int64_t ne = qt_tensor_numel(st);
        cnt = ne == t->ndim ? (int)ne : -1;
        v = st->data;
    }
    if (cnt != t->ndim)
        return qt_node_err(n, QT_EMODEL, err, "scales do not have one value per axis (%d)", t->ndim);
    for (int d = 0; d < cnt; d++) {
        if (!(v[d] >= 1))
            return qt_node_err(n, QT_EMODEL, err, "scale %g of axis %d is below 1", (double)v[d], d);
        s[d] = v[d];
    }
    return qt_resize_check(n, n->priv, t, s, err);
}

static int upsample_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    float s[QT_MAXDIM];
    int64_t d[QT_MAXDIM];
    if (!qt_dtype_size(t->dtype))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(t->dtype));
    if (upsample_scales(x, n, s, err) || qt_resize_out_dims(n, t, s, d, err))
        return err->code;
    return qt_set_out(x, n, 0, t->dtype, t->ndim, d, err);
}

static int upsample_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    float s[QT_MAXDIM];
    if (upsample_scales(x, n, s, err))
        return err->code;
    return qt_resize_run(x, n, n->priv, s, qt_in(x, n, 0), qt_out(x, n, 0), err);
}

const struct qt_op qt_op_upsample = {
    .name = "Upsample",
    .init = upsample_init,
    .infer = upsample_infer,
    .fwd = upsample_fwd,
};
