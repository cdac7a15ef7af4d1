/* fallback.c: --max-drop, --eval-data, --metric and --sensitivity, shared
 * by calib, finetune and qat: the checks, the text tables and the JSON. */
#include "cli.h"
#include "cli_json.h"
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const int cli_metric_vals[3] = {QT_METRIC_TOP1, QT_METRIC_AGREE, QT_METRIC_SQNR};

int cli_fallback_check(const char *cmd, const struct qt_fallback_opts *f, const char *measures_nothing) {
    if (f->eval_data && f->max_drop < 0 && !f->sensitivity)
        return cli_usage(cmd, "--eval-data is for --max-drop or --sensitivity");
    if ((f->metric >= 0 || f->max_raise) && f->max_drop < 0)
        return cli_usage(cmd, "--%s is for --max-drop", f->metric >= 0 ? "metric" : "max-raise");
    if (measures_nothing && (f->max_drop >= 0 || f->sensitivity))
        return cli_usage(cmd, "%s measures nothing: no --max-drop or --sensitivity with it", measures_nothing);
    return 0;
}

static double finite_or(double v, double alt) {
    return isfinite(v) ? v : alt;
}

/* Worst first, as qt_sens_order ranks them. */
void cli_sens_print(FILE *f, const struct qt_sens_report *r) {
    int *ord = malloc(sizeof(int) * ((size_t)r->nunits + 1));
    int lab = r->labeled > 0;
    if (!ord)
        return;
    qt_sens_order(r, ord);
    fprintf(f, "sensitivity on %d images (%.1f s): all quantized: ", r->images, r->wall_s);
    if (lab)
        fprintf(f, "top-1 %.2f%% (float %.2f%%), ", r->all.top1, r->all.float_top1);
    fprintf(f, "agreement %.1f%%, output SQNR %.1f dB\n", r->all.agree, finite_or(r->all.sqnr_db, 999));
    fprintf(f, "%-28s %-6s %4s  %-22s  %-22s  %7s %6s\n", "layer", "tensor", "bits",
            lab ? "only it quantized" : "only it quantized", lab ? "all but it" : "all but it", "own dB", "cos");
    fprintf(f, "%-28s %-6s %4s  %6s %6s %8s  %6s %6s %8s  %7s %6s\n", "", "", "", lab ? "drop" : "", "agree", "SQNR dB",
            lab ? "drop" : "", "agree", "SQNR dB", "", "");
    for (int k = 0; k < r->nunits; k++) {
        const struct qt_sens_unit *u = &r->unit[ord[k]];
        char d1[16] = "", d2[16] = "";
        if (lab) {
            snprintf(d1, sizeof d1, "%.2f", u->only_quant.top1_drop);
            snprintf(d2, sizeof d2, "%.2f", u->only_float.top1_drop);
        }
        fprintf(f, "%-28.28s %-6s %4d  %6s %6.1f %8.1f  %6s %6.1f %8.1f  %7.1f %6.4f\n",
                u->node[0] ? u->node : "(input)", u->weight ? "weight" : "output", u->bits, d1, u->only_quant.agree,
                finite_or(u->only_quant.sqnr_db, 999), d2, u->only_float.agree, finite_or(u->only_float.sqnr_db, 999),
                finite_or(u->sqnr_db, 999), u->cosine);
    }
    free(ord);
}

void cli_sens_json(cJSON *d, const struct qt_sens_report *r) {
    int *ord = malloc(sizeof(int) * ((size_t)r->nunits + 1));
    if (!ord)
        return;
    qt_sens_order(r, ord);
    cJSON *s = cJSON_AddObjectToObject(d, "sensitivity");
    cJSON_AddNumberToObject(s, "images", r->images);
    cli_json_num(s, "float_top1", r->labeled ? r->all.float_top1 : NAN);
    qt_figures_json(s, "all_quantized", &r->all);
    cli_json_num(s, "run_s", r->wall_s);
    cJSON *a = cJSON_AddArrayToObject(s, "units");
    for (int k = 0; k < r->nunits; k++) {
        const struct qt_sens_unit *u = &r->unit[ord[k]];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "node", u->node);
        cJSON_AddStringToObject(e, "op", u->op);
        cJSON_AddStringToObject(e, "tensor", u->tensor);
        cJSON_AddStringToObject(e, "kind", u->weight ? "weight" : "activation");
        cJSON_AddNumberToObject(e, "bits", u->bits);
        qt_figures_json(e, "only_quantized", &u->only_quant);
        qt_figures_json(e, "only_float", &u->only_float);
        cli_json_num(e, "sqnr_db", u->sqnr_db);
        cli_json_num(e, "cosine", u->cosine);
        cJSON_AddItemToArray(a, e);
    }
    free(ord);
}

