/* test_model.c - the model loader and the CPU backend.
 *
 * Synthetic tiny models of every architecture and weight type are written
 * with the GGUF writer (tiny_model.c, shared with test_cuda.c) and run
 * through backend/cpu.c and through the naive reference in ref_forward.c;
 * then the backend's own invariants (batch vs token by token, thread count,
 * rewinding), the loader's errors, and the two real models when they are
 * present.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "backend.h"
#include "engine.h"
#include "gguf.h"
#include "model.h"
#include "ppl.h"
#include "quant.h"
#include "ref_forward.h"
#include "tiny_model.h"

/* ---- synthetic models ---- */

/* Writes the synthetic model S to PATH with weights from SEED. */
static void write_synth(const struct tiny_spec *s, const char *path, uint64_t seed)
{
    struct gguf_writer *w = tiny_writer(s, seed);
    char err[512];
    int rc = gguf_writer_write(w, path, err, sizeof err);
    if (rc != 0)
        fail_msg("writing %s: %s", path, err);
    gguf_writer_free(w);
}

static char tmpdir[1024];

static void synth_path(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "%s/%s.gguf", tmpdir, tag);
}

static struct model *load_synth(const struct tiny_spec *s, const char *tag, uint64_t seed)
{
    char path[1200], err[512];
    synth_path(path, sizeof path, tag);
    write_synth(s, path, seed);
    struct model *m = model_load(path, err, sizeof err);
    if (!m)
        fail_msg("loading %s: %s", tag, err);
    return m;
}

static void *cpu_new(const struct model *m, int n_ctx, int n_threads)
{
    struct backend_config cfg = {.n_ctx = n_ctx, .n_threads = n_threads};
    char err[512];
    void *b = backend_cpu_ops.create(m, &cfg, err, sizeof err);
    if (!b)
        fail_msg("cpu create: %s", err);
    return b;
}

static void *cpu_new_kv(const struct model *m, int n_ctx, int n_threads, enum engine_kv_type kv)
{
    struct backend_config cfg = {.n_ctx = n_ctx, .n_threads = n_threads, .kv_type = kv};
    char err[512];
    void *b = backend_cpu_ops.create(m, &cfg, err, sizeof err);
    if (!b)
        fail_msg("cpu create (kv %d): %s", (int)kv, err);
    return b;
}

/* Tolerances against the reference, relative to the largest logit. The
 * float types differ only by summation order and f32 rounding (measured
 * below 1e-6). For the quantised types quant_dot may approximate (ggml's
 * scheme quantises the activations to 8 bits, which these random models a
 * few layers deep amplified to 0.1-2.5 per cent), so they get room for
 * that. A wrong RoPE pairing, mask or norm gives errors of order one; the
 * float cases below catch the subtler mistakes. */
static double tolerance(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
        return 1e-5;
    default:
        return 5e-2;
    }
}

#define SEQ 12

static void check_against_ref(const struct tiny_spec *s, const char *tag)
{
    struct model *m = load_synth(s, tag, 1234);
    int V = m->hp.n_vocab;
    int32_t tok[SEQ];
    tiny_tokens(tok, SEQ, V, 5);
    float *ref = malloc(sizeof(float) * SEQ * V);
    float *got = malloc(sizeof(float) * SEQ * V);
    assert_non_null(ref);
    assert_non_null(got);
    struct ref_model *r = ref_new(m);
    assert_non_null(r);
    assert_int_equal(ref_forward(r, tok, SEQ, ref), 0);

    void *b = cpu_new(m, 64, 2);
    char err[512];
    assert_int_equal(backend_cpu_ops.forward(b, tok, SEQ, 0, got, true, err, sizeof err), 0);
    double e = tiny_rel_err(got, ref, (size_t)SEQ * V);
    printf("%-22s %-5s vs reference: max rel err %.2e (tolerance %.0e)\n", tag,
           quant_type_name(s->wtype), e, tolerance(s->wtype));
    assert_true(e <= tolerance(s->wtype));

    /* The logits must depend on the input: a model that ignored its tokens
     * (or attention that ignored the past) would pass the check above with
     * a constant reference too. */
    assert_true(tiny_rel_err(got, got + (size_t)(SEQ - 1) * V, (size_t)V) > 1e-3);

    backend_cpu_ops.destroy(b);
    ref_free(r);
    model_free(m);
    free(ref);
    free(got);
}

static void test_llama_f32(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                          .n_embd = 40, .n_head = 4, .n_head_kv = 2, .head_dim = 10, .n_rot = 10,
                          .n_ff = 72, .n_vocab = 53, .n_layer = 2, .untied = true,
                          .rope_freqs = true};
    check_against_ref(&s, "llama-f32");
}

static void test_llama_f16_partial_rope(void **state)
{
    (void)state;
    /* Only 8 of 16 dims rotated; head count 3 with one KV head. */
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_F16, .etype = GGML_TYPE_F16,
                          .n_embd = 48, .n_head = 3, .n_head_kv = 1, .head_dim = 16, .n_rot = 8,
                          .n_rot_key = true, .n_ff = 80, .n_vocab = 61, .n_layer = 2,
                          .kv_array = true};
    check_against_ref(&s, "llama-f16");
}

static void test_llama_bf16(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_BF16, .etype = GGML_TYPE_F32,
                          .n_embd = 36, .n_head = 3, .n_head_kv = 3, .head_dim = 12, .n_rot = 12,
                          .n_ff = 50, .n_vocab = 29, .n_layer = 3};
    check_against_ref(&s, "llama-bf16");
}

static void test_llama_q8_0(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 96, .n_head = 3, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .n_ff = 160, .n_vocab = 37, .n_layer = 2};
    check_against_ref(&s, "llama-q8_0");
}

static void test_qwen2_q4_0_bias(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen2", .wtype = GGML_TYPE_Q4_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 96, .n_head = 6, .n_head_kv = 2, .head_dim = 16, .n_rot = 16,
                          .n_ff = 128, .n_vocab = 45, .n_layer = 2, .untied = true};
    check_against_ref(&s, "qwen2-q4_0");
}

static void test_qwen3_q4_1_qknorm(void **state)
{
    (void)state;
    /* head_dim 32 with 3 heads over n_embd 64: Q is wider than the stream. */
    struct tiny_spec s = {.arch = "qwen3", .wtype = GGML_TYPE_Q4_1, .etype = GGML_TYPE_Q4_1,
                          .n_embd = 64, .n_head = 3, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .head_dim_key = true, .n_ff = 96, .n_vocab = 41, .n_layer = 2};
    check_against_ref(&s, "qwen3-q4_1");
}

static void test_gemma3_q5_0_swa(void **state)
{
    (void)state;
    /* 7 layers: 0-4 local, 5 global, 6 local; window 4 < SEQ. */
    struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_Q5_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 64, .n_head = 3, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .head_dim_key = true, .n_ff = 96, .n_vocab = 47, .n_layer = 7,
                          .swa_window = 4};
    check_against_ref(&s, "gemma3-q5_0");
}

static void test_gemma3_q5_1(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_Q5_1, .etype = GGML_TYPE_Q5_1,
                          .n_embd = 64, .n_head = 2, .n_head_kv = 2, .head_dim = 32, .n_rot = 32,
                          .head_dim_key = true, .n_ff = 128, .n_vocab = 33, .n_layer = 6,
                          .swa_window = 3};
    check_against_ref(&s, "gemma3-q5_1");
}

static void test_llama_q4_k(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q4_K, .etype = GGML_TYPE_Q4_K,
                          .n_embd = 256, .n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_rot = 64,
                          .n_ff = 512, .n_vocab = 70, .n_layer = 2, .untied = true};
    check_against_ref(&s, "llama-q4_k");
}

static void test_qwen3_q5_k(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen3", .wtype = GGML_TYPE_Q5_K, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 256, .n_head = 2, .n_head_kv = 1, .head_dim = 128, .n_rot = 128,
                          .head_dim_key = true, .n_ff = 256, .n_vocab = 40, .n_layer = 2};
    check_against_ref(&s, "qwen3-q5_k");
}

static void test_gemma3_q6_k(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_Q6_K, .etype = GGML_TYPE_Q6_K,
                          .n_embd = 256, .n_head = 2, .n_head_kv = 1, .head_dim = 128, .n_rot = 128,
                          .head_dim_key = true, .n_ff = 256, .n_vocab = 40, .n_layer = 6,
                          .swa_window = 4};
    check_against_ref(&s, "gemma3-q6_k");
}

/* The low-bit types through the whole CPU engine (prefill and decode
 * matrix products, the quantised embedding row) against the float64
 * reference on their dequantised weights. */
static void test_llama_low_bit_types(void **state)
{
    (void)state;
    static const struct {
        enum ggml_type t;
        const char *tag;
    } ts[] = {{GGML_TYPE_Q2_K, "llama-q2_k"},     {GGML_TYPE_Q3_K, "llama-q3_k"},
              {GGML_TYPE_IQ4_NL, "llama-iq4_nl"}, {GGML_TYPE_IQ4_XS, "llama-iq4_xs"},
              {GGML_TYPE_MXFP4, "llama-mxfp4"}};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        struct tiny_spec s = {.arch = "llama", .wtype = ts[i].t, .etype = ts[i].t, .n_embd = 256,
                              .n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_rot = 64, .n_ff = 512,
                              .n_vocab = 40, .n_layer = 2};
        check_against_ref(&s, ts[i].tag);
    }
}

/* Float weights leave only rounding between backend and reference, so
 * these catch the subtle mistakes (a RoPE base, a mask off by one) that
 * the quantised types' tolerance could hide. */
static void test_gemma3_bf16_exact(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_BF16, .etype = GGML_TYPE_F32,
                          .n_embd = 48, .n_head = 4, .n_head_kv = 2, .head_dim = 16, .n_rot = 16,
                          .head_dim_key = true, .n_ff = 64, .n_vocab = 31, .n_layer = 7,
                          .swa_window = 4, .untied = true};
    check_against_ref(&s, "gemma3-bf16");
}

static void test_qwen_f16_exact(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen2", .wtype = GGML_TYPE_F16, .etype = GGML_TYPE_F16,
                          .n_embd = 30, .n_head = 5, .n_head_kv = 1, .head_dim = 6, .n_rot = 6,
                          .n_ff = 44, .n_vocab = 23, .n_layer = 2};
    check_against_ref(&s, "qwen2-f16");
    s.arch = "qwen3";
    s.head_dim = 10;
    s.n_rot = 10;
    s.head_dim_key = true;
    check_against_ref(&s, "qwen3-f16");
}

/* ---- backend invariants ---- */

static const struct tiny_spec gemma_small = {
    .arch = "gemma3", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0, .n_embd = 64,
    .n_head = 3, .n_head_kv = 1, .head_dim = 32, .n_rot = 32, .head_dim_key = true, .n_ff = 96,
    .n_vocab = 47, .n_layer = 7, .swa_window = 5};

