/* nvml.h - GPU readings for the meters through NVIDIA's management library,
 * opened with dlopen at run time so kvchat starts (and shows n/a) where the
 * driver is absent. Every value carries a valid bit: a reading that failed is
 * never reported as 0.
 *
 * Used by ui.c from the UI thread only.
 */
#ifndef KVCHAT_TUI_NVML_H
#define KVCHAT_TUI_NVML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gpu_sample {
    bool util_valid, power_valid, temp_valid, energy_valid, mem_valid;
    unsigned util_pct;      /* GPU busy, percent over the driver's last sample period */
    double power_w;         /* draw now, watts */
    unsigned temp_c;        /* core temperature, Celsius */
    double energy_j;        /* energy counter since driver load, joules (monotonic) */
    uint64_t mem_total, mem_used; /* bytes on the device, all processes */
};

struct gpu_mon;

/* Opens NVML and device INDEX. Never NULL for lack of NVML: returns a monitor
 * whose samples are all invalid, with the reason in gpu_mon_note. NULL only
 * when out of memory. */
struct gpu_mon *gpu_mon_new(unsigned index);
void gpu_mon_free(struct gpu_mon *g); /* NULL is a no-op */
bool gpu_mon_ok(const struct gpu_mon *g);
const char *gpu_mon_note(const struct gpu_mon *g); /* why n/a, or the GPU name */
/* Peak memory bandwidth in bytes/s from the memory clock and bus width, or 0
 * when unknown. */
double gpu_mon_bandwidth(const struct gpu_mon *g);
void gpu_mon_sample(struct gpu_mon *g, struct gpu_sample *out);

#endif
