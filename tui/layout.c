/* layout.c - pane geometry and UTF-8 wrapping for the chat screen. Pure
 * functions: no ncurses, no allocation. See layout.h. */
#include "layout.h"

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
