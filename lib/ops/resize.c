/* resize.c: ONNX Resize (opsets 10-19) and the kernels it shares with
 * Upsample (see resize.h for the coordinate rules).
 *
 * Inputs: X, then scales (opset 10) or roi, scales, sizes (from 11; from 13
 * roi and scales may be omitted). scales or sizes must be known at plan
 * time; with sizes the scale of an axis is size / input as a float. From
 * opset 18 the `axes` attribute says which axes scales/sizes list, and
 * keep_aspect_ratio_policy not_larger/not_smaller rescales sizes by the
 * smallest/largest of their scales. roi is ignored: tf_crop_and_resize
 * and antialias are unsupported; cubic mode (cubic_coeff_a, exclude_outside)
 * resizes the last two axes like linear. Resize-10 uses asymmetric
 * coordinates and "simple" nearest rounding, like Upsample.
 * Gradient (training): dx accumulates dy with the interpolation weights
 * (qt_resize_bwd). */
#include "ops/layout.h"
#include "ops/resize.h"

#include <math.h>
#include <string.h>

/* ---- shared kernels ---------------------------------------------------- */

int qt_resize_check(const struct qt_node *n, const struct qt_resize *r, const struct qt_tensor *x,
                    const float *scales, struct qt_err *err) {
    if (x->ndim < 1)
        return qt_node_err(n, QT_EMODEL, err, "input is a scalar");
    for (int d = 0; d < x->ndim; d++)
        if (!(scales[d] > 0) || isinf(scales[d]))
            return qt_node_err(n, QT_EMODEL, err, "scale %g of axis %d is not positive", (double)scales[d], d);
    if (r->mode != QT_RESIZE_NEAREST) {
        const char *m = r->mode == QT_RESIZE_LINEAR ? "linear" : "cubic";
        if (x->dtype != QT_FLOAT)
            return qt_node_err(n, QT_EUNSUPPORTED, err, "%s mode needs float32 input (got %s)", m,
                               qt_dtype_name(x->dtype));
        if (!(x->ndim == 2 || (x->ndim == 4 && scales[0] == 1 && scales[1] == 1)))
            return qt_node_err(n, QT_EUNSUPPORTED, err,
                               "%s mode resizes only the last two axes of a 2-D or 4-D (NCHW) input", m);
    }
    return 0;
}

int qt_resize_out_dims(const struct qt_node *n, const struct qt_tensor *x, const float *scales, int64_t *dims,
                       struct qt_err *err) {
    for (int d = 0; d < x->ndim; d++) {
        float v = scales[d] * (float)x->dims[d];
        if (!(v >= 0) || v >= (float)((int64_t)1 << 40))
            return qt_node_err(n, QT_EMODEL, err, "scale %g makes axis %d too large", (double)scales[d], d);
        dims[d] = (int64_t)v;
    }
    return 0;
}

static float src_coord(int coord, float o, float s, float lr, float lo) {
    switch (coord) {
    case QT_COORD_ASYMMETRIC: return o / s;
    case QT_COORD_PYTORCH_HALF_PIXEL: return lr > 1 ? (o + 0.5f) / s - 0.5f : 0.0f;
    case QT_COORD_TF_HALF_PIXEL_NN: return (o + 0.5f) / s;
    case QT_COORD_ALIGN_CORNERS: return lr == 1 ? 0.0f : o * (lo - 1) / (lr - 1);
    case QT_COORD_HALF_PIXEL_SYMMETRIC: {
        float adj = lr / (s * lo), off = lo / 2 * (1 - adj);
        return (float)(off + ((double)o + 0.5) / s - 0.5);
    }
    default: return (o + 0.5f) / s - 0.5f;
    }
}

