/* test_remote.c - the remote engine against tests/fault_server.py on the
 * loopback: a good streaming server (pieces, stop reasons, usage, reasoning,
 * the conversation carried across turns), a cancel within 100 ms, and every
 * failure a server or the network can produce (the message names the server,
 * never holds the API key, keeps the partial reply, and the next turn works).
 * The SSE framer, the UTF-8 stream and the parsing of servers' own figures
 * (Prometheus text, llama-server's slots, Ollama's running models) are
 * checked on their own too, and the figures end to end per server kind. Skips
 * (exit 77) without python3.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "engine.h"
#include "engine_tools.h"
#include "fault_client.h"
#include "figures.h"
#include "sse.h"
#include "utf8_stream.h"

#define KEY_VAR "KVCHAT_TEST_API_KEY"
#define KEY "sk-test-SECRET-4242"

static struct fault_server server = {.in = -1};
static int port, hole_port;
static char base[128], origin[128];

static int start_server(void **state)
{
    (void)state;
    if (!fault_server_start(&server, FAULT_SERVER))
        return -1;
    port = server.port;
    hole_port = server.hole_port;
    snprintf(base, sizeof base, "http://127.0.0.1:%d/v1", port);
    snprintf(origin, sizeof origin, "http://127.0.0.1:%d", port);
    setenv(KEY_VAR, KEY, 1);
    return 0;
}

static int stop_server(void **state)
{
    (void)state;
    fault_server_stop(&server);
    return 0;
}

static struct engine *open_at(const char *url, const char *model, char *err, size_t errlen)
{
    struct engine_params p = engine_default_params();
    p.server = url;
    p.server_model = model;
    p.api_key_env = KEY_VAR;
    p.connect_timeout_s = 1;
    p.idle_timeout_s = 1;
    return engine_new(&p, err, errlen);
}

static struct engine *open_good(void)
{
    char err[512];
    struct engine *e = open_at(base, NULL, err, sizeof err);
    if (!e)
        fail_msg("engine_new: %s", err);
    return e;
}

/* Collects the pieces, checking each one is whole, valid UTF-8. */
struct sink {
    char text[65536];
    size_t len;
    int calls;
    bool bad_piece;
    atomic_int pieces;
};

static bool valid_utf8(const char *s, size_t n)
{
    struct u8s u = {0};
    const char *v;
    size_t vn = u8s_push(&u, s, n, &v);
    bool ok = vn == n && memcmp(v, s, n) == 0 && u.nhold == 0;
    u8s_free(&u);
    return ok;
}

static bool on_piece(const char *t, size_t n, void *user)
{
    struct sink *s = user;
    if (!valid_utf8(t, n))
        s->bad_piece = true;
    if (s->len + n < sizeof s->text) {
        memcpy(s->text + s->len, t, n);
        s->len += n;
        s->text[s->len] = 0;
    }
    s->calls++;
    atomic_fetch_add(&s->pieces, 1);
    return true;
}

static struct engine_turn_params turn(struct sink *s, int32_t max_tokens)
{
    struct engine_turn_params tp = {0};
    tp.sampling = engine_sampling_defaults();
    tp.max_tokens = max_tokens;
    tp.on_piece = on_piece;
    tp.user = s;
    return tp;
}

/* One turn that must succeed; returns the reply (free it). */
static char *chat_ok(struct engine *e, const char *text, struct sink *s, int32_t max_tokens)
{
    struct engine_turn_params tp = turn(s, max_tokens);
    char *reply = NULL, err[512] = "";
    if (engine_chat(e, text, &tp, &reply, err, sizeof err) != 0)
        fail_msg("engine_chat(%s): %s", text, err);
    assert_non_null(reply);
    return reply;
}

static void test_info(void **state)
{
    (void)state;
    struct engine *e = open_good();
    const struct engine_info *in = engine_info(e);
    assert_string_equal(in->model_name, "fault-model"); /* the first of /v1/models */
    assert_string_equal(in->backend, "remote");
    assert_string_equal(in->arch, "remote");
    assert_string_equal(in->template_name, "server");
    assert_string_equal(in->device, "127.0.0.1");
    assert_int_equal(in->n_ctx, 0);
    assert_null(strstr(in->model_path, KEY));
    struct engine_memory m;
    engine_memory(e, &m);
    assert_true(m.weights == ENGINE_UNKNOWN && m.kv_cache == ENGINE_UNKNOWN &&
                m.device_total == ENGINE_UNKNOWN && m.device_free == ENGINE_UNKNOWN);
    int64_t n = 0;
    assert_null(engine_tokenize(e, "hi", false, &n));
    char err[256];
    assert_int_equal(engine_forward(e, (int32_t[]){1}, 1, 0, NULL, false, err, sizeof err), -1);
    engine_free(e);
}

