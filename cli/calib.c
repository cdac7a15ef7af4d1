/* calib.c: `qtool calib MODEL.onnx --data DIR -o OUT.onnx`: post-training
 * static quantization to a QDQ model and quant_info.json. */
#include "cli.h"
#include "cli_json.h"
#include "quant/quant.h"

#include <string.h>
#include <unistd.h>

static void logline(void *ud, const char *line) {
    cli_progress_clear(ud);
    fprintf(ud, "%s\n", line);
}

void cli_calib_init(struct cli_calib *a, int finetune) {
    memset(a, 0, sizeof *a);
    qt_calib_opts_init(&a->o);
    cli_pp_init(&a->pp);
    a->o.finetune = finetune;
    a->bnre = -1;
    a->o.q.observer = -1; /* unset: the default, or what --max-drop --try-corrections measures best */
    a->o.q.percentile = 0;
}

/* The defaults of the options left unset; calib --max-drop --try-corrections
 * measures those corrections before raising layers (finetune would tune
 * again for each: it takes them as they are). */
static void calib_defaults(struct cli_calib *a) {
    struct qt_calib_opts *o = &a->o;
    struct qt_quant_opts d;
    qt_quant_opts_init(&d);
    o->try_corr = 0;
    if (a->bnre < 0 && !o->bias_correction)
        o->try_corr |= QT_CORR_BIAS;
    if (o->q.observer < 0 && o->q.percentile == 0)
        o->try_corr |= QT_CORR_OBSERVER;
    if (o->q.cle < 0)
        o->try_corr |= QT_CORR_CLE;
    if (o->finetune || !a->try_corrections)
        o->try_corr = 0;
    if (o->q.observer < 0)
        o->q.observer = d.observer;
    if (o->q.percentile == 0)
        o->q.percentile = d.percentile;
}

int cmd_calib(int argc, char **argv) {
    struct cli_calib a;
    cli_calib_init(&a, 0);
    const struct opt opts[] = {
        CLI_CALIB_OPTS(&a),
        OPT_INTEGER('b', "batch", "N", &a.o.batch, 1, 4096, "images per run (default 32)"),
        OPT_BOOL(0, "try-corrections", &a.try_corrections,
                 "--max-drop: first try the bias corrections, --observer mse and --cle not given"),
        CLI_CALIB_RUN_OPTS(&a),
        OPT_HELP(),
        OPT_END(),
    };
    return cli_main("calib", CLI_CALIB_SYNOPSIS, opts, argc, argv, &a.o.model, cli_calib_run, &a);
}

/* The summary into the JSON document d. */
static void fill_json(cJSON *d, const struct qt_calib_opts *o, const struct qt_calib_result *r) {
    cJSON_AddStringToObject(d, "model", o->model);
    if (o->out)
        cJSON_AddStringToObject(d, "output", o->out);
    if (o->quant_info)
        cJSON_AddStringToObject(d, "quant_info", o->quant_info);
    cJSON_AddBoolToObject(d, "dry_run", o->dry_run);
    cJSON_AddNumberToObject(d, "images", r->images);
    const struct qt_fallback *fb = &r->fb; /* the search may have changed the corrections */
    cJSON_AddStringToObject(d, "observer", qt_obs_name(fb->ran ? fb->observer : o->q.observer));
    cJSON_AddStringToObject(d, "weight_observer", r->weight_mse ? "mse" : "minmax");
    if (r->wchoice_images > 0) {
        cJSON *wc = cJSON_AddObjectToObject(d, "weight_observer_choice");
        cJSON_AddNumberToObject(wc, "images", r->wchoice_images);
        cli_json_num(wc, "minmax_sqnr_db", r->wchoice_sqnr_db[0]);
        cli_json_num(wc, "mse_sqnr_db", r->wchoice_sqnr_db[1]);
    }
    cJSON_AddNumberToObject(d, "wbits", o->q.wbits);
    cJSON_AddNumberToObject(d, "abits", o->q.abits);
    cJSON_AddBoolToObject(d, "per_channel", o->q.per_channel);
    cJSON_AddBoolToObject(d, "bias_correction", fb->ran ? fb->bias == QT_BIAS_CORRECT : o->bias_correction);
    cJSON_AddBoolToObject(d, "bn_reestimate", fb->ran ? fb->bias == QT_BIAS_BNRE : o->bn_reestimate);
    cJSON_AddNumberToObject(d, "folded_batchnorm", r->nfolded_bn);
    cJSON_AddNumberToObject(d, "fused_activations", r->nfused_act);
    cJSON_AddNumberToObject(d, "excluded_nodes", r->nexcluded);
    cJSON_AddNumberToObject(d, "quantized_activations", r->nquant_act);
    cJSON_AddNumberToObject(d, "quantized_weights", r->nquant_weight);
    cli_json_num(d, "bias_corrected_layers", r->bc_layers);
    cJSON_AddNumberToObject(d, "cle_pairs", r->cle_pairs);
    if (o->finetune) {
        cJSON *a = cJSON_AddArrayToObject(d, "layers");
        for (int i = 0; i < r->ft.nlayers; i++) {
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "name", r->ft.layer[i].name);
            cli_json_num(l, "loss_before", r->ft.layer[i].before);
            cli_json_num(l, "loss_after", r->ft.layer[i].after);
            cJSON_AddNumberToObject(l, "images", r->ft.layer[i].images);
            cJSON_AddBoolToObject(l, "input_step_learned", r->ft.layer[i].learn_as);
            cli_json_num(l, "input_step_before", r->ft.layer[i].as_before);
            cli_json_num(l, "input_step_after", r->ft.layer[i].as_after);
            cJSON_AddItemToArray(a, l);
        }
        cJSON_AddStringToObject(d, "method", o->ft.method == QT_FT_ADAROUND ? "adaround" : "adaquant");
        cJSON_AddNumberToObject(d, "iters", o->ft.iters);
        cli_json_num(d, "lr", o->ft.lr);
        cJSON_AddNumberToObject(d, "batch", o->ft.batch);
        cJSON_AddStringToObject(d, "mode", o->ft.parallel ? "parallel" : "sequential");
        cJSON_AddNumberToObject(d, "seed", (double)o->ft.seed);
        cJSON_AddNumberToObject(d, "threads", o->threads > 0 ? o->threads : qt_ncpus());
    }
    cli_json_num(d, "run_s", r->wall_s);
}

