/* perplexity.c - `kvchat perplexity -m MODEL -f TEXT [-c N] [--json]`: the
 * model's perplexity on a text file by llama-perplexity's method (ppl.h), so
 * the figure compares with llama.cpp's on the same file and chunk size.
 *
 * Output as llama.cpp's: the running perplexity after each chunk on stderr
 * ("[1]x,[2]y,..."), then "Final estimate: PPL = X +/- Y" on stdout (or one
 * JSON object with --json). The chunk size is the engine's context, 512 by
 * default (llama.cpp's usual comparison setting).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_tools.h"
#include "launch.h"
#include "ppl.h"
#include "textfile.h"
#include "tools.h"

#define PPL_DEFAULT_CTX 512
/* Texts larger than this are refused rather than tokenised whole. */
#define PPL_MAX_TEXT (256u << 20)

static int forward(void *user, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                   bool all, char *err, size_t errlen)
{
    return engine_forward(user, tokens, n, pos, logits, all, err, errlen);
}

static void on_chunk(int32_t chunk, int32_t n_chunks, double ppl, void *user)
{
    (void)user;
    fprintf(stderr, "[%d]%.4f,%s", chunk, ppl, chunk == n_chunks ? "\n" : "");
    fflush(stderr);
}

int kv_run_perplexity(const struct kv_options *o)
{
    char err[1024];
    size_t len;
    char *text = textfile_read(o->text_file, PPL_MAX_TEXT, &len, err, sizeof err);
    if (!text) {
        fprintf(stderr, "kvchat: perplexity: %s\n", err);
        return 1;
    }
    struct kv_options lo = *o;
    if (lo.ctx_size == 0)
        lo.ctx_size = PPL_DEFAULT_CTX;
    struct engine *e = kv_load_engine(&lo, o->verbose, err, sizeof err);
    if (!e) {
        fprintf(stderr, "kvchat: %s\n", err);
        free(text);
        return 1;
    }
    const struct engine_info *in = engine_info(e);
    int64_t n = 0, nb = 0;
    /* the whole text at once, BOS first when the model adds one; the
     * model's BOS id is what tokenising nothing gives */
    int32_t *ids = engine_tokenize(e, text, true, &n);
    int32_t *bos = engine_tokenize(e, "", true, &nb);
    free(text);
    int rc = 1;
    if (!ids || !bos) {
        fprintf(stderr, "kvchat: perplexity: %s\n",
                in->synthetic ? "a synthetic model has no tokenizer" : "out of memory tokenizing");
        goto out;
    }
    fprintf(stderr, "kvchat: perplexity of %s over %lld tokens in %lld chunks of %d (KV %s)\n",
            in->model_name, (long long)n, (long long)(n / in->n_ctx), in->n_ctx, in->kv_type);
    struct ppl_result r;
    if (ppl_run(forward, e, ids, n, in->n_ctx, in->n_vocab, nb == 1 ? bos[0] : -1, on_chunk,
                NULL, &r, err, sizeof err) != 0) {
        fprintf(stderr, "kvchat: perplexity: %s\n", err);
        goto out;
    }
    if (o->json)
        printf("{\"model\": \"%s\", \"n_ctx\": %d, \"tokens\": %lld, \"chunks\": %d, "
               "\"scored\": %lld, \"nll\": %.6f, \"ppl\": %.4f, \"ppl_err\": %.5f, "
               "\"kv_type\": \"%s\", \"backend\": \"%s\"}\n",
               in->model_name, in->n_ctx, (long long)n, r.n_chunks, (long long)r.n_scored,
               r.nll, r.ppl, isfinite(r.ppl_err) ? r.ppl_err : 0.0, in->kv_type, in->backend);
    else
        printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl,
               isfinite(r.ppl_err) ? r.ppl_err : 0.0);
    rc = 0;
out:
    free(ids);
    free(bos);
    engine_free(e);
    return rc;
}
