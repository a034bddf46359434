/* test_tokenizer.c - the tokenizers against the conformance fixtures (every
 * case of every vocabulary, token for token), the two real models (round
 * trips, hand-checkable facts, special tokens staying plain text), the
 * streaming detokeniser, and broken vocabularies that must be refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "gguf.h"
#include "tokenizer.h"
#include "tokenizer_internal.h" /* tok_pre_split: the pieces themselves */

/* ---- helpers ---- */

static struct tokenizer *open_tok(const char *path, struct gguf **gout)
{
    char err[512];
    struct gguf *g = gguf_open(path, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    struct tokenizer *t = tok_new(g, err, sizeof err);
    if (!t)
        fail_msg("%s", err);
    if (gout)
        *gout = g;
    else
        gguf_close(g);
    return t;
}

/* Encodes TEXT (plain, no BOS) into a malloc'd array. */
static int32_t *encode(const struct tokenizer *t, const char *text, size_t len, int64_t *n)
{
    char err[256] = "";
    int64_t need = tok_encode_e(t, text, len, false, NULL, 0, err, sizeof err);
    if (need < 0)
        fail_msg("encode failed: %s", err);
    int32_t *ids = malloc((size_t)(need ? need : 1) * sizeof *ids);
    int64_t got = tok_encode(t, text, len, false, ids, need);
    assert_int_equal(got, need);
    *n = need;
    return ids;
}

/* Concatenated pieces of IDS. */
static char *decode(const struct tokenizer *t, const int32_t *ids, int64_t n, size_t *len)
{
    size_t total = 0;
    for (int64_t i = 0; i < n; i++)
        total += tok_piece(t, ids[i], NULL, 0);
    char *s = malloc(total + 1);
    size_t k = 0;
    for (int64_t i = 0; i < n; i++)
        k += tok_piece(t, ids[i], s + k, total - k);
    assert_int_equal(k, total);
    s[k] = 0;
    *len = k;
    return s;
}

/* ---- conformance fixtures ---- */

/* Encodes every case of a fixture pair (IPATH: strings split by separator
 * lines, OPATH: one line of expected ids per string) with T and fails, after
 * printing each mismatch, unless all match. Returns the number of cases. */
static int check_cases(const struct tokenizer *t, const char *name, const char *ipath,
                       const char *opath)
{
    size_t ilen, olen;
    char *inp = test_read_file(ipath, &ilen), *outp = test_read_file(opath, &olen);
    assert_non_null(inp);
    assert_non_null(outp);

    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t seplen = sizeof sep - 1;
    char *ip = inp, *op = outp;
    int ncase = 0, nfail = 0;
    for (;;) {
        char *end = strstr(ip, sep);
        if (!end)
            break;
        char *oend = strchr(op, '\n');
        assert_non_null(oend);
        *oend = 0;

        int64_t n;
        int32_t *ids = encode(t, ip, (size_t)(end - ip), &n);
        /* expected ids */
        int32_t want[4096];
        int64_t nw = 0;
        for (char *q = op; *q;) {
            while (*q == ' ')
                q++;
            if (!*q)
                break;
            assert_true(nw < (int64_t)(sizeof want / sizeof want[0]));
            want[nw++] = (int32_t)strtol(q, &q, 10);
        }
        bool same = nw == n && (n == 0 || memcmp(want, ids, (size_t)n * sizeof *ids) == 0);
        if (!same) {
            nfail++;
            printf("%s case %d: '%.*s'\n  want:", name, ncase, (int)(end - ip), ip);
            for (int64_t i = 0; i < nw; i++)
                printf(" %d", want[i]);
            printf("\n  got: ");
            for (int64_t i = 0; i < n; i++)
                printf(" %d", ids[i]);
            printf("\n");
        }
        free(ids);
        ncase++;
        ip = end + seplen;
        op = oend + 1;
    }
    printf("%s: %d cases, %d failed\n", name, ncase, nfail);
    assert_int_equal(nfail, 0);
    free(inp);
    free(outp);
    return ncase;
}

static void run_fixture(const char *name)
{
    char path[4096], rel[256];
    snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", name);
    TEST_REQUIRE_FIXTURE(rel, path);
    struct tokenizer *t = open_tok(path, NULL);

    char ipath[4200], opath[4200];
    snprintf(ipath, sizeof ipath, "%s.inp", path);
    snprintf(opath, sizeof opath, "%s.out", path);
    assert_true(check_cases(t, name, ipath, opath) > 30);
    tok_free(t);
}

static void test_fixture_llama_spm(void **state) { (void)state; run_fixture("llama-spm"); }
static void test_fixture_phi3(void **state) { (void)state; run_fixture("phi-3"); }
static void test_fixture_gpt2(void **state) { (void)state; run_fixture("gpt-2"); }
static void test_fixture_starcoder(void **state) { (void)state; run_fixture("starcoder"); }
static void test_fixture_refact(void **state) { (void)state; run_fixture("refact"); }
static void test_fixture_mpt(void **state) { (void)state; run_fixture("mpt"); }
static void test_fixture_falcon(void **state) { (void)state; run_fixture("falcon"); }
static void test_fixture_deepseek_llm(void **state) { (void)state; run_fixture("deepseek-llm"); }
static void test_fixture_deepseek_coder(void **state) { (void)state; run_fixture("deepseek-coder"); }


/* ---- real models ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static struct tokenizer *open_model(const char *file)
{
    char path[4096 + 256]; /* the models folder (up to 4096) plus the file name */
    TEST_REQUIRE_MODEL(file, path);
    double t0 = now_s();
    struct tokenizer *t = open_tok(path, NULL);
    double dt = now_s() - t0;
    printf("%s: %d tokens, loaded in %.3f s\n", file, tok_n_vocab(t), dt);
    /* the reader maps the file; building hashes for 262k tokens must stay cheap */
    assert_true(dt < 2.0);
    return t;
}

