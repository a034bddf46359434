/* test_tui.c - the chat screen's pure parts without a terminal: pane layout,
 * wrapping of wide and combining characters, streaming Markdown, number and
 * meter formatting, the memory bar, the meters pane's values, the memory
 * bandwidth probe, themes, the config file, slash commands and which may run
 * when, the message list (/retry, /edit, /copy) and the conversation's
 * composition into display lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "compose.h"
#include "config.h"
#include "fit.h"
#include "launch.h"
#include "layout.h"
#include "markdown.h"
#include "membw.h"
#include "meters.h"
#include "msgs.h"
#include "sidebar.h"
#include "overlay.h"
#include "theme.h"
#include "testutil.h"

/* ---- layout ---- */

static bool inside(struct rect r, int rows, int cols)
{
    return r.y >= 0 && r.x >= 0 && r.y + r.h <= rows && r.x + r.w <= cols;
}

static bool overlap(struct rect a, struct rect b)
{
    if (!a.h || !a.w || !b.h || !b.w)
        return false;
    return a.y < b.y + b.h && b.y < a.y + a.h && a.x < b.x + b.w && b.x < a.x + a.w;
}

static void check_layout(int rows, int cols, bool sidebar, int in)
{
    struct layout l;
    layout_compute(rows, cols, sidebar, in, &l);
    assert_false(l.too_small);
    struct rect all[] = {l.title, l.sidebar, l.conv, l.meters, l.status, l.input};
    for (size_t i = 0; i < 6; i++) {
        assert_true(inside(all[i], rows, cols));
        for (size_t j = i + 1; j < 6; j++)
            assert_false(overlap(all[i], all[j]));
    }
    assert_true(l.conv.h >= 1 && l.conv.w >= 20);
    assert_int_equal(l.input.y + l.input.h, rows);
    assert_true(l.input.h >= 1 && l.input.h <= rows / 3);
    assert_int_equal(l.sidebar.w > 0, sidebar);
}

static void test_layout_sizes(void **state)
{
    (void)state;
    struct layout l;
    layout_compute(12, 39, false, 1, &l);
    assert_true(l.too_small);
    layout_compute(11, 40, false, 1, &l);
    assert_true(l.too_small);
    check_layout(12, 40, false, 1);
    check_layout(12, 40, true, 1);
    check_layout(12, 40, false, 9); /* input asks too much: clamped */
    check_layout(24, 80, true, 3);
    check_layout(50, 200, true, 2);
    layout_compute(40, 120, false, 1, &l);
    assert_true(l.meters_side);
    assert_int_equal(l.meters.x + l.meters.w, 120);
    layout_compute(24, 80, false, 1, &l);
    assert_false(l.meters_side);
    assert_int_equal(l.meters.w, 80);
}

/* ---- wrapping ---- */

/* Every line fits; valid text never breaks inside a character or before a
 * combining mark (garbage bytes are each one replacement glyph). */
static void check_wrap(const char *s, int width, bool valid)
{
    struct wrap_line w[64];
    size_t n = layout_wrap(s, strlen(s), width, w, 64);
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        assert_true(w[i].cols <= width);
        assert_int_equal(w[i].cols, text_width(s + w[i].start, w[i].len));
        /* Never starts with a combining mark or inside a UTF-8 sequence. */
        if (w[i].len && valid) {
            unsigned char c = (unsigned char)s[w[i].start];
            assert_true((c & 0xC0) != 0x80);
            uint32_t cp;
            utf8_decode(s + w[i].start, w[i].len, &cp);
            assert_true(cp_width(cp) > 0);
        }
    }
}

static void check_wrap_widths(const char *s, int width)
{
    check_wrap(s, width, true);
}

static void test_wrap_words(void **state)
{
    (void)state;
    const char *s = "the quick brown fox jumps over the lazy dog";
    struct wrap_line w[16];
    size_t n = layout_wrap(s, strlen(s), 10, w, 16);
    assert_int_equal(n, 5);
    assert_int_equal(w[0].len, 9);
    assert_memory_equal(s + w[0].start, "the quick", 9);
    assert_memory_equal(s + w[1].start, "brown fox", 9);
    assert_memory_equal(s + w[4].start, "dog", 3);
    check_wrap_widths(s, 10);
    /* A word longer than the line is cut. */
    n = layout_wrap("abcdefghijkl", 12, 5, w, 16);
    assert_int_equal(n, 3);
    assert_int_equal(w[0].len, 5);
    assert_int_equal(w[2].len, 2);
    /* Newlines always break; empty text is one empty line. */
    n = layout_wrap("a\n\nb", 4, 10, w, 16);
    assert_int_equal(n, 3);
    assert_int_equal(w[1].len, 0);
    assert_int_equal(layout_wrap("", 0, 10, w, 16), 1);
    /* More lines than CAP: the count is still right. */
    assert_int_equal(layout_wrap("a b c d e f", 11, 2, w, 2), 6);
}

static void test_wrap_wide_and_combining(void **state)
{
    (void)state;
    /* 日本語のテキスト: 8 wide characters, 16 columns. */
    const char *cjk = "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88";
    assert_int_equal(text_width(cjk, strlen(cjk)), 16);
    struct wrap_line w[16];
    /* Width 5 holds two wide characters (4 columns), never two and a half. */
    size_t n = layout_wrap(cjk, strlen(cjk), 5, w, 16);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(w[i].cols, 4);
        assert_int_equal(w[i].len, 6);
    }
    check_wrap_widths(cjk, 5);
    check_wrap_widths(cjk, 3);
    /* e + COMBINING ACUTE is one column and never split. */
    const char *comb = "cafe\xCC\x81 cafe\xCC\x81 cafe\xCC\x81";
    assert_int_equal(text_width("e\xCC\x81", 3), 1);
    n = layout_wrap(comb, strlen(comb), 4, w, 16);
    assert_int_equal(n, 3);
    assert_int_equal(w[0].len, 6); /* "café" with the mark */
    check_wrap_widths(comb, 4);
    check_wrap_widths(comb, 3);
    check_wrap_widths("ab\xCC\x81\xCC\x82xyz \xE4\xB8\xAD\xE6\x96\x87 mixed \xF0\x9F\x98\x80 emoji", 3);
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    uint32_t cp;
    assert_int_equal(utf8_decode("\xC3\xA9", 2, &cp), 2);
    assert_int_equal(cp, 0xE9);
    assert_int_equal(utf8_decode("\xC3", 1, &cp), 1); /* truncated */
    assert_int_equal(cp, 0xFFFD);
    assert_int_equal(utf8_decode("\xC0\xAF", 2, &cp), 1); /* overlong '/' */
    assert_int_equal(cp, 0xFFFD);
    assert_int_equal(utf8_decode("\xED\xA0\x80", 3, &cp), 1); /* surrogate */
    assert_int_equal(utf8_decode("\xFF", 1, &cp), 1);
    /* Garbage still wraps into bounded lines. */
    check_wrap("\xFF\xFE\xC3 \x80\x80 ok \x01\x02", 2, false);
}

/* ---- Markdown ---- */

/* Line I of D as a string (static buffer). */
static const char *mdl(const struct md_doc *d, size_t i)
{
    static char buf[1024];
    if (i >= d->n_lines)
        fail_msg("line %zu of %zu", i, d->n_lines);
    snprintf(buf, sizeof buf, "%.*s", (int)d->lines[i].len, d->text + d->lines[i].off);
    return buf;
}

/* The style of the first byte of line I that starts NEEDLE. */
static uint16_t mds(const struct md_doc *d, size_t i, const char *needle)
{
    const char *t = mdl(d, i), *at = strstr(t, needle);
    if (!at)
        fail_msg("line %zu \"%s\" has no \"%s\"", i, t, needle);
    return d->sty[d->lines[i].off + (size_t)(at - t)];
}

/* Renders SRC at WIDTH and checks what every line must hold whatever the
 * input: inside the text, within the width with its indent, and no fence
 * shown as typed. */
static void render(struct md_doc *d, const char *src, int width, bool streaming)
{
    assert_int_equal(md_render(d, src, strlen(src), width, streaming), 0);
    for (size_t i = 0; i < d->n_lines; i++) {
        const struct md_line *l = &d->lines[i];
        assert_true(l->off + l->len <= d->len);
        int w = text_width(d->text + l->off, l->len);
        if (l->indent + w > width)
            fail_msg("line %zu \"%s\": %d columns after %d, width %d", i, mdl(d, i), w, l->indent, width);
        if (strstr(mdl(d, i), "```"))
            fail_msg("line %zu shows a fence: \"%s\"", i, mdl(d, i));
    }
}

static void dump(const struct md_doc *d)
{
    for (size_t i = 0; i < d->n_lines; i++)
        print_message("%2zu %c%d |%s|\n", i, d->lines[i].fill ? '#' : ' ', d->lines[i].indent, mdl(d, i));
}

static void expect_lines(const struct md_doc *d, const char *const *want, size_t n)
{
    bool ok = d->n_lines == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = strcmp(mdl(d, i), want[i]) == 0;
    if (!ok) {
        dump(d);
        for (size_t i = 0; i < n; i++)
            print_message("want %2zu |%s|\n", i, want[i]);
        fail_msg("lines differ");
    }
}
#define EXPECT_LINES(d, ...)                                                                              \
    do {                                                                                                  \
        static const char *const want_[] = {__VA_ARGS__};                                                 \
        expect_lines(d, want_, sizeof want_ / sizeof *want_);                                              \
    } while (0)

static void test_markdown_inline(void **state)
{
    (void)state;
    struct md_doc d = {0};
    render(&d, "use `ls -l` and **bold** and *it*", 80, false);
    EXPECT_LINES(&d, "use ls -l and bold and it");
    assert_true(mds(&d, 0, "ls -l") & MD_CODE);
    assert_false(mds(&d, 0, "use") & MD_CODE);
    assert_true(mds(&d, 0, "bold") & MD_BOLD);
    assert_false(mds(&d, 0, " and b") & MD_BOLD);
    assert_true(mds(&d, 0, "it") & MD_ITALIC);
    render(&d, "***both*** and __under__", 80, false);
    EXPECT_LINES(&d, "both and under");
    assert_int_equal(mds(&d, 0, "both") & (MD_BOLD | MD_ITALIC), MD_BOLD | MD_ITALIC);
    assert_true(mds(&d, 0, "under") & MD_BOLD);

    /* Half-streamed emphasis, snake_case and arithmetic stay as typed. */
    render(&d, "so **far", 80, true);
    EXPECT_LINES(&d, "so **far");
    render(&d, "call my_var_name now", 80, false);
    EXPECT_LINES(&d, "call my_var_name now");
    assert_int_equal(mds(&d, 0, "_var"), MD_PLAIN);
    render(&d, "2 * 3 * 4", 80, false);
    EXPECT_LINES(&d, "2 * 3 * 4");
    /* HTML is text: a terminal cannot render it. Entities are decoded. */
    render(&d, "a <b>tag</b> &amp; &lt;x&gt; &#x1F600; &#65; &nosuch;", 80, false);
    EXPECT_LINES(&d, "a <b>tag</b> & <x> \xF0\x9F\x98\x80 A &nosuch;");
    /* A line break in a reply stays one; blank lines part paragraphs. */
    render(&d, "roses are red\nviolets are blue\n\nnext", 80, false);
    EXPECT_LINES(&d, "roses are red", "violets are blue", "", "next");
    md_doc_free(&d);
    assert_null(d.text);
    md_doc_free(&d); /* twice is harmless */
}

static void test_markdown_headings_rules(void **state)
{
    (void)state;
    struct md_doc d = {0};
    render(&d, "# One\n## Two\n### Three\ntext\n\n---\n\nafter", 20, false);
    EXPECT_LINES(&d, "One", "", "Two", "", "Three", "", "text", "",
                 "\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80"
                 "\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80"
                 "\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80",
                 "", "after");
    /* H1 and H2 differ: underlined and bold, then bold alone. */
    assert_int_equal(mds(&d, 0, "One"), MD_HEADING | MD_BOLD | MD_UNDERLINE);
    assert_int_equal(mds(&d, 2, "Two"), MD_HEADING | MD_BOLD);
    assert_int_equal(mds(&d, 4, "Three"), MD_HEADING);
    assert_int_equal(mds(&d, 6, "text"), MD_PLAIN);
    assert_int_equal(text_width(mdl(&d, 8), strlen(mdl(&d, 8))), 20); /* the rule spans the width */
    assert_true(mds(&d, 8, "\xE2\x94\x80") & MD_RULE);
    /* Setext headings too. */
    render(&d, "Big\n===\nSmall\n-----", 40, false);
    EXPECT_LINES(&d, "Big", "", "Small");
    assert_true(mds(&d, 0, "Big") & MD_UNDERLINE);
    assert_false(mds(&d, 2, "Small") & MD_UNDERLINE);
    md_doc_free(&d);
}

static void test_markdown_code_blocks(void **state)
{
    (void)state;
    struct md_doc d = {0};
    const char *src = "Two blocks:\n"
                      "```python\n"
                      "x = 1\n"
                      "int **p = `x`;\n"
                      "```\n"
                      "between\n"
                      "~~~\n"
                      "plain\n"
                      "~~~\n"
                      "\n"
                      "    indented(code)\n";
    render(&d, src, 40, false);
    EXPECT_LINES(&d, "Two blocks:", "", "[1] python", "x = 1", "int **p = `x`;", "", "between", "", "[2]",
                 "plain", "", "[3]", "indented(code)");
    assert_int_equal(d.n_code, 3);
    /* The label is in the block, dimmed; the code is literal, filled and
     * indented two columns further. */
    assert_int_equal(mds(&d, 2, "[1]"), MD_LABEL);
    assert_int_equal(mds(&d, 4, "**p"), MD_BLOCK);
    for (size_t i = 2; i <= 4; i++) {
        assert_true(d.lines[i].fill);
        assert_int_equal(d.lines[i].indent, 2);
    }
    assert_false(d.lines[5].fill);
    /* /copy N takes the block labelled [N]. */
    char *b = md_code_block(src, strlen(src), 1);
    assert_string_equal(b, "x = 1\nint **p = `x`;\n");
    free(b);
    b = md_code_block(src, strlen(src), 2);
    assert_string_equal(b, "plain\n");
    free(b);
    b = md_code_block(src, strlen(src), 3);
    assert_string_equal(b, "indented(code)\n");
    free(b);
    assert_null(md_code_block(src, strlen(src), 4));
    assert_null(md_code_block(src, strlen(src), 0));

    /* A long code line wraps inside the block: 40 - 2 columns. */
    render(&d, "```\naaaa bbbb cccc dddd eeee ffff gggg hhhh iiii\n```", 40, false);
    EXPECT_LINES(&d, "[1]", "aaaa bbbb cccc dddd eeee ffff gggg", "hhhh iiii");
    assert_true(d.lines[2].fill);
    /* A fence still open (streaming) is a block already: no ``` shown. */
    render(&d, "look:\n```sh\nls -l\n``", 40, true);
    EXPECT_LINES(&d, "look:", "", "[1] sh", "ls -l");
    render(&d, "```", 40, true);
    EXPECT_LINES(&d);
    render(&d, "```c", 40, true);
    EXPECT_LINES(&d, "[1] c");
    md_doc_free(&d);
}

