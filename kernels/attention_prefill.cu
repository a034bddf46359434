/* attention_prefill.cu - causal (optionally sliding-window) GQA attention
 * for a batch of queries (prefill, n_tok > 1) on tensor cores: the two
 * products go through cuBLAS with bf16 operands and fp32 accumulation, and
 * small kernels here do the masking, the online softmax and the layout.
 *
 * Layout: the cache of a layer is (n_kv, n_ctx, hd) f16 (kv_store.cu), or
 * q8_0 (codes and scales apart, struct kv_q8_cache), which step 1 below
 * dequantises into the same bf16 tiles (k_kv_q8_bf16). The
 * queries of one KV head's group are gathered into one bf16 matrix
 * qb (n_kv, rows, hd) with rows = (token, head of the group), so one GEMM
 * per KV head, batched over the KV heads with strides, scores every query
 * head of the group against the same keys: GQA without copying K or V per
 * query head.
 *
 * Design rules: per query chunk (at most q_chunk tokens) the key range the
 * chunk can see is walked in tiles of at most `tile` keys; per tile:
 *   1. K and V of the tile -> bf16 (kb, vb: n_kv x tile x hd);
 *   2. S = scale * Q K^T for the rows that can see the tile (the causal edge
 *      and the window cut the query range), fp32, (n_kv, rows, tile);
 *   3. k_softmax_tile: per row, the running max m and sum l are updated
 *      with the tile's masked scores, P = exp(s - m) is written as bf16, the
 *      accumulator row is rescaled by exp(m_old - m_new);
 *   4. acc += P V (beta = 1: the GEMM itself adds into the rescaled
 *      accumulator, so there is no per-tile output buffer to merge).
 * k_finish divides by l (with a head's sink logit, gpt-oss, joining l
 * there: kv_attn_sink_inv) and scatters back to (n_tok, n_head, hd). Memory is
 * O(q_chunk x tile) per head, never O(n^2); l sums the rounded P that the
 * PV GEMM reads, so the weights of each output are normalised exactly.
 *
 * Why this version: the first attention kernel (v1) scored keys in f32 on
 * CUDA cores, one warp per query; prefill is a pair of dense products per head and
 * belongs on tensor cores. bf16, not f16, because the operands are
 * activations (NOTES.md: f16's range is too small for some models).
 */
#include <math.h>
#include <stdio.h>

#include "cuda_common.h"

#define AP_WARPS 8 /* rows per block of the row kernels, a warp each */

/* qb[kvh][(t - t0) * group + g][d] = bf16(q[t][kvh * group + g][d]). */
static __global__ void k_q_bf16(const float *__restrict__ q, __nv_bfloat16 *__restrict__ qb,
                                int n_head, int n_kv, int hd, int t0, int cq)
{
    const int group = n_head / n_kv;
    const int64_t total = (int64_t)cq * n_head * hd;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int d = (int)(i % hd);
        const int64_t th = i / hd; /* (t - t0) * n_head + h */
        const int h = (int)(th % n_head), t = (int)(th / n_head);
        const int kvh = h / group, g = h % group;
        qb[(((int64_t)kvh * cq + t) * group + g) * hd + d] =
            __float2bfloat16_rn(q[((int64_t)(t0 + t) * n_head + h) * hd + d]);
    }
}

cudaError_t kv_attn_q_bf16(const float *q, __nv_bfloat16 *qb, int32_t n_head, int32_t n_kv,
                           int32_t hd, int32_t t0, int32_t cq, cudaStream_t st)
{
    KV_LAUNCH(k_q_bf16, kv_grid((int64_t)cq * n_head * hd, 256), 256, 0, st)(q, qb, n_head, n_kv,
                                                                            hd, t0, cq);
    return cudaGetLastError();
}

/* kb[kvh][j][d] = bf16(kc[kvh][k0 + j][d]) for j < nk, and the same for V. */
static __global__ void k_kv_bf16(const __half *__restrict__ kc, const __half *__restrict__ vc,
                                 __nv_bfloat16 *__restrict__ kb, __nv_bfloat16 *__restrict__ vb,
                                 int n_kv, int n_ctx, int hd, int k0, int nk, int tile)
{
    const int64_t total = (int64_t)n_kv * nk * hd;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int d = (int)(i % hd);
        const int j = (int)(i / hd % nk), kvh = (int)(i / hd / nk);
        const int64_t src = ((int64_t)kvh * n_ctx + k0 + j) * hd + d;
        const int64_t dst = ((int64_t)kvh * tile + j) * hd + d;
        kb[dst] = __float2bfloat16_rn(__half2float(kc[src]));
        vb[dst] = __float2bfloat16_rn(__half2float(vc[src]));
    }
}

