/* device.cu - what the CUDA module knows about the machine: the device probe
 * the engine uses for --backend auto, and the error recorders behind
 * CUDA_CHECK / CUBLAS_CHECK.
 *
 * The probe must work on machines with no GPU and no driver: the runtime then
 * answers cudaErrorNoDevice or cudaErrorInsufficientDriver, which we report as
 * "no device" with the runtime's reason, never as a crash.
 */
#include <stdio.h>
#include <string.h>

#include "cuda_common.h"
#include "cuda_probe.h"

int kv_cuda_check(cudaError_t e, const char *call, const char *file, int line, char *err,
                  size_t cap)
{
    if (e == cudaSuccess)
        return 0;
    /* Clears the sticky "last error" of non-fatal failures so a later launch
     * check does not report this one again. */
    (void)cudaGetLastError();
    if (err && cap && !err[0])
        snprintf(err, cap, "CUDA: %s failed at %s:%d: %s", call, file, line,
                 cudaGetErrorString(e));
    return -1;
}

static const char *cublas_reason(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialised";
    case CUBLAS_STATUS_ALLOC_FAILED: return "out of device memory";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "not supported on this GPU";
    case CUBLAS_STATUS_MAPPING_ERROR: return "mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "unknown status";
    }
}

int kv_cublas_check(cublasStatus_t s, const char *call, const char *file, int line, char *err,
                    size_t cap)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return 0;
    if (err && cap && !err[0])
        snprintf(err, cap, "cuBLAS: %s failed at %s:%d: %s (%d)", call, file, line,
                 cublas_reason(s), (int)s);
    return -1;
}

extern "C" int cuda_probe(char *name, size_t cap, uint64_t *total, uint64_t *free_bytes)
{
    if (total)
        *total = 0;
    if (free_bytes)
        *free_bytes = 0;
    if (name && cap)
        name[0] = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        if (name && cap)
            snprintf(name, cap, "%s",
                     e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found");
        (void)cudaGetLastError();
        return 0;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
        if (name && cap)
            snprintf(name, cap, "%s", cudaGetErrorString(e));
        (void)cudaGetLastError();
        return 0;
    }
    if (name && cap)
        snprintf(name, cap, "%s", prop.name);
    size_t fr = 0, tot = 0;
    e = cudaSetDevice(0);
    if (e == cudaSuccess)
        e = cudaMemGetInfo(&fr, &tot);
    if (e != cudaSuccess) {
        /* A device that cannot make a context is not usable. */
        if (name && cap)
            snprintf(name, cap, "%s: %s", prop.name, cudaGetErrorString(e));
        (void)cudaGetLastError();
        return 0;
    }
    if (total)
        *total = tot;
    if (free_bytes)
        *free_bytes = fr;
    return n;
}
