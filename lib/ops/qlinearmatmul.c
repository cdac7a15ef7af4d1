/* qlinearmatmul.c: ONNX QLinearMatMul and MatMulInteger, and ONNX Runtime's
 * com.microsoft QGemm, on integer kernels, with a constant 2-D B; QLinearMatMul
 * and MatMulInteger also with B computed at run time and batched: a
 * [..., N, K] x b [..., K, M], the batch dimensions broadcast as MatMul's
 * (attention's Q K^T and probabilities x V), b per tensor, each of b's
 * matrices packed as it comes.
 *
 * QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp):
 *   acc[i,j] = sum_k (a[i,k] - a_zp) (b[k,j] - b_zp[j])
 *   y = saturate(round_half_even(acc * (a_scale * b_scale[j] / y_scale)) + y_zp)
 * a: [..., N, K] uint8/int8; b: [K, M] uint8/int8 per tensor or per column.
 * MatMulInteger(A, B, a_zp, b_zp) returns acc as int32.
 * QGemm(A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp), attributes
 * alpha, transA (0 only), transB: acc + C (int32, [M]) scaled by
 * alpha * a_scale * b_scale[j], then requantized like QLinearMatMul when
 * y_scale is given, else the float32 result.
 * Nodes made by qt_int8_lower may carry qtool_act_lo / qtool_act_hi.
 * Tasks: blocks of rows of a x blocks of columns of b; exact integer sums. */
#include "int8/qparams.h"
#include "ops/eltwise.h"

#include <string.h>

#define ROWS 192 /* rows of a per task */
#define COLB 64  /* columns of b per task */

enum { QK_QLINEAR, QK_INTEGER, QK_QGEMM };

struct qmm {
    int kind;
    int bi, bzi, ci; /* input indices of b, its zero point and the bias (-1) */
    int transb;
    float alpha;
    int32_t act_lo, act_hi;
    int packed;
    struct qt_qweights qw;
};

/* b as weight rows: row j = column j of b (or row j of b transposed). */
static void pack_b(struct qt_qweights *qw, void *mem, const struct qt_tensor *b, const struct qt_tensor *bz,
                   int transb) {
    int64_t K = transb ? b->dims[1] : b->dims[0], M = transb ? b->dims[0] : b->dims[1];
    qt_qweights_pack(qw, mem, b->data, b->dtype == QT_UINT8, M, K, transb ? K : 1, transb ? 1 : M,
                     bz ? bz->data : NULL, bz ? qt_tensor_numel(bz) : 1);
}

static int qmm_init_common(struct qt_graph *g, struct qt_node *n, int kind, struct qt_err *err) {
    int bi = kind == QK_INTEGER ? 1 : 3, bzi = kind == QK_INTEGER ? 3 : 5;
    const struct qt_tensor *b = n->nin > bi && n->in[bi] >= 0 ? g->v[n->in[bi]].init : NULL;
    const struct qt_tensor *bz = n->nin > bzi && n->in[bzi] >= 0 ? g->v[n->in[bzi]].init : NULL;
    int transb = kind == QK_QGEMM ? (int)qt_attr_int(n, "transB", 0, err) : 0;
    /* a zero point of another type or size is left to the run (qt_qp_read names it) */
    int packable = b && qt_qtype_ok(b->dtype) && b->ndim == 2 &&
                   (n->nin <= bzi || n->in[bzi] < 0 ||
                    (bz && bz->dtype == b->dtype &&
                     (qt_tensor_numel(bz) == 1 || qt_tensor_numel(bz) == b->dims[transb ? 0 : 1])));
    size_t extra = packable ? qt_qweights_size(b->dims[transb ? 0 : 1], b->dims[transb ? 1 : 0]) : 0;
    struct qmm *q = calloc(1, sizeof *q + extra);
    if (!q)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = q;
    q->kind = kind;
    q->bi = bi;
    q->bzi = bzi;
    q->ci = kind == QK_QGEMM ? 6 : -1;
    q->transb = transb;
    q->alpha = kind == QK_QGEMM ? qt_attr_float(n, "alpha", 1.0f, err) : 1.0f;
    q->act_lo = (int32_t)qt_attr_int(n, QT_ACT_LO_ATTR, -2147483647, err);
    q->act_hi = (int32_t)qt_attr_int(n, QT_ACT_HI_ATTR, 2147483647, err);
    if (kind == QK_QGEMM && qt_attr_int(n, "transA", 0, err))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "transA=1 is not supported");
    int need = kind == QK_INTEGER ? 2 : kind == QK_QGEMM ? 6 : 8;
    if (n->nin < need || n->in[0] < 0 || n->in[bi] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs at least %d inputs", need);
    if (err->code)
        return err->code;
    if (packable) {
        pack_b(&q->qw, q + 1, b, bz, transb);
        q->packed = 1;
    }
    return 0;
}
static int qlinearmatmul_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    return qmm_init_common(g, n, QK_QLINEAR, err);
}
static int matmulinteger_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    return qmm_init_common(g, n, QK_INTEGER, err);
}
static int qgemm_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    return qmm_init_common(g, n, QK_QGEMM, err);
}

