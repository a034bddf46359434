/* dot_avx512vnni.c - Q4_K and Q6_K decode on AVX512_VNNI's VPDPWSSD: 32
 * products of 16-bit integers an instruction into 16 int32 sums, with no
 * code converted to a float (the float kernels widen, convert and multiply
 * every code; that is most of their work).
 *
 * X as integers, at float precision or better: each super-block of 256
 * inputs becomes 30-bit integers D = round(x * 2^k), with one power of two
 * 2^k per block chosen so that its largest |x| lands in [2^29, 2^30), held
 * as two 16-bit digits, D = hi * 2^15 + lo (lo in 0..32767). Every input at
 * least 2^-6 of its block's largest keeps all 24 bits of its float
 * significand; a smaller one is rounded to 2^-30 of the largest, far below
 * the rounding of the float sums (test_quant holds these kernels to the
 * float kernels' bound, inputs from 2^-90 to 2^90 included). This is not
 * ggml's int8 X, which rounds every input to 2^-7 of its block's largest.
 * The integer sums are exact; each becomes a float once (per super-block for
 * Q4_K, per half for Q6_K) and is scaled by 2^-k and the type's scales.
 *
 * Built with the avx512vnni instruction set's flags (backend/quant/
 * CMakeLists.txt) and run only on a CPU that reports AVX512_VNNI (quant.c),
 * like dot_avx512.c. */
#include "quant_internal.h"

#ifdef QUANT_HAVE_AVX512VNNI

#include <immintrin.h>
#include <math.h>

/* Both splits: per super-block QUANT_VNNI_DIGITS int16 digits (each type's
 * order), then a float 2^-k per super-block; Q6_K's then the float sums of X
 * per 16 (Q4_K's kernel takes the act's sums per 32 for its mins). */
enum { DIGITS = QUANT_VNNI_DIGITS };

/* The 256 inputs of a super-block X as D = round(x * 2^k) in D[0..15] (16
 * each, element order); returns 2^-k, or NaN (and D all zero) when X holds
 * a NaN or an infinity, so that the block's result is not finite. */
static float block_digits(const float *x, __m512i d[16])
{
    /* NaN (quiet 0x01, signalling 0x80) and infinities (0x08, 0x10) by
     * class: VMAXPS returns its second operand when either is NaN, so a
     * running maximum loses a NaN that an input after it replaces */
    __m512 m = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int i = 0; i < 16; i++) {
        __m512 v = _mm512_loadu_ps(x + 16 * i);
        bad |= _mm512_fpclass_ps_mask(v, 0x99);
        m = _mm512_max_ps(m, _mm512_abs_ps(v));
    }
    if (bad) {
        for (int i = 0; i < 16; i++)
            d[i] = _mm512_setzero_si512();
        return NAN;
    }
    float mx = _mm512_reduce_max_ps(m);
    /* 2^-149, the least float, bounds k: a block of inputs below 2^-120
     * keeps fewer bits (such inputs are far below any model's). */
    int k = mx > 0 ? 29 - ilogbf(mx) : 0;
    if (k > 149)
        k = 149;
    const __m512 kk = _mm512_set1_ps((float)k);
    /* x * 2^k is exact (scalef never forms 2^k, which may not be a float);
     * the conversion rounds to nearest */
    for (int i = 0; i < 16; i++)
        d[i] = _mm512_cvtps_epi32(_mm512_scalef_ps(_mm512_loadu_ps(x + 16 * i), kk));
    return ldexpf(1, -k);
}

/* The split of N inputs into OUT: each super-block's digits stored by STORE
 * (the type's order), then the blocks' 2^-k. */
typedef void store_digits_fn(__m512i d[16], int16_t *dg);

static inline __attribute__((always_inline)) void split_digits(const float *x, int64_t n, void *out,
                                                               store_digits_fn *store)
{
    int64_t nb = n / 256;
    int16_t *dg = out;
    float *inv = (float *)(dg + nb * DIGITS);
    for (int64_t b = 0; b < nb; b++, x += 256, dg += DIGITS) {
        __m512i d[16];
        inv[b] = block_digits(x, d);
        store(d, dg);
    }
}

