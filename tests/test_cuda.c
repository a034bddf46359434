/* test_cuda.c - the CUDA backend against the CPU backend and the naive
 * double-precision reference (ref_forward.c).
 *
 * It links the kernels directly (kv_cuda), not the module the engine loads:
 * it tests the kernels, and the registry has its own test (test_registry.c).
 * Without a usable CUDA device it says why and exits 77, which ctest counts
 * as skipped (SKIP_RETURN_CODE), not passed. With one: synthetic tiny models of every architecture and
 * weight type, with awkward shapes (n_embd not a multiple of 128, n_ff an odd
 * multiple of 32, head sizes 12/80/112/256, partial RoPE, scalar float rows),
 * are run through both backends on the same tokens; batch prefill is checked
 * against token-by-token decode; a long context exercises the split-K decode
 * attention and the sliding window across many tiles; and the error paths
 * (positions past the context, bad token ids, a model too big for the card).
 *
 * Built twice: test_cuda links the kernels as nvcc built them and needs a
 * device; test_cuda_emu (KVCHAT_CUDA_EMU) links the same sources compiled
 * for the device emulator (tests/emu/), so every case runs in CI without a
 * GPU, and a case also fails when the emulator reported a misuse (a barrier
 * or shuffle divergence, an unwritten shared read, an out-of-bounds access).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include "backend.h"
#include "backend_cuda.h"
#include "engine.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "ref_forward.h"
#include "sampler.h"
#include "synth.h"
#include "tiny_model.h"

#ifdef KVCHAT_CUDA_EMU
unsigned long kvemu_report_count(void);
const char *kvemu_last_report(void);
unsigned long kvemu_kernel_count(void);
unsigned long kvemu_graph_launch_count(void);
/* No emulator report since the last call. */
static void assert_no_emu_report(void)
{
    static unsigned long seen;
    unsigned long n = kvemu_report_count();
    if (n != seen) {
        unsigned long was = seen;
        seen = n;
        fail_msg("device emulator: %lu report(s), the last: %s", n - was, kvemu_last_report());
    }
}
#else
static void assert_no_emu_report(void) {}
#endif

/* ---- synthetic models (tiny_model.c, the same recipe as test_model.c) ---- */

#define MAX_IMAGES 64
static void *images[MAX_IMAGES];
static int n_images;

static void keep_image(void *img)
{
    assert_true(n_images < MAX_IMAGES);
    images[n_images++] = img;
}

static void free_images(void)
{
    while (n_images > 0)
        free(images[--n_images]);
}

/* The model S with weights from SEED, parsed from an image in memory. The
 * head size and rotated dimensions are always written as keys. */
static struct model *make_model(const struct tiny_spec *spec, uint64_t seed)
{
    struct tiny_spec s = *spec;
    s.head_dim_key = s.n_rot_key = true;
    struct gguf_writer *w = tiny_writer(&s, seed);
    size_t size = 0;
    void *img = gguf_writer_to_memory(w, &size);
    assert_non_null(img);
    gguf_writer_free(w);
    /* The reader borrows the image and the model owns the reader, so the
     * image is kept in a list freed at teardown. */
    char err[512];
    struct gguf *g = gguf_open_memory(img, size, "synthetic", err, sizeof err);
    if (!g)
        fail_msg("synthetic %s/%s: %s", s.arch, quant_type_name(s.wtype), err);
    struct model *m = model_from_gguf(g, err, sizeof err);
    if (!m)
        fail_msg("synthetic %s/%s: %s", s.arch, quant_type_name(s.wtype), err);
    keep_image(img);
    return m;
}

/* A backend of OPS on M with the KV cache type KV (AUTO: the backend's). */
static void *backend_new_kv(const struct backend_ops *ops, const struct model *m, int n_ctx,
                            enum engine_kv_type kv)
{
    struct backend_config cfg = {.n_ctx = n_ctx, .n_threads = 2, .kv_type = kv};
    char err[512];
    void *b = ops->create(m, &cfg, err, sizeof err);
    if (!b)
        fail_msg("%s create (kv %d): %s", ops->name, (int)kv, err);
    return b;
}

static void *backend_new(const struct backend_ops *ops, const struct model *m, int n_ctx)
{
    struct backend_config cfg = {.n_ctx = n_ctx, .n_threads = 2};
    char err[512];
    void *b = ops->create(m, &cfg, err, sizeof err);
    if (!b)
        fail_msg("%s create: %s", ops->name, err);
    return b;
}

/* Tolerances, relative to the largest logit.
 * Against the double reference: the CUDA decode path multiplies exact
 * dequantised weights with f32 activations, but the KV cache is f16 and
 * prefill GEMMs (projections and attention) take bf16 operands (8
 * significant bits, unit roundoff u = 2^-8), so a few 1e-3 per layer,
 * amplified by a random model: 2e-2 for every type (measured at most 9.3e-3
 * on the emulator, qwen2-q4_0).
 * Against the CPU backend: add the CPU's 8-bit activation quantisation
 * (test_model.c allows 5e-2 for it against the reference): 7e-2. */
#define TOL_REF 2e-2
#define TOL_CPU 7e-2
/* Batch (GEMM, bf16 operands) vs one by one (matvec, f32). */
#define TOL_SEQ 2e-2
/* The last row alone (output projection by the f32 matvec) vs the batch's
 * (the GEMM, both operands rounded to bf16). The error of that one product
 * is proportional to the operands' unit roundoff: with f16 (u = 2^-11) it
 * measured 5e-5 to 3e-4 and was allowed 1e-3; bf16's u = 2^-8 is 8 times
 * larger, so the same margin is 8e-3 (measured 3.1e-4 to 2.7e-3). */
#define TOL_LAST 8e-3

#define SEQ 12

#ifdef KVCHAT_CUDA_EMU
/* The kernels a decode step should launch for M: the embedding row, per
 * layer Q/K/V in one kernel (norming x in its prologue), RoPE + KV store,
 * attention, the output projection with the residual, gate/up + GLU in one
 * kernel and down (6), plus each q/k norm and post-norm the layer has, plus
 * 2 when Q, K and V, or gate and up, cannot share a kernel (two formats,
 * or the scalar float form of rows not a multiple of 8: then gate, up and
 * GLU, or Q, K and V, apart); then the logits matvec (output norm fused)
 * and the sampler's 2. A mixture-of-experts layer's FFN is the router
 * matvec, the top-k, the experts' gate/up + GLU, their down and the
 * weighted sum (5, not 2; the same +2 when gate and up cannot share a
 * kernel, or when the experts' GLU is clamped or gate and up carry bias
 * rows: gpt-oss), and a shared expert adds its gate's matvec, its gate/up + GLU
 * and its down (3, +2 likewise). HI allows each layer's split merge (the
 * split count depends on the device). */
