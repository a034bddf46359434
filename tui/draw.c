/* draw.c - composing and drawing a frame: the title, the sessions sidebar,
 * the conversation (lines from compose.c), the meters (values from
 * meters.c), the status line and the input pane, refreshed once per frame;
 * also the load progress screen, the fatal-error screen and the theme's
 * colour pairs. Everything that calls ncurses to paint lives here.
 */
#include "ui_internal.h"

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fit.h"
#include "meters.h"
#include "sidebar.h"
#include "overlay.h"

/* ---- colours ---- */

static attr_t elem_attr(struct ui *u, int el)
{
    const struct theme_style *s = &u->theme.s[el];
    attr_t a = 0;
    if (s->attrs & THA_BOLD)
        a |= A_BOLD;
    if (s->attrs & THA_DIM)
        a |= A_DIM;
#ifdef A_ITALIC
    if (s->attrs & THA_ITALIC)
        a |= A_ITALIC;
#endif
    if (s->attrs & THA_UNDERLINE)
        a |= A_UNDERLINE;
    if (s->attrs & THA_REVERSE)
        a |= A_REVERSE;
    if (u->color)
        return a | COLOR_PAIR(el + 1);
    /* Without colour, bars of the frame need reverse video to stand out. */
    if (el == TH_TITLE || el == TH_STATUS || el == TH_SIDEBAR_CURRENT || el == TH_CODE)
        a |= A_REVERSE;
    return a;
}

static int reduce_color(int c)
{
    if (c < 0 || COLORS >= 256)
        return c;
    if (COLORS >= 16 && c < 16)
        return c;
    return theme_color_to8(c);
}

/* A style's colours for this terminal. Below 256 colours the pair is
 * reduced together, so a foreground never lands on its own background (see
 * theme_pair_to8); 16-colour terminals keep the bright half as it is. */
static void reduce_pair(int fg, int bg, short *out_fg, short *out_bg)
{
    int f = fg, b = bg;
    if (COLORS < 16) {
        theme_pair_to8(fg, bg, &f, &b);
    } else if (COLORS < 256) {
        f = reduce_color(fg);
        b = reduce_color(bg);
        int eb = b < 0 ? 0 : b;
        if (f == eb)
            f = eb == 7 || eb == 15 ? 0 : 7;
    }
    *out_fg = (short)f;
    *out_bg = (short)b;
}

void ui_apply_theme(struct ui *u)
{
    u->color = false;
    const char *nc = getenv("NO_COLOR");
    if ((nc && *nc) || !has_colors())
        return;
    start_color();
    use_default_colors();
    if (COLOR_PAIRS < TH_COUNT + 1)
        return;
    u->color = true;
    for (int i = 0; i < TH_COUNT; i++) {
        short f, b;
        reduce_pair(u->theme.s[i].fg, u->theme.s[i].bg, &f, &b);
        init_pair((short)(i + 1), f, b);
    }
    bkgdset(' ' | elem_attr(u, TH_NORMAL));
}

/* ---- drawing ---- */

static int md_elem(uint16_t s)
{
    if (s & (MD_BLOCK | MD_LABEL))
        return TH_CODE_BLOCK;
    if (s & MD_CODE)
        return TH_CODE;
    if (s & MD_HEADING)
        return TH_HEADING;
    if (s & MD_BULLET)
        return TH_BULLET;
    if (s & MD_RULE)
        return TH_BORDER;
    if (s & MD_QUOTE)
        return TH_QUOTE;
    return TH_NORMAL;
}

static attr_t md_attr(struct ui *u, uint16_t s)
{
    attr_t a = elem_attr(u, md_elem(s));
    if (s & MD_BOLD)
        a |= A_BOLD;
    if (s & MD_UNDERLINE)
        a |= A_UNDERLINE;
    if (s & (MD_URL | MD_LABEL))
        a |= A_DIM;
#ifdef A_ITALIC
    if (s & MD_ITALIC)
        a |= A_ITALIC;
#endif
    return a;
}

/* Draws LEN bytes of UTF-8 at (Y, X), at most MAXW columns, with one
 * attribute or per-byte Markdown styles. Control characters and invalid
 * bytes become '?' so nothing the model emits can move the cursor. Returns
 * the columns used. */
unsigned long ui_elem_attr(struct ui *u, int el) { return elem_attr(u, el); }

