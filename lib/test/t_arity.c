/* t_arity.c: every registered operator against inputs and outputs a
 * hostile or broken file can give it: no inputs, too many, an omitted
 * (empty-named) input at each position, inputs of the wrong type or rank
 * (seventeen kinds: float activations; float, int64, uint8 and bool initializers;
 * float and uint8 scalars; a [3] vector, a [2,2] matrix, a valid and a
 * hostile int64 shape; zero-sized and degenerate shapes: an activation
 * [N,0,4,4] and one [N,1,1,1], float [2,0,4,4], [0,3,4,4] and [0], int64
 * [0], uint8 [0,4]), one kind followed by another, the quantized
 * operators' input orders, no output, an empty output 0, extra outputs;
 * with and without a set of common attributes. The CI fuzzer found one such case (Add with an empty output
 * ran and dereferenced NULL); this walks all of them systematically.
 *
 * Each variant goes through what loading a file does (qt_graph_check,
 * qt_graph_init_ops), planning at batch 2 and one run. The check per
 * operator: every variant either runs or fails with a non-zero status and a
 * message that names the node ('arity') or the graph input; under the
 * sanitizer build (make san, .ci/run) any out-of-bounds read or NULL
 * dereference on the way aborts the driver. The count of variants that ran
 * to the end is printed, so a refactor that starts refusing valid arities
 * shows up in the log. Planned memory is capped at 64 MiB
 * (QT_MEM_LIMIT_MB) so a shape read from an int64 input cannot exhaust the
 * machine. */
#include "engine.h"
#include "test/tap.h"

#include <stdlib.h>
#include <string.h>

enum kind { K_ACT, K_FLOAT, K_INT64, K_SCALAR, K_ONES, K_VEC, K_U8, K_U8S, K_MAT, K_BOOL,
            /* zero-sized and degenerate shapes */
            K_ACTZ, K_ACT1, K_ZERO, K_ZEROO, K_ZERO1, K_I64Z, K_U8Z,
            K_NKIND, K_U8M /* only in the quantized patterns */ };
static const char *const kind_name[] = {"activation", "float initializer", "int64 initializer", "float scalar",
                                        "int64 [2,1,1,1]", "float [3]", "uint8 initializer", "uint8 scalar",
                                        "float [2,2]", "bool initializer", "activation [N,0,4,4]",
                                        "activation [N,1,1,1]", "float [2,0,4,4]", "float [0,3,4,4]", "float [0]",
                                        "int64 [0]",
                                        "uint8 [0,4]", "", "uint8 [4,4]"};

/* input i of the variant: its kind, or -1 for an omitted (empty) input */
struct variant {
    int nin, in[10];
    int nout, out0_empty;
    int attrs;
};

static int add_input(struct qt_graph *g, int i, int kind, struct qt_err *err) {
    char name[16];
    snprintf(name, sizeof name, "in%d", i);
    if (kind == K_ACT || kind == K_ACTZ || kind == K_ACT1) {
        int v = qt_graph_add_value(g, name, QT_V_INPUT, err);
        struct qt_value *val = &g->v[v];
        val->dtype = QT_FLOAT;
        val->ndim = 4;
        val->dims[0] = -1;
        val->dims[1] = kind == K_ACTZ ? 0 : kind == K_ACT1 ? 1 : 3;
        val->dims[2] = kind == K_ACT1 ? 1 : 4;
        val->dims[3] = kind == K_ACT1 ? 1 : 4;
        int *ni = realloc(g->inputs, sizeof(int) * (size_t)(g->ninputs + 1));
        ni[g->ninputs++] = v;
        g->inputs = ni;
        return v;
    }
    struct qt_tensor *t;
    if (kind == K_FLOAT) {
        t = qt_tensor_new(QT_FLOAT, 4, (const int64_t[]){2, 3, 4, 4});
        for (int64_t k = 0; k < qt_tensor_numel(t); k++)
            ((float *)t->data)[k] = 0.25f * (float)(k % 9) - 1.0f;
    } else if (kind == K_INT64) {
        t = qt_tensor_new(QT_INT64, 1, (const int64_t[]){4});
        int64_t v[4] = {1, 2, 0, -1};
        memcpy(t->data, v, sizeof v);
    } else if (kind == K_ONES) {
        t = qt_tensor_new(QT_INT64, 1, (const int64_t[]){4});
        int64_t v[4] = {2, 1, 1, 1};
        memcpy(t->data, v, sizeof v);
    } else if (kind == K_VEC) {
        t = qt_tensor_new(QT_FLOAT, 1, (const int64_t[]){3});
        for (int k = 0; k < 3; k++)
            ((float *)t->data)[k] = 0.5f + (float)k;
    } else if (kind == K_U8) {
        t = qt_tensor_new(QT_UINT8, 4, (const int64_t[]){2, 3, 4, 4});
        for (int64_t k = 0; k < qt_tensor_numel(t); k++)
            ((uint8_t *)t->data)[k] = (uint8_t)(k * 37);
    } else if (kind == K_MAT) {
        t = qt_tensor_new(QT_FLOAT, 2, (const int64_t[]){2, 2});
        for (int k = 0; k < 4; k++)
            ((float *)t->data)[k] = 1.0f - 0.5f * (float)k;
    } else if (kind == K_BOOL) {
        t = qt_tensor_new(QT_BOOL, 4, (const int64_t[]){2, 3, 4, 4});
        for (int64_t k = 0; k < qt_tensor_numel(t); k++)
            ((uint8_t *)t->data)[k] = (uint8_t)(k % 3 == 0);
    } else if (kind == K_U8M) {
        t = qt_tensor_new(QT_UINT8, 2, (const int64_t[]){4, 4});
        for (int k = 0; k < 16; k++)
            ((uint8_t *)t->data)[k] = (uint8_t)(k * 41);
    } else if (kind == K_ZERO) {
        t = qt_tensor_new(QT_FLOAT, 4, (const int64_t[]){2, 0, 4, 4});
    } else if (kind == K_ZEROO) {
        t = qt_tensor_new(QT_FLOAT, 4, (const int64_t[]){0, 3, 4, 4});
    } else if (kind == K_ZERO1) {
        t = qt_tensor_new(QT_FLOAT, 1, (const int64_t[]){0});
    } else if (kind == K_I64Z) {
        t = qt_tensor_new(QT_INT64, 1, (const int64_t[]){0});
    } else if (kind == K_U8Z) {
        t = qt_tensor_new(QT_UINT8, 2, (const int64_t[]){0, 4});
    } else if (kind == K_U8S) {
        t = qt_tensor_new(QT_UINT8, 0, NULL);
        *(uint8_t *)t->data = 128;
    } else {
        t = qt_tensor_new(QT_FLOAT, 0, NULL);
        *(float *)t->data = 2.0f;
    }
    return qt_graph_add_init(g, name, t, err);
}

