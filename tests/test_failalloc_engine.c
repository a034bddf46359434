/* test_failalloc_engine.c - the engine's load and chat paths with each of
 * their allocations failing in turn (tests/failalloc.h), as SQLite's tests
 * do it. For every N, once with only the N-th allocation failing and once
 * with it and every later one failing (persistent), a path must either
 * succeed or fail with a message, leak nothing (LSan in the sanitized
 * build), and leave an engine that still gives the same greedy reply as a
 * fresh one. The model is tiny and synthetic with a small byte-level BPE
 * vocabulary and the ChatML template, so each run takes milliseconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "failalloc.h"
#include "gguf.h"
#include "testutil.h"
#include "tiny_model.h"

/* Byte-level BPE merges of the vocabulary (GPT-2's byte alphabet, where
 * "Ġ" is a space), each adding its joined token. */
static const char *const MERGES[] = {"H i", "Ġ t", "e l", "l l", "o r", "Ġ m", "Ġm or"};
#define N_MERGES (sizeof MERGES / sizeof MERGES[0])
#define N_VOCAB (256 + (int)N_MERGES + 2)

static const char CHATML[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

static const char *const TURNS[] = {"Hi", "Tell me more, please."};
#define N_TURNS (sizeof TURNS / sizeof TURNS[0])
#define MAX_TOKENS 6

static char dir[4096], model_path[4200];
static char *ref_reply[N_TURNS]; /* a fresh engine's greedy replies to TURNS */
static char *ref_resumed;        /* its reply to TURNS[1] after RESUMED */

/* A stored session as the front-end hands it back (with ref_reply[0]). */
#define RESUMED_SYSTEM "Answer in one word."
static struct engine_message resumed[3] = {
    {ENGINE_ROLE_SYSTEM, RESUMED_SYSTEM, NULL},
    {ENGINE_ROLE_USER, "Hi", NULL},
    {ENGINE_ROLE_ASSISTANT, NULL, NULL},
};

/* GPT-2's byte alphabet: byte B as the UTF-8 of its code point. */
static void byte_token(int b, char out[4])
{
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
        int k = 0;
        for (int i = 0; i < b; i++)
            if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174))
                k++;
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

/* The tiny model with its vocabulary, written to MODEL_PATH. */
static void write_model(void)
{
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 32, .n_head = 4, .n_head_kv = 2, .head_dim = 8, .n_rot = 8,
                          .n_ff = 64, .n_vocab = N_VOCAB, .n_layer = 2, .head_dim_key = true,
                          .n_rot_key = true};
    struct gguf_writer *w = tiny_writer(&s, 7);
    static char bytes[256][4];
    static char joined[N_MERGES][16];
    const char *tokens[N_VOCAB];
    int32_t types[N_VOCAB];
    for (int b = 0; b < 256; b++) {
        byte_token(b, bytes[b]);
        tokens[b] = bytes[b];
        types[b] = 1; /* normal */
    }
    for (size_t i = 0; i < N_MERGES; i++) {
        size_t k = 0;
        for (const char *c = MERGES[i]; *c; c++)
            if (*c != ' ')
                joined[i][k++] = *c;
        joined[i][k] = 0;
        tokens[256 + i] = joined[i];
        types[256 + i] = 1;
    }
    tokens[N_VOCAB - 2] = "<|im_start|>";
    tokens[N_VOCAB - 1] = "<|im_end|>";
    types[N_VOCAB - 2] = types[N_VOCAB - 1] = 3; /* control */
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "smollm");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, N_VOCAB);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N_VOCAB);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", MERGES, N_MERGES);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", N_VOCAB - 2);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", N_VOCAB - 1);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    gguf_writer_set_str(w, "tokenizer.chat_template", CHATML);
    char err[512];
    if (gguf_writer_write(w, model_path, err, sizeof err) != 0)
        fail_msg("writing %s: %s", model_path, err);
    gguf_writer_free(w);
}

static struct engine *open_engine(char *err, size_t errlen)
{
    struct engine_params p = engine_default_params();
    p.model_path = model_path;
    p.backend = ENGINE_BACKEND_CPU;
    p.n_ctx = 96;
    p.n_threads = 1; /* one allocating thread: the same N is the same allocation */
    return engine_new(&p, err, errlen);
}

static struct engine_turn_params greedy(void)
{
    struct engine_turn_params tp = {0};
    tp.sampling = engine_sampling_defaults();
    tp.sampling.temperature = 0;
    tp.sampling.repeat_penalty = 1.5f; /* greedy, but not stuck on one token */
    tp.max_tokens = MAX_TOKENS;
    return tp;
}

