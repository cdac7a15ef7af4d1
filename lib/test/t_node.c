/* t_node.c: the ONNX backend node-test suite (../shared/onnx-node-tests, or
 * $QT_SHARED/onnx-node-tests, or the folder given as argv[1]) through the
 * engine. Every test whose operators qtool registers runs twice:
 *   shipped    the model as the suite ships it, every graph input fed;
 *   constants  every input but the first (and the first too when it is an
 *              integer tensor or a scalar) turned into an initializer holding
 *              the test's data, as exported models hold shapes, scales, axes.
 * Each run happens in a child process (a crash or a 60 s hang is reported,
 * not fatal) and ends as pass, refused (the error message), wrong (the first
 * differing element) or crashed. Outputs are compared as ONNX's own runner
 * does: dtype and shape equal, integers and booleans equal, floats within
 * numpy allclose(rtol 1e-3, atol 1e-7).
 *
 * A check fails for a crash, a wrong value not listed in expected[] below,
 * and a refusal that names the opset. Other refusals pass and are listed
 * with their reason, then grouped in the closing "# refused" table. */
#include "onnx/onnx.h"
#include "test/tap.h"
#include "test/testdir.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { R_PASS, R_REFUSED, R_WRONG, R_CRASHED, R_N };
static const char *const r_name[R_N] = {"pass", "refused", "wrong", "crashed"};

/* Wrong values explained against ONNX Runtime: the suite's expected output
 * and ONNX Runtime's differ, and qtool gives ONNX Runtime's. */
static const struct {
    const char *test, *why;
    int n;          /* ONNX Runtime's output 0 (onnxruntime-node 1.30, the */
    float ort[16];  /* test's run-time inputs as initializers)             */
} expected[] = {
    {"test_resize_downsample_scales_linear_align_corners",
     "ONNX's reference maps align_corners through the unrounded output width 4*0.6 = 2.4, "
     "x = 1*(4-1)/(2.4-1) = 2.14 -> 3.14; ONNX Runtime and qtool through the output width 2, x = 3 -> 4",
     2, {1.f, 4.f}},
    {"test_resize_downsample_scales_cubic_align_corners",
     "the same for cubic: ONNX's reference maps through the unrounded output size 4*0.8 = 3.2, "
     "x = 1*(4-1)/(3.2-1) = 1.36; ONNX Runtime and qtool through the output size 3, x = 1.5",
     9, {1.f, 2.5f, 4.f, 7.f, 8.5f, 10.f, 13.f, 14.5f, 16.f}},
    {NULL, NULL, 0, {0}},
};

static int expected_idx(const char *test) {
    for (int i = 0; expected[i].test; i++)
        if (!strcmp(expected[i].test, test))
            return i;
    return -1;
}



static Onnx__TensorProto *read_pb(const char *path) {
    void *buf;
    size_t len;
    struct qt_err err = {0};
    if (qt_read_file(path, 0, &buf, &len, &err))
        return NULL;
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
    free(buf);
    return tp;
}

static int load_pb(const char *path, struct qt_tensor **t, struct qt_err *err) {
    Onnx__TensorProto *tp = read_pb(path);
    if (!tp)
        return qt_errf(err, QT_EDATA, "'%s' is not a TensorProto", path);
    int rc = qt_onnx_tensor_from_proto(tp, t, err);
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return rc;
}

static int is_init(const Onnx__GraphProto *gp, const char *name) {
    for (size_t i = 0; i < gp->n_initializer; i++)
        if (gp->initializer[i]->name && !strcmp(gp->initializer[i]->name, name))
            return 1;
    return 0;
}

/* The operator qtool lacks in the model (first one), or NULL. */
static const char *missing_op(const Onnx__ModelProto *m) {
    const Onnx__GraphProto *gp = m->graph;
    for (size_t i = 0; gp && i < gp->n_node; i++) {
        const char *d = gp->node[i]->domain ? gp->node[i]->domain : "";
        if (!strcmp(d, "ai.onnx"))
            d = "";
        if (!qt_op_find(d, gp->node[i]->op_type))
            return gp->node[i]->op_type;
    }
    return NULL;
}

static int is_int_type(int t) {
    return t == QT_INT64 || t == QT_INT32 || t == QT_INT8 || t == QT_UINT8 || t == QT_INT16 || t == QT_UINT16 ||
           t == QT_UINT32 || t == QT_UINT64 || t == QT_BOOL;
}

/* The "constants" variant of the model: returns the packed model (malloc'd)
 * and marks in tocon[i] the (non-initializer) graph inputs i moved, or NULL
 * when nothing would move. */
