/* get_rows.cu - the embedding lookup: rows IDS of the token-embedding
 * matrix, in any weight format, to f32, times the model's embedding scale
 * (gemma3's sqrt(n_embd); 1 elsewhere).
 *
 * Design rules: one thread per unit (see wformat.cuh), grid-stride; the ids
 * are on the device and already checked against the vocabulary by
 * cuda_forward.
 *
 * Why this version: the table stays in its quantised format, in the
 * upload's repacked layout like every matrix (a Q4 table is a
 * sixth of its f32 size) and a lookup reads only the rows it needs, so an
 * f32 copy would cost memory and gain nothing.
 */
#include "wformat.cuh"

template <int F>
static __global__ void k_get_rows(const uint8_t *__restrict__ w, size_t row_bytes,
                                  const int32_t *__restrict__ ids, int32_t n, int64_t nunits,
                                  float scale, float *__restrict__ out)
{
    constexpr int UE = kv_fmt<F>::UE;
    const int64_t nb = nunits * UE / kv_fmt<F>::COLS; /* blocks a row, for the planes */
    int64_t total = (int64_t)n * nunits;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / nunits, u = i % nunits;
        float v[UE];
        kv_fmt<F>::decode(w + (int64_t)ids[t] * row_bytes, nb, u, v);
        float *o = out + t * nunits * UE + u * UE;
#pragma unroll
        for (int j = 0; j < UE; j++)
            o[j] = v[j] * scale;
    }
}

cudaError_t kv_get_rows(const struct kv_dmat *w, const int32_t *ids, int32_t n, float scale,
                        float *out, cudaStream_t st)
{
    return kv_wf_dispatch(w->fmt, [&](auto f) {
        constexpr int F = decltype(f)::value;
        int64_t nu = w->ncols / kv_fmt<F>::UE;
        KV_LAUNCH(k_get_rows<F>, kv_grid((int64_t)n * nu, 256), 256, 0, st)(
            w->d, w->row_bytes, ids, n, nu, scale, out);
    });
}