static void test_markdown_links(void **state)
{
    (void)state;
    struct md_doc d = {0};
    render(&d, "see [the docs](https://x.io/a) now, <https://b.org> or https://c.net/x", 80, false);
    EXPECT_LINES(&d, "see the docs (https://x.io/a) now, https://b.org or https://c.net/x");
    assert_true(mds(&d, 0, "the docs") & MD_UNDERLINE);
    assert_int_equal(mds(&d, 0, "(https://x.io"), MD_URL);
    assert_int_equal(mds(&d, 0, "https://x.io/a)"), MD_URL);
    assert_false(mds(&d, 0, " now") & (MD_URL | MD_UNDERLINE));
    /* the address alone is shown once */
    assert_null(strstr(mdl(&d, 0), "https://b.org (https://b.org)"));
    render(&d, "![a cat](cat.png) mail me@example.com", 80, false);
    EXPECT_LINES(&d, "a cat (cat.png) mail me@example.com");
    md_doc_free(&d);
}

static void test_markdown_lists_quotes(void **state)
{
    (void)state;
    struct md_doc d = {0};
    /* Hanging indent: wrapped lines start under the item's text. */
    render(&d, "- one two three four five six\n- b\n  - nested item here\n- [x] done\n- [ ] todo", 20, false);
    EXPECT_LINES(&d, "\xE2\x80\xA2 one two three four", "  five six", "\xE2\x80\xA2 b",
                 "  \xE2\x97\xA6 nested item here", "\xE2\x80\xA2 [x] done", "\xE2\x80\xA2 [ ] todo");
    assert_true(mds(&d, 0, "\xE2\x80\xA2") & MD_BULLET);
    assert_false(mds(&d, 0, "one") & MD_BULLET);
    render(&d, "9. nine is a long item\n10. ten is a longer one", 16, false);
    EXPECT_LINES(&d, "9. nine is a", "   long item", "10. ten is a", "    longer one");
    render(&d, "3) from three\n4) four", 40, false);
    EXPECT_LINES(&d, "3) from three", "4) four");
    /* A loose list keeps its blank lines; an item's second paragraph hangs. */
    render(&d, "- a\n\n- b\n\n  more b", 40, false);
    EXPECT_LINES(&d, "\xE2\x80\xA2 a", "", "\xE2\x80\xA2 b", "", "  more b");
    /* An empty item still shows its marker. */
    render(&d, "-\n- x", 40, false);
    EXPECT_LINES(&d, "\xE2\x80\xA2", "\xE2\x80\xA2 x");

    /* The quote's bar is on every wrapped line, and on the blank between
     * its paragraphs. */
    render(&d, "> quoted words that wrap around\n>\n> > inner", 20, false);
    EXPECT_LINES(&d, "\xE2\x94\x82 quoted words that", "\xE2\x94\x82 wrap around", "\xE2\x94\x82",
                 "\xE2\x94\x82 \xE2\x94\x82 inner");
    assert_true(mds(&d, 1, "\xE2\x94\x82") & MD_QUOTE);
    assert_true(mds(&d, 1, "wrap") & MD_QUOTE);
    /* Code in a list item: the label takes the marker. */
    render(&d, "1. run:\n\n   ```sh\n   make\n   ```", 40, false);
    EXPECT_LINES(&d, "1. run:", "", "   [1] sh", "   make");
    /* Nesting deeper than the pane allows keeps text room: half the width. */
    render(&d, "> > > > > > > > > > > > > > > > > > > > deep words here", 20, false);
    assert_true(d.n_lines >= 1);
    assert_non_null(strstr(mdl(&d, 0), "\xE2\x94\x82 deep words"));
    md_doc_free(&d);
}

static void test_markdown_tables(void **state)
{
    (void)state;
    struct md_doc d = {0};
    const char *t = "| Name | n | Note |\n"
                    "|------|--:|:----:|\n"
                    "| a | 1 | x |\n"
                    "| \xE4\xB8\x96\xE7\x95\x8C | 22 | wide |\n";
    render(&d, t, 60, false);
    EXPECT_LINES(&d,
                 "\xE2\x94\x8C\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\xAC"
                 "\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\xAC"
                 "\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x90",
                 "\xE2\x94\x82 Name \xE2\x94\x82  n \xE2\x94\x82 Note \xE2\x94\x82",
                 "\xE2\x94\x9C\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\xBC"
                 "\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\xBC"
                 "\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\xA4",
                 "\xE2\x94\x82 a    \xE2\x94\x82  1 \xE2\x94\x82  x   \xE2\x94\x82",
                 /* a CJK cell is two columns a character: padded to the same edge */
                 "\xE2\x94\x82 \xE4\xB8\x96\xE7\x95\x8C \xE2\x94\x82 22 \xE2\x94\x82 wide \xE2\x94\x82",
                 "\xE2\x94\x94\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\xB4"
                 "\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\xB4"
                 "\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x80\xE2\x94\x98");
    for (size_t i = 0; i < d.n_lines; i++) /* aligned: every row as wide as the border */
        assert_int_equal(text_width(mdl(&d, i), strlen(mdl(&d, i))), 20);
    assert_true(mds(&d, 1, "Name") & MD_BOLD); /* the header row */
    assert_false(mds(&d, 3, "a") & MD_BOLD);
    assert_true(mds(&d, 0, "\xE2\x94\x8C") & MD_RULE);

    /* Wider than the pane: the widest column narrows and its cells wrap;
     * every row still ends on the same border. */
    const char *w = "| k | description |\n|---|---|\n| 1 | a long description of the first thing |\n";
    render(&d, w, 24, false);
    assert_true(d.n_lines > 5);
    int width0 = text_width(mdl(&d, 0), strlen(mdl(&d, 0)));
    assert_true(width0 <= 24);
    for (size_t i = 0; i < d.n_lines; i++)
        assert_int_equal(text_width(mdl(&d, i), strlen(mdl(&d, i))), width0);
    assert_int_equal(width0, 24);
    assert_string_equal(mdl(&d, 3), "\xE2\x94\x82 1 \xE2\x94\x82 a long           \xE2\x94\x82");
    assert_string_equal(mdl(&d, 4), "\xE2\x94\x82   \xE2\x94\x82 description of   \xE2\x94\x82");
    /* So many columns that not even one each fits: cut at the edge. */
    render(&d, "|a|b|c|d|e|f|g|h|i|\n|---|---|---|---|---|---|---|---|---|\n|1|2|3|4|5|6|7|8|9|", 12, false);
    assert_int_equal(d.n_lines, 5);
    for (size_t i = 0; i < d.n_lines; i++)
        assert_int_equal(text_width(mdl(&d, i), strlen(mdl(&d, i))), 12);
    /* A header row alone while the delimiter row streams in is text, and
     * the half-typed delimiter is not shown. */
    render(&d, "| a | b |\n|--", 40, true);
    EXPECT_LINES(&d, "| a | b |");
    render(&d, "| a | b |\n|---|---|", 40, true);
    EXPECT_LINES(&d, "| a | b |"); /* it could still grow: "|---|---|-" */
    render(&d, "| a | b |\n|---|---|\n", 40, true);
    assert_int_equal(d.n_lines, 3); /* a table already, header only */
    md_doc_free(&d);
}

/* Every prefix of a reply, as it streams, renders within the width, never
 * shows a fence, never makes the paragraph above a heading for a frame, and
 * numbers its code blocks as the whole reply will. */
static void test_markdown_streaming_prefixes(void **state)
{
    (void)state;
    const char *src = "# Plan\n"
                      "Intro with **bold**, `code` and [a link](http://e.com).\n"
                      "Next line\n"
                      "---\n"
                      "\n"
                      "1. step one\n"
                      "2. step two\n"
                      "   - sub\n"
                      "\n"
                      "> a quote\n"
                      "> that wraps on and on\n"
                      "\n"
                      "```python\n"
                      "print('\xE4\xB8\x96\xE7\x95\x8C')\n"
                      "```\n"
                      "| a | b |\n"
                      "|---|---|\n"
                      "| 1 | 2 |\n"
                      "\n"
                      "~~~\n"
                      "second\n"
                      "~~~\n"
                      "Done \xF0\x9F\x8E\x89 \xE4\xBD\xA0\xE5\xA5\xBD\n";
    struct md_doc d = {0};
    size_t n = strlen(src);
    int last_code = 0;
    char *buf = malloc(n + 1);
    assert_non_null(buf);
    for (size_t k = 0; k <= n; k++) {
        memcpy(buf, src, k);
        buf[k] = 0;
        render(&d, buf, 30, true);
        assert_true(d.n_code >= last_code);
        last_code = d.n_code;
        for (size_t i = 0; i < d.n_lines; i++) {
            /* "Next line" stays text while "---" arrives; the rule comes
             * with the whole line, as a heading of "Next line" (CommonMark). */
            if (strcmp(mdl(&d, i), "Next line") == 0 && k < strlen("# Plan\nIntro with **bold**, `code` and "
                                                                   "[a link](http://e.com).\nNext line\n---\n"))
                assert_false(d.sty[d.lines[i].off] & MD_HEADING);
            assert_null(strstr(mdl(&d, i), "|--"));
        }
    }
    assert_int_equal(last_code, 2);
    free(buf);
    /* Done: the same as the last prefix. */
    render(&d, src, 30, false);
    assert_int_equal(d.n_code, 2);
    md_doc_free(&d);
}

static void test_markdown_wide_chars(void **state)
{
    (void)state;
    struct md_doc d = {0};
    /* 20 CJK characters (40 columns) and emoji wrap at 10 columns without
     * splitting a character. */
    render(&d,
           "\xE4\xB8\x80\xE4\xBA\x8C\xE4\xB8\x89\xE5\x9B\x9B\xE4\xBA\x94\xE5\x85\xAD\xE4\xB8\x83\xE5\x85\xAB"
           "\xE4\xB9\x9D\xE5\x8D\x81\xE4\xB8\x80\xE4\xBA\x8C\xE4\xB8\x89\xE5\x9B\x9B\xE4\xBA\x94\xE5\x85\xAD"
           "\xE4\xB8\x83\xE5\x85\xAB\xE4\xB9\x9D\xE5\x8D\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80",
           10, false);
    assert_int_equal(d.n_lines, 5);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(text_width(mdl(&d, i), strlen(mdl(&d, i))), 10);
    assert_string_equal(mdl(&d, 4), "\xF0\x9F\x98\x80\xF0\x9F\x98\x80");
    /* Invalid bytes are measured as one column each and never overflow. */
    render(&d, "\xFF\xFE **\xC3** `\x80` - \x01\x02", 8, false);
    md_doc_free(&d);
}

/* ---- meters ---- */

static void test_number_formats(void **state)
{
    (void)state;
    char b[32];
    fmt_bytes(512, b, sizeof b);
    assert_string_equal(b, "512 B");
    fmt_bytes(1536, b, sizeof b);
    assert_string_equal(b, "1.50 KiB");
    fmt_bytes(135ull << 20, b, sizeof b);
    assert_string_equal(b, "135 MiB");
    fmt_bytes(80ull << 30, b, sizeof b);
    assert_string_equal(b, "80.0 GiB");
    fmt_bytes(ENGINE_UNKNOWN, b, sizeof b);
    assert_string_equal(b, "n/a");
    fmt_bytes(0, b, sizeof b);
    assert_string_equal(b, "0 B"); /* a real zero stays zero */

    fmt_rate(NAN, b, sizeof b);
    assert_string_equal(b, "n/a");
    fmt_rate(-1, b, sizeof b);
    assert_string_equal(b, "n/a");
    fmt_rate(3.14159, b, sizeof b);
    assert_string_equal(b, "3.14");
    fmt_rate(123.45, b, sizeof b);
    assert_string_equal(b, "123.5");
    fmt_rate(4321.2, b, sizeof b);
    assert_string_equal(b, "4321");

    fmt_duration(0.85, b, sizeof b);
    assert_string_equal(b, "850 ms");
    fmt_duration(1.234, b, sizeof b);
    assert_string_equal(b, "1.23 s");
    fmt_duration(125, b, sizeof b);
    assert_string_equal(b, "2m05s");
    fmt_duration(NAN, b, sizeof b);
    assert_string_equal(b, "n/a");

    fmt_unit(61.54, 1, "W", b, sizeof b);
    assert_string_equal(b, "61.5 W");
    fmt_unit(0, 0, "W", b, sizeof b);
    assert_string_equal(b, "n/a");
}

static void test_meter_bar(void **state)
{
    (void)state;
    char b[128];
    meter_bar(0.5, 4, b, sizeof b);
    assert_string_equal(b, "\xE2\x96\x88\xE2\x96\x88  ");
    meter_bar(1.7, 3, b, sizeof b);
    assert_string_equal(b, "\xE2\x96\x88\xE2\x96\x88\xE2\x96\x88");
    meter_bar(NAN, 2, b, sizeof b);
    assert_string_equal(b, "  ");
    meter_bar(1.0 / 16, 2, b, sizeof b); /* one eighth of the first cell */
    assert_string_equal(b, "\xE2\x96\x8F ");
    /* Too small a buffer: truncated at a whole cell, still terminated. */
    size_t n = meter_bar(1.0, 10, b, 8);
    assert_int_equal(n, 6);
    assert_int_equal(strlen(b), 6);
}

static void test_mem_split(void **state)
{
    (void)state;
    struct engine_memory m = {.weights = 4000, .kv_cache = 1000, .scratch = 10, .device_total = 10000,
                              .device_free = 3000, .on_gpu = true};
    struct mem_split s;
    meters_mem_split(&m, 20, &s);
    assert_true(s.valid);
    int sum = 0;
    for (int i = 0; i < MEM_SEG_COUNT; i++)
        sum += s.cols[i];
    assert_int_equal(sum, 20);
    assert_int_equal(s.bytes[MEM_OTHER], 10000 - 3000 - 5010);
    assert_int_equal(s.cols[MEM_WEIGHTS], 8);
    assert_int_equal(s.cols[MEM_SCRATCH], 1); /* tiny but present: one cell */
    assert_int_equal(s.cols[MEM_FREE], 6);

    /* Engine buffers beyond what the device reports used (mmap'd weights on
     * the CPU): "other" is 0, never negative, and the cells still sum. */
    m = (struct engine_memory){.weights = 9000, .kv_cache = 500, .scratch = 0, .device_total = 10000,
                               .device_free = 8000};
    meters_mem_split(&m, 7, &s);
    assert_int_equal(s.bytes[MEM_OTHER], 0);
    sum = 0;
    for (int i = 0; i < MEM_SEG_COUNT; i++)
        sum += s.cols[i];
    assert_int_equal(sum, 7);

    m.device_total = ENGINE_UNKNOWN;
    meters_mem_split(&m, 20, &s);
    assert_false(s.valid);
    m = (struct engine_memory){.weights = ENGINE_UNKNOWN, .kv_cache = ENGINE_UNKNOWN, .scratch = ENGINE_UNKNOWN,
                               .device_total = 100, .device_free = ENGINE_UNKNOWN};
    meters_mem_split(&m, 3, &s);
    assert_true(s.valid);
    assert_int_equal(s.cols[MEM_OTHER], 3);
}

static void test_roofline(void **state)
{
    (void)state;
    assert_true(fabs(meters_roofline_pct(100000000, 30, 3e9) - 100.0) < 1e-9);
    assert_true(fabs(meters_roofline_pct(50000000, 30, 3e9) - 50.0) < 1e-9);
    assert_true(isnan(meters_roofline_pct(100, 30, 0)));
    assert_true(isnan(meters_roofline_pct(ENGINE_UNKNOWN, 30, 1e9)));
    assert_true(isnan(meters_roofline_pct(100, NAN, 1e9)));
    assert_true(fabs(meters_joules_per_token(10, 4) - 2.5) < 1e-12);
    assert_true(isnan(meters_joules_per_token(10, 0)));
    assert_true(isnan(meters_joules_per_token(NAN, 3)));
}

