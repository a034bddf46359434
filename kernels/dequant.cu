/* dequant.cu - weights to f16 tiles for the cuBLAS prefill path, and
 * embedding rows to f32.
 *
 * One thread per unit (see wformat.cuh), grid-stride. The f16 output is
 * written 8 halves (16 bytes) at a time for every format whose unit is a
 * multiple of 8, which is all but the scalar float forms. The prefill path
 * dequantises a chunk of rows right before its GEMM, so the tile is fresh in
 * L2 when cuBLAS reads it.
 */
#include "wformat.cuh"

template <int F>
static __global__ void k_dequant_f16(const uint8_t *__restrict__ w, size_t row_bytes, int64_t row0,
                                     int64_t nrows, int64_t nunits, __half *__restrict__ out)
{
    constexpr int UE = kv_fmt<F>::UE;
    int64_t total = nrows * nunits;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / nunits, u = i % nunits;
        float v[UE];
        kv_fmt<F>::decode(w + (row0 + r) * row_bytes, u, v);
        __half *o = out + r * nunits * UE + u * UE;
        if constexpr (UE % 8 == 0) {
#pragma unroll
            for (int j = 0; j < UE; j += 8) {
                __half2 h[4];
#pragma unroll
                for (int k = 0; k < 4; k++)
                    h[k] = __floats2half2_rn(v[j + 2 * k], v[j + 2 * k + 1]);
                *(uint4 *)(o + j) = *(const uint4 *)h;
            }
        } else {
#pragma unroll
            for (int j = 0; j < UE; j++)
                o[j] = __float2half_rn(v[j]);
        }
    }
}

template <int F>
static __global__ void k_get_rows(const uint8_t *__restrict__ w, size_t row_bytes,
                                  const int32_t *__restrict__ ids, int32_t n, int64_t nunits,
                                  float scale, float *__restrict__ out)
{
    constexpr int UE = kv_fmt<F>::UE;
    int64_t total = (int64_t)n * nunits;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / nunits, u = i % nunits;
        float v[UE];
        kv_fmt<F>::decode(w + (int64_t)ids[t] * row_bytes, u, v);
        float *o = out + t * nunits * UE + u * UE;
#pragma unroll
        for (int j = 0; j < UE; j++)
            o[j] = v[j] * scale;
    }
}

static unsigned grid_for(int64_t total, int threads)
{
    int64_t g = (total + threads - 1) / threads;
    /* Enough blocks to fill any current GPU several times over; the kernels
     * are grid-stride so a cap only bounds the launch size. */
    if (g > 65536)
        g = 65536;
    return (unsigned)(g < 1 ? 1 : g);
}

cudaError_t kv_dequant_f16(const struct kv_dmat *w, int64_t row0, int64_t nrows, __half *out,
                           cudaStream_t st)
{
#define DQ_CALL(F)                                                                           \
    do {                                                                                     \
        int64_t nu = w->ncols / kv_fmt<F>::UE;                                               \
        k_dequant_f16<F><<<grid_for(nrows * nu, 256), 256, 0, st>>>(w->d, w->row_bytes, row0, \
                                                                    nrows, nu, out);         \
    } while (0)
    KV_WF_DISPATCH(w->fmt, DQ_CALL)
#undef DQ_CALL
    return cudaGetLastError();
}

cudaError_t kv_get_rows(const struct kv_dmat *w, const int32_t *ids, int32_t n, float scale,
                        float *out, cudaStream_t st)
{
#define GR_CALL(F)                                                                           \
    do {                                                                                     \
        int64_t nu = w->ncols / kv_fmt<F>::UE;                                               \
        k_get_rows<F><<<grid_for((int64_t)n * nu, 256), 256, 0, st>>>(w->d, w->row_bytes,    \
                                                                      ids, n, nu, scale, out); \
    } while (0)
    KV_WF_DISPATCH(w->fmt, GR_CALL)
#undef GR_CALL
    return cudaGetLastError();
}
