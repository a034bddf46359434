/* quant.c - ggml tensor element types: the type table, fp16/bf16 conversion,
 * dequantisation, reference quantisers and the dot products under the CPU
 * engine's matrix-vector products.
 *
 * Layouts follow docs/model-formats.md §1.3 and §2. Every dot product has a
 * plain scalar version (quant_dot_ref, the readable reference the tests trust)
 * and, where it matters for speed, an AVX2 version that must agree with it.
 */
#include "quant.h"

#include <ctype.h>
#include <math.h>

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

/* ---- type table ---------------------------------------------------------- */

struct type_info {
    const char *name; /* NULL: id unused */
    int64_t blck;     /* elements per block; 0 = layout not known */
    size_t size;      /* bytes per block */
};

/* Block sizes of the IQ/TQ/MXFP4 types are listed so a reader can size and
 * skip such tensors; kvchat cannot compute with them. */
static const struct type_info k_types[GGML_TYPE_COUNT] = {
    [0] = {"F32", 1, 4},
    [1] = {"F16", 1, 2},
    [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},
    [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},
    [9] = {"Q8_1", 32, 36},
    [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},
    [12] = {"Q4_K", 256, 144},
    [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},
    [15] = {"Q8_K", 256, 292},
    [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98},
    [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},
    [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136},
    [24] = {"I8", 1, 1},
    [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},
    [27] = {"I64", 1, 8},
    [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},
    [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},
    [39] = {"MXFP4", 32, 17},
};

static const struct type_info *type_info(enum ggml_type t)
{
    if ((int)t < 0 || (int)t >= GGML_TYPE_COUNT || !k_types[t].name)
        return NULL;
    return &k_types[t];
}

const char *quant_type_name(enum ggml_type t)
{
    const struct type_info *ti = type_info(t);
    return ti ? ti->name : "unknown";
}

bool quant_type_from_name(const char *name, enum ggml_type *out)
{
    if (!name)
        return false;
    for (int i = 0; i < GGML_TYPE_COUNT; i++) {
        const char *a = k_types[i].name, *b = name;
        if (!a)
            continue;
        while (*a && *b && toupper((unsigned char)*a) == toupper((unsigned char)*b))
            a++, b++;
        if (!*a && !*b) {
            if (out)
                *out = (enum ggml_type)i;
            return true;
        }
    }
    return false;
}

bool quant_type_known(enum ggml_type t) { return type_info(t) != NULL; }

bool quant_type_supported(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

int64_t quant_block_size(enum ggml_type t)
{
    const struct type_info *ti = type_info(t);
    return ti ? ti->blck : 0;
}

size_t quant_type_size(enum ggml_type t)
{
    const struct type_info *ti = type_info(t);
    return ti ? ti->size : 0;
}

size_t quant_row_size(enum ggml_type t, int64_t n)
{
    const struct type_info *ti = type_info(t);
    if (!ti || n < 0 || n % ti->blck != 0)
        return 0;
    /* Sizes come from untrusted files: refuse rather than wrap. */
    uint64_t nb = (uint64_t)(n / ti->blck);
    if (nb > SIZE_MAX / ti->size)
        return 0;
    return (size_t)nb * ti->size;
}

/* ---- fp16 / bf16 ---------------------------------------------------------- */

float quant_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | (m << 13); /* inf, or NaN with its payload */
    } else if (e != 0) {
        bits = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
        bits = sign;
    } else {
        /* Subnormal half m * 2^-24: normalise so it becomes a normal float. */
        int ex = 1;
        while (!(m & 0x400)) {
            m <<= 1;
            ex--;
        }
        bits = sign | ((uint32_t)(ex + 112) << 23) | ((m & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t quant_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { /* inf or NaN; a NaN stays a (quiet) NaN */
        if (ax > 0x7f800000u)
            return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
        return (uint16_t)(sign | 0x7c00);
    }
    if (ax >= 0x477ff000u) /* >= 65520 rounds (to even) past 65504: inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below 2^-14: half subnormal or zero */
        if (ax <= 0x33000000u) /* <= 2^-25: rounds to zero (2^-25 ties to even 0) */
            return sign;
        uint32_t e = ax >> 23, mant = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* value / 2^-24 = mant >> shift, 14..24 */
        uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++; /* may carry into the smallest normal, which encodes correctly */
        return (uint16_t)(sign | q);
    }
    uint32_t h = (((ax >> 23) - 112) << 10) | ((ax >> 13) & 0x3ff);
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* a mantissa carry moves into the exponent, as it should */
    return (uint16_t)(sign | h);
}

uint16_t quant_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40); /* quiet the NaN; truncation could make it inf */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- block layouts --------------------------------------------------------- */

