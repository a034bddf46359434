/* open.c - opening and closing the history store (history.h): the schema
 * migrations, the checks a file must pass before it is used, the
 * connection's pragmas, the repair of replies whose writer died, and the
 * default database path.
 *
 * The schema is versioned with PRAGMA user_version; MIGRATIONS below are the
 * only DDL, applied in order, and tests build old databases from the same
 * steps (hist_migrate_path_to).
 */
#include "history_internal.h"

#include "xdg.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define HIST_DEFAULT_BUSY_MS 3000
#define HIST_STALE_WRITER_MS 3600000 /* a streaming reply from another host is dead after an hour */

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

    /* v4: which engine and model produced each reply, since a session can
     * move between a local model and a server. NULL: unknown (older rows,
     * user and system messages). */
    "ALTER TABLE messages ADD COLUMN engine TEXT;"
    "ALTER TABLE messages ADD COLUMN model TEXT;"
    "PRAGMA user_version = 4;",

    /* v5: session ids are never given out twice. A plain INTEGER PRIMARY KEY
     * takes max(id) + 1, so deleting the newest session handed its number
     * to the next one, and "session 3" in an old export or note named
     * another conversation. AUTOINCREMENT keeps the highest id ever used
     * (in sqlite_sequence; the copy below starts it at the highest id left:
     * a session deleted before this step left no trace of its id). SQLite
     * cannot add it in place, so the table is
     * rebuilt as its documentation prescribes: new table, copy (ids kept,
     * so messages still point at their session), drop, rename, the index
     * again. migrate() runs this with foreign keys off (a DROP with them on
     * would cascade into messages) and checks them before committing. */
    "CREATE TABLE sessions_v5("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  model_name TEXT,"
    "  model_digest TEXT,"
    "  system_prompt TEXT,"
    "  temperature REAL, top_k INTEGER, top_p REAL, min_p REAL,"
    "  repeat_penalty REAL, repeat_last_n INTEGER, seed INTEGER, max_tokens INTEGER);"
    "INSERT INTO sessions_v5(id, title, created_ms, updated_ms, model_name, model_digest,"
    "  system_prompt, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed,"
    "  max_tokens)"
    "  SELECT id, title, created_ms, updated_ms, model_name, model_digest, system_prompt,"
    "  temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed, max_tokens"
    "  FROM sessions;"
    "DROP TABLE sessions;"
    "ALTER TABLE sessions_v5 RENAME TO sessions;"
    "CREATE INDEX sessions_by_updated ON sessions(updated_ms);"
    "PRAGMA user_version = 5;",

    /* v6: reply variants and reasoning kept apart. /retry keeps the earlier
     * replies of its turn: a later one names the turn's first reply in
     * variant_of (NULL: not a variant, or the first of its turn), and
     * variant_off = 1 marks those not chosen, which the model does not see
     * (one reply of each turn has 0). thinking is a reasoning model's
     * "<think>" text, which older rows kept at the start of content: moved
     * out here, so content is the answer alone (and search finds answers). */
    "ALTER TABLE messages ADD COLUMN variant_of INTEGER;"
    "ALTER TABLE messages ADD COLUMN variant_off INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE messages ADD COLUMN thinking TEXT;"
    "UPDATE messages SET thinking = substr(content, 8, instr(content, '</think>') - 8),"
    "  content = ltrim(substr(content, instr(content, '</think>') + 8), char(9, 10, 13, 32))"
    "  WHERE role = 'assistant' AND substr(content, 1, 7) = '<think>'"
    "  AND instr(content, '</think>') > 0;"
    "PRAGMA user_version = 6;",
};
_Static_assert(sizeof MIGRATIONS / sizeof MIGRATIONS[0] == HIST_SCHEMA_VERSION,
               "one migration step per schema version");

/* Error text for the failures before a struct hist exists (ERR may be NULL). */
static void put_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
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
    char *dir = hist_strndup(path, strlen(path));
    if (!dir) {
        put_err(err, errlen, "%s: out of memory", path);
        return HIST_E_NOMEM;
    }
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

