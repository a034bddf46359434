/* trace.c - the recorded-readings row of the GPU vendor table: a file of
 * readings taken on a real GPU, played back as if a driver reported them, so
 * the meters, the inspector and their tests see realistic figures (an H200
 * at 600 W, a neighbour holding 40 GiB, a sample the driver missed) on a
 * machine with no GPU. Chosen by naming the file in KVCHAT_GPU_TRACE; first
 * in the table, so a trace wins over a real driver.
 *
 * The file is JSON lines, one reading per line; '#' lines and blank lines
 * are skipped. Every key is optional, and a missing key or null is that
 * reading missing (n/a in that second, as when NVML fails):
 *
 *   {"t": 3, "name": "NVIDIA H200", "bandwidth": 4.8e12,
 *    "mem_total": 150754820096, "mem_used": 21474836480, "util": 91,
 *    "power_w": 612.4, "temp_c": 58, "energy_j": 1834.2,
 *    "procs": [{"pid": 0, "self": true, "used": 19327352832},
 *              {"pid": 4242, "used": 2147483648}]}
 *
 * T is seconds from the start of the recording; the reading shown at a moment
 * is the last one whose T has passed since the monitor opened, and the trace
 * starts again after its last reading (its energy counter carried on, so it
 * stays monotonic). NAME and BANDWIDTH are read from the first line that has
 * them. A process marked "self" stands for this process (its pid is
 * rewritten to ours), so the inspector's "this process" row lines up. */
#include "gpu_vendor.h"

#include "clock.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRACE_MAX_BYTES (64u << 20) /* a day of one-a-second readings is ~20 MiB */

struct trace {
    struct gpu_sample *rec; /* owned, n readings with their valid bits */
    double *t;              /* owned, n times, seconds, non-decreasing */
    size_t n;
    double bandwidth;       /* bytes/s, 0 = unknown */
    double t0;              /* monotonic time the monitor opened */
};

/* The value after "KEY": in the object text S (NUL-terminated): a number
 * into *V and true; false when the key is missing, null or not a number. */
static bool num_field(const char *s, const char *key, double *v)
{
    char pat[40];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(s, pat);
    if (!p)
        return false;
    p += strlen(pat);
    while (isspace((unsigned char)*p))
        p++;
    if (*p++ != ':')
        return false;
    while (isspace((unsigned char)*p))
        p++;
    char *end;
    double d = strtod(p, &end);
    if (end == p || !isfinite(d))
        return false;
    *v = d;
    return true;
}

static bool true_field(const char *s, const char *key)
{
    char pat[40];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(s, pat);
    if (!p)
        return false;
    p += strlen(pat);
    while (isspace((unsigned char)*p) || *p == ':')
        p++;
    return strncmp(p, "true", 4) == 0;
}

/* The string after "KEY": into BUF; false when missing. No escapes: a GPU's
 * name has none, and a backslash is kept as it is. */
static bool str_field(const char *s, const char *key, char *buf, size_t cap)
{
    char pat[40];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(s, pat);
    if (!p)
        return false;
    p += strlen(pat);
    while (isspace((unsigned char)*p) || *p == ':')
        p++;
    if (*p++ != '"')
        return false;
    const char *q = strchr(p, '"');
    if (!q)
        return false;
    size_t n = (size_t)(q - p) < cap - 1 ? (size_t)(q - p) : cap - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
    return true;
}

/* Parses the "procs" array of LINE into S and blanks it out of LINE, so the
 * reading's own keys are not found inside a process. */
static void parse_procs(char *line, struct gpu_sample *s)
{
    char *p = strstr(line, "\"procs\"");
    if (!p)
        return;
    char *lb = strchr(p, '[');
    char *rb = lb ? strchr(lb, ']') : NULL;
    if (!lb || !rb)
        return;
    *rb = 0;
    s->procs_valid = true;
    for (char *o = strchr(lb, '{'); o && s->n_procs < GPU_MAX_PROCS; o = strchr(o + 1, '{')) {
        char *c = strchr(o, '}');
        if (!c)
            break;
        *c = 0;
        double pid = 0, used = 0;
        struct gpu_proc *g = &s->procs[s->n_procs];
        *g = (struct gpu_proc){0};
        if (true_field(o, "self")) {
            g->self = true;
            g->pid = (unsigned)getpid();
        } else if (num_field(o, "pid", &pid) && pid >= 0) {
            g->pid = (unsigned)pid;
        }
        if (num_field(o, "used", &used) && used >= 0) {
            g->used_valid = true;
            g->used = (uint64_t)used;
        }
        s->n_procs++;
        *c = '}';
        o = c;
    }
    memset(p, ' ', (size_t)(rb - p));
    *rb = ' ';
}

