/* t_intonly.c: an integer-only evaluation from quant_info.json. The
 * Fashion-MNIST model is calibrated with --profile int-only; then this
 * driver runs it with integers only after the input quantizer: int32
 * accumulators, each Conv/Gemm requantized with the multiplier and shift
 * recorded in the JSON (q = zp + round(acc * mult / 2^shift), half to even), Add and
 * GlobalAveragePool with multipliers derived from the scales the same way,
 * MaxPool on the integers; only the float logits of the last Gemm are
 * acc * s_in * s_w. Its logits must match qtool's int8 evaluation of the QDQ
 * file (float32 requantization, as ONNX Runtime does). */
#include "int8/int8.h"
#include "quant/quant.h"
#include "tap.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NIMG 200

/* v * 2^-shift rounded half to even (ONNX QuantizeLinear's rounding; with
 * power-of-two scales ties are frequent), in integers */
static int64_t round_shift(int64_t v, int shift) {
    if (shift <= 0)
        return v * ((int64_t)1 << -shift);
    int64_t q = v >> shift, rem = v - q * ((int64_t)1 << shift), half = (int64_t)1 << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

static int32_t clampq(int64_t v, const struct qt_qparam *q) {
    return (int32_t)(v < q->qmin ? q->qmin : v > q->qmax ? q->qmax : v);
}

struct ctx {
    struct qt_qplan *p;
    struct qt_exec *x;  /* shapes */
    int32_t **iv;       /* per value: integer activations */
    float *logits;
    cJSON *info;
};

static const struct qt_qparam *qp_of(const struct ctx *c, int v) {
    int t = v >= 0 ? c->p->tensor_of[v] : -1;
    return t >= 0 ? &c->p->t[t].q : NULL;
}

static const cJSON *json_tensor(const struct ctx *c, const char *name) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(c->info, "tensors")) {
        const cJSON *nm = cJSON_GetObjectItem(e, "name");
        if (cJSON_IsString(nm) && !strcmp(nm->valuestring, name))
            return e;
    }
    return NULL;
}

static int32_t *alloc_v(struct ctx *c, int v) {
    if (!c->iv[v])
        c->iv[v] = calloc((size_t)qt_tensor_numel(&c->x->t[v]) + 1, sizeof(int32_t));
    return c->iv[v];
}

