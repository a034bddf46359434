/* test_gguf.c - the GGUF reader and writer: round trips of every value type
 * and several tensor types, the real models' headers, and a corpus of corrupt
 * files derived from one valid hand-built file, each of which must be refused
 * with a one-line message naming the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <unistd.h>

#include "gguf.h"
#include "testutil.h"

/* ---- a byte builder for hand-made files ---- */

struct bld {
    uint8_t *p;
    size_t n, cap;
};

static size_t b_bytes(struct bld *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    size_t at = b->n;
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
    return at;
}

static size_t b_u8(struct bld *b, uint8_t v)
{
    return b_bytes(b, &v, 1);
}

static size_t b_u32(struct bld *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return b_bytes(b, x, 4);
}

static size_t b_u64(struct bld *b, uint64_t v)
{
    size_t at = b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
    return at;
}

/* A gguf string; returns the offset of its length field. */
static size_t b_str(struct bld *b, const char *s)
{
    size_t at = b_u64(b, strlen(s));
    b_bytes(b, s, strlen(s));
    return at;
}

static void b_pad(struct bld *b, size_t align)
{
    while (b->n % align)
        b_u8(b, 0);
}

static void patch_u32(uint8_t *p, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[at + i] = (uint8_t)(v >> (8 * i));
}

static void patch_u64(uint8_t *p, size_t at, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[at + i] = (uint8_t)(v >> (8 * i));
}

/* Where the fields of the hand-built file are, for the corruption cases. */
struct layout {
    size_t n_t, n_kv;
    size_t key0_len, key0_type, arch_len;
    size_t align_type, align_val;
    size_t flag_val;
    size_t ids_key; /* length field of the "test.ids1" key */
    size_t toks_elem_type, toks_count, tok0_len;
    size_t nest_count, nest_inner_type;
    size_t t_name[3], t_ndims[3], t_dim[3][2], t_type[3], t_off[3];
    size_t data_start, data_end;
};

static const char *k_toks[] = {"a", "bb", "ccc"};
static const int32_t k_ids[] = {1, -2, 3};

static float t0_data[16];
static uint8_t t1_data[68];
static uint16_t t2_data[16];

static void fill_tensor_data(void)
{
    for (int i = 0; i < 16; i++)
        t0_data[i] = (float)i * 0.5f - 3.0f;
    for (int i = 0; i < 68; i++)
        t1_data[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < 16; i++)
        t2_data[i] = quant_f32_to_f16((float)i);
}

/* The valid file every corruption starts from: six keys (string, u32
 * alignment, bool, string array, i32 array, nested array) and three tensors
 * (F32 8x2, Q8_0 32x2, F16 16) packed with 32-byte alignment. */
static struct bld build_valid(struct layout *L)
{
    struct bld b = {0};
    fill_tensor_data();
    b_bytes(&b, "GGUF", 4);
    b_u32(&b, 3);
    L->n_t = b_u64(&b, 3);
    L->n_kv = b_u64(&b, 6);

    L->key0_len = b_str(&b, "general.architecture");
    L->key0_type = b_u32(&b, GGUF_TYPE_STRING);
    L->arch_len = b_str(&b, "llama");

    b_str(&b, "general.alignment");
    L->align_type = b_u32(&b, GGUF_TYPE_UINT32);
    L->align_val = b_u32(&b, 32);

    b_str(&b, "test.flag");
    b_u32(&b, GGUF_TYPE_BOOL);
    L->flag_val = b_u8(&b, 1);

    b_str(&b, "test.toks");
    b_u32(&b, GGUF_TYPE_ARRAY);
    L->toks_elem_type = b_u32(&b, GGUF_TYPE_STRING);
    L->toks_count = b_u64(&b, 3);
    L->tok0_len = b_str(&b, k_toks[0]);
    b_str(&b, k_toks[1]);
    b_str(&b, k_toks[2]);

    L->ids_key = b_str(&b, "test.ids1");
    b_u32(&b, GGUF_TYPE_ARRAY);
    b_u32(&b, GGUF_TYPE_INT32);
    b_u64(&b, 3);
    for (int i = 0; i < 3; i++)
        b_u32(&b, (uint32_t)k_ids[i]);

    b_str(&b, "test.nest");
    b_u32(&b, GGUF_TYPE_ARRAY);
    b_u32(&b, GGUF_TYPE_ARRAY);
    L->nest_count = b_u64(&b, 2);
    L->nest_inner_type = b_u32(&b, GGUF_TYPE_UINT8);
    b_u64(&b, 2);
    b_u8(&b, 1);
    b_u8(&b, 2);
    b_u32(&b, GGUF_TYPE_STRING);
    b_u64(&b, 1);
    b_str(&b, "x");

    static const char *names[3] = {"a.weight", "b.weight", "c.weight"};
    static const uint32_t types[3] = {GGML_TYPE_F32, GGML_TYPE_Q8_0, GGML_TYPE_F16};
    static const uint32_t ndims[3] = {2, 2, 1};
    static const uint64_t dims[3][2] = {{8, 2}, {32, 2}, {16, 1}};
    static const uint64_t offs[3] = {0, 64, 160};
    for (int t = 0; t < 3; t++) {
        L->t_name[t] = b_str(&b, names[t]);
        L->t_ndims[t] = b_u32(&b, ndims[t]);
        for (uint32_t d = 0; d < ndims[t]; d++)
            L->t_dim[t][d] = b_u64(&b, dims[t][d]);
        L->t_type[t] = b_u32(&b, types[t]);
        L->t_off[t] = b_u64(&b, offs[t]);
    }
    b_pad(&b, 32);
    L->data_start = b.n;
    b_bytes(&b, t0_data, sizeof t0_data);
    b_pad(&b, 32);
    b_bytes(&b, t1_data, sizeof t1_data);
    b_pad(&b, 32);
    b_bytes(&b, t2_data, sizeof t2_data);
    L->data_end = b.n;
    b_pad(&b, 32);
    return b;
}

