/* eval.c: qtool eval: stream a folder of images through a model (and a
 * reference model), in batches, and compute accuracy, loss, agreement and
 * SQNR; then time one run at batch 1 (or --latency-batch). Memory is one
 * batch of images plus the planned activations, whatever the number of
 * images. */
#include "engine.h"
#include "int8/int8.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void qt_eval_opts_init(struct qt_eval_opts *o) {
    memset(o, 0, sizeof *o);
    qt_preproc_default(&o->pp);
    o->batch = 32;
    o->latency_runs = 20;
    o->latency_batch = 1;
}

int qt_model_image_shape(const struct qt_graph *g, const struct qt_preproc *pp, int *c, int *h, int *w,
                         int *fixed_batch, struct qt_err *err) {
    int dt, nd;
    int64_t d[QT_MAXDIM];
    if (g->ninputs != 1)
        return qt_errf(err, QT_EUNSUPPORTED, "the model has %d inputs; qtool feeds images to models with one input",
                       g->ninputs);
    const char *name = qt_graph_input(g, 0, &dt, &nd, d);
    if (nd != 4)
        return qt_errf(err, QT_EUNSUPPORTED, "input '%s' has %d dims; an image model takes [N,C,H,W]", name, nd);
    if (dt != QT_FLOAT && dt != 0)
        return qt_errf(err, QT_EUNSUPPORTED, "input '%s' is %s; qtool feeds float32 images", name, qt_dtype_name(dt));
    if (d[1] != 1 && d[1] != 3)
        return qt_errf(err, QT_EUNSUPPORTED, "input '%s' has %lld channels; qtool feeds 1 or 3", name,
                       (long long)d[1]);
    *c = (int)d[1];
    *h = d[2] > 0 ? (int)d[2] : pp->crop_h;
    *w = d[3] > 0 ? (int)d[3] : pp->crop_w;
    if (*h <= 0 || *w <= 0)
        return qt_errf(err, QT_EUSAGE, "input '%s' has a dynamic image size; give it with --crop HxW", name);
    *fixed_batch = qt_graph_fixed_batch(g);
    return 0;
}

static void topk(const float *v, int n, int k, int *idx) {
    for (int i = 0; i < k; i++)
        idx[i] = -1;
    for (int j = 0; j < n; j++) {
        float x = v[j];
        for (int i = 0; i < k; i++) {
            if (idx[i] < 0 || qt_rank_before(x, v[idx[i]])) {
                for (int m = k - 1; m > i; m--)
                    idx[m] = idx[m - 1];
                idx[i] = j;
                break;
            }
        }
    }
}

static double xent(const float *v, int n, int label) {
    double mx = v[0], s = 0;
    for (int j = 1; j < n; j++)
        if (v[j] > mx)
            mx = v[j];
    for (int j = 0; j < n; j++)
        s += exp((double)v[j] - mx);
    return log(s) + mx - v[label];
}

struct side { /* one model being evaluated */
    struct qt_graph *g;
    struct qt_exec *x;
    int nout;  /* outputs per image */
};

static int side_open(struct side *s, const char *path, int batch, int threads, int c, int h, int w, int lower,
                     int *nlowered, struct qt_err *err) {
    if (qt_graph_load(&s->g, path, err))
        return err->code;
    if (qt_graph_check_weights(s->g, err))
        return qt_err_prefix(err, "'%s'", path);
    if (lower && qt_int8_lower(s->g, nlowered, err))
        return qt_err_prefix(err, "'%s'", path);
    if (qt_exec_new_flags(&s->x, s->g, batch, threads, QT_EXEC_SUBBATCH, err))
        return qt_err_prefix(err, "'%s'", path);
    const struct qt_tensor *in = qt_exec_input_tensor(s->x, 0), *out = qt_exec_output_tensor(s->x, 0);
    if (in->dims[1] != c || in->dims[2] != h || in->dims[3] != w)
        return qt_errf(err, QT_EUSAGE, "'%s' takes [%lld,%lld,%lld] images, the other model [%d,%d,%d]", path,
                       (long long)in->dims[1], (long long)in->dims[2], (long long)in->dims[3], c, h, w);
    if (out->dtype != QT_FLOAT || out->ndim < 1 || out->dims[0] != batch)
        return qt_errf(err, QT_EUNSUPPORTED, "'%s': output 0 is not a float32 [N,...] tensor", path);
    s->nout = (int)(qt_tensor_numel(out) / batch);
    return 0;
}

