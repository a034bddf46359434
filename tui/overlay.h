/* overlay.h - a text panel over the conversation pane: the help (F1, ? on an
 * empty line, /help) and the settings in use (/show). It holds the text,
 * splits it into lines and keeps the scroll position; draw.c paints it and
 * input.c hands it the keys while it is open.
 *
 * Pure: no ncurses. Tested by tests/test_tui.c without a terminal.
 *
 * Rules: an overlay owns a copy of its text; a zeroed struct overlay is
 * closed, overlay_close frees what it holds and may be called at any time.
 * Out of memory leaves it closed (overlay_open returns -1).
 */
#ifndef KVCHAT_TUI_OVERLAY_H
#define KVCHAT_TUI_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>

/* What a key does to an open overlay (input.c maps the terminal's keys). */
enum overlay_key {
    OVK_UP,
    OVK_DOWN,
    OVK_PAGE_UP,
    OVK_PAGE_DOWN,
    OVK_HOME,
    OVK_END,
    OVK_CLOSE, /* Esc, q, F1 */
    OVK_OTHER, /* ignored: the overlay keeps the keys while open */
};

struct overlay {
    bool open;
    char title[96];
    char *text;    /* owned; its lines are separated by '\n' */
    size_t *line;  /* owned: byte offset of each line's start */
    size_t n_lines;
    size_t top;    /* first line shown */
};

/* Opens O with a copy of TEXT under TITLE (what it held before is freed),
 * scrolled to the top. Returns 0, or -1 when out of memory (O closed). */
int overlay_open(struct overlay *o, const char *title, const char *text);
void overlay_close(struct overlay *o);

/* Line I's bytes (no newline) in *LEN. */
const char *overlay_line(const struct overlay *o, size_t i, size_t *len);

/* Applies KEY with ROWS lines visible; the top line stays within
 * 0..n_lines - ROWS (0 when everything fits). Returns false when the key
 * closed the overlay. */
bool overlay_key(struct overlay *o, enum overlay_key key, int rows);

#endif
