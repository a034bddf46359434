/* emu.cpp - the device emulator behind kvemu.h: the block scheduler and its
 * fibers, device memory with guard zones, streams and events, the device
 * properties, and the reference GEMM behind the cuBLAS calls.
 *
 * Scheduling: a launch runs its blocks one after another on the calling OS
 * thread. A block's threads are fibers on stacks reused from block to block;
 * the scheduler resumes every runnable fiber in thread order, and a fiber
 * runs until it waits at __syncthreads, at a warp operation, or ends. A warp
 * operation completes once every lane its mask names waits at one with the
 * same mask; __syncthreads once every thread of the block waits at the same
 * one. When nothing can run and the block is not done, the threads disagree
 * (divergence): that is reported with the kernel's name and the block is
 * abandoned. The switch is a few instructions of assembly on x86-64 (a
 * ucontext switch costs a system call, and a long-context test switches
 * millions of times), ucontext elsewhere.
 *
 * Memory: an allocation is host memory with 64-byte guard zones on both
 * sides, filled with a pattern that is checked after every launch and on
 * free; new allocations are filled with 0xff bytes (NaN as f32 and f16), so
 * a result read from memory nobody wrote shows. Every operation on a stream
 * runs when it is enqueued, which keeps stream order.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <functional>
#include <map>
#include <vector>

#include "kvemu.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define KVEMU_ASAN 1
#define KVEMU_STACK (512u << 10) /* ASan's redzones make frames several times larger */
#else
#define KVEMU_STACK (64u << 10)
#endif
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace kvemu {
uint64_t block_serial;
}

/* ---- reports ---- */

static unsigned long g_reports;
static char g_last[512];
static const char *t_kernel;      /* running kernel, or NULL */
static cudaError_t t_launch_err;  /* this launch's first error */
static cudaError_t g_last_err = cudaSuccess;   /* cudaGetLastError's */

extern "C" unsigned long kvemu_report_count(void) { return g_reports; }
extern "C" const char *kvemu_last_report(void) { return g_last; }

static void set_err(cudaError_t e)
{
    if (g_last_err == cudaSuccess)
        g_last_err = e;
}

void kvemu::report(const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_reports++;
    if (t_kernel)
        snprintf(g_last, sizeof g_last, "%s: block (%u,%u,%u) thread (%u,%u,%u): %s", t_kernel,
                 blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, msg);
    else
        snprintf(g_last, sizeof g_last, "%s", msg);
    /* Only the first few reach stderr: one bug in a loop would flood it. */
    if (g_reports <= 20)
        fprintf(stderr, "kvemu: %s\n", g_last);
    if (t_kernel) {
        if (t_launch_err == cudaSuccess)
            t_launch_err = cudaErrorLaunchFailure;
    } else {
        set_err(cudaErrorIllegalAddress);
    }
}

const char *kvemu::kernel_name(void) { return t_kernel ? t_kernel : "(host)"; }

/* ---- device memory ---- */

#define GUARD 64
#define GUARD_BYTE 0xa5

struct alloc {
    uint8_t *raw; /* malloc'd: guard, user bytes, guard */
    size_t size;
    bool pinned;
};
/* Live allocations by user address. Only the emulating thread touches it. */
static std::map<uintptr_t, alloc> g_allocs;
static size_t g_device_used;
static const size_t DEVICE_BYTES = (size_t)80 << 30;

static bool guards_ok(uintptr_t base, const alloc &a)
{
    const uint8_t *u = (const uint8_t *)base;
    for (size_t i = 0; i < GUARD; i++)
        if (u[-1 - (ptrdiff_t)i] != GUARD_BYTE || u[a.size + i] != GUARD_BYTE)
            return false;
    return true;
}

/* Reports every allocation whose guard zones were written; restores them. */
static void check_guards(const char *when)
{
    for (auto &kv : g_allocs) {
        if (guards_ok(kv.first, kv.second))
            continue;
        const uint8_t *u = (const uint8_t *)kv.first;
        ptrdiff_t first = 0;
        for (ptrdiff_t i = -GUARD; i < (ptrdiff_t)(kv.second.size + GUARD); i++)
            if ((i < 0 || i >= (ptrdiff_t)kv.second.size) && u[i] != GUARD_BYTE) {
                first = i;
                break;
            }
        kvemu::report("%s wrote outside the %zu-byte allocation at %p (offset %td)", when,
                      kv.second.size, u, first);
        memset(kv.second.raw, GUARD_BYTE, GUARD);
        memset((uint8_t *)kv.first + kv.second.size, GUARD_BYTE, GUARD);
    }
}

