/* remote.c - the remote engine (engine_impl.h row "remote"): a model served by
 * an OpenAI-compatible server (vLLM, SGLang, llama-server, Ollama). It keeps
 * the conversation itself and sends all of it with each turn to
 * POST {server}/chat/completions as a stream; the reply arrives as server-sent
 * events (sse.h) whose JSON chunks cJSON parses, and leaves as whole UTF-8
 * characters (utf8_stream.h).
 *
 * Design rules:
 * - One curl easy handle on one multi handle per engine, so a turn reuses the
 *   last turn's connection. The transfer runs in curl_multi_poll steps of at
 *   most POLL_MS and engine_cancel wakes the poll, so a cancel stops the
 *   transfer at once (well within 100 ms), whatever the server is doing.
 * - Every error message starts with the server's origin (scheme://host:port,
 *   from curl's URL parser: never the path, query or credentials), says what
 *   happened and what to do; the API key is read from the environment for
 *   each request, and any message is scrubbed of it before it leaves.
 * - Redirects are not followed (CURLOPT_FOLLOWLOCATION 0): a 3xx is an error
 *   naming the status, so the Authorization header can never travel to
 *   another host. Only http and https are allowed; https verifies the
 *   certificate and host name unless the engine was made insecure.
 * - What the user saw is what the conversation keeps: a reply cut short by a
 *   cancel, a length limit or a failure mid-stream joins the conversation, and
 *   the engine stays usable.
 */
#include "engine_impl.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "errmsg.h"
#include "figures.h"
#include "sse.h"
#include "strbuf.h"
#include "transcript.h"
#include "utf8_stream.h"

#define POLL_MS 50
#define DEFAULT_CONNECT_S 10
#define DEFAULT_IDLE_S 300
/* Bodies that are not an event stream (the model list, error answers) are
 * read up to this size; the rest is dropped. */
#define BODY_MAX (1u << 20)
/* Longest piece of a server's own error message quoted in ours. */
#define SERVER_MSG_MAX 200

struct remote_engine {
    struct engine base;
    CURL *easy;   /* owned */
    CURLM *multi; /* owned; engine_cancel wakes its poll */
    CURLU *url;   /* owned: the server's base URL */
    char origin[256]; /* scheme://host:port, for messages */
    char *model;      /* owned */
    char *key_env;    /* owned name of the key's variable, or NULL */
    bool insecure;
    long connect_s, idle_s;

    struct transcript conv; /* system NULL = the server's default */

    atomic_bool cancel;
    pthread_mutex_t stats_lock; /* guards stats */
    struct engine_stats stats;
    struct fig *fig; /* owned: the server's own figures, read in a thread; NULL = none */
};

/* ---- small helpers ---- */

static const char *api_key(const struct remote_engine *e)
{
    const char *k = e->key_env ? getenv(e->key_env) : NULL;
    return k && *k ? k : NULL;
}

/* Replaces every occurrence of the API key in MSG with "***" (never longer
 * than a key worth hiding, so MSG only shrinks). */
static void scrub_key(const struct remote_engine *e, char *msg)
{
    const char *key = api_key(e);
    if (!key || !msg)
        return;
    size_t kn = strlen(key);
    if (kn < 3)
        return; /* too short to tell from ordinary text, and "***" would grow it */
    char *hit;
    while ((hit = strstr(msg, key)) != NULL) {
        size_t tail = strlen(hit + kn);
        memmove(hit + 3, hit + kn, tail + 1);
        memcpy(hit, "***", 3);
    }
}

/* A server's text made fit for a one-line message: valid UTF-8, control
 * characters as spaces (runs collapsed), at most SERVER_MSG_MAX bytes and
 * "..." when cut, never inside a character. */
static void quote_server_text(const char *in, size_t n, char *out, size_t cap)
{
    struct u8s u = {0};
    const char *v = NULL;
    size_t vn = u8s_push(&u, in, n, &v);
    size_t o = 0;
    size_t limit = (cap - 1 < SERVER_MSG_MAX ? cap - 1 : SERVER_MSG_MAX) - 3;
    for (size_t i = 0; vn != (size_t)-1 && i < vn;) {
        unsigned char c = (unsigned char)v[i];
        size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (c < 0x20 || c == 0x7F) {
            if (o > 0 && out[o - 1] != ' ' && o < limit)
                out[o++] = ' ';
            i++;
            continue;
        }
        if (o + len > limit) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, v + i, len);
        o += len;
        i += len;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = 0;
    u8s_free(&u);
}

/* ---- the conversation ---- */

static int remote_set_system(struct engine *eng, const char *system)
{
    return transcript_set_system(&((struct remote_engine *)eng)->conv, system);
}

static void remote_reset(struct engine *eng) { transcript_clear(&((struct remote_engine *)eng)->conv); }

static int remote_load_transcript(struct engine *eng, const struct engine_message *msgs, size_t n)
{
    return transcript_load(&((struct remote_engine *)eng)->conv, msgs, n);
}

