/* opt.c: option tables, number parsing, error printing. */
#include "cli.h"
#include "quant/quant.h"

#include <cJSON.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A whole-number cap that is a power of two of 2^30 or more (1L << 30) is a
 * sanity bound, not a real limit: shown as ">= lo". */
static int open_ended(const struct opt *o) {
    return o->kind == OPTK_INT && o->hi >= 0x1p30 && o->hi == exp2(floor(log2(o->hi)));
}

/* An option's range as --help shows it: "1..4096", ">= 1", "(0, 1)". */
static const char *range_text(const struct opt *o, char *buf, size_t len) {
    buf[0] = 0;
    if (open_ended(o))
        snprintf(buf, len, ">= %.0f", o->lo);
    else if (o->kind == OPTK_INT)
        snprintf(buf, len, "%.0f..%.0f", o->lo, o->hi);
    else if (o->kind == OPTK_FLOAT)
        snprintf(buf, len, "%c%g, %g%c", o->flags & OPT_LO_OPEN ? '(' : '[', o->lo, o->hi,
                 o->flags & OPT_HI_OPEN ? ')' : ']');
    return buf;
}

void opt_usage(FILE *f, const char *cmd, const char *synopsis, const struct opt *opts) {
    fprintf(f, "usage: qtool %s %s\n\n", cmd, synopsis);
    for (const struct opt *o = opts; o->kind != OPTK_END; o++) {
        char left[64], range[64];
        if (o->id)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->id, o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        /* at least two spaces before the help: scripts/gen-completion.sh reads the argument up to them */
        const char *sep = strlen(left) >= 28 ? "  " : " ";
        range_text(o, range, sizeof range);
        if (range[0] && o->kind == OPTK_INT)
            fprintf(f, "  %-28s%s%s [%s]\n", left, sep, o->help, range);
        else if (range[0])
            fprintf(f, "  %-28s%s%s %s\n", left, sep, o->help, range);
        else
            fprintf(f, "  %-28s%s%s\n", left, sep, o->help);
    }
}

/* A choice: the index of arg among the '|'-separated names, or -1. */
static int choice_index(const char *names, const char *arg) {
    size_t n = strlen(arg);
    int i = 0;
    for (const char *p = names;; i++) {
        size_t k = strcspn(p, "|");
        if (k == n && !strncmp(p, arg, n))
            return i;
        if (!p[k])
            return -1;
        p += k + 1;
    }
}

/* "a, b or c" from "a|b|c" */
static const char *choice_text(const char *names, char *buf, size_t len) {
    size_t n = 0;
    const char *last = strrchr(names, '|');
    buf[0] = 0;
    for (const char *p = names; *p && n + 4 < len; p++) {
        if (*p != '|') {
            buf[n++] = *p;
        } else if (p == last) {
            n += (size_t)snprintf(buf + n, len - n, " or ");
        } else {
            buf[n++] = ',';
            buf[n++] = ' ';
        }
        buf[n < len ? n : len - 1] = 0;
    }
    return buf;
}

/* Converts, checks and stores one option's value: 0 or the exit status. */
static int opt_store(const char *cmd, const struct opt *o, const char *arg) {
    char buf[256];
    switch (o->kind) {
    case OPTK_SET: *(int *)o->dst = o->val; return 0;
    case OPTK_STRING:
        if (o->dst)
            *(const char **)o->dst = arg;
        return 0;
    case OPTK_CALLBACK: return o->cb(cmd, o->dst, arg);
    case OPTK_CHOICE: {
        int i = choice_index(o->arg, arg);
        if (i < 0)
            return cli_usage(cmd, "--%s is %s, not '%s'", o->name, choice_text(o->arg, buf, sizeof buf), arg);
        *(int *)o->dst = o->vals ? o->vals[i] : i;
        return 0;
    }
    case OPTK_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(arg, &end, 10);
        if (errno || end == arg || *end || (double)v < o->lo || (double)v > o->hi) {
            range_text(o, buf, sizeof buf);
            return cli_usage(cmd, "--%s takes a whole number %s%s, not '%s'", o->name, open_ended(o) ? "" : "in ",
                             buf, arg);
        }
        if (o->size == sizeof(int))
            *(int *)o->dst = (int)v;
        else
            *(int64_t *)o->dst = (int64_t)v;
        return 0;
    }
    case OPTK_FLOAT: {
        double d;
        int lo_ok, hi_ok;
        if (!cli_float(arg, &d)) {
            lo_ok = o->flags & OPT_LO_OPEN ? d > o->lo : d >= o->lo;
            hi_ok = o->flags & OPT_HI_OPEN ? d < o->hi : d <= o->hi;
            if (lo_ok && hi_ok) {
                if (o->size == sizeof(float))
                    *(float *)o->dst = (float)d;
                else
                    *(double *)o->dst = d;
                return 0;
            }
        }
        return cli_usage(cmd, "--%s takes a number in %s, not '%s'", o->name, range_text(o, buf, sizeof buf), arg);
    }
    default: return cli_usage(cmd, "--%s: not a value option", o->name);
    }
}

