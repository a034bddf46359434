/* errmsg.h - writing a one-line error message into a caller's buffer, the way
 * every engine module reports failures (errors are values, see style.md). */
#ifndef KVCHAT_ERRMSG_H
#define KVCHAT_ERRMSG_H

#include <stddef.h>

/* printf-style into ERR (ERRLEN bytes); nothing when ERR is NULL or ERRLEN 0. */
void kv_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
