/* kvemu.h - the device emulator's whole CUDA surface: what kernels/ sees in
 * place of cuda_runtime.h, cuda_fp16.h, cuda_bf16.h and cublas_v2.h when the
 * .cu files are compiled as host C++ for the tests (tests/emu/README.md).
 *
 * Rules for this module: test-only, never linked into the product. One OS
 * thread at a time uses it (the coordinates and the running launch are
 * plain globals, which fibers see alike); a grid runs block after block on
 * that thread; a block's threads are
 * cooperative fibers (emu.cpp) that switch only at __syncthreads, warp
 * operations and their end, so barriers and shuffles keep GPU semantics.
 * Every misuse the emulator sees (a barrier not every thread reaches, a
 * shuffle naming an exited lane or one outside its mask, a read of shared
 * memory no thread of the block wrote, a device access outside every
 * allocation, a damaged guard zone) is a report: one line on stderr naming
 * the kernel, counted (kvemu_report_count), and the launch's error, which
 * the next cudaGetLastError returns. Nothing aborts.
 *
 * Only what the kernels and the backend call is here; a new kernel that
 * needs more adds it here (and a test in test_emu.cpp).
 */
#ifndef KVCHAT_KVEMU_H
#define KVCHAT_KVEMU_H

#ifndef __cplusplus
#error "kvemu.h is the device emulator for C++ builds of kernels/"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define KVEMU 1

/* ---- qualifiers ---- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
/* A plain __shared__ array is one static per kernel: blocks run one after
 * another on one OS thread, so each block has it to itself (no shadow
 * checks: KV_SHARED adds them). */
#define __shared__ static
#define __constant__ static

/* ---- vector types ---- */
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w)
{
    return {x, y, z, w};
}

static constexpr int warpSize = 32;
/* The thread's coordinates, set by the scheduler before it resumes a fiber. */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

/* ---- the runtime ---- */
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchFailure = 719,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorIllegalState = 401,
};
typedef enum cudaError_t cudaError;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
typedef struct kvemu_stream *cudaStream_t;
typedef struct kvemu_event *cudaEvent_t;
#define cudaStreamDefault 0x0u
#define cudaStreamNonBlocking 0x1u
#define cudaEventDefault 0x0u
#define cudaEventDisableTiming 0x2u
#define cudaHostAllocDefault 0x0u
/* Graphs: a capture records the stream's work as a list (kernels with their
 * arguments by value, copies, memsets); a launch replays it in order. */
typedef struct kvemu_graph *cudaGraph_t;
typedef struct kvemu_graph_exec *cudaGraphExec_t;
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
};

/* The made-up device: Hopper-like limits, so launch-configuration code
 * takes its real branches. */
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    size_t sharedMemPerMultiprocessor;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int multiProcessorCount;
    int maxThreadsPerMultiProcessor;
    int major, minor;
    int l2CacheSize;
    int memoryBusWidth;
};

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDevice(int *dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaMalloc(void **p, size_t n);
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t n)
{
    return cudaMalloc((void **)p, n);
}
cudaError_t cudaFree(void *p);
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned flags);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t st = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st = 0);
cudaError_t cudaStreamCreate(cudaStream_t *st);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *st, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t st);
cudaError_t cudaStreamSynchronize(cudaStream_t st);
cudaError_t cudaStreamWaitEvent(cudaStream_t st, cudaEvent_t ev, unsigned flags = 0);
cudaError_t cudaStreamBeginCapture(cudaStream_t st, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t st, cudaGraph_t *g);
cudaError_t cudaStreamIsCapturing(cudaStream_t st, cudaStreamCaptureStatus *s);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *ge, cudaGraph_t g,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t ge, cudaStream_t st);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t ge);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
/* NODES NULL: *N = the node count (what the backend reports). */
cudaError_t cudaGraphGetNodes(cudaGraph_t g, void **nodes, size_t *n);
cudaError_t cudaEventCreate(cudaEvent_t *ev);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *ev, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t ev);
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t st = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t ev);
cudaError_t cudaEventQuery(cudaEvent_t ev);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);

