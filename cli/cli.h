/* cli.h: what the subcommands share: the option table that yields both
 * getopt_long's struct option[] and the --help text, and error printing. */
#ifndef QT_CLI_H
#define QT_CLI_H
#include "qtool.h"

#include <getopt.h>
#include <stdio.h>

/* The typed option table (in the spirit of git's parse-options): each entry
 * names its kind, its destination, its range and its help; opt_parse()
 * converts, range-checks and stores every value, and opt_usage() prints the
 * help with the ranges. A table lives in the function that owns the
 * destinations and ends with OPT_END(). */
enum opt_kind {
    OPTK_END,
    OPTK_SET,      /* flag: *(int *)dst = val */
    OPTK_INT,      /* whole number in [lo, hi] into an int or a 64-bit integer (by size) */
    OPTK_FLOAT,    /* finite number in lo..hi (ends open by flags) into a float or a double (by size) */
    OPTK_STRING,   /* *(const char **)dst = the argument; dst NULL: accepted and ignored */
    OPTK_CHOICE,   /* one of the '|'-separated names in arg: *(int *)dst = vals[i] (or i) */
    OPTK_CALLBACK, /* cb(cmd, dst, arg): 0, or the exit status with the message printed */
    OPTK_HELP,
};
enum { OPT_LO_OPEN = 1, OPT_HI_OPEN = 2 };

struct opt {
    int id;            /* short letter, or 0 */
    const char *name;  /* long name */
    const char *arg;   /* argument name, NULL for a flag; for a choice the names "a|b|c" */
    const char *help;
    enum opt_kind kind;
    void *dst;
    size_t size;       /* sizeof *dst (INT, FLOAT) */
    double lo, hi;     /* range (INT, FLOAT) */
    int flags;         /* OPT_LO_OPEN, OPT_HI_OPEN (FLOAT) */
    int val;           /* OPTK_SET */
    const int *vals;   /* OPTK_CHOICE: value of each name (NULL: its index) */
    int (*cb)(const char *cmd, void *dst, const char *arg);
};

#define OPT_END() {0, NULL, NULL, NULL, OPTK_END, NULL, 0, 0, 0, 0, 0, NULL, NULL}
#define OPT_SET_INT(s, l, d, v, h) {.id = (s), .name = (l), .help = (h), .kind = OPTK_SET, .dst = (d), .val = (v)}
#define OPT_BOOL(s, l, d, h) OPT_SET_INT(s, l, d, 1, h)
#define OPT_INTEGER(s, l, a, d, lo_, hi_, h)                                                                   \
    {.id = (s), .name = (l), .arg = (a), .help = (h), .kind = OPTK_INT, .dst = (d), .size = sizeof *(d),      \
     .lo = (double)(lo_), .hi = (double)(hi_)}
#define OPT_FLOAT_RANGE(s, l, a, d, lo_, hi_, fl, h)                                                          \
    {.id = (s), .name = (l), .arg = (a), .help = (h), .kind = OPTK_FLOAT, .dst = (d), .size = sizeof *(d),    \
     .lo = (lo_), .hi = (hi_), .flags = (fl)}
#define OPT_FLOAT(s, l, a, d, lo_, hi_, h) OPT_FLOAT_RANGE(s, l, a, d, lo_, hi_, 0, h)
#define OPT_STRING(s, l, a, d, h) {.id = (s), .name = (l), .arg = (a), .help = (h), .kind = OPTK_STRING, .dst = (d)}
#define OPT_CHOICE(s, l, names, d, v, h)                                                                      \
    {.id = (s), .name = (l), .arg = (names), .help = (h), .kind = OPTK_CHOICE, .dst = (d), .vals = (v)}
#define OPT_CALLBACK(s, l, a, d, fn, h)                                                                       \
    {.id = (s), .name = (l), .arg = (a), .help = (h), .kind = OPTK_CALLBACK, .dst = (d), .cb = (fn)}
#define OPT_HELP() {.id = 'h', .name = "help", .help = "show this help", .kind = OPTK_HELP}

