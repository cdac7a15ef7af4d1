/* qat.c: `qtool qat MODEL.onnx --train DIR [--val DIR] -o OUT.onnx`:
 * quantization-aware training to a QDQ model and quant_info.json (or, with
 * --no-quant, float training to a float model). */
#include "cli.h"
#include "cli_json.h"
#include "train/train.h"

#include <string.h>
#include <unistd.h>

enum { OPT_TRAIN = 400, OPT_VAL, OPT_QINFO, OPT_EPOCHS, OPT_IPE, OPT_LR, OPT_OPTIM, OPT_WD, OPT_MOM, OPT_SCHED,
       OPT_STEP, OPT_GAMMA, OPT_CLIP, OPT_FBN, OPT_FOBS, OPT_DISTILL, OPT_TEMP, OPT_NOQ, OPT_SCRATCH, OPT_NOAUG,
       OPT_RRC, OPT_CALIB, OPT_SEED, OPT_CKPT, OPT_RESUME, OPT_WSCALE, OPT_INIT, OPT_RELLR, OPT_ABSLR, OPT_LABELS,
       OPT_AUG, OPT_HOLD, OPT_ACTRANGE };

static const struct opt opts[] = {
    {OPT_TRAIN, "train", "DIR", "training images (ImageFolder layout; flat folder with --distill)"},
    {OPT_VAL, "val", "DIR", "validation images: top-1 at the start and after each epoch; the best is written"},
    {OPT_HOLD, "hold-back", "N", "without --val: validate on every Nth training image, not trained on (default 10; 0 none)"},
    {'o', "output", "OUT.onnx", "model to write (required): QDQ, or float with --no-quant"},
    {OPT_QINFO, "quant-info", "FILE.json", "quantization parameters (default: OUT with .json)"},
    {OPT_EPOCHS, "epochs", "N", "epochs (default 1)"},
    {OPT_IPE, "iters-per-epoch", "N", "steps per epoch (default: one pass over --train)"},
    {'b', "batch", "N", "images per step (default 32)"},
    {OPT_LR, "lr", "LR", "learning rate (default 0.003, a fraction of each weight's step)"},
    {OPT_OPTIM, "optimizer", "adam|sgd", "optimizer of the weights (default adam; scales: always Adam, log space)"},
    {OPT_WD, "wd", "W", "weight decay on weights (default 1e-4)"},
    {OPT_MOM, "momentum", "M", "SGD momentum (default 0.9)"},
    {OPT_SCHED, "schedule", "cosine|step|const", "learning-rate schedule over all steps (default cosine)"},
    {OPT_STEP, "step-epochs", "N", "step schedule: epochs between decays (default 1)"},
    {OPT_GAMMA, "gamma", "G", "step schedule: decay factor (default 0.1)"},
    {OPT_CLIP, "clip-grad", "NORM", "clip the global gradient norm (default: no clipping)"},
    {OPT_FBN, "freeze-bn-after", "EPOCH", "BatchNormalization on running statistics from this epoch"},
    {OPT_FOBS, "freeze-observers-after", "EPOCH", "freeze scales and zero points from this epoch"},
    {OPT_DISTILL, "distill", NULL, "targets are the float model's outputs (KL; the default when quantizing)"},
    {OPT_LABELS, "labels", NULL, "targets are the folder labels (cross-entropy; the default with --no-quant)"},
    {OPT_TEMP, "temperature", "T", "distillation temperature (default 4)"},
    {OPT_NOQ, "no-quant", NULL, "train in float, write a float model"},
    {OPT_SCRATCH, "from-scratch", NULL, "with --no-quant: re-initialise the weights (seeded) first"},
    {OPT_AUG, "augment", NULL, "random resized crop and flip (default: none)"},
    {OPT_NOAUG, "no-augment", NULL, "no random resized crop and flip (the default)"},
    {OPT_RRC, "crop-scale", "S", "with --augment: smallest random crop, fraction of the area (default 0.08)"},
    {OPT_WSCALE, "weight-scale", "lsq|minmax", "weight scales learnt (default) or min/max every step"},
    {OPT_ACTRANGE, "act-range", "lsq|pact|fixed", "activation steps learnt (default), PACT clipping levels learnt, or the calibrated ranges kept"},
    {OPT_RELLR, "relative-lr", NULL, "lr as a fraction of each weight's quantization step (default when quantizing)"},
    {OPT_ABSLR, "absolute-lr", NULL, "lr in the weights' own units"},
    {OPT_CALIB, "calib-images", "N", "images that initialise activation ranges (default 256)"},
    {OPT_INIT, "init", "Q.json", "start from this quant_info.json (calib/finetune output) instead of calibrating"},
    {OPT_SEED, "seed", "N", "random seed (default 0)"},
    {OPT_CKPT, "checkpoint", "DIR", "write DIR/checkpoint.bin after every epoch and on Ctrl-C"},
    {OPT_RESUME, "resume", NULL, "continue from the checkpoint in --checkpoint DIR"},
    {'t', "threads", "N", "threads (default: all cores)"},
    {'j', "json", "FILE", "write the per-epoch log and a summary as JSON ('-' for stdout)"},
    {'q', "quiet", NULL, "no progress on stderr"},
    CLI_QUANT_OPTS,
    CLI_MIXED_OPTS,
    CLI_PREPROC_OPTS,
    {'h', "help", NULL, "show this help"},
    {0, NULL, NULL, NULL},
};

