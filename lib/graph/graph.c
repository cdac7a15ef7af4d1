/* graph.c: the graph IR: values, nodes, attributes, topological order,
 * editing (used by the quantization passes) and deep copies. */
#include "engine.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void attr_release(struct qt_attr *a) {
    free(a->name);
    free(a->s);
    free(a->ints);
    free(a->floats);
    for (int i = 0; a->strings && i < a->n; i++)
        free(a->strings[i]);
    free(a->strings);
    qt_tensor_free(a->t);
    memset(a, 0, sizeof *a);
}

static void node_release(struct qt_node *n) {
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->in);
    free(n->out);
    for (int i = 0; i < n->nattr; i++)
        attr_release(&n->attr[i]);
    free(n->attr);
    free(n->priv);
    memset(n, 0, sizeof *n);
}

void qt_onnx_env_release(void *env); /* lib/onnx/load.c */

void qt_graph_free(struct qt_graph *g) {
    if (!g)
        return;
    for (int i = 0; i < g->nv; i++) {
        free(g->v[i].name);
        qt_tensor_free(g->v[i].init);
    }
    for (int i = 0; i < g->nn; i++)
        node_release(&g->n[i]);
    free(g->v);
    free(g->n);
    free(g->inputs);
    free(g->outputs);
    free(g->producer);
    qt_map_free(g->names);
    qt_onnx_env_release(g->model);
    free(g);
}

int qt_graph_find(const struct qt_graph *g, const char *name) {
    return g->names ? qt_map_get(g->names, name) : -1;
}

int qt_graph_find_node(const struct qt_graph *g, const char *name) {
    for (int i = 0; i < g->nn; i++)
        if (strcmp(g->n[i].name, name) == 0)
            return i;
    return -1;
}

int qt_graph_add_value(struct qt_graph *g, const char *name, int kind, struct qt_err *err) {
    if (qt_graph_find(g, name) >= 0) {
        qt_errf(err, QT_EMODEL, "tensor '%s' is defined twice", name);
        return -1;
    }
    if (g->nv == g->cap_v) {
        int nc = g->cap_v ? g->cap_v * 2 : 64;
        struct qt_value *nv = realloc(g->v, (size_t)nc * sizeof *nv);
        if (!nv) {
            qt_errf(err, QT_ENOMEM, "out of memory adding tensor '%s'", name);
            return -1;
        }
        g->v = nv;
        g->cap_v = nc;
    }
    struct qt_value *v = &g->v[g->nv];
    memset(v, 0, sizeof *v);
    v->name = qt_strdup(name);
    v->kind = kind;
    v->producer = -1;
    if (!v->name || qt_map_put(g->names, name, g->nv)) {
        free(v->name);
        qt_errf(err, QT_ENOMEM, "out of memory adding tensor '%s'", name);
        return -1;
    }
    return g->nv++;
}

int qt_graph_add_init(struct qt_graph *g, const char *name, struct qt_tensor *t, struct qt_err *err) {
    int v = qt_graph_add_value(g, name, QT_V_INIT, err);
    if (v < 0) {
        qt_tensor_free(t);
        return -1;
    }
    g->v[v].init = t;
    g->v[v].dtype = t->dtype;
    g->v[v].ndim = t->ndim;
    memcpy(g->v[v].dims, t->dims, sizeof t->dims);
    return v;
}

void qt_graph_set_init(struct qt_graph *g, int v, struct qt_tensor *t) {
    qt_tensor_free(g->v[v].init);
    g->v[v].init = t;
    g->v[v].kind = QT_V_INIT;
    g->v[v].dtype = t->dtype;
    g->v[v].ndim = t->ndim;
    memcpy(g->v[v].dims, t->dims, sizeof t->dims);
    g->v[v].orig = NULL;
}

