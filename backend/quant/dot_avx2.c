/* dot_avx2.c - the AVX2/FMA/F16C dot products under the CPU engine's matrix
 * products: one weight row times one token's input (quant_dot, decode) and
 * times up to 8 tokens' inputs (quant_dot_n, prefill), and the same chunk
 * decoders writing a row of floats (quant_gemm's panels).
 *
 * The hot loop of the CPU engine. Every kernel here is called once per row
 * through the type table; everything below that (blocks, chunks, helpers) is
 * static inline in this file so the compiler sees a whole row loop at once.
 * Each kernel must agree with its scalar reference in dot_ref.c (float
 * summation order aside); test_quant checks them against each other.
 */
#include "quant_internal.h"

#ifdef QUANT_HAVE_AVX2

/* ---- one token ----------------------------------------------------------- */

/* Each kernel builds the codes as int8 with their offsets applied (exact),
 * widens them 8 at a time to float and FMAs them with X, per block or
 * sub-block; the block scale multiplies that partial sum once. They differ
 * from the references only in float summation order. */
/* sum q[j]*x[j] over 16 int8 codes Q, as 8 float lanes. */
static inline __m256 dot16_i8(__m128i q, const float *x)
{
    __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(q, q)));
    return _mm256_fmadd_ps(b, _mm256_loadu_ps(x + 8), _mm256_mul_ps(a, _mm256_loadu_ps(x)));
}

/* The same over 32 codes (bytes in element order). */
static inline __m256 dot32_i8(__m256i q, const float *x)
{
    return _mm256_add_ps(dot16_i8(_mm256_castsi256_si128(q), x),
                         dot16_i8(_mm256_extracti128_si256(q, 1), x + 16));
}

/* 16 packed bytes to 32 codes: low nibbles are elements 0..15, high 16..31. */
static inline __m256i unpack_nibbles(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

/* 16 packed bytes to 32 codes as 32-bit integers, for cvtepi32_ps: V[0] and
 * V[1] are the low nibbles of bytes 0..7 and 8..15, V[2] and V[3] the high
 * nibbles of the same bytes. One in-lane byte shuffle of the bytes (loaded
 * into both lanes) spreads 8 of them over 8 dwords and a mask or a shift
 * picks the nibble. This replaces unpack_nibbles + cvtepi8_epi32, whose
 * byte-to-dword widenings (4 per block, plus the lane extracts they need)
 * were what the Q4 kernels spent their time on: Q4_1 on a 2048x2048 matrix
 * went from 5.2 to 8.0-8.5 GB/s single-threaded, with the same values
 * summed in the same order, so the results are bit for bit the old ones. */
static inline void nibbles_i32(const uint8_t *qs, __m256i v[4])
{
#define Z_ (char)0x80
    const __m256i c0 = _mm256_setr_epi8(0, Z_, Z_, Z_, 1, Z_, Z_, Z_, 2, Z_, Z_, Z_, 3, Z_, Z_, Z_, 4, Z_, Z_, Z_,
                                        5, Z_, Z_, Z_, 6, Z_, Z_, Z_, 7, Z_, Z_, Z_);
    const __m256i c1 = _mm256_setr_epi8(8, Z_, Z_, Z_, 9, Z_, Z_, Z_, 10, Z_, Z_, Z_, 11, Z_, Z_, Z_, 12, Z_, Z_,
                                        Z_, 13, Z_, Z_, Z_, 14, Z_, Z_, Z_, 15, Z_, Z_, Z_);
#undef Z_
    const __m256i m4 = _mm256_set1_epi32(0x0F);
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    __m256i t0 = _mm256_shuffle_epi8(b, c0), t1 = _mm256_shuffle_epi8(b, c1);
    v[0] = _mm256_and_si256(t0, m4);
    v[1] = _mm256_and_si256(t1, m4);
    v[2] = _mm256_srli_epi32(t0, 4);
    v[3] = _mm256_srli_epi32(t1, 4);
}

/* sum q[j]*x[j] over 16 codes held as two vectors of 32-bit integers, in
 * dot16_i8's order. */
static inline __m256 dot16_i32(__m256i a, __m256i b, const float *x)
{
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(b), _mm256_loadu_ps(x + 8),
                           _mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_loadu_ps(x)));
}

/* One Q4_1 block's codes against 32 inputs, in dot32_i8's order. (Q4_0
 * keeps the int8 path: its -8 on four dword vectors made it slower.) */
static inline __m256 dot32_nib(const uint8_t *qs, const float *x)
{
    __m256i v[4];
    nibbles_i32(qs, v);
    return _mm256_add_ps(dot16_i32(v[0], v[1], x), dot16_i32(v[2], v[3], x + 16));
}

