/* plan.c: graph preparation and the quantization plan.
 *
 * 1. BatchNormalization folding: a BatchNormalization reading the only
 *    output of a Conv (or Gemm) whose weights are constants is folded:
 *    W'[m] = W[m] * g[m] / sqrt(v[m] + eps), b'[m] = (b[m] - mu[m]) * g[m] /
 *    sqrt(v[m] + eps) + beta[m].
 * 2. Roles: Conv/Gemm/MatMul are compute nodes (activation inputs, weights
 *    and bias quantized); Add/Mul binary; Concat; pass-through ops (MaxPool,
 *    Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Identity, Resize
 *    nearest) share their input's parameters; pooling and activation
 *    functions quantize input and output on their own.
 * 3. Activation fusion: a Relu, or a Clip whose lower bound is 0, reading the
 *    only output of a compute or binary node is fused: nothing is quantized
 *    between them and the unit's output range is the activation's.
 *    Transformer rules (the ops' facts): a MatMul of two activations and
 *    Einsum quantize both inputs; Softmax, Gelu and LayerNormalization
 *    their input and output, with Softmax's range clamped to [0, 1] and
 *    GELU's to [-0.17, inf); Slice, Gather, Expand pass scales through.
 * 4. Units: the LayerNorm and GELU that older opsets export as several
 *    nodes are one unit each (units()): input and output quantized, the
 *    inside (ReduceMean, Sub, Pow, Sqrt, Div, Erf...) float.
 * 5. Every float activation read or written by a quantized node is quantized
 *    once (one Q/DQ pair), graph outputs excepted; pass-through and Concat
 *    tensors are grouped (union-find) and share parameters. */
#include "quant/quant.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void qt_quant_opts_init(struct qt_quant_opts *q) {
    memset(q, 0, sizeof *q);
    q->wbits = q->abits = 8;
    q->per_channel = 1;
    q->observer = QT_OBS_PERCENTILE; /* best on MobileNetV1 (see man/qtool-calib.1) */
    q->percentile = 0; /* by width: qt_act_percentile */
    q->fold_bn = q->fuse_act = 1;
    q->cle = -1; /* with per-tensor weights only: see man/qtool-calib.1 */
    q->weight_mse = -1; /* auto below 8 bits: see man/qtool-calib.1 */
    snprintf(q->profile, sizeof q->profile, "ort-x86");
}

/* The percentile an activation of `bits` is observed at: the option's, or
 * by default 99.999 at 8 bits (ONNX Runtime's default; above 99.99 on
 * MobileNetV1, MobileNetV2, SqueezeNet 1.1 and the Fashion-MNIST ResNet,
 * man/qtool-calib.1) and 99.99 below 8 bits (no clear winner measured
 * there) and after cross-layer equalization (which widens some channels'
 * activations: 99.999 lowers per-tensor MobileNetV2 and the Fashion model). */
double qt_act_percentile(const struct qt_quant_opts *q, int bits) {
    if (q->percentile > 0)
        return q->percentile;
    return bits >= 8 && !qt_cle_wanted(q) ? (q->percentile8 > 0 ? q->percentile8 : 99.999) : 99.99;
}

void qt_qplan_logf(const struct qt_qplan *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    qt_logv(p->log, p->log_ud, fmt, ap);
    va_end(ap);
}

static int is_const_init(const struct qt_graph *g, int v) {
    return v >= 0 && g->v[v].kind == QT_V_INIT && g->v[v].init && g->v[v].init->dtype == QT_FLOAT;
}

static int nconsumers(const struct qt_graph *g, int v) {
    int c = 0;
    for (int i = 0; i < g->nn; i++)
        for (int j = 0; j < g->n[i].nin; j++)
            if (g->n[i].in[j] == v)
                c++;
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] == v)
            c++;
    return c;
}

/* Replaces initializer input `slot` of node k by tensor t: in place when
 * the node is its only reader, else as a new initializer. */
