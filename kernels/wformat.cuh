/* wformat.cuh - device-side decoders of the weight formats, shared by the
 * matrix-vector, dequantise and embedding kernels (internal to kernels/).
 *
 * A row is cut into "units" of UE consecutive elements: one 32-element block
 * for Q4_0..Q8_0, IQ4_NL and MXFP4, half a super-block's sub-block pair (64)
 * for Q4_K/Q5_K, a quarter super-block (64) for Q2_K/Q3_K, one 32-element
 * quadrant of a half for Q6_K, a 32-element sub-block for IQ4_XS, 8 (or 1)
 * elements for the float formats. One thread decodes one unit into registers (the loops are fully
 * unrolled, so v[] never reaches local memory). The quantised formats are
 * read in the layout the upload repacks them into (below: planes, rows
 * padded to 16 bytes), so their quants come in 16-byte loads. The
 * arithmetic follows docs/model-formats.md section 2 exactly.
 *
 * Each format is one traits row, kv_fmt<F>: UE (elements a unit), TYPE (the
 * file's tensor type it reads), COLS (what a row's length must be a multiple
 * of) and decode; the quantised rows add their planes (PB, SRC) and the
 * matvec's dot. kv_wfmt_of, kv_wf_dispatch, kv_row_bytes and kv_repack_rows
 * read the rows, so no other code switches over formats or tensor types.
 */
#ifndef KVCHAT_WFORMAT_CUH
#define KVCHAT_WFORMAT_CUH

#include <string.h>
#include <type_traits>

#include "cuda_common.h"

extern "C" {
#include "quant.h"
}

static __device__ __forceinline__ float kv_h2f(uint32_t h)
{
    return __half2float(__ushort_as_half((unsigned short)(h & 0xffffu)));
}
static __device__ __forceinline__ uint32_t kv_ld16(const uint8_t *p)
{
    return __ldg((const unsigned short *)p);
}
static __device__ __forceinline__ uint32_t kv_ld32(const uint8_t *p)
{
    return __ldg((const unsigned int *)p);
}
/* Byte I (0..3) of W. */
static __device__ __forceinline__ uint32_t kv_byte(uint32_t w, int i) { return (w >> (8 * i)) & 0xffu; }

template <int F> struct kv_fmt;

template <> struct kv_fmt<KV_WF_F32> {
    static constexpr int UE_BYTES = 32; /* bytes of a unit */
    static constexpr enum ggml_type TYPE = GGML_TYPE_F32;
    static constexpr int64_t COLS = 8;
    static constexpr int UE = 8;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t, int64_t u, float *v)
    {
        const float4 *p = (const float4 *)(row + u * 32);
        float4 a = __ldg(p), b = __ldg(p + 1);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    }
};
template <> struct kv_fmt<KV_WF_F32_S> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_F32;
    static constexpr int64_t COLS = 1;
    static constexpr int UE = 1;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t, int64_t u, float *v)
    {
        v[0] = __ldg((const float *)row + u);
    }
};
template <> struct kv_fmt<KV_WF_F16> {
    static constexpr int UE_BYTES = 16; /* bytes of a unit */
    static constexpr enum ggml_type TYPE = GGML_TYPE_F16;
    static constexpr int64_t COLS = 8;
    static constexpr int UE = 8;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t, int64_t u, float *v)
    {
        uint4 q = __ldg((const uint4 *)(row + u * 16));
        uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = kv_h2f(w[i]);
            v[2 * i + 1] = kv_h2f(w[i] >> 16);
        }
    }
};
template <> struct kv_fmt<KV_WF_F16_S> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_F16;
    static constexpr int64_t COLS = 1;
    static constexpr int UE = 1;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t, int64_t u, float *v)
    {
        v[0] = kv_h2f(kv_ld16(row + 2 * u));
    }
};
template <> struct kv_fmt<KV_WF_BF16> {
    static constexpr int UE_BYTES = 16; /* bytes of a unit */
    static constexpr enum ggml_type TYPE = GGML_TYPE_BF16;
    static constexpr int64_t COLS = 8;
    static constexpr int UE = 8;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t, int64_t u, float *v)
    {
        uint4 q = __ldg((const uint4 *)(row + u * 16));
        uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = __uint_as_float(w[i] << 16);
            v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
};
template <> struct kv_fmt<KV_WF_BF16_S> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_BF16;
    static constexpr int64_t COLS = 1;
    static constexpr int UE = 1;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t, int64_t u, float *v)
    {
        v[0] = __uint_as_float(kv_ld16(row + 2 * u) << 16);
    }
};

/* ---- the quantised formats: ggml's blocks, repacked at upload ----
 *
 * A file row is nb blocks of BB bytes, each block a struct of fields (scale,
 * high bits, quants). On the device a row is the same fields split into
 * planes, one after another: plane k holds field k of every block, PB[k]
 * bytes a block, so it starts at nb * (PB[0] + .. + PB[k-1]). Plane 0 is the
 * quants (16 or 32 bytes a 32-element block, 128 a super-block), so
 * consecutive lanes reading consecutive blocks read 16-byte slices of one
 * run; the planes total BB bytes a block, and the row is padded to 16 bytes
 * (kv_row_bytes) so every row, and every quant plane, starts 16-byte
 * aligned. Field k of a file block starts at byte SRC[k]; -1 marks planes
 * 0 and 1 of the 5- and 6-bit formats, which their pack writes as dense
 * fields (below) instead. kv_repack_rows (below) writes this layout from
 * the file's while the weights are staged; Q8_0's quants are stored offset
 * by 128 (as unsigned bytes) so the matvec turns them into floats with one
 * byte permute. Every reader (decode,
 * dot) reads planes; the arithmetic is docs/model-formats.md section 2's.
 *
 * decode(row, nb, u, v): the UE elements of unit u, for dequant.cu and
 * get_rows.cu. dot(p, ul, xv, xs): the matvec's sum over one unit of w * x,
 * P the unit's block in each plane (kv_cur below: the matvec keeps these
 * pointers and advances them a pass at a time rather than rebuilding them
 * from the row index), UL the unit's index inside its block (0 where a
 * block is one unit), XV the unit's UE x values and XS the sums of x over
 * its 32-element groups (formats with a min term or offset factor it out of
 * the loop). */

/* Byte offset of plane K in a row, per block (times nb); a constant. */
template <int F, int K> struct kv_poff {
    static constexpr int64_t value = kv_poff<F, K - 1>::value + kv_fmt<F>::PB[K - 1];
};
template <int F> struct kv_poff<F, 0> {
    static constexpr int64_t value = 0;
};
#define KV_PLANE(F, row, nb, k) ((row) + (nb) * kv_poff<F, k>::value)

/* The matvec's cursor in one row of a repacked format (its dot's P): for
 * each plane, the start of the block that holds the lane's current unit.
 * A lane takes units l, l + 32, ... of a row (32 a pass, across chunks),
 * so every plane pointer moves by a constant a pass and the unit's place
 * in its block (l mod the units a block) never changes: the loop adds NP
 * constants a row instead of rebuilding addresses from the row index and
 * the plane offsets, which ptxas would rematerialise (or spill) in it. */
template <int F> struct kv_cur {
    using T = kv_fmt<F>;
    static constexpr int UPB = (int)(T::COLS / T::UE); /* units a block */
    static_assert(32 % UPB == 0, "a pass is whole blocks");
    const uint8_t *p[T::NP];
    /* At unit U (U mod UPB is the dot's UL) of ROW, a row of NB blocks. */
    template <int K = 0>
    __device__ __forceinline__ void init(const uint8_t *row, int64_t nb, int64_t u)
    {
        if constexpr (K < T::NP) {
            constexpr int64_t pb = T::PB[K];
            p[K] = KV_PLANE(F, row, nb, K) + u / UPB * pb;
            init<K + 1>(row, nb, u);
        }
    }
    /* 32 units on. */
    template <int K = 0> __device__ __forceinline__ void next()
    {
        if constexpr (K < T::NP) {
            constexpr int64_t step = 32 / UPB * T::PB[K];
            p[K] += step;
            next<K + 1>();
        }
    }
};

