/* msgs.h - the conversation as the chat screen holds it: your messages, the
 * replies, the system prompt, notices and errors, in the order shown; and
 * what /retry, /edit and /copy take from it.
 *
 * Pure: no ncurses and no history calls. Used by the chat screen (ui.c and
 * its files) and tested by tests/test_tui.c without a terminal.
 *
 * Rules: a list owns its messages' texts. The reply being streamed has text
 * NULL: its bytes live in the worker's stream buffer until the turn finishes
 * (see compose.h). A zeroed struct msg_list is an empty list.
 */
#ifndef KVCHAT_TUI_MSGS_H
#define KVCHAT_TUI_MSGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "history.h"

enum msg_kind { MSG_USER, MSG_ASSISTANT, MSG_SYSTEM, MSG_NOTICE, MSG_ERROR, MSG_KIND_COUNT };

struct msg {
    enum msg_kind kind;
    char *text;        /* owned; NULL for the reply being streamed */
    enum hist_end end; /* how a reply ended (NONE while streaming or when it simply stopped) */
    int64_t hist_id;   /* its row in the history, 0 = not saved; /retry and /edit delete from it */
    enum msg_cut { MSG_CUT_UNKNOWN, MSG_CUT_MAX_TOKENS, MSG_CUT_CONTEXT } cut; /* end LENGTH: which limit */
    bool dropped;      /* an older turn dropped to fit the context: the model no longer sees it */
    int64_t created_ms; /* when it was written, ms since the Epoch (stored: the history's); 0 = unknown */
    /* Replies /retry kept: the VARIANT-th (1-based) of N_VARIANTS replies to
     * its user message (0 and 0: the only one). HIDDEN: not the chosen one,
     * not drawn and not what the model sees. */
    int variant, n_variants;
    bool hidden;
};

struct msg_list {
    struct msg *v; /* owned, n used of cap */
    size_t n, cap;
};

/* Appends a message with a copy of TEXT (NULL: the streaming reply). Returns
 * it, or NULL when out of memory (the list is unchanged). */
struct msg *msgs_add(struct msg_list *l, enum msg_kind kind, const char *text);
/* Empties the list (its array is kept for reuse). */
void msgs_clear(struct msg_list *l);
void msgs_free(struct msg_list *l);

/* /retry and /edit: removes the messages from the end back to and including
 * the last user message, and returns that message's text (the caller owns
 * it) with its history row in *HIST_ID. With no user message the whole list
 * goes, NULL is returned and *HIST_ID is 0. */
char *msgs_pop_exchange(struct msg_list *l, int64_t *hist_id);
/* /retry keeping variants: hides the last turn's replies (and drops the
 * notices after its user message), returns a copy of that message's text
 * (the caller owns it) and in *REPLY_ID the history row of the reply that
 * was chosen (0: none saved). NULL when there is no user message. The
 * caller then adds the new reply and calls msgs_number_variants. */
char *msgs_retry(struct msg_list *l, int64_t *reply_id);
/* Numbers the last turn's replies 1..N (in order) for the "‹k/N›" badge. */
void msgs_number_variants(struct msg_list *l);
/* Shows the K-th (1-based) reply of the last turn instead of the chosen
 * one; returns it, or NULL when K is out of range (nothing changes). */
struct msg *msgs_variant_select(struct msg_list *l, int k);
/* The last turn's shown reply's number and the count (0, 0: no variants). */
void msgs_variant_now(const struct msg_list *l, int *k, int *n);
/* Marks the N oldest turns not yet marked (a user message and what follows
 * it up to the next one) as dropped; the last turn is never marked. */
void msgs_mark_dropped(struct msg_list *l, int n);
/* The history row of the last user message, 0 when none or never saved. */
int64_t msgs_last_user_id(const struct msg_list *l);

/* /copy N: the last finished reply (NTH 0) or its NTH code block (1-based,
 * the [N] the screen shows on it: markdown.h's md_code_block over the
 * answer after any thinking), malloc'd. NULL when there is no such reply
 * or block. */
char *msgs_copy_target(const struct msg_list *l, int64_t nth);

/* A reply that opens with "<think>" (a reasoning model's thinking, from the
 * model itself or a server's reasoning_content) is split there: *THINK and
 * *TLEN the thinking (up to "</think>", or all of it while the model still
 * thinks), TEXT/LEN advanced past it to the answer. False (nothing moved)
 * when the reply has no thinking. */
bool msgs_split_thinking(const char **text, size_t *len, const char **think, size_t *tlen);

#endif
