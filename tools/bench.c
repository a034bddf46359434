/* bench.c - `kvchat bench`: prefill and decode throughput of a model on a
 * backend against the device's memory-bandwidth roofline, the figures the
 * project is judged by (issue 3).
 *
 * One run, in this order, on a model file (-m) or a synthetic model
 * (--synthetic SHAPE:TYPE, built in memory: no download):
 *   1. the memory bandwidth of the device, measured now (CPU: the read
 *      bandwidth with the engine's thread count, telemetry/membw, the same
 *      probe the UI's roofline meter uses: median of seven passes, with the
 *      slowest and fastest reported; a GPU: the backend's ceilings probe,
 *      engine_measure_roofs, a 1 GiB device-to-device copy counting bytes
 *      read plus written, and beside it the dense bf16 GEMM rate;
 *      --mem-bandwidth overrides the roofline's bandwidth, not the probe);
 *   2. a warm-up pass, so page faults and first-touch allocation are not timed;
 *   3. prefill of a 512-token prompt, then one decode step: time to first token;
 *   4. decode of 128 tokens at an empty context (positions 0..127);
 *   5. prefill of DEPTH tokens (4096; --depth), then decode of 128 tokens
 *      after them: throughput where the KV cache is read as well as the weights.
 * Token ids are drawn from the vocabulary with a fixed seed (throughput does
 * not depend on which) and decode feeds back the argmax. Bytes read per
 * token = the weights a step reads plus the K/V of every attended position
 * at the mean context of the run (engine_bytes_per_token); the roofline is
 * bandwidth / bytes per token.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "engine_tools.h"
#include "launch.h"
#include "tools.h"
#include "membw.h"

#define BENCH_PROMPT 512
#define BENCH_DECODE 128

static int32_t argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* What one run measured. A figure that was not measured is NAN (JSON null). */
struct bench_result {
    double bw_gb_s;            /* the roofline's bandwidth, GB/s: the median pass */
    double bw_min_gb_s, bw_max_gb_s; /* slowest and fastest pass; NAN unless measured */
    int bw_passes;
    const char *bw_kind;       /* "read", "d2d-copy" (measured), "--mem-bandwidth" or "none" */
    uint64_t copy_bytes;       /* one device copy's size; 0 unless d2d-copy was measured */
    double copy_gb_s;          /* the device copy's figure even under --mem-bandwidth; NAN = none */
    double gemm_tflops;        /* dense bf16 GEMM, median; NAN = not measured */
    double gemm_min_tflops, gemm_max_tflops;
    int gemm_passes;
    int32_t gemm_n;
    char roofs_error[256];     /* why a device backend's probe failed, or "" */
    double prefill_tok_s;      /* 512-token prompt */
    double prefill_s;
    double ttft_s;             /* prefill of 512 + the first decode step */
    double decode_tok_s;       /* 128 tokens at an empty context */
    double decode_s;
    double bytes_per_token;    /* weights + KV at the mean context of that decode */
    int32_t depth;             /* context of the second decode figure; 0 = skipped */
    double prefill_depth_tok_s;
    double decode_depth_tok_s;
    double bytes_per_token_depth;
};

/* Decodes N tokens from TOK at positions POS.. and returns tokens/s (NAN on
 * failure, message in ERR). */
static double decode_run(struct engine *e, int32_t tok, int32_t pos, int32_t n, float *logits,
                         int32_t n_vocab, double *secs, char *err, size_t errlen)
{
    double t0 = kv_now_s();
    for (int32_t i = 0; i < n; i++) {
        if (engine_forward(e, &tok, 1, pos + i, logits, false, err, errlen) != 0)
            return NAN;
        tok = argmax(logits, n_vocab);
    }
    *secs = kv_now_s() - t0;
    return n / *secs;
}