/* Packed exactly as in GGUF files (no padding: every field is 1- or 2-byte
 * aligned and the sizes are asserted below). Multi-byte fields are read in host
 * order, which is little-endian on every machine kvchat targets. */
typedef struct {
    uint16_t d;
    int8_t qs[32];
} blk_q8_0;
typedef struct {
    uint16_t d;
    uint8_t qs[16];
} blk_q4_0;
typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} blk_q4_1;
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
} blk_q5_0;
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} blk_q5_1;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
} blk_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} blk_q5_K;
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} blk_q6_K;

_Static_assert(sizeof(blk_q8_0) == 34, "Q8_0 block");
_Static_assert(sizeof(blk_q4_0) == 18, "Q4_0 block");
_Static_assert(sizeof(blk_q4_1) == 20, "Q4_1 block");
_Static_assert(sizeof(blk_q5_0) == 22, "Q5_0 block");
_Static_assert(sizeof(blk_q5_1) == 24, "Q5_1 block");
_Static_assert(sizeof(blk_q4_K) == 144, "Q4_K block");
_Static_assert(sizeof(blk_q5_K) == 176, "Q5_K block");
_Static_assert(sizeof(blk_q6_K) == 210, "Q6_K block");

/* fp16 -> f32 for the hot loops: one instruction with F16C. */
static inline float h2f(uint16_t h)
{
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    return quant_f16_to_f32(h);
#endif
}