static void test_good_two_turns(void **state)
{
    (void)state;
    struct engine *e = open_good();
    engine_set_system(e, "Be brief.");
    struct sink s = {0};
    char *r = chat_ok(e, "hello", &s, 0);
    assert_string_equal(r, "Hello, world \xc3\xa9!");
    assert_string_equal(s.text, r);
    assert_false(s.bad_piece); /* the split "é" came out whole */
    struct engine_stats st;
    engine_stats(e, &st);
    assert_int_equal(st.stop, ENGINE_STOP_EOS);
    assert_int_equal(st.prompt_tokens, 12);
    assert_int_equal(st.gen_tokens, 7);
    assert_false(st.running);
    assert_true(st.ttft_s >= 0 && st.total_s >= st.ttft_s);
    assert_true(st.decode_tok_s > 0);
    free(r);

    /* the second request carries the system prompt and the first exchange */
    struct sink s2 = {0};
    struct engine_turn_params tp = turn(&s2, 50);
    tp.sampling.repeat_penalty = 1.25f;
    tp.sampling.top_k = 7;
    char *echo = NULL, err[512];
    assert_int_equal(engine_chat(e, "echo", &tp, &echo, err, sizeof err), 0);
    assert_non_null(strstr(echo, "\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                                 "{\"role\":\"user\",\"content\":\"hello\"},{\"role\":"
                                 "\"assistant\",\"content\":\"Hello, world \xc3\xa9!\"},"
                                 "{\"role\":\"user\",\"content\":\"echo\"}]"));
    assert_non_null(strstr(echo, "\"model\":\"fault-model\""));
    assert_non_null(strstr(echo, "\"stream\":true"));
    assert_non_null(strstr(echo, "\"stream_options\":{\"include_usage\":true}"));
    assert_non_null(strstr(echo, "\"repetition_penalty\":1.25"));
    assert_non_null(strstr(echo, "\"top_k\":7"));
    assert_non_null(strstr(echo, "\"max_tokens\":50"));
    assert_non_null(strstr(echo, "\"seed\":"));
    assert_null(strstr(echo, "frequency_penalty"));
    free(echo);

    /* no penalty, no limit: neither field is sent (the echo above leaves the
     * conversation first, since it quotes them) */
    assert_true(engine_pop_turn(e));
    struct sink s3 = {0};
    tp = turn(&s3, 0);
    tp.sampling.repeat_penalty = 1;
    assert_int_equal(engine_chat(e, "echo", &tp, &echo, err, sizeof err), 0);
    assert_null(strstr(echo, "repetition_penalty"));
    assert_null(strstr(echo, "max_tokens"));
    free(echo);

    /* the key travels as a Bearer token */
    struct sink s4 = {0};
    r = chat_ok(e, "whoami", &s4, 0);
    assert_string_equal(r, "auth=Bearer " KEY);
    free(r);

    /* pop_turn and reset shape what the next request carries */
    assert_true(engine_pop_turn(e));
    engine_reset(e);
    struct sink s5 = {0};
    r = chat_ok(e, "echo", &s5, 0);
    assert_null(strstr(r, "hello"));
    free(r);
    engine_free(e);
}

static void test_reasoning(void **state)
{
    (void)state;
    struct engine *e = open_good();
    struct sink s = {0};
    char *r = chat_ok(e, "think", &s, 0);
    assert_string_equal(r, "<think>Let me think.</think>Answer.");
    assert_string_equal(s.text, r);
    free(r);
    /* the reasoning is not sent back */
    struct sink s2 = {0};
    r = chat_ok(e, "echo", &s2, 0);
    assert_non_null(strstr(r, "{\"role\":\"assistant\",\"content\":\"Answer.\"}"));
    free(r);
    engine_free(e);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    struct engine *e = open_good();
    struct sink s = {0};
    char *r = chat_ok(e, "badutf8", &s, 0);
    assert_string_equal(r, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c");
    assert_false(s.bad_piece);
    struct engine_stats st;
    engine_stats(e, &st);
    assert_int_equal(st.stop, ENGINE_STOP_EOS);
    free(r);
    engine_free(e);
}

static void test_length(void **state)
{
    (void)state;
    struct engine *e = open_good();
    struct sink s = {0};
    char *r = chat_ok(e, "endless", &s, 5);
    assert_string_equal(r, "tok tok tok tok tok ");
    struct engine_stats st;
    engine_stats(e, &st);
    assert_int_equal(st.stop, ENGINE_STOP_LENGTH);
    free(r);
    engine_free(e);
}

struct worker {
    struct engine *e;
    struct sink s;
    char *reply;
    int rc;
    char err[512];
    double t_done;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct engine_turn_params tp = turn(&w->s, 0);
    w->rc = engine_chat(w->e, "endless", &tp, &w->reply, w->err, sizeof w->err);
    w->t_done = kv_now_s();
    return NULL;
}

static void test_cancel(void **state)
{
    (void)state;
    struct worker w = {.e = open_good()};
    pthread_t t;
    pthread_create(&t, NULL, work, &w);
    while (atomic_load(&w.s.pieces) < 3)
        usleep(1000);
    struct engine_stats st;
    engine_stats(w.e, &st);
    assert_true(st.running);
    double t0 = kv_now_s();
    engine_cancel(w.e);
    pthread_join(t, NULL);
    double dt = w.t_done - t0;
    if (w.rc != 0)
        fail_msg("cancelled turn: %s", w.err);
    assert_true(dt < 0.1);
    engine_stats(w.e, &st);
    assert_int_equal(st.stop, ENGINE_STOP_CANCELLED);
    assert_non_null(strstr(w.reply, "tok tok tok "));
    /* the partial reply is in the conversation */
    struct sink s2 = {0};
    char *r = chat_ok(w.e, "echo", &s2, 0);
    char want[70000];
    snprintf(want, sizeof want, "{\"role\":\"assistant\",\"content\":\"%s\"}", w.reply);
    assert_non_null(strstr(r, want));
    free(r);
    free(w.reply);
    engine_free(w.e);
}

/* Server-side failures: each turn fails with a message naming the server and
 * never the key, keeps what arrived, and the next turn works. */
static void test_failures(void **state)
{
    (void)state;
    static const struct {
        const char *say;     /* the scenario */
        const char *expect;  /* in the message */
        const char *expect2; /* also in it, or NULL */
        const char *partial; /* the reply kept, or NULL when nothing came */
    } CASES[] = {
        {"e401", "HTTP 401", "$" KEY_VAR, NULL},
        {"e429", "HTTP 429", "retry", NULL},
        {"e500json", "HTTP 500", "CUDA out of memory [31m at layer 3 xxx", NULL},
        {"e500plain", "HTTP 500", "upstream exploded", NULL},
        {"e500empty", "HTTP 500", "server's log", NULL},
        {"redirect", "HTTP 307", "not followed", NULL},
        {"html", "text/html", "event stream", NULL},
        {"hangup", "without answering", NULL, NULL},
        {"silent", "no answer for 1 s", NULL, NULL},
        {"badjson", "malformed JSON", NULL, "partial"},
        {"errevent", "engine died", NULL, "partial"},
        {"longline", "longer than 1 MiB", NULL, "partial"},
        {"midstream", "middle of the reply", NULL, "partial text"},
        {"midclose", "ended before the reply was complete", NULL, "partial text"},
    };
    struct engine *e = open_good();
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        struct sink s = {0};
        struct engine_turn_params tp = turn(&s, 0);
        char *reply = NULL, err[512] = "";
        int rc = engine_chat(e, CASES[i].say, &tp, &reply, err, sizeof err);
        print_message("%s: %s\n", CASES[i].say, err);
        if (rc != -1)
            fail_msg("%s: did not fail", CASES[i].say);
        if (strncmp(err, origin, strlen(origin)) != 0)
            fail_msg("%s: the message does not name the server: %s", CASES[i].say, err);
        if (!strstr(err, CASES[i].expect) || (CASES[i].expect2 && !strstr(err, CASES[i].expect2)))
            fail_msg("%s: unexpected message: %s", CASES[i].say, err);
        assert_null(strstr(err, KEY));
        assert_null(strchr(err, '\n'));
        assert_true(strlen(err) < 400);
        struct engine_stats st;
        engine_stats(e, &st);
        assert_int_equal(st.stop, ENGINE_STOP_ERROR);
        if (CASES[i].partial) {
            assert_non_null(reply);
            assert_string_equal(reply, CASES[i].partial);
        } else {
            assert_null(reply);
        }
        free(reply);

        /* the engine carries on, with the partial reply in the conversation */
        struct sink s2 = {0};
        char *echo = chat_ok(e, "echo", &s2, 0);
        char want[256];
        snprintf(want, sizeof want, "{\"role\":\"user\",\"content\":\"%s\"}", CASES[i].say);
        if (CASES[i].partial) {
            assert_non_null(strstr(echo, want));
            snprintf(want, sizeof want, "{\"role\":\"assistant\",\"content\":\"%s\"}",
                     CASES[i].partial);
            assert_non_null(strstr(echo, want));
        } else {
            assert_null(strstr(echo, want));
        }
        free(echo);
        engine_reset(e);
    }
    engine_free(e);
}

/* A port nothing listens on (bound, then released). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* One failing turn at URL: the message starts with ORIGIN and holds EXPECT. */
static void expect_turn_fails(const char *url, const char *org, const char *expect,
                              const char *expect_alt, double max_s)
{
    char err[512];
    struct engine *e = open_at(url, "fault-model", err, sizeof err);
    if (!e)
        fail_msg("engine_new(%s): %s", url, err);
    struct sink s = {0};
    struct engine_turn_params tp = turn(&s, 0);
    char *reply = NULL;
    double t0 = kv_now_s();
    int rc = engine_chat(e, "hello", &tp, &reply, err, sizeof err);
    double dt = kv_now_s() - t0;
    print_message("%s (%.2f s)\n", err, dt);
    assert_int_equal(rc, -1);
    assert_null(reply);
    if (strncmp(err, org, strlen(org)) != 0)
        fail_msg("the message does not name %s: %s", org, err);
    if (!strstr(err, expect) && !(expect_alt && strstr(err, expect_alt)))
        fail_msg("unexpected message: %s", err);
    assert_null(strstr(err, KEY));
    assert_true(dt < max_s);
    /* the failed turn left nothing behind, and a second try fails the same way */
    assert_false(engine_pop_turn(e));
    assert_int_equal(engine_chat(e, "hello", &tp, &reply, err, sizeof err), -1);
    engine_free(e);
}

static void test_network_failures(void **state)
{
    (void)state;
    char url[160], org[160];
    int p = closed_port();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1?token=" KEY, p);
    snprintf(org, sizeof org, "http://127.0.0.1:%d", p);
    expect_turn_fails(url, org, "cannot connect", NULL, 3);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", hole_port);
    snprintf(org, sizeof org, "http://127.0.0.1:%d", hole_port);
    expect_turn_fails(url, org, "no connection within 1 s", NULL, 3);

    /* .invalid never resolves; a resolver that does not answer is a timeout */
    expect_turn_fails("http://kvchat-test.invalid:8000/v1", "http://kvchat-test.invalid:8000",
                      "resolve", "no connection within", 5);

    /* a URL without /v1 */
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    expect_turn_fails(url, origin, "HTTP 404", "ends in /v1", 3);
}

static void test_new_errors(void **state)
{
    (void)state;
    char err[512], url[160], org[160];
    int p = closed_port();
    snprintf(url, sizeof url, "http://user:" KEY "@127.0.0.1:%d/v1", p);
    snprintf(org, sizeof org, "http://127.0.0.1:%d", p);
    /* no model named: the model list is asked for, and fails */
    assert_null(open_at(url, NULL, err, sizeof err));
    assert_int_equal(strncmp(err, org, strlen(org)), 0);
    assert_null(strstr(err, KEY));

    snprintf(url, sizeof url, "http://127.0.0.1:%d/empty/v1", port);
    assert_null(open_at(url, NULL, err, sizeof err));
    assert_non_null(strstr(err, "lists no models"));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/html/v1", port);
    assert_null(open_at(url, NULL, err, sizeof err));
    assert_non_null(strstr(err, "model list"));

    assert_null(open_at("ftp://127.0.0.1/v1", "m", err, sizeof err));
    assert_non_null(strstr(err, "http://HOST:PORT/v1"));
    assert_null(open_at("not a url", "m", err, sizeof err));
    assert_non_null(strstr(err, "http://HOST:PORT/v1"));

    struct engine_params ps = engine_default_params();
    ps.server = base;
    ps.api_key_env = "KVCHAT_TEST_UNSET_KEY_VAR";
    unsetenv("KVCHAT_TEST_UNSET_KEY_VAR");
    assert_null(engine_new(&ps, err, sizeof err));
    assert_non_null(strstr(err, "$KVCHAT_TEST_UNSET_KEY_VAR"));
}

/* ---- the framer and the UTF-8 stream on their own ---- */

struct events {
    char got[1024];
    int n;
};

static int collect(const char *data, size_t len, void *user)
{
    struct events *ev = user;
    size_t l = strlen(ev->got);
    snprintf(ev->got + l, sizeof ev->got - l, "[%.*s]", (int)len, data);
    ev->n++;
    return 0;
}

static void test_sse(void **state)
{
    (void)state;
    static const char STREAM[] = ": comment\r\nevent: x\r\ndata: one\r\n\r\ndata:two\rdata: "
                                 "2b\r\rid: 7\n\ndata\n\ndata: [DONE]";
    /* every split point gives the same events */
    for (size_t cut = 0; cut < sizeof STREAM - 1; cut++) {
        struct events ev = {0};
        struct sse s;
        sse_init(&s, collect, &ev);
        assert_int_equal(sse_feed(&s, STREAM, cut), 0);
        assert_int_equal(sse_feed(&s, STREAM + cut, sizeof STREAM - 1 - cut), 0);
        assert_int_equal(sse_finish(&s), 0);
        assert_string_equal(ev.got, "[one][two\n2b][][[DONE]]");
        sse_free(&s);
    }
    /* an overlong line is an error, not unbounded memory */
    struct events ev = {0};
    struct sse s;
    sse_init(&s, collect, &ev);
    char *big = malloc(SSE_MAX_LINE);
    memset(big, 'x', SSE_MAX_LINE);
    assert_int_equal(sse_feed(&s, "data: ", 6), 0);
    assert_int_equal(sse_feed(&s, big, SSE_MAX_LINE), SSE_TOO_LONG);
    free(big);
    sse_free(&s);
}

static void test_utf8_stream(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } CASES[] = {
        {"abc", "abc"},
        {"\xc3\xa9", "\xc3\xa9"},
        {"\xe2\x82\xac", "\xe2\x82\xac"},
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
        {"\xff", "\xef\xbf\xbd"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe2\x82" "c", "\xef\xbf\xbd" "c"},
        {"a\xe2\x82", "a\xef\xbf\xbd"}, /* cut at the end: replaced at the flush */
    };
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        size_t n = strlen(CASES[i].in);
        /* byte by byte: pieces are whole characters and add up to the answer */
        struct u8s u = {0};
        char got[64] = "";
        for (size_t k = 0; k < n; k++) {
            const char *v;
            size_t vn = u8s_push(&u, CASES[i].in + k, 1, &v);
            assert_true(valid_utf8(v, vn));
            strncat(got, v, vn);
        }
        const char *v;
        size_t vn = u8s_flush(&u, &v);
        strncat(got, v, vn);
        assert_string_equal(got, CASES[i].out);
        u8s_free(&u);
    }
}

