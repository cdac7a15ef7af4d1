/* exec.c: planning a graph for a batch size and running it.
 *
 * qt_exec_new() walks the nodes in topological order and, for each, infers
 * the output shapes (op->infer). A node whose inputs are all known at plan
 * time (initializers, results of earlier folded nodes, or for Shape-like
 * ops just the input's shape) is run right away and its outputs become
 * constants: that folds PyTorch's shape glue (Shape -> Gather -> Unsqueeze ->
 * Concat -> Reshape) and anything else that does not depend on the images.
 * The remaining nodes are the steps of every run. Their outputs are placed in
 * one arena: each buffer lives from the step that writes it to the last step
 * that reads it, and buffers whose lifetimes do not overlap share memory
 * (greedy first fit, largest first). Reshape-like ops alias their input.
 *
 * With QT_EXEC_SUBBATCH (eval, whose callers read only the outputs) a batch
 * plan of a per-image graph whose weights are small against its activations
 * also keeps a plan of batch 1 (sub_new) and runs the batch image by image
 * on it: layer by layer over 32 images, MobileNetV1's activations (30 MB an
 * image) stream through memory; image by image they stay in the caches
 * (batch 32 float at 1 thread: 258-292 ms -> 221-231 ms). */
#include "engine.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define ALIGN 64

void qt_exec_scratch(struct qt_exec *x, size_t floats) {
    if (floats > x->scratch_per)
        x->scratch_per = floats;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void qt_bias_post(const struct qt_post *p, int has_bias, float bias, float *y, int64_t n) {
    float lo = p->kind == QT_POST_RELU ? 0.f : p->lo, hi = p->hi;
    if (p->kind == QT_POST_NONE) {
        if (has_bias)
            for (int64_t i = 0; i < n; i++)
                y[i] = y[i] + bias;
    } else if (p->kind == QT_POST_RELU) {
        if (has_bias)
            for (int64_t i = 0; i < n; i++) {
                float v = y[i] + bias;
                y[i] = v > lo ? v : lo;
            }
        else
            for (int64_t i = 0; i < n; i++)
                y[i] = y[i] > lo ? y[i] : lo;
    } else {
        for (int64_t i = 0; i < n; i++) {
            float v = has_bias ? y[i] + bias : y[i];
            v = v < lo ? lo : v;
            y[i] = v > hi ? hi : v;
        }
    }
}

void qt_parallel_for(struct qt_exec *x, int64_t ntasks, qt_task_fn fn, void *arg) {
    qt_pool_run(x->pool, ntasks, fn, arg);
}

int qt_set_out(struct qt_exec *x, const struct qt_node *n, int i, int dtype, int ndim, const int64_t *dims,
               struct qt_err *err) {
    struct qt_tensor *t = qt_out(x, n, i);
    char buf[160];
    if (!t)
        return 0;
    if (ndim < 0 || ndim > QT_MAXDIM)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "output has %d dims (at most %d)", ndim, QT_MAXDIM);
    int64_t ne = qt_numel(ndim, dims);
    size_t es = qt_dtype_size(dtype);
    if (ne < 0 || !es || (uint64_t)ne > ((uint64_t)1 << 40) / es)
        return qt_node_err(n, QT_EMODEL, err, "output shape %s is invalid or too large",
                           qt_dims_str(ndim, dims, buf, sizeof buf));
    if ((uint64_t)ne * es > qt_mem_limit())
        return qt_node_err(n, QT_EFAIL, err, "output shape %s needs %llu bytes, more than the memory limit (%zu MiB)",
                           qt_dims_str(ndim, dims, buf, sizeof buf), (unsigned long long)ne * es,
                           qt_mem_limit() >> 20);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int k = 0; k < ndim; k++)
        t->dims[k] = dims[k];
    t->nbytes = (size_t)ne * es;
    return 0;
}

int qt_broadcast(const struct qt_node *n, int na, const int64_t *a, int nb, const int64_t *b, int *nd_out,
                 int64_t *out, struct qt_err *err) {
    int nd = na > nb ? na : nb;
    char ba[160], bb[160];
    for (int i = 0; i < nd; i++) {
        int64_t da = i - (nd - na) >= 0 ? a[i - (nd - na)] : 1;
        int64_t db = i - (nd - nb) >= 0 ? b[i - (nd - nb)] : 1;
        if (da != db && da != 1 && db != 1)
            return qt_node_err(n, QT_EMODEL, err, "shapes %s and %s do not broadcast",
                               qt_dims_str(na, a, ba, sizeof ba), qt_dims_str(nb, b, bb, sizeof bb));
        out[i] = da == 1 ? db : da;
    }
    *nd_out = nd;
    return 0;
}