static int draw_text(struct ui *u, int y, int x, int maxw, const char *s, size_t len, attr_t attr,
                     const uint16_t *sty)
{
    int cols = 0;
    move(y, x);
    size_t i = 0;
    while (i < len) {
        attr_t a = sty ? md_attr(u, sty[i]) : attr;
        size_t j = i;
        int w = 0;
        while (j < len && (!sty || sty[j] == sty[i])) {
            uint32_t cp;
            size_t l = utf8_decode(s + j, len - j, &cp);
            int cw = cp_width(cp);
            if (cols + w + cw > maxw)
                break;
            if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || cp == 0xFFFD)
                break;
            w += cw;
            j += l;
        }
        attrset(a);
        if (j > i) {
            addnstr(s + i, (int)(j - i));
            cols += w;
            i = j;
            continue;
        }
        if (i >= len)
            break;
        uint32_t cp;
        size_t l = utf8_decode(s + i, len - i, &cp);
        if (cols + 1 > maxw)
            break;
        addch('?');
        cols++;
        i += l;
    }
    return cols;
}

static void fill_rect(struct ui *u, struct rect r, int elem)
{
    attrset(elem_attr(u, elem));
    for (int y = r.y; y < r.y + r.h; y++)
        mvhline(y, r.x, ' ', r.w);
}

/* A border drawn with U+2502 itself: ACS line drawing depends on terminfo
 * details that differ between terminals and multiplexers. */
static void draw_vline(struct ui *u, int y, int x, int h)
{
    attrset(elem_attr(u, TH_BORDER));
    for (int i = 0; i < h; i++)
        mvaddstr(y + i, x, "\xE2\x94\x82");
}

/* The model's name and quantisation for the title line, read from the
 * file's metadata once per model (a remote model has no file). */
static void title_model(struct ui *u)
{
    if (strcmp(u->model_for, u->info->model_path) == 0)
        return;
    snprintf(u->model_for, sizeof u->model_for, "%s", u->info->model_path);
    u->model_quant[0] = 0;
    if (ui_remote(u)) {
        snprintf(u->model_shown, sizeof u->model_shown, "%s", u->info->model_name);
        return;
    }
    sidebar_model_name(u->info->model_name, u->info->model_path, u->model_shown, sizeof u->model_shown);
    struct engine_file_info fi;
    char err[256];
    if (!u->info->synthetic && engine_describe_file(u->info->model_path, &fi, err, sizeof err) == 0)
        snprintf(u->model_quant, sizeof u->model_quant, "%s", fi.quant);
}

static void draw_title(struct ui *u)
{
    struct rect r = u->lay.title;
    fill_rect(u, r, TH_TITLE);
    title_model(u);
    char buf[1400], sess[400] = "new conversation", quant[40] = "";
    if (u->conv.sid >= 0 && u->sess_title[0])
        snprintf(sess, sizeof sess, "session %lld: %s", (long long)u->conv.sid, u->sess_title);
    else if (u->conv.sid >= 0)
        snprintf(sess, sizeof sess, "session %lld", (long long)u->conv.sid);
    if (u->model_quant[0])
        snprintf(quant, sizeof quant, " %s", u->model_quant);
    /* The session's name is what the line is read for: where everything
     * does not fit, the device's name goes first, then the backend and the
     * context size (the meters and /show still say them). */
    const char *saving = u->h ? "" : " \xC2\xB7 not saving";
    for (int detail = 2; detail >= 0; detail--) {
        char ctx[300] = "";
        if (ui_remote(u)) {
            /* who answers: the model @ host:port (the origin without its scheme) */
            const char *hp = strstr(u->info->model_path, "://");
            if (detail > 0)
                snprintf(ctx, sizeof ctx, " @ %.256s", hp ? hp + 3 : u->info->model_path);
            snprintf(buf, sizeof buf, " kvchat \xC2\xB7 %s%s \xC2\xB7 %s%s", u->model_shown, ctx, sess, saving);
        } else {
            if (detail == 2)
                snprintf(ctx, sizeof ctx, " \xC2\xB7 ctx %d \xC2\xB7 %s (%s)", u->info->n_ctx,
                         u->info->backend, u->info->device);
            else if (detail == 1)
                snprintf(ctx, sizeof ctx, " \xC2\xB7 ctx %d \xC2\xB7 %s", u->info->n_ctx, u->info->backend);
            snprintf(buf, sizeof buf, " kvchat \xC2\xB7 %s%s%s \xC2\xB7 %s%s", u->model_shown, quant, ctx, sess,
                     saving);
        }
        if (text_width(buf, strlen(buf)) <= r.w)
            break;
    }
    int tw = draw_text(u, r.y, r.x, r.w, buf, strlen(buf), elem_attr(u, TH_TITLE), NULL);
    if (ui_remote(u) && u->o.insecure) {
        const char *warn = " \xC2\xB7 INSECURE: TLS certificate not checked";
        tw += draw_text(u, r.y, r.x + tw, r.w - tw, warn, strlen(warn),
                        elem_attr(u, TH_ERROR) | A_BOLD | A_REVERSE, NULL);
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s", warn);
    }
    const char *hint = "F2 sessions \xC2\xB7 /help ";
    int hw = text_width(hint, strlen(hint));
    if (r.w - hw > text_width(buf, strlen(buf)) + 2)
        draw_text(u, r.y, r.x + r.w - hw, hw, hint, strlen(hint), elem_attr(u, TH_TITLE), NULL);
}

