/* make_history_corpus.c - writes the seed corpus of fuzz_history: small
 * history databases, each under 64 KiB.
 *
 * Usage: make_history_corpus OUTDIR  (rewrites the .db files in OUTDIR; the checked-in
 * corpus is tests/fuzz/corpus/history, made with this program).
 *
 * The well-formed seeds are made through the real API (history.h), so they
 * are what kvchat writes; the rest take one of those and edit rows or the
 * schema with raw SQL into what no kvchat writes but a damaged or hostile
 * file may hold (NULL columns, wrong types, huge numbers, bad UTF-8, missing
 * tables, odd user_version). Every seed is vacuumed to 512-byte pages in
 * rollback-journal mode, so it is small and self-contained.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "history.h"

static const char *outdir;

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "make_history_corpus: %s: %s\n", what, msg);
    exit(1);
}

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s.db", outdir, name);
}

static void remove_db(const char *p)
{
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    char q[1200];
    for (size_t i = 0; i < 4; i++) {
        snprintf(q, sizeof q, "%s%s", p, sfx[i]);
        unlink(q);
    }
}

static void raw(const char *p, const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;
    if (sqlite3_open(p, &db) != SQLITE_OK)
        die(p, sqlite3_errmsg(db));
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die(sql, msg ? msg : "?");
    sqlite3_close(db);
}

/* 512-byte pages, no WAL: the smallest self-contained file. */
static void shrink(const char *p)
{
    raw(p, "PRAGMA journal_mode = DELETE; PRAGMA page_size = 512; VACUUM;");
    struct stat sb;
    if (stat(p, &sb) != 0 || sb.st_size >= 65536)
        die(p, "seed is not under 64 KiB");
}

static struct hist *open_new(const char *name, char *p, size_t cap)
{
    path_of(p, cap, name);
    remove_db(p);
    char err[1024];
    struct hist *h = hist_open(p, err, sizeof err);
    if (!h)
        die(p, err);
    return h;
}

