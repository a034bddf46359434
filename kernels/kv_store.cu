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
