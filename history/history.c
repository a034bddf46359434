/* history.c - the SQLite conversation store behind history.h.
 *
 * One connection per struct hist. The database runs in WAL mode so readers
 * never block the one writer and a killed process loses nothing committed;
 * every write is one BEGIN IMMEDIATE transaction, so it either waits for the
 * write lock (busy timeout) up front or fails before changing anything. The
 * schema is versioned with PRAGMA user_version; MIGRATIONS below are the only
 * DDL, applied in order, and tests build old databases from the same steps.
 */
#include "history.h"

#include "xdg.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define HIST_DEFAULT_BUSY_MS 3000
#define HIST_PROGRESS_MS 1000      /* the most a crash may lose of a streaming reply */
#define HIST_STALE_WRITER_MS 3600000 /* a streaming reply from another host is dead after an hour */
#define HIST_TITLE_CHARS 60
#define HIST_PREVIEW_CHARS 80
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
};

/* ---- migrations ----
 * Each step takes the schema from version i to i+1 and sets user_version
 * itself, inside one transaction with the step. Never edit a released step;
 * add a new one. */
static const char *const MIGRATIONS[] = {
    /* v1: sessions and messages. end_reason NULL = an ordinary committed message. */
    "CREATE TABLE sessions("
    "  id INTEGER PRIMARY KEY,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  model_name TEXT,"
    "  model_digest TEXT,"
    "  system_prompt TEXT,"
    "  temperature REAL, top_k INTEGER, top_p REAL, min_p REAL,"
    "  repeat_penalty REAL, repeat_last_n INTEGER, seed INTEGER, max_tokens INTEGER);"
    "CREATE TABLE messages("
    "  id INTEGER PRIMARY KEY,"
    "  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
    "  role TEXT NOT NULL CHECK(role IN ('system','user','assistant')),"
    "  content TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  n_tokens INTEGER,"
    "  end_reason TEXT CHECK(end_reason IN"
    "    ('streaming','stop','length','cancelled','error','interrupted')));"
    "CREATE INDEX messages_by_session ON messages(session_id, id);"
    "PRAGMA user_version = 1;",

    /* v2: full-text search over message content, kept in step by triggers
     * (external content: the text is stored once, in messages). */
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages',"
    "  content_rowid='id', tokenize='unicode61 remove_diacritics 2');"
    "CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN"
    "  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);"
    "END;"
    "CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN"
    "  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);"
    "END;"
    "CREATE TRIGGER messages_fts_au AFTER UPDATE OF content ON messages BEGIN"
    "  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);"
    "  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);"
    "END;"
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');"
    "PRAGMA user_version = 2;",

    /* v3: generation figures, the streaming writer, last-write time. */
    "ALTER TABLE messages ADD COLUMN updated_ms INTEGER;"
    "ALTER TABLE messages ADD COLUMN n_prompt INTEGER;"
    "ALTER TABLE messages ADD COLUMN prefill_tps REAL;"
    "ALTER TABLE messages ADD COLUMN decode_tps REAL;"
    "ALTER TABLE messages ADD COLUMN ttft_ms REAL;"
    "ALTER TABLE messages ADD COLUMN writer TEXT;"
    "UPDATE messages SET updated_ms = created_ms;"
    "CREATE INDEX sessions_by_updated ON sessions(updated_ms);"
    "PRAGMA user_version = 3;",
};
_Static_assert(sizeof MIGRATIONS / sizeof MIGRATIONS[0] == HIST_SCHEMA_VERSION,
               "one migration step per schema version");

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static void put_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Maps an SQLite result code to the status class the caller acts on. */
static int status_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_ROW: case SQLITE_DONE: return HIST_OK;
    case SQLITE_BUSY: case SQLITE_LOCKED: return HIST_E_LOCKED;
    case SQLITE_READONLY: case SQLITE_PERM: return HIST_E_READONLY;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return HIST_E_CORRUPT;
    case SQLITE_FULL: return HIST_E_FULL;
    case SQLITE_IOERR: case SQLITE_CANTOPEN: return HIST_E_IO;
    case SQLITE_NOMEM: return HIST_E_NOMEM;
    default: return HIST_E_SQL;
    }
}

/* The advice part of an error message, per class. */
static const char *advice(int st)
{
    switch (st) {
    case HIST_E_LOCKED: return "database is locked by another kvchat or program (try again)";
    case HIST_E_READONLY: return "database is read-only (check permissions of the file and its folder)";
    case HIST_E_CORRUPT:
        return "not a kvchat history database, or it is corrupt (move it aside and kvchat starts a new one)";
    case HIST_E_FULL: return "disk full (free some space)";
    case HIST_E_NOMEM: return "out of memory";
    default: return NULL;
    }
}

/* Formats "PATH: WHAT: reason" into BUF, reason from the SQLite code/message. */
static void fmt_sqlite_err(char *buf, size_t cap, const char *path, sqlite3 *db, int rc,
                           const char *what)
{
    int st = status_of(rc);
    const char *adv = advice(st);
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int os_err = db ? sqlite3_system_errno(db) : 0; /* errno of SQLite's last failed OS call */
    if (adv)
        snprintf(buf, cap, "%s: %s: %s", path, what, adv);
    else if (st == HIST_E_IO && os_err)
        snprintf(buf, cap, "%s: %s: %s (%s)", path, what, msg, strerror(os_err));
    else
        snprintf(buf, cap, "%s: %s: %s", path, what, msg);
}

static int fail(struct hist *h, int rc, const char *what)
{
    fmt_sqlite_err(h->err, sizeof h->err, h->path, h->db, rc, what);
    return status_of(rc);
}

static int failf(struct hist *h, int st, const char *fmt, ...)
{
    int n = snprintf(h->err, sizeof h->err, "%s: ", h->path);
    if (n < 0 || (size_t)n >= sizeof h->err)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err + n, sizeof h->err - (size_t)n, fmt, ap);
    va_end(ap);
    return st;
}

static int prepare(struct hist *h, const char *sql, sqlite3_stmt **st, const char *what)
{
    int rc = sqlite3_prepare_v2(h->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return fail(h, rc, what);
    }
    return HIST_OK;
}

/* Runs a statement that returns no rows; finalizes it. */
static int step_done(struct hist *h, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? HIST_OK : fail(h, rc, what);
    sqlite3_finalize(st);
    return ret;
}

/* BEGIN IMMEDIATE takes the write lock up front, so a busy database fails
 * here (after the busy timeout), before anything is changed. */
static int begin_write(struct hist *h, const char *what)
{
    if (h->readonly)
        return failf(h, HIST_E_READONLY, "%s: %s", what, advice(HIST_E_READONLY));
    int rc = sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    return rc == SQLITE_OK ? HIST_OK : fail(h, rc, what);
}

static int commit(struct hist *h, const char *what)
{
    int rc = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        return HIST_OK;
    int st = fail(h, rc, what);
    sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

static void rollback(struct hist *h)
{
    if (!sqlite3_get_autocommit(h->db))
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static char *col_strdup(sqlite3_stmt *st, int i, int null_as_empty)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t)
        return null_as_empty ? xstrndup("", 0) : NULL;
    return xstrndup((const char *)t, (size_t)sqlite3_column_bytes(st, i));
}

static int64_t col_i64_or(sqlite3_stmt *st, int i, int64_t dflt)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_int64(st, i);
}

static double col_dbl_or(sqlite3_stmt *st, int i, double dflt)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_double(st, i);
}

/* ---- names ---- */

