/* sampler.h - choosing the next token from logits.
 *
 * It implements struct engine_sampling (engine.h), whose comment gives the
 * order of the chain; the RNG state lives in the sampler, so the same seed
 * gives the same output.
 *
 * Thread safety: a sampler belongs to one thread.
 */
#ifndef KVCHAT_SAMPLER_H
#define KVCHAT_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h" /* struct backend_sample */
#include "engine.h"  /* struct engine_sampling: the settings are the public ones */

struct sampler;
struct sampler *sampler_new(int32_t n_vocab, const struct engine_sampling *p);
void sampler_free(struct sampler *s); /* NULL is a no-op */
/* Reseeds. Returns 0, or -1 when there is no memory for the repetition
 * window: the sampler then penalises a shorter window than P asks, so the
 * caller must not sample as if it had P. sampler_new fails likewise. */
int sampler_set_params(struct sampler *s, const struct engine_sampling *p);

/* Records an id that is now part of the context (prompt or generated), for the
 * repetition penalty. */
void sampler_accept(struct sampler *s, int32_t id);
void sampler_reset_history(struct sampler *s);

/* Picks a token from LOGITS (n_vocab floats; modified in place). NaN never
 * wins and -INFINITY masks a token out. */
int32_t sampler_sample(struct sampler *s, float *logits);

/* The next sampler_sample as a plan for a backend that samples on its
 * device (backend.h): fills OUT and takes the RNG draw sampler_sample
 * would take, so the stream goes on as if the host had sampled. Returns -1,
 * touching nothing, when the settings need the host path: top_k off or
 * above BACKEND_SAMPLE_MAX_K (or not below n_vocab) when not greedy, or
 * more distinct penalised ids than BACKEND_SAMPLE_MAX_PEN. */
int sampler_plan(struct sampler *s, struct backend_sample *out);

/* True when the LOGITS of the last sampler_sample held a NaN or an infinity.
 * A model's forward pass never makes one from sound weights, so the engine
 * takes it as a damaged file; found during the pass sampling makes anyway. */
bool sampler_saw_nonfinite(const struct sampler *s);

#endif
