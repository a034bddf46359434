/* synthcmd.c - `kvchat synth SHAPE:TYPE -o FILE.gguf --tokenizer-from MODEL`:
 * writes a synthetic model (backend/synth.h) to a GGUF file with a real
 * tokenizer, so that llama.cpp and other engines can run the identical
 * weights kvchat benchmarks with --synthetic.
 *
 * The tokenizer's vocabulary must match the shape's (SmolLM2's 49152 tokens
 * for smollm2-135m, Gemma 3's 262144 for gemma3-1b, Llama 3's 128256 for the
 * llama shapes, ...): the weights are random, so only the sizes matter, and
 * an embedding table resized to someone else's tokenizer would no longer be
 * the shape asked for. A mismatch is an error naming the shapes that fit.
 */
#include <stdio.h>

#include "engine_tools.h"
#include "tools.h"

int kv_run_synth(const struct kv_options *o)
{
    char err[1024];
    if (engine_write_synthetic(o->synthetic, o->tokenizer_from, o->output, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "kvchat: synth: %s\n", err);
        return 1;
    }
    if (o->verbose)
        fprintf(stderr, "kvchat: wrote %s (%s)\n", o->output, o->synthetic);
    return 0;
}
