/* fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Opens the input with gguf_open_memory and, when it is accepted, reads every
 * key, every array element and every tensor's data, so a reader that accepted
 * something it should not have shows up as an out-of-bounds read under ASan.
 * Refusals must be a non-empty single line.
 *
 * Build and run: CC=clang cmake -S . -B build-fuzz -DKVCHAT_FUZZ=ON
 *   -DKVCHAT_CUDA=OFF -DKVCHAT_ENGINE_ONLY=ON && cmake --build build-fuzz
 *   --target fuzz_gguf && mkdir -p /tmp/gguf-corpus &&
 *   ./build-fuzz/tests/fuzz/fuzz_gguf -max_total_time=60 -malloc_limit_mb=16
 *   /tmp/gguf-corpus tests/fuzz/corpus/gguf
 * The 16 MiB malloc limit is far above what any input under 64 KiB needs, so
 * it catches allocations that are not bounded by the input size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

/* Touches every byte of S so ASan checks the whole extent. */
static unsigned sum_bytes(const void *p, uint64_t n)
{
    const volatile uint8_t *b = p;
    unsigned s = 0;
    for (uint64_t i = 0; i < n; i++)
        s += b[i];
    return s;
}

/* Keeps the reads above from being optimised away. */
static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so any read past the input is caught. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    char err[256];
    err[0] = 0;
    struct gguf *g = gguf_open_memory(copy, size, "fuzz.gguf", err, sizeof err);
    if (!g) {
        if (strncmp(err, "fuzz.gguf: ", 11) != 0 || strlen(err) <= 11 || strchr(err, '\n'))
            abort();
        free(copy);
        return 0;
    }
    unsigned acc = gguf_version(g) + gguf_alignment(g);
    char key[256];
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        struct gguf_str k = gguf_kv_key(g, i);
        acc += sum_bytes(k.ptr, k.len);
        gguf_str_copy(k, key, sizeof key);
        if (k.len >= sizeof key || memchr(k.ptr, 0, k.len))
            continue; /* not addressable by a C-string name */
        if (gguf_find_key(g, key) != i)
            abort(); /* keys are unique, so lookup finds this one */
        int64_t v;
        double f;
        bool b;
        struct gguf_str s;
        enum gguf_type et;
        uint64_t n;
        acc += gguf_get_int(g, key, &v) ? (unsigned)v : 0;
        acc += gguf_get_float(g, key, &f) ? (unsigned)(f == f) : 0;
        acc += gguf_get_bool(g, key, &b) ? b : 0;
        if (gguf_get_str(g, key, &s))
            acc += sum_bytes(s.ptr, s.len);
        if (gguf_get_arr(g, key, &et, &n)) {
            for (uint64_t j = 0; j < n; j++) {
                if (et == GGUF_TYPE_STRING) {
                    if (!gguf_get_arr_str(g, key, j, &s))
                        abort();
                    acc += sum_bytes(s.ptr, s.len);
                } else {
                    acc += gguf_get_arr_int(g, key, j, &v) ? (unsigned)v : 0;
                    acc += gguf_get_arr_float(g, key, j, &f) ? (unsigned)(f == f) : 0;
                }
            }
            if (gguf_get_arr_str(g, key, n, &s) || gguf_get_arr_int(g, key, n, &v))
                abort(); /* one past the end */
        }
    }
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        acc += sum_bytes(t->name.ptr, t->name.len) + sum_bytes(t->data, t->nbytes);
        if ((const uint8_t *)t->data < copy || t->nbytes > size ||
            (const uint8_t *)t->data - copy > (ptrdiff_t)(size - t->nbytes))
            abort();
    }
    /* Round trip the metadata through the writer: what was accepted must be
     * written back as a file that is accepted again. */
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_copy_kv(w, g, "");
    size_t out_size = 0;
    void *out = gguf_writer_to_memory(w, &out_size);
    if (out) {
        struct gguf *g2 = gguf_open_memory(out, out_size, "fuzz-copy.gguf", err, sizeof err);
        /* general.alignment is copied too, so the copy is valid exactly when
         * the writer took it. */
        if (!g2 || gguf_n_kv(g2) != gguf_n_kv(g))
            abort();
        gguf_close(g2);
        free(out);
    }
    gguf_writer_free(w);
    gguf_close(g);
    free(copy);
    sink = acc;
    return 0;
}
