/* backend_cuda.cu - the CUDA backend: backend_cuda_ops (backend/engine/
 * backend.h), and the one symbol the module kvchat-cuda.so exports, its entry
 * point (BACKEND_ENTRY), through which the registry gets the table.
 *
 * create() uploads the weights into one device arena through two pinned
 * staging buffers, quantised blocks repacked on the way (wformat.cuh: the
 * fields of a row's blocks in planes, rows padded to 16 bytes), converting only
 * the small vectors (norms, biases, rope factors) to f32; it sizes the f16 KV
 * cache from n_ctx and the scratch from a micro-batch of UB tokens (fewer when
 * the device is short of memory), and checks
 * free device memory before allocating anything, against the same estimate
 * (cuda_estimate) the registry used to choose this backend.
 *
 * forward() runs the layer math of backend/cpu.c op by op (docs/model-formats
 * sections 3-4): one token goes through the matrix-vector kernels, several
 * through cuBLAS GEMMs with bf16 operands (weights dequantised chunk by chunk,
 * once per micro-batch of up to UB_MAX tokens) and through the tensor-core
 * prefill attention (attention_prefill.cu). A mixture-of-experts FFN
 * (ffn_moe) routes on the device and runs its experts as matvecs over
 * (token, slot) pairs for any number of tokens. Everything is
 * queued on one stream; the only synchronisation is the copy of the logits.
 *
 * Thread safety: one thread at a time per backend (the engine's rule).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda.h"
#include "wformat.cuh"

extern "C" {
#include "engine.h"
#include "model.h"
}

/* Tokens per micro-batch: each chunk of dequantised weights serves this many
 * tokens, so the dequantisation is a small part of a GEMM's time. When the
 * device is short of memory it halves down to UB_MIN. */
#define UB_MAX 1024
#define UB_MIN 64
#define WBF_MAX_ELEMS (32 << 20) /* bf16 dequant tile: 64 MiB */
/* Prefill attention: keys per tile, and the most score elements (query rows
 * x tile, over all heads) one pass holds; queries per pass follow. */
#define AP_TILE 256
#define AP_MAX_SCORES (8 << 20)
static_assert(KV_SAMPLE_MAX_K == BACKEND_SAMPLE_MAX_K && KV_SAMPLE_MAX_PEN == BACKEND_SAMPLE_MAX_PEN,
              "the device sampler takes what the engine's plan may hold");
#define LOGITS_MAX_FLOATS (16 << 20)
#define STAGE_BYTES (8u << 20)
#define ARENA_ALIGN 256
/* Room left for the CUDA context's own allocations and cuBLAS workspaces. */
#define RESERVE_BYTES (192ull << 20)

struct dlayer {
    struct kv_dmat wq, wk, wv, wo, gate, up, down;
    /* Mixture of experts (hp.n_expert > 0; gate/up/down then absent): the
     * router (n_expert rows), the stacked experts (n_expert matrices of
     * n_ff_exp or n_embd rows, expert e's from row e * rows: the upload keeps
     * the file's order, so one expert is rows * row_bytes contiguous bytes),
     * and qwen2moe's shared expert with its one-row sigmoid gate. */
    struct kv_dmat router, gate_exps, up_exps, down_exps;
    struct kv_dmat sh_gate_inp, gate_sh, up_sh, down_sh;
    /* f32 vectors in the arena, NULL when absent */
    float *attn_norm, *bq, *bk, *bv, *q_norm, *k_norm, *post_attn_norm;
    float *ffn_norm, *post_ffw_norm;
    /* gpt-oss: attn_output's bias (n_embd), the sink logits (n_head), the
     * router's bias (n_expert) and the experts' bias rows (n_expert rows of
     * n_ff_exp, n_ff_exp, n_embd) */
    float *bo, *sinks, *router_b, *gate_exps_b, *up_exps_b, *down_exps_b;
    __half *kc, *vc; /* (n_kv, n_ctx, hd) f16, in the KV allocation; NULL for q8_0 */
    struct kv_q8_cache kq, vq; /* the q8_0 cache, in the KV allocation; NULLs for f16 */
    bool swa;
};

/* What the host writes before a decode step: one copy, which the captured
 * graph's kernels read. */
struct kv_step_in {
    int32_t token; /* the step's input token */
    int32_t pos;   /* its position */
    struct kv_sample_in s;
};

struct cuda_backend {
    const struct model *m; /* borrowed */
    int32_t n_ctx;
    int32_t ub;         /* tokens per micro-batch */
    int32_t logit_rows; /* rows of logits computed per GEMM */
    int32_t part_rows;  /* n_split * n_tok the decode attention scratch holds */
    int32_t ap_chunk;   /* queries per pass of the prefill attention */
    int64_t wbf_elems;
    int n_sm;
    cudaStream_t st;
    cublasHandle_t blas;
    bool have_stream, have_blas;

    uint8_t *arena; /* device, owned: weights and f32 vectors */
    size_t arena_bytes;
    uint8_t *kv; /* device, owned */
    size_t kv_bytes;
    bool kv_q8;  /* the cache is q8_0 (struct kv_q8_cache), else f16 */
    uint8_t *scratch; /* device, owned; carved into the pointers below */
    size_t scratch_bytes;

    struct kv_dmat tok_embd, output;
    float *output_norm;
    struct dlayer *layers; /* host, owned, n_layer */

    /* scratch views (device) */
    float *x;      /* ub x n_embd: the residual stream */
    float *xn;     /* ub x n_embd: normed input of a projection */
    float *tmp;    /* ub x n_embd: a projection's output before its post-norm */
    float *q, *ao; /* ub x n_head*hd */
    float *k, *v;  /* ub x n_kv*hd */
    float *g, *u;  /* ub x max(n_ff, n_ff_shexp) */
    /* mixture of experts, K = n_expert_used: router logits (ub x n_expert),
     * each token's experts and weights (ub x K), the routed experts' hidden
     * states (ub K x n_ff_exp, two for an unfused gate/up) and outputs
     * (ub K x n_embd), the shared expert's gate logit (ub) and output
     * (ub x n_embd) */
    float *moe_logits;
    int32_t *moe_ids;
    float *moe_w, *moe_h, *moe_h2, *moe_y, *sh_z, *sh_out;
    float *part;   /* part_rows x n_head x (hd + 2) */
    float *logits; /* logit_rows x n_vocab */
    __nv_bfloat16 *abf; /* ub x max(n_embd, n_head*hd, n_ff, n_ff_shexp): GEMM activations */
    __nv_bfloat16 *wbf; /* wbf_elems: a dequantised weight chunk */
    /* prefill attention (kv_attn_prefill_args says the shapes) */
    __nv_bfloat16 *ap_q, *ap_k, *ap_v, *ap_p;
    float *ap_s, *ap_acc;
    float2 *ap_ml;
    int32_t *ids;  /* ub */
    float *inv_freq; /* n_rot: global layers' n_rot/2, then local layers' */
    float mscale[2]; /* YaRN's factor on cos and sin: global, local layers (1: none) */
    struct kv_step_in *step; /* the decode step's inputs */
    int32_t *pick;           /* 2: the sampled token, the non-finite flag */
    void *sample_tmp;        /* kv_sample_scratch_bytes(n_vocab) */

    /* The decode step (cuda_sample): pinned host copies of its input and
     * output (owned; a graph's copies must not read pageable memory), and
     * the instantiated graph, captured at the first step: every launch in
     * it reads the position from b->step, and the attention's split counts
     * depend on the context size and the windows only, so one graph replays
     * at every position. */
    struct kv_step_in *step_host;
    int32_t *pick_host;
    cudaGraphExec_t graph;
    bool graphs_off; /* a capture failed once: steps run as plain launches */

    char name[256];
    char err[512];
};

/* ---- upload plan ---------------------------------------------------------
 * Every tensor becomes an item with an arena offset; the plan is built once
 * to size the arena, then walked again to copy. */

struct item {
    const struct model_tensor *t;
    const char *what;      /* for messages */
    bool vec;              /* convert to f32 */
    size_t off, bytes;     /* in the arena */
    struct kv_dmat *mat;   /* receives the matrix, or */
    float **vp;            /* receives the vector pointer */
};

