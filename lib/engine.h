/*
 * engine.h: the engine's inside, shared by lib/ (never by cli/).
 *
 * A model is a struct qt_graph: values (named tensors: graph inputs,
 * initializers, activations) and nodes that read and write them by index.
 * The graph is independent of protobuf; lib/onnx converts both ways and keeps
 * the original protobuf pieces so unchanged parts are written back verbatim.
 *
 * A struct qt_exec plans the graph for one batch size: it infers every
 * value's dtype and shape, folds everything computable without the inputs
 * (initializers, shape glue) into constants, and lays the remaining
 * activations out in one arena by liveness.
 *
 * Operators: one file per ONNX operator in lib/ops/, one line in ops.def,
 * a struct qt_op that holds everything about it (attribute parsing, shape
 * inference, forward, backward and later integer kernels). Training plans
 * (qt_exec_new_train) run the backward passes in reverse order.
 */
#ifndef QT_ENGINE_H
#define QT_ENGINE_H

#include "qtool.h"

#include <stdbool.h>
#include <stdlib.h>

/* ---- attributes ------------------------------------------------------- */

enum qt_attr_type { /* ONNX AttributeProto.AttributeType numbers */
    QT_ATTR_UNDEF = 0,
    QT_ATTR_FLOAT = 1,
    QT_ATTR_INT = 2,
    QT_ATTR_STRING = 3,
    QT_ATTR_TENSOR = 4,
    QT_ATTR_GRAPH = 5,
    QT_ATTR_FLOATS = 6,
    QT_ATTR_INTS = 7,
    QT_ATTR_STRINGS = 8,
};

struct qt_attr {
    char *name;
    int type;
    int64_t i;
    float f;
    char *s;            /* STRING, NUL-terminated */
    int n;              /* INTS / FLOATS / STRINGS count */
    int64_t *ints;
    float *floats;
    char **strings;
    struct qt_tensor *t; /* TENSOR */
};

/* ---- graph ------------------------------------------------------------ */

enum qt_value_kind {
    QT_V_ACT = 0,  /* produced by a node */
    QT_V_INPUT,    /* graph input, fed per batch */
    QT_V_INIT,     /* initializer (weights, constants) */
};

struct qt_value {
    char *name;
    int kind;
    int dtype;           /* declared dtype (graph inputs, initializers); 0 if unknown */
    int ndim;            /* declared shape; dims -1 = dynamic */
    int64_t dims[QT_MAXDIM];
    struct qt_tensor *init; /* INIT: the data (owned) */
    int producer;        /* node index, -1 if none */
    void *orig;          /* Onnx__TensorProto of an unchanged initializer */
};

struct qt_node {
    char *name;
    char *op_type;
    char *domain;        /* "" for ai.onnx */
    int nin, nout;
    int *in, *out;       /* value indices; -1 = omitted optional input */
    int nattr;
    struct qt_attr *attr;
    const struct qt_op *op; /* NULL when unsupported */
    void *priv;          /* op's parsed attributes (free()d with the node) */
    void *orig;          /* Onnx__NodeProto if unchanged since load */
};

struct qt_graph {
    struct qt_value *v;
    int nv, cap_v;
    struct qt_node *n;
    int nn, cap_n;
    int *inputs, ninputs;   /* graph inputs (not initializers) */
    int *outputs, noutputs;
    int opset;              /* ai.onnx opset version */
    int64_t ir_version;
    char *producer;
    struct qt_map *names;   /* value name -> index */
    void *model;            /* the ONNX envelope (lib/onnx), shared by clones */
};

/* An empty graph of ai.onnx opset `opset` (IR version 7), or NULL when out
 * of memory. Loading, cloning and the test drivers start from it. */
struct qt_graph *qt_graph_new(int opset);
/* Value index by name, -1 if absent. */
int qt_graph_find(const struct qt_graph *g, const char *name);
/* Adds a value (name copied) and returns its index, or -1 (out of memory or
 * duplicate name: err filled). */
int qt_graph_add_value(struct qt_graph *g, const char *name, int kind, struct qt_err *err);
/* Adds an initializer value owning t. */
int qt_graph_add_init(struct qt_graph *g, const char *name, struct qt_tensor *t, struct qt_err *err);
/* Adds a node; in/out are value indices; attributes are added with
 * qt_node_set_*. Returns node index or -1. The node's op is looked up. */
