/* arch.h - the architecture table: one row per transformer family kvchat
 * runs (llama, qwen2, qwen3, gemma3, qwen3moe, qwen2moe, gpt-oss), giving its GGUF name, the
 * feature flags
 * the backends compute from, the defaults for keys a file may leave out, and
 * the per-layer tensors it needs or allows.
 *
 * Read by the loader (model.c) and the synthetic-model builder (synth.c)
 * alike, so a loaded and a synthetic model of one architecture get the same
 * hyperparameters and tensors. Adding a dense architecture is one row in
 * arch.c (plus a fixup function if it has a quirk); backends never switch on
 * the architecture, only on the flags it turns into (struct model_hparams).
 *
 * Rules: everything here is static data or a pure function of it; internal to
 * backend/model (the public face is model.h's model_arch_name and
 * model_arch_list).
 */
#ifndef KVCHAT_ARCH_H
#define KVCHAT_ARCH_H

#include <stdbool.h>
#include <stddef.h>

#include "model.h"

/* What an architecture does differently from plain llama. */
enum arch_feature {
    ARCH_QKV_BIAS = 1 << 0,   /* attn_{q,k,v}.bias always there (else read when present) */
    ARCH_QK_NORM = 1 << 1,    /* per-head RMS norm of q and k before RoPE */
    ARCH_POST_NORMS = 1 << 2, /* norms after attention and after the FFN, before the residual */
    ARCH_GEGLU = 1 << 3,      /* GeGLU FFN instead of SwiGLU */
    ARCH_EMBD_SCALE = 1 << 4, /* token embeddings times sqrt(n_embd) */
    ARCH_ROPE_NEOX = 1 << 5,  /* RoPE pairs (i, i+n_rot/2) instead of (2i, 2i+1) */
    ARCH_SWA = 1 << 6,        /* sliding-window layers: {arch}.attention.sliding_window and
                                 {arch}.rope.freq_base_swa are read, layers alternate */
    ARCH_MOE = 1 << 7,        /* mixture of experts instead of the dense FFN: {arch}.expert_count,
                                 expert_used_count, expert_feed_forward_length are read */
    ARCH_SHARED_EXPERT = 1 << 8, /* a sigmoid-gated shared expert beside the routed ones
                                    ({arch}.expert_shared_feed_forward_length) */
    ARCH_EXPERT_WEIGHTS_NORM = 1 << 9, /* the top-k router weights renormalised to sum 1 (the
                                          default; {arch}.expert_weights_norm overrides) */
    ARCH_ATTN_SINKS = 1 << 10,  /* blk.N.attn_sinks.weight: a sink logit per head */
    ARCH_OUT_BIAS = 1 << 11,    /* attn_output.bias */
    ARCH_EXPERT_BIAS = 1 << 12, /* biases on the router and on every expert's products */
    ARCH_GLU_CLAMPED = 1 << 13, /* the experts' GLU is swiglu_oai (model.h glu_clamped) */
    /* the FFN's input norm is stored as post_attention_norm.weight (gpt-oss:
     * HF's post_attention_layernorm is the pre-FFN norm), not ffn_norm */
    ARCH_FFN_NORM_POST_ATTN = 1 << 14,
};

struct arch_info {
    const char *name;  /* general.architecture and the key prefix */
    unsigned features; /* enum arch_feature bits */
    /* Defaults for keys a file may leave out. */
    double norm_eps;      /* attention.layer_norm_rms_epsilon */
    double rope_base;     /* rope.freq_base */
    double rope_base_swa; /* rope.freq_base_swa (ARCH_SWA; HF rope_local_base_freq);
                             0: the global layers' base */
    /* ARCH_SWA: of every swa_period layers the last is global, the others
     * local (llama.cpp's set_swa_pattern: gemma3 6, gpt-oss 2, so gpt-oss's
     * even layers are windowed). Not stored in files (llama.cpp hard-codes
     * it too). */
    int swa_period;
    /* ARCH_SWA: local layers use no RoPE scaling whatever the file says
     * (gemma3); else they scale as the global ones. */
    bool swa_rope_unscaled;
    /* ARCH_MOE: the router's gating when the file has no
     * {arch}.expert_gating_func (or 0) */
    enum model_gating gating;
    /* ARCH_GLU_CLAMPED: swiglu_oai's constants (llama.cpp hard-codes them
     * in its graph, and gpt-oss files carry no key for them) */
    double glu_alpha, glu_limit;
    /* Quirks not in the file, applied after the flags, or NULL. */
    void (*fixup)(struct model_hparams *hp);
};

