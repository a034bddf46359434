/* dot_avx512.c - AVX-512 dot products for decode: rows of one weight matrix
 * times one token's float input (quant_dot, quant_dot_rows), for the types
 * the measured models spend their decode time in (Q8_0, Q4_1, Q5_0, Q4_K,
 * Q6_K).
 *
 * Built with this file's own AVX-512 flags (backend/quant/CMakeLists.txt)
 * and only ever called after quant.c has seen the CPU support them at run
 * time, so a build for a machine without AVX-512 still runs its AVX2 or
 * scalar kernels. Nothing outside the kernels below lives here: any code the
 * compiler vectorises in this file must be behind that check.
 *
 * Rules every kernel follows:
 * - Codes become exact int32 (offsets applied as integers), then float,
 *   multiplied with the float input: activations are never quantised. The
 *   result differs from dot_ref.c's only in float summation order.
 * - A kernel takes NR rows STRIDE bytes apart and writes NR outputs, so the
 *   arguments are checked once per tile of rows, not per row. Rows are done
 *   one after another: two rows interleaved (sharing the loads of X) were
 *   5-20% faster in cache but 3-4x slower streaming from DRAM, where every
 *   decode matrix of these models lives (two interleaved streams that the
 *   hardware prefetcher did not follow; see backend/cpu/NOTES.md).
 * - 512-bit vectors of 16 floats: per 32 weights half the widenings,
 *   conversions and FMAs of the AVX2 kernels (see backend/cpu/NOTES.md,
 *   "Decode", for the figures).
 */
#include "quant_internal.h"

#ifdef QUANT_HAVE_AVX512

#include <immintrin.h>

/* The fp16 scale at P as 16 float lanes (one broadcast, one conversion). */
static inline __m512 set1_h16(uint16_t h) { return _mm512_cvtph_ps(_mm256_set1_epi16((short)h)); }

/* 16 bytes at P widened to 16 unsigned / signed dwords. */
static inline __m512i load_u8x16(const uint8_t *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}
static inline __m512i load_i8x16(const int8_t *p)
{
    return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p));
}

/* sum over 32 codes (two vectors of 16 dwords) times X[0..31], 16 lanes. */
static inline __m512 dot32_i32(__m512i a, __m512i b, const float *x)
{
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(b), _mm512_loadu_ps(x + 16),
                           _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_loadu_ps(x)));
}

/* ---- 32-element blocks ----------------------------------------------------- */

/* One block of each type against X[0..31], added to ACC; the types with a
 * min add m * XS (the sum of those 32 inputs) to the scalar *MACC. One
 * signature for all, so one row loop (ROWS32) serves them. */

static inline void step_q8_0(const blk_q8_0 *w, const float *x, float xs, __m512 *acc, float *macc)
{
    (void)xs, (void)macc;
    __m512 p = dot32_i32(load_i8x16(w->qs), load_i8x16(w->qs + 16), x);
    *acc = _mm512_fmadd_ps(set1_h16(w->d), p, *acc);
}

/* Low nibbles are elements 0..15, high nibbles 16..31. */
static inline void step_q4_1(const blk_q4_1 *w, const float *x, float xs, __m512 *acc, float *macc)
{
    __m512i b = load_u8x16(w->qs);
    __m512i lo = _mm512_and_si512(b, _mm512_set1_epi32(0x0F)), hi = _mm512_srli_epi32(b, 4);
    *acc = _mm512_fmadd_ps(set1_h16(w->d), dot32_i32(lo, hi, x), *acc);
    *macc += h2f(w->m) * xs;
}

/* Q5_0: nibble - 16 where the fifth bit (bit j of qh for element j) is
 * clear, one masked subtraction per 16 codes. */
static inline void step_q5_0(const blk_q5_0 *w, const float *x, float xs, __m512 *acc, float *macc)
{
    (void)xs, (void)macc;
    uint32_t qh = load_u32le(w->qh);
    const __m512i s16 = _mm512_set1_epi32(16);
    __m512i b = load_u8x16(w->qs);
    __m512i lo = _mm512_and_si512(b, _mm512_set1_epi32(0x0F)), hi = _mm512_srli_epi32(b, 4);
    lo = _mm512_mask_sub_epi32(lo, (__mmask16)~qh, lo, s16);
    hi = _mm512_mask_sub_epi32(hi, (__mmask16)~(qh >> 16), hi, s16);
    *acc = _mm512_fmadd_ps(set1_h16(w->d), dot32_i32(lo, hi, x), *acc);
}

