/* utf8.h - the one rule for text entering kvchat by any door (an option,
 * standard input, the config file, the chat screen's input line): it must be
 * valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF),
 * or it is refused with a message naming it, the byte and what to do. */
#ifndef KVCHAT_UTF8_H
#define KVCHAT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when LEN bytes of S are valid UTF-8; else *BAD (may be NULL) gets the
 * offset of the first invalid byte. */
bool kv_utf8_valid(const char *s, size_t len, size_t *bad);

/* 1 when S (NUL-terminated) is valid UTF-8; else 0 with "WHAT is not valid
 * UTF-8 (byte N): convert it to UTF-8" in ERR. */
int kv_check_text(const char *what, const char *s, char *err, size_t errlen);

/* Writes CP (at most U+10FFFF) as UTF-8 into OUT, which has room for 4
 * bytes; returns the bytes written. */
size_t kv_utf8_put(uint32_t cp, char *out);

#endif
