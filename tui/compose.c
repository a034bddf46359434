/* compose.c - the conversation pane's display lines. See compose.h. */
#include "compose.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "layout.h"
#include "markdown.h"
#include "theme.h"

/* How each kind of message is shown: its header (NULL: none, the text runs
 * flush left at full width) and the theme elements of header and text. */
static const struct {
    const char *head;
    int head_elem, text_elem;
} kinds[MSG_KIND_COUNT] = {
    [MSG_USER] = {"You", TH_USER, TH_NORMAL},
    [MSG_ASSISTANT] = {"Assistant", TH_ASSISTANT, TH_NORMAL},
    [MSG_SYSTEM] = {"System prompt", TH_SYSTEM, TH_SYSTEM},
    [MSG_NOTICE] = {NULL, TH_NOTICE, TH_NOTICE},
    [MSG_ERROR] = {NULL, TH_ERROR, TH_ERROR},
};

/* The marker under a reply for how it ended; a reply that stopped on its
 * own (NONE, STOP) has none. */
static const char *const end_marks[] = {
    [HIST_END_CANCELLED] = "[cancelled]",
    [HIST_END_LENGTH] = "[cut: length limit or full context]",
    [HIST_END_ERROR] = "[error: reply incomplete]",
    [HIST_END_INTERRUPTED] = "[interrupted: kvchat stopped mid-reply]",
};
static const char *const cut_marks[] = {
    [MSG_CUT_MAX_TOKENS] = "[cut: reply length limit (max_tokens)]",
    [MSG_CUT_CONTEXT] = "[cut: the context is full]",
};
/* One line where the turns dropped to fit the context end (they are dimmed
 * above it): the model sees only what follows. */
#define DROPPED_MARK "\xE2\x94\x80\xE2\x94\x80 earlier turns no longer in context \xE2\x94\x80\xE2\x94\x80"
#define STREAM_MARK "\xE2\x96\x8C" /* a block cursor while the reply streams */

static bool arena_reserve(struct compose *c, size_t more)
{
    if (c->arena_len + more <= c->arena_cap)
        return true;
    size_t cap = c->arena_cap ? c->arena_cap : 1 << 16;
    while (cap < c->arena_len + more)
        cap *= 2;
    char *a = realloc(c->arena, cap);
    if (!a)
        return false;
    c->arena = a;
    uint16_t *s = realloc(c->arena_sty, cap * sizeof *s);
    if (!s)
        return false;
    c->arena_sty = s;
    c->arena_cap = cap;
    return true;
}

static void push_dline(struct compose *c, struct dline d)
{
    if (c->n_dl == c->cap_dl) {
        size_t cap = c->cap_dl ? c->cap_dl * 2 : 256;
        struct dline *n = realloc(c->dl, cap * sizeof *n);
        if (!n)
            return;
        c->dl = n;
        c->cap_dl = cap;
    }
    c->dl[c->n_dl++] = d;
}

/* Adds arena bytes [OFF, OFF+LEN) wrapped to WIDTH as display lines. */
static void push_wrapped(struct compose *c, size_t off, size_t len, int width, int elem, bool styled,
                         bool fill, int indent)
{
    struct wrap_line wl[64];
    size_t n = layout_wrap(c->arena + off, len, width, wl, 64);
    struct wrap_line *w = wl;
    if (n > 64) {
        w = malloc(n * sizeof *w);
        if (!w)
            return;
        layout_wrap(c->arena + off, len, width, w, n);
    }
    for (size_t i = 0; i < n; i++)
        push_dline(c, (struct dline){off + w[i].start, w[i].len, elem, styled, fill, indent});
    if (w != wl)
        free(w);
}

/* Copies a message line into the arena with tabs expanded and returns its
 * offset; the arena must not move between this and the use of the offset. */