/* ---- the matvec's exact integer -> float: denormals ----
 *
 * The bits of a float whose exponent field is 0 or 1 read as the integer N
 * they hold times 2^-149 (a denormal has no implicit leading 1, and the
 * step to exponent 1 is seamless), so a field at bits p..p+n-1 of a word,
 * p + n <= 24, is the float F 2^(p-149) of its value F after one AND with
 * its mask, exactly, with no magic number to take off. The matvec
 * multiplies it by x scaled by 2^(KV_DN_S - p) (a power of two: exact), so
 * every product is F x 2^(KV_DN_S - 149), normal for |x| >= 2^(23 -
 * KV_DN_S) (smaller x lose at most 2^-KV_DN_S each, absolutely) and finite
 * for |x| < 2^(128 - KV_DN_S); a unit's sum is scaled back by KV_DN_BACK
 * once. The bit p of an element's field depends only on the element's
 * place in its unit (each format's xbit), so the matvec stages x already
 * scaled (kv_xscaled, matvec.cu): the dots take XV scaled and multiply no x,
 * where scaling in the loop cost one FMUL per x per pass. The FFMAs take
 * denormal inputs at full rate (the kernels keep denormals: no -ftz, no
 * fast math). Fields that reach past bit 23 are brought down first: PRMT
 * for bytes, a funnel shift for fields across words. */
#define KV_DN_S 64
#define KV_DN_BACK 0x1p85f /* 2^(149 - KV_DN_S) */
/* 2^E for a constant E (folded once unrolled). */
static __device__ __forceinline__ float kv_pow2(int e) { return __int_as_float((127 + e) << 23); }
/* The field of W under MASK (at bit p, p + width <= 24) as F 2^(p-149). */
static __device__ __forceinline__ float kv_dn(uint32_t w, uint32_t mask)
{
    return __uint_as_float(w & mask);
}
/* The bit of element J's nibble in the word kv_dot_nib32_acc ANDs it from
 * (J < 16 low nibbles of bytes J, else high nibbles of bytes J - 16): bytes
 * 0-2 of a word in place, byte 3 of words 2m, 2m + 1 moved to bytes 0, 1. */
static __host__ __device__ constexpr int kv_nib_bit(int j)
{
    return ((j & 15) % 4 < 3 ? 8 * ((j & 15) % 4) : 8 * (((j & 15) / 4) & 1)) + (j >= 16 ? 4 : 0);
}

/* Sums over a 16-byte slice of 4-bit quants in ggml's order (byte j:
 * element j low nibble, j + 16 high) of q x, low nibbles into *PSL and high
 * ones into *PSH, in the scaled units above (times KV_DN_BACK: the sums);
 * XV[j] is x scaled by 2^(KV_DN_S - kv_nib_bit(j)).
 * Bytes 0-2 of each word are ANDed in place; bytes 3 of two words are
 * brought to bytes 0 and 1 by one PRMT: 34 integer instructions for 32
 * elements. */
static __device__ __forceinline__ void kv_dot_nib32_acc(uint4 qv, const float *xv, float *psl,
                                                        float *psh)
{
    const uint32_t w[4] = {qv.x, qv.y, qv.z, qv.w};
    float sl = *psl, sh = *psh;
#pragma unroll
    for (int k = 0; k < 4; k++) {
#pragma unroll
        for (int b = 0; b < 3; b++) {
            sl = fmaf(kv_dn(w[k], 0xFu << (8 * b)), xv[4 * k + b], sl);
            sh = fmaf(kv_dn(w[k], 0xF0u << (8 * b)), xv[16 + 4 * k + b], sh);
        }
    }
#pragma unroll
    for (int m = 0; m < 2; m++) {
        /* byte 0: byte 3 of word 2m; byte 1: byte 3 of word 2m + 1 */
        uint32_t t = __byte_perm(w[2 * m], w[2 * m + 1], 0x3373u);
#pragma unroll
        for (int n = 0; n < 2; n++) {
            int e = 4 * (2 * m + n) + 3;
            sl = fmaf(kv_dn(t, 0xFu << (8 * n)), xv[e], sl);
            sh = fmaf(kv_dn(t, 0xF0u << (8 * n)), xv[16 + e], sh);
        }
    }
    *psl = sl, *psh = sh;
}
/* Sum of q x over a 16-byte slice (q the unsigned nibble), scaled back. */
static __device__ __forceinline__ float kv_dot_nib32(uint4 qv, const float *xv)
{
    float sl = 0.0f, sh = 0.0f;
    kv_dot_nib32_acc(qv, xv, &sl, &sh);
    return (sl + sh) * KV_DN_BACK;
}

/* Q8_0: planes qs[32] (q + 128 as unsigned bytes), d. File: d, qs. */
template <> struct kv_fmt<KV_WF_Q8_0> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q8_0;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32, BB = 34, NP = 2;
    static constexpr int PB[NP] = {32, 2}, SRC[NP] = {2, 0};
    static constexpr uint8_t QXOR = 0x80; /* applied to plane 0 at repack */
    static constexpr bool XSUM = false;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        float d = kv_h2f(kv_ld16(KV_PLANE(KV_WF_Q8_0, row, nb, 1) + 2 * u));
        const uint4 *q = (const uint4 *)(row + 32 * u);
        uint4 a = __ldg(q), b = __ldg(q + 1);
        const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 32; i++)
            v[i] = d * (float)((int)kv_byte(w[i >> 2], i & 3) - 128);
    }
    /* The byte into the low mantissa of 2^23 (one PRMT), less 2^23 + 128. */
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int, const float *xv,
                                                const float *)
    {
        const uint4 *q = (const uint4 *)p[0];
        uint4 a = __ldg(q), b = __ldg(q + 1);
        const uint32_t w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < 32; i++) {
            float f = __uint_as_float(__byte_perm(w[i >> 2], 0x4B000000u, 0x7540u | (i & 3)));
            s = fmaf(f - 8388736.0f, xv[i], s);
        }
        return kv_h2f(kv_ld16(p[1])) * s;
    }
};

/* Q4_0: planes qs[16], d. File: d, qs. Value d (q - 8). */
template <> struct kv_fmt<KV_WF_Q4_0> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q4_0;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32, BB = 18, NP = 2;
    static constexpr int PB[NP] = {16, 2}, SRC[NP] = {2, 0};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_nib_bit(e); }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        float d = kv_h2f(kv_ld16(KV_PLANE(KV_WF_Q4_0, row, nb, 1) + 2 * u));
        uint4 qv = __ldg((const uint4 *)(row + 16 * u));
        const uint32_t w[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
        for (int j = 0; j < 16; j++) {
            uint32_t q = kv_byte(w[j >> 2], j & 3);
            v[j] = d * ((float)(q & 15) - 8.0f);
            v[j + 16] = d * ((float)(q >> 4) - 8.0f);
        }
    }
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int, const float *xv,
                                                const float *xs)
    {
        /* d (sum q x - 8 sum x) */
        float s = kv_dot_nib32(__ldg((const uint4 *)p[0]), xv);
        return kv_h2f(kv_ld16(p[1])) * fmaf(xs[0], -8.0f, s);
    }
};

/* Q4_1: planes qs[16], (d, m). File: d, m, qs. Value d q + m. */
template <> struct kv_fmt<KV_WF_Q4_1> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q4_1;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32, BB = 20, NP = 2;
    static constexpr int PB[NP] = {16, 4}, SRC[NP] = {4, 0};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_nib_bit(e); }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        uint32_t dm = kv_ld32(KV_PLANE(KV_WF_Q4_1, row, nb, 1) + 4 * u);
        float d = kv_h2f(dm), m = kv_h2f(dm >> 16);
        uint4 qv = __ldg((const uint4 *)(row + 16 * u));
        const uint32_t w[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
        for (int j = 0; j < 16; j++) {
            uint32_t q = kv_byte(w[j >> 2], j & 3);
            v[j] = d * (float)(q & 15) + m;
            v[j + 16] = d * (float)(q >> 4) + m;
        }
    }
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int, const float *xv,
                                                const float *xs)
    {
        float s = kv_dot_nib32(__ldg((const uint4 *)p[0]), xv);
        uint32_t dm = kv_ld32(p[1]);
        return fmaf(kv_h2f(dm), s, kv_h2f(dm >> 16) * xs[0]);
    }
};

/* ---- 5- and 6-bit quants as dense fields (Q5_0, Q5_1, Q5_K, Q6_K) ----
 *
 * The upload packs the 32 values of a 32-element group into one stream of
 * 32 N-bit fields, field i (element i of the group) at bits N i.. of N
 * little-endian words: the first four in the group's 16-byte slice of
 * plane 0, the rest (N - 4) in plane 1. So the value needs no fifth- or
 * sixth-bit merge on the device: a field that lies within bits 0..23 of its
 * word is one AND (kv_dn); the ones that do not (across a word boundary or
 * above bit 23) are read from a view, one funnel shift of the two words at
 * the first of a run of such fields, shared by the run (the compiler
 * merges the identical shifts): 5 views for N = 5, 6 for N = 6. */