/* ---- the server's own figures ---- */

static bool unknown_all(const struct engine_server *s)
{
    return s->kv_frac < 0 && s->kv_tokens < 0 && s->n_ctx < 0 && s->reqs_running < 0 &&
           s->reqs_waiting < 0 && s->prefix_hit_rate < 0 && s->vram_bytes < 0;
}

static void test_prometheus(void **state)
{
    (void)state;
    struct engine_server s;
    /* comments, labels with a quoted '}', '"' and spaces, CRLF, a timestamp,
     * metrics kvchat does not read */
    const char *text =
        "# HELP vllm:num_requests_running Number of requests {running}.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        "vllm:num_requests_running{model_name=\"a} \\\"b\\\"\",x=\"1\"} 4 1712345678000\r\n"
        "\n"
        "  vllm:num_requests_waiting 1.5e1\n"
        "vllm:num_requests_running_extra 99\n"
        "vllm:gpu_cache_usage_perc{model_name=\"a\"} 0.5\n"
        "vllm:gpu_cache_usage_perc{model_name=\"b\"} 0.25\n"
        "vllm:prefix_cache_hits_total 30\n"
        "vllm:prefix_cache_queries_total 120\n"
        "not a sample line\n"
        "vllm:gpu_prefix_cache_hit_rate{broken=\"unclosed 0.9\n"
        "vllm:kv_cache_usage_perc";
    fig_clear(&s);
    assert_int_equal(fig_parse_metrics(text, strlen(text), &s), 6);
    assert_int_equal(s.reqs_running, 4);
    assert_int_equal(s.reqs_waiting, 15);
    assert_true(fabs(s.kv_frac - 0.375) < 1e-12); /* two series: the mean */
    assert_true(fabs(s.prefix_hit_rate - 0.25) < 1e-12); /* hits / queries */
    assert_true(s.kv_tokens < 0 && s.n_ctx < 0 && s.vram_bytes < 0);
    assert_string_equal(s.source, "vllm /metrics");

    /* NaN and infinite samples are unknown, not 0; no queries yet: no rate */
    const char *nan = "vllm:gpu_cache_usage_perc NaN\nvllm:num_requests_running +Inf\n"
                      "vllm:num_requests_waiting -Inf\nvllm:prefix_cache_hits_total 0\n"
                      "vllm:prefix_cache_queries_total 0\n";
    fig_clear(&s);
    fig_parse_metrics(nan, strlen(nan), &s);
    assert_true(unknown_all(&s));

    /* nothing kvchat reads (another exporter, HTML, empty): unchanged */
    const char *other[] = {"process_cpu_seconds_total 12\n# EOF\n", "<html>x</html>", ""};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        fig_clear(&s);
        assert_int_equal(fig_parse_metrics(other[i], strlen(other[i]), &s), 0);
        assert_true(unknown_all(&s));
        assert_string_equal(s.source, "");
    }

    /* llama-server */
    const char *ll = "llamacpp:kv_cache_usage_ratio 0.125\nllamacpp:kv_cache_tokens 512\n"
                     "llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n";
    fig_clear(&s);
    assert_int_equal(fig_parse_metrics(ll, strlen(ll), &s), 4);
    assert_true(fabs(s.kv_frac - 0.125) < 1e-12);
    assert_int_equal(s.kv_tokens, 512);
    assert_int_equal(s.reqs_running, 1);
    assert_int_equal(s.reqs_waiting, 0); /* a real 0 is 0 */
    assert_true(s.prefix_hit_rate < 0);
    assert_string_equal(s.source, "llama-server /metrics");
}

