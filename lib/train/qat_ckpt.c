/* qat_ckpt.c: qtool qat's best-epoch snapshot and --checkpoint files
 * (see qat.c). */
#include "train/qat.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The best epoch's parameters: every float initializer of the training
 * graph (weights, biases, scales, BatchNormalization statistics). */
int qt_qat_snap_take(struct qat *q, struct qt_err *err) {
    struct qt_graph *tg = q->tg;
    if (!q->snap && !(q->snap = calloc((size_t)tg->nv + 1, sizeof *q->snap)))
        return qt_errf(err, QT_ENOMEM, "out of memory");
    for (int v = 0; v < tg->nv; v++) {
        if (!qt_qat_is_float_init(tg, v))
            continue;
        if (!q->snap[v] && !(q->snap[v] = malloc(tg->v[v].init->nbytes + 1)))
            return qt_errf(err, QT_ENOMEM, "out of memory keeping the best epoch");
        memcpy(q->snap[v], tg->v[v].init->data, tg->v[v].init->nbytes);
    }
    return 0;
}

void qt_qat_snap_restore(struct qat *q) {
    for (int v = 0; q->snap && v < q->tg->nv; v++)
        if (q->snap[v] && qt_qat_is_float_init(q->tg, v))
            memcpy(q->tg->v[v].init->data, q->snap[v], q->tg->v[v].init->nbytes);
}

void qt_qat_snap_free(struct qat *q) {
    for (int v = 0; q->snap && q->tg && v < q->tg->nv; v++)
        free(q->snap[v]);
    free(q->snap);
    q->snap = NULL;
}


/* ---- checkpoints --------------------------------------------------------
 * DIR/checkpoint.bin: "QTCK", version 2, epoch, optimizer step, then for
 * every float initializer of the training graph in order its name, element
 * count and values, then per parameter the optimizer state (m, v), then the
 * validation record (int32 best epoch, -1 none; double start and best val
 * top-1) and, with a best epoch, its float initializers' values in the same
 * order (so that --resume writes the epoch an uninterrupted run would). */

struct ck_head {
    char magic[4];
    uint32_t version;
    int32_t epoch;
    int32_t nvalues;
    int64_t step;
};

static int ck_path(const struct qt_qat_opts *o, char *buf, size_t len, struct qt_err *err) {
    if ((size_t)snprintf(buf, len, "%s/checkpoint.bin", o->checkpoint) >= len)
        return qt_errf(err, QT_EUSAGE, "checkpoint directory name is too long");
    return 0;
}

int qt_qat_ck_write(struct qat *q, int epoch, const struct qt_qat_result *r, struct qt_err *err) {
    struct qt_graph *tg = q->tg;
    char path[4096];
    size_t len = sizeof(struct ck_head), off = 0;
    int nvals = 0;
    if (!q->o->checkpoint)
        return 0;
    if (ck_path(q->o, path, sizeof path, err))
        return err->code;
    if (mkdir(q->o->checkpoint, 0777) && errno != EEXIST)
        return qt_errf(err, QT_EIO, "cannot create checkpoint directory '%s': %s", q->o->checkpoint,
                       strerror(errno));
    for (int v = 0; v < tg->nv; v++)
        if (qt_qat_is_float_init(tg, v)) {
            len += 4 + strlen(tg->v[v].name) + 8 + tg->v[v].init->nbytes;
            nvals++;
        }
    for (int i = 0; i < q->opt.np; i++)
        len += 2 * sizeof(float) * (size_t)q->opt.p[i].n;
    int32_t best = q->snap ? r->best_epoch : -1;
    len += 4 + 2 * sizeof(double);
    for (int v = 0; best >= 0 && v < tg->nv; v++)
        if (qt_qat_is_float_init(tg, v))
            len += tg->v[v].init->nbytes;
    unsigned char *buf = malloc(len);
    if (!buf)
        return qt_errf(err, QT_ENOMEM, "out of memory writing a checkpoint");
    struct ck_head h = {{'Q', 'T', 'C', 'K'}, 2, epoch, nvals, q->opt.t};
    memcpy(buf, &h, sizeof h);
    off = sizeof h;
    for (int v = 0; v < tg->nv; v++) {
        if (!qt_qat_is_float_init(tg, v))
            continue;
        uint32_t nl = (uint32_t)strlen(tg->v[v].name);
        int64_t n = qt_tensor_numel(tg->v[v].init);
        memcpy(buf + off, &nl, 4);
        memcpy(buf + off + 4, tg->v[v].name, nl);
        memcpy(buf + off + 4 + nl, &n, 8);
        memcpy(buf + off + 12 + nl, tg->v[v].init->data, tg->v[v].init->nbytes);
        off += 12 + nl + tg->v[v].init->nbytes;
    }
    for (int i = 0; i < q->opt.np; i++) {
        size_t b = sizeof(float) * (size_t)q->opt.p[i].n;
        memcpy(buf + off, q->opt.p[i].m, b);
        memcpy(buf + off + b, q->opt.p[i].v, b);
        off += 2 * b;
    }
    double vals[2] = {r->start_val_top1, r->best_val_top1};
    memcpy(buf + off, &best, 4);
    memcpy(buf + off + 4, vals, sizeof vals);
    off += 4 + sizeof vals;
    for (int v = 0; best >= 0 && v < tg->nv; v++)
        if (qt_qat_is_float_init(tg, v)) {
            memcpy(buf + off, q->snap[v], tg->v[v].init->nbytes);
            off += tg->v[v].init->nbytes;
        }
    int rc = qt_write_file_atomic(path, buf, off, err);
    free(buf);
    return rc;
}

