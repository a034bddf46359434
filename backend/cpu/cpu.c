/* cpu.c - the CPU backend: the readable reference for every operation of a
 * forward pass, and the engine used where there is no GPU.
 *
 * Weights are used where they lie in the file mapping. Matrix products go
 * through quant.h: the activations stay float (prepared once per weight type)
 * and every weight row is dotted against them. A batch of N tokens (prefill)
 * reads each weight row once for the whole batch: with AVX2 or AVX-512 a
 * tile of 64 rows is decoded to floats once and multiplied with all N tokens
 * by a register-blocked GEMM (quant_gemm, each thread with its own panel
 * scratch); for short batches, and where it does not apply, each block is
 * dequantised once per 8 tokens (quant_dot_n). That is what makes prefill
 * much faster than N decode steps.
 *
 * One forward pass is a fixed sequence of parallel steps (threadpool_run):
 * matrix products split by rows (Q, K and V in one step, gate and up with
 * the GLU in one step), attention by (token, head), per-token steps (norms,
 * RoPE) by token. A decode step's per-token steps run on the caller, so a
 * layer costs five dispatches (QKV, attention, Wo, gate/up, down), four
 * while the context fits one attention chunk (the caller does that
 * attention alone). A decode step's products give each thread a fixed
 * contiguous share of their rows (matmul_decode_share). Everything is
 * allocated at create; the hot path allocates nothing, and batches larger
 * than MAX_BATCH are run in chunks.
 *
 * KV cache: f16 by default (backend_config.kv_type), as llama.cpp: half the
 * memory and half the bytes a long-context token reads, converted back to
 * f32 in the attention loops (8 halves per _mm256_cvtph_ps). f32 is the
 * exact path, the reference the tests hold against float64: the attention
 * code is one set of always-inlined functions instantiated for each type,
 * so the f32 instance is the same code as before f16 existed. q8_0 (34
 * bytes per 32 elements, ggml's Q8_0 block: 17/32 of f16) quantises each 32
 * elements of a K or V row as it is stored; the attention loops dequantise
 * them to floats (an f16 scale times int8s, exact in float) and the query
 * and the weights stay float, so only the cache is lossy.
 *
 * Mixture of experts (hp.n_expert > 0): the router's logits are one
 * product, the softmax and top-k run on the caller, and then the tokens are
 * grouped by expert, so that each chosen expert's rows are read once for all
 * the tokens routed to it (and a decode step reads only the n_expert_used
 * experts it picked): one dispatch for every active expert's gate and up,
 * one for their down products, then the weighted sum per token. A token's
 * experts and their order depend only on its router logits, so batch and
 * token-by-token runs pick the same ones.
 *
 * gpt-oss adds nothing the steps above do not already have a place for:
 * its biases ride on the products (matmul.bias; an expert's is its row of
 * the stacked bias), the router's top-k softmax and the clamped SwiGLU are
 * options of model_moe_select and moe_worker, YaRN is a per-pair frequency and a
 * cos/sin factor fixed at create (model_rope_inv_freq), and the attention sinks
 * join each head's softmax denominator once its chunks are folded
 * (attn_finish), so the chunk kernels are the same for every model.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "backend.h"
#include "errmsg.h"
#include "engine.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "threadpool.h"

/* Tokens per chunk: bounds the scratch (activations of every token of the
 * chunk) while keeping prefill's weight reuse. */
#define MAX_BATCH 512
/* Rows of a weight matrix dotted against all tokens of the batch before
 * moving on: the rows (a few KB) stay in L1 while the prepared activations
 * stream past, and a thread's output rows fill whole cache lines. */
#define ROW_TILE 16
/* Rows of a work tile in a batch: whole panels of quant_gemm (32 rows),
 * BATCH_ROW_TILE_MAX where a product has rows enough for at least 4 such
 * tiles a thread (quant_gemm reads all the batch's inputs once per call, so
 * bigger tiles read them less often: 256 rows of llama-1b's 2048 x 8192 down
 * projection ran at 180 GFLOP/s against 140 in tiles of 64), down to
 * BATCH_ROW_TILE so 2 threads still split gemma's 256-row K and V products. */
#define BATCH_ROW_TILE 64
#define BATCH_ROW_TILE_MAX 256
/* Tokens whose inputs one quant_dot_n call shares a dequantised block
 * between (its register blocking is 8). */
#define TOKEN_TILE 8
/* Preparations of one input alive at once: Q, K and V may have 3 types. */
#define N_SLOTS 3
#define ALIGN 64

struct matmul;

/* f32 copies of the small per-layer vectors (norm weights, biases), so the
 * per-token steps need not care which type the file stored them in. NULL
 * when the model has no such tensor. */
struct cpu_layer {
    float *attn_norm, *ffn_norm, *post_attn_norm, *post_ffw_norm; /* (n_embd) */
    float *q_norm, *k_norm;                                       /* (head_dim) */
    float *bq;                                                    /* (n_head*head_dim) */
    float *bk, *bv;                                               /* (n_head_kv*head_dim) */
    float *gate_inp_shexp;                                        /* (n_embd) qwen2moe */
    float *bo;                                                    /* (n_embd) gpt-oss */
    float *sinks;                                                 /* (n_head) gpt-oss */
    float *gate_inp_b;                                            /* (n_expert) gpt-oss */
    float *gate_exps_b, *up_exps_b;                               /* (n_expert, n_ff_exp) */
    float *down_exps_b;                                           /* (n_expert, n_embd) */
};

struct cpu {
    const struct model *m; /* borrowed */
    struct threadpool *pool; /* owned */
    int n_threads;
    int32_t n_ctx;
    int32_t max_batch;
    int32_t n_embd, q_dim, kv_dim, n_ff, n_vocab, head_dim, n_head, n_head_kv, n_rot;

    float *small;              /* owned: backing store of every f32 vector below */
    struct cpu_layer *layers;  /* owned, n_layer */
    float *output_norm;        /* (n_embd) */
    float *inv_freq;           /* (n_rot/2) global layers: base^(-2i/n_rot) / rope_freqs[i] */
    float *inv_freq_local;     /* (n_rot/2) sliding-window layers */
    /* cos and sin are multiplied by these (YaRN's magnitude; else 1) */
    float rope_mscale, rope_mscale_local;

    void *k_cache; /* owned (n_layer, n_ctx, kv_dim) elements of type kv */
    void *v_cache; /* owned (n_layer, n_ctx, kv_dim) */
    int kv;        /* enum cpu_kv: the cache's element type */

    /* Scratch, owned, one row per token of a chunk: (max_batch, dim). */
    float *x;    /* (n_embd) the residual stream */
    float *xb;   /* (n_embd) normed input of a sub-block */
    float *tmp;  /* (n_embd) output of a sub-block, before the residual add */
    float *q;    /* (q_dim) */
    float *k;    /* (kv_dim) */
    float *v;    /* (kv_dim) */
    float *att;  /* (q_dim) attention output */
    float *hb;   /* (n_ff) gate, then the GLU product */
    float *hb2;  /* (n_ff) up */
    float *rope_cos, *rope_sin;             /* (max_batch, n_rot/2) global layers */
    float *rope_cos_local, *rope_sin_local; /* (max_batch, n_rot/2) local layers */
    unsigned char *act_mem;       /* owned: N_SLOTS x max_batch x act_stride bytes */
    size_t act_stride;            /* bytes of one prepared activation, rounded to ALIGN */
    struct quant_act *acts;       /* owned: (N_SLOTS, max_batch) */
    unsigned char *split_mem;     /* owned: N_SLOTS x split_stride bytes, one-token steps' splits */
    size_t split_stride;          /* bytes: the longest quant_act_split_size, rounded to ALIGN; 0: none */
    unsigned char *gemm_mem;      /* owned: (n_threads, gemm_stride) quant_gemm scratch */
    size_t gemm_stride;           /* bytes: quant_gemm_scratch(longest row), rounded to ALIGN */
    float *scores;                /* owned: (n_threads, scores_stride) attention scratch */
    size_t scores_stride;         /* floats: group * (ATT_CHUNK + head_dim + 4), rounded to 16 */
    float *attn_part;             /* owned: (ATT_SPLIT_TOKENS, max chunks, n_head_kv,
                                   * part_stride) chunk partials of the split path */
    size_t part_stride;           /* floats: group * (head_dim + 2), rounded to 16 */
    int attn_max_chunks;          /* ceil(n_ctx / ATT_CHUNK) */

    /* Mixture of experts (n_expert > 0), all owned; K = n_used. Rows of
     * the (token, k) pairs are kept in expert order ("sorted"): expert e's
     * tokens are rows exp_off[e]..exp_off[e]+exp_count[e]-1. */
    int32_t n_expert, n_used, n_ff_exp;
    float *router;               /* (max_batch, n_expert) router logits */
    int32_t *sel;                /* (max_batch, K) chosen experts, most probable first */
    float *sel_w;                /* (max_batch, K) their weights */
    int32_t *sel_row;            /* (max_batch, K) the sorted row of each (token, k) */
    int32_t *exp_count, *exp_off; /* (n_expert) */
    struct quant_act *gath;      /* (2, max_batch * K) gate's and up's inputs, sorted (copies
                                    of the prepared FFN inputs) */
    struct quant_act *moe_acts;  /* (max_batch * K) down's inputs, sorted: c->acts past the
                                    N_SLOTS slots, so their scratch is in act_mem */
    float *moe_h, *moe_h2;       /* (max_batch * K, n_ff_exp) gate (then the GLU), up */
    float *moe_y;                /* (max_batch * K, n_embd) down, per expert */
    float *sh_out;               /* (max_batch, n_embd) the shared expert's output */
    float *sh_gate;              /* (max_batch) sigmoid of its gate */
    struct model_tensor *exp_w;  /* (3, n_expert) views of one expert's gate, up, down */
    struct matmul *exp_mm;       /* (3, n_expert) the active experts' products */
    int *exp_n;                  /* (n_expert) tokens of each active expert */
    int64_t *exp_tile0;          /* (n_expert + 1) first row tile of each active expert */

    uint64_t scratch_bytes;
    uint64_t kv_bytes;
    char device[128];
};

/* ---- reference operations ---- */

/* out = x / sqrt(mean(x^2) + eps) * w; OUT may alias X. */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    float ss = 0.0f;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    float s = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * s * w[i];
}

/* Eight independent partial sums so the compiler can vectorise without
 * being allowed to reassociate. */
static float dot_f32(const float *a, const float *b, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (; i < n; i++)
        s += a[i] * b[i];
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static inline float silu(float x)
{
    return x / (1.0f + expf(-x));
}

/* tanh approximation of GELU (HF gelu_pytorch_tanh), as Gemma was trained. */
static inline float gelu_tanh(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* gpt-oss's clamped SwiGLU (llama.cpp's swiglu_oai): the gate clamped
 * from above, up both ways, and up + 1 in place of up. */
static inline float glu_clamped(float g, float u, float alpha, float limit)
{
    g = g < limit ? g : limit;
    u = u < -limit ? -limit : u > limit ? limit : u;
    return g / (1.0f + expf(-alpha * g)) * (u + 1.0f);
}

#ifdef __AVX2__
static inline __m256 attn_exp8(__m256 x);

/* G * act(G) * U for 8 lanes, act being SiLU or (GELU) the tanh GELU, both
 * written as x * sigmoid(z): silu(x) = x / (1 + exp(-x)), and
 * 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)). One vector exp (1.2e-7
 * relative) instead of a libm tanhf per element: in Gemma 3 270M's prefill
 * the scalar tanhf (through expm1f) took 8% of the time, a third of what
 * the FFN's products took. z is clamped to [-88, 88], where exp is finite
 * and the sigmoid is 0 or 1 to float precision. */
static inline __m256 glu8(__m256 g, __m256 u, bool gelu)
{
    __m256 z = g;
    if (gelu) {
        __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
        z = _mm256_mul_ps(_mm256_set1_ps(2.0f * 0.7978845608028654f),
                          _mm256_fmadd_ps(g3, _mm256_set1_ps(0.044715f), g));
    }
    z = _mm256_min_ps(_mm256_max_ps(z, _mm256_set1_ps(-88.0f)), _mm256_set1_ps(88.0f));
    __m256 e = attn_exp8(_mm256_sub_ps(_mm256_setzero_ps(), z));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}
#endif

/* G[r] = act(G[r]) * U[r] for R0 <= r < R1: the GLU of one row tile. */
static void glu_rows(float *g, const float *u, int64_t r0, int64_t r1, bool gelu)
{
    int64_t r = r0;
#ifdef __AVX2__
    for (; r + 8 <= r1; r += 8)
        _mm256_storeu_ps(g + r, glu8(_mm256_loadu_ps(g + r), _mm256_loadu_ps(u + r), gelu));
#endif
    if (gelu)
        for (; r < r1; r++)
            g[r] = gelu_tanh(g[r]) * u[r];
    else
        for (; r < r1; r++)
            g[r] = silu(g[r]) * u[r];
}

/* Rotates the first N_ROT dims of one head of X by the angles whose cos and
 * sin are given per pair. NORM pairs adjacent elements (2i, 2i+1); NEOX pairs
 * (i, i + n_rot/2). */
static void rope(float *x, int n_rot, const float *cs, const float *sn, bool neox)
{
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        int i0 = neox ? i : 2 * i;
        int i1 = neox ? i + half : 2 * i + 1;
        float a = x[i0], b = x[i1];
        x[i0] = a * cs[i] - b * sn[i];
        x[i1] = a * sn[i] + b * cs[i];
    }
}

