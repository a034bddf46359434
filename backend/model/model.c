/* model.c - reads a transformer's hyperparameters and weights out of a GGUF
 * file and checks everything the backends will rely on, so that a forward
 * pass never has to: every tensor present with the shape the hyperparameters
 * imply, in a type we compute with, and sizes that are sane. What differs
 * between architectures (keys, defaults, the tensors a layer has, the flags
 * the backends read) comes from the architecture table (arch.h).
 *
 * Used by the engine (and tests) before a backend is created.
 */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arch.h"
#include "gguf.h"

/* Limits past which a file is taken to be corrupt rather than a big model:
 * they are an order of magnitude above any released model of these
 * architectures, and keep every later size computation far from overflow. */
#define MAX_EMBD (1 << 16)
#define MAX_LAYER 1024
#define MAX_HEAD 1024
#define MAX_HEAD_DIM 4096
#define MAX_FF (1 << 20)
#define MAX_VOCAB (1 << 23)
#define MAX_CTX (1 << 24)
/* Released MoE models have up to 256 routed experts (DeepSeek-V3); 1024
 * leaves room and keeps a damaged count from sizing absurd buffers. */
#define MAX_EXPERT 1024
/* Released routers scale their weights by up to 16 (DeepSeek-V2's
 * routed_scaling_factor; 2.5 in DeepSeek-V3 and GLM-4.5). */
#define MAX_EXPERT_SCALE 1000.0

/* Loading context: the file, its name for messages, the error buffer. */
struct loader {
    struct gguf *g;
    const char *fname;
    const char *arch; /* architecture key prefix */
    const struct arch_info *ai; /* its row */
    char *err;
    size_t errlen;
};

static int fail(struct loader *L, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (L->err && L->errlen)
        snprintf(L->err, L->errlen, "%s: %s", L->fname, msg);
    return -1;
}

static void arch_key(const struct loader *L, const char *suffix, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s.%s", L->arch, suffix);
}

/* Reads integer {arch}.SUFFIX into OUT, or DEF when absent (DEF < 0 makes it
 * required). Per-layer arrays are accepted when every element agrees, since
 * the backends assume one value for all layers. */
static int get_hp_int(struct loader *L, const char *suffix, int64_t def, int64_t lo, int64_t hi,
                      int64_t *out)
{
    char key[256];
    arch_key(L, suffix, key, sizeof key);
    enum gguf_type et;
    uint64_t n;
    if (gguf_get_int(L->g, key, out)) {
        /* fall through to the range check */
    } else if (gguf_get_arr(L->g, key, &et, &n)) {
        if (n == 0)
            return fail(L, "%s is an empty array", key);
        int64_t v0;
        if (!gguf_get_arr_int(L->g, key, 0, &v0))
            return fail(L, "%s is not an array of integers", key);
        for (uint64_t i = 1; i < n; i++) {
            int64_t v;
            if (!gguf_get_arr_int(L->g, key, i, &v))
                return fail(L, "%s is not an array of integers", key);
            if (v != v0)
                return fail(L, "%s differs between layers (%lld at 0, %lld at %llu): "
                               "non-uniform layers are not supported",
                            key, (long long)v0, (long long)v, (unsigned long long)i);
        }
        *out = v0;
    } else if (gguf_find_key(L->g, key) >= 0) {
        return fail(L, "%s is not an integer", key);
    } else if (def < 0) {
        return fail(L, "missing required key %s", key);
    } else {
        *out = def;
        return 0;
    }
    if (*out < lo || *out > hi)
        return fail(L, "%s = %lld is out of range (%lld..%lld)", key, (long long)*out,
                    (long long)lo, (long long)hi);
    return 0;
}