static void step_kernels(const struct model *m, unsigned long *lo, unsigned long *hi)
{
    unsigned long n = 1 + 1 + 2;
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        const struct model_layer *L = &m->layers[il];
        enum ggml_type g = L->ffn_gate.type, q = L->wq.type;
        bool scalar = m->hp.n_embd % 8 != 0;
        bool gflt = g == GGML_TYPE_F32 || g == GGML_TYPE_F16 || g == GGML_TYPE_BF16;
        bool qflt = q == GGML_TYPE_F32 || q == GGML_TYPE_F16 || q == GGML_TYPE_BF16;
        n += 6 + (L->q_norm.data != NULL) + (L->k_norm.data != NULL) +
             (L->post_attn_norm.data != NULL) + (L->post_ffw_norm.data != NULL);
        if (m->hp.n_expert > 0) {
            enum ggml_type x = L->ffn_gate_exps.type;
            bool xflt = x == GGML_TYPE_F32 || x == GGML_TYPE_F16 || x == GGML_TYPE_BF16;
            n += 3;
            if (x != L->ffn_up_exps.type || (xflt && scalar) || m->hp.glu_clamped ||
                L->ffn_gate_exps_b.data || L->ffn_up_exps_b.data)
                n += 2;
            g = L->ffn_gate_shexp.type;
            gflt = g == GGML_TYPE_F32 || g == GGML_TYPE_F16 || g == GGML_TYPE_BF16;
            if (L->ffn_gate_shexp.data)
                n += 3 + (g != L->ffn_up_shexp.type || (gflt && scalar) ? 2 : 0);
        } else if (g != L->ffn_up.type || (gflt && scalar)) {
            n += 2;
        }
        if (q != L->wk.type || q != L->wv.type || (qflt && scalar))
            n += 2;
    }
    *lo = n;
    *hi = n + (unsigned long)m->hp.n_layer;
}
#endif

/* The decode step with sampling on the device (sample: one graph a step)
 * against forward() plus the host sampler on the same backend's logits:
 * greedy, then temperature / top-k / top-p / min-p with the repetition
 * penalty, the device given the uniform a twin sampler of the same seed
 * drew. The two paths run the same kernels on the same inputs, so the
 * logits are the same bits and every pick must be the host's. */
static void check_device_sampling(const struct model *m, const int32_t *tok, const char *tag,
                                  enum engine_kv_type kv)
{
    int V = m->hp.n_vocab;
    char err[512];
    float *one = malloc(sizeof(float) * (size_t)V);
    assert_non_null(one);
    for (int mode = 0; mode < 2; mode++) {
        struct engine_sampling sp = engine_sampling_defaults();
        sp.seed = 99;
        if (mode == 0) {
            sp.temperature = 0.0f;
        } else {
            sp.temperature = 1.5f; /* flat enough that the draw often leaves the top */
            sp.top_k = V > 6 ? 6 : V - 1;
            sp.top_p = 0.9f;
            sp.min_p = 0.02f;
        }
        struct sampler *host = sampler_new(V, &sp), *plan_of = sampler_new(V, &sp);
        assert_non_null(host);
        assert_non_null(plan_of);
        void *bf = backend_new_kv(&backend_cuda_ops, m, 64, kv),
             *bd = backend_new_kv(&backend_cuda_ops, m, 64, kv);
        int off_top = 0;
#ifdef KVCHAT_CUDA_EMU
        unsigned long k_sample = 0, k_forward = 0, g0 = kvemu_graph_launch_count(), k0;
#endif
        for (int i = 0; i < SEQ; i++) {
            struct backend_sample bs;
            assert_int_equal(sampler_plan(plan_of, &bs), 0);
            int32_t next = -1;
            bool nonfinite = true;
#ifdef KVCHAT_CUDA_EMU
            k0 = kvemu_kernel_count();
#endif
            if (backend_cuda_ops.sample(bd, tok[i], i, &bs, &next, &nonfinite, err, sizeof err))
                fail_msg("%s: cuda sample: %s", tag, err);
#ifdef KVCHAT_CUDA_EMU
            k_sample += kvemu_kernel_count() - k0;
            k0 = kvemu_kernel_count();
#endif
            assert_int_equal(backend_cuda_ops.forward(bf, tok + i, 1, i, one, false, err, sizeof err),
                             0);
#ifdef KVCHAT_CUDA_EMU
            k_forward += kvemu_kernel_count() - k0;
#endif
            int32_t best = 0;
            for (int j = 1; j < V; j++)
                best = one[j] > one[best] ? j : best;
            int32_t want = sampler_sample(host, one);
            off_top += want != best;
            if (next != want)
                fail_msg("%s: step %d: device picked %d, host %d (%s)", tag, i, next, want,
                         mode ? "sampled" : "greedy");
            assert_false(nonfinite);
            /* both samplers see the same history: the token fed next */
            sampler_accept(host, tok[i]);
            sampler_accept(plan_of, tok[i]);
        }
#ifdef KVCHAT_CUDA_EMU
        /* Launches a token: the kernels the step's graph replays. */
        if (mode == 0)
            printf("%-26s kernels a token: forward %.1f + host sampling, graph step %.1f "
                   "with sampling (%d layers)\n",
                   tag, (double)k_forward / SEQ, (double)k_sample / SEQ, m->hp.n_layer);
        assert_int_equal(kvemu_graph_launch_count() - g0, SEQ);
        assert_int_equal(k_sample % SEQ, 0);
        unsigned long lo, hi;
        step_kernels(m, &lo, &hi);
        if (k_sample / SEQ < lo || k_sample / SEQ > hi)
            fail_msg("%s: the decode step ran %lu kernels, not %lu..%lu", tag, k_sample / SEQ,
                     lo, hi);
#endif
        if (mode == 1)
            printf("%-26s device sampling: %d of %d draws not the argmax\n", tag, off_top, SEQ);
        sampler_free(host);
        sampler_free(plan_of);
        backend_cuda_ops.destroy(bf);
        backend_cuda_ops.destroy(bd);
    }
    free(one);
}

/* Prefill SEQ tokens with all logits on CUDA, compare with the reference
 * and the CPU backend; then decode the same tokens one by one on a second
 * CUDA backend and compare with the batch. SLACK multiplies the batch's
 * tolerances (TOL_REF, TOL_SEQ): 1 but for one model that says why.
 * Frees M. */
