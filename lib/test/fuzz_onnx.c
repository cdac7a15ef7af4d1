/* fuzz_onnx.c: libFuzzer target for the ONNX loader: bytes -> wire check,
 * protobuf-c unpack, conversion, graph checks, operator init; then, for a
 * model qtool can run, planning (shape inference, constant folding, buffer
 * placement) and one forward pass at batch 1. Planned memory is bounded by
 * QT_MEM_LIMIT_MB (64 here) so a hostile shape fails with an error instead
 * of exhausting the fuzzer's memory. Built by `make fuzz`. */
#include "engine.h"

#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    setenv("QT_MEM_LIMIT_MB", "64", 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct qt_err err = {0};
    struct qt_graph *g = NULL;
    struct qt_exec *x = NULL;
    if (qt_graph_load_mem(&g, data, size, "fuzz.onnx", &err) == 0 && qt_graph_unsupported(g, &err) == 0) {
        err.code = 0;
        if (qt_exec_new(&x, g, 1, 1, &err) == 0)
            qt_exec_run(x, &err);
    }
    qt_exec_free(x);
    qt_graph_free(g);
    return 0;
}
