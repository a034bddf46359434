/* attention_decode.cu - flash-decoding attention for the decode step: one
 * token (or a few: speculative or short batches, n_tok <= KV_ATTN_DEC_MAX_TOK)
 * against the f16 KV cache, causal, optionally sliding-window, with GQA.
 * layer_forward (backend_cuda.cu) calls it for small n; more tokens go to
 * attention_prefill.cu.
 *
 * Layout: the cache of a layer is (n_kv, n_ctx, hd) f16, so the keys of one
 * KV head are one contiguous run and a key row is hd halves. A q8_0 cache
 * (struct kv_q8_cache) has the same shape in int8 codes beside an f16 scale
 * per 32 dims: a lane's 8 dims are one 8-byte load of codes and a 2-byte
 * load of their scale (instead of one 16-byte load), packed into the same
 * registers and turned into floats (scale x code, exact) where the f16
 * path converts halves; everything after that is the same code.
 *
 * Design (v2 of decode attention):
 * - A block (4 warps) serves one KV head x one key split x up to 8 query
 *   rows (token, query head) of that head's GQA group: for n_tok = 1 and a
 *   group of <= 8 every K/V byte is read once per token. Rows are a template
 *   parameter R (1, 2, 4, 8), so one query head does not pay for eight.
 * - The warps split the keys, not the rows, so every warp is busy whatever
 *   the group size. Inside a warp a key row is read by DW/8 lanes, each a
 *   16-byte load of 8 halves (DW = 64, 128, 256: the head dim rounded up),
 *   so a warp reads 1, 2 or 4 whole keys per load instruction, coalesced,
 *   straight into registers: no shared-memory tile, no bank conflicts, no
 *   barrier in the key loop. Scores are reduced over the key's lanes with
 *   shuffles; every lane keeps the fp32 online-softmax state (max, sum, 8
 *   output dims per row) of its keys.
 * - Register double buffering: the next batch's K and V (2 keys per lane
 *   group) are loaded before the current batch is scored, so every thread
 *   has 4-8 16-byte loads in flight.
 * - The warps' states merge through shared memory once at the end; with one
 *   split the block writes the output, otherwise the (acc, max, sum) triple
 *   into the scratch and k_dec_combine merges the splits.
 * - Splits come from kv_attn_decode_splits: the SM count and the key span a
 *   layer can read (its window for a sliding-window layer, else the whole
 *   context), never the position, so a captured graph replays with the same
 *   grid; the kernels read the position from a device pointer when given
 *   one, and cut each split's range from it at run time (splits past the
 *   live range exit at once, writing an empty state).
 *
 * - Attention sinks (gpt-oss: a->sinks, one logit per head) join only the
 *   final normalisation (kv_attn_sink_inv, cpu.c's attn_finish): the key
 *   loop and the splits' states are those of a model without sinks.
 *
 * Why this version: the first attention kernel (v1, one for prefill and
 * decode) gave a block of 8 warps one warp per (token, head) row, so for one token and a GQA group of 4 half the warps
 * idle, and each 32-key tile is a shared-memory round trip between two
 * barriers. Here K/V bytes flow from global memory to registers 16 bytes at
 * a time with every warp reading its own keys. Exact: fp32 scores, softmax
 * and accumulation, as v1.
 */
#include <math.h>
#include <string.h>

#include "cuda_common.h"

#define AD_WARPS 4
#define AD_NB 2      /* key steps a warp loads per batch */

static __device__ __forceinline__ float ad_h2f(uint32_t w) /* low half of W */
{
    return __half2float(__ushort_as_half((unsigned short)(w & 0xffffu)));
}

static __device__ __forceinline__ void ad_unpack(uint4 u, float *f)
{
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = ad_h2f(w[i]);
        f[2 * i + 1] = ad_h2f(w[i] >> 16);
    }
}

/* Halves D0..D0+7 of row J of BASE (rows of HD halves); zeros past HD. VEC:
 * HD is a multiple of 8 and BASE 16-byte aligned, so it is one 16-byte
 * load. */
