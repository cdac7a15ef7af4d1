/* cli.h: what the subcommands share: the option table that yields both
 * getopt_long's struct option[] and the --help text, and error printing. */
#ifndef QT_CLI_H
#define QT_CLI_H
#include "qtool.h"

#include <getopt.h>
#include <stdio.h>

struct opt {
    int id;            /* getopt value: a short letter or an id >= 256 */
    const char *name;  /* long name */
    const char *arg;   /* argument name, NULL for a flag */
    const char *help;
};

/* Builds getopt_long's tables from opts (terminated by a zero entry). */
struct optparse {
    struct option longs[128];
    char shorts[256];
};
void opt_build(const struct opt *opts, struct optparse *p);
void opt_usage(FILE *f, const char *cmd, const char *synopsis, const struct opt *opts);

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
int cli_int(const char *s, long lo, long hi, long *out);
int cli_float(const char *s, double *out);
/* Parses "a,b,c" floats into v (up to max); returns count or -1. */
int cli_floats(const char *s, float *v, int max);

/* Shared image-preprocessing options (eval, calib, finetune, qat). */
enum { OPT_PP_FIRST = 300, OPT_RESIZE = OPT_PP_FIRST, OPT_CROP, OPT_MEAN, OPT_STD, OPT_SCALE, OPT_RGB, OPT_BGR,
       OPT_GRAY, OPT_PRESET, OPT_CLASSES, OPT_PP_LAST };
#define CLI_PREPROC_OPTS                                                                                       \
    {OPT_PRESET, "preset", "NAME", "preprocessing preset: imagenet, imagenet-tf, mnist"},                     \
    {OPT_RESIZE, "resize", "N", "resize the shorter side to N (bilinear, antialiased as PIL)"},                \
    {OPT_CROP, "crop", "N|HxW", "center crop"},                                                               \
    {OPT_MEAN, "mean", "M[,M,M]", "per-channel mean subtracted after scaling"},                               \
    {OPT_STD, "std", "S[,S,S]", "per-channel standard deviation divided by"},                                 \
    {OPT_SCALE, "scale", "F", "pixel scale before mean/std (default 1/255)"},                                 \
    {OPT_RGB, "rgb", NULL, "feed channels in RGB order (default)"},                                           \
    {OPT_BGR, "bgr", NULL, "feed channels in BGR order"},                                                     \
    {OPT_GRAY, "gray", NULL, "feed one grey channel"},                                                         \
    {OPT_CLASSES, "classes", "FILE", "class names in model order, one per line (folder name -> label)"}

/* Handles one preprocessing option; returns 0 if handled, 1 if not a
 * preprocessing option, 2 on a bad value (message printed). explicit_* flags
 * record what the user set so model-derived defaults fill the rest. */
struct cli_pp {
    struct qt_preproc pp;
    int set_channels;
    const char *classes;
};
void cli_pp_init(struct cli_pp *p);
int cli_pp_option(const char *cmd, struct cli_pp *p, int id, const char *arg);

/* Shared quantization-settings options (calib, qat). */
enum { OPT_Q_FIRST = 350, OPT_OBS = OPT_Q_FIRST, OPT_PCT, OPT_WBITS, OPT_ABITS, OPT_PERTENSOR, OPT_NARROW,
       OPT_ACTDT, OPT_REDUCE, OPT_EXCL, OPT_EXCLOP, OPT_CONFIG, OPT_KFL, OPT_NOFOLD, OPT_NOFUSE, OPT_PROFILE, OPT_CLE, OPT_NOCLE, OPT_Q_LAST };