/* Q5_0 / Q5_1 codes of one block as 32-bit integers, in nibbles_i32's
 * layout (V[k] = elements 8k .. 8k+7): the nibble plus 16 times bit j of
 * QH for element j. A variable shift moves the fifth bits into place from
 * two broadcasts (bits 0..15 and 16..31, moved up to bit 4). With OFFSET
 * (Q5_0) the code minus 16 is returned: nibble - 16 * (1 - bit), from the
 * inverted bits, one subtraction instead of an or and a subtraction. Same
 * values as fifth_bits + unpack_nibbles summed in dot32_i8's order, so bit
 * for bit the old results, without the byte widening: Q5_0 5.1 -> 5.8 and
 * Q5_1 5.4 -> 5.6-5.7 GB/s single-threaded on a 2048x2048 matrix. The
 * quant_dot_n chunks keep the int8 path (this measured 2-7% slower there),
 * and so does Q6_K (built the same way from ql and qh it went 5.5 -> 4.7). */
static inline void q5_i32(const uint8_t *qs, uint32_t qh, int offset, __m256i v[4])
{
    const __m256i s0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i s1 = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
    const __m256i b4 = _mm256_set1_epi32(0x10);
    if (offset)
        qh = ~qh;
    __m256i lo = _mm256_set1_epi32((int)((qh & 0xFFFFu) << 4)), hi = _mm256_set1_epi32((int)((qh >> 16) << 4));
    __m256i f[4] = {_mm256_and_si256(_mm256_srlv_epi32(lo, s0), b4), _mm256_and_si256(_mm256_srlv_epi32(lo, s1), b4),
                    _mm256_and_si256(_mm256_srlv_epi32(hi, s0), b4), _mm256_and_si256(_mm256_srlv_epi32(hi, s1), b4)};
    nibbles_i32(qs, v);
    for (int k = 0; k < 4; k++)
        v[k] = offset ? _mm256_sub_epi32(v[k], f[k]) : _mm256_or_si256(v[k], f[k]);
}

/* Byte j = 16 when bit j of the 32-bit field is set (the Q5 fifth bit). */
static inline __m256i fifth_bits(uint32_t bits)
{
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2,
                                          2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), pick);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

static inline __m256 set1_h(uint16_t h) { return _mm256_set1_ps(h2f(h)); }

float quant_dot_avx2_f32(const void *row, const float *x, const float *xs, int64_t n)
{
    (void)xs;
    const float *w = row; /* loadu and load_f32 only: ROW may be unaligned */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += load_f32(row, i) * x[i];
    return s;
}

/* Eight 2-byte values from element I of ROW, at any address. */
static inline __m256 load_f16x8(const void *row, int64_t i)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint8_t *)row + 2 * i)));
}