static __device__ __forceinline__ uint4 ad_load(const __half *base, int64_t j, int hd, int d0,
                                                bool vec)
{
    const __half *p = base + j * hd + d0;
    if (vec)
        return __ldg((const uint4 *)p);
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
    for (int e = 0; e < 8; e++)
        if (d0 + e < hd)
            w[e >> 1] |= (uint32_t)__half_as_ushort(__ldg(p + e)) << (16 * (e & 1));
    return make_uint4(w[0], w[1], w[2], w[3]);
}

/* The q8_0 cache (Q8): codes D0..D0+7 of row J (one 8-byte load, aligned as
 * HD % 32 == 0) and their block's scale, packed (codes 0-3, codes 4-7,
 * scale bits, 0) into the registers an f16 load fills, so both types share
 * the double buffering below. */
static __device__ __forceinline__ uint4 ad_load_q8(const int8_t *q, const __half *d, int64_t j,
                                                   int hd, int d0)
{
    const uint2 c = __ldg((const uint2 *)(q + j * hd + d0));
    const uint32_t sc = __half_as_ushort(__ldg(d + j * (hd / 32) + d0 / 32));
    return make_uint4(c.x, c.y, sc, 0u);
}

/* ad_load_q8's 8 elements as floats: scale x code, exact in f32. */
static __device__ __forceinline__ void ad_unpack_q8(uint4 u, float *f)
{
    const float sc = ad_h2f(u.z);
#pragma unroll
    for (int e = 0; e < 4; e++) {
        f[e] = sc * (float)(int8_t)(u.x >> (8 * e));
        f[4 + e] = sc * (float)(int8_t)(u.y >> (8 * e));
    }
}

/* Row J's elements D0..D0+7 of the f16 cache H, or of the q8_0 cache (Q, D)
 * when Q8. */
template <bool Q8>
static __device__ __forceinline__ uint4 ad_fetch(const __half *h, const int8_t *q,
                                                 const __half *d, int64_t j, int hd, int d0,
                                                 bool vec)
{
    return Q8 ? ad_load_q8(q, d, j, hd, d0) : ad_load(h, j, hd, d0, vec);
}

template <bool Q8> static __device__ __forceinline__ void ad_decode(uint4 u, float *f)
{
    if (Q8)
        ad_unpack_q8(u, f);
    else
        ad_unpack(u, f);
}

/* Grid (n_kv, n_split, row chunks of R); AD_WARPS warps. Q8: the cache is
 * a.kq, a.vq (q8_0), else a.kc, a.vc (f16). */