static void test_slots_and_ps(void **state)
{
    (void)state;
    struct engine_server s;
    const char *slots = "[{\"id\":0,\"n_ctx\":4096,\"n_past\":100},{\"id\":1,\"n_ctx\":4096,"
                        "\"n_past\":20}]";
    fig_clear(&s);
    s.source[0] = 0;
    assert_int_equal(fig_parse_slots(slots, strlen(slots), &s), 0);
    assert_int_equal(s.n_ctx, 4096);
    assert_int_equal(s.kv_tokens, 120);
    /* the metrics' token count wins over the slots' */
    fig_clear(&s);
    s.kv_tokens = 7;
    fig_parse_slots(slots, strlen(slots), &s);
    assert_int_equal(s.kv_tokens, 7);
    /* not a slot list (llama-server without slots says so in an object) */
    const char *no = "{\"error\":{\"code\":501,\"message\":\"This server does not support slots\"}}";
    fig_clear(&s);
    assert_int_equal(fig_parse_slots(no, strlen(no), &s), -1);
    assert_true(unknown_all(&s));
    /* a slot without the fields: unknown */
    fig_clear(&s);
    assert_int_equal(fig_parse_slots("[{\"id\":0}]", 12, &s), 0);
    assert_true(unknown_all(&s));

    const char *ps = "{\"models\":[{\"name\":\"other:7b\",\"size_vram\":1},"
                     "{\"name\":\"llama3:latest\",\"model\":\"llama3:latest\","
                     "\"size_vram\":3338801804,\"context_length\":8192}]}";
    fig_clear(&s);
    assert_int_equal(fig_parse_ollama_ps(ps, strlen(ps), "llama3", &s), 0); /* :latest */
    assert_int_equal(s.vram_bytes, 3338801804);
    assert_int_equal(s.n_ctx, 8192);
    fig_clear(&s);
    assert_int_equal(fig_parse_ollama_ps(ps, strlen(ps), "llama3:latest", &s), 0);
    assert_int_equal(s.vram_bytes, 3338801804);
    /* our model not loaded yet: a list, but nothing known */
    fig_clear(&s);
    assert_int_equal(fig_parse_ollama_ps(ps, strlen(ps), "mistral", &s), 0);
    assert_true(unknown_all(&s));
    fig_clear(&s);
    assert_int_equal(fig_parse_ollama_ps("[1,2]", 5, "llama3", &s), -1);
    assert_int_equal(fig_parse_ollama_ps("not json", 8, "llama3", &s), -1);
    assert_true(unknown_all(&s));
}

