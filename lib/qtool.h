/*
 * qtool.h: the qtool engine, the one header cli/ includes.
 *
 * A worked example: load a float model, plan it for a batch of 8, run one
 * batch of preprocessed images through it.
 *
 *     struct qt_err err = {0};
 *     struct qt_graph *g = NULL;
 *     struct qt_exec *x = NULL;
 *     struct qt_dataset *ds = NULL;
 *     struct qt_preproc pp;
 *
 *     qt_preproc_default(&pp);                   // p/255, no resize, no crop
 *     if (qt_graph_load(&g, "model.onnx", &err)
 *         || qt_dataset_open(&ds, "images/", NULL, &err)
 *         || qt_exec_new(&x, g, 8, 2, &err))     // batch 8, 2 threads
 *         goto out;
 *     float *in = qt_exec_input(x, 0);           // [8, C, H, W] float32
 *     int labels[8];
 *     if (qt_dataset_load(ds, &pp, 0, 8, in, labels, &err) || qt_exec_run(x, &err))
 *         goto out;
 *     const float *logits = qt_exec_output(x, 0);
 * out:
 *     if (err.code) fprintf(stderr, "error: %s\n", err.msg);
 *     qt_exec_free(x); qt_dataset_free(ds); qt_graph_free(g);
 *
 * Rules that hold everywhere:
 * - Every function that can fail returns 0 or a QT_E* code and fills the
 *   struct qt_err it is given with a one-line lowercase message that names
 *   the file, node or tensor concerned. The library never prints and never
 *   exits.
 * - Every *_free(NULL) is a no-op. Whatever a function returns through a
 *   pointer argument belongs to the caller unless the comment says otherwise.
 */
#ifndef QTOOL_H
#define QTOOL_H

#include <stddef.h>
#include <stdint.h>

#define QT_VERSION "0.1.0"

/* ---- errors ---------------------------------------------------------- */

/* The codes double as the command-line exit status (man qtool(1)). */
enum qt_code {
    QT_OK = 0,
    QT_EFAIL = 1,        /* runtime failure: I/O, out of memory, internal */
    QT_EUSAGE = 2,       /* bad command-line arguments or options */
    QT_EUNSUPPORTED = 3, /* valid model that uses what qtool does not run */
    QT_EDATA = 4,        /* bad input data: images, folders, JSON files */
    QT_EMODEL = 5,       /* malformed model file: not ONNX, truncated, inconsistent */
};
#define QT_EIO QT_EFAIL
#define QT_ENOMEM QT_EFAIL

struct qt_err {
    int code;
    char msg[512];
};

