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
#include "engine_tools.h"
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

/* ---- the device's ceilings (backend_cuda_ops.measure_roofs) ----
 *
 * The two numbers every timing here is read against (METHOD: measure them on
 * the device, not from the datasheet): a large device-to-device copy,
 * counting bytes read plus bytes written, and a dense bf16 GEMM through
 * cuBLAS on random operands (zeros run faster than real data). Each is timed
 * with events on the backend's stream after one warm-up; the median pass is
 * the figure, so one slow pass (a clock ramping up) does not move it. */

#define ROOF_COPY_DEFAULT (1ull << 30)
#define ROOF_COPY_MIN (64ull << 20)
#define ROOF_GEMM_DEFAULT 8192
#define ROOF_GEMM_MIN 1024
#define ROOF_PASSES_MAX 64

/* Fills N 32-bit words with a hash of their index, which as bf16 pairs are
 * finite values of magnitude 2^-7 to 2 (random sign and mantissa, one of
 * eight exponents): products of them neither overflow nor flush to zero. */
static __global__ void k_fill_random(uint32_t *p, int64_t n, uint32_t seed)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 0x9E3779B1u ^ seed;
        x ^= x >> 16, x *= 0x7FEB352Du, x ^= x >> 15, x *= 0x846CA68Bu, x ^= x >> 16;
        /* each half: sign and mantissa random, exponent 120..127 */
        p[i] = (x & 0x807F807Fu) | 0x3C003C00u | ((x >> 4) & 0x03800380u);
    }
}

