/* moe.cu - the mixture-of-experts pieces around the expert matvecs
 * (qwen3moe, qwen2moe): the router's top-k, and the weighted sum of the
 * chosen experts' outputs (plus the gated shared expert) into the residual
 * stream. The expert products themselves are kv_matvec_x / kv_matvec_x_glu
 * (matvec.cu), which read the expert ids these kernels write.
 *
 * Design rules: the choice of experts never leaves the device, so the
 * decode step stays one captured graph that replays at every position (the
 * ids and weights are written to device memory here and read there at run
 * time). The selection is cpu.c's moe_select exactly: softmax over the
 * router logits, then K times the most probable expert not yet taken, ties
 * to the lower index, so both backends run the same experts.
 *
 * k_moe_route: one warp per token. Each lane owns experts lane, lane + 32,
 * ... (a bit of a 32-bit mask per owned expert marks it taken, so up to
 * 1024 experts); a pick is each lane's best untaken (value, index) reduced
 * over the warp under one total order (larger value, then lower index),
 * so every lane agrees on the winner. The softmax denominator is summed in
 * double, as cpu.c does, but lane partials then a butterfly instead of
 * cpu.c's one loop: a weight can differ from the CPU's by an ulp of its
 * float (test_kernels: ids equal, weights within 1e-6 relative). A NaN
 * logit counts as -inf (cpu.c's comparisons would leave it to chance);
 * the ids are always in range.
 *
 * gpt-oss gates differently (topk_softmax): the same K picks, then a
 * softmax over those K logits alone; the lane-0 loop is cpu.c's, so the
 * weights are its to the ulp of the final division.
 *
 * k_moe_sum: element-wise, in cpu.c's order (slot by slot, then the shared
 * expert, then the residual).
 *
 * Why this version: the first (v1): K and the expert count are small (8 of
 * 128 in qwen3-30b-a3b), so a warp per token is one short launch; no GPU
 * figure yet.
 */
#include <math.h>

#include "cuda_common.h"

/* Whether (V2, I2) beats (V, I): a larger value, or the same value at a
 * lower index; I < 0 is "none yet". */
static __device__ __forceinline__ void moe_better(float &v, int &i, float v2, int i2)
{
    if (i2 >= 0 && (i < 0 || v2 > v || (v2 == v && i2 < i))) {
        v = v2;
        i = i2;
    }
}

static __global__ void __launch_bounds__(32)
    k_moe_route(const float *__restrict__ logits, int32_t n_expert, int32_t k, bool norm,
                bool topk_softmax, int32_t *ids, float *w)
{
    const int lane = threadIdx.x;
    const float *l = logits + (int64_t)blockIdx.x * n_expert;
    int32_t *sel = ids + (int64_t)blockIdx.x * k;
    float *sw = w + (int64_t)blockIdx.x * k;
    /* A lane reads back only the entries it wrote (but for the top-k
     * softmax below, after a warp barrier). */
    KV_SHARED(float, lg, [KV_MOE_MAX_EXPERT]);
    float mx = -INFINITY;
    for (int e = lane; e < n_expert; e += 32) {
        float v = l[e];
        v = v != v ? -INFINITY : v;
        lg[e] = v;
        mx = fmaxf(mx, v);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    double s = 0.0;
    for (int e = lane; e < n_expert; e += 32)
        s += exp((double)(lg[e] - mx));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    uint32_t taken = 0;
    double wsum = 0.0;
    for (int j = 0; j < k; j++) {
        float bv = -INFINITY;
        int bi = -1;
        for (int e = lane, q = 0; e < n_expert; e += 32, q++)
            if (!((taken >> q) & 1u))
                moe_better(bv, bi, lg[e], e);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float v2 = __shfl_xor_sync(0xffffffffu, bv, o);
            int i2 = __shfl_xor_sync(0xffffffffu, bi, o);
            moe_better(bv, bi, v2, i2);
        }
        if (bi >= 0 && (bi & 31) == lane)
            taken |= 1u << (bi >> 5);
        if (lane == 0) {
            /* k <= n_expert (the launcher checks), so bi is an expert. */
            float wj = (float)(exp((double)(bv - mx)) / s);
            sel[j] = bi;
            sw[j] = wj;
            wsum += wj;
        }
    }
    if (topk_softmax) {
        /* Over the K chosen logits alone, against the first (the largest),
         * in double as cpu.c. Lane 0 reads the other lanes' logits: the
         * warp barrier orders their writes before its reads. */
        __syncwarp();
        if (lane == 0) {
            const float top = lg[sel[0]];
            double ks = 0.0;
            for (int j = 0; j < k; j++)
                ks += exp((double)(lg[sel[j]] - top));
            for (int j = 0; j < k; j++)
                sw[j] = (float)(exp((double)(lg[sel[j]] - top)) / ks);
        }
    } else if (norm && lane == 0) {
        for (int j = 0; j < k; j++)
            sw[j] = (float)(sw[j] / wsum);
    }
}

cudaError_t kv_moe_route(const float *logits, int32_t n_tok, int32_t n_expert, int32_t k,
                         bool norm, bool topk_softmax, int32_t *ids, float *w, cudaStream_t st)
{
    if (n_tok < 1 || n_expert < 1 || n_expert > KV_MOE_MAX_EXPERT || k < 1 || k > n_expert)
        return cudaErrorInvalidValue;
    KV_LAUNCH(k_moe_route, (unsigned)n_tok, 32, 0, st)(logits, n_expert, k, norm, topk_softmax,
                                                          ids, w);
    return cudaGetLastError();
}

static __global__ void k_moe_sum(const float *__restrict__ y, const float *__restrict__ w,
                                 int32_t n_tok, int32_t k, int32_t n_embd,
                                 const float *__restrict__ sh, const float *__restrict__ sh_z,
                                 const float *add, float *out)
{
    const int64_t n = (int64_t)n_tok * n_embd;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / n_embd, c = i % n_embd;
        float s = 0.0f;
        for (int j = 0; j < k; j++)
            s += w[t * k + j] * y[(t * k + j) * n_embd + c];
        if (sh) {
            float g = 1.0f / (1.0f + expf(-sh_z[t]));
            s += g * sh[i];
        }
        out[i] = add ? add[i] + s : s;
    }
}

cudaError_t kv_moe_sum(const float *y, const float *w, int32_t n_tok, int32_t k, int32_t n_embd,
                       const float *sh, const float *sh_z, const float *add, float *out,
                       cudaStream_t st)
{
    KV_LAUNCH(k_moe_sum, kv_grid((int64_t)n_tok * n_embd, 256), 256, 0, st)(
        y, w, n_tok, k, n_embd, sh, sh_z, add, out);
    return cudaGetLastError();
}
