/* qinfo.c: quant_info.json, the quantization step of every tensor (schema
 * in man/qtool-quant-info.5). Floats are written with 17 significant digits
 * so that reading them back gives the same float32 bits. */
#include "quant/quant.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define QINFO_VERSION 1

static cJSON *farr(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, isfinite(v[i]) ? cJSON_CreateNumber((double)v[i]) : cJSON_CreateNull());
    return a;
}

static cJSON *iarr(const int32_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static const char *role_name(int r) {
    return r == QT_ROLE_WEIGHT ? "weight" : r == QT_ROLE_BIAS ? "bias" : "activation";
}

/* pow2: scale = 2^-fraction_bits per channel */
static void add_fraction_bits(cJSON *e, const struct qt_qparam *q) {
    cJSON *a = cJSON_AddArrayToObject(e, "fraction_bits");
    for (int c = 0; c < q->n; c++) {
        int ex;
        double f = frexp(q->scale[c], &ex);
        cJSON_AddItemToArray(a, f == 0.5 ? cJSON_CreateNumber(1 - ex) : cJSON_CreateNull());
    }
}

/* The integer requantization of the node reading weight qt: from its
 * accumulator (scale s_in s_w[c]) to its quantized output (s_out). */
static int add_requant(const struct qt_qplan *p, const struct qt_qtensor *qt, cJSON *e, struct qt_err *err) {
    const struct qt_graph *g = p->g;
    const struct qt_node *n = &g->n[qt->node];
    int y = p->qn[qt->node].fused >= 0 ? g->n[p->qn[qt->node].fused].out[0] : n->out[0];
    int ti = p->tensor_of[n->in[0]], to = y >= 0 ? p->tensor_of[y] : -1;
    if (ti < 0 || to < 0)
        return 0; /* float output (a graph output): the accumulator is dequantized */
    const struct qt_qparam *qi = &p->t[ti].q, *qo = &p->t[to].q, *qw = &qt->q;
    cJSON *r = cJSON_AddObjectToObject(e, "requant");
    if (!r)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    cJSON_AddStringToObject(r, "input", g->v[p->t[ti].v].name);
    cJSON_AddStringToObject(r, "output", g->v[p->t[to].v].name);
    cJSON *m = cJSON_AddArrayToObject(r, "multiplier"), *sh = cJSON_AddArrayToObject(r, "shift");
    for (int c = 0; c < qw->n; c++) {
        int32_t mult;
        int s;
        qt_requant_fixed((double)qi->scale[0] * qw->scale[c] / qo->scale[0], &mult, &s);
        cJSON_AddItemToArray(m, cJSON_CreateNumber(mult));
        cJSON_AddItemToArray(sh, cJSON_CreateNumber(s));
    }
    return 0;
}

const char *qt_qinfo_weights_path(const char *qinfo, char *buf, size_t len) {
    return qt_path_with_ext(qinfo, ".json", ".weights.bin", buf, len);
}

int qt_qplan_outputs_check(const char *out, const char *qinfo, int tuned, struct qt_err *err) {
    char file[4096];
    if ((out && qt_out_check(out, err)) || (qinfo && qt_out_check(qinfo, err)))
        return err->code;
    if (qinfo && tuned && qt_out_check(qt_qinfo_weights_path(qinfo, file, sizeof file), err))
        return err->code;
    return 0;
}

/* Tuned float weights: every float initializer of the prepared graph, raw
 * little-endian float32, in <path without .json>.weights.bin. */
static int add_tuned(const struct qt_qplan *p, const char *path, cJSON *d, struct qt_wfile *fw, struct qt_err *err) {
    const struct qt_graph *g = p->g;
    size_t total = 0, off = 0;
    for (int v = 0; v < g->nv; v++)
        if (g->v[v].kind == QT_V_INIT && g->v[v].init && g->v[v].init->dtype == QT_FLOAT)
            total += g->v[v].init->nbytes;
    unsigned char *buf = malloc(total + 1);
    char file[4096], hex[65];
    qt_qinfo_weights_path(path, file, sizeof file);
    if (!buf)
        return qt_errf(err, QT_ENOMEM, "out of memory writing '%s'", file);
    cJSON *tw = cJSON_AddObjectToObject(d, "tuned_weights"); /* no file name: the JSON is the same whatever OUT */
    cJSON *arr = cJSON_CreateArray();
    for (int v = 0; v < g->nv; v++) {
        const struct qt_tensor *t = g->v[v].init;
        if (g->v[v].kind != QT_V_INIT || !t || t->dtype != QT_FLOAT)
            continue;
        memcpy(buf + off, t->data, t->nbytes);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", g->v[v].name);
        cJSON_AddNumberToObject(e, "offset", (double)off);
        cJSON_AddNumberToObject(e, "count", (double)(t->nbytes / sizeof(float)));
        cJSON_AddItemToArray(arr, e);
        off += t->nbytes;
    }
    qt_sha256_hex(buf, total, hex);
    cJSON_AddStringToObject(tw, "sha256", hex);
    cJSON_AddNumberToObject(tw, "bytes", (double)total);
    cJSON_AddItemToObject(tw, "tensors", arr);
    int rc = fw ? qt_wfile_begin(fw, file, buf, total, err) : qt_write_file_atomic(file, buf, total, err);
    free(buf);
    return rc;
}

int qt_qplan_write_info(const struct qt_qplan *p, const char *path, const char *model_path,
                        const struct qt_preproc *pp, int images, const char *data, struct qt_err *err) {
    struct qt_wfile f;
    if (!path)
        return 0;
    if (qt_qplan_info_begin(p, path, model_path, pp, images, data, &f, NULL, err))
        return err->code;
    return qt_wfile_commit(&f, err);
}

/* The "preprocessing", "calibration" and "settings" objects of d. */
static void add_settings(cJSON *d, const struct qt_quant_opts *o, const struct qt_preproc *pp, const char *data,
                         int images) {
    cJSON *ppj = cJSON_AddObjectToObject(d, "preprocessing");
    cJSON_AddNumberToObject(ppj, "channels", pp->channels);
    cJSON_AddStringToObject(ppj, "order", pp->channels == 1 ? "gray" : pp->bgr ? "bgr" : "rgb");
    cJSON_AddNumberToObject(ppj, "resize", pp->resize);
    if (pp->resize_h > 0) {
        cJSON *rs = cJSON_AddArrayToObject(ppj, "resize_hw");
        cJSON_AddItemToArray(rs, cJSON_CreateNumber(pp->resize_h));
        cJSON_AddItemToArray(rs, cJSON_CreateNumber(pp->resize_w));
    }
    cJSON *crop = cJSON_AddArrayToObject(ppj, "crop");
    cJSON_AddItemToArray(crop, cJSON_CreateNumber(pp->crop_h));
    cJSON_AddItemToArray(crop, cJSON_CreateNumber(pp->crop_w));
    cJSON_AddNumberToObject(ppj, "scale", pp->scale);
    cJSON_AddItemToObject(ppj, "mean", farr(pp->mean, 3));
    cJSON_AddItemToObject(ppj, "std", farr(pp->std, 3));
    cJSON *cal = cJSON_AddObjectToObject(d, "calibration");
    cJSON_AddStringToObject(cal, "data", data ? data : "");
    cJSON_AddNumberToObject(cal, "images", images);
    cJSON_AddStringToObject(cal, "observer", qt_obs_name(o->observer));
    cJSON_AddNumberToObject(cal, "percentile", qt_act_percentile(o, 8));
    if (o->percentile <= 0) /* the default's, below 8 bits */
        cJSON_AddNumberToObject(cal, "percentile_below_8_bits", qt_act_percentile(o, 7));
    cJSON_AddStringToObject(cal, "weight_observer", o->weight_mse > 0 ? "mse" : "minmax");
    cJSON *set = cJSON_AddObjectToObject(d, "settings");
    cJSON_AddNumberToObject(set, "wbits", o->wbits);
    cJSON_AddNumberToObject(set, "abits", o->abits);
    cJSON_AddStringToObject(set, "weight_granularity", o->per_channel ? "per_channel" : "per_tensor");
    cJSON_AddBoolToObject(set, "narrow_range", o->narrow);
    cJSON_AddStringToObject(set, "activation_dtype", o->act_signed ? "int8" : "uint8");
    cJSON_AddBoolToObject(set, "reduce_range", o->reduce_range);
    cJSON_AddBoolToObject(set, "fold_bn", o->fold_bn);
    cJSON_AddBoolToObject(set, "fuse_activations", o->fuse_act);
    cJSON_AddStringToObject(set, "keep_first_last",
                            o->keep_first_last == 0 ? "no" : o->keep_first_last < 0 ? "float" : "8bit");
    cJSON_AddStringToObject(set, "exclude", o->exclude ? o->exclude : "");
    cJSON_AddStringToObject(set, "exclude_ops", o->exclude_ops ? o->exclude_ops : "");
    cJSON_AddStringToObject(set, "config", o->config ? o->config : "");
    cJSON_AddStringToObject(set, "profile", o->profile);
    cJSON_AddStringToObject(set, "scales", o->pow2_scales ? "pow2" : "float");
    cJSON_AddStringToObject(set, "requantization",
                            o->int_requant == 2 ? "multiplier_shift" : o->int_requant == 1 ? "shift" : "float");
}

void qt_figures_json(cJSON *o, const char *key, const struct qt_figures *f) {
    cJSON *e = cJSON_AddObjectToObject(o, key);
    cJSON_AddNumberToObject(e, "images", f->images);
    if (f->labeled) {
        cJSON_AddNumberToObject(e, "top1", f->top1);
        cJSON_AddNumberToObject(e, "top1_drop", f->top1_drop);
    }
    cJSON_AddNumberToObject(e, "agreement", f->agree);
    if (isfinite(f->sqnr_db))
        cJSON_AddNumberToObject(e, "sqnr_db", f->sqnr_db);
    else
        cJSON_AddNullToObject(e, "sqnr_db");
}

/* A number, null when it is not finite. */
static void num_or_null(cJSON *o, const char *key, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

/* The search's figures under key, with the drop in its metric and that
 * drop's standard error over the images. */
static void fb_figures(cJSON *o, const char *key, const struct qt_figures *f, int metric) {
    qt_figures_json(o, key, f);
    cJSON *e = cJSON_GetObjectItem(o, key);
    if (f->labeled) {
        cJSON_AddNumberToObject(e, "lost", f->lost);
        cJSON_AddNumberToObject(e, "gained", f->gained);
    }
    num_or_null(e, "drop", qt_figures_drop(f, metric));
    num_or_null(e, "drop_se", qt_figures_drop_se(f, metric));
}

/* --max-drop's outcome (the raised layers are also in the tensors' bits
 * and prepare.excluded, which export rebuilds from). */
cJSON *qt_fallback_json(cJSON *d, const struct qt_fallback *fb) {
    cJSON *o = cJSON_AddObjectToObject(d, "fallback");
    cJSON_AddStringToObject(o, "metric", qt_metric_name(fb->metric));
    cJSON_AddNumberToObject(o, "max_drop", fb->max_drop);
    cJSON_AddBoolToObject(o, "met", fb->met);
    cJSON_AddNumberToObject(o, "eval_images", fb->eval_images);
    cJSON_AddNumberToObject(o, "candidates", fb->candidates);
    fb_figures(o, "before", &fb->before, fb->metric);
    fb_figures(o, "after", &fb->after, fb->metric);
    cJSON *a = cJSON_AddArrayToObject(o, "raised");
    for (int i = 0; i < fb->nlayers; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "node", fb->layer[i].node);
        if (fb->layer[i].keep_float)
            cJSON_AddStringToObject(e, "to", "float");
        else
            cJSON_AddNumberToObject(e, "to", fb->layer[i].wbits);
        cJSON_AddItemToArray(a, e);
    }
    cJSON *c = cJSON_AddArrayToObject(o, "corrections");
    for (int i = 0; i < fb->ncorr; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "option", fb->corr[i].option);
        num_or_null(e, "drop", qt_figures_drop(&fb->corr[i].f, fb->metric));
        fb_figures(e, "figures", &fb->corr[i].f, fb->metric);
        cJSON_AddBoolToObject(e, "kept", fb->corr[i].kept);
        cJSON_AddItemToArray(c, e);
    }
    return o;
}

