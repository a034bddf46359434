/* test_kernels.cpp - every CUDA kernel of kernels/ alone, through its
 * launcher, against a double-precision CPU reference written here, over
 * shapes that are not multiples of the block size. Built as
 * test_kernels_emu, on the device emulator (tests/emu/), so it runs in every
 * build; a case also fails when the emulator reported a misuse.
 *
 * Tolerances (relative to the largest reference value), one per op:
 *   add, bias, glu, rmsnorm, rope, get_rows, matvec: 1e-5 (f32 math, the
 *     reference in double; rope's sin/cos are double on both sides);
 *   matvec with the RMSNorm fused: 1e-5, against the double reference and
 *     against rmsnorm then matvec (the sums of squares differ in order);
 *   three matvecs in one launch: bit-equal to the three apart, 1e-5;
 *   expert-indexed matvecs (plain and GLU): bit-equal to the dense kernel
 *     on the chosen expert's matrix, 1e-5 against the double reference;
 *   router top-k: the ids equal model_moe_select's (ties included) under
 *     every gating; the weights within 1e-6 relative each (the softmax sum
 *     is double on both sides, added in another order; sigmoid and the
 *     softmax over the picks are cpu.c's loops: an ulp of the float at
 *     most, before and after the renormalisation and the scale);
 *   expert sum: 1e-5;
 *   matvec with the GLU fused: bit-equal to gate, up and glu apart;
 *     1e-5 of max|g u| against the double reference (test_matvec_glu);
 *   kv_store: the half rounding, 2^-11 relative per element;
 *   kv_store q8_0: codes and scales equal to the host Q8_0 quantiser's
 *     (the same IEEE operations), each element within half a step of its
 *     input (1/254 of its block's largest, 1% more for the f16 scale);
 *     rotated K (rope_store q8_0) the same against the double rotation;
 *   decode attention q8_0: 1e-5 against the double reference over the
 *     same dequantised cache (d x code is exact in f32);
 *   prefill q8_0: the tile gather equal to bf16 of the dequantised cache,
 *     the whole pass as the f16 cache's (TOL_PREFILL of max|V|);
 *   f32 -> bf16, dequant -> bf16, the prefill attention's Q/K/V gathers:
 *     the bf16 rounding, 2^-8 relative per element (8 significant bits,
 *     round to nearest even: half an ulp);
 *   repack read back (get_rows at scale 1): 0, the file's values exactly;
 *   decode attention: 1e-5 (the reference reads the same f16 K/V; f32
 *     softmax and sums vs double, up to 4097 keys);
 *   prefill softmax tile: P = exp(s - m) <= 1 is stored as bf16, so 2^-8;
 *     the running sum l adds the rounded P, so it too is within 2^-8 of the
 *     double sum of exact ones; m and the rescaled accumulator 1e-5;
 *   prefill finish: 1e-5 (one division);
 *   prefill attention, whole: against the double reference fed the same
 *     bf16-rounded Q, K and V, the only rounding left is P's. Each weight
 *     w_j becomes w_j (1 + e_j), |e_j| <= u = 2^-8, and l sums the rounded
 *     weights, so the output stays a convex combination of the V rows:
 *     |out' - out| <= u max|v - out| / (1 - u) <= 2u max|V| (1 + u), about
 *     2^-7 of max|V| (checked against max|V|, not max|out|).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

extern "C" {
#include <cmocka.h>
}

#include "cuda_common.h"
extern "C" {
#include "model.h"
#include "sampler.h"
}
#include "wformat.cuh"

#define TOL_F32 1e-5
#define TOL_HALF (1.0 / 2048)
#define TOL_BF16 (1.0 / 256)
#define TOL_PREFILL (1.0 / 128)
#define TOL_ATTN 1e-5

static uint64_t rng = 12345;
static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static std::vector<float> randv(size_t n)
{
    std::vector<float> v(n);
    for (float &x : v)
        x = frand();
    return v;
}

template <class T> static T *dev(const std::vector<T> &h)
{
    T *d = nullptr;
    assert_int_equal(cudaMalloc((void **)&d, h.size() * sizeof(T)), cudaSuccess);
    assert_int_equal(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice),
                     cudaSuccess);
    return d;
}
template <class T> static std::vector<T> host(const T *d, size_t n)
{
    std::vector<T> h(n);
    assert_int_equal(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost),
                     cudaSuccess);
    return h;
}

/* Largest |a - ref| over the largest |ref|; fails on NaN. */
static double rel_err(const float *a, const double *ref, size_t n)
{
    double worst = 0, scale = 1e-30;
    for (size_t i = 0; i < n; i++)
        scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
    for (size_t i = 0; i < n; i++) {
        if (!(fabs(a[i] - ref[i]) <= 1e300))
            return INFINITY;
        double e = fabs(a[i] - ref[i]) / scale;
        worst = e > worst ? e : worst;
    }
    return worst;
}

static void check(const char *what, const float *a, const double *ref, size_t n, double tol)
{
    double e = rel_err(a, ref, n);
    printf("%-34s %.2e (tol %.0e)\n", what, e, tol);
    if (!(e <= tol))
        fail_msg("%s: error %.3e over %.0e", what, e, tol);
    if (kvemu_report_count())
        fail_msg("%s: device emulator: %s", what, kvemu_last_report());
}

static std::vector<float> halves(const std::vector<__half> &h)
{
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); i++)
        f[i] = __half2float(h[i]);
    return f;
}

static void test_add(void **state)
{
    (void)state;
    const int64_t nrows = 3, n = 333; /* 999 elements: not a multiple of 256 */
    auto y = randv(nrows * n), a = randv(nrows * n), b = randv(n);
    float *dy = dev(y), *da = dev(a), *db = dev(b);
    assert_int_equal(kv_add(dy, da, nrows * n, 0), cudaSuccess);
    assert_int_equal(kv_add_bias(dy, db, nrows, (int32_t)n, 0), cudaSuccess);
    std::vector<double> ref(y.size());
    for (size_t i = 0; i < y.size(); i++)
        ref[i] = (double)y[i] + a[i] + b[i % n];
    check("add + bias (3 x 333)", host(dy, y.size()).data(), ref.data(), ref.size(), TOL_F32);
    cudaFree(dy), cudaFree(da), cudaFree(db);
}

static void test_glu(void **state)
{
    (void)state;
    for (int gelu = 0; gelu < 2; gelu++) {
        const int64_t n = 517;
        auto g = randv(n), u = randv(n);
        for (float &x : g)
            x *= 4.0f;
        float *dg = dev(g), *du = dev(u);
        assert_int_equal(kv_glu(dg, du, n, gelu, 0), cudaSuccess);
        std::vector<double> ref(n);
        for (int64_t i = 0; i < n; i++) {
            double x = g[i];
            double act = gelu ? 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
                              : x / (1 + exp(-x));
            ref[i] = act * u[i];
        }
        check(gelu ? "glu gelu (517)" : "glu silu (517)", host(dg, n).data(), ref.data(), n,
              TOL_F32);
        cudaFree(dg), cudaFree(du);
    }
}

/* gpt-oss's clamped SwiGLU against cpu.c's glu_clamped in double: gates
 * and ups to 3 times past the limit both ways, and exactly on it. */
static void test_glu_clamp(void **state)
{
    (void)state;
    const int64_t n = 517;
    const float alpha = 1.702f, limit = 7.0f;
    auto g = randv(n), u = randv(n);
    for (float &x : g)
        x *= 21.0f;
    for (float &x : u)
        x *= 21.0f;
    g[0] = limit, g[1] = -limit, u[2] = limit, u[3] = -limit;
    int over = 0;
    for (int64_t i = 0; i < n; i++)
        over += g[i] > limit || u[i] > limit || u[i] < -limit;
    assert_true(over > n / 2); /* the clamp is what is being tested */
    float *dg = dev(g), *du = dev(u);
    assert_int_equal(kv_glu_clamp(dg, du, n, alpha, limit, 0), cudaSuccess);
    std::vector<double> ref(n);
    for (int64_t i = 0; i < n; i++) {
        double x = g[i] < limit ? g[i] : limit;
        double y = u[i] < -limit ? -limit : u[i] > limit ? limit : u[i];
        ref[i] = x / (1 + exp(-(double)alpha * x)) * (y + 1);
    }
    check("glu clamped (517, to 3x the limit)", host(dg, n).data(), ref.data(), n, TOL_F32);
    cudaFree(dg), cudaFree(du);
}

static std::vector<float> bf16s(const std::vector<__nv_bfloat16> &h)
{
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); i++)
        f[i] = __bfloat162float(h[i]);
    return f;
}
static float bf16_round(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

/* Largest |a - ref| / |ref| per element (ref 0: |a|). */
static double elem_rel_err(const float *a, const double *ref, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - ref[i]), r = fabs(ref[i]);
        double e = r > 0 ? d / r : d;
        if (!(e <= 1e300))
            return INFINITY;
        worst = e > worst ? e : worst;
    }
    return worst;
}

static void test_convert(void **state)
{
    (void)state;
    /* Every other value past f16's 65504 (up to 1e6): bf16 keeps f32's
     * range, so each element is within half an ulp of itself. */
    const int64_t n = 1001;
    auto x = randv(n);
    for (int64_t i = 0; i < n; i += 2)
        x[i] *= 1e6f;
    float *dx = dev(x);
    std::vector<__nv_bfloat16> z(n);
    __nv_bfloat16 *dy = dev(z);
    assert_int_equal(kv_f32_to_bf16(dx, dy, n, 0), cudaSuccess);
    std::vector<double> ref(x.begin(), x.end());
    auto got = bf16s(host(dy, n));
    double e = elem_rel_err(got.data(), ref.data(), n);
    printf("%-34s %.2e (tol %.0e)\n", "f32 -> bf16 (1001, to 1e6)", e, TOL_BF16);
    if (!(e <= TOL_BF16))
        fail_msg("f32 -> bf16: error %.3e", e);
    check("f32 -> bf16 (1001, to 1e6), vs max", got.data(), ref.data(), n, TOL_BF16);
    cudaFree(dx), cudaFree(dy);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    const int64_t nrows = 5;
    const int32_t n = 300; /* rows longer than a block of 256, not a multiple */
    auto x = randv(nrows * n), w = randv(n), add = randv(nrows * n);
    float *dx = dev(x), *dw = dev(w), *da = dev(add);
    std::vector<float> y0(nrows * n);
    float *dy = dev(y0);
    assert_int_equal(kv_rmsnorm(dx, dw, da, dy, nrows, n, 1e-6f, 0), cudaSuccess);
    /* In place (Y = X), no residual. */
    assert_int_equal(kv_rmsnorm(dx, dw, nullptr, dx, nrows, n, 1e-6f, 0), cudaSuccess);
    std::vector<double> ref(nrows * n), ref2(nrows * n);
    for (int64_t r = 0; r < nrows; r++) {
        double ss = 0;
        for (int32_t i = 0; i < n; i++)
            ss += (double)x[r * n + i] * x[r * n + i];
        double inv = 1.0 / sqrt(ss / n + 1e-6);
        for (int32_t i = 0; i < n; i++) {
            ref2[r * n + i] = x[r * n + i] * inv * w[i];
            ref[r * n + i] = ref2[r * n + i] + add[r * n + i];
        }
    }
    check("rmsnorm + residual (5 x 300)", host(dy, ref.size()).data(), ref.data(), ref.size(),
          TOL_F32);
    check("rmsnorm in place (5 x 300)", host(dx, ref.size()).data(), ref2.data(), ref.size(),
          TOL_F32);
    cudaFree(dx), cudaFree(dw), cudaFree(da), cudaFree(dy);
}

static void test_rope(void **state)
{
    (void)state;
    /* MS: YaRN's factor on cos and sin (1: none); with it the speeds are a
     * YaRN-like table, the low pairs slowed by the factor 32 */
    for (int mode = 0; mode < 4; mode++) {
        const bool neox = mode & 1;
        const float ms = mode & 2 ? 1.3466f : 1.0f;
        const int32_t nt = 3, nh = 5, hd = 24, nrot = 20, pos0 = 7;
        auto x = randv((size_t)nt * nh * hd);
        std::vector<float> inv(nrot / 2);
        for (int i = 0; i < nrot / 2; i++)
            inv[i] = (float)(pow(10000.0, -2.0 * i / nrot) / (mode & 2 && i < 3 ? 32.0 : 1.0));
        float *dx = dev(x), *di = dev(inv);
        assert_int_equal(kv_rope(dx, nt, nh, hd, nrot, pos0, di, ms, neox, 0), cudaSuccess);
        std::vector<double> ref(x.begin(), x.end());
        for (int32_t t = 0; t < nt; t++)
            for (int32_t h = 0; h < nh; h++)
                for (int i = 0; i < nrot / 2; i++) {
                    double *v = &ref[((size_t)t * nh + h) * hd];
                    int i0 = neox ? i : 2 * i, i1 = neox ? i + nrot / 2 : 2 * i + 1;
                    double ang = (double)(pos0 + t) * inv[i];
                    double a = v[i0], b = v[i1];
                    const double c = (float)cos(ang) * ms, sn = (float)sin(ang) * ms;
                    v[i0] = a * c - b * sn;
                    v[i1] = a * sn + b * c;
                }
        char what[64];
        snprintf(what, sizeof what, "rope%s (3 x 5 x 24, 20 rotated) x %g", neox ? " neox" : "",
                 ms);
        check(what, host(dx, x.size()).data(), ref.data(), ref.size(), TOL_F32);
        cudaFree(dx), cudaFree(di);
    }
}

static void test_kv_store(void **state)
{
    (void)state;
    const int32_t nt = 3, nkv = 2, hd = 14, pos0 = 4, nctx = 9;
    auto k = randv((size_t)nt * nkv * hd), v = randv((size_t)nt * nkv * hd);
    std::vector<__half> z((size_t)nkv * nctx * hd, __float2half_rn(0.0f));
    float *dk = dev(k), *dv = dev(v);
    __half *kc = dev(z), *vc = dev(z);
    assert_int_equal(kv_store_kv(dk, dv, kc, vc, nt, nkv, hd, pos0, nctx, 0), cudaSuccess);
    std::vector<double> rk(z.size(), 0.0), rv(z.size(), 0.0);
    for (int32_t t = 0; t < nt; t++)
        for (int32_t h = 0; h < nkv; h++)
            for (int32_t d = 0; d < hd; d++) {
                size_t o = ((size_t)h * nctx + pos0 + t) * hd + d;
                rk[o] = k[((size_t)t * nkv + h) * hd + d];
                rv[o] = v[((size_t)t * nkv + h) * hd + d];
            }
    check("kv_store K (3 tokens at 4 of 9)", halves(host(kc, z.size())).data(), rk.data(),
          z.size(), TOL_HALF);
    check("kv_store V", halves(host(vc, z.size())).data(), rv.data(), z.size(), TOL_HALF);
    cudaFree(dk), cudaFree(dv), cudaFree(kc), cudaFree(vc);
}

/* The fused decode-step RoPE + KV store at a device position against the
 * unfused reference (rotate Q and K, store K and V as f16): Q exactly as
 * test_rope's reference (same double angle), the cache within f16 rounding.
 * Shapes: 20 of 24 dims rotated (unrotated K dims copied), GQA 5 over 2
 * heads, two tokens (the step's count is 1, the kernel takes more). */
