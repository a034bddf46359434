/* add.cu - residual and bias adds: Y[i] += A[i], and Y[r][c] += B[c].
 *
 * Design rules: grid-stride loops, one element per thread per step; the
 * decode path fuses both into the matvec store, so these run only after
 * the prefill GEMMs (bias) and where a residual is not fused.
 *
 * Why this version: the simplest exact form (v1); they are a small share of
 * the bytes a token moves.
 */
#include "cuda_common.h"

static __global__ void k_add_bias(float *y, const float *__restrict__ b, int64_t total, int32_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] += b[i % n];
}

cudaError_t kv_add_bias(float *y, const float *b, int64_t nrows, int32_t n, cudaStream_t st)
{
    int64_t total = nrows * n;
    KV_LAUNCH(k_add_bias, kv_grid(total, 256), 256, 0, st)(y, b, total, n);
    return cudaGetLastError();
}

static __global__ void k_add(float *y, const float *__restrict__ a, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] += a[i];
}

cudaError_t kv_add(float *y, const float *a, int64_t n, cudaStream_t st)
{
    KV_LAUNCH(k_add, kv_grid(n, 256), 256, 0, st)(y, a, n);
    return cudaGetLastError();
}

