/* transcript.h - the conversation an engine keeps between turns: the system
 * prompt and the user and assistant messages in order. The local and the
 * remote engine both hold one; how each turns it into a prompt (a chat
 * template and tokens, or a JSON request) is theirs.
 *
 * Rules: a transcript owns its strings; a zeroed one is empty and
 * transcript_free releases it. Functions that allocate return 0, or -1 when
 * out of memory with the transcript unchanged.
 */
#ifndef KVCHAT_TRANSCRIPT_H
#define KVCHAT_TRANSCRIPT_H

#include <stdbool.h>
#include <stddef.h>

#include "chat.h"
#include "engine.h"

struct transcript_msg {
    enum engine_role role; /* user or assistant */
    char *content;         /* owned */
};

struct transcript {
    char *system;               /* owned; NULL = the template's or server's default */
    struct transcript_msg *msgs; /* owned, n of cap */
    size_t n, cap;
};

int transcript_push(struct transcript *t, enum engine_role role, const char *content);
/* Takes back the last message (a turn that produced nothing). */
void transcript_drop_last(struct transcript *t);
/* Forgets the messages; the system prompt stays. */
void transcript_clear(struct transcript *t);
/* NULL = the template's default. Returns 0, or -1 without memory (the
 * previous prompt stays). */
int transcript_set_system(struct transcript *t, const char *system);
/* Replaces the messages with MSGS (system messages set the system prompt).
 * A reply stored with its thinking apart is put back together as the model
 * writes it in FORMAT (chat_join_reply); transcript_load uses the "<think>"
 * form. */
int transcript_load_as(struct transcript *t, const struct engine_message *msgs, size_t n,
                       enum chat_format format);
int transcript_load(struct transcript *t, const struct engine_message *msgs, size_t n);
/* Removes the last exchange: a trailing reply, then the user message it
 * answered. False when there are no messages. */
bool transcript_pop_turn(struct transcript *t);
void transcript_free(struct transcript *t);

#endif
