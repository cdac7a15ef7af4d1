/* calib.c: `qtool calib MODEL.onnx --data DIR -o OUT.onnx`: post-training
 * static quantization to a QDQ model and quant_info.json. */
#include "cli.h"
#include "cli_json.h"
#include "quant/quant.h"

#include <string.h>
#include <unistd.h>

enum { OPT_QINFO = 400, OPT_DRY, OPT_BC, OPT_BNRE, OPT_NOBNRE, OPT_ITERS, OPT_LR, OPT_FTBATCH, OPT_MODE, OPT_MAXMEM, OPT_SEED, OPT_FIXAS, OPT_METHOD };

/* qtool finetune: the calib options plus these */
static const struct opt ft_opts[] = {
    {OPT_METHOD, "method", "adaquant|adaround", "tune weights, biases and steps (default) or learn the rounding only"},
    {OPT_ITERS, "iters", "N", "Adam steps per layer (default 300)"},
    {OPT_LR, "lr", "LR", "learning rate: adaquant relative to each channel's weight step (default 0.003), "
                         "adaround of the rounding variables (default 0.05)"},
    {OPT_FTBATCH, "batch", "N", "images per Adam step (default 8)"},
    {OPT_MODE, "mode", "sequential|parallel", "layer inputs from the tuned quantized prefix (default) or float"},
    {OPT_MAXMEM, "max-memory", "BYTES", "one layer's inputs and targets above this go to a temporary file (default 1073741824)"},
    {OPT_SEED, "seed", "S", "minibatch order (default 0)"},
    {OPT_FIXAS, "fixed-act-steps", NULL, "keep the calibrated input steps (default: learn those of single-reader inputs)"},
    {0, NULL, NULL, NULL},
};

static const struct opt opts[] = {
    {'d', "data", "DIR", "calibration images (ImageFolder layout or a flat folder)"},
    {'o', "output", "OUT.onnx", "quantized QDQ model to write (required)"},
    {OPT_QINFO, "quant-info", "FILE.json", "quantization parameters (default: OUT with .json)"},
    CLI_QUANT_OPTS,
    CLI_MIXED_OPTS,
    {OPT_BC, "bias-correction", NULL, "correct each Conv/Gemm bias by the mean quantized-output error"},
    {OPT_BNRE, "bn-reestimate", NULL, "bias correction that also matches each channel's output variance "
                                      "(default with --wbits below 8)"},
    {OPT_NOBNRE, "no-bn-reestimate", NULL, "no bias correction unless --bias-correction (default with 8-bit weights)"},
    {OPT_DRY, "dry-run", NULL, "print the graph preparation and what would be quantized, write nothing"},
    {'b', "batch", "N", "images per run (default 32)"},
    {'n', "limit", "N", "use at most N images (sorted order)"},
    {'t', "threads", "N", "threads (default: all cores)"},
    {'j', "json", "FILE", "write a summary as JSON ('-' for stdout)"},
    {'q', "quiet", NULL, "no progress or preparation report on stderr"},
    CLI_PREPROC_OPTS,
    {'h', "help", NULL, "show this help"},
    {0, NULL, NULL, NULL},
};

static void logline(void *ud, const char *line) {
    cli_progress_clear(ud);
    fprintf(ud, "%s\n", line);
}

struct calib_ctx {
    int ft;
    const struct opt *all;
};

static int calib_main(int argc, char **argv, void *ctx);

int cli_calib_main(int argc, char **argv, int ft) {
    struct opt all[128];
    int na = 0;
    for (int i = 0; opts[i].name; i++)
        if (!(ft && opts[i].id == 'b'))
            all[na++] = opts[i];
    for (int i = 0; ft && ft_opts[i].name; i++)
        all[na++] = ft_opts[i];
    all[na] = (struct opt){0, NULL, NULL, NULL};
    struct calib_ctx cx = {ft, all};
    return cli_run_config(ft ? "finetune" : "calib", all, argc, argv, calib_main, &cx);
}