/* Conv (NCHW) or Gemm: int32 accumulators, then requantized or dequantized */
static int compute(struct ctx *c, int i) {
    const struct qt_graph *g = c->p->g;
    const struct qt_node *n = &g->n[i];
    const struct qt_qnode *qn = &c->p->qn[i];
    int conv = !strcmp(n->op_type, "Conv");
    struct qt_err e = {0};
    const struct qt_qparam *qx = qp_of(c, n->in[0]), *qw = qp_of(c, n->in[1]);
    const struct qt_qparam *qb = n->nin > 2 && n->in[2] >= 0 ? qp_of(c, n->in[2]) : NULL;
    int y = qn->fused >= 0 ? g->n[qn->fused].out[0] : n->out[0];
    const struct qt_qparam *qy = qp_of(c, y);
    const struct qt_tensor *W = g->v[n->in[1]].init, *B = qb ? g->v[n->in[2]].init : NULL;
    const struct qt_tensor *X = &c->x->t[n->in[0]], *Y = &c->x->t[n->out[0]];
    const int32_t *xi = c->iv[n->in[0]];
    if (!qx || !qw || !xi)
        return -1;
    int transb = !conv && qt_attr_int(n, "transB", 0, &e);
    int64_t M = conv ? W->dims[0] : (transb ? W->dims[0] : W->dims[1]);
    int64_t wn = qt_tensor_numel(W), per = wn / M;
    int32_t *wq = malloc(sizeof(int32_t) * (size_t)wn), *bq = calloc((size_t)M, sizeof(int32_t));
    int32_t *mult = calloc((size_t)M, sizeof(int32_t));
    int *shift = calloc((size_t)M, sizeof(int));
    for (int64_t k = 0; k < wn; k++) {
        int64_t m = conv || transb ? k / per : k % M;
        int ch = qw->n > 1 ? (int)m : 0;
        wq[k] = qt_quantize(((const float *)W->data)[k], qw->scale[ch], 0, qw->qmin, qw->qmax);
    }
    for (int64_t m = 0; B && m < M; m++)
        bq[m] = (int32_t)nearbyint((double)((const float *)B->data)[m] / qb->scale[m]);
    if (qy) { /* the recorded requantization */
        const cJSON *r = cJSON_GetObjectItem(json_tensor(c, g->v[n->in[1]].name), "requant");
        const cJSON *ma = cJSON_GetObjectItem(r, "multiplier"), *sa = cJSON_GetObjectItem(r, "shift");
        if (cJSON_GetArraySize(ma) != qw->n || cJSON_GetArraySize(sa) != qw->n)
            return -2;
        for (int64_t m = 0; m < M; m++) {
            int ch = qw->n > 1 ? (int)m : 0;
            mult[m] = (int32_t)cJSON_GetArrayItem(ma, ch)->valuedouble;
            shift[m] = cJSON_GetArrayItem(sa, ch)->valueint;
        }
    }
    /* fused Relu / Clip(0, hi) in output units */
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    if (qn->fused >= 0 && qy) {
        const struct qt_node *a = &g->n[qn->fused];
        lo = qy->zp[0];
        if (!strcmp(a->op_type, "Clip") && a->nin > 2 && a->in[2] >= 0) {
            const struct qt_tensor *mx = c->x->t[a->in[2]].data ? &c->x->t[a->in[2]] : NULL;
            if (mx)
                hi = qt_quantize(*(const float *)mx->data, qy->scale[0], qy->zp[0], qy->qmin, qy->qmax);
        }
    }
    int32_t *yi = qy ? alloc_v(c, y) : NULL;
    int64_t N = X->dims[0];
    int32_t zx = qx->zp[0];
    if (conv) {
        int64_t C = X->dims[1], H = X->dims[2], Wd = X->dims[3], OH = Y->dims[2], OW = Y->dims[3];
        int64_t KH = W->dims[2], KW = W->dims[3], grp = qt_attr_int(n, "group", 1, &e), cg = C / grp, mg = M / grp;
        const int64_t *st = NULL, *pd = NULL, *dl = NULL;
        int ns = qt_attr_ints(n, "strides", &st, &e), np = qt_attr_ints(n, "pads", &pd, &e);
        int nd = qt_attr_ints(n, "dilations", &dl, &e);
        int64_t sh = ns > 0 ? st[0] : 1, sw = ns > 1 ? st[1] : 1, pt = np > 0 ? pd[0] : 0, pl = np > 1 ? pd[1] : 0;
        int64_t dh = nd > 0 ? dl[0] : 1, dw = nd > 1 ? dl[1] : 1;
        for (int64_t b = 0; b < N; b++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t oh = 0; oh < OH; oh++)
                    for (int64_t ow = 0; ow < OW; ow++) {
                        int64_t acc = bq[m], gi = m / mg;
                        for (int64_t ci = 0; ci < cg; ci++)
                            for (int64_t kh = 0; kh < KH; kh++)
                                for (int64_t kw = 0; kw < KW; kw++) {
                                    int64_t ih = oh * sh - pt + kh * dh, iw = ow * sw - pl + kw * dw;
                                    if (ih < 0 || ih >= H || iw < 0 || iw >= Wd)
                                        continue; /* padding is the zero point: contributes 0 */
                                    int64_t xv = xi[((b * C + gi * cg + ci) * H + ih) * Wd + iw] - zx;
                                    acc += xv * wq[((m * cg + ci) * KH + kh) * KW + kw];
                                }
                        int64_t o = ((b * M + m) * OH + oh) * OW + ow;
                        int64_t q = qy->zp[0] + round_shift(acc * mult[m], shift[m]);
                        q = q < lo ? lo : q > hi ? hi : q;
                        yi[o] = clampq(q, qy);
                    }
    } else {
        int64_t K = per;
        for (int64_t b = 0; b < N; b++)
            for (int64_t m = 0; m < M; m++) {
                int64_t acc = bq[m];
                for (int64_t k = 0; k < K; k++)
                    acc += (int64_t)(xi[b * K + k] - zx) * wq[transb ? m * K + k : k * M + m];
                if (yi) {
                    int64_t q = qy->zp[0] + round_shift(acc * mult[m], shift[m]);
                    q = q < lo ? lo : q > hi ? hi : q;
                    yi[b * M + m] = clampq(q, qy);
                } else { /* float logits */
                    c->logits[b * M + m] = (float)((double)acc * qx->scale[0] * qw->scale[qw->n > 1 ? m : 0]);
                }
            }
    }
    free(wq);
    free(bq);
    free(mult);
    free(shift);
    return 0;
}

