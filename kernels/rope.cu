/* rope.cu - rotary position embedding of the first n_rot dims of every head
 * (model-formats.md 3.1): normal (adjacent pairs) or NeoX (halves) order.
 *
 * Design rules: one thread per rotated pair; the rotation speeds come from
 * the host (backend_cuda.cu computes them as cpu.c does, YaRN's per-pair
 * mix included), so both backends turn by the same angles. MSCALE
 * multiplies cos and sin (YaRN's attention factor, 1 otherwise), rounded
 * to float first as cpu.c's rope tables are.
 *
 * Why this version: exactness over speed (v1); fusing RoPE into the KV
 * store is a next step (NOTES.md).
 */
#include <math.h>

#include "cuda_common.h"

/* One thread per rotated pair. The angle pos * inv_freq[i] and its sine and
 * cosine are computed in double, as the CPU reference does: angles reach 1e5
 * rad at long contexts, where float loses the low digits. It is a few
 * thousand threads per token, so FP64 throughput does not matter. */
static __global__ void k_rope(float *x, int32_t n_tok, int32_t n_head, int32_t hd, int32_t n_rot,
                              int32_t pos0, const float *__restrict__ inv_freq, float mscale,
                              bool neox)
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
        float fs = (float)s * mscale, fc = (float)c * mscale;
        int32_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        float a = h[i0], b = h[i1];
        h[i0] = a * fc - b * fs;
        h[i1] = a * fs + b * fc;
    }
}

cudaError_t kv_rope(float *x, int32_t n_tok, int32_t n_head, int32_t hd, int32_t n_rot,
                    int32_t pos0, const float *inv_freq, float mscale, bool neox, cudaStream_t st)
{
    int64_t total = (int64_t)n_tok * n_head * (n_rot / 2);
    if (total <= 0)
        return cudaSuccess;
    KV_LAUNCH(k_rope, kv_grid(total, 256), 256, 0, st)(x, n_tok, n_head, hd, n_rot, pos0,
                                                        inv_freq, mscale, neox);
    return cudaGetLastError();
}

