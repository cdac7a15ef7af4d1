/* save.c: struct qt_graph -> ONNX bytes.
 *
 * The ModelProto and GraphProto the model was loaded from are copied
 * shallowly (so metadata, doc strings and unknown fields survive); the node,
 * initializer, input, output and value_info lists are rebuilt from the graph,
 * reusing the original protobuf message of every node and initializer qtool
 * did not change. Nodes are written in topological order. */
#include "onnx/onnx.h"

#include <stdio.h>
#include <string.h>

struct bump { /* everything built for one pack, freed together */
    void **p;
    size_t n, cap;
    int oom;
};

static void *bump(struct bump *b, size_t size) {
    if (b->oom)
        return NULL;
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        void **np = realloc(b->p, nc * sizeof *np);
        if (!np) {
            b->oom = 1;
            return NULL;
        }
        b->p = np;
        b->cap = nc;
    }
    void *q = calloc(1, size ? size : 1);
    if (!q) {
        b->oom = 1;
        return NULL;
    }
    b->p[b->n++] = q;
    return q;
}

static void bump_free(struct bump *b) {
    for (size_t i = 0; i < b->n; i++)
        free(b->p[i]);
    free(b->p);
}

static Onnx__TensorProto *tensor_proto(struct bump *b, const char *name, const struct qt_tensor *t) {
    Onnx__TensorProto *tp = bump(b, sizeof *tp);
    if (!tp)
        return NULL;
    onnx__tensor_proto__init(tp);
    tp->name = (char *)name;
    tp->has_data_type = 1;
    tp->data_type = t->dtype;
    tp->n_dims = (size_t)t->ndim;
    tp->dims = bump(b, sizeof(int64_t) * (size_t)(t->ndim + 1));
    if (!tp->dims)
        return NULL;
    for (int i = 0; i < t->ndim; i++)
        tp->dims[i] = t->dims[i];
    tp->has_raw_data = 1;
    tp->raw_data.len = t->nbytes;
    tp->raw_data.data = t->data;
    return tp;
}

static Onnx__AttributeProto *attr_proto(struct bump *b, const struct qt_attr *a) {
    Onnx__AttributeProto *ap = bump(b, sizeof *ap);
    if (!ap)
        return NULL;
    onnx__attribute_proto__init(ap);
    ap->name = a->name;
    ap->has_type = 1;
    ap->type = (Onnx__AttributeProto__AttributeType)a->type;
    switch (a->type) {
    case QT_ATTR_FLOAT: ap->has_f = 1; ap->f = a->f; break;
    case QT_ATTR_INT: ap->has_i = 1; ap->i = a->i; break;
    case QT_ATTR_STRING:
        ap->has_s = 1;
        ap->s.data = (uint8_t *)a->s;
        ap->s.len = strlen(a->s);
        break;
    case QT_ATTR_FLOATS: ap->n_floats = (size_t)a->n; ap->floats = a->floats; break;
    case QT_ATTR_INTS: ap->n_ints = (size_t)a->n; ap->ints = a->ints; break;
    case QT_ATTR_STRINGS:
        ap->n_strings = (size_t)a->n;
        ap->strings = bump(b, sizeof(ProtobufCBinaryData) * (size_t)(a->n + 1));
        if (!ap->strings)
            return NULL;
        for (int i = 0; i < a->n; i++) {
            ap->strings[i].data = (uint8_t *)a->strings[i];
            ap->strings[i].len = strlen(a->strings[i]);
        }
        break;
    case QT_ATTR_TENSOR:
        if (!(ap->t = tensor_proto(b, "", a->t)))
            return NULL;
        ap->t->name = NULL;
        break;
    default:
        return NULL; /* graph attributes only survive on unchanged nodes */
    }
    return ap;
}

static Onnx__NodeProto *node_proto(struct bump *b, const struct qt_graph *g, const struct qt_node *n) {
    Onnx__NodeProto *np = bump(b, sizeof *np);
    if (!np)
        return NULL;
    onnx__node_proto__init(np);
    np->name = n->name;
    np->op_type = n->op_type;
    np->domain = n->domain[0] ? n->domain : NULL;
    np->n_input = (size_t)n->nin;
    np->n_output = (size_t)n->nout;
    np->input = bump(b, sizeof(char *) * (size_t)(n->nin + 1));
    np->output = bump(b, sizeof(char *) * (size_t)(n->nout + 1));
    np->attribute = bump(b, sizeof(void *) * (size_t)(n->nattr + 1));
    if (!np->input || !np->output || !np->attribute)
        return NULL;
    for (int i = 0; i < n->nin; i++)
        np->input[i] = n->in[i] >= 0 ? g->v[n->in[i]].name : "";
    for (int i = 0; i < n->nout; i++)
        np->output[i] = n->out[i] >= 0 ? g->v[n->out[i]].name : "";
    for (int i = 0; i < n->nattr; i++) {
        Onnx__AttributeProto *ap = attr_proto(b, &n->attr[i]);
        if (!ap)
            return NULL;
        np->attribute[np->n_attribute++] = ap;
    }
    return np;
}

