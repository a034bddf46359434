/* gemm.c - quant_gemm, the batched weight product of prefill: a panel of
 * weight rows dequantised to floats once, then multiplied with every token of
 * the batch by a register-blocked kernel (AVX-512, or AVX2 with FMA). cpu.c's
 * matrix products call it for batches; quant_dot_n (dot_avx2.c) is what runs
 * where it does not apply.
 *
 * Why: quant_dot_n dequantises each block once per 8 tokens and keeps one
 * accumulator per token, so every FMA needs a load of X and the decode of
 * the weights is repeated 64 times over a 512-token prompt. Here a panel of
 * GR rows is decoded once per batch (exactly: the same floats as
 * quant_dequantize_row) into a k-major layout, so one vector register holds
 * one weight of 16 (AVX-512) or 8 (AVX2) rows; the micro-kernel broadcasts
 * one input of each of its tokens and does two FMAs per token and k from
 * two loads of the panel; each group of tokens runs over the whole panel
 * (in L2) before the next.
 *
 * Rules:
 * - Activations stay float; the weights are the reference decoder's floats.
 * - Every output is summed in one fixed order: an FMA chain from zero over
 *   each block of GK values of k, the blocks' sums added to OUT in k order.
 *   So a token's result depends on nothing but its row and input, never on
 *   the batch size, the tile, the thread or the instruction set (the model
 *   tests compare bits; test_quant compares the AVX2 and AVX-512 kernels).
 *   (One chain over the whole row was 2e-4 off on a 1280-long Q6_K row with
 *   outliers, over the 1e-6 of sum |w*x| quant_dot_n keeps; chains of GK
 *   stay within it, as quant_dot_n's 8 lanes of K/8 do.)
 * - AVX-512 code is compiled per function (GEMM_TARGET) and runs only when
 *   quant_isa() says so; the file builds anywhere.
 */
#include "quant_internal.h"

#if defined(__x86_64__) && defined(QUANT_HAVE_AVX2)
#define GEMM_X86 1
#endif

enum {
    GR = 32,  /* rows of a panel: two 512-bit vectors */
    GT = 12,  /* tokens per AVX-512 micro-tile: 24 accumulators of the 32 registers */
    GT2 = 6,  /* tokens per AVX2 micro-tile (half a panel's rows): 12 accumulators
                 of the 16 registers, 2 for the panel, 1 for the broadcast */
    GK = 128, /* k per FMA chain: each output sums blocks of GK from zero */
    KC = 256, /* k per slab: a panel's slab (GR * KC floats, 32 KB) is L1-sized,
                 and KC is whole blocks of every type (32 or 256 elements) */
    MC = 256, /* rows decoded per slab: MC * KC floats (256 KB) stay in L2 */
    XS = KC + 16, /* floats between a micro-tile's copied inputs: not a
                     multiple of 4 KB, so they do not share L1 sets */
    NB = 512,     /* tokens whose sums one block's buffer holds */
    YS = MC + 16, /* floats between the buffered sums of two tokens */
    /* Below this many tokens the decode of a panel costs more than the
     * register blocking saves; quant_dot_n runs instead. */
    GEMM_MIN_TOKENS = 16,
};

/* The decoded slabs (MC * KC floats), a decode buffer of 4 rows (4 * KC),
 * the micro-tile's inputs (GT * XS) and the sums of a block (NB * YS). The
 * same for every K: the loops block over k, so nothing grows with the row
 * length. */
size_t quant_gemm_scratch(int64_t k)
{
    if (k <= 0)
        return 0;
    return ((size_t)MC * KC + 4 * (size_t)KC + (size_t)GT * XS + (size_t)NB * YS) * sizeof(float);
}

#ifdef GEMM_X86

#define GEMM_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma")))
#define GEMM_INLINE static inline __attribute__((always_inline)) GEMM_TARGET

/* Elements K0..K0+KC-1 of NR (<= GR) rows of TT, ROW_BYTES apart from W,
 * into PANEL[k * GR + r] (KC a multiple of 32 and of the block, K0 of the
 * block); rows NR..GR-1 are zero. Four rows at a time are decoded into TMP
 * (4 * KC floats) and transposed 4 x 4 into place. */