/* ---- parallel steps ---- */

/* One matrix product Y[t, r] = W[r] . x[t] (+ bias[r]) for t < n. */
struct matmul {
    const struct model_tensor *w;
    const struct quant_act *acts; /* (n) prepared inputs */
    float *y;                     /* (n, y_stride) */
    int64_t y_stride;
    const float *bias; /* (w->ne1) or NULL */
};

struct matmul_job {
    struct cpu *c; /* borrowed: the per-thread GEMM scratch */
    struct matmul mm[N_SLOTS];
    int n_mm;
    int n; /* tokens */
    /* When set, mm[0] and mm[1] are an FFN's gate and up (same rows): each
     * row tile of both is computed together and mm[0].y becomes
     * act(gate) * up right there, so the GLU needs no parallel step of its
     * own (and no second pass over the rows). */
    bool glu, gelu;
    /* Next chunk of row tiles to claim, per product. */
    _Alignas(ALIGN) atomic_llong next[N_SLOTS];
};

static void matmul_job_init(struct matmul_job *job, struct cpu *c, int n, int n_mm)
{
    job->c = c;
    job->n = n;
    job->n_mm = n_mm;
    job->glu = job->gelu = false;
    for (int k = 0; k < N_SLOTS; k++)
        atomic_init(&job->next[k], 0);
}

/* Rows R0..R1-1 of MM for all N tokens; GEMM is the calling thread's
 * quant_gemm scratch. */
static void matmul_tile(const struct matmul *mm, int n, int64_t r0, int64_t r1, void *gemm)
{
    size_t row_bytes = quant_row_size(mm->w->type, mm->w->ne0);
    const unsigned char *base = mm->w->data;
    if (n == 1) {
        quant_dot_rows(base + (size_t)r0 * row_bytes, row_bytes, r1 - r0, &mm->acts[0], mm->y + r0);
    } else if (quant_gemm(base + (size_t)r0 * row_bytes, row_bytes, r1 - r0, mm->acts, n, mm->y + r0,
                          (size_t)mm->y_stride, gemm)) {
        /* a panel-at-a-time GEMM over all N tokens */
    } else {
        /* TOKEN_TILE tokens' inputs stay in L1/L2 while the tile's rows
         * (in L1) pass over them; each block is dequantised once per
         * TOKEN_TILE tokens. */
        for (int t0 = 0; t0 < n; t0 += TOKEN_TILE) {
            int nt = n - t0 < TOKEN_TILE ? n - t0 : TOKEN_TILE;
            float *y = mm->y + (int64_t)t0 * mm->y_stride;
            for (int64_t r = r0; r < r1; r++)
                quant_dot_n(base + (size_t)r * row_bytes, mm->acts + t0, nt, y + r,
                            (size_t)mm->y_stride);
        }
    }
    if (mm->bias)
        for (int t = 0; t < n; t++) {
            float *y = mm->y + (int64_t)t * mm->y_stride;
            for (int64_t r = r0; r < r1; r++)
                y[r] += mm->bias[r];
        }
}

/* Rows of a batched product's work tile for NTH threads: see
 * BATCH_ROW_TILE_MAX. Any tile gives the same values (quant_gemm's sums do
 * not depend on the rows around a row). */
static int64_t batch_row_tile(int64_t rows, int nth)
{
    int64_t rt = rows / (4 * (int64_t)nth) / BATCH_ROW_TILE * BATCH_ROW_TILE;
    return rt < BATCH_ROW_TILE ? BATCH_ROW_TILE : rt > BATCH_ROW_TILE_MAX ? BATCH_ROW_TILE_MAX : rt;
}

/* Rows R0..R1-1 of product K of JOB, and with glu the same rows of up and
 * the GLU over them. */
static void matmul_rows(const struct matmul_job *job, int k, int64_t r0, int64_t r1, void *gemm)
{
    const struct matmul *mm = &job->mm[k];
    matmul_tile(mm, job->n, r0, r1, gemm);
    if (!job->glu)
        return;
    const struct matmul *up = &job->mm[1];
    matmul_tile(up, job->n, r0, r1, gemm);
    for (int t = 0; t < job->n; t++)
        glu_rows(mm->y + (int64_t)t * mm->y_stride, up->y + (int64_t)t * up->y_stride, r0, r1,
                 job->gelu);
}

/* A decode step's products (one token): the ROW_TILE tiles of all of the
 * job's products, numbered one after the other, are cut into NTH
 * contiguous shares of (nearly) equal size, thread ITH taking share ITH.
 * A matvec of a few hundred rows lasts a few microseconds, and claiming
 * its ~18 chunks from one shared counter moved that counter's cache line
 * between the cores once per chunk; a fixed share costs nothing to claim.
 * A worker that has not turned up still has its whole share run by the
 * caller (threadpool_run). Shares start on tile boundaries (ROW_TILE
 * floats = one cache line of output), so two threads never write one
 * line. */
static void matmul_decode_share(const struct matmul_job *job, int n_mm, int ith, int nth,
                                void *gemm)
{
    int64_t n_tiles = 0;
    for (int k = 0; k < n_mm; k++)
        n_tiles += (job->mm[k].w->ne1 + ROW_TILE - 1) / ROW_TILE;
    int64_t t0 = n_tiles * ith / nth, t1 = n_tiles * (ith + 1) / nth;
    int64_t base = 0; /* first tile number of product k */
    for (int k = 0; k < n_mm && t0 < t1; k++) {
        int64_t rows = job->mm[k].w->ne1;
        int64_t nt = (rows + ROW_TILE - 1) / ROW_TILE;
        if (t0 < base + nt) {
            int64_t e = t1 < base + nt ? t1 : base + nt;
            int64_t r0 = (t0 - base) * ROW_TILE, r1 = (e - base) * ROW_TILE;
            matmul_rows(job, k, r0, r1 < rows ? r1 : rows, gemm);
            t0 = e;
        }
        base += nt;
    }
}

/* Batched products (prefill): threads claim chunks of row tiles from a
 * shared counter rather than taking fixed shares: when the machine is
 * busier than our threads (other programs, a build), a descheduled thread's
 * rows are done by the others instead of everyone waiting for it. A decode
 * step takes fixed shares instead (matmul_decode_share). Which thread
 * computes a row does not change its value, so results do not depend on
 * the thread count. */
static void matmul_worker(void *arg, int ith, int nth)
{
    struct matmul_job *job = arg;
    struct cpu *c = job->c;
    void *gemm = c->gemm_mem + (size_t)ith * c->gemm_stride;
    int n_mm = job->glu ? 1 : job->n_mm; /* with glu, up rides along with gate */
    if (job->n == 1) {
        matmul_decode_share(job, n_mm, ith, nth, gemm);
        return;
    }
    for (int k = 0; k < n_mm; k++) {
        const struct matmul *mm = &job->mm[k];
        int64_t rows = mm->w->ne1;
        int64_t rt = job->n > 1 ? batch_row_tile(rows, nth) : ROW_TILE;
        int64_t n_tiles = (rows + rt - 1) / rt;
        /* About eight chunks per thread: balance without much contention. */
        int64_t chunk = n_tiles / (8 * (int64_t)nth);
        if (chunk < 1)
            chunk = 1;
        for (;;) {
            int64_t t0 = atomic_fetch_add_explicit(&job->next[k], chunk, memory_order_relaxed);
            if (t0 >= n_tiles)
                break;
            int64_t t1 = t0 + chunk < n_tiles ? t0 + chunk : n_tiles;
            for (int64_t tile = t0; tile < t1; tile++) {
                int64_t r0 = tile * rt;
                matmul_rows(job, k, r0, r0 + rt < rows ? r0 + rt : rows, gemm);
            }
        }
    }
}

/* One dispatch over many products with their own token counts: the
 * routed experts of a layer. Threads claim chunks of row tiles numbered
 * across all products (tile0 prefix sums), as matmul_worker does within
 * one. With UP, each tile of MM[i] is followed by the same tile of UP[i]
 * and mm[i].y becomes silu(gate) * up. */
struct moe_job {
    struct cpu *c;            /* borrowed: the per-thread GEMM scratch */
    const struct matmul *mm;  /* (n_mm) */
    const struct matmul *up;  /* (n_mm) or NULL */
    const int *n_tok;         /* (n_mm) tokens of each product */
    const int64_t *tile0;     /* (n_mm + 1) */
    int n_mm;
    /* the GLU: silu(gate) * up, or (clamped) model.h's glu_clamped */
    bool clamped;
    float alpha, limit;
    _Alignas(ALIGN) atomic_llong next;
};

static void moe_worker(void *arg, int ith, int nth)
{
    struct moe_job *job = arg;
    void *gemm = job->c->gemm_mem + (size_t)ith * job->c->gemm_stride;
    int64_t n_tiles = job->tile0[job->n_mm];
    int64_t chunk = n_tiles / (8 * (int64_t)nth);
    if (chunk < 1)
        chunk = 1;
    int i = 0; /* claims only grow, so the product index only moves on */
    for (;;) {
        int64_t t0 = atomic_fetch_add_explicit(&job->next, chunk, memory_order_relaxed);
        if (t0 >= n_tiles)
            break;
        int64_t t1 = t0 + chunk < n_tiles ? t0 + chunk : n_tiles;
        for (int64_t tile = t0; tile < t1; tile++) {
            while (tile >= job->tile0[i + 1])
                i++;
            const struct matmul *mm = &job->mm[i];
            int n = job->n_tok[i];
            int64_t rows = mm->w->ne1;
            int64_t r0 = (tile - job->tile0[i]) * ROW_TILE;
            int64_t r1 = r0 + ROW_TILE < rows ? r0 + ROW_TILE : rows;
            matmul_tile(mm, n, r0, r1, gemm);
            if (!job->up)
                continue;
            const struct matmul *up = &job->up[i];
            matmul_tile(up, n, r0, r1, gemm);
            for (int t = 0; t < n; t++) {
                float *g = mm->y + (int64_t)t * mm->y_stride;
                const float *u = up->y + (int64_t)t * up->y_stride;
                if (job->clamped)
                    for (int64_t r = r0; r < r1; r++)
                        g[r] = glu_clamped(g[r], u[r], job->alpha, job->limit);
                else
                    for (int64_t r = r0; r < r1; r++)
                        g[r] = silu(g[r]) * u[r];
            }
        }
    }
}

/* Per token: optionally add a sub-block's output into the residual stream
 * (through a post-norm on gemma3), then norm the stream and prepare it for
 * the next products. */
struct norm_job {
    struct cpu *c;
    int n;
    float *x;                /* (n, dim) */
    int dim;
    const float *add;        /* (n, dim) added into x first, or NULL */
    const float *add_norm;   /* post-norm applied to ADD first, or NULL */
    float *add_buf;          /* where the post-normed ADD may be written (n, dim) */
    const float *norm;       /* norm weight (dim), or NULL to prepare X as is */
    float *out;              /* (n, dim) normed X */
    enum ggml_type types[N_SLOTS];
    int n_types;
    struct quant_act *acts[N_SLOTS]; /* (n) each */
    bool split;                      /* also split slot s's input into split_mem (one token) */
};

