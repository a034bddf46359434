/* cuda_common.h - internal to kernels/: the error-checking macros, the
 * weight formats the kernels decode, and the launchers of every kernel (one
 * op per file, named in the section headings below).
 *
 * Rules for this module: kernels/ builds the module kvchat-cuda.so, whose only
 * exported symbol is the entry point (BACKEND_ENTRY, backend_cuda.cu);
 * everything else has hidden visibility, and only the backend table and the
 * entry point are extern "C". Every kernel is static to its file and reached
 * through a launcher here. A launcher takes a cudaStream_t, never
 * synchronises, and returns the launch status (cudaGetLastError), so callers
 * check it through CUDA_CHECK like any other runtime call. Nothing here
 * aborts or exits.
 */
#ifndef KVCHAT_CUDA_COMMON_H
#define KVCHAT_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* Records "CALL failed at FILE:LINE: reason" into ERR (CAP bytes) and returns
 * -1 when E is an error; returns 0 otherwise. ERR keeps the first error: later
 * failures (usually consequences) do not overwrite it. */
int kv_cuda_check(cudaError_t e, const char *call, const char *file, int line, char *err,
                  size_t cap);
int kv_cublas_check(cublasStatus_t s, const char *call, const char *file, int line, char *err,
                    size_t cap);
#define CUDA_CHECK(call, err, cap) kv_cuda_check((call), #call, __FILE__, __LINE__, (err), (cap))
#define CUBLAS_CHECK(call, err, cap)                                                        \
    kv_cublas_check((call), #call, __FILE__, __LINE__, (err), (cap))

/* A kernel launch, KV_LAUNCH(kernel, grid, block, shmem, stream)(args...),
 * and a static shared array, KV_SHARED(type, name, [d0][d1]...): the
 * chevrons and __shared__ under nvcc. The device emulator the tests compile
 * these sources with (tests/emu/) defines both first, to run the kernel on
 * its fibers and to give every shared byte a "written" bit; these are the
 * only two places the kernels' code differs between the two builds.
 * KV_DYN_SHARED(type, name) is the launch's dynamic shared memory. */
#ifndef KV_LAUNCH
#define KV_LAUNCH(kernel, grid, block, shmem, stream)                                       \
    kernel<<<(grid), (block), (shmem), (stream)>>>
#define KV_SHARED(type, name, dims) __shared__ type name dims
#define KV_DYN_SHARED(type, name) extern __shared__ type name[]

#endif

/* How a weight matrix is decoded: one row per format, in the order
 * kv_wfmt_of (wformat.cuh) prefers them. The quantised formats are ggml's
 * blocks, repacked at upload (wformat.cuh); F32/F16/BF16 have a vector form (8 elements
 * per 16- or 32-byte load, rows of a multiple of 8) and a scalar form (_S)
 * for rows of other lengths. A format is this one line plus its kv_fmt<>
 * row in wformat.cuh. */
#define KV_WF_LIST(X)                                                                       \
    X(F32) X(F32_S) X(F16) X(F16_S) X(BF16) X(BF16_S) X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1)      \
    X(Q8_0) X(Q4_K) X(Q5_K) X(Q6_K) X(Q2_K) X(Q3_K) X(IQ4_NL) X(IQ4_XS) X(MXFP4)
enum kv_wfmt {
#define KV_WF_ENUM(n) KV_WF_##n,
    KV_WF_LIST(KV_WF_ENUM)
#undef KV_WF_ENUM
    KV_WF_NONE
};

/* Blocks for a grid-stride kernel over N items with THREADS a block:
 * enough to fill any current GPU several times over, capped because the
 * loops stride over the rest. */
static inline unsigned kv_grid(int64_t n, int threads)
{
    int64_t g = (n + threads - 1) / threads;
    if (g > 65536)
        g = 65536;
    return (unsigned)(g < 1 ? 1 : g);
}

