/* gguf.c - GGUF v2/v3 files: the validating reader (over mmap or memory) and
 * its getters. The writer is gguf_write.c.
 *
 * The tokenizer and the model loader read through this. The reader makes one
 * pass over the header in which every field is checked against the bytes that
 * remain before it is trusted, and builds tables (key hash, tensor hash,
 * string-array offset tables) so the getters afterwards only need bounds
 * checks on their index.
 *
 * Allocation is bounded by the file: every count is compared with the fewest
 * bytes its items could take before anything is allocated for it, so memory
 * is a small multiple of the file size whatever the header claims.
 */
#include "gguf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Real files nest arrays at most one level; the cap keeps the recursive
 * validator's stack bounded on hostile input. */
#define GGUF_MAX_ARRAY_DEPTH 8
/* Fewest bytes one metadata entry can take: key length, a 1-byte key, the
 * type id and a 1-byte value. */
#define GGUF_MIN_KV_BYTES (8 + 1 + 4 + 1)
/* Fewest bytes one tensor info can take: name length, a 1-byte name, n_dims,
 * one dim, type, offset. */
#define GGUF_MIN_TENSOR_BYTES (8 + 1 + 4 + 8 + 4 + 8)

struct kv {
    struct gguf_str key;      /* borrowed, points into the file */
    enum gguf_type type;
    uint64_t val_off;         /* file offset of the value (after the type id) */
    uint64_t val_len;         /* bytes of the value */
    enum gguf_type elem_type; /* arrays only */
    uint64_t n;               /* arrays only: element count */
    uint64_t elems_off;       /* arrays only: file offset of element 0 */
    uint64_t *str_off;        /* owned; arrays of strings: file offset of each element */
};

struct gguf {
    char *name;          /* owned: the name given at open, for messages */
    const uint8_t *base; /* the file image: borrowed (memory) or the mapping */
    size_t size;         /* bytes */
    void *map;           /* owned mapping, NULL for gguf_open_memory */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start; /* file offset of the tensor data section */
    int64_t n_kv;
    struct kv *kv; /* owned, n_kv */
    int64_t n_tensors;
    struct gguf_tensor *tensors; /* owned, n_tensors */
    int64_t *kv_hash;            /* owned, open addressing, -1 = empty */
    uint64_t kv_mask;            /* table size - 1 */
    int64_t *t_hash;             /* owned, same scheme for tensor names */
    uint64_t t_mask;
};

/* ---- small helpers ---- */

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)gguf_le32(p) | (uint64_t)gguf_le32(p + 4) << 32;
}

