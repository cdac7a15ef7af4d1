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

/* GEMM tasks per (image, group): output channels split in blocks of at most
 * M_MAX rows and columns in blocks of at most N_MAX, then halved (columns
 * first, down to N_MIN; channels down to M_MIN, or M_MIN_MT with more than
 * one thread on the direct kernel) until there are TASKS_MIN tasks, so a
 * batch-1 layer keeps two or more threads busy. The direct kernel sums
 * every output the same way in any block (convgemm.c) and the BLAS path's
 * blocking depends only on the shape, so results are the same at any
 * --threads and batch size.
 * M_MIN_MT: MobileNetV2's 64- and 96-channel projections of 14x14 maps were
 * one task (2 threads, batch 1: 4.4-5.1 -> 4.3-4.8 ms); at one thread the
 * smaller blocks cost 3%. */
#define M_MAX 128
#define N_MAX 1024
#define M_MIN 64
#define M_MIN_MT 32
#define N_MIN 256
#define TASKS_MIN 4
#define DOT_HW 0 /* the dot form measured slower than the tiles here */ /* 1x1 convolutions of smaller maps use the dot form */

static size_t dw_scratch(const struct qt_conv_shape *s);

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
    if (qt_conv_is_depthwise(&s)) {
        qt_exec_scratch(x, dw_scratch(&s));
    } else if (qt_conv_is_pointwise(&s) && s.oh * s.ow < DOT_HW) {
        qt_exec_scratch(x, (size_t)(cg * s.oh * s.ow));
    } else if (!qt_conv_is_pointwise(&s)) {
        int64_t cols = s.oh * s.ow < N_MAX ? s.oh * s.ow : N_MAX; /* >= any column block */
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
                        /* columns [t0, t1) of the run read inside the row; zeros around */
                        int64_t t0 = ix >= 0 ? 0 : (-ix + s->sw - 1) / s->sw;
                        int64_t t1 = ix >= s->iw ? 0 : (s->iw - ix + s->sw - 1) / s->sw;
                        t1 = t1 < run ? t1 : run;
                        t0 = t0 < t1 ? t0 : t1;
                        /* loops, not memcpy/memset: the runs are short on small maps */
                        for (int64_t t = 0; t < t0; t++)
                            dst[t] = 0.f;
                        if (s->sw == 1) {
                            const float *rs = row + ix + t0;
                            for (int64_t t = 0; t < t1 - t0; t++)
                                dst[t0 + t] = rs[t];
                        } else {
                            for (int64_t t = t0; t < t1; t++)
                                dst[t] = row[ix + t * s->sw];
                        }
                        for (int64_t t = t1; t < run; t++)
                            dst[t] = 0.f;
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
    int64_t nblk, cblk; /* column blocks per (image, group), columns per block */
    int64_t nmb, mblk;  /* output-channel blocks per (image, group), channels per block */
};

static int64_t round16(int64_t v) {
    return (v + 15) / 16 * 16;
}

static void gemm_blocks(struct conv_job *j, int64_t mg, int64_t hw) {
    int64_t nm = (mg + M_MAX - 1) / M_MAX, nn = (hw + N_MAX - 1) / N_MAX;
    /* the BLAS (no AVX-512) may sum by block: there the blocking stays the
     * same at any thread count */
    int64_t m_min = j->x->nthreads > 1 && qt_gemm_direct() ? M_MIN_MT : M_MIN;
    while (nm * nn < TASKS_MIN) {
        if (hw / nn >= 2 * N_MIN)
            nn *= 2;
        else if (mg / nm >= 2 * m_min)
            nm *= 2;
        else
            break;
    }
    j->mblk = round16((mg + nm - 1) / nm);
    j->cblk = round16((hw + nn - 1) / nn);
    j->nmb = (mg + j->mblk - 1) / j->mblk;
    j->nblk = (hw + j->cblk - 1) / j->cblk;
}

/* im2col on the direct kernel: column blocks of whole 64-column strips whose
 * im2col rows (k x columns) fit in IM2COL_MAX floats, so the block written
 * is still in L2 when the kernel reads it (N_MAX columns of a 3x3 layer are
 * megabytes, written to and read back from memory), and the output channels
 * split only as far as TASKS_MIN needs, as each channel block writes the
 * block again. The kernel sums every output the same way in any block. */
