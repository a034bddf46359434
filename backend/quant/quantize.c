/* quantize.c - reference quantisers: floats to blocks of each type kvchat
 * computes with. Used by the tests (round trips, kernels fed known values)
 * and tiny test models; synthetic models do not quantise (random.c). Plain
 * and readable, not tuned for quality.
 */
#include "quant_internal.h"

#include <math.h>

void quant_quantize_f32(const float *src, void *dst, int64_t nb)
{
    memcpy(dst, src, (size_t)nb * sizeof(float));
}

void quant_quantize_f16(const float *src, void *dst, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++)
    {
        uint16_t h = quant_f32_to_f16(src[i]); /* DST may be unaligned */
        memcpy((uint8_t *)dst + 2 * i, &h, sizeof h);
    }
}

void quant_quantize_bf16(const float *src, void *dst, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++)
    {
        uint16_t h = quant_f32_to_bf16(src[i]);
        memcpy((uint8_t *)dst + 2 * i, &h, sizeof h);
    }
}

/* Inverse of k_scale_min for eight 6-bit scales and mins. */
static void k_pack_scales(const uint8_t sc[8], const uint8_t mn[8], uint8_t q[12])
{
    for (int s = 0; s < 4; s++) {
        q[s] = (uint8_t)(sc[s] | ((sc[s + 4] >> 4) << 6));
        q[s + 4] = (uint8_t)(mn[s] | ((mn[s + 4] >> 4) << 6));
        q[s + 8] = (uint8_t)((sc[s + 4] & 0xF) | ((mn[s + 4] & 0xF) << 4));
    }
}

/* Quantisers compute every q against the scale as it will be read back (after
 * fp16 rounding), so the round trip error is only the quantisation step. */

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Value of largest magnitude, sign kept (the symmetric types map it to -2^(b-1)
 * so the full code range is used). */
static float max_abs_signed(const float *x, int n)
{
    float amax = 0, mx = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            mx = x[j];
        }
    return mx;
}

static void min_max(const float *x, int n, float *mn, float *mx)
{
    *mn = x[0];
    *mx = x[0];
    for (int j = 1; j < n; j++) {
        *mn = fminf(*mn, x[j]);
        *mx = fmaxf(*mx, x[j]);
    }
}

void quant_quantize_q8_0(const float *x, void *dst, int64_t nb)
{
    blk_q8_0 *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = fabsf(max_abs_signed(x, 32));
        y[i].d = quant_f32_to_f16(amax / 127);
        float d = quant_f16_to_f32(y[i].d), id = d != 0 ? 1 / d : 0;
        for (int j = 0; j < 32; j++)
            y[i].qs[j] = (int8_t)clampi((int)lrintf(x[j] * id), -128, 127);
    }
}

/* Symmetric 4- or 5-bit codes (Q4_0: bits 4, Q5_0: bits 5) into Q[32]. */
static void quant_sym32(const float *x, int bits, uint16_t *d16, int q[32])
{
    int half = 1 << (bits - 1);
    *d16 = quant_f32_to_f16(max_abs_signed(x, 32) / -half);
    float d = quant_f16_to_f32(*d16), id = d != 0 ? 1 / d : 0;
    for (int j = 0; j < 32; j++)
        q[j] = clampi((int)lrintf(x[j] * id) + half, 0, 2 * half - 1);
}

/* Asymmetric codes with a min (Q4_1, Q5_1). */
static void quant_asym32(const float *x, int bits, uint16_t *d16, uint16_t *m16, int q[32])
{
    int nmax = (1 << bits) - 1;
    float mn, mx;
    min_max(x, 32, &mn, &mx);
    *d16 = quant_f32_to_f16((mx - mn) / nmax);
    *m16 = quant_f32_to_f16(mn);
    float d = quant_f16_to_f32(*d16), m = quant_f16_to_f32(*m16), id = d != 0 ? 1 / d : 0;
    for (int j = 0; j < 32; j++)
        q[j] = clampi((int)lrintf((x[j] - m) * id), 0, nmax);
}

static void pack_nibbles(const int q[32], uint8_t qs[16])
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
}

static void pack_high_bits(const int q[32], uint8_t qh[4])
{
    uint32_t h = 0;
    for (int j = 0; j < 32; j++)
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(h >> (8 * k));
}

