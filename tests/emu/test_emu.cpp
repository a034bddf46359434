/* test_emu.cpp - the device emulator's own tests: warp operations and
 * barriers keep GPU semantics, shared memory is per block, and each kind of
 * misuse is reported naming the kernel. The planted bugs are small copies of
 * real kernels (rmsnorm.cu's block reduction, matvec.cu's warp reduction,
 * add.cu's and get_rows.cu's indexing) with one line changed, as a bug would
 * change it.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vector>

extern "C" {
#include <cmocka.h>
}

#include "kvemu.h"

/* Fails unless a report since the last call contains WHAT and KERNEL. */
static void expect_report(const char *kernel, const char *what)
{
    static unsigned long seen;
    unsigned long n = kvemu_report_count();
    if (n == seen)
        fail_msg("no report from %s (expected \"%s\")", kernel, what);
    seen = n;
    const char *r = kvemu_last_report();
    printf("reported: %s\n", r);
    if (!strstr(r, kernel) || !strstr(r, what))
        fail_msg("report \"%s\" does not name %s / \"%s\"", r, kernel, what);
    (void)cudaGetLastError();
}
static void expect_clean(void)
{
    assert_int_equal(cudaGetLastError(), cudaSuccess);
}

template <class T> static T *dalloc(size_t n, const T *init = nullptr)
{
    T *d = nullptr;
    assert_int_equal(cudaMalloc((void **)&d, n * sizeof(T)), cudaSuccess);
    if (init)
        assert_int_equal(cudaMemcpy(d, init, n * sizeof(T), cudaMemcpyHostToDevice),
                         cudaSuccess);
    return d;
}

/* ---- semantics ---- */

static __global__ void k_warp_ops(int *out)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int *o = out + threadIdx.x * 6;
    o[0] = __shfl_sync(0xffffffffu, lane * 10, 3);
    o[1] = __shfl_xor_sync(0xffffffffu, lane, 1);
    o[2] = __shfl_down_sync(0xffffffffu, lane, 4);
    o[3] = __shfl_up_sync(0xffffffffu, lane, 2, 16);
    o[4] = (int)__ballot_sync(0xffffffffu, lane & 1);
    o[5] = __all_sync(0xffffffffu, w == 0) + 2 * __any_sync(0xffffffffu, lane == 5);
}

static void test_warp_ops(void **state)
{
    (void)state;
    int *d = dalloc<int>(64 * 6);
    KV_LAUNCH(k_warp_ops, 1, 64, 0, 0)(d);
    expect_clean();
    std::vector<int> h(64 * 6);
    cudaMemcpy(h.data(), d, h.size() * 4, cudaMemcpyDeviceToHost);
    for (int t = 0; t < 64; t++) {
        int lane = t & 31;
        const int *o = &h[t * 6];
        assert_int_equal(o[0], 30);
        assert_int_equal(o[1], lane ^ 1);
        assert_int_equal(o[2], lane + 4 < 32 ? lane + 4 : lane);
        assert_int_equal(o[3], (lane & 15) >= 2 ? lane - 2 : lane);
        assert_int_equal((unsigned)o[4], 0xaaaaaaaau);
        assert_int_equal(o[5], (t < 32 ? 1 : 0) + 2);
    }
    cudaFree(d);
}

/* Each block sums its own 100 values through shared memory, with a tree
 * that needs every barrier; atomics gather the blocks. */
static __global__ void k_block_sum(const float *x, float *sums, float *total)
{
    KV_SHARED(float, s, [128]);
    s[threadIdx.x] = threadIdx.x < 100 ? x[blockIdx.x * 100 + threadIdx.x] : 0.0f;
    __syncthreads();
    for (int k = 64; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k)
            s[threadIdx.x] += s[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        sums[blockIdx.x] = s[0];
        atomicAdd(total, (float)s[0]);
    }
}

static void test_shared_per_block(void **state)
{
    (void)state;
    std::vector<float> x(300);
    for (int i = 0; i < 300; i++)
        x[i] = (float)(i / 100 + 1);
    float zero = 0.0f;
    float *dx = dalloc(300, x.data()), *ds = dalloc<float>(3), *dt = dalloc(1, &zero);
    KV_LAUNCH(k_block_sum, 3, 128, 0, 0)(dx, ds, dt);
    expect_clean();
    float s[3], t;
    cudaMemcpy(s, ds, sizeof s, cudaMemcpyDeviceToHost);
    cudaMemcpy(&t, dt, 4, cudaMemcpyDeviceToHost);
    assert_true(s[0] == 100.0f && s[1] == 200.0f && s[2] == 300.0f && t == 600.0f);
    cudaFree(dx), cudaFree(ds), cudaFree(dt);
}

