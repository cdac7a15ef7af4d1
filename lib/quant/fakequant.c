/* fakequant.c: FakeQuant (domain ai.qtool), the training graph's
 * quantize-dequantize, with its backward. Not an ONNX operator: qtool adds it
 * to training graphs only and exports QuantizeLinear/DequantizeLinear.
 *
 * Inputs: x, scale s ([1] or [C] along `axis`), zero point z (float, same
 * shape, optional = 0). Attributes: qmin, qmax, axis (-1 = per tensor),
 * pact (0/1), grad_scale g (LSQ's 1/sqrt(numel * qmax), default 1),
 * symmetric, observer ("minmax" or "ema").
 *
 *   q = clamp(round_half_even(x / s) + z, qmin, qmax),  y = (q - z) * s
 *
 * exactly QuantizeLinear then DequantizeLinear (qt_quantize).
 * Since the bounds and z are integers, q = round(v) with v = clamp(x/s + z,
 * qmin, qmax). Gradients, with "inside" = qmin <= x/s + z <= qmax:
 *   STE:  dx = dy if inside, else 0
 *   LSQ:  ds = g * sum dy * (inside ? q - z - x / s : q - z)
 *         (the derivatives of s * (v + c - z) with the rounding offset
 *         c = round(v) - v held constant, as in Esser et al. 2020)
 * PACT (pact = 1): input 1 is the clipping level a (per tensor), the
 * quantizer covers [0, a]: s = a / (qmax - qmin), z = qmin, and
 *   y = FQ(clip(x, 0, a)),  dx = dy if 0 <= x < a,  da = sum dy over x >= a
 * (the derivatives of clip(x, 0, a), the quantizer passed straight through).
 *
 * Observers: while `observe` is set (struct qt_fq, by the training driver),
 * each forward first recomputes s and z (a for PACT) from the tensor: per
 * channel min/max (weights) or a moving average of the per-tensor min/max
 * (activations, constant 0.01 as PyTorch) through qt_qparams_from_range,
 * writing them into the scale / zero-point inputs. */
#include "quant/quant.h"

#include <math.h>
#include <string.h>

#define FQ_BLOCK 16384 /* elements per row of a per-tensor quantizer */

static int fq_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct qt_fq *p = calloc(1, sizeof *p);
    if (!p)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = p;
    if (n->nin < 2 || n->in[0] < 0 || n->in[1] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs x and scale");
    p->qmin = (int)qt_attr_int(n, "qmin", 0, err);
    p->qmax = (int)qt_attr_int(n, "qmax", 255, err);
    p->axis = (int)qt_attr_int(n, "axis", -1, err);
    p->pact = qt_attr_int(n, "pact", 0, err) != 0;
    p->symmetric = qt_attr_int(n, "symmetric", 0, err) != 0;
    p->grad_scale = qt_attr_float(n, "grad_scale", 1.0f, err);
    p->ema = !strcmp(qt_attr_str(n, "observer", "minmax", err), "ema");
    if (err->code)
        return err->code;
    if (p->qmax <= p->qmin)
        return qt_node_err(n, QT_EMODEL, err, "qmin %d must be below qmax %d", p->qmin, p->qmax);
    return 0;
}

static int fq_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_fq *p = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0), *s = qt_in(x, n, 1), *z = qt_in(x, n, 2);
    int64_t C = 1;
    if (t->dtype != QT_FLOAT || s->dtype != QT_FLOAT || (z && z->dtype != QT_FLOAT))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "float32 inputs only");
    if (p->axis >= 0) {
        if (p->axis >= t->ndim || p->pact)
            return qt_node_err(n, QT_EMODEL, err, "axis %d does not fit input (or PACT per channel)", p->axis);
        C = t->dims[p->axis];
    }
    if (qt_tensor_numel(s) != C || (z && qt_tensor_numel(z) != C))
        return qt_node_err(n, QT_EMODEL, err, "scale and zero point need %lld values", (long long)C);
    return qt_set_out(x, n, 0, QT_FLOAT, t->ndim, t->dims, err);
}

struct fq_job {
    const struct qt_fq *p;
    const float *x, *s, *z, *dy;
    float *y, *dx;
    double *part;       /* per row: the row's scale gradient */
    int64_t rows, C, inner, total;
    float alpha;        /* PACT */
};

/* Row r covers elements [r * inner, ...) of channel r % C. */
static void fq_params(const struct fq_job *j, int64_t r, float *s, float *z) {
    if (j->p->pact) {
        *s = j->alpha / (float)(j->p->qmax - j->p->qmin);
        *z = (float)j->p->qmin;
        return;
    }
    int64_t c = r % j->C;
    *s = j->s[c];
    *z = j->z ? j->z[c] : 0;
}

