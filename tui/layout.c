/* layout.c - pane geometry, UTF-8 wrapping and streaming Markdown styling for
 * the chat screen. Pure functions: no ncurses, no allocation. See layout.h. */
#include "layout.h"

#include <ctype.h>
#include <string.h>
#include <wchar.h>

void layout_compute(int rows, int cols, bool sidebar, int input_lines, struct layout *out)
{
    memset(out, 0, sizeof *out);
    if (rows < LAYOUT_MIN_ROWS || cols < LAYOUT_MIN_COLS) {
        out->too_small = true;
        return;
    }
    int max_in = rows / 3;
    if (input_lines > max_in)
        input_lines = max_in;
    if (input_lines < 1)
        input_lines = 1;

    out->title = (struct rect){0, 0, 1, cols};
    out->input = (struct rect){rows - input_lines, 0, input_lines, cols};
    out->status = (struct rect){rows - input_lines - 1, 0, 1, cols};
    int body_y = 1, body_h = out->status.y - body_y;
    int body_x = 0, body_w = cols;

    if (cols >= LAYOUT_SIDE_METERS_COLS) {
        out->meters_side = true;
        out->meters = (struct rect){body_y, cols - LAYOUT_METER_COLS_SIDE, body_h, LAYOUT_METER_COLS_SIDE};
        body_w -= LAYOUT_METER_COLS_SIDE;
    } else {
        out->meters = (struct rect){body_y + body_h - LAYOUT_METER_ROWS_BOTTOM, 0,
                                    LAYOUT_METER_ROWS_BOTTOM, cols};
        body_h -= LAYOUT_METER_ROWS_BOTTOM;
    }
    if (sidebar) {
        int w = body_w / 3;
        if (w > 30)
            w = 30;
        out->sidebar = (struct rect){body_y, body_x, body_h, w};
        body_x += w;
        body_w -= w;
    }
    out->conv = (struct rect){body_y, body_x, body_h, body_w};
}

size_t utf8_decode(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) {
        *cp = 0xFFFD;
        return 0;
    }
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((u[0] & 0xE0) == 0xC0) {
        len = 2, c = u[0] & 0x1F, min = 0x80;
    } else if ((u[0] & 0xF0) == 0xE0) {
        len = 3, c = u[0] & 0x0F, min = 0x800;
    } else if ((u[0] & 0xF8) == 0xF0) {
        len = 4, c = u[0] & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if (len > n) {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        c = (c << 6) | (u[i] & 0x3F);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = c;
    return len;
}

int cp_width(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0))
        return 1; /* drawn as a replacement glyph */
    int w = wcwidth((wchar_t)cp);
    if (w < 0)
        return 1;
    return w > 2 ? 2 : w;
}

int text_width(const char *s, size_t n)
{
    int cols = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode(s + i, n - i, &cp);
        cols += cp_width(cp);
    }
    return cols;
}

#define NO_BREAK ((size_t)-1)

static void emit(struct wrap_line *out, size_t cap, size_t *nl, size_t start, size_t len, int cols)
{
    if (*nl < cap)
        out[*nl] = (struct wrap_line){start, len, cols};
    (*nl)++;
}

size_t layout_wrap(const char *s, size_t n, int width, struct wrap_line *out, size_t cap)
{
    if (width < 2)
        width = 2;
    size_t nl = 0, start = 0, i = 0;
    int cols = 0;
    size_t brk = NO_BREAK; /* byte index of the last space in this line */
    int brk_cols = 0;      /* columns before that space */

    while (i < n) {
        if (s[i] == '\n') {
            emit(out, cap, &nl, start, i - start, cols);
            start = ++i;
            cols = 0;
            brk = NO_BREAK;
            continue;
        }
        uint32_t cp;
        size_t l = utf8_decode(s + i, n - i, &cp);
        int w = cp_width(cp);
        if (w > 0 && cols + w > width) {
            if (cp == ' ') { /* the space itself is the break */
                emit(out, cap, &nl, start, i - start, cols);
                start = i += l;
                cols = 0;
                brk = NO_BREAK;
            } else if (brk != NO_BREAK) {
                emit(out, cap, &nl, start, brk - start, brk_cols);
                cols -= brk_cols + 1;
                start = brk + 1;
                brk = NO_BREAK;
            } else {
                emit(out, cap, &nl, start, i - start, cols);
                start = i;
                cols = 0;
            }
            continue; /* re-measure this character on the new line */
        }
        /* A space at the start of a line is indentation, not a break point:
         * breaking there would leave an empty line. */
        if (cp == ' ' && cols > 0) {
            brk = i;
            brk_cols = cols;
        }
        cols += w;
        i += l;
    }
    emit(out, cap, &nl, start, n - start, cols);
    return nl;
}

/* ---- Markdown ---- */

static bool is_fence(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && i < 3 && s[i] == ' ')
        i++;
    return n - i >= 3 && memcmp(s + i, "```", 3) == 0;
}

