/* eltwise.c: unary and broadcasting binary element-wise kernels. */
#include "ops/eltwise.h"

#include <math.h>
#include <string.h>

int qt_unary_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *a = qt_in(x, n, 0);
    if (!a)
        return qt_node_err(n, QT_EMODEL, err, "missing input");
    return qt_set_out(x, n, 0, a->dtype, a->ndim, a->dims, err);
}

struct unary_job {
    const float *x;
    float *y;
    qt_unary_f32_fn fn;
    const void *ctx;
};

#define UNARY_BLOCK 4096

static void unary_task(void *arg, int64_t i0, int64_t i1, int tid) {
    const struct unary_job *j = arg;
    (void)tid;
    int64_t total = i1 * UNARY_BLOCK;
    (void)total;
    for (int64_t b = i0; b < i1; b++) {
        int64_t s = b * UNARY_BLOCK;
        j->fn(j->x + s, j->y + s, UNARY_BLOCK, j->ctx);
    }
}

int qt_unary_run_f32(struct qt_exec *x, const struct qt_node *n, qt_unary_f32_fn fn, const void *ctx,
                     struct qt_err *err) {
    const struct qt_tensor *a = qt_in(x, n, 0);
    struct qt_tensor *y = qt_out(x, n, 0);
    if (a->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported (float32 only)",
                           qt_dtype_name(a->dtype));
    int64_t total = qt_tensor_numel(a), nfull = total / UNARY_BLOCK, rest = total % UNARY_BLOCK;
    struct unary_job j = {a->data, y->data, fn, ctx};
    if (nfull > 1)
        qt_parallel_for(x, nfull, unary_task, &j);
    else if (nfull == 1)
        fn(j.x, j.y, UNARY_BLOCK, ctx);
    if (rest)
        fn(j.x + nfull * UNARY_BLOCK, j.y + nfull * UNARY_BLOCK, rest, ctx);
    return 0;
}

struct unary_bwd_job {
    const float *x, *y, *dy;
    float *dx;
    int64_t total;
    qt_unary_bwd_fn fn;
    const void *ctx;
};

static void unary_bwd_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct unary_bwd_job *j = arg;
    (void)tid;
    int64_t a = t0 * UNARY_BLOCK, b = t1 * UNARY_BLOCK < j->total ? t1 * UNARY_BLOCK : j->total;
    j->fn(j->x + a, j->y + a, j->dy + a, j->dx + a, b - a, j->ctx);
}

int qt_unary_bwd_f32(struct qt_exec *x, const struct qt_node *n, qt_unary_bwd_fn fn, const void *ctx) {
    float *dx = qt_gin(x, n, 0);
    if (!dx)
        return 0;
    struct unary_bwd_job j = {qt_in(x, n, 0)->data, qt_out(x, n, 0)->data, qt_gout(x, n, 0), dx,
                              qt_tensor_numel(qt_in(x, n, 0)), fn, ctx};
    qt_parallel_for(x, (j.total + UNARY_BLOCK - 1) / UNARY_BLOCK, unary_bwd_task, &j);
    return 0;
}

/* One input's gradient of a binary op. Elements of the input are
 * independent: when it is not broadcast the work splits over fixed blocks;
 * otherwise one pass over the output in order (a broadcast gradient is a
 * reduction, never split). */
struct bin_bwd_job {
    enum qt_binop op;
    int which; /* 0: a, 1: b */
    const float *a, *b, *dy;
    float *d;
    int nd;
    const int64_t *od;
    int64_t sa[QT_MAXDIM], sb[QT_MAXDIM];
    int64_t total;
};

static inline float bin_elem_grad(const struct bin_bwd_job *j, float av, float bv, float g) {
    switch (j->op) {
    case QT_BIN_ADD:
        return g;
    case QT_BIN_SUB:
        return j->which ? -g : g;
    case QT_BIN_MUL:
        return j->which ? g * av : g * bv;
    case QT_BIN_POW: /* d/da = b a^(b-1), d/db = a^b ln a */
        return j->which ? g * powf(av, bv) * logf(av) : g * bv * powf(av, bv - 1.0f);
    default: /* DIV */
        return j->which ? -g * av / (bv * bv) : g / bv;
    }
}