int opt_parse(const char *cmd, const char *synopsis, const struct opt *opts, int argc, char **argv,
              const char **model) {
    struct option longs[160];
    char shorts[160];
    int n = 0, s = 0, c;
    for (const struct opt *o = opts; o->kind != OPTK_END; o++, n++) {
        if (n >= 159 || s >= 156)
            return cli_usage(cmd, "too many options in the table"); /* a programmer's error */
        longs[n] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL, 256 + n};
        if (o->id) {
            shorts[s++] = (char)o->id;
            if (o->arg)
                shorts[s++] = ':';
        }
    }
    longs[n] = (struct option){0, 0, 0, 0};
    shorts[s] = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        const struct opt *o = NULL;
        if (c >= 256 && c < 256 + n)
            o = &opts[c - 256];
        for (int i = 0; !o && c > 0 && c < 256 && i < n; i++)
            if (opts[i].id == c)
                o = &opts[i];
        if (!o)
            return cli_usage(cmd, "unknown option");
        if (o->kind == OPTK_HELP) {
            opt_usage(stdout, cmd, synopsis, opts);
            return -1;
        }
        int rc = opt_store(cmd, o, optarg);
        if (rc)
            return rc;
    }
    if (optind != argc - 1)
        return cli_usage(cmd, "expects one model file");
    *model = argv[optind];
    return 0;
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

const int cli_kfl_vals[2] = {8, -1}, cli_wobs_vals[3] = {-1, 0, 1};

/* --weight-budget, --act-budget */
static int budget(const char *cmd, const char *name, struct qt_budget *b, const char *arg) {
    struct qt_err err = {0};
    if (qt_budget_parse(arg, name, b, &err))
        return cli_usage(cmd, "%s", err.msg);
    return 0;
}

int cli_q_wbudget(const char *cmd, void *q, const char *arg) {
    return budget(cmd, "--weight-budget", &((struct qt_quant_opts *)q)->weight_budget, arg);
}

int cli_q_abudget(const char *cmd, void *q, const char *arg) {
    return budget(cmd, "--act-budget", &((struct qt_quant_opts *)q)->act_budget, arg);
}

int cli_q_profile(const char *cmd, void *q, const char *arg) {
    struct qt_err err = {0};
    if (!qt_profile_apply(q, arg, &err))
        return 0;
    if (err.code == QT_EUSAGE)
        return cli_usage(cmd, "%s", err.msg);
    fprintf(stderr, "qtool %s: error: %s\n", cmd, err.msg);
    return QT_EDATA; /* a bad --profile file */
}

const char *cli_qinfo_path(const char *out, char *buf, size_t len) {
    return qt_path_with_ext(out, ".onnx", ".json", buf, len);
}

int cli_pp_preset(const char *cmd, void *pp, const char *arg) {
    struct cli_pp *p = pp;
    struct qt_err err = {0};
    if (qt_preproc_preset(&p->pp, arg, &err))
        return cli_usage(cmd, "%s", err.msg);
    if (p->pp.channels == 1)
        p->set_channels = 1;
    return 0;
}

static int size_arg(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 65536)
        return -1;
    *out = v;
    return 0;
}