int qt_graph_add_node(struct qt_graph *g, const char *name, const char *op_type, const int *in, int nin,
                      const int *out, int nout, struct qt_err *err) {
    if (g->nn == g->cap_n) {
        int nc = g->cap_n ? g->cap_n * 2 : 64;
        struct qt_node *nn = realloc(g->n, (size_t)nc * sizeof *nn);
        if (!nn) {
            qt_errf(err, QT_ENOMEM, "out of memory adding node '%s'", name);
            return -1;
        }
        g->n = nn;
        g->cap_n = nc;
    }
    struct qt_node *n = &g->n[g->nn];
    memset(n, 0, sizeof *n);
    n->name = qt_strdup(name);
    n->op_type = qt_strdup(op_type);
    n->domain = qt_strdup("");
    n->in = malloc(sizeof(int) * (size_t)(nin ? nin : 1));
    n->out = malloc(sizeof(int) * (size_t)(nout ? nout : 1));
    if (!n->name || !n->op_type || !n->domain || !n->in || !n->out) {
        node_release(n);
        qt_errf(err, QT_ENOMEM, "out of memory adding node '%s'", name);
        return -1;
    }
    n->nin = nin;
    n->nout = nout;
    if (nin)
        memcpy(n->in, in, sizeof(int) * (size_t)nin);
    if (nout)
        memcpy(n->out, out, sizeof(int) * (size_t)nout);
    n->op = qt_op_find("", op_type);
    for (int i = 0; i < nout; i++)
        if (out[i] >= 0)
            g->v[out[i]].producer = g->nn;
    return g->nn++;
}

const char *qt_graph_unique_name(struct qt_graph *g, const char *base, const char *suffix) {
    static _Thread_local char buf[1024];
    snprintf(buf, sizeof buf, "%s%s", base, suffix);
    for (int k = 1; qt_graph_find(g, buf) >= 0; k++)
        snprintf(buf, sizeof buf, "%s%s_%d", base, suffix, k);
    return buf;
}

int qt_graph_consumers(const struct qt_graph *g, int v, int *nodes, int max) {
    int c = 0;
    for (int i = 0; i < g->nn; i++) {
        for (int j = 0; j < g->n[i].nin; j++) {
            if (g->n[i].in[j] == v) {
                if (c < max)
                    nodes[c] = i;
                c++;
                break;
            }
        }
    }
    return c;
}

int qt_graph_check(struct qt_graph *g, struct qt_err *err) {
    for (int i = 0; i < g->nv; i++)
        g->v[i].producer = -1;
    for (int i = 0; i < g->nn; i++) {
        struct qt_node *n = &g->n[i];
        for (int j = 0; j < n->nout; j++) {
            int o = n->out[j];
            if (o < 0)
                continue;
            if (g->v[o].kind != QT_V_ACT)
                return qt_errf(err, QT_EMODEL, "node '%s' (%s) writes '%s', which is a graph input or initializer",
                               n->name, n->op_type, g->v[o].name);
            if (g->v[o].producer >= 0)
                return qt_errf(err, QT_EMODEL, "tensor '%s' is produced by two nodes ('%s' and '%s')", g->v[o].name,
                               g->n[g->v[o].producer].name, n->name);
            g->v[o].producer = i;
        }
    }
    for (int i = 0; i < g->nn; i++) {
        struct qt_node *n = &g->n[i];
        for (int j = 0; j < n->nin; j++) {
            int v = n->in[j];
            if (v >= 0 && g->v[v].kind == QT_V_ACT && g->v[v].producer < 0)
                return qt_errf(err, QT_EMODEL, "node '%s' (%s) reads '%s', which nothing produces", n->name,
                               n->op_type, g->v[v].name);
        }
    }
    for (int i = 0; i < g->noutputs; i++) {
        int v = g->outputs[i];
        if (g->v[v].kind == QT_V_ACT && g->v[v].producer < 0)
            return qt_errf(err, QT_EMODEL, "graph output '%s' is not produced by any node", g->v[v].name);
    }
    return 0;
}

