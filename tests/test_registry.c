/* test_registry.c - how the backend registry (backend/engine/registry.h)
 * chooses: under --backend auto every way a CUDA device can fail to be used
 * falls back to the CPU with a note naming the cause, and under --backend
 * cuda the same causes are errors that say what to do instead.
 *
 * The machine's own state is checked as it is (on a machine without a
 * driver, auto must say so). The paths past "there is a device" are driven
 * with fakes: fake_cuda_driver.so as libcuda (one "Fake GPU") and
 * fake_cuda_module.so as the module, through KVCHAT_CUDA_DRIVER and
 * KVCHAT_CUDA_MODULE, so they run without a GPU.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h"
#include "gguf.h"
#include "model.h"
#include "registry.h"
#include "tiny_model.h"

static void *image;

static struct model *tiny(void)
{
    struct tiny_spec s = {.arch = "llama", .wtype = GGML_TYPE_Q8_0, .etype = GGML_TYPE_Q8_0,
                          .n_embd = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 16,
                          .n_rot = 16, .n_ff = 96, .n_vocab = 128, .n_layer = 2,
                          .head_dim_key = true, .n_rot_key = true};
    struct gguf_writer *w = tiny_writer(&s, 1);
    size_t size = 0;
    free(image);
    image = gguf_writer_to_memory(w, &size);
    assert_non_null(image);
    gguf_writer_free(w);
    char err[512];
    struct gguf *g = gguf_open_memory(image, size, "tiny", err, sizeof err);
    if (!g)
        fail_msg("tiny: %s", err);
    struct model *m = model_from_gguf(g, err, sizeof err);
    if (!m)
        fail_msg("tiny: %s", err);
    return m;
}

/* The tables before_create saw, in order. */
struct seen {
    const struct backend_ops *ops[4];
    int n;
};

static void record(const struct backend_ops *ops, void *user)
{
    struct seen *s = user;
    if (s->n < 4)
        s->ops[s->n++] = ops;
}

/* Opens WANT for a tiny model; returns backend_open's status, with the note
 * in NOTE and the error in ERR. A backend that opened is destroyed again. */
static int open_as(enum engine_backend want, char *note, size_t notecap, char *err,
                   size_t errlen, struct seen *seen, const char **name)
{
    struct model *m = tiny();
    struct backend_request rq = {.want = want, .model = m, .cfg = {.n_ctx = 64, .n_threads = 1},
                                 .before_create = record, .user = seen};
    struct backend_opened bo;
    err[0] = 0;
    int rc = backend_open(&rq, &bo, err, errlen);
    snprintf(note, notecap, "%s", rc == 0 ? bo.note : "");
    if (name)
        *name = rc == 0 ? bo.ops->name : NULL;
    if (rc == 0)
        bo.ops->destroy(bo.state);
    model_free(m);
    printf("%s: rc %d, note \"%s\", err \"%s\"\n", engine_backend_name(want), rc, note, err);
    return rc;
}

/* Auto falls back with a note holding WHAT; cuda fails with WHAT and
 * "--backend cpu". */
static void expect_fallback(const char *what)
{
    char note[256], err[512];
    struct seen seen = {0};
    const char *name;
    assert_int_equal(open_as(ENGINE_BACKEND_AUTO, note, sizeof note, err, sizeof err, &seen,
                             &name),
                     0);
    assert_string_equal(name, "cpu");
    assert_non_null(strstr(note, what));
    assert_non_null(strstr(note, "running on the CPU"));
    assert_int_equal(open_as(ENGINE_BACKEND_CUDA, note, sizeof note, err, sizeof err, &seen,
                             NULL),
                     -1);
    assert_non_null(strstr(err, "--backend cuda"));
    assert_non_null(strstr(err, what));
    assert_non_null(strstr(err, "--backend cpu"));
}

static void clear_env(void)
{
    unsetenv("KVCHAT_CUDA_DRIVER");
    unsetenv("KVCHAT_CUDA_MODULE");
    unsetenv("FAKE_CUDA_FREE_MIB");
    unsetenv("FAKE_CUDA_ABI");
}

static void test_cpu_asked(void **state)
{
    (void)state;
    clear_env();
    char note[256], err[512];
    struct seen seen = {0};
    const char *name;
    assert_int_equal(open_as(ENGINE_BACKEND_CPU, note, sizeof note, err, sizeof err, &seen, &name),
                     0);
    assert_string_equal(name, "cpu");
    assert_string_equal(note, "");
    assert_int_equal(seen.n, 1);
    assert_true(seen.ops[0] == &backend_cpu_ops && seen.ops[0]->host_weights);
}

/* The CPU's estimate is what its create allocates for the cache and the
 * weights (the figure cpu_memory reports). */
