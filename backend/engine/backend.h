/* backend.h - the vtable a compute backend (CPU, CUDA) implements. Internal to
 * the engine: only engine.c calls through it.
 *
 * A backend owns its copy (or view) of the weights and the KV cache. forward()
 * runs N tokens at positions POS..POS+N-1: it writes their keys and values at
 * those positions, attends over positions 0..POS+N-1, and returns logits. What
 * the cache held at positions >= POS is overwritten, which is how the engine
 * rewinds (regenerate, context shift) without a separate call.
 */
#ifndef KVCHAT_BACKEND_H
#define KVCHAT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct model;
struct engine_memory;

struct backend_config {
    int32_t n_ctx;
    int32_t n_threads;
};

struct backend_ops {
    const char *name;
    /* Creates the backend state for M (borrowed; outlives the backend). NULL
     * with a message in ERR on failure (out of memory says how much). */
    void *(*create)(const struct model *m, const struct backend_config *cfg, char *err,
                    size_t errlen);
    void (*destroy)(void *b);
    /* LOGITS: n_vocab floats for the last token, or N x n_vocab when ALL. */
    int (*forward)(void *b, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                   bool all, char *err, size_t errlen);
    void (*memory)(void *b, struct engine_memory *out);
    /* Human-readable device name. */
    const char *(*device_name)(void *b);
};

extern const struct backend_ops backend_cpu_ops;
#ifdef KVCHAT_HAVE_CUDA
extern const struct backend_ops backend_cuda_ops;
#endif

#endif
