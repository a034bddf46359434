/* fit.c - text cut to fit one line, at words. See fit.h. */
#include "fit.h"

#include <stdio.h>
#include <string.h>

#include "layout.h"

size_t fit_words(const char *s, size_t n, int width, bool *cut)
{
    *cut = false;
    if (text_width(s, n) <= width)
        return n;
    *cut = true;
    /* the last space before which the text and the ellipsis fit */
    size_t best = 0;
    int cols = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_decode(s + i, n - i, &cp);
        if (cp == ' ' && cols + 1 <= width)
            best = i;
        cols += cp_width(cp);
        if (cols + 1 > width)
            break;
        i += l;
    }
    /* no dangling separator before the ellipsis: "a · b ·…" reads "a · b…" */
    for (;;) {
        if (best >= 1 && s[best - 1] == ' ')
            best--;
        else if (best >= 2 && (unsigned char)s[best - 2] == 0xC2 && (unsigned char)s[best - 1] == 0xB7)
            best -= 2;
        else
            break;
    }
    return best;
}

size_t fit_list(const char *head, const char *const *names, size_t n, int width, char *out, size_t cap)
{
    if (!cap)
        return 0;
    size_t o = (size_t)snprintf(out, cap, "%s", head);
    if (o >= cap)
        o = cap - 1;
    int cols = text_width(out, o);
    size_t shown = 0;
    for (; shown < n; shown++) {
        size_t l = strlen(names[shown]);
        int w = 1 + text_width(names[shown], l);
        /* room kept for " +K more" unless this is the last name */
        char more[32] = "";
        if (shown + 1 < n)
            snprintf(more, sizeof more, " +%zu more", n - shown - 1);
        if (cols + w + (int)strlen(more) > width || o + 1 + l >= cap)
            break;
        out[o++] = ' ';
        memcpy(out + o, names[shown], l);
        o += l;
        out[o] = 0;
        cols += w;
    }
    if (shown < n)
        snprintf(out + o, cap - o, " +%zu more", n - shown);
    return shown;
}
