/* describe.c - engine_describe_file: what a model file is (architecture,
 * quantisation, parameters, trained context, size), for --list-models and
 * the chat screen's /model picker.
 *
 * Only the GGUF reader runs: it maps the file and validates the header,
 * metadata and tensor table, so a folder of multi-gigabyte models lists in
 * milliseconds and a corrupt file is a one-line error, never a crash. The
 * weights are not read, and the architecture is not checked against the ones
 * the engine runs (loading says so, with the list).
 */
#include "engine.h"

#include <stdio.h>
#include <string.h>

#include "errmsg.h"
#include "gguf.h"
#include "quant.h"

/* general.file_type's values (llama.cpp's llama_ftype) and the names files
 * are known by; gaps are retired values. */
static const char *const FILE_TYPES[] = {
    [0] = "F32",     [1] = "F16",      [2] = "Q4_0",     [3] = "Q4_1",    [7] = "Q8_0",
    [8] = "Q5_0",    [9] = "Q5_1",     [10] = "Q2_K",    [11] = "Q3_K_S", [12] = "Q3_K_M",
    [13] = "Q3_K_L", [14] = "Q4_K_S",  [15] = "Q4_K_M",  [16] = "Q5_K_S", [17] = "Q5_K_M",
    [18] = "Q6_K",   [19] = "IQ2_XXS", [20] = "IQ2_XS",  [21] = "Q2_K_S", [22] = "IQ3_XS",
    [23] = "IQ3_XXS", [24] = "IQ1_S",  [25] = "IQ4_NL",  [26] = "IQ3_S",  [27] = "IQ3_M",
    [28] = "IQ2_S",  [29] = "IQ2_M",   [30] = "IQ4_XS",  [31] = "IQ1_M",  [32] = "BF16",
    [36] = "TQ1_0",  [37] = "TQ2_0",   [38] = "MXFP4_MOE",
};

/* Copies S into BUF with control bytes as '?': metadata is untrusted and
 * ends up on a terminal. */
static void printable(struct gguf_str s, char *buf, size_t cap)
{
    gguf_str_copy(s, buf, cap);
    for (char *c = buf; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
            *c = '?';
}

int engine_describe_file(const char *path, struct engine_file_info *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct gguf *g = gguf_open(path, err, errlen);
    if (!g)
        return -1;
    struct gguf_str s;
    if (!gguf_get_str(g, "general.architecture", &s) || s.len == 0) {
        kv_seterr(err, errlen, "%s: no general.architecture: not a model file", path);
        gguf_close(g);
        return -1;
    }
    printable(s, out->arch, sizeof out->arch);
    if (gguf_get_str(g, "general.name", &s) && s.len > 0) {
        printable(s, out->name, sizeof out->name);
    } else {
        const char *base = strrchr(path, '/');
        snprintf(out->name, sizeof out->name, "%s", base ? base + 1 : path);
    }
    char key[64];
    int64_t v;
    snprintf(key, sizeof key, "%s.context_length", out->arch);
    if (gguf_get_int(g, key, &v) && v > 0 && v <= INT32_MAX)
        out->n_ctx_train = (int32_t)v;
    out->file_bytes = gguf_file_size(g);

    /* The quantisation a file is known by: its general.file_type when it
     * has one we can name (a Q4_K_M file mixes Q4_K and Q6_K layers), else
     * the type of most of its layers' matrices (the embeddings are often
     * kept wider and, in a small model, can outweigh every layer), else of
     * all matrices, else of all tensors. */
    uint64_t cnt[3][GGML_TYPE_COUNT] = {{0}}; /* layer matrices, matrices, all */
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        uint64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            ne *= (uint64_t)t->ne[d];
        out->n_params += ne;
        if ((unsigned)t->type >= GGML_TYPE_COUNT)
            continue;
        cnt[2][t->type] += ne;
        if (t->n_dims >= 2)
            cnt[1][t->type] += ne;
        if (t->n_dims >= 2 && t->name.len > 4 && memcmp(t->name.ptr, "blk.", 4) == 0)
            cnt[0][t->type] += ne;
    }
    if (gguf_get_int(g, "general.file_type", &v) && v >= 0 &&
        v < (int64_t)(sizeof FILE_TYPES / sizeof *FILE_TYPES) && FILE_TYPES[v]) {
        snprintf(out->quant, sizeof out->quant, "%s", FILE_TYPES[v]);
    } else {
        int best = -1;
        for (int pass = 0; pass < 3 && best < 0; pass++)
            for (int ty = 0; ty < GGML_TYPE_COUNT; ty++)
                if (cnt[pass][ty] > 0 && (best < 0 || cnt[pass][ty] > cnt[pass][best]))
                    best = ty;
        snprintf(out->quant, sizeof out->quant, "%s",
                 best >= 0 ? quant_type_name((enum ggml_type)best) : "none");
    }
    gguf_close(g);
    return 0;
}
