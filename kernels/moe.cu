/* moe.cu - the mixture-of-experts pieces around the expert matvecs
 * (qwen3moe, qwen2moe, gpt-oss): the router's top-k and its weights as the
 * file's gating keys say (model.h), and the weighted sum of the
 * chosen experts' outputs (plus the gated shared expert) into the residual
 * stream. The expert products themselves are kv_matvec_x / kv_matvec_x_glu
 * (matvec.cu), which read the expert ids these kernels write.
 *
 * Design rules: the choice of experts never leaves the device, so the
 * decode step stays one captured graph that replays at every position (the
 * ids and weights are written to device memory here and read there at run
 * time). The selection is model_moe_select (backend/model/moe.c) exactly: K times the largest
 * logit not yet taken (the most probable expert under any gating), ties to
 * the lower index, so both backends run the same experts.
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
 * The weights (lane 0, after the picks and a warp barrier, reading the
 * picked logits from shared memory) follow model_moe_select's order, llama.cpp's
 * build_moe_ffn: the gating's weight per pick (the softmax's, over the
 * butterfly's denominator; sigmoid(l); or gpt-oss's softmax over the K
 * picked logits, lane 0's loop as cpu.c's), then the renormalisation
 * (the sum clamped below at 2^-14), then the scale. Only the softmax's
 * denominator is summed in another order than cpu.c's, so the other
 * gatings' weights are cpu.c's to the ulp of the device's double exp.
 *
 * k_moe_sum: element-wise, in cpu.c's order (slot by slot, then the shared
 * expert, then the residual).
 *
 * Why this version: the first (v1): K and the expert count are small (8 of
 * 128 in qwen3-30b-a3b), so a warp per token is one short launch; no GPU
 * figure yet. v2 takes the gating as an enum (softmax, sigmoid, gpt-oss's
 * softmax over the picks) plus the scale, all weights in one lane-0 pass
 * after the picks, so any MoE file's router runs here (NOTES.md, MoE
 * router keys).
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

/* The renormalisation's least sum, cpu.c's MOE_MIN_WSUM (llama.cpp's). */
#define MOE_MIN_WSUM 6.103515625e-5

static __global__ void __launch_bounds__(32)
    k_moe_route(const float *__restrict__ logits, int32_t n_expert, int32_t k,
                enum kv_moe_gating gating, bool norm, float scale, int32_t *ids, float *w)
{
    const int lane = threadIdx.x;
    const float *l = logits + (int64_t)blockIdx.x * n_expert;
    int32_t *sel = ids + (int64_t)blockIdx.x * k;
    float *sw = w + (int64_t)blockIdx.x * k;
    /* Each lane writes its own experts' entries; lane 0 reads the picked
     * ones after a warp barrier. */
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
    if (gating == KV_MOE_SOFTMAX) {
        for (int e = lane; e < n_expert; e += 32)
            s += exp((double)(lg[e] - mx));
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, o);
    }
    uint32_t taken = 0;
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
        /* k <= n_expert (the launcher checks), so bi is an expert. */
        if (lane == 0)
            sel[j] = bi;
    }
    /* orders the other lanes' lg writes before lane 0's reads */
    __syncwarp();
    if (lane != 0)
        return;
    float ref = mx; /* the softmaxes' max: the first pick's logit */
    double den = s;
    if (gating == KV_MOE_SOFTMAX_TOPK) {
        ref = lg[sel[0]];
        den = 0.0;
        for (int j = 0; j < k; j++)
            den += exp((double)(lg[sel[j]] - ref));
    }
    double wsum = 0.0;
    for (int j = 0; j < k; j++) {
        const float v = lg[sel[j]];
        const float wj = gating == KV_MOE_SIGMOID ? (float)(1.0 / (1.0 + exp(-(double)v)))
                                                  : (float)(exp((double)(v - ref)) / den);
        sw[j] = wj;
        wsum += wj;
    }
    const double d = wsum > MOE_MIN_WSUM ? wsum : MOE_MIN_WSUM;
    for (int j = 0; j < k; j++)
        sw[j] = (norm ? (float)(sw[j] / d) : sw[j]) * scale;
}

cudaError_t kv_moe_route(const float *logits, int32_t n_tok, int32_t n_expert, int32_t k,
                         enum kv_moe_gating gating, bool norm, float scale, int32_t *ids,
                         float *w, cudaStream_t st)
{
    if (n_tok < 1 || n_expert < 1 || n_expert > KV_MOE_MAX_EXPERT || k < 1 || k > n_expert ||
        (gating != KV_MOE_SOFTMAX && gating != KV_MOE_SOFTMAX_TOPK && gating != KV_MOE_SIGMOID))
        return cudaErrorInvalidValue;
    KV_LAUNCH(k_moe_route, (unsigned)n_tok, 32, 0, st)(logits, n_expert, k, gating, norm, scale,
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