static void check_loaded(struct model *m, const char *tag, double slack)
{
    int V = m->hp.n_vocab;
    int32_t tok[SEQ];
    tiny_tokens(tok, SEQ, V, 5);
    size_t nl = (size_t)SEQ * V;
    float *ref = malloc(sizeof(float) * nl), *cpu = malloc(sizeof(float) * nl);
    float *gpu = malloc(sizeof(float) * nl), *one = malloc(sizeof(float) * V);
    assert_non_null(ref);
    assert_non_null(cpu);
    assert_non_null(gpu);
    assert_non_null(one);
    struct ref_model *r = ref_new(m);
    assert_non_null(r);
    assert_int_equal(ref_forward(r, tok, SEQ, ref), 0);

    char err[512];
    void *bc = backend_new(&backend_cpu_ops, m, 64);
    assert_int_equal(backend_cpu_ops.forward(bc, tok, SEQ, 0, cpu, true, err, sizeof err), 0);

    void *bg = backend_new(&backend_cuda_ops, m, 64);
    /* Poison: every logit must be written. */
    for (size_t i = 0; i < nl; i++)
        gpu[i] = NAN;
    if (backend_cuda_ops.forward(bg, tok, SEQ, 0, gpu, true, err, sizeof err) != 0)
        fail_msg("%s: cuda forward: %s", tag, err);
    double e_ref = tiny_rel_err(gpu, ref, nl), e_cpu = tiny_rel_err(gpu, cpu, nl);
    printf("%-26s %-5s cuda vs reference %.2e (tol %.0e), vs cpu %.2e (tol %.0e)\n", tag,
           quant_type_name(m->layers[0].wq.type), e_ref, TOL_REF * slack, e_cpu, TOL_CPU);
    assert_true(e_ref <= TOL_REF * slack);
    assert_true(e_cpu <= TOL_CPU);
    /* The logits depend on the input (attention sees the past). */
    assert_true(tiny_rel_err(gpu, gpu + (size_t)(SEQ - 1) * V, (size_t)V) > 1e-3);

    /* Last-token-only logits equal the last row of the batch, up to the
     * output projection: for one row it is the f32 matvec, for the batch the
     * bf16 GEMM (TOL_LAST says how far apart). */
    assert_int_equal(backend_cuda_ops.forward(bg, tok, SEQ, 0, one, false, err, sizeof err), 0);
    double e_last = tiny_rel_err(one, gpu + (size_t)(SEQ - 1) * V, (size_t)V);
    printf("%-26s last row alone vs batch %.2e (tol %.0e)\n", tag, e_last, TOL_LAST);
    assert_true(e_last <= TOL_LAST);

    /* One by one (the decode kernels) against the batch (the GEMM path). */
    void *bs = backend_new(&backend_cuda_ops, m, 64);
    double worst = 0;
    for (int i = 0; i < SEQ; i++) {
        assert_int_equal(backend_cuda_ops.forward(bs, tok + i, 1, i, one, false, err, sizeof err),
                         0);
        double e = tiny_rel_err(one, gpu + (size_t)i * V, (size_t)V);
        worst = e > worst ? e : worst;
    }
    printf("%-26s batch vs one by one %.2e (tol %.0e)\n", tag, worst, TOL_SEQ * slack);
    assert_true(worst <= TOL_SEQ * slack);
    check_device_sampling(m, tok, tag, ENGINE_KV_AUTO);

    struct engine_memory mem;
    backend_cuda_ops.memory(bg, &mem);
    assert_true(mem.on_gpu);
    assert_true(mem.weights > 0 && mem.kv_cache > 0 && mem.scratch > 0);
    assert_true(mem.device_total >= mem.device_free);
    assert_true(strlen(backend_cuda_ops.device_name(bg)) > 0);

    backend_cuda_ops.destroy(bs);
    backend_cuda_ops.destroy(bg);
    backend_cpu_ops.destroy(bc);
    assert_no_emu_report();
    ref_free(r);
    model_free(m);
    free(ref);
    free(cpu);
    free(gpu);
    free(one);
}

static void check_model(const struct tiny_spec *s, const char *tag)
{
    check_loaded(make_model(s, 1234), tag, 1.0);
}

/* ---- mixture of experts ---- */

static int32_t argmax_of(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        best = x[i] > x[best] ? i : best;
    return best;
}

/* What a mixture of experts adds to check_loaded (which it then runs, and
 * which frees M): every expert is resident on the device (the memory
 * report counts them all; the model's bytes per token, the figure the
 * engine reports for any backend, counts only the routed ones a token
 * reads); greedy decoding through the device step picks the CPU backend's
 * tokens; and reusing the cache, a rewind to the middle of a prompt
 * decoded again with other tokens, matches the CPU doing the same. */
static void check_moe(struct model *m, const char *tag, double slack)
{
    const int V = m->hp.n_vocab, N0 = 8, GEN = 10, RW = 4;
    char err[512];
    int32_t tok[32];
    tiny_tokens(tok, N0, V, 21);
    float *a = malloc(sizeof(float) * (size_t)V), *c = malloc(sizeof(float) * (size_t)V);
    assert_non_null(a);
    assert_non_null(c);
    void *bc = backend_new(&backend_cpu_ops, m, 64), *bg = backend_new(&backend_cuda_ops, m, 64);

    uint64_t experts = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const struct model_layer *L = &m->layers[il];
        experts += L->ffn_gate_exps.nbytes + L->ffn_up_exps.nbytes + L->ffn_down_exps.nbytes;
    }
    struct engine_memory mem;
    backend_cuda_ops.memory(bg, &mem);
    assert_true(mem.weights >= experts);
    const uint64_t NX = (uint64_t)m->hp.n_expert, K = (uint64_t)m->hp.n_expert_used;
    assert_true(m->bytes_per_token <= m->weight_bytes - experts / NX * (NX - K));

    /* greedy: CPU forward + argmax against the device's step, which keeps
     * the router, the choice and the pick on the device */
    assert_int_equal(backend_cpu_ops.forward(bc, tok, N0 - 1, 0, c, false, err, sizeof err), 0);
    assert_int_equal(backend_cuda_ops.forward(bg, tok, N0 - 1, 0, a, false, err, sizeof err), 0);
    struct engine_sampling sp = engine_sampling_defaults();
    sp.temperature = 0.0f;
    struct sampler *plan_of = sampler_new(V, &sp);
    assert_non_null(plan_of);
    int32_t cur_c = tok[N0 - 1], cur_g = tok[N0 - 1], changes = 0, prev = -1;
    for (int i = 0; i < GEN; i++) {
        int32_t pos = N0 - 1 + i;
        assert_int_equal(backend_cpu_ops.forward(bc, &cur_c, 1, pos, c, false, err, sizeof err), 0);
        struct backend_sample bs;
        assert_int_equal(sampler_plan(plan_of, &bs), 0);
        int32_t next = -1;
        bool nonfinite = true;
        if (backend_cuda_ops.sample(bg, cur_g, pos, &bs, &next, &nonfinite, err, sizeof err))
            fail_msg("%s: cuda sample: %s", tag, err);
        assert_false(nonfinite);
        cur_c = argmax_of(c, V);
        if (next != cur_c)
            fail_msg("%s: greedy step %d: cuda picked %d, cpu %d", tag, i, next, cur_c);
        cur_g = next;
        changes += next != prev;
        prev = next;
    }
    printf("%-26s greedy: %d tokens identical to the cpu's (%d changes)\n", tag, GEN, changes);
    sampler_free(plan_of);

    /* KV reuse: rewind both to RW and decode other tokens from there */
    assert_int_equal(backend_cpu_ops.forward(bc, tok, N0, 0, c, false, err, sizeof err), 0);
    assert_int_equal(backend_cuda_ops.forward(bg, tok, N0, 0, a, false, err, sizeof err), 0);
    int32_t other[8];
    tiny_tokens(other, N0 - RW, V, 77);
    double worst = tiny_rel_err(a, c, (size_t)V);
    for (int i = 0; i < N0 - RW; i++) {
        assert_int_equal(backend_cpu_ops.forward(bc, other + i, 1, RW + i, c, false, err,
                                                 sizeof err),
                         0);
        assert_int_equal(backend_cuda_ops.forward(bg, other + i, 1, RW + i, a, false, err,
                                                  sizeof err),
                         0);
        double e = tiny_rel_err(a, c, (size_t)V);
        worst = e > worst ? e : worst;
    }
    printf("%-26s rewound to %d and decoded again: cuda vs cpu %.2e (tol %.0e)\n", tag, RW,
           worst, TOL_CPU);
    assert_true(worst <= TOL_CPU);

    backend_cuda_ops.destroy(bg);
    backend_cpu_ops.destroy(bc);
    assert_no_emu_report();
    free(a);
    free(c);
    check_loaded(m, tag, slack);
}

