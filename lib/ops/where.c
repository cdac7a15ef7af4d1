/* where.c: ONNX Where. y = cond ? a : b, the three broadcast together
 * (numpy rules); a and b of any one type, cond bool.
 * No backward: a training plan through this op fails, naming the node. */
#include "ops/eltwise.h"

#include <string.h>

static int where_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (n->nin != 3 || n->in[0] < 0 || n->in[1] < 0 || n->in[2] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs condition, X and Y");
    return 0;
}

static int where_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *c = qt_in(x, n, 0), *a = qt_in(x, n, 1), *b = qt_in(x, n, 2);
    int64_t d1[QT_MAXDIM], d2[QT_MAXDIM];
    int n1, n2;
    if (c->dtype != QT_BOOL)
        return qt_node_err(n, QT_EMODEL, err, "condition must be bool, not %s", qt_dtype_name(c->dtype));
    if (a->dtype != b->dtype || !qt_dtype_size(a->dtype))
        return qt_node_err(n, QT_EMODEL, err, "X (%s) and Y (%s) must have one numeric type",
                           qt_dtype_name(a->dtype), qt_dtype_name(b->dtype));
    if (qt_broadcast(n, c->ndim, c->dims, a->ndim, a->dims, &n1, d1, err) ||
        qt_broadcast(n, n1, d1, b->ndim, b->dims, &n2, d2, err))
        return err->code;
    return qt_set_out(x, n, 0, a->dtype, n2, d2, err);
}

static int where_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *c = qt_in(x, n, 0), *a = qt_in(x, n, 1), *b = qt_in(x, n, 2);
    struct qt_tensor *y = qt_out(x, n, 0);
    int64_t sc[QT_MAXDIM], sa[QT_MAXDIM], sb[QT_MAXDIM], idx[QT_MAXDIM] = {0};
    size_t es = qt_dtype_size(y->dtype);
    int nd = y->ndim;
    (void)err;
    qt_bcast_strides(c->ndim, c->dims, nd, y->dims, sc);
    qt_bcast_strides(a->ndim, a->dims, nd, y->dims, sa);
    qt_bcast_strides(b->ndim, b->dims, nd, y->dims, sb);
    int64_t oc = 0, oa = 0, ob = 0, cnt = qt_tensor_numel(y);
    const uint8_t *C = c->data;
    for (int64_t i = 0; i < cnt; i++) {
        const void *src = C[oc] ? (const unsigned char *)a->data + (size_t)oa * es
                                : (const unsigned char *)b->data + (size_t)ob * es;
        memcpy((unsigned char *)y->data + (size_t)i * es, src, es);
        for (int k = nd - 1; k >= 0; k--) { /* odometer step */
            idx[k]++;
            oc += sc[k], oa += sa[k], ob += sb[k];
            if (idx[k] < y->dims[k])
                break;
            oc -= sc[k] * idx[k], oa -= sa[k] * idx[k], ob -= sb[k] * idx[k];
            idx[k] = 0;
        }
    }
    return 0;
}

const struct qt_op qt_op_where = {
    .name = "Where",
    .init = where_init,
    .infer = where_infer,
    .fwd = where_fwd,
};