int qt_graph_topo(const struct qt_graph *g, int **order, struct qt_err *err) {
    /* Kahn's algorithm, taking ready nodes in file order so the result is
     * stable and follows the model's own order when that is valid. */
    int *indeg = calloc((size_t)g->nn + 1, sizeof *indeg);
    int *ord = malloc(sizeof(int) * ((size_t)g->nn + 1));
    int *start = calloc((size_t)g->nv + 1, sizeof *start);
    int *users = NULL, *fill = NULL;
    int rc = 0, nord = 0, nedge = 0;
    *order = NULL;
    if (!indeg || !ord || !start)
        goto oom;
    for (int i = 0; i < g->nn; i++)
        for (int j = 0; j < g->n[i].nin; j++) {
            int v = g->n[i].in[j];
            if (v >= 0 && g->v[v].producer >= 0) {
                indeg[i]++;
                start[v]++;
                nedge++;
            }
        }
    users = malloc(sizeof(int) * ((size_t)nedge + 1));
    fill = calloc((size_t)g->nv + 1, sizeof *fill);
    if (!users || !fill)
        goto oom;
    for (int v = 0, acc = 0; v <= g->nv; v++) {
        int c = v < g->nv ? start[v] : 0;
        start[v] = acc;
        acc += c;
    }
    for (int i = 0; i < g->nn; i++)
        for (int j = 0; j < g->n[i].nin; j++) {
            int v = g->n[i].in[j];
            if (v >= 0 && g->v[v].producer >= 0)
                users[start[v] + fill[v]++] = i;
        }
    /* a min-heap would give strict file order; a simple sweep is enough:
     * repeatedly take the lowest-index ready node */
    {
        unsigned char *done = calloc((size_t)g->nn + 1, 1);
        int *ready = malloc(sizeof(int) * ((size_t)g->nn + 1));
        int nready = 0;
        if (!done || !ready) {
            free(done);
            free(ready);
            goto oom;
        }
        for (int i = g->nn - 1; i >= 0; i--)
            if (indeg[i] == 0)
                ready[nready++] = i; /* stack: lowest index on top */
        while (nready) {
            int i = ready[--nready];
            ord[nord++] = i;
            done[i] = 1;
            int newly[64], nnew = 0;
            for (int j = 0; j < g->n[i].nout; j++) {
                int v = g->n[i].out[j];
                if (v < 0)
                    continue;
                for (int k = start[v]; k < start[v] + fill[v]; k++) {
                    int u = users[k];
                    if (--indeg[u] == 0) {
                        if (nnew < 64)
                            newly[nnew++] = u;
                        else
                            ready[nready++] = u;
                    }
                }
            }
            /* push new ready nodes so the lowest index comes out first */
            for (int a = 1; a < nnew; a++)
                for (int b = a; b > 0 && newly[b - 1] < newly[b]; b--) {
                    int t = newly[b];
                    newly[b] = newly[b - 1];
                    newly[b - 1] = t;
                }
            for (int a = 0; a < nnew; a++)
                ready[nready++] = newly[a];
        }
        if (nord != g->nn) {
            for (int i = 0; i < g->nn; i++)
                if (!done[i]) {
                    rc = qt_errf(err, QT_EMODEL, "graph has a cycle through node '%s' (%s)", g->n[i].name,
                                 g->n[i].op_type);
                    break;
                }
        }
        free(done);
        free(ready);
    }
    free(indeg);
    free(start);
    free(users);
    free(fill);
    if (rc) {
        free(ord);
        return rc;
    }
    *order = ord;
    return 0;
oom:
    free(indeg);
    free(ord);
    free(start);
    free(users);
    free(fill);
    return qt_errf(err, QT_ENOMEM, "out of memory sorting the graph");
}