static uint64_t hash_bytes(const char *s, uint64_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool str_eq_n(struct gguf_str s, const char *c, size_t n)
{
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* One row per metadata value type: SIZE is the bytes of a fixed-size value,
 * 0 for string and array (their size is in the data). */
static const struct {
    uint8_t size;
    const char *name;
} GGUF_TYPES[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = {.size = 1, .name = "u8"},
    [GGUF_TYPE_INT8] = {.size = 1, .name = "i8"},
    [GGUF_TYPE_UINT16] = {.size = 2, .name = "u16"},
    [GGUF_TYPE_INT16] = {.size = 2, .name = "i16"},
    [GGUF_TYPE_UINT32] = {.size = 4, .name = "u32"},
    [GGUF_TYPE_INT32] = {.size = 4, .name = "i32"},
    [GGUF_TYPE_FLOAT32] = {.size = 4, .name = "f32"},
    [GGUF_TYPE_BOOL] = {.size = 1, .name = "bool"},
    [GGUF_TYPE_STRING] = {.size = 0, .name = "string"},
    [GGUF_TYPE_ARRAY] = {.size = 0, .name = "array"},
    [GGUF_TYPE_UINT64] = {.size = 8, .name = "u64"},
    [GGUF_TYPE_INT64] = {.size = 8, .name = "i64"},
    [GGUF_TYPE_FLOAT64] = {.size = 8, .name = "f64"},
};

uint64_t gguf_type_size(uint32_t t)
{
    return t < GGUF_TYPE_COUNT ? GGUF_TYPES[t].size : 0;
}

const char *gguf_type_name(uint32_t t)
{
    return t < GGUF_TYPE_COUNT ? GGUF_TYPES[t].name : "unknown";
}

/* Copies a name from the file into BUF for a message: control bytes become
 * '?' so the message stays one line, and long names are cut with "...". */
static const char *printable(struct gguf_str s, char *buf, size_t cap)
{
    size_t n = s.len < cap - 4 ? (size_t)s.len : cap - 4;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (n < s.len)
        memcpy(buf + n, "...", 4);
    else
        buf[n] = 0;
    return buf;
}

/* Formats "<name>: <message>" into ERR, keeping it on one line. */
void gguf_vseterr(char *err, size_t errlen, const char *name, const char *fmt, va_list ap)
{
    if (!err || errlen == 0)
        return;
    int n = snprintf(err, errlen, "%s: ", name ? name : "gguf");
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
}

/* ---- reader ---- */

struct rd {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    const char *name;
    char *err;
    size_t errlen;
};

static bool fail(struct rd *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gguf_vseterr(r->err, r->errlen, r->name, fmt, ap);
    va_end(ap);
    return false;
}

static uint64_t left(const struct rd *r)
{
    return r->size - r->pos;
}

/* Fails unless N more bytes are there; WHAT names them. */
static bool need(struct rd *r, uint64_t n, const char *what)
{
    if (n > left(r))
        return fail(r, "%s at offset %llu (%llu bytes) runs past the end of the file (%llu bytes)",
                    what, (unsigned long long)r->pos, (unsigned long long)n,
                    (unsigned long long)r->size);
    return true;
}

static bool rd_u32(struct rd *r, uint32_t *v, const char *what)
{
    if (!need(r, 4, what))
        return false;
    *v = gguf_le32(r->p + r->pos);
    r->pos += 4;
    return true;
}

static bool rd_u64(struct rd *r, uint64_t *v, const char *what)
{
    if (!need(r, 8, what))
        return false;
    *v = le64(r->p + r->pos);
    r->pos += 8;
    return true;
}

static bool rd_str(struct rd *r, struct gguf_str *s, const char *what)
{
    uint64_t len;
    if (!rd_u64(r, &len, what))
        return false;
    if (len > left(r))
        return fail(r, "%s: string length %llu at offset %llu runs past the end of the file "
                    "(%llu bytes)",
                    what, (unsigned long long)len, (unsigned long long)(r->pos - 8),
                    (unsigned long long)r->size);
    s->ptr = (const char *)r->p + r->pos;
    s->len = len;
    r->pos += len;
    return true;
}

/* Validates and skips one value of TYPE; CTX names the key for messages.
 * DEPTH is the array nesting level. */
static bool skip_value(struct rd *r, uint32_t type, int depth, const char *ctx)
{
    uint64_t sz = gguf_type_size(type);
    if (sz) {
        if (!need(r, sz, ctx))
            return false;
        if (type == GGUF_TYPE_BOOL && r->p[r->pos] > 1)
            return fail(r, "%s: bool value %u at offset %llu is not 0 or 1", ctx, r->p[r->pos],
                        (unsigned long long)r->pos);
        r->pos += sz;
        return true;
    }
    if (type == GGUF_TYPE_STRING) {
        struct gguf_str s;
        return rd_str(r, &s, ctx);
    }
    if (type != GGUF_TYPE_ARRAY)
        return fail(r, "%s: value type id %u is not a GGUF type", ctx, type);

    uint32_t et;
    uint64_t n;
    if (!rd_u32(r, &et, ctx) || !rd_u64(r, &n, ctx))
        return false;
    if (et >= GGUF_TYPE_COUNT)
        return fail(r, "%s: array element type id %u is not a GGUF type", ctx, et);
    uint64_t esz = gguf_type_size(et);
    /* Fewest bytes per element: a string is at least its length field, an
     * array at least its element type and count. */
    uint64_t min = esz ? esz : et == GGUF_TYPE_STRING ? 8 : 12;
    if (n > left(r) / min)
        return fail(r, "%s: array of %llu %s elements at offset %llu runs past the end of the "
                    "file (%llu bytes)",
                    ctx, (unsigned long long)n, gguf_type_name(et), (unsigned long long)r->pos,
                    (unsigned long long)r->size);
    if (et == GGUF_TYPE_ARRAY && depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
        return fail(r, "%s: arrays nested more than %d deep", ctx, GGUF_MAX_ARRAY_DEPTH);
    if (esz && et != GGUF_TYPE_BOOL) {
        r->pos += n * esz;
        return true;
    }
    for (uint64_t i = 0; i < n; i++)
        if (!skip_value(r, et, depth + 1, ctx))
            return false;
    return true;
}

static void *alloc_array(uint64_t n, size_t elem)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / elem)
        return NULL;
    return calloc((size_t)n, elem);
}

/* Inserts index I into TABLE keyed by S; returns the existing index on a
 * duplicate, -1 otherwise. NAME_OF maps an index back to its name. */
static int64_t hash_insert(int64_t *table, uint64_t mask, struct gguf_str s, int64_t i,
                           struct gguf_str (*name_of)(const struct gguf *, int64_t),
                           const struct gguf *g)
{
    uint64_t h = hash_bytes(s.ptr, s.len) & mask;
    while (table[h] >= 0) {
        struct gguf_str o = name_of(g, table[h]);
        if (o.len == s.len && memcmp(o.ptr, s.ptr, s.len) == 0)
            return table[h];
        h = (h + 1) & mask;
    }
    table[h] = i;
    return -1;
}

static int64_t hash_find(const int64_t *table, uint64_t mask, const char *s, size_t n,
                         struct gguf_str (*name_of)(const struct gguf *, int64_t),
                         const struct gguf *g)
{
    if (!table)
        return -1;
    uint64_t h = hash_bytes(s, n) & mask;
    while (table[h] >= 0) {
        if (str_eq_n(name_of(g, table[h]), s, n))
            return table[h];
        h = (h + 1) & mask;
    }
    return -1;
}

static struct gguf_str kv_name(const struct gguf *g, int64_t i)
{
    return g->kv[i].key;
}

static struct gguf_str tensor_name(const struct gguf *g, int64_t i)
{
    return g->tensors[i].name;
}

/* A power-of-two table with at least twice N slots, all empty. */
static int64_t *hash_new(uint64_t n, uint64_t *mask)
{
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    int64_t *t = alloc_array(cap, sizeof *t);
    if (t)
        memset(t, 0xff, (size_t)cap * sizeof *t);
    *mask = cap - 1;
    return t;
}

static bool parse_kv(struct rd *r, struct gguf *g, int64_t i)
{
    struct kv *kv = &g->kv[i];
    char what[64], nb[96];
    snprintf(what, sizeof what, "key %lld", (long long)i);
    if (!rd_str(r, &kv->key, what))
        return false;
    if (kv->key.len == 0)
        return fail(r, "key %lld at offset %llu is empty", (long long)i,
                    (unsigned long long)(r->pos - 8));
    if (kv->key.len > GGUF_MAX_KEY_LEN)
        return fail(r, "key %lld is %llu bytes long (at most %d allowed)", (long long)i,
                    (unsigned long long)kv->key.len, GGUF_MAX_KEY_LEN);
    for (uint64_t k = 0; k < kv->key.len; k++) {
        unsigned char c = (unsigned char)kv->key.ptr[k];
        if (c < 0x20 || c == 0x7f)
            return fail(r, "key '%s' contains control byte 0x%02x",
                        printable(kv->key, nb, sizeof nb), c);
    }
    char ctx[128];
    snprintf(ctx, sizeof ctx, "key '%s'", printable(kv->key, nb, sizeof nb));
    if (hash_insert(g->kv_hash, g->kv_mask, kv->key, i, kv_name, g) >= 0)
        return fail(r, "duplicate key '%s'", nb);

    uint32_t type;
    if (!rd_u32(r, &type, ctx))
        return false;
    if (type >= GGUF_TYPE_COUNT)
        return fail(r, "%s: value type id %u is not a GGUF type", ctx, type);
    kv->type = (enum gguf_type)type;
    kv->val_off = r->pos;
    if (!skip_value(r, type, 0, ctx))
        return false;
    kv->val_len = r->pos - kv->val_off;
    if (type != GGUF_TYPE_ARRAY)
        return true;

    /* Arrays: skip_value checked them; record shape, and index strings so
     * element lookups are O(1) (tokenizer vocabularies hold ~250k). */
    kv->elem_type = (enum gguf_type)gguf_le32(r->p + kv->val_off);
    kv->n = le64(r->p + kv->val_off + 4);
    kv->elems_off = kv->val_off + 12;
    if (kv->elem_type == GGUF_TYPE_STRING) {
        kv->str_off = alloc_array(kv->n, sizeof *kv->str_off);
        if (!kv->str_off)
            return fail(r, "%s: out of memory indexing %llu strings", ctx,
                        (unsigned long long)kv->n);
        uint64_t off = kv->elems_off;
        for (uint64_t k = 0; k < kv->n; k++) {
            kv->str_off[k] = off;
            off += 8 + le64(r->p + off);
        }
    }
    return true;
}

static bool parse_tensor(struct rd *r, struct gguf *g, int64_t i)
{
    struct gguf_tensor *t = &g->tensors[i];
    char what[64], nb[96], ctx[128];
    snprintf(what, sizeof what, "tensor %lld name", (long long)i);
    if (!rd_str(r, &t->name, what))
        return false;
    if (t->name.len == 0)
        return fail(r, "tensor %lld has an empty name", (long long)i);
    if (t->name.len > GGUF_MAX_NAME_LEN)
        return fail(r, "tensor %lld name '%s' is %llu bytes long (at most %d allowed)",
                    (long long)i, printable(t->name, nb, sizeof nb),
                    (unsigned long long)t->name.len, GGUF_MAX_NAME_LEN);
    snprintf(ctx, sizeof ctx, "tensor '%s'", printable(t->name, nb, sizeof nb));
    if (hash_insert(g->t_hash, g->t_mask, t->name, i, tensor_name, g) >= 0)
        return fail(r, "duplicate tensor name '%s'", nb);

    if (!rd_u32(r, &t->n_dims, ctx))
        return false;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r, "%s has %u dimensions (1 to %d allowed)", ctx, t->n_dims, GGUF_MAX_DIMS);
    uint64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if ((uint32_t)d < t->n_dims && !rd_u64(r, &v, ctx))
            return false;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return fail(r, "%s dimension %d is %llu (must be 1 to 2^63-1)", ctx, d,
                        (unsigned long long)v);
        if (nel > (uint64_t)INT64_MAX / v)
            return fail(r, "%s has too many elements (the product of its dimensions overflows)",
                        ctx);
        nel *= v;
        t->ne[d] = (int64_t)v;
    }
    uint32_t type;
    if (!rd_u32(r, &type, ctx))
        return false;
    if (type >= GGML_TYPE_COUNT || !quant_type_known((enum ggml_type)type))
        return fail(r, "%s has unknown tensor type id %u", ctx, type);
    t->type = (enum ggml_type)type;
    uint64_t bs = (uint64_t)quant_block_size(t->type);
    uint64_t ts = quant_type_size(t->type);
    if (bs == 0 || ts == 0)
        return fail(r, "%s has tensor type %s with no known size", ctx, quant_type_name(t->type));
    if ((uint64_t)t->ne[0] % bs != 0)
        return fail(r, "%s: first dimension %lld is not a multiple of the %s block size %llu", ctx,
                    (long long)t->ne[0], quant_type_name(t->type), (unsigned long long)bs);
    uint64_t blocks = (uint64_t)t->ne[0] / bs, rows = nel / (uint64_t)t->ne[0];
    if (blocks > UINT64_MAX / ts || blocks * ts > UINT64_MAX / rows)
        return fail(r, "%s data size overflows", ctx);
    t->nbytes = blocks * ts * rows;
    return rd_u64(r, &t->offset, ctx);
}

