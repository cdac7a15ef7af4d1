/* load.c: ONNX file -> struct qt_graph.
 *
 * The bytes are first walked as protobuf wire format against the generated
 * descriptors (nesting depth, field lengths, element counts), so a hostile
 * file cannot make protobuf-c recurse deeply or allocate wildly; then
 * unpacked with protobuf-c and converted. The unpacked ModelProto is kept
 * (reference counted, shared by clones) as the envelope qt_graph_save()
 * writes back: metadata, unknown fields, unchanged nodes and initializers go
 * out exactly as they came in. */
#include "engine.h"
#include "onnx/onnx.h"

#include <stdio.h>
#include <string.h>

#define MAX_FILE_BYTES ((size_t)2 << 30) /* protobuf's own 2 GiB limit */
#define MAX_DEPTH 24                     /* message nesting */

struct qt_onnx_env {
    int refs;
    Onnx__ModelProto *m;
};

void *qt_onnx_env_ref(void *env) {
    if (env)
        __atomic_add_fetch(&((struct qt_onnx_env *)env)->refs, 1, __ATOMIC_SEQ_CST);
    return env;
}

void qt_onnx_env_release(void *p) {
    struct qt_onnx_env *env = p;
    if (!env || __atomic_sub_fetch(&env->refs, 1, __ATOMIC_SEQ_CST) > 0)
        return;
    if (env->m)
        onnx__model_proto__free_unpacked(env->m, NULL);
    free(env);
}

const Onnx__ModelProto *qt_onnx_env_model(const void *env) {
    return env ? ((const struct qt_onnx_env *)env)->m : NULL;
}

/* ---- wire-format pre-check -------------------------------------------- */

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t r = 0;
    for (int s = 0; s < 70; s += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *d, uint32_t id) {
    for (unsigned i = 0; i < d->n_fields; i++)
        if (d->fields[i].id == id)
            return &d->fields[i];
    return NULL;
}

/* Checks that buf parses as message d: every length inside the buffer,
 * message fields nested at most MAX_DEPTH deep. */
static int wire_check(const uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *d, int depth,
                      const char **why) {
    if (depth > MAX_DEPTH) {
        *why = "messages nested too deeply";
        return -1;
    }
    while (p < end) {
        uint64_t key, v;
        if (varint(&p, end, &key)) {
            *why = "truncated field key";
            return -1;
        }
        uint32_t id = (uint32_t)(key >> 3);
        if (id == 0 || key >> 3 > 0x1fffffff) {
            *why = "invalid field number";
            return -1;
        }
        switch (key & 7) {
        case 0:
            if (varint(&p, end, &v)) {
                *why = "truncated varint";
                return -1;
            }
            break;
        case 1:
            if (end - p < 8) {
                *why = "truncated fixed64";
                return -1;
            }
            p += 8;
            break;
        case 5:
            if (end - p < 4) {
                *why = "truncated fixed32";
                return -1;
            }
            p += 4;
            break;
        case 2: {
            if (varint(&p, end, &v) || v > (uint64_t)(end - p)) {
                *why = "length-delimited field runs past the end of the file";
                return -1;
            }
            const ProtobufCFieldDescriptor *f = d ? field_of(d, id) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                wire_check(p, p + v, f->descriptor, depth + 1, why))
                return -1;
            p += v;
            break;
        }
        default:
            *why = "invalid wire type";
            return -1;
        }
    }
    return 0;
}

/* ---- conversion ------------------------------------------------------- */

