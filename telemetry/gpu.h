/* gpu.h - GPU readings for the meters, from whichever vendor's monitoring
 * library this machine has. The vendors sit behind one table (gpu_vendor.h;
 * NVIDIA's NVML first, in nvml.c), each opened with dlopen at run time so
 * kvchat starts, and shows n/a, where no driver is present. Every value
 * carries a valid bit: a reading that failed is never reported as 0.
 *
 * Used by the chat screen from its UI thread only; a monitor is not shared
 * between threads.
 */
#ifndef KVCHAT_TELEMETRY_GPU_H
#define KVCHAT_TELEMETRY_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One process holding memory on the device, as the driver lists it. */
struct gpu_proc {
    unsigned pid;
    bool used_valid;
    uint64_t used; /* bytes it holds on the device */
    bool self;     /* this process */
};
#define GPU_MAX_PROCS 32

struct gpu_sample {
    bool util_valid, power_valid, temp_valid, energy_valid, mem_valid;
    bool procs_valid; /* the process list could be read (it may be empty) */
    unsigned util_pct;      /* GPU busy, percent over the driver's last sample period */
    double power_w;         /* draw now, watts */
    unsigned temp_c;        /* core temperature, Celsius */
    double energy_j;        /* energy counter since driver load, joules (monotonic) */
    uint64_t mem_total, mem_used; /* bytes on the device, all processes */
    /* compute and graphics processes, each once; the first GPU_MAX_PROCS */
    struct gpu_proc procs[GPU_MAX_PROCS];
    unsigned n_procs;
};

struct gpu_mon;

/* The environment variable naming a file of recorded readings (JSON lines,
 * see trace.c) that stands in for the GPU: tests and demos drive the meters
 * and the inspector with a real GPU's trace on a machine without one. */
#define GPU_TRACE_ENV "KVCHAT_GPU_TRACE"
/* True when GPU_TRACE_ENV is set: the screen opens a monitor even on the
 * CPU backend. */
bool gpu_mon_recorded(void);

/* Opens device INDEX with the first vendor whose library has it. Never NULL
 * for lack of a driver: returns a monitor whose samples are all invalid, with
 * the reason in gpu_mon_note. NULL only when out of memory. */
struct gpu_mon *gpu_mon_new(unsigned index);
void gpu_mon_free(struct gpu_mon *g); /* NULL is a no-op */
bool gpu_mon_ok(const struct gpu_mon *g);
const char *gpu_mon_note(const struct gpu_mon *g); /* why n/a, or the GPU name */
const char *gpu_mon_vendor(const struct gpu_mon *g); /* "nvml", or "" when none opened */
/* Peak memory bandwidth in bytes/s from the memory clock and bus width, or 0
 * when unknown. */
double gpu_mon_bandwidth(const struct gpu_mon *g);
void gpu_mon_sample(struct gpu_mon *g, struct gpu_sample *out);

#endif