static int replace_init(struct qt_graph *g, int k, int slot, struct qt_tensor *t, const char *suffix,
                        struct qt_err *err) {
    int v = slot < g->n[k].nin ? g->n[k].in[slot] : -1;
    if (v >= 0 && nconsumers(g, v) == 1) {
        qt_graph_set_init(g, v, t);
        return 0;
    }
    char base[512];
    snprintf(base, sizeof base, "%s", v >= 0 ? g->v[v].name : g->n[k].name);
    int nv = qt_graph_add_init(g, qt_graph_unique_name(g, base, suffix), t, err);
    if (nv < 0)
        return err->code;
    if (slot < g->n[k].nin) {
        g->n[k].in[slot] = nv;
    } else { /* append an input (a Conv without bias) */
        int *ni = realloc(g->n[k].in, sizeof(int) * (size_t)(slot + 1));
        if (!ni)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        g->n[k].in = ni;
        while (g->n[k].nin < slot)
            g->n[k].in[g->n[k].nin++] = -1;
        g->n[k].in[g->n[k].nin++] = nv;
    }
    g->n[k].orig = NULL;
    return 0;
}

static int fold_bn(struct qt_qplan *p, unsigned char *dead, struct qt_err *err) {
    struct qt_graph *g = p->g;
    for (int i = 0; i < g->nn; i++) {
        struct qt_node *bn = &g->n[i];
        if (!(qt_qf(bn)->flags & QT_QF_BN) || bn->nin < 5 || bn->nout < 1)
            continue;
        if (qt_attr_int(bn, "training_mode", 0, err))
            continue;
        int x = bn->in[0], k = g->v[x].producer;
        if (k < 0 || dead[k] || nconsumers(g, x) != 1)
            continue;
        struct qt_node *c = &g->n[k];
        if (!(qt_qf(c)->flags & QT_QF_ABSORB_BN))
            continue;
        if (!is_const_init(g, c->in[1]) || (c->nin > 2 && c->in[2] >= 0 && !is_const_init(g, c->in[2])))
            continue;
        int ok = 1;
        for (int j = 1; j < 5; j++)
            ok &= is_const_init(g, bn->in[j]);
        if (!ok)
            continue;
        const struct qt_tensor *w = g->v[c->in[1]].init;
        int ax = qt_qf_weight_axis(c, w->ndim);
        int64_t m = w->dims[ax];
        /* a plain x W + b: Gemm's transA, alpha and beta (absent elsewhere) at their defaults */
        if (qt_attr_int(c, "transA", 0, err) || qt_attr_float(c, "alpha", 1, err) != 1.0f ||
            qt_attr_float(c, "beta", 1, err) != 1.0f)
            continue;
        const float *gam = g->v[bn->in[1]].init->data, *bet = g->v[bn->in[2]].init->data;
        const float *mu = g->v[bn->in[3]].init->data, *var = g->v[bn->in[4]].init->data;
        int bad = 0;
        for (int j = 1; j < 5; j++)
            bad |= qt_tensor_numel(g->v[bn->in[j]].init) != m;
        const struct qt_tensor *b0 = c->nin > 2 && c->in[2] >= 0 ? g->v[c->in[2]].init : NULL;
        if (bad || (b0 && qt_tensor_numel(b0) != m))
            continue;
        float eps = qt_attr_float(bn, "epsilon", 1e-5f, err);
        struct qt_tensor *nw = qt_tensor_clone(w);
        int64_t bdim[1] = {m};
        struct qt_tensor *nb = qt_tensor_new(QT_FLOAT, 1, bdim);
        if (!nw || !nb) {
            qt_tensor_free(nw);
            qt_tensor_free(nb);
            return qt_errf(err, QT_ENOMEM, "out of memory folding '%s'", bn->name);
        }
        int64_t per = qt_tensor_numel(w) / m;
        float *W = nw->data, *B = nb->data;
        for (int64_t o = 0; o < m; o++) {
            double f = gam[o] / sqrt((double)var[o] + eps);
            double b = b0 ? ((const float *)b0->data)[o] : 0;
            B[o] = (float)((b - mu[o]) * f + bet[o]);
            if (ax == 0)
                for (int64_t e = 0; e < per; e++)
                    W[o * per + e] = (float)(W[o * per + e] * f);
            else /* output channels along axis 1 (Gemm's B [K, M]): column o */
                for (int64_t e = 0; e < per; e++)
                    W[e * m + o] = (float)(W[e * m + o] * f);
        }
        if (replace_init(g, k, 1, nw, "_bnfolded", err) || replace_init(g, k, 2, nb, "_bnfolded", err))
            return err->code;
        c = &g->n[k];
        c->out[0] = bn->out[0];
        g->v[bn->out[0]].producer = k;
        c->orig = NULL;
        dead[i] = 1;
        p->nfolded++;
        qt_qplan_logf(p, "fold BatchNormalization '%s' into %s '%s'", bn->name, c->op_type, c->name);
    }
    return err->code;
}

