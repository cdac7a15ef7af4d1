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
#endif
