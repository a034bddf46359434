/* nvml.c - NVML through dlopen. The few entry points and types are declared
 * here from NVML's documented C ABI, so no NVIDIA header or library is
 * needed to build, and none to run. */
#include "nvml.h"

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

struct gpu_mon {
    void *lib; /* owned dlopen handle, or NULL */
    nvml_device_t dev;
    bool ok;
    char note[160];
    double bandwidth;
    nvml_return_t (*shutdown)(void);
    nvml_return_t (*util)(nvml_device_t, struct nvml_utilization *);
    nvml_return_t (*power)(nvml_device_t, unsigned int *);
    nvml_return_t (*temp)(nvml_device_t, int, unsigned int *);
    nvml_return_t (*energy)(nvml_device_t, unsigned long long *);
    nvml_return_t (*mem)(nvml_device_t, struct nvml_memory *);
};

static void *sym(struct gpu_mon *g, const char *name)
{
    return dlsym(g->lib, name); /* NULL: that reading stays n/a */
}

struct gpu_mon *gpu_mon_new(unsigned index)
{
    struct gpu_mon *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!g->lib) {
        snprintf(g->note, sizeof g->note, "NVML not available (no NVIDIA driver)");
        return g;
    }
    nvml_return_t (*init)(void) = (nvml_return_t (*)(void))sym(g, "nvmlInit_v2");
    nvml_return_t (*handle)(unsigned, nvml_device_t *) =
        (nvml_return_t (*)(unsigned, nvml_device_t *))sym(g, "nvmlDeviceGetHandleByIndex_v2");
    nvml_return_t (*name)(nvml_device_t, char *, unsigned) =
        (nvml_return_t (*)(nvml_device_t, char *, unsigned))sym(g, "nvmlDeviceGetName");
    g->shutdown = (nvml_return_t (*)(void))sym(g, "nvmlShutdown");
    if (!init || !handle || init() != 0) {
        snprintf(g->note, sizeof g->note, "NVML failed to initialise");
        dlclose(g->lib);
        g->lib = NULL;
        return g;
    }
    if (handle(index, &g->dev) != 0) {
        snprintf(g->note, sizeof g->note, "NVML: no GPU %u", index);
        if (g->shutdown)
            g->shutdown();
        dlclose(g->lib);
        g->lib = NULL;
        return g;
    }
    g->ok = true;
    char nm[96] = "GPU";
    if (name)
        name(g->dev, nm, sizeof nm);
    snprintf(g->note, sizeof g->note, "%s", nm);
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

void gpu_mon_free(struct gpu_mon *g)
{
    if (!g)
        return;
    if (g->lib) {
        if (g->shutdown)
            g->shutdown();
        dlclose(g->lib);
    }
    free(g);
}

bool gpu_mon_ok(const struct gpu_mon *g)
{
    return g && g->ok;
}

const char *gpu_mon_note(const struct gpu_mon *g)
{
    return g ? g->note : "NVML not available";
}

double gpu_mon_bandwidth(const struct gpu_mon *g)
{
    return g && g->ok ? g->bandwidth : 0;
}

void gpu_mon_sample(struct gpu_mon *g, struct gpu_sample *s)
{
    memset(s, 0, sizeof *s);
    if (!g || !g->ok)
        return;
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
