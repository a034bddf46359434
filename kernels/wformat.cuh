/* wformat.cuh - device-side decoders of the weight formats, shared by the
 * matrix-vector, dequantise and embedding kernels (internal to kernels/).
 *
 * A row is cut into "units" of UE consecutive elements: one 32-element block
 * for Q4_0..Q8_0, half a super-block's sub-block pair (64) for Q4_K/Q5_K, one
 * 32-element quadrant of a half for Q6_K, 8 (or 1) elements for the float
 * formats. One thread decodes one unit into registers (the loops are fully
 * unrolled, so v[] never reaches local memory) from loads as wide as the
 * block's alignment allows: blocks of 144 and 176 bytes are 16-byte aligned
 * and read with 16-byte loads; 18-, 22-, 34- and 210-byte blocks only
 * guarantee 2 bytes, 20 and 24 bytes guarantee 4 and 8. The arithmetic
 * follows docs/model-formats.md section 2 exactly.
 *
 * Each format is one traits row, kv_fmt<F>: UE (elements a unit), TYPE (the
 * file's tensor type it reads), COLS (what a row's length must be a multiple
 * of) and decode. kv_wfmt_of and kv_wf_dispatch read the rows, so no other
 * code switches over formats or tensor types.
 */
#ifndef KVCHAT_WFORMAT_CUH
#define KVCHAT_WFORMAT_CUH

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
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
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
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        v[0] = __ldg((const float *)row + u);
    }
};
template <> struct kv_fmt<KV_WF_F16> {
    static constexpr int UE_BYTES = 16; /* bytes of a unit */
    static constexpr enum ggml_type TYPE = GGML_TYPE_F16;
    static constexpr int64_t COLS = 8;
    static constexpr int UE = 8;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
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
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        v[0] = kv_h2f(kv_ld16(row + 2 * u));
    }
};
template <> struct kv_fmt<KV_WF_BF16> {
    static constexpr int UE_BYTES = 16; /* bytes of a unit */
    static constexpr enum ggml_type TYPE = GGML_TYPE_BF16;
    static constexpr int64_t COLS = 8;
    static constexpr int UE = 8;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
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
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        v[0] = __uint_as_float(kv_ld16(row + 2 * u) << 16);
    }
};

/* Q8_0: d, qs[32] int8; 34 bytes. */
template <> struct kv_fmt<KV_WF_Q8_0> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q8_0;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        const uint8_t *b = row + u * 34;
        float d = kv_h2f(kv_ld16(b));
#pragma unroll
        for (int i = 0; i < 16; i++) {
            uint32_t w = kv_ld16(b + 2 + 2 * i);
            v[2 * i] = d * (float)(int8_t)(w & 0xff);
            v[2 * i + 1] = d * (float)(int8_t)(w >> 8);
        }
    }
};

/* Q4_0: d, qs[16]; byte j holds element j (low nibble) and j+16 (high). */
template <> struct kv_fmt<KV_WF_Q4_0> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q4_0;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        const uint8_t *b = row + u * 18;
        float d = kv_h2f(kv_ld16(b));
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t w = kv_ld16(b + 2 + 2 * i);
#pragma unroll
            for (int k = 0; k < 2; k++) {
                uint32_t q = kv_byte(w, k);
                v[2 * i + k] = d * ((float)(q & 15) - 8.0f);
                v[2 * i + k + 16] = d * ((float)(q >> 4) - 8.0f);
            }
        }
    }
};

/* Q4_1: d, m, qs[16]; value d*q + m. */
template <> struct kv_fmt<KV_WF_Q4_1> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q4_1;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        const uint8_t *b = row + u * 20;
        uint32_t dm = kv_ld32(b);
        float d = kv_h2f(dm), m = kv_h2f(dm >> 16);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t w = kv_ld32(b + 4 + 4 * i);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                uint32_t q = kv_byte(w, k);
                v[4 * i + k] = d * (float)(q & 15) + m;
                v[4 * i + k + 16] = d * (float)(q >> 4) + m;
            }
        }
    }
};

/* Q5_0: d, qh[4], qs[16]; fifth bit of element j is bit j of qh. */
template <> struct kv_fmt<KV_WF_Q5_0> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q5_0;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        const uint8_t *b = row + u * 22;
        float d = kv_h2f(kv_ld16(b));
        uint32_t h = kv_ld16(b + 2) | (kv_ld16(b + 4) << 16);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t w = kv_ld16(b + 6 + 2 * i);
