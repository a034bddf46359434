/* quant.h - tensor element types: sizes, fp16/bf16 conversion, dequantisation,
 * quantisation and the dot products the CPU matrix-vector path is built from.
 *
 * Type ids are ggml's, as stored in GGUF files. Blocks run along ne[0]; a row of
 * N elements takes quant_row_size(type, N) bytes. Every function here is pure
 * and thread-safe (the random-row functions change only the state they are
 * given). Each type is one row of the table in quant.c; these functions
 * read it, and the kernels behind them live in the module's other files.
 */
#ifndef KVCHAT_QUANT_H
#define KVCHAT_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40
};

/* Name such as "Q4_K"; "unknown" for ids with no known layout. */
const char *quant_type_name(enum ggml_type t);
/* Parses a name (case-insensitive); returns false when unknown. */
bool quant_type_from_name(const char *name, enum ggml_type *out);
/* True when the layout is known (so sizes can be checked), whether or not the
 * engine can compute with it. */
bool quant_type_known(enum ggml_type t);
/* True for the types kvchat computes with: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0
 * Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS MXFP4. */
bool quant_type_supported(enum ggml_type t);
int64_t quant_block_size(enum ggml_type t); /* elements per block; 0 if unknown */
size_t quant_type_size(enum ggml_type t);   /* bytes per block; 0 if unknown */
/* Bytes of a row of N elements (N a multiple of the block size). Returns 0
 * when T is unknown, N is negative or not a multiple of the block size, or the
 * size would not fit in size_t, so a file reader can reject such tensors. */
size_t quant_row_size(enum ggml_type t, int64_t n);
/* llama.cpp's rules for quantised models, for synthetic ones: the 32-element
 * type a 2-D weight asked to be T is stored in when its rows are not whole T
 * blocks (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K Q3_K IQ4_XS ->
 * IQ4_NL; T itself for the other
 * types), and general.file_type (llama_ftype) of a model all of T (0, "all
 * F32", for unsupported types). */
enum ggml_type quant_type_fallback(enum ggml_type t);
uint32_t quant_type_ftype(enum ggml_type t);

/* IEEE half and bfloat16 conversions. */
float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);
static inline float quant_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
uint16_t quant_f32_to_bf16(float f); /* round to nearest even, NaN kept */

/* Dequantises N elements (a multiple of the block size) of a supported type.
 * An unsupported type or a bad N fills DST with NaN rather than crash. */
void quant_dequantize_row(enum ggml_type t, const void *src, float *dst, int64_t n);
/* Quantises N floats into a supported type (reference quantisers, used for
 * tests and synthetic models, not tuned for quality). Writes nothing for an
 * unsupported type or a bad N. */
void quant_quantize_row(enum ggml_type t, const float *src, void *dst, int64_t n);

/* splitmix64: one multiply-xorshift round per 8 bytes, full period, and good
 * enough that no two rows of a synthetic model look alike. The generator
 * quant_random_row draws from, so its callers can seed states with it too. */
static inline uint64_t quant_rand64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Fills a row of NE0 elements of a supported type T with random but valid
 * blocks whose elements have a standard deviation of about SIGMA (> 0),
 * drawing from *RNG (advanced). Fast: random bytes with every block's scale
 * fields set, never a quantisation; the same state gives the same bytes on
 * any machine. Writes nothing for an unsupported type or a bad NE0. Used by
 * synthetic models (backend/model/synth.c). */
void quant_random_row(enum ggml_type t, void *row, int64_t ne0, float sigma, uint64_t *rng);

/* Activations prepared once per matrix-vector product. The input stays float
 * and every dot product is float: weights are dequantised in registers and
 * multiplied with X. (An int8-quantised X, as in ggml's q8 path, put
 * SmolLM2-135M Q4_1 logits 4.5% relative RMS off a float64 reference and
 * broke its greedy answers, because of activation outliers; float products
 * match to 1e-5.) For the types with a min (Q4_1 Q5_1 Q4_K Q5_K) the sums of
 * X over each 32 elements are precomputed, since the min multiplies them.
 * (Q2_K's min is per 16 elements; its kernels sum X as they go, so it needs
 * no prepared data.) */
struct quant_act {
    enum ggml_type wtype; /* weight type this was prepared for */
    int64_t n;            /* elements */
    const float *f32;     /* borrowed: the float input */
    void *q;              /* in the caller's scratch: (n/32) float sums of X, or NULL */
    const void *split;    /* in the caller's scratch: X for the AVX512_VNNI kernels
                             (quant_prepare_act_split), or NULL */
};
/* Bytes of scratch quant_prepare_act needs for N elements and weight type T:
 * n/32 floats for Q4_1 Q5_1 Q4_K Q5_K, 0 for every other type (the float
 * input is all they use), for unsupported types and for N not a multiple of
 * the block size. */
size_t quant_act_size(enum ggml_type t, int64_t n);
/* Prepares X (N floats, borrowed until the last dot product) for dot products
 * with rows of type T, using SCRATCH (quant_act_size bytes, float-aligned; may
 * be NULL when that size is 0). */
void quant_prepare_act(enum ggml_type t, const float *x, int64_t n, void *scratch,
                       struct quant_act *out);
/* Bytes of scratch quant_prepare_act_split needs for N elements of type T:
 * 0 unless T has an AVX512_VNNI decode kernel (Q4_K, Q6_K), N is whole
 * blocks and this CPU runs that instruction set (fixed for the process,
 * whichever set is in use). 4 to 4.25 bytes an element: X as two 16-bit
 * integer digits with a power of two per 256 (float precision or better),
 * and whatever sums of X the kernel needs besides the act's. */