static void side_close(struct side *s) {
    qt_exec_free(s->x);
    qt_graph_free(s->g);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median and 90th percentile of `runs` timed runs at batch `nb` (every
 * row the first image) after three warm-up runs, on an executor of its own. */
static int latency(struct side *m, const float *img, int c, int h, int w, int nb, int threads, int runs,
                   struct qt_eval_result *r, struct qt_err *err) {
    struct qt_exec *x = NULL;
    double *t = malloc(sizeof(double) * (size_t)(runs + 1));
    size_t img_floats = (size_t)c * h * w;
    if (!t)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    if (qt_exec_new_flags(&x, m->g, nb, threads, QT_EXEC_SUBBATCH, err)) {
        free(t);
        return err->code;
    }
    for (int i = 0; i < nb; i++)
        memcpy(qt_exec_input(x, 0) + (size_t)i * img_floats, img, sizeof(float) * img_floats);
    r->lat_batch = nb;
    for (int i = 0; i < 3; i++) /* warm-up */
        if (qt_exec_run(x, err))
            goto out;
    for (int i = 0; i < runs; i++) {
        double t0 = qt_now();
        if (qt_exec_run(x, err))
            goto out;
        t[i] = (qt_now() - t0) * 1e3;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    r->lat_median_ms = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
    r->lat_p90_ms = t[(int)ceil(0.9 * runs) - 1];
out:
    free(t);
    qt_exec_free(x);
    return err->code;
}

/* A raw output file written under a temporary name and renamed at the end,
 * so a failed or interrupted run leaves no partial file. */
struct outfile {
    const char *path;
    char *tmp;
    FILE *f;
};

static int outfile_open(struct outfile *o, const char *path, struct qt_err *err) {
    if (!path)
        return 0;
    size_t l = strlen(path) + 8;
    struct stat st;
    o->path = path;
    if (qt_out_check(path, err))
        return err->code;
    char *tmp = malloc(l);
    if (!tmp)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    snprintf(tmp, l, "%s.tmp", path);
    /* PATH.tmp too is only ever a regular file: never followed, never waited on */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !(o->f = fdopen(fd, "wb"))) {
        if (fd >= 0)
            close(fd);
        free(tmp);
        return qt_errf(err, QT_EIO, "cannot write '%s'", path);
    }
    o->tmp = tmp; /* ours from here: removed on failure */
    return 0;
}

static int outfile_write(struct outfile *o, const void *p, size_t n, struct qt_err *err) {
    if (o->f && fwrite(p, 1, n, o->f) != n)
        return qt_errf(err, QT_EIO, "cannot write '%s'", o->path);
    return 0;
}

static int outfile_close(struct outfile *o, struct qt_err *err) {
    if (!o->f)
        return 0;
    int bad = ferror(o->f) | fflush(o->f) | fsync(fileno(o->f));
    bad |= fclose(o->f);
    o->f = NULL;
    if (bad)
        return qt_errf(err, QT_EIO, "cannot write '%s'", o->path);
    if (qt_out_check(o->path, err) || rename(o->tmp, o->path))
        return err->code ? err->code : qt_errf(err, QT_EIO, "cannot write '%s'", o->path);
    free(o->tmp);
    o->tmp = NULL;
    return 0;
}

static void outfile_abort(struct outfile *o) {
    if (o->f)
        fclose(o->f);
    if (o->tmp)
        unlink(o->tmp);
    free(o->tmp);
    o->f = NULL;
    o->tmp = NULL;
}

/* The running figures of one evaluation (qt_stream_images' ud). */
struct pass {
    const struct qt_eval_opts *o;
    struct qt_eval_result *r;
    struct side *m, *ref;
    struct qt_dataset *ds;
    FILE *csv;
    struct outfile *raw, *rawin;
    float *first;      /* the first image, for the latency runs */
    size_t img_floats;
    struct qt_preproc pp;
    int in_h, in_w;
    int batch;
    double t_compute, sig, noise, loss;
    long long n1, n5, nagree, nref1;
    /* dense prediction (r->dense): C classes on H*W pixels per image */
    int C, HW;
    int *am, *ram;            /* argmax per pixel of the model and the reference */
    unsigned char *mask;      /* the image's mask at the output size */
    long long *iou;           /* 9 * C counts: tp, fp, fn against the reference, the masks, and the
                               * reference against the masks */
    long long pix_agree, mask_ok, ref_mask_ok;
    double *osig, *onoise;    /* per model output, with a reference */
};

static float *pass_input(void *ud, int nb, struct qt_err *err) {
    struct pass *e = ud;
    (void)nb;
    (void)err;
    return qt_exec_input(e->m->x, 0); /* the last batch is padded: one executor */
}

/* Image `idx`'s outputs v (and the reference's rv, or NULL) with label lab. */
static void pass_image(struct pass *e, const float *v, const float *rv, int lab, int idx) {
    int nout = e->m->nout, top[5] = {0}, k = nout < 5 ? nout : 5;
    topk(v, nout, k, top);
    if (lab >= 0 && lab < nout) {
        e->r->labeled++;
        e->n1 += top[0] == lab;
        for (int j = 0; j < k; j++)
            e->n5 += top[j] == lab;
        e->loss += xent(v, nout, lab);
    }
    if (rv) {
        int rtop[1] = {0};
        topk(rv, nout, 1, rtop);
        e->nagree += rtop[0] == top[0];
        e->nref1 += lab >= 0 && rtop[0] == lab;
        for (int j = 0; j < nout; j++) {
            double d = (double)v[j] - rv[j];
            e->sig += (double)rv[j] * rv[j];
            e->noise += d * d;
        }
    }
    if (e->csv) {
        fprintf(e->csv, "%s,%d", qt_dataset_path(e->ds, idx), lab);
        for (int j = 0; j < 5; j++)
            fprintf(e->csv, j < k ? ",%d" : ",", top[j]);
        for (int j = 0; j < 5; j++)
            if (j < k)
                fprintf(e->csv, ",%.6g", v[top[j]]);
            else
                fprintf(e->csv, ",");
        fprintf(e->csv, "\n");
    }
}

/* Class per pixel: the argmax over C of v[C][HW] (the first on ties; NaN never wins). */
static void pixel_argmax(const float *v, int C, int HW, int *am) {
    for (int p = 0; p < HW; p++) {
        int best = 0;
        float bv = v[p];
        for (int c = 1; c < C; c++) {
            float x = v[(size_t)c * HW + p];
            if (x > bv || (bv != bv && x == x)) {
                bv = x;
                best = c;
            }
        }
        am[p] = best;
    }
}

/* tp/fp/fn per class of prediction `pr` against truth `gt` (255: skipped). */
static void iou_count(long long *cnt, int C, const int *pr, const int *gt, const unsigned char *gmask, int HW) {
    long long *tp = cnt, *fp = cnt + C, *fn = cnt + 2 * C;
    for (int p = 0; p < HW; p++) {
        int g = gmask ? gmask[p] : gt[p];
        if (g == 255 && gmask)
            continue;
        if (pr[p] == g) {
            tp[g]++;
        } else {
            fp[pr[p]]++;
            fn[g]++;
        }
    }
}

/* Mean IoU over the classes with a non-empty union; NaN when there is none. */
static double mean_iou(const long long *cnt, int C) {
    double s = 0;
    int n = 0;
    for (int c = 0; c < C; c++) {
        long long u = cnt[c] + cnt[C + c] + cnt[2 * C + c];
        if (u > 0) {
            s += (double)cnt[c] / (double)u;
            n++;
        }
    }
    return n ? 100.0 * s / n : NAN;
}

/* The mask of image idx (o->masks/<path under o->data, extension .png>),
 * checked against its image's size and the model's classes, brought to
 * the output size through the image's preprocessing into e->mask. */
static int load_mask(struct pass *e, int idx, struct qt_err *err) {
    const char *ip = qt_dataset_path(e->ds, idx), *data = e->o->data, *rel = ip;
    size_t dl = strlen(data);
    while (dl > 1 && data[dl - 1] == '/')
        dl--;
    if (!strncmp(ip, data, dl) && ip[dl] == '/')
        rel = ip + dl + 1;
    const char *slash = strrchr(rel, '/'), *dot = strrchr(rel, '.');
    int stem = dot && (!slash || dot > slash) ? (int)(dot - rel) : (int)strlen(rel);
    size_t l = strlen(e->o->masks) + strlen(rel) + 8;
    char *mp = malloc(l);
    struct qt_image img = {0}, mk = {0};
    struct stat st;
    if (!mp)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    snprintf(mp, l, "%s/%.*s.png", e->o->masks, stem, rel);
    if (stat(mp, &st) != 0) {
        qt_errf(err, QT_EDATA, "no mask for image '%s': '%s' does not exist", ip, mp);
        goto out;
    }
    if (qt_mask_load(&mk, mp, err) || qt_image_load(&img, ip, 0, err))
        goto out;
    if (mk.w != img.w || mk.h != img.h) {
        qt_errf(err, QT_EDATA, "mask '%s' is %dx%d, its image '%s' %dx%d", mp, mk.w, mk.h, ip, img.w, img.h);
        goto out;
    }
    for (size_t i = 0; i < (size_t)mk.w * mk.h; i++)
        if (mk.px[i] != 255 && mk.px[i] >= e->C) {
            qt_errf(err, QT_EDATA, "mask '%s' has class %d at (%d, %d); the model predicts %d classes (255: ignore)",
                    mp, mk.px[i], (int)(i % (size_t)mk.w), (int)(i / (size_t)mk.w), e->C);
            goto out;
        }
    if (qt_preprocess_mask(&mk, &e->pp, e->in_h, e->in_w, e->mask, e->r->dense_h, e->r->dense_w, err))
        qt_err_prefix(err, "mask '%s'", mp);
out:
    qt_image_release(&img);
    qt_image_release(&mk);
    free(mp);
    return err->code;
}

static int pass_dense(struct pass *e, const float *v, const float *rv, int idx, struct qt_err *err) {
    int C = e->C, HW = e->HW;
    pixel_argmax(v, C, HW, e->am);
    if (rv) {
        pixel_argmax(rv, C, HW, e->ram);
        for (int p = 0; p < HW; p++)
            e->pix_agree += e->am[p] == e->ram[p];
        iou_count(e->iou, C, e->am, e->ram, NULL, HW);
        for (int p = 0; p < HW; p++) { /* sig/noise as for classification: output 0 */
            for (int c = 0; c < C; c++) {
                size_t j = (size_t)c * HW + p;
                double d = (double)v[j] - rv[j];
                e->sig += (double)rv[j] * rv[j];
                e->noise += d * d;
            }
        }
    }
    if (e->o->masks) {
        if (load_mask(e, idx, err))
            return err->code;
        for (int p = 0; p < HW; p++) {
            if (e->mask[p] == 255)
                continue;
            e->r->mask_pixels++;
            e->mask_ok += e->am[p] == e->mask[p];
            if (rv)
                e->ref_mask_ok += e->ram[p] == e->mask[p];
        }
        iou_count(e->iou + 3 * C, C, e->am, NULL, e->mask, HW);
        if (rv)
            iou_count(e->iou + 6 * C, C, e->ram, NULL, e->mask, HW);
    }
    return 0;
}

static int pass_batch(void *ud, float *in, const int *labels, int done, int nb, struct qt_err *err) {
    struct pass *e = ud;
    if (done == 0)
        memcpy(e->first, in, sizeof(float) * e->img_floats);
    double t0 = qt_now();
    if (qt_exec_run(e->m->x, err))
        return err->code;
    e->t_compute += qt_now() - t0;
    const float *out = qt_exec_output(e->m->x, 0), *rout = NULL;
    if (e->o->ref) {
        memcpy(qt_exec_input(e->ref->x, 0), in, sizeof(float) * (size_t)e->batch * e->img_floats);
        if (qt_exec_run(e->ref->x, err))
            return err->code;
        rout = qt_exec_output(e->ref->x, 0);
    }
    for (int i = 0; i < nb; i++) {
        const float *v = out + (size_t)i * e->m->nout, *rv = rout ? rout + (size_t)i * e->m->nout : NULL;
        if (!e->r->dense)
            pass_image(e, v, rv, labels[i], done + i);
        else if (pass_dense(e, v, rv, done + i, err))
            return err->code;
    }
    for (int k = 0; rout && k < e->r->noutputs; k++) {
        const struct qt_tensor *t = qt_exec_output_tensor(e->m->x, k);
        if (t->dtype != QT_FLOAT)
            continue;
        const float *a = qt_exec_output(e->m->x, k), *b = qt_exec_output(e->ref->x, k);
        size_t n = (size_t)(qt_tensor_numel(t) / e->batch) * nb;
        double sg = 0, nz = 0;
        for (size_t j = 0; j < n; j++) {
            double d = (double)a[j] - b[j];
            sg += (double)b[j] * b[j];
            nz += d * d;
        }
        e->osig[k] += sg;
        e->onoise[k] += nz;
    }
    if (outfile_write(e->raw, out, sizeof(float) * (size_t)e->m->nout * nb, err) ||
        outfile_write(e->rawin, in, sizeof(float) * e->img_floats * nb, err))
        return err->code;
    return 0;
}

void qt_eval_result_release(struct qt_eval_result *r) {
    for (int k = 0; r && r->outputs && k < r->noutputs; k++)
        free(r->outputs[k].name);
    if (r) {
        free(r->outputs);
        r->outputs = NULL;
        r->noutputs = 0;
    }
}

/* Reads the input shape from the model, checks the channel option, opens the data set and the
   model (and --ref) for batches of *batch images; *total is the number of images to evaluate. */
static int eval_open(const struct qt_eval_opts *o, struct qt_eval_result *r, int threads, struct qt_preproc *pp,
                     struct side *m, struct side *ref, struct qt_dataset **ds, int *c, int *h, int *w, int *batch,
                     int *total, struct qt_err *err) {
    struct qt_graph *probe = NULL;
    int fixed;

    if (qt_graph_load(&probe, o->model, err))
        return err->code;
    if (qt_model_image_shape(probe, pp, c, h, w, &fixed, err)) {
        qt_graph_free(probe);
        return err->code;
    }
    qt_graph_free(probe);
    if (!o->channels_set)
        pp->channels = *c;
    if (pp->channels != *c)
        return qt_errf(err, QT_EUSAGE, "the model takes %d channel%s but --%s was given", *c, *c == 1 ? "" : "s",
                       pp->channels == 1 ? "gray" : "rgb");
    *batch = fixed ? fixed : (o->batch > 0 ? o->batch : 32);
    if (qt_dataset_open(ds, o->data, o->classes, err))
        return err->code;
    *total = qt_dataset_count(*ds);
    if (o->limit > 0 && o->limit < *total)
        *total = o->limit;
    if (!fixed && *batch > *total)
        *batch = *total;
    if (side_open(m, o->model, *batch, threads, *c, *h, *w, !o->simulate, &r->int8_nodes, err))
        return err->code;
    r->int8_isa = qt_int8_isa_name(qt_int8_isa());
    if (o->ref && side_open(ref, o->ref, *batch, threads, *c, *h, *w, 0, NULL, err))
        return err->code;
    if (o->ref && ref->nout != m->nout)
        return qt_errf(err, QT_EUSAGE, "'%s' gives %d outputs per image, '%s' %d", o->model, m->nout, o->ref,
                       ref->nout);
    return 0;
}

/* Sets r's class count and dense shape from the model's first output, checks the options and --ref
   against the outputs, and with --ref names each output in r->outputs and allocates *osig (signal
   and noise sums, 2 per output). */
static int eval_check_outputs(const struct qt_eval_opts *o, struct qt_eval_result *r, const struct side *m,
                              const struct side *ref, double **osig, struct qt_err *err) {
    r->nclasses = m->nout;
    const struct qt_tensor *t = qt_exec_output_tensor(m->x, 0);
    if (t->ndim == 4 && t->dims[2] * t->dims[3] > 1) {
        r->dense = 1;
        r->nclasses = (int)t->dims[1];
        r->dense_h = (int)t->dims[2];
        r->dense_w = (int)t->dims[3];
    }
    if (o->ref && r->dense) {
        const struct qt_tensor *rt = qt_exec_output_tensor(ref->x, 0);
        if (rt->ndim != 4 || rt->dims[1] != t->dims[1] || rt->dims[2] != t->dims[2] || rt->dims[3] != t->dims[3])
            return qt_errf(err, QT_EUSAGE, "'%s' and '%s' give outputs of different shapes", o->model, o->ref);
    }
    if (o->predictions && r->dense)
        return qt_errf(err, QT_EUSAGE, "--predictions lists each image's top-5 classes; the output of '%s' is "
                       "dense ([N, C, H, W])", o->model);
    if (o->masks && !r->dense)
        return qt_errf(err, QT_EUSAGE, "--masks '%s': the output of '%s' is not [N, C, H, W] (dense prediction)",
                       o->masks, o->model);
    if (o->masks && r->nclasses > 255)
        return qt_errf(err, QT_EUSAGE, "--masks '%s': '%s' predicts %d classes; masks hold 0..254", o->masks,
                       o->model, r->nclasses);
    if (!o->ref)
        return 0;
    if (m->g->noutputs != ref->g->noutputs)
        return qt_errf(err, QT_EUSAGE, "'%s' has %d outputs, '%s' %d", o->model, m->g->noutputs, o->ref,
                       ref->g->noutputs);
    r->noutputs = m->g->noutputs;
    r->outputs = calloc((size_t)r->noutputs, sizeof *r->outputs);
    *osig = calloc((size_t)r->noutputs * 2, sizeof(double));
    if (!r->outputs || !*osig)
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int k = 0; k < r->noutputs; k++) {
        const struct qt_tensor *a = qt_exec_output_tensor(m->x, k), *b = qt_exec_output_tensor(ref->x, k);
        const char *nm = qt_graph_output(m->g, k, NULL, NULL, NULL);
        if (a->dtype != b->dtype || qt_tensor_numel(a) != qt_tensor_numel(b))
            return qt_errf(err, QT_EUSAGE, "output %d ('%s') of '%s' and of '%s' differ in type or size", k,
                           nm ? nm : "", o->model, o->ref);
        r->outputs[k].sqnr_db = NAN;
        if (!(r->outputs[k].name = strdup(nm ? nm : "")))
            return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    return 0;
}

/* Turns the counts and sums of pass e over total images into r's accuracy, agreement, SQNR, mIoU
   and throughput figures. */
static void eval_summarize(const struct qt_eval_opts *o, struct qt_eval_result *r, const struct pass *e,
                           const struct side *m, int total, const long long *iou, const double *osig) {
    if (r->labeled) {
        r->top1 = 100.0 * e->n1 / r->labeled;
        r->top5 = 100.0 * e->n5 / r->labeled;
        r->loss = e->loss / r->labeled;
        r->ref_top1 = 100.0 * e->nref1 / r->labeled;
    }
    if (o->ref && total) {
        r->agree = 100.0 * e->nagree / total;
        r->sqnr_db = e->noise > 0 ? 10 * log10(e->sig / e->noise) : INFINITY;
        for (int k = 0; k < r->noutputs; k++)
            if (qt_exec_output_tensor(m->x, k)->dtype == QT_FLOAT)
                r->outputs[k].sqnr_db = osig[r->noutputs + k] > 0
                                            ? 10 * log10(osig[k] / osig[r->noutputs + k]) : INFINITY;
    }
    if (r->dense && total) {
        if (o->ref) {
            r->pixel_agree = r->agree = 100.0 * e->pix_agree / ((double)total * e->HW);
            r->miou_ref = mean_iou(iou, e->C);
        }
        if (o->masks) {
            r->have_masks = 1;
            r->pixel_acc = r->mask_pixels ? 100.0 * e->mask_ok / r->mask_pixels : NAN;
            r->miou = mean_iou(iou + 3 * e->C, e->C);
            r->ref_pixel_acc = o->ref && r->mask_pixels ? 100.0 * e->ref_mask_ok / r->mask_pixels : NAN;
            r->ref_miou = o->ref ? mean_iou(iou + 6 * e->C, e->C) : NAN;
        }
    }
    r->throughput = e->t_compute > 0 ? total / e->t_compute : 0;
}

int qt_eval_run(const struct qt_eval_opts *o, struct qt_eval_result *r, struct qt_err *err) {
    struct side m = {0}, ref = {0};
    struct qt_dataset *ds = NULL;
    struct qt_preproc pp = o->pp;
    float *first = NULL;
    int *labels = NULL, *am = NULL;
    long long *iou = NULL;
    unsigned char *mask = NULL;
    double *osig = NULL;
    struct outfile csvf = {0}, raw = {0}, rawin = {0};
    FILE *csv = NULL;
    double t_start = qt_now();
    int c = 0, h = 0, w = 0, batch = 0, threads, total = 0;
    struct stat st;

    memset(r, 0, sizeof *r);
    threads = o->threads > 0 ? o->threads : qt_ncpus();
    /* the output files first: a bad path fails before any work, leaving nothing */
    if ((o->predictions && qt_out_check(o->predictions, err)) ||
        (o->save_outputs && qt_out_check(o->save_outputs, err)) || (o->save_inputs && qt_out_check(o->save_inputs, err)))
        goto out;
    if (eval_open(o, r, threads, &pp, &m, &ref, &ds, &c, &h, &w, &batch, &total, err) ||
        eval_check_outputs(o, r, &m, &ref, &osig, err))
        goto out;
    r->batch = batch;
    r->threads = threads;
    r->peak_act_bytes = qt_exec_peak_bytes(m.x);
    r->have_ref = o->ref != NULL;
    if (stat(o->model, &st) == 0)
        r->model_bytes = (long long)st.st_size;

    size_t img_floats = (size_t)c * h * w;
    labels = malloc(sizeof(int) * (size_t)batch);
    first = malloc(sizeof(float) * img_floats);
    if (!labels || !first) {
        qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    if (outfile_open(&csvf, o->predictions, err))
        goto out;
    csv = csvf.f;
    if (csv)
        fprintf(csv, "path,label,top1,top2,top3,top4,top5,score1,score2,score3,score4,score5\n");
    if (outfile_open(&raw, o->save_outputs, err) || outfile_open(&rawin, o->save_inputs, err))
        goto out;
    struct pass e = {.o = o, .r = r, .m = &m, .ref = &ref, .ds = ds, .csv = csv, .raw = &raw, .rawin = &rawin,
                     .first = first, .img_floats = img_floats, .batch = batch, .pp = pp, .in_h = h, .in_w = w,
                     .osig = osig, .onoise = osig ? osig + r->noutputs : NULL};
    if (r->dense) {
        e.C = r->nclasses;
        e.HW = r->dense_h * r->dense_w;
        e.am = am = malloc(sizeof(int) * (size_t)e.HW * 2);
        e.ram = am ? am + e.HW : NULL;
        e.iou = iou = calloc((size_t)e.C * 9, sizeof(long long));
        e.mask = mask = malloc((size_t)e.HW);
        if (!am || !iou || !mask) {
            qt_errf(err, QT_ENOMEM, "out of memory");
            goto out;
        }
    }
    struct qt_stream str = {.ds = ds, .pp = &pp, .c = c, .h = h, .w = w, .total = total, .batch = batch,
                            .threads = threads, .pad = 1, .labels = labels, .input = pass_input,
                            .run = pass_batch, .ud = &e, .progress = o->progress, .progress_ud = o->progress_ud};
    if (qt_stream_images(&str, err))
        goto out;
    r->images = total;
    eval_summarize(o, r, &e, &m, total, iou, osig);
    if (outfile_close(&csvf, err) || outfile_close(&raw, err) || outfile_close(&rawin, err))
        goto out;
    if (o->latency_runs > 0 && total > 0 &&
        latency(&m, first, c, h, w, o->latency_batch > 0 ? o->latency_batch : 1, threads, o->latency_runs, r, err))
        goto out;
    r->wall_s = qt_now() - t_start;
out:
    free(am);
    free(iou);
    free(mask);
    free(osig);
    outfile_abort(&csvf);
    outfile_abort(&raw);
    outfile_abort(&rawin);
    free(labels);
    free(first);
    side_close(&m);
    side_close(&ref);
    qt_dataset_free(ds);
    return err->code;
}
