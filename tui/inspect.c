/* inspect.c - the inspector's arithmetic (inspect.h): rings, axes, graph
 * rows, the memory breakdown and the headroom. */
#include "inspect.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void insp_ring_push(struct insp_ring *r, double v)
{
    r->v[r->head] = v;
    r->head = (r->head + 1) % INSP_RING;
    if (r->n < INSP_RING)
        r->n++;
}

double insp_ring_at(const struct insp_ring *r, int age)
{
    if (age < 0 || age >= r->n)
        return NAN;
    return r->v[(r->head - 1 - age + INSP_RING) % INSP_RING];
}

double insp_ring_max(const struct insp_ring *r, int n)
{
    double m = NAN;
    for (int i = 0; i < n && i < r->n; i++) {
        double v = insp_ring_at(r, i);
        if (!isnan(v) && (isnan(m) || v > m))
            m = v;
    }
    return m;
}

double insp_nice_max(double max)
{
    if (isnan(max) || !(max > 0) || isinf(max))
        return 1;
    double p = pow(10, floor(log10(max)));
    static const double steps[] = {1, 2, 5, 10};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (steps[i] * p >= max * (1 - 1e-12))
            return steps[i] * p;
    return 10 * p;
}

size_t insp_graph_row(const struct insp_ring *r, int width, double ymax, char *out, size_t cap)
{
    size_t n = 0;
    if (!cap)
        return 0;
    if (!(ymax > 0))
        ymax = 1;
    for (int col = 0; col < width; col++) {
        int age = width - 1 - col;
        double v = insp_ring_at(r, age);
        if (isnan(v)) {
            if (n + 1 >= cap)
                break;
            out[n++] = ' ';
            continue;
        }
        /* eighths, at least one: a known small value is a low bar, never a gap */
        int h = (int)ceil(v / ymax * 8);
        h = h < 1 ? 1 : h > 8 ? 8 : h;
        if (n + 3 >= cap)
            break;
        out[n++] = (char)0xE2;
        out[n++] = (char)0x96;
        out[n++] = (char)(0x80 + h); /* U+2581..U+2588 */
    }
    out[n] = 0;
    return n;
}

void insp_fmt_bytes(double b, char *buf, size_t cap)
{
    if (isnan(b))
        snprintf(buf, cap, "n/a");
    else if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.1f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024)
        snprintf(buf, cap, "%.0f MiB", b / (1024.0 * 1024));
    else
        snprintf(buf, cap, "%.0f KiB", b / 1024.0);
}

void insp_breakdown_finish(struct insp_breakdown *out)
{
    double sum = 0;
    int k = 0;
    for (int i = 0; i < out->n_parts; i++) {
        if (isnan(out->parts[i].bytes))
            continue;
        out->parts[k++] = out->parts[i];
        sum += out->parts[i].bytes;
    }
    out->n_parts = k;
    out->other = out->excess = 0;
    if (isnan(out->total))
        return;
    if (sum <= out->total)
        out->other = out->total - sum;
    else
        out->excess = sum - out->total;
}

static void add_part(struct insp_breakdown *b, const char *name, double bytes)
{
    if (b->n_parts >= INSP_MAX_PARTS)
        return;
    snprintf(b->parts[b->n_parts].name, sizeof b->parts[0].name, "%s", name);
    b->parts[b->n_parts++].bytes = bytes;
}

static double known(uint64_t v) { return v == ENGINE_UNKNOWN ? NAN : (double)v; }

static double min2(double a, double b) { return a < b ? a : b; }

void insp_breakdown_from(const struct mon_inputs *in, struct insp_breakdown *out)
{
    memset(out, 0, sizeof *out);
    double w = known(in->mem.weights), kv = known(in->mem.kv_cache), sc = known(in->mem.scratch);
    const struct gpu_sample *gs = &in->gs;
    if (in->gpu && gs->mem_valid) {
        snprintf(out->title, sizeof out->title, "GPU memory in use (driver)");
        out->total = (double)gs->mem_used;
        out->capacity = (double)gs->mem_total;
        double self = NAN, others = NAN;
        if (gs->procs_valid) {
            others = 0;
            for (unsigned i = 0; i < gs->n_procs; i++) {
                if (gs->procs[i].self && gs->procs[i].used_valid)
                    self = (double)gs->procs[i].used;
                else if (!gs->procs[i].self && gs->procs[i].used_valid)
                    others += (double)gs->procs[i].used;
            }
        }
        /* The engine's buffers are only on the device when it runs there. */
        bool on = in->mem.on_gpu;
        add_part(out, "weights", on ? w : NAN);
        add_part(out, "KV cache", on ? kv : NAN);
        add_part(out, "scratch", on ? sc : NAN);
        double eng = on ? (isnan(w) ? 0 : w) + (isnan(kv) ? 0 : kv) + (isnan(sc) ? 0 : sc) : 0;
        double ctx = self - eng;
        add_part(out, on ? "CUDA context, cuBLAS" : "this process", ctx >= 0 ? ctx : NAN);
        add_part(out, "other processes", others);
    } else {
        snprintf(out->title, sizeof out->title, "process resident (kernel)");
        out->total = in->pm.rss_valid ? (double)in->pm.rss : NAN;
        out->capacity = in->pm.host_valid ? (double)in->pm.host_total : NAN;
        if (in->pm.split_valid) {
            /* File-backed pages are the model's mapping (and the program's
             * own code); the engine's buffers are anonymous, and count only
             * as far as they are resident. */
            double anon = (double)(in->pm.rss_anon + in->pm.rss_shmem);
            double kvr = isnan(kv) ? NAN : min2(kv, anon);
            double scr = isnan(sc) ? NAN : min2(sc, anon - (isnan(kvr) ? 0 : kvr));
            add_part(out, "weights (file-backed)", (double)in->pm.rss_file);
            add_part(out, "KV cache", kvr);
            add_part(out, "scratch", scr);
        } else {
            add_part(out, "weights", w);
            add_part(out, "KV cache", kv);
            add_part(out, "scratch", sc);
        }
    }
    insp_breakdown_finish(out);
}