cudaError_t kv_attn_kv_bf16(const __half *kc, const __half *vc, __nv_bfloat16 *kb,
                            __nv_bfloat16 *vb, int32_t n_kv, int32_t n_ctx, int32_t hd, int32_t k0,
                            int32_t nk, int32_t tile, cudaStream_t st)
{
    KV_LAUNCH(k_kv_bf16, kv_grid((int64_t)n_kv * nk * hd, 256), 256, 0, st)(kc, vc, kb, vb, n_kv,
                                                                           n_ctx, hd, k0, nk,
                                                                           tile);
    return cudaGetLastError();
}

/* k_kv_bf16 from a q8_0 cache: d * q is exact in f32 (an f16 times an
 * int8), so this rounds once, as the f16 path does. */
static __global__ void k_kv_q8_bf16(struct kv_q8_cache kc, struct kv_q8_cache vc,
                                    __nv_bfloat16 *__restrict__ kb,
                                    __nv_bfloat16 *__restrict__ vb, int n_kv, int n_ctx, int hd,
                                    int k0, int nk, int tile)
{
    const int64_t total = (int64_t)n_kv * nk * hd;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int d = (int)(i % hd);
        const int j = (int)(i / hd % nk), kvh = (int)(i / hd / nk);
        const int64_t row = (int64_t)kvh * n_ctx + k0 + j;
        const int64_t src = row * hd + d, sd = row * (hd / 32) + d / 32;
        const int64_t dst = ((int64_t)kvh * tile + j) * hd + d;
        kb[dst] = __float2bfloat16_rn(__half2float(kc.d[sd]) * (float)kc.q[src]);
        vb[dst] = __float2bfloat16_rn(__half2float(vc.d[sd]) * (float)vc.q[src]);
    }
}

cudaError_t kv_attn_kv_q8_bf16(struct kv_q8_cache kc, struct kv_q8_cache vc, __nv_bfloat16 *kb,
                               __nv_bfloat16 *vb, int32_t n_kv, int32_t n_ctx, int32_t hd,
                               int32_t k0, int32_t nk, int32_t tile, cudaStream_t st)
{
    if (hd <= 0 || hd % 32)
        return cudaErrorInvalidValue;
    KV_LAUNCH(k_kv_q8_bf16, kv_grid((int64_t)n_kv * nk * hd, 256), 256, 0, st)(kc, vc, kb, vb,
                                                                               n_kv, n_ctx, hd,
                                                                               k0, nk, tile);
    return cudaGetLastError();
}

/* Every row's state empty: m = -inf, l = 0, acc = 0. */
static __global__ void k_rows_init(float2 *__restrict__ ml, float *__restrict__ acc, int64_t rows,
                                   int hd)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < rows * hd;
         i += (int64_t)gridDim.x * blockDim.x) {
        acc[i] = 0.0f;
        if (i < rows)
            ml[i] = make_float2(-INFINITY, 0.0f);
    }
}

cudaError_t kv_attn_rows_init(float2 *ml, float *acc, int64_t rows, int32_t hd, cudaStream_t st)
{
    KV_LAUNCH(k_rows_init, kv_grid(rows * hd, 256), 256, 0, st)(ml, acc, rows, hd);
    return cudaGetLastError();
}

/* A warp per row (block y = KV head). Key k0 + j is visible to the query at
 * qpos when k0 + j <= qpos and, with a window, qpos - (k0 + j) < swa. */
