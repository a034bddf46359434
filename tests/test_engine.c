/* test_engine.c - the engine API on the real default model: answers, KV cache
 * reuse across turns, cancellation, dropping old turns when the context is
 * full, regenerate, and load errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "engine_impl.h"
#include "engine_tools.h"
#include "gguf.h"
#include "hostmem.h"
#include "model.h"
#include "registry.h"
#include "testutil.h"

/* An engine on FILE with a template name (NULL = detect) and a KV type. */
static struct engine *load_with(const char *file, int32_t n_ctx, const char *tmpl,
                                enum engine_kv_type kv)
{
    char path[4200], err[512];
    TEST_REQUIRE_MODEL(file, path);
    struct engine_params p = engine_default_params();
    p.model_path = path;
    p.backend = ENGINE_BACKEND_CPU;
    p.n_ctx = n_ctx;
    p.chat_template = tmpl;
    p.kv_type = kv;
    struct engine *e = engine_new(&p, err, sizeof err);
    if (!e)
        fail_msg("engine_new: %s", err);
    return e;
}

static struct engine *load(const char *file, int32_t n_ctx)
{
    return load_with(file, n_ctx, NULL, ENGINE_KV_AUTO);
}

static struct engine_turn_params greedy(int32_t max_tokens)
{
    struct engine_turn_params tp = {0};
    tp.sampling = engine_sampling_defaults();
    tp.sampling.temperature = 0;
    tp.sampling.repeat_penalty = 1;
    tp.max_tokens = max_tokens;
    return tp;
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return 0;
}

static void answers(const char *model)
{
    struct engine *e = load(model, 1024);
    struct engine_turn_params tp = greedy(32);
    char *reply = NULL, err[512];
    assert_int_equal(engine_chat(e, "What is the capital of France?", &tp, &reply, err, sizeof err), 0);
    printf("reply: %s\n", reply);
    assert_true(contains_ci(reply, "Paris"));
    struct engine_stats st;
    engine_stats(e, &st);
    assert_true(st.gen_tokens > 0);
    assert_int_equal(st.prefill_tokens, st.prompt_tokens);
    assert_true(st.kv_used == st.prompt_tokens + st.gen_tokens);
    free(reply);
    engine_free(e);
}

static void test_answers_smollm2(void **state)
{
    (void)state;
    answers(TEST_MODEL_SMOLLM2);
}

/* The Gemma 3 270M test file is the pretrained base model (google/gemma-3-270m,
 * no chat template in the file), so it is not asked to chat sensibly: the
 * turn must run through the Gemma format, prefill the rendered prompt and
 * generate, while completion-style correctness is checked in test_model. */
static void test_chat_turn_gemma3(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_GEMMA3, 512);
    assert_string_equal(engine_info(e)->template_name, "gemma");
    struct engine_turn_params tp = greedy(8);
    char *reply = NULL, err[512];
    assert_int_equal(engine_chat(e, "Hello", &tp, &reply, err, sizeof err), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    /* <bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n */
    assert_int_equal(st.prompt_tokens, 10);
    assert_true(st.gen_tokens > 0 || st.stop == ENGINE_STOP_EOS);
    free(reply);
    engine_free(e);
}

/* The second turn prefills only what the cache lacks: the end of the first
 * reply's turn and the new message, never the first exchange again. */
static void test_kv_reuse(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 1024);
    struct engine_turn_params tp = greedy(16);
    char err[512];
    assert_int_equal(engine_chat(e, "Name a colour.", &tp, NULL, err, sizeof err), 0);
    struct engine_stats s1, s2;
    engine_stats(e, &s1);
    assert_int_equal(engine_chat(e, "And another one?", &tp, NULL, err, sizeof err), 0);
    engine_stats(e, &s2);
    printf("turn 1: prompt %d, kv %d; turn 2: prompt %d, prefilled %d\n", s1.prompt_tokens,
           s1.kv_used, s2.prompt_tokens, s2.prefill_tokens);
    assert_true(s2.prompt_tokens > s1.kv_used);
    /* everything in the cache after turn 1 is reused, except at most the
     * reply's last token when the reply was cut by max_tokens and the
     * re-rendered text tokenizes differently at the very end */
    assert_true(s2.prefill_tokens <= s2.prompt_tokens - s1.kv_used + 1);
    assert_true(s2.prefill_tokens < s2.prompt_tokens / 2);
    engine_free(e);
}

/* The prefill progress: once at 0, then after each chunk, ending at the
 * number of tokens prefilled, never past the total; the stats' KV count
 * follows each chunk (the context meter while a long prompt is read). */
struct prefill_log {
    struct engine *e;
    uint64_t done[64], total[64];
    int32_t kv[64];
    int n;
};

static void log_prefill(uint64_t done, uint64_t total, void *user)
{
    struct prefill_log *l = user;
    if (l->n < 64) {
        struct engine_stats st;
        engine_stats(l->e, &st);
        l->done[l->n] = done;
        l->total[l->n] = total;
        l->kv[l->n] = st.kv_used;
    }
    l->n++;
}

static void test_prefill_progress(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 2048);
    struct engine_turn_params tp = greedy(2);
    struct prefill_log log = {.e = e};
    tp.on_prefill = log_prefill;
    tp.user = &log;
    /* a prompt of several 256-token chunks */
    char msg[8000] = "";
    for (int i = 0; i < 150; i++)
        strcat(msg, "apples and pears ");
    char err[512];
    assert_int_equal(engine_chat(e, msg, &tp, NULL, err, sizeof err), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    int chunks = (st.prefill_tokens + 255) / 256;
    assert_true(chunks >= 2);
    assert_int_equal(log.n, chunks + 1);
    assert_int_equal(log.done[0], 0);
    for (int i = 0; i < log.n; i++) {
        assert_int_equal(log.total[i], (uint64_t)st.prefill_tokens);
        if (i) {
            assert_true(log.done[i] > log.done[i - 1]);
            assert_int_equal(log.kv[i], (int32_t)log.done[i]); /* a first turn reads from 0 */
        }
    }
    assert_int_equal(log.done[log.n - 1], (uint64_t)st.prefill_tokens);
    engine_free(e);
}

/* A reply opening with a think block parts into thinking and answer. */
static void test_split_thinking(void **state)
{
    (void)state;
    size_t to, tl, ao;
    const char *r = "<think>\nhmm, a fruit\n</think>\n\nA pear.";
    assert_true(engine_split_thinking(r, strlen(r), &to, &tl, &ao));
    assert_int_equal(to, 7);
    assert_int_equal(tl, strlen("\nhmm, a fruit\n"));
    assert_string_equal(r + ao, "A pear.");
    assert_false(engine_split_thinking("A <think> pear", 14, &to, &tl, &ao));
    assert_int_equal(ao, 0);
    const char *open = "<think>still";
    assert_true(engine_split_thinking(open, strlen(open), &to, &tl, &ao));
    assert_int_equal(tl, 5);
    assert_int_equal(ao, strlen(open));
}