static int tensor_from_proto(const Onnx__TensorProto *tp, struct qt_tensor **out, const char *what,
                             struct qt_err *err) {
    const char *name = tp->name ? tp->name : "";
    int64_t dims[QT_MAXDIM];
    char dbuf[160];
    *out = NULL;
    if (tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL || tp->n_external_data)
        return qt_errf(err, QT_EUNSUPPORTED, "%s '%s' keeps its data in an external file (not supported)", what,
                       name);
    if (tp->segment)
        return qt_errf(err, QT_EUNSUPPORTED, "%s '%s' is a segment of a tensor (not supported)", what, name);
    if (tp->n_dims > QT_MAXDIM)
        return qt_errf(err, QT_EMODEL, "%s '%s' has %zu dims (at most %d)", what, name, tp->n_dims, QT_MAXDIM);
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return qt_errf(err, QT_EMODEL, "%s '%s' has a negative dim", what, name);
        dims[i] = tp->dims[i];
    }
    int ndim = (int)tp->n_dims;
    int dt = tp->data_type;
    size_t es = qt_dtype_size(dt);
    int64_t n = qt_numel(ndim, dims);
    if (!es)
        return qt_errf(err, QT_EUNSUPPORTED, "%s '%s' has element type %s (not supported)", what, name,
                       qt_dtype_name(dt));
    if (n < 0 || (uint64_t)n > MAX_FILE_BYTES * 4 / es)
        return qt_errf(err, QT_EMODEL, "%s '%s' has dims %s whose size overflows", what, name,
                       qt_dims_str(ndim, dims, dbuf, sizeof dbuf));
    size_t need = (size_t)n * es, have;
    if (tp->has_raw_data) {
        have = tp->raw_data.len;
    } else {
        switch (dt) {
        case QT_FLOAT: have = tp->n_float_data * 4; break;
        case QT_DOUBLE: have = tp->n_double_data * 8; break;
        case QT_INT64: have = tp->n_int64_data * 8; break;
        case QT_UINT32: case QT_UINT64: have = tp->n_uint64_data * es; break;
        default: have = tp->n_int32_data * es; break; /* int32, int16, int8, uint16, uint8, bool, float16 */
        }
    }
    if (have != need)
        return qt_errf(err, QT_EMODEL, "%s '%s' holds %zu bytes of data but its dims %s need %zu", what, name,
                       have, qt_dims_str(ndim, dims, dbuf, sizeof dbuf), need);
    struct qt_tensor *t = qt_tensor_new(dt, ndim, dims);
    if (!t)
        return qt_errf(err, QT_ENOMEM, "out of memory loading %s '%s'", what, name);
    if (tp->has_raw_data) {
        if (need)
            memcpy(t->data, tp->raw_data.data, need);
    } else {
        for (int64_t i = 0; i < n; i++) {
            switch (dt) {
            case QT_FLOAT: ((float *)t->data)[i] = tp->float_data[i]; break;
            case QT_DOUBLE: ((double *)t->data)[i] = tp->double_data[i]; break;
            case QT_INT64: ((int64_t *)t->data)[i] = tp->int64_data[i]; break;
            case QT_UINT32: ((uint32_t *)t->data)[i] = (uint32_t)tp->uint64_data[i]; break;
            case QT_UINT64: ((uint64_t *)t->data)[i] = tp->uint64_data[i]; break;
            case QT_INT32: ((int32_t *)t->data)[i] = tp->int32_data[i]; break;
            case QT_INT16: ((int16_t *)t->data)[i] = (int16_t)tp->int32_data[i]; break;
            case QT_UINT16: case QT_FLOAT16: ((uint16_t *)t->data)[i] = (uint16_t)tp->int32_data[i]; break;
            case QT_INT8: ((int8_t *)t->data)[i] = (int8_t)tp->int32_data[i]; break;
            case QT_UINT8: case QT_BOOL: ((uint8_t *)t->data)[i] = (uint8_t)tp->int32_data[i]; break;
            }
        }
    }
    *out = t;
    return 0;
}

int qt_onnx_tensor_from_proto(const void *tp, struct qt_tensor **out, struct qt_err *err) {
    return tensor_from_proto(tp, out, "tensor", err);
}

