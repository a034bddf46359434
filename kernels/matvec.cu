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
 * v1 (k_matvec) now serves only the scalar float forms (rows not a
 * multiple of 8); v2 (k_matvec_sx, below) the vector float ones and v3
 * (k_matvec_q) the quantised ones in their repacked layout, measured with
 * scripts/kernel-report (NOTES.md).
 *
 * Fusions for the decode step (v4): an RMSNorm of x can be the staging
 * prologue (mv_rms_inv: the sum of squares over x, a block reduction, then
 * x * inv * norm_weight is what gets staged), so the norm's launch and the
 * xn round trip go; k_mvglu_* compute 2 gate rows and the 2 up rows of the
 * same output indices in one warp and store act(g) * u, so the g/u buffers
 * and the GLU launch go too; k_mv3_* run Q, K and V as one grid. All keep
 * the steady loops below (4 weight streams a warp); the prologue adds one
 * read of x (n_embd floats, from L1/L2) and a barrier per block.
 *
 * v5 (the quantised loops, NOTES.md matvec v5): x is staged already scaled
 * for each format's denormal decode, each row keeps its plane pointers
 * across passes (kv_cur) and the K-quant scales unpack without a branch:
 * the merged v4 kernels had spilled loop invariants at ~128 registers, and
 * every format is now within its scripts/kernel-report limit.
 *
 * The table formats (IQ4_NL, IQ4_XS, MXFP4: a code indexes 16 levels) get
 * their table in registers, written to shared memory with the staging
 * scales and read back once a chunk (kv_lut_regs, through kv_fdot): as
 * constants, ptxas copied a word into a register before every lookup.
 *
 * Why v1: correctness first. Known limits (see NOTES.md): short
 * rows (n_embd 576 = 18 Q4 blocks) leave lanes idle; blocks that are only
 * 2-byte aligned use 2-byte loads. Both are next steps, measured on a GPU.
 */
#include "wformat.cuh"

#define MV_WARPS 4

/* The RMSNorm scale of X (N floats), rsqrt(mean(x^2) + EPS), the same
 * value in every thread: each warp's partial sum is written once and every
 * thread adds the MV_WARPS of them in one fixed order. Every thread of the
 * block must call it (a barrier). The sum's order is not k_rmsnorm's, so
 * the scale may differ from it by an ulp or so: within the 1e-5 matvec
 * tolerance, not bit-equal. */
static __device__ float mv_rms_inv(const float *__restrict__ x, int64_t n, float eps)
{
    KV_SHARED(float, part, [MV_WARPS]);
    float ss = 0.0f;
    /* Not unrolled: a few passes per block, and kept smaller than the dot
     * loop so scripts/kernel-report still counts that one. */
    if ((n & 3) == 0 && ((uintptr_t)x & 15) == 0) {
#pragma unroll 1
        for (int64_t i = threadIdx.x; i < n / 4; i += MV_WARPS * 32) {
            float4 v = __ldg((const float4 *)x + i);
            ss += (v.x * v.x + v.y * v.y) + (v.z * v.z + v.w * v.w);
        }
    } else {
#pragma unroll 1
        for (int64_t i = threadIdx.x; i < n; i += MV_WARPS * 32) {
            float v = __ldg(x + i);
            ss += v * v;
        }
    }
    ss = kv_warp_sum(ss);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = ss;
    __syncthreads();
    float t = 0.0f;
#pragma unroll
    for (int k = 0; k < MV_WARPS; k++)
        t += part[k];
    return rsqrtf(t / (float)n + eps);
}

/* Float4 I of x, normed when NW is set: x * inv * nw, k_rmsnorm's
 * expression, so the staged value is what the norm kernel would write
 * given the same scale. */
static __device__ __forceinline__ float4 mv_x4(const float *__restrict__ x,
                                               const float *__restrict__ nw, float inv, int64_t i)
{
    float4 v = __ldg((const float4 *)x + i);
    if (nw) {
        float4 g = __ldg((const float4 *)nw + i);
        v.x = v.x * inv * g.x, v.y = v.y * inv * g.y;
        v.z = v.z * inv * g.z, v.w = v.w * inv * g.w;
    }
    return v;
}

/* v1's body; NORM (a template parameter, so the plain kernel's loop has no
 * test in it) norms x by NW on the fly. */
