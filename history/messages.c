/* messages.c - messages of the history store (history.h): whole messages,
 * streaming replies (begin, throttled progress saves, finish), truncation
 * for /retry and /edit, and reading them back.
 */
#include "history_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HIST_PROGRESS_MS 1000 /* the most a crash may lose of a streaming reply */

#define PROGRESS_BUSY_MS 100

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int bind_content(struct hist *h, sqlite3_stmt *st, int i, const char *text, size_t len)
{
    int rc = sqlite3_bind_text64(st, i, text, len, SQLITE_STATIC, SQLITE_UTF8);
    if (rc == SQLITE_TOOBIG)
        return hist_failf(h, HIST_E_INVALID, "message of %zu bytes is too long to store", len);
    return rc == SQLITE_OK ? HIST_OK : hist_fail(h, rc, "storing a message");
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
    int ret = hist_prepare(h, "UPDATE sessions SET updated_ms = max(updated_ms, ?) WHERE id = ?", &st, what);
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, session_id);
    return hist_step_done(h, st, what);
}

/* Inserts a message row inside the caller's transaction. */
static int insert_message(struct hist *h, int64_t session_id, enum hist_role role, const char *text,
                          size_t len, int32_t n_tokens, const char *end, const char *engine,
                          const char *model, const char *what, int64_t *out_id)
{
    int exists = 0;
    int ret = hist_session_exists(h, session_id, &exists);
    if (ret)
        return ret;
    if (!exists)
        return hist_failf(h, HIST_E_NOTFOUND, "%s: no session %lld", what, (long long)session_id);
    sqlite3_stmt *st;
    if ((ret = hist_prepare(h, "INSERT INTO messages(session_id, role, content, created_ms, updated_ms, "
                               "n_tokens, end_reason, writer, engine, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            &st, what)))
        return ret;
    int64_t now = hist_now_ms();
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_text(st, 2, hist_role_str(role), -1, SQLITE_STATIC);
    if ((ret = bind_content(h, st, 3, text, len))) {
        sqlite3_finalize(st);
        return ret;
    }
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now);
    bind_count(st, 6, n_tokens);
    hist_bind_text_or_null(st, 7, end);
    hist_bind_text_or_null(st, 8, end ? h->writer : NULL);
    hist_bind_text_or_null(st, 9, engine);
    hist_bind_text_or_null(st, 10, model);
    if ((ret = hist_step_done(h, st, what)))
        return ret;
    *out_id = sqlite3_last_insert_rowid(h->db);
    return touch_session(h, session_id, now, what);
}

int hist_message_add(struct hist *h, int64_t session_id, enum hist_role role, const char *text,
                     size_t len, int32_t n_tokens, int64_t *out_id)
{
    if (!h || !text || (unsigned)role > HIST_ROLE_ASSISTANT)
        return h ? hist_failf(h, HIST_E_INVALID, "saving a message: bad role or no text") : HIST_E_INVALID;
    if (len == (size_t)-1)
        len = strlen(text);
    const char *what = "saving a message";
    int ret = hist_begin_write(h, what);
    if (ret)
        return ret;
    int64_t id = 0;
    ret = insert_message(h, session_id, role, text, len, n_tokens, NULL, NULL, NULL, what, &id);
    if (!ret && role == HIST_ROLE_USER) {
        /* The first user message names an untitled session. */
        char *t = hist_make_title(text, len, HIST_TITLE_COLS);
        sqlite3_stmt *st;
        if (!t)
            ret = hist_failf(h, HIST_E_NOMEM, "%s: out of memory", what);
        else if (*t && !(ret = hist_prepare(h, "UPDATE sessions SET title = ? WHERE id = ? AND title = ''",
                                            &st, what))) {
            sqlite3_bind_text(st, 1, t, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, session_id);
            ret = hist_step_done(h, st, what);
        }
        free(t);
    }
    if (ret) {
        hist_rollback(h);
        return ret;
    }
    if ((ret = hist_commit(h, what)))
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
    return hist_reply_begin_from(h, session_id, NULL, NULL, out_id);
}

static int reply_begin(struct hist *h, int64_t session_id, bool variant, int64_t of_id,
                       const char *engine, const char *model, int64_t *out_id);

int hist_reply_begin_from(struct hist *h, int64_t session_id, const char *engine, const char *model,
                          int64_t *out_id)
{
    return reply_begin(h, session_id, false, 0, engine, model, out_id);
}

/* The first reply of the turn reply OF_ID belongs to, in *HEAD; checks it
 * is an assistant message of SESSION_ID (any session when SESSION_ID < 0). */
static int variant_head(struct hist *h, int64_t session_id, int64_t of_id, int64_t *head,
                        const char *what)
{
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "SELECT coalesce(variant_of, id) FROM messages WHERE id = ? "
                              "AND role = 'assistant' AND (? < 0 OR session_id = ?)", &st, what);
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, of_id);
    sqlite3_bind_int64(st, 2, session_id);
    sqlite3_bind_int64(st, 3, session_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *head = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return HIST_OK;
    if (rc == SQLITE_DONE)
        return hist_failf(h, HIST_E_NOTFOUND, "%s: no reply %lld", what, (long long)of_id);
    return hist_fail(h, rc, what);
}

/* Sets every variant of turn HEAD off except KEEP (0: all of them). */
static int variants_off(struct hist *h, int64_t head, int64_t keep, const char *what)
{
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "UPDATE messages SET variant_off = (id != ?) "
                              "WHERE id = ? OR variant_of = ?", &st, what);
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, keep);
    sqlite3_bind_int64(st, 2, head);
    sqlite3_bind_int64(st, 3, head);
    return hist_step_done(h, st, what);
}

