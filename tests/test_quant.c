/* test_quant.c - tensor element types: the type table, fp16/bf16 edge cases,
 * hand-built blocks of every supported type checked against values worked out
 * from docs/model-formats.md §2, quantise/dequantise round trips, and the dot
 * products (AVX2 vs scalar reference vs dequantise-then-float-dot).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "quant.h"
#include "testutil.h"

/* Deterministic generator owned by each test (no shared state). */
struct rng {
    uint64_t s;
};

static uint32_t rng_u32(struct rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)(r->s >> 32);
}

static float rng_uniform(struct rng *r) { return (rng_u32(r) + 0.5f) / 4294967296.0f; }

static float rng_gauss(struct rng *r)
{
    float u = rng_uniform(r), v = rng_uniform(r);
    return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static const enum ggml_type k_supported[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
    GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q2_K,
    GGML_TYPE_Q3_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS, GGML_TYPE_MXFP4,
};
#define N_SUPPORTED (sizeof k_supported / sizeof k_supported[0])

/* ---- type table ------------------------------------------------------------ */

static void test_type_table(void **state)
{
    (void)state;
    static const struct {
        int id;
        const char *name;
        int64_t blck;
        size_t size;
    } want[] = {
        {0, "F32", 1, 4},       {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
        {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
        {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
        {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
        {26, "I32", 1, 4},      {27, "I64", 1, 8},      {28, "F64", 1, 8},      {30, "BF16", 1, 2},
        {20, "IQ4_NL", 32, 18}, {23, "IQ4_XS", 256, 136}, {39, "MXFP4", 32, 17},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        enum ggml_type t = (enum ggml_type)want[i].id;
        assert_true(quant_type_known(t));
        assert_string_equal(quant_type_name(t), want[i].name);
        assert_int_equal(quant_block_size(t), want[i].blck);
        assert_int_equal(quant_type_size(t), want[i].size);
        enum ggml_type back;
        assert_true(quant_type_from_name(want[i].name, &back));
        assert_int_equal(back, t);
    }
    /* Removed or never-assigned ids, and ids out of range. */
    static const int unknown[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 41, -1, 1000};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        enum ggml_type t = (enum ggml_type)unknown[i];
        assert_false(quant_type_known(t));
        assert_false(quant_type_supported(t));
        assert_string_equal(quant_type_name(t), "unknown");
        assert_int_equal(quant_block_size(t), 0);
        assert_int_equal(quant_type_size(t), 0);
        assert_int_equal(quant_row_size(t, 256), 0);
    }
    /* Exactly the computing set is supported. */
    int n_supported = 0;
    for (int id = 0; id < GGML_TYPE_COUNT; id++)
        n_supported += quant_type_supported((enum ggml_type)id);
    assert_int_equal(n_supported, (int)N_SUPPORTED);
    for (size_t i = 0; i < N_SUPPORTED; i++)
        assert_true(quant_type_supported(k_supported[i]));
    assert_false(quant_type_supported(GGML_TYPE_Q8_1));
    assert_false(quant_type_supported(GGML_TYPE_Q8_K));
    assert_false(quant_type_supported((enum ggml_type)16)); /* IQ2_XXS */
    assert_false(quant_type_supported(GGML_TYPE_I32));

    enum ggml_type t = GGML_TYPE_F32;
    assert_true(quant_type_from_name("q4_k", &t));
    assert_int_equal(t, GGML_TYPE_Q4_K);
    assert_true(quant_type_from_name("bf16", &t));
    assert_int_equal(t, GGML_TYPE_BF16);
    assert_false(quant_type_from_name("Q4_K_M", &t));
    assert_false(quant_type_from_name("Q4", &t));
    assert_false(quant_type_from_name("", &t));
    assert_false(quant_type_from_name("unknown", &t));
    assert_false(quant_type_from_name(NULL, &t));
}

/* The rules the synthetic models take from the table: llama.cpp's 32-block
 * fallbacks and general.file_type values. */
static void test_fallback_and_ftype(void **state)
{
    (void)state;
    assert_int_equal(quant_type_fallback(GGML_TYPE_Q4_K), GGML_TYPE_Q5_0);
    assert_int_equal(quant_type_fallback(GGML_TYPE_Q5_K), GGML_TYPE_Q5_1);
    assert_int_equal(quant_type_fallback(GGML_TYPE_Q6_K), GGML_TYPE_Q8_0);
    assert_int_equal(quant_type_fallback(GGML_TYPE_Q4_1), GGML_TYPE_Q4_1);
    assert_int_equal(quant_type_fallback(GGML_TYPE_F16), GGML_TYPE_F16);
    /* llama.cpp's rule for the types below 4 bits: IQ4_NL. */
    assert_int_equal(quant_type_fallback(GGML_TYPE_Q2_K), GGML_TYPE_IQ4_NL);
    assert_int_equal(quant_type_fallback(GGML_TYPE_Q3_K), GGML_TYPE_IQ4_NL);
    assert_int_equal(quant_type_fallback(GGML_TYPE_IQ4_XS), GGML_TYPE_IQ4_NL);
    assert_int_equal(quant_type_fallback(GGML_TYPE_IQ4_NL), GGML_TYPE_IQ4_NL);
    assert_int_equal(quant_type_fallback(GGML_TYPE_MXFP4), GGML_TYPE_MXFP4);
    static const struct { enum ggml_type t; uint32_t ftype; } want[] = {
        {GGML_TYPE_F32, 0},   {GGML_TYPE_F16, 1},   {GGML_TYPE_Q4_0, 2},  {GGML_TYPE_Q4_1, 3},
        {GGML_TYPE_Q8_0, 7},  {GGML_TYPE_Q5_0, 8},  {GGML_TYPE_Q5_1, 9},  {GGML_TYPE_Q4_K, 14},
        {GGML_TYPE_Q5_K, 16}, {GGML_TYPE_Q6_K, 18}, {GGML_TYPE_BF16, 32}, {GGML_TYPE_Q2_K, 21},
        {GGML_TYPE_Q3_K, 11}, {GGML_TYPE_IQ4_NL, 25}, {GGML_TYPE_IQ4_XS, 30}, {GGML_TYPE_MXFP4, 38},
        {GGML_TYPE_Q8_1, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(quant_type_ftype(want[i].t), want[i].ftype);
}

/* Random rows (synthetic models): every supported type gives finite elements
 * of about the deviation asked for, the same bytes from the same state, and
 * nothing for a type without kernels. */
static void test_random_row(void **state)
{
    (void)state;
    enum { N = 4096 };
    static unsigned char a[N * 4], b[N * 4];
    static float f[N];
    for (size_t k = 0; k < N_SUPPORTED; k++) {
        enum ggml_type t = k_supported[k];
        uint64_t s1 = 42, s2 = 42;
        quant_random_row(t, a, N, 0.05f, &s1);
        quant_random_row(t, b, N, 0.05f, &s2);
        assert_memory_equal(a, b, quant_row_size(t, N));
        assert_true(s1 == s2 && s1 != 42);
        quant_dequantize_row(t, a, f, N);
        double ss = 0;
        for (int i = 0; i < N; i++) {
            assert_true(isfinite(f[i]));
            ss += (double)f[i] * f[i];
        }
        double rms = sqrt(ss / N);
        assert_true(rms > 0.05 * 0.5 && rms < 0.05 * 2);
    }
    memset(a, 0xAB, sizeof a);
    uint64_t s = 1;
    quant_random_row(GGML_TYPE_Q8_K, a, 256, 0.05f, &s);
    quant_random_row(GGML_TYPE_Q4_K, a, 100, 0.05f, &s);
    quant_random_row(GGML_TYPE_Q2_K, a, 100, 0.05f, &s);
    quant_random_row(GGML_TYPE_IQ4_NL, a, 48, 0.05f, &s);
    assert_true(s == 1 && a[0] == 0xAB);
}

static void test_row_size(void **state)
{
    (void)state;
    assert_int_equal(quant_row_size(GGML_TYPE_F32, 576), 2304);
    assert_int_equal(quant_row_size(GGML_TYPE_Q4_1, 576), 18 * 20);
    assert_int_equal(quant_row_size(GGML_TYPE_Q8_0, 640), 20 * 34);
    assert_int_equal(quant_row_size(GGML_TYPE_Q4_K, 2048), 8 * 144);
    assert_int_equal(quant_row_size(GGML_TYPE_Q6_K, 2048), 8 * 210);
    assert_int_equal(quant_row_size(GGML_TYPE_Q2_K, 512), 2 * 84);
    assert_int_equal(quant_row_size(GGML_TYPE_I64, 3), 24);
    assert_int_equal(quant_row_size(GGML_TYPE_Q4_0, 0), 0);
    /* Not whole blocks, negative, or too large for size_t: all refused with 0. */
    assert_int_equal(quant_row_size(GGML_TYPE_Q4_0, 48), 0);
    assert_int_equal(quant_row_size(GGML_TYPE_Q4_K, 640), 0);
    assert_int_equal(quant_row_size(GGML_TYPE_F32, -4), 0);
    assert_int_equal(quant_row_size(GGML_TYPE_F64, INT64_MAX), 0);
    assert_int_equal(quant_row_size(GGML_TYPE_F32, INT64_MAX), 0);
    assert_int_equal(quant_row_size(GGML_TYPE_F32, INT64_MAX / 4), (size_t)(INT64_MAX / 4) * 4);
}

/* ---- fp16 / bf16 ------------------------------------------------------------ */

static void test_f16_decode(void **state)
{
    (void)state;
    assert_true(quant_f16_to_f32(0x3c00) == 1.0f);
    assert_true(quant_f16_to_f32(0xc000) == -2.0f);
    assert_true(quant_f16_to_f32(0x3555) == u2f(0x3eaaa000)); /* 0.33325195 */
    assert_true(quant_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(quant_f16_to_f32(0x0400) == ldexpf(1, -14));       /* smallest normal */
    assert_true(quant_f16_to_f32(0x0001) == ldexpf(1, -24));       /* smallest subnormal */
    assert_true(quant_f16_to_f32(0x03ff) == ldexpf(1023, -24));    /* largest subnormal */
    assert_true(quant_f16_to_f32(0x8201) == -ldexpf(0x201, -24));  /* negative subnormal */
    assert_true(quant_f16_to_f32(0x7c00) == INFINITY);
    assert_true(quant_f16_to_f32(0xfc00) == -INFINITY);
    assert_true(isnan(quant_f16_to_f32(0x7e00)));
    assert_true(isnan(quant_f16_to_f32(0x7c01))); /* signalling payload is still NaN */
    assert_int_equal(f2u(quant_f16_to_f32(0x8000)), 0x80000000u);
    assert_int_equal(f2u(quant_f16_to_f32(0x0000)), 0);
}

static void test_f16_encode(void **state)
{
    (void)state;
    assert_int_equal(quant_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(quant_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(quant_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(quant_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(quant_f32_to_f16(65519.0f), 0x7bff);   /* below the halfway point */
    assert_int_equal(quant_f32_to_f16(65520.0f), 0x7c00);   /* tie, rounds to even = inf */
    assert_int_equal(quant_f32_to_f16(1e6f), 0x7c00);
    assert_int_equal(quant_f32_to_f16(-1e6f), 0xfc00);
    assert_int_equal(quant_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(quant_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t nan = quant_f32_to_f16(NAN);
    assert_true((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff) != 0);
    /* Round to nearest even at 1.0: ulp of half is 2^-10. */
    assert_int_equal(quant_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);       /* tie -> even */
    assert_int_equal(quant_f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3c02);   /* tie -> even */
    assert_int_equal(quant_f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)), 0x3c01);
    /* Mantissa carry into the exponent: just below 2.0 rounds up to 2.0. */
    assert_int_equal(quant_f32_to_f16(u2f(0x3ffff000)), 0x4000);
    /* Subnormals. */
    assert_int_equal(quant_f32_to_f16(ldexpf(1, -24)), 0x0001);
    assert_int_equal(quant_f32_to_f16(ldexpf(1, -25)), 0x0000);              /* tie -> 0 */
    assert_int_equal(quant_f32_to_f16(ldexpf(1.0001f, -25)), 0x0001);
    assert_int_equal(quant_f32_to_f16(ldexpf(3, -25)), 0x0002);              /* 1.5 -> 2 */
    assert_int_equal(quant_f32_to_f16(ldexpf(5, -25)), 0x0002);              /* 2.5 -> 2 */
    assert_int_equal(quant_f32_to_f16(-ldexpf(1023, -24)), 0x83ff);
    assert_int_equal(quant_f32_to_f16(ldexpf(2047, -25)), 0x0400);          /* rounds up to normal */
    assert_int_equal(quant_f32_to_f16(1e-10f), 0x0000);
    assert_int_equal(quant_f32_to_f16(ldexpf(1, -14)), 0x0400);

    /* Every half survives half -> float -> half. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_f16_to_f32((uint16_t)h);
        uint16_t back = quant_f32_to_f16(f);
        if (isnan(f))
            assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff) != 0);
        else
            assert_int_equal(back, h);
    }
#if defined(__F16C__)
    /* The hardware converter rounds to nearest even too: agree on random bit
     * patterns over the whole range, normal, subnormal and overflow included. */
    struct rng r = {0x9e3779b97f4a7c15ull};
    for (int i = 0; i < 200000; i++) {
        uint32_t u = rng_u32(&r);
        if (i % 2)
            u = (u & 0x80000000u) | (0x33000000u + (u % 0x15000000u)); /* 2^-25 .. 2^17 */
        float f = u2f(u);
        if (isnan(f))
            continue;
        uint16_t hw = _cvtss_sh(f, 0);
        if (hw != quant_f32_to_f16(f))
            fail_msg("f32 %08x: hardware %04x, quant %04x", u, hw, quant_f32_to_f16(f));
    }
#endif
}

static void test_bf16(void **state)
{
    (void)state;
    assert_int_equal(quant_f32_to_bf16(1.0f), 0x3f80);
    assert_true(quant_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(quant_bf16_to_f32(0xc0a0) == -5.0f);
    assert_int_equal(quant_f32_to_bf16(u2f(0x3f808000)), 0x3f80); /* tie -> even */
    assert_int_equal(quant_f32_to_bf16(u2f(0x3f818000)), 0x3f82); /* tie -> even */
    assert_int_equal(quant_f32_to_bf16(u2f(0x3f808001)), 0x3f81);
    assert_int_equal(quant_f32_to_bf16(u2f(0x7f7fffff)), 0x7f80); /* max float rounds to inf */
    assert_int_equal(quant_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(quant_f32_to_bf16(-0.0f), 0x8000);
    /* A NaN whose payload lives only in the low half must not become inf. */
    uint16_t nan = quant_f32_to_bf16(u2f(0x7f800001));
    assert_true(isnan(quant_bf16_to_f32(nan)));
    assert_true(isnan(quant_bf16_to_f32(quant_f32_to_bf16(NAN))));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            assert_int_equal(quant_f32_to_bf16(f), h);
    }
}

/* ---- hand-built blocks ------------------------------------------------------ */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static void expect_floats(const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("element %d: got %g, want %g", i, got[i], want[i]);
}

static void test_block_q8_0(void **state)
{
    (void)state;
    uint8_t b[34];
    float y[32], want[32];
    put_u16(b, 0x3800); /* d = 0.5 */
    for (int j = 0; j < 32; j++) {
        b[2 + j] = (uint8_t)(int8_t)(j - 16);
        want[j] = 0.5f * (j - 16);
    }
    b[2] = 0x80; /* -128 */
    want[0] = -64;
    quant_dequantize_row(GGML_TYPE_Q8_0, b, y, 32);
    expect_floats(y, want, 32);
}

static void test_block_q4_0(void **state)
{
    (void)state;
    uint8_t b[18];
    float y[32], want[32];
    put_u16(b, 0x4000); /* d = 2 */
    for (int j = 0; j < 16; j++) {
        b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
        want[j] = 2.0f * (j - 8);          /* low nibble: first half */
        want[j + 16] = 2.0f * (15 - j - 8); /* high nibble: second half */
    }
    quant_dequantize_row(GGML_TYPE_Q4_0, b, y, 32);
    expect_floats(y, want, 32);
    assert_true(y[0] == -16 && y[1] == -14 && y[16] == 14 && y[31] == -16);
}

static void test_block_q4_1(void **state)
{
    (void)state;
    uint8_t b[20];
    float y[32], want[32];
    put_u16(b, 0x3800);     /* d = 0.5 */
    put_u16(b + 2, 0xbc00); /* m = -1 */
    for (int j = 0; j < 16; j++) {
        b[4 + j] = (uint8_t)(j | ((15 - j) << 4));
        want[j] = 0.5f * j - 1;
        want[j + 16] = 0.5f * (15 - j) - 1;
    }
    quant_dequantize_row(GGML_TYPE_Q4_1, b, y, 32);
    expect_floats(y, want, 32);
    assert_true(y[0] == -1 && y[15] == 6.5f && y[16] == 6.5f);
}

static void test_block_q5_0(void **state)
{
    (void)state;
    uint8_t b[22];
    float y[32], want[32];
    put_u16(b, 0x3c00); /* d = 1 */
    /* qh as a little-endian u32 = 0xF0008001: bits 0, 15, 28..31 set. */
    b[2] = 0x01;
    b[3] = 0x80;
    b[4] = 0x00;
    b[5] = 0xF0;
    for (int j = 0; j < 16; j++)
        b[6 + j] = 3 | (9 << 4);
    for (int j = 0; j < 16; j++) {
        want[j] = (j == 0 || j == 15) ? 3 : -13;
        want[j + 16] = j >= 12 ? 9 : -7;
    }
    quant_dequantize_row(GGML_TYPE_Q5_0, b, y, 32);
    expect_floats(y, want, 32);
}

static void test_block_q5_1(void **state)
{
    (void)state;
    uint8_t b[24];
    float y[32], want[32];
    put_u16(b, 0x3400);     /* d = 0.25 */
    put_u16(b + 2, 0x3800); /* m = 0.5 */
    b[4] = 0x01;
    b[5] = 0x80;
    b[6] = 0x00;
    b[7] = 0xF0;
    for (int j = 0; j < 16; j++)
        b[8 + j] = (uint8_t)(j | ((15 - j) << 4));
    for (int j = 0; j < 16; j++) {
        int hb_lo = (j == 0 || j == 15), hb_hi = j >= 12;
        want[j] = 0.25f * (j + 16 * hb_lo) + 0.5f;
        want[j + 16] = 0.25f * (15 - j + 16 * hb_hi) + 0.5f;
    }
    quant_dequantize_row(GGML_TYPE_Q5_1, b, y, 32);
    expect_floats(y, want, 32);
    assert_true(y[0] == 4.5f && y[31] == 4.5f && y[16] == 4.25f);
}

/* Scales {1,2,3,4,33,40,50,63} and mins {5,6,7,8,17,20,45,62}, packed by hand
 * per §2.1 (bytes 0-3: scale low 6 | scale 4-7 bits 4-5 on top; 4-7 the same
 * for mins; 8-11: scale 4-7 low nibble | min 4-7 low nibble << 4). */
static const uint8_t k_scales12[12] = {0x81, 0x82, 0xC3, 0xC4, 0x45, 0x46, 0x87, 0xC8, 0x11, 0x48, 0xD2, 0xEF};
static const int k_sc[8] = {1, 2, 3, 4, 33, 40, 50, 63};
static const int k_mn[8] = {5, 6, 7, 8, 17, 20, 45, 62};

static void test_block_q4_K(void **state)
{
    (void)state;
    uint8_t b[144];
    float y[256], want[256];
    put_u16(b, 0x3c00);     /* d = 1 */
    put_u16(b + 2, 0x3800); /* dmin = 0.5 */
    memcpy(b + 4, k_scales12, 12);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = (l + c) & 0xF, hi = (3 * l + c) & 0xF;
            b[16 + 32 * c + l] = (uint8_t)(lo | (hi << 4));
            want[64 * c + l] = (float)(k_sc[2 * c] * lo) - 0.5f * k_mn[2 * c];
            want[64 * c + 32 + l] = (float)(k_sc[2 * c + 1] * hi) - 0.5f * k_mn[2 * c + 1];
        }
    quant_dequantize_row(GGML_TYPE_Q4_K, b, y, 256);
    expect_floats(y, want, 256);
    /* Spot values worked out by hand. */
    assert_true(y[0] == -2.5f);
    assert_true(y[1] == -1.5f);
    assert_true(y[64 * 2 + 5] == 222.5f);      /* sub-block 4: 33*7 - 8.5 */
    assert_true(y[64 * 3 + 32 + 1] == 347.0f); /* sub-block 7: 63*6 - 31 */
}

static void test_block_q5_K(void **state)
{
    (void)state;
    uint8_t b[176];
    float y[256], want[256];
    put_u16(b, 0x3c00);
    put_u16(b + 2, 0x3800);
    memcpy(b + 4, k_scales12, 12);
    for (int l = 0; l < 32; l++)
        b[16 + l] = (uint8_t)(l * 37 + 11);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = (l + c) & 0xF, hi = (3 * l + c) & 0xF;
            b[48 + 32 * c + l] = (uint8_t)(lo | (hi << 4));
            int qh = b[16 + l];
            lo |= ((qh >> (2 * c)) & 1) << 4;
            hi |= ((qh >> (2 * c + 1)) & 1) << 4;
            want[64 * c + l] = (float)(k_sc[2 * c] * lo) - 0.5f * k_mn[2 * c];
            want[64 * c + 32 + l] = (float)(k_sc[2 * c + 1] * hi) - 0.5f * k_mn[2 * c + 1];
        }
    quant_dequantize_row(GGML_TYPE_Q5_K, b, y, 256);
    expect_floats(y, want, 256);
    /* qh[2] = 85 = 0b01010101: bit 2 set (element 66), bit 3 clear (element 98). */
    assert_true(y[66] == 53.5f); /* 3 * (3 + 16) - 3.5 */
    assert_true(y[98] == 24.0f); /* 4 * 7 - 4 */
}

static void test_block_q6_K(void **state)
{
    (void)state;
    uint8_t b[210];
    float y[256], want[256];
    for (int i = 0; i < 128; i++)
        b[i] = (uint8_t)(i * 7 + 3);
    for (int i = 0; i < 64; i++)
        b[128 + i] = (uint8_t)(i * 13 + 5);
    for (int k = 0; k < 16; k++)
        b[192 + k] = (uint8_t)(int8_t)(k - 8);
    put_u16(b + 208, 0x3800); /* d = 0.5 */
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            int q[4] = {
                (ql[l] & 0xF) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            };
            for (int k = 0; k < 4; k++) {
                int e = 128 * h + l + 32 * k;
                want[e] = 0.5f * (float)((e / 16 - 8) * (q[k] - 32));
            }
        }
    quant_dequantize_row(GGML_TYPE_Q6_K, b, y, 256);
    expect_floats(y, want, 256);
    assert_true(y[0] == 52.0f);    /* q = 3|16 - 32 = -13, scale -8 */
    assert_true(y[200] == -34.0f); /* ql[72] >> 4 = 15, qh[40] bits 4-5 = 0: q = -17, scale 4 */
}

/* Q2_K: scale byte s = (s % 16) | (15 - s % 16) << 4, d = 0.5, dmin = 0.25;
 * code of element e is (e * 5) % 4, placed at bits 2(k%4) of qs[32(k/4) + l]
 * (k = e / 32, l = e % 32): the layout of §2.1's Q2_K walk. */
static void test_block_q2_K(void **state)
{
    (void)state;
    uint8_t b[84] = {0};
    float y[256], want[256];
    for (int s = 0; s < 16; s++)
        b[s] = (uint8_t)(s | (15 - s) << 4);
    for (int e = 0; e < 256; e++) {
        int k = e / 32, l = e % 32, q = (e * 5) % 4, s = e / 16;
        b[16 + 32 * (k / 4) + l] |= (uint8_t)(q << (2 * (k % 4)));
        want[e] = 0.5f * s * q - 0.25f * (15 - s);
    }
    put_u16(b + 80, 0x3800); /* d = 0.5 */
    put_u16(b + 82, 0x3400); /* dmin = 0.25 */
    quant_dequantize_row(GGML_TYPE_Q2_K, b, y, 256);
    expect_floats(y, want, 256);
    assert_true(y[0] == -3.75f);  /* scale 0, min 15 */
    assert_true(y[255] == 22.5f); /* scale 15 * 0.5 * code 3, min 0 */
}

/* Q3_K: scale k = k + 20 (so 6-bit values 20..35, signed -12..3), packed per
 * the 12-byte layout by hand; codes (e * 3) % 8 - 4 split into 2 low bits
 * and the hmask bit (set: no -4). */
static void test_block_q3_K(void **state)
{
    (void)state;
    uint8_t b[110] = {0};
    float y[256], want[256];
    for (int k = 0; k < 16; k++) {
        int u = k + 20;
        b[96 + (k < 8 ? k : k - 8)] |= (uint8_t)((u & 0xF) << (k < 8 ? 0 : 4));
        b[96 + 8 + k % 4] |= (uint8_t)((u >> 4) << (2 * (k / 4)));
    }
    for (int e = 0; e < 256; e++) {
        int k = e / 32, l = e % 32, q = (e * 3) % 8 - 4;
        b[32 + 32 * (k / 4) + l] |= (uint8_t)(((q + 4) & 3) << (2 * (k % 4)));
        if (q >= 0)
            b[l] |= (uint8_t)(1 << k);
        want[e] = 0.25f * (float)(e / 16 + 20 - 32) * q;
    }
    put_u16(b + 108, 0x3400); /* d = 0.25 */
    quant_dequantize_row(GGML_TYPE_Q3_K, b, y, 256);
    expect_floats(y, want, 256);
    assert_true(y[0] == 12.0f);   /* 0.25 * -12 * -4 */
    assert_true(y[255] == 0.75f); /* (765 % 8) - 4 = 1, scale 3 */
}

static const int8_t k_iq4[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void test_block_iq4_nl(void **state)
{
    (void)state;
    uint8_t b[18];
    float y[32], want[32];
    put_u16(b, 0x3800); /* d = 0.5 */
    for (int j = 0; j < 16; j++) {
        b[2 + j] = (uint8_t)(j | (15 - j) << 4);
        want[j] = 0.5f * k_iq4[j];
        want[j + 16] = 0.5f * k_iq4[15 - j];
    }
    quant_dequantize_row(GGML_TYPE_IQ4_NL, b, y, 32);
    expect_floats(y, want, 32);
    assert_true(y[0] == -63.5f && y[16] == 56.5f);
}

static void test_block_iq4_xs(void **state)
{
    (void)state;
    uint8_t b[136];
    float y[256], want[256];
    put_u16(b, 0x3400); /* d = 0.25 */
    /* sub-block scales ib * 9 (0..63): signed ib * 9 - 32 */
    uint16_t sh = 0;
    memset(b + 4, 0, 4);
    for (int ib = 0; ib < 8; ib++) {
        int u = ib * 9;
        b[4 + ib / 2] |= (uint8_t)((u & 0xF) << (4 * (ib % 2)));
        sh |= (uint16_t)((u >> 4) << (2 * ib));
    }
    put_u16(b + 2, sh);
    for (int ib = 0; ib < 8; ib++)
        for (int j = 0; j < 16; j++) {
            int lo = (j + ib) & 0xF, hi = (3 * j + ib) & 0xF;
            b[8 + 16 * ib + j] = (uint8_t)(lo | hi << 4);
            want[32 * ib + j] = 0.25f * (float)(ib * 9 - 32) * k_iq4[lo];
            want[32 * ib + j + 16] = 0.25f * (float)(ib * 9 - 32) * k_iq4[hi];
        }
    quant_dequantize_row(GGML_TYPE_IQ4_XS, b, y, 256);
    expect_floats(y, want, 256);
    assert_true(y[0] == 1016.0f);          /* 0.25 * -32 * -127 */
    assert_true(y[7 * 32 + 1] == 7.75f);   /* 0.25 * 31 * level 8 (= 1) */
}

/* MXFP4: E8M0 e, levels doubled; e = 127 is a scale of 0.5 (so the levels
 * read as E2M1: 0 .. 6), e = 0 and 1 the two subnormal scales, 254 the
 * largest normal. */
static void test_block_mxfp4(void **state)
{
    (void)state;
    static const float e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, 0, -0.5f, -1, -1.5f, -2, -3, -4, -6};
    uint8_t b[4 * 17];
    float y[128];
    static const uint8_t es[4] = {127, 130, 0, 254};
    for (int i = 0; i < 4; i++) {
        b[17 * i] = es[i];
        for (int j = 0; j < 16; j++)
            b[17 * i + 1 + j] = (uint8_t)(j | (15 - j) << 4);
    }
    quant_dequantize_row(GGML_TYPE_MXFP4, b, y, 128);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == e2m1[j] && y[j + 16] == e2m1[15 - j]);
        assert_true(y[32 + j] == 8 * e2m1[j]);
        assert_true(y[64 + j] == ldexpf(e2m1[j], -127));
        assert_true(y[96 + j] == ldexpf(e2m1[j], 127));
    }
    assert_true(!signbit(y[8]) && y[8] == 0); /* ggml's level 8 is +0, not E2M1's -0 */
}

static void test_float_types_dequant(void **state)
{
    (void)state;
    uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};
    uint16_t bf[3] = {0x3f80, 0xc0a0, 0x0000};
    float f[3] = {1.5f, -2.25f, 1e-30f}, y[4];
    quant_dequantize_row(GGML_TYPE_F16, h, y, 4);
    assert_true(y[0] == 1 && y[1] == -2 && y[2] == ldexpf(1, -24) && y[3] == 65504);
    quant_dequantize_row(GGML_TYPE_BF16, bf, y, 3);
    assert_true(y[0] == 1 && y[1] == -5 && y[2] == 0);
    quant_dequantize_row(GGML_TYPE_F32, f, y, 3);
    expect_floats(y, f, 3);
}

/* ---- bad input --------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    (void)state;
    uint8_t buf[256] = {0};
    float y[64], x[64] = {0};
    /* Unsupported type or partial block: NaN out, never a crash. */
    quant_dequantize_row(GGML_TYPE_Q8_K, buf, y, 32);
    assert_true(isnan(y[0]) && isnan(y[31]));
    quant_dequantize_row(GGML_TYPE_Q4_0, buf, y, 48);
    assert_true(isnan(y[0]) && isnan(y[47]));
    quant_dequantize_row((enum ggml_type)4, buf, y, 32);
    assert_true(isnan(y[5]));
    /* The new types refuse lengths that are not whole blocks the same way. */
    static const struct { enum ggml_type t; int64_t n; } partial[] = {
        {GGML_TYPE_Q2_K, 32}, {GGML_TYPE_Q3_K, 48}, {GGML_TYPE_IQ4_XS, 32},
        {GGML_TYPE_IQ4_NL, 48}, {GGML_TYPE_MXFP4, 16}, {GGML_TYPE_MXFP4, 0},
    };
    for (size_t k = 0; k < sizeof partial / sizeof partial[0]; k++) {
        enum ggml_type t = partial[k].t;
        int64_t n = partial[k].n;
        for (int i = 0; i < 64; i++)
            y[i] = 1.0f;
        quant_dequantize_row(t, buf, y, n);
        for (int64_t i = 0; i < n; i++)
            assert_true(isnan(y[i]));
        assert_true(y[n] == 1.0f); /* nothing past N */
        assert_int_equal(quant_row_size(t, n), 0);
        assert_int_equal(quant_act_size(t, n), 0);
        struct quant_act a;
        quant_prepare_act(t, x, n, NULL, &a);
        assert_true(isnan(quant_dot(buf, &a)) && isnan(quant_dot_ref(buf, &a)));
        float o[2] = {0, 0};
        struct quant_act two[2] = {a, a};
        quant_dot_n(buf, two, 2, o, 1);
        assert_true(isnan(o[0]) && isnan(o[1]));
        uint8_t keep[64];
        memset(keep, 0xCD, sizeof keep);
        quant_quantize_row(t, x, keep, n);
        for (size_t i = 0; i < sizeof keep; i++)
            assert_int_equal(keep[i], 0xCD);
        uint64_t seed = 5;
        quant_random_row(t, keep, n, 0.05f, &seed);
        assert_true(seed == 5 && keep[0] == 0xCD);
    }

    struct quant_act act;
    assert_int_equal(quant_act_size(GGML_TYPE_Q8_K, 256), 0);
    quant_prepare_act(GGML_TYPE_Q8_K, x, 256, NULL, &act);
    assert_true(isnan(quant_dot(buf, &act)));
    assert_true(isnan(quant_dot_ref(buf, &act)));
    assert_int_equal(quant_act_size(GGML_TYPE_Q4_0, 48), 0);
    quant_prepare_act(GGML_TYPE_Q4_0, x, 48, NULL, &act);
    assert_true(isnan(quant_dot(buf, &act)));
    assert_int_equal(quant_act_size(GGML_TYPE_Q4_K, 640), 0);
    /* Float weights and the offset types need no scratch; the types with a
     * min need their sums and give NaN without them. */
    assert_int_equal(quant_act_size(GGML_TYPE_F16, 640), 0);
    assert_int_equal(quant_act_size(GGML_TYPE_Q8_0, 64), 0);
    assert_int_equal(quant_act_size(GGML_TYPE_Q6_K, 256), 0);
    assert_int_equal(quant_act_size(GGML_TYPE_Q4_1, 64), 2 * sizeof(float));
    assert_int_equal(quant_act_size(GGML_TYPE_Q5_K, 512), 16 * sizeof(float));
    quant_prepare_act(GGML_TYPE_Q4_1, x, 64, NULL, &act);
    assert_true(isnan(quant_dot(buf, &act)));
    assert_true(isnan(quant_dot_ref(buf, &act)));

    /* Quantising into an unsupported type writes nothing. */
    memset(buf, 0xAB, sizeof buf);
    quant_quantize_row(GGML_TYPE_Q8_1, x, buf, 32);
    assert_int_equal(buf[0], 0xAB);
    assert_int_equal(buf[35], 0xAB);
}

/* ---- round trips ----------------------------------------------------------- */

static double rel_rms(const float *a, const float *b, int64_t n)
{
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(e / s);
}

/* Relative RMS error bounds on Gaussian data. A uniform quantiser of step D
 * has RMS error D/sqrt(12); the step is ~2*amax/(2^bits-1) per block, amax of
 * a block of 32 Gaussians ~2.2 sigma. Expected: 8-bit ~0.5%, 6-bit ~2%, 5-bit
 * ~4.5%, 4-bit ~9%; K-quants pay a little for 6-bit scales. The round-to-
 * nearest quantisers of the low-bit types measure IQ4_NL/IQ4_XS 8.1%, MXFP4
 * 11.7% (power-of-two scales), Q3_K 15.7% and Q2_K 33% (llama.cpp's searched
 * scales do a little better). Bounds sit ~30% above the measured values, far
 * below what a layout bug produces (~100%). */
static const struct {
    enum ggml_type t;
    double bound;
} k_rt_bounds[] = {
    {GGML_TYPE_F32, 0.0},     {GGML_TYPE_F16, 0.0005},  {GGML_TYPE_BF16, 0.004},
    {GGML_TYPE_Q8_0, 0.0065}, {GGML_TYPE_Q6_K, 0.03},   {GGML_TYPE_Q5_0, 0.05},
    {GGML_TYPE_Q5_1, 0.045},  {GGML_TYPE_Q5_K, 0.055},  {GGML_TYPE_Q4_0, 0.11},
    {GGML_TYPE_Q4_1, 0.095},  {GGML_TYPE_Q4_K, 0.11},   {GGML_TYPE_IQ4_NL, 0.105},
    {GGML_TYPE_IQ4_XS, 0.105}, {GGML_TYPE_MXFP4, 0.15}, {GGML_TYPE_Q3_K, 0.2},
    {GGML_TYPE_Q2_K, 0.43},
};

static void test_round_trip(void **state)
{
    (void)state;
    const int64_t n = 4096;
    struct rng r = {12345};
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    uint8_t *q = malloc(quant_row_size(GGML_TYPE_F32, n));
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(q);
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_gauss(&r) * (1 + (i / 256) % 4); /* vary the scale across super-blocks */
    for (size_t k = 0; k < sizeof k_rt_bounds / sizeof k_rt_bounds[0]; k++) {
        enum ggml_type t = k_rt_bounds[k].t;
        memset(q, 0, quant_row_size(t, n));
        quant_quantize_row(t, x, q, n);
        quant_dequantize_row(t, q, y, n);
        double e = rel_rms(y, x, n);
        printf("round trip %-5s relative RMS %.5f (bound %.4f)\n", quant_type_name(t), e, k_rt_bounds[k].bound);
        if (!(e <= k_rt_bounds[k].bound))
            fail_msg("%s round trip error %g above %g", quant_type_name(t), e, k_rt_bounds[k].bound);
    }
    /* Awkward inputs: all zero, all equal positive, one spike. No NaN, exact
     * zeros stay zero. */
    static const enum ggml_type qt[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0,
                                        GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
                                        GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS,
                                        GGML_TYPE_MXFP4};
    for (size_t k = 0; k < sizeof qt / sizeof qt[0]; k++) {
        memset(x, 0, 256 * sizeof *x);
        quant_quantize_row(qt[k], x, q, 256);
        quant_dequantize_row(qt[k], q, y, 256);
        for (int i = 0; i < 256; i++)
            assert_true(y[i] == 0);
        for (int i = 0; i < 256; i++)
            x[i] = 3.0f;
        quant_quantize_row(qt[k], x, q, 256);
        quant_dequantize_row(qt[k], q, y, 256);
        assert_true(rel_rms(y, x, 256) < 0.02);
        memset(x, 0, 256 * sizeof *x);
        x[77] = -5.0f;
        quant_quantize_row(qt[k], x, q, 256);
        quant_dequantize_row(qt[k], q, y, 256);
        /* E2M1 has no 5 at any power of two: -4 and -6 are the nearest
         * levels (a tie, which takes the first, -4). */
        float spike_tol = qt[k] == GGML_TYPE_MXFP4 ? 1.0f : 0.01f;
        if (fabsf(y[77] + 5.0f) > spike_tol)
            fail_msg("%s spike: got %g", quant_type_name(qt[k]), y[77]);
    }
    free(x);
    free(y);
    free(q);
}

/* ---- dot products ------------------------------------------------------------ */

/* The dot product of W and X (N elements) in double, and sum |w x|, the
 * scale that float summation error is measured against. */
static void dot_f64(const float *w, const float *x, int64_t n, double *dot, double *absum)
{
    *dot = *absum = 0;
    for (int64_t i = 0; i < n; i++) {
        *dot += (double)w[i] * x[i];
        *absum += fabs((double)w[i] * x[i]);
    }
}

/* Checks quant_dot and quant_dot_ref for type T and length N against the
 * dequantised weights dotted with the float input in double precision. Every
 * 7th activation is 5x larger, and a few are SPIKE times larger (0: none):
 * real activations have such outliers, and int8-quantised activations lost
 * the other values under them (SmolLM2 Q4_1 logits 4.5% off, a nonsense
 * greedy answer), so all types are held to float accuracy. */
static void check_dot(enum ggml_type t, int64_t n, float spike, struct rng *r)
{
    float *w = malloc(n * sizeof *w), *wd = malloc(n * sizeof *wd), *x = malloc(n * sizeof *x);
    size_t rs = quant_row_size(t, n), as = quant_act_size(t, n);
    uint8_t *row = malloc(rs), *scratch = as ? malloc(as) : NULL;
    assert_non_null(w);
    assert_non_null(row);
    for (int64_t i = 0; i < n; i++) {
        w[i] = rng_gauss(r) * 0.05f;
        x[i] = rng_gauss(r) * (1 + (i % 7 == 0) * 4);
    }
    if (spike != 0)
        for (int64_t i = 3; i < n; i += 61)
            x[i] = spike * (i % 2 ? 1 : -1);
    quant_quantize_row(t, w, row, n);
    quant_dequantize_row(t, row, wd, n);
    double want, absum;
    dot_f64(wd, x, n, &want, &absum);
    struct quant_act act;
    quant_prepare_act(t, x, n, scratch, &act);
    float ref = quant_dot_ref(row, &act);
    /* Only float summation error: relative to sum |w*x| it is ~1e-7 here;
     * the bound is 1e-5. */
    double tol = 1e-5 * absum + 1e-30;
    if (!(fabs(ref - want) <= tol))
        fail_msg("%s n=%ld: reference dot %g, dequantised dot %g (tol %g)", quant_type_name(t), (long)n, ref,
                 want, tol);
    /* quant_dot on every instruction set this build and CPU have. */
    enum quant_isa was = quant_isa();
    for (int isa = 0; isa < QUANT_ISA_COUNT; isa++) {
        if (!quant_isa_set((enum quant_isa)isa))
            continue;
        float fast = quant_dot(row, &act);
        const char *in = quant_isa_name((enum quant_isa)isa);
        if (!(fabs(fast - want) <= tol))
            fail_msg("%s n=%ld %s: fast dot %g, dequantised dot %g (tol %g)", quant_type_name(t), (long)n, in,
                     fast, want, tol);
        /* Fast and reference paths sum the same blocks in a different order. */
        double tol2 = 2e-6 * absum + 1e-30;
        if (!(fabs(fast - ref) <= tol2))
            fail_msg("%s n=%ld %s: fast dot %g, reference %g (tol %g)", quant_type_name(t), (long)n, in, fast, ref,
                     tol2);
    }
    assert_true(quant_isa_set(was));
    free(w);
    free(wd);
    free(x);
    free(row);
    free(scratch);
}

static void test_dot_block32(void **state)
{
    (void)state;
    static const enum ggml_type ts[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0,
                                        GGML_TYPE_Q5_1, GGML_TYPE_IQ4_NL, GGML_TYPE_MXFP4};
    /* Odd block counts too (1, 3, 9, 21 blocks): the two-accumulator loops'
     * tails. */
    static const int64_t ns[] = {32, 64, 96, 288, 576, 640, 672, 1536};
    struct rng r = {777};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            for (int rep = 0; rep < 4; rep++)
                check_dot(ts[i], ns[j], 0, &r);
}

static void test_dot_block256(void **state)
{
    (void)state;
    static const enum ggml_type ts[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
                                        GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_IQ4_XS};
    /* 1, 3, 5 and 17 super-blocks too, and long rows (32, 43): the AVX-512
     * kernels keep four accumulators over each block's sub-blocks. */
    static const int64_t ns[] = {256, 512, 768, 1024, 1280, 2048, 4352, 8192, 11008};
    struct rng r = {4242};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            for (int rep = 0; rep < 4; rep++)
                check_dot(ts[i], ns[j], 0, &r);
}

static void test_dot_float(void **state)
{
    (void)state;
    /* Float weights take any length: exercise every tail of the vector loops. */
    static const enum ggml_type ts[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16};
    static const int64_t ns[] = {1, 7, 8, 15, 31, 33, 100, 576, 1000};
    struct rng r = {99};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            check_dot(ts[i], ns[j], 0, &r);
}

/* Regression: activation outliers 1000x the typical value must not cost the
 * other elements their precision, for any weight type. */
static void test_dot_activation_outliers(void **state)
{
    (void)state;
    struct rng r = {31337};
    for (size_t i = 0; i < N_SUPPORTED; i++)
        for (int rep = 0; rep < 4; rep++) {
            check_dot(k_supported[i], 512, 1000, &r);
            check_dot(k_supported[i], 2048, 300, &r);
        }
}

/* Extreme codes that would overflow a careless integer path: Q8_0 -128 against
 * +127 activations, Q6_K codes 0/63 with scale -128, Q5_K code 31 with scale
 * 63, across many blocks. */
static void test_dot_extremes(void **state)
{
    (void)state;
    enum { N = 2048 };
    float x[N], xneg[N];
    for (int i = 0; i < N; i++) {
        x[i] = 1.0f;
        xneg[i] = -1.0f;
    }
    uint8_t row[N / 32 * 34];
    uint8_t scratch[N / 32 * 64];
    static const enum ggml_type used[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q6_K, GGML_TYPE_Q5_K};
    for (size_t i = 0; i < sizeof used / sizeof used[0]; i++) {
        assert_true(quant_row_size(used[i], N) <= sizeof row);
        assert_true(quant_act_size(used[i], N) <= sizeof scratch);
    }
    struct quant_act act;

    /* Q8_0: every weight -128 * d(=1): dot with all ones = -128 N. */
    for (int b = 0; b < N / 32; b++) {
        put_u16(row + 34 * b, 0x3c00);
        memset(row + 34 * b + 2, 0x80, 32);
    }
    quant_prepare_act(GGML_TYPE_Q8_0, x, N, scratch, &act);
    assert_float_equal(quant_dot(row, &act), -128.0f * N, 1e-3 * 128 * N);
    assert_float_equal(quant_dot_ref(row, &act), -128.0f * N, 1e-3 * 128 * N);

    /* Q6_K: all codes 0 (q = -32), every scale -128, d = 1: weight 4096 each. */
    for (int b = 0; b < N / 256; b++) {
        uint8_t *p = row + 210 * b;
        memset(p, 0, 192);
        memset(p + 192, 0x80, 16);
        put_u16(p + 208, 0x3c00);
    }
    quant_prepare_act(GGML_TYPE_Q6_K, xneg, N, scratch, &act);
    assert_float_equal(quant_dot(row, &act), -4096.0f * N, 1e-3 * 4096 * N);
    assert_float_equal(quant_dot_ref(row, &act), -4096.0f * N, 1e-3 * 4096 * N);
    /* All codes 63 (q = +31). */
    for (int b = 0; b < N / 256; b++)
        memset(row + 210 * b, 0xFF, 192);
    assert_float_equal(quant_dot(row, &act), 3968.0f * N, 1e-3 * 3968 * N);

    /* Q5_K: all codes 31, all scales 63, mins 0, d = 1: weight 1953 each. */
    for (int b = 0; b < N / 256; b++) {
        uint8_t *p = row + 176 * b;
        put_u16(p, 0x3c00);
        put_u16(p + 2, 0x0000);
        uint8_t sc[12] = {0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0x0F, 0x0F, 0x0F, 0x0F};
        memcpy(p + 4, sc, 12);
        memset(p + 16, 0xFF, 160);
    }
    quant_prepare_act(GGML_TYPE_Q5_K, x, N, scratch, &act);
    assert_float_equal(quant_dot(row, &act), 1953.0f * N, 1e-3 * 1953 * N);
    assert_float_equal(quant_dot_ref(row, &act), 1953.0f * N, 1e-3 * 1953 * N);

    /* A NaN activation makes the dot product NaN and an infinite one makes it
     * not finite, on both paths. */
    x[5] = NAN;
    quant_prepare_act(GGML_TYPE_Q5_K, x, N, scratch, &act);
    assert_true(isnan(quant_dot(row, &act)) && isnan(quant_dot_ref(row, &act)));
    x[5] = INFINITY;
    quant_prepare_act(GGML_TYPE_Q5_K, x, N, scratch, &act);
    assert_false(isfinite(quant_dot(row, &act)) || isfinite(quant_dot_ref(row, &act)));
    x[5] = 1.0f;

    /* Zero activations give exactly zero, not NaN. */
    memset(x, 0, sizeof x);
    quant_prepare_act(GGML_TYPE_Q5_K, x, N, scratch, &act);
    assert_true(quant_dot(row, &act) == 0.0f);

    /* Q8_0 needs no scratch; an infinite input is not lost. */
    for (int b = 0; b < N / 32; b++) {
        put_u16(row + 34 * b, 0x3c00);
        memset(row + 34 * b + 2, 0x80, 32);
    }
    x[5] = INFINITY;
    quant_prepare_act(GGML_TYPE_Q8_0, x, N, NULL, &act);
    assert_false(isfinite(quant_dot(row, &act)) || isfinite(quant_dot_ref(row, &act)));
}

/* quant_dot_n and quant_dot_n_ref against quant_dot, token by token, for
 * type T, length LEN and N tokens written with a stride (so outputs land in a
 * (token, row) matrix as in cpu.c). */
static void check_dot_n(enum ggml_type t, int64_t len, int n, struct rng *r)
{
    size_t rs = quant_row_size(t, len), as = quant_act_size(t, len);
    float *w = malloc(len * sizeof *w), *x = malloc((size_t)n * len * sizeof *x);
    uint8_t *row = malloc(rs), *scratch = malloc((size_t)n * (as + 16));
    struct quant_act *acts = malloc((size_t)n * sizeof *acts);
    enum { STRIDE = 3 };
    float *out = malloc((size_t)n * STRIDE * sizeof *out), *ref = malloc((size_t)n * STRIDE * sizeof *ref);
    assert_non_null(out);
    for (int64_t i = 0; i < len; i++)
        w[i] = rng_gauss(r) * 0.05f;
    for (int64_t i = 0; i < (int64_t)n * len; i++)
        x[i] = rng_gauss(r) * (1 + (i % 7 == 0) * 4) + (i % 97 == 3 ? 300.0f : 0.0f);
    quant_quantize_row(t, w, row, len);
    float *wd = malloc(len * sizeof *wd);
    quant_dequantize_row(t, row, wd, len);
    for (int k = 0; k < n; k++)
        quant_prepare_act(t, x + (size_t)k * len, len, as ? scratch + (size_t)k * (as + 16) : NULL, &acts[k]);
    quant_dot_n(row, acts, n, out, STRIDE);
    quant_dot_n_ref(row, acts, n, ref, STRIDE);
    for (int k = 0; k < n; k++) {
        float one = quant_dot(row, &acts[k]);
        double want = 0, absum = 0;
        const float *xk = x + (size_t)k * len;
        for (int64_t i = 0; i < len; i++) {
            want += (double)wd[i] * xk[i];
            absum += fabs((double)wd[i] * xk[i]);
        }
        /* Float summation error only, ~1e-7 of sum |w*x|: against the exact
         * value 1e-6; against quant_dot, which splits off the min of Q4_1
         * and the K types (m * sum x, so spikes cancel less exactly), 1e-5. */
        double tol = 1e-6 * absum + 1e-30, tol1 = 1e-5 * absum + 1e-30;
        if (!(fabs(out[k * STRIDE] - want) <= tol && fabs(out[k * STRIDE] - one) <= tol1))
            fail_msg("%s len=%ld n=%d token %d: dot_n %g, exact %g, dot %g (tol %g)", quant_type_name(t), (long)len,
                     n, k, out[k * STRIDE], want, one, tol);
        if (!(fabs(ref[k * STRIDE] - want) <= tol))
            fail_msg("%s len=%ld n=%d token %d: dot_n_ref %g, exact %g (tol %g)", quant_type_name(t), (long)len, n,
                     k, ref[k * STRIDE], want, tol);
    }
    free(wd);
    free(w);
    free(x);
    free(row);
    free(scratch);
    free(acts);
    free(out);
    free(ref);
}

/* quant_dot_rows on every instruction set: random rows of every type (an
 * odd row count and a base at an odd address, as general.alignment = 1
 * gives), each output within float summation error of the reference dot of
 * its row; the AVX-512 path must also cover the types it has no kernel for. */
static void test_dot_rows(void **state)
{
    (void)state;
    enum { NR = 7 };
    static const int64_t lens[] = {256, 640, 2048, 2304};
    uint64_t seed = 0xd0d0;
    struct rng r = {0x7007};
    enum quant_isa was = quant_isa();
    for (size_t ti = 0; ti < N_SUPPORTED; ti++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            enum ggml_type t = k_supported[ti];
            int64_t len = lens[li];
            if (len % quant_block_size(t) != 0)
                continue; /* 640: 32-element types only */
            size_t rs = quant_row_size(t, len), as = quant_act_size(t, len);
            uint8_t *buf = malloc(rs * NR + 1), *rows = buf + 1;
            float *x = malloc(len * sizeof *x), *wd = malloc(len * sizeof *wd);
            void *scratch = as ? malloc(as) : NULL;
            assert_non_null(buf);
            for (int k = 0; k < NR; k++)
                quant_random_row(t, rows + rs * k, len, 0.05f, &seed);
            for (int64_t i = 0; i < len; i++)
                x[i] = rng_gauss(&r) * (1 + (i % 7 == 0) * 4);
            struct quant_act act;
            quant_prepare_act(t, x, len, scratch, &act);
            /* with the split where the type and this CPU have one (the
             * avx512vnni kernels), and the same act without it */
            size_t ss = quant_act_split_size(t, len);
            void *split = ss ? malloc(ss) : NULL;
            struct quant_act acts[2] = {act, act};
            quant_prepare_act_split(&acts[1], split);
            assert_true((acts[1].split != NULL) == (ss > 0));
            float want[NR];
            double absum[NR];
            for (int k = 0; k < NR; k++) {
                want[k] = quant_dot_ref(rows + rs * k, &act);
                quant_dequantize_row(t, rows + rs * k, wd, len);
                double dot;
                dot_f64(wd, x, len, &dot, &absum[k]);
            }
            for (int isa = 0; isa < QUANT_ISA_COUNT; isa++) {
                if (!quant_isa_set((enum quant_isa)isa))
                    continue;
                for (int with = 0; with < 2; with++) {
                    float y[NR + 1];
                    y[NR] = 12345.0f; /* must stay: NR outputs only */
                    quant_dot_rows(rows, rs, NR, &acts[with], y);
                    for (int k = 0; k < NR; k++)
                        if (!(fabs(y[k] - want[k]) <= 2e-6 * absum[k] + 1e-30))
                            fail_msg("%s len=%ld %s%s row %d: rows dot %g, reference %g", quant_type_name(t),
                                     (long)len, quant_isa_name((enum quant_isa)isa), with ? " split" : "", k,
                                     y[k], want[k]);
                    assert_true(y[NR] == 12345.0f);
                }
            }
            assert_true(quant_isa_set(was));
            /* An act that could not be prepared (a length that is not whole
             * blocks, or a type without kernels): NaN in every output. */
            struct quant_act bad = act;
            if (quant_block_size(t) > 1)
                bad.n = len + 1;
            else
                bad.wtype = GGML_TYPE_Q8_1;
            float y[NR];
            quant_dot_rows(rows, rs, NR, &bad, y);
            for (int k = 0; k < NR; k++)
                assert_true(isnan(y[k]));
            free(buf);
            free(x);
            free(wd);
            free(scratch);
            free(split);
        }
}

/* Activations the kernels must not mistake, on every instruction set and
 * type, with the split where there is one: inputs of every magnitude from
 * 2^-90 to 2^90 in one row (the integer digits of a split must keep each
 * input to float precision) and a block of zeros among others (no largest
 * input to scale by), each within float summation error of a double dot
 * product; all zeros exactly zero; a NaN NaN and an infinity not finite. */
enum special_x { X_RANGE, X_ZERO_BLOCK, X_ZEROS, X_NAN, X_INF, X_CASES };

static void test_dot_rows_special_x(void **state)
{
    (void)state;
    enum { LEN = 2048 };
    uint64_t seed = 0x5eed;
    struct rng r = {0x4242};
    enum quant_isa was = quant_isa();
    float *x = malloc(LEN * sizeof *x), *wd = malloc(LEN * sizeof *wd);
    assert_non_null(x);
    assert_non_null(wd);
    for (size_t ti = 0; ti < N_SUPPORTED; ti++) {
        enum ggml_type t = k_supported[ti];
        size_t rs = quant_row_size(t, LEN), as = quant_act_size(t, LEN), ss = quant_act_split_size(t, LEN);
        uint8_t *row = malloc(rs);
        void *scratch = as ? malloc(as) : NULL, *split = ss ? malloc(ss) : NULL;
        assert_non_null(row);
        quant_random_row(t, row, LEN, 0.05f, &seed);
        quant_dequantize_row(t, row, wd, LEN);
        for (int c = 0; c < X_CASES; c++) {
            for (int64_t i = 0; i < LEN; i++) {
                float g = (float)rng_gauss(&r);
                x[i] = c == X_RANGE ? ldexpf(g, (int)(rng_u32(&r) % 181) - 90)
                                    : (c == X_ZEROS || (i >= 256 && i < 512) ? 0.0f : g);
            }
            if (c == X_NAN)
                x[700] = NAN;
            if (c == X_INF)
                x[5] = INFINITY;
            double want, absum;
            dot_f64(wd, x, LEN, &want, &absum);
            struct quant_act act;
            quant_prepare_act(t, x, LEN, scratch, &act);
            quant_prepare_act_split(&act, split);
            for (int isa = 0; isa < QUANT_ISA_COUNT; isa++) {
                if (!quant_isa_set((enum quant_isa)isa))
                    continue;
                float y;
                quant_dot_rows(row, rs, 1, &act, &y);
                bool ok = c == X_ZEROS ? y == 0.0f
                          : c == X_NAN ? isnan(y)
                          : c == X_INF ? !isfinite(y)
                                       : fabs(y - want) <= 2e-6 * absum;
                if (!ok)
                    fail_msg("%s on %s, case %d: %g, double %g (sum |w x| %g)", quant_type_name(t),
                             quant_isa_name((enum quant_isa)isa), c, y, want, absum);
            }
        }
        assert_true(quant_isa_set(was));
        free(row);
        free(scratch);
        free(split);
    }
    free(x);
    free(wd);
}

/* The instruction-set switch: the scalar path is always there, the names
 * are the ones KVCHAT_CPU_ISA takes, and an id out of range is refused. */
static void test_isa(void **state)
{
    (void)state;
    enum quant_isa was = quant_isa();
    assert_true(quant_isa_available(was));
    assert_true(quant_isa_available(QUANT_ISA_REF));
    assert_string_equal(quant_isa_name(QUANT_ISA_REF), "ref");
    assert_string_equal(quant_isa_name(QUANT_ISA_AVX2), "avx2");
    assert_string_equal(quant_isa_name(QUANT_ISA_AVX512), "avx512");
    assert_string_equal(quant_isa_name(QUANT_ISA_AVX512VNNI), "avx512vnni");
    assert_string_equal(quant_isa_name(QUANT_ISA_COUNT), "unknown");
    assert_false(quant_isa_available(QUANT_ISA_COUNT));
    assert_false(quant_isa_set(QUANT_ISA_COUNT));
    assert_int_equal(quant_isa(), was);
    assert_true(quant_isa_set(QUANT_ISA_REF));
    assert_int_equal(quant_isa(), QUANT_ISA_REF);
    assert_true(quant_isa_set(was));
}

/* A file with general.alignment = 1 puts tensor data at odd addresses.
 * Every kernel of every type must read a row there exactly as at an
 * aligned one (and, under -fsanitize=undefined, without a misaligned
 * load): decode, dot product (fast and scalar) and the multi-token dot. */
static void test_unaligned_rows(void **state)
{
    (void)state;
    struct rng r = {0x5eed};
    enum { LEN = 512, NT = 3, STRIDE = 1 };
    for (size_t ti = 0; ti < N_SUPPORTED; ti++) {
        enum ggml_type t = k_supported[ti];
        size_t rs = quant_row_size(t, LEN), as = quant_act_size(t, LEN);
        float w[LEN], x[NT * LEN], da[LEN], du[LEN];
        for (int i = 0; i < LEN; i++)
            w[i] = rng_gauss(&r) * 0.05f;
        for (int i = 0; i < NT * LEN; i++)
            x[i] = rng_gauss(&r);
        uint8_t *aligned = malloc(rs), *buf = malloc(rs + 1);
        float *scratch = malloc(NT * (as + 16));
        assert_non_null(aligned);
        assert_non_null(buf);
        assert_non_null(scratch);
        quant_quantize_row(t, w, aligned, LEN);
        uint8_t *odd = buf + 1;
        quant_quantize_row(t, w, odd, LEN); /* the encoders too */
        assert_memory_equal(odd, aligned, rs);
        quant_dequantize_row(t, aligned, da, LEN);
        quant_dequantize_row(t, odd, du, LEN);
        assert_memory_equal(da, du, sizeof da);
        struct quant_act acts[NT];
        for (int k = 0; k < NT; k++)
            quant_prepare_act(t, x + k * LEN, LEN,
                              as ? (uint8_t *)scratch + (size_t)k * (as + 16) : NULL, &acts[k]);
        float oa[NT], ou[NT];
        for (int k = 0; k < NT; k++) {
            float a = quant_dot(aligned, &acts[k]), u = quant_dot(odd, &acts[k]);
            float ar = quant_dot_ref(aligned, &acts[k]), ur = quant_dot_ref(odd, &acts[k]);
            if (memcmp(&a, &u, sizeof a) != 0 || memcmp(&ar, &ur, sizeof ar) != 0)
                fail_msg("%s token %d: dot aligned %g, unaligned %g; ref %g, %g",
                         quant_type_name(t), k, a, u, ar, ur);
        }
        quant_dot_n(aligned, acts, NT, oa, STRIDE);
        quant_dot_n(odd, acts, NT, ou, STRIDE);
        assert_memory_equal(oa, ou, sizeof oa);
        quant_dot_n_ref(aligned, acts, NT, oa, STRIDE);
        quant_dot_n_ref(odd, acts, NT, ou, STRIDE);
        assert_memory_equal(oa, ou, sizeof oa);
        free(aligned);
        free(buf);
        free(scratch);
    }
}

static void test_dot_n(void **state)
{
    (void)state;
    static const int ns[] = {1, 2, 3, 4, 5, 8, 9, 13, 16};
    struct rng r = {2024};
    enum quant_isa was = quant_isa();
    /* Every instruction set this machine runs: the 8-token kernels, and the
     * references when KVCHAT_CPU_ISA=ref. */
    for (int isa = 0; isa < QUANT_ISA_COUNT; isa++) {
        if (!quant_isa_set((enum quant_isa)isa))
            continue;
        print_message("dot_n on %s\n", quant_isa_name((enum quant_isa)isa));
    for (size_t i = 0; i < N_SUPPORTED; i++) {
        int64_t bs = quant_block_size(k_supported[i]);
        int64_t lens[] = {bs == 256 ? 256 : 32, bs == 256 ? 768 : 576, bs == 256 ? 1536 : 1536};
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            for (size_t l = 0; l < 3; l++)
                check_dot_n(k_supported[i], lens[l], ns[j], &r);
    }
    /* Float rows of lengths that are not whole chunks of 32. */
    static const int64_t odd[] = {1, 7, 33, 100, 1000};
    for (size_t i = 0; i < 3; i++)
        for (size_t l = 0; l < sizeof odd / sizeof odd[0]; l++) {
            check_dot_n(k_supported[i], odd[l], 3, &r);
            check_dot_n(k_supported[i], odd[l], 13, &r);
        }
    }
    assert_true(quant_isa_set(was));
}

/* quant_gemm of ROWS random rows of type T and length LEN with N tokens
 * against the float64 value of the dequantised weights; then the same
 * outputs, bit for bit, from smaller batches (the first 16 tokens, the last
 * 16) and from the rows without the first 3 (another panel split), since a
 * token's value must not depend on its batch or tile. */
static void check_gemm(enum ggml_type t, int64_t len, int64_t rows, int n, struct rng *r)
{
    size_t rs = quant_row_size(t, len);
    enum { XPAD = 8, YPAD = 5 }; /* input rows spaced wider than LEN, outputs wider than ROWS */
    size_t xs = (size_t)len + XPAD, ys = (size_t)rows + YPAD;
    uint8_t *w = malloc(rs * (size_t)rows);
    float *wd = malloc(sizeof(float) * (size_t)len * (size_t)rows);
    float *x = malloc(sizeof(float) * xs * (size_t)n);
    float *y = malloc(sizeof(float) * ys * (size_t)n), *y2 = malloc(sizeof(float) * ys * (size_t)n);
    struct quant_act *acts = malloc(sizeof *acts * (size_t)n);
    size_t sb = quant_gemm_scratch(len);
    void *scratch = aligned_alloc(64, (sb + 63) / 64 * 64);
    assert_non_null(w);
    assert_non_null(wd);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(y2);
    assert_non_null(acts);
    assert_non_null(scratch);
    uint64_t seed = rng_u32(r);
    for (int64_t i = 0; i < rows; i++) {
        quant_random_row(t, w + (size_t)i * rs, len, 0.05f, &seed);
        quant_dequantize_row(t, w + (size_t)i * rs, wd + (size_t)i * len, len);
    }
    for (size_t i = 0; i < xs * (size_t)n; i++)
        x[i] = rng_gauss(r) * (1 + (i % 7 == 0) * 4) + (i % 97 == 3 ? 300.0f : 0.0f);
    for (int k = 0; k < n; k++)
        quant_prepare_act(t, x + (size_t)k * xs, len, NULL, &acts[k]); /* the GEMM needs no sums */
    for (size_t i = 0; i < ys * (size_t)n; i++)
        y[i] = y2[i] = -7.0f; /* the padding must stay */
    assert_true(quant_gemm(w, rs, rows, acts, n, y, ys, scratch));
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < (int64_t)ys; i++) {
            float got = y[(size_t)k * ys + (size_t)i];
            if (i >= rows) {
                assert_true(got == -7.0f);
                continue;
            }
            double want = 0, absum = 0;
            for (int64_t j = 0; j < len; j++) {
                double p = (double)wd[(size_t)i * len + (size_t)j] * x[(size_t)k * xs + (size_t)j];
                want += p;
                absum += fabs(p);
            }
            if (!(fabs(got - want) <= 1e-6 * absum + 1e-30))
                fail_msg("%s len=%ld rows=%ld n=%d token %d row %ld: gemm %g, exact %g", quant_type_name(t),
                         (long)len, (long)rows, n, k, (long)i, got, want);
        }
    /* Every instruction set with a GEMM gives the same bits. */
    enum quant_isa isa = quant_isa();
    for (int other = QUANT_ISA_AVX2; other < QUANT_ISA_COUNT; other++) {
        if (other == (int)isa || !quant_isa_set((enum quant_isa)other))
            continue;
        for (int k = 0; k < n; k++)
            for (size_t i = 0; i < ys; i++)
                y2[(size_t)k * ys + i] = i < (size_t)rows ? NAN : -7.0f;
        assert_true(quant_gemm(w, rs, rows, acts, n, y2, ys, scratch));
        assert_memory_equal(y2, y, sizeof(float) * ys * (size_t)n);
    }
    assert_true(quant_isa_set(isa));
    assert_true(quant_gemm(w, rs, rows, acts, 16, y2, ys, scratch));
    assert_memory_equal(y2, y, sizeof(float) * ys * 16);
    if (n > 16) {
        size_t last = (size_t)(n - 16) * ys;
        assert_true(quant_gemm(w, rs, rows, acts + n - 16, 16, y2 + last, ys, scratch));
        assert_memory_equal(y2 + last, y + last, sizeof(float) * ys * 16);
    }
    if (rows > 3) {
        for (int k = 0; k < n; k++)
            for (int64_t i = 0; i < (int64_t)ys; i++)
                y2[(size_t)k * ys + (size_t)i] = i < 3 || i >= rows ? y[(size_t)k * ys + (size_t)i] : NAN;
        assert_true(quant_gemm(w + 3 * rs, rs, rows - 3, acts, n, y2 + 3, ys, scratch));
        assert_memory_equal(y2, y, sizeof(float) * ys * (size_t)n);
    }
    free(w);
    free(wd);
    free(x);
    free(y);
    free(y2);
    free(acts);
    free(scratch);
}

static void test_gemm(void **state)
{
    (void)state;
    struct rng r = {77};
    enum quant_isa was = quant_isa();
    if (!quant_isa_set(QUANT_ISA_AVX2)) {
        print_message("no AVX2 here: quant_gemm is not taken\n");
    } else {
        static const int64_t rows[] = {7, 45, 70};
        for (size_t i = 0; i < N_SUPPORTED; i++) {
            int64_t bs = quant_block_size(k_supported[i]);
            /* one k-block, and several with a partial last one */
            int64_t lens[] = {bs == 256 ? 256 : 96, bs == 256 ? 1280 : 1312};
            for (size_t l = 0; l < 2; l++)
                check_gemm(k_supported[i], lens[l], rows[(i + l) % 3], l ? 29 : 16, &r);
        }
        /* More rows than one decoded block (256) with a partial last panel,
         * more tokens than one block of sums (512), and a partial last slab
         * of k (800 = 3 x 256 + 32; 768 for the 256-element types). */
        check_gemm(GGML_TYPE_Q8_0, 800, 300, 530, &r);
        check_gemm(GGML_TYPE_Q4_K, 768, 290, 520, &r);
    }
    /* Where it does not apply it says so and writes nothing. */
    enum { LEN = 64, N = 20 };
    float x[N * LEN], y[N * 8];
    uint8_t row[8 * 64 * 4] = {0};
    struct quant_act acts[N];
    void *scratch = aligned_alloc(64, quant_gemm_scratch(LEN));
    assert_non_null(scratch);
    for (int i = 0; i < N * LEN; i++)
        x[i] = 1.0f;
    for (int k = 0; k < N; k++)
        quant_prepare_act(GGML_TYPE_F32, x + k * LEN, LEN, NULL, &acts[k]);
    for (int isa = 0; isa < QUANT_ISA_COUNT; isa++) {
        if (!quant_isa_set((enum quant_isa)isa))
            continue;
        bool has_gemm = isa >= QUANT_ISA_AVX2;
        assert_true(quant_gemm(row, LEN * 4, 8, acts, N, y, 8, scratch) == has_gemm);
        assert_false(quant_gemm(row, LEN * 4, 8, acts, 15, y, 8, scratch)); /* too few tokens */
        assert_false(quant_gemm(row, LEN * 4, 8, acts, N, y, 8, NULL));
        assert_false(quant_gemm(row, LEN * 4 - 4, 8, acts, N, y, 8, scratch)); /* rows too short */
        struct quant_act odd[N];
        memcpy(odd, acts, sizeof odd);
        odd[5] = acts[6]; /* not one evenly spaced matrix */
        assert_false(quant_gemm(row, LEN * 4, 8, odd, N, y, 8, scratch));
    }
    free(scratch);
    assert_true(quant_isa_set(was));
}

/* An act that could not be prepared gives NaN for every token. */
static void test_dot_n_bad(void **state)
{
    (void)state;
    float x[40] = {0}, out[4] = {0};
    uint8_t row[64] = {0};
    struct quant_act acts[2];
    quant_prepare_act(GGML_TYPE_Q4_0, x, 40, NULL, &acts[0]);
    acts[1] = acts[0];
    quant_dot_n(row, acts, 2, out, 2);
    assert_true(isnan(out[0]) && isnan(out[2]));
    quant_prepare_act(GGML_TYPE_Q4_K, x, 40, NULL, &acts[0]);
    quant_dot_n_ref(row, acts, 1, out, 1);
    assert_true(isnan(out[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_unaligned_rows),
        cmocka_unit_test(test_dot_rows),
        cmocka_unit_test(test_dot_rows_special_x),
        cmocka_unit_test(test_isa),
        cmocka_unit_test(test_row_size),
        cmocka_unit_test(test_fallback_and_ftype),
        cmocka_unit_test(test_random_row),
        cmocka_unit_test(test_f16_decode),
        cmocka_unit_test(test_f16_encode),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_block_q8_0),
        cmocka_unit_test(test_block_q4_0),
        cmocka_unit_test(test_block_q4_1),
        cmocka_unit_test(test_block_q5_0),
        cmocka_unit_test(test_block_q5_1),
        cmocka_unit_test(test_block_q4_K),
        cmocka_unit_test(test_block_q5_K),
        cmocka_unit_test(test_block_q6_K),
        cmocka_unit_test(test_block_q2_K),
        cmocka_unit_test(test_block_q3_K),
        cmocka_unit_test(test_block_iq4_nl),
        cmocka_unit_test(test_block_iq4_xs),
        cmocka_unit_test(test_block_mxfp4),
        cmocka_unit_test(test_float_types_dequant),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_dot_block32),
        cmocka_unit_test(test_dot_block256),
        cmocka_unit_test(test_dot_float),
        cmocka_unit_test(test_dot_activation_outliers),
        cmocka_unit_test(test_dot_extremes),
        cmocka_unit_test(test_dot_n),
        cmocka_unit_test(test_dot_n_bad),
        cmocka_unit_test(test_gemm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