static void bin_bwd_range(const struct bin_bwd_job *j, int64_t o0, int64_t o1) {
    int64_t idx[QT_MAXDIM], ia = 0, ib = 0, r = o0;
    for (int k = j->nd - 1; k >= 0; k--) {
        idx[k] = r % j->od[k];
        r /= j->od[k];
        ia += idx[k] * j->sa[k];
        ib += idx[k] * j->sb[k];
    }
    for (int64_t o = o0; o < o1; o++) {
        float gv = bin_elem_grad(j, j->a[ia], j->b[ib], j->dy[o]);
        j->d[j->which ? ib : ia] += gv;
        for (int k = j->nd - 1; k >= 0; k--) {
            ia += j->sa[k];
            ib += j->sb[k];
            if (++idx[k] < j->od[k])
                break;
            ia -= j->sa[k] * j->od[k];
            ib -= j->sb[k] * j->od[k];
            idx[k] = 0;
        }
    }
}

static void bin_bwd_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct bin_bwd_job *j = arg;
    (void)tid;
    int64_t a = t0 * UNARY_BLOCK, b = t1 * UNARY_BLOCK < j->total ? t1 * UNARY_BLOCK : j->total;
    bin_bwd_range(j, a, b);
}

int qt_binary_bwd(struct qt_exec *x, const struct qt_node *n, enum qt_binop op, struct qt_err *err) {
    const struct qt_tensor *a = qt_in(x, n, 0), *b = qt_in(x, n, 1), *y = qt_out(x, n, 0);
    if (y->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "backward of %s is float32 only", n->op_type);
    for (int w = 0; w < 2; w++) {
        struct bin_bwd_job j = {.op = op, .which = w, .a = a->data, .b = b->data, .dy = qt_gout(x, n, 0),
                                .d = qt_gin(x, n, w), .nd = y->ndim, .od = y->dims, .total = qt_tensor_numel(y)};
        if (!j.d)
            continue;
        qt_bcast_strides(a->ndim, a->dims, j.nd, y->dims, j.sa);
        qt_bcast_strides(b->ndim, b->dims, j.nd, y->dims, j.sb);
        if (qt_tensor_numel(w ? b : a) == j.total)
            qt_parallel_for(x, (j.total + UNARY_BLOCK - 1) / UNARY_BLOCK, bin_bwd_task, &j);
        else
            bin_bwd_range(&j, 0, j.total);
    }
    return 0;
}

void qt_bcast_strides(int nd, const int64_t *d, int ond, const int64_t *od, int64_t *strides) {
    uint64_t s = 1; /* wraps (no UB) only for empty inputs with absurd dims, whose strides go unused */
    for (int i = ond - 1; i >= 0; i--) {
        int k = i - (ond - nd);
        if (k < 0 || d[k] == 1 || od[i] == 0) {
            strides[i] = 0;
        } else {
            strides[i] = (int64_t)s;
        }
        if (k >= 0)
            s *= (uint64_t)d[k];
    }
}

static int is_cmp(enum qt_binop op) {
    return op == QT_BIN_EQUAL || op == QT_BIN_LESS || op == QT_BIN_GREATER;
}

int qt_binary_infer(struct qt_exec *x, const struct qt_node *n, enum qt_binop op, struct qt_err *err) {
    const struct qt_tensor *a = qt_in(x, n, 0), *b = qt_in(x, n, 1);
    int64_t d[QT_MAXDIM];
    int nd;
    if (!a || !b)
        return qt_node_err(n, QT_EMODEL, err, "needs two inputs");
    if (a->dtype != b->dtype)
        return qt_node_err(n, QT_EMODEL, err, "input types differ (%s and %s)", qt_dtype_name(a->dtype),
                           qt_dtype_name(b->dtype));
    if (qt_broadcast(n, a->ndim, a->dims, b->ndim, b->dims, &nd, d, err))
        return err->code;
    int dt = is_cmp(op) ? QT_BOOL : a->dtype;
    if (a->dtype != QT_FLOAT && a->dtype != QT_INT64 && a->dtype != QT_INT32 && a->dtype != QT_BOOL &&
        a->dtype != QT_DOUBLE)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type %s is not supported", qt_dtype_name(a->dtype));
    return qt_set_out(x, n, 0, dt, nd, d, err);
}