/* qwen3moe: 6 experts, 2 a token, top-k weights renormalised, q/k norms;
 * expert rows 160 (10 row blocks of 16) over n_embd 96 (3 Q8_0 blocks). */
static void test_qwen3moe_q8_0(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen3moe", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 96, .n_head = 3, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .n_vocab = 70, .n_layer = 2, .n_expert = 6, .n_expert_used = 2,
                          .n_ff_exp = 160};
    check_moe(make_model(&s, 1234), "qwen3moe-q8_0", 1.0);
}

/* Scalar float rows everywhere (n_embd 36, expert rows 20): the router,
 * the experts' gate and up apart plus kv_glu, and down on the scalar form. */
static void test_qwen3moe_f32_scalar(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen3moe", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                          .n_embd = 36, .n_head = 3, .n_head_kv = 1, .head_dim = 12, .n_rot = 12,
                          .n_vocab = 61, .n_layer = 2, .n_expert = 4, .n_expert_used = 3,
                          .n_ff_exp = 20};
    check_moe(make_model(&s, 1234), "qwen3moe-f32-scalar", 1.0);
}

/* qwen2moe: 5 experts, 3 a token, weights not renormalised, the shared
 * expert with its sigmoid gate, biases, untied output. */
static void test_qwen2moe_q4_0_shared(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen2moe", .wtype = GGML_TYPE_Q4_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 16, .n_rot = 16,
                          .n_vocab = 80, .n_layer = 2, .n_expert = 5, .n_expert_used = 3,
                          .n_ff_exp = 96, .n_ff_shexp = 160, .untied = true};
    check_moe(make_model(&s, 1234), "qwen2moe-q4_0-shared", 1.0);
}

/* A router as the file's keys describe it, not the architecture's:
 * qwen3moe's shape above told sigmoid gating (expert_gating_func 2), its
 * default renormalisation, then a scale of 2.5 (expert_weights_scale, as
 * DeepSeek-V3's). The device must pick the CPU's experts and weigh them
 * alike; the reference reads the keys from the file itself. */
static void test_qwen3moe_sigmoid_scaled(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen3moe", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 96, .n_head = 3, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .n_vocab = 70, .n_layer = 2, .n_expert = 6, .n_expert_used = 2,
                          .n_ff_exp = 160, .gating_func = 2, .weights_scale = 2.5f};
    struct model *m = make_model(&s, 1234);
    assert_int_equal(m->hp.expert_gating, MODEL_GATING_SIGMOID);
    assert_true(m->hp.expert_weights_norm && m->hp.expert_weights_scale == 2.5f);
    check_moe(m, "qwen3moe-sigmoid-x2.5", 1.0);
}

/* The synthetic shape moe-tiny (tools/synth, backend/model/synth.c): a
 * qwen2moe of 8 experts, 2 a token, with a shared expert, at Q4_K. Its
 * weights (synth_fill_rows, not tiny_model's) amplify the prefill's bf16
 * GEMMs more: the batch measured 1.9e-2 from the reference and 2.1e-2
 * from one-by-one decoding, which is itself within 1.3e-3 of the reference
 * at every position; the routed experts are f32 matvecs in both paths (the
 * shared expert as f32 matvecs too measured the same, so the rest is the
 * dense path's attention and projections). The batch tolerances doubled
 * here (4e-2). */
static void test_synth_moe_tiny(void **state)
{
    (void)state;
    struct synth_spec sp;
    char err[512];
    assert_int_equal(synth_parse("moe-tiny:q4_k", &sp, err, sizeof err), 0);
    struct model *m = model_new_synthetic(&sp, err, sizeof err);
    if (!m)
        fail_msg("moe-tiny: %s", err);
    check_moe(m, "synth-moe-tiny-q4_k", 2.0);
}

/* ---- gpt-oss ---- */

/* gpt-oss's every mechanism at test_model.c's size: biased Q/K/V and
 * output projections, a sink logit per head, even layers windowed to 5
 * tokens (SEQ, the greedy run and the rewind go past it), YaRN stretching
 * 256 tokens by 32, the router's bias and its top-2 of 6 softmaxed among
 * themselves, and biased clamped-SwiGLU experts whose gates pass the
 * clamp at 7. Its experts are MXFP4 in real files; the cases below take
 * F32, F16 and MXFP4.
 *
 * The batch (bf16 GEMMs and attention operands) is the least exact path
 * on this model: one-by-one decoding (f32 matvecs) stayed within 3.0e-3 of
 * the reference at every position of every case here, the batch measured
 * up to 4.2e-2 from it and 5.9e-2 from one-by-one decoding (F32, with the same
 * kernels but f32 projections, 1.3e-2): the clamped experts' large gates
 * amplify bf16's 2^-9 rounding. With MXFP4 experts the batch against
 * one-by-one decoding measured 4.3e-2, 5.8e-2, 6.5e-2, 7.9e-2 and 8.3e-2
 * over five seeds (one by one vs the reference 1.2e-3 to 2.8e-3). So the
 * batch tolerances are OSS_SLACK times the dense ones here, and
 * check_oss_decode holds the decode path, which is what every generated
 * token takes, to the reference at TOL_OSS_DECODE. */
#define OSS_SLACK 4.5
static const struct tiny_spec oss_small = {
    .arch = "gpt-oss", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32, .n_embd = 64,
    .n_head = 4, .n_head_kv = 2, .head_dim = 16, .n_rot = 16, .head_dim_key = true,
    .n_vocab = 40, .n_layer = 4, .n_expert = 6, .n_expert_used = 2, .n_ff_exp = 32,
    .untied = true, .swa_window = 5, .yarn_factor = 32.0f, .yarn_orig_ctx = 256};

#define TOL_OSS_DECODE 5e-3

/* SEQ tokens decoded one by one on the device (the step's kernels: sinks
 * in the split merge, the window, YaRN in the fused RoPE + store, the
 * biased, clamped experts) against the float64 reference at every
 * position. */
static void check_oss_decode(const struct model *m, const char *tag)
{
    const int V = m->hp.n_vocab;
    int32_t tok[SEQ];
    tiny_tokens(tok, SEQ, V, 5);
    float *ref = malloc(sizeof(float) * (size_t)SEQ * V), *one = malloc(sizeof(float) * V);
    assert_non_null(ref);
    assert_non_null(one);
    struct ref_model *r = ref_new(m);
    assert_non_null(r);
    assert_int_equal(ref_forward(r, tok, SEQ, ref), 0);
    char err[512];
    void *bg = backend_new(&backend_cuda_ops, m, 64);
    double worst = 0;
    for (int i = 0; i < SEQ; i++) {
        for (int j = 0; j < V; j++)
            one[j] = NAN;
        if (backend_cuda_ops.forward(bg, tok + i, 1, i, one, false, err, sizeof err))
            fail_msg("%s: cuda decode: %s", tag, err);
        double e = tiny_rel_err(one, ref + (size_t)i * V, (size_t)V);
        worst = e > worst ? e : worst;
    }
    printf("%-26s one by one vs reference %.2e (tol %.0e)\n", tag, worst, TOL_OSS_DECODE);
    assert_true(worst <= TOL_OSS_DECODE);
    backend_cuda_ops.destroy(bg);
    ref_free(r);
    free(ref);
    free(one);
}