void opt_usage(FILE *f, const char *cmd, const char *synopsis, const struct opt *opts);
/* Parses argv[1..argc) by opts into their destinations; --help prints the
 * usage to stdout. Returns 0 with the one positional argument (the model) in
 * *model, -1 after --help (exit 0), else the exit status (message printed:
 * the option and why). */
int opt_parse(const char *cmd, const char *synopsis, const struct opt *opts, int argc, char **argv,
              const char **model);

/* SIGINT and SIGTERM set cli_stop to the signal's number (polled through the
 * library's `stop` options) instead of killing the process; cli_stop_catch(0)
 * restores the defaults. The exit status after a stop is 128 + cli_stop. */
extern volatile int cli_stop;
void cli_stop_catch(int on);

/* Prints "qtool CMD: error: MSG" and returns the exit status for err. */
int cli_fail(const char *cmd, const struct qt_err *err);
/* Usage error: message, hint to --help, returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses numbers strictly; returns -1 on junk. */
int cli_float(const char *s, double *out);
/* Parses "a,b,c" floats into v (up to max); returns count or -1. */
int cli_floats(const char *s, float *v, int max);

/* Shared image-preprocessing options (eval, calib, finetune, qat) into a
 * struct cli_pp. set_channels records that the user chose the channels, so
 * model-derived defaults fill the rest. */
struct cli_pp {
    struct qt_preproc pp;
    int set_channels;
    const char *classes;
};
void cli_pp_init(struct cli_pp *p);
int cli_pp_preset(const char *cmd, void *pp, const char *arg);
int cli_pp_resize(const char *cmd, void *pp, const char *arg);
int cli_pp_crop(const char *cmd, void *pp, const char *arg);
int cli_pp_mean(const char *cmd, void *pp, const char *arg);
int cli_pp_std(const char *cmd, void *pp, const char *arg);
int cli_pp_scale(const char *cmd, void *pp, const char *arg);
int cli_pp_rgb(const char *cmd, void *pp, const char *arg);
int cli_pp_bgr(const char *cmd, void *pp, const char *arg);
int cli_pp_gray(const char *cmd, void *pp, const char *arg);
#define CLI_PREPROC_OPTS(p)                                                                                      \
    OPT_CALLBACK(0, "preset", "NAME", p, cli_pp_preset, "preprocessing preset: imagenet, imagenet-tf, mnist"),  \
    OPT_CALLBACK(0, "resize", "N|HxW", p, cli_pp_resize,                                                        \
                 "resize the shorter side to N, or to HxW (bilinear, antialiased as PIL)"),                     \
    OPT_CALLBACK(0, "crop", "N|HxW", p, cli_pp_crop, "center crop"),                                            \
    OPT_CALLBACK(0, "mean", "M[,M,M]", p, cli_pp_mean, "per-channel mean subtracted after scaling"),            \
    OPT_CALLBACK(0, "std", "S[,S,S]", p, cli_pp_std, "per-channel standard deviation divided by (> 0)"),        \
    OPT_CALLBACK(0, "scale", "F", p, cli_pp_scale, "pixel scale before mean/std (default 1/255; not 0)"),       \
    OPT_CALLBACK(0, "rgb", NULL, p, cli_pp_rgb, "feed channels in RGB order (default)"),                        \
    OPT_CALLBACK(0, "bgr", NULL, p, cli_pp_bgr, "feed channels in BGR order"),                                  \
    OPT_CALLBACK(0, "gray", NULL, p, cli_pp_gray, "feed one grey channel"),                                     \
    OPT_STRING(0, "classes", "FILE", &(p)->classes, "class names in model order, one per line (folder name -> label)")