/* The non-PACT row loops are compiled for AVX-512 and AVX2 too: the same
 * IEEE division and round-half-even (nearbyintf) in every clone, so the
 * bytes do not depend on the CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define FQ_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FQ_CLONES
#endif

FQ_CLONES static void fq_row_fwd(const float *restrict x, float *restrict y, int64_t n, float s, float z, float lo,
                                 float hi) {
    for (int64_t i = 0; i < n; i++) {
        float u = nearbyintf(x[i] / s) + z;
        u = u < lo ? lo : u > hi ? hi : u;
        y[i] = (u - z) * s;
    }
}

#define FQ_SEG 256 /* elements per segment of the backward row loop */
typedef float fq_v8f __attribute__((vector_size(32)));
typedef double fq_v8d __attribute__((vector_size(64)));

/* One row's STE input gradient (added into dx) and LSQ scale gradient
 * (returned, before grad_scale): per segment, the factor of dy in ds (e)
 * and dx in a vectorised loop, then dy * e summed in eight double lanes
 * (vector extensions: the same sums on every CPU), lanes added in order. */
FQ_CLONES static double fq_row_bwd(const float *restrict x, const float *restrict dy, float *restrict dx, int64_t n,
                                   float s, float z, float lo, float hi) {
    float e[FQ_SEG];
    fq_v8d acc = {0};
    double tail = 0;
    for (int64_t a = 0; a < n; a += FQ_SEG) {
        int64_t m = n - a < FQ_SEG ? n - a : FQ_SEG;
        const float *xa = x + a, *ga = dy + a;
        for (int64_t i = 0; i < m; i++) {
            float v = xa[i] / s, t = v + z;
            int inside = t >= lo && t <= hi;
            e[i] = inside ? nearbyintf(v) - v : (t < lo ? lo : hi) - z;
            if (dx)
                dx[a + i] += inside ? ga[i] : 0;
        }
        int64_t i = 0;
        for (; i + 8 <= m; i += 8) {
            fq_v8f g8, e8;
            memcpy(&g8, ga + i, sizeof g8);
            memcpy(&e8, e + i, sizeof e8);
            acc += __builtin_convertvector(g8, fq_v8d) * __builtin_convertvector(e8, fq_v8d);
        }
        for (; i < m; i++)
            tail += (double)ga[i] * e[i];
    }
    double sum = 0;
    for (int k = 0; k < 8; k++)
        sum += acc[k];
    return sum + tail;
}

static void fq_fwd_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct fq_job *j = arg;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        float s, z;
        fq_params(j, r, &s, &z);
        int64_t a = r * j->inner, b = a + j->inner < j->total ? a + j->inner : j->total;
        if (!j->p->pact) {
            fq_row_fwd(j->x + a, j->y + a, b - a, s, z, (float)j->p->qmin, (float)j->p->qmax);
            continue;
        }
        for (int64_t i = a; i < b; i++) {
            float v = j->x[i];
            v = v < 0 ? 0 : v > j->alpha ? j->alpha : v;
            float u = nearbyintf(v / s) + z;
            u = u < j->p->qmin ? (float)j->p->qmin : u > j->p->qmax ? (float)j->p->qmax : u;
            j->y[i] = (u - z) * s;
        }
    }
}

static void fq_bwd_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct fq_job *j = arg;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        float s, z;
        fq_params(j, r, &s, &z);
        int64_t a = r * j->inner, b = a + j->inner < j->total ? a + j->inner : j->total;
        double acc = 0;
        if (!j->p->pact) {
            acc = fq_row_bwd(j->x + a, j->dy + a, j->dx ? j->dx + a : NULL, b - a, s, z, (float)j->p->qmin,
                             (float)j->p->qmax);
        } else {
            for (int64_t i = a; i < b; i++) {
                float v = j->x[i], g = j->dy[i];
                if (j->dx)
                    j->dx[i] += v >= 0 && v < j->alpha ? g : 0;
                if (v >= j->alpha)
                    acc += g;
            }
        }
        if (j->part)
            j->part[r] = acc;
    }
}

/* Geometry: per channel rows of the inner size; per tensor fixed blocks. */
static void fq_geometry(const struct qt_fq *p, const struct qt_tensor *t, struct fq_job *j) {
    j->total = qt_tensor_numel(t);
    if (p->axis >= 0) {
        j->C = t->dims[p->axis];
        j->inner = qt_numel(t->ndim - p->axis - 1, t->dims + p->axis + 1);
        j->rows = qt_numel(p->axis + 1, t->dims);
    } else {
        j->C = 1;
        j->inner = FQ_BLOCK;
        j->rows = (j->total + FQ_BLOCK - 1) / FQ_BLOCK;
    }
    if (j->inner == 0)
        j->rows = 0;
}

