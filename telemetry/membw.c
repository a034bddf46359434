/* membw.c - host memory read bandwidth for the CPU roofline meter.
 *
 * The calling thread is worker 0 and the others are started here, so a
 * machine that cannot start a thread still gets a (one-thread) figure. Every
 * worker first writes its own slice of the buffer (the kernel maps pages on
 * first touch, and on a NUMA machine near the CPU that touched them); the
 * buffer asks for transparent huge pages, because 4 KiB faults on 256 MiB
 * cost more than the measurement itself (over a second in a Firecracker
 * VM). Passes are fenced by barriers; a pass lasts from the first worker's
 * start to the last worker's end, so a worker descheduled between the
 * barrier and its clock read (more threads than cores) cannot shorten it.
 *
 * A worker reads with eight independent 64-bit sums: enough loads in flight
 * that one core's read rate is set by the memory, not by an addition chain,
 * and a result the compiler cannot drop. */
#include "membw.h"

#include "clock.h"
#include "xdg.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MEMBW_CHUNK ((size_t)1 << 20) /* read unit between cancel polls */
#define MEMBW_MAX_THREADS 256
#define MEMBW_MAX_PASSES 64
#define MEMBW_ALIGN ((size_t)2 << 20) /* a huge page */

struct membw_job {
    const uint64_t *buf;      /* owned by membw_measure; WORDS words */
    size_t words;
    int n;                    /* threads taking part, worker 0 included */
    int passes;
    const atomic_int *cancel; /* borrowed; may be NULL */
    pthread_barrier_t bar;
    double *t0, *t1;          /* (n) this pass's start and end per worker, seconds */
    double pass_s[MEMBW_MAX_PASSES]; /* each pass's length; written by worker 0 only */
    uint64_t *sums;           /* (n) each worker's sum, so the reads are not dead */

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

/* Worker IDX's word range of the buffer. */
static void slice(const struct membw_job *j, int idx, size_t *lo, size_t *hi)
{
    *lo = j->words / (size_t)j->n * (size_t)idx;
    *hi = idx == j->n - 1 ? j->words : j->words / (size_t)j->n * (size_t)(idx + 1);
}

/* The sum of words [LO, HI); the tail past a multiple of eight is added
 * one by one. */
static uint64_t read_words(const uint64_t *w, size_t lo, size_t hi)
{
    uint64_t s[8] = {0};
    size_t i = lo;
    for (; i + 8 <= hi; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += w[i + (size_t)k];
    for (; i < hi; i++)
        s[0] += w[i];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static void run_worker(struct membw_job *j, int idx)
{
    const size_t chunk = MEMBW_CHUNK / sizeof(uint64_t);
    size_t lo, hi;
    slice(j, idx, &lo, &hi);
    uint64_t *mine = (uint64_t *)j->buf; /* the first touch writes: our own buffer */
    for (size_t o = lo; o < hi && !cancelled(j); o += chunk) {
        size_t c = hi - o < chunk ? hi - o : chunk;
        for (size_t i = 0; i < c; i++)
            mine[o + i] = (uint64_t)(o + i) * 0x9E3779B97F4A7C15u;
    }
    uint64_t sum = 0;
    for (int r = 0; r < j->passes; r++) {
        pthread_barrier_wait(&j->bar);
        j->t0[idx] = kv_now_s();
        for (size_t o = lo; o < hi && !cancelled(j); o += chunk)
            sum += read_words(j->buf, o, hi - o < chunk ? hi : o + chunk);
        j->t1[idx] = kv_now_s();
        pthread_barrier_wait(&j->bar); /* also orders the other workers' times before the reads below */
        if (idx == 0) {
            double a = j->t0[0], b = j->t1[0];
            for (int i = 1; i < j->n; i++) {
                a = j->t0[i] < a ? j->t0[i] : a;
                b = j->t1[i] > b ? j->t1[i] : b;
            }
            j->pass_s[r] = b - a;
        }
        /* Nobody may write t0 for the next pass before worker 0 has read
         * this one's: the next pass's first barrier waits for worker 0. */
    }
    j->sums[idx] = sum;
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* OUT from the passes' lengths: the median pass's rate, and the slowest
 * and fastest. False when a pass has no length (a timer that did not move). */
static bool figure_of(double *pass_s, int passes, size_t bytes, struct membw_figure *out)
{
    qsort(pass_s, (size_t)passes, sizeof *pass_s, cmp_double);
    if (!(pass_s[0] > 0))
        return false;
    double mid = passes % 2 ? pass_s[passes / 2] : (pass_s[passes / 2 - 1] + pass_s[passes / 2]) / 2;
    *out = (struct membw_figure){.median = (double)bytes / mid,
                                 .min = (double)bytes / pass_s[passes - 1],
                                 .max = (double)bytes / pass_s[0],
                                 .passes = passes};
    return true;
}

bool membw_measure(size_t bytes, int n_threads, int passes, const atomic_int *cancel,
                   struct membw_figure *out)
{
    *out = (struct membw_figure){0};
    if (n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = nc > 0 ? (int)nc : 1;
    }
    if (n_threads > MEMBW_MAX_THREADS)
        n_threads = MEMBW_MAX_THREADS;
    passes = passes < 1 ? 1 : passes > MEMBW_MAX_PASSES ? MEMBW_MAX_PASSES : passes;
    size_t words = bytes / sizeof(uint64_t);
    if (words < 8)
        return false;
    struct membw_job *j = calloc(1, sizeof *j);
    void *buf = NULL;
    if (posix_memalign(&buf, MEMBW_ALIGN, words * sizeof(uint64_t)) != 0)
        buf = NULL;
    struct membw_worker *ws = calloc((size_t)n_threads, sizeof *ws);
    double *t0 = calloc((size_t)n_threads, sizeof *t0), *t1 = calloc((size_t)n_threads, sizeof *t1);
    uint64_t *sums = calloc((size_t)n_threads, sizeof *sums);
    if (!j || !buf || !ws || !t0 || !t1 || !sums) {
        free(j);
        free(buf);
        free(ws);
        free(t0);
        free(t1);
        free(sums);
        return false;
    }
    *j = (struct membw_job){.buf = buf, .words = words, .passes = passes, .cancel = cancel,
                            .t0 = t0, .t1 = t1, .sums = sums};
#ifdef MADV_HUGEPAGE
    madvise(buf, words * sizeof(uint64_t), MADV_HUGEPAGE); /* a hint: failure only costs time */
#endif
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);

    int started = 1; /* worker 0 is this thread */
    for (int i = 1; i < n_threads; i++) {
        ws[i] = (struct membw_worker){.j = j, .idx = i};
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0)
            break;
        started++;
    }
    pthread_mutex_lock(&j->mu);
    j->n = started;
    pthread_barrier_init(&j->bar, NULL, (unsigned)started);
    j->go = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);

    run_worker(j, 0);
    for (int i = 1; i < started; i++)
        pthread_join(ws[i].th, NULL);

    /* The sums go somewhere observable, so no compiler can drop the reads. */
    volatile uint64_t sink = 0;
    for (int i = 0; i < started; i++)
        sink ^= sums[i];
    (void)sink;

    bool ok = !cancelled(j) && figure_of(j->pass_s, passes, words * sizeof(uint64_t), out);
    pthread_barrier_destroy(&j->bar);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
    free(buf);
    free(ws);
    free(t0);
    free(t1);
    free(sums);
    return ok;
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
    return (size_t)snprintf(buf, cap, "%s/membw-read", dir) < cap;
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
