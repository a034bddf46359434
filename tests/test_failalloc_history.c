/* test_failalloc_history.c - the history store's paths with each of their
 * allocations failing in turn, SQLite's included (tests/failalloc.h). One
 * scenario, a table of steps, runs what a chat session does to the store:
 * create and migrate a new database, start a session, save the user's
 * message, stream a reply, finish it, search, export, list, rename, and
 * take back an exchange. For every N, once alone and once persistently, the
 * N-th allocation fails; the failing step must return HIST_E_NOMEM with a
 * message, leak nothing (LSan in the sanitized build), and leave a database
 * that opens, passes SQLite's and FTS5's integrity checks, holds exactly
 * what the steps before it committed, and takes new writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "failalloc.h"
#include "history.h"
#include "testutil.h"

#define USER_TEXT "Hello there, tell me about dragons"
#define PART1 "Dragons are"
#define PART2 "Dragons are large, winged reptiles"
#define FINAL "Dragons are large, winged reptiles of legend."
#define RETRY_TEXT "And wyverns?"
#define SYSTEM "Be brief."

/* What the store must hold after the steps that succeeded. */
struct want {
    bool session;
    const char *title;
    const char *model;
    bool sampling;
    int n;
    struct {
        enum hist_role role;
        const char *text;
        enum hist_end end;
    } m[3];
};

/* One run of the scenario. */
struct run {
    const char *path;
    struct hist *h;
    int64_t sid, reply_id, retry_id;
    struct want want;
};

static void add_msg(struct want *w, enum hist_role role, const char *text, enum hist_end end)
{
    w->m[w->n].role = role;
    w->m[w->n].text = text;
    w->m[w->n].end = end;
    w->n++;
}

/* ---- the steps: each returns a hist_status and, when it succeeds, says
 * what it committed in r->want ---- */

static int step_open(struct run *r, char *err, size_t errlen)
{
    int st = HIST_OK;
    r->h = hist_open_ex(r->path, 0, &st, err, errlen);
    return r->h ? HIST_OK : st;
}

static int step_session(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int st = hist_session_create(r->h, NULL, SYSTEM, &r->sid);
    if (st == HIST_OK) {
        r->want.session = true;
        r->want.title = "";
    }
    return st;
}

static int step_model(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int st = hist_session_set_model(r->h, r->sid, "tiny.gguf", "0123abcd");
    if (st == HIST_OK)
        r->want.model = "tiny.gguf";
    return st;
}

static int step_sampling(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct hist_sampling s = {.temperature = 0.7f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                              .repeat_penalty = 1.1f, .repeat_last_n = 64, .seed = 3,
                              .max_tokens = -1};
    int st = hist_session_set_sampling(r->h, r->sid, &s);
    if (st == HIST_OK)
        r->want.sampling = true;
    return st;
}

static int step_user(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int st = hist_message_add(r->h, r->sid, HIST_ROLE_USER, USER_TEXT, (size_t)-1, 8, NULL);
    if (st == HIST_OK) {
        add_msg(&r->want, HIST_ROLE_USER, USER_TEXT, HIST_END_NONE);
        r->want.title = USER_TEXT;
    }
    return st;
}

static int step_reply_begin(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int st = hist_reply_begin_from(r->h, r->sid, "cpu", "tiny.gguf", &r->reply_id);
    if (st == HIST_OK)
        add_msg(&r->want, HIST_ROLE_ASSISTANT, "", HIST_END_STREAMING);
    return st;
}

static int progress(struct run *r, const char *text)
{
    int st = hist_reply_progress(r->h, r->reply_id, text, strlen(text), 1);
    if (st == 1) {
        r->want.m[r->want.n - 1].text = text;
        return HIST_OK;
    }
    return st == 0 ? HIST_E_INVALID : st; /* forced: it must write */
}

static int step_progress1(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return progress(r, PART1);
}

static int step_progress2(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return progress(r, PART2);
}

static int step_finish(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct hist_reply_stats stats = {.n_tokens = 9, .n_prompt = 8, .prefill_tps = 100,
                                     .decode_tps = 20, .ttft_ms = 12};
    int st = hist_reply_finish(r->h, r->reply_id, FINAL, strlen(FINAL), &stats, HIST_END_STOP);
    if (st == HIST_OK) {
        r->want.m[r->want.n - 1].text = FINAL;
        r->want.m[r->want.n - 1].end = HIST_END_STOP;
    }
    return st;
}

