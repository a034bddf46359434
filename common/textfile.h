/* textfile.h - reading a small text file (config, theme) whole, with a size
 * limit, so a huge or endless file is refused rather than read. */
#ifndef KVCHAT_TEXTFILE_H
#define KVCHAT_TEXTFILE_H

#include <stddef.h>

/* Reads PATH into a malloc'd buffer (NUL-terminated; *LEN excludes the NUL).
 * NULL on failure with "PATH: reason" in ERR and errno set (ENOENT for a
 * missing file, EFBIG for one larger than MAX bytes). */
char *textfile_read(const char *path, size_t max, size_t *len, char *err, size_t errlen);

#endif
