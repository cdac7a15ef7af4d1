/* quant.h: quantization inside the engine: observers, quantization
 * parameters, graph preparation (BatchNorm folding, activation fusion),
 * the quantization plan, QDQ export and quant_info.json. */
#ifndef QT_QUANT_H
#define QT_QUANT_H
#include "engine.h"
#include "train/train.h" /* the one Adam update */

#include <math.h>

/* ---- observers -------------------------------------------------------- */

enum qt_obs_kind { QT_OBS_MINMAX, QT_OBS_EMA, QT_OBS_PERCENTILE, QT_OBS_ENTROPY, QT_OBS_MSE };

#define QT_HIST_BINS 4096 /* over [-R, R]; 0 is the edge between bins 2047 and 2048 */

/* A streaming observer of one tensor. Memory is fixed (one histogram) and
 * does not grow with the number of batches: the histogram range doubles
 * when a value falls outside it, merging pairs of bins, which is exact
 * because bin edges stay aligned on 0. */
struct qt_observer {
    int kind;
    double min, max;     /* over everything seen */
    double ema_min, ema_max;
    double ema_c;        /* averaging constant (0.01, as PyTorch) */
    int64_t batches;
    int64_t count;
    int64_t nonfinite;   /* NaN/Inf values seen (ignored) */
    double hist_r;       /* histogram covers [-hist_r, hist_r]; 0 until the first non-zero value */
    double *hist;        /* QT_HIST_BINS counts, NULL for minmax/ema */
    double zeros;        /* exact zeros among the histogram's counts */
};

const char *qt_obs_name(int kind);
int qt_obs_parse(const char *name, int *kind); /* 0 or -1 */
int qt_obs_init(struct qt_observer *o, int kind, struct qt_err *err);
void qt_obs_release(struct qt_observer *o);
/* Feeds n values (one batch). */
void qt_obs_update(struct qt_observer *o, const float *v, int64_t n);
/* The same in pieces, so a caller can split the values over threads:
 * qt_obs_scan over chunks into stats (merged with qt_obs_stats_merge, any
 * order), qt_obs_begin once (returns 1 when the values must be binned), then
 * qt_obs_bin over chunks into per-thread histograms of QT_HIST_BINS counts
 * that the caller adds into o->hist and o->zeros (counts are whole numbers:
 * the sums are exact in any order). */
struct qt_obs_stats {
    float mn, mx;
    int64_t good, bad;
};
void qt_obs_stats_init(struct qt_obs_stats *s);
void qt_obs_scan(const float *v, int64_t n, struct qt_obs_stats *s);
void qt_obs_stats_merge(struct qt_obs_stats *a, const struct qt_obs_stats *b);
int qt_obs_begin(struct qt_observer *o, const struct qt_obs_stats *s);
void qt_obs_bin(const struct qt_observer *o, const float *v, int64_t n, double *hist, double *zeros);
/* Chooses the range to quantize with for 2^bits levels. symmetric: the
 * range is [-t, t]. pct: percentile for QT_OBS_PERCENTILE (e.g. 99.99). The
 * result always contains 0. */
void qt_obs_range(const struct qt_observer *o, int bits, int symmetric, double pct, double *lo, double *hi);
/* The percentile for an activation of `bits`: q->percentile, or when that
 * is 0 (the default) 99.999 at 8 bits without cross-layer equalization,
 * else 99.99. */
double qt_act_percentile(const struct qt_quant_opts *q, int bits);

/* ---- quantization parameters ------------------------------------------ */

enum qt_qrole { QT_ROLE_ACT, QT_ROLE_WEIGHT, QT_ROLE_BIAS };

struct qt_qparam {
    int role;
    int dtype;            /* QT_UINT8, QT_INT8 or QT_INT32 */
    int bits;
    int qmin, qmax;
    int symmetric;
    int axis;             /* -1: per tensor */
    int n;                /* channels (1 when per tensor) */
    float *scale;         /* n */
    int32_t *zp;          /* n */
    float *obs_min, *obs_max; /* observed range, n */
    float *rng_min, *rng_max; /* chosen range, n */
    const char *method;   /* observer name, "minmax" for weights, "derived" for biases */
    unsigned char *cbits; /* weights with per-channel widths (--mixed per-channel): n widths, the
                           * container's qmin/qmax those of the widest; NULL: bits for all */
};

struct qt_qplan;
/* Mixed precision (mixed.c). The widths chosen within the budgets of
 * p->o (weight_budget, act_budget, mixed), as per-node settings to build
 * the plan again with (qt_quant_opts.layers); measured on the first
 * o.mixed_images images of ds through p->g (float, prepared). QT_EUSAGE for
 * a budget no choice can meet (below 2-bit weights, ...), naming the option. */
