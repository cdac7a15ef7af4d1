/* qat.c: `qtool qat MODEL.onnx --train DIR [--val DIR] -o OUT.onnx`:
 * quantization-aware training to a QDQ model and quant_info.json (or, with
 * --no-quant, float training to a float model). */
#include "cli.h"
#include "cli_json.h"
#include "train/train.h"

#include <string.h>
#include <unistd.h>

static void logline(void *ud, const char *line) {
    cli_progress_clear(ud);
    fprintf(ud, "qat: %s\n", line);
}

static void fill_json(cJSON *d, const struct qt_qat_opts *o, const struct qt_qat_result *r) {
    cJSON *eps = cJSON_CreateArray();
    cJSON_AddStringToObject(d, "model", o->model);
    cJSON_AddStringToObject(d, "output", o->out);
    if (!o->no_quant)
        cJSON_AddStringToObject(d, "quant_info", o->quant_info);
    cJSON_AddBoolToObject(d, "quantized", !o->no_quant);
    cJSON_AddNumberToObject(d, "wbits", o->q.wbits);
    cJSON_AddNumberToObject(d, "abits", o->q.abits);
    cJSON_AddNumberToObject(d, "seed", (double)o->seed);
    cJSON_AddNumberToObject(d, "calib_images", r->calib_images);
    cJSON_AddNumberToObject(d, "trained_tensors", r->nparams);
    cJSON_AddNumberToObject(d, "batchnorm_unfolded", r->bn_unfolded);
    if (o->init_info)
        cJSON_AddStringToObject(d, "init", o->init_info);
    else
        cJSON_AddNullToObject(d, "init");
    cJSON_AddNumberToObject(d, "freeze_bn_after", r->freeze_bn_after);
    cJSON_AddBoolToObject(d, "relative_lr", r->relative_lr);
    cJSON_AddBoolToObject(d, "distill", r->distill);
    if (r->distill)
        cli_json_num(d, "temperature", r->temperature);
    cJSON_AddStringToObject(d, "optimizer", o->optimizer == QT_QAT_ADAM ? "adam" : "sgd");
    cli_json_num(d, "lr", o->lr);
    cJSON_AddBoolToObject(d, "augment", o->augment);
    cJSON_AddNumberToObject(d, "held_back", r->held_back);
    cJSON_AddNumberToObject(d, "val_images", r->val_images);
    if (r->start_val_top1 >= 0)
        cli_json_num(d, "start_val_top1", r->start_val_top1);
    else
        cJSON_AddNullToObject(d, "start_val_top1");
    cJSON_AddNumberToObject(d, "best_epoch", r->best_epoch);
    if (r->best_val_top1 >= 0)
        cli_json_num(d, "best_val_top1", r->best_val_top1);
    else
        cJSON_AddNullToObject(d, "best_val_top1");
    cJSON_AddBoolToObject(d, "ended_below_start", r->ended_below_start);
    cJSON_AddStringToObject(d, "act_range", o->act_range == QT_ACT_PACT ? "pact" : o->act_range == QT_ACT_FIXED ? "fixed" : "lsq");
    cJSON_AddBoolToObject(d, "interrupted", r->interrupted);
    if (!o->no_quant && !r->interrupted)
        cli_json_mem(d, &o->q, &r->mem, 0);
    for (int i = 0; i < r->nepoch; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "epoch", r->epoch[i].epoch);
        cli_json_num(e, "loss", r->epoch[i].loss);
        cli_json_num(e, "train_top1", r->epoch[i].train_top1);
        if (r->epoch[i].val_top1 >= 0)
            cli_json_num(e, "val_top1", r->epoch[i].val_top1);
        cli_json_num(e, "lr", r->epoch[i].lr);
        cli_json_num(e, "wall_s", r->epoch[i].wall_s);
        cli_json_num(e, "step_ms", r->epoch[i].step_ms);
        cli_json_num(e, "scale_ratio_min", r->epoch[i].scale_lo);
        cli_json_num(e, "scale_ratio_max", r->epoch[i].scale_hi);
        cJSON_AddItemToArray(eps, e);
    }
    cJSON_AddItemToObject(d, "epochs", eps);
    cli_json_num(d, "run_s", r->wall_s);
}