int hist_reply_begin_variant(struct hist *h, int64_t session_id, int64_t of_id, const char *engine,
                             const char *model, int64_t *out_id)
{
    return reply_begin(h, session_id, true, of_id, engine, model, out_id);
}

/* A new streaming reply of SESSION_ID; with VARIANT another variant of the
 * turn reply OF_ID belongs to, chosen, the others set off. */
static int reply_begin(struct hist *h, int64_t session_id, bool variant, int64_t of_id,
                       const char *engine, const char *model, int64_t *out_id)
{
    if (!h)
        return HIST_E_INVALID;
    const char *what = variant ? "starting another reply" : "starting a reply";
    int ret = hist_begin_write(h, what);
    if (ret)
        return ret;
    int64_t head = 0, id = 0;
    if (variant && !(ret = variant_head(h, session_id, of_id, &head, what)))
        ret = variants_off(h, head, 0, what);
    if (!ret)
        ret = insert_message(h, session_id, HIST_ROLE_ASSISTANT, "", 0, -1, "streaming", engine, model,
                             what, &id);
    if (!ret && variant) {
        sqlite3_stmt *st;
        if (!(ret = hist_prepare(h, "UPDATE messages SET variant_of = ? WHERE id = ?", &st, what))) {
            sqlite3_bind_int64(st, 1, head);
            sqlite3_bind_int64(st, 2, id);
            ret = hist_step_done(h, st, what);
        }
    }
    if (ret) {
        hist_rollback(h);
        return ret;
    }
    if ((ret = hist_commit(h, what)))
        return ret;
    slot_for(h, id, 1)->last_ms = mono_ms();
    if (out_id)
        *out_id = id;
    return HIST_OK;
}

int hist_variant_choose(struct hist *h, int64_t msg_id)
{
    if (!h)
        return HIST_E_INVALID;
    const char *what = "choosing a reply";
    int ret = hist_begin_write(h, what);
    if (ret)
        return ret;
    int64_t head = 0;
    if (!(ret = variant_head(h, -1, msg_id, &head, what)))
        ret = variants_off(h, head, msg_id, what);
    if (ret) {
        hist_rollback(h);
        return ret;
    }
    return hist_commit(h, what);
}