const char *hist_status_str(int status)
{
    switch (status) {
    case HIST_OK: return "ok";
    case HIST_E_INVALID: return "invalid argument";
    case HIST_E_NOTFOUND: return "not found";
    case HIST_E_LOCKED: return "locked";
    case HIST_E_READONLY: return "read-only";
    case HIST_E_CORRUPT: return "corrupt";
    case HIST_E_FULL: return "disk full";
    case HIST_E_NEWER: return "newer schema";
    case HIST_E_IO: return "I/O error";
    case HIST_E_NOMEM: return "out of memory";
    case HIST_E_SQL: return "SQLite error";
    default: return "unknown error";
    }
}

static const char *const ROLE_NAMES[] = {"system", "user", "assistant"};
static const char *const END_NAMES[] = {"", "streaming", "stop", "length", "cancelled", "error", "interrupted"};

const char *hist_role_str(enum hist_role r)
{
    return (unsigned)r < 3 ? ROLE_NAMES[r] : "?";
}

const char *hist_end_str(enum hist_end e)
{
    return (unsigned)e < sizeof END_NAMES / sizeof END_NAMES[0] ? END_NAMES[e] : "?";
}

static enum hist_role role_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, ROLE_NAMES[i]) == 0)
            return (enum hist_role)i;
    return HIST_ROLE_USER; /* the CHECK constraint makes this unreachable */
}

static enum hist_end end_parse(const char *s)
{
    if (!s)
        return HIST_END_NONE;
    for (size_t i = 1; i < sizeof END_NAMES / sizeof END_NAMES[0]; i++)
        if (strcmp(s, END_NAMES[i]) == 0)
            return (enum hist_end)i;
    return HIST_END_ERROR;
}

int hist_format_parse(const char *s, enum hist_format *out)
{
    if (!s || !out)
        return HIST_E_INVALID;
    if (strcmp(s, "md") == 0 || strcmp(s, "markdown") == 0)
        *out = HIST_FORMAT_MARKDOWN;
    else if (strcmp(s, "json") == 0)
        *out = HIST_FORMAT_JSON;
    else
        return HIST_E_INVALID;
    return HIST_OK;
}

/* ---- paths ---- */

int hist_default_path(char *buf, size_t cap)
{
    char dir[4096];
    if (kv_xdg_dir(KV_XDG_DATA, dir, sizeof dir) != 0)
        return HIST_E_INVALID;
    int n = snprintf(buf, cap, "%s/history.db", dir);
    return n < 0 || (size_t)n >= cap ? HIST_E_INVALID : HIST_OK;
}

/* mkdir -p of PATH's parent folder, new folders mode 0700 (history is private). */
static int make_parents(const char *path, char *err, size_t errlen)
{
    char *dir = xstrndup(path, strlen(path));
    if (!dir)
        return HIST_E_NOMEM;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        free(dir);
        return HIST_OK;
    }
    *slash = 0;
    for (char *p = dir + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
                put_err(err, errlen, "%s: cannot create folder %s: %s", path, dir, strerror(errno));
                free(dir);
                return errno == EROFS || errno == EACCES ? HIST_E_READONLY : HIST_E_IO;
            }
            *p = c;
            if (!c)
                break;
        }
    }
    free(dir);
    return HIST_OK;
}

/* ---- open and migrate ---- */

/* Runs SQL that yields one integer (a pragma, a count) into *OUT. */
static int query_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int get_user_version(sqlite3 *db, int *v)
{
    return query_int(db, "PRAGMA user_version", v);
}

/* The number of schema objects: with none, user_version 0 means a new file;
 * with some, it is somebody else's database. */
static int count_tables(sqlite3 *db, int *n)
{
    return query_int(db, "SELECT count(*) FROM sqlite_schema", n);
}

/* PRAGMA quick_check: catches damaged pages at open rather than mid-chat.
 * It reads the whole file once; a chat history is small enough for that. */
static int quick_check(sqlite3 *db, int *ok)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        *ok = t && strcmp((const char *)t, "ok") == 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Applies the steps that take the database from its version to TARGET. Each
 * step re-reads the version inside its transaction, so two kvchats opening an
 * old database at once migrate it once. */
static int migrate(sqlite3 *db, const char *path, int target, char *err, size_t errlen)
{
    for (;;) {
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            fmt_sqlite_err(err, errlen, path, db, rc, "upgrading the schema");
            return status_of(rc);
        }
        int v = 0;
        rc = get_user_version(db, &v);
        if (rc == SQLITE_OK && v >= target) {
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            if (rc == SQLITE_OK)
                return HIST_OK;
        }
        if (rc == SQLITE_OK && v < 0)
            rc = SQLITE_CORRUPT; /* open_checked refuses these; never index before MIGRATIONS */
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, MIGRATIONS[v], NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof what, "upgrading the schema to version %d", v + 1);
            fmt_sqlite_err(err, errlen, path, db, rc, what);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return status_of(rc);
        }
    }
}

/* Marks replies whose writer died as interrupted (see history.h). */
static int repair_interrupted(struct hist *h)
{
    sqlite3_stmt *st;
    int ret = prepare(h, "SELECT id, writer, updated_ms FROM messages WHERE end_reason = 'streaming'",
                      &st, "looking for interrupted replies");
    if (ret)
        return ret;
    int64_t dead[64];
    int ndead = 0;
    size_t hostlen = (size_t)(strchr(h->writer, ':') - h->writer);
    int64_t now = now_ms();
    int rc;
    while (ndead < 64 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *w = (const char *)sqlite3_column_text(st, 1);
        int64_t upd = col_i64_or(st, 2, 0);
        const char *colon = w ? strrchr(w, ':') : NULL;
        int is_dead;
        if (colon && (size_t)(colon - w) == hostlen && memcmp(w, h->writer, hostlen) == 0) {
            long pid = strtol(colon + 1, NULL, 10);
            /* a pid that pid_t cannot hold was never a live process of ours */
            is_dead = pid <= 0 || pid > INT_MAX || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
        } else {
            is_dead = 0;
        }
        /* Another host's writer cannot be asked; and a pid may have been
         * reused. A live reply is saved every second, so an hour of silence
         * means dead either way. */
        is_dead = is_dead || upd < now - HIST_STALE_WRITER_MS; /* not now - upd: upd may be INT64_MIN */
        if (is_dead)
            dead[ndead++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (!ndead)
        return HIST_OK;
    if ((ret = begin_write(h, "marking interrupted replies")))
        return ret;
    for (int i = 0; i < ndead && !ret; i++) {
        if ((ret = prepare(h, "UPDATE messages SET end_reason = 'interrupted' "
                              "WHERE id = ? AND end_reason = 'streaming'",
                           &st, "marking interrupted replies")))
            break;
        sqlite3_bind_int64(st, 1, dead[i]);
        ret = step_done(h, st, "marking interrupted replies");
    }
    if (ret) {
        rollback(h);
        return ret;
    }
    return commit(h, "marking interrupted replies");
}

/* Opens the file and checks it is ours and sound, without writing. */
static sqlite3 *open_checked(const char *path, int readonly, int busy_ms, int *status, char *err,
                             size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        fmt_sqlite_err(err, errlen, path, db, rc, "opening the history database");
        *status = status_of(rc);
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, busy_ms);
    /* The file is untrusted input: no SQL may corrupt it deliberately (writable
     * schema, raw page writes). The schema stays trusted because our own
     * triggers keep the FTS5 index, a virtual table, in step. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    int v = 0, ntab = 0, ok = 0;
    rc = get_user_version(db, &v);
    if (rc == SQLITE_OK)
        rc = count_tables(db, &ntab);
    if (rc == SQLITE_OK)
        rc = quick_check(db, &ok);
    if (rc != SQLITE_OK) {
        fmt_sqlite_err(err, errlen, path, db, rc, "opening the history database");
        *status = status_of(rc);
    } else if (!ok) {
        put_err(err, errlen, "%s: history database is corrupt (integrity check failed); move it aside "
                             "and kvchat starts a new one", path);
        *status = HIST_E_CORRUPT;
    } else if (v < 0) {
        /* user_version is any 32-bit value a file holds; ours are 0..N, and
         * a negative one would index before the migration steps. */
        put_err(err, errlen, "%s: not a kvchat history database (schema version %d); use --db to "
                             "choose another file", path, v);
        *status = HIST_E_CORRUPT;
    } else if (v > HIST_SCHEMA_VERSION) {
        put_err(err, errlen, "%s: history database was created by a newer kvchat (schema %d, this "
                             "kvchat knows up to %d); upgrade kvchat or use --db", path, v,
                HIST_SCHEMA_VERSION);
        *status = HIST_E_NEWER;
    } else if (v == 0 && ntab > 0) {
        put_err(err, errlen, "%s: not a kvchat history database (it holds other tables); use --db "
                             "to choose another file", path);
        *status = HIST_E_CORRUPT;
    } else if (readonly && v < HIST_SCHEMA_VERSION) {
        put_err(err, errlen, "%s: history database has schema %d and needs upgrading to %d, which "
                             "a read-only open cannot do", path, v, HIST_SCHEMA_VERSION);
        *status = HIST_E_READONLY;
    } else {
        *status = HIST_OK;
        return db;
    }
    sqlite3_close(db);
    return NULL;
}

