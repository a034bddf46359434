/* procmem.h - this process's resident memory and the host's, from the
 * kernel's /proc: the memory inspector's figures on the CPU backend, where
 * the host's RAM is the device. /proc/self/status splits resident memory
 * into file-backed pages (the mmapped model file) and anonymous ones (the KV
 * cache, scratch, everything malloc'd); /proc/meminfo gives the machine's
 * total and what is available.
 *
 * Rules: the parsers are pure (text in, figures out) so tests feed them
 * recorded files; procmem_read reads the real ones. Every figure has a valid
 * bit: a kernel that does not report a line leaves it invalid, never 0.
 * Any thread may call any function (no state).
 */
#ifndef KVCHAT_TELEMETRY_PROCMEM_H
#define KVCHAT_TELEMETRY_PROCMEM_H

#include <stdbool.h>
#include <stdint.h>

struct proc_mem {
    bool rss_valid;   /* VmRSS was read */
    bool split_valid; /* RssAnon, RssFile and RssShmem were all read */
    bool host_valid;  /* MemTotal and MemAvailable were read */
    uint64_t rss;       /* bytes resident, VmRSS */
    uint64_t rss_anon;  /* of which anonymous */
    uint64_t rss_file;  /* file-backed: mmapped files, the model's weights among them */
    uint64_t rss_shmem; /* shared memory */
    uint64_t host_total, host_avail; /* bytes of RAM on the machine, available now */
};

/* Reads the "Name: N kB" lines of /proc/self/status TEXT into OUT (only its
 * process fields; the host ones are left as they are). */
void procmem_parse_status(const char *text, struct proc_mem *out);
/* Reads MemTotal and MemAvailable from /proc/meminfo TEXT into OUT. */
void procmem_parse_meminfo(const char *text, struct proc_mem *out);
/* Both, from this process's and this machine's files; OUT is zeroed first. */
void procmem_read(struct proc_mem *out);

#endif
