/* test_conversation.c - app/conversation.c, the one path from an engine to
 * the history, with the real default model (SmolLM2-135M, temperature 0, a
 * few tokens a reply) and, where the remote engine is built and python3 is
 * there, tests/fault_server.py on the loopback as the server: each reply
 * records the engine and model that produced it, a session created on a
 * server records the server's model with no digest, and a session moves
 * from the local model to the server and back, its messages replayed into
 * whichever engine resumes it. Exits 77 (skipped) without the model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fault_client.h"
#include "testutil.h"
#include "conversation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MODEL_FILE TEST_MODEL_SMOLLM2

static char model_path[4200];
static struct engine *local;

/* ---- the fault server (tests/fault_server.py), when it can run ---- */

#ifdef FAULT_SERVER
static struct fault_server server = {.in = -1};
static char server_url[128], server_hostport[64];

static bool start_server(void)
{
    if (system("python3 -c 'import json' >/dev/null 2>&1") != 0 ||
        !fault_server_start(&server, FAULT_SERVER))
        return false;
    snprintf(server_url, sizeof server_url, "http://127.0.0.1:%d/v1", server.port);
    snprintf(server_hostport, sizeof server_hostport, "127.0.0.1:%d", server.port);
    return true;
}

static void stop_server(void) { fault_server_stop(&server); }

static struct engine *open_remote(void)
{
    struct engine_params p = engine_default_params();
    p.server = server_url;
    p.connect_timeout_s = 2;
    p.idle_timeout_s = 10;
    char err[512];
    struct engine *e = engine_new(&p, err, sizeof err);
    if (!e)
        fail_msg("remote engine_new: %s", err);
    return e;
}
#endif

/* ---- helpers ---- */

static struct hist *open_db(char *path, size_t cap, const char *tag)
{
    char dir[1024], err[1024];
    test_tmpdir(dir, sizeof dir, tag);
    assert_true(dir[0] != 0);
    snprintf(path, cap, "%s/history.db", dir);
    struct hist *h = hist_open(path, err, sizeof err);
    if (!h)
        fail_msg("hist_open: %s", err);
    return h;
}

/* Greedy, short replies: the test needs replies, not good ones. */
static void options(struct kv_options *o)
{
    memset(o, 0, sizeof *o);
    o->sampling = engine_sampling_defaults();
    o->sampling.temperature = 0;
    o->sampling_set = true;
    o->max_tokens = 6;
    o->resume = KV_RESUME_NONE;
}

/* One whole turn through conv_turn, which must save; returns the reply. */
static char *turn(struct conv *c, const char *text, const struct kv_options *o)
{
    struct engine_turn_params tp = {.sampling = o->sampling, .max_tokens = o->max_tokens};
    char *reply = NULL, err[512] = "";
    int rc = conv_turn(c, text, o, &tp, NULL, &reply, err, sizeof err);
    if (rc != 0)
        fail_msg("conv_turn(%s): %s", text, err);
    if (c->err[0])
        fail_msg("conv_turn(%s) did not save: %s", text, c->err);
    assert_non_null(reply);
    return reply;
}

static void resume(struct conv *c, int64_t sid, struct kv_options *o)
{
    int32_t dropped = -1;
    char err[512] = "";
    if (conv_resume(c, sid, o, &dropped, err, sizeof err) != 0)
        fail_msg("conv_resume(%lld): %s", (long long)sid, err);
    assert_int_equal(dropped, 0);
}

/* Message I of session SID: role, and for a reply its engine and model. */
static void assert_message(struct hist *h, int64_t sid, size_t i, size_t n_want, enum hist_role role,
                           const char *content, const char *engine, const char *model)
{
    struct hist_message *m;
    size_t n;
    assert_int_equal(hist_messages(h, sid, &m, &n), HIST_OK);
    assert_int_equal(n, n_want);
    assert_int_equal(m[i].role, role);
    if (content)
        assert_string_equal(m[i].content, content);
    if (engine) {
        assert_non_null(m[i].engine);
        assert_string_equal(m[i].engine, engine);
        assert_non_null(m[i].model);
        assert_string_equal(m[i].model, model);
    } else {
        assert_true(m[i].engine == NULL && m[i].model == NULL);
    }
    hist_messages_free(m, n);
}

