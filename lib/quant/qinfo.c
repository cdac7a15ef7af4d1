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

int qt_qplan_write_info(const struct qt_qplan *p, const char *path, const char *model_path,
                        const struct qt_preproc *pp, int images, const char *data, struct qt_err *err) {
    struct qt_wfile f;
    if (!path)
        return 0;
    if (qt_qplan_info_begin(p, path, model_path, pp, images, data, &f, err))
        return err->code;
    return qt_wfile_commit(&f, err);
}

int qt_qplan_info_begin(const struct qt_qplan *p, const char *path, const char *model_path,
                        const struct qt_preproc *pp, int images, const char *data, struct qt_wfile *f,
                        struct qt_err *err) {
    const struct qt_graph *g = p->g;
    const struct qt_quant_opts *o = &p->o;
    void *buf = NULL;
    size_t len = 0;
    char hex[65];
    int rc;
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
    cJSON *ppj = cJSON_AddObjectToObject(d, "preprocessing");
    cJSON_AddNumberToObject(ppj, "channels", pp->channels);
    cJSON_AddStringToObject(ppj, "order", pp->channels == 1 ? "gray" : pp->bgr ? "bgr" : "rgb");
    cJSON_AddNumberToObject(ppj, "resize", pp->resize);
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
    cJSON_AddNumberToObject(cal, "percentile", o->percentile);
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
    cJSON *ts = cJSON_AddArrayToObject(d, "tensors");
    for (int t = 0; t < p->nt; t++) {
        const struct qt_qtensor *qt = &p->t[t];
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
        cJSON_AddItemToArray(ts, e);
    }
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
    rc = qt_wfile_begin(f, path, withnl, sl + 1, err);
    free(withnl);
    return rc;
}