struct qat_cmd {
    struct qt_qat_opts o;
    struct cli_pp pp;
    const char *json;
    int quiet;
};

static int qat_main(void *ctx);

int cmd_qat(int argc, char **argv) {
    static const int optims[] = {QT_QAT_ADAM, QT_QAT_SGD};
    static const int scheds[] = {QT_SCHED_COSINE, QT_SCHED_STEP, QT_SCHED_CONST};
    struct qat_cmd a = {0};
    struct qt_qat_opts *o = &a.o;
    qt_qat_opts_init(o);
    cli_pp_init(&a.pp);
    const struct opt opts[] = {
        OPT_STRING(0, "train", "DIR", &o->train, "training images (ImageFolder layout; flat folder with --distill)"),
        OPT_STRING(0, "val", "DIR", &o->val,
                   "validation images: top-1 at the start and after each epoch; the best is written"),
        OPT_INTEGER(0, "hold-back", "N", &o->hold_back, 0, 1L << 30,
                    "without --val: validate on every Nth training image, not trained on (default 10; 0 none)"),
        OPT_STRING('o', "output", "OUT.onnx", &o->out, "model to write (required): QDQ, or float with --no-quant"),
        OPT_STRING(0, "quant-info", "FILE.json", &o->quant_info, "quantization parameters (default: OUT with .json)"),
        OPT_INTEGER(0, "epochs", "N", &o->epochs, 1, 100000, "epochs (default 1)"),
        OPT_INTEGER(0, "iters-per-epoch", "N", &o->iters_per_epoch, 1, 1L << 30,
                    "steps per epoch (default: one pass over --train)"),
        OPT_INTEGER('b', "batch", "N", &o->batch, 1, 4096, "images per step (default 32)"),
        OPT_FLOAT(0, "lr", "LR", &o->lr, 1e-12, 100, "learning rate (default 0.003, a fraction of each weight's step)"),
        OPT_CHOICE(0, "optimizer", "adam|sgd", &o->optimizer, optims,
                   "optimizer of the weights (default adam; scales: always Adam, log space)"),
        OPT_FLOAT(0, "wd", "W", &o->wd, 0, 1, "weight decay on weights (default 1e-4)"),
        OPT_FLOAT(0, "momentum", "M", &o->momentum, 0, 0.9999, "SGD momentum (default 0.9)"),
        OPT_CHOICE(0, "schedule", "cosine|step|const", &o->schedule, scheds,
                   "learning-rate schedule over all steps (default cosine)"),
        OPT_INTEGER(0, "step-epochs", "N", &o->step_epochs, 1, 100000, "step schedule: epochs between decays (default 1)"),
        OPT_FLOAT(0, "gamma", "G", &o->gamma, 0, 1, "step schedule: decay factor (default 0.1)"),
        OPT_FLOAT(0, "clip-grad", "NORM", &o->clip_grad, 0, 1e9, "clip the global gradient norm (default: no clipping)"),
        OPT_INTEGER(0, "freeze-bn-after", "EPOCH", &o->freeze_bn_after, 0, 100000,
                    "BatchNormalization on running statistics from this epoch"),
        OPT_INTEGER(0, "freeze-observers-after", "EPOCH", &o->freeze_observers_after, 0, 100000,
                    "freeze scales and zero points from this epoch"),
        OPT_SET_INT(0, "distill", &o->distill, 1, "targets are the float model's outputs (KL; the default when quantizing)"),
        OPT_SET_INT(0, "labels", &o->distill, 0,
                    "targets are the folder labels (cross-entropy; the default with --no-quant)"),
        OPT_FLOAT(0, "temperature", "T", &o->temperature, 0.01, 100, "distillation temperature (default: 1 + log10 of the classes, rounded: 2 for 10, 4 for 1000)"),
        OPT_BOOL(0, "no-quant", &o->no_quant, "train in float, write a float model"),
        OPT_BOOL(0, "from-scratch", &o->from_scratch, "with --no-quant: re-initialise the weights (seeded) first"),
        OPT_SET_INT(0, "augment", &o->augment, 1, "random resized crop and flip (default: none)"),
        OPT_SET_INT(0, "no-augment", &o->augment, 0, "no random resized crop and flip (the default)"),
        OPT_FLOAT(0, "crop-scale", "S", &o->rrc_min_scale, 0.01, 1,
                  "with --augment: smallest random crop, fraction of the area (default 0.08)"),
        OPT_CHOICE(0, "weight-scale", "lsq|minmax", &o->weight_minmax, NULL,
                   "weight scales learnt (default) or min/max every step"),
        OPT_CHOICE(0, "act-range", "lsq|pact|fixed", &o->act_range, NULL,
                   "activation steps learnt (default), PACT clipping levels learnt, or the calibrated ranges kept"),
        OPT_SET_INT(0, "relative-lr", &o->relative_lr, 1,
                    "lr as a fraction of each weight's quantization step (default when quantizing)"),
        OPT_SET_INT(0, "absolute-lr", &o->relative_lr, 0, "lr in the weights' own units"),
        OPT_INTEGER(0, "calib-images", "N", &o->calib_images, 1, 1L << 30,
                    "images that initialise activation ranges (default 256)"),
        OPT_STRING(0, "init", "Q.json", &o->init_info,
                   "start from this quant_info.json (calib/finetune output) instead of calibrating"),
        OPT_INTEGER(0, "seed", "N", &o->seed, 0, 4294967295.0, "random seed (default 0)"),
        OPT_STRING(0, "checkpoint", "DIR", &o->checkpoint, "write DIR/checkpoint.bin after every epoch and on Ctrl-C"),
        OPT_BOOL(0, "resume", &o->resume, "continue from the checkpoint in --checkpoint DIR"),
        OPT_INTEGER('t', "threads", "N", &o->threads, 1, 1024, "threads (default: all cores)"),
        OPT_STRING('j', "json", "FILE", &a.json, "write the per-epoch log and a summary as JSON ('-' for stdout)"),
        OPT_BOOL('q', "quiet", &a.quiet, "no progress on stderr"),
        CLI_QUANT_OPTS(&o->q),
        CLI_FALLBACK_OPTS(&o->fb),
        OPT_INTEGER(0, "retune-steps", "N", &o->retune_steps, 0, 1L << 30,
                    "--max-drop: train each plan it builds N steps, kept unless the drop rises (default: an "
                    "epoch's; 0 none)"),
        CLI_PREPROC_OPTS(&a.pp),
        OPT_HELP(),
        OPT_END(),
    };
    return cli_main("qat", "MODEL.onnx --train DIR [--val DIR] -o OUT.onnx [options]", opts, argc, argv, &o->model,
                    qat_main, &a);
}

