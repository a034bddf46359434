/* random.c - random but valid rows of every type kvchat computes with, for
 * synthetic models (backend/model/synth.c decides which rows and seeds; this
 * file knows the block layouts, so it decides what a valid random block is).
 *
 * Made FAST, never by quantising floats: a quantised row is filled with
 * random bytes, then the fp16 scale fields of every block are overwritten
 * with one value chosen so the elements have a standard deviation of about
 * SIGMA; float rows get a random sign and mantissa under a fixed exponent
 * range. The bytes depend only on the generator state passed in, so a row
 * made anywhere (a CUDA staging buffer, the CPU model's mapping) is the same.
 */
#include "quant_internal.h"

#include <math.h>
#include <stddef.h>

static void random_bytes(uint8_t *p, size_t n, uint64_t *s)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = quant_rand64(s);
        memcpy(p + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = quant_rand64(s);
        memcpy(p + i, &v, n - i);
    }
}

static inline void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* NB blocks of BSZ random bytes, then in every block the fp16 scale D at byte
 * DOFF and, when MOFF >= 0, the fp16 min M at byte MOFF. memcpy rather than
 * the block structs: the caller's buffer need not be aligned. */
static void random_blocks(void *row, int64_t nb, size_t bsz, size_t doff, int moff, double d, double m,
                          uint64_t *s)
{
    uint8_t *p = row;
    random_bytes(p, (size_t)nb * bsz, s);
    uint16_t d16 = quant_f32_to_f16((float)d), m16 = quant_f32_to_f16((float)m);
    for (int64_t b = 0; b < nb; b++, p += bsz) {
        put16(p + doff, d16);
        if (moff >= 0)
            put16(p + moff, m16);
    }
}

/* ---- float types ---------------------------------------------------------- */

/* Random sign and mantissa, exponent E or E-1, which puts the magnitude in
 * [2^(E-1), 2^(E+1)) with an RMS of about 1.21 * 2^E. No float arithmetic per
 * element, so f16 fills as fast as bytes. */
static int float_exponent(float sigma) { return (int)lround(log2(sigma / 1.208)); }

void quant_random_f32(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    int e = float_exponent(sigma);
    for (int64_t i = 0; i < ne0; i++) {
        uint64_t u = quant_rand64(s);
        unsigned sign = (unsigned)(u >> 63), lo = (unsigned)((u >> 62) & 1);
        int ex = 127 + e - (int)lo;
        uint32_t b = (uint32_t)sign << 31 | (uint32_t)(ex < 1 ? 1 : ex) << 23 | (uint32_t)(u & 0x7FFFFF);
        memcpy((uint8_t *)row + 4 * i, &b, 4);
    }
}

void quant_random_f16(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    int e = float_exponent(sigma);
    for (int64_t i = 0; i < ne0; i++) {
        uint64_t u = quant_rand64(s);
        unsigned sign = (unsigned)(u >> 63), lo = (unsigned)((u >> 62) & 1);
        int ex = 15 + e - (int)lo;
        uint16_t b = (uint16_t)(sign << 15 | (unsigned)(ex < 1 ? 1 : ex > 30 ? 30 : ex) << 10 |
                                (unsigned)(u & 0x3FF));
        put16((uint8_t *)row + 2 * i, b);
    }
}

void quant_random_bf16(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    int e = float_exponent(sigma);
    for (int64_t i = 0; i < ne0; i++) {
        uint64_t u = quant_rand64(s);
        unsigned sign = (unsigned)(u >> 63), lo = (unsigned)((u >> 62) & 1);
        int ex = 127 + e - (int)lo;
        uint16_t b = (uint16_t)(sign << 15 | (unsigned)(ex < 1 ? 1 : ex) << 7 | (unsigned)(u & 0x7F));
        put16((uint8_t *)row + 2 * i, b);
    }
}

/* ---- block types ---------------------------------------------------------- */