/* Asserts G is NULL and ERR is a one-line message for "corrupt.gguf"
 * containing WANT (when not NULL). */
static void expect_refused(struct gguf *g, const char *err, const char *want, const char *what)
{
    if (g) {
        gguf_close(g);
        fail_msg("%s: corrupt file was accepted", what);
    }
    if (strncmp(err, "corrupt.gguf: ", 14) != 0 || strlen(err) <= 14)
        fail_msg("%s: message '%s' does not name the file", what, err);
    if (strchr(err, '\n') || strchr(err, '\r'))
        fail_msg("%s: message is not one line: '%s'", what, err);
    if (want && !strstr(err, want))
        fail_msg("%s: message '%s' does not mention '%s'", what, err, want);
}

/* ---- the hand-built file itself ---- */

static void test_valid_file(void **state)
{
    (void)state;
    struct layout L;
    struct bld b = build_valid(&L);
    char err[256];
    struct gguf *g = gguf_open_memory(b.p, b.n, "valid.gguf", err, sizeof err);
    if (!g)
        fail_msg("valid file refused: %s", err);
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), 32);
    assert_int_equal(gguf_data_offset(g), L.data_start);
    assert_int_equal(gguf_file_size(g), b.n);
    assert_string_equal(gguf_path(g), "valid.gguf");
    assert_int_equal(gguf_n_kv(g), 6);
    assert_int_equal(gguf_n_tensors(g), 3);

    struct gguf_str s;
    assert_true(gguf_get_str(g, "general.architecture", &s));
    assert_true(gguf_str_eq(s, "llama"));
    int64_t v;
    assert_true(gguf_get_int(g, "general.alignment", &v));
    assert_int_equal(v, 32);
    bool flag = false;
    assert_true(gguf_get_bool(g, "test.flag", &flag));
    assert_true(flag);

    enum gguf_type et;
    uint64_t n;
    assert_true(gguf_get_arr(g, "test.toks", &et, &n));
    assert_int_equal(et, GGUF_TYPE_STRING);
    assert_int_equal(n, 3);
    for (uint64_t i = 0; i < 3; i++) {
        assert_true(gguf_get_arr_str(g, "test.toks", i, &s));
        assert_true(gguf_str_eq(s, k_toks[i]));
    }
    assert_false(gguf_get_arr_str(g, "test.toks", 3, &s));
    assert_false(gguf_get_arr_int(g, "test.toks", 0, &v));
    for (uint64_t i = 0; i < 3; i++) {
        assert_true(gguf_get_arr_int(g, "test.ids1", i, &v));
        assert_int_equal(v, k_ids[i]);
    }
    assert_false(gguf_get_arr_str(g, "test.ids1", 0, &s));
    assert_true(gguf_get_arr(g, "test.nest", &et, &n));
    assert_int_equal(et, GGUF_TYPE_ARRAY);
    assert_int_equal(n, 2);
    assert_false(gguf_get_arr_int(g, "test.nest", 0, &v));

    const struct gguf_tensor *t = gguf_find_tensor(g, "b.weight");
    assert_non_null(t);
    assert_ptr_equal(t, gguf_tensor(g, 1));
    assert_int_equal(t->type, GGML_TYPE_Q8_0);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 32);
    assert_int_equal(t->ne[1], 2);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->ne[3], 1);
    assert_int_equal(t->offset, 64);
    assert_int_equal(t->nbytes, 68);
    assert_memory_equal(t->data, t1_data, 68);
    t = gguf_find_tensor(g, "a.weight");
    assert_memory_equal(t->data, t0_data, sizeof t0_data);
    t = gguf_find_tensor(g, "c.weight");
    assert_int_equal(t->nbytes, 32);
    assert_memory_equal(t->data, t2_data, sizeof t2_data);
    assert_null(gguf_find_tensor(g, "d.weight"));
    assert_null(gguf_find_tensor(g, "b.weigh"));
    assert_null(gguf_tensor(g, 3));
    assert_null(gguf_tensor(g, -1));
    assert_int_equal(gguf_find_key(g, "nope"), -1);
    assert_int_equal(gguf_kv_type(g, 99), GGUF_TYPE_COUNT);
    gguf_close(g);

    /* Version 2 has the same layout and is accepted. */
    patch_u32(b.p, 4, 2);
    g = gguf_open_memory(b.p, b.n, "v2.gguf", err, sizeof err);
    if (!g)
        fail_msg("v2 file refused: %s", err);
    assert_int_equal(gguf_version(g), 2);
    gguf_close(g);
    free(b.p);
}

/* The writer, given the same content, produces the hand-built bytes exactly;
 * the nested array goes through gguf_writer_copy_kv. */