template <int F, bool NORM>
static __device__ __forceinline__ void mv_v1(const uint8_t *__restrict__ w, size_t row_bytes,
                                             int64_t nrows, int64_t nunits,
                                             const float *__restrict__ x,
                                             const float *__restrict__ nw, float eps,
                                             const float *bias, const float *add, float *y,
                                             int64_t blk)
{
    constexpr int UE = kv_fmt<F>::UE;
    int64_t r = blk * MV_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    /* Before any thread leaves: the norm's reduction has a barrier. */
    const float inv = NORM ? mv_rms_inv(x, nunits * UE, eps) : 1.0f;
    if (r >= nrows)
        return;
    const uint8_t *row = w + r * row_bytes;
    float acc = 0.0f;
#pragma unroll 1
    for (int64_t u = lane; u < nunits; u += 32) {
        float v[UE];
        kv_fmt<F>::decode(row, 0, u, v);
        const float *xu = x + u * UE;
        if constexpr (UE % 4 == 0) {
#pragma unroll
            for (int i = 0; i < UE; i += 4) {
                float4 xv = mv_x4(x, NORM ? nw : nullptr, inv, (u * UE + i) / 4);
                acc += v[i] * xv.x + v[i + 1] * xv.y + v[i + 2] * xv.z + v[i + 3] * xv.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < UE; i++) {
                float xv = __ldg(xu + i);
                if constexpr (NORM)
                    xv = xv * inv * __ldg(nw + u * UE + i);
                acc += v[i] * xv;
            }
        }
    }
    acc = kv_warp_sum(acc);
    if (lane == 0) {
        if (bias)
            acc += bias[r];
        if (add)
            acc += add[r];
        y[r] = acc;
    }
}

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    k_matvec(const uint8_t *__restrict__ w, size_t row_bytes, int64_t nrows, int64_t nunits,
             const float *__restrict__ x, const float *bias, const float *add, float *y)
{
    mv_v1<F, false>(w, row_bytes, nrows, nunits, x, nullptr, 0.0f, bias, add, y, blockIdx.x);
}

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    k_mvnorm_s(const uint8_t *__restrict__ w, size_t row_bytes, int64_t nrows, int64_t nunits,
               const float *__restrict__ x, const float *__restrict__ nw, float eps,
               const float *bias, const float *add, float *y)
{
    mv_v1<F, true>(w, row_bytes, nrows, nunits, x, nw, eps, bias, add, y, blockIdx.x);
}

/* ---- v2: the 16-byte float formats (F32, F16, BF16), x staged in shared ----
 *
 * Each warp takes MV_ROWS (4) rows, which share the x reads; a block stages
 * MV_CHUNK floats of x at a time in shared memory (read once per block from L2, not once per warp),
 * as float4s permuted so that each of the two float4 reads of a lane's 8
 * elements is 16 consecutive bytes per lane across the warp: float4 h
 * (0, 1) of unit 32 s + l (lane l of span s) sits at 64 s + 32 h + l, so
 * every LDS.128 of a quarter-warp hits 8 distinct 16-byte bank groups (no
 * conflicts); x must be 16-byte aligned, as the v1 float4 reads needed. The
 * steady loop reads one 16-byte weight slice per row per pass (consecutive
 * lanes, consecutive slices) and is kept to one iteration per pass
 * (#pragma unroll 1) so scripts/kernel-report can count it. Every warp of
 * the block reaches the barriers: rows past the end are clamped for the
 * loads and not stored. */
#define MV_ROWS 4
#define MV_CHUNK 2048 /* floats of x staged at a time: 8 KiB, a multiple of 256 */

template <int F> constexpr bool kv_mv_staged = false;
template <> constexpr bool kv_mv_staged<KV_WF_F32> = true;
template <> constexpr bool kv_mv_staged<KV_WF_F16> = true;
template <> constexpr bool kv_mv_staged<KV_WF_BF16> = true;

/* The warp's MV_ROWS sums reduced and stored by lane 0: rows r0.. of one
 * matrix, Y[r] = sum (+ BIAS[r]) (+ ADD[r]); or with two matrices (NM = 2,
 * the GLU) MV_ROWS / 2 rows of each, Y[r] = act(gate sum) * up sum, glu.cu's
 * expression (kv_glu_act), so the fused kernel writes exactly what the gate
 * and up matvecs and kv_glu would. */
template <int NM>
static __device__ __forceinline__ void mv_store(float (&acc)[MV_ROWS], int lane, int64_t r0,
                                                int64_t nrows, const float *bias,
                                                const float *add, bool gelu, float *y)
{
    constexpr int RW = MV_ROWS / NM;
#pragma unroll
    for (int j = 0; j < MV_ROWS; j++)
        acc[j] = kv_warp_sum(acc[j]);
#pragma unroll
    for (int j = 0; j < RW; j++) {
        int64_t r = r0 + j;
        if (lane == 0 && r < nrows) {
            float s = acc[j];
            if constexpr (NM == 2) {
                s = kv_glu_act(s, gelu) * acc[RW + j];
            } else {
                if (bias)
                    s += bias[r];
                if (add)
                    s += add[r];
            }
            y[r] = s;
        }
    }
}