static const char *const ROUND_TRIP[] = {
    "Hello world",
    " leading space and  double  spaces ",
    "line one\nline two\r\n\ttabbed\n\n\n",
    "Grüße aus Köln, ça va? Ærøskøbing",
    "Привет, мир! Καλημέρα κόσμε",
    "日本語のテキスト、中文字符和한국어",
    "emoji 🦙🚀👩‍💻 and ✅ flags 🇫🇷",
    "math ∑∫√∞ ≠ ≤ ½ ¾ 123456789 3.14159",
    "code: for (int i = 0; i < n; i++) { x[i] = y[i] * 2; } // done",
    "quotes 'single' \"double\" `back` I'm we'll they've",
    "<|im_end|> <end_of_turn> </s> <s> <bos> plain spellings",
    "\x7f\x01\x02 control chars and \xC2\xA0 nbsp \xE3\x80\x80 ideographic space",
};

static void check_round_trips(const struct tokenizer *t)
{
    for (size_t i = 0; i < sizeof ROUND_TRIP / sizeof ROUND_TRIP[0]; i++) {
        int64_t n;
        int32_t *ids = encode(t, ROUND_TRIP[i], strlen(ROUND_TRIP[i]), &n);
        size_t len;
        char *back = decode(t, ids, n, &len);
        if (len != strlen(ROUND_TRIP[i]) || memcmp(back, ROUND_TRIP[i], len) != 0)
            fail_msg("round trip of '%s' gave '%s'", ROUND_TRIP[i], back);
        free(back);
        free(ids);
    }
}

/* Text that is one token in the vocabulary encodes to exactly that token. */
static void check_single(const struct tokenizer *t, const char *text, const char *token_text)
{
    int64_t n;
    int32_t *ids = encode(t, text, strlen(text), &n);
    if (n != 1)
        fail_msg("'%s' gave %lld tokens, want 1", text, (long long)n);
    assert_string_equal(tok_text(t, ids[0]), token_text);
    assert_int_equal(ids[0], tok_lookup(t, token_text));
    free(ids);
}

/* A control token's spelling typed by the user stays text; the same text as
 * a special segment is exactly that token. */
static void check_special_plain(const struct tokenizer *t, const char *special)
{
    int32_t ctl = tok_lookup(t, special);
    assert_true(ctl >= 0);
    assert_int_equal(tok_attr(t, ctl), TOK_ATTR_CONTROL);
    int64_t n;
    int32_t *ids = encode(t, special, strlen(special), &n);
    assert_true(n > 1);
    for (int64_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], ctl);
    size_t len;
    char *back = decode(t, ids, n, &len);
    assert_string_equal(back, special);
    free(back);
    free(ids);

    struct tok_segment segs[3] = {{"user text ", 10, false}, {special, strlen(special), true},
                                  {"\nmore", 5, false}};
    int32_t out[64];
    int64_t m = tok_encode_segments(t, segs, 3, false, out, 64);
    assert_true(m > 2 && m <= 64);
    int found = 0;
    for (int64_t i = 0; i < m; i++)
        found += out[i] == ctl;
    assert_int_equal(found, 1);
    /* a special segment naming no token is an error with a message */
    char err[256] = "";
    struct tok_segment bad = {"<|no such token|>", 17, true};
    assert_int_equal(tok_encode_segments_e(t, &bad, 1, false, out, 64, err, sizeof err),
                     TOK_ENC_NO_TOKEN);
    assert_non_null(strstr(err, "<|no such token|>"));
}

