/* store.c - the helpers every file of the history store uses (declared in
 * history_internal.h): clocks, error messages, statements and transactions,
 * column and row readers, the names roles and end reasons are stored under,
 * and the text shaping that makes titles and previews.
 */
#include "history_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>

/* ---- small helpers ---- */

int64_t hist_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *hist_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* Maps an SQLite result code to the status class the caller acts on. */
int hist_status_of(int rc)
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
    case HIST_E_LOCKED:
        return "database is locked by another kvchat or program (try again, or use --no-history)";
    case HIST_E_READONLY: return "database is read-only (check permissions of the file and its folder)";
    case HIST_E_CORRUPT:
        return "not a kvchat history database, or it is corrupt (move it aside and kvchat starts a new one)";
    case HIST_E_FULL: return "disk full (free some space)";
    case HIST_E_NOMEM: return "out of memory";
    default: return NULL;
    }
}

/* Formats "PATH: WHAT: reason" into BUF, reason from the SQLite code/message. */
void hist_fmt_sqlite_err(char *buf, size_t cap, const char *path, sqlite3 *db, int rc,
                                const char *what)
{
    int st = hist_status_of(rc);
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

/* A write that finds damage the open-time checks missed: the full check
 * says what is damaged, so the message can name it and the way to mend it. */
static void describe_damage(struct hist *h, const char *what)
{
    hist_rollback(h);
    sqlite3_stmt *st;
    char found[300] = "";
    if (sqlite3_prepare_v2(h->db, "PRAGMA integrity_check(1)", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            snprintf(found, sizeof found, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    /* The check's first line may only say which database; the message
     * stays one line. */
    char *text = found;
    if (strncmp(text, "*** in database", 15) == 0 && strchr(text, '\n'))
        text = strchr(text, '\n') + 1;
    for (char *p = text; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    const char *ix = strstr(text, "index ");
    char detail[320];
    if (ix) {
        size_t n = strcspn(ix + 6, " \t\n");
        snprintf(detail, sizeof detail, "index %.*s disagrees with its table", (int)n, ix + 6);
    } else {
        snprintf(detail, sizeof detail, "%s", text[0] && strcmp(text, "ok") ? text : "a damaged page");
    }
    snprintf(h->err, sizeof h->err, "%s: %s: the history database is damaged (%s): run kvchat "
                                    "--repair --db %s", h->path, what, detail, h->path);
}

int hist_fail(struct hist *h, int rc, const char *what)
{
    if ((rc & 0xff) == SQLITE_NOMEM)
        h->reconnect = 1;
    if (hist_status_of(rc) == HIST_E_CORRUPT) {
        describe_damage(h, what);
        return HIST_E_CORRUPT;
    }
    hist_fmt_sqlite_err(h->err, sizeof h->err, h->path, h->db, rc, what);
    return hist_status_of(rc);
}

int hist_failf(struct hist *h, int st, const char *fmt, ...)
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

/* A connection that ran out of memory is replaced between transactions,
 * never inside one (that would lose the transaction's work). */
static int settle(struct hist *h, const char *what)
{
    if (!h->reconnect || !sqlite3_get_autocommit(h->db))
        return HIST_OK;
    return hist_reconnect(h, what);
}

int hist_prepare(struct hist *h, const char *sql, sqlite3_stmt **st, const char *what)
{
    int ret = settle(h, what);
    if (ret) {
        *st = NULL;
        return ret;
    }
    int rc = sqlite3_prepare_v2(h->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return hist_fail(h, rc, what);
    }
    return HIST_OK;
}

/* Runs a statement that returns no rows; finalizes it. */
int hist_step_done(struct hist *h, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? HIST_OK : hist_fail(h, rc, what);
    sqlite3_finalize(st);
    return ret;
}

/* A transaction still open when a new one is to begin was left by a failure
 * that could not end it (SQLite ran out of memory for the ROLLBACK too):
 * undo it now. Otherwise BEGIN would fail with "cannot start a transaction
 * within a transaction", and the connection would keep the write lock and
 * the half-done write for as long as it lives. */
static int end_leftover(struct hist *h, const char *what)
{
    int rc = hist_rollback(h);
    return rc == SQLITE_OK ? settle(h, what) : hist_fail(h, rc, what);
}

/* BEGIN IMMEDIATE takes the write lock up front, so a busy database fails
 * here (after the busy timeout), before anything is changed. */
int hist_begin_write(struct hist *h, const char *what)
{
    if (h->readonly)
        return hist_failf(h, HIST_E_READONLY, "%s: %s", what, advice(HIST_E_READONLY));
    int ret = end_leftover(h, what);
    if (ret)
        return ret;
    int rc = sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    return rc == SQLITE_OK ? HIST_OK : hist_fail(h, rc, what);
}

int hist_begin_read(struct hist *h, const char *what)
{
    int ret = end_leftover(h, what);
    if (ret)
        return ret;
    int rc = sqlite3_exec(h->db, "BEGIN", NULL, NULL, NULL);
    return rc == SQLITE_OK ? HIST_OK : hist_fail(h, rc, what);
}

int hist_commit(struct hist *h, const char *what)
{
    int rc = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        return HIST_OK;
    int st = hist_fail(h, rc, what);
    hist_rollback(h);
    return st;
}

/* The prepared ROLLBACK first, as it needs no memory; SQLite expires
 * prepared statements on some schema resets, and re-preparing it does, so
 * sqlite3_exec is the fallback (and the way for a connection opened
 * without one). */
int hist_rollback(struct hist *h)
{
    if (sqlite3_get_autocommit(h->db))
        return SQLITE_OK;
    int rc = SQLITE_OK;
    if (h->rollback) {
        rc = sqlite3_step(h->rollback);
        sqlite3_reset(h->rollback);
    }
    if (!sqlite3_get_autocommit(h->db))
        rc = sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    if (sqlite3_get_autocommit(h->db))
        return SQLITE_OK;
    h->reconnect = 1;
    return rc == SQLITE_OK || rc == SQLITE_DONE ? SQLITE_ERROR : rc;
}

void hist_bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

char *hist_col_strdup(sqlite3_stmt *st, int i, int null_as_empty)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t)
        return null_as_empty ? hist_strndup("", 0) : NULL;
    return hist_strndup((const char *)t, (size_t)sqlite3_column_bytes(st, i));
}

int64_t hist_col_i64_or(sqlite3_stmt *st, int i, int64_t dflt)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_int64(st, i);
}

double hist_col_dbl_or(sqlite3_stmt *st, int i, double dflt)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_double(st, i);
}

/* ---- reading rows into structs ---- */

int hist_read_one(struct hist *h, sqlite3_stmt *st, hist_row_reader read, void *out, const char *noun,
                  int64_t id, const char *what)
{
    int ret;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if ((ret = read(st, out)))
            hist_failf(h, ret, "reading %s %lld: out of memory", noun, (long long)id);
    } else if (rc == SQLITE_DONE) {
        ret = hist_failf(h, HIST_E_NOTFOUND, "no %s %lld", noun, (long long)id);
    } else {
        ret = hist_fail(h, rc, what);
    }
    sqlite3_finalize(st);
    return ret;
}

