/* qat.c: qtool qat: quantization-aware training.
 *
 * 1. The float model is prepared as calib prepares it (qt_qplan_build: same
 *    quantization settings, BatchNormalization folded, activations fused)
 *    and its activation ranges are calibrated on the first calib_images
 *    training images (qt_calib_observe); or, with init_info, the plan a
 *    quant_info.json describes is rebuilt (qt_qplan_from_info: its settings,
 *    steps and tuned weights, e.g. finetune's) and training starts there.
 * 2. The training graph is a copy of the prepared graph with a FakeQuant
 *    node after every quantized activation (one learnable LSQ scale per
 *    activation group, initialised from calibration, zero point fixed) and
 *    on every quantized weight: per-channel LSQ scales initialised from the
 *    weights' min/max (default), or with weight_minmax a min/max observer
 *    recomputed every step, as calib computes them. Biases stay float.
 * 3. Training: shuffled batches (seeded), optional random resized crop +
 *    flip, KL against the float model's outputs (distillation, the default
 *    when quantizing) or cross-entropy on folder labels, Adam (default) or
 *    SGD with a schedule, optional gradient clipping; learnt scales always
 *    take Adam's step on their logarithm (qt_optim_step), so they stay
 *    positive and move by about exp(+-lr) per step at most. After
 *    freeze_observers_after epochs the scales and zero points stop
 *    changing; the weights keep training. The start and every epoch are
 *    validated on val or on every hold_back-th training image (held back
 *    from training and calibration); the best of them is written.
 * 4. Export: trained weights back into the plan, activation (and weight)
 *    parameters from the learnt scales, weights and biases quantized with
 *    them, then calib's QDQ writer and quant_info.json.
 * no_quant trains the float graph itself (BatchNormalization with batch
 * statistics until freeze_bn_after) and writes a float model.
 * Determinism: batches, augmentation and Dropout draw from the seed only;
 * every kernel is thread-count independent, so the output bytes are too. */
#include "train/qat.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void qt_qat_opts_init(struct qt_qat_opts *o) {
    memset(o, 0, sizeof *o);
    qt_preproc_default(&o->pp);
    qt_quant_opts_init(&o->q);
    o->epochs = 1;
    o->batch = 32;
    o->lr = 0.003;
    o->optimizer = QT_QAT_ADAM;
    o->relative_lr = -1;
    o->wd = 1e-4;
    o->momentum = 0.9;
    o->schedule = QT_SCHED_COSINE;
    o->step_epochs = 1;
    o->gamma = 0.1;
    o->freeze_bn_after = QT_QAT_AUTO_BN;
    o->distill = -1;
    o->freeze_observers_after = -1;
    o->temperature = 0; /* automatic: from the number of classes */
    o->augment = 0;
    o->hold_back = 10;
    o->rrc_min_scale = 0.08;
    o->calib_images = 256;
    qt_fallback_opts_init(&o->fb);
    o->retune_steps = -1;
}

void qt_qat_log(struct qat *q, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    qt_logv(q->o->log, q->o->log_ud, fmt, ap);
    va_end(ap);
}

/* ---- evaluation ---------------------------------------------------------- */

struct val_pass {
    struct qat *q;
    struct qt_exec *vx, *fx; /* the training graph, the float model (agreement) */
    int agree, hits, labeled;
};

/* an executor per batch size (the last batch has its own) */
static float *val_input(void *ud, int nb, struct qt_err *err) {
    struct val_pass *v = ud;
    if (!v->vx || qt_exec_batch(v->vx) != nb) {
        qt_exec_free(v->vx);
        v->vx = NULL;
        qt_exec_free(v->fx);
        v->fx = NULL;
        if (qt_exec_new(&v->vx, v->q->tg, nb, v->q->o->threads, err) ||
            (v->agree && qt_exec_new(&v->fx, v->q->g, nb, v->q->o->threads, err)))
            return NULL;
    }
    return qt_exec_input(v->vx, 0);
}

static int val_batch(void *ud, float *in, const int *labels, int done, int nb, struct qt_err *err) {
    struct val_pass *v = ud;
    struct qat *q = v->q;
    (void)done;
    int rc = qt_exec_run(v->vx, err);
    if (rc)
        return rc;
    if (v->agree) {
        memcpy(qt_exec_input(v->fx, 0), in, sizeof(float) * (size_t)nb * q->c * q->h * q->w);
        if ((rc = qt_exec_run(v->fx, err)))
            return rc;
    }
    const float *z = qt_exec_output(v->vx, 0), *f = v->agree ? qt_exec_output(v->fx, 0) : NULL;
    for (int i = 0; i < nb; i++) {
        int want = v->agree ? qt_argmax(f + (int64_t)i * q->ncls, q->ncls) : labels[i];
        if (want < 0 || want >= q->ncls)
            continue;
        v->hits += qt_argmax(z + (int64_t)i * q->ncls, q->ncls) == want;
        v->labeled++;
    }
    return 0;
}

