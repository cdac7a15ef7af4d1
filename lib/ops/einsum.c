/* einsum.c: ONNX Einsum (opset 12+), float32 and float64.
 *
 * equation "ab,bc->ac": one comma-separated term of labels (letters, spaces
 * ignored) per input, an optional "->" and the output's labels. "..." stands
 * for the dims not labelled, right-aligned and broadcast across inputs (a
 * dim of 1 against n). Without "->" the output is the ellipsis dims, then
 * the letters used exactly once, in alphabetical order. A letter repeated
 * within one input takes its diagonal. y[out labels] = sum over every other
 * label of the product of the inputs (summed in double). A repeated output
 * letter is refused.
 * Gradient (training, float32): dA_i = the same contraction of dy with the
 * other inputs onto A_i's labels (summed over the labels A_i broadcasts);
 * maxvit's attention (B G H I D, B G H J D -> B G H I J) is a MatMul of two
 * activations written this way. One task per output element: no reduction
 * is split, so the bytes are the same at any thread count. */
#include "engine.h"

#include <string.h>

#define EIN_MAXIN 8
#define EIN_NL 64 /* 52 letters, then ellipsis dims from 52 */
#define EIN_ELL (-1)

struct ein_attr {
    int nin;
    int nlab[EIN_MAXIN + 1];              /* labels per term; the last term = output */
    signed char lab[EIN_MAXIN + 1][QT_MAXDIM + 1];
    int explicit_out;
};

static int letter(char c) {
    return c >= 'a' && c <= 'z' ? c - 'a' : c >= 'A' && c <= 'Z' ? 26 + c - 'A' : -2;
}

static int ein_init(struct qt_graph *g, struct qt_node *n, struct qt_err *err) {
    (void)g;
    struct ein_attr *a = qt_node_priv(n, sizeof *a, err);
    if (!a)
        return err->code;
    const char *eq = qt_attr_str(n, "equation", NULL, err);
    if (err->code)
        return err->code;
    if (!eq)
        return qt_node_err(n, QT_EMODEL, err, "has no equation");
    if (n->nin < 1 || n->nin > EIN_MAXIN)
        return qt_node_err(n, QT_EUNSUPPORTED, err, "%d inputs (1 to %d are supported)", n->nin, EIN_MAXIN);
    for (int i = 0; i < n->nin; i++)
        if (n->in[i] < 0)
            return qt_node_err(n, QT_EMODEL, err, "input %d is empty", i);
    int t = 0, ell = 0;
    for (const char *p = eq;; p++) {
        if (*p == ' ')
            continue;
        if (*p == ',' || *p == 0 || (p[0] == '-' && p[1] == '>')) {
            if (t >= n->nin && !a->explicit_out)
                return qt_node_err(n, QT_EMODEL, err, "equation '%s' has more terms than the %d inputs", eq, n->nin);
            if (*p == 0)
                break;
            if (*p == '-') {
                if (a->explicit_out || t != n->nin - 1)
                    return qt_node_err(n, QT_EMODEL, err, "equation '%s' has %d input terms for %d inputs", eq,
                                       t + 1, n->nin);
                a->explicit_out = 1;
                t = EIN_MAXIN;
                p++;
            } else if (a->explicit_out) {
                return qt_node_err(n, QT_EMODEL, err, "equation '%s' has a ',' in its output", eq);
            } else {
                t++;
            }
            ell = 0;
            continue;
        }
        int l;
        if (p[0] == '.' && p[1] == '.' && p[2] == '.') {
            if (ell)
                return qt_node_err(n, QT_EMODEL, err, "equation '%s' has two '...' in one term", eq);
            ell = 1;
            l = EIN_ELL;
            p += 2;
        } else if ((l = letter(*p)) < 0) {
            return qt_node_err(n, QT_EMODEL, err, "equation '%s' has the character '%c'", eq, *p);
        }
        if (a->nlab[t] >= QT_MAXDIM + 1)
            return qt_node_err(n, QT_EUNSUPPORTED, err, "equation '%s' has a term of more than %d labels", eq,
                               QT_MAXDIM);
        a->lab[t][a->nlab[t]++] = (signed char)l;
    }
    if (t != (a->explicit_out ? EIN_MAXIN : n->nin - 1))
        return qt_node_err(n, QT_EMODEL, err, "equation '%s' has %d terms for %d inputs", eq, t + 1, n->nin);
    a->nin = n->nin;
    return 0;
}

