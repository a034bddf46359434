/* utf8_stream.c - whole, valid UTF-8 characters out of a byte stream (see
 * utf8_stream.h). */
#include "utf8_stream.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* Continuation bytes a lead byte needs and the range of the first of them
 * (the later ones are always 80..BF); need 0 for a byte that leads nothing. */
static void lead_info(unsigned char b, int *need, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF)
        *need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        *need = 2;
        if (b == 0xE0)
            *lo = 0xA0; /* no overlong 3-byte forms */
        if (b == 0xED)
            *hi = 0x9F; /* no surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        *need = 3;
        if (b == 0xF0)
            *lo = 0x90; /* no overlong 4-byte forms */
        if (b == 0xF4)
            *hi = 0x8F; /* nothing above U+10FFFF */
    } else
        *need = 0;
}

/* Validates the N bytes at W into u->out (room checked by the caller), holding
 * back an incomplete tail unless FINAL. Returns the output length. */
static size_t convert(struct u8s *u, const unsigned char *w, size_t n, bool final)
{
    size_t o = 0, i = 0;
    while (i < n) {
        unsigned char b = w[i];
        if (b < 0x80) {
            u->out[o++] = (char)b;
            i++;
            continue;
        }
        int need;
        unsigned char lo, hi;
        lead_info(b, &need, &lo, &hi);
        if (need == 0) {
            memcpy(u->out + o, REPLACEMENT, 3);
            o += 3;
            i++;
            continue;
        }
        int j = 1;
        for (; j <= need && i + (size_t)j < n; j++) {
            unsigned char c = w[i + (size_t)j];
            if (c < (j == 1 ? lo : 0x80) || c > (j == 1 ? hi : 0xBF))
                break;
        }
        if (j > need) { /* a whole character */
            memcpy(u->out + o, w + i, (size_t)need + 1);
            o += (size_t)need + 1;
            i += (size_t)need + 1;
        } else if (i + (size_t)j == n && !final) { /* a valid prefix at the end */
            u->nhold = n - i;
            memcpy(u->hold, w + i, u->nhold);
            return o;
        } else { /* the maximal subpart w[i..i+j) is one replacement */
            memcpy(u->out + o, REPLACEMENT, 3);
            o += 3;
            i += (size_t)j;
        }
    }
    return o;
}

static size_t run(struct u8s *u, const char *in, size_t n, bool final, const char **out)
{
    size_t total = u->nhold + n;
    /* each input byte gives at most 3 output bytes (one replacement) */
    size_t need = total * 3 + 1;
    unsigned char *w = malloc(total ? total : 1);
    if (!w)
        return (size_t)-1;
    if (need > u->cap) {
        char *p = realloc(u->out, need);
        if (!p) {
            free(w);
            return (size_t)-1;
        }
        u->out = p;
        u->cap = need;
    }
    memcpy(w, u->hold, u->nhold);
    if (n)
        memcpy(w + u->nhold, in, n);
    u->nhold = 0;
    size_t o = convert(u, w, total, final);
    free(w);
    u->out[o] = 0;
    *out = u->out;
    return o;
}

size_t u8s_push(struct u8s *u, const char *in, size_t n, const char **out)
{
    return run(u, in, n, false, out);
}

size_t u8s_flush(struct u8s *u, const char **out) { return run(u, NULL, 0, true, out); }

void u8s_free(struct u8s *u)
{
    free(u->out);
    u->out = NULL;
    u->cap = 0;
    u->nhold = 0;
}
