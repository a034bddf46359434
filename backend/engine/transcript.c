/* transcript.c - see transcript.h. */
#include "transcript.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int transcript_push(struct transcript *t, enum engine_role role, const char *content)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct transcript_msg *m = realloc(t->msgs, cap * sizeof *m);
        if (!m)
            return -1;
        t->msgs = m;
        t->cap = cap;
    }
    char *c = strdup(content ? content : "");
    if (!c)
        return -1;
    t->msgs[t->n++] = (struct transcript_msg){role, c};
    return 0;
}

void transcript_drop_last(struct transcript *t)
{
    if (t->n)
        free(t->msgs[--t->n].content);
}

void transcript_clear(struct transcript *t)
{
    while (t->n)
        transcript_drop_last(t);
}

int transcript_set_system(struct transcript *t, const char *system)
{
    char *s = NULL;
    if (system && !(s = strdup(system)))
        return -1; /* the old prompt stays: better than silently the default */
    free(t->system);
    t->system = s;
    return 0;
}

int transcript_load_as(struct transcript *t, const struct engine_message *msgs, size_t n,
                       enum chat_format format)
{
    transcript_clear(t);
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].role == ENGINE_ROLE_SYSTEM) {
            if (transcript_set_system(t, msgs[i].content) != 0)
                return -1;
        } else if (msgs[i].thinking && *msgs[i].thinking) {
            /* the reply as the model wrote it; a template that drops earlier
             * thinking drops it again when it renders (chat.h) */
            char *joined = chat_join_reply(format, msgs[i].thinking, msgs[i].content);
            if (!joined)
                return -1;
            int rc = transcript_push(t, msgs[i].role, joined);
            free(joined);
            if (rc != 0)
                return -1;
        } else if (transcript_push(t, msgs[i].role, msgs[i].content) != 0)
            return -1;
    }
    return 0;
}

int transcript_load(struct transcript *t, const struct engine_message *msgs, size_t n)
{
    return transcript_load_as(t, msgs, n, CHAT_FORMAT_CHATML);
}

bool transcript_pop_turn(struct transcript *t)
{
    if (t->n == 0)
        return false;
    if (t->msgs[t->n - 1].role == ENGINE_ROLE_ASSISTANT)
        transcript_drop_last(t);
    if (t->n > 0 && t->msgs[t->n - 1].role == ENGINE_ROLE_USER)
        transcript_drop_last(t);
    return true;
}

void transcript_free(struct transcript *t)
{
    transcript_clear(t);
    free(t->msgs);
    free(t->system);
    *t = (struct transcript){0};
}