int hist_reply_set_thinking(struct hist *h, int64_t msg_id, const char *thinking, size_t len)
{
    if (!h)
        return HIST_E_INVALID;
    const char *what = "saving the reply's thinking";
    if (thinking && len == (size_t)-1)
        len = strlen(thinking);
    int ret = hist_begin_write(h, what);
    if (ret)
        return ret;
    sqlite3_stmt *st;
    if ((ret = hist_prepare(h, "UPDATE messages SET thinking = ? WHERE id = ? AND role = 'assistant'",
                            &st, what))) {
        hist_rollback(h);
        return ret;
    }
    if (thinking && len > 0) {
        if ((ret = bind_content(h, st, 1, thinking, len))) {
            sqlite3_finalize(st);
            hist_rollback(h);
            return ret;
        }
    } else {
        sqlite3_bind_null(st, 1);
    }
    sqlite3_bind_int64(st, 2, msg_id);
    if ((ret = hist_step_done(h, st, what))) {
        hist_rollback(h);
        return ret;
    }
    if (sqlite3_changes(h->db) == 0) {
        hist_rollback(h);
        return hist_failf(h, HIST_E_NOTFOUND, "%s: no reply %lld", what, (long long)msg_id);
    }
    return hist_commit(h, what);
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
    int ret = hist_begin_write(h, what);
    sqlite3_busy_timeout(h->db, h->busy_ms);
    if (ret)
        return ret;
    sqlite3_stmt *st;
    if ((ret = hist_prepare(h, "UPDATE messages SET content = ?, updated_ms = ? "
                               "WHERE id = ? AND end_reason = 'streaming'", &st, what))) {
        hist_rollback(h);
        return ret;
    }
    if ((ret = bind_content(h, st, 1, text, len))) {
        sqlite3_finalize(st);
        hist_rollback(h);
        return ret;
    }
    sqlite3_bind_int64(st, 2, hist_now_ms());
    sqlite3_bind_int64(st, 3, msg_id);
    if ((ret = hist_step_done(h, st, what))) {
        hist_rollback(h);
        return ret;
    }
    if (sqlite3_changes(h->db) == 0) {
        hist_rollback(h);
        slot->msg_id = 0;
        return hist_failf(h, HIST_E_NOTFOUND, "%s: reply %lld is not streaming (missing or already ended)",
                          what, (long long)msg_id);
    }
    ret = hist_commit(h, what);
    return ret ? ret : 1;
}

int hist_reply_finish(struct hist *h, int64_t msg_id, const char *text, size_t len,
                      const struct hist_reply_stats *stats, enum hist_end end)
{
    if (!h)
        return HIST_E_INVALID;
    const char *what = "saving the reply";
    if (!text || end < HIST_END_STOP || end > HIST_END_INTERRUPTED)
        return hist_failf(h, HIST_E_INVALID, "%s: no text or bad end reason", what);
    if (len == (size_t)-1)
        len = strlen(text);
    struct progress_slot *slot = slot_for(h, msg_id, 0);
    if (slot)
        slot->msg_id = 0;
    int ret = hist_begin_write(h, what);
    if (ret)
        return ret;
    sqlite3_stmt *st;
    if ((ret = hist_prepare(h, "UPDATE messages SET content = ?, n_tokens = ?, n_prompt = ?, prefill_tps = ?, "
                               "decode_tps = ?, ttft_ms = ?, end_reason = ?, updated_ms = ?, writer = NULL "
                               "WHERE id = ? AND role = 'assistant'", &st, what))) {
        hist_rollback(h);
        return ret;
    }
    if ((ret = bind_content(h, st, 1, text, len))) {
        sqlite3_finalize(st);
        hist_rollback(h);
        return ret;
    }
    int64_t now = hist_now_ms();
    bind_count(st, 2, stats ? stats->n_tokens : -1);
    bind_count(st, 3, stats ? stats->n_prompt : -1);
    bind_figure(st, 4, stats ? stats->prefill_tps : -1);
    bind_figure(st, 5, stats ? stats->decode_tps : -1);
    bind_figure(st, 6, stats ? stats->ttft_ms : -1);
    sqlite3_bind_text(st, 7, hist_end_str(end), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, now);
    sqlite3_bind_int64(st, 9, msg_id);
    if ((ret = hist_step_done(h, st, what))) {
        hist_rollback(h);
        return ret;
    }
    if (sqlite3_changes(h->db) == 0) {
        hist_rollback(h);
        return hist_failf(h, HIST_E_NOTFOUND, "%s: no reply %lld", what, (long long)msg_id);
    }
    if (!(ret = hist_prepare(h, "UPDATE sessions SET updated_ms = max(updated_ms, ?) "
                                "WHERE id = (SELECT session_id FROM messages WHERE id = ?)", &st, what))) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int64(st, 2, msg_id);
        ret = hist_step_done(h, st, what);
    }
    if (ret) {
        hist_rollback(h);
        return ret;
    }
    return hist_commit(h, what);
}

