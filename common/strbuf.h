/* strbuf.h - a growing, always NUL-terminated byte buffer: the reply being
 * streamed, a response body. A zeroed struct kv_strbuf is empty; P is owned
 * (free it), and on a failed append the buffer is unchanged. */
#ifndef KVCHAT_STRBUF_H
#define KVCHAT_STRBUF_H

#include <stddef.h>

struct kv_strbuf {
    char *p; /* owned; NULL until the first append */
    size_t len, cap;
};

/* Appends N bytes of S (N may be 0: makes P a valid empty string). Returns 0,
 * or -1 when out of memory. */
int kv_strbuf_append(struct kv_strbuf *b, const char *s, size_t n);

#endif