/* Builds the variant's graph for op; returns 0 when it ran, 1 when a step
 * failed properly (err filled, naming the node or a graph value), -1 when a
 * step failed without a usable message. */
static int try_variant(const struct qt_op *op, const struct variant *va, char *why, size_t whylen) {
    struct qt_err err = {0};
    struct qt_graph *g = qt_graph_new(13);
    struct qt_exec *x = NULL;
    int in[10], out[3], rc = 0;
    for (int i = 0; i < va->nin; i++)
        in[i] = va->in[i] < 0 ? -1 : add_input(g, i, va->in[i], &err);
    const char *oname[3] = {"y0", "y1", "y2"};
    for (int i = 0; i < va->nout; i++)
        out[i] = i == 0 && va->out0_empty ? -1 : qt_graph_add_value(g, oname[i], QT_V_ACT, &err);
    int k = qt_graph_add_node(g, "arity", op->name, in, va->nin, out, va->nout, &err);
    struct qt_node *n = &g->n[k];
    free(n->domain);
    n->domain = qt_strdup(op->domain ? op->domain : "");
    n->op = op;
    if (va->attrs) {
        qt_node_set_int(n, "axis", 1);
        qt_node_set_int(n, "to", QT_FLOAT);
        qt_node_set_ints(n, "kernel_shape", (const int64_t[]){1, 1}, 2);
        qt_node_set_ints(n, "axes", (const int64_t[]){1}, 1);
        qt_node_set_ints(n, "perm", (const int64_t[]){0, 1, 3, 2}, 4);
        qt_node_set_int(n, "blocksize", 1);
        qt_node_set_int(n, "fmod", 1);                 /* Mod */
        qt_node_set_str(n, "approximate", "tanh");     /* Gelu */
        qt_node_set_str(n, "reduction", "add");        /* ScatterND */
        qt_node_set_float(n, "epsilon", 1e-3f);        /* LayerNormalization */
    }
    g->outputs = malloc(sizeof(int) * 3);
    for (int i = 0; i < va->nout; i++)
        if (out[i] >= 0)
            g->outputs[g->noutputs++] = out[i];
    if (g->noutputs == 0)
        g->outputs[g->noutputs++] = in[0] >= 0 && va->nin ? in[0] : qt_graph_add_value(g, "y0", QT_V_ACT, &err);
    if (err.code)
        rc = 1;
    else if (qt_graph_check(g, &err) || qt_graph_init_ops(g, &err) || qt_exec_new(&x, g, 2, 1, &err))
        rc = 1;
    else {
        for (int i = 0; i < g->ninputs; i++) {
            float *p = qt_exec_input(x, i);
            int64_t ne = qt_tensor_numel(qt_exec_input_tensor(x, i));
            for (int64_t e = 0; e < ne; e++)
                p[e] = 0.5f * (float)(e % 7) - 1.5f;
        }
        if (qt_exec_run(x, &err))
            rc = 1;
    }
    if (rc && (err.code == 0 || !err.msg[0] ||
               (!strstr(err.msg, "'arity'") && !strstr(err.msg, "'in") && !strstr(err.msg, "'y")))) {
        snprintf(why, whylen, "code %d, message \"%.200s\"", err.code, err.msg);
        rc = -1;
    }
    qt_exec_free(x);
    qt_graph_free(g);
    return rc;
}