static inline uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* 6-bit scale and min of sub-block S (0..7) from the 12 packed K-quant bytes. */
static inline void k_scale_min(const uint8_t q[12], int s, uint8_t *sc, uint8_t *mn)
{
    if (s < 4) {
        *sc = q[s] & 63;
        *mn = q[s + 4] & 63;
    } else {
        *sc = (uint8_t)((q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4));
        *mn = (uint8_t)((q[s + 4] >> 4) | ((q[s] >> 6) << 4));
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

/* ---- dequantisation -------------------------------------------------------- */

static void dequant_q8_0(const blk_q8_0 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = quant_f16_to_f32(x[i].d);
        for (int j = 0; j < 32; j++)
            y[j] = d * x[i].qs[j];
    }
}

static void dequant_q4_0(const blk_q4_0 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = quant_f16_to_f32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * ((x[i].qs[j] & 0xF) - 8);
            y[j + 16] = d * ((x[i].qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_1(const blk_q4_1 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = quant_f16_to_f32(x[i].d), m = quant_f16_to_f32(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (x[i].qs[j] & 0xF) + m;
            y[j + 16] = d * (x[i].qs[j] >> 4) + m;
        }
    }
}

static void dequant_q5_0(const blk_q5_0 *x, float *y, int64_t nb)
{
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

static void dequant_q5_1(const blk_q5_1 *x, float *y, int64_t nb)
{
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

static void dequant_q4_K(const blk_q4_K *x, float *y, int64_t nb)
{
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

static void dequant_q5_K(const blk_q5_K *x, float *y, int64_t nb)
{
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

static void dequant_q6_K(const blk_q6_K *x, float *y, int64_t nb)
{
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

void quant_dequantize_row(enum ggml_type t, const void *src, float *dst, int64_t n)
{
    int64_t bs = quant_block_size(t);
    if (n <= 0 || !quant_type_supported(t) || n % bs != 0) {
        /* No status to return here: make the failure impossible to miss. */
        for (int64_t i = 0; i < n; i++)
            dst[i] = NAN;
        return;
    }
    int64_t nb = n / bs;
    switch (t) {
    case GGML_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = quant_f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = quant_bf16_to_f32(((const uint16_t *)src)[i]);
        break;
    case GGML_TYPE_Q8_0: dequant_q8_0(src, dst, nb); break;
    case GGML_TYPE_Q4_0: dequant_q4_0(src, dst, nb); break;
    case GGML_TYPE_Q4_1: dequant_q4_1(src, dst, nb); break;
    case GGML_TYPE_Q5_0: dequant_q5_0(src, dst, nb); break;
    case GGML_TYPE_Q5_1: dequant_q5_1(src, dst, nb); break;
    case GGML_TYPE_Q4_K: dequant_q4_K(src, dst, nb); break;
    case GGML_TYPE_Q5_K: dequant_q5_K(src, dst, nb); break;
    case GGML_TYPE_Q6_K: dequant_q6_K(src, dst, nb); break;
    default: break;
    }
}

/* ---- reference quantisers -------------------------------------------------- */

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

static void quant_q8_0(const float *x, blk_q8_0 *y, int64_t nb)
{
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

static void quant_q4_K(const float *x, blk_q4_K *y, int64_t nb)
{
    int L[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        quant_kminmax(x, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

static void quant_q5_K(const float *x, blk_q5_K *y, int64_t nb)
{
    int L[256];
    for (int64_t i = 0; i < nb; i++, x += 256) {
        quant_kminmax(x, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
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
static void quant_q6_K(const float *x, blk_q6_K *y, int64_t nb)
{
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

void quant_quantize_row(enum ggml_type t, const float *src, void *dst, int64_t n)
{
    int64_t bs = quant_block_size(t);
    if (n <= 0 || !quant_type_supported(t) || n % bs != 0)
        return; /* nothing sensible to write; callers check quant_type_supported */
    int64_t nb = n / bs;
    int q[32];
    switch (t) {
    case GGML_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = quant_f32_to_f16(src[i]);
        break;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = quant_f32_to_bf16(src[i]);
        break;
    case GGML_TYPE_Q8_0: quant_q8_0(src, dst, nb); break;
    case GGML_TYPE_Q4_0:
        for (int64_t i = 0; i < nb; i++) {
            blk_q4_0 *b = (blk_q4_0 *)dst + i;
            quant_sym32(src + 32 * i, 4, &b->d, q);
            pack_nibbles(q, b->qs);
        }
        break;
    case GGML_TYPE_Q5_0:
        for (int64_t i = 0; i < nb; i++) {
            blk_q5_0 *b = (blk_q5_0 *)dst + i;
            quant_sym32(src + 32 * i, 5, &b->d, q);
            pack_nibbles(q, b->qs);
            pack_high_bits(q, b->qh);
        }
        break;
    case GGML_TYPE_Q4_1:
        for (int64_t i = 0; i < nb; i++) {
            blk_q4_1 *b = (blk_q4_1 *)dst + i;
            quant_asym32(src + 32 * i, 4, &b->d, &b->m, q);
            pack_nibbles(q, b->qs);
        }
        break;
    case GGML_TYPE_Q5_1:
        for (int64_t i = 0; i < nb; i++) {
            blk_q5_1 *b = (blk_q5_1 *)dst + i;
            quant_asym32(src + 32 * i, 5, &b->d, &b->m, q);
            pack_nibbles(q, b->qs);
            pack_high_bits(q, b->qh);
        }
        break;
    case GGML_TYPE_Q4_K: quant_q4_K(src, dst, nb); break;
    case GGML_TYPE_Q5_K: quant_q5_K(src, dst, nb); break;
    case GGML_TYPE_Q6_K: quant_q6_K(src, dst, nb); break;
    default: break;
    }
}

/* ---- activations ----------------------------------------------------------- */

/* The activations stay float: quantising them to int8 blocks (ggml's q8 path)
 * cost too much accuracy on real models, whose activations have strong
 * outliers that a per-block amax/127 scale lets crush the other values. On
 * SmolLM2-135M Q4_1 the int8 path put the final logits 4.5% (relative RMS)
 * from a float64 reference and broke greedy answers; float products match it
 * to 1e-5. So the weights are dequantised in registers and multiplied against
 * the float input; integer offsets (-8, -16, -32) are applied to the codes
 * exactly before conversion, and only the types with a min need prepared
 * data: the sum of X over each 32-element sub-block, which the min multiplies
 * (sum (d*q + m) * x = d * sum(q*x) + m * sum(x)). */

static bool has_min(enum ggml_type t)
{
    return t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1 || t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q5_K;
}

size_t quant_act_size(enum ggml_type t, int64_t n)
{
    if (n <= 0 || !has_min(t) || n % quant_block_size(t) != 0)
        return 0; /* float weights and offset types use the float input alone */
    return (size_t)(n / 32) * sizeof(float);
}

void quant_prepare_act(enum ggml_type t, const float *x, int64_t n, void *scratch,
                       struct quant_act *out)
{
    out->wtype = t;
    out->n = n;
    out->f32 = x;
    out->q = NULL;
    if (quant_act_size(t, n) == 0 || !scratch)
        return;
    float *sums = scratch;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float s = 0;
        for (int j = 0; j < 32; j++)
            s += x[j];
        sums[i] = s;
    }
    out->q = scratch;
}

/* True when ACT can be used with rows of a block type: the type is supported,
 * N is whole blocks, and the sub-block sums are there when the type needs them. */
static bool act_ready(const struct quant_act *act)
{
    int64_t bs = quant_block_size(act->wtype);
    return quant_type_supported(act->wtype) && act->n > 0 && act->n % bs == 0 &&
           (!has_min(act->wtype) || act->q);
}

/* ---- scalar reference dot products ----------------------------------------- */

/* Each block type sums q*x in float per block (or K-quant sub-block) with the
 * codes' integer offsets already applied, then scales: the order the AVX2
 * kernels use, written plainly. */

static float dot_f32_ref(const float *w, const float *x, int64_t n)
{
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += w[i] * x[i];
    return s;
}

static float dot_f16_ref(const uint16_t *w, const float *x, int64_t n)
{
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += quant_f16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_bf16_ref(const uint16_t *w, const float *x, int64_t n)
{
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += quant_bf16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_q8_0_ref(const blk_q8_0 *w, const float *x, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float p = 0;
        for (int j = 0; j < 32; j++)
            p += (float)w[i].qs[j] * x[j];
        s += quant_f16_to_f32(w[i].d) * p;
    }
    return s;
}

static float dot_q4_0_ref(const blk_q4_0 *w, const float *x, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float p = 0;
        for (int j = 0; j < 16; j++)
            p += (float)((w[i].qs[j] & 0xF) - 8) * x[j] + (float)((w[i].qs[j] >> 4) - 8) * x[j + 16];
        s += quant_f16_to_f32(w[i].d) * p;
    }
    return s;
}

static float dot_q4_1_ref(const blk_q4_1 *w, const float *x, const float *xs, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float p = 0;
        for (int j = 0; j < 16; j++)
            p += (float)(w[i].qs[j] & 0xF) * x[j] + (float)(w[i].qs[j] >> 4) * x[j + 16];
        s += quant_f16_to_f32(w[i].d) * p + quant_f16_to_f32(w[i].m) * xs[i];
    }
    return s;
}

static float dot_q5_0_ref(const blk_q5_0 *w, const float *x, int64_t nb)
{
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

static float dot_q5_1_ref(const blk_q5_1 *w, const float *x, const float *xs, int64_t nb)
{
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

static float dot_q4_K_ref(const blk_q4_K *w, const float *x, const float *xs, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++)
        s += dot_kminmax_ref(w[i].d, w[i].dmin, w[i].scales, w[i].qs, NULL, x + 256 * i, xs + 8 * i);
    return s;
}

static float dot_q5_K_ref(const blk_q5_K *w, const float *x, const float *xs, int64_t nb)
{
    float s = 0;
    for (int64_t i = 0; i < nb; i++)
        s += dot_kminmax_ref(w[i].d, w[i].dmin, w[i].scales, w[i].qs, w[i].qh, x + 256 * i, xs + 8 * i);
    return s;
}

/* Q6_K: an int8 scale per sub-block of 16, codes offset by 32. */
static float dot_q6_K_ref(const blk_q6_K *w, const float *x, int64_t nb)
{
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

float quant_dot_ref(const void *row, const struct quant_act *act)
{
    int64_t n = act->n;
    const float *x = act->f32, *xs = act->q;
    switch (act->wtype) {
    case GGML_TYPE_F32: return dot_f32_ref(row, x, n);
    case GGML_TYPE_F16: return dot_f16_ref(row, x, n);
    case GGML_TYPE_BF16: return dot_bf16_ref(row, x, n);
    default: break;
    }
    if (!act_ready(act))
        return NAN; /* unsupported type or a length that is not whole blocks */
    switch (act->wtype) {
    case GGML_TYPE_Q8_0: return dot_q8_0_ref(row, x, n / 32);
    case GGML_TYPE_Q4_0: return dot_q4_0_ref(row, x, n / 32);
    case GGML_TYPE_Q4_1: return dot_q4_1_ref(row, x, xs, n / 32);
    case GGML_TYPE_Q5_0: return dot_q5_0_ref(row, x, n / 32);
    case GGML_TYPE_Q5_1: return dot_q5_1_ref(row, x, xs, n / 32);
    case GGML_TYPE_Q4_K: return dot_q4_K_ref(row, x, xs, n / 256);
    case GGML_TYPE_Q5_K: return dot_q5_K_ref(row, x, xs, n / 256);
    case GGML_TYPE_Q6_K: return dot_q6_K_ref(row, x, n / 256);
    default: return NAN;
    }
}

/* ---- AVX2 dot products ----------------------------------------------------- */

/* Each kernel builds the codes as int8 with their offsets applied (exact),
 * widens them 8 at a time to float and FMAs them with X, per block or
 * sub-block; the block scale multiplies that partial sum once. They differ
 * from the references only in float summation order. */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define QUANT_HAVE_AVX2 1

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

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

static float dot_f32_avx2(const float *w, const float *x, int64_t n)
{
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
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += w[i] * x[i];
    return s;
}

static inline __m256 load_f16x8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static float dot_f16_avx2(const uint16_t *w, const float *x, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(load_f16x8(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += quant_f16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_bf16_avx2(const uint16_t *w, const float *x, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum_ps(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += quant_bf16_to_f32(w[i]) * x[i];
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

static float dot_q8_0_avx2(const blk_q8_0 *w, const float *x, int64_t nb)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        blk_q8_0_avx2(&w[i], x + 32 * i, &a0);
        blk_q8_0_avx2(&w[i + 1], x + 32 * i + 32, &a1);
    }
    if (i < nb)
        blk_q8_0_avx2(&w[i], x + 32 * i, &a0);
    return hsum_ps(_mm256_add_ps(a0, a1));
}

static float dot_q4_0_avx2(const blk_q4_0 *w, const float *x, int64_t nb)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        blk_q4_0_avx2(&w[i], x + 32 * i, &a0);
        blk_q4_0_avx2(&w[i + 1], x + 32 * i + 32, &a1);
    }
    if (i < nb)
        blk_q4_0_avx2(&w[i], x + 32 * i, &a0);
    return hsum_ps(_mm256_add_ps(a0, a1));
}

static float dot_q4_1_avx2(const blk_q4_1 *w, const float *x, const float *xs, int64_t nb)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    float m0 = 0, m1 = 0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        m0 += blk_q4_1_avx2(&w[i], x + 32 * i, xs[i], &a0);
        m1 += blk_q4_1_avx2(&w[i + 1], x + 32 * i + 32, xs[i + 1], &a1);
    }
    if (i < nb)
        m0 += blk_q4_1_avx2(&w[i], x + 32 * i, xs[i], &a0);
    return hsum_ps(_mm256_add_ps(a0, a1)) + (m0 + m1);
}

static float dot_q5_0_avx2(const blk_q5_0 *w, const float *x, int64_t nb)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        blk_q5_0_avx2(&w[i], x + 32 * i, &a0);
        blk_q5_0_avx2(&w[i + 1], x + 32 * i + 32, &a1);
    }
    if (i < nb)
        blk_q5_0_avx2(&w[i], x + 32 * i, &a0);
    return hsum_ps(_mm256_add_ps(a0, a1));
}

static float dot_q5_1_avx2(const blk_q5_1 *w, const float *x, const float *xs, int64_t nb)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    float m0 = 0, m1 = 0;
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        m0 += blk_q5_1_avx2(&w[i], x + 32 * i, xs[i], &a0);
        m1 += blk_q5_1_avx2(&w[i + 1], x + 32 * i + 32, xs[i + 1], &a1);
    }
    if (i < nb)
        m0 += blk_q5_1_avx2(&w[i], x + 32 * i, xs[i], &a0);
    return hsum_ps(_mm256_add_ps(a0, a1)) + (m0 + m1);
}

/* Q4_K (QH NULL) and Q5_K, one super-block: adds the scaled sub-block sums to
 * ACC[2] and dmin * mn[s] * (sum of x over s) to the eight lanes of MACC (the
 * caller subtracts their sum at the end). The fifth bit of sub-block s is
 * bit s of qh. The 6-bit scales and mins are unpacked four at a time with
 * 32-bit masks and used as vectors: done byte by byte they cost about as
 * much as the sub-block dot products (Q4_K 4.5 -> 7.0 GB/s, 2048x2048
 * single-threaded). */
static inline void dot_kminmax_avx2(uint16_t d16, uint16_t dmin16, const uint8_t *scales, const uint8_t *qs,
                                    const uint8_t *qh, const float *x, const float *xs, __m256 acc[2],
                                    __m256 *macc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    uint32_t a0 = load_u32le(scales), a1 = load_u32le(scales + 4), a2 = load_u32le(scales + 8);
    /* k_scale_min for all eight sub-blocks: u[0..1] scales, u[2..3] mins. */
    uint32_t u[4] = {a0 & 0x3f3f3f3fu, (a2 & 0x0f0f0f0fu) | (((a0 >> 6) & 0x03030303u) << 4),
                     a1 & 0x3f3f3f3fu, ((a2 >> 4) & 0x0f0f0f0fu) | (((a1 >> 6) & 0x03030303u) << 4)};
    __m128i packed = _mm_loadu_si128((const __m128i *)u);
    __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(packed));
    __m256 mnf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(packed, packed)));
    float dsc[8];
    _mm256_storeu_ps(dsc, _mm256_mul_ps(_mm256_set1_ps(h2f(d16)), scf));
    *macc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(dmin16)), _mm256_mul_ps(mnf, _mm256_loadu_ps(xs)), *macc);
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

static float dot_q4_K_avx2(const blk_q4_K *w, const float *x, const float *xs, int64_t nb)
{
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, macc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++)
        dot_kminmax_avx2(w[i].d, w[i].dmin, w[i].scales, w[i].qs, NULL, x + 256 * i, xs + 8 * i, acc, &macc);
    return hsum_ps(_mm256_add_ps(acc[0], acc[1])) - hsum_ps(macc);
}

static float dot_q5_K_avx2(const blk_q5_K *w, const float *x, const float *xs, int64_t nb)
{
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, macc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++)
        dot_kminmax_avx2(w[i].d, w[i].dmin, w[i].scales, w[i].qs, w[i].qh, x + 256 * i, xs + 8 * i, acc,
                         &macc);
    return hsum_ps(_mm256_add_ps(acc[0], acc[1])) - hsum_ps(macc);
}

/* Q6_K: codes 0..63 built from ql and qh, then -32 in int8; each 32 codes
 * span two sub-blocks of 16 (low and high 128-bit lanes). */
static float dot_q6_K_avx2(const blk_q6_K *w, const float *x, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30), off = _mm256_set1_epi8(32);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float d = h2f(w[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h;
            const int8_t *sc = w[i].scales + 8 * h;
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
                acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[2 * k]), pa, acc[0]);
                acc[1] = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[2 * k + 1]), pb, acc[1]);
            }
        }
    }
    return hsum_ps(_mm256_add_ps(acc[0], acc[1]));
}
#endif /* QUANT_HAVE_AVX2 */