static void test_loader_fields(void **state)
{
    (void)state;
    struct model *m = load_synth(&gemma_small, "fields", 3);
    const struct model_hparams *hp = &m->hp;
    assert_int_equal(hp->arch, MODEL_ARCH_GEMMA3);
    assert_int_equal(hp->n_vocab, 47);
    assert_int_equal(hp->head_dim, 32);
    assert_int_equal(hp->n_rot, 32);
    assert_true(hp->rope_neox);
    assert_true(hp->gelu_ffn);
    assert_true(fabsf(hp->embd_scale - 8.0f) < 1e-6f);
    assert_true(fabsf(hp->attn_scale - 1.0f / sqrtf(32.0f)) < 1e-7f);
    assert_int_equal(hp->swa_window, 5);
    for (int il = 0; il < 7; il++) {
        assert_int_equal(m->layers[il].swa, il != 5);
        assert_true(m->layers[il].rope_base == (il == 5 ? 30000.0f : 10000.0f));
    }
    assert_string_equal(m->name, "synthetic");
    assert_ptr_equal(m->output.data, m->tok_embd.data);

    /* Parameter and byte counts, recomputed from the shapes. */
    uint64_t E = 64, QD = 96, KVD = 32, F = 96, V = 47, HD = 32;
    uint64_t per_layer_params = E * QD + 2 * E * KVD + QD * E + 3 * E * F + 4 * E + 2 * HD;
    assert_int_equal(m->n_params, 7 * per_layer_params + E * V + E);
    uint64_t q8 = 34; /* bytes per 32 */
    uint64_t per_layer_bytes = (E * QD + 2 * E * KVD + QD * E + 3 * E * F) / 32 * q8 +
                               (4 * E + 2 * HD) * 4;
    uint64_t embd = E * V / 32 * q8;
    assert_int_equal(m->weight_bytes, 7 * per_layer_bytes + embd + E * 4);
    /* Tied: the whole table is the LM head, read once. */
    assert_int_equal(m->bytes_per_token, m->weight_bytes);
    model_free(m);

    /* Untied: one embedding row instead of the table. */
    struct tiny_spec s = gemma_small;
    s.untied = true;
    m = load_synth(&s, "fields-untied", 3);
    assert_ptr_not_equal(m->output.data, m->tok_embd.data);
    assert_int_equal(m->bytes_per_token, m->weight_bytes - embd + E / 32 * q8);
    model_free(m);

    s = gemma_small;
    s.arch = "llama";
    s.swa_window = 0;
    m = load_synth(&s, "fields-llama", 3);
    assert_false(m->hp.rope_neox);
    assert_false(m->hp.gelu_ffn);
    assert_true(m->hp.embd_scale == 1.0f);
    assert_false(m->layers[0].swa);
    model_free(m);
}

/* Batch vs token by token, over more tokens than one chunk holds. */
static void test_batch_vs_sequential(void **state)
{
    (void)state;
    struct model *m = load_synth(&gemma_small, "batch", 7);
    int V = m->hp.n_vocab, N = 600;
    int32_t *tok = malloc(sizeof(int32_t) * N);
    float *all = malloc(sizeof(float) * (size_t)N * V);
    float *one = malloc(sizeof(float) * V);
    float *last = malloc(sizeof(float) * V);
    assert_non_null(tok);
    assert_non_null(all);
    assert_non_null(one);
    assert_non_null(last);
    tiny_tokens(tok, N, V, 11);
    char err[512];
    void *b = cpu_new(m, 700, 2);
    assert_int_equal(backend_cpu_ops.forward(b, tok, N, 0, all, true, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(b, tok, N, 0, last, false, err, sizeof err), 0);
    assert_true(tiny_rel_err(last, all + (size_t)(N - 1) * V, (size_t)V) <= 1e-6);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(backend_cpu_ops.forward(b, tok + i, 1, i, one, false, err, sizeof err),
                         0);
        double e = tiny_rel_err(one, all + (size_t)i * V, (size_t)V);
        if (e > worst)
            worst = e;
    }
    printf("batch of %d vs one by one: max rel err %.2e\n", N, worst);
    assert_true(worst <= 1e-5);
    backend_cpu_ops.destroy(b);
    model_free(m);
    free(tok);
    free(all);
    free(one);
    free(last);
}