static const alloc *find_alloc(const void *p, size_t n, uintptr_t *base)
{
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin())
        return nullptr;
    --it;
    if (a + n > it->first + it->second.size)
        return nullptr;
    *base = it->first;
    return &it->second;
}

bool kvemu::check_ptr(const void *p, size_t n, const char *what)
{
    uintptr_t base;
    if (find_alloc(p, n, &base))
        return true;
    report("%s of %zu bytes at %p is outside every device allocation", what, n, p);
    return false;
}

static cudaError_t do_alloc(void **p, size_t n, bool pinned)
{
    if (!p)
        return cudaErrorInvalidValue;
    *p = nullptr;
    if (!pinned && n > DEVICE_BYTES - g_device_used) {
        set_err(cudaErrorMemoryAllocation);
        return cudaErrorMemoryAllocation;
    }
    uint8_t *raw = (uint8_t *)malloc(n + 2 * GUARD);
    if (!raw) {
        set_err(cudaErrorMemoryAllocation);
        return cudaErrorMemoryAllocation;
    }
    memset(raw, GUARD_BYTE, GUARD);
    memset(raw + GUARD, 0xff, n);
    memset(raw + GUARD + n, GUARD_BYTE, GUARD);
    g_allocs[(uintptr_t)(raw + GUARD)] = alloc{raw, n, pinned};
    if (!pinned)
        g_device_used += n;
    *p = raw + GUARD;
    return cudaSuccess;
}

static cudaError_t do_free(void *p, bool pinned)
{
    if (!p)
        return cudaSuccess;
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end() || it->second.pinned != pinned) {
        kvemu::report("%s(%p): not a pointer %s returned", pinned ? "cudaFreeHost" : "cudaFree",
                      p, pinned ? "cudaHostAlloc" : "cudaMalloc");
        return cudaErrorInvalidValue;
    }
    if (!guards_ok(it->first, it->second))
        check_guards("a kernel or copy");
    if (!pinned)
        g_device_used -= it->second.size;
    free(it->second.raw);
    g_allocs.erase(it);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n) { return do_alloc(p, n, false); }
cudaError_t cudaFree(void *p) { return do_free(p, false); }
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned flags)
{
    (void)flags;
    return do_alloc(p, n, true);
}
cudaError_t cudaMallocHost(void **p, size_t n) { return do_alloc(p, n, true); }
cudaError_t cudaFreeHost(void *p) { return do_free(p, true); }

/* A copy's device side must lie in an allocation; host memory is anything. */
static bool copy_side_ok(const void *p, size_t n, bool device, const char *what)
{
    uintptr_t base;
    if (!device || n == 0 || find_alloc(p, n, &base))
        return true;
    kvemu::report("%s: %zu bytes at %p are outside every device allocation", what, n, p);
    return false;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    bool dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault) { /* unified addressing: whatever it points to */
        uintptr_t b;
        dd = find_alloc(dst, 1, &b) != nullptr;
        sd = find_alloc(src, 1, &b) != nullptr;
    }
    if (!copy_side_ok(dst, n, dd, "cudaMemcpy destination") ||
        !copy_side_ok(src, n, sd, "cudaMemcpy source"))
        return cudaErrorInvalidValue;
    if (n)
        memmove(dst, src, n);
    return cudaSuccess;
}
static void record_copy(cudaStream_t st, void *dst, const void *src, size_t n,
                        cudaMemcpyKind kind, int value, bool set);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t st)
{
    if (kvemu::capturing(st)) {
        record_copy(st, dst, src, n, kind, 0, false);
        return cudaSuccess;
    }
    return cudaMemcpy(dst, src, n, kind);
}
cudaError_t cudaMemset(void *p, int v, size_t n)
{
    if (!copy_side_ok(p, n, true, "cudaMemset"))
        return cudaErrorInvalidValue;
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st)
{
    if (kvemu::capturing(st)) {
        record_copy(st, p, nullptr, n, cudaMemcpyDeviceToDevice, v, true);
        return cudaSuccess;
    }
    return cudaMemset(p, v, n);
}

/* ---- device, errors, streams, events ---- */

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaGetDevice(int *dev)
{
    *dev = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev)
{
    if (dev != 0)
        return cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "kvemu (emulated device)");
    p->totalGlobalMem = DEVICE_BYTES;
    p->sharedMemPerBlock = 48 << 10;
    p->sharedMemPerBlockOptin = 227 << 10;
    p->sharedMemPerMultiprocessor = 228 << 10;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->multiProcessorCount = 132;
    p->maxThreadsPerMultiProcessor = 2048;
    p->major = 9;
    p->minor = 0;
    p->l2CacheSize = 50 << 20;
    p->memoryBusWidth = 5120;
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot)
{
    *tot = DEVICE_BYTES;
    *fr = DEVICE_BYTES - g_device_used;
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void)
{
    check_guards("a kernel or copy");
    return g_last_err;
}
cudaError_t cudaGetLastError(void)
{
    cudaError_t e = g_last_err;
    g_last_err = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last_err; }

