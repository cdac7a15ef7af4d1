/* qlinearconv.c: ONNX QLinearConv and ConvInteger (1-D and 2-D, groups,
 * depthwise, strides, dilations, pads, auto_pad) on integer kernels.
 *
 * QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B):
 *   acc[n,m,p] = B[m] + sum (x - x_zp) (w[m] - w_zp[m])      (int32)
 *   y = saturate(round_half_even(acc * (x_scale * w_scale[m] / y_scale)) + y_zp)
 * x and y uint8 or int8, w uint8 or int8 per tensor or per output channel,
 * B int32. ConvInteger(x, w, x_zp, w_zp) returns acc (no bias) as int32.
 * The rounding is ONNX Runtime's (MLAS requantization in float32).
 * Nodes made by qt_int8_lower may carry qtool_act_lo / qtool_act_hi: a fused
 * Relu / Clip as bounds in output units.
 *
 * Kernels (lib/int8): weights packed once at load when they are an
 * initializer; per task (image, group, block of output columns, block of
 * output channels) the input is packed (im2col) and multiplied; pointwise
 * convolutions of a batch of small images take blocks of columns across
 * images; depthwise convolutions (one channel per group, up to 64 taps) have
 * their own kernel, one task per (image, channel). Blocks are sized so the
 * threads share each layer evenly. Integer sums are exact, so results do not
 * depend on the split or the thread count. */
#include "int8/qparams.h"
#include "ops/conv.h"

#include <string.h>

#define COLS 192 /* output columns per task: 4 panels */

struct qconv {
    struct qt_conv p;
    int integer;           /* ConvInteger */
    int xi, xzi, wi, wzi;  /* input indices */
    int32_t act_lo, act_hi;
    int packed;            /* qw holds the weights (an initializer) */
    struct qt_qweights qw; /* points after this struct */
};

static int pack_weights(struct qt_qweights *qw, void *mem, const struct qt_tensor *w, const struct qt_tensor *wz) {
    int64_t m = w->dims[0], k = qt_tensor_numel(w) / (m ? m : 1);
    qt_qweights_pack(qw, mem, w->data, w->dtype == QT_UINT8, m, k, k, 1, wz ? wz->data : NULL,
                     wz ? qt_tensor_numel(wz) : 1);
    return 0;
}

static int qconv_init_common(struct qt_graph *g, struct qt_node *n, int integer, struct qt_err *err) {
    int wi = integer ? 1 : 3, wzi = integer ? 3 : 5;
    const struct qt_tensor *w = n->nin > wi && n->in[wi] >= 0 ? g->v[n->in[wi]].init : NULL;
    const struct qt_tensor *wz = n->nin > wzi && n->in[wzi] >= 0 ? g->v[n->in[wzi]].init : NULL;
    int packable = w && qt_qtype_ok(w->dtype) && w->ndim >= 3 && w->dims[0] > 0 &&
                   (n->nin <= wzi || n->in[wzi] < 0 ||
                    (wz && wz->dtype == w->dtype &&
                     (qt_tensor_numel(wz) == 1 || qt_tensor_numel(wz) == w->dims[0])));
    size_t extra = packable ? qt_qweights_size(w->dims[0], qt_tensor_numel(w) / w->dims[0]) : 0;
    struct qconv *q = calloc(1, sizeof *q + extra);
    if (!q)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = q;
    q->integer = integer;
    q->xi = 0;
    q->wi = wi;
    q->xzi = integer ? 2 : 2;
    q->wzi = wzi;
    if (n->nin < (integer ? 2 : 8) || n->in[0] < 0 || n->in[wi] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs %s", integer ? "inputs x and w" : "8 or 9 inputs");
    q->act_lo = (int32_t)qt_attr_int(n, QT_ACT_LO_ATTR, -2147483647, err);
    q->act_hi = (int32_t)qt_attr_int(n, QT_ACT_HI_ATTR, 2147483647, err);
    if (qt_conv_parse(n, &q->p, err))
        return err->code;
    if (packable) {
        pack_weights(&q->qw, q + 1, w, wz);
        q->packed = 1;
    }
    return err->code;
}
static int qlinearconv_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    return qconv_init_common(g, n, 0, err);
}
static int convinteger_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    return qconv_init_common(g, n, 1, err);
}

/* depthwise convolutions with small kernels have their own kernel */
static int qconv_dw(const struct qt_conv_shape *s) {
    return qt_conv_is_depthwise(s) && s->kh * s->kw <= QT_QDW_MAXTAPS;
}

