/* tokenizer.c - SentencePiece-style (`llama`) and byte-level BPE (`gpt2`)
 * tokenizers built from GGUF metadata, plus the streaming detokeniser.
 *
 * The reference is llama.cpp's llama-vocab.cpp: every rule here (fragment
 * splitting around user-defined tokens, where SPM puts its space prefix, merge
 * order and tie-breaks, byte fallback) follows it so that ids match token for
 * token. Used by the engine to encode prompts and by the front-end to print
 * tokens as they are generated.
 *
 * Everything the tokenizer needs is copied out of the GGUF reader at tok_new;
 * afterwards the object is read-only, so encoding allocates its scratch space
 * per call and any number of threads may encode at once.
 */
#include "tokenizer.h"

#include "errmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "gguf.h"

#define TOK_MAX_REGEX 6

/* Unicode White_Space contains U+0085, which PCRE2's \s (\p{Xsp}) does not;
 * llama.cpp counts it as whitespace, so the patterns below use these. */
#define WS "[\\s\\x{85}]"
#define NWS "[^\\s\\x{85}]"
#define WS_IN "\\s\\x{85}"

/* ---- pre-tokenizer regexes (llama.cpp src/llama-vocab.cpp) ---- */

#define RE_GPT2                                                                                    \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS_IN "\\p{L}\\p{N}]+|" WS "+(?!" NWS ")"
#define RE_LLAMA3                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"      \
    "\\p{N}{1,3}| ?[^" WS_IN "\\p{L}\\p{N}]+[\\r\\n]*|" WS "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+"
#define RE_QWEN2                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"      \
    "\\p{N}| ?[^" WS_IN "\\p{L}\\p{N}]+[\\r\\n]*|" WS "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+"

/* DeepSeek LLM's letter class from llama.cpp (the cased letters), written
 * with escapes: several of its code points (U+1F7D, U+1FBE, U+1FD3, U+1FDB,
 * U+2126, U+212A) have canonical singleton decompositions that an editor or
 * NFC normalisation would silently change. */
#define RE_DEEPSEEK_LLM_LETTERS                                                                    \
    WS "?[" \
    "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}" \
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-" \
    "\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-" \
    "\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}" \
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}" \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}" \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}" \
    "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-" \
    "\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}" \
    "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}" \
    "\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}" \
    "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-" \
    "\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}" \
    "\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}" \
    "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}" \
    "\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}" \
    "\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-" \
    "\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}" \
    "\\x{1E900}-\\x{1E943}" \
    "]+"

struct pre_def {
    const char *names[12]; /* tokenizer.ggml.pre values, NULL-terminated */
    const char *regex[TOK_MAX_REGEX];
    bool ignore_merges;
    bool add_bos;
};

static const struct pre_def PRE_DEFS[] = {
    {{"default", NULL},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     false,
     false},
    {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
      "dbrx", "smaug-bpe", NULL},
     {RE_LLAMA3},
     true,
     true},
    {{"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan", NULL}, {RE_QWEN2}, false, false},
    {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", NULL},
     {"\\p{N}", RE_GPT2},
     false,
     false},
    {{"gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de",
      "exaone4", "trillion", NULL},
     {RE_GPT2},
     false,
     false},
    {{"falcon", NULL},
     {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"},
     false,
     false},
    {{"deepseek-llm", NULL},
     {"[\r\n]", RE_DEEPSEEK_LLM_LETTERS, WS "?[!-/:-~！-／：-～‘-‟　-。]+", WS "+$",
      "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
     false,
     false},
    {{"deepseek-coder", NULL},
     {"[\r\n]", WS "?\\p{L}+", WS "?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"},
     false,
     false},
};
#define N_PRE_DEFS (sizeof PRE_DEFS / sizeof PRE_DEFS[0])

/* Texts that mark end-of-generation tokens (llama.cpp's list). */
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>",   "<|end|>",      "<end_of_turn>", "<|endoftext|>",
    "</s>",       "<|eom_id|>",   "<EOT>",        "_<EOT>",        "<|end_of_text|>",
    "<end_of_utterance>", "<｜end▁of▁sentence｜>", "<|return|>", "<|call|>",
};

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

    pcre2_code *re[TOK_MAX_REGEX]; /* owned, compiled once */
    int n_re;
};

/* ---- small helpers ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int32_t lookup_n(const struct tokenizer *t, const char *s, size_t n)
{
    uint64_t i = hash_bytes(s, n) & t->hash_mask;
    for (;;) {
        int32_t id = t->hash[i];
        if (id < 0)
            return -1;
        if (t->len[id] == n && memcmp(t->arena + t->off[id], s, n) == 0)
            return id;
        i = (i + 1) & t->hash_mask;
    }
}

static const char *text_of(const struct tokenizer *t, int32_t id) { return t->arena + t->off[id]; }

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

static size_t utf8_len_lead(unsigned char c)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

static size_t put_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Checks the UTF-8 sequence at S (N bytes available). Returns its length when
 * complete and valid, 0 when the bytes so far are a valid but unfinished
 * prefix, or -K when invalid, K being how many bytes form the maximal invalid
 * subpart (replaced by one U+FFFD). */
static int utf8_check(const unsigned char *s, size_t n)
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

/* ---- growable buffers ---- */

struct ids {
    int32_t *v;
    size_t n, cap;
    bool oom;
};

static void ids_push(struct ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) {
            a->oom = true;
            return;
        }
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = id;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
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

struct sym {
    int32_t prev, next;
    uint32_t start, n; /* byte span in the text being merged; n == 0 once merged away */
    int32_t id;        /* BPE: token id of the span, -1 none, -2 merged non-token */
};

