/* gguf_write.c - the GGUF writer: metadata and tensors collected in memory,
 * then serialised as a version 3 file (to a path, renamed into place, or to a
 * buffer).
 *
 * Tests and the synthetic-model tools write through it, and the fuzz target
 * round-trips what the reader accepted. Setters return nothing, so a file is
 * a plain sequence of calls; the first invalid argument is kept and makes the
 * write fail. Everything written is something gguf.c reads back.
 */
#include "gguf_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct wkv {
    char *key;           /* owned */
    enum gguf_type type;
    uint8_t *val;        /* owned: the value exactly as stored in the file */
    size_t len;          /* bytes of VAL */
};

struct wtensor {
    char *name; /* owned */
    enum ggml_type type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint8_t *data;   /* owned */
    uint64_t nbytes;
};

struct gguf_writer {
    struct wkv *kv; /* owned, n_kv of cap_kv */
    size_t n_kv, cap_kv;
    struct wtensor *t; /* owned, n_t of cap_t */
    size_t n_t, cap_t;
    /* The first error from a setter. Setters return nothing (building a file
     * is a sequence of calls), so the error is kept and reported by write. */
    char err[256];
};

static void wfail(struct gguf_writer *w, const char *fmt, ...)
{
    if (w->err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    for (char *p = w->err; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
}

struct gguf_writer *gguf_writer_new(void)
{
    return calloc(1, sizeof(struct gguf_writer));
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

const char *gguf_writer_error(const struct gguf_writer *w)
{
    return w->err[0] ? w->err : NULL;
}

/* Grows *P (of *CAP elements of ELEM bytes) to hold one more than N. */
static bool grow(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 16;
    if (nc > SIZE_MAX / elem)
        return false;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return false;
    *p = q;
    *cap = nc;
    return true;
}

/* Sets KEY to a value of TYPE stored as LEN bytes VAL; takes ownership of VAL. */
static void set_owned(struct gguf_writer *w, const char *key, enum gguf_type type, uint8_t *val,
                      size_t len)
{
    if (!val) {
        wfail(w, "out of memory setting key '%s'", key ? key : "(null)");
        return;
    }
    if (!key || !*key || strlen(key) > GGUF_MAX_KEY_LEN) {
        wfail(w, "invalid key '%s' (must be 1 to %d bytes)", key ? key : "(null)",
              GGUF_MAX_KEY_LEN);
        free(val);
        return;
    }
    /* The reader refuses control bytes in keys, so the writer must too. */
    for (const char *c = key; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            wfail(w, "invalid key (contains control byte 0x%02x)", (unsigned char)*c);
            free(val);
            return;
        }
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].len = len;
            return;
        }
    }
    char *k = strdup(key);
    if (!k || !grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof *w->kv)) {
        wfail(w, "out of memory setting key '%s'", key);
        free(k);
        free(val);
        return;
    }
    w->kv[w->n_kv++] = (struct wkv){k, type, val, len};
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void set_fixed(struct gguf_writer *w, const char *key, enum gguf_type type, uint64_t bits)
{
    size_t n = (size_t)gguf_type_size(type);
    uint8_t *v = malloc(n);
    if (v)
        for (size_t i = 0; i < n; i++)
            v[i] = (uint8_t)(bits >> (8 * i));
    set_owned(w, key, type, v, n);
}

void gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    set_fixed(w, key, GGUF_TYPE_UINT32, v);
}

void gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    set_fixed(w, key, GGUF_TYPE_INT32, (uint32_t)v);
}

void gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    set_fixed(w, key, GGUF_TYPE_UINT64, v);
}

void gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    set_fixed(w, key, GGUF_TYPE_FLOAT32, u);
}

void gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
    set_fixed(w, key, GGUF_TYPE_BOOL, v ? 1 : 0);
}

