/* curve.c: qtool eval --report DIR --curve FILE.json: the accuracy/size
 * curve of a family of quantized models (e.g. uniform widths against mixed
 * precision budgets, scripts/mixed-curve.sh) as a section of the report:
 * top-1 and top-1 agreement against the weight ROM in bytes (the average
 * width along the top), one coloured series each, and the table.
 *
 * FILE.json: {"model": "m.onnx", "float_top1": 73.38, "points": [
 *   {"series": "mixed", "label": "calib --weight-budget 4bits",
 *    "weight_bytes": 1320592, "avg_bits": 4.0, "top1": 62.99,
 *    "agreement": 74.03, "cpu_s": 165}, ...]}
 * model, float_top1, label, agreement and cpu_s may be left out. */
#include "cli.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CURVE_MAX_POINTS 10000
#define CURVE_MAX_SERIES 8

static const char *const curve_colors[CURVE_MAX_SERIES] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                           "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

void cli_curve_free(struct cli_curve *c) {
    if (!c)
        return;
    free(c->p);
    memset(c, 0, sizeof *c);
}

/* o[key] into *v: 0, or 1 when it is not a finite number in [lo, hi]
 * (absent or null: 0 with *v = NAN if optional, else 1) */
static int num_in(const cJSON *o, const char *key, double lo, double hi, int optional, double *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    *v = NAN;
    if (!it || cJSON_IsNull(it))
        return !optional;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < lo || it->valuedouble > hi)
        return 1;
    *v = it->valuedouble;
    return 0;
}

/* o[key], a string shorter than n, into dst ("" when absent and optional):
 * 0, or 1 when it is not a string, is empty or too long */
static int str_in(const cJSON *o, const char *key, char *dst, size_t n, int optional) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    dst[0] = 0;
    if (!it || cJSON_IsNull(it))
        return !optional;
    if (!cJSON_IsString(it) || (!optional && !it->valuestring[0]) || strlen(it->valuestring) >= n)
        return 1;
    strcpy(dst, it->valuestring);
    return 0;
}

/* points[i] into c->p[i] */
static int point_in(const char *path, const cJSON *o, int i, struct cli_curve *c, struct qt_err *err) {
    struct cli_curve_point *p = &c->p[i];
    const char *bad = NULL;
    if (!cJSON_IsObject(o))
        return qt_errf(err, QT_EDATA, "--curve: '%s': points[%d] is not a JSON object", path, i);
    if (str_in(o, "series", p->series, sizeof p->series, 0))
        bad = "\"series\" must be a name of 1 to 31 characters";
    else if (str_in(o, "label", p->label, sizeof p->label, 1))
        bad = "\"label\" must be a string of at most 127 characters";
    else if (num_in(o, "weight_bytes", 1, 1e15, 0, &p->bytes))
        bad = "\"weight_bytes\" must be a number in [1, 1e15]";
    else if (num_in(o, "avg_bits", 1e-9, 32, 0, &p->bits))
        bad = "\"avg_bits\" must be a number in (0, 32]";
    else if (num_in(o, "top1", 0, 100, 0, &p->top1))
        bad = "\"top1\" must be a number in [0, 100]";
    else if (num_in(o, "agreement", 0, 100, 1, &p->agree))
        bad = "\"agreement\" must be a number in [0, 100] or null";
    else if (num_in(o, "cpu_s", 0, 1e12, 1, &p->cpu_s))
        bad = "\"cpu_s\" must be a number >= 0 or null";
    if (bad)
        return qt_errf(err, QT_EDATA, "--curve: '%s': points[%d]: %s", path, i, bad);
    p->s = -1;
    for (int k = 0; k < i && p->s < 0; k++)
        if (!strcmp(c->p[k].series, p->series))
            p->s = c->p[k].s;
    if (p->s < 0 && c->nseries == CURVE_MAX_SERIES)
        return qt_errf(err, QT_EDATA, "--curve: '%s': points[%d]: series '%s' is one more than the %d a chart shows",
                       path, i, p->series, CURVE_MAX_SERIES);
    if (p->s < 0)
        p->s = c->nseries++;
    return 0;
}

