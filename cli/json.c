/* json.c: writing cJSON documents to a file or stdout, atomically. */
#include "cli.h"
#include "cli_json.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

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

void cli_json_begin(struct cli_json *d, const char *cmd, const char *path) {
    char schema[64], when[32];
    time_t now = time(NULL);
    struct tm tm;
    memset(d, 0, sizeof *d);
    d->cmd = cmd;
    d->path = path;
    d->t0 = qt_now();
    if (!path)
        return;
    d->doc = cJSON_CreateObject();
    snprintf(schema, sizeof schema, "qtool-%s/1", cmd);
    cJSON_AddStringToObject(d->doc, "schema", schema);
    cJSON_AddStringToObject(d->doc, "command", cmd);
    cJSON_AddStringToObject(d->doc, "version", QT_VERSION);
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(d->doc, "started_at", when);
}

int cli_json_end(struct cli_json *d, int rc, const struct qt_err *err) {
    struct qt_err werr = {0};
    if (!d->doc)
        return rc;
    cJSON_AddBoolToObject(d->doc, "ok", rc == 0);
    cJSON_AddNumberToObject(d->doc, "exit_code", rc);
    if (rc && err && err->msg[0])
        cJSON_AddStringToObject(d->doc, "error", err->msg);
    else
        cJSON_AddNullToObject(d->doc, "error");
    cli_json_num(d->doc, "wall_s", qt_now() - d->t0);
    int w = cli_json_write(d->doc, d->path, &werr);
    cJSON_Delete(d->doc);
    d->doc = NULL;
    if (w && !rc)
        return cli_fail(d->cmd, &werr);
    return rc;
}

int cli_json_check(const struct cli_json *d, struct qt_err *err) {
    if (!d->path || !strcmp(d->path, "-"))
        return 0;
    return qt_out_check(d->path, err);
}

int cli_json_fail(struct cli_json *d, const struct qt_err *err) {
    int rc = cli_fail(d->cmd, err);
    return cli_json_end(d, rc, err);
}

void cli_print_mem(FILE *f, const struct qt_mem_figures *m) {
    fprintf(f, "memory: ROM %lld bytes of weights (8-bit: %lld; average weight width %.2f bits), "
               "RAM %lld bytes of activations at batch 1 (8-bit: %lld)\n",
            (long long)m->rom, (long long)m->rom8, m->wbits_avg, (long long)m->ram, (long long)m->ram8);
    if (m->rom_budget || m->ram_budget) {
        fprintf(f, "budget:");
        if (m->rom_budget)
            fprintf(f, " ROM %lld bytes", (long long)m->rom_budget);
        if (m->ram_budget)
            fprintf(f, "%s RAM %lld bytes", m->rom_budget ? "," : "", (long long)m->ram_budget);
        fprintf(f, "; weight tensors per width:");
        for (int b = 8; b >= 2; b--)
            if (m->hist[b])
                fprintf(f, " %d-bit %d", b, m->hist[b]);
        fprintf(f, "\n");
    }
}

void cli_json_mem(cJSON *d, const struct qt_quant_opts *q, const struct qt_mem_figures *m, double mixed_s) {
    cJSON *o = cJSON_AddObjectToObject(d, "memory");
    cJSON_AddNumberToObject(o, "rom_bytes", (double)m->rom);
    cJSON_AddNumberToObject(o, "ram_bytes", (double)m->ram);
    cJSON_AddNumberToObject(o, "rom_bytes_8bit", (double)m->rom8);
    cJSON_AddNumberToObject(o, "ram_bytes_8bit", (double)m->ram8);
    cli_json_num(o, "weight_bits_avg", m->wbits_avg);
    cli_json_num(o, "activation_bits_avg", m->abits_avg);
    if (m->rom_budget)
        cJSON_AddNumberToObject(o, "rom_budget", (double)m->rom_budget);
    else
        cJSON_AddNullToObject(o, "rom_budget");
    if (m->ram_budget)
        cJSON_AddNumberToObject(o, "ram_budget", (double)m->ram_budget);
    else
        cJSON_AddNullToObject(o, "ram_budget");
    if (q)
        cJSON_AddStringToObject(o, "mixed", q->mixed == QT_MIXED_CHANNEL ? "per-channel" : "per-layer");
    cJSON *h = cJSON_AddObjectToObject(o, "weight_widths");
    for (int b = 8; b >= 2; b--) {
        char k[16];
        snprintf(k, sizeof k, "%d", b);
        cJSON_AddNumberToObject(h, k, m->hist[b]);
    }
    if (q)
        cli_json_num(o, "mixed_s", mixed_s);
}