int qt_graph_compact(struct qt_graph *g, const unsigned char *dead, struct qt_err *err) {
    int *vmap = malloc(sizeof(int) * ((size_t)g->nv + 1));
    unsigned char *used = calloc((size_t)g->nv + 1, 1);
    int w = 0;
    if (!vmap || !used) {
        free(vmap);
        free(used);
        return qt_errf(err, QT_ENOMEM, "out of memory editing the graph");
    }
    for (int i = 0; i < g->nn; i++) {
        if (dead && dead[i]) {
            node_release(&g->n[i]);
            continue;
        }
        g->n[w++] = g->n[i];
    }
    g->nn = w;
    for (int i = 0; i < g->nn; i++) {
        for (int j = 0; j < g->n[i].nin; j++)
            if (g->n[i].in[j] >= 0)
                used[g->n[i].in[j]] = 1;
        for (int j = 0; j < g->n[i].nout; j++)
            if (g->n[i].out[j] >= 0)
                used[g->n[i].out[j]] = 1;
    }
    for (int i = 0; i < g->ninputs; i++)
        used[g->inputs[i]] = 1;
    for (int i = 0; i < g->noutputs; i++)
        used[g->outputs[i]] = 1;
    w = 0;
    for (int v = 0; v < g->nv; v++) {
        if (!used[v]) {
            qt_map_del(g->names, g->v[v].name);
            free(g->v[v].name);
            qt_tensor_free(g->v[v].init);
            vmap[v] = -1;
            continue;
        }
        vmap[v] = w;
        g->v[w] = g->v[v];
        if (w != v && qt_map_put(g->names, g->v[w].name, w)) {
            free(vmap);
            free(used);
            return qt_errf(err, QT_ENOMEM, "out of memory editing the graph");
        }
        w++;
    }
    g->nv = w;
    for (int i = 0; i < g->nn; i++) {
        for (int j = 0; j < g->n[i].nin; j++)
            if (g->n[i].in[j] >= 0)
                g->n[i].in[j] = vmap[g->n[i].in[j]];
        for (int j = 0; j < g->n[i].nout; j++)
            if (g->n[i].out[j] >= 0)
                g->n[i].out[j] = vmap[g->n[i].out[j]];
    }
    for (int i = 0; i < g->ninputs; i++)
        g->inputs[i] = vmap[g->inputs[i]];
    for (int i = 0; i < g->noutputs; i++)
        g->outputs[i] = vmap[g->outputs[i]];
    free(vmap);
    free(used);
    return qt_graph_check(g, err);
}

/* ---- attributes ------------------------------------------------------- */

const struct qt_attr *qt_attr_find(const struct qt_node *n, const char *name) {
    for (int i = 0; i < n->nattr; i++)
        if (strcmp(n->attr[i].name, name) == 0)
            return &n->attr[i];
    return NULL;
}

static const struct qt_attr *typed(const struct qt_node *n, const char *name, int type, struct qt_err *err) {
    const struct qt_attr *a = qt_attr_find(n, name);
    if (a && a->type != type) {
        qt_node_err(n, QT_EMODEL, err, "attribute '%s' has the wrong type", name);
        return NULL;
    }
    return a;
}

int64_t qt_attr_int(const struct qt_node *n, const char *name, int64_t def, struct qt_err *err) {
    const struct qt_attr *a = typed(n, name, QT_ATTR_INT, err);
    return a ? a->i : def;
}

float qt_attr_float(const struct qt_node *n, const char *name, float def, struct qt_err *err) {
    const struct qt_attr *a = typed(n, name, QT_ATTR_FLOAT, err);
    return a ? a->f : def;
}

const char *qt_attr_str(const struct qt_node *n, const char *name, const char *def, struct qt_err *err) {
    const struct qt_attr *a = typed(n, name, QT_ATTR_STRING, err);
    return a ? a->s : def;
}

int qt_attr_ints(const struct qt_node *n, const char *name, const int64_t **v, struct qt_err *err) {
    const struct qt_attr *a = typed(n, name, QT_ATTR_INTS, err);
    *v = a ? a->ints : NULL;
    return a ? a->n : -1;
}

int qt_attr_floats(const struct qt_node *n, const char *name, const float **v, struct qt_err *err) {
    const struct qt_attr *a = typed(n, name, QT_ATTR_FLOATS, err);
    *v = a ? a->floats : NULL;
    return a ? a->n : -1;
}

const struct qt_tensor *qt_attr_tensor(const struct qt_node *n, const char *name, struct qt_err *err) {
    const struct qt_attr *a = typed(n, name, QT_ATTR_TENSOR, err);
    return a ? a->t : NULL;
}