/* Adjacent plain segments are one fragment: same ids as the joined text. */
static void check_segments_join(const struct tokenizer *t)
{
    const char *a = "Hello wor", *b = "ld, how are", *c = " you?";
    struct tok_segment segs[3] = {{a, strlen(a), false}, {b, strlen(b), false}, {c, strlen(c), false}};
    int32_t x[64], y[64];
    int64_t nx = tok_encode_segments(t, segs, 3, false, x, 64);
    int64_t ny = tok_encode(t, "Hello world, how are you?", 25, false, y, 64);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, (size_t)nx * sizeof *x);
    /* the buffer protocol: a short buffer gets a prefix and the full count */
    int32_t z[2];
    assert_int_equal(tok_encode(t, "Hello world, how are you?", 25, false, z, 2), ny);
    assert_memory_equal(z, y, sizeof z);
}

static void check_empty_and_invalid(const struct tokenizer *t)
{
    int32_t out[64];
    assert_int_equal(tok_encode(t, "", 0, false, out, 64), 0);
    int64_t nb = tok_encode(t, "", 0, true, out, 64);
    if (tok_bos(t) >= 0) {
        assert_int_equal(nb, 1);
        assert_int_equal(out[0], tok_bos(t));
    } else
        assert_int_equal(nb, 0);
    assert_int_equal(tok_encode(t, NULL, 5, false, out, 64), -1);

    /* invalid UTF-8 is encoded byte by byte and comes back unchanged */
    /* (bytes that never occur in UTF-8, like 0xFF, may have no token at all
     * in a byte-level vocabulary; the reference drops them, so they are only
     * checked not to fail) */
    assert_true(tok_encode(t, "x\xff\xfe\xc0y", 5, false, out, 64) >= 2);
    const char bad[] = "ok \x80\xbf \xc3 x \xe2\x82 \xed\xa0\x80 \xc3\xa9 end\xf0\x9f";
    int64_t n;
    int32_t *ids = encode(t, bad, sizeof bad - 1, &n);
    size_t len;
    char *back = decode(t, ids, n, &len);
    assert_int_equal(len, sizeof bad - 1);
    assert_memory_equal(back, bad, len);
    free(back);
    free(ids);
}

/* Feeding ids one at a time never yields a split or invalid character and
 * adds up to the text. */
static void check_stream(const struct tokenizer *t, const char *text)
{
    int64_t n;
    int32_t *ids = encode(t, text, strlen(text), &n);
    struct tok_stream *s = tok_stream_new(t);
    char acc[1024];
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *o;
        size_t m = tok_stream_push(s, ids[i], &o);
        for (size_t j = 0; j < m;) {
            unsigned char c = (unsigned char)o[j];
            size_t cl = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            assert_true(c < 0x80 || c >= 0xC2);
            assert_true(j + cl <= m);
            j += cl;
        }
        memcpy(acc + k, o, m);
        k += m;
    }
    const char *o;
    assert_int_equal(tok_stream_flush(s, &o), 0);
    acc[k] = 0;
    assert_string_equal(acc, text);
    tok_stream_free(s);
    free(ids);
}

/* A reply of zero tokens: flushing a stream that was never fed (its pending
 * buffer not yet allocated) gives "" without touching a NULL pointer (the
 * drain once did memmove(NULL, NULL, 0), undefined behaviour). */
static void check_empty_stream(const struct tokenizer *t)
{
    struct tok_stream *s = tok_stream_new(t);
    assert_non_null(s);
    const char *o = NULL;
    assert_int_equal(tok_stream_flush(s, &o), 0);
    assert_non_null(o);
    assert_string_equal(o, "");
    tok_stream_reset(s);
    assert_int_equal(tok_stream_flush(s, &o), 0);
    tok_stream_free(s);
}

static void check_long_input(const struct tokenizer *t)
{
    /* 1 MB of varied text */
    size_t cap = 1 << 20, k = 0;
    char *big = malloc(cap + 256);
    for (size_t i = 0; k < cap; i++) {
        const char *p = ROUND_TRIP[i % (sizeof ROUND_TRIP / sizeof ROUND_TRIP[0])];
        size_t l = strlen(p);
        memcpy(big + k, p, l);
        k += l;
        big[k++] = ' ';
    }
    double t0 = now_s();
    int64_t n = tok_encode(t, big, k, false, NULL, 0);
    double dt = now_s() - t0;
    printf("  1 MB of text: %lld tokens in %.2f s\n", (long long)n, dt);
    assert_true(n > 100000);
    assert_true(dt < 20.0);

    /* 100 KB of one letter: one pre-token, one long merge chain */
    memset(big, 'a', 100000);
    t0 = now_s();
    n = tok_encode(t, big, 100000, false, NULL, 0);
    dt = now_s() - t0;
    printf("  100 KB run: %lld tokens in %.2f s\n", (long long)n, dt);
    assert_true(n > 0 && n < 100000);
    assert_true(dt < 10.0);
    free(big);
}

