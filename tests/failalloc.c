/* failalloc.c - the allocation wrappers behind failalloc.h. The link maps
 * each covered function F to __wrap_F here, and __real_F to the C
 * library's (under KVCHAT_SANITIZE that is ASan's, so leaks and overflows
 * are still caught).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "failalloc.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **out, size_t align, size_t n);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
int __wrap_posix_memalign(void **out, size_t align, size_t n);

/* The armed number (0: disarmed), allocations counted and failed since. */
static atomic_long fail_at, seen, failed;
static atomic_bool persist_mode;

void failalloc_arm(long n, bool persist)
{
    atomic_store(&fail_at, 0);
    atomic_store(&seen, 0);
    atomic_store(&failed, 0);
    atomic_store(&persist_mode, persist);
    atomic_store(&fail_at, n);
}

long failalloc_count(void)
{
    return atomic_load(&seen);
}

long failalloc_failures(void)
{
    return atomic_load(&failed);
}

/* One allocation is about to happen: true when it must fail. Sets errno as
 * the C library does when it runs out. */
static bool should_fail(void)
{
    long at = atomic_load(&fail_at);
    if (at <= 0)
        return false;
    long k = atomic_fetch_add(&seen, 1) + 1;
    if (k == at || (k > at && atomic_load(&persist_mode))) {
        atomic_fetch_add(&failed, 1);
        errno = ENOMEM;
        return true;
    }
    return false;
}

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : __real_calloc(n, size);
}

/* A failed realloc leaves P allocated, as the real one does. */
void *__wrap_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return should_fail() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return should_fail() ? NULL : __real_strndup(s, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return should_fail() ? NULL : __real_aligned_alloc(align, n);
}

/* posix_memalign reports failure by its result, not errno, and leaves *OUT. */
int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
    return should_fail() ? ENOMEM : __real_posix_memalign(out, align, n);
}

bool failalloc_next(void)
{
    return should_fail();
}