static int attr_from_proto(const Onnx__AttributeProto *ap, struct qt_attr *a, const struct qt_node *n,
                           struct qt_err *err) {
    memset(a, 0, sizeof *a);
    a->name = qt_strdup(ap->name);
    if (!a->name)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    int type = ap->has_type ? (int)ap->type : 0;
    if (!type) { /* IR < 2: infer from the field present */
        if (ap->n_floats) type = QT_ATTR_FLOATS;
        else if (ap->n_ints) type = QT_ATTR_INTS;
        else if (ap->n_strings) type = QT_ATTR_STRINGS;
        else if (ap->t) type = QT_ATTR_TENSOR;
        else if (ap->has_s) type = QT_ATTR_STRING;
        else if (ap->has_f) type = QT_ATTR_FLOAT;
        else if (ap->has_i) type = QT_ATTR_INT;
    }
    a->type = type;
    switch (type) {
    case QT_ATTR_FLOAT: a->f = ap->f; break;
    case QT_ATTR_INT: a->i = ap->i; break;
    case QT_ATTR_STRING:
        a->s = malloc(ap->s.len + 1);
        if (!a->s)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        if (ap->s.len)
            memcpy(a->s, ap->s.data, ap->s.len);
        a->s[ap->s.len] = 0;
        break;
    case QT_ATTR_FLOATS:
        a->n = (int)ap->n_floats;
        a->floats = malloc(sizeof(float) * (ap->n_floats + 1));
        if (!a->floats)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        if (ap->n_floats)
            memcpy(a->floats, ap->floats, sizeof(float) * ap->n_floats);
        break;
    case QT_ATTR_INTS:
        a->n = (int)ap->n_ints;
        a->ints = malloc(sizeof(int64_t) * (ap->n_ints + 1));
        if (!a->ints)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        if (ap->n_ints)
            memcpy(a->ints, ap->ints, sizeof(int64_t) * ap->n_ints);
        break;
    case QT_ATTR_STRINGS:
        a->strings = calloc(ap->n_strings + 1, sizeof(char *));
        if (!a->strings)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        a->n = (int)ap->n_strings;
        for (size_t i = 0; i < ap->n_strings; i++) {
            a->strings[i] = malloc(ap->strings[i].len + 1);
            if (!a->strings[i])
                return qt_errf(err, QT_ENOMEM, "out of memory");
            memcpy(a->strings[i], ap->strings[i].data, ap->strings[i].len);
            a->strings[i][ap->strings[i].len] = 0;
        }
        break;
    case QT_ATTR_TENSOR:
        if (!ap->t)
            return qt_node_err(n, QT_EMODEL, err, "attribute '%s' has no tensor", a->name);
        if (tensor_from_proto(ap->t, &a->t, "attribute tensor", err))
            return qt_err_prefix(err, "node '%s' (%s)", n->name, n->op_type);
        break;
    default:
        /* graphs, sparse tensors, type protos: kept in the envelope, not
         * interpreted; ops that need them report the node unsupported */
        break;
    }
    return 0;
}

static void shape_from_type(const Onnx__TypeProto *tp, struct qt_value *v) {
    v->ndim = 0;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return;
    v->dtype = tp->tensor_type->has_elem_type ? tp->tensor_type->elem_type : 0;
    const Onnx__TensorShapeProto *s = tp->tensor_type->shape;
    if (!s) {
        v->ndim = -1; /* unknown rank */
        return;
    }
    v->ndim = s->n_dim > QT_MAXDIM ? QT_MAXDIM : (int)s->n_dim;
    for (int i = 0; i < v->ndim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = s->dim[i];
        v->dims[i] = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0
                         ? d->dim_value
                         : -1;
    }
}

/* Opsets 1-6: accepted (and run as opset 7) when every node is one of the
 * element-wise ops whose versions 1-6 differ from 7 only by the
 * consumed_inputs attribute (ignored by every runtime) and the types; the
 * binary ops' legacy broadcast/axis attributes did change meaning. */
static int old_opset_ok(const Onnx__GraphProto *gp) {
    static const char *const same[] = {"Not", "Identity", "Abs", "Neg", "Floor", "Ceil", "Relu", "Sigmoid",
                                       "Tanh", "Exp", "Log", "Sqrt", "Reciprocal"};
    for (size_t i = 0; gp && i < gp->n_node; i++) {
        const Onnx__NodeProto *nd = gp->node[i];
        size_t k = 0;
        if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx"))
            return 0;
        while (k < sizeof same / sizeof *same && (!nd->op_type || strcmp(nd->op_type, same[k])))
            k++;
        if (k == sizeof same / sizeof *same)
            return 0;
    }
    return gp != NULL;
}

