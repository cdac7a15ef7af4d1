/* fuzz_file.h: what the file-reader fuzz targets (fuzz_config.c,
 * fuzz_qinfo.c) share: the bundled model they read against
 * (testdata/fmnist/model_bn.onnx, QT_FUZZ_MODEL overrides) and one memfd
 * that carries each input to the reader as a file named through
 * /proc/self/fd, as a path from the command line would. Included once per
 * target. */
#ifndef QT_FUZZ_FILE_H
#define QT_FUZZ_FILE_H
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct qt_graph *fuzz_model;
static const char *fuzz_model_path;
static int fuzz_fd = -1;
static char fuzz_path[64];

/* Loads the model and makes the memfd `name`; aborts (naming `target`) when
 * either fails. */
static void fuzz_file_init(const char *target, const char *name) {
    struct qt_err err = {0};
    const char *m = getenv("QT_FUZZ_MODEL");
    fuzz_model_path = m ? m : "testdata/fmnist/model_bn.onnx";
    if (qt_graph_load(&fuzz_model, fuzz_model_path, &err)) {
        fprintf(stderr, "%s: %s (run from the source tree or set QT_FUZZ_MODEL)\n", target, err.msg);
        abort();
    }
    fuzz_fd = memfd_create(name, 0);
    if (fuzz_fd < 0)
        abort();
    snprintf(fuzz_path, sizeof fuzz_path, "/proc/self/fd/%d", fuzz_fd);
}

/* The memfd's contents become data; returns its path. */
static const char *fuzz_file_put(const uint8_t *data, size_t size) {
    if (ftruncate(fuzz_fd, 0) || pwrite(fuzz_fd, data, size, 0) != (ssize_t)size)
        abort();
    return fuzz_path;
}
#endif