/* Priority: smaller key first, then the leftmost pair (llama.cpp's order). */
struct bigram {
    double key;
    int32_t left, right;
    uint32_t size;     /* SPM: bytes of the pair when pushed */
    int32_t lid, rid;  /* BPE: ids of the pair when pushed */
    int32_t res;       /* BPE: id of the merged text */
};

struct heap {
    struct bigram *v;
    size_t n, cap;
};

static bool bg_less(const struct bigram *a, const struct bigram *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static bool heap_push(struct heap *h, struct bigram b)
{
    if (!grow((void **)&h->v, &h->cap, h->n + 1, sizeof *h->v))
        return false;
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_less(&b, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return true;
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->v[0];
    struct bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bg_less(&h->v[c + 1], &h->v[c]))
            c++;
        if (!bg_less(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

/* Per-call scratch space, so the tokenizer itself stays read-only. */
struct enc {
    const struct tokenizer *t;
    struct ids out;
    struct sym *syms;
    size_t syms_cap;
    struct heap heap;
    char *buf; /* SPM escaped text / BPE mapped word */
    size_t buf_cap;
    size_t *pieces, *pieces2; /* (start, len) pairs */
    size_t pieces_cap, pieces2_cap;
    pcre2_match_data *md[TOK_MAX_REGEX];
    bool failed;
    char *err;
    size_t errlen;
};

static void enc_fail(struct enc *e, const char *msg)
{
    if (!e->failed)
        kv_seterr(e->err, e->errlen, "tokenizer: %s", msg);
    e->failed = true;
}

/* ---- SPM ---- */

static void spm_try_bigram(struct enc *e, const char *text, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    const struct tokenizer *t = e->t;
    uint32_t size = e->syms[l].n + e->syms[r].n;
    int32_t id = lookup_n(t, text + e->syms[l].start, size);
    if (id < 0)
        return;
    struct bigram b = {.key = -(double)t->score[id], .left = l, .right = r, .size = size};
    if (!heap_push(&e->heap, b))
        enc_fail(e, "out of memory");
}

static void spm_byte_fallback(struct enc *e, const char *s, size_t n)
{
    const struct tokenizer *t = e->t;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int32_t id = t->byte_tok[c] >= 0 ? t->byte_tok[c] : t->ascii_tok[c];
        if (id < 0)
            id = t->unk;
        if (id >= 0)
            ids_push(&e->out, id);
    }
}

/* One raw fragment: spaces become U+2581, then pairs merge by score. */
static void spm_encode(struct enc *e, const char *text, size_t len, bool space_prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += text[i] == ' ' ? 3 : 1;
    n += space_prefix ? 3 : 0;
    if (!grow((void **)&e->buf, &e->buf_cap, n + 1, 1)) {
        enc_fail(e, "out of memory");
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
        enc_fail(e, "text too long");
        return;
    }

    /* One symbol per character. llama.cpp sizes a character by its lead byte
     * alone; for valid UTF-8 that is the same, but an invalid sequence would
     * swallow the next character (possibly a U+2581) into byte tokens and
     * decode differently, so invalid bytes are symbols of their own here. */
    size_t nsym = 0;
    for (size_t off = 0; off < k;) {
        int l = utf8_check((const unsigned char *)s + off, k - off);
        size_t cl = l > 0 ? (size_t)l : 1;
        if (!grow((void **)&e->syms, &e->syms_cap, nsym + 1, sizeof *e->syms)) {
            enc_fail(e, "out of memory");
            return;
        }
        e->syms[nsym] = (struct sym){.prev = (int32_t)nsym - 1,
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
        struct bigram b = heap_pop(&e->heap);
        struct sym *ls = &e->syms[b.left], *rs = &e->syms[b.right];
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
        const struct sym *sy = &e->syms[i];
        int32_t id = lookup_n(e->t, s + sy->start, sy->n);
        if (id >= 0)
            ids_push(&e->out, id);
        else
            spm_byte_fallback(e, s + sy->start, sy->n);
    }
}

/* ---- BPE ---- */

static void bpe_try_bigram(struct enc *e, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    int32_t lid = e->syms[l].id, rid = e->syms[r].id;
    if (lid < 0 || rid < 0)
        return;
    int32_t rank, res;
    if (!merge_find(e->t, lid, rid, &rank, &res))
        return;
    struct bigram b = {.key = (double)rank, .left = l, .right = r, .lid = lid, .rid = rid, .res = res};
    if (!heap_push(&e->heap, b))
        enc_fail(e, "out of memory");
}

/* Emits a symbol that is not a token the way llama.cpp does: each byte of its
 * mapped text is looked up alone, which only finds printable ASCII. */
static void bpe_fallback(struct enc *e, const unsigned char *w, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = w[i];
        if (c >= 0x21 && c <= 0x7E && e->t->ascii_tok[c] >= 0)
            ids_push(&e->out, e->t->ascii_tok[c]);
    }
}

static void bpe_word(struct enc *e, const unsigned char *w, size_t n)
{
    const struct tokenizer *t = e->t;
    if (n == 0)
        return;
    if (n > INT32_MAX) {
        enc_fail(e, "text too long");
        return;
    }
    if (t->ignore_merges) {
        if (!grow((void **)&e->buf, &e->buf_cap, n * 2 + 1, 1)) {
            enc_fail(e, "out of memory");
            return;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += put_utf8(t->byte_cp[w[i]], e->buf + k);
        int32_t id = lookup_n(t, e->buf, k);
        if (id >= 0) {
            ids_push(&e->out, id);
            return;
        }
    }
    if (!grow((void **)&e->syms, &e->syms_cap, n, sizeof *e->syms)) {
        enc_fail(e, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        e->syms[i] = (struct sym){.prev = (int32_t)i - 1,
                                  .next = i + 1 == n ? -1 : (int32_t)i + 1,
                                  .start = (uint32_t)i,
                                  .n = 1,
                                  .id = t->byte_tok[w[i]]};
    e->heap.n = 0;
    for (size_t i = 1; i < n; i++)
        bpe_try_bigram(e, (int32_t)i - 1, (int32_t)i);
    while (e->heap.n && !e->failed) {
        struct bigram b = heap_pop(&e->heap);
        struct sym *ls = &e->syms[b.left], *rs = &e->syms[b.right];
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
        const struct sym *sy = &e->syms[i];
        if (sy->id >= 0)
            ids_push(&e->out, sy->id);
        else
            bpe_fallback(e, w + sy->start, sy->n);
    }
}

/* Splits [0, len) of TEXT with each regex in turn: matches and the gaps
 * between them both become pieces, as llama.cpp's unicode_regex_split. */
static void bpe_encode(struct enc *e, const char *text, size_t len)
{
    const struct tokenizer *t = e->t;
    size_t np = 1;
    if (!grow((void **)&e->pieces, &e->pieces_cap, 2, sizeof(size_t))) {
        enc_fail(e, "out of memory");
        return;
    }
    e->pieces[0] = 0;
    e->pieces[1] = len;
    for (int r = 0; r < t->n_re && !e->failed; r++) {
        size_t nq = 0;
        if (!e->md[r]) {
            e->md[r] = pcre2_match_data_create_from_pattern(t->re[r], NULL);
            if (!e->md[r]) {
                enc_fail(e, "out of memory");
                return;
            }
        }
#define PUSH_PIECE(s_, l_)                                                                         \
    do {                                                                                           \
        if (!grow((void **)&e->pieces2, &e->pieces2_cap, 2 * nq + 2, sizeof(size_t))) {            \
            enc_fail(e, "out of memory");                                                          \
            return;                                                                                \
        }                                                                                          \
        e->pieces2[2 * nq] = (s_);                                                                 \
        e->pieces2[2 * nq + 1] = (l_);                                                             \
        nq++;                                                                                      \
    } while (0)
        for (size_t p = 0; p < np; p++) {
            size_t ps = e->pieces[2 * p], pl = e->pieces[2 * p + 1];
            PCRE2_SPTR subj = (PCRE2_SPTR)(text + ps);
            size_t pos = 0, gap = 0;
            while (pos <= pl) {
                int rc = pcre2_match(t->re[r], subj, pl, pos, 0, e->md[r], NULL);
                if (rc == PCRE2_ERROR_NOMATCH)
                    break;
                if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
                    rc = pcre2_match(t->re[r], subj, pl, pos, PCRE2_NO_JIT, e->md[r], NULL);
                if (rc < 0) {
                    PCRE2_UCHAR msg[120];
                    char m[200];
                    pcre2_get_error_message(rc, msg, sizeof msg);
                    snprintf(m, sizeof m, "pre-tokenizer regex failed: %s", (const char *)msg);
                    enc_fail(e, m);
                    return;
                }
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md[r]);
                size_t ms = ov[0], me = ov[1];
                if (ms > gap)
                    PUSH_PIECE(ps + gap, ms - gap);
                if (me > ms)
                    PUSH_PIECE(ps + ms, me - ms);
                gap = me;
                if (me == ms) {
                    /* empty match: step over one character */
                    if (me >= pl)
                        break;
                    size_t cl = utf8_len_lead(subj[me]);
                    pos = me + (cl > pl - me ? pl - me : cl);
                } else
                    pos = me;
                if (pos >= pl)
                    break;
            }
            if (gap < pl)
                PUSH_PIECE(ps + gap, pl - gap);
        }
#undef PUSH_PIECE
        size_t *tmp = e->pieces;
        size_t tcap = e->pieces_cap;
        e->pieces = e->pieces2;
        e->pieces_cap = e->pieces2_cap;
        e->pieces2 = tmp;
        e->pieces2_cap = tcap;
        np = nq;
    }
    for (size_t p = 0; p < np && !e->failed; p++)
        bpe_word(e, (const unsigned char *)text + e->pieces[2 * p], e->pieces[2 * p + 1]);
}

/* ---- fragments ---- */

struct occ {
    int32_t rank, id;
    size_t pos, len;
};

static int occ_cmp(const void *a, const void *b)
{
    const struct occ *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void encode_raw(struct enc *e, const char *text, size_t len, bool *prev_special)
{
    if (len == 0)
        return;
    if (e->t->kind == TOK_KIND_SPM)
        spm_encode(e, text, len, e->t->add_space_prefix && *prev_special);
    else
        bpe_encode(e, text, len);
    *prev_special = false;
}

/* A run of plain text: user-defined tokens are split out first (longest text
 * first, each token claiming its occurrences left to right in what is still
 * raw), then the raw pieces are tokenized one by one. */
static void encode_plain(struct enc *e, const char *text, size_t len, bool *prev_special)
{
    const struct tokenizer *t = e->t;
    if (len == 0)
        return;
    if (!t->has_ud) {
        encode_raw(e, text, len, prev_special);
        return;
    }
    struct occ *occ = NULL;
    size_t nocc = 0, occ_cap = 0;
    for (size_t p = 0; p < len; p++) {
        unsigned char c = (unsigned char)text[p];
        if (!t->ud_first[c])
            continue;
        for (uint32_t k = 0; k < t->ud_nlens[c]; k++) {
            size_t l = t->ud_lens[c][k];
            if (l > len - p)
                continue;
            int32_t id = lookup_n(t, text + p, l);
            if (id < 0 || t->ud_rank[id] < 0)
                continue;
            if (!grow((void **)&occ, &occ_cap, nocc + 1, sizeof *occ)) {
                free(occ);
                enc_fail(e, "out of memory");
                return;
            }
            occ[nocc++] = (struct occ){.rank = t->ud_rank[id], .id = id, .pos = p, .len = l};
        }
    }
    if (nocc == 0) {
        encode_raw(e, text, len, prev_special);
        return;
    }
    qsort(occ, nocc, sizeof *occ, occ_cmp);
    /* claimed[p]: 0 raw, else 1 + index of the accepted occurrence starting there */
    size_t *claimed = calloc(len, sizeof *claimed);
    if (!claimed) {
        free(occ);
        enc_fail(e, "out of memory");
        return;
    }
    int32_t cur_rank = -1;
    size_t cur_end = 0;
    for (size_t i = 0; i < nocc; i++) {
        struct occ *o = &occ[i];
        if (o->rank != cur_rank) {
            cur_rank = o->rank;
            cur_end = 0;
        }
        if (o->pos < cur_end)
            continue;
        bool free_span = true;
        for (size_t q = o->pos; q < o->pos + o->len; q++)
            if (claimed[q]) {
                free_span = false;
                break;
            }
        if (!free_span)
            continue;
        for (size_t q = o->pos; q < o->pos + o->len; q++)
            claimed[q] = SIZE_MAX;
        claimed[o->pos] = i + 1;
        cur_end = o->pos + o->len;
    }
    size_t raw_start = 0;
    for (size_t p = 0; p < len && !e->failed;) {
        if (!claimed[p]) {
            p++;
            continue;
        }
        const struct occ *o = &occ[claimed[p] - 1];
        encode_raw(e, text + raw_start, p - raw_start, prev_special);
        ids_push(&e->out, o->id);
        *prev_special = true;
        p += o->len;
        raw_start = p;
    }
    if (!e->failed)
        encode_raw(e, text + raw_start, len - raw_start, prev_special);
    free(claimed);
    free(occ);
}

static void enc_free(struct enc *e)
{
    free(e->out.v);
    free(e->syms);
    free(e->heap.v);
    free(e->buf);
    free(e->pieces);
    free(e->pieces2);
    for (int i = 0; i < TOK_MAX_REGEX; i++)
        pcre2_match_data_free(e->md[i]);
}

int64_t tok_encode_segments_e(const struct tokenizer *t, const struct tok_segment *segs, size_t n,
                              bool add_bos, int32_t *out, int64_t cap, char *err, size_t errlen)
{
    if (!t || (n && !segs) || cap < 0 || (cap > 0 && !out)) {
        kv_seterr(err, errlen, "tokenizer: invalid arguments to encode");
        return -1;
    }
    struct enc e = {.t = t, .err = err, .errlen = errlen};
    if (add_bos && t->bos >= 0)
        ids_push(&e.out, t->bos);
    /* SPM puts its space prefix on the first raw fragment and on each one that
     * follows a token fragment (llama.cpp's is_prev_special). */
    bool prev_special = true;
    for (size_t i = 0; i < n && !e.failed;) {
        if (segs[i].len && !segs[i].text) {
            enc_fail(&e, "segment with NULL text");
            break;
        }
        if (segs[i].special) {
            int32_t id = lookup_n(t, segs[i].text ? segs[i].text : "", segs[i].len);
            if (id < 0) {
                if (!e.failed)
                    kv_seterr(err, errlen, "tokenizer: special segment '%.*s' is not a token",
                            (int)(segs[i].len > 200 ? 200 : segs[i].len), segs[i].text);
                e.failed = true;
                break;
            }
            ids_push(&e.out, id);
            prev_special = true;
            i++;
            continue;
        }
        /* Adjacent plain segments form one fragment. */
        size_t j = i, total = 0;
        while (j < n && !segs[j].special) {
            if (segs[j].len && !segs[j].text)
                break;
            total += segs[j].len;
            j++;
        }
        if (j == i + 1) {
            encode_plain(&e, segs[i].text, segs[i].len, &prev_special);
        } else {
            char *joined = malloc(total ? total : 1);
            if (!joined) {
                enc_fail(&e, "out of memory");
                break;
            }
            size_t k = 0;
            for (size_t q = i; q < j; q++) {
                if (segs[q].len)
                    memcpy(joined + k, segs[q].text, segs[q].len);
                k += segs[q].len;
            }
            encode_plain(&e, joined, total, &prev_special);
            free(joined);
        }
        i = j;
    }
    if (e.out.oom)
        enc_fail(&e, "out of memory");
    int64_t result = -1;
    if (!e.failed) {
        result = (int64_t)e.out.n;
        size_t m = e.out.n < (size_t)cap ? e.out.n : (size_t)cap;
        if (m)
            memcpy(out, e.out.v, m * sizeof *out);
    }
    enc_free(&e);
    return result;
}

int64_t tok_encode_segments(const struct tokenizer *t, const struct tok_segment *segs, size_t n,
                            bool add_bos, int32_t *out, int64_t cap)
{
    return tok_encode_segments_e(t, segs, n, add_bos, out, cap, NULL, 0);
}

int64_t tok_encode_e(const struct tokenizer *t, const char *text, size_t len, bool add_bos,
                     int32_t *out, int64_t cap, char *err, size_t errlen)
{
    if (len && !text) {
        kv_seterr(err, errlen, "tokenizer: NULL text");
        return -1;
    }
    struct tok_segment seg = {.text = text ? text : "", .len = len, .special = false};
    return tok_encode_segments_e(t, &seg, 1, add_bos, out, cap, err, errlen);
}

int64_t tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_bos,
                   int32_t *out, int64_t cap)
{
    return tok_encode_e(t, text, len, add_bos, out, cap, NULL, 0);
}

/* ---- decoding ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xXX>" text, -1 for any other text. */
static int byte_token_value(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    if (hi < 0 || lo < 0)
        return -1;
    return hi * 16 + lo;
}

static size_t emit(char *buf, size_t cap, size_t k, const char *s, size_t n)
{
    if (k < cap) {
        size_t m = cap - k < n ? cap - k : n;
        memcpy(buf + k, s, m);
    }
    return k + n;
}

size_t tok_piece(const struct tokenizer *t, int32_t id, char *buf, size_t cap)
{
    if (!t || id < 0 || id >= t->n_vocab)
        return 0;
    const char *s = text_of(t, id);
    size_t n = t->len[id];
    switch (t->attr[id]) {
    case TOK_ATTR_CONTROL:
    case TOK_ATTR_UNKNOWN:
    case TOK_ATTR_UNUSED:
    case TOK_ATTR_UNDEFINED:
        return 0;
    case TOK_ATTR_USER_DEFINED:
        return emit(buf, cap, 0, s, n);
    case TOK_ATTR_BYTE: {
        int b = byte_token_value(s, n);
        if (b >= 0) {
            char c = (char)b;
            return emit(buf, cap, 0, &c, 1);
        }
        break;
    }
    default:
        break;
    }
    size_t k = 0;
    if (t->kind == TOK_KIND_SPM) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                k = emit(buf, cap, k, " ", 1);
                i += 3;
            } else
                k = emit(buf, cap, k, s + i++, 1);
        }
        return k;
    }
    /* BPE: every code point goes back through the byte map; code points
     * outside it are copied as they are. */
    for (size_t i = 0; i < n;) {
        int l = utf8_check((const unsigned char *)s + i, n - i);
        if (l <= 0) {
            k = emit(buf, cap, k, s + i, 1);
            i++;
            continue;
        }
        uint32_t cp;
        const unsigned char *u = (const unsigned char *)s + i;
        if (l == 1)
            cp = u[0];
        else if (l == 2)
            cp = ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
        else
            cp = 0x10000; /* 3-4 byte sequences are never in the byte map */
        if (cp < 0x144 && t->cp_byte[cp] >= 0) {
            char c = (char)t->cp_byte[cp];
            k = emit(buf, cap, k, &c, 1);
        } else
            k = emit(buf, cap, k, s + i, (size_t)l);
        i += (size_t)l;
    }
    return k;
}

/* ---- accessors ---- */

enum tok_kind tok_kind(const struct tokenizer *t) { return t->kind; }
const char *tok_pre_name(const struct tokenizer *t) { return t->pre; }
int32_t tok_n_vocab(const struct tokenizer *t) { return t->n_vocab; }
int32_t tok_bos(const struct tokenizer *t) { return t->bos; }
int32_t tok_eos(const struct tokenizer *t) { return t->eos; }
bool tok_add_bos(const struct tokenizer *t) { return t->add_bos; }

bool tok_is_eog(const struct tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && t->eog[id];
}

enum tok_attr tok_attr(const struct tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_vocab)
        return TOK_ATTR_UNDEFINED;
    return (enum tok_attr)t->attr[id];
}

int32_t tok_lookup(const struct tokenizer *t, const char *text)
{
    if (!t || !text)
        return -1;
    return lookup_n(t, text, strlen(text));
}

const char *tok_text(const struct tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_vocab)
        return "";
    return text_of(t, id);
}

