/* export.c: qtool export. Rebuilds a model from the float model and a
 * quant_info.json alone: the plan is built again from the settings the JSON
 * records (the same preparation: BatchNorm folding, fusion, exclusions),
 * then every tensor's quantization parameters, the float biases (recorded as
 * their range) and, when finetune/qat tuned them, the float weights (the
 * .weights.bin file the JSON names) are restored, and the same writer as
 * calib's produces the model: a QDQ file byte-identical to calib's, the
 * BatchNorm-folded float model, or QOperator form (qoperator.c). */
#include "quant/quant.h"

#include <cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const cJSON *item(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int jint(const cJSON *o, const char *k, int lo, int hi, int *out) {
    const cJSON *f = item(o, k);
    /* range first: (int) of a double outside int is undefined */
    if (!cJSON_IsNumber(f) || !(f->valuedouble >= lo && f->valuedouble <= hi) ||
        f->valuedouble != (double)(int)f->valuedouble)
        return -1;
    *out = (int)f->valuedouble;
    return 0;
}

static int jbool(const cJSON *o, const char *k, int *out) {
    const cJSON *f = item(o, k);
    if (!cJSON_IsBool(f))
        return -1;
    *out = cJSON_IsTrue(f);
    return 0;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *f = item(o, k);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

/* the settings that decide the plan's shape */
static int read_settings(const cJSON *d, const char *path, struct qt_quant_opts *q, char **excl, struct qt_err *err) {
    const cJSON *set = item(d, "settings"), *prep = item(d, "prepare");
    const char *s;
    qt_quant_opts_init(q);
    if (!cJSON_IsObject(set) || !cJSON_IsObject(prep))
        return qt_errf(err, QT_EDATA, "'%s' has no \"settings\" or \"prepare\" object", path);
    if (jint(set, "wbits", 2, 8, &q->wbits) || jint(set, "abits", 2, 8, &q->abits) ||
        jbool(set, "narrow_range", &q->narrow) || jbool(set, "reduce_range", &q->reduce_range) ||
        jbool(set, "fold_bn", &q->fold_bn) || jbool(set, "fuse_activations", &q->fuse_act) ||
        !(s = jstr(set, "activation_dtype")) || (strcmp(s, "uint8") && strcmp(s, "int8")))
        return qt_errf(err, QT_EDATA, "'%s': \"settings\" is incomplete or has bad values", path);
    q->act_signed = !strcmp(s, "int8");
    s = jstr(set, "weight_granularity");
    q->per_channel = !s || strcmp(s, "per_tensor");
    if ((s = jstr(set, "profile")))
        snprintf(q->profile, sizeof q->profile, "%s", s);
    q->pow2_scales = (s = jstr(set, "scales")) && !strcmp(s, "pow2");
    /* the weight-step rule written (files before it: max |w|), for steps at other widths (eval --report) */
    const cJSON *cal = item(d, "calibration");
    q->weight_mse = cJSON_IsObject(cal) && (s = jstr(cal, "weight_observer")) && !strcmp(s, "mse");
    s = jstr(set, "requantization");
    q->int_requant = !s ? 0 : !strcmp(s, "multiplier_shift") ? 2 : !strcmp(s, "shift") ? 1 : 0;
    /* exclusions as recorded (from --exclude, --exclude-op, --config, --keep-first-last float) */
    const cJSON *ex = item(prep, "excluded"), *it;
    size_t len = 1;
    cJSON_ArrayForEach(it, ex) {
        if (!cJSON_IsString(it))
            return qt_errf(err, QT_EDATA, "'%s': \"prepare.excluded\" must list node names", path);
        len += strlen(it->valuestring) + 1;
    }
    *excl = calloc(len, 1);
    if (!*excl)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, ex) {
        if (**excl)
            strcat(*excl, ",");
        strcat(*excl, it->valuestring);
    }
    q->exclude = **excl ? *excl : NULL;
    return 0;
}

static const char *method_name(const char *s) {
    static const char *const known[] = {"minmax", "ema", "percentile", "entropy", "mse", "derived",
                                        "adaquant", "adaround", "lsq", NULL};
    for (int i = 0; known[i]; i++)
        if (!strcmp(s, known[i]))
            return known[i];
    return "restored";
}

static int farr(const cJSON *a, int n, float *out) {
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return -1;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (cJSON_IsNull(it))
            out[i++] = NAN;
        else if (cJSON_IsNumber(it) && fabs(it->valuedouble) <= FLT_MAX) /* beyond: undefined as float */
            out[i++] = (float)it->valuedouble;
        else
            return -1;
    }
    return 0;
}