/* The server's context is unknown here: it says when the conversation is too
 * long (an HTTP 400), so nothing is dropped ahead of it. */
static int32_t remote_fit_context(struct engine *eng, int32_t max_tokens)
{
    (void)eng;
    (void)max_tokens;
    return 0;
}

static bool remote_pop_turn(struct engine *eng)
{
    return transcript_pop_turn(&((struct remote_engine *)eng)->conv);
}

/* ---- one HTTP exchange ---- */

/* What the stop reasons servers send mean here; others end the turn too. */
static const struct {
    const char *name;
    enum engine_stop stop;
} FINISH_REASONS[] = {
    {"stop", ENGINE_STOP_EOS},
    {"eos", ENGINE_STOP_EOS},
    {"length", ENGINE_STOP_LENGTH},
};

/* HTTP statuses a user meets, each with what to do; KEY_HINT rows add the
 * API key's variable. */
enum { HINT_NONE, HINT_KEY, HINT_URL };
static const struct {
    long status;
    const char *what;
    const char *todo;
    int hint;
} HTTP_ERRORS[] = {
    {400, "bad request", "the server rejected the request (the conversation may be longer "
                         "than its context: start a new one)", HINT_NONE},
    {401, "unauthorized", "check the API key", HINT_KEY},
    {403, "forbidden", "check the API key", HINT_KEY},
    {404, "not found", "check that the server URL ends in /v1 and that the server has the "
                       "model", HINT_URL},
    {408, "request timeout", "retry", HINT_NONE},
    {413, "request too large", "the conversation is too long for the server: start a new one",
     HINT_NONE},
    {422, "unprocessable request", "check the model name and the sampling settings", HINT_URL},
    {429, "too many requests", "the server is busy or rate-limited: wait and retry", HINT_NONE},
    {500, "internal server error", "see the server's log", HINT_NONE},
    {502, "bad gateway", "the server behind the proxy is down or starting: retry later",
     HINT_NONE},
    {503, "service unavailable", "the server is starting or overloaded: retry later", HINT_NONE},
    {504, "gateway timeout", "the server is overloaded: retry later", HINT_NONE},
};

/* curl results a user meets, each with what to do. */
static const struct {
    CURLcode code;
    const char *what;
    const char *todo;
} CURL_ERRORS[] = {
    {CURLE_COULDNT_RESOLVE_HOST, "cannot resolve the host name", "check the server URL"},
    {CURLE_COULDNT_CONNECT, "cannot connect (connection refused or host unreachable)",
     "check that the server is running and listens on that port"},
    {CURLE_GOT_NOTHING, "the server closed the connection without answering",
     "check that it is an OpenAI-compatible server and see its log"},
    {CURLE_PARTIAL_FILE, "the server stopped in the middle of the reply", "see the server's log"},
    {CURLE_RECV_ERROR, "the connection broke in the middle of the reply",
     "see the server's log and retry"},
    {CURLE_SEND_ERROR, "the connection broke while sending the request", "retry"},
    {CURLE_PEER_FAILED_VERIFICATION, "the server's TLS certificate could not be verified",
     "install its CA, or skip verification (insecure) only for a server you trust"},
    {CURLE_SSL_CONNECT_ERROR, "the TLS handshake failed",
     "check that the port speaks https, or use http://"},
    {CURLE_UNSUPPORTED_PROTOCOL, "the URL's scheme is not http or https",
     "write the server URL as http://HOST:PORT/v1"},
};

struct xfer {
    struct remote_engine *e;
    const struct engine_turn_params *tp; /* NULL: a plain GET (the model list) */
    long status;
    bool status_seen;
    bool streaming; /* a 2xx event stream: bytes go to sse */
    struct kv_strbuf body; /* any other body, up to BODY_MAX */
    struct sse sse;
    struct u8s u8;
    struct kv_strbuf reply;
    bool in_think;  /* inside a "<think>" block we opened */
    bool done;      /* data: [DONE] */
    bool finished;  /* a finish_reason arrived */
    bool failed;    /* our own error in err: the transfer was stopped */
    bool cancelled;
    char err[512];
    struct engine_stats st;
    double t_start, t_first, t_last;
    int32_t chunks; /* text-bearing chunks: the live token count */
    bool usage;     /* the server reported usage */
};

static void xfer_fail(struct xfer *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void xfer_fail(struct xfer *x, const char *fmt, ...)
{
    if (x->failed)
        return;
    x->failed = true;
    int n = snprintf(x->err, sizeof x->err, "%s: ", x->e->origin);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err + n, sizeof x->err - (size_t)n, fmt, ap);
    va_end(ap);
}

static void stats_publish(struct remote_engine *e, const struct engine_stats *s)
{
    pthread_mutex_lock(&e->stats_lock);
    e->stats = *s;
    pthread_mutex_unlock(&e->stats_lock);
}

