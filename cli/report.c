/* report.c: qtool eval --report DIR: one self-contained HTML page
 * (DIR/index.html, no script, no network) with inline SVG charts drawn
 * here: the per-layer SQNR bars, activation histograms with the clipping
 * range of the worst layers, the per-channel weight ranges of depthwise
 * convolutions, the accuracy/agreement summary, and with --curve the
 * accuracy/size curve of cli/curve.c. Every chart is an
 * <svg class="chart ..."> whose marks carry data-value attributes with the
 * figures of eval --json (scripts/t-report.sh checks them). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cli_sbf(struct cli_sb *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = b->oom ? 0 : vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (b->oom || n < 0)
            return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

/* text with &, <, >, " escaped */
void cli_sbe(struct cli_sb *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': cli_sbf(b, "&amp;"); break;
        case '<': cli_sbf(b, "&lt;"); break;
        case '>': cli_sbf(b, "&gt;"); break;
        case '"': cli_sbf(b, "&quot;"); break;
        default: cli_sbf(b, "%c", *s);
        }
    }
}

static const char *sqnr_color(double v) {
    return v != v ? "#999" : v < 20 ? "#d62728" : v < 30 ? "#ff7f0e" : "#2ca02c";
}

static void sqnr_chart(struct cli_sb *b, const struct qt_layer_report *rep) {
    double top = 40;
    for (int i = 0; i < rep->nlayers; i++)
        if (isfinite(rep->layer[i].sqnr_db) && rep->layer[i].sqnr_db > top)
            top = rep->layer[i].sqnr_db;
    top = ceil(top / 10) * 10;
    int W = 960, L = 330, R = 60, row = 18, H = 30 + row * rep->nlayers + 20;
    double sx = (W - L - R) / top;
    cli_sbf(b, "<svg class=\"chart sqnr\" id=\"sqnr\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
           "viewBox=\"0 0 %d %d\" role=\"img\"><title>SQNR per quantized tensor</title>\n", W, H, W, H);
    for (int t = 0; t <= (int)top; t += 10) {
        double x = L + t * sx;
        cli_sbf(b, "<line x1=\"%.1f\" y1=\"22\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
               "<text x=\"%.1f\" y=\"16\" font-size=\"11\" text-anchor=\"middle\">%d dB</text>\n", x, x, H - 18, x, t);
    }
    for (int i = 0; i < rep->nlayers; i++) {
        const struct qt_layer_stats *l = &rep->layer[i];
        double v = l->sqnr_db, y = 28 + row * i;
        cli_sbf(b, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">", L - 6, y + 12);
        cli_sbe(b, strlen(l->name) > 48 ? l->name + strlen(l->name) - 48 : l->name);
        cli_sbf(b, "</text>");
        double len = v != v ? 0 : isinf(v) ? top * sx : (v < 0 ? 0 : v) * sx;
        cli_sbf(b, "<rect class=\"bar\" data-layer=\"");
        cli_sbe(b, l->name);
        if (v != v)
            cli_sbf(b, "\" data-value=\"null\"");
        else if (isinf(v))
            cli_sbf(b, "\" data-value=\"inf\"");
        else
            cli_sbf(b, "\" data-value=\"%.3f\"", v);
        cli_sbf(b, " x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>", L, y + 2, len, row - 4,
            sqnr_color(v));
        cli_sbe(b, l->name);
        if (v != v)
            cli_sbf(b, ": not in the reference model</title></rect>");
        else
            cli_sbf(b, ": %.2f dB</title></rect>", v);
        cli_sbf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\">%s</text>\n", L + len + 4, y + 12,
            v != v ? "n/a" : isinf(v) ? "exact" : "");
        if (isfinite(v))
            cli_sbf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\">%.1f</text>\n", L + len + 4, y + 12, v);
    }
    cli_sbf(b, "</svg>\n");
}

/* Sensitivity, worst first: per unit, the output SQNR with only it
 * quantized (bar) and with all but it quantized (tick). */
