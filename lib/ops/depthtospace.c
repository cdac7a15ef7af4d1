/* depthtospace.c: ONNX DepthToSpace (opsets 7-21), 4-D NCHW, any dtype.
 *
 * Moves blocks of depth into b x b spatial blocks (b = blocksize):
 *   DCR (default): x viewed as [N, b, b, C/b^2, H, W], transposed to
 *                  [N, C/b^2, H, b, W, b];
 *   CRD (opset 11): x viewed as [N, C/b^2, b, b, H, W], transposed likewise;
 * y = that reshaped to [N, C/b^2, H*b, W*b].
 * No backward: a training plan through this op fails, naming the node. */
#include "ops/layout.h"

#include <string.h>

struct d2s_attr {
    int64_t b;
    int crd;
};

static int d2s_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct d2s_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    a->b = qt_attr_int(n, "blocksize", 0, err);
    const char *mode = qt_attr_str(n, "mode", "DCR", err);
    if (err->code)
        return err->code;
    if (a->b <= 0 || a->b > ((int64_t)1 << 20))
        return qt_node_err(n, QT_EMODEL, err, "blocksize %lld is missing or out of range", (long long)a->b);
    if (!strcmp(mode, "CRD"))
        a->crd = 1;
    else if (strcmp(mode, "DCR"))
        return qt_node_err(n, QT_EMODEL, err, "unknown mode '%s'", mode);
    return 0;
}

static int d2s_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct d2s_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    if (t->ndim != 4)
        return qt_node_err(n, QT_EMODEL, err, "input has %d dims, expected 4 (NCHW)", t->ndim);
    if (t->dims[1] % (a->b * a->b))
        return qt_node_err(n, QT_EMODEL, err, "%lld channels are not a multiple of blocksize^2 = %lld",
                           (long long)t->dims[1], (long long)(a->b * a->b));
    if (t->dims[2] > ((int64_t)1 << 40) / a->b || t->dims[3] > ((int64_t)1 << 40) / a->b)
        return qt_node_err(n, QT_EMODEL, err, "output is too large");
    int64_t d[4] = {t->dims[0], t->dims[1] / (a->b * a->b), t->dims[2] * a->b, t->dims[3] * a->b};
    return qt_set_out(x, n, 0, t->dtype, 4, d, err);
}

static int d2s_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct d2s_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t b = a->b, c = t->dims[1] / (b * b);
    int64_t dcr[6] = {t->dims[0], b, b, c, t->dims[2], t->dims[3]};
    int64_t crd[6] = {t->dims[0], c, b, b, t->dims[2], t->dims[3]};
    static const int pdcr[6] = {0, 3, 4, 1, 5, 2}, pcrd[6] = {0, 1, 4, 2, 5, 3};
    (void)err;
    qt_permute(x, qt_dtype_size(t->dtype), 6, a->crd ? crd : dcr, a->crd ? pcrd : pdcr, t->data,
               qt_out(x, n, 0)->data);
    return 0;
}

const struct qt_op qt_op_depthtospace = {
    .name = "DepthToSpace",
    .init = d2s_init,
    .infer = d2s_infer,
    .fwd = d2s_fwd,
};
