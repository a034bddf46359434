/* dot_avx512vnni.c - Q4_K decode on AVX512_VNNI's VPDPWSSD: 32 products of
 * 16-bit integers a cycle into 16 int32 sums, with no conversion of codes to
 * floats at all (the float kernel widens, converts and multiplies every code;
 * that is most of its work).
 *
 * X as integers, at float precision or better: each super-block of 256
 * inputs becomes 30-bit integers D = round(x * 2^k), with one power of two
 * 2^k per block chosen so that its largest |x| lands in [2^29, 2^30), held
 * as two 16-bit digits, D = hi * 2^15 + lo (lo in 0..32767). Every input at
 * least 2^-6 of its block's largest keeps all 24 bits of its float
 * significand; a smaller one is rounded to 2^-30 of the largest, far below
 * the rounding of the float sums (test_quant holds this kernel to the float
 * kernels' bound, inputs from 2^-90 to 2^90 included). This is not ggml's
 * int8 X, which rounds every input to 2^-7 of its block's largest.
 *
 * The weights: a code (0..15) times its 6-bit scale is at most 945, so one
 * VPMULLW makes 32 exact 16-bit weights of a sub-block, and each int32 lane
 * sums 16 products of at most 945 * 2^15 over a super-block: below 2^29, no
 * overflow. The two digit sums become floats once per super-block (the only
 * rounding besides the float sums across blocks), then are scaled by 2^-k
 * and d. The mins use the float sums of X per 32 as in every kernel.
 *
 * Built with the avx512bf16 instruction set's flags (backend/quant/
 * CMakeLists.txt) and run only on a CPU that reports AVX512_VNNI as well as
 * AVX512_BF16 (quant.c), like dot_avx512bf16.c. */
#include "quant_internal.h"

#ifdef QUANT_HAVE_AVX512BF16

#include <immintrin.h>
#include <math.h>

/* The split of N inputs: per super-block 256 hi digits then 256 lo digits
 * (int16, in element order); then a float 2^-k per super-block; then the
 * N/32 float sums of X. */
enum { DIGITS_BYTES = 2 * 256 * 2 };

void quant_split_q4_K(const float *x, int64_t n, void *out)
{
    int64_t nb = n / 256;
    int16_t *dg = out;
    float *inv = (float *)((uint8_t *)out + (size_t)nb * DIGITS_BYTES);
    float *sums = inv + nb;
    for (int64_t i = 0; i < n / 32; i++) {
        float s = 0; /* as quant_prepare_act sums them */
        for (int j = 0; j < 32; j++)
            s += x[32 * i + j];
        sums[i] = s;
    }
    for (int64_t b = 0; b < nb; b++, x += 256, dg += 512) {
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < 256; i += 16)
            m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
        float mx = _mm512_reduce_max_ps(m);
        if (!isfinite(mx) || isnan(_mm512_reduce_add_ps(m))) {
            /* a NaN or an infinity: the block's result is not finite */
            for (int i = 0; i < 512; i++)
                dg[i] = 0;
            inv[b] = NAN;
            continue;
        }
        /* 2^-149, the least float, bounds k: a block of inputs below 2^-120
         * keeps fewer bits (such inputs are far below any model's). */
        int k = mx > 0 ? 29 - ilogbf(mx) : 0;
        if (k > 149)
            k = 149;
        inv[b] = ldexpf(1, -k);
        const __m512 kk = _mm512_set1_ps((float)k);
        for (int i = 0; i < 256; i += 16) {
            /* x * 2^k is exact (scalef never forms 2^k, which may not be a
             * float); the conversion rounds to nearest */
            __m512i d = _mm512_cvtps_epi32(_mm512_scalef_ps(_mm512_loadu_ps(x + i), kk));
            _mm256_storeu_si256((__m256i *)(dg + i), _mm512_cvtepi32_epi16(_mm512_srai_epi32(d, 15)));
            _mm256_storeu_si256((__m256i *)(dg + 256 + i),
                                _mm512_cvtepi32_epi16(_mm512_and_si512(d, _mm512_set1_epi32(0x7FFF))));
        }
    }
}

/* Sub-block 2c of a Q4_K super-block is the low nibbles of qs[32c..32c+31],
 * 2c+1 the high ones: 32 codes each, widened to 16 bits, times the scale. */
void quant_rows_split_q4_K(const void *rows, size_t stride, int64_t nr, const void *split, int64_t nb, float *y)
{
    const uint8_t *base = rows;
    const int16_t *dg0 = split;
    const float *inv = (const float *)((const uint8_t *)split + (size_t)nb * DIGITS_BYTES);
    const float *xs = inv + nb;
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
            const int16_t *hi = dg0 + 512 * i, *lo = hi + 256;
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

#endif