/* Sets the connection's lasting pragmas. WAL: readers never block the writer,
 * and a process killed mid-write leaves the last commit intact. synchronous
 * NORMAL is durable against process death (the case we promise); a power cut
 * may lose the last few commits but never corrupts. */
static int configure(sqlite3 *db, const char *path, int write, char *err, size_t errlen)
{
    int rc = sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    if (rc == SQLITE_OK && write)
        rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        fmt_sqlite_err(err, errlen, path, db, rc, "cannot set up history database");
        return status_of(rc);
    }
    return HIST_OK;
}

/* Exposed for tests and tooling: create or migrate PATH to exactly VERSION. */
int hist_migrate_path_to(const char *path, int version, char *err, size_t errlen)
{
    if (!path || version < 1 || version > HIST_SCHEMA_VERSION) {
        put_err(err, errlen, "%s: no schema version %d", path ? path : "(null)", version);
        return HIST_E_INVALID;
    }
    int st = make_parents(path, err, errlen);
    if (st)
        return st;
    sqlite3 *db = open_checked(path, 0, HIST_DEFAULT_BUSY_MS, &st, err, errlen);
    if (!db)
        return st;
    st = configure(db, path, 1, err, errlen);
    if (!st)
        st = migrate(db, path, version, err, errlen);
    sqlite3_close(db);
    return st;
}

struct hist *hist_open_ex(const char *path, unsigned flags, int *status, char *err, size_t errlen)
{
    int st_local;
    int *st = status ? status : &st_local;
    if (err && errlen)
        err[0] = 0;
    if (!path || !*path) {
        put_err(err, errlen, "history database path is empty");
        *st = HIST_E_INVALID;
        return NULL;
    }
    int readonly = (flags & HIST_OPEN_READONLY) != 0;
    if (!readonly && (*st = make_parents(path, err, errlen)))
        return NULL;
    sqlite3 *db = open_checked(path, readonly, HIST_DEFAULT_BUSY_MS, st, err, errlen);
    if (!db)
        return NULL;
    /* A file the OS will not let us write opens read-only even when asked
     * read-write; then we neither migrate nor repair, and writes say why. */
    if (!readonly && sqlite3_db_readonly(db, "main") == 1) {
        int v = 0;
        get_user_version(db, &v);
        if (v < HIST_SCHEMA_VERSION) {
            put_err(err, errlen, "%s: history database is read-only and needs upgrading (schema %d "
                                 "to %d); check permissions of the file and its folder", path, v,
                    HIST_SCHEMA_VERSION);
            *st = HIST_E_READONLY;
            sqlite3_close(db);
            return NULL;
        }
        readonly = 1;
    }
    *st = configure(db, path, !readonly, err, errlen);
    if (!*st && !readonly)
        *st = migrate(db, path, HIST_SCHEMA_VERSION, err, errlen);
    if (*st) {
        sqlite3_close(db);
        return NULL;
    }
    struct hist *h = calloc(1, sizeof *h);
    char *p = xstrndup(path, strlen(path));
    if (!h || !p) {
        free(h);
        free(p);
        sqlite3_close(db);
        put_err(err, errlen, "%s: out of memory", path);
        *st = HIST_E_NOMEM;
        return NULL;
    }
    h->db = db;
    h->path = p;
    h->readonly = readonly;
    h->busy_ms = HIST_DEFAULT_BUSY_MS;
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        strcpy(host, "localhost");
    snprintf(h->writer, sizeof h->writer, "%s:%ld", host, (long)getpid());
    if (!readonly && repair_interrupted(h)) {
        /* Not fatal: the rows stay 'streaming' and are repaired next open. */
        h->err[0] = 0;
    }
    *st = HIST_OK;
    return h;
}

struct hist *hist_open(const char *path, char *err, size_t errlen)
{
    return hist_open_ex(path, 0, NULL, err, errlen);
}

void hist_close(struct hist *h)
{
    if (!h)
        return;
    sqlite3_close(h->db);
    free(h->path);
    free(h);
}

const char *hist_last_error(const struct hist *h)
{
    return h ? h->err : "history database is not open";
}

const char *hist_path(const struct hist *h)
{
    return h ? h->path : "";
}

int hist_readonly(const struct hist *h)
{
    return h ? h->readonly : 1;
}

int hist_set_busy_timeout(struct hist *h, int ms)
{
    if (!h || ms < 0)
        return HIST_E_INVALID;
    h->busy_ms = ms;
    sqlite3_busy_timeout(h->db, ms);
    return HIST_OK;
}

/* ---- text shaping for titles and previews ---- */

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* S with whitespace runs collapsed to one space and trimmed, cut to at most
 * MAX_CHARS code points at a word boundary when one is reasonably near the
 * end (else mid-word), with "…" appended when cut. Never splits a UTF-8
 * sequence. Returns an owned string. */
static char *shorten(const char *s, size_t len, int max_chars)
{
    char *out = malloc(len + 4);
    if (!out)
        return NULL;
    size_t o = 0;
    int chars = 0, cut = 0;
    size_t last_space = 0; /* output offset of the last space, 0 = none */
    int chars_at_space = 0;
    size_t i = 0;
    while (i < len && is_ws((unsigned char)s[i]))
        i++;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (is_ws(c)) {
            while (i < len && is_ws((unsigned char)s[i]))
                i++;
            if (i == len)
                break;
            if (chars == max_chars) {
                /* the limit falls exactly at the end of a word */
                last_space = o;
                chars_at_space = chars;
                cut = 1;
                break;
            }
            last_space = o;
            chars_at_space = chars;
            out[o++] = ' ';
            chars++;
            continue;
        }
        if (chars == max_chars) {
            cut = 1;
            break;
        }
        /* copy one code point: lead byte plus continuation bytes */
        out[o++] = (char)c;
        i++;
        while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
            out[o++] = s[i++];
        chars++;
    }
    if (cut) {
        if (last_space && chars_at_space >= max_chars / 2)
            o = last_space;
        memcpy(out + o, "\xE2\x80\xA6", 3); /* U+2026 … */
        o += 3;
    }
    out[o] = 0;
    return out;
}

