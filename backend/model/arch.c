/* arch.c - the architecture table and the per-layer tensor table (see
 * arch.h). A new dense architecture is a row in k_archs, its name in
 * model_arch_list, and a fixup function if the file leaves something out.
 */
#include "arch.h"

#include <math.h>

/* Gemma 3 27B (62 layers) was trained with query_pre_attn_scalar =
 * n_embd / n_head instead of the head size; the value is not in the file, so
 * it is recognised by depth as llama.cpp does. */
static void gemma3_fixup(struct model_hparams *hp)
{
    if (hp->n_layer == 62)
        hp->attn_scale = 1.0f / sqrtf((float)hp->n_embd / (float)hp->n_head);
}

static const struct arch_info k_archs[] = {
    [MODEL_ARCH_LLAMA] = {.name = "llama", .features = 0, .norm_eps = 1e-5, .rope_base = 10000.0},
    [MODEL_ARCH_QWEN2] = {.name = "qwen2",
                          .features = ARCH_QKV_BIAS | ARCH_ROPE_NEOX,
                          .norm_eps = 1e-5,
                          .rope_base = 10000.0},
    [MODEL_ARCH_QWEN3] = {.name = "qwen3",
                          .features = ARCH_QK_NORM | ARCH_ROPE_NEOX,
                          .norm_eps = 1e-5,
                          .rope_base = 10000.0},
    /* Five sliding-window layers, then a global one; local layers use RoPE
     * base 10000 whatever the file says for the global ones. */
    [MODEL_ARCH_GEMMA3] = {.name = "gemma3",
                           .features = ARCH_QK_NORM | ARCH_POST_NORMS | ARCH_GEGLU | ARCH_EMBD_SCALE |
                                       ARCH_ROPE_NEOX | ARCH_SWA,
                           .norm_eps = 1e-6,
                           .rope_base = 10000.0,
                           .rope_base_swa = 10000.0,
                           .swa_period = 6,
                           .swa_rope_unscaled = true,
                           .fixup = gemma3_fixup},
    /* Qwen3-30B-A3B and friends: qwen3's attention, routed experts whose
     * top-k weights are renormalised (llama.cpp hard-codes this for the
     * architecture; HF norm_topk_prob). */
    [MODEL_ARCH_QWEN3MOE] = {.name = "qwen3moe",
                             .features = ARCH_QK_NORM | ARCH_ROPE_NEOX | ARCH_MOE |
                                         ARCH_EXPERT_WEIGHTS_NORM,
                             .norm_eps = 1e-6,
                             .rope_base = 10000.0,
                             .gating = MODEL_GATING_SOFTMAX},
    /* Qwen1.5-MoE / Qwen2-57B-A14B: qwen2's attention, softmax weights used
     * as they are, and a shared expert behind a sigmoid gate. */
    [MODEL_ARCH_QWEN2MOE] = {.name = "qwen2moe",
                             .features = ARCH_QKV_BIAS | ARCH_ROPE_NEOX | ARCH_MOE |
                                         ARCH_SHARED_EXPERT,
                             .norm_eps = 1e-6,
                             .rope_base = 10000.0,
                             .gating = MODEL_GATING_SOFTMAX},
    /* gpt-oss-20b/120b as llama.cpp writes them: every attention product
     * and every expert biased, a sink logit per head, even layers windowed
     * (same RoPE base and YaRN scaling as the others), the router's top-k
     * softmaxed among themselves, and the clamped SwiGLU. */
    [MODEL_ARCH_GPT_OSS] = {.name = "gpt-oss",
                            .features = ARCH_QKV_BIAS | ARCH_ROPE_NEOX | ARCH_SWA | ARCH_MOE |
                                        ARCH_ATTN_SINKS | ARCH_OUT_BIAS | ARCH_EXPERT_BIAS |
                                        ARCH_GLU_CLAMPED | ARCH_FFN_NORM_POST_ATTN,
                            .norm_eps = 1e-5,
                            .rope_base = 150000.0,
                            .swa_period = 2,
                            .gating = MODEL_GATING_SOFTMAX_TOPK,
                            .glu_alpha = 1.702,
                            .glu_limit = 7.0},
};
#define N_ARCHS ((int)(sizeof k_archs / sizeof k_archs[0]))
_Static_assert(sizeof k_archs / sizeof k_archs[0] == MODEL_ARCH_COUNT, "one row per model_arch");