static void put(char *out, uint8_t *st, size_t *o, const char *s, size_t n, uint8_t style)
{
    memcpy(out + *o, s, n);
    memset(st + *o, style, n);
    *o += n;
}

static bool word_char(char c)
{
    return isalnum((unsigned char)c) || (unsigned char)c >= 0x80;
}

/* Index of the closing MARK (length ML) after FROM that can end an emphasis
 * (not preceded by a space), or NO_BREAK. Underscores must also sit at a word
 * end, so snake_case stays text. */
static size_t find_close(const char *s, size_t n, size_t from, const char *mark, size_t ml)
{
    for (size_t j = from; j + ml <= n; j++) {
        if (memcmp(s + j, mark, ml) != 0)
            continue;
        if (j == from || s[j - 1] == ' ')
            continue;
        if (ml == 1 && j + 1 < n && s[j + 1] == mark[0])
            continue; /* part of a ** run, not a single * */
        if (mark[0] == '_' && j + ml < n && word_char(s[j + ml]))
            continue;
        return j;
    }
    return NO_BREAK;
}

static size_t render_inline(const char *s, size_t n, uint8_t base, char *out, uint8_t *st, size_t o)
{
    uint8_t cur = base;
    char bold_ch = 0, ital_ch = 0;    /* the marker that opened, to close alike */
    size_t bold_end = 0, ital_end = 0; /* where the matching closer is */
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '`') {
            size_t j = i + 1;
            while (j < n && s[j] != '`')
                j++;
            if (j < n && j > i + 1) {
                put(out, st, &o, s + i + 1, j - i - 1, (uint8_t)(cur | MD_CODE));
                i = j + 1;
                continue;
            }
        } else if (c == '*' || c == '_') {
            bool dbl = i + 1 < n && s[i + 1] == c;
            if (dbl && bold_ch == c && i == bold_end) {
                cur &= (uint8_t)~MD_BOLD;
                bold_ch = 0;
                i += 2;
                continue;
            }
            if (!dbl && ital_ch == c && i == ital_end) {
                cur &= (uint8_t)~MD_ITALIC;
                ital_ch = 0;
                i += 1;
                continue;
            }
            size_t ml = dbl ? 2 : 1;
            bool opens = i + ml < n && s[i + ml] != ' ' && (c == '*' || i == 0 || !word_char(s[i - 1]));
            if (opens && (dbl ? !bold_ch : !ital_ch)) {
                char mark[2] = {c, c};
                size_t j = find_close(s, n, i + ml, mark, ml);
                if (j != NO_BREAK) {
                    if (dbl) {
                        cur |= MD_BOLD, bold_ch = c, bold_end = j;
                    } else {
                        cur |= MD_ITALIC, ital_ch = c, ital_end = j;
                    }
                    i += ml;
                    continue;
                }
            }
        }
        out[o] = c;
        st[o] = cur;
        o++;
        i++;
    }
    return o;
}

size_t md_render_line(struct md_state *state, const char *s, size_t n, char *out, uint8_t *st)
{
    size_t o = 0;
    if (is_fence(s, n)) {
        state->in_code = !state->in_code;
        put(out, st, &o, s, n, MD_FENCE);
        return o;
    }
    if (state->in_code) {
        put(out, st, &o, s, n, MD_BLOCK);
        return o;
    }
    size_t i = 0;
    while (i < n && s[i] == ' ')
        i++;
    size_t h = 0;
    while (i + h < n && s[i + h] == '#' && h < 7)
        h++;
    if (h >= 1 && h <= 6 && i + h < n && s[i + h] == ' ')
        return render_inline(s + i + h + 1, n - i - h - 1, MD_HEADING, out, st, o);
    if (i + 1 < n && (s[i] == '-' || s[i] == '*' || s[i] == '+') && s[i + 1] == ' ') {
        put(out, st, &o, s, i, MD_PLAIN);
        put(out, st, &o, "\xE2\x80\xA2 ", 4, MD_BULLET); /* "• " */
        return render_inline(s + i + 2, n - i - 2, MD_PLAIN, out, st, o);
    }
    size_t d = i;
    while (d < n && isdigit((unsigned char)s[d]))
        d++;
    if (d > i && d + 1 < n && (s[d] == '.' || s[d] == ')') && s[d + 1] == ' ') {
        put(out, st, &o, s, i, MD_PLAIN);
        put(out, st, &o, s + i, d + 2 - i, MD_BULLET);
        return render_inline(s + d + 2, n - d - 2, MD_PLAIN, out, st, o);
    }
    if (i < n && s[i] == '>') {
        size_t k = i + 1 + (i + 1 < n && s[i + 1] == ' ');
        put(out, st, &o, "\xE2\x94\x82 ", 4, MD_QUOTE); /* "│ " */
        return render_inline(s + k, n - k, MD_QUOTE, out, st, o);
    }
    return render_inline(s, n, MD_PLAIN, out, st, o);
}