int qt_axis(const struct qt_node *n, int64_t axis, int ndim, int *out, struct qt_err *err) {
    if (axis < -ndim || axis >= (ndim ? ndim : 1))
        return qt_node_err(n, QT_EMODEL, err, "axis %lld is out of range for %d dims", (long long)axis, ndim);
    *out = (int)(axis < 0 ? axis + ndim : axis);
    return 0;
}

/* ---- planning ---------------------------------------------------------- */

struct buf {
    size_t size, off;
    int first, last; /* steps: written at first, read until last */
    int placed;
};

static int cmp_size(const void *a, const void *b, void *ctx) {
    const struct buf *bufs = ctx;
    const struct buf *x = &bufs[*(const int *)a], *y = &bufs[*(const int *)b];
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

static size_t place(struct buf *bufs, int nb, struct qt_err *err) {
    int *idx = malloc(sizeof(int) * ((size_t)nb + 1));
    int *placed = malloc(sizeof(int) * ((size_t)nb + 1));
    int np = 0;
    size_t total = 0;
    if (!idx || !placed) {
        free(idx);
        free(placed);
        qt_errf(err, QT_ENOMEM, "out of memory planning buffers");
        return (size_t)-1;
    }
    for (int i = 0; i < nb; i++)
        idx[i] = i;
    qsort_r(idx, (size_t)nb, sizeof *idx, cmp_size, bufs);
    for (int k = 0; k < nb; k++) {
        struct buf *b = &bufs[idx[k]];
        size_t sz = (b->size + ALIGN - 1) / ALIGN * ALIGN, off = 0;
        /* placed buffers that overlap in time, by offset: find the first gap */
        for (int moved = 1; moved;) {
            moved = 0;
            for (int j = 0; j < np; j++) {
                struct buf *o = &bufs[placed[j]];
                size_t osz = (o->size + ALIGN - 1) / ALIGN * ALIGN;
                if (o->last < b->first || b->last < o->first)
                    continue;
                if (off < o->off + osz && o->off < off + sz) {
                    off = o->off + osz;
                    moved = 1;
                }
            }
        }
        b->off = off;
        b->placed = 1;
        placed[np++] = idx[k];
        if (off + sz > total)
            total = off + sz;
    }
    free(idx);
    free(placed);
    return total;
}

/* Places the buffers and allocates the arena (zeroed); 0 or the error. */
static int alloc_arena(struct qt_exec *x, struct buf *bufs, int nb, const char *what, struct qt_err *err) {
    size_t total = place(bufs, nb, err);
    if (total == (size_t)-1)
        return err->code;
    if (total > qt_mem_limit())
        return qt_errf(err, QT_EFAIL, "out of memory: %s need %zu MiB, more than the memory limit (%zu MiB)", what,
                       total >> 20, qt_mem_limit() >> 20);
    x->arena_bytes = total;
    x->arena = aligned_alloc(ALIGN, total ? (total + ALIGN - 1) / ALIGN * ALIGN : ALIGN);
    if (!x->arena)
        return qt_errf(err, QT_ENOMEM, "out of memory: %s need %zu bytes", what, total);
    memset(x->arena, 0, total);
    return 0;
}

static int plan_buffers(struct qt_exec *x, struct qt_err *err) {
    struct qt_graph *g = x->g;
    int *bufof = malloc(sizeof(int) * ((size_t)g->nv + 1));
    struct buf *bufs = calloc((size_t)g->nv + 1, sizeof *bufs);
    int nb = 0, rc = 0;
    if (!bufof || !bufs) {
        rc = qt_errf(err, QT_ENOMEM, "out of memory planning buffers");
        goto out;
    }
    for (int v = 0; v < g->nv; v++)
        bufof[v] = -1;
    for (int i = 0; i < g->ninputs; i++) {
        int v = g->inputs[i];
        bufs[nb] = (struct buf){.size = x->t[v].nbytes, .first = -1, .last = -1};
        bufof[v] = nb++;
    }
    for (int s = 0; s < x->nsteps; s++) {
        const struct qt_node *n = &g->n[x->steps[s]];
        for (int j = 0; j < n->nin; j++) {
            int v = n->in[j];
            if (v >= 0 && bufof[v] >= 0 && bufs[bufof[v]].last < s)
                bufs[bufof[v]].last = s;
        }
        for (int j = 0; j < n->nout; j++) {
            int v = n->out[j];
            if (v < 0 || x->isconst[v])
                continue;
            int a = n->nin > 0 ? n->in[0] : -1;
            /* a skipped (fused) activation's input has no other reader */
            if (j == 0 && ((n->op->flags & QT_OPF_ALIAS) || x->skip[x->steps[s]]) && a >= 0 && bufof[a] >= 0 &&
                x->t[a].nbytes == x->t[v].nbytes) {
                bufof[v] = bufof[a];
                continue;
            }
            if (j == 0)
                x->skip[x->steps[s]] = 0; /* not shared: run it (the fused activation is idempotent) */
            bufs[nb] = (struct buf){.size = x->t[v].nbytes, .first = s, .last = s};
            bufof[v] = nb++;
        }
    }
    for (int i = 0; i < g->noutputs; i++) {
        int v = g->outputs[i];
        if (bufof[v] >= 0)
            bufs[bufof[v]].last = x->nsteps;
    }
    for (int i = 0; i < g->ninputs; i++) /* filled before the run, still intact after it (callers reread them) */
        bufs[bufof[g->inputs[i]]].last = x->nsteps;
    if ((rc = alloc_arena(x, bufs, nb, "activations", err)))
        goto out;
    for (int v = 0; v < g->nv; v++)
        if (bufof[v] >= 0)
            x->t[v].data = x->arena + bufs[bufof[v]].off;
out:
    free(bufof);
    free(bufs);
    return rc;
}

/* Training plan: forward steps are times 0..N-1, the backward of step s is
 * time 2N-1-s. An activation lives from its step to the last time anything
 * reads it: forward readers, the backward of readers and of its producer.
 * A transient gradient lives from the backward of its last reader (which
 * zeroes it first) to its producer's backward. Parameter gradients are
 * malloc'd apart: they outlive the run. */
static int plan_train(struct qt_exec *x, const unsigned char *runb, struct qt_err *err) {
    struct qt_graph *g = x->g;
    int N = x->nsteps, T = 2 * N;
    int *bufof = malloc(sizeof(int) * ((size_t)g->nv + 1)), *gbufof = malloc(sizeof(int) * ((size_t)g->nv + 1));
    int *prod = malloc(sizeof(int) * ((size_t)g->nv + 1));
    struct buf *bufs = calloc(2 * (size_t)g->nv + 1, sizeof *bufs);
    int nb = 0, rc = 0;
    if (!bufof || !gbufof || !prod || !bufs) {
        rc = qt_errf(err, QT_ENOMEM, "out of memory planning buffers");
        goto out;
    }
    for (int v = 0; v < g->nv; v++) {
        bufof[v] = gbufof[v] = prod[v] = -1;
        x->gzero[v] = -1;
    }
    for (int i = 0; i < g->ninputs; i++) {
        int v = g->inputs[i];
        bufs[nb] = (struct buf){.size = x->t[v].nbytes, .first = -1, .last = T};
        bufof[v] = nb++;
    }
    for (int s = 0; s < N; s++) {
        const struct qt_node *n = &g->n[x->steps[s]];
        for (int j = 0; j < n->nout; j++) {
            int v = n->out[j];
            if (v < 0 || x->isconst[v])
                continue;
            prod[v] = s;
            bufs[nb] = (struct buf){.size = x->t[v].nbytes, .first = s, .last = runb[s] ? T - 1 - s : s};
            bufof[v] = nb++;
            if (x->grad[v] || !runb[s] || x->t[v].dtype != QT_FLOAT)
                continue;
            /* transient gradient: first time set below by its readers */
            bufs[nb] = (struct buf){.size = x->t[v].nbytes, .first = T - 1 - s, .last = T - 1 - s};
            gbufof[v] = nb++;
            x->gzero[v] = T - 1 - s;
        }
        for (int j = 0; j < n->nin; j++) {
            int v = n->in[j];
            if (v < 0)
                continue;
            if (bufof[v] >= 0) {
                int last = runb[s] ? T - 1 - s : s;
                if (bufs[bufof[v]].last < last)
                    bufs[bufof[v]].last = last;
            }
            if (gbufof[v] >= 0 && runb[s] && bufs[gbufof[v]].first > T - 1 - s) {
                bufs[gbufof[v]].first = T - 1 - s;
                x->gzero[v] = T - 1 - s;
            }
        }
    }
    for (int i = 0; i < g->noutputs; i++) { /* read by the caller; their gradient written by it */
        int v = g->outputs[i];
        if (bufof[v] >= 0 && bufs[bufof[v]].last < N)
            bufs[bufof[v]].last = N;
        if (gbufof[v] >= 0) {
            bufs[gbufof[v]].first = N - 1;
            x->gzero[v] = -1;
        }
    }
    if ((rc = alloc_arena(x, bufs, nb, "activations and gradients", err)))
        goto out;
    for (int v = 0; v < g->nv; v++) {
        if (bufof[v] >= 0)
            x->t[v].data = x->arena + bufs[bufof[v]].off;
        if (gbufof[v] >= 0)
            x->grad[v] = (float *)(x->arena + bufs[gbufof[v]].off);
    }
out:
    free(bufof);
    free(gbufof);
    free(prod);
    free(bufs);
    return rc;
}

static int ensure_scratch(struct qt_exec *x, struct qt_err *err) {
    size_t need = x->scratch_per * (size_t)x->nthreads;
    if (need <= x->scratch_cap)
        return 0;
    free(x->scratch);
    x->scratch = aligned_alloc(ALIGN, (sizeof(float) * need + ALIGN - 1) / ALIGN * ALIGN);
    if (!x->scratch) {
        x->scratch_cap = 0;
        return qt_errf(err, QT_ENOMEM, "out of memory for scratch buffers (%zu floats)", need);
    }
    x->scratch_cap = need;
    return 0;
}

static int fold(struct qt_exec *x, struct qt_node *n, struct qt_err *err) {
    for (int j = 0; j < n->nout; j++) {
        int v = n->out[j];
        if (v < 0)
            continue;
        x->t[v].data = calloc(1, x->t[v].nbytes ? x->t[v].nbytes : 1);
        if (!x->t[v].data)
            return qt_errf(err, QT_ENOMEM, "out of memory folding node '%s'", n->name);
        x->owned[v] = 1;
        x->isconst[v] = 1;
    }
    if (ensure_scratch(x, err))
        return err->code;
    return n->op->fwd(x, n, err);
}

static int input_shape(struct qt_exec *x, int v, struct qt_err *err) {
    struct qt_value *val = &x->g->v[v];
    struct qt_tensor *t = &x->t[v];
    if (val->ndim < 0)
        return qt_errf(err, QT_EUNSUPPORTED, "graph input '%s' has no declared shape", val->name);
    t->dtype = val->dtype ? val->dtype : QT_FLOAT;
    t->ndim = val->ndim;
    for (int i = 0; i < val->ndim; i++) {
        t->dims[i] = val->dims[i];
        if (t->dims[i] < 0) {
            if (i != 0)
                return qt_errf(err, QT_EUNSUPPORTED,
                               "graph input '%s' has a dynamic dimension %d; only the batch (first) dimension "
                               "may be dynamic",
                               val->name, i);
            t->dims[i] = x->batch;
        }
    }
    int64_t ne = qt_numel(t->ndim, t->dims);
    size_t es = qt_dtype_size(t->dtype);
    if (ne < 0 || !es || (uint64_t)ne > ((uint64_t)1 << 40) / es) /* as qt_set_out: no size_t overflow */
        return qt_errf(err, QT_EUNSUPPORTED, "graph input '%s' has an unsupported type or shape", val->name);
    t->nbytes = (size_t)ne * es;
    return 0;
}

/* The constant scalar float input i of node n, or def when absent. */
static int const_scalar(struct qt_exec *x, const struct qt_node *n, int i, float def, float *v) {
    if (i >= n->nin || n->in[i] < 0) {
        *v = def;
        return 1;
    }
    const struct qt_tensor *t = &x->t[n->in[i]];
    if (!x->isconst[n->in[i]] || t->dtype != QT_FLOAT || qt_tensor_numel(t) != 1)
        return 0;
    *v = *(const float *)t->data;
    return 1;
}

/* Marks Conv -> Relu/Clip pairs (QT_OPF_POST_ACT -> QT_QA_*) for fusion
 * (see struct qt_exec). */
static void fuse_acts(struct qt_exec *x) {
    struct qt_graph *g = x->g;
    for (int s = 0; s < x->nsteps; s++) {
        struct qt_node *n = &g->n[x->steps[s]];
        if (!(n->op->flags & QT_OPF_POST_ACT) || n->nout < 1 || n->out[0] < 0)
            continue;
        int v = n->out[0], c, graph_out = 0;
        for (int i = 0; i < g->noutputs; i++)
            graph_out |= g->outputs[i] == v;
        if (graph_out || qt_graph_consumers(g, v, &c, 1) != 1 || x->skip[c])
            continue;
        struct qt_node *a = &g->n[c];
        if (a->nin < 1 || a->in[0] != v || a->nout < 1 || a->out[0] < 0 || x->t[v].dtype != QT_FLOAT)
            continue;
        struct qt_post p = {QT_POST_NONE, 0, 0};
        if (a->op->quant.act == QT_QA_RELU) {
            p.kind = QT_POST_RELU;
        } else if (a->op->quant.act == QT_QA_CLIP) {
            struct qt_err e = {0};
            p.kind = QT_POST_CLIP;
            if (g->opset >= 11) {
                if (!const_scalar(x, a, 1, -INFINITY, &p.lo) || !const_scalar(x, a, 2, INFINITY, &p.hi))
                    continue;
            } else {
                p.lo = qt_attr_float(a, "min", -FLT_MAX, &e);
                p.hi = qt_attr_float(a, "max", FLT_MAX, &e);
                if (e.code)
                    continue;
            }
        } else {
            continue;
        }
        x->post[x->steps[s]] = p;
        x->skip[c] = 1;
    }
}

static int exec_new(struct qt_exec **out, struct qt_graph *g, int batch, int nthreads, unsigned flags,
                    const unsigned char *params, struct qt_err *err);

int qt_exec_new(struct qt_exec **out, struct qt_graph *g, int batch, int nthreads, struct qt_err *err) {
    return qt_exec_new_flags(out, g, batch, nthreads, 0, err);
}

/* Which values need a gradient and which steps run backward (runb). */
static int train_prepare(struct qt_exec *x, unsigned char *runb, struct qt_err *err) {
    struct qt_graph *g = x->g;
    unsigned char *need = calloc((size_t)g->nv + 1, 1);
    if (!need)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int v = 0; v < g->nv; v++) {
        need[v] = x->param[v];
        if (x->param[v]) {
            if (x->t[v].dtype != QT_FLOAT) {
                free(need);
                return qt_errf(err, QT_EUSAGE, "trainable value '%s' is not float32", g->v[v].name);
            }
            x->grad[v] = calloc(1, x->t[v].nbytes ? x->t[v].nbytes : 1);
            if (!x->grad[v]) {
                free(need);
                return qt_errf(err, QT_ENOMEM, "out of memory for gradients");
            }
        }
    }
    for (int s = 0; s < x->nsteps; s++) {
        const struct qt_node *n = &g->n[x->steps[s]];
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] >= 0 && need[n->in[j]])
                runb[s] = 1;
        if (!runb[s])
            continue;
        if (!n->op->bwd) {
            free(need);
            return qt_node_err(n, QT_EUNSUPPORTED, err, "cannot be trained through (no backward)");
        }
        for (int j = 0; j < n->nout; j++)
            if (n->out[j] >= 0 && x->t[n->out[j]].dtype == QT_FLOAT)
                need[n->out[j]] = 1;
    }
    free(need);
    return 0;
}

