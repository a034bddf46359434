/* attention.cu - causal (optionally sliding-window) attention with GQA over
 * the f16 KV cache, for one token (decode) or many (prefill).
 *
 * Layout: the cache of a layer is (n_kv, n_ctx, hd) f16, so the keys of one
 * KV head are contiguous and a 32-key tile is one contiguous run.
 *
 * Design (v1): a block of 8 warps serves one KV head and 8 consecutive
 * (token, query head) rows of its group, so a K/V tile loaded into shared
 * memory is reused by every query head of the group (GQA) and by several
 * tokens. Per tile, lane j scores key j against the warp's query (q from
 * shared memory, broadcast; K rows padded by one word so lanes hit distinct
 * banks), the warp does an online-softmax update, then lanes own pairs of
 * output dims and accumulate p_j * V[j]. Memory is linear in the sequence: no
 * score matrix is stored. For a single query at long context the key range is
 * split across blocks (grid z) and k_combine merges the partial (max, sum,
 * acc) triples; with one split the kernel writes the output directly.
 *
 * Why this version: a simple, exact (fp32 softmax and accumulation) kernel to
 * check everything else against. Tensor-core (mma) scoring for prefill and
 * 16-byte tile loads are next steps (NOTES.md).
 */
#include <math.h>

#include "cuda_common.h"

#define AT_WARPS 8
#define AT_TILE 32
#define AT_HD2P (KV_ATTN_MAX_HD / 2 + 1) /* padded row, in half2 */

template <int NP> /* output dim pairs per lane: hd <= 64 * NP */
static __global__ void __launch_bounds__(AT_WARPS * 32) k_attention(struct kv_attn_args a)
{
    KV_SHARED(__half2, ks, [AT_TILE][AT_HD2P]);
    KV_SHARED(__half2, vs, [AT_TILE][AT_HD2P]);
    KV_SHARED(float2, qs, [AT_WARPS][KV_ATTN_MAX_HD / 2]);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int group = a.n_head / a.n_kv;
    const int kvh = blockIdx.y;
    const int hd2 = a.hd / 2;
    const int64_t rows = (int64_t)a.n_tok * group;
    const int64_t r0 = (int64_t)blockIdx.x * AT_WARPS;
    const int64_t r = r0 + warp;
    const bool valid = r < rows;
    const int t = valid ? (int)(r / group) : 0;
    const int h = kvh * group + (valid ? (int)(r % group) : 0);
    /* a decode graph reads the position from device memory (cuda_common.h) */
    const int pos0 = a.pos_dev ? *a.pos_dev : a.pos0;
    const int qpos = pos0 + t;

    /* This block's key range: its split, cut to what its queries can see. */
    const int kv_len = pos0 + a.n_tok;
    int chunk = (kv_len + (int)gridDim.z - 1) / (int)gridDim.z;
    chunk = (chunk + AT_TILE - 1) / AT_TILE * AT_TILE;
    int kbeg = (int)blockIdx.z * chunk;
    int kend = min(kv_len, kbeg + chunk);
    const int t_lo = (int)(r0 / group);
    const int t_hi = (int)(min(r0 + AT_WARPS, rows) - 1) / group;
    kend = min(kend, pos0 + t_hi + 1);
    if (a.swa > 0)
        kbeg = max(kbeg, pos0 + t_lo - a.swa + 1);

    if (valid) {
        const float *q = a.q + ((int64_t)t * a.n_head + h) * a.hd;
        for (int d2 = lane; d2 < KV_ATTN_MAX_HD / 2; d2 += 32)
            qs[warp][d2] = d2 < hd2 ? make_float2(q[2 * d2] * a.scale, q[2 * d2 + 1] * a.scale)
                                    : make_float2(0.0f, 0.0f);
    }
    __syncwarp();

    float m = -INFINITY, l = 0.0f;
    float2 acc[NP];
#pragma unroll
    for (int i = 0; i < NP; i++)
        acc[i] = make_float2(0.0f, 0.0f);

    const __half2 *kc = (const __half2 *)a.kc + (int64_t)kvh * a.n_ctx * hd2;
    const __half2 *vc = (const __half2 *)a.vc + (int64_t)kvh * a.n_ctx * hd2;
    for (int kt = kbeg; kt < kend; kt += AT_TILE) {
        const int nk = min(AT_TILE, kend - kt);
        __syncthreads(); /* the previous tile is no longer read */
        for (int i = threadIdx.x; i < AT_TILE * hd2; i += AT_WARPS * 32) {
            int j = i / hd2, d2 = i % hd2;
            __half2 kz = __floats2half2_rn(0.0f, 0.0f), vz = kz;
            if (j < nk) {
                kz = kc[(int64_t)(kt + j) * hd2 + d2];
                vz = vc[(int64_t)(kt + j) * hd2 + d2];
            }
            ks[j][d2] = kz;
            vs[j][d2] = vz;
        }
        __syncthreads();
        if (!valid)
            continue;

        const int key = kt + lane;
        float s = -INFINITY;
        if (lane < nk && key <= qpos && !(a.swa > 0 && qpos - key >= a.swa)) {
            float dot = 0.0f;
            for (int d2 = 0; d2 < hd2; d2++) {
                float2 kf = __half22float2(ks[lane][d2]);
                float2 qf = qs[warp][d2];
                dot += qf.x * kf.x + qf.y * kf.y;
            }
            s = dot;
        }
        float mt = s;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
        if (mt == -INFINITY)
            continue; /* every key of this tile is masked for this row */
        const float mn = fmaxf(m, mt);
        const float corr = expf(m - mn); /* 0 on the first visible tile */
        const float p = s == -INFINITY ? 0.0f : expf(s - mn);
        float ps = p;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            ps += __shfl_xor_sync(0xffffffffu, ps, o);
        l = l * corr + ps;
        m = mn;
#pragma unroll
        for (int i = 0; i < NP; i++) {
            acc[i].x *= corr;
            acc[i].y *= corr;
        }
        for (int j = 0; j < nk; j++) {
            const float pj = __shfl_sync(0xffffffffu, p, j);
            if (pj == 0.0f)
                continue;
#pragma unroll
            for (int i = 0; i < NP; i++) {
                const int d2 = lane + 32 * i;
                if (d2 < hd2) {
                    float2 vf = __half22float2(vs[j][d2]);
                    acc[i].x += pj * vf.x;
                    acc[i].y += pj * vf.y;
                }
            }
        }
    }
    if (!valid)
        return;

    if (gridDim.z == 1) {
        float *o = a.out + ((int64_t)t * a.n_head + h) * a.hd;
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
        for (int i = 0; i < NP; i++) {
            const int d2 = lane + 32 * i;
            if (d2 < hd2) {
                o[2 * d2] = acc[i].x * inv;
                o[2 * d2 + 1] = acc[i].y * inv;
            }
        }
    } else {
        float *o = a.part + (((int64_t)blockIdx.z * a.n_tok + t) * a.n_head + h) * (a.hd + 2);
#pragma unroll
        for (int i = 0; i < NP; i++) {
            const int d2 = lane + 32 * i;
            if (d2 < hd2) {
                o[2 * d2] = acc[i].x;
                o[2 * d2 + 1] = acc[i].y;
            }
        }
        if (lane == 0) {
            o[a.hd] = m;
            o[a.hd + 1] = l;
        }
    }
}

