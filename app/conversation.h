/* conversation.h - the one path between the engine and the history, used by
 * `-p` (headless.c) and the chat screen (tui/) alike: a session is created on
 * its first message with the model and settings that answer it, the user's
 * message is committed before generation, the streaming reply is saved as it
 * grows (hist_reply_progress decides how often) and committed with its
 * figures and end reason (a reasoning model's thinking stored apart from
 * the answer); a saved session is restored into an engine, with the chosen
 * variant of each turn that /retry gave several replies.
 * Each reply records the engine ("cpu", "cuda", "remote") and model that
 * produced it (a file's base name, a server's "NAME@host:port"); a session
 * records the model it was created with (a server's with digest "").
 *
 * Rules: a struct conv borrows its engine and history (NULL = not saving;
 * chatting goes on). Every conv_* call that touches the history runs on the
 * thread that owns the history connection; only the engine_chat inside a
 * turn may run on another (the chat screen's worker). A failure to save
 * never stops the chat: the call returns -1 with the reason in conv.err and
 * saving stops for that turn.
 */
#ifndef KVCHAT_CONVERSATION_H
#define KVCHAT_CONVERSATION_H

#include <stdbool.h>

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "history.h"
#include "options.h"

/* A short digest identifying a model file: "fnv1a64:<hex>:<size>" over its
 * size, its header (first 1 MiB) and its last 1 MiB. Reading the whole file
 * would cost seconds per start for large models; these parts change whenever
 * the metadata or the tensor layout does. "" when the file cannot be read. */
void kv_model_digest(const char *path, char *buf, size_t cap);

struct hist_sampling kv_to_hist_sampling(const struct kv_options *o);
void kv_from_hist_sampling(const struct hist_sampling *h, struct kv_options *o);

/* The end reason the store records for an engine stop. */
enum hist_end kv_hist_end(enum engine_stop s);

/* Loads session ID from H into E: its messages become the engine's
 * conversation (the KV cache is rebuilt at the next turn), its system prompt
 * is restored unless O->system_set, and its sampling settings unless
 * O->sampling_set. *DROPPED gets the number of older turns that do not fit
 * the context (the model will not see them; tell the user). E may be any
 * engine, local or remote, whatever the session was created on: the replay
 * is plain text, the session's model is not checked against E's, and each
 * reply saved from then on records its own engine and model. Returns 0, or
 * -1 with a message in ERR. */
int kv_session_restore(struct hist *h, int64_t id, struct engine *e, struct kv_options *o,
                       int32_t *dropped, char *err, size_t errlen);

/* Resolves O->resume (latest or an id) to a session id; -1 with ERR when there
 * is none. */
int64_t kv_session_resolve(struct hist *h, const struct kv_options *o, char *err, size_t errlen);

/* Opens the history database O names (--db, else the default path). NULL
 * with ERR set when it cannot be opened, NULL with ERR "" under --no-history. */
struct hist *conv_open_history(const struct kv_options *o, char *err, size_t errlen);

struct conv {
    struct engine *e;  /* borrowed */
    struct hist *h;    /* borrowed; NULL = not saving */
    int64_t sid;       /* the session, -1 until its first message is saved */
    int64_t reply_id;  /* the streaming reply's row this turn, -1 = none */
    bool saving;       /* this turn's reply is being saved */
    char err[512];     /* why saving stopped, for "not saving: ..." */
};

void conv_init(struct conv *c, struct engine *e, struct hist *h);
/* Restores session SID into the engine (kv_session_restore) and continues it. */
int conv_resume(struct conv *c, int64_t sid, struct kv_options *o, int32_t *dropped, char *err,
                size_t errlen);
/* Forgets the conversation: the next message starts a new session. */
void conv_new(struct conv *c);
/* Creates the session now if there is none yet (/rename before the first
 * message), with the model and O's settings. 0, or -1 with the reason in
 * C->err ("cannot create the session: ..."); this turn's saving is left as
 * it was. */
int conv_ensure_session(struct conv *c, const struct kv_options *o);

/* The phases of a turn, for a front-end that runs engine_chat on a thread of
 * its own: begin (saves the user's message, *USER_ID its row, and opens the
 * reply), save progress while it streams, finish with the engine's figures
 * and the end reason (conv_end). */
int conv_begin_turn(struct conv *c, const char *text, const struct kv_options *o,
                    int64_t *user_id);
int conv_save_progress(struct conv *c, const char *text, size_t len);
/* /retry's begin: the user's message stays; a new reply to it is opened as
 * the chosen variant of the turn whose reply row is OF_REPLY (the earlier
 * replies are kept, set off). The engine's last exchange must have been
 * popped (engine_pop_turn) by the caller. Not saved (0, nothing opened)
 * when the turn was never saved. */
int conv_begin_retry(struct conv *c, int64_t of_reply, const struct kv_options *o);
/* Makes reply REPLY_ID its turn's chosen variant in the store and reloads
 * the session into the engine so later turns build on it. 1 when the
 * session is not saved (the caller replays its own list), 0, or -1 with
 * c->err. */
int conv_choose_variant(struct conv *c, int64_t reply_id, struct kv_options *o);
int conv_finish_turn(struct conv *c, const char *reply, const struct engine_stats *st,
                     enum hist_end end);
/* The end reason the store records for engine_chat's return RC and figures. */
enum hist_end conv_end(int rc, const struct engine_stats *st);

/* Takes the last exchange back out of the engine and, from the user
 * message's row USER_ID on (0 = never saved: the store is left alone), out
 * of the session, so a resumed session replays what the model saw last and
 * not both attempts (/retry, /edit). Returns 1 when there was no exchange, 0,
 * or -1 when the store refused (reason in c->err; the engine has popped). */
int conv_pop_turn(struct conv *c, int64_t user_id);
/* The system prompt (NULL or "" = the template's default) for the engine
 * and, once the session exists, the store. */
int conv_set_system(struct conv *c, const char *system);
/* O's sampling settings recorded for the session, once it exists. */
int conv_set_sampling(struct conv *c, const struct kv_options *o);

/* Told, once per cause, that saving stopped (MESSAGE says why). */
typedef void (*conv_warn_fn)(const char *message, void *user);
/* A whole turn on the calling thread: the phases above around engine_chat,
 * with TP's callbacks called as engine_chat would (TP->user passed to WARN
 * too). Returns engine_chat's result; REPLY as engine_chat's. */
int conv_turn(struct conv *c, const char *text, const struct kv_options *o,
              const struct engine_turn_params *tp, conv_warn_fn warn, char **reply, char *err,
              size_t errlen);

#endif
