/* sample.cu - the next token from a row of logits on the device, by the
 * rule of backend/engine/sampler.c's top-k path, so one token id crosses to
 * the host per decode step instead of n_vocab floats.
 *
 * The rule, as the CPU sampler applies it: the repetition penalty on the
 * distinct ids the host lists (divide a positive logit, multiply a negative
 * one); greedy (temperature 0) is the argmax, ties to the lowest id, NaN
 * never winning; otherwise the K best by (logit desc, id asc) with NaN as
 * -inf, softmax at temperature T with the sum in double, the top-p / min-p
 * prefix, and a draw of the uniform U the host took from its own RNG stream,
 * so --seed reproduces the same tokens on both backends. The arithmetic of
 * the last step is the CPU's, expression for expression, on one thread.
 *
 * Design: a logit and its id become one 64-bit key (order-preserving bits of
 * the float over the complement of the id), so "better" is one unsigned
 * compare and every key is distinct. Pass 1 (k_sample_part): NB blocks, each
 * over a fixed slice of the vocabulary, take their K best keys by K rounds of
 * a block max: a thread keeps the best of its own elements below the last
 * winner, and only the owner of a winner rescans (keys are distinct, so
 * "below the last winner" is the whole "not yet taken" test). Pass 2
 * (k_sample_pick): one block does the same over the NB x K candidates, then
 * thread 0 runs the softmax, cut and draw. Everything the step changes (the
 * uniform, the penalty list, the settings) is read from device memory, so
 * the two launches sit in a CUDA graph unchanged from step to step. Cost:
 * K block maxima per pass (two barriers each); K is small (40 by default).
 *
 * Differences from the host: expf on the device is within 2 ulp of glibc's,
 * so a draw that lands within a few ulp of a probability boundary can pick
 * the neighbour on a real GPU (the emulator uses the host's expf and agrees
 * exactly). With a non-finite best logit the host takes it without drawing;
 * so does this, but the host had already drawn U: the engine stops on
 * non-finite logits anyway (a damaged file), so the streams never diverge in
 * a run that continues.
 */
#include <math.h>

#include "cuda_common.h"

#define SAMPLE_THREADS 256
#define SAMPLE_WARPS (SAMPLE_THREADS / 32)

/* Order-preserving bits: larger float, larger key; NaN and -inf the same
 * (the CPU maps NaN to -inf). Key 0 is below every real key: "none". */
static __device__ __forceinline__ unsigned long long key_of(float v, int32_t id)
{
    if (v != v)
        v = -INFINITY;
    unsigned u = __float_as_uint(v);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (unsigned)(~(unsigned)id);
}
static __device__ __forceinline__ float key_logit(unsigned long long k)
{
    unsigned u = (unsigned)(k >> 32);
    u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
    return __uint_as_float(u);
}
static __device__ __forceinline__ int32_t key_id(unsigned long long k)
{
    return (int32_t)(~(unsigned)k);
}

/* The penalised logit, as sampler.c's apply_penalty computes it. */
static __device__ __forceinline__ float penalised(float v, float pen)
{
    return v > 0.0f ? v / pen : v * pen;
}

/* Max of V over the block; every thread gets it. */
static __device__ unsigned long long block_max(unsigned long long v)
{
    KV_SHARED(unsigned long long, wmax, [SAMPLE_WARPS]);
    KV_SHARED(unsigned long long, res, [1]);
    for (int o = 16; o > 0; o >>= 1) {
        unsigned long long w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0)
        wmax[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long m = wmax[0];
        for (int w = 1; w < SAMPLE_WARPS; w++) {
            unsigned long long x = wmax[w];
            m = x > m ? x : m;
        }
        res[0] = m;
    }
    __syncthreads();
    unsigned long long r = res[0];
    __syncthreads(); /* res and wmax are rewritten by the next call */
    return r;
}

/* The host asks for 1..KV_SAMPLE_MAX_K; anything else cannot overrun. */
static __device__ __forceinline__ int32_t clamp_k(int32_t k)
{
    return k < 1 ? 1 : k > KV_SAMPLE_MAX_K ? KV_SAMPLE_MAX_K : k;
}

/* Logits i0..i1 of LOGITS as keys, the penalty applied to the ids in PEN. */
struct logit_src {
    const float *logits;
    const int32_t *pen;
    int32_t n_pen;
    float penalty;
    __device__ unsigned long long operator()(int32_t i) const
    {
        float v = logits[i];
        for (int32_t j = 0; j < n_pen; j++)
            if (pen[j] == i) {
                v = penalised(v, penalty);
                break;
            }
        return key_of(v, i);
    }
};
struct key_src {
    const unsigned long long *keys;
    __device__ unsigned long long operator()(int32_t i) const { return keys[i]; }
};

/* The best key of this thread's elements i0 + tid + j*THREADS below THR. */
template <class S>
static __device__ unsigned long long own_best(const S &src, int32_t i0, int32_t i1,
                                              unsigned long long thr)
{
    unsigned long long b = 0;
    for (int32_t i = i0 + (int32_t)threadIdx.x; i < i1; i += SAMPLE_THREADS) {
        unsigned long long k = src(i);
        if (k < thr && k > b)
            b = k;
    }
    return b;
}

/* The K best keys of elements I0..I1 into OUT[0..K) (0 past the count), best
 * first, by K block maxima; only the thread that held a winner rescans. */
template <class S>
static __device__ void block_top_k(const S &src, int32_t i0, int32_t i1, int32_t k,
                                   unsigned long long *out)
{
    unsigned long long mine = own_best(src, i0, i1, ~0ull);
    for (int32_t r = 0; r < k; r++) {
        unsigned long long w = block_max(mine);
        if (threadIdx.x == 0)
            out[r] = w;
        if (w != 0 && w == mine)
            mine = own_best(src, i0, i1, w);
    }
}

