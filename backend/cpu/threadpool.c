/* threadpool.c - the CPU backend's worker threads.
 *
 * A decode step makes a few hundred short parallel calls (one per matrix
 * product or attention pass), so the cost that matters is dispatch latency,
 * not throughput. Workers therefore wait for the next call by spinning on a
 * generation counter for a while, and only then sleep on a condition
 * variable; the caller wakes sleepers only when some are actually asleep.
 * Counters written by different threads live on different cache lines, and
 * a call writes no counter that every thread touches: each worker records
 * its claim and its finish on a line of its own, which the caller only
 * reads.
 *
 * Each share (ith) of a call is claimed before it is run, by its worker or,
 * once the caller has finished its own share, by the caller. On a machine
 * with more runnable threads than cores a worker may be off the CPU for a
 * whole time slice; without this, every one of those few hundred calls
 * would wait for it (measured: two threads three times slower than one on
 * a busy two-core machine). Every share still runs exactly once, with its
 * own ith, so results do not depend on who ran it.
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* A waiting worker first spins (pause) long enough to bridge the gap
 * between the back-to-back calls of one forward pass (microseconds), then
 * yields the core a number of times -- on a machine with more runnable
 * threads than cores, spinning would steal time from the very thread it
 * waits for -- and only then sleeps, so an idle chat burns nothing. */
#define SPIN_ITERS 4096
#define YIELD_ITERS 256

#define CACHE_LINE 64

struct worker {
    struct threadpool *pool; /* borrowed */
    pthread_t thread;
    int ith;
    /* Generation for which share ith was last claimed (by anyone). Only
     * moves forward. */
    _Alignas(CACHE_LINE) atomic_uint claimed;
    /* Generation whose share this worker last finished. On the same line
     * as claimed: the worker writes both, the caller only reads them, so a
     * call moves this line to the caller once, and no counter shared by
     * every thread has to be reset and bumped per call. */
    atomic_uint done;
};

struct threadpool {
    int n_threads; /* the caller included */
    struct worker *workers; /* owned, n_threads - 1 */

    /* The call being run; written by the caller before the generation bump. */
    threadpool_fn fn;
    void *arg;

    _Alignas(CACHE_LINE) atomic_uint generation; /* bumped once per call */
    _Alignas(CACHE_LINE) atomic_int n_sleeping;  /* workers in (or entering) cond wait */
    atomic_bool stop;

    pthread_mutex_t mutex;
    pthread_cond_t cond;
};

/* Waits until the generation differs from SEEN (or stop); returns it. */
static unsigned wait_for_work(struct threadpool *p, unsigned seen)
{
    for (int i = 0; i < SPIN_ITERS + YIELD_ITERS; i++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&p->stop, memory_order_relaxed))
            return g;
        if (i < SPIN_ITERS)
            CPU_RELAX();
        else
            sched_yield();
    }
    pthread_mutex_lock(&p->mutex);
    /* Counting ourselves before re-checking (both seq_cst) means the caller
     * either sees us asleep and signals, or we see its new generation. */
    atomic_fetch_add(&p->n_sleeping, 1);
    unsigned g;
    while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cond, &p->mutex);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mutex);
    return g;
}

/* True when A is at or after B, allowing for wrap-around. */
static bool gen_reached(unsigned a, unsigned b)
{
    return (int)(a - b) >= 0;
}

/* Claims share W->ith for generation G; false when someone already has. A
 * claim from a value before G can only succeed while G is still running (G
 * cannot finish with the share unclaimed), so fn and arg are G's. */
static bool claim(struct worker *w, unsigned g)
{
    unsigned cur = atomic_load(&w->claimed);
    while (!gen_reached(cur, g))
        if (atomic_compare_exchange_weak(&w->claimed, &cur, g))
            return true;
    return false;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct threadpool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_work(p, seen);
        if (atomic_load(&p->stop))
            break;
        if (!claim(w, seen))
            continue; /* the caller ran our share while we were away */
        p->fn(p->arg, w->ith, p->n_threads);
        atomic_store_explicit(&w->done, seen, memory_order_release);
    }
    return NULL;
}

struct threadpool *threadpool_new(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    struct threadpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    atomic_init(&p->generation, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->stop, false);
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            threadpool_free(p);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i + 1;
            atomic_init(&p->workers[i].claimed, 0);
            atomic_init(&p->workers[i].done, 0);
            if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
                /* Only the threads made so far are joined. */
                p->n_threads = i + 1;
                threadpool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void threadpool_free(struct threadpool *p)
{
    if (!p)
        return;
    if (p->workers) {
        pthread_mutex_lock(&p->mutex);
        atomic_store(&p->stop, true);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->mutex);
        for (int i = 0; i < p->n_threads - 1; i++)
            pthread_join(p->workers[i].thread, NULL);
        free(p->workers);
    }
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->cond);
    free(p);
}

int threadpool_size(const struct threadpool *p)
{
    return p ? p->n_threads : 1;
}

void threadpool_run(struct threadpool *p, threadpool_fn fn, void *arg)
{
    if (p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    /* seq_cst: publishes fn/arg, and pairs with n_sleeping. */
    unsigned g = atomic_fetch_add(&p->generation, 1) + 1;
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mutex);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->mutex);
    }
    fn(arg, 0, p->n_threads);
    /* Shares whose worker has not turned up yet are run here; then the
     * caller waits for the shares the workers took. */
    for (int i = 0; i < p->n_threads - 1; i++) {
        struct worker *w = &p->workers[i];
        if (claim(w, g)) {
            fn(arg, w->ith, p->n_threads);
            continue;
        }
        for (unsigned spins = 0;
             atomic_load_explicit(&w->done, memory_order_acquire) != g; spins++) {
            /* The worker is mid-share: if it was descheduled, give it the
             * core. */
            if ((spins & 255) == 255)
                sched_yield();
            else
                CPU_RELAX();
        }
    }
}