/* Shared quantization-settings options (calib, finetune, qat) into a struct qt_quant_opts. */
extern const int cli_kfl_vals[2], cli_wobs_vals[3];
int cli_q_profile(const char *cmd, void *q, const char *arg);
#define CLI_QUANT_OPTS(q)                                                                                        \
    OPT_CALLBACK(0, "profile", "NAME|FILE.json", q, cli_q_profile,                                              \
                 "target: ort-x86 (default), ort-arm, tensorrt, pow2, int-only"),                               \
    OPT_CHOICE(0, "observer", "minmax|ema|percentile|entropy|mse", &(q)->observer, NULL,                        \
               "range observer (default percentile)"),                                                          \
    OPT_FLOAT_RANGE(0, "percentile", "P", &(q)->percentile, 50, 100, OPT_LO_OPEN,                               \
                    "percentile for --observer percentile (default 99.999 for 8-bit activations without "      \
                    "--cle, else 99.99)"),                                                                      \
    OPT_CHOICE(0, "weight-observer", "auto|minmax|mse", &(q)->weight_mse, cli_wobs_vals,                        \
               "weight steps from max |w|, clipped for the least squared error, or (default) below 8 bits "     \
               "the one with the higher output SQNR on the calibration images"),                               \
    OPT_INTEGER(0, "wbits", "N", &(q)->wbits, 2, 8, "weight bits (default 8)"),                                 \
    OPT_INTEGER(0, "abits", "N", &(q)->abits, 2, 8, "activation bits (default 8)"),                             \
    OPT_SET_INT(0, "per-tensor", &(q)->per_channel, 0, "one weight scale per tensor (default: per output channel)"), \
    OPT_BOOL(0, "narrow-range", &(q)->narrow, "weights in [-(2^(b-1)-1), 2^(b-1)-1] (no -128)"),                \
    OPT_CHOICE(0, "act-dtype", "uint8|int8", &(q)->act_signed, NULL,                                            \
               "activations uint8 asymmetric (default) or int8 symmetric"),                                     \
    OPT_BOOL(0, "reduce-range", &(q)->reduce_range, "weights one bit narrower (7 bits), for CPUs without VNNI"), \
    OPT_STRING(0, "exclude", "NODE[,..]", &(q)->exclude, "keep these nodes in float"),                          \
    OPT_STRING(0, "exclude-op", "TYPE[,..]", &(q)->exclude_ops, "keep nodes of these operator types in float"), \
    OPT_STRING(0, "config", "FILE.json", &(q)->config,                                                          \
               "per-layer settings: {\"layers\": {NODE: {wbits, abits, observer, ...}}}"),                       \
    OPT_CHOICE(0, "keep-first-last", "8|float", &(q)->keep_first_last, cli_kfl_vals,                            \
               "first conv and last layer at 8 bits or in float"),                                              \
    OPT_SET_INT(0, "no-fold-bn", &(q)->fold_bn, 0, "do not fold BatchNormalization into Conv/Gemm"),            \
    OPT_SET_INT(0, "no-fuse", &(q)->fuse_act, 0, "quantize between Conv/Gemm/Add and a following Relu/Clip"),   \
    OPT_SET_INT(0, "cle", &(q)->cle, 1, "cross-layer equalization first (default: with --per-tensor only)"),    \
    OPT_SET_INT(0, "no-cle", &(q)->cle, 0, "no cross-layer equalization"),                                     \
    CLI_MIXED_OPTS(q)
/* Mixed precision within a memory budget (calib, finetune, qat): part of CLI_QUANT_OPTS. */
int cli_q_wbudget(const char *cmd, void *q, const char *arg);
int cli_q_abudget(const char *cmd, void *q, const char *arg);
#define CLI_MIXED_OPTS(q)                                                                                        \
    OPT_CALLBACK(0, "weight-budget", "SIZE", q, cli_q_wbudget,                                                  \
                 "ROM for all weights, packed: bytes, KiB, MiB, or an average width (4bits)"),                  \
    OPT_CALLBACK(0, "act-budget", "SIZE", q, cli_q_abudget,                                                     \
                 "RAM for the activations alive at once at batch 1 (as --weight-budget)"),                      \
    OPT_CHOICE(0, "mixed", "per-layer|per-channel", &(q)->mixed, NULL,                                          \
               "what takes its own width within a budget (default per-layer)"),                                 \
    OPT_INTEGER(0, "mixed-images", "N", &(q)->mixed_images, 1, 4096,                                            \
                "calibration images the sensitivity is measured on (default 16)"),                              \
    OPT_BOOL(0, "pack", &(q)->pack, "write weights of 4 bits or fewer as ONNX INT4 (opset 21)")
/* OUT.onnx -> OUT.json (the default quant_info path) into buf. */
const char *cli_qinfo_path(const char *out, char *buf, size_t len);

