/* failalloc.h - allocation-failure injection for the tests, as SQLite's own
 * test suite does it: arm a number N, run a path, and the N-th allocation
 * from then on returns NULL. A test loops N = 1, 2, ... until the path runs
 * to its end without reaching the armed allocation, so every allocation
 * point of the path has failed once and its cleanup has been run.
 *
 * Rules:
 * - What is covered: every call to malloc, calloc, realloc, strdup, strndup,
 *   aligned_alloc and posix_memalign from the objects linked into the test
 *   executable, the static kv* libraries included. The link renames them
 *   (GNU ld --wrap, see tests/CMakeLists.txt), so the shared libraries
 *   (libc itself, PCRE2, cmocka) allocate as usual; SQLite is covered
 *   through failalloc_sqlite_install.
 * - Counting is atomic, so allocations from worker threads count too; a
 *   path is only repeatable allocation by allocation when one thread
 *   allocates, so the tests run engines with one thread.
 * - realloc(p, 0) and allocations of size 0 count like any other.
 * - Disarmed (the start, and failalloc_arm(0)), nothing fails and nothing is
 *   counted.
 */
#ifndef KVCHAT_FAILALLOC_H
#define KVCHAT_FAILALLOC_H

#include <stdbool.h>

/* Counts allocations from now on; the N-th (N >= 1) fails, and with PERSIST
 * every one after it too (an allocator that stays out of memory). N = 0
 * disarms. */
void failalloc_arm(long n, bool persist);
/* Allocations seen since the last failalloc_arm. */
long failalloc_count(void);
/* Allocations that were made to fail since the last failalloc_arm. */
long failalloc_failures(void);

/* One allocation by an allocator outside the covered functions is about to
 * happen: counts it and says whether it must fail. */
bool failalloc_next(void);

/* Routes SQLite's allocations through the same counter. Call before anything
 * uses SQLite (sqlite3_config refuses once SQLite is initialised); returns 0,
 * or -1 when SQLite refused. */
int failalloc_sqlite_install(void);

#endif