static size_t arena_put(struct compose *c, const char *s, size_t n, size_t *out_len)
{
    size_t tabs = 0;
    for (size_t i = 0; i < n; i++)
        tabs += s[i] == '\t';
    if (!arena_reserve(c, n + tabs * 3 + 16)) {
        *out_len = 0;
        return c->arena_len;
    }
    size_t off = c->arena_len, o = off;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\t') {
            memcpy(c->arena + o, "    ", 4);
            o += 4;
        } else if (s[i] != '\r') {
            c->arena[o++] = s[i];
        }
    }
    *out_len = o - off;
    c->arena_len = o;
    return off;
}

static void compose_text(struct compose *c, const char *text, size_t len, int elem, int width)
{
    size_t pos = 0;
    while (pos <= len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t e = nl ? (size_t)(nl - text) : len;
        size_t ll, off = arena_put(c, text + pos, e - pos, &ll);
        push_wrapped(c, off, ll, width, elem, false, false, 2);
        if (!nl)
            break;
        pos = e + 1;
    }
}

/* A reply as Markdown (markdown.h), its lines copied into the arena with
 * their styles. A parse that failed before giving anything shows the text
 * as typed instead. */
static void compose_markdown(struct compose *c, const char *text, size_t len, int elem, int width,
                             bool streaming)
{
    if (md_render(&c->md, text, len, width, streaming) != 0) { /* all of it, as typed, not half styled */
        compose_text(c, text, len, elem, width);
        return;
    }
    const struct md_doc *d = &c->md;
    if (!arena_reserve(c, d->len))
        return;
    size_t base = c->arena_len;
    if (d->len) { /* an empty reply renders no text: D's buffers may be NULL */
        memcpy(c->arena + base, d->text, d->len);
        memcpy(c->arena_sty + base, d->sty, d->len * sizeof *d->sty);
    }
    c->arena_len += d->len;
    for (size_t i = 0; i < d->n_lines; i++) {
        const struct md_line *l = &d->lines[i];
        push_dline(c, (struct dline){base + l->off, l->len, elem, true, l->fill, 2 + l->indent});
    }
}

/* The dropped turns' boundary line and a blank line after it. */
static void push_boundary(struct compose *c)
{
    size_t len, off = arena_put(c, DROPPED_MARK, strlen(DROPPED_MARK), &len);
    push_dline(c, (struct dline){off, len, TH_MARKER, false, false, 0});
    push_dline(c, (struct dline){0, 0, TH_NORMAL, false, false, 0});
}

/* A message's header, with its local time when timestamps are on: the
 * time alone today, the date too before (a resumed session's old turns). */
static const char *header(const struct compose *c, const struct msg *m, char *buf, size_t cap)
{
    const char *h = kinds[m->kind].head;
    if (!c->timestamps || m->created_ms <= 0)
        return h;
    time_t t = (time_t)(m->created_ms / 1000), now = time(NULL);
    struct tm tm, tn;
    if (!localtime_r(&t, &tm) || !localtime_r(&now, &tn))
        return h;
    char when[32];
    bool today = tm.tm_year == tn.tm_year && tm.tm_yday == tn.tm_yday;
    strftime(when, sizeof when, today ? "%H:%M" : "%Y-%m-%d %H:%M", &tm);
    snprintf(buf, cap, "%s \xC2\xB7 %s", h, when);
    return buf;
}