static int run(struct engine *e, const struct kv_options *o, struct bench_result *r, char *err,
               size_t errlen)
{
    const struct engine_info *in = engine_info(e);
    int32_t n_prompt = r->depth > BENCH_PROMPT ? r->depth : BENCH_PROMPT;
    float *logits = malloc(sizeof *logits * (size_t)in->n_vocab);
    int32_t *prompt = malloc(sizeof *prompt * (size_t)n_prompt);
    int rc = -1;
    if (!logits || !prompt) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int32_t i = 0; i < n_prompt; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        prompt[i] = (int32_t)(x % (uint64_t)in->n_vocab);
    }

    /* 1. bandwidth, before the engine's threads are busy */
    r->bw_gb_s = r->bw_min_gb_s = r->bw_max_gb_s = NAN;
    r->bw_kind = "none";
    r->copy_gb_s = r->gemm_tflops = r->gemm_min_tflops = r->gemm_max_tflops = NAN;
    struct membw_figure bw;
    struct engine_roofs rf;
    bool device = strcmp(in->backend, "cpu") != 0;
    if (device && engine_measure_roofs(e, NULL, &rf, r->roofs_error, sizeof r->roofs_error) == 0) {
        r->copy_gb_s = rf.copy_gb_s;
        r->copy_bytes = rf.copy_bytes;
        if (rf.gemm_n > 0) {
            r->gemm_tflops = rf.gemm_tflops;
            r->gemm_min_tflops = rf.gemm_min_tflops;
            r->gemm_max_tflops = rf.gemm_max_tflops;
            r->gemm_passes = rf.gemm_passes;
            r->gemm_n = rf.gemm_n;
        }
        if (!(o->mem_bandwidth_gbs > 0)) {
            r->bw_gb_s = rf.copy_gb_s;
            r->bw_min_gb_s = rf.copy_min_gb_s;
            r->bw_max_gb_s = rf.copy_max_gb_s;
            r->bw_passes = rf.copy_passes;
            r->bw_kind = "d2d-copy";
        }
    }
    if (o->mem_bandwidth_gbs > 0) {
        r->bw_gb_s = o->mem_bandwidth_gbs;
        r->bw_kind = "--mem-bandwidth";
    } else if (!device &&
               membw_measure(MEMBW_DEFAULT_BYTES, in->n_threads, MEMBW_DEFAULT_PASSES, NULL, &bw)) {
        r->bw_gb_s = bw.median / 1e9;
        r->bw_min_gb_s = bw.min / 1e9;
        r->bw_max_gb_s = bw.max / 1e9;
        r->bw_passes = bw.passes;
        r->bw_kind = "read";
    }

    /* 2. warm-up */
    if (engine_forward(e, prompt, 16, 0, logits, false, err, errlen) != 0)
        goto out;
    int32_t tok = argmax(logits, in->n_vocab);
    if (engine_forward(e, &tok, 1, 16, logits, false, err, errlen) != 0)
        goto out;

    /* 3. prefill 512, then the first token */
    double t0 = kv_now_s();
    if (engine_forward(e, prompt, BENCH_PROMPT, 0, logits, false, err, errlen) != 0)
        goto out;
    r->prefill_s = kv_now_s() - t0;
    r->prefill_tok_s = BENCH_PROMPT / r->prefill_s;
    tok = argmax(logits, in->n_vocab);
    if (engine_forward(e, &tok, 1, BENCH_PROMPT, logits, false, err, errlen) != 0)
        goto out;
    r->ttft_s = kv_now_s() - t0;

    /* 4. decode at an empty context: position 0 onwards (what the cache held
     * there is overwritten, and nothing past the current position is read) */
    r->decode_tok_s = decode_run(e, tok, 0, BENCH_DECODE, logits, in->n_vocab, &r->decode_s, err,
                                 errlen);
    if (isnan(r->decode_tok_s))
        goto out;
    r->bytes_per_token = (double)engine_bytes_per_token(e, BENCH_DECODE / 2);

    /* 5. the same at a long context */
    r->prefill_depth_tok_s = r->decode_depth_tok_s = r->bytes_per_token_depth = NAN;
    if (r->depth > 0) {
        t0 = kv_now_s();
        if (engine_forward(e, prompt, r->depth, 0, logits, false, err, errlen) != 0)
            goto out;
        r->prefill_depth_tok_s = r->depth / (kv_now_s() - t0);
        double secs;
        r->decode_depth_tok_s = decode_run(e, argmax(logits, in->n_vocab), r->depth, BENCH_DECODE,
                                           logits, in->n_vocab, &secs, err, errlen);
        if (isnan(r->decode_depth_tok_s))
            goto out;
        r->bytes_per_token_depth =
            (double)engine_bytes_per_token(e, r->depth + BENCH_DECODE / 2);
    }
    rc = 0;
