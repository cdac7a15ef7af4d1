/* slice.c: ONNX Slice (opsets 7-21), any dtype.
 *
 * y = x[start:end:step] along the listed axes (all others whole). Before
 * opset 10 starts, ends and axes are attributes (step 1); from 10 they are
 * inputs 1-4 (starts, ends, optional axes and steps), known at plan time.
 * Negative starts/ends count from the end; then, as ONNX specifies, for
 * step > 0 both are clamped to [0, dim], for step < 0 start to [0, dim-1]
 * and end to [-1, dim-1]. As in ONNX Runtime, an end of INT64_MAX or
 * INT32_MAX (numpy's None) runs to the end in the step's direction, so
 * x[::-1] may come as start -1, end INT64_MAX, step -1 (the spec would give
 * an empty slice).
 * Gradient (training): dx = zeros with dy scattered back into the slice. */
#include "ops/layout.h"

#include <string.h>

struct slice_plan {
    int64_t start[QT_MAXDIM], count[QT_MAXDIM], step[QT_MAXDIM];
};

static int slice_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (n->nin < 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs input data");
    if (!qt_attr_find(n, "starts") && (n->nin < 3 || n->in[1] < 0 || n->in[2] < 0))
        return qt_node_err(n, QT_EMODEL, err, "needs inputs starts and ends");
    return 0;
}

static int slice_plan(struct qt_exec *x, const struct qt_node *n, struct slice_plan *p, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t st[QT_MAXDIM], en[QT_MAXDIM], ax[QT_MAXDIM], sp[QT_MAXDIM];
    unsigned char seen[QT_MAXDIM] = {0};
    int ns, ne, na = -1, nsp = -1;
    if (qt_attr_find(n, "starts")) {
        if (qt_attr_ints_max(n, "starts", st, QT_MAXDIM, &ns, err) ||
            qt_attr_ints_max(n, "ends", en, QT_MAXDIM, &ne, err) ||
            qt_attr_ints_max(n, "axes", ax, QT_MAXDIM, &na, err))
            return err->code;
    } else {
        if (qt_const_ints(x, n, 1, "starts", st, QT_MAXDIM, &ns, err) ||
            qt_const_ints(x, n, 2, "ends", en, QT_MAXDIM, &ne, err) ||
            (qt_in(x, n, 3) && qt_const_ints(x, n, 3, "axes", ax, QT_MAXDIM, &na, err)) ||
            (qt_in(x, n, 4) && qt_const_ints(x, n, 4, "steps", sp, QT_MAXDIM, &nsp, err)))
            return err->code;
    }
    if (ne != ns || (na >= 0 && na != ns) || (nsp >= 0 && nsp != ns))
        return qt_node_err(n, QT_EMODEL, err, "starts, ends, axes and steps differ in length");
    if (ns > t->ndim)
        return qt_node_err(n, QT_EMODEL, err, "%d axes sliced in a %d-D input", ns, t->ndim);
    for (int d = 0; d < t->ndim; d++) {
        p->start[d] = 0;
        p->count[d] = t->dims[d];
        p->step[d] = 1;
    }
    for (int i = 0; i < ns; i++) {
        int a = i;
        if (na >= 0 && qt_axis(n, ax[i], t->ndim, &a, err))
            return err->code;
        if (seen[a])
            return qt_node_err(n, QT_EMODEL, err, "axis %d is sliced twice", a);
        seen[a] = 1;
        int64_t dim = t->dims[a], s = st[i], e = en[i], step = nsp >= 0 ? sp[i] : 1;
        if (dim > ((int64_t)1 << 40)) /* only an empty tensor has such an axis */
            return qt_node_err(n, QT_EMODEL, err, "axis %d of size %lld is too large", a, (long long)dim);
        int64_t big = dim > 1 ? dim : 1;
        if (step == 0)
            return qt_node_err(n, QT_EMODEL, err, "step of axis %d is 0", a);
        if (s < 0)
            s += dim;
        if (e == INT64_MAX || e == INT32_MAX) /* "to the end" in the step's direction, as ONNX Runtime */
            e = step < 0 ? -1 : dim;
        else if (e < 0)
            e += dim;
        if (step > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            if (step > big) /* at most one element: same result, no overflow */
                step = big;
            p->count[a] = e > s ? (e - s + step - 1) / step : 0;
        } else {
            s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            if (step < -big)
                step = -big;
            p->count[a] = s > e ? (s - e - step - 1) / -step : 0;
        }
        p->start[a] = s;
        p->step[a] = step;
    }
    return 0;
}

static int slice_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    struct slice_plan p;
    if (slice_plan(x, n, &p, err))
        return err->code;
    return qt_set_out(x, n, 0, t->dtype, t->ndim, p.count, err);
}

static int slice_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    struct qt_tensor *y = qt_out(x, n, 0);
    size_t es = qt_dtype_size(t->dtype);
    struct slice_plan p;
    int64_t is[QT_MAXDIM], os[QT_MAXDIM], off = 0;
    if (slice_plan(x, n, &p, err))
        return err->code;
    if (qt_numel(t->ndim, p.count) == 0)
        return 0;
    qt_strides(t->ndim, t->dims, is);
    for (int d = 0; d < t->ndim; d++) {
        off += p.start[d] * is[d];
        os[d] = p.step[d] * is[d];
    }
    qt_strided_copy(x, es, t->ndim, p.count, os, (const unsigned char *)t->data + (size_t)off * es, y->data);
    return 0;
}

static int slice_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    struct slice_plan p;
    int64_t is[QT_MAXDIM], os[QT_MAXDIM], off = 0;
    float *dx = qt_gin(x, n, 0);
    if (slice_plan(x, n, &p, err))
        return err->code;
    if (!dx || qt_numel(t->ndim, p.count) == 0)
        return 0;
    qt_strides(t->ndim, t->dims, is);
    for (int d = 0; d < t->ndim; d++) {
        off += p.start[d] * is[d];
        os[d] = p.step[d] * is[d];
    }
    qt_strided_scatter_add(t->ndim, p.count, os, off, qt_gout(x, n, 0), dx);
    return 0;
}

const struct qt_op qt_op_slice = {
    .name = "Slice",
    .flags = QT_OPF_EMPTY,
    .init = slice_init,
    .infer = slice_infer,
    .fwd = slice_fwd,
    .bwd = slice_bwd,
    .quant = {.role = QT_QR_PASS}, /* moves values: input 0 and output share parameters */
};
