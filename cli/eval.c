/* eval.c: `qtool eval MODEL.onnx --data DIR`: accuracy and speed of a float
 * or quantized model, optionally against a reference model. */
#include "cli.h"
#include "cli_json.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

enum { OPT_REF = 400, OPT_PRED, OPT_SAVE, OPT_SAVEIN, OPT_LAT, OPT_LATB, OPT_QUIET, OPT_SIM, OPT_REPORT, OPT_REPIMG };

static const struct opt opts[] = {
    {'d', "data", "DIR", "image folder (ImageFolder layout; a flat folder is unlabeled)"},
    {OPT_REF, "ref", "FLOAT.onnx", "reference model: top-1 agreement and SQNR of the outputs against it"},
    {'b', "batch", "N", "images per run (default 32)"},
    {'n', "limit", "N", "evaluate at most N images (sorted order)"},
    {'t', "threads", "N", "threads (default: all cores)"},
    {'j', "json", "FILE", "write the figures as JSON ('-' for stdout)"},
    {OPT_PRED, "predictions", "FILE.csv", "one row per image: path, label, top-5 indices and scores"},
    {OPT_SAVE, "save-outputs", "FILE", "raw little-endian float32 outputs in image order"},
    {OPT_SAVEIN, "save-inputs", "FILE", "raw float32 preprocessed inputs in image order (for other tools)"},
    {OPT_LAT, "latency-runs", "N", "timed runs for the latency figure (default 20, 0 = skip)"},
    {OPT_LATB, "latency-batch", "N", "images per timed run (default 1)"},
    {OPT_SIM, "simulate", NULL, "run a QDQ model as written, in float (default: QDQ patterns on int8 kernels)"},
    {OPT_REPORT, "report", "DIR", "with --ref: DIR/index.html, per-layer SQNR, histograms, depthwise ranges"},
    {OPT_REPIMG, "report-images", "N", "images for the per-layer figures of --report (default 64)"},
    {'q', "quiet", NULL, "no progress on stderr"},
    {OPT_CONFIG, "config", "FILE.json", "options by long name, e.g. {\"preset\": \"imagenet\", \"limit\": 500}"},
    CLI_PREPROC_OPTS,
    {'h', "help", NULL, "show this help"},
    {0, NULL, NULL, NULL},
};

static int eval_main(int argc, char **argv, void *ctx);

int cmd_eval(int argc, char **argv) {
    return cli_run_config("eval", opts, argc, argv, eval_main, NULL);
}

