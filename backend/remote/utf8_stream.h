/* utf8_stream.h - turns a stream of bytes that should be UTF-8 into whole,
 * valid characters, the form engine_piece_fn promises: a sequence split
 * across two pushes is held back until it is complete, and bytes that cannot
 * be UTF-8 become U+FFFD. Used by remote.c on the text a server streams.
 *
 * Rules every function follows:
 * - Validity is the Unicode standard's (Table 3-7): no overlong forms, no
 *   surrogates, nothing above U+10FFFF. Each maximal invalid subpart becomes
 *   one U+FFFD, the replacement practice of the Unicode standard (and of
 *   browsers), so "\xE2\x82" followed by "c" is one U+FFFD and "c".
 * - Ownership: the output lives in the stream's buffer until the next call;
 *   u8s_free on a zeroed stream is a no-op.
 */
#ifndef KVCHAT_UTF8_STREAM_H
#define KVCHAT_UTF8_STREAM_H

#include <stddef.h>

struct u8s {
    unsigned char hold[4]; /* an incomplete trailing sequence, nhold bytes */
    size_t nhold;
    char *out; /* owned output buffer, cap bytes */
    size_t cap;
};

/* Pushes N bytes; *OUT receives the whole characters now complete and the
 * return value their length, or (size_t)-1 when out of memory. */
size_t u8s_push(struct u8s *u, const char *in, size_t n, const char **out);
/* At the end of the text: a held-back incomplete sequence becomes U+FFFD. */
size_t u8s_flush(struct u8s *u, const char **out);
void u8s_free(struct u8s *u);

#endif