static struct qt_attr *attr_slot(struct qt_node *n, const char *name) {
    for (int i = 0; i < n->nattr; i++)
        if (strcmp(n->attr[i].name, name) == 0) {
            char *keep = n->attr[i].name;
            n->attr[i].name = NULL;
            attr_release(&n->attr[i]);
            n->attr[i].name = keep;
            return &n->attr[i];
        }
    struct qt_attr *na = realloc(n->attr, sizeof *na * (size_t)(n->nattr + 1));
    if (!na)
        return NULL;
    n->attr = na;
    struct qt_attr *a = &na[n->nattr];
    memset(a, 0, sizeof *a);
    a->name = qt_strdup(name);
    if (!a->name)
        return NULL;
    n->nattr++;
    n->orig = NULL;
    return a;
}

int qt_node_set_int(struct qt_node *n, const char *name, int64_t v) {
    struct qt_attr *a = attr_slot(n, name);
    if (!a)
        return -1;
    a->type = QT_ATTR_INT;
    a->i = v;
    n->orig = NULL;
    return 0;
}

int qt_node_set_float(struct qt_node *n, const char *name, float v) {
    struct qt_attr *a = attr_slot(n, name);
    if (!a)
        return -1;
    a->type = QT_ATTR_FLOAT;
    a->f = v;
    n->orig = NULL;
    return 0;
}

int qt_node_set_ints(struct qt_node *n, const char *name, const int64_t *v, int cnt) {
    struct qt_attr *a = attr_slot(n, name);
    if (!a)
        return -1;
    a->type = QT_ATTR_INTS;
    a->ints = malloc(sizeof(int64_t) * (size_t)(cnt ? cnt : 1));
    if (!a->ints)
        return -1;
    if (cnt)
        memcpy(a->ints, v, sizeof(int64_t) * (size_t)cnt);
    a->n = cnt;
    n->orig = NULL;
    return 0;
}

int qt_node_set_str(struct qt_node *n, const char *name, const char *s) {
    struct qt_attr *a = attr_slot(n, name);
    if (!a)
        return -1;
    a->type = QT_ATTR_STRING;
    a->s = qt_strdup(s);
    n->orig = NULL;
    return a->s ? 0 : -1;
}

int qt_graph_init_ops(struct qt_graph *g, struct qt_err *err) {
    for (int i = 0; i < g->nn; i++) {
        struct qt_node *n = &g->n[i];
        /* every operator qtool runs writes its output 0 (ONNX makes it required) */
        if (n->op && (n->nout < 1 || n->out[0] < 0))
            return qt_node_err(n, QT_EMODEL, err, "has no output 0 (its first output name is missing or empty)");
        if (n->op && n->op->init && n->op->init(g, n, err))
            return err->code;
    }
    return 0;
}

int qt_node_changed(struct qt_graph *g, int node, struct qt_err *err) {
    struct qt_node *n = &g->n[node];
    n->orig = NULL;
    free(n->priv);
    n->priv = NULL;
    n->op = qt_op_find(n->domain, n->op_type);
    if (n->op && n->op->init)
        return n->op->init(g, n, err);
    return 0;
}

/* ---- copies ------------------------------------------------------------ */

static int attr_copy(struct qt_attr *d, const struct qt_attr *s) {
    memset(d, 0, sizeof *d);
    d->type = s->type;
    d->i = s->i;
    d->f = s->f;
    d->n = s->n;
    d->name = qt_strdup(s->name);
    if (!d->name)
        return -1;
    if (s->s && !(d->s = qt_strdup(s->s)))
        return -1;
    if (s->ints) {
        d->ints = malloc(sizeof(int64_t) * (size_t)(s->n ? s->n : 1));
        if (!d->ints)
            return -1;
        memcpy(d->ints, s->ints, sizeof(int64_t) * (size_t)s->n);
    }
    if (s->floats) {
        d->floats = malloc(sizeof(float) * (size_t)(s->n ? s->n : 1));
        if (!d->floats)
            return -1;
        memcpy(d->floats, s->floats, sizeof(float) * (size_t)s->n);
    }
    if (s->strings) {
        d->strings = calloc((size_t)(s->n ? s->n : 1), sizeof(char *));
        if (!d->strings)
            return -1;
        for (int i = 0; i < s->n; i++)
            if (!(d->strings[i] = qt_strdup(s->strings[i])))
                return -1;
    }
    if (s->t && !(d->t = qt_tensor_clone(s->t)))
        return -1;
    return 0;
}

