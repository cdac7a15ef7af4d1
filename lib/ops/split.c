/* split.c: ONNX Split (opsets 7-21), any dtype.
 *
 * Cuts x along `axis` (default 0) into the outputs, in order. Sizes come
 * from the `split` attribute (before opset 13) or input 1 (from 13, known at
 * plan time); else from num_outputs (opset 18: ceil(dim / num_outputs) each,
 * the last one smaller); else the axis is split evenly across the outputs.
 * Gradient (training): dx = the dy_i joined back along the axis. */
#include "ops/layout.h"

#include <stdlib.h>

struct split_attr {
    int64_t axis, num_outputs;
};

static int split_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct split_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    if (n->nout < 1)
        return qt_node_err(n, QT_EMODEL, err, "has no outputs");
    a->axis = qt_attr_int(n, "axis", 0, err);
    a->num_outputs = qt_attr_int(n, "num_outputs", 0, err);
    if (qt_attr_find(n, "num_outputs") && a->num_outputs != n->nout)
        return qt_node_err(n, QT_EMODEL, err, "num_outputs is %lld but the node has %d outputs",
                           (long long)a->num_outputs, n->nout);
    return err->code;
}

/* Sizes of the n->nout pieces (malloc'd into *out) and the axis. */
static int split_sizes(struct qt_exec *x, const struct qt_node *n, int *axis, int64_t **out, struct qt_err *err) {
    const struct split_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    const int64_t *av;
    int cnt = -1, ac;
    int64_t *sz;
    *out = NULL;
    if (qt_axis(n, a->axis, t->ndim, axis, err))
        return err->code;
    if (t->ndim < 1)
        return qt_node_err(n, QT_EMODEL, err, "cannot split a scalar");
    int64_t dim = t->dims[*axis], sum = 0;
    if (!(sz = qt_calloc((size_t)n->nout, sizeof *sz, err)))
        return err->code;
    ac = qt_attr_ints(n, "split", &av, err);
    if (err->code)
        goto fail;
    if (ac > 0) {
        if (ac != n->nout) {
            qt_node_err(n, QT_EMODEL, err, "split has %d values for %d outputs", ac, n->nout);
            goto fail;
        }
        for (int i = 0; i < ac; i++)
            sz[i] = av[i];
        cnt = ac;
    } else if (qt_in(x, n, 1)) {
        if (qt_const_ints(x, n, 1, "split", sz, n->nout, &cnt, err))
            goto fail;
        if (cnt != n->nout) {
            qt_node_err(n, QT_EMODEL, err, "split has %d values for %d outputs", cnt, n->nout);
            goto fail;
        }
    }
    if (cnt < 0) {
        int64_t k = n->nout;
        if (a->num_outputs > 0) {
            int64_t each = dim / k + (dim % k != 0);
            for (int i = 0; i < n->nout; i++)
                sz[i] = i < n->nout - 1 ? each : dim - each * (k - 1);
        } else if (dim % k) {
            qt_node_err(n, QT_EMODEL, err, "axis %d of size %lld does not split evenly into %d outputs", *axis,
                        (long long)dim, n->nout);
            goto fail;
        } else {
            for (int i = 0; i < n->nout; i++)
                sz[i] = dim / k;
        }
    }
    for (int i = 0; i < n->nout; i++) {
        if (sz[i] < 0 || sz[i] > dim - sum) {
            qt_node_err(n, QT_EMODEL, err, "split sizes do not add up to the axis size %lld", (long long)dim);
            goto fail;
        }
        sum += sz[i];
    }
    if (sum != dim) {
        qt_node_err(n, QT_EMODEL, err, "split sizes add up to %lld, not the axis size %lld", (long long)sum,
                    (long long)dim);
        goto fail;
    }
    *out = sz;
    return 0;
fail:
    free(sz);
    return err->code;
}

static int split_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t *sz, d[QT_MAXDIM];
    int axis;
    if (split_sizes(x, n, &axis, &sz, err))
        return err->code;
    for (int k = 0; k < t->ndim; k++)
        d[k] = t->dims[k];
    for (int i = 0; i < n->nout; i++) {
        d[axis] = sz[i];
        if (qt_set_out(x, n, i, t->dtype, t->ndim, d, err))
            break;
    }
    free(sz);
    return err->code;
}

static int split_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    size_t es = qt_dtype_size(t->dtype);
    int64_t *sz;
    int axis;
    if (split_sizes(x, n, &axis, &sz, err))
        return err->code;
    int64_t outer = qt_numel(axis, t->dims), inner = qt_numel(t->ndim - axis - 1, t->dims + axis + 1);
    size_t irow = (size_t)(t->dims[axis] * inner) * es, off = 0;
    for (int i = 0; i < n->nout; i++) {
        struct qt_tensor *y = qt_out(x, n, i);
        size_t row = (size_t)(sz[i] * inner) * es;
        if (y)
            qt_copy_rows(x, outer, row, (const unsigned char *)t->data + off, irow, y->data, row);
        off += row;
    }
    free(sz);
    return 0;
}

/* dx gets each output's gradient back in its slice along the axis. */
static int split_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    float *dx = qt_gin(x, n, 0);
    int64_t *sz, off = 0;
    int axis;
    if (!dx)
        return 0;
    if (split_sizes(x, n, &axis, &sz, err))
        return err->code;
    int64_t outer = qt_numel(axis, t->dims), inner = qt_numel(t->ndim - axis - 1, t->dims + axis + 1);
    int64_t irow = t->dims[axis] * inner;
    for (int i = 0; i < n->nout; i++) {
        const float *dy = qt_gout(x, n, i);
        int64_t row = sz[i] * inner;
        for (int64_t o = 0; dy && o < outer; o++)
            for (int64_t k = 0; k < row; k++)
                dx[o * irow + off + k] += dy[o * row + k];
        off += row;
    }
    free(sz);
    return 0;
}

const struct qt_op qt_op_split = {
    .name = "Split",
    .init = split_init,
    .infer = split_infer,
    .fwd = split_fwd,
    .bwd = split_bwd,
};