/* ---- Q4_K -------------------------------------------------------------------- */

/* The digits in element order: 256 hi, then 256 lo. */
static void store_q4_K(__m512i d[16], int16_t *dg)
{
    for (int i = 0; i < 16; i++) {
        _mm256_storeu_si256((__m256i *)(dg + 16 * i), _mm512_cvtepi32_epi16(_mm512_srai_epi32(d[i], 15)));
        _mm256_storeu_si256((__m256i *)(dg + 256 + 16 * i),
                            _mm512_cvtepi32_epi16(_mm512_and_si512(d[i], _mm512_set1_epi32(0x7FFF))));
    }
}

void quant_split_q4_K(const float *x, int64_t n, void *out)
{
    split_digits(x, n, out, store_q4_K);
}

/* The weights: a code (0..15) times its 6-bit scale is at most 945, so one
 * VPMULLW makes 32 exact 16-bit weights of a sub-block, and each int32 lane
 * sums 16 products of at most 945 * 2^15 over a super-block: below 2^29, no
 * overflow. Sub-block 2c is the low nibbles of qs[32c..32c+31], 2c+1 the
 * high ones. The mins use the act's float sums of X per 32, XS, as in every
 * kernel. */
void quant_rows_split_q4_K(const void *rows, size_t stride, int64_t nr, const void *split, const float *xs,
                           int64_t nb, float *y)
{
    const uint8_t *base = rows;
    const int16_t *dg0 = split;
    const float *inv = (const float *)(dg0 + nb * DIGITS);
    const __m512i m4 = _mm512_set1_epi16(0x0F);
    for (int64_t r = 0; r < nr; r++) {
        const blk_q4_K *w = (const blk_q4_K *)(base + (size_t)r * stride);
        __m512 acc = _mm512_setzero_ps();
        __m256 macc = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++, w++) {
            prefetch_ahead(w, sizeof *w);
            __m128i packed = kquant_packed(w->scales);
            kquant_mins(w->dmin, packed, xs + 8 * i, &macc);
            uint16_t sc[8];
            _mm_storeu_si128((__m128i *)sc, _mm_cvtepu8_epi16(packed));
            const int16_t *hi = dg0 + DIGITS * i, *lo = hi + 256;
            /* even and odd sub-blocks on their own chains */
            __m512i h0 = _mm512_setzero_si512(), h1 = h0, l0 = h0, l1 = h0;
            for (int c = 0; c < 4; c++) {
                __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(w->qs + 32 * c)));
                __m512i we = _mm512_mullo_epi16(_mm512_and_si512(b, m4), _mm512_set1_epi16((short)sc[2 * c]));
                __m512i wo = _mm512_mullo_epi16(_mm512_srli_epi16(b, 4), _mm512_set1_epi16((short)sc[2 * c + 1]));
                h0 = _mm512_dpwssd_epi32(h0, we, _mm512_loadu_si512(hi + 64 * c));
                l0 = _mm512_dpwssd_epi32(l0, we, _mm512_loadu_si512(lo + 64 * c));
                h1 = _mm512_dpwssd_epi32(h1, wo, _mm512_loadu_si512(hi + 64 * c + 32));
                l1 = _mm512_dpwssd_epi32(l1, wo, _mm512_loadu_si512(lo + 64 * c + 32));
            }
            __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(h0, h1)), _mm512_set1_ps(32768.0f),
                                       _mm512_cvtepi32_ps(_mm512_add_epi32(l0, l1)));
            /* 2^-k first: f * 2^-k is about the block's sum of sc * q * x,
             * a normal float wherever the inputs are */
            acc = _mm512_fmadd_ps(_mm512_mul_ps(f, _mm512_set1_ps(inv[i])), _mm512_set1_ps(h2f(w->d)), acc);
        }
        y[r] = _mm512_reduce_add_ps(acc) - hsum256(macc);
    }
}

