/* opt.c: option tables, number parsing, error printing. */
#include "cli.h"
#include "quant/quant.h"

#include <cJSON.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void opt_build(const struct opt *opts, struct optparse *p) {
    int n = 0, s = 0;
    memset(p, 0, sizeof *p);
    for (const struct opt *o = opts; o->name && n < 127; o++, n++) {
        p->longs[n].name = o->name;
        p->longs[n].has_arg = o->arg ? required_argument : no_argument;
        p->longs[n].flag = NULL;
        p->longs[n].val = o->id;
        if (o->id > 0 && o->id < 128 && s < 250) {
            p->shorts[s++] = (char)o->id;
            if (o->arg)
                p->shorts[s++] = ':';
        }
    }
}

void opt_usage(FILE *f, const char *cmd, const char *synopsis, const struct opt *opts) {
    fprintf(f, "usage: qtool %s %s\n\n", cmd, synopsis);
    for (const struct opt *o = opts; o->name; o++) {
        char left[64];
        if (o->id > 0 && o->id < 128)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->id, o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-28s %s\n", left, o->help);
    }
}

int cli_fail(const char *cmd, const struct qt_err *err) {
    fprintf(stderr, "qtool %s: error: %s\n", cmd, err->msg[0] ? err->msg : "unknown error");
    return err->code ? err->code : 1;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "qtool %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'qtool %s --help'.\n", cmd);
    return QT_EUSAGE;
}

