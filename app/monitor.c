/* monitor.c - the once-a-second reading behind the inspector and
 * --monitor-log (monitor.h). */
#include "monitor.h"

#include "clock.h"
#include "errmsg.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const mon_field_names[MON_N_FIELDS] = {
    "time",        "mem_used",     "mem_total",   "self_bytes", "weights",  "kv_reserved",
    "kv_used",     "scratch",      "others",      "kv_tokens",  "n_ctx",    "decode_tok_s",
    "roofline_pct", "gpu_util",    "power_w",     "energy_per_tok", "temp_c",
};

/* The struct's fields in the order of the names: one table, so the CSV,
 * the JSON and the parser can never disagree about a column. */
static const size_t field_offsets[MON_N_FIELDS] = {
    offsetof(struct mon_reading, time),         offsetof(struct mon_reading, mem_used),
    offsetof(struct mon_reading, mem_total),    offsetof(struct mon_reading, self_bytes),
    offsetof(struct mon_reading, weights),      offsetof(struct mon_reading, kv_reserved),
    offsetof(struct mon_reading, kv_used),      offsetof(struct mon_reading, scratch),
    offsetof(struct mon_reading, others),       offsetof(struct mon_reading, kv_tokens),
    offsetof(struct mon_reading, n_ctx),        offsetof(struct mon_reading, decode_tok_s),
    offsetof(struct mon_reading, roofline_pct), offsetof(struct mon_reading, gpu_util),
    offsetof(struct mon_reading, power_w),      offsetof(struct mon_reading, energy_per_tok),
    offsetof(struct mon_reading, temp_c),
};

double *mon_field_ptr(struct mon_reading *r, int i)
{
    return (double *)((char *)r + field_offsets[i]);
}

double mon_field(const struct mon_reading *r, int i)
{
    return *(const double *)((const char *)r + field_offsets[i]);
}

int mon_format_for(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/'))
        return -1;
    if (strcmp(dot, ".csv") == 0)
        return MON_CSV;
    if (strcmp(dot, ".jsonl") == 0 || strcmp(dot, ".json") == 0)
        return MON_JSONL;
    return -1;
}

size_t mon_header(enum mon_format f, char *buf, size_t cap)
{
    size_t n = 0;
    if (cap)
        buf[0] = 0;
    if (f != MON_CSV)
        return 0;
    for (int i = 0; i < MON_N_FIELDS && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "," : "", mon_field_names[i]);
    if (n < cap)
        n += (size_t)snprintf(buf + n, cap - n, "\n");
    return n < cap ? n : cap - 1;
}

/* Time with milliseconds, bytes and counts whole, the rest to 3 places. */
static int fmt_value(char *buf, size_t cap, int i, double v)
{
    if (isnan(v))
        return snprintf(buf, cap, "%s", "");
    return snprintf(buf, cap, i == 0 ? "%.3f" : i <= 10 ? "%.0f" : "%.3f", v);
}

size_t mon_format_line(enum mon_format f, const struct mon_reading *r, char *buf, size_t cap)
{
    size_t n = 0;
    char v[48];
    if (f == MON_JSONL && n < cap)
        n += (size_t)snprintf(buf + n, cap - n, "{");
    for (int i = 0; i < MON_N_FIELDS && n < cap; i++) {
        double x = mon_field(r, i);
        fmt_value(v, sizeof v, i, x);
        if (f == MON_CSV)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "," : "", v);
        else
            n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\":%s", i ? "," : "", mon_field_names[i],
                                  isnan(x) ? "null" : v);
    }
    if (n < cap)
        n += (size_t)snprintf(buf + n, cap - n, f == MON_JSONL ? "}\n" : "\n");
    return n < cap ? n : cap ? cap - 1 : 0;
}

static bool parse_num(const char *s, const char **end, double *v)
{
    char *e;
    *v = strtod(s, &e);
    *end = e;
    return e != s && isfinite(*v);
}