void *qt_onnx_env_ref(void *env); /* load.c */

struct qt_graph *qt_graph_new(int opset) {
    struct qt_graph *g = calloc(1, sizeof *g);
    if (g && !(g->names = qt_map_new())) {
        free(g);
        return NULL;
    }
    if (g) {
        g->opset = opset;
        g->ir_version = 7;
    }
    return g;
}

int qt_graph_clone(struct qt_graph **out, const struct qt_graph *s, struct qt_err *err) {
    struct qt_graph *g = qt_graph_new(s->opset);
    *out = NULL;
    if (!g)
        goto oom;
    g->ir_version = s->ir_version;
    if (s->producer && !(g->producer = qt_strdup(s->producer)))
        goto oom;
    for (int i = 0; i < s->nv; i++) {
        int v = qt_graph_add_value(g, s->v[i].name, s->v[i].kind, err);
        if (v < 0)
            goto fail;
        struct qt_value *d = &g->v[v];
        char *nm = d->name;
        *d = s->v[i];
        d->name = nm;
        d->init = NULL;
        if (s->v[i].init && !(d->init = qt_tensor_clone(s->v[i].init)))
            goto oom;
    }
    for (int i = 0; i < s->nn; i++) {
        const struct qt_node *sn = &s->n[i];
        int k = qt_graph_add_node(g, sn->name, sn->op_type, sn->in, sn->nin, sn->out, sn->nout, err);
        if (k < 0)
            goto fail;
        struct qt_node *n = &g->n[k];
        free(n->domain);
        if (!(n->domain = qt_strdup(sn->domain)))
            goto oom;
        n->op = sn->op;
        n->orig = sn->orig;
        if (sn->nattr) {
            n->attr = calloc((size_t)sn->nattr, sizeof *n->attr);
            if (!n->attr)
                goto oom;
            n->nattr = sn->nattr;
            for (int a = 0; a < sn->nattr; a++)
                if (attr_copy(&n->attr[a], &sn->attr[a]))
                    goto oom;
        }
        if (n->op && n->op->init && n->op->init(g, n, err))
            goto fail;
    }
    g->inputs = malloc(sizeof(int) * (size_t)(s->ninputs + 1));
    g->outputs = malloc(sizeof(int) * (size_t)(s->noutputs + 1));
    if (!g->inputs || !g->outputs)
        goto oom;
    memcpy(g->inputs, s->inputs, sizeof(int) * (size_t)s->ninputs);
    memcpy(g->outputs, s->outputs, sizeof(int) * (size_t)s->noutputs);
    g->ninputs = s->ninputs;
    g->noutputs = s->noutputs;
    g->model = qt_onnx_env_ref(s->model);
    *out = g;
    return 0;
oom:
    qt_errf(err, QT_ENOMEM, "out of memory copying the graph");
fail:
    qt_graph_free(g);
    return err->code;
}

/* ---- public summaries ------------------------------------------------- */

void qt_graph_info(const struct qt_graph *g, struct qt_graph_info *info) {
    memset(info, 0, sizeof *info);
    info->ir_version = g->ir_version;
    info->opset = g->opset;
    info->producer = g->producer ? g->producer : "";
    info->ninputs = g->ninputs;
    info->noutputs = g->noutputs;
    info->nnodes = g->nn;
    for (int i = 0; i < g->nv; i++) {
        const struct qt_tensor *t = g->v[i].init;
        if (!t)
            continue;
        info->param_bytes += (int64_t)t->nbytes;
        if (t->dtype == QT_FLOAT)
            info->nparams += qt_tensor_numel(t);
    }
}

