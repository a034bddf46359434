/* test_history.c - the SQLite history store on real database files in
 * temporary folders: round trips, titles, streaming replies, literal FTS
 * search, export, migrations from every earlier schema, newer/corrupt/
 * read-only/locked databases, two processes writing at once, and a writer
 * killed with SIGKILL mid-reply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"
#include "history.h"

#include <errno.h>
#include <glob.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static void new_db_path(char *buf, size_t cap, const char *tag)
{
    char dir[1024];
    test_tmpdir(dir, sizeof dir, tag);
    assert_true(dir[0] != 0);
    snprintf(buf, cap, "%s/history.db", dir);
}

static struct hist *open_ok(const char *path)
{
    char err[1024] = "";
    struct hist *h = hist_open(path, err, sizeof err);
    if (!h)
        fail_msg("hist_open(%s): %s", path, err);
    return h;
}

/* The whole file, which must exist (for "nothing was changed" checks). */
static char *read_ok(const char *path, size_t *len)
{
    *len = 0;
    char *buf = test_read_file(path, len);
    assert_non_null(buf);
    return buf;
}

static void assert_file_unchanged(const char *path, const char *before, size_t before_len)
{
    size_t len;
    char *now = read_ok(path, &len);
    assert_non_null(now);
    assert_int_equal(len, before_len);
    assert_memory_equal(now, before, len);
    free(now);
}

/* Runs SQL on a raw connection (the test's view of the file, not the API's). */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("raw sql failed: %s: %s", sql, msg ? msg : "?");
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void assert_integrity_ok(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static size_t count_hits(struct hist *h, const char *q)
{
    struct hist_hit *hits = NULL;
    size_t n = 99;
    int rc = hist_search(h, q, NULL, NULL, 100000, &hits, &n);
    if (rc != HIST_OK)
        fail_msg("search for [%s] failed: %s", q, hist_last_error(h));
    hist_hits_free(hits, n);
    return n;
}

/* ---- tests ---- */

static void test_default_path(void **state)
{
    (void)state;
    char buf[512];
    char *old_xdg = getenv("XDG_DATA_HOME") ? strdup(getenv("XDG_DATA_HOME")) : NULL;
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("XDG_DATA_HOME", "/data/x", 1);
    assert_int_equal(hist_default_path(buf, sizeof buf), HIST_OK);
    assert_string_equal(buf, "/data/x/kvchat/history.db");
    setenv("XDG_DATA_HOME", "relative/ignored", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(hist_default_path(buf, sizeof buf), HIST_OK);
    assert_string_equal(buf, "/home/u/.local/share/kvchat/history.db");
    unsetenv("XDG_DATA_HOME");
    assert_int_equal(hist_default_path(buf, sizeof buf), HIST_OK);
    assert_string_equal(buf, "/home/u/.local/share/kvchat/history.db");
    assert_int_equal(hist_default_path(buf, 10), HIST_E_INVALID);
    unsetenv("HOME");
    assert_int_equal(hist_default_path(buf, sizeof buf), HIST_E_INVALID);
    if (old_xdg)
        setenv("XDG_DATA_HOME", old_xdg, 1);
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_xdg);
    free(old_home);
}

static void test_open_creates_private_dirs_wal(void **state)
{
    (void)state;
    char dir[1024], path[1200], sub[1100];
    test_tmpdir(dir, sizeof dir, "hist-open");
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    snprintf(path, sizeof path, "%s/history.db", sub);
    struct hist *h = open_ok(path);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_string_equal(hist_path(h), path);
    assert_int_equal(hist_readonly(h), 0);
    int64_t id;
    assert_int_equal(hist_session_latest(h, &id), HIST_E_NOTFOUND);
    hist_close(h);
    hist_close(NULL);
    assert_int_equal(raw_int(path, "PRAGMA user_version"), HIST_SCHEMA_VERSION);
    sqlite3 *db;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
    /* Opening again is a no-op migration. */
    h = open_ok(path);
    hist_close(h);
    char err[256];
    assert_null(hist_open("", err, sizeof err));
    assert_non_null(strstr(err, "empty"));
}

static void test_sessions_round_trip(void **state)
{
    (void)state;
    char path[1200];
    new_db_path(path, sizeof path, "hist-sess");
    struct hist *h = open_ok(path);
    int64_t a, b, c, m;
    assert_int_equal(hist_session_create(h, NULL, "You are terse.", &a), HIST_OK);
    assert_int_equal(hist_session_create(h, "It's \"quoted\"; DROP TABLE sessions;--", NULL, &b), HIST_OK);
    assert_int_equal(hist_session_create(h, "", NULL, &c), HIST_OK);

    /* The first user message names an untitled session: its first line,
     * whitespace collapsed, cut at a word boundary to 50 columns with an
     * ellipsis (hist_make_title has its own test). */
    const char *q = "  How do I make   the\tperfect cup of coffee when all I have is a kettle and some beans?\nThanks";
    assert_int_equal(hist_message_add(h, a, HIST_ROLE_USER, q, (size_t)-1, 21, &m), HIST_OK);
    struct hist_session s;
    assert_int_equal(hist_session_get(h, a, &s), HIST_OK);
    assert_string_equal(s.title, "How do I make the perfect cup of coffee when all\xE2\x80\xA6");
    assert_string_equal(s.system_prompt, "You are terse.");
    assert_int_equal(s.n_messages, 1);
    assert_int_equal(s.has_sampling, 0);
    assert_null(s.model_name);
    assert_true(strncmp(s.preview, "How do I make the perfect", 25) == 0);
    hist_session_clear(&s);

    /* A second user message does not rename it; a title set by hand stays. */
    assert_int_equal(hist_message_add(h, a, HIST_ROLE_USER, "other", (size_t)-1, -1, &m), HIST_OK);
    assert_int_equal(hist_message_add(h, b, HIST_ROLE_USER, "hello", (size_t)-1, -1, &m), HIST_OK);
    assert_int_equal(hist_session_get(h, b, &s), HIST_OK);
    assert_string_equal(s.title, "It's \"quoted\"; DROP TABLE sessions;--");
    hist_session_clear(&s);

    /* A long word with no space is cut mid-word on a code point boundary. */
    char longword[400] = "";
    for (int i = 0; i < 100; i++)
        strcat(longword, "\xC3\xA9"); /* é */
    assert_int_equal(hist_message_add(h, c, HIST_ROLE_USER, longword, (size_t)-1, -1, &m), HIST_OK);
    assert_int_equal(hist_session_get(h, c, &s), HIST_OK);
    assert_int_equal(strlen(s.title), 49 * 2 + 3);
    hist_session_clear(&s);

    struct hist_sampling p = {.temperature = 0.7f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                              .repeat_penalty = 1.1f, .repeat_last_n = 64,
                              .seed = 0xFEDCBA9876543210ull, .max_tokens = -1};
    usleep(5000); /* updated times are in ms: make "a changed last" unambiguous */
    assert_int_equal(hist_session_set_sampling(h, a, &p), HIST_OK);
    assert_int_equal(hist_session_set_model(h, a, "SmolLM2-135M-Instruct.Q4_1.gguf", "sha256:abc"), HIST_OK);
    assert_int_equal(hist_session_set_system(h, a, NULL), HIST_OK);
    assert_int_equal(hist_session_rename(h, a, "Coffee\n  'notes'"), HIST_OK);
    assert_int_equal(hist_session_get(h, a, &s), HIST_OK);
    assert_string_equal(s.title, "Coffee 'notes'");
    assert_null(s.system_prompt);
    assert_string_equal(s.model_name, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_string_equal(s.model_digest, "sha256:abc");
    assert_int_equal(s.has_sampling, 1);
    assert_true(s.sampling.temperature == 0.7f && s.sampling.top_p == 0.95f);
    assert_int_equal(s.sampling.top_k, 40);
    assert_int_equal(s.sampling.repeat_last_n, 64);
    assert_true(s.sampling.seed == 0xFEDCBA9876543210ull);
    assert_int_equal(s.sampling.max_tokens, -1);
    assert_int_equal(s.n_messages, 2);
    assert_true(s.updated_ms >= s.created_ms);
    hist_session_clear(&s);
    hist_session_clear(NULL);

    /* Newest first: a was touched last. */
    struct hist_session *list;
    size_t n;
    assert_int_equal(hist_session_list(h, 0, 0, &list, &n), HIST_OK);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].id, a);
    hist_sessions_free(list, n);
    assert_int_equal(hist_session_list(h, 2, 1, &list, &n), HIST_OK);
    assert_int_equal(n, 2);
    assert_true(list[0].id != a && list[1].id != a);
    hist_sessions_free(list, n);
    int64_t latest;
    assert_int_equal(hist_session_latest(h, &latest), HIST_OK);
    assert_int_equal(latest, a);

    /* Errors name the thing. */
    assert_int_equal(hist_session_rename(h, 9999, "x"), HIST_E_NOTFOUND);
    assert_non_null(strstr(hist_last_error(h), "9999"));
    assert_non_null(strstr(hist_last_error(h), path));
    assert_int_equal(hist_session_rename(h, a, " \n "), HIST_E_INVALID);
    assert_int_equal(hist_session_get(h, 9999, &s), HIST_E_NOTFOUND);
    assert_int_equal(hist_message_add(h, 9999, HIST_ROLE_USER, "x", 1, -1, &m), HIST_E_NOTFOUND);
    assert_int_equal(hist_message_add(h, a, (enum hist_role)7, "x", 1, -1, &m), HIST_E_INVALID);
    assert_int_equal(hist_session_delete(h, 9999), HIST_E_NOTFOUND);

    /* Delete cascades to messages and their search entries. */
    assert_int_equal(count_hits(h, "coffee"), 1);
    assert_int_equal(hist_session_delete(h, a), HIST_OK);
    assert_int_equal(count_hits(h, "coffee"), 0);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM messages WHERE session_id = 1"), 0);
    struct hist_message *msgs;
    assert_int_equal(hist_messages(h, a, &msgs, &n), HIST_E_NOTFOUND);
    hist_close(h);
    assert_integrity_ok(path);
}

