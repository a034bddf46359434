/* tokenizer_internal.h - what the files of the tokenizer module share: the
 * tokenizer itself, the per-call encoding scratch space, and the small helpers
 * the encoding loops call per character or per merge.
 *
 *   tokenizer.c  vocabulary from GGUF, shared tables, public entry points,
 *                special, control and user-defined token handling
 *   spm.c        SentencePiece (`llama`): score-ordered merges, byte fallback
 *   bpe.c        byte-level BPE (`gpt2`): merge table and rank-ordered merges
 *   pretok.c     the PCRE2 pre-tokenizers, one table row per tokenizer.ggml.pre
 *   detok.c      token pieces and the streaming detokeniser
 *
 * Rules: nothing here is public (tokenizer.h is the module's interface). The
 * helpers are static inline on purpose: SPM and BPE call them in their merge
 * loops, and each file keeps its own inlinable copy. A tokenizer is read-only
 * after tok_new; everything an encoding call writes lives in its struct tok_enc.
 */
#ifndef KVCHAT_TOKENIZER_INTERNAL_H
#define KVCHAT_TOKENIZER_INTERNAL_H

#include "tokenizer.h"
#include "utf8.h" /* kv_utf8_put: byte tokens spelled as their code points */

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define TOK_MAX_REGEX 6

/* Immutable after tok_new (tokenizer.c builds it, every file reads it). */
struct tokenizer {
    enum tok_kind kind;
    char pre[64]; /* tokenizer.ggml.pre as read ("" for SPM) */
    int32_t n_vocab;

    char *arena;       /* owned: all token texts, each NUL-terminated */
    uint32_t *off;     /* owned, (n_vocab): offset of each text in arena */
    uint32_t *len;     /* owned, (n_vocab): bytes of each text */
    float *score;      /* owned, (n_vocab) */
    uint8_t *attr;     /* owned, (n_vocab): enum tok_attr */
    uint8_t *eog;      /* owned, (n_vocab): 1 for end-of-generation ids */

    int32_t *hash;     /* owned, (hash_mask+1): text -> id, -1 empty slot */
    uint64_t hash_mask;

    /* BPE merges keyed by (left id, right id). */
    uint64_t *merge_key;  /* owned, (merge_mask+1): left<<32|right, UINT64_MAX empty */
    int32_t *merge_rank;  /* owned: index in tokenizer.ggml.merges */
    int32_t *merge_res;   /* owned: id of the merged text, -1 when not a token */
    uint64_t merge_mask;

    int32_t byte_tok[256];      /* BPE: id of the mapped char of each byte; SPM: <0xXX> id */
    int32_t ascii_tok[256];     /* id of the one-byte text, -1 when none */
    uint32_t byte_cp[256];      /* GPT-2 byte -> code point */
    int16_t cp_byte[0x144];     /* code point -> byte, -1 when not in the map */

    /* User-defined tokens are split out of plain text before tokenizing (as
     * llama.cpp does even without special parsing); longest first. */
    int32_t *ud_rank;          /* owned, (n_vocab): order among user-defined, -1 others */
    uint8_t ud_first[256];     /* 1 if some user-defined text starts with this byte */
    uint32_t *ud_lens[256];    /* owned: distinct lengths of those texts, descending */
    uint32_t ud_nlens[256];
    bool has_ud;

    int32_t bos, eos, eot, eom, unk;
    bool add_bos;
    bool add_space_prefix;
    bool ignore_merges;

    /* Bytes of the longest token text, and which input bytes may end up in
     * no token (no byte token for them); every other byte surely lands in
     * one, unless MERGES_DROP (a BPE merge makes a text that is no token,
     * whose bytes then fall back to printable ASCII only). A text of B such
     * bytes thus makes at least ceil(B / longest) tokens (tok_min_tokens). */
    uint32_t longest;
    uint8_t byte_may_vanish[256];
    bool merges_drop;

    /* Bit a<<8|b set when byte b follows byte a inside some token text. SPM
     * never merges across two bytes that no token has side by side, so a text
     * can be cut there and each part merged alone (spm.c). */
    uint8_t pair_in_token[65536 / 8];

    pcre2_code *re[TOK_MAX_REGEX]; /* owned, compiled once */
    int n_re;
};

/* ---- small helpers ---- */

static inline uint64_t tok_hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

/* The id whose text is the N bytes at S, -1 when none. */
static inline int32_t tok_lookup_n(const struct tokenizer *t, const char *s, size_t n)
{
    uint64_t i = tok_hash_bytes(s, n) & t->hash_mask;
    for (;;) {
        int32_t id = t->hash[i];
        if (id < 0)
            return -1;
        if (t->len[id] == n && memcmp(t->arena + t->off[id], s, n) == 0)
            return id;
        i = (i + 1) & t->hash_mask;
    }
}

static inline const char *tok_text_of(const struct tokenizer *t, int32_t id)
{
    return t->arena + t->off[id];
}


/* Checks the UTF-8 sequence at S (N bytes available). Returns its length when
 * complete and valid, 0 when the bytes so far are a valid but unfinished
 * prefix, or -K when invalid, K being how many bytes form the maximal invalid
 * subpart (replaced by one U+FFFD). */
