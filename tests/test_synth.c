/* test_synth.c - synthetic models: every shape and type parses, bad names
 * list the valid ones, the generator gives sane and repeatable rows, built
 * models have the tensors llama.cpp would write, tiny shapes of every
 * architecture run through the CPU backend with finite logits, and the GGUF
 * export loads back (with SmolLM2's real tokenizer when the model is there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "engine_tools.h"
#include "gguf.h"
#include "model.h"
#include "synth.h"
#include "tokenizer.h"
#include "testutil.h"

static const char *const type_names[] = {"f32",  "f16",  "bf16", "q8_0", "q4_0",   "q4_1",
                                         "q5_0", "q5_1", "q4_k", "q5_k", "q6_k",   "q2_k",
                                         "q3_k", "iq4_nl", "iq4_xs", "mxfp4"};
#define N_TYPE_NAMES (sizeof type_names / sizeof type_names[0])

static void every_shape_and_type_parses(void **state)
{
    (void)state;
    static const char *const want[] = {"llama-8b",   "llama-1b",     "qwen2-7b",
                                       "gemma3-1b",  "qwen3-0.6b",   "smollm2-135m",
                                       "qwen3-30b-a3b", "moe-tiny", "gpt-oss-20b",
                                       "gpt-oss-tiny"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_non_null(synth_shape_find(want[i]));
    assert_int_equal(synth_n_shapes(), 10);
    for (int i = 0; i < synth_n_shapes(); i++) {
        const struct synth_shape *sh = synth_shape_at(i);
        for (size_t k = 0; k < N_TYPE_NAMES; k++) {
            char text[64], err[512];
            struct synth_spec s;
            snprintf(text, sizeof text, "%s:%s", sh->name, type_names[k]);
            assert_int_equal(synth_parse(text, &s, err, sizeof err), 0);
            assert_string_equal(s.name, text);
            assert_string_equal(s.shape.name, sh->name);
            assert_true(quant_type_supported(s.type));
        }
    }
    /* the published figures the issue names */
    const struct synth_shape *l8 = synth_shape_find("llama-8b");
    assert_int_equal(l8->n_layer, 32);
    assert_int_equal(l8->n_ff, 14336);
    assert_int_equal(l8->n_vocab, 128256);
    assert_false(l8->tied);
    const struct synth_shape *g = synth_shape_find("gemma3-1b");
    assert_int_equal(g->head_dim, 256);
    assert_int_equal(g->swa_window, 512);
    assert_true(g->tied);
    assert_true(synth_shape_find("qwen2-7b")->qkv_bias);
    /* types are case-insensitive */
    struct synth_spec s;
    char err[512];
    assert_int_equal(synth_parse("llama-1b:Q4_K", &s, err, sizeof err), 0);
    assert_int_equal(s.type, GGML_TYPE_Q4_K);
    assert_string_equal(s.name, "llama-1b:q4_k");
}

/* The lists in messages are written out by hand beside their tables: they
 * must name every row (the architectures, the supported tensor types), in
 * table order for the architectures. */