static int step_search(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct hist_hit *hits = NULL;
    size_t n = 0;
    int st = hist_search(r->h, "dragons", "<", ">", 10, &hits, &n);
    if (st == HIST_OK) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= strstr(hits[i].snippet, "<dragons>") || strstr(hits[i].snippet, "<Dragons>");
        if (n != 2 || !found)
            fail_msg("search found %zu hits, expected both messages", n);
    }
    hist_hits_free(hits, n);
    return st;
}

static int export_as(struct run *r, enum hist_format fmt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    int st = hist_export(r->h, r->sid, fmt, f);
    fclose(f);
    if (st == HIST_OK && (!strstr(buf, USER_TEXT) || !strstr(buf, FINAL)))
        fail_msg("the export lacks a message:\n%s", buf);
    free(buf);
    return st;
}

static int step_export_md(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return export_as(r, HIST_FORMAT_MARKDOWN);
}

static int step_export_json(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return export_as(r, HIST_FORMAT_JSON);
}

static int step_list(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct hist_session *s = NULL;
    size_t n = 0;
    int st = hist_session_list(r->h, 0, 0, &s, &n);
    if (st == HIST_OK && (n != 1 || strcmp(s[0].preview, USER_TEXT) != 0))
        fail_msg("listed %zu sessions, expected one with its preview", n);
    hist_sessions_free(s, n);
    return st;
}

static int step_rename(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int st = hist_session_rename(r->h, r->sid, "Dragons");
    if (st == HIST_OK)
        r->want.title = "Dragons";
    return st;
}

static int step_retry_user(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int st = hist_message_add(r->h, r->sid, HIST_ROLE_USER, RETRY_TEXT, (size_t)-1, -1,
                              &r->retry_id);
    if (st == HIST_OK)
        add_msg(&r->want, HIST_ROLE_USER, RETRY_TEXT, HIST_END_NONE);
    return st;
}

static int step_truncate(struct run *r, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int64_t deleted = 0;
    int st = hist_messages_truncate(r->h, r->sid, r->retry_id, &deleted);
    if (st == HIST_OK) {
        assert_int_equal(deleted, 1);
        r->want.n--;
    }
    return st;
}

static const struct step {
    const char *name;
    int (*run)(struct run *r, char *err, size_t errlen);
} STEPS[] = {
    {.name = "open", .run = step_open},
    {.name = "create session", .run = step_session},
    {.name = "set model", .run = step_model},
    {.name = "set sampling", .run = step_sampling},
    {.name = "user message", .run = step_user},
    {.name = "begin reply", .run = step_reply_begin},
    {.name = "progress 1", .run = step_progress1},
    {.name = "progress 2", .run = step_progress2},
    {.name = "finish reply", .run = step_finish},
    {.name = "search", .run = step_search},
    {.name = "export markdown", .run = step_export_md},
    {.name = "export json", .run = step_export_json},
    {.name = "list sessions", .run = step_list},
    {.name = "rename", .run = step_rename},
    {.name = "retry: user message", .run = step_retry_user},
    {.name = "retry: truncate", .run = step_truncate},
};
#define N_STEPS (sizeof STEPS / sizeof STEPS[0])

/* ---- the checks after a run ---- */

/* SQLite's full check and FTS5's check of the search index against the
 * messages it indexes. */