static int fill_random(void *p, size_t bytes, uint32_t seed, cudaStream_t st, char *err,
                       size_t cap)
{
    int64_t n = (int64_t)(bytes / 4);
    KV_LAUNCH(k_fill_random, kv_grid(n, 256), 256, 0, st)((uint32_t *)p, n, seed);
    return CUDA_CHECK(cudaGetLastError(), err, cap);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median, fastest and slowest of N pass times (ms) into the figure WORK /
 * time (WORK per ms gives per-second units once scaled by the caller).
 * Fails when the device's timer gave 0: a figure from it would be infinite. */
static int passes_figure(float *ms, int n, double work, double *med, double *lo, double *hi,
                         char *err, size_t cap)
{
    qsort(ms, (size_t)n, sizeof *ms, cmp_float);
    if (!(ms[0] > 0.0f)) {
        snprintf(err, cap, "the device's event timer read %.3f ms for a pass; no figure", ms[0]);
        return -1;
    }
    float m = n % 2 ? ms[n / 2] : 0.5f * (ms[n / 2 - 1] + ms[n / 2]);
    *med = work / m;
    *hi = work / ms[0];
    *lo = work / ms[n - 1];
    return 0;
}

/* Times REPS calls of RUN between events A and B on ST, one per pass. */
template <class F>
static int time_passes(F run, int reps, float *ms, cudaEvent_t a, cudaEvent_t b, cudaStream_t st,
                       char *err, size_t cap)
{
    if (run() != 0 || CUDA_CHECK(cudaStreamSynchronize(st), err, cap))
        return -1; /* the warm-up */
    for (int i = 0; i < reps; i++) {
        if (CUDA_CHECK(cudaEventRecord(a, st), err, cap) || run() != 0 ||
            CUDA_CHECK(cudaEventRecord(b, st), err, cap) ||
            CUDA_CHECK(cudaEventSynchronize(b), err, cap) ||
            CUDA_CHECK(cudaEventElapsedTime(&ms[i], a, b), err, cap))
            return -1;
    }
    return 0;
}

static int clamp_passes(int asked, int dflt)
{
    int n = asked > 0 ? asked : dflt;
    return n > ROOF_PASSES_MAX ? ROOF_PASSES_MAX : n;
}

int kv_device_roofs(cudaStream_t st, cublasHandle_t blas, const struct engine_roofs_params *p,
                    struct engine_roofs *out, char *err, size_t cap)
{
    memset(out, 0, sizeof *out);
    uint64_t copy = p->copy_bytes ? p->copy_bytes : ROOF_COPY_DEFAULT;
    copy = copy / 4 * 4;
    int64_t n = p->gemm_n == 0 ? ROOF_GEMM_DEFAULT : p->gemm_n < 0 ? 0 : p->gemm_n;
    int copy_passes = clamp_passes(p->copy_passes, 9);
    int gemm_passes = clamp_passes(p->gemm_passes, 10);
    if (copy < 4) {
        snprintf(err, cap, "a copy of %llu bytes is too small to time",
                 (unsigned long long)copy);
        return -1;
    }

    /* Halve both sizes until they fit beside the model, the context's and
     * cuBLAS's own allocations left room (the backend's reserve). */
    size_t fr = 0, tot = 0;
    if (CUDA_CHECK(cudaMemGetInfo(&fr, &tot), err, cap))
        return -1;
    uint64_t room = fr > (192ull << 20) ? fr - (192ull << 20) : 0;
    for (;;) {
        uint64_t need = 2 * copy + (uint64_t)(n * n) * (2 + 2 + 4);
        if (need <= room)
            break;
        bool smaller = false;
        if (copy / 2 >= ROOF_COPY_MIN && copy / 2 < copy)
            copy = copy / 2 / 4 * 4, smaller = true;
        if (n / 2 >= ROOF_GEMM_MIN)
            n /= 2, smaller = true;
        if (!smaller) {
            snprintf(err, cap,
                     "the ceilings probe needs %.0f MiB of device memory and %.0f MiB are free; "
                     "run it with a smaller model or context",
                     (double)need / 1048576.0, (double)room / 1048576.0);
            return -1;
        }
    }

    void *src = NULL, *dst = NULL, *ga = NULL, *gb = NULL, *gc = NULL;
    cudaEvent_t ea = NULL, eb = NULL;
    float ms[ROOF_PASSES_MAX];
    int rc = -1;
    if (CUDA_CHECK(cudaEventCreate(&ea), err, cap) || CUDA_CHECK(cudaEventCreate(&eb), err, cap))
        goto out;

    /* the copy: source random, so no compression or zero shortcut applies */
    if (CUDA_CHECK(cudaMalloc(&src, copy), err, cap) ||
        CUDA_CHECK(cudaMalloc(&dst, copy), err, cap) ||
        fill_random(src, copy, 0x5EEDu, st, err, cap))
        goto out;
    if (time_passes(
            [&]() {
                return CUDA_CHECK(
                    cudaMemcpyAsync(dst, src, copy, cudaMemcpyDeviceToDevice, st), err, cap);
            },
            copy_passes, ms, ea, eb, st, err, cap) ||
        passes_figure(ms, copy_passes, 2.0 * (double)copy / 1e6, &out->copy_gb_s,
                      &out->copy_min_gb_s, &out->copy_max_gb_s, err, cap))
        goto out;
    out->copy_passes = copy_passes;
    out->copy_bytes = copy;
    /* the copy buffers go before the GEMM's come */
    (void)cudaFree(src), (void)cudaFree(dst);
    src = dst = NULL;

    if (n > 0) {
        size_t nn = (size_t)(n * n);
        if (CUDA_CHECK(cudaMalloc(&ga, nn * 2), err, cap) ||
            CUDA_CHECK(cudaMalloc(&gb, nn * 2), err, cap) ||
            CUDA_CHECK(cudaMalloc(&gc, nn * 4), err, cap) ||
            fill_random(ga, nn * 2, 0xA11Au, st, err, cap) ||
            fill_random(gb, nn * 2, 0xB22Bu, st, err, cap) ||
            CUBLAS_CHECK(cublasSetStream(blas, st), err, cap))
            goto out;
        const float alpha = 1.0f, beta = 0.0f;
        int in = (int)n;
        if (time_passes(
                [&]() {
                    return CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, in, in, in,
                                                     &alpha, ga, CUDA_R_16BF, in, gb,
                                                     CUDA_R_16BF, in, &beta, gc, CUDA_R_32F, in,
                                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                                        err, cap);
                },
                gemm_passes, ms, ea, eb, st, err, cap) ||
            passes_figure(ms, gemm_passes, 2.0 * (double)n * (double)n * (double)n / 1e9,
                          &out->gemm_tflops, &out->gemm_min_tflops, &out->gemm_max_tflops, err,
                          cap))
            goto out;
        out->gemm_passes = gemm_passes;
        out->gemm_n = (int32_t)n;
    }
    rc = 0;
out:
    (void)cudaFree(src), (void)cudaFree(dst), (void)cudaFree(ga), (void)cudaFree(gb),
        (void)cudaFree(gc);
    if (ea)
        (void)cudaEventDestroy(ea);
    if (eb)
        (void)cudaEventDestroy(eb);
    if (rc != 0)
        memset(out, 0, sizeof *out), (void)cudaGetLastError();
    return rc;
}
