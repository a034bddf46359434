/* device.cu - what the CUDA module knows about the machine: the runtime's
 * device probe (backend_cuda_ops.probe), and the error recorders behind
 * CUDA_CHECK / CUBLAS_CHECK.
 *
 * The registry asks the driver first (backend/engine/cuda_host.c) and loads
 * this module only when it reports a device; this probe then says whether
 * the runtime inside can use it. It must still work without one (test_cuda
 * calls it directly): the runtime answers cudaErrorNoDevice or
 * cudaErrorInsufficientDriver, reported as a reason, never as a crash.
 */
#include <stdio.h>
#include <string.h>

#include "cuda_common.h"

extern "C" {
#include "backend.h"
}

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

void kv_device_probe(struct backend_device *out)
{
    memset(out, 0, sizeof *out);
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        snprintf(out->reason, sizeof out->reason, "%.190s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found");
        (void)cudaGetLastError();
        return;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
        snprintf(out->reason, sizeof out->reason, "%.190s", cudaGetErrorString(e));
        (void)cudaGetLastError();
        return;
    }
    snprintf(out->name, sizeof out->name, "%.127s", prop.name);
    size_t fr = 0, tot = 0;
    e = cudaSetDevice(0);
    if (e == cudaSuccess)
        e = cudaMemGetInfo(&fr, &tot);
    if (e != cudaSuccess) {
        /* A device that cannot make a context is not usable. */
        snprintf(out->reason, sizeof out->reason, "%.80s: %.110s", prop.name,
                 cudaGetErrorString(e));
        (void)cudaGetLastError();
        return;
    }
    out->total = tot;
    out->free = fr;
    out->usable = true;
}