/* Reads the quantization parameters; *outdt the output type. */
static int qmm_params(struct qt_exec *x, const struct qt_node *n, int64_t M, struct qt_qp *ap, struct qt_qp *bp,
                      struct qt_qp *yp, int *has_y, int *outdt, struct qt_err *err) {
    const struct qmm *q = n->priv;
    *has_y = 0;
    if (q->kind == QK_INTEGER) {
        *outdt = QT_INT32;
        return qt_qp_read(x, n, -1, 2, 1, "a", ap, err) || qt_qp_read(x, n, -1, 3, M, "b", bp, err) ? err->code : 0;
    }
    if (qt_qp_read(x, n, 1, 2, 1, "a", ap, err) || qt_qp_read(x, n, 4, 5, M, "b", bp, err))
        return err->code;
    int ys = q->kind == QK_QGEMM ? 7 : 6, yz = ys + 1;
    if (q->kind == QK_QGEMM && !qt_in(x, n, ys)) {
        *outdt = QT_FLOAT;
        return 0;
    }
    if (qt_qp_read(x, n, ys, yz, 1, "y", yp, err))
        return err->code;
    *has_y = 1;
    *outdt = qt_in(x, n, yz) ? qt_in(x, n, yz)->dtype : QT_UINT8;
    return 0;
}

/* The batch dimensions of a [..., N, K] x b [..., K, M] broadcast into od
 * (*ond of them); -1 when they do not. */
static int mm_batch(const struct qt_tensor *a, const struct qt_tensor *b, int64_t *od, int *ond) {
    int na = a->ndim - 2, nb = b->ndim - 2, no = na > nb ? na : nb;
    for (int i = 0; i < no; i++) {
        int ia = i - (no - na), ib = i - (no - nb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return -1;
        od[i] = da == 1 ? db : da;
    }
    *ond = no;
    return 0;
}

/* B not a constant 2-D tensor: a [..., N, K] x b [..., K, M], per-tensor b. */
static int qmm_batched_infer(struct qt_exec *x, const struct qt_node *n, const struct qt_tensor *a,
                             const struct qt_tensor *b, struct qt_err *err) {
    struct qt_qp ap, bp, yp;
    int has_y, outdt, ond;
    int64_t d[QT_MAXDIM + 2];
    char b1[160], b2[160];
    if (a->ndim < 2 || b->ndim < 2 || a->dims[a->ndim - 1] != b->dims[b->ndim - 2] || mm_batch(a, b, d, &ond))
        return qt_node_err(n, QT_EMODEL, err, "a %s and b %s do not multiply",
                           qt_dims_str(a->ndim, a->dims, b1, sizeof b1), qt_dims_str(b->ndim, b->dims, b2, sizeof b2));
    int64_t K = b->dims[b->ndim - 2], M = b->dims[b->ndim - 1];
    if (qmm_params(x, n, 1, &ap, &bp, &yp, &has_y, &outdt, err))
        return err->code;
    if ((ap.z && ap.z->dtype != a->dtype) || (bp.z && bp.z->dtype != b->dtype))
        return qt_node_err(n, QT_EMODEL, err, "a zero point type differs from a, or b's from b");
    d[ond] = a->dims[a->ndim - 2];
    d[ond + 1] = M;
    if (qt_set_out(x, n, 0, outdt, ond + 2, d, err))
        return err->code;
    qt_exec_scratch(x, (qt_qpack_size((K + 3) / 4 * 4, ROWS) + sizeof(int32_t) * (ROWS + 16) + 64) / sizeof(float));
    return 0;
}

static int qmm_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qmm *q = n->priv;
    const struct qt_tensor *a = qt_in(x, n, 0), *b = qt_in(x, n, q->bi);
    struct qt_qp ap, bp, yp;
    int has_y, outdt;
    char b1[160], b2[160];
    if (!qt_qtype_ok(a->dtype) || !qt_qtype_ok(b->dtype))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "a and b must be uint8 or int8 (got %s and %s)",
                           qt_dtype_name(a->dtype), qt_dtype_name(b->dtype));
    if (q->kind != QK_QGEMM && (b->ndim != 2 || !qt_in_const(x, n, q->bi)))
        return qmm_batched_infer(x, n, a, b, err);
    if (b->ndim != 2 || !qt_in_const(x, n, q->bi))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "b must be a constant 2-D tensor");
    int64_t K = q->transb ? b->dims[1] : b->dims[0], M = q->transb ? b->dims[0] : b->dims[1];
    if (a->ndim < 2 || a->dims[a->ndim - 1] != K || (q->kind == QK_QGEMM && a->ndim != 2))
        return qt_node_err(n, QT_EMODEL, err, "a %s and b %s do not multiply",
                           qt_dims_str(a->ndim, a->dims, b1, sizeof b1), qt_dims_str(b->ndim, b->dims, b2, sizeof b2));
    if (qmm_params(x, n, M, &ap, &bp, &yp, &has_y, &outdt, err))
        return err->code;
    if (ap.z && ap.z->dtype != a->dtype)
        return qt_node_err(n, QT_EMODEL, err, "a zero point type differs from a");
    if (bp.z && bp.z->dtype != b->dtype)
        return qt_node_err(n, QT_EMODEL, err, "b zero point type differs from b");
    const struct qt_tensor *c = q->ci >= 0 ? qt_in(x, n, q->ci) : NULL;
    if (c && (c->dtype != QT_INT32 || qt_tensor_numel(c) != M || !qt_in_const(x, n, q->ci)))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "C must be a constant int32 tensor of %lld values", (long long)M);
    int64_t d[QT_MAXDIM];
    memcpy(d, a->dims, sizeof(int64_t) * (size_t)a->ndim);
    d[a->ndim - 1] = M;
    if (qt_set_out(x, n, 0, outdt, a->ndim, d, err))
        return err->code;
    qt_exec_scratch(x, (qt_qpack_size((K + 3) / 4 * 4, ROWS) + sizeof(int32_t) * (ROWS + 16) + 64) / sizeof(float));
    return 0;
}