static void norm_worker(void *arg, int ith, int nth)
{
    const struct norm_job *job = arg;
    const struct cpu *c = job->c;
    float eps = c->m->hp.norm_eps;
    for (int t = ith; t < job->n; t += nth) {
        float *x = job->x + (int64_t)t * job->dim;
        if (job->add) {
            const float *a = job->add + (int64_t)t * job->dim;
            if (job->add_norm) {
                float *ab = job->add_buf + (int64_t)t * job->dim;
                rmsnorm(ab, a, job->add_norm, job->dim, eps);
                a = ab;
            }
            for (int i = 0; i < job->dim; i++)
                x[i] += a[i];
        }
        const float *src = x;
        if (job->norm) {
            float *o = job->out + (int64_t)t * job->dim;
            rmsnorm(o, x, job->norm, job->dim, eps);
            src = o;
        }
        for (int s = 0; s < job->n_types; s++) {
            /* The slot's scratch is found by index: prepare may leave
             * qa->q NULL for float weight types. */
            struct quant_act *qa = &job->acts[s][t];
            void *scratch = c->act_mem + (size_t)(qa - c->acts) * c->act_stride;
            quant_prepare_act(job->types[s], src, job->dim, scratch, qa);
            if (job->split)
                quant_prepare_act_split(qa, c->split_mem + (size_t)s * c->split_stride);
        }
    }
}

/* Per token: q/k per-head norms, RoPE, and the new keys and values into the
 * cache at their positions. */
struct rope_job {
    struct cpu *c;
    const struct cpu_layer *ly;
    int il;
    int n;
    int32_t pos;
    const float *cs, *sn; /* (n, n_rot/2) for this layer's kind */
};

/* ---- the KV cache's element type ----
 *
 * Rows are addressed by element index into a cache of f32, f16 or q8_0 (KT,
 * an enum cpu_kv). A q8_0 index is always a multiple of 8 where a vector
 * loads (16 for kv_load16) and of 32 where a row or a head starts: head_dim
 * is a multiple of 32 (kv_type_check), so a block never straddles two
 * heads. These are always inlined into callers that pass a constant KT, so
 * each type gets its own code and the f32 one converts nothing. */
#define KV_INLINE static inline __attribute__((always_inline))

enum cpu_kv { CPU_KV_F32, CPU_KV_F16, CPU_KV_Q8_0 };

/* One row per cache type: elements per block and bytes per block. */
static const struct {
    enum engine_kv_type type;
    const char *name;
    uint32_t block, block_bytes;
} cpu_kv_types[] = {
    [CPU_KV_F32] = {.type = ENGINE_KV_F32, .name = "f32", .block = 1, .block_bytes = 4},
    [CPU_KV_F16] = {.type = ENGINE_KV_F16, .name = "f16", .block = 1, .block_bytes = 2},
    /* ggml's Q8_0: an f16 scale d = max|x| / 127, then 32 int8 x / d */
    [CPU_KV_Q8_0] = {.type = ENGINE_KV_Q8_0, .name = "q8_0", .block = 32, .block_bytes = 34},
};
#define KV_Q8_BLOCK 32
#define KV_Q8_BYTES 34

/* Bytes of N elements (whole blocks) of cache type KT. */
static uint64_t kv_bytes_of(int kt, uint64_t n)
{
    return n / cpu_kv_types[kt].block * cpu_kv_types[kt].block_bytes;
}

KV_INLINE const void *kv_ptr(const void *base, size_t i, int kt)
{
    if (kt == CPU_KV_Q8_0)
        return (const char *)base + i / KV_Q8_BLOCK * KV_Q8_BYTES;
    return (const char *)base + i * (kt == CPU_KV_F16 ? sizeof(uint16_t) : sizeof(float));
}

KV_INLINE float kv_half_to_f32(uint16_t h)
{
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    return quant_f16_to_f32(h);
#endif
}

/* The scale of the q8_0 block at B (stored unaligned, so copied out). */
KV_INLINE float kv_q8_scale(const unsigned char *b)
{
    uint16_t h;
    memcpy(&h, b, sizeof h);
    return kv_half_to_f32(h);
}

KV_INLINE float kv_get(const void *base, size_t i, int kt)
{
    if (kt == CPU_KV_F32)
        return ((const float *)base)[i];
    if (kt == CPU_KV_Q8_0) {
        const unsigned char *b = (const unsigned char *)base + i / KV_Q8_BLOCK * KV_Q8_BYTES;
        return kv_q8_scale(b) * (float)(int8_t)b[2 + i % KV_Q8_BLOCK];
    }
    return kv_half_to_f32(((const uint16_t *)base)[i]);
}

#ifdef __AVX2__
/* Eight elements from I on, as floats (I % 8 == 0 for q8_0). */
KV_INLINE __m256 kv_load8(const void *base, size_t i, int kt)
{
    if (kt == CPU_KV_F32)
        return _mm256_loadu_ps((const float *)base + i);
    if (kt == CPU_KV_Q8_0) {
        const unsigned char *b = (const unsigned char *)base + i / KV_Q8_BLOCK * KV_Q8_BYTES;
        const unsigned char *c = b + 2 + i % KV_Q8_BLOCK; /* the 8 codes */
        __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)c));
        return _mm256_mul_ps(_mm256_set1_ps(kv_q8_scale(b)), _mm256_cvtepi32_ps(q));
    }
#ifdef __F16C__
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
#else
    float f[8];
    for (int j = 0; j < 8; j++)
        f[j] = quant_f16_to_f32(((const uint16_t *)base)[i + j]);
    return _mm256_loadu_ps(f);
#endif
}
#endif

/* Stores N floats of SRC at element OFF: rounded to nearest even for f16;
 * for q8_0 (OFF and N multiples of 32) quantised 32 at a time by quant.h's
 * Q8_0 quantiser, the one the CUDA backend's cache matches. */
static void kv_store(void *base, size_t off, const float *src, int n, int kt)
{
    if (kt == CPU_KV_F32) {
        memcpy((float *)base + off, src, sizeof(float) * (size_t)n);
        return;
    }
    if (kt == CPU_KV_Q8_0) {
        unsigned char *d = (unsigned char *)base + off / KV_Q8_BLOCK * KV_Q8_BYTES;
        quant_quantize_row(GGML_TYPE_Q8_0, src, d, n);
        return;
    }
    uint16_t *d = (uint16_t *)base + off;
    int i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++)
        d[i] = quant_f32_to_f16(src[i]);
}

/* dot_f32 of Q against N cache elements from I: the same summation order. */
KV_INLINE float kv_dot(const float *q, const void *base, size_t i, int n, int kt)
{
    if (kt == CPU_KV_F32)
        return dot_f32(q, (const float *)base + i, n);
    float acc[8] = {0};
    int d = 0;
    for (; d + 8 <= n; d += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += q[d + j] * kv_get(base, i + (size_t)(d + j), kt);
    float s = 0.0f;
    for (; d < n; d++)
        s += q[d] * kv_get(base, i + (size_t)d, kt);
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void rope_worker(void *arg, int ith, int nth)
{
    const struct rope_job *job = arg;
    const struct cpu *c = job->c;
    const struct model_hparams *hp = &c->m->hp;
    int hd = c->head_dim, half = c->n_rot / 2;
    for (int t = ith; t < job->n; t += nth) {
        float *q = c->q + (int64_t)t * c->q_dim;
        float *k = c->k + (int64_t)t * c->kv_dim;
        const float *cs = job->cs + (int64_t)t * half, *sn = job->sn + (int64_t)t * half;
        for (int h = 0; h < c->n_head; h++) {
            if (job->ly->q_norm)
                rmsnorm(q + h * hd, q + h * hd, job->ly->q_norm, hd, hp->norm_eps);
            rope(q + h * hd, c->n_rot, cs, sn, hp->rope_neox);
        }
        for (int h = 0; h < c->n_head_kv; h++) {
            if (job->ly->k_norm)
                rmsnorm(k + h * hd, k + h * hd, job->ly->k_norm, hd, hp->norm_eps);
            rope(k + h * hd, c->n_rot, cs, sn, hp->rope_neox);
        }
        size_t off = ((size_t)job->il * c->n_ctx + (size_t)(job->pos + t)) * c->kv_dim;
        kv_store(c->k_cache, off, k, c->kv_dim, c->kv);
        kv_store(c->v_cache, off, c->v + (int64_t)t * c->kv_dim, c->kv_dim, c->kv);
    }
}

/* Causal attention for each (token, head), with GQA and, on sliding-window
 * layers, keys at distance >= window hidden.
 *
 * The heads that share a KV head are always done together, so each key and
 * value row is read once per group instead of once per head. A query's keys
 * are taken in chunks of ATT_CHUNK counted from the first visible key; each
 * chunk gives a partial softmax (max m, sum l of exp(s - m), and the
 * exp-weighted sum of V rows), and the partials are folded in chunk order
 * (attn_merge). Chunk boundaries depend only on the position, so a value's
 * summation order never depends on the thread count or on which path ran:
 *
 *  - prefill: items are (token, KV head), each folding its chunks in turn;
 *  - decode (few tokens): items are (token, chunk), claimed from a counter,
 *    their partials stored and folded by the caller afterwards, so 2 threads are busy even with 1-3 KV heads at long context (at 4096
 *    tokens the KV cache is most of what a token reads).
 *
 * Both fold the same partials with the same function, so their results are
 * bit-identical. With AVX2, scores are computed 8 keys at a time (no
 * horizontal add per key), exp is vectorised (attn_exp8) and V is summed
 * with FMA; the plain loops are the reference and handle head_dim % 8 != 0. */
#define ATT_CHUNK 256
/* Keys whose V rows (a few KB) stay in L1 while every head of the group
 * sums them. */
#define ATT_VTILE 32
/* Tokens up to which a forward pass splits the key range across threads. */
#define ATT_SPLIT_TOKENS 4

struct attn_job {
    struct cpu *c;
    int il;
    int n;
    int32_t pos;
    bool swa;
    bool split;           /* items are (token, chunk, KV head) */
    int n_chunks;         /* split: chunks per token (of the longest row) */
    _Alignas(ALIGN) atomic_int next; /* next item to claim */
};

#ifdef __AVX2__
/* exp(x) for x <= 0, lanewise: Cephes' expf (range reduction by ln 2 in two
 * parts, degree-6 polynomial), within 1.2e-7 relative of expf over [-87, 0] (checked
 * against expf at every float there). Below -87.3 the result is 0 or a
 * denormal, which weighs nothing next to the chunk's maximum (exp(0) = 1). */
static inline __m256 attn_exp8(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f));
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, z, x);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* q . k_j for the 8 keys at K (row stride STRIDE), HD % 8 == 0: one
 * accumulator per key, then a transpose-and-add of the 8 accumulators. */
KV_INLINE __m256 attn_score8(const float *q, const void *k, size_t stride, int hd, int kt)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0;
    for (int d = 0; d < hd; d += 8) {
        __m256 qv = _mm256_loadu_ps(q + d);
        size_t kd = (size_t)d;
        a0 = _mm256_fmadd_ps(qv, kv_load8(k, kd, kt), a0);
        a1 = _mm256_fmadd_ps(qv, kv_load8(k, kd + stride, kt), a1);
        a2 = _mm256_fmadd_ps(qv, kv_load8(k, kd + 2 * stride, kt), a2);
        a3 = _mm256_fmadd_ps(qv, kv_load8(k, kd + 3 * stride, kt), a3);
        a4 = _mm256_fmadd_ps(qv, kv_load8(k, kd + 4 * stride, kt), a4);
        a5 = _mm256_fmadd_ps(qv, kv_load8(k, kd + 5 * stride, kt), a5);
        a6 = _mm256_fmadd_ps(qv, kv_load8(k, kd + 6 * stride, kt), a6);
        a7 = _mm256_fmadd_ps(qv, kv_load8(k, kd + 7 * stride, kt), a7);
    }
    __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    __m256 t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
    t0 = _mm256_hadd_ps(t0, t1); /* keys 0-3: low half | high half */
    t2 = _mm256_hadd_ps(t2, t3); /* keys 4-7 */
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t2, 0x20),
                         _mm256_permute2f128_ps(t0, t2, 0x31));
}
#endif

/* ACC (HD) += sum over LEN keys of W[j] * V_j (row stride STRIDE). Each
 * element is one chain over j in order, however the work is tiled. */
