/* markdown.c - md4c's blocks and spans turned into the conversation pane's
 * styled, wrapped lines. See markdown.h.
 *
 * md4c calls back as it parses: container blocks (quotes, lists, items)
 * open and close around leaf blocks (paragraphs, headings, code, tables,
 * rules), spans open and close inside them and text arrives in pieces. The
 * containers are a stack of frames, each giving the lines inside it a
 * prefix (a quote's bar, an item's marker on its first line and spaces of
 * the same width after, the hanging indent); a leaf's text is gathered
 * into a run of bytes and styles and laid out when the leaf ends, wrapped
 * to the width left after the prefix. Every byte goes out through
 * line_put, which stops at the width, so no input can overflow a line.
 */
#include "markdown.h"

#include <md4c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "utf8.h"

/* CommonMark plus GitHub's tables, task lists and bare URLs as links. HTML
 * is shown as typed: a terminal cannot render it, and a reply that talks
 * about <div> means the text. */
#define MD_PARSE_FLAGS (MD_FLAG_TABLES | MD_FLAG_TASKLISTS | MD_FLAG_PERMISSIVEAUTOLINKS | MD_FLAG_NOHTML)

/* Container frames tracked; deeper nesting is laid out as its parent (a
 * prefix that deep would not fit a pane anyway). */
#define MAX_DEPTH 16
/* A prefix takes at most half the width: deep nesting in a narrow pane
 * drops its outer bars rather than leaving no room for the text. */
#define PREFIX_CELLS 64

struct md_cell {      /* one table cell, its text in the run */
    size_t off, len;  /* bytes in md_doc.run */
    unsigned row, col;
    MD_ALIGN align;
};

enum frame_kind { FR_QUOTE, FR_UL, FR_OL, FR_LI };

struct frame {
    enum frame_kind kind;
    bool tight;       /* UL, OL: items without blank lines between them */
    unsigned next;    /* OL: the next item's number */
    char delim;       /* OL: '.' or ')' */
    char marker[32];  /* LI: what its first line starts with ("• ", "12. ") */
    int mcols;        /* LI: the marker's columns, the hanging indent */
    bool marked;      /* LI: the marker has been shown */
};

/* A prefix as one-column cells (bars, markers, digits and spaces are all
 * one column), so it can be cut to a width from the front. */
struct prefix {
    char ch[PREFIX_CELLS][4];
    uint8_t len[PREFIX_CELLS];
    uint16_t sty[PREFIX_CELLS];
    int cols;
};

struct rs { /* the render in progress */
    struct md_doc *d;
    const char *src;              /* the text being parsed, N bytes */
    size_t n;
    int width;
    struct frame fr[MAX_DEPTH];
    int depth;                    /* may exceed MAX_DEPTH: frames past it are not kept */
    int em, strong, link;         /* open spans */
    uint16_t leaf;                /* the leaf block's own style (headings) */
    int quotes;                   /* open block quotes */
    bool gap;                     /* a blank line before the next block */
    bool in_code;
    char lang[48];                /* the code block's language, "" when none */
    int code_no;
    bool in_table;
    unsigned cols, row, col;      /* the table's columns, the row and cell being read */
    size_t table_cells;           /* cells of this table: d->cells[0..) */
    char *href[4];                /* open links' addresses (owned), shown after their text */
    size_t href_len[4];
    size_t href_at[4];            /* where each link's text starts in the run */
    size_t line_start;            /* the line being written: its first byte in d->text */
    int line_cols, line_limit;
    bool oom;
};

/* ---- output ---- */

static bool grow(void **p, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : first;
    while (c < need)
        c *= 2;
    void *n = realloc(*p, c * elem);
    if (!n)
        return false;
    *p = n;
    *cap = c;
    return true;
}

static bool text_reserve(struct md_doc *d, size_t more)
{
    if (d->len + more <= d->cap)
        return true;
    size_t cap = d->cap, cap2 = d->cap;
    if (!grow((void **)&d->text, &cap, d->len + more, 1, 4096))
        return false;
    if (!grow((void **)&d->sty, &cap2, d->len + more, sizeof *d->sty, 4096))
        return false;
    d->cap = cap < cap2 ? cap : cap2;
    return true;
}

static void line_begin(struct rs *r, int indent, bool fill)
{
    struct md_doc *d = r->d;
    if (!grow((void **)&d->lines, &d->cap_lines, d->n_lines + 1, sizeof *d->lines, 64)) {
        r->oom = true;
        r->line_limit = 0;
        return;
    }
    d->lines[d->n_lines] = (struct md_line){d->len, 0, indent, fill};
    r->line_start = d->len;
    r->line_cols = 0;
    r->line_limit = r->width - indent;
}

/* Appends N bytes to the line being written, up to its width: the last
 * character that would pass it, and everything after, is left out. STY is
 * per byte, or NULL for ONE on every byte. */