struct plan {
    struct item *it;
    size_t n, cap;
    size_t bytes;
};

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static int plan_add(struct plan *p, const struct model_tensor *t, const char *what, bool vec,
                    struct kv_dmat *mat, float **vp)
{
    if (!t->data)
        return 0; /* absent tensor: the pointer stays NULL */
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        struct item *ni = (struct item *)realloc(p->it, nc * sizeof *ni);
        if (!ni)
            return -1;
        p->it = ni;
        p->cap = nc;
    }
    struct item *i = &p->it[p->n++];
    i->t = t;
    i->what = what;
    i->vec = vec;
    /* Matrices take their device rows (wformat.cuh: repacked, padded). */
    i->bytes = vec ? (size_t)(t->ne0 * t->ne1) * sizeof(float)
                   : kv_row_bytes((enum ggml_type)t->type, t->ne0) * (size_t)t->ne1;
    i->off = p->bytes;
    i->mat = mat;
    i->vp = vp;
    p->bytes = align_up(p->bytes + i->bytes, ARENA_ALIGN);
    return 0;
}

static int build_plan(struct cuda_backend *b, struct plan *p)
{
    const struct model *m = b->m;
    int rc = 0;
    rc |= plan_add(p, &m->tok_embd, "token_embd", false, &b->tok_embd, NULL);
    /* Tied output: the same file bytes, uploaded once (the matrix is copied
     * from tok_embd after the upload). */
    if (m->output.data != m->tok_embd.data)
        rc |= plan_add(p, &m->output, "output", false, &b->output, NULL);
    rc |= plan_add(p, &m->output_norm, "output_norm", true, NULL, &b->output_norm);
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        const struct model_layer *L = &m->layers[il];
        struct dlayer *D = &b->layers[il];
        rc |= plan_add(p, &L->attn_norm, "attn_norm", true, NULL, &D->attn_norm);
        rc |= plan_add(p, &L->wq, "attn_q", false, &D->wq, NULL);
        rc |= plan_add(p, &L->wk, "attn_k", false, &D->wk, NULL);
        rc |= plan_add(p, &L->wv, "attn_v", false, &D->wv, NULL);
        rc |= plan_add(p, &L->bq, "attn_q.bias", true, NULL, &D->bq);
        rc |= plan_add(p, &L->bk, "attn_k.bias", true, NULL, &D->bk);
        rc |= plan_add(p, &L->bv, "attn_v.bias", true, NULL, &D->bv);
        rc |= plan_add(p, &L->q_norm, "attn_q_norm", true, NULL, &D->q_norm);
        rc |= plan_add(p, &L->k_norm, "attn_k_norm", true, NULL, &D->k_norm);
        rc |= plan_add(p, &L->wo, "attn_output", false, &D->wo, NULL);
        rc |= plan_add(p, &L->bo, "attn_output.bias", true, NULL, &D->bo);
        rc |= plan_add(p, &L->attn_sinks, "attn_sinks", true, NULL, &D->sinks);
        rc |= plan_add(p, &L->post_attn_norm, "post_attention_norm", true, NULL,
                       &D->post_attn_norm);
        rc |= plan_add(p, &L->ffn_norm, "ffn_norm", true, NULL, &D->ffn_norm);
        rc |= plan_add(p, &L->ffn_gate, "ffn_gate", false, &D->gate, NULL);
        rc |= plan_add(p, &L->ffn_up, "ffn_up", false, &D->up, NULL);
        rc |= plan_add(p, &L->ffn_down, "ffn_down", false, &D->down, NULL);
        rc |= plan_add(p, &L->ffn_gate_inp, "ffn_gate_inp", false, &D->router, NULL);
        rc |= plan_add(p, &L->ffn_gate_exps, "ffn_gate_exps", false, &D->gate_exps, NULL);
        rc |= plan_add(p, &L->ffn_up_exps, "ffn_up_exps", false, &D->up_exps, NULL);
        rc |= plan_add(p, &L->ffn_down_exps, "ffn_down_exps", false, &D->down_exps, NULL);
        rc |= plan_add(p, &L->ffn_gate_inp_b, "ffn_gate_inp.bias", true, NULL, &D->router_b);
        rc |= plan_add(p, &L->ffn_gate_exps_b, "ffn_gate_exps.bias", true, NULL, &D->gate_exps_b);
        rc |= plan_add(p, &L->ffn_up_exps_b, "ffn_up_exps.bias", true, NULL, &D->up_exps_b);
        rc |= plan_add(p, &L->ffn_down_exps_b, "ffn_down_exps.bias", true, NULL, &D->down_exps_b);
        rc |= plan_add(p, &L->ffn_gate_inp_shexp, "ffn_gate_inp_shexp", false, &D->sh_gate_inp,
                       NULL);
        rc |= plan_add(p, &L->ffn_gate_shexp, "ffn_gate_shexp", false, &D->gate_sh, NULL);
        rc |= plan_add(p, &L->ffn_up_shexp, "ffn_up_shexp", false, &D->up_sh, NULL);
        rc |= plan_add(p, &L->ffn_down_shexp, "ffn_down_shexp", false, &D->down_sh, NULL);
        rc |= plan_add(p, &L->post_ffw_norm, "post_ffw_norm", true, NULL, &D->post_ffw_norm);
        D->swa = L->swa;
    }
    return rc ? -1 : 0;
}

/* Checks that every matrix can be decoded; fills the format fields. */
static int check_plan(const struct plan *p, char *err, size_t errlen)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct item *it = &p->it[i];
        if (it->vec) {
            if (!quant_type_supported(it->t->type) ||
                (it->t->ne0 * it->t->ne1) % quant_block_size(it->t->type)) {
                snprintf(err, errlen, "CUDA backend: tensor %s has type %s, which it cannot read",
                         it->what, quant_type_name(it->t->type));
                return -1;
            }
            continue;
        }
        enum kv_wfmt f = kv_wfmt_of(it->t->type, it->t->ne0);
        if (f == KV_WF_NONE) {
            snprintf(err, errlen,
                     "CUDA backend: tensor %s has type %s with rows of %lld, which it cannot "
                     "compute with",
                     it->what, quant_type_name(it->t->type), (long long)it->t->ne0);
            return -1;
        }
        it->mat->fmt = f;
        it->mat->ggml_type = it->t->type;
        it->mat->ncols = it->t->ne0;
        it->mat->nrows = it->t->ne1;
        it->mat->row_bytes = kv_row_bytes((enum ggml_type)it->t->type, it->t->ne0);
    }
    return 0;
}

/* Host-to-device copy of NBYTES through the two pinned buffers, so the copy
 * of one chunk overlaps the memcpy into the other. */
struct stager {
    void *pin[2];
    cudaEvent_t ev[2];
    int next;
    bool ok;
};

static int stage_copy(struct cuda_backend *b, struct stager *s, void *dst, const void *src,
                      size_t nbytes)
{
    if (!s->ok)
        return CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyHostToDevice), b->err,
                          sizeof b->err);
    size_t done = 0;
    while (done < nbytes) {
        size_t c = nbytes - done < STAGE_BYTES ? nbytes - done : STAGE_BYTES;
        int i = s->next;
        s->next ^= 1;
        if (CUDA_CHECK(cudaEventSynchronize(s->ev[i]), b->err, sizeof b->err))
            return -1;
        memcpy(s->pin[i], (const uint8_t *)src + done, c);
        if (CUDA_CHECK(cudaMemcpyAsync((uint8_t *)dst + done, s->pin[i], c, cudaMemcpyHostToDevice,
                                       b->st),
                       b->err, sizeof b->err) ||
            CUDA_CHECK(cudaEventRecord(s->ev[i], b->st), b->err, sizeof b->err))
            return -1;
        done += c;
    }
    return 0;
}

/* Host-to-device copy of matrix IT in its device layout: whole rows
 * repacked (kv_repack_rows) straight into the pinned buffers, as many as
 * fit, so the repack costs no extra pass over the weights; without pinned
 * buffers (or for a row larger than one) through a pageable bounce buffer. */