static void *to_constants(Onnx__ModelProto *m, const char *dir, unsigned char *tocon, size_t *len) {
    Onnx__GraphProto *gp = m->graph;
    char path[1400];
    size_t nrt = 0, moved = 0;
    Onnx__TensorProto **extra = calloc(gp->n_input + 1, sizeof *extra);
    Onnx__ValueInfoProto **keep = calloc(gp->n_input + 1, sizeof *keep);
    size_t nkeep = 0;
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *name = gp->input[i]->name;
        if (is_init(gp, name)) {
            keep[nkeep++] = gp->input[i];
            continue;
        }
        size_t k = nrt++;
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%zu.pb", dir, k);
        Onnx__TensorProto *tp = read_pb(path);
        int conv = 0;
        if (tp) {
            int scalar = tp->n_dims == 0;
            conv = k > 0 || is_int_type(tp->data_type) || scalar;
        }
        if (!conv) {
            if (tp)
                onnx__tensor_proto__free_unpacked(tp, NULL);
            keep[nkeep++] = gp->input[i];
            continue;
        }
        free(tp->name);
        tp->name = strdup(name);
        extra[moved++] = tp;
        tocon[k] = 1;
    }
    void *buf = NULL;
    if (moved) {
        Onnx__ValueInfoProto **old_in = gp->input;
        size_t old_nin = gp->n_input;
        Onnx__TensorProto **old_init = gp->initializer;
        size_t old_ninit = gp->n_initializer;
        Onnx__TensorProto **init = calloc(old_ninit + moved, sizeof *init);
        if (old_ninit)
            memcpy(init, old_init, old_ninit * sizeof *init);
        memcpy(init + old_ninit, extra, moved * sizeof *init);
        gp->input = keep;
        gp->n_input = nkeep;
        gp->initializer = init;
        gp->n_initializer = old_ninit + moved;
        *len = onnx__model_proto__get_packed_size(m);
        buf = malloc(*len ? *len : 1);
        onnx__model_proto__pack(m, buf);
        gp->input = old_in;
        gp->n_input = old_nin;
        gp->initializer = old_init;
        gp->n_initializer = old_ninit;
        free(init);
    }
    for (size_t i = 0; i < moved; i++)
        onnx__tensor_proto__free_unpacked(extra[i], NULL);
    free(extra);
    free(keep);
    return buf;
}

/* allclose as ONNX's runner: 0 when equal enough, else 1 with why filled. */
static int compare(const struct qt_tensor *got, const struct qt_tensor *want, char *why, size_t wl) {
    char b1[160], b2[160];
    if (got->dtype != want->dtype) {
        snprintf(why, wl, "dtype %s, expected %s", qt_dtype_name(got->dtype), qt_dtype_name(want->dtype));
        return 1;
    }
    if (got->ndim != want->ndim || memcmp(got->dims, want->dims, sizeof(int64_t) * (size_t)got->ndim)) {
        snprintf(why, wl, "shape %s, expected %s", qt_dims_str(got->ndim, got->dims, b1, sizeof b1),
                 qt_dims_str(want->ndim, want->dims, b2, sizeof b2));
        return 1;
    }
    int64_t n = qt_tensor_numel(want);
    int isf = want->dtype == QT_FLOAT || want->dtype == QT_DOUBLE || want->dtype == QT_FLOAT16;
    for (int64_t i = 0; i < n; i++) {
        if (!isf) {
            if (qt_tensor_geti(got, i) != qt_tensor_geti(want, i)) {
                snprintf(why, wl, "element %lld: %lld, expected %lld", (long long)i,
                         (long long)qt_tensor_geti(got, i), (long long)qt_tensor_geti(want, i));
                return 1;
            }
            continue;
        }
        double a = qt_tensor_get(got, i), b = qt_tensor_get(want, i);
        if (isnan(a) && isnan(b))
            continue;
        if (a == b)
            continue; /* equal infinities */
        if (!(fabs(a - b) <= 1e-7 + 1e-3 * fabs(b))) {
            snprintf(why, wl, "element %lld: %.9g, expected %.9g", (long long)i, a, b);
            return 1;
        }
    }
    return 0;
}