static int run_node(struct ctx *c, int i) {
    const struct qt_graph *g = c->p->g;
    const struct qt_node *n = &g->n[i];
    const struct qt_qnode *qn = &c->p->qn[i];
    if (n->nout < 1 || !c->p->vact[n->out[0]])
        return 0; /* shape glue, folded constants */
    switch (qn->kind) {
    case QT_QN_COMPUTE: return compute(c, i);
    case QT_QN_ACT_FUSED: return 0;
    case QT_QN_PASS: { /* MaxPool on integers (monotone), reshapes copy */
        const struct qt_tensor *X = &c->x->t[n->in[0]], *Y = &c->x->t[n->out[0]];
        const int32_t *xi = c->iv[n->in[0]];
        int32_t *yi = alloc_v(c, n->out[0]);
        if (!xi)
            return -1;
        if (strcmp(n->op_type, "MaxPool")) {
            memcpy(yi, xi, sizeof(int32_t) * (size_t)qt_tensor_numel(Y));
            return 0;
        }
        struct qt_err e = {0};
        const int64_t *ks, *st = NULL, *pd = NULL;
        if (qt_attr_ints(n, "kernel_shape", &ks, &e) != 2)
            return -1;
        int ns = qt_attr_ints(n, "strides", &st, &e), np = qt_attr_ints(n, "pads", &pd, &e);
        int64_t NC = X->dims[0] * X->dims[1], H = X->dims[2], W = X->dims[3], OH = Y->dims[2], OW = Y->dims[3];
        for (int64_t b = 0; b < NC; b++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int32_t mx = INT32_MIN;
                    for (int64_t kh = 0; kh < ks[0]; kh++)
                        for (int64_t kw = 0; kw < ks[1]; kw++) {
                            int64_t ih = oh * (ns > 0 ? st[0] : 1) - (np > 0 ? pd[0] : 0) + kh;
                            int64_t iw = ow * (ns > 1 ? st[1] : 1) - (np > 1 ? pd[1] : 0) + kw;
                            if (ih >= 0 && ih < H && iw >= 0 && iw < W && xi[(b * H + ih) * W + iw] > mx)
                                mx = xi[(b * H + ih) * W + iw];
                        }
                    yi[(b * OH + oh) * OW + ow] = mx;
                }
        return 0;
    }
    case QT_QN_BINARY:
    case QT_QN_UNARY: {
        int add = !strcmp(n->op_type, "Add"), gap = !strcmp(n->op_type, "GlobalAveragePool");
        int y = qn->fused >= 0 ? g->n[qn->fused].out[0] : n->out[0];
        const struct qt_qparam *qa = qp_of(c, n->in[0]), *qy = qp_of(c, y);
        const int32_t *a = c->iv[n->in[0]];
        if ((!add && !gap) || !qa || !qy || !a)
            return -1;
        int32_t *yi = alloc_v(c, y);
        const struct qt_tensor *X = &c->x->t[n->in[0]];
        int32_t ma, mb = 0;
        int sa, sb = 0;
        if (gap) {
            int64_t NC = X->dims[0] * X->dims[1], HW = X->dims[2] * X->dims[3];
            qt_requant_fixed((double)qa->scale[0] / ((double)qy->scale[0] * (double)HW), &ma, &sa);
            for (int64_t b = 0; b < NC; b++) {
                int64_t s = 0;
                for (int64_t k = 0; k < HW; k++)
                    s += a[b * HW + k] - qa->zp[0];
                yi[b] = clampq(qy->zp[0] + round_shift(s * ma, sa), qy);
            }
            return 0;
        }
        const struct qt_qparam *qb = qp_of(c, n->in[1]);
        const int32_t *bv = c->iv[n->in[1]];
        if (!qb || !bv)
            return -1;
        qt_requant_fixed((double)qa->scale[0] / qy->scale[0], &ma, &sa);
        qt_requant_fixed((double)qb->scale[0] / qy->scale[0], &mb, &sb);
        int64_t lo = qn->fused >= 0 ? qy->zp[0] : INT64_MIN;
        for (int64_t k = 0; k < qt_tensor_numel(X); k++) { /* 16 fraction bits before the final rounding */
            int64_t s = round_shift((int64_t)(a[k] - qa->zp[0]) * ma, sa - 16) +
                        round_shift((int64_t)(bv[k] - qb->zp[0]) * mb, sb - 16);
            int64_t q = qy->zp[0] + round_shift(s, 16);
            yi[k] = clampq(q < lo ? lo : q, qy);
        }
        return 0;
    }
    }
    return -1;
}