static int stage_matrix(struct cuda_backend *b, struct stager *s, uint8_t *dst,
                        const struct item *it)
{
    const struct kv_dmat *m = it->mat;
    const uint8_t *src = (const uint8_t *)it->t->data;
    size_t src_rb = quant_row_size(it->t->type, m->ncols), rb = m->row_bytes;
    int64_t per = (int64_t)(STAGE_BYTES / rb);
    bool pinned = s->ok && per >= 1;
    if (per < 1)
        per = 1;
    uint8_t *bounce = NULL;
    if (!pinned && !(bounce = (uint8_t *)malloc((size_t)per * rb))) {
        snprintf(b->err, sizeof b->err, "CUDA backend: out of host memory repacking %s", it->what);
        return -1;
    }
    int rc = 0;
    for (int64_t r = 0; r < m->nrows && rc == 0; r += per) {
        int64_t c = m->nrows - r < per ? m->nrows - r : per;
        if (!pinned) {
            kv_repack_rows(m->fmt, src + r * src_rb, bounce, c, m->ncols, src_rb, rb);
            rc = CUDA_CHECK(cudaMemcpy(dst + r * rb, bounce, (size_t)c * rb,
                                       cudaMemcpyHostToDevice),
                            b->err, sizeof b->err);
            continue;
        }
        int i = s->next;
        s->next ^= 1;
        if (CUDA_CHECK(cudaEventSynchronize(s->ev[i]), b->err, sizeof b->err))
            return -1;
        kv_repack_rows(m->fmt, src + r * src_rb, s->pin[i], c, m->ncols, src_rb, rb);
        rc = CUDA_CHECK(cudaMemcpyAsync(dst + r * rb, s->pin[i], (size_t)c * rb,
                                        cudaMemcpyHostToDevice, b->st),
                        b->err, sizeof b->err) ||
             CUDA_CHECK(cudaEventRecord(s->ev[i], b->st), b->err, sizeof b->err);
    }
    free(bounce);
    return rc ? -1 : 0;
}

static int upload(struct cuda_backend *b, const struct plan *p)
{
    struct stager s;
    memset(&s, 0, sizeof s);
    s.ok = true;
    for (int i = 0; i < 2 && s.ok; i++) {
        if (cudaHostAlloc(&s.pin[i], STAGE_BYTES, cudaHostAllocDefault) != cudaSuccess ||
            cudaEventCreateWithFlags(&s.ev[i], cudaEventDisableTiming) != cudaSuccess) {
            s.ok = false; /* fall back to pageable copies: slower, still right */
            (void)cudaGetLastError();
        }
    }
    int rc = 0;
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        const struct item *it = &p->it[i];
        uint8_t *dst = b->arena + it->off;
        if (it->vec) {
            int64_t n = it->t->ne0 * it->t->ne1;
            float *f = (float *)malloc((size_t)n * sizeof *f);
            if (!f) {
                snprintf(b->err, sizeof b->err, "CUDA backend: out of host memory converting %s",
                         it->what);
                rc = -1;
                break;
            }
            quant_dequantize_row(it->t->type, it->t->data, f, n);
            /* The staging buffer must be free again before F is freed. */
            rc = stage_copy(b, &s, dst, f, (size_t)n * sizeof *f);
            if (rc == 0)
                rc = CUDA_CHECK(cudaStreamSynchronize(b->st), b->err, sizeof b->err);
            free(f);
            *it->vp = (float *)dst;
        } else {
            rc = stage_matrix(b, &s, dst, it);
            it->mat->d = dst;
        }
    }
    if (rc == 0)
        rc = CUDA_CHECK(cudaStreamSynchronize(b->st), b->err, sizeof b->err);
    for (int i = 0; i < 2; i++) {
        if (s.ev[i])
            cudaEventDestroy(s.ev[i]);
        if (s.pin[i])
            cudaFreeHost(s.pin[i]);
    }
    return rc;
}

/* ---- scratch layout ---- */

struct carve {
    uint8_t *base;
    size_t off;
};

static void *carve(struct carve *c, size_t bytes)
{
    void *p = c->base ? c->base + c->off : NULL;
    c->off = align_up(c->off + bytes, ARENA_ALIGN);
    return p;
}

/* Lays the scratch out from BASE (NULL: only measures); returns its size. */
static size_t layout_scratch(struct cuda_backend *b, uint8_t *base)
{
    const struct model_hparams *hp = &b->m->hp;
    const size_t ub = (size_t)b->ub, E = (size_t)hp->n_embd;
    const size_t F = (size_t)(hp->n_ff > hp->n_ff_shexp ? hp->n_ff : hp->n_ff_shexp);
    const size_t NX = (size_t)hp->n_expert, K = NX ? (size_t)hp->n_expert_used : 0;
    const size_t FX = NX ? (size_t)hp->n_ff_exp : 0, FS = hp->n_ff_shexp > 0 ? 1 : 0;
    const size_t QD = (size_t)hp->n_head * hp->head_dim, KD = (size_t)hp->n_head_kv * hp->head_dim;
    size_t amax = E > QD ? E : QD;
    amax = amax > F ? amax : F;
    struct carve c = {base, 0};
    b->x = (float *)carve(&c, ub * E * 4);
    b->xn = (float *)carve(&c, ub * E * 4);
    b->tmp = (float *)carve(&c, ub * E * 4);
    b->q = (float *)carve(&c, ub * QD * 4);
    b->ao = (float *)carve(&c, ub * QD * 4);
    b->k = (float *)carve(&c, ub * KD * 4);
    b->v = (float *)carve(&c, ub * KD * 4);
    b->g = (float *)carve(&c, ub * F * 4);
    b->u = (float *)carve(&c, ub * F * 4);
    b->moe_logits = (float *)carve(&c, ub * NX * 4);
    b->moe_ids = (int32_t *)carve(&c, ub * K * 4);
    b->moe_w = (float *)carve(&c, ub * K * 4);
    b->moe_h = (float *)carve(&c, ub * K * FX * 4);
    b->moe_h2 = (float *)carve(&c, ub * K * FX * 4);
    b->moe_y = (float *)carve(&c, ub * K * E * 4);
    b->sh_z = (float *)carve(&c, ub * FS * 4);
    b->sh_out = (float *)carve(&c, ub * FS * E * 4);
    b->part = (float *)carve(&c, (size_t)b->part_rows * hp->n_head * (hp->head_dim + 2) * 4);
    b->logits = (float *)carve(&c, (size_t)b->logit_rows * hp->n_vocab * 4);
    b->abf = (__nv_bfloat16 *)carve(&c, ub * amax * 2);
    b->wbf = (__nv_bfloat16 *)carve(&c, (size_t)b->wbf_elems * 2);
    const size_t aq = (size_t)b->ap_chunk * hp->n_head; /* query rows of a pass */
    b->ap_q = (__nv_bfloat16 *)carve(&c, aq * hp->head_dim * 2);
    b->ap_k = (__nv_bfloat16 *)carve(&c, (size_t)AP_TILE * KD * 2);
    b->ap_v = (__nv_bfloat16 *)carve(&c, (size_t)AP_TILE * KD * 2);
    b->ap_s = (float *)carve(&c, aq * AP_TILE * 4);
    b->ap_p = (__nv_bfloat16 *)carve(&c, aq * AP_TILE * 2);
    b->ap_acc = (float *)carve(&c, aq * hp->head_dim * 4);
    b->ap_ml = (float2 *)carve(&c, aq * sizeof(float2));
    b->ids = (int32_t *)carve(&c, ub * 4);
    b->inv_freq = (float *)carve(&c, (size_t)(hp->n_rot > 0 ? hp->n_rot : 1) * 4);
    b->step = (struct kv_step_in *)carve(&c, sizeof(struct kv_step_in));
    b->pick = (int32_t *)carve(&c, 2 * sizeof(int32_t));
    b->sample_tmp = carve(&c, kv_sample_scratch_bytes(hp->n_vocab));
    return c.off;
}

static void cuda_destroy(void *vb)
{
    struct cuda_backend *b = (struct cuda_backend *)vb;
    if (!b)
        return;
    if (b->have_stream)
        cudaStreamSynchronize(b->st);
    if (b->graph)
        cudaGraphExecDestroy(b->graph);
    if (b->step_host)
        cudaFreeHost(b->step_host);
    if (b->pick_host)
        cudaFreeHost(b->pick_host);
    cudaFree(b->arena);
    cudaFree(b->kv);
    cudaFree(b->scratch);
    if (b->have_blas)
        cublasDestroy(b->blas);
    if (b->have_stream)
        cudaStreamDestroy(b->st);
    (void)cudaGetLastError();
    free(b->layers);
    free(b);
}