int hist_messages_truncate(struct hist *h, int64_t session_id, int64_t from_msg_id, int64_t *out_deleted)
{
    if (!h)
        return HIST_E_INVALID;
    const char *what = "removing the last messages";
    int ret = hist_begin_write(h, what);
    if (ret)
        return ret;
    int exists = 0;
    if ((ret = hist_session_exists(h, session_id, &exists))) {
        hist_rollback(h);
        return ret;
    }
    if (!exists) {
        hist_rollback(h);
        return hist_failf(h, HIST_E_NOTFOUND, "%s: no session %lld", what, (long long)session_id);
    }
    sqlite3_stmt *st;
    if ((ret = hist_prepare(h, "DELETE FROM messages WHERE session_id = ? AND id >= ?", &st, what))) {
        hist_rollback(h);
        return ret;
    }
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, from_msg_id);
    if ((ret = hist_step_done(h, st, what))) {
        hist_rollback(h);
        return ret;
    }
    int64_t deleted = sqlite3_changes(h->db);
    /* Set, not max(): the change is now, even if a clock step put an earlier
     * write in the future. */
    if (!(ret = hist_prepare(h, "UPDATE sessions SET updated_ms = ? WHERE id = ?", &st, what))) {
        sqlite3_bind_int64(st, 1, hist_now_ms());
        sqlite3_bind_int64(st, 2, session_id);
        ret = hist_step_done(h, st, what);
    }
    if (ret) {
        hist_rollback(h);
        return ret;
    }
    if ((ret = hist_commit(h, what)))
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
    "prefill_tps, decode_tps, ttft_ms, engine, model, thinking, variant_of, variant_off"