static int32_t last_prompt_tokens(struct engine *e)
{
    struct engine_stats st;
    engine_stats(e, &st);
    return st.prompt_tokens;
}

/* ---- tests ---- */

/* A session begun on the local model: the session names the file and its
 * digest, each reply "cpu" and the file's base name; resumed by a second
 * conversation (a later kvchat), the old turns are replayed into the engine. */
static void test_local_session(void **state)
{
    (void)state;
    char path[1200];
    struct hist *h = open_db(path, sizeof path, "conv-local");
    struct kv_options o;
    options(&o);
    engine_reset(local);
    struct conv c;
    conv_init(&c, local, h);
    char *r1 = turn(&c, "Say hello.", &o);
    int32_t first_prompt = last_prompt_tokens(local);
    assert_true(c.sid > 0);
    int64_t sid = c.sid;
    struct hist_session s;
    assert_int_equal(hist_session_get(h, sid, &s), HIST_OK);
    assert_string_equal(s.model_name, MODEL_FILE);
    assert_non_null(s.model_digest);
    assert_true(strncmp(s.model_digest, "fnv1a64:", 8) == 0);
    hist_session_clear(&s);
    assert_message(h, sid, 0, 2, HIST_ROLE_USER, "Say hello.", NULL, NULL);
    assert_message(h, sid, 1, 2, HIST_ROLE_ASSISTANT, r1, engine_info(local)->backend, MODEL_FILE);
    assert_string_equal(engine_info(local)->backend, "cpu");
    free(r1);

    engine_reset(local);
    struct conv c2;
    conv_init(&c2, local, h);
    resume(&c2, sid, &o);
    char *r2 = turn(&c2, "Again.", &o);
    assert_int_equal(c2.sid, sid);
    /* The replayed exchange is in the prompt: longer than the first one. */
    assert_true(last_prompt_tokens(local) > first_prompt);
    assert_message(h, sid, 3, 4, HIST_ROLE_ASSISTANT, r2, "cpu", MODEL_FILE);
    free(r2);
    hist_close(h);
}

/* Replies of both reasoning formats are stored with the thinking apart and
 * the answer alone as the content: a think block (the DeepSeek-R1 form, the
 * prompt's "<think>\n" kept) and a harmony reply, headers and all. */
static void test_thinking_stored_apart(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"<think>\nhmm</think>\n\nA pear.", "\nhmm", "A pear."},
        {"<|channel|>analysis<|message|>why<|end|><|start|>assistant<|channel|>final"
         "<|message|>because",
         "why", "because"},
        {"<|channel|>final<|message|>plain", NULL, "plain"},
    };
    char path[1200];
    struct hist *h = open_db(path, sizeof path, "conv-thinking");
    struct kv_options o;
    options(&o);
    engine_reset(local);
    struct conv c;
    conv_init(&c, local, h);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int64_t uid;
        assert_int_equal(conv_begin_turn(&c, "q", &o, &uid), 0);
        struct engine_stats st = {.stop = ENGINE_STOP_EOS};
        assert_int_equal(conv_finish_turn(&c, cases[k][0], &st, HIST_END_STOP), 0);
        struct hist_message *m;
        size_t n;
        assert_int_equal(hist_messages(h, c.sid, &m, &n), HIST_OK);
        assert_int_equal(n, 2 * (k + 1));
        const struct hist_message *r = &m[n - 1];
        assert_int_equal(r->role, HIST_ROLE_ASSISTANT);
        assert_string_equal(r->content, cases[k][2]);
        if (cases[k][1]) {
            assert_non_null(r->thinking);
            assert_string_equal(r->thinking, cases[k][1]);
        } else {
            assert_true(r->thinking == NULL || *r->thinking == 0);
        }
        hist_messages_free(m, n);
    }
    hist_close(h);
}

#ifdef FAULT_SERVER
/* Local model, then the server, then the local model again, in one session;
 * and a session begun on the server, then continued locally. */