/* ---- construction ---- */

void tok_free(struct tokenizer *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->attr);
    free(t->eog);
    free(t->hash);
    free(t->merge_key);
    free(t->merge_rank);
    free(t->merge_res);
    free(t->ud_rank);
    for (int i = 0; i < 256; i++)
        free(t->ud_lens[i]);
    for (int i = 0; i < TOK_MAX_REGEX; i++)
        pcre2_code_free(t->re[i]);
    free(t);
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

/* Reads an optional special-token id key. Absent keeps *ID (a default that is
 * dropped when outside the vocabulary); present but out of range is an error. */
static bool read_special_id(const struct gguf *g, const char *key, int32_t n_vocab, int32_t *id,
                            char *err, size_t errlen)
{
    int64_t v;
    if (!gguf_get_int(g, key, &v)) {
        if (gguf_find_key(g, key) >= 0) {
            kv_seterr(err, errlen, "tokenizer: %s is not an integer", key);
            return false;
        }
        if (*id >= n_vocab)
            *id = -1;
        return true;
    }
    if (v < 0 || v >= n_vocab) {
        kv_seterr(err, errlen, "tokenizer: %s = %lld is outside the vocabulary of %d tokens", key,
                (long long)v, (int)n_vocab);
        return false;
    }
    *id = (int32_t)v;
    return true;
}