const struct arch_info *arch_info(enum model_arch a)
{
    return (unsigned)a < (unsigned)N_ARCHS ? &k_archs[a] : NULL;
}

const char *model_arch_name(enum model_arch a)
{
    const struct arch_info *ai = arch_info(a);
    return ai ? ai->name : "unknown";
}

/* The row names in table order (test_synth checks that they agree). */
const char *model_arch_list(void)
{
    return "llama, qwen2, qwen3, gemma3, qwen3moe, qwen2moe, gpt-oss";
}

void arch_set_hparams(struct model_hparams *hp)
{
    const struct arch_info *ai = arch_info(hp->arch);
    unsigned f = ai->features;
    hp->rope_neox = (f & ARCH_ROPE_NEOX) != 0;
    hp->gelu_ffn = (f & ARCH_GEGLU) != 0;
    hp->embd_scale = f & ARCH_EMBD_SCALE ? sqrtf((float)hp->n_embd) : 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->attn_sinks = (f & ARCH_ATTN_SINKS) != 0;
    hp->expert_gating = ai->gating;
    hp->expert_weights_norm = (f & ARCH_EXPERT_WEIGHTS_NORM) != 0;
    hp->expert_weights_scale = 1.0f;
    hp->glu_clamped = (f & ARCH_GLU_CLAMPED) != 0;
    hp->glu_alpha = (float)ai->glu_alpha;
    hp->glu_limit = (float)ai->glu_limit;
    if (ai->fixup)
        ai->fixup(hp);
}

bool arch_layer_swa(const struct model_hparams *hp, int il)
{
    int p = arch_info(hp->arch)->swa_period;
    return p > 0 && hp->swa_window > 0 && il % p < p - 1;
}

/* ---- per-layer tensors ----------------------------------------------------- */

#define LT(nm, field, d0, d1, k)                                                                 \
    .name = nm, .offset = offsetof(struct model_layer, field), .ne0 = d0, .ne1 = d1, .kind = k