struct err_row {
    cudaError_t e;
    const char *name, *text;
};
static const err_row k_errors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress",
     "an illegal memory access was encountered (kvemu report)"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure",
     "unspecified launch failure (kvemu report)"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "the operation is not permitted now"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated",
     "operation failed due to a previous error during capture"},
};
static const err_row *err_of(cudaError_t e)
{
    for (const err_row &r : k_errors)
        if (r.e == e)
            return &r;
    return nullptr;
}
const char *cudaGetErrorString(cudaError_t e)
{
    const err_row *r = err_of(e);
    return r ? r->text : "unknown error";
}
const char *cudaGetErrorName(cudaError_t e)
{
    const err_row *r = err_of(e);
    return r ? r->name : "cudaErrorUnknown";
}

/* One step of a graph: a kernel (its arguments captured by value in BODY),
 * or a copy or memset whose pointers are read when the graph replays. */
struct graph_node {
    enum { KERNEL, COPY, SET } kind;
    const char *name;
    dim3 grid, block;
    size_t shmem;
    std::function<void()> body;
    void *dst;
    const void *src;
    size_t n;
    cudaMemcpyKind copy_kind;
    int value;
};
struct kvemu_graph {
    std::vector<graph_node> nodes;
};
struct kvemu_graph_exec {
    std::vector<graph_node> nodes; /* a copy: the graph may be destroyed */
};
struct kvemu_stream {
    unsigned flags;
    kvemu_graph *capture;  /* owned while capturing, else NULL */
    bool capture_failed;   /* an unsupported call was made while capturing */
};
/* Work runs at enqueue time, so the host clock read when an event is
 * recorded is when everything queued before it finished: elapsed times are
 * real (CPU) durations, which the ceilings probe needs to give a figure. */
