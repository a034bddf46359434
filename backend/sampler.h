/* sampler.h - choosing the next token from logits.
 *
 * Order of the chain: repetition penalty, then (temperature 0) greedy argmax,
 * else top-k, temperature, top-p, min-p, and a draw from the RNG the sampler
 * owns, so the same seed gives the same output.
 *
 * Thread safety: a sampler belongs to one thread.
 */
#ifndef KVCHAT_SAMPLER_H
#define KVCHAT_SAMPLER_H

#include <stdint.h>

struct sampler_params {
    float temperature;    /* 0 = greedy */
    int32_t top_k;        /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off; applied to the last REPEAT_LAST_N tokens */
    int32_t repeat_last_n;
    uint64_t seed;
};

/* temperature 0.7, top_k 40, top_p 0.95, min_p 0.05, repeat 1.1 over 64, seed 0 */
struct sampler_params sampler_defaults(void);

struct sampler;
struct sampler *sampler_new(int32_t n_vocab, const struct sampler_params *p);
void sampler_free(struct sampler *s); /* NULL is a no-op */
void sampler_set_params(struct sampler *s, const struct sampler_params *p); /* reseeds */

/* Records an id that is now part of the context (prompt or generated), for the
 * repetition penalty. */
void sampler_accept(struct sampler *s, int32_t id);
void sampler_reset_history(struct sampler *s);

/* Picks a token from LOGITS (n_vocab floats; modified in place). */
int32_t sampler_sample(struct sampler *s, float *logits);

#endif