int qt_graph_add_node(struct qt_graph *g, const char *name, const char *op_type, const int *in, int nin,
                      const int *out, int nout, struct qt_err *err);
/* A fresh value name "<base><suffix>" not yet in the graph (static buffer
 * of the graph: copy it before the next call). */
const char *qt_graph_unique_name(struct qt_graph *g, const char *base, const char *suffix);
/* Nodes in topological order (malloc'd array of nn indices), QT_EMODEL on a
 * cycle or a value with two producers. */
int qt_graph_topo(const struct qt_graph *g, int **order, struct qt_err *err);
/* Checks each node qtool runs has its output 0 and parses its attributes
 * (op->init); the loader's last step. */
int qt_graph_init_ops(struct qt_graph *g, struct qt_err *err);
/* Recomputes producers, checks every input is defined. */
int qt_graph_check(struct qt_graph *g, struct qt_err *err);
/* Removes nodes marked by dead[i] != 0 and values no longer referenced. */
int qt_graph_compact(struct qt_graph *g, const unsigned char *dead, struct qt_err *err);
/* Node / value lookups. */
int qt_graph_find_node(const struct qt_graph *g, const char *name);
/* Consumers of value v: fills up to max node indices, returns the count. */
int qt_graph_consumers(const struct qt_graph *g, int v, int *nodes, int max);
/* Replaces an initializer's data (the old tensor is freed). */
void qt_graph_set_init(struct qt_graph *g, int v, struct qt_tensor *t);
/* Deep copy. */
int qt_graph_clone(struct qt_graph **dst, const struct qt_graph *src, struct qt_err *err);

/* Attributes. The getters return def when absent; a wrong attribute type
 * sets err (sticky: check err->code once after parsing) and returns def. */
const struct qt_attr *qt_attr_find(const struct qt_node *n, const char *name);
int64_t qt_attr_int(const struct qt_node *n, const char *name, int64_t def, struct qt_err *err);
float qt_attr_float(const struct qt_node *n, const char *name, float def, struct qt_err *err);
const char *qt_attr_str(const struct qt_node *n, const char *name, const char *def, struct qt_err *err);
/* INTS: count (or -1 if absent), *v points into the node. */
int qt_attr_ints(const struct qt_node *n, const char *name, const int64_t **v, struct qt_err *err);
int qt_attr_floats(const struct qt_node *n, const char *name, const float **v, struct qt_err *err);
const struct qt_tensor *qt_attr_tensor(const struct qt_node *n, const char *name, struct qt_err *err);
int qt_node_set_int(struct qt_node *n, const char *name, int64_t v);
int qt_node_set_float(struct qt_node *n, const char *name, float v);
int qt_node_set_ints(struct qt_node *n, const char *name, const int64_t *v, int cnt);
int qt_node_set_str(struct qt_node *n, const char *name, const char *s);
/* Marks a node as changed (it is then re-encoded on save) and re-parses its
 * attributes. */
int qt_node_changed(struct qt_graph *g, int node, struct qt_err *err);

/* ---- tensors ---------------------------------------------------------- */

/* malloc'd tensor with zeroed data; NULL on overflow or out of memory. */
struct qt_tensor *qt_tensor_new(int dtype, int ndim, const int64_t *dims);
struct qt_tensor *qt_tensor_clone(const struct qt_tensor *t);
void qt_tensor_free(struct qt_tensor *t);
int64_t qt_tensor_numel(const struct qt_tensor *t);
/* Element i as double / int64 (any numeric dtype). */
double qt_tensor_get(const struct qt_tensor *t, int64_t i);
int64_t qt_tensor_geti(const struct qt_tensor *t, int64_t i);
/* IEEE half <-> float32 (round to nearest even; NaN and infinities kept). */
float qt_half_to_float(uint16_t h);
uint16_t qt_float_to_half(float f);

/* ---- operators -------------------------------------------------------- */

struct qt_exec;

enum qt_op_flags {
    QT_OPF_SHAPE_ONLY = 1, /* output depends only on the input's shape (Shape, Size) */
    QT_OPF_ALIAS = 2,      /* output 0 may share input 0's buffer (Reshape, Flatten...) */
    QT_OPF_EMPTY = 4,      /* runs on zero-sized tensors (shape glue: Shape, Concat, Slice...); every
                              other op whose input 0 or any output has a zero dimension is refused
                              at plan time, naming the node */
    QT_OPF_POST_ACT = 8,   /* fwd applies x->post[node]: the executor may fuse a following
                            * QT_QA_* activation into it (Conv) */
};