/* Text for the front-end and the reply. */
static int emit_raw(struct xfer *x, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (kv_strbuf_append(&x->reply, s, n) != 0) {
        xfer_fail(x, "out of memory for the reply");
        return -1;
    }
    if (x->tp->on_piece && !x->tp->on_piece(s, n, x->tp->user)) {
        atomic_store(&x->e->cancel, true);
        curl_multi_wakeup(x->e->multi);
    }
    return 0;
}

static int emit_flush(struct xfer *x)
{
    const char *v;
    size_t n = u8s_flush(&x->u8, &v);
    if (n == (size_t)-1) {
        xfer_fail(x, "out of memory for the reply");
        return -1;
    }
    return emit_raw(x, v, n);
}

/* A piece of content or reasoning text, still raw bytes from the server. */
static int emit_text(struct xfer *x, const char *s, size_t n, bool reasoning)
{
    if (reasoning != x->in_think) {
        if (emit_flush(x) != 0)
            return -1;
        const char *tag = reasoning ? "<think>" : "</think>";
        if (emit_raw(x, tag, strlen(tag)) != 0)
            return -1;
        x->in_think = reasoning;
    }
    const char *v;
    size_t vn = u8s_push(&x->u8, s, n, &v);
    if (vn == (size_t)-1) {
        xfer_fail(x, "out of memory for the reply");
        return -1;
    }
    double t = kv_now_s();
    if (x->chunks == 0) {
        x->t_first = t;
        x->st.ttft_s = t - x->t_start;
    }
    x->chunks++;
    x->t_last = t;
    if (!x->usage)
        x->st.gen_tokens = x->chunks;
    if (x->chunks > 1 && t > x->t_first)
        x->st.decode_tok_s = (x->chunks - 1) / (t - x->t_first);
    return emit_raw(x, v, vn);
}

static const char *json_str(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The message in an error body: {"error":{"message":...}} (OpenAI, vLLM),
 * {"error":"..."} (Ollama), {"message":...} or {"detail":...} (FastAPI). */
static const char *error_message(const cJSON *j)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (cJSON_IsString(err))
        return err->valuestring;
    if (cJSON_IsObject(err) && json_str(err, "message"))
        return json_str(err, "message");
    if (json_str(j, "message"))
        return json_str(j, "message");
    return json_str(j, "detail");
}

/* One event of the chat stream. Returns 0 to go on, -1 to stop the transfer. */
static int on_event(const char *data, size_t len, void *user)
{
    struct xfer *x = user;
    if (x->done)
        return 0;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        x->done = true;
        return 0;
    }
    cJSON *j = cJSON_ParseWithLength(data, len);
    if (!j || !cJSON_IsObject(j)) {
        char q[64];
        quote_server_text(data, len < 40 ? len : 40, q, sizeof q);
        xfer_fail(x, "the event stream holds malformed JSON (\"%s\"): is this an "
                     "OpenAI-compatible server?", q);
        cJSON_Delete(j);
        return -1;
    }
    const char *msg = error_message(j);
    if (cJSON_GetObjectItemCaseSensitive(j, "error") && msg) {
        char q[SERVER_MSG_MAX + 1];
        quote_server_text(msg, strlen(msg), q, sizeof q);
        xfer_fail(x, "the server failed mid-reply: \"%s\": see the server's log", q);
        cJSON_Delete(j);
        return -1;
    }
    int rc = 0;
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *c0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    if (cJSON_IsObject(c0)) {
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c0, "delta");
        const char *think = json_str(delta, "reasoning_content");
        if (!think)
            think = json_str(delta, "reasoning"); /* newer vLLM and Ollama */
        const char *text = json_str(delta, "content");
        if (think && *think)
            rc = emit_text(x, think, strlen(think), true);
        if (rc == 0 && text && *text)
            rc = emit_text(x, text, strlen(text), false);
        const char *fin = json_str(c0, "finish_reason");
        if (fin) {
            x->finished = true;
            x->st.stop = ENGINE_STOP_EOS;
            for (size_t i = 0; i < sizeof FINISH_REASONS / sizeof *FINISH_REASONS; i++)
                if (strcmp(fin, FINISH_REASONS[i].name) == 0)
                    x->st.stop = FINISH_REASONS[i].stop;
        }
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (cJSON_IsObject(usage)) {
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
        if (cJSON_IsNumber(pt) && cJSON_IsNumber(ct)) {
            x->usage = true;
            x->st.prompt_tokens = pt->valueint;
            x->st.gen_tokens = ct->valueint;
            /* the server may say how much of the prompt it had cached */
            const cJSON *det = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details");
            const cJSON *cached = cJSON_GetObjectItemCaseSensitive(det, "cached_tokens");
            x->st.prefill_tokens = pt->valueint - (cJSON_IsNumber(cached) ? cached->valueint : 0);
            x->st.kv_used = pt->valueint + ct->valueint;
            if (ct->valueint > 1 && x->t_last > x->t_first)
                x->st.decode_tok_s = (ct->valueint - 1) / (x->t_last - x->t_first);
        }
    }
    cJSON_Delete(j);
    stats_publish(x->e, &x->st);
    return rc;
}

