/* fuzz_run.h: what the graph fuzz targets (fuzz_onnx.c, fuzz_quant.c)
 * share. Included once per target. */
#ifndef QT_FUZZ_RUN_H
#define QT_FUZZ_RUN_H
#include "engine.h"

/* Plans and runs g once at batch 1 (errors are fine: a refusal is an answer). */
static void run_once(struct qt_graph *g) {
    struct qt_err err = {0};
    struct qt_exec *x = NULL;
    if (qt_exec_new(&x, g, 1, 1, &err) == 0)
        qt_exec_run(x, &err);
    qt_exec_free(x);
}
#endif