struct qmm_job {
    struct qt_exec *x;
    const struct qt_qweights *qw;
    const struct qt_qrequant *rq;
    const unsigned char *a;
    unsigned char *out;
    int s8;
    int64_t N, K, M, nrb, ncb;
    size_t es;
};

static void qmm_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct qmm_job *j = arg;
    uint8_t *buf = (uint8_t *)qt_scratch(j->x, tid);
    int32_t *colsum = (int32_t *)(buf + ((qt_qpack_size(j->qw->kp, ROWS) + 63) & ~(size_t)63));
    int64_t last = -1;
    for (int64_t t = t0; t < t1; t++) {
        int64_t cb = t % j->ncb, rb = t / j->ncb;
        int64_t r0 = rb * ROWS, r1 = r0 + ROWS < j->N ? r0 + ROWS : j->N;
        int64_t m0 = cb * COLB, m1 = m0 + COLB < j->M ? m0 + COLB : j->M;
        int32_t *cs = j->qw->wzp_any ? colsum : NULL;
        if (rb != last) /* a's block is packed once per task run */
            qt_qpack_x(buf, j->a + r0 * j->K, j->s8, j->K, j->qw->kp, r1 - r0, 1, j->K, cs);
        last = rb;
        qt_qgemm(j->qw, m0, m1, buf, r1 - r0, cs, j->rq, j->out + r0 * j->M * j->es, 1, j->M);
    }
}

/* a [..., N, K] x b [..., K, M] (see qmm_batched_infer): per output matrix,
 * b's matrix packed into weight rows, then the 2-D kernel. */