/* The labels of each input and of the output, ellipsis expanded, with sizes. */
struct ein_plan {
    int nin, ndim[EIN_MAXIN + 1];
    int lab[EIN_MAXIN + 1][QT_MAXDIM]; /* per dim: label 0..EIN_NL-1 */
    int64_t size[EIN_NL];
};

static int ein_expand(const struct ein_attr *a, int t, int rank, int ne, int *out, struct qt_err *err,
                      const struct qt_node *n) {
    int k = 0, has = 0;
    for (int i = 0; i < a->nlab[t]; i++)
        has |= a->lab[t][i] == EIN_ELL;
    int nell = rank - (a->nlab[t] - has);
    if (nell < 0 || (!has && nell != 0) || nell > ne)
        return qt_node_err(n, QT_EMODEL, err, "input %d has %d dims, its term has %d labels", t, rank,
                           a->nlab[t] - has);
    for (int i = 0; i < a->nlab[t]; i++) {
        if (a->lab[t][i] != EIN_ELL) {
            out[k++] = a->lab[t][i];
            continue;
        }
        for (int e = 0; e < nell; e++)
            out[k++] = 52 + ne - nell + e;
    }
    return 0;
}

static int ein_plan(struct qt_exec *x, const struct qt_node *n, struct ein_plan *p, struct qt_err *err) {
    const struct ein_attr *a = n->priv;
    int ne = 0, count[EIN_NL] = {0};
    memset(p, 0, sizeof *p);
    p->nin = a->nin;
    for (int i = 0; i < a->nin; i++) {
        const struct qt_tensor *t = qt_in(x, n, i);
        int has = 0;
        for (int k = 0; k < a->nlab[i]; k++)
            has |= a->lab[i][k] == EIN_ELL;
        if (has && t->ndim - (a->nlab[i] - 1) > ne)
            ne = t->ndim - (a->nlab[i] - 1);
    }
    for (int i = 0; i < EIN_NL; i++)
        p->size[i] = -1;
    for (int i = 0; i < a->nin; i++) {
        const struct qt_tensor *t = qt_in(x, n, i);
        if (ein_expand(a, i, t->ndim, ne, p->lab[i], err, n))
            return err->code;
        p->ndim[i] = t->ndim;
        for (int d = 0; d < t->ndim; d++) {
            int l = p->lab[i][d];
            int64_t s = t->dims[d];
            count[l]++;
            if (p->size[l] < 0 || p->size[l] == 1)
                p->size[l] = s;
            else if (s != p->size[l] && !(l >= 52 && s == 1))
                return qt_node_err(n, QT_EMODEL, err, "label of dim %d of input %d has size %lld and %lld elsewhere",
                                   d, i, (long long)s, (long long)p->size[l]);
        }
    }
    int *o = p->lab[EIN_MAXIN], no = 0;
    if (a->explicit_out) {
        int outrank = 0;
        for (int k = 0; k < a->nlab[EIN_MAXIN]; k++)
            outrank += a->lab[EIN_MAXIN][k] == EIN_ELL ? ne : 1;
        if (outrank > QT_MAXDIM)
            return qt_node_err(n, QT_EUNSUPPORTED, err, "output of %d dims", outrank);
        if (ein_expand(a, EIN_MAXIN, outrank, ne, o, err, n))
            return err->code;
        no = outrank;
        for (int k = 0; k < no; k++) {
            if (p->size[o[k]] < 0)
                return qt_node_err(n, QT_EMODEL, err, "output label '%c' is not in any input",
                                   o[k] < 26 ? 'a' + o[k] : 'A' + o[k] - 26);
            for (int j = 0; j < k; j++)
                if (o[j] == o[k])
                    return qt_node_err(n, QT_EUNSUPPORTED, err, "a label repeated in the output is not supported");
        }
    } else {
        for (int e = 0; e < ne; e++)
            o[no++] = 52 + e;
        for (int l = 0; l < 52; l++)
            if (count[l] == 1) {
                if (no >= QT_MAXDIM)
                    return qt_node_err(n, QT_EUNSUPPORTED, err, "output of more than %d dims", QT_MAXDIM);
                o[no++] = l;
            }
    }
    p->ndim[EIN_MAXIN] = no;
    return 0;
}