static int eval_main(int argc, char **argv, void *ctx) {
    struct optparse op;
    struct qt_eval_opts o;
    struct qt_eval_result r;
    struct qt_err err = {0};
    struct cli_pp pp;
    struct cli_progress prog;
    struct cli_json js;
    struct qt_layer_report rep = {0};
    const char *json = NULL, *report = NULL;
    char report_path[4096];
    int quiet = 0, c, report_images = 64;
    long v;
    (void)ctx;
    qt_eval_opts_init(&o);
    cli_pp_init(&pp);
    opt_build(opts, &op);
    optind = 1;
    while ((c = getopt_long(argc, argv, op.shorts, op.longs, NULL)) != -1) {
        switch (c) {
        case 'd': o.data = optarg; break;
        case OPT_REF: o.ref = optarg; break;
        case 'b':
            if (cli_int(optarg, 1, 4096, &v))
                return cli_usage("eval", "--batch takes a number from 1 to 4096, not '%s'", optarg);
            o.batch = (int)v;
            break;
        case 'n':
            if (cli_int(optarg, 1, 1L << 30, &v))
                return cli_usage("eval", "--limit takes a positive number, not '%s'", optarg);
            o.limit = (int)v;
            break;
        case 't':
            if (cli_int(optarg, 1, 1024, &v))
                return cli_usage("eval", "--threads takes a positive number, not '%s'", optarg);
            o.threads = (int)v;
            break;
        case 'j': json = optarg; break;
        case OPT_PRED: o.predictions = optarg; break;
        case OPT_SAVE: o.save_outputs = optarg; break;
        case OPT_SAVEIN: o.save_inputs = optarg; break;
        case OPT_LAT:
            if (cli_int(optarg, 0, 100000, &v))
                return cli_usage("eval", "--latency-runs takes a number, not '%s'", optarg);
            o.latency_runs = (int)v;
            break;
        case OPT_LATB:
            if (cli_int(optarg, 1, 4096, &v))
                return cli_usage("eval", "--latency-batch takes a number from 1 to 4096, not '%s'", optarg);
            o.latency_batch = (int)v;
            break;
        case OPT_SIM: o.simulate = 1; break;
        case OPT_REPORT: report = optarg; break;
        case OPT_REPIMG:
            if (cli_int(optarg, 1, 1L << 30, &v))
                return cli_usage("eval", "--report-images takes a positive number, not '%s'", optarg);
            report_images = (int)v;
            break;
        case 'q': quiet = 1; break;
        case OPT_CONFIG: break; /* read by cli_run_config */
        case 'h':
            opt_usage(stdout, "eval", "MODEL.onnx --data DIR [options]", opts);
            return 0;
        default: {
            int k = cli_pp_option("eval", &pp, c, optarg);
            if (k == 2)
                return QT_EUSAGE;
            if (k == 1)
                return cli_usage("eval", "unknown option");
        }
        }
    }
    if (optind != argc - 1)
        return cli_usage("eval", "expects one model file");
    if (!o.data)
        return cli_usage("eval", "--data DIR is required");
    if (report && !o.ref)
        return cli_usage("eval", "--report compares with the float model: give --ref FLOAT.onnx");
    o.model = argv[optind];
    o.pp = pp.pp;
    o.channels_set = pp.set_channels;
    o.classes = pp.classes;
    if (!quiet) {
        cli_progress_init(&prog, "eval", "images");
        o.progress = cli_progress_cb;
        o.progress_ud = &prog;
    }
    cli_json_begin(&js, "eval", json);
    if (cli_json_check(&js, &err) || (report && cli_report_check(report, &err)))
        return cli_json_fail(&js, &err);
    if (qt_eval_run(&o, &r, &err))
        return cli_json_fail(&js, &err);
    if (report) {
        o.progress = NULL;
        if (qt_eval_layers(&o, report_images, &rep, &err) ||
            cli_report_write(report, &o, &r, &rep, 6, report_path, sizeof report_path, &err)) {
            qt_layer_report_free(&rep);
            return cli_json_fail(&js, &err);
        }
    }

    int to_stdout = json && !strcmp(json, "-");
    FILE *f = to_stdout ? stderr : stdout;
    fprintf(f, "model:       %s (%lld bytes)\n", o.model, r.model_bytes);
    fprintf(f, "images:      %d (%d labeled)\n", r.images, r.labeled);
    if (r.labeled) {
        fprintf(f, "top-1:       %.3f%%\n", r.top1);
        fprintf(f, "top-5:       %.3f%%\n", r.top5);
        fprintf(f, "loss:        %.4f\n", r.loss);
    }
    if (r.have_ref) {
        if (r.labeled)
            fprintf(f, "ref top-1:   %.3f%%\n", r.ref_top1);
        fprintf(f, "agreement:   %.3f%% (top-1 vs %s)\n", r.agree, o.ref);
        fprintf(f, "sqnr:        %.2f dB\n", r.sqnr_db);
    }
    if (o.latency_runs)
        fprintf(f, "latency:     %.3f ms median, %.3f ms p90 (batch %d, %d threads)\n", r.lat_median_ms, r.lat_p90_ms,
                r.lat_batch, r.threads);
    fprintf(f, "throughput:  %.1f images/s (batch %d)\n", r.throughput, r.batch);
    fprintf(f, "activations: %zu bytes at batch %d\n", r.peak_act_bytes, r.batch);
    if (r.int8_nodes)
        fprintf(f, "int8:        %d nodes on integer kernels (%s)\n", r.int8_nodes, r.int8_isa);
    if (json) {
        cJSON *d = js.doc;
        cJSON_AddStringToObject(d, "model", o.model);
        cJSON_AddStringToObject(d, "data", o.data);
        cJSON_AddNumberToObject(d, "images", r.images);
        cJSON_AddNumberToObject(d, "labeled", r.labeled);
        cJSON_AddNumberToObject(d, "classes", r.nclasses);
        if (r.labeled) {
            cli_json_num(d, "top1", r.top1);
            cli_json_num(d, "top5", r.top5);
            cli_json_num(d, "loss", r.loss);
        } else {
            cJSON_AddNullToObject(d, "top1");
            cJSON_AddNullToObject(d, "top5");
            cJSON_AddNullToObject(d, "loss");
        }
        if (r.have_ref) {
            cJSON_AddStringToObject(d, "ref", o.ref);
            cli_json_num(d, "ref_top1", r.labeled ? r.ref_top1 : NAN);
            cli_json_num(d, "agreement", r.agree);
            cli_json_num(d, "sqnr_db", r.sqnr_db);
        }
        cJSON_AddNumberToObject(d, "model_bytes", (double)r.model_bytes);
        if (o.latency_runs) {
            cli_json_num(d, "latency_ms_median", r.lat_median_ms);
            cli_json_num(d, "latency_ms_p90", r.lat_p90_ms);
            cJSON_AddNumberToObject(d, "latency_batch", r.lat_batch);
        }
        cli_json_num(d, "throughput_ips", r.throughput);
        cJSON_AddNumberToObject(d, "batch", r.batch);
        cJSON_AddNumberToObject(d, "threads", r.threads);
        cJSON_AddNumberToObject(d, "activation_bytes", (double)r.peak_act_bytes);
        cJSON_AddNumberToObject(d, "int8_nodes", r.int8_nodes);
        cJSON_AddStringToObject(d, "int8_isa", r.int8_isa);
        cJSON_AddBoolToObject(d, "simulate", o.simulate);
        cli_json_num(d, "run_s", r.wall_s);
        if (report) {
            cJSON_AddStringToObject(d, "report", report_path);
            cJSON_AddNumberToObject(d, "report_images", rep.images);
            cJSON *a = cJSON_AddArrayToObject(d, "layers");
            for (int i = 0; i < rep.nlayers; i++) {
                const struct qt_layer_stats *l = &rep.layer[i];
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "name", l->name);
                cJSON_AddStringToObject(e, "node", l->node);
                cJSON_AddStringToObject(e, "op", l->op);
                cli_json_num(e, "sqnr_db", l->sqnr_db);
                cli_json_num(e, "min", l->min);
                cli_json_num(e, "max", l->max);
                cli_json_num(e, "clip_min", l->clip_min);
                cli_json_num(e, "clip_max", l->clip_max);
                cJSON_AddNumberToObject(e, "count", (double)l->count);
                cJSON_AddItemToArray(a, e);
            }
            if (rep.sens)
                cli_sens_json(d, rep.sens);
            a = cJSON_AddArrayToObject(d, "depthwise");
            for (int i = 0; i < rep.ndw; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "node", rep.dw[i].node);
                cJSON_AddNumberToObject(e, "channels", rep.dw[i].channels);
                cJSON_AddItemToArray(a, e);
            }
        }
    }
    if (report)
        fprintf(f, "report:      %s (%d tensors, %d depthwise layers, %d images)\n", report_path, rep.nlayers,
                rep.ndw, rep.images);
    if (report && rep.sens)
        cli_sens_print(f, rep.sens);
    else if (report)
        fprintf(f, "sensitivity: not available: %s\n", rep.sens_note);
    qt_layer_report_free(&rep);
    return cli_json_end(&js, 0, NULL);
}
