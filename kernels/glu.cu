/* glu.cu - the gated activation of the feed-forward block: G = act(G) * U
 * with SiLU (llama, qwen) or tanh-form GELU (gemma3), as cpu.c computes it,
 * and gpt-oss's clamped SwiGLU (kv_glu_clamp, cpu.c's glu_clamped).
 *
 * Design rules: element-wise, grid-stride, in place on G.
 *
 * Why this version: simple and exact (v1). The decode step does not launch
 * it: there the gate/up matvec stores act(g) * u itself (k_mvglu_*,
 * matvec.cu), through the same kv_glu_act. Prefill, and gate/up pairs of
 * different formats, still use it, and so do gpt-oss's experts: their gate
 * and up carry bias rows that must be added before the clamp, which the
 * fused store does not take (NOTES.md, gpt-oss v1).
 */
#include <math.h>

#include "cuda_common.h"

static __global__ void k_glu(float *g, const float *__restrict__ u, int64_t n, bool gelu)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        g[i] = kv_glu_act(g[i], gelu) * u[i];
    }
}

cudaError_t kv_glu(float *g, const float *u, int64_t n, bool gelu, cudaStream_t st)
{
    KV_LAUNCH(k_glu, kv_grid(n, 256), 256, 0, st)(g, u, n, gelu);
    return cudaGetLastError();
}


static __global__ void k_glu_clamp(float *g, const float *__restrict__ u, int64_t n, float alpha,
                                   float limit)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        g[i] = kv_glu_clamped(g[i], u[i], alpha, limit);
    }
}

cudaError_t kv_glu_clamp(float *g, const float *u, int64_t n, float alpha, float limit,
                         cudaStream_t st)
{
    if (n <= 0)
        return cudaSuccess;
    KV_LAUNCH(k_glu_clamp, kv_grid(n, 256), 256, 0, st)(g, u, n, alpha, limit);
    return cudaGetLastError();
}