float quant_dot(const void *row, const struct quant_act *act)
{
#ifdef QUANT_HAVE_AVX2
    int64_t n = act->n;
    const float *x = act->f32, *xs = act->q;
    switch (act->wtype) {
    case GGML_TYPE_F32: return dot_f32_avx2(row, x, n);
    case GGML_TYPE_F16: return dot_f16_avx2(row, x, n);
    case GGML_TYPE_BF16: return dot_bf16_avx2(row, x, n);
    default: break;
    }
    if (act_ready(act)) {
        switch (act->wtype) {
        case GGML_TYPE_Q8_0: return dot_q8_0_avx2(row, x, n / 32);
        case GGML_TYPE_Q4_0: return dot_q4_0_avx2(row, x, n / 32);
        case GGML_TYPE_Q4_1: return dot_q4_1_avx2(row, x, xs, n / 32);
        case GGML_TYPE_Q5_0: return dot_q5_0_avx2(row, x, n / 32);
        case GGML_TYPE_Q5_1: return dot_q5_1_avx2(row, x, xs, n / 32);
        case GGML_TYPE_Q4_K: return dot_q4_K_avx2(row, x, xs, n / 256);
        case GGML_TYPE_Q5_K: return dot_q5_K_avx2(row, x, xs, n / 256);
        case GGML_TYPE_Q6_K: return dot_q6_K_avx2(row, x, n / 256);
        default: break;
        }
    }
#endif
    return quant_dot_ref(row, act);
}

