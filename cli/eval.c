/* eval.c: `qtool eval MODEL.onnx --data DIR`: accuracy and speed of a float
 * or quantized model, optionally against a reference model. */
#include "cli.h"
#include "cli_json.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

struct eval_cmd {
    struct qt_eval_opts o;
    struct cli_pp pp;
    const char *json, *report, *curve;
    int quiet, report_images;
};

static int eval_main(void *ctx);

int cmd_eval(int argc, char **argv) {
    struct eval_cmd a = {.report_images = 64};
    struct qt_eval_opts *o = &a.o;
    qt_eval_opts_init(o);
    cli_pp_init(&a.pp);
    const struct opt opts[] = {
        OPT_STRING('d', "data", "DIR", &o->data, "image folder (ImageFolder layout; a flat folder is unlabeled)"),
        OPT_STRING(0, "ref", "FLOAT.onnx", &o->ref, "reference model: top-1 agreement and SQNR of the outputs against it"),
        OPT_INTEGER('b', "batch", "N", &o->batch, 1, 4096, "images per run (default 32)"),
        OPT_INTEGER('n', "limit", "N", &o->limit, 1, 1L << 30, "evaluate at most N images (sorted order)"),
        OPT_INTEGER('t', "threads", "N", &o->threads, 1, 1024, "threads (default: all cores)"),
        OPT_STRING('j', "json", "FILE", &a.json, "write the figures as JSON ('-' for stdout)"),
        OPT_STRING(0, "masks", "DIR", &o->masks,
                   "dense outputs: PNG class-index masks named like the images (255 = ignore)"),
        OPT_STRING(0, "predictions", "FILE.csv", &o->predictions, "one row per image: path, label, top-5 indices and scores"),
        OPT_STRING(0, "save-outputs", "FILE", &o->save_outputs, "raw little-endian float32 outputs in image order"),
        OPT_STRING(0, "save-inputs", "FILE", &o->save_inputs,
                   "raw float32 preprocessed inputs in image order (for other tools)"),
        OPT_INTEGER(0, "latency-runs", "N", &o->latency_runs, 0, 100000,
                    "timed runs for the latency figure (default 20, 0 = skip)"),
        OPT_INTEGER(0, "latency-batch", "N", &o->latency_batch, 1, 4096, "images per timed run (default 1)"),
        OPT_BOOL(0, "simulate", &o->simulate,
                 "run a QDQ model as written, in float (default: QDQ patterns on int8 kernels)"),
        OPT_STRING(0, "report", "DIR", &a.report,
                   "with --ref: DIR/index.html, per-layer SQNR, histograms, depthwise ranges"),
        OPT_STRING(0, "curve", "FILE.json", &a.curve,
                   "with --report: accuracy against weight size of several models (scripts/mixed-curve.sh)"),
        OPT_INTEGER(0, "report-images", "N", &a.report_images, 1, 1L << 30,
                    "images for the per-layer figures of --report (default 64)"),
        OPT_BOOL('q', "quiet", &a.quiet, "no progress on stderr"),
        OPT_STRING(0, "config", "FILE.json", NULL, "options by long name, e.g. {\"preset\": \"imagenet\", \"limit\": 500}"),
        CLI_PREPROC_OPTS(&a.pp),
        OPT_HELP(),
        OPT_END(),
    };
    return cli_main("eval", "MODEL.onnx --data DIR [options]", opts, argc, argv, &o->model, eval_main, &a);
}