static void draw_conversation(struct ui *u)
{
    struct rect r = u->lay.conv;
    u->comp.timestamps = u->timestamps;
    u->comp.fold_thinking = u->fold_thinking;
    pthread_mutex_lock(&u->mu); /* the stream the reply is read from */
    compose_conversation(&u->comp, u->msgs.v, u->msgs.n, u->stream, u->stream_len, r.w, true);
    pthread_mutex_unlock(&u->mu);
    int total = (int)u->comp.n_dl;
    /* Scrolled up, the view holds still: lines that arrived below it add to
     * the distance from the bottom (at the same width; a resize rewraps). */
    if (u->scroll > 0 && r.w == u->conv_width && total > u->conv_lines)
        u->scroll += total - u->conv_lines;
    u->conv_lines = total;
    u->conv_width = r.w;
    /* Scrolled up, the last row holds the "more lines" hint, not text. */
    int h = u->scroll > 0 && r.h > 1 ? r.h - 1 : r.h;
    int max_scroll = total > h ? total - h : 0;
    if (u->scroll > max_scroll)
        u->scroll = max_scroll;
    if (u->scroll == 0)
        h = r.h;
    int first = total - h - u->scroll;
    if (first < 0)
        first = 0;
    for (int row = 0; row < h && first + row < total; row++) {
        const struct dline *d = &u->comp.dl[first + row];
        int y = r.y + row;
        if (d->fill) {
            attrset(elem_attr(u, TH_CODE_BLOCK));
            mvhline(y, r.x + 2, ' ', r.w - 2);
        }
        draw_text(u, y, r.x + 1 + d->indent, compose_line_cols(r.w, d->indent), u->comp.arena + d->off, d->len,
                  elem_attr(u, d->elem), d->styled ? u->comp.arena_sty + d->off : NULL);
    }
    if (u->scroll > 0) {
        char buf[64];
        snprintf(buf, sizeof buf, " \xE2\x86\x93 %d more lines (PgDn) ", u->scroll);
        int w = text_width(buf, strlen(buf));
        draw_text(u, r.y + r.h - 1, r.x + r.w - w - 1, w, buf, strlen(buf), elem_attr(u, TH_STATUS), NULL);
    }
}

/* /model's picker, over the conversation pane: the list with the chosen row
 * reversed, scrolled to keep it in sight. */
static void draw_picker(struct ui *u)
{
    struct rect r = u->lay.conv;
    if (!u->pick_open || r.h < 3 || r.w < 8)
        return;
    fill_rect(u, r, TH_NORMAL);
    const char *t = " Choose a model: \xE2\x86\x91\xE2\x86\x93 and Enter, Esc cancels \xC2\xB7 \xE2\x97\x8F in use";
    draw_text(u, r.y, r.x + 1, r.w - 2, t, strlen(t), elem_attr(u, TH_NOTICE) | A_BOLD, NULL);
    int rows = r.h - 1;
    size_t first = u->pick_sel >= (size_t)rows ? u->pick_sel - (size_t)rows + 1 : 0;
    for (int row = 0; row < rows && first + (size_t)row < u->n_models; row++) {
        size_t i = first + (size_t)row;
        char buf[2100];
        snprintf(buf, sizeof buf, "%3zu  %s", i + 1, u->model_rows[i] ? u->model_rows[i] : u->model_names[i]);
        attr_t a = elem_attr(u, TH_NORMAL) | (i == u->pick_sel ? A_REVERSE : 0);
        if (i == u->pick_sel) {
            attrset(a);
            mvhline(r.y + 1 + row, r.x, ' ', r.w);
        }
        draw_text(u, r.y + 1 + row, r.x + 1, r.w - 2, buf, strlen(buf), a, NULL);
    }
}

