/* convert.cu - f32 activations to bf16 for the prefill GEMM's input.
 *
 * Design rules: element-wise, grid-stride, rounded to nearest even.
 *
 * Why this version: cublasGemmEx takes both 16-bit operands in one type and
 * the weight tiles are bf16 (dequant.cu). v1 used f16, whose 65504 ceiling
 * Gemma's GeGLU outputs pass before ffn_down (inf, then NaN after the
 * post-norm); bf16 has f32's exponent range, at 8 significant bits instead
 * of 11 (test_cuda states what that costs in its tolerances).
 */
#include "cuda_common.h"

static __global__ void k_f32_to_bf16(const float *__restrict__ x, __nv_bfloat16 *y, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

cudaError_t kv_f32_to_bf16(const float *x, __nv_bfloat16 *y, int64_t n, cudaStream_t st)
{
    KV_LAUNCH(k_f32_to_bf16, kv_grid(n, 256), 256, 0, st)(x, y, n);
    return cudaGetLastError();
}