KV_INLINE void attn_accum(const float *w, const void *v, size_t stride, int len, int hd,
                          float *acc, int kt)
{
    int d = 0;
#ifdef __AVX2__
    /* 64 wide where possible: 8 independent FMA chains hide the FMA
     * latency (with 4, this loop was latency-bound: half of decode's
     * attention time at 4096 tokens). */
    for (; d + 64 <= hd; d += 64) {
        __m256 a[8];
        for (int i = 0; i < 8; i++)
            a[i] = _mm256_loadu_ps(acc + d + 8 * i);
        for (int j = 0; j < len; j++) {
            __m256 wj = _mm256_broadcast_ss(w + j);
            size_t vj = (size_t)j * stride + (size_t)d;
            for (int i = 0; i < 8; i++)
                a[i] = _mm256_fmadd_ps(wj, kv_load8(v, vj + 8 * (size_t)i, kt), a[i]);
        }
        for (int i = 0; i < 8; i++)
            _mm256_storeu_ps(acc + d + 8 * i, a[i]);
    }
    for (; d + 32 <= hd; d += 32) {
        __m256 a0 = _mm256_loadu_ps(acc + d), a1 = _mm256_loadu_ps(acc + d + 8);
        __m256 a2 = _mm256_loadu_ps(acc + d + 16), a3 = _mm256_loadu_ps(acc + d + 24);
        for (int j = 0; j < len; j++) {
            __m256 wj = _mm256_broadcast_ss(w + j);
            size_t vj = (size_t)j * stride + (size_t)d;
            a0 = _mm256_fmadd_ps(wj, kv_load8(v, vj, kt), a0);
            a1 = _mm256_fmadd_ps(wj, kv_load8(v, vj + 8, kt), a1);
            a2 = _mm256_fmadd_ps(wj, kv_load8(v, vj + 16, kt), a2);
            a3 = _mm256_fmadd_ps(wj, kv_load8(v, vj + 24, kt), a3);
        }
        _mm256_storeu_ps(acc + d, a0);
        _mm256_storeu_ps(acc + d + 8, a1);
        _mm256_storeu_ps(acc + d + 16, a2);
        _mm256_storeu_ps(acc + d + 24, a3);
    }
    for (; d + 8 <= hd; d += 8) {
        __m256 a0 = _mm256_loadu_ps(acc + d);
        for (int j = 0; j < len; j++)
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(w + j),
                                 kv_load8(v, (size_t)j * stride + (size_t)d, kt), a0);
        _mm256_storeu_ps(acc + d, a0);
    }
#endif
    for (; d < hd; d++) {
        float a = acc[d];
        for (int j = 0; j < len; j++)
            a += w[j] * kv_get(v, (size_t)j * stride + (size_t)d, kt);
        acc[d] = a;
    }
}

/* The chunk's softmax, in place: each of the HPI score rows of SC (ATT_CHUNK
 * apart, LEN scores) becomes exp(s - max), with M[g] its max and L[g] the
 * sum of those exponentials. One function for every attention kernel, so
 * the AVX2 and AVX-512 paths weigh keys identically. */
KV_INLINE void attn_softmax_chunk(float *sc, int hpi, int len, float *m, float *l)
{
    for (int g = 0; g < hpi; g++) {
        float *sg = sc + g * ATT_CHUNK;
        float mx = -INFINITY;
        int j;
        for (j = 0; j < len; j++)
            mx = sg[j] > mx ? sg[j] : mx;
        float sum = 0.0f;
        j = 0;
#ifdef __AVX2__
        __m256 vm = _mm256_set1_ps(mx), vsum = _mm256_setzero_ps();
        for (; j + 8 <= len; j += 8) {
            __m256 e = attn_exp8(_mm256_sub_ps(_mm256_loadu_ps(sg + j), vm));
            _mm256_storeu_ps(sg + j, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        sum = hsum8(vsum);
#endif
        for (; j < len; j++) {
            float e = expf(sg[j] - mx);
            sg[j] = e;
            sum += e;
        }
        m[g] = mx;
        l[g] = sum;
    }
}

/* Partial softmax of HPI heads (queries Q, contiguous) over LEN <= ATT_CHUNK
 * keys K and values V (row stride STRIDE): per head g, M[g] = max score,
 * L[g] = sum of exp(s - M[g]), ACC[g] (HD) = sum of exp(s - M[g]) * V row.
 * SC: (HPI, ATT_CHUNK) scratch. */
KV_INLINE void attn_chunk(const float *q, int hpi, int hd, float scale, const void *k,
                          const void *v, size_t stride, int len, float *sc, float *m, float *l,
                          float *acc, int kt)
{
    int j = 0;
#ifdef __AVX2__
    if (hd % 8 == 0) {
        __m256 vs = _mm256_set1_ps(scale);
        for (; j + 8 <= len; j += 8)
            for (int g = 0; g < hpi; g++)
                _mm256_storeu_ps(sc + g * ATT_CHUNK + j,
                                 _mm256_mul_ps(attn_score8(q + g * hd,
                                                           kv_ptr(k, (size_t)j * stride, kt),
                                                           stride, hd, kt), vs));
    }
#endif
    for (; j < len; j++)
        for (int g = 0; g < hpi; g++)
            sc[g * ATT_CHUNK + j] = kv_dot(q + g * hd, k, (size_t)j * stride, hd, kt) * scale;

    attn_softmax_chunk(sc, hpi, len, m, l);

    memset(acc, 0, sizeof(float) * (size_t)hpi * hd);
    for (int j0 = 0; j0 < len; j0 += ATT_VTILE) {
        int jn = len - j0 < ATT_VTILE ? len - j0 : ATT_VTILE;
        for (int g = 0; g < hpi; g++)
            attn_accum(sc + g * ATT_CHUNK + j0, kv_ptr(v, (size_t)j0 * stride, kt), stride,
                       jn, hd, acc + g * hd, kt);
    }
}

/* attn_chunk for each cache type: K and V point at element 0 of the chunk. */
typedef void (*attn_chunk_fn)(const float *q, int hpi, int hd, float scale, const void *k,
                              const void *v, size_t stride, int len, float *sc, float *m,
                              float *l, float *acc);

static void attn_chunk_f32(const float *q, int hpi, int hd, float scale, const void *k,
                           const void *v, size_t stride, int len, float *sc, float *m, float *l,
                           float *acc)
{
    attn_chunk(q, hpi, hd, scale, k, v, stride, len, sc, m, l, acc, CPU_KV_F32);
}

static void attn_chunk_f16(const float *q, int hpi, int hd, float scale, const void *k,
                           const void *v, size_t stride, int len, float *sc, float *m, float *l,
                           float *acc)
{
    attn_chunk(q, hpi, hd, scale, k, v, stride, len, sc, m, l, acc, CPU_KV_F16);
}

static void attn_chunk_q8_0(const float *q, int hpi, int hd, float scale, const void *k,
                            const void *v, size_t stride, int len, float *sc, float *m, float *l,
                            float *acc)
{
    attn_chunk(q, hpi, hd, scale, k, v, stride, len, sc, m, l, acc, CPU_KV_Q8_0);
}

/* The chunk kernel of each cache type, by enum cpu_kv. */
static const attn_chunk_fn attn_chunks[] = {
    [CPU_KV_F32] = attn_chunk_f32,
    [CPU_KV_F16] = attn_chunk_f16,
    [CPU_KV_Q8_0] = attn_chunk_q8_0,
};

/* ---- AVX-512 attention chunks ----
 *
 * attn_chunk with 16-lane vectors, used when quant_isa() is AVX512 and the
 * head size is a multiple of 16 (both paths of attn_worker, so split and
 * unsplit decode still give the same bits). What changes besides the width:
 * the heads of a group share each key and value load. attn_chunk converts
 * every f16 key once per query head (4 times on Gemma 3, 3 on SmolLM2);
 * here a 4-key x up-to-4-head block of scores keeps 16 accumulators, so each
 * 16 halves of a key are converted once for all its heads, and each value
 * row once per 64 elements for all heads. The value sums keep attn_accum's
 * order (one FMA chain per element over the keys in order, from zero), so
 * they equal the AVX2 path's bits; the scores sum a key in 16 lanes instead
 * of 8, a float rounding difference only. Compiled for AVX-512 per function,
 * so a build for any x86-64 still runs on a CPU without it. */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#define ATT512 1
#define ATT512_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))
#define ATT512_INLINE static inline __attribute__((always_inline)) ATT512_TARGET

/* Sixteen elements from I on, as floats (I % 16 == 0 for q8_0). */
ATT512_INLINE __m512 kv_load16(const void *base, size_t i, int kt)
{
    if (kt == CPU_KV_F32)
        return _mm512_loadu_ps((const float *)base + i);
    if (kt == CPU_KV_Q8_0) {
        const unsigned char *b = (const unsigned char *)base + i / KV_Q8_BLOCK * KV_Q8_BYTES;
        const unsigned char *c = b + 2 + i % KV_Q8_BLOCK; /* the 16 codes */
        __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)c));
        return _mm512_mul_ps(_mm512_set1_ps(kv_q8_scale(b)), _mm512_cvtepi32_ps(q));
    }
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i)));
}

/* Element i of the result is the sum of the 16 lanes of A[i]. */
ATT512_INLINE __m512 hsum16x16(const __m512 *a)
{
    __m512 u[4];
    for (int i = 0; i < 4; i++) {
        /* per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3] for (x, y) pairs... */
        __m512 p = _mm512_add_ps(_mm512_unpacklo_ps(a[4 * i], a[4 * i + 1]),
                                 _mm512_unpackhi_ps(a[4 * i], a[4 * i + 1]));
        __m512 q = _mm512_add_ps(_mm512_unpacklo_ps(a[4 * i + 2], a[4 * i + 3]),
                                 _mm512_unpackhi_ps(a[4 * i + 2], a[4 * i + 3]));
        /* ...then per lane the four partial sums of a[4i..4i+3] */
        __m512d pd = _mm512_castps_pd(p), qd = _mm512_castps_pd(q);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(pd, qd)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(pd, qd)));
    }
    /* lanes [u0 L0+L1, u0 L2+L3, u1 L0+L1, u1 L2+L3], likewise u2, u3 */
    __m512 v0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
    __m512 v1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(v0, v1, 0x88), _mm512_shuffle_f32x4(v0, v1, 0xDD));
}

/* Scores of NH <= 4 heads (queries Q, HD apart) against the 4 keys at K (row
 * stride STRIDE), times SCALE, into SC[g * ATT_CHUNK + 0..3]. */
ATT512_INLINE void attn_score4x4(const float *q, int nh, const void *k, size_t stride, int hd,
                                 float scale, float *sc, int kt)
{
    __m512 a[16];
    for (int i = 0; i < 16; i++)
        a[i] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d += 16) {
        __m512 kv[4];
        for (int j = 0; j < 4; j++)
            kv[j] = kv_load16(k, (size_t)j * stride + (size_t)d, kt);
        for (int g = 0; g < nh; g++) {
            __m512 qv = _mm512_loadu_ps(q + (size_t)g * hd + d);
            for (int j = 0; j < 4; j++)
                a[4 * g + j] = _mm512_fmadd_ps(qv, kv[j], a[4 * g + j]);
        }
    }
    __m512 s = _mm512_mul_ps(hsum16x16(a), _mm512_set1_ps(scale));
    _mm_storeu_ps(sc, _mm512_castps512_ps128(s));
    if (nh > 1)
        _mm_storeu_ps(sc + ATT_CHUNK, _mm512_extractf32x4_ps(s, 1));
    if (nh > 2)
        _mm_storeu_ps(sc + 2 * ATT_CHUNK, _mm512_extractf32x4_ps(s, 2));
    if (nh > 3)
        _mm_storeu_ps(sc + 3 * ATT_CHUNK, _mm512_extractf32x4_ps(s, 3));
}

/* ACC[g] (HD, HD apart) += sum over LEN keys of W[g * ATT_CHUNK + j] * V_j for
 * NH <= 4 heads, DW vectors of 16 elements from D; one chain per element. */
ATT512_INLINE void attn_accum4(const float *w, int nh, const void *v, size_t stride, int len,
                               int hd, int d, int dw, float *acc, int kt)
{
    __m512 a[16];
    for (int g = 0; g < nh; g++)
        for (int i = 0; i < dw; i++)
            a[4 * g + i] = _mm512_loadu_ps(acc + (size_t)g * hd + d + 16 * i);
    for (int j = 0; j < len; j++) {
        __m512 vv[4];
        for (int i = 0; i < dw; i++)
            vv[i] = kv_load16(v, (size_t)j * stride + (size_t)d + 16 * (size_t)i, kt);
        for (int g = 0; g < nh; g++) {
            __m512 wj = _mm512_set1_ps(w[g * ATT_CHUNK + j]);
            for (int i = 0; i < dw; i++)
                a[4 * g + i] = _mm512_fmadd_ps(wj, vv[i], a[4 * g + i]);
        }
    }
    for (int g = 0; g < nh; g++)
        for (int i = 0; i < dw; i++)
            _mm512_storeu_ps(acc + (size_t)g * hd + d + 16 * i, a[4 * g + i]);
}

/* The head block sizes as constants, so each inlined copy is unrolled. */
#define ATT512_BY_NH(nh, CALL)                                                                     \
    switch (nh) {                                                                                  \
    case 1: { enum { NH = 1 }; CALL; } break;                                                      \
    case 2: { enum { NH = 2 }; CALL; } break;                                                      \
    case 3: { enum { NH = 3 }; CALL; } break;                                                      \
    default: { enum { NH = 4 }; CALL; } break;                                                     \
    }