static void test_writer_matches_hand_built(void **state)
{
    (void)state;
    struct layout L;
    struct bld b = build_valid(&L);
    char err[256];
    struct gguf *src = gguf_open_memory(b.p, b.n, "valid.gguf", err, sizeof err);
    assert_non_null(src);

    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "general.alignment", 32);
    gguf_writer_set_bool(w, "test.flag", true);
    gguf_writer_set_arr_str(w, "test.toks", k_toks, 3);
    gguf_writer_set_arr(w, "test.ids1", GGUF_TYPE_INT32, k_ids, 3);
    gguf_writer_copy_kv(w, src, "test.nest");
    int64_t ne0[2] = {8, 2}, ne1[2] = {32, 2}, ne2[1] = {16};
    gguf_writer_add_tensor(w, "a.weight", GGML_TYPE_F32, 2, ne0, t0_data);
    gguf_writer_add_tensor(w, "b.weight", GGML_TYPE_Q8_0, 2, ne1, t1_data);
    gguf_writer_add_tensor(w, "c.weight", GGML_TYPE_F16, 1, ne2, t2_data);
    assert_null(gguf_writer_error(w));
    size_t size = 0;
    uint8_t *mem = gguf_writer_to_memory(w, &size);
    assert_non_null(mem);
    assert_int_equal(size, b.n);
    assert_memory_equal(mem, b.p, b.n);

    /* The same bytes on disk, written through a temporary file that is gone
     * afterwards. */
    char dir[4096], path[4200];
    test_tmpdir(dir, sizeof dir, "gguf-write");
    assert_true(dir[0] != 0);
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    assert_int_equal(gguf_writer_write(w, path, err, sizeof err), 0);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *disk = malloc(size + 1);
    assert_int_equal(fread(disk, 1, size + 1, f), size);
    fclose(f);
    assert_memory_equal(disk, mem, size);
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            entries++;
    closedir(d);
    assert_int_equal(entries, 1);

    struct gguf *g = gguf_open(path, err, sizeof err);
    if (!g)
        fail_msg("written file refused: %s", err);
    assert_int_equal(gguf_n_tensors(g), 3);
    gguf_close(g);
    unlink(path);
    rmdir(dir);
    free(disk);
    free(mem);
    gguf_writer_free(w);
    gguf_close(src);
    free(b.p);
}

/* ---- round trips ---- */