/* One tensor entry onto plan tensor qt. */
static int read_tensor(struct qt_qplan *p, struct qt_qtensor *qt, const cJSON *e, const char *path, struct qt_err *err) {
    const struct qt_graph *g = p->g;
    const char *name = g->v[qt->v].name;
    const cJSON *sc = item(e, "scale");
    int n = cJSON_IsArray(sc) ? cJSON_GetArraySize(sc) : 0, bits, qmin, qmax, sym;
    const char *dt = jstr(e, "dtype"), *role = jstr(e, "role");
    int want_role = qt->q.role;
    const char *rn = want_role == QT_ROLE_WEIGHT ? "weight" : want_role == QT_ROLE_BIAS ? "bias" : "activation";
    if (!role || strcmp(role, rn))
        return qt_errf(err, QT_EDATA, "'%s': tensor '%s' should have role %s", path, name, rn);
    int dtype = !dt ? -1 : !strcmp(dt, "uint8") ? QT_UINT8 : !strcmp(dt, "int8") ? QT_INT8
                         : !strcmp(dt, "int32") ? QT_INT32 : -1;
    if (dtype < 0 || (want_role == QT_ROLE_BIAS) != (dtype == QT_INT32))
        return qt_errf(err, QT_EDATA, "'%s': tensor '%s' has a bad dtype", path, name);
    if (jint(e, "bits", 2, 32, &bits) || jint(e, "quant_min", INT32_MIN, INT32_MAX, &qmin) ||
        jint(e, "quant_max", INT32_MIN, INT32_MAX, &qmax) || jbool(e, "symmetric", &sym) || qmin >= qmax)
        return qt_errf(err, QT_EDATA, "'%s': tensor '%s' has bad bits, quant_min/max or symmetric", path, name);
    const cJSON *ax = item(e, "axis");
    int axis = cJSON_IsNumber(ax) ? ax->valueint : -1;
    /* the channel count the tensor needs */
    int want_n = 1;
    if (want_role == QT_ROLE_BIAS)
        want_n = (int)qt_tensor_numel(g->v[qt->v].init);
    else if (want_role == QT_ROLE_WEIGHT && axis >= 0) {
        const struct qt_tensor *w = g->v[qt->v].init;
        if (axis >= w->ndim)
            return qt_errf(err, QT_EDATA, "'%s': weight '%s' has axis %d beyond its %d dims", path, name, axis, w->ndim);
        want_n = (int)w->dims[axis];
    }
    if (n != want_n)
        return qt_errf(err, QT_EDATA, "'%s': tensor '%s' has %d scales, the model needs %d", path, name, n, want_n);
    struct qt_qparam *q = &qt->q;
    qt_qparam_release(q);
    q->role = want_role;
    if (qt_qparam_alloc(q, n, err))
        return err->code;
    q->dtype = dtype;
    q->bits = bits;
    if (want_role == QT_ROLE_WEIGHT) { /* the node's settings follow (qt_qplan_weights reads them) */
        p->qn[qt->node].wbits = bits;
        p->qn[qt->node].per_channel = axis >= 0;
    }
    q->qmin = qmin;
    q->qmax = qmax;
    q->symmetric = sym;
    q->axis = axis;
    q->method = method_name(jstr(e, "method") ? jstr(e, "method") : "");
    const cJSON *zp = item(e, "zero_point"), *it;
    if (farr(sc, n, q->scale) || farr(item(e, "observed_min"), n, q->obs_min) ||
        farr(item(e, "observed_max"), n, q->obs_max) || farr(item(e, "range_min"), n, q->rng_min) ||
        farr(item(e, "range_max"), n, q->rng_max) || !cJSON_IsArray(zp) || cJSON_GetArraySize(zp) != n)
        return qt_errf(err, QT_EDATA, "'%s': tensor '%s' needs %d numbers in scale, zero_point and the ranges", path,
                       name, n);
    int c = 0;
    cJSON_ArrayForEach(it, zp) {
        if (!cJSON_IsNumber(it) || it->valueint < qmin || it->valueint > qmax)
            return qt_errf(err, QT_EDATA, "'%s': tensor '%s' has a zero point outside [%d, %d]", path, name, qmin, qmax);
        q->zp[c++] = it->valueint;
    }
    for (c = 0; c < n; c++)
        if (!(q->scale[c] > 0) || !isfinite(q->scale[c]))
            return qt_errf(err, QT_EDATA, "'%s': tensor '%s' has a scale that is not positive and finite", path, name);
    const cJSON *cb = item(e, "channel_bits");
    if (cb) { /* per-channel widths (--mixed per-channel) */
        if (want_role != QT_ROLE_WEIGHT || !cJSON_IsArray(cb) || cJSON_GetArraySize(cb) != n)
            return qt_errf(err, QT_EDATA, "'%s': tensor '%s' needs %d numbers in channel_bits", path, name, n);
        if (!(q->cbits = malloc((size_t)n + 1)))
            return qt_errf(err, QT_ENOMEM, "out of memory");
        c = 0;
        cJSON_ArrayForEach(it, cb) {
            if (!cJSON_IsNumber(it) || it->valueint < 2 || it->valueint > bits)
                return qt_errf(err, QT_EDATA, "'%s': tensor '%s' has a channel width outside 2..%d", path, name, bits);
            q->cbits[c++] = (unsigned char)it->valueint;
        }
    }
    if (want_role == QT_ROLE_BIAS) { /* the float bias is its recorded range */
        struct qt_tensor *b = g->v[qt->v].init;
        for (c = 0; c < n; c++)
            if (!isfinite(q->rng_min[c]))
                return qt_errf(err, QT_EDATA, "'%s': bias '%s' has no value in range_min", path, name);
        if (memcmp(b->data, q->rng_min, sizeof(float) * (size_t)n)) {
            memcpy(b->data, q->rng_min, sizeof(float) * (size_t)n);
            p->g->v[qt->v].orig = NULL;
        }
    }
    return 0;
}