static void test_messages_unicode_and_long(void **state)
{
    (void)state;
    char path[1200];
    new_db_path(path, sizeof path, "hist-msg");
    struct hist *h = open_ok(path);
    int64_t sid, id;
    assert_int_equal(hist_session_create(h, "unicode", NULL, &sid), HIST_OK);
    const char *texts[] = {
        "emoji \xF0\x9F\x98\x80\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB and CJK \xE4\xBD\xA0\xE5\xA5\xBD",
        "RTL \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D combining e\xCC\x81 zero-width\xE2\x80\x8B",
        "quotes ' \" `; -- /* */ \\ %s %n NUL-free",
        "",
    };
    for (int i = 0; i < 4; i++)
        assert_int_equal(hist_message_add(h, sid, (enum hist_role)(i % 3), texts[i], (size_t)-1, i, &id), HIST_OK);
    /* 5 MB of varied text, and content with an embedded NUL (explicit length). */
    size_t big = 5u << 20;
    char *longtext = malloc(big);
    assert_non_null(longtext);
    for (size_t i = 0; i < big; i++)
        longtext[i] = (char)('a' + (i * 7 + i / 26) % 26);
    for (size_t i = 1000; i < big; i += 1000)
        longtext[i] = ' ';
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_ASSISTANT, longtext, big, 123456, &id), HIST_OK);
    const char nul[] = {'a', 0, 'b'};
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, nul, 3, -1, &id), HIST_OK);
    hist_close(h);

    h = open_ok(path);
    struct hist_message *m;
    size_t n;
    assert_int_equal(hist_messages(h, sid, &m, &n), HIST_OK);
    assert_int_equal(n, 6);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(m[i].content, texts[i]);
        assert_int_equal(m[i].content_len, strlen(texts[i]));
        assert_int_equal(m[i].role, i % 3);
        assert_int_equal(m[i].stats.n_tokens, i);
        assert_int_equal(m[i].end, HIST_END_NONE);
        assert_true(m[i].stats.decode_tps < 0);
        assert_true(i == 0 || m[i].id > m[i - 1].id);
    }
    assert_int_equal(m[4].content_len, big);
    assert_memory_equal(m[4].content, longtext, big);
    assert_int_equal(m[4].stats.n_tokens, 123456);
    assert_int_equal(m[5].content_len, 3);
    assert_memory_equal(m[5].content, nul, 3);
    struct hist_message one;
    assert_int_equal(hist_message_get(h, m[1].id, &one), HIST_OK);
    assert_string_equal(one.content, texts[1]);
    hist_message_clear(&one);
    assert_int_equal(hist_message_get(h, 424242, &one), HIST_E_NOTFOUND);
    hist_messages_free(m, n);
    free(longtext);
    hist_close(h);
}

static void test_reply_streaming(void **state)
{
    (void)state;
    char path[1200];
    new_db_path(path, sizeof path, "hist-reply");
    struct hist *h = open_ok(path);
    int64_t sid, uid, rid;
    assert_int_equal(hist_session_create(h, NULL, NULL, &sid), HIST_OK);
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, "tell me a story", (size_t)-1, 4, &uid), HIST_OK);
    assert_int_equal(hist_reply_begin(h, sid, &rid), HIST_OK);
    struct hist_message m;
    assert_int_equal(hist_message_get(h, rid, &m), HIST_OK);
    assert_int_equal(m.end, HIST_END_STREAMING);
    assert_int_equal(m.role, HIST_ROLE_ASSISTANT);
    assert_string_equal(m.content, "");
    hist_message_clear(&m);

    /* Within a second of the last save, progress is a no-op unless forced. */
    assert_int_equal(hist_reply_progress(h, rid, "Once", 4, 0), 0);
    assert_int_equal(hist_reply_progress(h, rid, "Once upon", (size_t)-1, 1), 1);
    assert_int_equal(hist_reply_progress(h, rid, "Once upon a", (size_t)-1, 0), 0);
    assert_int_equal(hist_message_get(h, rid, &m), HIST_OK);
    assert_string_equal(m.content, "Once upon");
    hist_message_clear(&m);
    /* Cheap when skipping: 200k calls well under a second (even under valgrind). */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int wrote = 0;
    for (int i = 0; i < 200000; i++)
        wrote += hist_reply_progress(h, rid, "Once upon a time", 16, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(wrote <= 2);
    assert_true(secs < 0.9);
    usleep(1100 * 1000);
    assert_int_equal(hist_reply_progress(h, rid, "Once upon a time,", (size_t)-1, 0), 1);

    struct hist_reply_stats st = {.n_tokens = 5, .n_prompt = 30, .prefill_tps = 812.5,
                                  .decode_tps = 41.25, .ttft_ms = 36.5};
    assert_int_equal(hist_reply_finish(h, rid, "Once upon a time, the end.", (size_t)-1, &st, HIST_END_STOP), HIST_OK);
    assert_int_equal(hist_message_get(h, rid, &m), HIST_OK);
    assert_string_equal(m.content, "Once upon a time, the end.");
    assert_int_equal(m.end, HIST_END_STOP);
    assert_int_equal(m.stats.n_tokens, 5);
    assert_int_equal(m.stats.n_prompt, 30);
    assert_true(m.stats.prefill_tps == 812.5 && m.stats.decode_tps == 41.25 && m.stats.ttft_ms == 36.5);
    hist_message_clear(&m);
    /* A finished reply takes no more progress. */
    assert_int_equal(hist_reply_progress(h, rid, "x", 1, 1), HIST_E_NOTFOUND);
    assert_non_null(strstr(hist_last_error(h), "not streaming"));

    /* Cancelled replies are kept and marked; unknown figures read back as -1. */
    int64_t r2;
    assert_int_equal(hist_reply_begin(h, sid, &r2), HIST_OK);
    assert_int_equal(hist_reply_progress(h, r2, "partial", (size_t)-1, 1), 1);
    assert_int_equal(hist_reply_finish(h, r2, "partial answ", (size_t)-1, NULL, HIST_END_CANCELLED), HIST_OK);
    assert_int_equal(hist_reply_finish(h, r2, "x", 1, NULL, HIST_END_STREAMING), HIST_E_INVALID);
    assert_int_equal(hist_reply_finish(h, uid, "x", 1, NULL, HIST_END_STOP), HIST_E_NOTFOUND);
    assert_int_equal(hist_reply_begin(h, 777, &r2), HIST_E_NOTFOUND);
    struct hist_message *all;
    size_t n;
    assert_int_equal(hist_messages(h, sid, &all, &n), HIST_OK);
    assert_int_equal(n, 3);
    assert_string_equal(all[2].content, "partial answ");
    assert_int_equal(all[2].end, HIST_END_CANCELLED);
    assert_int_equal(all[2].stats.n_tokens, -1);
    assert_true(all[2].stats.ttft_ms < 0);
    hist_messages_free(all, n);

    /* A reply still streaming in this (live) process survives a reopen. */
    int64_t r3;
    assert_int_equal(hist_reply_begin(h, sid, &r3), HIST_OK);
    struct hist *h2 = open_ok(path);
    assert_int_equal(hist_message_get(h2, r3, &m), HIST_OK);
    assert_int_equal(m.end, HIST_END_STREAMING);
    hist_message_clear(&m);
    hist_close(h2);
    assert_int_equal(hist_reply_finish(h, r3, "ok", 2, NULL, HIST_END_LENGTH), HIST_OK);

    /* ...unless it has not been saved for over an hour (a reused pid or a
     * writer on another host): then it counts as interrupted. */
    int64_t r4;
    assert_int_equal(hist_reply_begin(h, sid, &r4), HIST_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE messages SET updated_ms = 1 WHERE id = %lld", (long long)r4);
    raw_exec(path, sql);
    h2 = open_ok(path);
    assert_int_equal(hist_message_get(h2, r4, &m), HIST_OK);
    assert_int_equal(m.end, HIST_END_INTERRUPTED);
    hist_message_clear(&m);
    hist_close(h2);
    hist_close(h);
}

static void test_search_literal(void **state)
{
    (void)state;
    char path[1200];
    new_db_path(path, sizeof path, "hist-search");
    struct hist *h = open_ok(path);
    int64_t s1, s2, id;
    assert_int_equal(hist_session_create(h, "O'Brien's \"notes\" (draft) -- AND *", NULL, &s1), HIST_OK);
    assert_int_equal(hist_session_create(h, "second", NULL, &s2), HIST_OK);
    assert_int_equal(hist_message_add(h, s1, HIST_ROLE_USER, "How does NEAR(a b) work in FTS5 and SQLite?", (size_t)-1, -1, &id), HIST_OK);
    assert_int_equal(hist_message_add(h, s1, HIST_ROLE_ASSISTANT, "Use \"quoted phrases\" and prefix* queries; avoid -minus.", (size_t)-1, -1, &id), HIST_OK);
    assert_int_equal(hist_message_add(h, s2, HIST_ROLE_USER, "Café crème at the caf\xC3\xA9 in Z\xC3\xBCrich", (size_t)-1, -1, &id), HIST_OK);
    assert_int_equal(hist_message_add(h, s2, HIST_ROLE_USER, "the kettle is on", (size_t)-1, -1, &id), HIST_OK);

    struct hist_hit *hits;
    size_t n;
    assert_int_equal(hist_search(h, "kettle", "<<", ">>", 0, &hits, &n), HIST_OK);
    assert_int_equal(n, 1);
    assert_int_equal(hits[0].session_id, s2);
    assert_int_equal(hits[0].message_id, id);
    assert_int_equal(hits[0].role, HIST_ROLE_USER);
    assert_string_equal(hits[0].session_title, "second");
    assert_non_null(strstr(hits[0].snippet, "<<kettle>>"));
    hist_hits_free(hits, n);

    /* Operators are words: AND matches the word "and"; NEAR( matches "NEAR". */
    assert_int_equal(count_hits(h, "AND"), 2);
    assert_int_equal(count_hits(h, "NEAR("), 1);
    assert_int_equal(count_hits(h, "NEAR(a b)"), 1);
    assert_int_equal(count_hits(h, "\"quoted phrases\""), 1);
    assert_int_equal(count_hits(h, "prefix*"), 1);
    assert_int_equal(count_hits(h, "pre*"), 0); /* not a prefix query */
    assert_int_equal(count_hits(h, "-minus"), 1);
    assert_int_equal(count_hits(h, "fts5 OR kettle"), 0); /* OR is a word, all words required */
    assert_int_equal(count_hits(h, "cafe"), 1);           /* diacritics folded */
    assert_int_equal(count_hits(h, "ZÜRICH"), 1);
    assert_int_equal(count_hits(h, "O'Brien's"), 0);
    hist_search(h, "how sqlite", NULL, NULL, 0, &hits, &n);
    assert_int_equal(n, 1);
    assert_non_null(strstr(hits[0].snippet, "[SQLite]"));
    assert_string_equal(hits[0].session_title, "O'Brien's \"notes\" (draft) -- AND *");
    hist_hits_free(hits, n);

    /* Hostile input never errors. */
    const char *hostile[] = {"\"", "\"\"", "*", "(", ")", "((", "AND", "OR", "NOT", "NEAR(", "-",
                             "^", ":", "a:b", "content:kettle", "'; DROP TABLE messages;--", "{x}",
                             "+", "\"unterminated", "x\" OR \"y", "", "   ", "\xC3", "\xFF\xFE",
                             "NEAR(\"a\" \"b\", 2)", "\\", "%", "_"};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        int rc = hist_search(h, hostile[i], NULL, NULL, 5, &hits, &n);
        if (rc != HIST_OK)
            fail_msg("search [%s] errored: %s", hostile[i], hist_last_error(h));
        hist_hits_free(hits, n);
    }
    assert_int_equal(count_hits(h, "content:kettle"), 0);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM messages"), 4);
    hist_close(h);
}

/* /retry and /edit take the last exchange back out of the engine; the store
 * must drop it too, search index included, or a resumed session would replay
 * both attempts. */
