/* quant_internal.h - what the files of the quant module share: the ggml block
 * layouts, the inline helpers every decoder uses, the per-type kernels each
 * file defines, and the type table (quant.c) that names them.
 *
 * Rules every kernel follows:
 * - Kernels take whole blocks (NB; for the float types a block is one
 *   element) and trust their arguments: the entry points in quant.c check
 *   the type, the length and the prepared input once per call, so nothing
 *   inside a row loop branches on the type or calls through the table.
 * - Every kernel with an AVX2 version has a scalar reference of the same
 *   meaning (dot_ref.c) that the tests compare it with.
 * - The static inline helpers here stay inline in every file that uses them;
 *   helpers only one file needs live in that file.
 */
#ifndef KVCHAT_QUANT_INTERNAL_H
#define KVCHAT_QUANT_INTERNAL_H

#include "quant.h"

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

/* The AVX2 kernels (dot_avx2.c) need FMA and F16C too; without all three the
 * table names the scalar references instead. */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define QUANT_HAVE_AVX2 1
#define QUANT_AVX2_OR(avx2, other) avx2
#else
#define QUANT_AVX2_OR(avx2, other) other
#endif

/* QUANT_HAVE_AVX512 comes from the build (backend/quant/CMakeLists.txt) when
 * the compiler can build dot_avx512.c with its own AVX-512 flags; whether
 * those kernels run is decided at run time (quant_isa in quant.c). */

/* ---- block layouts ------------------------------------------------------- */

/* Packed exactly as in GGUF files (no padding: every field is 1- or 2-byte
 * aligned and the sizes are asserted below). Multi-byte fields are read in host
 * order, which is little-endian on every machine kvchat targets.
 *
 * BLK_PACKED gives each layout alignment 1: general.alignment may be any
 * power of two, 1 included, and then a tensor's blocks start at odd
 * addresses, where reading a uint16_t scale through a 2-aligned struct is
 * undefined. Packed, the compiler emits the same single load (x86 and ARM64
 * load unaligned), and no pointer to a member is ever taken. */
#define BLK_PACKED __attribute__((packed))
typedef struct BLK_PACKED {
    uint16_t d;
    int8_t qs[32];
} blk_q8_0;
typedef struct BLK_PACKED {
    uint16_t d;
    uint8_t qs[16];
} blk_q4_0;
typedef struct BLK_PACKED {
    uint16_t d, m;
    uint8_t qs[16];
} blk_q4_1;
typedef struct BLK_PACKED {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
} blk_q5_0;
typedef struct BLK_PACKED {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} blk_q5_1;
typedef struct BLK_PACKED {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
} blk_q4_K;
typedef struct BLK_PACKED {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} blk_q5_K;
typedef struct BLK_PACKED {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} blk_q6_K;

/* Q2_K: sixteen sub-blocks of 16, each a 4-bit scale (low nibble) and a
 * 4-bit min (high nibble) against the super-block d and dmin; 2-bit codes,
 * four to a byte. Chunk k (0..7) of 32 outputs is bits 2(k%4) of
 * qs[32(k/4) + l], l < 32, its halves using scales 2k and 2k+1. */
typedef struct BLK_PACKED {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d, dmin;
} blk_q2_K;
/* Q3_K: the Q2_K walk of qs for the low 2 bits, bit k of hmask[l] the third
 * (clear: minus 4), sixteen signed 6-bit scales (minus 32) packed in 12
 * bytes (q3k_scale), one fp16 d. */
typedef struct BLK_PACKED {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
} blk_q3_K;
/* IQ4_NL: Q4_0's layout, the nibbles indexing a non-linear table of int8
 * levels (quant_iq4nl_values) instead of minus 8. */
typedef struct BLK_PACKED {
    uint16_t d;
    uint8_t qs[16];
} blk_iq4_nl;
/* IQ4_XS: eight IQ4_NL sub-blocks of 32 sharing an fp16 d, each with a
 * 6-bit scale (minus 32): low 4 bits in scales_l, high 2 in scales_h. */
typedef struct BLK_PACKED {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
} blk_iq4_xs;
/* MXFP4 (OCP microscaling): an E8M0 exponent and 32 FP4 (E2M1) codes in
 * Q4_0's nibble order; ggml stores the levels doubled (quant_mxfp4_values),
 * so the scale is half of 2^(e-127). */
typedef struct BLK_PACKED {
    uint8_t e;
    uint8_t qs[16];
} blk_mxfp4;

