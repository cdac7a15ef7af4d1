/* layernormalization.c: ONNX LayerNormalization (opset 17), float32.
 *
 * Inputs X, Scale, B (optional); attributes axis (default -1), epsilon
 * (default 1e-5), stash_type (1 = float32, the only one). Each row of
 * H = prod(dims[axis:]) elements is normalised on its own:
 *   mean = sum(x)/H, var = sum((x-mean)^2)/H, rstd = 1/sqrt(var + epsilon)
 *   y = (x - mean) * rstd * Scale + B
 * Scale and B hold H values (the normalised dims) or one. Optional outputs
 * Mean and InvStdDev have X's dims with dims[axis:] = 1. Sums run in double.
 * Gradient (training), xh = (x - mean) * rstd, g = dy * Scale:
 *   dx = rstd * (g - mean(g) - xh * mean(g * xh))
 *   dScale[h] = sum over rows of dy * xh, dB[h] = sum over rows of dy
 * (one task per h sums all rows in order: the same bytes at any thread count). */
#include "engine.h"

#include <math.h>
#include <string.h>

struct ln_attr {
    int64_t axis;
    float eps;
};

static int ln_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct ln_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    if (n->nin < 2 || n->in[1] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs X and Scale");
    a->axis = qt_attr_int(n, "axis", -1, err);
    a->eps = qt_attr_float(n, "epsilon", 1e-5f, err);
    int64_t st = qt_attr_int(n, "stash_type", 1, err);
    if (!err->code && st != 1)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "stash_type=%lld is not supported (1, float32, only)",
                           (long long)st);
    return err->code;
}

/* rows x H split of X at the node's axis */
static int ln_split(struct qt_exec *x, const struct qt_node *n, int *ax, int64_t *rows, int64_t *h,
                    struct qt_err *err) {
    const struct ln_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    if (qt_axis(n, a->axis, t->ndim, ax, err))
        return err->code;
    *rows = qt_numel(*ax, t->dims);
    *h = qt_numel(t->ndim - *ax, t->dims + *ax);
    return 0;
}

static int ln_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int ax;
    int64_t rows = 0, h = 0, d[QT_MAXDIM];
    for (int i = 0; i < 3; i++) {
        const struct qt_tensor *p = qt_in(x, n, i);
        if (p && p->dtype != QT_FLOAT)
            return qt_node_err(n, QT_EUNSUPPORTED, err, "input %d type %s is not supported (float32 only)", i,
                               qt_dtype_name(p->dtype));
    }
    if (t->ndim < 1)
        return qt_node_err(n, QT_EMODEL, err, "X must have at least one dimension");
    if (ln_split(x, n, &ax, &rows, &h, err))
        return err->code;
    for (int i = 1; i < 3; i++) {
        const struct qt_tensor *p = qt_in(x, n, i);
        int64_t c = p ? qt_tensor_numel(p) : 1;
        if (p && c != h && c != 1)
            return qt_node_err(n, QT_EUNSUPPORTED, err, "%s has %lld values; only %lld (the normalised dims) or 1 "
                               "are supported", i == 1 ? "Scale" : "B", (long long)c, (long long)h);
    }
    if (qt_set_out(x, n, 0, QT_FLOAT, t->ndim, t->dims, err))
        return err->code;
    for (int i = 0; i < t->ndim; i++)
        d[i] = i < ax ? t->dims[i] : 1;
    for (int o = 1; o < 3; o++)
        if (qt_out(x, n, o) && qt_set_out(x, n, o, QT_FLOAT, t->ndim, d, err))
            return err->code;
    return 0;
}

struct ln_job {
    const float *x, *s, *b, *dy;
    float *y, *mean, *rstd, *dx, *ds, *db;
    int64_t rows, h, ns, nb;
    float eps;
    double *st; /* backward: mean, rstd per row */
    int scalar; /* backward: Scale/B gradients are one value */
};

static void ln_stats(const struct ln_job *j, const float *s, double *mean, double *rstd) {
    double sum = 0, sq = 0;
    for (int64_t k = 0; k < j->h; k++)
        sum += s[k];
    double m = sum / (double)j->h;
    for (int64_t k = 0; k < j->h; k++)
        sq += (s[k] - m) * (s[k] - m);
    *mean = m;
    *rstd = 1.0 / sqrt(sq / (double)j->h + (double)j->eps);
}

static void ln_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct ln_job *j = arg;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        const float *s = j->x + r * j->h;
        float *d = j->y + r * j->h;
        double m, rs;
        ln_stats(j, s, &m, &rs);
        float mf = (float)m, rf = (float)rs;
        for (int64_t k = 0; k < j->h; k++) {
            float v = (s[k] - mf) * rf * j->s[j->ns == 1 ? 0 : k];
            d[k] = j->b ? v + j->b[j->nb == 1 ? 0 : k] : v;
        }
        if (j->mean)
            j->mean[r] = mf;
        if (j->rstd)
            j->rstd[r] = rf;
    }
}

