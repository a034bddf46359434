/* tokenizer.c - SentencePiece-style (`llama`) and byte-level BPE (`gpt2`)
 * tokenizers built from GGUF metadata: loading the vocabulary and the tables
 * every encoder shares, the public entry points, and the handling of special,
 * control and user-defined tokens around the raw fragments that spm.c and
 * bpe.c encode (detok.c turns ids back into text; tokenizer_internal.h lists
 * the files).
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
#include "tokenizer_internal.h"

#include "errmsg.h"

#include <stdio.h>

#include "gguf.h"

/* Texts that mark end-of-generation tokens (llama.cpp's list). */
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>",   "<|end|>",      "<end_of_turn>", "<|endoftext|>",
    "</s>",       "<|eom_id|>",   "<EOT>",        "_<EOT>",        "<|end_of_text|>",
    "<end_of_utterance>", "<｜end▁of▁sentence｜>", "<|return|>", "<|call|>",
};

void tok_enc_fail(struct tok_enc *e, const char *msg)
{
    if (!e->failed)
        kv_seterr(e->err, e->errlen, "tokenizer: %s", msg);
    e->failed = true;
}

/* ---- fragments ---- */

/* One occurrence of a user-defined token's text in plain text. */
struct occ {
    size_t pos;
    int32_t rank; /* the token's place among user-defined ones: longest first */
    uint32_t len;
};