struct extent {
    uint64_t off, end;
    int64_t i;
};

static int extent_cmp(const void *a, const void *b)
{
    const struct extent *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Checks every tensor's data lies in the file, aligned, with no overlaps,
 * and sets its data pointer. */
static bool place_tensors(struct rd *r, struct gguf *g)
{
    char nb[96], nb2[96];
    g->data_start = gguf_align_up(r->pos, g->alignment);
    if (g->n_tensors == 0)
        return true;
    struct extent *ex = alloc_array((uint64_t)g->n_tensors, sizeof *ex);
    if (!ex)
        return fail(r, "out of memory for %lld tensors", (long long)g->n_tensors);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        printable(t->name, nb, sizeof nb);
        if (t->offset % g->alignment != 0) {
            free(ex);
            return fail(r, "tensor '%s' data offset %llu is not a multiple of the alignment %u", nb,
                        (unsigned long long)t->offset, g->alignment);
        }
        if (g->data_start > r->size || t->offset > r->size - g->data_start ||
            t->nbytes > r->size - g->data_start - t->offset) {
            free(ex);
            return fail(r, "tensor '%s' data (offset %llu, %llu bytes) runs past the end of the "
                        "file (%llu bytes)",
                        nb, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                        (unsigned long long)r->size);
        }
        t->data = r->p + g->data_start + t->offset;
        ex[i] = (struct extent){t->offset, t->offset + t->nbytes, i};
    }
    qsort(ex, (size_t)g->n_tensors, sizeof *ex, extent_cmp);
    for (int64_t k = 1; k < g->n_tensors; k++) {
        if (ex[k].off < ex[k - 1].end) {
            printable(g->tensors[ex[k - 1].i].name, nb, sizeof nb);
            printable(g->tensors[ex[k].i].name, nb2, sizeof nb2);
            free(ex);
            return fail(r, "tensors '%s' and '%s' overlap in the data section", nb, nb2);
        }
    }
    free(ex);
    return true;
}