static void test_threads_identical(void **state)
{
    (void)state;
    struct tiny_spec s = gemma_small;
    s.wtype = GGML_TYPE_Q4_0;
    struct model *m = load_synth(&s, "threads", 9);
    int V = m->hp.n_vocab, N = 20;
    int32_t tok[20];
    tiny_tokens(tok, N, V, 2);
    float *a = malloc(sizeof(float) * (size_t)N * V), *b3 = malloc(sizeof(float) * (size_t)N * V);
    assert_non_null(a);
    assert_non_null(b3);
    char err[512];
    void *b1 = cpu_new(m, 32, 1);
    void *b2 = cpu_new(m, 32, 3);
    assert_int_equal(backend_cpu_ops.forward(b1, tok, N, 0, a, true, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(b2, tok, N, 0, b3, true, err, sizeof err), 0);
    assert_memory_equal(a, b3, sizeof(float) * (size_t)N * V);
    /* And a decode step after the prefill. */
    int32_t next = 3;
    assert_int_equal(backend_cpu_ops.forward(b1, &next, 1, N, a, false, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(b2, &next, 1, N, b3, false, err, sizeof err), 0);
    assert_memory_equal(a, b3, sizeof(float) * (size_t)V);
    backend_cpu_ops.destroy(b1);
    backend_cpu_ops.destroy(b2);
    model_free(m);
    free(a);
    free(b3);
}

/* Decode at a context long enough for several key chunks (the split-key
 * path: a chunk's partial softmax per thread, folded in chunk order) against
 * the reference, and bit-identical for 1, 2 and 3 threads. Head dim 32 so
 * the vector kernels run; 2 KV heads of 3 queries each, as in GQA models. */
static void test_long_context_decode(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                          .n_embd = 48, .n_head = 6, .n_head_kv = 2, .head_dim = 32, .n_rot = 32,
                          .head_dim_key = true, .n_ff = 64, .n_vocab = 41, .n_layer = 2};
    struct model *m = load_synth(&s, "long-decode", 17);
    enum { N = 700, STEPS = 3 };
    int V = m->hp.n_vocab;
    int32_t *tok = malloc(sizeof(int32_t) * N);
    float *ref = malloc(sizeof(float) * (size_t)N * V);
    float *got[3];
    assert_non_null(tok);
    assert_non_null(ref);
    tiny_tokens(tok, N, V, 31);
    struct ref_model *r = ref_new(m);
    assert_non_null(r);
    assert_int_equal(ref_forward(r, tok, N, ref), 0);
    char err[512];
    for (int nt = 1; nt <= 3; nt++) {
        got[nt - 1] = malloc(sizeof(float) * STEPS * V);
        assert_non_null(got[nt - 1]);
        void *b = cpu_new(m, N, nt);
        assert_int_equal(
            backend_cpu_ops.forward(b, tok, N - STEPS, 0, got[nt - 1], false, err, sizeof err), 0);
        for (int i = N - STEPS; i < N; i++) {
            float *lg = got[nt - 1] + (size_t)(i - (N - STEPS)) * V;
            assert_int_equal(backend_cpu_ops.forward(b, tok + i, 1, i, lg, false, err, sizeof err),
                             0);
            double e = tiny_rel_err(lg, ref + (size_t)i * V, (size_t)V);
            if (nt == 1)
                printf("decode at %d of context vs reference: max rel err %.2e\n", i, e);
            assert_true(e <= 1e-5);
        }
        backend_cpu_ops.destroy(b);
    }
    assert_memory_equal(got[0], got[1], sizeof(float) * STEPS * V);
    assert_memory_equal(got[0], got[2], sizeof(float) * STEPS * V);
    for (int i = 0; i < 3; i++)
        free(got[i]);
    ref_free(r);
    model_free(m);
    free(tok);
    free(ref);
}

/* Forward at P after the cache was filled beyond P equals a fresh run. */
static void test_rewind(void **state)
{
    (void)state;
    struct model *m = load_synth(&gemma_small, "rewind", 13);
    int V = m->hp.n_vocab;
    int32_t a[10], bt[5];
    tiny_tokens(a, 10, V, 21);
    tiny_tokens(bt, 5, V, 22);
    float *x = malloc(sizeof(float) * 5 * V), *y = malloc(sizeof(float) * 5 * V);
    assert_non_null(x);
    assert_non_null(y);
    char err[512];
    void *b = cpu_new(m, 16, 2);
    assert_int_equal(backend_cpu_ops.forward(b, a, 10, 0, x, false, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(b, bt, 5, 4, x, true, err, sizeof err), 0);
    void *fresh = cpu_new(m, 16, 2);
    assert_int_equal(backend_cpu_ops.forward(fresh, a, 4, 0, y, false, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(fresh, bt, 5, 4, y, true, err, sizeof err), 0);
    assert_memory_equal(x, y, sizeof(float) * 5 * V);
    backend_cpu_ops.destroy(fresh);
    backend_cpu_ops.destroy(b);
    model_free(m);
    free(x);
    free(y);
}

static void test_forward_errors(void **state)
{
    (void)state;
    struct model *m = load_synth(&gemma_small, "fwd-err", 5);
    float *lg = malloc(sizeof(float) * 8 * m->hp.n_vocab);
    assert_non_null(lg);
    char err[512];
    void *b = cpu_new(m, 8, 2);
    int32_t tok[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_int_equal(backend_cpu_ops.forward(b, tok, 9, 0, lg, false, err, sizeof err), -1);
    assert_non_null(strstr(err, "context"));
    assert_int_equal(backend_cpu_ops.forward(b, tok, 2, 7, lg, false, err, sizeof err), -1);
    assert_int_equal(backend_cpu_ops.forward(b, tok, 1, -1, lg, false, err, sizeof err), -1);
    assert_int_equal(backend_cpu_ops.forward(b, tok, 0, 0, lg, false, err, sizeof err), -1);
    int32_t bad = m->hp.n_vocab;
    assert_int_equal(backend_cpu_ops.forward(b, &bad, 1, 0, lg, false, err, sizeof err), -1);
    assert_non_null(strstr(err, "vocabulary"));
    bad = -3;
    assert_int_equal(backend_cpu_ops.forward(b, &bad, 1, 0, lg, false, err, sizeof err), -1);
    /* Still usable after the errors. */
    assert_int_equal(backend_cpu_ops.forward(b, tok, 8, 0, lg, false, err, sizeof err), 0);

    struct engine_memory mem;
    backend_cpu_ops.memory(b, &mem);
    assert_false(mem.on_gpu);
    assert_int_equal(mem.kv_cache, 2ull * 7 * 8 * 32 * sizeof(float));
    assert_true(mem.scratch > 0);
    assert_true(mem.weights >= m->weight_bytes);
    assert_true(mem.device_total > 0 && mem.device_total != ENGINE_UNKNOWN);
    assert_true(mem.device_free <= mem.device_total);
    assert_true(strlen(backend_cpu_ops.device_name(b)) > 0);
    assert_string_equal(backend_cpu_ops.name, "cpu");
    backend_cpu_ops.destroy(b);

    /* Creation refuses what cannot work, with a message. */
    struct backend_config badcfg = {.n_ctx = 0, .n_threads = 1};
    assert_null(backend_cpu_ops.create(m, &badcfg, err, sizeof err));
    assert_non_null(strstr(err, "context"));
    badcfg.n_ctx = INT32_MAX;
    err[0] = 0;
    b = backend_cpu_ops.create(m, &badcfg, err, sizeof err);
    if (b) /* a machine that could hold 14 GiB of cache */
        backend_cpu_ops.destroy(b);
    else
        assert_non_null(strstr(err, "KV cache"));
    model_free(m);
    free(lg);
}

/* ---- loader errors ---- */

static void expect_load_error(const struct tiny_spec *s, const char *tag, const char *needle1,
                              const char *needle2)
{
    char path[1200], err[512];
    synth_path(path, sizeof path, tag);
    write_synth(s, path, 1);
    err[0] = 0;
    struct model *m = model_load(path, err, sizeof err);
    printf("%s: %s\n", tag, err);
    assert_null(m);
    assert_null(strchr(err, '\n'));
    assert_non_null(strstr(err, tag)); /* the file is named */
    if (needle1)
        assert_non_null(strstr(err, needle1));
    if (needle2)
        assert_non_null(strstr(err, needle2));
}

/* Copies the model at SRC_PATH to DST_PATH with metadata KEY replaced by
 * what SET writes for VARIANT. */
static void rewrite_key(const char *src_path, const char *dst_path,
                        void (*set)(struct gguf_writer *, const char *, int), const char *key,
                        int variant)
{
    char err[512];
    struct gguf *src = gguf_open(src_path, err, sizeof err);
    if (!src)
        fail_msg("%s", err);
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_copy_kv(w, src, "");
    set(w, key, variant);
    for (int64_t i = 0; i < gguf_n_tensors(src); i++) {
        const struct gguf_tensor *t = gguf_tensor(src, i);
        char name[80];
        gguf_str_copy(t->name, name, sizeof name);
        gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data);
    }
    if (gguf_writer_write(w, dst_path, err, sizeof err) != 0)
        fail_msg("%s", err);
    gguf_writer_free(w);
    gguf_close(src);
}

static void set_bad_value(struct gguf_writer *w, const char *key, int variant)
{
    switch (variant) {
    case 0:
        gguf_writer_set_u32(w, key, 0);
        break;
    case 1:
        gguf_writer_set_i32(w, key, -7);
        break;
    case 2:
        gguf_writer_set_u64(w, key, UINT64_MAX);
        break;
    case 3:
        gguf_writer_set_str(w, key, "many");
        break;
    default:
        gguf_writer_set_f32(w, key, NAN);
        break;
    }
}

static void set_nonuniform_kv(struct gguf_writer *w, const char *key, int variant)
{
    (void)variant;
    int32_t arr[2] = {1, 2};
    gguf_writer_set_arr(w, key, GGUF_TYPE_INT32, arr, 2);
}

static void test_load_errors(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "mamba", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                          .n_embd = 32, .n_head = 2, .n_head_kv = 1, .head_dim = 16, .n_rot = 16,
                          .n_ff = 64, .n_vocab = 20, .n_layer = 2};
    expect_load_error(&s, "err-arch", "unknown architecture 'mamba'",
                      "llama, qwen2, qwen3, gemma3");
    s.arch = "llama";
    s.skip_tensor = "blk.1.ffn_up.weight";
    expect_load_error(&s, "err-missing", "missing tensor blk.1.ffn_up.weight", NULL);
    s.skip_tensor = NULL;
    s.bad_shape_tensor = "blk.0.attn_k.weight";
    expect_load_error(&s, "err-shape", "blk.0.attn_k.weight", "expected [32, 16]");
    s.bad_shape_tensor = NULL;
    s.bad_type_tensor = "blk.1.attn_q.weight";
    s.n_embd = 256; /* IQ2_XXS needs whole 256-blocks */
    s.n_head = 2;
    s.head_dim = 128;
    s.n_rot = 128;
    s.n_ff = 256;
    expect_load_error(&s, "err-type", "blk.1.attn_q.weight", "IQ2_XXS");
    s = (struct tiny_spec){.arch = "qwen3", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                           .n_embd = 32, .n_head = 2, .n_head_kv = 1, .head_dim = 16, .n_rot = 16,
                           .n_ff = 64, .n_vocab = 20, .n_layer = 2,
                           .skip_tensor = "blk.0.attn_k_norm.weight"};
    expect_load_error(&s, "err-qknorm", "attn_k_norm", NULL);
    s.skip_tensor = NULL;
    s.n_rot = 7;
    s.n_rot_key = true;
    expect_load_error(&s, "err-nrot", "rope.dimension_count", "even");
    s.n_rot = 16;
    s.n_head_kv = 3; /* 2 heads do not split into 3 groups */
    expect_load_error(&s, "err-gqa", "head_count_kv", NULL);
    s.n_head_kv = 1;
    s.arch = "qwen2";
    s.skip_tensor = "blk.1.attn_v.bias";
    /* qwen2 writes biases by default in write_synth, so drop one. */
    expect_load_error(&s, "err-bias", "missing tensor blk.1.attn_v.bias", NULL);

    /* A non-uniform per-layer head_count_kv is refused with a clear reason. */
    char path[1200], err[512];
    synth_path(path, sizeof path, "err-kvarr");
    s = (struct tiny_spec){.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                           .n_embd = 32, .n_head = 2, .n_head_kv = 1, .head_dim = 16, .n_rot = 16,
                           .n_ff = 64, .n_vocab = 20, .n_layer = 2};
    char src[1200];
    synth_path(src, sizeof src, "err-kvarr-src");
    write_synth(&s, src, 1);
    rewrite_key(src, path, set_nonuniform_kv, "llama.attention.head_count_kv", 0);
    assert_null(model_load(path, err, sizeof err));
    printf("err-kvarr: %s\n", err);
    assert_non_null(strstr(err, "head_count_kv"));
    assert_non_null(strstr(err, "differs between layers"));

    /* No file at all. */
    assert_null(model_load("/nonexistent/dir/x.gguf", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/dir/x.gguf"));
}

/* Every hyperparameter set to zero, negative, absurd, a string or NaN: the
 * load fails with a message naming the key (or the inconsistency it makes),
 * and never crashes. */
static void test_bad_hparams(void **state)
{
    (void)state;
    static const char *const keys[] = {
        "gemma3.embedding_length", "gemma3.block_count", "gemma3.feed_forward_length",
        "gemma3.attention.head_count", "gemma3.attention.head_count_kv",
        "gemma3.attention.key_length", "gemma3.rope.dimension_count",
        "gemma3.context_length", "gemma3.attention.layer_norm_rms_epsilon",
        "gemma3.rope.freq_base", "gemma3.attention.sliding_window", "general.architecture"};
    char src[1200], dst[1200], err[512];
    synth_path(src, sizeof src, "hp-src");
    synth_path(dst, sizeof dst, "hp-bad");
    write_synth(&gemma_small, src, 1);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        for (int variant = 0; variant < 5; variant++) {
            rewrite_key(src, dst, set_bad_value, keys[k], variant);
            err[0] = 0;
            struct model *m = model_load(dst, err, sizeof err);
            if (m) {
                /* The sliding window may legitimately be 0 (no SWA). */
                assert_string_equal(keys[k], "gemma3.attention.sliding_window");
                assert_int_equal(variant, 0);
                model_free(m);
                continue;
            }
            assert_true(strlen(err) > 0);
            assert_null(strchr(err, '\n'));
            assert_non_null(strstr(err, "hp-bad.gguf"));
        }
    }
}

/* A damaged file whose norm weights or biases hold NaN is refused at load,
 * naming the tensor and the file, instead of loading and answering with NaN
 * logits (which the sampler turned into token 0, an empty reply). */
static void test_damaged_norm_refused(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                          .n_embd = 32, .n_head = 2, .n_head_kv = 1, .head_dim = 16, .n_rot = 16,
                          .n_ff = 64, .n_vocab = 20, .n_layer = 2,
                          .nonfinite_tensor = "output_norm.weight"};
    expect_load_error(&s, "damaged-outnorm", "tensor output_norm.weight", "damaged");
    s.nonfinite_tensor = "blk.1.ffn_norm.weight";
    expect_load_error(&s, "damaged-ffnnorm", "tensor blk.1.ffn_norm.weight", "damaged");
    s.arch = "qwen2";
    s.nonfinite_tensor = "blk.0.attn_v.bias";
    expect_load_error(&s, "damaged-bias", "tensor blk.0.attn_v.bias", "damaged");
    s.arch = "qwen3";
    s.nonfinite_tensor = "blk.1.attn_k_norm.weight";
    expect_load_error(&s, "damaged-knorm", "tensor blk.1.attn_k_norm.weight", "damaged");
}

/* Damage in a quantised matrix (an fp16 block scale of +inf) is not looked
 * for at load (it would mean reading every weight): the model loads and its
 * logits are non-finite, which is what the engine's per-token check
 * (sampler_saw_nonfinite, test_engine) turns into an error. */
static void test_damaged_matrix_gives_nonfinite_logits(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 32, .n_head = 2, .n_head_kv = 1, .head_dim = 16, .n_rot = 16,
                          .n_ff = 64, .n_vocab = 20, .n_layer = 2, .untied = true,
                          .nonfinite_tensor = "output.weight"};
    struct model *m = load_synth(&s, "damaged-matrix", 7);
    void *b = cpu_new(m, 16, 1);
    int32_t tok[3] = {1, 2, 3};
    float logits[20];
    char err[512];
    assert_int_equal(backend_cpu_ops.forward(b, tok, 3, 0, logits, false, err, sizeof err), 0);
    int bad = 0;
    for (int i = 0; i < 20; i++)
        bad += !isfinite(logits[i]);
    assert_true(bad > 0);
    backend_cpu_ops.destroy(b);
    model_free(m);
}

static void set_int_value(struct gguf_writer *w, const char *key, int variant)
{
    gguf_writer_set_i32(w, key, variant);
}

/* Hyperparameters that cannot describe a model: each refusal is one line
 * that names the file and the key (or the two keys that disagree). */
static void test_hparam_errors_name_the_key(void **state)
{
    (void)state;
    /* 32 dims over 3 heads and no key_length: the divisibility is the
     * problem, not a "missing key" */
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                          .n_embd = 32, .n_head = 3, .n_head_kv = 1, .head_dim = 16, .n_rot = 16,
                          .n_ff = 64, .n_vocab = 20, .n_layer = 2};
    expect_load_error(&s, "hp-ndiv", "llama.embedding_length 32 is not a multiple of "
                                     "llama.attention.head_count 3", NULL);
    s.n_head = 2;
    s.n_head_kv = 3;
    expect_load_error(&s, "hp-gqa", "llama.attention.head_count 2 is not a multiple of "
                                    "llama.attention.head_count_kv 3", NULL);

    s.n_head_kv = 1;
    char src[1200], dst[1200], err[512];
    synth_path(src, sizeof src, "hp-key-src");
    synth_path(dst, sizeof dst, "hp-key");
    write_synth(&s, src, 1);
    static const struct {
        const char *key;
        int value;
        const char *says;
    } cases[] = {
        {"llama.block_count", 0, "llama.block_count = 0 is out of range"},
        {"llama.block_count", 1025, "llama.block_count = 1025 is out of range"},
        {"llama.attention.head_count", 0, "llama.attention.head_count = 0 is out of range"},
        {"llama.attention.head_count_kv", 0, "llama.attention.head_count_kv = 0 is out of range"},
        {"llama.context_length", -5, "llama.context_length = -5 is out of range"},
        {"llama.embedding_length", 0, "llama.embedding_length = 0 is out of range"},
        {"llama.vocab_size", 0, "llama.vocab_size = 0 but token_embd.weight has 20 rows"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite_key(src, dst, set_int_value, cases[i].key, cases[i].value);
        err[0] = 0;
        assert_null(model_load(dst, err, sizeof err));
        printf("%s = %d: %s\n", cases[i].key, cases[i].value, err);
        assert_null(strchr(err, '\n'));
        assert_non_null(strstr(err, "hp-key.gguf"));
        assert_non_null(strstr(err, cases[i].says));
    }
}

/* ---- mixture of experts ---- */

/* Small enough for the float64 reference, wide enough that the router has
 * real choices: 6 experts, 2 per token, over 3 layers. */
static const struct tiny_spec moe3_small = {
    .arch = "qwen3moe", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32, .n_embd = 64,
    .n_head = 4, .n_head_kv = 2, .head_dim = 16, .n_rot = 16, .head_dim_key = true,
    .n_vocab = 40, .n_layer = 3, .n_expert = 6, .n_expert_used = 2, .n_ff_exp = 32};
static const struct tiny_spec moe2_small = {
    .arch = "qwen2moe", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32, .n_embd = 64,
    .n_head = 4, .n_head_kv = 2, .head_dim = 16, .n_rot = 16, .head_dim_key = true,
    .n_vocab = 40, .n_layer = 3, .n_expert = 5, .n_expert_used = 3, .n_ff_exp = 32,
    .n_ff_shexp = 96, .untied = true};

/* check_against_ref, then greedy decoding: the CPU backend one token at a
 * time and the reference over the whole growing sequence pick the same
 * tokens. */
static int argmax(const float *x, int n);

static void check_moe(const struct tiny_spec *s, const char *tag)
{
    check_against_ref(s, tag);
    struct model *m = load_synth(s, tag, 1234);
    int V = m->hp.n_vocab, N0 = 6, GEN = 10, N = N0 + GEN;
    int32_t tok[32];
    tiny_tokens(tok, N0, V, 9);
    float *ref = malloc(sizeof(float) * (size_t)N * V), *lg = malloc(sizeof(float) * V);
    assert_non_null(ref);
    assert_non_null(lg);
    struct ref_model *r = ref_new(m);
    assert_non_null(r);
    void *b = cpu_new(m, 64, 2);
    char err[512];
    assert_int_equal(backend_cpu_ops.forward(b, tok, N0, 0, lg, false, err, sizeof err), 0);
    int distinct = 0, prev = -1;
    for (int i = N0; i < N; i++) {
        assert_int_equal(ref_forward(r, tok, i, ref), 0);
        int want = argmax(ref + (size_t)(i - 1) * V, V), got = argmax(lg, V);
        assert_int_equal(got, want);
        distinct += got != prev;
        prev = got;
        tok[i] = got;
        assert_int_equal(backend_cpu_ops.forward(b, &tok[i], 1, i, lg, false, err, sizeof err),
                         0);
    }
    printf("%-22s greedy: %d tokens identical to the reference (%d changes)\n", tag, GEN,
           distinct);
    backend_cpu_ops.destroy(b);
    ref_free(r);
    model_free(m);
    free(ref);
    free(lg);
}

static void test_qwen3moe_f32(void **state)
{
    (void)state;
    check_moe(&moe3_small, "qwen3moe-f32");
}

static void test_qwen3moe_q8_0(void **state)
{
    (void)state;
    struct tiny_spec s = moe3_small;
    s.wtype = s.etype = GGML_TYPE_Q8_0;
    check_moe(&s, "qwen3moe-q8_0");
}

/* k-quant blocks of 256: every expert row one block. */
static void test_qwen3moe_q4_k(void **state)
{
    (void)state;
    struct tiny_spec s = moe3_small;
    s.wtype = GGML_TYPE_Q4_K;
    s.etype = GGML_TYPE_Q8_0;
    s.n_embd = 256;
    s.head_dim = s.n_rot = 64;
    s.n_ff_exp = 256;
    s.n_layer = 2;
    check_moe(&s, "qwen3moe-q4_k");
}

static void test_qwen2moe_f16(void **state)
{
    (void)state;
    struct tiny_spec s = moe2_small;
    s.wtype = s.etype = GGML_TYPE_F16;
    check_moe(&s, "qwen2moe-f16");
}

static void test_qwen2moe_q4_0(void **state)
{
    (void)state;
    struct tiny_spec s = moe2_small;
    s.wtype = GGML_TYPE_Q4_0;
    s.etype = GGML_TYPE_Q8_0;
    check_moe(&s, "qwen2moe-q4_0");
}

/* The loader's view: hyperparameters, experts held stacked, and a decode
 * step's bytes counting only the experts a token is routed to. */
static void test_moe_loader_fields(void **state)
{
    (void)state;
    struct tiny_spec s = moe2_small;
    s.wtype = GGML_TYPE_Q8_0;
    struct model *m = load_synth(&s, "moe-fields", 3);
    const struct model_hparams *hp = &m->hp;
    assert_int_equal(hp->arch, MODEL_ARCH_QWEN2MOE);
    assert_int_equal(hp->n_expert, 5);
    assert_int_equal(hp->n_expert_used, 3);
    assert_int_equal(hp->n_ff_exp, 32);
    assert_int_equal(hp->n_ff_shexp, 96);
    assert_false(hp->expert_weights_norm);
    assert_true(hp->rope_neox);
    const struct model_layer *l = &m->layers[1];
    assert_null(l->ffn_gate.data);
    assert_int_equal(l->ffn_gate_inp.type, GGML_TYPE_F32);
    assert_int_equal(l->ffn_gate_inp.ne1, 5);
    assert_int_equal(l->ffn_gate_exps.ne0, 64);
    assert_int_equal(l->ffn_gate_exps.ne1, 32 * 5);
    assert_int_equal(l->ffn_down_exps.ne0, 32);
    assert_int_equal(l->ffn_down_exps.ne1, 64 * 5);
    assert_int_equal(l->ffn_gate_inp_shexp.ne0, 64);
    assert_int_equal(l->ffn_up_shexp.ne1, 96);
    assert_non_null(l->bq.data);
    uint64_t expert_bytes = 3 * (64 * 32 / 32 * 34) * 5; /* per layer, Q8_0 */
    assert_int_equal(l->ffn_gate_exps.nbytes + l->ffn_up_exps.nbytes + l->ffn_down_exps.nbytes,
                     expert_bytes);
    uint64_t embd = m->tok_embd.nbytes, row = 64 * 4; /* F32 embeddings */
    /* untied: one embedding row; in each of the 3 layers 2 of the 5
     * experts are not read */
    assert_int_equal(m->bytes_per_token,
                     m->weight_bytes - embd + row - 3 * (expert_bytes / 5 * 2));
    model_free(m);

    m = load_synth(&moe3_small, "moe3-fields", 3);
    assert_int_equal(m->hp.arch, MODEL_ARCH_QWEN3MOE);
    assert_true(m->hp.expert_weights_norm);
    assert_int_equal(m->hp.n_ff_shexp, 0);
    assert_null(m->layers[0].ffn_gate_shexp.data);
    assert_non_null(m->layers[0].q_norm.data);
    uint64_t ex = 3 * (uint64_t)(64 * 32 * 4) * 6;
    /* tied; 4 of 6 experts unread in each of 3 layers */
    assert_int_equal(m->bytes_per_token, m->weight_bytes - 3 * (ex / 6 * 4));
    model_free(m);
}

/* Batch vs token by token and 1 vs 3 threads: the grouping of tokens by
 * expert must not change a token's result. */
static void test_moe_batch_threads(void **state)
{
    (void)state;
    struct tiny_spec s = moe2_small;
    s.wtype = GGML_TYPE_Q4_1;
    struct model *m = load_synth(&s, "moe-batch", 5);
    int V = m->hp.n_vocab, N = 40;
    int32_t tok[40];
    tiny_tokens(tok, N, V, 4);
    float *all = malloc(sizeof(float) * (size_t)N * V), *all3 = malloc(sizeof(float) * (size_t)N * V);
    float *one = malloc(sizeof(float) * V);
    assert_non_null(all);
    assert_non_null(all3);
    assert_non_null(one);
    char err[512];
    void *b1 = cpu_new(m, 64, 1), *b3 = cpu_new(m, 64, 3);
    assert_int_equal(backend_cpu_ops.forward(b1, tok, N, 0, all, true, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(b3, tok, N, 0, all3, true, err, sizeof err), 0);
    assert_memory_equal(all, all3, sizeof(float) * (size_t)N * V);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(backend_cpu_ops.forward(b3, tok + i, 1, i, one, false, err, sizeof err),
                         0);
        double e = tiny_rel_err(one, all + (size_t)i * V, (size_t)V);
        worst = e > worst ? e : worst;
    }
    printf("moe batch of %d vs one by one: max rel err %.2e\n", N, worst);
    assert_true(worst <= 1e-5);
    backend_cpu_ops.destroy(b1);
    backend_cpu_ops.destroy(b3);
    model_free(m);
    free(all);
    free(all3);
    free(one);
}

/* Corrupt mixture-of-experts files: each refusal is one line naming the
 * file and the key or tensor. */
static void test_moe_load_errors(void **state)
{
    (void)state;
    struct tiny_spec s = moe2_small;
    s.skip_tensor = "blk.1.ffn_down_exps.weight";
    expect_load_error(&s, "moe-missing", "missing tensor blk.1.ffn_down_exps.weight", NULL);
    s.skip_tensor = "blk.0.ffn_gate_inp.weight";
    expect_load_error(&s, "moe-norouter", "missing tensor blk.0.ffn_gate_inp.weight", NULL);
    s.skip_tensor = "blk.2.ffn_gate_inp_shexp.weight";
    expect_load_error(&s, "moe-noshgate", "missing tensor blk.2.ffn_gate_inp_shexp.weight", NULL);
    s.skip_tensor = NULL;
    s.bad_shape_tensor = "blk.0.ffn_up_exps.weight";
    expect_load_error(&s, "moe-shape", "blk.0.ffn_up_exps.weight", "expected [64, 32, 5]");
    s.bad_shape_tensor = "blk.2.ffn_gate_inp.weight";
    expect_load_error(&s, "moe-rshape", "blk.2.ffn_gate_inp.weight", "expected [64, 5]");
    s.bad_shape_tensor = NULL;

    /* The expert count of the file disagrees with its tensors: a count
     * that is in range names the tensor whose shape it contradicts. */
    s = moe3_small;
    s.n_expert = 7; /* tensors of 7 experts, key rewritten to 6 below */
    char src[1200], dst[1200], err[512];
    synth_path(src, sizeof src, "moe-key-src");
    synth_path(dst, sizeof dst, "moe-key");
    write_synth(&s, src, 1);
    static const struct {
        const char *key;
        int value;
        const char *says;
    } cases[] = {
        {"qwen3moe.expert_count", 0, "qwen3moe.expert_count = 0 is out of range (1..1024)"},
        {"qwen3moe.expert_count", 1025, "qwen3moe.expert_count = 1025 is out of range"},
        {"qwen3moe.expert_count", -3, "qwen3moe.expert_count = -3 is out of range"},
        {"qwen3moe.expert_count", 6, "expected [64, 6]"},
        {"qwen3moe.expert_used_count", 0, "qwen3moe.expert_used_count = 0 is out of range (1..7)"},
        {"qwen3moe.expert_used_count", 8, "qwen3moe.expert_used_count = 8 is out of range (1..7)"},
        {"qwen3moe.expert_feed_forward_length", 0,
         "qwen3moe.expert_feed_forward_length = 0 is out of range"},
        {"qwen3moe.expert_feed_forward_length", 16, "expected [64, 16, 7]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite_key(src, dst, set_int_value, cases[i].key, cases[i].value);
        err[0] = 0;
        assert_null(model_load(dst, err, sizeof err));
        printf("%s = %d: %s\n", cases[i].key, cases[i].value, err);
        assert_null(strchr(err, '\n'));
        assert_non_null(strstr(err, "moe-key.gguf"));
        assert_non_null(strstr(err, cases[i].says));
    }
    /* A file without the count at all. */
    s = moe3_small;
    s.n_expert = 0; /* no expert keys, and the dense FFN instead */
    s.n_ff = 64;
    expect_load_error(&s, "moe-nokey", "missing required key qwen3moe.expert_count", NULL);
}

/* ---- gpt-oss ---- */

/* gpt-oss's every part at reference size: biased attention with a sink
 * per head, even layers windowed to 5 tokens (SEQ and the greedy runs go
 * well past it), YaRN stretching 256 tokens by 32 (the ramp then spans
 * pairs 0..3 of the 8), the router's top-2 of 6 softmaxed among
 * themselves, and biased clamped-SwiGLU experts. */
static const struct tiny_spec oss_small = {
    .arch = "gpt-oss", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32, .n_embd = 64,
    .n_head = 4, .n_head_kv = 2, .head_dim = 16, .n_rot = 16, .head_dim_key = true,
    .n_vocab = 40, .n_layer = 4, .n_expert = 6, .n_expert_used = 2, .n_ff_exp = 32,
    .untied = true, .swa_window = 5, .yarn_factor = 32.0f, .yarn_orig_ctx = 256};

static void test_gpt_oss_f32(void **state)
{
    (void)state;
    check_moe(&oss_small, "gpt-oss-f32");
}

/* As llama.cpp's gpt-oss GGUFs hold it: MXFP4 experts, Q8_0 elsewhere. */
static void test_gpt_oss_mxfp4_experts(void **state)
{
    (void)state;
    struct tiny_spec s = oss_small;
    s.wtype = GGML_TYPE_Q8_0;
    s.own_xtype = true;
    s.xtype = GGML_TYPE_MXFP4;
    check_moe(&s, "gpt-oss-mxfp4");
    s.wtype = GGML_TYPE_F16;
    check_moe(&s, "gpt-oss-mxfp4-f16");
}

/* The CPU backend's logits of SEQ tokens of S (weights from SEED) into
 * OUT (SEQ x n_vocab). */
static void cpu_logits(const struct tiny_spec *s, const char *tag, float *out)
{
    struct model *m = load_synth(s, tag, 1234);
    int32_t tok[SEQ];
    tiny_tokens(tok, SEQ, m->hp.n_vocab, 5);
    void *b = cpu_new(m, 64, 2);
    char err[512];
    assert_int_equal(backend_cpu_ops.forward(b, tok, SEQ, 0, out, true, err, sizeof err), 0);
    backend_cpu_ops.destroy(b);
    model_free(m);
}

/* Each of gpt-oss's mechanisms changes the answer, and the backend follows
 * the reference with it on: large sink logits (most of every head's
 * attention goes to the sink), the window (tokens past it see fewer keys),
 * YaRN. The variants draw the same weights, so any difference is the
 * mechanism's. */
static void test_gpt_oss_mechanisms_matter(void **state)
{
    (void)state;
    int V = oss_small.n_vocab;
    float *a = malloc(sizeof(float) * SEQ * V), *b = malloc(sizeof(float) * SEQ * V);
    assert_non_null(a);
    assert_non_null(b);

    struct tiny_spec big = oss_small, none = oss_small;
    big.sink_mean = 4.0f;
    none.sink_mean = -40.0f; /* exp(-40) next to the keys: no sink at all */
    check_against_ref(&big, "gpt-oss-sinks");
    cpu_logits(&big, "gpt-oss-sinks", a);
    cpu_logits(&none, "gpt-oss-nosinks", b);
    double d = tiny_rel_err(a, b, (size_t)SEQ * V);
    printf("gpt-oss sinks 4 vs none: logits differ by %.2e\n", d);
    assert_true(d > 2e-2);

    struct tiny_spec nowin = oss_small;
    nowin.swa_window = 0;
    cpu_logits(&oss_small, "gpt-oss-win", a);
    cpu_logits(&nowin, "gpt-oss-nowin", b);
    /* identical while every key is inside the window, not after */
    int w = oss_small.swa_window;
    assert_true(tiny_rel_err(a, b, (size_t)w * V) < 1e-6);
    d = tiny_rel_err(a + (size_t)w * V, b + (size_t)w * V, (size_t)(SEQ - w) * V);
    printf("gpt-oss window 5 vs none past the window: logits differ by %.2e\n", d);
    assert_true(d > 1e-2);

    struct tiny_spec noyarn = oss_small;
    noyarn.yarn_factor = 0;
    check_against_ref(&noyarn, "gpt-oss-noyarn");
    cpu_logits(&noyarn, "gpt-oss-noyarn", b);
    d = tiny_rel_err(a, b, (size_t)SEQ * V);
    printf("gpt-oss YaRN vs none: logits differ by %.2e\n", d);
    assert_true(d > 1e-2);
    free(a);
    free(b);
}

static void test_gpt_oss_loader_fields(void **state)
{
    (void)state;
    struct tiny_spec s = oss_small;
    s.wtype = GGML_TYPE_Q8_0;
    s.own_xtype = true;
    s.xtype = GGML_TYPE_MXFP4;
    struct model *m = load_synth(&s, "oss-fields", 3);
    const struct model_hparams *hp = &m->hp;
    assert_int_equal(hp->arch, MODEL_ARCH_GPT_OSS);
    assert_string_equal(model_arch_name(hp->arch), "gpt-oss");
    assert_int_equal(hp->swa_window, 5);
    for (int il = 0; il < 4; il++)
        assert_int_equal(m->layers[il].swa, il % 2 == 0); /* llama.cpp: layer 0 is windowed */
    assert_true(hp->rope_yarn);
    assert_true(fabsf(hp->rope_freq_scale - 1.0f / 32) < 1e-9f);
    assert_true(hp->rope_scale_local == hp->rope_freq_scale);
    assert_true(hp->rope_base_local == hp->rope_base);
    assert_int_equal(hp->yarn_n_ctx_orig, 256);
    assert_true(hp->yarn_beta_fast == 32.0f && hp->yarn_beta_slow == 1.0f);
    assert_true(hp->yarn_ext_factor == 1.0f && hp->yarn_attn_factor == 1.0f);
    assert_true(hp->attn_sinks);
    assert_int_equal(hp->expert_gating, MODEL_GATING_SOFTMAX_TOPK);
    assert_false(hp->expert_weights_norm);
    assert_true(hp->glu_clamped);
    assert_true(hp->glu_alpha == 1.702f && hp->glu_limit == 7.0f);
    assert_int_equal(hp->n_ff_shexp, 0);
    assert_true(hp->rope_neox);
    const struct model_layer *l = &m->layers[1];
    assert_int_equal(l->attn_sinks.ne0, 4);
    assert_int_equal(l->bo.ne0, 64);
    assert_non_null(l->bq.data);
    assert_non_null(l->ffn_norm.data); /* read from post_attention_norm.weight */
    assert_null(l->post_attn_norm.data);
    assert_int_equal(l->ffn_gate_inp_b.ne0, 6);
    assert_int_equal(l->ffn_gate_exps_b.ne0, 32);
    assert_int_equal(l->ffn_gate_exps_b.ne1, 6);
    assert_int_equal(l->ffn_down_exps_b.ne0, 64);
    assert_int_equal(l->ffn_down_exps_b.ne1, 6);
    assert_int_equal(l->ffn_up_exps.type, GGML_TYPE_MXFP4);
    assert_int_equal(l->wq.type, GGML_TYPE_Q8_0);
    /* per layer: 3 MXFP4 expert stacks of 6 (17 bytes per 32), and the
     * expert biases' rows (F32) */
    uint64_t ex = 3 * (uint64_t)(64 * 32 / 32 * 17) * 6, exb = (uint64_t)(32 + 32 + 64) * 4 * 6;
    assert_int_equal(l->ffn_gate_exps.nbytes + l->ffn_up_exps.nbytes + l->ffn_down_exps.nbytes, ex);
    uint64_t embd = m->tok_embd.nbytes, row = 64 * 4;
    /* untied: one embedding row; 4 of 6 experts' matrices and bias rows
     * unread in each of the 4 layers */
    assert_int_equal(m->bytes_per_token,
                     m->weight_bytes - embd + row - 4 * ((ex + exb) / 6 * 4));
    model_free(m);
}

static void set_yarn_case(struct gguf_writer *w, const char *key, int variant)
{
    switch (variant) {
    case 0:
        gguf_writer_set_str(w, key, "longrope");
        break;
    case 1:
        gguf_writer_set_f32(w, key, 0.5f);
        break;
    case 2:
        gguf_writer_set_f32(w, key, 40.0f);
        break;
    default:
        gguf_writer_set_u32(w, key, 0);
        break;
    }
}

/* Corrupt gpt-oss files: one line naming the file and the tensor or key. */
static void test_gpt_oss_load_errors(void **state)
{
    (void)state;
    struct tiny_spec s = oss_small;
    s.skip_tensor = "blk.2.attn_sinks.weight";
    expect_load_error(&s, "oss-nosinks", "missing tensor blk.2.attn_sinks.weight", NULL);
    s.skip_tensor = "blk.0.ffn_up_exps.bias";
    expect_load_error(&s, "oss-noxbias", "missing tensor blk.0.ffn_up_exps.bias", NULL);
    s.skip_tensor = "blk.3.attn_output.bias";
    expect_load_error(&s, "oss-nobo", "missing tensor blk.3.attn_output.bias", NULL);
    s.skip_tensor = "blk.1.post_attention_norm.weight";
    expect_load_error(&s, "oss-nonorm", "missing tensor blk.1.post_attention_norm.weight", NULL);
    s.skip_tensor = NULL;
    s.bad_shape_tensor = "blk.1.attn_sinks.weight";
    expect_load_error(&s, "oss-sinklen", "tensor blk.1.attn_sinks.weight has shape [5]",
                      "expected [4]");
    s.bad_shape_tensor = "blk.0.ffn_down_exps.bias";
    expect_load_error(&s, "oss-xbshape", "tensor blk.0.ffn_down_exps.bias has shape [64, 7]",
                      "expected [64, 6]");
    s.bad_shape_tensor = "blk.2.ffn_gate_inp.bias";
    expect_load_error(&s, "oss-rbshape", "blk.2.ffn_gate_inp.bias", "expected [6]");
    s.bad_shape_tensor = NULL;
    s.bad_expert_used = 7;
    expect_load_error(&s, "oss-used", "gpt-oss.expert_used_count = 7 is out of range (1..6)",
                      NULL);
    s.bad_expert_used = 0;
    s.nonfinite_tensor = "blk.1.ffn_gate_exps.bias";
    expect_load_error(&s, "oss-nanbias", "tensor blk.1.ffn_gate_exps.bias holds a non-finite",
                      NULL);
    s.nonfinite_tensor = "blk.0.attn_sinks.weight";
    expect_load_error(&s, "oss-nansink", "tensor blk.0.attn_sinks.weight holds a non-finite",
                      NULL);

    /* RoPE scaling keys YaRN cannot use, and kinds kvchat does not have */
    s = oss_small;
    char src[1200], dst[1200], err[512];
    synth_path(src, sizeof src, "oss-key-src");
    synth_path(dst, sizeof dst, "oss-key");
    write_synth(&s, src, 1);
    static const struct {
        const char *key;
        int variant;
        const char *says;
    } cases[] = {
        {"gpt-oss.rope.scaling.type", 0,
         "gpt-oss.rope.scaling.type 'longrope' is not supported (only none, linear and yarn)"},
        {"gpt-oss.rope.scaling.factor", 1, "gpt-oss.rope.scaling.factor = 0.5 is below 1"},
        {"gpt-oss.rope.scaling.yarn_beta_slow", 2,
         "gpt-oss.rope.scaling.yarn_beta_slow = 40 must be below yarn_beta_fast 32"},
        {"gpt-oss.rope.scaling.original_context_length", 3,
         "gpt-oss.rope.scaling.original_context_length = 0 is out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite_key(src, dst, set_yarn_case, cases[i].key, cases[i].variant);
        err[0] = 0;
        assert_null(model_load(dst, err, sizeof err));
        printf("%s: %s\n", cases[i].key, err);
        assert_null(strchr(err, '\n'));
        assert_non_null(strstr(err, "oss-key.gguf"));
        assert_non_null(strstr(err, cases[i].says));
    }
}

/* ---- the router's keys ---- */

/* qwen3moe whose file says: sigmoid gating, scaled by 2.5 (DeepSeek-V3's
 * factor) after qwen3moe's default renormalisation. */
static struct tiny_spec moe3_sigmoid(void)
{
    struct tiny_spec s = moe3_small;
    s.gating_func = 2;
    s.weights_scale = 2.5f;
    return s;
}

/* The file's router keys are what the backend computes, against the
 * reference that reads them from the file itself: sigmoid gating with a
 * scale, gpt-oss's softmax over the chosen on a qwen2moe, and a qwen2moe
 * told to renormalise. The loader's fields follow the keys, and each key
 * changes the answer (the variants draw the same weights). */
static void test_moe_router_keys(void **state)
{
    (void)state;
    struct tiny_spec sig = moe3_sigmoid();
    check_moe(&sig, "qwen3moe-sigmoid-x2.5");
    struct tiny_spec sig_q = sig;
    sig_q.wtype = sig_q.etype = GGML_TYPE_Q8_0;
    check_moe(&sig_q, "qwen3moe-sigmoid-q8_0");
    /* on qwen2moe, whose default does not renormalise: a softmax over the
     * chosen equals a renormalised softmax over all (qwen3moe's default),
     * so on qwen3moe the key would change nothing */
    struct tiny_spec smw = moe2_small;
    smw.gating_func = 3;
    check_moe(&smw, "qwen2moe-softmax-topk");
    struct tiny_spec q2n = moe2_small;
    q2n.weights_norm_key = q2n.weights_norm = true;
    check_moe(&q2n, "qwen2moe-norm");

    struct model *m = load_synth(&sig, "router-fields", 3);
    assert_int_equal(m->hp.expert_gating, MODEL_GATING_SIGMOID);
    assert_true(m->hp.expert_weights_norm); /* qwen3moe's default, no key */
    assert_true(m->hp.expert_weights_scale == 2.5f);
    model_free(m);
    m = load_synth(&smw, "router-fields", 3);
    assert_int_equal(m->hp.expert_gating, MODEL_GATING_SOFTMAX_TOPK);
    assert_false(m->hp.expert_weights_norm);
    assert_true(m->hp.expert_weights_scale == 1.0f);
    model_free(m);
    struct tiny_spec q3off = moe3_small;
    q3off.weights_norm_key = true; /* false: overrides qwen3moe's default */
    q3off.gating_func = 1;
    m = load_synth(&q3off, "router-fields", 3);
    assert_int_equal(m->hp.expert_gating, MODEL_GATING_SOFTMAX);
    assert_false(m->hp.expert_weights_norm);
    model_free(m);
    m = load_synth(&q2n, "router-fields", 3);
    assert_true(m->hp.expert_weights_norm);
    model_free(m);

    int V = moe3_small.n_vocab;
    float *a = malloc(sizeof(float) * SEQ * V), *b = malloc(sizeof(float) * SEQ * V);
    assert_non_null(a);
    assert_non_null(b);
    cpu_logits(&moe3_small, "router-default", a);
    cpu_logits(&sig, "router-sigmoid", b);
    double d = tiny_rel_err(a, b, (size_t)SEQ * V);
    printf("qwen3moe sigmoid x2.5 vs the default softmax: logits differ by %.2e\n", d);
    assert_true(d > 1e-2);
    struct tiny_spec sig1 = sig;
    sig1.weights_scale = 0;
    cpu_logits(&sig1, "router-sigmoid-x1", a);
    d = tiny_rel_err(a, b, (size_t)SEQ * V);
    printf("qwen3moe sigmoid x2.5 vs x1: logits differ by %.2e\n", d);
    assert_true(d > 1e-2);
    cpu_logits(&q3off, "router-nonorm", a);
    cpu_logits(&moe3_small, "router-default", b);
    d = tiny_rel_err(a, b, (size_t)SEQ * V);
    printf("qwen3moe renormalised vs not: logits differ by %.2e\n", d);
    assert_true(d > 1e-2);
    free(a);
    free(b);
    V = moe2_small.n_vocab;
    a = malloc(sizeof(float) * SEQ * V);
    b = malloc(sizeof(float) * SEQ * V);
    assert_non_null(a);
    assert_non_null(b);
    cpu_logits(&moe2_small, "router-q2-default", a);
    cpu_logits(&smw, "router-q2-softmax-topk", b);
    d = tiny_rel_err(a, b, (size_t)SEQ * V);
    printf("qwen2moe softmax over the chosen vs over all: logits differ by %.2e\n", d);
    assert_true(d > 1e-2);
    free(a);
    free(b);
}

static void set_router_case(struct gguf_writer *w, const char *key, int variant)
{
    switch (variant) {
    case 0:
        gguf_writer_set_f32(w, key, NAN);
        break;
    case 1:
        gguf_writer_set_f32(w, key, -1.0f);
        break;
    case 2:
        gguf_writer_set_f32(w, key, 0.0f);
        break;
    case 3:
        gguf_writer_set_f32(w, key, 1e9f);
        break;
    case 4:
        gguf_writer_set_f32(w, key, INFINITY);
        break;
    case 5:
        gguf_writer_set_str(w, key, "2.5");
        break;
    case 6:
        gguf_writer_set_u32(w, key, 1);
        break;
    case 7:
        gguf_writer_set_i32(w, key, -1);
        break;
    case 8:
        gguf_writer_set_u32(w, key, 4);
        break;
    default:
        gguf_writer_set_str(w, key, "sigmoid");
        break;
    }
}

/* Router keys that cannot describe a router, and router keys on a dense
 * model: each refusal is one line naming the file and the key. */
static void test_moe_router_key_errors(void **state)
{
    (void)state;
    char src[1200], dst[1200], err[512];
    synth_path(src, sizeof src, "router-key-src");
    synth_path(dst, sizeof dst, "router-key");
    struct tiny_spec sig = moe3_sigmoid();
    write_synth(&sig, src, 1);
    static const struct {
        const char *key;
        int variant;
        const char *says;
    } cases[] = {
        {"qwen3moe.expert_weights_scale", 0, "qwen3moe.expert_weights_scale = nan is out of range"},
        {"qwen3moe.expert_weights_scale", 1, "qwen3moe.expert_weights_scale = -1 is out of range"},
        {"qwen3moe.expert_weights_scale", 3,
         "qwen3moe.expert_weights_scale = 1e+09 is out of range (above 0, at most 1000; 0 "
         "means none)"},
        {"qwen3moe.expert_weights_scale", 4, "qwen3moe.expert_weights_scale = inf is out of range"},
        {"qwen3moe.expert_weights_scale", 5, "qwen3moe.expert_weights_scale is not a number"},
        {"qwen3moe.expert_weights_norm", 6, "qwen3moe.expert_weights_norm is not a boolean"},
        {"qwen3moe.expert_gating_func", 7, "qwen3moe.expert_gating_func = -1 is out of range"},
        {"qwen3moe.expert_gating_func", 8,
         "qwen3moe.expert_gating_func = 4 is not a gating kvchat computes (1 softmax, 2 "
         "sigmoid, 3 softmax over the chosen experts, 0 or absent: the architecture's default)"},
        {"qwen3moe.expert_gating_func", 9, "qwen3moe.expert_gating_func is not an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite_key(src, dst, set_router_case, cases[i].key, cases[i].variant);
        err[0] = 0;
        assert_null(model_load(dst, err, sizeof err));
        printf("%s (%d): %s\n", cases[i].key, cases[i].variant, err);
        assert_null(strchr(err, '\n'));
        assert_non_null(strstr(err, "router-key.gguf"));
        assert_non_null(strstr(err, cases[i].says));
    }
    /* a scale of 0 is a file's "none": it loads, as scale 1 */
    rewrite_key(src, dst, set_router_case, "qwen3moe.expert_weights_scale", 2);
    struct model *z = model_load(dst, err, sizeof err);
    if (!z)
        fail_msg("scale 0: %s", err);
    assert_true(z->hp.expert_weights_scale == 1.0f);
    model_free(z);

    /* a gating number past the table, written by the spec */
    struct tiny_spec s = moe2_small;
    s.gating_func = 9;
    expect_load_error(&s, "router-gating9", "qwen2moe.expert_gating_func = 9 is not a gating",
                      NULL);

    /* a dense model carrying the router's keys */
    s = (struct tiny_spec){.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                           .n_embd = 32, .n_head = 2, .n_head_kv = 1, .head_dim = 16, .n_rot = 16,
                           .n_ff = 64, .n_vocab = 20, .n_layer = 2, .gating_func = 2};
    expect_load_error(&s, "router-dense-gating",
                      "llama.expert_gating_func is set, but llama is a dense architecture",
                      "general.architecture");
    s.gating_func = 0;
    s.weights_scale = 2.5f;
    expect_load_error(&s, "router-dense-scale", "llama.expert_weights_scale is set", NULL);
    s.weights_scale = 0;
    s.weights_norm_key = true;
    expect_load_error(&s, "router-dense-norm", "llama.expert_weights_norm is set", NULL);
    /* and without them it loads */
    s.weights_norm_key = false;
    model_free(load_synth(&s, "router-dense-ok", 1));
}

static void test_truncated_real_file(void **state)
{
    (void)state;
    char model[4096];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, model);
    FILE *in = fopen(model, "rb");
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    const long cuts[] = {16, 4096, 1 << 20, size / 2, size - 1};
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        char path[1200], err[512];
        synth_path(path, sizeof path, "truncated");
        FILE *out = fopen(path, "wb");
        assert_non_null(out);
        fseek(in, 0, SEEK_SET);
        long left = cuts[c];
        while (left > 0) {
            size_t k = fread(buf, 1, (size_t)left < cap ? (size_t)left : cap, in);
            assert_true(k > 0);
            fwrite(buf, 1, k, out);
            left -= (long)k;
        }
        fclose(out);
        err[0] = 0;
        struct model *m = model_load(path, err, sizeof err);
        printf("truncated at %ld: %s\n", cuts[c], err);
        assert_null(m);
        assert_true(strlen(err) > 0);
        assert_non_null(strstr(err, "truncated"));
    }
    free(buf);
    fclose(in);
}

/* ---- real models ---- */

/* Id of the vocabulary entry spelled TEXT, or -1. */
static int32_t vocab_id(const struct model *m, const char *text)
{
    enum gguf_type et;
    uint64_t n;
    if (!gguf_get_arr(m->file, "tokenizer.ggml.tokens", &et, &n))
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        struct gguf_str s;
        if (gguf_get_arr_str(m->file, "tokenizer.ggml.tokens", i, &s) && gguf_str_eq(s, text))
            return (int32_t)i;
    }
    return -1;
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Feeds WORDS (vocabulary spellings) after BOS (if >= 0) and checks the
 * greedy next token is EXPECT; also times a few decode steps. */
static void run_real(const char *file, int32_t bos, const char *const *words, int n_words,
                     const char *expect, int n_layer, int n_embd)
{
    char path[4096], err[512];
    TEST_REQUIRE_MODEL(file, path);
    struct model *m = model_load(path, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    assert_int_equal(m->hp.n_layer, n_layer);
    assert_int_equal(m->hp.n_embd, n_embd);
    int32_t tok[32];
    int n = 0;
    if (bos >= 0)
        tok[n++] = bos;
    for (int i = 0; i < n_words; i++) {
        tok[n] = vocab_id(m, words[i]);
        if (tok[n] < 0)
            fail_msg("%s: no token spelled '%s'", file, words[i]);
        n++;
    }
    int32_t want = vocab_id(m, expect);
    assert_true(want >= 0);
    int V = m->hp.n_vocab;
    float *lg = malloc(sizeof(float) * (size_t)V * n);
    assert_non_null(lg);
    void *b = cpu_new(m, 256, 2);
    assert_int_equal(backend_cpu_ops.forward(b, tok, n, 0, lg, true, err, sizeof err), 0);
    for (size_t i = 0; i < (size_t)V * n; i++)
        assert_true(isfinite(lg[i]));
    int top = argmax(lg + (size_t)(n - 1) * V, V);
    struct gguf_str s;
    char piece[64] = "?";
    if (gguf_get_arr_str(m->file, "tokenizer.ggml.tokens", (uint64_t)top, &s))
        gguf_str_copy(s, piece, sizeof piece);
    printf("%s: greedy next token %d '%s' (expected %d '%s')\n", file, top, piece, want, expect);
    assert_int_equal(top, want);

    /* The same logits token by token. */
    float *one = malloc(sizeof(float) * V);
    assert_non_null(one);
    for (int i = 0; i < n; i++)
        assert_int_equal(backend_cpu_ops.forward(b, tok + i, 1, i, one, false, err, sizeof err),
                         0);
    double e = tiny_rel_err(one, lg + (size_t)(n - 1) * V, (size_t)V);
    printf("%s: batch vs sequential max rel err %.2e\n", file, e);
    assert_true(e <= 1e-4);

    /* Decode speed (informative). */
    struct timespec t0, t1;
    int steps = 16;
    int32_t cur = top;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < steps; i++) {
        assert_int_equal(backend_cpu_ops.forward(b, &cur, 1, n + i, one, false, err, sizeof err),
                         0);
        cur = argmax(one, V);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("%s: decode %.1f tok/s with 2 threads (%.1f MB read per token)\n", file, steps / dt,
           (double)m->bytes_per_token / 1e6);
    backend_cpu_ops.destroy(b);
    model_free(m);
    free(lg);
    free(one);
}

/* ---- the KV cache in f16 ----
 *
 * Halves round each key and value to 11 significant bits (relative error
 * 2^-11, about 5e-4), which moves the logits of these random models by a
 * few 1e-4 of their scale; 5e-3 leaves room and still fails on any real
 * mistake (a wrong row, an unconverted half read as float: errors of order
 * one). Checked on the vector path (head size 32, prefill and decode at 700
 * tokens of context, where decode splits the keys across threads), the
 * scalar one (head size 10) and Gemma 3's sliding window. */
#define KV_F16_TOL 5e-3

/* The cache of type KV against f32 and the float64 reference on S's model,
 * N tokens, within TOL; its memory and estimate at BYTES_NUM / BYTES_DEN
 * bytes an element. */
static void kv_lossy_case(const struct tiny_spec *s, const char *tag, int n,
                          enum engine_kv_type kv, double tol, uint64_t bytes_num,
                          uint64_t bytes_den)
{
    struct model *m = load_synth(s, tag, 99);
    enum { STEPS = 3 };
    int V = m->hp.n_vocab;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n);
    float *ref = malloc(sizeof(float) * (size_t)n * V);
    float *a = malloc(sizeof(float) * (size_t)n * V), *h = malloc(sizeof(float) * (size_t)n * V);
    assert_true(tok && ref && a && h);
    tiny_tokens(tok, n, V, 41);
    struct ref_model *r = ref_new(m);
    assert_non_null(r);
    assert_int_equal(ref_forward(r, tok, n, ref), 0);
    char err[512];
    void *b32 = cpu_new_kv(m, n, 2, ENGINE_KV_F32), *b16 = cpu_new_kv(m, n, 2, kv);
    /* prefill all but the last STEPS tokens (every row), then decode them */
    assert_int_equal(backend_cpu_ops.forward(b32, tok, n - STEPS, 0, a, true, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(b16, tok, n - STEPS, 0, h, true, err, sizeof err), 0);
    for (int i = n - STEPS; i < n; i++) {
        float *la = a + (size_t)i * V, *lh = h + (size_t)i * V;
        assert_int_equal(backend_cpu_ops.forward(b32, tok + i, 1, i, la, false, err, sizeof err), 0);
        assert_int_equal(backend_cpu_ops.forward(b16, tok + i, 1, i, lh, false, err, sizeof err), 0);
    }
    double e16 = tiny_rel_err(h, a, (size_t)n * V);
    double e32 = tiny_rel_err(a, ref, (size_t)n * V);
    double eref = tiny_rel_err(h, ref, (size_t)n * V);
    const char *name = kv == ENGINE_KV_Q8_0 ? "q8_0" : "f16";
    printf("%-14s KV %s vs f32: max rel err %.2e (f32 vs reference %.2e, %s %.2e; "
           "tolerance %.0e)\n", tag, name, e16, e32, name, eref, tol);
    assert_true(e32 <= 1e-5); /* f32 is still the exact path */
    assert_true(e16 <= tol);
    assert_true(eref <= tol);
    assert_true(e16 > 0); /* the cache really is rounded */

    /* the memory reading counts the type's bytes an element */
    struct engine_memory m32, m16;
    backend_cpu_ops.memory(b32, &m32);
    backend_cpu_ops.memory(b16, &m16);
    uint64_t elems = 2ull * (uint64_t)m->hp.n_layer * (uint64_t)n * (uint64_t)m->hp.n_head_kv *
                     (uint64_t)m->hp.head_dim;
    assert_true(m32.kv_cache >= elems * 4 && m32.kv_cache < elems * 4 + 4096);
    uint64_t want = elems * bytes_num / bytes_den;
    assert_true(m16.kv_cache >= want && m16.kv_cache < want + 4096);
    struct backend_config cfg = {.n_ctx = n, .n_threads = 1, .kv_type = kv};
    struct backend_estimate est;
    assert_int_equal(backend_cpu_ops.estimate(m, &cfg, &est, err, sizeof err), 0);
    assert_true(est.kv_cache == want);

    backend_cpu_ops.destroy(b32);
    backend_cpu_ops.destroy(b16);
    ref_free(r);
    model_free(m);
    free(tok);
    free(ref);
    free(a);
    free(h);
}

static void kv_f16_case(const struct tiny_spec *s, const char *tag, int n)
{
    kv_lossy_case(s, tag, n, ENGINE_KV_F16, KV_F16_TOL, 2, 1);
}

static void test_kv_f16_vs_f32(void **state)
{
    (void)state;
    struct tiny_spec vec = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                            .n_embd = 48, .n_head = 6, .n_head_kv = 2, .head_dim = 32,
                            .n_rot = 32, .head_dim_key = true, .n_ff = 64, .n_vocab = 41,
                            .n_layer = 2};
    kv_f16_case(&vec, "kv16-vector", 700);
    struct tiny_spec scal = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                             .n_embd = 40, .n_head = 4, .n_head_kv = 2, .head_dim = 10,
                             .n_rot = 10, .n_ff = 72, .n_vocab = 53, .n_layer = 2};
    kv_f16_case(&scal, "kv16-scalar", 40);
    struct tiny_spec swa = {.arch = "gemma3", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                            .n_embd = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 16,
                            .n_rot = 16, .head_dim_key = true, .n_ff = 96, .n_vocab = 47,
                            .n_layer = 6, .swa_window = 8};
    kv_f16_case(&swa, "kv16-gemma3", 48);
    /* The AVX-512 chunks take up to 4 heads of a group at once and values
     * 64 elements at a time: a group of 4 at head size 64, and one of 5
     * (a block of 4, then 1) at 80 (64, then 16), over two chunks of keys
     * and a count that is not a multiple of 4. */
    struct tiny_spec g4 = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                           .n_embd = 64, .n_head = 4, .n_head_kv = 1, .head_dim = 64,
                           .n_rot = 64, .head_dim_key = true, .n_ff = 96, .n_vocab = 43,
                           .n_layer = 2};
    kv_f16_case(&g4, "kv16-group4", 301);
    struct tiny_spec g5 = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                           .n_embd = 48, .n_head = 10, .n_head_kv = 2, .head_dim = 80,
                           .n_rot = 80, .head_dim_key = true, .n_ff = 64, .n_vocab = 37,
                           .n_layer = 2};
    kv_f16_case(&g5, "kv16-group5", 530);
}