void gguf_writer_set_num(struct gguf_writer *w, const char *key, enum gguf_type type,
                         const void *v)
{
    size_t n = (size_t)gguf_type_size(type);
    if (n == 0 || !v) {
        wfail(w, "key '%s': set_num needs a fixed-size type, not %s", key ? key : "(null)",
              gguf_type_name(type));
        return;
    }
    if (type == GGUF_TYPE_BOOL && *(const uint8_t *)v > 1) {
        wfail(w, "key '%s': bool value %u is not 0 or 1", key ? key : "(null)",
              *(const uint8_t *)v);
        return;
    }
    uint8_t *val = malloc(n);
    if (val)
        memcpy(val, v, n); /* host order is little-endian on every target we build for */
    set_owned(w, key, type, val, n);
}

void gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
    if (!v) {
        wfail(w, "key '%s': NULL string", key ? key : "(null)");
        return;
    }
    size_t n = strlen(v);
    uint8_t *val = n <= SIZE_MAX - 8 ? malloc(8 + n) : NULL;
    if (val) {
        put64(val, n);
        memcpy(val + 8, v, n);
    }
    set_owned(w, key, GGUF_TYPE_STRING, val, 8 + n);
}

void gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem_type,
                         const void *data, uint64_t n)
{
    uint64_t esz = gguf_type_size(elem_type);
    if (esz == 0 || (n && !data)) {
        wfail(w, "key '%s': set_arr needs a fixed-size element type, not %s",
              key ? key : "(null)", gguf_type_name(elem_type));
        return;
    }
    if (n > (SIZE_MAX - 12) / esz) {
        wfail(w, "key '%s': array of %llu elements is too large", key ? key : "(null)",
              (unsigned long long)n);
        return;
    }
    if (elem_type == GGUF_TYPE_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1) {
                wfail(w, "key '%s': bool element %llu is not 0 or 1", key ? key : "(null)",
                      (unsigned long long)i);
                return;
            }
    size_t len = 12 + (size_t)(n * esz);
    uint8_t *val = malloc(len);
    if (val) {
        put32(val, elem_type);
        put64(val + 4, n);
        if (n)
            memcpy(val + 12, data, (size_t)(n * esz));
    }
    set_owned(w, key, GGUF_TYPE_ARRAY, val, len);
}

void gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs,
                             uint64_t n)
{
    size_t len = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            wfail(w, "key '%s': string %llu is NULL", key ? key : "(null)",
                  (unsigned long long)i);
            return;
        }
        len += 8 + strlen(strs[i]);
    }
    uint8_t *val = malloc(len);
    if (val) {
        put32(val, GGUF_TYPE_STRING);
        put64(val + 4, n);
        size_t o = 12;
        for (uint64_t i = 0; i < n; i++) {
            size_t sl = strlen(strs[i]);
            put64(val + o, sl);
            memcpy(val + o + 8, strs[i], sl);
            o += 8 + sl;
        }
    }
    set_owned(w, key, GGUF_TYPE_ARRAY, val, len);
}

void gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf *src, const char *prefix)
{
    size_t pl = prefix ? strlen(prefix) : 0;
    for (int64_t i = 0; i < gguf_n_kv(src); i++) {
        struct gguf_str name = gguf_kv_key(src, i);
        if (name.len < pl || (pl && memcmp(name.ptr, prefix, pl) != 0))
            continue;
        /* The value bytes were validated at open, so they are copied as they
         * are; that carries nested arrays and string tables unchanged. */
        uint64_t val_len;
        const uint8_t *src_val = gguf_kv_value(src, i, &val_len);
        char *key = malloc((size_t)name.len + 1);
        uint8_t *val = malloc(val_len ? (size_t)val_len : 1);
        if (!key || !val) {
            free(key);
            free(val);
            wfail(w, "out of memory copying metadata");
            return;
        }
        gguf_str_copy(name, key, (size_t)name.len + 1);
        memcpy(val, src_val, (size_t)val_len);
        set_owned(w, key, gguf_kv_type(src, i), val, (size_t)val_len);
        free(key);
    }
}

void gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
                            uint32_t n_dims, const int64_t *ne, const void *data)
{
    if (!name || !*name || strlen(name) > GGUF_MAX_NAME_LEN) {
        wfail(w, "tensor name '%s' must be 1 to %d bytes", name ? name : "(null)",
              GGUF_MAX_NAME_LEN);
        return;
    }
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) {
            wfail(w, "duplicate tensor name '%s'", name);
            return;
        }
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne) {
        wfail(w, "tensor '%s' has %u dimensions (1 to %d allowed)", name, n_dims, GGUF_MAX_DIMS);
        return;
    }
    if ((unsigned)type >= GGML_TYPE_COUNT || !quant_type_known(type)) {
        wfail(w, "tensor '%s' has unknown tensor type id %d", name, (int)type);
        return;
    }
    struct wtensor t = {.type = type, .n_dims = n_dims};
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 1 || nel > (uint64_t)INT64_MAX / (uint64_t)t.ne[d]) {
            wfail(w, "tensor '%s' dimension %u is %lld (or the element count overflows)", name,
                  d, (long long)t.ne[d]);
            return;
        }
        nel *= (uint64_t)t.ne[d];
    }
    uint64_t bs = (uint64_t)quant_block_size(type), ts = quant_type_size(type);
    if ((uint64_t)t.ne[0] % bs != 0) {
        wfail(w, "tensor '%s': first dimension %lld is not a multiple of the %s block size %llu",
              name, (long long)t.ne[0], quant_type_name(type), (unsigned long long)bs);
        return;
    }
    uint64_t blocks = (uint64_t)t.ne[0] / bs, rows = nel / (uint64_t)t.ne[0];
    if (blocks > UINT64_MAX / ts || blocks * ts > SIZE_MAX / rows) {
        wfail(w, "tensor '%s' is too large", name);
        return;
    }
    t.nbytes = blocks * ts * rows;
    t.name = strdup(name);
    /* NULL data gives a zero-filled tensor (synthetic models fill later). */
    t.data = data ? malloc((size_t)t.nbytes) : calloc(1, (size_t)t.nbytes);
    if (!t.name || !t.data || !grow((void **)&w->t, &w->cap_t, w->n_t, sizeof *w->t)) {
        free(t.name);
        free(t.data);
        wfail(w, "out of memory adding tensor '%s'", name);
        return;
    }
    if (data)
        memcpy(t.data, data, (size_t)t.nbytes);
    w->t[w->n_t++] = t;
}

/* The alignment the writer will use: general.alignment when set, else 32. */
static uint32_t writer_alignment(struct gguf_writer *w)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") != 0)
            continue;
        uint32_t a = w->kv[i].type == GGUF_TYPE_UINT32 ? gguf_le32(w->kv[i].val) : 0;
        if (a == 0 || (a & (a - 1)) != 0) {
            wfail(w, "general.alignment must be a u32 power of two");
            return 0;
        }
        return a;
    }
    return GGUF_DEFAULT_ALIGNMENT;
}

/* Builds the header, metadata and tensor infos (without the padding that
 * follows them) into a malloc'd buffer of *HLEN bytes; sets *DATA_START (where
 * the data section begins) and *TOTAL (whole file). With no tensors there is
 * no data section and no padding, so a large general.alignment costs nothing. */