static void fb_line(FILE *f, const char *what, const struct qt_figures *x, int metric) {
    fprintf(f, "  %s:", what);
    if (x->labeled)
        fprintf(f, " top-1 %.2f%% (drop %.2f),", x->top1, x->top1_drop);
    fprintf(f, " agreement %.1f%%, output SQNR %.1f dB; %s drop %.3g", x->agree, finite_or(x->sqnr_db, 999),
            qt_metric_name(metric), qt_figures_drop(x, metric));
    if (isfinite(qt_figures_drop_se(x, metric)))
        fprintf(f, " (standard error %.2g)", qt_figures_drop_se(x, metric));
    fprintf(f, "\n");
}

static long long file_size(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

void cli_fallback_print(FILE *f, const struct qt_fallback *fb, const char *out) {
    fprintf(f, "max-drop %g (%s) on %d images used neither for calibration nor tuning: %s\n", fb->max_drop,
            qt_metric_name(fb->metric), fb->eval_images, fb->met ? "met" : "NOT met");
    fb_line(f, "as first quantized", &fb->before, fb->metric);
    if (fb->ncorr) {
        fprintf(f, "  corrections measured before raising layers (%s drop):", qt_metric_name(fb->metric));
        for (int i = 0; i < fb->ncorr; i++)
            fprintf(f, "%s %s %.3g%s", i ? "," : "", fb->corr[i].option, qt_figures_drop(&fb->corr[i].f, fb->metric),
                    fb->corr[i].kept ? " (kept)" : "");
        fprintf(f, "\n");
    }
    fb_line(f, "as written", &fb->after, fb->metric);
    fprintf(f, "  %d of %d layer%s raised:", fb->nlayers, fb->candidates, fb->candidates == 1 ? "" : "s");
    for (int i = 0; i < fb->nlayers; i++)
        if (fb->layer[i].keep_float)
            fprintf(f, " %s (float)", fb->layer[i].node);
        else
            fprintf(f, " %s (%d bits)", fb->layer[i].node, fb->layer[i].wbits);
    fprintf(f, "%s\n", fb->nlayers ? "" : " none");
    if (!fb->met) {
        fprintf(f, "  could not save:");
        for (int i = 0; i < fb->nunsaved; i++)
            fprintf(f, " %s", fb->unsaved[i]);
        fprintf(f, "%s (the most sensitive layers still quantized; the drop stays above %g)\n",
                fb->nunsaved ? "" : " -", fb->max_drop);
    }
    fprintf(f, "  model %lld bytes; search %.1f s (%d evaluations, %d rebuilds)\n", file_size(out), fb->wall_s,
            fb->evals, fb->rebuilds);
}

void cli_fallback_json(cJSON *d, const struct qt_fallback *fb, const char *out) {
    cJSON *o = qt_fallback_json(d, fb);
    cli_json_num(o, "drop_before", qt_figures_drop(&fb->before, fb->metric));
    cli_json_num(o, "drop_after", qt_figures_drop(&fb->after, fb->metric));
    cJSON *u = cJSON_AddArrayToObject(o, "unsaved");
    for (int i = 0; i < fb->nunsaved; i++)
        cJSON_AddItemToArray(u, cJSON_CreateString(fb->unsaved[i]));
    cJSON_AddNumberToObject(o, "model_bytes", (double)file_size(out));
    cJSON_AddNumberToObject(o, "evaluations", fb->evals);
    cJSON_AddNumberToObject(o, "rebuilds", fb->rebuilds);
    cli_json_num(o, "search_s", fb->wall_s);
}

void cli_fallback_report(FILE *fp, const struct qt_fallback_opts *f, const struct qt_sens_report *sens,
                         const struct qt_fallback *fb, const char *out) {
    if (f->sensitivity)
        cli_sens_print(fp, sens);
    if (fb->ran)
        cli_fallback_print(fp, fb, out);
}

void cli_fallback_fill_json(cJSON *d, const struct qt_fallback_opts *f, const struct qt_sens_report *sens,
                            const struct qt_fallback *fb, const char *out) {
    if (f->sensitivity)
        cli_sens_json(d, sens);
    if (fb->ran)
        cli_fallback_json(d, fb, out);
}
