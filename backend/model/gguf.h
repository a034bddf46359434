/* gguf.h - GGUF v2/v3 model files: a validating reader over mmap and a writer.
 *
 * The reader checks every count, length, type id, dimension and offset against
 * the file size before anything is used, so no file can crash it, hang it or
 * make it allocate more than the file could describe. Errors are one line that
 * names the file and the problem.
 *
 * The writer builds files for tests and for synthetic benchmark models.
 *
 * Thread safety: a reader is immutable after gguf_open and may be read from
 * any number of threads. A writer belongs to one thread.
 */
#ifndef KVCHAT_GGUF_H
#define KVCHAT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant.h"

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* Metadata value types (GGUF spec ids). */
enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* A string inside the mapped file: not NUL-terminated. */
struct gguf_str {
    const char *ptr; /* borrowed, points into the mapping */
    uint64_t len;    /* bytes */
};

struct gguf_tensor {
    struct gguf_str name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* elements per dim, ne[0] fastest; unused dims are 1 */
    enum ggml_type type;
    uint64_t offset;  /* bytes from the start of the data section */
    uint64_t nbytes;  /* bytes of data */
    const void *data; /* borrowed, points into the mapping */
};

struct gguf;

/* Opens and validates PATH. On failure returns NULL and writes a one-line
 * message naming the file into ERR (ERRLEN bytes). */
struct gguf *gguf_open(const char *path, char *err, size_t errlen);

/* Validates a file image held in memory (DATA is borrowed and must outlive the
 * reader). NAME is used in error messages. Used by the fuzz target and tests. */
struct gguf *gguf_open_memory(const void *data, size_t size, const char *name, char *err,
                              size_t errlen);

void gguf_close(struct gguf *g); /* NULL is a no-op */

uint32_t gguf_version(const struct gguf *g);
uint64_t gguf_file_size(const struct gguf *g);
const char *gguf_path(const struct gguf *g); /* the name given at open */
uint32_t gguf_alignment(const struct gguf *g);
/* File offset of the tensor data section (tensor offsets are relative to it). */
uint64_t gguf_data_offset(const struct gguf *g);

/* Metadata. Keys are looked up by exact name; -1 when absent. */
int64_t gguf_n_kv(const struct gguf *g);
int64_t gguf_find_key(const struct gguf *g, const char *key);
struct gguf_str gguf_kv_key(const struct gguf *g, int64_t i);
enum gguf_type gguf_kv_type(const struct gguf *g, int64_t i);

/* Typed getters: return false when the key is absent or its type does not fit
 * (integers of any width convert when the value is in range). */
bool gguf_get_int(const struct gguf *g, const char *key, int64_t *out);
bool gguf_get_float(const struct gguf *g, const char *key, double *out); /* f32/f64 */
bool gguf_get_bool(const struct gguf *g, const char *key, bool *out);
bool gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out);

/* Arrays: element type and count, false when KEY is absent or not an array. */
bool gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type *elem_type,
                  uint64_t *n);
/* Element I of an array of strings. */
bool gguf_get_arr_str(const struct gguf *g, const char *key, uint64_t i, struct gguf_str *out);
/* Element I of an array of numbers, converted. */
bool gguf_get_arr_int(const struct gguf *g, const char *key, uint64_t i, int64_t *out);
bool gguf_get_arr_float(const struct gguf *g, const char *key, uint64_t i, double *out);

/* The same element getters by key index (from gguf_find_key), for loops over
 * large arrays such as a 250k-token vocabulary: no key lookup per element. */
bool gguf_kv_arr_str(const struct gguf *g, int64_t kv, uint64_t i, struct gguf_str *out);
bool gguf_kv_arr_int(const struct gguf *g, int64_t kv, uint64_t i, int64_t *out);
bool gguf_kv_arr_float(const struct gguf *g, int64_t kv, uint64_t i, double *out);

/* Tensors. */
int64_t gguf_n_tensors(const struct gguf *g);
const struct gguf_tensor *gguf_tensor(const struct gguf *g, int64_t i);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/* Copies at most CAP-1 bytes of S into BUF and NUL-terminates; returns BUF. */
char *gguf_str_copy(struct gguf_str s, char *buf, size_t cap);
bool gguf_str_eq(struct gguf_str s, const char *cstr);

/* ---- writer ---- */

struct gguf_writer;

struct gguf_writer *gguf_writer_new(void);
void gguf_writer_free(struct gguf_writer *w); /* NULL is a no-op */

/* Setters copy their arguments. Setting a key twice replaces the value. */
void gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
void gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
void gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
void gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
/* One scalar of any fixed-size TYPE (u8 ... f64); V points to a host value of
 * that type. A bool must be 0 or 1. */
void gguf_writer_set_num(struct gguf_writer *w, const char *key, enum gguf_type type,
                         const void *v);
void gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
/* Array of N numbers of ELEM_TYPE (a fixed-size type), raw little-endian data. */
void gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem_type,
                         const void *data, uint64_t n);
void gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
                             uint64_t n);
/* Copies every metadata entry of SRC whose key starts with PREFIX (all if ""). */
void gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf *src, const char *prefix);

/* Adds a tensor; DATA (quant_row_size(type, ne[0]) * rows bytes) is copied;
 * NULL DATA gives zeros. */
void gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
                            uint32_t n_dims, const int64_t *ne, const void *data);

/* Invalid arguments to the setters (bad key, unknown type, ne[0] not a
 * multiple of the block size, duplicate tensor name, out of memory) are kept
 * as the writer's first error: the message, or NULL when there is none.
 * gguf_writer_write and gguf_writer_to_memory fail while one is set. */
const char *gguf_writer_error(const struct gguf_writer *w);

/* Writes the file (version 3). Returns 0, or -1 with a message in ERR. */
int gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t errlen);
/* Serialises into a malloc'd buffer (caller frees); NULL on failure. */
void *gguf_writer_to_memory(struct gguf_writer *w, size_t *size);

#endif
