/* test_kernels.cpp - every CUDA kernel of kernels/ alone, through its
 * launcher, against a double-precision CPU reference written here, over
 * shapes that are not multiples of the block size. Built as
 * test_kernels_emu, on the device emulator (tests/emu/), so it runs in every
 * build; a case also fails when the emulator reported a misuse.
 *
 * Tolerances (relative to the largest reference value), one per op:
 *   add, bias, glu, rmsnorm, rope, get_rows, matvec: 1e-5 (f32 math, the
 *     reference in double; rope's sin/cos are double on both sides);
 *   f32 -> f16, kv_store: the half rounding, 2^-11 relative per element;
 *   dequant -> f16: the same;
 *   attention: 1e-5 (the reference reads the same f16 K/V; f32 softmax vs
 *     double).
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
#include "sampler.h"
}
#include "wformat.cuh"

#define TOL_F32 1e-5
#define TOL_HALF (1.0 / 2048)
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

static void test_convert(void **state)
{
    (void)state;
    const int64_t n = 1001;
    auto x = randv(n);
    float *dx = dev(x);
    std::vector<__half> z(n);
    __half *dy = dev(z);
    assert_int_equal(kv_f32_to_f16(dx, dy, n, 0), cudaSuccess);
    std::vector<double> ref(x.begin(), x.end());
    check("f32 -> f16 (1001)", halves(host(dy, n)).data(), ref.data(), n, TOL_HALF);
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
    for (int neox = 0; neox < 2; neox++) {
        const int32_t nt = 3, nh = 5, hd = 24, nrot = 20, pos0 = 7;
        auto x = randv((size_t)nt * nh * hd);
        std::vector<float> inv(nrot / 2);
        for (int i = 0; i < nrot / 2; i++)
            inv[i] = (float)pow(10000.0, -2.0 * i / nrot);
        float *dx = dev(x), *di = dev(inv);
        assert_int_equal(kv_rope(dx, nt, nh, hd, nrot, pos0, di, neox, 0), cudaSuccess);
        std::vector<double> ref(x.begin(), x.end());
        for (int32_t t = 0; t < nt; t++)
            for (int32_t h = 0; h < nh; h++)
                for (int i = 0; i < nrot / 2; i++) {
                    double *v = &ref[((size_t)t * nh + h) * hd];
                    int i0 = neox ? i : 2 * i, i1 = neox ? i + nrot / 2 : 2 * i + 1;
                    double ang = (double)(pos0 + t) * inv[i];
                    double a = v[i0], b = v[i1];
                    v[i0] = a * (float)cos(ang) - b * (float)sin(ang);
                    v[i1] = a * (float)sin(ang) + b * (float)cos(ang);
                }
        check(neox ? "rope neox (3 x 5 x 24, 20 rotated)" : "rope (3 x 5 x 24, 20 rotated)",
              host(dx, x.size()).data(), ref.data(), ref.size(), TOL_F32);
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
    for (int neox = 0; neox < 2; neox++) {
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
                                       neox, 0),
                         cudaSuccess);
        auto rot = [&](std::vector<double> &x, int32_t nhead) {
            for (int32_t t = 0; t < nt; t++)
                for (int32_t h = 0; h < nhead; h++)
                    for (int i = 0; i < nrot / 2; i++) {
                        double *r = &x[((size_t)t * nhead + h) * hd];
                        int i0 = neox ? i : 2 * i, i1 = neox ? i + nrot / 2 : 2 * i + 1;
                        double ang = (double)(pos0 + t) * inv[i];
                        double a = r[i0], b = r[i1];
                        r[i0] = a * (float)cos(ang) - b * (float)sin(ang);
                        r[i1] = a * (float)sin(ang) + b * (float)cos(ang);
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
        check(neox ? "rope_store neox Q" : "rope_store Q", host(dq, q.size()).data(), rq.data(),
              rq.size(), TOL_F32);
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
    w->m.row_bytes = rb;
    w->m.d = dev(w->bytes);
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
    {GGML_TYPE_Q4_K, 512, 5}, {GGML_TYPE_Q6_K, 256, 3},
    {GGML_TYPE_F16, 4104, 13}, {GGML_TYPE_BF16, 2056, 3}, {GGML_TYPE_F32, 2312, 9},
};

static void test_matvec_dequant_get_rows(void **state)
{
    (void)state;
    for (const auto &t : k_mats) {
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

        /* Rows 1.. as f16. */
        int64_t nr = t.nrows - 1;
        std::vector<__half> z((size_t)(nr * t.ncols));
        __half *dh = dev(z);
        assert_int_equal(kv_dequant_f16(&w.m, 1, nr, dh, 0), cudaSuccess);
        std::vector<double> rd(w.deq.begin() + t.ncols, w.deq.end());
        snprintf(what, sizeof what, "dequant f16 %s rows 1..%lld", quant_type_name(t.type),
                 (long long)nr);
        check(what, halves(host(dh, z.size())).data(), rd.data(), rd.size(), TOL_HALF);

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

