/* shape.c: ONNX Shape (opsets 7-21).
 *
 * y = the input's dims as an int64 vector, dims[start:end] from opset 15
 * (negative counts from the end, both clamped to [0, rank]). Depends only on
 * the shape, so the planner folds it to a constant. Not differentiable. */
#include "engine.h"

struct shape_attr {
    int64_t start, end;
    int has_end;
};

static int shape_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct shape_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    a->start = qt_attr_int(n, "start", 0, err);
    a->has_end = qt_attr_find(n, "end") != NULL;
    a->end = qt_attr_int(n, "end", 0, err);
    return err->code;
}

static void shape_range(const struct shape_attr *a, int r, int *s, int *e) {
    int64_t st = a->start < 0 ? a->start + r : a->start;
    int64_t en = !a->has_end ? r : a->end < 0 ? a->end + r : a->end;
    st = st < 0 ? 0 : st > r ? r : st;
    en = en < 0 ? 0 : en > r ? r : en;
    *s = (int)st;
    *e = en > st ? (int)en : (int)st;
}

static int shape_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int s, e;
    shape_range(n->priv, t->ndim, &s, &e);
    int64_t d = e - s;
    return qt_set_out(x, n, 0, QT_INT64, 1, &d, err);
}

static int shape_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t *y = qt_out(x, n, 0)->data;
    int s, e;
    (void)err;
    shape_range(n->priv, t->ndim, &s, &e);
    for (int i = s; i < e; i++)
        y[i - s] = t->dims[i];
    return 0;
}

const struct qt_op qt_op_shape = {
    .name = "Shape",
    .flags = QT_OPF_SHAPE_ONLY | QT_OPF_EMPTY,
    .init = shape_init,
    .infer = shape_infer,
    .fwd = shape_fwd,
};
