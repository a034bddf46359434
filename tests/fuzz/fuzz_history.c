/* fuzz_history.c - libFuzzer target for reading a hostile history database
 * (history/).
 *
 * The input bytes become the database file; then the reader runs over it as
 * kvchat does: hist_open (which checks, migrates and repairs), the session
 * list, every session's messages and both exports (to /dev/null), and a few
 * searches; then one write sequence (a session, a user message, a streamed
 * reply). SQLite itself is robust against damaged files; the point is our
 * code on what SQLite hands back: NULL columns, wrong types, huge values, bad
 * UTF-8, missing tables or columns, odd user_version. Every call must return
 * a hist_status, every refusal must leave a non-empty one-line message, and
 * whatever is handed back must hold the invariants history.h promises.
 *
 * SQLite is the system library, not instrumented, so coverage guides the
 * fuzzer only through our code; the seed corpus (small databases made by
 * make_history_corpus through the real API, some with rows no kvchat would
 * write) does the rest.
 *
 * Build and run (from the repository root):
 *   CC=clang cmake -S . -B build-fuzz -DKVCHAT_FUZZ=ON -DKVCHAT_CUDA=OFF
 *   cmake --build build-fuzz --target fuzz_history -j2
 *   mkdir -p /tmp/history-corpus && ./build-fuzz/tests/fuzz/fuzz_history
 *     -max_total_time=60 -max_len=65536 -timeout=10 -artifact_prefix=/tmp/
 *     /tmp/history-corpus tests/fuzz/corpus/history
 * The database is written to a private folder under $TMPDIR (or /tmp),
 * removed at exit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "history.h"

static char dir[256], path[300];
static FILE *devnull;

static void remove_files(void)
{
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    char p[320];
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

static void cleanup(void)
{
    remove_files();
    rmdir(dir);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/fuzz_history.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/h.db", dir);
    devnull = fopen("/dev/null", "w");
    if (!devnull)
        abort();
    atexit(cleanup);
}

/* A failed call returns a hist_status and leaves a one-line message. */
static void check_status(struct hist *h, int rc)
{
    if (rc > 0 || rc < HIST_E_SQL)
        abort();
    if (rc) {
        const char *e = hist_last_error(h);
        if (!e[0] || strchr(e, '\n'))
            abort();
    }
}

static void check_session(const struct hist_session *s)
{
    if (!s->title || !s->preview || strlen(s->preview) > 80 * 4 + 3)
        abort();
}

static void check_messages(const struct hist_message *m, size_t n, int64_t sid)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)m[i].role > HIST_ROLE_ASSISTANT || (unsigned)m[i].end > HIST_END_INTERRUPTED)
            abort();
        if (!m[i].content || m[i].content[m[i].content_len] != 0 || m[i].session_id != sid)
            abort();
        if (i && m[i].id <= m[i - 1].id)
            abort(); /* oldest first */
    }
}

static void read_all(struct hist *h)
{
    struct hist_session *s = NULL;
    size_t n = 0;
    int rc = hist_session_list(h, 0, 0, &s, &n);
    check_status(h, rc);
    if (rc && (s || n))
        abort();
    for (size_t i = 0; i < n && i < 32; i++) {
        check_session(&s[i]);
        struct hist_message *m = NULL;
        size_t nm = 0;
        rc = hist_messages(h, s[i].id, &m, &nm);
        check_status(h, rc);
        if (!rc)
            check_messages(m, nm, s[i].id);
        for (size_t j = 0; j < nm && j < 4; j++) {
            struct hist_message one;
            rc = hist_message_get(h, m[j].id, &one);
            check_status(h, rc);
            hist_message_clear(&one);
        }
        hist_messages_free(m, nm);
        struct hist_session one;
        rc = hist_session_get(h, s[i].id, &one);
        check_status(h, rc);
        if (!rc)
            check_session(&one);
        hist_session_clear(&one);
        check_status(h, hist_export(h, s[i].id, HIST_FORMAT_MARKDOWN, devnull));
        check_status(h, hist_export(h, s[i].id, HIST_FORMAT_JSON, devnull));
    }
    hist_sessions_free(s, n);
    int64_t latest;
    check_status(h, hist_session_latest(h, &latest));

    static const char *const queries[] = {"hello", "the \"quoted\" word*", "caf\xc3\xa9", "\xff\xfe x"};
    for (size_t q = 0; q < sizeof queries / sizeof *queries; q++) {
        struct hist_hit *hits = NULL;
        size_t nh = 0;
        rc = hist_search(h, queries[q], "<<", ">>", 0, &hits, &nh);
        check_status(h, rc);
        for (size_t i = 0; i < nh; i++)
            if (!hits[i].session_title || !hits[i].snippet || (unsigned)hits[i].role > HIST_ROLE_ASSISTANT)
                abort();
        hist_hits_free(hits, nh);
    }
}

/* What a chat does: must fail cleanly or work on whatever the file holds. */
static void write_some(struct hist *h)
{
    int64_t sid, mid, rid;
    int rc = hist_session_create(h, NULL, "sys", &sid);
    check_status(h, rc);
    if (rc)
        return;
    check_status(h, hist_message_add(h, sid, HIST_ROLE_USER, "hello there", (size_t)-1, 2, &mid));
    rc = hist_reply_begin(h, sid, &rid);
    check_status(h, rc);
    if (rc)
        return;
    rc = hist_reply_progress(h, rid, "partial", (size_t)-1, 1);
    if (rc != 1)
        check_status(h, rc);
    struct hist_reply_stats st = {3, 2, 10.0, 20.0, 5.0};
    check_status(h, hist_reply_finish(h, rid, "partial answer", (size_t)-1, &st, HIST_END_STOP));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull)
        setup();
    remove_files();
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    char err[512];
    err[0] = 0;
    int st = 0;
    struct hist *h = hist_open_ex(path, 0, &st, err, sizeof err);
    if (!h) {
        if (st >= 0 || st < HIST_E_SQL || strncmp(err, path, strlen(path)) != 0 || strchr(err, '\n'))
            abort();
        remove_files();
        return 0;
    }
    read_all(h);
    write_some(h);
    read_all(h);
    hist_close(h);
    remove_files();
    return 0;
}