static inline __m256 load_bf16x8(const void *row, int64_t i)
{
    __m256i v = _mm256_cvtepu16_epi32(
        _mm_loadu_si128((const __m128i *)((const uint8_t *)row + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

float quant_dot_avx2_f16(const void *row, const float *x, const float *xs, int64_t n)
{
    (void)xs;
    const void *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(w, i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(w, i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(w, i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(w, i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(load_f16x8(w, i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += quant_f16_to_f32(load_u16(w, i)) * x[i];
    return s;
}

float quant_dot_avx2_bf16(const void *row, const float *x, const float *xs, int64_t n)
{
    (void)xs;
    const void *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_bf16x8(w, i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(w, i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(load_bf16x8(w, i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += quant_bf16_to_f32(load_u16(w, i)) * x[i];
    return s;
}

/* One 32-block each: adds d * sum(q*x) to ACC and returns the min term (the
 * types with a min). The loops below run two blocks at a time into separate
 * accumulators so the scale FMA's latency does not serialise them. */

/* 8 int8 codes at P as floats. The widening reads memory directly
 * (vpmovsxbd ymm, m64), which needs no lane extracts or unpacks. */
static inline __m256 load_i8x8(const int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* Q8_0 widens its codes straight from the block rather than through
 * dot32_i8 (one 32-byte load, then extracts and unpacks to feed four
 * widenings): same values, same order, bit for bit the same result, and
 * 11.3 -> 17.0 GB/s single-threaded on a 2048x2048 matrix in cache. */
static inline void blk_q8_0_avx2(const blk_q8_0 *w, const float *x, __m256 *acc)
{
    const int8_t *q = w->qs;
    __m256 a = _mm256_fmadd_ps(load_i8x8(q + 8), _mm256_loadu_ps(x + 8),
                               _mm256_mul_ps(load_i8x8(q), _mm256_loadu_ps(x)));
    __m256 b = _mm256_fmadd_ps(load_i8x8(q + 24), _mm256_loadu_ps(x + 24),
                               _mm256_mul_ps(load_i8x8(q + 16), _mm256_loadu_ps(x + 16)));
    *acc = _mm256_fmadd_ps(set1_h(w->d), _mm256_add_ps(a, b), *acc);
}

static inline void blk_q4_0_avx2(const blk_q4_0 *w, const float *x, __m256 *acc)
{
    __m256 p = dot32_i8(_mm256_sub_epi8(unpack_nibbles(w->qs), _mm256_set1_epi8(8)), x);
    *acc = _mm256_fmadd_ps(set1_h(w->d), p, *acc);
}

static inline float blk_q4_1_avx2(const blk_q4_1 *w, const float *x, float xs, __m256 *acc)
{
    *acc = _mm256_fmadd_ps(set1_h(w->d), dot32_nib(w->qs, x), *acc);
    return h2f(w->m) * xs;
}

static inline void blk_q5_0_avx2(const blk_q5_0 *w, const float *x, __m256 *acc)
{
    __m256i v[4];
    q5_i32(w->qs, load_u32le(w->qh), 1, v);
    __m256 p = _mm256_add_ps(dot16_i32(v[0], v[1], x), dot16_i32(v[2], v[3], x + 16));
    *acc = _mm256_fmadd_ps(set1_h(w->d), p, *acc);
}

static inline float blk_q5_1_avx2(const blk_q5_1 *w, const float *x, float xs, __m256 *acc)
{
    __m256i v[4];
    q5_i32(w->qs, load_u32le(w->qh), 0, v);
    __m256 p = _mm256_add_ps(dot16_i32(v[0], v[1], x), dot16_i32(v[2], v[3], x + 16));
    *acc = _mm256_fmadd_ps(set1_h(w->d), p, *acc);
    return h2f(w->m) * xs;
}

float quant_dot_avx2_q8_0(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q8_0 *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        blk_q8_0_avx2(&w[i], x + 32 * i, &a0);
        blk_q8_0_avx2(&w[i + 1], x + 32 * i + 32, &a1);
    }
    if (i < nb)
        blk_q8_0_avx2(&w[i], x + 32 * i, &a0);
    return hsum256(_mm256_add_ps(a0, a1));
}

float quant_dot_avx2_q4_0(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q4_0 *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        blk_q4_0_avx2(&w[i], x + 32 * i, &a0);
        blk_q4_0_avx2(&w[i + 1], x + 32 * i + 32, &a1);
    }
    if (i < nb)
        blk_q4_0_avx2(&w[i], x + 32 * i, &a0);
    return hsum256(_mm256_add_ps(a0, a1));
}

float quant_dot_avx2_q4_1(const void *row, const float *x, const float *xs, int64_t nb)
{
    const blk_q4_1 *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    float m0 = 0, m1 = 0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        m0 += blk_q4_1_avx2(&w[i], x + 32 * i, xs[i], &a0);
        m1 += blk_q4_1_avx2(&w[i + 1], x + 32 * i + 32, xs[i + 1], &a1);
    }
    if (i < nb)
        m0 += blk_q4_1_avx2(&w[i], x + 32 * i, xs[i], &a0);
    return hsum256(_mm256_add_ps(a0, a1)) + (m0 + m1);
}

float quant_dot_avx2_q5_0(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q5_0 *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        blk_q5_0_avx2(&w[i], x + 32 * i, &a0);
        blk_q5_0_avx2(&w[i + 1], x + 32 * i + 32, &a1);
    }
    if (i < nb)
        blk_q5_0_avx2(&w[i], x + 32 * i, &a0);
    return hsum256(_mm256_add_ps(a0, a1));
}

float quant_dot_avx2_q5_1(const void *row, const float *x, const float *xs, int64_t nb)
{
    const blk_q5_1 *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    float m0 = 0, m1 = 0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        m0 += blk_q5_1_avx2(&w[i], x + 32 * i, xs[i], &a0);
        m1 += blk_q5_1_avx2(&w[i + 1], x + 32 * i + 32, xs[i + 1], &a1);
    }
    if (i < nb)
        m0 += blk_q5_1_avx2(&w[i], x + 32 * i, xs[i], &a0);
    return hsum256(_mm256_add_ps(a0, a1)) + (m0 + m1);
}

/* Q4_K (QH NULL) and Q5_K, one super-block: adds the scaled sub-block sums to
 * ACC[2] and dmin * mn[s] * (sum of x over s) to the eight lanes of MACC (the
 * caller subtracts their sum at the end). The fifth bit of sub-block s is
 * bit s of qh. The 6-bit scales and mins are unpacked as one vector
 * (kquant_scales): done byte by byte they cost about as much as the
 * sub-block dot products (Q4_K 4.5 -> 7.0 GB/s, 2048x2048 single-threaded),
 * and as four dwords through memory a store-forwarding stall. */
static inline void dot_kminmax_avx2(uint16_t d16, uint16_t dmin16, const uint8_t *scales, const uint8_t *qs,
                                    const uint8_t *qh, const float *x, const float *xs, __m256 acc[2],
                                    __m256 *macc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    float dsc[8];
    kquant_scales(d16, dmin16, scales, xs, dsc, macc);
    __m256i hb = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4 && !qh; c++) {
        /* Q4_K: the nibbles_i32 unpacking (see there); bytes 0..15 hold
         * elements 0..15 of sub-blocks 2c (low) and 2c+1 (high), bytes
         * 16..31 elements 16..31. */
        __m256i a[4], b[4];
        nibbles_i32(qs + 32 * c, a);
        nibbles_i32(qs + 32 * c + 16, b);
        const float *xc = x + 64 * c;
        __m256 plo = _mm256_add_ps(dot16_i32(a[0], a[1], xc), dot16_i32(b[0], b[1], xc + 16));
        __m256 phi = _mm256_add_ps(dot16_i32(a[2], a[3], xc + 32), dot16_i32(b[2], b[3], xc + 48));
        acc[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dsc[2 * c]), plo, acc[0]);
        acc[1] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dsc[2 * c + 1]), phi, acc[1]);
    }
    for (int c = 0; c < 4 && qh; c++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(q, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            /* Bits 2c and 2c+1 of each qh byte: fifth bits of the low and high codes. */
            __m256i blo = _mm256_set1_epi8((char)(1 << (2 * c)));
            __m256i bhi = _mm256_set1_epi8((char)(1 << (2 * c + 1)));
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, blo), blo), b4));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bhi), bhi), b4));
        }
        acc[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dsc[2 * c]), dot32_i8(lo, x + 64 * c), acc[0]);
        acc[1] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dsc[2 * c + 1]), dot32_i8(hi, x + 64 * c + 32),
                                 acc[1]);
    }
}