/* What an operator means to quantization: lib/quant (plan, QDQ export,
 * calibration, bias correction, layer-wise tuning), lib/int8 (lowering),
 * lib/eval (report) and lib/train (QAT graph) read these facts and never
 * the op's name. lib/ops/README.md says how to make an op quantizable. */
enum qt_op_qrole {
    QT_QR_NONE = 0, /* stays float */
    QT_QR_COMPUTE,  /* weighted (Conv, Gemm, MatMul): activation input 0, weight input .weight
                     * (a constant of rank .wrank when set) quantized per channel along
                     * .weight_axis, int32 bias input .bias; own output parameters */
    QT_QR_BINARY,   /* elementwise on two activations (Add, Mul): own output parameters */
    QT_QR_CONCAT,   /* every input and the output share one set of parameters */
    QT_QR_PASS,     /* moves values without changing them (MaxPool, Reshape...): input 0
                     * and the output share parameters */
    QT_QR_UNARY,    /* one activation in, own output parameters (pools, Sigmoid, Relu...) */
};
enum qt_qflags {
    QT_QF_FUSE_ACT = 1,    /* a following QT_QA_* activation joins its output: one
                            * quantized unit (as ONNX Runtime fuses Conv+Relu) */
    QT_QF_CONV_KERNEL = 2, /* weight is a kernel [M, C/group, k...] with a group attribute */
    QT_QF_ABSORB_BN = 4,   /* a following BatchNormalization folds into weight and bias
                            * (along .weight_axis) */
    QT_QF_BN = 8,          /* BatchNormalization: inputs 1..4 are scale, bias, mean, var */
    QT_QF_BOUNDED = 16,    /* the output lies in [.lo, .hi] whatever the input (Softmax
                            * [0, 1], GELU [-0.17, inf)): calibration clamps its range there */
    QT_QF_BIAS = 32,       /* Add: with a constant other input after a weighted node (MatMul
                            * then Add, as torch exports Linear on 3-D inputs) it is that
                            * node's bias: one unit, quantized after the Add only */
    QT_QF_FIXED = 64,      /* with QT_QF_BOUNDED: the output range is [.lo, .hi] exactly,
                            * whatever calibration sees (Softmax: [0, 255/256], uint8 scale
                            * 1/256, zero point 0, which ONNX Runtime's QLinearSoftmax assumes) */
};
enum qt_qact { /* as the activation that follows a QT_QF_FUSE_ACT op */
    QT_QA_NONE = 0,
    QT_QA_RELU, /* max(x, 0) */
    QT_QA_CLIP, /* clamp to min/max (attributes before opset 11, inputs 1 and 2 after) */
};
enum qt_qlower { /* int8 lowering of DequantizeLinear -> op -> QuantizeLinear (lib/int8/lower.c) */
    QT_QL_NONE = 0,
    QT_QL_LINEAR,  /* QLinearConv / QLinearMatMul inputs: x, xs, xz, w, ws, wz, ys, yz[, bias] */
    QT_QL_GEMM,    /* com.microsoft QGemm: x, xs, xz, w, ws, wz, bias[, ys, yz]; float output allowed */
    QT_QL_ELTWISE, /* com.microsoft QLinearAdd / QLinearGlobalAveragePool: each input's x, s, z, then ys, yz */
};
struct qt_conv_shape;
/* A pattern of several nodes that is quantized as one unit (the decomposed
 * LayerNorm and GELU older opsets export): its input `in` and the output of
 * node `out` are quantized, the nodes in between stay float. */