/* The row of A; NULL when A is not an architecture. */
const struct arch_info *arch_info(enum model_arch a);

/* Fills the hyperparameters that follow from the architecture alone
 * (rope_neox, gelu_ffn, embd_scale, attn_scale, the router's defaults:
 * expert_gating, expert_weights_norm, expert_weights_scale 1; then the
 * row's fixup). A file's router keys are read after it (model.c). HP must
 * already hold arch, n_embd, n_head, n_layer and head_dim. */
void arch_set_hparams(struct model_hparams *hp);
/* True when layer IL of a model with HP is a sliding-window (local) layer. */
bool arch_layer_swa(const struct model_hparams *hp, int il);

/* ---- per-layer tensors --------------------------------------------------- */

/* A tensor dimension in terms of the hyperparameters. */
enum arch_dim {
    ARCH_DIM_NONE, /* as ne1: the tensor is a vector */
    ARCH_DIM_EMBD, /* n_embd */
    ARCH_DIM_Q,    /* n_head * head_dim */
    ARCH_DIM_KV,   /* n_head_kv * head_dim */
    ARCH_DIM_FF,   /* n_ff */
    ARCH_DIM_HEAD, /* head_dim */
    ARCH_DIM_HEAD_COUNT, /* n_head */
    ARCH_DIM_EXPERT,   /* n_expert */
    ARCH_DIM_FF_EXP,   /* n_ff_exp */
    ARCH_DIM_FF_SHEXP, /* n_ff_shexp */
};

/* ARCH_VEC: a learned vector that is neither a norm nor a bias (the shared
 * expert's gate). */
enum arch_kind { ARCH_WEIGHT, ARCH_NORM, ARCH_BIAS, ARCH_VEC };

/* Whether an architecture reads a tensor. */
enum arch_need {
    ARCH_UNUSED,   /* not looked up */
    ARCH_OPTIONAL, /* used when the file has it */
    ARCH_REQUIRED, /* a file without it is refused */
};

/* One tensor of a layer: blk.N.NAME, stored in the struct model_tensor at
 * OFFSET of struct model_layer. */
struct arch_tensor {
    const char *name;
    size_t offset;
    enum arch_dim ne0, ne1;
    enum arch_kind kind;
    /* 0: every architecture needs it. Else architectures with this feature
     * need it, and the others do not read it, or (OPTIONAL_ELSE) use it
     * when present. */
    unsigned feature;
    bool optional_else;
    /* Architectures with any of these features do not read it (the dense
     * FFN of a mixture of experts). */
    unsigned without;
    /* A 3-D tensor of n_expert stacked (NE0, NE1) matrices (model.h). */
    bool experts;
    /* One row per expert (an expert bias, NE1 = ARCH_DIM_EXPERT): a decode
     * step reads only the routed experts' rows. */
    bool expert_rows;
    /* llama.cpp's quantiser leaves it in its float type (the router), so
     * synthetic models keep it F32 too. */
    bool unquantised;
};

/* The layer tensors of every architecture, in llama.cpp's GGUF order. */
int arch_n_layer_tensors(void);
const struct arch_tensor *arch_layer_tensor(int i);
enum arch_need arch_tensor_need(const struct arch_info *a, const struct arch_tensor *t);
/* The size DIM stands for in HP; 0 for ARCH_DIM_NONE. */
int64_t arch_dim_size(const struct model_hparams *hp, enum arch_dim dim);
/* Weight bytes a decode step reads from M (tensors and hp set): all of
 * them, but one row of the embedding table unless it is the LM head too,
 * and of every routed-expert tensor only n_expert_used of n_expert
 * matrices (or bias rows), the ones the router picks (so the roofline
 * counts what is read, not what is stored). */
uint64_t arch_bytes_per_token(const struct model *m);
/* The tensor T describes in layer L. */
static inline struct model_tensor *arch_tensor_of(struct model_layer *l, const struct arch_tensor *t)
{
    return (struct model_tensor *)((char *)l + t->offset);
}

#endif