/* NR rows of NB 32-element blocks of type T, one row at a time with two
 * accumulators over alternate blocks. XS is NULL for the types without a
 * min, so it is read only where the step uses it. */
#define ROWS32(T, HAS_MIN)                                                                              \
    void quant_rows_avx512_##T(const void *rows, size_t stride, int64_t nr, const float *x,              \
                               const float *xs, int64_t nb, float *y)                                    \
    {                                                                                                    \
        const uint8_t *base = rows;                                                                      \
        for (int64_t r = 0; r < nr; r++) {                                                               \
            const blk_##T *w = (const blk_##T *)(base + (size_t)r * stride);                             \
            __m512 a0 = _mm512_setzero_ps(), a1 = a0;                                                    \
            float m0 = 0, m1 = 0;                                                                        \
            int64_t i = 0;                                                                               \
            for (; i + 1 < nb; i += 2) {                                                                 \
                prefetch_ahead(&w[i], 2 * sizeof *w);                                                    \
                step_##T(&w[i], x + 32 * i, HAS_MIN ? xs[i] : 0, &a0, &m0);                              \
                step_##T(&w[i + 1], x + 32 * i + 32, HAS_MIN ? xs[i + 1] : 0, &a1, &m1);                 \
            }                                                                                            \
            if (i < nb)                                                                                  \
                step_##T(&w[i], x + 32 * i, HAS_MIN ? xs[i] : 0, &a0, &m0);                              \
            y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + (m0 + m1);                              \
        }                                                                                                \
    }

ROWS32(q8_0, 0)
ROWS32(q5_0, 0)
ROWS32(q4_1, 1)
#undef ROWS32

/* ---- 256-element super-blocks ---------------------------------------------- */

/* 16 codes held as bytes (lane group G of V, 0..3) widened to 16 floats. */
#define I8X16_PS(v, g) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32((v), (g))))

/* One Q4_K super-block against X[0..255]: chunk c of 32 bytes holds
 * sub-block 2c in its low nibbles and 2c+1 in its high ones. The codes are
 * widened straight from the block (one shuffle per 16 codes; splitting 64
 * bytes with byte ops first and extracting lanes took two, and measured
 * slower), and the four sub-block products of a pair of chunks go to their
 * own accumulators ACC[0..3], so the FMA latency never waits on itself. */
static inline void step_q4_K(const blk_q4_K *w, const float *x, const float *xs, __m512 acc[4], __m256 *macc)
{
    float dsc[8];
    kquant_scales(w->d, w->dmin, w->scales, xs, dsc, macc);
    const __m512i m4 = _mm512_set1_epi32(0x0F);
    for (int c = 0; c < 4; c++) {
        __m512i b0 = load_u8x16(w->qs + 32 * c), b1 = load_u8x16(w->qs + 32 * c + 16);
        const float *xc = x + 64 * c;
        __m512 plo = dot32_i32(_mm512_and_si512(b0, m4), _mm512_and_si512(b1, m4), xc);
        __m512 phi = dot32_i32(_mm512_srli_epi32(b0, 4), _mm512_srli_epi32(b1, 4), xc + 32);
        int k = 2 * (c & 1);
        acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c]), plo, acc[k]);
        acc[k + 1] = _mm512_fmadd_ps(_mm512_set1_ps(dsc[2 * c + 1]), phi, acc[k + 1]);
    }
}

/* One Q6_K super-block, a half of 128 at a time from 64 bytes of ql and 32
 * of qh: the low nibbles of ql[0..63] are elements 0..63 of the half, the
 * high nibbles 64..127, each with two bits of qh[l % 32] (bits 0-1, 2-3 for
 * the low nibbles of ql[l], ql[l+32]; 4-5, 6-7 for the high ones). qh is
 * loaded into both 256-bit halves and shifted by a different count in each
 * (16-bit lanes; the bits that cross into the neighbour byte are masked
 * off), so one and and one ternary merge make 64 six-bit codes, one byte
 * subtraction applies the -32. Every 16 elements share one scale: vector v
 * of the half is sub-block 8h+v, into accumulator v % 4. */