static __global__ void __launch_bounds__(AP_WARPS * 32) k_softmax_tile(struct kv_attn_tile_args a)
{
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t r = a.r_lo + (int64_t)blockIdx.x * AP_WARPS + warp;
    if (r >= a.r_hi)
        return; /* a whole warp leaves together: no shuffle is left short */
    const int64_t row = (int64_t)blockIdx.y * a.rows + r;
    const int qpos = a.qpos0 + (int)(r / a.group);
    const float *s = a.s + row * a.tile;
    __nv_bfloat16 *p = a.p + row * a.tile;

    float mt = -INFINITY;
    for (int j = lane; j < a.nk; j += 32) {
        const int key = a.k0 + j;
        if (key <= qpos && !(a.swa > 0 && qpos - key >= a.swa))
            mt = fmaxf(mt, s[j]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));

    const float2 st = a.ml[row];
    const float mn = fmaxf(st.x, mt);
    /* exp(m_old - m_new): 0 while the row had nothing (its acc is 0), 1 when
     * this tile shows the row nothing. */
    const float corr = st.x == -INFINITY ? 0.0f : expf(st.x - mn);
    float ps = 0.0f;
    for (int j = lane; j < a.nk; j += 32) {
        const int key = a.k0 + j;
        float e = 0.0f;
        if (mt != -INFINITY && key <= qpos && !(a.swa > 0 && qpos - key >= a.swa))
            e = expf(s[j] - mn);
        const __nv_bfloat16 b = __float2bfloat16_rn(e);
        p[j] = b;
        ps += __bfloat162float(b); /* the rounded weight the PV GEMM reads */
    }
    ps = kv_warp_sum(ps);
    if (corr != 1.0f) {
        float *acc = a.acc + row * a.hd;
        for (int d = lane; d < a.hd; d += 32)
            acc[d] *= corr;
    }
    if (lane == 0)
        a.ml[row] = make_float2(mn, st.y * corr + ps);
}

cudaError_t kv_attn_softmax_tile(const struct kv_attn_tile_args *a, cudaStream_t st)
{
    if (a->r_hi <= a->r_lo)
        return cudaSuccess;
    dim3 grid((unsigned)((a->r_hi - a->r_lo + AP_WARPS - 1) / AP_WARPS), (unsigned)a->n_kv);
    KV_LAUNCH(k_softmax_tile, grid, AP_WARPS * 32, 0, st)(*a);
    return cudaGetLastError();
}

/* out[t0 + t][kvh * group + g][d] = acc[kvh][t * group + g][d] / l, the
 * head's sink (SINKS set) joining l (kv_attn_sink_inv). */
static __global__ void k_finish(const float *__restrict__ acc, const float2 *__restrict__ ml,
                                const float *__restrict__ sinks, float *__restrict__ out,
                                int n_head, int n_kv, int hd, int t0, int cq)
{
    const int group = n_head / n_kv;
    const int64_t total = (int64_t)cq * n_head * hd;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int d = (int)(i % hd);
        const int64_t th = i / hd;
        const int h = (int)(th % n_head), t = (int)(th / n_head);
        const int64_t row = ((int64_t)(h / group) * cq + t) * group + h % group;
        const float2 st = ml[row];
        const float inv = kv_attn_sink_inv(st.x, st.y, sinks, sinks ? sinks[h] : 0.0f);
        out[((int64_t)(t0 + t) * n_head + h) * hd + d] = acc[row * hd + d] * inv;
    }
}

cudaError_t kv_attn_finish(const float *acc, const float2 *ml, const float *sinks, float *out,
                           int32_t n_head, int32_t n_kv, int32_t hd, int32_t t0, int32_t cq,
                           cudaStream_t st)
{
    KV_LAUNCH(k_finish, kv_grid((int64_t)cq * n_head * hd, 256), 256, 0, st)(
        acc, ml, sinks, out, n_head, n_kv, hd, t0, cq);
    return cudaGetLastError();
}