static void test_smollm2(void **state)
{
    (void)state;
    struct tokenizer *t = open_model(TEST_MODEL_SMOLLM2);
    assert_int_equal(tok_kind(t), TOK_KIND_BPE);
    printf("  pre '%s' bos %d eos %d add_bos %d\n", tok_pre_name(t), tok_bos(t), tok_eos(t),
           tok_add_bos(t));
    check_single(t, "Hello", "Hello");
    check_single(t, " world", "\xC4\xA0world"); /* space maps to U+0120 */
    check_round_trips(t);
    check_special_plain(t, "<|im_end|>");
    check_special_plain(t, "<|im_start|>");
    assert_true(tok_is_eog(t, tok_lookup(t, "<|im_end|>")));
    assert_true(tok_is_eog(t, tok_lookup(t, "<|endoftext|>")));
    assert_false(tok_is_eog(t, tok_lookup(t, "<|im_start|>")));
    assert_false(tok_is_eog(t, tok_lookup(t, "Hello")));
    /* control tokens decode to nothing */
    assert_int_equal(tok_piece(t, tok_lookup(t, "<|im_end|>"), NULL, 0), 0);
    check_segments_join(t);
    check_empty_and_invalid(t);
    check_stream(t, "llama 🦙 rocket 🚀 family 👩‍👩‍👧 Grüße 日本");
    check_empty_stream(t);
    check_long_input(t);
    tok_free(t);
}

static void test_gemma3(void **state)
{
    (void)state;
    struct tokenizer *t = open_model(TEST_MODEL_GEMMA3);
    assert_int_equal(tok_kind(t), TOK_KIND_SPM);
    assert_true(tok_add_bos(t));
    assert_string_equal(tok_text(t, tok_bos(t)), "<bos>");
    /* gemma3 sets add_space_prefix false: no leading U+2581 */
    check_single(t, "Hello", "Hello");
    check_single(t, " Hello", "\xE2\x96\x81Hello");
    check_round_trips(t);
    check_special_plain(t, "<end_of_turn>");
    check_special_plain(t, "<start_of_turn>");
    assert_true(tok_is_eog(t, tok_lookup(t, "<end_of_turn>")));
    assert_true(tok_is_eog(t, tok_eos(t)));
    assert_false(tok_is_eog(t, tok_lookup(t, "<start_of_turn>")));
    check_segments_join(t);
    check_empty_and_invalid(t);
    check_stream(t, "llama 🦙 rocket 🚀 family 👩‍👩‍👧 Grüße 日本 \xF0\x90\x8D\x88");
    check_long_input(t);

    /* byte tokens split a character: nothing until it is whole */
    int32_t b[4] = {tok_lookup(t, "<0xF0>"), tok_lookup(t, "<0x9F>"), tok_lookup(t, "<0xA6>"),
                    tok_lookup(t, "<0x99>")};
    for (int i = 0; i < 4; i++)
        assert_true(b[i] >= 0 && tok_attr(t, b[i]) == TOK_ATTR_BYTE);
    struct tok_stream *s = tok_stream_new(t);
    const char *o;
    for (int i = 0; i < 3; i++)
        assert_int_equal(tok_stream_push(s, b[i], &o), 0);
    assert_int_equal(tok_stream_push(s, b[3], &o), 4);
    assert_memory_equal(o, "\xF0\x9F\xA6\x99", 4);
    /* an invalid byte becomes U+FFFD; an unfinished tail too, at flush */
    assert_int_equal(tok_stream_push(s, tok_lookup(t, "<0xFF>"), &o), 3);
    assert_memory_equal(o, "\xEF\xBF\xBD", 3);
    assert_int_equal(tok_stream_push(s, tok_lookup(t, "<0xE2>"), &o), 0);
    assert_int_equal(tok_stream_push(s, tok_lookup(t, "Hello"), &o), 8);
    assert_memory_equal(o, "\xEF\xBF\xBDHello", 8);
    assert_int_equal(tok_stream_push(s, tok_lookup(t, "<0xE2>"), &o), 0);
    assert_int_equal(tok_stream_flush(s, &o), 3);
    assert_memory_equal(o, "\xEF\xBF\xBD", 3);
    tok_stream_reset(s);
    assert_int_equal(tok_stream_push(s, tok_lookup(t, "<end_of_turn>"), &o), 0);
    tok_stream_free(s);
    tok_free(t);
}

/* ---- real models against llama.cpp ---- */

/* tests/data/tokenizer/NAME.inp/.out hold ~80 strings (prose, code, numbers,
 * contractions, whitespace runs, emoji, scripts, combining marks, special-token
 * spellings as text) and the ids llama.cpp gave for them with the model's own
 * vocabulary (llama-cpp-python 0.3.36, vocab_only, tokenize(text,
 * add_bos=False, special=False); the generator is not kept). The shared
 * fixtures cover the algorithms; these pin the exact vocabularies we ship
 * with, including their pre-tokenizer ('smollm') and gemma3's settings. */
