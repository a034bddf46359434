/* synth.c - synthetic models: built-in shapes, the row seeding of the fast
 * generator (the random blocks themselves come from quant_random_row), a
 * struct model built straight into an anonymous mapping, and the GGUF
 * export. Architecture flags and tensor lists come from the architecture
 * table (arch.h), as for loaded models. See synth.h for the contract.
 *
 * Used by the engine (engine_params.synthetic, engine_write_synthetic), the
 * tests and, later, the CUDA backend's upload path.
 */
#include "synth.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#include "arch.h"
#include "errmsg.h"
#include "gguf.h"

/* Shapes as the published config.json files give them (Hugging Face:
 * meta-llama/Meta-Llama-3-8B, meta-llama/Llama-3.2-1B, Qwen/Qwen2-7B,
 * google/gemma-3-1b-pt, Qwen/Qwen3-0.6B, HuggingFaceTB/SmolLM2-135M). Llama
 * 3's RoPE frequency scaling (rope_freqs) is left out: it changes no size and
 * no memory traffic. */
static const struct synth_shape shapes[] = {
    {.name = "llama-8b", .arch = MODEL_ARCH_LLAMA, .n_layer = 32, .n_embd = 4096, .n_ff = 14336,
     .n_head = 32, .n_head_kv = 8, .head_dim = 128, .n_vocab = 128256, .n_ctx_train = 8192,
     .rope_base = 500000.0f, .norm_eps = 1e-5f},
    {.name = "llama-1b", .arch = MODEL_ARCH_LLAMA, .n_layer = 16, .n_embd = 2048, .n_ff = 8192,
     .n_head = 32, .n_head_kv = 8, .head_dim = 64, .n_vocab = 128256, .n_ctx_train = 131072,
     .rope_base = 500000.0f, .norm_eps = 1e-5f, .tied = true},
    {.name = "qwen2-7b", .arch = MODEL_ARCH_QWEN2, .n_layer = 28, .n_embd = 3584, .n_ff = 18944,
     .n_head = 28, .n_head_kv = 4, .head_dim = 128, .n_vocab = 152064, .n_ctx_train = 32768,
     .rope_base = 1000000.0f, .norm_eps = 1e-6f, .qkv_bias = true},
    {.name = "gemma3-1b", .arch = MODEL_ARCH_GEMMA3, .n_layer = 26, .n_embd = 1152, .n_ff = 6912,
     .n_head = 4, .n_head_kv = 1, .head_dim = 256, .n_vocab = 262144, .n_ctx_train = 32768,
     .swa_window = 512, .rope_base = 1000000.0f, .norm_eps = 1e-6f, .tied = true},
    {.name = "qwen3-0.6b", .arch = MODEL_ARCH_QWEN3, .n_layer = 28, .n_embd = 1024, .n_ff = 3072,
     .n_head = 16, .n_head_kv = 8, .head_dim = 128, .n_vocab = 151936, .n_ctx_train = 40960,
     .rope_base = 1000000.0f, .norm_eps = 1e-6f, .tied = true},
    {.name = "smollm2-135m", .arch = MODEL_ARCH_LLAMA, .n_layer = 30, .n_embd = 576, .n_ff = 1536,
     .n_head = 9, .n_head_kv = 3, .head_dim = 64, .n_vocab = 49152, .n_ctx_train = 8192,
     .rope_base = 100000.0f, .norm_eps = 1e-5f, .tied = true},
    /* Qwen/Qwen3-30B-A3B: 128 experts of 768, 8 per token (about 3.3 of its
     * 30.5 billion parameters read per token). */
    {.name = "qwen3-30b-a3b", .arch = MODEL_ARCH_QWEN3MOE, .n_layer = 48, .n_embd = 2048,
     .n_ff = 6144, .n_head = 32, .n_head_kv = 4, .head_dim = 128, .n_vocab = 151936,
     .n_ctx_train = 40960, .rope_base = 1000000.0f, .norm_eps = 1e-6f, .n_expert = 128,
     .n_expert_used = 8, .n_ff_exp = 768},
    /* Not a published model: the smallest shape that has every part of a
     * mixture of experts (routing, a shared expert, biases), for tests. */
    {.name = "moe-tiny", .arch = MODEL_ARCH_QWEN2MOE, .n_layer = 3, .n_embd = 256, .n_ff = 512,
     .n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_vocab = 1024, .n_ctx_train = 4096,
     .rope_base = 1000000.0f, .norm_eps = 1e-6f, .qkv_bias = true, .n_expert = 8,
     .n_expert_used = 2, .n_ff_exp = 256, .n_ff_shexp = 512},
    /* openai/gpt-oss-20b: 32 experts of 2880, 4 per token, every other
     * layer windowed to 128 tokens, YaRN from 4096 to 131072 (llama.cpp's
     * GGUF keeps the experts MXFP4, as OpenAI ships them). */
    {.name = "gpt-oss-20b", .arch = MODEL_ARCH_GPT_OSS, .n_layer = 24, .n_embd = 2880,
     .n_ff = 2880, .n_head = 64, .n_head_kv = 8, .head_dim = 64, .n_vocab = 201088,
     .n_ctx_train = 131072, .swa_window = 128, .rope_base = 150000.0f, .norm_eps = 1e-5f,
     .n_expert = 32, .n_expert_used = 4, .n_ff_exp = 2880, .yarn_factor = 32.0f,
     .yarn_orig_ctx = 4096},
    /* Not a published model: gpt-oss's every part (sinks, biases, windowed
     * layers, YaRN) at a size the tests run. */
    {.name = "gpt-oss-tiny", .arch = MODEL_ARCH_GPT_OSS, .n_layer = 4, .n_embd = 256,
     .n_ff = 256, .n_head = 8, .n_head_kv = 2, .head_dim = 32, .n_vocab = 1024,
     .n_ctx_train = 4096, .swa_window = 16, .rope_base = 150000.0f, .norm_eps = 1e-5f,
     .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 256, .yarn_factor = 32.0f,
     .yarn_orig_ctx = 128},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* Weights of the mapping start on this boundary (a cache line; also the
 * widest load the CPU kernels make). */
#define SYNTH_ALIGN 64

#define DEFAULT_SEED 0x6b7663686174ull /* "kvchat" */

int synth_n_shapes(void) { return N_SHAPES; }

const struct synth_shape *synth_shape_at(int i)
{
    return i >= 0 && i < N_SHAPES ? &shapes[i] : NULL;
}

const struct synth_shape *synth_shape_find(const char *name)
{
    for (int i = 0; i < N_SHAPES; i++)
        if (strcasecmp(shapes[i].name, name) == 0)
            return &shapes[i];
    return NULL;
}

const char *synth_shape_list(void)
{
    return "llama-8b, llama-1b, qwen2-7b, gemma3-1b, qwen3-0.6b, smollm2-135m, qwen3-30b-a3b, "
           "moe-tiny, gpt-oss-20b, gpt-oss-tiny";
}

const char *synth_type_list(void)
{
    return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, q2_k, q3_k, iq4_nl, "
           "iq4_xs, mxfp4";
}

int synth_parse(const char *text, struct synth_spec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *colon = text ? strchr(text, ':') : NULL;
    if (!colon) {
        kv_seterr(err, errlen,
                  "synthetic model '%s' is not SHAPE:TYPE (e.g. llama-1b:q8_0; shapes: %s; "
                  "types: %s)",
                  text ? text : "", synth_shape_list(), synth_type_list());
        return -1;
    }
    char shape[64];
    size_t n = (size_t)(colon - text);
    if (n >= sizeof shape)
        n = sizeof shape - 1;
    memcpy(shape, text, n);
    shape[n] = 0;
    const struct synth_shape *sh = synth_shape_find(shape);
    if (!sh) {
        kv_seterr(err, errlen, "unknown synthetic shape '%s' (shapes: %s)", shape,
                  synth_shape_list());
        return -1;
    }
    enum ggml_type t;
    if (!quant_type_from_name(colon + 1, &t) || !quant_type_supported(t)) {
        kv_seterr(err, errlen, "unknown synthetic weight type '%s' (types: %s)", colon + 1,
                  synth_type_list());
        return -1;
    }
    out->shape = *sh;
    out->type = t;
    out->seed = DEFAULT_SEED;
    char tname[16];
    snprintf(tname, sizeof tname, "%s", quant_type_name(t));
    for (char *c = tname; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    snprintf(out->name, sizeof out->name, "%s:%s", sh->name, tname);
    return 0;
}

enum ggml_type synth_weight_type(enum ggml_type want, int64_t ne0)
{
    int64_t bs = quant_block_size(want);
    if (bs > 0 && ne0 % bs == 0)
        return want;
    enum ggml_type t = quant_type_fallback(want);
    bs = quant_block_size(t);
    return bs > 0 && ne0 % bs == 0 ? t : GGML_TYPE_F16;
}

/* ---- the generator ------------------------------------------------------ */

/* What a valid random block of each type is, is the quant module's business
 * (quant_random_row: it owns the layouts); which rows get which state is
 * decided here. A row's state depends only on (seed, tensor, row), so rows can
 * be made in any order, anywhere. */
static uint64_t row_state(uint64_t seed, uint32_t tensor_id, int64_t row)
{
    uint64_t s = seed ^ ((uint64_t)tensor_id << 40) ^ (uint64_t)row * 0xD1B54A32D192ED03ull;
    (void)quant_rand64(&s);
    return s;
}

void synth_fill_rows(enum ggml_type t, int64_t ne0, float sigma, uint64_t seed,
                     uint32_t tensor_id, int64_t row0, int64_t nrows, void *dst)
{
    size_t rs = quant_row_size(t, ne0);
    if (!quant_type_supported(t) || rs == 0 || nrows <= 0 || !dst)
        return;
    if (!(sigma > 0))
        sigma = 1.0f / sqrtf((float)ne0);
    for (int64_t r = 0; r < nrows; r++) {
        uint64_t s = row_state(seed, tensor_id, row0 + r);
        quant_random_row(t, (uint8_t *)dst + (size_t)r * rs, ne0, sigma, &s);
    }
}

/* ---- the model ---------------------------------------------------------- */

/* T_F32: a matrix kept F32 whatever the type asked (the router); T_VEC: a
 * random vector (the shared expert's gate). */
enum tkind { T_WEIGHT, T_NORM, T_BIAS, T_F32, T_VEC };

/* One tensor of the model: its llama.cpp name, where it lives in the model
 * and its shape (ne1 = 0: a vector; ne2 > 0: that many stacked matrices of
 * ne1 rows, the experts). */
struct tdesc {
    char name[48];
    struct model_tensor *t;
    int64_t ne0, ne1, ne2;
    enum tkind kind;
};

static int add_desc(struct tdesc *d, int n, const char *name, struct model_tensor *t,
                    int64_t ne0, int64_t ne1, enum tkind kind)
{
    snprintf(d[n].name, sizeof d[n].name, "%s", name);
    d[n].t = t;
    d[n].ne0 = ne0;
    d[n].ne1 = ne1;
    d[n].ne2 = 0;
    d[n].kind = kind;
    return n + 1;
}

/* Room list_tensors needs: the model-wide tensors, then every layer's. */
static size_t max_tensors(const struct synth_shape *sh)
{
    return 4 + (size_t)arch_n_layer_tensors() * (size_t)sh->n_layer;
}

/* Lists M's tensors in GGUF order into D (max_tensors entries): the layer
 * tensors the architecture needs, and the biases when the shape has them.
 * M's hyperparameters must be set. */
static int list_tensors(struct model *m, const struct synth_shape *sh, struct tdesc *d)
{
    const struct model_hparams *hp = &m->hp;
    const struct arch_info *ai = arch_info(sh->arch);
    int64_t E = sh->n_embd, V = sh->n_vocab;
    int n = 0;
    n = add_desc(d, n, "token_embd.weight", &m->tok_embd, E, V, T_WEIGHT);
    n = add_desc(d, n, "output_norm.weight", &m->output_norm, E, 0, T_NORM);
    if (!sh->tied)
        n = add_desc(d, n, "output.weight", &m->output, E, V, T_WEIGHT);
    static const enum tkind kinds[] = {[ARCH_WEIGHT] = T_WEIGHT, [ARCH_NORM] = T_NORM,
                                       [ARCH_BIAS] = T_BIAS, [ARCH_VEC] = T_VEC};
    for (int il = 0; il < sh->n_layer; il++) {
        for (int i = 0; i < arch_n_layer_tensors(); i++) {
            const struct arch_tensor *at = arch_layer_tensor(i);
            /* optional biases (llama's) only when the shape asks for them */
            enum arch_need need = arch_tensor_need(ai, at);
            bool make = need == ARCH_REQUIRED || (at->kind == ARCH_BIAS && need == ARCH_OPTIONAL &&
                                                  sh->qkv_bias);
            if (!make)
                continue;
            char nm[48];
            snprintf(nm, sizeof nm, "blk.%d.%s", il, at->name);
            n = add_desc(d, n, nm, arch_tensor_of(&m->layers[il], at), arch_dim_size(hp, at->ne0),
                         arch_dim_size(hp, at->ne1), at->unquantised ? T_F32 : kinds[at->kind]);
            if (at->experts)
                d[n - 1].ne2 = hp->n_expert;
        }
    }
    return n;
}

/* Sanity limits for custom shapes (tests build their own): far above any
 * real model, and they keep the size arithmetic far from overflow. */
static int check_shape(const struct synth_shape *sh, char *err, size_t errlen)
{
    if (!arch_info(sh->arch) || sh->n_layer < 1 || sh->n_layer > 1024 || sh->n_embd < 1 ||
        sh->n_embd > (1 << 16) || sh->n_ff < 1 || sh->n_ff > (1 << 20) || sh->n_head < 1 || sh->n_head > 1024 ||
        sh->n_head_kv < 1 || sh->n_head % sh->n_head_kv != 0 || sh->head_dim < 2 ||
        sh->head_dim % 2 != 0 || sh->head_dim > 4096 || sh->n_vocab < 1 ||
        sh->n_vocab > (1 << 23) || sh->n_ctx_train < 1 || sh->swa_window < 0 ||
        !(sh->yarn_factor == 0 || (sh->yarn_factor >= 1 && sh->yarn_orig_ctx > 0)) ||
        !(sh->rope_base > 0) || !(sh->norm_eps > 0) ||
        ((arch_info(sh->arch)->features & ARCH_MOE) != 0) != (sh->n_expert > 0) ||
        (sh->n_expert > 0 && (sh->n_expert > 1024 || sh->n_expert_used < 1 ||
                              sh->n_expert_used > sh->n_expert || sh->n_ff_exp < 1 ||
                              sh->n_ff_exp > (1 << 20) || sh->n_ff_shexp < 0 ||
                              sh->n_ff_shexp > (1 << 20) ||
                              ((arch_info(sh->arch)->features & ARCH_SHARED_EXPERT) != 0) !=
                                  (sh->n_ff_shexp > 0)))) {
        kv_seterr(err, errlen, "synthetic shape '%s' has an invalid hyperparameter",
                  sh->name ? sh->name : "?");
        return -1;
    }
    return 0;
}

/* M's hyperparameters from the shape SH (list_tensors reads them). */
static void fill_hparams(struct model *m, const struct synth_shape *sh)
{
    struct model_hparams *hp = &m->hp;
    hp->arch = sh->arch;
    hp->n_vocab = sh->n_vocab;
    hp->n_embd = sh->n_embd;
    hp->n_layer = sh->n_layer;
    hp->n_ff = sh->n_ff;
    hp->n_head = sh->n_head;
    hp->n_head_kv = sh->n_head_kv;
    hp->head_dim = sh->head_dim;
    hp->n_rot = sh->head_dim;
    hp->n_ctx_train = sh->n_ctx_train;
    hp->norm_eps = sh->norm_eps;
    hp->rope_base = sh->rope_base;
    const struct arch_info *ai = arch_info(sh->arch);
    bool swa = (ai->features & ARCH_SWA) != 0;
    hp->rope_base_local = swa ? (float)ai->rope_base_swa : sh->rope_base;
    hp->rope_freq_scale = sh->yarn_factor > 0 ? 1.0f / sh->yarn_factor : 1.0f;
    hp->rope_scale_local = swa && ai->swa_rope_unscaled ? 1.0f : hp->rope_freq_scale;
    if (swa && !(ai->rope_base_swa > 0))
        hp->rope_base_local = sh->rope_base;
    /* YaRN with llama.cpp's defaults, as model.c reads a file without the
     * optional keys */
    hp->rope_yarn = sh->yarn_factor > 0;
    hp->yarn_n_ctx_orig = sh->yarn_orig_ctx;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    hp->yarn_ext_factor = 1.0f;
    hp->yarn_attn_factor = 1.0f;
    hp->swa_window = swa ? sh->swa_window : 0;
    hp->n_expert = sh->n_expert;
    hp->n_expert_used = sh->n_expert_used;
    hp->n_ff_exp = sh->n_ff_exp;
    hp->n_ff_shexp = sh->n_ff_shexp;
    arch_set_hparams(hp);
}

/* Lays the N tensors of D out in one mapping: types, sizes and offsets (in
 * ->data until mapped). Returns the mapping's bytes. */
static size_t layout_tensors(const struct synth_spec *s, struct tdesc *d, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        enum ggml_type t = d[i].kind == T_WEIGHT ? synth_weight_type(s->type, d[i].ne0)
                                                 : GGML_TYPE_F32;
        int64_t rows = (d[i].ne1 ? d[i].ne1 : 1) * (d[i].ne2 ? d[i].ne2 : 1);
        size_t nb = quant_row_size(t, d[i].ne0) * (size_t)rows;
        d[i].t->type = t;
        d[i].t->ne0 = d[i].ne0;
        d[i].t->ne1 = rows;
        d[i].t->nbytes = nb;
        d[i].t->data = (const void *)(uintptr_t)total; /* offset until mapped */
        total += (nb + SYNTH_ALIGN - 1) / SYNTH_ALIGN * SYNTH_ALIGN;
    }
    return total;
}

/* The model S describes without its weights: checked shape and type,
 * hyperparameters, room for its layers, and in *D (owned by the caller) a
 * descriptor per tensor for list_tensors. NULL with ERR. */
static struct model *model_shell(const struct synth_spec *s, struct tdesc **d, char *err,
                                 size_t errlen)
{
    const struct synth_shape *sh = &s->shape;
    *d = NULL;
    if (check_shape(sh, err, errlen))
        return NULL;
    if (!quant_type_supported(s->type)) {
        kv_seterr(err, errlen, "synthetic weight type %s is not supported (types: %s)",
                  quant_type_name(s->type), synth_type_list());
        return NULL;
    }
    struct model *m = calloc(1, sizeof *m);
    *d = malloc(sizeof **d * max_tensors(sh));
    if (m)
        m->layers = calloc((size_t)sh->n_layer, sizeof *m->layers);
    if (!m || !*d || !m->layers) {
        kv_seterr(err, errlen, "out of memory");
        free(*d);
        *d = NULL;
        model_free(m);
        return NULL;
    }
    fill_hparams(m, sh);
    return m;
}

int synth_weight_bytes(const struct synth_spec *s, uint64_t *out, char *err, size_t errlen)
{
    const struct synth_shape *sh = &s->shape;
    struct tdesc *d;
    struct model *m = model_shell(s, &d, err, errlen);
    if (!m)
        return -1;
    *out = layout_tensors(s, d, list_tensors(m, sh, d));
    free(d);
    model_free(m); /* nothing mapped: the tensors hold offsets only */
    return 0;
}

struct model *model_new_synthetic(const struct synth_spec *s, char *err, size_t errlen)
{
    const struct synth_shape *sh = &s->shape;
    struct tdesc *d;
    struct model *m = model_shell(s, &d, err, errlen);
    if (!m)
        return NULL;
    const struct model_hparams *hp = &m->hp;
    snprintf(m->name, sizeof m->name, "synthetic %s", s->name[0] ? s->name : sh->name);

    int n = list_tensors(m, sh, d);
    size_t total = layout_tensors(s, d, n);
    /* No MAP_NORESERVE: every page is written at once, and the kernel's
     * overcommit check then refuses a model far larger than memory here, as
     * an error, instead of the OOM killer doing it halfway through. */
    void *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        kv_seterr(err, errlen, "out of memory: the synthetic model %s needs %.2f GiB of weights",
                  s->name, total / 1073741824.0);
        free(d);
        model_free(m);
        return NULL;
    }
    m->synth_mem = mem;
    m->synth_mem_bytes = total;

    for (int i = 0; i < n; i++) {
        struct model_tensor *t = d[i].t;
        uint8_t *p = (uint8_t *)mem + (uintptr_t)t->data;
        t->data = p;
        if (d[i].kind == T_NORM) {
            float one = 1.0f;
            for (int64_t k = 0; k < t->ne0; k++)
                memcpy(p + 4 * k, &one, 4);
        } else {
            /* Experts' rows are seeded by their row in the stack, so every
             * expert differs. */
            synth_fill_rows(t->type, t->ne0, d[i].kind == T_BIAS ? 0.02f : 0.0f, s->seed,
                            (uint32_t)i, 0, t->ne1, p);
        }
        m->n_params += (uint64_t)t->ne0 * (uint64_t)t->ne1;
        m->weight_bytes += t->nbytes;
    }
    free(d);
    if (sh->tied)
        m->output = m->tok_embd;
    for (int il = 0; il < sh->n_layer; il++) {
        struct model_layer *l = &m->layers[il];
        l->swa = arch_layer_swa(hp, il);
        l->rope_base = l->swa ? hp->rope_base_local : hp->rope_base;
    }
    /* As model.c: every weight once, one row of the embedding table unless
     * it is also the LM head, and only the experts a token is routed to. */
    m->bytes_per_token = arch_bytes_per_token(m);
    return m;
}