int hist_query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* hist_query_int for values that fit an int (user_version is 32 bits). */
static int query_int(sqlite3 *db, const char *sql, int *out)
{
    int64_t v = 0;
    int rc = hist_query_int(db, sql, &v);
    if (rc == SQLITE_OK)
        *out = (int)v;
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

static int migrate_steps(sqlite3 *db, const char *path, int target, char *err, size_t errlen);

/* Applies the steps that take the database from its version to TARGET. Each
 * step re-reads the version inside its transaction, so two kvchats opening an
 * old database at once migrate it once. */
static int migrate(sqlite3 *db, const char *path, int target, char *err, size_t errlen)
{
    /* Up to date (the common case): no write lock, so another process
     * holding one is no reason to fail, nor to speak of an upgrade. */
    int v0 = 0;
    if (get_user_version(db, &v0) == SQLITE_OK && v0 >= target)
        return HIST_OK;
    /* A step that rebuilds a table (v5) drops the old one, which with
     * foreign keys on would delete every message through ON DELETE
     * CASCADE. The pragma is a no-op inside a transaction, so it is set
     * here, around all the steps, and each step is checked with
     * foreign_key_check before its commit instead. */
    int fk = 0;
    query_int(db, "PRAGMA foreign_keys", &fk);
    sqlite3_exec(db, "PRAGMA foreign_keys = OFF", NULL, NULL, NULL);
    int st = migrate_steps(db, path, target, err, errlen);
    if (fk)
        sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    return st;
}

/* How many rows point nowhere (PRAGMA foreign_key_check) into *N; returns
 * the SQLite status (out of memory, a lock). A step may not add any; rows a
 * file already had (written by a tool with foreign keys off) are no reason
 * to refuse the upgrade. */
static int dangling_rows(sqlite3 *db, int64_t *n)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ++*n;
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int migrate_steps(sqlite3 *db, const char *path, int target, char *err, size_t errlen)
{
    for (;;) {
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            hist_fmt_sqlite_err(err, errlen, path, db, rc, "upgrading the schema");
            return hist_status_of(rc);
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
        int64_t before = 0, after = 0;
        if (rc == SQLITE_OK)
            rc = dangling_rows(db, &before);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, MIGRATIONS[v], NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = dangling_rows(db, &after);
        if (rc == SQLITE_OK && after > before)
            rc = SQLITE_CONSTRAINT_FOREIGNKEY;
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof what, "upgrading the schema to version %d", v + 1);
            hist_fmt_sqlite_err(err, errlen, path, db, rc, what);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return hist_status_of(rc);
        }
    }
}

/* Marks replies whose writer died as interrupted (see history.h). */
static int repair_interrupted(struct hist *h)
{
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "SELECT id, writer, updated_ms FROM messages WHERE end_reason = 'streaming'",
                           &st, "looking for interrupted replies");
    if (ret)
        return ret;
    int64_t dead[64];
    int ndead = 0;
    size_t hostlen = (size_t)(strchr(h->writer, ':') - h->writer);
    int64_t now = hist_now_ms();
    int rc;
    while (ndead < 64 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *w = (const char *)sqlite3_column_text(st, 1);
        int64_t upd = hist_col_i64_or(st, 2, 0);
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
    if ((ret = hist_begin_write(h, "marking interrupted replies")))
        return ret;
    for (int i = 0; i < ndead && !ret; i++) {
        if ((ret = hist_prepare(h, "UPDATE messages SET end_reason = 'interrupted' "
                                   "WHERE id = ? AND end_reason = 'streaming'",
                                &st, "marking interrupted replies")))
            break;
        sqlite3_bind_int64(st, 1, dead[i]);
        ret = hist_step_done(h, st, "marking interrupted replies");
    }
    if (ret) {
        hist_rollback(h);
        return ret;
    }
    return hist_commit(h, "marking interrupted replies");
}

/* Whether the file's schema is the one MIGRATIONS create for version V, and
 * its indexes hold as many rows as their tables. PRAGMA quick_check reads
 * every page but never compares an index with its table, so a schema text
 * altered in place, or an index missing rows, would pass it and then fail
 * writes mid-reply. The reference schema is built in memory from the same
 * steps (a few ms). On a mismatch, names the object in WHAT and returns 0. */
