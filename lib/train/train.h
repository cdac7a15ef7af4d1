/* train.h: losses, optimizers, learning-rate schedules and gradient
 * clipping for training plans (qt_exec_new_train). Optimizers step a
 * parameter list; no optimizer maths lives inside an operator. */
#ifndef QT_TRAIN_H
#define QT_TRAIN_H
#include "engine.h"

#include <math.h>

/* ---- losses -------------------------------------------------------------
 * Both average over the rows and write the gradient of that mean into
 * dlogits ([n, c]); rows are computed in order in double (deterministic). */

/* Softmax cross-entropy against labels (rows with a label outside [0, c)
 * count neither in the loss nor in the mean, their gradient is 0).
 * loss = mean over labeled rows of -log softmax(z)[label];
 * dz = (softmax(z) - onehot(label)) / labeled. *correct counts top-1 hits.
 * Returns the number of labeled rows. */
int qt_loss_xent(const float *logits, const int *labels, int n, int c, float *dlogits, double *loss, int *correct);
/* Distillation: KL(softmax(t / T) || softmax(z / T)) * T^2, mean over rows;
 * dz = T * (softmax(z / T) - softmax(t / T)) / n. *agree counts rows whose
 * top-1 matches the teacher's. */
void qt_loss_kl(const float *logits, const float *teacher, int n, int c, float temperature, float *dlogits,
                double *loss, int *agree);

/* ---- optimizers --------------------------------------------------------- */

enum qt_optim_kind { QT_OPT_SGD, QT_OPT_ADAM };

/* qtool's one Adam update, written once and instantiated for the moments'
 * arithmetic in float (qt_adam_dir_float: qt_optim_step, qat) and in double
 * (qt_adam_dir_double: AdaQuant and AdaRound, lib/quant). It updates the
 * first and second moments m, v of one value with gradient g and returns
 * the step direction (m / c1) / (sqrt(v / c2) + eps), c1 and c2 the bias
 * corrections 1 - beta^t; the caller moves the value by lr times it
 * (qt_optim_step: in log space for learnt scales). */
#define QT_ADAM_DIR(T)                                                                                        \
    static inline double qt_adam_dir_##T(float g, float *m, float *v, T beta1, T beta2, double eps, double c1,  \
                                         double c2) {                                                         \
        *m = (float)(beta1 * *m + (1 - beta1) * (T)g);                                                        \
        *v = (float)(beta2 * *v + (1 - beta2) * (T)g * g);                                                    \
        return (*m / c1) / (sqrt(*v / c2) + eps);                                                             \
    }
QT_ADAM_DIR(float)
QT_ADAM_DIR(double)
#undef QT_ADAM_DIR

struct qt_param {
    float *w;       /* the values (an initializer's data), stepped in place */
    const float *g; /* gradient (qt_exec_grad) */
    int64_t n;
    float wd;       /* weight decay multiplier (0 for biases, BN, scales) */
    float lr_mult;  /* 0 freezes the parameter */
    float min;      /* lower bound after the step (scales stay positive); -INFINITY: none */
    float *m, *v;   /* optimizer state (owned) */
    float *lr_elem; /* per-element learning-rate factor (owned), NULL: 1 */
    int log;        /* a positive scale stepped in log space (qt_optim_step) */
};

struct qt_optim {
    int kind;
    float momentum, wd;          /* SGD momentum (PyTorch form), weight decay */
    float beta1, beta2, eps;     /* Adam (defaults 0.9, 0.999, 1e-8) */
    int64_t t;                   /* steps taken */
    struct qt_param *p;
    int np, cap;
};

void qt_optim_init(struct qt_optim *o, int kind, float momentum, float wd);
void qt_optim_release(struct qt_optim *o);
/* Adds a parameter; the state is allocated zeroed. */
int qt_optim_add(struct qt_optim *o, float *w, const float *g, int64_t n, float wd_mult, float min,
                 struct qt_err *err);
/* One step with learning rate lr:
 *   SGD:  g' = g + wd * w;  m = momentum * m + g';  w -= lr * m
 *   Adam: g' = g + wd * w;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2;
 *         w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * (as torch.optim.SGD and torch.optim.Adam with weight_decay).
 * A parameter with log set (learnt quantization scales) takes Adam's step on
 * u = log w whatever the kind, with u's gradient w * g and no decay:
 *   m = b1 m + (1-b1) w g;  v = b2 v + (1-b2) (w g)^2;
 *   w *= exp(-lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps))
 * so a scale stays positive and moves by a factor of about exp(+-lr) per
 * step at most, however large its gradient (LSQ's step with SGD at lr 0.01
 * took a 4-bit scale from 0.0078 to the floor in one step). */
void qt_optim_step(struct qt_optim *o, float lr);
/* Scales every gradient so the global L2 norm is at most max_norm (> 0);
 * returns the norm before clipping. The gradients must be writable. */
double qt_clip_grad_norm(struct qt_optim *o, double max_norm);

/* ---- learning-rate schedules -------------------------------------------- */

enum qt_sched_kind { QT_SCHED_CONST, QT_SCHED_STEP, QT_SCHED_COSINE };

struct qt_sched {
    int kind;
    float base;
    int64_t total;      /* steps in the run (cosine) */
    int64_t step_size;  /* steps between decays (step) */
    float gamma;        /* decay factor (step, default 0.1) */
    int64_t warmup;     /* linear warm-up steps (0 = none) */
};
/* Learning rate at step t (0-based):
 *   const  base;   step  base * gamma^floor(t / step_size);
 *   cosine base * (1 + cos(pi * t / total)) / 2;
 * times (t + 1) / warmup during the warm-up. */
float qt_sched_lr(const struct qt_sched *s, int64_t t);
/* "const", "step", "cosine" -> kind; -1 if unknown. */
int qt_sched_parse(const char *name);

#endif