static void test_messages_truncate(void **state)
{
    (void)state;
    char path[1200];
    new_db_path(path, sizeof path, "hist-truncate");
    struct hist *h = open_ok(path);
    int64_t s1, s2, u1, a1, u2, a2, other, id;
    assert_int_equal(hist_session_create(h, NULL, NULL, &s1), HIST_OK);
    assert_int_equal(hist_session_create(h, "other", NULL, &s2), HIST_OK);
    assert_int_equal(hist_message_add(h, s1, HIST_ROLE_USER, "first question about walruses", (size_t)-1, -1, &u1), HIST_OK);
    assert_int_equal(hist_message_add(h, s1, HIST_ROLE_ASSISTANT, "walruses have tusks", (size_t)-1, -1, &a1), HIST_OK);
    assert_int_equal(hist_message_add(h, s1, HIST_ROLE_USER, "second question about narwhals", (size_t)-1, -1, &u2), HIST_OK);
    assert_int_equal(hist_reply_begin(h, s1, &a2), HIST_OK);
    assert_int_equal(hist_reply_finish(h, a2, "narwhals have one zanzibarish tusk", (size_t)-1, NULL, HIST_END_STOP), HIST_OK);
    /* A later message of another session must survive a truncation of s1. */
    assert_int_equal(hist_message_add(h, s2, HIST_ROLE_USER, "zanzibarish narwhals elsewhere", (size_t)-1, -1, &other), HIST_OK);
    assert_true(other > a2);
    assert_int_equal(count_hits(h, "zanzibarish"), 2);

    /* /retry: drop the last reply. */
    raw_exec(path, "UPDATE sessions SET updated_ms = 1");
    int64_t deleted = -1;
    assert_int_equal(hist_messages_truncate(h, s1, a2, &deleted), HIST_OK);
    assert_int_equal(deleted, 1);
    struct hist_message *m;
    size_t n;
    assert_int_equal(hist_messages(h, s1, &m, &n), HIST_OK);
    assert_int_equal(n, 3);
    assert_int_equal(m[2].id, u2);
    hist_messages_free(m, n);
    assert_int_equal(count_hits(h, "zanzibarish"), 1); /* only the other session's */
    assert_int_equal(count_hits(h, "narwhals"), 2);
    assert_true(raw_int(path, "SELECT updated_ms FROM sessions WHERE id = 1") > 1);
    assert_int_equal(raw_int(path, "SELECT updated_ms FROM sessions WHERE id = 2"), 1);
    int64_t latest = 0;
    assert_int_equal(hist_session_latest(h, &latest), HIST_OK);
    assert_int_equal(latest, s1);

    /* /edit: drop the last user message (and anything after it). */
    assert_int_equal(hist_messages_truncate(h, s1, u2, NULL), HIST_OK);
    assert_int_equal(count_hits(h, "narwhals"), 1);
    assert_int_equal(count_hits(h, "walruses"), 2);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM messages WHERE session_id = 1"), 2);
    /* The next message may reuse a freed id; search must see only its text. */
    assert_int_equal(hist_message_add(h, s1, HIST_ROLE_USER, "rephrased about dugongs", (size_t)-1, -1, &id), HIST_OK);
    assert_int_equal(count_hits(h, "dugongs"), 1);
    assert_int_equal(count_hits(h, "second"), 0);

    /* Past the end deletes nothing; an unknown session is NOTFOUND. */
    assert_int_equal(hist_messages_truncate(h, s1, id + 1000, &deleted), HIST_OK);
    assert_int_equal(deleted, 0);
    assert_int_equal(hist_messages_truncate(h, 9999, u1, NULL), HIST_E_NOTFOUND);
    assert_non_null(strstr(hist_last_error(h), "9999"));
    assert_int_equal(hist_messages_truncate(NULL, s1, u1, NULL), HIST_E_INVALID);

    /* Everything from the first message: an empty session that still exists. */
    assert_int_equal(hist_messages_truncate(h, s1, u1, &deleted), HIST_OK);
    assert_int_equal(deleted, 3);
    struct hist_session s;
    assert_int_equal(hist_session_get(h, s1, &s), HIST_OK);
    assert_int_equal(s.n_messages, 0);
    hist_session_clear(&s);
    assert_int_equal(count_hits(h, "walruses"), 0);
    assert_int_equal(count_hits(h, "zanzibarish"), 1);
    hist_close(h);
    raw_exec(path, "INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')");
    assert_integrity_ok(path);
}

static void run_export(struct hist *h, int64_t sid, enum hist_format fmt, const char *file)
{
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    assert_int_equal(hist_export(h, sid, fmt, f), HIST_OK);
    fclose(f);
}

static int have_python(void)
{
    return system("python3 -c 'import json' >/dev/null 2>&1") == 0;
}

/* /retry keeps the earlier replies as variants: the new one is chosen,
 * choosing another moves the mark, search still finds them all, and both
 * exports name them "variant K of N"; thinking is kept apart. */
static void test_reply_variants_and_thinking(void **state)
{
    (void)state;
    char path[1200], md[1300], js[1300];
    new_db_path(path, sizeof path, "hist-variants");
    snprintf(md, sizeof md, "%s.md", path);
    snprintf(js, sizeof js, "%s.json", path);
    struct hist *h = open_ok(path);
    int64_t sid, uid, r1, r2, r3, other;
    assert_int_equal(hist_session_create(h, NULL, NULL, &sid), HIST_OK);
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, "name a fruit", (size_t)-1, -1, &uid), HIST_OK);
    assert_int_equal(hist_reply_begin_from(h, sid, "cpu", "m.gguf", &r1), HIST_OK);
    assert_int_equal(hist_reply_finish(h, r1, "apricot", 7, NULL, HIST_END_STOP), HIST_OK);
    assert_int_equal(hist_reply_set_thinking(h, r1, "they want one word", (size_t)-1), HIST_OK);
    /* a user message is no turn's reply */
    assert_int_equal(hist_reply_begin_variant(h, sid, uid, NULL, NULL, &other), HIST_E_NOTFOUND);
    assert_int_equal(hist_reply_begin_variant(h, sid, r1, "cpu", "m.gguf", &r2), HIST_OK);
    assert_int_equal(hist_reply_finish(h, r2, "banana", 6, NULL, HIST_END_STOP), HIST_OK);
    /* any variant names the turn */
    assert_int_equal(hist_reply_begin_variant(h, sid, r2, "cpu", "m.gguf", &r3), HIST_OK);
    assert_int_equal(hist_reply_finish(h, r3, "cherry", 6, NULL, HIST_END_STOP), HIST_OK);
    struct hist_message *m;
    size_t n;
    assert_int_equal(hist_messages(h, sid, &m, &n), HIST_OK);
    assert_int_equal(n, 4);
    assert_true(m[1].variant_of == 0 && m[1].variant_off);
    assert_true(m[2].variant_of == r1 && m[2].variant_off);
    assert_true(m[3].variant_of == r1 && !m[3].variant_off);
    assert_string_equal(m[1].thinking, "they want one word");
    assert_string_equal(m[1].content, "apricot");
    assert_null(m[3].thinking);
    hist_messages_free(m, n);
    assert_int_equal(hist_variant_choose(h, r2), HIST_OK);
    assert_int_equal(hist_messages(h, sid, &m, &n), HIST_OK);
    assert_true(m[1].variant_off && !m[2].variant_off && m[3].variant_off);
    hist_messages_free(m, n);
    assert_int_equal(hist_variant_choose(h, uid), HIST_E_NOTFOUND);
    assert_int_equal(count_hits(h, "apricot"), 1);
    assert_int_equal(count_hits(h, "cherry"), 1);
    run_export(h, sid, HIST_FORMAT_MARKDOWN, md);
    run_export(h, sid, HIST_FORMAT_JSON, js);
    size_t len;
    char *t = read_ok(md, &len);
    assert_non_null(strstr(t, "## Assistant, variant 1 of 3 ("));
    assert_non_null(strstr(t, "## Assistant, variant 2 of 3, chosen ("));
    assert_non_null(strstr(t, "## Assistant, variant 3 of 3 ("));
    assert_non_null(strstr(t, "<summary>Thinking</summary>\n\nthey want one word\n"));
    assert_null(strstr(t, "they want one word\napricot"));
    free(t);
    t = read_ok(js, &len);
    assert_non_null(strstr(t, "\"content\": \"apricot\""));
    assert_non_null(strstr(t, "\"thinking\": \"they want one word\""));
    assert_non_null(strstr(t, "\"variant\": 2, \"variants\": 3, \"chosen\": true"));
    assert_non_null(strstr(t, "\"variant\": 3, \"variants\": 3, \"chosen\": false"));
    free(t);
    if (have_python()) {
        char cmd[1500];
        snprintf(cmd, sizeof cmd, "python3 -c 'import json,sys; json.load(open(sys.argv[1]))' %s", js);
        assert_int_equal(system(cmd), 0);
    }
    hist_close(h);
    assert_integrity_ok(path);
}

/* A reply saved before thinking had its own column kept it at the start of
 * its content: the migration moves it out, and search follows. */
static void test_migration_moves_thinking_out(void **state)
{
    (void)state;
    char path[1200], err[1024];
    new_db_path(path, sizeof path, "hist-think-migrate");
    assert_int_equal(hist_migrate_path_to(path, HIST_SCHEMA_VERSION - 1, err, sizeof err), HIST_OK);
    raw_exec(path, "INSERT INTO sessions(id, title, created_ms, updated_ms) VALUES (3, 't', 1, 1);"
                   "INSERT INTO messages(session_id, role, content, created_ms, end_reason) VALUES"
                   " (3, 'user', '<think>not a reply</think> kept', 2, NULL),"
                   " (3, 'assistant', '<think>\npondering quinces\n</think>\n\nthe answer', 3, 'stop'),"
                   " (3, 'assistant', '<think>never closed', 4, 'cancelled');");
    struct hist *h = open_ok(path);
    struct hist_message *m;
    size_t n;
    assert_int_equal(hist_messages(h, 3, &m, &n), HIST_OK);
    assert_int_equal(n, 3);
    assert_string_equal(m[0].content, "<think>not a reply</think> kept");
    assert_null(m[0].thinking);
    assert_string_equal(m[1].content, "the answer");
    assert_string_equal(m[1].thinking, "\npondering quinces\n");
    assert_string_equal(m[2].content, "<think>never closed");
    assert_true(m[1].variant_of == 0 && !m[1].variant_off);
    hist_messages_free(m, n);
    assert_int_equal(count_hits(h, "quinces"), 0);
    assert_int_equal(count_hits(h, "answer"), 1);
    hist_close(h);
    assert_integrity_ok(path);
}