/* A weight matrix in device memory: NROWS rows of NCOLS elements, each row
 * ROW_BYTES bytes (kv_row_bytes), in the device layout of its format
 * (wformat.cuh: quantised blocks repacked into planes at upload). */
struct kv_dmat {
    enum kv_wfmt fmt;
    int ggml_type;      /* the file's type id, for messages */
    int64_t ncols;      /* ne0: input features */
    int64_t nrows;      /* ne1: output features */
    size_t row_bytes;
    const uint8_t *d;   /* device, borrowed from the backend's weight arena */
};

struct backend_device;
/* The runtime's view of device 0 (device.cu): name, total and free memory,
 * or why it cannot be used (no device, a driver too old for this runtime). */
void kv_device_probe(struct backend_device *out);
struct engine_roofs_params;
struct engine_roofs;
/* The device's copy bandwidth and bf16 GEMM rate (engine_measure_roofs, in
 * backend/engine_tools.h, says what and how), queued on ST with BLAS and
 * synchronised: the one caller waits for its figures. Returns 0 or -1 with
 * ERR; allocates and frees its own buffers. */
int kv_device_roofs(cudaStream_t st, cublasHandle_t blas, const struct engine_roofs_params *p,
                    struct engine_roofs *out, char *err, size_t cap);

/* ---- matvec.cu, dequant.cu, get_rows.cu ---- */

/* Y[r] = dot(W row r, X) + (BIAS ? BIAS[r] : 0) + (ADD ? ADD[r] : 0) for every
 * row. X has W.ncols floats, 16-byte aligned. Y may equal ADD (each element
 * is read, then written, by one thread); Y must not overlap X. */
cudaError_t kv_matvec(const struct kv_dmat *w, const float *x, const float *bias,
                      const float *add, float *y, cudaStream_t st);
/* kv_matvec of X normed first when NORM is set: X / sqrt(mean(X^2) + EPS) *
 * NORM (W.ncols floats), kv_rmsnorm's row, computed in the matvec's
 * prologue (no launch, no buffer); X is then read-only. NORM NULL: kv_matvec. */
cudaError_t kv_matvec_norm(const struct kv_dmat *w, const float *x, const float *norm, float eps,
                           const float *bias, const float *add, float *y, cudaStream_t st);
/* Whether kv_matvec3 takes A, B and C: one format with a staged form (as
 * kv_matvec_glu_fuses) and one width. */
bool kv_matvec3_fuses(const struct kv_dmat *a, const struct kv_dmat *b, const struct kv_dmat *c);
/* kv_matvec_norm of one X (normed by NORM when set) by three matrices in one
 * launch: Y[i] = W[i] xn + BIAS[i] (each may be NULL), no residual; the
 * results of the three calls, bit for bit. cudaErrorInvalidValue unless
 * kv_matvec3_fuses. The decode step's Q, K and V. */
cudaError_t kv_matvec3(const struct kv_dmat *const w[3], const float *x, const float *norm,
                       float eps, const float *const bias[3], float *const y[3], cudaStream_t st);
/* Whether kv_matvec_glu takes GATE and UP: one format with a GLU form (not
 * the scalar float forms) and one shape. */
bool kv_matvec_glu_fuses(const struct kv_dmat *gate, const struct kv_dmat *up);
/* Y[r] = act(dot(GATE row r, xn)) * dot(UP row r, xn), xn = X normed by
 * NORM as in kv_matvec_norm (X itself when NORM is NULL), act SiLU or GELU
 * (tanh form): what the two kv_matvec_norm calls and kv_glu would leave in
 * G, bit for bit. cudaErrorInvalidValue unless kv_matvec_glu_fuses. */
cudaError_t kv_matvec_glu(const struct kv_dmat *gate, const struct kv_dmat *up, const float *x,
                          const float *norm, float eps, bool gelu, float *y, cudaStream_t st);
/* Rows ROW0..ROW0+NROWS-1 of W as bf16 (round to nearest even) into OUT
 * (NROWS x W.ncols): the prefill GEMM's weight operand. */