/* Reads the status and content type once, when the body starts. */
static void see_status(struct xfer *x)
{
    if (x->status_seen)
        return;
    x->status_seen = true;
    curl_easy_getinfo(x->e->easy, CURLINFO_RESPONSE_CODE, &x->status);
    char *ct = NULL;
    curl_easy_getinfo(x->e->easy, CURLINFO_CONTENT_TYPE, &ct);
    if (!x->tp || x->status / 100 != 2)
        return;
    if (ct && strstr(ct, "text/event-stream")) {
        x->streaming = true;
        return;
    }
    char q[96];
    quote_server_text(ct ? ct : "none", ct ? strlen(ct) : 4, q, sizeof q);
    xfer_fail(x, "the server answered with Content-Type %s instead of an event stream: is "
                 "this an OpenAI-compatible server?", q);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *user)
{
    struct xfer *x = user;
    size_t n = size * nmemb;
    see_status(x);
    if (x->failed)
        return 0;
    if (!x->streaming) {
        size_t room = x->body.len < BODY_MAX ? BODY_MAX - x->body.len : 0;
        if (kv_strbuf_append(&x->body, ptr, n < room ? n : room) != 0)
            return 0;
        return n;
    }
    int rc = sse_feed(&x->sse, ptr, n);
    if (rc == SSE_TOO_LONG)
        xfer_fail(x, "a line of the event stream is longer than %u MiB: is this an "
                     "OpenAI-compatible server?", SSE_MAX_LINE >> 20);
    else if (rc == SSE_NOMEM)
        xfer_fail(x, "out of memory reading the event stream");
    return rc == 0 ? n : 0;
}

/* The message for a finished exchange that did not succeed, or "" if it did. */
static void explain(struct xfer *x, CURLcode res)
{
    struct remote_engine *e = x->e;
    if (x->failed)
        return;
    curl_easy_getinfo(e->easy, CURLINFO_RESPONSE_CODE, &x->status);
    if (x->status && x->status / 100 != 2) {
        const char *what = x->status / 100 == 3 ? "redirect" : x->status / 100 == 4
                                                                ? "request refused"
                                                                : "server error";
        const char *todo = x->status / 100 == 3
                               ? "redirects are not followed: give the final URL"
                               : "see the server's log";
        int hint = HINT_NONE;
        for (size_t i = 0; i < sizeof HTTP_ERRORS / sizeof *HTTP_ERRORS; i++) {
            if (HTTP_ERRORS[i].status == x->status) {
                what = HTTP_ERRORS[i].what;
                todo = HTTP_ERRORS[i].todo;
                hint = HTTP_ERRORS[i].hint;
            }
        }
        /* the server's own words, when its body says any */
        char said[SERVER_MSG_MAX + 32] = "";
        if (x->body.len) {
            cJSON *j = cJSON_ParseWithLength(x->body.p, x->body.len);
            const char *m = cJSON_IsObject(j) ? error_message(j) : NULL;
            char q[SERVER_MSG_MAX + 1];
            if (m)
                quote_server_text(m, strlen(m), q, sizeof q);
            else
                quote_server_text(x->body.p, x->body.len, q, sizeof q);
            if (*q)
                snprintf(said, sizeof said, " (\"%s\")", q);
            cJSON_Delete(j);
        }
        char extra[200] = "";
        if (hint == HINT_KEY && e->key_env)
            snprintf(extra, sizeof extra, " in $%s", e->key_env);
        else if (hint == HINT_KEY)
            snprintf(extra, sizeof extra, " (none is sent: name the variable that holds it)");
        else if (hint == HINT_URL)
            snprintf(extra, sizeof extra, " '%s'", e->model ? e->model : "");
        xfer_fail(x, "HTTP %ld %s%s: %s%s", x->status, what, said, todo, extra);
        return;
    }
    if (res == CURLE_OPERATION_TIMEDOUT) {
        /* before the request left, the connection was the problem */
        curl_off_t pre = 0;
        curl_easy_getinfo(e->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
        if (pre == 0)
            xfer_fail(x, "no connection within %ld s: check the host and port, and that no "
                         "firewall drops the packets", e->connect_s);
        else
            xfer_fail(x, "no answer for %ld s: the server is stuck or overloaded; see its log "
                         "(or raise the idle timeout)", e->idle_s);
        return;
    }
    if (res != CURLE_OK) {
        for (size_t i = 0; i < sizeof CURL_ERRORS / sizeof *CURL_ERRORS; i++) {
            if (CURL_ERRORS[i].code == res) {
                xfer_fail(x, "%s: %s", CURL_ERRORS[i].what, CURL_ERRORS[i].todo);
                return;
            }
        }
        xfer_fail(x, "%s", curl_easy_strerror(res));
        return;
    }
    if (x->tp && !x->finished && !x->done)
        xfer_fail(x, "the stream ended before the reply was complete (no finish_reason): the "
                     "server may have crashed; see its log");
}

/* Runs one exchange to its end, a cancel or a failure; the outcome is in X. */
static void run(struct remote_engine *e, struct xfer *x, const char *url, const char *post)
{
    CURL *c = e->easy;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, e->connect_s);
    /* less than a byte a second for idle_s seconds: a server that went quiet */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, e->idle_s);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, e->insecure ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, e->insecure ? 0L : 2L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kvchat/" KVCHAT_VERSION);

    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Accept: application/json, text/event-stream");
    if (post) {
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    }
    const char *key = api_key(e);
    char *auth = NULL;
    if (key && asprintf(&auth, "Authorization: Bearer %s", key) >= 0)
        h = curl_slist_append(h, auth);
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);

    CURLcode res = CURLE_OK;
    if (curl_multi_add_handle(e->multi, c) != CURLM_OK) {
        xfer_fail(x, "cannot start a transfer (curl)");
    } else {
        int running = 1;
        while (running) {
            if (atomic_load(&e->cancel)) {
                x->cancelled = true;
                break;
            }
            if (curl_multi_perform(e->multi, &running) != CURLM_OK || !running)
                break;
            if (x->failed)
                break;
            curl_multi_poll(e->multi, NULL, 0, POLL_MS, NULL);
        }
        int left;
        CURLMsg *m;
        while ((m = curl_multi_info_read(e->multi, &left)) != NULL)
            if (m->msg == CURLMSG_DONE)
                res = m->data.result;
        curl_multi_remove_handle(e->multi, c);
    }
    /* the header list holds the key: wipe it before it goes back to the heap */
    for (struct curl_slist *p = h; p; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(h);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);

    if (x->cancelled)
        return;
    if (x->tp && x->streaming && !x->failed && res == CURLE_OK) {
        int rc = sse_finish(&x->sse);
        if (rc == SSE_TOO_LONG || rc == SSE_NOMEM)
            xfer_fail(x, "the event stream ended in an overlong line");
    }
    explain(x, res);
}

