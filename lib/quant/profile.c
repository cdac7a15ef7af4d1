/* profile.c: hardware profiles, data not code (man qtool-profiles(5)). The
 * built-in ones are the JSON files in share/profiles/, compiled in through a header the
 * Makefile generates; a user's file has the same schema. A profile sets the
 * quantization settings a target needs: activation type, weight
 * granularity and range, power-of-two scales, the requantization form
 * recorded in quant_info.json. */
#include "quant/quant.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

struct builtin {
    const char *name, *json;
};
static const struct builtin builtins[] = {
#include "profiles.h"
};
#define NBUILTIN ((int)(sizeof builtins / sizeof builtins[0]))

const char *qt_profile_builtin(int i) {
    return i >= 0 && i < NBUILTIN ? builtins[i].name : NULL;
}

static int bad(struct qt_err *err, const char *src, const char *what) {
    return qt_errf(err, QT_EDATA, "profile '%s': %s", src, what);
}

static int str_in(const cJSON *o, const char *key, const char *const *allowed, int *out) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!f)
        return 0;
    if (!cJSON_IsString(f))
        return -1;
    for (int i = 0; allowed[i]; i++)
        if (!strcmp(f->valuestring, allowed[i])) {
            *out = i;
            return 0;
        }
    return -1;
}

static int bool_in(const cJSON *o, const char *key, int *out) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!f)
        return 0;
    if (!cJSON_IsBool(f))
        return -1;
    *out = cJSON_IsTrue(f);
    return 0;
}

static int apply_json(struct qt_quant_opts *q, const char *src, const char *text, size_t len, struct qt_err *err) {
    static const char *const dtypes[] = {"uint8", "int8", NULL};
    static const char *const gran[] = {"per_tensor", "per_channel", NULL};
    static const char *const scales[] = {"float", "pow2", NULL};
    static const char *const requant[] = {"float", "shift", "multiplier_shift", NULL};
    struct qt_quant_opts n = *q;
    cJSON *d = cJSON_ParseWithLength(text, len);
    if (!d || !cJSON_IsObject(d)) {
        cJSON_Delete(d);
        return bad(err, src, "not a JSON object");
    }
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(d, "schema");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(d, "name");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(d, "activations");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(d, "weights");
    int sc = 0, rq = 0;
    if (!cJSON_IsString(schema) || strcmp(schema->valuestring, "qtool-profile"))
        bad(err, src, "\"schema\" must be \"qtool-profile\"");
    else if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) >= sizeof q->profile)
        bad(err, src, "\"name\" must be a string of 1 to 63 characters");
    else if ((a && !cJSON_IsObject(a)) || (w && !cJSON_IsObject(w)))
        bad(err, src, "\"activations\" and \"weights\" must be objects");
    else if (a && str_in(a, "dtype", dtypes, &n.act_signed))
        bad(err, src, "activations.dtype is uint8 or int8");
    else if (w && str_in(w, "granularity", gran, &n.per_channel))
        bad(err, src, "weights.granularity is per_tensor or per_channel");
    else if (w && (bool_in(w, "narrow_range", &n.narrow) || bool_in(w, "reduce_range", &n.reduce_range)))
        bad(err, src, "weights.narrow_range and weights.reduce_range are true or false");
    else if (str_in(d, "scales", scales, &sc))
        bad(err, src, "\"scales\" is float or pow2");
    else if (str_in(d, "requantization", requant, &rq))
        bad(err, src, "\"requantization\" is float, shift or multiplier_shift");
    else if (sc == 1 && !n.act_signed)
        bad(err, src, "power-of-two scales need int8 symmetric activations");
    else if (rq == 1 && sc != 1)
        bad(err, src, "\"requantization\": \"shift\" needs \"scales\": \"pow2\"");
    if (!err->code) {
        snprintf(n.profile, sizeof n.profile, "%s", name->valuestring);
        n.pow2_scales = sc == 1;
        n.int_requant = rq;
        *q = n;
    }
    cJSON_Delete(d);
    return err->code;
}

int qt_profile_apply(struct qt_quant_opts *q, const char *arg, struct qt_err *err) {
    for (int i = 0; i < NBUILTIN; i++)
        if (!strcmp(arg, builtins[i].name))
            return apply_json(q, arg, builtins[i].json, strlen(builtins[i].json), err);
    if (!strchr(arg, '/') && !strstr(arg, ".json")) {
        char names[256] = "";
        for (int i = 0; i < NBUILTIN; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", builtins[i].name);
        return qt_errf(err, QT_EUSAGE, "unknown profile '%s' (built in: %s; or a FILE.json)", arg, names);
    }
    void *buf;
    size_t len;
    if (qt_read_file(arg, 1 << 20, &buf, &len, err))
        return err->code;
    int rc = apply_json(q, arg, buf, len, err);
    free(buf);
    return rc;
}

void qt_qplan_pow2(struct qt_qplan *p) {
    if (!p->o.pow2_scales)
        return;
    for (int t = 0; t < p->nt; t++) {
        struct qt_qparam *q = &p->t[t].q;
        if (q->role == QT_ROLE_BIAS || !q->scale)
            continue;
        for (int c = 0; c < q->n; c++) {
            double s = q->scale[c];
            if (!(s > 0) || !isfinite(s))
                continue;
            /* up, so the chosen range stays representable */
            q->scale[c] = (float)ldexp(1.0, (int)ceil(log2(s)));
            if (q->symmetric)
                q->zp[c] = 0;
        }
    }
}

void qt_requant_fixed(double m, int32_t *mult, int *shift) {
    int e;
    *mult = 0;
    *shift = 0;
    if (!(m > 0) || !isfinite(m))
        return;
    double f = frexp(m, &e); /* m = f 2^e, f in [0.5, 1) */
    int64_t q = (int64_t)llround(f * 2147483648.0);
    if (q == ((int64_t)1 << 31)) {
        q >>= 1;
        e++;
    }
    *mult = (int32_t)q;
    *shift = 31 - e;
}