static void line_put(struct rs *r, const char *s, size_t n, const uint16_t *sty, uint16_t one)
{
    struct md_doc *d = r->d;
    if (!text_reserve(d, n)) {
        r->oom = true;
        return;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_decode(s + i, n - i, &cp);
        int w = cp_width(cp);
        if (r->line_cols + w > r->line_limit)
            return;
        r->line_cols += w;
        memcpy(d->text + d->len, s + i, l);
        for (size_t k = 0; k < l; k++)
            d->sty[d->len + k] = sty ? sty[i] : one;
        d->len += l;
        i += l;
    }
}

static void line_end(struct rs *r)
{
    struct md_doc *d = r->d;
    if (r->oom && d->n_lines >= d->cap_lines)
        return;
    d->lines[d->n_lines].len = d->len - r->line_start;
    d->n_lines++;
}

/* ---- prefixes ---- */

static void prefix_add(struct prefix *p, const char *s, uint16_t sty)
{
    /* S is one-column characters: one cell each */
    for (size_t i = 0; s[i] && p->cols < PREFIX_CELLS;) {
        uint32_t cp;
        size_t l = utf8_decode(s + i, strlen(s + i), &cp);
        if (l == 0 || l > 4)
            break;
        memcpy(p->ch[p->cols], s + i, l);
        p->len[p->cols] = (uint8_t)l;
        p->sty[p->cols] = sty;
        p->cols++;
        i += l;
    }
}

/* The prefix of a line at the current depth. MARKERS: show the markers of
 * items not yet shown (the first line of their first block) and count them
 * as shown; else items show as spaces. */
static void prefix_build(struct rs *r, bool markers, struct prefix *p)
{
    p->cols = 0;
    int depth = r->depth < MAX_DEPTH ? r->depth : MAX_DEPTH;
    for (int i = 0; i < depth; i++) {
        struct frame *f = &r->fr[i];
        if (f->kind == FR_QUOTE) {
            prefix_add(p, "\xE2\x94\x82 ", MD_QUOTE); /* "│ " */
        } else if (f->kind == FR_LI) {
            if (markers && !f->marked) {
                prefix_add(p, f->marker, MD_BULLET);
                f->marked = true;
            } else {
                for (int k = 0; k < f->mcols; k++)
                    prefix_add(p, " ", MD_PLAIN);
            }
        }
    }
    int max = r->width / 2;
    if (p->cols > max) { /* keep the innermost part */
        int drop = p->cols - max;
        memmove(p->ch, p->ch[drop], (size_t)(p->cols - drop) * sizeof p->ch[0]);
        memmove(p->len, p->len + drop, (size_t)(p->cols - drop) * sizeof p->len[0]);
        memmove(p->sty, p->sty + drop, (size_t)(p->cols - drop) * sizeof p->sty[0]);
        p->cols = max;
    }
}

static void prefix_put(struct rs *r, const struct prefix *p, int cols)
{
    for (int i = 0; i < cols && i < p->cols; i++)
        line_put(r, p->ch[i], p->len[i], NULL, p->sty[i]);
}

/* The blank line between two blocks, with the bars of the quotes it is in. */
static void gap_line(struct rs *r)
{
    if (!r->gap)
        return;
    r->gap = false;
    if (r->d->n_lines == 0)
        return;
    struct prefix p;
    prefix_build(r, false, &p);
    int cols = p.cols;
    while (cols > 0 && p.ch[cols - 1][0] == ' ')
        cols--;
    line_begin(r, 0, false);
    prefix_put(r, &p, cols);
    line_end(r);
}

/* ---- the run: a leaf block's text ---- */

static uint16_t span_style(const struct rs *r)
{
    uint16_t s = r->leaf;
    if (r->em)
        s |= MD_ITALIC;
    if (r->strong)
        s |= MD_BOLD;
    if (r->link)
        s |= MD_UNDERLINE;
    if (r->quotes)
        s |= MD_QUOTE;
    if (r->in_code)
        s = MD_BLOCK;
    return s;
}

static void run_put(struct rs *r, const char *s, size_t n, uint16_t sty)
{
    struct md_doc *d = r->d;
    size_t tabs = 0;
    for (size_t i = 0; i < n; i++)
        tabs += s[i] == '\t';
    size_t cap = d->run_cap, cap2 = d->run_cap, need = d->run_len + n + tabs * 3;
    if (!grow((void **)&d->run, &cap, need, 1, 4096) ||
        !grow((void **)&d->run_sty, &cap2, need, sizeof *d->run_sty, 4096)) {
        r->oom = true;
        return;
    }
    d->run_cap = cap < cap2 ? cap : cap2;
    for (size_t i = 0; i < n; i++) {
        /* Tabs as four spaces, as the plain text shows them; CR dropped (a
         * CR LF reply); other control bytes stay and are drawn as '?'. */
        if (s[i] == '\r')
            continue;
        int k = s[i] == '\t' ? 4 : 1;
        for (int j = 0; j < k; j++) {
            d->run[d->run_len] = s[i] == '\t' ? ' ' : s[i];
            d->run_sty[d->run_len++] = sty;
        }
    }
}

