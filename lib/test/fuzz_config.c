/* fuzz_config.c: libFuzzer target for the per-layer --config JSON reader
 * (lib/quant/plan.c) on the bundled model testdata/fmnist/model_bn.onnx
 * (QT_FUZZ_MODEL overrides). The input reaches the reader as a file, as it
 * does from the command line: a memfd named through /proc/self/fd. Built by
 * `make fuzz`. */
#include "engine.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct qt_graph *model;
static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    struct qt_err err = {0};
    const char *m = getenv("QT_FUZZ_MODEL");
    (void)argc;
    (void)argv;
    if (qt_graph_load(&model, m ? m : "testdata/fmnist/model_bn.onnx", &err)) {
        fprintf(stderr, "fuzz_config: %s (run from the source tree or set QT_FUZZ_MODEL)\n", err.msg);
        abort();
    }
    fd = memfd_create("config.json", 0);
    if (fd < 0)
        abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct qt_err err = {0};
    struct qt_quant_opts o;
    struct qt_qplan *p = NULL;
    if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    qt_quant_opts_init(&o);
    o.config = path;
    if (qt_qplan_build(&p, model, &o, NULL, NULL, &err) == 0)
        qt_qplan_weights(p, &err);
    qt_qplan_free(p);
    return 0;
}