bool mon_parse_line(enum mon_format f, const char *line, struct mon_reading *out)
{
    for (int i = 0; i < MON_N_FIELDS; i++)
        *mon_field_ptr(out, i) = NAN;
    if (f == MON_CSV) {
        const char *p = line;
        for (int i = 0; i < MON_N_FIELDS; i++) {
            const char *end = p;
            double v;
            if (*p != ',' && *p != '\n' && *p != 0) {
                if (!parse_num(p, &end, &v))
                    return false; /* the header, or not a reading */
                *mon_field_ptr(out, i) = v;
            }
            p = end;
            if (i < MON_N_FIELDS - 1 && *p++ != ',')
                return false;
        }
        return (*p == '\n' || *p == 0 || *p == '\r') && !isnan(out->time);
    }
    if (line[0] != '{')
        return false;
    for (int i = 0; i < MON_N_FIELDS; i++) {
        char pat[40];
        snprintf(pat, sizeof pat, "\"%s\":", mon_field_names[i]);
        const char *p = strstr(line, pat);
        if (!p)
            return false;
        p += strlen(pat);
        const char *end;
        double v;
        if (strncmp(p, "null", 4) == 0)
            continue;
        if (!parse_num(p, &end, &v))
            return false;
        *mon_field_ptr(out, i) = v;
    }
    return !isnan(out->time);
}

struct monitor {
    struct engine *e;     /* borrowed */
    struct gpu_mon *gpu;  /* borrowed; NULL = none */
    double bandwidth;     /* bytes/s, 0 = unknown */
    struct mon_inputs in; /* the last sample's figures */
    /* the previous sample, for rates */
    bool have_prev;
    double prev_t;
    int32_t prev_gen;
    bool prev_energy_valid;
    double prev_energy;

    FILE *log; /* owned; NULL = no log */
    enum mon_format fmt;

    pthread_t th; /* monitor_start's */
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop; /* guarded by mu */
};

struct monitor *monitor_new(struct engine *e, struct gpu_mon *gpu, double bandwidth)
{
    struct monitor *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->e = e;
    m->gpu = gpu;
    m->bandwidth = bandwidth;
    m->in.gpu = gpu != NULL;
    m->in.bytes_per_token = engine_info(e)->bytes_per_token;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    return m;
}