static int read_message(sqlite3_stmt *st, void *out)
{
    struct hist_message *m = out;
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(st, 0);
    m->session_id = sqlite3_column_int64(st, 1);
    m->role = hist_role_parse((const char *)sqlite3_column_text(st, 2));
    const char *c = (const char *)sqlite3_column_text(st, 3);
    m->content_len = c ? (size_t)sqlite3_column_bytes(st, 3) : 0;
    m->content = hist_strndup(c ? c : "", m->content_len);
    m->created_ms = sqlite3_column_int64(st, 4);
    m->updated_ms = hist_col_i64_or(st, 5, m->created_ms);
    m->end = hist_end_parse((const char *)sqlite3_column_text(st, 6));
    m->stats.n_tokens = (int32_t)hist_col_i64_or(st, 7, -1);
    m->stats.n_prompt = (int32_t)hist_col_i64_or(st, 8, -1);
    m->stats.prefill_tps = hist_col_dbl_or(st, 9, -1);
    m->stats.decode_tps = hist_col_dbl_or(st, 10, -1);
    m->stats.ttft_ms = hist_col_dbl_or(st, 11, -1);
    m->engine = hist_col_strdup(st, 12, 0);
    m->model = hist_col_strdup(st, 13, 0);
    m->thinking = hist_col_strdup(st, 14, 0);
    /* A hostile file may hold anything here: only a positive id is a turn,
     * any nonzero flag is "off". */
    int64_t of = hist_col_i64_or(st, 15, 0);
    m->variant_of = of > 0 ? of : 0;
    m->variant_off = hist_col_i64_or(st, 16, 0) != 0;
    /* NULL from hist_col_strdup is a NULL column or no memory; tell them apart. */
    if (!m->content || (!m->engine && sqlite3_column_type(st, 12) != SQLITE_NULL) ||
        (!m->model && sqlite3_column_type(st, 13) != SQLITE_NULL) ||
        (!m->thinking && sqlite3_column_type(st, 14) != SQLITE_NULL)) {
        hist_message_clear(m);
        return HIST_E_NOMEM;
    }
    return HIST_OK;
}

void hist_message_clear(struct hist_message *m)
{
    if (!m)
        return;
    free(m->content);
    free(m->engine);
    free(m->model);
    free(m->thinking);
    memset(m, 0, sizeof *m);
}

void hist_messages_free(struct hist_message *arr, size_t n)
{
    if (!arr)
        return;
    for (size_t i = 0; i < n; i++)
        hist_message_clear(&arr[i]);
    free(arr);
}

int hist_message_get(struct hist *h, int64_t msg_id, struct hist_message *out)
{
    if (!h || !out)
        return HIST_E_INVALID;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "SELECT " MESSAGE_COLS " FROM messages WHERE id = ?", &st, "reading a message");
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, msg_id);
    return hist_read_one(h, st, read_message, out, "message", msg_id, "reading a message");
}

int hist_messages(struct hist *h, int64_t session_id, struct hist_message **out, size_t *n)
{
    if (!h || !out || !n)
        return HIST_E_INVALID;
    *out = NULL;
    *n = 0;
    const char *what = "reading messages";
    /* One read transaction, so the existence check and the rows agree. */
    int ret = hist_begin_read(h, what);
    if (ret)
        return ret;
    int exists = 0;
    ret = hist_session_exists(h, session_id, &exists);
    if (!ret && !exists)
        ret = hist_failf(h, HIST_E_NOTFOUND, "no session %lld", (long long)session_id);
    sqlite3_stmt *st = NULL;
    /* "+id": sorted by the rows' own ids, not taken in the order of the
     * (session_id, id) index, so a damaged index that quick_check at open
     * does not compare with its table cannot reorder a conversation. */
    if (!ret)
        ret = hist_prepare(h, "SELECT " MESSAGE_COLS " FROM messages WHERE session_id = ? ORDER BY +id", &st, what);
    void *rows = NULL;
    size_t cnt = 0;
    if (!ret) {
        sqlite3_bind_int64(st, 1, session_id);
        ret = hist_read_all(h, st, read_message, sizeof **out, &rows, &cnt, what);
    }
    /* Ending the read can fail for want of memory; left open, it would pin
     * this connection to an old snapshot and fail every later write. */
    if (sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        hist_rollback(h);
    /* A row of another session can only come from a damaged index: say
     * so, rather than show it in this conversation. */
    for (size_t i = 0; !ret && i < cnt; i++)
        if (((struct hist_message *)rows)[i].session_id != session_id)
            ret = hist_failf(h, HIST_E_CORRUPT,
                             "%s: the history database is damaged (index messages_by_session "
                             "disagrees with its table): run kvchat --repair --db %s",
                             what, h->path);
    if (ret) {
        hist_messages_free(rows, cnt);
        return ret;
    }
    *out = rows;
    *n = cnt;
    return HIST_OK;
}