cudaError_t kv_dequant_bf16(const struct kv_dmat *w, int64_t row0, int64_t nrows,
                            __nv_bfloat16 *out, cudaStream_t st);
/* OUT[t] = SCALE * row IDS[t] of W, as f32 (N x W.ncols). IDS are device
 * int32 and already checked against W.nrows. */
cudaError_t kv_get_rows(const struct kv_dmat *w, const int32_t *ids, int32_t n, float scale,
                        float *out, cudaStream_t st);

/* ---- rmsnorm.cu, add.cu, rope.cu, glu.cu, kv_store.cu, convert.cu ---- */

/* Y[r] = X[r] / sqrt(mean(X[r]^2) + EPS) * W (+ ADD[r]) for NROWS rows of N.
 * Y may equal X or ADD. */
cudaError_t kv_rmsnorm(const float *x, const float *w, const float *add, float *y, int64_t nrows,
                       int32_t n, float eps, cudaStream_t st);
/* Y[r][c] += B[c] for NROWS rows of N. */
cudaError_t kv_add_bias(float *y, const float *b, int64_t nrows, int32_t n, cudaStream_t st);
/* Y[i] += A[i]. */
cudaError_t kv_add(float *y, const float *a, int64_t n, cudaStream_t st);
/* Rotates the first N_ROT dims of every head of X (N_TOK x N_HEAD x HD) for
 * positions POS0..: pair i turns by pos * INV_FREQ[i] (base^(-2i/n_rot),
 * rope factors and scaling folded in by the caller; model-formats.md 3.1). */
cudaError_t kv_rope(float *x, int32_t n_tok, int32_t n_head, int32_t hd, int32_t n_rot,
                    int32_t pos0, const float *inv_freq, float mscale, bool neox, cudaStream_t st);
/* The sum of V over the 32 lanes of a full warp, the same value in every
 * lane: a butterfly of xor shuffles, 16 lanes apart down to 1, so every
 * kernel that reduces a warp adds in one order. */
static __device__ __forceinline__ float kv_warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
/* The gated activation, cpu.c's: GELU (tanh form) when GELU, else SiLU.
 * One definition for kv_glu and the fused gate/up matvec, so the two agree
 * bit for bit. */
static __device__ __forceinline__ float kv_glu_act(float x, bool gelu)
{
    if (gelu) {
        const float k = 0.7978845608028654f; /* sqrt(2/pi) */
        return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
    }
    return x / (1.0f + expf(-x));
}
/* G[i] = act(G[i]) * U[i]: SiLU, or GELU (tanh form) when GELU. */
cudaError_t kv_glu(float *g, const float *u, int64_t n, bool gelu, cudaStream_t st);
/* gpt-oss's clamped SwiGLU, cpu.c's glu_clamped: with g = min(G, LIMIT) and
 * u = clamp(U, -LIMIT, LIMIT), G[i] = g sigmoid(ALPHA g) (u + 1). */
static __device__ __forceinline__ float kv_glu_clamped(float g, float u, float alpha, float limit)
{
    g = g < limit ? g : limit;
    u = u < -limit ? -limit : u > limit ? limit : u;
    return g / (1.0f + expf(-alpha * g)) * (u + 1.0f);
}
cudaError_t kv_glu_clamp(float *g, const float *u, int64_t n, float alpha, float limit,
                         cudaStream_t st);
/* Writes K and V (N_TOK x N_KV x HD, f32) into the layer's caches (N_KV x
 * N_CTX x HD, f16) at positions POS0.. */
cudaError_t kv_store_kv(const float *k, const float *v, __half *kc, __half *vc, int32_t n_tok,
                        int32_t n_kv, int32_t hd, int32_t pos0, int32_t n_ctx, cudaStream_t st);
/* kv_rope of Q and K, then kv_store_kv of K and V, in one launch, at the
 * position *POS_DEV (device memory): K is rotated on its way into the cache
 * and left as it was in K. Same results as the three calls. */