/* Lays out bytes [OFF, OFF+LEN) of the run wrapped to the width after the
 * prefix: the first line gets the items' markers, the next ones spaces as
 * wide (the hanging indent). INDENT and FILL as in struct md_line. */
static void flow(struct rs *r, size_t off, size_t len, int indent, bool fill)
{
    struct md_doc *d = r->d;
    struct prefix first, cont;
    prefix_build(r, true, &first);
    prefix_build(r, false, &cont);
    int avail = r->width - indent - first.cols;
    struct wrap_line wl[32], *w = wl;
    size_t n = layout_wrap(d->run + off, len, avail, wl, 32);
    if (n > 32) {
        w = malloc(n * sizeof *w);
        if (!w) {
            r->oom = true;
            return;
        }
        layout_wrap(d->run + off, len, avail, w, n);
    }
    for (size_t i = 0; i < n; i++) {
        line_begin(r, indent, fill);
        prefix_put(r, i ? &cont : &first, first.cols);
        line_put(r, d->run + off + w[i].start, w[i].len, d->run_sty + off + w[i].start, 0);
        line_end(r);
    }
    if (w != wl)
        free(w);
}

/* The text gathered so far (a paragraph, a heading, a tight item's text)
 * as lines. */
static void flush_run(struct rs *r)
{
    struct md_doc *d = r->d;
    if (!d->run_len || r->in_table || r->in_code)
        return;
    gap_line(r);
    flow(r, 0, d->run_len, 0, false);
    d->run_len = 0;
}

/* ---- blocks ---- */

static struct frame *push_frame(struct rs *r, enum frame_kind kind)
{
    r->depth++;
    if (r->depth > MAX_DEPTH)
        return NULL;
    struct frame *f = &r->fr[r->depth - 1];
    *f = (struct frame){.kind = kind};
    return f;
}

static struct frame *top_frame(struct rs *r)
{
    return r->depth >= 1 && r->depth <= MAX_DEPTH ? &r->fr[r->depth - 1] : NULL;
}

static void enter_quote(struct rs *r, void *detail)
{
    (void)detail;
    gap_line(r);
    push_frame(r, FR_QUOTE);
    r->quotes++;
}

static void leave_quote(struct rs *r, void *detail)
{
    (void)detail;
    r->depth--;
    r->quotes--;
    r->gap = true;
}

static void enter_ul(struct rs *r, void *detail)
{
    gap_line(r);
    struct frame *f = push_frame(r, FR_UL);
    if (f)
        f->tight = ((MD_BLOCK_UL_DETAIL *)detail)->is_tight;
}

static void enter_ol(struct rs *r, void *detail)
{
    gap_line(r);
    MD_BLOCK_OL_DETAIL *o = detail;
    struct frame *f = push_frame(r, FR_OL);
    if (f) {
        f->tight = o->is_tight;
        f->next = o->start;
        f->delim = o->mark_delimiter == ')' ? ')' : '.';
    }
}

static void leave_list(struct rs *r, void *detail)
{
    (void)detail;
    r->depth--;
    /* A list nested in a tight item runs on into the next item. */
    struct frame *parent = top_frame(r);
    bool in_tight = false;
    if (parent && parent->kind == FR_LI && r->depth >= 2 && r->depth - 2 < MAX_DEPTH)
        in_tight = r->fr[r->depth - 2].tight;
    r->gap = !in_tight;
}

static void enter_li(struct rs *r, void *detail)
{
    MD_BLOCK_LI_DETAIL *li = detail;
    struct frame *list = top_frame(r);
    if (list && (list->kind == FR_UL || list->kind == FR_OL) && list->tight)
        r->gap = false; /* tight: items follow each other */
    else
        gap_line(r);
    char marker[32];
    if (list && list->kind == FR_OL) {
        snprintf(marker, sizeof marker, "%u%c ", list->next, list->delim);
        list->next++;
    } else {
        int uls = 0; /* the bullet shows the depth */
        for (int i = 0; i < r->depth && i < MAX_DEPTH; i++)
            uls += r->fr[i].kind == FR_UL;
        static const char *const bullets[] = {"\xE2\x80\xA2 ", "\xE2\x97\xA6 ", "\xE2\x96\xAA "}; /* • ◦ ▪ */
        snprintf(marker, sizeof marker, "%s", bullets[(uls > 0 ? uls - 1 : 0) % 3]);
    }
    if (li->is_task) /* md4c took "[x]" from the text: shown as part of the marker */
        snprintf(marker + strlen(marker), sizeof marker - strlen(marker), "[%c] ",
                 li->task_mark == ' ' ? ' ' : 'x');
    struct frame *f = push_frame(r, FR_LI);
    if (f) {
        snprintf(f->marker, sizeof f->marker, "%s", marker);
        f->mcols = text_width(marker, strlen(marker));
    }
}