/* The per-epoch lines and the summary on f (stderr if interrupted). */
static void print_result(FILE *f, const struct qt_qat_opts *o, const struct qt_qat_result *r) {
    if (r->interrupted) {
        fprintf(stderr, "qat: interrupted%s%s\n", o->checkpoint ? "; resume with --resume --checkpoint " : "",
                o->checkpoint ? o->checkpoint : "");
        return;
    }
    for (int i = 0; i < r->nepoch; i++) {
        fprintf(f, "epoch %d: loss %.4f train top-1 %.2f", r->epoch[i].epoch, r->epoch[i].loss, r->epoch[i].train_top1);
        if (r->epoch[i].val_top1 >= 0)
            fprintf(f, " val top-1 %.2f", r->epoch[i].val_top1);
        fprintf(f, "\n");
    }
    if (r->start_val_top1 >= 0)
        fprintf(f, "start: val top-1 %.2f; wrote epoch %d (val top-1 %.2f) of %d, on %d %s images\n",
                r->start_val_top1, r->best_epoch, r->best_val_top1, r->epochs_done, r->val_images,
                o->val ? "--val" : "held-back");
    if (r->ended_below_start) /* loud whatever --quiet says */
        fprintf(stderr, "qat: warning: training ended below its start (val top-1 %.2f -> %.2f); wrote %s\n",
                r->start_val_top1, r->epoch[r->nepoch - 1].val_top1,
                r->best_epoch == 0 ? "the starting model" : "the best epoch");
    fprintf(f, "trained %d tensors for %d epochs in %.1f s\n", r->nparams, r->epochs_done, r->wall_s);
    if (o->no_quant) {
        fprintf(f, "wrote %s\n", o->out);
    } else {
        fprintf(f, "wrote %s and %s\n", o->out, o->quant_info);
        if (o->q.weight_budget.kind || o->q.act_budget.kind || o->q.pack)
            cli_print_mem(f, &r->mem);
    }
}

