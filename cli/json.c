/* json.c: writing cJSON documents to a file or stdout, atomically. */
#include "cli_json.h"

#include <stdlib.h>
#include <string.h>

int cli_json_write(cJSON *doc, const char *path, struct qt_err *err) {
    char *s = cJSON_Print(doc);
    int rc = 0;
    if (!s)
        return qt_errf(err, QT_ENOMEM, "out of memory writing JSON");
    size_t len = strlen(s);
    if (!strcmp(path, "-")) {
        if (fwrite(s, 1, len, stdout) != len || fputc('\n', stdout) == EOF)
            rc = qt_errf(err, QT_EIO, "cannot write JSON to standard output");
    } else {
        char *buf = malloc(len + 2);
        if (!buf) {
            free(s);
            return qt_errf(err, QT_ENOMEM, "out of memory writing JSON");
        }
        memcpy(buf, s, len);
        buf[len] = '\n';
        rc = qt_write_file_atomic(path, buf, len + 1, err);
        free(buf);
    }
    free(s);
    return rc;
}

cJSON *cli_json_num(cJSON *o, const char *k, double v) {
    if (v != v || v == 1.0 / 0.0 || v == -1.0 / 0.0)
        return cJSON_AddNullToObject(o, k);
    return cJSON_AddNumberToObject(o, k, v);
}
