/* models.c - listing the local models folder. See models.h. */
#include "models.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool is_gguf(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".gguf") == 0 && name[0] != '.';
}

static int by_file(const void *a, const void *b)
{
    return strcmp(((const struct kv_model_entry *)a)->file, ((const struct kv_model_entry *)b)->file);
}

int kv_models_list(const char *dir, struct kv_model_entry **out, size_t *n, char *err,
                   size_t errlen)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read the models folder %s: %s", dir, strerror(errno));
        return -1;
    }
    struct kv_model_entry *v = NULL;
    size_t k = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_gguf(de->d_name) || strlen(de->d_name) >= sizeof v->file)
            continue;
        char path[sizeof v->path];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue; /* a folder named x.gguf, a dangling link */
        if (k == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct kv_model_entry *nv = realloc(v, nc * sizeof *v);
            if (!nv) {
                closedir(d);
                free(v);
                snprintf(err, errlen, "out of memory listing %s", dir);
                return -1;
            }
            v = nv;
            cap = nc;
        }
        struct kv_model_entry *m = &v[k++];
        memset(m, 0, sizeof *m);
        snprintf(m->file, sizeof m->file, "%s", de->d_name);
        snprintf(m->path, sizeof m->path, "%s", path);
        m->ok = engine_describe_file(path, &m->info, m->err, sizeof m->err) == 0;
        if (!m->ok)
            m->info.file_bytes = (uint64_t)st.st_size;
    }
    closedir(d);
    if (k)
        qsort(v, k, sizeof *v, by_file);
    *out = v;
    *n = k;
    return 0;
}

void kv_models_free(struct kv_model_entry *v) { free(v); }

void kv_fmt_size(uint64_t b, char *buf, size_t cap)
{
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.1f GiB", b / 1073741824.0);
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.1f MiB", b / 1048576.0);
    else if (b >= 1024)
        snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    else
        snprintf(buf, cap, "%llu B", (unsigned long long)b);
}

void kv_fmt_count(uint64_t n, char *buf, size_t cap)
{
    if (n >= 1000000000ull)
        snprintf(buf, cap, "%.1fB", n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, cap, "%.0fM", n / 1e6);
    else
        snprintf(buf, cap, "%.0fK", n / 1e3);
}

#define ROW_FMT "%-40s %10s  %-10s %-7s %8s %7s"

void kv_model_header(char *buf, size_t cap)
{
    snprintf(buf, cap, ROW_FMT, "FILE", "SIZE", "ARCH", "QUANT", "CONTEXT", "PARAMS");
}

void kv_model_row(const struct kv_model_entry *m, char *buf, size_t cap)
{
    char size[32];
    kv_fmt_size(m->info.file_bytes, size, sizeof size);
    if (!m->ok) {
        snprintf(buf, cap, "%-40s %10s  error: %s", m->file, size, m->err);
        return;
    }
    char ctx[16] = "?", params[16];
    if (m->info.n_ctx_train > 0)
        snprintf(ctx, sizeof ctx, "%d", m->info.n_ctx_train);
    kv_fmt_count(m->info.n_params, params, sizeof params);
    snprintf(buf, cap, ROW_FMT, m->file, size, m->info.arch, m->info.quant, ctx, params);
}
