/* gemm.c - quant_gemm, the batched weight product of prefill: a panel of
 * weight rows dequantised to floats once, then multiplied with every token of
 * the batch by a register-blocked AVX-512 kernel. cpu.c's matrix products
 * call it for batches; quant_dot_n (dot_avx2.c) is what runs where it does
 * not apply.
 *
 * Why: quant_dot_n dequantises each block once per 8 tokens and keeps one
 * accumulator per token, so every FMA needs a load of X and the decode of
 * the weights is repeated 64 times over a 512-token prompt. Here a panel of
 * GR rows is decoded once per batch (exactly: the same floats as
 * quant_dequantize_row) into a k-major layout, so one 512-bit register holds
 * one weight of 16 rows; the kernel broadcasts one input of each of GT
 * tokens and does 2*GT FMAs per k from 2 loads of the panel; each group of
 * GT tokens runs over the whole panel (in L2) before the next.
 *
 * Rules:
 * - Activations stay float; the weights are the reference decoder's floats.
 * - Every output is summed in one fixed order: an FMA chain from zero over
 *   each block of GK values of k, the blocks' sums added to OUT in k order.
 *   So a token's result depends on nothing but its row and input, never on
 *   the batch size, the tile, or the thread (the model tests compare bits).
 *   (One chain over the whole row was 2e-4 off on a 1280-long Q6_K row with
 *   outliers, over the 1e-6 of sum |w*x| quant_dot_n keeps; chains of GK
 *   stay within it, as quant_dot_n's 8 lanes of K/8 do.)
 * - AVX-512 code is compiled per function (GEMM_TARGET) and runs only when
 *   quant_isa() says so; the file builds anywhere.
 */
#include "quant_internal.h"

#if defined(__x86_64__) && defined(QUANT_HAVE_AVX2)
#define GEMM_AVX512 1
#endif

enum {
    GR = 32,  /* rows of a panel: two 512-bit vectors */
    GT = 12,  /* tokens per micro-tile: 24 accumulators of the 32 registers */
    GK = 128, /* k per block: GK * GR floats (16 KB) stay in L1 */
    /* Below this many tokens the decode of a panel costs more than the
     * register blocking saves; quant_dot_n runs instead. */
    GEMM_MIN_TOKENS = 16,
};

/* The panel (GR * k floats), a decode buffer of 4 rows (4 * k floats) and
 * the micro-tile's inputs (GT * GK floats). */
size_t quant_gemm_scratch(int64_t k)
{
    if (k <= 0)
        return 0;
    return ((size_t)(GR + 4) * (size_t)k + (size_t)GT * GK) * sizeof(float);
}

#ifdef GEMM_AVX512

#define GEMM_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma")))
#define GEMM_INLINE static inline __attribute__((always_inline)) GEMM_TARGET

/* NR (<= GR) rows of TT, ROW_BYTES apart from W, of K elements (a multiple of
 * 32), into PANEL[k * GR + r]; rows NR..GR-1 are zero. Four rows at a time
 * are decoded into TMP (4 * k floats) and transposed 4 x 4 into place. */
static void pack_panel(const struct quant_type *tt, const unsigned char *w, size_t row_bytes, int nr,
                       int64_t k, float *tmp, float *panel)
{
    for (int r0 = 0; r0 < GR; r0 += 4) {
        for (int j = 0; j < 4; j++) {
            float *dst = tmp + (size_t)j * k;
            if (r0 + j >= nr)
                memset(dst, 0, sizeof(float) * (size_t)k);
            else if (tt->deq_fast)
                tt->deq_fast(w + (size_t)(r0 + j) * row_bytes, k / 32, dst);
            else
                tt->dequant(w + (size_t)(r0 + j) * row_bytes, dst, k / tt->blck);
        }
        for (int64_t i = 0; i < k; i += 4) {
            __m128 a = _mm_loadu_ps(tmp + i), b = _mm_loadu_ps(tmp + k + i);
            __m128 c = _mm_loadu_ps(tmp + 2 * k + i), d = _mm_loadu_ps(tmp + 3 * k + i);
            _MM_TRANSPOSE4_PS(a, b, c, d);
            float *p = panel + (size_t)i * GR + r0;
            _mm_storeu_ps(p, a);
            _mm_storeu_ps(p + GR, b);
            _mm_storeu_ps(p + 2 * GR, c);
            _mm_storeu_ps(p + 3 * GR, d);
        }
    }
}

/* One micro-tile: NT (a constant after inlining) tokens, X their inputs at
 * k0 (copied, row stride GK), times the panel block P (KC values of k), into Y (row
 * stride YS) masked to the panel's rows M0 | M1. FIRST: the block's sums
 * are stored; otherwise they are added to Y. */
