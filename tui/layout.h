/* layout.h - the pure geometry of the chat screen: where each pane goes for a
 * terminal size, how UTF-8 text wraps into display columns (wide and
 * combining characters included). Markdown is markdown.h's.
 *
 * Used by the chat screen (compose.c, draw.c) to compose each frame and by
 * tests/test_tui.c, without a terminal: nothing here calls ncurses. Widths
 * come from wcwidth(), so the caller must have set an UTF-8 LC_CTYPE
 * (setlocale) first.
 */
#ifndef KVCHAT_TUI_LAYOUT_H
#define KVCHAT_TUI_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- panes ---- */

#define LAYOUT_MIN_COLS 40
#define LAYOUT_MIN_ROWS 12

struct rect {
    int y, x, h, w; /* cells; h or w 0 = pane hidden */
};

struct layout {
    bool too_small; /* below LAYOUT_MIN_COLS x LAYOUT_MIN_ROWS: only a notice */
    bool meters_side; /* meters in a right-hand column (wide terminals) */
    struct rect title;   /* one line: model, backend, session */
    struct rect sidebar; /* sessions list, when shown */
    struct rect conv;    /* conversation */
    struct rect meters;
    struct rect status;  /* one line: notices and key hints */
    struct rect input;
};

/* Rows the meters need when drawn below the conversation on narrow terminals. */
#define LAYOUT_METER_ROWS_BOTTOM 3
/* Width of the meters column on wide terminals (from LAYOUT_SIDE_METERS_COLS on). */
#define LAYOUT_METER_COLS_SIDE 34
#define LAYOUT_SIDE_METERS_COLS 100

/* Places the panes for a ROWS x COLS terminal. INPUT_LINES is how many lines
 * the input currently needs (clamped to 1..a third of the screen). */
void layout_compute(int rows, int cols, bool sidebar, int input_lines, struct layout *out);

/* ---- text ---- */

/* Decodes one UTF-8 character at S (N bytes left): returns its length (1 for
 * an invalid byte, which yields U+FFFD in *CP). */
size_t utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Display width of one code point: 0 for combining marks and zero-width
 * characters, 2 for wide (CJK, emoji), 1 otherwise; control characters and
 * unprintables count 1 because they are drawn as a replacement glyph. */
int cp_width(uint32_t cp);

/* Display width of N bytes of UTF-8. */
int text_width(const char *s, size_t n);

struct wrap_line {
    size_t start; /* byte offset into the text */
    size_t len;   /* bytes, without the break (space or newline) */
    int cols;     /* display width */
};

/* Wraps N bytes of UTF-8 into lines of at most WIDTH columns: breaks after
 * spaces when it can, inside a word only when the word alone is too long,
 * never between a character and its combining marks, never through a wide
 * character; a newline always breaks. Writes up to CAP lines to OUT and
 * returns how many lines the text needs (call again with more room if larger
 * than CAP). Empty text is one empty line. WIDTH < 2 is treated as 2. */
size_t layout_wrap(const char *s, size_t n, int width, struct wrap_line *out, size_t cap);

#endif
