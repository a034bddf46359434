/* monitor.h - one reading a second of where the memory is and how fast the
 * model runs, for the inspector (tui/inspect.c keeps the last minutes of
 * them) and for --monitor-log (a file of them, one line a second, in the chat
 * screen and in -p mode alike).
 *
 * A monitor borrows an engine and, optionally, a GPU monitor; each
 * monitor_sample reads the engine's figures (engine_stats, engine_memory,
 * engine_memory_map), the GPU's (telemetry/gpu.h: NVML or recorded
 * readings), and this process's and the host's memory (telemetry/procmem.h),
 * and turns counters into rates over the time since the previous sample.
 *
 * Rules:
 * - Ownership: monitor_new returns an owned monitor, monitor_free(NULL) is
 *   a no-op; the engine and GPU monitor are borrowed and must outlive it.
 * - Errors: functions that can fail return 0 or -1 with a one-line message
 *   in ERR naming the file and what to do.
 * - Unknown readings are NaN, never 0: a graph shows a gap and the log an
 *   empty CSV cell or a JSON null.
 * - Threads: a monitor is used by one thread at a time: the chat screen's
 *   UI thread, or the thread monitor_start runs (then only monitor_stop may
 *   be called until it returns).
 */
#ifndef KVCHAT_APP_MONITOR_H
#define KVCHAT_APP_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "gpu.h"
#include "procmem.h"

/* One second's reading; NaN = unknown. Bytes and rates as doubles so every
 * field can be missing the same way. */
struct mon_reading {
    double time;        /* Unix time, seconds */
    double mem_used;    /* device memory in use, all processes (GPU), or the host's RAM in use (CPU) */
    double mem_total;
    double self_bytes;  /* what this process holds there: the driver's figure (GPU) or VmRSS */
    double weights, kv_reserved, kv_used, scratch; /* the engine's own accounting */
    double others;      /* other processes on the GPU (NVML's per-process list) */
    double kv_tokens, n_ctx;
    double decode_tok_s; /* tokens generated per second over the last interval; NaN when none */
    double roofline_pct; /* decode speed x bytes read per token / peak bandwidth */
    double gpu_util;    /* percent */
    double power_w;
    double energy_per_tok; /* J per generated token over the last interval */
    double temp_c;
};

/* The columns, in the order of the CSV header and the JSON keys. */
#define MON_N_FIELDS 17
extern const char *const mon_field_names[MON_N_FIELDS];
/* Field I of R (0..MON_N_FIELDS-1), in the order of mon_field_names. */
double mon_field(const struct mon_reading *r, int i);
double *mon_field_ptr(struct mon_reading *r, int i);

/* The raw figures behind the last reading, for the inspector's breakdown. */
struct mon_inputs {
    struct engine_stats st;
    struct engine_memory mem;
    struct engine_memory_map map;
    struct gpu_sample gs;
    struct proc_mem pm;
    bool gpu;                 /* a GPU monitor is open */
    uint64_t bytes_per_token; /* engine_info's, at an empty context */
};

enum mon_format { MON_CSV, MON_JSONL };
/* By the file's extension: ".csv" is CSV, ".jsonl" or ".json" JSON lines;
 * -1 for anything else. */
int mon_format_for(const char *path);
/* The CSV header line (with newline) into BUF; "" for JSON lines. */
size_t mon_header(enum mon_format f, char *buf, size_t cap);
/* One reading as a line (with newline); returns its length. */
size_t mon_format_line(enum mon_format f, const struct mon_reading *r, char *buf, size_t cap);
/* Parses one line written by mon_format_line back; false for the header,
 * comments or a line that is not a reading. */
bool mon_parse_line(enum mon_format f, const char *line, struct mon_reading *out);

struct monitor;
/* GPU (borrowed, may be NULL) and BANDWIDTH (bytes/s, 0 = unknown) are the
 * roofline's and the device's; NULL only when out of memory. */
struct monitor *monitor_new(struct engine *e, struct gpu_mon *gpu, double bandwidth);
void monitor_free(struct monitor *m);
void monitor_set_bandwidth(struct monitor *m, double bandwidth);
/* Points M at another engine and GPU monitor (/model switched them), the
 * log staying open; not while monitor_start's thread runs. */
void monitor_rebind(struct monitor *m, struct engine *e, struct gpu_mon *gpu);
/* Takes a reading now. */
void monitor_sample(struct monitor *m, struct mon_reading *out);
/* The figures behind the last monitor_sample. */
const struct mon_inputs *monitor_inputs(const struct monitor *m);

/* Opens PATH for the log (truncated; the format from its extension) and
 * writes the header. After it, monitor_sample writes each reading as a line,
 * flushed at once, so a crash loses at most the second being written. */
int monitor_log_open(struct monitor *m, const char *path, char *err, size_t errlen);
/* Samples (and logs) once a second on a thread of its own until
 * monitor_stop: -p mode, whose thread is inside engine_chat. */
int monitor_start(struct monitor *m, char *err, size_t errlen);
void monitor_stop(struct monitor *m);

#endif
