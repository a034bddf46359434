/* figures.c - a server's own figures: Prometheus text, llama-server's slots
 * and Ollama's running models parsed into struct engine_server, and the
 * thread that reads them (see figures.h).
 */
#include "figures.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A metrics body larger than this is cut (vLLM's, histograms and all, is
 * some 100 KiB). */
#define FIG_BODY_MAX (4u << 20)
/* A whole reading may take this long before it is given up. */
#define FIG_REQUEST_MS 3000L

void fig_clear(struct engine_server *out)
{
    *out = (struct engine_server){.kv_frac = -1, .kv_tokens = -1, .n_ctx = -1,
                                  .reqs_running = -1, .reqs_waiting = -1,
                                  .prefix_hit_rate = -1, .vram_bytes = -1, .age_s = -1};
}

/* ---- Prometheus text ---- */

enum fig_field {
    F_KV_FRAC,
    F_KV_TOKENS,
    F_RUNNING,
    F_WAITING,
    F_HIT_RATE,
    F_HITS,    /* prefix cache hits, a counter */
    F_QUERIES, /* prefix cache queries, a counter */
    F_COUNT
};

/* Fractions average over series; counts add up. */
static const bool FIELD_IS_FRACTION[F_COUNT] = {[F_KV_FRAC] = true, [F_HIT_RATE] = true};

/* The metrics kvchat reads. vLLM renamed some across versions (gpu_cache ->
 * kv_cache, gpu_prefix_cache_hit_rate -> the hits/queries counters); a
 * server that publishes both spellings gives the same figure twice, which
 * the averaging (and the ratio of two doubled counters) leaves unchanged. */
static const struct {
    const char *name;
    enum fig_field field;
    const char *source;
} METRICS[] = {
    {"vllm:gpu_cache_usage_perc", F_KV_FRAC, "vllm"}, /* a fraction despite the name */
    {"vllm:kv_cache_usage_perc", F_KV_FRAC, "vllm"},
    {"vllm:num_requests_running", F_RUNNING, "vllm"},
    {"vllm:num_requests_waiting", F_WAITING, "vllm"},
    {"vllm:gpu_prefix_cache_hit_rate", F_HIT_RATE, "vllm"},
    {"vllm:prefix_cache_hits_total", F_HITS, "vllm"},
    {"vllm:prefix_cache_queries_total", F_QUERIES, "vllm"},
    {"vllm:gpu_prefix_cache_hits_total", F_HITS, "vllm"},
    {"vllm:gpu_prefix_cache_queries_total", F_QUERIES, "vllm"},
    {"llamacpp:kv_cache_usage_ratio", F_KV_FRAC, "llama-server"},
    {"llamacpp:kv_cache_tokens", F_KV_TOKENS, "llama-server"},
    {"llamacpp:requests_processing", F_RUNNING, "llama-server"},
    {"llamacpp:requests_deferred", F_WAITING, "llama-server"},
    {"sglang:token_usage", F_KV_FRAC, "sglang"},
    {"sglang:num_running_reqs", F_RUNNING, "sglang"},
    {"sglang:num_queue_reqs", F_WAITING, "sglang"},
    {"sglang:cache_hit_rate", F_HIT_RATE, "sglang"},
};

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == ':';
}

/* One sample line: NAME[{LABELS}] VALUE [TIMESTAMP]. Returns false for a
 * line that is not one (a comment, blank, or malformed). */
static bool sample_line(const char *s, const char *end, const char **name, size_t *name_len,
                        double *value)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    if (s == end || *s == '#')
        return false;
    const char *n0 = s;
    while (s < end && is_name_char(*s))
        s++;
    if (s == n0)
        return false;
    *name = n0;
    *name_len = (size_t)(s - n0);
    if (s < end && *s == '{') {
        /* label values are quoted and may hold '}', '"' escaped and spaces */
        bool quoted = false;
        for (s++; s < end; s++) {
            if (quoted && *s == '\\' && s + 1 < end)
                s++;
            else if (*s == '"')
                quoted = !quoted;
            else if (!quoted && *s == '}')
                break;
        }
        if (s == end)
            return false;
        s++;
    }
    if (s == end || (*s != ' ' && *s != '\t'))
        return false;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    char num[64];
    size_t k = 0;
    while (s < end && *s != ' ' && *s != '\t' && k + 1 < sizeof num)
        num[k++] = *s++;
    num[k] = 0;
    char *stop;
    double v = strtod(num, &stop);
    if (k == 0 || *stop)
        return false;
    *value = v;
    return true;
}