/* One warp's rows of k_matvec_sx (NM = 1: MV_ROWS rows of W) or k_mvglu_sx
 * (NM = 2: MV_ROWS / 2 rows of W and the same of WU, one format and shape:
 * gate and up). Either way a pass reads MV_ROWS weight streams against one
 * staged x, so the GLU form has the matvec's loop and registers. X normed
 * by NW first when NW is set. */
template <int F, int NM>
static __device__ __forceinline__ void mv_sx(const uint8_t *__restrict__ w,
                                             const uint8_t *__restrict__ wu, size_t row_bytes,
                                             int64_t nrows, int64_t ncols,
                                             const float *__restrict__ x,
                                             const float *__restrict__ nw, float eps,
                                             const float *bias, const float *add, bool gelu,
                                             float *y, int64_t blk)
{
    static_assert(kv_fmt<F>::UE == 8, "the staged matvec reads 8-element units");
    constexpr int R = MV_ROWS, RW = MV_ROWS / NM;
    KV_SHARED(float4, xs, [MV_CHUNK / 4]);
    const int lane = threadIdx.x & 31;
    const int64_t r0 = (blk * MV_WARPS + (threadIdx.x >> 5)) * RW;
    const float inv = nw ? mv_rms_inv(x, ncols, eps) : 1.0f;
    /* Row r0 + j (clamped) starts at w + r0c + j * rstep. */
    const int64_t r0c = r0 < nrows ? r0 : nrows - 1;
    const uint8_t *row0 = w + r0c * row_bytes;
    const uint8_t *row0u = NM == 2 ? wu + r0c * row_bytes : row0;
    float acc[R];
#pragma unroll
    for (int j = 0; j < R; j++)
        acc[j] = 0.0f;
    for (int64_t c0 = 0; c0 < ncols; c0 += MV_CHUNK) {
        int n = ncols - c0 < MV_CHUNK ? (int)(ncols - c0) : MV_CHUNK;
        __syncthreads(); /* the previous chunk is no longer read */
        for (int i = threadIdx.x; i < n / 4; i += MV_WARPS * 32) {
            int u = i >> 1, h = i & 1;
            xs[(u >> 5) * 64 + h * 32 + (u & 31)] = mv_x4(x, nw, inv, c0 / 4 + i);
        }
        __syncthreads();
        const int nu = n >> 3;
        /* Pointers advance with the lane's unit, so a pass costs no address
         * arithmetic beyond the increments. */
        const uint8_t *rp[R];
#pragma unroll
        for (int j = 0; j < R; j++)
            rp[j] = (j < RW ? row0 : row0u) +
                    (r0c + j % RW < nrows ? j % RW : nrows - 1 - r0c) * row_bytes +
                    (c0 / 8 + lane) * (int64_t)kv_fmt<F>::UE_BYTES;
        int xi = lane;
#pragma unroll 1
        for (int u = lane; u < nu; u += 32, xi += 64) {
            float4 a = xs[xi], b = xs[xi + 32];
            const float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
            for (int j = 0; j < R; j++) {
                float v[8];
                kv_fmt<F>::decode(rp[j], 0, 0, v);
                rp[j] += 32 * kv_fmt<F>::UE_BYTES;
#pragma unroll
                for (int k = 0; k < 8; k++)
                    acc[j] = fmaf(v[k], xv[k], acc[j]);
            }
        }
    }
    mv_store<NM>(acc, lane, r0, nrows, bias, add, gelu, y);
}

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    k_matvec_sx(const uint8_t *__restrict__ w, size_t row_bytes, int64_t nrows, int64_t ncols,
                const float *__restrict__ x, const float *__restrict__ nw, float eps,
                const float *bias, const float *add, float *y)
{
    mv_sx<F, 1>(w, nullptr, row_bytes, nrows, ncols, x, nw, eps, bias, add, false, y, blockIdx.x);
}

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    k_mvglu_sx(const uint8_t *__restrict__ wg, const uint8_t *__restrict__ wu, size_t row_bytes,
               int64_t nrows, int64_t ncols, const float *__restrict__ x,
               const float *__restrict__ nw, float eps, bool gelu, float *y)
{
    mv_sx<F, 2>(wg, wu, row_bytes, nrows, ncols, x, nw, eps, nullptr, nullptr, gelu, y,
                blockIdx.x);
}

/* ---- v3: the quantised formats, in the repacked layout (wformat.cuh) ----
 *
 * The shape of v2: MV_ROWS (4) rows a warp sharing x, x staged MV_CHUNK
 * floats at a time in shared memory, permuted so a lane's UE floats are
 * UE/4 LDS.128 of 16 consecutive bytes across the warp (float4 i of unit
 * 32 s + l at (UE/4) 32 s + 32 i + l); beside it, for the formats that
 * factor a min or offset out (kv_fmt<F>::XSUM), the sum of every 32 x,
 * computed once per block and shared by its 16 rows (of the normed x when
 * the norm is fused: the sum must be of what is staged). A pass of the
 * steady loop is one unit of each row: lane l reads unit 32 p + l, so a
 * warp's quant loads are 16-byte slices of one contiguous plane, and the
 * scales come from their own plane, also contiguous across the warp. The
 * GLU form (NM = 2) takes 2 gate and 2 up rows a warp: the same 4 weight
 * streams a pass, so the same loop and registers (8 streams, 4 of each,
 * took up to 168 registers and spilled in Q5_1). */