int hist_schema_matches(sqlite3 *db, int v, char *what, size_t cap)
{
    if (v < 1 || v > HIST_SCHEMA_VERSION)
        return 1;
    sqlite3 *ref = NULL;
    int ok = 1;
    if (sqlite3_open_v2(":memory:", &ref, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(ref);
        return 1; /* cannot check: do not call a sound file damaged */
    }
    for (int i = 0; i < v; i++)
        if (sqlite3_exec(ref, MIGRATIONS[i], NULL, NULL, NULL) != SQLITE_OK) {
            sqlite3_close(ref);
            return 1;
        }
    sqlite3_stmt *rs = NULL, *fs = NULL;
    /* Our own objects only: SQLite's internal ones, and the FTS5 shadow
     * tables, whose text is SQLite's and may change between its versions. */
    const char *list = "SELECT type, name, coalesce(sql, '') FROM sqlite_schema "
                       "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND NOT (type = 'table' "
                       "AND name LIKE 'messages\\_fts\\_%' ESCAPE '\\') ORDER BY name";
    const char *one = "SELECT coalesce(sql, '') FROM sqlite_schema WHERE name = ?";
    if (sqlite3_prepare_v2(ref, list, -1, &rs, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, one, -1, &fs, NULL) == SQLITE_OK) {
        while (ok && sqlite3_step(rs) == SQLITE_ROW) {
            const char *type = (const char *)sqlite3_column_text(rs, 0);
            const char *name = (const char *)sqlite3_column_text(rs, 1);
            const char *sql = (const char *)sqlite3_column_text(rs, 2);
            sqlite3_reset(fs);
            sqlite3_bind_text(fs, 1, name, -1, SQLITE_STATIC); /* rebound before each step */
            int rc = sqlite3_step(fs);
            if (rc != SQLITE_ROW)
                snprintf(what, cap, "%s %s is missing", type, name), ok = 0;
            else if (strcmp((const char *)sqlite3_column_text(fs, 0), sql) != 0)
                snprintf(what, cap, "%s %s differs from its definition", type, name), ok = 0;
        }
    }
    sqlite3_finalize(rs);
    sqlite3_finalize(fs);
    sqlite3_close(ref);
    /* Row counts: each index against its table, read without it. */
    static const struct { const char *name, *index_sql, *table_sql; } COUNTS[] = {
        {"index messages_by_session", "SELECT count(*) FROM messages INDEXED BY messages_by_session "
                                      "WHERE session_id IS NOT NULL OR session_id IS NULL",
         "SELECT count(*) FROM messages NOT INDEXED"},
        {"index messages_fts", "SELECT count(*) FROM messages_fts_docsize",
         "SELECT count(*) FROM messages NOT INDEXED"},
        {"index sessions_by_updated", "SELECT count(*) FROM sessions INDEXED BY sessions_by_updated "
                                      "WHERE updated_ms IS NOT NULL OR updated_ms IS NULL",
         "SELECT count(*) FROM sessions NOT INDEXED"},
    };
    static const int SINCE[] = {1, 2, 3}; /* schema version that made each */
    /* Both counts of a pair must come from one snapshot, or another process
     * appending between them (two kvchats at once) looks like damage: a
     * savepoint is a read transaction here, or nests in the caller's. */
    if (sqlite3_exec(db, "SAVEPOINT hist_counts", NULL, NULL, NULL) != SQLITE_OK)
        return ok; /* cannot take a snapshot (busy): skip the cheap check */
    for (size_t i = 0; ok && i < sizeof COUNTS / sizeof COUNTS[0]; i++) {
        if (v < SINCE[i])
            continue;
        int a = 0, b = 0;
        if (query_int(db, COUNTS[i].index_sql, &a) == SQLITE_OK &&
            query_int(db, COUNTS[i].table_sql, &b) == SQLITE_OK && a != b)
            snprintf(what, cap, "%s disagrees with its table", COUNTS[i].name), ok = 0;
    }
    sqlite3_exec(db, "RELEASE hist_counts", NULL, NULL, NULL);
    return ok;
}

/* "file:PATH?immutable=1" into BUF, PATH percent-encoded (a URI filename
 * gives ?, # and % meanings). 0, or -1 if BUF is too small. */
static int immutable_uri(const char *path, char *buf, size_t cap)
{
    static const char HEX[] = "0123456789ABCDEF";
    size_t o = 0;
    int n = snprintf(buf, cap, "file:");
    o = (size_t)n;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (o + 4 >= cap)
            return -1;
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/-._~", *p)) {
            buf[o++] = (char)*p;
        } else {
            buf[o++] = '%';
            buf[o++] = HEX[*p >> 4];
            buf[o++] = HEX[*p & 15];
        }
    }
    n = snprintf(buf + o, cap - o, "?immutable=1");
    return n < 0 || (size_t)n >= cap - o ? -1 : 0;
}