#define OK(call)                                                                                   \
    do {                                                                                           \
        if ((call) != HIST_OK)                                                                     \
            die(#call, hist_last_error(h));                                                        \
    } while (0)

/* Two sessions with every kind of row the API writes. */
static void make_chat(const char *name, char *p, size_t cap)
{
    struct hist *h = open_new(name, p, cap);
    int64_t s1, s2, id, r;
    OK(hist_session_create(h, NULL, "You are terse.", &s1));
    OK(hist_session_set_model(h, s1, "gemma-3-1b-it-Q4_K_M.gguf", "sha256:0123abcd"));
    struct hist_sampling sp = {0.7f, 40, 0.95f, 0.05f, 1.1f, 64, 18446744073709551615ull, 512};
    OK(hist_session_set_sampling(h, s1, &sp));
    OK(hist_message_add(h, s1, HIST_ROLE_SYSTEM, "system words", (size_t)-1, -1, &id));
    OK(hist_message_add(h, s1, HIST_ROLE_USER, "Hello there, caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", (size_t)-1, 9, &id));
    OK(hist_reply_begin_from(h, s1, "cpu", "gemma-3-1b-it-Q4_K_M.gguf", &r));
    if (hist_reply_progress(h, r, "Hel", 3, 1) != 1)
        die("progress", hist_last_error(h));
    struct hist_reply_stats st = {12, 30, 850.5, 42.25, 61.0};
    OK(hist_reply_finish(h, r, "Hello! \"quoted\" \\ tab\t nl\n ctl\x01 end", (size_t)-1, &st, HIST_END_STOP));
    OK(hist_message_add(h, s1, HIST_ROLE_USER, "nul\0inside and bad \xff\xfe utf8", 30, -1, &id));
    OK(hist_reply_begin_from(h, s1, "remote", "qwen3:8b@gpu-box:8000", &r)); /* resumed on a server */
    OK(hist_reply_finish(h, r, "cut", 3, NULL, HIST_END_CANCELLED));
    OK(hist_reply_begin(h, s1, &r)); /* left streaming */
    OK(hist_session_create(h, "  a   title\twith   spaces  ", NULL, &s2));
    OK(hist_message_add(h, s2, HIST_ROLE_USER, "second session hello", (size_t)-1, -1, &id));
    OK(hist_reply_begin(h, s2, &r));
    OK(hist_reply_finish(h, r, "length", 6, NULL, HIST_END_LENGTH));
    hist_close(h);
    /* The streaming reply as if its writer died long ago on this host. */
    raw(p, "UPDATE messages SET writer = 'nohost:1', updated_ms = 1 WHERE end_reason = 'streaming'");
    shrink(p);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        die("usage", "make_history_corpus OUTDIR");
    outdir = argv[1];
    mkdir(outdir, 0755);
    char p[1200], err[1024];

    /* Fresh, empty, current schema. */
    hist_close(open_new("empty", p, sizeof p));
    shrink(p);

    /* Earlier schemas, with a row each (raw: the API would migrate them). */
    for (int v = 1; v < HIST_SCHEMA_VERSION; v++) {
        char name[16];
        snprintf(name, sizeof name, "v%d", v);
        path_of(p, sizeof p, name);
        remove_db(p);
        if (hist_migrate_path_to(p, v, err, sizeof err) != HIST_OK)
            die(p, err);
        raw(p, "INSERT INTO sessions(id, title, created_ms, updated_ms) VALUES (1, 'old', 1000, 2000);"
               "INSERT INTO messages(session_id, role, content, created_ms, end_reason) VALUES"
               " (1, 'user', 'old hello', 1000, NULL), (1, 'assistant', 'old reply', 1001, 'streaming');");
        shrink(p);
    }

    make_chat("chat", p, sizeof p);

    /* Rows no kvchat writes: NULLs, wrong types, huge and negative numbers,
     * unknown roles and end reasons, a blob title, orphan messages. The
     * constraints are dropped by rebuilding the tables loosely. */
    make_chat("hostile-rows", p, sizeof p);
    raw(p, "PRAGMA foreign_keys = OFF; BEGIN;"
           "DROP TRIGGER messages_fts_ai; DROP TRIGGER messages_fts_ad; DROP TRIGGER messages_fts_au;"
           "ALTER TABLE sessions RENAME TO s_old; ALTER TABLE messages RENAME TO m_old;"
           "CREATE TABLE sessions(id, title, created_ms, updated_ms, model_name, model_digest, system_prompt,"
           " temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed, max_tokens);"
           "CREATE TABLE messages(id, session_id, role, content, created_ms, n_tokens, end_reason,"
           " updated_ms, n_prompt, prefill_tps, decode_tps, ttft_ms, writer, engine, model);"
           "INSERT INTO sessions SELECT * FROM s_old; INSERT INTO messages SELECT id, session_id, role,"
           " content, created_ms, n_tokens, end_reason, updated_ms, n_prompt, prefill_tps, decode_tps,"
           " ttft_ms, writer, engine, model FROM m_old; DROP TABLE s_old; DROP TABLE m_old;"
           "INSERT INTO sessions VALUES (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
           " NULL, NULL, NULL, NULL);"
           "INSERT INTO sessions VALUES (4, x'00ff41', 'yesterday', 9.9e300, x'c0af', 7, 1.5,"
           " 1e308, 'many', -1e308, 'x', -0.0, 9223372036854775807, -9223372036854775808, 'none');"
           "INSERT INTO sessions VALUES ('5', 'text id', -9223372036854775808, 9223372036854775807,"
           " '', '', '', 1e999, -2147483649, -1e999, 0, 0, 2147483648, 1.5, 9999999999);"
           "INSERT INTO messages VALUES (NULL, 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
           " NULL, NULL, NULL, NULL);"
           "INSERT INTO messages VALUES (100, 3, 'robot', x'ff00fe', 'now', 'many', 'exploded', x'01',"
           " -5, 1e999, -1e999, 'fast', 12345, x'ff00', 1e999);"
           "INSERT INTO messages VALUES (101, 4, 'assistant', 12345, 9223372036854775807, 9999999999,"
           " 'streaming', -9223372036854775808, 2147483648, -0.0, 1e308, -1, x'3a', 42, '');"
           "INSERT INTO messages VALUES (102, 4, 'user', 'hello ' || hex(randomblob(40)), -9223372036854775808,"
           " -1, '', 0, 0, 0, 0, 0, ':', 'cpu', cast(x'6dc328' AS TEXT));"
           "INSERT INTO messages VALUES (103, 99, 'system', 'orphan hello', 0, 0, 'stop', 0, 0, 0, 0, 0, NULL,"
           " 'remote', 'm@h:1');"
           "INSERT INTO messages VALUES (104, '5', 'user', cast(x'68656c6c6fc328e282a1' AS TEXT), 0, 0,"
           " NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL);"
           "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');"
           "COMMIT;");
    shrink(p);

    /* Current user_version but the search index is missing. */
    make_chat("no-fts", p, sizeof p);
    raw(p, "DROP TRIGGER messages_fts_ai; DROP TRIGGER messages_fts_ad; DROP TRIGGER messages_fts_au;"
           "DROP TABLE messages_fts;");
    shrink(p);

    /* Current user_version, no tables at all; and columns missing. */
    char sql[256];
    path_of(p, sizeof p, "no-tables");
    remove_db(p);
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d; CREATE TABLE other(x); DROP TABLE other;",
             HIST_SCHEMA_VERSION);
    raw(p, sql);
    shrink(p);
    path_of(p, sizeof p, "few-columns");
    remove_db(p);
    raw(p, "CREATE TABLE sessions(id INTEGER PRIMARY KEY, title);"
           "CREATE TABLE messages(id INTEGER PRIMARY KEY, session_id, content);"
           "INSERT INTO sessions VALUES (1, 'x'); INSERT INTO messages VALUES (1, 1, 'hello');");
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", HIST_SCHEMA_VERSION);
    raw(p, sql);
    shrink(p);

    /* Odd user_version values over a real database. */
    static const struct {
        const char *name;
        int v;
    } odd[] = {{"uv-neg1", -1}, {"uv-min", -2147483647 - 1}, {"uv-newer", HIST_SCHEMA_VERSION + 1}, {"uv-max", 2147483647}, {"uv-0", 0}};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        make_chat(odd[i].name, p, sizeof p);
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", odd[i].v);
        raw(p, sql);
        shrink(p);
    }
    return 0;
}