static void sens_chart(struct cli_sb *b, const struct qt_sens_report *s) {
    int *ord = malloc(sizeof(int) * ((size_t)s->nunits + 1));
    if (!ord) {
        b->oom = 1;
        return;
    }
    qt_sens_order(s, ord);
    double top = 40;
    for (int i = 0; i < s->nunits; i++) {
        const struct qt_sens_unit *u = &s->unit[i];
        if (isfinite(u->only_quant.sqnr_db) && u->only_quant.sqnr_db > top)
            top = u->only_quant.sqnr_db;
        if (isfinite(u->only_float.sqnr_db) && u->only_float.sqnr_db > top)
            top = u->only_float.sqnr_db;
    }
    top = ceil(top / 10) * 10;
    int W = 960, L = 330, R = 60, row = 18, H = 30 + row * s->nunits + 20;
    double sx = (W - L - R) / top;
    cli_sbf(b, "<svg class=\"chart sens\" id=\"sensitivity\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
           "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\"><title>Sensitivity per layer, worst first</title>\n",
        W, H, W, H);
    for (int t = 0; t <= (int)top; t += 10) {
        double x = L + t * sx;
        cli_sbf(b, "<line x1=\"%.1f\" y1=\"22\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
               "<text x=\"%.1f\" y=\"16\" font-size=\"11\" text-anchor=\"middle\">%d dB</text>\n", x, x, H - 18, x, t);
    }
    for (int k = 0; k < s->nunits; k++) {
        const struct qt_sens_unit *u = &s->unit[ord[k]];
        double v = u->only_quant.sqnr_db, f = u->only_float.sqnr_db, y = 28 + row * k;
        char lab[200];
        snprintf(lab, sizeof lab, "%s %s", u->node[0] ? u->node : "(input)", u->weight ? "weight" : "output");
        size_t n = strlen(lab);
        cli_sbf(b, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">", L - 6, y + 12);
        cli_sbe(b, n > 48 ? lab + n - 48 : lab);
        cli_sbf(b, "</text>");
        double len = isinf(v) ? top * sx : (v < 0 || v != v ? 0 : v) * sx;
        double fx = L + (isinf(f) ? top : f < 0 || f != f ? 0 : f) * sx;
        cli_sbf(b, "<rect class=\"bar\" data-unit=\"");
        cli_sbe(b, lab);
        cli_sbf(b, "\" data-value=\"%.3f\" x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>", isfinite(v) ? v : 999,
            L, y + 2, len, row - 4, sqnr_color(v));
        cli_sbe(b, lab);
        cli_sbf(b, ": only it quantized %.2f dB, all but it %.2f dB, own %.2f dB</title></rect>", v, f, u->sqnr_db);
        cli_sbf(b, "<line class=\"allbut\" data-value=\"%.3f\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
               "stroke=\"#000\" stroke-width=\"2\"/>", isfinite(f) ? f : 999, fx, y + 1, fx, y + row - 1);
        if (isfinite(v))
            cli_sbf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\">%.1f</text>\n", L + len + 4, y + 12, v);
    }
    cli_sbf(b, "</svg>\n");
    free(ord);
}

