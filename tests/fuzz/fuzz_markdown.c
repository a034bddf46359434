/* fuzz_markdown.c - libFuzzer target for the chat screen's reply rendering:
 * the streaming Markdown styling and wrapping of tui/layout.c and the
 * display lines tui/compose.c makes of a conversation.
 *
 * Input: a reply's text, as a model may stream it (any bytes). It is
 * composed at several widths as a finished reply (Markdown on and off) and
 * as the reply still streaming, after a user message holding the same
 * text, at pane widths from 16 columns; and each of its lines goes through
 * md_render_line and layout_wrap on its own, at widths down to 1. Checks: every display line lies in the arena and fits the
 * pane (its indent plus its width within WIDTH, or the 8-column minimum
 * compose.h gives text); md_render_line stays within N + 8 bytes; wrapped
 * lines are within the text, never wider than the width and as wide as
 * text_width says, and the count does not depend on the room given.
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

/* Pane widths for compose: from 16 columns, where the widest header
 * ("System prompt") fits; the pane is never narrower on a terminal of
 * LAYOUT_MIN_COLS. Wrapping alone goes down to the degenerate widths. */
static const int PANE_WIDTHS[] = {16, 20, 41, 80, 133};
static const int WRAP_WIDTHS[] = {1, 2, 8, 20, 41, 80};
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
    struct md_state st = {false};
    for (size_t at = 0; at <= n;) {
        const char *nl = memchr(text + at, '\n', n - at);
        size_t len = nl ? (size_t)(nl - (text + at)) : n - at;
        char *line = malloc(len ? len : 1); /* exact size: overreads are caught */
        char *out = malloc(len + 8);
        uint8_t *sty = malloc(len + 8);
        if (!line || !out || !sty)
            abort();
        memcpy(line, text + at, len);
        size_t olen = md_render_line(&st, line, len, out, sty);
        if (olen > len + 8)
            abort();
        for (size_t w = 0; w < COUNT(WRAP_WIDTHS); w++)
            check_wrap(out, olen, WRAP_WIDTHS[w]);
        free(line);
        free(out);
        free(sty);
        at += len + 1;
    }
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
    free(text);
    return 0;
}