/* ---- thinking told apart, fed by a scripted engine ----
 * An engine whose replies are given pieces: engine_chat's splitter sees
 * exactly what a model's stream would hand it, cut wherever the test says. */
struct scripted {
    struct engine base;
    const char *const *pieces; /* the next reply, NULL-terminated */
};

static int scripted_chat(struct engine *eng, const char *user_text,
                         const struct engine_turn_params *tp, char **reply, char *err,
                         size_t errlen)
{
    struct scripted *s = (struct scripted *)eng;
    (void)user_text, (void)err, (void)errlen;
    size_t total = 0;
    for (size_t i = 0; s->pieces[i]; i++)
        total += strlen(s->pieces[i]);
    char *r = malloc(total + 1);
    assert_non_null(r);
    size_t k = 0;
    for (size_t i = 0; s->pieces[i]; i++) {
        size_t n = strlen(s->pieces[i]);
        memcpy(r + k, s->pieces[i], n);
        k += n;
        if (n && tp->on_piece && !tp->on_piece(s->pieces[i], n, tp->user))
            break;
    }
    r[total] = 0;
    if (reply)
        *reply = r;
    else
        free(r);
    return 0;
}

static void scripted_free(struct engine *eng) { (void)eng; }

static const struct engine_ops scripted_ops = {
    .kind = "scripted", .chat = scripted_chat, .free = scripted_free};

struct heard {
    char think[512], answer[512];
    size_t nt, na;
};

static bool heard_piece(const char *s, size_t n, void *user)
{
    struct heard *h = user;
    assert_true(h->na + n < sizeof h->answer);
    memcpy(h->answer + h->na, s, n);
    h->answer[h->na += n] = 0;
    return true;
}

static bool heard_thinking(const char *s, size_t n, void *user)
{
    struct heard *h = user;
    assert_true(h->nt + n < sizeof h->think);
    memcpy(h->think + h->nt, s, n);
    h->think[h->nt += n] = 0;
    return true;
}

/* Streams PIECES through engine_chat and checks what each side got, and
 * that engine_split_thinking parts the whole reply the same way. */
static void expect_split(const char *const *pieces, const char *think, const char *answer)
{
    struct scripted s = {.base = {.ops = &scripted_ops}, .pieces = pieces};
    struct heard h = {0};
    struct engine_turn_params tp = {.on_piece = heard_piece, .on_thinking = heard_thinking,
                                    .user = &h};
    char err[128], *reply = NULL;
    assert_int_equal(engine_chat(&s.base, "q", &tp, &reply, err, sizeof err), 0);
    assert_string_equal(h.think, think);
    assert_string_equal(h.answer, answer);
    size_t to, tl, ao;
    bool split = engine_split_thinking(reply, strlen(reply), &to, &tl, &ao);
    if (*think)
        assert_true(split);
    if (split) {
        assert_int_equal(tl, strlen(think));
        assert_memory_equal(reply + to, think, tl);
    }
    assert_string_equal(reply + ao, answer);
    free(reply);
}

/* ONE[i] = the I-th byte of REPLY as a string (BYTES holds them), then a
 * NULL: REPLY as a stream of one-byte pieces. REPLY is under 256 bytes. */
static void split_bytes(const char *reply, char bytes[256][2], const char *one[257])
{
    size_t n = strlen(reply);
    assert_true(n < 256);
    for (size_t i = 0; i < n; i++) {
        bytes[i][0] = reply[i];
        bytes[i][1] = 0;
        one[i] = bytes[i];
    }
    one[n] = NULL;
}

/* REPLY streamed whole, byte by byte, and cut at every pair of places. */
static void expect_split_all_ways(const char *reply, const char *think, const char *answer)
{
    const char *whole[] = {reply, NULL};
    expect_split(whole, think, answer);
    size_t n = strlen(reply);
    char bytes[256][2];
    const char *one[257];
    split_bytes(reply, bytes, one);
    expect_split(one, think, answer);
    char a[256], b[256], c[256];
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            memcpy(a, reply, i);
            a[i] = 0;
            memcpy(b, reply + i, j - i);
            b[j - i] = 0;
            memcpy(c, reply + j, n - j + 1);
            const char *three[] = {a, b, c, NULL};
            expect_split(three, think, answer);
        }
    }
}

static void test_stream_split_think_tags(void **state)
{
    (void)state;
    /* Qwen3 */
    expect_split_all_ways("<think>\nhmm, a fruit\n</think>\n\nA pear.", "\nhmm, a fruit\n",
                          "A pear.");
    /* DeepSeek-R1: the prompt's "<think>\n" is the reply's first piece */
    const char *r1[] = {"<think>\n", "Okay", ", 2+2", "</think>", "\n\n", "4", NULL};
    expect_split(r1, "\nOkay, 2+2", "4");
    /* no think block: all answer, tags later in the text stay text */
    expect_split_all_ways("A <think> pear", "", "A <think> pear");
    expect_split_all_ways("Say <|end|> or <|channel|>final<|message|>.", "",
                          "Say <|end|> or <|channel|>final<|message|>.");
    /* other formats' markers are text in a think-tag reply */
    expect_split_all_ways("<think>a<|end|></think>Use <|end|> and <|channel|>final<|message|>",
                          "a<|end|>", "Use <|end|> and <|channel|>final<|message|>");
    /* cut short: what was held back is text */
    expect_split_all_ways("<think>still</thi", "still</thi", "");
    expect_split_all_ways("<thi", "", "<thi");
}

static void test_stream_split_harmony(void **state)
{
    (void)state;
    static const char reply[] = "<|channel|>analysis<|message|>User asks capital. Answer."
                                "<|end|><|start|>assistant<|channel|>final<|message|>Paris.";
    expect_split_all_ways(reply, "User asks capital. Answer.", "Paris.");
    /* token by token, as the engine writes the header tokens' texts */
    const char *tokens[] = {"<|channel|>", "analysis", "<|message|>", "User", " asks",
                            " capital", ".", " Answer", ".", "<|end|>", "<|start|>",
                            "assistant", "<|channel|>", "final", "<|message|>", "Paris", ".",
                            NULL};
    expect_split(tokens, "User asks capital. Answer.", "Paris.");
    /* straight to the final channel; "<|" in the answer is text */
    expect_split_all_ways("<|channel|>final<|message|>a <|x|> b", "", "a <|x|> b");
    /* commentary is not the answer */
    expect_split_all_ways("<|channel|>commentary<|message|>c<|end|><|start|>assistant"
                          "<|channel|>final<|message|>f",
                          "c", "f");
    /* cut short inside a header: held text is the thinking's */
    expect_split_all_ways("<|channel|>analysis<|message|>x<|en", "x<|en", "");
    /* think tags mean nothing in a harmony reply */
    expect_split_all_ways("<|channel|>final<|message|><think>y</think>", "",
                          "<think>y</think>");
}