static void test_roundtrip_values(void **state)
{
    (void)state;
    struct gguf_writer *w = gguf_writer_new();
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = -5000000000ll;
    double f64 = 3.141592653589793;
    uint64_t big = UINT64_MAX;
    gguf_writer_set_num(w, "v.u8", GGUF_TYPE_UINT8, &u8);
    gguf_writer_set_num(w, "v.i8", GGUF_TYPE_INT8, &i8);
    gguf_writer_set_num(w, "v.u16", GGUF_TYPE_UINT16, &u16);
    gguf_writer_set_num(w, "v.i16", GGUF_TYPE_INT16, &i16);
    gguf_writer_set_u32(w, "v.u32", 4000000000u);
    gguf_writer_set_i32(w, "v.i32", -2000000000);
    gguf_writer_set_f32(w, "v.f32", 0.25f);
    gguf_writer_set_bool(w, "v.bool", false);
    gguf_writer_set_str(w, "v.str", "h\xc3\xa9llo");
    gguf_writer_set_str(w, "v.empty", "");
    gguf_writer_set_u64(w, "v.u64", 1ull << 40);
    gguf_writer_set_u64(w, "v.u64big", big);
    gguf_writer_set_num(w, "v.i64", GGUF_TYPE_INT64, &i64);
    gguf_writer_set_num(w, "v.f64", GGUF_TYPE_FLOAT64, &f64);
    gguf_writer_set_u32(w, "v.replaced", 1);
    gguf_writer_set_str(w, "v.replaced", "second");

    /* An array of every fixed-size type. */
    static const struct {
        enum gguf_type t;
        size_t size;
    } arr_types[] = {
        {GGUF_TYPE_UINT8, 1},  {GGUF_TYPE_INT8, 1},   {GGUF_TYPE_UINT16, 2}, {GGUF_TYPE_INT16, 2},
        {GGUF_TYPE_UINT32, 4}, {GGUF_TYPE_INT32, 4},  {GGUF_TYPE_UINT64, 8}, {GGUF_TYPE_INT64, 8},
        {GGUF_TYPE_FLOAT32, 4}, {GGUF_TYPE_FLOAT64, 8}, {GGUF_TYPE_BOOL, 1},
    };
    const size_t n_arr = sizeof arr_types / sizeof arr_types[0];
    uint8_t raw[n_arr][5 * 8];
    for (size_t a = 0; a < n_arr; a++) {
        for (int i = 0; i < 5; i++) {
            uint8_t *p = raw[a] + i * arr_types[a].size;
            switch (arr_types[a].t) {
            case GGUF_TYPE_FLOAT32: {
                float f = (float)i * 1.5f;
                memcpy(p, &f, 4);
                break;
            }
            case GGUF_TYPE_FLOAT64: {
                double x = (double)i * -2.25;
                memcpy(p, &x, 8);
                break;
            }
            case GGUF_TYPE_BOOL:
                *p = (uint8_t)(i & 1);
                break;
            default: {
                int64_t x = (i - 2) * 7; /* negative values too, sign-extended */
                memcpy(p, &x, arr_types[a].size);
            }
            }
        }
        char key[32];
        snprintf(key, sizeof key, "arr.%d", (int)arr_types[a].t);
        gguf_writer_set_arr(w, key, arr_types[a].t, raw[a], 5);
    }
    const char *strs[] = {"", "one", "\xe2\x96\x81two", "<|im_end|>"};
    gguf_writer_set_arr_str(w, "arr.str", strs, 4);
    gguf_writer_set_arr_str(w, "arr.str0", strs, 0);
    assert_null(gguf_writer_error(w));

    size_t size;
    void *mem = gguf_writer_to_memory(w, &size);
    assert_non_null(mem);
    char err[256];
    struct gguf *g = gguf_open_memory(mem, size, "rt.gguf", err, sizeof err);
    if (!g)
        fail_msg("round trip refused: %s", err);
    assert_int_equal(gguf_n_tensors(g), 0);
    assert_int_equal(gguf_n_kv(g), 15 + (int64_t)n_arr + 2);

    int64_t v;
    double f;
    bool bv = true;
    struct gguf_str s;
    assert_true(gguf_get_int(g, "v.u8", &v) && v == 200);
    assert_true(gguf_get_int(g, "v.i8", &v) && v == -100);
    assert_true(gguf_get_int(g, "v.u16", &v) && v == 60000);
    assert_true(gguf_get_int(g, "v.i16", &v) && v == -30000);
    assert_true(gguf_get_int(g, "v.u32", &v) && v == 4000000000ll);
    assert_true(gguf_get_int(g, "v.i32", &v) && v == -2000000000);
    assert_true(gguf_get_int(g, "v.u64", &v) && v == (1ll << 40));
    assert_false(gguf_get_int(g, "v.u64big", &v)); /* above INT64_MAX */
    assert_true(gguf_get_int(g, "v.i64", &v) && v == i64);
    assert_true(gguf_get_float(g, "v.f32", &f) && f == 0.25);
    assert_true(gguf_get_float(g, "v.f64", &f) && f == f64);
    assert_false(gguf_get_float(g, "v.u32", &f));
    assert_false(gguf_get_int(g, "v.f32", &v));
    assert_false(gguf_get_int(g, "v.bool", &v));
    assert_true(gguf_get_bool(g, "v.bool", &bv) && !bv);
    assert_false(gguf_get_bool(g, "v.u8", &bv));
    assert_true(gguf_get_str(g, "v.str", &s) && gguf_str_eq(s, "h\xc3\xa9llo"));
    assert_true(gguf_get_str(g, "v.empty", &s) && s.len == 0);
    assert_false(gguf_get_str(g, "v.u8", &s));
    assert_true(gguf_get_str(g, "v.replaced", &s) && gguf_str_eq(s, "second"));
    assert_false(gguf_get_int(g, "missing", &v));
    int64_t ki = gguf_find_key(g, "v.f64");
    assert_true(ki >= 0);
    assert_true(gguf_str_eq(gguf_kv_key(g, ki), "v.f64"));
    assert_int_equal(gguf_kv_type(g, ki), GGUF_TYPE_FLOAT64);

    for (size_t a = 0; a < n_arr; a++) {
        char key[32];
        snprintf(key, sizeof key, "arr.%d", (int)arr_types[a].t);
        enum gguf_type et;
        uint64_t n;
        assert_true(gguf_get_arr(g, key, &et, &n));
        assert_int_equal(et, arr_types[a].t);
        assert_int_equal(n, 5);
        for (int i = 0; i < 5; i++) {
            if (arr_types[a].t == GGUF_TYPE_FLOAT32) {
                assert_true(gguf_get_arr_float(g, key, (uint64_t)i, &f));
                assert_true(f == (double)i * 1.5);
                assert_false(gguf_get_arr_int(g, key, (uint64_t)i, &v));
            } else if (arr_types[a].t == GGUF_TYPE_FLOAT64) {
                assert_true(gguf_get_arr_float(g, key, (uint64_t)i, &f));
                assert_true(f == (double)i * -2.25);
            } else if (arr_types[a].t == GGUF_TYPE_BOOL) {
                assert_false(gguf_get_arr_int(g, key, (uint64_t)i, &v));
            } else {
                int64_t want = (i - 2) * 7;
                if (arr_types[a].t == GGUF_TYPE_UINT8)
                    want = (uint8_t)want;
                else if (arr_types[a].t == GGUF_TYPE_UINT16)
                    want = (uint16_t)want;
                else if (arr_types[a].t == GGUF_TYPE_UINT32)
                    want = (uint32_t)want;
                if (arr_types[a].t == GGUF_TYPE_UINT64 && want < 0) {
                    assert_false(gguf_get_arr_int(g, key, (uint64_t)i, &v));
                    continue;
                }
                assert_true(gguf_get_arr_int(g, key, (uint64_t)i, &v));
                assert_int_equal(v, want);
                assert_true(gguf_get_arr_float(g, key, (uint64_t)i, &f));
                assert_true(f == (double)want);
            }
        }
        assert_false(gguf_get_arr_int(g, key, 5, &v));
        assert_false(gguf_get_arr_float(g, key, 5, &f));
    }
    enum gguf_type et;
    uint64_t n;
    assert_true(gguf_get_arr(g, "arr.str", &et, &n) && et == GGUF_TYPE_STRING && n == 4);
    for (uint64_t i = 0; i < 4; i++) {
        assert_true(gguf_get_arr_str(g, "arr.str", i, &s));
        assert_true(gguf_str_eq(s, strs[i]));
    }
    assert_true(gguf_get_arr(g, "arr.str0", &et, &n) && n == 0);
    assert_false(gguf_get_arr_str(g, "arr.str0", 0, &s));
    assert_false(gguf_get_arr(g, "v.u8", &et, &n));

    char small[4];
    assert_true(gguf_get_str(g, "v.replaced", &s));
    assert_string_equal(gguf_str_copy(s, small, sizeof small), "sec");
    gguf_close(g);
    free(mem);
    gguf_writer_free(w);
}