static bool parse(struct rd *r, struct gguf *g)
{
    if (r->size < 4 || memcmp(r->p, "GGUF", 4) != 0)
        return fail(r, "not a GGUF file (bad magic)");
    if (r->size < GGUF_HEADER_BYTES)
        return fail(r, "file too small for a GGUF header (%llu bytes)",
                    (unsigned long long)r->size);
    r->pos = 4;
    uint32_t version;
    uint64_t n_t, n_kv;
    rd_u32(r, &version, "version");
    if (version == 1)
        return fail(r, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (version != 2 && version != 3) {
        /* A byte-swapped 2 or 3 is a big-endian file. */
        if (version == 0x02000000u || version == 0x03000000u)
            return fail(r, "big-endian GGUF files are not supported");
        return fail(r, "unknown GGUF version %u (only versions 2 and 3)", version);
    }
    g->version = version;
    rd_u64(r, &n_t, "tensor count");
    rd_u64(r, &n_kv, "metadata count");
    /* Reject counts the remaining bytes cannot hold before allocating. */
    if (n_kv > left(r) / GGUF_MIN_KV_BYTES)
        return fail(r, "metadata count %llu is more than the file (%llu bytes) can hold",
                    (unsigned long long)n_kv, (unsigned long long)r->size);
    if (n_t > left(r) / GGUF_MIN_TENSOR_BYTES ||
        n_t * GGUF_MIN_TENSOR_BYTES > left(r) - n_kv * GGUF_MIN_KV_BYTES)
        return fail(r, "tensor count %llu is more than the file (%llu bytes) can hold",
                    (unsigned long long)n_t, (unsigned long long)r->size);
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_t;
    g->kv = alloc_array(n_kv, sizeof *g->kv);
    g->tensors = alloc_array(n_t, sizeof *g->tensors);
    g->kv_hash = hash_new(n_kv, &g->kv_mask);
    g->t_hash = hash_new(n_t, &g->t_mask);
    if (!g->kv || !g->tensors || !g->kv_hash || !g->t_hash)
        return fail(r, "out of memory for %llu keys and %llu tensors", (unsigned long long)n_kv,
                    (unsigned long long)n_t);

    for (int64_t i = 0; i < g->n_kv; i++)
        if (!parse_kv(r, g, i))
            return false;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ka = gguf_find_key(g, "general.alignment");
    if (ka >= 0) {
        const struct kv *kv = &g->kv[ka];
        if (kv->type != GGUF_TYPE_UINT32)
            return fail(r, "general.alignment has type %s (must be u32)", gguf_type_name(kv->type));
        uint32_t a = gguf_le32(r->p + kv->val_off);
        if (a == 0 || (a & (a - 1)) != 0)
            return fail(r, "general.alignment %u is not a power of two", a);
        g->alignment = a;
    }

    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!parse_tensor(r, g, i))
            return false;
    return place_tensors(r, g);
}

