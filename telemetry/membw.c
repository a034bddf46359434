/* membw.c - host memory copy bandwidth for the CPU roofline meter.
 *
 * The calling thread is worker 0 and the others are started here, so a
 * machine that cannot start a thread still gets a (one-thread) figure. Every
 * worker first touches its own slice of both buffers (the kernel maps pages
 * on first touch, and on a NUMA machine near the CPU that touched them);
 * the buffers ask for transparent huge pages, because 4 KiB faults on
 * 256 MiB cost more than the measurement itself (over a second in a
 * Firecracker VM). Passes are fenced by barriers; a pass lasts from the
 * first worker's start to the last worker's end, so a worker descheduled
 * between the barrier and its clock read (more threads than cores) cannot
 * shorten it. */
#include "membw.h"

#include "clock.h"
#include "xdg.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MEMBW_CHUNK ((size_t)1 << 20) /* copy unit between cancel polls */
#define MEMBW_MAX_THREADS 256
#define MEMBW_ALIGN ((size_t)2 << 20) /* a huge page */

struct membw_job {
    unsigned char *src, *dst; /* owned by membw_measure; HALF bytes each */
    size_t half;
    int n;                    /* threads taking part, worker 0 included */
    int reps;
    const atomic_int *cancel; /* borrowed; may be NULL */
    pthread_barrier_t bar;
    double *t0, *t1;          /* (n) this pass's start and end per worker, seconds */
    double best_s;            /* fastest pass, seconds; written by worker 0 only */

    /* Start gate: workers wait here until N is final, so a thread that
     * failed to start never leaves the others waiting at a barrier sized
     * for it. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go;
};

struct membw_worker {
    struct membw_job *j;
    int idx;
    pthread_t th;
};

static int cancelled(const struct membw_job *j)
{
    return j->cancel && atomic_load_explicit(j->cancel, memory_order_relaxed);
}

/* Worker IDX's byte range of each buffer. */
static void slice(const struct membw_job *j, int idx, size_t *lo, size_t *hi)
{
    *lo = j->half / (size_t)j->n * (size_t)idx;
    *hi = idx == j->n - 1 ? j->half : j->half / (size_t)j->n * (size_t)(idx + 1);
}

static void run_worker(struct membw_job *j, int idx)
{
    size_t lo, hi;
    slice(j, idx, &lo, &hi);
    for (size_t o = lo; o < hi && !cancelled(j); o += MEMBW_CHUNK) {
        size_t c = hi - o < MEMBW_CHUNK ? hi - o : MEMBW_CHUNK;
        memset(j->src + o, (int)(o / MEMBW_CHUNK) & 0xff, c);
        memset(j->dst + o, 0, c);
    }
    for (int r = 0; r < j->reps; r++) {
        pthread_barrier_wait(&j->bar);
        j->t0[idx] = kv_now_s();
        for (size_t o = lo; o < hi && !cancelled(j); o += MEMBW_CHUNK) {
            size_t c = hi - o < MEMBW_CHUNK ? hi - o : MEMBW_CHUNK;
            memcpy(j->dst + o, j->src + o, c);
        }
        j->t1[idx] = kv_now_s();
        pthread_barrier_wait(&j->bar); /* also orders the other workers' times before the reads below */
        if (idx == 0) {
            double a = j->t0[0], b = j->t1[0];
            for (int i = 1; i < j->n; i++) {
                a = j->t0[i] < a ? j->t0[i] : a;
                b = j->t1[i] > b ? j->t1[i] : b;
            }
            if (b > a && (j->best_s <= 0 || b - a < j->best_s))
                j->best_s = b - a;
        }
        /* Nobody may write t0 for the next pass before worker 0 has read
         * this one's: the next pass's first barrier waits for worker 0. */
    }
}

static void *worker_main(void *arg)
{
    struct membw_worker *w = arg;
    struct membw_job *j = w->j;
    pthread_mutex_lock(&j->mu);
    while (!j->go)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    run_worker(j, w->idx);
    return NULL;
}

double membw_measure(size_t bytes, int n_threads, int reps, const atomic_int *cancel)
{
    if (n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = nc > 0 ? (int)nc : 1;
    }
    if (n_threads > MEMBW_MAX_THREADS)
        n_threads = MEMBW_MAX_THREADS;
    if (reps < 1)
        reps = 1;
    size_t half = bytes / 2 / 64 * 64;
    if (half < 64)
        return 0;
    struct membw_job j = {.half = half, .reps = reps, .cancel = cancel};
    void *src = NULL, *dst = NULL;
    if (posix_memalign(&src, MEMBW_ALIGN, half) != 0)
        src = NULL;
    if (posix_memalign(&dst, MEMBW_ALIGN, half) != 0)
        dst = NULL;
    j.src = src;
    j.dst = dst;
    j.t0 = calloc((size_t)n_threads, sizeof *j.t0);
    j.t1 = calloc((size_t)n_threads, sizeof *j.t1);
    struct membw_worker *ws = calloc((size_t)n_threads, sizeof *ws);
    if (!j.src || !j.dst || !j.t0 || !j.t1 || !ws) {
        free(j.src);
        free(j.dst);
        free(j.t0);
        free(j.t1);
        free(ws);
        return 0;
    }
#ifdef MADV_HUGEPAGE
    madvise(j.src, half, MADV_HUGEPAGE); /* a hint: failure only costs time */
    madvise(j.dst, half, MADV_HUGEPAGE);
#endif
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);

