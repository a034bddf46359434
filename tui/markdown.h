/* markdown.h - a reply's Markdown as the conversation pane shows it. md4c
 * (CommonMark, with tables, task lists and bare-URL links) parses the text;
 * its blocks become display lines wrapped to the pane: code blocks as a
 * numbered block ("[1] python" above the code, no fence lines), headings
 * (H1 bold and underlined, H2 bold, the rest in the heading colour), lists
 * with their marker and a hanging indent, block quotes with a bar on every
 * line, rules drawn across, tables in box characters with columns sized to
 * their content, and links as their text with the address dimmed after it.
 *
 * Used by compose.c for replies and by msgs.c for /copy N, so the number on
 * a block and the block /copy N takes are the same by construction; tested
 * by tests/test_tui.c and fuzzed by tests/fuzz/fuzz_markdown.c.
 *
 * Rules: pure (no ncurses); widths come from layout.h (an UTF-8 LC_CTYPE
 * must be set). A struct md_doc owns its buffers and reuses them from call
 * to call; a zeroed one is empty, md_doc_free releases it. Out of memory
 * drops lines rather than failing. Any bytes are accepted: nothing in the
 * text can make a line wider than the width asked for.
 */
#ifndef KVCHAT_TUI_MARKDOWN_H
#define KVCHAT_TUI_MARKDOWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How one byte of a rendered line is shown: bits, one uint16_t per byte.
 * The drawing picks a theme element from the block bits and adds the
 * attributes. */
enum md_style {
    MD_PLAIN = 0,
    MD_BOLD = 1 << 0,
    MD_ITALIC = 1 << 1,
    MD_UNDERLINE = 1 << 2, /* H1 and link text */
    MD_CODE = 1 << 3,      /* inline code */
    MD_HEADING = 1 << 4,
    MD_BLOCK = 1 << 5,     /* inside a code block */
    MD_LABEL = 1 << 6,     /* a code block's "[N] language" label: dim */
    MD_BULLET = 1 << 7,    /* a list marker */
    MD_QUOTE = 1 << 8,     /* a block quote's bar and text */
    MD_URL = 1 << 9,       /* a link's address after its text: dim */
    MD_RULE = 1 << 10,     /* a horizontal rule, a table's borders */
};

struct md_line {
    size_t off, len; /* bytes in md_doc.text (and .sty) */
    int indent;      /* columns before the line: 2 for code blocks, else 0 */
    bool fill;       /* part of a code block: paint the whole width */
};

struct md_doc {
    struct md_line *lines; /* owned, n_lines used of cap_lines */
    size_t n_lines, cap_lines;
    char *text;    /* owned; what the lines show */
    uint16_t *sty; /* owned; one enum md_style mask per text byte */
    size_t len, cap;
    int n_code; /* code blocks in the text, numbered 1..n_code */
    /* Scratch kept between calls so a frame allocates nothing: the
     * paragraph being built and the cells of the table being read. */
    char *run;
    uint16_t *run_sty;
    size_t run_len, run_cap;
    struct md_cell *cells; /* owned, n_cells used of cap_cells */
    size_t n_cells, cap_cells;
};

/* Renders N bytes of Markdown SRC into D's lines, each at most WIDTH
 * columns wide including its indent (WIDTH below 8 is taken as 8).
 * STREAMING: SRC is a reply still arriving: a last line that could still
 * turn the paragraph above it into a heading or a table, or open a list
 * ("-", "==", "|--"), waits for more text instead of flickering. Returns 0,
 * or -1 when the parser failed (out of memory, or md4c handed out a text
 * outside SRC, which it can for some cut-off replies): D then holds what was
 * done before the failure, and a caller shows the plain text instead.
 * Replaces what D held. */
int md_render(struct md_doc *d, const char *src, size_t n, int width, bool streaming);

void md_doc_free(struct md_doc *d);

/* The text of SRC's NTH code block (1-based, in the numbering md_render
 * shows; fenced or indented, an unclosed last block running to the end),
 * malloc'd, or NULL when there is no such block (or out of memory). */
char *md_code_block(const char *src, size_t n, int64_t nth);

#endif