static void check_integrity(const char *path, long n)
{
    if (access(path, F_OK) != 0)
        return; /* the open failed before creating it */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
        fail_msg("N=%ld: integrity_check: %s", n, sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema WHERE name = "
                                            "'messages_fts'", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int have_fts = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    char *msg = NULL;
    if (have_fts && sqlite3_exec(db, "INSERT INTO messages_fts(messages_fts) VALUES('integrity-check')", NULL,
                     NULL, &msg) != SQLITE_OK)
        fail_msg("N=%ld: the search index: %s", n, msg ? msg : "?");
    sqlite3_close(db);
}

/* Session SID as connection C (another than the writer's, so it sees only
 * what was committed) reads it holds exactly W. */
static void check_session(struct hist *c, int64_t sid, const struct want *w, long n,
                          const char *when)
{
    struct hist_session s;
    int st = hist_session_get(c, sid, &s);
    if (!w->session) {
        if (st != HIST_E_NOTFOUND)
            fail_msg("N=%ld (%s): a session exists that was never committed", n, when);
        return;
    }
    if (st != HIST_OK)
        fail_msg("N=%ld (%s): the session is gone: %s", n, when, hist_last_error(c));
    if (strcmp(s.title, w->title) != 0)
        fail_msg("N=%ld (%s): title '%s', expected '%s'", n, when, s.title, w->title);
    if (!s.system_prompt || strcmp(s.system_prompt, SYSTEM) != 0)
        fail_msg("N=%ld (%s): system prompt '%s'", n, when, s.system_prompt ? s.system_prompt : "(null)");
    if (w->model ? !s.model_name || strcmp(s.model_name, w->model) != 0 : s.model_name != NULL)
        fail_msg("N=%ld (%s): model '%s'", n, when, s.model_name ? s.model_name : "(null)");
    if (s.has_sampling != w->sampling)
        fail_msg("N=%ld (%s): sampling %s", n, when, s.has_sampling ? "set" : "unset");
    hist_session_clear(&s);
    struct hist_message *m = NULL;
    size_t nm = 0;
    assert_int_equal(hist_messages(c, sid, &m, &nm), HIST_OK);
    if (nm != (size_t)w->n)
        fail_msg("N=%ld (%s): %zu messages, expected %d", n, when, nm, w->n);
    for (size_t i = 0; i < nm; i++) {
        if (m[i].role != w->m[i].role || strcmp(m[i].content, w->m[i].text) != 0 ||
            m[i].end != w->m[i].end)
            fail_msg("N=%ld (%s): message %zu is %s '%s' (%s), expected %s '%s' (%s)", n, when, i,
                     hist_role_str(m[i].role), m[i].content, hist_end_str(m[i].end),
                     hist_role_str(w->m[i].role), w->m[i].text, hist_end_str(w->m[i].end));
    }
    hist_messages_free(m, nm);
}

/* The database at PATH opens, holds no session, and takes one. */
static void check_reopen(const char *path, long n)
{
    char err[1024];
    struct hist *h = hist_open(path, err, sizeof err);
    if (!h)
        fail_msg("N=%ld: reopening: %s", n, err);
    struct hist_session *s = NULL;
    size_t ns = 0;
    assert_int_equal(hist_session_list(h, 0, 0, &s, &ns), HIST_OK);
    if (ns != 0)
        fail_msg("N=%ld: %zu sessions in a database that never had one", n, ns);
    hist_sessions_free(s, ns);
    int64_t sid;
    if (hist_session_create(h, "after", NULL, &sid) != HIST_OK ||
        hist_message_add(h, sid, HIST_ROLE_USER, "still writable", (size_t)-1, -1, NULL) != HIST_OK)
        fail_msg("N=%ld: writing after the failure: %s", n, hist_last_error(h));
    hist_close(h);
}

static void remove_db(const char *path)
{
    static const char *const SUFFIX[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof SUFFIX / sizeof SUFFIX[0]; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s%s", path, SUFFIX[i]);
        unlink(p);
    }
}

/* The distinct failure messages, printed at the end (the path part cut). */
struct messages {
    char text[64][256];
    int n;
};

static void messages_add(struct messages *m, const char *step, const char *err, const char *path)
{
    char buf[256];
    size_t pl = strlen(path);
    const char *e = strncmp(err, path, pl) == 0 ? err + pl : err;
    snprintf(buf, sizeof buf, "%s: %s", step, e);
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->text[i], buf) == 0)
            return;
    if (m->n < 64)
        snprintf(m->text[m->n++], sizeof m->text[0], "%s", buf);
}

/* A folder for the database: in memory when the system has a tmpfs, as each
 * N of open_path creates a database and a disk's fsyncs would make
 * thousands of them take minutes. */
static void db_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/dev/shm/kvchat-failalloc-XXXXXX");
    if (access("/dev/shm", W_OK) != 0 || !mkdtemp(dir))
        test_tmpdir(dir, cap, "failalloc-history");
    assert_true(dir[0] != 0);
}

/* Every STRIDE-th N of the open path, from $KVCHAT_FAILALLOC_STRIDE (1:
 * every one). Creating and migrating a database makes about 7,000 of
 * SQLite's allocations, and each N also reopens the result, so every N
 * takes about a minute; the default covers every 7th (prime, so it falls
 * on other allocations of each repeated pattern). */
static long open_stride(void)
{
    const char *e = getenv("KVCHAT_FAILALLOC_STRIDE");
    long v = e && *e ? strtol(e, NULL, 10) : 7;
    return v >= 1 ? v : 1;
}

static void print_messages(const char *what, const struct messages *m, long points, long stride)
{
    printf("%s: %ld allocation points (every %ld tried), %d distinct messages\n", what, points,
           stride, m->n);
    for (int i = 0; i < m->n; i++)
        printf("  %s\n", m->text[i]);
}