template <int N> struct kv_field {
    /* Whether field I sits within bits 0..23 of its word. */
    static __host__ __device__ constexpr bool direct(int i) { return (N * i) % 32 + N <= 24; }
    /* The bit its view starts at: its own word, or the first field of its
     * run of non-direct ones. */
    static __host__ __device__ constexpr int vstart(int i)
    {
        if (direct(i))
            return N * i / 32 * 32;
        while (i > 0 && !direct(i - 1))
            i--;
        return N * i;
    }
    /* The bit of field I in its view (kv_fview's P). */
    static __host__ __device__ constexpr int bit(int i) { return N * i - vstart(i); }
};
/* The view holding field I of the stream W (N words) and its bit in it. */
template <int N>
static __device__ __forceinline__ uint32_t kv_fview(const uint32_t *w, int i, int *p)
{
    const int g = kv_field<N>::vstart(i), k = g / 32;
    *p = N * i - g;
    if (g % 32 == 0)
        return w[k];
    return __funnelshift_r(w[k], k + 1 < N ? w[k + 1] : 0u, g % 32);
}
/* Sums of q x over the 32 fields of W: fields below SPLIT into *PA, the
 * rest into *PB, in the denormal units (times KV_DN_BACK: the sums); XV[i]
 * is x scaled by 2^(KV_DN_S - kv_field<N>::bit(i)). */
template <int N, int SPLIT>
static __device__ __forceinline__ void kv_dot_fields(const uint32_t *w, const float *xv, float *pa,
                                                     float *pb)
{
    float a = *pa, b = *pb;
#pragma unroll
    for (int i = 0; i < 32; i++) {
        int p;
        uint32_t v = kv_fview<N>(w, i, &p);
        if (i < SPLIT)
            a = fmaf(kv_dn(v, ((1u << N) - 1) << p), xv[i], a);
        else
            b = fmaf(kv_dn(v, ((1u << N) - 1) << p), xv[i], b);
    }
    *pa = a, *pb = b;
}
/* The 32 values of W as integers (dequant.cu, get_rows.cu). */
template <int N> static __device__ __forceinline__ void kv_fields(const uint32_t *w, uint32_t *q)
{
#pragma unroll
    for (int i = 0; i < 32; i++) {
        int p;
        uint32_t v = kv_fview<N>(w, i, &p);
        q[i] = (v >> p) & ((1u << N) - 1);
    }
}
/* The stream of group G (its 16-byte slice of plane 0 at Q0 + 16 G, its
 * N - 4 words of plane 1 at Q1 + 4 (N - 4) G) into W. */
template <int N>
static __device__ __forceinline__ void kv_fload(const uint8_t *q0, const uint8_t *q1, int64_t g,
                                                uint32_t *w)
{
    uint4 a = __ldg((const uint4 *)(q0 + 16 * g));
    w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w;
    if constexpr (N == 5) {
        w[4] = __ldg((const unsigned int *)(q1 + 4 * g));
    } else {
        uint2 b = __ldg((const uint2 *)(q1 + 8 * g));
        w[4] = b.x, w[5] = b.y;
    }
}
/* Host: the stream of the 32 values Q (N bits each) into plane 0's 16
 * bytes at P0 and plane 1's 4 (N - 4) at P1. */
template <int N> static inline void kv_fpack(const uint8_t *q, uint8_t *p0, uint8_t *p1)
{
    uint8_t s[4 * N] = {0};
    for (int i = 0; i < 32; i++)
        for (int b = 0; b < N; b++)
            if ((q[i] >> b) & 1)
                s[(N * i + b) / 8] |= (uint8_t)(1u << ((N * i + b) % 8));
    memcpy(p0, s, 16);
    memcpy(p1, s + 16, (size_t)(4 * (N - 4)));
}

/* Q5_0 / Q5_1 host packing: the 5-bit values of a file block (qh, a
 * little-endian word at QH, bit j for element j; qs nibbles as Q4's). */
static inline void kv_q5_pack(const uint8_t *qh, const uint8_t *qs, uint8_t *p0, uint8_t *p1)
{
    uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                 (uint32_t)qh[3] << 24;
    uint8_t q[32];
    for (int j = 0; j < 16; j++) {
        q[j] = (uint8_t)((qs[j] & 15) | ((h >> j) & 1) << 4);
        q[j + 16] = (uint8_t)((qs[j] >> 4) | ((h >> (j + 16)) & 1) << 4);
    }
    kv_fpack<5>(q, p0, p1);
}

/* Q5_0: planes q5 fields (16 + 4 bytes), d. File: d, qh, qs. Value
 * d (q - 16). */
template <> struct kv_fmt<KV_WF_Q5_0> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q5_0;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32, BB = 22, NP = 3;
    static constexpr int PB[NP] = {16, 4, 2}, SRC[NP] = {-1, -1, 0};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_field<5>::bit(e); }
    static inline void pack(const uint8_t *blk, uint8_t *p0, uint8_t *p1)
    {
        kv_q5_pack(blk + 2, blk + 6, p0, p1);
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        float d = kv_h2f(kv_ld16(KV_PLANE(KV_WF_Q5_0, row, nb, 2) + 2 * u));
        uint32_t w[5], q[32];
        kv_fload<5>(row, KV_PLANE(KV_WF_Q5_0, row, nb, 1), u, w);
        kv_fields<5>(w, q);
#pragma unroll
        for (int i = 0; i < 32; i++)
            v[i] = d * (float)q[i] - 16.0f * d;
    }
    /* d (sum q x - 16 sum x) */
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int, const float *xv,
                                                const float *xs)
    {
        uint32_t w[5];
        kv_fload<5>(p[0], p[1], 0, w);
        float s = 0.0f, t = 0.0f;
        kv_dot_fields<5, 32>(w, xv, &s, &t);
        return kv_h2f(kv_ld16(p[2])) *
               fmaf(s, KV_DN_BACK, -16.0f * xs[0]);
    }
};

/* Q5_1: planes q5 fields (16 + 4 bytes), (d, m). File: d, m, qh, qs. Value
 * d q + m. */
template <> struct kv_fmt<KV_WF_Q5_1> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q5_1;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32, BB = 24, NP = 3;
    static constexpr int PB[NP] = {16, 4, 4}, SRC[NP] = {-1, -1, 0};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_field<5>::bit(e); }
    static inline void pack(const uint8_t *blk, uint8_t *p0, uint8_t *p1)
    {
        kv_q5_pack(blk + 4, blk + 8, p0, p1);
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        uint32_t dm = kv_ld32(KV_PLANE(KV_WF_Q5_1, row, nb, 2) + 4 * u);
        float d = kv_h2f(dm), m = kv_h2f(dm >> 16);
        uint32_t w[5], q[32];
        kv_fload<5>(row, KV_PLANE(KV_WF_Q5_1, row, nb, 1), u, w);
        kv_fields<5>(w, q);
#pragma unroll
        for (int i = 0; i < 32; i++)
            v[i] = d * (float)q[i] + m;
    }
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int, const float *xv,
                                                const float *xs)
    {
        uint32_t w[5];
        kv_fload<5>(p[0], p[1], 0, w);
        float s = 0.0f, t = 0.0f;
        kv_dot_fields<5, 32>(w, xv, &s, &t);
        uint32_t dm = kv_ld32(p[2]);
        return fmaf(kv_h2f(dm) * KV_DN_BACK, s, kv_h2f(dm >> 16) * xs[0]);
    }
};

/* Scales of unit c (0..3) of a Q4_K/Q5_K super-block from its 16-byte
 * header (d, dmin, scales[12]): d * sc and dmin * m of sub-blocks 2c, 2c+1,
 * decoded once per unit, not per element. docs/model-formats.md 2.1 gives
 * sub-block j's 6-bit scale and min as bytes j and j + 4 (low 6 bits) for
 * j < 4, else the nibbles of byte j + 4 with bits 6-7 of bytes j - 4 and j
 * on top. Here all eight of each are built at once, one per byte, by masks
 * on the three words (bytes 0-3, 4-7, 8-11), and unit c's pair is bytes 2c,
 * 2c + 1 of that 8-byte run: one PRMT whose selector depends on c only.
 * No branch: c is a run-time value (the lane's unit), and a branch on it
 * cost Q4_K ~50 instructions a row in the matvec's loop. */
