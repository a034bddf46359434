/* repair.c - mending a damaged history database (hist_repair, history.h):
 * first in place (rebuild the indexes and the search index, in one
 * transaction, kept only if the full check then passes), else by copying
 * what can still be read into a new file with the current schema, keeping
 * the damaged file beside it under another name. Nothing is ever deleted.
 */
#include "history_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void say(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *buf, size_t cap, const char *fmt, ...)
{
    if (!buf || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

/* The full check (every index against its table) and ours (the schema). */
static int sound(sqlite3 *db, int v)
{
    sqlite3_stmt *st;
    int ok = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &st, NULL) == SQLITE_OK) {
        ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) &&
             strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
        sqlite3_finalize(st);
    }
    char what[256];
    return ok && hist_schema_matches(db, v, what, sizeof what);
}

/* Rebuilds every index and the search index; commits only if that makes
 * the file sound. */
static int try_reindex(sqlite3 *db, int v)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return 0;
    int rc = sqlite3_exec(db, "REINDEX", NULL, NULL, NULL);
    if (rc == SQLITE_OK && v >= 2)
        rc = sqlite3_exec(db, "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')", NULL, NULL,
                          NULL);
    if (rc == SQLITE_OK && sound(db, v) && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 1;
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return 0;
}

/* The columns TABLE has both in the damaged file (main) and the new one
 * (fresh), comma-separated into COLS; their count. */
static int common_columns(sqlite3 *db, const char *table, char *cols, size_t cap)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT name FROM pragma_table_info('%s', 'main') WHERE name IN "
                              "(SELECT name FROM pragma_table_info('%s', 'fresh'))", table, table);
    sqlite3_stmt *st;
    int n = 0;
    cols[0] = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t len = strlen(cols);
        snprintf(cols + len, cap - len, "%s\"%s\"", n ? "," : "", sqlite3_column_text(st, 0));
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

/* Copies the readable rows of TABLE, in rowid order without any index,
 * into fresh.TABLE. *KEPT gets the rows copied; *CUT is set when reading
 * stopped at damage. Fails only if writing the new file fails. */
static int copy_table(sqlite3 *db, const char *table, int64_t *kept, int *cut)
{
    char cols[1024], sql[2600];
    int n = common_columns(db, table, cols, sizeof cols);
    *kept = 0;
    *cut = 0;
    if (n == 0) {
        *cut = 1;
        return SQLITE_OK;
    }
    sqlite3_stmt *rd, *wr;
    snprintf(sql, sizeof sql, "SELECT %s FROM main.\"%s\" NOT INDEXED ORDER BY rowid", cols, table);
    if (sqlite3_prepare_v2(db, sql, -1, &rd, NULL) != SQLITE_OK) {
        *cut = 1;
        return SQLITE_OK;
    }
    int len = snprintf(sql, sizeof sql, "INSERT OR IGNORE INTO fresh.\"%s\"(%s) VALUES (?", table, cols);
    for (int i = 1; i < n && len < (int)sizeof sql - 4; i++)
        len += snprintf(sql + len, sizeof sql - (size_t)len, ",?");
    snprintf(sql + len, sizeof sql - (size_t)len, ")");
    int rc = sqlite3_prepare_v2(db, sql, -1, &wr, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(rd);
        return rc;
    }
    int wrc = SQLITE_DONE;
    while ((rc = sqlite3_step(rd)) == SQLITE_ROW) {
        sqlite3_reset(wr);
        for (int i = 0; i < n; i++)
            sqlite3_bind_value(wr, i + 1, sqlite3_column_value(rd, i));
        if ((wrc = sqlite3_step(wr)) != SQLITE_DONE)
            break;
        (*kept)++;
    }
    if (wrc == SQLITE_DONE && rc != SQLITE_DONE)
        *cut = 1; /* the read stopped at a damaged page */
    sqlite3_finalize(rd);
    sqlite3_finalize(wr);
    return wrc == SQLITE_DONE ? SQLITE_OK : wrc;
}

/* Copies what can be read into a new file beside PATH and swaps it in.
 * Closes DB. */