/* ---- Q6_K -------------------------------------------------------------------- */

/* Where the digits go: word w of the 64 bytes of ql a half of 128 loads
 * holds bytes 2w and 2w+1, i.e. four codes, nibble k (0..3) of the word
 * being code k of it (and bits 4k, 4k+1 of the matching qh word its two high
 * bits). Vector k of the half takes nibble k of every word, so its dword
 * lane i pairs the elements of bytes 4i + k/2 and 4i + 2 + k/2: element B +
 * 64 (k % 2) of the half for byte B. The split stores the digits in exactly
 * that order, so one VPDPWSSD multiplies 32 codes with 32 digits in place,
 * and lanes 4j..4j+3 of vector k are sub-block 4 (k % 2) + j of the half,
 * one scale per four lanes. */

/* Words W, W + 4, ..., W + 60 of the 32 dwords LO16, HI16: with each dword
 * hi << 16 | lo, W = 2 par + 1 picks the hi digits of elements par, par + 2,
 * ..., par + 30, and W = 2 par their lo digits. */
static inline __m512i pick_words(__m512i lo16, __m512i hi16, int w)
{
    const __m512i idx =
        _mm512_add_epi16(_mm512_set_epi16(60, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0, 60, 56, 52,
                                          48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0),
                         _mm512_set1_epi16((short)w));
    return _mm512_permutex2var_epi16(lo16, idx, hi16);
}

/* Per super-block, half g, vector k: 32 hi digits, then 32 lo, at (4g + k)
 * * 64. Vectors k and k + 2 of a half pair the even and the odd elements of
 * the same 64 (elements 64 (k % 2) .. + 63 of the half): 32 from its first
 * 32 elements, 32 from the next. */
static void store_q6_K(__m512i d[16], int16_t *dg)
{
    for (int i = 0; i < 16; i++) /* hi << 16 | lo */
        d[i] = _mm512_ternarylogic_epi32(d[i], _mm512_set1_epi32(0x7FFF),
                                         _mm512_slli_epi32(_mm512_srai_epi32(d[i], 15), 16), 0xEA);
    /* chunk c of 64 is half c / 2, k % 2 = c % 2 */
    for (int c = 0; c < 4; c++) {
        const __m512i *p = d + 4 * c;
        for (int par = 0; par < 2; par++) {
            int16_t *dst = dg + 64 * (4 * (c / 2) + c % 2 + 2 * par);
            for (int lo = 0; lo < 2; lo++) {
                int w = 2 * par + !lo;
                __m512i a = pick_words(p[0], p[1], w), e = pick_words(p[2], p[3], w);
                _mm512_storeu_si512(dst + 32 * lo, _mm512_inserti64x4(a, _mm512_castsi512_si256(e), 1));
            }
        }
    }
}

/* The digits, then the float sums of X per 16 that take the offset of the
 * codes off. */
void quant_split_q6_K(const float *x, int64_t n, void *out)
{
    split_digits(x, n, out, store_q6_K);
    float *sums = (float *)((int16_t *)out + n / 256 * DIGITS) + n / 256;
    for (int64_t i = 0; i < n / 16; i++) {
        float s = 0;
        for (int j = 0; j < 16; j++)
            s += x[16 * i + j];
        sums[i] = s;
    }
}

/* T + A . the 32 digits at P. */
#define DPW(t, a, p) _mm512_dpwssd_epi32((t), (a), _mm512_loadu_si512(p))

/* One half of a Q6_K super-block: the codes u = q + 32 (0..63) as 16-bit
 * integers (nibble from ql, two bits from qh), the four vectors against
 * their digits, two scaled sums into ACC[0..1]; DSC is d * sc * 2^-k per
 * sub-block. Each int32 lane sums 4 products of at most 63 * 2^15 per digit
 * and pair of vectors: below 2^23, so its conversion to float is exact. qh
 * is read into both 256-bit halves, the upper one shifted right by 2 so
 * that both halves find their two bits at 0, 4, 8 or 12 of the word (the
 * upper half's bytes 32..63 of ql take bits 2-3 and 6-7 of qh). */
