/* argmax.c: ONNX ArgMax (opsets 7-21).
 *
 * y[..., 1 or dropped, ...] = index along `axis` (default 0) of the largest
 * element, int64; the first one on ties, or the last with
 * select_last_index = 1 (opset 12). keepdims (default 1) keeps the axis as 1.
 * float32, int32 and int64 inputs. Not differentiable. */
#include "engine.h"

struct argmax_attr {
    int64_t axis;
    int keepdims, last;
};

static int argmax_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct argmax_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    a->axis = qt_attr_int(n, "axis", 0, err);
    a->keepdims = qt_attr_int(n, "keepdims", 1, err) != 0;
    a->last = qt_attr_int(n, "select_last_index", 0, err) != 0;
    return err->code;
}

static int argmax_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct argmax_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t d[QT_MAXDIM];
    int ax, nd = 0;
    if (t->dtype != QT_FLOAT && t->dtype != QT_INT32 && t->dtype != QT_INT64)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported (float32, int32, int64)",
                           qt_dtype_name(t->dtype));
    if (t->ndim < 1)
        return qt_node_err(n, QT_EMODEL, err, "input is a scalar");
    if (qt_axis(n, a->axis, t->ndim, &ax, err))
        return err->code;
    if (t->dims[ax] == 0)
        return qt_node_err(n, QT_EMODEL, err, "axis %d is empty", ax);
    for (int i = 0; i < t->ndim; i++)
        if (i != ax)
            d[nd++] = t->dims[i];
        else if (a->keepdims)
            d[nd++] = 1;
    return qt_set_out(x, n, 0, QT_INT64, nd, d, err);
}

struct argmax_job {
    const struct qt_tensor *t;
    int64_t *y;
    int64_t len, inner, per, nout;
    int last;
};

static void argmax_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct argmax_job *j = arg;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t o1 = (t + 1) * j->per < j->nout ? (t + 1) * j->per : j->nout;
        for (int64_t o = t * j->per; o < o1; o++) {
            int64_t base = (o / j->inner) * j->len * j->inner + o % j->inner, best = 0;
            if (j->t->dtype == QT_FLOAT) {
                const float *p = (const float *)j->t->data + base;
                float m = p[0];
                for (int64_t k = 1; k < j->len; k++) {
                    float v = p[k * j->inner];
                    if (v > m || (j->last && v == m)) {
                        m = v;
                        best = k;
                    }
                }
            } else {
                int64_t m = qt_tensor_geti(j->t, base);
                for (int64_t k = 1; k < j->len; k++) {
                    int64_t v = qt_tensor_geti(j->t, base + k * j->inner);
                    if (v > m || (j->last && v == m)) {
                        m = v;
                        best = k;
                    }
                }
            }
            j->y[o] = best;
        }
    }
}

static int argmax_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct argmax_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    int ax;
    if (qt_axis(n, a->axis, t->ndim, &ax, err))
        return err->code;
    if (qt_tensor_numel(qt_out(x, n, 0)) == 0)
        return 0;
    struct argmax_job j = {t, qt_out(x, n, 0)->data, t->dims[ax], qt_numel(t->ndim - ax - 1, t->dims + ax + 1), 1,
                           0, a->last};
    j.nout = qt_numel(ax, t->dims) * j.inner;
    j.per = j.len >= 16384 ? 1 : 16384 / j.len;
    qt_parallel_for(x, (j.nout + j.per - 1) / j.per, argmax_task, &j);
    return 0;
}

const struct qt_op qt_op_argmax = {
    .name = "ArgMax",
    .init = argmax_init,
    .infer = argmax_infer,
    .fwd = argmax_fwd,
};