/* ---- the KV cache in q8_0 ----
 *
 * A block of 32 keys or values keeps int8 steps of max|x| / 127, so an
 * element is off by up to 1/254 of its block's largest (about 4e-3 of the
 * scale, 8x f16's error); measured on these random models the logits move
 * by 2.6e-3 to 7.4e-3 of their scale (printed below, the same on the
 * AVX-512, AVX2 and reference paths), and 2e-2 leaves room while still
 * failing on any real mistake (a wrong block or scale: errors of order
 * one). Head sizes must be multiples of 32: 32 (prefill and a
 * split decode at 700 tokens), Gemma 3's sliding window at 32, and the
 * AVX-512 head blocks at 64 (a group of 4) and 96 (a group of 5: 4, then
 * 1; values 64 then 32 wide). */
#define KV_Q8_TOL 2e-2

static void kv_q8_case(const struct tiny_spec *s, const char *tag, int n)
{
    kv_lossy_case(s, tag, n, ENGINE_KV_Q8_0, KV_Q8_TOL, 34, 32);
}

static void test_kv_q8_0_vs_f32(void **state)
{
    (void)state;
    struct tiny_spec vec = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                            .n_embd = 48, .n_head = 6, .n_head_kv = 2, .head_dim = 32,
                            .n_rot = 32, .head_dim_key = true, .n_ff = 64, .n_vocab = 41,
                            .n_layer = 2};
    kv_q8_case(&vec, "kv8-vector", 700);
    struct tiny_spec swa = {.arch = "gemma3", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                            .n_embd = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 32,
                            .n_rot = 32, .head_dim_key = true, .n_ff = 96, .n_vocab = 47,
                            .n_layer = 6, .swa_window = 8};
    kv_q8_case(&swa, "kv8-gemma3", 48);
    struct tiny_spec g4 = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                           .n_embd = 64, .n_head = 4, .n_head_kv = 1, .head_dim = 64,
                           .n_rot = 64, .head_dim_key = true, .n_ff = 96, .n_vocab = 43,
                           .n_layer = 2};
    kv_q8_case(&g4, "kv8-group4", 301);
    struct tiny_spec g5 = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                           .n_embd = 48, .n_head = 10, .n_head_kv = 2, .head_dim = 96,
                           .n_rot = 96, .head_dim_key = true, .n_ff = 64, .n_vocab = 37,
                           .n_layer = 2};
    kv_q8_case(&g5, "kv8-group5", 530);
}