_Static_assert(sizeof(blk_q8_0) == 34, "Q8_0 block");
_Static_assert(sizeof(blk_q4_0) == 18, "Q4_0 block");
_Static_assert(sizeof(blk_q4_1) == 20, "Q4_1 block");
_Static_assert(sizeof(blk_q5_0) == 22, "Q5_0 block");
_Static_assert(sizeof(blk_q5_1) == 24, "Q5_1 block");
_Static_assert(sizeof(blk_q4_K) == 144, "Q4_K block");
_Static_assert(sizeof(blk_q5_K) == 176, "Q5_K block");
_Static_assert(sizeof(blk_q6_K) == 210, "Q6_K block");
_Static_assert(sizeof(blk_q2_K) == 84, "Q2_K block");
_Static_assert(sizeof(blk_q3_K) == 110, "Q3_K block");
_Static_assert(sizeof(blk_iq4_nl) == 18, "IQ4_NL block");
_Static_assert(sizeof(blk_iq4_xs) == 136, "IQ4_XS block");
_Static_assert(sizeof(blk_mxfp4) == 17, "MXFP4 block");

/* The 16 levels the IQ4 and MXFP4 nibbles index (quant.c): ggml's
 * kvalues_iq4nl, and kvalues_mxfp4 (E2M1 values times 2). */
extern const int8_t quant_iq4nl_values[16];
extern const int8_t quant_mxfp4_values[16];

/* ---- shared inline helpers ----------------------------------------------- */

/* fp16 -> f32 for the hot loops: one instruction with F16C. */
static inline float h2f(uint16_t h)
{
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    return quant_f16_to_f32(h);
#endif
}

/* Element I of a row of 2-byte or 4-byte values at any address (see
 * BLK_PACKED): memcpy, which compilers turn into one load. */
static inline uint16_t load_u16(const void *row, int64_t i)
{
    uint16_t v;
    memcpy(&v, (const uint8_t *)row + 2 * i, sizeof v);
    return v;
}

static inline float load_f32(const void *row, int64_t i)
{
    float v;
    memcpy(&v, (const uint8_t *)row + 4 * i, sizeof v);
    return v;
}

static inline uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Software prefetch, QUANT_PREFETCH_AHEAD bytes on, of the BYTES the
 * decode kernels are about to read at P (a block or a step of blocks): a
 * decode step streams every weight matrix once from DRAM, and with the
 * hardware's prefetch alone a core waited on it (a third of the Q6_K
 * kernel's samples fell on its first load of each block, at a third of the
 * measured read bandwidth). One prefetch per 64 bytes and one at the last
 * byte, so that no line of a stream of such steps is skipped. Spread over
 * the block loop it measured faster than a burst per row, and 4 KiB ahead
 * best of 2-16 KiB; see backend/cpu/NOTES.md, "Prefetch". A prefetch never
 * faults, so running past the matrix's end is harmless. */
#define QUANT_PREFETCH_AHEAD 4096
static inline void prefetch_ahead(const void *p, size_t bytes)
{
    const char *c = (const char *)p + QUANT_PREFETCH_AHEAD;
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(c + o, 0, 3);
    __builtin_prefetch(c + bytes - 1, 0, 3);
}

#ifdef QUANT_HAVE_AVX2
/* The sum of the eight lanes of V. */
static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Q4_K / Q5_K: the eight 6-bit scales and mins of a super-block (k_scale_min
 * for all sub-blocks at once) from its 12 packed bytes SCALES, as bytes 0..7
 * (scales) and 8..15 (mins) of one vector. With the 12 bytes as dwords a0 a1
 * a2, the scales are a0 & 0x3f.. and (a2 & 0x0f..) | (a0 >> 6 & 0x03..) << 4,
 * the mins a1 & 0x3f.. and (a2 >> 4 & 0x0f..) | (a1 >> 6 & 0x03..) << 4: four
 * lanes of one vector.
 * (Computed in scalar code, the four dwords reached the vector through
 * memory, a store-forwarding stall every block: the AVX-512 kernel was 15%
 * slower in cache.) The 16-byte load ends 4 bytes past the scales, inside
 * the block (qs, or Q5_K's qh). */
static inline __m128i kquant_packed(const uint8_t *scales)
{
    __m128i raw = _mm_loadu_si128((const __m128i *)scales);
    __m128i p = _mm_shuffle_epi32(raw, _MM_SHUFFLE(2, 1, 2, 0)); /* a0 a2 a1 a2 */
    __m128i q = _mm_shuffle_epi32(raw, _MM_SHUFFLE(1, 1, 0, 0)); /* a0 a0 a1 a1 */
    __m128i low = _mm_and_si128(_mm_srlv_epi32(p, _mm_setr_epi32(0, 0, 0, 4)),
                                _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    /* the two high bits of the upper four, from bits 6-7 of a0 / a1 */
    __m128i high = _mm_and_si128(_mm_srli_epi32(q, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(low, high);
}

/* The mins' part, dmin * sum m_j XS[j], added to *MACC: one vector of the
 * eight mins (bytes 8..15 of PACKED). */
static inline void kquant_mins(uint16_t dmin16, __m128i packed, const float *xs, __m256 *macc)
{
    __m256 mnf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(packed, packed)));
    *macc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(dmin16)), _mm256_mul_ps(mnf, _mm256_loadu_ps(xs)), *macc);
}