static void test_rope_store(void **state)
{
    (void)state;
    for (int mode = 0; mode < 4; mode++) {
        const bool neox = mode & 1;
        const float ms = mode & 2 ? 1.3466f : 1.0f; /* YaRN's factor on cos and sin */
        const int32_t nt = 2, nh = 5, nkv = 2, hd = 24, nrot = 20, pos0 = 6, nctx = 11;
        auto q = randv((size_t)nt * nh * hd), k = randv((size_t)nt * nkv * hd),
             v = randv((size_t)nt * nkv * hd);
        std::vector<float> inv(nrot / 2);
        for (int i = 0; i < nrot / 2; i++)
            inv[i] = (float)pow(10000.0, -2.0 * i / nrot);
        std::vector<__half> z((size_t)nkv * nctx * hd, __float2half_rn(0.0f));
        std::vector<int32_t> pos = {pos0};
        float *dq = dev(q), *dk = dev(k), *dv = dev(v), *di = dev(inv);
        __half *kc = dev(z), *vc = dev(z);
        int32_t *dp = dev(pos);
        assert_int_equal(kv_rope_store(dq, dk, dv, kc, vc, nt, nh, nkv, hd, nrot, dp, nctx, di,
                                       ms, neox, 0),
                         cudaSuccess);
        auto rot = [&](std::vector<double> &x, int32_t nhead) {
            for (int32_t t = 0; t < nt; t++)
                for (int32_t h = 0; h < nhead; h++)
                    for (int i = 0; i < nrot / 2; i++) {
                        double *r = &x[((size_t)t * nhead + h) * hd];
                        int i0 = neox ? i : 2 * i, i1 = neox ? i + nrot / 2 : 2 * i + 1;
                        double ang = (double)(pos0 + t) * inv[i];
                        double a = r[i0], b = r[i1];
                        const double c = (float)cos(ang) * ms, sn = (float)sin(ang) * ms;
                        r[i0] = a * c - b * sn;
                        r[i1] = a * sn + b * c;
                    }
        };
        std::vector<double> rq(q.begin(), q.end()), rk(k.begin(), k.end());
        rot(rq, nh);
        rot(rk, nkv);
        std::vector<double> ck(z.size(), 0.0), cv(z.size(), 0.0);
        for (int32_t t = 0; t < nt; t++)
            for (int32_t h = 0; h < nkv; h++)
                for (int32_t d = 0; d < hd; d++) {
                    size_t o = ((size_t)h * nctx + pos0 + t) * hd + d;
                    ck[o] = rk[((size_t)t * nkv + h) * hd + d];
                    cv[o] = v[((size_t)t * nkv + h) * hd + d];
                }
        check(neox ? (ms != 1.0f ? "rope_store neox Q, mscale" : "rope_store neox Q")
                   : (ms != 1.0f ? "rope_store Q, mscale" : "rope_store Q"),
              host(dq, q.size()).data(), rq.data(), rq.size(), TOL_F32);
        check("rope_store K cache", halves(host(kc, z.size())).data(), ck.data(), z.size(),
              TOL_HALF);
        check("rope_store V cache", halves(host(vc, z.size())).data(), cv.data(), z.size(),
              TOL_HALF);
        /* K itself is left unrotated: the cache holds the rotated copy */
        std::vector<double> k0(k.begin(), k.end());
        check("rope_store K untouched", host(dk, k.size()).data(), k0.data(), k0.size(), 0.0);
        cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(di), cudaFree(kc), cudaFree(vc);
        cudaFree(dp);
    }
}

/* The device sampler against sampler.c on the same logits and the same
 * uniform draw (the host twin of the same seed draws it through
 * sampler_plan, as the engine does): many random vectors over vocabularies
 * that are not a multiple of the first pass's slice (one block, several,
 * a last block shorter than top_k), greedy and sampled, with ties (logits
 * rounded to a coarse grid so many are equal), -inf masks, the repetition
 * penalty, and top-p / min-p at their edges (0, 1, and just above one
 * candidate's mass). Exact: the same token every time. */
static void test_sample(void **state)
{
    (void)state;
    static const int32_t vocabs[] = {7, 300, 4096 + 5, 3 * 4096 + 2};
    static const struct {
        float temperature;
        int32_t top_k;
        float top_p, min_p, penalty;
    } modes[] = {
        {0.0f, 40, 0.95f, 0.05f, 1.0f},  {0.0f, 40, 0.95f, 0.05f, 1.3f},
        {0.7f, 40, 0.95f, 0.05f, 1.1f},  {1.0f, 1, 1.0f, 0.0f, 1.0f},
        {2.0f, 128, 1.0f, 0.0f, 1.0f},   {1.3f, 17, 0.0f, 0.0f, 1.2f},
        {0.9f, 5, 0.5f, 0.3f, 1.0f},     {5.0f, 64, 0.999f, 0.0f, 0.9f},
    };
    int cases = 0, off_top = 0;
    for (int32_t V : vocabs) {
        std::vector<float> lg((size_t)V), work((size_t)V);
        float *dl = nullptr;
        void *tmp = nullptr;
        kv_sample_in *din = nullptr;
        int32_t *dout = nullptr;
        assert_int_equal(cudaMalloc((void **)&dl, lg.size() * sizeof(float)), cudaSuccess);
        assert_int_equal(cudaMalloc(&tmp, kv_sample_scratch_bytes(V)), cudaSuccess);
        assert_int_equal(cudaMalloc((void **)&din, sizeof *din), cudaSuccess);
        assert_int_equal(cudaMalloc((void **)&dout, 2 * sizeof(int32_t)), cudaSuccess);
        for (const auto &md : modes) {
            if (md.temperature > 0 && md.top_k >= V)
                continue; /* the host's full-vocabulary path, not the device's */
            engine_sampling sp = engine_sampling_defaults();
            sp.temperature = md.temperature;
            sp.top_k = md.top_k;
            sp.top_p = md.top_p;
            sp.min_p = md.min_p;
            sp.repeat_penalty = md.penalty;
            sp.repeat_last_n = 8;
            sp.seed = (uint64_t)V * 31 + (uint64_t)cases;
            sampler *hs = sampler_new(V, &sp), *ps = sampler_new(V, &sp);
            assert_non_null(hs);
            assert_non_null(ps);
            for (int rep = 0; rep < 12; rep++) {
                const int shape = rep % 4;
                for (int32_t i = 0; i < V; i++) {
                    float x = 4.0f * frand();
                    if (shape == 1)
                        x = roundf(x * 2.0f) / 2.0f; /* coarse grid: many ties */
                    if (shape == 2)
                        x = (i % 3) ? -INFINITY : x; /* masked tokens */
                    if (shape == 3)
                        x = i < 3 ? 9.0f : x; /* a tie at the top, one mass-heavy pair */
                    lg[(size_t)i] = x;
                }
                /* history: a few ids, repeated, for the penalty */
                for (int h = 0; h < 5; h++) {
                    int32_t id = (int32_t)((rep * 7 + h * 3) % V);
                    sampler_accept(hs, id);
                    sampler_accept(ps, id);
                }
                backend_sample bs;
                assert_int_equal(sampler_plan(ps, &bs), 0);
                kv_sample_in in;
                memset(&in, 0, sizeof in);
                in.temperature = bs.temperature;
                in.top_p = bs.top_p;
                in.min_p = bs.min_p;
                in.penalty = bs.repeat_penalty;
                in.top_k = bs.top_k;
                in.n_pen = bs.n_pen;
                in.u = bs.u;
                memcpy(in.pen, bs.pen, sizeof(int32_t) * (size_t)bs.n_pen);
                assert_int_equal(cudaMemcpy(din, &in, sizeof in, cudaMemcpyHostToDevice),
                                 cudaSuccess);
                assert_int_equal(cudaMemcpy(dl, lg.data(), lg.size() * sizeof(float),
                                            cudaMemcpyHostToDevice),
                                 cudaSuccess);
                assert_int_equal(kv_sample(dl, V, din, tmp, dout, 0), cudaSuccess);
                std::vector<int32_t> got = host(dout, 2);
                work = lg;
                int32_t want = sampler_sample(hs, work.data());
                int32_t best = 0;
                for (int32_t i = 1; i < V; i++)
                    best = work[(size_t)i] > work[(size_t)best] ? i : best;
                off_top += want != best;
                if (got[0] != want)
                    fail_msg("sample: vocab %d, T %.1f k %d p %.3f min_p %.2f pen %.1f, shape "
                             "%d: device %d, host %d",
                             V, md.temperature, md.top_k, md.top_p, md.min_p, md.penalty, shape,
                             got[0], want);
                assert_int_equal(got[1], sampler_saw_nonfinite(hs) ? 1 : 0);
                if (kvemu_report_count())
                    fail_msg("sample: device emulator: %s", kvemu_last_report());
                cases++;
            }
            sampler_free(hs);
            sampler_free(ps);
        }
        cudaFree(dl), cudaFree(tmp), cudaFree(din), cudaFree(dout);
    }
    printf("sample: %d cases equal to sampler.c (%d draws not the argmax)\n", cases, off_top);
    assert_true(off_top > cases / 10); /* the sampled modes do leave the argmax */
}

/* The formats added after the first tables (Q2_K, Q3_K, IQ4_NL, IQ4_XS,
 * MXFP4; listed last in every table) draw their weights and x from a
 * stream of their own, begun at their first case and dropped when the
 * loop ends, so every case before them and every later test keep the data
 * they had (a 1-row case's tolerance is relative to that one value). */
static bool late_type(ggml_type t)
{
    return t == GGML_TYPE_Q2_K || t == GGML_TYPE_Q3_K || t == GGML_TYPE_IQ4_NL ||
           t == GGML_TYPE_IQ4_XS || t == GGML_TYPE_MXFP4;
}
struct rng_fork {
    uint64_t saved = 0;
    bool on = false;
    void at(ggml_type t)
    {
        if (!on && late_type(t))
            saved = rng, rng = 0x2545F4914F6CDD1Dull, on = true;
    }
    void end()
    {
        if (on)
            rng = saved, on = false;
    }
    ~rng_fork() { end(); }
};

/* A weight matrix of TYPE, NROWS x NCOLS, random, on the device. */
struct wmat {
    kv_dmat m;
    std::vector<uint8_t> bytes;
    std::vector<float> deq; /* the reference's weights */
};
static void make_wmat(wmat *w, ggml_type type, int64_t nrows, int64_t ncols)
{
    size_t rb = quant_row_size(type, ncols);
    w->bytes.resize(rb * nrows);
    w->deq.resize((size_t)(nrows * ncols));
    for (int64_t r = 0; r < nrows; r++) {
        quant_random_row(type, w->bytes.data() + r * rb, ncols, 1.0f, &rng);
        quant_dequantize_row(type, w->bytes.data() + r * rb, w->deq.data() + r * ncols, ncols);
    }
    w->m.fmt = kv_wfmt_of(type, ncols);
    assert_int_not_equal(w->m.fmt, KV_WF_NONE);
    w->m.ggml_type = type;
    w->m.ncols = ncols;
    w->m.nrows = nrows;
    /* The device layout, as the backend's upload writes it. */
    w->m.row_bytes = kv_row_bytes(type, ncols);
    std::vector<uint8_t> packed(w->m.row_bytes * nrows);
    kv_repack_rows(w->m.fmt, w->bytes.data(), packed.data(), nrows, ncols, rb, w->m.row_bytes);
    w->m.d = dev(packed);
}

/* Types and row lengths: scalar f32 (37), vector f16, and blocks of 32 and
 * 256; row counts that leave the last block of 4 warps partly empty. The
 * staged float matvec (4 rows a warp, x staged 2048 floats at a time) also
 * gets rows longer than one chunk and not a multiple of its 256-element
 * span, and row counts not a multiple of 4, so a warp has rows past the end. */
static const struct {
    ggml_type type;
    int64_t ncols, nrows;
} k_mats[] = {
    {GGML_TYPE_F32, 37, 7},   {GGML_TYPE_F16, 40, 9},  {GGML_TYPE_BF16, 24, 5},
    {GGML_TYPE_Q4_0, 96, 6},  {GGML_TYPE_Q5_1, 64, 3}, {GGML_TYPE_Q8_0, 160, 11},
    {GGML_TYPE_Q4_K, 512, 5}, {GGML_TYPE_Q6_K, 256, 3}, {GGML_TYPE_Q4_1, 4128, 6},
    {GGML_TYPE_Q5_0, 224, 5}, {GGML_TYPE_Q5_K, 768, 7}, {GGML_TYPE_Q8_0, 2080, 9},
    {GGML_TYPE_Q4_K, 2304, 3}, {GGML_TYPE_Q6_K, 2560, 6},
    {GGML_TYPE_F16, 4104, 13}, {GGML_TYPE_BF16, 2056, 3}, {GGML_TYPE_F32, 2312, 9},
    {GGML_TYPE_Q2_K, 768, 7},  {GGML_TYPE_Q3_K, 2304, 5}, {GGML_TYPE_IQ4_NL, 2080, 9},
    {GGML_TYPE_IQ4_XS, 512, 3}, {GGML_TYPE_MXFP4, 160, 11}, {GGML_TYPE_Q2_K, 2560, 1},
    {GGML_TYPE_Q3_K, 256, 17},  {GGML_TYPE_IQ4_NL, 96, 6}, {GGML_TYPE_IQ4_XS, 4352, 6},
    {GGML_TYPE_MXFP4, 4128, 5},
};

static void test_matvec_dequant_get_rows(void **state)
{
    (void)state;
    rng_fork fork;
    for (const auto &t : k_mats) {
        fork.at(t.type);
        wmat w;
        make_wmat(&w, t.type, t.nrows, t.ncols);
        char what[80];
        auto x = randv((size_t)t.ncols), bias = randv((size_t)t.nrows),
             add = randv((size_t)t.nrows);
        float *dx = dev(x), *db = dev(bias), *dy = dev(add);
        /* Y = W x + bias + Y (the fused residual). */
        assert_int_equal(kv_matvec(&w.m, dx, db, dy, dy, 0), cudaSuccess);
        std::vector<double> ref((size_t)t.nrows);
        for (int64_t r = 0; r < t.nrows; r++) {
            double s = 0;
            for (int64_t c = 0; c < t.ncols; c++)
                s += (double)w.deq[r * t.ncols + c] * x[c];
            ref[r] = s + bias[r] + add[r];
        }
        snprintf(what, sizeof what, "matvec %s %lld x %lld", quant_type_name(t.type),
                 (long long)t.nrows, (long long)t.ncols);
        check(what, host(dy, (size_t)t.nrows).data(), ref.data(), ref.size(), TOL_F32);

        /* Rows 1.. as bf16, each element within half an ulp. */
        int64_t nr = t.nrows - 1;
        std::vector<__nv_bfloat16> z((size_t)(nr * t.ncols));
        __nv_bfloat16 *dh = dev(z);
        assert_int_equal(kv_dequant_bf16(&w.m, 1, nr, dh, 0), cudaSuccess);
        std::vector<double> rd(w.deq.begin() + t.ncols, w.deq.end());
        snprintf(what, sizeof what, "dequant bf16 %s rows 1..%lld", quant_type_name(t.type),
                 (long long)nr);
        auto got = bf16s(host(dh, z.size()));
        check(what, got.data(), rd.data(), rd.size(), TOL_BF16);
        assert_true(elem_rel_err(got.data(), rd.data(), rd.size()) <= TOL_BF16);

        /* Rows 2, 0, last, scaled. */
        std::vector<int32_t> ids = {2 % (int32_t)t.nrows, 0, (int32_t)t.nrows - 1};
        int32_t *di = dev(ids);
        std::vector<float> o(ids.size() * (size_t)t.ncols);
        float *dout = dev(o);
        assert_int_equal(kv_get_rows(&w.m, di, (int32_t)ids.size(), 1.5f, dout, 0), cudaSuccess);
        std::vector<double> rg(o.size());
        for (size_t i = 0; i < ids.size(); i++)
            for (int64_t c = 0; c < t.ncols; c++)
                rg[i * t.ncols + c] = 1.5 * w.deq[ids[i] * t.ncols + c];
        snprintf(what, sizeof what, "get_rows %s", quant_type_name(t.type));
        check(what, host(dout, o.size()).data(), rg.data(), rg.size(), TOL_F32);
        cudaFree(dx), cudaFree(db), cudaFree(dy), cudaFree(dh), cudaFree(di), cudaFree(dout);
        cudaFree((void *)w.m.d);
    }
}