static int ein_infer(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    const struct ein_attr *a = n->priv;
    struct ein_plan p;
    int dt = qt_in(x, n, 0)->dtype;
    for (int i = 0; i < a->nin; i++)
        if (qt_in(x, n, i)->dtype != dt || (dt != QT_FLOAT && dt != QT_DOUBLE))
            return qt_node_err(n, QT_EUNSUPPORTED, err, "input %d type %s (float32 or float64 inputs of one type only)",
                               i, qt_dtype_name(qt_in(x, n, i)->dtype));
    if (ein_plan(x, n, &p, err))
        return err->code;
    int64_t d[QT_MAXDIM];
    for (int k = 0; k < p.ndim[EIN_MAXIN]; k++)
        d[k] = p.size[p.lab[EIN_MAXIN][k]];
    return qt_set_out(x, n, 0, dt, p.ndim[EIN_MAXIN], d, err);
}

/* A contraction: target[t labels] (+)= sum over the other labels of the
 * product of the operands. Strides per label (0: the operand does not vary
 * with it). */
struct ein_job {
    int nop, dbl, add;
    const void *op[EIN_MAXIN + 1];
    void *dst;
    int nout, nsum;
    int64_t osize[EIN_NL], ssize[EIN_NL];
    int64_t ost[EIN_MAXIN + 1][EIN_NL], sst[EIN_MAXIN + 1][EIN_NL]; /* operand strides: out labels, sum labels */
    int64_t dst_st[EIN_NL];                                          /* target stride per out label */
};

static void ein_task(void *arg, int64_t e0, int64_t e1, int tid) {
    const struct ein_job *j = arg;
    (void)tid;
    for (int64_t e = e0; e < e1; e++) {
        int64_t base[EIN_MAXIN + 1] = {0}, doff = 0, rem = e;
        for (int k = j->nout - 1; k >= 0; k--) {
            int64_t idx = rem % j->osize[k];
            rem /= j->osize[k];
            doff += idx * j->dst_st[k];
            for (int o = 0; o < j->nop; o++)
                base[o] += idx * j->ost[o][k];
        }
        int64_t ctr[EIN_NL] = {0}, off[EIN_MAXIN + 1];
        memcpy(off, base, sizeof off);
        double acc = 0;
        int64_t inner = j->nsum ? j->ssize[j->nsum - 1] : 1;
        for (;;) {
            if (j->nop == 2 && !j->dbl) { /* the common case: a product of two float32 inputs */
                const float *A = (const float *)j->op[0] + off[0], *B = (const float *)j->op[1] + off[1];
                int64_t sa = j->nsum ? j->sst[0][j->nsum - 1] : 0, sb = j->nsum ? j->sst[1][j->nsum - 1] : 0;
                for (int64_t i = 0; i < inner; i++)
                    acc += (double)A[i * sa] * B[i * sb];
            } else {
                for (int64_t i = 0; i < inner; i++) {
                    double v = 1;
                    for (int o = 0; o < j->nop; o++) {
                        int64_t at = off[o] + (j->nsum ? i * j->sst[o][j->nsum - 1] : 0);
                        v *= j->dbl ? ((const double *)j->op[o])[at] : (double)((const float *)j->op[o])[at];
                    }
                    acc += v;
                }
            }
            int k = j->nsum - 2;
            for (; k >= 0; k--) {
                ctr[k]++;
                for (int o = 0; o < j->nop; o++)
                    off[o] += j->sst[o][k];
                if (ctr[k] < j->ssize[k])
                    break;
                for (int o = 0; o < j->nop; o++)
                    off[o] -= ctr[k] * j->sst[o][k];
                ctr[k] = 0;
            }
            if (k < 0)
                break;
        }
        if (j->dbl)
            ((double *)j->dst)[doff] = j->add ? ((double *)j->dst)[doff] + acc : acc;
        else
            ((float *)j->dst)[doff] = j->add ? ((float *)j->dst)[doff] + (float)acc : (float)acc;
    }
}

/* strides of a tensor of labels lab[nd] with dims d: summed over repeated labels */
static void label_strides(int nd, const int *lab, const int64_t *d, int64_t *st) {
    int64_t s = 1;
    memset(st, 0, sizeof(int64_t) * EIN_NL);
    for (int k = nd - 1; k >= 0; k--) {
        if (d[k] != 1)
            st[lab[k]] += s;
        s *= d[k];
    }
}

