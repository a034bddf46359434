/* registry.h - which compute backend runs a model: one table row per backend
 * (registry.c), each with a probe, a memory estimate and create, and the one
 * place that decides --backend auto and its fallback to the CPU. Internal to
 * the engine: local.c opens its backend here.
 *
 * Rules every function follows:
 * - The CPU is always there; a device backend is tried first under
 *   ENGINE_BACKEND_AUTO and anything that stops it (no driver, no device, a
 *   missing or broken module, not enough memory, a failed create) means the
 *   CPU, with the reason in the note. Asked for by name, the same causes are
 *   errors that say what to do instead.
 * - The CPU's estimate is weighed against the host memory this process can
 *   take (hostmem.h) before anything is allocated; not enough is an error
 *   that gives the figures and says to lower --ctx-size.
 * - Nothing heavy is loaded to find out there is no device: the CUDA row asks
 *   the driver (libcuda, opened with dlopen) first and loads its module
 *   (kvchat-cuda.so, with the CUDA runtime and cuBLAS) only when a device
 *   exists. Loaded libraries stay loaded for the life of the process: the
 *   driver and the runtime keep threads and exit handlers in them.
 * - Errors are values: -1 with a message in ERR; nothing exits.
 *
 * Environment (for installs in odd places, and the tests' fakes):
 *   KVCHAT_CUDA_MODULE  the CUDA module's path (else kvchat-cuda.so beside
 *                       the running program, else ../lib/kvchat/ from it)
 *   KVCHAT_CUDA_DRIVER  the driver library (else libcuda.so.1)
 */
#ifndef KVCHAT_REGISTRY_H
#define KVCHAT_REGISTRY_H

#include "backend.h"
#include "engine.h"

struct backend_request {
    enum engine_backend want;
    const struct model *model;  /* borrowed; outlives the backend */
    struct backend_config cfg;
    /* Called right before a backend's create() with its table, so the
     * engine can prepare (prefault the weights of a host_weights backend).
     * May be called twice when a device backend falls back. May be NULL. */
    void (*before_create)(const struct backend_ops *ops, void *user);
    void *user;
    /* Prefix of /proc and /sys for the host memory reading (hostmem.h), so
     * the tests can fake them; NULL = the real ones. */
    const char *mem_root;
};

struct backend_opened {
    const struct backend_ops *ops; /* borrowed: static, or in a loaded module */
    void *state;                   /* owned: ops->destroy */
    char note[256];                /* why auto chose what it chose, or "" */
};

/* Chooses and creates the backend RQ asks for. Returns 0 with OUT filled,
 * or -1 with ERR (a backend asked for by name that cannot run says why and
 * what to use instead). */
int backend_open(const struct backend_request *rq, struct backend_opened *out, char *err,
                 size_t errlen);

/* The CUDA row's host side (cuda_host.c). cuda_host_find asks the driver
 * whether device 0 exists (name and total memory; no context is made);
 * cuda_host_load finds, loads and checks the module and returns its table.
 * Both fill a reason (OUT->reason, ERR) when they fail. */
void cuda_host_find(struct backend_device *out);
const struct backend_ops *cuda_host_load(char *err, size_t errlen);

#endif