static void run_model_cases(const char *file, const char *name)
{
    char path[4096 + 256];
    TEST_REQUIRE_MODEL(file, path);
    struct tokenizer *t = open_tok(path, NULL);
    char ipath[4096], opath[4096];
    snprintf(ipath, sizeof ipath, "%s/tokenizer/%s.inp", KVCHAT_TEST_DATA, name);
    snprintf(opath, sizeof opath, "%s/tokenizer/%s.out", KVCHAT_TEST_DATA, name);
    assert_true(check_cases(t, name, ipath, opath) >= 80);
    tok_free(t);
}

static void test_smollm2_reference(void **state)
{
    (void)state;
    run_model_cases(TEST_MODEL_SMOLLM2, "smollm2");
}

static void test_gemma3_reference(void **state)
{
    (void)state;
    run_model_cases(TEST_MODEL_GEMMA3, "gemma3");
}

/* ---- broken vocabularies ---- */

struct vocab_spec {
    const char *model;
    const char *pre;
    const char *const *tokens;
    uint64_t n_tokens;
    uint64_t n_scores; /* scores written when nonzero */
    const char *const *merges;
    uint64_t n_merges;
    int64_t bos; /* written when >= 0 */
};

static struct tokenizer *build(const struct vocab_spec *v, char *err, size_t errlen)
{
    struct gguf_writer *w = gguf_writer_new();
    if (v->model)
        gguf_writer_set_str(w, "tokenizer.ggml.model", v->model);
    if (v->pre)
        gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", v->tokens, v->n_tokens);
    if (v->n_scores) {
        float sc[64] = {0};
        for (uint64_t i = 0; i < v->n_scores && i < 64; i++)
            sc[i] = -(float)i;
        gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, sc, v->n_scores);
    }
    if (v->merges)
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", v->merges, v->n_merges);
    if (v->bos >= 0)
        gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    size_t size;
    void *mem = gguf_writer_to_memory(w, &size);
    gguf_writer_free(w);
    assert_non_null(mem);
    struct gguf *g = gguf_open_memory(mem, size, "synthetic", err, errlen);
    assert_non_null(g);
    struct tokenizer *t = tok_new(g, err, errlen);
    gguf_close(g);
    free(mem);
    return t;
}

static void expect_refused(const struct vocab_spec *v, const char *needle)
{
    char err[1024] = "";
    struct tokenizer *t = build(v, err, sizeof err);
    if (t)
        fail_msg("vocabulary accepted, expected an error about '%s'", needle);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
    assert_null(strchr(err, '\n'));
}

static void test_broken_vocab(void **state)
{
    (void)state;
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "\xE2\x96\x81"};
    static const char *const btoks[] = {"a", "b", "ab", "\xC4\xA0"};
    static const char *const good_merges[] = {"a b"};
    static const char *const bad_merges[] = {"a b", "a zz"};
    static const char *const nospace_merges[] = {"ab"};
    static const char *const dup_toks[] = {"a", "b", "a"};

    /* a well-formed SPM and BPE vocabulary load and tokenize */
    struct vocab_spec spm = {"llama", NULL, toks, 7, 7, NULL, 0, -1};
    char err[1024] = "";
    struct tokenizer *t = build(&spm, err, sizeof err);
    if (!t)
        fail_msg("%s", err);
    int32_t out[8];
    assert_int_equal(tok_encode(t, "ab", 2, true, out, 8), 3);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 6); /* the space prefix */
    assert_int_equal(out[2], 5);
    /* no byte tokens: an unknown character becomes <unk> */
    assert_int_equal(tok_encode(t, "z", 1, false, out, 8), 2);
    assert_int_equal(out[1], 0);
    tok_free(t);

    struct vocab_spec bpe = {"gpt2", "gpt-2", btoks, 4, 0, good_merges, 1, -1};
    t = build(&bpe, err, sizeof err);
    if (!t)
        fail_msg("%s", err);
    assert_int_equal(tok_encode(t, "ab", 2, false, out, 8), 1);
    assert_int_equal(out[0], 2);
    assert_int_equal(tok_bos(t), -1); /* the default 11 is outside this vocabulary */
    tok_free(t);

    struct vocab_spec v;
    v = spm;
    v.n_scores = 5;
    expect_refused(&v, "tokenizer.ggml.scores");
    v = spm;
    v.n_tokens = 0;
    expect_refused(&v, "empty");
    v = spm;
    v.bos = 7;
    expect_refused(&v, "bos_token_id");
    v = spm;
    v.model = "bert";
    expect_refused(&v, "bert");
    v = spm;
    v.model = NULL;
    expect_refused(&v, "tokenizer.ggml.model");
    v = spm;
    v.tokens = dup_toks;
    v.n_tokens = 3;
    v.n_scores = 3;
    expect_refused(&v, "duplicate");
    v = bpe;
    v.merges = bad_merges;
    v.n_merges = 2;
    expect_refused(&v, "merges[1]");
    v = bpe;
    v.merges = nospace_merges;
    expect_refused(&v, "merges[0]");
    v = bpe;
    v.merges = NULL;
    expect_refused(&v, "merges");
    v = bpe;
    v.pre = "no-such-pre";
    expect_refused(&v, "no-such-pre");
    expect_refused(&v, "llama3");
}

