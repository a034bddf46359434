/* history_internal.h - what the files of the history store share, behind
 * history.h: the connection struct and the helpers every file uses. Nothing
 * outside history/ includes it.
 *
 * The store's files, by concern:
 *   store.c    these helpers: clocks, errors, statements and transactions,
 *              column and row readers, role/end/status names, titles and
 *              previews
 *   open.c     open/close, pragmas, integrity and schema checks, schema
 *              migrations, paths
 *   sessions.c sessions
 *   messages.c messages, streaming replies, truncation
 *   search.c   full-text search
 *   export.c   Markdown and JSON export
 *   repair.c   mending a damaged database (kvchat --repair)
 *
 * One connection per struct hist. The database runs in WAL mode so readers
 * never block the one writer and a killed process loses nothing committed;
 * every write is one BEGIN IMMEDIATE transaction (hist_begin_write), so it
 * either waits for the write lock (busy timeout) up front or fails before
 * changing anything. The schema is versioned with PRAGMA user_version; the
 * migration steps in open.c are the only DDL.
 *
 * Rules for the helpers below (on top of history.h's):
 * - A helper that takes a struct hist and fails records the message in h->err
 *   (naming h->path) and returns the hist_status; callers just pass it on.
 * - hist_fail formats an SQLite failure; hist_failf a failure of our own.
 * - hist_step_done finalizes its statement whatever happens; hist_commit
 *   rolls back when COMMIT fails; hist_rollback is safe outside a
 *   transaction.
 * - A connection on which SQLite ran out of memory is replaced before its
 *   next statement (hist_prepare, hist_begin_write, hist_begin_read).
 * - A transaction a failure could not end (out of memory, even for the
 *   rollback) is rolled back before the connection's next transaction
 *   begins (hist_begin_write, hist_begin_read), so it never keeps the
 *   write lock or leaks a half-done write into the next one.
 * - Strings returned as char * are owned by the caller (free); NULL means out
 *   of memory unless the helper says otherwise.
 */
#ifndef KVCHAT_HISTORY_INTERNAL_H
#define KVCHAT_HISTORY_INTERNAL_H

#include "history.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_PROGRESS_SLOTS 8

/* Last progress save of a streaming reply, so hist_reply_progress can skip
 * without touching SQLite. */
struct progress_slot {
    int64_t msg_id; /* 0 = free */
    int64_t last_ms; /* monotonic clock of the last save */
};

struct hist {
    sqlite3 *db;
    char *path;      /* owned; as given to hist_open */
    int readonly;    /* opened read-only, or the file turned out not writable */
    int busy_ms;
    char writer[300]; /* "host:pid" stamped on replies this connection streams */
    char err[1024];
    struct progress_slot slots[HIST_PROGRESS_SLOTS];
    /* owned: "ROLLBACK", prepared at open. Preparing a statement allocates,
     * so a write that failed for want of memory could not end itself with
     * sqlite3_exec while the memory stays out; stepping a prepared one
     * needs none. */
    sqlite3_stmt *rollback;
    /* SQLite ran out of memory on this connection: it is replaced before
     * its next statement (hist_reconnect). SQLite 3.40's FTS5 can keep
     * in-memory index state from a write that failed that way which no
     * longer matches the file (a later delete reports SQLITE_CORRUPT,
     * though the file passes every check); a new connection reads the
     * index afresh. */
    int reconnect;
};

/* ---- small helpers ---- */

int64_t hist_now_ms(void);                   /* wall clock, unix epoch ms */
char *hist_strndup(const char *s, size_t n); /* N bytes of S plus a NUL; S may hold NULs */

/* ---- errors ---- */

int hist_status_of(int rc); /* SQLite result code -> enum hist_status */
/* "PATH: WHAT: reason" into BUF; DB may be NULL (then the reason is RC's). */
void hist_fmt_sqlite_err(char *buf, size_t cap, const char *path, sqlite3 *db, int rc,
                         const char *what);