static __device__ __forceinline__ void kv_k4_scales(uint4 hd, int c, float *d0, float *m0,
                                                    float *d1, float *m1)
{
    const uint32_t s0 = hd.y, s1 = hd.z, s2 = hd.w;
    const uint32_t sc_lo = s0 & 0x3f3f3f3fu, mn_lo = s1 & 0x3f3f3f3fu;
    const uint32_t sc_hi = (s2 & 0x0f0f0f0fu) | ((s0 >> 2) & 0x30303030u);
    const uint32_t mn_hi = ((s2 >> 4) & 0x0f0f0f0fu) | ((s1 >> 2) & 0x30303030u);
    const uint32_t sel = 0x10u + 0x22u * (uint32_t)c; /* bytes 2c, 2c + 1 */
    const uint32_t sc = __byte_perm(sc_lo, sc_hi, sel), mn = __byte_perm(mn_lo, mn_hi, sel);
    float d = kv_h2f(hd.x), dmin = kv_h2f(hd.x >> 16);
    *d0 = d * (float)(sc & 0xffu), *d1 = d * (float)((sc >> 8) & 0xffu);
    *m0 = dmin * (float)(mn & 0xffu), *m1 = dmin * (float)((mn >> 8) & 0xffu);
}

/* Q4_K: planes qs[128], header[16] (d, dmin, scales[12]). File: header, qs.
 * Unit c (0..3) of a super-block is outputs 64c..64c+63: low nibbles of
 * qs[32c..] with sub-block 2c, then high nibbles with sub-block 2c+1. */
template <> struct kv_fmt<KV_WF_Q4_K> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q4_K;
    static constexpr int64_t COLS = 256;
    static constexpr int UE = 64, BB = 144, NP = 2;
    static constexpr int PB[NP] = {128, 16}, SRC[NP] = {16, 0};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e)
    {
        return kv_nib_bit((e & 15) + (e >= 32 ? 16 : 0));
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        float d0, m0, d1, m1;
        kv_k4_scales(__ldg((const uint4 *)(KV_PLANE(KV_WF_Q4_K, row, nb, 1) + 16 * (u >> 2))),
                     (int)(u & 3), &d0, &m0, &d1, &m1);
        const uint4 *qp = (const uint4 *)(row + 32 * u);
        uint4 qa = __ldg(qp), qb = __ldg(qp + 1);
        const uint32_t w[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
        for (int l = 0; l < 32; l++) {
            uint32_t q = kv_byte(w[l >> 2], l & 3);
            v[l] = d0 * (float)(q & 15) - m0;
            v[l + 32] = d1 * (float)(q >> 4) - m1;
        }
    }
    /* sum (d sc q - dmin m) x = d sc sum(q x) - dmin m sum(x) per sub-block. */
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int ul, const float *xv,
                                                const float *xs)
    {
        const uint4 *qp = (const uint4 *)(p[0] + 32 * ul);
        uint4 qa = __ldg(qp), qb = __ldg(qp + 1);
        /* Slice 0 holds elements l (low) and 32 + l (high) for l < 16,
         * slice 1 for l = 16..31: regroup x to kv_dot_nib32's order. */
        float xa[32], xb[32];
#pragma unroll
        for (int l = 0; l < 16; l++) {
            xa[l] = xv[l], xa[16 + l] = xv[32 + l];
            xb[l] = xv[16 + l], xb[16 + l] = xv[48 + l];
        }
        float d0, m0, d1, m1;
        kv_k4_scales(__ldg((const uint4 *)p[1]), ul, &d0, &m0, &d1, &m1);
        float s0 = 0.0f, s1 = 0.0f;
        kv_dot_nib32_acc(qa, xa, &s0, &s1);
        kv_dot_nib32_acc(qb, xb, &s0, &s1);
        return fmaf(fmaf(d0, s0, d1 * s1), KV_DN_BACK, -(m0 * xs[0] + m1 * xs[1]));
    }
};

/* Q5_K: planes q5 fields (128 + 32 bytes), header[16]. File: header,
 * qh[32], qs[128]. As Q4_K, the fifth bit of output l of sub-block j being
 * bit j of qh[l]; the upload packs sub-block j of a super-block as field
 * group j (unit c: groups 2c, 2c + 1). */
template <> struct kv_fmt<KV_WF_Q5_K> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q5_K;
    static constexpr int64_t COLS = 256;
    static constexpr int UE = 64, BB = 176, NP = 3;
    static constexpr int PB[NP] = {128, 32, 16}, SRC[NP] = {-1, -1, 0};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_field<5>::bit(e & 31); }
    static inline void pack(const uint8_t *blk, uint8_t *p0, uint8_t *p1)
    {
        const uint8_t *qh = blk + 16, *qs = blk + 48;
        for (int j = 0; j < 8; j++) {
            uint8_t q[32];
            for (int l = 0; l < 32; l++) {
                uint8_t b = qs[32 * (j / 2) + l];
                q[l] = (uint8_t)((j & 1 ? b >> 4 : b & 15) | ((qh[l] >> j) & 1) << 4);
            }
            kv_fpack<5>(q, p0 + 16 * j, p1 + 4 * j);
        }
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        float d0, m0, d1, m1;
        kv_k4_scales(__ldg((const uint4 *)(KV_PLANE(KV_WF_Q5_K, row, nb, 2) + 16 * (u >> 2))),
                     (int)(u & 3), &d0, &m0, &d1, &m1);
        const uint8_t *q1 = KV_PLANE(KV_WF_Q5_K, row, nb, 1);
        uint32_t w[5], q[32];
        kv_fload<5>(row, q1, 2 * u, w);
        kv_fields<5>(w, q);
#pragma unroll
        for (int l = 0; l < 32; l++)
            v[l] = d0 * (float)q[l] - m0;
        kv_fload<5>(row, q1, 2 * u + 1, w);
        kv_fields<5>(w, q);
#pragma unroll
        for (int l = 0; l < 32; l++)
            v[32 + l] = d1 * (float)q[l] - m1;
    }
    /* sum (d sc q - dmin m) x = d sc sum(q x) - dmin m sum(x) per sub-block. */
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int ul, const float *xv,
                                                const float *xs)
    {
        uint32_t wa[5], wb[5];
        kv_fload<5>(p[0], p[1], 2 * ul, wa);
        kv_fload<5>(p[0], p[1], 2 * ul + 1, wb);
        float d0, m0, d1, m1;
        kv_k4_scales(__ldg((const uint4 *)p[2]), ul, &d0, &m0, &d1, &m1);
        float s0 = 0.0f, s1 = 0.0f;
        kv_dot_fields<5, 32>(wa, xv, &s0, &s1);
        kv_dot_fields<5, 0>(wb, xv + 32, &s0, &s1);
        return fmaf(fmaf(d0, s0, d1 * s1), KV_DN_BACK, -(m0 * xs[0] + m1 * xs[1]));
    }
};

/* Q6_K: planes q6 fields (128 + 64 bytes), scales[16] int8, d. File:
 * ql[128], qh[64], scales[16], d. Unit r (0..7) of a super-block is half
 * h = r/4, quadrant qd = r%4: outputs 128h + 32qd + l, low 4 bits from
 * ql[64h + 32(qd&1) + l] (low nibble for qd < 2), high 2 bits from
 * qh[32h + l] >> 2qd, scale scales[8h + l/16 + 2qd]; the upload packs unit
 * r's 6-bit values as field group r. */
