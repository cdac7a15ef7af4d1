/* matmul.c: ONNX MatMul, numpy semantics: 1-D operands are promoted
 * (prepend / append a dim, removed from the result), leading dims broadcast.
 * Tasks are (matrix, block of QT_GEMM_ROWS rows), each one BLAS call of a
 * fixed size (lib/ops/gemm.h), so results depend neither on the threads nor
 * on the batch size. On a CPU with the direct kernel (AVX-512,
 * lib/ops/convgemm.c) every output is instead one chain of fused
 * multiply-adds in k order, the same in any block: tasks are then blocks of
 * MM_RB rows by a column block sized so B's block stays in L2, and when B
 * has no batch dims A's matrices are taken as one block of rows (a
 * transformer's Linear layers at batch 32 stream the weight once per 96
 * rows, not once per 16 rows of each image).
 * Gradients (training): per matrix dA += dY B^T, dB += A^T dY, summed over
 * broadcast batch dims (one pass over the matrices in order). */
#include "ops/conv.h"
#include "ops/gemm.h"

#include <string.h>

static int mm_shapes(const struct qt_node *n, const struct qt_tensor *A, const struct qt_tensor *B, int64_t *M,
                     int64_t *K, int64_t *N, int *nb, int64_t *bd, int *ond, int64_t *od, struct qt_err *err) {
    char b1[160], b2[160];
    if (A->ndim < 1 || B->ndim < 1)
        return qt_node_err(n, QT_EMODEL, err, "operands must have at least one dim");
    *M = A->ndim >= 2 ? A->dims[A->ndim - 2] : 1;
    *K = A->dims[A->ndim - 1];
    int64_t K2 = B->ndim >= 2 ? B->dims[B->ndim - 2] : B->dims[0];
    *N = B->ndim >= 2 ? B->dims[B->ndim - 1] : 1;
    if (*K != K2)
        return qt_node_err(n, QT_EMODEL, err, "A %s and B %s do not multiply",
                           qt_dims_str(A->ndim, A->dims, b1, sizeof b1), qt_dims_str(B->ndim, B->dims, b2, sizeof b2));
    int na = A->ndim > 2 ? A->ndim - 2 : 0, nbb = B->ndim > 2 ? B->ndim - 2 : 0;
    if (qt_broadcast(n, na, A->dims, nbb, B->dims, nb, bd, err))
        return err->code;
    *ond = 0;
    for (int i = 0; i < *nb; i++)
        od[(*ond)++] = bd[i];
    if (A->ndim >= 2)
        od[(*ond)++] = *M;
    if (B->ndim >= 2)
        od[(*ond)++] = *N;
    return 0;
}

static int matmul_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *A = qt_in(x, n, 0), *B = qt_in(x, n, 1);
    int64_t M = 0, K = 0, N = 0, bd[QT_MAXDIM], od[QT_MAXDIM + 2];
    int nb = 0, ond = 0;
    if (!A || !B)
        return qt_node_err(n, QT_EMODEL, err, "needs two inputs");
    if (A->dtype != QT_FLOAT || B->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "float32 inputs only");
    if (mm_shapes(n, A, B, &M, &K, &N, &nb, bd, &ond, od, err))
        return err->code;
    qt_exec_scratch(x, qt_gemm_scratch(N, K));
    return qt_set_out(x, n, 0, QT_FLOAT, ond, od, err);
}

struct mm_job {
    struct qt_exec *x;
    const struct qt_tensor *A, *B;
    float *Y;
    int64_t M, K, N;
    int nb;
    int64_t nblk; /* row blocks per matrix */
    int64_t rows, ncb, cblk; /* direct kernel: rows per matrix, column blocks and their width */
    int64_t bd[QT_MAXDIM], sa[QT_MAXDIM], sb[QT_MAXDIM];
};

void qt_bcast_strides(int nd, const int64_t *d, int ond, const int64_t *od, int64_t *strides);

/* Matrix indices in A and B of output matrix `mat` (broadcast batch dims). */
static void mm_offsets(const struct mm_job *j, int64_t mat, int64_t *oa, int64_t *ob) {
    int64_t rem = mat;
    *oa = *ob = 0;
    for (int i = j->nb - 1; i >= 0; i--) {
        int64_t idx = rem % j->bd[i];
        rem /= j->bd[i];
        *oa += idx * j->sa[i];
        *ob += idx * j->sb[i];
    }
}

static void mm_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct mm_job *j = arg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t mat = t / j->nblk, blk = t % j->nblk, oa, ob;
        mm_offsets(j, mat, &oa, &ob);
        const float *A = (const float *)j->A->data + oa * j->M * j->K;
        const float *B = (const float *)j->B->data + ob * j->K * j->N;
        int64_t r0 = blk * QT_GEMM_ROWS, r1 = r0 + QT_GEMM_ROWS < j->M ? r0 + QT_GEMM_ROWS : j->M;
        qt_gemm_rows(r0, r1, j->N, j->K, 1.0f, A, j->K, 0, B, j->N, 0, 0.0f, j->Y + mat * j->M * j->N, j->N,
                     qt_scratch(j->x, tid));
    }
}

#define MM_RB 96              /* rows per direct task (a multiple of the kernel's 6) */
#define MM_BBLK (128 * 1024) /* floats of B per direct task's column block (512 KB) */

