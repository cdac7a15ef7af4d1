/* cli_json.h: JSON output helpers (cJSON). */
#ifndef QT_CLI_JSON_H
#define QT_CLI_JSON_H
#include "qtool.h"
#include <cJSON.h>
#include <stdio.h>

/* Pretty-prints doc to path ("-" = stdout), atomically for files. */
int cli_json_write(cJSON *doc, const char *path, struct qt_err *err);
/* Adds a number, or null when it is not finite. */
cJSON *cli_json_num(cJSON *o, const char *k, double v);

/* The --json envelope every subcommand shares (man/qtool-json.5):
 * {"schema": "qtool-CMD/1", "command": CMD, "version", "started_at" (UTC,
 * ISO 8601), then the command's fields, then "ok", "exit_code", "error"
 * (null or the message) and "wall_s" (the whole command)}. */
struct cli_json {
    cJSON *doc;
    const char *path; /* NULL: no --json */
    const char *cmd;
    double t0;
};
/* Starts the document (d->doc is NULL when path is NULL). */
void cli_json_begin(struct cli_json *d, const char *cmd, const char *path);
/* Adds the closing fields for exit status rc (err->msg when rc != 0), writes
 * the document and frees it. Returns rc, or the write failure's status
 * (message printed). */
int cli_json_end(struct cli_json *d, int rc, const struct qt_err *err);
/* Checks the --json path (qt_out_check; "-" and no --json pass) before the
 * command runs, so a bad path fails first and leaves no other output. */
int cli_json_check(const struct cli_json *d, struct qt_err *err);
/* A failure after the options were read: the message on stderr, and a JSON
 * document with the envelope and the error (so batch jobs see why). */
int cli_json_fail(struct cli_json *d, const struct qt_err *err);
/* The sensitivity analysis and the --max-drop outcome as the "sensitivity"
 * and "fallback" objects (man qtool-json(5)). */
void cli_sens_json(cJSON *d, const struct qt_sens_report *r);
void cli_fallback_json(cJSON *d, const struct qt_fallback *fb, const char *out);
/* Both, as calib/finetune/qat asked for them (cli/fallback.c). */
void cli_fallback_fill_json(cJSON *d, const struct qt_fallback_opts *f, const struct qt_sens_report *sens,
                            const struct qt_fallback *fb, const char *out);
/* ROM/RAM figures (struct qt_mem_figures): one text line (two with a
 * budget), or the "memory" object of calib/finetune/qat/inspect --json. */
void cli_print_mem(FILE *f, const struct qt_mem_figures *m);
void cli_json_mem(cJSON *d, const struct qt_quant_opts *q, const struct qt_mem_figures *m, double mixed_s);
#endif