/* ---- sessions ---- */

static int session_exists(struct hist *h, int64_t id, int *exists)
{
    sqlite3_stmt *st;
    int ret = prepare(h, "SELECT 1 FROM sessions WHERE id = ?", &st, "reading a session");
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    *exists = rc == SQLITE_ROW;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? HIST_OK : fail(h, rc, "reading a session");
}

int hist_session_create(struct hist *h, const char *title, const char *system_prompt, int64_t *out_id)
{
    if (!h)
        return HIST_E_INVALID;
    int ret = begin_write(h, "creating a session");
    if (ret)
        return ret;
    sqlite3_stmt *st;
    if ((ret = prepare(h, "INSERT INTO sessions(title, created_ms, updated_ms, system_prompt) "
                          "VALUES (?, ?, ?, ?)", &st, "creating a session"))) {
        rollback(h);
        return ret;
    }
    char *t = title ? shorten(title, strlen(title), 200) : NULL;
    int64_t now = now_ms();
    sqlite3_bind_text(st, 1, t ? t : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, now);
    bind_text_or_null(st, 4, system_prompt);
    free(t);
    if ((ret = step_done(h, st, "creating a session"))) {
        rollback(h);
        return ret;
    }
    int64_t id = sqlite3_last_insert_rowid(h->db);
    if ((ret = commit(h, "creating a session")))
        return ret;
    if (out_id)
        *out_id = id;
    return HIST_OK;
}

#define SESSION_COLS                                                                               \
    "s.id, s.title, s.created_ms, s.updated_ms, s.model_name, s.model_digest, s.system_prompt, "  \
    "s.temperature, s.top_k, s.top_p, s.min_p, s.repeat_penalty, s.repeat_last_n, s.seed, "      \
    "s.max_tokens, (SELECT count(*) FROM messages m WHERE m.session_id = s.id), "                 \
    "(SELECT substr(m.content, 1, 200) FROM messages m WHERE m.session_id = s.id "                \
    " AND m.role = 'user' ORDER BY m.id LIMIT 1)"

static int read_session(sqlite3_stmt *st, struct hist_session *s)
{
    memset(s, 0, sizeof *s);
    s->id = sqlite3_column_int64(st, 0);
    s->title = col_strdup(st, 1, 1);
    s->created_ms = sqlite3_column_int64(st, 2);
    s->updated_ms = sqlite3_column_int64(st, 3);
    s->model_name = col_strdup(st, 4, 0);
    s->model_digest = col_strdup(st, 5, 0);
    s->system_prompt = col_strdup(st, 6, 0);
    s->has_sampling = sqlite3_column_type(st, 7) != SQLITE_NULL;
    if (s->has_sampling) {
        s->sampling.temperature = (float)sqlite3_column_double(st, 7);
        s->sampling.top_k = sqlite3_column_int(st, 8);
        s->sampling.top_p = (float)sqlite3_column_double(st, 9);
        s->sampling.min_p = (float)sqlite3_column_double(st, 10);
        s->sampling.repeat_penalty = (float)sqlite3_column_double(st, 11);
        s->sampling.repeat_last_n = sqlite3_column_int(st, 12);
        s->sampling.seed = (uint64_t)sqlite3_column_int64(st, 13);
        s->sampling.max_tokens = (int32_t)col_i64_or(st, 14, -1);
    }
    s->n_messages = sqlite3_column_int64(st, 15);
    const char *pv = (const char *)sqlite3_column_text(st, 16);
    s->preview = shorten(pv ? pv : "", pv ? (size_t)sqlite3_column_bytes(st, 16) : 0, HIST_PREVIEW_CHARS);
    if (!s->title || !s->preview || (sqlite3_column_type(st, 4) != SQLITE_NULL && !s->model_name) ||
        (sqlite3_column_type(st, 5) != SQLITE_NULL && !s->model_digest) ||
        (sqlite3_column_type(st, 6) != SQLITE_NULL && !s->system_prompt)) {
        hist_session_clear(s);
        return HIST_E_NOMEM;
    }
    return HIST_OK;
}

void hist_session_clear(struct hist_session *s)
{
    if (!s)
        return;
    free(s->title);
    free(s->model_name);
    free(s->model_digest);
    free(s->system_prompt);
    free(s->preview);
    memset(s, 0, sizeof *s);
}

void hist_sessions_free(struct hist_session *arr, size_t n)
{
    if (!arr)
        return;
    for (size_t i = 0; i < n; i++)
        hist_session_clear(&arr[i]);
    free(arr);
}

int hist_session_get(struct hist *h, int64_t id, struct hist_session *out)
{
    if (!h || !out)
        return HIST_E_INVALID;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    int ret = prepare(h, "SELECT " SESSION_COLS " FROM sessions s WHERE s.id = ?", &st, "reading a session");
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ret = read_session(st, out);
        if (ret)
            failf(h, ret, "reading session %lld: out of memory", (long long)id);
    } else if (rc == SQLITE_DONE) {
        ret = failf(h, HIST_E_NOTFOUND, "no session %lld", (long long)id);
    } else {
        ret = fail(h, rc, "reading a session");
    }
    sqlite3_finalize(st);
    return ret;
}

int hist_session_latest(struct hist *h, int64_t *out_id)
{
    if (!h || !out_id)
        return HIST_E_INVALID;
    sqlite3_stmt *st;
    int ret = prepare(h, "SELECT id FROM sessions ORDER BY updated_ms DESC, id DESC LIMIT 1", &st,
                      "finding the latest session");
    if (ret)
        return ret;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out_id = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        ret = failf(h, HIST_E_NOTFOUND, "no sessions yet");
    else
        ret = fail(h, rc, "finding the latest session");
    sqlite3_finalize(st);
    return ret;
}

int hist_session_list(struct hist *h, int limit, int offset, struct hist_session **out, size_t *n)
{
    if (!h || !out || !n || offset < 0)
        return HIST_E_INVALID;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    int ret = prepare(h, "SELECT " SESSION_COLS " FROM sessions s "
                         "ORDER BY s.updated_ms DESC, s.id DESC LIMIT ? OFFSET ?",
                      &st, "listing sessions");
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, limit > 0 ? limit : -1);
    sqlite3_bind_int64(st, 2, offset);
    size_t cap = 0, cnt = 0;
    struct hist_session *arr = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct hist_session *na = realloc(arr, nc * sizeof *na);
            if (!na) {
                ret = HIST_E_NOMEM;
                break;
            }
            arr = na;
            cap = nc;
        }
        if ((ret = read_session(st, &arr[cnt])))
            break;
        cnt++;
    }
    if (!ret && rc != SQLITE_DONE)
        ret = fail(h, rc, "listing sessions");
    else if (ret == HIST_E_NOMEM)
        failf(h, ret, "listing sessions: out of memory");
    sqlite3_finalize(st);
    if (ret) {
        hist_sessions_free(arr, cnt);
        return ret;
    }
    *out = arr;
    *n = cnt;
    return HIST_OK;
}

/* Runs one UPDATE/DELETE on session ID inside a write transaction; the
 * statement's last parameter is the id. NOTFOUND if no row changed. */
static int session_write(struct hist *h, int64_t id, sqlite3_stmt *st, const char *what)
{
    int nparam = sqlite3_bind_parameter_count(st);
    sqlite3_bind_int64(st, nparam, id);
    int ret = begin_write(h, what);
    if (ret) {
        sqlite3_finalize(st);
        return ret;
    }
    if ((ret = step_done(h, st, what))) {
        rollback(h);
        return ret;
    }
    if (sqlite3_changes(h->db) == 0) {
        rollback(h);
        return failf(h, HIST_E_NOTFOUND, "%s: no session %lld", what, (long long)id);
    }
    return commit(h, what);
}

