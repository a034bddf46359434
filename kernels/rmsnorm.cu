/* rmsnorm.cu - RMSNorm of rows: Y = X / sqrt(mean(X^2) + eps) * W, optionally
 * plus a residual ADD in the same pass (cpu.c's rmsnorm and the post-norm
 * residual of gemma3).
 *
 * Design rules: one block per row, the sum of squares in float reduced by
 * warp shuffles and then across warps through shared memory; Y may alias X
 * or ADD, since each element is read before it is written by one thread.
 * The same kernel normalises whole rows (n_embd) and single heads (q/k norm
 * of qwen3 and gemma3, rows of head_dim).
 *
 * Why this version: correctness first (v1). It moves a few KB per token and
 * is launch-bound at decode, so the decode step does not launch it before
 * a projection: the matvec norms x in its staging prologue (matvec.cu,
 * kv_matvec_norm). It still serves prefill, the q/k norms and the
 * post-norms (which need the whole output row of a matvec).
 */
#include "cuda_common.h"

/* One block per row. Sum of squares in float, reduced by warp shuffles and
 * then across the block's warps through shared memory. */
#define NORM_THREADS 256
static __global__ void __launch_bounds__(NORM_THREADS)
    k_rmsnorm(const float *x, const float *__restrict__ w, const float *add, float *y, int32_t n,
              float eps)
{
    KV_SHARED(float, part, [NORM_THREADS / 32]);
    const float *xr = x + (int64_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += NORM_THREADS) {
        float v = xr[i];
        ss += v * v;
    }
    ss = kv_warp_sum(ss);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        ss = threadIdx.x < NORM_THREADS / 32 ? part[threadIdx.x] : 0.0f;
        ss = kv_warp_sum(ss);
        if (threadIdx.x == 0)
            part[0] = ss;
    }
    __syncthreads();
    float inv = rsqrtf(part[0] / (float)n + eps);
    float *yr = y + (int64_t)blockIdx.x * n;
    const float *ar = add ? add + (int64_t)blockIdx.x * n : NULL;
    for (int i = threadIdx.x; i < n; i += NORM_THREADS) {
        float v = xr[i] * inv * w[i];
        if (ar)
            v += ar[i];
        yr[i] = v;
    }
}

cudaError_t kv_rmsnorm(const float *x, const float *w, const float *add, float *y, int64_t nrows,
                       int32_t n, float eps, cudaStream_t st)
{
    if (nrows <= 0)
        return cudaSuccess;
    /* Rows are at most n_tok * n_head, well under the 2^31-1 grid limit. */
    KV_LAUNCH(k_rmsnorm, (unsigned)nrows, NORM_THREADS, 0, st)(x, w, add, y, n, eps);
    return cudaGetLastError();
}

