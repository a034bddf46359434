/* matvec.cu - y = W x for one token (decode), W in any supported format.
 *
 * Design (v1): one warp per output row, 4 rows per 128-thread block. Lane i
 * decodes units i, i+32, ... of the row in registers and multiplies them with
 * x (read as float4 through the read-only cache; x is small and stays in
 * L1/L2), then the warp reduces with shuffles. Consecutive lanes read
 * consecutive blocks, so a warp's loads cover its row's bytes contiguously and
 * each weight byte is fetched from DRAM once. Bias and a residual add are
 * fused into the store, which saves a launch and a pass over y per
 * projection.
 *
 * Why this version: correctness first. Known limits (see NOTES.md): short
 * rows (n_embd 576 = 18 Q4 blocks) leave lanes idle; blocks that are only
 * 2-byte aligned use 2-byte loads. Both are next steps, measured on a GPU.
 */
#include "wformat.cuh"

#define MV_WARPS 4

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    k_matvec(const uint8_t *__restrict__ w, size_t row_bytes, int64_t nrows, int64_t nunits,
             const float *__restrict__ x, const float *bias, const float *add, float *y)
{
    constexpr int UE = kv_fmt<F>::UE;
    int64_t r = (int64_t)blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= nrows)
        return;
    const uint8_t *row = w + r * row_bytes;
    float acc = 0.0f;
    for (int64_t u = lane; u < nunits; u += 32) {
        float v[UE];
        kv_fmt<F>::decode(row, u, v);
        const float *xu = x + u * UE;
        if constexpr (UE % 4 == 0) {
#pragma unroll
            for (int i = 0; i < UE; i += 4) {
                float4 xv = __ldg((const float4 *)(xu + i));
                acc += v[i] * xv.x + v[i + 1] * xv.y + v[i + 2] * xv.z + v[i + 3] * xv.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < UE; i++)
                acc += v[i] * __ldg(xu + i);
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) {
        if (bias)
            acc += bias[r];
        if (add)
            acc += add[r];
        y[r] = acc;
    }
}

cudaError_t kv_matvec(const struct kv_dmat *w, const float *x, const float *bias,
                      const float *add, float *y, cudaStream_t st)
{
    unsigned grid = (unsigned)((w->nrows + MV_WARPS - 1) / MV_WARPS);
    return kv_wf_dispatch(w->fmt, [&](auto f) {
        constexpr int F = decltype(f)::value;
        KV_LAUNCH(k_matvec<F>, grid, MV_WARPS * 32, 0, st)(w->d, w->row_bytes, w->nrows,
                                                           w->ncols / kv_fmt<F>::UE, x, bias,
                                                           add, y);
    });
}