#define QT_QUNIT_MAX 16
struct qt_qunit {
    int in;                      /* the unit's activation input (a value) */
    int out;                     /* the node whose output 0 is the unit's output */
    int n, nodes[QT_QUNIT_MAX];  /* every node of the unit, out included */
    int bounded;                 /* the output lies in [lo, hi] */
    float lo, hi;
};
struct qt_qfacts {
    unsigned char role;   /* QT_QR_* */
    unsigned char flags;  /* QT_QF_* */
    unsigned char act;    /* QT_QA_* */
    signed char weight;   /* QT_QR_COMPUTE: weight input (1) */
    signed char bias;     /* QT_QR_COMPUTE: bias input, 0 = none */
    unsigned char wrank;  /* QT_QR_COMPUTE: the weight rank the quantizer handles, 0 = any */
    unsigned char lower;  /* QT_QL_* */
    unsigned char lower_contrib; /* the lowered op is com.microsoft */
    const char *lower_op; /* the integer op the QDQ pattern lowers to */
    float lo, hi;         /* QT_QF_BOUNDED: the output's bounds (-INFINITY / INFINITY: open) */
    /* The role when it depends on attributes (Resize: by mode); NULL: .role. */
    int (*role_of)(const struct qt_graph *g, const struct qt_node *n);
    /* The weight's output-channel axis for a weight of wndim dims; NULL: 0. */
    int (*weight_axis)(const struct qt_node *n, int wndim);
    /* Layer-wise tuning (lib/quant/finetune.c): fills s when the node, on
     * the plan's current inputs, is a convolution; 1 yes, 0 no, -1 on error
     * (err filled). NULL: never. */
    int (*as_conv)(const struct qt_exec *x, const struct qt_node *n, struct qt_conv_shape *s, struct qt_err *err);
    /* The op starts a multi-node pattern quantized as one unit (the
     * decomposed LayerNorm at its first ReduceMean, GELU at its Erf): fills
     * u and returns 1 when node n is such a pattern whose inner values are
     * read by nothing outside it, else 0. NULL: never. */
    int (*unit)(const struct qt_graph *g, int n, struct qt_qunit *u);
};

struct qt_op {
    const char *name;   /* ONNX op_type */
    const char *domain; /* NULL or "" = ai.onnx */
    unsigned flags;
    /* Parses and checks attributes into n->priv. May be NULL. */
    int (*init)(struct qt_graph *g, struct qt_node *n, struct qt_err *err);
    /* Sets dtype and dims of every output from the inputs' (x->t[]), whose
     * data is there when the input is constant (x->isconst). May record
     * scratch needs with qt_exec_scratch(). */
    int (*infer)(struct qt_exec *x, const struct qt_node *n, struct qt_err *err);
    /* Computes the outputs. In a training plan (x->training) BatchNormalization
     * uses batch statistics, Dropout drops, and ops keep in x->save[node]
     * what their backward needs. */
    int (*fwd)(struct qt_exec *x, const struct qt_node *n, struct qt_err *err);
    /* Backward (training plans): from the output gradients (qt_gout) and the
     * forward's inputs and outputs, which are still intact, ADDS the input
     * gradients into qt_gin(x, n, i) for every input that has one (NULL: no
     * gradient wanted). Same determinism rule as fwd: never split a
     * reduction (weight gradients sum over the batch in one task per
     * output row). NULL: the op cannot be trained through (found at plan
     * time, naming the node). */
    int (*bwd)(struct qt_exec *x, const struct qt_node *n, struct qt_err *err);
    struct qt_qfacts quant; /* zero: stays float */
};

/* Multi-node units (struct qt_qfacts .unit): the LayerNorm that opsets
 * before 17 export as ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div
 * [, Mul, Add], anchored at its first ReduceMean (lib/ops/layernormalization.c),
 * and the GELU exported as Div, Erf, Add, Mul, Mul, anchored at its Erf
 * (lib/ops/unary.c). */
int qt_ln_unit(const struct qt_graph *g, int n, struct qt_qunit *u);
int qt_gelu_unit(const struct qt_graph *g, int n, struct qt_qunit *u);
/* For those matchers: the one node reading v (v no graph output), else -1;
 * 1 when v is a constant float scalar (*val set); the constant behind v
 * through Identity nodes (torch exports parameters of equal value as
 * Identity of one initializer), NULL if none. */
int qt_qunit_reader(const struct qt_graph *g, int v);
int qt_qunit_scalar(const struct qt_graph *g, int v, float *val);
const struct qt_tensor *qt_qunit_const(const struct qt_graph *g, int v);