int fig_parse_metrics(const char *text, size_t len, struct engine_server *out)
{
    double sum[F_COUNT] = {0};
    int n[F_COUNT] = {0};
    const char *source = NULL;
    int used = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *line_end = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        const char *name;
        size_t nl;
        double v;
        if (sample_line(p, line_end, &name, &nl, &v) && isfinite(v)) {
            for (size_t i = 0; i < sizeof METRICS / sizeof *METRICS; i++) {
                if (strlen(METRICS[i].name) == nl && memcmp(METRICS[i].name, name, nl) == 0) {
                    sum[METRICS[i].field] += v;
                    n[METRICS[i].field]++;
                    if (!source)
                        source = METRICS[i].source;
                    used++;
                    break;
                }
            }
        }
        p = eol + 1;
    }
    if (!used)
        return 0;
    double val[F_COUNT];
    for (int f = 0; f < F_COUNT; f++)
        val[f] = n[f] ? (FIELD_IS_FRACTION[f] ? sum[f] / n[f] : sum[f]) : -1;
    if (n[F_KV_FRAC])
        out->kv_frac = val[F_KV_FRAC] < 0 ? 0 : val[F_KV_FRAC] > 1 ? 1 : val[F_KV_FRAC];
    if (n[F_KV_TOKENS])
        out->kv_tokens = (int64_t)val[F_KV_TOKENS];
    if (n[F_RUNNING])
        out->reqs_running = (int32_t)val[F_RUNNING];
    if (n[F_WAITING])
        out->reqs_waiting = (int32_t)val[F_WAITING];
    if (n[F_HIT_RATE])
        out->prefix_hit_rate = val[F_HIT_RATE];
    else if (n[F_HITS] && n[F_QUERIES] && val[F_QUERIES] > 0)
        out->prefix_hit_rate = val[F_HITS] / val[F_QUERIES]; /* since the server started */
    snprintf(out->source, sizeof out->source, "%s /metrics", source);
    return used;
}

/* ---- JSON bodies ---- */

static bool json_num(const cJSON *obj, const char *name, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return false;
    *out = v->valuedouble;
    return true;
}

static void add_source(struct engine_server *out, const char *what)
{
    size_t n = strlen(out->source);
    snprintf(out->source + n, sizeof out->source - n, "%s%s", n ? ", " : "", what);
}

int fig_parse_slots(const char *json, size_t len, struct engine_server *out)
{
    cJSON *j = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsArray(j) || !cJSON_IsObject(cJSON_GetArrayItem(j, 0))) {
        cJSON_Delete(j);
        return -1;
    }
    double v;
    if (json_num(cJSON_GetArrayItem(j, 0), "n_ctx", &v) && v > 0 && v < INT32_MAX)
        out->n_ctx = (int32_t)v;
    double past = 0;
    bool any = false;
    const cJSON *slot;
    cJSON_ArrayForEach(slot, j) {
        if (json_num(slot, "n_past", &v) && v >= 0) {
            past += v;
            any = true;
        }
    }
    if (any && out->kv_tokens < 0)
        out->kv_tokens = (int64_t)past;
    add_source(out, "llama-server /slots");
    cJSON_Delete(j);
    return 0;
}

static bool same_model(const char *listed, const char *model)
{
    if (!listed || !model)
        return false;
    if (strcmp(listed, model) == 0)
        return true;
    size_t n = strlen(model); /* "llama3" is "llama3:latest" there */
    return strncmp(listed, model, n) == 0 && strcmp(listed + n, ":latest") == 0;
}

int fig_parse_ollama_ps(const char *json, size_t len, const char *model,
                        struct engine_server *out)
{
    cJSON *j = cJSON_ParseWithLength(json, len);
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(j, "models");
    if (!cJSON_IsArray(models)) {
        cJSON_Delete(j);
        return -1;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, models) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
        const cJSON *mod = cJSON_GetObjectItemCaseSensitive(m, "model");
        if (!same_model(cJSON_GetStringValue(name), model) &&
            !same_model(cJSON_GetStringValue(mod), model))
            continue;
        double v;
        if (json_num(m, "size_vram", &v) && v >= 0)
            out->vram_bytes = (int64_t)v;
        if (json_num(m, "context_length", &v) && v > 0 && v < INT32_MAX)
            out->n_ctx = (int32_t)v;
        break;
    }
    add_source(out, "ollama /api/ps");
    cJSON_Delete(j);
    return 0;
}

/* ---- the sampler ---- */

enum { EP_METRICS, EP_SLOTS, EP_PS, EP_COUNT };
static const char *const EP_PATH[EP_COUNT] = {
    [EP_METRICS] = "metrics",
    [EP_SLOTS] = "slots",
    [EP_PS] = "api/ps",
};