/* The rotation speeds of both layer kinds (global, then sliding-window:
 * gemma3's ignore rope scaling, model.c sets rope_scale_local so) into
 * b->inv_freq, their cos/sin factors into b->mscale. */
static int upload_inv_freq(struct cuda_backend *b)
{
    const struct model *m = b->m;
    const struct model_hparams *hp = &m->hp;
    int half = hp->n_rot / 2;
    b->mscale[0] = b->mscale[1] = 1.0f;
    if (half <= 0)
        return 0;
    float *inv = (float *)malloc(sizeof(float) * 2 * (size_t)half);
    float *ff = m->rope_freqs.data ? (float *)malloc(sizeof(float) * (size_t)half) : NULL;
    if (!inv || (m->rope_freqs.data && !ff)) {
        free(inv);
        free(ff);
        snprintf(b->err, sizeof b->err, "CUDA backend: out of host memory");
        return -1;
    }
    if (ff)
        quant_dequantize_row(m->rope_freqs.type, m->rope_freqs.data, ff, half);
    model_rope_inv_freq(hp, hp->rope_base, hp->rope_freq_scale, ff, inv, &b->mscale[0]);
    model_rope_inv_freq(hp, hp->rope_base_local, hp->rope_scale_local, ff, inv + half, &b->mscale[1]);
    int rc = CUDA_CHECK(cudaMemcpy(b->inv_freq, inv, sizeof(float) * 2 * (size_t)half,
                                   cudaMemcpyHostToDevice),
                        b->err, sizeof b->err);
    free(inv);
    free(ff);
    return rc;
}

static double mib(uint64_t x) { return (double)x / (1024.0 * 1024.0); }

/* Refuses shapes the kernels do not take; 0 or -1 with ERR. */
static int check_shape(const struct model *m, const struct backend_config *cfg, char *err,
                       size_t errlen)
{
    const struct model_hparams *hp = &m->hp;
    if (cfg->n_ctx <= 0) {
        snprintf(err, errlen, "CUDA backend: context size %d must be positive", cfg->n_ctx);
        return -1;
    }
    /* The attention kernels read an f16 or a q8_0 cache: nothing else is
     * stored. The names are spelled here because this module links nothing
     * of the engine's. */
    if (cfg->kv_type != ENGINE_KV_AUTO && cfg->kv_type != ENGINE_KV_F16 &&
        cfg->kv_type != ENGINE_KV_Q8_0) {
        const char *name = cfg->kv_type == ENGINE_KV_F32 ? "f32" : "?";
        snprintf(err, errlen, "CUDA backend: --kv-type %s is not supported (the cache is f16 "
                 "or q8_0): use --kv-type f16 or q8_0, or --backend cpu for %s", name, name);
        return -1;
    }
    if (cfg->kv_type == ENGINE_KV_Q8_0 && hp->head_dim % 32) {
        snprintf(err, errlen, "CUDA backend: --kv-type q8_0 needs a head size that is a "
                 "multiple of 32, and this model's is %d: use --kv-type f16", hp->head_dim);
        return -1;
    }
    if (hp->head_dim <= 0 || hp->head_dim % 2 || hp->head_dim > KV_ATTN_MAX_HD) {
        snprintf(err, errlen, "CUDA backend: head size %d is not supported (even, at most %d)",
                 hp->head_dim, KV_ATTN_MAX_HD);
        return -1;
    }
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv || hp->n_rot % 2 ||
        hp->n_rot > hp->head_dim) {
        snprintf(err, errlen,
                 "CUDA backend: %d heads over %d KV heads with %d rotated dims is not supported",
                 hp->n_head, hp->n_head_kv, hp->n_rot);
        return -1;
    }
    return 0;
}

/* A backend with everything but device memory: the model, the context and
 * the host-side layer table. NULL with ERR. */
static struct cuda_backend *backend_new(const struct model *m, const struct backend_config *cfg,
                                        char *err, size_t errlen)
{
    if (check_shape(m, cfg, err, errlen))
        return NULL;
    struct cuda_backend *b = (struct cuda_backend *)calloc(1, sizeof *b);
    if (b)
        b->layers = (struct dlayer *)calloc((size_t)m->hp.n_layer, sizeof *b->layers);
    if (!b || !b->layers) {
        snprintf(err, errlen, "CUDA backend: out of host memory");
        cuda_destroy(b);
        return NULL;
    }
    b->m = m;
    b->n_ctx = cfg->n_ctx;
    b->kv_q8 = cfg->kv_type == ENGINE_KV_Q8_0;
    return b;
}

/* Sizes the scratch for b->ub tokens a micro-batch. Only the decode
 * attention (up to KV_ATTN_DEC_MAX_TOK tokens) uses the split partials: room
 * for its most splits at its most tokens. */
static void size_scratch(struct cuda_backend *b)
{
    const struct model_hparams *hp = &b->m->hp;
    b->part_rows = KV_ATTN_DEC_MAX_SPLIT * KV_ATTN_DEC_MAX_TOK;
    int64_t lr = LOGITS_MAX_FLOATS / hp->n_vocab;
    b->logit_rows = (int32_t)(lr < 1 ? 1 : (lr > b->ub ? b->ub : lr));
    int64_t qc = AP_MAX_SCORES / ((int64_t)hp->n_head * AP_TILE);
    b->ap_chunk = (int32_t)(qc < 1 ? 1 : (qc > b->ub ? b->ub : qc));
    b->scratch_bytes = layout_scratch(b, NULL);
}

/* Plans the upload into P and sizes the arena, the KV cache and the scratch
 * (no device call). 0, or -1 with the reason in b->err. */
static int size_backend(struct cuda_backend *b, struct plan *p)
{
    const struct model *m = b->m;
    const struct model_hparams *hp = &m->hp;
    /* The router kernel's limit (model.c already holds 1 <= used <= count). */
    if (hp->n_expert > KV_MOE_MAX_EXPERT) {
        snprintf(b->err, sizeof b->err,
                 "CUDA backend: mixture-of-experts models of %d experts are not supported (at "
                 "most %d): use --backend cpu",
                 (int)hp->n_expert, KV_MOE_MAX_EXPERT);
        return -1;
    }
    if (build_plan(b, p)) {
        snprintf(b->err, sizeof b->err, "CUDA backend: out of host memory");
        return -1;
    }
    if (check_plan(p, b->err, sizeof b->err))
        return -1;
    if (m->output.data == m->tok_embd.data)
        b->output = b->tok_embd; /* the pointer is set after the upload */

    b->ub = b->n_ctx < UB_MAX ? b->n_ctx : UB_MAX;
    int64_t big = 0, widest = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->it[i].vec)
            continue;
        int64_t e = p->it[i].t->ne0 * p->it[i].t->ne1;
        big = e > big ? e : big;
        widest = p->it[i].t->ne0 > widest ? p->it[i].t->ne0 : widest;
    }
    b->wbf_elems = big < WBF_MAX_ELEMS ? big : WBF_MAX_ELEMS;
    if (b->wbf_elems < widest)
        b->wbf_elems = widest; /* at least one row per chunk */
    b->arena_bytes = p->bytes;
    /* f16: 2 bytes an element; q8_0: a code byte, and 2 scale bytes per 32 */
    const size_t kv_elems = 2 * (size_t)hp->n_layer * hp->n_head_kv * (size_t)b->n_ctx *
                            hp->head_dim;
    b->kv_bytes = b->kv_q8 ? kv_elems + kv_elems / 32 * sizeof(__half)
                           : kv_elems * sizeof(__half);
    size_scratch(b);
    return 0;
}

/* The one memory estimate of this backend, from a sized backend. */
static void estimate_of(const struct cuda_backend *b, struct backend_estimate *out)
{
    out->weights = b->arena_bytes;
    out->kv_cache = b->kv_bytes;
    out->scratch = b->scratch_bytes;
    out->reserve = RESERVE_BYTES;
    out->total = out->weights + out->kv_cache + out->scratch + out->reserve;
}

static int cuda_estimate(const struct model *m, const struct backend_config *cfg,
                         struct backend_estimate *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct cuda_backend *b = backend_new(m, cfg, err, errlen);
    if (!b)
        return -1;
    struct plan p = {NULL, 0, 0, 0};
    int rc = size_backend(b, &p);
    if (rc == 0)
        estimate_of(b, out);
    else
        snprintf(err, errlen, "%s", b->err);
    free(p.it);
    cuda_destroy(b);
    return rc;
}