struct kvemu_event {
    unsigned flags;
    double t_ms; /* host monotonic time of the last record; < 0 = never */
};
static double host_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
cudaError_t cudaStreamCreate(cudaStream_t *st) { return cudaStreamCreateWithFlags(st, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *st, unsigned flags)
{
    *st = new kvemu_stream{flags, nullptr, false};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t st)
{
    if (st)
        delete st->capture;
    delete st;
    return cudaSuccess;
}
/* A call that the runtime refuses on a capturing stream: it fails and
 * invalidates the capture, so EndCapture fails too. */
static bool refuse_in_capture(cudaStream_t st, const char *what)
{
    if (!st || !st->capture)
        return false;
    st->capture_failed = true;
    fprintf(stderr, "kvemu: %s on a stream that is capturing a graph\n", what);
    return true;
}
cudaError_t cudaStreamSynchronize(cudaStream_t st)
{
    if (refuse_in_capture(st, "cudaStreamSynchronize"))
        return cudaErrorStreamCaptureUnsupported;
    return cudaDeviceSynchronize();
}

/* ---- graphs ---- */

bool kvemu::capturing(cudaStream_t st) { return st && st->capture; }
void kvemu::record(cudaStream_t st, const char *name, dim3 grid, dim3 block, size_t shmem,
                   std::function<void()> body)
{
    graph_node g{};
    g.kind = graph_node::KERNEL;
    g.name = name;
    g.grid = grid;
    g.block = block;
    g.shmem = shmem;
    g.body = std::move(body);
    st->capture->nodes.push_back(std::move(g));
}
cudaError_t cudaStreamBeginCapture(cudaStream_t st, cudaStreamCaptureMode mode)
{
    (void)mode;
    /* the legacy default stream cannot be captured */
    if (!st || st->capture)
        return cudaErrorIllegalState;
    st->capture = new kvemu_graph;
    st->capture_failed = false;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t st, cudaGraph_t *g)
{
    if (!st || !st->capture)
        return cudaErrorIllegalState;
    kvemu_graph *c = st->capture;
    st->capture = nullptr;
    if (st->capture_failed) {
        delete c;
        *g = nullptr;
        return cudaErrorStreamCaptureInvalidated;
    }
    *g = c;
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t st, cudaStreamCaptureStatus *s)
{
    *s = !st || !st->capture         ? cudaStreamCaptureStatusNone
         : st->capture_failed        ? cudaStreamCaptureStatusInvalidated
                                     : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *ge, cudaGraph_t g, unsigned long long flags)
{
    (void)flags;
    if (!g)
        return cudaErrorInvalidValue;
    *ge = new kvemu_graph_exec{g->nodes};
    return cudaSuccess;
}
static unsigned long g_kernels, g_graph_launches;
extern "C" unsigned long kvemu_kernel_count(void) { return g_kernels; }
extern "C" unsigned long kvemu_graph_launch_count(void) { return g_graph_launches; }
cudaError_t cudaGraphLaunch(cudaGraphExec_t ge, cudaStream_t st)
{
    if (!ge)
        return cudaErrorInvalidValue;
    if (refuse_in_capture(st, "cudaGraphLaunch"))
        return cudaErrorStreamCaptureUnsupported;
    g_graph_launches++;
    /* Replayed in capture order, each node as its own call would have run:
     * a failing kernel fails the launch (seen by the next sync) and stops
     * the rest, as a faulting graph does. */
    for (graph_node &n : ge->nodes) {
        cudaError_t e = cudaSuccess;
        switch (n.kind) {
        case graph_node::KERNEL:
            e = kvemu::run(n.name, n.grid, n.block, n.shmem, st,
                           [](void *c) { (*static_cast<std::function<void()> *>(c))(); },
                           &n.body);
            break;
        case graph_node::COPY:
            e = cudaMemcpy(n.dst, n.src, n.n, n.copy_kind);
            break;
        case graph_node::SET:
            e = cudaMemset(n.dst, n.value, n.n);
            break;
        }
        if (e != cudaSuccess) {
            set_err(e);
            return cudaSuccess; /* asynchronous: reported by the next sync */
        }
    }
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t ge)
{
    delete ge;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, void **nodes, size_t *n)
{
    if (!g || !n || nodes)
        return cudaErrorInvalidValue; /* only the count is emulated */
    *n = g->nodes.size();
    return cudaSuccess;
}
static void record_copy(cudaStream_t st, void *dst, const void *src, size_t n,
                        cudaMemcpyKind kind, int value, bool set)
{
    graph_node g{};
    g.kind = set ? graph_node::SET : graph_node::COPY;
    g.name = set ? "cudaMemsetAsync" : "cudaMemcpyAsync";
    g.dst = dst;
    g.src = src;
    g.n = n;
    g.copy_kind = kind;
    g.value = value;
    st->capture->nodes.push_back(std::move(g));
}
cudaError_t cudaStreamWaitEvent(cudaStream_t st, cudaEvent_t ev, unsigned flags)
{
    (void)st, (void)ev, (void)flags;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *ev) { return cudaEventCreateWithFlags(ev, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *ev, unsigned flags)
{
    *ev = new kvemu_event{flags, -1.0};
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t ev)
{
    delete ev;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t st)
{
    (void)st;
    ev->t_ms = host_ms();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t ev)
{
    (void)ev;
    return g_last_err;
}
cudaError_t cudaEventQuery(cudaEvent_t ev)
{
    (void)ev;
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    /* as the runtime: both recorded, both with timing */
    if ((a->flags | b->flags) & cudaEventDisableTiming)
        return cudaErrorInvalidResourceHandle;
    if (a->t_ms < 0 || b->t_ms < 0)
        return cudaErrorInvalidResourceHandle;
    *ms = (float)(b->t_ms - a->t_ms);
    return cudaSuccess;
}

/* ---- fibers ---- */

#if defined(__x86_64__)
/* kvemu_switch(SAVE, TO): pushes the callee-saved registers, stores the
 * stack pointer in *SAVE, loads TO and pops the other fiber's registers. */
extern "C" void kvemu_switch(void **save, void *to);
asm(".text\n"
    ".globl kvemu_switch\n"
    ".type kvemu_switch,@function\n"
    "kvemu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size kvemu_switch,.-kvemu_switch\n"
    ".section .note.GNU-stack,\"\",@progbits\n"
    ".text\n");
#endif

enum fstate { F_RUN, F_BARRIER, F_WARP, F_DONE };

struct fiber {
    uint8_t *stack;
#if defined(__x86_64__)
    void *sp;
#else
    ucontext_t uc;
#endif
    fstate state;
    uint3 tid;
    const char *file; /* where it waits */
    int line;
    kvemu::warp_op op;
    unsigned mask;
    int arg, width;
    uint64_t val, result;
#ifdef KVEMU_ASAN
    void *fake;
#endif
};

struct block_state {
    std::vector<fiber> f;
    unsigned n;
    void (*body)(void *);
    void *ctx;
    fiber *cur;
#if defined(__x86_64__)
    void *sched_sp;
#else
    ucontext_t sched_uc;
#endif
#ifdef KVEMU_ASAN
    const void *sched_bottom;
    size_t sched_size;
    void *sched_fake;
#endif
    std::vector<uint8_t> dyn;
    bool failed; /* divergence: the block is abandoned */
};
static block_state *t_blk;

static void to_scheduler(block_state *b, fiber *f)
{
#ifdef KVEMU_ASAN
    __sanitizer_start_switch_fiber(f->state == F_DONE ? nullptr : &f->fake, b->sched_bottom,
                                   b->sched_size);
#endif
#if defined(__x86_64__)
    kvemu_switch(&f->sp, b->sched_sp);
#else
    swapcontext(&f->uc, &b->sched_uc);
#endif
#ifdef KVEMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake, &b->sched_bottom, &b->sched_size);
#endif
}

static void fiber_main(void)
{
    block_state *b = t_blk;
    fiber *f = b->cur;
#ifdef KVEMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &b->sched_bottom, &b->sched_size);
#endif
    b->body(b->ctx);
    f->state = F_DONE;
    to_scheduler(b, f);
    abort(); /* a finished fiber is never resumed */
}

static void fiber_init(block_state *b, fiber *f)
{
#ifdef KVEMU_ASAN
    __asan_unpoison_memory_region(f->stack, KVEMU_STACK);
    f->fake = nullptr;
#endif
#if defined(__x86_64__)
    void **top = (void **)(f->stack + KVEMU_STACK);
    void **sp = top - 8;
    for (int i = 0; i < 6; i++)
        sp[i] = nullptr;            /* r15 .. rbp */
    sp[6] = (void *)fiber_main;     /* returned into */
    sp[7] = nullptr;                /* fiber_main's own return address: never used */
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = KVEMU_STACK;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, fiber_main, 0);
#endif
    (void)b;
    f->state = F_RUN;
}

static void resume(block_state *b, fiber *f)
{
    b->cur = f;
    threadIdx = f->tid;
#ifdef KVEMU_ASAN
    __sanitizer_start_switch_fiber(&b->sched_fake, f->stack, KVEMU_STACK);
#endif
#if defined(__x86_64__)
    kvemu_switch(&b->sched_sp, f->sp);
#else
    swapcontext(&b->sched_uc, &f->uc);
#endif
#ifdef KVEMU_ASAN
    __sanitizer_finish_switch_fiber(b->sched_fake, nullptr, nullptr);
#endif
}

void kvemu::syncthreads(const char *file, int line)
{
    block_state *b = t_blk;
    if (!b) {
        report("__syncthreads at %s:%d outside a kernel", file, line);
        return;
    }
    fiber *f = b->cur;
    f->state = F_BARRIER;
    f->file = file;
    f->line = line;
    to_scheduler(b, f);
    threadIdx = f->tid;
}

uint64_t kvemu::warp(warp_op op, unsigned mask, uint64_t val, int arg, int width,
                     const char *file, int line)
{
    block_state *b = t_blk;
    if (!b) {
        report("warp operation at %s:%d outside a kernel", file, line);
        return val;
    }
    fiber *f = b->cur;
    f->state = F_WARP;
    f->op = op;
    f->mask = mask;
    f->val = val;
    f->arg = arg;
    f->width = width;
    f->file = file;
    f->line = line;
    to_scheduler(b, f);
    threadIdx = f->tid;
    return f->result;
}

void *kvemu::dyn_shared(void) { return t_blk ? t_blk->dyn.data() : nullptr; }

static const char *op_name(kvemu::warp_op op)
{
    /* In enum order (kvemu.h). */
    static const char *const names[] = {"__syncwarp",     "__shfl_sync",      "__shfl_xor_sync",
                                        "__shfl_up_sync", "__shfl_down_sync", "__ballot_sync",
                                        "__any_sync",     "__all_sync"};
    return names[op];
}

/* Reports a misuse at fiber F's wait (its thread coordinates in the text). */
static void report_at(fiber *f, const char *what)
{
    uint3 save = threadIdx;
    threadIdx = f->tid;
    kvemu::report("%s (%s at %s:%d)", what, op_name(f->op), f->file, f->line);
    threadIdx = save;
}

/* Completes the warp operation of warp W when every lane of its mask waits
 * at one; returns true if lanes became runnable. False with b->failed set
 * on a misuse. */
static bool try_warp(block_state *b, unsigned w)
{
    fiber *lanes = &b->f[(size_t)w * 32];
    unsigned nl = b->n - w * 32 < 32 ? b->n - w * 32 : 32;
    for (unsigned l = 0; l < nl; l++) {
        fiber *f = &lanes[l];
        if (f->state != F_WARP)
            continue;
        char msg[200];
        unsigned m = f->mask;
        if (!(m & (1u << l))) {
            snprintf(msg, sizeof msg, "lane %u calls with mask 0x%08x, which does not name it", l,
                     m);
            report_at(f, msg);
            b->failed = true;
            return false;
        }
        bool ready = true;
        for (unsigned k = 0; k < 32; k++) {
            if (!(m & (1u << k)))
                continue;
            if (k >= nl || lanes[k].state == F_DONE) {
                snprintf(msg, sizeof msg, "mask 0x%08x names lane %u, which %s", m, k,
                         k >= nl ? "does not exist" : "has exited");
                report_at(f, msg);
                b->failed = true;
                return false;
            }
            if (lanes[k].state != F_WARP) {
                ready = false;
                continue;
            }
            if (lanes[k].mask != m || lanes[k].op != f->op) {
                snprintf(msg, sizeof msg, "lane %u waits at %s with mask 0x%08x at %s:%d instead",
                         k, op_name(lanes[k].op), lanes[k].mask, lanes[k].file, lanes[k].line);
                report_at(f, msg);
                b->failed = true;
                return false;
            }
        }
        if (!ready)
            continue;
        /* Every lane of M is here: exchange. */
        unsigned ballot = 0;
        for (unsigned k = 0; k < 32; k++)
            if ((m & (1u << k)) && lanes[k].val)
                ballot |= 1u << k;
        for (unsigned k = 0; k < 32; k++) {
            if (!(m & (1u << k)))
                continue;
            fiber *g = &lanes[k];
            int width = g->width, base = (int)k & ~(width - 1), src = (int)k;
            switch (g->op) {
            case kvemu::WOP_SHFL: src = base + (g->arg & (width - 1)); break;
            case kvemu::WOP_SHFL_XOR: src = (int)k ^ g->arg; break;
            case kvemu::WOP_SHFL_UP: src = (int)k - g->arg; break;
            case kvemu::WOP_SHFL_DOWN: src = (int)k + g->arg; break;
            default: break;
            }
            /* Out of the lane's segment: it keeps its own value. */
            if (src < base || src >= base + width)
                src = (int)k;
            if (g->op <= kvemu::WOP_SYNC) {
                g->result = 0;
            } else if (g->op <= kvemu::WOP_SHFL_DOWN) {
                if (!(m & (1u << src))) {
                    snprintf(msg, sizeof msg, "lane %u reads lane %d, which mask 0x%08x leaves out",
                             k, src, m);
                    report_at(g, msg);
                    b->failed = true;
                    return false;
                }
                g->result = lanes[src].val;
            } else if (g->op == kvemu::WOP_BALLOT) {
                g->result = ballot;
            } else if (g->op == kvemu::WOP_ANY) {
                g->result = ballot != 0;
            } else {
                g->result = ballot == m;
            }
        }
        for (unsigned k = 0; k < 32; k++)
            if (m & (1u << k))
                lanes[k].state = F_RUN;
        return true;
    }
    return false;
}

/* Nothing can run: releases a barrier every thread waits at, or reports
 * why the block cannot go on. */
static bool try_barrier(block_state *b)
{
    fiber *first = nullptr, *done = nullptr, *other = nullptr, *warp = nullptr;
    for (unsigned i = 0; i < b->n; i++) {
        fiber *f = &b->f[i];
        if (f->state == F_DONE) {
            done = done ? done : f;
        } else if (f->state == F_WARP) {
            warp = warp ? warp : f;
        } else if (f->state == F_BARRIER) {
            if (!first)
                first = f;
            else if (!other && (f->line != first->line || strcmp(f->file, first->file)))
                other = f;
        }
    }
    char msg[300];
    uint3 save = threadIdx;
    if (first && !done && !other && !warp) {
        for (unsigned i = 0; i < b->n; i++)
            b->f[i].state = F_RUN;
        return true;
    }
    if (warp) {
        threadIdx = warp->tid;
        snprintf(msg, sizeof msg, "%s at %s:%d waits for lanes that never arrive%s",
                 op_name(warp->op), warp->file, warp->line,
                 first ? " (they wait at __syncthreads)" : "");
    } else if (other) {
        threadIdx = first->tid;
        snprintf(msg, sizeof msg,
                 "barrier divergence: threads wait at __syncthreads at %s:%d and at %s:%d "
                 "(thread %u)",
                 first->file, first->line, other->file, other->line, other->tid.x);
    } else {
        threadIdx = first->tid;
        snprintf(msg, sizeof msg,
                 "barrier divergence: __syncthreads at %s:%d is not reached by every thread "
                 "(thread %u has exited)",
                 first->file, first->line, done->tid.x);
    }
    kvemu::report("%s", msg);
    threadIdx = save;
    b->failed = true;
    return false;
}

/* Fiber stacks, kept from launch to launch (1024 threads at most). */
static std::vector<uint8_t *> g_stacks;

static bool stacks_for(unsigned n)
{
    while (g_stacks.size() < n) {
        void *s = mmap(nullptr, KVEMU_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (s == MAP_FAILED)
            return false;
        g_stacks.push_back((uint8_t *)s);
    }
    return true;
}

cudaError_t kvemu::run(const char *name, dim3 grid, dim3 block, size_t shmem, cudaStream_t st,
                       void (*body)(void *), void *ctx)
{
    (void)st;
    unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || !nthreads || nthreads > 1024 || block.z > 64 ||
        grid.y > 65535 || grid.z > 65535 || shmem > (227u << 10)) {
        fprintf(stderr, "kvemu: %s: invalid launch configuration grid (%u,%u,%u) block "
                "(%u,%u,%u) shmem %zu\n", name, grid.x, grid.y, grid.z, block.x, block.y, block.z,
                shmem);
        set_err(cudaErrorInvalidConfiguration);
        return cudaErrorInvalidConfiguration;
    }
    if (t_blk) {
        report("%s launched from inside kernel %s", name, t_kernel);
        return cudaErrorLaunchFailure;
    }
    unsigned n = (unsigned)nthreads;
    if (!stacks_for(n)) {
        set_err(cudaErrorMemoryAllocation);
        return cudaErrorMemoryAllocation;
    }
    g_kernels++;
    block_state b;
    b.f.resize(n);
    b.n = n;
    b.body = body;
    b.ctx = ctx;
    b.dyn.assign(shmem, 0xff);
    b.failed = false;
    for (unsigned i = 0; i < n; i++) {
        b.f[i].stack = g_stacks[i];
        b.f[i].tid = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
    }
    t_blk = &b;
    t_kernel = name;
    t_launch_err = cudaSuccess;
    gridDim = grid;
    blockDim = block;
    const unsigned nwarps = (n + 31) / 32;
    for (unsigned bz = 0; bz < grid.z && !b.failed; bz++)
        for (unsigned by = 0; by < grid.y && !b.failed; by++)
            for (unsigned bx = 0; bx < grid.x && !b.failed; bx++) {
                blockIdx = uint3{bx, by, bz};
                kvemu::block_serial++;
                if (shmem)
                    memset(b.dyn.data(), 0xff, shmem);
                for (unsigned i = 0; i < n; i++)
                    fiber_init(&b, &b.f[i]);
                for (;;) {
                    bool ran = false;
                    for (unsigned i = 0; i < n; i++)
                        if (b.f[i].state == F_RUN) {
                            resume(&b, &b.f[i]);
                            ran = true;
                        }
                    bool woke = false;
                    for (unsigned w = 0; w < nwarps && !b.failed; w++)
                        while (try_warp(&b, w))
                            woke = true;
                    if (b.failed)
                        break;
                    if (woke || ran)
                        continue;
                    bool all_done = true;
                    for (unsigned i = 0; i < n; i++)
                        all_done &= b.f[i].state == F_DONE;
                    if (all_done || !try_barrier(&b))
                        break;
                }
            }
    t_blk = nullptr;
    check_guards(name);
    cudaError_t e = t_launch_err;
    if (b.failed && e == cudaSuccess)
        e = cudaErrorLaunchFailure;
    t_kernel = nullptr;
    if (e != cudaSuccess)
        set_err(e);
    return e;
}

/* ---- cuBLAS ---- */

struct kvemu_blas {
    cudaStream_t st;
};
cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new kvemu_blas{nullptr};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t st)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    h->st = st;
    return CUBLAS_STATUS_SUCCESS;
}

