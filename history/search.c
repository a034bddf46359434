/* search.c - full-text search over message content (history.h), through the
 * FTS5 index the v2 migration keeps in step with the messages table.
 */
#include "history_internal.h"

#include <stdlib.h>
#include <string.h>

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
        while (i < len && hist_is_ws((unsigned char)q[i]))
            i++;
        size_t start = i;
        int wordy = 0;
        while (i < len && !hist_is_ws((unsigned char)q[i])) {
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

static int read_hit(sqlite3_stmt *st, void *out)
{
    struct hist_hit *x = out;
    x->session_id = sqlite3_column_int64(st, 0);
    x->session_title = hist_col_strdup(st, 1, 1);
    x->message_id = sqlite3_column_int64(st, 2);
    x->role = hist_role_parse((const char *)sqlite3_column_text(st, 3));
    x->created_ms = sqlite3_column_int64(st, 4);
    x->snippet = hist_col_strdup(st, 5, 1);
    if (!x->session_title || !x->snippet) {
        free(x->session_title);
        free(x->snippet);
        return HIST_E_NOMEM;
    }
    return HIST_OK;
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
        return hist_failf(h, HIST_E_NOMEM, "%s: out of memory", what);
    if (!*expr) {
        free(expr);
        return HIST_OK;
    }
    sqlite3_stmt *st;
    int ret = hist_prepare(h, "SELECT m.session_id, s.title, m.id, m.role, m.created_ms, "
                              "snippet(messages_fts, 0, ?, ?, '\xE2\x80\xA6', 16) "
                              "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                              "JOIN sessions s ON s.id = m.session_id "
                              "WHERE messages_fts MATCH ? ORDER BY rank, m.id DESC LIMIT ?",
                           &st, what);
    if (ret) {
        free(expr);
        return ret;
    }
    sqlite3_bind_text(st, 1, mark_open ? mark_open : "[", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, mark_close ? mark_close : "]", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, expr, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, limit > 0 ? limit : 50);
    void *rows;
    size_t cnt;
    ret = hist_read_all(h, st, read_hit, sizeof **out, &rows, &cnt, what);
    free(expr);
    if (ret) {
        hist_hits_free(rows, cnt);
        return ret;
    }
    *out = rows;
    *n = cnt;
    return HIST_OK;
}
