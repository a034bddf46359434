/* history.h - kvchat's conversation store: sessions and messages in one SQLite
 * database, full-text search over message content, and export.
 *
 * Used by tui/ (the chat screen and the --list-sessions / --search / --export /
 * --delete commands). Depends on nothing in backend/: sampling parameters and
 * the model digest are passed in as plain values.
 *
 * Rules every function follows:
 * - Errors are values. A function returns HIST_OK (0) or a negative
 *   enum hist_status and leaves a one-line message naming the database path in
 *   hist_last_error(). Nothing here exits, aborts or prints. A failed write
 *   changes nothing already stored (each write is one transaction), so the
 *   caller can show "not saving" and carry on chatting, or retry.
 * - Every statement is prepared with bound parameters; text is never spliced
 *   into SQL, and search text is never interpreted as FTS5 syntax.
 * - Strings handed back in structs are owned by the struct and released by the
 *   matching *_free / *_clear function. Text is UTF-8 as given; content may
 *   contain NUL bytes only if the caller passes an explicit length.
 * - Times are unix epoch milliseconds (int64). Figures that are unknown are
 *   negative (-1), so the UI can show N/A instead of garbage.
 * - A struct hist is one connection; use it from one thread at a time. Several
 *   processes may share one database file (WAL mode, busy timeout).
 *
 * Replies left 'streaming' by a process that died (crash, SIGKILL, power
 * loss) are marked HIST_END_INTERRUPTED by hist_open, keeping the partial text
 * saved up to about a second before the death. A streaming reply belongs to a
 * "host:pid" writer; it is only declared dead when that pid is gone on this
 * host, or when it has not been saved for an hour (another host's writer, or
 * a reused pid), so opening a second kvchat never breaks a reply that is
 * still being generated.
 */
#ifndef KVCHAT_HISTORY_H
#define KVCHAT_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HIST_SCHEMA_VERSION 6 /* PRAGMA user_version this build writes */
/* The oldest schema this build reads without upgrading it: a read-only open
 * (or a file it may not write) of schema HIST_READABLE_FROM..VERSION works
 * for reading. v6 added the columns of reply variants and thinking, which reads select. */
#define HIST_READABLE_FROM 6

enum hist_status {
    HIST_OK = 0,
    HIST_E_INVALID = -1,  /* bad argument (NULL, unknown enum, empty title) */
    HIST_E_NOTFOUND = -2, /* no such session or message */
    HIST_E_LOCKED = -3,   /* another connection held a lock past the busy timeout; retry */
    HIST_E_READONLY = -4, /* the file, its folder or the open mode forbids writing */
    HIST_E_CORRUPT = -5,  /* not a kvchat history database, or damaged */
    HIST_E_FULL = -6,     /* disk or quota full */
    HIST_E_NEWER = -7,    /* created by a newer kvchat (user_version too high) */
    HIST_E_IO = -8,       /* cannot create folder / open / read / write the file */
    HIST_E_NOMEM = -9,
    HIST_E_SQL = -10,     /* any other SQLite failure (message says which) */
};

enum hist_role { HIST_ROLE_SYSTEM = 0, HIST_ROLE_USER = 1, HIST_ROLE_ASSISTANT = 2 };

/* How a message ended. User/system messages and fully committed messages
 * added with hist_message_add are HIST_END_NONE. */
enum hist_end {
    HIST_END_NONE = 0,
    HIST_END_STREAMING = 1,   /* reply still being generated (or its writer is alive elsewhere) */
    HIST_END_STOP = 2,        /* end-of-generation token or stop string */
    HIST_END_LENGTH = 3,      /* hit the token limit or the context size */
    HIST_END_CANCELLED = 4,   /* the user cancelled; partial text kept */
    HIST_END_ERROR = 5,       /* generation failed; partial text kept */
    HIST_END_INTERRUPTED = 6, /* the writing process died mid-reply; partial text kept */
};

enum hist_format { HIST_FORMAT_MARKDOWN = 0, HIST_FORMAT_JSON = 1 };