static void lists_match_the_tables(void **state)
{
    (void)state;
    char want[256] = "";
    for (int a = 0; a < MODEL_ARCH_COUNT; a++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", a ? ", " : "",
                 model_arch_name((enum model_arch)a));
    assert_string_equal(model_arch_list(), want);
    int n_supported = 0;
    for (int id = 0; id < GGML_TYPE_COUNT; id++) {
        if (!quant_type_supported((enum ggml_type)id))
            continue;
        n_supported++;
        char name[16];
        snprintf(name, sizeof name, "%s", quant_type_name((enum ggml_type)id));
        for (char *c = name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        assert_non_null(strstr(synth_type_list(), name));
    }
    int n_listed = 1;
    for (const char *c = synth_type_list(); *c; c++)
        n_listed += *c == ',';
    assert_int_equal(n_listed, n_supported);
}

static void bad_names_list_the_valid_ones(void **state)
{
    (void)state;
    struct synth_spec s;
    char err[512];
    assert_int_equal(synth_parse("llama-70b:q4_k", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "llama-70b"));
    assert_non_null(strstr(err, synth_shape_list()));
    assert_int_equal(synth_parse("llama-1b:iq2_xs", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "iq2_xs"));
    assert_non_null(strstr(err, synth_type_list()));
    assert_int_equal(synth_parse("llama-1b:i32", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, synth_type_list()));
    assert_int_equal(synth_parse("llama-1b", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "SHAPE:TYPE"));
    assert_int_equal(synth_parse("", &s, err, sizeof err), -1);
    assert_int_equal(synth_parse(NULL, &s, err, sizeof err), -1);
}

static void fallback_types(void **state)
{
    (void)state;
    assert_int_equal(synth_weight_type(GGML_TYPE_Q4_K, 4096), GGML_TYPE_Q4_K);
    assert_int_equal(synth_weight_type(GGML_TYPE_Q4_K, 576), GGML_TYPE_Q5_0);
    assert_int_equal(synth_weight_type(GGML_TYPE_Q5_K, 1152), GGML_TYPE_Q5_1);
    assert_int_equal(synth_weight_type(GGML_TYPE_Q6_K, 576), GGML_TYPE_Q8_0);
    assert_int_equal(synth_weight_type(GGML_TYPE_Q8_0, 48), GGML_TYPE_F16);
    assert_int_equal(synth_weight_type(GGML_TYPE_Q4_K, 48), GGML_TYPE_F16);
    assert_int_equal(synth_weight_type(GGML_TYPE_F32, 7), GGML_TYPE_F32);
    /* the types below 4 bits fall back to IQ4_NL, as in llama.cpp */
    assert_int_equal(synth_weight_type(GGML_TYPE_Q3_K, 576), GGML_TYPE_IQ4_NL);
    assert_int_equal(synth_weight_type(GGML_TYPE_IQ4_XS, 1152), GGML_TYPE_IQ4_NL);
    assert_int_equal(synth_weight_type(GGML_TYPE_Q2_K, 4096), GGML_TYPE_Q2_K);
}

/* Each type: rows dequantise to finite values with a deviation near the
 * target and a mean near zero, and any range of rows is the same bytes
 * whether made alone or with the rest. */
static void generator_rows(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_TYPE_NAMES; k++) {
        enum ggml_type t;
        assert_true(quant_type_from_name(type_names[k], &t));
        const int64_t ne0 = 1024, rows = 16;
        size_t rs = quant_row_size(t, ne0);
        uint8_t *a = malloc(rs * rows), *b = malloc(rs * 4);
        float *f = malloc(sizeof *f * ne0);
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(f);
        synth_fill_rows(t, ne0, 0, 42, 7, 0, rows, a);
        synth_fill_rows(t, ne0, 0, 42, 7, 5, 4, b);
        assert_memory_equal(a + 5 * rs, b, 4 * rs);
        double sum = 0, sq = 0;
        for (int64_t r = 0; r < rows; r++) {
            quant_dequantize_row(t, a + r * rs, f, ne0);
            for (int64_t i = 0; i < ne0; i++) {
                assert_true(isfinite(f[i]));
                sum += f[i];
                sq += (double)f[i] * f[i];
            }
        }
        double n = (double)ne0 * rows, sigma = 1.0 / sqrt((double)ne0);
        double rms = sqrt(sq / n), mean = sum / n;
        printf("%-5s rms %.4f (target %.4f) mean %+.5f\n", type_names[k], rms, sigma, mean);
        assert_true(rms > 0.5 * sigma && rms < 2.0 * sigma);
        assert_true(fabs(mean) < 0.25 * sigma);
        /* another tensor id or seed gives other bytes */
        synth_fill_rows(t, ne0, 0, 42, 8, 0, 1, b);
        assert_true(memcmp(a, b, rs) != 0);
        free(a);
        free(b);
        free(f);
    }
}

/* A small custom shape of architecture SHAPE's, for running end to end. */
static struct synth_spec tiny(const char *shape, const char *type)
{
    struct synth_spec s;
    char text[64], err[512];
    snprintf(text, sizeof text, "%s:%s", shape, type);
    if (synth_parse(text, &s, err, sizeof err) != 0)
        fail_msg("%s", err);
    s.shape.n_layer = 3;
    s.shape.n_embd = 320; /* not a multiple of 256: k-quants fall back */
    s.shape.n_ff = 512;
    s.shape.n_head = 4;
    s.shape.n_head_kv = 2;
    s.shape.head_dim = 80;
    s.shape.n_vocab = 1000;
    if (s.shape.swa_window)
        s.shape.swa_window = 8; /* shorter than the test's context */
    if (s.shape.arch == MODEL_ARCH_GEMMA3)
        s.shape.n_layer = 7; /* five local layers, one global, one local */
    if (s.shape.n_expert) {
        s.shape.n_expert = 8;
        s.shape.n_expert_used = 3;
        s.shape.n_ff_exp = 96;
        if (s.shape.n_ff_shexp)
            s.shape.n_ff_shexp = 160;
    }
    return s;
}