/* The node's quantization facts (all zero for an unsupported op). */
extern const struct qt_qfacts qt_qfacts_none;
static inline const struct qt_qfacts *qt_qf(const struct qt_node *n) {
    return n->op ? &n->op->quant : &qt_qfacts_none;
}
/* The output-channel axis of a QT_QR_COMPUTE node's weight of wndim dims. */
static inline int qt_qf_weight_axis(const struct qt_node *n, int wndim) {
    return n->op && n->op->quant.weight_axis ? n->op->quant.weight_axis(n, wndim) : 0;
}
/* Float bounds of a QT_QA_* activation node: Relu [0, inf); Clip its min
 * and max, -inf/inf when absent, NaN when not a constant float scalar.
 * Returns 0 (bounds -inf, inf) when n is no such activation. */
int qt_act_bounds(const struct qt_graph *g, const struct qt_node *n, float *lo, float *hi);
/* The constant tensor behind value v: an initializer or an ai.onnx
 * Constant's "value" (owned by the graph), NULL otherwise. */
const struct qt_tensor *qt_graph_const(const struct qt_graph *g, int v);
/* Operators recognised by identity: the QDQ format itself, and the layer
 * pairs cross-layer equalization rescales (lib/quant/cle.c: it reads Conv's
 * and Gemm's weight layouts and attributes, through a GlobalAveragePool and
 * a Flatten). */
extern const struct qt_op qt_op_quantizelinear, qt_op_dequantizelinear, qt_op_constant;
extern const struct qt_op qt_op_conv, qt_op_gemm, qt_op_globalaveragepool, qt_op_flatten;

/* The op for (domain, op_type), NULL if qtool does not run it. */
const struct qt_op *qt_op_find(const char *domain, const char *op_type);
/* Every registered op, for `qtool inspect --ops` and tests. */
int qt_op_count(void);
const struct qt_op *qt_op_at(int i);

/* ---- execution -------------------------------------------------------- */

struct qt_pool;

typedef void (*qt_task_fn)(void *arg, int64_t i0, int64_t i1, int tid);

struct qt_exec {
    struct qt_graph *g;
    int batch;
    int nthreads;
    struct qt_pool *pool;
    struct qt_tensor *t;      /* per value: dtype, dims, data for this plan */
    unsigned char *isconst;   /* per value: known at plan time */
    unsigned char *owned;     /* per value: t[v].data malloc'd by the plan */
    int *steps, nsteps;       /* nodes run per batch, topological order */
    unsigned char *arena;     /* activation buffers */
    size_t arena_bytes;
    float *scratch;           /* per-thread scratch, nthreads * scratch_per floats */
    size_t scratch_per;       /* floats per thread */
    size_t scratch_cap;       /* floats allocated */
    /* activation fusion (QT_EXEC_NOFUSE turns it off): a Conv whose only
     * reader is a Relu or a Clip with constant bounds applies it to its
     * output (post[conv]); the Relu/Clip shares that buffer and is skipped
     * (skip[node]), its after_node hook still called */
    struct qt_post *post;     /* per node */
    unsigned char *skip;      /* per node */
    /* training plans (qt_exec_new_train): see "training" below */
    int training;
    float **grad;             /* per value: gradient buffer (same shape), NULL if none */
    unsigned char *param;     /* per value: a trainable value (gradient kept after backward) */
    int *gzero;               /* per value: backward time that zeroes its gradient first, -1 */
    unsigned char *runb;      /* per step: runs backward (an input needs a gradient) */
    void **save;              /* per node: malloc'd state the op keeps from fwd for bwd */
    uint64_t rng;             /* Dropout's generator state (seeded by the caller) */
    int bn_frozen;            /* BatchNormalization uses running statistics (still trainable) */
    /* called after each node of a run when set (calibration observers):
     * returns 0, an error code (err filled), or QT_HOOK_STOP when done with
     * the batch: qt_exec_run then skips the rest of the graph and returns
     * QT_HOOK_STOP, err untouched */
    int (*after_node)(struct qt_exec *x, int node, void *ud, struct qt_err *err);
    void *after_ud;
    struct qt_exec *sub;      /* QT_EXEC_SUBBATCH: the same graph at batch 1, or NULL */
};
#define QT_HOOK_STOP (-1)

/* ---- streaming an image folder (lib/graph/stream.c) -------------------- */

/* The one loop over the images [0, total) of a dataset, in batches of
 * `batch` (the last one smaller): for each batch, input(ud, nb) says where
 * to load its nb images (with pad, room for `batch`: the rest is zeroed),
 * the images (and labels, when `labels` is set: batch ints) are loaded
 * there, run(ud, in, labels, done, nb) uses them, then progress. Returns 0
 * or the first error (input returns NULL with err filled). */
