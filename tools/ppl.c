/* ppl.c - the perplexity method of llama-perplexity (ppl.h). */
#include "ppl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tokens per forward call of the scored half: bounds the logits buffer
 * (PPL_BATCH x n_vocab floats: 128 MiB for Gemma's 262144) while keeping
 * prefill batched. */
#define PPL_BATCH 128

double ppl_token_nll(const float *logits, int32_t n_vocab, int32_t next)
{
    double mx = logits[0];
    for (int32_t i = 1; i < n_vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - mx);
    return -((double)logits[next] - mx - log(sum));
}

int ppl_run(ppl_forward_fn fwd, void *fwd_user, const int32_t *tokens, int64_t n_tokens,
            int32_t n_ctx, int32_t n_vocab, int32_t bos, ppl_chunk_fn on_chunk, void *chunk_user,
            struct ppl_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (n_ctx < 4) {
        snprintf(err, errlen, "a chunk of %d tokens is too short to score: use -c 16 or more",
                 n_ctx);
        return -1;
    }
    if (n_tokens < n_ctx) {
        snprintf(err, errlen,
                 "the text has %lld tokens, fewer than one chunk of %d: give a longer text or a "
                 "smaller -c", (long long)n_tokens, n_ctx);
        return -1;
    }
    int32_t n_chunks = (int32_t)(n_tokens / n_ctx);
    int32_t first = n_ctx / 2;
    int32_t rows = n_ctx - first < PPL_BATCH ? n_ctx - first : PPL_BATCH;
    int32_t *batch = malloc(sizeof *batch * (size_t)n_ctx);
    float *logits = malloc(sizeof *logits * (size_t)rows * (size_t)n_vocab);
    if (!batch || !logits) {
        free(batch);
        free(logits);
        snprintf(err, errlen, "out of memory for the logits of %d tokens", rows);
        return -1;
    }
    double nll = 0, nll2 = 0;
    int64_t count = 0;
    int rc = 0;
    for (int32_t c = 0; c < n_chunks && rc == 0; c++) {
        memcpy(batch, tokens + (int64_t)c * n_ctx, sizeof *batch * (size_t)n_ctx);
        if (bos >= 0)
            batch[0] = bos;
        /* the unscored first half only fills the cache */
        rc = fwd(fwd_user, batch, first, 0, logits, false, err, errlen);
        for (int32_t pos = first; rc == 0 && pos < n_ctx - 1; pos += rows) {
            int32_t n = n_ctx - 1 - pos < rows ? n_ctx - 1 - pos : rows;
            rc = fwd(fwd_user, batch + pos, n, pos, logits, true, err, errlen);
            for (int32_t j = 0; rc == 0 && j < n; j++) {
                /* the next token of the text itself: position 0's BOS is
                 * never a target, since scoring starts at N_CTX/2 */
                double v = ppl_token_nll(logits + (size_t)j * n_vocab, n_vocab,
                                         batch[pos + j + 1]);
                nll += v;
                nll2 += v * v;
                count++;
            }
        }
        if (rc == 0 && on_chunk)
            on_chunk(c + 1, n_chunks, exp(nll / (double)count), chunk_user);
    }
    free(batch);
    free(logits);
    if (rc != 0)
        return -1;
    double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
    out->n_chunks = n_chunks;
    out->n_scored = count;
    out->nll = mean;
    out->ppl = exp(mean);
    out->ppl_err = count > 1 && var > 0 ? out->ppl * sqrt(var / (double)(count - 1)) : NAN;
    return 0;
}