int kv_attention_prefill(const struct kv_attn_prefill_args *a, cublasHandle_t blas,
                         cudaStream_t st, char *err, size_t cap)
{
    if (a->hd <= 0 || a->n_kv <= 0 || a->n_head % a->n_kv || a->n_tok <= 0 || a->q_chunk <= 0 ||
        a->tile <= 0) {
        snprintf(err, cap, "CUDA prefill attention: bad shape (%d tokens, %d/%d heads, hd %d)",
                 a->n_tok, a->n_head, a->n_kv, a->hd);
        return -1;
    }
    const int group = a->n_head / a->n_kv, hd = a->hd, T = a->tile;
    const float one = 1.0f, zero = 0.0f;
    for (int t0 = 0; t0 < a->n_tok; t0 += a->q_chunk) {
        const int cq = a->n_tok - t0 < a->q_chunk ? a->n_tok - t0 : a->q_chunk;
        const int64_t R = (int64_t)cq * group; /* rows per KV head */
        const int qpos0 = a->pos0 + t0;        /* position of the chunk's first query */
        if (CUDA_CHECK(kv_attn_rows_init(a->ml, a->acc, R * a->n_kv, hd, st), err, cap) ||
            CUDA_CHECK(kv_attn_q_bf16(a->q, a->qb, a->n_head, a->n_kv, hd, t0, cq, st), err, cap))
            return -1;
        /* The keys some query of the chunk sees. */
        int klo = a->swa > 0 ? qpos0 - a->swa + 1 : 0;
        klo = klo < 0 ? 0 : klo;
        const int khi = qpos0 + cq; /* exclusive */
        for (int k0 = klo; k0 < khi; k0 += T) {
            const int nk = khi - k0 < T ? khi - k0 : T;
            /* Queries (chunk-relative) that see a key of [k0, k0 + nk): from
             * the causal edge, rounded down to 8 tokens so the GEMM operands
             * stay 16-byte aligned (the extra rows are masked), to the
             * window's far edge. */
            int ta = k0 - qpos0;
            ta = ta < 0 ? 0 : ta / 8 * 8;
            int tb = cq;
            if (a->swa > 0) {
                int far = k0 + nk - 1 + a->swa - qpos0; /* last query that sees key k0+nk-1 */
                tb = far + 1 < cq ? far + 1 : cq;
            }
            if (ta >= tb)
                continue;
            const int nr = (tb - ta) * group;
            const int64_t r_lo = (int64_t)ta * group;
            /* the tile's K and V as bf16: a q8_0 cache is dequantised into
             * the same scratch, so the GEMMs never see the cache type */
            if (a->kq.q ? CUDA_CHECK(kv_attn_kv_q8_bf16(a->kq, a->vq, a->kb, a->vb, a->n_kv,
                                                        a->n_ctx, hd, k0, nk, T, st),
                                     err, cap)
                        : CUDA_CHECK(kv_attn_kv_bf16(a->kc, a->vc, a->kb, a->vb, a->n_kv,
                                                     a->n_ctx, hd, k0, nk, T, st),
                                     err, cap))
                return -1;
            /* Column-major: S (nk x nr, ld T) = Kt^T (nk x hd) Qt (hd x nr). */
            if (CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                                 blas, CUBLAS_OP_T, CUBLAS_OP_N, nk, nr, hd, &a->scale, a->kb,
                                 CUDA_R_16BF, hd, (long long)T * hd, a->qb + r_lo * hd,
                                 CUDA_R_16BF, hd, (long long)R * hd, &zero, a->s + r_lo * T,
                                 CUDA_R_32F, T, (long long)R * T, a->n_kv, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT),
                             err, cap))
                return -1;
            struct kv_attn_tile_args tl;
            tl.s = a->s;
            tl.p = a->p;
            tl.ml = a->ml;
            tl.acc = a->acc;
            tl.rows = R;
            tl.r_lo = r_lo;
            tl.r_hi = (int64_t)tb * group;
            tl.n_kv = a->n_kv;
            tl.group = group;
            tl.hd = hd;
            tl.tile = T;
            tl.nk = nk;
            tl.k0 = k0;
            tl.qpos0 = qpos0;
            tl.swa = a->swa;
            if (CUDA_CHECK(kv_attn_softmax_tile(&tl, st), err, cap))
                return -1;
            /* acc (hd x nr, ld hd) += Vt (hd x nk) P (nk x nr, ld T). */
            if (CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                                 blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, nr, nk, &one, a->vb,
                                 CUDA_R_16BF, hd, (long long)T * hd, a->p + r_lo * T, CUDA_R_16BF,
                                 T, (long long)R * T, &one, a->acc + r_lo * hd, CUDA_R_32F, hd,
                                 (long long)R * hd, a->n_kv, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT),
                             err, cap))
                return -1;
        }
        if (CUDA_CHECK(kv_attn_finish(a->acc, a->ml, a->sinks, a->out, a->n_head, a->n_kv, hd,
                                      t0, cq, st),
                       err, cap))
            return -1;
    }
    return 0;
}
