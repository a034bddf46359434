/* test_tui.c - the chat screen's pure parts without a terminal: pane layout,
 * wrapping of wide and combining characters, streaming Markdown, number and
 * meter formatting, the memory bar, the meters pane's values, the memory
 * bandwidth probe, themes, the config file, slash commands and which may run
 * when, the message list (/retry, /edit, /copy) and the conversation's
 * composition into display lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "compose.h"
#include "config.h"
#include "layout.h"
#include "membw.h"
#include "meters.h"
#include "msgs.h"
#include "theme.h"
#include "testutil.h"

/* ---- layout ---- */

static bool inside(struct rect r, int rows, int cols)
{
    return r.y >= 0 && r.x >= 0 && r.y + r.h <= rows && r.x + r.w <= cols;
}

static bool overlap(struct rect a, struct rect b)
{
    if (!a.h || !a.w || !b.h || !b.w)
        return false;
    return a.y < b.y + b.h && b.y < a.y + a.h && a.x < b.x + b.w && b.x < a.x + a.w;
}

static void check_layout(int rows, int cols, bool sidebar, int in)
{
    struct layout l;
    layout_compute(rows, cols, sidebar, in, &l);
    assert_false(l.too_small);
    struct rect all[] = {l.title, l.sidebar, l.conv, l.meters, l.status, l.input};
    for (size_t i = 0; i < 6; i++) {
        assert_true(inside(all[i], rows, cols));
        for (size_t j = i + 1; j < 6; j++)
            assert_false(overlap(all[i], all[j]));
    }
    assert_true(l.conv.h >= 1 && l.conv.w >= 20);
    assert_int_equal(l.input.y + l.input.h, rows);
    assert_true(l.input.h >= 1 && l.input.h <= rows / 3);
    assert_int_equal(l.sidebar.w > 0, sidebar);
}

static void test_layout_sizes(void **state)
{
    (void)state;
    struct layout l;
    layout_compute(12, 39, false, 1, &l);
    assert_true(l.too_small);
    layout_compute(11, 40, false, 1, &l);
    assert_true(l.too_small);
    check_layout(12, 40, false, 1);
    check_layout(12, 40, true, 1);
    check_layout(12, 40, false, 9); /* input asks too much: clamped */
    check_layout(24, 80, true, 3);
    check_layout(50, 200, true, 2);
    layout_compute(40, 120, false, 1, &l);
    assert_true(l.meters_side);
    assert_int_equal(l.meters.x + l.meters.w, 120);
    layout_compute(24, 80, false, 1, &l);
    assert_false(l.meters_side);
    assert_int_equal(l.meters.w, 80);
}

/* ---- wrapping ---- */

/* Every line fits; valid text never breaks inside a character or before a
 * combining mark (garbage bytes are each one replacement glyph). */
static void check_wrap(const char *s, int width, bool valid)
{
    struct wrap_line w[64];
    size_t n = layout_wrap(s, strlen(s), width, w, 64);
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        assert_true(w[i].cols <= width);
        assert_int_equal(w[i].cols, text_width(s + w[i].start, w[i].len));
        /* Never starts with a combining mark or inside a UTF-8 sequence. */
        if (w[i].len && valid) {
            unsigned char c = (unsigned char)s[w[i].start];
            assert_true((c & 0xC0) != 0x80);
            uint32_t cp;
            utf8_decode(s + w[i].start, w[i].len, &cp);
            assert_true(cp_width(cp) > 0);
        }
    }
}

static void check_wrap_widths(const char *s, int width)
{
    check_wrap(s, width, true);
}

static void test_wrap_words(void **state)
{
    (void)state;
    const char *s = "the quick brown fox jumps over the lazy dog";
    struct wrap_line w[16];
    size_t n = layout_wrap(s, strlen(s), 10, w, 16);
    assert_int_equal(n, 5);
    assert_int_equal(w[0].len, 9);
    assert_memory_equal(s + w[0].start, "the quick", 9);
    assert_memory_equal(s + w[1].start, "brown fox", 9);
    assert_memory_equal(s + w[4].start, "dog", 3);
    check_wrap_widths(s, 10);
    /* A word longer than the line is cut. */
    n = layout_wrap("abcdefghijkl", 12, 5, w, 16);
    assert_int_equal(n, 3);
    assert_int_equal(w[0].len, 5);
    assert_int_equal(w[2].len, 2);
    /* Newlines always break; empty text is one empty line. */
    n = layout_wrap("a\n\nb", 4, 10, w, 16);
    assert_int_equal(n, 3);
    assert_int_equal(w[1].len, 0);
    assert_int_equal(layout_wrap("", 0, 10, w, 16), 1);
    /* More lines than CAP: the count is still right. */
    assert_int_equal(layout_wrap("a b c d e f", 11, 2, w, 2), 6);
}

static void test_wrap_wide_and_combining(void **state)
{
    (void)state;
    /* 日本語のテキスト: 8 wide characters, 16 columns. */
    const char *cjk = "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88";
    assert_int_equal(text_width(cjk, strlen(cjk)), 16);
    struct wrap_line w[16];
    /* Width 5 holds two wide characters (4 columns), never two and a half. */
    size_t n = layout_wrap(cjk, strlen(cjk), 5, w, 16);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(w[i].cols, 4);
        assert_int_equal(w[i].len, 6);
    }
    check_wrap_widths(cjk, 5);
    check_wrap_widths(cjk, 3);
    /* e + COMBINING ACUTE is one column and never split. */
    const char *comb = "cafe\xCC\x81 cafe\xCC\x81 cafe\xCC\x81";
    assert_int_equal(text_width("e\xCC\x81", 3), 1);
    n = layout_wrap(comb, strlen(comb), 4, w, 16);
    assert_int_equal(n, 3);
    assert_int_equal(w[0].len, 6); /* "café" with the mark */
    check_wrap_widths(comb, 4);
    check_wrap_widths(comb, 3);
    check_wrap_widths("ab\xCC\x81\xCC\x82xyz \xE4\xB8\xAD\xE6\x96\x87 mixed \xF0\x9F\x98\x80 emoji", 3);
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    uint32_t cp;
    assert_int_equal(utf8_decode("\xC3\xA9", 2, &cp), 2);
    assert_int_equal(cp, 0xE9);
    assert_int_equal(utf8_decode("\xC3", 1, &cp), 1); /* truncated */
    assert_int_equal(cp, 0xFFFD);
    assert_int_equal(utf8_decode("\xC0\xAF", 2, &cp), 1); /* overlong '/' */
    assert_int_equal(cp, 0xFFFD);
    assert_int_equal(utf8_decode("\xED\xA0\x80", 3, &cp), 1); /* surrogate */
    assert_int_equal(utf8_decode("\xFF", 1, &cp), 1);
    /* Garbage still wraps into bounded lines. */
    check_wrap("\xFF\xFE\xC3 \x80\x80 ok \x01\x02", 2, false);
}

/* ---- Markdown ---- */

static size_t md(struct md_state *st, const char *in, char *out, uint8_t *sty)
{
    size_t n = md_render_line(st, in, strlen(in), out, sty);
    out[n] = 0;
    return n;
}

static void test_markdown(void **state)
{
    (void)state;
    struct md_state st = {0};
    char out[256];
    uint8_t sty[256];
    md(&st, "## Title **x**", out, sty);
    assert_string_equal(out, "Title x");
    assert_true(sty[0] & MD_HEADING);
    assert_true(sty[6] & MD_BOLD);

    md(&st, "use `ls -l` and **bold** and *it*", out, sty);
    assert_string_equal(out, "use ls -l and bold and it");
    assert_true(sty[4] & MD_CODE);
    assert_false(sty[3] & MD_CODE);
    assert_true(sty[14] & MD_BOLD);
    assert_false(sty[13] & MD_BOLD);
    assert_true(sty[23] & MD_ITALIC);

    /* Half-streamed emphasis and snake_case stay as typed. */
    md(&st, "so **far", out, sty);
    assert_string_equal(out, "so **far");
    md(&st, "call my_var_name now", out, sty);
    assert_string_equal(out, "call my_var_name now");
    assert_int_equal(sty[8], MD_PLAIN);
    md(&st, "2 * 3 * 4", out, sty);
    assert_string_equal(out, "2 * 3 * 4");

    md(&st, "- item", out, sty);
    assert_string_equal(out, "\xE2\x80\xA2 item");
    assert_true(sty[0] & MD_BULLET);
    md(&st, "> quoted", out, sty);
    assert_true(sty[0] & MD_QUOTE);

    /* Fences carry state across lines; markup inside is literal. */
    md(&st, "```c", out, sty);
    assert_true(st.in_code);
    assert_true(sty[0] & MD_FENCE);
    md(&st, "int **p = `x`;", out, sty);
    assert_string_equal(out, "int **p = `x`;");
    assert_int_equal(sty[0], MD_BLOCK);
    md(&st, "```", out, sty);
    assert_false(st.in_code);
    md(&st, "after", out, sty);
    assert_int_equal(sty[0], MD_PLAIN);
}