template <int DW, int R, bool Q8>
static __global__ void __launch_bounds__(AD_WARPS * 32)
    k_attn_decode(struct kv_attn_args a, const int32_t *pos_dev, bool vec)
{
    constexpr int L = DW / 8;         /* lanes per key, 8 dims each */
    constexpr int KPW = 32 / L;       /* keys per warp per load step */
    constexpr int KB = KPW * AD_NB;   /* keys per warp per batch */
    constexpr int BK = KB * AD_WARPS; /* keys per block per batch */
    KV_SHARED(float4, qs, [R][DW / 4]);
    KV_SHARED(float, red, [AD_WARPS][R][DW]);
    KV_SHARED(float, rm, [AD_WARPS][R]);
    KV_SHARED(float, rl, [AD_WARPS][R]);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane / L, c = lane % L;
    const int group = a.n_head / a.n_kv;
    const int kvh = blockIdx.x, split = blockIdx.y;
    const int rows = a.n_tok * group;
    const int r0 = blockIdx.z * R;
    const int pos0 = pos_dev ? __ldg(pos_dev) : a.pos0;

    /* Keys any query can see, [lo, hi): the window for a sliding-window
     * layer. This split's share of it, rounded to whole block batches, then
     * cut to what this block's rows see. */
    const int hi = pos0 + a.n_tok;
    const int lo = a.swa > 0 ? max(0, pos0 - a.swa + 1) : 0;
    int chunk = (hi - lo + (int)gridDim.y - 1) / (int)gridDim.y;
    chunk = (chunk + BK - 1) / BK * BK;
    int kbeg = lo + split * chunk;
    int kend = min(hi, kbeg + chunk);
    const int t_lo = r0 / group;
    const int t_hi = (min(r0 + R, rows) - 1) / group;
    kend = min(kend, pos0 + t_hi + 1);
    if (a.swa > 0)
        kbeg = max(kbeg, pos0 + t_lo - a.swa + 1);

    int qp[R]; /* each row's query position, -1 for rows past the group */
#pragma unroll
    for (int r = 0; r < R; r++)
        qp[r] = r0 + r < rows ? pos0 + (r0 + r) / group : -1;

    for (int i = threadIdx.x; i < R * (DW / 4); i += AD_WARPS * 32) {
        const int r = i / (DW / 4), d = 4 * (i % (DW / 4));
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (r0 + r < rows) {
            const int t = (r0 + r) / group, h = kvh * group + (r0 + r) % group;
            const float *q = a.q + ((int64_t)t * a.n_head + h) * a.hd;
            for (int e = 0; e < 4; e++)
                if (d + e < a.hd)
                    v[e] = q[d + e] * a.scale;
        }
        qs[r][d / 4] = make_float4(v[0], v[1], v[2], v[3]);
    }
    __syncthreads();

    float m[R], l[R], acc[R][8];
#pragma unroll
    for (int r = 0; r < R; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++)
            acc[r][e] = 0.0f;
    }

    const int64_t head0 = (int64_t)kvh * a.n_ctx; /* this KV head's first row */
    const __half *kc = Q8 ? nullptr : a.kc + head0 * a.hd;
    const __half *vc = Q8 ? nullptr : a.vc + head0 * a.hd;
    const int8_t *kq = Q8 ? a.kq.q + head0 * a.hd : nullptr;
    const int8_t *vq = Q8 ? a.vq.q + head0 * a.hd : nullptr;
    const __half *kd = Q8 ? a.kq.d + head0 * (a.hd / 32) : nullptr;
    const __half *vd = Q8 ? a.vq.d + head0 * (a.hd / 32) : nullptr;
    const int d0 = 8 * c;
    const bool live = d0 < a.hd; /* lanes past the head dim load nothing */
    uint4 kb[AD_NB], vb[AD_NB];
    const uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int i = 0; i < AD_NB; i++) {
        const int j = kbeg + warp * KB + i * KPW + g;
        const bool in = live && j < kend;
        kb[i] = in ? ad_fetch<Q8>(kc, kq, kd, j, a.hd, d0, vec) : z;
        vb[i] = in ? ad_fetch<Q8>(vc, vq, vd, j, a.hd, d0, vec) : z;
    }

    for (int k0 = kbeg; k0 < kend; k0 += BK) {
        const int kt = k0 + warp * KB;
        /* The next batch, in flight while this one is scored. */
        uint4 kn[AD_NB], vn[AD_NB];
#pragma unroll
        for (int i = 0; i < AD_NB; i++) {
            const int j = kt + BK + i * KPW + g;
            const bool in = live && j < kend;
            kn[i] = in ? ad_fetch<Q8>(kc, kq, kd, j, a.hd, d0, vec) : z;
            vn[i] = in ? ad_fetch<Q8>(vc, vq, vd, j, a.hd, d0, vec) : z;
        }

        float s[R][AD_NB];
#pragma unroll
        for (int i = 0; i < AD_NB; i++) {
            float kf[8];
            ad_decode<Q8>(kb[i], kf);
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float4 qa = qs[r][2 * c], qb = qs[r][2 * c + 1];
                s[r][i] = qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] +
                          qb.x * kf[4] + qb.y * kf[5] + qb.z * kf[6] + qb.w * kf[7];
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < AD_NB; i++)
#pragma unroll
                for (int o = L / 2; o > 0; o >>= 1)
                    s[r][i] += __shfl_xor_sync(0xffffffffu, s[r][i], o);

        float vf[AD_NB][8];
#pragma unroll
        for (int i = 0; i < AD_NB; i++)
            ad_decode<Q8>(vb[i], vf[i]);
