/* inspect_draw.c - draws the memory and speed inspector (F3, /inspect) into
 * its pane beside the chat: where the memory goes, graphs of the last
 * minutes, and the headroom. The figures come from inspect.c; this file
 * only places them. */
#include "inspect.h"
#include "fit.h"
#include "ui_internal.h"

#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Writes S (UTF-8; block characters count one column) at Y, X in W columns;
 * a line too long for them is cut at a word with an ellipsis, so a reader
 * sees that more was there (a narrow pane, many tensor types). */
static void put(int y, int x, int w, const char *s, attr_t a)
{
    if (w <= 0)
        return;
    attrset(a);
    size_t len = strlen(s);
    bool cut;
    size_t n = fit_words(s, len, w, &cut);
    if (cut && n == 0) { /* one long word: cut inside it */
        int cols = 0;
        while (n < len) {
            uint32_t cp;
            size_t k = utf8_decode(s + n, len - n, &cp);
            if (cols + cp_width(cp) + 1 > w)
                break;
            cols += cp_width(cp);
            n += k;
        }
    }
    mvaddnstr(y, x, s, (int)n);
    if (cut)
        addstr(FIT_ELLIPSIS);
}

/* The graphs: one table row each, so adding a reading to the view is one
 * line here. SCALE turns the stored unit into the shown one. */
static const struct {
    int field;       /* index into mon_field_names */
    const char *label;
    const char *unit;
    double scale;
    double fixed_max; /* 0 = a nice maximum of what the window holds */
} graphs[] = {
    {.field = 1, .label = "mem used", .unit = "GiB", .scale = 1.0 / (1 << 30)},
    /* the breakdown's total: the driver's figure for this process, or its RSS */
    {.field = 3, .label = "kvchat", .unit = "GiB", .scale = 1.0 / (1 << 30)},
    {.field = 11, .label = "decode", .unit = "tok/s", .scale = 1},
    {.field = 12, .label = "roofline", .unit = "%", .scale = 1, .fixed_max = 100},
    {.field = 13, .label = "GPU util", .unit = "%", .scale = 1, .fixed_max = 100},
    {.field = 14, .label = "power", .unit = "W", .scale = 1},
    {.field = 15, .label = "energy", .unit = "J/tok", .scale = 1},
};