template <> struct kv_fmt<KV_WF_Q6_K> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q6_K;
    static constexpr int64_t COLS = 256;
    static constexpr int UE = 32, BB = 210, NP = 4;
    static constexpr int PB[NP] = {128, 64, 16, 2}, SRC[NP] = {-1, -1, 192, 208};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 16; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_field<6>::bit(e); }
    static inline void pack(const uint8_t *blk, uint8_t *p0, uint8_t *p1)
    {
        const uint8_t *ql = blk, *qh = blk + 128;
        for (int r = 0; r < 8; r++) {
            int h = r >> 2, qd = r & 3;
            uint8_t q[32];
            for (int l = 0; l < 32; l++) {
                uint8_t lo = (uint8_t)((ql[64 * h + 32 * (qd & 1) + l] >> (4 * (qd >> 1))) & 15);
                q[l] = (uint8_t)(lo | ((qh[32 * h + l] >> (2 * qd)) & 3) << 4);
            }
            kv_fpack<6>(q, p0 + 16 * r, p1 + 8 * r);
        }
    }
    /* DA, DB: d times the scales of the unit's two halves. */
    static __device__ __forceinline__ void scales(const uint8_t *row, int64_t nb, int64_t u,
                                                  float *da, float *db)
    {
        const uint8_t *sc = KV_PLANE(KV_WF_Q6_K, row, nb, 2) + (u >> 3) * 16;
        int r = (int)(u & 7), h = r >> 2, qd = r & 3;
        float d = kv_h2f(kv_ld16(KV_PLANE(KV_WF_Q6_K, row, nb, 3) + 2 * (u >> 3)));
        uint32_t scw = kv_ld16(sc + 8 * h + 2 * qd);
        *da = d * (float)(int8_t)(scw & 0xff), *db = d * (float)(int8_t)(scw >> 8);
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        float da, db;
        scales(row, nb, u, &da, &db);
        uint32_t w[6], q[32];
        kv_fload<6>(row, KV_PLANE(KV_WF_Q6_K, row, nb, 1), u, w);
        kv_fields<6>(w, q);
#pragma unroll
        for (int l = 0; l < 32; l++)
            v[l] = (l < 16 ? da : db) * (float)((int)q[l] - 32);
    }
    /* da (sum q x - 32 sum x) over the first 16, db over the rest (XS: the
     * sums of x over each 16). */
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int ul, const float *xv,
                                                const float *xs)
    {
        uint32_t w[6];
        kv_fload<6>(p[0], p[1], ul, w);
        float sa = 0.0f, sb = 0.0f;
        kv_dot_fields<6, 16>(w, xv, &sa, &sb);
        const int h = ul >> 2, qd = ul & 3;
        const float d = kv_h2f(kv_ld16(p[3]));
        const uint32_t scw = kv_ld16(p[2] + 8 * h + 2 * qd);
        const float da = d * (float)(int8_t)(scw & 0xff), db = d * (float)(int8_t)(scw >> 8);
        return fmaf(da, fmaf(sa, KV_DN_BACK, -32.0f * xs[0]),
                    db * fmaf(sb, KV_DN_BACK, -32.0f * xs[1]));
    }
};

/* ---- 2- and 3-bit K-quants as dense fields (Q2_K, Q3_K) ----
 *
 * Both cut a super-block into 4 units of 64 outputs (two of the file's
 * 32-output chunks, four 16-element sub-blocks with their own scales). The
 * upload merges each value's bits (Q3_K's third bit from hmask) and packs
 * the unit's 64 values as one stream, value e at bits N e: 16 bytes for
 * Q2_K (plane 0), 24 for Q3_K (16 in plane 0, 8 in plane 1), so each
 * 32-value group is N words that kv_field<N>/kv_dot_fields read exactly as
 * the 5- and 6-bit streams (fields within bits 0..23 one AND, the rest from
 * a funnel-shifted view: 4 views a unit for N = 2, 6 for N = 3). A
 * sub-block is 16 consecutive fields, so each dot keeps 4 sums and applies
 * the 4 scales once a unit. */
/* Host: the N-bit values Q[0..n) as one little-endian bit stream at DST
 * (value i at bits N i..), N n / 8 bytes. */
static inline void kv_bitpack(const uint8_t *q, int n, int N, uint8_t *dst)
{
    memset(dst, 0, (size_t)(N * n / 8));
    for (int i = 0; i < n; i++)
        for (int b = 0; b < N; b++)
            if ((q[i] >> b) & 1)
                dst[(N * i + b) / 8] |= (uint8_t)(1u << ((N * i + b) % 8));
}
/* Host: the 256 2-bit codes of a Q2_K/Q3_K block in output order (chunk k
 * of 32 outputs is bits 2 (k % 4) of qs[32 (k / 4) + l]), plus, where HM is
 * given, Q3_K's third bit (bit k of hm[l]) as bit 2. */
static inline void kv_k23_codes(const uint8_t *qs, const uint8_t *hm, uint8_t *q)
{
    for (int k = 0; k < 8; k++)
        for (int l = 0; l < 32; l++)
            q[32 * k + l] = (uint8_t)(((qs[32 * (k / 4) + l] >> (2 * (k % 4))) & 3) |
                                      (hm ? ((hm[l] >> k) & 1) << 2 : 0));
}

/* Q2_K: planes q2 fields (64 bytes), scales[16], (d, dmin). File:
 * scales[16], qs[64], d, dmin. Unit c (0..3): outputs 64c.., sub-blocks
 * 4c..4c+3 (words 0..3 of its slice), whose scale bytes are the 32-bit word
 * at scales + 4c: value d (sc & 15) q - dmin (sc >> 4). */
template <> struct kv_fmt<KV_WF_Q2_K> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q2_K;
    static constexpr int64_t COLS = 256;
    static constexpr int UE = 64, BB = 84, NP = 3;
    static constexpr int PB[NP] = {64, 16, 4}, SRC[NP] = {-1, -1, 80};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 16; /* elements a sum of x (XS) covers: a sub-block */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_field<2>::bit(e & 31); }
    static inline void pack(const uint8_t *blk, uint8_t *p0, uint8_t *p1)
    {
        uint8_t q[256];
        kv_k23_codes(blk + 16, nullptr, q);
        kv_bitpack(q, 256, 2, p0); /* unit c at bytes 16c.. */
        memcpy(p1, blk, 16);
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        const int64_t b = u >> 2;
        const uint32_t dm = kv_ld32(KV_PLANE(KV_WF_Q2_K, row, nb, 2) + 4 * b);
        const uint32_t sc = kv_ld32(KV_PLANE(KV_WF_Q2_K, row, nb, 1) + 16 * b + 4 * (u & 3));
        const float d = kv_h2f(dm), dmin = kv_h2f(dm >> 16);
        uint4 a = __ldg((const uint4 *)(row + 16 * u));
        const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int g = 0; g < 2; g++) {
            uint32_t q[32];
            kv_fields<2>(w + 2 * g, q);
#pragma unroll
            for (int i = 0; i < 32; i++) {
                const uint32_t s = kv_byte(sc, 2 * g + i / 16);
                const float dl = d * (float)(s & 15), ml = dmin * (float)(s >> 4);
                v[32 * g + i] = dl * (float)q[i] - ml; /* the CPU's order */
            }
        }
    }
    /* d sum_j sc_j sum(q x) - dmin sum_j m_j sum(x), over the 4 sub-blocks. */
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int ul, const float *xv,
                                                const float *xs)
    {
        uint4 a = __ldg((const uint4 *)(p[0] + 16 * ul));
        const uint32_t w[4] = {a.x, a.y, a.z, a.w};
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        kv_dot_fields<2, 16>(w, xv, &s[0], &s[1]);
        kv_dot_fields<2, 16>(w + 2, xv + 32, &s[2], &s[3]);
        const uint32_t sc = kv_ld32(p[1] + 4 * ul), dm = kv_ld32(p[2]);
        float t = 0.0f, m = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            t = fmaf((float)(kv_byte(sc, j) & 15), s[j], t);
            m = fmaf((float)(kv_byte(sc, j) >> 4), xs[j], m);
        }
        return fmaf(kv_h2f(dm) * KV_DN_BACK, t, -kv_h2f(dm >> 16) * m);
    }
};

/* The 6-bit scales of sub-blocks 4c..4c+3 of a Q3_K block from its 12
 * scale bytes SC, one a byte, unsigned (the value is the byte - 32): the
 * low 4 bits of scale k are the low nibble of byte k for k < 8, else the
 * high nibble of byte k - 8, so the four of unit c are the nibbles of the
 * word at 4 (c & 1), shifted by 4 (c >> 1); the high 2 bits of scale k are
 * bits 2 (k / 4) of byte 8 + k % 4, so unit c's are the word at 8 shifted
 * by 2c. No branch on c (the lane's unit, a run-time value). */
static __device__ __forceinline__ uint32_t kv_q3k_scales(const uint8_t *sc, int c)
{
    const uint32_t lo = kv_ld32(sc + 4 * (c & 1)), hi = kv_ld32(sc + 8);
    return ((lo >> (4 * (c >> 1))) & 0x0f0f0f0fu) | (((hi >> (2 * c)) & 0x03030303u) << 4);
}

