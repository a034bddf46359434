/* cuda_probe.h - asks the CUDA runtime whether a GPU is usable, without
 * needing one. Plain C: the engine calls it to decide --backend auto and to
 * say why.
 *
 * Thread safety: safe to call from any thread; it creates the primary context
 * of device 0 when a device exists (to read free memory).
 */
#ifndef KVCHAT_CUDA_PROBE_H
#define KVCHAT_CUDA_PROBE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the number of CUDA devices, 0 when there is none, no driver, a
 * driver too old for this runtime, or any other error (never crashes or
 * aborts). When a device exists, NAME (CAP bytes, may be NULL) receives device
 * 0's name, *TOTAL and *FREE (may be NULL) its memory in bytes. When none, NAME
 * receives the runtime's reason (for the --backend auto message) and the
 * sizes are 0. */
int cuda_probe(char *name, size_t cap, uint64_t *total, uint64_t *free);

#ifdef __cplusplus
}
#endif

#endif