static int64_t round_coord(int mode, float v, int down) {
    switch (mode) {
    case QT_ROUND_SIMPLE: return down ? (int64_t)ceilf(v) : (int64_t)v;
    case QT_ROUND_PREFER_CEIL: return (int64_t)roundf(v);
    case QT_ROUND_FLOOR: return (int64_t)floorf(v);
    case QT_ROUND_CEIL: return (int64_t)ceilf(v);
    default: /* round_prefer_floor */
        if (v == (float)(int64_t)v + 0.5f)
            return (int64_t)floorf(v);
        return (int64_t)roundf(v);
    }
}

struct nearest_job {
    const unsigned char *x;
    unsigned char *y;
    int nd;
    size_t es;
    int64_t od[QT_MAXDIM], is[QT_MAXDIM];
    int64_t *map[QT_MAXDIM];
    int64_t rows, per;
};

static void nearest_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct nearest_job *j = arg;
    int last = j->nd - 1;
    int64_t w = j->od[last];
    const int64_t *m = j->map[last];
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t r1 = (t + 1) * j->per < j->rows ? (t + 1) * j->per : j->rows;
        for (int64_t r = t * j->per; r < r1; r++) {
            int64_t rem = r, off = 0;
            for (int d = last - 1; d >= 0; d--) {
                off += j->map[d][rem % j->od[d]] * j->is[d];
                rem /= j->od[d];
            }
            unsigned char *dst = j->y + (size_t)(r * w) * j->es;
            const unsigned char *src = j->x + (size_t)off * j->es;
            switch (j->es) {
            case 4:
                for (int64_t o = 0; o < w; o++)
                    memcpy(dst + 4 * o, src + 4 * m[o], 4);
                break;
            case 8:
                for (int64_t o = 0; o < w; o++)
                    memcpy(dst + 8 * o, src + 8 * m[o], 8);
                break;
            case 1:
                for (int64_t o = 0; o < w; o++)
                    dst[o] = src[m[o]];
                break;
            default:
                for (int64_t o = 0; o < w; o++)
                    memcpy(dst + (size_t)o * j->es, src + (size_t)m[o] * j->es, j->es);
            }
        }
    }
}

/* Source index of each output index along one axis (nearest mode). */
static void nearest_map(const struct qt_resize *r, float s, int64_t in, int64_t out, int nd, int64_t *map) {
    for (int64_t o = 0; o < out; o++) {
        if (s == 1.0f && nd > 1 && o < in) { /* as ONNX Runtime: no transform at scale 1 */
            map[o] = o;
            continue;
        }
        float v = src_coord(r->coord, (float)o, s, (float)out, (float)in);
        if (!(v >= -2.0f)) /* also NaN; the index is clamped below anyway */
            v = -2.0f;
        if (v > (float)in + 1)
            v = (float)in + 1;
        int64_t i = round_coord(r->round, v, s < 1);
        map[o] = i < 0 ? 0 : i >= in ? in - 1 : i;
    }
}

static int resize_nearest(struct qt_exec *ex, const struct qt_resize *r, const float *scales,
                          const struct qt_tensor *x, struct qt_tensor *y, struct qt_err *err) {
    struct nearest_job j = {.x = x->data, .y = y->data, .nd = x->ndim, .es = qt_dtype_size(x->dtype), .per = 1};
    int64_t tot = 0;
    for (int d = 0; d < x->ndim; d++)
        tot += y->dims[d];
    int64_t *maps = qt_malloc(sizeof(int64_t) * (size_t)tot, err);
    if (!maps)
        return err->code;
    qt_strides(x->ndim, x->dims, j.is);
    tot = 0;
    for (int d = 0; d < x->ndim; d++) {
        int64_t in = x->dims[d], out = y->dims[d];
        j.od[d] = out;
        j.map[d] = maps + tot;
        tot += out;
        nearest_map(r, scales[d], in, out, x->ndim, j.map[d]);
    }
    int64_t w = y->dims[x->ndim - 1];
    j.rows = qt_tensor_numel(y) / w;
    if (w < 16384)
        j.per = 16384 / w;
    qt_parallel_for(ex, (j.rows + j.per - 1) / j.per, nearest_task, &j);
    free(maps);
    return 0;
}