/* The figures as text on f. */
static void print_result(FILE *f, const struct qt_eval_opts *o, const struct qt_eval_result *r) {
    fprintf(f, "model:       %s (%lld bytes)\n", o->model, r->model_bytes);
    fprintf(f, "images:      %d (%d labeled)\n", r->images, r->labeled);
    if (r->labeled) {
        fprintf(f, "top-1:       %.3f%%\n", r->top1);
        fprintf(f, "top-5:       %.3f%%\n", r->top5);
        fprintf(f, "loss:        %.4f\n", r->loss);
    }
    if (r->dense)
        fprintf(f, "dense:       %d classes on %dx%d pixels (class = argmax per pixel)\n", r->nclasses, r->dense_h,
                r->dense_w);
    if (r->have_ref && !r->dense) {
        if (r->labeled)
            fprintf(f, "ref top-1:   %.3f%%\n", r->ref_top1);
        fprintf(f, "agreement:   %.3f%% (top-1 vs %s)\n", r->agree, o->ref);
    }
    if (r->have_ref && r->dense) {
        fprintf(f, "agreement:   %.3f%% (pixels vs %s)\n", r->pixel_agree, o->ref);
        fprintf(f, "mean IoU:    %.3f%% (vs %s)\n", r->miou_ref, o->ref);
    }
    if (r->have_masks) {
        fprintf(f, "pixel acc:   %.3f%% (%lld mask pixels)\n", r->pixel_acc, r->mask_pixels);
        fprintf(f, "mask mIoU:   %.3f%%\n", r->miou);
        if (r->have_ref)
            fprintf(f, "ref masks:   %.3f%% pixel acc, %.3f%% mIoU\n", r->ref_pixel_acc, r->ref_miou);
    }
    if (r->have_ref)
        fprintf(f, "sqnr:        %.2f dB\n", r->sqnr_db);
    if (r->noutputs > 1)
        for (int k = 0; k < r->noutputs; k++)
            fprintf(f, "sqnr %-7s %.2f dB (output %d)\n", r->outputs[k].name, r->outputs[k].sqnr_db, k);
    if (o->latency_runs)
        fprintf(f, "latency:     %.3f ms median, %.3f ms p90 (batch %d, %d threads)\n", r->lat_median_ms, r->lat_p90_ms,
                r->lat_batch, r->threads);
    fprintf(f, "throughput:  %.1f images/s (batch %d)\n", r->throughput, r->batch);
    fprintf(f, "activations: %zu bytes at batch %d\n", r->peak_act_bytes, r->batch);
    if (r->int8_nodes)
        fprintf(f, "int8:        %d nodes on integer kernels (%s)\n", r->int8_nodes, r->int8_isa);
}

/* Dense prediction's figures (outputs [N,C,H,W]) into d.dense. */
static void fill_dense(cJSON *d, const struct qt_eval_opts *o, const struct qt_eval_result *r) {
    cJSON *e = cJSON_AddObjectToObject(d, "dense");
    cJSON_AddNumberToObject(e, "classes", r->nclasses);
    cJSON_AddNumberToObject(e, "height", r->dense_h);
    cJSON_AddNumberToObject(e, "width", r->dense_w);
    if (r->have_ref) {
        cli_json_num(e, "pixel_agreement", r->pixel_agree);
        cli_json_num(e, "miou_ref", r->miou_ref);
    }
    if (r->have_masks) {
        cJSON_AddStringToObject(e, "masks", o->masks);
        cJSON_AddNumberToObject(e, "mask_pixels", (double)r->mask_pixels);
        cli_json_num(e, "pixel_accuracy", r->pixel_acc);
        cli_json_num(e, "miou", r->miou);
        if (r->have_ref) {
            cli_json_num(e, "ref_pixel_accuracy", r->ref_pixel_acc);
            cli_json_num(e, "ref_miou", r->ref_miou);
        }
    }
}

/* The figures into the JSON summary d; path: the --report page or NULL. */
static void fill_json(cJSON *d, const struct qt_eval_opts *o, const struct qt_eval_result *r,
                      const struct qt_layer_report *rep, const char *path) {
    cJSON_AddStringToObject(d, "model", o->model);
    cJSON_AddStringToObject(d, "data", o->data);
    cJSON_AddNumberToObject(d, "images", r->images);
    cJSON_AddNumberToObject(d, "labeled", r->labeled);
    cJSON_AddNumberToObject(d, "classes", r->nclasses);
    if (r->labeled) {
        cli_json_num(d, "top1", r->top1);
        cli_json_num(d, "top5", r->top5);
        cli_json_num(d, "loss", r->loss);
    } else {
        cJSON_AddNullToObject(d, "top1");
        cJSON_AddNullToObject(d, "top5");
        cJSON_AddNullToObject(d, "loss");
    }
    if (r->have_ref) {
        cJSON_AddStringToObject(d, "ref", o->ref);
        cli_json_num(d, "ref_top1", r->labeled ? r->ref_top1 : NAN);
        cli_json_num(d, "agreement", r->agree);
        cli_json_num(d, "sqnr_db", r->sqnr_db);
        cJSON *a = cJSON_AddArrayToObject(d, "outputs");
        for (int k = 0; k < r->noutputs; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", r->outputs[k].name);
            cli_json_num(e, "sqnr_db", r->outputs[k].sqnr_db);
            cJSON_AddItemToArray(a, e);
        }
    }
    if (r->dense)
        fill_dense(d, o, r);
    cJSON_AddNumberToObject(d, "model_bytes", (double)r->model_bytes);
    if (o->latency_runs) {
        cli_json_num(d, "latency_ms_median", r->lat_median_ms);
        cli_json_num(d, "latency_ms_p90", r->lat_p90_ms);
        cJSON_AddNumberToObject(d, "latency_batch", r->lat_batch);
    }
    cli_json_num(d, "throughput_ips", r->throughput);
    cJSON_AddNumberToObject(d, "batch", r->batch);
    cJSON_AddNumberToObject(d, "threads", r->threads);
    cJSON_AddNumberToObject(d, "activation_bytes", (double)r->peak_act_bytes);
    cJSON_AddNumberToObject(d, "int8_nodes", r->int8_nodes);
    cJSON_AddStringToObject(d, "int8_isa", r->int8_isa);
    cJSON_AddBoolToObject(d, "simulate", o->simulate);
    cli_json_num(d, "run_s", r->wall_s);
    if (path) {
        cJSON_AddStringToObject(d, "report", path);
        cJSON_AddNumberToObject(d, "report_images", rep->images);
        cJSON *a = cJSON_AddArrayToObject(d, "layers");
        for (int i = 0; i < rep->nlayers; i++) {
            const struct qt_layer_stats *l = &rep->layer[i];
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
        if (rep->sens)
            cli_sens_json(d, rep->sens);
        a = cJSON_AddArrayToObject(d, "depthwise");
        for (int i = 0; i < rep->ndw; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "node", rep->dw[i].node);
            cJSON_AddNumberToObject(e, "channels", rep->dw[i].channels);
            cJSON_AddItemToArray(a, e);
        }
    }
}

