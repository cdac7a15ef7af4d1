/* fuzz_qinfo.c: libFuzzer target for the quant_info.json reader that
 * `qtool export` and `qtool qat --init` use (qt_qplan_from_info,
 * lib/quant/export.c), on the bundled model testdata/fmnist/model_bn.onnx
 * (QT_FUZZ_MODEL overrides). Seeds (scripts/fuzz.sh seeds) are real files
 * calib wrote for that model, so the sha256 check passes and the mutations
 * reach the settings, the plan and every tensor entry. The input reaches
 * the reader as a file (a memfd named through /proc/self/fd); a plan that
 * loads is exported to QDQ as export would. Built by `make fuzz`. */
#include "engine.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct qt_graph *model;
static const char *model_path;
static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    struct qt_err err = {0};
    const char *m = getenv("QT_FUZZ_MODEL");
    (void)argc;
    (void)argv;
    model_path = m ? m : "testdata/fmnist/model_bn.onnx";
    if (qt_graph_load(&model, model_path, &err)) {
        fprintf(stderr, "fuzz_qinfo: %s (run from the source tree or set QT_FUZZ_MODEL)\n", err.msg);
        abort();
    }
    fd = memfd_create("quant_info.json", 0);
    if (fd < 0)
        abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct qt_err err = {0};
    struct qt_qplan *p = NULL;
    struct qt_graph *qg = NULL;
    int ntuned;
    if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    if (qt_qplan_from_info(&p, model, model_path, path, &ntuned, &err) == 0 && qt_qplan_biases(p, &err) == 0)
        qt_qplan_export_qdq(p, &qg, &err);
    qt_graph_free(qg);
    qt_qplan_free(p);
    return 0;
}
