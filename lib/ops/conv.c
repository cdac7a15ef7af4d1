/* conv.c: ONNX Conv (1-D and 2-D, groups, depthwise, strides, dilations,
 * explicit pads and auto_pad), float32.
 *
 * y[n, m, oh, ow] = b[m] + sum_{c in group(m), kh, kw}
 *                   w[m, c, kh, kw] * x[n, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
 *
 * Kernels: 1x1 stride-1 unpadded convolutions are one sgemm per image and
 * group; depthwise convolutions (one input and one output channel per group)
 * use a direct kernel; everything else is im2col + sgemm over blocks of
 * output columns. Work is split into fixed tasks (image, group, column
 * block) so results do not depend on the thread count.
 *
 * Gradients (training), per group, with cols = im2col(x) ([cg*kh*kw, oh*ow]
 * per image):
 *   db[m] = sum_{n, oh, ow} dy[n, m, oh, ow]
 *   dw    = sum_n dy_n cols_n^T           (one task per block of output
 *                                           channels, images in order)
 *   dx_n  = col2im(w^T dy_n)               (one task per image and group)
 * Depthwise convolutions use the direct loops of the same formulas. */
#include "ops/conv.h"

#include <cblas.h>
#include <string.h>

#define COL_BLOCK 3136 /* output columns per task (56*56) */
#define M_BLOCK 256    /* output channels per task */

int qt_conv_params(const struct qt_node *n, const struct qt_tensor *xt, const struct qt_tensor *wt,
                   const struct qt_conv *p, struct qt_conv_shape *s, struct qt_err *err) {
    int nsp = xt->ndim - 2;
    char b1[160], b2[160];
    if (xt->ndim < 3 || xt->ndim > 4)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input has %d dims; 1-D and 2-D convolutions only", xt->ndim);
    if (wt->ndim != xt->ndim)
        return qt_node_err(n, QT_EMODEL, err, "weight %s does not match input %s",
                           qt_dims_str(wt->ndim, wt->dims, b1, sizeof b1),
                           qt_dims_str(xt->ndim, xt->dims, b2, sizeof b2));
    memset(s, 0, sizeof *s);
    s->n = xt->dims[0];
    s->c = xt->dims[1];
    s->m = wt->dims[0];
    s->group = p->group;
    s->ih = nsp == 2 ? xt->dims[2] : 1;
    s->iw = xt->dims[nsp + 1];
    s->kh = nsp == 2 ? wt->dims[2] : 1;
    s->kw = wt->dims[nsp + 1];
    if (p->nkernel && (p->kernel[0] != (nsp == 2 ? s->kh : s->kw) || (nsp == 2 && p->kernel[1] != s->kw)))
        return qt_node_err(n, QT_EMODEL, err, "kernel_shape does not match the weight");
    if (s->group <= 0 || s->c % s->group || s->m % s->group || wt->dims[1] * s->group != s->c)
        return qt_node_err(n, QT_EMODEL, err, "%lld input channels, weight %s and group %lld do not fit",
                           (long long)s->c, qt_dims_str(wt->ndim, wt->dims, b1, sizeof b1), (long long)s->group);
    int64_t in[2] = {s->ih, s->iw}, k[2] = {s->kh, s->kw}, out[2], pb[2], pe[2];
    for (int i = 0; i < 2; i++) {
        int a = nsp == 2 ? i : 1; /* attribute index: 1-D uses slot 0 for the width */
        int ai = nsp == 2 ? i : 0;
        int64_t st = i == 0 && nsp == 1 ? 1 : p->strides[ai];
        int64_t dl = i == 0 && nsp == 1 ? 1 : p->dilations[ai];
        (void)a;
        if (st <= 0 || dl <= 0)
            return qt_node_err(n, QT_EMODEL, err, "strides and dilations must be positive");
        int64_t ek = dl * (k[i] - 1) + 1;
        if (p->auto_pad == QT_PAD_SAME_UPPER || p->auto_pad == QT_PAD_SAME_LOWER) {
            out[i] = (in[i] + st - 1) / st;
            int64_t tot = (out[i] - 1) * st + ek - in[i];
            if (tot < 0)
                tot = 0;
            pb[i] = p->auto_pad == QT_PAD_SAME_UPPER ? tot / 2 : tot - tot / 2;
            pe[i] = tot - pb[i];
        } else {
            if (i == 0 && nsp == 1) {
                pb[i] = pe[i] = 0;
            } else if (p->auto_pad == QT_PAD_VALID) {
                pb[i] = pe[i] = 0;
            } else {
                pb[i] = p->pads[ai];
                pe[i] = p->pads[ai + nsp];
            }
            if (pb[i] < 0 || pe[i] < 0)
                return qt_node_err(n, QT_EUNSUPPORTED, err, "negative pads are not supported");
            int64_t span = in[i] + pb[i] + pe[i] - ek;
            if (span < 0)
                return qt_node_err(n, QT_EMODEL, err, "kernel larger than the padded input");
            out[i] = span / st + 1;
        }
        if (i == 0) {
            s->sh = st;
            s->dh = dl;
            s->ph = pb[i];
            s->ph_end = pe[i];
        } else {
            s->sw = st;
            s->dw = dl;
            s->pw = pb[i];
            s->pw_end = pe[i];
        }
    }
    s->oh = out[0];
    s->ow = out[1];
    return 0;
}