/* attn_chunk's contract, HD % 16 == 0. */
ATT512_INLINE void attn_chunk512(const float *q, int hpi, int hd, float scale, const void *k,
                                 const void *v, size_t stride, int len, float *sc, float *m,
                                 float *l, float *acc, int kt)
{
    int j = 0;
    for (; j + 4 <= len; j += 4) {
        const void *kj = kv_ptr(k, (size_t)j * stride, kt);
        for (int g0 = 0; g0 < hpi; g0 += 4) {
            int nh = hpi - g0 < 4 ? hpi - g0 : 4;
            ATT512_BY_NH(nh, attn_score4x4(q + (size_t)g0 * hd, NH, kj, stride, hd, scale,
                                           sc + g0 * ATT_CHUNK + j, kt))
        }
    }
    for (; j < len; j++)
        for (int g = 0; g < hpi; g++)
            sc[g * ATT_CHUNK + j] = kv_dot(q + g * hd, k, (size_t)j * stride, hd, kt) * scale;

    attn_softmax_chunk(sc, hpi, len, m, l);

    memset(acc, 0, sizeof(float) * (size_t)hpi * hd);
    for (int j0 = 0; j0 < len; j0 += ATT_VTILE) {
        int jn = len - j0 < ATT_VTILE ? len - j0 : ATT_VTILE;
        const void *vj = kv_ptr(v, (size_t)j0 * stride, kt);
        for (int g0 = 0; g0 < hpi; g0 += 4) {
            int nh = hpi - g0 < 4 ? hpi - g0 : 4;
            const float *w = sc + g0 * ATT_CHUNK + j0;
            float *a = acc + (size_t)g0 * hd;
            int d = 0;
            for (; d + 64 <= hd; d += 64)
                ATT512_BY_NH(nh, attn_accum4(w, NH, vj, stride, jn, hd, d, 4, a, kt))
            for (; d < hd; d += 16)
                ATT512_BY_NH(nh, attn_accum4(w, NH, vj, stride, jn, hd, d, 1, a, kt))
        }
    }
}

ATT512_TARGET static void attn_chunk512_f32(const float *q, int hpi, int hd, float scale,
                                            const void *k, const void *v, size_t stride, int len,
                                            float *sc, float *m, float *l, float *acc)
{
    attn_chunk512(q, hpi, hd, scale, k, v, stride, len, sc, m, l, acc, CPU_KV_F32);
}

ATT512_TARGET static void attn_chunk512_f16(const float *q, int hpi, int hd, float scale,
                                            const void *k, const void *v, size_t stride, int len,
                                            float *sc, float *m, float *l, float *acc)
{
    attn_chunk512(q, hpi, hd, scale, k, v, stride, len, sc, m, l, acc, CPU_KV_F16);
}

ATT512_TARGET static void attn_chunk512_q8_0(const float *q, int hpi, int hd, float scale,
                                             const void *k, const void *v, size_t stride,
                                             int len, float *sc, float *m, float *l, float *acc)
{
    attn_chunk512(q, hpi, hd, scale, k, v, stride, len, sc, m, l, acc, CPU_KV_Q8_0);
}

static const attn_chunk_fn attn_chunks512[] = {
    [CPU_KV_F32] = attn_chunk512_f32,
    [CPU_KV_F16] = attn_chunk512_f16,
    [CPU_KV_Q8_0] = attn_chunk512_q8_0,
};
#endif

/* Folds the partial (M2, L2, ACC2) of the next chunk into (M, L, ACC), HPI
 * heads of HD. */
static void attn_merge(int hpi, int hd, float *m, float *l, float *acc, const float *m2,
                       const float *l2, const float *acc2)
{
    for (int g = 0; g < hpi; g++) {
        float mn = m2[g] > m[g] ? m2[g] : m[g];
        float a = expf(m[g] - mn), b = expf(m2[g] - mn);
        l[g] = l[g] * a + l2[g] * b;
        m[g] = mn;
        float *o = acc + g * hd;
        const float *o2 = acc2 + g * hd;
        for (int i = 0; i < hd; i++)
            o[i] = o[i] * a + o2[i] * b;
    }
}

/* OUT (HPI, HD) /= L: the softmax's denominator. With SINKS (HPI logits,
 * or NULL) each head's sink joins the denominator as one more key with no
 * value: against the running max M, exp(sink - max(M, sink)). Here, after
 * every chunk is folded, so the chunk kernels and their order stay as they
 * are. */
static void attn_finish(int hpi, int hd, const float *m, const float *l, const float *sinks,
                        float *out)
{
    for (int g = 0; g < hpi; g++) {
        float inv;
        if (sinks) {
            float mx = sinks[g] > m[g] ? sinks[g] : m[g];
            float a = expf(m[g] - mx);
            inv = a / (l[g] * a + expf(sinks[g] - mx));
        } else {
            inv = 1.0f / l[g];
        }
        for (int i = 0; i < hd; i++)
            out[g * hd + i] *= inv;
    }
}

/* First visible key and number of keys of token T of JOB. */
static void attn_range(const struct attn_job *job, int t, int32_t *lo, int32_t *len)
{
    int32_t p = job->pos + t;
    int32_t window = job->c->m->hp.swa_window;
    *lo = job->swa && p - window + 1 > 0 ? p - window + 1 : 0;
    *len = p - *lo + 1;
}

static void attn_worker(void *arg, int ith, int nth)
{
    (void)nth;
    struct attn_job *job = arg;
    const struct cpu *c = job->c;
    int hd = c->head_dim, group = c->n_head / c->n_head_kv, nkv = c->n_head_kv;
    float scale = c->m->hp.attn_scale;
    size_t stride = (size_t)c->kv_dim;
    int kt = c->kv;
    attn_chunk_fn chunk = attn_chunks[kt];
#ifdef ATT512
    if (hd % 16 == 0 && quant_isa() >= QUANT_ISA_AVX512)
        chunk = attn_chunks512[kt];
#endif
    size_t layer = (size_t)job->il * c->n_ctx * stride; /* element index of this layer's rows */
    /* This thread's scratch: scores (group, ATT_CHUNK), then a partial
     * (acc (group, hd), m (group), l (group)) and the running m and l. */
    float *sc = c->scores + (size_t)ith * c->scores_stride;
    float *pacc = sc + (size_t)group * ATT_CHUNK;
    float *pm = pacc + (size_t)group * hd, *pl = pm + group;
    float *rm = pl + group, *rl = rm + group;
    int items = job->split ? job->n * job->n_chunks : job->n * nkv;
    const float *sinks = c->layers[job->il].sinks;
    for (;;) {
        int it = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (it >= items)
            break;
        /* Split items take every KV head of their chunk, so a thread reads
         * whole cache rows (all heads) of a contiguous block of keys. */
        int t, h0, h1, ch0, ch1;
        if (job->split) {
            t = it / job->n_chunks;
            ch0 = it % job->n_chunks;
            ch1 = ch0 + 1;
            h0 = 0;
            h1 = nkv;
        } else {
            t = it / nkv;
            h0 = it % nkv;
            h1 = h0 + 1;
            ch0 = 0;
            ch1 = INT32_MAX;
        }
        int32_t lo, len;
        attn_range(job, t, &lo, &len);
        for (int h = h0; h < h1; h++) {
            const float *q = c->q + (int64_t)t * c->q_dim + (size_t)h * group * hd;
            size_t row0 = layer + (size_t)lo * stride + (size_t)h * hd;
            float *out = c->att + (int64_t)t * c->q_dim + (size_t)h * group * hd;
            for (int ch = ch0; ch < ch1 && (int32_t)ch * ATT_CHUNK < len; ch++) {
                int32_t j0 = ch * ATT_CHUNK;
                int cl = len - j0 < ATT_CHUNK ? (int)(len - j0) : ATT_CHUNK;
                size_t off = (size_t)j0 * stride;
                const void *k = kv_ptr(c->k_cache, row0 + off, kt);
                const void *v = kv_ptr(c->v_cache, row0 + off, kt);
                if (job->split) {
                    float *part = c->attn_part +
                                  ((size_t)(t * job->n_chunks + ch) * nkv + h) * c->part_stride;
                    chunk(q, group, hd, scale, k, v, stride, cl, sc, part, part + group,
                          part + 2 * group);
                } else if (ch == 0) {
                    chunk(q, group, hd, scale, k, v, stride, cl, sc, rm, rl, out);
                } else {
                    chunk(q, group, hd, scale, k, v, stride, cl, sc, pm, pl, pacc);
                    attn_merge(group, hd, rm, rl, out, pm, pl, pacc);
                }
            }
            if (!job->split)
                attn_finish(group, hd, rm, rl, sinks ? sinks + (size_t)h * group : NULL, out);
        }
    }
}

/* Split path, on the caller: folds each (token, KV head)'s chunk partials
 * in chunk order, exactly as attn_worker folds them on the other path. */
static void attn_gather(struct attn_job *job)
{
    const struct cpu *c = job->c;
    int hd = c->head_dim, group = c->n_head / c->n_head_kv, nkv = c->n_head_kv;
    /* Thread 0's running m and l (attn_worker's layout), idle now. */
    float *m = c->scores + (size_t)group * (ATT_CHUNK + hd + 2), *l = m + group;
    const float *sinks = c->layers[job->il].sinks;
    for (int t = 0; t < job->n; t++) {
        int32_t lo, len;
        attn_range(job, t, &lo, &len);
        int n_ch = (int)((len + ATT_CHUNK - 1) / ATT_CHUNK);
        for (int h = 0; h < nkv; h++) {
            float *out = c->att + (int64_t)t * c->q_dim + (size_t)h * group * hd;
            for (int ch = 0; ch < n_ch; ch++) {
                const float *part = c->attn_part +
                                    ((size_t)(t * job->n_chunks + ch) * nkv + h) * c->part_stride;
                if (ch == 0) {
                    memcpy(m, part, sizeof(float) * group);
                    memcpy(l, part + group, sizeof(float) * group);
                    memcpy(out, part + 2 * group, sizeof(float) * (size_t)group * hd);
                } else {
                    attn_merge(group, hd, m, l, out, part, part + group, part + 2 * group);
                }
            }
            attn_finish(group, hd, m, l, sinks ? sinks + (size_t)h * group : NULL, out);
        }
    }
}

/* ---- create / destroy ---- */

static void *alloc_aligned(size_t bytes, uint64_t *total)
{
    size_t n = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (n == 0)
        n = ALIGN;
    void *p = aligned_alloc(ALIGN, n);
    if (p && total)
        *total += n;
    return p;
}

static void read_cpu_name(char *buf, size_t cap)
{
    snprintf(buf, cap, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        char *s = colon + 1;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t len = strcspn(s, "\n");
        while (len > 0 && s[len - 1] == ' ')
            len--;
        if (len > 0)
            snprintf(buf, cap, "%.*s", (int)len, s);
        break;
    }
    fclose(f);
}

static void cpu_destroy(void *b)
{
    struct cpu *c = b;
    if (!c)
        return;
    threadpool_free(c->pool);
    free(c->small);
    free(c->layers);
    free(c->k_cache);
    free(c->v_cache);
    free(c->x);
    free(c->xb);
    free(c->tmp);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->rope_cos_local);
    free(c->rope_sin_local);
    free(c->act_mem);
    free(c->split_mem);
    free(c->acts);
    free(c->scores);
    free(c->gemm_mem);
    free(c->attn_part);
    free(c->router);
    free(c->sel);
    free(c->sel_w);
    free(c->sel_row);
    free(c->exp_count);
    free(c->exp_off);
    free(c->gath);
    free(c->moe_h);
    free(c->moe_h2);
    free(c->moe_y);
    free(c->sh_out);
    free(c->sh_gate);
    free(c->exp_w);
    free(c->exp_mm);
    free(c->exp_n);
    free(c->exp_tile0);
    free(c);
}

/* The mixture-of-experts scratch (nothing for a dense model); -1 when out
 * of memory. c->acts must be allocated. */