static void *cuda_create(const struct model *m, const struct backend_config *cfg, char *err,
                         size_t errlen)
{
    const struct model_hparams *hp = &m->hp;
    struct plan p = {NULL, 0, 0, 0};
    struct backend_estimate est;
    struct cuda_backend *b = backend_new(m, cfg, err, errlen);
    if (!b)
        return NULL;

    cudaDeviceProp prop;
    if (CUDA_CHECK(cudaSetDevice(0), b->err, sizeof b->err) ||
        CUDA_CHECK(cudaGetDeviceProperties(&prop, 0), b->err, sizeof b->err))
        goto fail;
    snprintf(b->name, sizeof b->name, "%s", prop.name);
    b->n_sm = prop.multiProcessorCount;

    if (size_backend(b, &p))
        goto fail;
    estimate_of(b, &est);
    {
        size_t fr = 0, tot = 0;
        if (CUDA_CHECK(cudaMemGetInfo(&fr, &tot), b->err, sizeof b->err))
            goto fail;
        /* Short of memory: smaller micro-batches before giving up (each
         * weight chunk then serves fewer tokens, which only costs speed). */
        while (est.total > fr && b->ub > UB_MIN) {
            b->ub /= 2;
            size_scratch(b);
            estimate_of(b, &est);
        }
        if (est.total > fr) {
            snprintf(b->err, sizeof b->err,
                     "CUDA backend: not enough memory on %s: need %.0f MiB (weights %.0f, KV "
                     "cache %.0f for %d tokens, scratch %.0f, reserve %.0f), %.0f MiB "
                     "free; lower --ctx-size or use a smaller quantisation",
                     b->name, mib(est.total), mib(est.weights), mib(est.kv_cache), b->n_ctx,
                     mib(est.scratch), mib(est.reserve), mib(fr));
            goto fail;
        }
    }

    if (CUDA_CHECK(cudaStreamCreateWithFlags(&b->st, cudaStreamNonBlocking), b->err,
                   sizeof b->err))
        goto fail;
    b->have_stream = true;
    if (CUBLAS_CHECK(cublasCreate(&b->blas), b->err, sizeof b->err))
        goto fail;
    b->have_blas = true;
    if (CUBLAS_CHECK(cublasSetStream(b->blas, b->st), b->err, sizeof b->err))
        goto fail;

    if (CUDA_CHECK(cudaMalloc((void **)&b->arena, b->arena_bytes), b->err, sizeof b->err) ||
        CUDA_CHECK(cudaMalloc((void **)&b->kv, b->kv_bytes), b->err, sizeof b->err) ||
        CUDA_CHECK(cudaMalloc((void **)&b->scratch, b->scratch_bytes), b->err, sizeof b->err)) {
        size_t fr = 0, tot = 0;
        (void)cudaMemGetInfo(&fr, &tot);
        b->err[0] = 0;
        snprintf(b->err, sizeof b->err,
                 "CUDA backend: allocating %.0f MiB on %s failed with %.0f MiB free; lower "
                 "--ctx-size or use a smaller quantisation",
                 mib((uint64_t)b->arena_bytes + b->kv_bytes + b->scratch_bytes), b->name,
                 mib(fr));
        goto fail;
    }
    layout_scratch(b, b->scratch);
    if (CUDA_CHECK(cudaHostAlloc((void **)&b->step_host, sizeof *b->step_host,
                                 cudaHostAllocDefault),
                   b->err, sizeof b->err) ||
        CUDA_CHECK(cudaHostAlloc((void **)&b->pick_host, 2 * sizeof(int32_t),
                                 cudaHostAllocDefault),
                   b->err, sizeof b->err))
        goto fail;
    {
        /* KV of layer il: K then V, each (n_kv, n_ctx, hd). The cache is not
         * cleared: forward() only reads positions it has written. q8_0:
         * every layer's codes first (each part a multiple of 32 bytes, so
         * every part stays 16-byte aligned), then every layer's scales. */
        size_t per = (size_t)hp->n_head_kv * b->n_ctx * hp->head_dim;
        __half *kv = (__half *)b->kv;
        int8_t *codes = (int8_t *)b->kv;
        __half *scales = (__half *)(b->kv + 2 * (size_t)hp->n_layer * per);
        for (int32_t il = 0; il < hp->n_layer; il++) {
            struct dlayer *L = &b->layers[il];
            if (b->kv_q8) {
                L->kq.q = codes + (2 * (size_t)il) * per;
                L->vq.q = codes + (2 * (size_t)il + 1) * per;
                L->kq.d = scales + (2 * (size_t)il) * (per / 32);
                L->vq.d = scales + (2 * (size_t)il + 1) * (per / 32);
                continue;
            }
            L->kc = kv + (2 * (size_t)il) * per;
            L->vc = kv + (2 * (size_t)il + 1) * per;
        }
    }
    if (upload(b, &p) || upload_inv_freq(b))
        goto fail;
    if (m->output.data == m->tok_embd.data)
        b->output.d = b->tok_embd.d;
    free(p.it);
    return b;

fail:
    snprintf(err, errlen, "%s", b->err[0] ? b->err : "CUDA backend: initialisation failed");
    free(p.it);
    cuda_destroy(b);
    return NULL;
}

/* ---- forward ---- */

/* OUT (n x w.nrows) = IN (n x w.ncols) W^T (+ BIAS), or OUT += that when
 * ACCUM, IN normed by NORM first when NORM is set (one token only: the
 * norm is then the matvec's prologue; several rows are normed into b->xn
 * by the caller, once for all the projections that read them, see
 * norm_input). One token: the matvec kernel with bias/residual fused. Several:
 * bf16 activations times bf16 weights through cublasGemmEx with fp32
 * accumulation and output; ACCUM is beta = 1 on OUT. BF16 weights are read
 * as they are; every other format is dequantised to bf16 WBF_MAX_ELEMS at a
 * time. F16 weights are converted too: cuBLAS takes no f16 x bf16 product,
 * and f16 activations could overflow, so the weights take the activations'
 * type (a 16-bit copy per chunk, f16's extra 3 bits of mantissa rounded
 * away, as the activations' are). */
static int proj_norm(struct cuda_backend *b, const struct kv_dmat *w, const float *in,
                     const float *norm, int32_t n, const float *bias, float *out, bool accum)
{
    char *e = b->err;
    const size_t el = sizeof b->err;
    if (n == 1)
        return CUDA_CHECK(kv_matvec_norm(w, in, norm, b->m->hp.norm_eps, bias,
                                         accum ? out : NULL, out, b->st),
                          e, el);
    if (CUDA_CHECK(kv_f32_to_bf16(in, b->abf, (int64_t)n * w->ncols, b->st), e, el))
        return -1;
    const bool direct = w->fmt == KV_WF_BF16 || w->fmt == KV_WF_BF16_S;
    int64_t chunk = direct ? w->nrows : b->wbf_elems / w->ncols;
    const float alpha = 1.0f, beta = accum ? 1.0f : 0.0f;
    for (int64_t r0 = 0; r0 < w->nrows; r0 += chunk) {
        int64_t cr = w->nrows - r0 < chunk ? w->nrows - r0 : chunk;
        const __nv_bfloat16 *wt = (const __nv_bfloat16 *)w->d;
        if (!direct) {
            if (CUDA_CHECK(kv_dequant_bf16(w, r0, cr, b->wbf, b->st), e, el))
                return -1;
            wt = b->wbf;
        }
        /* Column-major view: WT is ncols x cr (lda ncols), ABF is ncols x n,
         * OUT is nrows x n; OUT[r0..] = WT^T ABF. */
        if (CUBLAS_CHECK(cublasGemmEx(b->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)cr, n,
                                      (int)w->ncols, &alpha, wt, CUDA_R_16BF, (int)w->ncols,
                                      b->abf, CUDA_R_16BF, (int)w->ncols, &beta, out + r0,
                                      CUDA_R_32F, (int)w->nrows, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT),
                         e, el))
            return -1;
    }
    if (bias && CUDA_CHECK(kv_add_bias(out, bias, n, (int32_t)w->nrows, b->st), e, el))
        return -1;
    return 0;
}