static void test_cpu_estimate(void **state)
{
    (void)state;
    struct model *m = tiny();
    struct backend_config cfg = {.n_ctx = 64, .n_threads = 1};
    struct backend_estimate est;
    char err[256];
    assert_int_equal(backend_cpu_ops.estimate(m, &cfg, &est, err, sizeof err), 0);
    void *b = backend_cpu_ops.create(m, &cfg, err, sizeof err);
    assert_non_null(b);
    struct engine_memory mem;
    backend_cpu_ops.memory(b, &mem);
    assert_true(est.kv_cache == mem.kv_cache);
    assert_true(est.weights == mem.weights);
    assert_true(est.total == est.weights + est.kv_cache + est.scratch + est.reserve);
    backend_cpu_ops.destroy(b);
    struct backend_device dev;
    backend_cpu_ops.probe(&dev);
    assert_true(dev.usable && dev.name[0]);
    model_free(m);
}

#ifdef KVCHAT_HAVE_CUDA
/* This machine as it is: with no driver, auto says so. */
static void test_this_machine(void **state)
{
    (void)state;
    clear_env();
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h) {
        dlclose(h);
        printf("SKIPPED: this machine has a CUDA driver\n");
        skip();
    }
    expect_fallback("no CUDA driver");
}

static void test_no_driver(void **state)
{
    (void)state;
    clear_env();
    setenv("KVCHAT_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
    expect_fallback("no CUDA driver");
}

static void test_module_missing(void **state)
{
    (void)state;
    clear_env();
    setenv("KVCHAT_CUDA_DRIVER", FAKE_DRIVER, 1);
    setenv("KVCHAT_CUDA_MODULE", "/nonexistent/kvchat-cuda.so", 1);
    expect_fallback("cannot load the CUDA module");
    expect_fallback("/nonexistent/kvchat-cuda.so");
}

static void test_module_not_a_library(void **state)
{
    (void)state;
    clear_env();
    char path[4200];
    snprintf(path, sizeof path, "%s/broken-kvchat-cuda.so", KVCHAT_TEST_TMP);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", KVCHAT_TEST_TMP);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not a shared object\n", f);
    fclose(f);
    setenv("KVCHAT_CUDA_DRIVER", FAKE_DRIVER, 1);
    setenv("KVCHAT_CUDA_MODULE", path, 1);
    expect_fallback("cannot load the CUDA module");
}

static void test_module_without_entry(void **state)
{
    (void)state;
    clear_env();
    setenv("KVCHAT_CUDA_DRIVER", FAKE_DRIVER, 1);
    setenv("KVCHAT_CUDA_MODULE", FAKE_DRIVER, 1); /* a library, not a module */
    expect_fallback("has no entry point");
}

static void test_module_other_abi(void **state)
{
    (void)state;
    clear_env();
    setenv("KVCHAT_CUDA_DRIVER", FAKE_DRIVER, 1);
    setenv("KVCHAT_CUDA_MODULE", FAKE_MODULE, 1);
    setenv("FAKE_CUDA_ABI", "999", 1);
    expect_fallback("another version of kvchat");
}

static void test_not_enough_memory(void **state)
{
    (void)state;
    clear_env();
    setenv("KVCHAT_CUDA_DRIVER", FAKE_DRIVER, 1);
    setenv("KVCHAT_CUDA_MODULE", FAKE_MODULE, 1);
    setenv("FAKE_CUDA_FREE_MIB", "1", 1);
    expect_fallback("needs about");
    expect_fallback("on Fake GPU");
}

/* Every check passed and create failed: the CPU is created after it. */
static void test_create_fails(void **state)
{
    (void)state;
    clear_env();
    setenv("KVCHAT_CUDA_DRIVER", FAKE_DRIVER, 1);
    setenv("KVCHAT_CUDA_MODULE", FAKE_MODULE, 1);
    expect_fallback("fake create failed");
    char note[256], err[512];
    struct seen seen = {0};
    assert_int_equal(open_as(ENGINE_BACKEND_AUTO, note, sizeof note, err, sizeof err, &seen,
                             NULL),
                     0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.ops[0]->name, "cuda");
    assert_false(seen.ops[0]->host_weights);
    assert_true(seen.ops[1] == &backend_cpu_ops);
}
#else
static void test_built_without_cuda(void **state)
{
    (void)state;
    clear_env();
    expect_fallback("built without CUDA");
}
#endif

static int teardown(void **state)
{
    (void)state;
    free(image);
    image = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_asked),
        cmocka_unit_test(test_cpu_estimate),
#ifdef KVCHAT_HAVE_CUDA
        cmocka_unit_test(test_this_machine),
        cmocka_unit_test(test_no_driver),
        cmocka_unit_test(test_module_missing),
        cmocka_unit_test(test_module_not_a_library),
        cmocka_unit_test(test_module_without_entry),
        cmocka_unit_test(test_module_other_abi),
        cmocka_unit_test(test_not_enough_memory),
        cmocka_unit_test(test_create_fails),
#else
        cmocka_unit_test(test_built_without_cuda),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