#pragma unroll
        for (int r = 0; r < R; r++) {
            float mb = -INFINITY;
#pragma unroll
            for (int i = 0; i < AD_NB; i++) {
                const int j = kt + i * KPW + g;
                const bool vis = j >= kbeg && j < kend && j <= qp[r] &&
                                 !(a.swa > 0 && qp[r] - j >= a.swa);
                s[r][i] = vis ? s[r][i] : -INFINITY;
                mb = fmaxf(mb, s[r][i]);
            }
#pragma unroll
            for (int o = L; o < 32; o <<= 1)
                mb = fmaxf(mb, __shfl_xor_sync(0xffffffffu, mb, o));
            if (mb == -INFINITY)
                continue; /* the whole batch is masked for this row (warp-uniform) */
            const float mn = fmaxf(m[r], mb);
            const float corr = expf(m[r] - mn); /* 0 on the row's first visible batch */
            m[r] = mn;
            float p[AD_NB], ps = 0.0f;
#pragma unroll
            for (int i = 0; i < AD_NB; i++) {
                p[i] = s[r][i] == -INFINITY ? 0.0f : expf(s[r][i] - mn);
                ps += p[i];
            }
            l[r] = l[r] * corr + ps;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float v = acc[r][e] * corr;
#pragma unroll
                for (int i = 0; i < AD_NB; i++)
                    v += p[i] * vf[i][e];
                acc[r][e] = v;
            }
        }
#pragma unroll
        for (int i = 0; i < AD_NB; i++) {
            kb[i] = kn[i];
            vb[i] = vn[i];
        }
    }

    /* The lane groups of a warp share its max: their sums simply add. */
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int o = L; o < 32; o <<= 1) {
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], o);
#pragma unroll
            for (int e = 0; e < 8; e++)
                acc[r][e] += __shfl_xor_sync(0xffffffffu, acc[r][e], o);
        }
    if (g == 0)
#pragma unroll
        for (int r = 0; r < R; r++) {
#pragma unroll
            for (int e = 0; e < 8; e++)
                red[warp][r][d0 + e] = acc[r][e];
            if (lane == 0) {
                rm[warp][r] = m[r];
                rl[warp][r] = l[r];
            }
        }
    __syncthreads();

    for (int i = threadIdx.x; i < R * DW; i += AD_WARPS * 32) {
        const int r = i / DW, d = i % DW;
        if (r0 + r >= rows || d >= a.hd)
            continue;
        float mx = -INFINITY;
        for (int w = 0; w < AD_WARPS; w++)
            mx = fmaxf(mx, rm[w][r]);
        float sum = 0.0f, o = 0.0f;
        if (mx != -INFINITY)
            for (int w = 0; w < AD_WARPS; w++) {
                const float mw = rm[w][r];
                if (mw == -INFINITY)
                    continue;
                const float f = expf(mw - mx);
                sum += rl[w][r] * f;
                o += red[w][r][d] * f;
            }
        const int t = (r0 + r) / group, h = kvh * group + (r0 + r) % group;
        if (gridDim.y == 1) {
            const float inv = kv_attn_sink_inv(mx, sum, a.sinks, a.sinks ? a.sinks[h] : 0.0f);
            a.out[((int64_t)t * a.n_head + h) * a.hd + d] = o * inv;
        } else {
            float *pp = a.part + (((int64_t)split * a.n_tok + t) * a.n_head + h) * (a.hd + 2);
            pp[d] = o;
            if (d == 0) {
                pp[a.hd] = mx;
                pp[a.hd + 1] = sum;
            }
        }
    }
}

/* One block per (token, head): merges the splits' (acc, max, sum). */
static __global__ void k_dec_combine(struct kv_attn_args a)
{
    const int64_t th = blockIdx.x; /* token * n_head + head */
    const int64_t stride = (int64_t)a.n_tok * a.n_head * (a.hd + 2);
    const float *p = a.part + th * (a.hd + 2);
    float mx = -INFINITY;
    for (int s = 0; s < a.n_split; s++)
        mx = fmaxf(mx, p[s * stride + a.hd]);
    float sum = 0.0f;
    if (mx != -INFINITY)
        for (int s = 0; s < a.n_split; s++) {
            const float ms = p[s * stride + a.hd];
            if (ms != -INFINITY)
                sum += p[s * stride + a.hd + 1] * expf(ms - mx);
        }
    const int h = (int)(th % a.n_head);
    const float inv = kv_attn_sink_inv(mx, sum, a.sinks, a.sinks ? a.sinks[h] : 0.0f);
    float *o = a.out + th * a.hd;
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
        float v = 0.0f;
        if (mx != -INFINITY)
            for (int s = 0; s < a.n_split; s++) {
                const float ms = p[s * stride + a.hd];
                if (ms != -INFINITY)
                    v += p[s * stride + d] * expf(ms - mx);
            }
        o[d] = v * inv;
    }
}

