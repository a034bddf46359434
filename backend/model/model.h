/* model.h - a transformer described by a GGUF file: architecture, hyper-
 * parameters and the weight tensors of every layer, validated at load.
 *
 * Supported architectures: llama (Llama 2/3.x, Mistral, TinyLlama, SmolLM2),
 * qwen2, qwen3, gemma3, and the mixture-of-experts qwen3moe, qwen2moe and
 * gpt-oss.
 * Weights stay in the file's mapping (host memory,
 * borrowed from the gguf reader the model owns); backends read or upload them.
 *
 * Thread safety: immutable after model_load.
 */
#ifndef KVCHAT_MODEL_H
#define KVCHAT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant.h"

struct gguf;

/* One row each in the architecture table (arch.c). */
enum model_arch {
    MODEL_ARCH_LLAMA,
    MODEL_ARCH_QWEN2,
    MODEL_ARCH_QWEN3,
    MODEL_ARCH_GEMMA3,
    MODEL_ARCH_QWEN3MOE,
    MODEL_ARCH_QWEN2MOE,
    MODEL_ARCH_GPT_OSS,
    MODEL_ARCH_COUNT
};

const char *model_arch_name(enum model_arch a);
/* "llama, qwen2, qwen3, gemma3, ...": for error messages */
const char *model_arch_list(void);

/* How the router's logits become the chosen experts' weights, llama.cpp's
 * expert_gating_func (model.c maps the file's numbers). Whatever the
 * gating, the K chosen experts are the K largest logits (ties to the lower
 * index): softmax and sigmoid are monotone, so that is the top-k of the
 * probabilities too. */
enum model_gating {
    /* softmax over all experts, the chosen ones' probabilities as weights
     * (qwen2moe, qwen3moe; llama.cpp's SOFTMAX, 1) */
    MODEL_GATING_SOFTMAX,
    /* the chosen logits, then a softmax over those K only (gpt-oss;
     * llama.cpp's SOFTMAX_WEIGHT, 3) */
    MODEL_GATING_SOFTMAX_TOPK,
    /* sigmoid(logit) of each chosen expert on its own (DeepSeek-V3 style
     * routers; llama.cpp's SIGMOID, 2) */
    MODEL_GATING_SIGMOID,
};

struct model_hparams {
    enum model_arch arch;
    int32_t n_vocab;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_ff;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim; /* K and V head size */
    int32_t n_rot;    /* rotated dims per head */
    int32_t n_ctx_train;
    float norm_eps;
    float rope_base;       /* global layers */
    float rope_base_local; /* sliding-window layers (gemma3: 10000) */
    float rope_freq_scale; /* 1/factor for linear or YaRN scaling, else 1 */
    float rope_scale_local; /* the same for sliding-window layers (gemma3's ignore scaling: 1) */
    bool rope_neox;        /* pairs (i, i+n_rot/2) instead of (2i, 2i+1) */
    /* YaRN (rope.scaling.type = yarn): pair i's angle mixes the scaled
     * (interpolated) and the plain (extrapolated) one by a ramp over the
     * pairs between the correction dims of beta_fast and beta_slow
     * rotations in n_ctx_orig tokens, and cos and sin are multiplied by
     * attn_factor * (1 + 0.1 ln(1/freq_scale)) (ggml's rope_yarn). */
    bool rope_yarn;
    int32_t yarn_n_ctx_orig;  /* rope.scaling.original_context_length */
    float yarn_beta_fast;     /* default 32 */
    float yarn_beta_slow;     /* default 1 */
    float yarn_ext_factor;    /* ramp weight, default 1 */
    float yarn_attn_factor;   /* rope.scaling.attn_factor, default 1 */
    int32_t swa_window;    /* tokens; 0 = none */
    /* Learned attention sinks (layers' attn_sinks): one logit per head that
     * joins the softmax's denominator, exp(sink - max), and carries no
     * value, so a head can attend to "nothing". */
    bool attn_sinks;
    float attn_scale;      /* multiplies q.k */
    float embd_scale;      /* multiplies token embeddings (gemma3: sqrt(n_embd)) */
    bool gelu_ffn;         /* GeGLU (gemma3) instead of SwiGLU */
    /* Mixture of experts (n_expert > 0): the dense FFN is replaced by a
     * router over n_expert SwiGLU experts, of which each token runs the
     * n_expert_used with the largest router logits, their outputs summed
     * weighted by expert_gating's weights (renormalised to sum 1 when
     * expert_weights_norm, then times expert_weights_scale), plus, when
     * n_ff_shexp > 0, a shared expert gated by
     * sigmoid(ffn_gate_inp_shexp . x). n_ff is then unused. The three
     * router fields are the file's {arch}.expert_gating_func,
     * expert_weights_norm and expert_weights_scale, defaulting to the
     * architecture's. */
    int32_t n_expert;        /* 0: a dense model */
    int32_t n_expert_used;   /* top-k, 1..n_expert */
    int32_t n_ff_exp;        /* hidden size of one expert */
    int32_t n_ff_shexp;      /* hidden size of the shared expert; 0 = none */
    enum model_gating expert_gating;
    bool expert_weights_norm;   /* top-k weights divided by their sum (qwen3moe) */
    float expert_weights_scale; /* multiplies the weights after that; 1 = none */
    /* The experts' GLU clamped (gpt-oss's swiglu_oai): g = min(gate, limit),
     * u = clamp(up, -limit, limit), out = g * sigmoid(alpha * g) * (u + 1).
     * Else the plain SwiGLU. */
    bool glu_clamped;
    float glu_alpha; /* 1.702 */
    float glu_limit; /* 7.0 */
};