/* Top-1 of the training graph (fake-quantized, BatchNormalization on running
 * statistics) on the validation images; on images without labels, its top-1
 * agreement with the float model (the distillation target). */
static int validate(struct qat *q, double *top1, int *images, struct qt_err *err) {
    struct val_pass v = {.q = q, .agree = !qt_dataset_labeled(q->vds)};
    int *labels = malloc(sizeof(int) * (size_t)q->o->batch);
    if (!labels)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    struct qt_stream s = {.ds = q->vds, .pp = &q->pp, .c = q->c, .h = q->h, .w = q->w,
                          .total = qt_dataset_count(q->vds), .batch = q->o->batch, .threads = q->o->threads,
                          .labels = labels, .input = val_input, .run = val_batch, .ud = &v};
    int rc = qt_stream_images(&s, err);
    if (!rc) {
        *top1 = v.labeled ? 100.0 * v.hits / v.labeled : 0;
        *images = v.labeled;
    }
    qt_exec_free(v.vx);
    qt_exec_free(v.fx);
    free(labels);
    return rc;
}

/* ---- export --------------------------------------------------------------- */

/* The training's results into the plan: weights, learnt steps, biases. */
static int trained_plan(struct qat *q, struct qt_err *err) {
    struct qt_qplan *p = q->p;
    qt_qat_fold_back(q);
    for (int v = 0; v < p->g->nv; v++) /* training graph values keep the plan's indices */
        if (q->params[v] && qt_qat_is_float_init(p->g, v)) {
            memcpy(p->g->v[v].init->data, q->tg->v[v].init->data, p->g->v[v].init->nbytes);
            p->g->v[v].orig = NULL;
        }
    for (int t = 0; t < p->nt; t++) {
        struct qt_qparam *qp = &p->t[t].q;
        if (qp->role != QT_ROLE_ACT)
            continue;
        char nm[64];
        snprintf(nm, sizeof nm, "qat_act%d_scale", p->t[t].group);
        int sv = qt_graph_find(q->tg, nm);
        snprintf(nm, sizeof nm, "qat_act%d_zp", p->t[t].group);
        int zv = qt_graph_find(q->tg, nm);
        if (sv < 0 || zv < 0)
            return qt_errf(err, QT_EFAIL, "internal error: activation group %d has no scale", p->t[t].group);
        float s = *(const float *)q->tg->v[sv].init->data, z = *(const float *)q->tg->v[zv].init->data;
        if (q->o->act_range == QT_ACT_FIXED)
            continue; /* the calibrated parameters, untouched */
        if (q->act_pact[p->t[t].group]) { /* s holds the clipping level: [0, a] */
            s = s / (float)(qp->qmax - qp->qmin);
            z = (float)qp->qmin;
        }
        qp->scale[0] = s;
        qp->zp[0] = (int32_t)z;
        qp->rng_min[0] = s * (float)(qp->qmin - qp->zp[0]);
        qp->rng_max[0] = s * (float)(qp->qmax - qp->zp[0]);
        qp->method = q->act_pact[p->t[t].group] ? "pact" : "lsq";
    }
    if (qt_qplan_weights(p, err))
        return err->code;
    for (int t = 0; !q->o->weight_minmax && t < p->nt; t++) {
        struct qt_qparam *qp = &p->t[t].q;
        if (q->wscale[t] < 0)
            continue;
        const float *s = q->tg->v[q->wscale[t]].init->data;
        for (int c = 0; c < qp->n; c++) {
            qp->scale[c] = s[c];
            qp->rng_min[c] = s[c] * (float)(qp->qmin - qp->zp[c]);
            qp->rng_max[c] = s[c] * (float)(qp->qmax - qp->zp[c]);
        }
        qp->method = "lsq";
    }
    p->tuned = 1;
    qt_qplan_pow2(p);
    return qt_qplan_biases(p, err);
}

static int export_quant(struct qat *q, int images, struct qt_err *err) {
    struct qt_graph *qg = NULL;
    int rc = qt_qplan_export_qdq(q->p, &qg, err) ||
             qt_qplan_save(q->p, qg, q->o->out, q->o->quant_info, q->o->model, &q->pp, images, q->o->train, err);
    qt_graph_free(qg);
    return rc ? err->code : 0;
}