cudaError_t kv_rope_store(float *q, const float *k, const float *v, __half *kc, __half *vc,
                          int32_t n_tok, int32_t n_head, int32_t n_kv, int32_t hd, int32_t n_rot,
                          const int32_t *pos_dev, int32_t n_ctx, const float *inv_freq,
                          float mscale, bool neox, cudaStream_t st);
/* One layer's K or V cache in q8_0 (ggml's Q8_0 values, the two parts
 * apart so that codes load 8 or 16 bytes at a time, aligned): Q (N_KV x
 * N_CTX x HD) int8 codes, D (N_KV x N_CTX x HD/32) f16 scales; element x =
 * D[block] * Q, d = max|x| / 127 of its 32 dims. HD % 32 == 0. Device
 * pointers, borrowed. */
struct kv_q8_cache {
    int8_t *q;
    __half *d;
};
/* kv_store_kv into a q8_0 cache: each 32 dims of a row quantised as
 * quant.h's Q8_0 quantiser does (the CPU backend's cache). */
cudaError_t kv_store_kv_q8(const float *k, const float *v, struct kv_q8_cache kc,
                           struct kv_q8_cache vc, int32_t n_tok, int32_t n_kv, int32_t hd,
                           int32_t pos0, int32_t n_ctx, cudaStream_t st);
/* kv_rope_store into a q8_0 cache. */
cudaError_t kv_rope_store_q8(float *q, const float *k, const float *v, struct kv_q8_cache kc,
                             struct kv_q8_cache vc, int32_t n_tok, int32_t n_head, int32_t n_kv,
                             int32_t hd, int32_t n_rot, const int32_t *pos_dev, int32_t n_ctx,
                             const float *inv_freq, float mscale, bool neox, cudaStream_t st);
/* Y[i] = bf16(X[i]), round to nearest even: the prefill GEMM's activation
 * operand (bf16 has f32's range, so no activation overflows it). */
cudaError_t kv_f32_to_bf16(const float *x, __nv_bfloat16 *y, int64_t n, cudaStream_t st);

/* ---- attention_decode.cu ---- */

struct kv_attn_args {
    const float *q;     /* N_TOK x N_HEAD x HD, not yet scaled */
    const __half *kc;   /* N_KV x N_CTX x HD */
    const __half *vc;
    float *out;         /* N_TOK x N_HEAD x HD */
    float *part;        /* scratch: n_split x N_TOK x N_HEAD x (HD + 2) floats */
    int32_t n_tok, n_head, n_kv, hd, n_ctx;
    int32_t pos0;       /* position of the first query; keys 0..pos0+n_tok-1 */
    int32_t swa;        /* window in tokens, 0 = none */
    float scale;        /* multiplies q.k */
    int32_t n_split;    /* key-range splits (>= 1); part must hold them */
    struct kv_q8_cache kq, vq; /* q8_0 cache when kq.q is set: read in place of kc, vc */
    const float *sinks; /* N_HEAD logits joining each softmax's denominator, or NULL */
};
/* Largest head size the attention kernels take. */
#define KV_ATTN_MAX_HD 256

/* Most tokens the decode attention takes; more go to kv_attention_prefill. */
#define KV_ATTN_DEC_MAX_TOK 8
/* Split sizing (kv_attn_decode_splits): blocks aimed for per SM (3: the
 * 8-row kernels take 168 registers a thread, so 3 blocks of 128 threads
 * reside per SM and the grid is one wave), fewest keys a split is worth,
 * most splits. */
#define KV_ATTN_DEC_BLOCKS_PER_SM 3
#define KV_ATTN_DEC_MIN_KEYS 128
#define KV_ATTN_DEC_MAX_SPLIT 64
/* Key splits for decode attention over A (its n_tok, n_head, n_kv, n_ctx and
 * swa are read, not pos0 or n_split) on N_SM multiprocessors, at most ROOM
 * (the split rows the scratch holds / n_tok). Depends on the context size
 * and the window only, so a graph captured at one position replays at any
 * other. */
