/* fuzz_onnx.c: libFuzzer target for the ONNX loader: bytes -> wire check,
 * protobuf-c unpack, conversion, graph checks, operator init; then, for a
 * model qtool can run, planning (shape inference, constant folding, buffer
 * placement) and one forward pass at batch 1; then the same at degenerate
 * input shapes (every dim after the batch at 1, then one of them at 0). Planned memory is bounded by
 * QT_MEM_LIMIT_MB (64 here) so a hostile shape fails with an error instead
 * of exhausting the fuzzer's memory. Built by `make fuzz`. */
#include "engine.h"
#include "test/fuzz_run.h"

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
    if (qt_graph_load_mem(&g, data, size, "fuzz.onnx", &err) == 0 && qt_graph_unsupported(g, &err) == 0) {
        run_once(g);
        /* the same graph at degenerate input shapes: every dim after the
         * first at 1, then the one the input's length picks at 0 */
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < g->ninputs; i++) {
                struct qt_value *v = &g->v[g->inputs[i]];
                int zero = v->ndim > 1 ? 1 + (int)(size % (size_t)(v->ndim - 1)) : -1;
                for (int d = 1; d < v->ndim; d++)
                    v->dims[d] = pass == 1 && d == zero ? 0 : 1;
            }
            run_once(g);
        }
    }
    qt_graph_free(g);
    return 0;
}