static size_t task_bytes(const struct qt_conv_shape *s) {
    int64_t cg = s->c / s->group, kp = (cg * s->kh * s->kw + 3) / 4 * 4;
    if (qconv_dw(s))
        return qt_qdw_scratch(s);
    return qt_qpack_size(kp, COLS) + sizeof(int32_t) * (COLS + 16) + (size_t)(kp * COLS) + 128;
}

static int qconv_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qconv *q = n->priv;
    const struct qt_tensor *xt = qt_in(x, n, 0), *wt = qt_in(x, n, q->wi);
    struct qt_conv_shape s;
    struct qt_qp xp, wp, yp;
    if (!qt_qtype_ok(xt->dtype) || !qt_qtype_ok(wt->dtype))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "x and w must be uint8 or int8 (got %s and %s)",
                           qt_dtype_name(xt->dtype), qt_dtype_name(wt->dtype));
    if (qt_conv_params(n, xt, wt, &q->p, &s, err))
        return err->code;
    if (!qt_in_const(x, n, q->wi))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "the weight must be constant");
    int outdt = QT_INT32;
    if (q->integer) {
        if (qt_qp_read(x, n, -1, 2, 1, "x", &xp, err) || qt_qp_read(x, n, -1, 3, s.m, "w", &wp, err))
            return err->code;
    } else {
        const struct qt_tensor *yz = qt_in(x, n, 7), *b = qt_in(x, n, 8);
        if (qt_qp_read(x, n, 1, 2, 1, "x", &xp, err) || qt_qp_read(x, n, 4, 5, s.m, "w", &wp, err) ||
            qt_qp_read(x, n, 6, 7, 1, "y", &yp, err))
            return err->code;
        outdt = yz ? yz->dtype : QT_UINT8;
        if (b && (b->dtype != QT_INT32 || qt_tensor_numel(b) != s.m || !qt_in_const(x, n, 8)))
            return qt_node_err(n, QT_EMODEL, err, "B must be a constant int32 tensor of %lld values", (long long)s.m);
    }
    if (xp.z && xp.z->dtype != xt->dtype)
        return qt_node_err(n, QT_EMODEL, err, "x zero point type differs from x");
    if (wp.z && wp.z->dtype != wt->dtype)
        return qt_node_err(n, QT_EMODEL, err, "w zero point type differs from w");
    int64_t d[4] = {s.n, s.m, s.oh, s.ow};
    if (xt->ndim == 3)
        d[2] = s.ow;
    if (qt_set_out(x, n, 0, outdt, xt->ndim, d, err))
        return err->code;
    qt_exec_scratch(x, task_bytes(&s) / sizeof(float) + 1);
    return 0;
}

struct qconv_job {
    struct qt_exec *x;
    const struct qt_conv_shape *s;
    const struct qt_qweights *qw;
    const struct qt_qrequant *rq;
    const unsigned char *in;
    unsigned char *out;
    int s8;
    int32_t xzp;    /* in x's type */
    uint8_t xzp_u8; /* shifted to the uint8 domain */
    size_t es;      /* output element size */
    int64_t cols;   /* output columns per task (at most COLS) */
    int64_t nblk, nmb, mblk;
    uint8_t *pre;   /* with nmb > 1: every column block packed once, psize bytes each */
    int32_t *precs; /* and its column sums, COLS each */
    size_t psize;
};

/* Packs column block r = (image, group, block) into buf (and cs). */
static void pack_block(const struct qconv_job *j, int64_t r, uint8_t *buf, int32_t *cs, uint8_t *rows) {
    const struct qt_conv_shape *s = j->s;
    int64_t cg = s->c / s->group, hw = s->oh * s->ow, kp = j->qw->kp;
    int64_t blk = r % j->nblk, ng = r / j->nblk, g = ng % s->group, img = ng / s->group;
    int64_t c0 = blk * j->cols, c1 = c0 + j->cols < hw ? c0 + j->cols : hw;
    const unsigned char *xin = j->in + (img * s->c + g * cg) * s->ih * s->iw;
    if (qt_conv_is_pointwise(s))
        qt_qpack_x(buf, xin + c0, j->s8, cg, kp, c1 - c0, s->ih * s->iw, 1, cs);
    else
        qt_qpack_im2col(buf, xin, j->s8, j->xzp_u8, s, cg, kp, c0, c1, cs, rows);
}