int hist_read_all(struct hist *h, sqlite3_stmt *st, hist_row_reader read, size_t elem, void **rows,
                  size_t *n, const char *what)
{
    char *arr = NULL;
    size_t cap = 0, cnt = 0;
    int ret = HIST_OK, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char *na = realloc(arr, nc * elem);
            if (!na) {
                ret = hist_failf(h, HIST_E_NOMEM, "%s: out of memory", what);
                break;
            }
            arr = na;
            cap = nc;
        }
        if ((ret = read(st, arr + cnt * elem))) {
            hist_failf(h, ret, "%s: out of memory", what);
            break;
        }
        cnt++;
    }
    if (!ret && rc != SQLITE_DONE)
        ret = hist_fail(h, rc, what);
    sqlite3_finalize(st);
    *rows = arr;
    *n = cnt;
    return ret;
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

enum hist_role hist_role_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, ROLE_NAMES[i]) == 0)
            return (enum hist_role)i;
    return HIST_ROLE_USER; /* the CHECK constraint makes this unreachable */
}

enum hist_end hist_end_parse(const char *s)
{
    if (!s)
        return HIST_END_NONE;
    for (size_t i = 1; i < sizeof END_NAMES / sizeof END_NAMES[0]; i++)
        if (strcmp(s, END_NAMES[i]) == 0)
            return (enum hist_end)i;
    return HIST_END_ERROR;
}

/* ---- text shaping for titles and previews ---- */

int hist_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* S with whitespace runs collapsed to one space and trimmed, cut to at most
 * MAX_CHARS code points at a word boundary when one is reasonably near the
 * end (else mid-word), with "…" appended when cut. Never splits a UTF-8
 * sequence. Returns an owned string. */