static int proj(struct cuda_backend *b, const struct kv_dmat *w, const float *in, int32_t n,
                const float *bias, float *out, bool accum)
{
    return proj_norm(b, w, in, NULL, n, bias, out, accum);
}

/* The input of the projections after an RMSNorm by NORM of X (N rows): one
 * token reads X and norms it in each matvec's prologue (*NW = NORM: n_embd
 * floats a block, cheaper than a launch and the xn round trip); several
 * rows are normed once into b->xn for the GEMMs (*NW = NULL). */
static int norm_input(struct cuda_backend *b, const float *x, const float *norm, int32_t n,
                      const float **in, const float **nw)
{
    const struct model_hparams *hp = &b->m->hp;
    if (n == 1) {
        *in = x, *nw = norm;
        return 0;
    }
    *in = b->xn, *nw = NULL;
    return CUDA_CHECK(kv_rmsnorm(x, norm, NULL, b->xn, n, hp->n_embd, hp->norm_eps, b->st),
                      b->err, sizeof b->err);
}

/* Prefill attention (N > 1 queries at POS) of layer L into b->ao. */
static int attn_prefill(struct cuda_backend *b, const struct dlayer *L, int32_t n, int32_t pos)
{
    const struct model_hparams *hp = &b->m->hp;
    struct kv_attn_prefill_args a;
    a.q = b->q;
    a.kc = L->kc;
    a.vc = L->vc;
    a.kq = L->kq;
    a.vq = L->vq;
    a.out = b->ao;
    a.n_tok = n;
    a.n_head = hp->n_head;
    a.n_kv = hp->n_head_kv;
    a.hd = hp->head_dim;
    a.n_ctx = b->n_ctx;
    a.pos0 = pos;
    a.swa = L->swa ? hp->swa_window : 0;
    a.scale = hp->attn_scale;
    a.q_chunk = b->ap_chunk;
    a.tile = AP_TILE;
    a.qb = b->ap_q;
    a.kb = b->ap_k;
    a.vb = b->ap_v;
    a.s = b->ap_s;
    a.p = b->ap_p;
    a.acc = b->ap_acc;
    a.ml = b->ap_ml;
    a.sinks = L->sinks;
    return kv_attention_prefill(&a, b->blas, b->st, b->err, sizeof b->err);
}

/* The gated FFN down(act(gate IN) * up IN) of N tokens into OUT (added to
 * it when ACCUM), IN normed by NW in the matvecs' prologue when set (one
 * token; norm_input says when). One token with gate and up in one format:
 * one kernel stores act(gate) * up; otherwise the two projections and
 * kv_glu. The hidden state goes through b->g (and b->u). */
static int ffn_dense(struct cuda_backend *b, const struct kv_dmat *gate, const struct kv_dmat *up,
                     const struct kv_dmat *down, const float *in, const float *nw, int32_t n,
                     bool gelu, float *out, bool accum)
{
    const float eps = b->m->hp.norm_eps;
    char *e = b->err;
    const size_t el = sizeof b->err;
    if (n == 1 && kv_matvec_glu_fuses(gate, up)) {
        if (CUDA_CHECK(kv_matvec_glu(gate, up, in, nw, eps, gelu, b->g, b->st), e, el))
            return -1;
    } else if (proj_norm(b, gate, in, nw, n, NULL, b->g, false) ||
               proj_norm(b, up, in, nw, n, NULL, b->u, false) ||
               CUDA_CHECK(kv_glu(b->g, b->u, (int64_t)n * gate->nrows, gelu, b->st), e, el)) {
        return -1;
    }
    return proj(b, down, b->g, n, NULL, out, accum);
}

/* The mixture-of-experts FFN of layer L for N tokens, cpu.c's moe_ffn:
 * OUT = (ADD) + sum over each token's K experts of weight * expert(IN)
 * (+ sigmoid(gate . IN) * shared(IN) with a shared expert), IN normed by
 * NW as in ffn_dense. The router's logits, the choice and every expert
 * product stay on the device (kv_moe_route writes the ids the expert
 * matvecs read), so the decode step is still one graph, and a token reads
 * only its K experts' rows. Any N takes the same kernels: the router and
 * the experts as batched matvecs over tokens and (token, slot) pairs
 * (NOTES.md, MoE v1: why not a GEMM per expert), so a prompt chooses
 * exactly the experts token-by-token decoding would. The shared expert is
 * a dense FFN (GEMMs for N > 1). */
static_assert((int)KV_MOE_SOFTMAX == (int)MODEL_GATING_SOFTMAX &&
                  (int)KV_MOE_SOFTMAX_TOPK == (int)MODEL_GATING_SOFTMAX_TOPK &&
                  (int)KV_MOE_SIGMOID == (int)MODEL_GATING_SIGMOID,
              "kv_moe_route takes model.h's gating as it is");
static int ffn_moe(struct cuda_backend *b, const struct dlayer *L, const float *in,
                   const float *nw, int32_t n, const float *add, float *out)
{
    const struct model_hparams *hp = &b->m->hp;
    char *e = b->err;
    const size_t el = sizeof b->err;
    cudaStream_t st = b->st;
    const int32_t NX = hp->n_expert, K = hp->n_expert_used, np = n * K;
    const float eps = hp->norm_eps;
    if (CUDA_CHECK(kv_matvec_x(&L->router, 1, NULL, n, 1, in, nw, eps, L->router_b,
                               b->moe_logits, st),
                   e, el) ||
        CUDA_CHECK(kv_moe_route(b->moe_logits, n, NX, K, (enum kv_moe_gating)hp->expert_gating,
                                hp->expert_weights_norm, hp->expert_weights_scale, b->moe_ids,
                                b->moe_w, st),
                   e, el))
        return -1;
    /* cpu.c's experts are SwiGLU whatever the dense FFN's activation;
     * gpt-oss's clamped, with bias rows on gate and up added before the
     * clamp, so those take the two matvecs (the bias in their epilogue) and
     * kv_glu_clamp: the fused store has no bias (NOTES.md, gpt-oss v1). */
    const int64_t nh = (int64_t)np * hp->n_ff_exp;
    if (hp->glu_clamped || L->gate_exps_b || L->up_exps_b) {
        if (CUDA_CHECK(kv_matvec_x(&L->gate_exps, NX, b->moe_ids, np, K, in, nw, eps,
                                   L->gate_exps_b, b->moe_h, st),
                       e, el) ||
            CUDA_CHECK(kv_matvec_x(&L->up_exps, NX, b->moe_ids, np, K, in, nw, eps, L->up_exps_b,
                                   b->moe_h2, st),
                       e, el) ||
            (hp->glu_clamped
                 ? CUDA_CHECK(kv_glu_clamp(b->moe_h, b->moe_h2, nh, hp->glu_alpha, hp->glu_limit,
                                           st),
                              e, el)
                 : CUDA_CHECK(kv_glu(b->moe_h, b->moe_h2, nh, false, st), e, el)))
            return -1;
    } else if (kv_matvec_glu_fuses(&L->gate_exps, &L->up_exps)) {
        if (CUDA_CHECK(kv_matvec_x_glu(&L->gate_exps, &L->up_exps, NX, b->moe_ids, np, K, in, nw,
                                       eps, false, b->moe_h, st),
                       e, el))
            return -1;
    } else if (CUDA_CHECK(kv_matvec_x(&L->gate_exps, NX, b->moe_ids, np, K, in, nw, eps, NULL,
                                      b->moe_h, st),
                          e, el) ||
               CUDA_CHECK(kv_matvec_x(&L->up_exps, NX, b->moe_ids, np, K, in, nw, eps, NULL,
                                      b->moe_h2, st),
                          e, el) ||
               CUDA_CHECK(kv_glu(b->moe_h, b->moe_h2, nh, false, st), e, el)) {
        return -1;
    }
    if (CUDA_CHECK(kv_matvec_x(&L->down_exps, NX, b->moe_ids, np, 1, b->moe_h, NULL, 0.0f,
                               L->down_exps_b, b->moe_y, st),
                   e, el))
        return -1;
    const bool shared = L->gate_sh.d != NULL;
    if (shared &&
        (CUDA_CHECK(kv_matvec_x(&L->sh_gate_inp, 1, NULL, n, 1, in, nw, eps, NULL, b->sh_z, st),
                    e, el) ||
         ffn_dense(b, &L->gate_sh, &L->up_sh, &L->down_sh, in, nw, n, false, b->sh_out, false)))
        return -1;
    return CUDA_CHECK(kv_moe_sum(b->moe_y, b->moe_w, n, K, hp->n_embd, shared ? b->sh_out : NULL,
                                 b->sh_z, add, out, st),
                      e, el);
}