/* The help or /show overlay, over the conversation pane: a title line
 * with the keys that scroll and close it, then the text from its top line. */
static void draw_overlay(struct ui *u)
{
    struct rect r = u->lay.conv;
    if (!u->ov.open || r.h < 3 || r.w < 8)
        return;
    fill_rect(u, r, TH_NORMAL);
    int rows = r.h - 1;
    overlay_key(&u->ov, OVK_OTHER, rows); /* clamps the top to this height */
    char t[256];
    bool below = u->ov.top + (size_t)rows < u->ov.n_lines;
    snprintf(t, sizeof t, " %s \xC2\xB7 \xE2\x86\x91\xE2\x86\x93 PgUp/PgDn scroll \xC2\xB7 Esc, q or F1 closes%s",
             u->ov.title, below ? " \xC2\xB7 more below \xE2\x86\x93" : "");
    attrset(elem_attr(u, TH_STATUS));
    mvhline(r.y, r.x, ' ', r.w);
    draw_text(u, r.y, r.x, r.w, t, strlen(t), elem_attr(u, TH_STATUS), NULL);
    for (int row = 0; row < rows && u->ov.top + (size_t)row < u->ov.n_lines; row++) {
        size_t len;
        const char *l = overlay_line(&u->ov, u->ov.top + (size_t)row, &len);
        /* a line starting without indent is a heading */
        int el = len && l[0] != ' ' ? TH_HEADING : TH_NORMAL;
        draw_text(u, r.y + 1 + row, r.x + 1, r.w - 2, l, len, elem_attr(u, el), NULL);
    }
}

/* The sessions sidebar: a heading, the filter (or the keys), then the rows,
 * the selected one reversed and the conversation on screen highlighted. */
static void draw_sidebar(struct ui *u)
{
    struct rect r = u->lay.sidebar;
    if (!r.w)
        return;
    fill_rect(u, r, TH_SIDEBAR);
    int w = r.w - 1; /* the border takes the last column */
    const char *t = " Sessions (Esc/F2 closes)";
    draw_text(u, r.y, r.x, w, t, strlen(t), elem_attr(u, TH_SIDEBAR) | A_BOLD, NULL);
    if (!u->h) {
        const char *m = " history not available";
        draw_text(u, r.y + 2, r.x, w, m, strlen(m), elem_attr(u, TH_SIDEBAR), NULL);
        draw_vline(u, r.y, r.x + r.w - 1, r.h);
        return;
    }
    char line[400];
    if (u->sb_query[0])
        snprintf(line, sizeof line, " filter: %s_  (%zu)", u->sb_query, u->sb_n);
    else
        snprintf(line, sizeof line, " type to filter \xC2\xB7 Enter open \xC2\xB7 r rename \xC2\xB7 d delete");
    if (r.h > 1)
        draw_text(u, r.y + 1, r.x, w, line, strlen(line), elem_attr(u, TH_SIDEBAR) | A_DIM, NULL);
    size_t rows = r.h > 2 ? (size_t)r.h - 2 : 0;
    u->sb_top = sidebar_top(u->sb_sel, u->sb_top, u->sb_n, rows);
    int id_cols = sidebar_id_cols(u->sessions, u->sb_idx, u->sb_n);
    if (!u->sb_n && rows) {
        const char *m = u->sb_query[0] ? " no session matches" : " no saved conversations";
        draw_text(u, r.y + 2, r.x, w, m, strlen(m), elem_attr(u, TH_SIDEBAR), NULL);
    }
    for (size_t row = 0; row < rows && u->sb_top + row < u->sb_n; row++) {
        size_t i = u->sb_top + row;
        const struct hist_session *s = &u->sessions[u->sb_idx[i]];
        char buf[600];
        sidebar_format_row(s->id, id_cols, sidebar_label(s), w, buf, sizeof buf);
        int el = s->id == u->conv.sid ? TH_SIDEBAR_CURRENT : TH_SIDEBAR;
        attr_t a = elem_attr(u, el) | (i == u->sb_sel ? A_REVERSE : 0);
        int y = r.y + 2 + (int)row;
        if (el == TH_SIDEBAR_CURRENT || i == u->sb_sel) {
            attrset(a);
            mvhline(y, r.x, ' ', w);
        }
        draw_text(u, y, r.x, w, buf, strlen(buf), a, NULL);
    }
    draw_vline(u, r.y, r.x + r.w - 1, r.h);
}