/* ---- multi-token dot products ---------------------------------------------- */

/* Prefill multiplies every weight row with a batch of tokens. Calling
 * quant_dot per token unpacks each block once per token, and that unpacking
 * (nibbles to int8 to float) costs more than the FMAs; here each chunk of 32
 * weights is dequantised once, to the float values quant_dequantize_row gives
 * (scale and min applied), and FMA'd against every token's input. Summing
 * w*x with w already scaled rounds differently from quant_dot's per-block
 * partial sums, by float summation error only (~1e-7 of sum |w*x|). */

/* Row RS of TYPE with the float inputs of N tokens (all prepared for TYPE and
 * the same length). The scalar version: one block (or 256 float weights) at a
 * time through quant_dequantize_row into a stack buffer. */
static void dot_n_ref(enum ggml_type type, const void *row, const struct quant_act *acts, int n,
                      float *out, size_t out_stride)
{
    int64_t len = acts[0].n, bs = quant_block_size(type);
    int64_t step = bs == 1 ? 256 : bs; /* float types: any length, in chunks */
    size_t bytes = quant_type_size(type) * (size_t)(step / bs);
    float buf[256];
    for (int t = 0; t < n; t++)
        out[(size_t)t * out_stride] = 0;
    const unsigned char *p = row;
    for (int64_t i = 0; i < len; i += step, p += bytes) {
        int64_t m = len - i < step ? len - i : step;
        quant_dequantize_row(type, p, buf, m);
        for (int t = 0; t < n; t++) {
            const float *x = acts[t].f32 + i;
            float s = 0;
            for (int64_t j = 0; j < m; j++)
                s += buf[j] * x[j];
            out[(size_t)t * out_stride] += s;
        }
    }
}