/* The quantised matvec turns its fields into floats as denormals and scales
 * x by up to 2^64 (wformat.cuh, KV_DN_S): x spanning 2^-40 .. 2^40 in one
 * row (a large value beside tiny ones in every block) must still give the
 * double reference's sum within the matvec tolerance, and x of 2^60 must
 * not overflow. */
static void test_matvec_x_range(void **state)
{
    (void)state;
    static const ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0,
                                      GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K,
                                      GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q2_K,
                                      GGML_TYPE_Q3_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS,
                                      GGML_TYPE_MXFP4};
    static const int scale_exp[][2] = {{-40, 40}, {-20, 0}, {30, 60}};
    rng_fork fork;
    for (ggml_type type : types) {
        fork.at(type);
        for (const auto &se : scale_exp) {
            const int64_t ncols = 512, nrows = 5;
            wmat w;
            make_wmat(&w, type, nrows, ncols);
            auto x = randv((size_t)ncols);
            for (int64_t c = 0; c < ncols; c++) /* alternate ends of the range */
                x[c] = ldexpf(x[c], c % 3 ? se[0] : se[1]);
            std::vector<float> zero((size_t)nrows, 0.0f);
            float *dx = dev(x), *dy = dev(zero);
            assert_int_equal(kv_matvec(&w.m, dx, nullptr, nullptr, dy, 0), cudaSuccess);
            std::vector<double> ref((size_t)nrows);
            for (int64_t r = 0; r < nrows; r++) {
                double s = 0;
                for (int64_t c = 0; c < ncols; c++)
                    s += (double)w.deq[r * ncols + c] * x[c];
                ref[r] = s;
            }
            char what[80];
            snprintf(what, sizeof what, "matvec %s x 2^%d..2^%d", quant_type_name(type), se[0],
                     se[1]);
            check(what, host(dy, (size_t)nrows).data(), ref.data(), ref.size(), TOL_F32);
            cudaFree(dx), cudaFree(dy), cudaFree((void *)w.m.d);
        }
    }
}

/* x normed by NW in double, as the CPU's rmsnorm: the fused matvecs'
 * reference input. */
static std::vector<double> rms_ref(const std::vector<float> &x, const std::vector<float> &nw,
                                   float eps)
{
    double ss = 0;
    for (float v : x)
        ss += (double)v * v;
    double inv = 1.0 / sqrt(ss / (double)x.size() + eps);
    std::vector<double> xn(x.size());
    for (size_t i = 0; i < x.size(); i++)
        xn[i] = x[i] * inv * nw[i];
    return xn;
}
static double row_dot(const wmat &w, int64_t r, const std::vector<double> &x)
{
    double s = 0;
    for (size_t c = 0; c < x.size(); c++)
        s += (double)w.deq[(size_t)r * x.size() + c] * x[c];
    return s;
}

/* kv_matvec_norm: the RMSNorm in the matvec's staging prologue, every
 * format of k_mats (the scalar float forms, rows past one 2048-float chunk,
 * row counts leaving warps and blocks part empty) plus a scalar f16 row.
 * Against the double reference (norm, then product) at the matvec's 1e-5,
 * and against the unfused kernels (kv_rmsnorm into a buffer, then
 * kv_matvec) at 1e-5: not bit-equal, the sum of squares is added in
 * another order. x is scaled so the norm is not close to 1. */
static void test_matvec_norm(void **state)
{
    (void)state;
    const float eps = 1e-5f;
    auto rows = std::vector<std::pair<ggml_type, std::pair<int64_t, int64_t>>>();
    for (const auto &t : k_mats)
        if (!late_type(t.type))
            rows.push_back({t.type, {t.ncols, t.nrows}});
    rows.push_back({GGML_TYPE_F16, {44, 6}});
    for (const auto &t : k_mats)
        if (late_type(t.type))
            rows.push_back({t.type, {t.ncols, t.nrows}});
    rng_fork fork;
    for (const auto &t : rows) {
        fork.at(t.first);
        const int64_t ncols = t.second.first, nrows = t.second.second;
        wmat w;
        make_wmat(&w, t.first, nrows, ncols);
        auto x = randv((size_t)ncols), nw = randv((size_t)ncols), bias = randv((size_t)nrows),
             add = randv((size_t)nrows);
        for (float &v : x)
            v *= 7.0f;
        float *dx = dev(x), *dn = dev(nw), *db = dev(bias), *dy = dev(add);
        std::vector<float> z((size_t)ncols);
        float *dxn = dev(z), *dy2 = dev(add);
        assert_int_equal(kv_matvec_norm(&w.m, dx, dn, eps, db, dy, dy, 0), cudaSuccess);
        assert_int_equal(kv_rmsnorm(dx, dn, nullptr, dxn, 1, (int32_t)ncols, eps, 0), cudaSuccess);
        assert_int_equal(kv_matvec(&w.m, dxn, db, dy2, dy2, 0), cudaSuccess);
        auto xn = rms_ref(x, nw, eps);
        std::vector<double> ref((size_t)nrows);
        for (int64_t r = 0; r < nrows; r++)
            ref[(size_t)r] = row_dot(w, r, xn) + bias[(size_t)r] + add[(size_t)r];
        char what[80];
        auto got = host(dy, (size_t)nrows), unfused = host(dy2, (size_t)nrows);
        snprintf(what, sizeof what, "matvec+norm %s %lld x %lld", quant_type_name(t.first),
                 (long long)nrows, (long long)ncols);
        check(what, got.data(), ref.data(), ref.size(), TOL_F32);
        std::vector<double> uref(unfused.begin(), unfused.end());
        snprintf(what, sizeof what, "  vs rmsnorm, matvec %s", quant_type_name(t.first));
        check(what, got.data(), uref.data(), uref.size(), TOL_F32);
        cudaFree(dx), cudaFree(dn), cudaFree(db), cudaFree(dy), cudaFree(dxn), cudaFree(dy2);
        cudaFree((void *)w.m.d);
    }
}

/* kv_matvec_glu: gate and up rows in one kernel, act(g) * u stored. Every
 * format with a GLU form, SiLU and GELU, with and without the fused norm,
 * on shapes that are not multiples of the 16 rows of a block or of a
 * 2048-float chunk. Against the unfused kernels (kv_matvec_norm of gate
 * and of up, then kv_glu): bit-equal, as the same sums go through the same
 * kv_glu_act. Against the double reference: 1e-5 of the largest |g u|,
 * not of the largest output: each sum is within 1e-5 of its row's, and
 * for a negative g the activation cancels (GELU's 1 + tanh of a large
 * negative argument, in float), so a block of rows whose g are all
 * negative has tiny outputs carrying errors the size of |g u| 1e-7.
 * Formats that do not fuse are refused (scalar float rows, gate and up of
 * two formats). */
static void test_matvec_glu(void **state)
{
    (void)state;
    static const struct {
        ggml_type type;
        int64_t ncols, nrows;
    } k_glu[] = {
        {GGML_TYPE_F32, 2312, 9},  {GGML_TYPE_F16, 40, 21},   {GGML_TYPE_BF16, 2056, 3},
        {GGML_TYPE_Q4_0, 96, 17},  {GGML_TYPE_Q4_1, 4128, 6}, {GGML_TYPE_Q5_0, 224, 5},
        {GGML_TYPE_Q5_1, 64, 33},  {GGML_TYPE_Q8_0, 2080, 9}, {GGML_TYPE_Q4_K, 2304, 19},
        {GGML_TYPE_Q5_K, 768, 7},  {GGML_TYPE_Q6_K, 2560, 6}, {GGML_TYPE_Q6_K, 256, 1},
        {GGML_TYPE_Q2_K, 2304, 19}, {GGML_TYPE_Q3_K, 768, 7}, {GGML_TYPE_IQ4_NL, 4128, 6},
        {GGML_TYPE_IQ4_XS, 2560, 5}, {GGML_TYPE_MXFP4, 96, 17},
    };
    const float eps = 1e-6f;
    rng_fork fork;
    for (const auto &t : k_glu) {
        fork.at(t.type);
        wmat wg, wu;
        make_wmat(&wg, t.type, t.nrows, t.ncols);
        make_wmat(&wu, t.type, t.nrows, t.ncols);
        assert_true(kv_matvec_glu_fuses(&wg.m, &wu.m));
        auto x = randv((size_t)t.ncols), nw = randv((size_t)t.ncols);
        for (float &v : x)
            v *= 3.0f;
        float *dx = dev(x), *dn = dev(nw);
        std::vector<float> z((size_t)t.nrows);
        float *dy = dev(z), *dg = dev(z), *du = dev(z);
        for (int normed = 0; normed < 2; normed++) {
            std::vector<double> xn = normed ? rms_ref(x, nw, eps)
                                            : std::vector<double>(x.begin(), x.end());
            const float *norm = normed ? dn : nullptr;
            for (int gelu = 0; gelu < 2; gelu++) {
                assert_int_equal(kv_matvec_glu(&wg.m, &wu.m, dx, norm, eps, gelu, dy, 0),
                                 cudaSuccess);
                assert_int_equal(kv_matvec_norm(&wg.m, dx, norm, eps, nullptr, nullptr, dg, 0),
                                 cudaSuccess);
                assert_int_equal(kv_matvec_norm(&wu.m, dx, norm, eps, nullptr, nullptr, du, 0),
                                 cudaSuccess);
                assert_int_equal(kv_glu(dg, du, t.nrows, gelu, 0), cudaSuccess);
                std::vector<double> ref((size_t)t.nrows);
                double scale = 1e-30;
                for (int64_t r = 0; r < t.nrows; r++) {
                    double g = row_dot(wg, r, xn), u = row_dot(wu, r, xn);
                    scale = fabs(g * u) > scale ? fabs(g * u) : scale;
                    double act = gelu ? 0.5 * g *
                                            (1 + tanh(0.7978845608028654 *
                                                      (g + 0.044715 * g * g * g)))
                                      : g / (1 + exp(-g));
                    ref[(size_t)r] = act * u;
                }
                char what[80];
                snprintf(what, sizeof what, "matvec glu %s%s %s %lld x %lld",
                         gelu ? "gelu" : "silu", normed ? "+norm" : "", quant_type_name(t.type),
                         (long long)t.nrows, (long long)t.ncols);
                auto got = host(dy, (size_t)t.nrows), unfused = host(dg, (size_t)t.nrows);
                double worst = 0;
                for (size_t i = 0; i < ref.size(); i++) {
                    double e = fabs(got[i] - ref[i]) / scale;
                    worst = e > worst || !(e == e) ? e : worst;
                }
                printf("%-34s %.2e of max|g u| (tol %.0e)\n", what, worst, TOL_F32);
                if (!(worst <= TOL_F32))
                    fail_msg("%s: error %.3e of max|g u|", what, worst);
                if (kvemu_report_count())
                    fail_msg("%s: device emulator: %s", what, kvemu_last_report());
                if (memcmp(got.data(), unfused.data(), got.size() * sizeof(float)) != 0)
                    fail_msg("%s: differs from gate, up and kv_glu apart", what);
            }
        }
        cudaFree(dx), cudaFree(dn), cudaFree(dy), cudaFree(dg), cudaFree(du);
        cudaFree((void *)wg.m.d), cudaFree((void *)wu.m.d);
    }
    fork.end();
    /* Refused: gate and up of two formats, the scalar float form, shapes
     * that differ. */
    wmat a, b, c, d;
    make_wmat(&a, GGML_TYPE_Q4_K, 8, 256);
    make_wmat(&b, GGML_TYPE_Q6_K, 8, 256);
    make_wmat(&c, GGML_TYPE_F32, 8, 37);
    make_wmat(&d, GGML_TYPE_Q4_K, 9, 256);
    assert_false(kv_matvec_glu_fuses(&a.m, &b.m));
    assert_false(kv_matvec_glu_fuses(&c.m, &c.m));
    assert_false(kv_matvec_glu_fuses(&a.m, &d.m));
    assert_true(kv_matvec_glu_fuses(&a.m, &a.m));
    assert_int_equal(kv_matvec_glu(&a.m, &b.m, nullptr, nullptr, 0.0f, false, nullptr, 0),
                     cudaErrorInvalidValue);
    cudaFree((void *)a.m.d), cudaFree((void *)b.m.d), cudaFree((void *)c.m.d);
    cudaFree((void *)d.m.d);
}

/* ---- mixture of experts ---- */

/* kv_moe_route against the CPU's router (model_moe_select): expert counts below, at and above
 * a warp (up to 1000, 32 a lane), top-k from 1 to all, logits with ties
 * (whole tokens of one value, ties across the k-th place, equal values in
 * lanes that own several experts), -inf, and a token whose logits are all
 * below -25 (its sigmoids sum under the renormalisation's 2^-14 floor);
 * each under six routers: softmax plain, renormalised, and renormalised
 * then scaled by 2.5 (DeepSeek-V3's factor), gpt-oss's softmax over the
 * picks, sigmoid plain scaled by 0.75, and sigmoid renormalised scaled by
 * 2.5. A NaN logit gives in-range, distinct ids. Bad shapes and an unknown
 * gating are refused. */