/* How node n is quantized, from its op's facts (struct qt_qfacts). */
static int op_kind(const struct qt_graph *g, const struct qt_node *n) {
    const struct qt_qfacts *f = qt_qf(n);
    int role = f->role_of ? f->role_of(g, n) : f->role;
    if (role == QT_QR_COMPUTE) {
        int w = n->nin > f->weight ? n->in[f->weight] : -1;
        return is_const_init(g, w) && (!f->wrank || g->v[w].init->ndim == f->wrank) ? QT_QN_COMPUTE : QT_QN_NONE;
    }
    if (role == QT_QR_BINARY) /* (a malformed node may have fewer inputs: float) */
        return n->nin >= 2 && !is_const_init(g, n->in[0]) && !is_const_init(g, n->in[1]) ? QT_QN_BINARY
                                                                                          : QT_QN_NONE;
    return role; /* QT_QN_* = QT_QR_* for the others */
}

/* A Relu, or a Clip with a constant lower bound of 0 (ReLU6 and friends). */
static int is_relu_like(const struct qt_graph *g, const struct qt_node *n) {
    float lo, hi;
    return qt_act_bounds(g, n, &lo, &hi) && lo == 0.0f;
}

static int find_root(int *uf, int a) {
    while (uf[a] != a)
        a = uf[a] = uf[uf[a]];
    return a;
}

static int list_has(const char *list, const char *name) {
    if (!list)
        return 0;
    size_t l = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == l && !strncmp(p, name, n))
            return 1;
        p += n + (e ? 1 : 0);
    }
    return 0;
}

/* Checks every name in a comma list exists as a node. */
static int check_names(const struct qt_graph *g, const char *list, const char *what, struct qt_err *err) {
    char name[512];
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        if (n && qt_graph_find_node(g, name) < 0)
            return qt_errf(err, QT_EUSAGE, "%s names node '%s', which the model does not have", what, name);
        p += n + (e ? 1 : 0);
    }
    return 0;
}

