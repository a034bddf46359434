/* tiny_model.c - synthetic tiny models for test_model.c and test_cuda.c
 * (see tiny_model.h). Both tests build their models with this one recipe,
 * so a shape that passes on the CPU backend is the same model on CUDA.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gguf.h"
#include "quant.h"
#include "tiny_model.h"

/* xorshift64, uniform in [-1, 1). The state belongs to one tiny_writer call. */
static float frand(uint64_t *rng)
{
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    return (float)((*rng >> 40) * (1.0 / (1ull << 24))) * 2.0f - 1.0f;
}

/* Adds tensor NAME (NE2 stacked NE0 x NE1 matrices, or a vector when NE1
 * and NE2 are 1) of type T, each value OFFSET + SCALE * frand(), unless S
 * corrupts or skips it. */
static void add3(struct gguf_writer *w, const struct tiny_spec *s, uint64_t *rng, const char *name,
                 enum ggml_type t, int64_t ne0, int64_t ne1, int64_t ne2, float scale,
                 float offset)
{
    if (s->skip_tensor && strcmp(name, s->skip_tensor) == 0)
        return;
    if (s->bad_shape_tensor && strcmp(name, s->bad_shape_tensor) == 0) {
        if (ne1 == 1 && ne2 == 1)
            ne0 += 1; /* a vector one element too long */
        else
            ne1 += 1;
    }
    bool bad_type = s->bad_type_tensor && strcmp(name, s->bad_type_tensor) == 0;
    if (bad_type)
        t = (enum ggml_type)16; /* IQ2_XXS: a known layout kvchat does not compute with */
    int64_t ne[3] = {ne0, ne1, ne2};
    uint32_t n_dims = ne2 > 1 ? 3 : ne1 == 1 ? 1 : 2;
    ne1 *= ne2; /* rows of all the matrices */
    size_t row = quant_row_size(t, ne0);
    unsigned char *data = calloc((size_t)ne1, row);
    float *f = malloc(sizeof(float) * (size_t)ne0);
    assert_non_null(data);
    assert_non_null(f);
    bool damaged = s->nonfinite_tensor && strcmp(name, s->nonfinite_tensor) == 0;
    bool is_float = t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16;
    for (int64_t r = 0; r < ne1; r++) {
        for (int64_t i = 0; i < ne0; i++)
            f[i] = offset + scale * frand(rng);
        if (damaged && is_float && r == 0)
            f[0] = NAN;
        if (!bad_type)
            quant_quantize_row(t, f, data + (size_t)r * row, ne0);
    }
    if (damaged && !is_float) {
        /* the blocks of these types open with their fp16 scale */
        assert_true(t == GGML_TYPE_Q4_0 || t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_0 ||
                    t == GGML_TYPE_Q5_1 || t == GGML_TYPE_Q8_0);
        data[0] = 0x00;
        data[1] = 0x7c;
    }
    gguf_writer_add_tensor(w, name, t, n_dims, ne, data);
    free(f);
    free(data);
}

static void add(struct gguf_writer *w, const struct tiny_spec *s, uint64_t *rng, const char *name,
                enum ggml_type t, int64_t ne0, int64_t ne1, float scale, float offset)
{
    add3(w, s, rng, name, t, ne0, ne1, 1, scale, offset);
}