static size_t type_bytes(cudaDataType t)
{
    switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16F: return 2;
    case CUDA_R_16BF: return 2;
    default: return 0;
    }
}
static float load_el(const void *p, cudaDataType t, size_t i)
{
    if (t == CUDA_R_32F)
        return ((const float *)p)[i];
    if (t == CUDA_R_16F)
        return __half2float(((const __half *)p)[i]);
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}
static void store_el(void *p, cudaDataType t, size_t i, float v)
{
    if (t == CUDA_R_32F)
        ((float *)p)[i] = v;
    else if (t == CUDA_R_16F)
        ((__half *)p)[i] = __float2half_rn(v);
    else
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
}

/* Bytes a column-major matrix of ROWS x COLS with leading dimension LD
 * spans (the last column holds only ROWS elements). */
static size_t span(int rows, int cols, int ld, size_t el)
{
    return rows && cols ? ((size_t)(cols - 1) * ld + rows) * el : 0;
}

/* C = alpha op(A) op(B) + beta C, column-major, fp32 accumulation. */
static cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           float alpha, const void *a, cudaDataType at, int lda, const void *b,
                           cudaDataType bt, int ldb, float beta, void *c, cudaDataType ct,
                           int ldc)
{
    if (m < 0 || n < 0 || k < 0 || !type_bytes(at) || !type_bytes(bt) || !type_bytes(ct) ||
        ta == CUBLAS_OP_C || tb == CUBLAS_OP_C)
        return CUBLAS_STATUS_INVALID_VALUE;
    int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    if (lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    t_kernel = "cublasGemmEx";
    bool ok = (!k || !m || kvemu::check_ptr(a, span(ar, ac, lda, type_bytes(at)), "operand A")) &&
              (!k || !n || kvemu::check_ptr(b, span(br, bc, ldb, type_bytes(bt)), "operand B")) &&
              (!m || !n || kvemu::check_ptr(c, span(m, n, ldc, type_bytes(ct)), "operand C"));
    t_kernel = nullptr;
    if (!ok) {
        set_err(cudaErrorIllegalAddress);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            for (int p = 0; p < k; p++) {
                size_t ia = ta == CUBLAS_OP_N ? (size_t)p * lda + i : (size_t)i * lda + p;
                size_t ib = tb == CUBLAS_OP_N ? (size_t)j * ldb + p : (size_t)p * ldb + j;
                acc += load_el(a, at, ia) * load_el(b, bt, ib);
            }
            size_t ic = (size_t)j * ldc + i;
            /* beta 0 ignores C, as cuBLAS does (C may hold NaN). */
            float v = alpha * acc + (beta != 0.0f ? beta * load_el(c, ct, ic) : 0.0f);
            store_el(c, ct, ic, v);
        }
    return CUBLAS_STATUS_SUCCESS;
}

static bool compute_ok(cublasComputeType_t c)
{
    return c == CUBLAS_COMPUTE_32F || c == CUBLAS_COMPUTE_32F_FAST_16F ||
           c == CUBLAS_COMPUTE_32F_FAST_16BF || c == CUBLAS_COMPUTE_32F_FAST_TF32;
}

/* The real-valued type combinations cuBLAS's GemmEx table lists for these
 * compute types: A and B of one type (no f16 x bf16 product); with 16-bit
 * operands C is that type or f32, with f32 operands f32; the FAST_* modes
 * take f32 only. Anything else is CUBLAS_STATUS_NOT_SUPPORTED there, so it
 * is here, or a launcher could pass on the emulator and fail on a device. */
static bool types_ok(cublasComputeType_t c, cudaDataType at, cudaDataType bt, cudaDataType ct)
{
    if (at != bt)
        return false;
    if (c != CUBLAS_COMPUTE_32F || at == CUDA_R_32F)
        return at == CUDA_R_32F && ct == CUDA_R_32F;
    return ct == at || ct == CUDA_R_32F;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *a, cudaDataType at,
                            int lda, const void *b, cudaDataType bt, int ldb, const void *beta,
                            void *c, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo)
{
    (void)algo;
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!compute_ok(compute) || !types_ok(compute, at, bt, ct))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    /* The reference GEMM runs at call time and is not recorded: a graph
     * that needs one must be captured by a build with the real cuBLAS. */
    if (refuse_in_capture(h->st, "cublasGemmEx"))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return gemm(ta, tb, m, n, k, *(const float *)alpha, a, at, lda, b, bt, ldb,
                *(const float *)beta, c, ct, ldc);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *a, cudaDataType at,
                                          int lda, long long sa, const void *b, cudaDataType bt,
                                          int ldb, long long sb, const void *beta, void *c,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
    if (batch < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = cublasGemmEx(
            h, ta, tb, m, n, k, alpha, (const uint8_t *)a + sa * i * (long long)type_bytes(at), at,
            lda, (const uint8_t *)b + sb * i * (long long)type_bytes(bt), bt, ldb, beta,
            (uint8_t *)c + sc * i * (long long)type_bytes(ct), ct, ldc, compute, algo);
        if (s != CUBLAS_STATUS_SUCCESS)
            return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc)
{
    return cublasGemmEx(h, ta, tb, m, n, k, alpha, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb, beta,
                        c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *a, int lda,
                                         long long sa, const float *b, int ldb, long long sb,
                                         const float *beta, float *c, int ldc, long long sc,
                                         int batch)
{
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, a, CUDA_R_32F, lda, sa, b,
                                      CUDA_R_32F, ldb, sb, beta, c, CUDA_R_32F, ldc, sc, batch,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