/* One layer for N tokens at POS. POS_DEV set (a decode step, N = 1): the
 * position is read from device memory by the fused RoPE + KV store and by
 * attention, whose split count does not depend on it, so a graph captured
 * here replays at any position. */
static int layer_forward(struct cuda_backend *b, int32_t il, int32_t n, int32_t pos,
                         const int32_t *pos_dev)
{
    const struct model_hparams *hp = &b->m->hp;
    const struct dlayer *L = &b->layers[il];
    char *e = b->err;
    const size_t el = sizeof b->err;
    const int32_t E = hp->n_embd, hd = hp->head_dim;
    cudaStream_t st = b->st;

    /* One token with Q, K and V in one format: one launch. */
    const float *in, *nw;
    if (norm_input(b, b->x, L->attn_norm, n, &in, &nw))
        return -1;
    if (n == 1 && kv_matvec3_fuses(&L->wq, &L->wk, &L->wv)) {
        const struct kv_dmat *w3[3] = {&L->wq, &L->wk, &L->wv};
        const float *b3[3] = {L->bq, L->bk, L->bv};
        float *y3[3] = {b->q, b->k, b->v};
        if (CUDA_CHECK(kv_matvec3(w3, in, nw, hp->norm_eps, b3, y3, st), e, el))
            return -1;
    } else if (proj_norm(b, &L->wq, in, nw, n, L->bq, b->q, false) ||
               proj_norm(b, &L->wk, in, nw, n, L->bk, b->k, false) ||
               proj_norm(b, &L->wv, in, nw, n, L->bv, b->v, false)) {
        return -1;
    }
    if (L->q_norm && CUDA_CHECK(kv_rmsnorm(b->q, L->q_norm, NULL, b->q, (int64_t)n * hp->n_head,
                                           hd, hp->norm_eps, st),
                                e, el))
        return -1;
    if (L->k_norm && CUDA_CHECK(kv_rmsnorm(b->k, L->k_norm, NULL, b->k,
                                           (int64_t)n * hp->n_head_kv, hd, hp->norm_eps, st),
                                e, el))
        return -1;
    const float *inv = b->inv_freq + (L->swa ? hp->n_rot / 2 : 0);
    const float ms = b->mscale[L->swa ? 1 : 0];
    if (pos_dev) {
        if (b->kv_q8 ? CUDA_CHECK(kv_rope_store_q8(b->q, b->k, b->v, L->kq, L->vq, n, hp->n_head,
                                                   hp->n_head_kv, hd, hp->n_rot, pos_dev,
                                                   b->n_ctx, inv, ms, hp->rope_neox, st),
                                  e, el)
                     : CUDA_CHECK(kv_rope_store(b->q, b->k, b->v, L->kc, L->vc, n, hp->n_head,
                                                hp->n_head_kv, hd, hp->n_rot, pos_dev,
                                                b->n_ctx, inv, ms, hp->rope_neox, st),
                                  e, el))
            return -1;
    } else if (CUDA_CHECK(kv_rope(b->q, n, hp->n_head, hd, hp->n_rot, pos, inv, ms, hp->rope_neox,
                                  st),
                          e, el) ||
        CUDA_CHECK(kv_rope(b->k, n, hp->n_head_kv, hd, hp->n_rot, pos, inv, ms, hp->rope_neox, st),
                   e, el) ||
        (b->kv_q8 ? CUDA_CHECK(kv_store_kv_q8(b->k, b->v, L->kq, L->vq, n, hp->n_head_kv, hd, pos,
                                              b->n_ctx, st),
                               e, el)
                  : CUDA_CHECK(kv_store_kv(b->k, b->v, L->kc, L->vc, n, hp->n_head_kv, hd, pos,
                                           b->n_ctx, st),
                               e, el)))
        return -1;

    struct kv_attn_args a;
    a.q = b->q;
    a.kc = L->kc;
    a.vc = L->vc;
    a.kq = L->kq;
    a.vq = L->vq;
    a.out = b->ao;
    a.part = b->part;
    a.n_tok = n;
    a.n_head = hp->n_head;
    a.n_kv = hp->n_head_kv;
    a.hd = hd;
    a.n_ctx = b->n_ctx;
    a.pos0 = pos;
    a.swa = L->swa ? hp->swa_window : 0;
    a.scale = hp->attn_scale;
    a.sinks = L->sinks;
    /* A few queries (decode, short batches): the flash-decoding kernel, its
     * split count fixed by the context size, not pos; more: the tensor-core
     * prefill kernels. */
    if (n <= KV_ATTN_DEC_MAX_TOK) {
        a.n_split = kv_attn_decode_splits(b->n_sm, &a, b->part_rows / n);
        if (CUDA_CHECK(kv_attention_decode(&a, pos_dev, st), e, el))
            return -1;
    } else if (attn_prefill(b, L, n, pos)) {
        return -1;
    }

    if (L->post_attn_norm) {
        if (proj(b, &L->wo, b->ao, n, L->bo, b->tmp, false) ||
            CUDA_CHECK(kv_rmsnorm(b->tmp, L->post_attn_norm, b->x, b->x, n, E, hp->norm_eps, st),
                       e, el))
            return -1;
    } else if (proj(b, &L->wo, b->ao, n, L->bo, b->x, true)) {
        return -1;
    }

    if (norm_input(b, b->x, L->ffn_norm, n, &in, &nw))
        return -1;
    if (L->post_ffw_norm) {
        if ((hp->n_expert > 0 ? ffn_moe(b, L, in, nw, n, NULL, b->tmp)
                              : ffn_dense(b, &L->gate, &L->up, &L->down, in, nw, n, hp->gelu_ffn,
                                          b->tmp, false)) ||
            CUDA_CHECK(kv_rmsnorm(b->tmp, L->post_ffw_norm, b->x, b->x, n, E, hp->norm_eps, st),
                       e, el))
            return -1;
    } else if (hp->n_expert > 0 ? ffn_moe(b, L, in, nw, n, b->x, b->x)
                                : ffn_dense(b, &L->gate, &L->up, &L->down, in, nw, n,
                                            hp->gelu_ffn, b->x, true)) {
        return -1;
    }
    return 0;
}

/* Runs N <= ub tokens at POS. Writes logits of rows [R0, R0+NR) of this
 * micro-batch to LOGITS (NR x n_vocab, host). */
static int ubatch_forward(struct cuda_backend *b, const int32_t *tokens, int32_t n, int32_t pos,
                          int32_t r0, int32_t nr, float *logits)
{
    const struct model_hparams *hp = &b->m->hp;
    char *e = b->err;
    const size_t el = sizeof b->err;
    if (CUDA_CHECK(cudaMemcpyAsync(b->ids, tokens, (size_t)n * sizeof *tokens,
                                   cudaMemcpyHostToDevice, b->st),
                   e, el) ||
        CUDA_CHECK(kv_get_rows(&b->tok_embd, b->ids, n, hp->embd_scale, b->x, b->st), e, el))
        return -1;
    for (int32_t il = 0; il < hp->n_layer; il++)
        if (layer_forward(b, il, n, pos, NULL))
            return -1;
    for (int32_t c = 0; c < nr; c += b->logit_rows) {
        int32_t cn = nr - c < b->logit_rows ? nr - c : b->logit_rows;
        const float *in, *nw;
        if (norm_input(b, b->x + (size_t)(r0 + c) * hp->n_embd, b->output_norm, cn, &in, &nw) ||
            proj_norm(b, &b->output, in, nw, cn, NULL, b->logits, false) ||
            CUDA_CHECK(cudaMemcpyAsync(logits + (size_t)c * hp->n_vocab, b->logits,
                                       (size_t)cn * hp->n_vocab * sizeof(float),
                                       cudaMemcpyDeviceToHost, b->st),
                       e, el) ||
            CUDA_CHECK(cudaStreamSynchronize(b->st), e, el))
            return -1;
    }
    /* Micro-batches without logits still finish before the host moves on,
     * so an asynchronous fault is reported by the call that caused it. */
    if (nr == 0 && CUDA_CHECK(cudaStreamSynchronize(b->st), e, el))
        return -1;
    return 0;
}

