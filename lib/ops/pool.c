/* pool.c: pooling geometry (see pool.h for the output-size rules). */
#include "ops/pool.h"

#include <string.h>

#define ATTR_MAX ((int64_t)1 << 31) /* bound on kernel, stride, dilation, pad: no overflow below */

static int read_ints(struct qt_node *n, const char *name, int want, int64_t lo, int64_t *out, struct qt_err *err) {
    const int64_t *v;
    int c = qt_attr_ints(n, name, &v, err);
    if (err->code)
        return err->code;
    if (c <= 0)
        return 0; /* absent or empty: defaults */
    if (c != want)
        return qt_node_err(n, QT_EMODEL, err, "attribute '%s' has %d values, expected %d", name, c, want);
    for (int i = 0; i < c; i++) {
        if (v[i] < lo || v[i] > ATTR_MAX)
            return qt_node_err(n, QT_EMODEL, err, "attribute '%s' value %lld is out of range", name,
                               (long long)v[i]);
        out[i] = v[i];
    }
    return 0;
}

int qt_pooling_parse(struct qt_node *n, struct qt_pooling *p, struct qt_err *err) {
    const int64_t *v;
    memset(p, 0, sizeof *p);
    for (int i = 0; i < 2; i++)
        p->strides[i] = p->dilations[i] = 1;
    int c = qt_attr_ints(n, "kernel_shape", &v, err);
    if (err->code)
        return err->code;
    if (c <= 0)
        return qt_node_err(n, QT_EMODEL, err, "attribute 'kernel_shape' is missing");
    if (c > 2)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "%d-D pooling is not supported (1-D and 2-D only)", c);
    p->nk = c;
    if (read_ints(n, "kernel_shape", c, 1, p->kernel, err) || read_ints(n, "strides", c, 1, p->strides, err) ||
        read_ints(n, "dilations", c, 1, p->dilations, err) || read_ints(n, "pads", 2 * c, 0, p->pads, err))
        return err->code;
    p->ceil_mode = qt_attr_int(n, "ceil_mode", 0, err) != 0;
    p->count_include_pad = qt_attr_int(n, "count_include_pad", 0, err) != 0;
    return qt_auto_pad(n, &p->auto_pad, err);
}

int qt_pooling_params(const struct qt_node *n, const struct qt_tensor *xt, const struct qt_pooling *p,
                      struct qt_pooling_shape *s, struct qt_err *err) {
    int nsp = xt->ndim - 2;
    if (xt->ndim < 3)
        return qt_node_err(n, QT_EMODEL, err, "input has %d dims, expected [N, C, spatial...]", xt->ndim);
    if (nsp > 2)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "%d-D pooling is not supported (1-D and 2-D only)", nsp);
    if (nsp != p->nk)
        return qt_node_err(n, QT_EMODEL, err, "kernel_shape has %d values for a %d-D input", p->nk, nsp);
    memset(s, 0, sizeof *s);
    s->n = xt->dims[0];
    s->c = xt->dims[1];
    int64_t in[2] = {nsp == 2 ? xt->dims[2] : 1, xt->dims[nsp + 1]};
    if (in[0] > ATTR_MAX || in[1] > ATTR_MAX)
        return qt_node_err(n, QT_EMODEL, err, "spatial size %lldx%lld is too large", (long long)in[0],
                           (long long)in[1]);
    int64_t k[2] = {1, 1}, st[2] = {1, 1}, dl[2] = {1, 1}, pb[2] = {0, 0}, pe[2] = {0, 0}, out[2] = {1, 1};
    for (int i = nsp == 2 ? 0 : 1; i < 2; i++) {
        int a = nsp == 2 ? i : 0; /* attribute index: 1-D uses slot 0 for the width */
        k[i] = p->kernel[a];
        st[i] = p->strides[a];
        dl[i] = p->dilations[a];
        if (p->auto_pad == QT_PAD_SAME_UPPER || p->auto_pad == QT_PAD_SAME_LOWER) {
            int64_t need = ((in[i] + st[i] - 1) / st[i] - 1) * st[i] + k[i] - in[i];
            if (need < 0) /* stride > kernel: as Conv, never a negative pad (ONNX Runtime fails here) */
                need = 0;
            pb[i] = p->auto_pad == QT_PAD_SAME_UPPER ? need / 2 : (need + 1) / 2;
            pe[i] = need - pb[i];
        } else if (p->auto_pad == QT_PAD_NOTSET) {
            pb[i] = p->pads[a];
            pe[i] = p->pads[a + nsp];
        }
        int64_t span = in[i] + pb[i] + pe[i] - (dl[i] * (k[i] - 1) + 1);
        if (span < 0)
            return qt_node_err(n, QT_EMODEL, err, "kernel (%lld, dilation %lld) is larger than the padded input (%lld)",
                               (long long)k[i], (long long)dl[i], (long long)(in[i] + pb[i] + pe[i]));
        if (p->ceil_mode) {
            out[i] = (span + st[i] - 1) / st[i] + 1;
            if ((out[i] - 1) * st[i] >= in[i] + pb[i]) /* last window starts in the end padding */
                out[i]--;
        } else {
            out[i] = span / st[i] + 1;
        }
    }
    s->ih = in[0], s->iw = in[1], s->kh = k[0], s->kw = k[1], s->oh = out[0], s->ow = out[1];
    s->sh = st[0], s->sw = st[1], s->dh = dl[0], s->dw = dl[1];
    s->ph = pb[0], s->pw = pb[1], s->ph_end = pe[0], s->pw_end = pe[1];
    return 0;
}

void qt_pooling_out_dims(const struct qt_tensor *x, const struct qt_pooling_shape *s, int64_t *dims) {
    dims[0] = s->n;
    dims[1] = s->c;
    if (x->ndim == 4) {
        dims[2] = s->oh;
        dims[3] = s->ow;
    } else {
        dims[2] = s->ow;
    }
}
