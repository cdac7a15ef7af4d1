/* binary.c: the broadcasting binary operators of ONNX, one kernel
 * (lib/ops/eltwise.c) for all of them.
 *
 *   Add, Sub, Mul, Div      y = a op b (numpy broadcasting; integer Div truncates)
 *   Pow                     y = a ^ b; from opset 12 the exponent may have another
 *                           numeric type than the base (converted to the base's type)
 *   Equal, Less, Greater    bool y
 *   And, Or, Xor            bool inputs and output
 *   PRelu                   y = a < 0 ? a * slope : a (slope broadcasts to a)
 *   Mod                     fmod = 0 (default): remainder with the sign of the divisor
 *                           (Python's %), integers only as in ONNX Runtime; fmod = 1:
 *                           the sign of the dividend (C's fmod / %), any type
 *
 * float32, float64, int32 and int64 (shape glue) inputs.
 * Gradients (training): Add/Sub pass dy (negated for Sub's b), Mul dy*b and
 * dy*a, Div dy/b and -dy*a/b^2, Pow dy*b*a^(b-1) and dy*a^b*ln(a), each
 * summed over the broadcast dimensions. */
#include "ops/eltwise.h"

#include <math.h>
#include <string.h>

#define BINARY(fn, op)                                                                          \
    static int fn##_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {   \
        return qt_binary_infer(x, n, op, err);                                                  \
    }                                                                                           \
    static int fn##_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {     \
        return qt_binary_run(x, n, op, err);                                                    \
    }

#define BINARY_BWD(fn, op)                                                                      \
    BINARY(fn, op)                                                                              \
    static int fn##_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {     \
        return qt_binary_bwd(x, n, op, err);                                                    \
    }

BINARY_BWD(add, QT_BIN_ADD)
BINARY_BWD(sub, QT_BIN_SUB)
BINARY_BWD(mul, QT_BIN_MUL)
BINARY_BWD(div, QT_BIN_DIV)
BINARY(equal, QT_BIN_EQUAL)
BINARY(less, QT_BIN_LESS)
BINARY(greater, QT_BIN_GREATER)
BINARY(and, QT_BIN_AND)
BINARY(or, QT_BIN_OR)
BINARY(xor, QT_BIN_XOR)
BINARY(prelu, QT_BIN_PRELU)

static int two_inputs(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    if (n->nin != 2 || n->in[0] < 0 || n->in[1] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs two inputs");
    return 0;
}

struct mod_attr {
    int fmod;
};

static int mod_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    if (two_inputs(g, n, err))
        return err->code;
    struct mod_attr *a = calloc(1, sizeof *a);
    if (!a)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = a;
    int64_t f = qt_attr_int(n, "fmod", 0, err);
    if (f != 0 && f != 1)
        return qt_node_err(n, QT_EMODEL, err, "fmod=%lld must be 0 or 1", (long long)f);
    a->fmod = (int)f;
    return err->code;
}

static int mod_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct mod_attr *a = n->priv;
    int t = qt_in(x, n, 0)->dtype;
    if (!a->fmod && (t == QT_FLOAT || t == QT_DOUBLE))
        return qt_node_err(n, QT_EMODEL, err, "fmod=0 on %s inputs (ONNX requires fmod=1 for floats)",
                           qt_dtype_name(t));
    if (t == QT_BOOL)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "input type bool is not supported");
    return qt_binary_infer(x, n, a->fmod ? QT_BIN_FMOD : QT_BIN_MOD, err);
}

static int mod_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct mod_attr *a = n->priv;
    return qt_binary_run(x, n, a->fmod ? QT_BIN_FMOD : QT_BIN_MOD, err);
}

/* Pow with an exponent of another type: the exponent is converted to the
 * base's type in scratch memory at every run (it is small: almost always a
 * scalar constant). */
static int pow_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qt_tensor *a = qt_in(x, n, 0), *b = qt_in(x, n, 1);
    int64_t d[QT_MAXDIM];
    int nd;
    if (a->dtype == b->dtype)
        return qt_binary_infer(x, n, QT_BIN_POW, err);
    if (a->dtype != QT_FLOAT && a->dtype != QT_DOUBLE)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "base type %s with exponent type %s is not supported",
                           qt_dtype_name(a->dtype), qt_dtype_name(b->dtype));
    if (!qt_dtype_size(b->dtype) || b->dtype == QT_STRING || b->dtype == QT_FLOAT16)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "exponent type %s is not supported", qt_dtype_name(b->dtype));
    if (qt_broadcast(n, a->ndim, a->dims, b->ndim, b->dims, &nd, d, err))
        return err->code;
    qt_exec_scratch(x, (size_t)qt_tensor_numel(b) * 2 + 1);
    return qt_set_out(x, n, 0, a->dtype, nd, d, err);
}

