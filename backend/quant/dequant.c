/* dequant.c - the reference block decoders: NB blocks of a type to floats,
 * exactly as ggml decodes them (docs/model-formats.md §1.3 and §2; for Q2_K,
 * Q3_K, IQ4_NL, IQ4_XS and MXFP4 the gguf Python package's decoders, which
 * tests/quant_refcheck.py holds these to bit for bit). They are
 * what quant_dequantize_row runs, what the scalar multi-token dot product
 * builds on, and the meaning every faster kernel must keep.
 */
#include "quant_internal.h"

/* The float types: a block is one element. */
void quant_dequant_f32(const void *src, float *y, int64_t nb)
{
    memcpy(y, src, (size_t)nb * sizeof(float));
}

void quant_dequant_f16(const void *src, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++)
        y[i] = quant_f16_to_f32(load_u16(src, i));
}

void quant_dequant_bf16(const void *src, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++)
        y[i] = quant_bf16_to_f32(load_u16(src, i));
}

void quant_dequant_q8_0(const void *src, float *y, int64_t nb)
{
    const blk_q8_0 *x = src;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = quant_f16_to_f32(x[i].d);
        for (int j = 0; j < 32; j++)
            y[j] = d * x[i].qs[j];
    }
}

void quant_dequant_q4_0(const void *src, float *y, int64_t nb)
{
    const blk_q4_0 *x = src;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = quant_f16_to_f32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * ((x[i].qs[j] & 0xF) - 8);
            y[j + 16] = d * ((x[i].qs[j] >> 4) - 8);
        }
    }
}

void quant_dequant_q4_1(const void *src, float *y, int64_t nb)
{
    const blk_q4_1 *x = src;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = quant_f16_to_f32(x[i].d), m = quant_f16_to_f32(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (x[i].qs[j] & 0xF) + m;
            y[j + 16] = d * (x[i].qs[j] >> 4) + m;
        }
    }
}

void quant_dequant_q5_0(const void *src, float *y, int64_t nb)
{
    const blk_q5_0 *x = src;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = quant_f16_to_f32(x[i].d);
        uint32_t h = load_u32le(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (x[i].qs[j] & 0xF) | (int)(((h >> j) & 1) << 4);
            int hi = (x[i].qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
            y[j] = d * (lo - 16);
            y[j + 16] = d * (hi - 16);
        }
    }
}

void quant_dequant_q5_1(const void *src, float *y, int64_t nb)
{
    const blk_q5_1 *x = src;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = quant_f16_to_f32(x[i].d), m = quant_f16_to_f32(x[i].m);
        uint32_t h = load_u32le(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (x[i].qs[j] & 0xF) | (int)(((h >> j) & 1) << 4);
            int hi = (x[i].qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
            y[j] = d * lo + m;
            y[j + 16] = d * hi + m;
        }
    }
}

void quant_dequant_q4_K(const void *src, float *y, int64_t nb)
{
    const blk_q4_K *x = src;
    for (int64_t i = 0; i < nb; i++) {
        float d = quant_f16_to_f32(x[i].d), dmin = quant_f16_to_f32(x[i].dmin);
        for (int c = 0; c < 4; c++, y += 64) {
            uint8_t sc1, mn1, sc2, mn2;
            k_scale_min(x[i].scales, 2 * c, &sc1, &mn1);
            k_scale_min(x[i].scales, 2 * c + 1, &sc2, &mn2);
            const uint8_t *q = x[i].qs + 32 * c;
            for (int l = 0; l < 32; l++) {
                y[l] = d * sc1 * (q[l] & 0xF) - dmin * mn1;
                y[l + 32] = d * sc2 * (q[l] >> 4) - dmin * mn2;
            }
        }
    }
}

void quant_dequant_q5_K(const void *src, float *y, int64_t nb)
{
    const blk_q5_K *x = src;
    for (int64_t i = 0; i < nb; i++) {
        float d = quant_f16_to_f32(x[i].d), dmin = quant_f16_to_f32(x[i].dmin);
        for (int c = 0; c < 4; c++, y += 64) {
            uint8_t sc1, mn1, sc2, mn2;
            k_scale_min(x[i].scales, 2 * c, &sc1, &mn1);
            k_scale_min(x[i].scales, 2 * c + 1, &sc2, &mn2);
            const uint8_t *q = x[i].qs + 32 * c;
            for (int l = 0; l < 32; l++) {
                int lo = (q[l] & 0xF) | (((x[i].qh[l] >> (2 * c)) & 1) << 4);
                int hi = (q[l] >> 4) | (((x[i].qh[l] >> (2 * c + 1)) & 1) << 4);
                y[l] = d * sc1 * lo - dmin * mn1;
                y[l + 32] = d * sc2 * hi - dmin * mn2;
            }
        }
    }
}