/* Fills err (if err has no error yet) and returns code. */
int qt_errf(struct qt_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with "context: ". Returns err->code. */
int qt_err_prefix(struct qt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- tensors ---------------------------------------------------------- */

/* Element types use the ONNX TensorProto.DataType numbers. */
enum qt_dtype {
    QT_UNDEF = 0,
    QT_FLOAT = 1,
    QT_UINT8 = 2,
    QT_INT8 = 3,
    QT_UINT16 = 4,
    QT_INT16 = 5,
    QT_INT32 = 6,
    QT_INT64 = 7,
    QT_STRING = 8,
    QT_BOOL = 9,
    QT_FLOAT16 = 10,
    QT_DOUBLE = 11,
    QT_UINT32 = 12,
    QT_UINT64 = 13,
    QT_UINT4 = 21,       /* packed two a byte: written by export --pack only */
    QT_INT4 = 22,
};

#define QT_MAXDIM 8

struct qt_tensor {
    int dtype;
    int ndim;
    int64_t dims[QT_MAXDIM];
    void *data;    /* ndim 0 = scalar (one element) */
    size_t nbytes; /* numel * element size */
};

/* Bytes of one element, 0 for types qtool does not store. */
size_t qt_dtype_size(int dtype);
const char *qt_dtype_name(int dtype);
/* Number of elements; -1 if a dim is negative or the product overflows. */
int64_t qt_numel(int ndim, const int64_t *dims);
/* "[1,3,224,224]" into buf. */
const char *qt_dims_str(int ndim, const int64_t *dims, char *buf, size_t len);

/* ---- graphs ----------------------------------------------------------- */

struct qt_graph; /* a loaded model: values, nodes, the ONNX envelope */
struct qt_exec;  /* a graph planned for one batch size: shapes, buffers, threads */

/* Loads and checks an ONNX model. QT_EMODEL for a malformed file,
 * QT_EUNSUPPORTED for an unsupported opset or feature, QT_EIO when the file
 * cannot be read. Unsupported operators do not fail the load: see
 * qt_graph_unsupported(). */
int qt_graph_load(struct qt_graph **g, const char *path, struct qt_err *err);
int qt_graph_load_mem(struct qt_graph **g, const void *buf, size_t len, const char *name,
                      struct qt_err *err);
/* Writes the model atomically (temporary file in the same directory, fsync,
 * rename). What qtool did not change is written back as it was read. */
int qt_graph_save(const struct qt_graph *g, const char *path, struct qt_err *err);
/* Serialises into a malloc'd buffer. */
int qt_graph_pack(const struct qt_graph *g, void **buf, size_t *len, struct qt_err *err);
void qt_graph_free(struct qt_graph *g);

/* Number of nodes whose operator qtool cannot run; fills err with the first
 * ("unsupported operator 'X' (node 'n')") when there is one. */
int qt_graph_unsupported(const struct qt_graph *g, struct qt_err *err);
/* The one NaN/Inf check of the weights every command that computes with a
 * model runs (calib, finetune, qat, export, eval): the float initializers
 * that Conv, ConvTranspose, Gemm, MatMul, BatchNormalization and
 * InstanceNormalization nodes read (weights, biases, statistics). QT_EMODEL
 * "node 'n' (Conv): weight 'W' has NaN or infinite values" for the first. */
int qt_graph_check_weights(const struct qt_graph *g, struct qt_err *err);

/* A read-only summary for `qtool inspect`. */
struct qt_graph_info {
    int64_t ir_version;
    int opset;
    const char *producer;
    int ninputs, noutputs;
    int nnodes;
    int64_t nparams;      /* elements in float initializers */
    int64_t param_bytes;  /* bytes of all initializers */
};
void qt_graph_info(const struct qt_graph *g, struct qt_graph_info *info);
/* i-th graph input/output (initializers excluded): name, dtype, declared dims
 * (-1 = dynamic). */
const char *qt_graph_input(const struct qt_graph *g, int i, int *dtype, int *ndim, int64_t *dims);
/* The first input's declared batch (its first dimension), or 0 when that is
 * dynamic (or there is no input). */
int qt_graph_fixed_batch(const struct qt_graph *g);
const char *qt_graph_output(const struct qt_graph *g, int i, int *dtype, int *ndim, int64_t *dims);
int qt_graph_nnodes(const struct qt_graph *g);
const char *qt_graph_node(const struct qt_graph *g, int i, const char **op_type, int *supported);

/* ---- execution ------------------------------------------------------- */

/* Plans g for `batch` images with `nthreads` threads (0 = all cores): infers
 * shapes, folds constant subgraphs (shape glue), assigns activation buffers
 * by liveness. Fails with QT_EUNSUPPORTED on an operator qtool cannot run. */
int qt_exec_new(struct qt_exec **x, struct qt_graph *g, int batch, int nthreads, struct qt_err *err);
/* The same with flags: QT_EXEC_NOFUSE keeps every node's output as the graph
 * defines it (qt_exec_new lets a Conv apply the Relu/Clip that is its only
 * reader, so the Conv's own output holds the activated values). */
#define QT_EXEC_NOFUSE 1u
/* QT_EXEC_SUBBATCH: for callers that read only the graph outputs (eval),
 * qt_exec_run may run a batch one image at a time on a plan of batch 1,
 * whose activations stay in the caches, when the graph is per-image (every
 * activation's first dimension is the batch, no node works across it); the
 * outputs are the same bytes either way. Ignored with an after_node hook. */
#define QT_EXEC_SUBBATCH 2u
int qt_exec_new_flags(struct qt_exec **x, struct qt_graph *g, int batch, int nthreads, unsigned flags,
                      struct qt_err *err);
void qt_exec_free(struct qt_exec *x);
/* Runs one forward pass over the planned batch. */
int qt_exec_run(struct qt_exec *x, struct qt_err *err);
/* The buffers of the i-th graph input / output, valid until qt_exec_free. */
float *qt_exec_input(struct qt_exec *x, int i);
const float *qt_exec_output(const struct qt_exec *x, int i);
const struct qt_tensor *qt_exec_input_tensor(const struct qt_exec *x, int i);
const struct qt_tensor *qt_exec_output_tensor(const struct qt_exec *x, int i);
int qt_exec_batch(const struct qt_exec *x);
/* Peak bytes of planned activation memory (one arena). */
size_t qt_exec_peak_bytes(const struct qt_exec *x);

/* ---- images ----------------------------------------------------------- */

/* An 8-bit image, interleaved rows (HWC), c = 1 (grey) or 3 (RGB). */
struct qt_image {
    int w, h, c;
    unsigned char *px;
};

/* Loads a PNG (any colour type and depth: palette expanded, alpha dropped,
 * 16-bit reduced to 8) or JPEG, decided by content, not name. want_c: 1 grey,
 * 3 RGB, 0 as stored (grey stays 1 channel, anything else becomes 3).
 * QT_EDATA for a corrupt or unsupported file, QT_EIO when it cannot be read. */
int qt_image_load(struct qt_image *img, const char *path, int want_c, struct qt_err *err);
/* The same from memory; name is used in messages. */
int qt_image_load_mem(struct qt_image *img, const void *buf, size_t len, const char *name, int want_c,
                      struct qt_err *err);
void qt_image_release(struct qt_image *img);
/* Loads a segmentation mask: a palette or grey PNG of at most 8 bits whose
 * stored sample is the class index (255 = ignore, as VOC); img->c is 1.
 * QT_EDATA naming the file for any other PNG layout or a non-PNG file,
 * QT_EIO when it cannot be read. */
int qt_mask_load(struct qt_image *img, const char *path, struct qt_err *err);

/* Preprocessing, torchvision semantics: Resize(resize) (shorter side, PIL
 * bilinear with antialias) -> CenterCrop(crop_h, crop_w) -> ToTensor (p * scale)
 * -> Normalize(mean, std), channel order RGB or BGR, NCHW. */
struct qt_preproc {
    int channels;     /* 1 or 3 */
    int bgr;          /* 1: channel order B, G, R */
    int resize;       /* shorter side after resize; 0 = no resize */
    int resize_h, resize_w; /* Resize((h, w)) to exactly this size instead (non-square or
                             * fixed-size models, segmentation); 0 = not set */
    int crop_h, crop_w; /* center crop; 0 = none */
    float scale;      /* default 1/255 */
    float mean[3], std[3];
    /* training-time augmentation (qat): 0 = off */
    int rrc;          /* RandomResizedCrop to crop_h x crop_w, scale (0.08, 1) */
    float rrc_min_scale;
    int hflip;        /* RandomHorizontalFlip(0.5) */
};
void qt_preproc_default(struct qt_preproc *p);
/* Applies --preset NAME ("imagenet", "imagenet-tf", "mnist"). QT_EUSAGE if unknown. */
int qt_preproc_preset(struct qt_preproc *p, const char *name, struct qt_err *err);
/* Output size for an input of w x h. */
void qt_preproc_out_size(const struct qt_preproc *p, int w, int h, int *ow, int *oh);
/* Writes channels x oh x ow floats. rng_state drives augmentation (may be NULL
 * when augmentation is off). */
int qt_preprocess(const struct qt_image *img, const struct qt_preproc *p, float *out, int oh, int ow,
                  uint64_t *rng_state, struct qt_err *err);
/* The same geometry for a class-index mask (c 1) of the image it labels:
 * resize and center crop with nearest-neighbour sampling (pixels outside
 * the image after a padding crop become 255, ignored) to the model input
 * ih x iw, then nearest to the model output oh x ow; writes oh * ow bytes. */
int qt_preprocess_mask(const struct qt_image *mask, const struct qt_preproc *p, int ih, int iw, unsigned char *out,
                       int oh, int ow, struct qt_err *err);

/* ---- datasets --------------------------------------------------------- */

/* A folder of images in torchvision ImageFolder layout: class sub-folders
 * sorted by name give the label index (or, with classes_file, the line number
 * of the folder's name in that file); a folder of image files only is
 * unlabeled (labels -1). Paths are kept sorted; images are read on demand. */
struct qt_dataset;
int qt_dataset_open(struct qt_dataset **ds, const char *dir, const char *classes_file,
                    struct qt_err *err);
void qt_dataset_free(struct qt_dataset *ds);
int qt_dataset_count(const struct qt_dataset *ds);
int qt_dataset_nclasses(const struct qt_dataset *ds); /* 0 when unlabeled */
int qt_dataset_labeled(const struct qt_dataset *ds);
const char *qt_dataset_path(const struct qt_dataset *ds, int i);
int qt_dataset_label(const struct qt_dataset *ds, int i);
/* Moves every `every`-th image (indices every-1, 2*every-1, ... in sorted
 * order, so every class keeps its share) out of ds into a new dataset *held
 * with the same classes; ds keeps the others in order. */
int qt_dataset_hold_back(struct qt_dataset *ds, int every, struct qt_dataset **held, struct qt_err *err);
/* Loads images [start, start+n) preprocessed into out (n x C x H x W) and
 * their labels. Checks that every image preprocesses to exactly C x H x W
 * (QT_EDATA naming the file otherwise). nthreads decodes in parallel. */
int qt_dataset_load(struct qt_dataset *ds, const struct qt_preproc *p, int start, int n, int c, int h,
                    int w, float *out, int *labels, int nthreads, uint64_t seed, struct qt_err *err);

/* The same for the images idx[0..n) (training batches in shuffled order).
 * The augmentation of image i is drawn from (seed, idx[i]). */
int qt_dataset_load_idx(struct qt_dataset *ds, const struct qt_preproc *p, const int *idx, int n, int c, int h,
                        int w, float *out, int *labels, int nthreads, uint64_t seed, struct qt_err *err);

/* ---- evaluation (qtool eval) ------------------------------------------ */

struct qt_eval_opts {
    const char *model;          /* ONNX file (float or quantized) */
    const char *data;           /* image folder */
    const char *ref;            /* optional reference model (usually the float one) */
    const char *classes;        /* optional class list (folder name -> label) */
    struct qt_preproc pp;
    int channels_set;           /* pp.channels chosen by the user; else from the model */
    int batch;                  /* images per run (default 32) */
    int limit;                  /* at most this many images (0 = all) */
    int threads;                /* 0 = all cores */
    int latency_runs;           /* timed runs after warm-up (0 = skip latency) */
    int latency_batch;          /* images per timed run (default 1) */
    int simulate;               /* 1: run a QDQ model as written (float simulation); 0: QDQ
                                 * patterns on integer kernels (the reference always as written) */
    const char *predictions;    /* CSV: path,label,top5 indices and scores */
    const char *save_outputs;   /* raw float32 outputs in image order */
    const char *save_inputs;    /* raw float32 preprocessed inputs in image order */
    const char *masks;          /* dense outputs: folder of PNG class-index masks, the images'
                                 * paths under data with the extension .png (255 = ignore) */
    /* progress callback (may be NULL): images done so far of total */
    void (*progress)(void *ud, int done, int total);
    void *progress_ud;
};

struct qt_eval_result {
    int images;
    int labeled;                /* images with a label the model can predict */
    int nclasses;               /* model output width */
    double top1, top5;          /* percent of labeled images */
    double loss;                /* mean softmax cross-entropy (labeled) */
    int have_ref;
    double agree;               /* percent of images whose top-1 matches the reference's */
    double sqnr_db;             /* 10 log10(sum ref^2 / sum (out - ref)^2) over all outputs */
    double ref_top1;            /* the reference's own top-1 */
    long long model_bytes;
    double lat_median_ms, lat_p90_ms; /* one run at batch lat_batch */
    int lat_batch;
    double throughput;          /* images/s of model compute at the chosen batch */
    double wall_s;
    size_t peak_act_bytes;      /* planned activation memory at the chosen batch */
    int batch, threads;
    int int8_nodes;             /* QDQ patterns run on integer kernels */
    const char *int8_isa;       /* their instruction set: "avx512-vnni", "avx2" or "ref" */
    /* Dense prediction: output 0 is [N, C, H, W] with H * W > 1 (segmentation).
     * The class of a pixel is the argmax over C (the first on ties); top-1,
     * top-5, loss and labels are not computed, agree is pixel_agree. */
    int dense;
    int dense_h, dense_w;       /* output 0's spatial size; nclasses is C */
    double pixel_agree;         /* with ref: percent of pixels whose class matches the reference's */
    double miou_ref;            /* with ref: mean IoU against the reference's classes, over the
                                 * classes either model predicts somewhere */
    int have_masks;
    long long mask_pixels;      /* pixels of the masks that are not 255 */
    double pixel_acc, miou;     /* against the masks (mean IoU over the classes in the masks or predicted) */
    double ref_pixel_acc, ref_miou; /* the reference's, against the masks */
    /* with ref: every output of the model, its name and SQNR against the
     * reference's output of the same index (qt_eval_result_release frees) */
    int noutputs;
    struct qt_eval_output { char *name; double sqnr_db; } *outputs;
};

void qt_eval_opts_init(struct qt_eval_opts *o);
int qt_eval_run(const struct qt_eval_opts *o, struct qt_eval_result *r, struct qt_err *err);
/* Frees what qt_eval_run allocated in r (outputs); r itself is the caller's. */
void qt_eval_result_release(struct qt_eval_result *r);

/* Per-layer figures of a QDQ model against its float model (qtool eval
 * --report): for every quantized activation T (QuantizeLinear on a tensor a
 * node produces, or on the graph input), the SQNR of the model's
 * DequantizeLinear output against the reference's T of the same name, a
 * histogram of T's float values (the reference's; the quantized model's when
 * the reference has no T) over three times the clipping range, and that
 * range; and for every depthwise Conv the per-channel range of its weights
 * with the quantization grid's limits. */
#define QT_LAYER_BINS 96
struct qt_layer_stats {
    char name[128];             /* the quantized tensor */
    char node[128], op[32];     /* its producer in the quantized model ("" for a graph input) */
    double sqnr_db;             /* NAN: the reference has no tensor of that name; INFINITY: no error */
    float clip_min, clip_max;   /* scale * (qmin - zero point), scale * (qmax - zero point) */
    float min, max;             /* observed */
    float hlo, hhi;             /* histogram range: the clipping range widened by its width each side */
    int64_t hist[QT_LAYER_BINS], under, over, count;
};
struct qt_dw_stats {
    char node[128];
    int channels;
    float *wmin, *wmax;         /* per channel, of the (dequantized) weights */
    float *gmin, *gmax;         /* per channel, the grid's limits (equal to wmin/wmax for float weights) */
};
struct qt_layer_report {
    struct qt_layer_stats *layer;
    int nlayers;
    struct qt_dw_stats *dw;
    int ndw;
    int images;
    struct qt_sens_report *sens; /* the sensitivity analysis when MODEL.json (the quantized model's
                                  * quant_info.json) describes it for o->ref, else NULL and sens_note
                                  * says why */
    char sens_note[256];
};
/* Runs o->model (as written, in float) and o->ref on the first `images`
 * images of o->data (o->pp, o->classes, o->limit as qt_eval_run). Fills rep
 * (free with qt_layer_report_free, also after an error). */
int qt_eval_layers(const struct qt_eval_opts *o, int images, struct qt_layer_report *rep, struct qt_err *err);
void qt_layer_report_free(struct qt_layer_report *rep);

/* The image size and channel count a model expects (input 0 is [N,C,H,W]),
 * using pp's crop when H/W are dynamic. */
int qt_model_image_shape(const struct qt_graph *g, const struct qt_preproc *pp, int *c, int *h, int *w,
                         int *fixed_batch, struct qt_err *err);

/* ---- quantization (qtool calib) ---------------------------------------- */

/* Settings shared by calib, finetune, qat and export. */
/* One node's own settings, applied after --config: the accuracy-driven
 * search (--max-drop) and mixed precision (--weight-budget) set them. */
struct qt_layer_set {
    const char *node;           /* node name in the model */
    int wbits, abits;           /* 2..8, or 0: as the plan says */
    int keep_float;             /* 1: not quantized at all */
};
/* One node's weight width per output channel (--mixed per-channel): the
 * tensor's container is that of the widest, each channel's scale spreads
 * its range over its own levels. */
struct qt_layer_cbits {
    const char *node;
    const unsigned char *bits;  /* n widths 2..8 (owned by the caller) */
    int n;                      /* must equal the weight's output channels */
};

struct qt_quant_opts {
    int wbits, abits;           /* 2..8 (default 8) */
    int per_channel;            /* weights per output channel (default 1) */
    int narrow;                 /* weights in [-(2^(b-1)-1), 2^(b-1)-1] */
    int act_signed;             /* 0: uint8 asymmetric activations (default); 1: int8 symmetric */
    int reduce_range;           /* one bit less for weights (old x86 VNNI-less kernels) */
    int observer;               /* QT_OBS_* (lib/quant/quant.h); default percentile */
    int weight_mse;             /* weight steps: 1 clipped for the least squared error, 0 max |w|, -1 (default)
                                 * auto: calib and finetune below 8 bits measure both on the calibration
                                 * images and keep the higher output SQNR; elsewhere max |w| */
    double percentile;          /* for the percentile observer; 0 (default): 99.999 at 8 bits without CLE
                                 * (calib and finetune with 8-bit weights measure 99.99 too and keep the
                                 * higher output SQNR: percentile8), else 99.99 */
    double percentile8;         /* that choice at 8 bits (0: not made) */
    const char *exclude;        /* comma-separated node names kept in float */
    const char *exclude_ops;    /* comma-separated op types kept in float */
    const char *config;         /* per-layer JSON file */
    int keep_first_last;        /* 0: no; 8: first conv and last FC at 8 bits; -1: in float */
    int fold_bn, fuse_act;      /* graph preparation (default 1, 1) */
    char profile[64];           /* hardware profile applied (default "ort-x86") */
    int pow2_scales;            /* scales rounded up to powers of two (profile pow2) */
    int int_requant;            /* requantization recorded in quant_info.json: 0 none (float), 1 shift
                                 * (pow2), 2 multiplier and shift per channel (int-only) */
    int cle;                    /* cross-layer equalization before calibration (calib, finetune, qat):
                                 * 1 on, 0 off, -1 (default) on with per-tensor weights only */
    const struct qt_layer_set *layers; /* per-node settings (owned by the caller; outlive the plan) */
    int nlayers;
    const struct qt_layer_cbits *cbits; /* per-channel weight widths, applied after layers (caller's) */
    int ncbits;
    /* mixed precision within a memory budget (lib/quant/mixed.c): calib, finetune and qat choose
     * per-layer (or per-channel) widths among 8/6/5/4/3/2 before quantizing */
    struct qt_budget {
        int kind;               /* QT_BUDGET_NONE, _BYTES (value: bytes) or _BITS (value: average bits) */
        double value;
    } weight_budget, act_budget;
    int mixed;                  /* QT_MIXED_LAYER (default) or QT_MIXED_CHANNEL */
    int mixed_images;           /* calibration images the sensitivity is measured on (default 16) */
    int pack;                   /* QDQ file: weights of 4 bits or fewer as ONNX INT4 (opset 21) */
};
enum { QT_BUDGET_NONE, QT_BUDGET_BYTES, QT_BUDGET_BITS };
enum { QT_MIXED_LAYER, QT_MIXED_CHANNEL };
/* Parses a budget: bytes ("123456", "64KiB", "1.2MiB") or an average bit
 * width ("4bits", "4.5bits", 2..8). QT_EUSAGE naming `what` (the option) for
 * anything else: negative, zero, no number, an unknown suffix. */
int qt_budget_parse(const char *s, const char *what, struct qt_budget *b, struct qt_err *err);

/* What mixed precision chose (calib/finetune/qat results; inspect). Bytes
 * of ROM: every quantized weight at its width, packed, int32 biases, weights
 * of float layers at 4 bytes (scales and zero points not counted). RAM: the
 * largest set of activations alive at once at batch 1, each at its width
 * (float ones at 4 bytes). */
struct qt_mem_figures {
    int64_t rom, ram;           /* at the plan's widths */
    int64_t rom8, ram8;         /* the same with every quantized tensor at 8 bits */
    int64_t rom_budget, ram_budget; /* the budgets in bytes (0: none) */
    double wbits_avg, abits_avg; /* over quantized weight elements / activation tensors' elements */
    int nweights;               /* quantized weight tensors */
    int hist[9];                /* quantized weight tensors (per-channel mode: channels) per width 0..8 */
};
void qt_quant_opts_init(struct qt_quant_opts *q);
/* Applies a hardware profile (man qtool-profiles(5)): a built-in name
 * ("ort-x86", "ort-arm", "tensorrt", "pow2", "int-only") or a JSON file.
 * QT_EUSAGE for an unknown name, QT_EDATA for a bad file. */
int qt_profile_apply(struct qt_quant_opts *q, const char *name_or_file, struct qt_err *err);
/* The i-th built-in profile's name, NULL past the end. */
const char *qt_profile_builtin(int i);
/* The figures of the plan quant_info.json records for model (qtool inspect
 * --quant-info). QT_EDATA as qt_export_run for a bad or mismatched file. */
int qt_quant_info_memory(const char *model, const char *quant_info, struct qt_mem_figures *m, struct qt_err *err);

/* ---- export (qtool export) --------------------------------------------- */

enum { QT_EXPORT_QDQ, QT_EXPORT_QOPERATOR, QT_EXPORT_FLOAT };

struct qt_export_opts {
    const char *model;          /* the float model calib/finetune/qat started from */
    const char *quant_info;     /* their quant_info.json */
    const char *out;
    int format;                 /* QT_EXPORT_* */
    int contrib;                /* qoperator: com.microsoft QLinearAdd, QLinearGlobalAveragePool, ... */
    const char *profile;        /* NULL: as recorded; else must match the recorded one */
    int pack;                   /* qdq: weights of 4 bits or fewer as ONNX INT4 (opset 21) */
};
struct qt_export_result {
    int ntensors;               /* quantized tensors restored */
    int tuned;                  /* weight tensors restored from the tuned-weights file */
    int qnodes;                 /* qoperator: nodes written as integer operators */
    struct qt_mem_figures mem;  /* ROM and RAM at the recorded widths */
};
/* Rebuilds a model from the float model and quant_info.json without
 * calibrating. QT_EDATA when the JSON is missing, malformed or written for
 * another model (sha256 mismatch); nothing is written then. */
int qt_export_run(const struct qt_export_opts *o, struct qt_export_result *r, struct qt_err *err);

/* AdaQuant (qtool finetune) settings and per-layer report */
enum { QT_FT_ADAQUANT, QT_FT_ADAROUND };
struct qt_ft_opts {
    int method;                 /* QT_FT_ADAQUANT (default) or QT_FT_ADAROUND (learnt rounding only) */
    int iters;                  /* Adam steps per layer (default 300) */
    double lr;                  /* AdaQuant: relative to each channel's weight step (default 3e-3);
                                 * AdaRound: of the rounding variables (qtool's default 5e-2) */
    int batch;                  /* images per step (default 8) */
    int parallel;               /* 1: float inputs; 0: inputs from the tuned quantized prefix */
    int fixed_act_steps;        /* 1: keep the calibrated input steps */
    int64_t max_memory;         /* bytes for one layer's inputs and targets (default 384 MiB); a
                                 * walk keeps a quarter of it in memory */
    uint64_t seed;
    const volatile int *stop;   /* set asynchronously (SIGINT/SIGTERM): fail with "interrupted" */
    void (*log)(void *ud, const char *line);
    void *log_ud;
    void (*progress)(void *ud, int done, int total); /* layers tuned so far (may be NULL) */
    void *progress_ud;
};
struct qt_ft_layer {
    char name[128];
    double before, after;       /* mean squared error over the tuning images */
    int images;
    float as_before, as_after;  /* input step (equal when it is not learned) */
    int learn_as;
};
struct qt_ft_report {
    struct qt_ft_layer *layer;  /* malloc'd; free() */
    int nlayers;
};

/* What a model scores on the simulator's images against the float model. */
struct qt_figures {
    int images, labeled;
    double float_top1;          /* the float model's top-1 on the labeled images (NAN: none) */
    double top1, top1_drop;     /* percent; drop in points (NAN without labels) */
    double agree;               /* percent of images whose top-1 class is the float model's */
    double sqnr_db;             /* output SQNR against the float model's outputs */
    int lost, gained;           /* labeled images the float model gets right and this wrong, and the
                                 * reverse (the simulator's figures only) */
};
enum { QT_METRIC_TOP1, QT_METRIC_AGREE, QT_METRIC_SQNR };

/* Sensitivity of every quantized weight and output activation ("unit"). */
struct qt_sens_unit {
    char node[128];             /* the layer: the weight's node, the activation's producer (the compute
                                 * node of a fused Relu/Clip), "" for a graph input */
    char op[32];
    char tensor[128];           /* the quantized tensor */
    int weight;                 /* 1 weights, 0 output activation */
    int bits;
    struct qt_figures only_quant; /* only this unit quantized, the rest float */
    struct qt_figures only_float; /* everything quantized but this unit */
    double sqnr_db, cosine;     /* the unit's own error with only it quantized: the activation itself,
                                 * or the node's output for weights, against float */
};
struct qt_sens_report {
    struct qt_sens_unit *unit;  /* execution order */
    int nunits, images, labeled;
    struct qt_figures all;      /* every unit quantized */
    double wall_s;
};
/* The drop the metric measures, in percent: top-1 points lost, 100 -
 * agreement, or the output error energy in percent of the output energy
 * (100 * 10^(-SQNR/10): 1% is 20 dB). */
double qt_figures_drop(const struct qt_figures *f, int metric);
const char *qt_metric_name(int metric);
/* The standard error of that drop over the images (NAN for sqnr): top1,
 * of the mean of the paired per-image differences (+1 lost, -1 gained);
 * agreement, of the binomial proportion of disagreements. */
double qt_figures_drop_se(const struct qt_figures *f, int metric);

/* Unit indices worst first (lowest output SQNR with only the unit quantized). */
void qt_sens_order(const struct qt_sens_report *r, int *order);
void qt_sens_report_free(struct qt_sens_report *r);

/* The accuracy-driven search (--max-drop; lib/quant/maxdrop.c). */
struct qt_fallback_layer {
    char node[128];
    int wbits, abits;           /* raised to (0: as planned) */
    int keep_float;             /* raised to float */
};
/* A correction the search measured before raising layers: the option (as
 * on the command line, e.g. "bn-reestimate", "observer=mse", "cle") and its
 * figures on the search's images, built with the corrections kept so far. */
struct qt_fallback_corr {
    char option[32];
    struct qt_figures f;
    int kept;                   /* in the model written */
};
/* calib's corrections (qt_calib_opts.bias_correction and bn_reestimate as one value) */
enum { QT_BIAS_NONE, QT_BIAS_CORRECT, QT_BIAS_BNRE };
/* What --max-drop may change before raising layers (qt_calib_opts.try_corr):
 * the corrections the user did not set */
enum { QT_CORR_BIAS = 1, QT_CORR_OBSERVER = 2, QT_CORR_CLE = 4 };
struct qt_fallback {
    int ran;                    /* the search ran (max_drop given) */
    int met;                    /* the model written meets the target on the search's images */
    int metric;                 /* QT_METRIC_* */
    double max_drop;
    int eval_images;            /* the search's images (never calibration or tuning ones) */
    int candidates;             /* layers the search could raise */
    int evals;                  /* simulated evaluations */
    int rebuilds;               /* calibrations (and tuning) redone with raised layers */
    struct qt_figures before, after; /* on the search's images: as first quantized, as written */
    struct qt_fallback_layer *layer; /* raised layers, most sensitive first (malloc'd; free()) */
    int nlayers;
    char unsaved[4][128];       /* not met: the most sensitive layers left quantized (up to 4) */
    int nunsaved;
    struct qt_fallback_corr corr[8]; /* the corrections tried, in order */
    int ncorr;
    int bias, observer, cle;    /* the model written's: QT_BIAS_*, QT_OBS_*, cross-layer equalization 0/1 */
    double wall_s;              /* the search's time (sensitivity, evaluations, rebuilds) */
};

/* Accuracy-driven fallback and sensitivity settings (calib, finetune, qat;
 * lib/quant/maxdrop.c). */
struct qt_fallback_opts {
    double max_drop;            /* --max-drop PCT: < 0 (default) off */
    const char *eval_data;      /* the search's images; NULL: the command's held-back images */
    int metric;                 /* QT_METRIC_*; -1 (default): top1 when the images are labeled, else agreement */
    int sensitivity;            /* fill the result's sens (on the search's images) */
    int sens_images;            /* images for the sensitivity analysis (default 32) */
    int max_raise;              /* raise at most this many layers (0: any; the most sensitive first) */
};
void qt_fallback_opts_init(struct qt_fallback_opts *f);

struct qt_calib_opts {
    const char *model, *data, *out, *quant_info;
    const char *classes;
    struct qt_preproc pp;
    int channels_set;
    struct qt_quant_opts q;
    int batch, limit, threads;
    int dry_run;
    int bias_correction;        /* empirical bias correction after the ranges */
    int bn_reestimate;          /* ... matching the per-channel variance too */
    int finetune;               /* AdaQuant after calibration (qtool finetune) */
    struct qt_ft_opts ft;
    struct qt_fallback_opts fb; /* --max-drop, --sensitivity; default images: every 4th of data held back */
    int try_corr;               /* QT_CORR_* bits: the corrections the search measures before raising
                                 * layers, each a calibration (0, the default: none; qtool calib
                                 * --try-corrections: the ones not given on the command line) */
    /* lines of the preparation report (--dry-run and the summary) */
    void (*log)(void *ud, const char *line);
    void *log_ud;
    void (*progress)(void *ud, int done, int total);
    void *progress_ud;
};

struct qt_calib_result {
    int images;
    int nquant_act, nquant_weight, nfolded_bn, nfused_act, nexcluded;
    int bc_layers;              /* layers bias-corrected */
    int cle_pairs, cle_absorbed; /* cross-layer equalization: layer pairs, channels with high bias absorbed */
    struct qt_ft_report ft;     /* finetune: per layer (free(ft.layer)) */
    struct qt_sens_report sens; /* with o->sensitivity (free with qt_calib_result_free) */
    struct qt_fallback fb;      /* with o->max_drop >= 0 */
    double wall_s;
    struct qt_mem_figures mem;  /* ROM and RAM at the widths written */
    double mixed_s;             /* seconds spent measuring sensitivity and choosing widths (0: no budget) */
    int weight_mse;             /* the weight steps written: 1 clipped, 0 max |w| */
    int wchoice_images;         /* --weight-observer auto measured both on this many images (0: it did not) */
    double wchoice_sqnr_db[2];  /* ... their output SQNR: max |w| [0], clipped [1] */
};
/* Frees what a result holds (ft.layer, sens, fb.layer); safe on a zeroed result. */
void qt_calib_result_free(struct qt_calib_result *r);
/* Exit status of a --max-drop run whose target even the candidates in
 * float could not meet: the best model found is written (man qtool(1)). */
#define QT_EDROP 6

void qt_calib_opts_init(struct qt_calib_opts *o);
int qt_calib_run(const struct qt_calib_opts *o, struct qt_calib_result *r, struct qt_err *err);

/* ---- quantization-aware training (qtool qat) --------------------------- */

enum { QT_QAT_SGD, QT_QAT_ADAM };
enum { QT_ACT_LSQ, QT_ACT_PACT, QT_ACT_FIXED };
#define QT_QAT_AUTO_BN (-2) /* freeze_bn_after: unfolded below 8 bits when the model has BatchNormalization */

struct qt_qat_opts {
    const char *model;          /* float ONNX model */
    const char *train, *val;    /* image folders (val optional) */
    const char *out, *quant_info;
    const char *classes;
    struct qt_preproc pp;       /* evaluation preprocessing; training adds augmentation */
    int channels_set;
    struct qt_quant_opts q;     /* as calib */
    int epochs;                 /* default 1 */
    int iters_per_epoch;        /* 0 = one pass over the training images */
    int batch;                  /* default 32 */
    double lr;                  /* default 0.003 (with relative_lr: a fraction of each step) */
    int optimizer;              /* QT_QAT_ADAM (default) or QT_QAT_SGD; learnt scales always take
                                   Adam's step in log space (qt_optim_step) */
    double wd, momentum;        /* default 1e-4, 0.9 */
    int schedule;               /* QT_SCHED_* of lib/train/train.h: 0 const, 1 step, 2 cosine (default) */
    int step_epochs;            /* step schedule: epochs between decays (default 1) */
    double gamma;               /* step schedule factor (default 0.1) */
    double clip_grad;           /* global gradient-norm limit, 0 = none */
    int freeze_bn_after;        /* epoch after which BatchNormalization uses running statistics; -1 never;
                                   QT_QAT_AUTO_BN (default): epochs - 1 when quantizing below 8 bits a model
                                   whose BatchNormalization calib folds (per-channel weights, 2+ epochs,
                                   no init_info), else -1 (quantized: folded from the start) */
    int freeze_observers_after; /* epoch after which scales and zero points stay fixed; -1 never */
    int distill;                /* targets: the float model's outputs (KL at temperature); -1 (default):
                                   when quantizing, labels with no_quant */
    double temperature;         /* 0 (default): 1 + log10(classes), rounded to an integer: 2 for 10 classes,
                                   4 for 1000 (measured: Fashion-MNIST and ImageNet, man qtool-qat) */
    int no_quant;               /* float training (no fake quantization); output a float model */
    int from_scratch;           /* re-initialise the weights (seeded) before training */
    int augment;                /* random resized crop + flip (default 0) */
    double rrc_min_scale;       /* smallest crop area fraction (default 0.08, as torchvision) */
    int calib_images;           /* images to initialise activation ranges (default 256) */
    const char *init_info;      /* start from this quant_info.json (calib/finetune/qat) instead */
    int weight_minmax;          /* weight scales from min/max every step (default: learnt, LSQ) */
    int act_range;              /* activation ranges: QT_ACT_LSQ (default, learnt steps), QT_ACT_PACT (learnt
                                 * clipping level of the ranges that start at 0, LSQ elsewhere), QT_ACT_FIXED
                                 * (the calibrated ranges, not trained) */
    int relative_lr;            /* lr as a fraction of each weight's step; -1 (default): unless no_quant */
    int hold_back;              /* without val: every hold_back-th training image is held back to validate
                                   the start and each epoch (default 10; 0 none) */
    uint64_t seed;
    int threads;
    struct qt_fallback_opts fb; /* --max-drop, --sensitivity after training, measured on eval_data, else
                                   on val, else on the held-back images (never trained on) */
    int retune_steps;           /* --max-drop: QAT steps on each plan the search builds, kept unless they
                                   raise the drop; -1 (default): one epoch's (iters_per_epoch or one pass) */
    const char *checkpoint;     /* directory: checkpoint.bin after every epoch and on interrupt */
    int resume;                 /* continue from the checkpoint in that directory */
    const volatile int *stop;   /* set asynchronously (SIGINT): checkpoint and return */
    void (*log)(void *ud, const char *line);
    void *log_ud;
    /* training steps done of all (epochs x steps per epoch) this run (may be NULL) */
    void (*progress)(void *ud, int done, int total);
    void *progress_ud;
};

struct qt_qat_epoch {
    int epoch;                  /* 1-based */
    double loss, train_top1, val_top1, lr, wall_s;
    double step_ms;             /* median time of one training step (forward, loss, backward, update;
                                   not image loading), the run's first step excluded */
    int val_images;
    double scale_lo, scale_hi;  /* learnt scales / their values at the start: smallest and largest ratio */
};

struct qt_qat_result {
    struct qt_mem_figures mem;  /* ROM and RAM at the widths written (quantized training) */
    int epochs_done;
    int interrupted;            /* stopped by o->stop: checkpoint written, no model */
    int nparams;                /* trained tensors */
    int calib_images;
    int bn_unfolded;            /* BatchNormalization trained with batch statistics (freeze_bn_after > 0) */
    int freeze_bn_after, distill, relative_lr; /* the choices made (automatic ones resolved) */
    double temperature;         /* the distillation temperature used (0: no distillation) */
    int held_back;              /* training images held back for validation (no val) */
    int val_images;
    double start_val_top1;      /* the starting point on the validation images (-1: none) */
    int best_epoch;             /* the epoch written: 0 the start, -1 no validation (the last) */
    double best_val_top1;
    int ended_below_start;      /* the last epoch validated below the start */
    double wall_s;
    struct qt_qat_epoch *epoch; /* per epoch run (malloc'd, epochs_done entries) */
    int nepoch;
    struct qt_sens_report sens; /* with o->fb.sensitivity: of the trained plan */
    struct qt_fallback fb;      /* with o->fb.max_drop >= 0 */
    int retune_steps;           /* the steps each rebuilt plan was retuned for (0: none) */
    int retune_tries, retuned;  /* rebuilt plans retuned; of them kept (the drop did not rise) */
};

void qt_qat_opts_init(struct qt_qat_opts *o);
/* qt_qat_run refuses a batch above this (QT_EUSAGE). */
#define QT_QAT_MAX_BATCH 4096
/* Trains and writes o->out (the QDQ model and o->quant_info, or with
 * no_quant the float model). Per-epoch figures go through o->log and r. */
int qt_qat_run(const struct qt_qat_opts *o, struct qt_qat_result *r, struct qt_err *err);
/* Frees what a result holds (epoch, sens, fb.layer); safe on a zeroed result. */
void qt_qat_result_free(struct qt_qat_result *r);

/* ---- utilities -------------------------------------------------------- */

/* Number of online CPUs (at least 1). */
int qt_ncpus(void);
/* Writes len bytes to path atomically: a nameless O_TMPFILE in the same
 * directory (or path.XXXXXX where the file system lacks it), fsync, a
 * temporary name, rename, fsync of the directory. Never leaves a partial
 * file at path; a process killed while writing leaves no file at all. */
int qt_write_file_atomic(const char *path, const void *buf, size_t len, struct qt_err *err);
/* The same in two steps, to replace several files together: begin writes and
 * fsyncs the data (path untouched), commit renames it into place, abort
 * (also after a failed begin/commit, and on a zeroed struct) drops it. */
struct qt_wfile {
    int fd, named;
    char *path, *tmp, *dir;
};
int qt_wfile_begin(struct qt_wfile *f, const char *path, const void *buf, size_t len, struct qt_err *err);
int qt_wfile_commit(struct qt_wfile *f, struct qt_err *err);
/* Commits n files, renamed one right after the other (all aborted on failure). */
int qt_wfile_commit_all(struct qt_wfile *f, int n, struct qt_err *err);
void qt_wfile_abort(struct qt_wfile *f);
/* Reads a whole file (malloc'd, NUL-terminated for convenience). max_bytes
 * bounds the size (QT_EDATA beyond it). */
int qt_read_file(const char *path, size_t max_bytes, void **buf, size_t *len, struct qt_err *err);
/* The same for a file that must be a regular file (images in a folder): a
 * FIFO, socket or device is QT_EDATA naming it, without blocking on it. */
int qt_read_regular_file(const char *path, size_t max_bytes, void **buf, size_t *len, struct qt_err *err);
/* Checks, before anything is written, that path can take an output file:
 * missing or a regular file (qtool never replaces a device, FIFO, socket,
 * symbolic link or directory: QT_EIO naming it), in a folder where a new
 * file can be created (probed with a nameless file). qt_wfile_begin and
 * qt_wfile_commit_all check the type again. Returns 0 or QT_EIO. */
int qt_out_check(const char *path, struct qt_err *err);
/* Bytes one model may plan for activations (each tensor and all of them
 * together): the machine's RAM, or QT_MEM_LIMIT_MB from the environment.
 * A model that needs more fails with a clear error instead of an OOM kill. */
size_t qt_mem_limit(void);
/* Monotonic seconds. */
double qt_now(void);
/* PATH with its extension EXT (".onnx") replaced by NEW (".json"), or NEW
 * appended when PATH does not end in EXT; into buf (truncated to len). */
const char *qt_path_with_ext(const char *path, const char *ext, const char *new_ext, char *buf, size_t len);

#endif