void compose_conversation(struct compose *c, const struct msg *msgs, size_t n, const char *stream,
                          size_t stream_len, int width, bool markdown)
{
    c->n_dl = 0;
    c->arena_len = 0;
    int tw = compose_line_cols(width, 2) > 8 ? compose_line_cols(width, 2) : 8; /* after the indent */
    /* The boundary: after the last dropped message, before the first turn
     * the model still sees (notices between do not end the dropped run). */
    size_t last_dropped = n;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].dropped && !msgs[i].hidden)
            last_dropped = i;
    bool marked = last_dropped == n;
    for (size_t i = 0; i < n; i++) {
        const struct msg *m = &msgs[i];
        if (m->hidden)
            continue; /* a variant not chosen: /variant and [ ] show it */
        if (!marked && i > last_dropped && (m->kind == MSG_USER || m->kind == MSG_ASSISTANT)) {
            push_boundary(c);
            marked = true;
        }
        const char *text = m->text ? m->text : stream;
        size_t len = m->text ? strlen(m->text) : stream_len;
        if (!text)
            text = "", len = 0;
        while (len && text[len - 1] == '\n')
            len--;
        size_t hl, first_line = c->n_dl;
        if (kinds[m->kind].head) {
            char hb[96];
            const char *h = header(c, m, hb, sizeof hb);
            char badge[128];
            if (m->n_variants > 1) {
                /* "‹2/3›": which of the turn's replies this is */
                snprintf(badge, sizeof badge, "%s \xE2\x80\xB9%d/%d\xE2\x80\xBA", h, m->variant,
                         m->n_variants);
                h = badge;
            }
            size_t off = arena_put(c, h, strlen(h), &hl);
            push_dline(c, (struct dline){off, hl, kinds[m->kind].head_elem, false, false, 0});
            const char *think;
            size_t tlen;
            if (m->kind == MSG_ASSISTANT && msgs_split_thinking(&text, &len, &think, &tlen)) {
                /* folded only once the reply is done: while it streams, the
                 * thinking is what there is to watch */
                bool fold = c->fold_thinking && m->text;
                char th[96];
                if (fold) {
                    size_t lines = 1;
                    for (size_t k = 0; k < tlen; k++)
                        lines += think[k] == '\n';
                    snprintf(th, sizeof th, "thinking \xE2\x80\xA6 %zu line%s folded (F5 unfolds)", lines,
                             lines == 1 ? "" : "s");
                } else {
                    snprintf(th, sizeof th, "thinking \xE2\x80\xA6");
                }
                off = arena_put(c, th, strlen(th), &hl);
                push_dline(c, (struct dline){off, hl, TH_THINKING, false, false, 2});
                if (!fold)
                    compose_text(c, think, tlen, TH_THINKING, tw);
            }
            if (markdown && m->kind == MSG_ASSISTANT)
                compose_markdown(c, text, len, kinds[m->kind].text_elem, tw, !m->text);
            else
                compose_text(c, text, len, kinds[m->kind].text_elem, tw);
        } else {
            size_t first = c->n_dl;
            compose_text(c, text, len, kinds[m->kind].text_elem, tw + 2);
            for (size_t k = first; k < c->n_dl; k++)
                c->dl[k].indent = 0;
        }
        const char *mark = NULL;
        if (m->kind == MSG_ASSISTANT && !m->text)
            mark = STREAM_MARK;
        else if (m->end == HIST_END_LENGTH && m->cut != MSG_CUT_UNKNOWN)
            mark = cut_marks[m->cut];
        else if ((size_t)m->end < sizeof end_marks / sizeof *end_marks)
            mark = end_marks[m->end];
        if (mark) {
            size_t off = arena_put(c, mark, strlen(mark), &hl);
            push_dline(c, (struct dline){off, hl, TH_MARKER, false, false, 2});
        }
        if (m->dropped) /* dimmed as a whole; the boundary line says why */
            for (size_t k = first_line; k < c->n_dl; k++) {
                c->dl[k].elem = TH_MARKER;
                c->dl[k].styled = false;
                c->dl[k].fill = false;
            }
        push_dline(c, (struct dline){0, 0, TH_NORMAL, false, false, 0});
    }
    if (!marked) /* nothing the model sees follows (a part of the list) */
        push_boundary(c);
}

void compose_free(struct compose *c)
{
    free(c->dl);
    free(c->arena);
    free(c->arena_sty);
    md_doc_free(&c->md);
    *c = (struct compose){0};
}