static void test_roundtrip_tensors(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        enum ggml_type type;
        uint32_t n_dims;
        int64_t ne[4];
    } ts[] = {
        {"t.f32", GGML_TYPE_F32, 1, {7}},
        {"t.f16", GGML_TYPE_F16, 2, {5, 3}},
        {"t.bf16", GGML_TYPE_BF16, 3, {3, 2, 2}},
        {"t.q4_0", GGML_TYPE_Q4_0, 2, {64, 3}},
        {"t.q4_1", GGML_TYPE_Q4_1, 2, {32, 1}},
        {"t.q8_0", GGML_TYPE_Q8_0, 4, {32, 2, 1, 2}},
        {"t.q4_k", GGML_TYPE_Q4_K, 2, {256, 2}},
        {"t.q6_k", GGML_TYPE_Q6_K, 2, {512, 1}},
        {"t.iq4_nl", GGML_TYPE_COUNT /* set below: known, unsupported */, 1, {32}},
    };
    const int n = sizeof ts / sizeof ts[0];
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "test");
    gguf_writer_set_u32(w, "general.alignment", 64);
    uint8_t *datas[16];
    size_t sizes[16];
    for (int i = 0; i < n; i++) {
        enum ggml_type t = ts[i].type == GGML_TYPE_COUNT ? (enum ggml_type)20 : ts[i].type;
        assert_true(quant_type_known(t));
        int64_t rows = 1;
        for (uint32_t d = 1; d < ts[i].n_dims; d++)
            rows *= ts[i].ne[d];
        sizes[i] = quant_row_size(t, ts[i].ne[0]) * (size_t)rows;
        datas[i] = malloc(sizes[i]);
        for (size_t k = 0; k < sizes[i]; k++)
            datas[i][k] = (uint8_t)(k * 31 + (size_t)i);
        gguf_writer_add_tensor(w, ts[i].name, t, ts[i].n_dims, ts[i].ne, datas[i]);
    }
    int64_t one[1] = {4};
    gguf_writer_add_tensor(w, "t.zeros", GGML_TYPE_F32, 1, one, NULL);
    assert_null(gguf_writer_error(w));

    size_t size;
    uint8_t *mem = gguf_writer_to_memory(w, &size);
    assert_non_null(mem);
    char err[256];
    struct gguf *g = gguf_open_memory(mem, size, "t.gguf", err, sizeof err);
    if (!g)
        fail_msg("tensor round trip refused: %s", err);
    assert_int_equal(gguf_alignment(g), 64);
    assert_int_equal(gguf_data_offset(g) % 64, 0);
    assert_int_equal(gguf_n_tensors(g), n + 1);
    for (int i = 0; i < n; i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        assert_true(gguf_str_eq(t->name, ts[i].name));
        assert_ptr_equal(gguf_find_tensor(g, ts[i].name), t);
        assert_int_equal(t->n_dims, ts[i].n_dims);
        for (uint32_t d = 0; d < 4; d++)
            assert_int_equal(t->ne[d], d < ts[i].n_dims ? ts[i].ne[d] : 1);
        assert_int_equal(t->nbytes, sizes[i]);
        assert_int_equal(t->offset % 64, 0);
        assert_ptr_equal(t->data, mem + gguf_data_offset(g) + t->offset);
        assert_memory_equal(t->data, datas[i], sizes[i]);
        free(datas[i]);
    }
    const struct gguf_tensor *z = gguf_find_tensor(g, "t.zeros");
    assert_non_null(z);
    assert_int_equal(z->nbytes, 16);
    static const uint8_t zero16[16];
    assert_memory_equal(z->data, zero16, 16);
    gguf_close(g);
    free(mem);
    gguf_writer_free(w);
}