/* Every pre-tokenizer the engine promises compiles, and splits text so that
 * a vocabulary of the 256 byte characters (no merges) round-trips it. */
static void test_all_pretokenizers(void **state)
{
    (void)state;
    static const char *const pres[] = {"default", "gpt-2", "llama3", "llama-bpe", "qwen2",
                                       "smollm", "starcoder", "refact", "mpt", "falcon",
                                       "deepseek-llm", "deepseek-coder", "command-r", "olmo",
                                       "gpt-4o"};
    static char texts[256][5];
    const char *toks[256];
    /* the GPT-2 byte map, written out independently of the tokenizer */
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool same = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unsigned cp = same ? (unsigned)b : 256u + (unsigned)extra++;
        if (cp < 0x80) {
            texts[b][0] = (char)cp;
            texts[b][1] = 0;
        } else {
            texts[b][0] = (char)(0xC0 | (cp >> 6));
            texts[b][1] = (char)(0x80 | (cp & 0x3F));
            texts[b][2] = 0;
        }
        toks[b] = texts[b];
    }
    const char *text = "Hello world's 12345 ½ \xC3\x84pfel\n\n  \t x++; \xE4\xB8\xAD\xE6\x96\x87 "
                       "\xF0\x9F\xA6\x99!!  ";
    for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++) {
        struct vocab_spec v = {"gpt2", pres[i], toks, 256, 0, NULL, 0, 0};
        static const char *const no_merges[1] = {NULL};
        v.merges = no_merges;
        char err[1024] = "";
        struct tokenizer *t = build(&v, err, sizeof err);
        if (!t)
            fail_msg("pre '%s': %s", pres[i], err);
        assert_string_equal(tok_pre_name(t), pres[i]);
        int64_t n;
        int32_t *ids = encode(t, text, strlen(text), &n);
        assert_int_equal(n, (int64_t)strlen(text));
        size_t len;
        char *back = decode(t, ids, n, &len);
        assert_string_equal(back, text);
        free(back);
        free(ids);
        tok_free(t);
    }
}

/* ---- the o200k (gpt-4o) pre-tokenizer ---- */

/* An encoding context that writes each piece tok_pre_split hands on into
 * TEXT, pieces separated by '|'. */
struct piece_log {
    struct tok_enc e; /* first: the emit callback gets its address */
    char text[512];
    size_t n;
};

static void log_piece(struct tok_enc *e, const unsigned char *piece, size_t n)
{
    struct piece_log *pl = (struct piece_log *)e;
    if (pl->n + n + 2 > sizeof pl->text)
        fail_msg("pieces overflow the log");
    if (pl->n)
        pl->text[pl->n++] = '|';
    memcpy(pl->text + pl->n, piece, n);
    pl->n += n;
    pl->text[pl->n] = 0;
}

/* The pieces of TEXT under T's pre-tokenizer, '|'-separated, into OUT. */
static void pieces(const struct tokenizer *t, const char *text, char *out, size_t cap)
{
    struct piece_log pl = {.e = {.t = t}};
    tok_pre_split(&pl.e, text, strlen(text), log_piece);
    assert_false(pl.e.failed);
    for (int i = 0; i < TOK_MAX_REGEX; i++)
        pcre2_match_data_free(pl.e.md[i]);
    snprintf(out, cap, "%s", pl.text);
}

/* tokenizer.ggml.pre "gpt-4o" (gpt-oss's vocabulary) cuts text as
 * tiktoken's o200k_base does: case changes split words, contractions stay
 * on their word, digits go in threes, CJK runs are one piece, punctuation
 * takes the newlines and slashes after it. */