/* ---- meters ---- */

static void test_number_formats(void **state)
{
    (void)state;
    char b[32];
    fmt_bytes(512, b, sizeof b);
    assert_string_equal(b, "512 B");
    fmt_bytes(1536, b, sizeof b);
    assert_string_equal(b, "1.50 KiB");
    fmt_bytes(135ull << 20, b, sizeof b);
    assert_string_equal(b, "135 MiB");
    fmt_bytes(80ull << 30, b, sizeof b);
    assert_string_equal(b, "80.0 GiB");
    fmt_bytes(ENGINE_UNKNOWN, b, sizeof b);
    assert_string_equal(b, "n/a");
    fmt_bytes(0, b, sizeof b);
    assert_string_equal(b, "0 B"); /* a real zero stays zero */

    fmt_rate(NAN, b, sizeof b);
    assert_string_equal(b, "n/a");
    fmt_rate(-1, b, sizeof b);
    assert_string_equal(b, "n/a");
    fmt_rate(3.14159, b, sizeof b);
    assert_string_equal(b, "3.14");
    fmt_rate(123.45, b, sizeof b);
    assert_string_equal(b, "123.5");
    fmt_rate(4321.2, b, sizeof b);
    assert_string_equal(b, "4321");

    fmt_duration(0.85, b, sizeof b);
    assert_string_equal(b, "850 ms");
    fmt_duration(1.234, b, sizeof b);
    assert_string_equal(b, "1.23 s");
    fmt_duration(125, b, sizeof b);
    assert_string_equal(b, "2m05s");
    fmt_duration(NAN, b, sizeof b);
    assert_string_equal(b, "n/a");

    fmt_unit(61.54, 1, "W", b, sizeof b);
    assert_string_equal(b, "61.5 W");
    fmt_unit(0, 0, "W", b, sizeof b);
    assert_string_equal(b, "n/a");
}

static void test_meter_bar(void **state)
{
    (void)state;
    char b[128];
    meter_bar(0.5, 4, b, sizeof b);
    assert_string_equal(b, "\xE2\x96\x88\xE2\x96\x88  ");
    meter_bar(1.7, 3, b, sizeof b);
    assert_string_equal(b, "\xE2\x96\x88\xE2\x96\x88\xE2\x96\x88");
    meter_bar(NAN, 2, b, sizeof b);
    assert_string_equal(b, "  ");
    meter_bar(1.0 / 16, 2, b, sizeof b); /* one eighth of the first cell */
    assert_string_equal(b, "\xE2\x96\x8F ");
    /* Too small a buffer: truncated at a whole cell, still terminated. */
    size_t n = meter_bar(1.0, 10, b, 8);
    assert_int_equal(n, 6);
    assert_int_equal(strlen(b), 6);
}

static void test_mem_split(void **state)
{
    (void)state;
    struct engine_memory m = {.weights = 4000, .kv_cache = 1000, .scratch = 10, .device_total = 10000,
                              .device_free = 3000, .on_gpu = true};
    struct mem_split s;
    meters_mem_split(&m, 20, &s);
    assert_true(s.valid);
    int sum = 0;
    for (int i = 0; i < MEM_SEG_COUNT; i++)
        sum += s.cols[i];
    assert_int_equal(sum, 20);
    assert_int_equal(s.bytes[MEM_OTHER], 10000 - 3000 - 5010);
    assert_int_equal(s.cols[MEM_WEIGHTS], 8);
    assert_int_equal(s.cols[MEM_SCRATCH], 1); /* tiny but present: one cell */
    assert_int_equal(s.cols[MEM_FREE], 6);

    /* Engine buffers beyond what the device reports used (mmap'd weights on
     * the CPU): "other" is 0, never negative, and the cells still sum. */
    m = (struct engine_memory){.weights = 9000, .kv_cache = 500, .scratch = 0, .device_total = 10000,
                               .device_free = 8000};
    meters_mem_split(&m, 7, &s);
    assert_int_equal(s.bytes[MEM_OTHER], 0);
    sum = 0;
    for (int i = 0; i < MEM_SEG_COUNT; i++)
        sum += s.cols[i];
    assert_int_equal(sum, 7);

    m.device_total = ENGINE_UNKNOWN;
    meters_mem_split(&m, 20, &s);
    assert_false(s.valid);
    m = (struct engine_memory){.weights = ENGINE_UNKNOWN, .kv_cache = ENGINE_UNKNOWN, .scratch = ENGINE_UNKNOWN,
                               .device_total = 100, .device_free = ENGINE_UNKNOWN};
    meters_mem_split(&m, 3, &s);
    assert_true(s.valid);
    assert_int_equal(s.cols[MEM_OTHER], 3);
}

static void test_roofline(void **state)
{
    (void)state;
    assert_true(fabs(meters_roofline_pct(100000000, 30, 3e9) - 100.0) < 1e-9);
    assert_true(fabs(meters_roofline_pct(50000000, 30, 3e9) - 50.0) < 1e-9);
    assert_true(isnan(meters_roofline_pct(100, 30, 0)));
    assert_true(isnan(meters_roofline_pct(ENGINE_UNKNOWN, 30, 1e9)));
    assert_true(isnan(meters_roofline_pct(100, NAN, 1e9)));
    assert_true(fabs(meters_joules_per_token(10, 4) - 2.5) < 1e-12);
    assert_true(isnan(meters_joules_per_token(10, 0)));
    assert_true(isnan(meters_joules_per_token(NAN, 3)));
}

/* ---- themes ---- */