static inline void step_q6_K(const blk_q6_K *w, const float *x, __m512 acc[4])
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30), off = _mm512_set1_epi8(32);
    /* shift counts per 16-bit lane: low 256 bits, high 256 bits */
    const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m512 d = set1_h16(w->d);
    __m128i sc8 = _mm_loadu_si128((const __m128i *)w->scales);
    float dsc[16];
    _mm512_storeu_ps(dsc, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc8))));
    for (int h = 0; h < 2; h++) {
        __m512i ql = _mm512_loadu_si512(w->ql + 64 * h);
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w->qh + 32 * h)));
        __m512i hlo = _mm512_and_si512(_mm512_sllv_epi16(qh, shl), m2);
        __m512i hhi = _mm512_and_si512(_mm512_srlv_epi16(qh, shr), m2);
        /* (a & b) | c */
        __m512i lo = _mm512_ternarylogic_epi32(ql, m4, hlo, 0xEA);
        __m512i hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), m4, hhi, 0xEA);
        lo = _mm512_sub_epi8(lo, off);
        hi = _mm512_sub_epi8(hi, off);
        const float *xh = x + 128 * h;
        const float *ds = dsc + 8 * h;
        __m512 p0 = _mm512_mul_ps(I8X16_PS(lo, 0), _mm512_loadu_ps(xh));
        __m512 p1 = _mm512_mul_ps(I8X16_PS(lo, 1), _mm512_loadu_ps(xh + 16));
        __m512 p2 = _mm512_mul_ps(I8X16_PS(lo, 2), _mm512_loadu_ps(xh + 32));
        __m512 p3 = _mm512_mul_ps(I8X16_PS(lo, 3), _mm512_loadu_ps(xh + 48));
        acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(ds[0]), p0, acc[0]);
        acc[1] = _mm512_fmadd_ps(_mm512_set1_ps(ds[1]), p1, acc[1]);
        acc[2] = _mm512_fmadd_ps(_mm512_set1_ps(ds[2]), p2, acc[2]);
        acc[3] = _mm512_fmadd_ps(_mm512_set1_ps(ds[3]), p3, acc[3]);
        p0 = _mm512_mul_ps(I8X16_PS(hi, 0), _mm512_loadu_ps(xh + 64));
        p1 = _mm512_mul_ps(I8X16_PS(hi, 1), _mm512_loadu_ps(xh + 80));
        p2 = _mm512_mul_ps(I8X16_PS(hi, 2), _mm512_loadu_ps(xh + 96));
        p3 = _mm512_mul_ps(I8X16_PS(hi, 3), _mm512_loadu_ps(xh + 112));
        acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(ds[4]), p0, acc[0]);
        acc[1] = _mm512_fmadd_ps(_mm512_set1_ps(ds[5]), p1, acc[1]);
        acc[2] = _mm512_fmadd_ps(_mm512_set1_ps(ds[6]), p2, acc[2]);
        acc[3] = _mm512_fmadd_ps(_mm512_set1_ps(ds[7]), p3, acc[3]);
    }
}

void quant_rows_avx512_q4_K(const void *rows, size_t stride, int64_t nr, const float *x, const float *xs,
                            int64_t nb, float *y)
{
    const uint8_t *base = rows;
    for (int64_t r = 0; r < nr; r++) {
        const blk_q4_K *w = (const blk_q4_K *)(base + (size_t)r * stride);
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        __m256 m0 = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            prefetch_ahead(&w[i], sizeof *w);
            step_q4_K(&w[i], x + 256 * i, xs + 8 * i, a, &m0);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]))) -
               hsum256(m0);
    }
}

void quant_rows_avx512_q6_K(const void *rows, size_t stride, int64_t nr, const float *x, const float *xs,
                            int64_t nb, float *y)
{
    (void)xs;
    const uint8_t *base = rows;
    for (int64_t r = 0; r < nr; r++) {
        const blk_q6_K *w = (const blk_q6_K *)(base + (size_t)r * stride);
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int64_t i = 0; i < nb; i++) {
            prefetch_ahead(&w[i], sizeof *w);
            step_q6_K(&w[i], x + 256 * i, a);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
    }
}

#endif
