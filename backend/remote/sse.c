/* sse.c - server-sent event framing (see sse.h). */
#include "sse.h"

#include <stdlib.h>
#include <string.h>

void sse_init(struct sse *s, sse_event_fn on_event, void *user)
{
    memset(s, 0, sizeof *s);
    s->on_event = on_event;
    s->user = user;
}

void sse_free(struct sse *s)
{
    free(s->line);
    free(s->data);
    s->line = s->data = NULL;
    s->len = s->cap = s->dlen = s->dcap = 0;
}

/* Makes room for N more bytes plus a NUL in *BUF, within SSE_MAX_LINE. */
static int reserve(char **buf, size_t *cap, size_t len, size_t n)
{
    if (len + n > SSE_MAX_LINE)
        return SSE_TOO_LONG;
    if (len + n + 1 <= *cap)
        return SSE_OK;
    size_t c = *cap ? *cap : 256;
    while (c < len + n + 1)
        c *= 2;
    char *p = realloc(*buf, c);
    if (!p)
        return SSE_NOMEM;
    *buf = p;
    *cap = c;
    return SSE_OK;
}

static int dispatch(struct sse *s)
{
    if (!s->has_data)
        return SSE_OK;
    s->has_data = 0;
    size_t n = s->dlen;
    s->dlen = 0;
    s->data[n] = 0;
    return s->on_event(s->data, n, s->user);
}

/* One complete line (without its end) is in s->line. */
static int line_done(struct sse *s)
{
    size_t n = s->len;
    s->len = 0;
    if (n == 0)
        return dispatch(s);
    const char *l = s->line;
    if (l[0] == ':')
        return SSE_OK;
    const char *colon = memchr(l, ':', n);
    size_t name = colon ? (size_t)(colon - l) : n;
    if (name != 4 || memcmp(l, "data", 4) != 0)
        return SSE_OK;
    const char *v = colon ? colon + 1 : l + n;
    if (v < l + n && *v == ' ')
        v++;
    size_t vn = (size_t)(l + n - v);
    int rc = reserve(&s->data, &s->dcap, s->dlen, vn + 1);
    if (rc)
        return rc;
    if (s->has_data)
        s->data[s->dlen++] = '\n';
    memcpy(s->data + s->dlen, v, vn);
    s->dlen += vn;
    s->has_data = 1;
    return SSE_OK;
}

int sse_feed(struct sse *s, const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s->after_cr) {
            s->after_cr = 0;
            if (buf[i] == '\n') {
                i++;
                continue;
            }
        }
        /* the run of bytes up to the next line end */
        size_t j = i;
        while (j < n && buf[j] != '\n' && buf[j] != '\r')
            j++;
        if (j > i) {
            int rc = reserve(&s->line, &s->cap, s->len, j - i);
            if (rc)
                return rc;
            memcpy(s->line + s->len, buf + i, j - i);
            s->len += j - i;
        }
        if (j == n)
            break;
        s->after_cr = buf[j] == '\r';
        i = j + 1;
        if (!s->line && reserve(&s->line, &s->cap, 0, 0) != SSE_OK)
            return SSE_NOMEM;
        s->line[s->len] = 0;
        int rc = line_done(s);
        if (rc)
            return rc;
    }
    return SSE_OK;
}

int sse_finish(struct sse *s)
{
    if (s->len) {
        s->line[s->len] = 0;
        int rc = line_done(s);
        if (rc)
            return rc;
    }
    return dispatch(s);
}
