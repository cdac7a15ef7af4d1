/* quantizelinear.c: ONNX QuantizeLinear and DequantizeLinear, per tensor or
 * per axis (opset 13+; opset 10 per tensor only).
 *
 * QuantizeLinear:   y = saturate(round_half_even(x / scale) + zero_point)
 *                   y's type is zero_point's (uint8 when absent; int8,
 *                   uint16, int16 too), computed in float32 as ONNX Runtime
 *                   (MLAS) does; NaN maps to the zero point.
 * DequantizeLinear: y = (x - zero_point) * scale for int8, uint8, int16,
 *                   uint16 and int32 x (int32: zero point 0, the bias case).
 * scale and zero_point are scalars (per tensor) or 1-D of the size of dim
 * `axis` (default 1) of x. Blocked quantization (opset 21 block_size) is not
 * supported, nor a DequantizeLinear output_dtype or a QuantizeLinear
 * precision (opset 23) other than float32.
 * No backward: a training plan through this op fails, naming the node. */
#include "engine.h"

#include <math.h>

struct qdq_attr {
    int64_t axis;
    int quant; /* 1 = QuantizeLinear */
};

static int qdq_init_common(struct qt_node *n, int quant, struct qt_err *err) {
    struct qdq_attr *a = calloc(1, sizeof *a);
    if (!a)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = a;
    a->quant = quant;
    if (n->nin < 2 || n->in[0] < 0 || n->in[1] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs x and scale");
    a->axis = qt_attr_int(n, "axis", 1, err);
    if (qt_attr_int(n, "block_size", 0, err) != 0)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "blocked quantization (block_size) is not supported");
    if (quant && qt_attr_find(n, "output_dtype") && (n->nin < 3 || n->in[2] < 0))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "output_dtype without a zero point is not supported");
    /* opset 23: DequantizeLinear's output_dtype, QuantizeLinear's precision
     * (the type the division / multiplication runs in): float32 only */
    int64_t od = qt_attr_int(n, quant ? "precision" : "output_dtype", 0, err);
    if (od != 0 && od != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "%s=%s is not supported (float32 only)",
                           quant ? "precision" : "output_dtype", qt_dtype_name((int)od));
    return err->code;
}
static int q_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    return qdq_init_common(n, 1, err);
}
static int dq_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    return qdq_init_common(n, 0, err);
}

static int qtype(int t) {
    return t == QT_UINT8 || t == QT_INT8 || t == QT_UINT16 || t == QT_INT16;
}

/* Checks scale / zero point against x; *ax = the axis, -1 per tensor. */
static int qdq_params(struct qt_exec *x, const struct qt_node *n, int *ax, struct qt_err *err) {
    const struct qdq_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0), *s = qt_in(x, n, 1), *z = qt_in(x, n, 2);
    if (s->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "scale type %s is not supported", qt_dtype_name(s->dtype));
    if (z && (a->quant ? !qtype(z->dtype) : z->dtype != t->dtype))
        return qt_node_err(n, QT_EMODEL, err, "zero point type %s does not fit", qt_dtype_name(z->dtype));
    if (z && (z->ndim != s->ndim || qt_tensor_numel(z) != qt_tensor_numel(s)))
        return qt_node_err(n, QT_EMODEL, err, "scale and zero point have different shapes");
    *ax = -1;
    if (qt_tensor_numel(s) == 1 && s->ndim <= 1)
        return 0; /* per tensor (a 1-element per-axis scale is the same) */
    if (s->ndim != 1)
        return qt_node_err(n, QT_EMODEL, err, "scale must be a scalar or 1-D");
    if (qt_axis(n, a->axis, t->ndim, ax, err))
        return err->code;
    if (s->dims[0] != t->dims[*ax])
        return qt_node_err(n, QT_EMODEL, err, "scale has %lld values, axis %d of x has %lld", (long long)s->dims[0],
                           *ax, (long long)t->dims[*ax]);
    return 0;
}

static int q_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *z = qt_in(x, n, 2);
    int ax;
    if (t->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(t->dtype));
    if (qdq_params(x, n, &ax, err))
        return err->code;
    return qt_set_out(x, n, 0, z ? z->dtype : QT_UINT8, t->ndim, t->dims, err);
}

static int dq_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int ax;
    if (!qtype(t->dtype) && t->dtype != QT_INT32)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(t->dtype));
    if (qdq_params(x, n, &ax, err))
        return err->code;
    return qt_set_out(x, n, 0, QT_FLOAT, t->ndim, t->dims, err);
}

struct qdq_job {
    const struct qt_tensor *t, *s, *z;
    struct qt_tensor *y;
    int64_t C, inner; /* channels (1 per tensor) and elements per channel row */
    float qmin, qmax;
};