int qt_conv_parse(struct qt_node *n, struct qt_conv *p, struct qt_err *err) {
    const int64_t *v;
    int c;
    memset(p, 0, sizeof *p);
    p->group = qt_attr_int(n, "group", 1, err);
    for (int i = 0; i < 2; i++)
        p->strides[i] = p->dilations[i] = 1;
    c = qt_attr_ints(n, "kernel_shape", &v, err);
    if (c > 2)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "%d-D convolution is not supported", c);
    p->nkernel = c > 0 ? c : 0;
    for (int i = 0; i < p->nkernel; i++)
        p->kernel[i] = v[i];
    c = qt_attr_ints(n, "strides", &v, err);
    for (int i = 0; i < c && i < 2; i++)
        p->strides[i] = v[i];
    c = qt_attr_ints(n, "dilations", &v, err);
    for (int i = 0; i < c && i < 2; i++)
        p->dilations[i] = v[i];
    c = qt_attr_ints(n, "pads", &v, err);
    if (c > 4)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "%d pads: 1-D and 2-D convolutions only", c);
    for (int i = 0; i < c; i++)
        p->pads[i] = v[i];
    return qt_auto_pad(n, &p->auto_pad, err);
}

int qt_auto_pad(const struct qt_node *n, int *out, struct qt_err *err) {
    const char *ap = qt_attr_str(n, "auto_pad", "NOTSET", err);
    if (err->code)
        return err->code;
    if (!strcmp(ap, "SAME_UPPER"))
        *out = QT_PAD_SAME_UPPER;
    else if (!strcmp(ap, "SAME_LOWER"))
        *out = QT_PAD_SAME_LOWER;
    else if (!strcmp(ap, "VALID"))
        *out = QT_PAD_VALID;
    else if (strcmp(ap, "NOTSET") && ap[0])
        return qt_node_err(n, QT_EMODEL, err, "unknown auto_pad '%s'", ap);
    else
        *out = QT_PAD_NOTSET;
    return 0;
}

static int conv_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct qt_conv *p = calloc(1, sizeof *p);
    if (!p)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = p;
    if (n->nin < 2 || n->in[0] < 0 || n->in[1] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs input X and weight W");
    return qt_conv_parse(n, p, err);
}

static int conv_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0), *wt = qt_in(x, n, 1), *bt = qt_in(x, n, 2);
    struct qt_conv_shape s;
    if (xt->dtype != QT_FLOAT || wt->dtype != QT_FLOAT || (bt && bt->dtype != QT_FLOAT))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "float32 inputs only (got %s)", qt_dtype_name(xt->dtype));
    if (qt_conv_params(n, xt, wt, n->priv, &s, err))
        return err->code;
    if (bt && qt_tensor_numel(bt) != s.m)
        return qt_node_err(n, QT_EMODEL, err, "bias has %lld elements, expected %lld",
                           (long long)qt_tensor_numel(bt), (long long)s.m);
    int64_t d[4] = {s.n, s.m, s.oh, s.ow};
    if (xt->ndim == 3) {
        d[2] = s.ow;
        if (qt_set_out(x, n, 0, QT_FLOAT, 3, d, err))
            return err->code;
    } else if (qt_set_out(x, n, 0, QT_FLOAT, 4, d, err)) {
        return err->code;
    }
    int64_t cg = s.c / s.group;
    if (x->training && !qt_conv_is_depthwise(&s))
        qt_exec_scratch(x, (size_t)(cg * s.kh * s.kw * s.oh * s.ow));
    if (!qt_conv_is_depthwise(&s) && !qt_conv_is_pointwise(&s)) {
        int64_t cols = s.oh * s.ow < COL_BLOCK ? s.oh * s.ow : COL_BLOCK;
        qt_exec_scratch(x, (size_t)(cg * s.kh * s.kw * cols));
    }
    return 0;
}