/* Opens NAME with FLAGS into *DB and sets what every connection of ours
 * has. A result code; on failure *DB may still need sqlite3_close (it holds
 * the message). */
static int connect_db(const char *name, int flags, int busy_ms, sqlite3 **db)
{
    int rc = sqlite3_open_v2(name, db, flags, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_extended_result_codes(*db, 1);
    sqlite3_busy_timeout(*db, busy_ms);
    /* The file is untrusted input: no SQL may corrupt it deliberately (writable
     * schema, raw page writes). The schema stays trusted because our own
     * triggers keep the FTS5 index, a virtual table, in step. */
    return sqlite3_db_config(*db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
}

/* Opens the file and checks it is ours and sound, without writing.
 * IMMUTABLE (read-only opens only) tells SQLite nobody can change the file,
 * so it needs no -shm beside it: see hist_open_ex. */
static sqlite3 *open_checked(const char *path, int readonly, int immutable, int busy_ms, int *status,
                             char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    char uri[8300];
    const char *name = path;
    if (immutable && readonly && immutable_uri(path, uri, sizeof uri) == 0) {
        name = uri;
        flags |= SQLITE_OPEN_URI;
    }
    int rc = connect_db(name, flags, busy_ms, &db);
    if (rc != SQLITE_OK) {
        hist_fmt_sqlite_err(err, errlen, path, db, rc, "opening the history database");
        *status = hist_status_of(rc);
        sqlite3_close(db);
        return NULL;
    }
    int v = 0, ntab = 0, ok = 0;
    char damage[256] = "";
    rc = get_user_version(db, &v);
    if (rc == SQLITE_OK)
        rc = count_tables(db, &ntab);
    if (rc == SQLITE_OK)
        rc = quick_check(db, &ok);
    if (rc != SQLITE_OK) {
        hist_fmt_sqlite_err(err, errlen, path, db, rc, "opening the history database");
        *status = hist_status_of(rc);
    } else if (!ok) {
        put_err(err, errlen, "%s: history database is corrupt (integrity check failed): run kvchat "
                             "--repair --db %s, or move it aside and kvchat starts a new one",
                path, path);
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
    } else if (!hist_schema_matches(db, v, damage, sizeof damage)) {
        put_err(err, errlen, "%s: the history database is damaged (%s): run kvchat --repair --db %s",
                path, damage, path);
        *status = HIST_E_CORRUPT;
    } else if (readonly && v < HIST_READABLE_FROM) {
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
        hist_fmt_sqlite_err(err, errlen, path, db, rc, "cannot set up history database");
        return hist_status_of(rc);
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
    sqlite3 *db = open_checked(path, 0, 0, HIST_DEFAULT_BUSY_MS, &st, err, errlen);
    if (!db)
        return st;
    st = configure(db, path, 1, err, errlen);
    if (!st)
        st = migrate(db, path, version, err, errlen);
    sqlite3_close(db);
    return st;
}

/* SQLite says "unable to open database file" with the errno of its last
 * call, which for a read-only disk or folder is often ENOENT. Ask the
 * folder and the file ourselves and name the real cause. */
static void explain_no_access(const char *path, int readonly, int *st, char *err, size_t errlen)
{
    char *dir = hist_strndup(path, strlen(path));
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    int exists = access(path, F_OK) == 0;
    if (!readonly && !exists && access(dir, W_OK) != 0 && (errno == EROFS || errno == EACCES)) {
        put_err(err, errlen, "%s: the folder is %s: pass --db FILE on a writable disk or "
                             "--no-history", path, errno == EROFS ? "on a read-only disk" : "read-only");
        *st = HIST_E_READONLY;
    } else if (exists && access(path, R_OK) != 0) {
        put_err(err, errlen, "%s: cannot read the history database: %s: check its permissions, "
                             "or pass --db FILE or --no-history", path, strerror(errno));
        *st = HIST_E_READONLY;
    } else if (!readonly && exists && access(dir, W_OK) != 0 && (errno == EROFS || errno == EACCES)) {
        put_err(err, errlen, "%s: the folder is %s (the database needs to write its journal "
                             "beside it): pass --db FILE on a writable disk or --no-history", path,
                errno == EROFS ? "on a read-only disk" : "read-only");
        *st = HIST_E_READONLY;
    }
    free(dir);
}

/* 1 when PATH's folder cannot take new files (read-only disk, no write
 * permission). */
static int folder_unwritable(const char *path)
{
    char *dir = hist_strndup(path, strlen(path));
    if (!dir)
        return 0;
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    int r = access(dir, W_OK) != 0 && (errno == EROFS || errno == EACCES);
    free(dir);
    return r;
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
    sqlite3 *db = open_checked(path, readonly, 0, HIST_DEFAULT_BUSY_MS, st, err, errlen);
    if (!db && readonly && (*st == HIST_E_IO || *st == HIST_E_READONLY) && folder_unwritable(path) &&
        access(path, R_OK) == 0) {
        /* A WAL database needs its -shm file to be read, and a read-only
         * folder (or disk) cannot hold a new one: SQLite says "unable to
         * open". Nothing can commit to the file there either (a writer
         * needs the -wal beside it), so it is read as immutable. */
        db = open_checked(path, readonly, 1, HIST_DEFAULT_BUSY_MS, st, err, errlen);
    }
    if (!db) {
        if (*st == HIST_E_IO || *st == HIST_E_READONLY)
            explain_no_access(path, readonly, st, err, errlen);
        return NULL;
    }
    /* A file the OS will not let us write opens read-only even when asked
     * read-write; then we neither migrate nor repair, and writes say why. */
    if (!readonly && sqlite3_db_readonly(db, "main") == 1) {
        int v = 0;
        get_user_version(db, &v);
        if (v < HIST_READABLE_FROM) {
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
    sqlite3_stmt *rollback = NULL;
    int rc = sqlite3_prepare_v2(db, "ROLLBACK", -1, &rollback, NULL);
    if (rc != SQLITE_OK) {
        hist_fmt_sqlite_err(err, errlen, path, db, rc, "opening the history database");
        *st = hist_status_of(rc);
        sqlite3_close(db);
        return NULL;
    }
    struct hist *h = calloc(1, sizeof *h);
    char *p = hist_strndup(path, strlen(path));
    if (!h || !p) {
        free(h);
        free(p);
        sqlite3_finalize(rollback);
        sqlite3_close(db);
        put_err(err, errlen, "%s: out of memory", path);
        *st = HIST_E_NOMEM;
        return NULL;
    }
    h->db = db;
    h->rollback = rollback;
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

/* The file was checked and migrated when H was opened, and this process
 * has written it since, so the new connection skips those checks: it only
 * has to be set up as the first one was. A read-only connection is kept
 * (it writes nothing, so no failed write can have left state behind, and
 * it may have been opened as immutable). */
int hist_reconnect(struct hist *h, const char *what)
{
    if (h->readonly) {
        h->reconnect = 0;
        return HIST_OK;
    }
    /* Not inside a transaction, nor under a statement still being read:
     * the next call tries again. (The connection also holds FTS5's own
     * statements, idle between uses; closing it finalizes them.) */
    for (sqlite3_stmt *s = NULL; (s = sqlite3_next_stmt(h->db, s));)
        if (sqlite3_stmt_busy(s))
            return HIST_OK;
    if (!sqlite3_get_autocommit(h->db))
        return HIST_OK;
    sqlite3 *db = NULL;
    sqlite3_stmt *rollback = NULL;
    char err[sizeof h->err];
    int rc = connect_db(h->path, SQLITE_OPEN_READWRITE, h->busy_ms, &db);
    int st = rc == SQLITE_OK ? configure(db, h->path, 1, err, sizeof err) : HIST_OK;
    if (rc == SQLITE_OK && st == HIST_OK)
        rc = sqlite3_prepare_v2(db, "ROLLBACK", -1, &rollback, NULL);
    if (rc != SQLITE_OK || st != HIST_OK) {
        if (rc != SQLITE_OK) {
            hist_fmt_sqlite_err(h->err, sizeof h->err, h->path, db, rc, what);
            st = hist_status_of(rc);
        } else {
            snprintf(h->err, sizeof h->err, "%s", err);
        }
        sqlite3_close(db);
        return st;
    }
    sqlite3_finalize(h->rollback);
    sqlite3_close_v2(h->db); /* _v2: a statement left unfinalized would keep it open, not leak it */
    h->db = db;
    h->rollback = rollback;
    h->reconnect = 0;
    return HIST_OK;
}

struct hist *hist_open(const char *path, char *err, size_t errlen)
{
    return hist_open_ex(path, 0, NULL, err, errlen);
}

void hist_close(struct hist *h)
{
    if (!h)
        return;
    sqlite3_finalize(h->rollback); /* sqlite3_close keeps a connection with statements open */
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