/* A front-end that does not ask for the thinking apart still never sees
 * harmony's headers: the analysis comes as a think block before the answer,
 * in the stream and in the reply. */
static void test_stream_harmony_without_thinking_hook(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"<|channel|>analysis<|message|>why<|end|><|start|>assistant<|channel|>final"
         "<|message|>because",
         "<think>why</think>\n\nbecause"},
        {"<|channel|>final<|message|>hi <|x|>", "hi <|x|>"},
        {"<|channel|>analysis<|message|>cut", "<think>cut"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char bytes[256][2];
        const char *one[257];
        split_bytes(cases[c][0], bytes, one);
        struct scripted s = {.base = {.ops = &scripted_ops}, .pieces = one};
        snprintf(s.base.info.template_name, sizeof s.base.info.template_name, "gpt-oss");
        struct heard h = {0};
        struct engine_turn_params tp = {.on_piece = heard_piece, .user = &h};
        char err[128], *got = NULL;
        assert_int_equal(engine_chat(&s.base, "q", &tp, &got, err, sizeof err), 0);
        assert_string_equal(h.answer, cases[c][1]);
        assert_string_equal(got, cases[c][1]); /* the reply is in the same form */
        free(got);
        /* asked apart: the same reply, the parts to each hook */
        memset(&h, 0, sizeof h);
        tp.on_thinking = heard_thinking;
        assert_int_equal(engine_chat(&s.base, "q", &tp, &got, err, sizeof err), 0);
        assert_string_equal(got, cases[c][1]);
        size_t to, tl, ao;
        engine_split_thinking(got, strlen(got), &to, &tl, &ao);
        assert_int_equal(strlen(h.think), tl);
        assert_memory_equal(h.think, got + to, tl);
        assert_string_equal(h.answer, got + ao);
        free(got);
    }
}

/* engine_split_thinking on stored harmony replies. */
static void test_split_thinking_harmony(void **state)
{
    (void)state;
    size_t to, tl, ao;
    const char *r = "<|channel|>analysis<|message|>why<|end|><|start|>assistant"
                    "<|channel|>final<|message|>because";
    assert_true(engine_split_thinking(r, strlen(r), &to, &tl, &ao));
    assert_int_equal(to, strlen("<|channel|>analysis<|message|>"));
    assert_int_equal(tl, 3);
    assert_string_equal(r + ao, "because");
    /* still in its analysis: no answer yet */
    const char *open = "<|channel|>analysis<|message|>wh";
    assert_true(engine_split_thinking(open, strlen(open), &to, &tl, &ao));
    assert_int_equal(tl, 2);
    assert_int_equal(ao, strlen(open));
    /* straight to the final message: no thinking, the answer past its header */
    const char *fin = "<|channel|>final<|message|>hi";
    assert_false(engine_split_thinking(fin, strlen(fin), &to, &tl, &ao));
    assert_int_equal(tl, 0);
    assert_string_equal(fin + ao, "hi");
}

/* ---- the local engine with the reasoning formats ----
 * The default model's vocabulary with some of its control tokens renamed to
 * another format's (the weights untouched) and that format's template: the
 * prompt then tokenizes, and what the model writes runs through the local
 * engine's reply rules. RENAME holds (id, new text) pairs. */
struct rename {
    int32_t id;
    const char *text;
    bool control; /* also make it a control token (it was an ordinary one) */
};

static void write_renamed(const char *dst, const struct rename *rename, size_t n_rename,
                          const char *jinja, int32_t eot)
{
    char model[4200], err[512];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, model);
    struct gguf *g = gguf_open(model, err, sizeof err);
    assert_non_null(g);
    enum gguf_type et;
    uint64_t n_tok;
    assert_true(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n_tok));
    char **toks = calloc(n_tok, sizeof *toks);
    assert_non_null(toks);
    for (uint64_t i = 0; i < n_tok; i++) {
        struct gguf_str s;
        assert_true(gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s));
        toks[i] = malloc(s.len + 1);
        assert_non_null(toks[i]);
        gguf_str_copy(s, toks[i], s.len + 1);
    }
    int32_t *types = malloc(n_tok * sizeof *types);
    assert_non_null(types);
    for (uint64_t i = 0; i < n_tok; i++) {
        int64_t v;
        assert_true(gguf_get_arr_int(g, "tokenizer.ggml.token_type", i, &v));
        types[i] = (int32_t)v;
    }
    for (size_t k = 0; k < n_rename; k++) {
        free(toks[rename[k].id]);
        toks[rename[k].id] = strdup(rename[k].text);
        if (rename[k].control)
            types[rename[k].id] = 3; /* GGUF's control token type */
    }
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_copy_kv(w, g, "");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, n_tok);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n_tok);
    gguf_writer_set_str(w, "tokenizer.chat_template", jinja);
    if (eot >= 0)
        gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)eot);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        char name[256];
        gguf_str_copy(t->name, name, sizeof name);
        gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data);
    }
    assert_null(gguf_writer_error(w));
    assert_int_equal(gguf_writer_write(w, dst, err, sizeof err), 0);
    gguf_writer_free(w);
    for (uint64_t i = 0; i < n_tok; i++)
        free(toks[i]);
    free(toks);
    free(types);
    gguf_close(g);
}

static struct engine *open_file(const char *path, int32_t n_ctx)
{
    char err[512];
    struct engine_params p = engine_default_params();
    p.model_path = path;
    p.backend = ENGINE_BACKEND_CPU;
    p.n_ctx = n_ctx;
    struct engine *e = engine_new(&p, err, sizeof err);
    if (!e)
        fail_msg("engine_new: %s", err);
    return e;
}

/* DeepSeek-R1 whose prompt opens the think block: the reply (and the stream)
 * starts with that "<think>\n", so the thinking is told apart from the first
 * token on. */
static void test_local_reply_opens_thinking(void **state)
{
    (void)state;
    char dir[4200], path[4400], err[512];
    test_tmpdir(dir, sizeof dir, "engine-r1");
    snprintf(path, sizeof path, "%s/r1.gguf", dir);
    static const struct rename r1[] = {{3, "<｜User｜>", false},
                                       {4, "<｜Assistant｜>", false},
                                       {5, "<｜end▁of▁sentence｜>", false}};
    write_renamed(path, r1, sizeof r1 / sizeof *r1,
                  "{{'<｜User｜>' + message['content']}}{{'<｜Assistant｜>' + content + "
                  "'<｜end▁of▁sentence｜>'}}{{'<｜Assistant｜><think>\\n'}}",
                  -1);
    struct engine *e = open_file(path, 512);
    assert_string_equal(engine_info(e)->template_name, "deepseek-r1");

    struct engine_turn_params tp = greedy(12);
    struct heard h = {0};
    tp.on_piece = heard_piece;
    tp.user = &h;
    char *reply = NULL;
    assert_int_equal(engine_chat(e, "Hi", &tp, &reply, err, sizeof err), 0);
    assert_true(strncmp(reply, "<think>\n", 8) == 0);
    assert_string_equal(h.answer, reply); /* the stream is the reply, opening included */
    free(reply);

    memset(&h, 0, sizeof h);
    tp.on_thinking = heard_thinking;
    assert_int_equal(engine_chat(e, "And?", &tp, &reply, err, sizeof err), 0);
    assert_true(strncmp(reply, "<think>\n", 8) == 0);
    assert_null(strstr(reply, "</think>")); /* this model does not close it */
    assert_string_equal(h.think, reply + 7);
    assert_string_equal(h.answer, "");
    size_t to, tl, ao;
    assert_true(engine_split_thinking(reply, strlen(reply), &to, &tl, &ao));
    assert_int_equal(to, 7);
    free(reply);
    engine_free(e);
    unlink(path);
    rmdir(dir);
}