static uint8_t *writer_header(struct gguf_writer *w, size_t *hlen, uint64_t *data_start,
                              uint64_t *total, uint32_t *align)
{
    if (w->err[0])
        return NULL;
    uint32_t a = writer_alignment(w);
    if (!a)
        return NULL;
    uint64_t n = GGUF_HEADER_BYTES;
    for (size_t i = 0; i < w->n_kv; i++)
        n += 8 + strlen(w->kv[i].key) + 4 + w->kv[i].len;
    for (size_t i = 0; i < w->n_t; i++)
        n += 8 + strlen(w->t[i].name) + 4 + 8 * (uint64_t)w->t[i].n_dims + 4 + 8;
    uint64_t start = w->n_t ? gguf_align_up(n, a) : n, end = start;
    for (size_t i = 0; i < w->n_t; i++) {
        uint64_t sz = gguf_align_up(w->t[i].nbytes, a);
        if (sz < w->t[i].nbytes || sz > UINT64_MAX - end) {
            wfail(w, "file too large");
            return NULL;
        }
        end += sz;
    }
    if (n > SIZE_MAX) {
        wfail(w, "header too large");
        return NULL;
    }
    uint8_t *b = malloc((size_t)n);
    if (!b) {
        wfail(w, "out of memory building the header");
        return NULL;
    }
    uint8_t *p = b;
    memcpy(p, "GGUF", 4);
    put32(p + 4, 3);
    put64(p + 8, w->n_t);
    put64(p + 16, w->n_kv);
    p += GGUF_HEADER_BYTES;
    for (size_t i = 0; i < w->n_kv; i++) {
        size_t kl = strlen(w->kv[i].key);
        put64(p, kl);
        memcpy(p + 8, w->kv[i].key, kl);
        p += 8 + kl;
        put32(p, w->kv[i].type);
        memcpy(p + 4, w->kv[i].val, w->kv[i].len);
        p += 4 + w->kv[i].len;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        put64(p, nl);
        memcpy(p + 8, t->name, nl);
        p += 8 + nl;
        put32(p, t->n_dims);
        p += 4;
        for (uint32_t d = 0; d < t->n_dims; d++, p += 8)
            put64(p, (uint64_t)t->ne[d]);
        put32(p, t->type);
        put64(p + 4, off);
        p += 12;
        off += gguf_align_up(t->nbytes, a);
    }
    *hlen = (size_t)n;
    *data_start = start;
    *total = end;
    *align = a;
    return b;
}

void *gguf_writer_to_memory(struct gguf_writer *w, size_t *size)
{
    size_t hlen;
    uint64_t start, total;
    uint32_t a;
    uint8_t *h = writer_header(w, &hlen, &start, &total, &a);
    if (!h)
        return NULL;
    uint8_t *b = total <= SIZE_MAX ? calloc(1, (size_t)total) : NULL;
    if (!b) {
        free(h);
        wfail(w, "out of memory for a %llu-byte file", (unsigned long long)total);
        return NULL;
    }
    memcpy(b, h, hlen);
    free(h);
    uint64_t off = start;
    for (size_t i = 0; i < w->n_t; i++) {
        memcpy(b + off, w->t[i].data, (size_t)w->t[i].nbytes);
        off += gguf_align_up(w->t[i].nbytes, a);
    }
    *size = (size_t)total;
    return b;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_zeros(int fd, uint64_t n)
{
    static const uint8_t zeros[4096];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (write_all(fd, zeros, k) != 0)
            return -1;
        n -= k;
    }
    return 0;
}

/* Formats "<path>: <message>" into ERR, the way the reader names a file. */
static void write_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void write_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gguf_vseterr(err, errlen, path, fmt, ap);
    va_end(ap);
}

int gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t errlen)
{
    size_t hlen;
    uint64_t start, total;
    uint32_t a;
    uint8_t *h = writer_header(w, &hlen, &start, &total, &a);
    if (!h) {
        write_fail(err, errlen, path, "%s", w->err);
        return -1;
    }
    /* Written to a temporary name beside PATH and renamed over it, so a
     * reader never sees a half-written model. */
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) {
        free(h);
        write_fail(err, errlen, path, "out of memory");
        return -1;
    }
    snprintf(tmp, pl + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        write_fail(err, errlen, path, "cannot create a temporary file: %s", strerror(errno));
        free(tmp);
        free(h);
        return -1;
    }
    int rc = write_all(fd, h, hlen);
    free(h);
    if (rc == 0)
        rc = write_zeros(fd, start - hlen);
    for (size_t i = 0; rc == 0 && i < w->n_t; i++) {
        rc = write_all(fd, w->t[i].data, (size_t)w->t[i].nbytes);
        if (rc == 0)
            rc = write_zeros(fd, gguf_align_up(w->t[i].nbytes, a) - w->t[i].nbytes);
    }
    if (rc == 0)
        rc = fchmod(fd, 0644);
    if (rc == 0)
        rc = fsync(fd);
    int e = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0) {
        unlink(tmp);
        write_fail(err, errlen, path, "cannot write: %s", strerror(e));
    }
    free(tmp);
    return rc;
}