static const struct arch_tensor k_layer_tensors[] = {
    {LT("attn_norm.weight", attn_norm, ARCH_DIM_EMBD, ARCH_DIM_NONE, ARCH_NORM)},
    {LT("attn_q.weight", wq, ARCH_DIM_EMBD, ARCH_DIM_Q, ARCH_WEIGHT)},
    {LT("attn_k.weight", wk, ARCH_DIM_EMBD, ARCH_DIM_KV, ARCH_WEIGHT)},
    {LT("attn_v.weight", wv, ARCH_DIM_EMBD, ARCH_DIM_KV, ARCH_WEIGHT)},
    /* qwen2 files always carry the biases; other llama-family files
     * sometimes do too, and then they must be used. */
    {LT("attn_q.bias", bq, ARCH_DIM_Q, ARCH_DIM_NONE, ARCH_BIAS), .feature = ARCH_QKV_BIAS,
     .optional_else = true},
    {LT("attn_k.bias", bk, ARCH_DIM_KV, ARCH_DIM_NONE, ARCH_BIAS), .feature = ARCH_QKV_BIAS,
     .optional_else = true},
    {LT("attn_v.bias", bv, ARCH_DIM_KV, ARCH_DIM_NONE, ARCH_BIAS), .feature = ARCH_QKV_BIAS,
     .optional_else = true},
    {LT("attn_q_norm.weight", q_norm, ARCH_DIM_HEAD, ARCH_DIM_NONE, ARCH_NORM), .feature = ARCH_QK_NORM},
    {LT("attn_k_norm.weight", k_norm, ARCH_DIM_HEAD, ARCH_DIM_NONE, ARCH_NORM), .feature = ARCH_QK_NORM},
    {LT("attn_output.weight", wo, ARCH_DIM_Q, ARCH_DIM_EMBD, ARCH_WEIGHT)},
    {LT("attn_output.bias", bo, ARCH_DIM_EMBD, ARCH_DIM_NONE, ARCH_BIAS), .feature = ARCH_OUT_BIAS},
    {LT("attn_sinks.weight", attn_sinks, ARCH_DIM_HEAD_COUNT, ARCH_DIM_NONE, ARCH_VEC),
     .feature = ARCH_ATTN_SINKS},
    {LT("post_attention_norm.weight", post_attn_norm, ARCH_DIM_EMBD, ARCH_DIM_NONE, ARCH_NORM),
     .feature = ARCH_POST_NORMS},
    {LT("ffn_norm.weight", ffn_norm, ARCH_DIM_EMBD, ARCH_DIM_NONE, ARCH_NORM),
     .without = ARCH_FFN_NORM_POST_ATTN},
    {LT("post_attention_norm.weight", ffn_norm, ARCH_DIM_EMBD, ARCH_DIM_NONE, ARCH_NORM),
     .feature = ARCH_FFN_NORM_POST_ATTN},
    {LT("ffn_gate.weight", ffn_gate, ARCH_DIM_EMBD, ARCH_DIM_FF, ARCH_WEIGHT), .without = ARCH_MOE},
    {LT("ffn_up.weight", ffn_up, ARCH_DIM_EMBD, ARCH_DIM_FF, ARCH_WEIGHT), .without = ARCH_MOE},
    {LT("ffn_down.weight", ffn_down, ARCH_DIM_FF, ARCH_DIM_EMBD, ARCH_WEIGHT), .without = ARCH_MOE},
    /* Mixture of experts, in llama.cpp's order: router, experts, then the
     * shared expert. */
    {LT("ffn_gate_inp.weight", ffn_gate_inp, ARCH_DIM_EMBD, ARCH_DIM_EXPERT, ARCH_WEIGHT),
     .feature = ARCH_MOE, .unquantised = true},
    {LT("ffn_gate_inp.bias", ffn_gate_inp_b, ARCH_DIM_EXPERT, ARCH_DIM_NONE, ARCH_BIAS),
     .feature = ARCH_EXPERT_BIAS},
    {LT("ffn_gate_exps.weight", ffn_gate_exps, ARCH_DIM_EMBD, ARCH_DIM_FF_EXP, ARCH_WEIGHT),
     .feature = ARCH_MOE, .experts = true},
    {LT("ffn_down_exps.weight", ffn_down_exps, ARCH_DIM_FF_EXP, ARCH_DIM_EMBD, ARCH_WEIGHT),
     .feature = ARCH_MOE, .experts = true},
    {LT("ffn_up_exps.weight", ffn_up_exps, ARCH_DIM_EMBD, ARCH_DIM_FF_EXP, ARCH_WEIGHT),
     .feature = ARCH_MOE, .experts = true},
    {LT("ffn_gate_exps.bias", ffn_gate_exps_b, ARCH_DIM_FF_EXP, ARCH_DIM_EXPERT, ARCH_BIAS),
     .feature = ARCH_EXPERT_BIAS, .expert_rows = true},
    {LT("ffn_down_exps.bias", ffn_down_exps_b, ARCH_DIM_EMBD, ARCH_DIM_EXPERT, ARCH_BIAS),
     .feature = ARCH_EXPERT_BIAS, .expert_rows = true},
    {LT("ffn_up_exps.bias", ffn_up_exps_b, ARCH_DIM_FF_EXP, ARCH_DIM_EXPERT, ARCH_BIAS),
     .feature = ARCH_EXPERT_BIAS, .expert_rows = true},
    {LT("ffn_gate_inp_shexp.weight", ffn_gate_inp_shexp, ARCH_DIM_EMBD, ARCH_DIM_NONE, ARCH_VEC),
     .feature = ARCH_SHARED_EXPERT},
    {LT("ffn_gate_shexp.weight", ffn_gate_shexp, ARCH_DIM_EMBD, ARCH_DIM_FF_SHEXP, ARCH_WEIGHT),
     .feature = ARCH_SHARED_EXPERT},
    {LT("ffn_down_shexp.weight", ffn_down_shexp, ARCH_DIM_FF_SHEXP, ARCH_DIM_EMBD, ARCH_WEIGHT),
     .feature = ARCH_SHARED_EXPERT},
    {LT("ffn_up_shexp.weight", ffn_up_shexp, ARCH_DIM_EMBD, ARCH_DIM_FF_SHEXP, ARCH_WEIGHT),
     .feature = ARCH_SHARED_EXPERT},
    {LT("post_ffw_norm.weight", post_ffw_norm, ARCH_DIM_EMBD, ARCH_DIM_NONE, ARCH_NORM),
     .feature = ARCH_POST_NORMS},
};
#undef LT
#define N_LAYER_TENSORS ((int)(sizeof k_layer_tensors / sizeof k_layer_tensors[0]))