/* ---- GGUF export -------------------------------------------------------- */

int synth_check_tokenizer(const struct synth_spec *s, const struct gguf *tok, char *err,
                          size_t errlen)
{
    enum gguf_type et;
    uint64_t n;
    if (!gguf_get_arr(tok, "tokenizer.ggml.tokens", &et, &n)) {
        kv_seterr(err, errlen, "%s has no tokenizer (tokenizer.ggml.tokens)", gguf_path(tok));
        return -1;
    }
    if (n == (uint64_t)s->shape.n_vocab)
        return 0;
    char fit[256] = "";
    size_t k = 0;
    for (int i = 0; i < N_SHAPES; i++)
        if ((uint64_t)shapes[i].n_vocab == n && k < sizeof fit)
            k += (size_t)snprintf(fit + k, sizeof fit - k, "%s%s", k ? ", " : "", shapes[i].name);
    kv_seterr(err, errlen,
              "the tokenizer of %s has %llu tokens but the shape %s has %d: %s%s", gguf_path(tok),
              (unsigned long long)n, s->shape.name, s->shape.n_vocab,
              k ? "use a shape with that vocabulary: " : "no built-in shape has that vocabulary",
              fit);
    return -1;
}

int synth_write_gguf(const struct model *m, const struct synth_spec *s, const struct gguf *tok,
                     const char *path, char *err, size_t errlen)
{
    if (tok && synth_check_tokenizer(s, tok, err, errlen))
        return -1;
    const struct synth_shape *sh = &s->shape;
    struct tdesc *d = malloc(sizeof *d * max_tensors(sh));
    struct gguf_writer *w = gguf_writer_new();
    if (!d || !w) {
        free(d);
        gguf_writer_free(w);
        kv_seterr(err, errlen, "out of memory");
        return -1;
    }
    const char *arch = model_arch_name(sh->arch);
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    gguf_writer_set_str(w, "general.architecture", arch);
    gguf_writer_set_str(w, "general.name", m->name);
    gguf_writer_set_u32(w, "general.file_type", quant_type_ftype(s->type));
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)sh->n_ctx_train);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)sh->n_embd);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)sh->n_layer);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)sh->n_ff);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)sh->n_head);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)sh->n_head_kv);
    gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)sh->head_dim);
    gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)sh->head_dim);
    gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)sh->head_dim);
    gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)sh->n_vocab);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), sh->norm_eps);
    gguf_writer_set_f32(w, KEY("rope.freq_base"), sh->rope_base);
    if (sh->n_expert > 0) {
        gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)sh->n_expert);
        gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)sh->n_expert_used);
        gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)sh->n_ff_exp);
        if (sh->n_ff_shexp > 0)
            gguf_writer_set_u32(w, KEY("expert_shared_feed_forward_length"),
                                (uint32_t)sh->n_ff_shexp);
    }
    if (arch_info(sh->arch)->features & ARCH_SWA) {
        gguf_writer_set_u32(w, KEY("attention.sliding_window"), (uint32_t)sh->swa_window);
        if (arch_info(sh->arch)->rope_base_swa > 0) /* llama.cpp writes none for gpt-oss */
            gguf_writer_set_f32(w, KEY("rope.freq_base_swa"), m->hp.rope_base_local);
    }
    if (sh->yarn_factor > 0) {
        gguf_writer_set_str(w, KEY("rope.scaling.type"), "yarn");
        gguf_writer_set_f32(w, KEY("rope.scaling.factor"), sh->yarn_factor);
        gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"),
                            (uint32_t)sh->yarn_orig_ctx);
    }
#undef KEY
    /* Without a tokenizer to copy, the file says it has no vocabulary in the
     * spelling other engines read too ("none", with ARCH.vocab_size above),
     * so it can be benchmarked side by side with them. */
    if (tok)
        gguf_writer_copy_kv(w, tok, "tokenizer.");
    else
        gguf_writer_set_str(w, "tokenizer.ggml.model", SYNTH_NO_VOCABULARY);

    /* list_tensors wants a mutable model to point into; the pointers are
     * only read here. */
    int n = list_tensors((struct model *)m, sh, d);
    for (int i = 0; i < n; i++) {
        const struct model_tensor *t = d[i].t;
        int64_t ne[3] = {t->ne0, d[i].ne1, d[i].ne2};
        gguf_writer_add_tensor(w, d[i].name, t->type, d[i].ne2 ? 3 : d[i].ne1 ? 2 : 1, ne,
                               t->data);
    }
    free(d);
    int rc = gguf_writer_write(w, path, err, errlen);
    gguf_writer_free(w);
    return rc;
}