/* Bad writer input is kept as the writer's error and fails the write. */
static void test_writer_errors(void **state)
{
    (void)state;
    int64_t ne[2] = {33, 2};
    char err[256];
    size_t size;
    struct {
        const char *want;
        int which;
    } cases[] = {
        {"block size", 0},     {"duplicate tensor", 1}, {"unknown tensor type", 2},
        {"invalid key", 3},    {"power of two", 4},     {"dimensions", 5},
        {"dimension 1", 6},    {"not 0 or 1", 7},       {"control byte", 8},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct gguf_writer *w = gguf_writer_new();
        float buf[64] = {0};
        int64_t ok[1] = {32}, zero[2] = {32, 0};
        uint8_t two = 2;
        switch (cases[c].which) {
        case 0:
            gguf_writer_add_tensor(w, "x", GGML_TYPE_Q8_0, 2, ne, buf);
            break;
        case 1:
            gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ok, buf);
            gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ok, buf);
            break;
        case 2:
            gguf_writer_add_tensor(w, "x", (enum ggml_type)4, 1, ok, buf);
            break;
        case 3:
            gguf_writer_set_u32(w, "", 1);
            break;
        case 4:
            gguf_writer_set_u32(w, "general.alignment", 24);
            break;
        case 5:
            gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 5, ok, buf);
            break;
        case 6:
            gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 2, zero, buf);
            break;
        case 7:
            gguf_writer_set_num(w, "b", GGUF_TYPE_BOOL, &two);
            break;
        case 8:
            gguf_writer_set_str(w, "bad\nkey", "v");
            break;
        }
        err[0] = 0;
        assert_int_equal(gguf_writer_write(w, "/nonexistent-dir/x.gguf", err, sizeof err), -1);
        if (!strstr(err, cases[c].want))
            fail_msg("writer case %d: '%s' lacks '%s'", cases[c].which, err, cases[c].want);
        assert_null(gguf_writer_to_memory(w, &size));
        gguf_writer_free(w);
    }
    /* A path that cannot be written. */
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "a", 1);
    assert_int_equal(gguf_writer_write(w, "/nonexistent-dir/x.gguf", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-dir/x.gguf: "));
    gguf_writer_free(w);
    gguf_writer_free(NULL);
    gguf_close(NULL);
}

/* ---- corrupt files ---- */

struct patch {
    size_t at;
    int width; /* 1, 4 or 8 */
    uint64_t value;
};

static void apply(uint8_t *p, struct patch pt)
{
    if (pt.width == 1)
        p[pt.at] = (uint8_t)pt.value;
    else if (pt.width == 4)
        patch_u32(p, pt.at, (uint32_t)pt.value);
    else if (pt.width == 8)
        patch_u64(p, pt.at, pt.value);
}

static void test_corrupt_fields(void **state)
{
    (void)state;
    struct layout L;
    struct bld b = build_valid(&L);
    const uint64_t huge = UINT64_MAX;
    struct {
        const char *what;
        struct patch p[2];
        const char *want;
    } cases[] = {
        {"magic", {{0, 4, 0x46554746}}, "bad magic"},
        {"version 1", {{4, 4, 1}}, "version 1"},
        {"version 0", {{4, 4, 0}}, "unknown GGUF version 0"},
        {"version 4", {{4, 4, 4}}, "unknown GGUF version 4"},
        {"big-endian", {{4, 4, 0x03000000}}, "big-endian"},
        {"tensor count huge", {{L.n_t, 8, huge}}, "tensor count"},
        {"tensor count 2^40", {{L.n_t, 8, 1ull << 40}}, "tensor count"},
        {"kv count huge", {{L.n_kv, 8, huge}}, "metadata count"},
        {"kv count 2^32", {{L.n_kv, 8, 1ull << 32}}, "metadata count"},
        {"kv count +1", {{L.n_kv, 8, 7}}, NULL},
        {"tensor count +1", {{L.n_t, 8, 4}}, NULL},
        {"key length huge", {{L.key0_len, 8, huge}}, "runs past the end"},
        {"key length 2^40", {{L.key0_len, 8, 1ull << 40}}, "runs past the end"},
        {"key empty", {{L.key0_len, 8, 0}}, "is empty"},
        {"key control byte", {{L.key0_len + 8, 1, '\n'}}, "control byte"},
        {"value type 13", {{L.key0_type, 4, 13}}, "value type id 13"},
        {"value type huge", {{L.key0_type, 4, 0xffffffff}}, "value type id 4294967295"},
        {"string length huge", {{L.arch_len, 8, huge}}, "runs past the end"},
        {"string length +1k", {{L.arch_len, 8, 1000}}, "runs past the end"},
        {"array elem type 99", {{L.toks_elem_type, 4, 99}}, "element type id 99"},
        {"array elem type 13", {{L.toks_elem_type, 4, 13}}, "element type id 13"},
        {"array count huge", {{L.toks_count, 8, huge}}, "array of"},
        {"array count 2^61", {{L.toks_count, 8, 1ull << 61}}, "array of"},
        {"array count 2^32", {{L.toks_count, 8, 1ull << 32}}, "array of"},
        {"array string length huge", {{L.tok0_len, 8, huge}}, "runs past the end"},
        {"nested count huge", {{L.nest_count, 8, huge}}, "array of"},
        {"nested inner type", {{L.nest_inner_type, 4, 77}}, "element type id 77"},
        {"bool 2", {{L.flag_val, 1, 2}}, "not 0 or 1"},
        {"bool 255", {{L.flag_val, 1, 255}}, "not 0 or 1"},
        {"alignment 33", {{L.align_val, 4, 33}}, "not a power of two"},
        {"alignment 0", {{L.align_val, 4, 0}}, "not a power of two"},
        {"alignment type i32", {{L.align_type, 4, GGUF_TYPE_INT32}}, "must be u32"},
        {"alignment 64", {{L.align_val, 4, 64}}, "alignment 64"},
        /* "test.ids1" becomes "test.flag" */
        {"duplicate key", {{L.ids_key + 8 + 5, 4, 0x67616c66}}, "duplicate key 'test.flag'"},
        {"n_dims 0", {{L.t_ndims[0], 4, 0}}, "0 dimensions"},
        {"n_dims 5", {{L.t_ndims[0], 4, 5}}, "5 dimensions"},
        {"n_dims huge", {{L.t_ndims[1], 4, 0xffffffff}}, "dimensions"},
        {"dim 0", {{L.t_dim[0][0], 8, 0}}, "dimension 0 is 0"},
        {"dim1 0", {{L.t_dim[1][1], 8, 0}}, "dimension 1 is 0"},
        {"dim negative", {{L.t_dim[0][0], 8, huge}}, "must be 1 to"},
        {"dims overflow", {{L.t_dim[0][0], 8, 1ull << 62}, {L.t_dim[0][1], 8, 8}}, "overflows"},
        {"dims big", {{L.t_dim[0][1], 8, 1ull << 40}}, "runs past the end"},
        {"dims size overflow", {{L.t_dim[1][0], 8, 1ull << 58}, {L.t_dim[1][1], 8, 16}}, NULL},
        {"tensor type 99", {{L.t_type[0], 4, 99}}, "unknown tensor type id 99"},
        {"tensor type 4", {{L.t_type[1], 4, 4}}, "unknown tensor type id 4"},
        {"tensor type huge", {{L.t_type[1], 4, 0x80000000u}}, "unknown tensor type id"},
        {"block multiple", {{L.t_type[0], 4, GGML_TYPE_Q8_0}}, "multiple of the Q8_0 block size"},
        {"offset misaligned", {{L.t_off[1], 8, 65}}, "not a multiple of the alignment"},
        {"offset past end", {{L.t_off[2], 8, 1 << 20}}, "runs past the end"},
        {"offset huge", {{L.t_off[2], 8, huge - 31}}, "runs past the end"},
        {"offset overlap", {{L.t_off[1], 8, 0}}, "overlap"},
        {"offset overlap tail", {{L.t_off[2], 8, 128}}, "overlap"},
        {"tensor name empty", {{L.t_name[0], 8, 0}}, "empty name"},
        {"tensor name huge", {{L.t_name[2], 8, huge}}, "runs past the end"},
        {"duplicate tensor", {{L.t_name[1] + 8, 1, 'a'}}, "duplicate tensor name 'a.weight'"},
    };
    char err[256];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t *p = malloc(b.n);
        memcpy(p, b.p, b.n);
        for (int k = 0; k < 2; k++)
            apply(p, cases[c].p[k]);
        memset(err, 0, sizeof err);
        struct gguf *g = gguf_open_memory(p, b.n, "corrupt.gguf", err, sizeof err);
        expect_refused(g, err, cases[c].want, cases[c].what);
        free(p);
    }
    free(b.p);
}

