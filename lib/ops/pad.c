/* pad.c: ONNX Pad (opsets 7-21), any dtype; modes constant, reflect, edge.
 *
 * y[o] = x[o - pad_begin] where that lies inside x; outside it, constant
 * mode writes the constant value, edge repeats the nearest border element,
 * reflect mirrors about the border (x[-1] = x[1], as numpy). pads are
 * (begin..., end...): the `pads` attribute before opset 11, input 1 from 11
 * (known at plan time). Negative pads crop. The constant is the `value`
 * attribute (before 11) or input 2 (from 11, default 0). From opset 18,
 * input 3 lists the axes the pads apply to. wrap (opset 19) is unsupported.
 * Gradient (training): dx = the part of dy that came from x (summing the
 * mirrored or repeated contributions for reflect and edge). */
#include "ops/layout.h"

#include <string.h>

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE };

struct pad_attr {
    int mode;
    float value; /* `value` attribute (opsets < 11) */
};

static int pad_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct pad_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    const char *mode = qt_attr_str(n, "mode", "constant", err);
    a->value = qt_attr_float(n, "value", 0.f, err);
    if (err->code)
        return err->code;
    if (!strcmp(mode, "constant"))
        a->mode = PAD_CONSTANT;
    else if (!strcmp(mode, "reflect"))
        a->mode = PAD_REFLECT;
    else if (!strcmp(mode, "edge"))
        a->mode = PAD_EDGE;
    else if (!strcmp(mode, "wrap"))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "mode 'wrap' is not supported");
    else
        return qt_node_err(n, QT_EMODEL, err, "unknown mode '%s'", mode);
    if (!qt_attr_find(n, "pads") && (n->nin < 2 || n->in[1] < 0))
        return qt_node_err(n, QT_EMODEL, err, "needs pads");
    return 0;
}

/* Begin and end pads of every axis of the input. */
static int pad_amounts(struct qt_exec *x, const struct qt_node *n, int64_t *pb, int64_t *pe, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    int64_t p[2 * QT_MAXDIM], axes[QT_MAXDIM];
    int np, na = -1, r = t->ndim;
    if (qt_attr_find(n, "pads")) {
        if (qt_attr_ints_max(n, "pads", p, 2 * QT_MAXDIM, &np, err))
            return err->code;
    } else if (qt_const_ints(x, n, 1, "pads", p, 2 * QT_MAXDIM, &np, err)) {
        return err->code;
    }
    if (qt_in(x, n, 3) && qt_const_ints(x, n, 3, "axes", axes, QT_MAXDIM, &na, err))
        return err->code;
    for (int d = 0; d < r; d++)
        pb[d] = pe[d] = 0;
    if (na < 0) {
        if (np != 2 * r)
            return qt_node_err(n, QT_EMODEL, err, "pads has %d values for %d dims", np, r);
        for (int d = 0; d < r; d++) {
            pb[d] = p[d];
            pe[d] = p[d + r];
        }
    } else {
        if (np != 2 * na)
            return qt_node_err(n, QT_EMODEL, err, "pads has %d values for %d axes", np, na);
        for (int i = 0; i < na; i++) {
            int ax;
            if (qt_axis(n, axes[i], r, &ax, err))
                return err->code;
            pb[ax] = p[i];
            pe[ax] = p[i + na];
        }
    }
    for (int d = 0; d < r; d++) {
        const int64_t lim = (int64_t)1 << 40; /* any real axis is smaller: no overflow below */
        if (t->dims[d] > lim || pb[d] < -lim || pb[d] > lim || pe[d] < -lim || pe[d] > lim ||
            t->dims[d] + pb[d] + pe[d] < 0)
            return qt_node_err(n, QT_EMODEL, err, "pads %lld and %lld do not fit axis %d of size %lld",
                               (long long)pb[d], (long long)pe[d], d, (long long)t->dims[d]);
        if (t->dims[d] == 0 && t->dims[d] + pb[d] + pe[d] > 0 && ((const struct pad_attr *)n->priv)->mode)
            return qt_node_err(n, QT_EMODEL, err, "cannot reflect or extend the empty axis %d", d);
    }
    return 0;
}