/* Samples the engine and the GPU; called at most once per frame. */
void ui_sample_meters(struct ui *u)
{
    engine_stats(u->e, &u->st);
    engine_memory(u->e, &u->mem);
    engine_server(u->e, &u->srv);
    gpu_mon_sample(u->gpu, &u->gs);
    pthread_mutex_lock(&u->mu);
    u->pf = u->pf_live;
    pthread_mutex_unlock(&u->mu);
    if (u->busy && u->gs.energy_valid && !isnan(u->energy0))
        u->jpt = meters_joules_per_token(u->gs.energy_j - u->energy0, u->st.gen_tokens);
    u->last_meter = ui_now();
}

void ui_meter_values(struct ui *u, struct meter_values *v)
{
    struct meter_inputs in = {
        .st = &u->st,
        .mem = &u->mem,
        .gs = &u->gs,
        .bytes_per_token = u->info->bytes_per_token,
        .n_ctx = u->info->n_ctx,
        .n_ctx_train = u->info->n_ctx_train,
        .srv = &u->srv,
        .bandwidth = u->bandwidth,
        .jpt = u->jpt,
        .pf = u->busy ? &u->pf : NULL,
    };
    meters_values(&in, v);
}

/* A "label value" cell for the meters; returns the columns used. */
static int meter_cell(struct ui *u, int y, int x, int maxw, const char *label, const char *value)
{
    if (maxw <= 0)
        return 0;
    int n = draw_text(u, y, x, maxw, label, strlen(label), elem_attr(u, TH_METER_LABEL), NULL);
    if (n < maxw) {
        addch(' ');
        n++;
    }
    n += draw_text(u, y, x + n, maxw - n, value, strlen(value), elem_attr(u, TH_METER_VALUE), NULL);
    return n;
}

static const int seg_elem[MEM_SEG_COUNT] = {
    [MEM_WEIGHTS] = TH_BAR_WEIGHTS, [MEM_KV] = TH_BAR_KV,     [MEM_SCRATCH] = TH_BAR_SCRATCH,
    [MEM_OTHER] = TH_BAR_OTHER,     [MEM_FREE] = TH_BAR_FREE,
};

static void draw_mem_bar(struct ui *u, int y, int x, int w)
{
    struct mem_split sp;
    meters_mem_split(&u->mem, w, &sp);
    if (!sp.valid) {
        draw_text(u, y, x, w, "n/a", 3, elem_attr(u, TH_METER_VALUE), NULL);
        return;
    }
    move(y, x);
    for (int s = 0; s < MEM_SEG_COUNT; s++) {
        attrset(elem_attr(u, seg_elem[s]));
        for (int c = 0; c < sp.cols[s]; c++)
            addstr(meters_seg_glyph((enum mem_seg)s, !u->color));
    }
}