static int calib_main(int argc, char **argv, void *ctx) {
    const struct calib_ctx *cx = ctx;
    int ft = cx->ft;
    const struct opt *all = cx->all;
    const char *cmd = ft ? "finetune" : "calib";
    struct optparse op;
    struct qt_calib_opts o;
    struct qt_calib_result r;
    struct qt_err err = {0};
    struct cli_pp pp;
    struct cli_progress prog, ftprog;
    struct cli_json js;
    const char *json = NULL;
    char qinfo[4096];
    int quiet = 0, c, bnre = -1;
    long v;
    double d, lr = 0;
    qt_calib_opts_init(&o);
    cli_pp_init(&pp);
    o.finetune = ft;
    opt_build(all, &op);
    optind = 1;
    while ((c = getopt_long(argc, argv, op.shorts, op.longs, NULL)) != -1) {
        switch (c) {
        case 'd': o.data = optarg; break;
        case 'o': o.out = optarg; break;
        case OPT_QINFO: o.quant_info = optarg; break;
        case OPT_DRY: o.dry_run = 1; break;
        case OPT_BC: o.bias_correction = 1; break;
        case OPT_BNRE: bnre = 1; break;
        case OPT_NOBNRE: bnre = 0; break;
        case OPT_ITERS:
            if (cli_int(optarg, 0, 1000000, &v))
                return cli_usage(cmd, "--iters takes a number from 0 to 1000000, not '%s'", optarg);
            o.ft.iters = (int)v;
            break;
        case OPT_LR:
            if (cli_float(optarg, &d) || !(d > 0 && d < 1))
                return cli_usage(cmd, "--lr takes a number in (0, 1), not '%s'", optarg);
            lr = d;
            break;
        case OPT_METHOD:
            if (strcmp(optarg, "adaquant") && strcmp(optarg, "adaround"))
                return cli_usage(cmd, "--method is adaquant or adaround, not '%s'", optarg);
            o.ft.method = !strcmp(optarg, "adaround") ? QT_FT_ADAROUND : QT_FT_ADAQUANT;
            break;
        case OPT_FTBATCH:
            if (cli_int(optarg, 1, 4096, &v))
                return cli_usage(cmd, "--batch takes a number from 1 to 4096, not '%s'", optarg);
            o.ft.batch = (int)v;
            break;
        case OPT_FIXAS: o.ft.fixed_act_steps = 1; break;
        case OPT_MODE:
            if (strcmp(optarg, "sequential") && strcmp(optarg, "parallel"))
                return cli_usage(cmd, "--mode is sequential or parallel, not '%s'", optarg);
            o.ft.parallel = !strcmp(optarg, "parallel");
            break;
        case OPT_MAXMEM:
            if (cli_int(optarg, 1, 1L << 50, &v))
                return cli_usage(cmd, "--max-memory takes a positive number of bytes, not '%s'", optarg);
            o.ft.max_memory = v;
            break;
        case OPT_SEED:
            if (cli_int(optarg, 0, 1L << 50, &v))
                return cli_usage(cmd, "--seed takes a non-negative number, not '%s'", optarg);
            o.ft.seed = (uint64_t)v;
            break;
        case 'b':
            if (cli_int(optarg, 1, 4096, &v))
                return cli_usage(cmd, "--batch takes a number from 1 to 4096, not '%s'", optarg);
            o.batch = (int)v;
            break;
        case 'n':
            if (cli_int(optarg, 1, 1L << 30, &v))
                return cli_usage(cmd, "--limit takes a positive number, not '%s'", optarg);
            o.limit = (int)v;
            break;
        case 't':
            if (cli_int(optarg, 1, 1024, &v))
                return cli_usage(cmd, "--threads takes a positive number, not '%s'", optarg);
            o.threads = (int)v;
            break;
        case 'j': json = optarg; break;
        case 'q': quiet = 1; break;
        case 'h':
            opt_usage(stdout, cmd, "MODEL.onnx --data DIR -o OUT.onnx [options]", all);
            return 0;
        default: {
            int k = cli_quant_pp_option(cmd, &o.q, &pp, c, optarg);
            if (k)
                return k;
        }
        }
    }
    if (optind != argc - 1)
        return cli_usage(cmd, "expects one model file");
    o.model = argv[optind];
    /* below 8-bit weights, BN re-estimation is the default (MobileNetV1 W4A8:
     * 0.00 -> 65.58 held out, MobileNetV2: see man qtool-calib); at 8 bits it
     * helps one model and hurts another, so it stays off */
    o.bn_reestimate = bnre >= 0 ? bnre : !o.bias_correction && o.q.wbits < 8;
    if (bnre < 0 && !o.bias_correction && o.q.weight_budget.kind)
        o.bn_reestimate = -1; /* when a chosen width is below 8 bits */
    o.ft.lr = lr > 0 ? lr : o.ft.method == QT_FT_ADAROUND ? 5e-2 : o.ft.lr;
    if (!o.dry_run && !o.out)
        return cli_usage(cmd, "-o OUT.onnx is required");
    if (!o.dry_run && !o.data)
        return cli_usage(cmd, "--data DIR is required");
    if (o.out && !o.quant_info)
        o.quant_info = cli_qinfo_path(o.out, qinfo, sizeof qinfo);
    o.pp = pp.pp;
    o.channels_set = pp.set_channels;
    o.classes = pp.classes;
    if (o.dry_run) {
        o.log = logline;
        o.log_ud = stdout;
    } else if (!quiet) {
        o.log = logline;
        o.log_ud = stderr;
        cli_progress_init(&prog, cmd, "images");
        o.progress = cli_progress_cb;
        o.progress_ud = &prog;
    }
    if (!quiet) {
        o.ft.log = logline;
        o.ft.log_ud = stderr;
        cli_progress_init(&ftprog, "finetune", "layers");
        o.ft.progress = cli_progress_cb;
        o.ft.progress_ud = &ftprog;
    }
    if (o.finetune) { /* minutes of tuning: stop cleanly between steps */
        cli_stop_catch(1);
        o.ft.stop = &cli_stop;
    }
    cli_json_begin(&js, cmd, json);
    if (cli_json_check(&js, &err))
        return cli_json_fail(&js, &err);
    int rc = qt_calib_run(&o, &r, &err);
    cli_stop_catch(0);
    if (rc && cli_stop) {
        free(r.ft.layer);
        fprintf(stderr, "qtool %s: interrupted (%s); nothing written\n", cmd, err.msg);
        return cli_json_end(&js, 128 + cli_stop, &err);
    }
    if (rc) {
        free(r.ft.layer);
        return cli_json_fail(&js, &err);
    }
    FILE *f = json && !strcmp(json, "-") ? stderr : stdout;
    if (o.dry_run) {
        printf("dry run: %d BatchNormalization folded, %d activations fused, %d nodes kept in float, "
               "%d activation and %d weight tensors to quantize\n",
               r.nfolded_bn, r.nfused_act, r.nexcluded, r.nquant_act, r.nquant_weight);
    } else {
        fprintf(f, "calibrated on %d images in %.2f s: %d activation and %d weight tensors quantized\n", r.images,
                r.wall_s, r.nquant_act, r.nquant_weight);
        if (o.q.weight_budget.kind || o.q.act_budget.kind || o.q.pack)
            cli_print_mem(f, &r.mem);
        fprintf(f, "wrote %s and %s\n", o.out, o.quant_info);
    }
    if (json) {
        cJSON *d = js.doc;
        cJSON_AddStringToObject(d, "model", o.model);
        if (o.out)
            cJSON_AddStringToObject(d, "output", o.out);
        if (o.quant_info)
            cJSON_AddStringToObject(d, "quant_info", o.quant_info);
        cJSON_AddBoolToObject(d, "dry_run", o.dry_run);
        cJSON_AddNumberToObject(d, "images", r.images);
        cJSON_AddStringToObject(d, "observer", qt_obs_name(o.q.observer));
        cJSON_AddNumberToObject(d, "wbits", o.q.wbits);
        cJSON_AddNumberToObject(d, "abits", o.q.abits);
        cJSON_AddBoolToObject(d, "per_channel", o.q.per_channel);
        cJSON_AddBoolToObject(d, "bias_correction", o.bias_correction);
        cJSON_AddBoolToObject(d, "bn_reestimate", o.bn_reestimate);
        cJSON_AddNumberToObject(d, "folded_batchnorm", r.nfolded_bn);
        cJSON_AddNumberToObject(d, "fused_activations", r.nfused_act);
        cJSON_AddNumberToObject(d, "excluded_nodes", r.nexcluded);
        cJSON_AddNumberToObject(d, "quantized_activations", r.nquant_act);
        cJSON_AddNumberToObject(d, "quantized_weights", r.nquant_weight);
        cli_json_num(d, "bias_corrected_layers", r.bc_layers);
        cJSON_AddNumberToObject(d, "cle_pairs", r.cle_pairs);
        if (ft) {
            cJSON *a = cJSON_AddArrayToObject(d, "layers");
            for (int i = 0; i < r.ft.nlayers; i++) {
                cJSON *l = cJSON_CreateObject();
                cJSON_AddStringToObject(l, "name", r.ft.layer[i].name);
                cli_json_num(l, "loss_before", r.ft.layer[i].before);
                cli_json_num(l, "loss_after", r.ft.layer[i].after);
                cJSON_AddNumberToObject(l, "images", r.ft.layer[i].images);
                cJSON_AddBoolToObject(l, "input_step_learned", r.ft.layer[i].learn_as);
                cli_json_num(l, "input_step_before", r.ft.layer[i].as_before);
                cli_json_num(l, "input_step_after", r.ft.layer[i].as_after);
                cJSON_AddItemToArray(a, l);
            }
            cJSON_AddStringToObject(d, "method", o.ft.method == QT_FT_ADAROUND ? "adaround" : "adaquant");
            cJSON_AddNumberToObject(d, "iters", o.ft.iters);
            cli_json_num(d, "lr", o.ft.lr);
            cJSON_AddNumberToObject(d, "batch", o.ft.batch);
            cJSON_AddStringToObject(d, "mode", o.ft.parallel ? "parallel" : "sequential");
            cJSON_AddNumberToObject(d, "seed", (double)o.ft.seed);
            cJSON_AddNumberToObject(d, "threads", o.threads > 0 ? o.threads : qt_ncpus());
        }
        if (!o.dry_run)
            cli_json_mem(d, &o.q, &r.mem, r.mixed_s);
        cli_json_num(d, "run_s", r.wall_s);
    }
    free(r.ft.layer);
    return cli_json_end(&js, 0, NULL);
}

int cmd_calib(int argc, char **argv) {
    return cli_calib_main(argc, argv, 0);
}