/* settings' weight_budget, act_budget and mixed, and the "memory" figures */
static int add_memory(cJSON *d, const struct qt_qplan *p, struct qt_err *err) {
    const struct qt_quant_opts *o = &p->o;
    struct qt_mem_figures mf;
    cJSON *set = cJSON_GetObjectItem(d, "settings");
    for (int k = 0; k < 2; k++) {
        const struct qt_budget *b = k ? &o->act_budget : &o->weight_budget;
        const char *key = k ? "act_budget" : "weight_budget";
        char bs[64];
        if (b->kind == QT_BUDGET_BITS)
            snprintf(bs, sizeof bs, "%gbits", b->value);
        if (b->kind == QT_BUDGET_NONE)
            cJSON_AddNullToObject(set, key);
        else if (b->kind == QT_BUDGET_BITS)
            cJSON_AddStringToObject(set, key, bs);
        else
            cJSON_AddNumberToObject(set, key, b->value);
    }
    cJSON_AddStringToObject(set, "mixed", o->mixed == QT_MIXED_CHANNEL ? "per-channel" : "per-layer");
    if (qt_mem_figures(p, &mf, err))
        return err->code;
    cJSON *mem = cJSON_AddObjectToObject(d, "memory");
    cJSON_AddNumberToObject(mem, "rom_bytes", (double)mf.rom);
    cJSON_AddNumberToObject(mem, "ram_bytes", (double)mf.ram);
    cJSON_AddNumberToObject(mem, "rom_bytes_8bit", (double)mf.rom8);
    cJSON_AddNumberToObject(mem, "ram_bytes_8bit", (double)mf.ram8);
    cJSON_AddNumberToObject(mem, "weight_bits_avg", mf.wbits_avg);
    cJSON_AddNumberToObject(mem, "activation_bits_avg", mf.abits_avg);
    return 0;
}