#define CLI_QUANT_OPTS                                                                                           \
    {OPT_PROFILE, "profile", "NAME|FILE.json", "target: ort-x86 (default), ort-arm, tensorrt, pow2, int-only"},  \
    {OPT_OBS, "observer", "NAME", "minmax|ema|percentile|entropy|mse (default percentile)"},                   \
    {OPT_PCT, "percentile", "P", "percentile for --observer percentile (default 99.99)"},                      \
    {OPT_WBITS, "wbits", "N", "weight bits, 2..8 (default 8)"},                                                \
    {OPT_ABITS, "abits", "N", "activation bits, 2..8 (default 8)"},                                            \
    {OPT_PERTENSOR, "per-tensor", NULL, "one weight scale per tensor (default: per output channel)"},          \
    {OPT_NARROW, "narrow-range", NULL, "weights in [-(2^(b-1)-1), 2^(b-1)-1] (no -128)"},                      \
    {OPT_ACTDT, "act-dtype", "uint8|int8", "activations uint8 asymmetric (default) or int8 symmetric"},        \
    {OPT_REDUCE, "reduce-range", NULL, "weights one bit narrower (7 bits), for CPUs without VNNI"},            \
    {OPT_EXCL, "exclude", "NODE[,..]", "keep these nodes in float"},                                           \
    {OPT_EXCLOP, "exclude-op", "TYPE[,..]", "keep nodes of these operator types in float"},                    \
    {OPT_CONFIG, "config", "FILE.json", "per-layer settings: {\"layers\": {NODE: {wbits, abits, observer, ...}}}"}, \
    {OPT_KFL, "keep-first-last", "8|float", "first conv and last layer at 8 bits or in float"},                \
    {OPT_NOFOLD, "no-fold-bn", NULL, "do not fold BatchNormalization into Conv/Gemm"},                         \
    {OPT_NOFUSE, "no-fuse", NULL, "quantize between Conv/Gemm/Add and a following Relu/Clip"},                 \
    {OPT_CLE, "cle", NULL, "cross-layer equalization first (default: with --per-tensor only)"},               \
    {OPT_NOCLE, "no-cle", NULL, "no cross-layer equalization"}
/* Mixed precision within a memory budget (calib, finetune, qat). */
enum { OPT_MX_FIRST = 385, OPT_WBUDGET = OPT_MX_FIRST, OPT_ABUDGET, OPT_MIXED, OPT_MIXIMG, OPT_PACK, OPT_MX_LAST };
#define CLI_MIXED_OPTS                                                                                           \
    {OPT_WBUDGET, "weight-budget", "SIZE", "ROM for all weights, packed: bytes, KiB, MiB, or an average width (4bits)"}, \
    {OPT_ABUDGET, "act-budget", "SIZE", "RAM for the activations alive at once at batch 1 (as --weight-budget)"}, \
    {OPT_MIXED, "mixed", "per-layer|per-channel", "what takes its own width within a budget (default per-layer)"}, \
    {OPT_MIXIMG, "mixed-images", "N", "calibration images the sensitivity is measured on (default 16)"},        \
    {OPT_PACK, "pack", NULL, "write weights of 4 bits or fewer as ONNX INT4 (opset 21)"}
/* Handles one quantization option: 0 handled, 1 not one, 2 bad value, 3 bad profile file (printed). */
int cli_quant_option(const char *cmd, struct qt_quant_opts *q, int id, const char *arg);
/* A quantization or preprocessing option of calib/qat: 0 handled, else the
 * exit status (usage error printed). */
int cli_quant_pp_option(const char *cmd, struct qt_quant_opts *q, struct cli_pp *pp, int id, const char *arg);
/* OUT.onnx -> OUT.json (the default quant_info path) into buf. */
const char *cli_qinfo_path(const char *out, char *buf, size_t len);

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

/* --config FILE.json carries long options by name ({"observer": "mse",
 * "wbits": 4, "mean": [0.5, 0.5, 0.5], "no-fold-bn": true}); "layers" is
 * left to the library; quantization settings are skipped by commands without
 * them (eval). Finds --config in argv, and calls fn with an argv in
 * which the file's options come first, so the command line wins. Returns
 * fn's status, or 2 (message printed) for a bad file or an unknown key. */
int cli_run_config(const char *cmd, const struct opt *opts, int argc, char **argv,
                   int (*fn)(int argc, char **argv, void *ctx), void *ctx);

/* qtool eval --report: DIR/index.html (its path into path) with the charts
 * of rep, the histograms of the nworst lowest-SQNR tensors (cli/report.c). */
int cli_report_write(const char *dir, const struct qt_eval_opts *o, const struct qt_eval_result *r,
                     const struct qt_layer_report *rep, int nworst, char *path, size_t pathlen,
                     struct qt_err *err);
/* Before the run: DIR is a folder or can be made, and DIR/index.html can be
 * written (qt_out_check). */
int cli_report_check(const char *dir, struct qt_err *err);

int cmd_eval(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_calib(int argc, char **argv);
int cmd_qat(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_export(int argc, char **argv);
/* calib's option parsing and run; ft: qtool finetune (cli/calib.c) */
int cli_calib_main(int argc, char **argv, int ft);
#endif
