/* fuzz_theme.c - libFuzzer target for the theme parser (tui/theme.c).
 *
 * theme_parse already takes a buffer, so no file is involved. Checks the
 * contract of theme.h: a refusal is one line "fuzz.theme:LINE: ..." and
 * leaves the default theme; an accepted theme has every colour in
 * -1..255 and only known attribute bits, and reduces to 8 colours in range.
 * The input is copied to an exact-size buffer so a read past its end is
 * caught by ASan.
 *
 * Build and run (from the repository root):
 *   CC=clang cmake -S . -B build-fuzz -DKVCHAT_FUZZ=ON -DKVCHAT_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_theme -j2
 *   mkdir -p /tmp/theme-corpus && ./build-fuzz/tests/fuzz/fuzz_theme
 *     -max_total_time=60 -max_len=4096 -artifact_prefix=/tmp/
 *     /tmp/theme-corpus tests/fuzz/corpus/theme themes
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "theme.h"

static void check_error(const char *err, const uint8_t *data, size_t size)
{
    if (strncmp(err, "fuzz.theme:", 11) != 0 || strchr(err, '\n'))
        abort();
    char *end;
    long line = strtol(err + 11, &end, 10);
    size_t lines = 1;
    for (size_t i = 0; i + 1 < size; i++)
        lines += data[i] == '\n';
    if (line < 1 || (size_t)line > lines || strncmp(end, ": ", 2) != 0 || !end[2])
        abort();
}

static void check_color(int c)
{
    if (c < THEME_DEFAULT_COLOR || c > 255)
        abort();
    int r = theme_color_to8(c);
    if (r < THEME_DEFAULT_COLOR || r > 7 || (c < 0 && r != c))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct theme def;
    static int have_def;
    if (!have_def) {
        theme_default(&def);
        have_def = 1;
    }
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    struct theme *t = malloc(sizeof *t);
    char err[256];
    err[0] = 0;
    int rc = theme_parse(copy, size, "fuzz.theme", t, err, sizeof err);
    if (rc != 0 && rc != -1)
        abort();
    if (rc) {
        check_error(err, data, size);
        if (strcmp(t->name, def.name) != 0)
            abort(); /* a refused theme leaves the default */
        for (int i = 0; i < TH_COUNT; i++) /* field by field: padding may differ */
            if (t->s[i].fg != def.s[i].fg || t->s[i].bg != def.s[i].bg || t->s[i].attrs != def.s[i].attrs)
                abort();
    }
    if (!memchr(t->name, 0, sizeof t->name))
        abort();
    for (int i = 0; i < TH_COUNT; i++) {
        check_color(t->s[i].fg);
        check_color(t->s[i].bg);
        if (t->s[i].attrs & ~(THA_BOLD | THA_DIM | THA_ITALIC | THA_UNDERLINE | THA_REVERSE))
            abort();
    }
    free(t);
    free(copy);
    return 0;
}