/* Reads float {arch}.SUFFIX, DEF when absent; must be finite and in (lo, hi]. */
static int get_hp_float(struct loader *L, const char *suffix, double def, double lo, double hi,
                        float *out)
{
    char key[256];
    arch_key(L, suffix, key, sizeof key);
    double v;
    if (!gguf_get_float(L->g, key, &v)) {
        int64_t iv;
        if (gguf_get_int(L->g, key, &iv))
            v = (double)iv;
        else if (gguf_find_key(L->g, key) >= 0)
            return fail(L, "%s is not a number", key);
        else
            v = def;
    }
    if (!isfinite(v) || v <= lo || v > hi)
        return fail(L, "%s = %g is out of range", key, v);
    *out = (float)v;
    return 0;
}

static void shape_str(const struct gguf_tensor *t, char *buf, size_t cap)
{
    int k = snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && k > 0 && (size_t)k < cap; d++)
        k += snprintf(buf + k, cap - (size_t)k, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    if (k > 0 && (size_t)k < cap)
        snprintf(buf + k, cap - (size_t)k, "]");
}

/* Looks up NAME and checks it is a (NE0) vector (NE1 == 0), an (NE0, NE1)
 * matrix (NE2 == 0) or NE2 stacked (NE0, NE1) matrices (experts) in a
 * supported type. Absent and not REQUIRED leaves OUT empty. */
static int get_tensor3(struct loader *L, const char *name, int64_t ne0, int64_t ne1, int64_t ne2,
                       bool required, struct model_tensor *out)
{
    memset(out, 0, sizeof *out);
    const struct gguf_tensor *t = gguf_find_tensor(L->g, name);
    if (!t) {
        if (required)
            return fail(L, "missing tensor %s", name);
        return 0;
    }
    bool ok = t->ne[0] == ne0 && t->ne[3] == 1 &&
              (ne1 == 0 ? t->ne[1] == 1 : t->ne[1] == ne1) &&
              (ne2 == 0 ? t->ne[2] == 1 : t->ne[2] == ne2);
    if (!ok) {
        char found[96];
        shape_str(t, found, sizeof found);
        if (ne1 == 0)
            return fail(L, "tensor %s has shape %s, expected [%lld]", name, found,
                        (long long)ne0);
        if (ne2 == 0)
            return fail(L, "tensor %s has shape %s, expected [%lld, %lld]", name, found,
                        (long long)ne0, (long long)ne1);
        return fail(L, "tensor %s has shape %s, expected [%lld, %lld, %lld]", name, found,
                    (long long)ne0, (long long)ne1, (long long)ne2);
    }
    if (ne2 > 0)
        ne1 *= ne2; /* held stacked (model.h) */
    if (!quant_type_supported(t->type))
        return fail(L, "tensor %s has type %s (id %d), which kvchat cannot compute with", name,
                    quant_type_name(t->type), (int)t->type);
    int64_t bs = quant_block_size(t->type);
    if (bs <= 0 || t->ne[0] % bs != 0)
        return fail(L, "tensor %s: row of %lld elements is not a whole number of %s blocks",
                    name, (long long)t->ne[0], quant_type_name(t->type));
    int64_t rows = ne1 == 0 ? 1 : ne1;
    size_t want = quant_row_size(t->type, t->ne[0]) * (size_t)rows;
    if (t->nbytes < want || !t->data)
        return fail(L, "tensor %s holds %llu bytes, expected %zu", name,
                    (unsigned long long)t->nbytes, want);
    out->type = t->type;
    out->ne0 = t->ne[0];
    out->ne1 = rows;
    out->data = t->data;
    out->nbytes = want;
    return 0;
}

static int get_tensor(struct loader *L, const char *name, int64_t ne0, int64_t ne1, bool required,
                      struct model_tensor *out)
{
    return get_tensor3(L, name, ne0, ne1, 0, required, out);
}

/* A vector (a norm's weights, a bias, rope frequencies) in a float type
 * must hold finite values: one NaN there makes every logit NaN, so a damaged
 * file would otherwise load and answer with nothing. Vectors are a few
 * thousand floats per layer, so reading them all costs nothing at load;
 * matrices are left to the engine's check of the logits. */
