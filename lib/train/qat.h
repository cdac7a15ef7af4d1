/* qat.h: what the files of qtool qat share (lib/train/qat*.c; the steps
 * are described at the top of qat.c). Internal to lib/train. */
#ifndef QT_TRAIN_QAT_H
#define QT_TRAIN_QAT_H
#include "quant/quant.h"
#include "train/train.h"

/* A Conv whose BatchNormalization the plan folded, trained unfolded: tg's
 * Conv reads the original weights and bias (values vw, vb, the plan's
 * indices) and writes vpre, read by a BatchNormalization node (bn) with
 * copies of the parameters and running statistics (vg, vbeta, vmean, vvar). */
struct bnc {
    int conv, bn, vw, vb, vg, vbeta, vmean, vvar;
    float eps;
};

struct qat {
    const struct qt_qat_opts *o; /* the options with every automatic choice resolved (eo) */
    struct qt_qat_opts *eo;
    struct qt_graph *g;      /* the float model (teacher) */
    struct qt_qplan *p;      /* quantized mode */
    struct qt_graph *tg;     /* training graph */
    unsigned char *params;   /* per value of tg */
    int *wfq, *afq;          /* weight and activation FakeQuant nodes of tg */
    int nwfq, nafq;
    int *act_scale;          /* scale parameters (values of tg) */
    int nact;
    unsigned char *act_pact; /* per activation group: its scale value holds a PACT clipping level */
    int *wscale;             /* per plan tensor: its weight scale value in tg, or -1 */
    struct bnc *bnc;         /* BatchNormalization trained unfolded (freeze_bn_after > 0) */
    int nbnc;
    struct qt_exec *x, *tx;  /* training plan, teacher plan */
    struct qt_optim opt;
    struct qt_dataset *ds, *vds;
    struct qt_preproc pp, pp_train;
    int c, h, w, ncls;
    int *order, *labels;
    float *tlogits;
    float **snap;            /* the best epoch's float initializers of tg (NULL: not taken) */
    float *scale0;           /* learnt scales at the start, in optimizer order */
    int nscale0;
    int ck_best_epoch;       /* the validation record read from a checkpoint */
    double ck_start_val, ck_best_val;
    struct qt_graph *ref;    /* --max-drop, --sensitivity: the prepared float graph before training */
    struct qt_evalset es;    /* ... and the images they measure on */
    int from_plan;           /* the weight steps start as the plan's (--init, a retune), not fitted */
    int retune_steps;        /* --max-drop: resolved retune_steps */
    int retuned, retune_tries; /* rebuilt plans whose retune was kept / tried */
};

/* a log line through o->log (qat.c) */
void qt_qat_log(struct qat *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the training graph (qat_graph.c) ---- */
/* v is a float initializer (a weight, bias, scale or statistic) */
int qt_qat_is_float_init(const struct qt_graph *g, int v);
/* The quantized training graph q->tg: the prepared graph with FakeQuant nodes. */
int qt_qat_build_graph(struct qat *q, struct qt_err *err);
/* q->params: the trainable values of q->tg. */
int qt_qat_mark_params(struct qat *q, struct qt_err *err);
/* --from-scratch: re-initialised weights (seeded). */
void qt_qat_reinit(struct qat *q);

/* ---- BatchNormalization unfolded for training, folded for export (qat_bn.c) ---- */
int qt_qat_unfold_bn(struct qat *q, struct qt_err *err);
/* the BatchNormalization factor k = gamma / sqrt(var + eps) of channel o */
double qt_qat_bn_k(const struct qat *q, const struct bnc *r, int64_t o);
void qt_qat_fold_back(struct qat *q);

/* ---- LSQ scales and the relative learning rate (qat_lsq.c) ---- */
/* The learnt scales against their start: lo..hi of the ratios; lo NULL records the start. */
void qt_qat_scale_ratio(struct qat *q, double *lo, double *hi);
void qt_qat_lsq_scales(struct qat *q);
void qt_qat_snap_weights(struct qat *q);
int qt_qat_is_scale(const struct qat *q, int v);
int qt_qat_step_relative_lr(struct qat *q, struct qt_err *err);
/* weight FakeQuant nodes recompute min/max every step (on) or not */
void qt_qat_set_observe(struct qat *q, int on);

/* ---- the best epoch's snapshot and checkpoints (qat_ckpt.c) ---- */
int qt_qat_snap_take(struct qat *q, struct qt_err *err);
void qt_qat_snap_restore(struct qat *q);
void qt_qat_snap_free(struct qat *q);
/* DIR/checkpoint.bin after `epoch` finished epochs (nothing without --checkpoint) */
int qt_qat_ck_write(struct qat *q, int epoch, const struct qt_qat_result *r, struct qt_err *err);
int qt_qat_ck_read(struct qat *q, int *epoch, struct qt_err *err);

/* ---- --sensitivity and --max-drop after training (qat_fallback.c) ---- */
/* The evaluation images into es (before training: a usage error fails fast). */
int qt_qat_fallback_images(struct qat *q, struct qt_evalset *es, struct qt_err *err);
/* A short QAT pass (steps steps, qat's settings, a seed of its own) on np,
 * a folded plan with its steps set; the training state of q is replaced
 * (the training itself is over when this runs). */
int qt_qat_retune(struct qat *q, struct qt_qplan *np, int steps, struct qt_err *err);
/* The analysis and the search on the trained plan q->p (replaced by the plan to write). */
int qt_qat_fallback(struct qat *q, const struct qt_evalset *es, struct qt_qat_result *r, struct qt_err *err);
#endif