int arch_n_layer_tensors(void) { return N_LAYER_TENSORS; }

const struct arch_tensor *arch_layer_tensor(int i)
{
    return i >= 0 && i < N_LAYER_TENSORS ? &k_layer_tensors[i] : NULL;
}

enum arch_need arch_tensor_need(const struct arch_info *a, const struct arch_tensor *t)
{
    if (a->features & t->without)
        return ARCH_UNUSED;
    if (!t->feature || (a->features & t->feature))
        return ARCH_REQUIRED;
    return t->optional_else ? ARCH_OPTIONAL : ARCH_UNUSED;
}

int64_t arch_dim_size(const struct model_hparams *hp, enum arch_dim dim)
{
    switch (dim) {
    case ARCH_DIM_EMBD: return hp->n_embd;
    case ARCH_DIM_Q: return (int64_t)hp->n_head * hp->head_dim;
    case ARCH_DIM_KV: return (int64_t)hp->n_head_kv * hp->head_dim;
    case ARCH_DIM_FF: return hp->n_ff;
    case ARCH_DIM_HEAD: return hp->head_dim;
    case ARCH_DIM_HEAD_COUNT: return hp->n_head;
    case ARCH_DIM_EXPERT: return hp->n_expert;
    case ARCH_DIM_FF_EXP: return hp->n_ff_exp;
    case ARCH_DIM_FF_SHEXP: return hp->n_ff_shexp;
    case ARCH_DIM_NONE: break;
    }
    return 0;
}

uint64_t arch_bytes_per_token(const struct model *m)
{
    uint64_t b = m->weight_bytes;
    if (m->output.data != m->tok_embd.data)
        b -= m->tok_embd.nbytes - quant_row_size(m->tok_embd.type, m->tok_embd.ne0);
    const struct model_hparams *hp = &m->hp;
    if (hp->n_expert <= 0)
        return b;
    for (int il = 0; il < hp->n_layer; il++)
        for (int i = 0; i < N_LAYER_TENSORS; i++) {
            const struct arch_tensor *at = &k_layer_tensors[i];
            if (!at->experts && !at->expert_rows)
                continue;
            const struct model_tensor *t =
                (const struct model_tensor *)((const char *)&m->layers[il] + at->offset);
            if (!t->data)
                continue;
            /* the unread experts, in whole matrices (or rows) */
            uint64_t per = t->nbytes / (uint64_t)hp->n_expert;
            b -= per * (uint64_t)(hp->n_expert - hp->n_expert_used);
        }
    return b;
}
