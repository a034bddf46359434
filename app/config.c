/* config.c - reading the config file into struct kv_options. See config.h. */
#include "config.h"

#include "textfile.h"
#include "utf8.h"
#include "xdg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A config file is a few lines; anything this large is not one. */
#define CONFIG_MAX_BYTES (4u << 20)


int config_default_path(char *buf, size_t cap)
{
    char dir[4096];
    if (kv_xdg_dir(KV_XDG_CONFIG, dir, sizeof dir) != 0)
        return -1;
    int n = snprintf(buf, cap, "%s/config", dir);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int get_double(const char *key, const char *v, double lo, double hi, bool lo_open, double *out, char *err,
                      size_t errlen)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(d) || d < lo || d > hi || (lo_open && d == lo)) {
        snprintf(err, errlen, "%s: '%.40s' is not a number in %s%g, %g]", key, v, lo_open ? "(" : "[", lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

static int get_int(const char *key, const char *v, long long lo, long long hi, long long *out, char *err,
                   size_t errlen)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        snprintf(err, errlen, "%s: '%.40s' is not a whole number in [%lld, %lld]", key, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* Copies a path, expanding a leading "~/". */
static int set_path(const char *key, const char *v, char *dst, size_t cap, char *err, size_t errlen)
{
    const char *home = getenv("HOME");
    int n;
    if (v[0] == '~' && (v[1] == '/' || !v[1]) && home)
        n = snprintf(dst, cap, "%s%s", home, v + 1);
    else
        n = snprintf(dst, cap, "%s", v);
    if (n < 0 || (size_t)n >= cap) {
        snprintf(err, errlen, "%s: path too long", key);
        dst[0] = 0;
        return -1;
    }
    return 0;
}

bool kv_think_from_name(const char *s, enum engine_think *out)
{
    if (strcmp(s, "on") == 0)
        *out = ENGINE_THINK_ON;
    else if (strcmp(s, "off") == 0)
        *out = ENGINE_THINK_OFF;
    else
        return false;
    return true;
}

int config_set(struct kv_options *o, const char *key, const char *v, char *err, size_t errlen)
{
    double d;
    long long x;
    struct engine_sampling *sp = &o->sampling;
    if (strcmp(key, "model") == 0)
        return set_path(key, v, o->model, sizeof o->model, err, errlen);
    if (strcmp(key, "db") == 0)
        return set_path(key, v, o->db, sizeof o->db, err, errlen);
    if (strcmp(key, "backend") == 0) {
        static const struct {
            const char *n;
            enum engine_backend b;
        } tab[] = {{"auto", ENGINE_BACKEND_AUTO}, {"cpu", ENGINE_BACKEND_CPU}, {"cuda", ENGINE_BACKEND_CUDA}};
        for (size_t i = 0; i < 3; i++)
            if (strcmp(v, tab[i].n) == 0) {
                o->backend = tab[i].b;
                return 0;
            }
        snprintf(err, errlen, "backend: '%.40s' is not auto, cpu or cuda", v);
        return -1;
    }
    if (strcmp(key, "ctx_size") == 0 || strcmp(key, "context") == 0) {
        if (get_int(key, v, 0, 1 << 24, &x, err, errlen))
            return -1;
        o->ctx_size = (int32_t)x;
        return 0;
    }
    if (strcmp(key, "threads") == 0) {
        if (get_int(key, v, 0, 1024, &x, err, errlen))
            return -1;
        o->threads = (int32_t)x;
        return 0;
    }
    if (strcmp(key, "chat_template") == 0) {
        if (strlen(v) >= sizeof o->chat_template) {
            snprintf(err, errlen, "chat_template: '%.40s' is too long", v);
            return -1;
        }
        snprintf(o->chat_template, sizeof o->chat_template, "%s", v);
        return 0;
    }
    if (strcmp(key, "kv_type") == 0) {
        if (!engine_kv_type_from_name(v, &o->kv_type) || o->kv_type == ENGINE_KV_AUTO) {
            snprintf(err, errlen, "kv_type: '%.40s' is not f16, f32 or q8_0", v);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "think") == 0) {
        if (!kv_think_from_name(v, &o->think)) {
            snprintf(err, errlen, "think: '%.40s' is not on or off", v);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "system") == 0) {
        if (strlen(v) >= sizeof o->system) {
            snprintf(err, errlen, "system: text longer than %zu bytes", sizeof o->system - 1);
            return -1;
        }
        if (!kv_check_text("system", v, err, errlen))
            return -1;
        snprintf(o->system, sizeof o->system, "%s", v);
        o->system_set = true;
        return 0;
    }
    if (strcmp(key, "theme") == 0) {
        if (strlen(v) >= sizeof o->theme) {
            snprintf(err, errlen, "theme: name too long");
            return -1;
        }
        snprintf(o->theme, sizeof o->theme, "%s", v);
        return 0;
    }
    if (strcmp(key, "timestamps") == 0) {
        if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
            o->timestamps = true;
        else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0)
            o->timestamps = false;
        else {
            snprintf(err, errlen, "timestamps: '%.40s' is not on or off", v);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "history") == 0) {
        if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
            o->no_history = false;
        else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0)
            o->no_history = true;
        else {
            snprintf(err, errlen, "history: '%.40s' is not on or off", v);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "temperature") == 0 || strcmp(key, "temp") == 0) {
        if (get_double(key, v, 0, 100, false, &d, err, errlen))
            return -1;
        sp->temperature = (float)d;
        return 0;
    }
    if (strcmp(key, "top_k") == 0) {
        if (get_int(key, v, 0, 1 << 24, &x, err, errlen))
            return -1;
        sp->top_k = (int32_t)x;
        return 0;
    }
    if (strcmp(key, "top_p") == 0) {
        if (get_double(key, v, 0, 1, true, &d, err, errlen))
            return -1;
        sp->top_p = (float)d;
        return 0;
    }
    if (strcmp(key, "min_p") == 0) {
        if (get_double(key, v, 0, 1, false, &d, err, errlen))
            return -1;
        sp->min_p = (float)d;
        return 0;
    }
    if (strcmp(key, "repeat_penalty") == 0) {
        if (get_double(key, v, 0, 10, true, &d, err, errlen))
            return -1;
        sp->repeat_penalty = (float)d;
        return 0;
    }
    if (strcmp(key, "repeat_last_n") == 0) {
        if (get_int(key, v, 0, 1 << 20, &x, err, errlen))
            return -1;
        sp->repeat_last_n = (int32_t)x;
        return 0;
    }
    if (strcmp(key, "seed") == 0) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (!isdigit((unsigned char)v[0]) || *end || errno) {
            snprintf(err, errlen, "seed: '%.40s' is not a whole number in [0, 2^64)", v);
            return -1;
        }
        sp->seed = s;
        o->seed_set = true;
        return 0;
    }
    if (strcmp(key, "max_tokens") == 0) {
        if (get_int(key, v, 0, 1 << 24, &x, err, errlen))
            return -1;
        o->max_tokens = (int32_t)x;
        return 0;
    }
    /* the remote engine's strings */
#define KV_STR(k, field) {k, offsetof(struct kv_options, field), sizeof ((struct kv_options *)0)->field}
    static const struct {
        const char *key;
        size_t off, cap;
    } STRINGS[] = {
        KV_STR("server", server),
        KV_STR("monitor_log", monitor_log),
        KV_STR("server_model", server_model),
        KV_STR("api_key_env", api_key_env),
    };
#undef KV_STR
    for (size_t i = 0; i < sizeof STRINGS / sizeof *STRINGS; i++) {
        if (strcmp(key, STRINGS[i].key) != 0)
            continue;
        if (strlen(v) >= STRINGS[i].cap) {
            snprintf(err, errlen, "%s: value longer than %zu bytes", key, STRINGS[i].cap - 1);
            return -1;
        }
        snprintf((char *)o + STRINGS[i].off, STRINGS[i].cap, "%s", v);
        return 0;
    }
    if (strcmp(key, "insecure") == 0) {
        if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
            o->insecure = true;
        else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0)
            o->insecure = false;
        else {
            snprintf(err, errlen, "insecure: '%.40s' is not on or off", v);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "connect_timeout") == 0 || strcmp(key, "idle_timeout") == 0) {
        if (get_int(key, v, 0, 86400, &x, err, errlen))
            return -1;
        *(key[0] == 'c' ? &o->connect_timeout_s : &o->idle_timeout_s) = (int32_t)x;
        return 0;
    }
    if (strcmp(key, "mem_bandwidth_gbs") == 0) {
        if (get_double(key, v, 0, 1e6, false, &d, err, errlen))
            return -1;
        o->mem_bandwidth_gbs = d;
        return 0;
    }
    snprintf(err, errlen, "unknown setting '%.40s'", key);
    return -1;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    return s;
}