static int pad_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0), *cv = qt_in(x, n, 2);
    int64_t pb[QT_MAXDIM], pe[QT_MAXDIM], d[QT_MAXDIM];
    if (!qt_dtype_size(t->dtype))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(t->dtype));
    if (cv && (cv->dtype != t->dtype || qt_tensor_numel(cv) > 1))
        return qt_node_err(n, QT_EMODEL, err, "constant_value must be one %s", qt_dtype_name(t->dtype));
    if (pad_amounts(x, n, pb, pe, err))
        return err->code;
    for (int k = 0; k < t->ndim; k++)
        d[k] = t->dims[k] + pb[k] + pe[k];
    return qt_set_out(x, n, 0, t->dtype, t->ndim, d, err);
}

/* Source index of output index o along an axis of size dim, -1 = constant. */
static int64_t src_index(int mode, int64_t o, int64_t pb, int64_t dim) {
    int64_t i = o - pb;
    if (i >= 0 && i < dim)
        return i;
    if (mode == PAD_CONSTANT)
        return -1;
    if (mode == PAD_EDGE || dim == 1)
        return i < 0 ? 0 : dim - 1;
    int64_t period = 2 * (dim - 1); /* reflect: ... 2 1 [0 1 2 ... d-1] d-2 ... */
    i %= period;
    if (i < 0)
        i += period;
    return i < dim ? i : period - i;
}

/* The constant as one element of the data type. */
static void pad_value(const struct qt_node *n, const struct qt_tensor *t, const struct qt_tensor *cv,
                      unsigned char *val) {
    double v = ((const struct pad_attr *)n->priv)->value;
    size_t es = qt_dtype_size(t->dtype);
    memset(val, 0, 16);
    if (cv) {
        if (qt_tensor_numel(cv) == 1)
            memcpy(val, cv->data, es);
        return;
    }
    switch (t->dtype) {
    case QT_FLOAT: { float f = (float)v; memcpy(val, &f, 4); break; }
    case QT_DOUBLE: memcpy(val, &v, 8); break;
    case QT_INT64: { int64_t i = (int64_t)v; memcpy(val, &i, 8); break; }
    case QT_INT32: { int32_t i = (int32_t)v; memcpy(val, &i, 4); break; }
    case QT_INT8: { int8_t i = (int8_t)v; memcpy(val, &i, 1); break; }
    case QT_UINT8: case QT_BOOL: { uint8_t i = (uint8_t)v; memcpy(val, &i, 1); break; }
    default: break; /* other types pad with zeros (the attribute is float32 only) */
    }
}

struct pad_job {
    const struct qt_tensor *t;
    unsigned char *y;
    int nd;
    int64_t od[QT_MAXDIM], is[QT_MAXDIM];
    int64_t *map[QT_MAXDIM]; /* per output axis: source index or -1 */
    size_t es;
    unsigned char val[16];
    int64_t rows, per;
};

static void pad_row(const struct pad_job *j, unsigned char *dst, const unsigned char *src) {
    int last = j->nd - 1;
    int64_t w = j->od[last];
    const int64_t *m = j->map[last];
    size_t es = j->es;
    for (int64_t o = 0; o < w; o++) {
        const unsigned char *s = src && m[o] >= 0 ? src + (size_t)m[o] * es : j->val;
        switch (es) {
        case 1: dst[o] = *s; break;
        case 2: memcpy(dst + 2 * o, s, 2); break;
        case 4: memcpy(dst + 4 * o, s, 4); break;
        case 8: memcpy(dst + 8 * o, s, 8); break;
        default: memcpy(dst + (size_t)o * es, s, es);
        }
    }
}