/* Dynamic shared memory: the launch's bytes, per block. */
static __global__ void k_dyn(int *out)
{
    KV_DYN_SHARED(int, buf);
    buf[threadIdx.x] = (int)(threadIdx.x + blockIdx.x * 1000);
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}

static void test_dynamic_shared(void **state)
{
    (void)state;
    int *d = dalloc<int>(2 * 40);
    KV_LAUNCH(k_dyn, 2, 40, 40 * sizeof(int), 0)(d);
    expect_clean();
    int h[80];
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 40; t++)
            assert_int_equal(h[b * 40 + t], 39 - t + b * 1000);
    cudaFree(d);
}

static void test_intrinsics(void **state)
{
    (void)state;
    assert_int_equal(__dp4a(0x01020304, 0x01010101, 5), 15);
    assert_int_equal(__dp4a((int)0xff000000u, 0x02000000, 0), -2);
    assert_int_equal(__popc(0xf0f0u), 8);
    assert_int_equal(__ffs(8), 4);
    assert_int_equal(__byte_perm(0x33221100u, 0x77665544u, 0x5140u), 0x55114400u);
    /* prmt.b32: as __byte_perm while bit 3 of every nibble is clear; set,
     * the picked byte's sign bit fills the byte (__byte_perm ignores it). */
    assert_int_equal(kvemu_prmt(0x33221100u, 0x77665544u, 0x5140u), 0x55114400u);
    assert_int_equal(kvemu_prmt(0x00800000u, 0x7f000000u, 0xa7f2u), 0xff7f0080u);
    assert_int_equal(__byte_perm(0x00800000u, 0x7f000000u, 0xa7f2u), 0x807f7f80u);
    /* f16 rounding: nearest even, overflow to inf, subnormals. */
    assert_int_equal(__float2half_rn(1.0f + 1.0f / 2048).x, 0x3c00);
    assert_int_equal(__float2half_rn(1.0f + 3.0f / 2048).x, 0x3c02);
    assert_int_equal(__float2half_rn(65520.0f).x, 0x7c00);
    assert_int_equal(__float2half_rn(65504.0f).x, 0x7bff);
    assert_int_equal(__float2half_rn(5.96046448e-08f).x, 0x0001);
    assert_true(__half2float(__ushort_as_half(0x0001)) == 5.96046448e-08f);
    assert_true(__half2float(__ushort_as_half(0xc000)) == -2.0f);
    assert_int_equal(__float2bfloat16_rn(1.00390625f).x, 0x3f80); /* tie to even */
    assert_true(__bfloat162float(__float2bfloat16_rn(3.0f)) == 3.0f);
}

/* ---- planted bugs ---- */

/* rmsnorm.cu's sum of squares with the barrier between the per-warp
 * partials and warp 0's read of them left out. */
static __global__ void k_rms_nobarrier(const float *x, float *y, int n)
{
    KV_SHARED(float, part, [8]);
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += 256)
        ss += x[i] * x[i];
    for (int o = 16; o > 0; o >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = ss;
    /* __syncthreads(); missing */
    if (threadIdx.x < 32) {
        ss = threadIdx.x < 8 ? part[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1)
            ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (threadIdx.x == 0)
            y[0] = ss;
    }
}

static void test_planted_missing_barrier(void **state)
{
    (void)state;
    std::vector<float> x(300, 1.0f);
    float *dx = dalloc(300, x.data()), *dy = dalloc<float>(1);
    KV_LAUNCH(k_rms_nobarrier, 1, 256, 0, 0)(dx, dy, 300);
    expect_report("k_rms_nobarrier", "no thread of this block wrote");
    cudaFree(dx), cudaFree(dy);
}

/* matvec.cu's warp reduction with half a mask: lanes 16..31 shuffle with a
 * mask that leaves them out, and lane 0 reads lane 16. */
static __global__ void k_mv_halfmask(const float *w, const float *x, float *y, int n)
{
    int lane = threadIdx.x & 31;
    float acc = 0.0f;
    for (int u = lane; u < n; u += 32)
        acc += w[u] * x[u];
    for (int o = 16; o > 0; o >>= 1)
        acc += __shfl_xor_sync(0x0000ffffu, acc, o);
    if (lane == 0)
        y[0] = acc;
}

/* The same reduction after lanes without work returned early: the full
 * mask then names exited lanes. */
static __global__ void k_mv_early_exit(const float *w, const float *x, float *y, int n)
{
    int lane = threadIdx.x & 31;
    if (lane >= n)
        return;
    float acc = 0.0f;
    for (int u = lane; u < n; u += 32)
        acc += w[u] * x[u];
    for (int o = 16; o > 0; o >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0)
        y[0] = acc;
}