/* The engine's figures from server PREFIX, once its sampler has read them. */
static struct engine *figures_from(const char *prefix, const char *model,
                                   struct engine_server *out)
{
    char url[256], err[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s/v1", port, prefix);
    struct engine *e = open_at(url, model, err, sizeof err);
    if (!e)
        fail_msg("engine_new(%s): %s", url, err);
    double t0 = kv_now_s();
    do {
        engine_server(e, out);
        if (out->source[0])
            break;
        usleep(20000);
    } while (kv_now_s() - t0 < 5);
    return e;
}

static void test_server_figures(void **state)
{
    (void)state;
    struct engine_server s;
    struct engine_stats st;

    struct engine *e = figures_from("/vllm", NULL, &s);
    assert_string_equal(s.source, "vllm /metrics");
    assert_true(fabs(s.kv_frac - 0.375) < 1e-12);
    assert_int_equal(s.reqs_running, 3);
    assert_int_equal(s.reqs_waiting, 2);
    assert_true(fabs(s.prefix_hit_rate - 0.25) < 1e-12);
    assert_true(s.n_ctx < 0 && s.vram_bytes < 0 && s.kv_tokens < 0); /* vLLM says none */
    assert_true(s.age_s >= 0 && s.age_s < 5);
    engine_stats(e, &st);
    assert_int_equal(st.kv_capacity, 0); /* the context stays unknown */
    /* a turn while the sampler runs */
    struct sink k = {0};
    free(chat_ok(e, "hello", &k, 0));
    engine_free(e);

    e = figures_from("/vllmv1", NULL, &s);
    assert_true(fabs(s.kv_frac - 0.375) < 1e-12);
    assert_int_equal(s.reqs_running, 3);
    assert_int_equal(s.reqs_waiting, 4);
    assert_true(fabs(s.prefix_hit_rate - 0.4) < 1e-12);
    engine_free(e);

    e = figures_from("/llama", NULL, &s);
    /* /metrics and /slots are read in one round: wait for both */
    for (double t0 = kv_now_s(); !strstr(s.source, "slots") && kv_now_s() - t0 < 5; usleep(20000))
        engine_server(e, &s);
    assert_string_equal(s.source, "llama-server /metrics, llama-server /slots");
    assert_true(fabs(s.kv_frac - 0.125) < 1e-12);
    assert_int_equal(s.kv_tokens, 512);
    assert_int_equal(s.n_ctx, 4096);
    assert_int_equal(s.reqs_running, 1);
    assert_int_equal(s.reqs_waiting, 0);
    engine_stats(e, &st);
    assert_int_equal(st.kv_capacity, 4096); /* the slot's context */
    engine_free(e);

    e = figures_from("/ollama", NULL, &s);
    assert_string_equal(s.source, "ollama /api/ps");
    assert_int_equal(s.vram_bytes, 3338801804);
    assert_int_equal(s.n_ctx, 8192);
    assert_true(s.kv_frac < 0 && s.reqs_running < 0 && s.prefix_hit_rate < 0);
    engine_free(e);

    /* NaN metrics, and a server that publishes nothing: all unknown */
    char url[256], err[512];
    const char *none[] = {"/nan", ""};
    for (size_t i = 0; i < 2; i++) {
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s/v1", port, none[i]);
        e = open_at(url, NULL, err, sizeof err);
        assert_non_null(e);
        usleep(300000); /* a round of 404s (or NaNs) on the loopback */
        engine_server(e, &s);
        assert_true(unknown_all(&s));
        engine_free(e);
    }
}

int main(void)
{
    if (system("python3 -c '' >/dev/null 2>&1") != 0) {
        printf("SKIPPED: python3 not found (tests/fault_server.py needs it)\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse),
        cmocka_unit_test(test_utf8_stream),
        cmocka_unit_test(test_prometheus),
        cmocka_unit_test(test_slots_and_ps),
        cmocka_unit_test(test_server_figures),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_good_two_turns),
        cmocka_unit_test(test_reasoning),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_length),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_network_failures),
        cmocka_unit_test(test_new_errors),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