/* Node i of the graph (its outputs already values of g), with its inputs,
 * domain, operator and attributes. */
static int convert_node(struct qt_graph *g, const Onnx__NodeProto *np, size_t i, struct qt_err *err) {
    char tmp[64];
    int ins[4096], outs[4096];
    const char *name = np->name && *np->name ? np->name : NULL;
    if (!np->op_type || !*np->op_type)
        return qt_errf(err, QT_EMODEL, "node %zu has no op_type", i);
    if (!name) { /* exporters leave names empty; give one for messages and --exclude */
        snprintf(tmp, sizeof tmp, "%s_%zu", np->op_type, i);
        name = tmp;
    }
    for (size_t j = 0; j < np->n_input; j++) {
        if (!np->input[j][0]) {
            ins[j] = -1;
            continue;
        }
        ins[j] = qt_graph_find(g, np->input[j]);
        if (ins[j] < 0)
            return qt_errf(err, QT_EMODEL, "node '%s' (%s) reads '%s', which is not defined", name,
                           np->op_type, np->input[j]);
    }
    for (size_t j = 0; j < np->n_output; j++)
        outs[j] = np->output[j][0] ? qt_graph_find(g, np->output[j]) : -1;
    int k = qt_graph_add_node(g, name, np->op_type, ins, (int)np->n_input, outs, (int)np->n_output, err);
    if (k < 0)
        return err->code;
    struct qt_node *n = &g->n[k];
    free(n->domain);
    n->domain = qt_strdup(np->domain && strcmp(np->domain, "ai.onnx") ? np->domain : "");
    if (!n->domain)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->op = qt_op_find(n->domain, n->op_type);
    n->orig = (void *)np;
    if (np->n_attribute) {
        n->attr = calloc(np->n_attribute, sizeof *n->attr);
        if (!n->attr)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        for (size_t a = 0; a < np->n_attribute; a++) {
            n->nattr++;
            if (attr_from_proto(np->attribute[a], &n->attr[a], n, err))
                return err->code;
        }
    }
    return 0;
}

