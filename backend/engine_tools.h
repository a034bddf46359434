/* engine_tools.h - raw access below the turn level, for `kvchat bench`,
 * `kvchat synth` (tools/) and the tests. The chat front-ends never need it:
 * they speak engine.h.
 *
 * Entries that only a local engine can serve (raw forward passes, the bytes a
 * decode step reads) fail with a message on an engine that has no model of
 * its own, rather than being absent from the interface.
 */
#ifndef KVCHAT_ENGINE_TOOLS_H
#define KVCHAT_ENGINE_TOOLS_H

#include "engine.h"

/* Runs tokens through the model at positions POS.. and writes the last
 * token's logits (n_vocab) to LOGITS, or every token's (n x n_vocab) when
 * ALL_LOGITS. Does not touch the conversation bookkeeping (call engine_reset
 * afterwards). Returns 0 or -1 with ERR. */
int engine_forward(struct engine *e, const int32_t *tokens, int32_t n, int32_t pos,
                   float *logits, bool all_logits, char *err, size_t errlen);

/* Bytes one decode step reads at a context of N_PAST earlier tokens: the
 * weights (the model's bytes per token) plus the K and V of every position
 * each layer attends to (sliding-window layers no more than their window), at
 * the backend's KV cache element size. The bandwidth roofline's numerator; 0
 * when the engine cannot know it. */
uint64_t engine_bytes_per_token(struct engine *e, int32_t n_past);

/* The device's two ceilings, measured now (engine_measure_roofs): the
 * memory-bandwidth roofline's denominator and the dense matrix rate. */
struct engine_roofs_params {
    uint64_t copy_bytes; /* size of one device-to-device copy; 0 = 1 GiB */
    int copy_passes;     /* timed copies; 0 = 9 */
    int32_t gemm_n;      /* square bf16 GEMM size; 0 = 8192, -1 = no GEMM */
    int gemm_passes;     /* timed GEMMs; 0 = 10 */
};
struct engine_roofs {
    /* Device-to-device copy, bytes read plus bytes written per second
     * (the way a copy's bandwidth is quoted against the datasheet), in
     * GB/s: the median pass, and the slowest and fastest. */
    double copy_gb_s, copy_min_gb_s, copy_max_gb_s;
    int copy_passes;
    uint64_t copy_bytes; /* the size used: smaller than asked when memory is short */
    /* Dense bf16 GEMM (fp32 accumulation, random operands), TFLOP/s at
     * 2 n^3 operations a product: median, slowest, fastest; 0 = not run. */
    double gemm_tflops, gemm_min_tflops, gemm_max_tflops;
    int gemm_passes;
    int32_t gemm_n;      /* the size used; 0 = not run */
};

/* Measures the device's copy bandwidth and bf16 GEMM rate with P (NULL: the
 * defaults), timed with device events, each figure the median of its passes
 * after one warm-up. Only a device backend has it: the CPU's bandwidth is
 * telemetry/membw's. Allocates its buffers beside the model and frees them
 * before returning; sizes are halved (the copy down to 64 MiB, the GEMM to
 * 1024) until they fit the free memory. Returns 0, or -1 with ERR (no such
 * probe on this backend, too little memory, a device error). */
int engine_measure_roofs(struct engine *e, const struct engine_roofs_params *p,
                         struct engine_roofs *out, char *err, size_t errlen);

/* kvchat synth: builds the synthetic model SPEC ("SHAPE:TYPE") and writes it
 * to PATH as a GGUF file other engines load too, with the tokenizer copied
 * from the model file TOKENIZER_FROM (NULL: none). The tokenizer must have
 * the shape's vocabulary size (the message names the shapes that would
 * fit). Memory (read under MEM_ROOT, a prefix of /proc and /sys that tests
 * fake; NULL = the real ones) and disk space are weighed first, and too
 * little of either is an error naming both sizes. Returns 0 or -1 with ERR. */
int engine_write_synthetic(const char *spec, const char *tokenizer_from, const char *path,
                           const char *mem_root,
                           char *err, size_t errlen);

#endif
