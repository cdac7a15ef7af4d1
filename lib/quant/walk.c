/* walk.c: a graph run over all tuning images a step range at a time
 * (finetune's and bias correction's per-layer passes), and the held
 * per-image buffers it and finetune keep in memory or in a temporary file. */
#include "quant/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int qt_write_at(int fd, const void *src, size_t n, int64_t pos) {
    const unsigned char *p = src;
    while (n) {
        ssize_t r = pwrite(fd, p, n, (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
        pos += r;
    }
    return 0;
}

int qt_read_at(int fd, void *dst, size_t n, int64_t pos) {
    unsigned char *d = dst;
    while (n) {
        ssize_t r = pread(fd, d, n, (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return -1;
        }
        d += r;
        n -= (size_t)r;
        pos += r;
    }
    return 0;
}

/* One layer's inputs and targets: in memory, or over max_memory in an
 * unlinked temporary file (TMPDIR, else /tmp) written once and read back a
 * minibatch at a time (through the page cache, not the process's memory). */

int qt_held_new(struct qt_held *h, size_t bytes, int spill, struct qt_err *err) {
    h->bytes = bytes;
    h->fd = -1;
    h->p = NULL;
    if (!spill) {
        h->p = malloc(bytes ? bytes : 1);
        return h->p ? 0 : qt_errf(err, QT_ENOMEM, "out of memory holding a layer's inputs (%zu bytes)", bytes);
    }
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/qtool-finetune-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return qt_errf(err, QT_EIO, "cannot create a temporary file in %s: %s", dir && *dir ? dir : "/tmp",
                       strerror(errno));
    unlink(path);
    int rc = posix_fallocate(fd, 0, (off_t)bytes);
    if (rc) {
        close(fd);
        return qt_errf(err, QT_EIO, "cannot spill %zu bytes of layer inputs to %s: %s", bytes,
                       dir && *dir ? dir : "/tmp", strerror(rc));
    }
    h->fd = fd;
    return 0;
}

void qt_held_release(struct qt_held *h) {
    if (h->fd >= 0)
        close(h->fd);
    free(h->p);
    h->p = NULL;
    h->fd = -1;
}

/* A walk through a graph over all tuning images, step range by step range:
 * the values that cross the cut (made before it, read after it) are kept for
 * every image, so reaching the next layer runs only the steps in between
 * instead of the whole prefix from the images. The executor, batches and
 * kernels are those of a run from the images, so the values are the same
 * bytes. Kept in memory, or over max_memory in an unlinked temporary file
 * read back a batch at a time. A cut before the current one starts again
 * from the images. */

void qt_walk_clear(struct qt_walk *wk) {
    for (int i = 0; i < wk->nf; i++)
        free(wk->fname[i]);
    free(wk->fname);
    free(wk->fper);
    wk->fname = NULL;
    wk->fper = NULL;
    wk->nf = 0;
    wk->cut = 0;
    qt_held_release(&wk->st);
}

void qt_walk_free(struct qt_walk *wk) {
    qt_walk_clear(wk);
    qt_exec_free(wk->x);
    wk->x = NULL;
    wk->cut = 0;
}

/* the graph to walk from now on: same structure, other weights (the QDQ
 * model re-exported after a layer was tuned) */
void qt_walk_graph(struct qt_walk *wk, struct qt_graph *g) {
    qt_exec_free(wk->x);
    wk->x = NULL;
    wk->cur = 0;
    wk->g = g;
}

static int walk_exec(struct qt_walk *wk, int nb, int threads, struct qt_err *err) {
    if (wk->x && wk->cur == nb)
        return 0;
    qt_exec_free(wk->x);
    wk->x = NULL;
    if (qt_exec_new_flags(&wk->x, wk->g, nb, threads, QT_EXEC_NOFUSE, err))
        return err->code;
    wk->cur = nb;
    return 0;
}

/* The step after the one making value `name` (0: a graph input), or -1. */
int qt_walk_cut_after_value(struct qt_walk *wk, const char *name, int threads, struct qt_err *err) {
    if (walk_exec(wk, wk->cur ? wk->cur : 1, threads, err))
        return -2;
    int v = qt_graph_find(wk->g, name);
    if (v < 0)
        return -1;
    for (int s = 0; s < wk->x->nsteps; s++) {
        const struct qt_node *n = &wk->g->n[wk->x->steps[s]];
        for (int j = 0; j < n->nout; j++)
            if (n->out[j] == v)
                return s + 1;
    }
    for (int i = 0; i < wk->g->ninputs; i++)
        if (wk->g->inputs[i] == v)
            return 0;
    return -1;
}

int qt_walk_cut_after_node(struct qt_walk *wk, const char *name, int threads, struct qt_err *err) {
    if (walk_exec(wk, wk->cur ? wk->cur : 1, threads, err))
        return -2;
    for (int s = 0; s < wk->x->nsteps; s++) {
        const struct qt_node *n = &wk->g->n[wk->x->steps[s]];
        if (n->name && !strcmp(n->name, name))
            return s + 1;
    }
    return -1;
}

/* bytes of nb images of value v at offset `at` images, to or from st */
static int walk_io(struct qt_held *st, int64_t base, void *p, int64_t bytes, int wr, struct qt_err *err) {
    if (st->fd < 0) {
        if (wr)
            memcpy((unsigned char *)st->p + base, p, (size_t)bytes);
        else
            memcpy(p, (unsigned char *)st->p + base, (size_t)bytes);
        return 0;
    }
    if (wr ? qt_write_at(st->fd, p, (size_t)bytes, base) : qt_read_at(st->fd, p, (size_t)bytes, base))
        return qt_errf(err, QT_EIO, "cannot %s the temporary file of kept activations: %s", wr ? "write" : "read",
                       strerror(errno));
    return 0;
}

/* Walks from the current cut to `cut` over images [0, total) in batches,
 * calling visit after each batch with the values at the new cut live. */
static int walk(struct qt_walk *wk, int cut, int keep, struct qt_dataset *ds, const struct qt_preproc *pp,
                int total, int batch, int c, int h, int w, int threads,
                int (*visit)(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err), void *ud,
                struct qt_err *err) {
    if (cut < wk->cut)
        qt_walk_clear(wk);
    struct qt_walk nx = {0};
    nx.st.fd = -1;
    int rc = 0;
    if (walk_exec(wk, batch < total ? batch : total, threads, err))
        return err->code;
    /* the values crossing the new cut */
    const struct qt_graph *g = wk->g;
    int *last = malloc(sizeof(int) * (size_t)(g->nv + 1)), *made = malloc(sizeof(int) * (size_t)(g->nv + 1));
    nx.fname = calloc((size_t)g->nv + 1, sizeof(char *));
    nx.fper = calloc((size_t)g->nv + 1, sizeof(int64_t));
    if (!last || !made || !nx.fname || !nx.fper) {
        rc = qt_errf(err, QT_ENOMEM, "out of memory");
        goto out;
    }
    for (int v = 0; v < g->nv; v++)
        last[v] = made[v] = -1;
    for (int i = 0; i < g->ninputs; i++)
        made[g->inputs[i]] = 0;
    for (int s = 0; s < wk->x->nsteps; s++) {
        const struct qt_node *n = &g->n[wk->x->steps[s]];
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] >= 0)
                last[n->in[j]] = s;
        for (int j = 0; j < n->nout; j++)
            if (n->out[j] >= 0)
                made[n->out[j]] = s + 1;
    }
    for (int i = 0; i < g->noutputs; i++)
        last[g->outputs[i]] = wk->x->nsteps;
    int64_t per_img = 0;
    for (int v = 0; keep && cut > 0 && v < g->nv; v++) /* at 0: the images */
        if (made[v] >= 0 && made[v] <= cut && last[v] >= cut && !wk->x->isconst[v]) {
            nx.fname[nx.nf] = qt_strdup(g->v[v].name);
            nx.fper[nx.nf] = (int64_t)wk->x->t[v].nbytes / wk->cur;
            if (!nx.fname[nx.nf++]) {
                rc = qt_errf(err, QT_ENOMEM, "out of memory");
                goto out;
            }
            per_img += nx.fper[nx.nf - 1];
        }
    if (qt_held_new(&nx.st, (size_t)(per_img * total), wk->max_memory > 0 && per_img * total > wk->max_memory, err))
        goto out;
    for (int done = 0; done < total;) {
        int nb = total - done < batch ? total - done : batch;
        if (walk_exec(wk, nb, threads, err))
            goto out;
        struct qt_exec *x = wk->x;
        if (wk->cut == 0) {
            if (qt_dataset_load(ds, pp, done, nb, c, h, w, qt_exec_input(x, 0), NULL, threads, 0, err))
                goto out;
        } else {
            int64_t base = 0;
            for (int i = 0; i < wk->nf; i++) {
                int v = qt_graph_find(wk->g, wk->fname[i]);
                if (v < 0 || (int64_t)x->t[v].nbytes != wk->fper[i] * nb) {
                    rc = qt_errf(err, QT_EFAIL, "internal error: kept value '%s' not in the graph", wk->fname[i]);
                    goto out;
                }
                if (walk_io(&wk->st, base + wk->fper[i] * done, x->t[v].data, wk->fper[i] * nb, 0, err))
                    goto out;
                base += wk->fper[i] * total;
            }
        }
        for (int s = wk->cut; s < cut; s++) {
            const struct qt_node *n = &wk->g->n[x->steps[s]];
            if (!x->skip[x->steps[s]] && n->op->fwd(x, n, err))
                goto out;
        }
        if (visit && visit(x, done, nb, ud, err))
            goto out;
        int64_t base = 0;
        for (int i = 0; i < nx.nf; i++) {
            int v = qt_graph_find(wk->g, nx.fname[i]);
            if (walk_io(&nx.st, base + nx.fper[i] * done, x->t[v].data, nx.fper[i] * nb, 1, err))
                goto out;
            base += nx.fper[i] * total;
        }
        done += nb;
    }
    if (!keep)
        goto out;
    qt_walk_clear(wk);
    wk->nf = nx.nf;
    wk->fname = nx.fname;
    wk->fper = nx.fper;
    wk->st = nx.st;
    wk->cut = cut;
    nx.fname = NULL;
    nx.fper = NULL;
    nx.nf = 0;
    nx.st.p = NULL;
    nx.st.fd = -1;
out:
    /* the executor's activations are not kept between walks (the next
     * walk through this graph plans again) */
    qt_exec_free(wk->x);
    wk->x = NULL;
    wk->cur = 0;
    qt_walk_clear(&nx);
    free(last);
    free(made);
    return rc ? rc : err->code;
}


int qt_walk_to(struct qt_walk *wk, int cut, struct qt_dataset *ds, const struct qt_preproc *pp, int total, int batch,
               int c, int h, int w, int threads,
               int (*visit)(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err), void *ud,
               struct qt_err *err) {
    return walk(wk, cut, 1, ds, pp, total, batch, c, h, w, threads, visit, ud, err);
}

int qt_walk_peek(struct qt_walk *wk, int cut, struct qt_dataset *ds, const struct qt_preproc *pp, int total,
                 int batch, int c, int h, int w, int threads,
                 int (*visit)(struct qt_exec *x, int done, int nb, void *ud, struct qt_err *err), void *ud,
                 struct qt_err *err) {
    return walk(wk, cut, 0, ds, pp, total, batch, c, h, w, threads, visit, ud, err);
}
