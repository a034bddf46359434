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
#include <float.h>
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
