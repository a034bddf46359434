/* export.c - a session written out as Markdown or JSON (history.h), with
 * stored text made valid UTF-8 on the way.
 */
#include "history_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int hist_format_parse(const char *s, enum hist_format *out)
{
    if (!s || !out)
        return HIST_E_INVALID;
    if (strcmp(s, "md") == 0 || strcmp(s, "markdown") == 0)
        *out = HIST_FORMAT_MARKDOWN;
    else if (strcmp(s, "json") == 0)
        *out = HIST_FORMAT_JSON;
    else
        return HIST_E_INVALID;
    return HIST_OK;
}

/* Length of the valid UTF-8 sequence at S (at most N bytes), or 0 if it is
 * not one (overlong forms, surrogates and values past U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* Writes S as valid UTF-8 (invalid bytes become U+FFFD), JSON-escaped if JSON. */
static void put_text(FILE *f, const char *s, size_t n, int json)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (!k) {
            fputs("\xEF\xBF\xBD", f);
            i++;
            continue;
        }
        if (json && cp < 0x80) {
            switch (cp) {
            case '"': fputs("\\\"", f); break;
            case '\\': fputs("\\\\", f); break;
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            case '\b': fputs("\\b", f); break;
            case '\f': fputs("\\f", f); break;
            default:
                if (cp < 0x20)
                    fprintf(f, "\\u%04x", (unsigned)cp);
                else
                    fputc((int)cp, f);
            }
        } else {
            fwrite(p + i, 1, k, f);
        }
        i += k;
    }
}

static void json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    put_text(f, s, strlen(s), 1);
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (v >= 0 && isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void json_int(FILE *f, int64_t v)
{
    if (v >= 0)
        fprintf(f, "%lld", (long long)v);
    else
        fputs("null", f);
}

/* "2024-05-01T12:00:00Z": UTC, so exports are the same wherever they are made. */
static void iso_time(char *buf, size_t cap, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "%lld", (long long)ms);
}

/* Where message I stands among its turn's replies: *K-th (1-based) of *N.
 * N is 1 for a message without variants. A turn's variants are few and
 * follow its first reply closely, so the scan stays short. */
static void variant_place(const struct hist_message *m, size_t n, size_t i, int *k, int *cnt)
{
    int64_t head = m[i].variant_of ? m[i].variant_of : m[i].id;
    *k = 0;
    *cnt = 0;
    if (m[i].role != HIST_ROLE_ASSISTANT) {
        *k = *cnt = 1;
        return;
    }
    for (size_t j = 0; j < n; j++) {
        if (m[j].role != HIST_ROLE_ASSISTANT || (m[j].variant_of ? m[j].variant_of : m[j].id) != head)
            continue;
        (*cnt)++;
        if (j <= i)
            (*k)++;
    }
}

static void export_json(FILE *f, const struct hist_session *s, const struct hist_message *m, size_t n)
{
    fputs("{\n  \"format\": \"kvchat-session\",\n  \"version\": 1,\n  \"session\": {\n", f);
    fprintf(f, "    \"id\": %lld,\n    \"title\": ", (long long)s->id);
    json_str(f, s->title);
    fprintf(f, ",\n    \"created_ms\": %lld,\n    \"updated_ms\": %lld,\n", (long long)s->created_ms,
            (long long)s->updated_ms);
    fputs("    \"model\": ", f);
    json_str(f, s->model_name);
    fputs(",\n    \"model_digest\": ", f);
    json_str(f, s->model_digest);
    fputs(",\n    \"system_prompt\": ", f);
    json_str(f, s->system_prompt);
    fputs(",\n    \"sampling\": ", f);
    if (s->has_sampling) {
        const struct hist_sampling *p = &s->sampling;
        fprintf(f, "{\"temperature\": %.6g, \"top_k\": %d, \"top_p\": %.6g, \"min_p\": %.6g, "
                   "\"repeat_penalty\": %.6g, \"repeat_last_n\": %d, \"seed\": %llu, \"max_tokens\": ",
                isfinite(p->temperature) ? p->temperature : 0.0, (int)p->top_k,
                isfinite(p->top_p) ? p->top_p : 0.0, isfinite(p->min_p) ? p->min_p : 0.0,
                isfinite(p->repeat_penalty) ? p->repeat_penalty : 0.0, (int)p->repeat_last_n,
                (unsigned long long)p->seed);
        json_int(f, p->max_tokens);
        fputc('}', f);
    } else {
        fputs("null", f);
    }
    fputs("\n  },\n  \"messages\": [", f);
    for (size_t i = 0; i < n; i++) {
        const struct hist_message *x = &m[i];
        fprintf(f, "%s\n    {\"id\": %lld, \"role\": \"%s\", \"created_ms\": %lld, \"content\": \"",
                i ? "," : "", (long long)x->id, hist_role_str(x->role), (long long)x->created_ms);
        put_text(f, x->content, x->content_len, 1);
        fputs("\", \"end\": ", f);
        if (x->end == HIST_END_NONE)
            fputs("null", f);
        else
            fprintf(f, "\"%s\"", hist_end_str(x->end));
        fputs(", \"tokens\": ", f);
        json_int(f, x->stats.n_tokens);
        fputs(", \"prompt_tokens\": ", f);
        json_int(f, x->stats.n_prompt);
        fputs(", \"prefill_tps\": ", f);
        json_num(f, x->stats.prefill_tps);
        fputs(", \"decode_tps\": ", f);
        json_num(f, x->stats.decode_tps);
        fputs(", \"ttft_ms\": ", f);
        json_num(f, x->stats.ttft_ms);
        fputs(", \"engine\": ", f);
        json_str(f, x->engine);
        fputs(", \"model\": ", f);
        json_str(f, x->model);
        fputs(", \"thinking\": ", f);
        if (x->thinking) {
            fputc('"', f);
            put_text(f, x->thinking, strlen(x->thinking), 1);
            fputc('"', f);
        } else {
            fputs("null", f);
        }
        int k, cnt;
        variant_place(m, n, i, &k, &cnt);
        if (cnt > 1)
            fprintf(f, ", \"variant\": %d, \"variants\": %d, \"chosen\": %s", k, cnt,
                    x->variant_off ? "false" : "true");
        fputc('}', f);
    }
    fputs(n ? "\n  ]\n}\n" : "]\n}\n", f);
}

