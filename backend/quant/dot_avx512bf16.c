/* dot_avx512bf16.c - decode dot products on AVX512_BF16's VDPBF16PS, for
 * the types whose AVX-512 float kernel spends most of its time turning codes
 * into floats (Q6_K: two shuffles and a conversion per 16 codes).
 *
 * Still exact float activations:
 * - X is split into three bf16 parts, hi + mid + lo == x exactly: each part
 *   takes the next 8 bits of the 24-bit significand (hi and mid by
 *   truncation, each remainder exact in float), so nothing of x is lost.
 *   (VDPBF16PS reads bf16 subnormals as zero, so a lo part below 2^-126, from
 *   an |x| below about 2^-110, would be dropped.)
 * - Each code becomes an exact bf16 with bit operations alone, 64 + q for a
 *   6-bit q, so every product in VDPBF16PS is exact in float and only the
 *   sums round, as in the float kernels. The offset is taken off once per
 *   16 elements with the sums of X (quant_prepare_act_split); it makes the
 *   partial sums larger than the result, which costs a few times the float
 *   kernels' rounding (test_quant holds both to the same bound).
 *
 * Where the bytes of the split go: word w of the 64 bytes of ql a half of
 * 128 loads holds bytes 2w and 2w+1, i.e. four codes, nibble k (0..3) of the
 * word being code k of it. Vector k of the half takes nibble k of every word,
 * so its dword lane i pairs the elements of bytes 4i + k/2 and 4i + 2 + k/2:
 * element B + 64 (k % 2) of the half for byte B. The split stores X's parts
 * in exactly that order (split_q6_K), so one VDPBF16PS multiplies 32 codes
 * with 32 parts in place, and lanes 4j..4j+3 of vector k are sub-block
 * 4 (k % 2) + j of the half, one scale per four lanes.
 *
 * Built with this file's own flags (backend/quant/CMakeLists.txt) and run
 * only once quant.c has seen the CPU report AVX512_BF16 (the avx512bf16
 * instruction set), like dot_avx512.c. */
#include "quant_internal.h"

#ifdef QUANT_HAVE_AVX512BF16

#include <immintrin.h>

/* ---- the split of X ---------------------------------------------------------- */

/* The three parts of 16 floats, each as 16 dwords whose high halves are the
 * bf16 values (low halves zero). */
static inline void split3(__m512 x, __m512i p[3])
{
    const __m512i top = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512i hi = _mm512_and_si512(_mm512_castps_si512(x), top);
    __m512 r = _mm512_sub_ps(x, _mm512_castsi512_ps(hi));
    __m512i mid = _mm512_and_si512(_mm512_castps_si512(r), top);
    p[0] = hi;
    p[1] = mid;
    p[2] = _mm512_castps_si512(_mm512_sub_ps(r, _mm512_castsi512_ps(mid)));
}

/* Words for the bf16 of elements PAR, PAR + 2, ... of a run of 32 floats
 * held as two vectors of 16 dwords: element e's bf16 is word 2e + 1. */
static inline __m512i pick_words(__m512i lo16, __m512i hi16, int par)
{
    const __m512i idx =
        _mm512_add_epi16(_mm512_set_epi16(61, 57, 53, 49, 45, 41, 37, 33, 29, 25, 21, 17, 13, 9, 5, 1, 61, 57, 53,
                                          49, 45, 41, 37, 33, 29, 25, 21, 17, 13, 9, 5, 1),
                         _mm512_set1_epi16((short)(2 * par)));
    return _mm512_permutex2var_epi16(lo16, idx, hi16);
}

/* X (N floats, whole super-blocks) as the Q6_K kernel reads it: per
 * super-block, half g, vector k, part p, 32 bf16 at ((8s + 4g + k) * 3 + p)
 * * 32; then the N/16 sums of X over 16 elements. Vectors k and k + 2 of a
 * half pair the even and the odd elements of the same 64 (elements 64 (k %
 * 2) .. + 63 of the half): 32 from its first 32 elements, 32 from the next. */
void quant_split_q6_K(const float *x, int64_t n, void *out)
{
    uint16_t *o = out;
    float *sums = (float *)((uint8_t *)out + 6 * (size_t)n);
    for (int64_t i = 0; i < n / 64; i++) {
        const float *xc = x + 64 * i;
        __m512i p[4][3];
        for (int v = 0; v < 4; v++) {
            __m512 xv = _mm512_loadu_ps(xc + 16 * v);
            split3(xv, p[v]);
            sums[4 * i + v] = _mm512_reduce_add_ps(xv);
        }
        /* chunk i of 64 is half g = (i % 4) / 2 of super-block i / 4, k % 2 = i % 2 */
        int64_t s = i / 4, g = (i % 4) / 2, k0 = i % 2;
        for (int par = 0; par < 2; par++) {
            uint16_t *dst = o + ((8 * s + 4 * g + k0 + 2 * par) * 3) * 32;
            for (int q = 0; q < 3; q++) {
                __m512i a = pick_words(p[0][q], p[1][q], par), b = pick_words(p[2][q], p[3][q], par);
                _mm512_storeu_si512(dst + 32 * q, _mm512_inserti64x4(a, _mm512_castsi512_si256(b), 1));
            }
        }
    }
}