#define Q_LOOP(T)                                                                    \
    do {                                                                             \
        T *restrict Y = j->y->data;                                                  \
        const float *restrict Xr = X;                                                \
        const float lo = j->qmin, hi = j->qmax;                                      \
        for (int64_t i = r * j->inner, e = i + j->inner; i < e; i++) {               \
            float v = nearbyintf(Xr[i] / s) + zp;                                    \
            v = v != v ? zp : v < lo ? lo : v > hi ? hi : v;                         \
            Y[i] = (T)v;                                                             \
        }                                                                            \
    } while (0)

/* compiled for AVX-512 / AVX2 too (the same IEEE division and rounding,
 * vectorised): the first QuantizeLinear of a model reads the whole input */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void q_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct qdq_job *j = arg;
    const float *X = j->t->data, *S = j->s->data;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r % j->C;
        float s = S[c], zp = j->z ? (float)qt_tensor_get(j->z, c) : 0;
        switch (j->y->dtype) {
        case QT_UINT8: Q_LOOP(uint8_t); break;
        case QT_INT8: Q_LOOP(int8_t); break;
        case QT_UINT16: Q_LOOP(uint16_t); break;
        case QT_INT16: Q_LOOP(int16_t); break;
        }
    }
}

#define DQ_LOOP(T)                                                                   \
    do {                                                                             \
        const T *X = j->t->data;                                                     \
        for (int64_t i = r * j->inner, e = i + j->inner; i < e; i++)                 \
            Y[i] = (float)((int64_t)X[i] - zp) * s;                                  \
    } while (0)

static void dq_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct qdq_job *j = arg;
    const float *S = j->s->data;
    float *Y = j->y->data;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r % j->C;
        float s = S[c];
        int32_t zp = j->z ? (int32_t)qt_tensor_geti(j->z, c) : 0;
        switch (j->t->dtype) {
        case QT_UINT8: DQ_LOOP(uint8_t); break;
        case QT_INT8: DQ_LOOP(int8_t); break;
        case QT_UINT16: DQ_LOOP(uint16_t); break;
        case QT_INT16: DQ_LOOP(int16_t); break;
        case QT_INT32: DQ_LOOP(int32_t); break;
        }
    }
}

static int qdq_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qdq_attr *a = n->priv;
    struct qdq_job j = {qt_in(x, n, 0), qt_in(x, n, 1), qt_in(x, n, 2), qt_out(x, n, 0), 1, 1, 0, 0};
    int ax;
    if (qdq_params(x, n, &ax, err))
        return err->code;
    int64_t total = qt_tensor_numel(j.t);
    if (total == 0)
        return 0;
    if (ax >= 0) {
        j.C = j.t->dims[ax];
        j.inner = qt_numel(j.t->ndim - ax - 1, j.t->dims + ax + 1);
    } else {
        j.inner = total;
    }
    switch (j.y->dtype) {
    case QT_UINT8: j.qmin = 0, j.qmax = 255; break;
    case QT_INT8: j.qmin = -128, j.qmax = 127; break;
    case QT_UINT16: j.qmin = 0, j.qmax = 65535; break;
    case QT_INT16: j.qmin = -32768, j.qmax = 32767; break;
    }
    int64_t rows = total / j.inner;
    if (ax < 0 && total >= 65536) { /* per tensor: split into fixed rows of 4096 */
        j.inner = 4096;
        rows = total / 4096;
        qt_parallel_for(x, rows, a->quant ? q_task : dq_task, &j);
        if (total % 4096) {
            struct qdq_job t = j;
            int64_t off = rows * 4096;
            /* the tail as one row starting at off: shift through a row index */
            t.inner = total - off;
            struct qt_tensor tt = *j.t, ty = *j.y;
            tt.data = (unsigned char *)tt.data + (size_t)off * qt_dtype_size(tt.dtype);
            ty.data = (unsigned char *)ty.data + (size_t)off * qt_dtype_size(ty.dtype);
            t.t = &tt;
            t.y = &ty;
            (a->quant ? q_task : dq_task)(&t, 0, 1, 0);
        }
        return 0;
    }
    if (total < 65536)
        (a->quant ? q_task : dq_task)(&j, 0, rows, 0);
    else
        qt_parallel_for(x, rows, a->quant ? q_task : dq_task, &j);
    return 0;
}

const struct qt_op qt_op_quantizelinear = {
    .name = "QuantizeLinear",
    .init = q_init,
    .infer = q_infer,
    .fwd = qdq_fwd,
};
const struct qt_op qt_op_dequantizelinear = {
    .name = "DequantizeLinear",
    .init = dq_init,
    .infer = dq_infer,
    .fwd = qdq_fwd,
};