struct ids {
    int32_t v[128];
    size_t n;
};

static void record_id(int32_t id, const char *piece, size_t len, void *user)
{
    struct ids *r = user;
    (void)piece, (void)len;
    if (r->n < sizeof r->v / sizeof *r->v)
        r->v[r->n++] = id;
}

/* Harmony: an end-of-generation token among the reply's header tokens
 * ("<|end|>" in gpt-oss) does not end the reply, and its text stays in the
 * reply, where the renderer and the splitter read it. The model is made to
 * write one: a token it writes under this prompt whose text is in none of
 * the prompt's (so it is no prompt token) becomes, in a second copy, the
 * "<|channel|>" token and the vocabulary's end of turn (eot). The prompt
 * tokenizes the same, so the model writes the same ids, that one included,
 * and must go on past it. */
static void test_local_harmony_header_does_not_stop(void **state)
{
    (void)state;
    char dir[4200], path[4400], err[512];
    test_tmpdir(dir, sizeof dir, "engine-harmony");
    snprintf(path, sizeof path, "%s/harmony.gguf", dir);
    static const char jinja[] =
        "{{- \"<|start|>system<|message|>\" }}{{- \"<|end|>\" }}"
        "{{- \"<|start|>assistant<|channel|>final<|message|>\" + message.content }}";
    static const struct rename hm[] = {{1, "<|start|>", false}, {2, "<|return|>", false},
                                       {3, "<|message|>", false}, {4, "<|channel|>", false},
                                       {5, "<|end|>", false}};
    write_renamed(path, hm, 5, jinja, -1);
    struct engine *e = open_file(path, 512);
    assert_string_equal(engine_info(e)->template_name, "gpt-oss");
    struct engine_turn_params tp = greedy(24);
    struct ids first = {0};
    tp.on_token = record_id;
    tp.user = &first;
    char *reply = NULL;
    assert_int_equal(engine_chat(e, "Say hi.", &tp, &reply, err, sizeof err), 0);
    free(reply);
    /* every plain text the prompt holds: harmony's system message (any
     * date), the roles, the user's message */
    static const char prompt_text[] =
        "systemYou are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: "
        "2024-06\nCurrent date: 0123456789-\n\nReasoning: medium\n\n# Valid channels: "
        "analysis, commentary, final. Channel must be included for every message."
        "userSay hi.assistant";
    int32_t pick = -1;
    for (size_t i = 1; i + 1 < first.n && pick < 0; i++) {
        char piece[64];
        size_t n = engine_token_piece(e, first.v[i], piece, sizeof piece);
        if (n == 0 || n >= sizeof piece || first.v[i] <= 16)
            continue;
        piece[n] = 0;
        if (!strstr(prompt_text, piece))
            pick = first.v[i];
    }
    engine_free(e);
    unlink(path);
    if (pick < 0)
        fail_msg("the model wrote no token outside the prompt's text");

    /* id 4 is no prompt token either: it keeps its own text */
    const struct rename again[] = {hm[0], hm[1], hm[2], hm[4], {pick, "<|channel|>", true}};
    write_renamed(path, again, 5, jinja, pick);
    e = open_file(path, 512);
    tp.on_token = NULL;
    tp.user = NULL;
    assert_int_equal(engine_chat(e, "Say hi.", &tp, &reply, err, sizeof err), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    /* as many tokens as before: it did not stop at the end-of-turn token */
    assert_int_equal(st.gen_tokens, (int32_t)first.n);
    const char *ch = strstr(reply, "<|channel|>");
    assert_non_null(ch);
    assert_true(ch[11] != 0);
    free(reply);
    engine_free(e);
    unlink(path);
    rmdir(dir);
}

/* A multi-turn conversation where the model must use the first turn. */
static void test_remembers(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 1024);
    struct engine_turn_params tp = greedy(24);
    char err[512], *reply = NULL;
    assert_int_equal(engine_chat(e, "I live in Berlin.", &tp, NULL, err, sizeof err), 0);
    assert_int_equal(engine_chat(e, "Which city do I live in?", &tp, &reply, err, sizeof err), 0);
    printf("reply: %s\n", reply);
    assert_true(contains_ci(reply, "Berlin"));
    free(reply);
    engine_free(e);
}

/* Reusing the cache changes nothing the model computes: a second turn on top
 * of the cached first one gives the same greedy reply as a fresh engine that
 * prefills the whole transcript (as --resume does). */
static void test_reuse_equals_full_prefill(void **state)
{
    (void)state;
    struct engine *a = load(TEST_MODEL_SMOLLM2, 1024);
    struct engine *b = load(TEST_MODEL_SMOLLM2, 1024);
    struct engine_turn_params tp = greedy(20);
    char err[512], *r1 = NULL, *ra = NULL, *rb = NULL;
    assert_int_equal(engine_chat(a, "Name three fruits.", &tp, &r1, err, sizeof err), 0);
    assert_int_equal(engine_chat(a, "Which one is yellow?", &tp, &ra, err, sizeof err), 0);
    struct engine_stats sa, sb;
    engine_stats(a, &sa);

    struct engine_message transcript[] = {
        {ENGINE_ROLE_USER, "Name three fruits.", NULL},
        {ENGINE_ROLE_ASSISTANT, r1, NULL},
    };
    assert_int_equal(engine_load_transcript(b, transcript, 2), 0);
    assert_int_equal(engine_chat(b, "Which one is yellow?", &tp, &rb, err, sizeof err), 0);
    engine_stats(b, &sb);
    printf("reused: %d of %d prefilled; fresh: %d of %d\n", sa.prefill_tokens, sa.prompt_tokens,
           sb.prefill_tokens, sb.prompt_tokens);
    assert_int_equal(sb.prefill_tokens, sb.prompt_tokens);
    assert_int_equal(sa.prompt_tokens, sb.prompt_tokens);
    assert_true(sa.prefill_tokens < sa.prompt_tokens);
    assert_string_equal(ra, rb);
    free(r1);
    free(ra);
    free(rb);
    engine_free(a);
    engine_free(b);
}