float quant_dot_avx2_q4_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    const blk_q4_K *w = row;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, macc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++)
        dot_kminmax_avx2(w[i].d, w[i].dmin, w[i].scales, w[i].qs, NULL, x + 256 * i, xs + 8 * i, acc, &macc);
    return hsum256(_mm256_add_ps(acc[0], acc[1])) - hsum256(macc);
}

float quant_dot_avx2_q5_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    const blk_q5_K *w = row;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, macc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++)
        dot_kminmax_avx2(w[i].d, w[i].dmin, w[i].scales, w[i].qs, w[i].qh, x + 256 * i, xs + 8 * i, acc,
                         &macc);
    return hsum256(_mm256_add_ps(acc[0], acc[1])) - hsum256(macc);
}

/* Q6_K: codes 0..63 built from ql and qh, then -32 in int8; each 32 codes
 * span two sub-blocks of 16 (low and high 128-bit lanes). The sixteen
 * d * scale products are made once a block as two vectors: one by one, a
 * scalar int-to-float conversion and multiply before every broadcast, they
 * held the kernel up. */
float quant_dot_avx2_q6_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q6_K *w = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30), off = _mm256_set1_epi8(32);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++, x += 256) {
        __m256 d = set1_h(w[i].d);
        __m128i sc8 = _mm_loadu_si128((const __m128i *)w[i].scales);
        float dscale[16];
        _mm256_storeu_ps(dscale, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8))));
        _mm256_storeu_ps(dscale + 8,
                         _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(sc8, sc8)))));
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h;
            const float *dsc = dscale + 8 * h;
            const float *xh = x + 128 * h;
            __m256i l1 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l2 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(l2, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(hb, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l2, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2));
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_sub_epi8(q[k], off);
                __m256 pa = dot16_i8(_mm256_castsi256_si128(v), xh + 32 * k);
                __m256 pb = dot16_i8(_mm256_extracti128_si256(v, 1), xh + 32 * k + 16);
                acc[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dsc[2 * k]), pa, acc[0]);
                acc[1] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dsc[2 * k + 1]), pb, acc[1]);
            }
        }
    }
    return hsum256(_mm256_add_ps(acc[0], acc[1]));
}

/* ---- the low-bit types ------------------------------------------------------ */

/* 16 packed bytes (Q4_0's order) to 32 int8 levels of the 16-entry table
 * LUT: one in-lane byte shuffle, the table in both lanes. */
static inline __m256i lut_nibbles(const uint8_t *qs, __m256i lut)
{
    return _mm256_shuffle_epi8(lut, unpack_nibbles(qs));
}

static inline __m256i load_lut(const int8_t t[16])
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
}

