/* meters.h - the pure arithmetic and formatting behind the chat screen's
 * meters: byte counts, rates and durations as short strings, horizontal bars,
 * the stacked memory bar (weights / KV cache / scratch / other / free) and
 * the roofline percentage, and the meters pane's values from one sample
 * (with a remote engine, the server's own figures where it publishes them).
 *
 * Used by the chat screen's drawing (draw.c) and tested by tests/test_tui.c
 * without a terminal. Unknown values (ENGINE_UNKNOWN, NaN, negative rates)
 * always format as "n/a", never as 0, so a missing reading cannot pass for a
 * real one.
 */
#ifndef KVCHAT_TUI_METERS_H
#define KVCHAT_TUI_METERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "gpu.h"

/* "512 B", "12.0 KiB", "135 MiB", "1.25 GiB"; ENGINE_UNKNOWN -> "n/a". */
void fmt_bytes(uint64_t bytes, char *buf, size_t cap);
/* Tokens per second: "0.85", "12.3", "1234"; negative or NaN -> "n/a". */
void fmt_rate(double v, char *buf, size_t cap);
/* "850 ms", "1.23 s", "2m05s"; negative or NaN -> "n/a". */
void fmt_duration(double seconds, char *buf, size_t cap);
/* A value with one decimal and a unit ("61.5 W"), or "n/a" when !valid. */
void fmt_unit(double v, int valid, const char *unit, char *buf, size_t cap);

/* A bar of WIDTH cells for FRAC (clamped to 0..1) in UTF-8 eighth blocks,
 * padded with spaces; returns the bytes written (BUF needs 3*WIDTH+1). */
size_t meter_bar(double frac, int width, char *buf, size_t cap);
/* The same with the cells beyond FRAC drawn as a light-shade track, so an
 * empty meter (0 tokens) still shows where its bar runs. */
size_t meter_track_bar(double frac, int width, char *buf, size_t cap);

enum mem_seg { MEM_WEIGHTS, MEM_KV, MEM_SCRATCH, MEM_OTHER, MEM_FREE, MEM_SEG_COUNT };

struct mem_split {
    uint64_t bytes[MEM_SEG_COUNT];
    int cols[MEM_SEG_COUNT]; /* cells of each segment; they sum to the width */
    uint64_t total;
    int valid;               /* 0: total unknown, nothing to draw */
};

/* The glyph of segment SEG in the memory bar and its legend. In colour the
 * segments differ by colour (solid blocks, a legend square); MONO (NO_COLOR,
 * no colour support) gives each its own glyph, used in the bar and the
 * legend alike, so the legend still says which cells are which. */
const char *meters_seg_glyph(enum mem_seg seg, bool mono);
const char *meters_legend_glyph(enum mem_seg seg, bool mono);
/* The legend's names: "weights", "KV memory" (the cache's bytes; the
 * "context" row counts its tokens), "scratch", "other", "free". */
const char *meters_seg_name(enum mem_seg seg);

/* Splits a bar of WIDTH cells over the engine's memory: OTHER is what the
 * device (or host) has in use beyond this engine's buffers (other processes,
 * CUDA context). Cells go by largest remainder, and a segment with any bytes
 * gets at least one cell while there are cells to give. When the engine's
 * buffers exceed what the device reports in use (mmap'd weights the kernel
 * counts as cache), "free" is what is left beside them, so the segments add
 * up to the total and the headline (meters_values) agrees with them. */
void meters_mem_split(const struct engine_memory *m, int width, struct mem_split *out);

/* Achieved memory bandwidth as a percentage of the device's: bytes read per
 * token x tokens/s / bandwidth. NaN when a figure is missing. */
double meters_roofline_pct(uint64_t bytes_per_token, double tok_s, double bandwidth_bytes_s);

/* Energy per generated token in joules; NaN when unknown or no tokens. */
double meters_joules_per_token(double joules, int32_t tokens);

/* The prompt being read in (prefill), as the chat screen follows it from the
 * engine's on_prefill reports (engine_turn_params). */
struct prefill_view {
    bool active;          /* this turn's prompt is being read in */
    uint64_t done, total; /* tokens read of the total to read this turn; done 0 = before
                             the first chunk, when nothing is known of the rate yet */
    double elapsed_s;     /* seconds from the first report (0 tokens) to the last */
    const char *why;      /* NULL: a new message; else why the whole conversation is read
                             again ("system prompt changed"); borrowed, static */
};

/* Tokens per second read so far; NaN before the first chunk. */
double prefill_rate(const struct prefill_view *p);
/* "reading the prompt 2048/11000 tok · 310 tok/s · 29 s left", or with WHY
 * "re-reading the conversation (system prompt changed) 2048/11000 tok · ...";
 * the rate and the time left read n/a before the first chunk. */
