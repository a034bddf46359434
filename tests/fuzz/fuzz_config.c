/* fuzz_config.c - libFuzzer target for the config file parser (tui/config.c).
 *
 * Parses the input with config_parse over zeroed options and checks the
 * contract of config.h: a refusal is one line "fuzz.conf:LINE: ..." with LINE
 * in range, and whatever was applied (before the bad line, or everything) is
 * in range and NUL-terminated inside its field. The input is copied to an
 * exact-size buffer so a read past its end is caught by ASan.
 *
 * Build and run (from the repository root):
 *   CC=clang cmake -S . -B build-fuzz -DKVCHAT_FUZZ=ON -DKVCHAT_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_config -j2
 *   mkdir -p /tmp/config-corpus && ./build-fuzz/tests/fuzz/fuzz_config
 *     -max_total_time=60 -max_len=20000 -artifact_prefix=/tmp/
 *     /tmp/config-corpus tests/fuzz/corpus/config
 * -max_len above 8447 lets it reach the "line too long" limit.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define TERMINATED(field) (memchr((field), 0, sizeof(field)) != NULL)

/* A refusal is "fuzz.conf:N: what" on one line, N in 1..lines of the input. */
static void check_error(const char *err, const uint8_t *data, size_t size)
{
    if (strncmp(err, "fuzz.conf:", 10) != 0 || strchr(err, '\n'))
        abort();
    char *end;
    long line = strtol(err + 10, &end, 10);
    size_t lines = 1;
    for (size_t i = 0; i + 1 < size; i++)
        lines += data[i] == '\n';
    if (line < 1 || (size_t)line > lines || strncmp(end, ": ", 2) != 0 || !end[2])
        abort();
}

static void check_options(const struct kv_options *o)
{
    const struct engine_sampling *sp = &o->sampling;
    if (!TERMINATED(o->model) || !TERMINATED(o->db) || !TERMINATED(o->chat_template) ||
        !TERMINATED(o->system) || !TERMINATED(o->theme))
        abort();
    if (o->backend != ENGINE_BACKEND_AUTO && o->backend != ENGINE_BACKEND_CPU &&
        o->backend != ENGINE_BACKEND_CUDA)
        abort();
    if (o->ctx_size < 0 || o->ctx_size > (1 << 24) || o->threads < 0 || o->threads > 1024 ||
        o->max_tokens < 0 || o->max_tokens > (1 << 24))
        abort();
    if (!(sp->temperature >= 0 && sp->temperature <= 100) || !(sp->top_p >= 0 && sp->top_p <= 1) ||
        !(sp->min_p >= 0 && sp->min_p <= 1) || !(sp->repeat_penalty >= 0 && sp->repeat_penalty <= 10) ||
        sp->top_k < 0 || sp->top_k > (1 << 24) || sp->repeat_last_n < 0 || sp->repeat_last_n > (1 << 20))
        abort();
    if (!(o->mem_bandwidth_gbs >= 0 && o->mem_bandwidth_gbs <= 1e6))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int env_set;
    if (!env_set) { /* "~/" expansion reads HOME: make it deterministic */
        setenv("HOME", "/home/fuzz", 1);
        env_set = 1;
    }
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    struct kv_options *o = calloc(1, sizeof *o); /* on the heap: ASan sees overruns */
    char err[256];
    err[0] = 0;
    int rc = config_parse(copy, size, "fuzz.conf", o, err, sizeof err);
    if (rc != 0 && rc != -1)
        abort();
    if (rc)
        check_error(err, data, size);
    check_options(o);
    free(o);
    free(copy);
    return 0;
}
