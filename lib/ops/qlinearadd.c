/* qlinearadd.c: ONNX Runtime's com.microsoft QLinearAdd, uint8 or int8.
 *
 * QLinearAdd(A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp):
 *   C = saturate(round_half_even(a A + b B + f))   with numpy broadcasting,
 * where a = A_scale / C_scale, b = B_scale / C_scale and
 * f = C_zp - (a A_zp + b B_zp), all float32 and in the order and with the
 * fused multiply-adds of ONNX Runtime's MLAS kernel (MlasQLinearAdd), so the
 * results are the same bit for bit. Scales and zero points per tensor. */
#include "int8/qparams.h"

#include <math.h>
#include <string.h>

void qt_bcast_strides(int nd, const int64_t *d, int ond, const int64_t *od, int64_t *strides);

static int qladd_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (n->nin < 7 || n->in[0] < 0 || n->in[1] < 0 || n->in[3] < 0 || n->in[4] < 0 || n->in[6] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale");
    return 0;
}

static int qladd_params(struct qt_exec *x, const struct qt_node *n, struct qt_qp *a, struct qt_qp *b,
                        struct qt_qp *c, struct qt_err *err) {
    if (qt_qp_read(x, n, 1, 2, 1, "A", a, err) || qt_qp_read(x, n, 4, 5, 1, "B", b, err) ||
        qt_qp_read(x, n, 6, 7, 1, "C", c, err))
        return err->code;
    return 0;
}

static int qladd_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *A = qt_in(x, n, 0), *B = qt_in(x, n, 3);
    struct qt_qp a, b, c;
    int64_t od[QT_MAXDIM];
    int nd;
    if (!qt_qtype_ok(A->dtype) || A->dtype != B->dtype)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "A and B must both be uint8 or int8 (got %s and %s)",
                           qt_dtype_name(A->dtype), qt_dtype_name(B->dtype));
    if (qladd_params(x, n, &a, &b, &c, err))
        return err->code;
    if ((a.z && a.z->dtype != A->dtype) || (b.z && b.z->dtype != A->dtype) || (c.z && c.z->dtype != A->dtype))
        return qt_node_err(n, QT_EMODEL, err, "zero points must have the type of A");
    if (qt_broadcast(n, A->ndim, A->dims, B->ndim, B->dims, &nd, od, err))
        return err->code;
    return qt_set_out(x, n, 0, A->dtype, nd, od, err);
}

struct qladd_job {
    const struct qt_tensor *A, *B;
    struct qt_tensor *Y;
    float ra, rb, fixed;
    int nd;
    int64_t sa[QT_MAXDIM], sb[QT_MAXDIM];
    int same; /* A and B have the output's shape */
    int mode; /* 1: A is one value, 2: B is (in fixed) */
};

#define QLADD_ROWS 4096

/* c = fma(a, ra, fma(b, rb, f)): the MLAS AVX2 kernel's order; with a
 * scalar A (B) its term is already in f and only the other one is fused */
#define QLADD_CLAMP(T, LO, HI)                                                                                 \
    v = v >= (float)(LO) ? v : (float)(LO); /* NaN (inf - inf from hostile scales) too */                       \
    v = v > (float)(HI) ? (float)(HI) : v;                                                                     \
    Y[i] = (T)(int32_t)__builtin_nearbyintf(v)
#define QLADD_BODY(T, LO, HI)                                                                                  \
    if (mode == 1) {                                                                                           \
        for (int64_t i = 0; i < cnt; i++) {                                                                    \
            float v = __builtin_fmaf((float)B[i], rb, f);                                                      \
            QLADD_CLAMP(T, LO, HI);                                                                            \
        }                                                                                                      \
    } else if (mode == 2) {                                                                                    \
        for (int64_t i = 0; i < cnt; i++) {                                                                    \
            float v = __builtin_fmaf((float)A[i], ra, f);                                                      \
            QLADD_CLAMP(T, LO, HI);                                                                            \
        }                                                                                                      \
    } else {                                                                                                   \
        for (int64_t i = 0; i < cnt; i++) {                                                                    \
            float v = __builtin_fmaf((float)A[i], ra, __builtin_fmaf((float)B[i], rb, f));                     \
            QLADD_CLAMP(T, LO, HI);                                                                            \
        }                                                                                                      \
    }
#define QLADD_ARGS(T)                                                                                          \
    const T *restrict A, const T *restrict B, T *restrict Y, int64_t cnt, float ra, float rb, float f, int mode