struct qt_mixed {
    struct qt_layer_set *layers; /* node names malloc'd (qt_mixed_free) */
    int nlayers;
    struct qt_layer_cbits *cbits; /* per-channel widths (--mixed per-channel); node names and bits malloc'd */
    int ncbits;
    int64_t rom_budget, ram_budget; /* bytes (0: none) */
    int images;
};
int qt_mixed_choose(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w,
                    int threads, struct qt_mixed *m, struct qt_err *err);
void qt_mixed_free(struct qt_mixed *m);
/* Chooses the widths within q's budgets on *p (built from g as q says) and
 * replaces *p by the plan built again with them (its weights quantized);
 * the new plan owns the choice (p->mixed). */
int qt_mixed_replan(struct qt_qplan **p, const struct qt_graph *g, const struct qt_quant_opts *q,
                    struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w, int threads,
                    struct qt_err *err);
/* ROM and RAM of a plan at its widths (struct qt_mem_figures in qtool.h). */
int qt_mem_figures(const struct qt_qplan *p, struct qt_mem_figures *m, struct qt_err *err);
/* After tuning, per-channel widths: each channel's float weights clamped to
 * its own grid, so the written integers stay within its width. */
void qt_mixed_clamp(struct qt_qplan *p);

void qt_qparam_release(struct qt_qparam *q);
int qt_qparam_alloc(struct qt_qparam *q, int n, struct qt_err *err);
/* [qmin, qmax] for bits and container dtype; narrow drops the most negative
 * value of signed types. reduce: one bit less (--reduce-range). */
void qt_qrange(int dtype, int bits, int narrow, int *qmin, int *qmax);
/* scale and zero point for range [lo, hi] (must contain 0). Zero-width
 * ranges get scale 1 (documented): every value is then the zero point. */
void qt_qparams_from_range(double lo, double hi, int qmin, int qmax, int symmetric, float *scale, int32_t *zp);
/* The symmetric step of channel c of weights w laid out outer x nch x inner
 * (per tensor: nch 1) on [qmin, qmax]: max |w| through qt_qparams_from_range,
 * or with clip > 0 the clipping t = k/64 max |w|, k = 16..64, whose grid has the
 * least squared error (min/max spends most of 4 bits on outliers; ties keep
 * the wider range). *t_out (may be NULL): the range's end t. */
float qt_weight_step(const float *w, int64_t outer, int64_t nch, int64_t inner, int64_t c, int qmin, int qmax,
                     int clip, float *t_out);
/* ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zp). */
static inline int32_t qt_quantize(float x, float scale, int32_t zp, int qmin, int qmax) {
    float q = __builtin_nearbyintf(x / scale);
    float r = q + (float)zp;
    if (!(r >= (float)qmin)) /* also NaN -> qmin */
        return qmin;
    if (r > (float)qmax)
        return qmax;
    return (int32_t)r;
}


/* ---- fake quantization (training graphs) -------------------------------- */

/* FakeQuant, domain QT_FQ_DOMAIN (lib/quant/fakequant.c explains the maths).
 * Not an ONNX operator: found by qt_op_find but not listed by qt_op_at. */
#define QT_FQ_DOMAIN "ai.qtool"
extern const struct qt_op qt_op_fakequant;
struct qt_fq { /* the node's priv */
    int qmin, qmax, axis, pact, symmetric, ema;
    float grad_scale;
    int observe;          /* runtime: recompute the parameters every forward */
    int seen;             /* ema started */
    float ema_min, ema_max;
};
/* Adds FakeQuant(x, scale, zp) -> y to g: a new node with the given
 * attributes (zp may be -1). Returns the node index or -1 (err filled). */
int qt_fq_add(struct qt_graph *g, const char *name, int x, int scale, int zp, int y, int qmin, int qmax, int axis,
              int pact, int symmetric, float grad_scale, const char *observer, struct qt_err *err);

/* ---- the quantization plan --------------------------------------------- */

/* One quantized tensor of the prepared graph. */
struct qt_qtensor {
    int v;              /* value index in plan->g */
    int node;           /* weights/biases: the node that reads them; activations: -1 */
    int group;          /* activations: scale group (shared parameters); else -1 */
    int obs_kind;
    int bounded;        /* activations: 1 the value lies in [lo, hi] (GELU), 2 the range is
                         * [lo, hi] exactly (Softmax) */
    float lo, hi;
    struct qt_qparam q;
};

/* What cross-layer equalization did (cle.c). */
struct qt_cle_report {
    int pairs;          /* Conv/Gemm pairs equalized */
    int clip_pairs;     /* of them through a Clip with an upper bound (ReLU6) */
    int limited;        /* channel factors held back by a Clip's bound in the last round */
    int rounds;         /* rounds over the pairs until every factor was within 1e-4 of 1 */
    int absorbed;       /* channels whose high bias was absorbed into the next layer */
};