void ui_draw_inspector(struct ui *u, struct rect r)
{
    if (!u->insp || !u->mon || r.h < 4 || r.w < 20)
        return;
    attr_t norm = ui_elem_attr(u, TH_NORMAL), lab = ui_elem_attr(u, TH_METER_LABEL),
           val = ui_elem_attr(u, TH_METER_VALUE), head = ui_elem_attr(u, TH_HEADING) | A_BOLD;
    attrset(norm);
    for (int y = r.y; y < r.y + r.h; y++)
        mvhline(y, r.x, ' ', r.w);
    attrset(ui_elem_attr(u, TH_BORDER));
    mvvline(r.y, r.x, ACS_VLINE, r.h);
    int x = r.x + 2, w = r.w - 3, y = r.y, end = r.y + r.h;
    char line[1024], a[32], b[32];
    const struct mon_inputs *in = monitor_inputs(u->mon);

    put(y++, x, w, "Inspector (F3 or Esc closes)", head);
    struct insp_breakdown bd;
    insp_breakdown_from(in, &bd);
    insp_fmt_bytes(bd.total, a, sizeof a);
    insp_fmt_bytes(bd.capacity, b, sizeof b);
    snprintf(line, sizeof line, "%s: %s of %s", bd.title, a, b);
    if (y < end)
        put(y++, x, w, line, lab);
    for (int i = 0; i < bd.n_parts && y < end; i++) {
        insp_fmt_bytes(bd.parts[i].bytes, a, sizeof a);
        snprintf(line, sizeof line, "  %-22s %10s", bd.parts[i].name, a);
        put(y++, x, w, line, val);
    }
    if (y < end) {
        insp_fmt_bytes(bd.excess > 0 ? bd.excess : bd.other, a, sizeof a);
        snprintf(line, sizeof line, "  %-22s %10s", bd.excess > 0 ? "parts exceed it by" : "other", a);
        put(y++, x, w, line, val);
    }
    const struct engine_memory_map *m = &in->map;
    if (m->known && y < end) {
        int n = snprintf(line, sizeof line, "weights by type:");
        for (int i = 0; i < m->n_types && n < (int)sizeof line; i++) {
            insp_fmt_bytes((double)m->by_type[i].bytes, a, sizeof a);
            n += snprintf(line + n, sizeof line - (size_t)n, " %s %s", m->by_type[i].type, a);
        }
        put(y++, x, w, line, lab);
        n = snprintf(line, sizeof line, "by layers:");
        insp_fmt_bytes((double)m->embeddings, a, sizeof a);
        n += snprintf(line + n, sizeof line - (size_t)n, " embd %s", a);
        for (int i = 0; i < m->n_groups && n < (int)sizeof line; i++) {
            insp_fmt_bytes((double)m->groups[i].bytes, a, sizeof a);
            n += snprintf(line + n, sizeof line - (size_t)n, " %d-%d %s", m->groups[i].first,
                          m->groups[i].last, a);
        }
        if (m->output && n < (int)sizeof line) {
            insp_fmt_bytes((double)m->output, a, sizeof a);
            snprintf(line + n, sizeof line - (size_t)n, " out %s", a);
        }
        if (y < end)
            put(y++, x, w, line, lab);
        double used = 0, res = 0, sw_used = 0, sw_res = 0;
        for (int i = 0; i < ENGINE_MAP_LAYERS; i++) {
            used += (double)m->layers[i].used;
            res += (double)m->layers[i].reserved;
            if (m->layers[i].swa)
                sw_used += (double)m->layers[i].used, sw_res += (double)m->layers[i].reserved;
        }
        insp_fmt_bytes(used, a, sizeof a);
        insp_fmt_bytes(res, b, sizeof b);
        snprintf(line, sizeof line, "KV %s: %s used of %s reserved (%d/%d tok)", m->kv_type, a, b,
                 m->kv_tokens, m->n_ctx);
        if (y < end)
            put(y++, x, w, line, lab);
        /* each layer's cache: used against reserved, the sliding ones marked */
        if (y < end && w > 12) {
            char row[ENGINE_MAP_LAYERS * 3 + 1];
            bool swa[ENGINE_MAP_LAYERS];
            int cells = insp_kv_layer_row(m, w - 10, row, sizeof row, swa);
            put(y, x, 10, "KV layers", lab);
            const char *c = row;
            for (int i = 0; i < cells; i++) {
                size_t k = *c == ' ' ? 1 : 3;
                attrset(ui_elem_attr(u, swa[i] ? TH_BAR_SCRATCH : TH_BAR_KV));
                mvaddnstr(y, x + 10 + i, c, (int)k);
                c += k;
            }
            y++;
        }
        if (m->n_swa_layers && y < end) {
            insp_fmt_bytes(sw_used, a, sizeof a);
            insp_fmt_bytes(sw_res, b, sizeof b);
            snprintf(line, sizeof line, "  %d sliding layers (window %d): %s of %s", m->n_swa_layers,
                     m->swa_window, a, b);
            put(y++, x, w, line, lab);
        }
    }

    /* graphs: label, the row, the newest value and the axis maximum */
    int gw = w - 24;
    if (gw > INSP_RING)
        gw = INSP_RING;
    if (y < end)
        put(y++, x, w, "last minutes, one column a second:", head);
    for (size_t g = 0; g < sizeof graphs / sizeof graphs[0] && y < end && gw > 4; g++) {
        const struct insp_ring *ring = &u->insp->ring[graphs[g].field];
        struct insp_ring scaled = *ring;
        for (int i = 0; i < INSP_RING; i++)
            scaled.v[i] *= graphs[g].scale;
        double ymax = graphs[g].fixed_max > 0 ? graphs[g].fixed_max
                                              : insp_nice_max(insp_ring_max(&scaled, gw));
        char row[INSP_RING * 3 + 1];
        insp_graph_row(&scaled, gw, ymax, row, sizeof row);
        double now = insp_ring_at(&scaled, 0);
        char nv[16];
        if (isnan(now))
            snprintf(nv, sizeof nv, "n/a");
        else
            snprintf(nv, sizeof nv, "%.4g", now);
        put(y, x, 9, graphs[g].label, lab);
        put(y, x + 9, gw, row, ui_elem_attr(u, TH_BAR_KV));
        snprintf(line, sizeof line, "%s/%g %s", nv, ymax, graphs[g].unit);
        put(y++, x + 10 + gw, w - 10 - gw, line, val);
    }

    struct insp_headroom hr;
    insp_headroom_from(in, &hr);
    if (y < end) {
        insp_fmt_bytes(hr.free_bytes, a, sizeof a);
        if (isnan(hr.more_tokens))
            snprintf(line, sizeof line, "headroom: %s free, n/a tokens", a);
        else
            snprintf(line, sizeof line, "headroom: %s free = +%.0f tokens of context", a,
                     hr.more_tokens);
        put(y++, x, w, line, head);
    }
    for (int i = 0; i < hr.n_alt && y < end; i++) {
        snprintf(line, sizeof line, "  %s KV: --ctx-size up to %.0f (%+.0f tokens)", hr.alt[i].type,
                 hr.alt[i].max_ctx, hr.alt[i].delta);
        put(y++, x, w, line, val);
    }
}
