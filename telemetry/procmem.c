/* procmem.c - resident memory from /proc (procmem.h). Read each second by
 * the inspector and the monitor log: the two files are small, so a read is
 * tens of microseconds. */
#include "procmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of the "NAME:   N kB" line of TEXT in bytes; false when absent. */
static bool kb_line(const char *text, const char *name, uint64_t *out)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, n) != 0 || p[n] != ':')
            continue;
        char *end;
        unsigned long long v = strtoull(p + n + 1, &end, 10);
        if (end == p + n + 1)
            return false;
        *out = (uint64_t)v * 1024;
        return true;
    }
    return false;
}

void procmem_parse_status(const char *text, struct proc_mem *out)
{
    out->rss_valid = kb_line(text, "VmRSS", &out->rss);
    out->split_valid = kb_line(text, "RssAnon", &out->rss_anon) &&
                       kb_line(text, "RssFile", &out->rss_file) &&
                       kb_line(text, "RssShmem", &out->rss_shmem);
}

void procmem_parse_meminfo(const char *text, struct proc_mem *out)
{
    out->host_valid = kb_line(text, "MemTotal", &out->host_total) &&
                      kb_line(text, "MemAvailable", &out->host_avail);
}

/* Reads a small /proc file into BUF (NUL-terminated); false when it cannot. */
static bool slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    return n > 0;
}

void procmem_read(struct proc_mem *out)
{
    char buf[8192];
    memset(out, 0, sizeof *out);
    if (slurp("/proc/self/status", buf, sizeof buf))
        procmem_parse_status(buf, out);
    if (slurp("/proc/meminfo", buf, sizeof buf))
        procmem_parse_meminfo(buf, out);
}
