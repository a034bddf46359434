/* fuzz_tokenizer.c - libFuzzer target for the tokenizers (backend/text):
 * encoding arbitrary text and decoding it back.
 *
 * The vocabularies are built by the harness itself, once, through the GGUF
 * writer: a SentencePiece one (byte fallback, a few merged pieces, control
 * tokens) and byte-level BPE ones with merges under several pre-tokenizers.
 * So the input is only text and the seeds are small text files, the target
 * needs no model file and runs the same anywhere; the conformance against
 * real vocabularies is test_tokenizer's business, what matters here is that
 * no text makes the encoder or the detokeniser misbehave.
 *
 * Input: byte 0 picks the vocabulary (low bits) and add_bos (bit 7); the
 * rest is the text. Checks: the encoder's two-call contract, every id in
 * range, no control token out of plain text (typed "<|im_end|>" stays
 * text), a control token where a special segment asks for it (a 0x01 byte
 * in the text marks where), every piece's length, the streaming
 * detokeniser's output valid UTF-8, and for byte-level BPE on valid UTF-8
 * input the exact round trip.
 *
 * Build and run (from the repository root):
 *   CC=clang cmake -S . -B build-fuzz -DKVCHAT_FUZZ=ON -DKVCHAT_CUDA=OFF
 *     -DKVCHAT_ENGINE_ONLY=ON
 *   cmake --build build-fuzz --target fuzz_tokenizer -j2
 *   mkdir -p /tmp/tok-corpus && ./build-fuzz/tests/fuzz/fuzz_tokenizer
 *     -max_total_time=60 -max_len=4096 -artifact_prefix=/tmp/
 *     /tmp/tok-corpus tests/fuzz/corpus/tokenizer
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

#define N_VOCABS 7
static struct tokenizer *vocabs[N_VOCABS];
static const char *const BPE_PRE[N_VOCABS - 1] = {"gpt-2", "llama3", "qwen2", "smollm", "deepseek-llm",
                                                  "default"};

/* The writer has no failure to report until to_memory; a vocabulary the
 * tokenizer refuses is a bug in this harness, so abort. */
static struct tokenizer *open_vocab(struct gguf_writer *w)
{
    size_t size;
    void *mem = gguf_writer_to_memory(w, &size);
    gguf_writer_free(w);
    char err[512];
    struct gguf *g = mem ? gguf_open_memory(mem, size, "vocab", err, sizeof err) : NULL;
    struct tokenizer *t = g ? tok_new(g, err, sizeof err) : NULL;
    if (!t) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err);
        abort();
    }
    gguf_close(g);
    free(mem);
    return t;
}

static struct tokenizer *spm_vocab(void)
{
    static const char *const pieces[] = {"\xE2\x96\x81", "\xE2\x96\x81t", "\xE2\x96\x81th",
        "\xE2\x96\x81the", "h", "e", "t", "a", "b", "ab", "\xE2\x96\x81\x61" /* "▁a" */, "in", "ing",
        "\xC3\xA9", "\xE4\xB8\xAD"};
    enum { NP = sizeof pieces / sizeof *pieces, N = 4 + 256 + NP };
    static char bytes[256][8];
    const char *tok[N];
    float score[N];
    int32_t type[N];
    tok[0] = "<unk>", tok[1] = "<s>", tok[2] = "</s>", tok[3] = "<|im_end|>";
    type[0] = TOK_ATTR_UNKNOWN, type[1] = type[2] = type[3] = TOK_ATTR_CONTROL;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], sizeof bytes[i], "<0x%02X>", i);
        tok[4 + i] = bytes[i];
        type[4 + i] = TOK_ATTR_BYTE;
    }
    for (int i = 0; i < NP; i++) {
        tok[260 + i] = pieces[i];
        type[260 + i] = TOK_ATTR_NORMAL;
    }
    for (int i = 0; i < N; i++)
        score[i] = -(float)i;
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, N);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, score, N);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, type, N);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    return open_vocab(w);
}

/* GPT-2's byte-to-character map: printable Latin-1 stands for itself, the
 * other bytes for U+0100 onwards, in order. */
static void byte_char(int b, char out[4])
{
    static int next[256], built;
    if (!built) {
        int n = 0;
        for (int i = 0; i < 256; i++)
            next[i] = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174 ? i : 256 + n++;
        built = 1;
    }
    int cp = next[b];
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
    }
}

static struct tokenizer *bpe_vocab(const char *pre)
{
    static const char *const merged[] = {"\xC4\xA0t", "he", "\xC4\xA0the", "in", "ing", "er",
        "\xC4\xA0\xC4\xA0", "12"};
    static const char *const merges[] = {"\xC4\xA0 t", "h e", "\xC4\xA0t he", "i n", "in g", "e r",
        "\xC4\xA0 \xC4\xA0", "1 2"};
    enum { NM = sizeof merged / sizeof *merged, N = 256 + NM + 2 };
    static char chars[256][4];
    const char *tok[N];
    int32_t type[N];
    for (int i = 0; i < 256; i++) {
        byte_char(i, chars[i]);
        tok[i] = chars[i];
        type[i] = TOK_ATTR_NORMAL;
    }
    for (int i = 0; i < NM; i++)
        tok[256 + i] = merged[i], type[256 + i] = TOK_ATTR_NORMAL;
    tok[256 + NM] = "<|endoftext|>", tok[257 + NM] = "<|im_end|>";
    type[256 + NM] = type[257 + NM] = TOK_ATTR_CONTROL;
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, N);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, type, N);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, NM);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 256 + NM);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 256 + NM);
    return open_vocab(w);
}