/* Mirrors the engine's struct engine_sampling plus the reply token limit, so the
 * store does not depend on backend/. Fields stored as given. */
struct hist_sampling {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    int32_t repeat_last_n;
    uint64_t seed;
    int32_t max_tokens; /* reply limit; -1 = none/unknown */
};

struct hist_session {
    int64_t id;
    char *title;         /* owned; never NULL ("" until the first user message names it) */
    int64_t created_ms;
    int64_t updated_ms;  /* last message or change */
    char *model_name;    /* owned; NULL if never set (file name, not a path; "NAME@host:port" for a server) */
    char *model_digest;  /* owned; NULL if never set; "" for a server's model (no file to digest) */
    char *system_prompt; /* owned; NULL if none */
    int has_sampling;    /* 0: sampling below is unset */
    struct hist_sampling sampling;
    int64_t n_messages;
    char *preview;       /* owned; start of the first user message, <= ~80 chars, newlines collapsed; may be "" */
};

/* Generation figures of one reply; -1 where unknown. */
struct hist_reply_stats {
    int32_t n_tokens;     /* tokens generated */
    int32_t n_prompt;     /* tokens prefilled for this reply */
    double prefill_tps;   /* tokens/s */
    double decode_tps;    /* tokens/s */
    double ttft_ms;       /* time to first token */
};

struct hist_message {
    int64_t id;
    int64_t session_id;
    enum hist_role role;
    char *content;        /* owned, NUL-terminated; content_len excludes the NUL */
    size_t content_len;
    int64_t created_ms;
    int64_t updated_ms;   /* last progress/finish write */
    enum hist_end end;
    struct hist_reply_stats stats; /* n_tokens also set for user messages if known */
    /* What produced a reply (see hist_reply_begin_from); owned, NULL when
     * unknown: user and system messages, and replies saved before schema 4. */
    char *engine;         /* "cpu", "cuda", "remote" */
    char *model;          /* the model file's base name, or "NAME@host:port" on a server */
    /* A reasoning model's thinking, kept apart from CONTENT (the answer);
     * owned, NULL when the reply had none. */
    char *thinking;
    /* Variants (/retry keeps the earlier replies of a turn): the turn's
     * first reply's id in a later variant, 0 otherwise; VARIANT_OFF is 1 for
     * a variant not chosen, which the model does not see. */
    int64_t variant_of;
    int variant_off;
};

struct hist_hit {
    int64_t session_id;
    char *session_title; /* owned */
    int64_t message_id;
    enum hist_role role;
    int64_t created_ms;
    char *snippet;       /* owned; matched words wrapped in the caller's markers */
};

struct hist;

/* ${XDG_DATA_HOME:-$HOME/.local/share}/kvchat/history.db into BUF.
 * HIST_E_INVALID if neither variable is set or BUF is too small. */
int hist_default_path(char *buf, size_t cap);

/* Opens (creating it and its parent folders, mode 0700, if absent) and
 * migrates the database at PATH. On failure returns NULL with a one-line
 * message in ERR (which may be NULL) naming PATH and what to do. */
struct hist *hist_open(const char *path, char *err, size_t errlen);

#define HIST_OPEN_READONLY 1u /* never write: no create, no migration, no interrupted-reply repair */
/* hist_open with FLAGS; *STATUS (may be NULL) gets the failure class. A
 * read-only open of a database older than HIST_READABLE_FROM fails with
 * HIST_E_READONLY. */
struct hist *hist_open_ex(const char *path, unsigned flags, int *status, char *err, size_t errlen);

void hist_close(struct hist *h); /* NULL is a no-op */

const char *hist_last_error(const struct hist *h); /* "" if none; valid until the next call */
const char *hist_path(const struct hist *h);
int hist_readonly(const struct hist *h); /* 1 if writes will fail with HIST_E_READONLY */
/* How long a write waits for another connection's lock before failing with
 * HIST_E_LOCKED (default 3000 ms). */