out:
    free(logits);
    free(prompt);
    return rc;
}

/* A JSON number, or null for NAN. */
static void json_num(const char *key, double v, int decimals, bool comma)
{
    if (isfinite(v))
        printf("\"%s\":%.*f%s", key, decimals, v, comma ? "," : "");
    else
        printf("\"%s\":null%s", key, comma ? "," : "");
}

/* A JSON string with the characters JSON forbids escaped. */
static void json_str(const char *key, const char *s)
{
    printf("\"%s\":\"", key);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    printf("\",");
}

/* Percent of the roofline: achieved bytes/s over the bandwidth. */
static double roof_pct(double tok_s, double bytes, double bw_gb_s)
{
    return tok_s * bytes / (bw_gb_s * 1e9) * 100.0;
}

static void print_json(const struct engine_info *in, const struct bench_result *r)
{
    printf("{");
    json_str("model", in->model_name);
    json_str("arch", in->arch);
    json_str("backend", in->backend);
    json_str("device", in->device);
    printf("\"synthetic\":%s,\"threads\":%d,\"n_params\":%llu,\"weight_bytes\":%llu,"
           "\"n_ctx\":%d,",
           in->synthetic ? "true" : "false", in->n_threads, (unsigned long long)in->n_params,
           (unsigned long long)in->weight_bytes, in->n_ctx);
    json_num("load_s", in->load_seconds, 3, true);
    json_num("bandwidth_gb_s", r->bw_gb_s, 3, true);
    json_num("bandwidth_min_gb_s", r->bw_min_gb_s, 3, true);
    json_num("bandwidth_max_gb_s", r->bw_max_gb_s, 3, true);
    printf("\"bandwidth_passes\":%d,", r->bw_passes);
    json_str("bandwidth_kind", r->bw_kind);
    printf("\"copy_bytes\":%llu,", (unsigned long long)r->copy_bytes);
    json_num("copy_gb_s", r->copy_gb_s, 3, true);
    json_num("gemm_bf16_tflops", r->gemm_tflops, 3, true);
    json_num("gemm_bf16_min_tflops", r->gemm_min_tflops, 3, true);
    json_num("gemm_bf16_max_tflops", r->gemm_max_tflops, 3, true);
    printf("\"gemm_n\":%d,\"gemm_passes\":%d,", r->gemm_n, r->gemm_passes);
    json_str("roofs_error", r->roofs_error);
    printf("\"prompt_tokens\":%d,", BENCH_PROMPT);
    json_num("prefill_tok_s", r->prefill_tok_s, 2, true);
    json_num("ttft_s", r->ttft_s, 4, true);
    printf("\"decode_tokens\":%d,", BENCH_DECODE);
    json_num("decode_tok_s", r->decode_tok_s, 2, true);
    json_num("bytes_per_token", r->bytes_per_token, 0, true);
    json_num("decode_gb_s", r->decode_tok_s * r->bytes_per_token / 1e9, 3, true);
    json_num("roofline_tok_s", r->bw_gb_s * 1e9 / r->bytes_per_token, 2, true);
    json_num("roofline_pct", roof_pct(r->decode_tok_s, r->bytes_per_token, r->bw_gb_s), 1, true);
    printf("\"depth\":%d,", r->depth);
    json_num("prefill_depth_tok_s", r->prefill_depth_tok_s, 2, true);
    json_num("decode_depth_tok_s", r->decode_depth_tok_s, 2, true);
    json_num("bytes_per_token_depth", r->bytes_per_token_depth, 0, true);
    json_num("decode_depth_gb_s", r->decode_depth_tok_s * r->bytes_per_token_depth / 1e9, 3,
             true);
    json_num("roofline_depth_tok_s", r->bw_gb_s * 1e9 / r->bytes_per_token_depth, 2, true);
    json_num("roofline_depth_pct",
             roof_pct(r->decode_depth_tok_s, r->bytes_per_token_depth, r->bw_gb_s), 1, false);
    printf("}\n");
}

