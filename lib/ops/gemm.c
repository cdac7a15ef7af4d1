/* gemm.c: ONNX Gemm. Y = alpha * A' * B' + beta * C, A' = transA ? A^T : A,
 * B' likewise; C broadcasts to [M, N] (scalar, [N], [M, 1], [M, N]).
 * Tasks are fixed blocks of QT_GEMM_ROWS rows so results do not depend on the
 * threads. Every block is packed into a [QT_GEMM_ROWS, K] scratch matrix (zero
 * rows past M) so the BLAS always sees the same M and layout: OpenBLAS picks
 * other kernels for other sizes, and a row's result would otherwise depend on
 * the batch size it was run with.
 * Gradients (training): dA' = alpha * dY B'^T, dB' = alpha * A'^T dY,
 * dC = beta * dY summed over the dimensions C was broadcast along. */
#include "ops/gemm.h"
#include "ops/conv.h"

#include <cblas.h>
#include <string.h>


struct gemm_attr {
    float alpha, beta;
    int ta, tb;
};

static int gemm_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct gemm_attr *a = calloc(1, sizeof *a);
    if (!a)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = a;
    a->alpha = qt_attr_float(n, "alpha", 1.0f, err);
    a->beta = qt_attr_float(n, "beta", 1.0f, err);
    a->ta = qt_attr_int(n, "transA", 0, err) != 0;
    a->tb = qt_attr_int(n, "transB", 0, err) != 0;
    if (n->nin < 2 || n->in[0] < 0 || n->in[1] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs inputs A and B");
    return err->code;
}

static int gemm_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct gemm_attr *a = n->priv;
    const struct qt_tensor *A = qt_in(x, n, 0), *B = qt_in(x, n, 1), *C = qt_in(x, n, 2);
    char b1[160], b2[160];
    if (A->dtype != QT_FLOAT || B->dtype != QT_FLOAT || (C && C->dtype != QT_FLOAT))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "float32 inputs only");
    if (A->ndim != 2 || B->ndim != 2)
        return qt_node_err(n, QT_EMODEL, err, "A %s and B %s must be matrices",
                           qt_dims_str(A->ndim, A->dims, b1, sizeof b1), qt_dims_str(B->ndim, B->dims, b2, sizeof b2));
    int64_t M = a->ta ? A->dims[1] : A->dims[0], K = a->ta ? A->dims[0] : A->dims[1];
    int64_t K2 = a->tb ? B->dims[1] : B->dims[0], N = a->tb ? B->dims[0] : B->dims[1];
    if (K != K2)
        return qt_node_err(n, QT_EMODEL, err, "A %s and B %s do not multiply",
                           qt_dims_str(A->ndim, A->dims, b1, sizeof b1), qt_dims_str(B->ndim, B->dims, b2, sizeof b2));
    if (C) {
        int64_t d[2] = {M, N}, o[QT_MAXDIM];
        int nd;
        if (C->ndim > 2 || qt_broadcast(n, C->ndim, C->dims, 2, d, &nd, o, err) || o[0] != M || o[1] != N)
            return qt_node_err(n, QT_EMODEL, err, "C %s does not broadcast to [%lld,%lld]",
                               qt_dims_str(C->ndim, C->dims, b1, sizeof b1), (long long)M, (long long)N);
    }
    int64_t d[2] = {M, N};
    qt_exec_scratch(x, qt_gemm_scratch(N, K));
    return qt_set_out(x, n, 0, QT_FLOAT, 2, d, err);
}

struct gemm_job {
    struct qt_exec *x;
    const struct gemm_attr *a;
    const struct qt_tensor *A, *B, *C;
    float *Y;
    int64_t M, N, K;
};

void qt_gemm_rows(int64_t r0, int64_t r1, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, int ta,
                  const float *B, int64_t ldb, int tb, float beta, float *Y, int64_t ldy, float *scratch) {
    float *pa = scratch, *py = pa + QT_GEMM_ROWS * K;
    int64_t m = r1 - r0;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t k = 0; k < K; k++)
            pa[(r - r0) * K + k] = ta ? A[k * lda + r] : A[r * lda + k];
    memset(pa + m * K, 0, sizeof(float) * (size_t)((QT_GEMM_ROWS - m) * K));
    if (beta != 0) {
        for (int64_t r = 0; r < m; r++)
            memcpy(py + r * N, Y + (r0 + r) * ldy, sizeof(float) * (size_t)N);
        memset(py + m * N, 0, sizeof(float) * (size_t)((QT_GEMM_ROWS - m) * N));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, QT_GEMM_ROWS, (int)N, (int)K, alpha,
                pa, (int)K, B, (int)ldb, beta, py, (int)N);
    for (int64_t r = 0; r < m; r++)
        memcpy(Y + (r0 + r) * ldy, py + r * N, sizeof(float) * (size_t)N);
}