static void assert_theme_equal(const struct theme *a, const struct theme *b)
{
    assert_string_equal(a->name, b->name);
    for (int i = 0; i < TH_COUNT; i++) {
        assert_int_equal(a->s[i].fg, b->s[i].fg);
        assert_int_equal(a->s[i].bg, b->s[i].bg);
        assert_int_equal(a->s[i].attrs, b->s[i].attrs);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_theme_parse(void **state)
{
    (void)state;
    struct theme t, d;
    char err[256] = "";
    theme_default(&d);
    assert_string_equal(d.name, "dark");
    assert_int_equal(d.s[TH_USER].fg, 75); /* from themes/dark.theme */
    assert_true(d.s[TH_USER].attrs & THA_BOLD);

    const char *ok = "# mine\n\nuser = red default bold underline\ncode_block=252 236 # trailing\n";
    assert_int_equal(theme_parse(ok, strlen(ok), "mine.theme", &t, err, sizeof err), 0);
    assert_int_equal(t.s[TH_USER].fg, 1);
    assert_int_equal(t.s[TH_USER].bg, THEME_DEFAULT_COLOR);
    assert_int_equal(t.s[TH_USER].attrs, THA_BOLD | THA_UNDERLINE);
    assert_int_equal(t.s[TH_CODE_BLOCK].bg, 236);
    assert_int_equal(t.s[TH_ERROR].fg, d.s[TH_ERROR].fg); /* unnamed: default's */

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"user = red\nbogus = 1\n", "bad.theme:2: unknown element 'bogus'"},
        {"\n\nuser = 256\n", "bad.theme:3: '256' is not a colour"},
        {"user red\n", "bad.theme:1: expected ELEMENT"},
        {"user =\n", "bad.theme:1: 'user' has no colour"},
        {"user = 1 2 blink\n", "bad.theme:1: 'blink' is not a colour"},
        {"user = -3\n", "bad.theme:1: '-3'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        assert_int_equal(theme_parse(bad[i].text, strlen(bad[i].text), "bad.theme", &t, err, sizeof err), -1);
        assert_non_null(strstr(err, bad[i].want));
        /* Falls back to the default theme. */
        assert_theme_equal(&t, &d);
    }
}

static void test_theme_load(void **state)
{
    (void)state;
    char dir[4096], sub[4200], path[4300], err[512];
    struct theme t, d;
    theme_default(&d);
    test_tmpdir(dir, sizeof dir, "theme");
    assert_true(dir[0]);

    const char *const *names = theme_builtin_names();
    int found = 0;
    for (size_t i = 0; names[i]; i++) {
        assert_int_equal(theme_load(names[i], dir, &t, err, sizeof err), 0);
        found += !strcmp(names[i], "dark") + !strcmp(names[i], "light") + !strcmp(names[i], "high-contrast");
    }
    assert_int_equal(found, 3);
    assert_int_equal(theme_load("light", dir, &t, err, sizeof err), 0);
    assert_string_equal(t.name, "light");
    assert_int_not_equal(t.s[TH_USER].fg, d.s[TH_USER].fg);

    assert_int_equal(theme_load("nope", dir, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "no theme 'nope'"));
    assert_int_equal(theme_load("../etc/passwd", dir, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "not valid"));

    /* A user theme wins over a built-in; a malformed one names file and line. */
    snprintf(sub, sizeof sub, "%s/themes", dir);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/light.theme", sub);
    write_file(path, "user = 200\n");
    assert_int_equal(theme_load("light", dir, &t, err, sizeof err), 0);
    assert_int_equal(t.s[TH_USER].fg, 200);
    snprintf(path, sizeof path, "%s/broken.theme", sub);
    write_file(path, "user = 1\n# ok\nheading = purple\n");
    assert_int_equal(theme_load("broken", dir, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "broken.theme:3:"));
    assert_theme_equal(&t, &d);

    char *user[8];
    size_t n = theme_user_names(dir, user, 0, 8);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        free(user[i]);
}

static void test_color_to8(void **state)
{
    (void)state;
    assert_int_equal(theme_color_to8(-1), -1);
    assert_int_equal(theme_color_to8(3), 3);
    assert_int_equal(theme_color_to8(9), 1);   /* bright red -> red */
    assert_int_equal(theme_color_to8(196), 1); /* pure red */
    assert_int_equal(theme_color_to8(46), 2);  /* pure green */
    assert_int_equal(theme_color_to8(21), 4);  /* pure blue */
    assert_int_equal(theme_color_to8(226), 3); /* yellow */
    assert_int_equal(theme_color_to8(235), 0); /* dark grey */
    assert_int_equal(theme_color_to8(252), 7); /* light grey */
    assert_int_equal(theme_color_to8(231), 7); /* white */
    assert_int_equal(theme_color_to8(16), 0);  /* black */
}

/* ---- config ---- */

/* ---- memory bandwidth probe ---- */

/* No figure can be asserted for an unknown machine; what can be is that it is
 * a real, positive rate with any thread count, and that a cancelled probe
 * reports 0 (unknown) rather than a made-up number. */
static void test_membw_measure(void **state)
{
    (void)state;
    double bw = membw_measure((size_t)32 << 20, 0, 2, NULL);
    assert_true(isfinite(bw));
    assert_true(bw > 1e8); /* over 0.1 GB/s: anything less is a broken timer or copy */
    double one = membw_measure((size_t)8 << 20, 1, 1, NULL);
    assert_true(isfinite(one) && one > 0);
    /* More threads than bytes to share, and odd sizes, still work. */
    double odd = membw_measure(4096 + 7, 64, 3, NULL);
    assert_true(isfinite(odd) && odd > 0);
    atomic_int stop = 1;
    assert_true(membw_measure((size_t)8 << 20, 2, 2, &stop) == 0);
    assert_true(membw_measure(10, 1, 1, NULL) == 0); /* nothing to copy */
}

/* The measured figure is kept per CPU and thread count; the last one wins. */
static void test_membw_cache(void **state)
{
    (void)state;
    char dir[1024];
    test_tmpdir(dir, sizeof dir, "membw");
    assert_true(dir[0] != 0);
    char *old = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    setenv("XDG_CACHE_HOME", dir, 1);
    assert_true(membw_cache_get("Test CPU", 2) == 0);
    membw_cache_put("Test CPU", 2, 12.5e9);
    membw_cache_put("Test CPU", 4, 20e9);
    membw_cache_put("Other CPU", 2, 1e9);
    membw_cache_put("Test CPU", 2, 13e9);
    membw_cache_put("Bad\tname", 2, 5e9); /* would break the line format: skipped */
    membw_cache_put("Test CPU", 8, -1);    /* not a figure: skipped */
    assert_true(membw_cache_get("Test CPU", 2) == 13e9);
    assert_true(membw_cache_get("Test CPU", 4) == 20e9);
    assert_true(membw_cache_get("Other CPU", 2) == 1e9);
    assert_true(membw_cache_get("Test CPU", 8) == 0);
    assert_true(membw_cache_get("Bad\tname", 2) == 0);
    if (old) {
        setenv("XDG_CACHE_HOME", old, 1);
        free(old);
    } else {
        unsetenv("XDG_CACHE_HOME");
    }
}

static void test_config_parse(void **state)
{
    (void)state;
    struct kv_options o;
    memset(&o, 0, sizeof o);
    char err[256] = "";
    setenv("HOME", "/home/someone", 1);
    const char *text = "# defaults\n"
                       "model = ~/models/x.gguf\n"
                       "backend = cpu\n"
                       "ctx_size = 2048   # comment\n"
                       "temperature = 0.3\n"
                       "top_k=20\n"
                       "system = \"  be brief # really  \"\n"
                       "theme = light\n"
                       "seed = 42\n"
                       "history = off\n"
                       "mem_bandwidth_gbs = 51.2\n";
    assert_int_equal(config_parse(text, strlen(text), "config", &o, err, sizeof err), 0);
    assert_string_equal(o.model, "/home/someone/models/x.gguf");
    assert_int_equal(o.backend, ENGINE_BACKEND_CPU);
    assert_int_equal(o.ctx_size, 2048);
    assert_true(fabsf(o.sampling.temperature - 0.3f) < 1e-6f);
    assert_int_equal(o.sampling.top_k, 20);
    assert_string_equal(o.system, "  be brief # really  ");
    assert_true(o.system_set);
    assert_string_equal(o.theme, "light");
    assert_int_equal(o.sampling.seed, 42);
    assert_true(o.seed_set);
    assert_true(o.no_history);
    assert_true(fabs(o.mem_bandwidth_gbs - 51.2) < 1e-9);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"backend = tpu\n", "cfg:1: backend: 'tpu' is not auto, cpu or cuda"},
        {"\ntop_p = 0\n", "cfg:2: top_p:"},
        {"top_p = 1.5\n", "cfg:1: top_p:"},
        {"temperature = hot\n", "cfg:1: temperature:"},
        {"ctx_size = -1\n", "cfg:1: ctx_size:"},
        {"top_k = 3.5\n", "cfg:1: top_k:"},
        {"colour = red\n", "cfg:1: unknown setting 'colour'"},
        {"just words\n", "cfg:1: expected KEY = VALUE"},
        {"system = \"open\n", "cfg:1: unterminated quoted value"},
        {"seed = -5\n", "cfg:1: seed:"},
        {"history = maybe\n", "cfg:1: history:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        assert_int_equal(config_parse(bad[i].text, strlen(bad[i].text), "cfg", &o, err, sizeof err), -1);
        if (!strstr(err, bad[i].want))
            fail_msg("config %zu: got \"%s\", want \"%s\"", i, err, bad[i].want);
    }
}

