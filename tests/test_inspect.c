/* test_inspect.c - the inspector's pure parts (tui/inspect.c), the monitor
 * log's lines (app/monitor.c), /proc parsing and the recorded GPU readings
 * (telemetry/), without a terminal or a GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gpu.h"
#include "inspect.h"
#include "monitor.h"
#include "procmem.h"

#define GIB (1024.0 * 1024 * 1024)

static void test_nice_max(void **state)
{
    (void)state;
    assert_true(insp_nice_max(37) == 50);
    assert_true(insp_nice_max(612) == 1000);
    assert_true(insp_nice_max(101) == 200);
    assert_true(insp_nice_max(100) == 100);
    assert_true(insp_nice_max(0.8) == 1);
    assert_true(fabs(insp_nice_max(0.0123) - 0.02) < 1e-12);
    assert_true(insp_nice_max(NAN) == 1);
    assert_true(insp_nice_max(0) == 1);
}

static void test_ring_wraps(void **state)
{
    (void)state;
    static struct insp_ring r;
    for (int i = 0; i < INSP_RING + 10; i++)
        insp_ring_push(&r, i);
    assert_int_equal(r.n, INSP_RING);
    assert_true(insp_ring_at(&r, 0) == INSP_RING + 9);
    assert_true(insp_ring_at(&r, INSP_RING - 1) == 10);
    assert_true(isnan(insp_ring_at(&r, INSP_RING)));
    assert_true(insp_ring_max(&r, 5) == INSP_RING + 9);
}

/* A missing reading is a gap, a zero is the lowest bar: never the same. */
static void test_graph_gaps_not_zeros(void **state)
{
    (void)state;
    static struct insp_ring r;
    insp_ring_push(&r, NAN);
    insp_ring_push(&r, 0);
    insp_ring_push(&r, 5);
    insp_ring_push(&r, 10);
    char out[64];
    size_t n = insp_graph_row(&r, 6, 10, out, sizeof out);
    /* two never-held columns, the gap, then 1/8, 4/8 and 8/8 */
    assert_string_equal(out, "   \xE2\x96\x81\xE2\x96\x84\xE2\x96\x88");
    assert_int_equal(n, 3 + 9);
    /* values above the axis are clipped to the full block */
    insp_ring_push(&r, 50);
    insp_graph_row(&r, 1, 10, out, sizeof out);
    assert_string_equal(out, "\xE2\x96\x88");
}

static double parts_sum(const struct insp_breakdown *b)
{
    double s = 0;
    for (int i = 0; i < b->n_parts; i++)
        s += b->parts[i].bytes;
    return s;
}

/* A recorded /proc/self/status of kvchat with an 8B Q4_K model mapped. */
static const char status_text[] =
    "Name:\tkvchat\nVmPeak:\t 9912344 kB\nVmRSS:\t 5342108 kB\nRssAnon:\t  811020 kB\n"
    "RssFile:\t 4530112 kB\nRssShmem:\t     976 kB\nThreads:\t17\n";
static const char meminfo_text[] = "MemTotal:       65852116 kB\nMemFree:         1213440 kB\n"
                                   "MemAvailable:   52021772 kB\n";

static void test_breakdown_cpu_adds_up(void **state)
{
    (void)state;
    static struct mon_inputs in;
    memset(&in, 0, sizeof in);
    procmem_parse_status(status_text, &in.pm);
    procmem_parse_meminfo(meminfo_text, &in.pm);
    assert_true(in.pm.rss_valid && in.pm.split_valid && in.pm.host_valid);
    assert_true(in.pm.rss == 5342108ull * 1024);
    assert_true(in.pm.rss_anon + in.pm.rss_file + in.pm.rss_shmem == in.pm.rss);
    in.mem = (struct engine_memory){.weights = 4638564352ull, .kv_cache = 512ull << 20,
                                    .scratch = 60ull << 20, .device_total = ENGINE_UNKNOWN,
                                    .device_free = ENGINE_UNKNOWN};
    struct insp_breakdown b;
    insp_breakdown_from(&in, &b);
    assert_true(b.total == (double)in.pm.rss);
    /* the parts and "other" are what the kernel reports, within 1% */
    assert_true(fabs(parts_sum(&b) + b.other - b.total) <= 0.01 * b.total);
    assert_true(b.excess == 0);
    assert_string_equal(b.parts[0].name, "weights (file-backed)");
    assert_true(b.parts[0].bytes == 4530112.0 * 1024);
    assert_true(b.other > 0); /* the program's own heap beyond the engine's buffers */
}

