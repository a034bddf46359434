/* compose.h - turns the message list into the conversation pane's display
 * lines: a header per message ("You", "Assistant", "System prompt"; with
 * timestamps on, "You · 14:03", or "You · 2024-05-01 14:03" before today),
 * its text wrapped to the pane (tabs expanded, CR dropped), replies rendered
 * as Markdown when asked, notices and errors flush left at full width, an end
 * marker ("[cancelled]", a cursor while streaming) and a blank line after
 * each message. A reply's opening "<think>...</think>" block is shown apart,
 * dimmed under a "thinking" line, before the answer. Turns dropped to fit the
 * context are dimmed, with one line "earlier turns no longer in context"
 * where they end.
 *
 * Pure: the lines point into an arena of bytes (and per-byte Markdown
 * styles) that the drawing code paints; tested by tests/test_tui.c without a
 * terminal. Widths come from layout_wrap (an UTF-8 LC_CTYPE must be set).
 *
 * Rules: a struct compose owns its buffers and reuses them from frame to
 * frame; a zeroed one is empty, compose_free releases it. Out of memory
 * drops lines rather than failing: a frame shows what fitted.
 */
#ifndef KVCHAT_TUI_COMPOSE_H
#define KVCHAT_TUI_COMPOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "markdown.h"
#include "msgs.h"

struct dline {       /* one display line of the conversation */
    size_t off, len; /* bytes in compose.arena */
    int elem;        /* theme element (enum theme_elem) when not styled */
    bool styled;     /* per-byte enum md_style bits in compose.arena_sty */
    bool fill;       /* paint the whole width (code blocks) */
    int indent;      /* columns before the text */
};

struct compose {
    struct dline *dl; /* owned, n_dl used of cap_dl */
    size_t n_dl, cap_dl;
    char *arena;        /* owned; the text the lines show */
    uint16_t *arena_sty; /* owned; one enum md_style mask per arena byte (styled lines only) */
    size_t arena_len, arena_cap;
    struct md_doc md; /* the Markdown of one reply at a time, reused */
    bool timestamps;    /* set by the caller: headers carry their message's local time */
    bool fold_thinking; /* set by the caller: a finished reply's thinking is its heading line only */
};

/* Composes the N messages MSGS for a pane WIDTH columns wide (text gets
 * WIDTH - 3 after its indent, at least 8). A message whose text is NULL
 * shows STREAM (STREAM_LEN bytes; NULL = empty), the reply so far. MARKDOWN:
 * render assistant replies as Markdown (else as typed). Replaces what C held. */
void compose_conversation(struct compose *c, const struct msg *msgs, size_t n, const char *stream,
                          size_t stream_len, int width, bool markdown);

void compose_free(struct compose *c);

/* The columns a line with INDENT gets in a pane WIDTH wide: the text starts
 * one column in (after the indent) and may run to the pane's last column.
 * compose wraps to exactly this and the drawing clips to exactly this, so a
 * line that fills the pane keeps its last character. */
static inline int compose_line_cols(int width, int indent)
{
    return width - 1 - indent;
}

#endif