int hist_set_busy_timeout(struct hist *h, int ms);
const char *hist_status_str(int status); /* "locked", "corrupt", ... */
const char *hist_role_str(enum hist_role r); /* "system" | "user" | "assistant" */
const char *hist_end_str(enum hist_end e);   /* "", "streaming", "stop", "length", "cancelled", "error", "interrupted" */
int hist_format_parse(const char *s, enum hist_format *out); /* "md"|"markdown"|"json" */

/* Creates PATH (if absent) or migrates it to exactly schema VERSION
 * (1..HIST_SCHEMA_VERSION), using the same steps hist_open applies. For tests
 * of migrations and for tooling; kvchat itself only calls hist_open. */
int hist_migrate_path_to(const char *path, int version, char *err, size_t errlen);

/* Mends the damaged database at PATH (kvchat --repair). First rebuilds its
 * indexes and search index in one transaction, kept only if the full check
 * then passes; failing that, copies every session and message that can be
 * read into a new file with the current schema, which takes PATH's place,
 * and keeps the damaged file as PATH.damaged-YYYYmmdd-HHMMSS. Nothing is
 * deleted. REPORT gets one line: what was done, what was kept and lost (or
 * why nothing was done). HIST_OK when PATH is now sound (also when it was
 * already); HIST_E_NOTFOUND when there is no file. */
int hist_repair(const char *path, char *report, size_t cap);

/* ---- sessions ---- */

/* New session; TITLE may be NULL or "" to have it set from the first user
 * message (hist_make_title, HIST_TITLE_COLS).
 * SYSTEM_PROMPT may be NULL. */
int hist_session_create(struct hist *h, const char *title, const char *system_prompt, int64_t *out_id);
int hist_session_get(struct hist *h, int64_t id, struct hist_session *out); /* clear OUT after */
int hist_session_latest(struct hist *h, int64_t *out_id); /* most recently updated; HIST_E_NOTFOUND if none */
/* Newest (by updated time) first. LIMIT <= 0 means all. */
int hist_session_list(struct hist *h, int limit, int offset, struct hist_session **out, size_t *n);
void hist_session_clear(struct hist_session *s);            /* frees the strings; NULL ok */
void hist_sessions_free(struct hist_session *arr, size_t n); /* NULL ok */
int hist_session_rename(struct hist *h, int64_t id, const char *title);
int hist_session_delete(struct hist *h, int64_t id); /* and all its messages */
int hist_session_set_system(struct hist *h, int64_t id, const char *system_prompt); /* NULL clears */
int hist_session_set_sampling(struct hist *h, int64_t id, const struct hist_sampling *p);
int hist_session_set_model(struct hist *h, int64_t id, const char *name, const char *digest);

/* The title a session gets from its first user message: the first line
 * with text on it, trimmed, whitespace runs made one space, control
 * characters (C0, DEL, C1) removed and invalid UTF-8 shown as U+FFFD, cut
 * to at most MAX_COLS terminal columns (wide CJK and emoji count two) at a
 * word when one ends in the second half, with "…" (one column, included)
 * when cut. Pure: no database. Returns an owned string ("" for blank text),
 * NULL when out of memory. */
char *hist_make_title(const char *text, size_t len, int max_cols);
#define HIST_TITLE_COLS 50 /* the width of a title made from a message */

/* ---- messages ---- */

/* Commits a whole message now (the user's message before generation starts;
 * system messages; imported replies). LEN (size_t)-1 means strlen. N_TOKENS
 * -1 if unknown. A user message names an untitled session. */
int hist_message_add(struct hist *h, int64_t session_id, enum hist_role role, const char *text,
                     size_t len, int32_t n_tokens, int64_t *out_id);

/* Starts an assistant reply: an empty row marked HIST_END_STREAMING. */
int hist_reply_begin(struct hist *h, int64_t session_id, int64_t *out_id);
/* hist_reply_begin recording what produces the reply: ENGINE ("cpu", "cuda",
 * "remote") and MODEL (the model file's base name, or "NAME@host:port" for a
 * server's model), each NULL if unknown. They are per reply because a session
 * may move between a local model and a server and back (resume with another
 * engine); the session's own model is the one it was created with. */