/* Q4_K / Q5_K: per sub-block of 32 a scale and a non-negative min taken from
 * its range, then both quantised to 6 bits against the super-block d / dmin.
 * Writes the codes to L[256] and the header fields. */
static void quant_kminmax(const float *x, int nmax, uint16_t *d16, uint16_t *dmin16,
                          uint8_t scales[12], int L[256])
{
    float scale[8], minv[8], maxscale = 0, maxmin = 0;
    for (int s = 0; s < 8; s++) {
        float mn, mx;
        min_max(x + 32 * s, 32, &mn, &mx);
        mn = fminf(mn, 0); /* the format only subtracts: the min is <= 0 */
        scale[s] = (mx - mn) / nmax;
        minv[s] = -mn;
        maxscale = fmaxf(maxscale, scale[s]);
        maxmin = fmaxf(maxmin, minv[s]);
    }
    *d16 = quant_f32_to_f16(maxscale / 63);
    *dmin16 = quant_f32_to_f16(maxmin / 63);
    float d = quant_f16_to_f32(*d16), dmin = quant_f16_to_f32(*dmin16);
    uint8_t sc[8], mn[8];
    for (int s = 0; s < 8; s++) {
        sc[s] = (uint8_t)(d > 0 ? clampi((int)lrintf(scale[s] / d), 0, 63) : 0);
        mn[s] = (uint8_t)(dmin > 0 ? clampi((int)lrintf(minv[s] / dmin), 0, 63) : 0);
        float ds = d * sc[s], m = dmin * mn[s];
        for (int j = 0; j < 32; j++)
            L[32 * s + j] = ds > 0 ? clampi((int)lrintf((x[32 * s + j] + m) / ds), 0, nmax) : 0;
    }
    k_pack_scales(sc, mn, scales);
}

