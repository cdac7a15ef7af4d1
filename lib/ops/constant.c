/* constant.c: ONNX Constant and ConstantOfShape. Both are folded by the
 * planner, so their fwd runs once per plan.
 *
 * Constant: y = the one attribute given: value (tensor), value_float,
 * value_floats, value_int, value_ints (sparse and string values are not
 * supported).
 * ConstantOfShape: y has the shape given by the int64 input (known at plan
 * time) and every element equals `value` (a one-element tensor, default
 * float 0). */
#include "ops/layout.h"

#include <string.h>

/* The tensor lives in n->priv, which is free()d with the node: its data is
 * in the same allocation so nothing leaks. */
struct const_priv {
    struct qt_tensor t;
    _Alignas(8) unsigned char bytes[];
};

static int set_tensor(struct qt_node *n, struct qt_tensor *t, struct qt_err *err) {
    if (!t)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    struct const_priv *p = malloc(sizeof *p + t->nbytes + 1);
    if (!p) {
        qt_tensor_free(t);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    p->t = *t;
    p->t.data = p->bytes;
    memcpy(p->bytes, t->data, t->nbytes);
    qt_tensor_free(t);
    n->priv = p;
    return 0;
}

static int constant_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    const struct qt_attr *a = NULL;
    static const char *const names[] = {"value", "value_float", "value_floats", "value_int", "value_ints"};
    int found = 0;
    for (int i = 0; i < 5; i++)
        if (qt_attr_find(n, names[i])) {
            a = qt_attr_find(n, names[i]);
            found++;
        }
    if (found != 1)
        return qt_node_err(n, found ? QT_EMODEL : QT_EUNSUPPORTED, err,
                           found ? "has more than one value attribute"
                                 : "has no supported value attribute (value, value_float(s), value_int(s))");
    struct qt_tensor *t = NULL;
    int64_t cnt = 0;
    switch (a->type) {
    case QT_ATTR_TENSOR:
        if (!a->t || !qt_dtype_size(a->t->dtype))
            return qt_node_err(n, QT_EUNSUPPORTED, err, "value tensor of an unsupported type");
        t = qt_tensor_clone(a->t);
        break;
    case QT_ATTR_FLOAT:
        t = qt_tensor_new(QT_FLOAT, 0, NULL);
        if (t)
            *(float *)t->data = a->f;
        break;
    case QT_ATTR_INT:
        t = qt_tensor_new(QT_INT64, 0, NULL);
        if (t)
            *(int64_t *)t->data = a->i;
        break;
    case QT_ATTR_FLOATS:
        cnt = a->n;
        t = qt_tensor_new(QT_FLOAT, 1, &cnt);
        if (t && cnt)
            memcpy(t->data, a->floats, sizeof(float) * (size_t)cnt);
        break;
    case QT_ATTR_INTS:
        cnt = a->n;
        t = qt_tensor_new(QT_INT64, 1, &cnt);
        if (t && cnt)
            memcpy(t->data, a->ints, sizeof(int64_t) * (size_t)cnt);
        break;
    default:
        return qt_node_err(n, QT_EMODEL, err, "attribute '%s' has the wrong type", a->name);
    }
    return set_tensor(n, t, err);
}

static int constant_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = &((const struct const_priv *)n->priv)->t;
    return qt_set_out(x, n, 0, t->dtype, t->ndim, t->dims, err);
}

static int constant_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = &((const struct const_priv *)n->priv)->t;
    (void)err;
    if (t->nbytes)
        memcpy(qt_out(x, n, 0)->data, t->data, t->nbytes);
    return 0;
}

const struct qt_op qt_op_constant = {
    .name = "Constant",
    .flags = QT_OPF_EMPTY,
    .init = constant_init,
    .infer = constant_infer,
    .fwd = constant_fwd,
};

const struct qt_tensor *qt_graph_const(const struct qt_graph *g, int v) {
    if (v < 0)
        return NULL;
    if (g->v[v].kind == QT_V_INIT)
        return g->v[v].init;
    int p = g->v[v].producer;
    if (p >= 0 && g->n[p].op == &qt_op_constant) {
        struct qt_err e = {0};
        return qt_attr_tensor(&g->n[p], "value", &e);
    }
    return NULL;
}

/* ---- ConstantOfShape ---- */

struct cos_priv {
    int dtype;
    unsigned char value[8];
};

static int cos_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct cos_priv *p = calloc(1, sizeof *p);
    if (!p)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = p;
    p->dtype = QT_FLOAT;
    if (n->nin != 1 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs the shape input");
    const struct qt_tensor *v = qt_attr_tensor(n, "value", err);
    if (err->code)
        return err->code;
    if (v) {
        size_t es = qt_dtype_size(v->dtype);
        if (!es || es > 8 || qt_tensor_numel(v) != 1)
            return qt_node_err(n, QT_EMODEL, err, "'value' must be a one-element numeric tensor");
        p->dtype = v->dtype;
        memcpy(p->value, v->data, es);
    }
    return 0;
}

static int cos_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct cos_priv *p = n->priv;
    int64_t d[QT_MAXDIM];
    int nd;
    if (qt_const_ints(x, n, 0, "shape", d, QT_MAXDIM, &nd, err))
        return err->code;
    for (int i = 0; i < nd; i++)
        if (d[i] < 0)
            return qt_node_err(n, QT_EMODEL, err, "shape has a negative dimension %lld", (long long)d[i]);
    return qt_set_out(x, n, 0, p->dtype, nd, d, err);
}

static int cos_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct cos_priv *p = n->priv;
    struct qt_tensor *y = qt_out(x, n, 0);
    size_t es = qt_dtype_size(p->dtype);
    (void)err;
    for (int64_t i = 0, cnt = qt_tensor_numel(y); i < cnt; i++)
        memcpy((unsigned char *)y->data + (size_t)i * es, p->value, es);
    return 0;
}

const struct qt_op qt_op_constantofshape = {
    .name = "ConstantOfShape",
    .flags = QT_OPF_EMPTY,
    .init = cos_init,
    .infer = cos_infer,
    .fwd = cos_fwd,
};