size_t quant_act_split_size(enum ggml_type t, int64_t n);
/* Adds to ACT (prepared by quant_prepare_act) the split of its input that
 * quant_dot_rows reads on the avx512vnni instruction set, in SCRATCH
 * (quant_act_split_size bytes); nothing when that size is 0. Worth it for a
 * matrix-vector product, which reads the split once per row; the batched
 * products (quant_dot_n, quant_gemm) never read it. */
void quant_prepare_act_split(struct quant_act *act, void *scratch);
/* Dot product of one weight row of type ACT->wtype with the prepared input,
 * in float: within about 1e-6 of sum |w*x| of the exact value with the
 * dequantised weights. NaN when the act could not be prepared (unsupported
 * type, bad N); a NaN or infinite input gives a result that is not finite.
 * Uses the AVX2 kernels when the build has AVX2, FMA and F16C. */
float quant_dot(const void *row, const struct quant_act *act);
/* The plain scalar version of quant_dot: the same per-block float sums, the
 * readable reference the fast kernels are tested against. */
float quant_dot_ref(const void *row, const struct quant_act *act);

/* Rows R = 0..NR-1 of one weight matrix (ROWS, row R at byte R * STRIDE),
 * each of type ACT->wtype and ACT->n elements, times the prepared input:
 * Y[R] = quant_dot(row R, ACT). The decode matrix-vector product: the
 * arguments are checked once for all rows, and the AVX-512 kernels (and the
 * AVX512_VNNI ones, for an act with its split) take the rows one after
 * another. NaN in every output when the act could not be prepared. */
void quant_dot_rows(const void *rows, size_t stride, int64_t nr, const struct quant_act *act, float *y);

/* The instruction sets the dot products can run on. quant_dot,
 * quant_dot_rows, quant_dot_n and quant_gemm use the best one this build and
 * CPU have (checked once), unless the environment variable KVCHAT_CPU_ISA
 * names another available one (ref, avx2, avx512 or avx512vnni; an unknown or
 * unavailable name is ignored), so the AVX2 and reference paths can be
 * measured and tested on an AVX-512 machine. */
enum quant_isa {
    QUANT_ISA_REF,    /* the scalar references (dot_ref.c), one row and batched */
    QUANT_ISA_AVX2,   /* dot_avx2.c: built when the compiler targets AVX2, FMA and F16C;
                         prefill by gemm.c's AVX2 kernel */
    QUANT_ISA_AVX512, /* dot_avx512.c for the types it has, AVX2 for the rest; prefill
                         by gemm.c's AVX-512 kernel (the same sums, bit for bit) */
    QUANT_ISA_AVX512VNNI, /* AVX-512's, and for the types dot_avx512vnni.c has, decode on
                             VPDPWSSD against the split input (quant_prepare_act_split) */
    QUANT_ISA_COUNT
};
const char *quant_isa_name(enum quant_isa isa);
/* True when this build has ISA's kernels and this CPU runs them. */
bool quant_isa_available(enum quant_isa isa);
enum quant_isa quant_isa(void); /* the one in use */
/* Switches every later dot product to ISA; false (and no change) when it is
 * not available. Not thread-safe: for tests and benchmarks, between runs. */
bool quant_isa_set(enum quant_isa isa);

/* Dot products of one weight row with the inputs of N tokens, for prefill:
 * OUT[t * OUT_STRIDE] = row . ACTS[t] for t < N. ACTS must all be prepared
 * for the same type and length. Each block is dequantised once and used for
 * up to 8 tokens, so a batch costs far less than N quant_dot calls. The
 * weights are dequantised to the same floats quant_dequantize_row gives and
 * summed with X in float: within about 1e-6 of sum |w*x| of the exact value,
 * like quant_dot. NaN in every output when the acts could not be prepared. */
void quant_dot_n(const void *row, const struct quant_act *acts, int n, float *out, size_t out_stride);
/* Scalar reference for quant_dot_n: each block through quant_dequantize_row
 * into a stack buffer, then a plain float dot per token. */
void quant_dot_n_ref(const void *row, const struct quant_act *acts, int n, float *out, size_t out_stride);

/* The batched product of prefill, as a GEMM: OUT[t * OUT_STRIDE + r] =
 * row r . ACTS[t] for r < ROWS and t < N, row r at W + r * ROW_BYTES. A
 * panel of rows is dequantised once (to the floats quant_dequantize_row
 * gives, rearranged so one vector holds a weight of many rows) and
 * multiplied with all N tokens by a register-blocked fp32 kernel; the
 * activations stay float. Every output is summed in one fixed order (FMA
 * chains over blocks of 128 of k, added in k order), so a token's value
 * depends neither on N, nor on the rows around it, nor on the thread that
 * computes it: within about 1e-6 of sum |w*x| of the exact value, like
 * quant_dot_n. SCRATCH is this thread's quant_gemm_scratch(row length)
 * bytes, 64-byte aligned.
 * Returns false, writing nothing, when it does not apply (the ISA has no
 * GEMM, N is below the size where it pays, the inputs are not one evenly
 * spaced matrix, the type or length is not supported, SCRATCH is NULL): the
 * caller then uses quant_dot_n. */
bool quant_gemm(const void *w, size_t row_bytes, int64_t rows, const struct quant_act *acts, int n,
                float *out, size_t out_stride, void *scratch);
size_t quant_gemm_scratch(int64_t k); /* 0 for K <= 0 */

#endif