static void pack_panel(const struct quant_type *tt, const unsigned char *w, size_t row_bytes, int nr,
                       int kc, float *tmp, float *panel)
{
    for (int r0 = 0; r0 < GR; r0 += 4) {
        for (int j = 0; j < 4; j++) {
            float *dst = tmp + (size_t)j * kc;
            if (r0 + j >= nr)
                memset(dst, 0, sizeof(float) * (size_t)kc);
            else if (tt->deq_fast)
                tt->deq_fast(w + (size_t)(r0 + j) * row_bytes, kc / 32, dst);
            else
                tt->dequant(w + (size_t)(r0 + j) * row_bytes, dst, kc / tt->blck);
        }
        for (int i = 0; i < kc; i += 4) {
            __m128 a = _mm_loadu_ps(tmp + i), b = _mm_loadu_ps(tmp + kc + i);
            __m128 c = _mm_loadu_ps(tmp + 2 * kc + i), d = _mm_loadu_ps(tmp + 3 * kc + i);
            _MM_TRANSPOSE4_PS(a, b, c, d);
            float *p = panel + (size_t)i * GR + r0;
            _mm_storeu_ps(p, a);
            _mm_storeu_ps(p + GR, b);
            _mm_storeu_ps(p + 2 * GR, c);
            _mm_storeu_ps(p + 3 * GR, d);
        }
    }
}

/* The micro-kernels: NT (a constant after inlining) tokens, X their inputs
 * (copied, row stride XS), times the rows of the panel block P (KC values
 * of k, rows GR floats apart) the kernel covers, into the block's buffer Y
 * (row stride YS). FIRST: the block's sums are stored; otherwise they are
 * added to Y. Both kernels sum each output in the same order. */
typedef void gemm_tile_fn(const float *p, const float *x, int kc, int nt, float *y, bool first);

/* AVX-512: all GR rows, up to GT tokens. */
GEMM_INLINE void tile512(const float *p, const float *x, int kc, int nt, float *y, bool first)
{
    __m512 a0[GT], a1[GT];
    for (int t = 0; t < nt; t++) {
        a0[t] = _mm512_setzero_ps();
        a1[t] = _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        __m512 w0 = _mm512_load_ps(p + (size_t)k * GR), w1 = _mm512_load_ps(p + (size_t)k * GR + 16);
        for (int t = 0; t < nt; t++) {
            __m512 b = _mm512_set1_ps(x[t * XS + k]);
            a0[t] = _mm512_fmadd_ps(w0, b, a0[t]);
            a1[t] = _mm512_fmadd_ps(w1, b, a1[t]);
        }
    }
    for (int t = 0; t < nt && !first; t++) {
        a0[t] = _mm512_add_ps(a0[t], _mm512_load_ps(y + (size_t)t * YS));
        a1[t] = _mm512_add_ps(a1[t], _mm512_load_ps(y + (size_t)t * YS + 16));
    }
    for (int t = 0; t < nt; t++) {
        _mm512_store_ps(y + (size_t)t * YS, a0[t]);
        _mm512_store_ps(y + (size_t)t * YS + 16, a1[t]);
    }
}

/* AVX2: 16 of the GR rows, up to GT2 tokens. 12 accumulators, 2 panel
 * vectors and a broadcast fill 15 of the 16 registers, and GCC did not keep
 * an array of 12 in them: written as an array, the full tile stored 5 of
 * them to the stack every k (2.4x the time). So the full tile names its
 * accumulators; smaller ones (only the batch's last group) use the array. */
#define TILE2_ROWS(p, k, w0, w1)                                                                   \
    __m256 w0 = _mm256_load_ps((p) + (size_t)(k) * GR), w1 = _mm256_load_ps((p) + (size_t)(k) * GR + 8)
#define TILE2_FMA(t)                                                                               \
    do {                                                                                           \
        __m256 b_ = _mm256_broadcast_ss(x + (t) * XS + k);                                         \
        a##t##0 = _mm256_fmadd_ps(w0, b_, a##t##0);                                                \
        a##t##1 = _mm256_fmadd_ps(w1, b_, a##t##1);                                                \
    } while (0)
