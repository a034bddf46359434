/* glu.cu - the gated activation of the feed-forward block: G = act(G) * U
 * with SiLU (llama, qwen) or tanh-form GELU (gemma3), as cpu.c computes it.
 *
 * Design rules: element-wise, grid-stride, in place on G.
 *
 * Why this version: simple and exact (v1). The decode step does not launch
 * it: there the gate/up matvec stores act(g) * u itself (k_mvglu_*,
 * matvec.cu), through the same kv_glu_act. Prefill, and gate/up pairs of
 * different formats, still use it.
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