static void hist_chart(struct cli_sb *b, const struct qt_layer_stats *l) {
    int W = 460, H = 210, L = 40, T = 28, B = 36, bins = QT_LAYER_BINS;
    double pw = W - L - 10, ph = H - T - B, mx = 0;
    for (int i = 0; i < bins; i++)
        mx = fmax(mx, log10(1.0 + (double)l->hist[i]));
    if (mx <= 0)
        mx = 1;
    cli_sbf(b, "<svg class=\"chart hist\" data-layer=\"");
    cli_sbe(b, l->name);
    cli_sbf(b, "\" data-count=\"%lld\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
           "viewBox=\"0 0 %d %d\" role=\"img\"><title>", (long long)l->count, W, H, W, H);
    cli_sbe(b, l->name);
    cli_sbf(b, "</title>\n<text x=\"4\" y=\"14\" font-size=\"11\" font-weight=\"bold\">");
    cli_sbe(b, strlen(l->name) > 60 ? l->name + strlen(l->name) - 60 : l->name);
    cli_sbf(b, "</text>\n<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n", L,
        T, pw, ph);
    for (int i = 0; i < bins; i++) {
        double hgt = ph * log10(1.0 + (double)l->hist[i]) / mx;
        if (l->hist[i])
            cli_sbf(b, "<rect class=\"bin\" data-value=\"%lld\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                   "fill=\"#1f77b4\"/>\n", (long long)l->hist[i], L + pw * i / bins, T + ph - hgt, pw / bins, hgt);
    }
    double span = l->hhi - l->hlo;
    for (int k = 0; k < 2 && span > 0; k++) {
        double v = k ? l->clip_max : l->clip_min, x = L + pw * (v - l->hlo) / span;
        cli_sbf(b, "<line class=\"clip\" data-value=\"%.6g\" x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%.0f\" stroke=\"#d62728\" "
               "stroke-width=\"2\" stroke-dasharray=\"5,3\"/>\n<text x=\"%.2f\" y=\"%.0f\" font-size=\"10\" "
               "text-anchor=\"middle\" fill=\"#d62728\">%.4g</text>\n", v, x, T, x, T + ph, x, T + ph + 12, v);
    }
    cli_sbf(b, "<text x=\"%d\" y=\"%.0f\" font-size=\"10\">%.4g</text><text x=\"%d\" y=\"%.0f\" font-size=\"10\" "
           "text-anchor=\"end\">%.4g</text>\n", L, T + ph + 12, l->hlo, W - 10, T + ph + 12, l->hhi);
    cli_sbf(b, "<text x=\"%d\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">observed [%.4g, %.4g]; %lld below, %lld "
           "above the axis; counts on a log scale</text>\n</svg>\n", L + (int)pw / 2, H - 8, l->min, l->max,
        (long long)l->under, (long long)l->over);
}

static void dw_chart(struct cli_sb *b, const struct qt_dw_stats *d) {
    int W = 960, H = 220, L = 50, T = 24, B = 24;
    double pw = W - L - 10, ph = H - T - B, m = 1e-12;
    for (int c = 0; c < d->channels; c++)
        m = fmax(m, fmax(fmax(fabs(d->wmin[c]), fabs(d->wmax[c])), fmax(fabs(d->gmin[c]), fabs(d->gmax[c]))));
    double y0 = T + ph / 2, sy = ph / 2 / m, cw = pw / d->channels;
    cli_sbf(b, "<svg class=\"chart dw\" data-node=\"");
    cli_sbe(b, d->node);
    cli_sbf(b, "\" data-channels=\"%d\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
           "viewBox=\"0 0 %d %d\" role=\"img\"><title>", d->channels, W, H, W, H);
    cli_sbe(b, d->node);
    cli_sbf(b, ": weight range per channel</title>\n<text x=\"4\" y=\"14\" font-size=\"11\" font-weight=\"bold\">");
    cli_sbe(b, d->node);
    cli_sbf(b, " (%d channels; bars: weights, ticks: quantization grid)</text>\n", d->channels);
    cli_sbf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#999\"/>\n", L, y0, L + pw, y0);
    cli_sbf(b, "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%.3g</text><text x=\"%d\" y=\"%.1f\" "
           "font-size=\"10\" text-anchor=\"end\">%.3g</text>\n", L - 4, (double)T + 8, m, L - 4, T + ph, -m);
    for (int c = 0; c < d->channels; c++) {
        double x = L + cw * c, yt = y0 - d->wmax[c] * sy, yb = y0 - d->wmin[c] * sy;
        cli_sbf(b, "<rect class=\"wrange\" data-min=\"%.6g\" data-max=\"%.6g\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
               "height=\"%.2f\" fill=\"#1f77b4\"><title>channel %d: [%.4g, %.4g]</title></rect>\n", d->wmin[c],
            d->wmax[c], x + cw * 0.15, yt, cw * 0.7, fmax(yb - yt, 0.5), c, d->wmin[c], d->wmax[c]);
        cli_sbf(b, "<path d=\"M%.2f %.2fh%.2fM%.2f %.2fh%.2f\" stroke=\"#555\"/>\n", x, y0 - d->gmax[c] * sy, cw, x,
            y0 - d->gmin[c] * sy, cw);
    }
    cli_sbf(b, "</svg>\n");
}

