/* ops.cu - the element-wise and per-row kernels of a transformer layer:
 * RMSNorm (also per head, and fused with a residual add), bias and residual
 * adds, RoPE, the gated activations, the KV-cache store and f32->f16.
 *
 * These move a few KB per token and are launch-bound at decode, not
 * bandwidth-bound; v1 keeps them simple and separate so each matches its CPU
 * reference op by op. Fusing them (norm into the next matvec's x load, RoPE
 * into the KV store) and CUDA graphs are next steps (NOTES.md).
 */
#include <math.h>

#include "cuda_common.h"

static unsigned blocks_for(int64_t n, int threads)
{
    int64_t g = (n + threads - 1) / threads;
    if (g > 65536)
        g = 65536;
    return (unsigned)(g < 1 ? 1 : g);
}

/* One block per row. Sum of squares in float, reduced by warp shuffles and
 * then across the block's warps through shared memory. */
#define NORM_THREADS 256
static __global__ void __launch_bounds__(NORM_THREADS)
    k_rmsnorm(const float *x, const float *__restrict__ w, const float *add, float *y, int32_t n,
              float eps)
{
    __shared__ float part[NORM_THREADS / 32];
    const float *xr = x + (int64_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += NORM_THREADS) {
        float v = xr[i];
        ss += v * v;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        ss = threadIdx.x < NORM_THREADS / 32 ? part[threadIdx.x] : 0.0f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            ss += __shfl_xor_sync(0xffffffffu, ss, o);
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
    k_rmsnorm<<<(unsigned)nrows, NORM_THREADS, 0, st>>>(x, w, add, y, n, eps);
    return cudaGetLastError();
}

static __global__ void k_add_bias(float *y, const float *__restrict__ b, int64_t total, int32_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] += b[i % n];
}

cudaError_t kv_add_bias(float *y, const float *b, int64_t nrows, int32_t n, cudaStream_t st)
{
    int64_t total = nrows * n;
    k_add_bias<<<blocks_for(total, 256), 256, 0, st>>>(y, b, total, n);
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
    k_add<<<blocks_for(n, 256), 256, 0, st>>>(y, a, n);
    return cudaGetLastError();
}

/* One thread per rotated pair. The angle pos * inv_freq[i] and its sine and
 * cosine are computed in double, as the CPU reference does: angles reach 1e5
 * rad at long contexts, where float loses the low digits. It is a few
 * thousand threads per token, so FP64 throughput does not matter. */
static __global__ void k_rope(float *x, int32_t n_tok, int32_t n_head, int32_t hd, int32_t n_rot,
                              int32_t pos0, const float *__restrict__ inv_freq, bool neox)
{
    int32_t half = n_rot / 2;
    int64_t total = (int64_t)n_tok * n_head * half;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        int32_t i = (int32_t)(idx % half);
        int64_t th = idx / half; /* token * n_head + head */
        int32_t t = (int32_t)(th / n_head);
        float *h = x + th * hd;
        double s, c;
        sincos((double)(pos0 + t) * (double)inv_freq[i], &s, &c);
        float fs = (float)s, fc = (float)c;
        int32_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        float a = h[i0], b = h[i1];
        h[i0] = a * fc - b * fs;
        h[i1] = a * fs + b * fc;
    }
}

cudaError_t kv_rope(float *x, int32_t n_tok, int32_t n_head, int32_t hd, int32_t n_rot,
                    int32_t pos0, const float *inv_freq, bool neox, cudaStream_t st)
{
    int64_t total = (int64_t)n_tok * n_head * (n_rot / 2);
    if (total <= 0)
        return cudaSuccess;
    k_rope<<<blocks_for(total, 256), 256, 0, st>>>(x, n_tok, n_head, hd, n_rot, pos0, inv_freq,
                                                   neox);
    return cudaGetLastError();
}

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
    k_glu<<<blocks_for(n, 256), 256, 0, st>>>(g, u, n, gelu);
    return cudaGetLastError();
}

/* Source (t, kvh, d) -> cache (kvh, pos0 + t, d). */
static __global__ void k_store_kv(const float *__restrict__ k, const float *__restrict__ v,
                                  __half *kc, __half *vc, int32_t n_tok, int32_t n_kv, int32_t hd,
                                  int32_t pos0, int32_t n_ctx)
{
    int64_t total = (int64_t)n_tok * n_kv * hd;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int32_t d = (int32_t)(i % hd);
        int64_t r = i / hd;
        int32_t h = (int32_t)(r % n_kv), t = (int32_t)(r / n_kv);
        int64_t o = ((int64_t)h * n_ctx + pos0 + t) * hd + d;
        kc[o] = __float2half_rn(k[i]);
        vc[o] = __float2half_rn(v[i]);
    }
}

cudaError_t kv_store_kv(const float *k, const float *v, __half *kc, __half *vc, int32_t n_tok,
                        int32_t n_kv, int32_t hd, int32_t pos0, int32_t n_ctx, cudaStream_t st)
{
    int64_t total = (int64_t)n_tok * n_kv * hd;
    k_store_kv<<<blocks_for(total, 256), 256, 0, st>>>(k, v, kc, vc, n_tok, n_kv, hd, pos0, n_ctx);
    return cudaGetLastError();
}

static __global__ void k_f32_to_f16(const float *__restrict__ x, __half *y, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}

cudaError_t kv_f32_to_f16(const float *x, __half *y, int64_t n, cudaStream_t st)
{
    k_f32_to_f16<<<blocks_for(n, 256), 256, 0, st>>>(x, y, n);
    return cudaGetLastError();
}