#define IM2COL_MAX (128 * 1024)
static void im2col_blocks(struct conv_job *j, int64_t mg, int64_t hw, int64_t k) {
    int64_t cmax = IM2COL_MAX / k / 64 * 64;
    if (cmax < 64)
        cmax = 64;
    if (cmax > N_MAX) /* the scratch conv_infer sized */
        cmax = N_MAX;
    int64_t nn = (hw + cmax - 1) / cmax, nm = 1;
    while (nm * nn < TASKS_MIN && mg / nm >= 2 * M_MIN)
        nm *= 2;
    j->cblk = hw < 64 ? hw : ((hw + nn - 1) / nn + 63) / 64 * 64;
    j->nblk = (hw + j->cblk - 1) / j->cblk;
    j->mblk = round16((mg + nm - 1) / nm);
    j->nmb = (mg + j->mblk - 1) / j->mblk;
}

static void gemm_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct conv_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    int64_t cg = s->c / s->group, mg = s->m / s->group, hw = s->oh * s->ow, k = cg * s->kh * s->kw;
    int pw = qt_conv_is_pointwise(s);
    float *col = qt_scratch(j->x, tid);
    int dot = pw && hw < DOT_HW && qt_gemm_direct();
    for (int64_t t = t0; t < t1; t++) {
        int64_t mb = t % j->nmb, r = t / j->nmb;
        int64_t blk = r % j->nblk, ng = r / j->nblk, g = ng % s->group, img = ng / s->group;
        int64_t c0 = blk * j->cblk, c1 = c0 + j->cblk < hw ? c0 + j->cblk : hw;
        int64_t m0 = mb * j->mblk, m1 = m0 + j->mblk < mg ? m0 + j->mblk : mg;
        const float *xin = j->in + (img * s->c + g * cg) * s->ih * s->iw;
        const float *w = j->w + (g * mg + m0) * k;
        float *y = j->out + (img * s->m + g * mg + m0) * hw + c0;
        const float *bmat;
        int64_t ldb;
        if (dot) {
            /* few columns: transposed input, dot products over the channels */
            for (int64_t c = 0; c < cg; c++)
                for (int64_t o = c0; o < c1; o++)
                    col[(o - c0) * cg + c] = xin[c * hw + o];
            qt_gemm_dot(m1 - m0, c1 - c0, k, w, k, col, cg, j->b ? j->b + g * mg + m0 : NULL, j->post, y, hw, 1);
            continue;
        }
        if (pw) {
            bmat = xin + c0;
            ldb = hw;
        } else {
            im2col(xin, s, cg, c0, c1, col);
            bmat = col;
            ldb = c1 - c0;
        }
        if (qt_conv_gemm(m1 - m0, c1 - c0, k, w, k, bmat, ldb, j->b ? j->b + g * mg + m0 : NULL, j->post, y, hw))
            continue;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(m1 - m0), (int)(c1 - c0), (int)k, 1.0f, w,
                    (int)k, bmat, (int)ldb, 0.0f, y, (int)hw);
        /* bias and fused activation while the block is in cache */
        for (int64_t m = m0; m < m1; m++)
            qt_bias_post(j->post, j->b != NULL, j->b ? j->b[g * mg + m] : 0.f, y + (m - m0) * hw, c1 - c0);
    }
}

/* Depthwise: one task per (image, channel). The channel's plane is copied
 * into a zero-bordered scratch plane first, so every output is one pass over
 * its kh*kw taps with no bounds checks: y = bias + w[0]*p[0] + w[1]*p[1]...,
 * in kernel order, the same order on every path (results do not depend on
 * the vector width the CPU has). */
struct dw_geom {
    int64_t ph, pw; /* padded plane height and width */
};

static void dw_geom(const struct qt_conv_shape *s, struct dw_geom *g) {
    int64_t need_h = (s->oh - 1) * s->sh + (s->kh - 1) * s->dh + 1;
    int64_t need_w = (s->ow - 1) * s->sw + (s->kw - 1) * s->dw + 1;
    g->ph = s->ph + s->ih > need_h ? s->ph + s->ih : need_h;
    g->pw = s->pw + s->iw > need_w ? s->pw + s->iw : need_w;
}

/* floats of scratch per thread: the padded plane and, for stride 1, the
 * flat output over the padded width */
static size_t dw_scratch(const struct qt_conv_shape *s) {
    struct dw_geom g;
    dw_geom(s, &g);
    return (size_t)(g.ph * g.pw + (s->sw == 1 ? s->oh * g.pw : 0)) + 16;
}