static void leave_li(struct rs *r, void *detail)
{
    (void)detail;
    flush_run(r);
    struct frame *f = top_frame(r);
    if (f && f->kind == FR_LI && !f->marked) { /* an empty item still shows its marker */
        struct prefix p;
        prefix_build(r, true, &p);
        int cols = p.cols;
        while (cols > 0 && p.ch[cols - 1][0] == ' ')
            cols--;
        line_begin(r, 0, false);
        prefix_put(r, &p, cols);
        line_end(r);
    }
    r->depth--;
}

static void enter_hr(struct rs *r, void *detail)
{
    (void)detail;
    gap_line(r);
    struct prefix p;
    prefix_build(r, true, &p);
    line_begin(r, 0, false);
    prefix_put(r, &p, p.cols);
    for (int i = p.cols; i < r->width; i++)
        line_put(r, "\xE2\x94\x80", 3, NULL, MD_RULE); /* "─" */
    line_end(r);
    r->gap = true;
}

static void enter_h(struct rs *r, void *detail)
{
    unsigned level = ((MD_BLOCK_H_DETAIL *)detail)->level;
    r->leaf = level == 1 ? MD_HEADING | MD_BOLD | MD_UNDERLINE : level == 2 ? MD_HEADING | MD_BOLD : MD_HEADING;
}

static void leave_leaf(struct rs *r, void *detail)
{
    (void)detail;
    flush_run(r);
    r->leaf = 0;
    r->gap = true;
}

static void enter_code(struct rs *r, void *detail)
{
    MD_BLOCK_CODE_DETAIL *c = detail;
    r->in_code = true;
    r->code_no = ++r->d->n_code;
    size_t l = c->lang.size < sizeof r->lang - 1 ? c->lang.size : sizeof r->lang - 1;
    memcpy(r->lang, c->lang.text ? c->lang.text : "", l);
    r->lang[l] = 0;
}

static void leave_code(struct rs *r, void *detail)
{
    (void)detail;
    struct md_doc *d = r->d;
    r->in_code = false;
    gap_line(r);
    /* The label, in the block: "[N] language", the N of /copy N. */
    char label[80];
    snprintf(label, sizeof label, r->lang[0] ? "[%d] %s" : "[%d]", r->code_no, r->lang);
    struct prefix p;
    prefix_build(r, true, &p);
    line_begin(r, 2, true);
    prefix_put(r, &p, p.cols);
    line_put(r, label, strlen(label), NULL, MD_LABEL);
    line_end(r);
    /* The code, line by line; a long line wraps inside the block. */
    size_t len = d->run_len;
    if (len && d->run[len - 1] == '\n')
        len--; /* the last line's end, not an empty line */
    for (size_t at = 0; d->run_len && at <= len;) {
        const char *nl = memchr(d->run + at, '\n', len - at);
        size_t e = nl ? (size_t)(nl - d->run) : len;
        flow(r, at, e - at, 2, true);
        at = e + 1;
    }
    d->run_len = 0;
    r->gap = true;
}

static void enter_table(struct rs *r, void *detail)
{
    MD_BLOCK_TABLE_DETAIL *t = detail;
    flush_run(r);
    r->in_table = true;
    r->cols = t->col_count;
    r->row = 0;
    r->d->n_cells = 0;
    r->d->run_len = 0;
}

static void leave_tr(struct rs *r, void *detail)
{
    (void)detail;
    r->row++;
    r->col = 0;
}

static void enter_td(struct rs *r, void *detail)
{
    struct md_doc *d = r->d;
    if (!grow((void **)&d->cells, &d->cap_cells, d->n_cells + 1, sizeof *d->cells, 64)) {
        r->oom = true;
        return;
    }
    d->cells[d->n_cells++] = (struct md_cell){d->run_len, 0, r->row, r->col,
                                              ((MD_BLOCK_TD_DETAIL *)detail)->align};
    r->col++;
}

static void enter_th(struct rs *r, void *detail)
{
    enter_td(r, detail);
    r->leaf = MD_BOLD;
}

static void leave_td(struct rs *r, void *detail)
{
    (void)detail;
    struct md_doc *d = r->d;
    if (d->n_cells)
        d->cells[d->n_cells - 1].len = d->run_len - d->cells[d->n_cells - 1].off;
    r->leaf = 0;
}

/* A border row: LEFT, then each column's width plus its two spaces of
 * "─", joined by MID, then RIGHT. */
static void table_border(struct rs *r, const struct prefix *p, const int *w, unsigned cols, const char *left,
                         const char *mid, const char *right)
{
    line_begin(r, 0, false);
    prefix_put(r, p, p->cols);
    line_put(r, left, strlen(left), NULL, MD_RULE);
    for (unsigned c = 0; c < cols; c++) {
        for (int k = 0; k < w[c] + 2; k++)
            line_put(r, "\xE2\x94\x80", 3, NULL, MD_RULE);
        const char *j = c + 1 < cols ? mid : right;
        line_put(r, j, strlen(j), NULL, MD_RULE);
    }
    line_end(r);
}