static void smollm2_tensors(void **state)
{
    (void)state;
    struct synth_spec s;
    char err[512];
    assert_int_equal(synth_parse("smollm2-135m:q4_k", &s, err, sizeof err), 0);
    struct model *m = model_new_synthetic(&s, err, sizeof err);
    assert_non_null(m);
    assert_null(m->file);
    assert_int_equal(m->hp.n_layer, 30);
    assert_int_equal(m->hp.n_vocab, 49152);
    /* 576 columns: Q4_K falls back to Q5_0; 1536 columns (ffn_down) stay Q4_K */
    assert_int_equal(m->tok_embd.type, GGML_TYPE_Q5_0);
    assert_ptr_equal(m->output.data, m->tok_embd.data); /* tied */
    for (int il = 0; il < m->hp.n_layer; il++) {
        const struct model_layer *l = &m->layers[il];
        assert_int_equal(l->wq.type, GGML_TYPE_Q5_0);
        assert_int_equal(l->wq.ne0, 576);
        assert_int_equal(l->wq.ne1, 576);
        assert_int_equal(l->wk.ne1, 192);
        assert_int_equal(l->ffn_gate.ne1, 1536);
        assert_int_equal(l->ffn_down.type, GGML_TYPE_Q4_K);
        assert_int_equal(l->ffn_down.ne0, 1536);
        assert_int_equal(l->ffn_down.nbytes, quant_row_size(GGML_TYPE_Q4_K, 1536) * 576);
        assert_int_equal(l->attn_norm.type, GGML_TYPE_F32);
        assert_int_equal(l->attn_norm.ne1, 1);
        assert_float_equal(((const float *)l->attn_norm.data)[575], 1.0f, 0);
        assert_null(l->bq.data);
        assert_null(l->q_norm.data);
    }
    /* SmolLM2-135M has 134,515,008 parameters: the count is exact */
    assert_int_equal(m->n_params, 134515008ull);
    assert_int_equal(m->bytes_per_token, m->weight_bytes);
    model_free(m);
}

static void biases_and_norms(void **state)
{
    (void)state;
    struct synth_spec s = tiny("qwen2-7b", "q8_0");
    char err[512];
    struct model *m = model_new_synthetic(&s, err, sizeof err);
    assert_non_null(m);
    assert_non_null(m->layers[0].bq.data);
    assert_int_equal(m->layers[0].bk.type, GGML_TYPE_F32);
    assert_int_equal(m->layers[0].bk.ne0, 160);
    assert_true(m->output.data != m->tok_embd.data); /* qwen2-7b is untied */
    assert_true(m->bytes_per_token < m->weight_bytes);
    model_free(m);

    s = tiny("gemma3-1b", "q4_0");
    m = model_new_synthetic(&s, err, sizeof err);
    assert_non_null(m);
    assert_non_null(m->layers[2].post_ffw_norm.data);
    assert_non_null(m->layers[2].q_norm.data);
    assert_int_equal(m->layers[2].q_norm.ne0, 80);
    assert_true(m->layers[0].swa);
    assert_false(m->layers[5].swa);
    assert_true(m->hp.gelu_ffn);
    model_free(m);
}

/* The MoE shapes: Qwen3-30B-A3B's published sizes, and the test shape's
 * tensors, with only the routed experts a token reads counted per token. */
static void check_forward(const struct model *m, int32_t n_ctx);