static void gemm_task(void *arg, int64_t b0, int64_t b1, int tid) {
    const struct gemm_job *j = arg;
    const struct gemm_attr *a = j->a;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t r0 = blk * QT_GEMM_ROWS, r1 = r0 + QT_GEMM_ROWS < j->M ? r0 + QT_GEMM_ROWS : j->M;
        float beta = 0;
        if (j->C && a->beta != 0) {
            const struct qt_tensor *C = j->C;
            const float *c = C->data;
            int64_t sm = C->ndim == 2 && C->dims[0] != 1 ? C->dims[1] : 0;
            int64_t sn = (C->ndim == 2 && C->dims[1] != 1) || (C->ndim == 1 && C->dims[0] != 1) ? 1 : 0;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t k = 0; k < j->N; k++)
                    j->Y[r * j->N + k] = c[r * sm + k * sn];
            beta = a->beta;
        }
        qt_gemm_rows(r0, r1, j->N, j->K, a->alpha, j->A->data, j->A->dims[1], a->ta, j->B->data, j->B->dims[1],
                     a->tb, beta, j->Y, j->N, qt_scratch(j->x, tid));
    }
}

/* A Linear layer (Y = A B^T + c, c one row) on a CPU with the direct
 * kernel: every output is a dot product of an A row and a B row, so it does
 * not depend on the batch; tasks are blocks of DOT_N outputs of a block of
 * QT_GEMM_ROWS rows. */
#define DOT_N 64
static int linear_form(const struct gemm_attr *a, const struct qt_tensor *C, int64_t N) {
    return !a->ta && a->tb && a->alpha == 1.0f &&
           (!C || a->beta == 0 || (a->beta == 1.0f && qt_tensor_numel(C) == N && (C->ndim == 1 || C->dims[0] == 1))) &&
           qt_gemm_direct();
}

static void linear_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct gemm_job *j = arg;
    int64_t nb = (j->N + DOT_N - 1) / DOT_N;
    const struct qt_post none = {QT_POST_NONE, 0, 0};
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t r0 = t / nb * QT_GEMM_ROWS, n0 = t % nb * DOT_N;
        int64_t r1 = r0 + QT_GEMM_ROWS < j->M ? r0 + QT_GEMM_ROWS : j->M;
        int64_t n1 = n0 + DOT_N < j->N ? n0 + DOT_N : j->N;
        const float *bias = j->C && j->a->beta != 0 ? (const float *)j->C->data + n0 : NULL;
        qt_gemm_dot(n1 - n0, r1 - r0, j->K, (const float *)j->B->data + n0 * j->K, j->K,
                    (const float *)j->A->data + r0 * j->K, j->K, bias, &none, j->Y + r0 * j->N + n0, 1, j->N);
    }
}

static int gemm_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct gemm_attr *a = n->priv;
    struct gemm_job j = {x, a, qt_in(x, n, 0), qt_in(x, n, 1), qt_in(x, n, 2), qt_out(x, n, 0)->data, 0, 0, 0};
    (void)err;
    j.M = a->ta ? j.A->dims[1] : j.A->dims[0];
    j.K = a->ta ? j.A->dims[0] : j.A->dims[1];
    j.N = a->tb ? j.B->dims[0] : j.B->dims[1];
    if (j.M == 0 || j.N == 0)
        return 0;
    if (linear_form(a, j.C, j.N)) {
        qt_parallel_for(x, (j.M + QT_GEMM_ROWS - 1) / QT_GEMM_ROWS * ((j.N + DOT_N - 1) / DOT_N), linear_task, &j);
        return 0;
    }
    qt_parallel_for(x, (j.M + QT_GEMM_ROWS - 1) / QT_GEMM_ROWS, gemm_task, &j);
    return 0;
}

