/* transpose.c: ONNX Transpose (opsets 7-21), any dtype.
 *
 * y = x with its axes permuted: y's axis k is x's axis perm[k]; perm
 * defaults to reversing the axes.
 * Gradient (training): dx = dy transposed by the inverse permutation. */
#include "ops/layout.h"

struct transpose_attr {
    int nperm; /* -1: reverse */
    int64_t perm[QT_MAXDIM];
};

static int transpose_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct transpose_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    return qt_attr_ints_max(n, "perm", a->perm, QT_MAXDIM, &a->nperm, err);
}

static int transpose_perm(const struct qt_node *n, int ndim, int *perm, struct qt_err *err) {
    const struct transpose_attr *a = n->priv;
    unsigned char seen[QT_MAXDIM] = {0};
    if (a->nperm < 0 || (a->nperm == 0 && ndim > 0)) {
        for (int k = 0; k < ndim; k++)
            perm[k] = ndim - 1 - k;
        return 0;
    }
    if (a->nperm != ndim)
        return qt_node_err(n, QT_EMODEL, err, "perm has %d values for %d dims", a->nperm, ndim);
    for (int k = 0; k < ndim; k++) {
        if (a->perm[k] < 0 || a->perm[k] >= ndim || seen[a->perm[k]])
            return qt_node_err(n, QT_EMODEL, err, "perm is not a permutation of 0..%d", ndim - 1);
        seen[a->perm[k]] = 1;
        perm[k] = (int)a->perm[k];
    }
    return 0;
}

static int transpose_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int perm[QT_MAXDIM];
    int64_t d[QT_MAXDIM];
    if (transpose_perm(n, t->ndim, perm, err))
        return err->code;
    for (int k = 0; k < t->ndim; k++)
        d[k] = t->dims[perm[k]];
    return qt_set_out(x, n, 0, t->dtype, t->ndim, d, err);
}

static int transpose_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int perm[QT_MAXDIM];
    if (transpose_perm(n, t->ndim, perm, err))
        return err->code;
    qt_permute(x, qt_dtype_size(t->dtype), t->ndim, t->dims, perm, t->data, qt_out(x, n, 0)->data);
    return 0;
}

/* dx[perm(o)] += dy[o]: output axis k walks input axis perm[k]. */
static int transpose_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *y = qt_out(x, n, 0);
    int perm[QT_MAXDIM];
    int64_t is[QT_MAXDIM], st[QT_MAXDIM];
    float *dx = qt_gin(x, n, 0);
    if (transpose_perm(n, t->ndim, perm, err))
        return err->code;
    if (!dx)
        return 0;
    qt_strides(t->ndim, t->dims, is);
    for (int k = 0; k < t->ndim; k++)
        st[k] = is[perm[k]];
    qt_strided_scatter_add(y->ndim, y->dims, st, 0, qt_gout(x, n, 0), dx);
    return 0;
}

const struct qt_op qt_op_transpose = {
    .bwd = transpose_bwd,
    .name = "Transpose",
    .init = transpose_init,
    .infer = transpose_infer,
    .fwd = transpose_fwd,
    .quant = {.role = QT_QR_PASS},
};