/* {server}/LEAF as a URL (curl_free it), keeping the base URL's query. */
static char *endpoint(const struct remote_engine *e, const char *leaf)
{
    CURLU *u = curl_url_dup(e->url);
    char *path = NULL, *full = NULL, *np = NULL;
    if (u && curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        size_t n = strlen(path);
        while (n > 0 && path[n - 1] == '/')
            n--;
        if (asprintf(&np, "%.*s/%s", (int)n, path, leaf) >= 0 &&
            curl_url_set(u, CURLUPART_PATH, np, 0) == CURLUE_OK)
            curl_url_get(u, CURLUPART_URL, &full, 0);
    }
    free(np);
    curl_free(path);
    curl_url_cleanup(u);
    return full;
}

/* The server's root for its own endpoints (/metrics, /slots, /api/ps):
 * the base URL without its trailing /v1, query and credentials dropped.
 * Returns a malloc'd string or NULL. */
static char *server_root(const struct remote_engine *e)
{
    char *path = NULL, *root = NULL;
    if (curl_url_get(e->url, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        return NULL;
    size_t n = strlen(path);
    while (n > 0 && path[n - 1] == '/')
        n--;
    if (n >= 3 && memcmp(path + n - 3, "/v1", 3) == 0)
        n -= 3;
    if (asprintf(&root, "%s%.*s", e->origin, (int)n, path) < 0)
        root = NULL;
    curl_free(path);
    return root;
}

/* ---- a turn ---- */

/* An assistant message as the server should see it again: without the
 * reasoning block this engine wrapped in <think> (servers' templates drop a
 * model's reasoning from the history too). */
static const char *without_think(const char *s)
{
    if (strncmp(s, "<think>", 7) != 0)
        return s;
    const char *end = strstr(s, "</think>");
    return end ? end + 8 : s;
}

static char *build_request(const struct remote_engine *e, const struct engine_turn_params *tp)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *msgs = cJSON_AddArrayToObject(j, "messages");
    cJSON_AddStringToObject(j, "model", e->model);
    cJSON_AddBoolToObject(j, "stream", true);
    cJSON *so = cJSON_AddObjectToObject(j, "stream_options");
    cJSON_AddBoolToObject(so, "include_usage", true);
    const struct engine_sampling *s = &tp->sampling;
    cJSON_AddNumberToObject(j, "temperature", s->temperature);
    cJSON_AddNumberToObject(j, "top_p", s->top_p);
    if (s->top_k > 0)
        cJSON_AddNumberToObject(j, "top_k", s->top_k);
    cJSON_AddNumberToObject(j, "min_p", s->min_p);
    /* vLLM's and SGLang's multiplicative penalty, like ours; frequency_penalty
     * is an additive one and not the same thing */
    if (s->repeat_penalty != 1.0f)
        cJSON_AddNumberToObject(j, "repetition_penalty", s->repeat_penalty);
    /* servers take 32-bit seeds (llama-server) or 64-bit signed ones */
    cJSON_AddNumberToObject(j, "seed", (double)(s->seed & 0x7fffffffu));
    if (tp->max_tokens > 0)
        cJSON_AddNumberToObject(j, "max_tokens", tp->max_tokens);

    static const char *const ROLE[] = {
        [ENGINE_ROLE_SYSTEM] = "system",
        [ENGINE_ROLE_USER] = "user",
        [ENGINE_ROLE_ASSISTANT] = "assistant",
    };
    if (e->conv.system && *e->conv.system) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", e->conv.system);
        cJSON_AddItemToArray(msgs, m);
    }
    for (size_t i = 0; i < e->conv.n; i++) {
        const struct transcript_msg *tm = &e->conv.msgs[i];
        const char *c = tm->role == ENGINE_ROLE_ASSISTANT ? without_think(tm->content) : tm->content;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", ROLE[tm->role]);
        cJSON_AddStringToObject(m, "content", c);
        cJSON_AddItemToArray(msgs, m);
    }
    char *out = cJSON_PrintUnformatted(j); /* NULL when any allocation above failed */
    cJSON_Delete(j);
    return out;
}