int cli_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_float(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int cli_floats(const char *s, float *v, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double d = strtod(p, &end);
        if (errno || end == p || !isfinite(d) || n >= max)
            return -1;
        v[n++] = (float)d;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return n;
}

void cli_pp_init(struct cli_pp *p) {
    memset(p, 0, sizeof *p);
    qt_preproc_default(&p->pp);
}

static int bits_arg(const char *cmd, const char *name, const char *arg, int *out) {
    long v;
    if (cli_int(arg, 2, 8, &v)) {
        cli_usage(cmd, "--%s takes a number from 2 to 8, not '%s'", name, arg);
        return 2;
    }
    *out = (int)v;
    return 0;
}

int cli_quant_option(const char *cmd, struct qt_quant_opts *q, int id, const char *arg) {
    double d;
    switch (id) {
    case OPT_OBS:
        if (qt_obs_parse(arg, &q->observer)) {
            cli_usage(cmd, "--observer is one of minmax, ema, percentile, entropy, mse, not '%s'", arg);
            return 2;
        }
        return 0;
    case OPT_PCT:
        if (cli_float(arg, &d) || d <= 50 || d > 100) {
            cli_usage(cmd, "--percentile takes a number in (50, 100], not '%s'", arg);
            return 2;
        }
        q->percentile = d;
        return 0;
    case OPT_WBITS: return bits_arg(cmd, "wbits", arg, &q->wbits);
    case OPT_ABITS: return bits_arg(cmd, "abits", arg, &q->abits);
    case OPT_PERTENSOR: q->per_channel = 0; return 0;
    case OPT_NARROW: q->narrow = 1; return 0;
    case OPT_ACTDT:
        if (strcmp(arg, "uint8") && strcmp(arg, "int8")) {
            cli_usage(cmd, "--act-dtype is uint8 or int8, not '%s'", arg);
            return 2;
        }
        q->act_signed = !strcmp(arg, "int8");
        return 0;
    case OPT_REDUCE: q->reduce_range = 1; return 0;
    case OPT_EXCL: q->exclude = arg; return 0;
    case OPT_EXCLOP: q->exclude_ops = arg; return 0;
    case OPT_CONFIG: q->config = arg; return 0;
    case OPT_KFL:
        if (!strcmp(arg, "8")) {
            q->keep_first_last = 8;
        } else if (!strcmp(arg, "float")) {
            q->keep_first_last = -1;
        } else {
            cli_usage(cmd, "--keep-first-last is 8 or float, not '%s'", arg);
            return 2;
        }
        return 0;
    case OPT_NOFOLD: q->fold_bn = 0; return 0;
    case OPT_NOFUSE: q->fuse_act = 0; return 0;
    case OPT_CLE: q->cle = 1; return 0;
    case OPT_NOCLE: q->cle = 0; return 0;
    case OPT_PROFILE: {
        struct qt_err err = {0};
        if (qt_profile_apply(q, arg, &err)) {
            if (err.code == QT_EUSAGE) {
                cli_usage(cmd, "%s", err.msg);
                return 2;
            }
            fprintf(stderr, "qtool %s: error: %s\n", cmd, err.msg);
            return 3;
        }
        return 0;
    }
    }
    return 1;
}

/* --weight-budget, --act-budget, --mixed, --mixed-images, --pack */
static int cli_mixed_option(const char *cmd, struct qt_quant_opts *q, int id, const char *arg) {
    struct qt_err err = {0};
    long v;
    switch (id) {
    case OPT_WBUDGET:
    case OPT_ABUDGET:
        if (qt_budget_parse(arg, id == OPT_WBUDGET ? "--weight-budget" : "--act-budget",
                            id == OPT_WBUDGET ? &q->weight_budget : &q->act_budget, &err)) {
            cli_usage(cmd, "%s", err.msg);
            return 2;
        }
        return 0;
    case OPT_MIXED:
        if (strcmp(arg, "per-layer") && strcmp(arg, "per-channel")) {
            cli_usage(cmd, "--mixed is per-layer or per-channel, not '%s'", arg);
            return 2;
        }
        q->mixed = !strcmp(arg, "per-channel") ? QT_MIXED_CHANNEL : QT_MIXED_LAYER;
        return 0;
    case OPT_MIXIMG:
        if (cli_int(arg, 1, 4096, &v)) {
            cli_usage(cmd, "--mixed-images takes a number from 1 to 4096, not '%s'", arg);
            return 2;
        }
        q->mixed_images = (int)v;
        return 0;
    case OPT_PACK: q->pack = 1; return 0;
    }
    return 1;
}

int cli_quant_pp_option(const char *cmd, struct qt_quant_opts *q, struct cli_pp *pp, int id, const char *arg) {
    int k = id >= OPT_Q_FIRST && id < OPT_Q_LAST     ? cli_quant_option(cmd, q, id, arg)
            : id >= OPT_MX_FIRST && id < OPT_MX_LAST ? cli_mixed_option(cmd, q, id, arg)
                                                     : cli_pp_option(cmd, pp, id, arg);
    if (k == 2)
        return QT_EUSAGE;
    if (k == 3)
        return QT_EDATA; /* a bad --profile file (message printed) */
    if (k == 1)
        return cli_usage(cmd, "unknown option");
    return 0;
}

const char *cli_qinfo_path(const char *out, char *buf, size_t len) {
    return qt_path_with_ext(out, ".onnx", ".json", buf, len);
}

int cli_pp_option(const char *cmd, struct cli_pp *p, int id, const char *arg) {
    struct qt_err err = {0};
    long v;
    double d;
    float f[3];
    int n;
    switch (id) {
    case OPT_PRESET:
        if (qt_preproc_preset(&p->pp, arg, &err)) {
            cli_usage(cmd, "%s", err.msg);
            return 2;
        }
        if (p->pp.channels == 1)
            p->set_channels = 1;
        return 0;
    case OPT_RESIZE:
        if (cli_int(arg, 0, 65536, &v)) {
            cli_usage(cmd, "--resize takes a size in pixels, not '%s'", arg);
            return 2;
        }
        p->pp.resize = (int)v;
        return 0;
    case OPT_CROP: {
        long h, w;
        char a[64], *x;
        snprintf(a, sizeof a, "%s", arg);
        x = strchr(a, 'x');
        if (x)
            *x = 0;
        if (cli_int(a, 1, 65536, &h) || (x && cli_int(x + 1, 1, 65536, &w))) {
            cli_usage(cmd, "--crop takes N or HxW, not '%s'", arg);
            return 2;
        }
        p->pp.crop_h = (int)h;
        p->pp.crop_w = x ? (int)w : (int)h;
        return 0;
    }
    case OPT_MEAN:
    case OPT_STD:
        n = cli_floats(arg, f, 3);
        if (n != 1 && n != 3) {
            cli_usage(cmd, "--%s takes one or three numbers, not '%s'", id == OPT_MEAN ? "mean" : "std", arg);
            return 2;
        }
        for (int i = 0; i < 3; i++) {
            float val = f[n == 1 ? 0 : i];
            if (id == OPT_STD && !(val > 0)) {
                cli_usage(cmd, "--std values must be positive");
                return 2;
            }
            (id == OPT_MEAN ? p->pp.mean : p->pp.std)[i] = val;
        }
        return 0;
    case OPT_SCALE:
        if (cli_float(arg, &d) || d == 0) {
            cli_usage(cmd, "--scale takes a non-zero number, not '%s'", arg);
            return 2;
        }
        p->pp.scale = (float)d;
        return 0;
    case OPT_RGB:
        p->pp.channels = 3;
        p->pp.bgr = 0;
        p->set_channels = 1;
        return 0;
    case OPT_BGR:
        p->pp.channels = 3;
        p->pp.bgr = 1;
        p->set_channels = 1;
        return 0;
    case OPT_GRAY:
        p->pp.channels = 1;
        p->set_channels = 1;
        return 0;
    case OPT_CLASSES:
        p->classes = arg;
        return 0;
    }
    return 1;
}

/* Quantization settings in a --config file are skipped by commands that
 * have none (eval), so one file serves a model's calib and eval runs. */
static const struct opt quant_opts[] = {CLI_QUANT_OPTS, {0, NULL, NULL, NULL}};

/* One --config value as the text a command-line option would carry. */
static int config_value(const cJSON *v, char *buf, size_t len) {
    if (cJSON_IsString(v))
        return snprintf(buf, len, "%s", v->valuestring) >= (int)len ? -1 : 0;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == (double)(long long)d)
            snprintf(buf, len, "%lld", (long long)d);
        else
            snprintf(buf, len, "%.17g", d);
        return 0;
    }
    if (cJSON_IsArray(v)) { /* --mean [0.5, 0.5, 0.5], --exclude ["a", "b"] */
        size_t n = 0;
        const cJSON *e;
        buf[0] = 0;
        cJSON_ArrayForEach(e, v) {
            char one[256];
            if (cJSON_IsArray(e) || config_value(e, one, sizeof one))
                return -1;
            int k = snprintf(buf + n, len - n, "%s%s", n ? "," : "", one);
            if (k < 0 || (size_t)k >= len - n)
                return -1;
            n += (size_t)k;
        }
        return 0;
    }
    return -1;
}

