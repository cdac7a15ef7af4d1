/* pool.c: a fixed pool of worker threads running one parallel-for at a time.
 *
 * qt_pool_run(p, ntasks, fn, arg) hands out [0, ntasks) in small contiguous
 * grains that threads claim with an atomic counter (the caller's thread takes
 * part), so uneven tasks (a 256-channel block next to a 128-channel one) do
 * not leave a thread idle. Which thread runs a task depends on timing, so
 * every fn must compute each task the same way whatever thread and grain it
 * lands in: that is what keeps results byte-identical at any --threads.
 *
 * Wake-up: a new job bumps the job number in `state`; workers spin on it
 * for a short while (a batch-1 forward pass starts a job per node, tens of
 * microseconds apart) before sleeping on a condition variable.
 *
 * The caller does not wait for workers that have not joined: a worker joins
 * a job by raising its count in `state` while the job is open; the caller
 * closes the job once it has drained the tasks itself and then waits only
 * for the workers that joined (as ONNX Runtime's pool runs the shards no
 * worker has started). On a loaded machine a descheduled worker so no
 * longer stalls every node by a scheduler time slice. */
#include "engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define SPIN_ITERS 20000 /* pause iterations (~100 us) before sleeping */
#define CLOSED (1ull << 31) /* no worker may join the job any more */
#define ACTIVE (CLOSED - 1) /* workers that joined and have not left */

struct qt_pool {
    int n;                 /* threads including the caller */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    _Atomic uint64_t state; /* job number << 32 | CLOSED | workers in the job */
    _Atomic int64_t next;  /* first unclaimed task */
    int sleepers;          /* workers waiting on `go` (under mu) */
    _Atomic int quit;
    qt_task_fn fn;
    void *arg;
    int64_t ntasks, grain;
};

struct worker {
    struct qt_pool *p;
    int tid;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims and runs grains until none is left. */
static void drain(struct qt_pool *p, int tid) {
    for (;;) {
        int64_t i0 = atomic_fetch_add_explicit(&p->next, p->grain, memory_order_relaxed);
        if (i0 >= p->ntasks)
            return;
        int64_t i1 = i0 + p->grain < p->ntasks ? i0 + p->grain : p->ntasks;
        p->fn(p->arg, i0, i1, tid);
    }
}

/* Joins the job of state s, if still open; 0 when it is closed or over. */
static int join(struct qt_pool *p, uint64_t s) {
    uint64_t job = s >> 32;
    while (!(s & CLOSED) && (s >> 32) == job)
        if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acquire,
                                                  memory_order_acquire))
            return 1;
    return 0;
}

static void *worker_main(void *a) {
    struct worker *w = a;
    struct qt_pool *p = w->p;
    int tid = w->tid;
    uint64_t seen = 0; /* the last job this worker looked at */
    free(w);
    for (;;) {
        uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
        for (int i = 0; (s >> 32) == seen && i < SPIN_ITERS; i++) {
            cpu_relax();
            s = atomic_load_explicit(&p->state, memory_order_acquire);
        }
        if ((s >> 32) == seen) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (!atomic_load(&p->quit) && ((s = atomic_load_explicit(&p->state, memory_order_acquire)) >> 32) == seen)
                pthread_cond_wait(&p->go, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit))
            return NULL;
        seen = s >> 32;
        if (!join(p, s))
            continue;
        drain(p, tid);
        uint64_t prev = atomic_fetch_sub_explicit(&p->state, 1, memory_order_acq_rel);
        if ((prev & ACTIVE) == 1 && (prev & CLOSED)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

int qt_pool_new(struct qt_pool **out, int nthreads, struct qt_err *err) {
    struct qt_pool *p = calloc(1, sizeof *p);
    *out = NULL;
    if (nthreads < 1)
        nthreads = 1;
    if (!p)
        return qt_errf(err, QT_ENOMEM, "out of memory creating %d threads", nthreads);
    p->n = nthreads;
    atomic_init(&p->state, CLOSED);
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
    atomic_store(&p->quit, 1);
    atomic_fetch_add(&p->state, 1ull << 32);
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
    /* grains: about 4 per thread, so a slow grain can be balanced */
    int64_t grain = ntasks / ((int64_t)p->n * 4);
    p->fn = fn;
    p->arg = arg;
    p->ntasks = ntasks;
    p->grain = grain > 0 ? grain : 1;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    /* open the next job (the last one is closed and has no worker left) */
    uint64_t job = (atomic_load_explicit(&p->state, memory_order_relaxed) >> 32) + 1;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->state, job << 32, memory_order_release);
    if (p->sleepers)
        pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    /* close it; wait for the workers that joined */
    uint64_t s = atomic_fetch_or_explicit(&p->state, CLOSED, memory_order_acq_rel);
    for (int i = 0; (s & ACTIVE) && i < SPIN_ITERS; i++) {
        cpu_relax();
        s = atomic_load_explicit(&p->state, memory_order_acquire);
    }
    if (s & ACTIVE) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->state, memory_order_acquire) & ACTIVE)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
