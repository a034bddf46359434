/* test_common.c - common/: stored text made visible for a terminal, the
 * growing string, the XDG folders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "strbuf.h"
#include "utf8.h"
#include "visible.h"
#include "xdg.h"

static char *visible(const char *s, size_t len, bool sgr)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    kv_write_visible(f, s, len, sgr);
    fclose(f);
    return buf;
}

/* A title that retitles the terminal (OSC 0), clears it (CSI 2J) and rings
 * the bell reaches the terminal as harmless text. */
static void test_terminal_escapes_from_stored_text(void **state)
{
    (void)state;
    const char t[] = "a\033]0;pwned\007b\033[2Jc\x7f\xc2\x9b" "31md\ttab\nline \xe4\xbd\xa0";
    char *v = visible(t, sizeof t - 1, false);
    assert_string_equal(v, "a^[]0;pwned^Gb^[[2Jc^?<U+009B>31md\ttab\nline \xe4\xbd\xa0");
    assert_null(strchr(v, '\033'));
    free(v);
    /* NUL inside a length-counted text shows too */
    v = visible("x\0y", 3, false);
    assert_string_equal(v, "x^@y");
    free(v);
    /* search marks pass when asked for; any other sequence does not */
    const char marks[] = "\033[1mhit\033[0m \033[31mred";
    v = visible(marks, sizeof marks - 1, true);
    assert_string_equal(v, "\033[1mhit\033[0m ^[[31mred");
    free(v);
    v = visible("\033[1m", 4, false);
    assert_string_equal(v, "^[[1m");
    free(v);
    /* a lone C2 at the end and invalid UTF-8 are left as they are */
    v = visible("\xff\xc2", 2, false);
    assert_memory_equal(v, "\xff\xc2", 3);
    free(v);
}

static void test_one_utf8_rule(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(kv_check_text("x", "caf\xc3\xa9 \xe4\xbd\xa0 \xf0\x9f\x98\x80", err, sizeof err), 1);
    assert_int_equal(kv_check_text("the title", "ab\xff", err, sizeof err), 0);
    assert_string_equal(err, "the title is not valid UTF-8 (byte 2): convert it to UTF-8");
    size_t bad = 99;
    assert_false(kv_utf8_valid("\xc0\xaf", 2, &bad)); /* overlong '/' */
    assert_int_equal(bad, 0);
    assert_false(kv_utf8_valid("a\xed\xa0\x80", 4, NULL)); /* a surrogate */
    assert_false(kv_utf8_valid("\xf4\x90\x80\x80", 4, NULL)); /* past U+10FFFF */
    assert_false(kv_utf8_valid("\xe4\xbd", 2, NULL)); /* cut short */
}

/* Code points at each length boundary come out as the bytes UTF-8 defines,
 * and valid. */
static void test_utf8_put(void **state)
{
    (void)state;
    static const struct {
        uint32_t cp;
        const char *utf8;
    } cases[] = {{0x41, "A"}, {0x7F, "\x7F"}, {0x80, "\xC2\x80"}, {0x7FF, "\xDF\xBF"},
                 {0x800, "\xE0\xA0\x80"}, {0x2581, "\xE2\x96\x81"}, {0xFFFD, "\xEF\xBF\xBD"},
                 {0x10000, "\xF0\x90\x80\x80"}, {0x10FFFF, "\xF4\x8F\xBF\xBF"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[4];
        size_t n = kv_utf8_put(cases[i].cp, out);
        assert_int_equal(n, strlen(cases[i].utf8));
        assert_memory_equal(out, cases[i].utf8, n);
        assert_true(kv_utf8_valid(out, n, NULL));
    }
}

static void test_strbuf(void **state)
{
    (void)state;
    struct kv_strbuf b = {0};
    assert_int_equal(kv_strbuf_append(&b, "", 0), 0);
    assert_string_equal(b.p, "");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(kv_strbuf_append(&b, "abc", 3), 0);
    assert_int_equal(b.len, 3000);
    assert_int_equal(strlen(b.p), 3000);
    assert_int_equal(kv_strbuf_append(&b, "x", SIZE_MAX - 8), -1);
    assert_int_equal(b.len, 3000);
    free(b.p);
}

static void test_xdg_rule(void **state)
{
    (void)state;
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    char *x = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    char buf[256];
    setenv("HOME", "/home/u", 1);
    setenv("XDG_CACHE_HOME", "/var/c", 1);
    assert_int_equal(kv_xdg_dir(KV_XDG_CACHE, buf, sizeof buf), 0);
    assert_string_equal(buf, "/var/c/kvchat");
    /* relative values are invalid by the spec and ignored */
    setenv("XDG_CACHE_HOME", "rel", 1);
    assert_int_equal(kv_xdg_dir(KV_XDG_CACHE, buf, sizeof buf), 0);
    assert_string_equal(buf, "/home/u/.cache/kvchat");
    assert_int_equal(kv_xdg_dir(KV_XDG_DATA, buf, 8), -1);
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    assert_int_equal(kv_xdg_dir(KV_XDG_STATE, buf, sizeof buf), -1);
    if (home)
        setenv("HOME", home, 1);
    if (x)
        setenv("XDG_CACHE_HOME", x, 1);
    free(home);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_terminal_escapes_from_stored_text),
        cmocka_unit_test(test_one_utf8_rule),
        cmocka_unit_test(test_utf8_put),
        cmocka_unit_test(test_strbuf),
        cmocka_unit_test(test_xdg_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