static int apply_config(struct qt_qplan *p, struct qt_err *err) {
    void *buf;
    size_t len;
    const char *path = p->o.config;
    if (!path)
        return 0;
    if (qt_read_file(path, 16 << 20, &buf, &len, err))
        return err->code;
    cJSON *doc = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!doc)
        return qt_errf(err, QT_EDATA, "'%s' is not valid JSON", path);
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(doc, "layers");
    if (layers && !cJSON_IsObject(layers)) {
        cJSON_Delete(doc);
        return qt_errf(err, QT_EDATA, "'%s': \"layers\" must be an object of node names", path);
    }
    cJSON *it;
    cJSON_ArrayForEach(it, layers) {
        int k = qt_graph_find_node(p->g, it->string);
        if (k < 0) {
            qt_errf(err, QT_EUSAGE, "'%s' configures node '%s', which the model does not have", path, it->string);
            break;
        }
        if (!cJSON_IsObject(it)) {
            qt_errf(err, QT_EDATA, "'%s': layer '%s' must be an object", path, it->string);
            break;
        }
        struct qt_qnode *q = &p->qn[k];
        cJSON *f;
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "wbits"))) {
            if (!cJSON_IsNumber(f) || f->valueint < 2 || f->valueint > 8) {
                qt_errf(err, QT_EDATA, "'%s': layer '%s': wbits must be 2..8", path, it->string);
                break;
            }
            q->wbits = f->valueint;
        }
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "abits"))) {
            if (!cJSON_IsNumber(f) || f->valueint < 2 || f->valueint > 8) {
                qt_errf(err, QT_EDATA, "'%s': layer '%s': abits must be 2..8", path, it->string);
                break;
            }
            q->abits = f->valueint;
        }
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "observer"))) {
            if (!cJSON_IsString(f) || qt_obs_parse(f->valuestring, &q->obs_kind)) {
                qt_errf(err, QT_EDATA, "'%s': layer '%s': unknown observer", path, it->string);
                break;
            }
        }
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "granularity"))) {
            if (!cJSON_IsString(f) || (strcmp(f->valuestring, "per_channel") && strcmp(f->valuestring, "per_tensor"))) {
                qt_errf(err, QT_EDATA, "'%s': layer '%s': granularity is per_channel or per_tensor", path,
                        it->string);
                break;
            }
            q->per_channel = !strcmp(f->valuestring, "per_channel");
        }
        if ((f = cJSON_GetObjectItemCaseSensitive(it, "quantize")) && cJSON_IsFalse(f))
            q->excluded = 1;
    }
    cJSON_Delete(doc);
    return err->code;
}

/* The caller's per-node settings (o.layers), after --config. */
static int apply_layers(struct qt_qplan *p, struct qt_err *err) {
    for (int i = 0; i < p->o.nlayers; i++) {
        const struct qt_layer_set *l = &p->o.layers[i];
        int k = l->node ? qt_graph_find_node(p->g, l->node) : -1;
        if (k < 0)
            return qt_errf(err, QT_EUSAGE, "per-layer setting for node '%s', which the model does not have",
                           l->node ? l->node : "(null)");
        if ((l->wbits && (l->wbits < 2 || l->wbits > 8)) || (l->abits && (l->abits < 2 || l->abits > 8)))
            return qt_errf(err, QT_EUSAGE, "node '%s': bits must be 2..8", l->node);
        struct qt_qnode *q = &p->qn[k];
        if (l->wbits)
            q->wbits = l->wbits;
        if (l->abits)
            q->abits = l->abits;
        if (l->keep_float)
            q->excluded = 1;
    }
    for (int i = 0; i < p->o.ncbits; i++) {
        const struct qt_layer_cbits *l = &p->o.cbits[i];
        int k = l->node ? qt_graph_find_node(p->g, l->node) : -1;
        if (k < 0)
            return qt_errf(err, QT_EUSAGE, "per-channel widths for node '%s', which the model does not have",
                           l->node ? l->node : "(null)");
        for (int c = 0; c < l->n; c++)
            if (l->bits[c] < 2 || l->bits[c] > p->qn[k].wbits)
                return qt_errf(err, QT_EUSAGE, "node '%s': channel %d width %d outside 2..%d", l->node, c,
                               l->bits[c], p->qn[k].wbits);
        p->qn[k].cbits = l->bits;
        p->qn[k].ncbits = l->n;
    }
    return 0;
}

static int add_tensor(struct qt_qplan *p, int v, int node, int role, struct qt_err *err) {
    if (p->tensor_of[v] >= 0)
        return 0;
    struct qt_qtensor *nt = realloc(p->t, sizeof *nt * (size_t)(p->nt + 1));
    if (!nt)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    p->t = nt;
    memset(&nt[p->nt], 0, sizeof *nt);
    nt[p->nt].v = v;
    nt[p->nt].node = node;
    nt[p->nt].group = -1;
    nt[p->nt].q.role = role;
    p->tensor_of[v] = p->nt++;
    return 0;
}