/* "prepare": folded BatchNorms, fused activations, excluded nodes */
static void add_prepare(cJSON *d, const struct qt_qplan *p) {
    const struct qt_graph *g = p->g;
    cJSON *prep = cJSON_AddObjectToObject(d, "prepare");
    cJSON_AddNumberToObject(prep, "folded_batchnorm", p->nfolded);
    cJSON *fused = cJSON_AddArrayToObject(prep, "fused");
    cJSON *excl = cJSON_AddArrayToObject(prep, "excluded");
    for (int i = 0; i < g->nn; i++) {
        if (p->qn[i].fused >= 0) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "node", g->n[i].name);
            cJSON_AddStringToObject(f, "activation", g->n[p->qn[i].fused].name);
            cJSON_AddItemToArray(fused, f);
        }
        if (p->qn[i].excluded && p->qn[i].kind != QT_QN_NONE)
            cJSON_AddItemToArray(excl, cJSON_CreateString(g->n[i].name));
    }
}

/* one entry of "tensors"; NULL with err set on failure */
static cJSON *tensor_entry(const struct qt_qplan *p, const struct qt_qtensor *qt, struct qt_err *err) {
    const struct qt_graph *g = p->g;
    const struct qt_quant_opts *o = &p->o;
    const struct qt_qparam *q = &qt->q;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", g->v[qt->v].name);
    cJSON_AddStringToObject(e, "role", role_name(q->role));
    if (qt->node >= 0)
        cJSON_AddStringToObject(e, "node", g->n[qt->node].name);
    else
        cJSON_AddNumberToObject(e, "group", qt->group);
    cJSON_AddStringToObject(e, "dtype", qt_dtype_name(q->dtype));
    cJSON_AddNumberToObject(e, "bits", q->bits);
    cJSON_AddNumberToObject(e, "quant_min", q->qmin);
    cJSON_AddNumberToObject(e, "quant_max", q->qmax);
    cJSON_AddBoolToObject(e, "symmetric", q->symmetric);
    if (q->axis >= 0)
        cJSON_AddNumberToObject(e, "axis", q->axis);
    else
        cJSON_AddNullToObject(e, "axis");
    cJSON_AddItemToObject(e, "scale", farr(q->scale, q->n));
    cJSON_AddItemToObject(e, "zero_point", iarr(q->zp, q->n));
    cJSON_AddItemToObject(e, "observed_min", farr(q->obs_min, q->n));
    cJSON_AddItemToObject(e, "observed_max", farr(q->obs_max, q->n));
    cJSON_AddItemToObject(e, "range_min", farr(q->rng_min, q->n));
    cJSON_AddItemToObject(e, "range_max", farr(q->rng_max, q->n));
    cJSON_AddStringToObject(e, "method", q->method ? q->method : "");
    if (q->cbits) {
        cJSON *cb = cJSON_AddArrayToObject(e, "channel_bits");
        for (int c = 0; c < q->n; c++)
            cJSON_AddItemToArray(cb, cJSON_CreateNumber(q->cbits[c]));
    }
    if (o->pow2_scales && q->role != QT_ROLE_BIAS)
        add_fraction_bits(e, q);
    if (o->int_requant && q->role == QT_ROLE_WEIGHT && add_requant(p, qt, e, err))
        return NULL;
    return e;
}