static int curve_doc(const char *path, const cJSON *d, struct cli_curve *c, struct qt_err *err) {
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(d, "points");
    if (!cJSON_IsObject(d))
        return qt_errf(err, QT_EDATA, "--curve: '%s' is not a JSON object", path);
    if (str_in(d, "model", c->model, sizeof c->model, 1))
        return qt_errf(err, QT_EDATA, "--curve: '%s': \"model\" must be a string of at most 127 characters", path);
    if (num_in(d, "float_top1", 0, 100, 1, &c->float_top1))
        return qt_errf(err, QT_EDATA, "--curve: '%s': \"float_top1\" must be a number in [0, 100] or null", path);
    int n = cJSON_IsArray(pts) ? cJSON_GetArraySize(pts) : 0;
    if (n < 1 || n > CURVE_MAX_POINTS)
        return qt_errf(err, QT_EDATA, "--curve: '%s': \"points\" must be an array of 1 to %d points", path,
                       CURVE_MAX_POINTS);
    c->p = calloc((size_t)n, sizeof *c->p);
    if (!c->p)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++, c->n++)
        if (point_in(path, cJSON_GetArrayItem(pts, i), i, c, err))
            return err->code;
    return 0;
}

int cli_curve_load(const char *path, struct cli_curve *c, struct qt_err *err) {
    void *buf;
    size_t len;
    memset(c, 0, sizeof *c);
    c->float_top1 = NAN;
    if (qt_read_file(path, 16 << 20, &buf, &len, err))
        return qt_errf(err, err->code, "--curve: %s", err->msg);
    cJSON *d = cJSON_ParseWithLength(buf, len);
    if (!d) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= (const char *)buf && at <= (const char *)buf + len ? (long)(at - (const char *)buf) : -1;
        free(buf);
        return qt_errf(err, QT_EDATA, "--curve: '%s' is not valid JSON (near byte %ld)", path, off);
    }
    free(buf);
    int rc = curve_doc(path, d, c, err);
    cJSON_Delete(d);
    if (rc)
        cli_curve_free(c);
    return rc;
}

/* A 1-2-5 step about span/n */
static double nice_step(double span, int n) {
    double raw = span / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return mag * (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10);
}

/* bits ~ a + b * bytes over all points; 0 when the points are not on one
 * such line (within 0.02 bits), e.g. several models in one file */
static int bits_fit(const struct cli_curve *c, double *a, double *b) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0, n = c->n;
    for (int i = 0; i < c->n; i++) {
        sx += c->p[i].bytes;
        sy += c->p[i].bits;
        sxx += c->p[i].bytes * c->p[i].bytes;
        sxy += c->p[i].bytes * c->p[i].bits;
    }
    double den = n * sxx - sx * sx;
    if (c->n < 2 || den <= 1e-9 * n * sxx)
        return 0;
    *b = (n * sxy - sx * sy) / den;
    *a = (sy - *b * sx) / n;
    for (int i = 0; i < c->n; i++)
        if (fabs(*a + *b * c->p[i].bytes - c->p[i].bits) > 0.02)
            return 0;
    return 1;
}

static double metric(const struct cli_curve_point *p, int agree) {
    return agree ? p->agree : p->top1;
}

struct frame {
    double x0, x1, y0, y1; /* data range */
    int W, H, L, T, pw, ph;
};

static double fx(const struct frame *f, double v) {
    return f->L + f->pw * (v - f->x0) / (f->x1 - f->x0);
}

static double fy(const struct frame *f, double v) {
    return f->T + f->ph * (f->y1 - v) / (f->y1 - f->y0);
}

/* The axes of one chart: ranges from the points, grid lines, tick labels
 * (bytes, and the average width when the points share one bits/bytes line) */
