/* replay.c - runs a fuzz target's LLVMFuzzerTestOneInput over stored inputs,
 * with any compiler: the corpus and the crash regressions replay as a ctest
 * in every build, and under ASan/UBSan in the sanitized one.
 *
 * usage: replay_NAME PATH...
 * Each PATH is a file, or a folder whose regular files (not hidden, not
 * recursing) are each one input, in name order. A missing folder is no
 * error (regressions/NAME exists only once something was found); no input
 * at all is, so a misplaced corpus cannot pass unseen. A harness reports a
 * broken invariant by aborting, so the first bad input ends the run, after
 * its name has been printed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads PATH whole into an exact-size buffer (so a harness reading past its
 * input is caught by ASan), or exits. */
static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    if (!buf || ferror(f)) {
        fprintf(stderr, "replay: %s: read failed\n", path);
        exit(1);
    }
    fclose(f);
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact)
        exit(1);
    memcpy(exact, buf, n);
    free(buf);
    *size = n;
    return exact;
}

static void run_one(const char *path)
{
    size_t size;
    uint8_t *data = read_all(path, &size);
    printf("replay %s (%zu bytes)\n", path, size);
    fflush(stdout);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in DIR in name order; returns how many. */
static size_t run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
            if (!nn)
                exit(1);
            names = nn;
        }
        if (!(names[n++] = strdup(e->d_name)))
            exit(1);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    size_t ran = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *p = malloc(len);
        if (!p)
            exit(1);
        snprintf(p, len, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            run_one(p);
            ran++;
        }
        free(p);
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    size_t ran = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0)
            continue; /* no regressions folder yet */
        if (S_ISDIR(st.st_mode)) {
            ran += run_dir(argv[i]);
        } else {
            run_one(argv[i]);
            ran++;
        }
    }
    if (!ran) {
        fprintf(stderr, "replay: no inputs in the paths given\n");
        return 1;
    }
    printf("replay: %zu inputs passed\n", ran);
    return 0;
}