static inline double fop(enum qt_binop op, double a, double b) {
    switch (op) {
    case QT_BIN_ADD: return a + b;
    case QT_BIN_SUB: return a - b;
    case QT_BIN_MUL: return a * b;
    case QT_BIN_DIV: return a / b;
    case QT_BIN_POW: return pow(a, b);
    case QT_BIN_MIN: return a < b || a != a ? a : b;
    case QT_BIN_MAX: return a > b || a != a ? a : b;
    case QT_BIN_EQUAL: return a == b;
    case QT_BIN_LESS: return a < b;
    case QT_BIN_GREATER: return a > b;
    case QT_BIN_AND: return a != 0 && b != 0;
    case QT_BIN_OR: return a != 0 || b != 0;
    case QT_BIN_MOD: { /* sign of the divisor, as Python (Mod fmod=0) */
        double r = fmod(a, b);
        return r != 0 && ((r < 0) != (b < 0)) ? r + b : r;
    }
    case QT_BIN_FMOD: return fmod(a, b);
    case QT_BIN_PRELU: return a < 0 ? a * b : a;
    case QT_BIN_XOR: return (a != 0) != (b != 0);
    }
    return 0;
}

static inline float fop32(enum qt_binop op, float a, float b) {
    switch (op) {
    case QT_BIN_ADD: return a + b;
    case QT_BIN_SUB: return a - b;
    case QT_BIN_MUL: return a * b;
    case QT_BIN_DIV: return a / b;
    case QT_BIN_POW: return powf(a, b);
    case QT_BIN_PRELU: return a < 0 ? a * b : a;
    default: return (float)fop(op, a, b);
    }
}

static inline int64_t iop(enum qt_binop op, int64_t a, int64_t b) {
    switch (op) {
    case QT_BIN_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
    case QT_BIN_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
    case QT_BIN_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
    case QT_BIN_DIV: /* ONNX integer Div truncates toward zero */
        if (b == 0 || (b == -1 && a == INT64_MIN))
            return 0;
        return a / b;
    case QT_BIN_MOD: {
        if (b == 0 || (b == -1 && a == INT64_MIN))
            return 0;
        int64_t r = a % b; /* fmod=0: sign of the divisor, as Python */
        if (r != 0 && ((r < 0) != (b < 0)))
            r += b;
        return r;
    }
    case QT_BIN_FMOD: /* sign of the dividend, as C (Mod fmod=1) */
        if (b == 0 || (b == -1 && a == INT64_MIN))
            return 0;
        return a % b;
    case QT_BIN_POW: {
        int64_t r = 1;
        for (int64_t k = 0; k < b && k < 64; k++)
            r = (int64_t)((uint64_t)r * (uint64_t)a);
        return r;
    }
    case QT_BIN_MIN: return a < b ? a : b;
    case QT_BIN_MAX: return a > b ? a : b;
    case QT_BIN_EQUAL: return a == b;
    case QT_BIN_LESS: return a < b;
    case QT_BIN_GREATER: return a > b;
    case QT_BIN_AND: return a && b;
    case QT_BIN_OR: return a || b;
    case QT_BIN_PRELU: return a < 0 ? (int64_t)((uint64_t)a * (uint64_t)b) : a;
    case QT_BIN_XOR: return (a != 0) != (b != 0);
    }
    return 0;
}

struct bin_job {
    const struct qt_tensor *a, *b;
    struct qt_tensor *y;
    enum qt_binop op;
    int nd;
    int64_t sa[QT_MAXDIM], sb[QT_MAXDIM];
    int64_t inner; /* elements of the last dim */
};