static void axes(struct cli_sb *b, const struct cli_curve *c, int agree, struct frame *f) {
    double lo = INFINITY, hi = -INFINITY, fa = 0, fb = 0;
    *f = (struct frame){.x0 = INFINITY, .x1 = -INFINITY, .W = 960, .H = 380, .L = 60, .T = 30, .pw = 700, .ph = 300};
    for (int i = 0; i < c->n; i++) {
        double v = metric(&c->p[i], agree);
        f->x0 = fmin(f->x0, c->p[i].bytes);
        f->x1 = fmax(f->x1, c->p[i].bytes);
        if (v == v) {
            lo = fmin(lo, v);
            hi = fmax(hi, v);
        }
    }
    if (!agree && c->float_top1 == c->float_top1) {
        lo = fmin(lo, c->float_top1);
        hi = fmax(hi, c->float_top1);
    }
    double span = f->x1 - f->x0 > 0 ? f->x1 - f->x0 : f->x1 * 0.2;
    f->x0 -= span * 0.05;
    f->x1 += span * 0.05;
    f->y0 = fmax(0, floor(lo / 10) * 10);
    f->y1 = fmin(100, fmax(ceil(hi / 10) * 10, f->y0 + 10));
    f->y0 = fmin(f->y0, f->y1 - 10);
    for (double t = f->y0; t <= f->y1 + 1e-9; t += 10)
        cli_sbf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%d\" y=\"%.1f\" "
                   "font-size=\"11\" text-anchor=\"end\">%.0f%%</text>\n", f->L, fy(f, t), f->L + f->pw, fy(f, t),
                f->L - 6, fy(f, t) + 4, t);
    double step = nice_step(f->x1 - f->x0, 6), unit = f->x1 >= 1e6 ? 1e6 : f->x1 >= 1e3 ? 1e3 : 1;
    int dec = step / unit >= 1 ? 0 : (int)ceil(-log10(step / unit) - 1e-9);
    int fit = bits_fit(c, &fa, &fb);
    for (double t = ceil(f->x0 / step) * step; t <= f->x1; t += step) {
        cli_sbf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/><text x=\"%.1f\" y=\"%d\" "
                   "font-size=\"11\" text-anchor=\"middle\">%.*f %s</text>\n", fx(f, t), f->T, fx(f, t),
                f->T + f->ph, fx(f, t), f->T + f->ph + 14, dec, t / unit, unit == 1e6 ? "MB" : unit == 1e3 ? "kB" : "B");
    }
    for (double k = ceil(fa + fb * f->x0); fit && fb > 0 && k <= fa + fb * f->x1; k++)
        cli_sbf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#666\"/><text class=\"bits\" "
                   "x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">%.0f bits</text>\n",
                fx(f, (k - fa) / fb), f->T - 4, fx(f, (k - fa) / fb), f->T, fx(f, (k - fa) / fb), f->T - 7, k);
    cli_sbf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n"
               "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">weight ROM (bytes, packed widths, "
               "int32 biases)%s</text>\n", f->L, f->T, f->pw, f->ph, f->L + f->pw / 2, f->H - 8,
            fit ? "; above: the average weight width" : "");
}