static void test_export(void **state)
{
    (void)state;
    char path[1200], md[1300], js[1300];
    new_db_path(path, sizeof path, "hist-export");
    snprintf(md, sizeof md, "%s.md", path);
    snprintf(js, sizeof js, "%s.json", path);
    struct hist *h = open_ok(path);
    int64_t sid, id;
    assert_int_equal(hist_session_create(h, "Title with \"quotes\" and \\ backslash", "Be \"nice\"\n\tplease", &sid), HIST_OK);
    assert_int_equal(hist_session_set_model(h, sid, "gemma-3-270m-q4_k_m.gguf", "sha256:0123"), HIST_OK);
    struct hist_sampling p = {.temperature = 0.5f, .top_k = 20, .top_p = 0.9f, .min_p = 0,
                              .repeat_penalty = 1, .repeat_last_n = 64, .seed = 42, .max_tokens = 256};
    assert_int_equal(hist_session_set_sampling(h, sid, &p), HIST_OK);
    const char ctl[] = "ctl \x01\x02\x1f \x7f tab\t cr\r nl\n quote\" bs\\ slash/ bad\xC3(\xFF\xED\xA0\x80 end \xF0\x9F\x98\x80";
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, ctl, (size_t)-1, 7, &id), HIST_OK);
    assert_int_equal(hist_reply_begin(h, sid, &id), HIST_OK);
    struct hist_reply_stats st = {.n_tokens = 9, .n_prompt = 7, .prefill_tps = 500, .decode_tps = 25.5, .ttft_ms = 14};
    assert_int_equal(hist_reply_finish(h, id, "# not a heading\n\nfine \xE2\x9C\x93", (size_t)-1, &st, HIST_END_STOP), HIST_OK);
    assert_int_equal(hist_reply_begin(h, sid, &id), HIST_OK);
    assert_int_equal(hist_reply_finish(h, id, "cut", 3, NULL, HIST_END_CANCELLED), HIST_OK);

    run_export(h, sid, HIST_FORMAT_MARKDOWN, md);
    run_export(h, sid, HIST_FORMAT_JSON, js);
    FILE *bad = fopen("/dev/null", "r"); /* writing to a read-only stream fails */
    assert_non_null(bad);
    assert_int_equal(hist_export(h, sid, HIST_FORMAT_JSON, bad), HIST_E_IO);
    fclose(bad);
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_equal(hist_export(h, 31337, HIST_FORMAT_MARKDOWN, devnull), HIST_E_NOTFOUND);
    fclose(devnull);
    enum hist_format f;
    assert_int_equal(hist_format_parse("md", &f), HIST_OK);
    assert_int_equal(f, HIST_FORMAT_MARKDOWN);
    assert_int_equal(hist_format_parse("json", &f), HIST_OK);
    assert_int_equal(f, HIST_FORMAT_JSON);
    assert_int_equal(hist_format_parse("xml", &f), HIST_E_INVALID);
    hist_close(h);

    size_t len;
    char *text = read_ok(md, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "# Title with \"quotes\" and \\ backslash\n"));
    assert_non_null(strstr(text, "- Model: gemma-3-270m-q4_k_m.gguf (sha256:0123)"));
    assert_non_null(strstr(text, "## System prompt\n\nBe \"nice\"\n\tplease\n"));
    assert_non_null(strstr(text, "## User ("));
    assert_non_null(strstr(text, "## Assistant ("));
    assert_non_null(strstr(text, ", 9 tokens, 25.5 tok/s)\n\n# not a heading"));
    assert_non_null(strstr(text, ", cancelled)\n\ncut\n"));
    assert_non_null(strstr(text, "bad\xEF\xBF\xBD(\xEF\xBF\xBD"));
    free(text);

    text = read_ok(js, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "\\u0001\\u0002\\u001f"));
    assert_non_null(strstr(text, "tab\\t cr\\r nl\\n quote\\\" bs\\\\ slash/"));
    assert_null(memchr(text, '\x01', len));
    free(text);
    if (!have_python()) {
        printf("NOTE: python3 absent; JSON checked by the string checks only\n");
        return;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "python3 -m json.tool '%s' >/dev/null", js);
    assert_int_equal(system(cmd), 0);
    /* Parse it and check the content survived, strict UTF-8 decoding. */
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys; d=json.loads(open(sys.argv[1],\"rb\").read().decode(\"utf-8\"));"
             "m=d[\"messages\"]; s=d[\"session\"];"
             "assert s[\"title\"]==\"Title with \\\"quotes\\\" and \\\\ backslash\", s[\"title\"];"
             "assert s[\"sampling\"][\"seed\"]==42 and s[\"sampling\"][\"max_tokens\"]==256;"
             "assert len(m)==3 and m[0][\"content\"].startswith(\"ctl \\x01\\x02\\x1f \\x7f tab\\t cr\\r nl\\n\");"
             "assert m[0][\"content\"].endswith(\"end \\U0001F600\"), repr(m[0][\"content\"]);"
             "assert m[1][\"end\"]==\"stop\" and m[1][\"tokens\"]==9 and m[1][\"decode_tps\"]==25.5;"
             "assert m[2][\"end\"]==\"cancelled\" and m[2][\"tokens\"] is None and m[0][\"end\"] is None' '%s'",
             js);
    assert_int_equal(system(cmd), 0);
}

/* Each reply records the engine and model that produced it, so a session
 * that moves from a local model to a server and back keeps saying who wrote
 * what; the stored conversation itself has nothing engine-specific, so it
 * reads back whole whatever continued it. Export shows the source per reply. */
static void test_reply_source_across_engines(void **state)
{
    (void)state;
    char path[1200], md[1300], js[1300];
    new_db_path(path, sizeof path, "hist-source");
    snprintf(md, sizeof md, "%s.md", path);
    snprintf(js, sizeof js, "%s.json", path);
    struct hist *h = open_ok(path);
    int64_t sid, id;
    assert_int_equal(hist_session_create(h, NULL, NULL, &sid), HIST_OK);
    assert_int_equal(hist_session_set_model(h, sid, "SmolLM2-135M-Instruct.Q4_1.gguf", "fnv1a64:00:1"), HIST_OK);
    static const struct {
        const char *user, *reply, *engine, *model;
    } TURNS[] = {
        {"first, locally", "local answer", "cpu", "SmolLM2-135M-Instruct.Q4_1.gguf"},
        {"then on the server", "served \"answer\"", "remote", "qwen3:8b@gpu-box:8000"},
        {"back on the gpu", "cuda answer", "cuda", "SmolLM2-135M-Instruct.Q4_1.gguf"},
        {"source unknown", "who knows", NULL, NULL},
    };
    enum { NT = sizeof TURNS / sizeof TURNS[0] };
    for (size_t i = 0; i < NT; i++) {
        assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, TURNS[i].user, (size_t)-1, -1, &id), HIST_OK);
        if (TURNS[i].engine)
            assert_int_equal(hist_reply_begin_from(h, sid, TURNS[i].engine, TURNS[i].model, &id), HIST_OK);
        else
            assert_int_equal(hist_reply_begin(h, sid, &id), HIST_OK);
        /* Known from the first row on: a reply cut short by a crash says who wrote it too. */
        struct hist_message one;
        assert_int_equal(hist_message_get(h, id, &one), HIST_OK);
        assert_int_equal(one.end, HIST_END_STREAMING);
        if (TURNS[i].engine)
            assert_string_equal(one.model, TURNS[i].model);
        else
            assert_null(one.model);
        hist_message_clear(&one);
        assert_int_equal(hist_reply_progress(h, id, "partial", 7, 1), 1);
        assert_int_equal(hist_reply_finish(h, id, TURNS[i].reply, (size_t)-1, NULL, HIST_END_STOP), HIST_OK);
    }
    /* Only the engine known, or only the model. */
    assert_int_equal(hist_reply_begin_from(h, sid, "cpu", NULL, &id), HIST_OK);
    assert_int_equal(hist_reply_finish(h, id, "engine only", (size_t)-1, NULL, HIST_END_STOP), HIST_OK);
    assert_int_equal(hist_reply_begin_from(h, 31337, "cpu", "x.gguf", &id), HIST_E_NOTFOUND);
    hist_close(h);

    /* Another connection (a later kvchat resuming the session) reads it all back. */
    h = open_ok(path);
    struct hist_message *m;
    size_t n;
    assert_int_equal(hist_messages(h, sid, &m, &n), HIST_OK);
    assert_int_equal(n, 2 * NT + 1);
    for (size_t i = 0; i < NT; i++) {
        const struct hist_message *u = &m[2 * i], *r = &m[2 * i + 1];
        assert_int_equal(u->role, HIST_ROLE_USER);
        assert_string_equal(u->content, TURNS[i].user);
        assert_true(u->engine == NULL && u->model == NULL);
        assert_int_equal(r->role, HIST_ROLE_ASSISTANT);
        assert_string_equal(r->content, TURNS[i].reply);
        if (TURNS[i].engine) {
            assert_string_equal(r->engine, TURNS[i].engine);
            assert_string_equal(r->model, TURNS[i].model);
        } else {
            assert_true(r->engine == NULL && r->model == NULL);
        }
    }
    assert_string_equal(m[2 * NT].engine, "cpu");
    assert_null(m[2 * NT].model);
    hist_messages_free(m, n);
    /* The session keeps the model it was created with. */
    struct hist_session s;
    assert_int_equal(hist_session_get(h, sid, &s), HIST_OK);
    assert_string_equal(s.model_name, "SmolLM2-135M-Instruct.Q4_1.gguf");
    hist_session_clear(&s);
    /* A session created on a server: its model names the server, no digest. */
    int64_t rs;
    assert_int_equal(hist_session_create(h, NULL, NULL, &rs), HIST_OK);
    assert_int_equal(hist_session_set_model(h, rs, "qwen3:8b@gpu-box:8000", ""), HIST_OK);
    assert_int_equal(hist_session_get(h, rs, &s), HIST_OK);
    assert_string_equal(s.model_name, "qwen3:8b@gpu-box:8000");
    assert_string_equal(s.model_digest, "");
    hist_session_clear(&s);

    run_export(h, sid, HIST_FORMAT_MARKDOWN, md);
    run_export(h, sid, HIST_FORMAT_JSON, js);
    hist_close(h);
    size_t len;
    char *text = read_ok(md, &len);
    assert_non_null(strstr(text, ", SmolLM2-135M-Instruct.Q4_1.gguf on cpu)\n\nlocal answer\n"));
    assert_non_null(strstr(text, ", qwen3:8b@gpu-box:8000 on remote)\n\nserved \"answer\"\n"));
    assert_non_null(strstr(text, ", SmolLM2-135M-Instruct.Q4_1.gguf on cuda)\n\ncuda answer\n"));
    assert_non_null(strstr(text, ", on cpu)\n\nengine only\n"));
    /* no source, no mention */
    char *unknown = strstr(text, "\n\nwho knows\n");
    assert_non_null(unknown);
    assert_memory_equal(unknown - 1, ")", 1);
    assert_null(strstr(text, "on (null)"));
    free(text);
    if (!have_python()) {
        printf("NOTE: python3 absent; JSON source fields not parsed\n");
        return;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys; d=json.loads(open(sys.argv[1],\"rb\").read().decode(\"utf-8\"));"
             "m=d[\"messages\"];"
             "src=[(x[\"role\"], x[\"engine\"], x[\"model\"]) for x in m];"
             "want=[(\"user\",None,None),(\"assistant\",\"cpu\",\"SmolLM2-135M-Instruct.Q4_1.gguf\"),"
             "(\"user\",None,None),(\"assistant\",\"remote\",\"qwen3:8b@gpu-box:8000\"),"
             "(\"user\",None,None),(\"assistant\",\"cuda\",\"SmolLM2-135M-Instruct.Q4_1.gguf\"),"
             "(\"user\",None,None),(\"assistant\",None,None),(\"assistant\",\"cpu\",None)];"
             "assert src==want, src' '%s'",
             js);
    assert_int_equal(system(cmd), 0);
}

/* Builds a database at each older schema with the migration steps
 * themselves, fills it through that schema's raw columns, and checks
 * hist_open brings everything forward, search backfill included. */
static void test_migrations_from_every_version(void **state)
{
    (void)state;
    for (int v = 1; v < HIST_SCHEMA_VERSION; v++) {
        char path[1200], err[1024];
        new_db_path(path, sizeof path, "hist-migrate");
        assert_int_equal(hist_migrate_path_to(path, v, err, sizeof err), HIST_OK);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), v);
        raw_exec(path,
                 "INSERT INTO sessions(id, title, created_ms, updated_ms, model_name, temperature, top_k, "
                 "  top_p, min_p, repeat_penalty, repeat_last_n, seed, max_tokens) "
                 "  VALUES (7, 'old \xE2\x98\x83', 1000, 5000, 'm.gguf', 0.5, 10, 0.9, 0.1, 1.2, 32, 99, NULL);"
                 "INSERT INTO messages(session_id, role, content, created_ms, n_tokens, end_reason) VALUES"
                 " (7, 'user', 'migrated marmalade question', 2000, 4, NULL),"
                 " (7, 'assistant', 'an old answer about marmalade', 3000, 6, 'stop'),"
                 " (7, 'assistant', 'left streaming by a crash', 4000, NULL, 'streaming');");
        struct hist *h = open_ok(path);
        assert_int_equal(raw_int(path, "PRAGMA user_version"), HIST_SCHEMA_VERSION);
        struct hist_session s;
        assert_int_equal(hist_session_get(h, 7, &s), HIST_OK);
        assert_string_equal(s.title, "old \xE2\x98\x83");
        assert_int_equal(s.n_messages, 3);
        assert_true(s.has_sampling && s.sampling.top_k == 10 && s.sampling.seed == 99);
        assert_int_equal(s.sampling.max_tokens, -1);
        hist_session_clear(&s);
        struct hist_message *m;
        size_t n;
        assert_int_equal(hist_messages(h, 7, &m, &n), HIST_OK);
        assert_int_equal(n, 3);
        assert_string_equal(m[1].content, "an old answer about marmalade");
        assert_int_equal(m[1].end, HIST_END_STOP);
        assert_int_equal(m[1].stats.n_tokens, 6);
        assert_true(m[1].stats.decode_tps < 0 && m[1].stats.n_prompt == -1);
        assert_int_equal(m[1].updated_ms, 3000);
        /* A pre-v3 streaming row has no writer: its process is gone. */
        assert_int_equal(m[2].end, HIST_END_INTERRUPTED);
        /* Replies from before v4 do not say what produced them. */
        for (size_t i = 0; i < n; i++)
            assert_true(m[i].engine == NULL && m[i].model == NULL);
        hist_messages_free(m, n);
        assert_int_equal(count_hits(h, "marmalade"), 2);
        assert_int_equal(count_hits(h, "crash"), 1);
        /* And the migrated database works like a new one. */
        int64_t id;
        assert_int_equal(hist_message_add(h, 7, HIST_ROLE_USER, "new marmalade", (size_t)-1, -1, &id), HIST_OK);
        assert_int_equal(count_hits(h, "marmalade"), 3);
        assert_int_equal(hist_reply_begin_from(h, 7, "cpu", "m.gguf", &id), HIST_OK);
        assert_int_equal(hist_reply_finish(h, id, "fresh", 5, NULL, HIST_END_STOP), HIST_OK);
        struct hist_message one;
        assert_int_equal(hist_message_get(h, id, &one), HIST_OK);
        assert_string_equal(one.engine, "cpu");
        assert_string_equal(one.model, "m.gguf");
        hist_message_clear(&one);
        hist_close(h);
        assert_integrity_ok(path);
    }
    char err[256];
    assert_int_equal(hist_migrate_path_to("/tmp/x.db", 0, err, sizeof err), HIST_E_INVALID);
    assert_int_equal(hist_migrate_path_to("/tmp/x.db", HIST_SCHEMA_VERSION + 1, err, sizeof err), HIST_E_INVALID);
}