#pragma unroll
            for (int k = 0; k < 2; k++) {
                int j = 2 * i + k;
                uint32_t q = kv_byte(w, k);
                uint32_t lo = (q & 15) | (((h >> j) & 1) << 4);
                uint32_t hi = (q >> 4) | (((h >> (j + 16)) & 1) << 4);
                v[j] = d * ((float)lo - 16.0f);
                v[j + 16] = d * ((float)hi - 16.0f);
            }
        }
    }
};

/* Q5_1: d, m, qh[4], qs[16]; value d*q + m. */
template <> struct kv_fmt<KV_WF_Q5_1> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q5_1;
    static constexpr int64_t COLS = 32;
    static constexpr int UE = 32;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        const uint8_t *b = row + u * 24;
        uint32_t dm = kv_ld32(b);
        float d = kv_h2f(dm), m = kv_h2f(dm >> 16);
        uint32_t h = kv_ld32(b + 4);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t w = kv_ld32(b + 8 + 4 * i);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                int j = 4 * i + k;
                uint32_t q = kv_byte(w, k);
                uint32_t lo = (q & 15) | (((h >> j) & 1) << 4);
                uint32_t hi = (q >> 4) | (((h >> (j + 16)) & 1) << 4);
                v[j] = d * (float)lo + m;
                v[j + 16] = d * (float)hi + m;
            }
        }
    }
};

/* Byte I (0..11) of the K-quants' packed scales, held as three words. */
static __device__ __forceinline__ uint32_t kv_kbyte(uint32_t s0, uint32_t s1, uint32_t s2, int i)
{
    uint32_t w = i < 4 ? s0 : (i < 8 ? s1 : s2);
    return kv_byte(w, i & 3);
}

/* K-quant 6-bit scale and min of sub-block J (0..7) from the 12 packed bytes
 * (S0..S2 are bytes 0-3, 4-7, 8-11); docs/model-formats.md 2.1. */
static __device__ __forceinline__ void kv_scale_min_k4(int j, uint32_t s0, uint32_t s1, uint32_t s2,
                                                       float *sc, float *mn)
{
    if (j < 4) {
        *sc = (float)(kv_kbyte(s0, s1, s2, j) & 63);
        *mn = (float)(kv_kbyte(s0, s1, s2, j + 4) & 63);
    } else {
        uint32_t a = kv_kbyte(s0, s1, s2, j + 4);
        uint32_t lo = kv_kbyte(s0, s1, s2, j - 4);
        uint32_t me = kv_kbyte(s0, s1, s2, j);
        *sc = (float)((a & 0xF) | ((lo >> 6) << 4));
        *mn = (float)((a >> 4) | ((me >> 6) << 4));
    }
}

/* Q4_K: d, dmin, scales[12], qs[128]; 144 bytes. Unit c (0..3) of a
 * super-block is outputs 64c..64c+63: low nibbles of qs[32c..] with
 * sub-block 2c, then high nibbles with sub-block 2c+1. */
template <> struct kv_fmt<KV_WF_Q4_K> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q4_K;
    static constexpr int64_t COLS = 256;
    static constexpr int UE = 64;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        const uint8_t *b = row + (u >> 2) * 144;
        int c = (int)(u & 3);
        uint4 hd = __ldg((const uint4 *)b); /* d, dmin, scales[0..11] */
        float d = kv_h2f(hd.x), dmin = kv_h2f(hd.x >> 16);
        float sc0, mn0, sc1, mn1;
        kv_scale_min_k4(2 * c, hd.y, hd.z, hd.w, &sc0, &mn0);
        kv_scale_min_k4(2 * c + 1, hd.y, hd.z, hd.w, &sc1, &mn1);
        float d0 = d * sc0, m0 = dmin * mn0, d1 = d * sc1, m1 = dmin * mn1;
        const uint4 *qp = (const uint4 *)(b + 16 + 32 * c);
        uint4 qa = __ldg(qp), qb = __ldg(qp + 1);
        uint32_t w[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
        for (int l = 0; l < 32; l++) {
            uint32_t q = kv_byte(w[l >> 2], l & 3);
            v[l] = d0 * (float)(q & 15) - m0;
            v[l + 32] = d1 * (float)(q >> 4) - m1;
        }
    }
};