/* Opening a new database: created, migrated to the current schema. A failed
 * open leaves a file that opens (and migrates) next time. */
static void open_path(void **state)
{
    (void)state;
    char dir[4096], path[4200];
    db_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/history.db", dir);
    struct messages msgs = {0};
    long points = 0, stride = open_stride();
    for (int persist = 0; persist <= 1; persist++) {
        for (long n = 1;; n += stride) {
            struct run r = {.path = path};
            char err[1024] = "";
            failalloc_arm(n, persist);
            int st = step_open(&r, err, sizeof err);
            hist_close(r.h); /* under the failure too: closing must not need memory */
            long seen = failalloc_count(), failed = failalloc_failures();
            failalloc_arm(0, false);
            if (st != HIST_OK) {
                if (failed == 0)
                    fail_msg("N=%ld: failed with no allocation failing: %s", n, err);
                if (st != HIST_E_NOMEM || !strstr(err, "out of memory"))
                    fail_msg("N=%ld%s: failed with %s, not out of memory: %s", n,
                             persist ? " (persistent)" : "", hist_status_str(st), err);
                messages_add(&msgs, "open", err, path);
            }
            check_integrity(path, n);
            check_reopen(path, n);
            remove_db(path);
            if (seen < n) {
                points = seen;
                break;
            }
        }
    }
    print_messages("open", &msgs, points, stride);
    rmdir(dir);
}

/* A chat session on an open database, every N. After a failed step a second
 * connection must read exactly what the steps before committed; then the
 * writer, on the same struct hist as kvchat keeps its own, retries the step
 * and carries on to the end, as kvchat does after "not saving". Persistently
 * out of memory, the failed write could not have run a ROLLBACK it had to
 * prepare, and the integrity check's own write would find it still holding
 * the write lock; an allocation failing inside the FTS5 trigger (N=616,
 * "begin reply") once left a connection whose later delete reported
 * SQLITE_CORRUPT. The session is deleted after each N, so each starts
 * alike. */
static void session_path(void **state)
{
    (void)state;
    char dir[4096], path[4200], err[1024];
    db_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/history.db", dir);
    struct hist *h = hist_open(path, err, sizeof err), *c = hist_open(path, err, sizeof err);
    if (!h || !c)
        fail_msg("opening: %s", err);
    struct messages msgs = {0};
    long points = 0;
    for (int persist = 0; persist <= 1; persist++) {
        for (long n = 1;; n++) {
            struct run r = {.path = path, .h = h, .sid = -1};
            int st = HIST_OK;
            size_t k = 1; /* STEPS[0] opened H */
            failalloc_arm(n, persist);
            for (; k < N_STEPS; k++)
                if ((st = STEPS[k].run(&r, err, sizeof err)) != HIST_OK)
                    break;
            long seen = failalloc_count(), failed = failalloc_failures();
            failalloc_arm(0, false);
            if (st != HIST_OK) {
                snprintf(err, sizeof err, "%s", hist_last_error(h));
                if (failed == 0)
                    fail_msg("N=%ld: %s failed with no allocation failing: %s", n, STEPS[k].name,
                             err);
                if (st != HIST_E_NOMEM || !strstr(err, "out of memory"))
                    fail_msg("N=%ld%s: %s failed with %s, not out of memory: %s", n,
                             persist ? " (persistent)" : "", STEPS[k].name, hist_status_str(st),
                             err);
                messages_add(&msgs, STEPS[k].name, err, path);
                if (r.sid >= 0)
                    check_session(c, r.sid, &r.want, n, STEPS[k].name);
                check_integrity(path, n);
                for (; k < N_STEPS; k++)
                    if (STEPS[k].run(&r, err, sizeof err) != HIST_OK)
                        fail_msg("N=%ld: retrying %s: %s", n, STEPS[k].name, hist_last_error(h));
            }
            check_session(c, r.sid, &r.want, n, "at the end");
            if (hist_session_delete(h, r.sid) != HIST_OK)
                fail_msg("N=%ld: deleting the session: %s", n, hist_last_error(h));
            if (seen < n) {
                points = seen;
                break;
            }
        }
    }
    print_messages("session", &msgs, points, 1);
    hist_close(c);
    hist_close(h);
    remove_db(path);
    rmdir(dir);
}

int main(void)
{
    /* before anything initialises SQLite */
    if (failalloc_sqlite_install() != 0) {
        fprintf(stderr, "sqlite3_config refused the allocator\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_path),
        cmocka_unit_test(session_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