/* A weight: a row-major matrix of NE1 rows of NE0 elements (a vector has
 * NE1 = 1), in the file's type. NULL data means the tensor is absent. A 3-D
 * expert tensor (GGUF ne = [ne0, rows, n_expert]) is held as its experts'
 * matrices stacked: NE1 = rows * n_expert, expert e's rows starting at row
 * e * rows, so everything that walks rows sees all of its bytes. */
struct model_tensor {
    enum ggml_type type;
    int64_t ne0;
    int64_t ne1;
    const void *data; /* borrowed: the file mapping */
    size_t nbytes;
};

struct model_layer {
    struct model_tensor attn_norm;   /* (n_embd) F32 */
    struct model_tensor wq, wk, wv;  /* (n_embd, n_head*head_dim), (n_embd, n_head_kv*head_dim) */
    struct model_tensor bq, bk, bv;  /* qwen2/gpt-oss biases, else absent */
    struct model_tensor q_norm;      /* qwen3/gemma3 per-head norm (head_dim), else absent */
    struct model_tensor k_norm;
    struct model_tensor wo;          /* (n_head*head_dim, n_embd) */
    struct model_tensor bo;          /* (n_embd) gpt-oss, else absent */
    struct model_tensor attn_sinks;  /* (n_head) gpt-oss sink logits, else absent */
    struct model_tensor post_attn_norm; /* gemma3 */
    struct model_tensor ffn_norm;    /* (n_embd); gpt-oss files call it post_attention_norm */
    struct model_tensor ffn_gate;    /* (n_embd, n_ff) */
    struct model_tensor ffn_up;      /* (n_embd, n_ff) */
    struct model_tensor ffn_down;    /* (n_ff, n_embd) */
    struct model_tensor post_ffw_norm; /* gemma3 */
    /* Mixture of experts (hp.n_expert > 0; the three dense ffn_* are then
     * absent). */
    struct model_tensor ffn_gate_inp;  /* router (n_embd, n_expert) */
    struct model_tensor ffn_gate_exps; /* (n_embd, n_ff_exp) x n_expert, stacked */
    struct model_tensor ffn_up_exps;   /* (n_embd, n_ff_exp) x n_expert */
    struct model_tensor ffn_down_exps; /* (n_ff_exp, n_embd) x n_expert */
    /* gpt-oss biases: the router's (n_expert), and per expert one row of
     * (n_ff_exp) or (n_embd): expert e's bias is row e */
    struct model_tensor ffn_gate_inp_b;  /* (n_expert) */
    struct model_tensor ffn_gate_exps_b; /* (n_ff_exp, n_expert) */
    struct model_tensor ffn_up_exps_b;   /* (n_ff_exp, n_expert) */
    struct model_tensor ffn_down_exps_b; /* (n_embd, n_expert) */
    struct model_tensor ffn_gate_inp_shexp; /* shared expert's gate (n_embd), qwen2moe */
    struct model_tensor ffn_gate_shexp;     /* (n_embd, n_ff_shexp) */
    struct model_tensor ffn_up_shexp;       /* (n_embd, n_ff_shexp) */
    struct model_tensor ffn_down_shexp;     /* (n_ff_shexp, n_embd) */
    bool swa;                        /* sliding-window (local) layer */
    float rope_base;                 /* base used by this layer */
};