static int remote_chat(struct engine *eng, const char *user_text,
                       const struct engine_turn_params *tp, char **reply, char *err,
                       size_t errlen)
{
    struct remote_engine *e = (struct remote_engine *)eng;
    if (reply)
        *reply = NULL;
    atomic_store(&e->cancel, false);
    struct xfer x = {.e = e, .tp = tp};
    x.st.running = true;
    x.st.prefill_tok_s = -1;
    x.st.decode_tok_s = -1;
    x.st.ttft_s = -1;
    x.st.stop = ENGINE_STOP_LENGTH;
    x.t_start = kv_now_s();
    stats_publish(e, &x.st);
    sse_init(&x.sse, on_event, &x);

    char *body = NULL, *url = NULL;
    bool pushed = transcript_push(&e->conv, ENGINE_ROLE_USER, user_text) == 0;
    if (!pushed || kv_strbuf_append(&x.reply, "", 0) != 0 ||
        !(body = build_request(e, tp)) || !(url = endpoint(e, "chat/completions"))) {
        xfer_fail(&x, "out of memory for the request");
    } else {
        run(e, &x, url, body);
    }
    free(body);
    curl_free(url);

    if (!x.failed || x.reply.len) {
        emit_flush(&x);
        if (x.in_think)
            emit_raw(&x, "</think>", 8);
    }
    if (x.cancelled)
        x.st.stop = ENGINE_STOP_CANCELLED;
    else if (x.done && !x.finished)
        x.st.stop = ENGINE_STOP_EOS; /* [DONE] without a finish_reason */
    bool keep = !x.failed || x.reply.len > 0;
    if (keep && transcript_push(&e->conv, ENGINE_ROLE_ASSISTANT, x.reply.p) != 0)
        xfer_fail(&x, "out of memory for the reply");
    if (!keep && pushed) {
        /* nothing came back: the user message stays out, as in the local engine */
        transcript_drop_last(&e->conv);
    }
    if (x.failed) {
        x.st.stop = ENGINE_STOP_ERROR;
        scrub_key(e, x.err);
        kv_seterr(err, errlen, "%s", x.err);
    }
    x.st.running = false;
    x.st.total_s = kv_now_s() - x.t_start;
    stats_publish(e, &x.st);
    if (reply && keep) {
        *reply = x.reply.p;
        x.reply.p = NULL;
    }
    free(x.reply.p);
    free(x.body.p);
    sse_free(&x.sse);
    u8s_free(&x.u8);
    return x.failed ? -1 : 0;
}

static void remote_cancel(struct engine *eng)
{
    struct remote_engine *e = (struct remote_engine *)eng;
    atomic_store(&e->cancel, true);
    curl_multi_wakeup(e->multi);
}

static void remote_server(struct engine *eng, struct engine_server *out)
{
    struct remote_engine *e = (struct remote_engine *)eng;
    if (e->fig)
        fig_get(e->fig, out);
}

static void remote_stats(struct engine *eng, struct engine_stats *out)
{
    struct remote_engine *e = (struct remote_engine *)eng;
    pthread_mutex_lock(&e->stats_lock);
    *out = e->stats;
    pthread_mutex_unlock(&e->stats_lock);
    /* the context, once the server has said it */
    struct engine_server sv;
    engine_server(eng, &sv);
    if (out->kv_capacity <= 0 && sv.n_ctx > 0)
        out->kv_capacity = sv.n_ctx;
}