int hist_fail(struct hist *h, int rc, const char *what);         /* SQLite failure RC */
int hist_failf(struct hist *h, int st, const char *fmt, ...)      /* our own failure ST */
    __attribute__((format(printf, 3, 4)));

/* ---- statements and transactions ---- */

int hist_prepare(struct hist *h, const char *sql, sqlite3_stmt **st, const char *what);
int hist_step_done(struct hist *h, sqlite3_stmt *st, const char *what);
int hist_begin_write(struct hist *h, const char *what);
int hist_begin_read(struct hist *h, const char *what); /* BEGIN: one snapshot for several reads */
int hist_commit(struct hist *h, const char *what);
/* Ends the open transaction, if any, undoing it; SQLITE_OK, or SQLite's
 * code when the transaction is still open. */
int hist_rollback(struct hist *h);

/* ---- binding and reading columns ---- */

/* Text is bound SQLITE_STATIC, never TRANSIENT: every string bound here
 * outlives its statement (finalized in the same call), and a TRANSIENT copy
 * that cannot be allocated fails the bind, which leaves the parameter NULL
 * and the statement runnable: a NOT NULL column then fails with a
 * misleading constraint error, a nullable one silently stores NULL. */

void hist_bind_text_or_null(sqlite3_stmt *st, int i, const char *s);
/* Column I as an owned string; NULL column: "" if NULL_AS_EMPTY, else NULL. */
char *hist_col_strdup(sqlite3_stmt *st, int i, int null_as_empty);
int64_t hist_col_i64_or(sqlite3_stmt *st, int i, int64_t dflt); /* DFLT for a NULL column */
double hist_col_dbl_or(sqlite3_stmt *st, int i, double dflt);

/* ---- reading rows into structs ---- */

/* Reads ST's current row into the struct at OUT (a struct hist_session,
 * hist_message, ...). Returns HIST_OK, or HIST_E_NOMEM with nothing left
 * owned in OUT. */
typedef int (*hist_row_reader)(sqlite3_stmt *st, void *out);

/* Steps ST, which selects the row of NOUN ID, and reads it into OUT with
 * READ. No row is HIST_E_NOTFOUND ("no NOUN ID"); WHAT names the read in an
 * SQLite failure. Finalizes ST. */
int hist_read_one(struct hist *h, sqlite3_stmt *st, hist_row_reader read, void *out, const char *noun,
                  int64_t id, const char *what);

/* Steps ST to its end, reading each row with READ into a growing array of
 * ELEM-byte structs. *ROWS (owned; NULL if none) and *N get the rows read,
 * on failure too, so the caller frees them with the type's *_free. Finalizes
 * ST. */
int hist_read_all(struct hist *h, sqlite3_stmt *st, hist_row_reader read, size_t elem, void **rows,
                  size_t *n, const char *what);

/* ---- names as stored ---- */

enum hist_role hist_role_parse(const char *s);
enum hist_end hist_end_parse(const char *s); /* NULL: HIST_END_NONE */

/* ---- text shaping for titles and previews ---- */

int hist_is_ws(unsigned char c);
char *hist_shorten(const char *s, size_t len, int max_chars);

/* ---- integrity (open.c) ---- */

/* 1 if DB's schema is what the migrations make for version V and its indexes
 * count as many rows as their tables; else 0 with the object in WHAT. */
int hist_schema_matches(sqlite3 *db, int v, char *what, size_t cap);
/* Runs SQL that yields one integer (a pragma, a count) into *OUT; a SQLite
 * result code (SQLITE_OK). For a connection without a struct hist around it
 * (opening, repair); with one, see hist_session_exists and friends. */
int hist_query_int(sqlite3 *db, const char *sql, int64_t *out);

/* ---- the connection (open.c) ---- */

/* Replaces H's connection with a new one on the same file, set up alike
 * (only when no transaction is open). HIST_OK, or the status with the
 * message in h->err, the old connection kept and h->reconnect still set. */
int hist_reconnect(struct hist *h, const char *what);

/* ---- shared by sessions and messages ---- */

int hist_session_exists(struct hist *h, int64_t id, int *exists);

#endif