int qt_qat_ck_read(struct qat *q, int *epoch, struct qt_err *err) {
    struct qt_graph *tg = q->tg;
    char path[4096];
    void *data;
    size_t len, off = sizeof(struct ck_head);
    struct ck_head h;
    if (ck_path(q->o, path, sizeof path, err) || qt_read_file(path, (size_t)1 << 34, &data, &len, err))
        return err->code;
    unsigned char *buf = data;
    if (len < sizeof h)
        goto bad;
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, "QTCK", 4) || h.version != 2)
        goto bad;
    for (int k = 0; k < h.nvalues; k++) {
        uint32_t nl;
        int64_t n;
        if (off + 12 > len)
            goto bad;
        memcpy(&nl, buf + off, 4);
        if (off + 12 + nl > len)
            goto bad;
        memcpy(&n, buf + off + 4 + nl, 8);
        char name[1024];
        if (nl >= sizeof name)
            goto bad;
        memcpy(name, buf + off + 4, nl);
        name[nl] = 0;
        int v = qt_graph_find(tg, name);
        if (v < 0 || !qt_qat_is_float_init(tg, v) || qt_tensor_numel(tg->v[v].init) != n ||
            off + 12 + nl + tg->v[v].init->nbytes > len) {
            free(data);
            return qt_errf(err, QT_EDATA, "checkpoint '%s' does not match this model and settings ('%s')", path,
                           name);
        }
        memcpy(tg->v[v].init->data, buf + off + 12 + nl, tg->v[v].init->nbytes);
        off += 12 + nl + tg->v[v].init->nbytes;
    }
    for (int i = 0; i < q->opt.np; i++) {
        size_t b = sizeof(float) * (size_t)q->opt.p[i].n;
        if (off + 2 * b > len)
            goto bad;
        memcpy(q->opt.p[i].m, buf + off, b);
        memcpy(q->opt.p[i].v, buf + off + b, b);
        off += 2 * b;
    }
    int32_t best;
    double vals[2];
    if (off + 4 + sizeof vals > len)
        goto bad;
    memcpy(&best, buf + off, 4);
    memcpy(vals, buf + off + 4, sizeof vals);
    off += 4 + sizeof vals;
    q->ck_best_epoch = best;
    q->ck_start_val = vals[0];
    q->ck_best_val = vals[1];
    if (best >= 0) {
        if (!(q->snap = calloc((size_t)tg->nv + 1, sizeof *q->snap))) {
            free(data);
            return qt_errf(err, QT_ENOMEM, "out of memory");
        }
        for (int v = 0; v < tg->nv; v++) {
            if (!qt_qat_is_float_init(tg, v))
                continue;
            size_t b = tg->v[v].init->nbytes;
            if (off + b > len || !(q->snap[v] = malloc(b + 1)))
                goto bad;
            memcpy(q->snap[v], buf + off, b);
            off += b;
        }
    }
    if (off != len)
        goto bad;
    q->opt.t = h.step;
    *epoch = h.epoch;
    free(data);
    return 0;
bad:
    free(data);
    return qt_errf(err, QT_EDATA, "checkpoint '%s' is truncated or not a qtool checkpoint", path);
}

