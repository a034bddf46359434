/* hostmem.h - how much host memory this process can still take: the one
 * reading the CPU backend's memory check (registry.c) weighs its estimate
 * against. Internal to the engine.
 *
 * Rules:
 * - The figure is the smaller of MemAvailable (/proc/meminfo) and, for each
 *   cgroup v2 level from the process's own (/proc/self/cgroup) up to the
 *   root, memory.max minus memory.current ("max" is no limit): a container
 *   limit kills the process as surely as a full machine does.
 * - ROOT prefixes every path ("" or NULL: the real /proc and /sys), so the
 *   tests feed it fake files.
 * - Returns 0 with *OUT in bytes, or -1 when nothing could be read (then the
 *   caller checks nothing: an unknown limit is not a refusal).
 */
#ifndef KVCHAT_HOSTMEM_H
#define KVCHAT_HOSTMEM_H

#include <stdint.h>

int hostmem_available(const char *root, uint64_t *out);

#endif
