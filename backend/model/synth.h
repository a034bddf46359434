/* synth.h - synthetic models: the shape of a published model (Llama 3 8B,
 * Qwen2 7B, Gemma 3 1B, Qwen3-30B-A3B, gpt-oss-20b, ...) with random but valid weights of one type,
 * built straight into memory so that a card or a CPU can be benchmarked, and
 * the CUDA backend compared with the CPU one, without a multi-gigabyte
 * download.
 *
 * Weights are made FAST, never by quantising floats: each row is filled with
 * bytes from a fixed-seed PRNG, then the fp16 scale fields of every block are
 * overwritten with one small value chosen so that the row's elements have a
 * standard deviation of about 1/sqrt(ne0) (activations stay finite through
 * any depth); float types get random sign and mantissa under a fixed
 * exponent range. 1-D tensors are F32 (norms 1, biases small and random), as
 * llama.cpp stores them, and so is an MoE router (llama.cpp never quantises
 * ffn_gate_inp).
 *
 * The generator works row by row on any buffer (synth_fill_rows), and a row's
 * bytes depend only on (seed, tensor index, row), so a range of rows can be
 * made anywhere, in any order, by any number of threads: the CUDA backend
 * will fill pinned staging buffers a chunk at a time and upload them, and get
 * exactly the bytes the CPU backend computes with.
 *
 * Thread safety: everything here is pure except model_new_synthetic and
 * synth_write_gguf, which only touch what they are given.
 */
#ifndef KVCHAT_SYNTH_H
#define KVCHAT_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "quant.h"

struct gguf;

/* A model's shape: what a published config.json says. */
struct synth_shape {
    const char *name;      /* "llama-8b"; static storage */
    enum model_arch arch;
    int32_t n_layer;
    int32_t n_embd;
    int32_t n_ff;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;      /* K and V head size */
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t swa_window;    /* tokens; 0 = none (gemma3, gpt-oss) */
    float rope_base;
    float norm_eps;
    bool tied;             /* LM head is the embedding table */
    bool qkv_bias;         /* qwen2, qwen2moe */
    /* Mixture of experts (qwen3moe, qwen2moe): 0 experts for a dense shape. */
    int32_t n_expert;
    int32_t n_expert_used;
    int32_t n_ff_exp;      /* one expert's hidden size */
    int32_t n_ff_shexp;    /* the shared expert's (qwen2moe), else 0 */
    /* YaRN RoPE scaling (gpt-oss): factor > 1 stretches the
     * yarn_orig_ctx tokens trained on; 0: none. */
    float yarn_factor;
    int32_t yarn_orig_ctx;
};

/* What to build: a shape, a weight type and a seed. */
struct synth_spec {
    char name[64];            /* "llama-1b:q8_0": model name and messages */
    struct synth_shape shape; /* a copy, so tests can build custom shapes */
    enum ggml_type type;      /* of the 2-D weights (see synth_weight_type) */
    uint64_t seed;
};

/* Parses "SHAPE:TYPE" (case-insensitive type, e.g. "llama-8b:q4_k") into OUT
 * with the default seed. -1 with a message in ERR listing the valid shapes
 * or types when either is unknown. */
int synth_parse(const char *text, struct synth_spec *out, char *err, size_t errlen);
/* "llama-8b, llama-1b, ..." and "f32, f16, ...": for messages and usage. */
const char *synth_shape_list(void);
const char *synth_type_list(void);
/* The built-in shape NAME, or NULL. */
const struct synth_shape *synth_shape_find(const char *name);
/* Built-in shapes, for loops in tests: index 0..synth_n_shapes()-1. */
int synth_n_shapes(void);
const struct synth_shape *synth_shape_at(int i);

/* The type a 2-D weight with rows of NE0 elements is stored in when WANT is
 * asked for, by llama.cpp's rule: WANT when NE0 is a whole number of its
 * blocks; else Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K Q3_K IQ4_XS ->
 * IQ4_NL (32-element blocks),
 * and F16 when NE0 is not a multiple of 32 either. (SmolLM2's 576 and Gemma
 * 3 1B's 1152 columns are not multiples of 256, so their k-quant models hold
 * some 32-block tensors, exactly as llama.cpp's quantiser writes them.) */
enum ggml_type synth_weight_type(enum ggml_type want, int64_t ne0);

/* Fills rows ROW0..ROW0+NROWS-1 of a (NE0, *) tensor of type T into DST
 * (quant_row_size(T, NE0) * NROWS bytes, any buffer), for tensor number
 * TENSOR_ID of a model made with SEED. The elements get a standard deviation
 * of about SIGMA (0: 1/sqrt(NE0)). Deterministic: the same arguments give
 * the same bytes on any machine. T must be quant_type_supported and NE0 a
 * whole number of its blocks (else nothing is written). */
void synth_fill_rows(enum ggml_type t, int64_t ne0, float sigma, uint64_t seed,
                     uint32_t tensor_id, int64_t row0, int64_t nrows, void *dst);

/* The bytes of weights model_new_synthetic would map for S, found without
 * making them (so a caller can weigh them against the memory there is
 * first). 0, or -1 with ERR for a bad shape or type. */
int synth_weight_bytes(const struct synth_spec *s, uint64_t *out, char *err, size_t errlen);

/* Builds the model S describes in host memory (one anonymous mapping the
 * model owns; model_free releases it). m->file is NULL: a synthetic model has
 * no tokenizer. NULL with a message in ERR (out of memory says how much). */
struct model *model_new_synthetic(const struct synth_spec *s, char *err, size_t errlen);

/* 0 when TOK's vocabulary (tokenizer.ggml.tokens) has exactly the shape's
 * n_vocab tokens; else -1 with a message naming the built-in shapes that
 * have that many, so a caller can check before building gigabytes. */
int synth_check_tokenizer(const struct synth_spec *s, const struct gguf *tok, char *err,
                          size_t errlen);

/* tokenizer.ggml.model of a file without a vocabulary, as llama.cpp spells
 * it: the engine loads such a file for benchmarks and refuses to chat. */
#define SYNTH_NO_VOCABULARY "none"

/* Writes M (made by model_new_synthetic from S) to PATH as a GGUF file that
 * llama.cpp loads too: architecture keys from the shape, llama.cpp's tensor
 * names, and every "tokenizer." key copied from TOK (may be NULL: then the
 * file has no vocabulary, tokenizer.ggml.model SYNTH_NO_VOCABULARY). The tokenizer's vocabulary must have exactly the
 * shape's n_vocab tokens; else -1 with a message naming the shapes that would
 * fit. The writer copies the weights, so this needs their size again in
 * memory. Returns 0 or -1 with ERR. */
int synth_write_gguf(const struct model *m, const struct synth_spec *s, const struct gguf *tok,
                     const char *path, char *err, size_t errlen);

#endif