static const char *io(const struct qt_graph *g, int v, int *dtype, int *ndim, int64_t *dims) {
    if (dtype)
        *dtype = g->v[v].dtype;
    if (ndim)
        *ndim = g->v[v].ndim;
    if (dims && g->v[v].ndim > 0)
        memcpy(dims, g->v[v].dims, sizeof(int64_t) * (size_t)g->v[v].ndim);
    return g->v[v].name;
}

const char *qt_graph_input(const struct qt_graph *g, int i, int *dtype, int *ndim, int64_t *dims) {
    return i >= 0 && i < g->ninputs ? io(g, g->inputs[i], dtype, ndim, dims) : NULL;
}

int qt_graph_fixed_batch(const struct qt_graph *g) {
    int nd = 0;
    int64_t d[QT_MAXDIM];
    return qt_graph_input(g, 0, NULL, &nd, d) && nd >= 1 && d[0] > 0 ? (int)d[0] : 0;
}

const char *qt_graph_output(const struct qt_graph *g, int i, int *dtype, int *ndim, int64_t *dims) {
    return i >= 0 && i < g->noutputs ? io(g, g->outputs[i], dtype, ndim, dims) : NULL;
}

int qt_graph_nnodes(const struct qt_graph *g) {
    return g->nn;
}

const char *qt_graph_node(const struct qt_graph *g, int i, const char **op_type, int *supported) {
    if (i < 0 || i >= g->nn)
        return NULL;
    if (op_type)
        *op_type = g->n[i].op_type;
    if (supported)
        *supported = g->n[i].op != NULL;
    return g->n[i].name;
}

int qt_graph_check_weights(const struct qt_graph *g, struct qt_err *err) {
    for (int i = 0; i < g->nn; i++) {
        const struct qt_node *n = &g->n[i];
        /* the ops whose constant inputs are weights: weighted ops and
         * BatchNormalization (their quantization facts say so) */
        const struct qt_qfacts *q = n->op ? &n->op->quant : NULL;
        int w = q && (q->role == QT_QR_COMPUTE || (q->flags & QT_QF_BN));
        for (int j = 1; w && j < n->nin; j++) {
            int v = n->in[j];
            const struct qt_tensor *t = v >= 0 && g->v[v].kind == QT_V_INIT ? g->v[v].init : NULL;
            if (!t || t->dtype != QT_FLOAT || !t->data)
                continue;
            const float *p = t->data;
            for (int64_t e = 0, ne = qt_tensor_numel(t); e < ne; e++)
                if (!isfinite(p[e]))
                    return qt_node_err(n, QT_EMODEL, err, "%s '%s' has NaN or infinite values",
                                       q->bias == j ? "bias" : "weight", g->v[v].name);
        }
    }
    return 0;
}

int qt_graph_unsupported(const struct qt_graph *g, struct qt_err *err) {
    int c = 0;
    for (int i = 0; i < g->nn; i++) {
        if (g->n[i].op)
            continue;
        if (!c++) {
            if (g->n[i].domain[0])
                qt_errf(err, QT_EUNSUPPORTED, "unsupported operator '%s' of domain '%s' (node '%s')",
                        g->n[i].op_type, g->n[i].domain, g->n[i].name);
            else
                qt_errf(err, QT_EUNSUPPORTED, "unsupported operator '%s' (node '%s')", g->n[i].op_type,
                        g->n[i].name);
        }
    }
    return c;
}

void *qt_node_priv(struct qt_node *n, size_t size, struct qt_err *err) {
    void *a = calloc(1, size);
    if (!a) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        return NULL;
    }
    n->priv = a;
    if (n->nin < 1 || n->in[0] < 0) {
        qt_node_err(n, QT_EMODEL, err, "needs input data");
        return NULL;
    }
    return a;
}

int qt_node_err(const struct qt_node *n, int code, struct qt_err *err, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qt_errf(err, code, "node '%s' (%s): %s", n->name, n->op_type, msg);
}