static void pad_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct pad_job *j = arg;
    int last = j->nd - 1;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t r1 = (t + 1) * j->per < j->rows ? (t + 1) * j->per : j->rows;
        for (int64_t r = t * j->per; r < r1; r++) {
            int64_t rem = r, off = 0;
            int inside = 1;
            for (int d = last - 1; d >= 0; d--) {
                int64_t m = j->map[d][rem % j->od[d]];
                rem /= j->od[d];
                if (m < 0)
                    inside = 0;
                else
                    off += m * j->is[d];
            }
            const unsigned char *src = inside ? (const unsigned char *)j->t->data + (size_t)off * j->es : NULL;
            pad_row(j, j->y + (size_t)(r * j->od[last]) * j->es, src);
        }
    }
}

static int pad_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct pad_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    struct qt_tensor *y = qt_out(x, n, 0);
    int64_t pb[QT_MAXDIM], pe[QT_MAXDIM], tot = 0;
    if (pad_amounts(x, n, pb, pe, err))
        return err->code;
    if (qt_tensor_numel(y) == 0)
        return 0;
    if (t->ndim == 0) { /* nothing to pad */
        memcpy(y->data, t->data, t->nbytes);
        return 0;
    }
    struct pad_job j = {.t = t, .y = y->data, .nd = t->ndim, .es = qt_dtype_size(t->dtype), .per = 1};
    pad_value(n, t, qt_in(x, n, 2), j.val);
    if (qt_tensor_numel(t) == 0) { /* constant mode (pad_amounts checked): all padding */
        for (int64_t i = 0, ne = qt_tensor_numel(y); i < ne; i++)
            memcpy((unsigned char *)y->data + (size_t)i * j.es, j.val, j.es);
        return 0;
    }
    qt_strides(t->ndim, t->dims, j.is);
    for (int d = 0; d < t->ndim; d++) {
        j.od[d] = y->dims[d];
        tot += y->dims[d];
    }
    int64_t *maps = qt_malloc(sizeof(int64_t) * (size_t)tot, err);
    if (!maps)
        return err->code;
    tot = 0;
    for (int d = 0; d < t->ndim; d++) {
        j.map[d] = maps + tot;
        for (int64_t o = 0; o < y->dims[d]; o++)
            j.map[d][o] = src_index(a->mode, o, pb[d], t->dims[d]);
        tot += y->dims[d];
    }
    int64_t w = y->dims[t->ndim - 1];
    j.rows = qt_tensor_numel(y) / w;
    if (w < 16384)
        j.per = 16384 / w;
    qt_parallel_for(x, (j.rows + j.per - 1) / j.per, pad_task, &j);
    free(maps);
    return 0;
}

/* dx[src(o)] += dy[o] for every output position o that reads the input
 * (edge and reflect read some positions several times); one pass in order. */
static int pad_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct pad_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0), *y = qt_out(x, n, 0);
    const float *dy = qt_gout(x, n, 0);
    float *dx = qt_gin(x, n, 0);
    int64_t pb[QT_MAXDIM], pe[QT_MAXDIM], is[QT_MAXDIM], idx[QT_MAXDIM] = {0};
    if (pad_amounts(x, n, pb, pe, err))
        return err->code;
    if (!dx || qt_tensor_numel(t) == 0 || qt_tensor_numel(y) == 0)
        return 0;
    qt_strides(t->ndim, t->dims, is);
    for (int64_t o = 0, total = qt_tensor_numel(y); o < total; o++) {
        int64_t p = 0;
        for (int d = 0; d < t->ndim && p >= 0; d++) {
            int64_t s = src_index(a->mode, idx[d], pb[d], t->dims[d]);
            p = s < 0 ? -1 : p + s * is[d];
        }
        if (p >= 0)
            dx[p] += dy[o];
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < y->dims[d])
                break;
            idx[d] = 0;
        }
    }
    return 0;
}

const struct qt_op qt_op_pad = {
    .name = "Pad",
    .init = pad_init,
    .infer = pad_infer,
    .fwd = pad_fwd,
    .bwd = pad_bwd,
};