struct bilinear_job {
    const float *x;
    float *y;
    int64_t ih, iw, oh, ow;
    const int64_t *y1, *y2, *x1, *x2;
    const float *dy1, *dy2, *dx1, *dx2;
};

static void bilinear_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct bilinear_job *j = arg;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        const float *xp = j->x + t * j->ih * j->iw;
        float *yp = j->y + t * j->oh * j->ow;
        for (int64_t oy = 0; oy < j->oh; oy++) {
            const float *r1 = xp + j->y1[oy] * j->iw, *r2 = xp + j->y2[oy] * j->iw;
            float dy1 = j->dy1[oy], dy2 = j->dy2[oy];
            for (int64_t ox = 0; ox < j->ow; ox++) {
                float dx1 = j->dx1[ox], dx2 = j->dx2[ox];
                yp[oy * j->ow + ox] = dx2 * dy2 * r1[j->x1[ox]] + dx1 * dy2 * r1[j->x2[ox]] +
                                      dx2 * dy1 * r2[j->x1[ox]] + dx1 * dy1 * r2[j->x2[ox]];
            }
        }
    }
}

/* Source taps and weights along one axis. */
static void linear_axis(int coord, float s, int64_t in, int64_t out, int64_t *i1, int64_t *i2, float *d1,
                        float *d2) {
    for (int64_t o = 0; o < out; o++) {
        float v = s == 1.0f ? (float)o : src_coord(coord, (float)o, s, (float)out, (float)in);
        v = fmaxf(0.0f, fminf(v, (float)(in - 1)));
        int64_t a = (int64_t)v < in - 1 ? (int64_t)v : in - 1;
        int64_t b = a + 1 < in - 1 ? a + 1 : in - 1;
        i1[o] = a;
        i2[o] = b;
        d1[o] = fabsf(v - (float)a);
        d2[o] = fabsf(v - (float)b);
        if (a == b)
            d1[o] = d2[o] = 0.5f;
    }
}

static int resize_bilinear(struct qt_exec *ex, const struct qt_resize *r, const float *scales,
                           const struct qt_tensor *x, struct qt_tensor *y, struct qt_err *err) {
    int nd = x->ndim;
    struct bilinear_job j = {.x = x->data, .y = y->data, .ih = x->dims[nd - 2], .iw = x->dims[nd - 1],
                             .oh = y->dims[nd - 2], .ow = y->dims[nd - 1]};
    size_t cnt = (size_t)(j.oh + j.ow);
    if (j.ih == 0 || j.iw == 0)
        return 0;
    int64_t *idx = qt_malloc(2 * cnt * sizeof *idx, err);
    float *wts = qt_malloc(2 * cnt * sizeof *wts, err);
    if (!idx || !wts) {
        free(idx);
        free(wts);
        return err->code;
    }
    j.y1 = idx, j.y2 = idx + j.oh, j.x1 = idx + 2 * j.oh, j.x2 = idx + 2 * j.oh + j.ow;
    j.dy1 = wts, j.dy2 = wts + j.oh, j.dx1 = wts + 2 * j.oh, j.dx2 = wts + 2 * j.oh + j.ow;
    linear_axis(r->coord, scales[nd - 2], j.ih, j.oh, idx, idx + j.oh, wts, wts + j.oh);
    linear_axis(r->coord, scales[nd - 1], j.iw, j.ow, idx + 2 * j.oh, idx + 2 * j.oh + j.ow, wts + 2 * j.oh,
                wts + 2 * j.oh + j.ow);
    qt_parallel_for(ex, nd == 4 ? x->dims[0] * x->dims[1] : 1, bilinear_task, &j);
    free(idx);
    free(wts);
    return 0;
}

