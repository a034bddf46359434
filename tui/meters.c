/* meters.c - formatting and bar arithmetic for the chat screen's meters. See
 * meters.h. */
#include "meters.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int unknown(double v)
{
    return isnan(v) || v < 0;
}

void fmt_bytes(uint64_t b, char *buf, size_t cap)
{
    if (b == ENGINE_UNKNOWN) {
        snprintf(buf, cap, "n/a");
        return;
    }
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)b);
    else if (v < 10)
        snprintf(buf, cap, "%.2f %s", v, units[u]);
    else if (v < 100)
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    else
        snprintf(buf, cap, "%.0f %s", v, units[u]);
}

void fmt_rate(double v, char *buf, size_t cap)
{
    if (unknown(v))
        snprintf(buf, cap, "n/a");
    else if (v < 10)
        snprintf(buf, cap, "%.2f", v);
    else if (v < 1000)
        snprintf(buf, cap, "%.1f", v);
    else
        snprintf(buf, cap, "%.0f", v);
}

void fmt_duration(double s, char *buf, size_t cap)
{
    if (unknown(s))
        snprintf(buf, cap, "n/a");
    else if (s < 1.0)
        snprintf(buf, cap, "%.0f ms", s * 1000.0);
    else if (s < 60.0)
        snprintf(buf, cap, "%.2f s", s);
    else
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60.0));
}

void fmt_unit(double v, int valid, const char *unit, char *buf, size_t cap)
{
    if (!valid || isnan(v))
        snprintf(buf, cap, "n/a");
    else
        snprintf(buf, cap, "%.1f %s", v, unit);
}

void fmt_time_left(double s, char *buf, size_t cap)
{
    if (unknown(s))
        snprintf(buf, cap, "n/a");
    else if (s < 1.0)
        snprintf(buf, cap, "<1 s");
    else if (s < 60.0)
        snprintf(buf, cap, "%.0f s", s);
    else if (s < 3600.0)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60.0));
    else
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60.0));
}

double prefill_rate(const struct prefill_view *p)
{
    if (!p || p->done == 0 || isnan(p->elapsed_s) || p->elapsed_s <= 0)
        return NAN;
    return (double)p->done / p->elapsed_s;
}

void fmt_prefill(const struct prefill_view *p, char *buf, size_t cap)
{
    double rate = prefill_rate(p);
    uint64_t left_tok = p->total > p->done ? p->total - p->done : 0;
    char r[32], left[32], what[96];
    fmt_rate(rate, r, sizeof r);
    fmt_time_left(isnan(rate) || rate <= 0 ? NAN : (double)left_tok / rate, left, sizeof left);
    if (p->why)
        snprintf(what, sizeof what, "re-reading the conversation (%s)", p->why);
    else
        snprintf(what, sizeof what, "reading the prompt");
    snprintf(buf, cap, "%s %llu/%llu tok \xC2\xB7 %s tok/s \xC2\xB7 %s left", what,
             (unsigned long long)p->done, (unsigned long long)p->total, r, left);
}

void fmt_load_progress(uint64_t done, uint64_t total, double elapsed_s, char *buf, size_t cap)
{
    char a[32], b[32], r[32], left[32], pct[16] = "n/a";
    bool any = done > 0 && elapsed_s > 0.01;
    double rate = any ? (double)done / elapsed_s : NAN;
    fmt_bytes(total ? done : ENGINE_UNKNOWN, a, sizeof a);
    fmt_bytes(total ? total : ENGINE_UNKNOWN, b, sizeof b);
    fmt_bytes(any ? (uint64_t)rate : ENGINE_UNKNOWN, r, sizeof r);
    fmt_time_left(any && total >= done ? (double)(total - done) / rate : NAN, left, sizeof left);
    if (total)
        snprintf(pct, sizeof pct, "%.0f%%", 100.0 * (double)(done < total ? done : total) / (double)total);
    snprintf(buf, cap, "%s of %s \xC2\xB7 %s/s \xC2\xB7 %s \xC2\xB7 %s left", a, b, r, pct, left);
}