static void qladd_u8_ref(QLADD_ARGS(uint8_t)) {
    QLADD_BODY(uint8_t, 0, 255)
}
static void qladd_s8_ref(QLADD_ARGS(int8_t)) {
    QLADD_BODY(int8_t, -128, 127)
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) static void qladd_u8_avx2(QLADD_ARGS(uint8_t)) {
    QLADD_BODY(uint8_t, 0, 255)
}
__attribute__((target("avx2,fma"))) static void qladd_s8_avx2(QLADD_ARGS(int8_t)) {
    QLADD_BODY(int8_t, -128, 127)
}
#endif

static void qladd_run(int u8, const void *A, const void *B, void *Y, int64_t cnt, float ra, float rb, float f,
                      int mode) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (qt_int8_isa() >= QT_ISA_AVX2) {
        if (u8)
            qladd_u8_avx2(A, B, Y, cnt, ra, rb, f, mode);
        else
            qladd_s8_avx2(A, B, Y, cnt, ra, rb, f, mode);
        return;
    }
#endif
    if (u8)
        qladd_u8_ref(A, B, Y, cnt, ra, rb, f, mode);
    else
        qladd_s8_ref(A, B, Y, cnt, ra, rb, f, mode);
}

static void qladd_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct qladd_job *j = arg;
    int u8 = j->Y->dtype == QT_UINT8;
    int64_t total = qt_tensor_numel(j->Y);
    const unsigned char *A = j->A->data, *B = j->B->data;
    unsigned char *Y = j->Y->data;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) {
        int64_t i0 = t * QLADD_ROWS, i1 = i0 + QLADD_ROWS < total ? i0 + QLADD_ROWS : total;
        if (j->same || j->mode) {
            qladd_run(u8, A + (j->mode == 1 ? 0 : i0), B + (j->mode == 2 ? 0 : i0), Y + i0, i1 - i0, j->ra, j->rb,
                      j->fixed, j->mode);
            continue;
        }
        for (int64_t i = i0; i < i1; i++) { /* broadcasting: one element at a time */
            int64_t r = i, ia = 0, ib = 0;
            for (int d = j->nd - 1; d >= 0; d--) {
                int64_t k = r % j->Y->dims[d];
                r /= j->Y->dims[d];
                ia += k * j->sa[d];
                ib += k * j->sb[d];
            }
            qladd_run(u8, A + ia, B + ib, Y + i, 1, j->ra, j->rb, j->fixed, 0);
        }
    }
}

static int qladd_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct qt_qp a, b, c;
    struct qladd_job j = {qt_in(x, n, 0), qt_in(x, n, 3), qt_out(x, n, 0), 0, 0, 0, 0, {0}, {0}, 0, 0};
    if (qladd_params(x, n, &a, &b, &c, err))
        return err->code;
    j.ra = qt_qp_scale(&a, 0) / qt_qp_scale(&c, 0);
    j.rb = qt_qp_scale(&b, 0) / qt_qp_scale(&c, 0);
    j.fixed = (float)qt_qp_zp(&c, 0) - __builtin_fmaf(j.ra, (float)qt_qp_zp(&a, 0), j.rb * (float)qt_qp_zp(&b, 0));
    j.nd = j.Y->ndim;
    j.same = qt_tensor_numel(j.A) == qt_tensor_numel(j.Y) && qt_tensor_numel(j.B) == qt_tensor_numel(j.Y);
    /* a scalar side joins the fixed part with a separate multiply and add
     * (this function is compiled without FMA, so nothing is contracted) */
    if (!j.same && qt_tensor_numel(j.A) == 1) {
        j.mode = 1;
        j.fixed = j.fixed + (float)(j.A->dtype == QT_UINT8 ? *(const uint8_t *)j.A->data : *(const int8_t *)j.A->data) * j.ra;
    } else if (!j.same && qt_tensor_numel(j.B) == 1) {
        j.mode = 2;
        j.fixed = j.fixed + (float)(j.B->dtype == QT_UINT8 ? *(const uint8_t *)j.B->data : *(const int8_t *)j.B->data) * j.rb;
    }
    qt_bcast_strides(j.A->ndim, j.A->dims, j.nd, j.Y->dims, j.sa);
    qt_bcast_strides(j.B->ndim, j.B->dims, j.nd, j.Y->dims, j.sb);
    int64_t total = qt_tensor_numel(j.Y);
    if (total > 0)
        qt_parallel_for(x, (total + QLADD_ROWS - 1) / QLADD_ROWS, qladd_task, &j);
    return 0;
}

const struct qt_op qt_op_qlinearadd = {
    .name = "QLinearAdd",
    .domain = "com.microsoft",
    .init = qladd_init,
    .infer = qladd_infer,
    .fwd = qladd_fwd,
};