/* One run, in the child process: result code, message in why. */
static int run_one(const void *buf, size_t len, const char *dir, const unsigned char *tocon, char *why,
                   size_t wl) {
    struct qt_err err = {0};
    struct qt_graph *g = NULL;
    struct qt_exec *x = NULL;
    char path[1400];
    int r = R_PASS;
    if (qt_graph_load_mem(&g, buf, len, "model.onnx", &err)) {
        snprintf(why, wl, "%s", err.msg);
        return R_REFUSED;
    }
    if (qt_exec_new(&x, g, 1, 1, &err)) {
        snprintf(why, wl, "%s", err.msg);
        r = R_REFUSED;
        goto out;
    }
    /* data files are numbered over the shipped model's graph inputs */
    for (int i = 0, k = 0; i < g->ninputs; i++, k++) {
        while (tocon && tocon[k])
            k++;
        struct qt_tensor *t;
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, k);
        if (load_pb(path, &t, &err)) {
            snprintf(why, wl, "%s", err.msg);
            r = R_REFUSED;
            goto out;
        }
        const struct qt_tensor *in = qt_exec_input_tensor(x, i);
        if (in->nbytes != t->nbytes || in->dtype != t->dtype || in->ndim != t->ndim ||
            memcmp(in->dims, t->dims, sizeof(int64_t) * (size_t)t->ndim)) {
            char b1[160], b2[160];
            snprintf(why, wl, "input %d: planned %s %s, the test feeds %s %s", i, qt_dtype_name(in->dtype),
                     qt_dims_str(in->ndim, in->dims, b1, sizeof b1), qt_dtype_name(t->dtype),
                     qt_dims_str(t->ndim, t->dims, b2, sizeof b2));
            r = R_REFUSED;
        } else {
            memcpy((void *)in->data, t->data, t->nbytes);
        }
        qt_tensor_free(t);
        if (r)
            goto out;
    }
    if (qt_exec_run(x, &err)) {
        snprintf(why, wl, "%s", err.msg);
        r = R_REFUSED;
        goto out;
    }
    for (int i = 0; i < g->noutputs; i++) {
        struct qt_tensor *t;
        snprintf(path, sizeof path, "%s/test_data_set_0/output_%d.pb", dir, i);
        if (load_pb(path, &t, &err)) {
            snprintf(why, wl, "%s", err.msg);
            r = R_REFUSED;
            goto out;
        }
        char w[400];
        const struct qt_tensor *y = qt_exec_output_tensor(x, i);
        if (compare(y, t, w, sizeof w)) {
            /* a listed difference: does qtool give ONNX Runtime's values? */
            const char *base = strrchr(dir, '/');
            int e = expected_idx(base ? base + 1 : dir), same = 0;
            if (e >= 0 && i == 0 && y->dtype == QT_FLOAT && qt_tensor_numel(y) == expected[e].n) {
                same = 1;
                for (int k = 0; k < expected[e].n; k++)
                    same &= fabs(qt_tensor_get(y, k) - expected[e].ort[k]) <= 1e-7 + 1e-3 * fabs(expected[e].ort[k]);
            }
            snprintf(why, wl, "output %d: %s%s", i, w, same ? " (= ONNX Runtime's output)" : "");
            r = R_WRONG;
        }
        qt_tensor_free(t);
        if (r)
            goto out;
    }
out:
    qt_exec_free(x);
    qt_graph_free(g);
    return r;
}

/* Runs run_one in a child; a signal or a silent exit is a crash. */
static int run_forked(const void *buf, size_t len, const char *dir, const unsigned char *tocon, char *why,
                      size_t wl) {
    int fd[2];
    fflush(stdout);
    if (pipe(fd))
        return snprintf(why, wl, "pipe failed"), R_CRASHED;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return snprintf(why, wl, "fork failed"), R_CRASHED;
    }
    if (pid == 0) {
        close(fd[0]);
        alarm(60);
        char w[600] = "";
        unsigned char r = (unsigned char)run_one(buf, len, dir, tocon, w, sizeof w);
        if (write(fd[1], &r, 1) != 1 || write(fd[1], w, strlen(w) + 1) < 0)
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    unsigned char r = 0xff;
    char w[601] = "";
    ssize_t got = read(fd[0], &r, 1);
    size_t off = 0;
    ssize_t k;
    while (got == 1 && off < sizeof w - 1 && (k = read(fd[0], w + off, sizeof w - 1 - off)) > 0)
        off += (size_t)k;
    w[off] = 0;
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) {
        snprintf(why, wl, "%s", WTERMSIG(st) == SIGALRM ? "no result in 60 s" : strsignal(WTERMSIG(st)));
        return R_CRASHED;
    }
    if (got != 1 || r >= R_N || !WIFEXITED(st) || WEXITSTATUS(st)) {
        snprintf(why, wl, "child exited without a result");
        return R_CRASHED;
    }
    snprintf(why, wl, "%s", w);
    return r;
}

/* Refusal reasons grouped: quoted names become '*', numbers N. */
struct reason {
    char *key;
    int count;
    char example[80];
};
static struct reason *reasons;
static int nreasons;