/* Block b takes slice [b*CHUNK, ..) of the logits: its K best keys into
 * CAND[b*K ..], and whether the slice held a non-finite logit into
 * FLAGS[b]. */
static __global__ void __launch_bounds__(SAMPLE_THREADS)
k_sample_part(const float *__restrict__ logits, int32_t n_vocab, int32_t chunk,
              const struct kv_sample_in *__restrict__ in, unsigned long long *__restrict__ cand,
              int32_t *__restrict__ flags)
{
    const int32_t i0 = (int32_t)blockIdx.x * chunk;
    const int32_t i1 = i0 + chunk < n_vocab ? i0 + chunk : n_vocab;
    const int32_t k = clamp_k(in->top_k);
    const int32_t n_pen = in->n_pen < KV_SAMPLE_MAX_PEN ? in->n_pen : KV_SAMPLE_MAX_PEN;
    logit_src src{logits, in->pen, n_pen, in->penalty};
    block_top_k(src, i0, i1, k, cand + (size_t)blockIdx.x * k);
    /* the CPU's test, x - x != 0, is "not finite" */
    int bad = 0;
    for (int32_t i = i0 + (int32_t)threadIdx.x; i < i1; i += SAMPLE_THREADS)
        bad |= !isfinite(logits[i]);
    unsigned long long any = block_max((unsigned long long)bad);
    if (threadIdx.x == 0)
        flags[blockIdx.x] = (int32_t)any;
}

/* One block: the K best of NB x K candidates, then sampler.c's softmax, cut
 * and draw on thread 0. OUT[0] = the token, OUT[1] = 1 when a logit was
 * not finite. */
static __global__ void __launch_bounds__(SAMPLE_THREADS)
k_sample_pick(const unsigned long long *__restrict__ cand, const int32_t *__restrict__ flags,
              int32_t nb, const struct kv_sample_in *__restrict__ in, int32_t *__restrict__ out)
{
    KV_SHARED(unsigned long long, top, [KV_SAMPLE_MAX_K]);
    KV_SHARED(float, p, [KV_SAMPLE_MAX_K]);
    const int32_t k = clamp_k(in->top_k);
    key_src src{cand};
    /* thread 0 records each round's winner */
    unsigned long long mine = own_best(src, 0, nb * k, ~0ull);
    for (int32_t r = 0; r < k; r++) {
        unsigned long long w = block_max(mine);
        if (threadIdx.x == 0)
            top[r] = w;
        if (w != 0 && w == mine)
            mine = own_best(src, 0, nb * k, w);
    }
    if (threadIdx.x != 0)
        return;
    int32_t bad = 0;
    for (int32_t b = 0; b < nb; b++)
        bad |= flags[b];
    out[1] = bad;
    const unsigned long long best = top[0];
    const float t = in->temperature;
    if (!(t > 0.0f) || !isfinite(key_logit(best))) {
        out[0] = key_id(best); /* greedy, or nothing finite to weigh */
        return;
    }
    /* softmax(): C[0] holds the largest logit */
    int32_t n = 0;
    while (n < k && top[n] != 0)
        n++;
    const float mx = key_logit(best);
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        float l = key_logit(top[i]);
        float e = isinf(l) && l < 0 ? 0.0f : expf((l - mx) / t);
        p[i] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    for (int32_t i = 0; i < n; i++)
        p[i] = p[i] * inv;
    /* cut() */
    const float floor_p = in->min_p * p[0];
    double cum = 0.0;
    int32_t keep = 0;
    while (keep < n) {
        if (keep > 0 && p[keep] < floor_p)
            break;
        cum += p[keep];
        keep++;
        if (cum >= in->top_p)
            break;
    }
    if (keep == 0)
        keep = 1;
    /* draw() */
    double total = 0.0;
    for (int32_t i = 0; i < keep; i++)
        total += p[i];
    const double r = in->u * total;
    double acc = 0.0;
    for (int32_t i = 0; i < keep; i++) {
        acc += p[i];
        if (r < acc) {
            out[0] = key_id(top[i]);
            return;
        }
    }
    out[0] = key_id(top[keep - 1]);
}

int32_t kv_sample_blocks(int32_t n_vocab)
{
    int32_t nb = (n_vocab + KV_SAMPLE_CHUNK - 1) / KV_SAMPLE_CHUNK;
    return nb < 1 ? 1 : nb;
}

size_t kv_sample_scratch_bytes(int32_t n_vocab)
{
    const size_t nb = (size_t)kv_sample_blocks(n_vocab);
    return nb * KV_SAMPLE_MAX_K * sizeof(unsigned long long) + nb * sizeof(int32_t);
}

cudaError_t kv_sample(const float *logits, int32_t n_vocab, const struct kv_sample_in *in,
                      void *scratch, int32_t *out, cudaStream_t st)
{
    const int32_t nb = kv_sample_blocks(n_vocab);
    unsigned long long *cand = (unsigned long long *)scratch;
    int32_t *flags = (int32_t *)(cand + (size_t)nb * KV_SAMPLE_MAX_K);
    KV_LAUNCH(k_sample_part, nb, SAMPLE_THREADS, 0, st)(logits, n_vocab, KV_SAMPLE_CHUNK, in,
                                                        cand, flags);
    KV_LAUNCH(k_sample_pick, 1, SAMPLE_THREADS, 0, st)(cand, flags, nb, in, out);
    return cudaGetLastError();
}