/* Q3_K: planes q3 fields (64 + 32 bytes), scales[12], d. File: hmask[32],
 * qs[64], scales[12], d. Unit c (0..3): outputs 64c.., sub-blocks 4c..4c+3;
 * the field is q + 4 h (h the hmask bit), so the value d (sc - 32) (field
 * - 4) has its -4 taken out as a multiple of the sub-block's sum of x. */
template <> struct kv_fmt<KV_WF_Q3_K> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q3_K;
    static constexpr int64_t COLS = 256;
    static constexpr int UE = 64, BB = 110, NP = 4;
    static constexpr int PB[NP] = {64, 32, 12, 2}, SRC[NP] = {-1, -1, 96, 108};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 16; /* elements a sum of x (XS) covers: a sub-block */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_field<3>::bit(e & 31); }
    static inline void pack(const uint8_t *blk, uint8_t *p0, uint8_t *p1)
    {
        uint8_t q[256];
        kv_k23_codes(blk + 32, blk, q);
        for (int c = 0; c < 4; c++) {
            uint8_t s[24];
            kv_bitpack(q + 64 * c, 64, 3, s);
            memcpy(p0 + 16 * c, s, 16);
            memcpy(p1 + 8 * c, s + 16, 8);
        }
    }
    /* The unit's 6 words: 4 from plane 0, 2 from plane 1. */
    static __device__ __forceinline__ void load(const uint8_t *q0, const uint8_t *q1, uint32_t *w)
    {
        uint4 a = __ldg((const uint4 *)q0);
        uint2 b = __ldg((const uint2 *)q1);
        w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y;
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        const int64_t b = u >> 2;
        const float d = kv_h2f(kv_ld16(KV_PLANE(KV_WF_Q3_K, row, nb, 3) + 2 * b));
        const uint32_t sc = kv_q3k_scales(KV_PLANE(KV_WF_Q3_K, row, nb, 2) + 12 * b, (int)(u & 3));
        uint32_t w[6];
        load(row + 16 * u, KV_PLANE(KV_WF_Q3_K, row, nb, 1) + 8 * u, w);
#pragma unroll
        for (int g = 0; g < 2; g++) {
            uint32_t q[32];
            kv_fields<3>(w + 3 * g, q);
#pragma unroll
            for (int i = 0; i < 32; i++) {
                const float dl = d * (float)((int)kv_byte(sc, 2 * g + i / 16) - 32);
                v[32 * g + i] = dl * (float)((int)q[i] - 4);
            }
        }
    }
    /* d sum_j (sc_j - 32) (sum(q x) - 4 sum(x)), over the 4 sub-blocks. */
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int ul, const float *xv,
                                                const float *xs)
    {
        uint32_t w[6];
        load(p[0] + 16 * ul, p[1] + 8 * ul, w);
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        kv_dot_fields<3, 16>(w, xv, &s[0], &s[1]);
        kv_dot_fields<3, 16>(w + 3, xv + 32, &s[2], &s[3]);
        const uint32_t sc = kv_q3k_scales(p[2], ul);
        float t = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++)
            t = fmaf((float)((int)kv_byte(sc, j) - 32), fmaf(s[j], KV_DN_BACK, -4.0f * xs[j]), t);
        return kv_h2f(kv_ld16(p[3])) * t;
    }
};

/* ---- 4-bit codes into a 16-entry table (IQ4_NL, IQ4_XS, MXFP4) ----
 *
 * The value is a table entry (ggml's kvalues: IQ4's non-linear int8 levels,
 * MXFP4's doubled E2M1 values) times the block's scale. The table is 16
 * bytes, each entry stored as the level + OFF (unsigned, the format's
 * smallest level to 0), so it lives in 4 registers and a code becomes its
 * entry by byte permutes (PRMT), no memory access: bits 0-2 of a code pick
 * one of 8 bytes from each table half, bit 3 which half (a third PRMT whose
 * selector moves bit 3 to bit 2 of each nibble), 4 codes a PRMT. Shared
 * memory would cost a load per code and bank conflicts across a warp's
 * random codes; the PRMTs are 10 integer instructions for 8 codes. The
 * upload stores code e of a 32-element group at nibble e of its 16-byte
 * slice, so word k's low half selects outputs 8k..8k+3 and its high half
 * 8k+4..8k+7. The entries are then bytes: 0-2 of a word are ANDed in place
 * as denormals, bytes 3 of two words brought to bytes 0 and 1 by one PRMT
 * (kv_lut_bit), and the OFF times the group's sum of x comes off once.
 *
 * The matvec hands its dot the table as loaded registers (kv_lut_regs, read
 * from shared memory once a chunk), not as constants: as immediates ptxas
 * kept the words in uniform registers and copied one into a vector register
 * before every table PRMT (64 IMAD a pass), and split (a & M) | C with both
 * constants immediate into two LOP3 (with C in a register it is one). */
static __host__ __device__ constexpr uint32_t kv_lut4(int off, int a, int b, int c, int d)
{
    return (uint32_t)((a + off) & 255) | (uint32_t)((b + off) & 255) << 8 |
           (uint32_t)((c + off) & 255) << 16 | (uint32_t)((d + off) & 255) << 24;
}
#define KV_LUT_SEL 0x32103210u /* the half select's positions: byte k from byte k of lo */
/* A table format's words: T[k] entries 4k..4k+3, SEL KV_LUT_SEL. Word K
 * (0..4) of it is the format's lut(K). */
struct kv_lut_regs {
    uint32_t t[4], sel;
};
#define KV_LUT_REGS(tab) {tab, KV_LUT_SEL}
/* The bit of element E's entry in the word kv_dot_lut32 ANDs it from:
 * bytes 0-2 of output word E / 4 in place, byte 3 of words 2m, 2m + 1 moved
 * to bytes 0, 1. */
static __host__ __device__ constexpr int kv_lut_bit(int e)
{
    return e % 4 < 3 ? 8 * (e % 4) : 8 * ((e / 4) & 1);
}
/* prmt.b32 (generic mode) for selectors whose nibbles all have bit 3
 * clear, where it equals __byte_perm: nvcc implements __byte_perm as the
 * PRMT after an AND of the selector with 0x7777, one LOP3 a call that it
 * does not share between calls with the same selector (64 a pass of the
 * table formats' matvec). The emulator's kvemu_prmt is the instruction's
 * definition, bit 3 (sign replicate) included, so a selector breaking the
 * rule gives the device's wrong answer in the tests too. */
static __device__ __forceinline__ uint32_t kv_prmt(uint32_t a, uint32_t b, uint32_t s)
{
#if defined(__CUDA_ARCH__)
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(s));
    return d;
#elif defined(KVEMU)
    return kvemu_prmt(a, b, s);
#else
    return __byte_perm(a, b, s); /* nvcc's host pass: compiled, never run */
#endif
}

/* The table entries of the 8 codes of W (code n at bits 4n..4n+3): codes
 * 0-3 as the bytes of *OA, 4-7 of *OB. T: the table, entries 4k..4k+3 in
 * word k. */
static __device__ __forceinline__ void kv_lut8(uint32_t w, const kv_lut_regs &r, uint32_t *oa,
                                               uint32_t *ob)
{
    /* Bit 3 cleared once for both halves (kv_prmt's rule); the select's
     * nibbles are 0-7 by construction. */
    const uint32_t wl = w & 0x77777777u, wb = wl >> 16;
    const uint32_t s = ((w >> 1) & 0x44444444u) | r.sel; /* byte k: k or 4 + k */
    const uint32_t *t = r.t;
    *oa = kv_prmt(kv_prmt(t[0], t[1], wl), kv_prmt(t[2], t[3], wl), s);
    *ob = kv_prmt(kv_prmt(t[0], t[1], wb), kv_prmt(t[2], t[3], wb), s >> 16);
}
/* Sum of entry x over a 16-byte slice of 32 codes, in the denormal units
 * (times KV_DN_BACK: the sum); XV[e] is x scaled by 2^(KV_DN_S -
 * kv_lut_bit(e)). */
