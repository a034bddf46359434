/* gpu_vendor.h - what a GPU vendor's monitor provides behind gpu.h: one row
 * of the table in gpu.c. Internal to telemetry/.
 *
 * open() returns the vendor's state for device INDEX, or NULL with the reason
 * in NOTE (no library, no such device) so the next vendor can be tried;
 * on success NOTE gets the device's name. sample() fills only what it could
 * read and sets the matching valid bits (the caller zeroed OUT). A vendor
 * that cannot know its peak bandwidth returns 0 from bandwidth().
 */
#ifndef KVCHAT_TELEMETRY_GPU_VENDOR_H
#define KVCHAT_TELEMETRY_GPU_VENDOR_H

#include <stddef.h>

#include "gpu.h"

struct gpu_vendor {
    const char *name;
    void *(*open)(unsigned index, char *note, size_t cap);
    void (*close)(void *state);
    void (*sample)(void *state, struct gpu_sample *out);
    double (*bandwidth)(void *state); /* peak, bytes/s; 0 = unknown */
};

extern const struct gpu_vendor gpu_vendor_nvml;  /* nvml.c */
extern const struct gpu_vendor gpu_vendor_trace; /* trace.c: recorded readings */

#endif
