/* bpe.c - byte-level BPE (`gpt2` vocabularies): the merge table read from
 * tokenizer.ggml.merges and the rank-ordered merging of each pre-tokenized
 * piece, as llama.cpp's llm_tokenizer_bpe does.
 *
 * Bytes enter through the GPT-2 byte map (tokenizer.c builds it); a pair
 * merges when the table has it, lowest rank first and leftmost on a tie.
 */
#include "tokenizer_internal.h"

#include "errmsg.h"
#include "gguf.h"

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static bool merge_find(const struct tokenizer *t, int32_t l, int32_t r, int32_t *rank, int32_t *res)
{
    if (!t->merge_key)
        return false;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint64_t i = hash_u64(key) & t->merge_mask;
    for (;;) {
        uint64_t k = t->merge_key[i];
        if (k == UINT64_MAX)
            return false;
        if (k == key) {
            *rank = t->merge_rank[i];
            *res = t->merge_res[i];
            return true;
        }
        i = (i + 1) & t->merge_mask;
    }
}

static void bpe_try_bigram(struct tok_enc *e, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    int32_t lid = e->syms[l].id, rid = e->syms[r].id;
    if (lid < 0 || rid < 0)
        return;
    int32_t rank, res;
    if (!merge_find(e->t, lid, rid, &rank, &res))
        return;
    struct tok_bigram b = {
        .key = (double)rank, .left = l, .right = r, .lid = lid, .rid = rid, .res = res};
    if (!tok_heap_push(&e->heap, b))
        tok_enc_fail(e, "out of memory");
}

/* Emits a symbol that is not a token the way llama.cpp does: each byte of its
 * mapped text is looked up alone, which only finds printable ASCII. */
static void bpe_fallback(struct tok_enc *e, const unsigned char *w, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = w[i];
        if (c >= 0x21 && c <= 0x7E && e->t->ascii_tok[c] >= 0)
            tok_out_push(&e->out, e->t->ascii_tok[c]);
    }
}

static void bpe_word(struct tok_enc *e, const unsigned char *w, size_t n)
{
    const struct tokenizer *t = e->t;
    if (n == 0)
        return;
    if (n > INT32_MAX) {
        tok_enc_fail(e, "text too long");
        return;
    }
    if (t->ignore_merges) {
        if (!tok_grow((void **)&e->buf, &e->buf_cap, n * 2 + 1, 1)) {
            tok_enc_fail(e, "out of memory");
            return;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += kv_utf8_put(t->byte_cp[w[i]], e->buf + k);
        int32_t id = tok_lookup_n(t, e->buf, k);
        if (id >= 0) {
            tok_out_push(&e->out, id);
            return;
        }
    }
    if (!tok_grow((void **)&e->syms, &e->syms_cap, n, sizeof *e->syms)) {
        tok_enc_fail(e, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        e->syms[i] = (struct tok_sym){.prev = (int32_t)i - 1,
                                      .next = i + 1 == n ? -1 : (int32_t)i + 1,
                                      .start = (uint32_t)i,
                                      .n = 1,
                                      .id = t->byte_tok[w[i]]};
    e->heap.n = 0;
    for (size_t i = 1; i < n; i++)
        bpe_try_bigram(e, (int32_t)i - 1, (int32_t)i);
    while (e->heap.n && !e->failed) {
        struct tok_bigram b = tok_heap_pop(&e->heap);
        struct tok_sym *ls = &e->syms[b.left], *rs = &e->syms[b.right];
        if (ls->n == 0 || rs->n == 0 || ls->id != b.lid || rs->id != b.rid)
            continue; /* stale */
        ls->n += rs->n;
        ls->id = b.res >= 0 ? b.res : -2;
        rs->n = 0;
        ls->next = rs->next;
        if (rs->next >= 0)
            e->syms[rs->next].prev = b.left;
        bpe_try_bigram(e, ls->prev, b.left);
        bpe_try_bigram(e, b.left, ls->next);
    }
    for (int32_t i = 0; i != -1 && !e->failed; i = e->syms[i].next) {
        const struct tok_sym *sy = &e->syms[i];
        if (sy->id >= 0)
            tok_out_push(&e->out, sy->id);
        else
            bpe_fallback(e, w + sy->start, sy->n);
    }
}

void tok_bpe_encode(struct tok_enc *e, const char *text, size_t len)
{
    tok_pre_split(e, text, len, bpe_word);
}

bool tok_bpe_load_merges(struct tokenizer *t, const struct gguf *g, char *err, size_t errlen)
{
    const char *key = "tokenizer.ggml.merges";
    enum gguf_type et;
    uint64_t n;
    if (!gguf_get_arr(g, key, &et, &n)) {
        kv_seterr(err, errlen, "tokenizer: %s missing for a gpt2 (BPE) vocabulary", key);
        return false;
    }
    if (et != GGUF_TYPE_STRING) {
        kv_seterr(err, errlen, "tokenizer: %s is not an array of strings", key);
        return false;
    }
    if (n > INT32_MAX) {
        kv_seterr(err, errlen, "tokenizer: %s has too many entries", key);
        return false;
    }
    t->merge_mask = tok_pow2_at_least(n * 2) - 1;
    size_t slots = t->merge_mask + 1;
    t->merge_key = malloc(slots * sizeof *t->merge_key);
    t->merge_rank = malloc(slots * sizeof *t->merge_rank);
    t->merge_res = malloc(slots * sizeof *t->merge_res);
    if (!t->merge_key || !t->merge_rank || !t->merge_res) {
        kv_seterr(err, errlen, "tokenizer: out of memory for %llu merges", (unsigned long long)n);
        return false;
    }
    memset(t->merge_key, 0xFF, slots * sizeof *t->merge_key);
    char *scratch = NULL;
    size_t scap = 0;
    for (uint64_t i = 0; i < n; i++) {
        struct gguf_str s;
        if (!gguf_get_arr_str(g, key, i, &s)) {
            kv_seterr(err, errlen, "tokenizer: cannot read %s[%llu]", key, (unsigned long long)i);
            free(scratch);
            return false;
        }
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp) {
            kv_seterr(err, errlen, "tokenizer: %s[%llu] has no space between its two parts", key,
                    (unsigned long long)i);
            free(scratch);
            return false;
        }
        size_t ll = (size_t)(sp - s.ptr), rl = s.len - ll - 1;
        int32_t l = tok_lookup_n(t, s.ptr, ll), r = tok_lookup_n(t, sp + 1, rl);
        if (l < 0 || r < 0) {
            kv_seterr(err, errlen, "tokenizer: %s[%llu] '%.*s' refers to a token not in the vocabulary",
                    key, (unsigned long long)i, (int)(s.len > 100 ? 100 : s.len), s.ptr);
            free(scratch);
            return false;
        }
        if (!tok_grow((void **)&scratch, &scap, ll + rl + 1, 1)) {
            kv_seterr(err, errlen, "tokenizer: out of memory");
            return false;
        }
        memcpy(scratch, s.ptr, ll);
        memcpy(scratch + ll, sp + 1, rl);
        int32_t res = tok_lookup_n(t, scratch, ll + rl);
        uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
        uint64_t h = hash_u64(k) & t->merge_mask;
        while (t->merge_key[h] != UINT64_MAX && t->merge_key[h] != k)
            h = (h + 1) & t->merge_mask;
        if (t->merge_key[h] == k)
            continue; /* duplicate: the first (lowest rank) wins */
        t->merge_key[h] = k;
        t->merge_rank[h] = (int32_t)i;
        t->merge_res[h] = res;
    }
    free(scratch);
    return true;
}