template <int F, int NM>
static __device__ __forceinline__ void mv_q(const uint8_t *__restrict__ w,
                                            const uint8_t *__restrict__ wu, size_t row_bytes,
                                            int64_t nrows, int64_t ncols,
                                            const float *__restrict__ x,
                                            const float *__restrict__ nw, float eps,
                                            const float *bias, const float *add, bool gelu,
                                            float *y, int64_t blk)
{
    using T = kv_fmt<F>;
    constexpr int UE = T::UE, XG = T::XG, NG = UE / XG, R = MV_ROWS, RW = MV_ROWS / NM;
    static_assert(MV_CHUNK % (32 * UE) == 0, "a chunk is whole warp passes");
    static_assert((MV_WARPS * 32) % (UE / 4) == 0, "a thread stages one float4 of every unit");
    KV_SHARED(float4, xs, [MV_CHUNK / 4]);
    KV_SHARED(float, xsum, [MV_CHUNK / XG]);
    KV_SHARED(float4, xsc, [UE / 4]);
    KV_SHARED(uint32_t, luts, [kv_tabled<F>::value ? 5 : 1]);
    const int lane = threadIdx.x & 31;
    const int64_t nb = ncols / T::COLS;
    const int64_t r0 = (blk * MV_WARPS + (threadIdx.x >> 5)) * RW;
    const int64_t r0c = r0 < nrows ? r0 : nrows - 1;
    const float inv = nw ? mv_rms_inv(x, ncols, eps) : 1.0f;
    /* Each row's plane pointers at the lane's first unit, advanced a pass
     * at a time (kv_cur); UL, the unit's place in its block, is the
     * lane's for the whole row. */
    kv_cur<F> cur[R];
#pragma unroll
    for (int j = 0; j < R; j++) {
        const int64_t r = r0c + j % RW;
        cur[j].init((j < RW ? w : wu) + (r < nrows ? r : nrows - 1) * (int64_t)row_bytes, nb,
                    lane);
    }
    const int ul = lane % kv_cur<F>::UPB;
    /* The staging scale of each element of a unit, 2^(KV_DN_S - xbit(e))
     * (wformat.cuh: the denormal decode), so the dot loop multiplies no x;
     * exact, a power of two. Written here, read after the chunk loop's
     * first barrier. A thread stages the same float4 of every unit. */
    if constexpr (kv_xscaled<F>::value) {
        if (threadIdx.x < UE / 4) {
            const int e = 4 * threadIdx.x;
            xsc[threadIdx.x] = make_float4(kv_pow2(KV_DN_S - T::xbit(e)),
                                           kv_pow2(KV_DN_S - T::xbit(e + 1)),
                                           kv_pow2(KV_DN_S - T::xbit(e + 2)),
                                           kv_pow2(KV_DN_S - T::xbit(e + 3)));
        }
    }
    /* The table formats' words, read back into registers after a barrier
     * (wformat.cuh, kv_lut_regs: loaded, ptxas keeps them in registers). */
    if constexpr (kv_tabled<F>::value)
        if (threadIdx.x < 5)
            luts[threadIdx.x] = T::lut(threadIdx.x);
    float acc[R];
#pragma unroll
    for (int j = 0; j < R; j++)
        acc[j] = 0.0f;
    for (int64_t c0 = 0; c0 < ncols; c0 += MV_CHUNK) {
        int n = ncols - c0 < MV_CHUNK ? (int)(ncols - c0) : MV_CHUNK;
        const int nu = n / UE;
        __syncthreads(); /* the previous chunk is no longer read */
        /* Not unrolled: unrolled, its shared-memory addresses were hoisted
         * out of the chunk loop and spilled (k_matvec_q<Q4_K>). */
#pragma unroll 1
        for (int i = threadIdx.x; i < n / 4; i += MV_WARPS * 32) {
            int u = i / (UE / 4), k = i % (UE / 4);
            float4 v = mv_x4(x, nw, inv, c0 / 4 + i);
            if constexpr (kv_xscaled<F>::value) {
                const float4 c = xsc[k];
                v.x *= c.x, v.y *= c.y, v.z *= c.z, v.w *= c.w;
            }
            xs[(u >> 5) * (UE / 4) * 32 + k * 32 + (u & 31)] = v;
        }
        if constexpr (T::XSUM) {
            /* Of x as the norm leaves it, not scaled. */
            for (int g = threadIdx.x; g < n / XG; g += MV_WARPS * 32) {
                float s = 0.0f;
#pragma unroll
                for (int k = 0; k < XG / 4; k++) {
                    float4 v = mv_x4(x, nw, inv, c0 / 4 + XG / 4 * g + k);
                    s += (v.x + v.y) + (v.z + v.w);
                }
                xsum[g] = s;
            }
        }
        __syncthreads();
        kv_lut_regs lr{};
        if constexpr (kv_tabled<F>::value)
            lr = {{luts[0], luts[1], luts[2], luts[3]}, luts[4]};
#pragma unroll 1
        for (int u = lane; u < nu; u += 32) {
            float xv[UE], sv[NG];
            const int xi = (u >> 5) * (UE / 4) * 32 + (u & 31);
#pragma unroll
            for (int k = 0; k < UE / 4; k++) {
                float4 v = xs[xi + 32 * k];
                xv[4 * k] = v.x, xv[4 * k + 1] = v.y, xv[4 * k + 2] = v.z, xv[4 * k + 3] = v.w;
            }
#pragma unroll
            for (int g = 0; g < NG; g++)
                sv[g] = T::XSUM ? xsum[u * NG + g] : 0.0f;
#pragma unroll
            for (int j = 0; j < R; j++) {
                acc[j] += kv_fdot<F>(cur[j].p, ul, xv, sv, lr);
                cur[j].next();
            }
        }
    }
    mv_store<NM>(acc, lane, r0, nrows, bias, add, gelu, y);
}

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    k_matvec_q(const uint8_t *__restrict__ w, size_t row_bytes, int64_t nrows, int64_t ncols,
               const float *__restrict__ x, const float *__restrict__ nw, float eps,
               const float *bias, const float *add, float *y)
{
    mv_q<F, 1>(w, nullptr, row_bytes, nrows, ncols, x, nw, eps, bias, add, false, y, blockIdx.x);
}

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    k_mvglu_q(const uint8_t *__restrict__ wg, const uint8_t *__restrict__ wu, size_t row_bytes,
              int64_t nrows, int64_t ncols, const float *__restrict__ x,
              const float *__restrict__ nw, float eps, bool gelu, float *y)
{
    mv_q<F, 2>(wg, wu, row_bytes, nrows, ncols, x, nw, eps, nullptr, nullptr, gelu, y,
               blockIdx.x);
}