static const char SPACES[] = "                                ";

static void put_spaces(struct rs *r, int n)
{
    while (n > 0) {
        int k = n < (int)sizeof SPACES - 1 ? n : (int)sizeof SPACES - 1;
        line_put(r, SPACES, (size_t)k, NULL, MD_PLAIN);
        n -= k;
    }
}

/* Width of the table with every column at most CAP columns wide. */
static long table_width(const int *nat, unsigned cols, int cap)
{
    long t = 1;
    for (unsigned c = 0; c < cols; c++)
        t += (nat[c] < cap ? nat[c] : cap) + 3;
    return t;
}

/* The table read so far, drawn: columns as wide as their widest cell; when
 * the table is wider than the pane the widest columns narrow first (their
 * cells wrap), and what still does not fit is cut at the pane's edge. */
static void leave_table(struct rs *r, void *detail)
{
    (void)detail;
    struct md_doc *d = r->d;
    r->in_table = false;
    unsigned cols = r->cols ? r->cols : 1, rows = r->row;
    int *nat = calloc(cols, sizeof *nat);
    if (!nat) {
        r->oom = true;
        d->run_len = 0;
        return;
    }
    MD_ALIGN *align = calloc(cols, sizeof *align);
    for (size_t i = 0; i < d->n_cells; i++) {
        struct md_cell *c = &d->cells[i];
        if (c->col >= cols)
            continue;
        int w = text_width(d->run + c->off, c->len);
        if (w > nat[c->col])
            nat[c->col] = w;
        if (c->row == 0 && align)
            align[c->col] = c->align;
    }
    int maxw = 1;
    for (unsigned c = 0; c < cols; c++) {
        if (nat[c] < 1)
            nat[c] = 1;
        if (nat[c] > maxw)
            maxw = nat[c];
    }
    gap_line(r);
    struct prefix p, cont;
    prefix_build(r, true, &p);
    prefix_build(r, false, &cont);
    long avail = r->width - p.cols;
    /* the largest cap that fits, by bisection: widths are monotone in it */
    int lo = 1, hi = maxw;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (table_width(nat, cols, mid) <= avail)
            lo = mid;
        else
            hi = mid - 1;
    }
    for (unsigned c = 0; c < cols; c++)
        if (nat[c] > lo)
            nat[c] = lo;
    const int *w = nat;
    table_border(r, &p, w, cols, "\xE2\x94\x8C", "\xE2\x94\xAC", "\xE2\x94\x90"); /* ┌ ┬ ┐ */
    struct wrap_line *cw = NULL; /* each cell's lines, cols per row */
    size_t *cn = calloc(cols, sizeof *cn), *ci = calloc(cols, sizeof *ci);
    size_t next = 0;
    for (unsigned row = 0; row < rows && cn && ci; row++) {
        /* the row's cells, in column order (md4c gives them in order) */
        size_t first = next;
        while (next < d->n_cells && d->cells[next].row == row)
            next++;
        size_t height = 1, total = 0;
        for (unsigned c = 0; c < cols; c++)
            cn[c] = 0;
        for (size_t i = first; i < next; i++)
            if (d->cells[i].col < cols) {
                cn[d->cells[i].col] = layout_wrap(d->run + d->cells[i].off, d->cells[i].len, w[d->cells[i].col],
                                                  NULL, 0);
                total += cn[d->cells[i].col];
            }
        struct wrap_line *nw = realloc(cw, (total ? total : 1) * sizeof *nw);
        if (!nw) {
            r->oom = true;
            break;
        }
        cw = nw;
        size_t at = 0;
        for (unsigned c = 0; c < cols; c++) {
            ci[c] = at;
            at += cn[c];
            if (cn[c] > height)
                height = cn[c];
        }
        for (size_t i = first; i < next; i++)
            if (d->cells[i].col < cols) {
                unsigned c = d->cells[i].col;
                layout_wrap(d->run + d->cells[i].off, d->cells[i].len, w[c], cw + ci[c], cn[c]);
                for (size_t k = 0; k < cn[c]; k++)
                    cw[ci[c] + k].start += d->cells[i].off;
            }
        for (size_t k = 0; k < height; k++) {
            line_begin(r, 0, false);
            prefix_put(r, &cont, cont.cols);
            line_put(r, "\xE2\x94\x82", 3, NULL, MD_RULE); /* │ */
            for (unsigned c = 0; c < cols; c++) {
                int used = 0;
                const struct wrap_line *wl = k < cn[c] ? &cw[ci[c] + k] : NULL;
                int pad = wl ? w[c] - wl->cols : w[c];
                int left = !align ? 0 : align[c] == MD_ALIGN_RIGHT ? pad : align[c] == MD_ALIGN_CENTER ? pad / 2 : 0;
                put_spaces(r, 1 + left);
                if (wl) {
                    line_put(r, d->run + wl->start, wl->len, d->run_sty + wl->start, 0);
                    used = wl->cols;
                }
                put_spaces(r, w[c] - used - left + 1);
                line_put(r, "\xE2\x94\x82", 3, NULL, MD_RULE);
            }
            line_end(r);
        }
        if (row == 0 && rows > 1)
            table_border(r, &cont, w, cols, "\xE2\x94\x9C", "\xE2\x94\xBC", "\xE2\x94\xA4"); /* ├ ┼ ┤ */
    }
    table_border(r, &cont, w, cols, "\xE2\x94\x94", "\xE2\x94\xB4", "\xE2\x94\x98"); /* └ ┴ ┘ */
    free(cw);
    free(cn);
    free(ci);
    free(align);
    free(nat);
    d->run_len = 0;
    d->n_cells = 0;
    r->gap = true;
}

