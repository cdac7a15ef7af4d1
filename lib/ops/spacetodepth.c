/* spacetodepth.c: ONNX SpaceToDepth (opsets 7-21), 4-D NCHW, any dtype.
 *
 * Moves b x b spatial blocks into depth (b = blocksize): x viewed as
 * [N, C, H/b, b, W/b, b], transposed to [N, b, b, C, H/b, W/b], reshaped to
 * y = [N, C*b*b, H/b, W/b].
 * No backward: a training plan through this op fails, naming the node. */
#include "ops/layout.h"

static int s2d_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    int64_t *b = qt_node_priv(n, sizeof *b, err);
    if (!b)
        return err->code;
    *b = qt_attr_int(n, "blocksize", 0, err);
    if (err->code)
        return err->code;
    if (*b <= 0 || *b > ((int64_t)1 << 20))
        return qt_node_err(n, QT_EMODEL, err, "blocksize %lld is missing or out of range", (long long)*b);
    return 0;
}

static int s2d_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    int64_t b = *(const int64_t *)n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    if (t->ndim != 4)
        return qt_node_err(n, QT_EMODEL, err, "input has %d dims, expected 4 (NCHW)", t->ndim);
    if (t->dims[2] % b || t->dims[3] % b)
        return qt_node_err(n, QT_EMODEL, err, "spatial size %lldx%lld is not a multiple of blocksize %lld",
                           (long long)t->dims[2], (long long)t->dims[3], (long long)b);
    if (t->dims[1] > ((int64_t)1 << 40) / (b * b))
        return qt_node_err(n, QT_EMODEL, err, "output is too large");
    int64_t d[4] = {t->dims[0], t->dims[1] * b * b, t->dims[2] / b, t->dims[3] / b};
    return qt_set_out(x, n, 0, t->dtype, 4, d, err);
}

static int s2d_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    int64_t b = *(const int64_t *)n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t v[6] = {t->dims[0], t->dims[1], t->dims[2] / b, b, t->dims[3] / b, b};
    static const int perm[6] = {0, 3, 5, 1, 2, 4};
    (void)err;
    qt_permute(x, qt_dtype_size(t->dtype), 6, v, perm, t->data, qt_out(x, n, 0)->data);
    return 0;
}

const struct qt_op qt_op_spacetodepth = {
    .name = "SpaceToDepth",
    .init = s2d_init,
    .infer = s2d_infer,
    .fwd = s2d_fwd,
};