int hist_session_rename(struct hist *h, int64_t id, const char *title)
{
    if (!h || !title)
        return HIST_E_INVALID;
    char *t = shorten(title, strlen(title), 200);
    if (!t)
        return failf(h, HIST_E_NOMEM, "renaming a session: out of memory");
    if (!*t) {
        free(t);
        return failf(h, HIST_E_INVALID, "renaming session %lld: the title is empty", (long long)id);
    }
    sqlite3_stmt *st;
    int ret = prepare(h, "UPDATE sessions SET title = ?, updated_ms = ? WHERE id = ?", &st, "renaming a session");
    if (!ret) {
        sqlite3_bind_text(st, 1, t, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, now_ms());
        ret = session_write(h, id, st, "renaming a session");
    }
    free(t);
    return ret;
}

int hist_session_delete(struct hist *h, int64_t id)
{
    if (!h)
        return HIST_E_INVALID;
    sqlite3_stmt *st;
    int ret = prepare(h, "DELETE FROM sessions WHERE id = ?", &st, "deleting a session");
    return ret ? ret : session_write(h, id, st, "deleting a session");
}

int hist_session_set_system(struct hist *h, int64_t id, const char *system_prompt)
{
    if (!h)
        return HIST_E_INVALID;
    sqlite3_stmt *st;
    int ret = prepare(h, "UPDATE sessions SET system_prompt = ?, updated_ms = ? WHERE id = ?", &st,
                      "saving the system prompt");
    if (ret)
        return ret;
    bind_text_or_null(st, 1, system_prompt);
    sqlite3_bind_int64(st, 2, now_ms());
    return session_write(h, id, st, "saving the system prompt");
}

int hist_session_set_sampling(struct hist *h, int64_t id, const struct hist_sampling *p)
{
    if (!h || !p)
        return HIST_E_INVALID;
    sqlite3_stmt *st;
    int ret = prepare(h, "UPDATE sessions SET temperature = ?, top_k = ?, top_p = ?, min_p = ?, "
                         "repeat_penalty = ?, repeat_last_n = ?, seed = ?, max_tokens = ?, "
                         "updated_ms = ? WHERE id = ?",
                      &st, "saving sampling parameters");
    if (ret)
        return ret;
    sqlite3_bind_double(st, 1, p->temperature);
    sqlite3_bind_int(st, 2, p->top_k);
    sqlite3_bind_double(st, 3, p->top_p);
    sqlite3_bind_double(st, 4, p->min_p);
    sqlite3_bind_double(st, 5, p->repeat_penalty);
    sqlite3_bind_int(st, 6, p->repeat_last_n);
    sqlite3_bind_int64(st, 7, (int64_t)p->seed); /* bit pattern kept; read back as uint64 */
    if (p->max_tokens >= 0)
        sqlite3_bind_int(st, 8, p->max_tokens);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_int64(st, 9, now_ms());
    return session_write(h, id, st, "saving sampling parameters");
}

int hist_session_set_model(struct hist *h, int64_t id, const char *name, const char *digest)
{
    if (!h)
        return HIST_E_INVALID;
    sqlite3_stmt *st;
    int ret = prepare(h, "UPDATE sessions SET model_name = ?, model_digest = ?, updated_ms = ? WHERE id = ?",
                      &st, "saving the model");
    if (ret)
        return ret;
    bind_text_or_null(st, 1, name);
    bind_text_or_null(st, 2, digest);
    sqlite3_bind_int64(st, 3, now_ms());
    return session_write(h, id, st, "saving the model");
}

/* ---- messages ---- */

#define PROGRESS_BUSY_MS 100

static int bind_content(struct hist *h, sqlite3_stmt *st, int i, const char *text, size_t len)
{
    int rc = sqlite3_bind_text64(st, i, text, len, SQLITE_STATIC, SQLITE_UTF8);
    if (rc == SQLITE_TOOBIG)
        return failf(h, HIST_E_INVALID, "message of %zu bytes is too long to store", len);
    return rc == SQLITE_OK ? HIST_OK : fail(h, rc, "storing a message");
}