/* ---- three matrices of one format in one launch (Q, K and V) ----
 *
 * Blocks 0..blk1-1 take matrix 0, blk1..blk2-1 matrix 1, the rest matrix 2,
 * each with k_matvec_q's (or k_matvec_sx's) body, so a block's work and
 * results are those of the matvec of its matrix, bit for bit. The choice
 * is per block, so every barrier is still reached by the whole block. The
 * pointers are picked with compares, not by indexing an array in the
 * parameters (which ptxas would copy to local memory). */
struct mv3_args {
    const uint8_t *w0, *w1, *w2;
    const float *b0, *b1, *b2; /* biases, or NULL */
    float *y0, *y1, *y2;
    int64_t n0, n1, n2;        /* rows of each */
    int64_t blk1, blk2;        /* first block of matrices 1 and 2 */
    size_t row_bytes;          /* one format and width: one row size */
    int64_t ncols;
    const float *x, *nw;
    float eps;
};

struct mv3_pick {
    const uint8_t *w;
    const float *bias;
    float *y;
    int64_t nrows, blk;
    __device__ __forceinline__ explicit mv3_pick(const mv3_args &a)
    {
        const int64_t b = blockIdx.x;
        const int m = b >= a.blk2 ? 2 : b >= a.blk1 ? 1 : 0;
        w = m == 2 ? a.w2 : m == 1 ? a.w1 : a.w0;
        bias = m == 2 ? a.b2 : m == 1 ? a.b1 : a.b0;
        y = m == 2 ? a.y2 : m == 1 ? a.y1 : a.y0;
        nrows = m == 2 ? a.n2 : m == 1 ? a.n1 : a.n0;
        blk = b - (m == 2 ? a.blk2 : m == 1 ? a.blk1 : 0);
    }
};

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32) k_mv3_q(const mv3_args a)
{
    const mv3_pick p(a);
    mv_q<F, 1>(p.w, nullptr, a.row_bytes, p.nrows, a.ncols, a.x, a.nw, a.eps, p.bias, nullptr,
               false, p.y, p.blk);
}

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32) k_mv3_sx(const mv3_args a)
{
    const mv3_pick p(a);
    mv_sx<F, 1>(p.w, nullptr, a.row_bytes, p.nrows, a.ncols, a.x, a.nw, a.eps, p.bias, nullptr,
                false, p.y, p.blk);
}