static void remote_memory(struct engine *eng, struct engine_memory *out)
{
    (void)eng;
    *out = (struct engine_memory){
        .weights = ENGINE_UNKNOWN,
        .kv_cache = ENGINE_UNKNOWN,
        .scratch = ENGINE_UNKNOWN,
        .device_total = ENGINE_UNKNOWN,
        .device_free = ENGINE_UNKNOWN,
        .on_gpu = false,
    };
}

/* ---- creating one ---- */

/* GET {server}/models into X; *DATA is the answer's "data" array inside
 * *J (cJSON_Delete it), or X failed with the reason. */
static void get_models(struct remote_engine *e, struct xfer *x, cJSON **j, const cJSON **data)
{
    *j = NULL;
    *data = NULL;
    char *url = endpoint(e, "models");
    if (!url)
        xfer_fail(x, "out of memory");
    else
        run(e, x, url, NULL);
    curl_free(url);
    if (x->failed)
        return;
    *j = cJSON_ParseWithLength(x->body.p ? x->body.p : "", x->body.len);
    *data = cJSON_GetObjectItemCaseSensitive(*j, "data");
    if (!cJSON_IsArray(*data)) {
        *data = NULL;
        xfer_fail(x, "GET /models did not answer with a model list: is this an "
                     "OpenAI-compatible server, and does the URL end in /v1?");
    }
}

/* X's failure, scrubbed of the key, into ERR; 0 when X did not fail. */
static int xfer_result(struct remote_engine *e, struct xfer *x, char *err, size_t errlen)
{
    free(x->body.p);
    x->body.p = NULL;
    if (!x->failed)
        return 0;
    scrub_key(e, x->err);
    kv_seterr(err, errlen, "%s", x->err);
    return -1;
}