/* Every prefix of the valid file is refused. */
static void test_truncation(void **state)
{
    (void)state;
    struct layout L;
    struct bld b = build_valid(&L);
    assert_int_equal(L.data_end, b.n); /* no trailing padding: every cut loses data */
    char err[256], what[64];
    for (size_t cut = 0; cut < b.n; cut++) {
        /* An exact-size copy, so ASan or valgrind sees any read past the cut. */
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, b.p, cut);
        err[0] = 0;
        snprintf(what, sizeof what, "cut at %zu", cut);
        struct gguf *g = gguf_open_memory(p, cut, "corrupt.gguf", err, sizeof err);
        expect_refused(g, err, cut < 4 || cut >= 24 ? NULL : "too small", what);
        free(p);
    }
    free(b.p);
}

/* Random byte changes: any outcome but a crash is fine, and a refusal must
 * still be one named line. */
static void test_random_corruption(void **state)
{
    (void)state;
    struct layout L;
    struct bld b = build_valid(&L);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    char err[256];
    int refused = 0;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t *p = malloc(b.n);
        memcpy(p, b.p, b.n);
        int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % L.data_start; /* the header region */
            p[at] = (uint8_t)(rng >> 8);
        }
        err[0] = 0;
        struct gguf *g = gguf_open_memory(p, b.n, "corrupt.gguf", err, sizeof err);
        if (g) {
            /* Whatever was accepted must be internally consistent. */
            for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
                const struct gguf_tensor *t = gguf_tensor(g, i);
                assert_true((const uint8_t *)t->data >= p);
                assert_true((const uint8_t *)t->data + t->nbytes <= p + b.n);
            }
            gguf_close(g);
        } else {
            refused++;
            expect_refused(NULL, err, NULL, "random corruption");
        }
        free(p);
    }
    assert_true(refused > 1000);
    free(b.p);
}

/* Arrays nested past the limit are refused rather than recursed into. */
static void test_deep_nesting(void **state)
{
    (void)state;
    struct bld b = {0};
    b_bytes(&b, "GGUF", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 1);
    b_str(&b, "deep");
    b_u32(&b, GGUF_TYPE_ARRAY);
    for (int i = 0; i < 5000; i++) {
        b_u32(&b, GGUF_TYPE_ARRAY);
        b_u64(&b, 1);
    }
    b_u32(&b, GGUF_TYPE_UINT8);
    b_u64(&b, 0);
    char err[256];
    struct gguf *g = gguf_open_memory(b.p, b.n, "corrupt.gguf", err, sizeof err);
    expect_refused(g, err, "nested", "deep nesting");
    free(b.p);
}

/* A file without tensors needs no data section. */
static void test_no_tensors(void **state)
{
    (void)state;
    struct bld b = {0};
    b_bytes(&b, "GGUF", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 1);
    b_str(&b, "k");
    b_u32(&b, GGUF_TYPE_UINT8);
    b_u8(&b, 7);
    char err[256];
    struct gguf *g = gguf_open_memory(b.p, b.n, "small.gguf", err, sizeof err);
    if (!g)
        fail_msg("refused: %s", err);
    int64_t v;
    assert_true(gguf_get_int(g, "k", &v) && v == 7);
    gguf_close(g);
    /* The smallest file: a header and nothing else. */
    g = gguf_open_memory(b.p, 24, "empty-header.gguf", err, sizeof err);
    assert_null(g); /* it still claims one key */
    patch_u64(b.p, 16, 0);
    g = gguf_open_memory(b.p, 24, "empty-header.gguf", err, sizeof err);
    assert_non_null(g);
    assert_int_equal(gguf_n_kv(g), 0);
    gguf_close(g);
    /* Without tensors the writer adds no padding, so even the largest
     * alignment gives a small file (found by the fuzzer: 2 GiB of padding). */
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "general.alignment", 1u << 31);
    size_t size = 0;
    void *mem = gguf_writer_to_memory(w, &size);
    assert_non_null(mem);
    assert_int_equal(size, 24 + 8 + 17 + 4 + 4);
    g = gguf_open_memory(mem, size, "align.gguf", err, sizeof err);
    assert_non_null(g);
    assert_int_equal(gguf_alignment(g), 1u << 31);
    gguf_close(g);
    free(mem);
    gguf_writer_free(w);

    /* A tiny error buffer is truncated, not overrun; none at all is fine. */
    char tiny[8];
    assert_null(gguf_open_memory("GGUX", 4, "corrupt.gguf", tiny, sizeof tiny));
    assert_string_equal(tiny, "corrupt");
    assert_null(gguf_open_memory("GGUX", 4, "corrupt.gguf", NULL, 0));
    assert_null(gguf_open_memory(NULL, 0, "corrupt.gguf", err, sizeof err));
    expect_refused(NULL, err, "bad magic", "no data");
    free(b.p);
}

