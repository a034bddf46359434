/* nvml.c - NVIDIA's row of the GPU vendor table: NVML through dlopen. The
 * few entry points and types are declared here from NVML's documented C ABI,
 * so no NVIDIA header or library is needed to build, and none to run. */
#include "gpu_vendor.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct nvml_device_st *nvml_device_t;
typedef int nvml_return_t; /* NVML_SUCCESS = 0 */
struct nvml_utilization {
    unsigned int gpu, memory;
};
struct nvml_memory {
    unsigned long long total, free, used;
};
/* nvmlProcessInfo_t as the _v2 and _v3 process lists fill it. */
struct nvml_process {
    unsigned int pid;
    unsigned long long used; /* NVML_VALUE_NOT_AVAILABLE (all ones) under some drivers */
    unsigned int gpu_instance, compute_instance;
};
#define NVML_VALUE_NOT_AVAILABLE (~0ull)
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
    nvml_return_t (*compute_procs)(nvml_device_t, unsigned int *, struct nvml_process *);
    nvml_return_t (*graphics_procs)(nvml_device_t, unsigned int *, struct nvml_process *);
};

typedef nvml_return_t (*nvml_procs_fn)(nvml_device_t, unsigned int *, struct nvml_process *);

/* The newest of the process-list entry points this driver has: _v3 and _v2
 * fill the same struct; the unversioned one has another layout, so it is
 * not used. */
static nvml_procs_fn procs_sym(void *lib, const char *base)
{
    char name[96];
    for (int v = 3; v >= 2; v--) {
        snprintf(name, sizeof name, "%s_v%d", base, v);
        void *f = dlsym(lib, name);
        if (f)
            return (nvml_procs_fn)f;
    }
    return NULL;
}

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
    g->compute_procs = procs_sym(g->lib, "nvmlDeviceGetComputeRunningProcesses");
    g->graphics_procs = procs_sym(g->lib, "nvmlDeviceGetGraphicsRunningProcesses");

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

/* Appends the processes FN lists to S, each pid once (a process using both
 * compute and graphics appears in both lists with the same memory). Returns
 * false when the list could not be read. */
static bool add_procs(struct nvml *g, nvml_procs_fn fn, struct gpu_sample *s)
{
    struct nvml_process p[GPU_MAX_PROCS];
    unsigned int n = GPU_MAX_PROCS;
    /* NVML_ERROR_INSUFFICIENT_SIZE (7) still means the list exists: keep
     * the first GPU_MAX_PROCS it filled. */
    nvml_return_t rc = fn(g->dev, &n, p);
    if (rc != 0 && rc != 7)
        return false;
    if (n > GPU_MAX_PROCS)
        n = GPU_MAX_PROCS;
    unsigned self = (unsigned)getpid();
    for (unsigned i = 0; i < n; i++) {
        bool seen = false;
        for (unsigned k = 0; k < s->n_procs; k++)
            seen = seen || s->procs[k].pid == p[i].pid;
        if (seen || s->n_procs >= GPU_MAX_PROCS)
            continue;
        s->procs[s->n_procs++] = (struct gpu_proc){
            .pid = p[i].pid,
            .used_valid = p[i].used != NVML_VALUE_NOT_AVAILABLE,
            .used = p[i].used != NVML_VALUE_NOT_AVAILABLE ? p[i].used : 0,
            .self = p[i].pid == self,
        };
    }
    return true;
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
    bool a = g->compute_procs && add_procs(g, g->compute_procs, s);
    bool b = g->graphics_procs && add_procs(g, g->graphics_procs, s);
    s->procs_valid = a || b;
}

const struct gpu_vendor gpu_vendor_nvml = {
    .name = "nvml",
    .open = nvml_open,
    .close = nvml_close,
    .sample = nvml_sample,
    .bandwidth = nvml_bandwidth,
};