static bool read_bool_key(const struct gguf *g, const char *key, bool *out, char *err,
                          size_t errlen)
{
    if (gguf_find_key(g, key) < 0)
        return true;
    if (!gguf_get_bool(g, key, out)) {
        kv_seterr(err, errlen, "tokenizer: %s is not a bool", key);
        return false;
    }
    return true;
}

static int cmp_u32_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x > y ? -1 : x < y;
}

struct ud_sort {
    int32_t id;
    uint32_t len;
};

static int ud_cmp(const void *a, const void *b)
{
    const struct ud_sort *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static bool build_user_defined(struct tokenizer *t)
{
    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        n += t->attr[i] == TOK_ATTR_USER_DEFINED;
    t->ud_rank = malloc((size_t)t->n_vocab * sizeof *t->ud_rank);
    if (!t->ud_rank)
        return false;
    for (int32_t i = 0; i < t->n_vocab; i++)
        t->ud_rank[i] = -1;
    if (n == 0)
        return true;
    struct ud_sort *v = malloc(n * sizeof *v);
    if (!v)
        return false;
    size_t k = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] == TOK_ATTR_USER_DEFINED)
            v[k++] = (struct ud_sort){i, t->len[i]};
    qsort(v, n, sizeof *v, ud_cmp);
    for (size_t i = 0; i < n; i++) {
        int32_t id = v[i].id;
        t->ud_rank[id] = (int32_t)i;
        unsigned char c = (unsigned char)text_of(t, id)[0];
        t->ud_first[c] = 1;
        bool seen = false;
        for (uint32_t q = 0; q < t->ud_nlens[c]; q++)
            if (t->ud_lens[c][q] == v[i].len)
                seen = true;
        if (!seen) {
            uint32_t *nl = realloc(t->ud_lens[c], (t->ud_nlens[c] + 1) * sizeof *nl);
            if (!nl) {
                free(v);
                return false;
            }
            nl[t->ud_nlens[c]++] = v[i].len;
            t->ud_lens[c] = nl;
        }
    }
    for (int c = 0; c < 256; c++)
        if (t->ud_nlens[c] > 1)
            qsort(t->ud_lens[c], t->ud_nlens[c], sizeof(uint32_t), cmp_u32_desc);
    free(v);
    t->has_ud = true;
    return true;
}