/* the loops below carry no dependence between iterations; gcc is told so
 * (it vectorizes them without run-time alias checks); clang has no ivdep
 * and vectorizes them from the restrict qualifiers alone */
#if defined(__GNUC__) && !defined(__clang__)
#define QT_IVDEP _Pragma("GCC ivdep")
#else
#define QT_IVDEP
#endif

/* z[i] = b + sum_k w[k] * p[i + off[k]], i in [0, n): stride-1 rows laid
 * end to end over the padded width */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void dw_flat3x3(float *restrict z, const float *restrict p, const float *w, float b, int64_t n,
                       int64_t pw) {
    const float *r0 = p, *r1 = p + pw, *r2 = p + 2 * pw;
    float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    QT_IVDEP
    for (int64_t i = 0; i < n; i++)
        z[i] = ((((((((b + w0 * r0[i]) + w1 * r0[i + 1]) + w2 * r0[i + 2]) + w3 * r1[i]) + w4 * r1[i + 1]) +
                   w5 * r1[i + 2]) + w6 * r2[i]) + w7 * r2[i + 1]) + w8 * r2[i + 2];
}

/* one stride-2 output row of a 3x3 kernel */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void dw_row3x3s2(float *restrict y, const float *restrict p, const float *w, float b, int64_t n,
                        int64_t pw) {
    const float *r0 = p, *r1 = p + pw, *r2 = p + 2 * pw;
    float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    QT_IVDEP
    for (int64_t i = 0; i < n; i++)
        y[i] = ((((((((b + w0 * r0[2 * i]) + w1 * r0[2 * i + 1]) + w2 * r0[2 * i + 2]) + w3 * r1[2 * i]) +
                    w4 * r1[2 * i + 1]) + w5 * r1[2 * i + 2]) + w6 * r2[2 * i]) + w7 * r2[2 * i + 1]) +
               w8 * r2[2 * i + 2];
}

/* dst[i] = act(src[i]), as Relu / Clip compute it */
static inline __attribute__((always_inline)) void dw_post(float *dst, const float *src,
                                                          int64_t n, const struct qt_post *post) {
    if (post->kind == QT_POST_RELU) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = src[i] > 0 ? src[i] : 0;
    } else if (post->kind == QT_POST_CLIP) {
        float lo = post->lo, hi = post->hi;
        for (int64_t i = 0; i < n; i++) {
            float v = src[i] < lo ? lo : src[i];
            dst[i] = v > hi ? hi : v;
        }
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

/* One channel. p: the padded plane, whose border is zero (dw_task clears
 * it once per call; only the interior is written here). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void dw_plane(const float *xc, const float *w, float bias, float *y, const struct qt_conv_shape *s,
                     const struct dw_geom *g, float *p, const struct qt_post *post) {
    for (int64_t iy = 0; iy < s->ih; iy++) {
        float *restrict pr = p + (iy + s->ph) * g->pw + s->pw;
        const float *restrict xr = xc + iy * s->iw;
        for (int64_t i = 0; i < s->iw; i++)
            pr[i] = xr[i];
    }
    int k3 = s->kh == 3 && s->kw == 3 && s->dh == 1 && s->dw == 1;
    if (k3 && s->sh == 1 && s->sw == 1) {
        /* rows end to end; the last pw - ow columns of each row are discarded */
        float *z = p + g->ph * g->pw;
        dw_flat3x3(z, p, w, bias, (s->oh - 1) * g->pw + s->ow, g->pw);
        for (int64_t oy = 0; oy < s->oh; oy++)
            dw_post(y + oy * s->ow, z + oy * g->pw, s->ow, post);
        return;
    }
    if (k3 && s->sw == 2) {
        for (int64_t oy = 0; oy < s->oh; oy++) {
            dw_row3x3s2(y + oy * s->ow, p + oy * s->sh * g->pw, w, bias, s->ow, g->pw);
            dw_post(y + oy * s->ow, y + oy * s->ow, s->ow, post);
        }
        return;
    }
    for (int64_t oy = 0; oy < s->oh; oy++) {
        float *yr = y + oy * s->ow;
        for (int64_t ox = 0; ox < s->ow; ox++) {
            const float *pp = p + oy * s->sh * g->pw + ox * s->sw;
            float acc = bias;
            for (int64_t ki = 0; ki < s->kh; ki++)
                for (int64_t kj = 0; kj < s->kw; kj++)
                    acc = acc + w[ki * s->kw + kj] * pp[ki * s->dh * g->pw + kj * s->dw];
            yr[ox] = acc;
        }
        dw_post(yr, yr, s->ow, post);
    }
}