static void mm_direct_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct mm_job *j = arg;
    const struct qt_post none = {QT_POST_NONE, 0, 0};
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t cb = t % j->ncb, r = t / j->ncb, rb = r % j->nblk, mat = r / j->nblk, oa = 0, ob = 0;
        if (j->rows == j->M)
            mm_offsets(j, mat, &oa, &ob);
        const float *A = (const float *)j->A->data + oa * j->M * j->K;
        const float *B = (const float *)j->B->data + ob * j->K * j->N;
        int64_t r0 = rb * MM_RB, r1 = r0 + MM_RB < j->rows ? r0 + MM_RB : j->rows;
        int64_t c0 = cb * j->cblk, c1 = c0 + j->cblk < j->N ? c0 + j->cblk : j->N;
        qt_conv_gemm(r1 - r0, c1 - c0, j->K, A + r0 * j->K, j->K, B + c0, j->N, NULL, &none,
                     j->Y + mat * j->rows * j->N + r0 * j->N + c0, j->N);
    }
}

/* the direct kernel's tasks; B without batch dims: A's matrices as one */
static void mm_direct(struct qt_exec *x, struct mm_job *j, int64_t nmat, int nbb) {
    int64_t nm = nbb == 0 ? 1 : nmat;
    j->rows = nbb == 0 ? nmat * j->M : j->M;
    j->nblk = (j->rows + MM_RB - 1) / MM_RB;
    j->cblk = MM_BBLK / j->K / 64 * 64;
    if (j->cblk < 64)
        j->cblk = 64;
    if (j->cblk > j->N)
        j->cblk = j->N;
    j->ncb = (j->N + j->cblk - 1) / j->cblk;
    qt_parallel_for(x, nm * j->nblk * j->ncb, mm_direct_task, j);
}

static int matmul_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct mm_job j = {.x = x, .A = qt_in(x, n, 0), .B = qt_in(x, n, 1), .Y = qt_out(x, n, 0)->data};
    int64_t od[QT_MAXDIM + 2];
    int ond;
    if (mm_shapes(n, j.A, j.B, &j.M, &j.K, &j.N, &j.nb, j.bd, &ond, od, err))
        return err->code;
    int na = j.A->ndim > 2 ? j.A->ndim - 2 : 0, nbb = j.B->ndim > 2 ? j.B->ndim - 2 : 0;
    qt_bcast_strides(na, j.A->dims, j.nb, j.bd, j.sa);
    qt_bcast_strides(nbb, j.B->dims, j.nb, j.bd, j.sb);
    /* strides above count elements of the batch dims; scale to matrices */
    int64_t nmat = qt_numel(j.nb, j.bd);
    if (j.M == 0 || j.N == 0 || nmat == 0)
        return 0;
    if (j.K == 0) {
        memset(j.Y, 0, sizeof(float) * (size_t)(nmat * j.M * j.N));
        return 0;
    }
    if (qt_gemm_direct()) {
        mm_direct(x, &j, nmat, nbb);
        return 0;
    }
    j.nblk = (j.M + QT_GEMM_ROWS - 1) / QT_GEMM_ROWS;
    qt_parallel_for(x, nmat * j.nblk, mm_task, &j);
    return 0;
}

static int matmul_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct mm_job j = {.x = x, .A = qt_in(x, n, 0), .B = qt_in(x, n, 1)};
    int64_t od[QT_MAXDIM + 2];
    int ond;
    float *da = qt_gin(x, n, 0), *db = qt_gin(x, n, 1);
    const float *dy = qt_gout(x, n, 0);
    if (mm_shapes(n, j.A, j.B, &j.M, &j.K, &j.N, &j.nb, j.bd, &ond, od, err))
        return err->code;
    int na = j.A->ndim > 2 ? j.A->ndim - 2 : 0, nbb = j.B->ndim > 2 ? j.B->ndim - 2 : 0;
    qt_bcast_strides(na, j.A->dims, j.nb, j.bd, j.sa);
    qt_bcast_strides(nbb, j.B->dims, j.nb, j.bd, j.sb);
    int64_t nmat = qt_numel(j.nb, j.bd);
    if (j.M == 0 || j.N == 0 || j.K == 0)
        return 0;
    for (int64_t mat = 0; mat < nmat; mat++) {
        int64_t oa, ob;
        mm_offsets(&j, mat, &oa, &ob);
        qt_gemm_bwd(j.M, j.N, j.K, 1.0f, (const float *)j.A->data + oa * j.M * j.K, j.K, 0,
                    (const float *)j.B->data + ob * j.K * j.N, j.N, 0, dy + mat * j.M * j.N,
                    da ? da + oa * j.M * j.K : NULL, db ? db + ob * j.K * j.N : NULL);
    }
    return 0;
}

static int matmul_weight_axis(const struct qt_node *n, int wndim) {
    (void)n;
    return wndim - 1;
}

/* A constant B is a weight; two activations (attention's Q K^T and
 * probabilities x V) are quantized on both inputs like Add's. */
static int matmul_qrole(const struct qt_graph *g, const struct qt_node *n) {
    return n->nin > 1 && qt_qunit_const(g, n->in[1]) ? QT_QR_COMPUTE : QT_QR_BINARY;
}

const struct qt_op qt_op_matmul = {
    .name = "MatMul",
    .infer = matmul_infer,
    .fwd = matmul_fwd,
    .bwd = matmul_bwd,
    /* a weight only when a constant 2-D [K, N]; two activations: both quantized */
    .quant = {.role_of = matmul_qrole, .role = QT_QR_COMPUTE, .flags = QT_QF_FUSE_ACT, .weight = 1, .wrank = 2, .lower = QT_QL_LINEAR,
              .lower_op = "QLinearMatMul", .weight_axis = matmul_weight_axis},
};