static int read_tuned(struct qt_qplan *p, const cJSON *tw, const char *path, int *ntuned, struct qt_err *err) {
    char file[4096], hex[65];
    const char *sha = jstr(tw, "sha256");
    void *buf = NULL;
    size_t len;
    const cJSON *ts = item(tw, "tensors"), *it;
    if (!sha || !cJSON_IsArray(ts))
        return qt_errf(err, QT_EDATA, "'%s': \"tuned_weights\" needs sha256 and tensors", path);
    qt_qinfo_weights_path(path, file, sizeof file);
    if (qt_read_file(file, (size_t)1 << 34, &buf, &len, err))
        return qt_err_prefix(err, "tuned weights of '%s'", path);
    qt_sha256_hex(buf, len, hex);
    if (strcmp(hex, sha)) {
        free(buf);
        return qt_errf(err, QT_EDATA, "'%s' does not match the sha256 '%s' records", file, path);
    }
    cJSON_ArrayForEach(it, ts) {
        const char *name = jstr(it, "name");
        const cJSON *off = item(it, "offset"), *cnt = item(it, "count");
        int v = name ? qt_graph_find(p->g, name) : -1;
        struct qt_tensor *t = v >= 0 ? p->g->v[v].init : NULL;
        if (!t || t->dtype != QT_FLOAT || !cJSON_IsNumber(off) || !cJSON_IsNumber(cnt) ||
            cnt->valuedouble != (double)(t->nbytes / sizeof(float)) || off->valuedouble < 0 ||
            off->valuedouble + (double)t->nbytes > (double)len) {
            qt_errf(err, QT_EDATA, "'%s': tuned tensor '%s' does not fit the model or '%s'", path,
                    name ? name : "?", file);
            break;
        }
        const unsigned char *src = (const unsigned char *)buf + (size_t)off->valuedouble;
        int finite = 1;
        for (size_t e = 0; e < t->nbytes / sizeof(float) && finite; e++) {
            float f;
            memcpy(&f, src + e * sizeof f, sizeof f);
            finite = isfinite(f);
        }
        if (!finite) { /* the model's weights are checked by qt_graph_check_weights, these here */
            qt_errf(err, QT_EMODEL, "'%s': tuned tensor '%s' has NaN or infinite values", file, name);
            break;
        }
        if (memcmp(t->data, src, t->nbytes)) {
            memcpy(t->data, src, t->nbytes);
            p->g->v[v].orig = NULL;
        }
        (*ntuned)++;
    }
    free(buf);
    return err->code;
}