static void describe(const struct variant *va, char *buf, size_t len) {
    int o = snprintf(buf, len, "%d inputs (", va->nin);
    for (int i = 0; i < va->nin && o < (int)len; i++)
        o += snprintf(buf + o, len - (size_t)o, "%s%s", i ? ", " : "", va->in[i] < 0 ? "omitted" : kind_name[va->in[i]]);
    if (o < (int)len)
        snprintf(buf + o, len - (size_t)o, "), %d outputs%s%s", va->nout, va->out0_empty ? ", output 0 empty" : "",
                 va->attrs ? ", common attributes" : "");
}

int main(void) {
    setenv("QT_MEM_LIMIT_MB", "64", 1);
    struct variant vs[4096];
    int nv = 0;
    for (int attrs = 0; attrs < 2; attrs++) {
        /* every input of one kind, 0..5 inputs */
        for (int kind = 0; kind < K_NKIND; kind++)
            for (int nin = 0; nin <= 5; nin++) {
                struct variant v = {.nin = nin, .nout = 1, .attrs = attrs};
                for (int i = 0; i < nin; i++)
                    v.in[i] = kind;
                vs[nv++] = v;
            }
        /* one kind first, another after it (shapes, axes, bounds, scales and zero points) */
        for (int nin = 2; nin <= 5; nin++)
            for (int first = 0; first < K_NKIND; first++)
                for (int kind = 0; kind < K_NKIND; kind++) {
                    if (kind == first)
                        continue;
                    struct variant v = {.nin = nin, .nout = 1, .attrs = attrs, .in = {first}};
                    for (int i = 1; i < nin; i++)
                        v.in[i] = kind;
                    vs[nv++] = v;
                }
        /* quantized operators: uint8 data with (scale, zero point) pairs in
         * the orders of QLinearConv/MatMul/Add (8), QLinearGlobalAveragePool
         * (5), QLinearConcat (2 + 3k), MatMulInteger (4), QuantizeLinear (3), QGemm,
         * each also with one input omitted */
        static const char *const qpat[] = {"uspuspsp", "uspsp", "spusp", "spuspusp", "uuppp", "usp", "uspuspspf",
                                           "uspmspsp", "umpp", "mspmsp", "mspmspfsp"};
        for (size_t q = 0; q < sizeof qpat / sizeof qpat[0]; q++) {
            int len = (int)strlen(qpat[q]);
            for (int gap = -1; gap < len; gap++) {
                struct variant v = {.nin = len, .nout = 1, .attrs = attrs};
                for (int i = 0; i < len; i++) {
                    char c = qpat[q][i];
                    v.in[i] = i == gap ? -1 : c == 'u' ? K_U8 : c == 's' ? K_SCALAR : c == 'p' ? K_U8S : c == 'm' ? K_U8M : K_VEC;
                }
                vs[nv++] = v;
            }
        }
        /* one omitted input at each position */
        for (int nin = 1; nin <= 5; nin++)
            for (int gap = 0; gap < nin; gap++) {
                struct variant v = {.nin = nin, .nout = 1, .attrs = attrs};
                for (int i = 0; i < nin; i++)
                    v.in[i] = i == gap ? -1 : i == 0 ? K_ACT : K_FLOAT;
                vs[nv++] = v;
            }
        /* outputs: none, output 0 empty (with and without an output 1), three */
        struct variant o0 = {.nin = 1, .nout = 0, .attrs = attrs, .in = {K_ACT}};
        struct variant o1 = {.nin = 1, .nout = 1, .out0_empty = 1, .attrs = attrs, .in = {K_ACT}};
        struct variant o2 = {.nin = 2, .nout = 2, .out0_empty = 1, .attrs = attrs, .in = {K_ACT, K_ACT}};
        struct variant o3 = {.nin = 2, .nout = 3, .attrs = attrs, .in = {K_ACT, K_ACT}};
        vs[nv++] = o0;
        vs[nv++] = o1;
        vs[nv++] = o2;
        vs[nv++] = o3;
    }
    int total_ran = 0;
    for (int i = 0; i < qt_op_count(); i++) {
        const struct qt_op *op = qt_op_at(i);
        int ran = 0, bad = 0;
        char why[400] = "", what[200] = "";
        for (int k = 0; k < nv; k++) {
            char w[400];
            int rc = try_variant(op, &vs[k], w, sizeof w);
            ran += rc == 0;
            if (rc < 0 && !bad++) {
                describe(&vs[k], what, sizeof what);
                snprintf(why, sizeof why, "%s", w);
            }
            if (rc == 0 && (vs[k].nout == 0 || vs[k].out0_empty)) {
                if (!bad++) {
                    describe(&vs[k], what, sizeof what);
                    snprintf(why, sizeof why, "ran without its output 0");
                }
            }
        }
        total_ran += ran;
        T_OK(bad == 0, "%s: %d variants, %d ran, the others refused naming the node%s%s%s%s", op->name, nv, ran,
             bad ? "; first bad: " : "", what, bad ? ": " : "", why);
    }
    T_OK(total_ran > 0, "%d of %d variants ran across %d operators", total_ran, nv * qt_op_count(), qt_op_count());
    return t_done();
}