static int eval_main(void *ctx) {
    struct eval_cmd *a = ctx;
    struct qt_eval_opts *o = &a->o;
    struct qt_eval_result r;
    struct qt_err err = {0};
    struct cli_progress prog;
    struct cli_json js;
    struct qt_layer_report rep = {0};
    struct cli_curve curve = {0};
    const char *report = a->report;
    char report_path[4096];
    if (!o->data)
        return cli_usage("eval", "--data DIR is required");
    if (report && !o->ref)
        return cli_usage("eval", "--report compares with the float model: give --ref FLOAT.onnx");
    if (a->curve && !report)
        return cli_usage("eval", "--curve is a section of the report: give --report DIR");
    o->pp = a->pp.pp;
    o->channels_set = a->pp.set_channels;
    o->classes = a->pp.classes;
    if (!a->quiet) {
        cli_progress_init(&prog, "eval", "images");
        o->progress = cli_progress_cb;
        o->progress_ud = &prog;
    }
    cli_json_begin(&js, "eval", a->json);
    if (cli_json_check(&js, &err) || (report && cli_report_check(report, &err)) ||
        (a->curve && cli_curve_load(a->curve, &curve, &err)))
        return cli_json_fail(&js, &err);
    if (qt_eval_run(o, &r, &err)) {
        qt_eval_result_release(&r);
        cli_curve_free(&curve);
        return cli_json_fail(&js, &err);
    }
    if (report) {
        o->progress = NULL;
        if (qt_eval_layers(o, a->report_images, &rep, &err) ||
            cli_report_write(report, o, &r, &rep, a->curve ? &curve : NULL, 6, report_path, sizeof report_path,
                             &err)) {
            qt_layer_report_free(&rep);
            cli_curve_free(&curve);
            qt_eval_result_release(&r);
            return cli_json_fail(&js, &err);
        }
    }
    FILE *f = a->json && !strcmp(a->json, "-") ? stderr : stdout;
    print_result(f, o, &r);
    if (js.doc)
        fill_json(js.doc, o, &r, &rep, report ? report_path : NULL);
    if (js.doc && a->curve) {
        cJSON_AddStringToObject(js.doc, "curve", a->curve);
        cJSON_AddNumberToObject(js.doc, "curve_points", curve.n);
    }
    if (report)
        fprintf(f, "report:      %s (%d tensors, %d depthwise layers, %d images)\n", report_path, rep.nlayers,
                rep.ndw, rep.images);
    if (report && rep.sens)
        cli_sens_print(f, rep.sens);
    else if (report)
        fprintf(f, "sensitivity: not available: %s\n", rep.sens_note);
    if (a->curve)
        fprintf(f, "curve:       %d points in %d series from %s\n", curve.n, curve.nseries, a->curve);
    qt_layer_report_free(&rep);
    cli_curve_free(&curve);
    qt_eval_result_release(&r);
    return cli_json_end(&js, 0, NULL);
}
