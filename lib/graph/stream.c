/* stream.c: the one loop over an image folder (calibration, bias
 * correction, finetune's capture, eval, the per-layer report, qat's
 * validation; see engine.h)
 * and qt_run_images, that loop through a graph with per-node hooks. */
#include "engine.h"

#include <string.h>

int qt_stream_images(const struct qt_stream *s, struct qt_err *err) {
    size_t img = (size_t)s->c * s->h * s->w;
    for (int done = 0; done < s->total;) {
        int nb = s->total - done < s->batch ? s->total - done : s->batch;
        float *in = s->input(s->ud, nb, err);
        if (!in)
            return err->code;
        int rc = qt_dataset_load(s->ds, s->pp, done, nb, s->c, s->h, s->w, in, s->labels, s->threads, 0, err);
        if (rc)
            return rc;
        if (s->pad && nb < s->batch) /* the extra rows are ignored */
            memset(in + (size_t)nb * img, 0, sizeof(float) * (size_t)(s->batch - nb) * img);
        if ((rc = s->run(s->ud, in, s->labels, done, nb, err)))
            return rc;
        done += nb;
        if (s->progress)
            s->progress(s->progress_ud, done, s->total);
    }
    return 0;
}

struct image_run {
    struct qt_graph *g;
    const struct qt_image_run *r;
    struct qt_exec *x;
    int cur; /* x's batch */
};

/* an executor per batch size (the last batch has its own) */
static float *run_input(void *ud, int nb, struct qt_err *err) {
    struct image_run *ir = ud;
    if (nb != ir->cur) {
        qt_exec_free(ir->x);
        ir->x = NULL;
        ir->cur = 0;
        if (qt_exec_new_flags(&ir->x, ir->g, nb, ir->r->threads, ir->r->exec_flags, err))
            return NULL;
        ir->x->after_node = ir->r->after_node;
        ir->x->after_ud = ir->r->ud;
        ir->cur = nb;
    }
    return qt_exec_input(ir->x, 0);
}

static int run_batch(void *ud, float *in, const int *labels, int done, int nb, struct qt_err *err) {
    struct image_run *ir = ud;
    (void)in;
    (void)labels;
    int rc = ir->r->before_run ? ir->r->before_run(ir->x, done, nb, ir->r->ud, err) : 0;
    if (rc)
        return rc;
    rc = qt_exec_run(ir->x, err);
    return rc == QT_HOOK_STOP ? 0 : rc;
}

int qt_run_images(struct qt_graph *g, struct qt_dataset *ds, const struct qt_image_run *r, struct qt_err *err) {
    struct image_run ir = {g, r, NULL, 0};
    struct qt_stream s = {.ds = ds, .pp = r->pp, .c = r->c, .h = r->h, .w = r->w, .total = r->total,
                          .batch = r->batch, .threads = r->threads, .input = run_input, .run = run_batch,
                          .ud = &ir, .progress = r->progress, .progress_ud = r->progress_ud};
    int rc = qt_stream_images(&s, err);
    qt_exec_free(ir.x);
    return rc;
}
