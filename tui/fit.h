/* fit.h - text made to fit one line of the chat screen when the terminal
 * is narrow: a line cut at a word boundary with an ellipsis (the status
 * line's key hints and notices), and a list of names shown as many as fit
 * plus "+N more" (Tab's completions).
 *
 * Pure: used by draw.c and input.c, tested by tests/test_tui.c without a
 * terminal. Widths come from layout.h (an UTF-8 LC_CTYPE must be set).
 *
 * Rules: nothing here allocates; outputs are written into the caller's
 * buffer and always NUL-terminated when it has room for one byte.
 */
#ifndef KVCHAT_TUI_FIT_H
#define KVCHAT_TUI_FIT_H

#include <stdbool.h>
#include <stddef.h>

#define FIT_ELLIPSIS "\xE2\x80\xA6" /* "…", one column */

/* How many of the N bytes of S to show in WIDTH columns. All of them when
 * they fit (*CUT false). Else (*CUT true) the longest start that ends
 * before a space and leaves a column for FIT_ELLIPSIS, with the spaces and
 * "·" separators before the cut trimmed: never part of a word. 0 when not
 * even the first word fits. */
size_t fit_words(const char *s, size_t n, int width, bool *cut);

/* Writes HEAD, then the N NAMES each after a space, into OUT (CAP bytes),
 * as many names as fit WIDTH columns with " +K more" after them when K do
 * not. A name is shown whole or not at all. Returns how many are shown. */
size_t fit_list(const char *head, const char *const *names, size_t n, int width, char *out, size_t cap);

#endif