static int ln_job_init(struct qt_exec *x, const struct qt_node *n, struct ln_job *j, struct qt_err *err) {
    const struct ln_attr *a = n->priv;
    int ax;
    *j = (struct ln_job){.x = qt_in(x, n, 0)->data, .s = qt_in(x, n, 1)->data, .y = qt_out(x, n, 0)->data,
                         .eps = a->eps};
    if (ln_split(x, n, &ax, &j->rows, &j->h, err))
        return err->code;
    j->ns = qt_tensor_numel(qt_in(x, n, 1));
    if (qt_in(x, n, 2)) {
        j->b = qt_in(x, n, 2)->data;
        j->nb = qt_tensor_numel(qt_in(x, n, 2));
    }
    return 0;
}

static int ln_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct ln_job j;
    if (ln_job_init(x, n, &j, err))
        return err->code;
    j.mean = qt_out(x, n, 1) ? qt_out(x, n, 1)->data : NULL;
    j.rstd = qt_out(x, n, 2) ? qt_out(x, n, 2)->data : NULL;
    if (j.rows && j.h)
        qt_parallel_for(x, j.rows, ln_task, &j);
    return 0;
}

/* backward: per-row mean and rstd first (st[2r], st[2r+1]) */
static void ln_st_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct ln_job *j = arg;
    (void)tid;
    for (int64_t r = r0; r < r1; r++)
        ln_stats(j, j->x + r * j->h, &j->st[2 * r], &j->st[2 * r + 1]);
}

/* dx, one task per row */
static void ln_dx_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct ln_job *j = arg;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        const float *s = j->x + r * j->h, *dy = j->dy + r * j->h;
        float *dx = j->dx + r * j->h;
        double m = j->st[2 * r], rs = j->st[2 * r + 1], sg = 0, sgx = 0;
        for (int64_t k = 0; k < j->h; k++) {
            double g = (double)dy[k] * j->s[j->ns == 1 ? 0 : k];
            sg += g;
            sgx += g * (s[k] - m) * rs;
        }
        sg /= (double)j->h;
        sgx /= (double)j->h;
        for (int64_t k = 0; k < j->h; k++) {
            double xh = (s[k] - m) * rs, g = (double)dy[k] * j->s[j->ns == 1 ? 0 : k];
            dx[k] += (float)(rs * (g - sg - xh * sgx));
        }
    }
}

/* dScale, dB: one task per normalised element k summing the rows in order;
 * scalar parameters: one task over everything */
static void ln_dp_task(void *arg, int64_t k0, int64_t k1, int tid) {
    const struct ln_job *j = arg;
    (void)tid;
    for (int64_t k = k0; k < k1; k++) {
        int64_t lo = j->scalar ? 0 : k, hi = j->scalar ? j->h : k + 1;
        double ss = 0, sb = 0;
        for (int64_t r = 0; r < j->rows; r++) {
            const float *s = j->x + r * j->h, *dy = j->dy + r * j->h;
            double m = j->st[2 * r], rs = j->st[2 * r + 1];
            for (int64_t c = lo; c < hi; c++) {
                ss += dy[c] * (s[c] - m) * rs;
                sb += dy[c];
            }
        }
        if (j->ds)
            j->ds[j->scalar ? 0 : k] += (float)ss;
        if (j->db)
            j->db[j->scalar ? 0 : k] += (float)sb;
    }
}

static int ln_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct ln_job j;
    if (ln_job_init(x, n, &j, err))
        return err->code;
    j.dy = qt_gout(x, n, 0);
    j.dx = qt_gin(x, n, 0);
    j.ds = qt_gin(x, n, 1);
    j.db = qt_gin(x, n, 2);
    if (!j.dy || !j.rows || !j.h || !(j.dx || j.ds || j.db))
        return 0;
    int sc = (j.ds && j.ns == 1) || (j.db && j.nb == 1), vec = (j.ds && j.ns != 1) || (j.db && j.nb != 1);
    if (sc && vec)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "training a scalar Scale with a per-element B (or the reverse) "
                           "is not supported");
    j.scalar = sc;
    j.st = qt_malloc(sizeof(double) * 2 * (size_t)j.rows, err);
    if (!j.st)
        return err->code;
    qt_parallel_for(x, j.rows, ln_st_task, &j);
    if (j.dx)
        qt_parallel_for(x, j.rows, ln_dx_task, &j);
    if (j.ds || j.db)
        qt_parallel_for(x, j.scalar ? 1 : j.h, ln_dp_task, &j);
    free(j.st);
    return 0;
}

const struct qt_op qt_op_layernormalization = {
    .name = "LayerNormalization",
    .init = ln_init,
    .infer = ln_infer,
    .fwd = ln_fwd,
    .bwd = ln_bwd,
    /* one unit: input and output quantized, Scale and B stay float (as
     * ONNX Runtime's QDQ LayerNormalization; PyTorch FX quantizes the same
     * two tensors around quantized::layer_norm) */
    .quant = {.role = QT_QR_UNARY},
};