/* The first model the server lists. Returns 0 or -1 with ERR. */
static int first_model(struct remote_engine *e, char *err, size_t errlen)
{
    struct xfer x = {.e = e};
    cJSON *j;
    const cJSON *data;
    get_models(e, &x, &j, &data);
    if (!x.failed) {
        const char *id = json_str(cJSON_GetArrayItem(data, 0), "id");
        if (id && *id && strlen(id) < sizeof e->base.info.model_name)
            e->model = strdup(id);
        else if (!id || !*id)
            xfer_fail(&x, "the server lists no models: load one there, or name the model");
        else
            xfer_fail(&x, "the server's first model has an overlong name: name the model");
        if (!x.failed && !e->model)
            xfer_fail(&x, "out of memory");
    }
    cJSON_Delete(j);
    return xfer_result(e, &x, err, errlen);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Parses the base URL into e->url and e->origin; the URL itself never goes
 * into a message (it may carry credentials or a query). */
static int parse_server(struct remote_engine *e, const char *server, char *err, size_t errlen)
{
    e->url = curl_url();
    if (!e->url) {
        kv_seterr(err, errlen, "out of memory");
        return -1;
    }
    CURLUcode uc = curl_url_set(e->url, CURLUPART_URL, server, 0);
    char *scheme = NULL, *host = NULL, *port = NULL;
    if (uc == CURLUE_OK)
        uc = curl_url_get(e->url, CURLUPART_SCHEME, &scheme, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(e->url, CURLUPART_HOST, &host, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(e->url, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    int rc = 0;
    if (uc != CURLUE_OK) {
        kv_seterr(err, errlen, "the server URL is not valid (%s): write it as "
                  "http://HOST:PORT/v1", curl_url_strerror(uc));
        rc = -1;
    } else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        kv_seterr(err, errlen, "the server URL's scheme is %s: write it as http://HOST:PORT/v1 "
                  "or https://...", scheme);
        rc = -1;
    } else {
        snprintf(e->origin, sizeof e->origin, "%s://%s:%s", scheme, host, port);
        snprintf(e->base.info.device, sizeof e->base.info.device, "%s", host);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    return rc;
}

static void remote_free(struct engine *eng);
static const struct engine_ops remote_ops;

/* An engine that can make requests: the URL parsed, curl ready, the API key
 * variable checked; no model chosen yet. NULL with ERR. */
static struct remote_engine *remote_setup(const struct engine_params *p, char *err,
                                          size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        kv_seterr(err, errlen, "cannot start libcurl: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    if (p->connect_timeout_s < 0 || p->idle_timeout_s < 0) {
        kv_seterr(err, errlen, "timeouts are seconds, 0 for the default: %d and %d are not",
                  p->connect_timeout_s, p->idle_timeout_s);
        return NULL;
    }
    struct remote_engine *e = calloc(1, sizeof *e);
    if (!e) {
        kv_seterr(err, errlen, "out of memory");
        return NULL;
    }
    e->base.ops = &remote_ops;
    pthread_mutex_init(&e->stats_lock, NULL);
    atomic_init(&e->cancel, false);
    e->insecure = p->insecure;
    e->connect_s = p->connect_timeout_s ? p->connect_timeout_s : DEFAULT_CONNECT_S;
    e->idle_s = p->idle_timeout_s ? p->idle_timeout_s : DEFAULT_IDLE_S;
    e->easy = curl_easy_init();
    e->multi = curl_multi_init();
    if (!e->easy || !e->multi) {
        kv_seterr(err, errlen, "out of memory");
        goto fail;
    }
    if (parse_server(e, p->server, err, errlen) != 0)
        goto fail;
    if (p->api_key_env && *p->api_key_env) {
        e->key_env = strdup(p->api_key_env);
        if (!e->key_env) {
            kv_seterr(err, errlen, "out of memory");
            goto fail;
        }
        if (!api_key(e)) {
            kv_seterr(err, errlen, "%s: the API key variable $%s is empty or not set: export it, "
                      "or name another", e->origin, e->key_env);
            goto fail;
        }
    }
    return e;

fail:
    remote_free(&e->base);
    return NULL;
}

struct engine *remote_engine_new(const struct engine_params *p, char *err, size_t errlen)
{
    double t0 = kv_now_s();
    struct remote_engine *e = remote_setup(p, err, errlen);
    if (!e)
        return NULL;
    if (p->server_model && *p->server_model) {
        if (strlen(p->server_model) >= sizeof e->base.info.model_name) {
            kv_seterr(err, errlen, "the model name is longer than %zu bytes",
                      sizeof e->base.info.model_name - 1);
            goto fail;
        }
        e->model = strdup(p->server_model);
        if (!e->model) {
            kv_seterr(err, errlen, "out of memory");
            goto fail;
        }
    } else if (first_model(e, err, errlen) != 0) {
        goto fail;
    }

    struct engine_info *in = &e->base.info;
    snprintf(in->model_name, sizeof in->model_name, "%s", e->model);
    snprintf(in->model_path, sizeof in->model_path, "%s", e->origin);
    snprintf(in->arch, sizeof in->arch, "remote");
    snprintf(in->backend, sizeof in->backend, "remote");
    snprintf(in->template_name, sizeof in->template_name, "server");
    in->load_seconds = kv_now_s() - t0;
    e->stats.prefill_tok_s = e->stats.decode_tok_s = e->stats.ttft_s = -1;

    /* the figures are a bonus: without the thread they stay unknown */
    char *root = server_root(e);
    if (root) {
        struct fig_params fp = {.root = root, .model = e->model, .key_env = e->key_env,
                                .insecure = e->insecure, .connect_s = e->connect_s};
        e->fig = fig_start(&fp);
        free(root);
    }
    return &e->base;

fail:
    remote_free(&e->base);
    return NULL;
}

int remote_list_models(const struct engine_params *p, char ***names, size_t *n, char *err,
                       size_t errlen)
{
    *names = NULL;
    *n = 0;
    struct remote_engine *e = remote_setup(p, err, errlen);
    if (!e)
        return -1;
    struct xfer x = {.e = e};
    cJSON *j;
    const cJSON *data;
    get_models(e, &x, &j, &data);
    int count = x.failed ? 0 : cJSON_GetArraySize(data);
    char **v = count > 0 ? calloc((size_t)count, sizeof *v) : NULL;
    if (count > 0 && !v)
        xfer_fail(&x, "out of memory");
    size_t k = 0;
    for (int i = 0; v && i < count; i++) {
        const char *id = json_str(cJSON_GetArrayItem(data, i), "id");
        /* a name that could not be asked for (none, overlong) or that would
         * not print as itself on a terminal is left out */
        char q[SERVER_MSG_MAX + 1];
        if (!id || !*id || strlen(id) >= sizeof e->base.info.model_name)
            continue;
        quote_server_text(id, strlen(id), q, sizeof q);
        if (strcmp(q, id) != 0)
            continue;
        if (!(v[k] = strdup(id))) {
            xfer_fail(&x, "out of memory");
            break;
        }
        k++;
    }
    cJSON_Delete(j);
    int rc = xfer_result(e, &x, err, errlen);
    remote_free(&e->base);
    if (rc != 0) {
        engine_names_free(v, k);
        return -1;
    }
    *names = v;
    *n = k;
    return 0;
}

static void remote_free(struct engine *eng)
{
    struct remote_engine *e = (struct remote_engine *)eng;
    fig_stop(e->fig);
    curl_multi_cleanup(e->multi);
    curl_easy_cleanup(e->easy);
    curl_url_cleanup(e->url);
    transcript_free(&e->conv);
    free(e->model);
    free(e->key_env);
    pthread_mutex_destroy(&e->stats_lock);
    free(e);
}

static const struct engine_ops remote_ops = {
    .kind = "remote",
    .free = remote_free,
    .set_system = remote_set_system,
    .reset = remote_reset,
    .load_transcript = remote_load_transcript,
    .fit_context = remote_fit_context,
    .pop_turn = remote_pop_turn,
    .chat = remote_chat,
    .cancel = remote_cancel,
    .stats = remote_stats,
    .memory = remote_memory,
    .server = remote_server,
    /* no tokenizer and no raw model access: the wrappers answer for them */
};