/* Bicubic: 4 taps and weights per output index along each axis. */
static void cubic_axis(const struct qt_resize *r, float s, int64_t in, int64_t out, int64_t *idx, float *w) {
    float A = r->cubic_a;
    for (int64_t o = 0; o < out; o++) {
        float c = s == 1.0f ? (float)o : src_coord(r->coord, (float)o, s, (float)out, (float)in);
        float f = floorf(c), t = c - f, sum = 0;
        float cw[4] = {((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A,
                       ((A + 2) * t - (A + 3)) * t * t + 1, ((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1,
                       ((A * (2 - t) - 5 * A) * (2 - t) + 8 * A) * (2 - t) - 4 * A};
        for (int k = 0; k < 4; k++) {
            int64_t i = (int64_t)f - 1 + k;
            if (r->exclude_outside && (i < 0 || i >= in))
                cw[k] = 0;
            sum += cw[k];
            idx[o * 4 + k] = i < 0 ? 0 : i >= in ? in - 1 : i;
        }
        for (int k = 0; k < 4; k++)
            w[o * 4 + k] = r->exclude_outside && sum != 0 ? cw[k] / sum : cw[k];
    }
}

struct bicubic_job {
    const float *x;
    float *y;
    int64_t ih, iw, oh, ow;
    const int64_t *iy, *ix;
    const float *wy, *wx;
};

static void bicubic_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct bicubic_job *j = arg;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        const float *xp = j->x + t * j->ih * j->iw;
        float *yp = j->y + t * j->oh * j->ow;
        for (int64_t oy = 0; oy < j->oh; oy++)
            for (int64_t ox = 0; ox < j->ow; ox++) {
                const int64_t *cx = j->ix + ox * 4;
                const float *wx = j->wx + ox * 4;
                float acc = 0;
                for (int k = 0; k < 4; k++) {
                    const float *row = xp + j->iy[oy * 4 + k] * j->iw;
                    float v = wx[0] * row[cx[0]] + wx[1] * row[cx[1]] + wx[2] * row[cx[2]] + wx[3] * row[cx[3]];
                    acc += j->wy[oy * 4 + k] * v;
                }
                yp[oy * j->ow + ox] = acc;
            }
    }
}

static int resize_bicubic(struct qt_exec *ex, const struct qt_resize *r, const float *scales,
                          const struct qt_tensor *x, struct qt_tensor *y, struct qt_err *err) {
    int nd = x->ndim;
    struct bicubic_job j = {.x = x->data, .y = y->data, .ih = x->dims[nd - 2], .iw = x->dims[nd - 1],
                            .oh = y->dims[nd - 2], .ow = y->dims[nd - 1]};
    size_t cnt = (size_t)(j.oh + j.ow) * 4;
    if (j.ih == 0 || j.iw == 0)
        return 0;
    int64_t *idx = qt_malloc(cnt * sizeof *idx, err);
    float *wts = qt_malloc(cnt * sizeof *wts, err);
    if (!idx || !wts) {
        free(idx);
        free(wts);
        return err->code;
    }
    j.iy = idx, j.ix = idx + 4 * j.oh, j.wy = wts, j.wx = wts + 4 * j.oh;
    cubic_axis(r, scales[nd - 2], j.ih, j.oh, idx, wts);
    cubic_axis(r, scales[nd - 1], j.iw, j.ow, idx + 4 * j.oh, wts + 4 * j.oh);
    qt_parallel_for(ex, nd == 4 ? x->dims[0] * x->dims[1] : 1, bicubic_task, &j);
    free(idx);
    free(wts);
    return 0;
}

int qt_resize_run(struct qt_exec *ex, const struct qt_node *n, const struct qt_resize *r, const float *scales,
                  const struct qt_tensor *x, struct qt_tensor *y, struct qt_err *err) {
    if (qt_resize_check(n, r, x, scales, err))
        return err->code;
    if (qt_tensor_numel(y) == 0)
        return 0;
    if (qt_tensor_numel(x) == 0)
        return qt_node_err(n, QT_EMODEL, err, "cannot resize an empty input to a non-empty output");
    if (r->mode == QT_RESIZE_LINEAR)
        return resize_bilinear(ex, r, scales, x, y, err);
    if (r->mode == QT_RESIZE_CUBIC)
        return resize_bicubic(ex, r, scales, x, y, err);
    return resize_nearest(ex, r, scales, x, y, err);
}

/* ---- backward ----------------------------------------------------------
 * dx accumulates dy through the forward's taps and weights. Linear and cubic:
 * one task per (n, c) plane, its outputs in order; nearest: one pass over
 * the output in order (any rank). */
struct taps_job {
    const float *dy;
    float *dx;
    int64_t ih, iw, oh, ow;
    int nt; /* taps per axis: 2 (linear) or 4 (cubic) */
    const int64_t *iy, *ix;
    const float *wy, *wx;
};

static void taps_bwd_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct taps_job *j = arg;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        float *dp = j->dx + t * j->ih * j->iw;
        const float *gp = j->dy + t * j->oh * j->ow;
        for (int64_t oy = 0; oy < j->oh; oy++)
            for (int64_t ox = 0; ox < j->ow; ox++) {
                float g = gp[oy * j->ow + ox];
                for (int ky = 0; ky < j->nt; ky++) {
                    float *row = dp + j->iy[oy * j->nt + ky] * j->iw;
                    float gy = g * j->wy[oy * j->nt + ky];
                    for (int kx = 0; kx < j->nt; kx++)
                        row[j->ix[ox * j->nt + kx]] += gy * j->wx[ox * j->nt + kx];
                }
            }
    }
}

