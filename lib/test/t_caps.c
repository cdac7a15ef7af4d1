/* t_caps.c: the library enforces the limits it relies on with an error
 * naming the limit, never a silent cap: qt_qat_run refuses a batch above
 * QT_QAT_MAX_BATCH (its per-step index array) before reading anything and
 * writes no file. (The losses have no class limit any more: t_grad.c checks
 * 5000 classes.) */
#include "qtool.h"
#include "test/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    struct qt_qat_opts o;
    struct qt_qat_result r;
    struct qt_err err = {0};
    char out[] = "/tmp/qt_caps_XXXXXX";
    int fd = mkstemp(out);
    if (fd >= 0) {
        close(fd);
        unlink(out);
    }
    qt_qat_opts_init(&o);
    o.model = "testdata/fmnist/model.onnx";
    o.train = "testdata/fmnist/calib";
    o.out = out;
    o.quant_info = "/tmp/qt_caps_never.json";
    o.batch = QT_QAT_MAX_BATCH + 1;
    int rc = qt_qat_run(&o, &r, &err);
    T_OK(rc == QT_EUSAGE && strstr(err.msg, "4097") && strstr(err.msg, "4096"),
         "qat batch %d refused: rc %d, '%s'", o.batch, rc, err.msg);
    T_OK(access(out, F_OK) != 0, "no output file written");
    free(r.epoch);
    return t_done();
}