/* One series: a line through its points by size, a dot per point */
static void series(struct cli_sb *b, const struct cli_curve *c, int s, int agree, const struct frame *f, int *ord) {
    int m = 0;
    for (int i = 0; i < c->n; i++)
        if (c->p[i].s == s && metric(&c->p[i], agree) == metric(&c->p[i], agree)) {
            int k = m++;
            for (; k > 0 && c->p[ord[k - 1]].bytes > c->p[i].bytes; k--)
                ord[k] = ord[k - 1];
            ord[k] = i;
        }
    cli_sbf(b, "<polyline class=\"series\" data-series=\"");
    cli_sbe(b, c->p[ord[0]].series);
    cli_sbf(b, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", curve_colors[s]);
    for (int k = 0; k < m; k++)
        cli_sbf(b, "%s%.1f,%.1f", k ? " " : "", fx(f, c->p[ord[k]].bytes), fy(f, metric(&c->p[ord[k]], agree)));
    cli_sbf(b, "\"/>\n");
    for (int k = 0; k < m; k++) {
        const struct cli_curve_point *p = &c->p[ord[k]];
        double v = metric(p, agree);
        cli_sbf(b, "<circle class=\"point\" data-series=\"");
        cli_sbe(b, p->series);
        cli_sbf(b, "\" data-label=\"");
        cli_sbe(b, p->label);
        cli_sbf(b, "\" data-bytes=\"%.0f\" data-bits=\"%.4f\" data-value=\"%.3f\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" "
                   "fill=\"%s\"><title>", p->bytes, p->bits, v, fx(f, p->bytes), fy(f, v), curve_colors[s]);
        cli_sbe(b, p->label[0] ? p->label : p->series);
        cli_sbf(b, ": %s %.2f%%, %.0f bytes, %.2f bits</title></circle>\n", agree ? "agreement" : "top-1", v,
                p->bytes, p->bits);
    }
}

static void curve_chart(struct cli_sb *b, const struct cli_curve *c, int agree, int *ord) {
    struct frame f;
    cli_sbf(b, "<svg class=\"chart curve\" id=\"curve-%s\" data-metric=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" "
               "width=\"960\" height=\"380\" viewBox=\"0 0 960 380\" role=\"img\"><title>%s against weight size"
               "</title>\n", agree ? "agreement" : "top1", agree ? "agreement" : "top1",
            agree ? "Top-1 agreement" : "Top-1");
    axes(b, c, agree, &f);
    cli_sbf(b, "<text x=\"16\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">"
               "%s</text>\n", f.T + f.ph / 2, f.T + f.ph / 2, agree ? "top-1 agreement with float" : "top-1");
    if (!agree && c->float_top1 == c->float_top1)
        cli_sbf(b, "<line class=\"float\" data-value=\"%.3f\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
                   "stroke=\"#000\" stroke-dasharray=\"6,4\"/><text x=\"%d\" y=\"%.1f\" font-size=\"10\">float "
                   "%.2f%%</text>\n", c->float_top1, f.L, fy(&f, c->float_top1), f.L + f.pw, fy(&f, c->float_top1),
                f.L + 4, fy(&f, c->float_top1) - 4, c->float_top1);
    for (int s = 0; s < c->nseries; s++) {
        int i = 0;
        while (c->p[i].s != s)
            i++;
        int have = 0;
        for (int k = 0; k < c->n; k++)
            have |= c->p[k].s == s && metric(&c->p[k], agree) == metric(&c->p[k], agree);
        if (have)
            series(b, c, s, agree, &f, ord);
        cli_sbf(b, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" "
                   "font-size=\"12\">", f.L + f.pw + 20, f.T + 10 + 20 * s, curve_colors[s], f.L + f.pw + 40,
                f.T + 19 + 20 * s);
        cli_sbe(b, c->p[i].series);
        cli_sbf(b, "</text>\n");
    }
    cli_sbf(b, "</svg>\n");
}

static void curve_table(struct cli_sb *b, const struct cli_curve *c) {
    cli_sbf(b, "<table id=\"curve\">\n<tr><th>series</th><th>run</th><th>weight bytes</th><th>avg bits</th>"
               "<th>top-1</th><th>agreement</th><th>CPU s</th></tr>\n");
    for (int i = 0; i < c->n; i++) {
        const struct cli_curve_point *p = &c->p[i];
        cli_sbf(b, "<tr><td>");
        cli_sbe(b, p->series);
        cli_sbf(b, "</td><td>");
        cli_sbe(b, p->label);
        cli_sbf(b, "</td><td>%.0f</td><td>%.2f</td><td>%.2f%%</td>", p->bytes, p->bits, p->top1);
        if (p->agree == p->agree)
            cli_sbf(b, "<td>%.2f%%</td>", p->agree);
        else
            cli_sbf(b, "<td></td>");
        if (p->cpu_s == p->cpu_s)
            cli_sbf(b, "<td>%.0f</td></tr>\n", p->cpu_s);
        else
            cli_sbf(b, "<td></td></tr>\n");
    }
    cli_sbf(b, "</table>\n");
}

void cli_curve_html(struct cli_sb *b, const struct cli_curve *c) {
    int *ord = malloc(sizeof(int) * (size_t)c->n), agree = 0;
    if (!ord) {
        b->oom = 1;
        return;
    }
    for (int i = 0; i < c->n; i++)
        agree |= c->p[i].agree == c->p[i].agree;
    cli_sbf(b, "<h2>Accuracy against weight size</h2>\n<p>%d quantized models", c->n);
    if (c->model[0]) {
        cli_sbf(b, " of ");
        cli_sbe(b, c->model);
    }
    cli_sbf(b, " in %d series (the --curve file): top-1%s against the weight ROM; each series is a line through "
               "its points by size.%s</p>\n", c->nseries, agree ? " and top-1 agreement with the float model" : "",
            c->float_top1 == c->float_top1 ? " Dashed: the float model's top-1." : "");
    curve_chart(b, c, 0, ord);
    if (agree)
        curve_chart(b, c, 1, ord);
    curve_table(b, c);
    free(ord);
}