static inline void half_q6_K(const uint8_t *ql, const uint8_t *qh, const int16_t *dg, __m512 dsc, int g,
                             __m512 acc[2])
{
    const __m512i m4 = _mm512_set1_epi16(0x0F), m3 = _mm512_set1_epi16(0x30);
    const __m512i up2 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m512i q = _mm512_loadu_si512(ql);
    __m512i h = _mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh)), up2);
    /* (a & b) | c: the nibble at 0-3, then the two high bits at 4-5 */
    __m512i v0 = _mm512_ternarylogic_epi32(q, m4, _mm512_and_si512(_mm512_slli_epi16(h, 4), m3), 0xEA);
    __m512i v1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(q, 4), m4, _mm512_and_si512(h, m3), 0xEA);
    __m512i v2 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(q, 8), m4,
                                           _mm512_and_si512(_mm512_srli_epi16(h, 4), m3), 0xEA);
    __m512i v3 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(q, 12), m4,
                                           _mm512_and_si512(_mm512_srli_epi16(h, 8), m3), 0xEA);
    const __m512i z = _mm512_setzero_si512();
    __m512i eh = DPW(DPW(z, v0, dg), v2, dg + 128), el = DPW(DPW(z, v0, dg + 32), v2, dg + 160);
    __m512i oh = DPW(DPW(z, v1, dg + 64), v3, dg + 192), ol = DPW(DPW(z, v1, dg + 96), v3, dg + 224);
    const __m512 two15 = _mm512_set1_ps(32768.0f);
    __m512 fe = _mm512_fmadd_ps(_mm512_cvtepi32_ps(eh), two15, _mm512_cvtepi32_ps(el));
    __m512 fo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(oh), two15, _mm512_cvtepi32_ps(ol));
    /* vectors 0 and 2 are sub-blocks 8g + 0..3, four lanes each; 1 and 3 are 8g + 4..7 */
    const __m512i lane_sb = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 se = _mm512_permutexvar_ps(_mm512_add_epi32(lane_sb, _mm512_set1_epi32(8 * g)), dsc);
    __m512 so = _mm512_permutexvar_ps(_mm512_add_epi32(lane_sb, _mm512_set1_epi32(8 * g + 4)), dsc);
    acc[0] = _mm512_fmadd_ps(se, fe, acc[0]);
    acc[1] = _mm512_fmadd_ps(so, fo, acc[1]);
}

void quant_rows_split_q6_K(const void *rows, size_t stride, int64_t nr, const void *split, const float *xs,
                           int64_t nb, float *y)
{
    (void)xs; /* Q6_K has no mins: its split holds the sums it needs */
    const uint8_t *base = rows;
    const int16_t *dg0 = split;
    const float *inv = (const float *)(dg0 + nb * DIGITS);
    const float *xs16 = inv + nb;
    for (int64_t r = 0; r < nr; r++) {
        const blk_q6_K *w = (const blk_q6_K *)(base + (size_t)r * stride);
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        __m512 off = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; i++, w++) {
            prefetch_ahead(w, sizeof *w);
            __m512 dsc = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_set1_epi16((short)w->d)),
                                       _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                           _mm_loadu_si128((const __m128i *)w->scales))));
            off = _mm512_fmadd_ps(dsc, _mm512_loadu_ps(xs16 + 16 * i), off);
            __m512 dk = _mm512_mul_ps(dsc, _mm512_set1_ps(inv[i]));
            half_q6_K(w->ql, w->qh, dg0 + DIGITS * i, dk, 0, acc);
            half_q6_K(w->ql + 64, w->qh + 32, dg0 + DIGITS * i + 256, dk, 1, acc + 2);
        }
        /* the codes were u = q + 32 */
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))) -
               32.0f * _mm512_reduce_add_ps(off);
    }
}

#endif