/* A float activation: computed per batch (not folded shape glue) and float. */
static int is_float_act(const struct qt_qplan *p, int v) {
    return v >= 0 && p->vact[v];
}

/* Plans g once at batch 1 to learn every value's type and constness. */
static int find_acts(struct qt_qplan *p, struct qt_err *err) {
    struct qt_exec *x;
    if (qt_exec_new(&x, p->g, 1, 1, err))
        return err->code;
    p->vact = calloc((size_t)p->g->nv + 1, 1);
    if (!p->vact) {
        qt_exec_free(x);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    for (int v = 0; v < p->g->nv; v++)
        p->vact[v] = x->t[v].dtype == QT_FLOAT && !x->isconst[v];
    qt_exec_free(x);
    return 0;
}

static int is_graph_output(const struct qt_graph *g, int v) {
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] == v)
            return 1;
    return 0;
}

/* v is a graph output, or every reader is a pass-through node (Flatten,
 * Reshape, ...) whose output is: quantizing v would only round what the model
 * outputs in float (SqueezeNet's GlobalAveragePool -> Flatten -> logits). */
static int float_output(const struct qt_qplan *p, int v, int depth) {
    const struct qt_graph *g = p->g;
    int readers = 0;
    if (is_graph_output(g, v))
        return 1;
    for (int i = 0; i < g->nn && depth < 64; i++)
        for (int j = 0; j < g->n[i].nin; j++) {
            if (g->n[i].in[j] != v)
                continue;
            if (p->qn[i].kind != QT_QN_PASS || j != 0 || g->n[i].nout < 1 ||
                !float_output(p, g->n[i].out[0], depth + 1))
                return 0;
            readers++;
        }
    return readers > 0;
}

/* --keep-first-last: the first and the last compute node in float or at 8 bits. */
static void keep_first_last(struct qt_qplan *p, const int *order) {
    const struct qt_graph *g = p->g;
    int first = -1, last = -1;
    for (int k = 0; k < g->nn; k++) {
        int i = order[k];
        if (p->qn[i].kind != QT_QN_COMPUTE)
            continue;
        if (first < 0)
            first = i;
        last = i;
    }
    for (int e = 0; e < 2; e++) {
        int i = e ? last : first;
        if (i < 0)
            continue;
        if (p->o.keep_first_last < 0) {
            p->qn[i].excluded = 1;
            qt_qplan_logf(p, "keep %s '%s' in float (--keep-first-last)", g->n[i].op_type, g->n[i].name);
        } else {
            p->qn[i].wbits = p->qn[i].abits = 8;
            qt_qplan_logf(p, "keep %s '%s' at 8 bits (--keep-first-last)", g->n[i].op_type, g->n[i].name);
        }
    }
}

/* A Relu/Clip that alone reads a compute or binary node's output joins it:
 * one quantized unit. */
static void fuse_acts(struct qt_qplan *p) {
    struct qt_graph *g = p->g;
    for (int i = 0; i < g->nn; i++) {
        struct qt_qnode *q = &p->qn[i];
        struct qt_node *n = &g->n[i];
        if (q->excluded || (q->kind != QT_QN_COMPUTE && q->kind != QT_QN_BINARY) ||
            !(qt_qf(n)->flags & QT_QF_FUSE_ACT) || !p->o.fuse_act || n->nout < 1)
            continue;
        int y = n->out[0], c;
        if (nconsumers(g, y) != 1 || qt_graph_consumers(g, y, &c, 1) != 1)
            continue;
        if (!is_relu_like(g, &g->n[c]) || p->qn[c].excluded || float_output(p, g->n[c].out[0], 0))
            continue;
        q->fused = c;
        p->qn[c].kind = QT_QN_ACT_FUSED;
        p->qn[c].abits = q->abits;
        p->nfused++;
        qt_qplan_logf(p, "fuse %s '%s' into %s '%s' (one quantized unit)", g->n[c].op_type, g->n[c].name, n->op_type,
              n->name);
    }
}