int32_t kv_attn_decode_splits(int n_sm, const struct kv_attn_args *a, int32_t room);
/* Flash-decoding attention for 1..KV_ATTN_DEC_MAX_TOK tokens: causal (and
 * sliding-window) attention with GQA over the f16 cache. POS_DEV, when not NULL, is a device int32 holding the
 * first query's position, read at run time in place of A->pos0 (graph
 * replay); A->n_split splits (part must hold n_split x n_tok rows), any
 * value >= 1 is correct. Two launches when n_split > 1 (the splits, then
 * their merge), both on ST. */
cudaError_t kv_attention_decode(const struct kv_attn_args *a, const int32_t *pos_dev,
                                cudaStream_t st);

/* ---- attention_prefill.cu ---- */

/* Prefill attention (n_tok > 1) through two bf16 cuBLAS GEMMs per key tile
 * with an online softmax between them. The scratch is the caller's, sized
 * for Q_CHUNK tokens and TILE keys; group = n_head / n_kv, rows = tokens x
 * group per KV head. */
struct kv_attn_prefill_args {
    const float *q;   /* N_TOK x N_HEAD x HD, not yet scaled */
    const __half *kc; /* N_KV x N_CTX x HD: positions 0..pos0+n_tok-1 written */
    const __half *vc;
    float *out;       /* N_TOK x N_HEAD x HD */
    int32_t n_tok, n_head, n_kv, hd, n_ctx;
    int32_t pos0;     /* position of the first query */
    int32_t swa;      /* window in tokens, 0 = none */
    float scale;      /* multiplies q.k */
    int32_t q_chunk;  /* queries per pass (>= 1) */
    int32_t tile;     /* keys per tile (>= 1) */
    __nv_bfloat16 *qb;     /* N_KV x q_chunk*group x HD */
    __nv_bfloat16 *kb, *vb; /* N_KV x TILE x HD each */
    float *s;              /* N_KV x q_chunk*group x TILE: scores */
    __nv_bfloat16 *p;      /* the same shape: exp(s - m) */
    float *acc;            /* N_KV x q_chunk*group x HD */
    float2 *ml;            /* N_KV x q_chunk*group: running (max, sum) */
    struct kv_q8_cache kq, vq; /* q8_0 cache when kq.q is set: read in place of kc, vc */
    const float *sinks;    /* N_HEAD logits joining each softmax's denominator, or NULL */
};
/* Causal (and sliding-window) attention of A's queries over the cache,
 * queued on ST with BLAS (which must be bound to ST). 0, or -1 with ERR. */
int kv_attention_prefill(const struct kv_attn_prefill_args *a, cublasHandle_t blas,
                         cudaStream_t st, char *err, size_t cap);

/* Its steps, each a kernel (exposed for test_kernels). */
/* QB[kvh][(t - T0) * group + g][d] = bf16(Q[t][kvh*group + g][d]), t in T0..T0+CQ-1. */
cudaError_t kv_attn_q_bf16(const float *q, __nv_bfloat16 *qb, int32_t n_head, int32_t n_kv,
                           int32_t hd, int32_t t0, int32_t cq, cudaStream_t st);
/* KB[kvh][j][d] = bf16(KC[kvh][K0 + j][d]) for j < NK (row stride TILE), V alike. */
cudaError_t kv_attn_kv_bf16(const __half *kc, const __half *vc, __nv_bfloat16 *kb,
                            __nv_bfloat16 *vb, int32_t n_kv, int32_t n_ctx, int32_t hd, int32_t k0,
                            int32_t nk, int32_t tile, cudaStream_t st);
/* kv_attn_kv_bf16 from a q8_0 cache: bf16(d * q), d * q exact in f32. */
cudaError_t kv_attn_kv_q8_bf16(struct kv_q8_cache kc, struct kv_q8_cache vc, __nv_bfloat16 *kb,
                               __nv_bfloat16 *vb, int32_t n_kv, int32_t n_ctx, int32_t hd,
                               int32_t k0, int32_t nk, int32_t tile, cudaStream_t st);
