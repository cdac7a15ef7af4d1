/* t_zoo.c DIR: every DIR/<name>.onnx with <name>.input.bin (float32, batch
 * 2, 3x224x224) and <name>.ort.bin (ONNX Runtime's output) is run by the
 * engine; outputs must be within 1e-4 of ORT's relative to the output's
 * largest magnitude. scripts/t-zoo.sh makes DIR with scripts/gen-zoo.py
 * (torchvision families exported by Debian's torch). Without DIR: skipped. */
#include "engine.h"
#include "test/tap.h"

#include <dirent.h>
#include <math.h>
#include <string.h>

static float *read_floats(const char *path, size_t *n) {
    void *buf;
    size_t len;
    struct qt_err err = {0};
    if (qt_read_file(path, 0, &buf, &len, &err))
        return NULL;
    *n = len / 4;
    return buf;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* QT_EXEC_SUBBATCH (image by image on a batch-1 plan where the graph is
 * per-image and its weights are small against its activations) gives the
 * batch plan's bytes; MobileNetV2, SqueezeNet and ShuffleNet must take it */
static void sub_same(const char *name, struct qt_graph *g, int batch, const float *xin, size_t nin,
                     const struct qt_tensor *o) {
    struct qt_exec *x = NULL;
    struct qt_err err = {0};
    if (qt_exec_new_flags(&x, g, batch, 0, QT_EXEC_SUBBATCH, &err)) {
        T_OK(0, "%s image by image: %s", name, err.msg);
        return;
    }
    memcpy(qt_exec_input(x, 0), xin, nin * 4);
    int light = !strncmp(name, "mobilenet_v2", 12) || !strncmp(name, "squeezenet", 10) ||
                !strncmp(name, "shufflenet", 10);
    if (qt_exec_run(x, &err))
        T_OK(0, "%s image by image: %s", name, err.msg);
    else
        T_OK(!memcmp(qt_exec_output(x, 0), o->data, o->nbytes) && (x->sub != NULL || !light),
             "%s image by image (%s): the batch plan's bytes", name, x->sub ? "batch-1 plan" : "batch plan");
    qt_exec_free(x);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        T_SKIP("no zoo folder given (scripts/t-zoo.sh makes one)");
        return t_done();
    }
    DIR *d = opendir(argv[1]);
    T_OK(d != NULL, "zoo folder %s", argv[1]);
    char *names[256];
    int nn = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && nn < 256) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".onnx"))
            names[nn++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    qsort(names, (size_t)nn, sizeof *names, cmp_name);
    for (int i = 0; i < nn; i++) {
        char path[1024], in[1024], ref[1024];
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        snprintf(in, sizeof in, "%s/%.*s.input.bin", argv[1], (int)strlen(names[i]) - 5, names[i]);
        snprintf(ref, sizeof ref, "%s/%.*s.ort.bin", argv[1], (int)strlen(names[i]) - 5, names[i]);
        struct qt_err err = {0};
        struct qt_graph *g = NULL;
        struct qt_exec *x = NULL;
        size_t nin = 0, nref = 0;
        float *xin = read_floats(in, &nin), *want = read_floats(ref, &nref);
        int batch = (int)(nin / (3 * 224 * 224));
        double t0 = qt_now();
        if (!xin || !want || batch < 1 || qt_graph_load(&g, path, &err) || qt_exec_new(&x, g, batch, 0, &err)) {
            T_OK(0, "%s: %s", names[i], err.msg[0] ? err.msg : "missing input or reference");
        } else {
            memcpy(qt_exec_input(x, 0), xin, nin * 4);
            if (qt_exec_run(x, &err)) {
                T_OK(0, "%s: %s", names[i], err.msg);
            } else {
                const struct qt_tensor *o = qt_exec_output_tensor(x, 0);
                const float *got = o->data;
                size_t n = o->nbytes / 4;
                double md = 0, mr = 0;
                for (size_t k = 0; k < n && n == nref; k++) {
                    md = fmax(md, fabs((double)got[k] - want[k]));
                    mr = fmax(mr, fabs((double)want[k]));
                }
                T_OK(n == nref && md <= 1e-4 * mr, "%s: max diff %.3g of max %.3g (rel %.2g), %.2f s", names[i], md,
                     mr, mr > 0 ? md / mr : md, qt_now() - t0);
                sub_same(names[i], g, batch, xin, nin, o);
            }
        }
        qt_exec_free(x);
        qt_graph_free(g);
        free(xin);
        free(want);
        free(names[i]);
    }
    T_OK(nn > 0, "%d zoo models", nn);
    return t_done();
}