int qt_exec_new_flags(struct qt_exec **out, struct qt_graph *g, int batch, int nthreads, unsigned flags,
                      struct qt_err *err) {
    return exec_new(out, g, batch, nthreads, flags, NULL, err);
}

int qt_exec_new_train(struct qt_exec **out, struct qt_graph *g, int batch, int nthreads,
                      const unsigned char *params, struct qt_err *err) {
    return exec_new(out, g, batch, nthreads, QT_EXEC_NOFUSE, params, err);
}

/* Zero-sized tensors: only the ops flagged QT_OPF_EMPTY (shape glue) take
 * or make them; for any other op an empty input 0 or output is refused here,
 * at plan time, so no kernel ever sees a zero-sized dimension (block counts,
 * per-channel loops, averages over an empty plane). Other inputs (weights,
 * scales, shapes) are checked against input 0 by each op's infer. */
static int check_empty(const struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    char buf[160];
    if (n->op->flags & QT_OPF_EMPTY)
        return 0;
    for (int j = -1; j < n->nout; j++) {
        int v = j < 0 ? (n->nin > 0 ? n->in[0] : -1) : n->out[j];
        if (v < 0)
            continue;
        const struct qt_tensor *t = &x->t[v];
        if (qt_numel(t->ndim, t->dims) != 0)
            continue;
        return qt_node_err(n, QT_EUNSUPPORTED, err, "%s '%s' has the zero-sized shape %s (qtool does not run %s on "
                           "empty tensors)", j < 0 ? "input" : "output", x->g->v[v].name,
                           qt_dims_str(t->ndim, t->dims, buf, sizeof buf), n->op->name);
    }
    return 0;
}