static int cuda_forward(void *vb, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                        bool all, char *err, size_t errlen)
{
    struct cuda_backend *b = (struct cuda_backend *)vb;
    const struct model_hparams *hp = &b->m->hp;
    b->err[0] = 0;
    if (n <= 0 || pos < 0 || (int64_t)pos + n > b->n_ctx) {
        snprintf(err, errlen, "CUDA backend: positions %d..%lld do not fit the context of %d",
                 pos, (long long)pos + n - 1, b->n_ctx);
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab) {
            snprintf(err, errlen, "CUDA backend: token id %d is outside the vocabulary of %d",
                     tokens[i], hp->n_vocab);
            return -1;
        }
    }
    for (int32_t off = 0; off < n; off += b->ub) {
        int32_t nb = n - off < b->ub ? n - off : b->ub;
        bool last = off + nb == n;
        int32_t r0 = 0, nr = 0;
        float *dst = logits;
        if (all) {
            nr = nb;
            dst = logits + (size_t)off * hp->n_vocab;
        } else if (last) {
            r0 = nb - 1;
            nr = 1;
        }
        if (ubatch_forward(b, tokens + off, nb, pos + off, r0, nr, dst)) {
            snprintf(err, errlen, "%s", b->err);
            return -1;
        }
    }
    return 0;
}

/* ---- the decode step: one graph, sampling on the device ---- */

/* Queues one token's forward pass and the pick, every input read from
 * b->step: the embedding row of step->token, the layers at step->pos, the
 * logits into b->logits, the sampled id into b->pick. Nothing here reads a
 * host value that changes between steps. */
static int decode_enqueue(struct cuda_backend *b)
{
    const struct model_hparams *hp = &b->m->hp;
    char *e = b->err;
    const size_t el = sizeof b->err;
    if (CUDA_CHECK(kv_get_rows(&b->tok_embd, &b->step->token, 1, hp->embd_scale, b->x, b->st),
                   e, el))
        return -1;
    for (int32_t il = 0; il < hp->n_layer; il++)
        if (layer_forward(b, il, 1, 0, &b->step->pos))
            return -1;
    /* The output norm is the logits matvec's prologue, as in forward() of
     * one token, so both give the same logits. */
    if (proj_norm(b, &b->output, b->x, b->output_norm, 1, NULL, b->logits, false) ||
        CUDA_CHECK(kv_sample(b->logits, hp->n_vocab, &b->step->s, b->sample_tmp, b->pick, b->st),
                   e, el))
        return -1;
    return 0;
}

/* The step's graph, captured on first use; NULL when capture is not
 * possible here (the step then runs as plain launches: same kernels, same
 * results). */
static cudaGraphExec_t step_graph(struct cuda_backend *b)
{
    if (b->graph || b->graphs_off)
        return b->graph;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    bool ok = cudaStreamBeginCapture(b->st, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
    if (ok) {
        int rc = decode_enqueue(b);
        ok = cudaStreamEndCapture(b->st, &g) == cudaSuccess && rc == 0;
    }
    ok = ok && cudaGraphInstantiate(&ge, g, 0) == cudaSuccess;
    if (g)
        cudaGraphDestroy(g);
    if (!ok) {
        b->graphs_off = true;
        b->err[0] = 0; /* the plain path reports its own errors */
        (void)cudaGetLastError();
        return NULL;
    }
    b->graph = ge;
    return ge;
}

static int cuda_sample(void *vb, int32_t token, int32_t pos, const struct backend_sample *s,
                       int32_t *next, bool *nonfinite, char *err, size_t errlen)
{
    struct cuda_backend *b = (struct cuda_backend *)vb;
    const struct model_hparams *hp = &b->m->hp;
    char *e = b->err;
    const size_t el = sizeof b->err;
    b->err[0] = 0;
    if (pos < 0 || pos >= b->n_ctx) {
        snprintf(err, errlen, "CUDA backend: position %d does not fit the context of %d", pos,
                 b->n_ctx);
        return -1;
    }
    if (token < 0 || token >= hp->n_vocab) {
        snprintf(err, errlen, "CUDA backend: token id %d is outside the vocabulary of %d",
                 token, hp->n_vocab);
        return -1;
    }
    if (s->top_k < 1 || s->top_k > KV_SAMPLE_MAX_K || s->n_pen < 0 ||
        s->n_pen > KV_SAMPLE_MAX_PEN) {
        snprintf(err, errlen, "CUDA backend: sampling with top-k %d and %d penalised ids is "
                 "outside what the device sampler takes", s->top_k, s->n_pen);
        return -1;
    }
    struct kv_step_in *in = b->step_host;
    in->token = token;
    in->pos = pos;
    in->s.temperature = s->temperature;
    in->s.top_p = s->top_p;
    in->s.min_p = s->min_p;
    in->s.penalty = s->repeat_penalty;
    in->s.top_k = s->top_k;
    in->s.n_pen = s->n_pen;
    in->s.u = s->u;
    memcpy(in->s.pen, s->pen, (size_t)s->n_pen * sizeof *s->pen);
    /* only the listed ids are copied: the rest of PEN is never read */
    const size_t in_bytes = offsetof(struct kv_step_in, s.pen) + (size_t)s->n_pen * sizeof(int32_t);
    int rc = CUDA_CHECK(cudaMemcpyAsync(b->step, in, in_bytes, cudaMemcpyHostToDevice, b->st), e,
                        el);
    if (rc == 0) {
        cudaGraphExec_t ge = step_graph(b);
        rc = ge ? CUDA_CHECK(cudaGraphLaunch(ge, b->st), e, el) : decode_enqueue(b);
    }
    if (rc == 0)
        rc = CUDA_CHECK(cudaMemcpyAsync(b->pick_host, b->pick, 2 * sizeof(int32_t),
                                        cudaMemcpyDeviceToHost, b->st),
                        e, el) ||
             CUDA_CHECK(cudaStreamSynchronize(b->st), e, el);
    if (rc) {
        snprintf(err, errlen, "%s", b->err);
        return -1;
    }
    *next = b->pick_host[0];
    *nonfinite = b->pick_host[1] != 0;
    return 0;
}

static void cuda_memory(void *vb, struct engine_memory *out)
{
    struct cuda_backend *b = (struct cuda_backend *)vb;
    out->weights = b->arena_bytes;
    out->kv_cache = b->kv_bytes;
    out->scratch = b->scratch_bytes;
    out->on_gpu = true;
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
        out->device_total = tot;
        out->device_free = fr;
    } else {
        (void)cudaGetLastError();
        out->device_total = ENGINE_UNKNOWN;
        out->device_free = ENGINE_UNKNOWN;
    }
}

static const char *cuda_device_name(void *vb)
{
    return ((struct cuda_backend *)vb)->name;
}

static int cuda_measure_roofs(void *vb, const struct engine_roofs_params *p,
                              struct engine_roofs *out, char *err, size_t errlen)
{
    struct cuda_backend *b = (struct cuda_backend *)vb;
    if (errlen)
        err[0] = 0;
    return kv_device_roofs(b->st, b->blas, p, out, err, errlen);
}

extern "C" const struct backend_ops backend_cuda_ops = {
    .name = "cuda",
    .probe = kv_device_probe,
    .estimate = cuda_estimate,
    .create = cuda_create,
    .destroy = cuda_destroy,
    .forward = cuda_forward,
    .sample = cuda_sample,
    .memory = cuda_memory,
    .device_name = cuda_device_name,
    .measure_roofs = cuda_measure_roofs,
    .host_weights = false,
};

/* The module's entry point (backend.h): the only symbol with default
 * visibility, and the version script (kernels/module.map) exports nothing
 * else, so the runtime, cuBLAS's wrappers and the quant code inside stay
 * private to the module. */
extern "C" __attribute__((visibility("default"))) const struct backend_ops *
kvchat_backend_entry(uint32_t abi)
{
    return abi == BACKEND_ABI ? &backend_cuda_ops : NULL;
}