int hist_reply_begin_from(struct hist *h, int64_t session_id, const char *engine, const char *model,
                          int64_t *out_id);

/* Saves the reply's text so far (the whole text, not a delta) if at least a
 * second has passed since the last save of this reply, or if FORCE. Cheap
 * when it does not write (a clock read and a compare): call it per token.
 * Returns 1 if it wrote, 0 if skipped, negative hist_status on failure. A
 * save waits at most ~100 ms for a busy database (so streaming never stalls
 * on it) and a failed save is retried a second later. */
int hist_reply_progress(struct hist *h, int64_t msg_id, const char *text, size_t len, int force);

/* Commits the final text, figures (STATS may be NULL) and END (not NONE or
 * STREAMING). */
int hist_reply_finish(struct hist *h, int64_t msg_id, const char *text, size_t len,
                      const struct hist_reply_stats *stats, enum hist_end end);

/* Starts another reply to the turn whose reply OF_ID is (any of its
 * variants): the new row is its turn's chosen variant, the others are set
 * off, in one transaction. OF_ID must be an assistant message of SESSION_ID
 * (HIST_E_NOTFOUND otherwise). ENGINE and MODEL as hist_reply_begin_from. */
int hist_reply_begin_variant(struct hist *h, int64_t session_id, int64_t of_id, const char *engine,
                             const char *model, int64_t *out_id);
/* Makes reply MSG_ID the chosen variant of its turn (the one the model sees
 * when the session is resumed). */
int hist_variant_choose(struct hist *h, int64_t msg_id);
/* Stores the reasoning text of reply MSG_ID (NULL or LEN 0 clears it); LEN
 * (size_t)-1 means strlen. */
int hist_reply_set_thinking(struct hist *h, int64_t msg_id, const char *thinking, size_t len);

/* Deletes session SESSION_ID's messages whose id is FROM_MSG_ID or later,
 * in one transaction, and bumps the session's updated time. For /retry and
 * /edit, which take the last exchange back out of the engine: the stored
 * session must keep matching what the model saw, or a resumed session would
 * replay both attempts. The search index follows (its DELETE trigger).
 * Freed ids are given to the next messages, so do not truncate a reply this
 * or another connection is still streaming. Deleting nothing (FROM_MSG_ID past the
 * last message) is HIST_OK; *OUT_DELETED (may be NULL) gets the count.
 * HIST_E_NOTFOUND if there is no such session. */
int hist_messages_truncate(struct hist *h, int64_t session_id, int64_t from_msg_id, int64_t *out_deleted);

/* A session's messages, oldest first. */
int hist_messages(struct hist *h, int64_t session_id, struct hist_message **out, size_t *n);
int hist_message_get(struct hist *h, int64_t msg_id, struct hist_message *out);
void hist_message_clear(struct hist_message *m);
void hist_messages_free(struct hist_message *arr, size_t n);

/* ---- search and export ---- */

/* Messages containing every word of QUERY (literal text: quotes, *, AND,
 * NEAR(, -, parentheses are just characters), best match first. MARK_OPEN /
 * MARK_CLOSE wrap matched words in the snippet (NULL: "[" and "]"). LIMIT <= 0
 * means 50. A query with no searchable words gives 0 hits, not an error. */
int hist_search(struct hist *h, const char *query, const char *mark_open, const char *mark_close,
                int limit, struct hist_hit **out, size_t *n);
void hist_hits_free(struct hist_hit *arr, size_t n);

/* Writes session ID to OUT as Markdown or JSON (UTF-8, strings escaped per
 * RFC 8259; invalid UTF-8 in stored text is replaced by U+FFFD). HIST_E_IO if
 * writing to OUT fails. */
int hist_export(struct hist *h, int64_t session_id, enum hist_format fmt, FILE *out);

#endif