static int exec_new(struct qt_exec **out, struct qt_graph *g, int batch, int nthreads, unsigned flags,
                    const unsigned char *params, struct qt_err *err);

/* The batch axis of value v: the one axis whose size at batch x->batch is
 * x->batch times the batch-1 plan's, all others equal; -1 when there is no
 * such axis. */
static int batch_axis(const struct qt_exec *x, const struct qt_exec *s, int v) {
    const struct qt_tensor *a = &x->t[v], *b = &s->t[v];
    int ax = -1;
    if (a->ndim != b->ndim)
        return -1;
    for (int d = 0; d < a->ndim; d++)
        if (a->dims[d] != b->dims[d]) {
            if (ax >= 0 || a->dims[d] != b->dims[d] * x->batch)
                return -1;
            ax = d;
        }
    return ax;
}

/* 1 when node n may work across the batch: an axis attribute (Gather and
 * Split default to 0) or axes on input 0's batch axis bd, a normalization
 * (LayerNormalization, Softmax before opset 13) over trailing axes from
 * one at or before bd, a MatMul or Gemm contracting it, a convolution or
 * pool whose batch is not axis 0, or an op that is never split. */
static int across_batch(const struct qt_exec *x, const struct qt_exec *s, const struct qt_node *n, int bd) {
    int r = x->t[n->in[0]].ndim;
    const char *op = n->op_type;
    const struct qt_attr *a = qt_attr_find(n, "axis");
    int64_t ax = a ? a->i : !strcmp(op, "Gather") || !strcmp(op, "Split") ? 0 : -1000;
    if (ax < 0 && ax > -1000)
        ax += r;
    int sm = !strcmp(op, "Softmax") || !strcmp(op, "LogSoftmax") || !strcmp(op, "Hardmax");
    int trailing = !strcmp(op, "LayerNormalization") || (x->g->opset < 13 && sm);
    if (ax == bd || (trailing && ax >= 0 && bd >= ax))
        return 1;
    if ((a = qt_attr_find(n, "axes")))
        for (int i = 0; i < a->n; i++)
            if (a->ints[i] == bd || a->ints[i] + r == bd)
                return 1;
    if (!strcmp(op, "MatMul") || !strcmp(op, "QLinearMatMul") || !strcmp(op, "MatMulInteger")) {
        int j = !strcmp(op, "QLinearMatMul") ? 3 : 1; /* the second matrix */
        if (bd == r - 1 || (n->nin > j && n->in[j] >= 0 && !x->isconst[n->in[j]] &&
                            batch_axis(x, s, n->in[j]) == x->t[n->in[j]].ndim - 2))
            return 1;
    }
    if (!strcmp(op, "Gemm"))
        return bd != 0 || ((a = qt_attr_find(n, "transA")) && a->i) || (n->nin > 1 && !x->isconst[n->in[1]]);
    if (strstr(op, "Conv") || strstr(op, "Pool") || strstr(op, "Norm"))
        return bd != 0;
    return !strcmp(op, "Einsum") || !strcmp(op, "CumSum") || !strcmp(op, "NonZero") || !strcmp(op, "Unique") ||
           !strcmp(op, "Compress") || !strcmp(op, "TopK") || !strcmp(op, "Scan") || !strcmp(op, "Loop") ||
           !strcmp(op, "If");
}