/* ---- cuBLAS: a reference GEMM, fp32 accumulation ---- */
typedef struct kvemu_blas *cublasHandle_t;
enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cudaDataType_t {
    CUDA_R_32F = 0,
    CUDA_R_64F = 1,
    CUDA_R_16F = 2,
    CUDA_R_8I = 3,
    CUDA_R_32I = 10,
    CUDA_R_16BF = 14,
};
typedef enum cudaDataType_t cudaDataType;
enum cublasComputeType_t {
    CUBLAS_COMPUTE_16F = 64,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
    CUBLAS_COMPUTE_32I = 72,
};
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1, CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99 };
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t st);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *a, cudaDataType at,
                            int lda, const void *b, cudaDataType bt, int ldb, const void *beta,
                            void *c, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *a, cudaDataType at,
                                          int lda, long long sa, const void *b, cudaDataType bt,
                                          int ldb, long long sb, const void *beta, void *c,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t algo);
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *a, int lda,
                                         long long sa, const float *b, int ldb, long long sb,
                                         const float *beta, float *c, int ldc, long long sc,
                                         int batch);

/* ---- half and bfloat16: storage types with exact round-to-nearest-even
 * conversions (the device's __float2half_rn). Arithmetic goes through float,
 * as the kernels write it. ---- */
struct __half { unsigned short x; };
struct __half2 { __half x, y; };
typedef __half half;
typedef __half2 half2;
struct __nv_bfloat16 { unsigned short x; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
typedef __nv_bfloat16 nv_bfloat16;

static inline unsigned kvemu_f2u(float f)
{
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float kvemu_u2f(unsigned u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline float __half2float(__half h)
{
    unsigned s = (unsigned)(h.x & 0x8000u) << 16, e = (h.x >> 10) & 31u, m = h.x & 1023u;
    if (e == 31)
        return kvemu_u2f(s | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0)
            return kvemu_u2f(s);
        float f = (float)m * (1.0f / 16777216.0f); /* subnormal: m * 2^-24 */
        return s ? -f : f;
    }
    return kvemu_u2f(s | ((e + 112) << 23) | (m << 13));
}
static inline __half __float2half_rn(float f)
{
    unsigned u = kvemu_f2u(f), s = (u >> 16) & 0x8000u;
    unsigned a = u & 0x7fffffffu;
    __half h;
    if (a > 0x7f800000u) { /* NaN stays NaN */
        h.x = (unsigned short)(s | 0x7e00u);
        return h;
    }
    if (a >= 0x477ff000u) { /* rounds to >= 65520: inf */
        h.x = (unsigned short)(s | 0x7c00u);
        return h;
    }
    if (a < 0x38800000u) { /* below 2^-14: subnormal half, RNE on m * 2^-24 */
        float v = kvemu_u2f(a) * 16777216.0f;
        h.x = (unsigned short)(s | (unsigned)nearbyintf(v));
        return h;
    }
    unsigned e = (a >> 23) - 112, m = a & 0x7fffffu;
    unsigned r = (e << 10) | (m >> 13), rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u)))
        r++;
    h.x = (unsigned short)(s | r);
    return h;
}
static inline __half __float2half(float f) { return __float2half_rn(f); }
static inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
static inline unsigned short __half_as_ushort(__half h) { return h.x; }
static inline __half2 __floats2half2_rn(float a, float b)
{
    return __half2{__float2half_rn(a), __float2half_rn(b)};
}
static inline __half2 __float22half2_rn(float2 f) { return __floats2half2_rn(f.x, f.y); }
static inline __half2 __float2half2_rn(float f) { return __floats2half2_rn(f, f); }
static inline float2 __half22float2(__half2 h)
{
    return make_float2(__half2float(h.x), __half2float(h.y));
}
static inline float __low2float(__half2 h) { return __half2float(h.x); }
static inline float __high2float(__half2 h) { return __half2float(h.y); }
static inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
static inline __half __hadd(__half a, __half b)
{
    return __float2half_rn(__half2float(a) + __half2float(b));
}
static inline __half __hmul(__half a, __half b)
{
    return __float2half_rn(__half2float(a) * __half2float(b));
}
static inline __half __hfma(__half a, __half b, __half c)
{
    return __float2half_rn(fmaf(__half2float(a), __half2float(b), __half2float(c)));
}
static inline __half2 __hadd2(__half2 a, __half2 b)
{
    return __half2{__hadd(a.x, b.x), __hadd(a.y, b.y)};
}
static inline __half2 __hmul2(__half2 a, __half2 b)
{
    return __half2{__hmul(a.x, b.x), __hmul(a.y, b.y)};
}
static inline __half2 __hfma2(__half2 a, __half2 b, __half2 c)
{
    return __half2{__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)};
}
static inline float __bfloat162float(__nv_bfloat16 b) { return kvemu_u2f((unsigned)b.x << 16); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    unsigned u = kvemu_f2u(f);
    __nv_bfloat16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        b.x = (unsigned short)((u >> 16) | 0x40u);
        return b;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    b.x = (unsigned short)(u >> 16);
    return b;
}
static inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }

