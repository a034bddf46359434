/* dot_ref.c - the scalar reference dot products: one weight row of each type
 * times a float input. Each block type sums q*x in float per block (or
 * K-quant sub-block) with the codes' integer offsets already applied, then
 * scales: the order the AVX2 kernels (dot_avx2.c) use, written plainly, so
 * the two differ only in float summation order. These are the readable
 * references the tests trust, and what quant_dot runs without AVX2.
 */
#include "quant_internal.h"

float quant_dot_ref_f32(const void *row, const float *x, const float *xs, int64_t n)
{
    (void)xs;
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += load_f32(row, i) * x[i];
    return s;
}

float quant_dot_ref_f16(const void *row, const float *x, const float *xs, int64_t n)
{
    (void)xs;
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += quant_f16_to_f32(load_u16(row, i)) * x[i];
    return s;
}

float quant_dot_ref_bf16(const void *row, const float *x, const float *xs, int64_t n)
{
    (void)xs;
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += quant_bf16_to_f32(load_u16(row, i)) * x[i];
    return s;
}

float quant_dot_ref_q8_0(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q8_0 *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float p = 0;
        for (int j = 0; j < 32; j++)
            p += (float)w[i].qs[j] * x[j];
        s += quant_f16_to_f32(w[i].d) * p;
    }
    return s;
}

float quant_dot_ref_q4_0(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q4_0 *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float p = 0;
        for (int j = 0; j < 16; j++)
            p += (float)((w[i].qs[j] & 0xF) - 8) * x[j] + (float)((w[i].qs[j] >> 4) - 8) * x[j + 16];
        s += quant_f16_to_f32(w[i].d) * p;
    }
    return s;
}

float quant_dot_ref_q4_1(const void *row, const float *x, const float *xs, int64_t nb)
{
    const blk_q4_1 *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float p = 0;
        for (int j = 0; j < 16; j++)
            p += (float)(w[i].qs[j] & 0xF) * x[j] + (float)(w[i].qs[j] >> 4) * x[j + 16];
        s += quant_f16_to_f32(w[i].d) * p + quant_f16_to_f32(w[i].m) * xs[i];
    }
    return s;
}

float quant_dot_ref_q5_0(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q5_0 *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        uint32_t h = load_u32le(w[i].qh);
        float p = 0;
        for (int j = 0; j < 16; j++) {
            int lo = ((w[i].qs[j] & 0xF) | (int)(((h >> j) & 1) << 4)) - 16;
            int hi = ((w[i].qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4)) - 16;
            p += (float)lo * x[j] + (float)hi * x[j + 16];
        }
        s += quant_f16_to_f32(w[i].d) * p;
    }
    return s;
}

float quant_dot_ref_q5_1(const void *row, const float *x, const float *xs, int64_t nb)
{
    const blk_q5_1 *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        uint32_t h = load_u32le(w[i].qh);
        float p = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (w[i].qs[j] & 0xF) | (int)(((h >> j) & 1) << 4);
            int hi = (w[i].qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
            p += (float)lo * x[j] + (float)hi * x[j + 16];
        }
        s += quant_f16_to_f32(w[i].d) * p + quant_f16_to_f32(w[i].m) * xs[i];
    }
    return s;
}

/* Q4_K (QH NULL) and Q5_K, one super-block: over each sub-block of 32,
 * d*sc*sum(q*x) - dmin*mn*sum(x), the sums of x from XS[8]. */
static float dot_kminmax_ref(uint16_t d16, uint16_t dmin16, const uint8_t scales[12], const uint8_t *qs,
                             const uint8_t *qh, const float *x, const float *xs)
{
    float d = quant_f16_to_f32(d16), dmin = quant_f16_to_f32(dmin16), s = 0;
    for (int sb = 0; sb < 8; sb++) {
        uint8_t sc, mn;
        k_scale_min(scales, sb, &sc, &mn);
        const uint8_t *q = qs + 32 * (sb / 2);
        int shift = (sb & 1) * 4;
        float p = 0;
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> shift) & 0xF;
            if (qh)
                v |= ((qh[l] >> sb) & 1) << 4;
            p += (float)v * x[32 * sb + l];
        }
        s += d * sc * p - dmin * mn * xs[sb];
    }
    return s;
}