/* ---- Q6_K -------------------------------------------------------------------- */

/* T + A . B over the 32 bf16 pairs at P (A the codes, P a part of X). */
#define DP(t, a, p) _mm512_dpbf16_ps((t), (__m512bh)(a), (__m512bh)_mm512_loadu_si512(p))

/* The sum over the three parts of vector K of a half (codes V): the parts
 * summed on their own chains, so no VDPBF16PS waits on the previous one. */
static inline __m512 dot_parts(__m512i va, __m512i vb, const uint16_t *xa, const uint16_t *xb)
{
    const __m512 z = _mm512_setzero_ps();
    __m512 h = DP(DP(z, va, xa), vb, xb);
    __m512 m = DP(DP(z, va, xa + 32), vb, xb + 32);
    __m512 l = DP(DP(z, va, xa + 64), vb, xb + 64);
    return _mm512_add_ps(_mm512_add_ps(l, m), h);
}

/* One half of a Q6_K super-block: the codes as bf16 (64 + q: exponent 2^6,
 * q in bits 1-6 of each word, nibble from ql and two bits from qh), the
 * four vectors against their parts, two scaled sums into ACC[0..1]. qh is
 * read into both 256-bit halves, the upper one shifted right by 2 so that
 * both halves find their two bits at 0, 4, 8 or 12 of the word (the upper
 * half's bytes 32..63 of ql take bits 2-3 and 6-7 of qh). */
static inline void half_q6_K(const uint8_t *ql, const uint8_t *qh, const uint16_t *xp, __m512 dsc, int g,
                             __m512 acc[2])
{
    const __m512i mq = _mm512_set1_epi16(0x1E), mh = _mm512_set1_epi16(0x60), e64 = _mm512_set1_epi16(0x4280);
    const __m512i up2 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m512i q = _mm512_loadu_si512(ql);
    __m512i h = _mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh)), up2);
    /* (a & b) | c: the two high bits at 5-6 with the exponent, then the nibble at 1-4 */
    __m512i h0 = _mm512_ternarylogic_epi32(_mm512_slli_epi16(h, 5), mh, e64, 0xEA);
    __m512i h1 = _mm512_ternarylogic_epi32(_mm512_slli_epi16(h, 1), mh, e64, 0xEA);
    __m512i h2 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(h, 3), mh, e64, 0xEA);
    __m512i h3 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(h, 7), mh, e64, 0xEA);
    __m512i v0 = _mm512_ternarylogic_epi32(_mm512_slli_epi16(q, 1), mq, h0, 0xEA);
    __m512i v1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(q, 3), mq, h1, 0xEA);
    __m512i v2 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(q, 7), mq, h2, 0xEA);
    __m512i v3 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(q, 11), mq, h3, 0xEA);
    /* vectors 0 and 2 are sub-blocks 8g + 0..3, four lanes each; 1 and 3 are 8g + 4..7 */
    const __m512i lane_sb = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 se = _mm512_permutexvar_ps(_mm512_add_epi32(lane_sb, _mm512_set1_epi32(8 * g)), dsc);
    __m512 so = _mm512_permutexvar_ps(_mm512_add_epi32(lane_sb, _mm512_set1_epi32(8 * g + 4)), dsc);
    acc[0] = _mm512_fmadd_ps(se, dot_parts(v0, v2, xp, xp + 2 * 96), acc[0]);
    acc[1] = _mm512_fmadd_ps(so, dot_parts(v1, v3, xp + 96, xp + 3 * 96), acc[1]);
}

void quant_rows_split_q6_K(const void *rows, size_t stride, int64_t nr, const void *split, int64_t nb, float *y)
{
    const uint8_t *base = rows;
    const uint16_t *xp = split;
    const float *xs16 = (const float *)((const uint8_t *)split + 6 * 256 * (size_t)nb);
    for (int64_t r = 0; r < nr; r++) {
        const blk_q6_K *w = (const blk_q6_K *)(base + (size_t)r * stride);
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        __m512 off = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; i++, w++) {
            const uint16_t *xb = xp + i * 768;
            prefetch_ahead(w, sizeof *w);
            __m512 dsc = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_set1_epi16((short)w->d)),
                                       _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                           _mm_loadu_si128((const __m128i *)w->scales))));
            off = _mm512_fmadd_ps(dsc, _mm512_loadu_ps(xs16 + 16 * i), off);
            half_q6_K(w->ql, w->qh, xb, dsc, 0, acc);
            half_q6_K(w->ql + 64, w->qh + 32, xb + 384, dsc, 1, acc + 2);
        }
        /* codes were 64 + q = 96 + (q - 32) */
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))) -
               96.0f * _mm512_reduce_add_ps(off);
    }
}

#endif