cudaError_t kv_matvec_norm(const struct kv_dmat *w, const float *x, const float *norm, float eps,
                           const float *bias, const float *add, float *y, cudaStream_t st)
{
    return kv_wf_dispatch(w->fmt, [&](auto f) {
        constexpr int F = decltype(f)::value;
        if constexpr (kv_repacked<F>::value) {
            unsigned grid = (unsigned)((w->nrows + MV_WARPS * MV_ROWS - 1) / (MV_WARPS * MV_ROWS));
            KV_LAUNCH(k_matvec_q<F>, grid, MV_WARPS * 32, 0, st)(w->d, w->row_bytes, w->nrows,
                                                                 w->ncols, x, norm, eps, bias,
                                                                 add, y);
        } else if constexpr (kv_mv_staged<F>) {
            unsigned grid = (unsigned)((w->nrows + MV_WARPS * MV_ROWS - 1) / (MV_WARPS * MV_ROWS));
            KV_LAUNCH(k_matvec_sx<F>, grid, MV_WARPS * 32, 0, st)(w->d, w->row_bytes, w->nrows,
                                                                  w->ncols, x, norm, eps, bias,
                                                                  add, y);
        } else {
            unsigned grid = (unsigned)((w->nrows + MV_WARPS - 1) / MV_WARPS);
            if (norm)
                KV_LAUNCH(k_mvnorm_s<F>, grid, MV_WARPS * 32, 0, st)(
                    w->d, w->row_bytes, w->nrows, w->ncols / kv_fmt<F>::UE, x, norm, eps, bias,
                    add, y);
            else
                KV_LAUNCH(k_matvec<F>, grid, MV_WARPS * 32, 0, st)(w->d, w->row_bytes, w->nrows,
                                                                   w->ncols / kv_fmt<F>::UE, x,
                                                                   bias, add, y);
        }
    });
}

cudaError_t kv_matvec(const struct kv_dmat *w, const float *x, const float *bias,
                      const float *add, float *y, cudaStream_t st)
{
    return kv_matvec_norm(w, x, nullptr, 0.0f, bias, add, y, st);
}

/* The staged and repacked kernels have a GLU form; the scalar float forms
 * (rows not a multiple of 8) do not, and two matrices of different formats
 * cannot share one kernel instance (Q4_K_M files mix Q4_K and Q6_K). */
static const bool k_mv_glu_form[] = {
#define MV_GLU_ROW(n) kv_repacked<KV_WF_##n>::value || kv_mv_staged<KV_WF_##n>,
    KV_WF_LIST(MV_GLU_ROW)
#undef MV_GLU_ROW
};

bool kv_matvec_glu_fuses(const struct kv_dmat *gate, const struct kv_dmat *up)
{
    return gate->fmt == up->fmt && gate->fmt >= 0 && gate->fmt < KV_WF_NONE &&
           k_mv_glu_form[gate->fmt] && gate->nrows == up->nrows && gate->ncols == up->ncols &&
           gate->row_bytes == up->row_bytes;
}

cudaError_t kv_matvec_glu(const struct kv_dmat *gate, const struct kv_dmat *up, const float *x,
                          const float *norm, float eps, bool gelu, float *y, cudaStream_t st)
{
    if (!kv_matvec_glu_fuses(gate, up))
        return cudaErrorInvalidValue;
    constexpr int RB = MV_WARPS * MV_ROWS / 2; /* output rows a block */
    unsigned grid = (unsigned)((gate->nrows + RB - 1) / RB);
    return kv_wf_dispatch(gate->fmt, [&](auto f) {
        constexpr int F = decltype(f)::value;
        if constexpr (kv_repacked<F>::value) {
            KV_LAUNCH(k_mvglu_q<F>, grid, MV_WARPS * 32, 0, st)(gate->d, up->d, gate->row_bytes,
                                                                gate->nrows, gate->ncols, x,
                                                                norm, eps, gelu, y);
        } else if constexpr (kv_mv_staged<F>) {
            KV_LAUNCH(k_mvglu_sx<F>, grid, MV_WARPS * 32, 0, st)(gate->d, up->d, gate->row_bytes,
                                                                 gate->nrows, gate->ncols, x,
                                                                 norm, eps, gelu, y);
        }
    });
}

bool kv_matvec3_fuses(const struct kv_dmat *a, const struct kv_dmat *b, const struct kv_dmat *c)
{
    return kv_matvec_glu_fuses(a, a) && a->fmt == b->fmt && a->fmt == c->fmt &&
           a->ncols == b->ncols && a->ncols == c->ncols && a->row_bytes == b->row_bytes &&
           a->row_bytes == c->row_bytes;
}

