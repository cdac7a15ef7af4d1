/* inspect.c: `qtool inspect MODEL.onnx`: what a model is made of. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const struct opt opts[] = {
    {'b', "batch", "N", "batch size used for the memory figure (default 1)"},
    {'h', "help", NULL, "show this help"},
    {0, NULL, NULL, NULL},
};

struct opcount {
    const char *op;
    int n;
};

static int cmp_op(const void *a, const void *b) {
    return strcmp(((const struct opcount *)a)->op, ((const struct opcount *)b)->op);
}

int cmd_inspect(int argc, char **argv) {
    struct optparse op;
    struct qt_err err = {0};
    struct qt_graph *g = NULL;
    struct qt_exec *x = NULL;
    long batch = 1;
    int c, rc = 0;
    opt_build(opts, &op);
    optind = 1;
    while ((c = getopt_long(argc, argv, op.shorts, op.longs, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (cli_int(optarg, 1, 1 << 20, &batch))
                return cli_usage("inspect", "--batch takes a positive number, not '%s'", optarg);
            break;
        case 'h':
            opt_usage(stdout, "inspect", "MODEL.onnx [options]", opts);
            return 0;
        default:
            return cli_usage("inspect", "unknown option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("inspect", "expects one model file");
    const char *path = argv[optind];
    if (qt_graph_load(&g, path, &err))
        return cli_fail("inspect", &err);

    struct qt_graph_info info;
    qt_graph_info(g, &info);
    printf("model:      %s\n", path);
    printf("producer:   %s\n", info.producer);
    printf("ir_version: %lld\n", (long long)info.ir_version);
    printf("opset:      %d\n", info.opset);
    for (int i = 0; i < info.ninputs; i++) {
        int dt, nd;
        int64_t d[QT_MAXDIM];
        char b[160];
        const char *nm = qt_graph_input(g, i, &dt, &nd, d);
        printf("input:      %s %s %s\n", nm, qt_dtype_name(dt), nd >= 0 ? qt_dims_str(nd, d, b, sizeof b) : "?");
    }
    for (int i = 0; i < info.noutputs; i++) {
        int dt, nd;
        int64_t d[QT_MAXDIM];
        char b[160];
        const char *nm = qt_graph_output(g, i, &dt, &nd, d);
        printf("output:     %s %s %s\n", nm, qt_dtype_name(dt), nd >= 0 ? qt_dims_str(nd, d, b, sizeof b) : "?");
    }
    printf("nodes:      %d\n", info.nnodes);
    struct opcount *cnt = calloc((size_t)info.nnodes + 1, sizeof *cnt);
    int ncnt = 0, nunsup = 0;
    for (int i = 0; cnt && i < info.nnodes; i++) {
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
    for (int k = 0; k < ncnt; k++)
        printf("  %-24s %d\n", cnt[k].op, cnt[k].n);
    free(cnt);
    printf("parameters: %lld (%lld bytes of initializers)\n", (long long)info.nparams, (long long)info.param_bytes);
    if (nunsup) {
        printf("unsupported:\n");
        for (int i = 0; i < info.nnodes; i++) {
            const char *t;
            int sup;
            const char *nm = qt_graph_node(g, i, &t, &sup);
            if (!sup)
                printf("  %s (%s)\n", nm, t);
        }
        qt_graph_unsupported(g, &err);
        rc = cli_fail("inspect", &err);
    } else if (qt_exec_new(&x, g, (int)batch, 1, &err)) {
        rc = cli_fail("inspect", &err);
    } else {
        printf("activations: %zu bytes peak at batch %ld\n", qt_exec_peak_bytes(x), batch);
    }
    qt_exec_free(x);
    qt_graph_free(g);
    return rc;
}
