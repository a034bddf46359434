/* ppl.h - perplexity as llama.cpp's llama-perplexity computes it, so the
 * figures compare: the text's tokens (BOS first when the model adds one) are
 * cut into chunks of N_CTX; each chunk is run from position 0 with its first
 * token replaced by BOS, and only its second half is scored: the logits at
 * positions N_CTX/2 .. N_CTX-2 against the token that follows. NLL =
 * -log softmax(logits)[next], accumulated in double; perplexity =
 * exp(mean NLL), and its error ppl * the standard error of the mean NLL.
 *
 * Rules: the model is reached only through a forward callback (the engine's
 * engine_forward for `kvchat perplexity`, a backend's forward in the tests),
 * so this module depends on nothing else; errors are -1 with a message in
 * ERR; nothing is printed here.
 */
#ifndef KVCHAT_PPL_H
#define KVCHAT_PPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Runs N tokens at positions POS.. and writes the last one's logits, or all
 * N rows when ALL (engine_forward's contract). 0, or -1 with ERR. */
typedef int (*ppl_forward_fn)(void *user, const int32_t *tokens, int32_t n, int32_t pos,
                              float *logits, bool all, char *err, size_t errlen);
/* Told after each chunk: its number (from 1), the count, and the running
 * perplexity (llama.cpp prints "[1]x,[2]y,..."). */
typedef void (*ppl_chunk_fn)(int32_t chunk, int32_t n_chunks, double ppl, void *user);

struct ppl_result {
    int32_t n_chunks;
    int64_t n_scored; /* tokens scored in all */
    double nll;       /* mean negative log-likelihood, nats */
    double ppl;       /* exp(nll) */
    double ppl_err;   /* ppl * standard error of the mean NLL; NAN with one token */
};

/* The NLL of token NEXT under LOGITS (N_VOCAB), in double. */
double ppl_token_nll(const float *logits, int32_t n_vocab, int32_t next);

/* Scores TOKENS (N_TOKENS ids below N_VOCAB) in chunks of N_CTX (at least 4,
 * at most N_TOKENS) as above; BOS is the id put first in every chunk, or -1
 * for a model without one (chunks are then taken as they are). ON_CHUNK may
 * be NULL. Returns 0 with OUT, or -1 with ERR. */
int ppl_run(ppl_forward_fn fwd, void *fwd_user, const int32_t *tokens, int64_t n_tokens,
            int32_t n_ctx, int32_t n_vocab, int32_t bos, ppl_chunk_fn on_chunk, void *chunk_user,
            struct ppl_result *out, char *err, size_t errlen);

#endif