static void dw_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct conv_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    float *p = qt_scratch(j->x, tid);
    struct dw_geom g;
    int64_t t = t0;
    for (; t < t1; t++) { /* the direct 3x3 kernel where it applies: no padded copy */
        int64_t ch = t % s->c;
        if (!qt_dw3x3(j->in + t * s->ih * s->iw, s, j->w + ch * 9, j->b ? j->b[ch] : 0.f, j->out + t * s->oh * s->ow,
                      j->post))
            break;
    }
    if (t == t1)
        return;
    dw_geom(s, &g);
    memset(p, 0, sizeof(float) * (size_t)(g.ph * g.pw));
    for (; t < t1; t++) {
        int64_t ch = t % s->c;
        dw_plane(j->in + t * s->ih * s->iw, j->w + ch * s->kh * s->kw, j->b ? j->b[ch] : 0.f,
                 j->out + t * s->oh * s->ow, s, &g, p, j->post);
    }
}

static int conv_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *xt = qt_in(x, n, 0), *wt = qt_in(x, n, 1), *bt = qt_in(x, n, 2);
    struct qt_conv_shape s;
    if (qt_conv_params(n, xt, wt, n->priv, &s, err))
        return err->code;
    struct conv_job j = {x, &x->post[n - x->g->n], &s, xt->data, wt->data, bt ? bt->data : NULL,
                         qt_out(x, n, 0)->data, 0, 0, 0, 0};
    if (qt_conv_is_depthwise(&s)) {
        qt_parallel_for(x, s.n * s.c, dw_task, &j);
        return 0;
    }
    int64_t hw = s.oh * s.ow;
    int64_t mg = s.m / s.group;
    gemm_blocks(&j, mg, hw);
    if (!qt_conv_is_pointwise(&s) && qt_gemm_direct())
        im2col_blocks(&j, mg, hw, s.c / s.group * s.kh * s.kw);
    if (qt_conv_is_pointwise(&s) && hw < DOT_HW && qt_gemm_direct()) {
        /* each task transposes the whole input: two channel blocks only */
        j.mblk = round16((mg + 1) / 2);
        j.nmb = (mg + j.mblk - 1) / j.mblk;
    }
    qt_parallel_for(x, s.n * s.group * j.nblk * j.nmb, gemm_task, &j);
    return 0;
}

/* ---- backward ---------------------------------------------------------- */

#define BWD_M_BLOCK 64

/* sum of p[0..n) in eight double lanes (vector extensions: the same sums
 * on every CPU), lanes added in order: a bias gradient without the latency
 * of one serial double add per element */
typedef float conv_v8f __attribute__((vector_size(32)));
typedef double conv_v8d __attribute__((vector_size(64)));
static double sum8(const float *p, int64_t n) {
    conv_v8d acc = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        conv_v8f v;
        memcpy(&v, p + i, sizeof v);
        acc += __builtin_convertvector(v, conv_v8d);
    }
    double sum = 0;
    for (int k = 0; k < 8; k++)
        sum += acc[k];
    for (; i < n; i++)
        sum += p[i];
    return sum;
}

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
                for (int64_t m = m0; m < m1; m++)
                    j->db[g * mg + m] += (float)sum8(dy + (m - m0) * hw, hw);
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

/* Output columns [*lo, *hi) whose input column ox * sw - pw + kj * dw is
 * inside the image. */
static void dw_cols(const struct qt_conv_shape *s, int64_t kj, int64_t *lo, int64_t *hi) {
    int64_t off = kj * s->dw - s->pw, last = s->iw - 1 - off;
    *lo = off >= 0 ? 0 : (-off + s->sw - 1) / s->sw;
    *hi = last < 0 ? 0 : last / s->sw + 1 < s->ow ? last / s->sw + 1 : s->ow;
    if (*lo > *hi)
        *lo = *hi;
}