typedef void (*ad_kernel)(struct kv_attn_args, const int32_t *, bool);
/* [cache type: f16, q8_0][head-dim class][log2 R]: the head dim rounded up
 * to 64, 128, 256. */
#define AD_ROW(DW, Q8)                                                                             \
    {k_attn_decode<DW, 1, Q8>, k_attn_decode<DW, 2, Q8>, k_attn_decode<DW, 4, Q8>,                \
     k_attn_decode<DW, 8, Q8>}
static const ad_kernel ad_kernels[2][3][4] = {
    {AD_ROW(64, false), AD_ROW(128, false), AD_ROW(256, false)},
    {AD_ROW(64, true), AD_ROW(128, true), AD_ROW(256, true)},
};

/* log2 of the rows a block takes for ROWS (token, head) rows of a head. */
static int ad_rows_log2(int64_t rows)
{
    return rows <= 1 ? 0 : rows <= 2 ? 1 : rows <= 4 ? 2 : 3;
}

int32_t kv_attn_decode_splits(int n_sm, const struct kv_attn_args *a, int32_t room)
{
    if (a->n_kv <= 0 || a->n_head % a->n_kv || a->n_tok <= 0 || n_sm <= 0)
        return 1;
    const int64_t rows = (int64_t)a->n_tok * (a->n_head / a->n_kv);
    const int64_t r = (int64_t)1 << ad_rows_log2(rows);
    const int64_t blocks = (int64_t)a->n_kv * ((rows + r - 1) / r);
    int64_t span = a->n_ctx;
    if (a->swa > 0 && (int64_t)a->swa + a->n_tok - 1 < span)
        span = (int64_t)a->swa + a->n_tok - 1;
    int64_t s = ((int64_t)KV_ATTN_DEC_BLOCKS_PER_SM * n_sm + blocks - 1) / blocks;
    const int64_t by_len = (span + KV_ATTN_DEC_MIN_KEYS - 1) / KV_ATTN_DEC_MIN_KEYS;
    if (s > by_len)
        s = by_len;
    if (s > room)
        s = room;
    if (s > KV_ATTN_DEC_MAX_SPLIT)
        s = KV_ATTN_DEC_MAX_SPLIT;
    return (int32_t)(s < 1 ? 1 : s);
}

cudaError_t kv_attention_decode(const struct kv_attn_args *a, const int32_t *pos_dev,
                                cudaStream_t st)
{
    if (a->hd <= 0 || a->hd > KV_ATTN_MAX_HD || a->hd % 2 || a->n_kv <= 0 ||
        a->n_head % a->n_kv || a->n_split < 1 || a->n_split > 65535 || a->n_tok <= 0 ||
        a->n_tok > KV_ATTN_DEC_MAX_TOK)
        return cudaErrorInvalidValue;
    const bool q8 = a->kq.q != nullptr;
    if (q8 && (a->hd % 32 || !a->kq.d || !a->vq.q || !a->vq.d))
        return cudaErrorInvalidValue;
    const int64_t rows = (int64_t)a->n_tok * (a->n_head / a->n_kv);
    const int rl = ad_rows_log2(rows);
    const int64_t chunks = (rows + (1 << rl) - 1) >> rl;
    const int dc = a->hd <= 64 ? 0 : a->hd <= 128 ? 1 : 2;
    const bool vec = a->hd % 8 == 0 && ((uintptr_t)a->kc | (uintptr_t)a->vc) % 16 == 0;
    const ad_kernel k = ad_kernels[q8][dc][rl];
    dim3 grid((unsigned)a->n_kv, (unsigned)a->n_split, (unsigned)chunks);
    KV_LAUNCH(k, grid, AD_WARPS * 32, 0, st)(*a, pos_dev, vec);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess || a->n_split == 1)
        return e;
    KV_LAUNCH(k_dec_combine, (unsigned)(a->n_tok * a->n_head), 128, 0, st)(*a);
    return cudaGetLastError();
}