static void test_gpt_oss_f32(void **state)
{
    (void)state;
    struct model *m = make_model(&oss_small, 1234);
    /* what the kernels must follow, so a loader change cannot make this
     * case test less */
    assert_true(m->hp.attn_sinks && m->hp.rope_yarn && m->hp.glu_clamped);
    assert_int_equal(m->hp.expert_gating, MODEL_GATING_SOFTMAX_TOPK);
    assert_true(m->layers[0].swa && !m->layers[1].swa);
    assert_non_null(m->layers[0].bo.data);
    assert_non_null(m->layers[0].ffn_gate_inp_b.data);
    assert_non_null(m->layers[0].ffn_down_exps_b.data);
    check_oss_decode(m, "gpt-oss-f32");
    check_moe(m, "gpt-oss-f32", OSS_SLACK);
}

/* Q8_0 everywhere, and sinks large enough (mean 4) to take most of each
 * head's attention. Every expert is used: with two of six, the batch's
 * bf16 rounding moved one token's router logits across a near-tie (seed
 * 1234: position 2, 0.35 from the reference), a different expert rather
 * than a kernel error; with all six the gating still sorts and softmaxes
 * the six raw logits, and no rounding can change the choice. */
static void test_gpt_oss_q8_0_big_sinks(void **state)
{
    (void)state;
    struct tiny_spec s = oss_small;
    s.wtype = s.etype = GGML_TYPE_Q8_0;
    s.sink_mean = 4.0f;
    s.n_expert_used = 6;
    struct model *m = make_model(&s, 1234);
    check_oss_decode(m, "gpt-oss-q8_0-sinks4");
    check_moe(m, "gpt-oss-q8_0-sinks4", OSS_SLACK);
}

/* Q8_0 attention with experts of type XTYPE (their own type, as real files
 * keep theirs), every expert used as above. */
static void check_oss_experts(enum ggml_type xtype, uint64_t seed, const char *name)
{
    struct tiny_spec s = oss_small;
    s.wtype = s.etype = GGML_TYPE_Q8_0;
    s.own_xtype = true;
    s.xtype = xtype;
    s.n_expert_used = 6;
    struct model *m = make_model(&s, seed);
    assert_int_equal(m->layers[0].ffn_gate_exps.type, xtype);
    check_oss_decode(m, name);
    check_moe(m, name, OSS_SLACK);
}

/* F16 experts. */
static void test_gpt_oss_f16_experts(void **state)
{
    (void)state;
    check_oss_experts(GGML_TYPE_F16, 99, "gpt-oss-q8_0-f16x");
}

/* MXFP4 experts, as the published gpt-oss files store them. */
static void test_gpt_oss_mxfp4_experts(void **state)
{
    (void)state;
    check_oss_experts(GGML_TYPE_MXFP4, 4321, "gpt-oss-q8_0-mxfp4x");
}

/* The most experts the loader takes (1024) is the router kernel's limit
 * too (KV_MOE_MAX_EXPERT): such a model is estimated, every expert in the
 * weights. Past it (hparams no loader writes, set here by hand) estimate
 * and create refuse the model with a message naming the count and the way
 * out, so --backend auto would fall back to the CPU. */
static void test_moe_many_experts(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen3moe", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 32, .n_head = 1, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .n_vocab = 20, .n_layer = 1, .n_expert = 1024, .n_expert_used = 2,
                          .n_ff_exp = 32};
    struct model *m = make_model(&s, 7);
    struct backend_config cfg = {.n_ctx = 16, .n_threads = 1};
    struct backend_estimate est;
    char err[512];
    assert_int_equal(backend_cuda_ops.estimate(m, &cfg, &est, err, sizeof err), 0);
    uint64_t experts = m->layers[0].ffn_gate_exps.nbytes + m->layers[0].ffn_up_exps.nbytes +
                       m->layers[0].ffn_down_exps.nbytes;
    assert_true(est.weights >= experts);

    m->hp.n_expert = 1025;
    assert_int_equal(backend_cuda_ops.estimate(m, &cfg, &est, err, sizeof err), -1);
    printf("1025 experts: %s\n", err);
    assert_non_null(strstr(err, "1025 experts"));
    assert_non_null(strstr(err, "--backend cpu"));
    assert_null(backend_cuda_ops.create(m, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "1025 experts"));
    m->hp.n_expert = 1024;
    assert_no_emu_report();
    model_free(m);
}

/* Scalar float rows (36 is not a multiple of 8), head size 12, rope factors,
 * untied output. */
static void test_llama_f32_scalar(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                          .n_embd = 36, .n_head = 3, .n_head_kv = 1, .head_dim = 12, .n_rot = 12,
                          .n_ff = 52, .n_vocab = 61, .n_layer = 2, .untied = true,
                          .rope_freqs = true};
    check_model(&s, "llama-f32-scalar");
}

/* Head size 80 (2 dim pairs per lane, the second partly masked), partial
 * rope, n_embd 160. */
static void test_llama_f16_hd80(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_F16, .etype = GGML_TYPE_F16,
                          .n_embd = 160, .n_head = 2, .n_head_kv = 1, .head_dim = 80, .n_rot = 32,
                          .n_ff = 96, .n_vocab = 97, .n_layer = 2, .untied = true};
    check_model(&s, "llama-f16-hd80");
}

static void test_llama_bf16(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_BF16, .etype = GGML_TYPE_BF16,
                          .n_embd = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 16, .n_rot = 16,
                          .n_ff = 96, .n_vocab = 80, .n_layer = 2};
    check_model(&s, "llama-bf16");
}

static void test_llama_q8_0(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 160, .n_head = 5, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .n_ff = 224, .n_vocab = 100, .n_layer = 2};
    check_model(&s, "llama-q8_0");
}

static void test_qwen2_q4_0_bias(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "qwen2", .wtype = GGML_TYPE_Q4_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 96, .n_head = 3, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .n_ff = 160, .n_vocab = 90, .n_layer = 2, .untied = true};
    check_model(&s, "qwen2-q4_0-bias");
}

/* Head size 112, q/k norm. */
static void test_qwen3_q4_1(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "qwen3", .wtype = GGML_TYPE_Q4_1, .etype = GGML_TYPE_Q4_1,
                          .n_embd = 224, .n_head = 2, .n_head_kv = 1, .head_dim = 112, .n_rot = 112,
                          .n_ff = 288, .n_vocab = 70, .n_layer = 2};
    check_model(&s, "qwen3-q4_1-qknorm");
}

/* Gemma's head size 256, window 5 over 12 tokens, post-norms, GeGLU,
 * embedding scale. */
