/* fuzz_config.c: libFuzzer target for the per-layer --config JSON reader
 * (lib/quant/plan.c) on the bundled model testdata/fmnist/model_bn.onnx
 * (QT_FUZZ_MODEL overrides). The input reaches the reader as a file, as it
 * does from the command line (test/fuzz_file.h). Built by `make fuzz`. */
#include "quant/quant.h"
#include "test/fuzz_file.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_file_init("fuzz_config", "config.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct qt_err err = {0};
    struct qt_quant_opts o;
    struct qt_qplan *p = NULL;
    qt_quant_opts_init(&o);
    o.config = fuzz_file_put(data, size);
    if (qt_qplan_build(&p, fuzz_model, &o, NULL, NULL, &err) == 0)
        qt_qplan_weights(p, &err);
    qt_qplan_free(p);
    return 0;
}