double insp_kv_elem_bytes(const char *type)
{
    static const struct {
        const char *name;
        double bytes;
    } types[] = {
        {.name = "f32", .bytes = 4},
        {.name = "f16", .bytes = 2},
        {.name = "q8_0", .bytes = 34.0 / 32}, /* a block: 32 int8 and one f16 scale */
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(type, types[i].name) == 0)
            return types[i].bytes;
    return NAN;
}

int insp_kv_layer_row(const struct engine_memory_map *m, int max, char *out, size_t cap, bool *swa)
{
    if (!cap)
        return 0;
    int n = m->n_layer < ENGINE_MAP_LAYERS ? m->n_layer : ENGINE_MAP_LAYERS;
    if (n > max)
        n = max;
    size_t o = 0;
    int cells = 0;
    for (int i = 0; i < n && o + 3 < cap; i++, cells++) {
        swa[i] = m->layers[i].swa;
        double res = (double)m->layers[i].reserved, used = (double)m->layers[i].used;
        if (!(res > 0) || !(used > 0)) {
            out[o++] = ' ';
            continue;
        }
        int h = (int)ceil(used / res * 8); /* a cached layer is never a gap */
        h = h < 1 ? 1 : h > 8 ? 8 : h;
        out[o++] = (char)0xE2;
        out[o++] = (char)0x96;
        out[o++] = (char)(0x80 + h);
    }
    out[o] = 0;
    return cells;
}

void insp_headroom_from(const struct mon_inputs *in, struct insp_headroom *out)
{
    memset(out, 0, sizeof *out);
    const struct engine_memory_map *m = &in->map;
    out->free_bytes = NAN;
    if (in->gpu && in->gs.mem_valid && in->mem.on_gpu)
        out->free_bytes = (double)(in->gs.mem_total - in->gs.mem_used);
    else if (in->mem.device_free != ENGINE_UNKNOWN)
        out->free_bytes = (double)in->mem.device_free;
    else if (in->pm.host_valid)
        out->free_bytes = (double)in->pm.host_avail;
    out->per_token = m->known ? (double)m->kv_pos_bytes * m->n_layer : NAN;
    out->more_tokens = out->per_token > 0 ? floor(out->free_bytes / out->per_token) : NAN;
    if (!m->known)
        return;
    /* Every layer reserves the whole context, so a context N takes N x the
     * per-position bytes of every layer. */
    double now = (double)m->kv_pos_bytes * m->n_layer * m->n_ctx;
    static const char *const alts[] = {"f32", "f16", "q8_0"};
    for (int i = 0; i < 3; i++) {
        double per = (double)m->kv_pos_elems * m->n_layer * insp_kv_elem_bytes(alts[i]);
        snprintf(out->alt[i].type, sizeof out->alt[i].type, "%s", alts[i]);
        out->alt[i].max_ctx = per > 0 ? floor((out->free_bytes + now) / per) : NAN;
        out->alt[i].delta = out->alt[i].max_ctx - m->n_ctx;
    }
    out->n_alt = 3;
}

void insp_place(struct rect conv, struct rect *chat, struct rect *insp)
{
    *chat = conv;
    *insp = conv;
    if (conv.w >= 2 * INSP_MIN_COLS) {
        int iw = conv.w / 2 > INSP_MIN_COLS ? conv.w / 2 : INSP_MIN_COLS;
        insp->w = iw;
        insp->x = conv.x + conv.w - iw;
        chat->w = conv.w - iw;
    } else {
        chat->w = 0;
        chat->h = 0;
    }
}

void insp_push(struct inspect *in, const struct mon_reading *r)
{
    for (int i = 0; i < MON_N_FIELDS; i++)
        insp_ring_push(&in->ring[i], mon_field(r, i));
    in->last = *r;
    in->n++;
}