static void test_moe_route(void **state)
{
    (void)state;
    static const struct {
        int ne, k;
    } k_route[] = {{1, 1}, {5, 2}, {6, 6}, {33, 3}, {60, 4}, {128, 8}, {200, 7}, {1000, 9}};
    static const struct {
        enum kv_moe_gating gating;
        bool norm;
        float scale;
        const char *name;
    } k_routers[] = {
        {KV_MOE_SOFTMAX, false, 1.0f, "softmax"},
        {KV_MOE_SOFTMAX, true, 1.0f, "softmax norm"},
        {KV_MOE_SOFTMAX, true, 2.5f, "softmax norm x2.5"},
        {KV_MOE_SOFTMAX_TOPK, false, 1.0f, "topk-softmax"},
        {KV_MOE_SIGMOID, false, 0.75f, "sigmoid x0.75"},
        {KV_MOE_SIGMOID, true, 2.5f, "sigmoid norm x2.5"},
    };
    const int T = 6;
    int cases = 0;
    for (const auto &c : k_route) {
        for (const auto &rt : k_routers) {
            std::vector<float> lg((size_t)T * c.ne);
            for (float &v : lg)
                v = 4.0f * frand();
            /* token 1: all equal; token 2: values in steps of 1/4, so many
             * ties; token 3: the top value three times (across lanes and
             * within one) and -inf; token 4: the k-th and (k+1)-th tie;
             * token 5: all far below 0 */
            for (int e = 0; e < c.ne; e++) {
                lg[(size_t)1 * c.ne + e] = 0.5f;
                lg[(size_t)2 * c.ne + e] = (float)((int)(8 * frand())) / 4;
                lg[(size_t)5 * c.ne + e] -= 30.0f;
            }
            float *t3 = &lg[(size_t)3 * c.ne];
            t3[c.ne - 1] = t3[c.ne / 2] = t3[c.ne > 32 ? 32 : 0] = 9.0f;
            t3[c.ne > 2 ? 1 : 0] = c.ne > 2 ? -INFINITY : t3[0];
            float *t4 = &lg[(size_t)4 * c.ne];
            if (c.k < c.ne) {
                std::vector<int32_t> s0(c.k);
                std::vector<float> w0(c.k);
                model_moe_select(t4, c.ne, c.k, MODEL_GATING_SOFTMAX, false, 1.0f, s0.data(), w0.data());
                int other = -1;
                for (int e = c.ne - 1; e >= 0 && other < 0; e--) {
                    bool in = false;
                    for (int j = 0; j < c.k; j++)
                        in = in || s0[j] == e;
                    other = in ? -1 : e;
                }
                t4[other] = t4[s0[c.k - 1]];
            }
            float *dl = dev(lg);
            std::vector<int32_t> zi((size_t)T * c.k, -7);
            std::vector<float> zw((size_t)T * c.k, NAN);
            int32_t *di = dev(zi);
            float *dw = dev(zw);
            assert_int_equal(
                kv_moe_route(dl, T, c.ne, c.k, rt.gating, rt.norm, rt.scale, di, dw, 0),
                cudaSuccess);
            auto gi = host(di, zi.size());
            auto gw = host(dw, zw.size());
            for (int t = 0; t < T; t++) {
                std::vector<int32_t> si(c.k);
                std::vector<float> sw(c.k);
                /* kv_moe_gating's values are model.h's (backend_cuda.cu asserts it) */
                model_moe_select(&lg[(size_t)t * c.ne], c.ne, c.k, (enum model_gating)rt.gating,
                                 rt.norm, rt.scale, si.data(), sw.data());
                for (int j = 0; j < c.k; j++) {
                    size_t i = (size_t)t * c.k + j;
                    if (gi[i] != si[j])
                        fail_msg("route %d experts top-%d %s token %d slot %d: device %d, cpu %d",
                                 c.ne, c.k, rt.name, t, j, gi[i], si[j]);
                    /* an expert at -inf has weight 0 on both */
                    double e = fabs((double)gw[i] - sw[j]) / (sw[j] != 0 ? fabs((double)sw[j]) : 1.0);
                    if (!(e <= 1e-6))
                        fail_msg("route %d experts top-%d %s token %d slot %d: weight %.9g, "
                                 "cpu %.9g",
                                 c.ne, c.k, rt.name, t, j, gw[i], sw[j]);
                }
            }
            if (kvemu_report_count())
                fail_msg("route: device emulator: %s", kvemu_last_report());
            cases++;
            cudaFree(dl), cudaFree(di), cudaFree(dw);
        }
    }
    printf("moe route: %d shapes x routers x %d tokens, ids equal to model_moe_select, weights "
           "within 1e-6\n",
           cases, T);

    /* NaN logits: ids in range and distinct */
    std::vector<float> lg = {1.0f, NAN, 3.0f, NAN, 2.0f};
    float *dl = dev(lg);
    std::vector<int32_t> zi(4, -7);
    std::vector<float> zw(4);
    int32_t *di = dev(zi);
    float *dw = dev(zw);
    assert_int_equal(kv_moe_route(dl, 1, 5, 4, KV_MOE_SOFTMAX, true, 1.0f, di, dw, 0),
                     cudaSuccess);
    auto gi = host(di, 4);
    assert_int_equal(gi[0], 2);
    assert_int_equal(gi[1], 4);
    assert_int_equal(gi[2], 0);
    assert_int_equal(gi[3], 1); /* a NaN counts as -inf: the lower index first */
    /* refused: more used than there are, none, too many experts, no
     * tokens, a gating that is none of the three */
    const enum kv_moe_gating sm = KV_MOE_SOFTMAX;
    assert_int_equal(kv_moe_route(dl, 1, 5, 6, sm, false, 1.0f, di, dw, 0), cudaErrorInvalidValue);
    assert_int_equal(kv_moe_route(dl, 1, 5, 0, sm, false, 1.0f, di, dw, 0), cudaErrorInvalidValue);
    assert_int_equal(kv_moe_route(dl, 1, KV_MOE_MAX_EXPERT + 1, 2, sm, false, 1.0f, di, dw, 0),
                     cudaErrorInvalidValue);
    assert_int_equal(kv_moe_route(dl, 0, 5, 2, sm, false, 1.0f, di, dw, 0), cudaErrorInvalidValue);
    /* 3: in the enum's value range (two bits), so the cast is defined */
    assert_int_equal(kv_moe_route(dl, 1, 5, 2, (enum kv_moe_gating)3, false, 1.0f, di, dw, 0),
                     cudaErrorInvalidValue);
    cudaFree(dl), cudaFree(di), cudaFree(dw);
}

/* A stacked expert tensor: NX experts of NROWS x NCOLS, expert e's rows
 * from row e * NROWS, one device matrix; POISON's bytes on the device set
 * to 0xff (NaN scales and floats), so a product that reads it is NaN. */
static void make_experts(wmat *w, ggml_type type, int nx, int64_t nrows, int64_t ncols,
                         int poison)
{
    make_wmat(w, type, nx * nrows, ncols);
    size_t eb = w->m.row_bytes * (size_t)nrows;
    assert_int_equal(cudaMemset((uint8_t *)w->m.d + (size_t)poison * eb, 0xff, eb),
                     cudaSuccess);
}

/* Expert E of the stacked W as a matrix of its own. */
static kv_dmat expert_of(const wmat &w, int nx, int e)
{
    kv_dmat m = w.m;
    m.nrows = w.m.nrows / nx;
    m.d = w.m.d + (size_t)e * m.row_bytes * (size_t)m.nrows;
    return m;
}

/* kv_matvec_x and kv_matvec_x_glu over (token, slot) pairs on every
 * format (the scalar f32 form included, plain only), expert row counts
 * that leave blocks part empty, the norm fused or not: each pair bit-equal
 * to kv_matvec_norm (or kv_matvec_glu) on its expert's matrix and within
 * 1e-5 of the double reference; one expert no pair chose is poisoned, so
 * reading it would turn a result into NaN; an id out of range reads expert
 * 0; no ids is expert 0 for every pair. */
static void test_matvec_x(void **state)
{
    (void)state;
    static const struct {
        ggml_type type;
        int64_t ncols, nrows;
    } k_x[] = {
        {GGML_TYPE_F32, 37, 7},    {GGML_TYPE_F16, 40, 9},    {GGML_TYPE_BF16, 2056, 3},
        {GGML_TYPE_Q4_0, 96, 17},  {GGML_TYPE_Q4_1, 160, 6},  {GGML_TYPE_Q5_0, 224, 5},
        {GGML_TYPE_Q5_1, 64, 33},  {GGML_TYPE_Q8_0, 2080, 9}, {GGML_TYPE_Q4_K, 256, 19},
        {GGML_TYPE_Q5_K, 768, 7},  {GGML_TYPE_Q6_K, 512, 6},  {GGML_TYPE_F32, 2312, 5},
        {GGML_TYPE_F16, 44, 3},    {GGML_TYPE_BF16, 20, 4},   {GGML_TYPE_Q2_K, 512, 5},
        {GGML_TYPE_Q3_K, 256, 9},  {GGML_TYPE_IQ4_NL, 96, 7}, {GGML_TYPE_IQ4_XS, 256, 6},
        {GGML_TYPE_MXFP4, 160, 5},
    };
    const int NX = 5, POISON = 2, NT = 3, K = 2;
    const float eps = 1e-6f;
    /* (token, slot) -> expert; 7 is out of range and reads expert 0 */
    const std::vector<int32_t> ids = {3, 0, 4, 1, 7, 3};
    const int NP = NT * K;
    for (const auto &t : k_x) {
        wmat wg, wu;
        make_experts(&wg, t.type, NX, t.nrows, t.ncols, POISON);
        make_experts(&wu, t.type, NX, t.nrows, t.ncols, POISON);
        auto x = randv((size_t)(NT * t.ncols)), nw = randv((size_t)t.ncols),
             bias = randv((size_t)(NX * t.nrows));
        float *dx = dev(x), *dn = dev(nw), *db = dev(bias);
        int32_t *di = dev(ids);
        std::vector<float> z((size_t)(NP * t.nrows), NAN);
        float *dy = dev(z), *dr = dev(z), *du = dev(z);
        const bool glu = kv_matvec_glu_fuses(&wg.m, &wu.m);
        for (int normed = 0; normed < 2; normed++) {
            const float *norm = normed ? dn : nullptr;
            /* form 0: plain, 1: the GLU, 2: plain with each expert's bias row
             * (gpt-oss) in the epilogue */
            for (int form = 0; form < 3; form++) {
                if (form == 1 && !glu)
                    continue;
                const bool biased = form == 2;
                if (form == 1)
                    assert_int_equal(kv_matvec_x_glu(&wg.m, &wu.m, NX, di, NP, K, dx, norm, eps,
                                                     false, dy, 0),
                                     cudaSuccess);
                else
                    assert_int_equal(kv_matvec_x(&wg.m, NX, di, NP, K, dx, norm, eps,
                                                 biased ? db : nullptr, dy, 0),
                                     cudaSuccess);
                std::vector<double> ref((size_t)(NP * t.nrows));
                for (int p = 0; p < NP; p++) {
                    const int e = ids[p] < NX ? ids[p] : 0, tok = p / K;
                    std::vector<float> xt(x.begin() + tok * t.ncols,
                                          x.begin() + (tok + 1) * t.ncols);
                    std::vector<double> xn = normed ? rms_ref(xt, nw, eps)
                                                    : std::vector<double>(xt.begin(), xt.end());
                    const kv_dmat mg = expert_of(wg, NX, e), mu = expert_of(wu, NX, e);
                    float *rp = dr + (size_t)p * t.nrows;
                    if (form == 1) {
                        assert_int_equal(kv_matvec_glu(&mg, &mu, dx + tok * t.ncols, norm, eps,
                                                       false, rp, 0),
                                         cudaSuccess);
                    } else {
                        assert_int_equal(kv_matvec_norm(&mg, dx + tok * t.ncols, norm, eps,
                                                        biased ? db + e * t.nrows : nullptr,
                                                        nullptr, rp, 0),
                                         cudaSuccess);
                    }
                    for (int64_t r = 0; r < t.nrows; r++) {
                        double g = row_dot(wg, e * t.nrows + r, xn);
                        ref[(size_t)(p * t.nrows + r)] =
                            form == 1 ? g / (1 + exp(-g)) * row_dot(wu, e * t.nrows + r, xn)
                            : biased  ? g + bias[(size_t)(e * t.nrows + r)]
                                      : g;
                    }
                }
                char what[96];
                snprintf(what, sizeof what, "matvec_x%s%s %s %d x %lld x %lld",
                         form == 1 ? " glu" : biased ? " bias" : "", normed ? "+norm" : "",
                         quant_type_name(t.type), NX, (long long)t.nrows, (long long)t.ncols);
                auto got = host(dy, ref.size()), dense = host(dr, ref.size());
                check(what, got.data(), ref.data(), ref.size(), TOL_F32);
                if (memcmp(got.data(), dense.data(), got.size() * sizeof(float)) != 0)
                    fail_msg("%s: differs from the dense kernel on the expert", what);
            }
        }
        /* no ids: expert 0 for every pair, one row of X each (x_div 1) */
        assert_int_equal(kv_matvec_x(&wg.m, NX, nullptr, NT, 1, dx, nullptr, 0.0f, nullptr, dy, 0),
                         cudaSuccess);
        const kv_dmat m0 = expert_of(wg, NX, 0);
        for (int p = 0; p < NT; p++)
            assert_int_equal(kv_matvec(&m0, dx + p * t.ncols, nullptr, nullptr,
                                       dr + (size_t)p * t.nrows, 0),
                             cudaSuccess);
        auto a = host(dy, (size_t)(NT * t.nrows)), b = host(dr, (size_t)(NT * t.nrows));
        assert_memory_equal(a.data(), b.data(), a.size() * sizeof(float));
        if (kvemu_report_count())
            fail_msg("matvec_x: device emulator: %s", kvemu_last_report());
        cudaFree(dx), cudaFree(dn), cudaFree(db), cudaFree(di), cudaFree(dy), cudaFree(dr),
            cudaFree(du);
        cudaFree((void *)wg.m.d), cudaFree((void *)wu.m.d);
    }
    /* refused: rows not a whole number of experts, no pairs, the GLU of
     * two formats */
    wmat a, b;
    make_wmat(&a, GGML_TYPE_Q4_K, 9, 256);
    make_wmat(&b, GGML_TYPE_Q6_K, 9, 256);
    assert_int_equal(kv_matvec_x(&a.m, 2, nullptr, 1, 1, nullptr, nullptr, 0.0f, nullptr, nullptr,
                                 0),
                     cudaErrorInvalidValue);
    assert_int_equal(kv_matvec_x(&a.m, 3, nullptr, 0, 1, nullptr, nullptr, 0.0f, nullptr, nullptr,
                                 0),
                     cudaErrorInvalidValue);
    assert_int_equal(kv_matvec_x_glu(&a.m, &b.m, 3, nullptr, 1, 1, nullptr, nullptr, 0.0f, false,
                                     nullptr, 0),
                     cudaErrorInvalidValue);
    cudaFree((void *)a.m.d), cudaFree((void *)b.m.d);
}

/* kv_moe_sum: K weighted rows per token, the gated shared expert, the
 * residual, against a double reference; and without the shared expert
 * and residual. */
static void test_moe_sum(void **state)
{
    (void)state;
    const int T = 3, K = 3, E = 333;
    auto y = randv((size_t)T * K * E), w = randv((size_t)T * K), sh = randv((size_t)T * E),
         z = randv((size_t)T), add = randv((size_t)T * E);
    float *dy = dev(y), *dw = dev(w), *ds = dev(sh), *dz = dev(z), *da = dev(add);
    std::vector<float> o((size_t)T * E, NAN);
    float *dout = dev(o);
    for (int full = 0; full < 2; full++) {
        assert_int_equal(kv_moe_sum(dy, dw, T, K, E, full ? ds : nullptr, dz,
                                    full ? da : nullptr, full ? da : dout, 0),
                         cudaSuccess);
        std::vector<double> ref((size_t)T * E);
        for (int t = 0; t < T; t++)
            for (int c = 0; c < E; c++) {
                double s = 0;
                for (int j = 0; j < K; j++)
                    s += (double)w[t * K + j] * y[((size_t)t * K + j) * E + c];
                if (full)
                    s += add[(size_t)t * E + c] +
                         sh[(size_t)t * E + c] / (1 + exp(-(double)z[t]));
                ref[(size_t)t * E + c] = s;
            }
        check(full ? "moe sum + shared + residual" : "moe sum", host(full ? da : dout, ref.size()).data(),
              ref.data(), ref.size(), TOL_F32);
    }
    cudaFree(dy), cudaFree(dw), cudaFree(ds), cudaFree(dz), cudaFree(da), cudaFree(dout);
}