/* --resize N (shorter side; 0: none) or HxW (exactly) */
int cli_pp_resize(const char *cmd, void *pp, const char *arg) {
    struct cli_pp *p = pp;
    long h = 0, w = 0;
    char a[64], *x;
    snprintf(a, sizeof a, "%s", arg);
    x = strchr(a, 'x');
    if (x)
        *x = 0;
    if (x ? size_arg(a, &h) || size_arg(x + 1, &w) : strcmp(a, "0") && size_arg(a, &h))
        return cli_usage(cmd, "--resize takes N or HxW in pixels (1..65536), not '%s'", arg);
    p->pp.resize = x ? 0 : (int)h;
    p->pp.resize_h = x ? (int)h : 0;
    p->pp.resize_w = x ? (int)w : 0;
    return 0;
}

int cli_pp_crop(const char *cmd, void *pp, const char *arg) {
    struct cli_pp *p = pp;
    long h, w;
    char a[64], *x;
    snprintf(a, sizeof a, "%s", arg);
    x = strchr(a, 'x');
    if (x)
        *x = 0;
    if (size_arg(a, &h) || (x && size_arg(x + 1, &w)))
        return cli_usage(cmd, "--crop takes N or HxW (1..65536), not '%s'", arg);
    p->pp.crop_h = (int)h;
    p->pp.crop_w = x ? (int)w : (int)h;
    return 0;
}

/* --mean, --std: one value for every channel or three */
static int per_channel(const char *cmd, const char *name, const char *arg, float *dst, int positive) {
    float f[3];
    int n = cli_floats(arg, f, 3);
    if (n != 1 && n != 3)
        return cli_usage(cmd, "--%s takes one or three numbers, not '%s'", name, arg);
    for (int i = 0; i < 3; i++) {
        float val = f[n == 1 ? 0 : i];
        if (positive && !(val > 0))
            return cli_usage(cmd, "--%s values must be positive", name);
        dst[i] = val;
    }
    return 0;
}

int cli_pp_mean(const char *cmd, void *pp, const char *arg) {
    return per_channel(cmd, "mean", arg, ((struct cli_pp *)pp)->pp.mean, 0);
}

int cli_pp_std(const char *cmd, void *pp, const char *arg) {
    return per_channel(cmd, "std", arg, ((struct cli_pp *)pp)->pp.std, 1);
}

int cli_pp_scale(const char *cmd, void *pp, const char *arg) {
    double d;
    if (cli_float(arg, &d) || d == 0)
        return cli_usage(cmd, "--scale takes a non-zero number, not '%s'", arg);
    ((struct cli_pp *)pp)->pp.scale = (float)d;
    return 0;
}

/* --rgb, --bgr, --gray */
static int channels(void *pp, int n, int bgr) {
    struct cli_pp *p = pp;
    p->pp.channels = n;
    if (n == 3)
        p->pp.bgr = bgr;
    p->set_channels = 1;
    return 0;
}

int cli_pp_rgb(const char *cmd, void *pp, const char *arg) {
    (void)cmd, (void)arg;
    return channels(pp, 3, 0);
}

int cli_pp_bgr(const char *cmd, void *pp, const char *arg) {
    (void)cmd, (void)arg;
    return channels(pp, 3, 1);
}

int cli_pp_gray(const char *cmd, void *pp, const char *arg) {
    (void)cmd, (void)arg;
    return channels(pp, 1, 0);
}


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

static const struct opt *opt_find(const struct opt *opts, const char *name) {
    for (const struct opt *o = opts; o->kind != OPTK_END; o++)
        if (!strcmp(o->name, name))
            return o;
    return NULL;
}

/* argv[1..argc) parsed into opts' destinations, then run(ctx) */
static int parse_run(const char *cmd, const char *synopsis, const struct opt *opts, int argc, char **argv,
                     const char **model, int (*run)(void *ctx), void *ctx) {
    int rc = opt_parse(cmd, synopsis, opts, argc, argv, model);
    return rc < 0 ? 0 : rc ? rc : run(ctx);
}