static void pack_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct qconv_job *j = arg;
    int64_t kp = j->qw->kp;
    uint8_t *rows = (uint8_t *)qt_scratch(j->x, tid) + ((qt_qpack_size(kp, COLS) + 63) & ~(size_t)63) +
                    sizeof(int32_t) * (COLS + 16);
    for (int64_t r = t0; r < t1; r++)
        pack_block(j, r, j->pre + (size_t)r * j->psize, j->qw->wzp_any ? j->precs + r * COLS : NULL, rows);
}

static void gemm_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct qconv_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    int64_t cg = s->c / s->group, mg = s->m / s->group, hw = s->oh * s->ow, kp = j->qw->kp;
    uint8_t *buf = (uint8_t *)qt_scratch(j->x, tid);
    int32_t *colsum = (int32_t *)(buf + ((qt_qpack_size(kp, COLS) + 63) & ~(size_t)63));
    uint8_t *rows = (uint8_t *)(colsum + COLS + 16);
    (void)cg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t mb = t % j->nmb, r = t / j->nmb;
        int64_t blk = r % j->nblk, ng = r / j->nblk, g = ng % s->group, img = ng / s->group;
        int64_t c0 = blk * j->cols, c1 = c0 + j->cols < hw ? c0 + j->cols : hw;
        int64_t m0 = g * mg + mb * j->mblk, m1 = m0 + j->mblk < (g + 1) * mg ? m0 + j->mblk : (g + 1) * mg;
        const uint8_t *xp = buf;
        int32_t *cs = j->qw->wzp_any ? colsum : NULL;
        if (j->pre) {
            xp = j->pre + (size_t)r * j->psize;
            cs = j->qw->wzp_any ? j->precs + r * COLS : NULL;
        } else {
            pack_block(j, r, buf, cs, rows);
        }
        qt_qgemm(j->qw, m0, m1, xp, c1 - c0, cs, j->rq, j->out + (img * s->m * hw + c0) * j->es, hw, 1);
    }
}

/* Pointwise convolutions of small images: a block of columns spans
 * several images (image-major), so the panels stay full. */
static void seg_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct qconv_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    int64_t hw = s->oh * s->ow, total = s->n * hw, kp = j->qw->kp;
    uint8_t *buf = (uint8_t *)qt_scratch(j->x, tid);
    int32_t *colsum = (int32_t *)(buf + ((qt_qpack_size(kp, COLS) + 63) & ~(size_t)63));
    for (int64_t t = t0; t < t1; t++) {
        int64_t g0 = t * j->cols, g1 = g0 + j->cols < total ? g0 + j->cols : total, n = g1 - g0;
        if (n % QT_QG_NR) /* the partial panel's columns past n stay 0 */
            memset(buf + n / QT_QG_NR * kp * QT_QG_NR, 0, (size_t)(kp * QT_QG_NR));
        for (int64_t g = g0; g < g1;) {
            int64_t img = g / hw, p = g % hw, run = hw - p < g1 - g ? hw - p : g1 - g;
            qt_qpack_seg(buf, j->in + img * s->c * hw + p, j->s8, s->c, kp, g - g0, run, hw);
            g += run;
        }
        int32_t *cs = NULL;
        if (j->qw->wzp_any) {
            qt_qpack_colsum(buf, kp, n, colsum);
            cs = colsum;
        }
        qt_qgemm_seg(j->qw, 0, s->m, buf, n, cs, j->rq, j->out, hw, g0, hw, s->m * hw);
    }
}

static void dw_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct qconv_job *j = arg;
    const struct qt_conv_shape *s = j->s;
    void *tmp = qt_scratch(j->x, tid);
    for (int64_t t = t0; t < t1; t++) {
        int64_t ch = t % s->c;
        qt_qdwconv(j->in + t * s->ih * s->iw, j->s8, j->xzp, j->qw->w + ch * j->qw->kp, j->qw->wzp[ch], s, j->rq,
                   ch, j->out + t * s->oh * s->ow * j->es, tmp);
    }
}