struct cancel_ctx {
    struct engine *e;
    int pieces;
};

static bool cancel_after_3(const char *s, size_t n, void *user)
{
    (void)s;
    (void)n;
    struct cancel_ctx *c = user;
    if (++c->pieces == 3)
        engine_cancel(c->e);
    return true;
}

static void test_cancel(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 1024);
    struct engine_turn_params tp = greedy(200);
    struct cancel_ctx c = {e, 0};
    tp.on_piece = cancel_after_3;
    tp.user = &c;
    char err[512], *reply = NULL;
    assert_int_equal(engine_chat(e, "Write a long story about a dragon.", &tp, &reply, err, sizeof err), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    assert_int_equal(st.stop, ENGINE_STOP_CANCELLED);
    /* honoured within one token */
    assert_true(st.gen_tokens <= 4);
    assert_true(strlen(reply) > 0);
    free(reply);
    engine_free(e);
}

static int notices;
static void count_notice(const char *msg, void *user)
{
    (void)user;
    printf("notice: %s\n", msg);
    notices++;
}

/* With a small context, old turns are dropped (the system prompt stays) and
 * the caller is told. */
static void test_context_full_drops_turns(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 160);
    engine_set_system(e, "You are terse.");
    struct engine_turn_params tp = greedy(20);
    tp.on_notice = count_notice;
    char err[512];
    notices = 0;
    int dropped = 0;
    for (int i = 0; i < 6; i++) {
        char msg[128];
        snprintf(msg, sizeof msg, "Tell me one fact about the number %d, please.", i * 7 + 3);
        assert_int_equal(engine_chat(e, msg, &tp, NULL, err, sizeof err), 0);
        struct engine_stats st;
        engine_stats(e, &st);
        assert_true(st.kv_used <= 160);
        dropped += st.turns_dropped;
    }
    assert_true(dropped > 0);
    assert_int_equal(notices > 0, 1);
    engine_free(e);
}

/* A resumed transcript larger than the context is trimmed at once, oldest
 * turns first, and the caller learns how many. */
static void test_fit_context_after_resume(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 96);
    struct engine_message t[8];
    const char *q = "Please tell me something interesting about the sea and its creatures.";
    const char *a = "The sea is home to many creatures, from tiny plankton to huge whales.";
    for (int i = 0; i < 8; i++)
        t[i] = (struct engine_message){i % 2 ? ENGINE_ROLE_ASSISTANT : ENGINE_ROLE_USER, i % 2 ? a : q, NULL};
    assert_int_equal(engine_load_transcript(e, t, 8), 0);
    int32_t dropped = engine_fit_context(e, 16);
    printf("dropped %d turns\n", dropped);
    assert_true(dropped > 0 && dropped < 4);
    /* fitting again changes nothing, and the next turn drops no more than
     * its own message needs */
    assert_int_equal(engine_fit_context(e, 16), 0);
    struct engine_turn_params tp = greedy(8);
    char err[512];
    assert_int_equal(engine_chat(e, "Hi", &tp, NULL, err, sizeof err), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    assert_true(st.prompt_tokens + 8 <= 96);
    engine_free(e);
}

static void test_message_too_long(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 64);
    struct engine_turn_params tp = greedy(8);
    char err[512];
    char *big = malloc(4000);
    for (int i = 0; i < 3999; i++)
        big[i] = "abc "[i % 4];
    big[3999] = 0;
    assert_int_equal(engine_chat(e, big, &tp, NULL, err, sizeof err), -1);
    printf("error: %s\n", err);
    assert_non_null(strstr(err, "--ctx-size"));
    /* the engine stays usable */
    assert_int_equal(engine_chat(e, "Hi", &tp, NULL, err, sizeof err), 0);
    free(big);
    engine_free(e);
}

/* A message whose length alone proves it cannot fit is refused before it is
 * tokenized, with the sizes and the option in one line (64 MiB would
 * otherwise be copied by the template and tokenized for seconds). */
static void test_message_too_long_by_its_length(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 64);
    struct engine_turn_params tp = greedy(8);
    char err[512];
    size_t n = 64u << 20;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = 0;
    assert_int_equal(engine_chat(e, big, &tp, NULL, err, sizeof err), -1);
    printf("error: %s\n", err);
    assert_null(strchr(err, '\n'));
    assert_non_null(strstr(err, "its 67108864 bytes make at least"));
    assert_non_null(strstr(err, "context of 64"));
    assert_non_null(strstr(err, "--ctx-size"));
    /* the engine stays usable and the message did not enter the conversation */
    assert_int_equal(engine_chat(e, "Hi", &tp, NULL, err, sizeof err), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    assert_true(st.prompt_tokens < 64);
    free(big);
    engine_free(e);
}

/* Regenerating after engine_pop_turn with the same seed gives the same reply. */
static void test_pop_turn_regenerates(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 512);
    struct engine_turn_params tp = greedy(16);
    tp.sampling.temperature = 0.8f;
    tp.sampling.seed = 42;
    char err[512], *a = NULL, *b = NULL;
    assert_int_equal(engine_chat(e, "Say something.", &tp, &a, err, sizeof err), 0);
    assert_true(engine_pop_turn(e));
    assert_int_equal(engine_chat(e, "Say something.", &tp, &b, err, sizeof err), 0);
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_true(engine_pop_turn(e));
    assert_false(engine_pop_turn(e));
    engine_free(e);
}