int qt_conv_is_depthwise(const struct qt_conv_shape *s) {
    return s->group == s->c && s->group == s->m;
}

int qt_conv_is_pointwise(const struct qt_conv_shape *s) {
    return s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 && s->pw == 0 && s->ph_end == 0 &&
           s->pw_end == 0;
}

/* im2col of columns [c0, c1) of one image's group: col[(c*kh+i)*kw+j][col] */
static void im2col(const float *xin, const struct qt_conv_shape *s, int64_t cg, int64_t c0, int64_t c1,
                   float *col) {
    int64_t ncol = c1 - c0;
    for (int64_t c = 0; c < cg; c++) {
        const float *xc = xin + c * s->ih * s->iw;
        for (int64_t ki = 0; ki < s->kh; ki++) {
            for (int64_t kj = 0; kj < s->kw; kj++) {
                float *dst = col + ((c * s->kh + ki) * s->kw + kj) * ncol;
                int64_t o = c0, oy = c0 / s->ow, ox = c0 % s->ow;
                while (o < c1) {
                    int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                    int64_t run = s->ow - ox;
                    if (run > c1 - o)
                        run = c1 - o;
                    if (iy < 0 || iy >= s->ih) {
                        memset(dst, 0, sizeof(float) * (size_t)run);
                    } else {
                        const float *row = xc + iy * s->iw;
                        int64_t ix = ox * s->sw - s->pw + kj * s->dw;
                        if (s->sw == 1 && ix >= 0 && ix + run <= s->iw) {
                            memcpy(dst, row + ix, sizeof(float) * (size_t)run);
                        } else {
                            for (int64_t t = 0; t < run; t++, ix += s->sw)
                                dst[t] = ix >= 0 && ix < s->iw ? row[ix] : 0.f;
                        }
                    }
                    dst += run;
                    o += run;
                    ox = 0;
                    oy++;
                }
            }
        }
    }
}

struct conv_job {
    struct qt_exec *x;
    const struct qt_post *post; /* fused activation */
    const struct qt_conv_shape *s;
    const float *in, *w, *b;
    float *out;
    int64_t nblk; /* column blocks per (image, group) */
    int64_t nmb;  /* output-channel blocks per (image, group) */
};

static void gemm_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct conv_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    int64_t cg = s->c / s->group, mg = s->m / s->group, hw = s->oh * s->ow, k = cg * s->kh * s->kw;
    int pw = qt_conv_is_pointwise(s);
    float *col = pw ? NULL : qt_scratch(j->x, tid);
    for (int64_t t = t0; t < t1; t++) {
        int64_t mb = t % j->nmb, r = t / j->nmb;
        int64_t blk = r % j->nblk, ng = r / j->nblk, g = ng % s->group, img = ng / s->group;
        int64_t c0 = blk * COL_BLOCK, c1 = c0 + COL_BLOCK < hw ? c0 + COL_BLOCK : hw;
        int64_t m0 = mb * M_BLOCK, m1 = m0 + M_BLOCK < mg ? m0 + M_BLOCK : mg;
        const float *xin = j->in + (img * s->c + g * cg) * s->ih * s->iw;
        const float *w = j->w + (g * mg + m0) * k;
        float *y = j->out + (img * s->m + g * mg + m0) * hw + c0;
        const float *bmat;
        int64_t ldb;
        if (pw) {
            bmat = xin + c0;
            ldb = hw;
        } else {
            im2col(xin, s, cg, c0, c1, col);
            bmat = col;
            ldb = c1 - c0;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(m1 - m0), (int)(c1 - c0), (int)k, 1.0f, w,
                    (int)k, bmat, (int)ldb, 0.0f, y, (int)hw);
        /* bias and fused activation while the block is in cache */
        for (int64_t m = m0; m < m1; m++) {
            float *yr = y + (m - m0) * hw;
            if (j->b) {
                float bv = j->b[g * mg + m];
                for (int64_t c = 0; c < c1 - c0; c++)
                    yr[c] += bv;
            }
            qt_post_apply(j->post, yr, c1 - c0);
        }
    }
}