static Onnx__ValueInfoProto *value_info(struct bump *b, const struct qt_value *v) {
    Onnx__ValueInfoProto *vi = bump(b, sizeof *vi);
    Onnx__TypeProto *tp = bump(b, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = bump(b, sizeof *tt);
    if (!vi || !tp || !tt)
        return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    vi->name = v->name;
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = v->dtype ? v->dtype : QT_FLOAT;
    if (v->ndim >= 0) {
        Onnx__TensorShapeProto *sp = bump(b, sizeof *sp);
        if (!sp)
            return NULL;
        onnx__tensor_shape_proto__init(sp);
        sp->n_dim = (size_t)v->ndim;
        sp->dim = bump(b, sizeof(void *) * (size_t)(v->ndim + 1));
        if (!sp->dim)
            return NULL;
        for (int i = 0; i < v->ndim; i++) {
            Onnx__TensorShapeProto__Dimension *d = bump(b, sizeof *d);
            if (!d)
                return NULL;
            onnx__tensor_shape_proto__dimension__init(d);
            if (v->dims[i] >= 0) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                d->dim_value = v->dims[i];
            } else {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = i == 0 ? "N" : "?";
            }
            sp->dim[i] = d;
        }
        tt->shape = sp;
    }
    return vi;
}

static const Onnx__ValueInfoProto *find_vi(Onnx__ValueInfoProto *const *list, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (list[i]->name && strcmp(list[i]->name, name) == 0)
            return list[i];
    return NULL;
}

static int64_t ir_for_opset(int opset) {
    if (opset >= 21) return 10;
    if (opset >= 19) return 9;
    if (opset >= 15) return 8;
    if (opset >= 13) return 7;
    if (opset >= 11) return 6;
    return 5;
}

/* m's opset imports with the default domain at g's opset, and an IR
 * version that allows it; -1: out of memory */
static int pack_opsets(Onnx__ModelProto *m, const Onnx__ModelProto *om, const struct qt_graph *g, struct bump *b) {
    m->opset_import = bump(b, sizeof(void *) * (m->n_opset_import + 1));
    if (!m->opset_import)
        return -1;
    size_t k = 0;
    int have = 0;
    for (size_t i = 0; om && i < om->n_opset_import; i++) {
        Onnx__OperatorSetIdProto *o = om->opset_import[i];
        const char *d = o->domain;
        if (!d || !*d || strcmp(d, "ai.onnx") == 0) {
            have = 1;
            if (o->version != g->opset) {
                Onnx__OperatorSetIdProto *no = bump(b, sizeof *no);
                if (!no)
                    return -1;
                *no = *o;
                no->has_version = 1;
                no->version = g->opset;
                o = no;
            }
        }
        m->opset_import[k++] = o;
    }
    if (!have) {
        Onnx__OperatorSetIdProto *no = bump(b, sizeof *no);
        if (!no)
            return -1;
        onnx__operator_set_id_proto__init(no);
        no->domain = "";
        no->has_version = 1;
        no->version = g->opset;
        m->opset_import[k++] = no;
    }
    m->n_opset_import = k;
    if (!m->has_ir_version || m->ir_version < ir_for_opset(g->opset)) {
        m->has_ir_version = 1;
        m->ir_version = ir_for_opset(g->opset);
    }
    return 0;
}

/* gp's inputs (the original entries that still name an input or a used
 * initializer, then new inputs), outputs and value_info (what still
 * describes an unchanged producer's output); -1: out of memory */