static void test_config_load(void **state)
{
    (void)state;
    char dir[4096], path[4200], err[512] = "";
    struct kv_options o;
    memset(&o, 0, sizeof o);
    test_tmpdir(dir, sizeof dir, "config");
    assert_true(dir[0]);
    /* No file at the default place: fine, nothing changes. */
    setenv("XDG_CONFIG_HOME", dir, 1);
    assert_int_equal(config_load(NULL, &o, err, sizeof err), 0);
    assert_int_equal(o.ctx_size, 0);
    /* An explicit path that is missing is an error naming it. */
    snprintf(path, sizeof path, "%s/missing.conf", dir);
    assert_int_equal(config_load(path, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing.conf"));
    /* The default file is found through XDG_CONFIG_HOME. */
    snprintf(path, sizeof path, "%s/kvchat", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/kvchat/config", dir);
    write_file(path, "ctx_size = 512\nthreads = x\n");
    assert_int_equal(config_load(NULL, &o, err, sizeof err), -1);
    assert_int_equal(o.ctx_size, 512); /* lines before the bad one applied */
    char want[4300];
    snprintf(want, sizeof want, "%s:2: threads:", path);
    assert_non_null(strstr(err, want));
}

/* Hostile config and theme input (style rule 11; tests/fuzz/fuzz_config.c
 * and fuzz_theme.c explore the same space): each case is refused with one
 * line "FILE:LINE: ..." naming the right line, or parses cleanly; none may
 * crash or read past the text. Each text is copied to an exact-size heap
 * buffer so a sanitizer build catches an overread. */
struct hostile_case {
    const char *text;
    size_t len;       /* 0 = strlen(text) */
    const char *want; /* NULL = parses cleanly; else the start of the error */
};

/* "FILE:LINE: what", one line. */
static void assert_one_line_error(const char *err, const char *want, size_t i)
{
    if (strncmp(err, want, strlen(want)) != 0 || strchr(err, '\n'))
        fail_msg("hostile case %zu: got \"%s\", want \"%s...\" on one line", i, err, want);
}

static int parse_copy(bool theme, const char *text, size_t len, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    int rc;
    if (theme) {
        struct theme t;
        rc = theme_parse(copy, len, "th", &t, err, errlen);
    } else {
        struct kv_options *o = calloc(1, sizeof *o);
        assert_non_null(o);
        rc = config_parse(copy, len, "cfg", o, err, errlen);
        free(o);
    }
    free(copy);
    return rc;
}

static void run_hostile(bool theme, const struct hostile_case *c, size_t n)
{
    char err[256];
    for (size_t i = 0; i < n; i++) {
        size_t len = c[i].len ? c[i].len : strlen(c[i].text);
        err[0] = 0;
        int rc = parse_copy(theme, c[i].text, len, err, sizeof err);
        if (!c[i].want) {
            if (rc != 0)
                fail_msg("hostile case %zu: want a clean parse, got \"%s\"", i, err);
        } else {
            assert_int_equal(rc, -1);
            assert_one_line_error(err, c[i].want, i);
        }
    }
}

/* LEN bytes of REPEAT over and over (the last copy cut short), NUL-terminated. */
static char *repeated(const char *repeat, size_t len)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    size_t r = strlen(repeat);
    for (size_t i = 0; i < len; i++)
        s[i] = repeat[i % r];
    s[len] = 0;
    return s;
}

static void test_config_theme_hostile(void **state)
{
    (void)state;
    setenv("HOME", "/home/someone", 1);
    char *long9k = repeated("a", 9000), *long600 = repeated("b", 600);
    char *sys_long = repeated("s", 8300), *model_long = repeated("m", 5000);
    char two_lines[9100], sys_line[8400], model_line[5100], th_long[700];
    snprintf(two_lines, sizeof two_lines, "threads = 2\n%s\n", long9k);
    snprintf(sys_line, sizeof sys_line, "system = %.8250s\n", sys_long);
    snprintf(model_line, sizeof model_line, "model = %s\n", model_long);
    snprintf(th_long, sizeof th_long, "user = 1\n%s\n", long600);

    const struct hostile_case cfg[] = {
        {long9k, 0, "cfg:1: line too long"},
        {two_lines, 0, "cfg:2: line too long"},
        {sys_line, 0, "cfg:1: system: text longer than"},
        {model_line, 0, "cfg:1: model: path too long"},
        {"ctx_size = 1\0 2\n", 16, "cfg:1: NUL byte"},
        {"\n\0", 2, "cfg:2: NUL byte"},
        {"\0\0\0\0", 4, "cfg:1: NUL byte"},
        {"\xff\xfe = 1\n", 0, "cfg:1: unknown setting"},
        /* text that is not UTF-8 is refused as at every other door */
        {"system = caf\xc3\x28 \xff\xfe\xed\xa0\x80\n", 0, "cfg:1: system is not valid UTF-8 (byte 3)"},
        {"theme = \xc0\xaf\n", 0, NULL},
        {"backend = cpu\xc3\n", 0, "cfg:1: backend:"},
        {"ctx_size = 99999999999999999999999999\n", 0, "cfg:1: ctx_size:"},
        {"threads = 9223372036854775808\n", 0, "cfg:1: threads:"},
        {"threads = -9223372036854775809\n", 0, "cfg:1: threads:"},
        {"threads = 0x10\n", 0, "cfg:1: threads:"},
        {"temperature = 1e999\n", 0, "cfg:1: temperature:"},
        {"temperature = nan\n", 0, "cfg:1: temperature:"},
        {"temperature = inf\n", 0, "cfg:1: temperature:"},
        {"min_p = 1e-400\n", 0, "cfg:1: min_p:"}, /* underflow: strtod sets ERANGE */
        {"seed = 18446744073709551616\n", 0, "cfg:1: seed:"},
        {"seed = 18446744073709551615\n", 0, NULL},
        {"seed = +1\n", 0, "cfg:1: seed:"},
        {"max_tokens = 16777217\n", 0, "cfg:1: max_tokens:"},
        {"system = \"abc\n", 0, "cfg:1: unterminated quoted value"},
        {"system = \"\n", 0, "cfg:1: unterminated quoted value"},
        {"system = \"a\" b\n", 0, "cfg:1: unterminated quoted value"},
        {"system = \"a\" # fine\n", 0, NULL},
        {"system = \"\"\"\n", 0, NULL},
        {"= 1\n", 0, "cfg:1: unknown setting ''"},
        {"threads = 2\rctx_size = 3\r", 0, "cfg:1: threads:"},
        {"\r\n\t\v\f \n", 0, NULL},
        {"threads = 1\n\n\n\nthreads\n", 0, "cfg:5: expected KEY = VALUE"},
    };
    run_hostile(false, cfg, sizeof cfg / sizeof *cfg);

    const struct hostile_case th[] = {
        {long600, 0, "th:1: line too long"},
        {th_long, 0, "th:2: line too long"},
        {"user = 1\0 bold\n", 15, "th:1: NUL byte"},
        {"\0", 1, "th:1: NUL byte"},
        {"\xff\xfe = 1\n", 0, "th:1: unknown element"},
        {"user = caf\xc3\x28\n", 0, "th:1: 'caf"},
        {"user = 1 2 b\xc3\n", 0, "th:1: 'b"},
        {"user = 99999999999999999999999\n", 0, "th:1: '99999999999999999999999' is not a colour"},
        {"user = -9223372036854775809\n", 0, "th:1: '-9223372036854775809' is not a colour"},
        {"user = 0x10\n", 0, "th:1: '0x10' is not a colour"},
        {"user = +5\n", 0, "th:1: '+5' is not a colour"},
        {"user = 1 2 3\n", 0, "th:1: '3' is not a colour"},
        {"user = \"red\n", 0, "th:1: '\"red' is not a colour"},
        {"user = \"red\"\n", 0, "th:1: '\"red\"' is not a colour"},
        {"user = # nothing\n", 0, "th:1: 'user' has no colour"},
        {"# = =\n=\n", 0, "th:2: unknown element ''"},
        {"user = 1\rheading = 2\r", 0, "th:1: 'heading' is not"}, /* \r splits words, not lines */
        {"name = \xff anything\nuser = 255 255 normal\n", 0, NULL},
        {"\r\n\t\v\f \n", 0, NULL},
    };
    run_hostile(true, th, sizeof th / sizeof *th);

    /* 1 MB: many good lines parse; one line that long, or all NULs, is refused. */
    char err[256];
    char *mb_cfg = repeated("threads = 4\n", 1000000);
    char *mb_th = repeated("user = 1 2 bold\n", 1000000);
    char *mb_one = repeated("x", 1000000);
    char *mb_nul = calloc(1, 1000000);
    assert_non_null(mb_nul);
    mb_cfg[999999] = mb_th[999999] = '\n'; /* no cut-short last line */
    const struct hostile_case mb_c[] = {
        {mb_cfg, 1000000, "cfg:83334: expected KEY"}, /* the cut-short last line */
        {mb_one, 0, "cfg:1: line too long"},
        {mb_nul, 1000000, "cfg:1: line too long"},
    };
    run_hostile(false, mb_c, 3);
    const struct hostile_case mb_t[] = {
        {mb_th, 1000000, NULL}, /* 62500 whole lines */
        {mb_one, 0, "th:1: line too long"},
        {mb_nul, 1000000, "th:1: line too long"},
    };
    run_hostile(true, mb_t, 3);
    /* Whole good lines only: a clean parse. */
    size_t cfg_whole = 1000000 / 12 * 12, th_whole = 1000000 / 16 * 16;
    assert_int_equal(parse_copy(false, mb_cfg, cfg_whole, err, sizeof err), 0);
    assert_int_equal(parse_copy(true, mb_th, th_whole, err, sizeof err), 0);

    /* The same through the file readers. */
    char dir[4096], path[4300];
    struct kv_options *o = calloc(1, sizeof *o);
    struct theme t;
    assert_non_null(o);
    test_tmpdir(dir, sizeof dir, "hostile");
    assert_true(dir[0]);
    snprintf(path, sizeof path, "%s/big.conf", dir);
    mb_cfg[cfg_whole] = 0;
    write_file(path, mb_cfg);
    assert_int_equal(config_load(path, o, err, sizeof err), 0);
    assert_int_equal(o->threads, 4);
    write_file(path, mb_one);
    assert_int_equal(config_load(path, o, err, sizeof err), -1);
    assert_non_null(strstr(err, "big.conf:1: line too long"));
    assert_null(strchr(err, '\n'));
    snprintf(path, sizeof path, "%s/themes", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/themes/big.theme", dir);
    mb_th[th_whole] = 0;
    write_file(path, mb_th);
    assert_int_equal(theme_load("big", dir, &t, err, sizeof err), 0);
    assert_int_equal(t.s[TH_USER].attrs, THA_BOLD);
    write_file(path, mb_one);
    assert_int_equal(theme_load("big", dir, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "big.theme:1: line too long"));
    assert_null(strchr(err, '\n'));
    /* past the size limit the file is refused whole, not cut and parsed */
    {
        size_t big = (1u << 20) + 100;
        char *over = malloc(big + 1);
        assert_non_null(over);
        for (size_t i = 0; i < big; i++)
            over[i] = i % 64 == 63 ? '\n' : '#';
        over[big] = 0;
        write_file(path, over);
        assert_int_equal(theme_load("big", dir, &t, err, sizeof err), -1);
        assert_non_null(strstr(err, "big.theme: larger than"));
        assert_null(strchr(err, '\n'));
        free(over);
    }

    free(o);
    free(mb_cfg);
    free(mb_th);
    free(mb_one);
    free(mb_nul);
    free(long9k);
    free(long600);
    free(sys_long);
    free(model_long);
}

/* ---- commands ---- */

static void test_command_parse(void **state)
{
    (void)state;
    static struct command c;
    char err[256];
    size_t off;
    assert_int_equal(cmd_parse("hello", &c, &off, err, sizeof err), CMD_TEXT);
    assert_int_equal(off, 0);
    assert_int_equal(cmd_parse("//etc/hosts is a file", &c, &off, err, sizeof err), CMD_TEXT);
    assert_int_equal(off, 1);

    assert_int_equal(cmd_parse("/quit", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.id, CMD_QUIT);
    /* /set alone shows the values: no "unknown key ''" */
    assert_int_equal(cmd_parse("/set", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.id, CMD_SET);
    assert_string_equal(c.arg, "");
    assert_int_equal(cmd_parse("/set temp 0.2 ", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.id, CMD_SET);
    assert_string_equal(c.arg, "temperature");
    assert_string_equal(c.arg2, "0.2");
    assert_int_equal(cmd_parse("/resume 42", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.num, 42);
    assert_int_equal(cmd_parse("/export json /tmp/out file.json", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "json");
    assert_string_equal(c.arg2, "/tmp/out file.json");
    assert_int_equal(cmd_parse("/rename  My chat  ", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "My chat");
    assert_int_equal(cmd_parse("/system", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "");
    assert_int_equal(cmd_parse("/copy", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.num, 0);
    assert_int_equal(cmd_parse("/copy 2", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.num, 2);
    assert_int_equal(cmd_parse("/theme high-contrast", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "high-contrast");

    static const struct {
        const char *line, *want;
    } bad[] = {
        {"/frobnicate", "unknown command /frobnicate"},
        {"/resume", "/resume needs a session ID"},
        {"/resume abc", "'abc' is not a positive number"},
        {"/delete 0", "'0' is not a positive number"},
        {"/resume 12x", "'12x'"},
        {"/quit now", "/quit takes no arguments"},
        {"/set colour 3", "unknown key 'colour'"},
        {"/set temp", "needs one value"},
        {"/export pdf f", "usage: /export md|json FILE"},
        {"/export md", "usage: /export md|json FILE"},
        {"/rename", "/rename needs a title"},
        {"/search   ", "/search needs some text"},
        {"/theme a b", "needs one name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        assert_int_equal(cmd_parse(bad[i].line, &c, &off, err, sizeof err), CMD_ERROR);
        if (!strstr(err, bad[i].want))
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].line, err, bad[i].want);
    }
    /* Every command is in the help. */
    for (int i = 0; i < CMD_COUNT; i++) {
        char want[32];
        snprintf(want, sizeof want, "/%s", cmd_name((enum cmd_id)i));
        assert_non_null(strstr(cmd_help_text(), want));
    }
}

static bool has(const char **out, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(out[i], s))
            return true;
    return false;
}

static void test_command_complete(void **state)
{
    (void)state;
    const char *out[32];
    size_t ws;
    const char *themes[] = {"dark", "light", "high-contrast", "dusk"};
    size_t n = cmd_complete("/re", 3, themes, 4, out, 32, &ws);
    assert_int_equal(n, 3);
    assert_true(has(out, n, "resume") && has(out, n, "rename") && has(out, n, "retry"));
    assert_int_equal(ws, 1);
    n = cmd_complete("/", 1, themes, 4, out, 32, &ws);
    assert_int_equal(n, CMD_COUNT);
    n = cmd_complete("/set t", 6, themes, 4, out, 32, &ws);
    assert_int_equal(n, 3);
    assert_true(has(out, n, "temp") && has(out, n, "top_k") && has(out, n, "top_p"));
    assert_int_equal(ws, 5);
    n = cmd_complete("/theme d", 8, themes, 4, out, 32, &ws);
    assert_int_equal(n, 2);
    assert_true(has(out, n, "dark") && has(out, n, "dusk"));
    n = cmd_complete("/export j", 9, themes, 4, out, 32, &ws);
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "json");
    /* Second argument, plain text and unknown commands: nothing. */
    assert_int_equal(cmd_complete("/set temp 0", 11, themes, 4, out, 32, &ws), 0);
    assert_int_equal(cmd_complete("hello wo", 8, themes, 4, out, 32, &ws), 0);
    assert_int_equal(cmd_complete("/xyz a", 6, themes, 4, out, 32, &ws), 0);
    /* CAP smaller than the matches: count is still total. */
    assert_int_equal(cmd_complete("/", 1, themes, 4, out, 2, &ws), CMD_COUNT);
    /* /model's argument from the model names, spaces and all. */
    const char *models[] = {"SmolLM2.gguf", "gemma 3.gguf", "gemma-2.gguf"};
    n = cmd_complete_model("/model ge", 9, models, 3, out, 32, &ws);
    assert_int_equal(n, 2);
    assert_int_equal(ws, 7);
    assert_true(has(out, n, "gemma 3.gguf") && has(out, n, "gemma-2.gguf"));
    n = cmd_complete_model("/model gemma 3", 14, models, 3, out, 32, &ws);
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "gemma 3.gguf");
    assert_int_equal(cmd_complete_model("/model", 6, models, 3, out, 32, &ws), 0);
    assert_int_equal(cmd_complete_model("/models x", 9, models, 3, out, 32, &ws), 0);
    assert_int_equal(cmd_complete_model("/theme g", 8, models, 3, out, 32, &ws), 0);
}

/* ---- command policy ---- */

static void test_command_needs(void **state)
{
    (void)state;
    /* The commands that change the conversation a streaming reply belongs to,
     * or the settings it uses, wait for it; the rest run alongside. */
    static const enum cmd_id idle[] = {CMD_NEW,    CMD_RESUME, CMD_RETRY, CMD_EDIT,
                                       CMD_DELETE, CMD_SYSTEM, CMD_SET,  CMD_MODEL, CMD_VARIANT, CMD_THINK};
    static const enum cmd_id hist[] = {CMD_SESSIONS, CMD_RESUME, CMD_RENAME,
                                       CMD_DELETE,   CMD_SEARCH, CMD_EXPORT};
    for (int id = 0; id < CMD_COUNT; id++) {
        bool want_idle = false, want_hist = false;
        for (size_t i = 0; i < sizeof idle / sizeof *idle; i++)
            want_idle |= idle[i] == (enum cmd_id)id;
        for (size_t i = 0; i < sizeof hist / sizeof *hist; i++)
            want_hist |= hist[i] == (enum cmd_id)id;
        unsigned n = cmd_needs((enum cmd_id)id);
        if (want_idle != !!(n & CMD_NEEDS_IDLE) || want_hist != !!(n & CMD_NEEDS_HISTORY))
            fail_msg("/%s: needs %u", cmd_name((enum cmd_id)id), n);
        assert_int_equal(n & ~(unsigned)(CMD_NEEDS_IDLE | CMD_NEEDS_HISTORY), 0);
    }
    /* While a reply streams you can still stop it, look and copy. */
    assert_int_equal(cmd_needs(CMD_COPY), 0);
    assert_int_equal(cmd_needs(CMD_STATS), 0);
    assert_int_equal(cmd_needs(CMD_QUIT), 0);
    assert_int_equal(cmd_needs(CMD_COUNT), 0);
}

/* ---- the message list ---- */

static struct msg *add(struct msg_list *l, enum msg_kind k, const char *text, int64_t id)
{
    struct msg *m = msgs_add(l, k, text);
    assert_non_null(m);
    m->hist_id = id;
    return m;
}

static void test_msgs_pop_exchange(void **state)
{
    (void)state;
    struct msg_list l = {0};
    int64_t id = -1;
    assert_null(msgs_pop_exchange(&l, &id));
    assert_int_equal(id, 0);

    add(&l, MSG_SYSTEM, "be brief", 0);
    add(&l, MSG_USER, "first", 5);
    add(&l, MSG_ASSISTANT, "one", 6);
    add(&l, MSG_USER, "second", 9);
    add(&l, MSG_NOTICE, "context full: ...", 0);
    add(&l, MSG_ASSISTANT, "two", 10);
    add(&l, MSG_ERROR, "not saving: disk full", 0);
    assert_int_equal(msgs_last_user_id(&l), 9);
    /* Everything after the last message you sent goes with it. */
    char *t = msgs_pop_exchange(&l, &id);
    assert_string_equal(t, "second");
    assert_int_equal(id, 9);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[2].text, "one");
    free(t);
    /* A message that was never saved reports id 0: the history is left alone. */
    l.v[1].hist_id = 0;
    t = msgs_pop_exchange(&l, &id);
    assert_string_equal(t, "first");
    assert_int_equal(id, 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].kind, MSG_SYSTEM);
    free(t);
    /* No message of yours left: all goes, nothing is returned. */
    assert_int_equal(msgs_last_user_id(&l), 0);
    assert_null(msgs_pop_exchange(&l, &id));
    assert_int_equal(l.n, 0);
    /* The list is reusable after being emptied. */
    add(&l, MSG_USER, "again", 1);
    msgs_clear(&l);
    assert_int_equal(l.n, 0);
    msgs_free(&l);
    assert_null(l.v);
    msgs_free(&l); /* twice is harmless */
}

static const char *dl_text(const struct compose *c, size_t i);

/* /retry keeps the old reply hidden and numbers the turn's replies; the
 * shown one can be switched, and a hidden one is never copied or drawn. */
static void test_msgs_retry_keeps_variants(void **state)
{
    (void)state;
    struct msg_list l = {0};
    msgs_add(&l, MSG_USER, "q")->hist_id = 1;
    msgs_add(&l, MSG_ASSISTANT, "first")->hist_id = 2;
    msgs_add(&l, MSG_NOTICE, "context full: x");
    int64_t of = 0;
    char *t = msgs_retry(&l, &of);
    assert_string_equal(t, "q");
    free(t);
    assert_int_equal(of, 2);
    assert_int_equal(l.n, 2); /* the notice went with the attempt */
    assert_true(l.v[1].hidden);
    msgs_add(&l, MSG_ASSISTANT, "second")->hist_id = 3;
    msgs_number_variants(&l);
    int k, n;
    msgs_variant_now(&l, &k, &n);
    assert_int_equal(k, 2);
    assert_int_equal(n, 2);
    char *c = msgs_copy_target(&l, 0);
    assert_string_equal(c, "second");
    free(c);
    assert_null(msgs_variant_select(&l, 3));
    struct msg *m = msgs_variant_select(&l, 1);
    assert_non_null(m);
    assert_int_equal(m->hist_id, 2);
    c = msgs_copy_target(&l, 0);
    assert_string_equal(c, "first");
    free(c);
    struct compose cm = {0};
    compose_conversation(&cm, l.v, l.n, NULL, 0, 80, false);
    bool saw_badge = false, saw_hidden = false;
    for (size_t i = 0; i < cm.n_dl; i++) {
        saw_badge |= strstr(dl_text(&cm, i), "Assistant \xE2\x80\xB9" "1/2\xE2\x80\xBA") != NULL;
        saw_hidden |= strstr(dl_text(&cm, i), "second") != NULL;
    }
    assert_true(saw_badge);
    assert_false(saw_hidden);
    compose_free(&cm);
    msgs_free(&l);
}

static void test_msgs_copy_target(void **state)
{
    (void)state;
    struct msg_list l = {0};
    assert_null(msgs_copy_target(&l, 0));
    add(&l, MSG_USER, "hi", 1);
    assert_null(msgs_copy_target(&l, 0)); /* no reply yet */
    add(&l, MSG_ASSISTANT, "old\n```\nold block\n```\n", 2);
    add(&l, MSG_USER, "more", 3);
    const char *reply = "Two blocks:\n"
                        "```c\n"
                        "int a;\n"
                        "int b;\n"
                        "```\n"
                        "text\n"
                        "   ```\n" /* up to three spaces before a fence */
                        "second\n"
                        "    ```\n" /* four: inside the block, not a fence */
                        "   ```\n"
                        "```sh\n"
                        "unclosed\n"
                        "tail";
    add(&l, MSG_ASSISTANT, reply, 4);
    add(&l, MSG_NOTICE, "a notice after the reply", 0);
    add(&l, MSG_ASSISTANT, NULL, 0); /* still streaming: not a target */

    char *t = msgs_copy_target(&l, 0);
    assert_string_equal(t, reply);
    free(t);
    t = msgs_copy_target(&l, 1);
    assert_string_equal(t, "int a;\nint b;\n");
    free(t);
    t = msgs_copy_target(&l, 2);
    assert_string_equal(t, "second\n    ```\n");
    free(t);
    t = msgs_copy_target(&l, 3); /* an unclosed last block runs to the end */
    assert_string_equal(t, "unclosed\ntail");
    free(t);
    /* Only the last reply counts: the older one's block is out of reach. */
    assert_null(msgs_copy_target(&l, 4));

    msgs_clear(&l);
    add(&l, MSG_ASSISTANT, "no code here", 1);
    assert_null(msgs_copy_target(&l, 1));
    msgs_free(&l);
}

/* ---- composing the conversation ---- */

/* Display line I of C as a string (static buffer). */
static const char *dl_text(const struct compose *c, size_t i)
{
    static char buf[512];
    assert_true(i < c->n_dl);
    snprintf(buf, sizeof buf, "%.*s", (int)c->dl[i].len, c->arena + c->dl[i].off);
    return buf;
}

static void check_dl(const struct compose *c, size_t i, const char *text, int elem, int indent)
{
    if (strcmp(dl_text(c, i), text) != 0 || c->dl[i].elem != elem || c->dl[i].indent != indent)
        fail_msg("line %zu: \"%s\" elem %d indent %d, expected \"%s\" elem %d indent %d", i,
                 dl_text(c, i), c->dl[i].elem, c->dl[i].indent, text, elem, indent);
}

static void test_compose_elements(void **state)
{
    (void)state;
    struct compose c = {0};
    compose_conversation(&c, NULL, 0, NULL, 0, 80, true);
    assert_int_equal(c.n_dl, 0);

    struct msg_list l = {0};
    add(&l, MSG_SYSTEM, "be brief", 0);
    add(&l, MSG_USER, "a\tb\r\n\n", 1); /* tab expanded, CR dropped, trailing newlines trimmed */
    add(&l, MSG_NOTICE, "context full: dropped", 0);
    add(&l, MSG_ASSISTANT, "done", 2);
    add(&l, MSG_ASSISTANT, "cut", 3)->end = HIST_END_CANCELLED;
    add(&l, MSG_ERROR, "generation failed", 0);
    add(&l, MSG_ASSISTANT, NULL, 0);
    compose_conversation(&c, l.v, l.n, "stre", 4, 80, true);
    size_t i = 0;
    check_dl(&c, i++, "System prompt", TH_SYSTEM, 0);
    check_dl(&c, i++, "be brief", TH_SYSTEM, 2);
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "You", TH_USER, 0);
    check_dl(&c, i++, "a    b", TH_NORMAL, 2);
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "context full: dropped", TH_NOTICE, 0); /* notices: no header, flush left */
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "Assistant", TH_ASSISTANT, 0);
    assert_string_equal(dl_text(&c, i++), "done"); /* stopped on its own: no marker */
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "Assistant", TH_ASSISTANT, 0);
    assert_string_equal(dl_text(&c, i++), "cut");
    check_dl(&c, i++, "[cancelled]", TH_MARKER, 2);
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "generation failed", TH_ERROR, 0);
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "Assistant", TH_ASSISTANT, 0);
    assert_string_equal(dl_text(&c, i++), "stre"); /* the streaming reply shows the stream */
    check_dl(&c, i++, "\xE2\x96\x8C", TH_MARKER, 2); /* and a cursor */
    check_dl(&c, i++, "", TH_NORMAL, 0);
    assert_int_equal(c.n_dl, i);

    /* Every end reason but a plain stop has its marker. */
    static const struct {
        enum hist_end end;
        const char *mark;
    } ends[] = {
        {HIST_END_LENGTH, "[cut: length limit or full context]"},
        {HIST_END_ERROR, "[error: reply incomplete]"},
        {HIST_END_INTERRUPTED, "[interrupted: kvchat stopped mid-reply]"},
    };
    for (size_t k = 0; k < sizeof ends / sizeof *ends; k++) {
        struct msg m = {MSG_ASSISTANT, "x", ends[k].end, 1, MSG_CUT_UNKNOWN, false, 0, 0, false};
        compose_conversation(&c, &m, 1, NULL, 0, 80, true);
        assert_int_equal(c.n_dl, 4);
        check_dl(&c, 2, ends[k].mark, TH_MARKER, 2);
    }
    msgs_free(&l);
    compose_free(&c);
    assert_null(c.dl);
}

static void test_compose_wrap(void **state)
{
    (void)state;
    struct compose c = {0};
    const char *text = "the quick brown fox jumps over the lazy dog and keeps on running far away";
    struct msg m = {MSG_USER, (char *)text, HIST_END_NONE, 1, MSG_CUT_UNKNOWN, false, 0, 0, false};
    /* A pane 20 wide leaves 17 columns for text after the indent. */
    compose_conversation(&c, &m, 1, NULL, 0, 20, true);
    assert_true(c.n_dl > 4);
    char joined[256] = "";
    for (size_t i = 1; i + 1 < c.n_dl; i++) {
        const char *t = dl_text(&c, i);
        assert_true(text_width(t, strlen(t)) <= 17);
        assert_int_equal(c.dl[i].indent, 2);
        if (i > 1)
            strcat(joined, " ");
        strcat(joined, t);
    }
    assert_string_equal(joined, text); /* broken at the spaces, nothing lost */

    /* A notice gets the indent's two columns too: 19. */
    struct msg n = {MSG_NOTICE, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", HIST_END_NONE, 0, MSG_CUT_UNKNOWN, false, 0, 0, false};
    compose_conversation(&c, &n, 1, NULL, 0, 20, true);
    assert_string_equal(dl_text(&c, 0), "aaaaaaaaaaaaaaaaaaa");
    assert_int_equal(c.dl[0].indent, 0);
    /* A pane too narrow still gets 8 columns of text. */
    compose_conversation(&c, &m, 1, NULL, 0, 4, true);
    assert_string_equal(dl_text(&c, 1), "the");
    assert_string_equal(dl_text(&c, 2), "quick");
    compose_free(&c);
}

/* A line that exactly fills the pane was wrapped one column wider than it
 * was drawn, so its last character vanished ("whic" / "is reflected"). The
 * wrap and the drawing share compose_line_cols: a line of exactly that width
 * stays whole, one column more breaks at the space. */
static void test_wrap_exact_width_keeps_last_char(void **state)
{
    (void)state;
    struct wrap_line wl[4];
    assert_int_equal(layout_wrap("which is the way", 16, 8, wl, 4), 2);
    assert_int_equal(wl[0].len, 8); /* "which is" fills 8 columns exactly */
    assert_int_equal(wl[0].cols, 8);
    assert_int_equal(layout_wrap("which is", 8, 8, wl, 4), 1);
    assert_int_equal(layout_wrap("which is", 8, 7, wl, 4), 2);
    assert_int_equal(wl[0].len, 5);

    /* In a pane 20 wide a reply line gets 17 columns, a notice 19, a code
     * line 15: every composed line fits the columns the drawing clips to,
     * and a line of exactly that width is one line. */
    struct compose c = {0};
    struct msg m[3] = {
        {MSG_ASSISTANT, "aaaaaaaa bbbbbbbb\nccccccc ddddddd eeeeeeeee", HIST_END_NONE, 1, MSG_CUT_UNKNOWN, false, 0, 0, false},
        {MSG_NOTICE, "aaaaaaaaa bbbbbbbbb", HIST_END_NONE, 0, MSG_CUT_UNKNOWN, false, 0, 0, false},
        {MSG_ASSISTANT, "```\naaaaaaa bbbbbbb\n```", HIST_END_NONE, 2, MSG_CUT_UNKNOWN, false, 0, 0, false},
    };
    compose_conversation(&c, m, 3, NULL, 0, 20, true);
    for (size_t i = 0; i < c.n_dl; i++) {
        const char *t = dl_text(&c, i);
        assert_true(text_width(t, strlen(t)) <= compose_line_cols(20, c.dl[i].indent));
    }
    assert_int_equal(compose_line_cols(20, 2), 17);
    check_dl(&c, 1, "aaaaaaaa bbbbbbbb", TH_NORMAL, 2);
    check_dl(&c, 2, "ccccccc ddddddd", TH_NORMAL, 2);
    check_dl(&c, 5, "aaaaaaaaa bbbbbbbbb", TH_NOTICE, 0);
    assert_string_equal(dl_text(&c, 9), "aaaaaaa bbbbbbb"); /* code: indent 4, 15 columns */
    assert_int_equal(c.dl[9].indent, 4);
    compose_free(&c);
}

/* A full context showed "[cut: length limit or full context]" whichever
 * limit it was, and the turns dropped to fit looked unchanged. */
static void test_context_full_marks_which_limit_and_dropped_turns(void **state)
{
    (void)state;
    struct msg_list l = {0};
    add(&l, MSG_USER, "old question", 1);
    add(&l, MSG_ASSISTANT, "old answer", 2);
    add(&l, MSG_USER, "newer question", 3);
    add(&l, MSG_ASSISTANT, "newer answer", 4);
    add(&l, MSG_USER, "now", 5);
    struct msg *r = add(&l, MSG_ASSISTANT, "cut short", 6);
    r->end = HIST_END_LENGTH;
    r->cut = MSG_CUT_CONTEXT;
    msgs_mark_dropped(&l, 1);
    assert_true(l.v[0].dropped && l.v[1].dropped);
    assert_false(l.v[2].dropped || l.v[3].dropped || l.v[4].dropped || l.v[5].dropped);
    msgs_mark_dropped(&l, 5); /* more than there are: never the last turn */
    assert_true(l.v[2].dropped && l.v[3].dropped);
    assert_false(l.v[4].dropped || l.v[5].dropped);

    struct compose c = {0};
    compose_conversation(&c, l.v, 2, NULL, 0, 80, true);
    check_dl(&c, 0, "You", TH_MARKER, 0); /* dimmed as a whole */
    check_dl(&c, 1, "old question", TH_MARKER, 2);
    check_dl(&c, 2, "[not seen by the model: dropped to fit the context]", TH_MARKER, 2);
    compose_conversation(&c, &l.v[5], 1, NULL, 0, 80, true);
    check_dl(&c, 2, "[cut: the context is full]", TH_MARKER, 2);
    l.v[5].cut = MSG_CUT_MAX_TOKENS;
    compose_conversation(&c, &l.v[5], 1, NULL, 0, 80, true);
    check_dl(&c, 2, "[cut: reply length limit (max_tokens)]", TH_MARKER, 2);
    msgs_free(&l);
    compose_free(&c);
}

/* A reasoning model's <think> block shows apart from the answer, dimmed
 * under a "thinking" line; while it still thinks, all of it is thinking. */
static void test_compose_thinking_apart(void **state)
{
    (void)state;
    struct compose c = {0};
    struct msg m = {MSG_ASSISTANT, (char *)"<think>\nweigh it\n</think>\n\n**Paris**",
                    HIST_END_NONE, 1, MSG_CUT_UNKNOWN, false, 0, 0, false};
    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    check_dl(&c, 0, "Assistant", TH_ASSISTANT, 0);
    check_dl(&c, 1, "thinking \xE2\x80\xA6", TH_THINKING, 2);
    check_dl(&c, 2, "weigh it", TH_THINKING, 2);
    assert_string_equal(dl_text(&c, 3), "Paris"); /* the answer, as Markdown */
    assert_true(c.dl[3].styled);
    /* streaming, no closing tag yet: nothing is answer */
    struct msg s = {MSG_ASSISTANT, NULL, HIST_END_NONE, 0, MSG_CUT_UNKNOWN, false, 0, 0, false};
    const char *stream = "<think>still going";
    compose_conversation(&c, &s, 1, stream, strlen(stream), 80, true);
    check_dl(&c, 1, "thinking \xE2\x80\xA6", TH_THINKING, 2);
    check_dl(&c, 2, "still going", TH_THINKING, 2);
    /* "<think>" later in a reply is text, not thinking */
    struct msg t = {MSG_ASSISTANT, (char *)"use <think> tags", HIST_END_NONE, 1, MSG_CUT_UNKNOWN,
                    false, 0, 0, false};
    compose_conversation(&c, &t, 1, NULL, 0, 80, false);
    assert_string_equal(dl_text(&c, 1), "use <think> tags");
    compose_free(&c);
}

static void test_compose_markdown(void **state)
{
    (void)state;
    struct compose c = {0};
    const char *reply = "**Bold** and `code`\n```\nint x;\n```";
    struct msg m = {MSG_ASSISTANT, (char *)reply, HIST_END_NONE, 1, MSG_CUT_UNKNOWN, false, 0, 0, false};

    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    assert_string_equal(dl_text(&c, 1), "Bold and code"); /* markers gone */
    assert_true(c.dl[1].styled);
    assert_int_equal(c.arena_sty[c.dl[1].off] & MD_BOLD, MD_BOLD);
    assert_int_equal(c.arena_sty[c.dl[1].off + 9] & MD_CODE, MD_CODE);
    assert_int_equal(c.dl[1].indent, 2);
    /* The fenced block: filled, indented further, narrower by two. */
    for (size_t i = 2; i <= 4; i++) {
        assert_true(c.dl[i].fill);
        assert_int_equal(c.dl[i].indent, 4);
    }
    assert_string_equal(dl_text(&c, 3), "int x;");
    assert_int_equal(c.n_dl, 6);

    /* Markdown off: the reply as typed, one element. */
    compose_conversation(&c, &m, 1, NULL, 0, 80, false);
    check_dl(&c, 1, "**Bold** and `code`", TH_NORMAL, 2);
    assert_false(c.dl[1].styled);
    check_dl(&c, 2, "```", TH_NORMAL, 2);
    assert_false(c.dl[2].fill);

    /* Your own messages are never Markdown. */
    m.kind = MSG_USER;
    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    check_dl(&c, 1, "**Bold** and `code`", TH_NORMAL, 2);
    compose_free(&c);
}

/* ---- the meters pane ---- */

static void test_meter_values(void **state)
{
    (void)state;
    struct engine_stats st = {.kv_used = 10, .kv_capacity = 0};
    struct engine_memory mem = {.device_total = 8ull << 30, .device_free = 6ull << 30};
    struct gpu_sample gs = {0};
    struct meter_inputs in = {
        .st = &st, .mem = &mem, .gs = &gs, .bytes_per_token = 100000000, .n_ctx = 2048,
        .bandwidth = 10e9, .jpt = NAN,
    };
    struct meter_values v;
    /* Before the first turn: the context is the capacity, rates are n/a. */
    meters_values(&in, &v);
    assert_string_equal(v.mem, "2.00 GiB / 8.00 GiB");
    assert_string_equal(v.kv, "10 / 2048 tok");
    assert_string_equal(v.left, "2038 tok");
    assert_int_equal(v.kv_used, 10);
    assert_int_equal(v.kv_cap, 2048);
    assert_true(fabs(v.kv_frac - 10.0 / 2048) < 1e-12);
    assert_string_equal(v.dec, "n/a tok/s");
    assert_string_equal(v.pre, "n/a tok/s");
    assert_string_equal(v.ttft, "n/a");
    assert_string_equal(v.roof, "n/a");
    assert_string_equal(v.util, "n/a");
    assert_string_equal(v.pow, "n/a");
    assert_string_equal(v.temp, "n/a");
    assert_string_equal(v.jpt, "n/a");

    /* One token: prefill and TTFT known, decode (and so the roofline) not. */
    st = (struct engine_stats){.gen_tokens = 1, .prefill_tok_s = 812.5, .decode_tok_s = 40,
                               .ttft_s = 0.25, .kv_used = 100, .kv_capacity = 4096, .running = true};
    meters_values(&in, &v);
    assert_string_equal(v.kv, "100 / 4096 tok");
    assert_int_equal(v.kv_cap, 4096);
    assert_string_equal(v.pre, "812.5 tok/s");
    assert_string_equal(v.ttft, "250 ms");
    assert_string_equal(v.dec, "n/a tok/s");
    assert_string_equal(v.roof, "n/a");

    /* 50 tok/s x 100 MB/token over 10 GB/s is half the roofline. */
    st.gen_tokens = 20;
    st.decode_tok_s = 50;
    gs = (struct gpu_sample){.util_valid = true, .util_pct = 87, .power_valid = true,
                             .power_w = 61.54, .temp_valid = true, .temp_c = 70};
    in.jpt = 0.25;
    meters_values(&in, &v);
    assert_string_equal(v.dec, "50.0 tok/s");
    assert_string_equal(v.roof, "50% of 10 GB/s");
    assert_string_equal(v.util, "87%");
    assert_string_equal(v.pow, "61.5 W");
    assert_string_equal(v.temp, "70.0 C");
    assert_string_equal(v.jpt, "0.250 J/tok");
    /* No bandwidth figure: the roofline is n/a, not 0% or infinite. */
    in.bandwidth = 0;
    meters_values(&in, &v);
    assert_string_equal(v.roof, "n/a");

    /* Unknown free memory: the used part is n/a, never the total. */
    mem.device_free = ENGINE_UNKNOWN;
    meters_values(&in, &v);
    assert_string_equal(v.mem, "n/a / 8.00 GiB");
    /* A finished turn keeps its figures (running off, tokens made). */
    st.running = false;
    meters_values(&in, &v);
    assert_string_equal(v.dec, "50.0 tok/s");
    /* A turn that made nothing and is over shows n/a, not stale zeros. */
    st = (struct engine_stats){.prefill_tok_s = 900, .kv_capacity = 4096};
    meters_values(&in, &v);
    assert_string_equal(v.pre, "n/a tok/s");
}

/* A remote engine: no context, no memory, and only what the server publishes. */
static void test_meter_values_server(void **state)
{
    (void)state;
    struct engine_stats st = {.kv_used = 19, .gen_tokens = 7, .decode_tok_s = 30,
                              .prefill_tok_s = -1, .ttft_s = 0.1};
    struct engine_memory mem = {ENGINE_UNKNOWN, ENGINE_UNKNOWN, ENGINE_UNKNOWN, ENGINE_UNKNOWN,
                                ENGINE_UNKNOWN, false};
    struct gpu_sample gs = {0};
    struct engine_server srv = {.kv_frac = -1, .kv_tokens = -1, .n_ctx = -1, .reqs_running = -1,
                                .reqs_waiting = -1, .prefix_hit_rate = -1, .vram_bytes = -1,
                                .age_s = -1};
    struct meter_inputs in = {.st = &st, .mem = &mem, .gs = &gs, .srv = &srv, .jpt = NAN};
    struct meter_values v;
    /* the server publishes nothing: n/a everywhere, never 0 */
    meters_values(&in, &v);
    assert_string_equal(v.mem, "n/a / n/a");
    assert_string_equal(v.kv, "19 / n/a tok");
    assert_string_equal(v.left, "n/a");
    assert_true(v.kv_frac < 0);
    assert_int_equal(v.kv_cap, 0);
    assert_string_equal(v.reqs, "n/a");
    assert_string_equal(v.hit, "n/a");
    assert_string_equal(v.pre, "n/a tok/s");
    assert_string_equal(v.dec, "30.0 tok/s");
    assert_string_equal(v.roof, "n/a");
    /* no server figures at all (a local engine's caller may pass none) */
    in.srv = NULL;
    meters_values(&in, &v);
    assert_string_equal(v.reqs, "n/a");
    assert_true(v.kv_frac < 0);
    in.srv = &srv;

    /* vLLM: KV usage and requests, no context */
    srv.kv_frac = 0.375;
    srv.reqs_running = 3;
    srv.reqs_waiting = 0;
    srv.prefix_hit_rate = 0.25;
    meters_values(&in, &v);
    assert_true(fabs(v.kv_frac - 0.375) < 1e-12); /* the bar is the server's usage */
    assert_string_equal(v.kv, "19 / n/a tok");
    assert_string_equal(v.reqs, "3 running, 0 waiting");
    assert_string_equal(v.hit, "25%");
    /* only one of the two request counts */
    srv.reqs_waiting = -1;
    meters_values(&in, &v);
    assert_string_equal(v.reqs, "3 running, n/a waiting");

    /* llama-server's slot context arrives as the KV capacity */
    st.kv_capacity = 4096;
    meters_values(&in, &v);
    assert_string_equal(v.kv, "19 / 4096 tok");
    assert_string_equal(v.left, "4077 tok");

    /* Ollama: the model's VRAM, the device's total unknown */
    srv.vram_bytes = 3ll << 30;
    meters_values(&in, &v);
    assert_string_equal(v.mem, "3.00 GiB (server)");
}

int main(void)
{
    if (!setlocale(LC_ALL, "C.UTF-8") && !setlocale(LC_ALL, "en_US.UTF-8")) {
        printf("SKIPPED: no UTF-8 locale for wcwidth\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_sizes),
        cmocka_unit_test(test_wrap_words),
        cmocka_unit_test(test_wrap_wide_and_combining),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_markdown),
        cmocka_unit_test(test_number_formats),
        cmocka_unit_test(test_meter_bar),
        cmocka_unit_test(test_mem_split),
        cmocka_unit_test(test_roofline),
        cmocka_unit_test(test_theme_parse),
        cmocka_unit_test(test_theme_load),
        cmocka_unit_test(test_color_to8),
        cmocka_unit_test(test_membw_measure),
        cmocka_unit_test(test_membw_cache),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_config_load),
        cmocka_unit_test(test_config_theme_hostile),
        cmocka_unit_test(test_command_parse),
        cmocka_unit_test(test_command_complete),
        cmocka_unit_test(test_command_needs),
        cmocka_unit_test(test_msgs_pop_exchange),
        cmocka_unit_test(test_msgs_copy_target),
        cmocka_unit_test(test_msgs_retry_keeps_variants),
        cmocka_unit_test(test_compose_elements),
        cmocka_unit_test(test_compose_wrap),
        cmocka_unit_test(test_compose_markdown),
        cmocka_unit_test(test_compose_thinking_apart),
        cmocka_unit_test(test_wrap_exact_width_keeps_last_char),
        cmocka_unit_test(test_context_full_marks_which_limit_and_dropped_turns),
        cmocka_unit_test(test_meter_values),
        cmocka_unit_test(test_meter_values_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