/* ML[i] = (-inf, 0) for ROWS rows, ACC (ROWS x HD) = 0. */
cudaError_t kv_attn_rows_init(float2 *ml, float *acc, int64_t rows, int32_t hd, cudaStream_t st);
struct kv_attn_tile_args {
    const float *s;     /* n_kv x ROWS x TILE scores of keys K0..K0+NK-1 */
    __nv_bfloat16 *p;   /* out, same shape: exp(s - m_new), 0 where masked */
    float2 *ml;         /* n_kv x ROWS running (max, sum), updated */
    float *acc;         /* n_kv x ROWS x HD, rescaled by exp(m_old - m_new) */
    int64_t rows;       /* rows per KV head */
    int64_t r_lo, r_hi; /* the rows this tile updates */
    int32_t n_kv, group, hd, tile, nk, k0;
    int32_t qpos0;      /* position of row 0's query; row r is at qpos0 + r / group */
    int32_t swa;
};
/* The masked online-softmax step of one key tile. */
cudaError_t kv_attn_softmax_tile(const struct kv_attn_tile_args *a, cudaStream_t st);
/* OUT[T0 + t][kvh*group + g] = ACC[kvh][t*group + g] / l, for CQ tokens;
 * with SINKS (N_HEAD logits) head h's sink joins l (kv_attn_sink_inv). */
cudaError_t kv_attn_finish(const float *acc, const float2 *ml, const float *sinks, float *out,
                           int32_t n_head, int32_t n_kv, int32_t hd, int32_t t0, int32_t cq,
                           cudaStream_t st);
/* The factor that turns an output accumulated against running max M with
 * softmax sum L into the attention result: 1 / L, or with a sink logit S
 * (SINK true) one more key with no value in the denominator, cpu.c's
 * attn_finish: exp(M - m') / (L exp(M - m') + exp(S - m')), m' = max(M, S),
 * so a sink far above every score drives the output to 0 without overflow.
 * 0 when nothing was summed. */
static __device__ __forceinline__ float kv_attn_sink_inv(float m, float l, bool sink, float s)
{
    if (!sink)
        return l > 0.0f ? 1.0f / l : 0.0f;
    if (!(l > 0.0f))
        return 0.0f;
    const float mx = s > m ? s : m;
    const float a = expf(m - mx);
    return a / (l * a + expf(s - mx));
}

/* ---- sample.cu ---- */

/* Most candidates the device sampler keeps (top_k), most penalised ids it
 * takes, and the vocabulary slice of one first-pass block. */
#define KV_SAMPLE_MAX_K 128
#define KV_SAMPLE_MAX_PEN 256
#define KV_SAMPLE_CHUNK 4096
/* One step's sampling settings, in device memory (the host writes them
 * before each step, so a captured graph reads the new ones). */
struct kv_sample_in {
    float temperature;  /* <= 0: greedy (top_k is then 1) */
    float top_p, min_p; /* as sanitised by sampler.c */
    float penalty;      /* repetition penalty (1 = none) */
    int32_t top_k;      /* 1..KV_SAMPLE_MAX_K, below n_vocab */
    int32_t n_pen;      /* ids in PEN */
    double u;           /* the host RNG's uniform draw in [0, 1) */
    int32_t pen[KV_SAMPLE_MAX_PEN]; /* distinct ids to penalise */
};
/* Blocks of the first pass, and the scratch kv_sample needs, for N_VOCAB. */
int32_t kv_sample_blocks(int32_t n_vocab);
size_t kv_sample_scratch_bytes(int32_t n_vocab);
/* OUT[0] = the token sampler.c's top-k rule picks from LOGITS (penalised
 * on the device; LOGITS is not modified) with IN's settings and draw;
 * OUT[1] = 1 when any logit was NaN or infinite. Two launches. */