/* QT_EXEC_SUBBATCH: plan the graph at batch 1 and keep that plan when the
 * graph is per-image and its weights are small against its activations
 * (twice the constant bytes below the batch-1 activation bytes: image by
 * image reads every weight once per image, so ResNet18's 47 MB of weights
 * for 23 MB of activations run slower, MobileNetV1's 10 MB for 30 MB
 * faster). Per-image: the graph inputs and outputs have the batch as axis 0,
 * every other non-constant value but int64 shape arithmetic has a batch
 * axis (it may move: [L, B, E] after a Transpose), and no step works across
 * it (across_batch). Otherwise (or when the batch-1 plan cannot be made)
 * x->sub stays NULL. */
static int sub_new(struct qt_exec *x, unsigned flags, struct qt_err *err) {
    struct qt_exec *s = NULL;
    struct qt_err e2 = {0};
    size_t wbytes = 0, abytes = 0;
    int ok = 1;
    if (exec_new(&s, x->g, 1, x->nthreads, flags & ~QT_EXEC_SUBBATCH, NULL, &e2))
        return e2.code == QT_ENOMEM ? qt_errf(err, QT_ENOMEM, "%s", e2.msg) : 0;
    for (int v = 0; v < x->g->nv; v++) {
        if (x->isconst[v])
            wbytes += x->t[v].nbytes;
        else if (x->t[v].dtype && x->t[v].dtype != QT_INT64) {
            abytes += s->t[v].nbytes;
            if (batch_axis(x, s, v) < 0)
                ok = 0;
        }
    }
    for (int i = 0; i < x->g->ninputs; i++)
        if (batch_axis(x, s, x->g->inputs[i]) != 0)
            ok = 0;
    for (int i = 0; i < x->g->noutputs; i++)
        if (x->isconst[x->g->outputs[i]] || batch_axis(x, s, x->g->outputs[i]) != 0)
            ok = 0;
    for (int k = 0; ok && k < x->nsteps; k++) {
        const struct qt_node *n = &x->g->n[x->steps[k]];
        if (n->nin > 0 && n->in[0] >= 0 && !x->isconst[n->in[0]] && x->t[n->in[0]].dtype != QT_INT64 &&
            across_batch(x, s, n, batch_axis(x, s, n->in[0])))
            ok = 0;
    }
    if (!ok || 2 * wbytes >= abytes) {
        qt_exec_free(s);
        return 0;
    }
    qt_pool_free(s->pool); /* the batch plan's workers run it */
    s->pool = x->pool;
    x->sub = s;
    return 0;
}

