/* sessions.c - sessions of the history store (history.h): create, read,
 * list, rename, delete, and the settings saved with each (system prompt,
 * sampling, model).
 */
#include "history_internal.h"

#include <stdlib.h>
#include <string.h>

#define HIST_PREVIEW_CHARS 80

int hist_session_exists(struct hist *h, int64_t id, int *exists)
{
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "SELECT 1 FROM sessions WHERE id = ?", &st, "reading a session");
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    *exists = rc == SQLITE_ROW;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? HIST_OK : hist_fail(h, rc, "reading a session");
}

int hist_session_create(struct hist *h, const char *title, const char *system_prompt, int64_t *out_id)
{
    if (!h)
        return HIST_E_INVALID;
    int ret = hist_begin_write(h, "creating a session");
    if (ret)
        return ret;
    sqlite3_stmt *st;
    if ((ret = hist_prepare(h, "INSERT INTO sessions(title, created_ms, updated_ms, system_prompt) "
                               "VALUES (?, ?, ?, ?)", &st, "creating a session"))) {
        hist_rollback(h);
        return ret;
    }
    char *t = title ? hist_shorten(title, strlen(title), 200) : NULL;
    int64_t now = hist_now_ms();
    sqlite3_bind_text(st, 1, t ? t : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, now);
    hist_bind_text_or_null(st, 4, system_prompt);
    ret = hist_step_done(h, st, "creating a session");
    free(t);
    if (ret) {
        hist_rollback(h);
        return ret;
    }
    int64_t id = sqlite3_last_insert_rowid(h->db);
    if ((ret = hist_commit(h, "creating a session")))
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

static int read_session(sqlite3_stmt *st, void *out)
{
    struct hist_session *s = out;
    memset(s, 0, sizeof *s);
    s->id = sqlite3_column_int64(st, 0);
    s->title = hist_col_strdup(st, 1, 1);
    s->created_ms = sqlite3_column_int64(st, 2);
    s->updated_ms = sqlite3_column_int64(st, 3);
    s->model_name = hist_col_strdup(st, 4, 0);
    s->model_digest = hist_col_strdup(st, 5, 0);
    s->system_prompt = hist_col_strdup(st, 6, 0);
    s->has_sampling = sqlite3_column_type(st, 7) != SQLITE_NULL;
    if (s->has_sampling) {
        s->sampling.temperature = (float)sqlite3_column_double(st, 7);
        s->sampling.top_k = sqlite3_column_int(st, 8);
        s->sampling.top_p = (float)sqlite3_column_double(st, 9);
        s->sampling.min_p = (float)sqlite3_column_double(st, 10);
        s->sampling.repeat_penalty = (float)sqlite3_column_double(st, 11);
        s->sampling.repeat_last_n = sqlite3_column_int(st, 12);
        s->sampling.seed = (uint64_t)sqlite3_column_int64(st, 13);
        s->sampling.max_tokens = (int32_t)hist_col_i64_or(st, 14, -1);
    }
    s->n_messages = sqlite3_column_int64(st, 15);
    const char *pv = (const char *)sqlite3_column_text(st, 16);
    s->preview = hist_shorten(pv ? pv : "", pv ? (size_t)sqlite3_column_bytes(st, 16) : 0, HIST_PREVIEW_CHARS);
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
    int ret = hist_prepare(h, "SELECT " SESSION_COLS " FROM sessions s WHERE s.id = ?", &st, "reading a session");
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    return hist_read_one(h, st, read_session, out, "session", id, "reading a session");
}

int hist_session_latest(struct hist *h, int64_t *out_id)
{
    if (!h || !out_id)
        return HIST_E_INVALID;
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "SELECT id FROM sessions ORDER BY updated_ms DESC, id DESC LIMIT 1", &st,
                           "finding the latest session");
    if (ret)
        return ret;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out_id = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        ret = hist_failf(h, HIST_E_NOTFOUND, "no sessions yet");
    else
        ret = hist_fail(h, rc, "finding the latest session");
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
    int ret = hist_prepare(h, "SELECT " SESSION_COLS " FROM sessions s "
                              "ORDER BY s.updated_ms DESC, s.id DESC LIMIT ? OFFSET ?",
                           &st, "listing sessions");
    if (ret)
        return ret;
    sqlite3_bind_int64(st, 1, limit > 0 ? limit : -1);
    sqlite3_bind_int64(st, 2, offset);
    void *rows;
    size_t cnt;
    if ((ret = hist_read_all(h, st, read_session, sizeof **out, &rows, &cnt, "listing sessions"))) {
        hist_sessions_free(rows, cnt);
        return ret;
    }
    *out = rows;
    *n = cnt;
    return HIST_OK;
}