static struct gguf *open_image(const uint8_t *data, size_t size, const char *name, char *err,
                               size_t errlen)
{
    struct rd r = {.p = data, .size = size, .name = name, .err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = 0;
    struct gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->name = strdup(name ? name : "gguf"))) {
        free(g);
        fail(&r, "out of memory");
        return NULL;
    }
    g->base = data;
    g->size = size;
    if (!parse(&r, g)) {
        gguf_close(g);
        return NULL;
    }
    return g;
}

struct gguf *gguf_open_memory(const void *data, size_t size, const char *name, char *err,
                              size_t errlen)
{
    if (!data && size) {
        struct rd r = {.name = name, .err = err, .errlen = errlen};
        fail(&r, "no data");
        return NULL;
    }
    return open_image(data ? data : "", size, name, err, errlen);
}

struct gguf *gguf_open(const char *path, char *err, size_t errlen)
{
    struct rd r = {.name = path, .err = err, .errlen = errlen};
    /* O_NONBLOCK so a FIFO given as a model is refused below instead of
     * blocking until someone writes to it; regular files ignore the flag. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        fail(&r, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fail(&r, "cannot stat: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode) || !S_ISREG(st.st_mode)) {
        fail(&r, S_ISDIR(st.st_mode) ? "is a directory, not a GGUF file"
                                     : "is not a regular file");
        close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        fail(&r, "file is empty");
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        fail(&r, "file too large to map (%llu bytes)", (unsigned long long)st.st_size);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    /* The mapping is private and read-only. A file truncated by someone else
     * while mapped would still fault (SIGBUS); that is outside what a reader
     * can check. */
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        fail(&r, "cannot map: %s", strerror(errno));
        return NULL;
    }
    struct gguf *g = open_image(map, size, path, err, errlen);
    if (!g) {
        munmap(map, size);
        return NULL;
    }
    g->map = map;
    return g;
}