/* Multi-node patterns quantized as one unit (the op's .unit matcher): every
 * node of the unit stays float but the last, which quantizes the unit's
 * input and its own output. A unit with an excluded node is left alone. */
static void units(struct qt_qplan *p, const int *order) {
    const struct qt_graph *g = p->g;
    struct qt_qunit u;
    for (int k = 0; k < g->nn; k++) {
        int i = order[k];
        const struct qt_qfacts *f = qt_qf(&g->n[i]);
        if (!f->unit || !f->unit(g, i, &u) || !is_float_act(p, u.in))
            continue;
        int ok = 1;
        for (int j = 0; j < u.n; j++)
            ok &= !p->qn[u.nodes[j]].excluded && p->qn[u.nodes[j]].kind != QT_QN_UNIT &&
                  p->qn[u.nodes[j]].fused < 0;
        if (!ok)
            continue;
        for (int j = 0; j < u.n; j++)
            p->qn[u.nodes[j]].kind = QT_QN_NONE;
        struct qt_qnode *q = &p->qn[u.out];
        q->kind = QT_QN_UNIT;
        q->unit_in = u.in;
        q->bounded = u.bounded;
        q->lo = u.lo;
        q->hi = u.hi;
        qt_qplan_logf(p, "quantize %d nodes '%s'..'%s' as one unit (inside float)", u.n, g->n[u.nodes[0]].name,
              g->n[u.out].name);
    }
}

/* A weighted node whose output only an Add of a constant reads (Linear on
 * 3-D inputs exports as MatMul, Add): the Add is its bias, the pair one
 * unit quantized after the Add (the Add becomes a QT_QN_UNIT with no
 * quantized input). */
static void bias_adds(struct qt_qplan *p) {
    const struct qt_graph *g = p->g;
    for (int i = 0; i < g->nn; i++) {
        struct qt_qnode *q = &p->qn[i];
        int c;
        if (q->kind != QT_QN_COMPUTE || q->excluded || q->fused >= 0 || g->n[i].nout < 1)
            continue;
        int y = g->n[i].out[0];
        if (nconsumers(g, y) != 1 || qt_graph_consumers(g, y, &c, 1) != 1 || p->qn[c].kind != QT_QN_NONE ||
            p->qn[c].excluded || !(qt_qf(&g->n[c])->flags & QT_QF_BIAS) || g->n[c].nin != 2 || g->n[c].nout < 1)
            continue;
        int other = g->n[c].in[0] == y ? g->n[c].in[1] : g->n[c].in[0];
        if (!qt_qunit_const(g, other))
            continue;
        q->bias_add = c;
        p->qn[c].kind = QT_QN_UNIT;
        p->qn[c].unit_in = -1;
        qt_qplan_logf(p, "%s '%s' is the bias of %s '%s' (one unit)", g->n[c].op_type, g->n[c].name, g->n[i].op_type,
              g->n[i].name);
    }
}

/* Activation scale groups (one per union-find root), the bits and observer
 * of every tensor. */