static void print_decode(const char *what, double tok_s, double bytes, double bw_gb_s)
{
    printf("decode   %8.1f tokens/s  %s\n", tok_s, what);
    printf("         %.1f MiB read per token, %.2f GB/s", bytes / 1048576.0, tok_s * bytes / 1e9);
    if (isfinite(bw_gb_s))
        printf(" = %.1f%% of the roofline (%.1f tokens/s)", roof_pct(tok_s, bytes, bw_gb_s),
               bw_gb_s * 1e9 / bytes);
    printf("\n");
}

static void print_text(const struct engine_info *in, const struct bench_result *r)
{
    printf("model    %s (%s, %.1fM parameters, %.1f MiB of weights)\n", in->model_name, in->arch,
           in->n_params / 1e6, in->weight_bytes / 1048576.0);
    printf("backend  %s on %s, %d threads, context %d, %s in %.2f s\n", in->backend, in->device,
           in->n_threads, in->n_ctx, in->synthetic ? "built" : "loaded", in->load_seconds);
    if (isfinite(r->bw_min_gb_s) && strcmp(r->bw_kind, "d2d-copy") == 0)
        printf("memory   %.2f GB/s device-to-device copy, bytes read + written (%.0f MiB, "
               "median of %d passes, %.2f-%.2f)\n",
               r->bw_gb_s, r->copy_bytes / 1048576.0, r->bw_passes, r->bw_min_gb_s,
               r->bw_max_gb_s);
    else if (isfinite(r->bw_min_gb_s))
        printf("memory   %.2f GB/s read bandwidth, %d threads (median of %d passes, %.2f-%.2f)\n",
               r->bw_gb_s, in->n_threads, r->bw_passes, r->bw_min_gb_s, r->bw_max_gb_s);
    else if (isfinite(r->bw_gb_s))
        printf("memory   %.2f GB/s bandwidth (%s)\n", r->bw_gb_s, r->bw_kind);
    else
        printf("memory   bandwidth not measured on this backend (give --mem-bandwidth)\n");
    if (isfinite(r->copy_gb_s) && strcmp(r->bw_kind, "d2d-copy") != 0)
        printf("memory   %.2f GB/s device-to-device copy measured beside it\n", r->copy_gb_s);
    if (isfinite(r->gemm_tflops))
        printf("compute  %.1f TFLOP/s dense bf16 GEMM (cuBLAS, %d^3, median of %d passes, "
               "%.1f-%.1f)\n",
               r->gemm_tflops, r->gemm_n, r->gemm_passes, r->gemm_min_tflops, r->gemm_max_tflops);
    if (r->roofs_error[0])
        printf("device   ceilings not measured: %s\n", r->roofs_error);
    printf("prefill  %8.1f tokens/s  (%d-token prompt in %.3f s)\n", r->prefill_tok_s,
           BENCH_PROMPT, r->prefill_s);
    printf("ttft     %8.3f s         (%d-token prefill and the first decode step)\n", r->ttft_s,
           BENCH_PROMPT);
    char what[96];
    snprintf(what, sizeof what, "(%d tokens at an empty context, %.3f s)", BENCH_DECODE,
             r->decode_s);
    print_decode(what, r->decode_tok_s, r->bytes_per_token, r->bw_gb_s);
    if (r->depth > 0) {
        printf("prefill  %8.1f tokens/s  (%d tokens, filling the context)\n",
               r->prefill_depth_tok_s, r->depth);
        snprintf(what, sizeof what, "(%d tokens after %d of context)", BENCH_DECODE, r->depth);
        print_decode(what, r->decode_depth_tok_s, r->bytes_per_token_depth, r->bw_gb_s);
    }
}

int kv_run_bench(const struct kv_options *o)
{
    char err[1024];
    struct kv_options lo = *o;
    struct bench_result r = {.depth = o->bench_depth};
    int32_t need = (r.depth > BENCH_PROMPT ? r.depth : BENCH_PROMPT) + BENCH_DECODE;
    if (lo.ctx_size < need)
        lo.ctx_size = need;
    struct engine *e = kv_load_engine(&lo, false, err, sizeof err);
    if (!e) {
        fprintf(stderr, "kvchat: %s\n", err);
        return 1;
    }
    int rc = run(e, o, &r, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "kvchat: bench: %s\n", err);
    } else if (o->json) {
        print_json(engine_info(e), &r);
    } else {
        print_text(engine_info(e), &r);
    }
    engine_free(e);
    return rc ? 1 : 0;
}