static bool load_merges(struct tokenizer *t, const struct gguf *g, char *err, size_t errlen)
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
    t->merge_mask = pow2_at_least(n * 2) - 1;
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
        int32_t l = lookup_n(t, s.ptr, ll), r = lookup_n(t, sp + 1, rl);
        if (l < 0 || r < 0) {
            kv_seterr(err, errlen, "tokenizer: %s[%llu] '%.*s' refers to a token not in the vocabulary",
                    key, (unsigned long long)i, (int)(s.len > 100 ? 100 : s.len), s.ptr);
            free(scratch);
            return false;
        }
        if (!grow((void **)&scratch, &scap, ll + rl + 1, 1)) {
            kv_seterr(err, errlen, "tokenizer: out of memory");
            return false;
        }
        memcpy(scratch, s.ptr, ll);
        memcpy(scratch + ll, sp + 1, rl);
        int32_t res = lookup_n(t, scratch, ll + rl);
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

static bool compile_regexes(struct tokenizer *t, const struct pre_def *d, char *err, size_t errlen)
{
    for (int i = 0; i < TOK_MAX_REGEX && d->regex[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        t->re[i] = pcre2_compile((PCRE2_SPTR)d->regex[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF |
                                     PCRE2_DOLLAR_ENDONLY,
                                 &ec, &eo, NULL);
        if (!t->re[i]) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(ec, msg, sizeof msg);
            kv_seterr(err, errlen, "tokenizer: pre-tokenizer '%s' regex %d: %s at offset %zu",
                    t->pre, i, (const char *)msg, (size_t)eo);
            return false;
        }
        /* JIT is an optimisation only: the interpreter is used without it. */
        (void)pcre2_jit_compile(t->re[i], PCRE2_JIT_COMPLETE);
        t->n_re = i + 1;
    }
    return true;
}

static const struct pre_def *find_pre(const char *name)
{
    for (size_t i = 0; i < N_PRE_DEFS; i++)
        for (int k = 0; PRE_DEFS[i].names[k]; k++)
            if (strcmp(PRE_DEFS[i].names[k], name) == 0)
                return &PRE_DEFS[i];
    return NULL;
}

static void list_pres(char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_PRE_DEFS; i++)
        for (int j = 0; PRE_DEFS[i].names[j]; j++) {
            int w = snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", PRE_DEFS[i].names[j]);
            if (w < 0 || (size_t)w >= cap - k)
                return;
            k += (size_t)w;
        }
}