/* What each block does when it opens and closes (NULL: nothing). Any block
 * opening first lays out the text gathered before it. */
static const struct {
    void (*enter)(struct rs *r, void *detail);
    void (*leave)(struct rs *r, void *detail);
} blocks[] = {
    [MD_BLOCK_DOC] = {NULL, NULL},
    [MD_BLOCK_QUOTE] = {enter_quote, leave_quote},
    [MD_BLOCK_UL] = {enter_ul, leave_list},
    [MD_BLOCK_OL] = {enter_ol, leave_list},
    [MD_BLOCK_LI] = {enter_li, leave_li},
    [MD_BLOCK_HR] = {enter_hr, NULL},
    [MD_BLOCK_H] = {enter_h, leave_leaf},
    [MD_BLOCK_CODE] = {enter_code, leave_code},
    [MD_BLOCK_HTML] = {NULL, leave_leaf},
    [MD_BLOCK_P] = {NULL, leave_leaf},
    [MD_BLOCK_TABLE] = {enter_table, leave_table},
    [MD_BLOCK_THEAD] = {NULL, NULL},
    [MD_BLOCK_TBODY] = {NULL, NULL},
    [MD_BLOCK_TR] = {NULL, leave_tr},
    [MD_BLOCK_TH] = {enter_th, leave_td},
    [MD_BLOCK_TD] = {enter_td, leave_td},
};

static int on_enter_block(MD_BLOCKTYPE type, void *detail, void *user)
{
    struct rs *r = user;
    flush_run(r);
    if ((size_t)type < sizeof blocks / sizeof *blocks && blocks[type].enter)
        blocks[type].enter(r, detail);
    return 0;
}

static int on_leave_block(MD_BLOCKTYPE type, void *detail, void *user)
{
    struct rs *r = user;
    if ((size_t)type < sizeof blocks / sizeof *blocks && blocks[type].leave)
        blocks[type].leave(r, detail);
    return 0;
}

/* ---- spans ---- */

static void enter_em(struct rs *r, void *detail)
{
    (void)detail;
    r->em++;
}

static void leave_em(struct rs *r, void *detail)
{
    (void)detail;
    r->em--;
}

static void enter_strong(struct rs *r, void *detail)
{
    (void)detail;
    r->strong++;
}

static void leave_strong(struct rs *r, void *detail)
{
    (void)detail;
    r->strong--;
}

/* A link's (or an image's) address, kept to show dimmed after its text. */
static void enter_link(struct rs *r, const MD_ATTRIBUTE *a)
{
    int i = r->link++;
    if (i >= 4)
        return;
    r->href_at[i] = r->d->run_len;
    r->href[i] = a->size ? malloc(a->size) : NULL;
    r->href_len[i] = r->href[i] ? a->size : 0;
    if (r->href[i])
        memcpy(r->href[i], a->text, a->size);
}

static void enter_a(struct rs *r, void *detail)
{
    enter_link(r, &((MD_SPAN_A_DETAIL *)detail)->href);
}

static void enter_img(struct rs *r, void *detail)
{
    enter_link(r, &((MD_SPAN_IMG_DETAIL *)detail)->src);
}

/* After the text: " (address)", unless the text is the address already
 * (a bare URL, <URL>, an e-mail address). */
static void leave_link(struct rs *r, void *detail)
{
    (void)detail;
    int i = --r->link;
    if (i < 0) {
        r->link = 0;
        return;
    }
    if (i >= 4)
        return;
    char *h = r->href[i];
    size_t hl = r->href_len[i], tl = 0;
    r->href[i] = NULL;
    if (!h)
        return;
    /* the link's text is what the run took since the link opened */
    struct md_doc *d = r->d;
    size_t k = r->href_at[i] <= d->run_len ? r->href_at[i] : d->run_len;
    tl = d->run_len - k;
    const char *t = d->run + k;
    bool same = (tl == hl && memcmp(t, h, hl) == 0) ||
                (hl == tl + 7 && memcmp(h, "mailto:", 7) == 0 && memcmp(h + 7, t, tl) == 0);
    if (!same) {
        run_put(r, " (", 2, MD_URL);
        run_put(r, h, hl, MD_URL);
        run_put(r, ")", 1, MD_URL);
    }
    free(h);
}