/* Observer: new scale / zero point (or PACT level) from this batch. */
static void fq_observe(struct qt_exec *x, const struct qt_node *n, struct fq_job *j) {
    struct qt_fq *p = n->priv;
    float *s = qt_in(x, n, 1)->data, *z = n->nin > 2 && n->in[2] >= 0 ? qt_in(x, n, 2)->data : NULL;
    for (int64_t c = 0; c < j->C; c++) {
        float mn = 0, mx = 0;
        for (int64_t r = c; r < j->rows; r += j->C) {
            int64_t a = r * j->inner, b = a + j->inner < j->total ? a + j->inner : j->total;
            for (int64_t i = a; i < b; i++) {
                mn = j->x[i] < mn ? j->x[i] : mn;
                mx = j->x[i] > mx ? j->x[i] : mx;
            }
        }
        if (p->ema && j->C == 1) {
            if (!p->seen) {
                p->ema_min = mn;
                p->ema_max = mx;
                p->seen = 1;
            } else {
                p->ema_min += 0.01f * (mn - p->ema_min);
                p->ema_max += 0.01f * (mx - p->ema_max);
            }
            mn = p->ema_min;
            mx = p->ema_max;
        }
        if (p->pact) {
            s[0] = mx > 0 ? mx : 1;
            continue;
        }
        int32_t zp;
        qt_qparams_from_range(mn, mx, p->qmin, p->qmax, p->symmetric, &s[c], &zp);
        if (z)
            z[c] = (float)zp;
    }
}

static int fq_job_init(struct qt_exec *x, const struct qt_node *n, struct fq_job *j) {
    const struct qt_fq *p = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    *j = (struct fq_job){.p = p, .x = t->data, .s = qt_in(x, n, 1)->data,
                         .z = n->nin > 2 && n->in[2] >= 0 ? qt_in(x, n, 2)->data : NULL,
                         .dy = qt_gout(x, n, 0), .y = qt_out(x, n, 0)->data, .dx = qt_gin(x, n, 0)};
    fq_geometry(p, t, j);
    j->alpha = j->s[0];
    return 0;
}

static int fq_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_fq *p = n->priv;
    struct fq_job j;
    fq_job_init(x, n, &j);
    if (p->observe) {
        fq_observe(x, n, &j);
        fq_job_init(x, n, &j);
    }
    if (p->pact && !(j.alpha > 0))
        return qt_node_err(n, QT_EDATA, err, "PACT clipping level %g is not positive", (double)j.alpha);
    for (int64_t c = 0; !p->pact && c < j.C; c++)
        if (!(j.s[c] > 0))
            return qt_node_err(n, QT_EDATA, err, "scale %g of channel %lld is not positive", (double)j.s[c],
                               (long long)c);
    if (j.rows)
        qt_parallel_for(x, j.rows, fq_fwd_task, &j);
    return 0;
}

static int fq_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_fq *p = n->priv;
    struct fq_job j;
    float *ds = qt_gin(x, n, 1);
    if (qt_gin(x, n, 2))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "the zero point cannot be trained");
    fq_job_init(x, n, &j);
    if (ds) {
        j.part = qt_exec_save(x, n, sizeof(double) * (size_t)(j.rows + 1), err);
        if (!j.part)
            return err->code;
    }
    if (j.rows)
        qt_parallel_for(x, j.rows, fq_bwd_task, &j);
    if (ds) { /* rows in order: the sum does not depend on the threads */
        for (int64_t c = 0; c < j.C; c++) {
            double acc = 0;
            for (int64_t r = c; r < j.rows; r += j.C)
                acc += j.part[r];
            ds[c] += (float)(acc * (p->pact ? 1.0 : p->grad_scale));
        }
    }
    return 0;
}

int qt_fq_add(struct qt_graph *g, const char *name, int x, int scale, int zp, int y, int qmin, int qmax, int axis,
              int pact, int symmetric, float grad_scale, const char *observer, struct qt_err *err) {
    int in[3] = {x, scale, zp};
    int k = qt_graph_add_node(g, name, "FakeQuant", in, zp >= 0 ? 3 : 2, &y, 1, err);
    if (k < 0)
        return -1;
    struct qt_node *n = &g->n[k];
    free(n->domain);
    n->domain = qt_strdup(QT_FQ_DOMAIN);
    if (!n->domain || qt_node_set_int(n, "qmin", qmin) || qt_node_set_int(n, "qmax", qmax) ||
        qt_node_set_int(n, "axis", axis) || qt_node_set_int(n, "pact", pact) ||
        qt_node_set_int(n, "symmetric", symmetric) || qt_node_set_float(n, "grad_scale", grad_scale) ||
        qt_node_set_str(n, "observer", observer)) {
        qt_errf(err, QT_ENOMEM, "out of memory adding node '%s'", name);
        return -1;
    }
    return qt_node_changed(g, k, err) ? -1 : k;
}

const struct qt_op qt_op_fakequant = {
    .name = "FakeQuant",
    .domain = QT_FQ_DOMAIN,
    .init = fq_init,
    .infer = fq_infer,
    .fwd = fq_fwd,
    .bwd = fq_bwd,
};