static void export_md(FILE *f, const struct hist_session *s, const struct hist_message *m, size_t n)
{
    char t[64];
    fputs("# ", f);
    put_text(f, *s->title ? s->title : "Untitled session", strlen(*s->title ? s->title : "Untitled session"), 0);
    iso_time(t, sizeof t, s->created_ms);
    fprintf(f, "\n\n- Session: %lld\n- Created: %s\n", (long long)s->id, t);
    if (s->model_name) {
        fputs("- Model: ", f);
        put_text(f, s->model_name, strlen(s->model_name), 0);
        if (s->model_digest) {
            fputs(" (", f);
            put_text(f, s->model_digest, strlen(s->model_digest), 0);
            fputc(')', f);
        }
        fputc('\n', f);
    }
    if (s->has_sampling)
        fprintf(f, "- Sampling: temperature %.3g, top-k %d, top-p %.3g, min-p %.3g, repeat penalty %.3g, "
                   "seed %llu\n", s->sampling.temperature, (int)s->sampling.top_k, s->sampling.top_p,
                s->sampling.min_p, s->sampling.repeat_penalty, (unsigned long long)s->sampling.seed);
    if (s->system_prompt) {
        fputs("\n## System prompt\n\n", f);
        put_text(f, s->system_prompt, strlen(s->system_prompt), 0);
        fputc('\n', f);
    }
    static const char *const HEADS[] = {"System", "User", "Assistant"};
    for (size_t i = 0; i < n; i++) {
        const struct hist_message *x = &m[i];
        iso_time(t, sizeof t, x->created_ms);
        int k, cnt;
        variant_place(m, n, i, &k, &cnt);
        /* The chosen reply reads as the conversation went on; the others
         * are set apart, each under its own heading. */
        if (cnt > 1)
            fprintf(f, "\n## %s, variant %d of %d%s (%s", HEADS[x->role], k, cnt,
                    x->variant_off ? "" : ", chosen", t);
        else
            fprintf(f, "\n## %s (%s", HEADS[x->role], t);
        if (x->end != HIST_END_NONE && x->end != HIST_END_STOP)
            fprintf(f, ", %s", hist_end_str(x->end));
        /* Which model answered: a session may move between engines. */
        if (x->model) {
            fputs(", ", f);
            put_text(f, x->model, strlen(x->model), 0);
        }
        if (x->engine) {
            fputs(x->model ? " on " : ", on ", f);
            put_text(f, x->engine, strlen(x->engine), 0);
        }
        if (x->stats.n_tokens >= 0 && x->role == HIST_ROLE_ASSISTANT)
            fprintf(f, ", %d tokens", (int)x->stats.n_tokens);
        if (x->stats.decode_tps >= 0 && isfinite(x->stats.decode_tps))
            fprintf(f, ", %.1f tok/s", x->stats.decode_tps);
        fputs(")\n\n", f);
        if (x->thinking) {
            fputs("<details><summary>Thinking</summary>\n\n", f);
            put_text(f, x->thinking, strlen(x->thinking), 0);
            fputs("\n\n</details>\n\n", f);
        }
        put_text(f, x->content, x->content_len, 0);
        fputc('\n', f);
    }
}

int hist_export(struct hist *h, int64_t session_id, enum hist_format fmt, FILE *out)
{
    if (!h || !out || (fmt != HIST_FORMAT_MARKDOWN && fmt != HIST_FORMAT_JSON))
        return HIST_E_INVALID;
    struct hist_session s;
    int ret = hist_session_get(h, session_id, &s);
    if (ret)
        return ret;
    struct hist_message *m = NULL;
    size_t n = 0;
    if ((ret = hist_messages(h, session_id, &m, &n))) {
        hist_session_clear(&s);
        return ret;
    }
    if (fmt == HIST_FORMAT_JSON)
        export_json(out, &s, m, n);
    else
        export_md(out, &s, m, n);
    hist_session_clear(&s);
    hist_messages_free(m, n);
    if (fflush(out) != 0 || ferror(out))
        return hist_failf(h, HIST_E_IO, "exporting session %lld: write failed: %s", (long long)session_id,
                          strerror(errno));
    return HIST_OK;
}
