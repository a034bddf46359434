/* sidebar.c - the sessions sidebar's filtering, rows and movement, and the
 * title line's model name. See sidebar.h. */
#include "sidebar.h"

#include <stdio.h>
#include <string.h>

#include "layout.h"

const char *sidebar_label(const struct hist_session *s)
{
    if (s->title && s->title[0])
        return s->title;
    if (s->preview && s->preview[0])
        return s->preview;
    return "(untitled)";
}

static unsigned char fold(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Whether NEEDLE occurs in HAY, ASCII case ignored (other bytes compared as
 * they are: "É" and "é" differ, which a title filter can live with). */
static int contains_fold(const char *hay, const char *needle)
{
    size_t nl = strlen(needle);
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (i < nl && h[i] && fold((unsigned char)h[i]) == fold((unsigned char)needle[i]))
            i++;
        if (i == nl)
            return 1;
    }
    return nl == 0;
}

size_t sidebar_filter(const struct hist_session *ss, size_t n, const char *query, const int64_t *hits,
                      size_t n_hits, size_t *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < cap; i++) {
        int match = !query || !query[0] || contains_fold(sidebar_label(&ss[i]), query);
        for (size_t j = 0; !match && hits && j < n_hits; j++)
            match = hits[j] == ss[i].id;
        if (match)
            out[k++] = i;
    }
    return k;
}

int sidebar_fit(const char *s, int max_cols, char *out, size_t cap)
{
    if (!cap)
        return 0;
    out[0] = 0;
    if (max_cols <= 0)
        return 0;
    size_t n = strlen(s);
    if (text_width(s, n) <= max_cols && n < cap) {
        memcpy(out, s, n + 1);
        return text_width(s, n);
    }
    /* Keep what fits in MAX_COLS - 1, then the ellipsis. */
    size_t i = 0, o = 0;
    int cols = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = utf8_decode(s + i, n - i, &cp);
        int w = cp_width(cp);
        if (cols + w > max_cols - 1 || o + l + 4 > cap)
            break;
        memcpy(out + o, s + i, l);
        o += l;
        i += l;
        cols += w;
    }
    if (o + 4 <= cap) {
        memcpy(out + o, "\xE2\x80\xA6", 3);
        o += 3;
        cols++;
    }
    out[o] = 0;
    return cols;
}

int sidebar_id_cols(const struct hist_session *ss, const size_t *idx, size_t n)
{
    int cols = 2;
    for (size_t i = 0; i < n; i++) {
        char b[24];
        int w = snprintf(b, sizeof b, "%lld", (long long)ss[idx ? idx[i] : i].id);
        if (w > cols)
            cols = w;
    }
    return cols;
}

int sidebar_format_row(int64_t id, int id_cols, const char *title, int width, char *out, size_t cap)
{
    if (!cap)
        return 0;
    out[0] = 0;
    char head[40];
    int hw = snprintf(head, sizeof head, " %*lld ", id_cols, (long long)id);
    if (hw < 0 || hw > width || (size_t)hw >= cap) {
        /* narrower than the id: as much of it as fits */
        int w = width < 0 ? 0 : width;
        snprintf(out, cap, "%.*s", w, head);
        return (int)strlen(out);
    }
    memcpy(out, head, (size_t)hw + 1);
    return hw + sidebar_fit(title, width - hw, out + hw, cap - (size_t)hw);
}

size_t sidebar_move(size_t sel, size_t n, enum sidebar_move move, size_t page)
{
    if (n == 0)
        return 0;
    if (page == 0)
        page = 1;
    if (sel >= n)
        sel = n - 1;
    switch (move) {
    case SB_UP: return sel > 0 ? sel - 1 : 0;
    case SB_DOWN: return sel + 1 < n ? sel + 1 : sel;
    case SB_PAGE_UP: return sel > page ? sel - page : 0;
    case SB_PAGE_DOWN: return sel + page < n ? sel + page : n - 1;
    case SB_HOME: return 0;
    case SB_END: return n - 1;
    }
    return sel;
}

size_t sidebar_top(size_t sel, size_t top, size_t n, size_t rows)
{
    if (rows == 0 || n <= rows)
        return 0;
    if (sel < top)
        top = sel;
    else if (sel >= top + rows)
        top = sel - rows + 1;
    if (top > n - rows)
        top = n - rows;
    return top;
}

void sidebar_backspace(char *q)
{
    size_t n = strlen(q);
    while (n > 0 && ((unsigned char)q[n - 1] & 0xC0) == 0x80)
        n--; /* continuation bytes of the last character */
    if (n > 0)
        n--;
    q[n] = 0;
}

/* S lower-cased with spaces, '-', '_' and '.' dropped, into OUT. */
static void squash(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '-' || c == '_' || c == '.')
            continue;
        out[o++] = (char)fold(c);
    }
    out[o] = 0;
}

void sidebar_model_name(const char *general_name, const char *path, char *out, size_t cap)
{
    const char *base = path ? strrchr(path, '/') : NULL;
    base = base ? base + 1 : (path ? path : "");
    size_t bl = strlen(base);
    if (bl > 5 && strcmp(base + bl - 5, ".gguf") == 0)
        bl -= 5;
    if (general_name && general_name[0]) {
        char a[256], b[256];
        squash(general_name, strlen(general_name), a, sizeof a);
        squash(base, bl, b, sizeof b);
        /* the file's name starts with it: the quantisation and such follow */
        if (a[0] && strncmp(b, a, strlen(a)) == 0) {
            snprintf(out, cap, "%s", general_name);
            return;
        }
    }
    if (!bl) {
        snprintf(out, cap, "%s", general_name ? general_name : "");
        return;
    }
    snprintf(out, cap, "%.*s", (int)bl, base);
}