void quant_quantize_q4_K(const float *x, void *dst, int64_t nb)
{
    blk_q4_K *y = dst;
    int L[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        uint16_t d, dmin; /* no pointers into a packed block */
        quant_kminmax(x, 15, &d, &dmin, y[i].scales, L);
        y[i].d = d;
        y[i].dmin = dmin;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void quant_quantize_q5_K(const float *x, void *dst, int64_t nb)
{
    blk_q5_K *y = dst;
    int L[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        uint16_t d, dmin;
        quant_kminmax(x, 31, &d, &dmin, y[i].scales, L);
        y[i].d = d;
        y[i].dmin = dmin;
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
                y[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            }
    }
}

/* Q6_K: symmetric per sub-block of 16, scales as int8 against the super-block d. */
void quant_quantize_q6_K(const float *x, void *dst, int64_t nb)
{
    blk_q6_K *y = dst;
    int L[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float scale[16], amax = 0;
        for (int k = 0; k < 16; k++) {
            scale[k] = max_abs_signed(x + 16 * k, 16) / -32;
            amax = fmaxf(amax, fabsf(scale[k]));
        }
        y[i].d = quant_f32_to_f16(amax / 127);
        float d = quant_f16_to_f32(y[i].d);
        for (int k = 0; k < 16; k++) {
            int sc = d > 0 ? clampi((int)lrintf(scale[k] / d), -128, 127) : 0;
            y[i].scales[k] = (int8_t)sc;
            float ds = d * sc;
            for (int j = 0; j < 16; j++)
                L[16 * k + j] = ds != 0 ? clampi((int)lrintf(x[16 * k + j] / ds) + 32, 0, 63) : 32;
        }
        for (int h = 0; h < 2; h++) {
            const int *q = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((q[l] & 0xF) | ((q[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q[l + 32] & 0xF) | ((q[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                                  ((q[l + 96] >> 4) << 6));
            }
        }
    }
}

void quant_quantize_q4_0(const float *src, void *dst, int64_t nb)
{
    int q[32];
    for (int64_t i = 0; i < nb; i++) {
        blk_q4_0 *b = (blk_q4_0 *)dst + i;
        uint16_t d;
        quant_sym32(src + 32 * i, 4, &d, q);
        b->d = d;
        pack_nibbles(q, b->qs);
    }
}

void quant_quantize_q5_0(const float *src, void *dst, int64_t nb)
{
    int q[32];
    for (int64_t i = 0; i < nb; i++) {
        blk_q5_0 *b = (blk_q5_0 *)dst + i;
        uint16_t d;
        quant_sym32(src + 32 * i, 5, &d, q);
        b->d = d;
        pack_nibbles(q, b->qs);
        pack_high_bits(q, b->qh);
    }
}

void quant_quantize_q4_1(const float *src, void *dst, int64_t nb)
{
    int q[32];
    for (int64_t i = 0; i < nb; i++) {
        blk_q4_1 *b = (blk_q4_1 *)dst + i;
        uint16_t d, m;
        quant_asym32(src + 32 * i, 4, &d, &m, q);
        b->d = d;
        b->m = m;
        pack_nibbles(q, b->qs);
    }
}

void quant_quantize_q5_1(const float *src, void *dst, int64_t nb)
{
    int q[32];
    for (int64_t i = 0; i < nb; i++) {
        blk_q5_1 *b = (blk_q5_1 *)dst + i;
        uint16_t d, m;
        quant_asym32(src + 32 * i, 5, &d, &m, q);
        b->d = d;
        b->m = m;
        pack_nibbles(q, b->qs);
        pack_high_bits(q, b->qh);
    }
}

/* ---- the low-bit types ------------------------------------------------------ */

/* Round to nearest with the format's own scales, as the quantisers above:
 * no search for better scales (ggml's make_qkx / importance-matrix
 * quantisers do that), so the errors are a little above llama.cpp's; what
 * matters here is that every field is written as the format means it. */

/* Q2_K: per sub-block of 16 a scale (range / 3) and a non-negative min from
 * its range, both to 4 bits against the super-block d / dmin (each the
 * largest over 15), then the 2-bit codes against them as read back. */
void quant_quantize_q2_K(const float *x, void *dst, int64_t nb)
{
    blk_q2_K *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float scale[16], minv[16], maxscale = 0, maxmin = 0;
        for (int s = 0; s < 16; s++) {
            float mn, mx;
            min_max(x + 16 * s, 16, &mn, &mx);
            mn = fminf(mn, 0);
            scale[s] = (mx - mn) / 3;
            minv[s] = -mn;
            maxscale = fmaxf(maxscale, scale[s]);
            maxmin = fmaxf(maxmin, minv[s]);
        }
        uint16_t d16 = quant_f32_to_f16(maxscale / 15), dmin16 = quant_f32_to_f16(maxmin / 15);
        y[i].d = d16;
        y[i].dmin = dmin16;
        float d = quant_f16_to_f32(d16), dmin = quant_f16_to_f32(dmin16);
        int L[256];
        for (int s = 0; s < 16; s++) {
            int sc = d > 0 ? clampi((int)lrintf(scale[s] / d), 0, 15) : 0;
            int m = dmin > 0 ? clampi((int)lrintf(minv[s] / dmin), 0, 15) : 0;
            y[i].scales[s] = (uint8_t)(sc | m << 4);
            float ds = d * sc, ml = dmin * m;
            for (int j = 0; j < 16; j++)
                L[16 * s + j] = ds > 0 ? clampi((int)lrintf((x[16 * s + j] + ml) / ds), 0, 3) : 0;
        }
        /* Element 128n + 32j + l sits at bits 2j of qs[32n + l]. */
        memset(y[i].qs, 0, sizeof y[i].qs);
        for (int e = 0; e < 256; e++)
            y[i].qs[32 * (e / 128) + e % 32] |= (uint8_t)(L[e] << (2 * ((e / 32) % 4)));
    }
}

/* Q3_K: per sub-block of 16 the scale that maps its largest magnitude to -4
 * (as Q4_0 maps it to -8), to a signed 6-bit value against d (the largest
 * scale over 31), then codes -4..3: low 2 bits in qs, the third in hmask. */
void quant_quantize_q3_K(const float *x, void *dst, int64_t nb)
{
    blk_q3_K *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float scale[16], amax = 0;
        for (int s = 0; s < 16; s++) {
            scale[s] = max_abs_signed(x + 16 * s, 16) / -4;
            amax = fmaxf(amax, fabsf(scale[s]));
        }
        uint16_t d16 = quant_f32_to_f16(amax / 31);
        y[i].d = d16;
        float d = quant_f16_to_f32(d16);
        memset(y[i].scales, 0, sizeof y[i].scales);
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        memset(y[i].qs, 0, sizeof y[i].qs);
        for (int s = 0; s < 16; s++) {
            int sc = d > 0 ? clampi((int)lrintf(scale[s] / d), -32, 31) : 0;
            int u = sc + 32; /* the inverse of q3k_scale */
            if (s < 8)
                y[i].scales[s] |= (uint8_t)(u & 0xF);
            else
                y[i].scales[s - 8] |= (uint8_t)((u & 0xF) << 4);
            y[i].scales[8 + s % 4] |= (uint8_t)((u >> 4) << (2 * (s / 4)));
            float ds = d * sc;
            for (int j = 0; j < 16; j++) {
                int e = 16 * s + j;
                int q = ds != 0 ? clampi((int)lrintf(x[e] / ds), -4, 3) : 0;
                int k = e / 32, l = e % 32;
                y[i].qs[32 * (k / 4) + l] |= (uint8_t)(((q + 4) & 3) << (2 * (k % 4)));
                if (q >= 0) /* set: no -4 */
                    y[i].hmask[l] |= (uint8_t)(1 << k);
            }
        }
    }
}

/* Index of the level in LUT[16] times D nearest to V (the first on a tie),
 * comparing |d * level - v| as gguf-py's MXFP4 quantiser does. */
static int nearest_level(const int8_t lut[16], float d, float v)
{
    int best = 0;
    float err = fabsf(d * lut[0] - v);
    for (int k = 1; k < 16; k++) {
        float e = fabsf(d * lut[k] - v);
        if (e < err) {
            err = e;
            best = k;
        }
    }
    return best;
}

/* 32 values at scale D to nibbles in Q4_0's order. */
static void quant_lut32(const float *x, const int8_t lut[16], float d, uint8_t qs[16])
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)(nearest_level(lut, d, x[j]) | nearest_level(lut, d, x[j + 16]) << 4);
}

/* IQ4_NL: the block's largest magnitude maps to the level -127, the others to
 * their nearest level. */
void quant_quantize_iq4_nl(const float *x, void *dst, int64_t nb)
{
    blk_iq4_nl *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        uint16_t d16 = quant_f32_to_f16(max_abs_signed(x, 32) / -127);
        y[i].d = d16;
        quant_lut32(x, quant_iq4nl_values, quant_f16_to_f32(d16), y[i].qs);
    }
}

/* IQ4_XS: IQ4_NL's scale per sub-block of 32, to a signed 6-bit value against
 * d (the largest over 31). */
void quant_quantize_iq4_xs(const float *x, void *dst, int64_t nb)
{
    blk_iq4_xs *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float scale[8], amax = 0;
        for (int ib = 0; ib < 8; ib++) {
            scale[ib] = max_abs_signed(x + 32 * ib, 32) / -127;
            amax = fmaxf(amax, fabsf(scale[ib]));
        }
        uint16_t d16 = quant_f32_to_f16(amax / 31), sh = 0;
        y[i].d = d16;
        float d = quant_f16_to_f32(d16);
        memset(y[i].scales_l, 0, sizeof y[i].scales_l);
        for (int ib = 0; ib < 8; ib++) {
            int sc = d > 0 ? clampi((int)lrintf(scale[ib] / d), -32, 31) : 0;
            int u = sc + 32;
            y[i].scales_l[ib / 2] |= (uint8_t)((u & 0xF) << (4 * (ib % 2)));
            sh |= (uint16_t)((u >> 4) << (2 * ib));
            quant_lut32(x + 32 * ib, quant_iq4nl_values, d * sc, y[i].qs + 16 * ib);
        }
        y[i].scales_h = sh;
    }
}

/* MXFP4, as ggml's reference quantiser and gguf-py's: the shared exponent is
 * floor(log2(amax)) - 2 (the OCP rule, emax of E2M1 being 2), so the largest
 * element lands in [4, 8) before the levels' cap of 6, and every element
 * takes its nearest level. floor(log2) is read off the float's exponent, so
 * no log2f rounding can move it. */
void quant_quantize_mxfp4(const float *x, void *dst, int64_t nb)
{
    blk_mxfp4 *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = fabsf(max_abs_signed(x, 32));
        int e = 0;
        if (amax > 0) {
            int ex;
            frexpf(amax, &ex); /* amax = m * 2^ex, m in [0.5, 1) */
            e = clampi(ex - 1 - 2 + 127, 0, 254);
        }
        y[i].e = (uint8_t)e;
        quant_lut32(x, quant_mxfp4_values, mxfp4_scale((uint8_t)e), y[i].qs);
    }
}