/* The divisors below are the standard deviation of the integer part of one
 * element with random bits, so that d = sigma / std gives elements of
 * deviation sigma. Worked out from the layouts (uniform codes, uniform 6-bit
 * sub-block scales and mins, the min chosen so the mean is zero):
 *   Q8_0: q in -128..127               sqrt((256^2-1)/12)         = 73.9
 *   Q4_0/Q4_1: 16 levels               sqrt((16^2-1)/12)          = 4.61
 *   Q5_0/Q5_1: 32 levels               sqrt((32^2-1)/12)          = 9.23
 *   Q4_K: sc*q - 7.5*mn, sc,mn 0..63, q 0..15                     = 258
 *   Q5_K: sc*q - 15.5*mn, q 0..31                                 = 527
 *   Q6_K: sc*(q-32), sc int8, q 0..63                             = 1366
 *   Q2_K: sc*q - 1.5*mn, sc,mn 0..15, q 0..3                      = 13.9
 *   Q3_K: (sc-32)*q, sc 0..63, q -4..3                            = 43.3
 *   IQ4_NL: the 16 levels (RMS; their mean is -5.9)               = 67.4
 *   IQ4_XS: (sc-32)*level, sc 0..63                               = 1246
 *   MXFP4: the 16 doubled E2M1 levels                             = 5.85
 * The min centres the codes: 7.5 or 15.5 steps (Q4_1 and Q5_1 store it
 * added, the k-quants subtracted and times the 6-bit min; Q2_K's 4-bit
 * scale and min average 7.5 each and its codes 1.5, hence dmin = 1.5 d).
 * (These were summed over every combination of code and scale.) */

void quant_random_q8_0(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    random_blocks(row, ne0 / 32, sizeof(blk_q8_0), offsetof(blk_q8_0, d), -1, sigma / 73.9, 0, s);
}

void quant_random_q4_0(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    random_blocks(row, ne0 / 32, sizeof(blk_q4_0), offsetof(blk_q4_0, d), -1, sigma / 4.61, 0, s);
}

void quant_random_q4_1(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    double d = sigma / 4.61;
    random_blocks(row, ne0 / 32, sizeof(blk_q4_1), offsetof(blk_q4_1, d), (int)offsetof(blk_q4_1, m), d,
                  -7.5 * d, s);
}

void quant_random_q5_0(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    random_blocks(row, ne0 / 32, sizeof(blk_q5_0), offsetof(blk_q5_0, d), -1, sigma / 9.23, 0, s);
}

void quant_random_q5_1(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    double d = sigma / 9.23;
    random_blocks(row, ne0 / 32, sizeof(blk_q5_1), offsetof(blk_q5_1, d), (int)offsetof(blk_q5_1, m), d,
                  -15.5 * d, s);
}

void quant_random_q4_K(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    double d = sigma / 258.0;
    random_blocks(row, ne0 / 256, sizeof(blk_q4_K), offsetof(blk_q4_K, d), (int)offsetof(blk_q4_K, dmin), d,
                  7.5 * d, s);
}

void quant_random_q5_K(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    double d = sigma / 527.0;
    random_blocks(row, ne0 / 256, sizeof(blk_q5_K), offsetof(blk_q5_K, d), (int)offsetof(blk_q5_K, dmin), d,
                  15.5 * d, s);
}

void quant_random_q6_K(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    random_blocks(row, ne0 / 256, sizeof(blk_q6_K), offsetof(blk_q6_K, d), -1, sigma / 1366.0, 0, s);
}

void quant_random_q2_K(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    double d = sigma / 13.87;
    random_blocks(row, ne0 / 256, sizeof(blk_q2_K), offsetof(blk_q2_K, d), (int)offsetof(blk_q2_K, dmin), d,
                  1.5 * d, s);
}

void quant_random_q3_K(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    random_blocks(row, ne0 / 256, sizeof(blk_q3_K), offsetof(blk_q3_K, d), -1, sigma / 43.34, 0, s);
}

void quant_random_iq4_nl(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    random_blocks(row, ne0 / 32, sizeof(blk_iq4_nl), offsetof(blk_iq4_nl, d), -1, sigma / 67.44, 0, s);
}

void quant_random_iq4_xs(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    random_blocks(row, ne0 / 256, sizeof(blk_iq4_xs), offsetof(blk_iq4_xs, d), -1, sigma / 1246.0, 0, s);
}

/* MXFP4 scales are powers of two: the exponent nearest SIGMA / 5.85 (so
 * within a factor sqrt(2) of the deviation asked for), one byte per block. */
void quant_random_mxfp4(void *row, int64_t ne0, float sigma, uint64_t *s)
{
    int64_t nb = ne0 / 32;
    uint8_t *p = row;
    random_bytes(p, (size_t)nb * sizeof(blk_mxfp4), s);
    long e = lround(log2(sigma / 5.852)) + 128; /* mxfp4_scale(e) = 2^(e-128) */
    uint8_t eb = (uint8_t)(e < 2 ? 2 : e > 254 ? 254 : e);
    for (int64_t b = 0; b < nb; b++)
        p[b * (int64_t)sizeof(blk_mxfp4) + offsetof(blk_mxfp4, e)] = eb;
}
