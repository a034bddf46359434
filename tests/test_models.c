/* test_models.c - the models folder as --list-models and /model see it
 * (app/models.c over engine_describe_file): a temporary folder with the
 * default model linked in, a junk .gguf (listed with its error), a file of
 * another kind and a folder named like a model (both ignored); and a file
 * described without loading it. Skips without the model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[512];

static void write_file(const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_describe_default_model(void **state)
{
    (void)state;
    char model[4096], err[512];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, model);
    struct engine_file_info fi;
    assert_int_equal(engine_describe_file(model, &fi, err, sizeof err), 0);
    assert_string_equal(fi.arch, "llama");
    assert_string_equal(fi.quant, "Q4_1");
    assert_int_equal(fi.n_ctx_train, 8192);
    assert_int_equal(fi.n_params, 134515008); /* what the loaded engine counts too */
    struct stat st;
    assert_int_equal(stat(model, &st), 0);
    assert_int_equal(fi.file_bytes, (uint64_t)st.st_size);
    assert_true(fi.name[0] != 0);
}

static void test_describe_errors(void **state)
{
    (void)state;
    char err[512], path[1024];
    struct engine_file_info fi;
    snprintf(path, sizeof path, "%s/none.gguf", dir);
    assert_int_equal(engine_describe_file(path, &fi, err, sizeof err), -1);
    assert_non_null(strstr(err, "none.gguf"));
    assert_null(strchr(err, '\n'));
}

static void test_list_folder(void **state)
{
    (void)state;
    char model[4096], err[512], link[1024];
    TEST_REQUIRE_MODEL(TEST_MODEL_SMOLLM2, model);
    snprintf(link, sizeof link, "%s/%s", dir, TEST_MODEL_SMOLLM2);
    assert_int_equal(symlink(model, link), 0);
    write_file("junk.gguf", "GGUF but not really");
    write_file("notes.txt", "not a model");
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/folder.gguf", dir);
    assert_int_equal(mkdir(sub, 0700), 0);

    struct kv_model_entry *v;
    size_t n;
    assert_int_equal(kv_models_list(dir, &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 2); /* the model and the junk file, by name */
    assert_string_equal(v[0].file, TEST_MODEL_SMOLLM2);
    assert_true(v[0].ok);
    assert_string_equal(v[0].info.quant, "Q4_1");
    assert_string_equal(v[1].file, "junk.gguf");
    assert_false(v[1].ok);
    assert_true(v[1].err[0] != 0);
    assert_null(strchr(v[1].err, '\n'));
    assert_int_equal(v[1].info.file_bytes, strlen("GGUF but not really"));

    char row[2048];
    kv_model_row(&v[0], row, sizeof row);
    assert_non_null(strstr(row, "llama"));
    assert_non_null(strstr(row, "8192"));
    assert_non_null(strstr(row, "135M"));
    assert_non_null(strstr(row, "MiB"));
    kv_model_row(&v[1], row, sizeof row);
    assert_non_null(strstr(row, "error: "));
    kv_models_free(v);
    unlink(link);
    rmdir(sub);
}

static void test_list_missing_folder(void **state)
{
    (void)state;
    char err[512], path[1024];
    snprintf(path, sizeof path, "%s/no-such-folder", dir);
    struct kv_model_entry *v;
    size_t n = 5;
    assert_int_equal(kv_models_list(path, &v, &n, err, sizeof err), -1);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "no-such-folder"));
}

static void test_formats(void **state)
{
    (void)state;
    char b[32];
    kv_fmt_size(11, b, sizeof b);
    assert_string_equal(b, "11 B");
    kv_fmt_size(98342912, b, sizeof b);
    assert_string_equal(b, "93.8 MiB");
    kv_fmt_size(3ull << 30, b, sizeof b);
    assert_string_equal(b, "3.0 GiB");
    kv_fmt_count(134515008, b, sizeof b);
    assert_string_equal(b, "135M");
    kv_fmt_count(1235814400, b, sizeof b);
    assert_string_equal(b, "1.2B");
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/models-XXXXXX", KVCHAT_TEST_TMP);
    mkdir(KVCHAT_TEST_TMP, 0700);
    if (!mkdtemp(dir)) {
        perror(dir);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe_default_model),
        cmocka_unit_test(test_describe_errors),
        cmocka_unit_test(test_list_folder),
        cmocka_unit_test(test_list_missing_folder),
        cmocka_unit_test(test_formats),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return rc;
}