/* Depthwise: one task per (image, channel). */
static void dw_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct conv_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t ch = t % s->c;
        const float *xc = j->in + t * s->ih * s->iw;
        const float *w = j->w + ch * s->kh * s->kw;
        float *y = j->out + t * s->oh * s->ow;
        float bv = j->b ? j->b[ch] : 0.f;
        qt_dwconv_f32(xc, w, bv, y, s);
        qt_post_apply(j->post, y, s->oh * s->ow);
    }
}

/* y[i] = ((y[i] + w0 r[s*i]) + w1 r[s*i+1]) + w2 r[s*i+2]: the three taps of
 * one kernel row, in the order of the generic loop (so results do not depend
 * on the path), compiled for AVX-512, AVX2 and baseline x86-64. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void dw_taps3(float *restrict y, const float *restrict r, float w0, float w1, float w2, int64_t n,
                     int64_t stride) {
    if (stride == 1) {
        for (int64_t i = 0; i < n; i++)
            y[i] = ((y[i] + w0 * r[i]) + w1 * r[i + 1]) + w2 * r[i + 2];
    } else {
        for (int64_t i = 0; i < n; i++)
            y[i] = ((y[i] + w0 * r[2 * i]) + w1 * r[2 * i + 1]) + w2 * r[2 * i + 2];
    }
}

void qt_dwconv_f32(const float *xc, const float *w, float bias, float *y, const struct qt_conv_shape *s) {
    /* interior columns need no bounds checks: ox in [x0, x1) */
    int64_t x0 = (s->pw + s->sw - 1) / s->sw;
    int64_t x1 = s->ow;
    while (x1 > x0 && (x1 - 1) * s->sw - s->pw + (s->kw - 1) * s->dw >= s->iw)
        x1--;
    if (x0 > x1)
        x0 = x1;
    int fast3 = s->kh == 3 && s->kw == 3 && s->dw == 1 && (s->sw == 1 || s->sw == 2);
    for (int64_t oy = 0; oy < s->oh; oy++) {
        float *yr = y + oy * s->ow;
        for (int64_t ox = 0; ox < s->ow; ox++)
            yr[ox] = bias;
        for (int64_t ki = 0; ki < s->kh; ki++) {
            int64_t iy = oy * s->sh - s->ph + ki * s->dh;
            if (iy < 0 || iy >= s->ih)
                continue;
            const float *row = xc + iy * s->iw;
            if (fast3) {
                /* the borders as below, tap by tap; the interior in one pass */
                for (int64_t kj = 0; kj < 3; kj++) {
                    float wv = w[ki * 3 + kj];
                    int64_t off = kj - s->pw;
                    for (int64_t ox = 0; ox < x0; ox++) {
                        int64_t ix = ox * s->sw + off;
                        if (ix >= 0 && ix < s->iw)
                            yr[ox] += wv * row[ix];
                    }
                }
                if (x1 > x0)
                    dw_taps3(yr + x0, row + x0 * s->sw - s->pw, w[ki * 3], w[ki * 3 + 1], w[ki * 3 + 2], x1 - x0,
                             s->sw);
                for (int64_t kj = 0; kj < 3; kj++) {
                    float wv = w[ki * 3 + kj];
                    int64_t off = kj - s->pw;
                    for (int64_t ox = x1; ox < s->ow; ox++) {
                        int64_t ix = ox * s->sw + off;
                        if (ix >= 0 && ix < s->iw)
                            yr[ox] += wv * row[ix];
                    }
                }
                continue;
            }
            for (int64_t kj = 0; kj < s->kw; kj++) {
                float wv = w[ki * s->kw + kj];
                int64_t off = kj * s->dw - s->pw;
                for (int64_t ox = 0; ox < x0; ox++) {
                    int64_t ix = ox * s->sw + off;
                    if (ix >= 0 && ix < s->iw)
                        yr[ox] += wv * row[ix];
                }
                if (s->sw == 1) {
                    const float *r = row + off;
                    for (int64_t ox = x0; ox < x1; ox++)
                        yr[ox] += wv * r[ox];
                } else if (s->sw == 2) {
                    const float *r = row + off;
                    for (int64_t ox = x0; ox < x1; ox++)
                        yr[ox] += wv * r[2 * ox];
                } else {
                    for (int64_t ox = x0; ox < x1; ox++)
                        yr[ox] += wv * row[ox * s->sw + off];
                }
                for (int64_t ox = x1; ox < s->ow; ox++) {
                    int64_t ix = ox * s->sw + off;
                    if (ix >= 0 && ix < s->iw)
                        yr[ox] += wv * row[ix];
                }
            }
        }
    }
}