static void test_planted_bad_mask(void **state)
{
    (void)state;
    std::vector<float> v(20, 0.5f);
    float *dw = dalloc(20, v.data()), *dx = dalloc(20, v.data()), *dy = dalloc<float>(1);
    KV_LAUNCH(k_mv_halfmask, 1, 32, 0, 0)(dw, dx, dy, 20);
    expect_report("k_mv_halfmask", "mask 0x0000ffff leaves out");
    KV_LAUNCH(k_mv_early_exit, 1, 32, 0, 0)(dw, dx, dy, 20);
    expect_report("k_mv_early_exit", "has exited");
    cudaFree(dw), cudaFree(dx), cudaFree(dy);
}

/* A barrier inside a branch only some threads take, and one after an
 * early return. */
static __global__ void k_branch_barrier(float *y)
{
    if (threadIdx.x < 32)
        __syncthreads();
    y[threadIdx.x] = 1.0f;
}
static __global__ void k_exit_barrier(float *y, int n)
{
    if ((int)threadIdx.x >= n)
        return;
    y[threadIdx.x] = 1.0f;
    __syncthreads();
}
static __global__ void k_two_barriers(float *y)
{
    if (threadIdx.x & 1)
        __syncthreads();
    else
        __syncthreads();
    y[threadIdx.x] = 1.0f;
}

static void test_planted_divergence(void **state)
{
    (void)state;
    float *dy = dalloc<float>(64);
    KV_LAUNCH(k_branch_barrier, 1, 64, 0, 0)(dy);
    expect_report("k_branch_barrier", "barrier divergence");
    KV_LAUNCH(k_exit_barrier, 1, 64, 0, 0)(dy, 40);
    expect_report("k_exit_barrier", "has exited");
    KV_LAUNCH(k_two_barriers, 1, 64, 0, 0)(dy);
    expect_report("k_two_barriers", "barrier divergence");
    cudaFree(dy);
}

/* add.cu's grid-stride loop with <= for <: the last thread writes one
 * element past Y, into the guard zone. */
static __global__ void k_add_offbyone(float *y, const float *a, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i <= n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] += 1.0f;
    (void)a;
}

/* get_rows.cu's lookup with the row index off by one: the last id reads the
 * row past the matrix (a checked __ldg). */
static __global__ void k_rows_offbyone(const float *w, const int32_t *ids, int n, int ncols,
                                       float *out)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n * ncols;
         i += gridDim.x * blockDim.x) {
        int t = i / ncols, c = i % ncols;
        out[i] = __ldg(w + (int64_t)(ids[t] + 1) * ncols + c);
    }
}

static void test_planted_off_by_one(void **state)
{
    (void)state;
    std::vector<float> y(1000, 0.0f);
    float *dy = dalloc(1000, y.data());
    KV_LAUNCH(k_add_offbyone, 4, 256, 0, 0)(dy, dy, (int64_t)1000);
    expect_report("k_add_offbyone", "wrote outside the 4000-byte allocation");
    cudaFree(dy);

    std::vector<float> w(5 * 7, 1.0f);
    int32_t ids[2] = {1, 4};
    float *dw = dalloc(w.size(), w.data()), *dout = dalloc<float>(14);
    int32_t *di = dalloc(2, ids);
    KV_LAUNCH(k_rows_offbyone, 1, 64, 0, 0)(dw, di, 2, 7, dout);
    expect_report("k_rows_offbyone", "outside every device allocation");
    cudaFree(dw), cudaFree(dout), cudaFree(di);
}

/* Shared memory written in one block is not there in the next. */
static __global__ void k_stale_shared(float *y)
{
    KV_SHARED(float, s, [32]);
    if (blockIdx.x == 0)
        s[threadIdx.x] = 1.0f;
    y[threadIdx.x] = s[threadIdx.x];
}

static void test_stale_shared(void **state)
{
    (void)state;
    float *dy = dalloc<float>(32);
    KV_LAUNCH(k_stale_shared, 2, 32, 0, 0)(dy);
    expect_report("k_stale_shared", "block (1,0,0)");
    cudaFree(dy);
}