/* Q2_K and Q3_K codes of chunk k (32 elements) from the 32 bytes Q holding
 * them, Q already shifted right by 2(k%4): the low 2 bits; Q3_K also takes
 * bit k of HM (the 32 hmask bytes): clear subtracts 4. */
static inline __m256i q2_codes(__m256i q) { return _mm256_and_si256(q, _mm256_set1_epi8(3)); }

static inline __m256i q3_codes(__m256i q, __m256i hm, int k)
{
    __m256i bit = _mm256_set1_epi8((char)(1 << k));
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
    return _mm256_sub_epi8(q2_codes(q), _mm256_andnot_si256(set, _mm256_set1_epi8(4)));
}

/* Q2_K: per half of 16, dl * sum(q*x) into ACC and ml * sum(x) into MACC,
 * the min subtracted at the end; the sums of x are taken here (the min is
 * per 16 elements, finer than the prepared sums). */
float quant_dot_avx2_q2_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q2_K *w = row;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 macc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++) {
        float d = h2f(w[i].d), dmin = h2f(w[i].dmin);
        for (int n = 0; n < 2; n++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * n));
            for (int j = 0; j < 4; j++, x += 32, q = _mm256_srli_epi16(q, 2)) {
                __m256i c = q2_codes(q);
                const uint8_t *sc = w[i].scales + 2 * (4 * n + j);
                __m256 pa = dot16_i8(_mm256_castsi256_si128(c), x);
                __m256 pb = dot16_i8(_mm256_extracti128_si256(c, 1), x + 16);
                __m256 sa = _mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8));
                __m256 sb = _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24));
                acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(d * (sc[0] & 0xF)), pa, acc[0]);
                acc[1] = _mm256_fmadd_ps(_mm256_set1_ps(d * (sc[1] & 0xF)), pb, acc[1]);
                macc[0] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * (sc[0] >> 4)), sa, macc[0]);
                macc[1] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * (sc[1] >> 4)), sb, macc[1]);
            }
        }
    }
    return hsum256(_mm256_add_ps(acc[0], acc[1])) - hsum256(_mm256_add_ps(macc[0], macc[1]));
}

/* Q3_K: the 16 signed scales unpacked once per block, codes -4..3 in int8. */
float quant_dot_avx2_q3_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q3_K *w = row;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++) {
        float d = h2f(w[i].d), dl[16];
        for (int k = 0; k < 16; k++)
            dl[k] = d * (float)q3k_scale(w[i].scales, k);
        __m256i hm = _mm256_loadu_si256((const __m256i *)w[i].hmask);
        for (int n = 0; n < 2; n++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * n));
            for (int j = 0; j < 4; j++, x += 32, q = _mm256_srli_epi16(q, 2)) {
                int k = 4 * n + j;
                __m256i c = q3_codes(q, hm, k);
                __m256 pa = dot16_i8(_mm256_castsi256_si128(c), x);
                __m256 pb = dot16_i8(_mm256_extracti128_si256(c, 1), x + 16);
                acc[0] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dl[2 * k]), pa, acc[0]);
                acc[1] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dl[2 * k + 1]), pb, acc[1]);
            }
        }
    }
    return hsum256(_mm256_add_ps(acc[0], acc[1]));
}

float quant_dot_avx2_iq4_nl(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_iq4_nl *w = row;
    const __m256i lut = load_lut(quant_iq4nl_values);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        a0 = _mm256_fmadd_ps(set1_h(w[i].d), dot32_i8(lut_nibbles(w[i].qs, lut), x + 32 * i), a0);
        a1 = _mm256_fmadd_ps(set1_h(w[i + 1].d), dot32_i8(lut_nibbles(w[i + 1].qs, lut), x + 32 * i + 32),
                             a1);
    }
    if (i < nb)
        a0 = _mm256_fmadd_ps(set1_h(w[i].d), dot32_i8(lut_nibbles(w[i].qs, lut), x + 32 * i), a0);
    return hsum256(_mm256_add_ps(a0, a1));
}

float quant_dot_avx2_iq4_xs(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_iq4_xs *w = row;
    const __m256i lut = load_lut(quant_iq4nl_values);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++) {
        float d = h2f(w[i].d);
        uint16_t sh = w[i].scales_h;
        for (int ib = 0; ib < 8; ib++, x += 32) {
            __m256 p = dot32_i8(lut_nibbles(w[i].qs + 16 * ib, lut), x);
            float dl = d * (float)iq4xs_scale(sh, w[i].scales_l, ib);
            acc[ib & 1] = _mm256_fmadd_ps(_mm256_set1_ps(dl), p, acc[ib & 1]);
        }
    }
    return hsum256(_mm256_add_ps(acc[0], acc[1]));
}

