/* resize.h: the interpolation kernels shared by Resize and Upsample.
 *
 * For output index o along an axis with scale s (output = input * s), the
 * source coordinate is, in float as ONNX Runtime computes it:
 *   half_pixel            (o + 0.5) / s - 0.5
 *   pytorch_half_pixel    the same, or 0 when the output length is 1
 *   align_corners         o * (in - 1) / (out - 1), or 0 when out is 1
 *   asymmetric            o / s
 *   tf_half_pixel_for_nn  (o + 0.5) / s
 *   half_pixel_symmetric  half_pixel shifted to keep the centre (opset 19)
 * Axes with scale 1 map o to o. nearest rounds the coordinate (nearest_mode
 * round_prefer_floor, round_prefer_ceil, floor, ceil; "simple" for Resize-10
 * and Upsample: truncate, or ceil when downsampling) and clamps it to the
 * axis; linear (bilinear) interpolates the last two axes of a 2-D or 4-D
 * input whose first two scales are 1, clamping coordinates to the axis;
 * cubic (bicubic, same inputs) takes the 4 taps floor(c)-1 .. floor(c)+2
 * with Keys' weights for t = c - floor(c) and coefficient a, clamping tap
 * indices to the axis (or, with exclude_outside, dropping the taps outside
 * and renormalising), rows first then columns, as ONNX Runtime. */
#ifndef QT_OPS_RESIZE_H
#define QT_OPS_RESIZE_H
#include "engine.h"

enum qt_resize_mode { QT_RESIZE_NEAREST, QT_RESIZE_LINEAR, QT_RESIZE_CUBIC };
enum qt_resize_coord {
    QT_COORD_HALF_PIXEL, QT_COORD_PYTORCH_HALF_PIXEL, QT_COORD_ALIGN_CORNERS, QT_COORD_ASYMMETRIC,
    QT_COORD_TF_HALF_PIXEL_NN, QT_COORD_HALF_PIXEL_SYMMETRIC,
};
enum qt_resize_round { QT_ROUND_SIMPLE, QT_ROUND_PREFER_FLOOR, QT_ROUND_PREFER_CEIL, QT_ROUND_FLOOR, QT_ROUND_CEIL };

struct qt_resize {
    int mode, coord, round;
    float cubic_a;       /* cubic: cubic_coeff_a (default -0.75) */
    int exclude_outside; /* cubic: taps outside the axis get weight 0, the rest renormalised */
};

/* QT_EUNSUPPORTED when linear or cubic mode cannot resize this input (see above),
 * QT_EMODEL for a scale that is not positive and finite. */
int qt_resize_check(const struct qt_node *n, const struct qt_resize *r, const struct qt_tensor *x,
                    const float *scales, struct qt_err *err);
/* Output dims floor(in * scale), computed in float as ONNX Runtime. */
int qt_resize_out_dims(const struct qt_node *n, const struct qt_tensor *x, const float *scales, int64_t *dims,
                       struct qt_err *err);
/* y (its dims already set) = x resized with the per-axis scales. Nearest
 * works on any dtype, linear and cubic on float32. */
int qt_resize_run(struct qt_exec *ex, const struct qt_node *n, const struct qt_resize *r, const float *scales,
                  const struct qt_tensor *x, struct qt_tensor *y, struct qt_err *err);
/* Backward: ADDS to dx (x's shape) dy (y's shape) through the same taps and
 * weights; float32. */
int qt_resize_bwd(struct qt_exec *ex, const struct qt_node *n, const struct qt_resize *r, const float *scales,
                  const struct qt_tensor *x, const struct qt_tensor *y, const float *dy, float *dx,
                  struct qt_err *err);
#endif