static int check_finite_vector(struct loader *L, const char *name, const struct model_tensor *t)
{
    if (!t->data ||
        (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16))
        return 0;
    int64_t n = t->ne0 * t->ne1; /* an expert bias has a row per expert */
    float *v = malloc(sizeof *v * (size_t)n);
    if (!v)
        return fail(L, "out of memory checking tensor %s", name);
    quant_dequantize_row(t->type, t->data, v, n);
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (!isfinite(v[i]))
            bad = i;
    float x = bad >= 0 ? v[bad] : 0.0f;
    free(v);
    if (bad >= 0)
        return fail(L, "tensor %s holds a non-finite value (%g at element %lld): the file is "
                       "damaged (re-download it)",
                    name, (double)x, (long long)bad);
    return 0;
}

static int get_layer_tensor(struct loader *L, int il, const char *what, int64_t ne0, int64_t ne1,
                            int64_t ne2, bool required, struct model_tensor *out)
{
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", il, what);
    return get_tensor3(L, name, ne0, ne1, ne2, required, out);
}

static int parse_arch(struct loader *L, enum model_arch *out)
{
    struct gguf_str s;
    if (!gguf_get_str(L->g, "general.architecture", &s))
        return fail(L, "missing general.architecture");
    for (int i = 0; i < MODEL_ARCH_COUNT; i++) {
        const struct arch_info *ai = arch_info((enum model_arch)i);
        if (gguf_str_eq(s, ai->name)) {
            *out = (enum model_arch)i;
            L->arch = ai->name;
            L->ai = ai;
            return 0;
        }
    }
    char name[64];
    gguf_str_copy(s, name, sizeof name);
    /* Keep the message printable whatever bytes the file holds. */
    for (char *c = name; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
            *c = '?';
    return fail(L, "unknown architecture '%s' (supported: %s)", name, model_arch_list());
}

/* The mixture-of-experts keys. Absent expert sizes default as in
 * llama.cpp: an expert n_ff / n_expert_used wide, the shared one n_ff. */
static int parse_experts(struct loader *L, struct model_hparams *hp)
{
    int64_t v;
    if (get_hp_int(L, "expert_count", -1, 1, MAX_EXPERT, &v))
        return -1;
    hp->n_expert = (int32_t)v;
    if (get_hp_int(L, "expert_used_count", -1, 1, hp->n_expert, &v))
        return -1;
    hp->n_expert_used = (int32_t)v;
    /* without feed_forward_length there is nothing to default from */
    int64_t def = hp->n_ff / hp->n_expert_used > 0 ? hp->n_ff / hp->n_expert_used : -1;
    if (get_hp_int(L, "expert_feed_forward_length", def, 1, MAX_FF, &v))
        return -1;
    hp->n_ff_exp = (int32_t)v;
    hp->n_ff_shexp = 0;
    if (L->ai->features & ARCH_SHARED_EXPERT) {
        if (get_hp_int(L, "expert_shared_feed_forward_length", hp->n_ff > 0 ? hp->n_ff : -1, 1,
                       MAX_FF, &v))
            return -1;
        hp->n_ff_shexp = (int32_t)v;
    }
    return 0;
}

/* {arch}.expert_gating_func as llama.cpp numbers it (0 or absent: the
 * architecture's default). llama.cpp's 4 (sqrt of softplus) has no row:
 * kvchat does not compute it. */
static const struct {
    int64_t value;
    enum model_gating gating;
    const char *name;
} k_gatings[] = {
    {.value = 1, .gating = MODEL_GATING_SOFTMAX, .name = "softmax"},
    {.value = 2, .gating = MODEL_GATING_SIGMOID, .name = "sigmoid"},
    {.value = 3, .gating = MODEL_GATING_SOFTMAX_TOPK, .name = "softmax over the chosen experts"},
};
#define N_GATINGS ((int)(sizeof k_gatings / sizeof k_gatings[0]))

static const char *const k_router_keys[] = {"expert_gating_func", "expert_weights_norm",
                                            "expert_weights_scale"};

/* The router's keys over the defaults arch_set_hparams put in HP (the row's
 * gating and renormalisation, scale 1). model_moe_select (moe.c) says
 * what they do and in which order (llama.cpp's build_moe_ffn). On a dense
 * architecture the keys describe a router it does not have, so the file is
 * mislabelled rather than something to run without them. */
static int parse_router(struct loader *L, struct model_hparams *hp)
{
    char key[256];
    if (!(L->ai->features & ARCH_MOE)) {
        for (size_t i = 0; i < sizeof k_router_keys / sizeof k_router_keys[0]; i++) {
            arch_key(L, k_router_keys[i], key, sizeof key);
            if (gguf_find_key(L->g, key) >= 0)
                return fail(L, "%s is set, but %s is a dense architecture with no experts: the "
                               "file is mislabelled (check general.architecture)",
                            key, L->arch);
        }
        return 0;
    }
    int64_t g;
    if (get_hp_int(L, "expert_gating_func", 0, 0, UINT32_MAX, &g))
        return -1;
    if (g != 0) {
        int row = -1;
        for (int i = 0; i < N_GATINGS && row < 0; i++)
            row = k_gatings[i].value == g ? i : -1;
        if (row < 0) {
            char list[192];
            int n = 0;
            for (int i = 0; i < N_GATINGS && n >= 0 && (size_t)n < sizeof list; i++)
                n += snprintf(list + n, sizeof list - (size_t)n, "%lld %s, ",
                              (long long)k_gatings[i].value, k_gatings[i].name);
            arch_key(L, "expert_gating_func", key, sizeof key);
            return fail(L, "%s = %lld is not a gating kvchat computes (%s0 or absent: the "
                           "architecture's default)",
                        key, (long long)g, list);
        }
        hp->expert_gating = k_gatings[row].gating;
    }
    arch_key(L, "expert_weights_norm", key, sizeof key);
    bool b;
    if (gguf_get_bool(L->g, key, &b))
        hp->expert_weights_norm = b;
    else if (gguf_find_key(L->g, key) >= 0)
        return fail(L, "%s is not a boolean (true or false)", key);
    arch_key(L, "expert_weights_scale", key, sizeof key);
    double sc = 1.0;
    int64_t isc;
    if (gguf_get_float(L->g, key, &sc)) {
        /* as read */
    } else if (gguf_get_int(L->g, key, &isc)) {
        sc = (double)isc;
    } else if (gguf_find_key(L->g, key) >= 0) {
        return fail(L, "%s is not a number", key);
    }
    /* 0 is what converters write for "no scale" (llama.cpp skips the
     * multiply at 0 as at 1), so it loads as 1 */
    if (sc == 0.0)
        sc = 1.0;
    if (!isfinite(sc) || sc < 0.0 || sc > MAX_EXPERT_SCALE)
        return fail(L, "%s = %g is out of range (above 0, at most %g; 0 means none): the file is "
                       "damaged",
                    key, sc, MAX_EXPERT_SCALE);
    hp->expert_weights_scale = (float)sc;
    return 0;
}

/* RoPE scaling: linear is a plain position scale; YaRN (gpt-oss) is that
 * scale ramped over the pairs plus a magnitude factor (model.h), its keys
 * defaulting as llama.cpp's. Other kinds (longrope, ...) need machinery we
 * do not have, and running without it would give plausible-looking
 * garbage, so they are refused. */
static int parse_rope_scaling(struct loader *L, struct model_hparams *hp)
{
    hp->rope_freq_scale = 1.0f;
    hp->rope_yarn = false;
    char key[256];
    struct gguf_str st;
    arch_key(L, "rope.scaling.type", key, sizeof key);
    bool has_type = gguf_get_str(L->g, key, &st);
    bool yarn = has_type && gguf_str_eq(st, "yarn");
    if (has_type && !yarn && !gguf_str_eq(st, "none") && !gguf_str_eq(st, "linear")) {
        char tname[32];
        gguf_str_copy(st, tname, sizeof tname);
        for (char *c = tname; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
                *c = '?';
        return fail(L, "%s '%s' is not supported (only none, linear and yarn)", key, tname);
    }
    if (has_type && !yarn && gguf_str_eq(st, "none"))
        return 0;
    float factor = 1.0f;
    if (get_hp_float(L, "rope.scaling.factor", 1.0, 0.0, 1e6, &factor))
        return -1;
    arch_key(L, "rope.scaling.factor", key, sizeof key);
    if (!yarn && gguf_find_key(L->g, key) < 0 &&
        get_hp_float(L, "rope.scale_linear", 1.0, 0.0, 1e6, &factor))
        return -1;
    hp->rope_freq_scale = 1.0f / factor;
    if (!yarn)
        return 0;
    if (factor < 1.0f)
        return fail(L, "%s = %g is below 1: YaRN only stretches the context", key,
                    (double)factor);
    hp->rope_yarn = true;
    int64_t v;
    if (get_hp_int(L, "rope.scaling.original_context_length", hp->n_ctx_train, 1, MAX_CTX, &v))
        return -1;
    hp->yarn_n_ctx_orig = (int32_t)v;
    if (get_hp_float(L, "rope.scaling.yarn_beta_fast", 32.0, 0.0, 1e6, &hp->yarn_beta_fast) ||
        get_hp_float(L, "rope.scaling.yarn_beta_slow", 1.0, 0.0, 1e6, &hp->yarn_beta_slow) ||
        get_hp_float(L, "rope.scaling.attn_factor", 1.0, 0.0, 1e3, &hp->yarn_attn_factor))
        return -1;
    /* 0 is allowed: ggml then uses the plain scaled angles, without the
     * ramp or the magnitude factor */
    if (get_hp_float(L, "rope.scaling.yarn_ext_factor", 1.0, -1e-9, 1.0, &hp->yarn_ext_factor))
        return -1;
    if (hp->yarn_beta_slow >= hp->yarn_beta_fast) {
        arch_key(L, "rope.scaling.yarn_beta_slow", key, sizeof key);
        return fail(L, "%s = %g must be below yarn_beta_fast %g", key,
                    (double)hp->yarn_beta_slow, (double)hp->yarn_beta_fast);
    }
    return 0;
}

static int parse_hparams(struct loader *L, struct model_hparams *hp)
{
    int64_t v;
    if (get_hp_int(L, "embedding_length", -1, 1, MAX_EMBD, &v))
        return -1;
    hp->n_embd = (int32_t)v;
    if (get_hp_int(L, "block_count", -1, 1, MAX_LAYER, &v))
        return -1;
    hp->n_layer = (int32_t)v;
    bool moe = (L->ai->features & ARCH_MOE) != 0;
    /* A mixture of experts has no dense FFN; its files still carry the
     * key (the HF intermediate_size), used below as a fallback only. */
    if (get_hp_int(L, "feed_forward_length", moe ? 0 : -1, moe ? 0 : 1, MAX_FF, &v))
        return -1;
    hp->n_ff = (int32_t)v;
    if (get_hp_int(L, "attention.head_count", -1, 1, MAX_HEAD, &v))
        return -1;
    hp->n_head = (int32_t)v;
    if (get_hp_int(L, "attention.head_count_kv", hp->n_head, 1, MAX_HEAD, &v))
        return -1;
    hp->n_head_kv = (int32_t)v;
    if (hp->n_head % hp->n_head_kv != 0)
        return fail(L, "%s.attention.head_count %d is not a multiple of "
                       "%s.attention.head_count_kv %d: the query heads must split evenly "
                       "among the key/value heads",
                    L->arch, hp->n_head, L->arch, hp->n_head_kv);
    int64_t hd_k, hd_v;
    char kl[256];
    arch_key(L, "attention.key_length", kl, sizeof kl);
    if (hp->n_embd % hp->n_head != 0 && gguf_find_key(L->g, kl) < 0)
        /* without key_length the head size is n_embd / n_head, which must
         * then be whole; "missing key_length" would send the reader astray */
        return fail(L, "%s.embedding_length %d is not a multiple of %s.attention.head_count %d "
                       "(and %s, which would give the head size, is absent)",
                    L->arch, hp->n_embd, L->arch, hp->n_head, kl);
    int64_t def_hd = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : -1;
    if (get_hp_int(L, "attention.key_length", def_hd, 1, MAX_HEAD_DIM, &hd_k))
        return -1;
    if (get_hp_int(L, "attention.value_length", hd_k, 1, MAX_HEAD_DIM, &hd_v))
        return -1;
    if (hd_k != hd_v)
        return fail(L, "key_length %lld differs from value_length %lld (not supported)",
                    (long long)hd_k, (long long)hd_v);
    hp->head_dim = (int32_t)hd_k;
    if (get_hp_int(L, "rope.dimension_count", hp->head_dim, 2, MAX_HEAD_DIM, &v))
        return -1;
    hp->n_rot = (int32_t)v;
    if (hp->n_rot % 2 != 0 || hp->n_rot > hp->head_dim)
        return fail(L, "rope.dimension_count %d must be even and at most the head size %d",
                    hp->n_rot, hp->head_dim);
    if (get_hp_int(L, "context_length", 2048, 1, MAX_CTX, &v))
        return -1;
    hp->n_ctx_train = (int32_t)v;

    const struct arch_info *ai = L->ai;
    if (get_hp_float(L, "attention.layer_norm_rms_epsilon", ai->norm_eps, 0.0, 1.0, &hp->norm_eps))
        return -1;
    if (get_hp_float(L, "rope.freq_base", ai->rope_base, 0.0, 1e12, &hp->rope_base))
        return -1;

    if (parse_rope_scaling(L, hp))
        return -1;

    hp->rope_base_local = hp->rope_base;
    hp->rope_scale_local = hp->rope_freq_scale;
    hp->swa_window = 0;
    if (ai->features & ARCH_SWA) {
        if (get_hp_int(L, "attention.sliding_window", 0, 0, MAX_CTX, &v))
            return -1;
        hp->swa_window = (int32_t)v;
        double def = ai->rope_base_swa > 0 ? ai->rope_base_swa : hp->rope_base;
        if (get_hp_float(L, "rope.freq_base_swa", def, 0.0, 1e12, &hp->rope_base_local))
            return -1;
        if (ai->swa_rope_unscaled)
            hp->rope_scale_local = 1.0f;
    }
    if (moe && parse_experts(L, hp))
        return -1;
    arch_set_hparams(hp);
    return parse_router(L, hp);
}

static void add_tensor_stats(struct model *m, const struct model_tensor *t)
{
    if (!t->data)
        return;
    m->n_params += (uint64_t)t->ne0 * (uint64_t)t->ne1;
    m->weight_bytes += t->nbytes;
}

static int load_tensors(struct loader *L, struct model *m)
{
    const struct model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd;

    /* The vocabulary size comes from the embedding table itself. */
    const struct gguf_tensor *te = gguf_find_tensor(L->g, "token_embd.weight");
    if (!te)
        return fail(L, "missing tensor token_embd.weight");
    if (te->ne[1] < 1 || te->ne[1] > MAX_VOCAB)
        return fail(L, "token_embd.weight has %lld rows, out of range (1..%d)",
                    (long long)te->ne[1], MAX_VOCAB);
    m->hp.n_vocab = (int32_t)te->ne[1];
    int64_t V = m->hp.n_vocab;
    if (get_tensor(L, "token_embd.weight", E, V, true, &m->tok_embd))
        return -1;

    int64_t v;
    char key[256];
    arch_key(L, "vocab_size", key, sizeof key);
    if (gguf_get_int(L->g, key, &v) && v != V)
        return fail(L, "%s = %lld but token_embd.weight has %lld rows", key, (long long)v,
                    (long long)V);
    enum gguf_type et;
    uint64_t ntok;
    if (gguf_get_arr(L->g, "tokenizer.ggml.tokens", &et, &ntok) && ntok > (uint64_t)V)
        return fail(L, "the tokenizer has %llu tokens but token_embd.weight only %lld rows",
                    (unsigned long long)ntok, (long long)V);

    if (get_tensor(L, "output_norm.weight", E, 0, true, &m->output_norm) ||
        check_finite_vector(L, "output_norm.weight", &m->output_norm))
        return -1;
    if (get_tensor(L, "output.weight", E, V, false, &m->output))
        return -1;
    bool tied = m->output.data == NULL;
    if (tied)
        m->output = m->tok_embd;
    if (get_tensor(L, "rope_freqs.weight", hp->n_rot / 2, 0, false, &m->rope_freqs))
        return -1;
    if (m->rope_freqs.data && m->rope_freqs.type != GGML_TYPE_F32)
        return fail(L, "tensor rope_freqs.weight has type %s, expected F32",
                    quant_type_name(m->rope_freqs.type));
    if (check_finite_vector(L, "rope_freqs.weight", &m->rope_freqs))
        return -1;

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return fail(L, "out of memory for %d layers", hp->n_layer);

    for (int il = 0; il < hp->n_layer; il++) {
        struct model_layer *ly = &m->layers[il];
        for (int i = 0; i < arch_n_layer_tensors(); i++) {
            const struct arch_tensor *at = arch_layer_tensor(i);
            enum arch_need need = arch_tensor_need(L->ai, at);
            struct model_tensor *t = arch_tensor_of(ly, at);
            if (need == ARCH_UNUSED)
                continue;
            int64_t ne1 = arch_dim_size(hp, at->ne1);
            if (get_layer_tensor(L, il, at->name, arch_dim_size(hp, at->ne0), ne1,
                                 at->experts ? hp->n_expert : 0, need == ARCH_REQUIRED, t))
                return -1;
            if (at->kind != ARCH_WEIGHT) {
                char name[96];
                snprintf(name, sizeof name, "blk.%d.%s", il, at->name);
                if (check_finite_vector(L, name, t))
                    return -1;
            }
            add_tensor_stats(m, t);
        }
        ly->swa = arch_layer_swa(hp, il);
        ly->rope_base = ly->swa ? hp->rope_base_local : hp->rope_base;
    }
    add_tensor_stats(m, &m->tok_embd);
    add_tensor_stats(m, &m->output_norm);
    add_tensor_stats(m, &m->rope_freqs);
    if (!tied)
        add_tensor_stats(m, &m->output);

    /* A decode step reads every weight once, but of the embedding table only
     * one row -- unless the table is also the LM head, when all of it is read
     * (once, for the logits) -- and only the experts the router picks. */
    m->bytes_per_token = arch_bytes_per_token(m);
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

struct model *model_from_gguf(struct gguf *g, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    if (!g) {
        if (err && errlen)
            snprintf(err, errlen, "model: no file");
        return NULL;
    }
    struct loader L = {.g = g, .fname = gguf_path(g), .err = err, .errlen = errlen};
    if (!L.fname)
        L.fname = "model";
    struct model *m = calloc(1, sizeof *m);
    if (!m) {
        fail(&L, "out of memory");
        gguf_close(g);
        return NULL;
    }
    m->file = g;
    if (parse_arch(&L, &m->hp.arch) || parse_hparams(&L, &m->hp) || load_tensors(&L, m)) {
        model_free(m);
        return NULL;
    }
    struct gguf_str name;
    if (gguf_get_str(g, "general.name", &name) && name.len > 0)
        gguf_str_copy(name, m->name, sizeof m->name);
    else
        snprintf(m->name, sizeof m->name, "%s", base_name(L.fname));
    return m;
}

struct model *model_load(const char *path, char *err, size_t errlen)
{
    struct gguf *g = gguf_open(path, err, errlen);
    if (!g)
        return NULL;
    return model_from_gguf(g, err, errlen);
}

void model_free(struct model *m)
{
    if (!m)
        return;
    free(m->layers);
    gguf_close(m->file);
    if (m->synth_mem)
        munmap(m->synth_mem, m->synth_mem_bytes);
    free(m);
}