/* kv_matvec3: three matrices of one format in one launch (the decode
 * step's Q, K and V), row counts that split the grid unevenly and leave
 * blocks part empty, with biases on two of them and the norm fused: equal
 * bit for bit to three kv_matvec_norm calls (a block does what the
 * matvec of its matrix does), and within 1e-5 of the double reference.
 * Mixed formats or widths are refused. */
static void test_matvec3(void **state)
{
    (void)state;
    static const struct {
        ggml_type type;
        int64_t ncols, n[3];
    } k_3[] = {
        {GGML_TYPE_Q4_K, 2304, {37, 9, 9}}, {GGML_TYPE_Q8_0, 160, {16, 17, 1}},
        {GGML_TYPE_Q6_K, 256, {5, 33, 2}},  {GGML_TYPE_Q5_0, 224, {48, 16, 16}},
        {GGML_TYPE_F16, 40, {3, 20, 7}},    {GGML_TYPE_F32, 2312, {12, 4, 4}},
        {GGML_TYPE_BF16, 24, {1, 1, 1}},    {GGML_TYPE_Q2_K, 512, {20, 3, 3}},
        {GGML_TYPE_Q3_K, 2304, {17, 16, 1}}, {GGML_TYPE_IQ4_NL, 160, {5, 33, 2}},
        {GGML_TYPE_IQ4_XS, 768, {16, 9, 9}}, {GGML_TYPE_MXFP4, 2080, {1, 18, 5}},
    };
    const float eps = 1e-6f;
    rng_fork fork;
    for (const auto &t : k_3) {
        fork.at(t.type);
        wmat w[3];
        const kv_dmat *wp[3];
        const float *bp[3];
        float *yp[3], *yq[3];
        std::vector<float> bias[3];
        for (int i = 0; i < 3; i++) {
            make_wmat(&w[i], t.type, t.n[i], t.ncols);
            wp[i] = &w[i].m;
            bias[i] = randv((size_t)t.n[i]);
            bp[i] = i == 1 ? nullptr : dev(bias[i]);
            std::vector<float> z((size_t)t.n[i]);
            yp[i] = dev(z), yq[i] = dev(z);
        }
        assert_true(kv_matvec3_fuses(wp[0], wp[1], wp[2]));
        auto x = randv((size_t)t.ncols), nw = randv((size_t)t.ncols);
        for (float &v : x)
            v *= 5.0f;
        float *dx = dev(x), *dn = dev(nw);
        assert_int_equal(kv_matvec3(wp, dx, dn, eps, bp, yp, 0), cudaSuccess);
        auto xn = rms_ref(x, nw, eps);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(kv_matvec_norm(wp[i], dx, dn, eps, bp[i], nullptr, yq[i], 0),
                             cudaSuccess);
            std::vector<double> ref((size_t)t.n[i]);
            for (int64_t r = 0; r < t.n[i]; r++)
                ref[(size_t)r] = row_dot(w[i], r, xn) + (bp[i] ? bias[i][(size_t)r] : 0.0);
            auto got = host(yp[i], (size_t)t.n[i]), apart = host(yq[i], (size_t)t.n[i]);
            char what[80];
            snprintf(what, sizeof what, "matvec3 %s [%d] %lld x %lld", quant_type_name(t.type),
                     i, (long long)t.n[i], (long long)t.ncols);
            check(what, got.data(), ref.data(), ref.size(), TOL_F32);
            if (memcmp(got.data(), apart.data(), got.size() * sizeof(float)) != 0)
                fail_msg("%s: differs from kv_matvec_norm alone", what);
            cudaFree(yp[i]), cudaFree(yq[i]), cudaFree((void *)w[i].m.d);
            if (bp[i])
                cudaFree((void *)bp[i]);
        }
        cudaFree(dx), cudaFree(dn);
    }
    fork.end();
    wmat a, b, c;
    make_wmat(&a, GGML_TYPE_Q4_K, 8, 256);
    make_wmat(&b, GGML_TYPE_Q6_K, 8, 256);
    make_wmat(&c, GGML_TYPE_Q4_K, 8, 512);
    assert_false(kv_matvec3_fuses(&a.m, &a.m, &b.m));
    assert_false(kv_matvec3_fuses(&a.m, &c.m, &a.m));
    const kv_dmat *mix[3] = {&a.m, &b.m, &a.m};
    const float *nob[3] = {nullptr, nullptr, nullptr};
    float *noy[3] = {nullptr, nullptr, nullptr};
    assert_int_equal(kv_matvec3(mix, nullptr, nullptr, 0.0f, nob, noy, 0), cudaErrorInvalidValue);
    cudaFree((void *)a.m.d), cudaFree((void *)b.m.d), cudaFree((void *)c.m.d);
}

/* The upload's repack (wformat.cuh): every quantised format, on rows whose
 * block count leaves the planes short of a 16-byte multiple (the row is
 * padded) and spans several blocks, read back through get_rows at scale 1:
 * the values must be the file's exactly (the decode is the same float
 * arithmetic as the CPU's), the padding zero, and the quants plane of every
 * row 16-byte aligned. */
static void test_repack(void **state)
{
    (void)state;
    static const struct {
        ggml_type type;
        int64_t ncols;
    } cases[] = {
        {GGML_TYPE_Q8_0, 5 * 32},  {GGML_TYPE_Q4_0, 3 * 32},  {GGML_TYPE_Q4_1, 7 * 32},
        {GGML_TYPE_Q5_0, 9 * 32},  {GGML_TYPE_Q5_1, 11 * 32}, {GGML_TYPE_Q4_K, 3 * 256},
        {GGML_TYPE_Q5_K, 5 * 256}, {GGML_TYPE_Q6_K, 3 * 256}, {GGML_TYPE_Q2_K, 3 * 256},
        {GGML_TYPE_Q3_K, 5 * 256}, {GGML_TYPE_IQ4_NL, 7 * 32}, {GGML_TYPE_IQ4_XS, 3 * 256},
        {GGML_TYPE_MXFP4, 9 * 32},
    };
    const int64_t nrows = 3;
    rng_fork fork;
    for (const auto &c : cases) {
        fork.at(c.type);
        size_t rb = quant_row_size(c.type, c.ncols), drb = kv_row_bytes(c.type, c.ncols);
        char what[80];
        snprintf(what, sizeof what, "repack %s rows of %lld", quant_type_name(c.type),
                 (long long)c.ncols);
        if (drb % 16 || drb < rb || drb - rb >= 16)
            fail_msg("%s: device row %zu bytes for a file row of %zu", what, drb, rb);
        std::vector<uint8_t> file(rb * nrows), packed(drb * nrows, 0xAA);
        std::vector<float> deq((size_t)(nrows * c.ncols));
        for (int64_t r = 0; r < nrows; r++) {
            quant_random_row(c.type, file.data() + r * rb, c.ncols, 1.0f, &rng);
            quant_dequantize_row(c.type, file.data() + r * rb, deq.data() + r * c.ncols,
                                 c.ncols);
        }
        enum kv_wfmt f = kv_wfmt_of(c.type, c.ncols);
        kv_repack_rows(f, file.data(), packed.data(), nrows, c.ncols, rb, drb);
        for (int64_t r = 0; r < nrows; r++)
            for (size_t i = rb; i < drb; i++)
                if (packed[r * drb + i] != 0)
                    fail_msg("%s: padding byte %zu of row %lld not zero", what, i, (long long)r);
        if (packed == std::vector<uint8_t>(packed.size(), 0) ||
            memcmp(packed.data(), file.data(), rb) == 0)
            fail_msg("%s: the row was not repacked", what);
        kv_dmat m;
        m.fmt = f, m.ggml_type = c.type, m.ncols = c.ncols, m.nrows = nrows, m.row_bytes = drb;
        m.d = dev(packed);
        std::vector<int32_t> ids = {2, 0, 1};
        int32_t *di = dev(ids);
        std::vector<float> o(ids.size() * (size_t)c.ncols);
        float *dout = dev(o);
        assert_int_equal(kv_get_rows(&m, di, (int32_t)ids.size(), 1.0f, dout, 0), cudaSuccess);
        std::vector<float> got = host(dout, o.size());
        std::vector<double> ref(o.size());
        for (size_t i = 0; i < ids.size(); i++)
            for (int64_t e = 0; e < c.ncols; e++)
                ref[i * c.ncols + e] = deq[ids[i] * c.ncols + e];
        check(what, got.data(), ref.data(), ref.size(), 0.0);
        cudaFree((void *)m.d), cudaFree(di), cudaFree(dout);
    }
}

/* The K-quant scale unpack (wformat.cuh kv_k4_scales, branch-free: masks
 * and a PRMT chosen by the unit) against the CPU's Q4_K dequantisation, for
 * every unit of headers that set each scale byte to 0, 0xff and random
 * values: a block of quants 0 dequantises to -dmin m, one of quants 1 to
 * d sc - dmin m, with d = dmin = 1 both exact, so the four values of each
 * unit must be equal, not close. */
static void test_k4_scales(void **state)
{
    (void)state;
    int cases = 0;
    uint64_t r = 99; /* its own stream: the other tests' data stay as they were */
    for (int t = 0; t < 12 + 12 + 64; t++) {
        uint8_t blk0[144] = {0}, blk1[144];
        const uint16_t one = 0x3c00; /* 1.0 in f16 */
        memcpy(blk0, &one, 2), memcpy(blk0 + 2, &one, 2);
        for (int i = 0; i < 12; i++) /* one byte set, one byte clear, or random */
            blk0[4 + i] = t < 12 ? (i == t ? 0xff : 0) : t < 24 ? (i == t - 12 ? 0 : 0xff)
                                                               : (uint8_t)(r >> 56);
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        memcpy(blk1, blk0, 16);
        memset(blk1 + 16, 0x11, 128);
        float v0[256], v1[256];
        quant_dequantize_row(GGML_TYPE_Q4_K, blk0, v0, 256);
        quant_dequantize_row(GGML_TYPE_Q4_K, blk1, v1, 256);
        uint4 hd;
        memcpy(&hd, blk0, 16);
        for (int c = 0; c < 4; c++) {
            float d0, m0, d1, m1;
            kv_k4_scales(hd, c, &d0, &m0, &d1, &m1);
            const int j0 = 64 * c, j1 = 64 * c + 32; /* sub-blocks 2c, 2c + 1 */
            if (m0 != -v0[j0] || d0 != v1[j0] - v0[j0] || m1 != -v0[j1] ||
                d1 != v1[j1] - v0[j1])
                fail_msg("k4_scales: header %d unit %d: sc %g %g m %g %g, want sc %g %g m %g %g",
                         t, c, d0, d1, m0, m1, v1[j0] - v0[j0], v1[j1] - v0[j1], -v0[j0],
                         -v0[j1]);
            cases++;
        }
    }
    printf("k4_scales: %d units equal to the CPU's\n", cases);
}

/* The staging scale of each format's elements (xbit, wformat.cuh): a field
 * AND-ed out of its word at bit p is F 2^(p - 149) only if p is where the
 * dot finds it, and p + the field's width must stay within bit 23 for the
 * value to be a denormal-or-seam float. So: every bit in range, the table
 * of each format spans the unit, and the nibble rule puts low nibbles
 * below high ones in the same byte. */
static void test_xbit(void **state)
{
    (void)state;
    for (int e = 0; e < 32; e++) {
        assert_true(kv_fmt<KV_WF_Q4_0>::xbit(e) + 4 <= 24);
        assert_true(kv_fmt<KV_WF_Q5_0>::xbit(e) + 5 <= 24);
        assert_true(kv_fmt<KV_WF_Q6_K>::xbit(e) + 6 <= 24);
        if (e < 16) /* byte e: low nibble element e, high nibble e + 16 */
            assert_int_equal(kv_fmt<KV_WF_Q4_0>::xbit(e + 16) - kv_fmt<KV_WF_Q4_0>::xbit(e), 4);
    }
    for (int e = 0; e < 32; e++) { /* the table formats' entries are bytes */
        assert_true(kv_fmt<KV_WF_IQ4_NL>::xbit(e) + 8 <= 24);
        assert_int_equal(kv_fmt<KV_WF_IQ4_XS>::xbit(e), kv_fmt<KV_WF_IQ4_NL>::xbit(e));
        assert_int_equal(kv_fmt<KV_WF_MXFP4>::xbit(e), kv_fmt<KV_WF_IQ4_NL>::xbit(e));
    }
    for (int e = 0; e < 64; e++) {
        assert_true(kv_fmt<KV_WF_Q2_K>::xbit(e) + 2 <= 24);
        assert_true(kv_fmt<KV_WF_Q3_K>::xbit(e) + 3 <= 24);
        assert_true(kv_fmt<KV_WF_Q4_K>::xbit(e) + 4 <= 24);
        assert_int_equal(kv_fmt<KV_WF_Q5_K>::xbit(e), kv_fmt<KV_WF_Q5_K>::xbit(e & 31));
    }
    /* Fields within bits 0..23 sit in place; field 4 of a 5-bit stream
     * (bits 20-24) crosses bit 23, so it is read from a view starting at it. */
    assert_int_equal(kv_fmt<KV_WF_Q5_0>::xbit(3), 15);
    assert_int_equal(kv_fmt<KV_WF_Q5_0>::xbit(4), 0);
    assert_int_equal(kv_fmt<KV_WF_Q6_K>::xbit(3), 18);
    assert_int_equal(kv_fmt<KV_WF_Q4_0>::xbit(3), 0);  /* byte 3 of word 0 -> byte 0 */
    assert_int_equal(kv_fmt<KV_WF_Q4_0>::xbit(7), 8);  /* byte 3 of word 1 -> byte 1 */
    /* 3-bit field 7 (bits 21-23) in place, field 8 (24-26) from a view. */
    assert_int_equal(kv_fmt<KV_WF_Q3_K>::xbit(7), 21);
    assert_int_equal(kv_fmt<KV_WF_Q3_K>::xbit(8), 0);
    assert_int_equal(kv_fmt<KV_WF_Q2_K>::xbit(11), 22);
    assert_int_equal(kv_fmt<KV_WF_Q2_K>::xbit(12), 0);
    assert_int_equal(kv_fmt<KV_WF_IQ4_NL>::xbit(6), 16);
    assert_int_equal(kv_fmt<KV_WF_IQ4_NL>::xbit(7), 8); /* byte 3 of output word 1 -> byte 1 */
    assert_true(!kv_xscaled<KV_WF_Q8_0>::value && kv_xscaled<KV_WF_Q4_K>::value);
}

static double elt(__half h) { return __half2float(h); }
static double elt(float f) { return f; }

/* Causal GQA attention with an optional window, in double from the same
 * K/V the kernel reads (f16, or a q8_0 cache's dequantised floats); with
 * SINKS (N_HEAD logits, host) each head's sink joins the softmax's
 * denominator as a key with no value. */