static void bind_figure(sqlite3_stmt *st, int i, double v)
{
    if (v >= 0 && isfinite(v))
        sqlite3_bind_double(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static void bind_count(sqlite3_stmt *st, int i, int32_t v)
{
    if (v >= 0)
        sqlite3_bind_int(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static int touch_session(struct hist *h, int64_t session_id, int64_t now, const char *what)
{
    sqlite3_stmt *st;
    int ret = prepare(h, "UPDATE sessions SET updated_ms = max(updated_ms, ?) WHERE id = ?", &st, what);
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, session_id);
    return step_done(h, st, what);
}

/* Inserts a message row inside the caller's transaction. */
static int insert_message(struct hist *h, int64_t session_id, enum hist_role role, const char *text,
                          size_t len, int32_t n_tokens, const char *end, const char *what,
                          int64_t *out_id)
{
    int exists = 0;
    int ret = session_exists(h, session_id, &exists);
    if (ret)
        return ret;
    if (!exists)
        return failf(h, HIST_E_NOTFOUND, "%s: no session %lld", what, (long long)session_id);
    sqlite3_stmt *st;
    if ((ret = prepare(h, "INSERT INTO messages(session_id, role, content, created_ms, updated_ms, "
                          "n_tokens, end_reason, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       &st, what)))
        return ret;
    int64_t now = now_ms();
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_text(st, 2, hist_role_str(role), -1, SQLITE_STATIC);
    if ((ret = bind_content(h, st, 3, text, len))) {
        sqlite3_finalize(st);
        return ret;
    }
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now);
    bind_count(st, 6, n_tokens);
    bind_text_or_null(st, 7, end);
    bind_text_or_null(st, 8, end ? h->writer : NULL);
    if ((ret = step_done(h, st, what)))
        return ret;
    *out_id = sqlite3_last_insert_rowid(h->db);
    return touch_session(h, session_id, now, what);
}

int hist_message_add(struct hist *h, int64_t session_id, enum hist_role role, const char *text,
                     size_t len, int32_t n_tokens, int64_t *out_id)
{
    if (!h || !text || (unsigned)role > HIST_ROLE_ASSISTANT)
        return h ? failf(h, HIST_E_INVALID, "saving a message: bad role or no text") : HIST_E_INVALID;
    if (len == (size_t)-1)
        len = strlen(text);
    const char *what = "saving a message";
    int ret = begin_write(h, what);
    if (ret)
        return ret;
    int64_t id = 0;
    ret = insert_message(h, session_id, role, text, len, n_tokens, NULL, what, &id);
    if (!ret && role == HIST_ROLE_USER) {
        /* The first user message names an untitled session. */
        char *t = shorten(text, len, HIST_TITLE_CHARS);
        sqlite3_stmt *st;
        if (!t)
            ret = failf(h, HIST_E_NOMEM, "%s: out of memory", what);
        else if (*t && !(ret = prepare(h, "UPDATE sessions SET title = ? WHERE id = ? AND title = ''", &st, what))) {
            sqlite3_bind_text(st, 1, t, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 2, session_id);
            ret = step_done(h, st, what);
        }
        free(t);
    }
    if (ret) {
        rollback(h);
        return ret;
    }
    if ((ret = commit(h, what)))
        return ret;
    if (out_id)
        *out_id = id;
    return HIST_OK;
}

static struct progress_slot *slot_for(struct hist *h, int64_t msg_id, int create)
{
    struct progress_slot *oldest = &h->slots[0], *free_slot = NULL;
    for (int i = 0; i < HIST_PROGRESS_SLOTS; i++) {
        struct progress_slot *s = &h->slots[i];
        if (s->msg_id == msg_id)
            return s;
        if (!s->msg_id && !free_slot)
            free_slot = s;
        if (s->last_ms < oldest->last_ms)
            oldest = s;
    }
    if (!create)
        return NULL;
    struct progress_slot *s = free_slot ? free_slot : oldest;
    s->msg_id = msg_id;
    s->last_ms = 0;
    return s;
}

int hist_reply_begin(struct hist *h, int64_t session_id, int64_t *out_id)
{
    if (!h)
        return HIST_E_INVALID;
    const char *what = "starting a reply";
    int ret = begin_write(h, what);
    if (ret)
        return ret;
    int64_t id = 0;
    if ((ret = insert_message(h, session_id, HIST_ROLE_ASSISTANT, "", 0, -1, "streaming", what, &id))) {
        rollback(h);
        return ret;
    }
    if ((ret = commit(h, what)))
        return ret;
    slot_for(h, id, 1)->last_ms = mono_ms();
    if (out_id)
        *out_id = id;
    return HIST_OK;
}

int hist_reply_progress(struct hist *h, int64_t msg_id, const char *text, size_t len, int force)
{
    if (!h || !text)
        return HIST_E_INVALID;
    int64_t t = mono_ms();
    struct progress_slot *slot = slot_for(h, msg_id, 0);
    if (!force && slot && t - slot->last_ms < HIST_PROGRESS_MS)
        return 0;
    if (!slot)
        slot = slot_for(h, msg_id, 1);
    /* Whatever happens, the next attempt is a second away: a busy or broken
     * database must not turn every token into a failed write. */
    slot->last_ms = t;
    if (len == (size_t)-1)
        len = strlen(text);
    const char *what = "saving the reply so far";
    sqlite3_busy_timeout(h->db, h->busy_ms < PROGRESS_BUSY_MS ? h->busy_ms : PROGRESS_BUSY_MS);
    int ret = begin_write(h, what);
    sqlite3_busy_timeout(h->db, h->busy_ms);
    if (ret)
        return ret;
    sqlite3_stmt *st;
    if ((ret = prepare(h, "UPDATE messages SET content = ?, updated_ms = ? "
                          "WHERE id = ? AND end_reason = 'streaming'", &st, what))) {
        rollback(h);
        return ret;
    }
    if ((ret = bind_content(h, st, 1, text, len))) {
        sqlite3_finalize(st);
        rollback(h);
        return ret;
    }
    sqlite3_bind_int64(st, 2, now_ms());
    sqlite3_bind_int64(st, 3, msg_id);
    if ((ret = step_done(h, st, what))) {
        rollback(h);
        return ret;
    }
    if (sqlite3_changes(h->db) == 0) {
        rollback(h);
        slot->msg_id = 0;
        return failf(h, HIST_E_NOTFOUND, "%s: reply %lld is not streaming (missing or already ended)",
                     what, (long long)msg_id);
    }
    ret = commit(h, what);
    return ret ? ret : 1;
}

int hist_reply_finish(struct hist *h, int64_t msg_id, const char *text, size_t len,
                      const struct hist_reply_stats *stats, enum hist_end end)
{
    if (!h)
        return HIST_E_INVALID;
    const char *what = "saving the reply";
    if (!text || end < HIST_END_STOP || end > HIST_END_INTERRUPTED)
        return failf(h, HIST_E_INVALID, "%s: no text or bad end reason", what);
    if (len == (size_t)-1)
        len = strlen(text);
    struct progress_slot *slot = slot_for(h, msg_id, 0);
    if (slot)
        slot->msg_id = 0;
    int ret = begin_write(h, what);
    if (ret)
        return ret;
    sqlite3_stmt *st;
    if ((ret = prepare(h, "UPDATE messages SET content = ?, n_tokens = ?, n_prompt = ?, prefill_tps = ?, "
                          "decode_tps = ?, ttft_ms = ?, end_reason = ?, updated_ms = ?, writer = NULL "
                          "WHERE id = ? AND role = 'assistant'", &st, what))) {
        rollback(h);
        return ret;
    }
    if ((ret = bind_content(h, st, 1, text, len))) {
        sqlite3_finalize(st);
        rollback(h);
        return ret;
    }
    int64_t now = now_ms();
    bind_count(st, 2, stats ? stats->n_tokens : -1);
    bind_count(st, 3, stats ? stats->n_prompt : -1);
    bind_figure(st, 4, stats ? stats->prefill_tps : -1);
    bind_figure(st, 5, stats ? stats->decode_tps : -1);
    bind_figure(st, 6, stats ? stats->ttft_ms : -1);
    sqlite3_bind_text(st, 7, hist_end_str(end), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, now);
    sqlite3_bind_int64(st, 9, msg_id);
    if ((ret = step_done(h, st, what))) {
        rollback(h);
        return ret;
    }
    if (sqlite3_changes(h->db) == 0) {
        rollback(h);
        return failf(h, HIST_E_NOTFOUND, "%s: no reply %lld", what, (long long)msg_id);
    }
    if (!(ret = prepare(h, "UPDATE sessions SET updated_ms = max(updated_ms, ?) "
                           "WHERE id = (SELECT session_id FROM messages WHERE id = ?)", &st, what))) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int64(st, 2, msg_id);
        ret = step_done(h, st, what);
    }
    if (ret) {
        rollback(h);
        return ret;
    }
    return commit(h, what);
}

int hist_messages_truncate(struct hist *h, int64_t session_id, int64_t from_msg_id, int64_t *out_deleted)
{
    if (!h)
        return HIST_E_INVALID;
    const char *what = "removing the last messages";
    int ret = begin_write(h, what);
    if (ret)
        return ret;
    int exists = 0;
    if ((ret = session_exists(h, session_id, &exists))) {
        rollback(h);
        return ret;
    }
    if (!exists) {
        rollback(h);
        return failf(h, HIST_E_NOTFOUND, "%s: no session %lld", what, (long long)session_id);
    }
    sqlite3_stmt *st;
    if ((ret = prepare(h, "DELETE FROM messages WHERE session_id = ? AND id >= ?", &st, what))) {
        rollback(h);
        return ret;
    }
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, from_msg_id);
    if ((ret = step_done(h, st, what))) {
        rollback(h);
        return ret;
    }
    int64_t deleted = sqlite3_changes(h->db);
    /* Set, not max(): the change is now, even if a clock step put an earlier
     * write in the future. */
    if (!(ret = prepare(h, "UPDATE sessions SET updated_ms = ? WHERE id = ?", &st, what))) {
        sqlite3_bind_int64(st, 1, now_ms());
        sqlite3_bind_int64(st, 2, session_id);
        ret = step_done(h, st, what);
    }
    if (ret) {
        rollback(h);
        return ret;
    }
    if ((ret = commit(h, what)))
        return ret;
    /* Rowids are reused once the newest rows are gone (no AUTOINCREMENT), so
     * a stale throttle slot could hold back the first save of the next reply
     * that gets a freed id: free those slots. */
    for (int i = 0; i < HIST_PROGRESS_SLOTS; i++)
        if (h->slots[i].msg_id >= from_msg_id)
            h->slots[i].msg_id = 0;
    if (out_deleted)
        *out_deleted = deleted;
    return HIST_OK;
}

#define MESSAGE_COLS                                                                               \
    "id, session_id, role, content, created_ms, updated_ms, end_reason, n_tokens, n_prompt, "      \
    "prefill_tps, decode_tps, ttft_ms"

static int read_message(sqlite3_stmt *st, struct hist_message *m)
{
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(st, 0);
    m->session_id = sqlite3_column_int64(st, 1);
    m->role = role_parse((const char *)sqlite3_column_text(st, 2));
    const char *c = (const char *)sqlite3_column_text(st, 3);
    m->content_len = c ? (size_t)sqlite3_column_bytes(st, 3) : 0;
    m->content = xstrndup(c ? c : "", m->content_len);
    m->created_ms = sqlite3_column_int64(st, 4);
    m->updated_ms = col_i64_or(st, 5, m->created_ms);
    m->end = end_parse((const char *)sqlite3_column_text(st, 6));
    m->stats.n_tokens = (int32_t)col_i64_or(st, 7, -1);
    m->stats.n_prompt = (int32_t)col_i64_or(st, 8, -1);
    m->stats.prefill_tps = col_dbl_or(st, 9, -1);
    m->stats.decode_tps = col_dbl_or(st, 10, -1);
    m->stats.ttft_ms = col_dbl_or(st, 11, -1);
    return m->content ? HIST_OK : HIST_E_NOMEM;
}

void hist_message_clear(struct hist_message *m)
{
    if (!m)
        return;
    free(m->content);
    memset(m, 0, sizeof *m);
}

void hist_messages_free(struct hist_message *arr, size_t n)
{
    if (!arr)
        return;
    for (size_t i = 0; i < n; i++)
        free(arr[i].content);
    free(arr);
}

int hist_message_get(struct hist *h, int64_t msg_id, struct hist_message *out)
{
    if (!h || !out)
        return HIST_E_INVALID;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    int ret = prepare(h, "SELECT " MESSAGE_COLS " FROM messages WHERE id = ?", &st, "reading a message");
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, msg_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if ((ret = read_message(st, out)))
            failf(h, ret, "reading message %lld: out of memory", (long long)msg_id);
    } else if (rc == SQLITE_DONE) {
        ret = failf(h, HIST_E_NOTFOUND, "no message %lld", (long long)msg_id);
    } else {
        ret = fail(h, rc, "reading a message");
    }
    sqlite3_finalize(st);
    return ret;
}

int hist_messages(struct hist *h, int64_t session_id, struct hist_message **out, size_t *n)
{
    if (!h || !out || !n)
        return HIST_E_INVALID;
    *out = NULL;
    *n = 0;
    const char *what = "reading messages";
    /* One read transaction, so the existence check and the rows agree. */
    int rc = sqlite3_exec(h->db, "BEGIN", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(h, rc, what);
    int exists = 0;
    int ret = session_exists(h, session_id, &exists);
    if (!ret && !exists)
        ret = failf(h, HIST_E_NOTFOUND, "no session %lld", (long long)session_id);
    sqlite3_stmt *st = NULL;
    if (!ret)
        ret = prepare(h, "SELECT " MESSAGE_COLS " FROM messages WHERE session_id = ? ORDER BY id", &st, what);
    struct hist_message *arr = NULL;
    size_t cap = 0, cnt = 0;
    if (!ret) {
        sqlite3_bind_int64(st, 1, session_id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 32;
                struct hist_message *na = realloc(arr, nc * sizeof *na);
                if (!na) {
                    ret = failf(h, HIST_E_NOMEM, "%s: out of memory", what);
                    break;
                }
                arr = na;
                cap = nc;
            }
            if ((ret = read_message(st, &arr[cnt]))) {
                failf(h, ret, "%s: out of memory", what);
                break;
            }
            cnt++;
        }
        if (!ret && rc != SQLITE_DONE)
            ret = fail(h, rc, what);
        sqlite3_finalize(st);
    }
    sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
    if (ret) {
        hist_messages_free(arr, cnt);
        return ret;
    }
    *out = arr;
    *n = cnt;
    return HIST_OK;
}

/* ---- search ---- */

/* QUERY as an FTS5 expression that means "all these words, literally": each
 * whitespace-separated word becomes a quoted string (embedded quotes
 * doubled), so *, AND, NEAR(, -, ( ) and quotes are plain characters. Words
 * with no letters or digits are dropped (the tokenizer would drop them too).
 * Returns an owned string, "" if nothing is left, NULL on out of memory. */
static char *fts_literal(const char *q)
{
    size_t len = strlen(q);
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0, i = 0;
    while (i < len) {
        while (i < len && is_ws((unsigned char)q[i]))
            i++;
        size_t start = i;
        int wordy = 0;
        while (i < len && !is_ws((unsigned char)q[i])) {
            unsigned char c = (unsigned char)q[i++];
            if (c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
                wordy = 1;
        }
        if (!wordy)
            continue;
        if (o)
            out[o++] = ' ';
        out[o++] = '"';
        for (size_t k = start; k < i; k++) {
            if (q[k] == '"')
                out[o++] = '"';
            out[o++] = q[k];
        }
        out[o++] = '"';
    }
    out[o] = 0;
    return out;
}

void hist_hits_free(struct hist_hit *arr, size_t n)
{
    if (!arr)
        return;
    for (size_t i = 0; i < n; i++) {
        free(arr[i].session_title);
        free(arr[i].snippet);
    }
    free(arr);
}

int hist_search(struct hist *h, const char *query, const char *mark_open, const char *mark_close,
                int limit, struct hist_hit **out, size_t *n)
{
    if (!h || !query || !out || !n)
        return HIST_E_INVALID;
    *out = NULL;
    *n = 0;
    const char *what = "searching";
    char *expr = fts_literal(query);
    if (!expr)
        return failf(h, HIST_E_NOMEM, "%s: out of memory", what);
    if (!*expr) {
        free(expr);
        return HIST_OK;
    }
    sqlite3_stmt *st;
    int ret = prepare(h, "SELECT m.session_id, s.title, m.id, m.role, m.created_ms, "
                         "snippet(messages_fts, 0, ?, ?, '\xE2\x80\xA6', 16) "
                         "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                         "JOIN sessions s ON s.id = m.session_id "
                         "WHERE messages_fts MATCH ? ORDER BY rank, m.id DESC LIMIT ?",
                      &st, what);
    if (ret) {
        free(expr);
        return ret;
    }
    sqlite3_bind_text(st, 1, mark_open ? mark_open : "[", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, mark_close ? mark_close : "]", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, expr, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, limit > 0 ? limit : 50);
    free(expr);
    struct hist_hit *arr = NULL;
    size_t cap = 0, cnt = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct hist_hit *na = realloc(arr, nc * sizeof *na);
            if (!na) {
                ret = failf(h, HIST_E_NOMEM, "%s: out of memory", what);
                break;
            }
            arr = na;
            cap = nc;
        }
        struct hist_hit *x = &arr[cnt];
        x->session_id = sqlite3_column_int64(st, 0);
        x->session_title = col_strdup(st, 1, 1);
        x->message_id = sqlite3_column_int64(st, 2);
        x->role = role_parse((const char *)sqlite3_column_text(st, 3));
        x->created_ms = sqlite3_column_int64(st, 4);
        x->snippet = col_strdup(st, 5, 1);
        cnt++;
        if (!x->session_title || !x->snippet) {
            ret = failf(h, HIST_E_NOMEM, "%s: out of memory", what);
            break;
        }
    }
    if (!ret && rc != SQLITE_DONE)
        ret = fail(h, rc, what);
    sqlite3_finalize(st);
    if (ret) {
        hist_hits_free(arr, cnt);
        return ret;
    }
    *out = arr;
    *n = cnt;
    return HIST_OK;
}

/* ---- export ---- */

/* Length of the valid UTF-8 sequence at S (at most N bytes), or 0 if it is
 * not one (overlong forms, surrogates and values past U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* Writes S as valid UTF-8 (invalid bytes become U+FFFD), JSON-escaped if JSON. */
static void put_text(FILE *f, const char *s, size_t n, int json)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (!k) {
            fputs("\xEF\xBF\xBD", f);
            i++;
            continue;
        }
        if (json && cp < 0x80) {
            switch (cp) {
            case '"': fputs("\\\"", f); break;
            case '\\': fputs("\\\\", f); break;
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            case '\b': fputs("\\b", f); break;
            case '\f': fputs("\\f", f); break;
            default:
                if (cp < 0x20)
                    fprintf(f, "\\u%04x", (unsigned)cp);
                else
                    fputc((int)cp, f);
            }
        } else {
            fwrite(p + i, 1, k, f);
        }
        i += k;
    }
}