#define TILE2_OUT(t)                                                                               \
    do {                                                                                           \
        float *y_ = y + (size_t)(t) * YS;                                                          \
        if (!first) {                                                                              \
            a##t##0 = _mm256_add_ps(a##t##0, _mm256_load_ps(y_));                                  \
            a##t##1 = _mm256_add_ps(a##t##1, _mm256_load_ps(y_ + 8));                              \
        }                                                                                          \
        _mm256_store_ps(y_, a##t##0);                                                              \
        _mm256_store_ps(y_ + 8, a##t##1);                                                          \
    } while (0)

static void tile2_full(const float *p, const float *x, int kc, float *y, bool first)
{
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    for (int k = 0; k < kc; k++) {
        TILE2_ROWS(p, k, w0, w1);
        TILE2_FMA(0);
        TILE2_FMA(1);
        TILE2_FMA(2);
        TILE2_FMA(3);
        TILE2_FMA(4);
        TILE2_FMA(5);
    }
    TILE2_OUT(0);
    TILE2_OUT(1);
    TILE2_OUT(2);
    TILE2_OUT(3);
    TILE2_OUT(4);
    TILE2_OUT(5);
}

static inline __attribute__((always_inline)) void tile2(const float *p, const float *x, int kc, int nt,
                                                        float *y, bool first)
{
    __m256 a0[GT2], a1[GT2];
    for (int t = 0; t < nt; t++) {
        a0[t] = _mm256_setzero_ps();
        a1[t] = _mm256_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        TILE2_ROWS(p, k, w0, w1);
        for (int t = 0; t < nt; t++) {
            __m256 b = _mm256_broadcast_ss(x + t * XS + k);
            a0[t] = _mm256_fmadd_ps(w0, b, a0[t]);
            a1[t] = _mm256_fmadd_ps(w1, b, a1[t]);
        }
    }
    for (int t = 0; t < nt && !first; t++) {
        a0[t] = _mm256_add_ps(a0[t], _mm256_load_ps(y + (size_t)t * YS));
        a1[t] = _mm256_add_ps(a1[t], _mm256_load_ps(y + (size_t)t * YS + 8));
    }
    for (int t = 0; t < nt; t++) {
        _mm256_store_ps(y + (size_t)t * YS, a0[t]);
        _mm256_store_ps(y + (size_t)t * YS + 8, a1[t]);
    }
}
#undef TILE2_ROWS
#undef TILE2_FMA
#undef TILE2_OUT

/* The kernels for a runtime NT, each count its own register allocation. */
GEMM_TARGET static void tile512_n(const float *p, const float *x, int kc, int nt, float *y, bool first)
{
    switch (nt) {
#define T_(n)                                                                                      \
    case n: tile512(p, x, kc, n, y, first); break;
        T_(1) T_(2) T_(3) T_(4) T_(5) T_(6) T_(7) T_(8) T_(9) T_(10) T_(11)
#undef T_
    default: tile512(p, x, kc, GT, y, first); break;
    }
}

static void tile2_n(const float *p, const float *x, int kc, int nt, float *y, bool first)
{
    switch (nt) {
#define T_(n)                                                                                      \
    case n: tile2(p, x, kc, n, y, first); break;
        T_(1) T_(2) T_(3) T_(4) T_(5)
#undef T_
    default: tile2_full(p, x, kc, y, first); break;
    }
}

/* ROWS rows times N tokens (X row stride XSTR), as the header says, with
 * TILE covering TR rows of a panel and up to GTN tokens.
 *
 * Loop order (outside in): MC-row blocks, NB-token blocks, KC-slabs of k,
 * token groups, the block's panels, the kernel's rows of a panel,
 * GK-chains. A slab of MC rows is decoded once per token block (once per
 * call in cpu.c, whose batches are at most NB) and stays in L2 while every
 * token group passes over it; a group's inputs (GTN x KC) are copied once
 * into L1 and serve all MC / GR panels. So the inputs are read from L3 once
 * per MC rows rather than once per panel of GR: v1 read the whole input
 * matrix (512 x 2048 floats, 4 MB, beyond L2) for every 32 rows. The sums of
 * the block build up in a buffer of rows YS apart (in L2) and are copied out
 * once: OUT's rows are the matrix's length apart (2048 or 8192 floats, a
 * multiple of 4 KB), so adding into them directly kept 512 tokens' lines in
 * a few sets of L2 and of L1, and a 2048-row product ran at half the speed
 * of a 512-row one. */
static inline __attribute__((always_inline)) void
gemm_blocked(gemm_tile_fn *tile, int tr, int gtn, const struct quant_type *tt, const unsigned char *w,
             size_t row_bytes, int64_t rows, int64_t k, const float *x, size_t xstr, int n, float *out,
             size_t os, float *scratch)
{
    float *slab = scratch, *tmp = slab + (size_t)MC * KC, *xt = tmp + 4 * (size_t)KC;
    float *ybuf = xt + (size_t)GT * XS;
    for (int64_t m0 = 0; m0 < rows; m0 += MC) {
        int mr = rows - m0 < MC ? (int)(rows - m0) : MC;
        int np = (mr + GR - 1) / GR;
        for (int b0 = 0; b0 < n; b0 += NB) {
            int nb = n - b0 < NB ? n - b0 : NB;
            for (int64_t k0 = 0; k0 < k; k0 += KC) {
                int kc = k - k0 < KC ? (int)(k - k0) : KC;
                /* k0 is whole blocks, so the slab starts at a block's bytes. */
                size_t kb = (size_t)(k0 / tt->blck) * tt->size;
                for (int p = 0; p < np; p++) {
                    int nr = mr - p * GR < GR ? mr - p * GR : GR;
                    pack_panel(tt, w + (size_t)(m0 + p * GR) * row_bytes + kb, row_bytes, nr, kc, tmp,
                               slab + (size_t)p * GR * KC);
                }
                for (int t0 = 0; t0 < nb; t0 += gtn) {
                    int nt = nb - t0 < gtn ? nb - t0 : gtn;
                    for (int t = 0; t < nt; t++)
                        memcpy(xt + (size_t)t * XS, x + (size_t)(b0 + t0 + t) * xstr + (size_t)k0,
                               sizeof(float) * (size_t)kc);
                    for (int p = 0; p < np; p++) {
                        /* rows past the last of a partial panel are zeros */
                        for (int r0 = 0; r0 < GR && p * GR + r0 < mr; r0 += tr) {
                            float *y = ybuf + (size_t)t0 * YS + (size_t)(p * GR + r0);
                            const float *pp = slab + (size_t)p * GR * KC + r0;
                            for (int kk = 0; kk < kc; kk += GK) {
                                int kn = kc - kk < GK ? kc - kk : GK;
                                tile(pp + (size_t)kk * GR, xt + kk, kn, nt, y, k0 + kk == 0);
                            }
                        }
                    }
                }
            }
            for (int t = 0; t < nb; t++)
                memcpy(out + (size_t)(b0 + t) * os + (size_t)m0, ybuf + (size_t)t * YS,
                       sizeof(float) * (size_t)mr);
        }
    }
}

GEMM_TARGET static void gemm_avx512(const struct quant_type *tt, const unsigned char *w, size_t row_bytes,
                                    int64_t rows, int64_t k, const float *x, size_t xstr, int n, float *out,
                                    size_t os, float *scratch)
{
    gemm_blocked(tile512_n, GR, GT, tt, w, row_bytes, rows, k, x, xstr, n, out, os, scratch);
}

static void gemm_avx2(const struct quant_type *tt, const unsigned char *w, size_t row_bytes, int64_t rows,
                      int64_t k, const float *x, size_t xstr, int n, float *out, size_t os, float *scratch)
{
    gemm_blocked(tile2_n, 16, GT2, tt, w, row_bytes, rows, k, x, xstr, n, out, os, scratch);
}

#endif /* GEMM_X86 */

bool quant_gemm(const void *w, size_t row_bytes, int64_t rows, const struct quant_act *acts, int n,
                float *out, size_t out_stride, void *scratch)
{
    if (n < GEMM_MIN_TOKENS || rows <= 0 || !scratch || quant_isa() < QUANT_ISA_AVX2)
        return false;
    const struct quant_type *tt = quant_type_row(acts[0].wtype);
    int64_t k = acts[0].n;
    if (!tt || !tt->dequant || k <= 0 || k % 32 != 0 || k % tt->blck != 0 || KC % tt->blck != 0 ||
        row_bytes < quant_row_size(acts[0].wtype, k))
        return false;
    /* One matrix of inputs: the same length, evenly spaced (cpu.c's normed
     * rows are; a mixture's gathered tokens are not). */
    const float *x = acts[0].f32;
    ptrdiff_t xs = n > 1 ? acts[1].f32 - x : 0;
    if (xs < k)
        return false;
    for (int t = 1; t < n; t++)
        if (acts[t].n != k || acts[t].wtype != acts[0].wtype || acts[t].f32 != x + (ptrdiff_t)t * xs)
            return false;
#ifdef GEMM_X86
    if (quant_isa() >= QUANT_ISA_AVX512)
        gemm_avx512(tt, w, row_bytes, rows, k, x, (size_t)xs, n, out, out_stride, scratch);
    else
        gemm_avx2(tt, w, row_bytes, rows, k, x, (size_t)xs, n, out, out_stride, scratch);
    return true;
#else
    (void)w;
    (void)out;
    (void)out_stride;
    return false;
#endif
}