static void draw_meters(struct ui *u)
{
    struct rect r = u->lay.meters;
    fill_rect(u, r, TH_NORMAL);
    struct meter_values v;
    ui_meter_values(u, &v);
    const char *memname = u->mem.on_gpu ? "VRAM" : "RAM";
    char bar[256];
    if (u->lay.meters_side) {
        int x = r.x + 1, w = r.w - 1, y = r.y; /* cells run to the pane's last column */
        draw_vline(u, r.y, r.x, r.h);
        int bottom = r.y + r.h;
#define ROW(label, value)                                                                                  \
    do {                                                                                                   \
        if (y < bottom)                                                                                    \
            meter_cell(u, y++, x + 1, w - 1, label, value);                                                \
    } while (0)
        ROW(memname, v.mem);
        if (y < bottom)
            draw_mem_bar(u, y++, x + 1, w - 1);
        struct mem_split sp;
        meters_mem_split(&u->mem, 10, &sp);
        for (int k = 0; k < MEM_SEG_COUNT && sp.valid && y < bottom; k++, y++) {
            char b[32];
            fmt_bytes(sp.bytes[k], b, sizeof b);
            attrset(elem_attr(u, seg_elem[k]));
            mvaddstr(y, x + 1, meters_legend_glyph((enum mem_seg)k, !u->color));
            meter_cell(u, y, x + 3, w - 3, meters_seg_name((enum mem_seg)k), b);
        }
        y++;
        ROW("context", v.kv);
        if (y < bottom && v.kv_frac >= 0) {
            meter_track_bar(v.kv_frac, w - 1, bar, sizeof bar);
            draw_text(u, y++, x + 1, w - 1, bar, strlen(bar), elem_attr(u, TH_BAR_KV), NULL);
        } else if (y < bottom) {
            draw_text(u, y++, x + 1, w - 1, "n/a", 3, elem_attr(u, TH_METER_VALUE), NULL);
        }
        ROW("context left", v.left);
        if (v.ctx_warn[0] && y < bottom)
            draw_text(u, y++, x + 1, w - 1, v.ctx_warn, strlen(v.ctx_warn), elem_attr(u, TH_ERROR), NULL);
        if (ui_remote(u)) {
            ROW("requests", v.reqs);
            ROW("prefix hit", v.hit);
        }
        y++;
        ROW("decode  ", v.dec);
        ROW("prefill ", v.pre);
        ROW("TTFT    ", v.ttft);
        ROW("roofline", v.roof);
        /* Off the GPU these would only ever read n/a. */
        if (u->gpu || v.gpu_known) {
            y++;
            ROW("GPU util", v.util);
            ROW("power   ", v.pow);
            ROW("temp    ", v.temp);
            ROW("energy  ", v.jpt);
        }
#undef ROW
        return;
    }
    /* Narrow: three dense rows. */
    int x = r.x + 1, w = r.w - 1;
    int n = meter_cell(u, r.y, x, w, memname, "");
    int bw = w / 3;
    draw_mem_bar(u, r.y, x + n, bw);
    n += bw + 1;
    n += meter_cell(u, r.y, x + n, w - n, "", v.mem);
    n += 2;
    char kv[240];
    snprintf(kv, sizeof kv, "%s (%s left%s%s)", v.kv, v.left, v.ctx_warn[0] ? ", " : "", v.ctx_warn);
    meter_cell(u, r.y, x + n, w - n, "context", kv);
    n = meter_cell(u, r.y + 1, x, w, "decode", v.dec);
    n += 2 + meter_cell(u, r.y + 1, x + n + 2, w - n - 2, "prefill", v.pre);
    n += 2 + meter_cell(u, r.y + 1, x + n + 2, w - n - 2, "TTFT", v.ttft);
    meter_cell(u, r.y + 1, x + n + 2, w - n - 2, "roofline", v.roof);
    if (!u->gpu && !v.gpu_known)
        return; /* off the GPU these would only ever read n/a */
    n = meter_cell(u, r.y + 2, x, w, "GPU", v.util);
    n += 2 + meter_cell(u, r.y + 2, x + n + 2, w - n - 2, "power", v.pow);
    n += 2 + meter_cell(u, r.y + 2, x + n + 2, w - n - 2, "temp", v.temp);
    meter_cell(u, r.y + 2, x + n + 2, w - n - 2, "energy", v.jpt);
}

static void draw_status(struct ui *u)
{
    struct rect r = u->lay.status;
    fill_rect(u, r, TH_STATUS);
    const char *s;
    int el = TH_STATUS;
    char buf[800];
    if (u->prompt) {
        snprintf(buf, sizeof buf, " %s%s%s", u->prompt_q, u->prompt == UI_PROMPT_RENAME ? u->prompt_buf : "",
                 u->prompt == UI_PROMPT_RENAME ? "_" : "");
        s = buf;
        el = TH_NOTICE;
    } else if (u->status[0] && ui_now() < u->status_until) {
        s = u->status;
        el = u->status_elem;
    } else if (u->busy && u->pf.active) {
        char p[256];
        fmt_prefill(&u->pf, p, sizeof p);
        snprintf(buf, sizeof buf, " %s \xC2\xB7 Esc stops", p);
        s = buf;
    } else if (u->busy) {
        snprintf(buf, sizeof buf, " generating\xE2\x80\xA6 Esc or Ctrl-C stops the reply");
        s = buf;
    } else {
        s = " Enter send \xC2\xB7 Alt-Enter newline \xC2\xB7 Esc stop \xC2\xB7 PgUp/PgDn scroll \xC2\xB7 Tab "
            "complete \xC2\xB7 Ctrl-D quit";
    }
    attr_t a = el == TH_STATUS ? elem_attr(u, TH_STATUS) : (elem_attr(u, el) | A_BOLD);
    if (el != TH_STATUS) {
        attrset(a);
        mvhline(r.y, r.x, ' ', r.w);
    }
    int off = s[0] == ' ' ? 0 : 1;
    bool cut;
    size_t keep = fit_words(s, strlen(s), r.w - off, &cut);
    int w = draw_text(u, r.y, r.x + off, r.w - off, s, keep, a, NULL);
    if (cut)
        draw_text(u, r.y, r.x + off + w, r.w - off - w, FIT_ELLIPSIS, strlen(FIT_ELLIPSIS), a, NULL);
    /* draw_input then paints the input's token count at the right end */
}