void gguf_close(struct gguf *g)
{
    if (!g)
        return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].str_off);
    free(g->kv);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    if (g->map)
        munmap(g->map, g->size);
    free(g->name);
    free(g);
}

uint32_t gguf_version(const struct gguf *g)
{
    return g->version;
}

uint64_t gguf_file_size(const struct gguf *g)
{
    return g->size;
}

const char *gguf_path(const struct gguf *g)
{
    return g->name;
}

uint32_t gguf_alignment(const struct gguf *g)
{
    return g->alignment;
}

uint64_t gguf_data_offset(const struct gguf *g)
{
    return g->data_start;
}

int64_t gguf_n_kv(const struct gguf *g)
{
    return g->n_kv;
}

int64_t gguf_find_key(const struct gguf *g, const char *key)
{
    return key ? hash_find(g->kv_hash, g->kv_mask, key, strlen(key), kv_name, g) : -1;
}

struct gguf_str gguf_kv_key(const struct gguf *g, int64_t i)
{
    if (i < 0 || i >= g->n_kv)
        return (struct gguf_str){"", 0};
    return g->kv[i].key;
}

enum gguf_type gguf_kv_type(const struct gguf *g, int64_t i)
{
    if (i < 0 || i >= g->n_kv)
        return GGUF_TYPE_COUNT;
    return g->kv[i].type;
}

static const struct kv *find_kv(const struct gguf *g, const char *key)
{
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

/* Reads a number of type T at P as an int64; false for non-integers and for
 * u64 values above INT64_MAX. */
static bool num_int(const uint8_t *p, enum gguf_type t, int64_t *out)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
        *out = p[0];
        return true;
    case GGUF_TYPE_INT8:
        *out = (int8_t)p[0];
        return true;
    case GGUF_TYPE_UINT16:
        *out = (uint16_t)(p[0] | p[1] << 8);
        return true;
    case GGUF_TYPE_INT16:
        *out = (int16_t)(uint16_t)(p[0] | p[1] << 8);
        return true;
    case GGUF_TYPE_UINT32:
        *out = gguf_le32(p);
        return true;
    case GGUF_TYPE_INT32:
        *out = (int32_t)gguf_le32(p);
        return true;
    case GGUF_TYPE_UINT64:
        if (le64(p) > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)le64(p);
        return true;
    case GGUF_TYPE_INT64:
        *out = (int64_t)le64(p);
        return true;
    default:
        return false;
    }
}

static bool num_float(const uint8_t *p, enum gguf_type t, double *out)
{
    if (t == GGUF_TYPE_FLOAT32) {
        uint32_t u = gguf_le32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        *out = f;
        return true;
    }
    if (t == GGUF_TYPE_FLOAT64) {
        uint64_t u = le64(p);
        memcpy(out, &u, sizeof *out);
        return true;
    }
    return false;
}