static int conv_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0), *wt = qt_in(x, n, 1), *bt = qt_in(x, n, 2);
    struct qt_conv_shape s;
    if (qt_conv_params(n, xt, wt, n->priv, &s, err))
        return err->code;
    struct conv_job j = {x, &x->post[n - x->g->n], &s, xt->data, wt->data, bt ? bt->data : NULL, qt_out(x, n, 0)->data, 0, 0};
    if (qt_conv_is_depthwise(&s)) {
        qt_parallel_for(x, s.n * s.c, dw_task, &j);
        return 0;
    }
    int64_t hw = s.oh * s.ow;
    int64_t mg = s.m / s.group;
    j.nblk = (hw + COL_BLOCK - 1) / COL_BLOCK;
    j.nmb = (mg + M_BLOCK - 1) / M_BLOCK;
    qt_parallel_for(x, s.n * s.group * j.nblk * j.nmb, gemm_task, &j);
    return 0;
}

/* ---- backward ---------------------------------------------------------- */

#define BWD_M_BLOCK 64

struct conv_bwd_job {
    struct qt_exec *x;
    const struct qt_conv_shape *s;
    const float *in, *w, *dy;
    float *dx, *dw, *db;
    int64_t nmb; /* output-channel blocks per group */
};

/* dcols [k, hw] of one image's group, added into dx */
static void col2im_add(const float *col, const struct qt_conv_shape *s, int64_t cg, float *dx) {
    int64_t hw = s->oh * s->ow;
    for (int64_t c = 0; c < cg; c++)
        for (int64_t ki = 0; ki < s->kh; ki++)
            for (int64_t kj = 0; kj < s->kw; kj++) {
                const float *src = col + ((c * s->kh + ki) * s->kw + kj) * hw;
                float *xc = dx + c * s->ih * s->iw;
                for (int64_t oy = 0; oy < s->oh; oy++) {
                    int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                    if (iy < 0 || iy >= s->ih)
                        continue;
                    for (int64_t ox = 0; ox < s->ow; ox++) {
                        int64_t ix = ox * s->sw - s->pw + kj * s->dw;
                        if (ix >= 0 && ix < s->iw)
                            xc[iy * s->iw + ix] += src[oy * s->ow + ox];
                    }
                }
            }
}

/* Weight (and bias) gradient of one block of output channels of a group. */
static void dw_gemm_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct conv_bwd_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    int64_t cg = s->c / s->group, mg = s->m / s->group, hw = s->oh * s->ow, k = cg * s->kh * s->kw;
    int pw = qt_conv_is_pointwise(s);
    float *col = qt_scratch(j->x, tid);
    for (int64_t t = t0; t < t1; t++) {
        int64_t g = t / j->nmb, m0 = (t % j->nmb) * BWD_M_BLOCK;
        int64_t m1 = m0 + BWD_M_BLOCK < mg ? m0 + BWD_M_BLOCK : mg;
        for (int64_t img = 0; img < s->n; img++) {
            const float *xin = j->in + (img * s->c + g * cg) * s->ih * s->iw;
            const float *dy = j->dy + (img * s->m + g * mg + m0) * hw;
            if (j->db)
                for (int64_t m = m0; m < m1; m++) {
                    double acc = 0;
                    for (int64_t i = 0; i < hw; i++)
                        acc += dy[(m - m0) * hw + i];
                    j->db[g * mg + m] += (float)acc;
                }
            if (!j->dw)
                continue;
            if (!pw)
                im2col(xin, s, cg, 0, hw, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(m1 - m0), (int)k, (int)hw, 1.0f, dy,
                        (int)hw, pw ? xin : col, (int)hw, 1.0f, j->dw + (g * mg + m0) * k, (int)k);
        }
    }
}

