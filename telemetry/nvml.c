/* nvml.c - NVIDIA's row of the GPU vendor table: NVML through dlopen. The
 * few entry points and types are declared here from NVML's documented C ABI,
 * so no NVIDIA header or library is needed to build, and none to run. */
#include "gpu_vendor.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct nvml_device_st *nvml_device_t;
typedef int nvml_return_t; /* NVML_SUCCESS = 0 */
struct nvml_utilization {
    unsigned int gpu, memory;
};
struct nvml_memory {
    unsigned long long total, free, used;
};
#define NVML_TEMPERATURE_GPU 0
#define NVML_CLOCK_MEM 2

struct nvml {
    void *lib; /* owned dlopen handle */
    nvml_device_t dev;
    double bandwidth;
    nvml_return_t (*shutdown)(void);
    nvml_return_t (*util)(nvml_device_t, struct nvml_utilization *);
    nvml_return_t (*power)(nvml_device_t, unsigned int *);
    nvml_return_t (*temp)(nvml_device_t, int, unsigned int *);
    nvml_return_t (*energy)(nvml_device_t, unsigned long long *);
    nvml_return_t (*mem)(nvml_device_t, struct nvml_memory *);
};

static void *sym(struct nvml *g, const char *name)
{
    return dlsym(g->lib, name); /* NULL: that reading stays n/a */
}

static void nvml_close(void *state)
{
    struct nvml *g = state;
    if (g->shutdown)
        g->shutdown();
    dlclose(g->lib);
    free(g);
}

static void *nvml_open(unsigned index, char *note, size_t cap)
{
    struct nvml *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(note, cap, "out of memory");
        return NULL;
    }
    g->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!g->lib) {
        snprintf(note, cap, "NVML not available (no NVIDIA driver)");
        free(g);
        return NULL;
    }
    nvml_return_t (*init)(void) = (nvml_return_t (*)(void))sym(g, "nvmlInit_v2");
    nvml_return_t (*handle)(unsigned, nvml_device_t *) =
        (nvml_return_t (*)(unsigned, nvml_device_t *))sym(g, "nvmlDeviceGetHandleByIndex_v2");
    nvml_return_t (*name)(nvml_device_t, char *, unsigned) =
        (nvml_return_t (*)(nvml_device_t, char *, unsigned))sym(g, "nvmlDeviceGetName");
    g->shutdown = (nvml_return_t (*)(void))sym(g, "nvmlShutdown");
    if (!init || !handle || init() != 0) {
        snprintf(note, cap, "NVML failed to initialise");
        dlclose(g->lib);
        free(g);
        return NULL;
    }
    if (handle(index, &g->dev) != 0) {
        snprintf(note, cap, "NVML: no GPU %u", index);
        nvml_close(g);
        return NULL;
    }
    char nm[96] = "GPU";
    if (name)
        name(g->dev, nm, sizeof nm);
    snprintf(note, cap, "%s", nm);
    g->util = (nvml_return_t (*)(nvml_device_t, struct nvml_utilization *))sym(g, "nvmlDeviceGetUtilizationRates");
    g->power = (nvml_return_t (*)(nvml_device_t, unsigned int *))sym(g, "nvmlDeviceGetPowerUsage");
    g->temp = (nvml_return_t (*)(nvml_device_t, int, unsigned int *))sym(g, "nvmlDeviceGetTemperature");
    g->energy = (nvml_return_t (*)(nvml_device_t, unsigned long long *))sym(g, "nvmlDeviceGetTotalEnergyConsumption");
    g->mem = (nvml_return_t (*)(nvml_device_t, struct nvml_memory *))sym(g, "nvmlDeviceGetMemoryInfo");

    /* Peak bandwidth = memory clock x 2 (double data rate) x bus width. */
    nvml_return_t (*clock)(nvml_device_t, int, unsigned int *) =
        (nvml_return_t (*)(nvml_device_t, int, unsigned int *))sym(g, "nvmlDeviceGetMaxClockInfo");
    nvml_return_t (*bus)(nvml_device_t, unsigned int *) =
        (nvml_return_t (*)(nvml_device_t, unsigned int *))sym(g, "nvmlDeviceGetMemoryBusWidth");
    unsigned mhz = 0, bits = 0;
    if (clock && bus && clock(g->dev, NVML_CLOCK_MEM, &mhz) == 0 && bus(g->dev, &bits) == 0)
        g->bandwidth = (double)mhz * 1e6 * 2.0 * bits / 8.0;
    return g;
}

static double nvml_bandwidth(void *state)
{
    return ((struct nvml *)state)->bandwidth;
}

static void nvml_sample(void *state, struct gpu_sample *s)
{
    struct nvml *g = state;
    struct nvml_utilization u;
    unsigned v;
    unsigned long long mj;
    struct nvml_memory m;
    if (g->util && g->util(g->dev, &u) == 0)
        s->util_valid = true, s->util_pct = u.gpu;
    if (g->power && g->power(g->dev, &v) == 0)
        s->power_valid = true, s->power_w = v / 1000.0;
    if (g->temp && g->temp(g->dev, NVML_TEMPERATURE_GPU, &v) == 0)
        s->temp_valid = true, s->temp_c = v;
    if (g->energy && g->energy(g->dev, &mj) == 0)
        s->energy_valid = true, s->energy_j = mj / 1000.0;
    if (g->mem && g->mem(g->dev, &m) == 0)
        s->mem_valid = true, s->mem_total = m.total, s->mem_used = m.used;
}

const struct gpu_vendor gpu_vendor_nvml = {
    .name = "nvml",
    .open = nvml_open,
    .close = nvml_close,
    .sample = nvml_sample,
    .bandwidth = nvml_bandwidth,
};
