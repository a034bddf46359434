/* backend.h - the vtable a compute backend (CPU, CUDA) implements. Internal to
 * the engine: only engine.c, local.c and the registry (registry.c) call
 * through it.
 *
 * A backend owns its copy (or view) of the weights and the KV cache. forward()
 * runs N tokens at positions POS..POS+N-1: it writes their keys and values at
 * those positions, attends over positions 0..POS+N-1, and returns logits. What
 * the cache held at positions >= POS is overwritten, which is how the engine
 * rewinds (regenerate, context shift) without a separate call.
 *
 * The CUDA backend is a run-time module (kernels/, kvchat-cuda.so) that
 * hands its table over through one entry point, BACKEND_ENTRY: the table
 * crosses a shared-library boundary, so its layout is versioned by
 * BACKEND_ABI and every change to the structs below bumps it.
 */
#ifndef KVCHAT_BACKEND_H
#define KVCHAT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"       /* enum engine_kv_type */
#include "engine_tools.h" /* struct engine_roofs */

struct model;

/* Layout version of the structs in this header; a module built against
 * another version is refused rather than called. */
#define BACKEND_ABI 5u

struct backend_config {
    int32_t n_ctx;
    int32_t n_threads;
    /* The KV cache's element type. The engine always names one (f16 unless
     * asked otherwise); ENGINE_KV_AUTO, what a config built by hand gets, is
     * the backend's own: f32 on the CPU (its exact reference path), f16 on
     * CUDA. A type the backend does not store is refused by estimate() and
     * create() with a message that names the ones it does. */
    enum engine_kv_type kv_type;
};

/* What probe() found: the device a create() would use. */
struct backend_device {
    bool usable;        /* false: REASON says why */
    char name[128];     /* device name; "" when there is none */
    char reason[200];   /* why it is not usable ("" when it is) */
    uint64_t total;     /* bytes of device memory; 0 = unknown */
    uint64_t free;      /* bytes free now; 0 = unknown */
};

/* What a backend will hold for a model at a context size, in bytes. The
 * same figure decides --backend auto (the registry compares TOTAL with the
 * probe's free memory) and the backend's own create() check, so the two
 * never disagree. */
struct backend_estimate {
    uint64_t weights;   /* as the backend holds them (uploaded, or the file mapping) */
    uint64_t kv_cache;  /* at the full context */
    uint64_t scratch;   /* activations and work buffers */
    uint64_t reserve;   /* what the device's runtime and libraries take besides */
    uint64_t total;     /* the sum of the above */
};

/* One step's sampling, for a backend that picks the token itself
 * (sample() below): the settings sampler.c would use, the distinct ids its
 * repetition penalty touches, and the uniform it drew, so the device
 * applies the CPU's rule to the same numbers (sampler_plan fills it). */
#define BACKEND_SAMPLE_MAX_K 128   /* top_k the device path takes */
#define BACKEND_SAMPLE_MAX_PEN 256 /* distinct penalised ids it takes */
struct backend_sample {
    float temperature; /* <= 0: greedy, and TOP_K is 1 */
    int32_t top_k;     /* 1..BACKEND_SAMPLE_MAX_K, below n_vocab */
    float top_p, min_p, repeat_penalty;
    int32_t n_pen;
    int32_t pen[BACKEND_SAMPLE_MAX_PEN];
    double u; /* the draw in [0, 1); unused when greedy */
};

struct backend_ops {
    const char *name;
    /* Looks for the device without creating anything big; fills OUT. Never
     * fails hard: a missing device is OUT->usable false with the reason. */
    void (*probe)(struct backend_device *out);
    /* Sizes the backend for M at CFG without allocating (estimate above).
     * Returns 0, or -1 with ERR when this backend cannot run M at all (a
     * tensor type or head size it does not support). */
    int (*estimate)(const struct model *m, const struct backend_config *cfg,
                    struct backend_estimate *out, char *err, size_t errlen);
    /* Creates the backend state for M (borrowed; outlives the backend). NULL
     * with a message in ERR on failure (out of memory says how much). */
    void *(*create)(const struct model *m, const struct backend_config *cfg, char *err,
                    size_t errlen);
    void (*destroy)(void *b);
    /* LOGITS: n_vocab floats for the last token, or N x n_vocab when ALL. */
    int (*forward)(void *b, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                   bool all, char *err, size_t errlen);
    /* Optional (NULL on the CPU): forward() of the one TOKEN at POS, then
     * the next token picked on the device by S (sampler.c's rule), so only
     * the id comes back: *NEXT, and *NONFINITE true when the logits held a
     * NaN or an infinity. The engine calls it only when nobody needs the
     * logits. Returns 0 or -1 with ERR. */
    int (*sample)(void *b, int32_t token, int32_t pos, const struct backend_sample *s,
                  int32_t *next, bool *nonfinite, char *err, size_t errlen);
    void (*memory)(void *b, struct engine_memory *out);
    /* Human-readable device name. */
    const char *(*device_name)(void *b);
    /* Optional (NULL on the CPU): measures the device's copy bandwidth and
     * GEMM rate with P's sizes (0 fields are the defaults), as
     * engine_measure_roofs documents. Returns 0 or -1 with ERR. */
    int (*measure_roofs)(void *b, const struct engine_roofs_params *p, struct engine_roofs *out,
                         char *err, size_t errlen);
    /* True when the backend reads the weights in place from the file
     * mapping, so the engine prefaults them before create() (a device
     * backend copies them once and needs no prefault). */
    bool host_weights;
};

extern const struct backend_ops backend_cpu_ops;

/* The one symbol the CUDA module exports: returns its table, or NULL when
 * ABI (the caller's BACKEND_ABI) is not the one it was built with. */
#define BACKEND_ENTRY "kvchat_backend_entry"
typedef const struct backend_ops *(*backend_entry_fn)(uint32_t abi);

#endif
