/* reduce.c: ReduceSum/Mean/Max/Min over any set of axes (see reduce.h). */
#include "ops/reduce.h"
#include "ops/layout.h"

#include <math.h>
#include <string.h>

struct reduce_attr {
    struct qt_axes axes;
    int keepdims, noop;
};

int qt_reduce_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct reduce_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    a->keepdims = qt_attr_int(n, "keepdims", 1, err) != 0;
    a->noop = qt_attr_int(n, "noop_with_empty_axes", 0, err) != 0;
    return qt_attr_ints_max(n, "axes", a->axes.v, QT_MAXDIM, &a->axes.n, err);
}

/* Which axes of t are reduced (mask), the output dims; *identity when
 * noop_with_empty_axes applies. */
static int reduce_plan(struct qt_exec *x, const struct qt_node *n, unsigned char *mask, int *ond, int64_t *od,
                       int *identity, struct qt_err *err) {
    const struct reduce_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t axes[QT_MAXDIM];
    int na;
    if (qt_axes_get(x, n, &a->axes, 0, axes, &na, err))
        return err->code;
    *identity = na == 0 && a->noop;
    memset(mask, na == 0 && !a->noop, QT_MAXDIM);
    for (int i = 0; i < na; i++) {
        int ax;
        if (qt_axis(n, axes[i], t->ndim, &ax, err))
            return err->code;
        mask[ax] = 1;
    }
    *ond = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (!mask[d])
            od[(*ond)++] = t->dims[d];
        else if (a->keepdims)
            od[(*ond)++] = 1;
    }
    return 0;
}

int qt_reduce_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    unsigned char mask[QT_MAXDIM];
    int64_t od[QT_MAXDIM];
    int ond, id;
    if (t->dtype != QT_FLOAT && t->dtype != QT_INT32 && t->dtype != QT_INT64)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported (float32, int32, int64)",
                           qt_dtype_name(t->dtype));
    if (reduce_plan(x, n, mask, &ond, od, &id, err))
        return err->code;
    if (id)
        return qt_set_out(x, n, 0, t->dtype, t->ndim, t->dims, err);
    return qt_set_out(x, n, 0, t->dtype, ond, od, err);
}

struct reduce_job {
    int kind, dtype;
    const void *x;
    void *y;
    int nk, nr;
    int64_t kd[QT_MAXDIM], ks[QT_MAXDIM]; /* kept axes: dims, input strides */
    int64_t rd[QT_MAXDIM], rs[QT_MAXDIM]; /* reduced axes */
    int64_t nout, count, per;
};

union acc {
    double f;
    int64_t i;
};

/* Folds n elements from x + off, st apart, into a. */
static void fold_run(const struct reduce_job *j, int64_t off, int64_t n, int64_t st, union acc *a) {
    if (j->dtype == QT_FLOAT) {
        const float *p = (const float *)j->x + off;
        double v = a->f;
        if (j->kind == QT_REDUCE_SUM || j->kind == QT_REDUCE_MEAN) {
            for (int64_t i = 0; i < n; i++)
                v += p[i * st];
        } else if (j->kind == QT_REDUCE_MAX) {
            for (int64_t i = 0; i < n; i++)
                if (p[i * st] > v)
                    v = p[i * st];
        } else {
            for (int64_t i = 0; i < n; i++)
                if (p[i * st] < v)
                    v = p[i * st];
        }
        a->f = v;
        return;
    }
    const int64_t *p64 = (const int64_t *)j->x + off;
    const int32_t *p32 = (const int32_t *)j->x + off;
    int64_t v = a->i;
    for (int64_t i = 0; i < n; i++) {
        int64_t e = j->dtype == QT_INT64 ? p64[i * st] : p32[i * st];
        if (j->kind == QT_REDUCE_SUM || j->kind == QT_REDUCE_MEAN)
            v = (int64_t)((uint64_t)v + (uint64_t)e);
        else if (j->kind == QT_REDUCE_MAX ? e > v : e < v)
            v = e;
    }
    a->i = v;
}