static int occ_cmp(const void *a, const void *b)
{
    const struct occ *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int occ_pos_cmp(const void *a, const void *b)
{
    const struct occ *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void encode_raw(struct tok_enc *e, const char *text, size_t len, bool *prev_special)
{
    if (len == 0)
        return;
    if (e->t->kind == TOK_KIND_SPM)
        tok_spm_encode(e, text, len, e->t->add_space_prefix && *prev_special);
    else
        tok_bpe_encode(e, text, len);
    *prev_special = false;
}

/* Bytes of plain text whose user-defined tokens are found and settled at
 * once; a window only grows past this to take in occurrences that overlap its
 * end, so typical text needs scratch space for this much and no more. */
#define UD_WINDOW 65536

/* Per-window scratch space of encode_plain. */
struct ud_scratch {
    struct occ *occ;
    size_t occ_cap;
    uint8_t *claimed; /* (window bytes): 1 where an accepted occurrence lies */
    size_t claimed_cap;
};

/* Finds the user-defined occurrences starting in [START, *END) of TEXT, moving
 * *END on while one reaches past it, so that no occurrence straddles the
 * window's edges; then accepts them as the reference does (longest text first,
 * each token claiming its occurrences left to right in what is still raw) and
 * leaves the accepted ones first in S->occ, in text order. Returns how many
 * were accepted, or SIZE_MAX when out of memory.
 *
 * Whether an occurrence is accepted depends only on the occurrences that
 * overlap it, so settling each window alone gives what settling the whole
 * text at once would. */
static size_t ud_window(struct tok_enc *e, struct ud_scratch *s, const char *text, size_t len,
                        size_t start, size_t *end)
{
    const struct tokenizer *t = e->t;
    size_t nocc = 0;
    for (size_t p = start; p < *end; p++) {
        unsigned char c = (unsigned char)text[p];
        if (!t->ud_first[c])
            continue;
        for (uint32_t k = 0; k < t->ud_nlens[c]; k++) {
            size_t l = t->ud_lens[c][k];
            if (l > len - p)
                continue;
            int32_t id = tok_lookup_n(t, text + p, l);
            if (id < 0 || t->ud_rank[id] < 0)
                continue;
            if (!tok_grow((void **)&s->occ, &s->occ_cap, nocc + 1, sizeof *s->occ))
                return SIZE_MAX;
            s->occ[nocc++] = (struct occ){.pos = p, .rank = t->ud_rank[id], .len = (uint32_t)l};
            if (p + l > *end)
                *end = p + l;
        }
    }
    if (nocc == 0)
        return 0;
    size_t w = *end - start;
    if (!tok_grow((void **)&s->claimed, &s->claimed_cap, w, 1))
        return SIZE_MAX;
    memset(s->claimed, 0, w);
    qsort(s->occ, nocc, sizeof *s->occ, occ_cmp);
    size_t na = 0;
    int32_t cur_rank = -1;
    size_t cur_end = 0;
    for (size_t i = 0; i < nocc; i++) {
        struct occ o = s->occ[i];
        if (o.rank != cur_rank) {
            cur_rank = o.rank;
            cur_end = 0;
        }
        if (o.pos < cur_end)
            continue;
        uint8_t *cl = s->claimed + (o.pos - start);
        if (memchr(cl, 1, o.len))
            continue;
        memset(cl, 1, o.len);
        cur_end = o.pos + o.len;
        s->occ[na++] = o; /* na <= i: overwrites only what was already read */
    }
    qsort(s->occ, na, sizeof *s->occ, occ_pos_cmp);
    return na;
}

/* A run of plain text: user-defined tokens are split out first, window by
 * window (ud_window), then the raw text between them is tokenized piece by
 * piece; a raw piece may span windows and is always encoded whole. */
static void encode_plain(struct tok_enc *e, const char *text, size_t len, bool *prev_special)
{
    const struct tokenizer *t = e->t;
    if (len == 0)
        return;
    if (!t->has_ud) {
        encode_raw(e, text, len, prev_special);
        return;
    }
    struct ud_scratch s = {0};
    size_t raw_start = 0;
    for (size_t start = 0; start < len && !e->failed;) {
        size_t end = len - start > UD_WINDOW ? start + UD_WINDOW : len;
        size_t na = ud_window(e, &s, text, len, start, &end);
        if (na == SIZE_MAX) {
            tok_enc_fail(e, "out of memory");
            break;
        }
        for (size_t i = 0; i < na && !e->failed; i++) {
            const struct occ *o = &s.occ[i];
            encode_raw(e, text + raw_start, o->pos - raw_start, prev_special);
            tok_out_push(&e->out, tok_lookup_n(t, text + o->pos, o->len));
            *prev_special = true;
            raw_start = o->pos + o->len;
        }
        start = end;
    }
    if (!e->failed)
        encode_raw(e, text + raw_start, len - raw_start, prev_special);
    free(s.claimed);
    free(s.occ);
}

/* Frees E's scratch space; the ids stay with whoever owns E->out. */
static void enc_free(struct tok_enc *e)
{
    free(e->syms);
    free(e->heap.v);
    free(e->buf);
    for (int i = 0; i < TOK_MAX_REGEX; i++)
        pcre2_match_data_free(e->md[i]);
}

/* The body of every encoding entry point: the ids go to OUT (see tok_out).
 * Returns the number of ids, -1 or TOK_ENC_NO_TOKEN. */
static int64_t encode_into(const struct tokenizer *t, const struct tok_segment *segs, size_t n,
                           bool add_bos, struct tok_out *out, char *err, size_t errlen)
{
    struct tok_enc e = {.t = t, .out = *out, .err = err, .errlen = errlen};
    bool no_token = false;
    if (add_bos && t->bos >= 0)
        tok_out_push(&e.out, t->bos);
    /* SPM puts its space prefix on the first raw fragment and on each one that
     * follows a token fragment (llama.cpp's is_prev_special). */
    bool prev_special = true;
    for (size_t i = 0; i < n && !e.failed;) {
        if (segs[i].len && !segs[i].text) {
            tok_enc_fail(&e, "segment with NULL text");
            break;
        }
        if (segs[i].special) {
            int32_t id = tok_lookup_n(t, segs[i].text ? segs[i].text : "", segs[i].len);
            if (id < 0) {
                if (!e.failed)
                    kv_seterr(err, errlen, "tokenizer: special segment '%.*s' is not a token",
                            (int)(segs[i].len > 200 ? 200 : segs[i].len), segs[i].text);
                e.failed = true;
                no_token = true;
                break;
            }
            tok_out_push(&e.out, id);
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
                tok_enc_fail(&e, "out of memory");
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
        tok_enc_fail(&e, "out of memory");
    enc_free(&e);
    *out = e.out;
    if (e.failed)
        return no_token ? TOK_ENC_NO_TOKEN : -1;
    return e.out.n;
}

int64_t tok_encode_segments_e(const struct tokenizer *t, const struct tok_segment *segs, size_t n,
                              bool add_bos, int32_t *out, int64_t cap, char *err, size_t errlen)
{
    if (!t || (n && !segs) || cap < 0 || (cap > 0 && !out)) {
        kv_seterr(err, errlen, "tokenizer: invalid arguments to encode");
        return -1;
    }
    struct tok_out o = {.v = out, .cap = cap};
    return encode_into(t, segs, n, add_bos, &o, err, errlen);
}

int32_t *tok_encode_alloc(const struct tokenizer *t, const char *text, size_t len, bool add_bos,
                          int64_t *n, char *err, size_t errlen)
{
    if (!t || !n || (len && !text)) {
        kv_seterr(err, errlen, "tokenizer: invalid arguments to encode");
        return NULL;
    }
    struct tok_segment seg = {.text = text ? text : "", .len = len, .special = false};
    /* A first guess of a token per four bytes (English prose runs at about
     * that) keeps the ids of a long text from being copied more than twice. */
    struct tok_out o = {.grow = true};
    size_t guess = len / 4 + 16;
    o.v = malloc(guess * sizeof *o.v);
    if (!o.v) {
        kv_seterr(err, errlen, "tokenizer: out of memory");
        return NULL;
    }
    o.cap = (int64_t)guess;
    int64_t k = encode_into(t, &seg, 1, add_bos, &o, err, errlen);
    if (k < 0) {
        free(o.v);
        return NULL;
    }
    int32_t *fit = realloc(o.v, (size_t)(k ? k : 1) * sizeof *fit);
    *n = k;
    return fit ? fit : o.v;
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

/* ---- accessors ---- */

enum tok_kind tok_kind(const struct tokenizer *t) { return t->kind; }
const char *tok_pre_name(const struct tokenizer *t) { return t->pre; }
int32_t tok_n_vocab(const struct tokenizer *t) { return t->n_vocab; }
int32_t tok_bos(const struct tokenizer *t) { return t->bos; }
int32_t tok_eos(const struct tokenizer *t) { return t->eos; }
bool tok_add_bos(const struct tokenizer *t) { return t->add_bos; }
uint32_t tok_longest(const struct tokenizer *t) { return t->longest; }

int64_t tok_min_tokens(const struct tokenizer *t, const char *text, size_t len)
{
    if (!t || t->merges_drop || t->longest == 0 || (len && !text))
        return 0;
    size_t sure = 0; /* bytes that land in some token */
    for (size_t i = 0; i < len; i++)
        sure += !t->byte_may_vanish[(unsigned char)text[i]];
    return (int64_t)(sure / t->longest + (sure % t->longest != 0));
}

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
    return tok_lookup_n(t, text, strlen(text));
}

const char *tok_text(const struct tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_vocab)
        return "";
    return tok_text_of(t, id);
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
        unsigned char c = (unsigned char)tok_text_of(t, id)[0];
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

/* The longest token text, the byte pairs inside token texts (spm.c cuts long
 * text between the others) and whether every input byte surely lands in some
 * token (tok_min_tokens holds only then). */
static void build_text_facts(struct tokenizer *t)
{
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const unsigned char *s = (const unsigned char *)tok_text_of(t, i);
        if (t->len[i] > t->longest)
            t->longest = t->len[i];
        for (uint32_t k = 1; k < t->len[i]; k++) {
            unsigned b = (unsigned)s[k - 1] << 8 | s[k];
            t->pair_in_token[b >> 3] |= (uint8_t)(1u << (b & 7));
        }
    }
    /* Bytes vanish where the encoders have no token for them: SPM when a byte
     * has neither a byte token nor a one-byte text and there is no <unk>;
     * BPE when a byte has no mapped token, or when a merge makes a text that
     * is not a token (its bytes then fall back to printable ASCII only). */
    for (int b = 0; b < 256; b++) {
        if (t->kind == TOK_KIND_SPM)
            t->byte_may_vanish[b] = t->byte_tok[b] < 0 && t->ascii_tok[b] < 0 && t->unk < 0;
        else
            t->byte_may_vanish[b] = t->byte_tok[b] < 0;
    }
    if (t->kind == TOK_KIND_BPE && t->merge_key)
        for (uint64_t i = 0; i <= t->merge_mask; i++)
            if (t->merge_key[i] != UINT64_MAX && t->merge_res[i] < 0)
                t->merges_drop = true;
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
        if (!tok_grow((void **)&t->arena, &acap, asz + l + 1, 1)) {
            kv_seterr(err, errlen, "tokenizer: out of memory");
            goto fail;
        }
        memcpy(t->arena + asz, p, l);
        t->arena[asz + l] = 0;
        t->off[i] = (uint32_t)asz;
        t->len[i] = (uint32_t)l;
        asz += l + 1;
    }
    t->hash_mask = tok_pow2_at_least(n * 2) - 1;
    t->hash = malloc((t->hash_mask + 1) * sizeof *t->hash);
    if (!t->hash) {
        kv_seterr(err, errlen, "tokenizer: out of memory");
        goto fail;
    }
    memset(t->hash, 0xFF, (t->hash_mask + 1) * sizeof *t->hash);
    for (size_t i = 0; i < n; i++) {
        const char *s = tok_text_of(t, (int32_t)i);
        uint64_t h = tok_hash_bytes(s, t->len[i]) & t->hash_mask;
        while (t->hash[h] >= 0) {
            int32_t o = t->hash[h];
            if (t->len[o] == t->len[i] && memcmp(tok_text_of(t, o), s, t->len[i]) == 0) {
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
        t->ascii_tok[b] = tok_lookup_n(t, &c, 1);
        if (t->kind == TOK_KIND_SPM) {
            char hx[8];
            snprintf(hx, sizeof hx, "<0x%02X>", b);
            t->byte_tok[b] = tok_lookup_n(t, hx, 6);
        } else {
            char u[4];
            t->byte_tok[b] = tok_lookup_n(t, u, kv_utf8_put(t->byte_cp[b], u));
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
        if (!tok_pre_setup(t, err, errlen)) /* sets ignore_merges and add_bos */
            goto fail;
        t->add_space_prefix = false;
        t->bos = t->eos = 11;
        t->unk = -1;
        if (!tok_bpe_load_merges(t, g, err, errlen))
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
        int32_t id = tok_lookup_n(t, EOG_TEXTS[i], strlen(EOG_TEXTS[i]));
        if (id >= 0 && (t->attr[id] == TOK_ATTR_CONTROL || t->attr[id] == TOK_ATTR_USER_DEFINED)) {
            t->eog[id] = 1;
            t->attr[id] = TOK_ATTR_CONTROL;
        }
    }

    if (!build_user_defined(t)) {
        kv_seterr(err, errlen, "tokenizer: out of memory");
        goto fail;
    }
    build_text_facts(t);
    return t;
fail:
    tok_free(t);
    return NULL;
}
