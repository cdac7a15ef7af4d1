/* inspect.c: `qtool inspect MODEL.onnx`: what a model is made of. */
#include "cli.h"
#include "cli_json.h"

#include <stdlib.h>
#include <string.h>

struct opcount {
    const char *op;
    int n;
};

static int cmp_op(const void *a, const void *b) {
    return strcmp(((const struct opcount *)a)->op, ((const struct opcount *)b)->op);
}

struct inspect_cmd {
    const char *model, *json, *qinfo;
    int batch;
};

static int inspect_main(void *ctx);

int cmd_inspect(int argc, char **argv) {
    struct inspect_cmd a = {.batch = 1};
    const struct opt opts[] = {
        OPT_INTEGER('b', "batch", "N", &a.batch, 1, 1 << 20, "batch size used for the memory figure (default 1)"),
        OPT_STRING('Q', "quant-info", "FILE.json", &a.qinfo,
                   "also ROM and RAM at the widths this quant_info.json records for the model"),
        OPT_STRING('j', "json", "FILE", &a.json,
                   "write the same figures as JSON ('-' for stdout, the text then goes to stderr)"),
        OPT_HELP(),
        OPT_END(),
    };
    return cli_main("inspect", "MODEL.onnx [options]", opts, argc, argv, &a.model, inspect_main, &a);
}

/* graph inputs and outputs: name, type, shape */
static void inspect_io(FILE *f, cJSON *d, const struct qt_graph *g, const struct qt_graph_info *info) {
    for (int io = 0; io < 2; io++) {
        cJSON *a = d ? cJSON_AddArrayToObject(d, io ? "outputs" : "inputs") : NULL;
        for (int i = 0; i < (io ? info->noutputs : info->ninputs); i++) {
            int dt, nd;
            int64_t dims[QT_MAXDIM];
            char b[160];
            const char *nm = io ? qt_graph_output(g, i, &dt, &nd, dims) : qt_graph_input(g, i, &dt, &nd, dims);
            fprintf(f, "%s     %s %s %s\n", io ? "output:" : "input: ", nm, qt_dtype_name(dt),
                    nd >= 0 ? qt_dims_str(nd, dims, b, sizeof b) : "?");
            if (a) {
                cJSON *t = cJSON_CreateObject(), *sh = nd >= 0 ? cJSON_CreateArray() : cJSON_CreateNull();
                cJSON_AddStringToObject(t, "name", nm);
                cJSON_AddStringToObject(t, "dtype", qt_dtype_name(dt));
                for (int k = 0; k < nd; k++)
                    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)dims[k]));
                cJSON_AddItemToObject(t, "shape", sh);
                cJSON_AddItemToArray(a, t);
            }
        }
    }
}

/* node count per operator type and the parameters; returns the number of unsupported nodes */
static int inspect_ops(FILE *f, cJSON *d, const struct qt_graph *g, const struct qt_graph_info *info) {
    fprintf(f, "nodes:      %d\n", info->nnodes);
    struct opcount *cnt = calloc((size_t)info->nnodes + 1, sizeof *cnt);
    int ncnt = 0, nunsup = 0;
    for (int i = 0; cnt && i < info->nnodes; i++) {
        const char *t;
        int sup, k;
        qt_graph_node(g, i, &t, &sup);
        for (k = 0; k < ncnt && strcmp(cnt[k].op, t); k++)
            ;
        if (k == ncnt)
            cnt[ncnt++].op = t;
        cnt[k].n++;
        nunsup += !sup;
    }
    if (cnt)
        qsort(cnt, (size_t)ncnt, sizeof *cnt, cmp_op);
    cJSON *ops = d ? cJSON_CreateObject() : NULL;
    for (int k = 0; k < ncnt; k++) {
        fprintf(f, "  %-24s %d\n", cnt[k].op, cnt[k].n);
        if (ops)
            cJSON_AddNumberToObject(ops, cnt[k].op, cnt[k].n);
    }
    free(cnt);
    fprintf(f, "parameters: %lld (%lld bytes of initializers)\n", (long long)info->nparams,
            (long long)info->param_bytes);
    if (d) {
        cJSON_AddNumberToObject(d, "nodes", info->nnodes);
        cJSON_AddItemToObject(d, "operators", ops);
        cJSON_AddNumberToObject(d, "parameters", (double)info->nparams);
        cJSON_AddNumberToObject(d, "parameter_bytes", (double)info->param_bytes);
    }
    return nunsup;
}

/* the nodes qtool cannot run */
static void inspect_unsupported(FILE *f, cJSON *a, const struct qt_graph *g, const struct qt_graph_info *info) {
    fprintf(f, "unsupported:\n");
    for (int i = 0; i < info->nnodes; i++) {
        const char *t;
        int sup;
        const char *nm = qt_graph_node(g, i, &t, &sup);
        if (!sup) {
            fprintf(f, "  %s (%s)\n", nm, t);
            if (a) {
                cJSON *u = cJSON_CreateObject();
                cJSON_AddStringToObject(u, "name", nm);
                cJSON_AddStringToObject(u, "op", t);
                cJSON_AddItemToArray(a, u);
            }
        }
    }
}

static int inspect_main(void *ctx) {
    const struct inspect_cmd *c = ctx;
    const char *path = c->model, *json = c->json;
    struct qt_err err = {0};
    struct qt_graph *g = NULL;
    struct qt_exec *x = NULL;
    struct cli_json js;
    int rc = 0;
    cli_json_begin(&js, "inspect", json);
    if (cli_json_check(&js, &err) || qt_graph_load(&g, path, &err))
        return cli_json_fail(&js, &err);

    FILE *f = json && !strcmp(json, "-") ? stderr : stdout;
    cJSON *d = js.doc, *a;
    struct qt_graph_info info;
    qt_graph_info(g, &info);
    fprintf(f, "model:      %s\n", path);
    fprintf(f, "producer:   %s\n", info.producer);
    fprintf(f, "ir_version: %lld\n", (long long)info.ir_version);
    fprintf(f, "opset:      %d\n", info.opset);
    if (d) {
        cJSON_AddStringToObject(d, "model", path);
        cJSON_AddStringToObject(d, "producer", info.producer);
        cJSON_AddNumberToObject(d, "ir_version", (double)info.ir_version);
        cJSON_AddNumberToObject(d, "opset", info.opset);
    }
    inspect_io(f, d, g, &info);
    int nunsup = inspect_ops(f, d, g, &info);
    a = d ? cJSON_AddArrayToObject(d, "unsupported") : NULL;
    if (nunsup) {
        inspect_unsupported(f, a, g, &info);
        qt_graph_unsupported(g, &err);
        rc = cli_fail("inspect", &err);
    } else if (qt_exec_new(&x, g, c->batch, 1, &err)) {
        rc = cli_fail("inspect", &err);
    } else {
        fprintf(f, "activations: %zu bytes peak at batch %d\n", qt_exec_peak_bytes(x), c->batch);
        if (d) {
            cJSON_AddNumberToObject(d, "batch", (double)c->batch);
            cJSON_AddNumberToObject(d, "activation_bytes", (double)qt_exec_peak_bytes(x));
        }
        struct qt_mem_figures mf;
        if (c->qinfo && qt_quant_info_memory(path, c->qinfo, &mf, &err)) {
            rc = cli_fail("inspect", &err);
        } else if (c->qinfo) {
            cli_print_mem(f, &mf);
            if (d)
                cli_json_mem(d, NULL, &mf, 0);
        }
    }
    qt_exec_free(x);
    qt_graph_free(g);
    return cli_json_end(&js, rc, &err);
}