template <class E>
static void ref_attention(const kv_attn_args &a, const std::vector<float> &q,
                          const std::vector<E> &kc, const std::vector<E> &vc,
                          std::vector<double> &out, const float *sinks = nullptr)
{
    int group = a.n_head / a.n_kv;
    out.assign(q.size(), 0.0);
    for (int t = 0; t < a.n_tok; t++)
        for (int h = 0; h < a.n_head; h++) {
            int kvh = h / group, qpos = a.pos0 + t;
            const float *qq = &q[((size_t)t * a.n_head + h) * a.hd];
            std::vector<double> s(qpos + 1, -INFINITY);
            double mx = -INFINITY;
            for (int j = 0; j <= qpos; j++) {
                if (a.swa > 0 && qpos - j >= a.swa)
                    continue;
                double d = 0;
                for (int e = 0; e < a.hd; e++)
                    d += (double)qq[e] * a.scale * elt(kc[((size_t)kvh * a.n_ctx + j) * a.hd + e]);
                s[j] = d;
                mx = d > mx ? d : mx;
            }
            if (sinks)
                mx = sinks[h] > mx ? sinks[h] : mx;
            double l = sinks ? exp(sinks[h] - mx) : 0;
            for (int j = 0; j <= qpos; j++)
                l += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
            double *o = &out[((size_t)t * a.n_head + h) * a.hd];
            for (int j = 0; j <= qpos; j++) {
                if (s[j] == -INFINITY)
                    continue;
                double p = exp(s[j] - mx) / l;
                for (int e = 0; e < a.hd; e++)
                    o[e] += p * elt(vc[((size_t)kvh * a.n_ctx + j) * a.hd + e]);
            }
        }
}

/* Runs the decode attention of A (n_split as given) on Q and the caches,
 * returns its output. POS_DEV: pass the position through a device int32
 * (A->pos0 is then set to a value the kernel must not use). */
static std::vector<float> run_attention_decode(kv_attn_args a, const std::vector<float> &q,
                                               const std::vector<__half> &kc,
                                               const std::vector<__half> &vc, bool pos_dev,
                                               const std::vector<float> *sinks = nullptr)
{
    std::vector<float> o(q.size()),
        part((size_t)a.n_split * a.n_tok * a.n_head * (a.hd + 2));
    std::vector<int32_t> pos = {a.pos0};
    int32_t *dpos = pos_dev ? dev(pos) : nullptr;
    if (pos_dev)
        a.pos0 = -7;
    a.q = dev(q);
    a.kc = dev(kc);
    a.vc = dev(vc);
    a.out = dev(o);
    a.part = dev(part);
    a.sinks = sinks ? dev(*sinks) : nullptr;
    assert_int_equal(kv_attention_decode(&a, dpos, 0), cudaSuccess);
    o = host(a.out, o.size());
    cudaFree((void *)a.sinks);
    cudaFree((void *)a.q), cudaFree((void *)a.kc), cudaFree((void *)a.vc);
    cudaFree(a.out), cudaFree(a.part), cudaFree(dpos);
    return o;
}

static void test_attention_decode(void **state)
{
    (void)state;
    /* Head dims 64, 128, 256 and odd ones (40, 72: lanes partly past the
     * head; 66, 2: not a multiple of 8, the 2-byte load path; 200 in the
     * 256 class); GQA ratios 1, 3, 4, 8; context lengths (pos0 + n_tok) 1,
     * 31, 257, 4097; windows (1, 100, 512: splits over the window only);
     * 2..8 tokens (8 x 4 heads: two row chunks a KV head); the position
     * from a device pointer. Every case with several splits also runs with
     * one, and both must match the reference. */
    static const struct {
        int n_tok, n_head, n_kv, hd, pos0, swa, n_split;
        bool pos_dev;
        float sink; /* the sinks' mean (gpt-oss; spread 1), 0: none */
    } cases[] = {
        {1, 1, 1, 64, 0, 0, 1, false, 0.0f},       {1, 4, 1, 128, 30, 0, 5, false, 0.0f},
        {1, 8, 1, 256, 256, 0, 7, false, 0.0f},    {1, 16, 2, 64, 4096, 0, 32, false, 0.0f},
        {1, 4, 4, 128, 4096, 0, 64, false, 0.0f},  {1, 8, 1, 256, 4096, 0, 16, true, 0.0f},
        {1, 8, 2, 256, 4096, 512, 9, false, 0.0f}, {1, 4, 1, 128, 256, 100, 3, false, 0.0f},
        {1, 2, 1, 64, 30, 1, 2, false, 0.0f},      {1, 6, 2, 40, 30, 0, 2, false, 0.0f},
        {1, 3, 1, 72, 70, 0, 3, false, 0.0f},      {1, 2, 2, 66, 50, 20, 2, true, 0.0f},
        {1, 4, 1, 200, 256, 0, 4, false, 0.0f},    {1, 2, 1, 2, 31, 0, 2, false, 0.0f},
        {4, 8, 2, 128, 257, 0, 3, false, 0.0f},    {8, 4, 1, 64, 30, 0, 1, false, 0.0f},
        {2, 4, 1, 256, 300, 64, 4, true, 0.0f},    {3, 2, 1, 40, 0, 0, 2, false, 0.0f},
        /* sinks: gpt-oss's shape (64 dims, GQA 8, window 128), an awkward
         * head, a sink near the scores, one that takes most of the weight,
         * and one (40) far above every score, where exp(sink - max)
         * without the shared max would overflow and the output is tiny */
        {1, 8, 1, 64, 300, 128, 3, true, 1.0f},   {1, 6, 2, 40, 70, 0, 3, false, 4.0f},
        {3, 4, 2, 72, 33, 5, 2, false, 8.0f},     {1, 4, 1, 64, 0, 0, 1, false, 2.0f},
        {2, 4, 2, 16, 500, 0, 4, true, 40.0f},    {1, 2, 1, 66, 200, 0, 1, false, 40.0f},
    };
    for (const auto &c : cases) {
        kv_attn_args a;
        memset(&a, 0, sizeof a);
        a.n_tok = c.n_tok, a.n_head = c.n_head, a.n_kv = c.n_kv, a.hd = c.hd;
        a.n_ctx = c.pos0 + c.n_tok + 5;
        a.pos0 = c.pos0, a.swa = c.swa;
        a.scale = 1.0f / sqrtf((float)c.hd);
        auto q = randv((size_t)c.n_tok * c.n_head * c.hd);
        /* Keys no query may see (past the last token, before the first
         * window) hold infinities: one read into a sum shows as inf/NaN. */
        const int lo = c.swa > 0 && c.pos0 - c.swa + 1 > 0 ? c.pos0 - c.swa + 1 : 0;
        std::vector<__half> kc((size_t)c.n_kv * a.n_ctx * c.hd), vc(kc.size());
        for (size_t i = 0; i < kc.size(); i++) {
            const int j = (int)(i / c.hd % a.n_ctx);
            const bool seen = j >= lo && j < c.pos0 + c.n_tok;
            kc[i] = __float2half_rn(seen ? 2.0f * frand() : INFINITY);
            vc[i] = __float2half_rn(seen ? frand() : INFINITY);
        }
        std::vector<float> sk;
        for (int h = 0; c.sink != 0.0f && h < c.n_head; h++)
            sk.push_back(c.sink + frand());
        const std::vector<float> *sinks = c.sink != 0.0f ? &sk : nullptr;
        std::vector<double> ref;
        ref_attention(a, q, kc, vc, ref, sinks ? sk.data() : nullptr);
        for (int n_split : {c.n_split, 1}) {
            a.n_split = n_split;
            auto o = run_attention_decode(a, q, kc, vc, c.pos_dev, sinks);
            char what[120];
            snprintf(what, sizeof what,
                     "attn decode %d tok %dh/%dkv hd %d at %d swa %d split %d%s sink %g", c.n_tok,
                     c.n_head, c.n_kv, c.hd, c.pos0, c.swa, n_split, c.pos_dev ? " pos_dev" : "",
                     c.sink);
            check(what, o.data(), ref.data(), ref.size(), TOL_ATTN);
            if (c.n_split == 1)
                break;
        }
    }
}

/* ---- the q8_0 cache ----
 *
 * A host q8_0 cache part (codes (n_kv, n_ctx, hd), a scale per 32 dims) and
 * the reference quantiser: quant.h's Q8_0 rounding, d = half(max|x| / 127),
 * code = rint(x / d) clamped, which the store kernels must match exactly
 * (the same IEEE operations in the same order, no fast math). */
struct q8_host {
    std::vector<int8_t> q;
    std::vector<__half> d;
};

static void q8_quant_block(const float *x, int8_t *q, __half *d)
{
    float amax = 0.0f;
    for (int e = 0; e < 32; e++)
        amax = fmaxf(amax, fabsf(x[e]));
    *d = __float2half_rn(amax / 127.0f);
    const float df = __half2float(*d), id = df != 0.0f ? 1.0f / df : 0.0f;
    for (int e = 0; e < 32; e++)
        q[e] = (int8_t)fmaxf(-128.0f, fminf(127.0f, rintf(x[e] * id)));
}

/* ROWS rows of HD floats into a q8_0 part. */
static q8_host q8_quant(const std::vector<float> &x, int hd)
{
    q8_host h;
    h.q.resize(x.size());
    h.d.resize(x.size() / 32);
    for (size_t b = 0; b < x.size() / 32; b++)
        q8_quant_block(&x[b * 32], &h.q[b * 32], &h.d[b]);
    (void)hd;
    return h;
}

static std::vector<float> q8_dequant(const q8_host &h)
{
    std::vector<float> f(h.q.size());
    for (size_t i = 0; i < f.size(); i++)
        f[i] = __half2float(h.d[i / 32]) * (float)h.q[i];
    return f;
}

static kv_q8_cache q8_dev(const q8_host &h)
{
    kv_q8_cache c;
    c.q = dev(h.q);
    c.d = dev(h.d);
    return c;
}

static q8_host q8_back(const kv_q8_cache &c, size_t n)
{
    q8_host h;
    h.q = host(c.q, n);
    h.d = host(c.d, n / 32);
    return h;
}

static void q8_free(kv_q8_cache &c) { cudaFree(c.q), cudaFree(c.d); }

/* Codes and scales of GOT equal WANT's exactly, and WANT dequantised is
 * within half a step (max|x| / 254 of each block) of the floats X it came
 * from. */
static void check_q8(const char *what, const q8_host &got, const q8_host &want,
                     const std::vector<double> &x)
{
    size_t bad = 0;
    for (size_t i = 0; i < want.q.size(); i++)
        bad += got.q[i] != want.q[i];
    for (size_t b = 0; b < want.d.size(); b++)
        bad += __half_as_ushort(got.d[b]) != __half_as_ushort(want.d[b]);
    double worst = 0;
    for (size_t b = 0; b < want.d.size(); b++) {
        double amax = 0, e = 0;
        for (int j = 0; j < 32; j++)
            amax = fmax(amax, fabs(x[b * 32 + j]));
        for (int j = 0; j < 32; j++)
            e = fmax(e, fabs(__half2float(want.d[b]) * want.q[b * 32 + j] - x[b * 32 + j]));
        worst = amax > 0 ? fmax(worst, e / amax) : worst;
    }
    printf("%-34s %zu codes/scales differ; %.2e of block max (tol %.2e)\n", what, bad, worst,
           1.0 / 254 * 1.01);
    if (bad)
        fail_msg("%s: %zu codes or scales differ from the reference quantiser", what, bad);
    if (!(worst <= 1.0 / 254 * 1.01)) /* the f16 scale moves the step by 2^-11 */
        fail_msg("%s: %.3e of a block's max", what, worst);
    if (kvemu_report_count())
        fail_msg("%s: device emulator: %s", what, kvemu_last_report());
}

/* kv_store_kv_q8: 3 tokens at 4 of a 9-token cache, 2 KV heads of 64 dims
 * (2 blocks a head), the rest of the cache untouched (all zero). */
static void test_kv_store_q8(void **state)
{
    (void)state;
    const int32_t nt = 3, nkv = 2, hd = 64, pos0 = 4, nctx = 9;
    auto k = randv((size_t)nt * nkv * hd), v = randv((size_t)nt * nkv * hd);
    for (size_t i = 0; i < v.size(); i++)
        v[i] *= i % 97 == 0 ? 40.0f : 1.0f; /* blocks with one large element */
    for (int e = 0; e < 32; e++)
        k[e] = 0.0f; /* an all-zero block: scale 0, codes 0 */
    q8_host z;
    z.q.assign((size_t)nkv * nctx * hd, 0);
    z.d.assign(z.q.size() / 32, __float2half_rn(0.0f));
    float *dk = dev(k), *dv = dev(v);
    kv_q8_cache kc = q8_dev(z), vc = q8_dev(z);
    assert_int_equal(kv_store_kv_q8(dk, dv, kc, vc, nt, nkv, hd, pos0, nctx, 0), cudaSuccess);
    std::vector<float> rk(z.q.size(), 0.0f), rv(z.q.size(), 0.0f);
    for (int32_t t = 0; t < nt; t++)
        for (int32_t h = 0; h < nkv; h++)
            for (int32_t d = 0; d < hd; d++) {
                size_t o = ((size_t)h * nctx + pos0 + t) * hd + d;
                rk[o] = k[((size_t)t * nkv + h) * hd + d];
                rv[o] = v[((size_t)t * nkv + h) * hd + d];
            }
    check_q8("kv_store q8_0 K (3 tokens at 4 of 9)", q8_back(kc, z.q.size()), q8_quant(rk, hd),
             std::vector<double>(rk.begin(), rk.end()));
    check_q8("kv_store q8_0 V", q8_back(vc, z.q.size()), q8_quant(rv, hd),
             std::vector<double>(rv.begin(), rv.end()));
    /* a head size that is not whole blocks is refused */
    assert_int_equal(kv_store_kv_q8(dk, dv, kc, vc, 1, 1, 48, 0, nctx, 0), cudaErrorInvalidValue);
    cudaFree(dk), cudaFree(dv), q8_free(kc), q8_free(vc);
}

/* kv_rope_store_q8 against kv_rope_store's reference: Q rotated in place
 * (1e-5), K left as it was, and the cache the reference quantiser's codes of
 * the rotated K (computed in double here, so a code may sit across a
 * rounding edge: the cache is checked within half a step of the double
 * values, not code for code) and of V (code for code). 40 of 64 dims
 * rotated, 5 query heads over 2 (5 x 20 Q pairs: not whole warps), 2
 * tokens at a device position, a YaRN cos/sin factor of 1.25. */