static void test_across_engines(void **state)
{
    (void)state;
    if (!start_server()) {
        printf("SKIPPED: python3 or the fault server is not available\n");
        skip();
    }
    char path[1200], model_at[256];
    struct hist *h = open_db(path, sizeof path, "conv-across");
    struct engine *remote = open_remote();
    snprintf(model_at, sizeof model_at, "%s@%s", engine_info(remote)->model_name, server_hostport);
    assert_string_equal(engine_info(remote)->model_name, "fault-model");
    struct kv_options o;
    options(&o);

    /* Begun locally. */
    engine_reset(local);
    struct conv c;
    conv_init(&c, local, h);
    free(turn(&c, "Name a colour.", &o));
    int32_t first_prompt = last_prompt_tokens(local);
    int64_t sid = c.sid;

    /* Resumed on the server: no refusal, and the server is sent the
     * replayed conversation ("echo" answers with the request it got). */
    struct conv cr;
    conv_init(&cr, remote, h);
    resume(&cr, sid, &o);
    char *echo = turn(&cr, "echo back", &o);
    assert_non_null(strstr(echo, "Name a colour."));
    assert_true(strstr(echo, "Name a colour.") < strstr(echo, "echo back"));
    free(echo);
    assert_message(h, sid, 3, 4, HIST_ROLE_ASSISTANT, NULL, "remote", model_at);
    assert_message(h, sid, 1, 4, HIST_ROLE_ASSISTANT, NULL, "cpu", MODEL_FILE);
    struct hist_session s;
    assert_int_equal(hist_session_get(h, sid, &s), HIST_OK);
    assert_string_equal(s.model_name, MODEL_FILE); /* the session keeps the model it began with */
    hist_session_clear(&s);

    /* And back on the local model, the server's reply among the replayed turns. */
    engine_reset(local);
    struct conv c2;
    conv_init(&c2, local, h);
    resume(&c2, sid, &o);
    free(turn(&c2, "Thanks.", &o));
    assert_true(last_prompt_tokens(local) > first_prompt + 20); /* the echoed request is long */
    assert_message(h, sid, 5, 6, HIST_ROLE_ASSISTANT, NULL, "cpu", MODEL_FILE);
    assert_message(h, sid, 3, 6, HIST_ROLE_ASSISTANT, NULL, "remote", model_at);

    /* A session created on the server names the server's model, no digest. */
    struct conv cs;
    conv_init(&cs, remote, h);
    conv_new(&cs);
    char *r = turn(&cs, "hello", &o);
    assert_string_equal(r, "Hello, world \xc3\xa9!");
    int64_t rsid = cs.sid;
    assert_true(rsid > 0 && rsid != sid);
    assert_int_equal(hist_session_get(h, rsid, &s), HIST_OK);
    assert_string_equal(s.model_name, model_at);
    assert_non_null(s.model_digest);
    assert_string_equal(s.model_digest, "");
    hist_session_clear(&s);
    assert_message(h, rsid, 1, 2, HIST_ROLE_ASSISTANT, r, "remote", model_at);
    free(r);

    /* Continued locally. */
    engine_reset(local);
    struct conv c3;
    conv_init(&c3, local, h);
    resume(&c3, rsid, &o);
    free(turn(&c3, "Who are you?", &o));
    assert_message(h, rsid, 3, 4, HIST_ROLE_ASSISTANT, NULL, "cpu", MODEL_FILE);

    engine_free(remote);
    hist_close(h);
    stop_server();
}
#endif

int main(void)
{
    char dir[2048];
    test_models_dir(dir, sizeof dir);
    snprintf(model_path, sizeof model_path, "%s/%s", dir, MODEL_FILE);
    if (access(model_path, R_OK) != 0) {
        if (test_in_ci()) {
            fprintf(stderr, "model %s missing in CI (scripts/test fetches it)\n", model_path);
            return 1;
        }
        printf("SKIPPED: model %s not found (run scripts/test to fetch it)\n", model_path);
        return 77;
    }
    struct engine_params p = engine_default_params();
    p.model_path = model_path;
    p.backend = ENGINE_BACKEND_CPU;
    p.n_ctx = 1024;
    p.n_threads = 2;
    char err[512];
    local = engine_new(&p, err, sizeof err);
    if (!local) {
        fprintf(stderr, "engine_new: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_session),
        cmocka_unit_test(test_thinking_stored_apart),
#ifdef FAULT_SERVER
        cmocka_unit_test(test_across_engines),
#endif
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    engine_free(local);
    return rc;
}