static void test_load_errors(void **state)
{
    (void)state;
    char err[512];
    struct engine_params p = engine_default_params();
    p.model_path = "/nonexistent/model.gguf";
    assert_null(engine_new(&p, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/model.gguf"));
    assert_null(strchr(err, '\n'));

    char path[4200];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, path);
    p.model_path = path;
    p.chat_template = "nonsense";
    assert_null(engine_new(&p, err, sizeof err));
    assert_non_null(strstr(err, "nonsense"));
    p.chat_template = NULL;
    p.n_ctx = -5;
    assert_null(engine_new(&p, err, sizeof err));
    assert_non_null(strstr(err, "context"));
}

/* A copy of the default model with the first block scale of its LM head set
 * to +inf (fp16 0x7c00): the file loads (matrices are not scanned at load)
 * but its logits are non-finite. The turn must fail saying the file is
 * damaged, not answer with token 0 and an empty reply. */
static void test_nonfinite_logits_is_damage(void **state)
{
    (void)state;
    char model[4200], dir[4200], copy[4400], err[512];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, model);
    struct gguf *g = gguf_open(model, err, sizeof err);
    assert_non_null(g);
    const struct gguf_tensor *t = gguf_find_tensor(g, "output.weight");
    if (!t)
        t = gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    /* these block layouts open with their fp16 scale */
    assert_true(t->type == GGML_TYPE_Q4_0 || t->type == GGML_TYPE_Q4_1 ||
                t->type == GGML_TYPE_Q5_0 || t->type == GGML_TYPE_Q5_1 ||
                t->type == GGML_TYPE_Q8_0);
    long at = (long)(gguf_data_offset(g) + t->offset);
    gguf_close(g);

    test_tmpdir(dir, sizeof dir, "engine-damaged");
    snprintf(copy, sizeof copy, "%s/damaged.gguf", dir);
    FILE *in = fopen(model, "rb"), *out = fopen(copy, "wb");
    assert_non_null(in);
    assert_non_null(out);
    static char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fseek(out, at, SEEK_SET), 0);
    assert_int_equal(fwrite("\x00\x7c", 1, 2, out), 2);
    assert_int_equal(fclose(out), 0);

    struct engine_params p = engine_default_params();
    p.model_path = copy;
    p.backend = ENGINE_BACKEND_CPU;
    p.n_ctx = 256;
    struct engine *e = engine_new(&p, err, sizeof err);
    if (!e)
        fail_msg("engine_new: %s", err);
    struct engine_turn_params tp = greedy(8);
    char *reply = NULL;
    assert_int_equal(engine_chat(e, "hi", &tp, &reply, err, sizeof err), -1);
    printf("error: %s\n", err);
    assert_non_null(strstr(err, "non-finite logits"));
    assert_non_null(strstr(err, "damaged"));
    assert_non_null(strstr(err, "damaged.gguf"));
    assert_null(strchr(err, '\n'));
    struct engine_stats st;
    engine_stats(e, &st);
    assert_int_equal(st.stop, ENGINE_STOP_ERROR);
    free(reply);
    engine_free(e);
    unlink(copy);
    rmdir(dir);
}

/* A template whose control tokens the vocabulary lacks is named as the
 * cause, with the token; any other encode failure (out of memory) is not
 * reported as a template problem (the tokenizer tells them apart with
 * TOK_ENC_NO_TOKEN, test_tokenizer). */
static void test_template_token_missing_is_named(void **state)
{
    (void)state;
    char path[4200], err[512];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, path);
    struct engine_params p = engine_default_params();
    p.model_path = path;
    p.backend = ENGINE_BACKEND_CPU;
    p.n_ctx = 256;
    p.chat_template = "llama3";
    struct engine *e = engine_new(&p, err, sizeof err);
    if (!e)
        fail_msg("engine_new: %s", err);
    struct engine_turn_params tp = greedy(4);
    assert_int_equal(engine_chat(e, "hi", &tp, NULL, err, sizeof err), -1);
    printf("error: %s\n", err);
    assert_non_null(strstr(err, "chat template names a token this model does not have"));
    assert_non_null(strstr(err, "<|start_header_id|>"));
    assert_non_null(strstr(err, "--chat-template"));
    engine_free(e);
}

/* Writes TEXT to ROOT/REL, making the folders on the way. */
static void put_file(const char *root, const char *rel, const char *text)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *c = path + strlen(root) + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(path, 0755);
            *c = '/';
        }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The memory reading: MemAvailable, then the tightest cgroup v2 level from
 * the process's own up to the root ("max" = none), fed from fake files. */
static void test_hostmem_available(void **state)
{
    (void)state;
    char root[4200];
    uint64_t v;
    test_tmpdir(root, sizeof root, "hostmem");
    assert_int_equal(hostmem_available(root, &v), -1); /* nothing readable: unknown */
    put_file(root, "proc/meminfo", "MemTotal: 32000000 kB\nMemFree: 1000 kB\n"
                                   "MemAvailable: 20000000 kB\n");
    assert_int_equal(hostmem_available(root, &v), 0);
    assert_true(v == 20000000ull * 1024);
    put_file(root, "proc/self/cgroup", "4:memory:/x\n0::/box/inner\n");
    put_file(root, "sys/fs/cgroup/box/inner/memory.max", "max\n");
    assert_int_equal(hostmem_available(root, &v), 0);
    assert_true(v == 20000000ull * 1024); /* no limit anywhere */
    put_file(root, "sys/fs/cgroup/box/memory.max", "6442450944\n");       /* 6 GiB */
    put_file(root, "sys/fs/cgroup/box/memory.current", "1073741824\n"); /* 1 GiB used */
    assert_int_equal(hostmem_available(root, &v), 0);
    assert_true(v == 5ull << 30); /* the parent's limit binds */
    put_file(root, "sys/fs/cgroup/box/inner/memory.max", "2147483648\n");
    put_file(root, "sys/fs/cgroup/box/inner/memory.current", "3221225472\n"); /* over */
    assert_int_equal(hostmem_available(root, &v), 0);
    assert_true(v == 0);
}

/* The CPU backend refuses a context whose KV cache the memory cannot hold,
 * before allocating it, with the figures and what to lower; the same
 * context fits when the memory is there. */
static void test_cpu_refuses_context_past_memory(void **state)
{
    (void)state;
    char path[4200], root[4200], err[512];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, path);
    struct model *m = model_load(path, err, sizeof err);
    assert_non_null(m);
    test_tmpdir(root, sizeof root, "hostmem-cpu");
    put_file(root, "proc/meminfo", "MemAvailable: 262144 kB\n"); /* 256 MiB */
    struct backend_request rq = {.want = ENGINE_BACKEND_CPU, .model = m,
                                 .cfg = {.n_ctx = 8192, .n_threads = 1}, .mem_root = root};
    struct backend_opened bo;
    assert_int_equal(backend_open(&rq, &bo, err, sizeof err), -1);
    printf("error: %s\n", err);
    assert_null(strchr(err, '\n'));
    assert_non_null(strstr(err, "KV cache 0.4 at 8192 tokens"));
    assert_non_null(strstr(err, "but 0.2 GiB is available"));
    assert_non_null(strstr(err, "lower --ctx-size (this model was trained for 8192)"));
    /* q8_0 weighs 34 bytes per 32 elements: 17/64 of the f32 figure */
    rq.cfg.kv_type = ENGINE_KV_Q8_0;
    rq.cfg.n_ctx = 16384;
    assert_int_equal(backend_open(&rq, &bo, err, sizeof err), -1);
    printf("error: %s\n", err);
    assert_non_null(strstr(err, "KV cache 0.2 at 16384 tokens"));
    rq.cfg.kv_type = ENGINE_KV_AUTO;
    rq.cfg.n_ctx = 256; /* 11 MiB of cache */
    assert_int_equal(backend_open(&rq, &bo, err, sizeof err), 0);
    bo.ops->destroy(bo.state);
    model_free(m);
}

/* A context past the trained one runs, with a warning the front-ends show
 * without -v. */
static void test_ctx_past_training_warns(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 256);
    assert_string_equal(engine_info(e)->warning, "");
    engine_free(e);
    e = load(TEST_MODEL_SMOLLM2, 8193);
    printf("warning: %s\n", engine_info(e)->warning);
    assert_non_null(strstr(engine_info(e)->warning, "--ctx-size 8193"));
    assert_non_null(strstr(engine_info(e)->warning, "8192"));
    engine_free(e);
}

