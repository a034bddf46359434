/* inspect.h - the memory and speed inspector's pure parts (F3, /inspect):
 * the last minutes of readings in ring buffers, graph scaling and the block
 * characters a graph row is drawn with, where the memory goes (parts plus
 * "other" always add up to what the driver or the kernel reports), and how
 * many more tokens of context the free memory holds at each KV type.
 *
 * Pure: no ncurses, no engine calls. inspect_draw.c draws what these return;
 * tests/test_tui.c checks them without a terminal.
 *
 * Rules: unknown values are NaN and stay visible as gaps or "n/a", never as
 * 0. Strings are written into caller buffers and always NUL-terminated.
 */
#ifndef KVCHAT_TUI_INSPECT_H
#define KVCHAT_TUI_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "monitor.h"

/* Five minutes of one-a-second readings. */
#define INSP_RING 300

struct insp_ring {
    double v[INSP_RING]; /* NaN = missing that second */
    int head;            /* next slot to write */
    int n;               /* readings held, up to INSP_RING */
};

void insp_ring_push(struct insp_ring *r, double v);
/* The reading AGE seconds back (0 = newest); NaN past what is held. */
double insp_ring_at(const struct insp_ring *r, int age);
/* Largest known value of the newest N readings; NaN when none is known. */
double insp_ring_max(const struct insp_ring *r, int n);

/* A graph's axis maximum: the smallest 1, 2 or 5 x 10^k at or above MAX
 * (e.g. 37 -> 50, 612 W -> 1000, 0.8 -> 1). MAX NaN or <= 0 gives 1. */
double insp_nice_max(double max);

/* One graph row of WIDTH cells, oldest left and newest at the right edge:
 * each cell is one of eight block heights (U+2581..U+2588) of V/YMAX, a
 * blank for a missing reading, and a blank where nothing was held yet.
 * Returns the bytes written (3 per block, 1 per blank) into OUT. */
size_t insp_graph_row(const struct insp_ring *r, int width, double ymax, char *out, size_t cap);

/* Bytes as "812 MiB", "21.6 GiB"; NaN as "n/a". */
void insp_fmt_bytes(double b, char *buf, size_t cap);

/* ---- where the memory goes ---- */

#define INSP_MAX_PARTS 8
struct insp_breakdown {
    char title[64];   /* "GPU memory (driver)" or "process resident (kernel)" */
    double total;     /* what the driver or the kernel reports; NaN = unknown */
    double capacity;  /* the device's or the machine's memory */
    struct {
        char name[48];
        double bytes;
    } parts[INSP_MAX_PARTS];
    int n_parts;
    double other;     /* total - the parts; 0 when they exceed it */
    double excess;    /* how much the parts exceed the total (the accounting is off), else 0 */
};

/* Sets OUT's total and parts (NaN parts are left out) and works out other
 * and excess, so that the sum of the parts plus other is the total exactly
 * (or, when the parts exceed it, the total plus the excess). */
void insp_breakdown_finish(struct insp_breakdown *out);
/* The breakdown for the last sample: on a GPU (its memory readings valid) the
 * device's used memory as weights, KV cache, scratch, the CUDA context and
 * cuBLAS workspace (what the driver lists for this process beyond the
 * engine's buffers), other processes, and "other" (the driver and what it
 * does not list); on the CPU this process's resident memory as the
 * file-backed pages (the model's mapping), the KV cache and scratch, and
 * "other". */
void insp_breakdown_from(const struct mon_inputs *in, struct insp_breakdown *out);

/* ---- the KV cache per layer ---- */

/* One cell per layer (the first min(n_layer, ENGINE_MAP_LAYERS), at most
 * MAX): the block height (U+2581..U+2588) of that layer's used KV bytes over
 * its reserved ones, a blank for a layer with nothing cached yet; a sliding
 * layer's height is against the same reserve, so its window shows as a cap.
 * SWA[i] is set for the sliding layers, so the caller can colour them.
 * Returns the cells written; OUT holds their UTF-8, NUL-terminated. */
int insp_kv_layer_row(const struct engine_memory_map *m, int max, char *out, size_t cap, bool *swa);

/* ---- headroom ---- */

/* Bytes of one KV element at TYPE ("f32", "f16", "q8_0": 34 bytes per 32);
 * NaN for an unknown name. */
double insp_kv_elem_bytes(const char *type);
struct insp_headroom {
    double free_bytes;     /* on the device (GPU) or available on the host */
    double per_token;      /* KV bytes one more token of context takes now (all layers) */
    double more_tokens;    /* how many more fit: free / per_token; NaN = unknown */
    int n_alt;
    struct {
        char type[8];      /* "f32", "f16", "q8_0" */
        double max_ctx;    /* context that fits at this type: (free + the cache now) / per token */
        double delta;      /* max_ctx - the context now */
    } alt[3];
};
void insp_headroom_from(const struct mon_inputs *in, struct insp_headroom *out);

/* ---- geometry ---- */

/* Splits the conversation pane CONV for the inspector: on a pane of at least
 * 2 x INSP_MIN_COLS columns the chat keeps the left part and the inspector
 * takes the right (never less than INSP_MIN_COLS); on a narrower one the
 * inspector takes it all and CHAT is empty (w 0). */
#define INSP_MIN_COLS 46
void insp_place(struct rect conv, struct rect *chat, struct rect *insp);

/* ---- the inspector's state ---- */

struct inspect {
    struct insp_ring ring[MON_N_FIELDS]; /* one per mon_reading field */
    struct mon_reading last;
    int n;                               /* readings pushed */
};
void insp_push(struct inspect *in, const struct mon_reading *r);

#endif