int qt_resize_bwd(struct qt_exec *ex, const struct qt_node *n, const struct qt_resize *r, const float *scales,
                  const struct qt_tensor *x, const struct qt_tensor *y, const float *dy, float *dx,
                  struct qt_err *err) {
    int nd = x->ndim;
    if (!dx || !dy || qt_tensor_numel(y) == 0 || qt_tensor_numel(x) == 0)
        return 0;
    if (x->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "backward is float32 only");
    if (r->mode == QT_RESIZE_NEAREST) {
        int64_t tot = 0, is[QT_MAXDIM], idx[QT_MAXDIM] = {0};
        for (int d = 0; d < nd; d++)
            tot += y->dims[d];
        int64_t *maps = qt_malloc(sizeof(int64_t) * (size_t)tot, err), *map[QT_MAXDIM];
        if (!maps)
            return err->code;
        qt_strides(nd, x->dims, is);
        tot = 0;
        for (int d = 0; d < nd; d++) {
            map[d] = maps + tot;
            nearest_map(r, scales[d], x->dims[d], y->dims[d], nd, map[d]);
            tot += y->dims[d];
        }
        for (int64_t o = 0, cnt = qt_tensor_numel(y); o < cnt; o++) {
            int64_t off = 0;
            for (int d = 0; d < nd; d++)
                off += map[d][idx[d]] * is[d];
            dx[off] += dy[o];
            for (int d = nd - 1; d >= 0 && ++idx[d] == y->dims[d]; d--)
                idx[d] = 0;
        }
        free(maps);
        return 0;
    }
    struct taps_job j = {.dy = dy, .dx = dx, .ih = x->dims[nd - 2], .iw = x->dims[nd - 1], .oh = y->dims[nd - 2],
                         .ow = y->dims[nd - 1], .nt = r->mode == QT_RESIZE_CUBIC ? 4 : 2};
    size_t cnt = (size_t)(j.oh + j.ow) * (size_t)j.nt;
    int64_t *idx = qt_malloc(cnt * sizeof *idx, err);
    float *wts = qt_malloc(cnt * sizeof *wts, err);
    if (!idx || !wts) {
        free(idx);
        free(wts);
        return err->code;
    }
    j.iy = idx, j.ix = idx + j.nt * j.oh, j.wy = wts, j.wx = wts + j.nt * j.oh;
    if (j.nt == 4) {
        cubic_axis(r, scales[nd - 2], j.ih, j.oh, idx, wts);
        cubic_axis(r, scales[nd - 1], j.iw, j.ow, idx + 4 * j.oh, wts + 4 * j.oh);
    } else {
        /* linear_axis gives (i1, i2, d1, d2): weight of i1 is d2, of i2 is d1 */
        int64_t *t1 = qt_malloc(4 * (size_t)(j.oh + j.ow) * sizeof *t1, err);
        float *w1 = qt_malloc(4 * (size_t)(j.oh + j.ow) * sizeof *w1, err);
        if (!t1 || !w1) {
            free(t1), free(w1), free(idx), free(wts);
            return err->code;
        }
        int64_t len[2] = {j.oh, j.ow}, in[2] = {j.ih, j.iw}, base[2] = {0, 2 * j.oh};
        for (int a = 0; a < 2; a++) {
            int64_t m = len[a];
            linear_axis(r->coord, scales[nd - 2 + a], in[a], m, t1, t1 + m, w1, w1 + m);
            for (int64_t o = 0; o < m; o++) {
                idx[base[a] + 2 * o] = t1[o], idx[base[a] + 2 * o + 1] = t1[m + o];
                wts[base[a] + 2 * o] = w1[m + o], wts[base[a] + 2 * o + 1] = w1[o];
            }
        }
        free(t1);
        free(w1);
    }
    qt_parallel_for(ex, nd == 4 ? x->dims[0] * x->dims[1] : 1, taps_bwd_task, &j);
    free(idx);
    free(wts);
    return 0;
}

