/* sidebar.h - the pure parts of the F2 sessions sidebar and of the title
 * line: which sessions match the filter typed into the sidebar, moving the
 * selection and keeping it in sight, a row laid out by display columns
 * (the id right-aligned in a fixed column, the title cut with "…"), and
 * the name the title line gives the model.
 *
 * Used by the chat screen (draw.c draws the rows, input.c moves and
 * filters) and by tests/test_tui.c without a terminal: nothing here calls
 * ncurses or the database.
 *
 * Rules: widths are display columns measured with layout.h's cp_width
 * (wide CJK and emoji count two, combining marks none), so the caller has
 * set a UTF-8 locale; nothing returned is owned by the caller except where
 * it says so; a text that does not fit is never cut inside a character.
 */
#ifndef KVCHAT_TUI_SIDEBAR_H
#define KVCHAT_TUI_SIDEBAR_H

#include <stddef.h>
#include <stdint.h>

#include "history.h"

/* What a session is called in the list: its title, else the start of its
 * first message, else "(untitled)". Borrowed from S. */
const char *sidebar_label(const struct hist_session *s);

/* Fills OUT (CAP entries) with the indexes of the sessions of SS (N of
 * them) that match QUERY: its text found in the label, ignoring ASCII case,
 * or the session's id among HITS (N_HITS ids, from a full-text search of
 * the messages; may be NULL). An empty QUERY matches all. Keeps SS's order;
 * returns how many matched (at most CAP). */
size_t sidebar_filter(const struct hist_session *ss, size_t n, const char *query, const int64_t *hits,
                      size_t n_hits, size_t *out, size_t cap);

/* Copies S into OUT (CAP bytes) cut to at most MAX_COLS display columns;
 * when it does not fit, the last column holds "…". Returns the columns
 * used. */
int sidebar_fit(const char *s, int max_cols, char *out, size_t cap);

/* Columns of the id column: the widest id of the N sessions of SS listed by
 * IDX (IDX NULL: all N), at least 2. */
int sidebar_id_cols(const struct hist_session *ss, const size_t *idx, size_t n);

/* One row of WIDTH columns into OUT: " ID TITLE", the id right-aligned in
 * ID_COLS columns, the title cut to what is left. Returns the columns used
 * (at most WIDTH). */
int sidebar_format_row(int64_t id, int id_cols, const char *title, int width, char *out, size_t cap);

enum sidebar_move {
    SB_UP,
    SB_DOWN,
    SB_PAGE_UP,
    SB_PAGE_DOWN,
    SB_HOME,
    SB_END,
};

/* The selection after MOVE in a list of N rows of which PAGE are shown;
 * stays in 0..N-1 (0 when empty). */
size_t sidebar_move(size_t sel, size_t n, enum sidebar_move move, size_t page);

/* The first row to show so that SEL is in sight in ROWS rows, moving the
 * view from TOP as little as possible. */
size_t sidebar_top(size_t sel, size_t top, size_t n, size_t rows);

/* Removes the last UTF-8 character of the NUL-terminated Q (a no-op on
 * ""). */
void sidebar_backspace(char *q);

/* The model's name for the title line into OUT: GENERAL_NAME (the file's
 * general.name) when it reads as the file's own name, else the file name
 * of PATH without ".gguf". Converters make general.name by title-casing
 * the words of a folder name ("Smollm2 135M 8k Lc100K Mix1 Ep2"): a name
 * that spells the file's name (ignoring case, spaces, '-', '_' and '.')
 * is kept, anything else is taken for one of those. */
void sidebar_model_name(const char *general_name, const char *path, char *out, size_t cap);

#endif
