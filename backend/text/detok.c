/* detok.c - from ids back to text: the bytes each token stands for
 * (tok_piece) and the streaming detokeniser that the front-end feeds one id
 * at a time and that only ever hands back whole, valid UTF-8.
 */
#include "tokenizer_internal.h"

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
    const char *s = tok_text_of(t, id);
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
        int l = tok_utf8_check((const unsigned char *)s + i, n - i);
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

struct tok_stream {
    const struct tokenizer *t; /* borrowed */
    char *pend;                /* owned: bytes not yet emitted (an unfinished character) */
    size_t npend, pend_cap;
    char *out;                 /* owned: what the last call returned */
    size_t out_cap;
    bool failed;               /* text was lost for want of memory (tok_stream_failed) */
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
    if (s) {
        s->npend = 0;
        s->failed = false;
    }
}

/* Moves every complete character of the pending bytes to the output; with
 * FINAL, an unfinished tail becomes U+FFFD too. Returns the output length.
 * Without memory the bytes stay pending for the next call, so only the
 * final drain loses them. */
static size_t stream_drain(struct tok_stream *s, bool final)
{
    /* each input byte yields at most 3 output bytes (U+FFFD) */
    if (!tok_grow((void **)&s->out, &s->out_cap, s->npend * 3 + 1, 1)) {
        if (final)
            s->failed = true;
        return 0;
    }
    const unsigned char *p = (const unsigned char *)s->pend;
    size_t i = 0, k = 0;
    while (i < s->npend) {
        int l = tok_utf8_check(p + i, s->npend - i);
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
    if (i < s->npend) /* memmove's pointers must be valid even for 0 bytes: PEND may be NULL */
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
    if (!tok_grow((void **)&s->pend, &s->pend_cap, s->npend + n + 1, 1)) {
        s->failed = true;
        return 0;
    }
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

bool tok_stream_failed(const struct tok_stream *s)
{
    return s && s->failed;
}