/* ---- the Resize operator ---------------------------------------------- */

enum { POLICY_STRETCH, POLICY_NOT_LARGER, POLICY_NOT_SMALLER };

struct resize_attr {
    struct qt_resize r;
    int opset, policy;
    int naxes; /* -1: no axes attribute */
    int64_t axes[QT_MAXDIM];
};

static int resize_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    struct resize_attr *a = calloc(1, sizeof *a);
    if (!a)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = a;
    a->opset = g ? g->opset : 19;
    if (n->nin < 2 || n->in[0] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs input X and scales or sizes");
    const char *mode = qt_attr_str(n, "mode", "nearest", err);
    const char *ct = qt_attr_str(n, "coordinate_transformation_mode", "half_pixel", err);
    const char *nm = qt_attr_str(n, "nearest_mode", "round_prefer_floor", err);
    const char *pol = qt_attr_str(n, "keep_aspect_ratio_policy", "stretch", err);
    int64_t aa = qt_attr_int(n, "antialias", 0, err), eo = qt_attr_int(n, "exclude_outside", 0, err);
    if (err->code || qt_attr_ints_max(n, "axes", a->axes, QT_MAXDIM, &a->naxes, err))
        return err->code;
    if (!strcmp(mode, "nearest"))
        a->r.mode = QT_RESIZE_NEAREST;
    else if (!strcmp(mode, "linear"))
        a->r.mode = QT_RESIZE_LINEAR;
    else if (!strcmp(mode, "cubic") && a->opset >= 11)
        a->r.mode = QT_RESIZE_CUBIC;
    else
        return qt_node_err(n, QT_EMODEL, err, "unknown mode '%s'", mode);
    a->r.cubic_a = qt_attr_float(n, "cubic_coeff_a", -0.75f, err);
    a->r.exclude_outside = (int)eo;
    if (aa)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "antialias is not supported");
    if (eo && a->r.mode != QT_RESIZE_CUBIC)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "exclude_outside is supported in cubic mode only");
    if (a->opset < 11) {
        a->r.coord = QT_COORD_ASYMMETRIC;
        a->r.round = QT_ROUND_SIMPLE;
    } else {
        static const struct { const char *s; int v; } cts[] = {
            {"half_pixel", QT_COORD_HALF_PIXEL},
            {"pytorch_half_pixel", QT_COORD_PYTORCH_HALF_PIXEL},
            {"align_corners", QT_COORD_ALIGN_CORNERS},
            {"asymmetric", QT_COORD_ASYMMETRIC},
            {"tf_half_pixel_for_nn", QT_COORD_TF_HALF_PIXEL_NN},
            {"tf_half_pixel_for_nearest", QT_COORD_TF_HALF_PIXEL_NN},
            {"half_pixel_symmetric", QT_COORD_HALF_PIXEL_SYMMETRIC},
        };
        static const struct { const char *s; int v; } nms[] = {
            {"round_prefer_floor", QT_ROUND_PREFER_FLOOR},
            {"round_prefer_ceil", QT_ROUND_PREFER_CEIL},
            {"floor", QT_ROUND_FLOOR},
            {"ceil", QT_ROUND_CEIL},
        };
        size_t i;
        if (!strcmp(ct, "tf_crop_and_resize"))
            return qt_node_err(n, QT_EUNSUPPORTED, err, "coordinate_transformation_mode 'tf_crop_and_resize' is "
                                                        "not supported");
        for (i = 0; i < sizeof cts / sizeof cts[0] && strcmp(ct, cts[i].s); i++)
            ;
        if (i == sizeof cts / sizeof cts[0])
            return qt_node_err(n, QT_EMODEL, err, "unknown coordinate_transformation_mode '%s'", ct);
        a->r.coord = cts[i].v;
        for (i = 0; i < sizeof nms / sizeof nms[0] && strcmp(nm, nms[i].s); i++)
            ;
        if (i == sizeof nms / sizeof nms[0])
            return qt_node_err(n, QT_EMODEL, err, "unknown nearest_mode '%s'", nm);
        a->r.round = nms[i].v;
    }
    if (!strcmp(pol, "stretch"))
        a->policy = POLICY_STRETCH;
    else if (!strcmp(pol, "not_larger"))
        a->policy = POLICY_NOT_LARGER;
    else if (!strcmp(pol, "not_smaller"))
        a->policy = POLICY_NOT_SMALLER;
    else
        return qt_node_err(n, QT_EMODEL, err, "unknown keep_aspect_ratio_policy '%s'", pol);
    return 0;
}