static bool parse_line(char *line, struct gpu_sample *s, double *t, char *name, size_t cap,
                       double *bandwidth)
{
    while (isspace((unsigned char)*line))
        line++;
    if (*line != '{')
        return false;
    memset(s, 0, sizeof *s);
    parse_procs(line, s);
    double v;
    *t = num_field(line, "t", &v) ? v : -1;
    if (num_field(line, "util", &v) && v >= 0)
        s->util_valid = true, s->util_pct = (unsigned)v;
    if (num_field(line, "power_w", &v) && v >= 0)
        s->power_valid = true, s->power_w = v;
    if (num_field(line, "temp_c", &v) && v >= 0)
        s->temp_valid = true, s->temp_c = (unsigned)v;
    if (num_field(line, "energy_j", &v) && v >= 0)
        s->energy_valid = true, s->energy_j = v;
    double tot, used;
    if (num_field(line, "mem_total", &tot) && num_field(line, "mem_used", &used) && tot > 0 &&
        used >= 0)
        s->mem_valid = true, s->mem_total = (uint64_t)tot, s->mem_used = (uint64_t)used;
    if (!name[0])
        str_field(line, "name", name, cap);
    if (*bandwidth <= 0 && num_field(line, "bandwidth", &v) && v > 0)
        *bandwidth = v;
    return true;
}

static void trace_close(void *state)
{
    struct trace *tr = state;
    free(tr->rec);
    free(tr->t);
    free(tr);
}

static void *trace_open(unsigned index, char *note, size_t cap)
{
    const char *path = getenv(GPU_TRACE_ENV);
    if (!path || !*path)
        return NULL; /* no note: the next vendor's reason is the one to show */
    if (index != 0) {
        snprintf(note, cap, "recorded readings: no GPU %u", index);
        return NULL;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(note, cap, "%s=%s cannot be read: check the path", GPU_TRACE_ENV, path);
        return NULL;
    }
    struct trace *tr = calloc(1, sizeof *tr);
    size_t cap_n = 0, total = 0;
    char line[8192], name[96] = "";
    double last_t = 0;
    while (tr && fgets(line, sizeof line, f) && total < TRACE_MAX_BYTES) {
        total += strlen(line);
        struct gpu_sample s;
        double t;
        if (!parse_line(line, &s, &t, name, sizeof name, &tr->bandwidth))
            continue;
        if (tr->n == cap_n) {
            size_t nc = cap_n ? cap_n * 2 : 256;
            struct gpu_sample *r = realloc(tr->rec, nc * sizeof *r);
            if (r)
                tr->rec = r;
            double *tt = r ? realloc(tr->t, nc * sizeof *tt) : NULL;
            if (!r || !tt) {
                trace_close(tr);
                tr = NULL;
                break;
            }
            tr->t = tt;
            cap_n = nc;
        }
        /* no T, or one going back: one second after the previous reading */
        if (t < last_t || (t < 0 && tr->n))
            t = last_t + 1;
        if (t < 0)
            t = 0;
        last_t = t;
        tr->rec[tr->n] = s;
        tr->t[tr->n++] = t;
    }
    fclose(f);
    if (!tr) {
        snprintf(note, cap, "out of memory reading %s", path);
        return NULL;
    }
    if (tr->n == 0) {
        snprintf(note, cap, "%s=%s holds no readings (JSON lines expected)", GPU_TRACE_ENV, path);
        trace_close(tr);
        return NULL;
    }
    snprintf(note, cap, "%s (recorded)", name[0] ? name : "GPU");
    tr->t0 = kv_now_s();
    return tr;
}

static double trace_bandwidth(void *state) { return ((struct trace *)state)->bandwidth; }

static void trace_sample(void *state, struct gpu_sample *s)
{
    struct trace *tr = state;
    double span = tr->t[tr->n - 1] + 1; /* the last reading lasts a second too */
    double el = kv_now_s() - tr->t0;
    double loops = floor(el / span);
    double at = el - loops * span;
    size_t lo = 0, hi = tr->n; /* the last reading with t <= at */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (tr->t[mid] <= at)
            lo = mid;
        else
            hi = mid;
    }
    *s = tr->rec[lo];
    if (s->energy_valid && loops > 0) {
        /* carry the counter on over each replay */
        double first = -1, last = -1;
        for (size_t i = 0; i < tr->n; i++) {
            if (!tr->rec[i].energy_valid)
                continue;
            if (first < 0)
                first = tr->rec[i].energy_j;
            last = tr->rec[i].energy_j;
        }
        s->energy_j += loops * (last - first);
    }
}

const struct gpu_vendor gpu_vendor_trace = {
    .name = "trace",
    .open = trace_open,
    .close = trace_close,
    .sample = trace_sample,
    .bandwidth = trace_bandwidth,
};