static void test_open_errors(void **state)
{
    (void)state;
    char dir[4096], path[4200], err[512];
    test_tmpdir(dir, sizeof dir, "gguf-open");
    assert_true(dir[0] != 0);

    snprintf(path, sizeof path, "%s/missing.gguf", dir);
    assert_null(gguf_open(path, err, sizeof err));
    assert_non_null(strstr(err, "missing.gguf: cannot open"));

    assert_null(gguf_open(dir, err, sizeof err));
    assert_non_null(strstr(err, "is a directory"));

    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    assert_null(gguf_open(path, err, sizeof err));
    assert_non_null(strstr(err, "empty.gguf: file is empty"));
    unlink(path);

    /* A FIFO must be refused at once, not block waiting for a writer. */
    snprintf(path, sizeof path, "%s/fifo.gguf", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_null(gguf_open(path, err, sizeof err));
    assert_non_null(strstr(err, "fifo.gguf: is not a regular file"));
    unlink(path);

    snprintf(path, sizeof path, "%s/short.gguf", dir);
    f = fopen(path, "wb");
    fwrite("GGUF\3\0", 1, 6, f);
    fclose(f);
    assert_null(gguf_open(path, err, sizeof err));
    assert_non_null(strstr(err, "short.gguf: file too small"));
    assert_null(strchr(err, '\n'));
    unlink(path);
    rmdir(dir);
}

/* ---- the real models ---- */

static void check_model(const char *file, const char *arch, int64_t blocks, int64_t embd,
                        uint64_t n_vocab)
{
    char path[4200], err[512], key[128];
    TEST_REQUIRE_MODEL(file, path);
    struct gguf *g = gguf_open(path, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(gguf_version(g), 3);
    struct gguf_str s;
    assert_true(gguf_get_str(g, "general.architecture", &s));
    assert_true(gguf_str_eq(s, arch));
    int64_t v;
    snprintf(key, sizeof key, "%s.block_count", arch);
    assert_true(gguf_get_int(g, key, &v));
    assert_int_equal(v, blocks);
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    assert_true(gguf_get_int(g, key, &v));
    assert_int_equal(v, embd);

    enum gguf_type et;
    uint64_t n;
    assert_true(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n));
    assert_int_equal(et, GGUF_TYPE_STRING);
    assert_int_equal(n, n_vocab);
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        assert_true(gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s));
        total += s.len;
    }
    assert_true(total > n);
    /* By key index: the same elements, and nothing past the end. */
    int64_t kt = gguf_find_key(g, "tokenizer.ggml.tokens");
    uint64_t total2 = 0;
    for (uint64_t i = 0; i < n; i++) {
        assert_true(gguf_kv_arr_str(g, kt, i, &s));
        total2 += s.len;
    }
    assert_int_equal(total2, total);
    assert_false(gguf_kv_arr_str(g, kt, n, &s));
    assert_false(gguf_kv_arr_str(g, -1, 0, &s));
    assert_false(gguf_kv_arr_int(g, kt, 0, &v));
    int64_t ktt = gguf_find_key(g, "tokenizer.ggml.token_type");
    assert_true(ktt >= 0);
    assert_true(gguf_kv_arr_int(g, ktt, n - 1, &v));
    assert_false(gguf_kv_arr_int(g, ktt, n, &v));

    const struct gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(emb);
    assert_int_equal(emb->ne[0], embd);
    assert_int_equal(emb->ne[1], (int64_t)n_vocab);
    int64_t attn_q = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        assert_true(t->offset + t->nbytes <= gguf_file_size(g) - gguf_data_offset(g));
        char name[80];
        gguf_str_copy(t->name, name, sizeof name);
        if (strstr(name, "attn_q.weight"))
            attn_q++;
    }
    assert_int_equal(attn_q, blocks);

    /* Copy the tokenizer into a synthetic model and read it back. */
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", arch);
    gguf_writer_copy_kv(w, g, "tokenizer.");
    int64_t ne[2] = {32, 2};
    gguf_writer_add_tensor(w, "token_embd.weight", GGML_TYPE_F32, 2, ne, NULL);
    size_t size;
    void *mem = gguf_writer_to_memory(w, &size);
    assert_non_null(mem);
    struct gguf *c = gguf_open_memory(mem, size, "copy.gguf", err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    uint64_t n2;
    assert_true(gguf_get_arr(c, "tokenizer.ggml.tokens", &et, &n2));
    assert_int_equal(n2, n);
    for (uint64_t i = 0; i < n; i += 97) {
        struct gguf_str a, bb;
        assert_true(gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &a));
        assert_true(gguf_get_arr_str(c, "tokenizer.ggml.tokens", i, &bb));
        assert_int_equal(a.len, bb.len);
        assert_memory_equal(a.ptr, bb.ptr, a.len);
    }
    int64_t tok_keys = 0;
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        struct gguf_str k = gguf_kv_key(g, i);
        if (k.len >= 10 && memcmp(k.ptr, "tokenizer.", 10) == 0)
            tok_keys++;
    }
    assert_int_equal(gguf_n_kv(c), tok_keys + 1);
    assert_int_equal(gguf_find_key(c, "general.alignment"), -1);
    gguf_close(c);
    free(mem);
    gguf_writer_free(w);
    gguf_close(g);
}

static void test_model_smollm2(void **state)
{
    (void)state;
    check_model(TEST_MODEL_SMOLLM2, "llama", 30, 576, 49152);
}

static void test_model_gemma3(void **state)
{
    (void)state;
    check_model(TEST_MODEL_GEMMA3, "gemma3", 18, 640, 262144);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_writer_matches_hand_built),
        cmocka_unit_test(test_roundtrip_values),
        cmocka_unit_test(test_roundtrip_tensors),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_corrupt_fields),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_random_corruption),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_no_tensors),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_model_smollm2),
        cmocka_unit_test(test_model_gemma3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