void fmt_prefill(const struct prefill_view *p, char *buf, size_t cap);
/* A time left: "<1 s", "29 s", "2m05s", "1h02m"; negative or NaN -> "n/a". */
void fmt_time_left(double seconds, char *buf, size_t cap);
/* The model loading screen's line: "12.0 MiB of 93.8 MiB · 45.1 MiB/s · 13% · 2 s
 * left" after ELAPSED_S seconds; before the first bytes (or with TOTAL 0, not known
 * yet) the size, rate and time left that are not known read n/a. */
void fmt_load_progress(uint64_t done, uint64_t total, double elapsed_s, char *buf, size_t cap);

/* What the meters pane shows, from one sample (all borrowed). */
struct meter_inputs {
    const struct engine_stats *st;   /* the running or last turn */
    const struct engine_memory *mem;
    const struct gpu_sample *gs;     /* invalid readings show as n/a */
    uint64_t bytes_per_token;        /* weights read per decoded token (engine_info) */
    int32_t n_ctx;                   /* the context, when the KV capacity is not known yet */
    int32_t n_ctx_train;             /* the model's trained context, 0 = unknown */
    const struct engine_server *srv; /* a server's own figures, or NULL */
    double bandwidth;                /* device bytes/s for the roofline, 0 = unknown */
    double jpt;                      /* J/token of the turn, NaN = unknown */
    /* The prompt being read in, or NULL: while it is active the prefill rate is
     * its own (n/a before the first chunk, never the engine's 0 of a turn that
     * has not measured one yet), and so is the context until the first chunk
     * (the engine's count is the old cache's, which a re-read replaces). */
    const struct prefill_view *pf;
};

/* The meters' values as text. Rates and TTFT are n/a before the first
 * token of a turn (decode before the second; prefill before its first chunk
 * is read), the roofline without a bandwidth or a decode rate. */
struct meter_values {
    char mem[80];   /* "used / total" of the device (or host); used is the legend's
                       segments but free, so the two agree */
    char kv[64];    /* "used / capacity tok": the context row */
    char left[32];  /* "N tok" of context left */
    char dec[48], pre[48]; /* "R tok/s" decode and prefill */
    char ttft[32];
    char roof[64];  /* "P% of B GB/s" */
    char util[16], pow[32], temp[32], jpt[40];
    char reqs[48];  /* "R running, W waiting" on the server */
    char hit[16];   /* "P%" of prompt tokens found in the server's prefix cache */
    char ctx_warn[64]; /* "past the trained 2048 tok" when the context is longer than
                          the model was trained for, else "" */
    bool gpu_known;  /* any GPU reading (util, power, temp, energy) is known */
    int32_t kv_used, kv_cap; /* tokens; kv_used -1 and kv_cap 0 = unknown */
    double kv_frac;          /* 0..1: the server's own KV usage when it says it, else
                                kv_used / kv_cap; negative = unknown (no bar) */
};

void meters_values(const struct meter_inputs *in, struct meter_values *v);

/* The live token count of the message being typed. Tokenizing on every key
 * would cost the UI thread a pass over the whole text per keystroke: the
 * text is counted at most once per INPUT_COUNT_MIN_S, and only when it
 * changed since the last count. */
#define INPUT_COUNT_MIN_S 0.1
struct input_count {
    uint64_t hash;  /* FNV-1a of the text last seen */
    size_t len;     /* its bytes */
    double last;    /* monotonic seconds of the last count */
    int64_t tokens; /* of the text last counted; -1 = cannot count (no local tokenizer) */
    bool pending;   /* the text changed since it was last counted */
    bool counted;   /* tokens holds a count (or -1) */
};
/* Whether TEXT (LEN bytes) should be tokenized now, at monotonic time NOW;
 * remembers it as seen. When it says no to a changed text, pending stays
 * set: ask again once input_count_next has passed. */
bool input_count_due(struct input_count *c, const char *text, size_t len, double now);
/* Records the count of the text last seen (-1 = cannot count). */
void input_count_set(struct input_count *c, int64_t tokens, double now);
/* When a pending count is due; a negative value = nothing pending. */
double input_count_next(const struct input_count *c);
/* "42 tok · 3100 left" of a context of CAP tokens with USED in use ("N over"
 * when it would not fit, no remainder when CAP is 0 = unknown); TOKENS -1 =
 * "tok n/a" (a remote engine has no tokenizer here). */
void fmt_input_count(int64_t tokens, int32_t cap, int32_t used, char *buf, size_t buflen);

#endif