/* ---- math intrinsics (fast-math ones computed exactly; test tolerances
 * cover the device's approximation) ---- */
/* glibc declares these names itself, so they are macros here. */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __powf(a, b) powf((a), (b))
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __uint_as_float(unsigned u) { return kvemu_u2f(u); }
static inline unsigned __float_as_uint(float f) { return kvemu_f2u(f); }
static inline float __int_as_float(int i) { return kvemu_u2f((unsigned)i); }
static inline int __float_as_int(float f) { return (int)kvemu_f2u(f); }
#define KVEMU_MINMAX(T)                                                                     \
    static inline T min(T a, T b) { return a < b ? a : b; }                                 \
    static inline T max(T a, T b) { return a > b ? a : b; }
KVEMU_MINMAX(int)
KVEMU_MINMAX(unsigned)
KVEMU_MINMAX(long)
KVEMU_MINMAX(unsigned long)
KVEMU_MINMAX(long long)
KVEMU_MINMAX(unsigned long long)
KVEMU_MINMAX(float)
KVEMU_MINMAX(double)
#undef KVEMU_MINMAX
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned __brev(unsigned x)
{
    unsigned r = 0;
    for (int i = 0; i < 32; i++)
        r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s)
{
    uint64_t v = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++)
        r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
    return r;
}
/* PTX prmt.b32 in its generic mode, which kernels reach through inline
 * asm (wformat.cuh kv_prmt) where __byte_perm's masking of the selector
 * costs an instruction: bits 0-2 of selector nibble n pick the byte of
 * (y:x), bit 3 set replicates that byte's sign bit instead. */