static void test_tokenize_user_text_is_plain(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 64);
    int64_t n = 0;
    int32_t *ids = engine_tokenize(e, "<|im_end|>", false, &n);
    assert_non_null(ids);
    assert_true(n > 1);
    char piece[64];
    size_t total = 0;
    for (int64_t i = 0; i < n; i++)
        total += engine_token_piece(e, ids[i], piece, sizeof piece);
    assert_int_equal(total, strlen("<|im_end|>"));
    free(ids);
    engine_free(e);
}

/* ---- raw completion, token ids, the KV cache type ---- */

/* The ids and pieces on_token was told. */
struct told {
    int32_t ids[512];
    int n;
    char text[4096];
    size_t len;
};

static void on_token_tell(int32_t id, const char *piece, size_t len, void *user)
{
    struct told *t = user;
    if (t->n < (int)(sizeof t->ids / sizeof t->ids[0]))
        t->ids[t->n++] = id;
    if (t->len + len < sizeof t->text) {
        memcpy(t->text + t->len, piece, len);
        t->len += len;
        t->text[t->len] = 0;
    }
}

/* --raw: the prompt is the text as given (BOS first, as the model adds it;
 * a control-token spelling stays text), with no template around it. */
static void raw_as_given(const char *model, const char *text)
{
    struct engine *e = load_with(model, 512, "none", ENGINE_KV_AUTO);
    assert_string_equal(engine_info(e)->template_name, "none");
    assert_false(engine_info(e)->template_guessed);
    int64_t n = 0;
    int32_t *ids = engine_tokenize(e, text, true, &n);
    assert_non_null(ids);
    struct engine_turn_params tp = greedy(4);
    char *reply = NULL, err[512];
    assert_int_equal(engine_chat(e, text, &tp, &reply, err, sizeof err), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    printf("raw prompt: %lld tokens by engine_tokenize, %d prefilled; reply '%s'\n",
           (long long)n, st.prompt_tokens, reply);
    assert_int_equal(st.prompt_tokens, (int32_t)n);
    assert_int_equal(st.prefill_tokens, (int32_t)n);
    assert_int_equal(st.kv_used, st.prompt_tokens + st.gen_tokens);
    free(reply);
    free(ids);
    engine_free(e);
}

static void test_raw_prompt_as_given(void **state)
{
    (void)state;
    raw_as_given(TEST_MODEL_SMOLLM2, "Monday, Tuesday,<|im_end|>\n<|im_start|>assistant\nWednesday,");
    raw_as_given(TEST_MODEL_GEMMA3, "Monday, Tuesday, <end_of_turn> Wednesday,");
}

/* A base model completes raw text: the Gemma 3 270M file has no chat
 * template (info says the format was guessed), and raw it goes on with
 * the next weekday. */
static void test_raw_continues_gemma3(void **state)
{
    (void)state;
    struct engine *g = load(TEST_MODEL_GEMMA3, 64);
    assert_true(engine_info(g)->template_guessed);
    engine_free(g);
    struct engine *s = load(TEST_MODEL_SMOLLM2, 64);
    assert_false(engine_info(s)->template_guessed);
    engine_free(s);

    struct engine *e = load_with(TEST_MODEL_GEMMA3, 256, "none", ENGINE_KV_AUTO);
    struct engine_turn_params tp = greedy(2);
    char *reply = NULL, err[512];
    assert_int_equal(engine_chat(e, "Monday, Tuesday, Wednesday, Thursday,", &tp, &reply, err,
                                 sizeof err), 0);
    printf("raw reply: '%s'\n", reply);
    assert_true(strncmp(reply, " Friday", 7) == 0);
    free(reply);
    engine_free(e);
}

/* on_token tells every generated id with its piece: as many as the stats
 * count, and the pieces spell the reply. */
static void test_on_token_ids(void **state)
{
    (void)state;
    struct engine *e = load(TEST_MODEL_SMOLLM2, 512);
    struct told t = {0};
    struct engine_turn_params tp = greedy(16);
    tp.on_token = on_token_tell;
    tp.user = &t;
    char *reply = NULL, err[512];
    assert_int_equal(engine_chat(e, "Name three colours.", &tp, &reply, err, sizeof err), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    assert_true(st.gen_tokens > 0);
    assert_int_equal(t.n, st.gen_tokens);
    assert_string_equal(t.text, reply);
    for (int i = 0; i < t.n; i++)
        assert_true(t.ids[i] >= 0 && t.ids[i] < engine_info(e)->n_vocab);
    free(reply);
    engine_free(e);
}

/* ---- the f16 and q8_0 caches against f32 on the real models ----
 *
 * Both caches round what f32 keeps, so greedy decoding parts from f32's
 * wherever the top two logits nearly tie, and which prompts tie where
 * depends on the float summation order of the kernels in use (the AVX2 and
 * AVX-512 ones differ): a free-running comparison of two greedy replies
 * passes or fails by luck. So the two engines run in lockstep on f32's
 * greedy tokens (teacher-forced): at every step the cache's logits of the
 * contenders (the tokens within KV_WINDOW of f32's top) must be within TOL
 * of f32's, and its pick f32's wherever f32 leads by more than 2 * TOL, as
 * a third of the steps at least do. A wrong row, block, scale or conversion
 * breaks both within a few tokens. Measured worst errors, SmolLM2 and
 * Gemma: f16 0.015 and 0.004, q8_0 0.24 and 0.16. */
enum { KV_STEPS = 64 };
#define KV_WINDOW 4.0f
#define KV_F16_TOL 0.05f
#define KV_Q8_TOL 0.5f

/* Index of the largest of LG[0..V-1]; *GAP: its lead over the runner-up. */
static int top_logit(const float *lg, int V, float *gap)
{
    int best = lg[1] > lg[0], second = !best;
    for (int i = 2; i < V; i++)
        if (lg[i] > lg[best])
            second = best, best = i;
        else if (lg[i] > lg[second])
            second = i;
    *gap = lg[best] - lg[second];
    return best;
}

static void kv_lockstep(const char *model, enum engine_kv_type kv, const char *text, float tol)
{
    struct engine *ref = load_with(model, 256, "none", ENGINE_KV_F32);
    struct engine *e = load_with(model, 256, "none", kv);
    assert_string_equal(engine_info(e)->kv_type,
                        engine_kv_type_name(kv == ENGINE_KV_AUTO ? ENGINE_KV_F16 : kv));
    int V = engine_info(e)->n_vocab;
    int64_t n = 0;
    int32_t *tok = engine_tokenize(ref, text, true, &n);
    assert_non_null(tok);
    assert_true(n > 0 && n + KV_STEPS < 256);
    float *la = malloc(sizeof(float) * (size_t)V), *lb = malloc(sizeof(float) * (size_t)V);
    assert_non_null(la);
    assert_non_null(lb);
    char err[512];
    assert_int_equal(engine_forward(ref, tok, (int32_t)n, 0, la, false, err, sizeof err), 0);
    assert_int_equal(engine_forward(e, tok, (int32_t)n, 0, lb, false, err, sizeof err), 0);
    int agree = 0, confident = 0;
    float worst = 0;
    for (int s = 0; s < KV_STEPS; s++) {
        float gap, gap_b;
        int32_t id = top_logit(la, V, &gap);
        int pick = top_logit(lb, V, &gap_b);
        /* the contenders: every token within KV_WINDOW of f32's top */
        for (int i = 0; i < V; i++)
            if (la[i] >= la[id] - KV_WINDOW)
                worst = fmaxf(worst, fabsf(la[i] - lb[i]));
        agree += pick == id;
        if (gap > 2 * tol) {
            confident++;
            if (pick != id)
                fail_msg("%s, %s cache, step %d: f32 picks %d by %.4f, the cache %d", model,
                         engine_info(e)->kv_type, s, id, gap, pick);
        }
        assert_int_equal(engine_forward(ref, &id, 1, (int32_t)n + s, la, false, err, sizeof err), 0);
        assert_int_equal(engine_forward(e, &id, 1, (int32_t)n + s, lb, false, err, sizeof err), 0);
    }
    struct engine_memory ma, mb;
    engine_memory(ref, &ma);
    engine_memory(e, &mb);
    printf("%s, %s cache: picks f32's at %d of %d steps (all %d where f32 leads by over %.2f); "
           "logits within %.4f of f32's; KV %llu vs %llu bytes\n",
           model, engine_info(e)->kv_type, agree, KV_STEPS, confident, 2 * tol, worst,
           (unsigned long long)mb.kv_cache, (unsigned long long)ma.kv_cache);
    assert_true(worst <= tol);
    assert_true(confident >= KV_STEPS / 3);
    /* f16 takes half of f32's bytes, q8_0 34/32 bytes an element: 17/64 */
    uint64_t num = kv == ENGINE_KV_Q8_0 ? 17 : 32, den = 64;
    assert_true(mb.kv_cache * den >= (ma.kv_cache - 8192) * num &&
                mb.kv_cache * den <= (ma.kv_cache + 8192) * num);
    free(la);
    free(lb);
    free(tok);
    engine_free(e);
    engine_free(ref);
}

/* The f16 cache (the default) in half the memory. */
static void test_kv_f16_greedy_unchanged(void **state)
{
    (void)state;
    kv_lockstep(TEST_MODEL_SMOLLM2, ENGINE_KV_AUTO, "Write a short story about a lighthouse keeper.",
                KV_F16_TOL);
    kv_lockstep(TEST_MODEL_GEMMA3, ENGINE_KV_AUTO, "Once upon a time, there was a little girl named",
                KV_F16_TOL);
}

/* q8_0: each cached element within 1/254 of its block's largest. */
static void test_kv_q8_0_greedy(void **state)
{
    (void)state;
    kv_lockstep(TEST_MODEL_SMOLLM2, ENGINE_KV_Q8_0, "The history of the printing press begins",
                KV_Q8_TOL);
    kv_lockstep(TEST_MODEL_GEMMA3, ENGINE_KV_Q8_0, "Once upon a time, there was a little girl named",
                KV_Q8_TOL);
}

/* The figures built on the cache's size count q8_0's 34 bytes per 32
 * elements: the bytes a decode step reads at depth (the roofline's), the
 * memory map's bytes a position (the inspector's headroom) and the memory
 * reading, each within the allocation's rounding of the exact figure. */
static void test_kv_q8_0_byte_figures(void **state)
{
    (void)state;
    struct engine *e = load_with(TEST_MODEL_SMOLLM2, 1024, "none", ENGINE_KV_Q8_0);
    const struct engine_info *in = engine_info(e);
    assert_string_equal(in->kv_type, "q8_0");
    char path[4200], err[512];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, path);
    struct model *m = model_load(path, err, sizeof err);
    assert_non_null(m);
    const struct model_hparams *hp = &m->hp;
    /* K and V elements of one position, all layers */
    double elems = 2.0 * hp->n_layer * hp->n_head_kv * hp->head_dim;
    uint64_t b0 = engine_bytes_per_token(e, 0), b512 = engine_bytes_per_token(e, 512);
    double per_tok = (double)(b512 - b0) / 512;
    printf("q8_0: %.1f bytes a position read, exact %.1f\n", per_tok, elems * 34 / 32);
    assert_true(fabs(per_tok - elems * 34 / 32) <= 0.01 * elems);
    struct engine_memory_map mm;
    engine_memory_map(e, &mm);
    assert_true(mm.known);
    assert_string_equal(mm.kv_type, "q8_0");
    double per_layer = elems / hp->n_layer * 34 / 32;
    assert_true(fabs((double)mm.kv_pos_bytes - per_layer) <= 1);
    struct engine_memory mem;
    engine_memory(e, &mem);
    double want = elems * 1024 * 34 / 32;
    assert_true((double)mem.kv_cache >= want && (double)mem.kv_cache < want + 8192);
    model_free(m);
    engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_prefill_progress),
        cmocka_unit_test(test_split_thinking),
        cmocka_unit_test(test_stream_split_think_tags),
        cmocka_unit_test(test_stream_split_harmony),
        cmocka_unit_test(test_split_thinking_harmony),
        cmocka_unit_test(test_stream_harmony_without_thinking_hook),
        cmocka_unit_test(test_local_reply_opens_thinking),
        cmocka_unit_test(test_local_harmony_header_does_not_stop),
        cmocka_unit_test(test_nonfinite_logits_is_damage),
        cmocka_unit_test(test_hostmem_available),
        cmocka_unit_test(test_cpu_refuses_context_past_memory),
        cmocka_unit_test(test_ctx_past_training_warns),
        cmocka_unit_test(test_template_token_missing_is_named),
        cmocka_unit_test(test_answers_smollm2),
        cmocka_unit_test(test_chat_turn_gemma3),
        cmocka_unit_test(test_kv_reuse),
        cmocka_unit_test(test_remembers),
        cmocka_unit_test(test_reuse_equals_full_prefill),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_context_full_drops_turns),
        cmocka_unit_test(test_fit_context_after_resume),
        cmocka_unit_test(test_message_too_long),
        cmocka_unit_test(test_message_too_long_by_its_length),
        cmocka_unit_test(test_pop_turn_regenerates),
        cmocka_unit_test(test_tokenize_user_text_is_plain),
        cmocka_unit_test(test_raw_prompt_as_given),
        cmocka_unit_test(test_raw_continues_gemma3),
        cmocka_unit_test(test_on_token_ids),
        cmocka_unit_test(test_kv_f16_greedy_unchanged),
        cmocka_unit_test(test_kv_q8_0_greedy),
        cmocka_unit_test(test_kv_q8_0_byte_figures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
