/* membw.h - measures the host's memory copy bandwidth: the roofline meter's
 * denominator on the CPU backend, where no NVML reports a peak and the user
 * has not given one (mem_bandwidth_gbs in the config, --mem-bandwidth).
 *
 * Used by the chat screen (tui/worker.c) from a background thread while the
 * engine is idle, and by kvchat bench; tested by
 * tests/test_tui.c (a machine's figure cannot be asserted, only that it is a
 * positive, finite number). No ncurses, no engine: plain C and pthreads.
 */
#ifndef KVCHAT_TUI_MEMBW_H
#define KVCHAT_TUI_MEMBW_H

#include <stdatomic.h>
#include <stddef.h>

/* What the UI measures with: 256 MiB of traffic per pass (two 128 MiB
 * buffers, far beyond any last-level cache) a few times; on a desktop that
 * is 50-200 ms in all. */
#define MEMBW_DEFAULT_BYTES ((size_t)256 << 20)
#define MEMBW_DEFAULT_REPS 4

/* Copies one buffer of BYTES/2 into another REPS times, N_THREADS threads
 * each copying its own slice (N_THREADS <= 0: one per online CPU), and
 * returns the best pass in bytes moved per second, read plus written (the
 * STREAM "copy" convention). Best, not mean: the question is what the memory
 * can do, and anything else running only ever makes a pass slower.
 *
 * CANCEL (may be NULL) is polled between 1 MiB chunks: once it is non-zero
 * the threads stop within a chunk and the result is 0, so a caller can call
 * off the measurement the moment the engine needs the memory. Also 0 when the
 * buffers or threads cannot be had. Never exits or prints. */
double membw_measure(size_t bytes, int n_threads, int reps, const atomic_int *cancel);

/* A machine's figure does not change between runs, so the UI measures once
 * and keeps the result in ${XDG_CACHE_HOME:-~/.cache}/kvchat/membw, one line
 * "CPU<TAB>THREADS<TAB>BYTES_PER_S" per CPU model and thread count: later
 * starts read it instead of copying 256 MiB while the user waits.
 * membw_cache_get returns the cached figure for CPU (a name such as the
 * engine's device) and N_THREADS, or 0 when there is none; membw_cache_put
 * records one (best effort: a cache that cannot be written is skipped). */
double membw_cache_get(const char *cpu, int n_threads);
void membw_cache_put(const char *cpu, int n_threads, double bytes_per_s);

#endif
