/* membw.h - measures the host's memory read bandwidth: the roofline meter's
 * denominator on the CPU backend, where no NVML reports a peak and the user
 * has not given one (mem_bandwidth_gbs in the config, --mem-bandwidth).
 * Decoding a token reads every weight once and writes almost nothing, so
 * the ceiling it runs against is what the cores can read, not a copy figure
 * that counts reads and writes.
 *
 * Used by the chat screen (tui/worker.c) from a background thread while the
 * engine is idle, and by kvchat bench; tested by
 * tests/test_tui.c (a machine's figure cannot be asserted, only that it is a
 * positive, finite number). No ncurses, no engine: plain C and pthreads.
 */
#ifndef KVCHAT_TUI_MEMBW_H
#define KVCHAT_TUI_MEMBW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* What the UI measures with: one 256 MiB buffer (far beyond any last-level
 * cache) read seven times; on a desktop that is 100-300 ms in all. Seven
 * passes give a median that moves by a few percent between runs on a busy
 * machine, where a best-of or a mean moves by tens. */
#define MEMBW_DEFAULT_BYTES ((size_t)256 << 20)
#define MEMBW_DEFAULT_PASSES 7

/* One measurement: bytes read per second over the passes, with their
 * spread (the slowest and the fastest pass). */
struct membw_figure {
    double median, min, max;
    int passes;
};

/* Reads a buffer of BYTES PASSES times, N_THREADS threads each reading its
 * own slice (N_THREADS <= 0: one per online CPU), and fills OUT. The
 * median is the figure to use.
 *
 * CANCEL (may be NULL) is polled between 1 MiB chunks: once it is non-zero
 * the threads stop within a chunk and the call returns false, so a caller
 * can call off the measurement the moment the engine needs the memory. Also
 * false when the buffer or threads cannot be had; OUT is then zeroed. Never
 * exits or prints. */
bool membw_measure(size_t bytes, int n_threads, int passes, const atomic_int *cancel,
                   struct membw_figure *out);

/* A machine's figure does not change between runs, so the UI measures once
 * and keeps the median in ${XDG_CACHE_HOME:-~/.cache}/kvchat/membw-read, one
 * line "CPU<TAB>THREADS<TAB>BYTES_PER_S" per CPU model and thread count (the
 * name differs from the copy figures' "membw" of earlier versions, which
 * counted reads and writes and must not be read as read figures): later
 * starts read it instead of reading 256 MiB while the user waits.
 * membw_cache_get returns the cached figure for CPU (a name such as the
 * engine's device) and N_THREADS, or 0 when there is none; membw_cache_put
 * records one (best effort: a cache that cannot be written is skipped). */
double membw_cache_get(const char *cpu, int n_threads);
void membw_cache_put(const char *cpu, int n_threads, double bytes_per_s);

#endif