static const struct {
    void (*enter)(struct rs *r, void *detail);
    void (*leave)(struct rs *r, void *detail);
} spans[] = {
    [MD_SPAN_EM] = {enter_em, leave_em},
    [MD_SPAN_STRONG] = {enter_strong, leave_strong},
    [MD_SPAN_A] = {enter_a, leave_link},
    [MD_SPAN_IMG] = {enter_img, leave_link},
    [MD_SPAN_CODE] = {NULL, NULL}, /* its text comes as MD_TEXT_CODE */
};

static int on_enter_span(MD_SPANTYPE type, void *detail, void *user)
{
    if ((size_t)type < sizeof spans / sizeof *spans && spans[type].enter)
        spans[type].enter(user, detail);
    return 0;
}

static int on_leave_span(MD_SPANTYPE type, void *detail, void *user)
{
    if ((size_t)type < sizeof spans / sizeof *spans && spans[type].leave)
        spans[type].leave(user, detail);
    return 0;
}

/* ---- text ---- */

/* The entities worth decoding by name; others (and the numeric ones that
 * are not valid characters) stay as typed. */
static const struct {
    const char *name;
    const char *utf8;
} entities[] = {
    {"&amp;", "&"},         {"&lt;", "<"},           {"&gt;", ">"},
    {"&quot;", "\""},       {"&apos;", "'"},         {"&nbsp;", " "},
    {"&copy;", "\xC2\xA9"}, {"&reg;", "\xC2\xAE"},   {"&mdash;", "\xE2\x80\x94"},
    {"&ndash;", "\xE2\x80\x93"}, {"&hellip;", "\xE2\x80\xA6"}, {"&rarr;", "\xE2\x86\x92"},
    {"&larr;", "\xE2\x86\x90"}, {"&times;", "\xC3\x97"}, {"&deg;", "\xC2\xB0"},
};


static void put_entity(struct rs *r, const char *s, size_t n, uint16_t sty)
{
    for (size_t i = 0; i < sizeof entities / sizeof *entities; i++)
        if (strlen(entities[i].name) == n && memcmp(entities[i].name, s, n) == 0) {
            run_put(r, entities[i].utf8, strlen(entities[i].utf8), sty);
            return;
        }
    if (n >= 4 && s[1] == '#') { /* &#123; or &#x1F600; */
        bool hex = s[2] == 'x' || s[2] == 'X';
        uint32_t cp = 0;
        bool ok = n > (hex ? 4u : 3u) && n <= 12;
        for (size_t i = hex ? 3 : 2; ok && i + 1 < n; i++) {
            char c = s[i];
            int v = c >= '0' && c <= '9' ? c - '0' : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (v < 0 || cp > 0x10FFFF)
                ok = false;
            else
                cp = cp * (hex ? 16 : 10) + (uint32_t)v;
        }
        if (ok && cp >= 0x20 && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF) && !(cp >= 0x7F && cp < 0xA0)) {
            char u[4];
            run_put(r, u, kv_utf8_put(cp, u), sty);
            return;
        }
    }
    run_put(r, s, n, sty);
}

/* The longest text md4c hands out of its own (its indent padding is 16
 * spaces); anything longer comes from the source. */
#define MD_OWN_TEXT_MAX 16

static int on_text(MD_TEXTTYPE type, const MD_CHAR *text, MD_SIZE size, void *user)
{
    struct rs *r = user;
    /* A text lies in the source, or is one of md4c's own short strings
     * (a newline, a code block's indent padding). md4c 0.4.8 can hand out
     * a span at or past the end of a cut-off reply (a link destination cut
     * inside a list inside a quote, as streaming does), of a wrapped-around
     * length: the parse is called off and the caller shows the plain text. */
    uintptr_t t = (uintptr_t)text, s0 = (uintptr_t)r->src;
    bool near = t >= s0 && t - s0 <= r->n + MD_OWN_TEXT_MAX;
    if (near ? t - s0 > r->n || size > r->n - (t - s0) : size > MD_OWN_TEXT_MAX)
        return -1;
    uint16_t sty = span_style(r);
    if (type == MD_TEXT_NULLCHAR)
        run_put(r, "\xEF\xBF\xBD", 3, sty);
    else if (type == MD_TEXT_BR || type == MD_TEXT_SOFTBR)
        /* A line break in the reply is one on screen: models write lines
         * meant to stay lines (verses, addresses, steps) without Markdown's
         * two trailing spaces. A table cell has none to give. */
        run_put(r, r->in_table ? " " : "\n", 1, sty);
    else if (type == MD_TEXT_ENTITY)
        put_entity(r, text, size, sty);
    else if (type == MD_TEXT_CODE && !r->in_code)
        run_put(r, text, size, sty | MD_CODE);
    else
        run_put(r, text, size, sty);
    return 0;
}

/* ---- entry points ---- */