/* Constant float input i (at most max values). */
static int const_floats(struct qt_exec *x, const struct qt_node *n, int i, const char *what, float *v, int max,
                        int *cnt, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, i);
    if (!qt_in_const(x, n, i))
        return qt_node_err(n, QT_EUNSUPPORTED, err,
                           "input '%s' must be known at plan time (it depends on the graph's inputs)", what);
    if (t->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EMODEL, err, "input '%s' has type %s, expected float32", what,
                           qt_dtype_name(t->dtype));
    int64_t ne = qt_tensor_numel(t);
    if (ne > max)
        return qt_node_err(n, QT_EMODEL, err, "input '%s' has %lld values, at most %d allowed", what,
                           (long long)ne, max);
    for (int64_t k = 0; k < ne; k++)
        v[k] = ((const float *)t->data)[k];
    *cnt = (int)ne;
    return 0;
}

/* Per-axis scales and output dims. */
static int resize_plan(struct qt_exec *x, const struct qt_node *n, float *scales, int64_t *od, struct qt_err *err) {
    const struct resize_attr *a = n->priv;
    const struct qt_tensor *t = qt_in(x, n, 0);
    int r = t->ndim, na = a->naxes >= 0 ? a->naxes : r, ax[QT_MAXDIM];
    int si = a->opset < 11 ? 1 : 2, zi = a->opset < 11 ? -1 : 3, cnt;
    float sv[QT_MAXDIM];
    int64_t zv[QT_MAXDIM];
    for (int i = 0; i < na; i++) {
        ax[i] = i;
        if (a->naxes >= 0 && qt_axis(n, a->axes[i], r, &ax[i], err))
            return err->code;
    }
    for (int d = 0; d < r; d++) {
        scales[d] = 1.0f;
        od[d] = t->dims[d];
    }
    if (zi > 0 && qt_in(x, n, zi) && qt_tensor_numel(qt_in(x, n, zi)) > 0) {
        if (qt_const_ints(x, n, zi, "sizes", zv, QT_MAXDIM, &cnt, err))
            return err->code;
        if (cnt != na)
            return qt_node_err(n, QT_EMODEL, err, "sizes has %d values, expected %d", cnt, na);
        for (int i = 0; i < na; i++) {
            int d = ax[i];
            if (zv[i] < 0)
                return qt_node_err(n, QT_EMODEL, err, "sizes[%d] = %lld is negative", i, (long long)zv[i]);
            if (t->dims[d] == 0 && zv[i] != 0)
                return qt_node_err(n, QT_EMODEL, err, "cannot resize the empty axis %d to %lld", d,
                                   (long long)zv[i]);
            od[d] = zv[i];
            scales[d] = t->dims[d] ? (float)zv[i] / (float)t->dims[d] : 1.0f;
        }
        if (a->policy != POLICY_STRETCH) {
            float s = scales[ax[0]];
            for (int i = 1; i < na; i++)
                s = a->policy == POLICY_NOT_LARGER ? fminf(s, scales[ax[i]]) : fmaxf(s, scales[ax[i]]);
            for (int i = 0; i < na; i++) {
                float v = roundf(s * (float)t->dims[ax[i]]);
                if (!(v >= 0) || v >= (float)((int64_t)1 << 40))
                    return qt_node_err(n, QT_EMODEL, err, "sizes are too large");
                scales[ax[i]] = s;
                od[ax[i]] = (int64_t)v;
            }
        }
        return qt_resize_check(n, &a->r, t, scales, err);
    }
    if (!qt_in(x, n, si) || qt_tensor_numel(qt_in(x, n, si)) == 0)
        return qt_node_err(n, QT_EMODEL, err, "needs scales or sizes");
    if (const_floats(x, n, si, "scales", sv, QT_MAXDIM, &cnt, err))
        return err->code;
    if (cnt != na)
        return qt_node_err(n, QT_EMODEL, err, "scales has %d values, expected %d", cnt, na);
    for (int i = 0; i < na; i++)
        scales[ax[i]] = sv[i];
    if (qt_resize_check(n, &a->r, t, scales, err))
        return err->code;
    return qt_resize_out_dims(n, t, scales, od, err);
}