static int qat_main(void *ctx) {
    struct qat_cmd *a = ctx;
    struct qt_qat_opts *o = &a->o;
    struct cli_progress prog;
    struct cli_json js;
    struct qt_qat_result r;
    struct qt_err err = {0};
    char qinfo[4096];
    if (!o->out)
        return cli_usage("qat", "-o OUT.onnx is required");
    if (!o->train)
        return cli_usage("qat", "--train DIR is required");
    if (o->resume && !o->checkpoint)
        return cli_usage("qat", "--resume needs --checkpoint DIR");
    if (o->from_scratch && !o->no_quant)
        return cli_usage("qat", "--from-scratch trains a float model: add --no-quant");
    if (cli_fallback_check("qat", &o->fb, o->no_quant ? "--no-quant" : NULL))
        return QT_EUSAGE;
    if (o->retune_steps >= 0 && o->fb.max_drop < 0)
        return cli_usage("qat", "--retune-steps is for --max-drop");
    if (!o->no_quant && !o->quant_info)
        o->quant_info = cli_qinfo_path(o->out, qinfo, sizeof qinfo);
    o->pp = a->pp.pp;
    o->channels_set = a->pp.set_channels;
    o->classes = a->pp.classes;
    if (!a->quiet) {
        o->log = logline;
        o->log_ud = stderr;
        cli_progress_init(&prog, "qat", "steps");
        o->progress = cli_progress_cb;
        o->progress_ud = &prog;
    }
    cli_json_begin(&js, "qat", a->json);
    if (cli_json_check(&js, &err))
        return cli_json_fail(&js, &err);
    cli_stop_catch(1);
    o->stop = &cli_stop;
    int rc = qt_qat_run(o, &r, &err);
    cli_stop_catch(0);
    if (rc && rc != QT_EDROP) {
        qt_qat_result_free(&r);
        return cli_json_fail(&js, &err);
    }
    FILE *f = a->json && !strcmp(a->json, "-") ? stderr : stdout;
    print_result(f, o, &r);
    if (!r.interrupted)
        cli_fallback_report(f, &o->fb, &r.sens, &r.fb, o->out);
    if (r.fb.ran && r.retune_steps > 0)
        fprintf(f, "  retuned %d of %d rebuilt plan%s for %d steps (kept where the drop did not rise)\n", r.retuned,
                r.retune_tries, r.retune_tries == 1 ? "" : "s", r.retune_steps);
    if (js.doc) {
        fill_json(js.doc, o, &r);
        if (!r.interrupted)
            cli_fallback_fill_json(js.doc, &o->fb, &r.sens, &r.fb, o->out);
        if (r.fb.ran) {
            cJSON *fb = cJSON_GetObjectItem(js.doc, "fallback");
            cJSON_AddNumberToObject(fb, "retune_steps", r.retune_steps);
            cJSON_AddNumberToObject(fb, "retune_tries", r.retune_tries);
            cJSON_AddNumberToObject(fb, "retuned", r.retuned);
        }
    }
    qt_qat_result_free(&r);
    if (rc == QT_EDROP) { /* the best model found is written; the target was missed */
        fprintf(stderr, "qtool qat: %s\n", err.msg);
        return cli_json_end(&js, rc, &err);
    }
    return cli_json_end(&js, r.interrupted ? 128 + (cli_stop ? cli_stop : 2) : 0, NULL);
}