static void test_newer_version_refused(void **state)
{
    (void)state;
    char path[1200], err[1024];
    new_db_path(path, sizeof path, "hist-newer");
    hist_close(open_ok(path));
    raw_exec(path, "PRAGMA user_version = 99");
    size_t len;
    char *before = read_ok(path, &len);
    int status = 0;
    assert_null(hist_open_ex(path, 0, &status, err, sizeof err));
    assert_int_equal(status, HIST_E_NEWER);
    assert_non_null(strstr(err, "newer kvchat"));
    assert_non_null(strstr(err, path));
    assert_file_unchanged(path, before, len);
    free(before);
}

static void test_corrupt_refused_unchanged(void **state)
{
    (void)state;
    char path[1200], err[1024];
    int status;
    size_t len;

    /* Not SQLite at all. */
    new_db_path(path, sizeof path, "hist-corrupt");
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 500; i++)
        fputs("this is a text file, not a database\n", f);
    fclose(f);
    char *before = read_ok(path, &len);
    assert_null(hist_open_ex(path, 0, &status, err, sizeof err));
    assert_int_equal(status, HIST_E_CORRUPT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "not a kvchat history database"));
    assert_non_null(strstr(err, "move it aside"));
    assert_file_unchanged(path, before, len);
    free(before);

    /* A real history database with its pages after the first overwritten. */
    new_db_path(path, sizeof path, "hist-corrupt");
    struct hist *h = open_ok(path);
    int64_t sid, id;
    assert_int_equal(hist_session_create(h, "to be damaged", NULL, &sid), HIST_OK);
    char line[200];
    for (int i = 0; i < 200; i++) {
        snprintf(line, sizeof line, "message number %d with some words to fill pages", i);
        assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, line, (size_t)-1, -1, &id), HIST_OK);
    }
    hist_close(h); /* checkpoints the WAL into the main file */
    int64_t pagesize = raw_int(path, "PRAGMA page_size");
    before = read_ok(path, &len);
    assert_true(len > (size_t)pagesize * 4);
    for (size_t i = (size_t)pagesize; i < len; i++)
        before[i] = (char)(i * 131 + 7);
    f = fopen(path, "wb");
    fwrite(before, 1, len, f);
    fclose(f);
    assert_null(hist_open_ex(path, 0, &status, err, sizeof err));
    assert_int_equal(status, HIST_E_CORRUPT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "corrupt"));
    assert_file_unchanged(path, before, len);
    free(before);

    /* Someone else's SQLite database. */
    new_db_path(path, sizeof path, "hist-foreign");
    raw_exec(path, "CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT); INSERT INTO accounts VALUES (1, 'x');");
    before = read_ok(path, &len);
    assert_null(hist_open_ex(path, 0, &status, err, sizeof err));
    assert_int_equal(status, HIST_E_CORRUPT);
    assert_non_null(strstr(err, "not a kvchat history database"));
    assert_file_unchanged(path, before, len);
    free(before);
}

static void fill_small(const char *path, int64_t *sid)
{
    struct hist *h = open_ok(path);
    int64_t id;
    assert_int_equal(hist_session_create(h, NULL, NULL, sid), HIST_OK);
    assert_int_equal(hist_message_add(h, *sid, HIST_ROLE_USER, "keep me safe", (size_t)-1, -1, &id), HIST_OK);
    hist_close(h);
}

static void check_writes_refused(struct hist *h, int64_t sid, const char *path)
{
    int64_t id;
    assert_int_equal(hist_readonly(h), 1);
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, "lost", 4, -1, &id), HIST_E_READONLY);
    assert_non_null(strstr(hist_last_error(h), path));
    assert_non_null(strstr(hist_last_error(h), "read-only"));
    assert_int_equal(hist_session_create(h, "x", NULL, &id), HIST_E_READONLY);
    assert_int_equal(hist_session_delete(h, sid), HIST_E_READONLY);
    assert_int_equal(hist_reply_progress(h, 5, "x", 1, 1), HIST_E_READONLY);
    assert_int_equal(hist_messages_truncate(h, sid, 1, NULL), HIST_E_READONLY);
    /* Reading still works. */
    struct hist_message *m;
    size_t n;
    assert_int_equal(hist_messages(h, sid, &m, &n), HIST_OK);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].content, "keep me safe");
    hist_messages_free(m, n);
    assert_int_equal(count_hits(h, "safe"), 1);
}

/* Titles made from a first message: first line, trimmed, controls gone,
 * cut by display width at a word. */
