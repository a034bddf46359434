/* kv_store.cu - writes a micro-batch's keys and values into the f16 KV cache
 * of a layer at positions pos0.. .
 *
 * Design rules: the cache is (n_kv, n_ctx, hd) so one KV head's keys are
 * contiguous for the attention tiles; the source is (token, head, dim) f32
 * from the projections. One thread per element, rounded to nearest.
 *
 * Why this version: f16 halves the cache against f32 at no measurable loss
 * in the CPU comparison (test_cuda); RoPE could be fused in later.
 */
#include "cuda_common.h"

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
    KV_LAUNCH(k_store_kv, kv_grid(total, 256), 256, 0, st)(k, v, kc, vc, n_tok, n_kv, hd, pos0,
                                                            n_ctx);
    return cudaGetLastError();
}


/* The decode step's RoPE and KV store in one launch, the position read from
 * device memory (a CUDA graph replays it unchanged): Q's pairs are rotated
 * in place; K's rotated pairs, K's unrotated dims and V go straight into the
 * f16 cache, so K itself is never written back. Items, one thread each:
 * N_HEAD x HALF Q pairs, then N_KV x (HALF + HD - N_ROT) K items, then
 * N_KV x HD V elements, for each of N_TOK tokens. The angle is taken in
 * double as k_rope does, so the result equals kv_rope then kv_store_kv. */
static __global__ void k_rope_store(float *q, const float *__restrict__ k,
                                    const float *__restrict__ v, __half *kc, __half *vc,
                                    int32_t n_tok, int32_t n_head, int32_t n_kv, int32_t hd,
                                    int32_t n_rot, const int32_t *__restrict__ pos_dev,
                                    int32_t n_ctx, const float *__restrict__ inv_freq,
                                    float mscale, bool neox)
{
    const int32_t half = n_rot / 2;
    const int64_t nq = (int64_t)n_head * half, nk = (int64_t)n_kv * (half + hd - n_rot),
                  nv = (int64_t)n_kv * hd, per = nq + nk + nv;
    const int64_t total = (int64_t)n_tok * per;
    const int32_t pos0 = *pos_dev;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int32_t t = (int32_t)(idx / per);
        int64_t j = idx % per;
        const int32_t pos = pos0 + t;
        if (j >= nq + nk) { /* V */
            j -= nq + nk;
            const int32_t h = (int32_t)(j / hd), d = (int32_t)(j % hd);
            vc[((int64_t)h * n_ctx + pos) * hd + d] =
                __float2half_rn(v[((int64_t)t * n_kv + h) * hd + d]);
            continue;
        }
        const bool isq = j < nq;
        if (!isq)
            j -= nq;
        const int32_t items = isq ? half : half + hd - n_rot;
        const int32_t h = (int32_t)(j / items), i = (int32_t)(j % items);
        const float *src = isq ? q + ((int64_t)t * n_head + h) * hd
                               : k + ((int64_t)t * n_kv + h) * hd;
        __half *dst = kc + ((int64_t)h * n_ctx + pos) * hd;
        if (i >= half) { /* an unrotated K dim */
            const int32_t d = n_rot + (i - half);
            dst[d] = __float2half_rn(src[d]);
            continue;
        }
        double s, c;
        sincos((double)pos * (double)inv_freq[i], &s, &c);
        const float fs = (float)s * mscale, fc = (float)c * mscale;
        const int32_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float a = src[i0], b = src[i1];
        const float r0 = a * fc - b * fs, r1 = a * fs + b * fc;
        if (isq) {
            float *qh = q + ((int64_t)t * n_head + h) * hd;
            qh[i0] = r0;
            qh[i1] = r1;
        } else {
            dst[i0] = __float2half_rn(r0);
            dst[i1] = __float2half_rn(r1);
        }
    }
}

cudaError_t kv_rope_store(float *q, const float *k, const float *v, __half *kc, __half *vc,
                          int32_t n_tok, int32_t n_head, int32_t n_kv, int32_t hd, int32_t n_rot,
                          const int32_t *pos_dev, int32_t n_ctx, const float *inv_freq,
                          float mscale, bool neox, cudaStream_t st)
{
    const int32_t half = n_rot / 2;
    const int64_t total = (int64_t)n_tok * ((int64_t)n_head * half +
                                            (int64_t)n_kv * (half + hd - n_rot) +
                                            (int64_t)n_kv * hd);
    KV_LAUNCH(k_rope_store, kv_grid(total, 256), 256, 0, st)(q, k, v, kc, vc, n_tok, n_head,
                                                              n_kv, hd, n_rot, pos_dev, n_ctx,
                                                              inv_freq, mscale, neox);
    return cudaGetLastError();
}


/* ---- the q8_0 cache ----
 *
 * The same stores into a q8_0 cache (cuda_common.h, struct kv_q8_cache: the
 * int8 codes (n_kv, n_ctx, hd) and an f16 scale per 32 dims of a row
 * (n_kv, n_ctx, hd / 32)). A block's scale needs the block's largest
 * magnitude, so a warp holds one block, a lane an element: the max is a
 * shuffle butterfly, then each lane writes its own code and lane 0 the
 * scale. Items per token: N_HEAD x HALF Q pairs (when Q is rotated here),
 * rounded up to whole warps so that no warp holds two kinds of item, then
 * N_KV x HD K elements, then N_KV x HD V elements (HD % 32 == 0: whole
 * blocks); the total is whole warps and every warp's items are
 * warp-aligned, so each shuffle has its whole warp. The rounding is
 * quant.h's Q8_0 quantiser's (the CPU backend's cache): d = half(max|x| /
 * 127), code = rint(x / d) clamped to -128..127, with IEEE division (this
 * module builds without fast math). */