float quant_dot_avx2_mxfp4(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_mxfp4 *w = row;
    const __m256i lut = load_lut(quant_mxfp4_values);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(mxfp4_scale(w[i].e)), dot32_i8(lut_nibbles(w[i].qs, lut), x + 32 * i),
                             a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(mxfp4_scale(w[i + 1].e)),
                             dot32_i8(lut_nibbles(w[i + 1].qs, lut), x + 32 * i + 32), a1);
    }
    if (i < nb)
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(mxfp4_scale(w[i].e)), dot32_i8(lut_nibbles(w[i].qs, lut), x + 32 * i),
                             a0);
    return hsum256(_mm256_add_ps(a0, a1));
}

/* ---- several tokens (prefill) -------------------------------------------- */

/* Prefill multiplies every weight row with a batch of tokens. Calling
 * quant_dot per token unpacks each block once per token, and that unpacking
 * (nibbles to int8 to float) costs more than the FMAs; here each chunk of 32
 * weights is dequantised once, to the float values quant_dequantize_row gives
 * (scale and min applied), and FMA'd against every token's input. Summing
 * w*x with w already scaled rounds differently from quant_dot's per-block
 * partial sums, by float summation error only (~1e-7 of sum |w*x|). */

/* 32 int8 codes (element order) times D plus M, as 4 x 8 floats. */
static inline void deq32_i8(__m256i q, __m256 d, __m256 m, __m256 w[4])
{
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    w[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d, m);
    w[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo))), d, m);
    w[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d, m);
    w[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi))), d, m);
}

/* The same with a separate scale for each half of 16 (Q6_K's sub-blocks). */
static inline void deq32_i8_2(__m256i q, __m256 d0, __m256 d1, __m256 w[4])
{
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    w[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d0);
    w[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo))), d0);
    w[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d1);
    w[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi))), d1);
}

/* Chunk C (32 elements) of a row, dequantised into W. For the K-quants a
 * chunk is one sub-block of 32: super-block C/8, sub-block C%8. */
static inline void chunk_f32(const void *row, int64_t c, __m256 w[4])
{
    const uint8_t *p = (const uint8_t *)row + 4 * 32 * c;
    for (int k = 0; k < 4; k++)
        w[k] = _mm256_loadu_ps((const float *)(p + 4 * 8 * k));
}

static inline void chunk_f16(const void *row, int64_t c, __m256 w[4])
{
    for (int k = 0; k < 4; k++)
        w[k] = load_f16x8(row, 32 * c + 8 * k);
}

static inline void chunk_bf16(const void *row, int64_t c, __m256 w[4])
{
    for (int k = 0; k < 4; k++)
        w[k] = load_bf16x8(row, 32 * c + 8 * k);
}

static inline void chunk_q8_0(const void *row, int64_t c, __m256 w[4])
{
    const blk_q8_0 *b = (const blk_q8_0 *)row + c;
    deq32_i8(_mm256_loadu_si256((const __m256i *)b->qs), set1_h(b->d), _mm256_setzero_ps(), w);
}

static inline void chunk_q4_0(const void *row, int64_t c, __m256 w[4])
{
    const blk_q4_0 *b = (const blk_q4_0 *)row + c;
    __m256i q = _mm256_sub_epi8(unpack_nibbles(b->qs), _mm256_set1_epi8(8));
    deq32_i8(q, set1_h(b->d), _mm256_setzero_ps(), w);
}

static inline void chunk_q4_1(const void *row, int64_t c, __m256 w[4])
{
    const blk_q4_1 *b = (const blk_q4_1 *)row + c;
    deq32_i8(unpack_nibbles(b->qs), set1_h(b->d), set1_h(b->m), w);
}

static inline void chunk_q5_0(const void *row, int64_t c, __m256 w[4])
{
    const blk_q5_0 *b = (const blk_q5_0 *)row + c;
    __m256i q = _mm256_or_si256(unpack_nibbles(b->qs), fifth_bits(load_u32le(b->qh)));
    deq32_i8(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), set1_h(b->d), _mm256_setzero_ps(), w);
}

static inline void chunk_q5_1(const void *row, int64_t c, __m256 w[4])
{
    const blk_q5_1 *b = (const blk_q5_1 *)row + c;
    __m256i q = _mm256_or_si256(unpack_nibbles(b->qs), fifth_bits(load_u32le(b->qh)));
    deq32_i8(q, set1_h(b->d), set1_h(b->m), w);
}

