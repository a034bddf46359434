/* glu.cu - the gated activation of the feed-forward block: G = act(G) * U
 * with SiLU (llama, qwen) or tanh-form GELU (gemma3), as cpu.c computes it.
 *
 * Design rules: element-wise, grid-stride, in place on G.
 *
 * Why this version: simple and exact (v1); fusing it into the down
 * projection's input load is a next step (NOTES.md).
 */
#include <math.h>

#include "cuda_common.h"

static __global__ void k_glu(float *g, const float *__restrict__ u, int64_t n, bool gelu)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float x = g[i], a;
        if (gelu) {
            const float k = 0.7978845608028654f; /* sqrt(2/pi) */
            a = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
        } else {
            a = x / (1.0f + expf(-x));
        }
        g[i] = a * u[i];
    }
}

cudaError_t kv_glu(float *g, const float *u, int64_t n, bool gelu, cudaStream_t st)
{
    KV_LAUNCH(k_glu, kv_grid(n, 256), 256, 0, st)(g, u, n, gelu);
    return cudaGetLastError();
}

