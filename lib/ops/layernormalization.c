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
};