/* This lane's element X of the warp's block: its code to *Q, the block's
 * scale to *D from lane 0. The whole warp must call it. */
static __device__ __forceinline__ void q8_put(float x, int8_t *q, __half *d, int lane)
{
    float amax = fabsf(x);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const __half dh = __float2half_rn(amax / 127.0f);
    const float df = __half2float(dh);
    const float id = df != 0.0f ? 1.0f / df : 0.0f;
    *q = (int8_t)fmaxf(-128.0f, fminf(127.0f, rintf(x * id)));
    if (lane == 0)
        *d = dh;
}

/* INV_FREQ NULL: K is stored as it is and Q (may be NULL) left alone;
 * otherwise Q and K are rotated as k_rope_store rotates them. The position
 * is *POS_DEV when given, else POS0. */
static __global__ void k_store_q8(float *q, const float *__restrict__ k,
                                  const float *__restrict__ v, struct kv_q8_cache kc,
                                  struct kv_q8_cache vc, int32_t n_tok, int32_t n_head,
                                  int32_t n_kv, int32_t hd, int32_t n_rot,
                                  const int32_t *__restrict__ pos_dev, int32_t pos0_host,
                                  int32_t n_ctx, const float *__restrict__ inv_freq, float mscale,
                                  bool neox)
{
    const int32_t half = n_rot / 2;
    const bool rot = inv_freq != nullptr;
    const int64_t nq = rot && q ? ((int64_t)n_head * half + 31) / 32 * 32 : 0;
    const int64_t nk = (int64_t)n_kv * hd, per = nq + 2 * nk;
    const int64_t total = (int64_t)n_tok * per;
    const int32_t pos0 = pos_dev ? *pos_dev : pos0_host;
    const int lane = threadIdx.x & 31;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int32_t t = (int32_t)(idx / per);
        int64_t j = idx % per;
        const int32_t pos = pos0 + t;
        if (j < nq) { /* a Q pair, or padding past the last */
            if (j >= (int64_t)n_head * half)
                continue;
            const int32_t h = (int32_t)(j / half), i = (int32_t)(j % half);
            float *qh = q + ((int64_t)t * n_head + h) * hd;
            double s, c;
            sincos((double)pos * (double)inv_freq[i], &s, &c);
            const float fs = (float)s * mscale, fc = (float)c * mscale;
            const int32_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            const float a = qh[i0], b = qh[i1];
            qh[i0] = a * fc - b * fs;
            qh[i1] = a * fs + b * fc;
            continue;
        }
        j -= nq;
        const bool isv = j >= nk;
        if (isv)
            j -= nk;
        const int32_t h = (int32_t)(j / hd), d = (int32_t)(j % hd);
        const float *src = (isv ? v : k) + ((int64_t)t * n_kv + h) * hd;
        float x = src[d];
        if (!isv && rot && d < n_rot) {
            /* this dim's pair, rotated as k_rope_store rotates it */
            const int32_t i = neox ? (d < half ? d : d - half) : d / 2;
            const int32_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            double s, c;
            sincos((double)pos * (double)inv_freq[i], &s, &c);
            const float fs = (float)s * mscale, fc = (float)c * mscale;
            const float a = src[i0], b = src[i1];
            x = d == i0 ? a * fc - b * fs : a * fs + b * fc;
        }
        const struct kv_q8_cache *dst = isv ? &vc : &kc;
        const int64_t row = (int64_t)h * n_ctx + pos;
        q8_put(x, dst->q + row * hd + d, dst->d + row * (hd / 32) + d / 32, lane);
    }
}

/* Threads of K_STORE_Q8 for N_TOK tokens. */
static int64_t q8_items(int32_t n_tok, int32_t n_head, int32_t n_kv, int32_t hd, int32_t n_rot,
                        bool rot_q)
{
    const int64_t nq = rot_q ? ((int64_t)n_head * (n_rot / 2) + 31) / 32 * 32 : 0;
    return (int64_t)n_tok * (nq + 2 * (int64_t)n_kv * hd);
}

cudaError_t kv_store_kv_q8(const float *k, const float *v, struct kv_q8_cache kc,
                           struct kv_q8_cache vc, int32_t n_tok, int32_t n_kv, int32_t hd,
                           int32_t pos0, int32_t n_ctx, cudaStream_t st)
{
    if (hd <= 0 || hd % 32)
        return cudaErrorInvalidValue;
    const int64_t total = q8_items(n_tok, 0, n_kv, hd, 0, false);
    KV_LAUNCH(k_store_q8, kv_grid(total, 256), 256, 0, st)(nullptr, k, v, kc, vc, n_tok, 0, n_kv,
                                                           hd, 0, nullptr, pos0, n_ctx, nullptr,
                                                           1.0f, false);
    return cudaGetLastError();
}

cudaError_t kv_rope_store_q8(float *q, const float *k, const float *v, struct kv_q8_cache kc,
                             struct kv_q8_cache vc, int32_t n_tok, int32_t n_head, int32_t n_kv,
                             int32_t hd, int32_t n_rot, const int32_t *pos_dev, int32_t n_ctx,
                             const float *inv_freq, float mscale, bool neox, cudaStream_t st)
{
    if (hd <= 0 || hd % 32)
        return cudaErrorInvalidValue;
    const int64_t total = q8_items(n_tok, n_head, n_kv, hd, n_rot, true);
    KV_LAUNCH(k_store_q8, kv_grid(total, 256), 256, 0, st)(q, k, v, kc, vc, n_tok, n_head, n_kv,
                                                           hd, n_rot, pos_dev, 0, n_ctx,
                                                           inv_freq, mscale, neox);
    return cudaGetLastError();
}