/* Runs TURNS on E from an empty conversation and checks every reply is the
 * fresh engine's. */
static void check_replies(struct engine *e, long n, bool persist)
{
    struct engine_turn_params tp = greedy();
    char err[512];
    for (size_t t = 0; t < N_TURNS; t++) {
        char *reply = NULL;
        if (engine_chat(e, TURNS[t], &tp, &reply, err, sizeof err) != 0)
            fail_msg("N=%ld%s: turn %zu after the failure: %s", n, persist ? " (persistent)" : "",
                     t, err);
        if (strcmp(reply, ref_reply[t]) != 0)
            fail_msg("N=%ld%s: turn %zu gave '%s', a fresh engine '%s'", n,
                     persist ? " (persistent)" : "", t, reply, ref_reply[t]);
        free(reply);
    }
}

/* The distinct failure messages of one test, printed at its end so that a
 * wrong message (one that blames the file for an allocation) shows. */
struct messages {
    char text[32][256];
    int n;
};

static void messages_add(struct messages *m, const char *err, long n)
{
    if (!err[0])
        fail_msg("N=%ld: failed without a message", n);
    if (!strstr(err, "memory"))
        fail_msg("N=%ld: an allocation failed but the message does not say so: %s", n, err);
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->text[i], err) == 0)
            return;
    if (m->n < 32)
        snprintf(m->text[m->n++], sizeof m->text[0], "%s", err);
}

static void messages_print(const char *what, const struct messages *m, long points)
{
    printf("%s: %ld allocation points, %d distinct messages\n", what, points, m->n);
    for (int i = 0; i < m->n; i++)
        printf("  %s\n", m->text[i]);
}

static int group_setup(void **state)
{
    (void)state;
    test_tmpdir(dir, sizeof dir, "failalloc-engine");
    if (!dir[0])
        return -1;
    snprintf(model_path, sizeof model_path, "%s/tiny.gguf", dir);
    write_model();
    char err[512];
    struct engine *e = open_engine(err, sizeof err);
    if (!e) {
        fprintf(stderr, "engine_new: %s\n", err);
        return -1;
    }
    struct engine_turn_params tp = greedy();
    for (size_t t = 0; t < N_TURNS; t++)
        if (engine_chat(e, TURNS[t], &tp, &ref_reply[t], err, sizeof err) != 0) {
            fprintf(stderr, "engine_chat: %s\n", err);
            engine_free(e);
            return -1;
        }
    /* the resumed session, on an engine that never saw it */
    engine_free(e);
    resumed[2].content = ref_reply[0];
    e = open_engine(err, sizeof err);
    if (!e || engine_load_transcript(e, resumed, 3) != 0 ||
        engine_chat(e, TURNS[1], &tp, &ref_resumed, err, sizeof err) != 0) {
        fprintf(stderr, "resuming: %s\n", err);
        engine_free(e);
        return -1;
    }
    engine_free(e);
    printf("replies: '%s', '%s', resumed '%s'\n", ref_reply[0], ref_reply[1], ref_resumed);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t t = 0; t < N_TURNS; t++)
        free(ref_reply[t]);
    free(ref_resumed);
    unlink(model_path);
    rmdir(dir);
    return 0;
}

/* The path of `kvchat -m FILE` up to the prompt: the file described (for
 * --list-models), opened, the model built, the tokenizer and template read,
 * the CPU backend created. */
static void load_path(void **state)
{
    (void)state;
    struct messages msgs = {0};
    long points = 0;
    for (int persist = 0; persist <= 1; persist++) {
        for (long n = 1;; n++) {
            char err[512] = "";
            struct engine_file_info fi;
            failalloc_arm(n, persist);
            int drc = engine_describe_file(model_path, &fi, err, sizeof err);
            struct engine *e = drc == 0 ? open_engine(err, sizeof err) : NULL;
            long seen = failalloc_count(), failed = failalloc_failures();
            failalloc_arm(0, false);
            if (!e && failed == 0)
                fail_msg("N=%ld: failed with no allocation failing: %s", n, err);
            if (!e)
                messages_add(&msgs, err, n);
            if (e) {
                check_replies(e, n, persist);
                engine_free(e);
            }
            if (seen < n) {
                points = seen;
                break;
            }
        }
    }
    messages_print("load", &msgs, points);
}