static int salvage(sqlite3 *db, const char *path, int64_t old_sessions, int64_t old_messages,
                   char *report, size_t cap)
{
    char tmp[4200], kept_as[4200], err[1024];
    snprintf(tmp, sizeof tmp, "%s.repair-%ld", path, (long)getpid());
    unlink(tmp); /* a leftover of our own earlier, failed attempt */
    int st = hist_migrate_path_to(tmp, HIST_SCHEMA_VERSION, err, sizeof err);
    if (st) {
        say(report, cap, "%s: cannot create the repaired copy: %s", path, err);
        sqlite3_close(db);
        return st;
    }
    sqlite3_stmt *at;
    int rc = sqlite3_prepare_v2(db, "ATTACH ? AS fresh", -1, &at, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(at, 1, tmp, -1, SQLITE_STATIC);
        rc = sqlite3_step(at) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
        sqlite3_finalize(at);
    }
    int64_t ks = 0, km = 0;
    int cut_s = 0, cut_m = 0;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = copy_table(db, "sessions", &ks, &cut_s);
    if (rc == SQLITE_OK)
        rc = copy_table(db, "messages", &km, &cut_m);
    if (rc == SQLITE_OK) /* rows from before schema 3 had no separate write time */
        rc = sqlite3_exec(db, "UPDATE fresh.messages SET updated_ms = created_ms WHERE updated_ms IS NULL",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        say(report, cap, "%s: cannot write the repaired copy %s: %s; the database is unchanged", path,
            tmp, sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_exec(db, "DETACH fresh", NULL, NULL, NULL);
        sqlite3_close(db);
        unlink(tmp);
        return hist_status_of(rc);
    }
    sqlite3_exec(db, "DETACH fresh", NULL, NULL, NULL);
    sqlite3_close(db);

    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(kept_as, sizeof kept_as, "%s.damaged-%s", path, stamp);
    if (rename(path, kept_as) != 0) {
        say(report, cap, "%s: cannot rename the damaged file: %s; the readable rows are in %s", path,
            strerror(errno), tmp);
        return HIST_E_IO;
    }
    /* The journal belongs to the damaged file: it goes with it. */
    char side[4300], side_to[4300];
    static const char *const SIDES[] = {"-wal", "-shm"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(side, sizeof side, "%s%s", path, SIDES[i]);
        snprintf(side_to, sizeof side_to, "%s%s", kept_as, SIDES[i]);
        if (access(side, F_OK) == 0)
            rename(side, side_to);
    }
    if (rename(tmp, path) != 0) {
        say(report, cap, "%s: cannot move the repaired copy %s into place: %s; the damaged file "
                         "is %s", path, tmp, strerror(errno), kept_as);
        return HIST_E_IO;
    }
    char lost[512] = "";
    int64_t ls = old_sessions > ks ? old_sessions - ks : 0;
    int64_t lm = old_messages > km ? old_messages - km : 0;
    if (ls || lm)
        snprintf(lost, sizeof lost, "lost %lld session%s and %lld message%s that could not be read",
                 (long long)ls, ls == 1 ? "" : "s", (long long)lm, lm == 1 ? "" : "s");
    else if (cut_s || cut_m)
        snprintf(lost, sizeof lost, "lost the %s after a damaged page, which could not be read",
                 cut_s ? "sessions" : "messages");
    else
        snprintf(lost, sizeof lost, "lost nothing");
    say(report, cap, "%s: repaired: kept %lld session%s and %lld message%s in a new file with the "
                     "current schema; %s; the damaged file is kept as %s", path, (long long)ks,
        ks == 1 ? "" : "s", (long long)km, km == 1 ? "" : "s", lost, kept_as);
    return HIST_OK;
}

int hist_repair(const char *path, char *report, size_t cap)
{
    if (report && cap)
        report[0] = 0;
    if (!path || !*path) {
        say(report, cap, "history database path is empty");
        return HIST_E_INVALID;
    }
    if (access(path, F_OK) != 0) {
        say(report, cap, "%s: no history database here: nothing to repair", path);
        return HIST_E_NOTFOUND;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK || sqlite3_db_readonly(db, "main") == 1) {
        say(report, cap, "%s: cannot open the history database for writing: %s", path,
            rc != SQLITE_OK ? sqlite3_errmsg(db) : "it is read-only (check permissions)");
        sqlite3_close(db);
        return rc != SQLITE_OK ? hist_status_of(rc) : HIST_E_READONLY;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 3000);
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    int64_t v = 0;
    if ((rc = hist_query_int(db, "PRAGMA user_version", &v)) != SQLITE_OK || v < 1 || v > HIST_SCHEMA_VERSION) {
        if (rc != SQLITE_OK)
            say(report, cap, "%s: cannot read the history database: %s; it is left as it is", path,
                sqlite3_errmsg(db));
        else
            say(report, cap, "%s: not a kvchat history database this kvchat knows (schema %lld); it "
                             "is left as it is", path, (long long)v);
        sqlite3_close(db);
        return rc != SQLITE_OK ? hist_status_of(rc) : HIST_E_CORRUPT;
    }
    if (sound(db, (int)v)) {
        say(report, cap, "%s: the history database is sound: nothing to repair", path);
        sqlite3_close(db);
        return HIST_OK;
    }
    if (try_reindex(db, (int)v)) {
        say(report, cap, "%s: repaired: rebuilt the indexes and the search index; lost nothing", path);
        sqlite3_close(db);
        return HIST_OK;
    }
    int64_t ns = -1, nm = -1; /* what the damaged tables claim, where readable */
    hist_query_int(db, "SELECT count(*) FROM sessions NOT INDEXED", &ns);
    hist_query_int(db, "SELECT count(*) FROM messages NOT INDEXED", &nm);
    return salvage(db, path, ns, nm, report, cap); /* closes DB */
}