static void build_byte_map(struct tokenizer *t)
{
    int n = 0;
    for (int i = 0; i < 0x144; i++)
        t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool same = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t->byte_cp[b] = same ? (uint32_t)b : (uint32_t)(256 + n++);
        t->cp_byte[t->byte_cp[b]] = (int16_t)b;
    }
}

struct tokenizer *tok_new(const struct gguf *g, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    if (!g) {
        kv_seterr(err, errlen, "tokenizer: no model file");
        return NULL;
    }
    struct tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        kv_seterr(err, errlen, "tokenizer: out of memory");
        return NULL;
    }
    char model[32];
    struct gguf_str ms;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &ms)) {
        kv_seterr(err, errlen, "tokenizer: tokenizer.ggml.model missing or not a string");
        goto fail;
    }
    if (gguf_str_eq(ms, "llama"))
        t->kind = TOK_KIND_SPM;
    else if (gguf_str_eq(ms, "gpt2"))
        t->kind = TOK_KIND_BPE;
    else {
        kv_seterr(err, errlen, "tokenizer: unsupported tokenizer.ggml.model '%s' (supported: llama, gpt2)",
                gguf_str_copy(ms, model, sizeof model));
        goto fail;
    }

    /* vocabulary */
    const char *tk = "tokenizer.ggml.tokens";
    enum gguf_type et;
    uint64_t nv;
    if (!gguf_get_arr(g, tk, &et, &nv) || et != GGUF_TYPE_STRING) {
        kv_seterr(err, errlen, "tokenizer: %s missing or not an array of strings", tk);
        goto fail;
    }
    if (nv == 0) {
        kv_seterr(err, errlen, "tokenizer: %s is empty", tk);
        goto fail;
    }
    if (nv > INT32_MAX / 2) {
        kv_seterr(err, errlen, "tokenizer: %s has too many entries (%llu)", tk, (unsigned long long)nv);
        goto fail;
    }
    t->n_vocab = (int32_t)nv;
    size_t n = (size_t)nv;
    t->off = malloc(n * sizeof *t->off);
    t->len = malloc(n * sizeof *t->len);
    t->score = calloc(n, sizeof *t->score);
    t->attr = malloc(n);
    t->eog = calloc(n, 1);
    if (!t->off || !t->len || !t->score || !t->attr || !t->eog) {
        kv_seterr(err, errlen, "tokenizer: out of memory for %zu tokens", n);
        goto fail;
    }
    size_t acap = 0, asz = 0;
    for (size_t i = 0; i < n; i++) {
        struct gguf_str s;
        if (!gguf_get_arr_str(g, tk, i, &s)) {
            kv_seterr(err, errlen, "tokenizer: cannot read %s[%zu]", tk, i);
            goto fail;
        }
        char empty[32];
        const char *p = s.ptr;
        size_t l = (size_t)s.len;
        if (l == 0) { /* llama.cpp names empty tokens so they stay distinct */
            l = (size_t)snprintf(empty, sizeof empty, "[EMPTY_%zu]", i);
            p = empty;
        }
        if (l > UINT32_MAX / 2 || asz + l + 1 > UINT32_MAX) {
            kv_seterr(err, errlen, "tokenizer: %s is too large", tk);
            goto fail;
        }
        if (!grow((void **)&t->arena, &acap, asz + l + 1, 1)) {
            kv_seterr(err, errlen, "tokenizer: out of memory");
            goto fail;
        }
        memcpy(t->arena + asz, p, l);
        t->arena[asz + l] = 0;
        t->off[i] = (uint32_t)asz;
        t->len[i] = (uint32_t)l;
        asz += l + 1;
    }
    t->hash_mask = pow2_at_least(n * 2) - 1;
    t->hash = malloc((t->hash_mask + 1) * sizeof *t->hash);
    if (!t->hash) {
        kv_seterr(err, errlen, "tokenizer: out of memory");
        goto fail;
    }
    memset(t->hash, 0xFF, (t->hash_mask + 1) * sizeof *t->hash);
    for (size_t i = 0; i < n; i++) {
        const char *s = text_of(t, (int32_t)i);
        uint64_t h = hash_bytes(s, t->len[i]) & t->hash_mask;
        while (t->hash[h] >= 0) {
            int32_t o = t->hash[h];
            if (t->len[o] == t->len[i] && memcmp(text_of(t, o), s, t->len[i]) == 0) {
                kv_seterr(err, errlen, "tokenizer: duplicate token '%.*s' has ids %d and %zu",
                        (int)(t->len[i] > 100 ? 100 : t->len[i]), s, (int)o, i);
                goto fail;
            }
            h = (h + 1) & t->hash_mask;
        }
        t->hash[h] = (int32_t)i;
    }

    /* scores and types: optional, but when present one per token */
    const char *sk = "tokenizer.ggml.scores";
    uint64_t cnt;
    if (gguf_find_key(g, sk) >= 0) {
        if (!gguf_get_arr(g, sk, &et, &cnt) ||
            (et != GGUF_TYPE_FLOAT32 && et != GGUF_TYPE_INT32 && et != GGUF_TYPE_FLOAT64)) {
            kv_seterr(err, errlen, "tokenizer: %s is not an array of numbers", sk);
            goto fail;
        }
        if (cnt != nv) {
            kv_seterr(err, errlen, "tokenizer: %s has %llu entries for %llu tokens", sk,
                    (unsigned long long)cnt, (unsigned long long)nv);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            double v;
            if (!gguf_get_arr_float(g, sk, i, &v)) {
                int64_t iv;
                if (!gguf_get_arr_int(g, sk, i, &iv)) {
                    kv_seterr(err, errlen, "tokenizer: cannot read %s[%zu]", sk, i);
                    goto fail;
                }
                v = (double)iv;
            }
            t->score[i] = (float)v;
        }
    } else if (t->kind == TOK_KIND_SPM) {
        kv_seterr(err, errlen, "tokenizer: %s missing for a llama (SPM) vocabulary", sk);
        goto fail;
    }
    const char *yk = "tokenizer.ggml.token_type";
    memset(t->attr, TOK_ATTR_NORMAL, n);
    if (gguf_find_key(g, yk) >= 0) {
        if (!gguf_get_arr(g, yk, &et, &cnt) || et == GGUF_TYPE_STRING || et == GGUF_TYPE_ARRAY ||
            et == GGUF_TYPE_FLOAT32 || et == GGUF_TYPE_FLOAT64) {
            kv_seterr(err, errlen, "tokenizer: %s is not an array of integers", yk);
            goto fail;
        }
        if (cnt != nv) {
            kv_seterr(err, errlen, "tokenizer: %s has %llu entries for %llu tokens", yk,
                    (unsigned long long)cnt, (unsigned long long)nv);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            if (!gguf_get_arr_int(g, yk, i, &v)) {
                kv_seterr(err, errlen, "tokenizer: cannot read %s[%zu]", yk, i);
                goto fail;
            }
            t->attr[i] = (v >= 0 && v <= TOK_ATTR_BYTE) ? (uint8_t)v : TOK_ATTR_UNDEFINED;
        }
    }

    /* byte tables */
    build_byte_map(t);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->ascii_tok[b] = lookup_n(t, &c, 1);
        if (t->kind == TOK_KIND_SPM) {
            char hx[8];
            snprintf(hx, sizeof hx, "<0x%02X>", b);
            t->byte_tok[b] = lookup_n(t, hx, 6);
        } else {
            char u[4];
            t->byte_tok[b] = lookup_n(t, u, put_utf8(t->byte_cp[b], u));
        }
    }

    /* pre-tokenizer and flags */
    struct gguf_str ps;
    bool have_pre = gguf_get_str(g, "tokenizer.ggml.pre", &ps);
    if (t->kind == TOK_KIND_BPE) {
        if (have_pre)
            gguf_str_copy(ps, t->pre, sizeof t->pre);
        else
            snprintf(t->pre, sizeof t->pre, "default");
        if (have_pre && ps.len >= sizeof t->pre) {
            kv_seterr(err, errlen, "tokenizer: tokenizer.ggml.pre is too long");
            goto fail;
        }
        const struct pre_def *d = find_pre(t->pre);
        if (!d) {
            char names[600];
            list_pres(names, sizeof names);
            kv_seterr(err, errlen, "tokenizer: unsupported tokenizer.ggml.pre '%s' (supported: %s)",
                    t->pre, names);
            goto fail;
        }
        t->ignore_merges = d->ignore_merges;
        t->add_bos = d->add_bos;
        t->add_space_prefix = false;
        t->bos = t->eos = 11;
        t->unk = -1;
        if (!compile_regexes(t, d, err, errlen))
            goto fail;
        if (!load_merges(t, g, err, errlen))
            goto fail;
    } else {
        t->add_bos = true;
        t->add_space_prefix = true;
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
    }
    t->eot = t->eom = -1;
    if (!read_special_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err, errlen) ||
        !read_special_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err, errlen) ||
        !read_special_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err, errlen) ||
        !read_special_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom, err, errlen) ||
        !read_special_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err, errlen))
        goto fail;
    if (!read_bool_key(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err, errlen))
        goto fail;
    if (t->kind == TOK_KIND_SPM &&
        !read_bool_key(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err, errlen))
        goto fail;
    if (t->add_bos && t->bos < 0) {
        kv_seterr(err, errlen, "tokenizer: add_bos_token is true but the vocabulary has no BOS token");
        goto fail;
    }

    /* end of generation: the special ids, plus control or user-defined tokens
     * whose text marks an end of turn. llama.cpp also gives every such token
     * the control attribute, so a user-defined one (gemma3's "</s>", id 212)
     * stops being split out of plain text: typed "</s>" is three ordinary
     * tokens there, and we must agree (tests/data/tokenizer/gemma3). Hence
     * this runs before build_user_defined. */
    if (t->eos >= 0)
        t->eog[t->eos] = 1;
    if (t->eot >= 0)
        t->eog[t->eot] = 1;
    if (t->eom >= 0)
        t->eog[t->eom] = 1;
    for (size_t i = 0; i < sizeof EOG_TEXTS / sizeof EOG_TEXTS[0]; i++) {
        int32_t id = lookup_n(t, EOG_TEXTS[i], strlen(EOG_TEXTS[i]));
        if (id >= 0 && (t->attr[id] == TOK_ATTR_CONTROL || t->attr[id] == TOK_ATTR_USER_DEFINED)) {
            t->eog[id] = 1;
            t->attr[id] = TOK_ATTR_CONTROL;
        }
    }

    if (!build_user_defined(t)) {
        kv_seterr(err, errlen, "tokenizer: out of memory");
        goto fail;
    }
    return t;