static void moe_shapes(void **state)
{
    (void)state;
    const struct synth_shape *q = synth_shape_find("qwen3-30b-a3b");
    assert_non_null(q);
    assert_int_equal(q->arch, MODEL_ARCH_QWEN3MOE);
    assert_int_equal(q->n_layer, 48);
    assert_int_equal(q->n_expert, 128);
    assert_int_equal(q->n_expert_used, 8);
    assert_int_equal(q->n_ff_exp, 768);
    struct synth_spec s;
    char err[512];
    assert_int_equal(synth_parse("qwen3-30b-a3b:q4_k", &s, err, sizeof err), 0);
    uint64_t w = 0;
    assert_int_equal(synth_weight_bytes(&s, &w, err, sizeof err), 0);
    printf("qwen3-30b-a3b:q4_k weights %.2f GiB\n", w / 1073741824.0);
    /* 30.5 billion parameters, nearly all Q4_K (4.5 bits) */
    assert_true(w > (16ull << 30) && w < (18ull << 30));

    assert_int_equal(synth_parse("moe-tiny:q8_0", &s, err, sizeof err), 0);
    struct model *m = model_new_synthetic(&s, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    const struct model_hparams *hp = &m->hp;
    assert_int_equal(hp->arch, MODEL_ARCH_QWEN2MOE);
    assert_int_equal(hp->n_expert, 8);
    assert_int_equal(hp->n_expert_used, 2);
    assert_false(hp->expert_weights_norm);
    uint64_t experts = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const struct model_layer *l = &m->layers[il];
        assert_null(l->ffn_gate.data);
        assert_int_equal(l->ffn_gate_inp.type, GGML_TYPE_F32); /* never quantised */
        assert_int_equal(l->ffn_gate_inp.ne1, 8);
        assert_int_equal(l->ffn_up_exps.type, GGML_TYPE_Q8_0);
        assert_int_equal(l->ffn_up_exps.ne1, 256 * 8);
        assert_int_equal(l->ffn_down_exps.ne0, 256);
        assert_int_equal(l->ffn_down_exps.nbytes, quant_row_size(GGML_TYPE_Q8_0, 256) * 256 * 8);
        assert_int_equal(l->ffn_gate_inp_shexp.type, GGML_TYPE_F32);
        assert_int_equal(l->ffn_down_shexp.ne0, 512);
        assert_non_null(l->bq.data);
        experts += l->ffn_gate_exps.nbytes + l->ffn_up_exps.nbytes + l->ffn_down_exps.nbytes;
    }
    uint64_t embd_row = quant_row_size(m->tok_embd.type, 256);
    assert_int_equal(m->bytes_per_token,
                     m->weight_bytes - m->tok_embd.nbytes + embd_row - experts / 8 * 6);
    assert_int_equal(synth_weight_bytes(&s, &w, err, sizeof err), 0);
    assert_true(w == m->synth_mem_bytes);
    check_forward(m, 40);

    /* The export writes the experts 3-D, and the loader reads back the
     * same model. */
    char dir[4096], path[4200];
    test_tmpdir(dir, sizeof dir, "synth-moe");
    assert_true(dir[0] != 0);
    snprintf(path, sizeof path, "%s/moe.gguf", dir);
    assert_int_equal(synth_write_gguf(m, &s, NULL, path, err, sizeof err), 0);
    struct model *r = model_load(path, err, sizeof err);
    if (!r)
        fail_msg("model_load: %s", err);
    assert_int_equal(r->hp.n_expert, 8);
    assert_int_equal(r->hp.n_ff_shexp, 512);
    assert_int_equal(r->weight_bytes, m->weight_bytes);
    assert_int_equal(r->bytes_per_token, m->bytes_per_token);
    const struct gguf_tensor *t = gguf_find_tensor(r->file, "blk.2.ffn_down_exps.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 3);
    assert_int_equal(t->ne[0], 256);
    assert_int_equal(t->ne[1], 256);
    assert_int_equal(t->ne[2], 8);
    assert_memory_equal(r->layers[2].ffn_down_exps.data, m->layers[2].ffn_down_exps.data,
                        m->layers[2].ffn_down_exps.nbytes);
    model_free(r);
    model_free(m);
    unlink(path);
    rmdir(dir);
}

/* gpt-oss-20b at its published size (weights only: 21 billion parameters),
 * and gpt-oss-tiny built, run past its window, exported and read back. */
static void gpt_oss_shapes(void **state)
{
    (void)state;
    const struct synth_shape *g = synth_shape_find("gpt-oss-20b");
    assert_non_null(g);
    assert_int_equal(g->arch, MODEL_ARCH_GPT_OSS);
    assert_int_equal(g->n_layer, 24);
    assert_int_equal(g->n_embd, 2880);
    assert_int_equal(g->n_head, 64);
    assert_int_equal(g->n_head_kv, 8);
    assert_int_equal(g->head_dim, 64);
    assert_int_equal(g->n_expert, 32);
    assert_int_equal(g->n_expert_used, 4);
    assert_int_equal(g->n_ff_exp, 2880);
    assert_int_equal(g->n_vocab, 201088);
    assert_int_equal(g->swa_window, 128);
    assert_true(g->rope_base == 150000.0f);
    assert_true(g->yarn_factor == 32.0f);
    assert_int_equal(g->yarn_orig_ctx, 4096);
    assert_false(g->tied);
    struct synth_spec s;
    char err[512];
    assert_int_equal(synth_parse("gpt-oss-20b:mxfp4", &s, err, sizeof err), 0);
    uint64_t w = 0;
    assert_int_equal(synth_weight_bytes(&s, &w, err, sizeof err), 0);
    printf("gpt-oss-20b:mxfp4 weights %.2f GiB\n", w / 1073741824.0);
    /* 20.9 billion parameters at 4.25 bits, the router and biases F32 */
    assert_true(w > (10ull << 30) && w < (11ull << 30));

    assert_int_equal(synth_parse("gpt-oss-tiny:q8_0", &s, err, sizeof err), 0);
    struct model *m = model_new_synthetic(&s, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    const struct model_hparams *hp = &m->hp;
    assert_int_equal(hp->arch, MODEL_ARCH_GPT_OSS);
    assert_int_equal(hp->swa_window, 16);
    assert_true(hp->rope_yarn);
    assert_int_equal(hp->yarn_n_ctx_orig, 128);
    assert_true(hp->rope_scale_local == 1.0f / 32);
    assert_true(hp->rope_base_local == 150000.0f);
    assert_true(hp->attn_sinks && hp->glu_clamped);
    assert_int_equal(hp->expert_gating, MODEL_GATING_SOFTMAX_TOPK);
    uint64_t routed = 0; /* expert matrices and bias rows */
    for (int il = 0; il < hp->n_layer; il++) {
        const struct model_layer *l = &m->layers[il];
        assert_int_equal(l->swa, il % 2 == 0);
        assert_int_equal(l->attn_sinks.ne0, 8);
        assert_non_null(l->bo.data);
        assert_non_null(l->bq.data);
        assert_non_null(l->ffn_norm.data);
        assert_int_equal(l->ffn_gate_inp.type, GGML_TYPE_F32);
        assert_int_equal(l->ffn_gate_inp_b.ne0, 8);
        assert_int_equal(l->ffn_up_exps_b.ne1, 8);
        assert_int_equal(l->ffn_down_exps_b.ne0, 256);
        routed += l->ffn_gate_exps.nbytes + l->ffn_up_exps.nbytes + l->ffn_down_exps.nbytes +
                  l->ffn_gate_exps_b.nbytes + l->ffn_up_exps_b.nbytes + l->ffn_down_exps_b.nbytes;
    }
    uint64_t embd_row = quant_row_size(m->tok_embd.type, 256);
    /* untied; 6 of the 8 experts unread */
    assert_int_equal(m->bytes_per_token,
                     m->weight_bytes - m->tok_embd.nbytes + embd_row - routed / 8 * 6);
    check_forward(m, 40); /* 38 tokens: past the window of 16 */

    char dir[4096], path[4200];
    test_tmpdir(dir, sizeof dir, "synth-oss");
    assert_true(dir[0] != 0);
    snprintf(path, sizeof path, "%s/oss.gguf", dir);
    assert_int_equal(synth_write_gguf(m, &s, NULL, path, err, sizeof err), 0);
    struct model *r = model_load(path, err, sizeof err);
    if (!r)
        fail_msg("model_load: %s", err);
    assert_int_equal(r->hp.arch, MODEL_ARCH_GPT_OSS);
    assert_int_equal(r->hp.swa_window, 16);
    assert_true(r->hp.rope_yarn);
    assert_int_equal(r->hp.yarn_n_ctx_orig, 128);
    assert_true(r->hp.rope_freq_scale == hp->rope_freq_scale);
    assert_true(r->hp.rope_base_local == hp->rope_base_local);
    assert_int_equal(r->weight_bytes, m->weight_bytes);
    assert_int_equal(r->bytes_per_token, m->bytes_per_token);
    assert_memory_equal(r->layers[1].attn_sinks.data, m->layers[1].attn_sinks.data,
                        m->layers[1].attn_sinks.nbytes);
    assert_memory_equal(r->layers[3].ffn_down_exps_b.data, m->layers[3].ffn_down_exps_b.data,
                        m->layers[3].ffn_down_exps_b.nbytes);
    model_free(r);
    model_free(m);
    unlink(path);
    rmdir(dir);
}

/* Runs TOKENS through the CPU backend and checks every logit is finite and
 * that they are not all equal. */
static void check_forward(const struct model *m, int32_t n_ctx)
{
    char err[512];
    struct backend_config cfg = {.n_ctx = n_ctx, .n_threads = 2};
    void *be = backend_cpu_ops.create(m, &cfg, err, sizeof err);
    if (!be)
        fail_msg("create: %s", err);
    int32_t n = n_ctx - 2;
    int32_t *toks = malloc(sizeof *toks * (size_t)n);
    float *logits = malloc(sizeof *logits * (size_t)m->hp.n_vocab);
    assert_non_null(toks);
    assert_non_null(logits);
    for (int32_t i = 0; i < n; i++)
        toks[i] = (i * 7919) % m->hp.n_vocab;
    assert_int_equal(backend_cpu_ops.forward(be, toks, n, 0, logits, false, err, sizeof err), 0);
    int32_t next = 3;
    assert_int_equal(backend_cpu_ops.forward(be, &next, 1, n, logits, false, err, sizeof err), 0);
    double lo = INFINITY, hi = -INFINITY;
    for (int32_t i = 0; i < m->hp.n_vocab; i++) {
        assert_true(isfinite(logits[i]));
        lo = fmin(lo, logits[i]);
        hi = fmax(hi, logits[i]);
    }
    assert_true(hi > lo);
    assert_true(hi - lo < 1e4);
    free(toks);
    free(logits);
    backend_cpu_ops.destroy(be);
}

static void tiny_shapes_run_on_cpu(void **state)
{
    (void)state;
    static const char *const shapes[] = {"llama-1b", "qwen2-7b", "qwen3-0.6b", "gemma3-1b",
                                         "qwen3-30b-a3b", "moe-tiny", "gpt-oss-tiny"};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        for (size_t k = 0; k < N_TYPE_NAMES; k++) {
            struct synth_spec s = tiny(shapes[i], type_names[k]);
            char err[512];
            struct model *m = model_new_synthetic(&s, err, sizeof err);
            if (!m)
                fail_msg("%s: %s", s.name, err);
            check_forward(m, 24);
            model_free(m);
        }
    }
}

/* The export, without a tokenizer: model_load gives back the same tensors. */
static void gguf_round_trip(void **state)
{
    (void)state;
    char dir[4096], path[4200], err[512];
    test_tmpdir(dir, sizeof dir, "synth");
    assert_true(dir[0] != 0);
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    struct synth_spec s = tiny("qwen2-7b", "q4_k");
    struct model *m = model_new_synthetic(&s, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(synth_write_gguf(m, &s, NULL, path, err, sizeof err), 0);
    struct model *r = model_load(path, err, sizeof err);
    if (!r)
        fail_msg("model_load: %s", err);
    assert_int_equal(r->hp.arch, MODEL_ARCH_QWEN2);
    assert_int_equal(r->hp.n_layer, s.shape.n_layer);
    assert_int_equal(r->hp.head_dim, 80);
    assert_int_equal(r->n_params, m->n_params);
    assert_int_equal(r->weight_bytes, m->weight_bytes);
    assert_int_equal(r->bytes_per_token, m->bytes_per_token);
    for (int il = 0; il < m->hp.n_layer; il++) {
        assert_int_equal(r->layers[il].ffn_down.type, m->layers[il].ffn_down.type);
        assert_memory_equal(r->layers[il].ffn_down.data, m->layers[il].ffn_down.data,
                            m->layers[il].ffn_down.nbytes);
        assert_memory_equal(r->layers[il].bv.data, m->layers[il].bv.data,
                            m->layers[il].bv.nbytes);
    }
    assert_memory_equal(r->output.data, m->output.data, m->output.nbytes);
    model_free(r);
    model_free(m);
    unlink(path);
    rmdir(dir);
}

/* smollm2-135m:q4_1 with SmolLM2's own tokenizer: the file loads with its
 * tokenizer and runs. A mismatched shape is refused naming the right one. */
static void gguf_with_real_tokenizer(void **state)
{
    (void)state;
    char src[4200], dir[4096], path[4200], err[512];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, src);
    test_tmpdir(dir, sizeof dir, "synth");
    snprintf(path, sizeof path, "%s/smol.gguf", dir);
    assert_int_equal(engine_write_synthetic("llama-1b:q8_0", src, path, NULL, err, sizeof err), -1);
    printf("mismatch: %s\n", err);
    assert_non_null(strstr(err, "49152"));
    assert_non_null(strstr(err, "smollm2-135m"));
    assert_int_not_equal(access(path, F_OK), 0); /* nothing written */

    assert_int_equal(engine_write_synthetic("smollm2-135m:q4_1", src, path, NULL, err, sizeof err), 0);
    struct model *m = model_load(path, err, sizeof err);
    if (!m)
        fail_msg("model_load: %s", err);
    struct tokenizer *tok = tok_new(m->file, err, sizeof err);
    if (!tok)
        fail_msg("tok_new: %s", err);
    assert_int_equal(tok_n_vocab(tok), m->hp.n_vocab);
    int32_t ids[64];
    const char *text = "Hello, synthetic world";
    int64_t n = tok_encode(tok, text, strlen(text), tok_add_bos(tok), ids, 64);
    assert_true(n > 2 && n <= 64);
    char err2[512];
    struct backend_config cfg = {.n_ctx = 64, .n_threads = 2};
    void *be = backend_cpu_ops.create(m, &cfg, err2, sizeof err2);
    assert_non_null(be);
    float *logits = malloc(sizeof *logits * (size_t)m->hp.n_vocab);
    assert_non_null(logits);
    assert_int_equal(backend_cpu_ops.forward(be, ids, (int32_t)n, 0, logits, false, err2, sizeof err2), 0);
    for (int32_t i = 0; i < m->hp.n_vocab; i++)
        assert_true(isfinite(logits[i]));
    free(logits);
    backend_cpu_ops.destroy(be);
    tok_free(tok);
    model_free(m);

    /* The engine loads it like any model, chat template and all. */
    struct engine_params p = engine_default_params();
    p.model_path = path;
    p.backend = ENGINE_BACKEND_CPU;
    p.n_ctx = 256;
    struct engine *e = engine_new(&p, err, sizeof err);
    if (!e)
        fail_msg("engine_new: %s", err);
    assert_string_equal(engine_info(e)->template_name, "chatml");
    engine_free(e);
    unlink(path);
    rmdir(dir);
}

/* An engine on a synthetic spec: forward works, chat and tokenize say why
 * they cannot. */
static void synthetic_engine(void **state)
{
    (void)state;
    char err[512];
    struct engine_params p = engine_default_params();
    p.synthetic = "smollm2-135m:q8_0";
    p.backend = ENGINE_BACKEND_CPU;
    p.n_ctx = 64;
    p.n_threads = 2;
    struct engine *e = engine_new(&p, err, sizeof err);
    if (!e)
        fail_msg("engine_new: %s", err);
    const struct engine_info *in = engine_info(e);
    assert_true(in->synthetic);
    assert_int_equal(in->n_vocab, 49152);
    assert_string_equal(in->model_path, "synthetic:smollm2-135m:q8_0");
    float *logits = malloc(sizeof *logits * 49152);
    int32_t toks[4] = {1, 2, 3, 4};
    assert_int_equal(engine_forward(e, toks, 4, 0, logits, false, err, sizeof err), 0);
    assert_true(isfinite(logits[0]) && isfinite(logits[49151]));
    free(logits);
    int64_t n;
    assert_null(engine_tokenize(e, "hi", true, &n));
    struct engine_turn_params tp = {0};
    tp.sampling = engine_sampling_defaults();
    assert_int_equal(engine_chat(e, "hi", &tp, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no tokenizer"));
    assert_int_equal(engine_fit_context(e, 0), -1);
    /* bytes per token: weights at an empty context, plus K/V as it grows */
    uint64_t b0 = engine_bytes_per_token(e, 0), b32 = engine_bytes_per_token(e, 32);
    assert_true(b0 >= in->bytes_per_token);
    assert_true(b32 > b0);
    engine_free(e);

    p.synthetic = "smollm2-135m:q9_9";
    assert_null(engine_new(&p, err, sizeof err));
    assert_non_null(strstr(err, synth_type_list()));
}

/* A fake /proc/meminfo under a new folder, for the memory checks. */
static void fake_meminfo(char *root, size_t cap, const char *name, unsigned long long kb)
{
    char path[4400];
    test_tmpdir(root, cap, name);
    snprintf(path, sizeof path, "%s/proc", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/proc/meminfo", root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "MemTotal: %llu kB\nMemAvailable: %llu kB\n", kb, kb);
    fclose(f);
}

/* A synthetic model past the memory there is is refused before its weights
 * are made, naming the sizes and what to lower; one that fits is built. */
static void synthetic_past_memory_refused(void **state)
{
    (void)state;
    char root[4200], err[512];
    fake_meminfo(root, sizeof root, "synth-mem", 1048576); /* 1 GiB */
    struct engine_params p = engine_default_params();
    p.synthetic = "llama-8b:q8_0"; /* 8 GiB of weights */
    p.backend = ENGINE_BACKEND_CPU;
    p.n_ctx = 64;
    p.n_threads = 1;
    p.mem_root = root;
    assert_null(engine_new(&p, err, sizeof err));
    printf("error: %s\n", err);
    assert_null(strchr(err, '\n'));
    assert_non_null(strstr(err, "the synthetic model llama-8b:q8_0 needs"));
    assert_non_null(strstr(err, "but 1.0 GiB is available"));
    assert_non_null(strstr(err, "smaller shape or type"));
    assert_non_null(strstr(err, "--ctx-size"));
    /* the KV cache counts: smollm2-135m at f16 fits in 1 GiB at 64 tokens,
     * not at 65536 (2 * 30 layers * 64 K/V values * 2 bytes = 7.5 KiB a token) */
    p.synthetic = "smollm2-135m:q4_0";
    p.n_ctx = 65536;
    assert_null(engine_new(&p, err, sizeof err));
    assert_non_null(strstr(err, "KV cache"));
    p.n_ctx = 64;
    struct engine *e = engine_new(&p, err, sizeof err);
    if (!e)
        fail_msg("engine_new: %s", err);
    engine_free(e);
}

/* synth_weight_bytes is the size of the mapping the model is built in. */
static void weight_bytes_match_the_model(void **state)
{
    (void)state;
    char err[512];
    struct synth_spec sp;
    assert_int_equal(synth_parse("smollm2-135m:q8_0", &sp, err, sizeof err), 0);
    uint64_t w = 0;
    assert_int_equal(synth_weight_bytes(&sp, &w, err, sizeof err), 0);
    struct model *m = model_new_synthetic(&sp, err, sizeof err);
    assert_non_null(m);
    printf("weights %llu mapping %zu\n", (unsigned long long)w, m->synth_mem_bytes);
    assert_true(w == m->synth_mem_bytes);
    model_free(m);
    assert_int_equal(synth_parse("llama-8b:q8_0", &sp, err, sizeof err), 0);
    assert_int_equal(synth_weight_bytes(&sp, &w, err, sizeof err), 0);
    assert_true(w > 7ull << 30); /* 8 billion parameters at 8.5 bits */
}

/* kvchat synth weighs memory (the weights twice) before building anything. */
static void synth_write_past_memory_refused(void **state)
{
    (void)state;
    char root[4200], dir[4200], path[4400], err[512];
    fake_meminfo(root, sizeof root, "synth-wmem", 262144); /* 256 MiB */
    test_tmpdir(dir, sizeof dir, "synth-w");
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    assert_int_equal(engine_write_synthetic("llama-1b:q8_0", NULL, path, root, err, sizeof err),
                     -1);
    printf("error: %s\n", err);
    assert_null(strchr(err, '\n'));
    assert_non_null(strstr(err, "writing the synthetic model llama-1b:q8_0 needs"));
    assert_non_null(strstr(err, "but 0.2 GiB is available"));
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0); /* nothing written */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_shape_and_type_parses),
        cmocka_unit_test(lists_match_the_tables),
        cmocka_unit_test(bad_names_list_the_valid_ones),
        cmocka_unit_test(fallback_types),
        cmocka_unit_test(generator_rows),
        cmocka_unit_test(smollm2_tensors),
        cmocka_unit_test(biases_and_norms),
        cmocka_unit_test(tiny_shapes_run_on_cpu),
        cmocka_unit_test(moe_shapes),
        cmocka_unit_test(gpt_oss_shapes),
        cmocka_unit_test(gguf_round_trip),
        cmocka_unit_test(gguf_with_real_tokenizer),
        cmocka_unit_test(synthetic_engine),
        cmocka_unit_test(weight_bytes_match_the_model),
        cmocka_unit_test(synthetic_past_memory_refused),
        cmocka_unit_test(synth_write_past_memory_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
