/* convert.cu - f32 activations to f16 for the prefill GEMM's input.
 *
 * Design rules: element-wise, grid-stride, rounded to nearest.
 *
 * Why this version: cublasGemmEx takes both operands in one type, and the
 * weight tiles are f16 (dequant.cu). Known risk (NOTES.md): activations past
 * 65504 would overflow; bf16 on both sides is the fix if it shows.
 */
#include "cuda_common.h"

static __global__ void k_f32_to_f16(const float *__restrict__ x, __half *y, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}

cudaError_t kv_f32_to_f16(const float *x, __half *y, int64_t n, cudaStream_t st)
{
    KV_LAUNCH(k_f32_to_f16, kv_grid(n, 256), 256, 0, st)(x, y, n);
    return cudaGetLastError();
}
