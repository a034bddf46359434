/* spm.c - SentencePiece-style encoding (`llama` vocabularies), as llama.cpp's
 * llm_tokenizer_spm: spaces become U+2581, characters merge by the score of
 * the merged text, highest first, and what is left that is not a token falls
 * back to byte tokens (<0xXX>).
 *
 * A long fragment is merged in chunks of about SPM_CHUNK bytes, cut where two
 * bytes meet that no token holds side by side: no merge can ever join the two
 * sides of such a cut (every merged symbol is a token), so the chunks give
 * exactly the ids of the whole, and the symbols and queue of one chunk are all
 * the scratch space a text of any length needs. Text with no such place (a
 * run of one character that has tokens of every length) stays one chunk.
 */
#include "tokenizer_internal.h"

static void spm_try_bigram(struct tok_enc *e, const char *text, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    const struct tokenizer *t = e->t;
    uint32_t size = e->syms[l].n + e->syms[r].n;
    int32_t id = tok_lookup_n(t, text + e->syms[l].start, size);
    if (id < 0)
        return;
    struct tok_bigram b = {.key = -(double)t->score[id], .left = l, .right = r, .size = size};
    if (!tok_heap_push(&e->heap, b))
        tok_enc_fail(e, "out of memory");
}

static void spm_byte_fallback(struct tok_enc *e, const char *s, size_t n)
{
    const struct tokenizer *t = e->t;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int32_t id = t->byte_tok[c] >= 0 ? t->byte_tok[c] : t->ascii_tok[c];
        if (id < 0)
            id = t->unk;
        if (id >= 0)
            tok_out_push(&e->out, id);
    }
}

/* Bytes of text in a chunk before a cut is looked for: big enough that the
 * search for a cut costs nothing, small enough that the chunk's symbols and
 * queue stay a few hundred KiB. */
#define SPM_CHUNK 8192

/* The first byte an escaped TEXT[I] begins with and the last it ends with
 * (a space becomes U+2581, E2 96 81). */
static unsigned spm_first_byte(unsigned char c) { return c == ' ' ? 0xE2 : c; }
static unsigned spm_last_byte(unsigned char c) { return c == ' ' ? 0x81 : c; }

/* True when no merge can join TEXT[..P) and TEXT[P..): P starts a character
 * (a cut inside one would change how it is split into symbols) and the bytes
 * meeting at P sit side by side in no token. */
static bool spm_can_cut(const struct tokenizer *t, const unsigned char *text, size_t p)
{
    unsigned char y = text[p];
    if (y >= 0x80 && y < 0xC0)
        return false;
    unsigned k = spm_last_byte(text[p - 1]) << 8 | spm_first_byte(y);
    return !(t->pair_in_token[k >> 3] & (1u << (k & 7)));
}

/* One chunk: escaped, split into characters and merged. */
static void spm_chunk(struct tok_enc *e, const char *text, size_t len, bool space_prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += text[i] == ' ' ? 3 : 1;
    n += space_prefix ? 3 : 0;
    if (!tok_grow((void **)&e->buf, &e->buf_cap, n + 1, 1)) {
        tok_enc_fail(e, "out of memory");
        return;
    }
    char *s = e->buf;
    size_t k = 0;
    if (space_prefix) {
        memcpy(s, "\xE2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + k, "\xE2\x96\x81", 3);
            k += 3;
        } else
            s[k++] = text[i];
    }
    if (k == 0)
        return;
    if (k > INT32_MAX) {
        tok_enc_fail(e, "text too long");
        return;
    }

    /* One symbol per character. llama.cpp sizes a character by its lead byte
     * alone; for valid UTF-8 that is the same, but an invalid sequence would
     * swallow the next character (possibly a U+2581) into byte tokens and
     * decode differently, so invalid bytes are symbols of their own here. */
    size_t nsym = 0;
    for (size_t off = 0; off < k;) {
        int l = tok_utf8_check((const unsigned char *)s + off, k - off);
        size_t cl = l > 0 ? (size_t)l : 1;
        if (!tok_grow((void **)&e->syms, &e->syms_cap, nsym + 1, sizeof *e->syms)) {
            tok_enc_fail(e, "out of memory");
            return;
        }
        e->syms[nsym] = (struct tok_sym){.prev = (int32_t)nsym - 1,
                                         .next = off + cl == k ? -1 : (int32_t)nsym + 1,
                                         .start = (uint32_t)off,
                                         .n = (uint32_t)cl,
                                         .id = -1};
        nsym++;
        off += cl;
    }
    e->heap.n = 0;
    for (size_t i = 1; i < nsym; i++)
        spm_try_bigram(e, s, (int32_t)i - 1, (int32_t)i);
    while (e->heap.n && !e->failed) {
        struct tok_bigram b = tok_heap_pop(&e->heap);
        struct tok_sym *ls = &e->syms[b.left], *rs = &e->syms[b.right];
        if (ls->n == 0 || rs->n == 0 || ls->n + rs->n != b.size)
            continue; /* stale: one side already merged elsewhere */
        ls->n += rs->n;
        rs->n = 0;
        ls->next = rs->next;
        if (rs->next >= 0)
            e->syms[rs->next].prev = b.left;
        spm_try_bigram(e, s, ls->prev, b.left);
        spm_try_bigram(e, s, b.left, ls->next);
    }
    /* Merged symbols are always tokens; a leftover single character that is
     * not one falls back to byte tokens. */
    for (int32_t i = 0; i != -1 && !e->failed; i = e->syms[i].next) {
        const struct tok_sym *sy = &e->syms[i];
        int32_t id = tok_lookup_n(e->t, s + sy->start, sy->n);
        if (id >= 0)
            tok_out_push(&e->out, id);
        else
            spm_byte_fallback(e, s + sy->start, sy->n);
    }
}

void tok_spm_encode(struct tok_enc *e, const char *text, size_t len, bool space_prefix)
{
    const unsigned char *u = (const unsigned char *)text;
    if (len == 0) {
        spm_chunk(e, text, 0, space_prefix); /* the prefix alone still makes a token */
        return;
    }
    for (size_t start = 0; start < len && !e->failed;) {
        size_t end = len;
        if (len - start > SPM_CHUNK)
            for (size_t p = start + SPM_CHUNK; p < len; p++)
                if (spm_can_cut(e->t, u, p)) {
                    end = p;
                    break;
                }
        spm_chunk(e, text + start, end - start, space_prefix && start == 0);
        start = end;
    }
}