void monitor_free(struct monitor *m)
{
    if (!m)
        return;
    monitor_stop(m);
    if (m->log)
        fclose(m->log);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void monitor_set_bandwidth(struct monitor *m, double bandwidth) { m->bandwidth = bandwidth; }

void monitor_rebind(struct monitor *m, struct engine *e, struct gpu_mon *gpu)
{
    m->e = e;
    m->gpu = gpu;
    m->in.gpu = gpu != NULL;
    m->in.bytes_per_token = engine_info(e)->bytes_per_token;
    m->have_prev = false; /* the new engine's counters start again */
}

const struct mon_inputs *monitor_inputs(const struct monitor *m) { return &m->in; }

static double known(uint64_t v) { return v == ENGINE_UNKNOWN ? NAN : (double)v; }

void monitor_sample(struct monitor *m, struct mon_reading *r)
{
    struct mon_inputs *in = &m->in;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = kv_now_s();
    engine_stats(m->e, &in->st);
    engine_memory(m->e, &in->mem);
    engine_memory_map(m->e, &in->map);
    gpu_mon_sample(m->gpu, &in->gs);
    procmem_read(&in->pm);

    for (int i = 0; i < MON_N_FIELDS; i++)
        *mon_field_ptr(r, i) = NAN;
    r->time = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    const struct gpu_sample *gs = &in->gs;
    if (gs->mem_valid) {
        r->mem_used = (double)gs->mem_used;
        r->mem_total = (double)gs->mem_total;
    } else if (!m->gpu && in->pm.host_valid) {
        r->mem_used = (double)(in->pm.host_total - in->pm.host_avail);
        r->mem_total = (double)in->pm.host_total;
    }
    if (m->gpu && gs->procs_valid) {
        double others = 0;
        for (unsigned i = 0; i < gs->n_procs; i++) {
            if (gs->procs[i].self)
                r->self_bytes = gs->procs[i].used_valid ? (double)gs->procs[i].used : NAN;
            else if (gs->procs[i].used_valid)
                others += (double)gs->procs[i].used;
        }
        r->others = others;
    } else if (!m->gpu && in->pm.rss_valid) {
        r->self_bytes = (double)in->pm.rss;
    }
    r->weights = known(in->mem.weights);
    r->kv_reserved = known(in->mem.kv_cache);
    r->scratch = known(in->mem.scratch);
    double kv_read = 0;
    if (in->map.known) {
        for (int i = 0; i < ENGINE_MAP_LAYERS; i++)
            kv_read += (double)in->map.layers[i].used;
        r->kv_used = kv_read;
        r->kv_tokens = in->map.kv_tokens;
        r->n_ctx = in->map.n_ctx;
    } else {
        r->kv_tokens = in->st.kv_used;
        if (in->st.kv_capacity > 0)
            r->n_ctx = in->st.kv_capacity;
    }
    /* Rates over the interval since the previous sample: what the engine did
     * this second, not its turn average. A smaller count is a new turn. */
    int32_t gen = in->st.gen_tokens;
    int32_t dgen = 0;
    if (m->have_prev)
        dgen = gen >= m->prev_gen ? gen - m->prev_gen : gen;
    double dt = t - m->prev_t;
    if (m->have_prev && dgen > 0 && dt > 0) {
        r->decode_tok_s = dgen / dt;
        double bpt = (double)in->bytes_per_token + kv_read;
        if (m->bandwidth > 0 && in->bytes_per_token > 0)
            r->roofline_pct = 100.0 * r->decode_tok_s * bpt / m->bandwidth;
        if (gs->energy_valid && m->prev_energy_valid && gs->energy_j >= m->prev_energy)
            r->energy_per_tok = (gs->energy_j - m->prev_energy) / dgen;
    }
    if (gs->util_valid)
        r->gpu_util = gs->util_pct;
    if (gs->power_valid)
        r->power_w = gs->power_w;
    if (gs->temp_valid)
        r->temp_c = gs->temp_c;
    m->have_prev = true;
    m->prev_t = t;
    m->prev_gen = gen;
    m->prev_energy_valid = gs->energy_valid;
    m->prev_energy = gs->energy_j;

    if (m->log) {
        char line[1024];
        size_t n = mon_format_line(m->fmt, r, line, sizeof line);
        if (fwrite(line, 1, n, m->log) == n)
            fflush(m->log);
    }
}

int monitor_log_open(struct monitor *m, const char *path, char *err, size_t errlen)
{
    int f = mon_format_for(path);
    if (f < 0) {
        kv_seterr(err, errlen, "monitor log %s: name it .csv or .jsonl (the format follows the extension)",
                  path);
        return -1;
    }
    FILE *fp = fopen(path, "w");
    if (!fp) {
        kv_seterr(err, errlen, "monitor log %s: %s; check the folder exists and is writable", path,
                  strerror(errno));
        return -1;
    }
    if (m->log)
        fclose(m->log);
    m->log = fp;
    m->fmt = (enum mon_format)f;
    char hdr[512];
    size_t n = mon_header(m->fmt, hdr, sizeof hdr);
    if (n)
        fwrite(hdr, 1, n, fp);
    fflush(fp);
    return 0;
}

static void *monitor_main(void *arg)
{
    struct monitor *m = arg;
    struct mon_reading r;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        pthread_mutex_unlock(&m->mu);
        monitor_sample(m, &r);
        pthread_mutex_lock(&m->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&m->mu);
    monitor_sample(m, &r); /* the last second too: the end of the reply */
    return NULL;
}

int monitor_start(struct monitor *m, char *err, size_t errlen)
{
    if (m->running)
        return 0;
    m->stop = false;
    if (pthread_create(&m->th, NULL, monitor_main, m) != 0) {
        kv_seterr(err, errlen, "monitor: cannot start its thread; run without --monitor-log");
        return -1;
    }
    m->running = true;
    return 0;
}

void monitor_stop(struct monitor *m)
{
    if (!m || !m->running)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->th, NULL);
    m->running = false;
}