/* Runs x's batch image by image on x->sub: each graph input's image i into
 * the batch-1 plan, each output back to image i's place. */
static int sub_run(struct qt_exec *x, struct qt_err *err) {
    struct qt_exec *s = x->sub;
    for (int i = 0; i < x->batch; i++) {
        for (int k = 0; k < x->g->ninputs; k++) {
            int v = x->g->inputs[k];
            size_t per = x->t[v].nbytes / (size_t)x->batch;
            memcpy(s->t[v].data, (const unsigned char *)x->t[v].data + per * (size_t)i, per);
        }
        if (qt_exec_run(s, err))
            return err->code;
        for (int k = 0; k < x->g->noutputs; k++) {
            int v = x->g->outputs[k];
            size_t per = x->t[v].nbytes / (size_t)x->batch;
            memcpy((unsigned char *)x->t[v].data + per * (size_t)i, s->t[v].data, per);
        }
    }
    return 0;
}

static int exec_new(struct qt_exec **out, struct qt_graph *g, int batch, int nthreads, unsigned flags,
                    const unsigned char *params, struct qt_err *err) {
    struct qt_exec *x = calloc(1, sizeof *x);
    int *order = NULL;
    unsigned char *runb = NULL;
    *out = NULL;
    if (!x)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    /* BLAS calls run inside our own tasks: one BLAS thread each */
    openblas_set_num_threads(1);
    x->g = g;
    x->batch = batch > 0 ? batch : 1;
    x->nthreads = nthreads > 0 ? nthreads : qt_ncpus();
    x->t = calloc((size_t)g->nv + 1, sizeof *x->t);
    x->isconst = calloc((size_t)g->nv + 1, 1);
    x->owned = calloc((size_t)g->nv + 1, 1);
    x->steps = malloc(sizeof(int) * ((size_t)g->nn + 1));
    x->post = calloc((size_t)g->nn + 1, sizeof *x->post);
    x->skip = calloc((size_t)g->nn + 1, 1);
    if (!x->t || !x->isconst || !x->owned || !x->steps || !x->post || !x->skip) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto fail;
    }
    if (params) {
        x->training = 1;
        x->param = malloc((size_t)g->nv + 1);
        x->grad = calloc((size_t)g->nv + 1, sizeof *x->grad);
        x->gzero = malloc(sizeof(int) * ((size_t)g->nv + 1));
        x->save = calloc((size_t)g->nn + 1, sizeof *x->save);
        runb = calloc((size_t)g->nn + 1, 1);
        if (!x->param || !x->grad || !x->gzero || !x->save || !runb) {
            qt_errf(err, QT_ENOMEM, "out of memory");
            goto fail;
        }
        memcpy(x->param, params, (size_t)g->nv);
    }
    if (qt_graph_unsupported(g, err))
        goto fail;
    if (qt_pool_new(&x->pool, x->nthreads, err))
        goto fail;
    for (int v = 0; v < g->nv; v++) {
        if (g->v[v].kind == QT_V_INIT) {
            x->t[v] = *g->v[v].init;
            x->isconst[v] = !(x->param && x->param[v]);
        }
    }
    for (int i = 0; i < g->ninputs; i++)
        if (input_shape(x, g->inputs[i], err))
            goto fail;
    if (qt_graph_topo(g, &order, err))
        goto fail;
    for (int k = 0; k < g->nn; k++) {
        struct qt_node *n = &g->n[order[k]];
        int allconst = 1;
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] >= 0 && !x->isconst[n->in[j]])
                allconst = 0;
        if ((n->op->flags & QT_OPF_SHAPE_ONLY))
            allconst = 1;
        if (n->op->infer(x, n, err) || check_empty(x, n, err))
            goto fail;
        for (int j = 0; j < n->nout; j++)
            if (n->out[j] >= 0 && !x->t[n->out[j]].dtype) {
                qt_node_err(n, QT_EFAIL, err, "internal error: output %d has no type after inference", j);
                goto fail;
            }
        if (allconst) {
            if (fold(x, n, err))
                goto fail;
        } else {
            x->steps[x->nsteps++] = order[k];
        }
    }
    if (!(flags & QT_EXEC_NOFUSE))
        fuse_acts(x);
    if (x->training ? train_prepare(x, runb, err) || plan_train(x, runb, err) : plan_buffers(x, err))
        goto fail;
    if (ensure_scratch(x, err))
        goto fail;
    x->runb = runb;
    free(order);
    if ((flags & QT_EXEC_SUBBATCH) && !x->training && x->batch > 1 && sub_new(x, flags, err))
        goto fail_plan;
    *out = x;
    return 0;
