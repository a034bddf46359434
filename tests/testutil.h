/* testutil.h - helpers shared by the unit tests: where the downloaded models
 * and the shared fixtures are, and skipping (or, in CI, failing) when absent.
 * Include after <cmocka.h>.
 */
#ifndef KVCHAT_TESTUTIL_H
#define KVCHAT_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TEST_MODEL_SMOLLM2 "SmolLM2-135M-Instruct.Q4_1.gguf"
#define TEST_MODEL_GEMMA3 "gemma-3-270m-q4_k_m.gguf"

/* The models folder: $KVCHAT_MODEL_DIR, else ${XDG_DATA_HOME:-~/.local/share}/kvchat/models. */
static inline void test_models_dir(char *buf, size_t cap)
{
    const char *d = getenv("KVCHAT_MODEL_DIR");
    const char *xdg = getenv("XDG_DATA_HOME");
    if (d && *d)
        snprintf(buf, cap, "%s", d);
    else if (xdg && *xdg)
        snprintf(buf, cap, "%s/kvchat/models", xdg);
    else
        snprintf(buf, cap, "%s/.local/share/kvchat/models", getenv("HOME") ? getenv("HOME") : ".");
}

static inline int test_in_ci(void)
{
    const char *ci = getenv("CI");
    return ci && strcmp(ci, "true") == 0;
}

/* Full path of model FILE into BUF, or skips the test (fails it in CI, where
 * scripts/test must have fetched every model). */
#define TEST_REQUIRE_MODEL(file, buf)                                                           \
    do {                                                                                        \
        char dir_[2048];                                                                        \
        struct stat st_;                                                                        \
        test_models_dir(dir_, sizeof dir_);                                                     \
        snprintf((buf), sizeof(buf), "%s/%s", dir_, (file));                                    \
        if (stat((buf), &st_) != 0) {                                                           \
            if (test_in_ci())                                                                   \
                fail_msg("model %s missing in CI (scripts/test fetches it)", (buf));            \
            printf("SKIPPED: model %s not found (run scripts/test to fetch it)\n", (buf));      \
            skip();                                                                             \
        }                                                                                       \
    } while (0)

/* Full path of a shared fixture, or skips the test when the folder is absent. */
#define TEST_REQUIRE_FIXTURE(rel, buf)                                                          \
    do {                                                                                        \
        struct stat st_;                                                                        \
        snprintf((buf), sizeof(buf), "%s/%s", KVCHAT_FIXTURES, (rel));                          \
        if (stat((buf), &st_) != 0) {                                                           \
            printf("SKIPPED: fixture %s not found (../shared/fixtures is absent)\n", (buf));    \
            skip();                                                                             \
        }                                                                                       \
    } while (0)

/* Whole file into a malloc'd, NUL-terminated buffer (*LEN excludes the NUL);
 * NULL when it cannot be read. */
static inline char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[sz] = 0;
        *len = (size_t)sz;
    }
    return buf;
}

/* A fresh temporary directory under the build tree; returns its path in BUF. */
static inline void test_tmpdir(char *buf, size_t cap, const char *tag)
{
    mkdir(KVCHAT_TEST_TMP, 0755);
    snprintf(buf, cap, "%s/%s-XXXXXX", KVCHAT_TEST_TMP, tag);
    if (!mkdtemp(buf))
        buf[0] = 0;
}

#endif