static void test_bad_free_and_copy(void **state)
{
    (void)state;
    float *d = dalloc<float>(4);
    float h[8] = {0};
    assert_int_equal(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
    expect_report("cudaMemcpy destination", "outside every device allocation");
    assert_int_equal(cudaFree(d + 1), cudaErrorInvalidValue);
    expect_report("cudaFree", "not a pointer");
    assert_int_equal(cudaFree(d), cudaSuccess);
}

/* cuBLAS: a strided-batched bf16 x bf16 -> fp32 product (the prefill
 * attention's) against a double reference of the same bf16 values, with
 * transposes, leading dimensions past the rows, strides past the matrices,
 * alpha and beta = 1 accumulating into C; and the type combinations cuBLAS
 * refuses (f16 x bf16, bf16 x bf16 -> f16) refused here too. */
static void test_gemm_strided_batched_bf16(void **state)
{
    (void)state;
    const int m = 5, n = 3, k = 7, lda = 9, ldb = 8, ldc = 6, batch = 3;
    const long long sa = (long long)lda * m + 2, sb = (long long)ldb * n + 1,
                    sc = (long long)ldc * n + 3;
    /* A is op T: stored k x m (lda rows), B op N: k x n (ldb), C m x n (ldc). */
    std::vector<__nv_bfloat16> a((size_t)sa * batch), b((size_t)sb * batch);
    std::vector<float> c((size_t)sc * batch);
    unsigned seed = 7;
    auto rnd = [&]() {
        seed = seed * 1103515245u + 12345u;
        return (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    };
    for (auto &x : a)
        x = __float2bfloat16_rn(rnd());
    for (auto &x : b)
        x = __float2bfloat16_rn(rnd());
    for (auto &x : c)
        x = rnd();
    __nv_bfloat16 *da = dalloc(a.size(), a.data()), *db = dalloc(b.size(), b.data());
    float *dc = dalloc(c.size(), c.data());
    cublasHandle_t h;
    assert_int_equal(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    const float alpha = 0.5f, beta = 1.0f;
    assert_int_equal(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da,
                                                CUDA_R_16BF, lda, sa, db, CUDA_R_16BF, ldb, sb,
                                                &beta, dc, CUDA_R_32F, ldc, sc, batch,
                                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_SUCCESS);
    std::vector<float> got(c.size());
    assert_int_equal(cudaMemcpy(got.data(), dc, got.size() * 4, cudaMemcpyDeviceToHost),
                     cudaSuccess);
    double worst = 0;
    for (int z = 0; z < batch; z++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double acc = 0;
                for (int p = 0; p < k; p++)
                    acc += (double)__bfloat162float(a[z * sa + (size_t)i * lda + p]) *
                           __bfloat162float(b[z * sb + (size_t)j * ldb + p]);
                size_t ic = (size_t)(z * sc) + (size_t)j * ldc + i;
                double want = alpha * acc + c[ic];
                worst = fmax(worst, fabs(got[ic] - want));
                c[ic] = -1e30f; /* marks the elements C may change */
            }
    printf("gemm strided batched bf16 -> f32: %.2e\n", worst);
    assert_true(worst <= 1e-5);
    /* Everything between the matrices is left alone. */
    std::vector<float> orig(c.size());
    seed = 7;
    for (size_t i = 0; i < a.size() + b.size(); i++)
        (void)rnd();
    for (auto &x : orig)
        x = rnd();
    for (size_t i = 0; i < c.size(); i++)
        if (c[i] != -1e30f)
            assert_true(got[i] == orig[i]);

    assert_int_equal(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da, CUDA_R_16F, lda,
                                  db, CUDA_R_16BF, ldb, &beta, dc, CUDA_R_32F, ldc,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_NOT_SUPPORTED);
    assert_int_equal(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da, CUDA_R_16BF,
                                  lda, db, CUDA_R_16BF, ldb, &beta, dc, CUDA_R_16F, ldc,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_NOT_SUPPORTED);
    assert_int_equal(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da, CUDA_R_16BF,
                                  lda, db, CUDA_R_16BF, ldb, &beta, dc, CUDA_R_32F, ldc,
                                  CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_NOT_SUPPORTED);
    cublasDestroy(h);
    cudaFree(da), cudaFree(db), cudaFree(dc);
    expect_clean();
}

/* ---- graphs ---- */

/* y[i] = y[i] * A + *STEP: A by value, STEP read from device memory. */
static __global__ void k_graph_step(float *y, float a, const int *step, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = y[i] * a + (float)*step;
}

/* A captured graph runs nothing while capturing, replays its kernels and
 * copies in order with the arguments given at capture, reads device memory
 * at replay time (so a step counter written before each launch is seen),
 * counts its kernels, and refuses a synchronise inside the capture. */
static void test_graph_capture_replay(void **state)
{
    (void)state;
    const int n = 37;
    std::vector<float> h(n, 1.0f);
    float *dy = dalloc<float>(n, h.data());
    int *dstep = dalloc<int>(1);
    int *dsrc = dalloc<int>(1);
    cudaStream_t st;
    assert_int_equal(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), cudaSuccess);
    cudaStreamCaptureStatus cs;
    assert_int_equal(cudaStreamIsCapturing(st, &cs), cudaSuccess);
    assert_int_equal(cs, cudaStreamCaptureStatusNone);

    assert_int_equal(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    assert_int_equal(cudaStreamIsCapturing(st, &cs), cudaSuccess);
    assert_int_equal(cs, cudaStreamCaptureStatusActive);
    unsigned long k0 = kvemu_kernel_count();
    assert_int_equal(cudaMemcpyAsync(dstep, dsrc, sizeof(int), cudaMemcpyDeviceToDevice, st),
                     cudaSuccess);
    KV_LAUNCH(k_graph_step, 2, 32, 0, st)(dy, 2.0f, dstep, n);
    KV_LAUNCH(k_graph_step, 2, 32, 0, st)(dy, 1.0f, dstep, n);
    assert_int_equal(kvemu_kernel_count(), k0); /* recorded, not run */
    cudaGraph_t g;
    assert_int_equal(cudaStreamEndCapture(st, &g), cudaSuccess);
    size_t nodes = 0;
    assert_int_equal(cudaGraphGetNodes(g, nullptr, &nodes), cudaSuccess);
    assert_int_equal(nodes, 3);
    cudaGraphExec_t ge;
    assert_int_equal(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
    assert_int_equal(cudaGraphDestroy(g), cudaSuccess); /* the exec keeps its copy */
    assert_int_equal(cudaMemcpy(dy, h.data(), n * sizeof(float), cudaMemcpyHostToDevice),
                     cudaSuccess); /* nothing ran: y is still 1 */

    float want = 1.0f;
    for (int s = 1; s <= 3; s++) {
        assert_int_equal(cudaMemcpyAsync(dsrc, &s, sizeof s, cudaMemcpyHostToDevice, st),
                         cudaSuccess);
        unsigned long launches = kvemu_graph_launch_count();
        assert_int_equal(cudaGraphLaunch(ge, st), cudaSuccess);
        assert_int_equal(kvemu_graph_launch_count(), launches + 1);
        want = (want * 2.0f + (float)s) * 1.0f + (float)s;
    }
    assert_int_equal(kvemu_kernel_count(), k0 + 6);
    assert_int_equal(cudaStreamSynchronize(st), cudaSuccess);
    assert_int_equal(cudaMemcpy(h.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost),
                     cudaSuccess);
    for (int i = 0; i < n; i++)
        assert_true(h[i] == want);
    expect_clean();
    assert_int_equal(cudaGraphExecDestroy(ge), cudaSuccess);

    /* a synchronise while capturing fails and invalidates the capture */
    assert_int_equal(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    KV_LAUNCH(k_graph_step, 2, 32, 0, st)(dy, 2.0f, dstep, n);
    assert_int_equal(cudaStreamSynchronize(st), cudaErrorStreamCaptureUnsupported);
    assert_int_equal(cudaStreamEndCapture(st, &g), cudaErrorStreamCaptureInvalidated);
    assert_null(g);
    assert_int_equal(cudaStreamEndCapture(st, &g), cudaErrorIllegalState);

    /* a kernel that faults inside a replay fails the next synchronise */
    assert_int_equal(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    KV_LAUNCH(k_graph_step, 2, 32, 0, st)(dy, 2.0f, dstep, n + 8); /* 32 bytes into the guard */
    assert_int_equal(cudaStreamEndCapture(st, &g), cudaSuccess);
    assert_int_equal(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
    assert_int_equal(cudaGraphLaunch(ge, st), cudaSuccess);
    assert_int_not_equal(cudaStreamSynchronize(st), cudaSuccess);
    expect_report("k_graph_step", "wrote outside");
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    cudaStreamDestroy(st);
    cudaFree(dy);
    cudaFree(dstep);
    cudaFree(dsrc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warp_ops),
        cmocka_unit_test(test_shared_per_block),
        cmocka_unit_test(test_dynamic_shared),
        cmocka_unit_test(test_intrinsics),
        cmocka_unit_test(test_planted_missing_barrier),
        cmocka_unit_test(test_planted_bad_mask),
        cmocka_unit_test(test_planted_divergence),
        cmocka_unit_test(test_planted_off_by_one),
        cmocka_unit_test(test_stale_shared),
        cmocka_unit_test(test_bad_free_and_copy),
        cmocka_unit_test(test_gemm_strided_batched_bf16),
        cmocka_unit_test(test_graph_capture_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