static void json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    put_text(f, s, strlen(s), 1);
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (v >= 0 && isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void json_int(FILE *f, int64_t v)
{
    if (v >= 0)
        fprintf(f, "%lld", (long long)v);
    else
        fputs("null", f);
}

/* "2024-05-01T12:00:00Z": UTC, so exports are the same wherever they are made. */
static void iso_time(char *buf, size_t cap, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "%lld", (long long)ms);
}

static void export_json(FILE *f, const struct hist_session *s, const struct hist_message *m, size_t n)
{
    fputs("{\n  \"format\": \"kvchat-session\",\n  \"version\": 1,\n  \"session\": {\n", f);
    fprintf(f, "    \"id\": %lld,\n    \"title\": ", (long long)s->id);
    json_str(f, s->title);
    fprintf(f, ",\n    \"created_ms\": %lld,\n    \"updated_ms\": %lld,\n", (long long)s->created_ms,
            (long long)s->updated_ms);
    fputs("    \"model\": ", f);
    json_str(f, s->model_name);
    fputs(",\n    \"model_digest\": ", f);
    json_str(f, s->model_digest);
    fputs(",\n    \"system_prompt\": ", f);
    json_str(f, s->system_prompt);
    fputs(",\n    \"sampling\": ", f);
    if (s->has_sampling) {
        const struct hist_sampling *p = &s->sampling;
        fprintf(f, "{\"temperature\": %.6g, \"top_k\": %d, \"top_p\": %.6g, \"min_p\": %.6g, "
                   "\"repeat_penalty\": %.6g, \"repeat_last_n\": %d, \"seed\": %llu, \"max_tokens\": ",
                isfinite(p->temperature) ? p->temperature : 0.0, (int)p->top_k,
                isfinite(p->top_p) ? p->top_p : 0.0, isfinite(p->min_p) ? p->min_p : 0.0,
                isfinite(p->repeat_penalty) ? p->repeat_penalty : 0.0, (int)p->repeat_last_n,
                (unsigned long long)p->seed);
        json_int(f, p->max_tokens);
        fputc('}', f);
    } else {
        fputs("null", f);
    }
    fputs("\n  },\n  \"messages\": [", f);
    for (size_t i = 0; i < n; i++) {
        const struct hist_message *x = &m[i];
        fprintf(f, "%s\n    {\"id\": %lld, \"role\": \"%s\", \"created_ms\": %lld, \"content\": \"",
                i ? "," : "", (long long)x->id, hist_role_str(x->role), (long long)x->created_ms);
        put_text(f, x->content, x->content_len, 1);
        fputs("\", \"end\": ", f);
        if (x->end == HIST_END_NONE)
            fputs("null", f);
        else
            fprintf(f, "\"%s\"", hist_end_str(x->end));
        fputs(", \"tokens\": ", f);
        json_int(f, x->stats.n_tokens);
        fputs(", \"prompt_tokens\": ", f);
        json_int(f, x->stats.n_prompt);
        fputs(", \"prefill_tps\": ", f);
        json_num(f, x->stats.prefill_tps);
        fputs(", \"decode_tps\": ", f);
        json_num(f, x->stats.decode_tps);
        fputs(", \"ttft_ms\": ", f);
        json_num(f, x->stats.ttft_ms);
        fputc('}', f);
    }
    fputs(n ? "\n  ]\n}\n" : "]\n}\n", f);
}