static void test_make_title(void **state)
{
    (void)state;
    static const struct { const char *in; int cols; const char *want; } CASES[] = {
        {"  hello world  \nsecond line", 50, "hello world"},
        {"\n\n   \t\n  later line first  ", 50, "later line first"},
        {"", 50, ""},
        {" \n\t ", 50, ""},
        /* ESC sequences, BEL, DEL and a C1 CSI leave nothing behind */
        {"\033[31mred\033[0m \aalarm\x7f \xC2\x9B" "2Jx", 50, "[31mred[0m alarm 2Jx"},
        /* an invalid byte is shown, not dropped silently */
        {"bad \xFF byte", 50, "bad \xEF\xBF\xBD byte"},
        /* at a word: "one two three" is 13 columns */
        {"one two three four", 13, "one two\xE2\x80\xA6"},
        {"one two three", 13, "one two three"},
        /* wide characters count two columns: 你好 is 4 */
        {"h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD", 10, "h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD"},
        {"h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD", 9, "h\xC3\xA9llo\xE2\x80\xA6"},
        {"\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xBD\xA0\xE5\xA5\xBD", 6, "\xE4\xBD\xA0\xE5\xA5\xBD\xE2\x80\xA6"},
        /* no word end in the second half: cut mid-word */
        {"abcdefghijklmnopqrstuvwxyz", 10, "abcdefghi\xE2\x80\xA6"},
        /* an emoji is two columns and never split */
        {"\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 5, "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xE2\x80\xA6"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        char *t = hist_make_title(CASES[i].in, strlen(CASES[i].in), CASES[i].cols);
        assert_non_null(t);
        if (strcmp(t, CASES[i].want) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, t, CASES[i].want);
        free(t);
    }
    char *t = hist_make_title(NULL, 0, 50);
    assert_string_equal(t, "");
    free(t);
}

/* Regression: deleting the newest session gave its id to the next one, so
 * "session 3" named two conversations over time. */
static void test_session_ids_never_reused(void **state)
{
    (void)state;
    char path[1200];
    new_db_path(path, sizeof path, "hist-ids");
    struct hist *h = open_ok(path);
    int64_t a, b, c, d;
    assert_int_equal(hist_session_create(h, NULL, NULL, &a), HIST_OK);
    assert_int_equal(hist_session_create(h, NULL, NULL, &b), HIST_OK);
    assert_int_equal(hist_session_delete(h, a), HIST_OK);
    assert_int_equal(hist_session_delete(h, b), HIST_OK);
    assert_int_equal(hist_session_create(h, NULL, NULL, &c), HIST_OK);
    assert_true(c > b);
    /* the highest id deleted, then a reopen: still not given out again */
    assert_int_equal(hist_session_delete(h, c), HIST_OK);
    hist_close(h);
    h = open_ok(path);
    assert_int_equal(hist_session_create(h, NULL, NULL, &d), HIST_OK);
    assert_true(d > c);
    hist_close(h);
}

/* Schema v5 rebuilds the sessions table: a v4 file with data, gaps left by
 * deleted sessions and a search index keeps every id, row, foreign key,
 * index and trigger, and from then on ids are never reused. */
static void test_migration_v5_keeps_everything(void **state)
{
    (void)state;
    char path[1200], err[1024];
    new_db_path(path, sizeof path, "hist-v5");
    assert_int_equal(hist_migrate_path_to(path, 4, err, sizeof err), HIST_OK);
    raw_exec(path,
             "PRAGMA foreign_keys = ON;"
             "INSERT INTO sessions(id, title, created_ms, updated_ms, system_prompt) VALUES"
             " (1, 'first', 1, 10, 'be brief'), (2, 'gone', 2, 20, NULL), (3, 'third', 3, 30, NULL),"
             " (4, 'gone too', 4, 40, NULL);"
             "INSERT INTO messages(session_id, role, content, created_ms) VALUES"
             " (1, 'user', 'quince jelly', 5), (1, 'assistant', 'jelly answer', 6),"
             " (2, 'user', 'deleted words', 7), (3, 'user', 'third quince', 8),"
             " (4, 'user', 'also deleted', 9);"
             "DELETE FROM sessions WHERE id IN (2, 4);");
    int64_t triggers = raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'");
    struct hist *h = open_ok(path);
    hist_close(h);
    assert_int_equal(raw_int(path, "PRAGMA user_version"), HIST_SCHEMA_VERSION);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sessions"), 2);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM messages"), 3);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"), triggers);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE name = 'sessions_by_updated'"), 1);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE name = 'sessions_v5'"), 0);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM pragma_foreign_key_list('messages') "
                                   "WHERE \"table\" = 'sessions' AND on_delete = 'CASCADE'"), 1);
    assert_integrity_ok(path);
    h = open_ok(path);
    struct hist_session s;
    assert_int_equal(hist_session_get(h, 1, &s), HIST_OK);
    assert_string_equal(s.title, "first");
    assert_string_equal(s.system_prompt, "be brief");
    assert_int_equal(s.n_messages, 2);
    hist_session_clear(&s);
    assert_int_equal(hist_session_get(h, 3, &s), HIST_OK);
    assert_int_equal(s.n_messages, 1);
    hist_session_clear(&s);
    assert_int_equal(count_hits(h, "quince"), 2);
    assert_int_equal(count_hits(h, "deleted"), 0);
    /* deleting still takes the messages with it (the foreign key works) */
    assert_int_equal(hist_session_delete(h, 3), HIST_OK);
    assert_int_equal(count_hits(h, "quince"), 1);
    /* the highest id left was 3, now deleted too: the next one is past it */
    int64_t id;
    assert_int_equal(hist_session_create(h, NULL, NULL, &id), HIST_OK);
    assert_true(id > 3);
    hist_close(h);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM messages WHERE session_id = 3"), 0);
    assert_integrity_ok(path);
}

/* --list-sessions on a file kvchat may not write: the oldest schema this
 * build reads without upgrading (HIST_READABLE_FROM) is read as it is, and a
 * WAL database in a read-only folder opens too. */
static void test_readonly_reads_older_schema_and_folder(void **state)
{
    (void)state;
    char path[1200], err[1024];
    int status;
    new_db_path(path, sizeof path, "hist-ro-old");
    assert_int_equal(hist_migrate_path_to(path, HIST_READABLE_FROM, err, sizeof err), HIST_OK);
    raw_exec(path, "INSERT INTO sessions(id, title, created_ms, updated_ms) VALUES (9, 'old one', 1, 2)");
    size_t len;
    char *before = read_ok(path, &len);
    struct hist *h = hist_open_ex(path, HIST_OPEN_READONLY, &status, err, sizeof err);
    if (!h)
        fail_msg("read-only open of a v%d file: %s", HIST_READABLE_FROM, err);
    struct hist_session *ss;
    size_t n;
    assert_int_equal(hist_session_list(h, 0, 0, &ss, &n), HIST_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ss[0].title, "old one");
    hist_sessions_free(ss, n);
    hist_close(h);
    assert_file_unchanged(path, before, len);
    free(before);

    char dir[1024];
    test_tmpdir(dir, sizeof dir, "hist-ro-mnt");
    if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0) {
        printf("NOTE: cannot mount a tmpfs here (%s): read-only folder half skipped\n", strerror(errno));
        return;
    }
    snprintf(path, sizeof path, "%s/history.db", dir);
    fill_small(path, &(int64_t){0});
    assert_int_equal(access(path, F_OK), 0);
    if (mount("tmpfs", dir, "tmpfs", MS_REMOUNT | MS_RDONLY, "size=1m") != 0) {
        umount(dir);
        printf("NOTE: cannot remount read-only (%s): read-only folder half skipped\n", strerror(errno));
        return;
    }
    h = hist_open_ex(path, HIST_OPEN_READONLY, &status, err, sizeof err);
    int listed = -1;
    if (h && hist_session_list(h, 0, 0, &ss, &n) == HIST_OK) {
        listed = (int)n;
        hist_sessions_free(ss, n);
    }
    hist_close(h);
    umount(dir);
    if (listed < 0)
        fail_msg("read-only folder: %s", err);
    assert_int_equal(listed, 1);
}

static void test_readonly(void **state)
{
    (void)state;
    char path[1200], err[1024];
    int64_t sid;
    int status;
    size_t len;

    /* Read-only open mode: meaningful as root too, since SQLite itself refuses. */
    new_db_path(path, sizeof path, "hist-ro");
    fill_small(path, &sid);
    char *before = read_ok(path, &len);
    struct hist *h = hist_open_ex(path, HIST_OPEN_READONLY, &status, err, sizeof err);
    if (!h)
        fail_msg("read-only open: %s", err);
    check_writes_refused(h, sid, path);
    hist_close(h);
    assert_file_unchanged(path, before, len);
    free(before);

    /* A read-only open never creates a file. */
    char missing[1300];
    snprintf(missing, sizeof missing, "%s.none", path);
    assert_null(hist_open_ex(missing, HIST_OPEN_READONLY, &status, err, sizeof err));
    assert_non_null(strstr(err, missing));
    assert_int_equal(access(missing, F_OK), -1);

    /* File and folder without write permission. Root ignores permission
     * bits, so as root this half cannot fail and is skipped. */
    if (geteuid() == 0) {
        printf("NOTE: running as root: chmod cannot make a file read-only; covered by HIST_OPEN_READONLY above\n");
        return;
    }
    new_db_path(path, sizeof path, "hist-chmod");
    fill_small(path, &sid);
    before = read_ok(path, &len);
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    assert_int_equal(chmod(path, 0444), 0);
    assert_int_equal(chmod(dir, 0555), 0);
    h = hist_open_ex(path, 0, &status, err, sizeof err);
    if (h) {
        check_writes_refused(h, sid, path);
        hist_close(h);
    } else {
        assert_true(status == HIST_E_READONLY || status == HIST_E_IO);
        assert_non_null(strstr(err, path));
    }
    chmod(dir, 0755);
    chmod(path, 0644);
    assert_file_unchanged(path, before, len);
    free(before);
}

static void test_locked(void **state)
{
    (void)state;
    char path[1200];
    new_db_path(path, sizeof path, "hist-lock");
    struct hist *h = open_ok(path);
    int64_t sid, id, rid;
    assert_int_equal(hist_session_create(h, "locked", NULL, &sid), HIST_OK);
    assert_int_equal(hist_reply_begin(h, sid, &rid), HIST_OK);
    assert_int_equal(hist_set_busy_timeout(h, 200), HIST_OK);

    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE; INSERT INTO sessions(title, created_ms, updated_ms) "
                                         "VALUES ('other', 1, 1)", NULL, NULL, NULL), SQLITE_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, "wait for me", (size_t)-1, -1, &id), HIST_E_LOCKED);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(strstr(hist_last_error(h), "locked by another kvchat"));
    assert_non_null(strstr(hist_last_error(h), path));
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(waited >= 0.15 && waited < 2);
    /* Progress gives up fast and retries a second later, not on every token. */
    assert_int_equal(hist_reply_progress(h, rid, "abc", 3, 1), HIST_E_LOCKED);
    assert_int_equal(hist_reply_progress(h, rid, "abcd", 4, 0), 0);
    /* Reading is not blocked by a writer (WAL). */
    struct hist_session s;
    assert_int_equal(hist_session_get(h, sid, &s), HIST_OK);
    hist_session_clear(&s);

    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    /* The caller retries and nothing is lost on either side. */
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, "wait for me", (size_t)-1, -1, &id), HIST_OK);
    assert_int_equal(hist_reply_progress(h, rid, "abcde", 5, 1), 1);
    struct hist_message m;
    assert_int_equal(hist_message_get(h, id, &m), HIST_OK);
    assert_string_equal(m.content, "wait for me");
    hist_message_clear(&m);
    hist_close(h);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sessions WHERE title = 'other'"), 1);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM messages"), 2);
}

static pid_t spawn_writer(char *const argv[], int *out_fd)
{
    int fds[2];
    if (out_fd)
        assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (out_fd) {
            dup2(fds[1], 1);
            close(fds[0]);
            close(fds[1]);
        }
        execv(HIST_WRITER, argv);
        _exit(127);
    }
    if (out_fd) {
        close(fds[1]);
        *out_fd = fds[0];
    }
    return pid;
}