static void test_gemma3_q5_0_swa(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_Q5_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 288, .n_head = 2, .n_head_kv = 1, .head_dim = 256, .n_rot = 256,
                          .n_ff = 352, .n_vocab = 64, .n_layer = 7, .swa_window = 5};
    check_model(&s, "gemma3-q5_0-swa");
}

static void test_gemma3_q5_1(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_Q5_1, .etype = GGML_TYPE_Q5_1,
                          .n_embd = 160, .n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_rot = 64,
                          .n_ff = 96, .n_vocab = 75, .n_layer = 2, .swa_window = 7};
    check_model(&s, "gemma3-q5_1");
}

static void test_llama_q4_k(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q4_K, .etype = GGML_TYPE_Q4_K,
                          .n_embd = 256, .n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_rot = 64,
                          .n_ff = 512, .n_vocab = 50, .n_layer = 2, .untied = true};
    check_model(&s, "llama-q4_k");
}

static void test_qwen3_q5_k(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "qwen3", .wtype = GGML_TYPE_Q5_K, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 256, .n_head = 2, .n_head_kv = 1, .head_dim = 128, .n_rot = 128,
                          .n_ff = 768, .n_vocab = 60, .n_layer = 2, .untied = true};
    check_model(&s, "qwen3-q5_k");
}

static void test_gemma3_q6_k(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_Q6_K, .etype = GGML_TYPE_Q6_K,
                          .n_embd = 256, .n_head = 1, .n_head_kv = 1, .head_dim = 256, .n_rot = 256,
                          .n_ff = 512, .n_vocab = 66, .n_layer = 6, .swa_window = 4};
    check_model(&s, "gemma3-q6_k");
}

static void test_llama_q2_k(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q2_K, .etype = GGML_TYPE_Q2_K,
                          .n_embd = 256, .n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_rot = 64,
                          .n_ff = 512, .n_vocab = 50, .n_layer = 2};
    check_model(&s, "llama-q2_k");
}

static void test_qwen3_q3_k(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen3", .wtype = GGML_TYPE_Q3_K, .etype = GGML_TYPE_Q3_K,
                          .n_embd = 256, .n_head = 2, .n_head_kv = 1, .head_dim = 128, .n_rot = 128,
                          .n_ff = 768, .n_vocab = 60, .n_layer = 2, .untied = true};
    check_model(&s, "qwen3-q3_k");
}

static void test_gemma3_iq4_nl(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_IQ4_NL, .etype = GGML_TYPE_IQ4_NL,
                          .n_embd = 160, .n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_rot = 64,
                          .n_ff = 96, .n_vocab = 75, .n_layer = 3, .swa_window = 5};
    check_model(&s, "gemma3-iq4_nl");
}

static void test_llama_iq4_xs(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_IQ4_XS, .etype = GGML_TYPE_IQ4_XS,
                          .n_embd = 256, .n_head = 4, .n_head_kv = 1, .head_dim = 64, .n_rot = 64,
                          .n_ff = 768, .n_vocab = 66, .n_layer = 2, .untied = true};
    check_model(&s, "llama-iq4_xs");
}

static void test_qwen2_mxfp4_bias(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "qwen2", .wtype = GGML_TYPE_MXFP4, .etype = GGML_TYPE_MXFP4,
                          .n_embd = 96, .n_head = 3, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .n_ff = 160, .n_vocab = 90, .n_layer = 2, .untied = true};
    check_model(&s, "qwen2-mxfp4-bias");
}

/* Gemma's GeGLU outputs in real models pass f16's 65504 before ffn_down: an
 * ffn_norm of mean 400 makes gate and up about 460 (rms) here, so gate x up
 * reaches about 2e5, which an f16 GEMM operand turns into inf (and the
 * post-norm into NaN). With bf16 operands (f32's range) every logit is
 * finite and matches the CPU within the usual tolerances. */
static void test_gemma3_bf16_big_ffn(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_BF16, .etype = GGML_TYPE_BF16,
                          .n_embd = 96, .n_head = 2, .n_head_kv = 1, .head_dim = 48, .n_rot = 48,
                          .n_ff = 160, .n_vocab = 61, .n_layer = 3, .swa_window = 6,
                          .ffn_norm_mean = 400.0f};
    check_model(&s, "gemma3-bf16-big-ffn");
}

/* A long context: 1100 tokens prefilled in two micro-batches (1024 + 76),
 * then decode steps far into the cache, where the attention splits the key
 * range across blocks; the sliding window (300) spans many tiles. Checked
 * against the CPU backend. */
static void test_long_context_split(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "gemma3", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 128, .n_head = 4, .n_head_kv = 1, .head_dim = 64, .n_rot = 64,
                          .n_ff = 160, .n_vocab = 57, .n_layer = 6, .swa_window = 300};
    struct model *m = make_model(&s, 99);
    const int N = 1100, D = 6, V = m->hp.n_vocab;
    int32_t *tok = malloc(sizeof(int32_t) * (N + D));
    float *a = malloc(sizeof(float) * V), *c = malloc(sizeof(float) * V);
    assert_non_null(tok);
    assert_non_null(a);
    assert_non_null(c);
    tiny_tokens(tok, N + D, V, 17);
    char err[512];
    void *bc = backend_new(&backend_cpu_ops, m, 1200);
    void *bg = backend_new(&backend_cuda_ops, m, 1200);
    assert_int_equal(backend_cpu_ops.forward(bc, tok, N, 0, c, false, err, sizeof err), 0);
    if (backend_cuda_ops.forward(bg, tok, N, 0, a, false, err, sizeof err) != 0)
        fail_msg("cuda prefill: %s", err);
    double worst = tiny_rel_err(a, c, (size_t)V);
    for (int i = 0; i < D; i++) {
        assert_int_equal(backend_cpu_ops.forward(bc, tok + N + i, 1, N + i, c, false, err,
                                                 sizeof err),
                         0);
        assert_int_equal(backend_cuda_ops.forward(bg, tok + N + i, 1, N + i, a, false, err,
                                                  sizeof err),
                         0);
        double e = tiny_rel_err(a, c, (size_t)V);
        worst = e > worst ? e : worst;
    }
    printf("long context (%d + %d tokens): cuda vs cpu %.2e (tol %.0e)\n", N, D, worst, TOL_CPU);
    assert_true(worst <= TOL_CPU);

    /* Rewind: decoding again at N after the cache was filled beyond it. */
    assert_int_equal(backend_cuda_ops.forward(bg, tok + N, 1, N, a, false, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(bc, tok + N, 1, N, c, false, err, sizeof err), 0);
    assert_true(tiny_rel_err(a, c, (size_t)V) <= TOL_CPU);

    backend_cuda_ops.destroy(bg);
    backend_cpu_ops.destroy(bc);
    assert_no_emu_report();
    model_free(m);
    free(tok);
    free(a);
    free(c);
}

/* The q8_0 KV cache (--kv-type q8_0) on CUDA against the CPU backend's q8_0
 * cache: both quantise each 32 dims of a K or V row the same way (quant.h's
 * Q8_0 rounding), so they differ by what the f16 caches differ by plus a
 * code here and there across a rounding edge: TOL_CPU. A prefill of N
 * tokens (several key tiles, the sliding window cutting them), decode steps
 * after it (the flash-decoding kernel reading codes and scales), and a
 * rewind. Against CUDA's own f16 cache the q8_0 rounding shows (1/254 of a
 * block's largest, against f16's 2^-11) but stays within TOL_REF. The
 * memory reading counts 34 bytes per 32 elements. Head sizes that are not
 * whole blocks, and f32, are refused at create with a message. */