fail_plan:
    qt_exec_free(x);
    return err->code;
fail:
    free(order);
    free(runb);
    qt_exec_free(x);
    return err->code;
}

void qt_exec_free(struct qt_exec *x) {
    if (!x)
        return;
    if (x->sub) {
        x->sub->pool = NULL; /* x's own */
        qt_exec_free(x->sub);
    }
    for (int v = 0; x->owned && v < x->g->nv; v++)
        if (x->owned[v])
            free(x->t[v].data);
    for (int v = 0; x->grad && v < x->g->nv; v++)
        if (x->param[v])
            free(x->grad[v]);
    for (int i = 0; x->save && i < x->g->nn; i++)
        free(x->save[i]);
    free(x->grad);
    free(x->param);
    free(x->gzero);
    free(x->runb);
    free(x->save);
    free(x->t);
    free(x->isconst);
    free(x->owned);
    free(x->steps);
    free(x->post);
    free(x->skip);
    free(x->arena);
    free(x->scratch);
    qt_pool_free(x->pool);
    free(x);
}

int qt_exec_run(struct qt_exec *x, struct qt_err *err) {
    if (x->sub && !x->after_node)
        return sub_run(x, err);
    for (int s = 0; s < x->nsteps; s++) {
        const struct qt_node *n = &x->g->n[x->steps[s]];
        if (!x->skip[x->steps[s]] && n->op->fwd(x, n, err))
            return err->code;
        int rc = x->after_node ? x->after_node(x, x->steps[s], x->after_ud, err) : 0;
        if (rc)
            return rc; /* an error code, or QT_HOOK_STOP */
    }
    return 0;
}