static __device__ __forceinline__ float kv_dot_lut32(uint4 qv, const kv_lut_regs &t,
                                                    const float *xv)
{
    const uint32_t w[4] = {qv.x, qv.y, qv.z, qv.w};
    uint32_t o[8];
#pragma unroll
    for (int k = 0; k < 4; k++)
        kv_lut8(w[k], t, &o[2 * k], &o[2 * k + 1]);
    float sa = 0.0f, sb = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; j += 2) {
#pragma unroll
        for (int b = 0; b < 3; b++) {
            sa = fmaf(kv_dn(o[j], 0xffu << (8 * b)), xv[4 * j + b], sa);
            sb = fmaf(kv_dn(o[j + 1], 0xffu << (8 * b)), xv[4 * j + 4 + b], sb);
        }
        const uint32_t m = __byte_perm(o[j], o[j + 1], 0x3373u); /* bytes 3 of both */
        sa = fmaf(kv_dn(m, 0xffu), xv[4 * j + 3], sa);
        sb = fmaf(kv_dn(m, 0xff00u), xv[4 * j + 7], sb);
    }
    return sa + sb;
}
/* The 32 levels of a slice as floats, entry - OFF (dequant.cu, get_rows.cu). */
static __device__ __forceinline__ void kv_lut32_levels(uint4 qv, const kv_lut_regs &t, int off,
                                                       float *v)
{
    const uint32_t w[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint32_t oa, ob;
        kv_lut8(w[k], t, &oa, &ob);
#pragma unroll
        for (int b = 0; b < 4; b++) {
            v[8 * k + b] = (float)((int)kv_byte(oa, b) - off);
            v[8 * k + 4 + b] = (float)((int)kv_byte(ob, b) - off);
        }
    }
}
/* Host: a 32-element group's codes in ggml's order (byte j: element j low
 * nibble, j + 16 high) at QS to the device slice at P0 (code e at nibble e). */
static inline void kv_lut_pack(const uint8_t *qs, uint8_t *p0)
{
    uint8_t c[32];
    for (int j = 0; j < 16; j++)
        c[j] = qs[j] & 15, c[j + 16] = qs[j] >> 4;
    kv_bitpack(c, 32, 4, p0);
}
/* IQ4's table, ggml's kvalues_iq4nl (quant_iq4nl_values) + 127. */
#define KV_IQ4_OFF 127
#define KV_IQ4_TABLE                                                                        \
    {kv_lut4(KV_IQ4_OFF, -127, -104, -83, -65), kv_lut4(KV_IQ4_OFF, -49, -35, -22, -10),    \
     kv_lut4(KV_IQ4_OFF, 1, 13, 25, 38), kv_lut4(KV_IQ4_OFF, 53, 69, 89, 113)}

/* IQ4_NL: planes qs[16] (codes in nibble order), d. File: d, qs (Q4_0's
 * order). Value d kvalues[q]. */
template <> struct kv_fmt<KV_WF_IQ4_NL> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_IQ4_NL;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32, BB = 18, NP = 2;
    static constexpr int PB[NP] = {16, 2}, SRC[NP] = {-1, -1};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_lut_bit(e); }
    static inline void pack(const uint8_t *blk, uint8_t *p0, uint8_t *p1)
    {
        kv_lut_pack(blk + 2, p0);
        memcpy(p1, blk, 2);
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        const kv_lut_regs t = KV_LUT_REGS(KV_IQ4_TABLE);
        const float d = kv_h2f(kv_ld16(KV_PLANE(KV_WF_IQ4_NL, row, nb, 1) + 2 * u));
        kv_lut32_levels(__ldg((const uint4 *)(row + 16 * u)), t, KV_IQ4_OFF, v);
#pragma unroll
        for (int i = 0; i < 32; i++)
            v[i] = d * v[i];
    }
    static __host__ __device__ constexpr uint32_t lut(int k)
    {
        return k < 4 ? kv_lut_regs KV_LUT_REGS(KV_IQ4_TABLE).t[k] : KV_LUT_SEL;
    }
    /* d (sum entry x - 127 sum x) */
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int, const float *xv,
                                                const float *xs, const kv_lut_regs &t)
    {
        const float s = kv_dot_lut32(__ldg((const uint4 *)p[0]), t, xv);
        return kv_h2f(kv_ld16(p[1])) * fmaf(s, KV_DN_BACK, -(float)KV_IQ4_OFF * xs[0]);
    }
};

/* Sub-block IB's scale of an IQ4_XS header H (d | scales_h << 16,
 * scales_l): d (6-bit scale - 32), low 4 bits from the nibble IB of
 * scales_l, high 2 from bits 2 IB of scales_h; IB is a run-time value (the
 * lane's unit), so shifts, no branch. */
static __device__ __forceinline__ float kv_iq4xs_scale(uint2 h, int ib)
{
    const uint32_t sc = ((h.y >> (4 * ib)) & 15u) | ((h.x >> (16 + 2 * ib)) & 3u) << 4;
    return kv_h2f(h.x) * (float)((int)sc - 32);
}

/* IQ4_XS: planes qs[128] (8 groups, codes in nibble order), header[8] (d,
 * scales_h, scales_l[4]). File: header, qs. Unit ib (0..7) is sub-block ib
 * of 32: value d (sc - 32) kvalues[q]. */
template <> struct kv_fmt<KV_WF_IQ4_XS> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_IQ4_XS;
    static constexpr int64_t COLS = 256;
    static constexpr int UE = 32, BB = 136, NP = 2;
    static constexpr int PB[NP] = {128, 8}, SRC[NP] = {-1, -1};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_lut_bit(e); }
    static inline void pack(const uint8_t *blk, uint8_t *p0, uint8_t *p1)
    {
        for (int ib = 0; ib < 8; ib++)
            kv_lut_pack(blk + 8 + 16 * ib, p0 + 16 * ib);
        memcpy(p1, blk, 8);
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        const kv_lut_regs t = KV_LUT_REGS(KV_IQ4_TABLE);
        const uint2 h = __ldg((const uint2 *)(KV_PLANE(KV_WF_IQ4_XS, row, nb, 1) + 8 * (u >> 3)));
        const float dl = kv_iq4xs_scale(h, (int)(u & 7));
        kv_lut32_levels(__ldg((const uint4 *)(row + 16 * u)), t, KV_IQ4_OFF, v);
#pragma unroll
        for (int i = 0; i < 32; i++)
            v[i] = dl * v[i];
    }
    static __host__ __device__ constexpr uint32_t lut(int k)
    {
        return k < 4 ? kv_lut_regs KV_LUT_REGS(KV_IQ4_TABLE).t[k] : KV_LUT_SEL;
    }
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int ul, const float *xv,
                                                const float *xs, const kv_lut_regs &t)
    {
        const float s = kv_dot_lut32(__ldg((const uint4 *)(p[0] + 16 * ul)), t, xv);
        const float dl = kv_iq4xs_scale(__ldg((const uint2 *)p[1]), ul);
        return dl * fmaf(s, KV_DN_BACK, -(float)KV_IQ4_OFF * xs[0]);
    }
};

/* MXFP4's table, ggml's kvalues_mxfp4 (E2M1 doubled: quant_mxfp4_values)
 * + 12. */
#define KV_MXFP4_OFF 12
#define KV_MXFP4_TABLE                                                                      \
    {kv_lut4(KV_MXFP4_OFF, 0, 1, 2, 3), kv_lut4(KV_MXFP4_OFF, 4, 6, 8, 12),                 \
     kv_lut4(KV_MXFP4_OFF, 0, -1, -2, -3), kv_lut4(KV_MXFP4_OFF, -4, -6, -8, -12)}
/* The E8M0 exponent E as the scale of the doubled levels, 2^(E - 128),
 * built from bits as the CPU's mxfp4_scale (E < 2 a denormal). */
static __device__ __forceinline__ float kv_e8m0_half(uint32_t e)
{
    return __uint_as_float(e < 2 ? 0x00200000u << e : (e - 1) << 23);
}

/* MXFP4: planes qs[16] (codes in nibble order), e. File: e, qs (Q4_0's
 * order). Value 2^(e - 128) kvalues_mxfp4[q]. */