static int resize_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *t = qt_in(x, n, 0);
    float s[QT_MAXDIM];
    int64_t d[QT_MAXDIM];
    if (!qt_dtype_size(t->dtype))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(t->dtype));
    if (resize_plan(x, n, s, d, err))
        return err->code;
    return qt_set_out(x, n, 0, t->dtype, t->ndim, d, err);
}

static int resize_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct resize_attr *a = n->priv;
    float s[QT_MAXDIM];
    int64_t d[QT_MAXDIM];
    if (resize_plan(x, n, s, d, err))
        return err->code;
    return qt_resize_run(x, n, &a->r, s, qt_in(x, n, 0), qt_out(x, n, 0), err);
}

/* Nearest resizing moves values (input and output share parameters);
 * interpolating ones compute new values (their own output parameters). */
static int resize_qrole(const struct qt_graph *g, const struct qt_node *n) {
    const struct qt_attr *a = qt_attr_find(n, "mode");
    (void)g;
    return a && a->s && strcmp(a->s, "nearest") ? QT_QR_UNARY : QT_QR_PASS;
}

static int resize_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct resize_attr *a = n->priv;
    float s[QT_MAXDIM];
    int64_t d[QT_MAXDIM];
    if (resize_plan(x, n, s, d, err))
        return err->code;
    return qt_resize_bwd(x, n, &a->r, s, qt_in(x, n, 0), qt_out(x, n, 0), qt_gout(x, n, 0), qt_gin(x, n, 0), err);
}

const struct qt_op qt_op_resize = {
    .name = "Resize",
    .init = resize_init,
    .infer = resize_infer,
    .fwd = resize_fwd,
    .bwd = resize_bwd,
    .quant = {.role_of = resize_qrole},
};