/* Q4_K / Q5_K sub-block S: d*sc*q - dmin*mn, as dequant_q4_K computes it. */
static inline void chunk_kminmax(uint16_t d16, uint16_t dmin16, const uint8_t *scales, const uint8_t *qs,
                                 const uint8_t *qh, int s, __m256 w[4])
{
    uint8_t sc, mn;
    k_scale_min(scales, s, &sc, &mn);
    __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (s / 2)));
    if (s & 1)
        q = _mm256_srli_epi16(q, 4);
    q = _mm256_and_si256(q, _mm256_set1_epi8(0x0F));
    if (qh) {
        __m256i bit = _mm256_set1_epi8((char)(1 << s));
        __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
        q = _mm256_or_si256(q, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit),
                                                _mm256_set1_epi8(0x10)));
    }
    deq32_i8(q, _mm256_set1_ps(h2f(d16) * sc), _mm256_set1_ps(-(h2f(dmin16) * mn)), w);
}

static inline void chunk_q4_K(const void *row, int64_t c, __m256 w[4])
{
    const blk_q4_K *b = (const blk_q4_K *)row + c / 8;
    chunk_kminmax(b->d, b->dmin, b->scales, b->qs, NULL, (int)(c % 8), w);
}

static inline void chunk_q5_K(const void *row, int64_t c, __m256 w[4])
{
    const blk_q5_K *b = (const blk_q5_K *)row + c / 8;
    chunk_kminmax(b->d, b->dmin, b->scales, b->qs, b->qh, (int)(c % 8), w);
}

/* Q6_K chunk k of half h: elements 128h + 32k .. +31, as in dot_q6_K_avx2. */
static inline void chunk_q6_K(const void *row, int64_t c, __m256 w[4])
{
    const blk_q6_K *b = (const blk_q6_K *)row + c / 8;
    int h = (int)(c % 8) / 4, k = (int)(c % 4);
    __m256i l = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (k & 1)));
    __m256i hb = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    if (k >= 2)
        l = _mm256_srli_epi16(l, 4);
    switch (k) {
    case 0: hb = _mm256_slli_epi16(hb, 4); break;
    case 1: hb = _mm256_slli_epi16(hb, 2); break;
    case 3: hb = _mm256_srli_epi16(hb, 2); break;
    default: break;
    }
    __m256i q = _mm256_or_si256(_mm256_and_si256(l, _mm256_set1_epi8(0x0F)),
                                _mm256_and_si256(hb, _mm256_set1_epi8(0x30)));
    q = _mm256_sub_epi8(q, _mm256_set1_epi8(32));
    float d = h2f(b->d);
    const int8_t *sc = b->scales + 8 * h + 2 * k;
    deq32_i8_2(q, _mm256_set1_ps(d * sc[0]), _mm256_set1_ps(d * sc[1]), w);
}

/* Q2_K chunk k of super-block c/8: the halves' own scale and min, the min
 * subtracted after the product (not fused), so the weights are the floats
 * quant_dequant_q2_K gives, bit for bit. */
static inline void chunk_q2_K(const void *row, int64_t c, __m256 w[4])
{
    const blk_q2_K *b = (const blk_q2_K *)row + c / 8;
    int k = (int)(c % 8);
    __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * (k / 4)));
    q = q2_codes(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (k % 4))));
    float d = h2f(b->d), dmin = h2f(b->dmin);
    uint8_t s0 = b->scales[2 * k], s1 = b->scales[2 * k + 1];
    deq32_i8_2(q, _mm256_set1_ps(d * (s0 & 0xF)), _mm256_set1_ps(d * (s1 & 0xF)), w);
    __m256 m0 = _mm256_set1_ps(dmin * (s0 >> 4)), m1 = _mm256_set1_ps(dmin * (s1 >> 4));
    w[0] = _mm256_sub_ps(w[0], m0);
    w[1] = _mm256_sub_ps(w[1], m0);
    w[2] = _mm256_sub_ps(w[2], m1);
    w[3] = _mm256_sub_ps(w[3], m1);
}

static inline void chunk_q3_K(const void *row, int64_t c, __m256 w[4])
{
    const blk_q3_K *b = (const blk_q3_K *)row + c / 8;
    int k = (int)(c % 8);
    __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * (k / 4)));
    q = _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (k % 4)));
    q = q3_codes(q, _mm256_loadu_si256((const __m256i *)b->hmask), k);
    float d = h2f(b->d);
    deq32_i8_2(q, _mm256_set1_ps(d * (float)q3k_scale(b->scales, 2 * k)),
               _mm256_set1_ps(d * (float)q3k_scale(b->scales, 2 * k + 1)), w);
}

static inline void chunk_iq4_nl(const void *row, int64_t c, __m256 w[4])
{
    const blk_iq4_nl *b = (const blk_iq4_nl *)row + c;
    deq32_i8(lut_nibbles(b->qs, load_lut(quant_iq4nl_values)), set1_h(b->d), _mm256_setzero_ps(), w);
}

