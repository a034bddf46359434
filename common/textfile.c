/* textfile.c - see textfile.h. */
#include "textfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *textfile_read(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        errno = e;
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    int e = 0;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (ferror(f)) {
            e = errno ? errno : EIO;
            snprintf(err, errlen, "%s: %s", path, strerror(e));
            break;
        }
        if (n > max) {
            e = EFBIG;
            snprintf(err, errlen, "%s: larger than %zu KiB, not a kvchat file", path, max >> 10);
            break;
        }
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            e = ENOMEM;
            snprintf(err, errlen, "%s: out of memory", path);
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (!buf || e) {
        free(buf);
        if (!buf && !e)
            snprintf(err, errlen, "%s: out of memory", path);
        errno = e ? e : ENOMEM;
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
