/* quant.c - the tensor type table and everything that reads it: the type
 * queries, fp16/bf16 conversion, and the entry points (dequantise, quantise,
 * prepare activations, dot products, random rows) that check their arguments
 * once and then run the type's kernel from the table.
 *
 * The kernels live by concern: dequant.c (reference decoders), quantize.c
 * (reference quantisers), dot_ref.c (scalar dot products), dot_avx2.c (the
 * fast ones) and random.c (synthetic rows); quant_internal.h holds the block
 * layouts they share. Layouts follow docs/model-formats.md §1.3 and §2.
 */
#include "quant_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- type table ---------------------------------------------------------- */

/* One row per ggml type id: the types kvchat computes with name all their
 * kernels; a new type is one row here plus its kernels in the files above.
 * The other IQ, the TQ and the remaining kernel-less rows only give the block
 * size, so a reader can size and skip such tensors. */
#define KERNELS(t)                                                                                      \
    .dequant = quant_dequant_##t, .quantize = quant_quantize_##t, .dot_ref = quant_dot_ref_##t,         \
    .dot = QUANT_AVX2_OR(quant_dot_avx2_##t, quant_dot_ref_##t),                                        \
    .dot_n = QUANT_AVX2_OR(quant_dot_n_avx2_##t, NULL),                                                \
    .deq_fast = QUANT_AVX2_OR(quant_deq_avx2_##t, NULL), .random = quant_random_##t
/* The types with an AVX-512 decode kernel (dot_avx512.c), and those with one
 * on AVX512_VNNI (dot_avx512vnni.c) and the bytes per block of its split
 * input. */
#ifdef QUANT_HAVE_AVX512
#define ROWS512(t) .dot_rows_avx512 = quant_rows_avx512_##t
#else
#define ROWS512(t) .dot_rows_avx512 = NULL
#endif
#ifdef QUANT_HAVE_AVX512VNNI
#define SPLIT(t, bytes) .split = quant_split_##t, .split_size = (bytes), .dot_rows_split = quant_rows_split_##t
#else
#define SPLIT(t, bytes) .split = NULL
#endif

static const struct quant_type k_types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {.name = "F32", .blck = 1, .size = 4, KERNELS(f32), .ftype = 0},
    [GGML_TYPE_F16] = {.name = "F16", .blck = 1, .size = 2, KERNELS(f16), .ftype = 1},
    [GGML_TYPE_Q4_0] = {.name = "Q4_0", .blck = 32, .size = 18, KERNELS(q4_0), .ftype = 2},
    [GGML_TYPE_Q4_1] = {.name = "Q4_1", .blck = 32, .size = 20, .has_min = true, KERNELS(q4_1),
                        ROWS512(q4_1), .ftype = 3},
    [GGML_TYPE_Q5_0] = {.name = "Q5_0", .blck = 32, .size = 22, KERNELS(q5_0), ROWS512(q5_0), .ftype = 8},
    [GGML_TYPE_Q5_1] = {.name = "Q5_1", .blck = 32, .size = 24, .has_min = true, KERNELS(q5_1),
                        .ftype = 9},
    [GGML_TYPE_Q8_0] = {.name = "Q8_0", .blck = 32, .size = 34, KERNELS(q8_0), ROWS512(q8_0), .ftype = 7},
    [GGML_TYPE_Q8_1] = {.name = "Q8_1", .blck = 32, .size = 36},
    /* ftype 21, 11: Q2_K_S, Q3_K_S; rows that are not whole super-blocks
     * take IQ4_NL, as llama.cpp does for every type below 4 bits. */
    [GGML_TYPE_Q2_K] = {.name = "Q2_K", .blck = 256, .size = 84, KERNELS(q2_K),
                        .fallback = GGML_TYPE_IQ4_NL, .ftype = 21},
    [GGML_TYPE_Q3_K] = {.name = "Q3_K", .blck = 256, .size = 110, KERNELS(q3_K),
                        .fallback = GGML_TYPE_IQ4_NL, .ftype = 11},
    /* ftype 14, 16: Q4_K_S, Q5_K_S (every weight of that type) */
    /* split: two int16 digits an element, 2^-k per super-block (the mins use the act's sums) */
    [GGML_TYPE_Q4_K] = {.name = "Q4_K", .blck = 256, .size = 144, .has_min = true, KERNELS(q4_K),
                        ROWS512(q4_K), SPLIT(q4_K, QUANT_VNNI_SPLIT_BYTES(0)), .fallback = GGML_TYPE_Q5_0,
                        .ftype = 14},
    [GGML_TYPE_Q5_K] = {.name = "Q5_K", .blck = 256, .size = 176, .has_min = true, KERNELS(q5_K),
                        .fallback = GGML_TYPE_Q5_1, .ftype = 16},
    /* split: two int16 digits an element, 2^-k per super-block, a float sum per 16 */
    [GGML_TYPE_Q6_K] = {.name = "Q6_K", .blck = 256, .size = 210, KERNELS(q6_K),
                        ROWS512(q6_K), SPLIT(q6_K, QUANT_VNNI_SPLIT_BYTES(16)), .fallback = GGML_TYPE_Q8_0,
                        .ftype = 18},
    [GGML_TYPE_Q8_K] = {.name = "Q8_K", .blck = 256, .size = 292},
    [16] = {.name = "IQ2_XXS", .blck = 256, .size = 66},
    [17] = {.name = "IQ2_XS", .blck = 256, .size = 74},
    [18] = {.name = "IQ3_XXS", .blck = 256, .size = 98},
    [19] = {.name = "IQ1_S", .blck = 256, .size = 50},
    [GGML_TYPE_IQ4_NL] = {.name = "IQ4_NL", .blck = 32, .size = 18, KERNELS(iq4_nl), .ftype = 25},
    [21] = {.name = "IQ3_S", .blck = 256, .size = 110},
    [22] = {.name = "IQ2_S", .blck = 256, .size = 82},
    [GGML_TYPE_IQ4_XS] = {.name = "IQ4_XS", .blck = 256, .size = 136, KERNELS(iq4_xs),
                          .fallback = GGML_TYPE_IQ4_NL, .ftype = 30},
    [GGML_TYPE_I8] = {.name = "I8", .blck = 1, .size = 1},
    [GGML_TYPE_I16] = {.name = "I16", .blck = 1, .size = 2},
    [GGML_TYPE_I32] = {.name = "I32", .blck = 1, .size = 4},
    [GGML_TYPE_I64] = {.name = "I64", .blck = 1, .size = 8},
    [GGML_TYPE_F64] = {.name = "F64", .blck = 1, .size = 8},
    [29] = {.name = "IQ1_M", .blck = 256, .size = 56},
    [GGML_TYPE_BF16] = {.name = "BF16", .blck = 1, .size = 2, KERNELS(bf16), .ftype = 32},
    [34] = {.name = "TQ1_0", .blck = 256, .size = 54},
    [35] = {.name = "TQ2_0", .blck = 256, .size = 66},
    /* ftype 38 is llama.cpp's MXFP4_MOE (its experts in MXFP4), the
     * nearest there is to a model all of MXFP4. */
    [GGML_TYPE_MXFP4] = {.name = "MXFP4", .blck = 32, .size = 17, KERNELS(mxfp4), .ftype = 38},
};
#undef KERNELS
#undef ROWS512
#undef SPLIT

/* ggml's kvalues_iq4nl and kvalues_mxfp4 (the E2M1 levels 0, 0.5, 1, 1.5, 2,
 * 3, 4, 6 and their negatives, doubled so they are integers). */
const int8_t quant_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                       1,    13,   25,  38,  53,  69,  89,  113};
const int8_t quant_mxfp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

const struct quant_type *quant_type_row(enum ggml_type t)
{
    if ((int)t < 0 || (int)t >= GGML_TYPE_COUNT || !k_types[t].name)
        return NULL;
    return &k_types[t];
}

/* The row of T when kvchat computes with it, else NULL. */
static const struct quant_type *supported_row(enum ggml_type t)
{
    const struct quant_type *tt = quant_type_row(t);
    return tt && tt->dot_ref ? tt : NULL;
}

const char *quant_type_name(enum ggml_type t)
{
    const struct quant_type *tt = quant_type_row(t);
    return tt ? tt->name : "unknown";
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

bool quant_type_known(enum ggml_type t) { return quant_type_row(t) != NULL; }

bool quant_type_supported(enum ggml_type t) { return supported_row(t) != NULL; }

int64_t quant_block_size(enum ggml_type t)
{
    const struct quant_type *tt = quant_type_row(t);
    return tt ? tt->blck : 0;
}

size_t quant_type_size(enum ggml_type t)
{
    const struct quant_type *tt = quant_type_row(t);
    return tt ? tt->size : 0;
}

size_t quant_row_size(enum ggml_type t, int64_t n)
{
    const struct quant_type *tt = quant_type_row(t);
    if (!tt || n < 0 || n % tt->blck != 0)
        return 0;
    /* Sizes come from untrusted files: refuse rather than wrap. */
    uint64_t nb = (uint64_t)(n / tt->blck);
    if (nb > SIZE_MAX / tt->size)
        return 0;
    return (size_t)nb * tt->size;
}

enum ggml_type quant_type_fallback(enum ggml_type t)
{
    const struct quant_type *tt = supported_row(t);
    return tt && tt->fallback ? tt->fallback : t;
}

uint32_t quant_type_ftype(enum ggml_type t)
{
    const struct quant_type *tt = supported_row(t);
    return tt ? tt->ftype : 0;
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

/* ---- dequantisation and quantisation ---------------------------------------- */

/* The row of T when N is a positive whole number of its blocks, else NULL. */
static const struct quant_type *row_for(enum ggml_type t, int64_t n)
{
    const struct quant_type *tt = supported_row(t);
    return tt && n > 0 && n % tt->blck == 0 ? tt : NULL;
}

void quant_dequantize_row(enum ggml_type t, const void *src, float *dst, int64_t n)
{
    const struct quant_type *tt = row_for(t, n);
    if (!tt) {
        /* No status to return here: make the failure impossible to miss. */
        for (int64_t i = 0; i < n; i++)
            dst[i] = NAN;
        return;
    }
    tt->dequant(src, dst, n / tt->blck);
}

void quant_quantize_row(enum ggml_type t, const float *src, void *dst, int64_t n)
{
    const struct quant_type *tt = row_for(t, n);
    if (tt) /* else nothing sensible to write; callers check quant_type_supported */
        tt->quantize(src, dst, n / tt->blck);
}

void quant_random_row(enum ggml_type t, void *row, int64_t ne0, float sigma, uint64_t *rng)
{
    const struct quant_type *tt = row_for(t, ne0);
    if (tt && row)
        tt->random(row, ne0, sigma, rng);
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

size_t quant_act_size(enum ggml_type t, int64_t n)
{
    const struct quant_type *tt = row_for(t, n);
    if (!tt || !tt->has_min)
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
    out->split = NULL;
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

size_t quant_act_split_size(enum ggml_type t, int64_t n)
{
    const struct quant_type *tt = row_for(t, n);
    if (!tt || !tt->split || !quant_isa_available(QUANT_ISA_AVX512VNNI))
        return 0;
    return (size_t)(n / tt->blck) * tt->split_size;
}

void quant_prepare_act_split(struct quant_act *act, void *scratch)
{
    if (!scratch || !act->f32 || quant_act_split_size(act->wtype, act->n) == 0)
        return;
    quant_type_row(act->wtype)->split(act->f32, act->n, scratch);
    act->split = scratch;
}

/* The row of ACT's weight type when ACT can be used with it: the type is
 * supported and, for a block type, N is whole blocks and the sub-block sums
 * are there when the type needs them. The float types take any length. */
static const struct quant_type *act_row(const struct quant_act *act)
{
    const struct quant_type *tt = supported_row(act->wtype);
    if (!tt || tt->blck == 1)
        return tt;
    return act->n > 0 && act->n % tt->blck == 0 && (!tt->has_min || act->q) ? tt : NULL;
}

/* ---- instruction sets ------------------------------------------------------ */

/* The CPU's features are a fact of the process, so the choice is one
 * process-wide value, found on first use. The kernels are pure functions of
 * their arguments whichever set runs them, so concurrent first uses that
 * both store the same value are harmless; relaxed atomics keep that race
 * defined. -1: not chosen yet. */
static _Atomic int g_isa = -1;

static const char *const k_isa_names[QUANT_ISA_COUNT] = {
    [QUANT_ISA_REF] = "ref",
    [QUANT_ISA_AVX2] = "avx2",
    [QUANT_ISA_AVX512] = "avx512",
    [QUANT_ISA_AVX512VNNI] = "avx512vnni",
};

const char *quant_isa_name(enum quant_isa isa)
{
    return (int)isa >= 0 && isa < QUANT_ISA_COUNT ? k_isa_names[isa] : "unknown";
}

static bool have_avx2(void)
{
#ifdef QUANT_HAVE_AVX2
    return true;
#else
    return false;
#endif
}

/* The AVX-512 path keeps the AVX2 kernels for the types it has none for,
 * so it needs both builds. */
static bool have_avx512(void)
{
#if defined(QUANT_HAVE_AVX512) && defined(QUANT_HAVE_AVX2)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
    return false;
#endif
}

/* AVX-512's kernels, and VPDPWSSD for the ones dot_avx512vnni.c has
 * (Cascade Lake, Ice Lake, Zen 4 and later). */
static bool have_avx512vnni(void)
{
#ifdef QUANT_HAVE_AVX512VNNI
    return have_avx512() && __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

static bool have_ref(void) { return true; }

static bool (*const k_isa_have[QUANT_ISA_COUNT])(void) = {
    [QUANT_ISA_REF] = have_ref,
    [QUANT_ISA_AVX2] = have_avx2,
    [QUANT_ISA_AVX512] = have_avx512,
    [QUANT_ISA_AVX512VNNI] = have_avx512vnni,
};

bool quant_isa_available(enum quant_isa isa)
{
    return (int)isa >= 0 && isa < QUANT_ISA_COUNT && k_isa_have[isa]();
}

/* KVCHAT_CPU_ISA when it names an available set, else the best one. */
static enum quant_isa choose_isa(void)
{
    const char *want = getenv("KVCHAT_CPU_ISA");
    for (int i = 0; want && i < QUANT_ISA_COUNT; i++)
        if (strcmp(want, k_isa_names[i]) == 0 && quant_isa_available((enum quant_isa)i))
            return (enum quant_isa)i;
    for (int i = QUANT_ISA_COUNT - 1; i > 0; i--)
        if (quant_isa_available((enum quant_isa)i))
            return (enum quant_isa)i;
    return QUANT_ISA_REF;
}

enum quant_isa quant_isa(void)
{
    int v = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (v < 0) {
        v = (int)choose_isa();
        atomic_store_explicit(&g_isa, v, memory_order_relaxed);
    }
    return (enum quant_isa)v;
}

bool quant_isa_set(enum quant_isa isa)
{
    if (!quant_isa_available(isa))
        return false;
    atomic_store_explicit(&g_isa, (int)isa, memory_order_relaxed);
    return true;
}

/* ---- dot products ------------------------------------------------------------ */

/* One table look-up per row (per matrix for quant_dot_rows), then the type's
 * whole-row kernel for the instruction set in use: no dispatch inside the
 * block loops. */

float quant_dot(const void *row, const struct quant_act *act)
{
    float y;
    quant_dot_rows(row, 0, 1, act, &y);
    return y;
}

void quant_dot_rows(const void *rows, size_t stride, int64_t nr, const struct quant_act *act, float *y)
{
    const struct quant_type *tt = act_row(act);
    if (!tt) {
        for (int64_t r = 0; r < nr; r++)
            y[r] = NAN;
        return;
    }
    int64_t nb = act->n / tt->blck;
    enum quant_isa isa = quant_isa();
    if (isa == QUANT_ISA_AVX512VNNI && tt->dot_rows_split && act->split) {
        tt->dot_rows_split(rows, stride, nr, act->split, act->q, nb, y);
        return;
    }
    if (isa >= QUANT_ISA_AVX512 && tt->dot_rows_avx512) {
        tt->dot_rows_avx512(rows, stride, nr, act->f32, act->q, nb, y);
        return;
    }
    /* One row per call: the prefetch of what comes after it is issued with
     * the row, as one burst (the row kernels spread theirs over the blocks). */
    quant_dot_fn dot = isa == QUANT_ISA_REF ? tt->dot_ref : tt->dot;
    const unsigned char *p = rows;
    size_t bytes = (size_t)nb * tt->size;
    for (int64_t r = 0; r < nr; r++) {
        prefetch_ahead(p + (size_t)r * stride, bytes);
        y[r] = dot(p + (size_t)r * stride, act->f32, act->q, nb);
    }
}

float quant_dot_ref(const void *row, const struct quant_act *act)
{
    const struct quant_type *tt = act_row(act);
    if (!tt)
        return NAN;
    return tt->dot_ref(row, act->f32, act->q, act->n / tt->blck);
}

/* ---- multi-token dot products ---------------------------------------------- */

/* Prefill multiplies every weight row with a batch of tokens. Calling
 * quant_dot per token unpacks each block once per token, and that unpacking
 * (nibbles to int8 to float) costs more than the FMAs; the AVX2 kernels
 * (dot_avx2.c) dequantise each chunk of 32 weights once, to the float values
 * quant_dequantize_row gives (scale and min applied), and FMA them against
 * every token's input. Summing w*x with w already scaled rounds differently
 * from quant_dot's per-block partial sums, by float summation error only
 * (~1e-7 of sum |w*x|). */

/* Row ROW of TT with the float inputs of N tokens (all prepared for the type
 * and the same length). The scalar version: one block (or 256 float weights)
 * at a time through the reference decoder into a stack buffer. */
static void dot_n_ref(const struct quant_type *tt, const void *row, const struct quant_act *acts, int n,
                      float *out, size_t out_stride)
{
    int64_t len = acts[0].n, bs = tt->blck;
    int64_t step = bs == 1 ? 256 : bs; /* float types: any length, in chunks */
    size_t bytes = tt->size * (size_t)(step / bs);
    float buf[256];
    for (int t = 0; t < n; t++)
        out[(size_t)t * out_stride] = 0;
    const unsigned char *p = row;
    for (int64_t i = 0; i < len; i += step, p += bytes) {
        int64_t m = len - i < step ? len - i : step;
        tt->dequant(p, buf, m / bs);
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
    const struct quant_type *tt = row_for(acts[0].wtype, acts[0].n);
    if (!tt) {
        for (int t = 0; t < n; t++)
            out[(size_t)t * out_stride] = NAN;
        return;
    }
    dot_n_ref(tt, row, acts, n, out, out_stride);
}

void quant_dot_n(const void *row, const struct quant_act *acts, int n, float *out, size_t out_stride)
{
    const struct quant_type *tt = n > 0 ? row_for(acts[0].wtype, acts[0].n) : NULL;
    int64_t len = acts[0].n;
    if (tt && tt->dot_n && len % 32 == 0 && quant_isa() != QUANT_ISA_REF) {
        /* Whole chunks of 32 (float rows of other lengths take the
         * reference path): 8 tokens at a time. */
        for (int t0 = 0; t0 < n; t0 += 8) {
            int nt = n - t0 < 8 ? n - t0 : 8;
            const float *x[8];
            for (int t = 0; t < nt; t++)
                x[t] = acts[t0 + t].f32;
            tt->dot_n(row, len / 32, x, nt, out + (size_t)t0 * out_stride, out_stride);
        }
        return;
    }
    quant_dot_n_ref(row, acts, n, out, out_stride);
}
