/* test_failalloc_config.c - the config file and theme loaders with each of
 * their allocations failing in turn (tests/failalloc.h). For every N, once
 * alone and once persistently, the N-th allocation fails; a load must then
 * either end as an unhindered one does or fail with a one-line message that
 * names memory, leak nothing (LSan in the sanitized build) and leave the
 * options or the theme byte for byte as they were before it began. The
 * files are larger than textfile_read's first buffer, so its growing is
 * covered too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"
#include "config.h"
#include "failalloc.h"
#include "testutil.h"
#include "theme.h"

static char dir[4096];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* TEXT after LINES comment lines of padding (about 60 bytes each). */
static char *padded(const char *text, int lines)
{
    size_t cap = (size_t)lines * 64 + strlen(text) + 1, o = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (int i = 0; i < lines; i++)
        o += (size_t)snprintf(s + o, cap - o, "# padding line %04d so the file outgrows one buffer\n", i);
    snprintf(s + o, cap - o, "%s", text);
    return s;
}

/* A failed load's message: names memory, one line. */
static void check_message(const char *what, long n, bool persist, const char *err)
{
    if (!strstr(err, "out of memory") || strchr(err, '\n'))
        fail_msg("%s N=%ld%s: failed with '%s', not a one-line out of memory", what, n,
                 persist ? " (persistent)" : "", err);
}

/* The config file: settings spread over the file, the last after the
 * padding, so a load cut short anywhere would show. */
static void config_path(void **state)
{
    (void)state;
    char path[4200], err[1024];
    snprintf(path, sizeof path, "%s/config", dir);
    char *text = padded("threads = 3\n"
                        "temperature = 0.25\n"
                        "system = \"Answer in one word.\"\n"
                        "timestamps = on\n",
                        200);
    write_file(path, text);
    free(text);
    struct kv_options *before = malloc(sizeof *before), *o = malloc(sizeof *o),
                      *want = malloc(sizeof *want);
    assert_non_null(before);
    assert_non_null(o);
    assert_non_null(want);
    kv_options_init(before);
    before->threads = 7; /* not the defaults, so "unchanged" is told from "reset" */
    before->sampling.temperature = 1.5f;
    memcpy(want, before, sizeof *want);
    assert_int_equal(config_load(path, want, err, sizeof err), 0);
    assert_int_equal(want->threads, 3);
    assert_string_equal(want->system, "Answer in one word.");
    long points = 0, failures = 0;
    for (int persist = 0; persist <= 1; persist++) {
        for (long n = 1;; n++) {
            memcpy(o, before, sizeof *o);
            err[0] = 0;
            failalloc_arm(n, persist);
            int rc = config_load(path, o, err, sizeof err);
            long seen = failalloc_count(), failed = failalloc_failures();
            failalloc_arm(0, false);
            if (rc != 0) {
                if (failed == 0)
                    fail_msg("config N=%ld: failed with no allocation failing: %s", n, err);
                check_message("config", n, persist, err);
                if (memcmp(o, before, sizeof *o) != 0)
                    fail_msg("config N=%ld%s: the failed load changed the options", n,
                             persist ? " (persistent)" : "");
                failures++;
            } else if (memcmp(o, want, sizeof *o) != 0) {
                fail_msg("config N=%ld: loaded options differ from an unhindered load", n);
            }
            if (seen < n) {
                points = seen;
                break;
            }
        }
    }
    printf("config: %ld allocation points, %ld failed loads\n", points, failures);
    assert_true(points >= 3); /* the buffer, its growing, the line */
    free(before);
    free(o);
    free(want);
    unlink(path);
}

static bool same_theme(const struct theme *a, const struct theme *b)
{
    if (strcmp(a->name, b->name) != 0)
        return false;
    for (int i = 0; i < TH_COUNT; i++)
        if (a->s[i].fg != b->s[i].fg || a->s[i].bg != b->s[i].bg || a->s[i].attrs != b->s[i].attrs)
            return false;
    return true;
}

/* A user theme loaded over the built-in light one, as /theme does. */
static void theme_path(void **state)
{
    (void)state;
    char sub[4200], path[4300], err[1024];
    snprintf(sub, sizeof sub, "%s/themes", dir);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/mine.theme", sub);
    char *text = padded("user = 200 default bold\ncode_block = 252 236\n", 150);
    write_file(path, text);
    free(text);
    struct theme before, t, want;
    assert_int_equal(theme_load("light", dir, &before, err, sizeof err), 0);
    assert_int_equal(theme_load("mine", dir, &want, err, sizeof err), 0);
    assert_int_equal(want.s[TH_USER].fg, 200);
    assert_false(same_theme(&before, &want));
    long points = 0, failures = 0;
    for (int persist = 0; persist <= 1; persist++) {
        for (long n = 1;; n++) {
            t = before;
            err[0] = 0;
            failalloc_arm(n, persist);
            int rc = theme_load("mine", dir, &t, err, sizeof err);
            long seen = failalloc_count(), failed = failalloc_failures();
            failalloc_arm(0, false);
            if (rc != 0) {
                if (failed == 0)
                    fail_msg("theme N=%ld: failed with no allocation failing: %s", n, err);
                check_message("theme", n, persist, err);
                if (!same_theme(&t, &before))
                    fail_msg("theme N=%ld%s: the failed load changed the theme (now '%s')", n,
                             persist ? " (persistent)" : "", t.name);
                failures++;
            } else if (!same_theme(&t, &want)) {
                fail_msg("theme N=%ld: the loaded theme differs from an unhindered load", n);
            }
            if (seen < n) {
                points = seen;
                break;
            }
        }
    }
    printf("theme: %ld allocation points, %ld failed loads\n", points, failures);
    assert_true(points >= 2); /* the buffer and its growing */
    unlink(path);
    rmdir(sub);
}

int main(void)
{
    test_tmpdir(dir, sizeof dir, "failalloc-config");
    if (!dir[0]) {
        fprintf(stderr, "no temporary folder\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_path),
        cmocka_unit_test(theme_path),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(dir);
    return rc;
}
