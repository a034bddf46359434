/* make_model_corpus.c - writes the seed corpus of fuzz_model: one tiny model
 * per architecture and a few variants (quantised weights, untied output,
 * per-layer head counts, rope frequencies, a sliding window, gpt-oss with
 * MXFP4 experts), each a few KiB.
 *
 * Usage: make_model_corpus OUTDIR  (rewrites the .gguf files in OUTDIR; the
 * checked-in corpus is tests/fuzz/corpus/model, made with this program).
 * The models come from tests/tiny_model.c, the generator the model tests
 * use, so the seeds are what the loader is tested to accept.
 */
#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"
#include "tiny_model.h"

static const struct {
    const char *file;
    struct tiny_spec spec;
} SEEDS[] = {
    {"llama-f32.gguf", {.arch = "llama", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                        .n_embd = 8, .n_head = 2, .n_head_kv = 1, .head_dim = 4, .n_rot = 4,
                        .n_ff = 12, .n_vocab = 7, .n_layer = 1, .untied = true, .rope_freqs = true}},
    {"llama-f16-kvarr.gguf", {.arch = "llama", .wtype = GGML_TYPE_F16, .etype = GGML_TYPE_F16,
                              .n_embd = 8, .n_head = 2, .n_head_kv = 2, .head_dim = 4, .n_rot = 2,
                              .n_rot_key = true, .n_ff = 8, .n_vocab = 5, .n_layer = 2,
                              .kv_array = true}},
    {"llama-q8_0.gguf", {.arch = "llama", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                         .n_embd = 32, .n_head = 1, .n_head_kv = 1, .head_dim = 32, .n_rot = 32,
                         .n_ff = 32, .n_vocab = 3, .n_layer = 1}},
    {"qwen2-f32.gguf", {.arch = "qwen2", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                        .n_embd = 8, .n_head = 2, .n_head_kv = 1, .head_dim = 4, .n_rot = 4,
                        .n_ff = 8, .n_vocab = 5, .n_layer = 1, .untied = true}},
    {"qwen3-f32.gguf", {.arch = "qwen3", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                        .n_embd = 8, .n_head = 2, .n_head_kv = 1, .head_dim = 4, .n_rot = 4,
                        .head_dim_key = true, .n_ff = 8, .n_vocab = 5, .n_layer = 1}},
    {"gemma3-f32.gguf", {.arch = "gemma3", .wtype = GGML_TYPE_F32, .etype = GGML_TYPE_F32,
                         .n_embd = 8, .n_head = 2, .n_head_kv = 1, .head_dim = 4, .n_rot = 4,
                         .head_dim_key = true, .n_ff = 8, .n_vocab = 5, .n_layer = 2,
                         .swa_window = 4}},
    {"gpt-oss-mxfp4.gguf", {.arch = "gpt-oss", .wtype = GGML_TYPE_F16, .etype = GGML_TYPE_F16,
                            .n_embd = 32, .n_head = 2, .n_head_kv = 1, .head_dim = 8, .n_rot = 8,
                            .head_dim_key = true, .n_vocab = 5, .n_layer = 2, .untied = true,
                            .swa_window = 4, .yarn_factor = 32.0f, .yarn_orig_ctx = 64,
                            .n_expert = 3, .n_expert_used = 2, .n_ff_exp = 32,
                            .own_xtype = true, .xtype = GGML_TYPE_MXFP4}},
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_model_corpus OUTDIR\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof SEEDS / sizeof *SEEDS; i++) {
        char path[4096], err[512];
        snprintf(path, sizeof path, "%s/%s", argv[1], SEEDS[i].file);
        struct gguf_writer *w = tiny_writer(&SEEDS[i].spec, i + 1);
        if (gguf_writer_write(w, path, err, sizeof err) != 0) {
            fprintf(stderr, "make_model_corpus: %s\n", err);
            return 1;
        }
        gguf_writer_free(w);
    }
    return 0;
}