/* Per node: how it is quantized. */
struct qt_qnode {
    int kind;           /* QT_QN_* */
    int fused;          /* index of the Relu/Clip node fused into this one's output, or -1 */
    int wbits, abits;
    int per_channel;
    int obs_kind;
    int excluded;
    int unit_in;        /* QT_QN_UNIT: the unit's activation input (a value), -1: none */
    int bias_add;       /* QT_QN_COMPUTE: the Add that is its bias (QF_BIAS), or -1 */
    int bounded;        /* the output lies in [lo, hi] (the op's or the unit's QT_QF_BOUNDED);
                         * 2: its range is [lo, hi] exactly (QT_QF_FIXED) */
    float lo, hi;
    const unsigned char *cbits; /* per-channel weight widths (qt_layer_set.cbits) or NULL */
    int ncbits;
};

enum { /* the op's role (enum qt_qrole), or a fused activation */
    QT_QN_NONE = QT_QR_NONE,
    QT_QN_COMPUTE = QT_QR_COMPUTE,
    QT_QN_BINARY = QT_QR_BINARY,
    QT_QN_CONCAT = QT_QR_CONCAT,
    QT_QN_PASS = QT_QR_PASS,
    QT_QN_UNARY = QT_QR_UNARY,
    QT_QN_ACT_FUSED,
    QT_QN_UNIT,         /* the last node of a multi-node unit (decomposed LayerNorm, GELU): its
                         * input unit_in and its output quantized, the unit's other nodes float */
};

struct qt_qplan {
    struct qt_graph *g;     /* prepared float graph: BatchNorm folded (owned) */
    struct qt_quant_opts o;
    struct qt_qnode *qn;    /* per node of g */
    struct qt_qtensor *t;   /* quantized tensors */
    int nt;
    int *tensor_of;         /* per value of g: index into t, or -1 */
    unsigned char *vact;    /* per value of g: a float tensor computed per batch */
    int ngroups;
    int nfolded, nfused, nexcluded;
    void (*log)(void *ud, const char *line);
    void *log_ud;
    int tuned;              /* finetune/qat changed the float weights: quant_info.json records them */
    struct qt_cle_report cle; /* set by qt_cle (zero when it did not run) */
    struct qt_mixed *mixed;   /* widths chosen within a budget (owned; o.layers, o.cbits point into it) */
    struct qt_layer_set *mixed_layers; /* owned: the array o.layers is */
    const struct qt_fallback *fallback; /* --max-drop's outcome: quant_info.json's "fallback" (may be NULL) */
    int bias;               /* QT_BIAS_*: the bias correction applied (calib.c) */
    int bc_layers;          /* layers it corrected */
    struct {                /* --weight-observer auto's choice (calib.c; images 0: not made) */
        int images;         /* the calibration images it measured on */
        double sqnr_db[2];  /* output SQNR with max |w| steps [0] and clipped ones [1] */
    } wchoice;
    struct qt_pchoice {     /* the 8-bit activations' default percentile's choice (calib.c; images 0: not made) */
        int images;
        double sqnr_db[2];  /* output SQNR at the percentile 99.999 [0] and 99.99 [1] */
    } pchoice;
};

/* Prepares a copy of g (folds BatchNorm into Conv/Gemm) and decides what to
 * quantize. Activation parameters are left for calibration. */
int qt_qplan_build(struct qt_qplan **plan, const struct qt_graph *g, const struct qt_quant_opts *o,
                   void (*log)(void *, const char *), void *log_ud, struct qt_err *err);
void qt_qplan_free(struct qt_qplan *p);
/* Quantizes weights and biases (biases need the input activation scales:
 * call after the activation parameters are set). */