/* The --config file's JSON object into *doc: 0, or the exit status (message printed). */
static int config_read(const char *cmd, const char *path, cJSON **doc) {
    struct qt_err err = {0};
    void *buf;
    size_t len;
    if (qt_read_file(path, 16 << 20, &buf, &len, &err))
        return cli_usage(cmd, "--config: %s", err.msg);
    *doc = cJSON_ParseWithLength(buf, len);
    if (!*doc) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= (const char *)buf && at <= (const char *)buf + len ? (long)(at - (const char *)buf) : -1;
        free(buf);
        qt_errf(&err, QT_EDATA, "--config: '%s' is not valid JSON (near byte %ld)", path, off);
        return cli_fail(cmd, &err);
    }
    free(buf);
    if (!cJSON_IsObject(*doc)) {
        cJSON_Delete(*doc);
        *doc = NULL;
        return cli_usage(cmd, "--config: '%s' is not a JSON object", path);
    }
    return 0;
}

/* One --config key as a command-line argument into *a (malloc'd; NULL: the
 * key adds none): 0, or the exit status (message printed). Quantization
 * settings are skipped by commands that have none (eval), so one file
 * serves a model's calib and eval runs. */
static int config_arg(const char *cmd, const char *path, const struct opt *opts, const cJSON *it, char **a) {
    struct qt_quant_opts dummy;
    const struct opt quant_opts[] = {CLI_QUANT_OPTS(&dummy), OPT_END()};
    const char *k = it->string;
    char val[4096];
    *a = NULL;
    if (!strcmp(k, "layers"))
        return 0; /* per-layer settings: the library reads them from the same file */
    const struct opt *o = opt_find(opts, k);
    if (!o && opt_find(quant_opts, k))
        return 0;
    if (!o || !strcmp(k, "config") || !strcmp(k, "help"))
        return cli_usage(cmd, "--config: '%s' sets \"%s\", which is not an option of qtool %s", path, k, cmd);
    if (!o->arg) {
        if (!cJSON_IsBool(it))
            return cli_usage(cmd, "--config: '%s': \"%s\" is a flag: true or false", path, k);
        if (cJSON_IsFalse(it))
            return 0;
        if ((*a = malloc(strlen(k) + 3)))
            sprintf(*a, "--%s", k);
    } else {
        if (config_value(it, val, sizeof val))
            return cli_usage(cmd, "--config: '%s': \"%s\" takes a string, a number or a list of them", path, k);
        if ((*a = malloc(strlen(k) + strlen(val) + 4)))
            sprintf(*a, "--%s=%s", k, val);
    }
    return *a ? 0 : cli_usage(cmd, "out of memory");
}

int cli_main(const char *cmd, const char *synopsis, const struct opt *opts, int argc, char **argv,
             const char **model, int (*run)(void *ctx), void *ctx) {
    const char *path = NULL;
    cJSON *doc = NULL;
    for (int i = 1; opt_find(opts, "config") && i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            path = argv[i] + 9;
    }
    if (!path)
        return parse_run(cmd, synopsis, opts, argc, argv, model, run, ctx);
    int rc = config_read(cmd, path, &doc);
    if (rc)
        return rc;
    int n = cJSON_GetArraySize(doc), na = 1, nowned = 0;
    char **av = calloc((size_t)(argc + n + 1), sizeof *av);
    char **owned = calloc((size_t)n + 1, sizeof *owned);
    if (!av || !owned) {
        rc = cli_usage(cmd, "out of memory");
        goto out;
    }
    av[0] = argv[0];
    const cJSON *it;
    cJSON_ArrayForEach(it, doc) {
        char *a;
        if ((rc = config_arg(cmd, path, opts, it, &a)))
            goto out;
        if (a)
            av[na++] = owned[nowned++] = a;
    }
    for (int i = 1; i < argc; i++)
        av[na++] = argv[i];
    av[na] = NULL;
    rc = parse_run(cmd, synopsis, opts, na, av, model, run, ctx);
out:
    for (int i = 0; owned && i < nowned; i++)
        free(owned[i]);
    free(owned);
    free(av);
    cJSON_Delete(doc);
    return rc;
}