struct gguf_writer *tiny_writer(const struct tiny_spec *s, uint64_t seed)
{
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    char k[128];
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", s->arch, suffix), k)
    gguf_writer_set_str(w, "general.architecture", s->arch);
    gguf_writer_set_str(w, "general.name", "synthetic");
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)s->n_embd);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)s->n_layer);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->n_ff);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)s->n_head);
    if (s->kv_array) {
        int32_t arr[64];
        assert_true(s->n_layer <= 64);
        for (int i = 0; i < s->n_layer; i++)
            arr[i] = s->n_head_kv;
        gguf_writer_set_arr(w, KEY("attention.head_count_kv"), GGUF_TYPE_INT32, arr,
                            (uint64_t)s->n_layer);
    } else {
        gguf_writer_set_i32(w, KEY("attention.head_count_kv"), s->n_head_kv);
    }
    gguf_writer_set_u32(w, KEY("context_length"), 4096);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    gguf_writer_set_f32(w, KEY("rope.freq_base"), 30000.0f);
    if (s->head_dim_key) {
        gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)s->head_dim);
        gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)s->head_dim);
    }
    if (s->n_rot_key)
        gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)s->n_rot);
    if (s->swa_window)
        gguf_writer_set_u32(w, KEY("attention.sliding_window"), (uint32_t)s->swa_window);
    if (s->yarn_factor > 0) {
        gguf_writer_set_str(w, KEY("rope.scaling.type"), "yarn");
        gguf_writer_set_f32(w, KEY("rope.scaling.factor"), s->yarn_factor);
        gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"),
                            (uint32_t)s->yarn_orig_ctx);
    }
    if (s->n_expert) {
        gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)s->n_expert);
        gguf_writer_set_u32(w, KEY("expert_used_count"),
                            (uint32_t)(s->bad_expert_used ? s->bad_expert_used
                                                          : s->n_expert_used));
        gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)s->n_ff_exp);
        if (s->n_ff_shexp)
            gguf_writer_set_u32(w, KEY("expert_shared_feed_forward_length"),
                                (uint32_t)s->n_ff_shexp);
    }
    if (s->gating_func)
        gguf_writer_set_u32(w, KEY("expert_gating_func"), (uint32_t)s->gating_func);
    if (s->weights_norm_key)
        gguf_writer_set_bool(w, KEY("expert_weights_norm"), s->weights_norm);
    if (s->weights_scale != 0)
        gguf_writer_set_f32(w, KEY("expert_weights_scale"), s->weights_scale);