struct qt_stream {
    struct qt_dataset *ds;
    const struct qt_preproc *pp;
    int c, h, w, total, batch, threads;
    int pad;
    int *labels;
    float *(*input)(void *ud, int nb, struct qt_err *err);
    int (*run)(void *ud, float *in, const int *labels, int done, int nb, struct qt_err *err);
    void *ud;
    void (*progress)(void *, int, int);
    void *progress_ud;
};
int qt_stream_images(const struct qt_stream *s, struct qt_err *err);

/* Streams images [0, total) of ds through g in batches of `batch` (the last
 * batch smaller, with its own executor: padding would skew statistics),
 * calling before_run once a batch is loaded and after_node after every node
 * (which may return QT_HOOK_STOP: the rest of the graph is skipped and the
 * next batch starts). Used by calibration, bias correction and finetune's
 * capture. */
struct qt_image_run {
    const struct qt_preproc *pp;
    int c, h, w, total, batch, threads;
    int exec_flags; /* QT_EXEC_NOFUSE: every node's output visible */
    int (*before_run)(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err);
    int (*after_node)(struct qt_exec *x, int node, void *ud, struct qt_err *err);
    void *ud;
    void (*progress)(void *, int, int);
    void *progress_ud;
};
int qt_run_images(struct qt_graph *g, struct qt_dataset *ds, const struct qt_image_run *r, struct qt_err *err);

enum qt_post_kind { QT_POST_NONE, QT_POST_RELU, QT_POST_CLIP };
struct qt_post {
    int kind;
    float lo, hi; /* QT_POST_CLIP */
};

/* y[i] = act(y[i] + bias) in place for n floats (no bias add when
 * has_bias is 0), exactly as an Add of the bias followed by the Relu or Clip
 * operator would; vectorised for the CPU at hand (lib/graph/exec.c). */
void qt_bias_post(const struct qt_post *p, int has_bias, float bias, float *y, int64_t n);
static inline void qt_post_apply(const struct qt_post *p, float *y, int64_t n) {
    if (p->kind != QT_POST_NONE)
        qt_bias_post(p, 0, 0.f, y, n);
}

/* Input / output i of node n (NULL for an omitted optional input). */
static inline struct qt_tensor *qt_in(struct qt_exec *x, const struct qt_node *n, int i) {
    return i < n->nin && n->in[i] >= 0 ? &x->t[n->in[i]] : NULL;
}
static inline struct qt_tensor *qt_out(struct qt_exec *x, const struct qt_node *n, int i) {
    return i < n->nout && n->out[i] >= 0 ? &x->t[n->out[i]] : NULL;
}
static inline bool qt_in_const(const struct qt_exec *x, const struct qt_node *n, int i) {
    return i < n->nin && n->in[i] >= 0 && x->isconst[n->in[i]];
}
/* Gradient buffers of input / output i in a training plan (NULL: none). */
static inline float *qt_gin(struct qt_exec *x, const struct qt_node *n, int i) {
    return x->grad && i < n->nin && n->in[i] >= 0 ? x->grad[n->in[i]] : NULL;
}
static inline float *qt_gout(struct qt_exec *x, const struct qt_node *n, int i) {
    return x->grad && i < n->nout && n->out[i] >= 0 ? x->grad[n->out[i]] : NULL;
}
/* The node's saved state (x->save): allocated zeroed on first use, bytes
 * fixed for the plan. NULL (err filled) when out of memory. */
void *qt_exec_save(struct qt_exec *x, const struct qt_node *n, size_t bytes, struct qt_err *err);
/* Records that the op needs `floats` floats of scratch per thread. */
void qt_exec_scratch(struct qt_exec *x, size_t floats);
static inline float *qt_scratch(struct qt_exec *x, int tid) {
    return x->scratch ? x->scratch + (size_t)tid * x->scratch_per : NULL;
}
/* Runs fn over [0, ntasks) split in contiguous chunks across the threads.
 * fn must compute each task independently of the split so results are the
 * same for any thread count. */
void qt_parallel_for(struct qt_exec *x, int64_t ntasks, qt_task_fn fn, void *arg);