void quant_dequant_q6_K(const void *src, float *y, int64_t nb)
{
    const blk_q6_K *x = src;
    for (int64_t i = 0; i < nb; i++) {
        float d = quant_f16_to_f32(x[i].d);
        for (int h = 0; h < 2; h++, y += 128) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* Q2_K: chunk k of 32 outputs is the 2-bit field at bit 2(k%4) of
 * qs[32(k/4) + l]; its halves of 16 use scales 2k and 2k+1, each a 4-bit
 * scale times d and a 4-bit min times dmin. Scale and min are multiplied out
 * first and the min subtracted last, the order ggml and gguf-py use, so the
 * floats are theirs bit for bit. */
void quant_dequant_q2_K(const void *src, float *y, int64_t nb)
{
    const blk_q2_K *x = src;
    for (int64_t i = 0; i < nb; i++) {
        float d = quant_f16_to_f32(x[i].d), dmin = quant_f16_to_f32(x[i].dmin);
        for (int k = 0; k < 8; k++, y += 32) {
            const uint8_t *q = x[i].qs + 32 * (k / 4);
            int shift = 2 * (k % 4);
            for (int h = 0; h < 2; h++) {
                uint8_t sc = x[i].scales[2 * k + h];
                float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
                for (int l = 0; l < 16; l++)
                    y[16 * h + l] = dl * ((q[16 * h + l] >> shift) & 3) - ml;
            }
        }
    }
}

/* Q3_K: Q2_K's walk for the low 2 bits; bit k of hmask[l] set adds nothing,
 * clear subtracts 4, so codes run -4..3; scale d * (6-bit scale - 32). */
void quant_dequant_q3_K(const void *src, float *y, int64_t nb)
{
    const blk_q3_K *x = src;
    for (int64_t i = 0; i < nb; i++) {
        float d = quant_f16_to_f32(x[i].d);
        for (int k = 0; k < 8; k++, y += 32) {
            const uint8_t *q = x[i].qs + 32 * (k / 4);
            int shift = 2 * (k % 4);
            for (int h = 0; h < 2; h++) {
                float dl = d * (float)q3k_scale(x[i].scales, 2 * k + h);
                for (int l = 0; l < 16; l++) {
                    int j = 16 * h + l;
                    int v = ((q[j] >> shift) & 3) - ((x[i].hmask[j] >> k) & 1 ? 0 : 4);
                    y[j] = dl * v;
                }
            }
        }
    }
}

/* IQ4_NL: Q4_0's nibble order, each nibble an index into the level table. */
void quant_dequant_iq4_nl(const void *src, float *y, int64_t nb)
{
    const blk_iq4_nl *x = src;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = quant_f16_to_f32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * quant_iq4nl_values[x[i].qs[j] & 0xF];
            y[j + 16] = d * quant_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

/* IQ4_XS: eight IQ4_NL sub-blocks, sub-block ib scaled by d * (scale - 32). */
void quant_dequant_iq4_xs(const void *src, float *y, int64_t nb)
{
    const blk_iq4_xs *x = src;
    for (int64_t i = 0; i < nb; i++) {
        float d = quant_f16_to_f32(x[i].d);
        for (int ib = 0; ib < 8; ib++, y += 32) {
            float dl = d * (float)iq4xs_scale(x[i].scales_h, x[i].scales_l, ib);
            const uint8_t *q = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * quant_iq4nl_values[q[j] & 0xF];
                y[j + 16] = dl * quant_iq4nl_values[q[j] >> 4];
            }
        }
    }
}

/* MXFP4: the doubled E2M1 level times half the block's power of two. */
void quant_dequant_mxfp4(const void *src, float *y, int64_t nb)
{
    const blk_mxfp4 *x = src;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = mxfp4_scale(x[i].e);
        for (int j = 0; j < 16; j++) {
            y[j] = d * quant_mxfp4_values[x[i].qs[j] & 0xF];
            y[j + 16] = d * quant_mxfp4_values[x[i].qs[j] >> 4];
        }
    }
}