static inline void chunk_iq4_xs(const void *row, int64_t c, __m256 w[4])
{
    const blk_iq4_xs *b = (const blk_iq4_xs *)row + c / 8;
    int ib = (int)(c % 8);
    float dl = h2f(b->d) * (float)iq4xs_scale(b->scales_h, b->scales_l, ib);
    deq32_i8(lut_nibbles(b->qs + 16 * ib, load_lut(quant_iq4nl_values)), _mm256_set1_ps(dl),
             _mm256_setzero_ps(), w);
}

static inline void chunk_mxfp4(const void *row, int64_t c, __m256 w[4])
{
    const blk_mxfp4 *b = (const blk_mxfp4 *)row + c;
    deq32_i8(lut_nibbles(b->qs, load_lut(quant_mxfp4_values)), _mm256_set1_ps(mxfp4_scale(b->e)),
             _mm256_setzero_ps(), w);
}

/* The row loop for NT tokens (a constant after inlining, so the accumulators
 * live in registers): chunk by chunk, every token's 32 inputs against the
 * same 4 weight registers. One accumulator per token, summed in the same
 * order whatever NT is: a token's result must not depend on which batch it
 * came in (a prefill split differently must fill the same KV cache; the
 * model tests compare bits). With 8 tokens there are 8 independent FMA
 * chains, enough to hide the latency; small remainders run slower. */
#define DOT_N_ROW(ty)                                                                                   \
    static inline __attribute__((always_inline)) void dn_row_##ty(const void *row, int64_t nc,          \
                                                                 const float *const *x, int nt,         \
                                                                 float *out, size_t os)                 \
    {                                                                                                   \
        __m256 a[8];                                                                                    \
        for (int t = 0; t < nt; t++)                                                                    \
            a[t] = _mm256_setzero_ps();                                                                 \
        for (int64_t c = 0; c < nc; c++) {                                                              \
            __m256 w[4];                                                                                \
            chunk_##ty(row, c, w);                                                                      \
            for (int t = 0; t < nt; t++) {                                                              \
                const float *xt = x[t] + 32 * c;                                                        \
                a[t] = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xt), a[t]);                                \
                a[t] = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xt + 8), a[t]);                            \
                a[t] = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xt + 16), a[t]);                           \
                a[t] = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xt + 24), a[t]);                           \
            }                                                                                           \
        }                                                                                               \
        for (int t = 0; t < nt; t++)                                                                    \
            out[(size_t)t * os] = hsum256(a[t]);                                                        \
    }                                                                                                   \
    void quant_dot_n_avx2_##ty(const void *row, int64_t nc, const float *const *x, int nt, float *out,  \
                              size_t os)                                                                \
    {                                                                                                   \
        switch (nt) {                                                                                   \
        case 1: dn_row_##ty(row, nc, x, 1, out, os); break;                                             \
        case 2: dn_row_##ty(row, nc, x, 2, out, os); break;                                             \
        case 3: dn_row_##ty(row, nc, x, 3, out, os); break;                                             \
        case 4: dn_row_##ty(row, nc, x, 4, out, os); break;                                             \
        case 5: dn_row_##ty(row, nc, x, 5, out, os); break;                                             \
        case 6: dn_row_##ty(row, nc, x, 6, out, os); break;                                             \
        case 7: dn_row_##ty(row, nc, x, 7, out, os); break;                                             \
        default: dn_row_##ty(row, nc, x, 8, out, os); break;                                            \
        }                                                                                               \
    }                                                                                                   \
    /* The row as floats, for quant_gemm's panels: the same chunks. */                                  \
    void quant_deq_avx2_##ty(const void *row, int64_t nc, float *dst)                                   \
    {                                                                                                   \
        for (int64_t c = 0; c < nc; c++) {                                                              \
            __m256 w[4];                                                                                \
            chunk_##ty(row, c, w);                                                                      \
            for (int k = 0; k < 4; k++)                                                                 \
                _mm256_storeu_ps(dst + 32 * c + 8 * k, w[k]);                                           \
        }                                                                                               \
    }

DOT_N_ROW(f32)
DOT_N_ROW(f16)
DOT_N_ROW(bf16)
DOT_N_ROW(q8_0)
DOT_N_ROW(q4_0)
DOT_N_ROW(q4_1)
DOT_N_ROW(q5_0)
DOT_N_ROW(q5_1)
DOT_N_ROW(q4_K)
DOT_N_ROW(q5_K)
DOT_N_ROW(q6_K)
DOT_N_ROW(q2_K)
DOT_N_ROW(q3_K)
DOT_N_ROW(iq4_nl)
DOT_N_ROW(iq4_xs)
DOT_N_ROW(mxfp4)

#else
/* Without AVX2 the table names the references (dot_ref.c) and quant_dot_n
 * takes its scalar path; ISO C wants something in the file. */
typedef int quant_no_avx2;
#endif
