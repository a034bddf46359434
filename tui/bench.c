/* bench.c - `kvchat bench`: prefill and decode throughput of a model on a
 * backend, the figures the project is judged by.
 *
 * Prefill: one 512-token prompt. Decode: 128 tokens, each fed back greedily,
 * after the prompt. Token ids are drawn from the vocabulary with a fixed seed
 * (throughput does not depend on which ids). One warm-up pass runs first so
 * that page faults and first-touch allocation are not timed. Decode
 * bandwidth = bytes read per token (weights, plus the KV cache at the mean
 * context of the run) x tokens/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "headless.h"

#define BENCH_PROMPT 512
#define BENCH_DECODE 128

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int32_t argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

int kv_run_bench(const struct kv_options *o)
{
    char err[1024];
    struct kv_options lo = *o;
    if (lo.ctx_size == 0 || lo.ctx_size < BENCH_PROMPT + BENCH_DECODE)
        lo.ctx_size = BENCH_PROMPT + BENCH_DECODE;
    struct engine *e = kv_load_engine(&lo, false, err, sizeof err);
    if (!e) {
        fprintf(stderr, "kvchat: %s\n", err);
        return 1;
    }
    const struct engine_info *in = engine_info(e);
    float *logits = malloc(sizeof *logits * (size_t)in->n_vocab);
    int32_t *prompt = malloc(sizeof *prompt * BENCH_PROMPT);
    if (!logits || !prompt) {
        fprintf(stderr, "kvchat: out of memory\n");
        free(logits);
        free(prompt);
        engine_free(e);
        return 1;
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < BENCH_PROMPT; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        prompt[i] = (int32_t)(x % (uint64_t)in->n_vocab);
    }

    int rc = 1;
    /* warm-up: a short prefill and a decode step */
    if (engine_forward(e, prompt, 16, 0, logits, false, err, sizeof err) != 0)
        goto out;

    double t0 = now_s();
    if (engine_forward(e, prompt, BENCH_PROMPT, 0, logits, false, err, sizeof err) != 0)
        goto out;
    double t_prefill = now_s() - t0;

    int32_t tok = argmax(logits, in->n_vocab);
    t0 = now_s();
    for (int i = 0; i < BENCH_DECODE; i++) {
        if (engine_forward(e, &tok, 1, BENCH_PROMPT + i, logits, false, err, sizeof err) != 0)
            goto out;
        tok = argmax(logits, in->n_vocab);
    }
    double t_decode = now_s() - t0;
    rc = 0;

    double prefill_tps = BENCH_PROMPT / t_prefill;
    double decode_tps = BENCH_DECODE / t_decode;
    /* KV bytes read per decode step at the run's mean context (f32 on the CPU
     * is what the memory report states; use its size per token). */
    struct engine_memory mem;
    engine_memory(e, &mem);
    double kv_per_tok = mem.kv_cache != ENGINE_UNKNOWN ? (double)mem.kv_cache / in->n_ctx : 0;
    double bytes_tok = (double)in->bytes_per_token + kv_per_tok * (BENCH_PROMPT + BENCH_DECODE / 2.0);
    double gbps = bytes_tok * decode_tps / 1e9;

    if (o->json) {
        printf("{\"model\":\"%s\",\"arch\":\"%s\",\"backend\":\"%s\",\"device\":\"%s\","
               "\"threads\":%d,\"n_params\":%llu,\"weight_bytes\":%llu,"
               "\"prompt_tokens\":%d,\"prefill_tok_s\":%.2f,"
               "\"decode_tokens\":%d,\"decode_tok_s\":%.2f,\"bytes_per_token\":%.0f,"
               "\"decode_gb_s\":%.3f}\n",
               in->model_name, in->arch, in->backend, in->device, in->n_threads,
               (unsigned long long)in->n_params, (unsigned long long)in->weight_bytes,
               BENCH_PROMPT, prefill_tps, BENCH_DECODE, decode_tps, bytes_tok, gbps);
    } else {
        printf("model    %s (%s, %.1fM parameters, %.1f MiB of weights)\n", in->model_name,
               in->arch, in->n_params / 1e6, in->weight_bytes / 1048576.0);
        printf("backend  %s on %s, %d threads\n", in->backend, in->device, in->n_threads);
        printf("prefill  %7.1f tokens/s  (%d-token prompt in %.3f s)\n", prefill_tps,
               BENCH_PROMPT, t_prefill);
        printf("decode   %7.1f tokens/s  (%d tokens in %.3f s)\n", decode_tps, BENCH_DECODE,
               t_decode);
        printf("traffic  %.1f MiB read per decoded token, %.2f GB/s\n", bytes_tok / 1048576.0,
               gbps);
    }
out:
    if (rc)
        fprintf(stderr, "kvchat: bench: %s\n", err);
    free(logits);
    free(prompt);
    engine_free(e);
    return rc;
}