void quant_dot_n_ref(const void *row, const struct quant_act *acts, int n, float *out, size_t out_stride)
{
    if (n <= 0)
        return;
    enum ggml_type type = acts[0].wtype;
    bool ok = acts[0].n > 0 && quant_type_supported(type) && acts[0].n % quant_block_size(type) == 0;
    if (!ok) {
        for (int t = 0; t < n; t++)
            out[(size_t)t * out_stride] = NAN;
        return;
    }
    dot_n_ref(type, row, acts, n, out, out_stride);
}

#ifdef QUANT_HAVE_AVX2

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
    const float *p = (const float *)row + 32 * c;
    for (int k = 0; k < 4; k++)
        w[k] = _mm256_loadu_ps(p + 8 * k);
}

static inline void chunk_f16(const void *row, int64_t c, __m256 w[4])
{
    const uint16_t *p = (const uint16_t *)row + 32 * c;
    for (int k = 0; k < 4; k++)
        w[k] = load_f16x8(p + 8 * k);
}

static inline void chunk_bf16(const void *row, int64_t c, __m256 w[4])
{
    const uint16_t *p = (const uint16_t *)row + 32 * c;
    for (int k = 0; k < 4; k++)
        w[k] = load_bf16x8(p + 8 * k);
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

/* The row loop for NT tokens (a constant after inlining, so the accumulators
 * live in registers): chunk by chunk, every token's 32 inputs against the
 * same 4 weight registers. One accumulator per token, summed in the same
 * order whatever NT is: a token's result must not depend on which batch it
 * came in (a prefill split differently must fill the same KV cache; the
 * model tests compare bits). With 8 tokens there are 8 independent FMA
 * chains, enough to hide the latency; small remainders run slower. */
#define DOT_N_ROW(name, chunk)                                                                           \
    static inline __attribute__((always_inline)) void name##_row(const void *row, int64_t nc,             \
                                                                 const float *const *x, int nt,          \
                                                                 float *out, size_t os)                  \
    {                                                                                                    \
        __m256 a[8];                                                                                     \
        for (int t = 0; t < nt; t++)                                                                     \
            a[t] = _mm256_setzero_ps();                                                           \
        for (int64_t c = 0; c < nc; c++) {                                                               \
            __m256 w[4];                                                                                 \
            chunk(row, c, w);                                                                            \
            for (int t = 0; t < nt; t++) {                                                               \
                const float *xt = x[t] + 32 * c;                                                         \
                a[t] = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xt), a[t]);                                 \
                a[t] = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xt + 8), a[t]);                             \
                a[t] = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xt + 16), a[t]);                            \
                a[t] = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xt + 24), a[t]);                            \
            }                                                                                            \
        }                                                                                                \
        for (int t = 0; t < nt; t++)                                                                     \
            out[(size_t)t * os] = hsum_ps(a[t]);                                                         \
    }                                                                                                    \
    static void name##_n(const void *row, int64_t nc, const float *const *x, int nt, float *out, size_t os) \
    {                                                                                                    \
        switch (nt) {                                                                                    \
        case 1: name##_row(row, nc, x, 1, out, os); break;                                               \
        case 2: name##_row(row, nc, x, 2, out, os); break;                                               \
        case 3: name##_row(row, nc, x, 3, out, os); break;                                               \
        case 4: name##_row(row, nc, x, 4, out, os); break;                                               \
        case 5: name##_row(row, nc, x, 5, out, os); break;                                               \
        case 6: name##_row(row, nc, x, 6, out, os); break;                                               \
        case 7: name##_row(row, nc, x, 7, out, os); break;                                               \
        default: name##_row(row, nc, x, 8, out, os); break;                                              \
        }                                                                                                \
    }