static void check_profile(const char *profile) {
    const char *model = "testdata/fmnist/model_bn.onnx";
    char dir[] = "/tmp/qtool-intonly.XXXXXX", out[128], info[128], wts[128];
    struct qt_err err = {0};
    struct qt_calib_opts o;
    struct qt_calib_result cr;
    struct qt_graph *g = NULL, *qg = NULL;
    struct qt_exec *rx = NULL;
    struct qt_dataset *ds = NULL;
    struct ctx c = {0};
    float *in = NULL;
    int ntuned, *labels = NULL, *order = NULL;
    if (!mkdtemp(dir)) {
        T_OK(0, "temporary folder");
        return;
    }
    snprintf(out, sizeof out, "%s/q.onnx", dir);
    snprintf(info, sizeof info, "%s/q.json", dir);
    snprintf(wts, sizeof wts, "%s/q.weights.bin", dir);
    qt_calib_opts_init(&o);
    o.model = model;
    o.data = "testdata/fmnist/calib";
    o.out = out;
    o.quant_info = info;
    o.limit = 64;
    o.threads = 1;
    qt_preproc_preset(&o.pp, "mnist", &err);
    o.channels_set = 1;
    T_OK(!qt_profile_apply(&o.q, profile, &err), "%s: profile %s", profile, err.msg);
    T_OK(!qt_calib_run(&o, &cr, &err), "%s: calib %s", profile, err.msg);
    in = malloc(sizeof(float) * NIMG * 28 * 28);
    labels = malloc(sizeof(int) * NIMG);
    c.logits = calloc(NIMG * 10, sizeof(float));
    /* the reference: qtool's int8 path on the QDQ file */
    int nl = 0;
    if (qt_dataset_open(&ds, "testdata/fmnist/test", NULL, &err) ||
        qt_dataset_load(ds, &o.pp, 0, NIMG, 1, 28, 28, in, labels, 1, 0, &err) || qt_graph_load(&qg, out, &err) ||
        qt_int8_lower(qg, &nl, &err) || qt_exec_new(&rx, qg, NIMG, 1, &err))
        goto out;
    memcpy(qt_exec_input(rx, 0), in, sizeof(float) * NIMG * 28 * 28);
    if (qt_exec_run(rx, &err))
        goto out;
    T_OK(nl >= 6, "%s: the QDQ file runs on %d integer nodes", profile, nl);
    /* the integer-only run over the plan rebuilt from the JSON */
    void *buf;
    size_t len;
    if (qt_graph_load(&g, model, &err) || qt_qplan_from_info(&c.p, g, model, info, &ntuned, &err) ||
        qt_read_file(info, 1 << 26, &buf, &len, &err))
        goto out;
    c.info = cJSON_Parse(buf);
    free(buf);
    if (qt_exec_new_flags(&c.x, c.p->g, NIMG, 1, QT_EXEC_NOFUSE, &err) || qt_graph_topo(c.p->g, &order, &err))
        goto out;
    c.iv = calloc((size_t)c.p->g->nv + 1, sizeof *c.iv);
    int vin = c.p->g->inputs[0];
    const struct qt_qparam *qin = qp_of(&c, vin);
    int32_t *xi = alloc_v(&c, vin);
    for (int k = 0; k < NIMG * 28 * 28; k++)
        xi[k] = qt_quantize(in[k], qin->scale[0], qin->zp[0], qin->qmin, qin->qmax);
    int bad = -1;
    for (int k = 0; k < c.p->g->nn && bad < 0; k++)
        if (run_node(&c, order[k]))
            bad = order[k];
    T_OK(bad < 0, "%s: every node runs on integers%s%s", profile, bad < 0 ? "" : ": not ", bad < 0 ? "" : c.p->g->n[bad].name);
    const float *ref = qt_exec_output(rx, 0);
    int agree = 0;
    double num = 0, den = 0, maxd = 0, maxr = 0;
    for (int b = 0; b < NIMG; b++) {
        int ai = 0, ri = 0;
        for (int k = 0; k < 10; k++) {
            float a = c.logits[b * 10 + k], r = ref[b * 10 + k];
            ai = a > c.logits[b * 10 + ai] ? k : ai;
            ri = r > ref[b * 10 + ri] ? k : ri;
            num += (double)r * r;
            den += (double)(a - r) * (a - r);
            maxd = fmax(maxd, fabs(a - r));
            maxr = fmax(maxr, fabs(r));
        }
        agree += ai == ri;
    }
    double sqnr = den > 0 ? 10 * log10(num / den) : 999;
    printf("# %s: integer-only vs int8 QDQ: top-1 agreement %d/%d, SQNR %.1f dB, max |diff| %.4f of %.2f\n",
           profile, agree, NIMG, sqnr, maxd, maxr);
    T_OK(agree >= NIMG * 99 / 100, "%s: top-1 agreement %d/%d >= 99%%", profile, agree, NIMG);
    T_OK(sqnr >= 50, "%s: SQNR %.1f dB >= 50", profile, sqnr);
out:
    if (err.code)
        T_OK(0, "%s", err.msg);
    for (int v = 0; c.iv && v < c.p->g->nv; v++)
        free(c.iv[v]);
    free(c.iv);
    cJSON_Delete(c.info);
    qt_exec_free(c.x);
    qt_qplan_free(c.p);
    qt_exec_free(rx);
    qt_graph_free(g);
    qt_graph_free(qg);
    qt_dataset_free(ds);
    free(in);
    free(labels);
    free(c.logits);
    free(order);
    free(cr.ft.layer);
    remove(out);
    remove(info);
    remove(wts);
    remove(dir);
}

int main(void) {
    check_profile("int-only");
    check_profile("pow2");
    return t_done();
}