/* Runs one UPDATE/DELETE on session ID inside a write transaction; the
 * statement's last parameter is the id. NOTFOUND if no row changed. */
static int session_write(struct hist *h, int64_t id, sqlite3_stmt *st, const char *what)
{
    int nparam = sqlite3_bind_parameter_count(st);
    sqlite3_bind_int64(st, nparam, id);
    int ret = hist_begin_write(h, what);
    if (ret) {
        sqlite3_finalize(st);
        return ret;
    }
    if ((ret = hist_step_done(h, st, what))) {
        hist_rollback(h);
        return ret;
    }
    if (sqlite3_changes(h->db) == 0) {
        hist_rollback(h);
        return hist_failf(h, HIST_E_NOTFOUND, "%s: no session %lld", what, (long long)id);
    }
    return hist_commit(h, what);
}

int hist_session_rename(struct hist *h, int64_t id, const char *title)
{
    if (!h || !title)
        return HIST_E_INVALID;
    char *t = hist_shorten(title, strlen(title), 200);
    if (!t)
        return hist_failf(h, HIST_E_NOMEM, "renaming a session: out of memory");
    if (!*t) {
        free(t);
        return hist_failf(h, HIST_E_INVALID, "renaming session %lld: the title is empty", (long long)id);
    }
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "UPDATE sessions SET title = ?, updated_ms = ? WHERE id = ?", &st,
                           "renaming a session");
    if (!ret) {
        sqlite3_bind_text(st, 1, t, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, hist_now_ms());
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
    int ret = hist_prepare(h, "DELETE FROM sessions WHERE id = ?", &st, "deleting a session");
    return ret ? ret : session_write(h, id, st, "deleting a session");
}

int hist_session_set_system(struct hist *h, int64_t id, const char *system_prompt)
{
    if (!h)
        return HIST_E_INVALID;
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "UPDATE sessions SET system_prompt = ?, updated_ms = ? WHERE id = ?", &st,
                           "saving the system prompt");
    if (ret)
        return ret;
    hist_bind_text_or_null(st, 1, system_prompt);
    sqlite3_bind_int64(st, 2, hist_now_ms());
    return session_write(h, id, st, "saving the system prompt");
}

int hist_session_set_sampling(struct hist *h, int64_t id, const struct hist_sampling *p)
{
    if (!h || !p)
        return HIST_E_INVALID;
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "UPDATE sessions SET temperature = ?, top_k = ?, top_p = ?, min_p = ?, "
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
    sqlite3_bind_int64(st, 9, hist_now_ms());
    return session_write(h, id, st, "saving sampling parameters");
}

int hist_session_set_model(struct hist *h, int64_t id, const char *name, const char *digest)
{
    if (!h)
        return HIST_E_INVALID;
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "UPDATE sessions SET model_name = ?, model_digest = ?, updated_ms = ? WHERE id = ?",
                           &st, "saving the model");
    if (ret)
        return ret;
    hist_bind_text_or_null(st, 1, name);
    hist_bind_text_or_null(st, 2, digest);
    sqlite3_bind_int64(st, 3, hist_now_ms());
    return session_write(h, id, st, "saving the model");
}