/* One block per (token, head): merges the splits' partial softmax states. */
static __global__ void k_combine(struct kv_attn_args a)
{
    const int64_t th = blockIdx.x; /* token * n_head + head */
    const int64_t stride = (int64_t)a.n_tok * a.n_head * (a.hd + 2);
    const float *p = a.part + th * (a.hd + 2);
    float mx = -INFINITY;
    for (int s = 0; s < a.n_split; s++)
        mx = fmaxf(mx, p[s * stride + a.hd]);
    float lsum = 0.0f;
    for (int s = 0; s < a.n_split; s++) {
        float ms = p[s * stride + a.hd];
        if (ms != -INFINITY)
            lsum += p[s * stride + a.hd + 1] * expf(ms - mx);
    }
    const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
    float *o = a.out + th * a.hd;
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
        float v = 0.0f;
        for (int s = 0; s < a.n_split; s++) {
            float ms = p[s * stride + a.hd];
            if (ms != -INFINITY)
                v += p[s * stride + d] * expf(ms - mx);
        }
        o[d] = v * inv;
    }
}

cudaError_t kv_attention(const struct kv_attn_args *a, cudaStream_t st)
{
    if (a->hd <= 0 || a->hd > KV_ATTN_MAX_HD || a->hd % 2 || a->n_kv <= 0 ||
        a->n_head % a->n_kv || a->n_split < 1 || a->n_tok <= 0)
        return cudaErrorInvalidValue;
    const int group = a->n_head / a->n_kv;
    const int64_t rows = (int64_t)a->n_tok * group;
    dim3 grid((unsigned)((rows + AT_WARPS - 1) / AT_WARPS), (unsigned)a->n_kv, (unsigned)a->n_split);
    if (a->hd <= 64)
        KV_LAUNCH(k_attention<1>, grid, AT_WARPS * 32, 0, st)(*a);
    else if (a->hd <= 128)
        KV_LAUNCH(k_attention<2>, grid, AT_WARPS * 32, 0, st)(*a);
    else
        KV_LAUNCH(k_attention<4>, grid, AT_WARPS * 32, 0, st)(*a);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess || a->n_split == 1)
        return e;
    KV_LAUNCH(k_combine, (unsigned)(a->n_tok * a->n_head), 128, 0, st)(*a);
    return cudaGetLastError();
}