static int qconv_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qconv *q = n->priv;
    const struct qt_tensor *xt = qt_in(x, n, 0), *wt = qt_in(x, n, q->wi);
    struct qt_tensor *yt = qt_out(x, n, 0);
    struct qt_conv_shape s;
    struct qt_qp xp, wp, yp;
    struct qt_qrows rows = {0};
    struct qt_qweights qw;
    void *wmem = NULL;
    int rc = 0;
    if (qt_conv_params(n, xt, wt, &q->p, &s, err))
        return err->code;
    if (q->integer ? qt_qp_read(x, n, -1, 2, 1, "x", &xp, err) || qt_qp_read(x, n, -1, 3, s.m, "w", &wp, err)
                   : qt_qp_read(x, n, 1, 2, 1, "x", &xp, err) || qt_qp_read(x, n, 4, 5, s.m, "w", &wp, err) ||
                         qt_qp_read(x, n, 6, 7, 1, "y", &yp, err))
        return err->code;
    if (q->packed) {
        qw = q->qw;
    } else { /* a constant computed at plan time: packed per run */
        int64_t k = qt_tensor_numel(wt) / s.m;
        if (!(wmem = qt_malloc(qt_qweights_size(s.m, k), err)))
            return err->code;
        pack_weights(&qw, wmem, wt, wp.z);
    }
    if (qt_qrows_new(&rows, s.m, err)) {
        free(wmem);
        return err->code;
    }
    int s8 = xt->dtype == QT_INT8, dw = qconv_dw(&s);
    int32_t xzp = qt_qp_zp(&xp, 0), xzp_u8 = s8 ? xzp + 128 : xzp;
    const struct qt_tensor *bt = q->integer ? NULL : qt_in(x, n, 8);
    qt_qrows_fill(&rows, &qw, xzp_u8, bt ? bt->data : NULL, dw, &xp, &wp, q->integer ? NULL : &yp, 1.0f);
    struct qt_qrequant rq;
    qt_qout_init(&rq, yt->dtype, q->integer ? 0 : qt_qp_zp(&yp, 0), q->act_lo, q->act_hi);
    rq.bias = rows.bias;
    rq.scale = q->integer ? NULL : rows.scale;
    struct qconv_job j = {x, &s, &qw, &rq, xt->data, yt->data, s8, xzp, (uint8_t)xzp_u8, qt_dtype_size(yt->dtype),
                          COLS, 0, 1, s.m / s.group, NULL, NULL, 0};
    int64_t hw_ = s.oh * s.ow;
    if (dw) {
        qt_parallel_for(x, s.n * s.c, dw_task, &j);
    } else if (qt_conv_is_pointwise(&s) && s.group == 1 && s.n > 1 && hw_ < COLS && j.es == 1) {
        /* small images in a batch: blocks of COLS columns across images,
         * as many as a multiple of the threads */
        int64_t total = s.n * hw_, nblk = (total + COLS - 1) / COLS;
        nblk = (nblk + x->nthreads - 1) / x->nthreads * x->nthreads;
        j.cols = ((total + nblk - 1) / nblk + 15) / 16 * 16;
        qt_parallel_for(x, (total + j.cols - 1) / j.cols, seg_task, &j);
    } else {
        int64_t hw = s.oh * s.ow, mg = s.m / s.group;
        /* column blocks of at most COLS, as many as a multiple of the
         * threads so they share the work evenly (exact sums: any split
         * gives the same bytes) */
        j.nblk = (hw + COLS - 1) / COLS;
        if (x->nthreads > 1 && s.n * s.group == 1 && j.nblk > 1) {
            j.nblk = (j.nblk + x->nthreads - 1) / x->nthreads * x->nthreads;
            j.cols = ((hw + j.nblk - 1) / j.nblk + 15) / 16 * 16;
            j.nblk = (hw + j.cols - 1) / j.cols;
        }
        /* few (image, group, column block) tasks: split the output channels
         * too, in blocks of 32 rows (any split gives the same result), with
         * the column blocks packed once beforehand */
        int64_t tasks = s.n * s.group * j.nblk;
        if (x->nthreads > 1 && tasks < 4 * x->nthreads && mg > 32) {
            j.psize = (qt_qpack_size(qw.kp, COLS) + 63) & ~(size_t)63;
            j.pre = malloc(j.psize * (size_t)tasks + 64);
            j.precs = malloc(sizeof(int32_t) * (size_t)(tasks * COLS + 16));
            if (!j.pre || !j.precs) {
                free(j.pre);
                free(j.precs);
                j.pre = NULL; /* packed per task instead */
                j.precs = NULL;
            } else {
                j.mblk = 32;
                j.nmb = (mg + 31) / 32;
                qt_parallel_for(x, tasks, pack_task, &j);
            }
        }
        qt_parallel_for(x, tasks * j.nmb, gemm_task, &j);
        free(j.pre);
        free(j.precs);
    }
    qt_qrows_free(&rows);
    free(wmem);
    return rc;
}

const struct qt_op qt_op_qlinearconv = {
    .name = "QLinearConv",
    .init = qlinearconv_init,
    .infer = qconv_infer,
    .fwd = qconv_fwd,
};
const struct qt_op qt_op_convinteger = {
    .name = "ConvInteger",
    .init = convinteger_init,
    .infer = qconv_infer,
    .fwd = qconv_fwd,
};
