/* fuzz_qinfo.c: libFuzzer target for the quant_info.json reader that
 * `qtool export` and `qtool qat --init` use (qt_qplan_from_info,
 * lib/quant/export.c), on the bundled model testdata/fmnist/model_bn.onnx
 * (QT_FUZZ_MODEL overrides). Seeds (scripts/fuzz.sh seeds) are real files
 * calib wrote for that model, so the sha256 check passes and the mutations
 * reach the settings, the plan and every tensor entry. The input reaches
 * the reader as a file (test/fuzz_file.h); a plan that loads is exported
 * to QDQ as export would. Built by `make fuzz`. */
#include "quant/quant.h"
#include "test/fuzz_file.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_file_init("fuzz_qinfo", "quant_info.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct qt_err err = {0};
    struct qt_qplan *p = NULL;
    struct qt_graph *qg = NULL;
    int ntuned;
    const char *path = fuzz_file_put(data, size);
    if (qt_qplan_from_info(&p, fuzz_model, fuzz_model_path, path, &ntuned, &err) == 0 &&
        qt_qplan_biases(p, &err) == 0)
        qt_qplan_export_qdq(p, &qg, &err);
    qt_graph_free(qg);
    qt_qplan_free(p);
    return 0;
}