struct model {
    struct model_hparams hp;
    struct gguf *file; /* owned */
    char name[128];    /* general.name, else the file's base name */
    struct model_tensor tok_embd;    /* (n_embd, n_vocab) */
    struct model_tensor output_norm; /* (n_embd) */
    struct model_tensor output;      /* (n_embd, n_vocab); tok_embd when tied */
    struct model_tensor rope_freqs;  /* (n_rot/2) F32 or absent */
    struct model_layer *layers;      /* owned, n_layer */
    uint64_t n_params;
    uint64_t weight_bytes;    /* all weight tensors */
    uint64_t bytes_per_token; /* weights a decode step reads (all but the embedding table,
                                 plus one embedding row; of the routed experts only
                                 n_expert_used of n_expert) */
    void *synth_mem;          /* owned: the anonymous mapping holding a synthetic model's
                                 weights (synth.c; file is NULL then), else NULL */
    size_t synth_mem_bytes;   /* its length */
};

/* Loads and validates PATH. NULL with a one-line message in ERR naming the
 * file and the problem (unknown architecture listing the supported ones, a
 * missing tensor, a shape that does not match, an unsupported type naming the
 * tensor and the type). */
struct model *model_load(const char *path, char *err, size_t errlen);
/* Same, from an already-open reader (ownership of G passes to the model, also
 * on failure). */
struct model *model_from_gguf(struct gguf *g, char *err, size_t errlen);
void model_free(struct model *m); /* NULL is a no-op */

/* RoPE for a layer kind with BASE and frequency SCALE: theta_i = pos *
 * INV[i] for the n_rot/2 pairs, INV[i] = base^(-2i/n_rot) / FF[i] * scale
 * (FF: the file's rope_freqs, or NULL), and with YaRN the scaled and
 * unscaled angles mixed per pair by ggml's ramp (theta stays linear in pos,
 * so one factor per pair holds it), *MSCALE the factor on cos and sin
 * (1 without YaRN). Computed in double and rounded once, so long positions
 * keep their precision and both backends turn by the same angles. */
void model_rope_inv_freq(const struct model_hparams *hp, double base, double scale,
                         const float *ff, float *inv, float *mscale);

/* One token's router (moe.c), the rule kv_moe_route (kernels/moe.cu)
 * follows on the device: SEL gets the K experts with the largest LOGITS
 * (ties to the lower index), W their weights, in the order of llama.cpp's build_moe_ffn (read
 * there: probabilities by the gating -- softmax over all the logits,
 * sigmoid of each, or for SOFTMAX_WEIGHT the logits as they are -- then the
 * top-k of those, then for SOFTMAX_WEIGHT a softmax over the K chosen,
 * then, when asked, division by the chosen weights' sum clamped below at
 * 2^-14, then the scale, which it skips at 0 and 1):
 *   1. the picks on the logits themselves: softmax and sigmoid are
 *      monotone, so these are the top-k of the probabilities, exactly
 *      (float sigmoids saturate to 1 above ~17 and would tie there);
 *   2. GATING's weight per pick: exp(l - max) / sum over all experts, or
 *      1 / (1 + exp(-l)), or exp(l - top) / sum over the K picks; in double,
 *      rounded to float once;
 *   3. NORM: each divided by their (double) sum, at least 2^-14;
 *   4. times SCALE (model.c reads a file's 0 as 1; times 1 is exact). */
void model_moe_select(const float *logits, int n_expert, int k, enum model_gating gating,
                      bool norm, float scale, int32_t *sel, float *w);

#endif