/* Whether the input is a message to count: not empty, not a command. */
static bool count_wanted(const char *buf, size_t len)
{
    return len && !(buf[0] == '/' && (len < 2 || buf[1] != '/'));
}

/* The input's token count, right-aligned on the status line: counted here,
 * when input_count_due allows (at most 1/INPUT_COUNT_MIN_S a second, only a
 * changed text) and no turn runs; the loop in ui.c calls back for a count
 * that was held back. Returns its cells (0 with an empty input). */
static int draw_input_count(struct ui *u, const char *buf, size_t len)
{
    if (!count_wanted(buf, len))
        return 0;
    double t = ui_now();
    if (!u->busy && input_count_due(&u->icount, buf, len, t)) {
        /* the engine wants a NUL-terminated text; readline's buffer is one */
        int64_t n = -1;
        int32_t *ids = engine_tokenize(u->e, buf, false, &n);
        input_count_set(&u->icount, ids ? n : -1, t);
        free(ids);
    }
    char c[96], cell[112];
    if (!u->icount.counted)
        snprintf(c, sizeof c, "\xE2\x80\xA6 tok");
    else
        fmt_input_count(u->icount.tokens, u->st.kv_capacity > 0 ? u->st.kv_capacity : u->info->n_ctx,
                        u->st.kv_used, c, sizeof c);
    snprintf(cell, sizeof cell, " %s%s ", u->icount.pending ? "~" : "", c);
    struct rect s = u->lay.status;
    int w = text_width(cell, strlen(cell));
    if (w > s.w / 2)
        return 0;
    draw_text(u, s.y, s.x + s.w - w, w, cell, strlen(cell), elem_attr(u, TH_STATUS) | A_BOLD, NULL);
    return w;
}

void ui_input_count_tick(struct ui *u)
{
    if (u->lay.too_small)
        return;
    ui_draw_input_only(u);
}

/* Draws the input pane from readline's buffer and puts the cursor there;
 * a queued message takes the pane's first row. */
static void draw_input(struct ui *u)
{
    struct rect r = u->lay.input;
    fill_rect(u, r, TH_INPUT);
    size_t len, point;
    const char *buf = ui_input_text(&len, &point);
    u->count_shown = draw_input_count(u, buf, len);
    if (u->queued && r.h > 1) {
        char q[256];
        size_t ql = strcspn(u->queued, "\n");
        snprintf(q, sizeof q, "queued: %.*s%s \xC2\xB7 sent when the reply ends, Esc edits", (int)(ql > 160 ? 160 : ql),
                 u->queued, ql < strlen(u->queued) || ql > 160 ? "\xE2\x80\xA6" : "");
        draw_text(u, r.y, r.x, r.w, q, strlen(q), elem_attr(u, TH_NOTICE), NULL);
        r.y++;
        r.h--;
    }
    int width = r.w - 3;
    struct wrap_line wl[256];
    size_t n = layout_wrap(buf, len, width, wl, 256);
    if (n > 256)
        n = 256;
    /* The line that holds the cursor: the last one starting at or before it. */
    size_t cl = 0;
    for (size_t i = 0; i < n; i++)
        if (wl[i].start <= point)
            cl = i;
    int first = (int)cl - r.h + 1 > 0 ? (int)cl - r.h + 1 : 0;
    attr_t a = elem_attr(u, TH_INPUT);
    attrset(a | A_BOLD);
    mvaddstr(r.y, r.x, u->busy ? "\xE2\x80\xA6 " : "> ");
    for (int row = 0; row < r.h && first + row < (int)n; row++) {
        struct wrap_line *w = &wl[first + row];
        draw_text(u, r.y + row, r.x + 2, width, buf + w->start, w->len, a, NULL);
    }
    int cx = r.x + 2 + text_width(buf + wl[cl].start, point - wl[cl].start);
    if (cx >= r.x + r.w)
        cx = r.x + r.w - 1;
    move(r.y + (int)cl - first, cx);
}

/* Lines the input pane needs at the current width: the input's, and one
 * for a queued message. */
static int input_lines_needed(struct ui *u)
{
    size_t len, point;
    const char *buf = ui_input_text(&len, &point);
    return (int)layout_wrap(buf, len, u->cols - 3, NULL, 0) + (u->queued ? 1 : 0);
}