static int convert(struct qt_graph *g, const Onnx__ModelProto *m, const char *fname, struct qt_err *err) {
    const Onnx__GraphProto *gp = m->graph;
    g->ir_version = m->has_ir_version ? m->ir_version : 0;
    g->opset = 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = m->opset_import[i]->domain;
        if (!d || !*d || strcmp(d, "ai.onnx") == 0)
            g->opset = (int)m->opset_import[i]->version;
    }
    if (!gp)
        return qt_errf(err, QT_EMODEL, "'%s' has no graph (not an ONNX model?)", fname);
    if (g->opset == 0 && m->n_opset_import == 0)
        return qt_errf(err, QT_EMODEL, "'%s' declares no opset (not an ONNX model?)", fname);
    if (g->opset < 7 && g->opset >= 1 && old_opset_ok(gp))
        g->opset = 7;
    if (g->opset < 7 || g->opset > QT_OPSET_MAX)
        return qt_errf(err, QT_EUNSUPPORTED, "'%s' uses ai.onnx opset %d; qtool supports opsets 7 to %d", fname,
                       g->opset, QT_OPSET_MAX);
    g->producer = qt_strdup(m->producer_name);
    if (!g->producer)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    if (gp->n_node > 1000000 || gp->n_initializer > 1000000)
        return qt_errf(err, QT_EMODEL, "'%s' has too many nodes or initializers", fname);

    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        struct qt_tensor *t;
        if (!tp->name || !*tp->name)
            return qt_errf(err, QT_EMODEL, "initializer %zu has no name", i);
        if (tensor_from_proto(tp, &t, "initializer", err))
            return err->code;
        int v = qt_graph_add_init(g, tp->name, t, err);
        if (v < 0)
            return err->code;
        g->v[v].orig = (void *)tp;
    }
    g->inputs = malloc(sizeof(int) * (gp->n_input + 1));
    g->outputs = malloc(sizeof(int) * (gp->n_output + 1));
    if (!g->inputs || !g->outputs)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (!vi->name || !*vi->name)
            return qt_errf(err, QT_EMODEL, "graph input %zu has no name", i);
        int v = qt_graph_find(g, vi->name);
        if (v >= 0) { /* IR < 4 lists initializers as inputs too */
            if (g->v[v].kind == QT_V_INIT)
                continue;
            return qt_errf(err, QT_EMODEL, "graph input '%s' is listed twice", vi->name);
        }
        v = qt_graph_add_value(g, vi->name, QT_V_INPUT, err);
        if (v < 0)
            return err->code;
        shape_from_type(vi->type, &g->v[v]);
        g->inputs[g->ninputs++] = v;
    }
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        if (np->n_input > 4096 || np->n_output > 4096 || np->n_attribute > 4096)
            return qt_errf(err, QT_EMODEL, "node %zu has too many inputs, outputs or attributes", i);
        for (size_t j = 0; j < np->n_output; j++) {
            if (!np->output[j][0])
                continue;
            if (qt_graph_add_value(g, np->output[j], QT_V_ACT, err) < 0)
                return qt_err_prefix(err, "node '%s'", np->name ? np->name : "");
        }
    }
    for (size_t i = 0; i < gp->n_node; i++)
        if (convert_node(g, gp->node[i], i, err))
            return err->code;
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        int v = vi->name ? qt_graph_find(g, vi->name) : -1;
        if (v < 0)
            return qt_errf(err, QT_EMODEL, "graph output '%s' is not defined", vi->name ? vi->name : "");
        struct qt_value tmpv = g->v[v];
        shape_from_type(vi->type, &tmpv);
        if (g->v[v].kind == QT_V_ACT) {
            g->v[v].dtype = tmpv.dtype;
            g->v[v].ndim = tmpv.ndim;
            memcpy(g->v[v].dims, tmpv.dims, sizeof tmpv.dims);
        }
        g->outputs[g->noutputs++] = v;
    }
    if (g->noutputs == 0)
        return qt_errf(err, QT_EMODEL, "'%s' has no graph outputs", fname);
    if (qt_graph_check(g, err))
        return err->code;
    int *order;
    if (qt_graph_topo(g, &order, err))
        return err->code;
    free(order);
    return qt_graph_init_ops(g, err);
}

int qt_graph_load_mem(struct qt_graph **out, const void *buf, size_t len, const char *fname,
                      struct qt_err *err) {
    const char *why = NULL;
    struct qt_graph *g;
    struct qt_onnx_env *env;
    *out = NULL;
    if (len == 0)
        return qt_errf(err, QT_EMODEL, "'%s' is empty", fname);
    if (wire_check(buf, (const uint8_t *)buf + len, &onnx__model_proto__descriptor, 0, &why))
        return qt_errf(err, QT_EMODEL, "'%s' is not a valid ONNX file (%s)", fname, why);
    g = qt_graph_new(0);
    env = calloc(1, sizeof *env);
    if (!g || !env) {
        free(env);
        qt_graph_free(g);
        return qt_errf(err, QT_ENOMEM, "out of memory loading '%s'", fname);
    }
    env->refs = 1;
    g->model = env;
    env->m = onnx__model_proto__unpack(NULL, len, buf);
    if (!env->m) {
        qt_graph_free(g);
        return qt_errf(err, QT_EMODEL, "'%s' is not a valid ONNX file (protobuf decoding failed)", fname);
    }
    if (convert(g, env->m, fname, err)) {
        qt_graph_free(g);
        return err->code;
    }
    *out = g;
    return 0;
}

int qt_graph_load(struct qt_graph **out, const char *path, struct qt_err *err) {
    void *buf;
    size_t len;
    *out = NULL;
    if (qt_read_file(path, MAX_FILE_BYTES, &buf, &len, err))
        return err->code == QT_EDATA ? (err->code = QT_EMODEL) : err->code;
    int rc = qt_graph_load_mem(out, buf, len, path, err);
    free(buf);
    return rc;
}