/* the document printed, with a final newline, into f's temporary file */
static int write_info(cJSON *d, const char *path, struct qt_wfile *f, struct qt_err *err) {
    char *s = cJSON_PrintBuffered(d, 1 << 20, 1);
    cJSON_Delete(d);
    if (!s)
        return qt_errf(err, QT_ENOMEM, "out of memory writing '%s'", path);
    size_t sl = strlen(s);
    char *withnl = malloc(sl + 2);
    if (!withnl) {
        free(s);
        return qt_errf(err, QT_ENOMEM, "out of memory writing '%s'", path);
    }
    memcpy(withnl, s, sl);
    withnl[sl] = '\n';
    free(s);
    int rc = qt_wfile_begin(f, path, withnl, sl + 1, err);
    free(withnl);
    return rc;
}

int qt_qplan_info_begin(const struct qt_qplan *p, const char *path, const char *model_path,
                        const struct qt_preproc *pp, int images, const char *data, struct qt_wfile *f,
                        struct qt_wfile *fw, struct qt_err *err) {
    if (fw) {
        memset(fw, 0, sizeof *fw);
        fw->fd = -1;
    }
    const struct qt_quant_opts *o = &p->o;
    void *buf = NULL;
    size_t len = 0;
    char hex[65];
    if (!path)
        return 0;
    if (qt_read_file(model_path, 0, &buf, &len, err))
        return err->code;
    qt_sha256_hex(buf, len, hex);
    free(buf);

    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "schema", "qtool-quant-info");
    cJSON_AddNumberToObject(d, "version", QINFO_VERSION);
    cJSON_AddStringToObject(d, "qtool_version", QT_VERSION);
    cJSON *src = cJSON_AddObjectToObject(d, "source_model");
    cJSON_AddStringToObject(src, "path", model_path);
    cJSON_AddStringToObject(src, "sha256", hex);
    cJSON_AddNumberToObject(src, "bytes", (double)len);
    add_settings(d, o, pp, data, images);
    cJSON_AddBoolToObject(cJSON_GetObjectItem(d, "settings"), "cle", p->cle.rounds > 0);
    cJSON_AddStringToObject(cJSON_GetObjectItem(d, "settings"), "bias_correction",
                            p->bias == QT_BIAS_BNRE ? "bn-reestimate" : p->bias == QT_BIAS_CORRECT ? "bias-correction" : "none");
    if (p->wchoice.images > 0) { /* --weight-observer auto's measurement */
        cJSON *wc = cJSON_AddObjectToObject(cJSON_GetObjectItem(d, "calibration"), "weight_observer_choice");
        cJSON_AddNumberToObject(wc, "images", p->wchoice.images);
        cJSON_AddNumberToObject(wc, "minmax_sqnr_db", p->wchoice.sqnr_db[0]);
        cJSON_AddNumberToObject(wc, "mse_sqnr_db", p->wchoice.sqnr_db[1]);
    }
    if (p->pchoice.images > 0) { /* the default percentile's measurement at 8 bits */
        cJSON *pc = cJSON_AddObjectToObject(cJSON_GetObjectItem(d, "calibration"), "percentile_choice");
        cJSON_AddNumberToObject(pc, "images", p->pchoice.images);
        cJSON_AddNumberToObject(pc, "p99_999_sqnr_db", p->pchoice.sqnr_db[0]);
        cJSON_AddNumberToObject(pc, "p99_99_sqnr_db", p->pchoice.sqnr_db[1]);
    }
    if (p->cle.rounds > 0 && qt_cle_info(p, d)) { /* the weights themselves are in "tuned_weights" */
        cJSON_Delete(d);
        return qt_errf(err, QT_ENOMEM, "out of memory writing '%s'", path);
    }
    if (add_memory(d, p, err)) {
        cJSON_Delete(d);
        return err->code;
    }
    add_prepare(d, p);
    if (p->fallback)
        qt_fallback_json(d, p->fallback);
    cJSON *ts = cJSON_AddArrayToObject(d, "tensors");
    for (int t = 0; t < p->nt; t++) {
        cJSON *e = tensor_entry(p, &p->t[t], err);
        if (!e) {
            cJSON_Delete(d);
            return err->code;
        }
        cJSON_AddItemToArray(ts, e);
    }
    if (p->tuned && add_tuned(p, path, d, fw, err)) {
        cJSON_Delete(d);
        return err->code;
    }
    return write_info(d, path, f, err);
}