/* How much of a streaming reply to show: all but a last line that the next
 * bytes could still turn into something else (a setext underline making
 * the paragraph above a heading, a table's delimiter row, a list or a
 * fence opening). */
static size_t stable_prefix(const char *src, size_t n)
{
    size_t ls = n;
    while (ls > 0 && src[ls - 1] != '\n')
        ls--;
    if (ls == n)
        return n;
    for (size_t i = ls; i < n; i++)
        if (!strchr("-=|:*_+`~ \t", src[i]) || src[i] == 0)
            return n;
    return ls;
}

int md_render(struct md_doc *d, const char *src, size_t n, int width, bool streaming)
{
    d->n_lines = 0;
    d->len = 0;
    d->n_code = 0;
    d->run_len = 0;
    d->n_cells = 0;
    if (streaming)
        n = stable_prefix(src, n);
    /* The run buffers exist from the start: a table of empty cells measures
     * them before any text has arrived. */
    size_t cap = d->run_cap, cap2 = d->run_cap;
    if (!grow((void **)&d->run, &cap, 1, 1, 4096) ||
        !grow((void **)&d->run_sty, &cap2, 1, sizeof *d->run_sty, 4096))
        return -1;
    d->run_cap = cap < cap2 ? cap : cap2;
    struct rs r = {.d = d, .src = src, .n = n, .width = width < 8 ? 8 : width};
    static const MD_PARSER parser = {
        .flags = MD_PARSE_FLAGS,
        .enter_block = on_enter_block,
        .leave_block = on_leave_block,
        .enter_span = on_enter_span,
        .leave_span = on_leave_span,
        .text = on_text,
    };
    int rc = n ? md_parse(src, (MD_SIZE)(n > 0xFFFFFFFFu ? 0xFFFFFFFFu : n), &parser, &r) : 0;
    flush_run(&r);
    for (int i = 0; i < 4; i++)
        free(r.href[i]);
    return rc == 0 ? 0 : -1;
}

void md_doc_free(struct md_doc *d)
{
    free(d->lines);
    free(d->text);
    free(d->sty);
    free(d->run);
    free(d->run_sty);
    free(d->cells);
    *d = (struct md_doc){0};
}

/* ---- /copy N ---- */

struct code_pick {
    const char *src; /* the text parsed, N bytes */
    size_t n;
    bool at_end;     /* the last piece taken ended where the text does */
    int64_t nth, seen;
    bool in;   /* inside the block asked for */
    bool found; /* and it has ended */
    char *buf; /* owned */
    size_t len, cap;
    bool oom;
};

static int pick_enter(MD_BLOCKTYPE type, void *detail, void *user)
{
    (void)detail;
    struct code_pick *p = user;
    if (type == MD_BLOCK_CODE && ++p->seen == p->nth)
        p->in = true;
    return 0;
}

static int pick_leave(MD_BLOCKTYPE type, void *detail, void *user)
{
    (void)detail;
    struct code_pick *p = user;
    if (type != MD_BLOCK_CODE || !p->in)
        return 0;
    p->in = false;
    p->found = true;
    return 1; /* found: stop parsing */
}

static int pick_span(MD_SPANTYPE type, void *detail, void *user)
{
    (void)type, (void)detail, (void)user;
    return 0;
}

static int pick_text(MD_TEXTTYPE type, const MD_CHAR *text, MD_SIZE size, void *user)
{
    struct code_pick *p = user;
    if (!p->in)
        return 0;
    if (type == MD_TEXT_NULLCHAR)
        text = "\xEF\xBF\xBD", size = 3;
    if (!grow((void **)&p->buf, &p->cap, p->len + size + 1, 1, 256)) {
        p->oom = true;
        return 1;
    }
    memcpy(p->buf + p->len, text, size);
    p->len += size;
    if (text >= p->src && text <= p->src + p->n)
        p->at_end = text + size == p->src + p->n;
    return 0;
}

char *md_code_block(const char *src, size_t n, int64_t nth)
{
    if (nth < 1 || !src)
        return NULL;
    struct code_pick p = {.src = src, .n = n, .nth = nth};
    static const MD_PARSER parser = {
        .flags = MD_PARSE_FLAGS,
        .enter_block = pick_enter,
        .leave_block = pick_leave,
        .enter_span = pick_span,
        .leave_span = pick_span,
        .text = pick_text,
    };
    md_parse(src, (MD_SIZE)(n > 0xFFFFFFFFu ? 0xFFFFFFFFu : n), &parser, &p);
    if (!(p.in || p.found) || p.oom) {
        free(p.buf);
        return NULL;
    }
    if (!p.buf)
        return strdup("");
    /* md4c ends every code line with a newline; a block that runs to the
     * end of a text without one gets none, as typed */
    if (p.at_end && p.len && p.buf[p.len - 1] == '\n' && n && src[n - 1] != '\n')
        p.len--;
    p.buf[p.len] = 0;
    return p.buf;
}