/* Q5_K: d, dmin, scales[12], qh[32], qs[128]; 176 bytes. As Q4_K; the fifth
 * bit of output l of unit c is bit 2c (low nibble) or 2c+1 (high) of qh[l]. */
template <> struct kv_fmt<KV_WF_Q5_K> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q5_K;
    static constexpr int64_t COLS = 256;
    static constexpr int UE = 64;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        const uint8_t *b = row + (u >> 2) * 176;
        int c = (int)(u & 3);
        uint4 hd = __ldg((const uint4 *)b);
        float d = kv_h2f(hd.x), dmin = kv_h2f(hd.x >> 16);
        float sc0, mn0, sc1, mn1;
        kv_scale_min_k4(2 * c, hd.y, hd.z, hd.w, &sc0, &mn0);
        kv_scale_min_k4(2 * c + 1, hd.y, hd.z, hd.w, &sc1, &mn1);
        float d0 = d * sc0, m0 = dmin * mn0, d1 = d * sc1, m1 = dmin * mn1;
        const uint4 *hp = (const uint4 *)(b + 16);
        uint4 ha = __ldg(hp), hb = __ldg(hp + 1);
        uint32_t h[8] = {ha.x, ha.y, ha.z, ha.w, hb.x, hb.y, hb.z, hb.w};
        const uint4 *qp = (const uint4 *)(b + 48 + 32 * c);
        uint4 qa = __ldg(qp), qb = __ldg(qp + 1);
        uint32_t w[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
        for (int l = 0; l < 32; l++) {
            uint32_t q = kv_byte(w[l >> 2], l & 3);
            uint32_t hh = kv_byte(h[l >> 2], l & 3);
            uint32_t lo = (q & 15) | (((hh >> (2 * c)) & 1) << 4);
            uint32_t hi = (q >> 4) | (((hh >> (2 * c + 1)) & 1) << 4);
            v[l] = d0 * (float)lo - m0;
            v[l + 32] = d1 * (float)hi - m1;
        }
    }
};

/* Q6_K: ql[128], qh[64], scales[16] int8, d; 210 bytes. Unit r (0..7) of a
 * super-block is half h = r/4, quadrant qd = r%4: outputs 128h + 32qd + l,
 * low 4 bits from ql[64h + 32(qd&1) + l] (low nibble for qd < 2), high 2
 * bits from qh[32h + l] >> 2qd, scale scales[8h + l/16 + 2qd]. */
template <> struct kv_fmt<KV_WF_Q6_K> {
    static constexpr enum ggml_type TYPE = GGML_TYPE_Q6_K;
    static constexpr int64_t COLS = 256;
    static constexpr int UE = 32;
    static __device__ __forceinline__ void decode(const uint8_t *row, int64_t u, float *v)
    {
        const uint8_t *b = row + (u >> 3) * 210;
        int r = (int)(u & 7), h = r >> 2, qd = r & 3;
        float d = kv_h2f(kv_ld16(b + 208));
        uint32_t scw = kv_ld16(b + 192 + 8 * h + 2 * qd);
        float da = d * (float)(int8_t)(scw & 0xff), db = d * (float)(int8_t)(scw >> 8);
        const uint8_t *ql = b + 64 * h + 32 * (qd & 1);
        const uint8_t *qh = b + 128 + 32 * h;
        int shift_lo = (qd >> 1) * 4, shift_hi = 2 * qd;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            uint32_t wl = kv_ld16(ql + 2 * i), wh = kv_ld16(qh + 2 * i);
#pragma unroll
            for (int k = 0; k < 2; k++) {
                int l = 2 * i + k;
                uint32_t lo = (kv_byte(wl, k) >> shift_lo) & 15;
                uint32_t hi = (kv_byte(wh, k) >> shift_hi) & 3;
                float q = (float)((int)(lo | (hi << 4)) - 32);
                v[l] = (l < 16 ? da : db) * q;
            }
        }
    }
};

/* Weight elements one thread of the decode matvec (matvec.cu) consumes per
 * pass of its steady-state loop: one unit, unless the kernel for that format
 * says otherwise below. scripts/kernel-report divides the loop's SASS
 * instruction count by it. */
template <int F> constexpr int kv_mv_ept = kv_fmt<F>::UE;
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