/* Contracts operands ops[] (labels per operand via strides st[][]) onto a
 * target with label strides tst; the target's labels are those it has a
 * non-zero stride for. */
static int ein_run(struct qt_exec *x, const struct ein_plan *p, int nop, const void *const *ops,
                   int64_t (*st)[EIN_NL], void *dst, const int64_t *tst, int dbl, int add, struct qt_err *err) {
    struct ein_job *j = qt_calloc(1, sizeof *j, err);
    if (!j)
        return err->code;
    j->nop = nop;
    j->dbl = dbl;
    j->add = add;
    j->dst = dst;
    int64_t total = 1;
    for (int l = 0; l < EIN_NL; l++) {
        if (p->size[l] <= 1)
            continue;
        if (tst[l]) {
            j->osize[j->nout] = p->size[l];
            j->dst_st[j->nout] = tst[l];
            for (int o = 0; o < nop; o++)
                j->ost[o][j->nout] = st[o][l];
            j->nout++;
            total *= p->size[l];
        } else {
            j->ssize[j->nsum] = p->size[l];
            for (int o = 0; o < nop; o++)
                j->sst[o][j->nsum] = st[o][l];
            j->nsum++;
        }
    }
    for (int o = 0; o < nop; o++)
        j->op[o] = ops[o];
    qt_parallel_for(x, total, ein_task, j);
    free(j);
    return 0;
}

static int ein_fwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct ein_plan p;
    struct qt_tensor *y = qt_out(x, n, 0);
    if (ein_plan(x, n, &p, err))
        return err->code;
    if (qt_tensor_numel(y) == 0)
        return 0;
    for (int l = 0; l < EIN_NL; l++)
        if (p.size[l] == 0) {
            memset(y->data, 0, y->nbytes);
            return 0;
        }
    int64_t st[EIN_MAXIN + 1][EIN_NL], tst[EIN_NL];
    const void *ops[EIN_MAXIN + 1];
    for (int i = 0; i < p.nin; i++) {
        label_strides(p.ndim[i], p.lab[i], qt_in(x, n, i)->dims, st[i]);
        ops[i] = qt_in(x, n, i)->data;
    }
    label_strides(p.ndim[EIN_MAXIN], p.lab[EIN_MAXIN], y->dims, tst);
    return ein_run(x, &p, p.nin, ops, st, y->data, tst, y->dtype == QT_DOUBLE, 0, err);
}

static int ein_bwd(struct qt_exec *x, const struct qt_node *n, struct qt_err *err) {
    struct ein_plan p;
    const struct qt_tensor *y = qt_out(x, n, 0);
    const float *dy = qt_gout(x, n, 0);
    if (ein_plan(x, n, &p, err))
        return err->code;
    if (!dy || y->dtype != QT_FLOAT)
        return 0;
    for (int l = 0; l < EIN_NL; l++)
        if (p.size[l] == 0)
            return 0;
    int64_t st[EIN_MAXIN + 1][EIN_NL], yst[EIN_NL];
    label_strides(p.ndim[EIN_MAXIN], p.lab[EIN_MAXIN], y->dims, yst);
    for (int i = 0; i < p.nin; i++) {
        float *dx = qt_gin(x, n, i);
        if (!dx)
            continue;
        const void *ops[EIN_MAXIN + 1];
        int nop = 0;
        ops[nop] = dy;
        memcpy(st[nop++], yst, sizeof yst);
        for (int k = 0; k < p.nin; k++) {
            if (k == i)
                continue;
            ops[nop] = qt_in(x, n, k)->data;
            label_strides(p.ndim[k], p.lab[k], qt_in(x, n, k)->dims, st[nop++]);
        }
        int64_t tst[EIN_NL];
        label_strides(p.ndim[i], p.lab[i], qt_in(x, n, i)->dims, tst);
        if (ein_run(x, &p, nop, ops, st, dx, tst, 0, 1, err))
            return err->code;
    }
    return 0;
}

const struct qt_op qt_op_einsum = {.name = "Einsum", .init = ein_init, .infer = ein_infer, .fwd = ein_fwd,
                                   .bwd = ein_bwd,
                                   /* a product of two activations: both quantized, as MatMul's */
                                   .quant = {.role = QT_QR_BINARY}};
