/* hostmem.c - the memory this process can still take (hostmem.h): Linux's
 * MemAvailable and the cgroup v2 limits above the process. */
#include "hostmem.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads the first line of ROOT/PATH into BUF. */
static bool read_line(const char *root, const char *path, char *buf, size_t cap)
{
    char full[8192];
    int n = snprintf(full, sizeof full, "%s%s", root, path);
    if (n < 0 || (size_t)n >= sizeof full)
        return false;
    FILE *f = fopen(full, "r");
    if (!f)
        return false;
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    return ok;
}

/* MemAvailable in bytes, or false. */
static bool meminfo_available(const char *root, uint64_t *out)
{
    char full[8192], line[256];
    int n = snprintf(full, sizeof full, "%s/proc/meminfo", root);
    if (n < 0 || (size_t)n >= sizeof full)
        return false;
    FILE *f = fopen(full, "r");
    if (!f)
        return false;
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            *out = (uint64_t)kb * 1024;
            found = true;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Room left under the limits of cgroup CG (a path such as "/a/b") and each
 * of its parents; false when no level has a limit. */
static bool cgroup_room(const char *root, char *cg, uint64_t *out)
{
    bool any = false;
    for (;;) {
        char path[4200], line[64];
        const char *dir = strcmp(cg, "/") ? cg : "";
        int n = snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", dir);
        if (n < 0 || (size_t)n >= sizeof path)
            return any;
        if (read_line(root, path, line, sizeof line) && strncmp(line, "max", 3) != 0) {
            uint64_t max = strtoull(line, NULL, 10), cur = 0;
            n = snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.current", dir);
            if (n > 0 && (size_t)n < sizeof path && read_line(root, path, line, sizeof line))
                cur = strtoull(line, NULL, 10);
            uint64_t room = max > cur ? max - cur : 0;
            if (!any || room < *out)
                *out = room;
            any = true;
        }
        char *slash = strrchr(cg, '/');
        if (!slash || slash == cg) {
            if (strcmp(cg, "/") == 0 || !slash)
                break;
            cg[1] = 0; /* the root cgroup next */
            continue;
        }
        *slash = 0;
    }
    return any;
}

int hostmem_available(const char *root, uint64_t *out)
{
    if (!root)
        root = "";
    uint64_t mem = 0, room = 0;
    bool have_mem = meminfo_available(root, &mem);

    /* cgroup v2: the "0::/path" line */
    bool have_room = false;
    char full[8192], line[4096];
    int n = snprintf(full, sizeof full, "%s/proc/self/cgroup", root);
    FILE *f = n > 0 && (size_t)n < sizeof full ? fopen(full, "r") : NULL;
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3) != 0)
                continue;
            char *cg = line + 3;
            cg[strcspn(cg, "\n")] = 0;
            if (*cg != '/')
                break;
            have_room = cgroup_room(root, cg, &room);
            break;
        }
        fclose(f);
    }
    if (!have_mem && !have_room)
        return -1;
    *out = !have_mem ? room : !have_room ? mem : mem < room ? mem : room;
    return 0;
}