int cli_run_config(const char *cmd, const struct opt *opts, int argc, char **argv,
                   int (*fn)(int argc, char **argv, void *ctx), void *ctx) {
    const char *path = NULL;
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            path = argv[i] + 9;
    }
    if (!path)
        return fn(argc, argv, ctx);
    struct qt_err err = {0};
    void *buf;
    size_t len;
    if (qt_read_file(path, 16 << 20, &buf, &len, &err))
        return cli_usage(cmd, "--config: %s", err.msg);
    cJSON *doc = cJSON_ParseWithLength(buf, len);
    if (!doc) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= (const char *)buf && at <= (const char *)buf + len ? (long)(at - (const char *)buf) : -1;
        free(buf);
        qt_errf(&err, QT_EDATA, "--config: '%s' is not valid JSON (near byte %ld)", path, off);
        return cli_fail(cmd, &err);
    }
    free(buf);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return cli_usage(cmd, "--config: '%s' is not a JSON object", path);
    }
    int n = cJSON_GetArraySize(doc), na = 1, rc = 0;
    char **av = calloc((size_t)(argc + n + 1), sizeof *av);
    char **owned = calloc((size_t)n + 1, sizeof *owned);
    int nowned = 0;
    if (!av || !owned) {
        rc = cli_usage(cmd, "out of memory");
        goto out;
    }
    av[0] = argv[0];
    const cJSON *it;
    cJSON_ArrayForEach(it, doc) {
        const char *k = it->string;
        const struct opt *o;
        if (!strcmp(k, "layers"))
            continue; /* per-layer settings: the library reads them from the same file */
        for (o = opts; o->name && strcmp(o->name, k); o++)
            ;
        if (!o->name) {
            const struct opt *q;
            for (q = quant_opts; q->name && strcmp(q->name, k); q++)
                ;
            if (q->name)
                continue;
        }
        if (!o->name || !strcmp(k, "config") || !strcmp(k, "help")) {
            rc = cli_usage(cmd, "--config: '%s' sets \"%s\", which is not an option of qtool %s", path, k, cmd);
            goto out;
        }
        char val[4096], *a;
        if (!o->arg) {
            if (!cJSON_IsBool(it)) {
                rc = cli_usage(cmd, "--config: '%s': \"%s\" is a flag: true or false", path, k);
                goto out;
            }
            if (cJSON_IsFalse(it))
                continue;
            a = malloc(strlen(k) + 3);
            if (a)
                sprintf(a, "--%s", k);
        } else {
            if (config_value(it, val, sizeof val)) {
                rc = cli_usage(cmd, "--config: '%s': \"%s\" takes a string, a number or a list of them", path,
                               k);
                goto out;
            }
            a = malloc(strlen(k) + strlen(val) + 4);
            if (a)
                sprintf(a, "--%s=%s", k, val);
        }
        if (!a) {
            rc = cli_usage(cmd, "out of memory");
            goto out;
        }
        owned[nowned++] = a;
        av[na++] = a;
    }
    for (int i = 1; i < argc; i++)
        av[na++] = argv[i];
    av[na] = NULL;
    rc = fn(na, av, ctx);
out:
    for (int i = 0; owned && i < nowned; i++)
        free(owned[i]);
    free(owned);
    free(av);
    cJSON_Delete(doc);
    return rc;
}