GEMM_INLINE void tile(const float *p, const float *x, int kc, int nt, float *y, size_t ys,
                      __mmask16 m0, __mmask16 m1, bool first)
{
    __m512 a0[GT], a1[GT];
    for (int t = 0; t < nt; t++) {
        a0[t] = _mm512_setzero_ps();
        a1[t] = _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        __m512 w0 = _mm512_load_ps(p + (size_t)k * GR), w1 = _mm512_load_ps(p + (size_t)k * GR + 16);
        for (int t = 0; t < nt; t++) {
            __m512 b = _mm512_set1_ps(x[t * GK + k]);
            a0[t] = _mm512_fmadd_ps(w0, b, a0[t]);
            a1[t] = _mm512_fmadd_ps(w1, b, a1[t]);
        }
    }
    for (int t = 0; t < nt && !first; t++) {
        a0[t] = _mm512_add_ps(a0[t], _mm512_maskz_loadu_ps(m0, y + (size_t)t * ys));
        a1[t] = _mm512_add_ps(a1[t], _mm512_maskz_loadu_ps(m1, y + (size_t)t * ys + 16));
    }
    for (int t = 0; t < nt; t++) {
        _mm512_mask_storeu_ps(y + (size_t)t * ys, m0, a0[t]);
        _mm512_mask_storeu_ps(y + (size_t)t * ys + 16, m1, a1[t]);
    }
}

/* tile for a runtime NT in 1..GT, each count its own register allocation. */
GEMM_TARGET static void tile_n(const float *p, const float *x, int kc, int nt, float *y, size_t ys,
                               __mmask16 m0, __mmask16 m1, bool first)
{
    switch (nt) {
#define T_(n)                                                                                      \
    case n: tile(p, x, kc, n, y, ys, m0, m1, first); break;
        T_(1) T_(2) T_(3) T_(4) T_(5) T_(6) T_(7) T_(8) T_(9) T_(10) T_(11)
#undef T_
    default: tile(p, x, kc, GT, y, ys, m0, m1, first); break;
    }
}

/* ROWS rows times N tokens (X row stride XS), as the header says. */
GEMM_TARGET static void gemm_avx512(const struct quant_type *tt, const unsigned char *w, size_t row_bytes,
                                    int64_t rows, int64_t k, const float *x, size_t xs, int n, float *out,
                                    size_t os, float *scratch)
{
    float *panel = scratch, *tmp = scratch + (size_t)GR * k, *xt = tmp + 4 * (size_t)k;
    for (int64_t r0 = 0; r0 < rows; r0 += GR) {
        int nr = rows - r0 < GR ? (int)(rows - r0) : GR;
        pack_panel(tt, w + (size_t)r0 * row_bytes, row_bytes, nr, k, tmp, panel);
        __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
        __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
        /* Token groups outside, k-blocks inside: each token's input is read
         * front to back, which the prefetchers follow, while the panel
         * (GR * k floats, in L2) passes under every group. The other order
         * kept a panel block in L1 but jumped between 512 input rows for
         * every block, which waits on L3 once the inputs outgrow L2
         * (512 x 2048 floats are 4 MB): on a loaded machine a 2048-wide
         * product ran several times slower per FLOP than a 640-wide one. */
        for (int t0 = 0; t0 < n; t0 += GT) {
            int nt = n - t0 < GT ? n - t0 : GT;
            for (int64_t k0 = 0; k0 < k; k0 += GK) {
                int kc = k - k0 < GK ? (int)(k - k0) : GK;
                /* The tile's inputs copied GK apart: rows of 2048 or 8192
                 * floats are a multiple of 4 KB apart, so GT of them would
                 * fall in the same L1 sets and evict each other. */
                for (int t = 0; t < nt; t++)
                    memcpy(xt + (size_t)t * GK, x + (size_t)(t0 + t) * xs + (size_t)k0,
                           sizeof(float) * (size_t)kc);
                tile_n(panel + (size_t)k0 * GR, xt, kc, nt, out + (size_t)t0 * os + (size_t)r0, os, m0, m1,
                       k0 == 0);
            }
        }
    }
}

#endif /* GEMM_AVX512 */

bool quant_gemm(const void *w, size_t row_bytes, int64_t rows, const struct quant_act *acts, int n,
                float *out, size_t out_stride, void *scratch)
{
    if (n < GEMM_MIN_TOKENS || rows <= 0 || !scratch || quant_isa() < QUANT_ISA_AVX512)
        return false;
    const struct quant_type *tt = quant_type_row(acts[0].wtype);
    int64_t k = acts[0].n;
    if (!tt || !tt->dequant || k <= 0 || k % 32 != 0 || k % tt->blck != 0 ||
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
#ifdef GEMM_AVX512
    gemm_avx512(tt, w, row_bytes, rows, k, x, (size_t)xs, n, out, out_stride, scratch);
    return true;
#else
    (void)w;
    (void)out;
    (void)out_stride;
    return false;
#endif
}
