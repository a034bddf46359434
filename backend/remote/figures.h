/* figures.h - the serving side's own figures (struct engine_server): parsing
 * what servers publish, and a sampler thread that reads it while the engine
 * streams, so no token ever waits on a meter.
 *
 * What is read, from the server's root (the base URL without its /v1):
 * - GET /metrics, Prometheus text: vLLM (vllm:*), SGLang (sglang:*) and
 *   llama-server started with --metrics (llamacpp:*); see METRICS in
 *   figures.c for the names.
 * - GET /slots (llama-server): the context of a slot, tokens in the slots.
 * - GET /api/ps (Ollama): the GPU memory and context of the loaded model.
 *
 * Rules every function follows:
 * - Unknown is negative: a figure no endpoint publishes, a NaN or infinite
 *   sample, a body that does not parse, all leave the field negative.
 * - Several series of one metric (labels: a model, an engine of a data
 *   parallel server) add up for counts and average for fractions.
 * - The sampler tries every endpoint once; one that answers with an error is
 *   asked again only every FIG_RETRY_S seconds, so a vLLM server is not
 *   asked for /slots every round. It never reports an error: figures it
 *   cannot read stay unknown.
 * - Ownership: fig_start returns an owned sampler (fig_stop(NULL) is a
 *   no-op); its arguments are copied.
 */
#ifndef KVCHAT_REMOTE_FIGURES_H
#define KVCHAT_REMOTE_FIGURES_H

#include <stdbool.h>
#include <stddef.h>

#include "engine.h"

#define FIG_SAMPLE_S 2.0  /* between two readings */
#define FIG_RETRY_S 30.0  /* before asking again an endpoint that failed */

/* Sets every field of OUT to unknown. */
void fig_clear(struct engine_server *out);

/* Reads the metrics kvchat knows from a Prometheus text body into OUT
 * (fields it names no metric for are left as they are). Returns the number
 * of samples used, 0 when none (then OUT is unchanged). */
int fig_parse_metrics(const char *text, size_t len, struct engine_server *out);

/* llama-server's GET /slots (a JSON array of slots): n_ctx of the first
 * slot, and kv_tokens from the slots' n_past when the metrics gave none.
 * Returns 0, or -1 when the body is not a slot list. */
int fig_parse_slots(const char *json, size_t len, struct engine_server *out);

/* Ollama's GET /api/ps: size_vram and context_length of the entry whose name
 * is MODEL (or MODEL:latest). Returns 0 when the body is a model list (the
 * model may not be loaded yet: then nothing is set), -1 when it is not. */
int fig_parse_ollama_ps(const char *json, size_t len, const char *model,
                        struct engine_server *out);

struct fig_params {
    const char *root;    /* the server's root URL, e.g. "http://gpu-box:8000" */
    const char *model;   /* the model's name on the server */
    const char *key_env; /* the API key's variable, or NULL */
    bool insecure;
    long connect_s;
};

/* Starts the sampler thread; NULL when out of memory or threads (the figures
 * then stay unknown: nothing else depends on them). */
struct fig *fig_start(const struct fig_params *p);
/* The latest figures, with age_s since they were read (all unknown before
 * the first reading). Thread-safe. */
void fig_get(struct fig *f, struct engine_server *out);
/* Stops the thread (within about a second, even mid-request: curl checks
 * the stop flag at least once a second) and frees F. */
void fig_stop(struct fig *f);

#endif