/* Parts that claim more than the total are shown as such, never as a
 * negative "other". */
static void test_breakdown_excess(void **state)
{
    (void)state;
    struct insp_breakdown b = {.total = 100, .n_parts = 3};
    b.parts[0].bytes = 70;
    b.parts[1].bytes = NAN; /* unknown: left out, not counted as 0 */
    b.parts[2].bytes = 50;
    insp_breakdown_finish(&b);
    assert_int_equal(b.n_parts, 2);
    assert_true(b.other == 0);
    assert_true(b.excess == 20);
}

static char trace_path[4096];

static void test_breakdown_gpu_trace_adds_up(void **state)
{
    (void)state;
    setenv(GPU_TRACE_ENV, trace_path, 1);
    assert_true(gpu_mon_recorded());
    struct gpu_mon *g = gpu_mon_new(0);
    assert_non_null(g);
    assert_true(gpu_mon_ok(g));
    assert_string_equal(gpu_mon_vendor(g), "trace");
    assert_non_null(strstr(gpu_mon_note(g), "H200"));
    assert_true(gpu_mon_bandwidth(g) == 4.8e12);
    static struct mon_inputs in;
    memset(&in, 0, sizeof in);
    in.gpu = true;
    gpu_mon_sample(g, &in.gs); /* the first reading: t = 0 */
    assert_true(in.gs.mem_valid && in.gs.procs_valid && in.gs.power_valid);
    assert_int_equal(in.gs.n_procs, 1);
    assert_true(in.gs.procs[0].self);
    /* Llama-3.1-8B f16 on the device: 15 GiB of weights, 4 GiB of KV, 512 MiB scratch */
    in.mem = (struct engine_memory){.weights = 15ull << 30, .kv_cache = 4ull << 30,
                                    .scratch = 512ull << 20, .on_gpu = true};
    struct insp_breakdown b;
    insp_breakdown_from(&in, &b);
    assert_true(b.total == (double)in.gs.mem_used);
    assert_true(b.capacity > 140 * GIB);
    assert_true(fabs(parts_sum(&b) + b.other - b.total) <= 0.01 * b.total);
    assert_string_equal(b.parts[3].name, "CUDA context, cuBLAS");
    double ctx = b.parts[3].bytes;
    assert_true(ctx > 1.5 * GIB && ctx < 2.5 * GIB); /* 21.6 GiB held - 19.5 GiB of buffers */
    gpu_mon_free(g);
    unsetenv(GPU_TRACE_ENV);
}

static void test_trace_missing_file(void **state)
{
    (void)state;
    setenv(GPU_TRACE_ENV, "/nonexistent/trace.jsonl", 1);
    struct gpu_mon *g = gpu_mon_new(0);
    assert_non_null(g);
    assert_false(gpu_mon_ok(g) && strcmp(gpu_mon_vendor(g), "trace") == 0);
    struct gpu_sample s;
    gpu_mon_sample(g, &s);
    gpu_mon_free(g);
    unsetenv(GPU_TRACE_ENV);
}

static void test_headroom(void **state)
{
    (void)state;
    static struct mon_inputs in;
    memset(&in, 0, sizeof in);
    struct engine_memory_map *m = &in.map;
    m->known = true;
    m->n_layer = 32;
    m->n_ctx = 8192;
    m->kv_pos_elems = 2 * 8 * 128;      /* 8 KV heads of 128 */
    m->kv_pos_bytes = m->kv_pos_elems * 2; /* f16 */
    in.mem = (struct engine_memory){.device_free = 1ull << 30, .device_total = 8ull << 30};
    struct insp_headroom h;
    insp_headroom_from(&in, &h);
    assert_true(h.per_token == 128 * 1024);
    assert_true(h.more_tokens == 8192); /* 1 GiB / 128 KiB */
    assert_int_equal(h.n_alt, 3);
    /* f32: (1 GiB + the 1 GiB cache now) / 256 KiB = 8192 = the context now */
    assert_string_equal(h.alt[0].type, "f32");
    assert_true(h.alt[0].max_ctx == 8192 && h.alt[0].delta == 0);
    assert_true(h.alt[1].max_ctx == 16384 && h.alt[1].delta == 8192);
    /* q8_0 at 34/32 bytes an element */
    assert_true(h.alt[2].max_ctx == floor(2.0 * GIB / (2048 * 32 * 34.0 / 32)));
    assert_true(isnan(insp_kv_elem_bytes("q4")));
}