/* Progress and log lines on stderr (the --dry-run report on stdout). */
static void calib_report(struct cli_calib *a, struct cli_progress *prog, struct cli_progress *ftprog) {
    struct qt_calib_opts *o = &a->o;
    const char *cmd = o->finetune ? "finetune" : "calib";
    if (o->dry_run) {
        o->log = logline;
        o->log_ud = stdout;
    } else if (!a->quiet) {
        o->log = logline;
        o->log_ud = stderr;
        cli_progress_init(prog, cmd, "images");
        o->progress = cli_progress_cb;
        o->progress_ud = prog;
    }
    if (!a->quiet) {
        o->ft.log = logline;
        o->ft.log_ud = stderr;
        cli_progress_init(ftprog, "finetune", "layers");
        o->ft.progress = cli_progress_cb;
        o->ft.progress_ud = ftprog;
    }
}

int cli_calib_run(void *ctx) {
    struct cli_calib *a = ctx;
    struct qt_calib_opts *o = &a->o;
    const char *cmd = o->finetune ? "finetune" : "calib", *json = a->json;
    struct qt_calib_result r;
    struct qt_err err = {0};
    struct cli_progress prog, ftprog;
    struct cli_json js;
    char qinfo[4096];
    /* below 8-bit weights, BN re-estimation is the default (MobileNetV1 W4A8:
     * 0.00 -> 65.58 held out, MobileNetV2: see man qtool-calib); at 8 bits it
     * helps one model and hurts another, so it stays off */
    o->bn_reestimate = a->bnre >= 0 ? a->bnre : !o->bias_correction && o->q.wbits < 8;
    if (a->bnre < 0 && !o->bias_correction && o->q.weight_budget.kind)
        o->bn_reestimate = -1; /* when a chosen width is below 8 bits */
    calib_defaults(a);
    o->ft.lr = a->lr > 0 ? a->lr : o->ft.method == QT_FT_ADAROUND ? 5e-2 : o->ft.lr;
    if (cli_fallback_check(cmd, &o->fb, o->dry_run ? "--dry-run" : NULL))
        return QT_EUSAGE;
    if (a->try_corrections && o->fb.max_drop < 0)
        return cli_usage(cmd, "--try-corrections is for --max-drop");
    if (!o->dry_run && !o->out)
        return cli_usage(cmd, "-o OUT.onnx is required");
    if (!o->dry_run && !o->data)
        return cli_usage(cmd, "--data DIR is required");
    if (o->out && !o->quant_info)
        o->quant_info = cli_qinfo_path(o->out, qinfo, sizeof qinfo);
    o->pp = a->pp.pp;
    o->channels_set = a->pp.set_channels;
    o->classes = a->pp.classes;
    calib_report(a, &prog, &ftprog);
    if (o->finetune) { /* minutes of tuning: stop cleanly between steps */
        cli_stop_catch(1);
        o->ft.stop = &cli_stop;
    }
    cli_json_begin(&js, cmd, json);
    if (cli_json_check(&js, &err))
        return cli_json_fail(&js, &err);
    int rc = qt_calib_run(o, &r, &err);
    cli_stop_catch(0);
    if (rc && cli_stop) {
        qt_calib_result_free(&r);
        fprintf(stderr, "qtool %s: interrupted (%s); nothing written\n", cmd, err.msg);
        return cli_json_end(&js, 128 + cli_stop, &err);
    }
    if (rc && rc != QT_EDROP) {
        qt_calib_result_free(&r);
        return cli_json_fail(&js, &err);
    }
    FILE *f = json && !strcmp(json, "-") ? stderr : stdout;
    if (o->dry_run) {
        printf("dry run: %d BatchNormalization folded, %d activations fused, %d nodes kept in float, "
               "%d activation and %d weight tensors to quantize\n",
               r.nfolded_bn, r.nfused_act, r.nexcluded, r.nquant_act, r.nquant_weight);
    } else {
        fprintf(f, "calibrated on %d images in %.2f s: %d activation and %d weight tensors quantized\n", r.images,
                r.wall_s, r.nquant_act, r.nquant_weight);
        fprintf(f, "wrote %s and %s\n", o->out, o->quant_info);
        cli_fallback_report(f, &o->fb, &r.sens, &r.fb, o->out);
        if (o->q.weight_budget.kind || o->q.act_budget.kind || o->q.pack)
            cli_print_mem(f, &r.mem);
    }
    if (js.doc) {
        fill_json(js.doc, o, &r);
        cli_fallback_fill_json(js.doc, &o->fb, &r.sens, &r.fb, o->out);
        if (!o->dry_run)
            cli_json_mem(js.doc, &o->q, &r.mem, r.mixed_s);
    }
    qt_calib_result_free(&r);
    if (rc == QT_EDROP) { /* the best model found is written; the target was missed */
        fprintf(stderr, "qtool %s: %s\n", cmd, err.msg);
        return cli_json_end(&js, rc, &err);
    }
    return cli_json_end(&js, 0, NULL);
}