int qt_qplan_weights(struct qt_qplan *p, struct qt_err *err);
int qt_qplan_biases(struct qt_qplan *p, struct qt_err *err);
/* A line to p's log (p->log, p->log_ud). */
void qt_qplan_logf(const struct qt_qplan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* --pack (o.pack): rewrites the weights of 4 bits or fewer of the QDQ graph
 * g that p built as ONNX INT4 initializers, opset 21. qtool's engine does
 * not run the result (qt_qplan_save applies it to what it writes). */
void qt_qdq_pack_int4(const struct qt_qplan *p, struct qt_graph *g);
/* Builds the QDQ graph (a new graph; plan unchanged). */
int qt_qplan_export_qdq(const struct qt_qplan *p, struct qt_graph **out, struct qt_err *err);
/* (qt_run_images, the image loop of calibration, bias correction and
 * finetune's capture, is in lib/graph/stream.c; see engine.h) */
/* Calibrates the activation parameters of p: streams the first `limit`
 * images of ds (0 = all) through p->g with an observer per activation group
 * and sets every activation's scale and zero point. fixed: the model's
 * fixed batch (0 if dynamic). *images: how many were used. */
int qt_calib_observe(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w,
                     int limit, int batch, int fixed, int threads, int *images,
                     void (*progress)(void *, int, int), void *progress_ud, struct qt_err *err);
/* Sets every activation's parameters for one range [lo, hi] instead of
 * calibrating (the quantization fuzz target, lib/test/fuzz_quant.c). */
int qt_qplan_act_fixed(struct qt_qplan *p, double lo, double hi, struct qt_err *err);
/* Rebuilds the plan a quant_info.json describes for model g read from
 * model_path (export.c): same preparation, every tensor's parameters, the
 * float biases and tuned weights restored. QT_EDATA for a missing,
 * malformed or mismatched file (another model: sha256). *ntuned: weight
 * tensors restored from the tuned-weights file. */
int qt_qplan_from_info(struct qt_qplan **out, const struct qt_graph *g, const char *model_path, const char *path,
                       int *ntuned, struct qt_err *err);
/* The same, and *fref: the float graph the plan was made from (prepared as recorded, the model's
 * own weights and biases, before bias correction and tuning), the simulator's reference; NULL when
 * the plan used CLE (its float weights exist only as the tuned ones). */
int qt_qplan_from_info_ref(struct qt_qplan **out, struct qt_graph **fref, const struct qt_graph *g,
                           const char *model_path, const char *path, int *ntuned, struct qt_err *err);
/* The QOperator model (qoperator.c): QLinearConv/QLinearMatMul for compute
 * nodes, QuantizeLinear/DequantizeLinear at the borders; other quantized
 * nodes as DequantizeLinear -> float op -> QuantizeLinear, or with contrib
 * com.microsoft QLinearAdd/QLinearGlobalAveragePool/QLinearConcat/QGemm.
 * *nq: nodes written as integer operators. */
int qt_qplan_export_qop(const struct qt_qplan *p, int contrib, struct qt_graph **out, int *nq, struct qt_err *err);
/* Hardware-profile constraints (profile.c): with o.pow2_scales, rounds every
 * activation and weight scale up to a power of two (symmetric, so the zero
 * points stay 0). Call before qt_qplan_biases. */
void qt_qplan_pow2(struct qt_qplan *p);
/* Requantization of a compute node's output as integers: M = s_in s_w[c] /
 * s_out ~= mult / 2^shift with mult in [2^30, 2^31) (0 and shift 0 when M is
 * 0 or not finite). */
void qt_requant_fixed(double m, int32_t *mult, int *shift);
/* quant_info.json. With p->tuned, the float weights also go to a binary file
 * beside it (<path without .json>.weights.bin), named in the JSON. */
int qt_qplan_write_info(const struct qt_qplan *p, const char *path, const char *model_path,
                        const struct qt_preproc *pp, int images, const char *data, struct qt_err *err);
/* The same, written but not yet in place (qt_wfile_commit / _abort). fw
 * (may be NULL: written in place at once) gets the tuned-weights file when
 * the plan is tuned (fw->path is NULL otherwise). */
int qt_qplan_info_begin(const struct qt_qplan *p, const char *path, const char *model_path,
                        const struct qt_preproc *pp, int images, const char *data, struct qt_wfile *f,
                        struct qt_wfile *fw, struct qt_err *err);
/* Writes the QDQ model qg to out and quant_info.json to qinfo (and the tuned
 * weights beside it) together: all are written nameless, then renamed one
 * right after the other,
 * so a failure (a full disk) or a kill leaves the previous pair untouched. */
int qt_qplan_save(const struct qt_qplan *p, const struct qt_graph *qg, const char *out, const char *qinfo,
                  const char *model_path, const struct qt_preproc *pp, int images, const char *data,
                  struct qt_err *err);
/* The tuned-weights file beside quant_info.json qinfo: <qinfo without .json>.weights.bin, into buf. */
const char *qt_qinfo_weights_path(const char *qinfo, char *buf, size_t len);
/* Before any work: every file qt_qplan_save will write (out; qinfo when not
 * NULL; its weights file when tuned) can be written (qt_out_check), so a bad
 * path fails first and leaves nothing behind. */
int qt_qplan_outputs_check(const char *out, const char *qinfo, int tuned, struct qt_err *err);

/* Empirical bias correction (biascorr.c): call after the activation
 * parameters and biases are set; corrects the float biases of p->g in
 * execution order over the first `total` images of ds and re-quantizes them.
 * rescale: BatchNorm re-estimation, per-channel variance matched too (the
 * float weights and per-channel weight steps scaled). */
struct qt_bc_report {
    int layers;
    double mean_abs_shift; /* mean over layers of the mean |bias change| */
};
int qt_bias_correct(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int total, int batch,
                    int c, int h, int w, int threads, int rescale, struct qt_bc_report *rep, struct qt_err *err);

/* Cross-layer equalization (cle.c explains it): rescales output channels
 * of Conv/Gemm layers against the input channels of the layer reading them,
 * in p->g, so the float model computes the same and per-tensor weight
 * ranges even out; absorbs high biases through Relu. The first `total`
 * images of ds (ds NULL or total 0: none; pairs through a bounded Clip are
 * then left as they are) give the per-channel ranges the bounded Clips and
 * the absorption need. Call before qt_qplan_weights (or again after it).
 * Sets p->tuned when weights changed, p->cle and *rep. */
int qt_cle(struct qt_qplan *p, struct qt_dataset *ds, const struct qt_preproc *pp, int total, int batch, int c,
           int h, int w, int threads, struct qt_cle_report *rep, struct qt_err *err);
/* Adds the "cle" object of quant_info.json to the cJSON object json: what
 * qt_cle did and its layer pairs. -1 when out of memory. */
int qt_cle_info(const struct qt_qplan *p, void *json);
/* Whether the options ask for it (o->cle -1: with per-tensor weights). */
static inline int qt_cle_wanted(const struct qt_quant_opts *o) {
    return o->cle > 0 || (o->cle < 0 && !o->per_channel);
}

/* AdaQuant layer-local loss and gradient (adaquant.c). A Conv (any groups,
 * strides, dilations, pads top/left given; output size oh x ow) or a Gemm
 * as a 1x1 Conv on n x cin x 1 x 1. Weights cout x cin/groups x kh x kw. */
struct qt_aq_layer {
    int n, cin, h, w, cout, oh, ow, kh, kw, groups, sh, sw, pt, pl, dh, dw;
    int wqmin, wqmax;        /* symmetric weights, zero point 0 */
    int aqmin, aqmax, azp;   /* input quantizer */
};
struct qt_aq_params {
    float *w, *b, *ws;       /* weights, bias (may be NULL), per-channel weight steps */
    float as;                /* input step */
};
/* Adam with a learning rate relative to each channel's step; m, v: one
 * float per parameter (weights, biases, weight steps, input step), zeroed. */
struct qt_aq_adam {
    double lr;
    int t, learn_as, fixed_ws; /* fixed_ws: weight steps not learnt (per-tensor weights) */
    float *m, *v;
};
void qt_aq_adam(struct qt_aq_adam *a, const struct qt_aq_layer *L, struct qt_aq_params *p,
                const struct qt_aq_params *g);
/* One Adam update of one value (beta1 0.9, beta2 0.999, eps 1e-8; c1, c2:
 * the bias corrections 1 - beta^t): qtool's one Adam (train.h) with the
 * moments in double, AdaQuant's and AdaRound's. */
static inline void qt_aq_adam1(float *w, float g, float *m, float *v, double lr, double c1, double c2) {
    *w -= (float)(lr * qt_adam_dir_double(g, m, v, 0.9, 0.999, 1e-8, c1, c2));
}

/* The same layer loss run by the engine (forward and backward through
 * FakeQuant and the node's own op), for `batch` images at a time: the layer
 * `node` of src with x of shape xs (any batch), its input and weight
 * quantizers; weights, bias and per-channel steps are parameters of a private
 * copy (qt_aq_net_params points into it). */
struct qt_aq_net {
    struct qt_graph *g;
    struct qt_exec *x;
    int vy, vw, vb, vws, vas, learn_as, cout, batch;
    int64_t per_x, per_y; /* floats per image */
};
/* flags: QT_AQ_LEARN_AS, the input step is a parameter too (its gradient in
 * qt_aq_net_as_grad, set it back with qt_aq_net_set_as); QT_AQ_SOFT_W, no
 * weight FakeQuant: the node reads the weights as they are (AdaRound writes
 * its soft-quantized weights there) and only they are parameters. */
#define QT_AQ_LEARN_AS 1
#define QT_AQ_SOFT_W 2
/* QT_AQ_QIN: no input FakeQuant; the input is fed already quantized (a
 * qt_aq_set of codes), which gives the same values when its step is fixed. */
#define QT_AQ_QIN 4
int qt_aq_net_new(struct qt_aq_net *a, const struct qt_graph *src, int node, const struct qt_tensor *xs,
                  const struct qt_qparam *qa, const struct qt_qparam *qw, int cout, int batch, int threads,
                  int flags, struct qt_err *err);
float qt_aq_net_as_grad(const struct qt_aq_net *a);
void qt_aq_net_set_as(struct qt_aq_net *a, float as);
/* Loss over `batch` images (X, T: per_x / per_y floats each; X NULL: the
 * input was fed by qt_aq_set_feed); grad: also the backward, gradients in
 * the arrays qt_aq_net_params gives. */
int qt_aq_net_loss(struct qt_aq_net *a, const float *X, const float *T, int grad, double *loss, struct qt_err *err);
void qt_aq_net_params(struct qt_aq_net *a, struct qt_aq_params *p, struct qt_aq_params *g);
void qt_aq_net_free(struct qt_aq_net *a);
/* A layer's held tuning images: inputs as floats (X) or as codes (codes
 * set, Xq, value = (code + xoff) * xs, exactly the input FakeQuant's output) and
 * float targets T, in memory or (fd >= 0) in a file at offsets xpos / tpos,
 * read a minibatch at a time into buf (not resident in the process). */
struct qt_aq_set {
    int nimg;
    int64_t per_x, per_y;        /* values per image */
    const float *X, *T;
    const unsigned char *Xq;
    int codes;
    float xs;
    int xoff;
    int fd;                      /* -1: in memory */
    int64_t xpos, tpos;
    void *buf;                   /* fd >= 0: room for a minibatch of inputs and targets */
};
/* Feeds images [start, start + a->batch) of s into the net's input and
 * points *T at their targets; QT_EIO when the file cannot be read. */
int qt_aq_set_feed(struct qt_aq_net *a, const struct qt_aq_set *s, int start, const float **T, struct qt_err *err);
/* Mean loss over the first nchunk whole minibatches of s. */
int qt_aq_net_set_loss(struct qt_aq_net *a, const struct qt_aq_set *s, int nchunk, double *loss, struct qt_err *err);
/* The first image of the next random minibatch of mb out of nimg (seeded
 * generator in *seed). */
int qt_aq_pick(uint64_t *seed, int nimg, int mb);

/* AdaRound (Nagel et al. 2020, arXiv 2004.10568; adaround.c): weights stay
 * w = s (floor(w0 / s) + h(v)) with a learnt rounding variable v per weight,
 * h(v) = clamp(sigmoid(v) (zeta - gamma) + gamma, 0, 1), zeta 1.1, gamma -0.1,
 * and the result clamped to [qmin, qmax] steps; loss = cout * mean((y - t)^2)
 * (AIMET's sum over channels) + lambda sum (1 - |2 h(v) - 1|^beta). At the
 * end h is rounded to 0 or 1 (v >= 0). per: weights per channel (s = ws[i / per]). */
struct qt_ar {
    int64_t nw, per;
    int qmin, qmax;
    const float *ws;
    float *fl, *v;           /* floor(w0 / s), the rounding variables */
};
float qt_ar_h(float v);
/* fl and v from the float weights w0: h(v) = the fractional part of w0 / s. */
void qt_ar_init(struct qt_ar *r, const float *w0);
/* w = the soft (hard = 0) or final (hard = 1) quantized weights. */
void qt_ar_weights(const struct qt_ar *r, int hard, float *w);
/* gv = the gradient over v of cout * mse + lambda * reg, given gw = d mse /
 * d w at w = qt_ar_weights(r, 0); returns reg. */
double qt_ar_grad(const struct qt_ar *r, const float *gw, double cout, double lambda, double beta, float *gv);
/* Tunes one layer: iters Adam steps (rate lr) on random minibatches of
 * net->batch of the held images set, through net (built with
 * QT_AQ_SOFT_W; its weights are overwritten). The first 20% of the steps
 * without the regulariser, then beta from 20 down to 2 (cosine). Returns in
 * w the best of round-to-nearest and the rounding at four check points, by
 * the loss over all images (*before: nearest, *after: the one kept). */
int qt_ar_tune(struct qt_aq_net *net, const float *w0, const float *ws, int qmin, int qmax,
               const struct qt_aq_set *set, int iters, double lr, uint64_t seed, const volatile int *stop,
               const char *name, float *w, double *before, double *after, struct qt_err *err);

/* AdaQuant over the plan (finetune.c): call after calibration; tunes the
 * weights, biases and weight steps of every quantized Conv/Gemm in place,
 * and the input step of a layer that is its input's only reader. */
/* fref: the prepared float graph the targets come from (NULL: p->g as it
 * is; pass a copy taken before bias correction, which edits p->g). */
int qt_finetune(struct qt_qplan *p, const struct qt_graph *fref, struct qt_dataset *ds, const struct qt_preproc *pp,
                int total, int batch, int c, int h, int w, int threads, const struct qt_ft_opts *fo,
                struct qt_ft_report *rep, struct qt_err *err);

/* walk.c. Per-image values of all tuning images: in memory, or (spill) in
 * an unlinked temporary file in TMPDIR (else /tmp), fd >= 0, read and
 * written with qt_read_at / qt_write_at (through the page cache, not the
 * process's memory). qt_held_release(NULL-filled) is a no-op. */
struct qt_held {
    void *p;
    size_t bytes;
    int fd;
};
int qt_held_new(struct qt_held *h, size_t bytes, int spill, struct qt_err *err);
void qt_held_release(struct qt_held *h);
/* n bytes at pos; -1 with errno set on failure */
int qt_write_at(int fd, const void *src, size_t n, int64_t pos);
int qt_read_at(int fd, void *dst, size_t n, int64_t pos);

/* A walk through a graph over the first `total` images, step range by step
 * range: the values that cross the cut (made before it, read after it) are
 * kept for every image, so reaching the next layer runs only the steps in
 * between instead of the whole prefix from the images. The executor
 * (QT_EXEC_NOFUSE), batches and kernels are those of a run from the images,
 * so the values are the same bytes. Kept in memory, or over max_memory in a
 * temporary file. A cut before the current one starts again from the
 * images. Zero it, set g and max_memory (and st.fd = -1). */
struct qt_walk {
    struct qt_graph *g;   /* not owned; replaced by walk_graph */
    struct qt_exec *x;    /* for batch size cur */
    int cur, cut;         /* steps done */
    int nf;               /* values kept at cut */
    char **fname;         /* their names */
    int64_t *fper;        /* bytes per image */
    struct qt_held st;       /* all images, value after value */
    int64_t max_memory;
};
/* The graph to walk from now on (NULL: none yet): same structure, other
 * weights (a QDQ model re-exported after a layer changed). */
void qt_walk_graph(struct qt_walk *wk, struct qt_graph *g);
/* The step after the one making value `name` (0: a graph input), -1 when
 * none does, -2 on error (err filled). */
int qt_walk_cut_after_value(struct qt_walk *wk, const char *name, int threads, struct qt_err *err);
/* The step after node `name`, -1 when it is not run per batch, -2 on error. */
int qt_walk_cut_after_node(struct qt_walk *wk, const char *name, int threads, struct qt_err *err);
/* Runs the steps from the current cut to `cut` for every batch of images,
 * calls visit (if set) after each batch with the values there live, and
 * keeps the values crossing `cut` (qt_walk_to) or not (qt_walk_peek: the
 * walk stays where it was). */
int qt_walk_to(struct qt_walk *wk, int cut, struct qt_dataset *ds, const struct qt_preproc *pp, int total, int batch,
               int c, int h, int w, int threads,
               int (*visit)(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err), void *ud,
               struct qt_err *err);
int qt_walk_peek(struct qt_walk *wk, int cut, struct qt_dataset *ds, const struct qt_preproc *pp, int total,
                 int batch, int c, int h, int w, int threads,
                 int (*visit)(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err), void *ud,
                 struct qt_err *err);
void qt_walk_clear(struct qt_walk *wk); /* forget the kept values (back to the images) */
void qt_walk_free(struct qt_walk *wk);

/* ---- simulation, sensitivity, accuracy-driven fallback (sensitivity.c, maxdrop.c) ---- */

/* A calibrated plan simulated on images held in memory (sensitivity.c
 * explains how); every quantized weight and activation is a unit that can
 * be on (fake-quantized) or off (float). */
struct qt_qsim;
/* images: nimg preprocessed images (the model's C x H x W floats each) and
 * labels (NULL or -1: unlabeled), kept by the caller while s lives. fref:
 * the float reference (the prepared graph before corrections and tuning;
 * NULL: p->g); its logits are computed once here. p must outlive s and not
 * change while s lives (its weights are read in place). */
int qt_qsim_new(struct qt_qsim **s, const struct qt_qplan *p, const struct qt_graph *fref, const float *images,
                const int *labels, int nimg, int threads, struct qt_err *err);
void qt_qsim_free(struct qt_qsim *s);
int qt_qsim_units(const struct qt_qsim *s);
/* Labeled images among s's. */
int qt_qsim_labeled(const struct qt_qsim *s);
/* Figures of the model quantized as cfg says (a plan of the same model
 * built with other per-layer settings, not calibrated: a tensor it
 * quantizes is simulated at its bits with s's parameters, or from the
 * observed range at other bits; one it leaves float stays float), or as
 * s's plan when cfg is NULL. */
int qt_qsim_eval(struct qt_qsim *s, const struct qt_qplan *cfg, struct qt_figures *f, struct qt_err *err);
/* The figures of plan p as written on es (a simulator built and freed);
 * *labeled (may be NULL): whether es has labeled images. */
struct qt_evalset;
int qt_qplan_figures(const struct qt_qplan *p, const struct qt_graph *fref, const struct qt_evalset *es,
                     int threads, struct qt_figures *f, int *labeled, struct qt_err *err);
/* One unit on (at the plan's bits) or off, and the figures of the units as
 * they are set (tests; qt_qsim_eval sets them all). */
void qt_qsim_set(struct qt_qsim *s, int unit, int on);
int qt_qsim_run(struct qt_qsim *s, struct qt_figures *f, struct qt_err *err);

/* qtool eval --report: the sensitivity of o->model's quantization on the
 * first min(images, 32) images of o->data, when MODEL.json beside it is its
 * quant_info.json for o->ref (the float model it was made from); otherwise
 * rep->sens stays NULL and rep->sens_note says why (not an error). */
int qt_eval_sensitivity(const struct qt_eval_opts *o, int images, struct qt_layer_report *rep, struct qt_err *err);
/* Runs the analysis on the first nimg (0: all) of s's images. Cost: per
 * unit, the network after it twice (only this unit quantized from the float
 * walk's saved tensors; all but it from the quantized walk's). Free with
 * qt_sens_report_free (also after an error). */
int qt_sensitivity(struct qt_qsim *s, int nimg, struct qt_sens_report *r, struct qt_err *err);

/* Images held in memory for the simulator: the first `max` (0: up to 512)
 * of ds, preprocessed. */
struct qt_evalset {
    float *img;
    int *lab;
    int n;
};
int qt_evalset_load(struct qt_evalset *e, struct qt_dataset *ds, const struct qt_preproc *pp, int c, int h, int w,
                    int max, int threads, struct qt_err *err);
void qt_evalset_release(struct qt_evalset *e);

/* The images --max-drop and --sensitivity measure on (f->eval_data, else
 * dflt: the command's held-back images, NULL when it has none; dflt_name
 * names them in messages): up to 512 for the search, f->sens_images for the
 * analysis alone. QT_EUSAGE when there are none. */
int qt_fallback_evalset(const struct qt_fallback_opts *f, struct qt_dataset *dflt, const char *dflt_name,
                        const char *classes, const struct qt_preproc *pp, int c, int h, int w, int threads,
                        struct qt_evalset *es, struct qt_err *err);
/* The accuracy-driven search (maxdrop.c). From the calibrated plan *p:
 * measure on es; when the drop exceeds max_drop, first each correction of
 * try_corr (the other bias corrections, the MSE observer, CLE toggled, in
 * that order) calibrated for real from the best configuration so far and
 * kept when it lowers the drop (fb->corr); while it still exceeds it, raise
 * the layers that
 * cost most, in the order of the sensitivity table (a layer's worst unit's
 * output SQNR with only it quantized): first to 8 bits when the plan has lower
 * widths, then to float; the fewest of them found by bisection on the
 * simulator, then built for real (rebuild: calibration and tuning again
 * with q->layers set) and measured again, adding layers while it misses.
 * *p is replaced by the plan to write; fb says what was done (fb->met 0:
 * the target was not met, *p is the best found). With sensitivity (or the
 * search), sens gets the analysis of the first plan (of the corrected one
 * when only the search asks for it). */
struct qt_maxdrop {
    const struct qt_quant_opts *q;
    const struct qt_graph *g;       /* the model (plans for other settings are built from it) */
    const struct qt_graph *ref;     /* the prepared float graph (the simulator's reference) */
    const struct qt_evalset *es;
    int metric;                     /* QT_METRIC_*, -1: top1 when es is labeled, else agreement */
    double max_drop;
    int search, sensitivity, sens_images, threads;
    int max_raise;                  /* candidates: the max_raise most sensitive layers (0: all) */
    int try_corr;                   /* QT_CORR_*: the corrections to measure before raising layers */
    struct qt_corr {                /* the corrections of a calibration */
        int bias;                   /* QT_BIAS_* */
        int observer, cle;          /* QT_OBS_*; cross-layer equalization 0/1 */
    } base;                         /* the first plan's */
    /* calibrates (and tunes) again with the settings q and the corrections c */
    int (*rebuild)(void *ud, const struct qt_quant_opts *q, const struct qt_corr *c, struct qt_qplan **out,
                   struct qt_err *err);
    void *rebuild_ud;
    void (*log)(void *ud, const char *line);
    void *log_ud;
};
/* --max-drop's outcome as the "fallback" object of d (quant_info.json's,
 * which calib's --json extends); returns it. */
struct cJSON;
struct cJSON *qt_fallback_json(struct cJSON *d, const struct qt_fallback *fb);
/* One set of figures as the object `key` of o (null for what is not finite). */
void qt_figures_json(struct cJSON *o, const char *key, const struct qt_figures *f);
/* m from the options (the caller sets rebuild and log). */
void qt_maxdrop_init(struct qt_maxdrop *m, const struct qt_fallback_opts *f, const struct qt_quant_opts *q,
                     const struct qt_graph *g, const struct qt_graph *ref, const struct qt_evalset *es, int threads);
/* After the model is written: QT_EDROP with the message when fb ran and missed its target, else 0. */
int qt_fallback_missed(const struct qt_fallback *fb, struct qt_err *err);
int qt_maxdrop_run(const struct qt_maxdrop *m, struct qt_qplan **p, struct qt_sens_report *sens, struct qt_fallback *fb,
                   struct qt_err *err);

#endif