/* acc[ox] += dy[ox] * xr[ox * sw + off] for ox in [lo, hi) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void dw_acc_row(float *restrict acc, const float *restrict dy, const float *restrict xr, int64_t lo,
                       int64_t hi, int64_t sw, int64_t off) {
    if (sw == 1) {
        QT_IVDEP
        for (int64_t ox = lo; ox < hi; ox++)
            acc[ox] += dy[ox] * xr[ox + off];
    } else {
        QT_IVDEP
        for (int64_t ox = lo; ox < hi; ox++)
            acc[ox] += dy[ox] * xr[ox * sw + off];
    }
}

/* dx[ox * sw + off] += w * dy[ox] for ox in [lo, hi) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void dw_dx_row(float *restrict dx, const float *restrict dy, float w, int64_t lo, int64_t hi, int64_t sw,
                      int64_t off) {
    if (sw == 1) {
        QT_IVDEP
        for (int64_t ox = lo; ox < hi; ox++)
            dx[ox + off] += w * dy[ox];
    } else {
        for (int64_t ox = lo; ox < hi; ox++)
            dx[ox * sw + off] += w * dy[ox];
    }
}

#define DW_ACC_MAX 4096 /* floats of the per-channel row accumulators */

/* Depthwise weight and bias gradients: one task per channel. Per image,
 * each kernel tap (and the bias) sums dy * x down the output rows into one
 * float per output column (vectorised along the row), then the columns in
 * double into the image's term, added to dw[tap] image after image. */
static void dw_direct_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct conv_bwd_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    int64_t K = s->kh * s->kw, ow = s->ow;
    float acc[DW_ACC_MAX];
    (void)tid;
    for (int64_t ch = t0; ch < t1; ch++) {
        for (int64_t img = 0; img < s->n; img++) {
            const float *xc = j->in + (img * s->c + ch) * s->ih * s->iw;
            const float *dy = j->dy + (img * s->c + ch) * s->oh * ow;
            if (j->db)
                j->db[ch] += (float)sum8(dy, s->oh * ow);
            if (!j->dw)
                continue;
            if (K * ow > DW_ACC_MAX) { /* long rows: one double sum per tap */
                for (int64_t ki = 0; ki < s->kh; ki++)
                    for (int64_t kj = 0; kj < s->kw; kj++) {
                        double a = 0;
                        int64_t lo, hi;
                        dw_cols(s, kj, &lo, &hi);
                        for (int64_t oy = 0; oy < s->oh; oy++) {
                            int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                            if (iy < 0 || iy >= s->ih)
                                continue;
                            for (int64_t ox = lo; ox < hi; ox++)
                                a += dy[oy * ow + ox] * xc[iy * s->iw + ox * s->sw - s->pw + kj * s->dw];
                        }
                        j->dw[ch * K + ki * s->kw + kj] += (float)a;
                    }
                continue;
            }
            memset(acc, 0, sizeof(float) * (size_t)(K * ow));
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ki = 0; ki < s->kh; ki++) {
                    int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                    if (iy < 0 || iy >= s->ih)
                        continue;
                    for (int64_t kj = 0; kj < s->kw; kj++) {
                        int64_t lo, hi;
                        dw_cols(s, kj, &lo, &hi);
                        dw_acc_row(acc + (ki * s->kw + kj) * ow, dy + oy * ow, xc + iy * s->iw, lo, hi, s->sw,
                                   kj * s->dw - s->pw);
                    }
                }
            for (int64_t k = 0; k < K; k++)
                j->dw[ch * K + k] += (float)sum8(acc + k * ow, ow);
        }
    }
}

/* Depthwise input gradient: one task per (image, channel); each input
 * element receives its terms in the order (oy, ki, kj). */
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
                    int64_t lo, hi;
                    dw_cols(s, kj, &lo, &hi);
                    dw_dx_row(dx + iy * s->iw, dy + oy * s->ow, w[ki * s->kw + kj], lo, hi, s->sw,
                              kj * s->dw - s->pw);
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

static int conv_as_conv(const struct qt_exec *x, const struct qt_node *n, struct qt_conv_shape *s,
                        struct qt_err *err) {
    return qt_conv_params(n, &x->t[n->in[0]], &x->t[n->in[1]], n->priv, s, err) ? -1 : 1;
}

const struct qt_op qt_op_conv = {
    .name = "Conv",
    .flags = QT_OPF_POST_ACT,
    .init = conv_init,
    .infer = conv_infer,
    .fwd = conv_fwd,
    .bwd = conv_bwd,
    .quant = {.role = QT_QR_COMPUTE, .flags = QT_QF_FUSE_ACT | QT_QF_CONV_KERNEL | QT_QF_ABSORB_BN, .weight = 1,
              .bias = 2, .lower = QT_QL_LINEAR, .lower_op = "QLinearConv", .as_conv = conv_as_conv},
};