struct fig {
    pthread_t thread;
    pthread_mutex_t mu; /* guards latest, read_at and the wait */
    pthread_cond_t wake;
    atomic_bool stop;
    struct engine_server latest;
    double read_at; /* monotonic seconds; 0 = never */
    char *root, *model, *key_env;
    bool insecure;
    long connect_s;
    double retry_at[EP_COUNT]; /* 0 = ask every round */
    CURL *easy;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct body {
    char *p;
    size_t len;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
    struct body *b = user;
    size_t n = size * nmemb;
    if (b->len + n > FIG_BODY_MAX)
        return 0;
    char *q = realloc(b->p, b->len + n + 1);
    if (!q)
        return 0;
    memcpy(q + b->len, ptr, n);
    b->p = q;
    b->len += n;
    b->p[b->len] = 0;
    return n;
}

static int on_progress(void *user, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    return atomic_load(&((struct fig *)user)->stop) ? 1 : 0; /* non-zero aborts */
}

/* GET {root}/PATH into B; true on a 2xx answer. */
static bool fetch(struct fig *f, const char *path, struct body *b)
{
    char url[4200];
    snprintf(url, sizeof url, "%s/%s", f->root, path);
    CURL *c = f->easy;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, f->connect_s);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, FIG_REQUEST_MS);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, f->insecure ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, f->insecure ? 0L : 2L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, f);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kvchat/" KVCHAT_VERSION);
    struct curl_slist *h = NULL;
    const char *key = f->key_env ? getenv(f->key_env) : NULL;
    char *auth = NULL;
    if (key && *key && asprintf(&auth, "Authorization: Bearer %s", key) >= 0) {
        h = curl_slist_append(h, auth);
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode res = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    for (struct curl_slist *p = h; p; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(h);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    return res == CURLE_OK && status / 100 == 2 && b->p;
}

/* One reading of every endpoint that is due. */
static void sample(struct fig *f)
{
    struct engine_server s;
    fig_clear(&s);
    s.source[0] = 0;
    bool any = false;
    for (int ep = 0; ep < EP_COUNT && !atomic_load(&f->stop); ep++) {
        double t = mono_s();
        if (f->retry_at[ep] > t)
            continue;
        struct body b = {0};
        int ok = fetch(f, EP_PATH[ep], &b) ? 0 : -1;
        if (ok == 0) {
            if (ep == EP_METRICS)
                ok = fig_parse_metrics(b.p, b.len, &s) > 0 ? 0 : -1;
            else if (ep == EP_SLOTS)
                ok = fig_parse_slots(b.p, b.len, &s);
            else
                ok = fig_parse_ollama_ps(b.p, b.len, f->model, &s);
        }
        free(b.p);
        f->retry_at[ep] = ok == 0 ? 0 : mono_s() + FIG_RETRY_S;
        any |= ok == 0;
    }
    pthread_mutex_lock(&f->mu);
    f->latest = s;
    f->read_at = any ? mono_s() : 0;
    pthread_mutex_unlock(&f->mu);
}

static void *fig_main(void *arg)
{
    struct fig *f = arg;
    while (!atomic_load(&f->stop)) {
        sample(f);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)FIG_SAMPLE_S;
        pthread_mutex_lock(&f->mu);
        while (!atomic_load(&f->stop) &&
               pthread_cond_timedwait(&f->wake, &f->mu, &ts) == 0) {
        }
        pthread_mutex_unlock(&f->mu);
    }
    return NULL;
}

static void fig_free(struct fig *f)
{
    curl_easy_cleanup(f->easy);
    free(f->root);
    free(f->model);
    free(f->key_env);
    free(f);
}

struct fig *fig_start(const struct fig_params *p)
{
    struct fig *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->root = strdup(p->root);
    f->model = strdup(p->model ? p->model : "");
    f->key_env = p->key_env ? strdup(p->key_env) : NULL;
    f->insecure = p->insecure;
    f->connect_s = p->connect_s;
    f->easy = curl_easy_init();
    fig_clear(&f->latest);
    atomic_init(&f->stop, false);
    if (!f->root || !f->model || (p->key_env && !f->key_env) || !f->easy) {
        fig_free(f);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&f->mu, NULL);
    if (pthread_create(&f->thread, NULL, fig_main, f) != 0) {
        pthread_cond_destroy(&f->wake);
        pthread_mutex_destroy(&f->mu);
        fig_free(f);
        return NULL;
    }
    return f;
}

void fig_get(struct fig *f, struct engine_server *out)
{
    pthread_mutex_lock(&f->mu);
    if (f->read_at > 0) {
        *out = f->latest;
        out->age_s = mono_s() - f->read_at;
    } else {
        fig_clear(out);
    }
    pthread_mutex_unlock(&f->mu);
}

void fig_stop(struct fig *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    atomic_store(&f->stop, true);
    pthread_cond_broadcast(&f->wake);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    pthread_cond_destroy(&f->wake);
    pthread_mutex_destroy(&f->mu);
    fig_free(f);
}