static void export_md(FILE *f, const struct hist_session *s, const struct hist_message *m, size_t n)
{
    char t[64];
    fputs("# ", f);
    put_text(f, *s->title ? s->title : "Untitled session", strlen(*s->title ? s->title : "Untitled session"), 0);
    iso_time(t, sizeof t, s->created_ms);
    fprintf(f, "\n\n- Session: %lld\n- Created: %s\n", (long long)s->id, t);
    if (s->model_name) {
        fputs("- Model: ", f);
        put_text(f, s->model_name, strlen(s->model_name), 0);
        if (s->model_digest) {
            fputs(" (", f);
            put_text(f, s->model_digest, strlen(s->model_digest), 0);
            fputc(')', f);
        }
        fputc('\n', f);
    }
    if (s->has_sampling)
        fprintf(f, "- Sampling: temperature %.3g, top-k %d, top-p %.3g, min-p %.3g, repeat penalty %.3g, "
                   "seed %llu\n", s->sampling.temperature, (int)s->sampling.top_k, s->sampling.top_p,
                s->sampling.min_p, s->sampling.repeat_penalty, (unsigned long long)s->sampling.seed);
    if (s->system_prompt) {
        fputs("\n## System prompt\n\n", f);
        put_text(f, s->system_prompt, strlen(s->system_prompt), 0);
        fputc('\n', f);
    }
    static const char *const HEADS[] = {"System", "User", "Assistant"};
    for (size_t i = 0; i < n; i++) {
        const struct hist_message *x = &m[i];
        iso_time(t, sizeof t, x->created_ms);
        fprintf(f, "\n## %s (%s", HEADS[x->role], t);
        if (x->end != HIST_END_NONE && x->end != HIST_END_STOP)
            fprintf(f, ", %s", hist_end_str(x->end));
        if (x->stats.n_tokens >= 0 && x->role == HIST_ROLE_ASSISTANT)
            fprintf(f, ", %d tokens", (int)x->stats.n_tokens);
        if (x->stats.decode_tps >= 0 && isfinite(x->stats.decode_tps))
            fprintf(f, ", %.1f tok/s", x->stats.decode_tps);
        fputs(")\n\n", f);
        put_text(f, x->content, x->content_len, 0);
        fputc('\n', f);
    }
}

int hist_export(struct hist *h, int64_t session_id, enum hist_format fmt, FILE *out)
{
    if (!h || !out || (fmt != HIST_FORMAT_MARKDOWN && fmt != HIST_FORMAT_JSON))
        return HIST_E_INVALID;
    struct hist_session s;
    int ret = hist_session_get(h, session_id, &s);
    if (ret)
        return ret;
    struct hist_message *m = NULL;
    size_t n = 0;
    if ((ret = hist_messages(h, session_id, &m, &n))) {
        hist_session_clear(&s);
        return ret;
    }
    if (fmt == HIST_FORMAT_JSON)
        export_json(out, &s, m, n);
    else
        export_md(out, &s, m, n);
    hist_session_clear(&s);
    hist_messages_free(m, n);
    if (fflush(out) != 0 || ferror(out))
        return failf(h, HIST_E_IO, "exporting session %lld: write failed: %s", (long long)session_id,
                     strerror(errno));
    return HIST_OK;
}
