/* tile.c: ONNX Tile (opsets 7-21), any dtype.
 *
 * y = x repeated repeats[i] times along each axis i; repeats (input 1,
 * int64, one per axis) must be known at plan time.
 * No backward: a training plan through this op fails, naming the node. */
#include "ops/layout.h"

static int tile_repeats(struct qt_exec *x, const struct qt_node *n, int64_t *rep, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int nr;
    if (!t)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs input and repeats");
    if (qt_const_ints(x, n, 1, "repeats", rep, QT_MAXDIM, &nr, err))
        return err->code;
    if (nr != t->ndim)
        return qt_node_err(n, QT_EMODEL, err, "repeats has %d values for %d dims", nr, t->ndim);
    for (int i = 0; i < nr; i++)
        if (rep[i] < 0)
            return qt_node_err(n, QT_EMODEL, err, "repeats[%d] = %lld is negative", i, (long long)rep[i]);
    return 0;
}

static int tile_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t rep[QT_MAXDIM], d[QT_MAXDIM];
    if (tile_repeats(x, n, rep, err))
        return err->code;
    for (int i = 0; i < t->ndim; i++) {
        if (rep[i] && t->dims[i] > ((int64_t)1 << 40) / rep[i])
            return qt_node_err(n, QT_EMODEL, err, "output is too large");
        d[i] = t->dims[i] * rep[i];
    }
    return qt_set_out(x, n, 0, t->dtype, t->ndim, d, err);
}

/* y viewed as [rep0, d0, rep1, d1, ...]: a broadcast copy with stride 0 over the repeats. */
static int tile_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t rep[QT_MAXDIM], is[QT_MAXDIM], vd[2 * QT_MAXDIM], vs[2 * QT_MAXDIM];
    if (tile_repeats(x, n, rep, err))
        return err->code;
    qt_strides(t->ndim, t->dims, is);
    for (int i = 0; i < t->ndim; i++) {
        vd[2 * i] = rep[i];
        vs[2 * i] = 0;
        vd[2 * i + 1] = t->dims[i];
        vs[2 * i + 1] = is[i];
    }
    qt_strided_copy(x, qt_dtype_size(t->dtype), 2 * t->ndim, vd, vs, t->data, qt_out(x, n, 0)->data);
    return 0;
}

const struct qt_op qt_op_tile = {
    .name = "Tile",
    .infer = tile_infer,
    .fwd = tile_fwd,
};