/* One task = one row (all output dims but the last). */
static void bin_task(void *arg, int64_t r0, int64_t r1, int tid) {
    const struct bin_job *j = arg;
    const struct qt_tensor *y = j->y;
    int nd = j->nd;
    int64_t inner = j->inner;
    (void)tid;
    for (int64_t r = r0; r < r1; r++) {
        int64_t oa = 0, ob = 0, rem = r;
        for (int i = nd - 2; i >= 0; i--) {
            int64_t idx = rem % y->dims[i];
            rem /= y->dims[i];
            oa += idx * j->sa[i];
            ob += idx * j->sb[i];
        }
        int64_t sa = nd ? j->sa[nd - 1] : 0, sb = nd ? j->sb[nd - 1] : 0, o = r * inner;
        switch (j->a->dtype) {
        case QT_FLOAT: {
            const float *A = (const float *)j->a->data + oa, *B = (const float *)j->b->data + ob;
            if (y->dtype == QT_BOOL) {
                uint8_t *Y = (uint8_t *)y->data + o;
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = fop(j->op, A[k * sa], B[k * sb]) != 0;
                break;
            }
            float *Y = (float *)y->data + o;
            if (sa == 1 && sb == 1 && j->op == QT_BIN_ADD)
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = A[k] + B[k];
            else if (sa == 1 && sb == 0 && j->op == QT_BIN_MUL)
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = A[k] * B[0];
            else if (sa == 1 && sb == 0 && j->op == QT_BIN_ADD)
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = A[k] + B[0];
            else
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = fop32(j->op, A[k * sa], B[k * sb]);
            break;
        }
        case QT_DOUBLE: {
            const double *A = (const double *)j->a->data + oa, *B = (const double *)j->b->data + ob;
            if (y->dtype == QT_BOOL) {
                uint8_t *Y = (uint8_t *)y->data + o;
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = fop(j->op, A[k * sa], B[k * sb]) != 0;
            } else {
                double *Y = (double *)y->data + o;
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = fop(j->op, A[k * sa], B[k * sb]);
            }
            break;
        }
        case QT_INT64: {
            const int64_t *A = (const int64_t *)j->a->data + oa, *B = (const int64_t *)j->b->data + ob;
            if (y->dtype == QT_BOOL) {
                uint8_t *Y = (uint8_t *)y->data + o;
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = iop(j->op, A[k * sa], B[k * sb]) != 0;
            } else {
                int64_t *Y = (int64_t *)y->data + o;
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = iop(j->op, A[k * sa], B[k * sb]);
            }
            break;
        }
        case QT_INT32: {
            const int32_t *A = (const int32_t *)j->a->data + oa, *B = (const int32_t *)j->b->data + ob;
            if (y->dtype == QT_BOOL) {
                uint8_t *Y = (uint8_t *)y->data + o;
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = iop(j->op, A[k * sa], B[k * sb]) != 0;
            } else {
                int32_t *Y = (int32_t *)y->data + o;
                for (int64_t k = 0; k < inner; k++)
                    Y[k] = (int32_t)iop(j->op, A[k * sa], B[k * sb]);
            }
            break;
        }
        case QT_BOOL: {
            const uint8_t *A = (const uint8_t *)j->a->data + oa, *B = (const uint8_t *)j->b->data + ob;
            uint8_t *Y = (uint8_t *)y->data + o;
            for (int64_t k = 0; k < inner; k++)
                Y[k] = (uint8_t)(iop(j->op, A[k * sa], B[k * sb]) != 0);
            break;
        }
        }
    }
}

int qt_binary_run(struct qt_exec *x, const struct qt_node *n, enum qt_binop op, struct qt_err *err) {
    struct bin_job j = {.a = qt_in(x, n, 0), .b = qt_in(x, n, 1), .y = qt_out(x, n, 0), .op = op};
    (void)err;
    j.nd = j.y->ndim;
    qt_bcast_strides(j.a->ndim, j.a->dims, j.nd, j.y->dims, j.sa);
    qt_bcast_strides(j.b->ndim, j.b->dims, j.nd, j.y->dims, j.sb);
    j.inner = j.nd ? j.y->dims[j.nd - 1] : 1;
    int64_t total = qt_tensor_numel(j.y);
    if (total == 0)
        return 0;
    int64_t rows = total / j.inner;
    if (rows * j.inner < 65536)
        bin_task(&j, 0, rows, 0);
    else
        qt_parallel_for(x, rows, bin_task, &j);
    return 0;
}