static int export_float(struct qat *q, struct qt_err *err) {
    for (int v = 0; v < q->tg->nv; v++)
        if (qt_qat_is_float_init(q->tg, v))
            q->tg->v[v].orig = NULL; /* weights and running statistics changed */
    return qt_graph_save(q->tg, q->o->out, err);
}

/* ---- the run ---------------------------------------------------------------- */

static void shuffle(int *order, int n, uint64_t seed) {
    uint64_t st = seed;
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(qt_rand01(&st) * (float)(i + 1));
        if (j > i)
            j = i;
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* The model, the training and validation images, the preprocessing. */
static int setup_data(struct qat *q, struct qt_qat_result *r, struct qt_err *err) {
    const struct qt_qat_opts *o = q->o;
    int fixed;
    if (o->batch > QT_QAT_MAX_BATCH) /* the step's index array */
        return qt_errf(err, QT_EUSAGE, "batch %d is above %d, the most images per qat step", o->batch,
                       QT_QAT_MAX_BATCH);
    q->pp = o->pp;
    if (qt_graph_load(&q->g, o->model, err) || qt_graph_check_weights(q->g, err) ||
        qt_model_image_shape(q->g, &q->pp, &q->c, &q->h, &q->w, &fixed, err))
        return err->code;
    if (fixed)
        return qt_errf(err, QT_EUNSUPPORTED, "model '%s' has a fixed batch size; qat needs a dynamic batch",
                       o->model);
    if (!o->channels_set)
        q->pp.channels = q->c;
    if (qt_dataset_open(&q->ds, o->train, o->classes, err))
        return err->code;
    if (!o->distill && !qt_dataset_labeled(q->ds))
        return qt_errf(err, QT_EDATA, "training folder '%s' has no class sub-folders; use --distill", o->train);
    /* without --val, every hold_back-th training image is held back (never
     * trained on, nor calibrated on) to measure the start and each epoch */
    if (!o->val && o->hold_back > 1 && qt_dataset_count(q->ds) >= 2 * o->hold_back) {
        if (qt_dataset_hold_back(q->ds, o->hold_back, &q->vds, err))
            return err->code;
        r->held_back = qt_dataset_count(q->vds);
        qt_qat_log(q, "validation: %d of the training images held back (every %dth), %d trained on", r->held_back,
              o->hold_back, qt_dataset_count(q->ds));
    }
    if (qt_dataset_count(q->ds) < o->batch)
        return qt_errf(err, QT_EDATA, "training folder '%s' has %d images, fewer than a batch (%d)", o->train,
                       qt_dataset_count(q->ds), o->batch);
    if (o->val && qt_dataset_open(&q->vds, o->val, o->classes, err))
        return err->code;
    q->pp_train = q->pp;
    if (o->augment) {
        q->pp_train.rrc = 1;
        q->pp_train.hflip = 1;
        q->pp_train.rrc_min_scale = (float)o->rrc_min_scale;
        q->pp_train.crop_h = q->h;
        q->pp_train.crop_w = q->w;
    }
    return 0;
}

/* The training graph: the float model itself (no_quant), or the prepared,
 * calibrated (or --init) plan with FakeQuant nodes. */
static int setup_graph(struct qat *q, struct qt_qat_result *r, struct qt_err *err) {
    const struct qt_qat_opts *o = q->o;
    if (o->no_quant) {
        if (o->freeze_bn_after == QT_QAT_AUTO_BN)
            q->eo->freeze_bn_after = -1;
        if (qt_graph_clone(&q->tg, q->g, err))
            return err->code;
        if (o->from_scratch)
            qt_qat_reinit(q);
    } else {
        if (o->from_scratch)
            return qt_errf(err, QT_EUSAGE, "--from-scratch trains a float model: add --no-quant");
        if (o->init_info) { /* a finished plan: settings, steps and tuned weights */
            int ntuned;
            if (qt_qplan_from_info(&q->p, q->g, o->model, o->init_info, &ntuned, err))
                return err->code;
            qt_qat_log(q, "started from %s: %d tensors, %d tuned weight tensors", o->init_info, q->p->nt, ntuned);
        } else {
            if (qt_qplan_build(&q->p, q->g, &o->q, NULL, NULL, err))
                return err->code;
            if (o->weight_minmax)
                q->p->o.weight_mse = 0; /* the steps written are the min/max observer's, as trained */
            if (o->q.weight_budget.kind || o->q.act_budget.kind) { /* widths within the budgets */
                if (o->q.mixed == QT_MIXED_CHANNEL)
                    return qt_errf(err, QT_EUSAGE, "--mixed per-channel is for calib and finetune: qat trains "
                                                   "one width per weight tensor (use --mixed per-layer)");
                if (qt_mixed_replan(&q->p, q->g, &o->q, q->ds, &q->pp, q->c, q->h, q->w,
                                    o->threads > 0 ? o->threads : qt_ncpus(), err))
                    return err->code;
                qt_qat_log(q, "mixed precision: %d layers given their own widths (ROM budget %lld bytes, RAM %lld)",
                           q->p->mixed->nlayers, (long long)q->p->mixed->rom_budget,
                           (long long)q->p->mixed->ram_budget);
            }
            /* CLE rescales folded weights, which unfolding BatchNormalization would undo for some layers */
            if (qt_cle_wanted(&o->q) && o->freeze_bn_after <= 0) {
                struct qt_cle_report cr;
                int n = qt_dataset_count(q->ds), tot = o->calib_images < n ? o->calib_images : n;
                if (qt_cle(q->p, q->ds, &q->pp, tot, o->batch < tot ? o->batch : tot, q->c, q->h, q->w,
                           o->threads > 0 ? o->threads : qt_ncpus(),
                           &cr, err))
                    return err->code;
                qt_qat_log(q, "cross-layer equalization: %d layer pairs, %d high biases absorbed", cr.pairs, cr.absorbed);
            }
            if (qt_qplan_weights(q->p, err))
                return err->code;
            /* the float reference of --max-drop and --sensitivity: after CLE, before training */
            if ((o->fb.max_drop >= 0 || o->fb.sensitivity) && qt_graph_clone(&q->ref, q->p->g, err))
                return err->code;
            if (qt_calib_observe(q->p, q->ds, &q->pp, q->c, q->h, q->w, o->calib_images, o->batch, 0, o->threads,
                                 &r->calib_images, NULL, NULL, err))
                return err->code;
            qt_qat_log(q, "calibrated %d activation groups on %d images; %d BatchNormalization folded", q->p->ngroups,
                  r->calib_images, q->p->nfolded);
        }
        /* BatchNormalization trains unfolded below 8 bits (batch statistics
         * re-centre every layer; folded from the start, a collapsed 4-bit
         * calibration never recovers), folded for the last epoch */
        if (o->freeze_bn_after == QT_QAT_AUTO_BN)
            q->eo->freeze_bn_after = !o->init_info && q->p->nfolded > 0 && o->q.per_channel &&
                                             !qt_cle_wanted(&o->q) /* CLE rescaled the folded weights */ &&
                                             o->epochs > 1 &&
                                             (o->q.wbits < 8 || o->q.abits < 8 || o->q.weight_budget.kind ||
                                              o->q.act_budget.kind)
                                         ? o->epochs - 1
                                         : -1;
        if (qt_qat_build_graph(q, err))
            return err->code;
        r->bn_unfolded = q->nbnc;
    }
    return 0;
}

/* The training and teacher plans, the optimizer and its parameters. */
static int setup_optim(struct qat *q, struct qt_qat_result *r, struct qt_err *err) {
    const struct qt_qat_opts *o = q->o;
    if (qt_qat_mark_params(q, err))
        return err->code;
    if (qt_exec_new_train(&q->x, q->tg, o->batch, o->threads, q->params, err))
        return err->code;
    qt_qat_set_observe(q, o->weight_minmax);
    qt_qat_lsq_scales(q);
    if (o->init_info)
        qt_qat_snap_weights(q);
    const struct qt_tensor *out = qt_exec_output_tensor(q->x, 0);
    if (out->ndim != 2 || out->dims[0] != o->batch)
        return qt_errf(err, QT_EUNSUPPORTED, "model output must be [N, classes] logits");
    q->ncls = (int)out->dims[1];
    if (o->distill) {
        /* softer targets for more classes: T = 2 for 10 classes, 4 for 1000 */
        if (!(o->temperature > 0))
            q->eo->temperature = 1 + nearbyint(log10(q->ncls));
        if (!q->retune_tries) /* not again for every retune */
            qt_qat_log(q, "distillation from the float model at temperature %g (%d classes)", o->temperature, q->ncls);
        if (qt_exec_new(&q->tx, q->g, o->batch, o->threads, err))
            return err->code;
        q->tlogits = malloc(sizeof(float) * (size_t)o->batch * (size_t)q->ncls);
        if (!q->tlogits)
            return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    qt_optim_init(&q->opt, o->optimizer == QT_QAT_ADAM ? QT_OPT_ADAM : QT_OPT_SGD, (float)o->momentum,
                  (float)o->wd);
    for (int v = 0; v < q->tg->nv; v++) {
        if (!q->params[v])
            continue;
        /* decay only weights (more than one dim); scales stay positive by
         * their log-space step, with no floor (BN-folded channels have
         * steps down to 1e-14: a floor of 1e-6, LSQ's old guard, moved
         * them by 1e8 on MobileNetV1 unfolded) */
        int scale = qt_qat_is_scale(q, v);
        if (qt_optim_add(&q->opt, q->tg->v[v].init->data, qt_exec_grad(q->x, v), qt_tensor_numel(q->tg->v[v].init),
                         q->tg->v[v].init->ndim > 1 && !scale ? 1.0f : 0.0f, scale ? 0.0f : -INFINITY, err))
            return err->code;
        q->opt.p[q->opt.np - 1].log = scale; /* relative, bounded steps: see qt_optim_step */
        if (scale)
            q->nscale0 += (int)qt_tensor_numel(q->tg->v[v].init);
        r->nparams++;
    }
    if (o->relative_lr && qt_qat_step_relative_lr(q, err))
        return err->code;
    q->scale0 = malloc(sizeof(float) * ((size_t)q->nscale0 + 1));
    if (!q->scale0)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    qt_qat_scale_ratio(q, NULL, NULL);
    q->order = malloc(sizeof(int) * (size_t)qt_dataset_count(q->ds));
    q->labels = malloc(sizeof(int) * (size_t)o->batch);
    if (!q->order || !q->labels)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    return 0;
}

static int setup(struct qat *q, struct qt_qat_result *r, struct qt_err *err) {
    int rc = setup_data(q, r, err);
    if (!rc && (q->o->fb.max_drop >= 0 || q->o->fb.sensitivity))
        rc = qt_qat_fallback_images(q, &q->es, err);
    if (!rc)
        rc = setup_graph(q, r, err);
    return rc ? rc : setup_optim(q, r, err);
}

/* Freezes what the schedule says is frozen from `epoch` (0-based) on. */
static void apply_freeze(struct qat *q, int epoch) {
    const struct qt_qat_opts *o = q->o;
    if (o->freeze_bn_after >= 0 && epoch >= o->freeze_bn_after)
        q->x->bn_frozen = 1;
    if (o->freeze_observers_after >= 0 && epoch >= o->freeze_observers_after) {
        qt_qat_set_observe(q, 0);
        for (int i = 0; i < q->opt.np; i++)
            for (int v = 0; v < q->tg->nv; v++)
                if (q->params[v] && q->opt.p[i].w == q->tg->v[v].init->data && qt_qat_is_scale(q, v))
                    q->opt.p[i].lr_mult = 0;
    }
}

/* --max-drop and --sensitivity: what they cannot go with. */
static int check_fallback(const struct qt_qat_opts *o, struct qt_err *err) {
    int search = o->fb.max_drop >= 0;
    const char *opt = search ? "--max-drop" : "--sensitivity";
    if (!search && !o->fb.sensitivity)
        return 0;
    if (o->no_quant)
        return qt_errf(err, QT_EUSAGE, "--no-quant trains a float model: %s measures a quantized one", opt);
    if (o->init_info) /* the search builds plans from the model with qat's own settings */
        return qt_errf(err, QT_EUSAGE, "%s starts from qat's own calibration: it excludes --init", opt);
    if (search && (o->q.weight_budget.kind || o->q.act_budget.kind))
        return qt_errf(err, QT_EUSAGE, "--max-drop raises layers above the widths a budget chose: it excludes "
                                       "--weight-budget and --act-budget in qat");
    return 0;
}

/* The option combinations qat refuses; resolves the automatic choices
 * (see qt_qat_opts_init): quantized training distils from the float model
 * and steps relative to the quantization steps; float training uses the
 * labels and absolute steps. */
static int check_opts(struct qt_qat_opts *eo, struct qt_err *err) {
    const struct qt_qat_opts *o = eo;
    if (eo->distill < 0)
        eo->distill = !eo->no_quant;
    if (eo->relative_lr < 0)
        eo->relative_lr = !eo->no_quant;
    if (!o->model || !o->train || !o->out || (!o->no_quant && !o->quant_info))
        return qt_errf(err, QT_EUSAGE, "model, training folder and output are required");
    if (o->epochs < 1 || o->batch < 1 || !(o->lr > 0))
        return qt_errf(err, QT_EUSAGE, "epochs, batch and lr must be positive");
    if (o->relative_lr && o->no_quant)
        return qt_errf(err, QT_EUSAGE, "--relative-lr scales lr by quantization steps: it excludes --no-quant");
    if (o->init_info && o->freeze_bn_after == QT_QAT_AUTO_BN)
        eo->freeze_bn_after = -1;
    if (o->q.cle > 0 && (o->init_info || o->freeze_bn_after > 0 || o->no_quant))
        return qt_errf(err, QT_EUSAGE, "--cle cannot be combined with %s",
                       o->init_info ? "--init (the plan is made)" : o->no_quant ? "--no-quant" :
                       "--freeze-bn-after (BatchNormalization is trained unfolded)");
    if (o->init_info && (o->no_quant || o->freeze_bn_after > 0))
        return qt_errf(err, QT_EUSAGE, "--init starts from a folded, quantized plan: it excludes --no-quant and "
                                       "--freeze-bn-after > 0");
    if (!o->no_quant && o->freeze_bn_after > 0 && !o->q.per_channel)
        return qt_errf(err, QT_EUSAGE,
                       "--freeze-bn-after %d trains BatchNormalization unfolded, which needs per-channel weight "
                       "steps (fold them exactly at export); drop --per-tensor or use --freeze-bn-after 0",
                       o->freeze_bn_after);
    if (o->resume && !o->checkpoint)
        return qt_errf(err, QT_EUSAGE, "--resume needs --checkpoint DIR");
    return check_fallback(o, err);
}

/* One epoch's running figures. */
struct epoch_acc {
    double t0, lsum;
    int hits, seen, nsteps;
    float lr;
    double *steps; /* step times (the first step of the run is not timed) */
};

/* Training step `it` of epoch `ep`: a batch of shuffled, augmented images,
 * the teacher's logits (distillation), forward, loss, backward, the
 * optimizer's step at the schedule's lr. */
static int train_step(struct qat *q, const struct qt_sched *sch, int ep, int it, int iters, int timed,
                      struct epoch_acc *a, struct qt_err *err) {
    const struct qt_qat_opts *o = q->o;
    float *input = qt_exec_input(q->x, 0);
    int count = qt_dataset_count(q->ds), yv = q->tg->outputs[0], c1 = 0, idx[QT_QAT_MAX_BATCH];
    size_t isz = (size_t)q->c * q->h * q->w;
    double loss;
    for (int i = 0; i < o->batch && i < QT_QAT_MAX_BATCH; i++)
        idx[i] = q->order[((int64_t)it * o->batch + i) % count];
    uint64_t bseed = o->seed * 1000003ull + (uint64_t)ep * 7919ull + (uint64_t)it;
    if (qt_dataset_load_idx(q->ds, &q->pp_train, idx, o->batch, q->c, q->h, q->w, input, q->labels, o->threads,
                            bseed, err))
        return err->code;
    double st = qt_now();
    if (o->distill) {
        memcpy(qt_exec_input(q->tx, 0), input, sizeof(float) * isz * (size_t)o->batch);
        if (qt_exec_run(q->tx, err))
            return err->code;
        memcpy(q->tlogits, qt_exec_output(q->tx, 0), sizeof(float) * (size_t)o->batch * (size_t)q->ncls);
    }
    q->x->rng = bseed ^ 0x5bd1e995ull;
    if (qt_exec_run(q->x, err))
        return err->code;
    const float *z = qt_exec_output(q->x, 0);
    if (o->distill) {
        qt_loss_kl(z, q->tlogits, o->batch, q->ncls, (float)o->temperature, qt_exec_grad(q->x, yv), &loss, NULL);
        for (int i = 0; i < o->batch; i++)
            c1 += q->labels[i] >= 0 && qt_argmax(z + (int64_t)i * q->ncls, q->ncls) == q->labels[i];
    } else {
        qt_loss_xent(z, q->labels, o->batch, q->ncls, qt_exec_grad(q->x, yv), &loss, &c1);
    }
    if (!isfinite(loss))
        return qt_errf(err, QT_EFAIL, "training diverged at epoch %d step %d (loss %g): lower --lr", ep + 1, it + 1,
                       loss);
    a->lsum += loss;
    a->hits += c1;
    a->seen += o->batch;
    if (qt_exec_backward(q->x, err))
        return err->code;
    if (o->clip_grad > 0)
        qt_clip_grad_norm(&q->opt, o->clip_grad);
    a->lr = qt_sched_lr(sch, (int64_t)ep * iters + it);
    qt_optim_step(&q->opt, a->lr);
    if (timed)
        a->steps[a->nsteps++] = qt_now() - st;
    return 0;
}

/* The end of epoch `ep`: its summary (median step time, loss, top-1,
 * validation, scale ratios), the best epoch's snapshot, the log line and
 * the checkpoint. */
static int epoch_end(struct qat *q, struct qt_qat_result *r, int ep, int iters, struct epoch_acc *a,
                     struct qt_err *err) {
    const struct qt_qat_opts *o = q->o;
    struct qt_qat_epoch *e = &r->epoch[r->nepoch];
    double *steps = a->steps;
    for (int i = 1; i < a->nsteps; i++) /* median: insertion sort, iters is small */
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            double t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    e->step_ms = a->nsteps ? 1000 * steps[a->nsteps / 2] : 0;
    e->epoch = ep + 1;
    e->loss = iters ? a->lsum / iters : 0;
    e->train_top1 = a->seen ? 100.0 * a->hits / a->seen : 0;
    e->lr = a->lr;
    e->val_top1 = -1;
    if (q->vds && validate(q, &e->val_top1, &e->val_images, err))
        return err->code;
    qt_qat_scale_ratio(q, &e->scale_lo, &e->scale_hi);
    if (q->vds && e->val_top1 >= r->best_val_top1) { /* ties: the later epoch */
        if (qt_qat_snap_take(q, err))
            return err->code;
        r->best_val_top1 = e->val_top1;
        r->best_epoch = ep + 1;
    }
    e->wall_s = qt_now() - a->t0;
    r->nepoch++;
    r->epochs_done = ep + 1;
    if (q->vds)
        qt_qat_log(q, "epoch %d/%d: loss %.4f, train top-1 %.2f, val top-1 %.2f (%d images), lr %.3g, %.1f s", ep + 1,
                   o->epochs, e->loss, e->train_top1, e->val_top1, e->val_images, e->lr, e->wall_s);
    else
        qt_qat_log(q, "epoch %d/%d: loss %.4f, train top-1 %.2f, lr %.3g, %.1f s", ep + 1, o->epochs, e->loss,
                   e->train_top1, e->lr, e->wall_s);
    return qt_qat_ck_write(q, ep + 1, r, err);
}

/* The validation record at the start: measured, or read from the checkpoint. */
static int start_val(struct qat *q, struct qt_qat_result *r, int start, struct qt_err *err) {
    r->start_val_top1 = r->best_val_top1 = -1;
    r->best_epoch = -1;
    if (q->vds && !start) { /* the starting point: calibrated (or --init) model */
        if (validate(q, &r->start_val_top1, &r->val_images, err) || qt_qat_snap_take(q, err))
            return err->code;
        r->best_epoch = 0;
        r->best_val_top1 = r->start_val_top1;
        qt_qat_log(q, "start: val top-1 %.2f (%d images)", r->start_val_top1, r->val_images);
    } else if (q->vds) {
        r->start_val_top1 = q->ck_start_val;
        r->best_val_top1 = q->ck_best_val;
        r->best_epoch = q->ck_best_epoch;
    }
    return 0;
}

/* The best epoch back (if not the last) and the model written. */
static int finish(struct qat *q, struct qt_qat_result *r, struct qt_err *err) {
    if (q->vds && r->nepoch) {
        double last = r->epoch[r->nepoch - 1].val_top1;
        r->ended_below_start = r->start_val_top1 >= 0 && last < r->start_val_top1;
        if (r->best_epoch != r->epochs_done) {
            qt_qat_snap_restore(q);
            qt_qat_log(q, "writing epoch %d (val top-1 %.2f), the best; the last epoch gave %.2f", r->best_epoch,
                       r->best_val_top1, last);
        }
    }
    if (q->o->no_quant)
        return export_float(q, err);
    if (trained_plan(q, err) || (q->ref && qt_qat_fallback(q, &q->es, r, err)) ||
        export_quant(q, r->calib_images, err) || qt_mem_figures(q->p, &r->mem, err))
        return err->code;
    if (q->p->mixed) {
        r->mem.rom_budget = q->p->mixed->rom_budget;
        r->mem.ram_budget = q->p->mixed->ram_budget;
    }
    return qt_fallback_missed(&r->fb, err);
}

/* The training graph and what was built on it (qt_qat_build_graph, setup_optim). */
static void train_release(struct qat *q) {
    qt_optim_release(&q->opt);
    qt_exec_free(q->x);
    qt_exec_free(q->tx);
    qt_qat_snap_free(q);
    qt_graph_free(q->tg);
    free(q->params);
    free(q->wfq);
    free(q->afq);
    free(q->act_scale);
    free(q->act_pact);
    free(q->wscale);
    free(q->bnc);
    free(q->order);
    free(q->labels);
    free(q->tlogits);
    free(q->scale0);
    q->x = q->tx = NULL;
    q->tg = NULL;
    q->params = q->act_pact = NULL;
    q->wfq = q->afq = q->act_scale = q->wscale = q->order = q->labels = NULL;
    q->bnc = NULL;
    q->tlogits = q->scale0 = NULL;
    q->nwfq = q->nafq = q->nact = q->nbnc = q->nscale0 = 0;
}

static void qat_release(struct qat *q) {
    train_release(q);
    qt_dataset_free(q->ds);
    qt_dataset_free(q->vds);
    qt_qplan_free(q->p);
    qt_graph_free(q->g);
    qt_graph_free(q->ref);
    qt_evalset_release(&q->es);
}

int qt_qat_retune(struct qat *q, struct qt_qplan *np, int steps, struct qt_err *err) {
    const struct qt_qat_opts *o = q->o;
    struct qt_qplan *tp = q->p;
    struct qt_qat_result scratch;
    int count = qt_dataset_count(q->ds), freeze = o->freeze_bn_after;
    struct qt_sched sch = {o->schedule, (float)o->lr, steps, steps, (float)o->gamma, 0};
    struct epoch_acc a = {.t0 = qt_now()};
    memset(&scratch, 0, sizeof scratch);
    train_release(q);
    q->p = np; /* folded, its steps set: trained as --init's plan is, without snapping the weights */
    q->eo->freeze_bn_after = -1;
    q->from_plan = 1;
    if (qt_qat_build_graph(q, err) || setup_optim(q, &scratch, err))
        goto out;
    apply_freeze(q, o->epochs);
    shuffle(q->order, count, o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)o->epochs * 0x632be59bd9b4e019ull + 7);
    for (int it = 0; it < steps; it++) /* as an epoch 0 of `steps` steps (the schedule), in an order of its own */
        if (train_step(q, &sch, 0, it, steps, 0, &a, err))
            goto out;
    trained_plan(q, err);
out:
    q->p = tp;
    q->eo->freeze_bn_after = freeze;
    return err->code;
}

void qt_qat_result_free(struct qt_qat_result *r) {
    free(r->epoch);
    r->epoch = NULL;
    qt_sens_report_free(&r->sens);
    free(r->fb.layer);
    r->fb.layer = NULL;
}

int qt_qat_run(const struct qt_qat_opts *uo, struct qt_qat_result *r, struct qt_err *err) {
    struct qat q;
    double t0 = qt_now();
    int start = 0;
    double *steps = NULL;
    struct qt_qat_opts eo = *uo;
    const struct qt_qat_opts *o = &eo;
    memset(&q, 0, sizeof q);
    memset(r, 0, sizeof *r);
    q.o = q.eo = &eo;
    q.from_plan = eo.init_info != NULL;
    if (check_opts(&eo, err) || qt_qplan_outputs_check(o->out, o->no_quant ? NULL : o->quant_info, 1, err))
        goto done;
    if (setup(&q, r, err))
        goto out;
    if (o->resume) {
        if (qt_qat_ck_read(&q, &start, err))
            goto out;
        qt_qat_log(&q, "resumed from %s/checkpoint.bin after epoch %d", o->checkpoint, start);
    }
    int count = qt_dataset_count(q.ds);
    int iters = o->iters_per_epoch > 0 ? o->iters_per_epoch : count / o->batch;
    struct qt_sched sch = {o->schedule, (float)o->lr, (int64_t)iters * o->epochs, (int64_t)iters * o->step_epochs,
                           (float)o->gamma, 0};
    r->epoch = calloc((size_t)o->epochs + 1, sizeof *r->epoch);
    steps = malloc(sizeof(double) * ((size_t)iters + 1));
    if (!r->epoch || !steps) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    if (start_val(&q, r, start, err))
        goto out;
    for (int ep = start; ep < o->epochs; ep++) {
        struct epoch_acc a = {.t0 = qt_now(), .steps = steps};
        apply_freeze(&q, ep);
        shuffle(q.order, count, o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)ep * 0x632be59bd9b4e019ull + 1);
        for (int it = 0; it < iters; it++) {
            if (train_step(&q, &sch, ep, it, iters, ep > start || it > 0, &a, err))
                goto out;
            if (o->progress)
                o->progress(o->progress_ud, (ep - start) * iters + it + 1, (o->epochs - start) * iters);
            if (o->stop && *o->stop) {
                /* the finished epochs and the optimizer state; the partial epoch reruns on --resume */
                if (qt_qat_ck_write(&q, ep, r, err))
                    goto out;
                r->interrupted = 1;
                qt_qat_log(&q, "interrupted at epoch %d step %d%s", ep + 1, it + 1,
                           o->checkpoint ? ": checkpoint written" : "");
                goto out;
            }
        }
        if (epoch_end(&q, r, ep, iters, &a, err))
            goto out;
    }
    finish(&q, r, err);
out:
    free(steps);
    qat_release(&q);
done:
    r->retuned = q.retuned;
    r->retune_tries = q.retune_tries;
    r->retune_steps = q.retune_steps;
    r->wall_s = qt_now() - t0;
    r->freeze_bn_after = eo.freeze_bn_after;
    r->distill = eo.distill;
    r->relative_lr = eo.relative_lr;
    r->temperature = eo.distill ? eo.temperature : 0;
    return err->code;
}