/* ---- training ----------------------------------------------------------
 *
 * A training plan runs forward with batch statistics, then backward in
 * reverse order. Values marked in params (initializers or graph inputs)
 * get a gradient kept after qt_exec_backward(); every value computed from
 * them gets a transient one. Trainable initializers are not folded into
 * constants and are read in place: an optimizer that steps
 * g->v[v].init->data changes what the next forward computes. No activation
 * fusion and no buffer aliasing; activations live until their producer's
 * backward, gradients from their first writer to their producer's backward,
 * and buffers whose lifetimes do not overlap share the arena. */
int qt_exec_new_train(struct qt_exec **x, struct qt_graph *g, int batch, int nthreads,
                      const unsigned char *params, struct qt_err *err);
/* Backward from the gradients of the graph outputs, which the caller fills
 * (qt_exec_grad of an output) after qt_exec_run. Parameter gradients are
 * zeroed first, so they hold this batch's gradient afterwards. */
int qt_exec_backward(struct qt_exec *x, struct qt_err *err);
/* Gradient buffer of value v (NULL when v has none). */
float *qt_exec_grad(struct qt_exec *x, int v);
/* The one top-1 (lib/core/util.c): numpy's argmax of v[0..n): the first
 * maximum, and the first NaN if there is one (NaN wins); 0 for n <= 0.
 * qt_rank_before(a, b): a ranks before b in that order (NaN first, then
 * larger), for top-k lists that agree with qt_argmax. */
int qt_argmax(const float *v, int64_t n);
static inline int qt_rank_before(float a, float b) {
    return a != a ? b == b : a > b;
}
/* qtool's one PRNG (lib/core/util.c): the next splitmix64 output of a
 * 64-bit state; qt_rand01 maps it to a uniform float in [0, 1). */
uint64_t qt_splitmix64(uint64_t *state);
float qt_rand01(uint64_t *state);

/* Thread pool (lib/core/pool.c). */
int qt_pool_new(struct qt_pool **p, int nthreads, struct qt_err *err);
void qt_pool_free(struct qt_pool *p);
void qt_pool_run(struct qt_pool *p, int64_t ntasks, qt_task_fn fn, void *arg);
int qt_pool_threads(const struct qt_pool *p);

/* Shape helpers for infer(). */
int qt_set_out(struct qt_exec *x, const struct qt_node *n, int i, int dtype, int ndim, const int64_t *dims,
               struct qt_err *err);
/* numpy broadcast of a and b into out; QT_EMODEL naming node n on mismatch. */
int qt_broadcast(const struct qt_node *n, int nd_a, const int64_t *a, int nd_b, const int64_t *b, int *nd_out,
                 int64_t *out, struct qt_err *err);
/* Normalises a possibly negative axis against ndim; QT_EMODEL when out of range. */
int qt_axis(const struct qt_node *n, int64_t axis, int ndim, int *out, struct qt_err *err);
/* Common error: "node 'x' (Op): ..." */
int qt_node_err(const struct qt_node *n, int code, struct qt_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Op init helper for ops that read input 0: n->priv = a zeroed block of
 * `size` bytes; NULL with err filled when out of memory or input 0 is
 * missing ("needs input data"). */
void *qt_node_priv(struct qt_node *n, size_t size, struct qt_err *err);

/* Memory helpers that report failure through err. */
void *qt_malloc(size_t n, struct qt_err *err);
void *qt_calloc(size_t n, size_t size, struct qt_err *err);
char *qt_strdup(const char *s);

/* SHA-256 of a buffer as 64 hex digits (lib/core/sha256.c). */
void qt_sha256_hex(const void *data, size_t len, char out[65]);

/* ---- name map (lib/core/map.c) ----------------------------------------- */

struct qt_map;
struct qt_map *qt_map_new(void);
void qt_map_free(struct qt_map *m);
/* Returns 0, or -1 out of memory. Key copied. Replaces an existing value. */
int qt_map_put(struct qt_map *m, const char *key, int value);
int qt_map_get(const struct qt_map *m, const char *key); /* -1 if absent */
void qt_map_del(struct qt_map *m, const char *key);

/* One formatted line (at most 511 bytes) to a library log callback; no-op
 * when log is NULL (lib/core/util.c). The callers' logf_ wrappers. */
#include <stdarg.h>
void qt_logv(void (*log)(void *, const char *), void *ud, const char *fmt, va_list ap);

#endif
