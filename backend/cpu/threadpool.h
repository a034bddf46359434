/* threadpool.h - a fixed pool of worker threads for the CPU backend.
 *
 * threadpool_run hands one function to every thread (the caller's included)
 * and returns when all have finished; work is split by the thread index. The
 * workers spin briefly before sleeping, so back-to-back calls in a decode step
 * do not pay a wake-up each.
 *
 * Thread safety: one caller at a time.
 */
#ifndef KVCHAT_THREADPOOL_H
#define KVCHAT_THREADPOOL_H

struct threadpool;

typedef void (*threadpool_fn)(void *arg, int ith, int nth);

/* N_THREADS total, the caller included; NULL when threads cannot be made. */
struct threadpool *threadpool_new(int n_threads);
void threadpool_free(struct threadpool *p); /* NULL is a no-op */
int threadpool_size(const struct threadpool *p);
/* Calls FN(ARG, ith, nth) on every thread, ith in 0..nth-1; returns when all
 * calls have returned. */
void threadpool_run(struct threadpool *p, threadpool_fn fn, void *arg);

#endif