/* The scales as d*sc in DSC[0..7] and, added to MACC, dmin * mn[s] * (sum
 * of x over sub-block s, XS[s]). */
static inline void kquant_scales(uint16_t d16, uint16_t dmin16, const uint8_t *scales, const float *xs,
                                 float dsc[8], __m256 *macc)
{
    __m128i packed = kquant_packed(scales);
    __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(packed));
    _mm256_storeu_ps(dsc, _mm256_mul_ps(_mm256_set1_ps(h2f(d16)), scf));
    kquant_mins(dmin16, packed, xs, macc);
}
#endif

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

/* Signed scale K (0..15) of a Q3_K block: 4 low bits from bytes 0..7 (low
 * nibbles for K < 8, high ones after), 2 high bits from bytes 8..11, minus 32. */
static inline int q3k_scale(const uint8_t s[12], int k)
{
    int lo = k < 8 ? s[k] & 0xF : s[k - 8] >> 4;
    int hi = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* Signed scale of IQ4_XS sub-block IB (0..7), minus 32 applied. */
static inline int iq4xs_scale(uint16_t scales_h, const uint8_t scales_l[4], int ib)
{
    int lo = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
    int hi = (scales_h >> (2 * ib)) & 3;
    return (lo | hi << 4) - 32;
}

/* An MXFP4 block's E8M0 exponent as the scale of the doubled levels,
 * 2^(e-128), built from bits as ggml does (e < 2 gives a subnormal; 255, NaN
 * in the OCP spec, is 2^127 there too). */
static inline float mxfp4_scale(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---- kernels ------------------------------------------------------------- */

/* NB blocks of SRC decoded to floats (dequant.c). */
typedef void (*quant_dequant_fn)(const void *src, float *dst, int64_t nb);
/* NB blocks' worth of floats encoded (quantize.c). */
typedef void (*quant_quantize_fn)(const float *src, void *dst, int64_t nb);
/* One row of NB blocks times X; XS the 32-element sums of X (NULL unless the
 * type has a min) (dot_ref.c, dot_avx2.c). */
typedef float (*quant_dot_fn)(const void *row, const float *x, const float *xs, int64_t nb);
/* One row of NC chunks of 32 times the inputs X[0..NT-1] (NT <= 8), results
 * to OUT[t * OS] (dot_avx2.c). */
typedef void (*quant_dot_n_fn)(const void *row, int64_t nc, const float *const *x, int nt, float *out,
                               size_t os);
/* NR rows STRIDE bytes apart, each NB blocks, times X (XS as for
 * quant_dot_fn); the results to Y[0..NR-1] (dot_avx512.c). */
typedef void (*quant_dot_rows_fn)(const void *rows, size_t stride, int64_t nr, const float *x,
                                  const float *xs, int64_t nb, float *y);
/* X (N floats, whole blocks) split for the avx512vnni instruction set's
 * kernels into OUT (quant_act_split_size bytes): its integer digits in the
 * order the type's kernel reads them, and whatever sums of X it needs
 * (dot_avx512vnni.c). */
typedef void (*quant_split_fn)(const float *x, int64_t n, void *out);
/* As quant_dot_rows_fn, against the split input SPLIT (XS as there). */
typedef void (*quant_dot_rows_split_fn)(const void *rows, size_t stride, int64_t nr, const void *split,
                                        const float *xs, int64_t nb, float *y);
/* NC chunks of 32 of a row decoded to floats, the values the reference
 * decoder gives (dot_avx2.c). */
typedef void (*quant_deq_fn)(const void *row, int64_t nc, float *dst);
/* A row of NE0 random but valid elements of deviation about SIGMA, drawn
 * from RNG (random.c). */
typedef void (*quant_random_fn)(void *row, int64_t ne0, float sigma, uint64_t *rng);

/* One row of the type table. A NULL name: the id is unused. Types with a
 * known layout but no kernels (Q8_1, the IQ2/IQ3/IQ1 and TQ types, ...) leave the kernel
 * fields NULL; quant_type_supported is "has kernels". */
struct quant_type {
    const char *name;
    int64_t blck; /* elements per block; 1 for the float types */
    size_t size;  /* bytes per block */
    bool has_min; /* blocks add a min, so the dot products need the sums of X */
    quant_dequant_fn dequant;
    quant_quantize_fn quantize;
    quant_dot_fn dot_ref; /* the scalar reference */
    quant_dot_fn dot;     /* the fast version (AVX2 when built with it, else dot_ref) */
    quant_dot_n_fn dot_n; /* the prefill version; NULL: the reference path */
    /* The AVX-512 rows version, used when the CPU has AVX-512 (quant_isa);
     * NULL: the other types, which take dot row by row. */
    quant_dot_rows_fn dot_rows_avx512;
    /* The AVX512_VNNI rows version and the split of X it reads, used by the
     * avx512vnni instruction set for an act that has the split; NULL: the
     * types dot_rows_avx512 (or dot) serves there. */
    quant_split_fn split;
    size_t split_size; /* bytes of the split per block */
    quant_dot_rows_split_fn dot_rows_split;
    quant_deq_fn deq_fast; /* vector decoder for quant_gemm's panels; NULL: dequant */
    quant_random_fn random;
    /* For synthetic models, by llama.cpp's rules: the 32-element type rows
     * that are not whole blocks of this one are stored in (0: none), and the
     * general.file_type of a model all of this type (llama_ftype). */
    enum ggml_type fallback;
    uint32_t ftype;
};

/* The row of T, or NULL when T is not a known id. */
const struct quant_type *quant_type_row(enum ggml_type t);

/* Declarations of the kernels of every type kvchat computes with, one name
 * pattern per file. */
#define QUANT_KERNELS(t)                                                                                \
    void quant_dequant_##t(const void *src, float *dst, int64_t nb);                                    \
    void quant_quantize_##t(const float *src, void *dst, int64_t nb);                                   \
    float quant_dot_ref_##t(const void *row, const float *x, const float *xs, int64_t nb);              \
    float quant_dot_avx2_##t(const void *row, const float *x, const float *xs, int64_t nb);             \
    void quant_dot_n_avx2_##t(const void *row, int64_t nc, const float *const *x, int nt,               \
                              float *out, size_t os);                                                   \
    void quant_deq_avx2_##t(const void *row, int64_t nc, float *dst);                                   \
    void quant_random_##t(void *row, int64_t ne0, float sigma, uint64_t *rng);
QUANT_KERNELS(f32)
QUANT_KERNELS(f16)
QUANT_KERNELS(bf16)
QUANT_KERNELS(q8_0)
QUANT_KERNELS(q4_0)
QUANT_KERNELS(q4_1)
QUANT_KERNELS(q5_0)
QUANT_KERNELS(q5_1)
QUANT_KERNELS(q4_K)
QUANT_KERNELS(q5_K)
QUANT_KERNELS(q6_K)
QUANT_KERNELS(q2_K)
QUANT_KERNELS(q3_K)
QUANT_KERNELS(iq4_nl)
QUANT_KERNELS(iq4_xs)
QUANT_KERNELS(mxfp4)
#undef QUANT_KERNELS

/* The AVX-512 kernels there are (dot_avx512.c). */
#define QUANT_ROWS_AVX512(t)                                                                            \
    void quant_rows_avx512_##t(const void *rows, size_t stride, int64_t nr, const float *x,              \
                               const float *xs, int64_t nb, float *y);
QUANT_ROWS_AVX512(q8_0)
QUANT_ROWS_AVX512(q4_1)
QUANT_ROWS_AVX512(q5_0)
QUANT_ROWS_AVX512(q4_K)
QUANT_ROWS_AVX512(q6_K)
#undef QUANT_ROWS_AVX512

/* The AVX512_VNNI kernels there are (dot_avx512vnni.c), and the bytes per
 * super-block of their splits: QUANT_VNNI_DIGITS int16 digits and a float
 * 2^-k, then SUMS floats of sums of X. */
enum { QUANT_VNNI_DIGITS = 512 };
#define QUANT_VNNI_SPLIT_BYTES(sums) (QUANT_VNNI_DIGITS * 2 + 4 + (sums) * 4)
void quant_split_q6_K(const float *x, int64_t n, void *out);
void quant_rows_split_q6_K(const void *rows, size_t stride, int64_t nr, const void *split, const float *xs,
                           int64_t nb, float *y);
void quant_split_q4_K(const float *x, int64_t n, void *out);
void quant_rows_split_q4_K(const void *rows, size_t stride, int64_t nr, const void *split, const float *xs,
                           int64_t nb, float *y);

#endif