static int pack_io(Onnx__GraphProto *gp, const Onnx__GraphProto *og, const struct qt_graph *g,
                   const unsigned char *used, struct bump *b) {
    /* inputs: original entries that still name an input or initializer, then new inputs */
    gp->n_input = 0;
    gp->input = bump(b, sizeof(void *) * ((og ? og->n_input : 0) + (size_t)g->ninputs + 1));
    if (!gp->input)
        return -1;
    for (size_t i = 0; og && i < og->n_input; i++) {
        int v = og->input[i]->name ? qt_graph_find(g, og->input[i]->name) : -1;
        if (v >= 0 && (g->v[v].kind == QT_V_INPUT || (g->v[v].kind == QT_V_INIT && used[v])))
            gp->input[gp->n_input++] = og->input[i];
    }
    for (int i = 0; i < g->ninputs; i++) {
        const struct qt_value *val = &g->v[g->inputs[i]];
        if (og && find_vi(og->input, og->n_input, val->name))
            continue;
        if (!(gp->input[gp->n_input++] = value_info(b, val)))
            return -1;
    }

    /* outputs */
    gp->n_output = (size_t)g->noutputs;
    gp->output = bump(b, sizeof(void *) * ((size_t)g->noutputs + 1));
    if (!gp->output)
        return -1;
    for (int i = 0; i < g->noutputs; i++) {
        const struct qt_value *val = &g->v[g->outputs[i]];
        const Onnx__ValueInfoProto *vi = og ? find_vi(og->output, og->n_output, val->name) : NULL;
        gp->output[i] = vi ? (Onnx__ValueInfoProto *)vi : value_info(b, val);
        if (!gp->output[i])
            return -1;
    }

    /* value_info: keep what still describes an unchanged producer's output */
    gp->n_value_info = 0;
    gp->value_info = bump(b, sizeof(void *) * ((og ? og->n_value_info : 0) + 1));
    if (!gp->value_info)
        return -1;
    for (size_t i = 0; og && i < og->n_value_info; i++) {
        int v = og->value_info[i]->name ? qt_graph_find(g, og->value_info[i]->name) : -1;
        if (v >= 0 && g->v[v].kind == QT_V_ACT && g->v[v].producer >= 0 && g->n[g->v[v].producer].orig)
            gp->value_info[gp->n_value_info++] = og->value_info[i];
    }

    return 0;
}

int qt_graph_pack(const struct qt_graph *g, void **out, size_t *outlen, struct qt_err *err) {
    const Onnx__ModelProto *om = qt_onnx_env_model(g->model);
    const Onnx__GraphProto *og = om ? om->graph : NULL;
    Onnx__ModelProto m;
    Onnx__GraphProto gp;
    struct bump b = {0};
    int *order = NULL, rc = 0;
    unsigned char *used = NULL;
    *out = NULL;
    *outlen = 0;

    if (om)
        m = *om;
    else
        onnx__model_proto__init(&m);
    if (og)
        gp = *og;
    else
        onnx__graph_proto__init(&gp);
    if (!og)
        gp.name = "qtool";
    m.graph = &gp;

    /* opset and IR version */
    if (pack_opsets(&m, om, g, &b))
        goto oom;
    if (!om)
        m.producer_name = "qtool";

    /* nodes */
    if (qt_graph_topo(g, &order, err))
        goto fail;
    gp.n_node = (size_t)g->nn;
    gp.node = bump(&b, sizeof(void *) * ((size_t)g->nn + 1));
    if (!gp.node)
        goto oom;
    for (int i = 0; i < g->nn; i++) {
        const struct qt_node *n = &g->n[order[i]];
        gp.node[i] = n->orig ? n->orig : node_proto(&b, g, n);
        if (!gp.node[i]) {
            if (b.oom)
                goto oom;
            rc = qt_node_err(n, QT_EUNSUPPORTED, err, "cannot re-encode a changed node with graph attributes");
            goto fail;
        }
    }

    /* which values are referenced */
    used = calloc((size_t)g->nv + 1, 1);
    if (!used)
        goto oom;
    for (int i = 0; i < g->nn; i++)
        for (int j = 0; j < g->n[i].nin; j++)
            if (g->n[i].in[j] >= 0)
                used[g->n[i].in[j]] = 1;
    for (int i = 0; i < g->noutputs; i++)
        used[g->outputs[i]] = 1;

    /* initializers */
    gp.n_initializer = 0;
    gp.initializer = bump(&b, sizeof(void *) * ((size_t)g->nv + 1));
    if (!gp.initializer)
        goto oom;
    for (int v = 0; v < g->nv; v++) {
        const struct qt_value *val = &g->v[v];
        if (val->kind != QT_V_INIT || !used[v])
            continue;
        Onnx__TensorProto *tp = val->orig ? val->orig : tensor_proto(&b, val->name, val->init);
        if (!tp)
            goto oom;
        gp.initializer[gp.n_initializer++] = tp;
    }

    if (pack_io(&gp, og, g, used, &b))
        goto oom;

    {
        size_t sz = onnx__model_proto__get_packed_size(&m);
        uint8_t *buf = malloc(sz ? sz : 1);
        if (!buf)
            goto oom;
        size_t w = onnx__model_proto__pack(&m, buf);
        if (w != sz) {
            free(buf);
            rc = qt_errf(err, QT_EFAIL, "internal error: packed %zu of %zu bytes", w, sz);
            goto fail;
        }
        *out = buf;
        *outlen = sz;
    }
    goto done;
oom:
    rc = qt_errf(err, QT_ENOMEM, "out of memory encoding the model");
fail:
    if (!rc)
        rc = err->code ? err->code : QT_EFAIL;
done:
    free(order);
    free(used);
    bump_free(&b);
    return rc;
}

int qt_graph_save(const struct qt_graph *g, const char *path, struct qt_err *err) {
    void *buf;
    size_t len;
    if (qt_graph_pack(g, &buf, &len, err))
        return err->code;
    int rc = qt_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}
