/* fuzz_markdown.c - libFuzzer target for the chat screen's reply rendering:
 * the Markdown of tui/markdown.c (md4c underneath), the wrapping of
 * tui/layout.c and the display lines tui/compose.c makes of a
 * conversation, and /copy N's code blocks (tui/msgs.c).
 *
 * Input: a reply's text, as a model may stream it (any bytes). It is
 * composed at several widths as a finished reply (Markdown on and off) and
 * as the reply still streaming, after a user message holding the same
 * text, at pane widths from 16 columns; rendered by md_render on its own at
 * widths down to the minimum, whole and cut at a few points as it streams;
 * and each of its lines goes through layout_wrap at widths down to 1.
 * Checks: every display line lies in the arena and fits the pane (its
 * indent plus its width within WIDTH, or the 8-column minimum compose.h
 * gives text); every md_render line lies in its text and fits its width
 * with its indent; the code blocks the screen numbers are exactly the ones
 * md_code_block (so /copy N) finds; wrapped lines are within the text,
 * never wider than the width and as wide as text_width says, and the count
 * does not depend on the room given.
 *
 * Build and run (from the repository root):
 *   CC=clang cmake -S . -B build-fuzz -DKVCHAT_FUZZ=ON -DKVCHAT_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_markdown -j2
 *   mkdir -p /tmp/md-corpus && ./build-fuzz/tests/fuzz/fuzz_markdown
 *     -max_total_time=60 -max_len=8192 -artifact_prefix=/tmp/
 *     /tmp/md-corpus tests/fuzz/corpus/markdown
 */
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compose.h"
#include "layout.h"
#include "markdown.h"

/* Pane widths for compose: from 16 columns, where the widest header
 * ("System prompt") fits; the pane is never narrower on a terminal of
 * LAYOUT_MIN_COLS. Wrapping alone goes down to the degenerate widths. */
static const int PANE_WIDTHS[] = {16, 20, 41, 80, 133};
static const int WRAP_WIDTHS[] = {1, 2, 8, 20, 41, 80};
/* md_render on its own: below 8 is taken as 8. */
static const int MD_WIDTHS[] = {1, 8, 13, 37, 80};
#define COUNT(a) (sizeof a / sizeof *a)

static void check_compose(const struct compose *c, int width)
{
    for (size_t i = 0; i < c->n_dl; i++) {
        const struct dline *d = &c->dl[i];
        if (d->off > c->arena_len || d->len > c->arena_len - d->off || d->indent < 0)
            abort();
        if (d->styled && !c->arena_sty)
            abort();
        int w = text_width(c->arena + d->off, d->len);
        int room = width > d->indent + 8 ? width : d->indent + 8;
        if (d->indent + w > room)
            abort();
    }
}

static void check_wrap(const char *s, size_t n, int width)
{
    struct wrap_line few[4];
    size_t need = layout_wrap(s, n, width, few, 4);
    if (need < 1)
        abort();
    struct wrap_line *all = malloc(need * sizeof *all);
    if (!all)
        abort();
    if (layout_wrap(s, n, width, all, need) != need)
        abort();
    for (size_t i = 0; i < need && i < 4; i++) /* fields: the struct has padding */
        if (all[i].start != few[i].start || all[i].len != few[i].len || all[i].cols != few[i].cols)
            abort();
    int limit = width < 2 ? 2 : width;
    for (size_t i = 0; i < need; i++) {
        if (all[i].start > n || all[i].len > n - all[i].start || all[i].cols > limit ||
            all[i].cols != text_width(s + all[i].start, all[i].len))
            abort();
        if (i && all[i].start < all[i - 1].start + all[i - 1].len)
            abort(); /* lines in order, not overlapping */
    }
    free(all);
}