static int cmp_worst(const void *a, const void *b) {
    const struct qt_layer_stats *x = *(const struct qt_layer_stats *const *)a, *y = *(const struct qt_layer_stats *const *)b;
    double u = x->sqnr_db != x->sqnr_db ? INFINITY : x->sqnr_db, v = y->sqnr_db != y->sqnr_db ? INFINITY : y->sqnr_db;
    return u < v ? -1 : u > v ? 1 : strcmp(x->name, y->name);
}

int cli_report_check(const char *dir, struct qt_err *err) {
    struct stat st;
    char path[4096];
    if (stat(dir, &st) != 0) /* made at the end: its parent must take it */
        return errno == ENOENT ? qt_out_check(dir, err)
                               : qt_errf(err, QT_EIO, "cannot create '%s': %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return qt_errf(err, QT_EIO, "cannot create '%s': %s", dir, strerror(EEXIST));
    snprintf(path, sizeof path, "%s/index.html", dir);
    return qt_out_check(path, err);
}

int cli_report_write(const char *dir, const struct qt_eval_opts *o, const struct qt_eval_result *r,
                     const struct qt_layer_report *rep, const struct cli_curve *curve, int nworst,
                     char *path, size_t pathlen, struct qt_err *err) {
    struct cli_sb b = {0};
    if (mkdir(dir, 0777) && errno != EEXIST)
        return qt_errf(err, QT_EIO, "cannot create '%s': %s", dir, strerror(errno));
    snprintf(path, pathlen, "%s/index.html", dir);
    cli_sbf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>qtool report: ");
    cli_sbe(&b, o->model);
    cli_sbf(&b, "</title>\n<style>body{font:14px sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}svg{display:block;margin:8px 0 20px}"
            ".grid{display:flex;flex-wrap:wrap;gap:12px}</style></head><body>\n<h1>qtool eval report</h1>\n");
    cli_sbf(&b, "<h2>Summary</h2>\n<table id=\"summary\">\n<tr><th>model</th><td>");
    cli_sbe(&b, o->model);
    cli_sbf(&b, "</td></tr>\n<tr><th>reference</th><td>");
    cli_sbe(&b, o->ref ? o->ref : "");
    cli_sbf(&b, "</td></tr>\n<tr><th>images</th><td data-value=\"%d\">%d (%d labeled)</td></tr>\n", r->images,
        r->images, r->labeled);
    if (r->labeled)
        cli_sbf(&b, "<tr><th>top-1</th><td data-value=\"%.3f\">%.3f%%</td></tr>\n<tr><th>reference top-1</th>"
                "<td data-value=\"%.3f\">%.3f%%</td></tr>\n<tr><th>top-5</th><td>%.3f%%</td></tr>\n", r->top1,
            r->top1, r->ref_top1, r->ref_top1, r->top5);
    if (!r->dense)
        cli_sbf(&b, "<tr><th>top-1 agreement</th><td data-value=\"%.3f\">%.3f%%</td></tr>\n", r->agree, r->agree);
    else
        cli_sbf(&b, "<tr><th>dense output</th><td>%d classes on %dx%d pixels</td></tr>\n<tr><th>pixel agreement</th>"
                "<td data-value=\"%.3f\">%.3f%%</td></tr>\n<tr><th>mean IoU against the reference</th>"
                "<td data-value=\"%.3f\">%.3f%%</td></tr>\n", r->nclasses, r->dense_h, r->dense_w,
            r->pixel_agree, r->pixel_agree, r->miou_ref, r->miou_ref);
    if (r->have_masks)
        cli_sbf(&b, "<tr><th>pixel accuracy (masks)</th><td data-value=\"%.3f\">%.3f%% (reference %.3f%%)</td></tr>\n"
                "<tr><th>mean IoU (masks)</th><td data-value=\"%.3f\">%.3f%% (reference %.3f%%)</td></tr>\n",
            r->pixel_acc, r->pixel_acc, r->ref_pixel_acc, r->miou, r->miou, r->ref_miou);
    if (isfinite(r->sqnr_db))
        cli_sbf(&b, "<tr><th>output SQNR</th><td data-value=\"%.3f\">%.2f dB</td></tr>\n", r->sqnr_db, r->sqnr_db);
    for (int k = 0; r->noutputs > 1 && k < r->noutputs; k++) {
        cli_sbf(&b, "<tr><th>SQNR of output ");
        cli_sbe(&b, r->outputs[k].name);
        cli_sbf(&b, "</th><td data-value=\"%.3f\">%.2f dB</td></tr>\n", r->outputs[k].sqnr_db, r->outputs[k].sqnr_db);
    }
    cli_sbf(&b, "<tr><th>run as</th><td>%s</td></tr>\n</table>\n",
        o->simulate ? "float simulation of the QDQ model" : r->int8_nodes ? "int8 kernels" : "as written");
    if (curve)
        cli_curve_html(&b, curve);
    cli_sbf(&b, "<h2>SQNR per quantized tensor</h2>\n<p>The quantized model's DequantizeLinear output against the "
            "reference's tensor of the same name, both run as written on %d images (errors accumulate along the "
            "graph). Green from 30 dB, orange from 20 dB, red below.</p>\n", rep->images);
    sqnr_chart(&b, rep);
    cli_sbf(&b, "<h2>Sensitivity per layer</h2>\n");
    if (rep->sens) {
        const struct qt_sens_report *s = rep->sens;
        cli_sbf(&b, "<p>Each quantized weight and output activation on its own, on %d images, worst first: the bar is "
                "the output SQNR against the float model with only it quantized, the black tick with every other "
                "one quantized too (all quantized: %.2f dB, agreement %.1f%%).</p>\n", s->images, s->all.sqnr_db,
            s->all.agree);
        sens_chart(&b, s);
    } else {
        cli_sbf(&b, "<p>Not available: ");
        cli_sbe(&b, rep->sens_note);
        cli_sbf(&b, ".</p>\n");
    }
    const struct qt_layer_stats **w = calloc((size_t)rep->nlayers + 1, sizeof *w);
    if (!w) {
        free(b.p);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    for (int i = 0; i < rep->nlayers; i++)
        w[i] = &rep->layer[i];
    qsort(w, (size_t)rep->nlayers, sizeof *w, cmp_worst);
    int nw = nworst < rep->nlayers ? nworst : rep->nlayers;
    cli_sbf(&b, "<h2>Activations of the %d worst tensors</h2>\n<p>Histogram of the float values (the reference "
            "model's) over three times the clipping range; dashed lines: the range the quantization keeps.</p>\n"
            "<div class=\"grid\">\n", nw);
    for (int i = 0; i < nw; i++)
        hist_chart(&b, w[i]);
    free(w);
    cli_sbf(&b, "</div>\n<h2>Depthwise convolutions: weight range per channel</h2>\n");
    if (!rep->ndw)
        cli_sbf(&b, "<p>The model has no depthwise convolution.</p>\n");
    for (int i = 0; i < rep->ndw; i++)
        dw_chart(&b, &rep->dw[i]);
    cli_sbf(&b, "<p>qtool %s</p>\n</body></html>\n", QT_VERSION);
    if (b.oom) {
        free(b.p);
        return qt_errf(err, QT_ENOMEM, "out of memory writing the report");
    }
    int rc = qt_write_file_atomic(path, b.p, b.len, err);
    free(b.p);
    return rc;
}