/* Reads quant_info.json for the model and rebuilds the plan it describes. */
static int from_info(struct qt_qplan **out, const struct qt_graph *g, const char *model_path, const char *path,
                     int *ntuned, struct qt_graph **fref, struct qt_err *err) {
    void *buf = NULL, *mbuf = NULL;
    size_t len, mlen;
    char hex[65], *excl = NULL;
    cJSON *d = NULL;
    struct qt_quant_opts q;
    struct qt_qplan *p = NULL;
    *out = NULL;
    *ntuned = 0;
    if (qt_read_file(path, (size_t)1 << 30, &buf, &len, err))
        goto out;
    d = cJSON_ParseWithLength(buf, len);
    if (!d || !cJSON_IsObject(d)) {
        qt_errf(err, QT_EDATA, "'%s' is not valid JSON", path);
        goto out;
    }
    const char *schema = jstr(d, "schema");
    int version;
    if (!schema || strcmp(schema, "qtool-quant-info") || jint(d, "version", 1, 1, &version)) {
        qt_errf(err, QT_EDATA, "'%s' is not a qtool quant_info.json (version 1)", path);
        goto out;
    }
    const char *sha = jstr(item(d, "source_model"), "sha256");
    if (qt_read_file(model_path, 0, &mbuf, &mlen, err))
        goto out;
    qt_sha256_hex(mbuf, mlen, hex);
    if (!sha || strcmp(sha, hex)) {
        qt_errf(err, QT_EDATA, "'%s' was written for another model (sha256 %.12s..., '%s' has %.12s...)", path,
                sha ? sha : "missing", model_path, hex);
        goto out;
    }
    if (read_settings(d, path, &q, &excl, err) || qt_qplan_build(&p, g, &q, NULL, NULL, err))
        goto out;
    /* the float reference: the prepared graph before the recorded biases and tuned weights; with
     * CLE none (its rescaled float weights are only in the tuned weights) */
    if (fref && !cJSON_IsTrue(item(item(d, "settings"), "cle")) && qt_graph_clone(fref, p->g, err))
        goto out;
    const cJSON *ts = item(d, "tensors"), *e;
    if (!cJSON_IsArray(ts) || cJSON_GetArraySize(ts) != p->nt) {
        qt_errf(err, QT_EDATA, "'%s' lists %d tensors, the model's plan has %d", path,
                cJSON_IsArray(ts) ? cJSON_GetArraySize(ts) : 0, p->nt);
        goto out;
    }
    int t = 0;
    cJSON_ArrayForEach(e, ts) {
        const char *name = jstr(e, "name");
        if (!name || strcmp(name, p->g->v[p->t[t].v].name)) {
            qt_errf(err, QT_EDATA, "'%s': tensor %d is '%s', the model's plan has '%s'", path, t, name ? name : "?",
                    p->g->v[p->t[t].v].name);
            goto out;
        }
        if (read_tensor(p, &p->t[t], e, path, err))
            goto out;
        t++;
    }
    const cJSON *tw = item(d, "tuned_weights");
    if (tw && read_tuned(p, tw, path, ntuned, err))
        goto out;
    p->tuned = tw != NULL;
    p->o.exclude = NULL; /* points into excl */
    *out = p;
    p = NULL;
out:
    if (err->code && fref) {
        qt_graph_free(*fref);
        *fref = NULL;
    }
    qt_qplan_free(p);
    cJSON_Delete(d);
    free(buf);
    free(mbuf);
    free(excl);
    return err->code;
}

int qt_qplan_from_info(struct qt_qplan **out, const struct qt_graph *g, const char *model_path, const char *path,
                       int *ntuned, struct qt_err *err) {
    return from_info(out, g, model_path, path, ntuned, NULL, err);
}

int qt_qplan_from_info_ref(struct qt_qplan **out, struct qt_graph **fref, const struct qt_graph *g,
                           const char *model_path, const char *path, int *ntuned, struct qt_err *err) {
    *fref = NULL;
    return from_info(out, g, model_path, path, ntuned, fref, err);
}

int qt_export_run(const struct qt_export_opts *o, struct qt_export_result *r, struct qt_err *err) {
    struct qt_graph *g = NULL, *og = NULL;
    struct qt_qplan *p = NULL;
    memset(r, 0, sizeof *r);
    if (qt_out_check(o->out, err) || qt_graph_load(&g, o->model, err) || qt_graph_check_weights(g, err) ||
        qt_qplan_from_info(&p, g, o->model, o->quant_info, &r->tuned, err))
        goto out;
    if (o->profile) {
        struct qt_quant_opts want = p->o;
        if (qt_profile_apply(&want, o->profile, err))
            goto out;
        if (want.act_signed != p->o.act_signed || want.per_channel != p->o.per_channel ||
            want.narrow != p->o.narrow || want.reduce_range != p->o.reduce_range ||
            want.pow2_scales != p->o.pow2_scales) {
            qt_errf(err, QT_EUSAGE,
                    "profile '%s' needs other quantization parameters than '%s' records (profile '%s'): "
                    "quantize again with --profile %s",
                    want.profile, o->quant_info, p->o.profile, o->profile);
            goto out;
        }
    }
    r->ntensors = p->nt;
    if (qt_mem_figures(p, &r->mem, err))
        goto out;
    if (o->format == QT_EXPORT_FLOAT) {
        og = p->g;
        p->g = NULL;
    } else if (o->format == QT_EXPORT_QOPERATOR) {
        if (qt_qplan_export_qop(p, o->contrib, &og, &r->qnodes, err))
            goto out;
    } else if (qt_qplan_export_qdq(p, &og, err)) {
        goto out;
    } else if (o->pack) {
        qt_qdq_pack_int4(p, og);
    }
    if (qt_graph_save(og, o->out, err))
        goto out;
out:
    qt_graph_free(og);
    qt_qplan_free(p);
    qt_graph_free(g);
    return err->code;
}
