/* pool.h: pooling geometry shared by MaxPool and AveragePool (and their
 * quantized kernels), in lib/ops/conv.h's conventions: 1-D pooling has
 * ih = kh = 1, pads are (begin..., end...) as in ONNX.
 *
 * Output size per spatial axis, as ONNX Runtime computes it:
 *   ek  = dilation * (kernel - 1) + 1
 *   out = floor((in + pad_begin + pad_end - ek) / stride) + 1     ceil_mode 0
 *   out = ceil((in + pad_begin + pad_end - ek) / stride) + 1      ceil_mode 1,
 *         minus one when the last window would start in the end padding
 *         ((out - 1) * stride >= in + pad_begin), as PyTorch does.
 * auto_pad SAME_UPPER/SAME_LOWER pads (ceil(in / stride) - 1) * stride +
 * kernel - in in total (the undilated kernel, as ONNX Runtime; never below
 * 0), the odd one at the end (UPPER) or the beginning (LOWER); VALID pads
 * nothing. */
#ifndef QT_OPS_POOL_H
#define QT_OPS_POOL_H
#include "ops/conv.h"

struct qt_pooling { /* attributes */
    int nk;          /* spatial axes in kernel_shape: 1 or 2 */
    int64_t kernel[2], strides[2], dilations[2], pads[4];
    int auto_pad;    /* QT_PAD_* */
    int ceil_mode;
    int count_include_pad;
};

struct qt_pooling_shape {
    int64_t n, c;
    int64_t ih, iw, kh, kw, oh, ow;
    int64_t sh, sw, dh, dw, ph, pw, ph_end, pw_end;
};

/* Parses kernel_shape (required), strides, dilations, pads, auto_pad,
 * ceil_mode, count_include_pad. QT_EUNSUPPORTED for 3-D pooling. */
int qt_pooling_parse(struct qt_node *n, struct qt_pooling *p, struct qt_err *err);
/* Geometry for input x ([N, C, W] or [N, C, H, W] float32). */
int qt_pooling_params(const struct qt_node *n, const struct qt_tensor *x, const struct qt_pooling *p,
                      struct qt_pooling_shape *s, struct qt_err *err);
/* Output dims of input x for geometry s. */
void qt_pooling_out_dims(const struct qt_tensor *x, const struct qt_pooling_shape *s, int64_t *dims);
/* Taps [*k0, *k1) of a window starting at `start` with `kn` taps `step`
 * apart that fall inside [0, size). */
static inline void qt_pooling_taps(int64_t start, int64_t step, int64_t kn, int64_t size, int64_t *k0,
                                   int64_t *k1) {
    int64_t a = start < 0 ? (-start + step - 1) / step : 0;
    int64_t b = size - start <= 0 ? 0 : (size - start + step - 1) / step;
    *k0 = a;
    *k1 = b < kn ? b : kn;
}

/* Output columns [*x0, *x1) whose windows lie wholly inside the input row. */
static inline void qt_pooling_interior(const struct qt_pooling_shape *s, int64_t *x0, int64_t *x1) {
    int64_t a = (s->pw + s->sw - 1) / s->sw;
    int64_t last = s->iw - 1 - (s->kw - 1) * s->dw + s->pw; /* ox * sw <= last */
    int64_t b = last < 0 ? 0 : last / s->sw + 1;
    if (b > s->ow)
        b = s->ow;
    *x1 = b;
    *x0 = a < b ? a : b;
}
#endif