static inline unsigned kvemu_prmt(unsigned x, unsigned y, unsigned s)
{
    uint64_t v = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++) {
        unsigned n = (s >> (4 * i)) & 15u, b = (unsigned)(v >> (8 * (n & 7u))) & 0xffu;
        if (n & 8u)
            b = b & 0x80u ? 0xffu : 0u;
        r |= b << (8 * i);
    }
    return r;
}
static inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s)
{
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)((v << (s & 31)) >> 32);
}
static inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s)
{
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)(v >> (s & 31));
}
/* Dot product of four signed (unsigned) bytes, plus C. */
static inline int __dp4a(int a, int b, int c)
{
    for (int i = 0; i < 4; i++)
        c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
}
static inline unsigned __dp4a(unsigned a, unsigned b, unsigned c)
{
    for (int i = 0; i < 4; i++)
        c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
    return c;
}
static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* ---- atomics: real ones, so a later multi-threaded scheduler keeps them ---- */
template <class T> static inline T atomicAdd(T *p, T v)
{
    if constexpr (std::is_floating_point<T>::value) {
        T old, want;
        __atomic_load(p, &old, __ATOMIC_RELAXED);
        do
            want = old + v;
        while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_RELAXED));
        return old;
    } else {
        return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
    }
}
template <class T> static inline T atomicSub(T *p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
template <class T> static inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
template <class T> static inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
template <class T> static inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }
template <class T> static inline T atomicExch(T *p, T v)
{
    T old;
    __atomic_exchange(p, &v, &old, __ATOMIC_SEQ_CST);
    return old;
}
template <class T> static inline T atomicCAS(T *p, T cmp, T v)
{
    __atomic_compare_exchange(p, &cmp, &v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
template <class T> static inline T atomicMax(T *p, T v)
{
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange(p, &old, &v, false, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_RELAXED)) {
    }
    return old;
}
template <class T> static inline T atomicMin(T *p, T v)
{
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    while (old > v && !__atomic_compare_exchange(p, &old, &v, false, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_RELAXED)) {
    }
    return old;
}

/* ---- the emulator's own interface ---- */
extern "C" {
/* Misuses reported since the process started, and the last one's text. */
unsigned long kvemu_report_count(void);
const char *kvemu_last_report(void);
/* Kernels run since the process started (a replayed graph counts each of
 * its kernels), and graph launches: the launches-per-token figure. */
unsigned long kvemu_kernel_count(void);
unsigned long kvemu_graph_launch_count(void);
}

namespace kvemu {

/* Reports a misuse by the running kernel (or by API call WHAT outside one). */
void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Checks that [P, P+N) lies inside one device (or pinned) allocation;
 * false after reporting WHAT. */
bool check_ptr(const void *p, size_t n, const char *what);

/* The fibers' points of contact with the scheduler. */
void syncthreads(const char *file, int line);
enum warp_op { WOP_SYNC, WOP_SHFL, WOP_SHFL_XOR, WOP_SHFL_UP, WOP_SHFL_DOWN, WOP_BALLOT,
               WOP_ANY, WOP_ALL };
/* Deposits VAL (BYTES of it) for a warp operation of MASK; returns what this
 * lane reads once every lane of MASK has arrived. */
uint64_t warp(warp_op op, unsigned mask, uint64_t val, int arg, int width, const char *file,
              int line);
/* This block's dynamic shared memory (the launch's shmem bytes). */
void *dyn_shared(void);
/* Serial of the running block: shared arrays clear their shadow when it
 * changes. */
extern uint64_t block_serial;
const char *kernel_name(void);

/* Runs BODY(CTX) as every thread of GRID x BLOCK; returns the launch status. */
cudaError_t run(const char *name, dim3 grid, dim3 block, size_t shmem, cudaStream_t st,
                void (*body)(void *), void *ctx);

/* True while ST records a graph; RECORD adds a kernel to it. */
bool capturing(cudaStream_t st);
void record(cudaStream_t st, const char *name, dim3 grid, dim3 block, size_t shmem,
            std::function<void()> body);

template <class K> struct launcher {
    const char *name;
    K *kernel;
    dim3 grid, block;
    size_t shmem;
    cudaStream_t st;
    template <class... A> void operator()(A &&...a) const
    {
        auto args = std::make_tuple(std::forward<A>(a)...);
        K *k = kernel;
        if (capturing(st)) {
            /* the arguments by value, as a graph's kernel node holds them;
             * what they point to is read when the graph is replayed */
            record(st, name, grid, block, shmem, [k, args]() { std::apply(k, args); });
            return;
        }
        auto fn = [&]() { std::apply(k, args); };
        run(name, grid, block, shmem, st,
            [](void *c) { (*static_cast<decltype(fn) *>(c))(); }, &fn);
    }
};
template <class K>
static inline launcher<K> launch(const char *name, K *k, dim3 grid, dim3 block, size_t shmem,
                                 cudaStream_t st)
{
    return launcher<K>{name, k, grid, block, shmem, st};
}

/* Static shared memory with a "written" bit per byte, cleared when a new
 * block first touches it: a read of a byte no thread of this block wrote,
 * or an index past an extent, is reported with the array's name. */
template <class T> struct shared_ref {
    T *p;
    uint8_t *written;
    const char *name;
    operator T() const
    {
        for (size_t i = 0; i < sizeof(T); i++)
            if (!written[i]) {
                report("read of shared %s (byte %zu of an element) that no thread of this "
                       "block wrote",
                       name, i);
                break;
            }
        return *p;
    }
    const shared_ref &operator=(const T &v) const
    {
        *p = v;
        memset(written, 1, sizeof(T));
        return *this;
    }
    const shared_ref &operator=(const shared_ref &o) const { return *this = (T)o; }
#define KVEMU_SH_OP(op)                                                                     \
    template <class U> const shared_ref &operator op##=(const U &v) const                   \
    {                                                                                       \
        T t = *this;                                                                        \
        t op## = v;                                                                         \
        return *this = t;                                                                   \
    }
    KVEMU_SH_OP(+) KVEMU_SH_OP(-) KVEMU_SH_OP(*) KVEMU_SH_OP(/) KVEMU_SH_OP(|)
    KVEMU_SH_OP(&) KVEMU_SH_OP(^)
#undef KVEMU_SH_OP
};
template <class A> struct shared_idx {
    using E = typename std::remove_extent<A>::type;
    static constexpr size_t N = std::extent<A>::value;
    E *p;
    uint8_t *written;
    const char *name;
    auto operator[](size_t i) const
    {
        if (i >= N) {
            report("shared %s: index %zu past its extent %zu", name, i, N);
            i = 0;
        }
        uint8_t *w = written + i * sizeof(E);
        if constexpr (std::is_array<E>::value)
            return shared_idx<E>{p[i], w, name};
        else
            return shared_ref<E>{&p[i], w, name};
    }
};
template <class A> struct shared {
    static_assert(std::is_array<A>::value, "KV_SHARED takes array dimensions");
    const char *name;
    uint64_t serial;
    alignas(16) A data;
    uint8_t written[sizeof(A)];
    explicit shared(const char *n) : name(n), serial(0) {}
    auto operator[](size_t i)
    {
        if (serial != block_serial) {
            serial = block_serial;
            memset(written, 0, sizeof written);
            memset(&data, 0xff, sizeof data); /* stale values read as NaN */
        }
        return shared_idx<A>{data, written, name}[i];
    }
};

} /* namespace kvemu */

template <class T> static inline T __ldg(const T *p)
{
    if (!kvemu::check_ptr(p, sizeof(T), "__ldg"))
        return T{};
    return *p;
}

#define __syncthreads() kvemu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) kvemu_syncwarp(__FILE__, __LINE__ __VA_OPT__(, ) __VA_ARGS__)
static inline void kvemu_syncwarp(const char *file, int line, unsigned mask = 0xffffffffu)
{
    kvemu::warp(kvemu::WOP_SYNC, mask, 0, 0, 32, file, line);
}
template <class T> static inline uint64_t kvemu_bits(T v)
{
    static_assert(sizeof(T) <= 8, "warp operations exchange values of up to 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <class T> static inline T kvemu_from_bits(uint64_t u)
{
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}
#define KVEMU_SHFL(fn, op)                                                                  \
    template <class T> static inline T fn##_at(const char *file, int line, unsigned mask, T v, \
                                               int a, int width = 32)                       \
    {                                                                                       \
        return kvemu_from_bits<T>(kvemu::warp(op, mask, kvemu_bits(v), a, width, file, line)); \
    }
KVEMU_SHFL(__shfl_sync, kvemu::WOP_SHFL)
KVEMU_SHFL(__shfl_xor_sync, kvemu::WOP_SHFL_XOR)
KVEMU_SHFL(__shfl_up_sync, kvemu::WOP_SHFL_UP)
KVEMU_SHFL(__shfl_down_sync, kvemu::WOP_SHFL_DOWN)
#undef KVEMU_SHFL
#define __shfl_sync(...) __shfl_sync_at(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) __shfl_xor_sync_at(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) __shfl_up_sync_at(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) __shfl_down_sync_at(__FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, pred)                                                           \
    ((unsigned)kvemu::warp(kvemu::WOP_BALLOT, (mask), (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, pred)                                                              \
    ((int)kvemu::warp(kvemu::WOP_ANY, (mask), (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __all_sync(mask, pred)                                                              \
    ((int)kvemu::warp(kvemu::WOP_ALL, (mask), (pred) ? 1 : 0, 0, 32, __FILE__, __LINE__))

/* The two macros kernels/cuda_common.h defines for nvcc. */
#define KV_LAUNCH(kernel, grid, block, shmem, stream)                                       \
    kvemu::launch(#kernel, kernel, (grid), (block), (shmem), (stream))
#define KV_SHARED(type, name, dims) static kvemu::shared<type dims> name(#name)
#define KV_DYN_SHARED(type, name) type *name = (type *)kvemu::dyn_shared()

#endif