static size_t bar(double frac, int width, const char *pad, char *buf, size_t cap)
{
    /* U+258F..U+2588: 1/8 .. 8/8 left blocks. */
    static const char *eighths[] = {"", "\xE2\x96\x8F", "\xE2\x96\x8E", "\xE2\x96\x8D", "\xE2\x96\x8C",
                                    "\xE2\x96\x8B", "\xE2\x96\x8A", "\xE2\x96\x89", "\xE2\x96\x88"};
    if (isnan(frac) || frac < 0)
        frac = 0;
    if (frac > 1)
        frac = 1;
    size_t o = 0;
    if (cap == 0)
        return 0;
    long total = lround(frac * width * 8);
    for (int c = 0; c < width; c++) {
        long left = total - (long)c * 8;
        const char *cell = left >= 8 ? eighths[8] : left > 0 ? eighths[left] : pad;
        size_t l = strlen(cell);
        if (o + l + 1 > cap)
            break;
        memcpy(buf + o, cell, l);
        o += l;
    }
    buf[o] = 0;
    return o;
}

size_t meter_bar(double frac, int width, char *buf, size_t cap)
{
    return bar(frac, width, " ", buf, cap);
}

size_t meter_track_bar(double frac, int width, char *buf, size_t cap)
{
    return bar(frac, width, "\xE2\x96\x91", buf, cap); /* U+2591 light shade */
}

/* One row per segment of the memory bar: its legend name and glyphs. */
static const struct {
    const char *name;
    const char *glyph, *mono; /* bar cell in colour / without colour */
    const char *legend;       /* legend swatch in colour (without: MONO) */
} segs[MEM_SEG_COUNT] = {
    [MEM_WEIGHTS] = {"weights", "\xE2\x96\x88", "\xE2\x96\x88", "\xE2\x96\xA0"},   /* █ █ ■ */
    [MEM_KV] = {"KV memory", "\xE2\x96\x88", "\xE2\x96\x93", "\xE2\x96\xA0"},      /* █ ▓ ■ */
    [MEM_SCRATCH] = {"scratch", "\xE2\x96\x88", "\xE2\x96\x92", "\xE2\x96\xA0"},   /* █ ▒ ■ */
    [MEM_OTHER] = {"other", "\xE2\x96\x93", "\xE2\x96\x9E", "\xE2\x96\xA0"},       /* ▓ ▞ ■ */
    [MEM_FREE] = {"free", "\xE2\x96\x91", "\xE2\x96\x91", "\xE2\x96\xA0"},         /* ░ ░ ■ */
};

const char *meters_seg_glyph(enum mem_seg seg, bool mono)
{
    if ((unsigned)seg >= MEM_SEG_COUNT)
        return "?";
    return mono ? segs[seg].mono : segs[seg].glyph;
}

const char *meters_legend_glyph(enum mem_seg seg, bool mono)
{
    if ((unsigned)seg >= MEM_SEG_COUNT)
        return "?";
    return mono ? segs[seg].mono : segs[seg].legend;
}

const char *meters_seg_name(enum mem_seg seg)
{
    return (unsigned)seg < MEM_SEG_COUNT ? segs[seg].name : "?";
}

static uint64_t known(uint64_t v)
{
    return v == ENGINE_UNKNOWN ? 0 : v;
}

void meters_mem_split(const struct engine_memory *m, int width, struct mem_split *out)
{
    memset(out, 0, sizeof *out);
    if (m->device_total == ENGINE_UNKNOWN || m->device_total == 0 || width <= 0)
        return;
    out->valid = 1;
    out->total = m->device_total;
    uint64_t *b = out->bytes;
    b[MEM_WEIGHTS] = known(m->weights);
    b[MEM_KV] = known(m->kv_cache);
    b[MEM_SCRATCH] = known(m->scratch);
    uint64_t ours = b[MEM_WEIGHTS] + b[MEM_KV] + b[MEM_SCRATCH];
    uint64_t free_b = m->device_free == ENGINE_UNKNOWN ? 0 : m->device_free;
    if (free_b > m->device_total)
        free_b = m->device_total;
    uint64_t used = m->device_total - free_b;
    /* On the CPU the weights are usually an mmap'd file the kernel may count
     * as cache rather than use: never let "other" go negative. */
    b[MEM_OTHER] = used > ours ? used - ours : 0;
    if (ours > used) /* free is then what our buffers leave of the total */
        free_b = m->device_total > ours ? m->device_total - ours : 0;
    b[MEM_FREE] = free_b;
    uint64_t sum = 0;
    for (int i = 0; i < MEM_SEG_COUNT; i++)
        sum += b[i];
    if (sum == 0)
        return;

    double rem[MEM_SEG_COUNT];
    int given = 0;
    for (int i = 0; i < MEM_SEG_COUNT; i++) {
        double exact = (double)b[i] * width / (double)sum;
        out->cols[i] = (int)exact;
        rem[i] = exact - out->cols[i];
        given += out->cols[i];
    }
    /* Segments with bytes but no cell get one first (smallest first would be
     * fairer, but order of the enum is what the eye reads). */
    for (int i = 0; i < MEM_SEG_COUNT && given < width; i++)
        if (b[i] > 0 && out->cols[i] == 0) {
            out->cols[i] = 1;
            rem[i] = -1;
            given++;
        }
    while (given < width) {
        int best = -1;
        for (int i = 0; i < MEM_SEG_COUNT; i++)
            if (b[i] > 0 && (best < 0 || rem[i] > rem[best]))
                best = i;
        out->cols[best]++;
        rem[best] = -1;
        given++;
    }
    /* The minimum cells may overshoot: take back from the widest segment. */
    while (given > width) {
        int big = 0;
        for (int i = 1; i < MEM_SEG_COUNT; i++)
            if (out->cols[i] > out->cols[big])
                big = i;
        out->cols[big]--;
        given--;
    }
}