static void check_lines(const char *text, size_t n)
{
    for (size_t at = 0; at <= n;) {
        const char *nl = memchr(text + at, '\n', n - at);
        size_t len = nl ? (size_t)(nl - (text + at)) : n - at;
        char *line = malloc(len ? len : 1); /* exact size: overreads are caught */
        if (!line)
            abort();
        memcpy(line, text + at, len);
        for (size_t w = 0; w < COUNT(WRAP_WIDTHS); w++)
            check_wrap(line, len, WRAP_WIDTHS[w]);
        free(line);
        at += len + 1;
    }
}

static void check_doc(const struct md_doc *d, int width)
{
    int limit = width < 8 ? 8 : width;
    for (size_t i = 0; i < d->n_lines; i++) {
        const struct md_line *l = &d->lines[i];
        if (l->off > d->len || l->len > d->len - l->off || l->indent < 0)
            abort();
        if (l->indent + text_width(d->text + l->off, l->len) > limit)
            abort();
    }
}

/* The screen's numbers and /copy's blocks agree: 1..n_code exist, the
 * next does not. */
static void check_code_blocks(const char *src, size_t n, int n_code)
{
    for (int k = 1; k <= n_code + 1; k++) {
        char *b = md_code_block(src, n, k);
        if ((b != NULL) != (k <= n_code))
            abort();
        free(b);
    }
}

static void check_markdown(const char *src, size_t n)
{
    char *copy = malloc(n ? n : 1); /* exact size: overreads are caught */
    if (!copy)
        abort();
    memcpy(copy, src, n);
    struct md_doc d;
    memset(&d, 0, sizeof d);
    for (size_t w = 0; w < COUNT(MD_WIDTHS); w++) {
        if (md_render(&d, copy, n, MD_WIDTHS[w], false) != 0)
            abort();
        check_doc(&d, MD_WIDTHS[w]);
        if (w == 0)
            check_code_blocks(copy, n, d.n_code);
    }
    /* as it streams: a few of the prefixes a reply passes through */
    size_t cuts[] = {n / 4, n / 2, n - n / 4, n ? n - 1 : 0};
    for (size_t k = 0; k < COUNT(cuts); k++) {
        /* -1 is allowed here: md4c can misparse a cut-off text, and the
         * renderer then gives up (the screen shows the plain text) */
        md_render(&d, copy, cuts[k], 37, true);
        check_doc(&d, 37);
    }
    md_doc_free(&d);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int locale_set;
    if (!locale_set) { /* widths come from wcwidth: an UTF-8 locale */
        if (!setlocale(LC_CTYPE, "C.UTF-8") && !setlocale(LC_CTYPE, "en_US.UTF-8"))
            abort();
        locale_set = 1;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    text[size] = 0; /* a message's text is a C string: only what precedes a NUL */

    struct msg msgs[] = {
        {.kind = MSG_USER, .text = text},
        {.kind = MSG_ASSISTANT, .text = text, .end = HIST_END_INTERRUPTED},
        {.kind = MSG_NOTICE, .text = text},
        {.kind = MSG_ASSISTANT, .text = NULL},
    };
    struct compose c;
    memset(&c, 0, sizeof c);
    for (size_t w = 0; w < COUNT(PANE_WIDTHS); w++) {
        /* End markers are single unwrapped lines: "[interrupted: kvchat
         * stopped mid-reply]" needs 41 columns with its indent. */
        msgs[1].end = PANE_WIDTHS[w] >= 41 ? HIST_END_INTERRUPTED : HIST_END_NONE;
        for (int md = 0; md < 2; md++) {
            /* the streamed bytes need not be a C string: all SIZE of them */
            compose_conversation(&c, msgs, sizeof msgs / sizeof *msgs, (const char *)data, size,
                                 PANE_WIDTHS[w], md);
            check_compose(&c, PANE_WIDTHS[w]);
        }
    }
    compose_free(&c);
    check_lines((const char *)data, size);
    check_markdown((const char *)data, size);
    free(text);
    return 0;
}