static int qmm_batched_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qmm *q = n->priv;
    const struct qt_tensor *a = qt_in(x, n, 0), *b = qt_in(x, n, q->bi);
    struct qt_tensor *y = qt_out(x, n, 0);
    struct qt_qp ap, bp, yp;
    struct qt_qrows rows = {0};
    struct qt_qweights qw;
    int has_y, outdt, ond;
    int64_t od[QT_MAXDIM + 2], sa[QT_MAXDIM + 2], sb[QT_MAXDIM + 2];
    int64_t N = a->dims[a->ndim - 2], K = a->dims[a->ndim - 1], M = b->dims[b->ndim - 1];
    if (qmm_params(x, n, 1, &ap, &bp, &yp, &has_y, &outdt, err) || mm_batch(a, b, od, &ond))
        return err->code ? err->code : qt_node_err(n, QT_EMODEL, err, "batch dimensions do not broadcast");
    qt_bcast_strides(a->ndim - 2, a->dims, ond, od, sa);
    qt_bcast_strides(b->ndim - 2, b->dims, ond, od, sb);
    int64_t nmat = 1;
    for (int i = 0; i < ond; i++)
        nmat *= od[i];
    if (N == 0 || M == 0 || nmat == 0)
        return 0;
    void *wmem = qt_malloc(qt_qweights_size(M, K), err);
    if (!wmem || qt_qrows_new(&rows, M, err)) {
        free(wmem);
        return err->code;
    }
    int s8 = a->dtype == QT_INT8;
    int32_t azp = qt_qp_zp(&ap, 0), azp_u8 = s8 ? azp + 128 : azp;
    size_t esa = qt_dtype_size(a->dtype), esb = qt_dtype_size(b->dtype), esy = qt_dtype_size(outdt);
    struct qt_tensor bm = *b;
    bm.ndim = 2;
    bm.dims[0] = K;
    bm.dims[1] = M;
    for (int64_t mat = 0; mat < nmat; mat++) {
        int64_t oa = 0, ob = 0, r = mat;
        for (int i = ond - 1; i >= 0; i--) {
            oa += (r % od[i]) * sa[i];
            ob += (r % od[i]) * sb[i];
            r /= od[i];
        }
        bm.data = (unsigned char *)b->data + (size_t)(ob * K * M) * esb;
        pack_b(&qw, wmem, &bm, bp.z, 0);
        qt_qrows_fill(&rows, &qw, azp_u8, NULL, 0, &ap, &bp, has_y ? &yp : NULL, 1.0f);
        struct qt_qrequant rq;
        qt_qout_init(&rq, outdt, has_y ? qt_qp_zp(&yp, 0) : 0, q->act_lo, q->act_hi);
        rq.bias = rows.bias;
        rq.scale = q->kind == QK_INTEGER ? NULL : rows.scale;
        struct qmm_job j = {x, &qw, &rq, (const unsigned char *)a->data + (size_t)(oa * N * K) * esa,
                            (unsigned char *)y->data + (size_t)(mat * N * M) * esy, s8, N, K, M,
                            (N + ROWS - 1) / ROWS, (M + COLB - 1) / COLB, esy};
        qt_parallel_for(x, j.nrb * j.ncb, qmm_task, &j);
    }
    qt_qrows_free(&rows);
    free(wmem);
    return 0;
}

static int qmm_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qmm *q = n->priv;
    if (q->kind != QK_QGEMM && !q->packed && (qt_in(x, n, q->bi)->ndim != 2 || !qt_in_const(x, n, q->bi)))
        return qmm_batched_fwd(x, n, err);
    const struct qt_tensor *a = qt_in(x, n, 0), *b = qt_in(x, n, q->bi);
    struct qt_tensor *y = qt_out(x, n, 0);
    struct qt_qp ap, bp, yp;
    struct qt_qrows rows = {0};
    struct qt_qweights qw;
    void *wmem = NULL;
    int has_y, outdt;
    int64_t K = q->transb ? b->dims[1] : b->dims[0], M = q->transb ? b->dims[0] : b->dims[1];
    if (qmm_params(x, n, M, &ap, &bp, &yp, &has_y, &outdt, err))
        return err->code;
    if (q->packed) {
        qw = q->qw;
    } else {
        if (!(wmem = qt_malloc(qt_qweights_size(M, K), err)))
            return err->code;
        pack_b(&qw, wmem, b, bp.z, q->transb);
    }
    if (qt_qrows_new(&rows, M, err)) {
        free(wmem);
        return err->code;
    }
    int s8 = a->dtype == QT_INT8;
    int32_t azp = qt_qp_zp(&ap, 0), azp_u8 = s8 ? azp + 128 : azp;
    const struct qt_tensor *c = q->ci >= 0 ? qt_in(x, n, q->ci) : NULL;
    qt_qrows_fill(&rows, &qw, azp_u8, c ? c->data : NULL, 0, &ap, &bp, has_y ? &yp : NULL, q->alpha);
    struct qt_qrequant rq;
    qt_qout_init(&rq, outdt, has_y ? qt_qp_zp(&yp, 0) : 0, q->act_lo, q->act_hi);
    rq.bias = rows.bias;
    rq.scale = q->kind == QK_INTEGER ? NULL : rows.scale;
    int64_t N = qt_tensor_numel(a) / K;
    struct qmm_job j = {x, &qw, &rq, a->data, y->data, s8, N, K, M, (N + ROWS - 1) / ROWS, (M + COLB - 1) / COLB,
                        qt_dtype_size(outdt)};
    if (N > 0)
        qt_parallel_for(x, j.nrb * j.ncb, qmm_task, &j);
    qt_qrows_free(&rows);
    free(wmem);
    return 0;
}

const struct qt_op qt_op_qlinearmatmul = {
    .name = "QLinearMatMul",
    .init = qlinearmatmul_init,
    .infer = qmm_infer,
    .fwd = qmm_fwd,
};
const struct qt_op qt_op_matmulinteger = {
    .name = "MatMulInteger",
    .init = matmulinteger_init,
    .infer = qmm_infer,
    .fwd = qmm_fwd,
};
const struct qt_op qt_op_qgemm = {
    .name = "QGemm",
    .domain = "com.microsoft",
    .init = qgemm_init,
    .infer = qmm_infer,
    .fwd = qmm_fwd,
};