void ui_draw_frame(struct ui *u)
{
    getmaxyx(stdscr, u->rows, u->cols);
    u->input_lines = input_lines_needed(u);
    layout_compute(u->rows, u->cols, u->sidebar, u->input_lines, &u->lay);
    struct rect insp_r = {0}, chat_r;
    if (u->insp_open) {
        insp_place(u->lay.conv, &chat_r, &insp_r);
        if (chat_r.w) /* else the inspector covers the chat on a narrow pane */
            u->lay.conv = chat_r;
    }
    attrset(elem_attr(u, TH_NORMAL));
    erase();
    if (u->lay.too_small) {
        /* wrapped at words; what is typed meanwhile waits (Enter does
         * nothing until the screen is big enough to show it) */
        char msg[160];
        snprintf(msg, sizeof msg, "terminal too small: %dx%d, kvchat needs at least %dx%d", u->cols, u->rows,
                 LAYOUT_MIN_COLS, LAYOUT_MIN_ROWS);
        struct wrap_line wl[16];
        size_t n = layout_wrap(msg, strlen(msg), u->cols, wl, 16);
        for (size_t i = 0; i < n && i < 16 && (int)i < u->rows; i++)
            draw_text(u, (int)i, 0, u->cols, msg + wl[i].start, wl[i].len, elem_attr(u, TH_NORMAL), NULL);
        refresh();
        u->last_frame = ui_now();
        u->dirty = false;
        return;
    }
    if (ui_now() - u->last_meter >= (u->busy ? FRAME_S : IDLE_METER_S))
        ui_sample_meters(u);
    draw_title(u);
    draw_sidebar(u);
    draw_conversation(u);
    draw_picker(u);
    draw_overlay(u);
    if (u->insp_open)
        ui_draw_inspector(u, insp_r);
    draw_meters(u);
    draw_status(u);
    draw_input(u);
    refresh();
    u->last_frame = ui_now();
    u->dirty = false;
}

void ui_draw_input_only(struct ui *u)
{
    /* A change in the number of input lines moves every pane. */
    size_t len, point;
    const char *buf = ui_input_text(&len, &point);
    /* An input emptied (or become a command) takes its count off the status
     * line: all of it again, as the frame draws it. */
    if (input_lines_needed(u) != u->input_lines || u->lay.too_small ||
        (u->count_shown && !count_wanted(buf, len))) {
        ui_draw_frame(u);
        return;
    }
    draw_input(u);
    refresh();
}

/* ---- loading and fatal errors ---- */

/* Draws the load progress; called by kv_engine_open as the weights load. */
void ui_load_progress(uint64_t done, uint64_t total, void *user)
{
    struct load_progress *p = user;
    double t = ui_now();
    if (t - p->last < 0.05 && done != total)
        return;
    p->last = t;
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    erase();
    char line[512], bar[512];
    snprintf(line, sizeof line, "Loading %s", p->name);
    int y = rows / 2 - 1;
    draw_text(p->u, y, 2, cols - 4, line, strlen(line), A_BOLD, NULL);
    int bw = cols - 6 < 120 ? cols - 6 : 120;
    meter_bar(total ? (double)done / total : 0, bw, bar, sizeof bar);
    attrset(elem_attr(p->u, TH_BAR_WEIGHTS));
    mvaddstr(y + 1, 2, "[");
    draw_text(p->u, y + 1, 3, bw, bar, strlen(bar), elem_attr(p->u, TH_BAR_WEIGHTS), NULL);
    mvaddstr(y + 1, 3 + bw, "]");
    fmt_load_progress(done, total, t - p->t0, line, sizeof line);
    draw_text(p->u, y + 2, 2, cols - 4, line, strlen(line), elem_attr(p->u, TH_METER_VALUE), NULL);
    refresh();
}

/* Shows a fatal message until a key is pressed. */
void ui_show_fatal(struct ui *u, const char *what, const char *msg)
{
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    erase();
    draw_text(u, rows / 2 - 1, 2, cols - 4, what, strlen(what), elem_attr(u, TH_ERROR) | A_BOLD, NULL);
    struct wrap_line wl[8];
    size_t n = layout_wrap(msg, strlen(msg), cols - 4, wl, 8);
    for (size_t i = 0; i < n && i < 8; i++)
        draw_text(u, rows / 2 + (int)i, 2, cols - 4, msg + wl[i].start, wl[i].len, elem_attr(u, TH_NORMAL), NULL);
    const char *k = "Press any key to leave.";
    draw_text(u, rows / 2 + (int)(n < 8 ? n : 8) + 1, 2, cols - 4, k, strlen(k), A_DIM, NULL);
    refresh();
    timeout(-1);
    while (getch() == KEY_RESIZE && !term_signal())
        ;
}