static void kv_q8_case(const struct tiny_spec *s, const char *tag, int N)
{
    struct model *m = make_model(s, 77);
    const int D = 4, V = m->hp.n_vocab, CTX = N + D + 4;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(N + D));
    float *a = malloc(sizeof(float) * V), *c = malloc(sizeof(float) * V),
          *h = malloc(sizeof(float) * V);
    assert_true(tok && a && c && h);
    tiny_tokens(tok, N + D, V, 23);
    char err[512];
    void *bc = backend_new_kv(&backend_cpu_ops, m, CTX, ENGINE_KV_Q8_0);
    void *bg = backend_new_kv(&backend_cuda_ops, m, CTX, ENGINE_KV_Q8_0);
    void *bh = backend_new_kv(&backend_cuda_ops, m, CTX, ENGINE_KV_F16);
    for (size_t i = 0; i < (size_t)V; i++)
        a[i] = NAN;
    assert_int_equal(backend_cpu_ops.forward(bc, tok, N, 0, c, false, err, sizeof err), 0);
    if (backend_cuda_ops.forward(bg, tok, N, 0, a, false, err, sizeof err) != 0)
        fail_msg("%s: cuda q8_0 prefill: %s", tag, err);
    assert_int_equal(backend_cuda_ops.forward(bh, tok, N, 0, h, false, err, sizeof err), 0);
    double worst = tiny_rel_err(a, c, (size_t)V), vs16 = tiny_rel_err(a, h, (size_t)V);
    for (int i = 0; i < D; i++) {
        const int32_t *t = tok + N + i;
        assert_int_equal(backend_cpu_ops.forward(bc, t, 1, N + i, c, false, err, sizeof err), 0);
        assert_int_equal(backend_cuda_ops.forward(bg, t, 1, N + i, a, false, err, sizeof err), 0);
        assert_int_equal(backend_cuda_ops.forward(bh, t, 1, N + i, h, false, err, sizeof err), 0);
        double e = tiny_rel_err(a, c, (size_t)V), e16 = tiny_rel_err(a, h, (size_t)V);
        worst = e > worst ? e : worst;
        vs16 = e16 > vs16 ? e16 : vs16;
    }
    printf("%-22s KV q8_0 (%d + %d tokens): cuda vs cpu q8_0 %.2e (tol %.0e), vs cuda f16 "
           "%.2e (tol %.0e)\n", tag, N, D, worst, TOL_CPU, vs16, TOL_REF);
    assert_true(worst <= TOL_CPU);
    assert_true(vs16 <= TOL_REF);
    assert_true(vs16 > 0); /* the cache really is q8_0 */

    /* Rewind: decoding again at N after the cache was filled beyond it. */
    assert_int_equal(backend_cuda_ops.forward(bg, tok + N, 1, N, a, false, err, sizeof err), 0);
    assert_int_equal(backend_cpu_ops.forward(bc, tok + N, 1, N, c, false, err, sizeof err), 0);
    assert_true(tiny_rel_err(a, c, (size_t)V) <= TOL_CPU);
    /* The decode step's graph (RoPE and the q8_0 store in one kernel at a
     * device position) picks what forward() and the host sampler pick. */
    check_device_sampling(m, tok, tag, ENGINE_KV_Q8_0);

    struct engine_memory mq, mh;
    backend_cuda_ops.memory(bg, &mq);
    backend_cuda_ops.memory(bh, &mh);
    uint64_t elems = 2ull * (uint64_t)m->hp.n_layer * (uint64_t)CTX *
                     (uint64_t)m->hp.n_head_kv * (uint64_t)m->hp.head_dim;
    assert_true(mq.kv_cache == elems / 32 * 34);
    assert_true(mh.kv_cache == elems * 2);
    struct backend_config cfg = {.n_ctx = CTX, .n_threads = 2, .kv_type = ENGINE_KV_Q8_0};
    struct backend_estimate est;
    assert_int_equal(backend_cuda_ops.estimate(m, &cfg, &est, err, sizeof err), 0);
    assert_true(est.kv_cache == elems / 32 * 34);

    backend_cuda_ops.destroy(bh);
    backend_cuda_ops.destroy(bg);
    backend_cpu_ops.destroy(bc);
    assert_no_emu_report();
    model_free(m);
    free(tok);
    free(a);
    free(c);
    free(h);
}

static void test_kv_q8_0(void **state)
{
    (void)state;
    struct tiny_spec g = {.arch = "gemma3", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 128, .n_head = 4, .n_head_kv = 1, .head_dim = 64, .n_rot = 64,
                          .n_ff = 160, .n_vocab = 57, .n_layer = 4, .swa_window = 100};
    kv_q8_case(&g, "gemma3-q8kv-swa", 300);
    struct tiny_spec l = {.arch = "llama", .wtype = GGML_TYPE_Q4_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 128, .n_head = 6, .n_head_kv = 2, .head_dim = 96, .n_rot = 96,
                          .n_ff = 160, .n_vocab = 61, .n_layer = 2};
    kv_q8_case(&l, "llama-q8kv-hd96", 70);

    /* refused: a head size that is not whole blocks, and f32 */
    struct tiny_spec odd = {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                            .n_embd = 80, .n_head = 2, .n_head_kv = 1, .head_dim = 40,
                            .n_rot = 40, .n_ff = 96, .n_vocab = 37, .n_layer = 1};
    struct model *m = make_model(&odd, 5);
    struct backend_config cfg = {.n_ctx = 16, .n_threads = 2, .kv_type = ENGINE_KV_Q8_0};
    char err[512] = "";
    assert_null(backend_cuda_ops.create(m, &cfg, err, sizeof err));
    printf("refused: %s\n", err);
    assert_non_null(strstr(err, "q8_0"));
    assert_non_null(strstr(err, "40"));
    assert_null(strchr(err, '\n'));
    cfg.kv_type = ENGINE_KV_F32;
    assert_null(backend_cuda_ops.create(m, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "f32"));
    model_free(m);
}

static void test_forward_errors(void **state)
{
    (void)state;
        struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q4_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 64, .n_head = 2, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .n_ff = 96, .n_vocab = 40, .n_layer = 1};
    struct model *m = make_model(&s, 3);
    void *b = backend_new(&backend_cuda_ops, m, 16);
    float logits[40];
    char err[512];
    int32_t tok[4] = {1, 2, 3, 4};
    assert_int_equal(backend_cuda_ops.forward(b, tok, 4, 14, logits, false, err, sizeof err), -1);
    assert_non_null(strstr(err, "context"));
    tok[2] = 40;
    assert_int_equal(backend_cuda_ops.forward(b, tok, 4, 0, logits, false, err, sizeof err), -1);
    assert_non_null(strstr(err, "token id 40"));
    tok[2] = -1;
    assert_int_equal(backend_cuda_ops.forward(b, tok, 4, 0, logits, false, err, sizeof err), -1);
    assert_non_null(strstr(err, "token id -1"));
    /* Still usable after rejected calls. */
    tok[2] = 3;
    assert_int_equal(backend_cuda_ops.forward(b, tok, 4, 0, logits, false, err, sizeof err), 0);
    backend_cuda_ops.destroy(b);

    /* A context that cannot fit on the card: a clear message, no crash. */
    struct backend_config cfg = {.n_ctx = 2000000000, .n_threads = 1};
    assert_null(backend_cuda_ops.create(m, &cfg, err, sizeof err));
    printf("huge context: %s\n", err);
    assert_non_null(strstr(err, "--ctx-size"));
    assert_no_emu_report();
    model_free(m);
}