static int moe_alloc(struct cpu *c, uint64_t *scratch)
{
    if (c->n_expert <= 0)
        return 0;
    size_t B = (size_t)c->max_batch, K = (size_t)c->n_used, NE = (size_t)c->n_expert;
    c->router = alloc_aligned(B * NE * sizeof(float), scratch);
    c->sel = alloc_aligned(B * K * sizeof(int32_t), scratch);
    c->sel_w = alloc_aligned(B * K * sizeof(float), scratch);
    c->sel_row = alloc_aligned(B * K * sizeof(int32_t), scratch);
    c->exp_count = alloc_aligned(NE * sizeof(int32_t), scratch);
    c->exp_off = alloc_aligned(NE * sizeof(int32_t), scratch);
    c->gath = alloc_aligned(2 * B * K * sizeof *c->gath, scratch);
    c->moe_acts = c->acts + N_SLOTS * B;
    c->moe_h = alloc_aligned(B * K * (size_t)c->n_ff_exp * sizeof(float), scratch);
    c->moe_h2 = alloc_aligned(B * K * (size_t)c->n_ff_exp * sizeof(float), scratch);
    c->moe_y = alloc_aligned(B * K * (size_t)c->n_embd * sizeof(float), scratch);
    c->sh_out = alloc_aligned(B * (size_t)c->n_embd * sizeof(float), scratch);
    c->sh_gate = alloc_aligned(B * sizeof(float), scratch);
    c->exp_w = alloc_aligned(3 * NE * sizeof *c->exp_w, scratch);
    c->exp_mm = alloc_aligned(3 * NE * sizeof *c->exp_mm, scratch);
    c->exp_n = alloc_aligned(NE * sizeof *c->exp_n, scratch);
    c->exp_tile0 = alloc_aligned((NE + 1) * sizeof *c->exp_tile0, scratch);
    return c->router && c->sel && c->sel_w && c->sel_row && c->exp_count && c->exp_off &&
                   c->gath && c->moe_h && c->moe_h2 && c->moe_y && c->sh_out && c->sh_gate &&
                   c->exp_w && c->exp_mm && c->exp_n && c->exp_tile0
               ? 0
               : -1;
}

/* Hands out the next N floats of the small-vector store, dequantising T into
 * them; NULL (and nothing used) when T is absent. */
static float *take_small(float **cursor, const struct model_tensor *t)
{
    if (!t->data)
        return NULL;
    float *p = *cursor;
    quant_dequantize_row(t->type, t->data, p, t->ne0 * t->ne1);
    *cursor += t->ne0 * t->ne1;
    return p;
}

static size_t small_count(const struct model_tensor *t)
{
    return t->data ? (size_t)(t->ne0 * t->ne1) : 0;
}

static size_t max_act_size(const struct model_tensor *t, size_t cur)
{
    size_t s = quant_act_size(t->type, t->ne0);
    return s > cur ? s : cur;
}

static size_t max_split_size(const struct model_tensor *t, size_t cur)
{
    size_t s = t->data ? quant_act_split_size(t->type, t->ne0) : 0;
    return s > cur ? s : cur;
}

static int64_t max_row(const struct model_tensor *t, int64_t cur)
{
    return t->data && t->ne0 > cur ? t->ne0 : cur;
}

/* The cache type of CFG for model HP, as an enum cpu_kv in *KT: a row of
 * cpu_kv_types (AUTO, a config built by hand, is f32: the exact path).
 * q8_0 blocks must not straddle heads, so it needs a head size that is a
 * multiple of 32. Returns 0 or -1 with ERR. */
static int kv_type_check(const struct model_hparams *hp, const struct backend_config *cfg,
                         int *kt, char *err, size_t errlen)
{
    enum engine_kv_type t = cfg->kv_type == ENGINE_KV_AUTO ? ENGINE_KV_F32 : cfg->kv_type;
    for (size_t i = 0; i < sizeof cpu_kv_types / sizeof cpu_kv_types[0]; i++) {
        if (cpu_kv_types[i].type != t)
            continue;
        if (hp->head_dim % (int32_t)cpu_kv_types[i].block != 0) {
            kv_seterr(err, errlen,
                      "cpu: --kv-type %s needs a head size that is a multiple of %u, and this "
                      "model's is %d: use f16 or f32",
                      cpu_kv_types[i].name, cpu_kv_types[i].block, hp->head_dim);
            return -1;
        }
        *kt = (int)i;
        return 0;
    }
    /* spelled here: this backend links without the engine (the tests') */
    kv_seterr(err, errlen, "cpu: KV cache type %d is unknown: use f16 (the default), f32 or q8_0",
              (int)cfg->kv_type);
    return -1;
}

static void *cpu_create(const struct model *m, const struct backend_config *cfg, char *err,
                        size_t errlen)
{
    const struct model_hparams *hp = &m->hp;
    if (cfg->n_ctx < 1) {
        kv_seterr(err, errlen, "cpu: context size %d must be positive", cfg->n_ctx);
        return NULL;
    }
    struct cpu *c = calloc(1, sizeof *c);
    if (!c) {
        kv_seterr(err, errlen, "cpu: out of memory");
        return NULL;
    }
    c->m = m;
    c->n_ctx = cfg->n_ctx;
    c->max_batch = cfg->n_ctx < MAX_BATCH ? cfg->n_ctx : MAX_BATCH;
    c->n_embd = hp->n_embd;
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    /* hb and hb2 serve the dense FFN, or a mixture's shared expert */
    c->n_ff = hp->n_expert > 0 ? hp->n_ff_shexp : hp->n_ff;
    c->n_expert = hp->n_expert;
    c->n_used = hp->n_expert_used;
    c->n_ff_exp = hp->n_ff_exp;
    c->n_vocab = hp->n_vocab;
    c->head_dim = hp->head_dim;
    c->n_head = hp->n_head;
    c->n_head_kv = hp->n_head_kv;
    c->n_rot = hp->n_rot;
    read_cpu_name(c->device, sizeof c->device);

    int nt = cfg->n_threads;
    if (nt <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        nt = nc > 0 ? (int)nc : 1;
    }
    if (nt > 256)
        nt = 256;
    c->pool = threadpool_new(nt);
    if (!c->pool) {
        /* threadpool_new cannot say which of the two it was */
        kv_seterr(err, errlen, "cpu: cannot start %d threads (out of memory or over the "
                  "process's thread limit): use fewer with --threads", nt);
        cpu_destroy(c);
        return NULL;
    }
    c->n_threads = threadpool_size(c->pool);

    /* Small vectors: norms, biases, RoPE frequencies. */
    size_t n_small = small_count(&m->output_norm) + (size_t)hp->n_rot;
    for (int il = 0; il < hp->n_layer; il++) {
        const struct model_layer *l = &m->layers[il];
        n_small += small_count(&l->attn_norm) + small_count(&l->ffn_norm) +
                   small_count(&l->post_attn_norm) + small_count(&l->post_ffw_norm) +
                   small_count(&l->q_norm) + small_count(&l->k_norm) + small_count(&l->bq) +
                   small_count(&l->bk) + small_count(&l->bv) +
                   small_count(&l->ffn_gate_inp_shexp) + small_count(&l->bo) +
                   small_count(&l->attn_sinks) + small_count(&l->ffn_gate_inp_b) +
                   small_count(&l->ffn_gate_exps_b) + small_count(&l->ffn_up_exps_b) +
                   small_count(&l->ffn_down_exps_b);
    }
    uint64_t scratch = 0;
    c->small = alloc_aligned(n_small * sizeof(float), &scratch);
    c->layers = calloc((size_t)hp->n_layer, sizeof *c->layers);
    if (!c->small || !c->layers) {
        kv_seterr(err, errlen, "cpu: out of memory for norm weights");
        cpu_destroy(c);
        return NULL;
    }
    float *cur = c->small;
    c->output_norm = take_small(&cur, &m->output_norm);
    for (int il = 0; il < hp->n_layer; il++) {
        const struct model_layer *l = &m->layers[il];
        struct cpu_layer *cl = &c->layers[il];
        cl->attn_norm = take_small(&cur, &l->attn_norm);
        cl->ffn_norm = take_small(&cur, &l->ffn_norm);
        cl->post_attn_norm = take_small(&cur, &l->post_attn_norm);
        cl->post_ffw_norm = take_small(&cur, &l->post_ffw_norm);
        cl->q_norm = take_small(&cur, &l->q_norm);
        cl->k_norm = take_small(&cur, &l->k_norm);
        cl->bq = take_small(&cur, &l->bq);
        cl->bk = take_small(&cur, &l->bk);
        cl->bv = take_small(&cur, &l->bv);
        cl->gate_inp_shexp = take_small(&cur, &l->ffn_gate_inp_shexp);
        cl->bo = take_small(&cur, &l->bo);
        cl->sinks = take_small(&cur, &l->attn_sinks);
        cl->gate_inp_b = take_small(&cur, &l->ffn_gate_inp_b);
        cl->gate_exps_b = take_small(&cur, &l->ffn_gate_exps_b);
        cl->up_exps_b = take_small(&cur, &l->ffn_up_exps_b);
        cl->down_exps_b = take_small(&cur, &l->ffn_down_exps_b);
    }
    int half = hp->n_rot / 2;
    c->inv_freq = cur;
    c->inv_freq_local = cur + half;
    model_rope_inv_freq(hp, hp->rope_base, hp->rope_freq_scale, m->rope_freqs.data, c->inv_freq,
                  &c->rope_mscale);
    model_rope_inv_freq(hp, hp->rope_base_local, hp->rope_scale_local, m->rope_freqs.data,
                  c->inv_freq_local, &c->rope_mscale_local);

    /* KV cache. The model's sizes are bounded by the loader, but the
     * context comes from the user: refuse sizes no machine could hold
     * before multiplying them into an overflow. */
    if (kv_type_check(hp, cfg, &c->kv, err, errlen) != 0) {
        cpu_destroy(c);
        return NULL;
    }
    /* bytes per element, q8_0's 34/32 included */
    double esz = (double)cpu_kv_types[c->kv].block_bytes / cpu_kv_types[c->kv].block;
    double kv_total = 2.0 * hp->n_layer * (double)c->n_ctx * c->kv_dim * esz;
    if (kv_total > 0x1p50) {
        kv_seterr(err, errlen, "cpu: a context of %d tokens needs %.0f GiB of KV cache", c->n_ctx,
                kv_total / (1024.0 * 1024.0 * 1024.0));
        cpu_destroy(c);
        return NULL;
    }
    size_t kv_elems = (size_t)hp->n_layer * (size_t)c->n_ctx * (size_t)c->kv_dim;
    size_t kv_size = (size_t)kv_bytes_of(c->kv, kv_elems);
    c->k_cache = alloc_aligned(kv_size, &c->kv_bytes);
    c->v_cache = alloc_aligned(kv_size, &c->kv_bytes);
    if (!c->k_cache || !c->v_cache) {
        kv_seterr(err, errlen, "cpu: out of memory for the KV cache (%.1f MiB for %d tokens)",
                2.0 * (double)kv_size / (1024.0 * 1024.0), c->n_ctx);
        cpu_destroy(c);
        return NULL;
    }

    /* Activation scratch. */
    size_t B = (size_t)c->max_batch;
    c->x = alloc_aligned(B * c->n_embd * sizeof(float), &scratch);
    c->xb = alloc_aligned(B * c->n_embd * sizeof(float), &scratch);
    c->tmp = alloc_aligned(B * c->n_embd * sizeof(float), &scratch);
    c->q = alloc_aligned(B * c->q_dim * sizeof(float), &scratch);
    c->k = alloc_aligned(B * c->kv_dim * sizeof(float), &scratch);
    c->v = alloc_aligned(B * c->kv_dim * sizeof(float), &scratch);
    c->att = alloc_aligned(B * c->q_dim * sizeof(float), &scratch);
    c->hb = alloc_aligned(B * c->n_ff * sizeof(float), &scratch);
    c->hb2 = alloc_aligned(B * c->n_ff * sizeof(float), &scratch);
    c->rope_cos = alloc_aligned(B * half * sizeof(float), &scratch);
    c->rope_sin = alloc_aligned(B * half * sizeof(float), &scratch);
    c->rope_cos_local = alloc_aligned(B * half * sizeof(float), &scratch);
    c->rope_sin_local = alloc_aligned(B * half * sizeof(float), &scratch);

    size_t act = max_act_size(&m->output, 0), split = max_split_size(&m->output, 0);
    /* quant_gemm's scratch holds a panel of the longest row it may see. */
    int64_t longest = max_row(&m->output, 0);
    for (int il = 0; il < hp->n_layer; il++) {
        const struct model_layer *l = &m->layers[il];
        const struct model_tensor *mats[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->ffn_gate, &l->ffn_up,
                                             &l->ffn_down, &l->ffn_gate_inp, &l->ffn_gate_exps,
                                             &l->ffn_up_exps, &l->ffn_down_exps, &l->ffn_gate_shexp,
                                             &l->ffn_up_shexp, &l->ffn_down_shexp};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            longest = max_row(mats[i], longest);
            act = max_act_size(mats[i], act);
            split = max_split_size(mats[i], split);
        }
    }
    c->act_stride = (act + ALIGN - 1) / ALIGN * ALIGN;
    c->split_stride = (split + ALIGN - 1) / ALIGN * ALIGN;
    c->split_mem = c->split_stride ? alloc_aligned(N_SLOTS * c->split_stride, &scratch) : NULL;
    /* the N_SLOTS slots, then a mixture's down inputs (one per (token, k)) */
    size_t n_acts = N_SLOTS * B + B * (size_t)c->n_used;
    c->act_mem = alloc_aligned(n_acts * c->act_stride, &scratch);
    c->acts = calloc(n_acts, sizeof *c->acts);
    size_t group = (size_t)(c->n_head / c->n_head_kv);
    c->scores_stride = (group * (ATT_CHUNK + (size_t)c->head_dim + 4) + 15) / 16 * 16;
    c->scores = alloc_aligned((size_t)c->n_threads * c->scores_stride * sizeof(float), &scratch);
    c->gemm_stride = (quant_gemm_scratch(longest) + ALIGN - 1) / ALIGN * ALIGN;
    c->gemm_mem = alloc_aligned((size_t)c->n_threads * c->gemm_stride, &scratch);
    c->part_stride = (group * ((size_t)c->head_dim + 2) + 15) / 16 * 16;
    c->attn_max_chunks = (c->n_ctx + ATT_CHUNK - 1) / ATT_CHUNK;
    c->attn_part = alloc_aligned((size_t)ATT_SPLIT_TOKENS * (size_t)c->attn_max_chunks *
                                     (size_t)c->n_head_kv * c->part_stride * sizeof(float),
                                 &scratch);
    if (!c->x || !c->xb || !c->tmp || !c->q || !c->k || !c->v || !c->att || !c->hb || !c->hb2 ||
        !c->rope_cos || !c->rope_sin || !c->rope_cos_local || !c->rope_sin_local ||
        !c->act_mem || !c->acts || (c->split_stride && !c->split_mem) || !c->scores || !c->gemm_mem ||
        !c->attn_part || moe_alloc(c, &scratch)) {
        kv_seterr(err, errlen, "cpu: out of memory for scratch buffers (%.1f MiB)",
                (double)scratch / (1024.0 * 1024.0));
        cpu_destroy(c);
        return NULL;
    }
    scratch += n_acts * sizeof *c->acts;
    c->scratch_bytes = scratch;
    return c;
}