static void test_two_processes_append(void **state)
{
    (void)state;
    char path[1200], sidbuf[32];
    new_db_path(path, sizeof path, "hist-conc");
    struct hist *h = open_ok(path);
    int64_t sid;
    assert_int_equal(hist_session_create(h, "shared", NULL, &sid), HIST_OK);
    hist_close(h);
    snprintf(sidbuf, sizeof sidbuf, "%lld", (long long)sid);
    const int count = 150;
    char cnt[16];
    snprintf(cnt, sizeof cnt, "%d", count);
    char *a[] = {"hist_writer", "append", path, sidbuf, cnt, "alpha", NULL};
    char *b[] = {"hist_writer", "append", path, sidbuf, cnt, "beta", NULL};
    pid_t pa = spawn_writer(a, NULL), pb = spawn_writer(b, NULL);
    /* This process reads meanwhile. */
    h = open_ok(path);
    for (int i = 0; i < 20; i++) {
        struct hist_message *m;
        size_t n;
        assert_int_equal(hist_messages(h, sid, &m, &n), HIST_OK);
        hist_messages_free(m, n);
        usleep(5000);
    }
    int sa, sb;
    assert_int_equal(waitpid(pa, &sa, 0), pa);
    assert_int_equal(waitpid(pb, &sb, 0), pb);
    assert_true(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    assert_true(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    struct hist_message *m;
    size_t n;
    assert_int_equal(hist_messages(h, sid, &m, &n), HIST_OK);
    assert_int_equal(n, (size_t)count * 4);
    /* Every message of each writer is there, in that writer's order. */
    int next[2][2] = {{0, 0}, {0, 0}};
    for (size_t i = 0; i < n; i++) {
        char tag[16], kind[16];
        int k;
        assert_int_equal(sscanf(m[i].content, "%15s %15s %d", tag, kind, &k), 3);
        int w = strcmp(tag, "beta") == 0, r = strcmp(kind, "reply") == 0;
        assert_int_equal(k, next[w][r]++);
        assert_int_equal(m[i].role, r ? HIST_ROLE_ASSISTANT : HIST_ROLE_USER);
        if (r)
            assert_int_equal(m[i].end, HIST_END_STOP);
    }
    for (int w = 0; w < 2; w++)
        for (int r = 0; r < 2; r++)
            assert_int_equal(next[w][r], count);
    hist_messages_free(m, n);
    assert_int_equal(count_hits(h, "alpha reply"), (size_t)count);
    hist_close(h);
    assert_integrity_ok(path);
}

/* Reads one line from FD into BUF (blocking); 0 at EOF. */
static int read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0)
            return 0;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return 1;
}

static void test_sigkill_mid_reply(void **state)
{
    (void)state;
    char path[1200], sidbuf[32];
    new_db_path(path, sizeof path, "hist-kill");
    struct hist *h = open_ok(path);
    int64_t sid, id;
    assert_int_equal(hist_session_create(h, NULL, NULL, &sid), HIST_OK);
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, "before the crash", (size_t)-1, -1, &id), HIST_OK);
    hist_close(h);
    snprintf(sidbuf, sizeof sidbuf, "%lld", (long long)sid);
    char *argv[] = {"hist_writer", "stream", path, sidbuf, NULL};
    int fd;
    pid_t pid = spawn_writer(argv, &fd);
    char line[128];
    long long rid = 0;
    size_t saved = 0;
    int saves = 0;
    assert_true(read_line(fd, line, sizeof line));
    assert_int_equal(sscanf(line, "reply %lld", &rid), 1);
    while (saves < 3 && read_line(fd, line, sizeof line)) {
        assert_int_equal(sscanf(line, "saved %zu", &saved), 1);
        saves++;
    }
    assert_int_equal(saves, 3);

    /* While the writer lives, another kvchat opening the database leaves its
     * reply streaming. */
    h = open_ok(path);
    struct hist_message m;
    assert_int_equal(hist_message_get(h, rid, &m), HIST_OK);
    assert_int_equal(m.end, HIST_END_STREAMING);
    hist_message_clear(&m);
    hist_close(h);

    usleep(500 * 1000); /* kill mid-interval, between two saves */
    struct timespec kt;
    clock_gettime(CLOCK_REALTIME, &kt);
    int64_t kill_ms = (int64_t)kt.tv_sec * 1000 + kt.tv_nsec / 1000000;
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* Drain what it printed before dying: the last save reported. */
    while (read_line(fd, line, sizeof line))
        if (sscanf(line, "saved %zu", &saved) != 1)
            fail_msg("unexpected writer output: %s", line);
    close(fd);

    assert_integrity_ok(path);
    h = open_ok(path);
    struct hist_message *all;
    size_t n;
    assert_int_equal(hist_messages(h, sid, &all, &n), HIST_OK);
    assert_int_equal(n, 3);
    assert_string_equal(all[0].content, "before the crash");
    assert_string_equal(all[1].content, "stream question");
    assert_int_equal(all[2].id, rid);
    assert_int_equal(all[2].end, HIST_END_INTERRUPTED);
    /* The partial text saved before the kill is there, and it is exactly a
     * prefix of what the writer generated ("w0 w1 w2 ..."). */
    assert_true(all[2].content_len >= saved);
    assert_true(saved > 0);
    char expect[64];
    size_t off = 0;
    for (int w = 0; off < all[2].content_len; w++) {
        int k = snprintf(expect, sizeof expect, "w%d ", w);
        assert_true(off + (size_t)k <= all[2].content_len);
        assert_memory_equal(all[2].content + off, expect, (size_t)k);
        off += (size_t)k;
    }
    /* At most about a second lost: the last save is that recent (plus
     * scheduling slack on a busy machine). */
    assert_true(kill_ms - all[2].updated_ms <= 1600);
    assert_true(all[2].updated_ms <= kill_ms + 5);
    hist_messages_free(all, n);
    struct hist_hit *hits;
    assert_int_equal(hist_search(h, "w1", NULL, NULL, 0, &hits, &n), HIST_OK);
    assert_int_equal(n, 1);
    hist_hits_free(hits, n);
    hist_close(h);
}

/* Regressions found by tests/fuzz/fuzz_history.c: values a damaged or hostile
 * file may hold that no kvchat writes. */
static void test_fuzz_regressions(void **state)
{
    (void)state;
    char path[1200], err[1024], sql[128];
    int status;
    size_t len;

    /* A negative user_version indexed before the migration steps (a read of
     * a wild pointer as SQL); now the file is refused as not ours, untouched. */
    const int bad_versions[] = {-1, -2147483647 - 1};
    for (size_t i = 0; i < 2; i++) {
        int64_t sid;
        new_db_path(path, sizeof path, "hist-negver");
        fill_small(path, &sid);
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", bad_versions[i]);
        raw_exec(path, sql);
        char *before = read_ok(path, &len);
        err[0] = 0;
        assert_null(hist_open_ex(path, 0, &status, err, sizeof err));
        assert_int_equal(status, HIST_E_CORRUPT);
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "not a kvchat history database"));
        assert_null(strchr(err, '\n'));
        assert_null(hist_open_ex(path, HIST_OPEN_READONLY, &status, err, sizeof err));
        assert_int_equal(status, HIST_E_CORRUPT);
        assert_int_equal(hist_migrate_path_to(path, HIST_SCHEMA_VERSION, err, sizeof err), HIST_E_CORRUPT);
        assert_file_unchanged(path, before, len);
        free(before);
    }

    /* A streaming reply saved at INT64_MIN: "now - updated" overflowed
     * (undefined behaviour; in practice it wrapped and the reply stayed
     * streaming forever). It is long stale, so interrupted. */
    new_db_path(path, sizeof path, "hist-minupd");
    struct hist *h = open_ok(path);
    int64_t sid, rid;
    assert_int_equal(hist_session_create(h, NULL, NULL, &sid), HIST_OK);
    assert_int_equal(hist_reply_begin(h, sid, &rid), HIST_OK);
    hist_close(h);
    snprintf(sql, sizeof sql, "UPDATE messages SET updated_ms = -9223372036854775808, writer = 'x:1' WHERE id = %lld",
             (long long)rid);
    raw_exec(path, sql);
    h = open_ok(path);
    struct hist_message m;
    assert_int_equal(hist_message_get(h, rid, &m), HIST_OK);
    assert_int_equal(m.end, HIST_END_INTERRUPTED);
    hist_message_clear(&m);
    hist_close(h);
}

/* A full disk: writes fail with HIST_E_FULL and a message naming the path,
 * nothing committed before is damaged, and saving works again once space is
 * freed. Needs a small tmpfs, so it runs only where mounting is allowed (as
 * root, as on the project's machines) and says so otherwise. */
static void test_full_disk(void **state)
{
    (void)state;
    char dir[1024], path[1100], filler[1100], err[1024];
    test_tmpdir(dir, sizeof dir, "full");
    assert_true(dir[0] != 0);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=512k") != 0) {
        printf("SKIPPED: cannot mount a small tmpfs here (%s); the full-disk case needs one\n",
               strerror(errno));
        skip();
    }
    snprintf(path, sizeof path, "%s/history.db", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    struct hist *h = hist_open(path, err, sizeof err);
    assert_non_null(h);
    int64_t sid, mid;
    assert_int_equal(hist_session_create(h, "full disk", NULL, &sid), HIST_OK);
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, "kept before the disk filled",
                                      (size_t)-1, -1, &mid), HIST_OK);

    /* take the rest of the space */
    FILE *f = fopen(filler, "wb");
    assert_non_null(f);
    static char block[4096];
    memset(block, 'x', sizeof block);
    while (fwrite(block, 1, sizeof block, f) == sizeof block && fflush(f) == 0)
        ;
    fclose(f);

    char *big = malloc(200000);
    assert_non_null(big);
    memset(big, 'y', 199999);
    big[199999] = 0;
    int rc = HIST_OK;
    for (int i = 0; i < 20 && rc == HIST_OK; i++)
        rc = hist_message_add(h, sid, HIST_ROLE_USER, big, (size_t)-1, -1, NULL);
    printf("write on a full disk: %s\n", hist_last_error(h));
    assert_int_equal(rc, HIST_E_FULL);
    assert_non_null(strstr(hist_last_error(h), path));
    assert_null(strchr(hist_last_error(h), '\n'));

    /* reading still works, and the committed message is there */
    struct hist_message m;
    assert_int_equal(hist_message_get(h, mid, &m), HIST_OK);
    assert_string_equal(m.content, "kept before the disk filled");
    hist_message_clear(&m);

    /* space back: saving resumes on the same connection */
    unlink(filler);
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, "after", (size_t)-1, -1, NULL),
                     HIST_OK);
    hist_close(h);
    h = open_ok(path);
    struct hist_message *msgs;
    size_t n;
    assert_int_equal(hist_messages(h, sid, &msgs, &n), HIST_OK);
    assert_true(n >= 2);
    assert_string_equal(msgs[0].content, "kept before the disk filled");
    assert_string_equal(msgs[n - 1].content, "after");
    hist_messages_free(msgs, n);
    hist_close(h);
    free(big);
    umount(dir);
}

static void test_null_args(void **state)
{
    (void)state;
    int64_t id;
    struct hist_session s;
    assert_int_equal(hist_session_create(NULL, "x", NULL, &id), HIST_E_INVALID);
    assert_int_equal(hist_session_get(NULL, 1, &s), HIST_E_INVALID);
    assert_int_equal(hist_reply_progress(NULL, 1, "x", 1, 1), HIST_E_INVALID);
    assert_int_equal(hist_search(NULL, "x", NULL, NULL, 0, NULL, NULL), HIST_E_INVALID);
    assert_int_equal(hist_export(NULL, 1, HIST_FORMAT_JSON, stdout), HIST_E_INVALID);
    assert_string_equal(hist_status_str(HIST_E_LOCKED), "locked");
    assert_string_equal(hist_role_str(HIST_ROLE_ASSISTANT), "assistant");
    assert_string_equal(hist_end_str(HIST_END_INTERRUPTED), "interrupted");
    assert_non_null(hist_last_error(NULL));
    hist_sessions_free(NULL, 0);
    hist_messages_free(NULL, 0);
    hist_hits_free(NULL, 0);
}