/* ---- themes ---- */

static void assert_theme_equal(const struct theme *a, const struct theme *b)
{
    assert_string_equal(a->name, b->name);
    for (int i = 0; i < TH_COUNT; i++) {
        assert_int_equal(a->s[i].fg, b->s[i].fg);
        assert_int_equal(a->s[i].bg, b->s[i].bg);
        assert_int_equal(a->s[i].attrs, b->s[i].attrs);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_theme_parse(void **state)
{
    (void)state;
    struct theme t, d;
    char err[256] = "";
    theme_default(&d);
    assert_string_equal(d.name, "dark");
    assert_int_equal(d.s[TH_USER].fg, 75); /* from themes/dark.theme */
    assert_true(d.s[TH_USER].attrs & THA_BOLD);

    const char *ok = "# mine\n\nuser = red default bold underline\ncode_block=252 236 # trailing\n";
    assert_int_equal(theme_parse(ok, strlen(ok), "mine.theme", &t, err, sizeof err), 0);
    assert_int_equal(t.s[TH_USER].fg, 1);
    assert_int_equal(t.s[TH_USER].bg, THEME_DEFAULT_COLOR);
    assert_int_equal(t.s[TH_USER].attrs, THA_BOLD | THA_UNDERLINE);
    assert_int_equal(t.s[TH_CODE_BLOCK].bg, 236);
    assert_int_equal(t.s[TH_ERROR].fg, d.s[TH_ERROR].fg); /* unnamed: default's */

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"user = red\nbogus = 1\n", "bad.theme:2: unknown element 'bogus'"},
        {"\n\nuser = 256\n", "bad.theme:3: '256' is not a colour"},
        {"user red\n", "bad.theme:1: expected ELEMENT"},
        {"user =\n", "bad.theme:1: 'user' has no colour"},
        {"user = 1 2 blink\n", "bad.theme:1: 'blink' is not a colour"},
        {"user = -3\n", "bad.theme:1: '-3'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        assert_int_equal(theme_parse(bad[i].text, strlen(bad[i].text), "bad.theme", &t, err, sizeof err), -1);
        assert_non_null(strstr(err, bad[i].want));
        /* Falls back to the default theme. */
        assert_theme_equal(&t, &d);
    }
}

static void test_theme_load(void **state)
{
    (void)state;
    char dir[4096], sub[4200], path[4300], err[512];
    struct theme t, d;
    theme_default(&d);
    test_tmpdir(dir, sizeof dir, "theme");
    assert_true(dir[0]);

    const char *const *names = theme_builtin_names();
    int found = 0;
    for (size_t i = 0; names[i]; i++) {
        assert_int_equal(theme_load(names[i], dir, &t, err, sizeof err), 0);
        found += !strcmp(names[i], "dark") + !strcmp(names[i], "light") + !strcmp(names[i], "high-contrast");
    }
    assert_int_equal(found, 3);
    assert_int_equal(theme_load("light", dir, &t, err, sizeof err), 0);
    assert_string_equal(t.name, "light");
    assert_int_not_equal(t.s[TH_USER].fg, d.s[TH_USER].fg);

    assert_int_equal(theme_load("nope", dir, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "no theme 'nope'"));
    assert_int_equal(theme_load("../etc/passwd", dir, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "not valid"));

    /* A user theme wins over a built-in; a malformed one names file and line. */
    snprintf(sub, sizeof sub, "%s/themes", dir);
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/light.theme", sub);
    write_file(path, "user = 200\n");
    assert_int_equal(theme_load("light", dir, &t, err, sizeof err), 0);
    assert_int_equal(t.s[TH_USER].fg, 200);
    snprintf(path, sizeof path, "%s/broken.theme", sub);
    write_file(path, "user = 1\n# ok\nheading = purple\n");
    assert_int_equal(theme_load("broken", dir, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "broken.theme:3:"));
    assert_theme_equal(&t, &d);

    char *user[8];
    size_t n = theme_user_names(dir, user, 0, 8);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        free(user[i]);
}

static void test_color_to8(void **state)
{
    (void)state;
    assert_int_equal(theme_color_to8(-1), -1);
    assert_int_equal(theme_color_to8(3), 3);
    assert_int_equal(theme_color_to8(9), 1);   /* bright red -> red */
    assert_int_equal(theme_color_to8(196), 1); /* pure red */
    assert_int_equal(theme_color_to8(46), 2);  /* pure green */
    assert_int_equal(theme_color_to8(21), 4);  /* pure blue */
    assert_int_equal(theme_color_to8(226), 3); /* yellow */
    assert_int_equal(theme_color_to8(235), 0); /* dark grey */
    assert_int_equal(theme_color_to8(252), 7); /* light grey */
    assert_int_equal(theme_color_to8(231), 7); /* white */
    assert_int_equal(theme_color_to8(16), 0);  /* black */
}

/* ---- config ---- */

/* ---- memory bandwidth probe ---- */

/* No figure can be asserted for an unknown machine; what can be is that it is
 * a real, positive rate with any thread count, that the median lies within
 * the spread, and that a cancelled probe reports nothing rather than a
 * made-up number. */
static void test_membw_measure(void **state)
{
    (void)state;
    struct membw_figure f;
    assert_true(membw_measure((size_t)32 << 20, 0, 5, NULL, &f));
    assert_true(isfinite(f.median));
    assert_true(f.median > 1e8); /* over 0.1 GB/s: anything less is a broken timer or loop */
    assert_true(f.min <= f.median && f.median <= f.max);
    assert_int_equal(f.passes, 5);
    assert_true(membw_measure((size_t)8 << 20, 1, 1, NULL, &f));
    assert_true(isfinite(f.median) && f.median > 0 && f.min == f.max);
    /* More threads than words to share, and odd sizes, still work. */
    assert_true(membw_measure(4096 + 7, 64, 4, NULL, &f));
    assert_true(isfinite(f.median) && f.median > 0);
    atomic_int stop = 1;
    assert_false(membw_measure((size_t)8 << 20, 2, 2, &stop, &f));
    assert_true(f.median == 0);
    assert_false(membw_measure(10, 1, 1, NULL, &f)); /* under 64 bytes: nothing to read */
}

/* The measured figure is kept per CPU and thread count; the last one wins. */
static void test_membw_cache(void **state)
{
    (void)state;
    char dir[1024];
    test_tmpdir(dir, sizeof dir, "membw");
    assert_true(dir[0] != 0);
    char *old = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    setenv("XDG_CACHE_HOME", dir, 1);
    assert_true(membw_cache_get("Test CPU", 2) == 0);
    membw_cache_put("Test CPU", 2, 12.5e9);
    membw_cache_put("Test CPU", 4, 20e9);
    membw_cache_put("Other CPU", 2, 1e9);
    membw_cache_put("Test CPU", 2, 13e9);
    membw_cache_put("Bad\tname", 2, 5e9); /* would break the line format: skipped */
    membw_cache_put("Test CPU", 8, -1);    /* not a figure: skipped */
    assert_true(membw_cache_get("Test CPU", 2) == 13e9);
    assert_true(membw_cache_get("Test CPU", 4) == 20e9);
    assert_true(membw_cache_get("Other CPU", 2) == 1e9);
    assert_true(membw_cache_get("Test CPU", 8) == 0);
    assert_true(membw_cache_get("Bad\tname", 2) == 0);
    if (old) {
        setenv("XDG_CACHE_HOME", old, 1);
        free(old);
    } else {
        unsetenv("XDG_CACHE_HOME");
    }
}

static void test_config_parse(void **state)
{
    (void)state;
    struct kv_options o;
    memset(&o, 0, sizeof o);
    char err[256] = "";
    setenv("HOME", "/home/someone", 1);
    const char *text = "# defaults\n"
                       "model = ~/models/x.gguf\n"
                       "backend = cpu\n"
                       "ctx_size = 2048   # comment\n"
                       "temperature = 0.3\n"
                       "top_k=20\n"
                       "system = \"  be brief # really  \"\n"
                       "theme = light\n"
                       "seed = 42\n"
                       "history = off\n"
                       "mem_bandwidth_gbs = 51.2\n";
    assert_int_equal(config_parse(text, strlen(text), "config", &o, err, sizeof err), 0);
    assert_string_equal(o.model, "/home/someone/models/x.gguf");
    assert_int_equal(o.backend, ENGINE_BACKEND_CPU);
    assert_int_equal(o.ctx_size, 2048);
    assert_true(fabsf(o.sampling.temperature - 0.3f) < 1e-6f);
    assert_int_equal(o.sampling.top_k, 20);
    assert_string_equal(o.system, "  be brief # really  ");
    assert_true(o.system_set);
    assert_string_equal(o.theme, "light");
    assert_int_equal(o.sampling.seed, 42);
    assert_true(o.seed_set);
    assert_true(o.no_history);
    assert_true(fabs(o.mem_bandwidth_gbs - 51.2) < 1e-9);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"backend = tpu\n", "cfg:1: backend: 'tpu' is not auto, cpu or cuda"},
        {"\ntop_p = 0\n", "cfg:2: top_p:"},
        {"top_p = 1.5\n", "cfg:1: top_p:"},
        {"temperature = hot\n", "cfg:1: temperature:"},
        {"ctx_size = -1\n", "cfg:1: ctx_size:"},
        {"top_k = 3.5\n", "cfg:1: top_k:"},
        {"colour = red\n", "cfg:1: unknown setting 'colour'"},
        {"just words\n", "cfg:1: expected KEY = VALUE"},
        {"system = \"open\n", "cfg:1: unterminated quoted value"},
        {"seed = -5\n", "cfg:1: seed:"},
        {"history = maybe\n", "cfg:1: history:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        assert_int_equal(config_parse(bad[i].text, strlen(bad[i].text), "cfg", &o, err, sizeof err), -1);
        if (!strstr(err, bad[i].want))
            fail_msg("config %zu: got \"%s\", want \"%s\"", i, err, bad[i].want);
    }
}