/* --max-drop PCT, --eval-data DIR, --metric NAME, --max-raise N,
 * --sensitivity (calib, finetune, qat; cli/fallback.c) into a struct
 * qt_fallback_opts (initialised by the command's qt_*_opts_init). */
extern const int cli_metric_vals[3];
#define CLI_FALLBACK_OPTS(f)                                                                                     \
    OPT_FLOAT(0, "max-drop", "PCT", &(f)->max_drop, 0, 100,                                                      \
              "raise the precision of the layers that cost most until the drop is at most PCT"),                \
    OPT_STRING(0, "eval-data", "DIR", &(f)->eval_data,                                                           \
               "--max-drop's images (default: held back from the data, never calibrated or trained on)"),       \
    OPT_CHOICE(0, "metric", "top1|agreement|sqnr", &(f)->metric, cli_metric_vals,                               \
               "what --max-drop measures (default top1 when labeled, else agreement)"),                         \
    OPT_INTEGER(0, "max-raise", "N", &(f)->max_raise, 1, 1000000,                                                \
                "--max-drop raises at most the N most sensitive layers (default: any)"),                        \
    OPT_BOOL(0, "sensitivity", &(f)->sensitivity, "print every layer's sensitivity, worst first")
/* The checks that need all the options (--eval-data, --metric, --max-raise
 * without --max-drop; with `measures_nothing` (--dry-run, --no-quant: that
 * option's name) a measurement). 0, or the usage error printed (non-zero). */
int cli_fallback_check(const char *cmd, const struct qt_fallback_opts *f, const char *measures_nothing);
/* After a run: the sensitivity table (with f->sensitivity) and the search's
 * outcome (when it ran) as text on fp; out: the model written, for its size. */
void cli_fallback_report(FILE *fp, const struct qt_fallback_opts *f, const struct qt_sens_report *sens,
                         const struct qt_fallback *fb, const char *out);
/* (cli_fallback_fill_json, the same into a JSON summary: cli_json.h) */
/* The sensitivity table, worst first, and the search's outcome (out: the model written, for its size). */
void cli_sens_print(FILE *f, const struct qt_sens_report *r);
void cli_fallback_print(FILE *f, const struct qt_fallback *fb, const char *out);

/* The progress reporter (cli/progress.c): pass cli_progress_cb with a
 * struct cli_progress as the library's progress callback and user data. A
 * bar with rate and ETA when stderr is a terminal, else a line every 10% or
 * 5 s. A call with done below the previous one starts a new phase. */
struct cli_progress {
    const char *label, *unit;
    int tty, last_tenth, prev_done;
    double t0, last;
};
void cli_progress_init(struct cli_progress *p, const char *label, const char *unit);
void cli_progress_cb(void *ud, int done, int total);
/* Before a log line on f: erases a bar drawn on the terminal's current line. */
void cli_progress_clear(FILE *f);

/* The whole of a subcommand's option handling: --config FILE.json (when opts
 * has a "config" entry) carries long options by name ({"observer": "mse",
 * "wbits": 4, "mean": [0.5, 0.5, 0.5], "no-fold-bn": true}), placed before
 * the command line's so the command line wins; "layers" is left to the
 * library; quantization settings are skipped by commands without them
 * (eval). Then opt_parse() fills the destinations and *model, and run(ctx)
 * runs while the arguments are alive. Returns run's status, 0 after --help,
 * or 2 (message printed) for a bad file, an unknown key or a bad option. */
int cli_main(const char *cmd, const char *synopsis, const struct opt *opts, int argc, char **argv,
             const char **model, int (*run)(void *ctx), void *ctx);

/* A growing string for the report's HTML (cli/report.c): cli_sbf appends
 * printf-style, cli_sbe appends text with &, <, >, " escaped; oom is set
 * once an allocation fails and later calls do nothing. */