/* Input gradient of one (image, group). */
static void dx_gemm_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct conv_bwd_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    int64_t cg = s->c / s->group, mg = s->m / s->group, hw = s->oh * s->ow, k = cg * s->kh * s->kw;
    int pw = qt_conv_is_pointwise(s);
    float *col = qt_scratch(j->x, tid);
    for (int64_t t = t0; t < t1; t++) {
        int64_t g = t % s->group, img = t / s->group;
        const float *dy = j->dy + (img * s->m + g * mg) * hw;
        float *dx = j->dx + (img * s->c + g * cg) * s->ih * s->iw;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)hw, (int)mg, 1.0f, j->w + g * mg * k,
                    (int)k, dy, (int)hw, pw ? 1.0f : 0.0f, pw ? dx : col, (int)hw);
        if (!pw)
            col2im_add(col, s, cg, dx);
    }
}

/* Depthwise weight and bias gradients: one task per channel. */
static void dw_direct_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct conv_bwd_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    (void)tid;
    for (int64_t ch = t0; ch < t1; ch++) {
        for (int64_t img = 0; img < s->n; img++) {
            const float *xc = j->in + (img * s->c + ch) * s->ih * s->iw;
            const float *dy = j->dy + (img * s->c + ch) * s->oh * s->ow;
            if (j->db) {
                double acc = 0;
                for (int64_t i = 0; i < s->oh * s->ow; i++)
                    acc += dy[i];
                j->db[ch] += (float)acc;
            }
            for (int64_t ki = 0; j->dw && ki < s->kh; ki++)
                for (int64_t kj = 0; kj < s->kw; kj++) {
                    double acc = 0;
                    for (int64_t oy = 0; oy < s->oh; oy++) {
                        int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                        if (iy < 0 || iy >= s->ih)
                            continue;
                        for (int64_t ox = 0; ox < s->ow; ox++) {
                            int64_t ix = ox * s->sw - s->pw + kj * s->dw;
                            if (ix >= 0 && ix < s->iw)
                                acc += dy[oy * s->ow + ox] * xc[iy * s->iw + ix];
                        }
                    }
                    j->dw[(ch * s->kh + ki) * s->kw + kj] += (float)acc;
                }
        }
    }
}

/* Depthwise input gradient: one task per (image, channel). */
static void dx_direct_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct conv_bwd_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t ch = t % s->c;
        const float *w = j->w + ch * s->kh * s->kw, *dy = j->dy + t * s->oh * s->ow;
        float *dx = j->dx + t * s->ih * s->iw;
        for (int64_t oy = 0; oy < s->oh; oy++)
            for (int64_t ki = 0; ki < s->kh; ki++) {
                int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                if (iy < 0 || iy >= s->ih)
                    continue;
                for (int64_t kj = 0; kj < s->kw; kj++) {
                    float wv = w[ki * s->kw + kj];
                    for (int64_t ox = 0; ox < s->ow; ox++) {
                        int64_t ix = ox * s->sw - s->pw + kj * s->dw;
                        if (ix >= 0 && ix < s->iw)
                            dx[iy * s->iw + ix] += wv * dy[oy * s->ow + ox];
                    }
                }
            }
    }
}

static int conv_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0), *wt = qt_in(x, n, 1);
    struct qt_conv_shape s;
    if (qt_conv_params(n, xt, wt, n->priv, &s, err))
        return err->code;
    struct conv_bwd_job j = {x, &s, xt->data, wt->data, qt_gout(x, n, 0), qt_gin(x, n, 0), qt_gin(x, n, 1),
                             qt_gin(x, n, 2), 0};
    if (qt_conv_is_depthwise(&s)) {
        if (j.dw || j.db)
            qt_parallel_for(x, s.c, dw_direct_task, &j);
        if (j.dx)
            qt_parallel_for(x, s.n * s.c, dx_direct_task, &j);
        return 0;
    }
    j.nmb = (s.m / s.group + BWD_M_BLOCK - 1) / BWD_M_BLOCK;
    if (j.dw || j.db)
        qt_parallel_for(x, s.group * j.nmb, dw_gemm_task, &j);
    if (j.dx)
        qt_parallel_for(x, s.n * s.group, dx_gemm_task, &j);
    return 0;
}

const struct qt_op qt_op_conv = {
    .name = "Conv",
    .init = conv_init,
    .infer = conv_infer,
    .fwd = conv_fwd,
    .bwd = conv_bwd,
};