static void test_config_load(void **state)
{
    (void)state;
    char dir[4096], path[4200], err[512] = "";
    struct kv_options o;
    memset(&o, 0, sizeof o);
    test_tmpdir(dir, sizeof dir, "config");
    assert_true(dir[0]);
    /* No file at the default place: fine, nothing changes. */
    setenv("XDG_CONFIG_HOME", dir, 1);
    assert_int_equal(config_load(NULL, &o, err, sizeof err), 0);
    assert_int_equal(o.ctx_size, 0);
    /* An explicit path that is missing is an error naming it. */
    snprintf(path, sizeof path, "%s/missing.conf", dir);
    assert_int_equal(config_load(path, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing.conf"));
    /* The default file is found through XDG_CONFIG_HOME. */
    snprintf(path, sizeof path, "%s/kvchat", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/kvchat/config", dir);
    write_file(path, "ctx_size = 512\nthreads = x\n");
    assert_int_equal(config_load(NULL, &o, err, sizeof err), -1);
    assert_int_equal(o.ctx_size, 512); /* lines before the bad one applied */
    char want[4300];
    snprintf(want, sizeof want, "%s:2: threads:", path);
    assert_non_null(strstr(err, want));
}

/* Hostile config and theme input (style rule 11; tests/fuzz/fuzz_config.c
 * and fuzz_theme.c explore the same space): each case is refused with one
 * line "FILE:LINE: ..." naming the right line, or parses cleanly; none may
 * crash or read past the text. Each text is copied to an exact-size heap
 * buffer so a sanitizer build catches an overread. */
struct hostile_case {
    const char *text;
    size_t len;       /* 0 = strlen(text) */
    const char *want; /* NULL = parses cleanly; else the start of the error */
};

/* "FILE:LINE: what", one line. */
static void assert_one_line_error(const char *err, const char *want, size_t i)
{
    if (strncmp(err, want, strlen(want)) != 0 || strchr(err, '\n'))
        fail_msg("hostile case %zu: got \"%s\", want \"%s...\" on one line", i, err, want);
}

static int parse_copy(bool theme, const char *text, size_t len, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    int rc;
    if (theme) {
        struct theme t;
        rc = theme_parse(copy, len, "th", &t, err, errlen);
    } else {
        struct kv_options *o = calloc(1, sizeof *o);
        assert_non_null(o);
        rc = config_parse(copy, len, "cfg", o, err, errlen);
        free(o);
    }
    free(copy);
    return rc;
}

static void run_hostile(bool theme, const struct hostile_case *c, size_t n)
{
    char err[256];
    for (size_t i = 0; i < n; i++) {
        size_t len = c[i].len ? c[i].len : strlen(c[i].text);
        err[0] = 0;
        int rc = parse_copy(theme, c[i].text, len, err, sizeof err);
        if (!c[i].want) {
            if (rc != 0)
                fail_msg("hostile case %zu: want a clean parse, got \"%s\"", i, err);
        } else {
            assert_int_equal(rc, -1);
            assert_one_line_error(err, c[i].want, i);
        }
    }
}

/* LEN bytes of REPEAT over and over (the last copy cut short), NUL-terminated. */
static char *repeated(const char *repeat, size_t len)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    size_t r = strlen(repeat);
    for (size_t i = 0; i < len; i++)
        s[i] = repeat[i % r];
    s[len] = 0;
    return s;
}

static void test_config_theme_hostile(void **state)
{
    (void)state;
    setenv("HOME", "/home/someone", 1);
    char *long9k = repeated("a", 9000), *long600 = repeated("b", 600);
    char *sys_long = repeated("s", 8300), *model_long = repeated("m", 5000);
    char two_lines[9100], sys_line[8400], model_line[5100], th_long[700];
    snprintf(two_lines, sizeof two_lines, "threads = 2\n%s\n", long9k);
    snprintf(sys_line, sizeof sys_line, "system = %.8250s\n", sys_long);
    snprintf(model_line, sizeof model_line, "model = %s\n", model_long);
    snprintf(th_long, sizeof th_long, "user = 1\n%s\n", long600);

    const struct hostile_case cfg[] = {
        {long9k, 0, "cfg:1: line too long"},
        {two_lines, 0, "cfg:2: line too long"},
        {sys_line, 0, "cfg:1: system: text longer than"},
        {model_line, 0, "cfg:1: model: path too long"},
        {"ctx_size = 1\0 2\n", 16, "cfg:1: NUL byte"},
        {"\n\0", 2, "cfg:2: NUL byte"},
        {"\0\0\0\0", 4, "cfg:1: NUL byte"},
        {"\xff\xfe = 1\n", 0, "cfg:1: unknown setting"},
        /* text that is not UTF-8 is refused as at every other door */
        {"system = caf\xc3\x28 \xff\xfe\xed\xa0\x80\n", 0, "cfg:1: system is not valid UTF-8 (byte 3)"},
        {"theme = \xc0\xaf\n", 0, NULL},
        {"backend = cpu\xc3\n", 0, "cfg:1: backend:"},
        {"ctx_size = 99999999999999999999999999\n", 0, "cfg:1: ctx_size:"},
        {"threads = 9223372036854775808\n", 0, "cfg:1: threads:"},
        {"threads = -9223372036854775809\n", 0, "cfg:1: threads:"},
        {"threads = 0x10\n", 0, "cfg:1: threads:"},
        {"temperature = 1e999\n", 0, "cfg:1: temperature:"},
        {"temperature = nan\n", 0, "cfg:1: temperature:"},
        {"temperature = inf\n", 0, "cfg:1: temperature:"},
        {"min_p = 1e-400\n", 0, "cfg:1: min_p:"}, /* underflow: strtod sets ERANGE */
        {"seed = 18446744073709551616\n", 0, "cfg:1: seed:"},
        {"seed = 18446744073709551615\n", 0, NULL},
        {"seed = +1\n", 0, "cfg:1: seed:"},
        {"max_tokens = 16777217\n", 0, "cfg:1: max_tokens:"},
        {"system = \"abc\n", 0, "cfg:1: unterminated quoted value"},
        {"system = \"\n", 0, "cfg:1: unterminated quoted value"},
        {"system = \"a\" b\n", 0, "cfg:1: unterminated quoted value"},
        {"system = \"a\" # fine\n", 0, NULL},
        {"system = \"\"\"\n", 0, NULL},
        {"= 1\n", 0, "cfg:1: unknown setting ''"},
        {"threads = 2\rctx_size = 3\r", 0, "cfg:1: threads:"},
        {"\r\n\t\v\f \n", 0, NULL},
        {"threads = 1\n\n\n\nthreads\n", 0, "cfg:5: expected KEY = VALUE"},
    };
    run_hostile(false, cfg, sizeof cfg / sizeof *cfg);

    const struct hostile_case th[] = {
        {long600, 0, "th:1: line too long"},
        {th_long, 0, "th:2: line too long"},
        {"user = 1\0 bold\n", 15, "th:1: NUL byte"},
        {"\0", 1, "th:1: NUL byte"},
        {"\xff\xfe = 1\n", 0, "th:1: unknown element"},
        {"user = caf\xc3\x28\n", 0, "th:1: 'caf"},
        {"user = 1 2 b\xc3\n", 0, "th:1: 'b"},
        {"user = 99999999999999999999999\n", 0, "th:1: '99999999999999999999999' is not a colour"},
        {"user = -9223372036854775809\n", 0, "th:1: '-9223372036854775809' is not a colour"},
        {"user = 0x10\n", 0, "th:1: '0x10' is not a colour"},
        {"user = +5\n", 0, "th:1: '+5' is not a colour"},
        {"user = 1 2 3\n", 0, "th:1: '3' is not a colour"},
        {"user = \"red\n", 0, "th:1: '\"red' is not a colour"},
        {"user = \"red\"\n", 0, "th:1: '\"red\"' is not a colour"},
        {"user = # nothing\n", 0, "th:1: 'user' has no colour"},
        {"# = =\n=\n", 0, "th:2: unknown element ''"},
        {"user = 1\rheading = 2\r", 0, "th:1: 'heading' is not"}, /* \r splits words, not lines */
        {"name = \xff anything\nuser = 255 255 normal\n", 0, NULL},
        {"\r\n\t\v\f \n", 0, NULL},
    };
    run_hostile(true, th, sizeof th / sizeof *th);

    /* 1 MB: many good lines parse; one line that long, or all NULs, is refused. */
    char err[256];
    char *mb_cfg = repeated("threads = 4\n", 1000000);
    char *mb_th = repeated("user = 1 2 bold\n", 1000000);
    char *mb_one = repeated("x", 1000000);
    char *mb_nul = calloc(1, 1000000);
    assert_non_null(mb_nul);
    mb_cfg[999999] = mb_th[999999] = '\n'; /* no cut-short last line */
    const struct hostile_case mb_c[] = {
        {mb_cfg, 1000000, "cfg:83334: expected KEY"}, /* the cut-short last line */
        {mb_one, 0, "cfg:1: line too long"},
        {mb_nul, 1000000, "cfg:1: line too long"},
    };
    run_hostile(false, mb_c, 3);
    const struct hostile_case mb_t[] = {
        {mb_th, 1000000, NULL}, /* 62500 whole lines */
        {mb_one, 0, "th:1: line too long"},
        {mb_nul, 1000000, "th:1: line too long"},
    };
    run_hostile(true, mb_t, 3);
    /* Whole good lines only: a clean parse. */
    size_t cfg_whole = 1000000 / 12 * 12, th_whole = 1000000 / 16 * 16;
    assert_int_equal(parse_copy(false, mb_cfg, cfg_whole, err, sizeof err), 0);
    assert_int_equal(parse_copy(true, mb_th, th_whole, err, sizeof err), 0);

    /* The same through the file readers. */
    char dir[4096], path[4300];
    struct kv_options *o = calloc(1, sizeof *o);
    struct theme t;
    assert_non_null(o);
    test_tmpdir(dir, sizeof dir, "hostile");
    assert_true(dir[0]);
    snprintf(path, sizeof path, "%s/big.conf", dir);
    mb_cfg[cfg_whole] = 0;
    write_file(path, mb_cfg);
    assert_int_equal(config_load(path, o, err, sizeof err), 0);
    assert_int_equal(o->threads, 4);
    write_file(path, mb_one);
    assert_int_equal(config_load(path, o, err, sizeof err), -1);
    assert_non_null(strstr(err, "big.conf:1: line too long"));
    assert_null(strchr(err, '\n'));
    snprintf(path, sizeof path, "%s/themes", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/themes/big.theme", dir);
    mb_th[th_whole] = 0;
    write_file(path, mb_th);
    assert_int_equal(theme_load("big", dir, &t, err, sizeof err), 0);
    assert_int_equal(t.s[TH_USER].attrs, THA_BOLD);
    write_file(path, mb_one);
    assert_int_equal(theme_load("big", dir, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "big.theme:1: line too long"));
    assert_null(strchr(err, '\n'));
    /* past the size limit the file is refused whole, not cut and parsed */
    {
        size_t big = (1u << 20) + 100;
        char *over = malloc(big + 1);
        assert_non_null(over);
        for (size_t i = 0; i < big; i++)
            over[i] = i % 64 == 63 ? '\n' : '#';
        over[big] = 0;
        write_file(path, over);
        assert_int_equal(theme_load("big", dir, &t, err, sizeof err), -1);
        assert_non_null(strstr(err, "big.theme: larger than"));
        assert_null(strchr(err, '\n'));
        free(over);
    }

    free(o);
    free(mb_cfg);
    free(mb_th);
    free(mb_one);
    free(mb_nul);
    free(long9k);
    free(long600);
    free(sys_long);
    free(model_long);
}

/* ---- commands ---- */

static void test_command_parse(void **state)
{
    (void)state;
    static struct command c;
    char err[256];
    size_t off;
    assert_int_equal(cmd_parse("hello", &c, &off, err, sizeof err), CMD_TEXT);
    assert_int_equal(off, 0);
    assert_int_equal(cmd_parse("//etc/hosts is a file", &c, &off, err, sizeof err), CMD_TEXT);
    assert_int_equal(off, 1);

    assert_int_equal(cmd_parse("/quit", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.id, CMD_QUIT);
    /* /set alone shows the values: no "unknown key ''" */
    assert_int_equal(cmd_parse("/set", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.id, CMD_SET);
    assert_string_equal(c.arg, "");
    assert_int_equal(cmd_parse("/set temp 0.2 ", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.id, CMD_SET);
    assert_string_equal(c.arg, "temperature");
    assert_string_equal(c.arg2, "0.2");
    assert_int_equal(cmd_parse("/resume 42", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.num, 42);
    assert_int_equal(cmd_parse("/export json /tmp/out file.json", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "json");
    assert_string_equal(c.arg2, "/tmp/out file.json");
    assert_int_equal(cmd_parse("/rename  My chat  ", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "My chat");
    assert_int_equal(cmd_parse("/system", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "");
    assert_int_equal(cmd_parse("/copy", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.num, 0);
    assert_int_equal(cmd_parse("/copy 2", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.num, 2);
    assert_int_equal(cmd_parse("/theme high-contrast", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "high-contrast");

    static const struct {
        const char *line, *want;
    } bad[] = {
        {"/frobnicate", "unknown command /frobnicate"},
        {"/resume", "/resume needs a session ID"},
        {"/resume abc", "'abc' is not a positive number"},
        {"/delete 0", "'0' is not a positive number"},
        {"/resume 12x", "'12x'"},
        {"/quit now", "/quit takes no arguments"},
        {"/set colour 3", "unknown key 'colour'"},
        {"/set temp", "needs one value"},
        {"/export pdf f", "usage: /export md|json FILE"},
        {"/export md", "usage: /export md|json FILE"},
        {"/rename", "/rename needs a title"},
        {"/search   ", "/search needs some text"},
        {"/theme a b", "needs one name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        assert_int_equal(cmd_parse(bad[i].line, &c, &off, err, sizeof err), CMD_ERROR);
        if (!strstr(err, bad[i].want))
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].line, err, bad[i].want);
    }
    /* Every command is in the help. */
    for (int i = 0; i < CMD_COUNT; i++) {
        char want[32];
        snprintf(want, sizeof want, "/%s", cmd_name((enum cmd_id)i));
        assert_non_null(strstr(cmd_help_text(), want));
    }
}

static bool has(const char **out, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(out[i], s))
            return true;
    return false;
}

static void test_command_complete(void **state)
{
    (void)state;
    const char *out[32];
    size_t ws;
    const char *themes[] = {"dark", "light", "high-contrast", "dusk"};
    size_t n = cmd_complete("/re", 3, themes, 4, out, 32, &ws);
    assert_int_equal(n, 3);
    assert_true(has(out, n, "resume") && has(out, n, "rename") && has(out, n, "retry"));
    assert_int_equal(ws, 1);
    n = cmd_complete("/", 1, themes, 4, out, 32, &ws);
    assert_int_equal(n, CMD_COUNT);
    n = cmd_complete("/set t", 6, themes, 4, out, 32, &ws);
    assert_int_equal(n, 3);
    assert_true(has(out, n, "temp") && has(out, n, "top_k") && has(out, n, "top_p"));
    assert_int_equal(ws, 5);
    n = cmd_complete("/theme d", 8, themes, 4, out, 32, &ws);
    assert_int_equal(n, 2);
    assert_true(has(out, n, "dark") && has(out, n, "dusk"));
    n = cmd_complete("/export j", 9, themes, 4, out, 32, &ws);
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "json");
    /* Second argument, plain text and unknown commands: nothing. */
    assert_int_equal(cmd_complete("/set temp 0", 11, themes, 4, out, 32, &ws), 0);
    assert_int_equal(cmd_complete("hello wo", 8, themes, 4, out, 32, &ws), 0);
    assert_int_equal(cmd_complete("/xyz a", 6, themes, 4, out, 32, &ws), 0);
    /* CAP smaller than the matches: count is still total. */
    assert_int_equal(cmd_complete("/", 1, themes, 4, out, 2, &ws), CMD_COUNT);
    /* /model's argument from the model names, spaces and all. */
    const char *models[] = {"SmolLM2.gguf", "gemma 3.gguf", "gemma-2.gguf"};
    n = cmd_complete_model("/model ge", 9, models, 3, out, 32, &ws);
    assert_int_equal(n, 2);
    assert_int_equal(ws, 7);
    assert_true(has(out, n, "gemma 3.gguf") && has(out, n, "gemma-2.gguf"));
    n = cmd_complete_model("/model gemma 3", 14, models, 3, out, 32, &ws);
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "gemma 3.gguf");
    assert_int_equal(cmd_complete_model("/model", 6, models, 3, out, 32, &ws), 0);
    assert_int_equal(cmd_complete_model("/models x", 9, models, 3, out, 32, &ws), 0);
    assert_int_equal(cmd_complete_model("/theme g", 8, models, 3, out, 32, &ws), 0);
}

/* ---- command policy ---- */

static void test_command_needs(void **state)
{
    (void)state;
    /* The commands that change the conversation a streaming reply belongs to,
     * or the settings it uses, wait for it; the rest run alongside. */
    static const enum cmd_id idle[] = {CMD_NEW,    CMD_RESUME, CMD_RETRY, CMD_EDIT,
                                       CMD_DELETE, CMD_SYSTEM, CMD_SET,  CMD_MODEL, CMD_VARIANT, CMD_THINK};
    static const enum cmd_id hist[] = {CMD_SESSIONS, CMD_RESUME, CMD_RENAME,
                                       CMD_DELETE,   CMD_SEARCH, CMD_EXPORT};
    for (int id = 0; id < CMD_COUNT; id++) {
        bool want_idle = false, want_hist = false;
        for (size_t i = 0; i < sizeof idle / sizeof *idle; i++)
            want_idle |= idle[i] == (enum cmd_id)id;
        for (size_t i = 0; i < sizeof hist / sizeof *hist; i++)
            want_hist |= hist[i] == (enum cmd_id)id;
        unsigned n = cmd_needs((enum cmd_id)id);
        if (want_idle != !!(n & CMD_NEEDS_IDLE) || want_hist != !!(n & CMD_NEEDS_HISTORY))
            fail_msg("/%s: needs %u", cmd_name((enum cmd_id)id), n);
        assert_int_equal(n & ~(unsigned)(CMD_NEEDS_IDLE | CMD_NEEDS_HISTORY), 0);
    }
    /* While a reply streams you can still stop it, look and copy. */
    assert_int_equal(cmd_needs(CMD_COPY), 0);
    assert_int_equal(cmd_needs(CMD_STATS), 0);
    assert_int_equal(cmd_needs(CMD_QUIT), 0);
    assert_int_equal(cmd_needs(CMD_COUNT), 0);
}

/* ---- the message list ---- */

static struct msg *add(struct msg_list *l, enum msg_kind k, const char *text, int64_t id)
{
    struct msg *m = msgs_add(l, k, text);
    assert_non_null(m);
    m->hist_id = id;
    return m;
}

static void test_msgs_pop_exchange(void **state)
{
    (void)state;
    struct msg_list l = {0};
    int64_t id = -1;
    assert_null(msgs_pop_exchange(&l, &id));
    assert_int_equal(id, 0);

    add(&l, MSG_SYSTEM, "be brief", 0);
    add(&l, MSG_USER, "first", 5);
    add(&l, MSG_ASSISTANT, "one", 6);
    add(&l, MSG_USER, "second", 9);
    add(&l, MSG_NOTICE, "context full: ...", 0);
    add(&l, MSG_ASSISTANT, "two", 10);
    add(&l, MSG_ERROR, "not saving: disk full", 0);
    assert_int_equal(msgs_last_user_id(&l), 9);
    /* Everything after the last message you sent goes with it. */
    char *t = msgs_pop_exchange(&l, &id);
    assert_string_equal(t, "second");
    assert_int_equal(id, 9);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[2].text, "one");
    free(t);
    /* A message that was never saved reports id 0: the history is left alone. */
    l.v[1].hist_id = 0;
    t = msgs_pop_exchange(&l, &id);
    assert_string_equal(t, "first");
    assert_int_equal(id, 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].kind, MSG_SYSTEM);
    free(t);
    /* No message of yours left: all goes, nothing is returned. */
    assert_int_equal(msgs_last_user_id(&l), 0);
    assert_null(msgs_pop_exchange(&l, &id));
    assert_int_equal(l.n, 0);
    /* The list is reusable after being emptied. */
    add(&l, MSG_USER, "again", 1);
    msgs_clear(&l);
    assert_int_equal(l.n, 0);
    msgs_free(&l);
    assert_null(l.v);
    msgs_free(&l); /* twice is harmless */
}

static const char *dl_text(const struct compose *c, size_t i);

/* /retry keeps the old reply hidden and numbers the turn's replies; the
 * shown one can be switched, and a hidden one is never copied or drawn. */
static void test_msgs_retry_keeps_variants(void **state)
{
    (void)state;
    struct msg_list l = {0};
    msgs_add(&l, MSG_USER, "q")->hist_id = 1;
    msgs_add(&l, MSG_ASSISTANT, "first")->hist_id = 2;
    msgs_add(&l, MSG_NOTICE, "context full: x");
    int64_t of = 0;
    char *t = msgs_retry(&l, &of);
    assert_string_equal(t, "q");
    free(t);
    assert_int_equal(of, 2);
    assert_int_equal(l.n, 2); /* the notice went with the attempt */
    assert_true(l.v[1].hidden);
    msgs_add(&l, MSG_ASSISTANT, "second")->hist_id = 3;
    msgs_number_variants(&l);
    int k, n;
    msgs_variant_now(&l, &k, &n);
    assert_int_equal(k, 2);
    assert_int_equal(n, 2);
    char *c = msgs_copy_target(&l, 0);
    assert_string_equal(c, "second");
    free(c);
    assert_null(msgs_variant_select(&l, 3));
    struct msg *m = msgs_variant_select(&l, 1);
    assert_non_null(m);
    assert_int_equal(m->hist_id, 2);
    c = msgs_copy_target(&l, 0);
    assert_string_equal(c, "first");
    free(c);
    struct compose cm = {0};
    compose_conversation(&cm, l.v, l.n, NULL, 0, 80, false);
    bool saw_badge = false, saw_hidden = false;
    for (size_t i = 0; i < cm.n_dl; i++) {
        saw_badge |= strstr(dl_text(&cm, i), "Assistant \xE2\x80\xB9" "1/2\xE2\x80\xBA") != NULL;
        saw_hidden |= strstr(dl_text(&cm, i), "second") != NULL;
    }
    assert_true(saw_badge);
    assert_false(saw_hidden);
    compose_free(&cm);
    msgs_free(&l);
}

static void test_msgs_copy_target(void **state)
{
    (void)state;
    struct msg_list l = {0};
    assert_null(msgs_copy_target(&l, 0));
    add(&l, MSG_USER, "hi", 1);
    assert_null(msgs_copy_target(&l, 0)); /* no reply yet */
    add(&l, MSG_ASSISTANT, "old\n```\nold block\n```\n", 2);
    add(&l, MSG_USER, "more", 3);
    const char *reply = "Two blocks:\n"
                        "```c\n"
                        "int a;\n"
                        "int b;\n"
                        "```\n"
                        "text\n"
                        "   ```\n" /* up to three spaces before a fence */
                        "second\n"
                        "    ```\n" /* four: inside the block, not a fence */
                        "   ```\n"
                        "```sh\n"
                        "unclosed\n"
                        "tail";
    add(&l, MSG_ASSISTANT, reply, 4);
    add(&l, MSG_NOTICE, "a notice after the reply", 0);
    add(&l, MSG_ASSISTANT, NULL, 0); /* still streaming: not a target */

    char *t = msgs_copy_target(&l, 0);
    assert_string_equal(t, reply);
    free(t);
    t = msgs_copy_target(&l, 1);
    assert_string_equal(t, "int a;\nint b;\n");
    free(t);
    t = msgs_copy_target(&l, 2);
    /* CommonMark: a fence indented three spaces takes up to three from each
     * of its lines, so the four-space line keeps one */
    assert_string_equal(t, "second\n ```\n");
    free(t);
    t = msgs_copy_target(&l, 3); /* an unclosed last block runs to the end */
    assert_string_equal(t, "unclosed\ntail");
    free(t);
    /* Only the last reply counts: the older one's block is out of reach. */
    assert_null(msgs_copy_target(&l, 4));

    msgs_clear(&l);
    add(&l, MSG_ASSISTANT, "no code here", 1);
    assert_null(msgs_copy_target(&l, 1));
    msgs_free(&l);
}

/* ---- composing the conversation ---- */

/* Display line I of C as a string (static buffer). */
static const char *dl_text(const struct compose *c, size_t i)
{
    static char buf[512];
    assert_true(i < c->n_dl);
    snprintf(buf, sizeof buf, "%.*s", (int)c->dl[i].len, c->arena + c->dl[i].off);
    return buf;
}

static void check_dl(const struct compose *c, size_t i, const char *text, int elem, int indent)
{
    if (strcmp(dl_text(c, i), text) != 0 || c->dl[i].elem != elem || c->dl[i].indent != indent)
        fail_msg("line %zu: \"%s\" elem %d indent %d, expected \"%s\" elem %d indent %d", i,
                 dl_text(c, i), c->dl[i].elem, c->dl[i].indent, text, elem, indent);
}

static void test_compose_elements(void **state)
{
    (void)state;
    struct compose c = {0};
    compose_conversation(&c, NULL, 0, NULL, 0, 80, true);
    assert_int_equal(c.n_dl, 0);

    struct msg_list l = {0};
    add(&l, MSG_SYSTEM, "be brief", 0);
    add(&l, MSG_USER, "a\tb\r\n\n", 1); /* tab expanded, CR dropped, trailing newlines trimmed */
    add(&l, MSG_NOTICE, "context full: dropped", 0);
    add(&l, MSG_ASSISTANT, "done", 2);
    add(&l, MSG_ASSISTANT, "cut", 3)->end = HIST_END_CANCELLED;
    add(&l, MSG_ERROR, "generation failed", 0);
    add(&l, MSG_ASSISTANT, NULL, 0);
    compose_conversation(&c, l.v, l.n, "stre", 4, 80, true);
    size_t i = 0;
    check_dl(&c, i++, "System prompt", TH_SYSTEM, 0);
    check_dl(&c, i++, "be brief", TH_SYSTEM, 2);
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "You", TH_USER, 0);
    check_dl(&c, i++, "a    b", TH_NORMAL, 2);
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "context full: dropped", TH_NOTICE, 0); /* notices: no header, flush left */
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "Assistant", TH_ASSISTANT, 0);
    assert_string_equal(dl_text(&c, i++), "done"); /* stopped on its own: no marker */
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "Assistant", TH_ASSISTANT, 0);
    assert_string_equal(dl_text(&c, i++), "cut");
    check_dl(&c, i++, "[cancelled]", TH_MARKER, 2);
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "generation failed", TH_ERROR, 0);
    check_dl(&c, i++, "", TH_NORMAL, 0);
    check_dl(&c, i++, "Assistant", TH_ASSISTANT, 0);
    assert_string_equal(dl_text(&c, i++), "stre"); /* the streaming reply shows the stream */
    check_dl(&c, i++, "\xE2\x96\x8C", TH_MARKER, 2); /* and a cursor */
    check_dl(&c, i++, "", TH_NORMAL, 0);
    assert_int_equal(c.n_dl, i);

    /* Every end reason but a plain stop has its marker. */
    static const struct {
        enum hist_end end;
        const char *mark;
    } ends[] = {
        {HIST_END_LENGTH, "[cut: length limit or full context]"},
        {HIST_END_ERROR, "[error: reply incomplete]"},
        {HIST_END_INTERRUPTED, "[interrupted: kvchat stopped mid-reply]"},
    };
    for (size_t k = 0; k < sizeof ends / sizeof *ends; k++) {
        struct msg m = {MSG_ASSISTANT, "x", ends[k].end, 1, MSG_CUT_UNKNOWN, false, 0, 0, 0, false};
        compose_conversation(&c, &m, 1, NULL, 0, 80, true);
        assert_int_equal(c.n_dl, 4);
        check_dl(&c, 2, ends[k].mark, TH_MARKER, 2);
    }
    msgs_free(&l);
    compose_free(&c);
    assert_null(c.dl);
}

static void test_compose_wrap(void **state)
{
    (void)state;
    struct compose c = {0};
    const char *text = "the quick brown fox jumps over the lazy dog and keeps on running far away";
    struct msg m = {MSG_USER, (char *)text, HIST_END_NONE, 1, MSG_CUT_UNKNOWN, false, 0, 0, 0, false};
    /* A pane 20 wide leaves 17 columns for text after the indent. */
    compose_conversation(&c, &m, 1, NULL, 0, 20, true);
    assert_true(c.n_dl > 4);
    char joined[256] = "";
    for (size_t i = 1; i + 1 < c.n_dl; i++) {
        const char *t = dl_text(&c, i);
        assert_true(text_width(t, strlen(t)) <= 17);
        assert_int_equal(c.dl[i].indent, 2);
        if (i > 1)
            strcat(joined, " ");
        strcat(joined, t);
    }
    assert_string_equal(joined, text); /* broken at the spaces, nothing lost */

    /* A notice gets the indent's two columns too: 19. */
    struct msg n = {MSG_NOTICE, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", HIST_END_NONE, 0, MSG_CUT_UNKNOWN, false, 0, 0, 0, false};
    compose_conversation(&c, &n, 1, NULL, 0, 20, true);
    assert_string_equal(dl_text(&c, 0), "aaaaaaaaaaaaaaaaaaa");
    assert_int_equal(c.dl[0].indent, 0);
    /* A pane too narrow still gets 8 columns of text. */
    compose_conversation(&c, &m, 1, NULL, 0, 4, true);
    assert_string_equal(dl_text(&c, 1), "the");
    assert_string_equal(dl_text(&c, 2), "quick");
    compose_free(&c);
}

/* A line that exactly fills the pane was wrapped one column wider than it
 * was drawn, so its last character vanished ("whic" / "is reflected"). The
 * wrap and the drawing share compose_line_cols: a line of exactly that width
 * stays whole, one column more breaks at the space. */
static void test_wrap_exact_width_keeps_last_char(void **state)
{
    (void)state;
    struct wrap_line wl[4];
    assert_int_equal(layout_wrap("which is the way", 16, 8, wl, 4), 2);
    assert_int_equal(wl[0].len, 8); /* "which is" fills 8 columns exactly */
    assert_int_equal(wl[0].cols, 8);
    assert_int_equal(layout_wrap("which is", 8, 8, wl, 4), 1);
    assert_int_equal(layout_wrap("which is", 8, 7, wl, 4), 2);
    assert_int_equal(wl[0].len, 5);

    /* In a pane 20 wide a reply line gets 17 columns, a notice 19, a code
     * line 15: every composed line fits the columns the drawing clips to,
     * and a line of exactly that width is one line. */
    struct compose c = {0};
    struct msg m[3] = {
        {MSG_ASSISTANT, "aaaaaaaa bbbbbbbb\nccccccc ddddddd eeeeeeeee", HIST_END_NONE, 1, MSG_CUT_UNKNOWN, false, 0, 0, 0, false},
        {MSG_NOTICE, "aaaaaaaaa bbbbbbbbb", HIST_END_NONE, 0, MSG_CUT_UNKNOWN, false, 0, 0, 0, false},
        {MSG_ASSISTANT, "```\naaaaaaa bbbbbbb\n```", HIST_END_NONE, 2, MSG_CUT_UNKNOWN, false, 0, 0, 0, false},
    };
    compose_conversation(&c, m, 3, NULL, 0, 20, true);
    for (size_t i = 0; i < c.n_dl; i++) {
        const char *t = dl_text(&c, i);
        assert_true(text_width(t, strlen(t)) <= compose_line_cols(20, c.dl[i].indent));
    }
    assert_int_equal(compose_line_cols(20, 2), 17);
    check_dl(&c, 1, "aaaaaaaa bbbbbbbb", TH_NORMAL, 2);
    check_dl(&c, 2, "ccccccc ddddddd", TH_NORMAL, 2);
    check_dl(&c, 5, "aaaaaaaaa bbbbbbbbb", TH_NOTICE, 0);
    assert_string_equal(dl_text(&c, 9), "aaaaaaa bbbbbbb"); /* code: indent 4, 15 columns */
    assert_int_equal(c.dl[9].indent, 4);
    compose_free(&c);
}

#define BOUNDARY "\xE2\x94\x80\xE2\x94\x80 earlier turns no longer in context \xE2\x94\x80\xE2\x94\x80"

static size_t count_lines(const struct compose *c, const char *text)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n_dl; i++)
        k += strcmp(dl_text(c, i), text) == 0;
    return k;
}

/* Every dropped turn carried a marker line of its own, so a long dropped
 * history read as a column of markers and the boundary (where what the
 * model sees starts) was nowhere: now the dropped turns are dimmed and one
 * line "earlier turns no longer in context" stands where they end, also
 * with notices and hidden variants among them. */
static void test_dropped_turns_one_boundary_marker(void **state)
{
    (void)state;
    struct msg_list l = {0};
    add(&l, MSG_SYSTEM, "be brief", 0);
    add(&l, MSG_USER, "q1", 1);
    add(&l, MSG_ASSISTANT, "a1 `code`", 2)->hidden = true; /* a variant not chosen */
    add(&l, MSG_ASSISTANT, "a1 again", 3);
    add(&l, MSG_USER, "q2", 4);
    add(&l, MSG_NOTICE, "context full: dropped the 1 oldest turn to fit 256 tokens", 0);
    add(&l, MSG_ASSISTANT, "a2", 5);
    add(&l, MSG_USER, "q3", 6);
    add(&l, MSG_ASSISTANT, "a3", 7);
    add(&l, MSG_USER, "q4", 8);
    add(&l, MSG_ASSISTANT, "a4", 9);
    msgs_mark_dropped(&l, 2);
    assert_true(l.v[1].dropped && l.v[3].dropped && l.v[4].dropped && l.v[6].dropped);
    assert_false(l.v[7].dropped || l.v[8].dropped);

    struct compose c = {0};
    compose_conversation(&c, l.v, l.n, NULL, 0, 80, true);
    assert_int_equal(count_lines(&c, BOUNDARY), 1);
    size_t b = 0;
    while (strcmp(dl_text(&c, b), BOUNDARY) != 0)
        b++;
    check_dl(&c, b, BOUNDARY, TH_MARKER, 0);
    check_dl(&c, b + 2, "You", TH_USER, 0); /* the first turn the model sees */
    check_dl(&c, b + 3, "q3", TH_NORMAL, 2);
    check_dl(&c, b - 2, "a2", TH_MARKER, 2); /* the last dropped one, dimmed */
    for (size_t i = 0; i < b; i++) /* nothing above it in the answer's colours */
        assert_true(c.dl[i].elem == TH_MARKER || c.dl[i].elem == TH_NORMAL || c.dl[i].elem == TH_SYSTEM ||
                    c.dl[i].elem == TH_NOTICE);
    assert_int_equal(count_lines(&c, "a1 `code`"), 0); /* hidden stays hidden */
    /* nothing dropped: no boundary */
    for (size_t i = 0; i < l.n; i++)
        l.v[i].dropped = false;
    compose_conversation(&c, l.v, l.n, NULL, 0, 80, true);
    assert_int_equal(count_lines(&c, BOUNDARY), 0);
    msgs_free(&l);
    compose_free(&c);
}

/* A full context showed "[cut: length limit or full context]" whichever
 * limit it was, and the turns dropped to fit looked unchanged. */
static void test_context_full_marks_which_limit_and_dropped_turns(void **state)
{
    (void)state;
    struct msg_list l = {0};
    add(&l, MSG_USER, "old question", 1);
    add(&l, MSG_ASSISTANT, "old answer", 2);
    add(&l, MSG_USER, "newer question", 3);
    add(&l, MSG_ASSISTANT, "newer answer", 4);
    add(&l, MSG_USER, "now", 5);
    struct msg *r = add(&l, MSG_ASSISTANT, "cut short", 6);
    r->end = HIST_END_LENGTH;
    r->cut = MSG_CUT_CONTEXT;
    msgs_mark_dropped(&l, 1);
    assert_true(l.v[0].dropped && l.v[1].dropped);
    assert_false(l.v[2].dropped || l.v[3].dropped || l.v[4].dropped || l.v[5].dropped);
    msgs_mark_dropped(&l, 5); /* more than there are: never the last turn */
    assert_true(l.v[2].dropped && l.v[3].dropped);
    assert_false(l.v[4].dropped || l.v[5].dropped);

    struct compose c = {0};
    compose_conversation(&c, l.v, 2, NULL, 0, 80, true);
    check_dl(&c, 0, "You", TH_MARKER, 0); /* dimmed as a whole */
    check_dl(&c, 1, "old question", TH_MARKER, 2);
    check_dl(&c, 6, BOUNDARY, TH_MARKER, 0); /* where they end, even at the list's end */
    compose_conversation(&c, &l.v[5], 1, NULL, 0, 80, true);
    check_dl(&c, 2, "[cut: the context is full]", TH_MARKER, 2);
    l.v[5].cut = MSG_CUT_MAX_TOKENS;
    compose_conversation(&c, &l.v[5], 1, NULL, 0, 80, true);
    check_dl(&c, 2, "[cut: reply length limit (max_tokens)]", TH_MARKER, 2);
    msgs_free(&l);
    compose_free(&c);
}

/* A reasoning model's <think> block shows apart from the answer, dimmed
 * under a "thinking" line; while it still thinks, all of it is thinking. */
static void test_compose_thinking_apart(void **state)
{
    (void)state;
    struct compose c = {0};
    struct msg m = {MSG_ASSISTANT, (char *)"<think>\nweigh it\n</think>\n\n**Paris**",
                    HIST_END_NONE, 1, MSG_CUT_UNKNOWN, false, 0, 0, 0, false};
    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    check_dl(&c, 0, "Assistant", TH_ASSISTANT, 0);
    check_dl(&c, 1, "thinking \xE2\x80\xA6", TH_THINKING, 2);
    check_dl(&c, 2, "weigh it", TH_THINKING, 2);
    assert_string_equal(dl_text(&c, 3), "Paris"); /* the answer, as Markdown */
    assert_true(c.dl[3].styled);
    /* streaming, no closing tag yet: nothing is answer */
    struct msg s = {MSG_ASSISTANT, NULL, HIST_END_NONE, 0, MSG_CUT_UNKNOWN, false, 0, 0, 0, false};
    const char *stream = "<think>still going";
    compose_conversation(&c, &s, 1, stream, strlen(stream), 80, true);
    check_dl(&c, 1, "thinking \xE2\x80\xA6", TH_THINKING, 2);
    check_dl(&c, 2, "still going", TH_THINKING, 2);
    /* folded: a finished reply's thinking is one line; a streaming one's is not */
    c.fold_thinking = true;
    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    check_dl(&c, 1, "thinking \xE2\x80\xA6 1 line folded (F5 unfolds)", TH_THINKING, 2);
    assert_string_equal(dl_text(&c, 2), "Paris");
    compose_conversation(&c, &s, 1, stream, strlen(stream), 80, true);
    check_dl(&c, 2, "still going", TH_THINKING, 2);
    c.fold_thinking = false;
    /* "<think>" later in a reply is text, not thinking */
    struct msg t = {MSG_ASSISTANT, (char *)"use <think> tags", HIST_END_NONE, 1, MSG_CUT_UNKNOWN,
                    false, 0, 0, 0, false};
    compose_conversation(&c, &t, 1, NULL, 0, 80, false);
    assert_string_equal(dl_text(&c, 1), "use <think> tags");
    compose_free(&c);
}

static void test_compose_markdown(void **state)
{
    (void)state;
    struct compose c = {0};
    const char *reply = "**Bold** and `code`\n```\nint x;\n```";
    struct msg m = {MSG_ASSISTANT, (char *)reply, HIST_END_NONE, 1, MSG_CUT_UNKNOWN, false, 0, 0, 0, false};

    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    assert_string_equal(dl_text(&c, 1), "Bold and code"); /* markers gone */
    assert_true(c.dl[1].styled);
    assert_int_equal(c.arena_sty[c.dl[1].off] & MD_BOLD, MD_BOLD);
    assert_int_equal(c.arena_sty[c.dl[1].off + 9] & MD_CODE, MD_CODE);
    assert_int_equal(c.dl[1].indent, 2);
    /* The fenced block: no fence lines but a "[1]" label, filled, indented
     * further, narrower by two; a blank line sets it apart. */
    check_dl(&c, 2, "", TH_NORMAL, 2);
    assert_false(c.dl[2].fill);
    for (size_t i = 3; i <= 4; i++) {
        assert_true(c.dl[i].fill);
        assert_int_equal(c.dl[i].indent, 4);
    }
    assert_string_equal(dl_text(&c, 3), "[1]");
    assert_int_equal(c.arena_sty[c.dl[3].off], MD_LABEL);
    assert_string_equal(dl_text(&c, 4), "int x;");
    assert_int_equal(c.n_dl, 6);

    /* Markdown off: the reply as typed, one element. */
    compose_conversation(&c, &m, 1, NULL, 0, 80, false);
    check_dl(&c, 1, "**Bold** and `code`", TH_NORMAL, 2);
    assert_false(c.dl[1].styled);
    check_dl(&c, 2, "```", TH_NORMAL, 2);
    assert_false(c.dl[2].fill);

    /* Your own messages are never Markdown. */
    m.kind = MSG_USER;
    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    check_dl(&c, 1, "**Bold** and `code`", TH_NORMAL, 2);
    compose_free(&c);
}

/* The [N] on a code block on screen is the block /copy N takes, thinking
 * or not: the thinking is not Markdown and its blocks are not counted. */
static void test_copy_numbers_match_screen(void **state)
{
    (void)state;
    struct msg_list l = {0};
    add(&l, MSG_USER, "q", 1);
    add(&l, MSG_ASSISTANT,
        "<think>\n```\nnot this\n```\n</think>\nFirst:\n```sh\nls\n```\n- in a list:\n\n  ```c\n  int x;\n  ```\n"
        "\nafter the list\n\n    indented\n",
        2);
    struct compose c = {0};
    compose_conversation(&c, l.v, l.n, NULL, 0, 60, true);
    int labels = 0;
    for (size_t i = 0; i < c.n_dl; i++) {
        const char *t = dl_text(&c, i);
        const char *lb = strchr(t, '[');
        if (!c.dl[i].fill || !lb || lb[1] < '1' || lb[1] > '9')
            continue;
        labels++;
        char *want = msgs_copy_target(&l, lb[1] - '0');
        assert_non_null(want);
        /* the block's first line on screen is the copied text's first line */
        const char *next = dl_text(&c, i + 1);
        const char *first = next + strspn(next, " ");
        assert_memory_equal(want, first, strlen(first));
        free(want);
    }
    assert_int_equal(labels, 3);
    assert_null(msgs_copy_target(&l, 4));
    char *t = msgs_copy_target(&l, 1);
    assert_string_equal(t, "ls\n");
    free(t);
    t = msgs_copy_target(&l, 2);
    assert_string_equal(t, "int x;\n");
    free(t);
    compose_free(&c);
    msgs_free(&l);
}

/* ---- fitting a line ---- */

static void test_fit_words(void **state)
{
    (void)state;
    const char *h = "Enter send \xC2\xB7 Alt-Enter newline \xC2\xB7 Esc stop";
    bool cut;
    assert_int_equal(fit_words(h, strlen(h), 80, &cut), strlen(h));
    assert_false(cut);
    /* cut after a whole word, the separator before the cut dropped */
    size_t k = fit_words(h, strlen(h), 33, &cut);
    assert_true(cut);
    assert_int_equal(k, strlen("Enter send \xC2\xB7 Alt-Enter newline"));
    k = fit_words(h, strlen(h), 20, &cut);
    assert_int_equal(k, strlen("Enter send"));
    /* at every width: a word boundary, and the ellipsis fits */
    for (int w = 1; w < 50; w++) {
        k = fit_words(h, strlen(h), w, &cut);
        assert_true(k == strlen(h) || k == 0 || h[k] == ' ');
        assert_true(text_width(h, k) + (cut ? 1 : 0) <= w || k == 0);
    }
    assert_int_equal(fit_words("enormousword", 12, 5, &cut), 0);
    assert_true(cut);
    /* wide characters count two columns */
    const char *cjk = "\xE4\xB8\x96\xE7\x95\x8C \xE4\xB8\x96\xE7\x95\x8C";
    assert_int_equal(fit_words(cjk, strlen(cjk), 6, &cut), 6);
}

static void test_fit_list(void **state)
{
    (void)state;
    const char *names[] = {"/help", "/history", "/set", "/sessions", "/stats", "/theme"};
    char out[256];
    assert_int_equal(fit_list("6 matches:", names, 6, 80, out, sizeof out), 6);
    assert_string_equal(out, "6 matches: /help /history /set /sessions /stats /theme");
    assert_int_equal(fit_list("6 matches:", names, 6, 38, out, sizeof out), 3);
    assert_string_equal(out, "6 matches: /help /history /set +3 more");
    assert_true(text_width(out, strlen(out)) <= 38);
    for (int w = 12; w < 60; w++) {
        size_t shown = fit_list("6 matches:", names, 6, w, out, sizeof out);
        if (shown > 0)
            assert_true(text_width(out, strlen(out)) <= w);
        if (shown < 6)
            assert_non_null(strstr(out, " more"));
        /* names whole or not at all */
        for (size_t i = 0; i < shown; i++)
            assert_non_null(strstr(out, names[i]));
    }
    /* the last name needs no room for "+N more" after it */
    assert_int_equal(fit_list("2:", names, 2, 17, out, sizeof out), 2);
    assert_string_equal(out, "2: /help /history");
}

/* ---- the meters pane ---- */

static void test_meter_values(void **state)
{
    (void)state;
    struct engine_stats st = {.kv_used = 10, .kv_capacity = 0};
    struct engine_memory mem = {.device_total = 8ull << 30, .device_free = 6ull << 30};
    struct gpu_sample gs = {0};
    struct meter_inputs in = {
        .st = &st, .mem = &mem, .gs = &gs, .bytes_per_token = 100000000, .n_ctx = 2048,
        .bandwidth = 10e9, .jpt = NAN,
    };
    struct meter_values v;
    /* Before the first turn: the context is the capacity, rates are n/a. */
    meters_values(&in, &v);
    assert_string_equal(v.mem, "2.00 GiB / 8.00 GiB");
    assert_string_equal(v.kv, "10 / 2048 tok");
    assert_string_equal(v.left, "2038 tok");
    assert_int_equal(v.kv_used, 10);
    assert_int_equal(v.kv_cap, 2048);
    assert_true(fabs(v.kv_frac - 10.0 / 2048) < 1e-12);
    assert_string_equal(v.dec, "n/a tok/s");
    assert_string_equal(v.pre, "n/a tok/s");
    assert_string_equal(v.ttft, "n/a");
    assert_string_equal(v.roof, "n/a");
    assert_string_equal(v.util, "n/a");
    assert_string_equal(v.pow, "n/a");
    assert_string_equal(v.temp, "n/a");
    assert_string_equal(v.jpt, "n/a");

    /* One token: prefill and TTFT known, decode (and so the roofline) not. */
    st = (struct engine_stats){.gen_tokens = 1, .prefill_tok_s = 812.5, .decode_tok_s = 40,
                               .ttft_s = 0.25, .kv_used = 100, .kv_capacity = 4096, .running = true};
    meters_values(&in, &v);
    assert_string_equal(v.kv, "100 / 4096 tok");
    assert_int_equal(v.kv_cap, 4096);
    assert_string_equal(v.pre, "812.5 tok/s");
    assert_string_equal(v.ttft, "250 ms");
    assert_string_equal(v.dec, "n/a tok/s");
    assert_string_equal(v.roof, "n/a");

    /* 50 tok/s x 100 MB/token over 10 GB/s is half the roofline. */
    st.gen_tokens = 20;
    st.decode_tok_s = 50;
    gs = (struct gpu_sample){.util_valid = true, .util_pct = 87, .power_valid = true,
                             .power_w = 61.54, .temp_valid = true, .temp_c = 70};
    in.jpt = 0.25;
    meters_values(&in, &v);
    assert_string_equal(v.dec, "50.0 tok/s");
    assert_string_equal(v.roof, "50% of 10 GB/s");
    assert_string_equal(v.util, "87%");
    assert_string_equal(v.pow, "61.5 W");
    assert_string_equal(v.temp, "70.0 C");
    assert_string_equal(v.jpt, "0.250 J/tok");
    /* No bandwidth figure: the roofline is n/a, not 0% or infinite. */
    in.bandwidth = 0;
    meters_values(&in, &v);
    assert_string_equal(v.roof, "n/a");

    /* Unknown free memory: the used part is n/a, never the total. */
    mem.device_free = ENGINE_UNKNOWN;
    meters_values(&in, &v);
    assert_string_equal(v.mem, "n/a / 8.00 GiB");
    /* A finished turn keeps its figures (running off, tokens made). */
    st.running = false;
    meters_values(&in, &v);
    assert_string_equal(v.dec, "50.0 tok/s");
    /* A turn that made nothing and is over shows n/a, not stale zeros. */
    st = (struct engine_stats){.prefill_tok_s = 900, .kv_capacity = 4096};
    meters_values(&in, &v);
    assert_string_equal(v.pre, "n/a tok/s");
}

/* While a long prompt was read in, the prefill rate showed "0.00 tok/s"
 * (the engine's 0 of a turn that had not measured one yet) and the context
 * the old cache's count, which a re-read (after /system) replaces: now both
 * read n/a until the first chunk, and the progress line counts tokens done
 * of the total with the rate and the time left. */
static void test_prefill_progress_never_zero(void **state)
{
    (void)state;
    struct prefill_view pf = {.active = true, .done = 0, .total = 11000, .elapsed_s = 0};
    char buf[256];
    fmt_prefill(&pf, buf, sizeof buf);
    assert_string_equal(buf, "reading the prompt 0/11000 tok \xC2\xB7 n/a tok/s \xC2\xB7 n/a left");
    assert_true(isnan(prefill_rate(&pf)));
    pf.done = 2048;
    pf.elapsed_s = 6.6; /* 310.3 tok/s, 8952 left: 28.8 s */
    fmt_prefill(&pf, buf, sizeof buf);
    assert_string_equal(buf, "reading the prompt 2048/11000 tok \xC2\xB7 310.3 tok/s \xC2\xB7 29 s left");
    pf.why = "system prompt changed";
    fmt_prefill(&pf, buf, sizeof buf);
    assert_string_equal(buf, "re-reading the conversation (system prompt changed) 2048/11000 tok "
                             "\xC2\xB7 310.3 tok/s \xC2\xB7 29 s left");
    pf.elapsed_s = 0; /* a clock that did not move: no rate rather than infinity */
    assert_true(isnan(prefill_rate(&pf)));

    /* the meters while the prompt is read: the engine's stale figures */
    struct engine_stats st = {.kv_used = 9000, .kv_capacity = 16384, .running = true};
    struct engine_memory mem = {.device_total = 8ull << 30, .device_free = 6ull << 30};
    struct gpu_sample gs = {0};
    struct meter_inputs in = {.st = &st, .mem = &mem, .gs = &gs, .n_ctx = 16384, .jpt = NAN, .pf = &pf};
    struct meter_values v;
    pf = (struct prefill_view){.active = true, .total = 11000};
    meters_values(&in, &v);
    assert_string_equal(v.pre, "n/a tok/s");
    assert_string_equal(v.kv, "n/a / 16384 tok");
    assert_string_equal(v.left, "n/a");
    assert_true(v.kv_frac < 0);
    assert_int_equal(v.kv_used, -1);
    /* after the first chunk: the chunks' rate, the engine's count */
    pf.done = 256;
    pf.elapsed_s = 0.5;
    st.kv_used = 256;
    meters_values(&in, &v);
    assert_string_equal(v.pre, "512.0 tok/s");
    assert_string_equal(v.kv, "256 / 16384 tok");
    /* a running turn with no prefill report (a remote engine) and the
     * engine's rate still 0: n/a, not 0 */
    in.pf = NULL;
    meters_values(&in, &v);
    assert_string_equal(v.pre, "n/a tok/s");
    /* the prompt read: the engine's own figure */
    st.prefill_tok_s = 640;
    meters_values(&in, &v);
    assert_string_equal(v.pre, "640.0 tok/s");
    /* an inactive view changes nothing */
    pf.active = false;
    in.pf = &pf;
    st.kv_used = 300;
    meters_values(&in, &v);
    assert_string_equal(v.kv, "300 / 16384 tok");

    fmt_time_left(0.4, buf, sizeof buf);
    assert_string_equal(buf, "<1 s");
    fmt_time_left(125, buf, sizeof buf);
    assert_string_equal(buf, "2m05s");
    fmt_time_left(3720, buf, sizeof buf);
    assert_string_equal(buf, "1h02m");
    fmt_time_left(-1, buf, sizeof buf);
    assert_string_equal(buf, "n/a");
}

/* The model loading screen said "0 B of 0 B  n/a/s  0%" before the file's
 * size was known: unknown values now read n/a, and the line has the time
 * left. */
static void test_load_progress_line(void **state)
{
    (void)state;
    char buf[256];
    fmt_load_progress(0, 0, 0, buf, sizeof buf);
    assert_string_equal(buf, "n/a of n/a \xC2\xB7 n/a/s \xC2\xB7 n/a \xC2\xB7 n/a left");
    fmt_load_progress(0, 100u << 20, 0.2, buf, sizeof buf);
    assert_string_equal(buf, "0 B of 100 MiB \xC2\xB7 n/a/s \xC2\xB7 0% \xC2\xB7 n/a left");
    fmt_load_progress(50u << 20, 100u << 20, 2, buf, sizeof buf);
    assert_string_equal(buf, "50.0 MiB of 100 MiB \xC2\xB7 25.0 MiB/s \xC2\xB7 50% \xC2\xB7 2 s left");
    fmt_load_progress(100u << 20, 100u << 20, 4, buf, sizeof buf);
    assert_string_equal(buf, "100 MiB of 100 MiB \xC2\xB7 25.0 MiB/s \xC2\xB7 100% \xC2\xB7 <1 s left");
}

/* --think on|off and the config key think are the engine's switch; on a
 * template without one kvchat says so in one line and runs on. */
static void test_think_option(void **state)
{
    (void)state;
    struct kv_options o;
    memset(&o, 0, sizeof o);
    char err[256];
    assert_int_equal(o.think, ENGINE_THINK_DEFAULT);
    assert_int_equal(config_set(&o, "think", "off", err, sizeof err), 0);
    assert_int_equal(o.think, ENGINE_THINK_OFF);
    assert_int_equal(config_set(&o, "think", "on", err, sizeof err), 0);
    assert_int_equal(o.think, ENGINE_THINK_ON);
    assert_int_equal(config_set(&o, "think", "maybe", err, sizeof err), -1);
    assert_string_equal(err, "think: 'maybe' is not on or off");
    assert_int_equal(o.think, ENGINE_THINK_ON); /* a refused value changes nothing */

    struct engine_info in;
    memset(&in, 0, sizeof in);
    snprintf(in.backend, sizeof in.backend, "cpu");
    snprintf(in.template_name, sizeof in.template_name, "chatml");
    char note[256];
    assert_true(kv_think_note(&o, &in, note, sizeof note));
    assert_string_equal(note, "--think on is ignored: the chatml chat template has no thinking switch");
    in.think_switch = true;
    assert_false(kv_think_note(&o, &in, note, sizeof note));
    in.think_switch = false;
    o.think = ENGINE_THINK_DEFAULT;
    assert_false(kv_think_note(&o, &in, note, sizeof note));
    o.think = ENGINE_THINK_OFF;
    snprintf(in.backend, sizeof in.backend, "remote");
    assert_true(kv_think_note(&o, &in, note, sizeof note));
    assert_string_equal(note, "--think off is ignored: the server applies its own chat template");
}

/* A remote engine: no context, no memory, and only what the server publishes. */
static void test_meter_values_server(void **state)
{
    (void)state;
    struct engine_stats st = {.kv_used = 19, .gen_tokens = 7, .decode_tok_s = 30,
                              .prefill_tok_s = -1, .ttft_s = 0.1};
    struct engine_memory mem = {ENGINE_UNKNOWN, ENGINE_UNKNOWN, ENGINE_UNKNOWN, ENGINE_UNKNOWN,
                                ENGINE_UNKNOWN, false};
    struct gpu_sample gs = {0};
    struct engine_server srv = {.kv_frac = -1, .kv_tokens = -1, .n_ctx = -1, .reqs_running = -1,
                                .reqs_waiting = -1, .prefix_hit_rate = -1, .vram_bytes = -1,
                                .age_s = -1};
    struct meter_inputs in = {.st = &st, .mem = &mem, .gs = &gs, .srv = &srv, .jpt = NAN};
    struct meter_values v;
    /* the server publishes nothing: n/a everywhere, never 0 */
    meters_values(&in, &v);
    assert_string_equal(v.mem, "n/a / n/a");
    assert_string_equal(v.kv, "19 / n/a tok");
    assert_string_equal(v.left, "n/a");
    assert_true(v.kv_frac < 0);
    assert_int_equal(v.kv_cap, 0);
    assert_string_equal(v.reqs, "n/a");
    assert_string_equal(v.hit, "n/a");
    assert_string_equal(v.pre, "n/a tok/s");
    assert_string_equal(v.dec, "30.0 tok/s");
    assert_string_equal(v.roof, "n/a");
    /* no server figures at all (a local engine's caller may pass none) */
    in.srv = NULL;
    meters_values(&in, &v);
    assert_string_equal(v.reqs, "n/a");
    assert_true(v.kv_frac < 0);
    in.srv = &srv;

    /* vLLM: KV usage and requests, no context */
    srv.kv_frac = 0.375;
    srv.reqs_running = 3;
    srv.reqs_waiting = 0;
    srv.prefix_hit_rate = 0.25;
    meters_values(&in, &v);
    assert_true(fabs(v.kv_frac - 0.375) < 1e-12); /* the bar is the server's usage */
    assert_string_equal(v.kv, "19 / n/a tok");
    assert_string_equal(v.reqs, "3 running, 0 waiting");
    assert_string_equal(v.hit, "25%");
    /* only one of the two request counts */
    srv.reqs_waiting = -1;
    meters_values(&in, &v);
    assert_string_equal(v.reqs, "3 running, n/a waiting");

    /* llama-server's slot context arrives as the KV capacity */
    st.kv_capacity = 4096;
    meters_values(&in, &v);
    assert_string_equal(v.kv, "19 / 4096 tok");
    assert_string_equal(v.left, "4077 tok");

    /* Ollama: the model's VRAM, the device's total unknown */
    srv.vram_bytes = 3ll << 30;
    meters_values(&in, &v);
    assert_string_equal(v.mem, "3.00 GiB (server)");
}

/* ---- the sessions sidebar ---- */

static void test_sidebar_filter(void **state)
{
    (void)state;
    struct hist_session ss[4] = {
        {.id = 9, .title = "Rust lifetimes", .preview = ""},
        {.id = 7, .title = "", .preview = "how do I bake BREAD"},
        {.id = 4, .title = "h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD", .preview = ""},
        {.id = 2, .title = "", .preview = ""},
    };
    size_t out[4];
    assert_int_equal(sidebar_filter(ss, 4, "", NULL, 0, out, 4), 4);
    assert_int_equal(sidebar_filter(ss, 4, "rUST", NULL, 0, out, 4), 1);
    assert_int_equal(out[0], 0);
    assert_int_equal(sidebar_filter(ss, 4, "bread", NULL, 0, out, 4), 1); /* the preview when untitled */
    assert_int_equal(out[0], 1);
    assert_int_equal(sidebar_filter(ss, 4, "\xE4\xBD\xA0", NULL, 0, out, 4), 1);
    assert_int_equal(out[0], 2);
    assert_int_equal(sidebar_filter(ss, 4, "untitled", NULL, 0, out, 4), 1);
    assert_int_equal(out[0], 3);
    assert_int_equal(sidebar_filter(ss, 4, "zzz", NULL, 0, out, 4), 0);
    /* a full-text hit in the messages of session 4 and 9, order kept */
    int64_t hits[] = {4, 9, 1000};
    assert_int_equal(sidebar_filter(ss, 4, "zzz", hits, 3, out, 4), 2);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 2);
    assert_string_equal(sidebar_label(&ss[3]), "(untitled)");
}