struct cli_sb {
    char *p;
    size_t len, cap;
    int oom;
};
void cli_sbf(struct cli_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_sbe(struct cli_sb *b, const char *s);

/* qtool eval --report --curve FILE.json: accuracy against weight size, one
 * point per quantized model (scripts/mixed-curve.sh writes the file). */
struct cli_curve_point {
    char series[32], label[128];
    int s; /* the series, numbered by first appearance */
    double bytes, bits, top1, agree, cpu_s; /* agree, cpu_s: NAN when absent */
};
struct cli_curve {
    char model[128];
    double float_top1; /* NAN when absent */
    int n, nseries;
    struct cli_curve_point *p;
};
/* Reads and checks FILE.json (cli/curve.c): 0, or QT_EDATA / QT_EFAIL with
 * a message that names the file and the point. */
int cli_curve_load(const char *path, struct cli_curve *c, struct qt_err *err);
void cli_curve_free(struct cli_curve *c);
/* The section "Accuracy against weight size": two charts and the table. */
void cli_curve_html(struct cli_sb *b, const struct cli_curve *c);

/* qtool eval --report: DIR/index.html (its path into path) with the charts
 * of rep, the histograms of the nworst lowest-SQNR tensors (cli/report.c). */
int cli_report_write(const char *dir, const struct qt_eval_opts *o, const struct qt_eval_result *r,
                     const struct qt_layer_report *rep, const struct cli_curve *curve, int nworst,
                     char *path, size_t pathlen, struct qt_err *err);
/* Before the run: DIR is a folder or can be made, and DIR/index.html can be
 * written (qt_out_check). */
int cli_report_check(const char *dir, struct qt_err *err);

int cmd_eval(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_calib(int argc, char **argv);
int cmd_qat(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* What calib and finetune share (cli/calib.c): their settings, the options
 * of both (finetune's own in cli/finetune.c) and the run. */
struct cli_calib {
    struct qt_calib_opts o;
    struct cli_pp pp;
    const char *json;
    int quiet;
    int bnre;  /* --bn-reestimate 1, --no-bn-reestimate 0, else -1 */
    double lr; /* finetune --lr; 0: the method's default */
    int try_corrections; /* calib --try-corrections */
};
void cli_calib_init(struct cli_calib *a, int finetune);
int cli_calib_run(void *ctx);
#define CLI_CALIB_SYNOPSIS "MODEL.onnx --data DIR -o OUT.onnx [options]"
#define CLI_CALIB_OPTS(a)                                                                                        \
    OPT_STRING('d', "data", "DIR", &(a)->o.data, "calibration images (ImageFolder layout or a flat folder)"),  \
    OPT_STRING('o', "output", "OUT.onnx", &(a)->o.out, "quantized QDQ model to write (required)"),             \
    OPT_STRING(0, "quant-info", "FILE.json", &(a)->o.quant_info, "quantization parameters (default: OUT with .json)"), \
    CLI_QUANT_OPTS(&(a)->o.q),                                                                                  \
    OPT_BOOL(0, "bias-correction", &(a)->o.bias_correction,                                                     \
             "correct each Conv/Gemm bias by the mean quantized-output error"),                                 \
    OPT_SET_INT(0, "bn-reestimate", &(a)->bnre, 1,                                                              \
                "bias correction that also matches each channel's output variance (default with --wbits below 8)"), \
    OPT_SET_INT(0, "no-bn-reestimate", &(a)->bnre, 0,                                                           \
                "no bias correction unless --bias-correction (default with 8-bit weights)"),                    \
    CLI_FALLBACK_OPTS(&(a)->o.fb),                                                                                \
    OPT_BOOL(0, "dry-run", &(a)->o.dry_run, "print the graph preparation and what would be quantized, write nothing")
#define CLI_CALIB_RUN_OPTS(a)                                                                                    \
    OPT_INTEGER('n', "limit", "N", &(a)->o.limit, 1, 1L << 30, "use at most N images (sorted order)"),          \
    OPT_INTEGER('t', "threads", "N", &(a)->o.threads, 1, 1024, "threads (default: all cores)"),                 \
    OPT_STRING('j', "json", "FILE", &(a)->json, "write a summary as JSON ('-' for stdout)"),                    \
    OPT_BOOL('q', "quiet", &(a)->quiet, "no progress or preparation report on stderr"),                         \
    CLI_PREPROC_OPTS(&(a)->pp)
#endif