cudaError_t kv_matvec3(const struct kv_dmat *const w[3], const float *x, const float *norm,
                       float eps, const float *const bias[3], float *const y[3], cudaStream_t st)
{
    if (!kv_matvec3_fuses(w[0], w[1], w[2]))
        return cudaErrorInvalidValue;
    const int64_t rb = MV_WARPS * MV_ROWS; /* rows a block */
    mv3_args a;
    a.w0 = w[0]->d, a.w1 = w[1]->d, a.w2 = w[2]->d;
    a.b0 = bias[0], a.b1 = bias[1], a.b2 = bias[2];
    a.y0 = y[0], a.y1 = y[1], a.y2 = y[2];
    a.n0 = w[0]->nrows, a.n1 = w[1]->nrows, a.n2 = w[2]->nrows;
    a.blk1 = (a.n0 + rb - 1) / rb;
    a.blk2 = a.blk1 + (a.n1 + rb - 1) / rb;
    a.row_bytes = w[0]->row_bytes;
    a.ncols = w[0]->ncols;
    a.x = x, a.nw = norm, a.eps = eps;
    unsigned grid = (unsigned)(a.blk2 + (a.n2 + rb - 1) / rb);
    return kv_wf_dispatch(w[0]->fmt, [&](auto f) {
        constexpr int F = decltype(f)::value;
        if constexpr (kv_repacked<F>::value)
            KV_LAUNCH(k_mv3_q<F>, grid, MV_WARPS * 32, 0, st)(a);
        else if constexpr (kv_mv_staged<F>)
            KV_LAUNCH(k_mv3_sx<F>, grid, MV_WARPS * 32, 0, st)(a);
    });
}

/* ---- expert-indexed: a batch of (token, slot) pairs, each on its expert ----
 *
 * Grid (row blocks, pairs): block (b, p) is block b of the matvec of pair
 * p's expert, the body of k_matvec_q / k_matvec_sx / k_matvec (or, with
 * two matrices, k_mvglu_*) on that expert's matrix, so a pair's results
 * are the dense kernel's, bit for bit, and a new weight format comes with
 * its dense kernel. The expert id is read from device memory by every
 * thread of the block (one broadcast load) before the body starts, so the
 * choice is made on the device and decode reads only the chosen experts'
 * rows. Pairs beyond gridDim.y's limit go in further launches (P0). */
struct mvx_args {
    const uint8_t *w, *wu; /* stacked tensors (wu: the GLU's up, else NULL) */
    size_t row_bytes;
    size_t expert_bytes;   /* rows * row_bytes: one expert's matrix */
    int64_t nrows;         /* rows of one expert */
    int64_t ncols;
    const int32_t *ids;    /* pair p's expert, or NULL: expert 0 */
    int32_t n_expert, x_div, p0;
    const float *x, *nw;
    float eps;
    bool gelu;
    const float *bias;     /* n_expert x nrows, or NULL (one matrix only) */
    float *y;
};

struct mvx_pick {
    const uint8_t *w, *wu;
    const float *x, *bias;
    float *y;
    __device__ __forceinline__ explicit mvx_pick(const mvx_args &a)
    {
        const int64_t p = (int64_t)a.p0 + blockIdx.y;
        int32_t e = a.ids ? a.ids[p] : 0;
        e = e >= 0 && e < a.n_expert ? e : 0;
        w = a.w + (size_t)e * a.expert_bytes;
        wu = a.wu ? a.wu + (size_t)e * a.expert_bytes : nullptr;
        x = a.x + p / a.x_div * a.ncols;
        bias = a.bias ? a.bias + (int64_t)e * a.nrows : nullptr;
        y = a.y + p * a.nrows;
    }
};

/* The bodies, and one kernel name per form (one template parameter each,
 * so KV_LAUNCH takes them as they are). */
template <int F, int NM> static __device__ __forceinline__ void mvx_q(const mvx_args &a)
{
    const mvx_pick p(a);
    mv_q<F, NM>(p.w, p.wu, a.row_bytes, a.nrows, a.ncols, p.x, a.nw, a.eps, p.bias, nullptr,
                a.gelu, p.y, blockIdx.x);
}

template <int F, int NM> static __device__ __forceinline__ void mvx_sx(const mvx_args &a)
{
    const mvx_pick p(a);
    mv_sx<F, NM>(p.w, p.wu, a.row_bytes, a.nrows, a.ncols, p.x, a.nw, a.eps, p.bias, nullptr,
                 a.gelu, p.y, blockIdx.x);
}

template <int F, bool NORM> static __device__ __forceinline__ void mvx_s(const mvx_args &a)
{
    const mvx_pick p(a);
    mv_v1<F, NORM>(p.w, a.row_bytes, a.nrows, a.ncols / kv_fmt<F>::UE, p.x, a.nw, a.eps, p.bias,
                   nullptr, p.y, blockIdx.x);
}