static void test_sidebar_rows_by_width(void **state)
{
    (void)state;
    char buf[256];
    /* "héllo 你好" is 10 columns: é one, 你 and 好 two each */
    assert_int_equal(sidebar_fit("h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD", 10, buf, sizeof buf), 10);
    assert_string_equal(buf, "h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD");
    /* one column short: 好 goes and the ellipsis takes its place */
    assert_int_equal(sidebar_fit("h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD", 9, buf, sizeof buf), 9);
    assert_string_equal(buf, "h\xC3\xA9llo \xE4\xBD\xA0\xE2\x80\xA6");
    /* a wide character never split: 7 columns hold "héllo " and the "…" */
    assert_int_equal(sidebar_fit("h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD", 8, buf, sizeof buf), 7);
    assert_string_equal(buf, "h\xC3\xA9llo \xE2\x80\xA6");
    assert_int_equal(sidebar_fit("\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 3, buf, sizeof buf), 3);
    assert_string_equal(buf, "\xF0\x9F\x98\x80\xE2\x80\xA6");
    /* ids right-aligned in one column, whatever their length */
    struct hist_session ss[2] = {{.id = 7}, {.id = 1234}};
    int ic = sidebar_id_cols(ss, NULL, 2);
    assert_int_equal(ic, 4);
    int w = sidebar_format_row(7, ic, "h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD", 14, buf, sizeof buf);
    assert_string_equal(buf, "    7 h\xC3\xA9llo \xE2\x80\xA6");
    assert_int_equal(w, 13);
    assert_int_equal(text_width(buf, strlen(buf)), w);
    w = sidebar_format_row(1234, ic, "short", 14, buf, sizeof buf);
    assert_string_equal(buf, " 1234 short");
    assert_int_equal(w, 11);
    /* every width from 0 up: never more columns than asked */
    for (int width = 0; width < 20; width++) {
        w = sidebar_format_row(1234, ic, "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xBD\xA0", width, buf,
                               sizeof buf);
        assert_true(w <= width);
        assert_int_equal(text_width(buf, strlen(buf)), w);
    }
}

static void test_sidebar_moves(void **state)
{
    (void)state;
    assert_int_equal(sidebar_move(0, 0, SB_DOWN, 5), 0);
    assert_int_equal(sidebar_move(0, 10, SB_UP, 5), 0);
    assert_int_equal(sidebar_move(0, 10, SB_DOWN, 5), 1);
    assert_int_equal(sidebar_move(9, 10, SB_DOWN, 5), 9);
    assert_int_equal(sidebar_move(2, 10, SB_PAGE_DOWN, 5), 7);
    assert_int_equal(sidebar_move(7, 10, SB_PAGE_DOWN, 5), 9);
    assert_int_equal(sidebar_move(7, 10, SB_PAGE_UP, 5), 2);
    assert_int_equal(sidebar_move(3, 10, SB_PAGE_UP, 5), 0);
    assert_int_equal(sidebar_move(3, 10, SB_END, 5), 9);
    assert_int_equal(sidebar_move(3, 10, SB_HOME, 5), 0);
    assert_int_equal(sidebar_move(42, 10, SB_UP, 5), 8); /* a list that shrank under it */
    assert_int_equal(sidebar_top(0, 0, 3, 5), 0);
    assert_int_equal(sidebar_top(7, 0, 20, 5), 3);
    assert_int_equal(sidebar_top(4, 3, 20, 5), 3);
    assert_int_equal(sidebar_top(1, 3, 20, 5), 1);
    assert_int_equal(sidebar_top(19, 18, 20, 5), 15);
    char q[16] = "ab\xE4\xBD\xA0";
    sidebar_backspace(q);
    assert_string_equal(q, "ab");
    sidebar_backspace(q);
    sidebar_backspace(q);
    sidebar_backspace(q);
    assert_string_equal(q, "");
}

/* Regression: the title line showed converters' general.name, a mangled
 * title-case of a folder name ("Smollm2 135M 8k Lc100K Mix1 Ep2"). */
static void test_title_model_name_not_mangled(void **state)
{
    (void)state;
    char b[128];
    sidebar_model_name("Smollm2 135M 8k Lc100K Mix1 Ep2", "/m/SmolLM2-135M-Instruct.Q4_1.gguf", b, sizeof b);
    assert_string_equal(b, "SmolLM2-135M-Instruct.Q4_1");
    sidebar_model_name("SmolLM2 135M Instruct", "/m/SmolLM2-135M-Instruct.Q4_1.gguf", b, sizeof b);
    assert_string_equal(b, "SmolLM2 135M Instruct");
    sidebar_model_name("", "gemma-3-270m-q4_k_m.gguf", b, sizeof b);
    assert_string_equal(b, "gemma-3-270m-q4_k_m");
    sidebar_model_name(NULL, "/x/model", b, sizeof b);
    assert_string_equal(b, "model");
}

/* ---- the chat screen's overlays, meters defects, timestamps, token count ---- */

static void test_help_lists_every_command_and_key(void **state)
{
    (void)state;
    const char *h = cmd_help_text();
    for (int i = 0; i < CMD_COUNT; i++) {
        char want[40];
        /* a command on its own line, or sharing one ("/retry, /variant N") */
        char first[40], shared[40];
        snprintf(want, sizeof want, "  /%s ", cmd_name((enum cmd_id)i));
        snprintf(first, sizeof first, "  /%s, /", cmd_name((enum cmd_id)i));
        snprintf(shared, sizeof shared, ", /%s ", cmd_name((enum cmd_id)i));
        if (!strstr(h, want) && !strstr(h, first) && !strstr(h, shared))
            fail_msg("help lacks %s", want);
    }
    static const char *keys[] = {"F1", "F2", "F3", "F4", "Ctrl-G", "Ctrl-D", "Ctrl-C", "Esc", "Tab", "PgUp", "Alt-Enter"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        assert_non_null(strstr(h, keys[i]));
    /* the new commands parse */
    struct command c;
    size_t off;
    char err[256];
    assert_int_equal(cmd_parse("/show", &c, &off, err, sizeof err), CMD_OK);
    assert_int_equal(c.id, CMD_SHOW);
    assert_int_equal(cmd_parse("/timestamps", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "");
    assert_int_equal(cmd_parse("/timestamps off", &c, &off, err, sizeof err), CMD_OK);
    assert_string_equal(c.arg, "off");
    assert_int_equal(cmd_parse("/timestamps maybe", &c, &off, err, sizeof err), CMD_ERROR);
    assert_non_null(strstr(err, "on, off"));
}

static void test_overlay_scrolls_and_closes(void **state)
{
    (void)state;
    struct overlay o = {0};
    assert_false(overlay_key(&o, OVK_DOWN, 5)); /* closed: nothing to do */
    assert_int_equal(overlay_open(&o, "Help", "a\nbb\nccc\nd\ne\nf\ng\n"), 0);
    assert_true(o.open);
    assert_int_equal(o.n_lines, 7); /* the trailing newline makes no empty line */
    size_t len;
    const char *l = overlay_line(&o, 2, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(l, "ccc", 3);
    overlay_line(&o, 99, &len);
    assert_int_equal(len, 0);
    assert_true(overlay_key(&o, OVK_UP, 3));
    assert_int_equal(o.top, 0);
    overlay_key(&o, OVK_PAGE_DOWN, 3);
    assert_int_equal(o.top, 2); /* a page keeps one line in sight */
    overlay_key(&o, OVK_END, 3);
    assert_int_equal(o.top, 4); /* the last line at the bottom, not beyond */
    overlay_key(&o, OVK_DOWN, 3);
    assert_int_equal(o.top, 4);
    overlay_key(&o, OVK_OTHER, 10); /* taller: everything fits, top back to 0 */
    assert_int_equal(o.top, 0);
    overlay_key(&o, OVK_PAGE_DOWN, 3);
    overlay_key(&o, OVK_HOME, 3);
    assert_int_equal(o.top, 0);
    assert_false(overlay_key(&o, OVK_CLOSE, 3));
    assert_false(o.open);
    assert_null(o.text);
    overlay_close(&o); /* twice is fine */
}

static void test_mem_headline_agrees_with_legend(void **state)
{
    (void)state;
    /* mmap'd weights the kernel counts as cache: the engine's buffers exceed
     * what the host reports in use. Before, the headline said 2000 of 10000
     * used while the legend listed 9500 of weights and KV and 8000 free. */
    struct engine_memory m = {.weights = 9000, .kv_cache = 500, .scratch = 0, .device_total = 10000,
                              .device_free = 8000};
    struct mem_split sp;
    meters_mem_split(&m, 10, &sp);
    assert_int_equal(sp.bytes[MEM_FREE], 500);
    uint64_t sum = 0;
    for (int i = 0; i < MEM_SEG_COUNT; i++)
        sum += sp.bytes[i];
    assert_int_equal(sum, 10000);
    struct engine_stats st = {0};
    struct gpu_sample gs = {0};
    struct meter_inputs in = {.st = &st, .mem = &m, .gs = &gs, .n_ctx = 2048, .jpt = NAN};
    struct meter_values v;
    meters_values(&in, &v);
    char used[32], total[32];
    fmt_bytes(9500, used, sizeof used);
    fmt_bytes(10000, total, sizeof total);
    char want[80];
    snprintf(want, sizeof want, "%s / %s", used, total);
    assert_string_equal(v.mem, want);
    /* the usual case is unchanged: used = total - free */
    m = (struct engine_memory){.weights = 4000, .kv_cache = 1000, .scratch = 10, .device_total = 10000,
                               .device_free = 3000};
    meters_values(&in, &v);
    fmt_bytes(7000, used, sizeof used);
    snprintf(want, sizeof want, "%s / %s", used, total);
    assert_string_equal(v.mem, want);
}

static void test_empty_bar_draws_track(void **state)
{
    (void)state;
    char b[64];
    meter_track_bar(0, 4, b, sizeof b);
    assert_string_equal(b, "\xE2\x96\x91\xE2\x96\x91\xE2\x96\x91\xE2\x96\x91");
    meter_track_bar(0.5, 4, b, sizeof b);
    assert_string_equal(b, "\xE2\x96\x88\xE2\x96\x88\xE2\x96\x91\xE2\x96\x91");
    meter_track_bar(NAN, 2, b, sizeof b);
    assert_string_equal(b, "\xE2\x96\x91\xE2\x96\x91");
}

static void test_kv_label_names_one_thing(void **state)
{
    (void)state;
    /* the legend's KV segment is bytes; the context row counts tokens */
    assert_string_equal(meters_seg_name(MEM_KV), "KV memory");
    for (int i = 0; i < MEM_SEG_COUNT; i++)
        assert_null(strstr(meters_seg_name((enum mem_seg)i), "cache"));
}

static void test_gpu_rows_hidden_on_cpu(void **state)
{
    (void)state;
    struct engine_stats st = {0};
    struct engine_memory mem = {.device_total = ENGINE_UNKNOWN, .device_free = ENGINE_UNKNOWN};
    struct gpu_sample gs = {0};
    struct meter_inputs in = {.st = &st, .mem = &mem, .gs = &gs, .jpt = NAN};
    struct meter_values v;
    meters_values(&in, &v);
    assert_false(v.gpu_known); /* all four would read n/a: not drawn */
    gs.temp_valid = true;
    gs.temp_c = 40;
    meters_values(&in, &v);
    assert_true(v.gpu_known);
    gs = (struct gpu_sample){0};
    in.jpt = 0.5;
    meters_values(&in, &v);
    assert_true(v.gpu_known);
}

static void test_no_color_legend_glyphs_differ(void **state)
{
    (void)state;
    for (int i = 0; i < MEM_SEG_COUNT; i++)
        for (int j = i + 1; j < MEM_SEG_COUNT; j++) {
            if (!strcmp(meters_legend_glyph((enum mem_seg)i, true), meters_legend_glyph((enum mem_seg)j, true)))
                fail_msg("mono legend: %s and %s share a glyph", meters_seg_name((enum mem_seg)i),
                         meters_seg_name((enum mem_seg)j));
            if (!strcmp(meters_seg_glyph((enum mem_seg)i, true), meters_seg_glyph((enum mem_seg)j, true)))
                fail_msg("mono bar: %s and %s share a glyph", meters_seg_name((enum mem_seg)i),
                         meters_seg_name((enum mem_seg)j));
        }
    /* the legend shows the very glyph of the bar */
    for (int i = 0; i < MEM_SEG_COUNT; i++)
        assert_string_equal(meters_legend_glyph((enum mem_seg)i, true), meters_seg_glyph((enum mem_seg)i, true));
}

static void test_eight_colour_never_black_on_black(void **state)
{
    (void)state;
    struct theme t;
    char err[256];
    const char *const *names = theme_builtin_names();
    for (size_t k = 0; names[k]; k++) {
        assert_int_equal(theme_load(names[k], "/nonexistent", &t, err, sizeof err), 0);
        for (int i = 0; i < TH_COUNT; i++) {
            int f, b;
            theme_pair_to8(t.s[i].fg, t.s[i].bg, &f, &b);
            if (f >= 0 && f == (b < 0 ? 0 : b))
                fail_msg("%s: %s is colour %d on %d in 8 colours", names[k], theme_elem_name((enum theme_elem)i), f, b);
        }
    }
    int f, b;
    theme_pair_to8(240, THEME_DEFAULT_COLOR, &f, &b); /* the dark border: was black on black */
    assert_int_equal(f, 7);
    assert_int_equal(b, THEME_DEFAULT_COLOR);
    theme_pair_to8(250, 255, &f, &b); /* light grey on white: black on white */
    assert_int_equal(f, 0);
    assert_int_equal(b, 7);
    theme_pair_to8(75, THEME_DEFAULT_COLOR, &f, &b); /* a colour that differs stays */
    assert_int_equal(f, theme_color_to8(75));
}

static void test_light_theme_paints_background(void **state)
{
    (void)state;
    struct theme t;
    char err[256];
    assert_int_equal(theme_load("light", "/nonexistent", &t, err, sizeof err), 0);
    for (int i = 0; i < TH_COUNT; i++)
        if (t.s[i].bg == THEME_DEFAULT_COLOR && !(t.s[i].attrs & THA_REVERSE))
            fail_msg("light: %s leaves the background to the terminal", theme_elem_name((enum theme_elem)i));
}

static void test_ctx_past_trained_warning(void **state)
{
    (void)state;
    struct engine_stats st = {.kv_capacity = 9000};
    struct engine_memory mem = {.device_total = ENGINE_UNKNOWN, .device_free = ENGINE_UNKNOWN};
    struct gpu_sample gs = {0};
    struct meter_inputs in = {.st = &st, .mem = &mem, .gs = &gs, .n_ctx = 9000, .n_ctx_train = 8192, .jpt = NAN};
    struct meter_values v;
    meters_values(&in, &v);
    assert_string_equal(v.ctx_warn, "past the trained 8192 tok");
    in.n_ctx_train = 0; /* the file does not say: nothing to warn about */
    meters_values(&in, &v);
    assert_string_equal(v.ctx_warn, "");
    in.n_ctx_train = 9000;
    meters_values(&in, &v);
    assert_string_equal(v.ctx_warn, "");
}

static void test_input_count_rate_limited(void **state)
{
    (void)state;
    struct input_count c = {0};
    assert_true(input_count_due(&c, "hi", 2, 10.0)); /* first text: at once */
    input_count_set(&c, 1, 10.0);
    assert_false(input_count_due(&c, "hi", 2, 10.5)); /* unchanged: never again */
    assert_true(input_count_next(&c) < 0);
    assert_true(input_count_due(&c, "hi!", 3, 10.55)); /* changed, 0.55 s after the last count: due */
    input_count_set(&c, 2, 10.55);
    assert_false(input_count_due(&c, "hi!?", 4, 10.6)); /* 50 ms later: held back */
    assert_true(c.pending);
    assert_true(fabs(input_count_next(&c) - (10.55 + INPUT_COUNT_MIN_S)) < 1e-9);
    assert_true(input_count_due(&c, "hi!?", 4, 10.66)); /* the held-back count comes */
    input_count_set(&c, 3, 10.66);
    /* at most 10 counts a second whatever the typing rate */
    int counts = 0;
    char t[64];
    for (int k = 0; k < 100; k++) {
        snprintf(t, sizeof t, "text %d", k);
        double now = 20.0 + k * 0.01;
        if (input_count_due(&c, t, strlen(t), now)) {
            input_count_set(&c, k, now);
            counts++;
        }
    }
    assert_true(counts <= 10 && counts >= 9);
    char b[64];
    fmt_input_count(42, 4096, 954, b, sizeof b);
    assert_string_equal(b, "42 tok \xC2\xB7 3100 left");
    fmt_input_count(42, 0, 0, b, sizeof b);
    assert_string_equal(b, "42 tok");
    fmt_input_count(-1, 4096, 0, b, sizeof b);
    assert_string_equal(b, "tok n/a");
    fmt_input_count(100, 50, 10, b, sizeof b);
    assert_string_equal(b, "100 tok \xC2\xB7 60 over");
}

static void test_timestamps_on_headers(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    struct compose c = {0};
    /* 2024-05-01 14:03:00 UTC: before today, so with its date */
    struct msg m = {MSG_USER, "hello", HIST_END_NONE, 1, MSG_CUT_UNKNOWN, false, 1714572180000, 0, 0, false};
    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    assert_int_equal(c.dl[0].len, 3);
    assert_memory_equal(c.arena + c.dl[0].off, "You", 3); /* off by default */
    c.timestamps = true;
    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    const char *want = "You \xC2\xB7 2024-05-01 14:03";
    assert_int_equal(c.dl[0].len, strlen(want));
    assert_memory_equal(c.arena + c.dl[0].off, want, strlen(want));
    m.created_ms = (int64_t)time(NULL) * 1000; /* today: the time alone */
    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    assert_int_equal(c.dl[0].len, strlen("You \xC2\xB7 HH:MM"));
    m.created_ms = 0; /* unknown: no time */
    compose_conversation(&c, &m, 1, NULL, 0, 80, true);
    assert_int_equal(c.dl[0].len, 3);
    compose_free(&c);
    /* the config key */
    struct kv_options o;
    memset(&o, 0, sizeof o);
    char err[256];
    assert_int_equal(config_set(&o, "timestamps", "on", err, sizeof err), 0);
    assert_true(o.timestamps);
    assert_int_equal(config_set(&o, "timestamps", "off", err, sizeof err), 0);
    assert_false(o.timestamps);
    assert_int_equal(config_set(&o, "timestamps", "sometimes", err, sizeof err), -1);
    assert_non_null(strstr(err, "timestamps"));
}

int main(void)
{
    if (!setlocale(LC_ALL, "C.UTF-8") && !setlocale(LC_ALL, "en_US.UTF-8")) {
        printf("SKIPPED: no UTF-8 locale for wcwidth\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_sizes),
        cmocka_unit_test(test_wrap_words),
        cmocka_unit_test(test_wrap_wide_and_combining),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_markdown_inline),
        cmocka_unit_test(test_markdown_headings_rules),
        cmocka_unit_test(test_markdown_code_blocks),
        cmocka_unit_test(test_markdown_links),
        cmocka_unit_test(test_markdown_lists_quotes),
        cmocka_unit_test(test_markdown_tables),
        cmocka_unit_test(test_markdown_streaming_prefixes),
        cmocka_unit_test(test_markdown_wide_chars),
        cmocka_unit_test(test_number_formats),
        cmocka_unit_test(test_meter_bar),
        cmocka_unit_test(test_mem_split),
        cmocka_unit_test(test_roofline),
        cmocka_unit_test(test_theme_parse),
        cmocka_unit_test(test_theme_load),
        cmocka_unit_test(test_color_to8),
        cmocka_unit_test(test_membw_measure),
        cmocka_unit_test(test_membw_cache),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_config_load),
        cmocka_unit_test(test_config_theme_hostile),
        cmocka_unit_test(test_command_parse),
        cmocka_unit_test(test_command_complete),
        cmocka_unit_test(test_command_needs),
        cmocka_unit_test(test_msgs_pop_exchange),
        cmocka_unit_test(test_msgs_copy_target),
        cmocka_unit_test(test_msgs_retry_keeps_variants),
        cmocka_unit_test(test_compose_elements),
        cmocka_unit_test(test_compose_wrap),
        cmocka_unit_test(test_compose_markdown),
        cmocka_unit_test(test_copy_numbers_match_screen),
        cmocka_unit_test(test_fit_words),
        cmocka_unit_test(test_fit_list),
        cmocka_unit_test(test_compose_thinking_apart),
        cmocka_unit_test(test_wrap_exact_width_keeps_last_char),
        cmocka_unit_test(test_context_full_marks_which_limit_and_dropped_turns),
        cmocka_unit_test(test_dropped_turns_one_boundary_marker),
        cmocka_unit_test(test_prefill_progress_never_zero),
        cmocka_unit_test(test_load_progress_line),
        cmocka_unit_test(test_think_option),
        cmocka_unit_test(test_meter_values),
        cmocka_unit_test(test_meter_values_server),
        cmocka_unit_test(test_sidebar_filter),
        cmocka_unit_test(test_sidebar_rows_by_width),
        cmocka_unit_test(test_sidebar_moves),
        cmocka_unit_test(test_title_model_name_not_mangled),
        cmocka_unit_test(test_help_lists_every_command_and_key),
        cmocka_unit_test(test_overlay_scrolls_and_closes),
        cmocka_unit_test(test_mem_headline_agrees_with_legend),
        cmocka_unit_test(test_empty_bar_draws_track),
        cmocka_unit_test(test_kv_label_names_one_thing),
        cmocka_unit_test(test_gpu_rows_hidden_on_cpu),
        cmocka_unit_test(test_no_color_legend_glyphs_differ),
        cmocka_unit_test(test_eight_colour_never_black_on_black),
        cmocka_unit_test(test_light_theme_paints_background),
        cmocka_unit_test(test_ctx_past_trained_warning),
        cmocka_unit_test(test_input_count_rate_limited),
        cmocka_unit_test(test_timestamps_on_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