static void add_reason(const char *variant, const char *msg, const char *test) {
    char key[600];
    size_t o = (size_t)snprintf(key, sizeof key, "[%s] ", variant);
    for (const char *p = msg; *p && o < sizeof key - 4; p++) {
        if (*p == '\'') {
            const char *e = strchr(p + 1, '\'');
            if (e) {
                key[o++] = '*';
                p = e;
                continue;
            }
        }
        if (isdigit((unsigned char)*p)) {
            while (isdigit((unsigned char)p[1]))
                p++;
            key[o++] = 'N';
            continue;
        }
        key[o++] = *p;
    }
    key[o] = 0;
    for (int i = 0; i < nreasons; i++)
        if (!strcmp(reasons[i].key, key)) {
            reasons[i].count++;
            return;
        }
    reasons = realloc(reasons, sizeof *reasons * (size_t)(nreasons + 1));
    reasons[nreasons].key = strdup(key);
    reasons[nreasons].count = 1;
    snprintf(reasons[nreasons].example, sizeof reasons[nreasons].example, "%s", test);
    nreasons++;
}

static int reason_cmp(const void *a, const void *b) {
    const struct reason *x = a, *y = b;
    return x->count != y->count ? y->count - x->count : strcmp(x->key, y->key);
}

int main(int argc, char **argv) {
    char root[1024];
    const char *sh = getenv("QT_SHARED");
    if (argc > 1)
        snprintf(root, sizeof root, "%s", argv[1]);
    else
        snprintf(root, sizeof root, "%s/onnx-node-tests", sh && *sh ? sh : "../shared");
    char **tests = NULL;
    int nt = t_list_dir(root, "test_", &tests);
    if (nt <= 0) {
        T_SKIP("%s is absent: the ONNX node tests are not run", root);
        return t_done();
    }
    int count[2][R_N] = {{0}};
    int ours = 0, others = 0, explained = 0, opset_refused = 0;
    static const char *const vname[2] = {"shipped", "constants"};
    for (int t = 0; t < nt; t++) {
        char dir[1200], path[1300], why[700];
        void *buf = NULL;
        size_t len = 0;
        struct qt_err err = {0};
        snprintf(dir, sizeof dir, "%s/%s", root, tests[t]);
        snprintf(path, sizeof path, "%s/model.onnx", dir);
        if (qt_read_file(path, 0, &buf, &len, &err)) {
            T_OK(0, "%s: %s", tests[t], err.msg);
            continue;
        }
        Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
        if (!m || !m->graph) {
            T_OK(0, "%s: model.onnx is not a ModelProto", tests[t]);
            free(buf);
            continue;
        }
        const char *miss = missing_op(m);
        if (miss) {
            printf("# %s: not run (operator %s)\n", tests[t], miss);
            others++;
            onnx__model_proto__free_unpacked(m, NULL);
            free(buf);
            continue;
        }
        ours++;
        unsigned char tocon[64] = {0};
        size_t clen = 0;
        void *cbuf = m->graph->n_input < 64 ? to_constants(m, dir, tocon, &clen) : NULL;
        onnx__model_proto__free_unpacked(m, NULL);
        for (int v = 0; v < 2; v++) {
            if (v == 1 && !cbuf)
                break;
            int r = v == 0 ? run_forked(buf, len, dir, NULL, why, sizeof why)
                           : run_forked(cbuf, clen, dir, tocon, why, sizeof why);
            int e = r == R_WRONG && strstr(why, "(= ONNX Runtime's output)") ? expected_idx(tests[t]) : -1;
            const char *exp = e >= 0 ? expected[e].why : NULL;
            int isopset = r == R_REFUSED && strstr(why, "opset") != NULL;
            count[v][r]++;
            if (r == R_REFUSED)
                add_reason(vname[v], why, tests[t]);
            opset_refused += isopset;
            explained += exp != NULL;
            int good = r == R_PASS || (r == R_REFUSED && !isopset) || exp;
            T_OK(good, "%s [%s]: %s%s%s%s%s", tests[t], vname[v], r_name[r], r ? ": " : "", r ? why : "",
                 exp ? "; expected: " : "", exp ? exp : "");
        }
        free(cbuf);
        free(buf);
    }
    for (int v = 0; v < 2; v++)
        printf("# %s: %d pass, %d refused, %d wrong, %d crashed\n", vname[v], count[v][R_PASS],
               count[v][R_REFUSED], count[v][R_WRONG], count[v][R_CRASHED]);
    qsort(reasons, (size_t)nreasons, sizeof *reasons, reason_cmp);
    for (int i = 0; i < nreasons; i++)
        printf("# refused %4d: %s (e.g. %s)\n", reasons[i].count, reasons[i].key, reasons[i].example);
    printf("# node tests: %d in %s, %d use only qtool's operators, %d others not run; "
           "%d refused for the opset, %d wrong values explained\n",
           nt, root, ours, others, opset_refused, explained);
    for (int i = 0; i < nt; i++)
        free(tests[i]);
    free(tests);
    for (int i = 0; i < nreasons; i++)
        free(reasons[i].key);
    free(reasons);
    return t_done();
}
