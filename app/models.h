/* models.h - the local models folder as kvchat lists it: `kvchat
 * --list-models` and the chat screen's /model picker. Each .gguf file in the
 * folder is described from its metadata (engine_describe_file) without
 * loading weights; a file that cannot be read is listed with its one-line
 * error, and other files are ignored.
 *
 * Rules: kv_models_list returns an owned array (kv_models_free); rows are
 * sorted by file name so a number picks the same file twice in a row.
 */
#ifndef KVCHAT_MODELS_H
#define KVCHAT_MODELS_H

#include <stdbool.h>
#include <stddef.h>

#include "engine.h"

struct kv_model_entry {
    char file[256];   /* the file name in the folder */
    char path[4352];  /* folder/file */
    bool ok;          /* described; else ERR says why not */
    struct engine_file_info info;
    char err[512];
};

/* The .gguf files in DIR. Returns 0 (an empty folder: *N = 0), or -1 with a
 * one-line message naming DIR when it cannot be read. */
int kv_models_list(const char *dir, struct kv_model_entry **out, size_t *n, char *err,
                   size_t errlen);
void kv_models_free(struct kv_model_entry *v);

/* The listing's column header and one row: file, size, architecture,
 * quantisation, trained context, parameters (or the error). */
void kv_model_header(char *buf, size_t cap);
void kv_model_row(const struct kv_model_entry *m, char *buf, size_t cap);

/* "1.2 GiB", "85.3 MiB"; "135M", "1.2B" */
void kv_fmt_size(uint64_t bytes, char *buf, size_t cap);
void kv_fmt_count(uint64_t n, char *buf, size_t cap);

#endif
