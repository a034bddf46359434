/* tiny_model.h - synthetic tiny models for the tests: a GGUF writer filled
 * with llama/qwen2/qwen3/gemma3 hyperparameters and random weights,
 * quantised to any type, plus the tokens and error measure the model tests
 * compare logits with. Used by test_model.c (written to a file, with the
 * corruptions its loader-error tests need) and test_cuda.c (kept in memory).
 * Failures are cmocka assertions, so only test binaries link it.
 */
#ifndef KVCHAT_TINY_MODEL_H
#define KVCHAT_TINY_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant.h"

struct gguf_writer;

/* The shape and contents of one synthetic model. */
struct tiny_spec {
    const char *arch;     /* "llama", "qwen2", "qwen3", "gemma3", "qwen3moe", "qwen2moe",
                             "gpt-oss" (or any, for errors) */
    enum ggml_type wtype; /* 2-D weights */
    enum ggml_type etype; /* token_embd */
    int n_embd, n_head, n_head_kv, head_dim, n_rot, n_ff, n_vocab, n_layer;
    bool head_dim_key; /* write attention.key_length/value_length */
    bool n_rot_key;    /* write rope.dimension_count */
    bool untied;       /* write output.weight */
    bool rope_freqs;
    bool kv_array;  /* head_count_kv as a per-layer array */
    int swa_window; /* gemma3, gpt-oss */
    /* The ffn_norm weights' mean (0: 1.0). A large one makes the FFN's
     * activations large, as real Gemma models' GeGLU outputs are (past
     * f16's 65504 before ffn_down). */
    float ffn_norm_mean;
    /* Mixture of experts (qwen3moe, qwen2moe): n_expert > 0 writes the
     * expert keys and, instead of the dense FFN, an F32 router and 3-D
     * expert tensors; n_ff_shexp > 0 adds the shared expert (qwen2moe). */
    int n_expert, n_expert_used, n_ff_exp, n_ff_shexp;
    /* The expert matrices in their own type (gpt-oss files: MXFP4 experts,
     * Q8_0 elsewhere) when set, else wtype. */
    bool own_xtype;
    enum ggml_type xtype;
    /* gpt-oss: the sink logits' mean (their spread is 0.5); a large one
     * takes most of every head's attention. */
    float sink_mean;
    /* YaRN: rope.scaling.type yarn with this factor from yarn_orig_ctx
     * tokens (0: no scaling keys). */
    float yarn_factor;
    int yarn_orig_ctx;
    /* The router's keys, written when set (on any architecture, so the
     * loader's refusal on a dense one can be tested):
     * {arch}.expert_gating_func (llama.cpp's numbers: 1 softmax, 2
     * sigmoid, 3 softmax over the chosen; 0: no key),
     * expert_weights_norm (weights_norm_key: the key holding weights_norm)
     * and expert_weights_scale (0: no key). */
    int gating_func;
    bool weights_norm_key, weights_norm;
    float weights_scale;
    /* Written as the key's value in place of the real one when set (the
     * loader's error tests): expert_used_count. */
    int bad_expert_used;
    /* Corruptions for the loader's error tests (NULL: none). */
    const char *skip_tensor;      /* left out */
    const char *bad_shape_tensor; /* one row too many (per expert, for expert tensors); a
                                     vector one element too long */
    const char *bad_type_tensor;  /* written as IQ2_XXS, which kvchat does not compute with */
    /* Damaged: a float tensor's first value NaN, a Q4_0..Q8_0 tensor's first
     * block scale +inf (fp16 0x7c00). */
    const char *nonfinite_tensor;
};

/* A writer holding every key and tensor of S, with weights drawn from SEED
 * (the same SEED gives the same weights). The caller owns the writer and
 * frees it with gguf_writer_free. Fails the running test when out of memory. */
struct gguf_writer *tiny_writer(const struct tiny_spec *s, uint64_t seed);

/* Fills TOK[0..N) with ids below N_VOCAB, a fixed sequence for each SEED. */
void tiny_tokens(int32_t *tok, int n, int n_vocab, uint64_t seed);

/* max |a - b| over max |b|: the error relative to the logits' scale. A NaN
 * anywhere counts as infinitely wrong, so it fails every tolerance and wins
 * every "worst so far" comparison. */
double tiny_rel_err(const float *a, const float *b, size_t n);

#endif
