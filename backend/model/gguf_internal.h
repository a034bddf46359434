/* gguf_internal.h - what the GGUF reader (gguf.c) and writer (gguf_write.c)
 * share: the spec's fixed sizes and limits, the value-type table, the error
 * format, and the one look into a reader the writer needs (the raw bytes of a
 * metadata value, for gguf_writer_copy_kv).
 *
 * Rules: nothing here is public (gguf.h is the module's interface); both files
 * write a value exactly as the reader accepts it, so they take these limits
 * from one place.
 */
#ifndef KVCHAT_GGUF_INTERNAL_H
#define KVCHAT_GGUF_INTERNAL_H

#include "gguf.h"

#include <stdarg.h>

#define GGUF_HEADER_BYTES 24   /* magic, version, tensor_count, kv_count */
#define GGUF_MAX_KEY_LEN 65535 /* spec limit on key length */
#define GGUF_MAX_NAME_LEN 64   /* spec limit on tensor name length */

static inline uint32_t gguf_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t gguf_align_up(uint64_t x, uint64_t a)
{
    return x + (a - x % a) % a;
}

/* Size in bytes of a fixed-size value type, 0 for string, array and unknown. */
uint64_t gguf_type_size(uint32_t t);
/* "u8" ... "f64", "unknown" for an id that is not a GGUF type. */
const char *gguf_type_name(uint32_t t);

/* Formats "<name>: <message>" into ERR (ERRLEN bytes, ERR may be NULL),
 * keeping it on one line; NAME NULL gives "gguf". */
void gguf_vseterr(char *err, size_t errlen, const char *name, const char *fmt, va_list ap);

/* The bytes of metadata entry I's value exactly as in the file (after its type
 * id; validated at open), *LEN of them; NULL when I is out of range. */
const uint8_t *gguf_kv_value(const struct gguf *g, int64_t i, uint64_t *len);

#endif