int qt_exec_backward(struct qt_exec *x, struct qt_err *err) {
    struct qt_graph *g = x->g;
    int N = x->nsteps;
    if (!x->training)
        return qt_errf(err, QT_EFAIL, "internal error: backward on an inference plan");
    for (int v = 0; v < g->nv; v++)
        if (x->param[v])
            memset(x->grad[v], 0, x->t[v].nbytes);
    for (int s = N - 1; s >= 0; s--) {
        const struct qt_node *n = &g->n[x->steps[s]];
        int t = 2 * N - 1 - s;
        if (!x->runb[s])
            continue;
        for (int j = 0; j < n->nin + n->nout; j++) {
            int v = j < n->nin ? n->in[j] : n->out[j - n->nin];
            if (v >= 0 && x->gzero[v] == t && x->grad[v])
                memset(x->grad[v], 0, x->t[v].nbytes);
        }
        if (n->op->bwd(x, n, err))
            return err->code;
    }
    return 0;
}

float *qt_exec_grad(struct qt_exec *x, int v) {
    return x->grad && v >= 0 && v < x->g->nv ? x->grad[v] : NULL;
}

void *qt_exec_save(struct qt_exec *x, const struct qt_node *n, size_t bytes, struct qt_err *err) {
    size_t i = (size_t)(n - x->g->n);
    if (!x->save) {
        qt_errf(err, QT_EFAIL, "internal error: node '%s' saves state outside training", n->name);
        return NULL;
    }
    if (!x->save[i] && !(x->save[i] = calloc(1, bytes ? bytes : 1)))
        qt_errf(err, QT_ENOMEM, "out of memory for node '%s'", n->name);
    return x->save[i];
}

float *qt_exec_input(struct qt_exec *x, int i) {
    return i >= 0 && i < x->g->ninputs ? x->t[x->g->inputs[i]].data : NULL;
}

const float *qt_exec_output(const struct qt_exec *x, int i) {
    return i >= 0 && i < x->g->noutputs ? x->t[x->g->outputs[i]].data : NULL;
}

const struct qt_tensor *qt_exec_input_tensor(const struct qt_exec *x, int i) {
    return i >= 0 && i < x->g->ninputs ? &x->t[x->g->inputs[i]] : NULL;
}

const struct qt_tensor *qt_exec_output_tensor(const struct qt_exec *x, int i) {
    return i >= 0 && i < x->g->noutputs ? &x->t[x->g->outputs[i]] : NULL;
}

int qt_exec_batch(const struct qt_exec *x) {
    return x->batch;
}

size_t qt_exec_peak_bytes(const struct qt_exec *x) {
    return x->arena_bytes;
}