static void set_groups(struct qt_qplan *p, int *uf) {
    const struct qt_graph *g = p->g;
    const struct qt_quant_opts *o = &p->o;
    for (int t = 0; t < p->nt; t++) {
        if (p->t[t].q.role != QT_ROLE_ACT)
            continue;
        int r = find_root(uf, p->t[t].v);
        int rt = p->tensor_of[r];
        if (rt >= 0 && p->t[rt].group >= 0) {
            p->t[t].group = p->t[rt].group;
        } else {
            p->t[t].group = p->ngroups++;
            if (rt >= 0)
                p->t[rt].group = p->t[t].group;
        }
        /* bits and observer: from the producing node (or the first reader) */
        int prod = g->v[p->t[t].v].producer;
        const struct qt_qnode *q = prod >= 0 ? &p->qn[prod] : NULL;
        if (q && q->kind == QT_QN_ACT_FUSED) {
            for (int i = 0; i < g->nn; i++)
                if (p->qn[i].fused == prod)
                    q = &p->qn[i];
        }
        if (!q || q->kind == QT_QN_NONE) {
            int c;
            q = qt_graph_consumers(g, p->t[t].v, &c, 1) ? &p->qn[c] : NULL;
        }
        p->t[t].q.bits = q ? q->abits : o->abits;
        p->t[t].obs_kind = q ? q->obs_kind : o->observer;
    }
    for (int t = 0; t < p->nt; t++) {
        struct qt_qtensor *qt = &p->t[t];
        if (qt->q.role == QT_ROLE_ACT)
            continue;
        qt->q.bits = qt->q.role == QT_ROLE_WEIGHT ? p->qn[qt->node].wbits : 32;
    }
}

/* every node's defaults from the options: its kind, widths, observer,
 * bounds and whether --exclude/--exclude-ops names it */
static void init_qnodes(struct qt_qplan *p, const struct qt_quant_opts *o) {
    struct qt_graph *g = p->g;
    for (int i = 0; i < g->nn; i++) {
        struct qt_qnode *q = &p->qn[i];
        q->kind = op_kind(g, &g->n[i]);
        q->fused = -1;
        q->wbits = o->wbits;
        q->abits = o->abits;
        q->per_channel = o->per_channel;
        q->obs_kind = o->observer;
        q->unit_in = -1;
        q->bias_add = -1;
        if (qt_qf(&g->n[i])->flags & QT_QF_BOUNDED) {
            q->bounded = qt_qf(&g->n[i])->flags & QT_QF_FIXED ? 2 : 1;
            q->lo = qt_qf(&g->n[i])->lo;
            q->hi = qt_qf(&g->n[i])->hi;
        }
        if (list_has(o->exclude, g->n[i].name) || list_has(o->exclude_ops, g->n[i].op_type))
            q->excluded = 1;
    }
}

/* node i's tensors: its float activation inputs, weight and bias, and its
 * output; the output joined in uf with the inputs a Pass or Concat shares
 * its grid with */
static int node_tensors(struct qt_qplan *p, int i, int *uf, struct qt_err *err) {
    struct qt_graph *g = p->g;
    struct qt_qnode *q = &p->qn[i];
    struct qt_node *n = &g->n[i];
    if (q->kind == QT_QN_NONE || q->kind == QT_QN_ACT_FUSED)
        return 0;
    if (q->excluded) {
        p->nexcluded++;
        qt_qplan_logf(p, "keep %s '%s' in float (excluded)", n->op_type, n->name);
        return 0;
    }
    int nact = q->kind == QT_QN_COMPUTE ? 1 : (q->kind == QT_QN_BINARY ? 2 : n->nin);
    if (q->kind == QT_QN_PASS || q->kind == QT_QN_UNARY)
        nact = 1;
    if (q->kind == QT_QN_UNIT)
        nact = 0;
    if (q->kind == QT_QN_PASS && n->nout > 0 && float_output(p, n->out[0], 0))
        nact = 0; /* on the way to a float graph output */
    for (int j = 0; j < nact && j < n->nin; j++)
        if (is_float_act(p, n->in[j]) && add_tensor(p, n->in[j], -1, QT_ROLE_ACT, err))
            return err->code;
    if (q->kind == QT_QN_UNIT && is_float_act(p, q->unit_in) && add_tensor(p, q->unit_in, -1, QT_ROLE_ACT, err))
        return err->code;
    if (q->kind == QT_QN_COMPUTE) {
        const struct qt_qfacts *f = qt_qf(n);
        int w = n->in[f->weight], b = f->bias && n->nin > f->bias ? n->in[f->bias] : -1;
        if (add_tensor(p, w, i, QT_ROLE_WEIGHT, err))
            return err->code;
        /* an int32 bias per output channel (Gemm's C may broadcast instead) */
        if (is_const_init(g, b) &&
            qt_tensor_numel(g->v[b].init) == g->v[w].dims[qt_qf_weight_axis(n, g->v[w].ndim)] &&
            add_tensor(p, b, i, QT_ROLE_BIAS, err))
            return err->code;
    }
    int y = q->fused >= 0 ? g->n[q->fused].out[0] : n->out[0];
    if (q->bias_add < 0 && is_float_act(p, y) && !float_output(p, y, 0) && add_tensor(p, y, -1, QT_ROLE_ACT, err))
        return err->code;
    if (q->bounded && p->tensor_of[y] >= 0 && p->t[p->tensor_of[y]].v == y) {
        struct qt_qtensor *ty = &p->t[p->tensor_of[y]];
        ty->bounded = q->bounded;
        ty->lo = q->lo;
        ty->hi = q->hi;
    }
    if (q->kind == QT_QN_PASS || q->kind == QT_QN_CONCAT) {
        for (int j = 0; j < (q->kind == QT_QN_PASS ? 1 : n->nin); j++) {
            int a = n->in[j];
            if (a >= 0 && p->tensor_of[a] >= 0 && p->tensor_of[y] >= 0)
                uf[find_root(uf, a)] = find_root(uf, y);
        }
    }
    return 0;
}