extern const struct qt_op qt_op_reducemean, qt_op_sub, qt_op_pow, qt_op_add, qt_op_sqrt, qt_op_div, qt_op_mul;

int qt_qunit_reader(const struct qt_graph *g, int v) {
    int c;
    if (v < 0 || qt_graph_consumers(g, v, &c, 1) != 1)
        return -1;
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] == v)
            return -1;
    return c;
}

extern const struct qt_op qt_op_identity;

const struct qt_tensor *qt_qunit_const(const struct qt_graph *g, int v) {
    for (int hops = 0; v >= 0 && hops < 8; hops++) {
        const struct qt_tensor *t = qt_graph_const(g, v);
        int p = g->v[v].producer;
        if (t || p < 0 || g->n[p].op != &qt_op_identity || g->n[p].nin < 1)
            return t;
        v = g->n[p].in[0];
    }
    return NULL;
}

int qt_qunit_scalar(const struct qt_graph *g, int v, float *val) {
    const struct qt_tensor *t = qt_qunit_const(g, v);
    if (!t || t->dtype != QT_FLOAT || qt_tensor_numel(t) != 1)
        return 0;
    *val = *(const float *)t->data;
    return 1;
}

static int is_node(const struct qt_graph *g, int k, const struct qt_op *op) {
    return k >= 0 && g->n[k].op == op && g->n[k].nout >= 1;
}

/* k is op with one input `a` and the other a constant: the other's slot, else -1. */
static int with_const(const struct qt_graph *g, int k, const struct qt_op *op, int a) {
    if (!is_node(g, k, op) || g->n[k].nin != 2)
        return -1;
    for (int j = 0; j < 2; j++)
        if (g->n[k].in[j] == a && qt_qunit_const(g, g->n[k].in[1 - j]))
            return 1 - j;
    return -1;
}

static void unit_add(struct qt_qunit *u, int k) {
    u->nodes[u->n++] = k;
    u->out = k;
}

/* ReduceMean(x) -> Sub(x, mean) = d -> Pow(d, 2) -> ReduceMean -> Add(eps)
 * -> Sqrt -> Div(d, .) [-> Mul(gamma) [-> Add(beta)]], every inner value
 * read only inside (d by Pow and Div). */
int qt_ln_unit(const struct qt_graph *g, int k, struct qt_qunit *u) {
    const struct qt_node *r1 = &g->n[k];
    float two;
    memset(u, 0, sizeof *u);
    if (!is_node(g, k, &qt_op_reducemean) || r1->nin < 1)
        return 0;
    int x = r1->in[0];
    int sb = qt_qunit_reader(g, r1->out[0]);
    if (!is_node(g, sb, &qt_op_sub) || g->n[sb].nin != 2 || g->n[sb].in[0] != x || g->n[sb].in[1] != r1->out[0])
        return 0;
    int d = g->n[sb].out[0], rd[3];
    if (qt_graph_consumers(g, d, rd, 3) != 2)
        return 0;
    int pw = g->n[rd[0]].op == &qt_op_pow ? rd[0] : rd[1], dv = pw == rd[0] ? rd[1] : rd[0];
    if (!is_node(g, pw, &qt_op_pow) || g->n[pw].nin != 2 || g->n[pw].in[0] != d ||
        !qt_qunit_scalar(g, g->n[pw].in[1], &two) || two != 2.0f)
        return 0;
    int r2 = qt_qunit_reader(g, g->n[pw].out[0]);
    if (!is_node(g, r2, &qt_op_reducemean))
        return 0;
    int ad = qt_qunit_reader(g, g->n[r2].out[0]);
    if (with_const(g, ad, &qt_op_add, g->n[r2].out[0]) < 0)
        return 0;
    int sq = qt_qunit_reader(g, g->n[ad].out[0]);
    if (!is_node(g, sq, &qt_op_sqrt) || qt_qunit_reader(g, g->n[sq].out[0]) != dv || !is_node(g, dv, &qt_op_div) ||
        g->n[dv].nin != 2 || g->n[dv].in[0] != d || g->n[dv].in[1] != g->n[sq].out[0])
        return 0;
    u->in = x;
    int chain[] = {k, sb, pw, r2, ad, sq, dv};
    for (int i = 0; i < 7; i++)
        unit_add(u, chain[i]);
    int m = qt_qunit_reader(g, g->n[dv].out[0]);
    if (with_const(g, m, &qt_op_mul, g->n[dv].out[0]) >= 0) {
        unit_add(u, m);
        int b = qt_qunit_reader(g, g->n[m].out[0]);
        if (with_const(g, b, &qt_op_add, g->n[m].out[0]) >= 0)
            unit_add(u, b);
    }
    return 1;
}