char *hist_shorten(const char *s, size_t len, int max_chars)
{
    char *out = malloc(len + 4);
    if (!out)
        return NULL;
    size_t o = 0;
    int chars = 0, cut = 0;
    size_t last_space = 0; /* output offset of the last space, 0 = none */
    int chars_at_space = 0;
    size_t i = 0;
    while (i < len && hist_is_ws((unsigned char)s[i]))
        i++;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (hist_is_ws(c)) {
            while (i < len && hist_is_ws((unsigned char)s[i]))
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

/* Decodes one UTF-8 sequence at S (N > 0 bytes left) into *CP; an invalid
 * or cut sequence is one byte read as U+FFFD. Returns the bytes used. */
static size_t title_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    static const struct { unsigned char mask, lead; int len; uint32_t min; } FORMS[] = {
        {0x80, 0x00, 1, 0}, {0xE0, 0xC0, 2, 0x80}, {0xF0, 0xE0, 3, 0x800}, {0xF8, 0xF0, 4, 0x10000},
    };
    for (size_t f = 0; f < sizeof FORMS / sizeof *FORMS; f++) {
        if ((s[0] & FORMS[f].mask) != FORMS[f].lead)
            continue;
        int len = FORMS[f].len;
        if ((size_t)len > n)
            break;
        uint32_t c = s[0] & (0x7Fu >> (len == 1 ? 0 : len));
        for (int k = 1; k < len; k++) {
            if ((s[k] & 0xC0) != 0x80)
                goto bad;
            c = c << 6 | (s[k] & 0x3F);
        }
        if (c < FORMS[f].min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            break;
        *cp = c;
        return (size_t)len;
    }
bad:
    *cp = 0xFFFD;
    return 1;
}

/* Columns a code point takes in a terminal. wcwidth when the locale knows
 * it; in the C locale (which knows no wide characters) the East Asian wide
 * and emoji blocks still count two, so a title cut in a headless command
 * is not twice as wide as one cut on the chat screen. */
static int title_cp_width(uint32_t cp)
{
    static const struct { uint32_t lo, hi; } WIDE[] = {
        {0x1100, 0x115F},   {0x2E80, 0x303E},   {0x3041, 0x33FF},   {0x3400, 0x4DBF},
        {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},
        {0xFE30, 0xFE4F},   {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F300, 0x1F64F},
        {0x1F900, 0x1F9FF}, {0x20000, 0x3FFFD},
    };
    int w = wcwidth((wchar_t)cp);
    if (w >= 0)
        return w;
    for (size_t i = 0; i < sizeof WIDE / sizeof *WIDE; i++)
        if (cp >= WIDE[i].lo && cp <= WIDE[i].hi)
            return 2;
    return 1;
}

static int title_is_control(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0);
}

char *hist_make_title(const char *text, size_t len, int max_cols)
{
    const unsigned char *s = (const unsigned char *)text;
    if (!s)
        len = 0;
    if (max_cols < 2)
        max_cols = 2;
    /* the first line with something on it */
    size_t i = 0;
    while (i < len && hist_is_ws(s[i]))
        i++;
    size_t end = i;
    while (end < len && s[end] != '\n' && s[end] != '\r')
        end++;
    /* At most 3 bytes out per byte in (U+FFFD for an invalid one), plus
     * the ellipsis. */
    char *out = malloc((end - i) * 3 + 8);
    if (!out)
        return NULL;
    size_t o = 0, last_space = 0;
    int cols = 0, cols_at_space = 0, cut = 0, pending_space = 0;
    while (i < end) {
        uint32_t cp;
        size_t l = title_decode(s + i, end - i, &cp);
        i += l;
        if (cp == ' ' || cp == '\t' || cp == '\v' || cp == '\f') {
            pending_space = o > 0;
            continue;
        }
        if (title_is_control(cp))
            continue; /* ESC and friends: a title goes to terminals */
        int w = title_cp_width(cp);
        /* room for the character, and for the ellipsis if more follows */
        int need = cols + pending_space + w;
        if (need > max_cols || (need == max_cols && i < end)) {
            if (pending_space) { /* a word just ended: cut there */
                last_space = o;
                cols_at_space = cols;
            }
            cut = 1;
            break;
        }
        if (pending_space) {
            last_space = o;
            cols_at_space = cols;
            out[o++] = ' ';
            cols++;
            pending_space = 0;
        }
        if (cp == 0xFFFD && l == 1) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else {
            memcpy(out + o, s + i - l, l);
            o += l;
        }
        cols += w;
    }
    if (cut) {
        /* at a word when one ends in the second half, else mid-word */
        if (last_space && cols_at_space >= max_cols / 2)
            o = last_space;
        memcpy(out + o, "\xE2\x80\xA6", 3); /* U+2026 … */
        o += 3;
    }
    out[o] = 0;
    return out;
}