/* Two chat turns on a loaded engine: each renders the template, tokenizes,
 * prefills (reusing the cached prefix on the second) and generates greedily.
 * After a failed turn the conversation is reset and the engine must give
 * the fresh engine's replies. */
static void chat_path(void **state)
{
    (void)state;
    struct messages msgs = {0};
    long points = 0;
    for (int persist = 0; persist <= 1; persist++) {
        for (long n = 1;; n++) {
            char err[512] = "";
            struct engine *e = open_engine(err, sizeof err);
            if (!e)
                fail_msg("engine_new: %s", err);
            struct engine_turn_params tp = greedy();
            char *reply[N_TURNS] = {0};
            int rc = 0;
            failalloc_arm(n, persist);
            for (size_t t = 0; t < N_TURNS && rc == 0; t++)
                rc = engine_chat(e, TURNS[t], &tp, &reply[t], err, sizeof err);
            long seen = failalloc_count(), failed = failalloc_failures();
            failalloc_arm(0, false);
            if (rc != 0 && failed == 0)
                fail_msg("N=%ld: failed with no allocation failing: %s", n, err);
            if (rc != 0)
                messages_add(&msgs, err, n);
            for (size_t t = 0; t < N_TURNS; t++) {
                /* a turn that succeeded, or failed with a partial reply, gave
                 * a prefix of the fresh reply */
                if (reply[t] && strncmp(reply[t], ref_reply[t], strlen(reply[t])) != 0)
                    fail_msg("N=%ld: turn %zu gave '%s', a fresh engine '%s'", n, t, reply[t],
                             ref_reply[t]);
                if (rc == 0 && reply[t] && strcmp(reply[t], ref_reply[t]) != 0)
                    fail_msg("N=%ld: turn %zu succeeded with '%s', a fresh engine '%s'", n, t,
                             reply[t], ref_reply[t]);
                free(reply[t]);
            }
            engine_reset(e);
            check_replies(e, n, persist);
            engine_free(e);
            if (seen < n) {
                points = seen;
                break;
            }
        }
    }
    messages_print("chat", &msgs, points);
}

/* Resuming a stored session: its transcript loaded, fitted to the context
 * and continued. A failed load leaves a transcript that loading again
 * replaces; either way the continued reply must be the fresh engine's. */
static void resume_path(void **state)
{
    (void)state;
    struct messages msgs = {0};
    long points = 0;
    for (int persist = 0; persist <= 1; persist++) {
        for (long n = 1;; n++) {
            char err[512] = "";
            struct engine *e = open_engine(err, sizeof err);
            if (!e)
                fail_msg("engine_new: %s", err);
            struct engine_turn_params tp = greedy();
            char *reply = NULL;
            failalloc_arm(n, persist);
            int rc = engine_load_transcript(e, resumed, 3);
            if (rc != 0)
                snprintf(err, sizeof err, "loading the transcript: out of memory");
            if (rc == 0 && engine_fit_context(e, MAX_TOKENS) < 0) {
                snprintf(err, sizeof err, "fitting the context: out of memory");
                rc = -1;
            }
            if (rc == 0)
                rc = engine_chat(e, TURNS[1], &tp, &reply, err, sizeof err);
            long seen = failalloc_count(), failed = failalloc_failures();
            failalloc_arm(0, false);
            if (rc != 0 && failed == 0)
                fail_msg("N=%ld: failed with no allocation failing: %s", n, err);
            if (rc != 0)
                messages_add(&msgs, err, n);
            if (rc == 0 && strcmp(reply, ref_resumed) != 0)
                fail_msg("N=%ld%s: the resumed turn succeeded with '%s', a fresh engine '%s'", n,
                         persist ? " (persistent)" : "", reply, ref_resumed);
            free(reply);
            reply = NULL;
            if (rc != 0) {
                assert_int_equal(engine_load_transcript(e, resumed, 3), 0);
                if (engine_chat(e, TURNS[1], &tp, &reply, err, sizeof err) != 0)
                    fail_msg("N=%ld: resuming again: %s", n, err);
                if (strcmp(reply, ref_resumed) != 0)
                    fail_msg("N=%ld%s: resuming again gave '%s', a fresh engine '%s'", n,
                             persist ? " (persistent)" : "", reply, ref_resumed);
                free(reply);
            }
            engine_free(e);
            if (seen < n) {
                points = seen;
                break;
            }
        }
    }
    messages_print("resume", &msgs, points);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(load_path),
        cmocka_unit_test(chat_path),
        cmocka_unit_test(resume_path),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