/* Rewinding a q8_0 cache: positions from P on are written again, whole
 * blocks, so a forward at P after the cache was filled beyond it equals a
 * fresh run bit for bit (Gemma 3's sliding window included). */
static void test_kv_q8_0_rewind(void **state)
{
    (void)state;
    struct model *m = load_synth(&gemma_small, "rewind-q8", 13);
    int V = m->hp.n_vocab;
    int32_t a[12], bt[6];
    tiny_tokens(a, 12, V, 31);
    tiny_tokens(bt, 6, V, 32);
    float *x = malloc(sizeof(float) * 6 * V), *y = malloc(sizeof(float) * 6 * V);
    assert_true(x && y);
    char err[512];
    void *b = cpu_new_kv(m, 16, 2, ENGINE_KV_Q8_0);
    assert_int_equal(backend_cpu_ops.forward(b, a, 12, 0, x, false, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(b, bt, 6, 5, x, true, err, sizeof err), 0);
    void *fresh = cpu_new_kv(m, 16, 2, ENGINE_KV_Q8_0);
    assert_int_equal(backend_cpu_ops.forward(fresh, a, 5, 0, y, false, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(fresh, bt, 6, 5, y, true, err, sizeof err), 0);
    assert_memory_equal(x, y, sizeof(float) * 6 * V);
    backend_cpu_ops.destroy(fresh);
    backend_cpu_ops.destroy(b);
    model_free(m);
    free(x);
    free(y);
}

/* q8_0 needs a head size that is a multiple of 32 (its blocks may not
 * straddle heads): any other is refused by estimate and create, with a
 * message that names the type and the head size and says what to use. */
static void test_kv_type_refused(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                          .n_embd = 40, .n_head = 4, .n_head_kv = 2, .head_dim = 10, .n_rot = 10,
                          .n_ff = 72, .n_vocab = 53, .n_layer = 2};
    struct model *m = load_synth(&s, "kv-q8", 3);
    struct backend_config cfg = {.n_ctx = 32, .n_threads = 1, .kv_type = ENGINE_KV_Q8_0};
    struct backend_estimate est;
    char err[512] = "";
    assert_int_equal(backend_cpu_ops.estimate(m, &cfg, &est, err, sizeof err), -1);
    assert_non_null(strstr(err, "q8_0"));
    assert_non_null(strstr(err, "10"));
    err[0] = 0;
    assert_null(backend_cpu_ops.create(m, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "f16"));
    /* a number that is no type at all */
    cfg.kv_type = (enum engine_kv_type)77;
    assert_null(backend_cpu_ops.create(m, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "unknown"));
    model_free(m);
}

/* ---- perplexity (tools/ppl.c) against the reference forward pass ---- */

static int ppl_cpu_forward(void *user, const int32_t *tokens, int32_t n, int32_t pos,
                           float *logits, bool all, char *err, size_t errlen)
{
    return backend_cpu_ops.forward(user, tokens, n, pos, logits, all, err, errlen);
}

static void ppl_count_chunk(int32_t chunk, int32_t n_chunks, double ppl, void *user)
{
    int *seen = user;
    assert_int_equal(chunk, *seen + 1);
    assert_int_equal(n_chunks, 3);
    assert_true(isfinite(ppl) && ppl > 1);
    (*seen)++;
}

/* Chunks of 32 tokens of a 103-token text: 3 chunks (the 7 left over are
 * not scored), BOS put first in each, positions 16..30 scored against the
 * next token. The reference recomputes each chunk from position 0 with
 * ref_forward and its own double log-softmax. */
static void test_perplexity_vs_ref(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                          .n_embd = 40, .n_head = 4, .n_head_kv = 2, .head_dim = 10, .n_rot = 10,
                          .n_ff = 72, .n_vocab = 53, .n_layer = 2};
    struct model *m = load_synth(&s, "ppl", 77);
    enum { CTX = 32, N = 3 * CTX + 7, BOS = 1 };
    int V = m->hp.n_vocab;
    int32_t tok[N], chunk[CTX];
    tiny_tokens(tok, N, V, 8);
    float *ref = malloc(sizeof(float) * CTX * (size_t)V);
    assert_non_null(ref);
    struct ref_model *r = ref_new(m);
    assert_non_null(r);
    double sum = 0, sum2 = 0;
    int count = 0;
    for (int c = 0; c < 3; c++) {
        memcpy(chunk, tok + c * CTX, sizeof chunk);
        chunk[0] = BOS;
        assert_int_equal(ref_forward(r, chunk, CTX, ref), 0);
        for (int j = CTX / 2; j < CTX - 1; j++) {
            const float *lg = ref + (size_t)j * V;
            double mx = -INFINITY, z = 0;
            for (int i = 0; i < V; i++)
                mx = fmax(mx, lg[i]);
            for (int i = 0; i < V; i++)
                z += exp(lg[i] - mx);
            double nll = log(z) + mx - lg[chunk[j + 1]];
            sum += nll;
            sum2 += nll * nll;
            count++;
        }
    }
    double mean = sum / count, want = exp(mean);
    double want_err = want * sqrt((sum2 / count - mean * mean) / (count - 1));

    void *b = cpu_new_kv(m, CTX, 2, ENGINE_KV_F32);
    struct ppl_result got;
    char err[512];
    int seen = 0;
    assert_int_equal(ppl_run(ppl_cpu_forward, b, tok, N, CTX, V, BOS, ppl_count_chunk, &seen,
                             &got, err, sizeof err), 0);
    printf("perplexity %.6f +/- %.6f, reference %.6f +/- %.6f\n", got.ppl, got.ppl_err, want,
           want_err);
    assert_int_equal(seen, 3);
    assert_int_equal(got.n_chunks, 3);
    assert_int_equal(got.n_scored, 3 * (CTX - CTX / 2 - 1));
    assert_true(fabs(got.ppl - want) <= 1e-5 * want);
    assert_true(fabs(got.ppl_err - want_err) <= 1e-4 * want_err);
    assert_true(want > 2); /* random weights: far from certain */

    /* too short a text is an error that says so */
    assert_int_equal(ppl_run(ppl_cpu_forward, b, tok, CTX - 1, CTX, V, BOS, NULL, NULL, &got,
                             err, sizeof err), -1);
    assert_non_null(strstr(err, "fewer than one chunk"));
    backend_cpu_ops.destroy(b);
    ref_free(r);
    model_free(m);
    free(ref);
}