/* ---- forward ---- */

/* Prepares, on the slots, one input per distinct type among TYPES (so Q, K
 * and V of one type share a preparation); SLOT_OF[i] says which slot weight
 * i uses. */
static int assign_slots(const enum ggml_type *types, int n, enum ggml_type *slot_types,
                        int *slot_of)
{
    int n_slots = 0;
    for (int i = 0; i < n; i++) {
        int s = 0;
        while (s < n_slots && slot_types[s] != types[i])
            s++;
        if (s == n_slots)
            slot_types[n_slots++] = types[i];
        slot_of[i] = s;
    }
    return n_slots;
}

/* Runs a per-token step (norm, RoPE) over N tokens. A single token is done
 * by the caller: the pool could only give it to one thread anyway, and a
 * decode step would otherwise pay a dispatch (spin-up of the workers and the
 * wait for all of them) for each of these few-microsecond steps. */
static void run_step(struct cpu *c, threadpool_fn fn, void *job, int n)
{
    if (n == 1)
        fn(job, 0, 1);
    else
        threadpool_run(c->pool, fn, job);
}

static void run_norm(struct cpu *c, struct norm_job *job, const struct model_tensor *const *ws,
                     int n_w, int *slot_of)
{
    enum ggml_type types[N_SLOTS];
    for (int i = 0; i < n_w; i++)
        types[i] = ws[i]->type;
    job->n_types = assign_slots(types, n_w, job->types, slot_of);
    for (int s = 0; s < job->n_types; s++)
        job->acts[s] = c->acts + (size_t)s * c->max_batch;
    /* A matrix-vector product reads its input once per row: one token's is
     * worth splitting for the AVX512_VNNI kernels; a batch's GEMM never
     * reads a split. */
    job->split = job->n == 1 && c->split_stride > 0;
    run_step(c, norm_worker, job, job->n);
}

/* Attention of layer IL for N tokens at POS (attn_worker). */
static void run_attn(struct cpu *c, int il, int n, int32_t pos, bool swa)
{
    struct attn_job aj = {.c = c, .il = il, .n = n, .pos = pos, .swa = swa};
    atomic_init(&aj.next, 0);
    /* Split the key range when (token, KV head) items are too few to keep
     * every thread busy. Either way gives the same bits. */
    aj.split = n <= ATT_SPLIT_TOKENS && n * c->n_head_kv < 4 * c->n_threads;
    if (aj.split) {
        int32_t lo, len;
        attn_range(&aj, n - 1, &lo, &len); /* the last token's row is the longest */
        aj.n_chunks = (int)((len + ATT_CHUNK - 1) / ATT_CHUNK);
    }
    /* One item (a decode step within the first ATT_CHUNK positions) keeps
     * one thread busy whatever the pool's size: the caller does it without
     * paying a dispatch, as run_step does for per-token steps. */
    int items = aj.split ? n * aj.n_chunks : n * c->n_head_kv;
    if (items == 1)
        attn_worker(&aj, 0, 1);
    else
        threadpool_run(c->pool, attn_worker, &aj);
    if (aj.split)
        attn_gather(&aj);
}

/* Per token: tmp = sum_k w_k * expert_k(x) (+ sigmoid gate * shared). */
struct moe_sum_job {
    struct cpu *c;
    int n;
    bool shared;
};

static void moe_sum_worker(void *arg, int ith, int nth)
{
    const struct moe_sum_job *job = arg;
    const struct cpu *c = job->c;
    int E = c->n_embd, K = c->n_used;
    for (int t = ith; t < job->n; t += nth) {
        float *out = c->tmp + (int64_t)t * E;
        for (int i = 0; i < E; i++)
            out[i] = 0.0f;
        for (int k = 0; k < K; k++) {
            float w = c->sel_w[t * K + k];
            const float *y = c->moe_y + (int64_t)c->sel_row[t * K + k] * E;
            for (int i = 0; i < E; i++)
                out[i] += w * y[i];
        }
        if (job->shared) {
            float g = c->sh_gate[t];
            const float *y = c->sh_out + (int64_t)t * E;
            for (int i = 0; i < E; i++)
                out[i] += g * y[i];
        }
    }
}

/* Points the views of slot S (0 gate, 1 up, 2 down) of expert E at its
 * matrix in the stacked tensor ALL. */
static const struct model_tensor *expert_view(struct cpu *c, int s, int e,
                                              const struct model_tensor *all)
{
    struct model_tensor *v = &c->exp_w[s * c->n_expert + e];
    int64_t rows = all->ne1 / c->n_expert;
    size_t bytes = quant_row_size(all->type, all->ne0) * (size_t)rows;
    *v = (struct model_tensor){.type = all->type, .ne0 = all->ne0, .ne1 = rows,
                               .data = (const unsigned char *)all->data + (size_t)e * bytes,
                               .nbytes = bytes};
    return v;
}

/* The mixture-of-experts FFN of layer L for the N tokens whose normed
 * input is in c->xb, prepared by NJ (run_norm over router, gate_exps,
 * up_exps, slots in SLOT_OF): the result goes to c->tmp, as the dense
 * FFN's does. */
static void moe_ffn(struct cpu *c, const struct model_layer *l, const struct cpu_layer *cl, int n,
                    const struct norm_job *nj, const int *slot_of)
{
    const struct model_hparams *hp = &c->m->hp;
    int E = c->n_embd, K = c->n_used, NE = c->n_expert, F = c->n_ff_exp;

    /* router logits, then each token's experts */
    struct matmul_job mj = {0};
    matmul_job_init(&mj, c, n, 1);
    mj.mm[0] = (struct matmul){.w = &l->ffn_gate_inp, .acts = nj->acts[slot_of[0]],
                               .y = c->router, .y_stride = NE, .bias = cl->gate_inp_b};
    threadpool_run(c->pool, matmul_worker, &mj);
    for (int e = 0; e < NE; e++)
        c->exp_count[e] = 0;
    for (int t = 0; t < n; t++) {
        model_moe_select(c->router + (int64_t)t * NE, NE, K, hp->expert_gating, hp->expert_weights_norm,
                   hp->expert_weights_scale, c->sel + t * K, c->sel_w + t * K);
        for (int k = 0; k < K; k++)
            c->exp_count[c->sel[t * K + k]]++;
    }
    int32_t off = 0;
    for (int e = 0; e < NE; e++) {
        c->exp_off[e] = off;
        off += c->exp_count[e];
        c->exp_count[e] = 0; /* refilled below as the rows are placed */
    }
    struct quant_act *g_in = c->gath, *u_in = c->gath + (size_t)c->max_batch * K;
    for (int t = 0; t < n; t++)
        for (int k = 0; k < K; k++) {
            int e = c->sel[t * K + k];
            int32_t row = c->exp_off[e] + c->exp_count[e]++;
            c->sel_row[t * K + k] = row;
            g_in[row] = nj->acts[slot_of[1]][t];
            u_in[row] = nj->acts[slot_of[2]][t];
        }

    /* gate and up of every active expert, with the GLU */
    struct matmul *mg = c->exp_mm, *mu = c->exp_mm + NE, *md = c->exp_mm + 2 * NE;
    int n_act = 0;
    c->exp_tile0[0] = 0;
    int64_t tiles_f = (F + ROW_TILE - 1) / ROW_TILE, tiles_e = (E + ROW_TILE - 1) / ROW_TILE;
    for (int e = 0; e < NE; e++) {
        if (!c->exp_count[e])
            continue;
        int32_t r = c->exp_off[e];
        mg[n_act] = (struct matmul){.w = expert_view(c, 0, e, &l->ffn_gate_exps), .acts = g_in + r,
                                    .y = c->moe_h + (int64_t)r * F, .y_stride = F,
                                    .bias = cl->gate_exps_b ? cl->gate_exps_b + (size_t)e * F : NULL};
        mu[n_act] = (struct matmul){.w = expert_view(c, 1, e, &l->ffn_up_exps), .acts = u_in + r,
                                    .y = c->moe_h2 + (int64_t)r * F, .y_stride = F,
                                    .bias = cl->up_exps_b ? cl->up_exps_b + (size_t)e * F : NULL};
        md[n_act] = (struct matmul){.w = expert_view(c, 2, e, &l->ffn_down_exps),
                                    .acts = c->moe_acts + r, .y = c->moe_y + (int64_t)r * E,
                                    .y_stride = E,
                                    .bias = cl->down_exps_b ? cl->down_exps_b + (size_t)e * E : NULL};
        c->exp_n[n_act] = c->exp_count[e];
        c->exp_tile0[n_act + 1] = c->exp_tile0[n_act] + tiles_f;
        n_act++;
    }
    struct moe_job xj = {.c = c, .mm = mg, .up = mu, .n_tok = c->exp_n, .tile0 = c->exp_tile0,
                         .n_mm = n_act, .clamped = hp->glu_clamped, .alpha = hp->glu_alpha,
                         .limit = hp->glu_limit};
    atomic_init(&xj.next, 0);
    threadpool_run(c->pool, moe_worker, &xj);

    /* down: its inputs prepared per row, then every active expert again */
    struct norm_job dj = {.c = c, .n = n * K, .x = c->moe_h, .dim = F, .n_types = 1,
                          .types = {l->ffn_down_exps.type}, .acts = {c->moe_acts}};
    run_step(c, norm_worker, &dj, n * K);
    for (int i = 0; i < n_act; i++)
        c->exp_tile0[i + 1] = c->exp_tile0[i] + tiles_e;
    xj = (struct moe_job){.c = c, .mm = md, .n_tok = c->exp_n, .tile0 = c->exp_tile0, .n_mm = n_act};
    atomic_init(&xj.next, 0);
    threadpool_run(c->pool, moe_worker, &xj);

    /* the shared expert, a dense SwiGLU FFN on the same input, gated */
    bool shared = l->ffn_gate_shexp.data != NULL;
    if (shared) {
        int slots[N_SLOTS];
        struct norm_job sj = {.c = c, .n = n, .x = c->xb, .dim = E};
        const struct model_tensor *gu[2] = {&l->ffn_gate_shexp, &l->ffn_up_shexp};
        run_norm(c, &sj, gu, 2, slots);
        matmul_job_init(&mj, c, n, 2);
        mj.mm[0] = (struct matmul){.w = gu[0], .acts = sj.acts[slots[0]], .y = c->hb,
                                   .y_stride = c->n_ff};
        mj.mm[1] = (struct matmul){.w = gu[1], .acts = sj.acts[slots[1]], .y = c->hb2,
                                   .y_stride = c->n_ff};
        mj.glu = true;
        threadpool_run(c->pool, matmul_worker, &mj);
        struct norm_job pj = {.c = c, .n = n, .x = c->hb, .dim = c->n_ff};
        const struct model_tensor *wd[1] = {&l->ffn_down_shexp};
        run_norm(c, &pj, wd, 1, slots);
        matmul_job_init(&mj, c, n, 1);
        mj.mm[0] = (struct matmul){.w = wd[0], .acts = pj.acts[0], .y = c->sh_out, .y_stride = E};
        threadpool_run(c->pool, matmul_worker, &mj);
        for (int t = 0; t < n; t++) {
            float z = dot_f32(cl->gate_inp_shexp, c->xb + (int64_t)t * E, E);
            c->sh_gate[t] = 1.0f / (1.0f + expf(-z));
        }
    }
    struct moe_sum_job sj = {.c = c, .n = n, .shared = shared};
    run_step(c, moe_sum_worker, &sj, n);
}