static void test_gpt4o_pretokenizer(void **state)
{
    (void)state;
    static char texts[256][5];
    const char *toks[256];
    for (int b = 0; b < 256; b++) { /* any 256 distinct tokens: only the split is looked at */
        snprintf(texts[b], sizeof texts[b], "<%02x>", b);
        toks[b] = texts[b];
    }
    static const char *const no_merges[1] = {NULL};
    struct vocab_spec v = {"gpt2", "gpt-4o", toks, 256, 0, no_merges, 0, -1};
    char err[1024] = "";
    struct tokenizer *t = build(&v, err, sizeof err);
    if (!t)
        fail_msg("gpt-4o: %s", err);
    assert_string_equal(tok_pre_name(t), "gpt-4o");
    assert_false(tok_add_bos(t));
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"HelloWorld", "Hello|World"},
        {"CamelCASEWord isHTTPServer", "Camel|CASEWord| is|HTTPServer"},
        {"I don't know, you'll see", "I| don't| know|,| you'll| see"},
        {"I'M SHE'LL we'Re", "I'M| SHE'LL| we'Re"},
        {"'s alone", "'s| alone"},
        {"1 12 123 1234 12345", "1| |12| |123| |123|4| |123|45"},
        {"v2024x", "v|202|4|x"},
        {"中文字 你好，世界", "中文字| 你好|，世界"}, /* the comma leads its word */
        {"naïve Éclair", "naïve| Éclair"},
        {"x++;\n\n/y", "x|++;\n\n/|y"},
        {"a  \n\n b", "a|  \n\n| b"},
        {"end   ", "end|   "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[512];
        pieces(t, cases[i].in, got, sizeof got);
        if (strcmp(got, cases[i].out) != 0)
            fail_msg("gpt-4o split of '%s': got '%s', want '%s'", cases[i].in, got,
                     cases[i].out);
    }
    tok_free(t);
}

/* ---- long texts: the same ids, in memory linear in the text ---- */

/* A long text that exercises every way the tokenizers cut it: prose, runs of
 * spaces, tabs and newlines (gemma3's user-defined tokens), digits (smollm's
 * split), invalid bytes and text in several scripts. Deterministic. */
static char *long_text(size_t len)
{
    static const char *const parts[] = {
        "the ",        "quick ",  "brown ",     "fox ",      "jumps, ",   "over ",
        "lazy ",       "dogs. ",  "\n",         "\n\n",      "    ",      "\t",
        "  ",          "12345 ",  "3.14159 ",   "привет ",   "мир ",      "日本語 ",
        "テキスト ",   "😀 ",     "ñandú ",     "Ελληνικά ", "مرحبا ",    "한국어 ",
        "e\xcc\x81 ",  "don't ",  "<|im_end|>", "</s>",      "          ", "\n\n\n\n",
    };
    char *s = malloc(len + 1);
    uint64_t x = 88172645463325252ull;
    size_t k = 0;
    while (k < len) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const char *p = parts[x % (sizeof parts / sizeof parts[0])];
        size_t n = strlen(p);
        if (n > len - k)
            n = len - k;
        memcpy(s + k, p, n);
        k += n;
    }
    s[len] = 0;
    return s;
}

static uint64_t ids_hash(const int32_t *ids, int64_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the ids */
    for (int64_t i = 0; i < n; i++)
        h = (h ^ (uint32_t)ids[i]) * 1099511628211ull;
    return h;
}

/* 300 KB of long_text, past both the SPM chunk and the user-defined window,
 * must give the ids the whole-fragment encoder gave (count and hash recorded
 * from it, `kvchat tokenize --no-bos`), so cutting the text changes nothing. */
static void check_long_text_ids(const char *model, int64_t want_n, uint64_t want_hash)
{
    char path[4200], err[256] = "";
    TEST_REQUIRE_MODEL(model, path);
    struct tokenizer *t = open_tok(path, NULL);
    char *text = long_text(300000);
    int64_t n = 0;
    int32_t *ids = tok_encode_alloc(t, text, 300000, false, &n, err, sizeof err);
    assert_non_null(ids);
    assert_int_equal(n, want_n);
    assert_true(ids_hash(ids, n) == want_hash);
    /* and the same through a caller's buffer, cut short: the first ids, the full count */
    int32_t *head = malloc(1000 * sizeof *head);
    assert_int_equal(tok_encode(t, text, 300000, false, head, 1000), want_n);
    assert_memory_equal(head, ids, 1000 * sizeof *head);
    free(head);
    free(ids);
    free(text);
    tok_free(t);
}

static void test_long_text_ids_smollm2(void **state)
{
    (void)state;
    check_long_text_ids(TEST_MODEL_SMOLLM2, 150085, 0x563e23a59782491cull);
}

static void test_long_text_ids_gemma3(void **state)
{
    (void)state;
    check_long_text_ids(TEST_MODEL_GEMMA3, 94510, 0xa73c741df80ba90dull);
}

/* tok_min_tokens is a true lower bound on every vocabulary, bytes without a
 * token included, and a useful one on the real models (a token per at most
 * 162 bytes for SmolLM2, 48 for Gemma 3). */