#undef KEY

    /* Scales keep the activations of order one through a few random layers. */
    int64_t E = s->n_embd, QD = (int64_t)s->n_head * s->head_dim,
            KVD = (int64_t)s->n_head_kv * s->head_dim, F = s->n_ff;
    bool gemma = strcmp(s->arch, "gemma3") == 0;
    bool qk_norm = gemma || strcmp(s->arch, "qwen3") == 0 || strcmp(s->arch, "qwen3moe") == 0;
    bool oss = strcmp(s->arch, "gpt-oss") == 0;
    bool bias = strcmp(s->arch, "qwen2") == 0 || strcmp(s->arch, "qwen2moe") == 0 || oss;
    enum ggml_type xt = s->own_xtype ? s->xtype : s->wtype;
    int64_t NX = s->n_expert, FX = s->n_ff_exp, FS = s->n_ff_shexp;
    float se = 1.0f / sqrtf((float)E);
    add(w, s, &rng, "token_embd.weight", s->etype, E, s->n_vocab, 1.0f, 0.0f);
    add(w, s, &rng, "output_norm.weight", GGML_TYPE_F32, E, 1, 0.2f, 1.0f);
    if (s->untied)
        add(w, s, &rng, "output.weight", s->wtype, E, s->n_vocab, se, 0.0f);
    if (s->rope_freqs)
        add(w, s, &rng, "rope_freqs.weight", GGML_TYPE_F32, s->n_rot / 2, 1, 0.5f, 2.0f);
    for (int il = 0; il < s->n_layer; il++) {
        char n[96];
#define T(what, type, ne0, ne1, scale, off)                                                        \
    do {                                                                                           \
        snprintf(n, sizeof n, "blk.%d.%s", il, what);                                              \
        add(w, s, &rng, n, type, ne0, ne1, scale, off);                                            \
    } while (0)
        T("attn_norm.weight", GGML_TYPE_F32, E, 1, 0.2f, 1.0f);
        T("attn_q.weight", s->wtype, E, QD, 2.0f * se, 0.0f);
        T("attn_k.weight", s->wtype, E, KVD, 2.0f * se, 0.0f);
        T("attn_v.weight", s->wtype, E, KVD, 1.5f * se, 0.0f);
        if (bias) {
            T("attn_q.bias", GGML_TYPE_F32, QD, 1, 0.3f, 0.0f);
            T("attn_k.bias", GGML_TYPE_F32, KVD, 1, 0.3f, 0.0f);
            T("attn_v.bias", GGML_TYPE_F32, KVD, 1, 0.3f, 0.0f);
        }
        if (qk_norm) {
            T("attn_q_norm.weight", GGML_TYPE_F32, s->head_dim, 1, 0.2f, 1.0f);
            T("attn_k_norm.weight", GGML_TYPE_F32, s->head_dim, 1, 0.2f, 1.0f);
        }
        T("attn_output.weight", s->wtype, QD, E, 1.5f / sqrtf((float)QD), 0.0f);
        if (oss) {
            T("attn_output.bias", GGML_TYPE_F32, E, 1, 0.3f, 0.0f);
            T("attn_sinks.weight", GGML_TYPE_F32, s->n_head, 1, 0.5f, s->sink_mean);
        }
        if (gemma)
            T("post_attention_norm.weight", GGML_TYPE_F32, E, 1, 0.2f, 1.0f);
        /* gpt-oss files call the FFN's input norm post_attention_norm */
        T(oss ? "post_attention_norm.weight" : "ffn_norm.weight", GGML_TYPE_F32, E, 1, 0.2f,
          s->ffn_norm_mean != 0.0f ? s->ffn_norm_mean : 1.0f);
        if (NX) {
            /* The router stays F32, as llama.cpp's quantiser leaves it; a
             * wide spread of its logits keeps the top-k choice clear of
             * near ties that rounding could flip. */
            T("ffn_gate_inp.weight", GGML_TYPE_F32, E, NX, 4.0f * se, 0.0f);
            if (oss)
                T("ffn_gate_inp.bias", GGML_TYPE_F32, NX, 1, 0.5f, 0.0f);
#define T3(what, type, ne0, ne1, scale)                                                            \
    do {                                                                                           \
        snprintf(n, sizeof n, "blk.%d.%s", il, what);                                              \
        add3(w, s, &rng, n, type, ne0, ne1, NX, scale, 0.0f);                                      \
    } while (0)
            /* gpt-oss's gates reach past the clamp at 7 now and then */
            T3("ffn_gate_exps.weight", xt, E, FX, (oss ? 8.0f : 2.0f) * se);
            T3("ffn_down_exps.weight", xt, FX, E, 1.5f / sqrtf((float)FX));
            T3("ffn_up_exps.weight", xt, E, FX, (oss ? 8.0f : 2.0f) * se);
#undef T3
            if (oss) {
                /* a row per expert */
                T("ffn_gate_exps.bias", GGML_TYPE_F32, FX, NX, 0.5f, 0.0f);
                T("ffn_down_exps.bias", GGML_TYPE_F32, E, NX, 0.3f, 0.0f);
                T("ffn_up_exps.bias", GGML_TYPE_F32, FX, NX, 0.5f, 0.0f);
            }
            if (FS) {
                T("ffn_gate_inp_shexp.weight", GGML_TYPE_F32, E, 1, 2.0f * se, 0.0f);
                T("ffn_gate_shexp.weight", s->wtype, E, FS, 2.0f * se, 0.0f);
                T("ffn_down_shexp.weight", s->wtype, FS, E, 1.5f / sqrtf((float)FS), 0.0f);
                T("ffn_up_shexp.weight", s->wtype, E, FS, 2.0f * se, 0.0f);
            }
        } else {
            T("ffn_gate.weight", s->wtype, E, F, 2.0f * se, 0.0f);
            T("ffn_up.weight", s->wtype, E, F, 2.0f * se, 0.0f);
            T("ffn_down.weight", s->wtype, F, E, 1.5f / sqrtf((float)F), 0.0f);
        }
        if (gemma)
            T("post_ffw_norm.weight", GGML_TYPE_F32, E, 1, 0.2f, 1.0f);
#undef T
    }
    return w;
}

void tiny_tokens(int32_t *tok, int n, int n_vocab, uint64_t seed)
{
    for (int i = 0; i < n; i++)
        tok[i] = (int32_t)((seed * 7919 + (uint64_t)i * 104729 + (uint64_t)i * i * 31) %
                           (uint64_t)n_vocab);
}

double tiny_rel_err(const float *a, const float *b, size_t n)
{
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md))
            md = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > mb)
            mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1.0);
}