/* Runs one chunk of N <= max_batch tokens at POS. LOGITS receives the last
 * token's logits when WANT == 1, every token's when WANT == N, none when 0. */
static void forward_chunk(struct cpu *c, const int32_t *tokens, int n, int32_t pos,
                          float *logits, int want)
{
    const struct model *m = c->m;
    const struct model_hparams *hp = &m->hp;
    int E = c->n_embd, half = c->n_rot / 2;

    size_t row_bytes = quant_row_size(m->tok_embd.type, E);
    for (int t = 0; t < n; t++) {
        float *x = c->x + (int64_t)t * E;
        quant_dequantize_row(m->tok_embd.type,
                             (const unsigned char *)m->tok_embd.data + (size_t)tokens[t] * row_bytes,
                             x, E);
        if (hp->embd_scale != 1.0f)
            for (int i = 0; i < E; i++)
                x[i] *= hp->embd_scale;
    }
    for (int t = 0; t < n; t++) {
        double p = (double)(pos + t);
        for (int i = 0; i < half; i++) {
            double th = p * c->inv_freq[i], tl = p * c->inv_freq_local[i];
            c->rope_cos[t * half + i] = (float)cos(th) * c->rope_mscale;
            c->rope_sin[t * half + i] = (float)sin(th) * c->rope_mscale;
            c->rope_cos_local[t * half + i] = (float)cos(tl) * c->rope_mscale_local;
            c->rope_sin_local[t * half + i] = (float)sin(tl) * c->rope_mscale_local;
        }
    }

    int slot_of[N_SLOTS];
    for (int il = 0; il < hp->n_layer; il++) {
        const struct model_layer *l = &m->layers[il];
        const struct cpu_layer *cl = &c->layers[il];

        /* x += post_ffw_norm(previous FFN output); xb = attn_norm(x). */
        struct norm_job nj = {.c = c, .n = n, .x = c->x, .dim = E, .out = c->xb,
                              .norm = cl->attn_norm, .add_buf = c->tmp};
        if (il > 0) {
            nj.add = c->tmp;
            nj.add_norm = c->layers[il - 1].post_ffw_norm;
        }
        const struct model_tensor *qkv[3] = {&l->wq, &l->wk, &l->wv};
        run_norm(c, &nj, qkv, 3, slot_of);
        struct matmul_job mj = {0};
        matmul_job_init(&mj, c, n, 3);
        float *dst[3] = {c->q, c->k, c->v};
        const float *bias[3] = {cl->bq, cl->bk, cl->bv};
        for (int i = 0; i < 3; i++)
            mj.mm[i] = (struct matmul){.w = qkv[i], .acts = nj.acts[slot_of[i]], .y = dst[i],
                                       .y_stride = qkv[i]->ne1, .bias = bias[i]};
        threadpool_run(c->pool, matmul_worker, &mj);

        struct rope_job rj = {.c = c, .ly = cl, .il = il, .n = n, .pos = pos,
                              .cs = l->swa ? c->rope_cos_local : c->rope_cos,
                              .sn = l->swa ? c->rope_sin_local : c->rope_sin};
        run_step(c, rope_worker, &rj, n);
        run_attn(c, il, n, pos, l->swa);

        /* tmp = Wo att */
        struct norm_job pj = {.c = c, .n = n, .x = c->att, .dim = c->q_dim};
        const struct model_tensor *wo[1] = {&l->wo};
        run_norm(c, &pj, wo, 1, slot_of);
        matmul_job_init(&mj, c, n, 1);
        mj.mm[0] = (struct matmul){.w = &l->wo, .acts = pj.acts[0], .y = c->tmp, .y_stride = E,
                                   .bias = cl->bo};
        threadpool_run(c->pool, matmul_worker, &mj);

        /* x += post_attn_norm(tmp); xb = ffn_norm(x); hb, hb2 = gate, up. */
        nj = (struct norm_job){.c = c, .n = n, .x = c->x, .dim = E, .out = c->xb,
                               .norm = cl->ffn_norm, .add = c->tmp,
                               .add_norm = cl->post_attn_norm, .add_buf = c->tmp};
        if (c->n_expert > 0) {
            const struct model_tensor *rx[3] = {&l->ffn_gate_inp, &l->ffn_gate_exps,
                                                &l->ffn_up_exps};
            run_norm(c, &nj, rx, 3, slot_of);
            moe_ffn(c, l, cl, n, &nj, slot_of);
            continue;
        }
        const struct model_tensor *gu[2] = {&l->ffn_gate, &l->ffn_up};
        run_norm(c, &nj, gu, 2, slot_of);
        matmul_job_init(&mj, c, n, 2);
        mj.mm[0] = (struct matmul){.w = &l->ffn_gate, .acts = nj.acts[slot_of[0]], .y = c->hb,
                                   .y_stride = c->n_ff};
        mj.mm[1] = (struct matmul){.w = &l->ffn_up, .acts = nj.acts[slot_of[1]], .y = c->hb2,
                                   .y_stride = c->n_ff};
        mj.glu = true; /* hb = act(gate) * up */
        mj.gelu = hp->gelu_ffn;
        threadpool_run(c->pool, matmul_worker, &mj);

        /* tmp = Wdown hb */
        pj = (struct norm_job){.c = c, .n = n, .x = c->hb, .dim = c->n_ff};
        const struct model_tensor *wd[1] = {&l->ffn_down};
        run_norm(c, &pj, wd, 1, slot_of);
        matmul_job_init(&mj, c, n, 1);
        mj.mm[0] = (struct matmul){.w = &l->ffn_down, .acts = pj.acts[0], .y = c->tmp,
                                   .y_stride = E};
        threadpool_run(c->pool, matmul_worker, &mj);
    }
    if (want == 0) {
        /* The residual of the last layer still matters to nobody: the cache
         * holds everything later chunks need. */
        return;
    }
    /* Only the tokens whose logits are wanted go through the head. */
    int first = n - want;
    const struct cpu_layer *last = &c->layers[hp->n_layer - 1];
    struct norm_job nj = {.c = c, .n = want, .x = c->x + (int64_t)first * E, .dim = E,
                          .out = c->xb, .norm = c->output_norm,
                          .add = c->tmp + (int64_t)first * E, .add_norm = last->post_ffw_norm,
                          .add_buf = c->tmp + (int64_t)first * E};
    const struct model_tensor *out[1] = {&m->output};
    run_norm(c, &nj, out, 1, slot_of);
    struct matmul_job mj = {0};
    matmul_job_init(&mj, c, want, 1);
    mj.mm[0] = (struct matmul){.w = &m->output, .acts = nj.acts[0], .y = logits,
                               .y_stride = c->n_vocab};
    threadpool_run(c->pool, matmul_worker, &mj);
}

static int cpu_forward(void *b, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                       bool all, char *err, size_t errlen)
{
    struct cpu *c = b;
    if (n < 1 || pos < 0 || pos > c->n_ctx - n) {
        kv_seterr(err, errlen, "cpu: %d tokens at position %d do not fit the context of %d", n,
                pos, c->n_ctx);
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->n_vocab) {
            kv_seterr(err, errlen, "cpu: token id %d at index %d is outside the vocabulary (%d)",
                    tokens[i], i, c->n_vocab);
            return -1;
        }
    }
    for (int32_t c0 = 0; c0 < n; c0 += c->max_batch) {
        int cn = n - c0 < c->max_batch ? n - c0 : c->max_batch;
        bool last_chunk = c0 + cn == n;
        int want = all ? cn : last_chunk ? 1 : 0;
        float *lg = all ? logits + (size_t)c0 * c->n_vocab : logits;
        forward_chunk(c, tokens + c0, cn, pos + c0, lg, want);
    }
    return 0;
}

/* ---- information ---- */

static bool meminfo(uint64_t *total, uint64_t *avail)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return false;
    char line[256];
    int got = 0;
    unsigned long long v;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %llu kB", &v) == 1) {
            *total = (uint64_t)v * 1024;
            got |= 1;
        } else if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
            *avail = (uint64_t)v * 1024;
            got |= 2;
        }
    }
    fclose(f);
    return got == 3;
}

static void cpu_memory(void *b, struct engine_memory *out)
{
    struct cpu *c = b;
    /* The weights are the file mapping: what can be resident is the file. */
    out->weights = c->m->file ? gguf_file_size(c->m->file) : c->m->weight_bytes;
    out->kv_cache = c->kv_bytes;
    out->scratch = c->scratch_bytes;
    out->on_gpu = false;
    uint64_t total, avail;
    if (meminfo(&total, &avail)) {
        out->device_total = total;
        out->device_free = avail;
        return;
    }
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        out->device_total = (uint64_t)si.totalram * si.mem_unit;
        out->device_free = (uint64_t)(si.freeram + si.bufferram) * si.mem_unit;
    } else {
        out->device_total = ENGINE_UNKNOWN;
        out->device_free = ENGINE_UNKNOWN;
    }
}

static const char *cpu_device_name(void *b)
{
    struct cpu *c = b;
    return c->device;
}

/* The host is always there: its name and its memory as cpu_memory reads it. */
static void cpu_probe(struct backend_device *out)
{
    memset(out, 0, sizeof *out);
    out->usable = true;
    read_cpu_name(out->name, sizeof out->name);
    uint64_t total, avail;
    if (meminfo(&total, &avail)) {
        out->total = total;
        out->free = avail;
    }
}

/* What cpu_create allocates, from the same sizes: the weights are the file
 * mapping (as cpu_memory reports them), the KV cache exactly (f32, f16 or q8_0), and the
 * per-batch activation buffers; the per-thread attention scores and the
 * quantised-activation slots (well under a MiB each) are left out. */
static int cpu_estimate(const struct model *m, const struct backend_config *cfg,
                        struct backend_estimate *out, char *err, size_t errlen)
{
    const struct model_hparams *hp = &m->hp;
    memset(out, 0, sizeof *out);
    if (cfg->n_ctx < 1) {
        kv_seterr(err, errlen, "cpu: context size %d must be positive", cfg->n_ctx);
        return -1;
    }
    int kt;
    if (kv_type_check(hp, cfg, &kt, err, errlen) != 0)
        return -1;
    uint64_t kv_dim = (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim;
    uint64_t q_dim = (uint64_t)hp->n_head * (uint64_t)hp->head_dim;
    uint64_t b = (uint64_t)(cfg->n_ctx < MAX_BATCH ? cfg->n_ctx : MAX_BATCH);
    out->weights = m->file ? gguf_file_size(m->file) : m->weight_bytes;
    out->kv_cache = 2 * kv_bytes_of(kt, (uint64_t)hp->n_layer * (uint64_t)cfg->n_ctx * kv_dim);
    uint64_t ff = hp->n_expert > 0 ? (uint64_t)hp->n_ff_shexp : (uint64_t)hp->n_ff;
    out->scratch = b * (3 * (uint64_t)hp->n_embd + 2 * q_dim + 2 * kv_dim + 2 * ff +
                        2 * (uint64_t)hp->n_rot) *
                   sizeof(float);
    if (hp->n_expert > 0) /* router logits, per-(token, k) expert rows, shared output */
        out->scratch += b * ((uint64_t)hp->n_expert + (uint64_t)hp->n_expert_used *
                             (2 * (uint64_t)hp->n_ff_exp + (uint64_t)hp->n_embd) +
                             (uint64_t)hp->n_embd) * sizeof(float);
    out->total = out->weights + out->kv_cache + out->scratch;
    return 0;
}

const struct backend_ops backend_cpu_ops = {
    .name = "cpu",
    .probe = cpu_probe,
    .estimate = cpu_estimate,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .forward = cpu_forward,
    .memory = cpu_memory,
    .device_name = cpu_device_name,
    .host_weights = true,
};
