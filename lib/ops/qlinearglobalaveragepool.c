/* qlinearglobalaveragepool.c: ONNX Runtime's com.microsoft
 * QLinearGlobalAveragePool, uint8 or int8, NCHW or channels_last (NHWC).
 *
 * QLinearGlobalAveragePool(X, x_scale, x_zp, y_scale, y_zp):
 *   acc = sum over the image of X - x_zp * HW               (int32)
 *   y = saturate(round_half_even(acc * (x_scale / (y_scale * HW))) + y_zp)
 * in float32 as ONNX Runtime's MLAS does (MlasQLinearGlobalAveragePool*).
 * Tasks: (image, channel) rows; exact integer sums. */
#include "int8/qparams.h"

struct qlgap {
    int channels_last;
};

static int qlgap_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct qlgap *a = calloc(1, sizeof *a);
    if (!a)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    n->priv = a;
    if (n->nin < 4 || n->in[0] < 0 || n->in[1] < 0 || n->in[3] < 0)
        return qt_node_err(n, QT_EMODEL, err, "needs X, x_scale, x_zero_point, y_scale, y_zero_point");
    a->channels_last = qt_attr_int(n, "channels_last", 0, err) != 0;
    return err->code;
}

static int qlgap_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qlgap *a = n->priv;
    const struct qt_tensor *X = qt_in(x, n, 0);
    struct qt_qp xp, yp;
    if (!qt_qtype_ok(X->dtype))
        return qt_node_err(n, QT_EUNSUPPORTED, err, "X must be uint8 or int8 (got %s)", qt_dtype_name(X->dtype));
    if (X->ndim < 3)
        return qt_node_err(n, QT_EMODEL, err, "X has %d dims, expected at least 3", X->ndim);
    if (qt_qp_read(x, n, 1, 2, 1, "x", &xp, err) || qt_qp_read(x, n, 3, 4, 1, "y", &yp, err))
        return err->code;
    if ((xp.z && xp.z->dtype != X->dtype) || (yp.z && yp.z->dtype != X->dtype))
        return qt_node_err(n, QT_EMODEL, err, "zero points must have the type of X");
    int64_t d[QT_MAXDIM];
    for (int i = 0; i < X->ndim; i++)
        d[i] = 1;
    d[0] = X->dims[0];
    if (a->channels_last)
        d[X->ndim - 1] = X->dims[X->ndim - 1];
    else
        d[1] = X->dims[1];
    return qt_set_out(x, n, 0, X->dtype, X->ndim, d, err);
}

struct qlgap_job {
    const struct qt_tensor *X;
    struct qt_tensor *Y;
    int64_t C, hw;
    int channels_last;
    float scale;
    int32_t xzp, yzp, lo, hi;
};

static void qlgap_task(void *arg, int64_t t0, int64_t t1, int tid) {
    const struct qlgap_job *j = arg;
    int s8 = j->X->dtype == QT_INT8;
    (void)tid;
    for (int64_t t = t0; t < t1; t++) { /* t = image * C + channel */
        int64_t img = t / j->C, c = t % j->C, step = j->channels_last ? j->C : 1;
        int64_t base = j->channels_last ? img * j->hw * j->C + c : t * j->hw;
        int64_t acc = -(int64_t)j->xzp * j->hw; /* int64: no overflow on a hostile spatial size */
        if (s8) {
            const int8_t *p = (const int8_t *)j->X->data + base;
            for (int64_t i = 0; i < j->hw; i++)
                acc += p[i * step];
        } else {
            const uint8_t *p = (const uint8_t *)j->X->data + base;
            for (int64_t i = 0; i < j->hw; i++)
                acc += p[i * step];
        }
        int32_t q = qt_qclamp_round((float)acc * j->scale, j->yzp, j->lo, j->hi);
        if (s8)
            ((int8_t *)j->Y->data)[t] = (int8_t)q;
        else
            ((uint8_t *)j->Y->data)[t] = (uint8_t)q;
    }
}

static int qlgap_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct qlgap *a = n->priv;
    struct qt_qp xp, yp;
    struct qlgap_job j = {qt_in(x, n, 0), qt_out(x, n, 0), 0, 1, a->channels_last, 0, 0, 0, 0, 0};
    if (qt_qp_read(x, n, 1, 2, 1, "x", &xp, err) || qt_qp_read(x, n, 3, 4, 1, "y", &yp, err))
        return err->code;
    const struct qt_tensor *X = j.X;
    j.C = a->channels_last ? X->dims[X->ndim - 1] : X->dims[1];
    int64_t nc = X->dims[0] * j.C;
    j.hw = nc > 0 ? qt_tensor_numel(X) / nc : 0;
    if (j.hw >= 0x1000000)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "image of %lld values is too large", (long long)j.hw);
    j.scale = qt_qp_scale(&xp, 0) / (qt_qp_scale(&yp, 0) * (float)j.hw);
    j.xzp = qt_qp_zp(&xp, 0);
    j.yzp = qt_qp_zp(&yp, 0);
    j.lo = X->dtype == QT_UINT8 ? 0 : -128;
    j.hi = X->dtype == QT_UINT8 ? 255 : 127;
    if (j.hw > 0)
        qt_parallel_for(x, X->dims[0] * j.C, qlgap_task, &j);
    return 0;
}

const struct qt_op qt_op_qlinearglobalaveragepool = {
    .name = "QLinearGlobalAveragePool",
    .domain = "com.microsoft",
    .init = qlgap_init,
    .infer = qlgap_infer,
    .fwd = qlgap_fwd,
};