bool gguf_get_int(const struct gguf *g, const char *key, int64_t *out)
{
    const struct kv *kv = find_kv(g, key);
    return kv && num_int(g->base + kv->val_off, kv->type, out);
}

bool gguf_get_float(const struct gguf *g, const char *key, double *out)
{
    const struct kv *kv = find_kv(g, key);
    return kv && num_float(g->base + kv->val_off, kv->type, out);
}

bool gguf_get_bool(const struct gguf *g, const char *key, bool *out)
{
    const struct kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL)
        return false;
    *out = g->base[kv->val_off] != 0;
    return true;
}

static struct gguf_str str_at(const struct gguf *g, uint64_t off)
{
    return (struct gguf_str){(const char *)g->base + off + 8, le64(g->base + off)};
}

bool gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out)
{
    const struct kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_TYPE_STRING)
        return false;
    *out = str_at(g, kv->val_off);
    return true;
}

bool gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type *elem_type, uint64_t *n)
{
    const struct kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY)
        return false;
    if (elem_type)
        *elem_type = kv->elem_type;
    if (n)
        *n = kv->n;
    return true;
}

bool gguf_kv_arr_str(const struct gguf *g, int64_t kv, uint64_t i, struct gguf_str *out)
{
    if (kv < 0 || kv >= g->n_kv)
        return false;
    const struct kv *e = &g->kv[kv];
    if (e->type != GGUF_TYPE_ARRAY || e->elem_type != GGUF_TYPE_STRING || i >= e->n)
        return false;
    *out = str_at(g, e->str_off[i]);
    return true;
}

/* Element I of a fixed-size array, or NULL. */
static const uint8_t *arr_elem(const struct gguf *g, int64_t kv, uint64_t i, enum gguf_type *t)
{
    if (kv < 0 || kv >= g->n_kv)
        return NULL;
    const struct kv *e = &g->kv[kv];
    if (e->type != GGUF_TYPE_ARRAY || i >= e->n || gguf_type_size(e->elem_type) == 0)
        return NULL;
    *t = e->elem_type;
    return g->base + e->elems_off + i * gguf_type_size(e->elem_type);
}

bool gguf_kv_arr_int(const struct gguf *g, int64_t kv, uint64_t i, int64_t *out)
{
    enum gguf_type t;
    const uint8_t *p = arr_elem(g, kv, i, &t);
    return p && num_int(p, t, out);
}

bool gguf_kv_arr_float(const struct gguf *g, int64_t kv, uint64_t i, double *out)
{
    enum gguf_type t;
    const uint8_t *p = arr_elem(g, kv, i, &t);
    if (!p)
        return false;
    if (num_float(p, t, out))
        return true;
    /* Integer elements convert too: "an array of numbers, converted". */
    int64_t v;
    if (!num_int(p, t, &v))
        return false;
    *out = (double)v;
    return true;
}

bool gguf_get_arr_str(const struct gguf *g, const char *key, uint64_t i, struct gguf_str *out)
{
    return gguf_kv_arr_str(g, gguf_find_key(g, key), i, out);
}

bool gguf_get_arr_int(const struct gguf *g, const char *key, uint64_t i, int64_t *out)
{
    return gguf_kv_arr_int(g, gguf_find_key(g, key), i, out);
}

bool gguf_get_arr_float(const struct gguf *g, const char *key, uint64_t i, double *out)
{
    return gguf_kv_arr_float(g, gguf_find_key(g, key), i, out);
}

int64_t gguf_n_tensors(const struct gguf *g)
{
    return g->n_tensors;
}

const struct gguf_tensor *gguf_tensor(const struct gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name)
{
    if (!name)
        return NULL;
    int64_t i = hash_find(g->t_hash, g->t_mask, name, strlen(name), tensor_name, g);
    return i < 0 ? NULL : &g->tensors[i];
}

char *gguf_str_copy(struct gguf_str s, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    if (n)
        memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return buf;
}

bool gguf_str_eq(struct gguf_str s, const char *cstr)
{
    return cstr && str_eq_n(s, cstr, strlen(cstr));
}

const uint8_t *gguf_kv_value(const struct gguf *g, int64_t i, uint64_t *len)
{
    if (i < 0 || i >= g->n_kv)
        return NULL;
    *len = g->kv[i].val_len;
    return g->base + g->kv[i].val_off;
}