static void test_real_smollm2(void **state)
{
    (void)state;
    static const char *const words[] = {"Monday", ",", "ĠTuesday", ",", "ĠWednesday", ",",
                                        "ĠThursday", ","};
    run_real(TEST_MODEL_SMOLLM2, -1, words, 8, "ĠFriday", 30, 576);
}

static void test_real_gemma3(void **state)
{
    (void)state;
    /* BOS is 2 in Gemma's vocabulary. (After "The capital of France is"
     * this model really does say "the", as a numpy reference agrees.) */
    static const char *const words[] = {"Monday", ",", "▁Tuesday", ",", "▁Wednesday", ",",
                                        "▁Thursday", ","};
    run_real(TEST_MODEL_GEMMA3, 2, words, 8, "▁Friday", 18, 640);
}

static int setup(void **state)
{
    (void)state;
    test_tmpdir(tmpdir, sizeof tmpdir, "model");
    return tmpdir[0] ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_f32),
        cmocka_unit_test(test_llama_f16_partial_rope),
        cmocka_unit_test(test_llama_bf16),
        cmocka_unit_test(test_llama_q8_0),
        cmocka_unit_test(test_qwen2_q4_0_bias),
        cmocka_unit_test(test_qwen3_q4_1_qknorm),
        cmocka_unit_test(test_gemma3_q5_0_swa),
        cmocka_unit_test(test_gemma3_q5_1),
        cmocka_unit_test(test_llama_q4_k),
        cmocka_unit_test(test_qwen3_q5_k),
        cmocka_unit_test(test_gemma3_q6_k),
        cmocka_unit_test(test_llama_low_bit_types),
        cmocka_unit_test(test_gemma3_bf16_exact),
        cmocka_unit_test(test_qwen_f16_exact),
        cmocka_unit_test(test_loader_fields),
        cmocka_unit_test(test_batch_vs_sequential),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_long_context_decode),
        cmocka_unit_test(test_rewind),
        cmocka_unit_test(test_forward_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_bad_hparams),
        cmocka_unit_test(test_damaged_norm_refused),
        cmocka_unit_test(test_damaged_matrix_gives_nonfinite_logits),
        cmocka_unit_test(test_hparam_errors_name_the_key),
        cmocka_unit_test(test_truncated_real_file),
        cmocka_unit_test(test_qwen3moe_f32),
        cmocka_unit_test(test_qwen3moe_q8_0),
        cmocka_unit_test(test_qwen3moe_q4_k),
        cmocka_unit_test(test_qwen2moe_f16),
        cmocka_unit_test(test_qwen2moe_q4_0),
        cmocka_unit_test(test_moe_loader_fields),
        cmocka_unit_test(test_moe_batch_threads),
        cmocka_unit_test(test_moe_load_errors),
        cmocka_unit_test(test_gpt_oss_f32),
        cmocka_unit_test(test_gpt_oss_mxfp4_experts),
        cmocka_unit_test(test_gpt_oss_mechanisms_matter),
        cmocka_unit_test(test_gpt_oss_loader_fields),
        cmocka_unit_test(test_gpt_oss_load_errors),
        cmocka_unit_test(test_moe_router_keys),
        cmocka_unit_test(test_moe_router_key_errors),
        cmocka_unit_test(test_kv_f16_vs_f32),
        cmocka_unit_test(test_kv_type_refused),
        cmocka_unit_test(test_kv_q8_0_vs_f32),
        cmocka_unit_test(test_kv_q8_0_rewind),
        cmocka_unit_test(test_perplexity_vs_ref),
        cmocka_unit_test(test_real_smollm2),
        cmocka_unit_test(test_real_gemma3),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