cudaError_t kv_sample(const float *logits, int32_t n_vocab, const struct kv_sample_in *in,
                      void *scratch, int32_t *out, cudaStream_t st);

/* ---- moe.cu, and the expert-indexed matvecs of matvec.cu ---- */

/* Most experts the router kernel takes (a lane's 32-bit taken mask, 32
 * lanes), and most of them a token uses. */
#define KV_MOE_MAX_EXPERT 1024
/* The router's gating, model.h's enum model_gating value for value
 * (backend_cuda.cu asserts that; this header does not include model.h). */
enum kv_moe_gating {
    KV_MOE_SOFTMAX = 0,      /* softmax over all experts */
    KV_MOE_SOFTMAX_TOPK = 1, /* softmax over the K chosen logits (gpt-oss) */
    KV_MOE_SIGMOID = 2,      /* sigmoid of each chosen logit */
};
/* For each of N_TOK tokens of router LOGITS (N_TOK x N_EXPERT),
 * model_moe_select's rule: IDS (N_TOK x K, device int32) the K largest logits in order,
 * ties to the lower index (whatever the gating: it is monotone); W (N_TOK x
 * K) their GATING weights, divided by their sum (at least 2^-14) when NORM,
 * then times SCALE (> 0). cudaErrorInvalidValue unless 1 <= K <= N_EXPERT
 * <= KV_MOE_MAX_EXPERT and GATING is one of the above. */
cudaError_t kv_moe_route(const float *logits, int32_t n_tok, int32_t n_expert, int32_t k,
                         enum kv_moe_gating gating, bool norm, float scale, int32_t *ids,
                         float *w, cudaStream_t st);
/* OUT[t] = (ADD ? ADD[t] : 0) + sum_j W[t K + j] Y[t K + j]
 * (+ sigmoid(SH_Z[t]) SH[t] when SH is set), rows of N_EMBD: the routed
 * experts' outputs Y (N_TOK K x N_EMBD) weighted, the shared expert gated.
 * OUT may equal ADD. */
cudaError_t kv_moe_sum(const float *y, const float *w, int32_t n_tok, int32_t k, int32_t n_embd,
                       const float *sh, const float *sh_z, const float *add, float *out,
                       cudaStream_t st);
/* A batch of N matvecs over the experts of a stacked tensor W (N_EXPERT
 * matrices of W.nrows / N_EXPERT rows each, expert e's from row e * rows):
 * pair p (0..N-1) multiplies expert IDS[p] (device int32, read at run time,
 * so a captured graph follows the router; an id out of range reads expert
 * 0; IDS NULL: expert 0 for every pair, a plain batched matvec) with row
 * p / X_DIV of X (rows of W.ncols floats; X_DIV = K: the token of a
 * (token, slot) pair) normed by NORM when set (kv_matvec_norm's prologue),
 * into row p of Y (rows of W.nrows / N_EXPERT), plus, with BIAS (N_EXPERT
 * rows of W.nrows / N_EXPERT: gpt-oss's expert and router biases), the
 * pair's expert's row. Each pair is kv_matvec_norm's kernel on its expert's
 * matrix (with that bias row), bit for bit. */
cudaError_t kv_matvec_x(const struct kv_dmat *w, int32_t n_expert, const int32_t *ids, int32_t n,
                        int32_t x_div, const float *x, const float *norm, float eps,
                        const float *bias, float *y, cudaStream_t st);
/* kv_matvec_x of GATE and UP (same experts, format and shape:
 * kv_matvec_glu_fuses) with kv_matvec_glu's store, act(gate) * up, into Y.
 * cudaErrorInvalidValue unless kv_matvec_glu_fuses. */
cudaError_t kv_matvec_x_glu(const struct kv_dmat *gate, const struct kv_dmat *up,
                            int32_t n_expert, const int32_t *ids, int32_t n, int32_t x_div,
                            const float *x, const float *norm, float eps, bool gelu, float *y,
                            cudaStream_t st);

#endif