float quant_dot_ref_q4_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    const blk_q4_K *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++)
        s += dot_kminmax_ref(w[i].d, w[i].dmin, w[i].scales, w[i].qs, NULL, x + 256 * i, xs + 8 * i);
    return s;
}

float quant_dot_ref_q5_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    const blk_q5_K *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++)
        s += dot_kminmax_ref(w[i].d, w[i].dmin, w[i].scales, w[i].qs, w[i].qh, x + 256 * i, xs + 8 * i);
    return s;
}

/* Q6_K: an int8 scale per sub-block of 16, codes offset by 32. */
float quant_dot_ref_q6_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q6_K *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float part[16] = {0};
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qh = w[i].qh + 32 * h;
            float *pt = part + 8 * h;
            const float *xh = x + 128 * h;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                pt[is + 0] += (float)q1 * xh[l];
                pt[is + 2] += (float)q2 * xh[l + 32];
                pt[is + 4] += (float)q3 * xh[l + 64];
                pt[is + 6] += (float)q4 * xh[l + 96];
            }
        }
        float d = quant_f16_to_f32(w[i].d);
        for (int k = 0; k < 16; k++)
            s += d * w[i].scales[k] * part[k];
    }
    return s;
}

/* Q2_K: per sub-block of 16, dl*sum(q*x) - ml*sum(x). The min is per 16
 * elements, finer than the prepared 32-element sums, so the sums of x are
 * taken here. */
float quant_dot_ref_q2_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q2_K *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        float d = quant_f16_to_f32(w[i].d), dmin = quant_f16_to_f32(w[i].dmin);
        for (int k = 0; k < 8; k++, x += 32) {
            const uint8_t *q = w[i].qs + 32 * (k / 4);
            int shift = 2 * (k % 4);
            for (int h = 0; h < 2; h++) {
                uint8_t sc = w[i].scales[2 * k + h];
                float p = 0, sx = 0;
                for (int l = 0; l < 16; l++) {
                    int j = 16 * h + l;
                    p += (float)((q[j] >> shift) & 3) * x[j];
                    sx += x[j];
                }
                s += d * (sc & 0xF) * p - dmin * (sc >> 4) * sx;
            }
        }
    }
    return s;
}

/* Q3_K: codes -4..3, a signed scale per sub-block of 16. */
float quant_dot_ref_q3_K(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_q3_K *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        float d = quant_f16_to_f32(w[i].d);
        for (int k = 0; k < 8; k++, x += 32) {
            const uint8_t *q = w[i].qs + 32 * (k / 4);
            int shift = 2 * (k % 4);
            for (int h = 0; h < 2; h++) {
                float p = 0;
                for (int l = 0; l < 16; l++) {
                    int j = 16 * h + l;
                    int v = ((q[j] >> shift) & 3) - ((w[i].hmask[j] >> k) & 1 ? 0 : 4);
                    p += (float)v * x[j];
                }
                s += d * (float)q3k_scale(w[i].scales, 2 * k + h) * p;
            }
        }
    }
    return s;
}

/* 32 nibbles (Q4_0's order) through a table of int8 levels, times x. */
static float dot32_lut_ref(const uint8_t qs[16], const int8_t lut[16], const float *x)
{
    float p = 0;
    for (int j = 0; j < 16; j++)
        p += (float)lut[qs[j] & 0xF] * x[j] + (float)lut[qs[j] >> 4] * x[j + 16];
    return p;
}

float quant_dot_ref_iq4_nl(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_iq4_nl *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32)
        s += quant_f16_to_f32(w[i].d) * dot32_lut_ref(w[i].qs, quant_iq4nl_values, x);
    return s;
}

float quant_dot_ref_iq4_xs(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_iq4_xs *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        float d = quant_f16_to_f32(w[i].d);
        for (int ib = 0; ib < 8; ib++, x += 32)
            s += d * (float)iq4xs_scale(w[i].scales_h, w[i].scales_l, ib) *
                 dot32_lut_ref(w[i].qs + 16 * ib, quant_iq4nl_values, x);
    }
    return s;
}

float quant_dot_ref_mxfp4(const void *row, const float *x, const float *xs, int64_t nb)
{
    (void)xs;
    const blk_mxfp4 *w = row;
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32)
        s += mxfp4_scale(w[i].e) * dot32_lut_ref(w[i].qs, quant_mxfp4_values, x);
    return s;
}