template <> struct kv_fmt<KV_WF_MXFP4> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_MXFP4;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32, BB = 17, NP = 2;
    static constexpr int PB[NP] = {16, 1}, SRC[NP] = {-1, -1};
    static constexpr uint8_t QXOR = 0;
    static constexpr bool XSUM = true;
    static constexpr int XG = 32; /* elements a sum of x (XS) covers */
    /* The bit of unit element E's field in the word its dot ANDs it from. */
    static __host__ __device__ constexpr int xbit(int e) { return kv_lut_bit(e); }
    static inline void pack(const uint8_t *blk, uint8_t *p0, uint8_t *p1)
    {
        kv_lut_pack(blk + 1, p0);
        p1[0] = blk[0];
    }
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t nb, int64_t u, float *v)
    {
        const kv_lut_regs t = KV_LUT_REGS(KV_MXFP4_TABLE);
        const float d = kv_e8m0_half(__ldg(KV_PLANE(KV_WF_MXFP4, row, nb, 1) + u));
        kv_lut32_levels(__ldg((const uint4 *)(row + 16 * u)), t, KV_MXFP4_OFF, v);
#pragma unroll
        for (int i = 0; i < 32; i++)
            v[i] = d * v[i];
    }
    static __host__ __device__ constexpr uint32_t lut(int k)
    {
        return k < 4 ? kv_lut_regs KV_LUT_REGS(KV_MXFP4_TABLE).t[k] : KV_LUT_SEL;
    }
    /* d (sum entry x - 12 sum x) */
    static __device__ __forceinline__ float dot(const uint8_t *const *p, int, const float *xv,
                                                const float *xs, const kv_lut_regs &t)
    {
        const float s = kv_dot_lut32(__ldg((const uint4 *)p[0]), t, xv);
        return kv_e8m0_half(__ldg(p[1])) * fmaf(s, KV_DN_BACK, -(float)KV_MXFP4_OFF * xs[0]);
    }
};

/* Whether format F packs its quant planes (0 and 1) itself, from each file
 * block (pack), instead of copying fields. */
template <int F, typename = void> struct kv_packs : std::false_type {};
template <int F>
struct kv_packs<F, std::void_t<decltype(&kv_fmt<F>::pack)>> : std::true_type {};

/* Whether the matvec stages x for format F scaled by 2^(KV_DN_S - xbit(e))
 * (the denormal decodes: every quantised format but Q8_0). */
template <int F, typename = void> struct kv_xscaled : std::false_type {};
template <int F>
struct kv_xscaled<F, std::void_t<decltype(kv_fmt<F>::xbit(0))>> : std::true_type {};

/* Whether format F's dot reads a 16-entry table (kv_lut_regs), which the
 * matvec loads for it. */
template <int F, typename = void> struct kv_tabled : std::false_type {};
template <int F>
struct kv_tabled<F, std::void_t<decltype(kv_fmt<F>::lut(0))>> : std::true_type {};

/* Format F's dot over one row's unit (kv_fmt<F>::dot); LR, the table the
 * caller loaded for a table format (kv_tabled), is ignored by the others.
 * Every matvec body calls the dots through this, so none needs to know
 * which formats take a table. */
template <int F>
static __device__ __forceinline__ float kv_fdot(const uint8_t *const *p, int ul, const float *xv,
                                                const float *xs, const kv_lut_regs &lr)
{
    if constexpr (kv_tabled<F>::value)
        return kv_fmt<F>::dot(p, ul, xv, xs, lr);
    else
        return kv_fmt<F>::dot(p, ul, xv, xs);
}

/* Whether format F is repacked at upload (the quantised ones). */
template <int F, typename = void> struct kv_repacked : std::false_type {};
template <int F>
struct kv_repacked<F, std::void_t<decltype(kv_fmt<F>::PB)>> : std::true_type {};

/* Bytes of one device row of NCOLS elements of TYPE: the file's row, padded
 * to 16 bytes for the repacked formats. */
static inline size_t kv_row_bytes(enum ggml_type type, int64_t ncols)
{
    size_t rb = quant_row_size(type, ncols);
#define KV_WF_RB(n)                                                                         \
    if constexpr (kv_repacked<KV_WF_##n>::value)                                            \
        if (kv_fmt<KV_WF_##n>::TYPE == type)                                                \
            return (rb + 15) / 16 * 16;
    KV_WF_LIST(KV_WF_RB)
#undef KV_WF_RB
    return rb;
}

template <int F>
static inline void kv_repack_rows_f(const uint8_t *src, uint8_t *dst, int64_t nrows, int64_t ncols,
                                    size_t dst_row_bytes)
{
    using T = kv_fmt<F>;
    const int64_t nb = ncols / T::COLS; /* COLS is the block's elements */
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *s = src + r * nb * T::BB;
        uint8_t *d = dst + r * (int64_t)dst_row_bytes;
        int64_t off = 0;
        if constexpr (kv_packs<F>::value)
            for (int64_t b = 0; b < nb; b++)
                T::pack(s + b * T::BB, d + b * T::PB[0], d + nb * T::PB[0] + b * T::PB[1]);
        for (int k = 0; k < T::NP; off += nb * T::PB[k], k++) {
            uint8_t *p = d + off;
            if (kv_packs<F>::value && k < 2)
                continue; /* written by pack */
            for (int64_t b = 0; b < nb; b++) {
                memcpy(p + b * T::PB[k], s + b * T::BB + T::SRC[k], (size_t)T::PB[k]);
                if (k == 0 && T::QXOR)
                    for (int i = 0; i < T::PB[0]; i++)
                        p[b * T::PB[0] + i] ^= T::QXOR;
            }
        }
        size_t used = (size_t)(nb * T::BB);
        memset(d + used, 0, dst_row_bytes - used); /* the padding */
    }
}

/* Writes NROWS rows of NCOLS elements from the file's layout at SRC to the
 * device layout of FMT at DST (kv_row_bytes a row), on the host; formats
 * that are not repacked are copied as they are. */
static inline void kv_repack_rows(enum kv_wfmt fmt, const void *src, void *dst, int64_t nrows,
                                  int64_t ncols, size_t src_row_bytes, size_t dst_row_bytes)
{
    switch (fmt) {
#define KV_WF_REPACK(n)                                                                     \
    case KV_WF_##n:                                                                         \
        if constexpr (kv_repacked<KV_WF_##n>::value) {                                      \
            kv_repack_rows_f<KV_WF_##n>((const uint8_t *)src, (uint8_t *)dst, nrows, ncols, \
                                        dst_row_bytes);                                     \
            return;                                                                         \
        }                                                                                   \
        break;
        KV_WF_LIST(KV_WF_REPACK)
#undef KV_WF_REPACK
    default:
        break;
    }
    for (int64_t r = 0; r < nrows; r++)
        memcpy((uint8_t *)dst + r * dst_row_bytes, (const uint8_t *)src + r * src_row_bytes,
               src_row_bytes);
}

/* Weight elements one thread of the decode matvec (matvec.cu) consumes per
 * pass of its steady-state loop: one unit, unless the kernel for that format
 * says otherwise below. scripts/kernel-report divides the loop's SASS
 * instruction count by it. */
template <int F>
constexpr int kv_mv_ept = kv_repacked<F>::value ? 4 * kv_fmt<F>::UE : kv_fmt<F>::UE;
/* The quantised kernel (k_matvec_q): one unit of each of its MV_ROWS (4) rows. */
/* The staged kernel (F32, F16, BF16): 8 elements of each of its MV_ROWS (4) rows. */
template <> constexpr int kv_mv_ept<KV_WF_F32> = 32;
template <> constexpr int kv_mv_ept<KV_WF_F16> = 32;
template <> constexpr int kv_mv_ept<KV_WF_BF16> = 32;

/* The format a matrix of tensor type TYPE with rows of NCOLS is read with:
 * the first row of KV_WF_LIST with that type whose COLS divides NCOLS
 * (vector forms are listed before scalar ones), or KV_WF_NONE. */
static inline enum kv_wfmt kv_wfmt_of(enum ggml_type type, int64_t ncols)
{
#define KV_WF_PICK(n)                                                                       \
    if (kv_fmt<KV_WF_##n>::TYPE == type && ncols % kv_fmt<KV_WF_##n>::COLS == 0)            \
        return KV_WF_##n;
    KV_WF_LIST(KV_WF_PICK)
#undef KV_WF_PICK
    return KV_WF_NONE;
}

/* Calls FN(std::integral_constant<int, F>) for the run-time format FMT, so a
 * launcher instantiates its kernel for F (decltype(f)::value); returns the
 * launch status, or cudaErrorInvalidValue for KV_WF_NONE. */
template <typename Fn> static inline cudaError_t kv_wf_dispatch(enum kv_wfmt fmt, Fn &&fn)
{
    switch (fmt) {
#define KV_WF_CASE(n)                                                                       \
    case KV_WF_##n:                                                                         \
        fn(std::integral_constant<int, KV_WF_##n>{});                                       \
        return cudaGetLastError();
        KV_WF_LIST(KV_WF_CASE)
#undef KV_WF_CASE
    default:
        return cudaErrorInvalidValue;
    }
}

#endif