static void free_vocabs(void)
{
    for (int i = 0; i < N_VOCABS; i++)
        tok_free(vocabs[i]);
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F) ||
            (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))
            return false;
        i += len;
    }
    return true;
}

/* Encodes through the two-call contract: a count, then the ids. */
static int32_t *encode(const struct tokenizer *t, const struct tok_segment *segs, size_t n_segs,
                       bool add_bos, int64_t *n_out)
{
    int32_t probe[4];
    int64_t n = tok_encode_segments(t, segs, n_segs, add_bos, probe, 4);
    if (n < 0)
        return NULL;
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids)
        abort();
    if (tok_encode_segments(t, segs, n_segs, add_bos, ids, n) != n)
        abort(); /* the count must not change with the buffer */
    if (n && n <= 4 && memcmp(ids, probe, (size_t)n * sizeof *ids) != 0)
        abort();
    *n_out = n;
    return ids;
}

static void check_ids(const struct tokenizer *t, const int32_t *ids, int64_t n, bool add_bos,
                      int64_t n_control_allowed)
{
    int64_t control = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok_n_vocab(t))
            abort();
        if (tok_attr(t, ids[i]) == TOK_ATTR_CONTROL && !(i == 0 && add_bos && ids[i] == tok_bos(t)))
            control++;
        char piece[64];
        size_t len = tok_piece(t, ids[i], piece, sizeof piece);
        if (len > 64 || (len < sizeof piece && len > strlen(tok_text(t, ids[i])) + 3))
            abort();
    }
    if (control != n_control_allowed)
        abort();
}

/* Decodes IDS with the streaming detokeniser; returns the text (malloc'd). */
static uint8_t *decode(const struct tokenizer *t, const int32_t *ids, int64_t n, size_t *len)
{
    struct tok_stream *s = tok_stream_new(t);
    if (!s)
        abort();
    size_t cap = 64, used = 0;
    uint8_t *out = malloc(cap);
    for (int64_t i = 0; i <= n; i++) {
        const char *p;
        size_t k = i < n ? tok_stream_push(s, ids[i], &p) : tok_stream_flush(s, &p);
        while (out && used + k > cap) {
            uint8_t *no = realloc(out, cap *= 2);
            if (!no)
                free(out);
            out = no;
        }
        if (!out)
            abort();
        if (k)
            memcpy(out + used, p, k);
        used += k;
    }
    tok_stream_free(s);
    *len = used;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!vocabs[0]) {
        vocabs[0] = spm_vocab();
        for (int i = 1; i < N_VOCABS; i++)
            vocabs[i] = bpe_vocab(BPE_PRE[i - 1]);
        atexit(free_vocabs);
    }
    if (!size)
        return 0;
    const struct tokenizer *t = vocabs[data[0] % N_VOCABS];
    bool add_bos = data[0] & 0x80;
    size_t n = size - 1;
    char *text = malloc(n ? n : 1); /* exact size: a read past the text is caught */
    if (!text)
        return 0;
    memcpy(text, data + 1, n);

    /* Plain text: never a control token, whatever it spells. */
    struct tok_segment plain = {text, n, false};
    int64_t n_ids;
    int32_t *ids = encode(t, &plain, 1, add_bos, &n_ids);
    if (!ids)
        abort(); /* plain text is always encodable */
    check_ids(t, ids, n_ids, add_bos, 0);
    if (tok_encode(t, text, n, add_bos, NULL, 0) != n_ids)
        abort();
    size_t dlen;
    uint8_t *dec = decode(t, ids, n_ids, &dlen);
    if (!valid_utf8(dec, dlen))
        abort();
    if (tok_kind(t) == TOK_KIND_BPE && valid_utf8(data + 1, n) && (dlen != n || memcmp(dec, text, n)))
        abort(); /* byte-level BPE loses nothing */
    free(dec);
    free(ids);

    /* A 0x01 byte marks a control token: exactly one comes out for it. */
    const char *mark = memchr(text, 1, n);
    if (mark) {
        size_t at = (size_t)(mark - text);
        struct tok_segment segs[3] = {{text, at, false}, {"<|im_end|>", 10, true},
                                      {mark + 1, n - at - 1, false}};
        ids = encode(t, segs, 3, add_bos, &n_ids);
        if (!ids)
            abort();
        check_ids(t, ids, n_ids, add_bos, 1);
        free(ids);
    }
    free(text);
    return 0;
}
