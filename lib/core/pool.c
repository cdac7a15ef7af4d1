/* pool.c: a fixed pool of worker threads running one parallel-for at a time.
 *
 * qt_pool_run(p, ntasks, fn, arg) splits [0, ntasks) into one contiguous
 * chunk per thread; the caller's thread takes chunk 0. Chunk boundaries
 * depend on the thread count, so every fn must compute each task the same
 * way whatever chunk it lands in: that is what keeps results byte-identical
 * at any --threads. */
#include "engine.h"

#include <pthread.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Before sleeping on a condition variable, a worker waiting for the next
 * job and the caller waiting for the workers spin this many times: a model
 * runs dozens of short parallel loops per image, and a wake-up through the
 * kernel costs more than many of them. */
#define SPIN 4000

struct qt_pool {
    int n;                 /* threads including the caller */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned gen;          /* bumps per job */
    int pending;           /* workers still running the current job */
    int quit;
    qt_task_fn fn;
    void *arg;
    int64_t ntasks;
};

struct worker {
    struct qt_pool *p;
    int tid;
};

static void chunk(int64_t ntasks, int n, int tid, int64_t *i0, int64_t *i1) {
    int64_t q = ntasks / n, r = ntasks % n;
    *i0 = tid * q + (tid < r ? tid : r);
    *i1 = *i0 + q + (tid < r ? 1 : 0);
}

static void *worker_main(void *a) {
    struct worker *w = a;
    struct qt_pool *p = w->p;
    int tid = w->tid;
    unsigned seen = 0;
    free(w);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == seen) {
            pthread_mutex_unlock(&p->mu);
            for (int s = 0; s < SPIN && __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == seen; s++)
                cpu_relax();
            pthread_mutex_lock(&p->mu);
        }
        while (!p->quit && __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == seen)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit)
            break;
        seen = p->gen;
        qt_task_fn fn = p->fn;
        void *arg = p->arg;
        int64_t i0, i1;
        chunk(p->ntasks, p->n, tid, &i0, &i1);
        pthread_mutex_unlock(&p->mu);
        if (i1 > i0)
            fn(arg, i0, i1, tid);
        pthread_mutex_lock(&p->mu);
        if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_ACQ_REL) == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int qt_pool_new(struct qt_pool **out, int nthreads, struct qt_err *err) {
    struct qt_pool *p = calloc(1, sizeof *p);
    *out = NULL;
    if (nthreads < 1)
        nthreads = 1;
    if (!p)
        return qt_errf(err, QT_ENOMEM, "out of memory creating %d threads", nthreads);
    p->n = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->th = calloc((size_t)nthreads, sizeof *p->th);
    if (!p->th) {
        qt_pool_free(p);
        return qt_errf(err, QT_ENOMEM, "out of memory creating %d threads", nthreads);
    }
    for (int i = 1; i < nthreads; i++) {
        struct worker *w = malloc(sizeof *w);
        if (w) { /* before the thread starts: it reads them at once */
            w->p = p;
            w->tid = i;
        }
        if (!w || pthread_create(&p->th[i], NULL, worker_main, w)) {
            free(w);
            p->n = i; /* threads started so far */
            qt_pool_free(p);
            return qt_errf(err, QT_EFAIL, "cannot start thread %d of %d", i, nthreads);
        }
    }
    *out = p;
    return 0;
}

void qt_pool_free(struct qt_pool *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; p->th && i < p->n; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}

int qt_pool_threads(const struct qt_pool *p) {
    return p ? p->n : 1;
}

void qt_pool_run(struct qt_pool *p, int64_t ntasks, qt_task_fn fn, void *arg) {
    if (ntasks <= 0)
        return;
    if (!p || p->n == 1 || ntasks == 1) {
        fn(arg, 0, ntasks, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->ntasks = ntasks;
    __atomic_store_n(&p->pending, p->n - 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    int64_t i0, i1;
    chunk(ntasks, p->n, 0, &i0, &i1);
    if (i1 > i0)
        fn(arg, i0, i1, 0);
    for (int s = 0; s < SPIN && __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) > 0; s++)
        cpu_relax();
    pthread_mutex_lock(&p->mu);
    while (__atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