/* The KV cache per layer: one cell each, its used bytes over its reserve,
 * a blank for a layer with nothing cached, the sliding layers flagged, and
 * no more cells than asked for. */
static void test_kv_layer_row(void **state)
{
    (void)state;
    static struct engine_memory_map m;
    memset(&m, 0, sizeof m);
    m.n_layer = 5;
    const uint64_t used[5] = {0, 1, 8, 4, 8};
    for (int i = 0; i < 5; i++) {
        m.layers[i].reserved = 8;
        m.layers[i].used = used[i];
        m.layers[i].swa = i % 2 == 1;
    }
    char row[64];
    bool swa[ENGINE_MAP_LAYERS];
    assert_int_equal(insp_kv_layer_row(&m, 80, row, sizeof row, swa), 5);
    assert_string_equal(row, " \u2581\u2588\u2584\u2588");
    assert_false(swa[0]);
    assert_true(swa[1]);
    assert_true(swa[3]);
    assert_false(swa[4]);
    assert_int_equal(insp_kv_layer_row(&m, 3, row, sizeof row, swa), 3);
    assert_string_equal(row, " \u2581\u2588");
    /* a buffer too small for every cell stops at a whole one */
    assert_int_equal(insp_kv_layer_row(&m, 80, row, 6, swa), 2);
    assert_string_equal(row, " \u2581");
}

static void test_place(void **state)
{
    (void)state;
    struct rect chat, insp;
    insp_place((struct rect){.y = 1, .x = 0, .h = 20, .w = 120}, &chat, &insp);
    assert_int_equal(chat.w + insp.w, 120);
    assert_int_equal(insp.x, chat.w);
    assert_true(insp.w >= INSP_MIN_COLS);
    insp_place((struct rect){.y = 1, .x = 0, .h = 20, .w = 80}, &chat, &insp);
    assert_int_equal(chat.w, 0);
    assert_int_equal(insp.w, 80);
}

static void test_log_round_trip(void **state)
{
    (void)state;
    assert_int_equal(mon_format_for("/tmp/a.csv"), MON_CSV);
    assert_int_equal(mon_format_for("a.jsonl"), MON_JSONL);
    assert_int_equal(mon_format_for("a.txt"), -1);
    assert_int_equal(mon_format_for("dir.csv/a"), -1);
    struct mon_reading r;
    for (int i = 0; i < MON_N_FIELDS; i++)
        *mon_field_ptr(&r, i) = NAN;
    r.time = 1700000000.125;
    r.mem_used = 23729694310;
    r.decode_tok_s = 41.5;
    r.power_w = 612.25;
    for (int f = MON_CSV; f <= MON_JSONL; f++) {
        char line[2048], hdr[512];
        mon_header((enum mon_format)f, hdr, sizeof hdr);
        struct mon_reading back;
        assert_false(hdr[0] && mon_parse_line((enum mon_format)f, hdr, &back));
        mon_format_line((enum mon_format)f, &r, line, sizeof line);
        assert_true(line[strlen(line) - 1] == '\n');
        assert_true(mon_parse_line((enum mon_format)f, line, &back));
        for (int i = 0; i < MON_N_FIELDS; i++) {
            double a = mon_field(&r, i), b = mon_field(&back, i);
            assert_true(isnan(a) ? isnan(b) : fabs(a - b) < 1e-3);
        }
        if (f == MON_JSONL)
            assert_non_null(strstr(line, "\"gpu_util\":null"));
    }
}

int main(int argc, char **argv)
{
    snprintf(trace_path, sizeof trace_path, "%s/gpu/h200-llama8b.jsonl",
             argc > 1 ? argv[1] : KV_TEST_DATA);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nice_max),
        cmocka_unit_test(test_ring_wraps),
        cmocka_unit_test(test_graph_gaps_not_zeros),
        cmocka_unit_test(test_breakdown_cpu_adds_up),
        cmocka_unit_test(test_breakdown_excess),
        cmocka_unit_test(test_breakdown_gpu_trace_adds_up),
        cmocka_unit_test(test_trace_missing_file),
        cmocka_unit_test(test_headroom),
        cmocka_unit_test(test_kv_layer_row),
        cmocka_unit_test(test_place),
        cmocka_unit_test(test_log_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