static int pow_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct qt_tensor *a = qt_in(x, n, 0), *b = qt_in(x, n, 1);
    if (a->dtype == b->dtype)
        return qt_binary_run(x, n, QT_BIN_POW, err);
    int64_t cnt = qt_tensor_numel(b);
    void *conv = qt_scratch(x, 0);
    for (int64_t i = 0; i < cnt; i++) {
        double v = qt_tensor_get(b, i);
        if (a->dtype == QT_FLOAT)
            ((float *)conv)[i] = (float)v;
        else
            ((double *)conv)[i] = v;
    }
    /* run the same-type kernel with input 1 pointing at the converted copy */
    struct qt_tensor saved = *b;
    b->dtype = a->dtype;
    b->data = conv;
    b->nbytes = (size_t)cnt * qt_dtype_size(a->dtype);
    int rc = qt_binary_run(x, n, QT_BIN_POW, err);
    *b = saved;
    return rc;
}

/* Pow backward: the binary machinery (d/da = b a^(b-1), d/db = a^b ln a);
 * an exponent of another type (a constant: no gradient) is converted as in
 * the forward. */
static int pow_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct qt_tensor *a = qt_in(x, n, 0), *b = qt_in(x, n, 1);
    if (a->dtype != QT_FLOAT)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "backward is float32 only");
    if (a->dtype == b->dtype)
        return qt_binary_bwd(x, n, QT_BIN_POW, err);
    int64_t cnt = qt_tensor_numel(b);
    float *conv = qt_scratch(x, 0);
    for (int64_t i = 0; i < cnt; i++)
        conv[i] = (float)qt_tensor_get(b, i);
    struct qt_tensor saved = *b;
    b->dtype = QT_FLOAT;
    b->data = conv;
    b->nbytes = (size_t)cnt * sizeof(float);
    int rc = qt_binary_bwd(x, n, QT_BIN_POW, err);
    *b = saved;
    return rc;
}

#define OP(var, onnx, fn, ini)                                                                  \
    const struct qt_op qt_op_##var = {.name = onnx, .init = ini, .infer = fn##_infer, .fwd = fn##_fwd}

#define OP_BWD(var, onnx, q)                                                                    \
    const struct qt_op qt_op_##var = {.name = onnx,                                             \
                                      .init = two_inputs,                                       \
                                      .infer = var##_infer,                                     \
                                      .fwd = var##_fwd,                                         \
                                      .bwd = var##_bwd,                                         \
                                      .quant = q}
/* quantization: Add and Mul of two activations, a following Relu/Clip fused */
#define Q_FLOAT {0}
#define Q_MUL {.role = QT_QR_BINARY, .flags = QT_QF_FUSE_ACT}
#define Q_ADD                                                                                   \
    {.role = QT_QR_BINARY, .flags = QT_QF_FUSE_ACT | QT_QF_BIAS, .lower = QT_QL_ELTWISE, .lower_contrib = 1, \
     .lower_op = "QLinearAdd"}

OP_BWD(add, "Add", Q_ADD);
OP_BWD(sub, "Sub", Q_FLOAT);
OP_BWD(mul, "Mul", Q_MUL);
OP_BWD(div, "Div", Q_FLOAT);
OP(equal, "Equal", equal, two_inputs);
OP(less, "Less", less, two_inputs);
OP(greater, "Greater", greater, two_inputs);
OP(and, "And", and, two_inputs);
OP(or, "Or", or, two_inputs);
OP(xor, "Xor", xor, two_inputs);
OP(prelu, "PRelu", prelu, two_inputs);
const struct qt_op qt_op_pow = {
    .name = "Pow", .init = two_inputs, .infer = pow_infer, .fwd = pow_fwd, .bwd = pow_bwd};
const struct qt_op qt_op_mod = {.name = "Mod", .init = mod_init, .infer = mod_infer, .fwd = mod_fwd};