DOT_N_ROW(dn_f32, chunk_f32)
DOT_N_ROW(dn_f16, chunk_f16)
DOT_N_ROW(dn_bf16, chunk_bf16)
DOT_N_ROW(dn_q8_0, chunk_q8_0)
DOT_N_ROW(dn_q4_0, chunk_q4_0)
DOT_N_ROW(dn_q4_1, chunk_q4_1)
DOT_N_ROW(dn_q5_0, chunk_q5_0)
DOT_N_ROW(dn_q5_1, chunk_q5_1)
DOT_N_ROW(dn_q4_K, chunk_q4_K)
DOT_N_ROW(dn_q5_K, chunk_q5_K)
DOT_N_ROW(dn_q6_K, chunk_q6_K)

typedef void (*dot_n_fn)(const void *, int64_t, const float *const *, int, float *, size_t);

static dot_n_fn dot_n_avx2(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_F32: return dn_f32_n;
    case GGML_TYPE_F16: return dn_f16_n;
    case GGML_TYPE_BF16: return dn_bf16_n;
    case GGML_TYPE_Q8_0: return dn_q8_0_n;
    case GGML_TYPE_Q4_0: return dn_q4_0_n;
    case GGML_TYPE_Q4_1: return dn_q4_1_n;
    case GGML_TYPE_Q5_0: return dn_q5_0_n;
    case GGML_TYPE_Q5_1: return dn_q5_1_n;
    case GGML_TYPE_Q4_K: return dn_q4_K_n;
    case GGML_TYPE_Q5_K: return dn_q5_K_n;
    case GGML_TYPE_Q6_K: return dn_q6_K_n;
    default: return NULL;
    }
}
#endif /* QUANT_HAVE_AVX2 */

void quant_dot_n(const void *row, const struct quant_act *acts, int n, float *out, size_t out_stride)
{
#ifdef QUANT_HAVE_AVX2
    enum ggml_type type = acts[0].wtype;
    int64_t len = acts[0].n;
    dot_n_fn fn = n > 0 && len > 0 && len % 32 == 0 ? dot_n_avx2(type) : NULL;
    if (fn && len % quant_block_size(type) == 0) {
        /* Whole chunks of 32 (float rows of other lengths take the
         * reference path): 8 tokens at a time. */
        for (int t0 = 0; t0 < n; t0 += 8) {
            int nt = n - t0 < 8 ? n - t0 : 8;
            const float *x[8];
            for (int t = 0; t < nt; t++)
                x[t] = acts[t0 + t].f32;
            fn(row, len / 32, x, nt, out + (size_t)t0 * out_stride, out_stride);
        }
        return;
    }
#endif
    quant_dot_n_ref(row, acts, n, out, out_stride);
}