/* ---- damage that PRAGMA quick_check cannot see, and kvchat --repair ---- */

/* A database with one session of two messages, then closed. */
static void make_small_db(const char *path)
{
    struct hist *h = open_ok(path);
    int64_t sid, mid;
    assert_int_equal(hist_session_create(h, "kept", NULL, &sid), HIST_OK);
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_USER, "hello lighthouse", (size_t)-1, -1, &mid),
                     HIST_OK);
    assert_int_equal(hist_message_add(h, sid, HIST_ROLE_ASSISTANT, "the keeper waves", (size_t)-1, -1,
                                      &mid), HIST_OK);
    hist_close(h);
}

static void test_damaged_schema_text_detected(void **state)
{
    (void)state;
    char path[1100], err[1024] = "";
    new_db_path(path, sizeof path, "hist-schema-text");
    make_small_db(path);
    /* one keyword of the index's schema text altered in place: the pages
     * are all sound, so quick_check passes, but the index no longer agrees
     * with its table */
    raw_exec(path, "PRAGMA writable_schema = ON;"
                   "UPDATE sqlite_schema SET sql = replace(sql, '(session_id, id)', "
                   "'(session_id DESC, id)') WHERE name = 'messages_by_session';");
    size_t before_len;
    char *before = read_ok(path, &before_len);
    int st = 0;
    struct hist *h = hist_open_ex(path, 0, &st, err, sizeof err);
    assert_null(h);
    assert_int_equal(st, HIST_E_CORRUPT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "damaged (index messages_by_session"));
    assert_non_null(strstr(err, "kvchat --repair"));
    h = hist_open_ex(path, HIST_OPEN_READONLY, &st, err, sizeof err);
    assert_null(h);
    assert_int_equal(st, HIST_E_CORRUPT);
    assert_file_unchanged(path, before, before_len);
    free(before);
}

static void test_damaged_search_index_count_detected(void **state)
{
    (void)state;
    char path[1100], err[1024] = "";
    new_db_path(path, sizeof path, "hist-fts-count");
    make_small_db(path);
    raw_exec(path, "DELETE FROM messages_fts_docsize WHERE id = 1;");
    int st = 0;
    struct hist *h = hist_open_ex(path, 0, &st, err, sizeof err);
    assert_null(h);
    assert_int_equal(st, HIST_E_CORRUPT);
    assert_non_null(strstr(err, "damaged (index messages_fts disagrees with its table)"));
    assert_non_null(strstr(err, "kvchat --repair"));
}

/* The damaged copies kept beside PATH. */
static int count_damaged_copies(const char *path, char *first, size_t cap)
{
    char pat[1200];
    snprintf(pat, sizeof pat, "%s.damaged-*", path);
    glob_t g;
    int n = glob(pat, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
    if (n && first)
        snprintf(first, cap, "%s", g.gl_pathv[0]);
    if (n)
        globfree(&g);
    return n;
}

static void test_repair_rebuilds_indexes_in_place(void **state)
{
    (void)state;
    char path[1100], rep[2048];
    new_db_path(path, sizeof path, "hist-repair-reindex");
    make_small_db(path);
    raw_exec(path, "DELETE FROM messages_fts_docsize WHERE id = 1;");
    assert_int_equal(hist_repair(path, rep, sizeof rep), HIST_OK);
    assert_non_null(strstr(rep, "rebuilt the indexes"));
    assert_non_null(strstr(rep, "lost nothing"));
    assert_int_equal(count_damaged_copies(path, NULL, 0), 0);
    assert_integrity_ok(path);
    struct hist *h = open_ok(path);
    assert_int_equal(count_hits(h, "lighthouse"), 1);
    hist_close(h);
    /* a sound file is left alone */
    assert_int_equal(hist_repair(path, rep, sizeof rep), HIST_OK);
    assert_non_null(strstr(rep, "nothing to repair"));
}

static void test_repair_copies_into_new_file(void **state)
{
    (void)state;
    char path[1100], rep[2048], damaged[1300];
    new_db_path(path, sizeof path, "hist-repair-copy");
    make_small_db(path);
    raw_exec(path, "PRAGMA writable_schema = ON;"
                   "UPDATE sqlite_schema SET sql = replace(sql, '(session_id, id)', "
                   "'(session_id DESC, id)') WHERE name = 'messages_by_session';");
    size_t before_len;
    char *before = read_ok(path, &before_len);
    assert_int_equal(hist_repair(path, rep, sizeof rep), HIST_OK);
    assert_non_null(strstr(rep, "kept 1 session and 2 messages"));
    assert_non_null(strstr(rep, "lost nothing"));
    assert_int_equal(count_damaged_copies(path, damaged, sizeof damaged), 1);
    assert_non_null(strstr(rep, damaged));
    /* the damaged file is kept byte for byte, never deleted */
    assert_file_unchanged(damaged, before, before_len);
    free(before);
    assert_integrity_ok(path);
    struct hist *h = open_ok(path);
    struct hist_session *ss = NULL;
    size_t n = 0;
    assert_int_equal(hist_session_list(h, 0, 0, &ss, &n), HIST_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ss[0].title, "kept");
    struct hist_message *ms = NULL;
    size_t nm = 0;
    assert_int_equal(hist_messages(h, ss[0].id, &ms, &nm), HIST_OK);
    assert_int_equal(nm, 2);
    assert_string_equal(ms[1].content, "the keeper waves");
    hist_messages_free(ms, nm);
    hist_sessions_free(ss, n);
    assert_int_equal(count_hits(h, "keeper"), 1);
    hist_close(h);
    /* no file: nothing done, nothing created */
    char none[1200];
    snprintf(none, sizeof none, "%s.absent", path);
    assert_int_equal(hist_repair(none, rep, sizeof rep), HIST_E_NOTFOUND);
    assert_int_not_equal(access(none, F_OK), 0);
}

static void test_readonly_folder_named(void **state)
{
    (void)state;
    char dir[1024], path[1100], err[1024] = "";
    test_tmpdir(dir, sizeof dir, "hist-rofs");
    assert_true(dir[0] != 0);
    if (mount("tmpfs", dir, "tmpfs", MS_RDONLY, "size=64k") != 0) {
        printf("SKIPPED: cannot mount a read-only tmpfs here (%s)\n", strerror(errno));
        skip();
    }
    snprintf(path, sizeof path, "%s/history.db", dir);
    int st = 0;
    struct hist *h = hist_open_ex(path, 0, &st, err, sizeof err);
    umount(dir);
    assert_null(h);
    assert_int_equal(st, HIST_E_READONLY);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "read-only"));
    assert_non_null(strstr(err, "--no-history"));
    assert_null(strstr(err, "No such file"));
}

static void test_locked_at_start_no_upgrade_talk(void **state)
{
    (void)state;
    char path[1100], err[1024] = "";
    new_db_path(path, sizeof path, "hist-locked-start");
    make_small_db(path);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE; INSERT INTO sessions(title, created_ms, "
                                         "updated_ms) VALUES ('x', 1, 1)", NULL, NULL, NULL),
                     SQLITE_OK);
    /* an up-to-date database opens while another process holds the write
     * lock: nothing to upgrade, so nothing to wait for */
    struct hist *h = hist_open(path, err, sizeof err);
    if (!h)
        fail_msg("open with another writer: %s", err);
    assert_null(strstr(err, "upgrading"));
    hist_close(h);
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
}

static void test_write_finds_damage_runs_full_check(void **state)
{
    (void)state;
    char path[1100];
    new_db_path(path, sizeof path, "hist-write-damage");
    make_small_db(path);
    struct hist *h = open_ok(path);
    /* Damage that appears after the open: another connection points the
     * index at the sessions table's pages (and bumps the schema version so
     * this connection reloads it). The next insert meets a table page
     * where it expects an index page. */
    raw_exec(path, "PRAGMA writable_schema = ON;"
                   "UPDATE sqlite_schema SET rootpage = (SELECT rootpage FROM sqlite_schema "
                   "WHERE name = 'sessions') WHERE name = 'messages_by_session';"
                   "PRAGMA writable_schema = OFF;");
    raw_exec(path, "PRAGMA schema_version = 1000;");
    int64_t mid;
    assert_int_equal(hist_message_add(h, 1, HIST_ROLE_USER, "one more", (size_t)-1, -1, &mid),
                     HIST_E_CORRUPT);
    const char *e = hist_last_error(h);
    print_message("write on a damaged database: %s\n", e);
    assert_non_null(strstr(e, path));
    assert_non_null(strstr(e, "the history database is damaged ("));
    assert_null(strchr(e, '\n'));
    assert_null(strstr(e, "***"));
    assert_non_null(strstr(e, "run kvchat --repair"));
    hist_close(h);
    /* and --repair gets the rows back into a sound file */
    char rep[2048];
    assert_int_equal(hist_repair(path, rep, sizeof rep), HIST_OK);
    print_message("%s\n", rep);
    assert_non_null(strstr(rep, "repaired"));
    assert_integrity_ok(path);
    h = open_ok(path);
    assert_int_equal(count_hits(h, "lighthouse"), 1);
    hist_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_path),
        cmocka_unit_test(test_open_creates_private_dirs_wal),
        cmocka_unit_test(test_sessions_round_trip),
        cmocka_unit_test(test_messages_unicode_and_long),
        cmocka_unit_test(test_reply_streaming),
        cmocka_unit_test(test_search_literal),
        cmocka_unit_test(test_messages_truncate),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_reply_source_across_engines),
        cmocka_unit_test(test_migrations_from_every_version),
        cmocka_unit_test(test_reply_variants_and_thinking),
        cmocka_unit_test(test_migration_moves_thinking_out),
        cmocka_unit_test(test_newer_version_refused),
        cmocka_unit_test(test_corrupt_refused_unchanged),
        cmocka_unit_test(test_readonly),
        cmocka_unit_test(test_session_ids_never_reused),
        cmocka_unit_test(test_make_title),
        cmocka_unit_test(test_migration_v5_keeps_everything),
        cmocka_unit_test(test_readonly_reads_older_schema_and_folder),
        cmocka_unit_test(test_locked),
        cmocka_unit_test(test_two_processes_append),
        cmocka_unit_test(test_sigkill_mid_reply),
        cmocka_unit_test(test_fuzz_regressions),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_damaged_schema_text_detected),
        cmocka_unit_test(test_damaged_search_index_count_detected),
        cmocka_unit_test(test_repair_rebuilds_indexes_in_place),
        cmocka_unit_test(test_repair_copies_into_new_file),
        cmocka_unit_test(test_readonly_folder_named),
        cmocka_unit_test(test_locked_at_start_no_upgrade_talk),
        cmocka_unit_test(test_write_finds_damage_runs_full_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