int qt_qplan_build(struct qt_qplan **out, const struct qt_graph *src, const struct qt_quant_opts *o,
                   void (*log)(void *, const char *), void *log_ud, struct qt_err *err) {
    struct qt_qplan *p = calloc(1, sizeof *p);
    unsigned char *dead = NULL;
    int *order = NULL, *uf = NULL;
    *out = NULL;
    if (!p)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    p->o = *o;
    p->log = log;
    p->log_ud = log_ud;
    if (qt_graph_clone(&p->g, src, err))
        goto fail;
    struct qt_graph *g = p->g;
    if (check_names(g, o->exclude, "--exclude", err))
        goto fail;
    dead = calloc((size_t)g->nn + 1, 1);
    if (!dead) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto fail;
    }
    if (o->fold_bn && fold_bn(p, dead, err))
        goto fail;
    if (qt_graph_compact(g, dead, err) || find_acts(p, err))
        goto fail;
    p->qn = calloc((size_t)g->nn + 1, sizeof *p->qn);
    p->tensor_of = malloc(sizeof(int) * ((size_t)g->nv + 1));
    uf = malloc(sizeof(int) * ((size_t)g->nv + 1));
    if (!p->qn || !p->tensor_of || !uf) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto fail;
    }
    for (int v = 0; v < g->nv; v++) {
        p->tensor_of[v] = -1;
        uf[v] = v;
    }
    init_qnodes(p, o);
    if (apply_config(p, err) || apply_layers(p, err))
        goto fail;
    if (qt_graph_topo(g, &order, err))
        goto fail;
    if (o->keep_first_last)
        keep_first_last(p, order);
    units(p, order);
    fuse_acts(p);
    bias_adds(p);
    /* tensors */
    for (int k = 0; k < g->nn; k++)
        if (node_tensors(p, order[k], uf, err))
            goto fail;
    set_groups(p, uf);
    qt_qplan_logf(p, "quantize %d tensors (%d activation groups)", p->nt, p->ngroups);
    free(dead);
    free(order);
    free(uf);
    *out = p;
    return 0;
fail:
    free(dead);
    free(order);
    free(uf);
    qt_qplan_free(p);
    return err->code;
}

void qt_qplan_free(struct qt_qplan *p) {
    if (!p)
        return;
    for (int t = 0; t < p->nt; t++)
        qt_qparam_release(&p->t[t].q);
    free(p->t);
    free(p->qn);
    free(p->tensor_of);
    free(p->vact);
    qt_graph_free(p->g);
    if (p->mixed) {
        qt_mixed_free(p->mixed);
        free(p->mixed);
    }
    free(p->mixed_layers);
    free(p);
}