static void reduce_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct reduce_job *j = arg;
    int inner = j->nr - 1;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t o1 = (t + 1) * j->per < j->nout ? (t + 1) * j->per : j->nout;
        for (int64_t o = t * j->per; o < o1; o++) {
            int64_t base = 0, r = o;
            for (int d = j->nk - 1; d >= 0; d--) {
                base += (r % j->kd[d]) * j->ks[d];
                r /= j->kd[d];
            }
            union acc a;
            if (j->dtype == QT_FLOAT && j->count > 0 && (j->kind == QT_REDUCE_MAX || j->kind == QT_REDUCE_MIN))
                a.f = ((const float *)j->x)[base]; /* start from the first element: a NaN there stays */
            else if (j->dtype == QT_FLOAT)
                a.f = j->kind == QT_REDUCE_MAX ? -INFINITY : j->kind == QT_REDUCE_MIN ? INFINITY : 0;
            else
                a.i = j->kind == QT_REDUCE_MAX ? INT64_MIN : j->kind == QT_REDUCE_MIN ? INT64_MAX : 0;
            if (j->count > 0) {
                /* odometer over the outer reduced axes, runs along the inner one */
                int64_t c[QT_MAXDIM] = {0}, off = base;
                for (;;) {
                    fold_run(j, off, j->rd[inner], j->rs[inner], &a);
                    int d = inner - 1;
                    for (; d >= 0; d--) {
                        off += j->rs[d];
                        if (++c[d] < j->rd[d])
                            break;
                        off -= c[d] * j->rs[d];
                        c[d] = 0;
                    }
                    if (d < 0)
                        break;
                }
            }
            if (j->dtype == QT_FLOAT) {
                double v = j->kind == QT_REDUCE_MEAN ? a.f / (double)j->count : a.f;
                ((float *)j->y)[o] = (float)v;
            } else {
                int64_t v = a.i;
                if (j->kind == QT_REDUCE_MEAN)
                    v = j->count ? v / j->count : 0;
                if (j->dtype == QT_INT64)
                    ((int64_t *)j->y)[o] = v;
                else
                    ((int32_t *)j->y)[o] = (int32_t)(uint32_t)(uint64_t)v;
            }
        }
    }
}

int qt_reduce_run(struct qt_exec *x, const struct qt_node *n, enum qt_reduce_kind kind, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    struct qt_tensor *y = qt_out(x, n, 0);
    unsigned char mask[QT_MAXDIM];
    int64_t od[QT_MAXDIM], st[QT_MAXDIM];
    int ond, id;
    if (reduce_plan(x, n, mask, &ond, od, &id, err))
        return err->code;
    if (id) {
        qt_copy_input(x, n);
        return 0;
    }
    if (qt_tensor_numel(y) == 0)
        return 0;
    struct reduce_job j = {.kind = kind, .dtype = t->dtype, .x = t->data, .y = y->data, .nout = 1, .count = 1};
    if (qt_tensor_numel(t) == 0) { /* empty reduction: every output is the initial value */
        j.nr = j.rd[0] = j.rs[0] = 1;
        j.nout = qt_tensor_numel(y);
        j.count = 0;
        j.per = 32768;
        qt_parallel_for(x, (j.nout + j.per - 1) / j.per, reduce_task, &j);
        return 0;
    }
    qt_strides(t->ndim, t->dims, st);
    /* merge neighbouring axes of the same kind (they are contiguous), drop unit axes */
    int last = -1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->dims[d] == 1)
            continue;
        int red = mask[d];
        if (red) {
            j.count *= t->dims[d];
            if (last == 1) {
                j.rd[j.nr - 1] *= t->dims[d];
                j.rs[j.nr - 1] = st[d];
            } else {
                j.rd[j.nr] = t->dims[d];
                j.rs[j.nr++] = st[d];
            }
        } else {
            j.nout *= t->dims[d];
            if (last == 0) {
                j.kd[j.nk - 1] *= t->dims[d];
                j.ks[j.nk - 1] = st[d];
            } else {
                j.kd[j.nk] = t->dims[d];
                j.ks[j.nk++] = st[d];
            }
        }
        last = red;
    }
    if (j.nr == 0) { /* nothing (or only unit axes) reduced */
        j.rd[0] = 1;
        j.rs[0] = 1;
        j.nr = 1;
    }
    j.per = j.count >= 32768 ? 1 : 32768 / (j.count ? j.count : 1);
    qt_parallel_for(x, (j.nout + j.per - 1) / j.per, reduce_task, &j);
    return 0;
}

int qt_reduce_mean_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    unsigned char mask[QT_MAXDIM];
    int64_t od[QT_MAXDIM], ys[QT_MAXDIM], st[QT_MAXDIM], cnt = 1;
    int ond, identity, k = 0;
    float *dx = qt_gin(x, n, 0);
    if (reduce_plan(x, n, mask, &ond, od, &identity, err))
        return err->code;
    if (!dx || qt_tensor_numel(t) == 0)
        return 0;
    if (t->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "backward is float32 only");
    qt_strides(ond, od, ys);
    for (int d = 0; d < t->ndim; d++) {
        int red = !identity && mask[d];
        st[d] = red ? 0 : ys[k];
        if (red)
            cnt *= t->dims[d];
        if (!red || ond == t->ndim)
            k++;
    }
    qt_strided_gather_add(t->ndim, t->dims, st, 0, qt_gout(x, n, 0), dx, 1.0f / (float)cnt);
    return 0;
}