static void test_min_tokens_is_a_lower_bound(void **state)
{
    (void)state;
    static const char *const files[] = {
        "llama-spm", "phi-3", "gpt-2", "starcoder", "refact", "mpt", "falcon", "deepseek-llm",
        "deepseek-coder",
    };
    char *text = long_text(50000);
    char all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (char)(i & 0xFF);
    for (size_t f = 0; f < sizeof files / sizeof files[0] + 2; f++) {
        char path[4200];
        if (f < sizeof files / sizeof files[0]) {
            char rel[256];
            snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", files[f]);
            TEST_REQUIRE_FIXTURE(rel, path);
        } else
            TEST_REQUIRE_MODEL(f == sizeof files / sizeof files[0] ? TEST_MODEL_SMOLLM2
                                                                   : TEST_MODEL_GEMMA3, path);
        struct tokenizer *t = open_tok(path, NULL);
        int64_t lo = tok_min_tokens(t, text, 50000);
        int64_t n = tok_encode(t, text, 50000, false, NULL, 0);
        assert_true(lo <= n);
        assert_true(lo >= 50000 / (int64_t)tok_longest(t));
        lo = tok_min_tokens(t, all, sizeof all);
        assert_true(lo <= tok_encode(t, all, sizeof all, false, NULL, 0));
        assert_int_equal(tok_min_tokens(t, "", 0), 0);
        tok_free(t);
    }
    free(text);
}

/* Address space this process holds now (VmSize), in bytes. */
static uint64_t vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (uint64_t)kb * 1024;
}

/* Encodes 4 MiB of long_text in a child whose address space may grow by no
 * more than 4 bytes per byte of text plus 4 MiB of fixed scratch space, once
 * into an array the tokenizer grows and once into a caller's buffer of a token
 * per two bytes allocated inside the same limit. The encoders used to take
 * 20 to 60 bytes per byte (a symbol and a queue entry per character, every
 * pre-tokenizer piece listed twice, a word of bookkeeping per byte for
 * user-defined tokens), and fail here. */
static void check_memory_linear(const char *path)
{
#ifdef __SANITIZE_ADDRESS__
    /* AddressSanitizer's shadow memory and quarantine need address space no
     * such limit leaves; the normal build measures. */
    (void)path;
    skip();
#endif
    const size_t len = 4u << 20;
    struct tokenizer *t = open_tok(path, NULL);
    char *text = long_text(len);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = vm_size() + 4 * len + (4u << 20);
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(3);
        char err[256] = "";
        int64_t n = 0;
        int32_t *ids = tok_encode_alloc(t, text, len, true, &n, err, sizeof err);
        if (!ids) {
            fprintf(stderr, "tok_encode_alloc: %s\n", err);
            _exit(1);
        }
        free(ids);
        int32_t *buf = malloc(len / 2 * sizeof *buf);
        int64_t k = buf ? tok_encode_e(t, text, len, true, buf, (int64_t)(len / 2), err, sizeof err) : -1;
        if (k != n) {
            fprintf(stderr, "tok_encode_e: %lld ids (want %lld): %s\n", (long long)k, (long long)n, err);
            _exit(2);
        }
        free(buf);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    free(text);
    tok_free(t);
}

static void test_memory_linear_smollm2(void **state)
{
    (void)state;
    char path[4200];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, path);
    check_memory_linear(path);
}

static void test_memory_linear_gemma3(void **state)
{
    (void)state;
    char path[4200];
    TEST_REQUIRE_MODEL(TEST_MODEL_GEMMA3, path);
    check_memory_linear(path);
}

static void test_memory_linear_llama_spm(void **state)
{
    (void)state;
    char path[4200];
    TEST_REQUIRE_FIXTURE("tokenizer/ggml-vocab-llama-spm.gguf", path);
    check_memory_linear(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_llama_spm),
        cmocka_unit_test(test_fixture_phi3),
        cmocka_unit_test(test_fixture_gpt2),
        cmocka_unit_test(test_fixture_starcoder),
        cmocka_unit_test(test_fixture_refact),
        cmocka_unit_test(test_fixture_mpt),
        cmocka_unit_test(test_fixture_falcon),
        cmocka_unit_test(test_fixture_deepseek_llm),
        cmocka_unit_test(test_fixture_deepseek_coder),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_gemma3),
        cmocka_unit_test(test_smollm2_reference),
        cmocka_unit_test(test_gemma3_reference),
        cmocka_unit_test(test_broken_vocab),
        cmocka_unit_test(test_all_pretokenizers),
        cmocka_unit_test(test_gpt4o_pretokenizer),
        cmocka_unit_test(test_min_tokens_is_a_lower_bound),
        cmocka_unit_test(test_long_text_ids_smollm2),
        cmocka_unit_test(test_long_text_ids_gemma3),
        cmocka_unit_test(test_memory_linear_smollm2),
        cmocka_unit_test(test_memory_linear_gemma3),
        cmocka_unit_test(test_memory_linear_llama_spm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