static void test_rope_store_q8(void **state)
{
    (void)state;
    for (int neox = 0; neox < 2; neox++) {
        const int32_t nt = 2, nh = 5, nkv = 2, hd = 64, nrot = 40, pos0 = 6, nctx = 11;
        auto q = randv((size_t)nt * nh * hd), k = randv((size_t)nt * nkv * hd),
             v = randv((size_t)nt * nkv * hd);
        std::vector<float> inv(nrot / 2);
        for (int i = 0; i < nrot / 2; i++)
            inv[i] = (float)pow(10000.0, -2.0 * i / nrot);
        q8_host z;
        z.q.assign((size_t)nkv * nctx * hd, 0);
        z.d.assign(z.q.size() / 32, __float2half_rn(0.0f));
        std::vector<int32_t> pos = {pos0};
        float *dq = dev(q), *dk = dev(k), *dv = dev(v), *di = dev(inv);
        kv_q8_cache kc = q8_dev(z), vc = q8_dev(z);
        int32_t *dp = dev(pos);
        const float ms = 1.25f;
        assert_int_equal(kv_rope_store_q8(dq, dk, dv, kc, vc, nt, nh, nkv, hd, nrot, dp, nctx, di,
                                          ms, neox, 0),
                         cudaSuccess);
        auto rot = [&](std::vector<double> &x, int32_t nhead) {
            for (int32_t t = 0; t < nt; t++)
                for (int32_t h = 0; h < nhead; h++)
                    for (int i = 0; i < nrot / 2; i++) {
                        double *r = &x[((size_t)t * nhead + h) * hd];
                        int i0 = neox ? i : 2 * i, i1 = neox ? i + nrot / 2 : 2 * i + 1;
                        double ang = (double)(pos0 + t) * inv[i];
                        double a = r[i0], b = r[i1];
                        float c = (float)cos(ang) * ms, sn = (float)sin(ang) * ms;
                        r[i0] = a * c - b * sn;
                        r[i1] = a * sn + b * c;
                    }
        };
        std::vector<double> rq(q.begin(), q.end()), rk(k.begin(), k.end());
        rot(rq, nh);
        rot(rk, nkv);
        std::vector<double> ck(z.q.size(), 0.0);
        std::vector<float> cv(z.q.size(), 0.0f);
        for (int32_t t = 0; t < nt; t++)
            for (int32_t h = 0; h < nkv; h++)
                for (int32_t d = 0; d < hd; d++) {
                    size_t o = ((size_t)h * nctx + pos0 + t) * hd + d;
                    ck[o] = rk[((size_t)t * nkv + h) * hd + d];
                    cv[o] = v[((size_t)t * nkv + h) * hd + d];
                }
        check(neox ? "rope_store q8_0 neox Q" : "rope_store q8_0 Q", host(dq, q.size()).data(),
              rq.data(), rq.size(), TOL_F32);
        /* K: within half a step (plus the float rotation's 1e-6) of the
         * double rotation, block by block */
        auto gk = q8_dequant(q8_back(kc, z.q.size()));
        double worst = 0;
        for (size_t b = 0; b < ck.size() / 32; b++) {
            double amax = 0, e = 0;
            for (int j = 0; j < 32; j++)
                amax = fmax(amax, fabs(ck[b * 32 + j]));
            for (int j = 0; j < 32; j++)
                e = fmax(e, fabs(gk[b * 32 + j] - ck[b * 32 + j]));
            worst = amax > 0 ? fmax(worst, e / amax) : (e > 0 ? INFINITY : worst);
        }
        printf("%-34s %.2e of block max (tol %.2e)\n", "rope_store q8_0 K cache", worst,
               1.0 / 254 * 1.01 + 1e-5);
        assert_true(worst <= 1.0 / 254 * 1.01 + 1e-5);
        check_q8("rope_store q8_0 V cache", q8_back(vc, z.q.size()), q8_quant(cv, hd),
                 std::vector<double>(cv.begin(), cv.end()));
        std::vector<double> k0(k.begin(), k.end());
        check("rope_store q8_0 K untouched", host(dk, k.size()).data(), k0.data(), k0.size(), 0.0);
        cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(di), cudaFree(dp);
        q8_free(kc), q8_free(vc);
    }
}

/* Flash-decoding over a q8_0 cache against the double reference of the
 * same cache dequantised (exact in f32): 1e-5, as the f16 path. Head sizes
 * 64, 128, 256 and 96, 160 (lanes past the head in the 128 and 256
 * classes); GQA 1, 3, 4, 8; contexts 1, 31, 257, 4097; windows; 2..8
 * tokens; the position from device memory; splits and one split. Rows no
 * query may see hold an infinite scale, so a stray read shows. */
static void test_attention_decode_q8(void **state)
{
    (void)state;
    static const struct {
        int n_tok, n_head, n_kv, hd, pos0, swa, n_split;
        bool pos_dev;
    } cases[] = {
        {1, 1, 1, 64, 0, 0, 1, false},       {1, 4, 1, 128, 30, 0, 5, false},
        {1, 8, 1, 256, 256, 0, 7, true},     {1, 16, 2, 64, 4096, 0, 32, false},
        {1, 3, 1, 96, 70, 0, 3, false},      {1, 8, 2, 160, 300, 64, 4, true},
        {4, 8, 2, 128, 257, 0, 3, false},    {8, 4, 1, 64, 30, 0, 1, false},
        {2, 4, 1, 256, 300, 100, 4, false},  {3, 2, 1, 32, 0, 0, 2, false},
    };
    for (const auto &c : cases) {
        kv_attn_args a;
        memset(&a, 0, sizeof a);
        a.n_tok = c.n_tok, a.n_head = c.n_head, a.n_kv = c.n_kv, a.hd = c.hd;
        a.n_ctx = c.pos0 + c.n_tok + 5;
        a.pos0 = c.pos0, a.swa = c.swa;
        a.scale = 1.0f / sqrtf((float)c.hd);
        auto q = randv((size_t)c.n_tok * c.n_head * c.hd);
        const int lo = c.swa > 0 && c.pos0 - c.swa + 1 > 0 ? c.pos0 - c.swa + 1 : 0;
        std::vector<float> kf((size_t)c.n_kv * a.n_ctx * c.hd), vf(kf.size());
        for (size_t i = 0; i < kf.size(); i++)
            kf[i] = 2.0f * frand(), vf[i] = frand();
        q8_host kh = q8_quant(kf, c.hd), vh = q8_quant(vf, c.hd);
        for (size_t b = 0; b < kh.d.size(); b++) {
            const int j = (int)(b * 32 / c.hd % a.n_ctx);
            if (j < lo || j >= c.pos0 + c.n_tok)
                kh.d[b] = vh.d[b] = __float2half_rn(INFINITY);
        }
        std::vector<float> kr = q8_dequant(kh), vr = q8_dequant(vh);
        std::vector<double> ref;
        ref_attention(a, q, kr, vr, ref);
        for (int n_split : {c.n_split, 1}) {
            kv_attn_args r = a;
            r.n_split = n_split;
            std::vector<float> o(q.size(), NAN),
                part((size_t)n_split * r.n_tok * r.n_head * (r.hd + 2));
            std::vector<int32_t> pos = {r.pos0};
            int32_t *dpos = c.pos_dev ? dev(pos) : nullptr;
            if (c.pos_dev)
                r.pos0 = -7;
            r.q = dev(q);
            r.kq = q8_dev(kh);
            r.vq = q8_dev(vh);
            r.out = dev(o);
            r.part = dev(part);
            assert_int_equal(kv_attention_decode(&r, dpos, 0), cudaSuccess);
            o = host(r.out, o.size());
            char what[120];
            snprintf(what, sizeof what,
                     "attn decode q8_0 %d tok %dh/%dkv hd %d at %d swa %d split %d%s", c.n_tok,
                     c.n_head, c.n_kv, c.hd, c.pos0, c.swa, n_split, c.pos_dev ? " pos_dev" : "");
            check(what, o.data(), ref.data(), ref.size(), TOL_ATTN);
            cudaFree((void *)r.q), q8_free(r.kq), q8_free(r.vq), cudaFree(r.out);
            cudaFree(r.part), cudaFree(dpos);
            if (c.n_split == 1)
                break;
        }
    }
    /* q8_0 needs whole blocks per head */
    kv_attn_args a;
    memset(&a, 0, sizeof a);
    a.n_tok = 1, a.n_head = 2, a.n_kv = 1, a.hd = 40, a.n_ctx = 8, a.n_split = 1;
    int8_t one = 0;
    a.kq.q = a.vq.q = &one;
    a.kq.d = a.vq.d = (__half *)&one;
    assert_int_equal(kv_attention_decode(&a, nullptr, 0), cudaErrorInvalidValue);
}

static void test_attention_decode_splits(void **state)
{
    (void)state;
    kv_attn_args a;
    memset(&a, 0, sizeof a);
    a.n_tok = 1, a.n_head = 32, a.n_kv = 8, a.hd = 128, a.n_ctx = 4096;
    /* 8 blocks a split; 3 x 132 blocks wanted; 4096 / 128 keys cap it. */
    assert_int_equal(kv_attn_decode_splits(132, &a, 512), 32);
    /* The position does not matter (a graph replays the same grid). */
    a.pos0 = 4000;
    assert_int_equal(kv_attn_decode_splits(132, &a, 512), 32);
    /* A sliding-window layer splits its window, not the context. */
    a.n_ctx = 32768, a.swa = 512;
    assert_int_equal(kv_attn_decode_splits(132, &a, 512), 4);
    /* Few KV heads: more splits, up to the cap and the scratch's room. */
    a.swa = 0, a.n_kv = 1, a.n_head = 4;
    assert_int_equal(kv_attn_decode_splits(132, &a, 512), KV_ATTN_DEC_MAX_SPLIT);
    assert_int_equal(kv_attn_decode_splits(132, &a, 10), 10);
    /* A short context, or a GPU the heads fill: one split. */
    a.n_ctx = 100;
    assert_int_equal(kv_attn_decode_splits(132, &a, 512), 1);
    a.n_ctx = 4096, a.n_kv = 64, a.n_head = 512;
    assert_int_equal(kv_attn_decode_splits(2, &a, 512), 1);
    /* More tokens than the decode path takes are refused. */
    a.n_tok = KV_ATTN_DEC_MAX_TOK + 1, a.n_split = 1;
    assert_int_equal(kv_attention_decode(&a, nullptr, 0), cudaErrorInvalidValue);
}

/* The K or V tile a prefill gather writes: keys K0 .. K0 + NK - 1 of every
 * KV head of a (nkv, nctx, hd) cache, element i of which is SRC(i), at rows
 * 0 .. NK - 1 of that head's TILE rows; the rows past NK stay zero. */
template <typename F>
static std::vector<double> kv_tile_ref(int nkv, int nctx, int hd, int k0, int nk, int tile, F src)
{
    std::vector<double> r((size_t)nkv * tile * hd, 0.0);
    for (int kvh = 0; kvh < nkv; kvh++)
        for (int j = 0; j < nk; j++)
            for (int d = 0; d < hd; d++)
                r[((size_t)kvh * tile + j) * hd + d] = src(((size_t)kvh * nctx + k0 + j) * hd + d);
    return r;
}

/* The prefill attention's gathers: Q rows of tokens T0.. into (kvh, token x
 * group, hd) bf16, and K/V keys K0.. into (kvh, tile, hd) bf16. */
static void test_prefill_gathers(void **state)
{
    (void)state;
    const int nt = 7, nh = 6, nkv = 2, hd = 10, t0 = 2, cq = 4, group = nh / nkv;
    auto q = randv((size_t)nt * nh * hd);
    std::vector<__nv_bfloat16> zq((size_t)cq * nh * hd);
    float *dq = dev(q);
    __nv_bfloat16 *dqb = dev(zq);
    assert_int_equal(kv_attn_q_bf16(dq, dqb, nh, nkv, hd, t0, cq, 0), cudaSuccess);
    std::vector<double> rq(zq.size());
    for (int kvh = 0; kvh < nkv; kvh++)
        for (int t = 0; t < cq; t++)
            for (int g = 0; g < group; g++)
                for (int d = 0; d < hd; d++)
                    rq[(((size_t)kvh * cq + t) * group + g) * hd + d] =
                        q[((size_t)(t0 + t) * nh + kvh * group + g) * hd + d];
    auto gq = bf16s(host(dqb, zq.size()));
    check("prefill Q gather (4 of 7 tok, 6h/2kv)", gq.data(), rq.data(), rq.size(), TOL_BF16);
    assert_true(elem_rel_err(gq.data(), rq.data(), rq.size()) <= TOL_BF16);

    const int nctx = 40, k0 = 9, nk = 13, tile = 16;
    std::vector<__half> kc((size_t)nkv * nctx * hd), vc(kc.size());
    for (size_t i = 0; i < kc.size(); i++)
        kc[i] = __float2half_rn(2.0f * frand()), vc[i] = __float2half_rn(frand());
    std::vector<__nv_bfloat16> zk((size_t)nkv * tile * hd, __float2bfloat16_rn(0.0f));
    __half *dkc = dev(kc), *dvc = dev(vc);
    __nv_bfloat16 *dkb = dev(zk), *dvb = dev(zk);
    assert_int_equal(kv_attn_kv_bf16(dkc, dvc, dkb, dvb, nkv, nctx, hd, k0, nk, tile, 0),
                     cudaSuccess);
    auto rk = kv_tile_ref(nkv, nctx, hd, k0, nk, tile, [&](size_t i) { return __half2float(kc[i]); });
    auto rv = kv_tile_ref(nkv, nctx, hd, k0, nk, tile, [&](size_t i) { return __half2float(vc[i]); });
    auto gk = bf16s(host(dkb, zk.size())), gv = bf16s(host(dvb, zk.size()));
    check("prefill K tile (13 keys at 9)", gk.data(), rk.data(), rk.size(), TOL_BF16);
    check("prefill V tile", gv.data(), rv.data(), rv.size(), TOL_BF16);
    assert_true(elem_rel_err(gk.data(), rk.data(), rk.size()) <= TOL_BF16);
    cudaFree(dq), cudaFree(dqb), cudaFree(dkc), cudaFree(dvc), cudaFree(dkb), cudaFree(dvb);
}

/* One online-softmax step: rows with history (finite m) and without (-inf),
 * rows the tile shows nothing (causal edge, window), a tile shorter than its
 * stride and not a multiple of 32, and rows outside [r_lo, r_hi) untouched. */