template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32) k_mvx_q(const mvx_args a)
{
    mvx_q<F, 1>(a);
}
template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32) k_mvxglu_q(const mvx_args a)
{
    mvx_q<F, 2>(a);
}
template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32) k_mvx_sx(const mvx_args a)
{
    mvx_sx<F, 1>(a);
}
template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32) k_mvxglu_sx(const mvx_args a)
{
    mvx_sx<F, 2>(a);
}
template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32) k_mvx_s(const mvx_args a)
{
    mvx_s<F, false>(a);
}
template <int F>
static __global__ void __launch_bounds__(MV_WARPS * 32) k_mvxnorm_s(const mvx_args a)
{
    mvx_s<F, true>(a);
}

/* Most pairs one launch takes: gridDim.y's limit. */
#define MVX_MAX_PAIRS 65535

/* Both launchers: A filled but for p0, NM matrices (2: the GLU). */
static cudaError_t mvx_launch(const struct kv_dmat *w, mvx_args a, int nm, int32_t n,
                              cudaStream_t st)
{
    if (n < 1 || a.n_expert < 1 || a.x_div < 1 || w->nrows % a.n_expert)
        return cudaErrorInvalidValue;
    const int64_t rb = MV_WARPS * MV_ROWS / nm; /* output rows a block, staged forms */
    for (int32_t p0 = 0; p0 < n; p0 += MVX_MAX_PAIRS) {
        a.p0 = p0;
        const unsigned np = (unsigned)(n - p0 < MVX_MAX_PAIRS ? n - p0 : MVX_MAX_PAIRS);
        cudaError_t rc = kv_wf_dispatch(w->fmt, [&](auto f) {
            constexpr int F = decltype(f)::value;
            if constexpr (kv_repacked<F>::value || kv_mv_staged<F>) {
                dim3 grid((unsigned)((a.nrows + rb - 1) / rb), np);
                if constexpr (kv_repacked<F>::value) {
                    if (nm == 2)
                        KV_LAUNCH(k_mvxglu_q<F>, grid, MV_WARPS * 32, 0, st)(a);
                    else
                        KV_LAUNCH(k_mvx_q<F>, grid, MV_WARPS * 32, 0, st)(a);
                } else {
                    if (nm == 2)
                        KV_LAUNCH(k_mvxglu_sx<F>, grid, MV_WARPS * 32, 0, st)(a);
                    else
                        KV_LAUNCH(k_mvx_sx<F>, grid, MV_WARPS * 32, 0, st)(a);
                }
            } else {
                /* The scalar float forms: no GLU form (the caller checked). */
                dim3 grid((unsigned)((a.nrows + MV_WARPS - 1) / MV_WARPS), np);
                if (a.nw)
                    KV_LAUNCH(k_mvxnorm_s<F>, grid, MV_WARPS * 32, 0, st)(a);
                else
                    KV_LAUNCH(k_mvx_s<F>, grid, MV_WARPS * 32, 0, st)(a);
            }
        });
        if (rc != cudaSuccess)
            return rc;
    }
    return cudaSuccess;
}

static mvx_args mvx_args_of(const struct kv_dmat *w, const uint8_t *wu, int32_t n_expert,
                            const int32_t *ids, int32_t x_div, const float *x, const float *norm,
                            float eps, bool gelu, const float *bias, float *y)
{
    mvx_args a;
    a.w = w->d, a.wu = wu;
    a.row_bytes = w->row_bytes;
    a.nrows = n_expert > 0 ? w->nrows / n_expert : 0;
    a.expert_bytes = (size_t)a.nrows * w->row_bytes;
    a.ncols = w->ncols;
    a.ids = ids;
    a.n_expert = n_expert, a.x_div = x_div, a.p0 = 0;
    a.x = x, a.nw = norm, a.eps = eps, a.gelu = gelu, a.bias = bias, a.y = y;
    return a;
}

cudaError_t kv_matvec_x(const struct kv_dmat *w, int32_t n_expert, const int32_t *ids, int32_t n,
                        int32_t x_div, const float *x, const float *norm, float eps,
                        const float *bias, float *y, cudaStream_t st)
{
    return mvx_launch(w,
                      mvx_args_of(w, nullptr, n_expert, ids, x_div, x, norm, eps, false, bias, y),
                      1, n, st);
}

cudaError_t kv_matvec_x_glu(const struct kv_dmat *gate, const struct kv_dmat *up,
                            int32_t n_expert, const int32_t *ids, int32_t n, int32_t x_div,
                            const float *x, const float *norm, float eps, bool gelu, float *y,
                            cudaStream_t st)
{
    if (!kv_matvec_glu_fuses(gate, up))
        return cudaErrorInvalidValue;
    return mvx_launch(gate,
                      mvx_args_of(gate, up->d, n_expert, ids, x_div, x, norm, eps, gelu, nullptr,
                                  y),
                      2, n, st);
}