/* The ceilings probe: finite, ordered figures at the sizes asked for, the
 * GEMM left out on request, a nonsense size refused with a message, and the
 * backend still runs the model afterwards (the probe shares its stream and
 * cuBLAS handle). Small sizes: the emulator copies and multiplies on the
 * CPU. */
static void test_roofs(void **state)
{
    (void)state;
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 64, .n_head = 2, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                          .n_ff = 96, .n_vocab = 40, .n_layer = 1};
    struct model *m = make_model(&s, 5);
    void *b = backend_new(&backend_cuda_ops, m, 16);
    char err[512] = "";
#ifdef KVCHAT_CUDA_EMU
    struct engine_roofs_params p = {.copy_bytes = 1 << 20, .copy_passes = 5, .gemm_n = 64,
                                    .gemm_passes = 3};
#else
    struct engine_roofs_params p = {.copy_bytes = 256u << 20, .copy_passes = 5, .gemm_n = 2048,
                                    .gemm_passes = 3};
#endif
    struct engine_roofs r;
    assert_non_null(backend_cuda_ops.measure_roofs);
    int rc = backend_cuda_ops.measure_roofs(b, &p, &r, err, sizeof err);
    if (rc != 0)
        fail_msg("measure_roofs: %s", err);
    printf("roofs: copy %.1f GB/s (%.1f-%.1f) of %llu bytes x %d, bf16 gemm %d: %.3f TFLOP/s "
           "(%.3f-%.3f) x %d\n",
           r.copy_gb_s, r.copy_min_gb_s, r.copy_max_gb_s, (unsigned long long)r.copy_bytes,
           r.copy_passes, r.gemm_n, r.gemm_tflops, r.gemm_min_tflops, r.gemm_max_tflops,
           r.gemm_passes);
    assert_true(isfinite(r.copy_gb_s) && r.copy_gb_s > 0);
    assert_true(r.copy_min_gb_s <= r.copy_gb_s && r.copy_gb_s <= r.copy_max_gb_s);
    assert_int_equal(r.copy_passes, 5);
    assert_true(r.copy_bytes == p.copy_bytes);
    assert_true(isfinite(r.gemm_tflops) && r.gemm_tflops > 0);
    assert_true(r.gemm_min_tflops <= r.gemm_tflops && r.gemm_tflops <= r.gemm_max_tflops);
    assert_int_equal(r.gemm_passes, 3);
    assert_int_equal(r.gemm_n, p.gemm_n);

    p.gemm_n = -1;
    assert_int_equal(backend_cuda_ops.measure_roofs(b, &p, &r, err, sizeof err), 0);
    assert_true(r.copy_gb_s > 0);
    assert_int_equal(r.gemm_n, 0);
    assert_true(r.gemm_tflops == 0 && r.gemm_passes == 0);

    p.copy_bytes = 2;
    assert_int_equal(backend_cuda_ops.measure_roofs(b, &p, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "too small"));
    assert_true(r.copy_gb_s == 0);

    float logits[40];
    int32_t tok[3] = {1, 2, 3};
    assert_int_equal(backend_cuda_ops.forward(b, tok, 3, 0, logits, false, err, sizeof err), 0);
    for (int i = 0; i < 40; i++)
        assert_true(isfinite(logits[i]));
    backend_cuda_ops.destroy(b);
    assert_no_emu_report();
    model_free(m);
}

static void test_probe(void **state)
{
    (void)state;
    struct backend_device dev;
    backend_cuda_ops.probe(&dev);
    printf("probe: %s, %.0f of %.0f MiB free\n", dev.name, dev.free / 1048576.0,
           dev.total / 1048576.0);
    assert_true(dev.usable);
    assert_true(dev.total > 0 && dev.free <= dev.total && dev.name[0]);
    assert_true(dev.reason[0] == 0);
}

static int teardown(void **state)
{
    (void)state;
    free_images();
    return 0;
}

int main(void)
{
    struct backend_device dev;
    backend_cuda_ops.probe(&dev);
    if (!dev.usable) {
        printf("SKIPPED: %s\n", dev.reason);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_llama_f32_scalar),
        cmocka_unit_test(test_llama_f16_hd80),
        cmocka_unit_test(test_llama_bf16),
        cmocka_unit_test(test_llama_q8_0),
        cmocka_unit_test(test_qwen2_q4_0_bias),
        cmocka_unit_test(test_qwen3_q4_1),
        cmocka_unit_test(test_gemma3_q5_0_swa),
        cmocka_unit_test(test_gemma3_q5_1),
        cmocka_unit_test(test_llama_q4_k),
        cmocka_unit_test(test_qwen3_q5_k),
        cmocka_unit_test(test_gemma3_q6_k),
        cmocka_unit_test(test_llama_q2_k),
        cmocka_unit_test(test_qwen3_q3_k),
        cmocka_unit_test(test_gemma3_iq4_nl),
        cmocka_unit_test(test_llama_iq4_xs),
        cmocka_unit_test(test_qwen2_mxfp4_bias),
        cmocka_unit_test(test_gemma3_bf16_big_ffn),
        cmocka_unit_test(test_qwen3moe_q8_0),
        cmocka_unit_test(test_qwen3moe_f32_scalar),
        cmocka_unit_test(test_qwen2moe_q4_0_shared),
        cmocka_unit_test(test_qwen3moe_sigmoid_scaled),
        cmocka_unit_test(test_synth_moe_tiny),
        cmocka_unit_test(test_moe_many_experts),
        cmocka_unit_test(test_gpt_oss_f32),
        cmocka_unit_test(test_gpt_oss_q8_0_big_sinks),
        cmocka_unit_test(test_gpt_oss_f16_experts),
        cmocka_unit_test(test_gpt_oss_mxfp4_experts),
        cmocka_unit_test(test_long_context_split),
        cmocka_unit_test(test_kv_q8_0),
        cmocka_unit_test(test_forward_errors),
        cmocka_unit_test(test_roofs),
    };
    /* KVCHAT_TEST_FILTER=test_llama* runs a subset and KVCHAT_TEST_SKIP
     * leaves one out (scripts/gpu-check: its sanitizer passes, many times
     * slower than a plain run, and its --quick emulator pass) */
    const char *filter = getenv("KVCHAT_TEST_FILTER");
    if (filter && filter[0])
        cmocka_set_test_filter(filter);
    const char *skip = getenv("KVCHAT_TEST_SKIP");
    if (skip && skip[0])
        cmocka_set_skip_filter(skip);
    return cmocka_run_group_tests(tests, NULL, teardown);
}