static void test_prefill_softmax_tile(void **state)
{
    (void)state;
    static const struct {
        int nkv, group, hd, tile, nk, k0, qpos0, swa, cq, t_lo;
    } cases[] = {
        {2, 3, 20, 48, 45, 10, 12, 0, 9, 1},
        {1, 2, 72, 64, 64, 0, 30, 20, 11, 0},
        {3, 1, 8, 40, 7, 33, 30, 6, 6, 2},
    };
    for (const auto &c : cases) {
        const int64_t R = (int64_t)c.cq * c.group, rows = R * c.nkv;
        auto sv = randv((size_t)rows * c.tile);
        for (float &x : sv)
            x *= 6.0f;
        auto acc = randv((size_t)rows * c.hd);
        std::vector<float2> ml((size_t)rows);
        for (int64_t i = 0; i < rows; i++)
            ml[i] = i % 3 == 0 ? make_float2(-INFINITY, 0.0f)
                               : make_float2(4.0f * frand(), 1.0f + frand() * 0.5f + 0.5f);
        for (int64_t i = 0; i < rows; i++)
            if (ml[i].x == -INFINITY)
                for (int d = 0; d < c.hd; d++)
                    acc[i * c.hd + d] = 0.0f; /* an empty row's accumulator is 0 */
        std::vector<__nv_bfloat16> pz((size_t)rows * c.tile, __float2bfloat16_rn(-7.0f));
        float *ds = dev(sv), *dacc = dev(acc);
        float2 *dml = dev(ml);
        __nv_bfloat16 *dp = dev(pz);
        kv_attn_tile_args a;
        a.s = ds, a.p = dp, a.ml = dml, a.acc = dacc;
        a.rows = R, a.r_lo = (int64_t)c.t_lo * c.group, a.r_hi = R;
        a.n_kv = c.nkv, a.group = c.group, a.hd = c.hd, a.tile = c.tile, a.nk = c.nk;
        a.k0 = c.k0, a.qpos0 = c.qpos0, a.swa = c.swa;
        assert_int_equal(kv_attn_softmax_tile(&a, 0), cudaSuccess);

        std::vector<double> rp((size_t)rows * c.tile), rm(rows), rl(rows),
            racc((size_t)rows * c.hd);
        std::vector<float> gp_all = bf16s(host(dp, pz.size()));
        std::vector<float> gm(rows), gl(rows), gp(rp.size());
        auto gml = host(dml, (size_t)rows);
        auto gacc = host(dacc, acc.size());
        for (int kvh = 0; kvh < c.nkv; kvh++)
            for (int64_t r = 0; r < R; r++) {
                int64_t row = kvh * R + r;
                bool in = r >= a.r_lo;
                int qpos = c.qpos0 + (int)(r / c.group);
                double mt = -INFINITY;
                for (int j = 0; j < c.nk; j++) {
                    int key = c.k0 + j;
                    if (key <= qpos && !(c.swa > 0 && qpos - key >= c.swa))
                        mt = fmax(mt, sv[row * c.tile + j]);
                }
                double m0 = ml[row].x, mn = fmax(m0, mt);
                double corr = m0 == -INFINITY ? 0.0 : exp(m0 - mn);
                double ps = 0;
                for (int j = 0; j < c.tile; j++) {
                    int key = c.k0 + j;
                    double e = 0;
                    if (j < c.nk && mt != -INFINITY && key <= qpos &&
                        !(c.swa > 0 && qpos - key >= c.swa))
                        e = exp(sv[row * c.tile + j] - mn);
                    ps += e;
                    /* Past nk and outside the rows: the poison stays. */
                    rp[row * c.tile + j] = in && j < c.nk ? e : -7.0;
                }
                rm[row] = in ? mn : m0;
                rl[row] = in ? ml[row].y * corr + ps : ml[row].y;
                for (int d = 0; d < c.hd; d++)
                    racc[row * c.hd + d] = in ? acc[row * c.hd + d] * corr : acc[row * c.hd + d];
                gm[row] = gml[row].x;
                gl[row] = gml[row].y;
            }
        char what[100];
        snprintf(what, sizeof what, "softmax tile %dkv x %d, %d of %d keys at %d swa %d", c.nkv,
                 c.group, c.nk, c.tile, c.k0, c.swa);
        /* P (<= 1) within half a bf16 ulp of 1; the poison exactly kept. */
        double pe = 0;
        for (size_t i = 0; i < rp.size(); i++) {
            if (rp[i] == -7.0)
                assert_true(gp_all[i] == -7.0f);
            else
                pe = fmax(pe, fabs(gp_all[i] - rp[i]));
        }
        printf("%-34s %.2e (tol %.0e)\n", what, pe, TOL_BF16);
        if (!(pe <= TOL_BF16))
            fail_msg("%s: P error %.3e", what, pe);
        /* m: -inf where the row has seen nothing yet; compare the finite ones. */
        for (int64_t i = 0; i < rows; i++) {
            if (rm[i] == -INFINITY) {
                assert_true(gm[i] == -INFINITY);
                gm[i] = 0.0f, rm[i] = 0.0;
            }
        }
        check("  running max", gm.data(), rm.data(), rm.size(), TOL_F32);
        check("  running sum", gl.data(), rl.data(), rl.size(), TOL_BF16);
        check("  rescaled accumulator", gacc.data(), racc.data(), racc.size(), TOL_F32);
        cudaFree(ds), cudaFree(dacc), cudaFree(dml), cudaFree(dp);
    }
}

static void test_prefill_finish(void **state)
{
    (void)state;
    const int nt = 9, nh = 6, nkv = 3, hd = 14, t0 = 3, cq = 5, group = nh / nkv;
    const int64_t rows = (int64_t)nkv * cq * group;
    auto acc = randv((size_t)rows * hd);
    std::vector<float2> ml((size_t)rows);
    for (auto &x : ml)
        x = make_float2(frand(), 0.5f + frand() * 0.25f + 0.25f);
    std::vector<float> out((size_t)nt * nh * hd, 42.0f);
    float *dacc = dev(acc), *dout = dev(out);
    float2 *dml = dev(ml);
    assert_int_equal(kv_attn_finish(dacc, dml, nullptr, dout, nh, nkv, hd, t0, cq, 0), cudaSuccess);
    std::vector<double> ref(out.begin(), out.end());
    for (int t = 0; t < cq; t++)
        for (int h = 0; h < nh; h++) {
            int64_t row = ((int64_t)(h / group) * cq + t) * group + h % group;
            for (int d = 0; d < hd; d++)
                ref[((size_t)(t0 + t) * nh + h) * hd + d] = acc[row * hd + d] / (double)ml[row].y;
        }
    check("prefill finish (5 of 9 tok at 3)", host(dout, out.size()).data(), ref.data(),
          ref.size(), TOL_F32);
    cudaFree(dacc), cudaFree(dout), cudaFree(dml);
}

/* One prefill attention case: its shape, the sinks' mean (spread 1; 0:
 * none) and the cache type (f16, or q8_0 when Q8). */
struct prefill_case {
    int n_tok, n_head, n_kv, hd, pos0, swa, q_chunk, tile;
    float sink;
    bool q8;
};

/* Runs C's whole prefill attention (both GEMMs on the emulator's cuBLAS)
 * against the double reference fed the same bf16-rounded Q, K and V (from
 * the f16 cache, or the q8_0 cache's dequantised values: the gather
 * dequantises into the bf16 tiles, each bf16(d * q) with d * q exact in
 * f32), within TOL_PREFILL of max|V|. */
static void run_prefill_case(cublasHandle_t blas, const prefill_case &c)
{
    const char *kind = c.q8 ? "q8_0" : "f16";
    kv_attn_args r;
    memset(&r, 0, sizeof r);
    r.n_tok = c.n_tok, r.n_head = c.n_head, r.n_kv = c.n_kv, r.hd = c.hd;
    r.n_ctx = c.pos0 + c.n_tok + 3, r.pos0 = c.pos0, r.swa = c.swa;
    r.scale = 1.0f / sqrtf((float)c.hd);
    auto q = randv((size_t)c.n_tok * c.n_head * c.hd);
    /* the cache as floats, then stored f16 or q8_0; KR, VR its values */
    std::vector<float> kf((size_t)c.n_kv * r.n_ctx * c.hd), vf(kf.size()), kr, vr;
    for (size_t i = 0; i < kf.size(); i++)
        kf[i] = 2.0f * frand(), vf[i] = frand();
    std::vector<__half> kc, vc;
    q8_host kh, vh;
    if (c.q8) {
        kh = q8_quant(kf, c.hd), vh = q8_quant(vf, c.hd);
        kr = q8_dequant(kh), vr = q8_dequant(vh);
    } else {
        for (size_t i = 0; i < kf.size(); i++) {
            kc.push_back(__float2half_rn(kf[i]));
            vc.push_back(__float2half_rn(vf[i]));
            kr.push_back(__half2float(kc[i]));
            vr.push_back(__half2float(vc[i]));
        }
    }
    /* the reference's operands: bf16 values */
    std::vector<float> qr(q.size());
    double vmax = 0;
    for (size_t i = 0; i < q.size(); i++)
        qr[i] = bf16_round(q[i]);
    for (size_t i = 0; i < kr.size(); i++) {
        kr[i] = bf16_round(kr[i]);
        vr[i] = bf16_round(vr[i]);
        vmax = fmax(vmax, fabs(vr[i]));
    }
    std::vector<float> sk;
    for (int h = 0; c.sink != 0.0f && h < c.n_head; h++)
        sk.push_back(c.sink + frand());
    std::vector<double> ref;
    ref_attention(r, qr, kr, vr, ref, c.sink != 0.0f ? sk.data() : nullptr);

    const size_t qrows = (size_t)c.q_chunk * c.n_head;
    kv_attn_prefill_args a;
    memset(&a, 0, sizeof a);
    a.n_tok = c.n_tok, a.n_head = c.n_head, a.n_kv = c.n_kv, a.hd = c.hd;
    a.n_ctx = r.n_ctx, a.pos0 = c.pos0, a.swa = c.swa, a.scale = r.scale;
    a.q_chunk = c.q_chunk, a.tile = c.tile;
    a.sinks = c.sink != 0.0f ? dev(sk) : nullptr;
    std::vector<float> o(q.size(), NAN);
    a.q = dev(q);
    if (c.q8) {
        a.kq = q8_dev(kh);
        a.vq = q8_dev(vh);
    } else {
        a.kc = dev(kc);
        a.vc = dev(vc);
    }
    a.out = dev(o);
    std::vector<__nv_bfloat16> zq(qrows * c.hd), zk((size_t)c.n_kv * c.tile * c.hd),
        zp(qrows * c.tile);
    std::vector<float> zs(qrows * c.tile), zacc(qrows * c.hd);
    std::vector<float2> zml(qrows);
    a.qb = dev(zq), a.kb = dev(zk), a.vb = dev(zk), a.p = dev(zp);
    a.s = dev(zs), a.acc = dev(zacc), a.ml = dev(zml);
    char err[256] = "";
    if (kv_attention_prefill(&a, blas, 0, err, sizeof err))
        fail_msg("prefill attention %s: %s", kind, err);
    auto got = host(a.out, o.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); i++) {
        double e = fabs(got[i] - ref[i]) / vmax;
        worst = e <= 1e300 ? fmax(worst, e) : INFINITY; /* NaN: infinitely wrong */
        if (worst == INFINITY)
            break;
    }
    printf("prefill attention %s %d tok %dh/%dkv hd %d at %d swa %d chunk %d tile %d sink %g: "
           "%.2e of max|V| (tol %.0e)\n",
           kind, c.n_tok, c.n_head, c.n_kv, c.hd, c.pos0, c.swa, c.q_chunk, c.tile, c.sink, worst,
           TOL_PREFILL);
    if (!(worst <= TOL_PREFILL))
        fail_msg("prefill attention %s: error %.3e of max|V|", kind, worst);
    if (kvemu_report_count())
        fail_msg("prefill attention %s: device emulator: %s", kind, kvemu_last_report());
    cudaFree((void *)a.q), cudaFree(a.out), cudaFree((void *)a.sinks);
    if (c.q8)
        q8_free(a.kq), q8_free(a.vq);
    else
        cudaFree((void *)a.kc), cudaFree((void *)a.vc);
    cudaFree(a.qb), cudaFree(a.kb), cudaFree(a.vb), cudaFree(a.p), cudaFree(a.s);
    cudaFree(a.acc), cudaFree(a.ml);
}

/* The whole prefill attention over either cache: several query chunks,
 * several key tiles, tiles cut by the causal edge and the window, a prefix
 * already in the cache, GQA groups of 1, 3 and 4, gpt-oss's sinks. */
static void test_attention_prefill(void **state)
{
    (void)state;
    static const prefill_case cases[] = {
        {37, 6, 2, 40, 30, 0, 16, 24, 0.0f, false},
        {29, 4, 1, 72, 0, 10, 29, 16, 0.0f, false},
        {12, 3, 3, 12, 5, 4, 5, 7, 0.0f, false},
        {50, 8, 2, 64, 3, 0, 50, 256, 0.0f, false},
        /* gpt-oss: sinks, a window of 5, and a sink far above every score
         * (the output all but 0, never inf/NaN) */
        {37, 4, 2, 16, 0, 5, 16, 24, 1.0f, false},
        {29, 6, 2, 40, 11, 0, 29, 16, 4.0f, false},
        {20, 2, 1, 12, 3, 3, 7, 8, 60.0f, false},
        /* the q8_0 cache (head sizes multiples of 32), with and without sinks */
        {37, 6, 2, 64, 30, 0, 16, 24, 0.0f, true},
        {29, 4, 1, 96, 0, 10, 29, 16, 0.0f, true},
        {12, 3, 3, 32, 5, 4, 5, 7, 0.0f, true},
        {29, 6, 2, 64, 11, 5, 29, 16, 4.0f, true},
    };
    cublasHandle_t blas;
    assert_int_equal(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
    assert_int_equal(cublasSetStream(blas, 0), CUBLAS_STATUS_SUCCESS);
    for (const auto &c : cases)
        run_prefill_case(blas, c);
    cublasDestroy(blas);
}

/* The q8_0 cache's K/V tile gather alone: each bf16(d * q) equal to the
 * bf16 of the dequantised reference, keys past the range left alone, and a
 * head size that is not a multiple of 32 refused. */
static void test_attention_prefill_q8_gather(void **state)
{
    (void)state;
    const int nkv = 2, hd = 64, nctx = 40, k0 = 9, nk = 13, tile = 16;
    std::vector<float> kf((size_t)nkv * nctx * hd), vf(kf.size());
    for (size_t i = 0; i < kf.size(); i++)
        kf[i] = 2.0f * frand(), vf[i] = frand();
    q8_host kh = q8_quant(kf, hd), vh = q8_quant(vf, hd);
    std::vector<float> kr = q8_dequant(kh), vr = q8_dequant(vh);
    kv_q8_cache kc = q8_dev(kh), vc = q8_dev(vh);
    std::vector<__nv_bfloat16> zk((size_t)nkv * tile * hd, __float2bfloat16_rn(0.0f));
    __nv_bfloat16 *dkb = dev(zk), *dvb = dev(zk);
    assert_int_equal(kv_attn_kv_q8_bf16(kc, vc, dkb, dvb, nkv, nctx, hd, k0, nk, tile, 0),
                     cudaSuccess);
    auto rk = kv_tile_ref(nkv, nctx, hd, k0, nk, tile, [&](size_t i) { return bf16_round(kr[i]); });
    auto rv = kv_tile_ref(nkv, nctx, hd, k0, nk, tile, [&](size_t i) { return bf16_round(vr[i]); });
    check("prefill q8_0 K tile (13 keys at 9)", bf16s(host(dkb, zk.size())).data(), rk.data(),
          rk.size(), 0.0);
    check("prefill q8_0 V tile", bf16s(host(dvb, zk.size())).data(), rv.data(), rv.size(), 0.0);
    assert_int_equal(kv_attn_kv_q8_bf16(kc, vc, dkb, dvb, nkv, nctx, 40, k0, nk, tile, 0),
                     cudaErrorInvalidValue);
    q8_free(kc), q8_free(vc), cudaFree(dkb), cudaFree(dvb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add),        cmocka_unit_test(test_glu),
        cmocka_unit_test(test_glu_clamp),
        cmocka_unit_test(test_convert),    cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),       cmocka_unit_test(test_kv_store),
        cmocka_unit_test(test_matvec_dequant_get_rows), cmocka_unit_test(test_matvec_x_range),
        cmocka_unit_test(test_repack), cmocka_unit_test(test_k4_scales),
        cmocka_unit_test(test_xbit),
        cmocka_unit_test(test_matvec_norm), cmocka_unit_test(test_matvec_glu),
        cmocka_unit_test(test_matvec3),
        cmocka_unit_test(test_attention_decode),
        cmocka_unit_test(test_attention_decode_splits),
        cmocka_unit_test(test_prefill_gathers),
        cmocka_unit_test(test_prefill_softmax_tile),
        cmocka_unit_test(test_prefill_finish),
        cmocka_unit_test(test_attention_prefill),
        cmocka_unit_test(test_rope_store),
        cmocka_unit_test(test_kv_store_q8),
        cmocka_unit_test(test_rope_store_q8),
        cmocka_unit_test(test_attention_decode_q8),
        cmocka_unit_test(test_attention_prefill_q8_gather),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_moe_route),
        cmocka_unit_test(test_matvec_x),
        cmocka_unit_test(test_moe_sum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