double meters_roofline_pct(uint64_t bytes_per_token, double tok_s, double bw)
{
    if (bytes_per_token == 0 || bytes_per_token == ENGINE_UNKNOWN || unknown(tok_s) || tok_s == 0 ||
        isnan(bw) || bw <= 0)
        return NAN;
    return 100.0 * (double)bytes_per_token * tok_s / bw;
}

double meters_joules_per_token(double joules, int32_t tokens)
{
    if (isnan(joules) || joules < 0 || tokens <= 0)
        return NAN;
    return joules / tokens;
}

void meters_values(const struct meter_inputs *in, struct meter_values *v)
{
    const struct engine_stats *st = in->st;
    const struct engine_memory *mem = in->mem;
    const struct gpu_sample *gs = in->gs;
    char a[32], b[32];
    /* The headline's "used" is the legend's segments but free, so the two
     * cannot disagree (see meters_mem_split). */
    struct mem_split sp;
    meters_mem_split(mem, 1, &sp);
    uint64_t used = ENGINE_UNKNOWN;
    if (sp.valid && mem->device_free != ENGINE_UNKNOWN)
        used = sp.bytes[MEM_WEIGHTS] + sp.bytes[MEM_KV] + sp.bytes[MEM_SCRATCH] + sp.bytes[MEM_OTHER];
    struct engine_server none;
    const struct engine_server *srv = in->srv;
    if (!srv) {
        none = (struct engine_server){.kv_frac = -1, .kv_tokens = -1, .n_ctx = -1,
                                      .reqs_running = -1, .reqs_waiting = -1,
                                      .prefix_hit_rate = -1, .vram_bytes = -1, .age_s = -1};
        srv = &none;
    }
    fmt_bytes(used, a, sizeof a);
    fmt_bytes(mem->device_total, b, sizeof b);
    if (mem->device_total == ENGINE_UNKNOWN && srv->vram_bytes >= 0) {
        fmt_bytes((uint64_t)srv->vram_bytes, a, sizeof a); /* what the server says it holds */
        snprintf(v->mem, sizeof v->mem, "%s (server)", a);
    } else {
        snprintf(v->mem, sizeof v->mem, "%s / %s", a, b);
    }
    int32_t cap = st->kv_capacity > 0 ? st->kv_capacity : in->n_ctx > 0 ? in->n_ctx : 0;
    const struct prefill_view *pf = in->pf && in->pf->active ? in->pf : NULL;
    bool kv_known = !pf || pf->done > 0;
    v->kv_used = kv_known ? st->kv_used : -1;
    v->kv_cap = cap;
    if (!kv_known) { /* the cache is being replaced: its old count means nothing now */
        if (cap > 0)
            snprintf(v->kv, sizeof v->kv, "n/a / %d tok", cap);
        else
            snprintf(v->kv, sizeof v->kv, "n/a / n/a tok");
        snprintf(v->left, sizeof v->left, "n/a");
    } else if (cap > 0) {
        snprintf(v->kv, sizeof v->kv, "%d / %d tok", st->kv_used, cap);
        snprintf(v->left, sizeof v->left, "%d tok", cap - st->kv_used);
    } else {
        snprintf(v->kv, sizeof v->kv, "%d / n/a tok", st->kv_used);
        snprintf(v->left, sizeof v->left, "n/a");
    }
    v->ctx_warn[0] = 0;
    if (in->n_ctx_train > 0 && cap > in->n_ctx_train)
        snprintf(v->ctx_warn, sizeof v->ctx_warn, "past the trained %d tok", in->n_ctx_train);
    v->kv_frac = srv->kv_frac >= 0 ? srv->kv_frac : cap > 0 && kv_known ? (double)st->kv_used / cap : -1;
    if (srv->reqs_running >= 0 || srv->reqs_waiting >= 0) {
        char r[16] = "n/a", w[16] = "n/a";
        if (srv->reqs_running >= 0)
            snprintf(r, sizeof r, "%d", srv->reqs_running);
        if (srv->reqs_waiting >= 0)
            snprintf(w, sizeof w, "%d", srv->reqs_waiting);
        snprintf(v->reqs, sizeof v->reqs, "%s running, %s waiting", r, w);
    } else {
        snprintf(v->reqs, sizeof v->reqs, "n/a");
    }
    if (srv->prefix_hit_rate >= 0)
        snprintf(v->hit, sizeof v->hit, "%.0f%%", 100 * srv->prefix_hit_rate);
    else
        snprintf(v->hit, sizeof v->hit, "n/a");
    bool any = st->gen_tokens > 0 || st->running;
    fmt_rate(any && st->gen_tokens > 1 ? st->decode_tok_s : NAN, a, sizeof a);
    snprintf(v->dec, sizeof v->dec, "%s tok/s", a);
    /* A running turn's prefill rate is the engine's once it has one (> 0);
     * while the prompt is read in, the rate of the chunks read so far. */
    double pre = any ? st->prefill_tok_s : NAN;
    if (pf)
        pre = prefill_rate(pf);
    else if (st->running && !(pre > 0))
        pre = NAN;
    fmt_rate(pre, a, sizeof a);
    snprintf(v->pre, sizeof v->pre, "%s tok/s", a);
    fmt_duration(any && st->gen_tokens > 0 ? st->ttft_s : NAN, v->ttft, sizeof v->ttft);
    double pct = meters_roofline_pct(in->bytes_per_token,
                                     st->gen_tokens > 1 ? st->decode_tok_s : NAN, in->bandwidth);
    if (isnan(pct))
        snprintf(v->roof, sizeof v->roof, "n/a");
    else
        snprintf(v->roof, sizeof v->roof, "%.0f%% of %.0f GB/s", pct, in->bandwidth / 1e9);
    if (gs->util_valid)
        snprintf(v->util, sizeof v->util, "%u%%", gs->util_pct);
    else
        snprintf(v->util, sizeof v->util, "n/a");
    fmt_unit(gs->power_w, gs->power_valid, "W", v->pow, sizeof v->pow);
    fmt_unit(gs->temp_c, gs->temp_valid, "C", v->temp, sizeof v->temp);
    if (isnan(in->jpt))
        snprintf(v->jpt, sizeof v->jpt, "n/a");
    else
        snprintf(v->jpt, sizeof v->jpt, "%.3f J/tok", in->jpt);
    v->gpu_known = gs->util_valid || (gs->power_valid && !isnan(gs->power_w)) ||
                   gs->temp_valid || !isnan(in->jpt);
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

bool input_count_due(struct input_count *c, const char *text, size_t len, double now)
{
    uint64_t h = fnv1a(text, len);
    if (!c->counted || h != c->hash || len != c->len) {
        c->hash = h;
        c->len = len;
        c->pending = true;
    }
    return c->pending && now - c->last >= INPUT_COUNT_MIN_S;
}

void input_count_set(struct input_count *c, int64_t tokens, double now)
{
    c->tokens = tokens;
    c->last = now;
    c->pending = false;
    c->counted = true;
}

double input_count_next(const struct input_count *c)
{
    return c->pending ? c->last + INPUT_COUNT_MIN_S : -1;
}

void fmt_input_count(int64_t tokens, int32_t cap, int32_t used, char *buf, size_t buflen)
{
    if (tokens < 0) {
        snprintf(buf, buflen, "tok n/a");
        return;
    }
    if (cap <= 0) {
        snprintf(buf, buflen, "%lld tok", (long long)tokens);
        return;
    }
    int64_t left = (int64_t)cap - (used > 0 ? used : 0) - tokens;
    if (left >= 0)
        snprintf(buf, buflen, "%lld tok \xC2\xB7 %lld left", (long long)tokens, (long long)left);
    else
        snprintf(buf, buflen, "%lld tok \xC2\xB7 %lld over", (long long)tokens, (long long)-left);
}