/* Causal GQA attention with an optional window, in double from the same f16
 * K/V the kernel reads. */
static void ref_attention(const kv_attn_args &a, const std::vector<float> &q,
                          const std::vector<__half> &kc, const std::vector<__half> &vc,
                          std::vector<double> &out)
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
                    d += (double)qq[e] * a.scale *
                         __half2float(kc[((size_t)kvh * a.n_ctx + j) * a.hd + e]);
                s[j] = d;
                mx = d > mx ? d : mx;
            }
            double l = 0;
            for (int j = 0; j <= qpos; j++)
                l += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
            double *o = &out[((size_t)t * a.n_head + h) * a.hd];
            for (int j = 0; j <= qpos; j++) {
                if (s[j] == -INFINITY)
                    continue;
                double p = exp(s[j] - mx) / l;
                for (int e = 0; e < a.hd; e++)
                    o[e] += p * __half2float(vc[((size_t)kvh * a.n_ctx + j) * a.hd + e]);
            }
        }
}

static void test_attention(void **state)
{
    (void)state;
    /* Prefill at an offset (tiles cut by the causal edge), a window, and a
     * decode step split over 3 blocks; head sizes 40 (one pair per lane,
     * partly masked) and 72 (two). */
    static const struct {
        int n_tok, n_head, n_kv, hd, pos0, swa, n_split;
    } cases[] = {
        {9, 6, 2, 40, 30, 0, 1},
        {5, 4, 1, 72, 3, 4, 1},
        {1, 3, 1, 40, 70, 0, 3},
        {1, 2, 2, 72, 50, 20, 2},
    };
    for (const auto &c : cases) {
        kv_attn_args a;
        memset(&a, 0, sizeof a);
        a.n_tok = c.n_tok, a.n_head = c.n_head, a.n_kv = c.n_kv, a.hd = c.hd;
        a.n_ctx = c.pos0 + c.n_tok + 3;
        a.pos0 = c.pos0, a.swa = c.swa, a.n_split = c.n_split;
        a.scale = 1.0f / sqrtf((float)c.hd);
        auto q = randv((size_t)c.n_tok * c.n_head * c.hd);
        std::vector<__half> kc((size_t)c.n_kv * a.n_ctx * c.hd), vc(kc.size());
        for (size_t i = 0; i < kc.size(); i++) {
            kc[i] = __float2half_rn(2.0f * frand());
            vc[i] = __float2half_rn(frand());
        }
        std::vector<float> o(q.size()),
            part((size_t)c.n_split * c.n_tok * c.n_head * (c.hd + 2));
        a.q = dev(q);
        a.kc = dev(kc);
        a.vc = dev(vc);
        a.out = dev(o);
        a.part = dev(part);
        assert_int_equal(kv_attention(&a, 0), cudaSuccess);
        std::vector<double> ref;
        ref_attention(a, q, kc, vc, ref);
        char what[100];
        snprintf(what, sizeof what, "attention %d tok %dh/%dkv hd %d at %d swa %d split %d",
                 c.n_tok, c.n_head, c.n_kv, c.hd, c.pos0, c.swa, c.n_split);
        check(what, host(a.out, o.size()).data(), ref.data(), ref.size(), TOL_ATTN);
        cudaFree((void *)a.q), cudaFree((void *)a.kc), cudaFree((void *)a.vc);
        cudaFree(a.out), cudaFree(a.part);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add),        cmocka_unit_test(test_glu),
        cmocka_unit_test(test_convert),    cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),       cmocka_unit_test(test_kv_store),
        cmocka_unit_test(test_matvec_dequant_get_rows),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_rope_store),
        cmocka_unit_test(test_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