void qt_gemm_bwd(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, int ta, const float *B,
                 int64_t ldb, int tb, const float *dY, float *dA, float *dB) {
    if (dA) {
        if (!ta) /* [M, K] = dY [M, N] B'^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasNoTrans : CblasTrans, (int)M, (int)K, (int)N, alpha,
                        dY, (int)N, B, (int)ldb, 1.0f, dA, (int)K);
        else /* [K, M] = B' dY^T */
            cblas_sgemm(CblasRowMajor, tb ? CblasTrans : CblasNoTrans, CblasTrans, (int)K, (int)M, (int)N, alpha, B,
                        (int)ldb, dY, (int)N, 1.0f, dA, (int)M);
    }
    if (dB) {
        if (!tb) /* [K, N] = A'^T dY */
            cblas_sgemm(CblasRowMajor, ta ? CblasNoTrans : CblasTrans, CblasNoTrans, (int)K, (int)N, (int)M, alpha,
                        A, (int)lda, dY, (int)N, 1.0f, dB, (int)N);
        else /* [N, K] = dY^T A' */
            cblas_sgemm(CblasRowMajor, CblasTrans, ta ? CblasTrans : CblasNoTrans, (int)N, (int)K, (int)M, alpha,
                        dY, (int)N, A, (int)lda, 1.0f, dB, (int)K);
    }
}

static int gemm_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct gemm_attr *a = n->priv;
    const struct qt_tensor *A = qt_in(x, n, 0), *B = qt_in(x, n, 1), *C = qt_in(x, n, 2);
    const float *dy = qt_gout(x, n, 0);
    float *dc = qt_gin(x, n, 2);
    int64_t M = a->ta ? A->dims[1] : A->dims[0], K = a->ta ? A->dims[0] : A->dims[1];
    int64_t N = a->tb ? B->dims[0] : B->dims[1];
    (void)err;
    if (M == 0 || N == 0 || K == 0)
        return 0;
    qt_gemm_bwd(M, N, K, a->alpha, A->data, A->dims[1], a->ta, B->data, B->dims[1], a->tb, dy, qt_gin(x, n, 0),
                qt_gin(x, n, 1));
    if (dc) {
        int64_t sm = C->ndim == 2 && C->dims[0] != 1 ? C->dims[1] : 0;
        int64_t sn = (C->ndim == 2 && C->dims[1] != 1) || (C->ndim == 1 && C->dims[0] != 1) ? 1 : 0;
        for (int64_t r = 0; r < M; r++)
            for (int64_t k = 0; k < N; k++)
                dc[r * sm + k * sn] += a->beta * dy[r * N + k];
    }
    return 0;
}

/* B is [N, K] with transB (axis 0 holds the outputs), [K, N] otherwise. */
static int gemm_weight_axis(const struct qt_node *n, int wndim) {
    struct qt_err e = {0};
    (void)wndim;
    return qt_attr_int(n, "transB", 0, &e) ? 0 : 1;
}

/* x [B, K] times W^T [N, K] is a 1x1 convolution of B images, K channels
 * in and N out (the layout AdaQuant tunes); other layouts are not. */
static int gemm_as_conv(const struct qt_exec *x, const struct qt_node *n, struct qt_conv_shape *s,
                        struct qt_err *err) {
    struct qt_err e = {0};
    const struct qt_tensor *xt = &x->t[n->in[0]], *yt = &x->t[n->out[0]];
    (void)err;
    if (!qt_attr_int(n, "transB", 0, &e) || qt_attr_int(n, "transA", 0, &e) || xt->ndim != 2)
        return 0;
    *s = (struct qt_conv_shape){.n = xt->dims[0], .c = xt->dims[1], .m = yt->dims[1], .group = 1, .ih = 1,
                                .iw = 1, .kh = 1, .kw = 1, .oh = 1, .ow = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
    return 1;
}

const struct qt_op qt_op_gemm = {
    .name = "Gemm",
    .init = gemm_init,
    .infer = gemm_infer,
    .fwd = gemm_fwd,
    .bwd = gemm_bwd,
    .quant = {.role = QT_QR_COMPUTE, .flags = QT_QF_FUSE_ACT | QT_QF_ABSORB_BN, .weight = 1, .bias = 2,
              .lower = QT_QL_GEMM, .lower_contrib = 1, .lower_op = "QGemm", .weight_axis = gemm_weight_axis,
              .as_conv = gemm_as_conv},
};