fail:
    tok_free(t);
    return NULL;
}

/* ---- streaming detokeniser ---- */

struct tok_stream {
    const struct tokenizer *t; /* borrowed */
    char *pend;                /* owned: bytes not yet emitted (an unfinished character) */
    size_t npend, pend_cap;
    char *out;                 /* owned: what the last call returned */
    size_t out_cap;
};

struct tok_stream *tok_stream_new(const struct tokenizer *t)
{
    if (!t)
        return NULL;
    struct tok_stream *s = calloc(1, sizeof *s);
    if (s)
        s->t = t;
    return s;
}

void tok_stream_free(struct tok_stream *s)
{
    if (!s)
        return;
    free(s->pend);
    free(s->out);
    free(s);
}

void tok_stream_reset(struct tok_stream *s)
{
    if (s)
        s->npend = 0;
}

/* Moves every complete character of the pending bytes to the output; with
 * FINAL, an unfinished tail becomes U+FFFD too. Returns the output length. */
static size_t stream_drain(struct tok_stream *s, bool final)
{
    /* each input byte yields at most 3 output bytes (U+FFFD) */
    if (!grow((void **)&s->out, &s->out_cap, s->npend * 3 + 1, 1))
        return 0;
    const unsigned char *p = (const unsigned char *)s->pend;
    size_t i = 0, k = 0;
    while (i < s->npend) {
        int l = utf8_check(p + i, s->npend - i);
        if (l > 0) {
            memcpy(s->out + k, p + i, (size_t)l);
            k += (size_t)l;
            i += (size_t)l;
        } else if (l < 0 || final) {
            memcpy(s->out + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += l < 0 ? (size_t)-l : s->npend - i;
        } else
            break; /* wait for the rest of this character */
    }
    memmove(s->pend, s->pend + i, s->npend - i);
    s->npend -= i;
    s->out[k] = 0;
    return k;
}

size_t tok_stream_push(struct tok_stream *s, int32_t id, const char **out)
{
    static const char empty[1] = "";
    if (out)
        *out = empty;
    if (!s)
        return 0;
    size_t n = tok_piece(s->t, id, NULL, 0);
    if (!grow((void **)&s->pend, &s->pend_cap, s->npend + n + 1, 1))
        return 0;
    tok_piece(s->t, id, s->pend + s->npend, n);
    s->npend += n;
    size_t k = stream_drain(s, false);
    if (out && s->out)
        *out = s->out;
    return k;
}

size_t tok_stream_flush(struct tok_stream *s, const char **out)
{
    static const char empty[1] = "";
    if (out)
        *out = empty;
    if (!s)
        return 0;
    size_t k = stream_drain(s, true);
    if (out && s->out)
        *out = s->out;
    return k;
}