static inline int tok_utf8_check(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return -1;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n)
            return 0;
        unsigned char b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
            return -i;
    }
    return need + 1;
}

static inline uint64_t tok_pow2_at_least(uint64_t n)
{
    uint64_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

/* ---- growable buffers ---- */

/* Where an encoding call puts its ids: straight into the caller's buffer,
 * counting (not storing) the ids past its end, or, with GROW, into an owned
 * array grown by half each time (tok_encode_alloc). Writing in place, rather
 * than into a private array copied out at the end, keeps the ids of a long
 * text in memory once. */
struct tok_out {
    int32_t *v;  /* borrowed (the caller's, CAP ids) or, with GROW, owned */
    int64_t cap; /* ids V holds */
    int64_t n;   /* ids produced so far, past CAP too */
    bool grow;
    bool oom;
};

static inline void tok_out_push(struct tok_out *o, int32_t id)
{
    if (o->n == o->cap && o->grow && !o->oom) {
        int64_t nc = o->cap < 64 ? 64 : o->cap + o->cap / 2;
        int32_t *nv = (uint64_t)nc > SIZE_MAX / sizeof *nv ? NULL
                                                           : realloc(o->v, (size_t)nc * sizeof *nv);
        if (!nv)
            o->oom = true;
        else {
            o->v = nv;
            o->cap = nc;
        }
    }
    if (o->n < o->cap)
        o->v[o->n] = id;
    o->n++;
}

/* Grows *P (*CAP elements of ELEM bytes) to hold at least NEED, doubling. */
static inline bool tok_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return false;
    *p = np;
    *cap = nc;
    return true;
}

/* ---- symbol chain and work queue shared by SPM and BPE ---- */

struct tok_sym {
    int32_t prev, next;
    uint32_t start, n; /* byte span in the text being merged; n == 0 once merged away */
    int32_t id;        /* BPE: token id of the span, -1 none, -2 merged non-token */
};

/* Priority: smaller key first, then the leftmost pair (llama.cpp's order). */
struct tok_bigram {
    double key;
    int32_t left, right;
    uint32_t size;     /* SPM: bytes of the pair when pushed */
    int32_t lid, rid;  /* BPE: ids of the pair when pushed */
    int32_t res;       /* BPE: id of the merged text */
};

struct tok_heap {
    struct tok_bigram *v;
    size_t n, cap;
};

static inline bool tok_bigram_less(const struct tok_bigram *a, const struct tok_bigram *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static inline bool tok_heap_push(struct tok_heap *h, struct tok_bigram b)
{
    if (!tok_grow((void **)&h->v, &h->cap, h->n + 1, sizeof *h->v))
        return false;
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!tok_bigram_less(&b, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return true;
}

static inline struct tok_bigram tok_heap_pop(struct tok_heap *h)
{
    struct tok_bigram top = h->v[0];
    struct tok_bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && tok_bigram_less(&h->v[c + 1], &h->v[c]))
            c++;
        if (!tok_bigram_less(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

/* Per-call scratch space, so the tokenizer itself stays read-only. Its size
 * depends on the longest piece merged at once (an SPM chunk, a BPE word), not
 * on the length of the text. */
struct tok_enc {
    const struct tokenizer *t;
    struct tok_out out;
    struct tok_sym *syms;
    size_t syms_cap;
    struct tok_heap heap;
    char *buf; /* SPM escaped chunk / BPE mapped word */
    size_t buf_cap;
    pcre2_match_data *md[TOK_MAX_REGEX];
    bool failed;
    char *err;
    size_t errlen;
};

/* tokenizer.c: records the first failure of an encoding call in its ERR. */
void tok_enc_fail(struct tok_enc *e, const char *msg);

/* spm.c: one raw fragment, spaces as U+2581 (and one in front with
 * SPACE_PREFIX), merged by score. */
void tok_spm_encode(struct tok_enc *e, const char *text, size_t len, bool space_prefix);

/* bpe.c: one raw fragment, split by the pre-tokenizer, each piece merged by rank. */
void tok_bpe_encode(struct tok_enc *e, const char *text, size_t len);
/* bpe.c: the merge table from tokenizer.ggml.merges (the vocabulary is loaded). */
bool tok_bpe_load_merges(struct tokenizer *t, const struct gguf *g, char *err, size_t errlen);

/* pretok.c: finds the pre-tokenizer named T->pre, sets the flags it implies
 * (ignore_merges, add_bos) and compiles its regexes into T->re. False with a
 * message in ERR for an unknown name (listing the known ones) or a regex that
 * does not compile. */
bool tok_pre_setup(struct tokenizer *t, char *err, size_t errlen);
/* pretok.c: splits [0, LEN) of TEXT with each of T's regexes in turn (each
 * one cutting the pieces the previous one left) and calls EMIT on every final
 * piece, in text order, as soon as it is known, so no list of pieces is ever
 * held. Stops early once E has failed. */
void tok_pre_split(struct tok_enc *e, const char *text, size_t len,
                   void (*emit)(struct tok_enc *e, const unsigned char *piece, size_t n));

#endif