static void logline(void *ud, const char *line) {
    cli_progress_clear(ud);
    fprintf(ud, "qat: %s\n", line);
}

static int num(const char *name, const char *arg, double lo, double hi, double *out) {
    if (cli_float(arg, out) || !(*out >= lo && *out <= hi))
        return cli_usage("qat", "--%s takes a number in [%g, %g], not '%s'", name, lo, hi, arg);
    return 0;
}

static int count(const char *name, const char *arg, long lo, long hi, int *out) {
    long v;
    if (cli_int(arg, lo, hi, &v))
        return cli_usage("qat", "--%s takes a whole number from %ld to %ld, not '%s'", name, lo, hi, arg);
    *out = (int)v;
    return 0;
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
    if (!o->no_quant && !r->interrupted)
        cli_json_mem(d, &o->q, &r->mem, 0);
    cli_json_num(d, "run_s", r->wall_s);
}

static int qat_main(int argc, char **argv, void *ctx);

int cmd_qat(int argc, char **argv) {
    return cli_run_config("qat", opts, argc, argv, qat_main, NULL);
}

static int qat_main(int argc, char **argv, void *ctx) {
    struct cli_progress prog;
    struct cli_json js;
    struct optparse op;
    struct qt_qat_opts o;
    struct qt_qat_result r;
    struct qt_err err = {0};
    struct cli_pp pp;
    const char *json = NULL;
    char qinfo[4096];
    int quiet = 0, c, k;
    double d;
    (void)ctx;
    qt_qat_opts_init(&o);
    cli_pp_init(&pp);
    opt_build(opts, &op);
    optind = 1;
    while ((c = getopt_long(argc, argv, op.shorts, op.longs, NULL)) != -1) {
        switch (c) {
        case OPT_TRAIN: o.train = optarg; break;
        case OPT_VAL: o.val = optarg; break;
        case 'o': o.out = optarg; break;
        case OPT_QINFO: o.quant_info = optarg; break;
        case OPT_EPOCHS: if (count("epochs", optarg, 1, 100000, &o.epochs)) return QT_EUSAGE; break;
        case OPT_IPE: if (count("iters-per-epoch", optarg, 1, 1L << 30, &o.iters_per_epoch)) return QT_EUSAGE; break;
        case 'b': if (count("batch", optarg, 1, 4096, &o.batch)) return QT_EUSAGE; break;
        case OPT_LR: if (num("lr", optarg, 1e-12, 100, &o.lr)) return QT_EUSAGE; break;
        case OPT_OPTIM:
            if (strcmp(optarg, "sgd") && strcmp(optarg, "adam"))
                return cli_usage("qat", "--optimizer is sgd or adam, not '%s'", optarg);
            o.optimizer = !strcmp(optarg, "adam") ? QT_QAT_ADAM : QT_QAT_SGD;
            break;
        case OPT_WD: if (num("wd", optarg, 0, 1, &o.wd)) return QT_EUSAGE; break;
        case OPT_MOM: if (num("momentum", optarg, 0, 0.9999, &o.momentum)) return QT_EUSAGE; break;
        case OPT_SCHED:
            if ((o.schedule = qt_sched_parse(optarg)) < 0)
                return cli_usage("qat", "--schedule is cosine, step or const, not '%s'", optarg);
            break;
        case OPT_STEP: if (count("step-epochs", optarg, 1, 100000, &o.step_epochs)) return QT_EUSAGE; break;
        case OPT_GAMMA: if (num("gamma", optarg, 0, 1, &o.gamma)) return QT_EUSAGE; break;
        case OPT_CLIP: if (num("clip-grad", optarg, 0, 1e9, &o.clip_grad)) return QT_EUSAGE; break;
        case OPT_FBN: if (count("freeze-bn-after", optarg, 0, 100000, &o.freeze_bn_after)) return QT_EUSAGE; break;
        case OPT_FOBS:
            if (count("freeze-observers-after", optarg, 0, 100000, &o.freeze_observers_after))
                return QT_EUSAGE;
            break;
        case OPT_DISTILL: o.distill = 1; break;
        case OPT_LABELS: o.distill = 0; break;
        case OPT_AUG: o.augment = 1; break;
        case OPT_ABSLR: o.relative_lr = 0; break;
        case OPT_HOLD: if (count("hold-back", optarg, 0, 1L << 30, &o.hold_back)) return QT_EUSAGE; break;
        case OPT_TEMP: if (num("temperature", optarg, 0.01, 100, &o.temperature)) return QT_EUSAGE; break;
        case OPT_NOQ: o.no_quant = 1; break;
        case OPT_SCRATCH: o.from_scratch = 1; break;
        case OPT_NOAUG: o.augment = 0; break;
        case OPT_RRC: if (num("crop-scale", optarg, 0.01, 1, &o.rrc_min_scale)) return QT_EUSAGE; break;
        case OPT_WSCALE:
            if (strcmp(optarg, "lsq") && strcmp(optarg, "minmax"))
                return cli_usage("qat", "--weight-scale is lsq or minmax, not '%s'", optarg);
            o.weight_minmax = !strcmp(optarg, "minmax");
            break;
        case OPT_ACTRANGE:
            if (!strcmp(optarg, "lsq"))
                o.act_range = QT_ACT_LSQ;
            else if (!strcmp(optarg, "pact"))
                o.act_range = QT_ACT_PACT;
            else if (!strcmp(optarg, "fixed"))
                o.act_range = QT_ACT_FIXED;
            else
                return cli_usage("qat", "--act-range is lsq, pact or fixed, not '%s'", optarg);
            break;
        case OPT_INIT: o.init_info = optarg; break;
        case OPT_RELLR: o.relative_lr = 1; break;
        case OPT_CALIB: if (count("calib-images", optarg, 1, 1L << 30, &o.calib_images)) return QT_EUSAGE; break;
        case OPT_SEED:
            if (num("seed", optarg, 0, 4294967295.0, &d))
                return QT_EUSAGE;
            o.seed = (uint64_t)d;
            break;
        case OPT_CKPT: o.checkpoint = optarg; break;
        case OPT_RESUME: o.resume = 1; break;
        case 't': if (count("threads", optarg, 1, 1024, &o.threads)) return QT_EUSAGE; break;
        case 'j': json = optarg; break;
        case 'q': quiet = 1; break;
        case 'h':
            opt_usage(stdout, "qat", "MODEL.onnx --train DIR [--val DIR] -o OUT.onnx [options]", opts);
            return 0;
        default:
            if ((k = cli_quant_pp_option("qat", &o.q, &pp, c, optarg)))
                return k;
        }
    }
    if (optind != argc - 1)
        return cli_usage("qat", "expects one model file");
    o.model = argv[optind];
    if (!o.out)
        return cli_usage("qat", "-o OUT.onnx is required");
    if (!o.train)
        return cli_usage("qat", "--train DIR is required");
    if (o.resume && !o.checkpoint)
        return cli_usage("qat", "--resume needs --checkpoint DIR");
    if (o.from_scratch && !o.no_quant)
        return cli_usage("qat", "--from-scratch trains a float model: add --no-quant");
    if (!o.no_quant && !o.quant_info)
        o.quant_info = cli_qinfo_path(o.out, qinfo, sizeof qinfo);
    o.pp = pp.pp;
    o.channels_set = pp.set_channels;
    o.classes = pp.classes;
    if (!quiet) {
        o.log = logline;
        o.log_ud = stderr;
        cli_progress_init(&prog, "qat", "steps");
        o.progress = cli_progress_cb;
        o.progress_ud = &prog;
    }
    cli_json_begin(&js, "qat", json);
    if (cli_json_check(&js, &err))
        return cli_json_fail(&js, &err);
    cli_stop_catch(1);
    o.stop = &cli_stop;
    int rc = qt_qat_run(&o, &r, &err);
    cli_stop_catch(0);
    if (rc) {
        free(r.epoch);
        return cli_json_fail(&js, &err);
    }
    FILE *f = json && !strcmp(json, "-") ? stderr : stdout;
    if (r.interrupted) {
        fprintf(stderr, "qat: interrupted%s%s\n", o.checkpoint ? "; resume with --resume --checkpoint " : "",
                o.checkpoint ? o.checkpoint : "");
    } else {
        for (int i = 0; i < r.nepoch; i++) {
            fprintf(f, "epoch %d: loss %.4f train top-1 %.2f", r.epoch[i].epoch, r.epoch[i].loss,
                    r.epoch[i].train_top1);
            if (r.epoch[i].val_top1 >= 0)
                fprintf(f, " val top-1 %.2f", r.epoch[i].val_top1);
            fprintf(f, "\n");
        }
        if (r.start_val_top1 >= 0)
            fprintf(f, "start: val top-1 %.2f; wrote epoch %d (val top-1 %.2f) of %d, on %d %s images\n",
                    r.start_val_top1, r.best_epoch, r.best_val_top1, r.epochs_done, r.val_images,
                    o.val ? "--val" : "held-back");
        if (r.ended_below_start) /* loud whatever --quiet says */
            fprintf(stderr, "qat: warning: training ended below its start (val top-1 %.2f -> %.2f); wrote %s\n",
                    r.start_val_top1, r.epoch[r.nepoch - 1].val_top1,
                    r.best_epoch == 0 ? "the starting model" : "the best epoch");
        fprintf(f, "trained %d tensors for %d epochs in %.1f s\n", r.nparams, r.epochs_done, r.wall_s);
        if (o.no_quant) {
            fprintf(f, "wrote %s\n", o.out);
        } else {
            if (o.q.weight_budget.kind || o.q.act_budget.kind || o.q.pack)
                cli_print_mem(f, &r.mem);
            fprintf(f, "wrote %s and %s\n", o.out, o.quant_info);
        }
    }
    if (js.doc)
        fill_json(js.doc, &o, &r);
    free(r.epoch);
    return cli_json_end(&js, r.interrupted ? 128 + (cli_stop ? cli_stop : 2) : 0, NULL);
}
