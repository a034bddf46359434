/* failalloc_sqlite.c - SQLite's allocations through failalloc's counter.
 * SQLite is a shared library, so the link's --wrap does not reach its
 * malloc calls; SQLITE_CONFIG_MALLOC does. Only xMalloc and xRealloc can
 * fail; the rest are SQLite's own default methods, which this wraps.
 */
#include <stdbool.h>
#include <stddef.h>

#include <sqlite3.h>

#include "failalloc.h"

static sqlite3_mem_methods real_methods;

static void *fail_malloc(int n)
{
    return failalloc_next() ? NULL : real_methods.xMalloc(n);
}

static void *fail_realloc(void *p, int n)
{
    return failalloc_next() ? NULL : real_methods.xRealloc(p, n);
}

int failalloc_sqlite_install(void)
{
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_methods) != SQLITE_OK)
        return -1;
    sqlite3_mem_methods m = real_methods;
    m.xMalloc = fail_malloc;
    m.xRealloc = fail_realloc;
    return sqlite3_config(SQLITE_CONFIG_MALLOC, &m) == SQLITE_OK ? 0 : -1;
}
