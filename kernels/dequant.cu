/* dequant.cu - rows of a weight matrix to a bf16 tile, for the cuBLAS
 * prefill path (proj in backend_cuda.cu).
 *
 * Design rules: one thread per unit (see wformat.cuh), grid-stride. The bf16
 * output is written 8 values (16 bytes) at a time for every format whose
 * unit is a multiple of 8, which is all but the scalar float forms. bf16
 * because the activations it is multiplied with are bf16 (convert.cu) and
 * cuBLAS wants both operands in one type; F16 weights come here too for
 * that reason (only BF16 weights skip this step).
 *
 * Why this version: the prefill path dequantises a chunk of rows right
 * before its GEMM, so the tile is fresh in L2 when cuBLAS reads it, and one
 * GEMM serves every weight format (v1). A GEMM that dequantises into
 * tensor-core fragments itself is the next step (NOTES.md).
 */
#include "wformat.cuh"

template <int F>
static __global__ void k_dequant_bf16(const uint8_t *__restrict__ w, size_t row_bytes,
                                      int64_t row0, int64_t nrows, int64_t nunits,
                                      __nv_bfloat16 *__restrict__ out)
{
    constexpr int UE = kv_fmt<F>::UE;
    const int64_t nb = nunits * UE / kv_fmt<F>::COLS; /* blocks a row, for the planes */
    int64_t total = nrows * nunits;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / nunits, u = i % nunits;
        float v[UE];
        kv_fmt<F>::decode(w + (row0 + r) * row_bytes, nb, u, v);
        __nv_bfloat16 *o = out + r * nunits * UE + u * UE;
        if constexpr (UE % 8 == 0) {
#pragma unroll
            for (int j = 0; j < UE; j += 8) {
                alignas(16) __nv_bfloat16 h[8];
#pragma unroll
                for (int k = 0; k < 8; k++)
                    h[k] = __float2bfloat16_rn(v[j + k]);
                *(uint4 *)(o + j) = *(const uint4 *)h;
            }
        } else {
#pragma unroll
            for (int j = 0; j < UE; j++)
                o[j] = __float2bfloat16_rn(v[j]);
        }
    }
}

cudaError_t kv_dequant_bf16(const struct kv_dmat *w, int64_t row0, int64_t nrows,
                            __nv_bfloat16 *out, cudaStream_t st)
{
    return kv_wf_dispatch(w->fmt, [&](auto f) {
        constexpr int F = decltype(f)::value;
        int64_t nu = w->ncols / kv_fmt<F>::UE;
        KV_LAUNCH(k_dequant_bf16<F>, kv_grid(nrows * nu, 256), 256, 0, st)(w->d, w->row_bytes,
                                                                           row0, nrows, nu, out);
    });
}
