/* t_ops.c: runs every ONNX backend-style case under testdata/ops/<Op>/<case>/
 * (model.onnx, test_data_set_0/input_N.pb, output_N.pb; golden outputs from
 * onnxruntime-node, see scripts/golden.mjs) through the engine and compares
 * with the case's tolerance (tol.txt: "atol rtol", default 1e-5 1e-4).
 * Also checks that every registered operator has at least one case, and that
 * each model survives a save/load round trip with identical outputs. */
#include "onnx/onnx.h"
#include "test/tap.h"
#include "test/testdir.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int load_pb(const char *path, struct qt_tensor **t, struct qt_err *err) {
    void *buf;
    size_t len;
    if (qt_read_file(path, 0, &buf, &len, err))
        return err->code;
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
    free(buf);
    if (!tp)
        return qt_errf(err, QT_EDATA, "'%s' is not a TensorProto", path);
    int rc = qt_onnx_tensor_from_proto(tp, t, err);
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return rc;
}



/* Max violation of |a-b| <= atol + rtol*|b|; returns 0 if all within. */
static int compare(const struct qt_tensor *got, const struct qt_tensor *want, double atol, double rtol, char *why,
                   size_t wl) {
    char b1[160], b2[160];
    if (got->dtype != want->dtype && !(got->dtype == QT_BOOL && want->dtype == QT_BOOL)) {
        snprintf(why, wl, "dtype %s, expected %s", qt_dtype_name(got->dtype), qt_dtype_name(want->dtype));
        return 1;
    }
    if (qt_numel(got->ndim, got->dims) != qt_numel(want->ndim, want->dims) || got->ndim != want->ndim ||
        memcmp(got->dims, want->dims, sizeof(int64_t) * (size_t)got->ndim)) {
        snprintf(why, wl, "shape %s, expected %s", qt_dims_str(got->ndim, got->dims, b1, sizeof b1),
                 qt_dims_str(want->ndim, want->dims, b2, sizeof b2));
        return 1;
    }
    int64_t n = qt_tensor_numel(want);
    for (int64_t i = 0; i < n; i++) {
        double a = qt_tensor_get(got, i), b = qt_tensor_get(want, i);
        if (isnan(a) && isnan(b))
            continue;
        if (want->dtype == QT_INT64 && qt_tensor_geti(got, i) != qt_tensor_geti(want, i)) {
            snprintf(why, wl, "element %lld: %lld, expected %lld", (long long)i, (long long)qt_tensor_geti(got, i),
                     (long long)qt_tensor_geti(want, i));
            return 1;
        }
        if (a != b && !(fabs(a - b) <= atol + rtol * fabs(b))) { /* a == b: equal infinities too */
            snprintf(why, wl, "element %lld: %.9g, expected %.9g", (long long)i, a, b);
            return 1;
        }
    }
    return 0;
}

/* Runs g on the case inputs, compares outputs. Returns 0 when all agree. */
static int run_case(struct qt_graph *g, const char *dir, double atol, double rtol, char *why, size_t wl) {
    struct qt_err err = {0};
    struct qt_exec *x = NULL;
    char path[1024];
    int bad = 0;
    if (qt_exec_new(&x, g, 1, 2, &err)) {
        snprintf(why, wl, "%s", err.msg);
        return 1;
    }
    for (int i = 0; i < g->ninputs; i++) {
        struct qt_tensor *t;
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, i);
        if (load_pb(path, &t, &err)) {
            snprintf(why, wl, "%s", err.msg);
            qt_exec_free(x);
            return 1;
        }
        const struct qt_tensor *in = qt_exec_input_tensor(x, i);
        if (in->nbytes != t->nbytes || in->dtype != t->dtype) {
            snprintf(why, wl, "input %d does not match the model's declared input", i);
            bad = 1;
        } else {
            memcpy((void *)in->data, t->data, t->nbytes);
        }
        qt_tensor_free(t);
    }
    if (!bad && qt_exec_run(x, &err)) {
        snprintf(why, wl, "%s", err.msg);
        bad = 1;
    }
    for (int i = 0; !bad && i < g->noutputs; i++) {
        struct qt_tensor *t;
        snprintf(path, sizeof path, "%s/test_data_set_0/output_%d.pb", dir, i);
        if (load_pb(path, &t, &err)) {
            snprintf(why, wl, "%s", err.msg);
            bad = 1;
            break;
        }
        bad = compare(qt_exec_output_tensor(x, i), t, atol, rtol, why, wl);
        qt_tensor_free(t);
    }
    qt_exec_free(x);
    return bad;
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : "testdata/ops";
    char **ops = NULL;
    int nops = t_list_dir(root, NULL, &ops);
    T_OK(nops > 0, "found op cases under %s", root);
    unsigned char *covered = calloc((size_t)qt_op_count() + 1, 1);
    for (int i = 0; i < nops; i++) {
        char opdir[1024];
        char **cases = NULL;
        snprintf(opdir, sizeof opdir, "%s/%s", root, ops[i]);
        int nc = t_list_dir(opdir, NULL, &cases);
        for (int k = 0; k < nc; k++) {
            char dir[1200], path[1300], why[600] = "";
            double atol = 1e-5, rtol = 1e-4;
            struct qt_err err = {0};
            struct qt_graph *g = NULL;
            snprintf(dir, sizeof dir, "%s/%s", opdir, cases[k]);
            snprintf(path, sizeof path, "%s/tol.txt", dir);
            FILE *f = fopen(path, "r");
            if (f) {
                if (fscanf(f, "%lf %lf", &atol, &rtol) != 2)
                    atol = 1e-5, rtol = 1e-4;
                fclose(f);
            }
            snprintf(path, sizeof path, "%s/model.onnx", dir);
            if (qt_graph_load(&g, path, &err)) {
                T_OK(0, "%s/%s: %s", ops[i], cases[k], err.msg);
                continue;
            }
            for (int n = 0; n < g->nn; n++)
                for (int o = 0; o < qt_op_count(); o++)
                    if (g->n[n].op == qt_op_at(o))
                        covered[o] = 1;
            int bad = run_case(g, dir, atol, rtol, why, sizeof why);
            T_OK(!bad, "%s/%s%s%s", ops[i], cases[k], bad ? ": " : "", bad ? why : "");
            /* round trip: save, reload, same outputs */
            void *buf = NULL;
            size_t len = 0;
            struct qt_graph *g2 = NULL;
            int rt = qt_graph_pack(g, &buf, &len, &err) || qt_graph_load_mem(&g2, buf, len, path, &err);
            if (!rt && !bad)
                rt = run_case(g2, dir, atol, rtol, why, sizeof why);
            if (!bad)
                T_OK(!rt, "%s/%s: save/load round trip%s%s", ops[i], cases[k], rt ? ": " : "",
                     rt ? (err.msg[0] ? err.msg : why) : "");
            free(buf);
            qt_graph_free(g2);
            qt_graph_free(g);
        }
        t_free_list(cases, nc);
    }
    for (int o = 0; o < qt_op_count(); o++)
        T_OK(covered[o], "operator %s has a test case", qt_op_at(o)->name);
    free(covered);
    t_free_list(ops, nops);
    return t_done();
}