    int started = 1; /* worker 0 is this thread */
    for (int i = 1; i < n_threads; i++) {
        ws[i] = (struct membw_worker){.j = &j, .idx = i};
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0)
            break;
        started++;
    }
    pthread_mutex_lock(&j.mu);
    j.n = started;
    pthread_barrier_init(&j.bar, NULL, (unsigned)started);
    j.go = 1;
    pthread_cond_broadcast(&j.cv);
    pthread_mutex_unlock(&j.mu);

    run_worker(&j, 0);
    for (int i = 1; i < started; i++)
        pthread_join(ws[i].th, NULL);

    /* Read the copies back so no compiler can treat them as dead stores. */
    volatile unsigned char sink = 0;
    for (size_t o = 0; o < half; o += MEMBW_CHUNK)
        sink ^= j.dst[o];
    (void)sink;

    double best_s = cancelled(&j) ? 0 : j.best_s;
    pthread_barrier_destroy(&j.bar);
    pthread_cond_destroy(&j.cv);
    pthread_mutex_destroy(&j.mu);
    free(j.src);
    free(j.dst);
    free(j.t0);
    free(j.t1);
    free(ws);
    return best_s > 0 ? 2.0 * (double)half / best_s : 0;
}

/* The cache file's path into BUF; false without XDG_CACHE_HOME or HOME. */
static bool cache_path(char *buf, size_t cap, bool make_dir)
{
    char dir[4096];
    if (kv_xdg_dir(KV_XDG_CACHE, dir, sizeof dir) != 0)
        return false;
    if (make_dir) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = 0;
            mkdir(parent, 0700);
        }
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return false;
    }
    return (size_t)snprintf(buf, cap, "%s/membw", dir) < cap;
}

double membw_cache_get(const char *cpu, int n_threads)
{
    char path[4200], line[512];
    if (!cache_path(path, sizeof path, false))
        return 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    double found = 0;
    while (fgets(line, sizeof line, f)) {
        char *tab1 = strchr(line, '\t');
        char *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        if (!tab2)
            continue;
        *tab1 = 0;
        if (strcmp(line, cpu) != 0 || atoi(tab1 + 1) != n_threads)
            continue;
        double v = strtod(tab2 + 1, NULL);
        if (isfinite(v) && v > 0)
            found = v;
    }
    fclose(f);
    return found;
}

void membw_cache_put(const char *cpu, int n_threads, double bytes_per_s)
{
    char path[4200];
    if (!(bytes_per_s > 0) || strchr(cpu, '\t') || strchr(cpu, '\n') ||
        !cache_path(path, sizeof path, true))
        return;
    /* appended: the last line for a CPU and thread count wins on reading */
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    fprintf(f, "%s\t%d\t%.0f\n", cpu, n_threads, bytes_per_s);
    fclose(f);
}
