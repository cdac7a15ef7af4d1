/* aq_ref.h (test only): the hand-written AdaQuant layer loss of aq_ref.c. */
#ifndef QT_TEST_AQ_REF_H
#define QT_TEST_AQ_REF_H
#include "quant/quant.h"

/* loss = mean((conv(fq(x), fq(w)) + b - t)^2); g (NULL: loss only) gets the
 * STE/LSQ gradient. ew/ex: frozen rounding residuals (NULL: round), the
 * gradient is then exact (qt_aq_residuals computes them at p). */
int qt_aq_loss(const struct qt_aq_layer *L, const struct qt_aq_params *p, const float *x, const float *t,
               const float *ew, const float *ex, struct qt_aq_params *g, double *loss, struct qt_err *err);
void qt_aq_residuals(const struct qt_aq_layer *L, const struct qt_aq_params *p, const float *x, float *ew,
                     float *ex);
#endif