int config_parse(const char *text, size_t len, const char *file, struct kv_options *opt, char *err,
                 size_t errlen)
{
    size_t pos = 0;
    int lineno = 0;
    char msg[256];
    char *line = malloc(sizeof opt->system + 256);
    if (!line) {
        snprintf(err, errlen, "%s: out of memory", file);
        return -1;
    }
    int rc = 0;
    while (pos < len && rc == 0) {
        size_t e = pos;
        while (e < len && text[e] != '\n')
            e++;
        lineno++;
        size_t n = e - pos;
        if (n >= sizeof opt->system + 255) {
            snprintf(err, errlen, "%s:%d: line too long", file, lineno);
            rc = -1;
            break;
        }
        memcpy(line, text + pos, n);
        line[n] = 0;
        pos = e + 1;
        if (memchr(line, 0, n)) {
            snprintf(err, errlen, "%s:%d: NUL byte in the config file", file, lineno);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected KEY = VALUE", file, lineno);
            rc = -1;
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        if (*val == '"') {
            char *q = strrchr(val + 1, '"');
            if (!q || (trim(q + 1)[0] && trim(q + 1)[0] != '#')) {
                snprintf(err, errlen, "%s:%d: unterminated quoted value", file, lineno);
                rc = -1;
                break;
            }
            *q = 0;
            val++;
        } else {
            /* An unquoted '#' after a space starts a comment. */
            for (char *h = strchr(val, '#'); h; h = strchr(h + 1, '#'))
                if (h > val && isspace((unsigned char)h[-1])) {
                    *h = 0;
                    val = trim(val);
                    break;
                }
        }
        if (config_set(opt, key, val, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s:%d: %s", file, lineno, msg);
            rc = -1;
        }
    }
    free(line);
    return rc;
}

int config_load(const char *path, struct kv_options *opt, char *err, size_t errlen)
{
    char def[4200];
    bool explicit = path != NULL;
    if (!path) {
        if (config_default_path(def, sizeof def) != 0)
            return 0; /* no home: nothing to read */
        path = def;
    }
    size_t n;
    char *buf = textfile_read(path, CONFIG_MAX_BYTES, &n, err, errlen);
    if (!buf)
        return errno == ENOENT && !explicit ? 0 : -1;
    int rc = config_parse(buf, n, path, opt, err, errlen);
    free(buf);
    return rc;
}
