/* msgs.c - the chat screen's message list. See msgs.h. */
#include "msgs.h"

#include <stdlib.h>
#include <string.h>

#include "markdown.h"

struct msg *msgs_add(struct msg_list *l, enum msg_kind kind, const char *text)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        struct msg *m = realloc(l->v, cap * sizeof *m);
        if (!m)
            return NULL;
        l->v = m;
        l->cap = cap;
    }
    struct msg *m = &l->v[l->n];
    *m = (struct msg){.kind = kind, .text = text ? strdup(text) : NULL, .end = HIST_END_NONE};
    if (text && !m->text)
        return NULL;
    l->n++;
    return m;
}

void msgs_clear(struct msg_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].text);
    l->n = 0;
}

void msgs_free(struct msg_list *l)
{
    msgs_clear(l);
    free(l->v);
    *l = (struct msg_list){0};
}

char *msgs_pop_exchange(struct msg_list *l, int64_t *hist_id)
{
    *hist_id = 0;
    while (l->n > 0) {
        struct msg *m = &l->v[--l->n];
        if (m->kind == MSG_USER) {
            *hist_id = m->hist_id;
            return m->text;
        }
        free(m->text);
    }
    return NULL;
}

/* Index of the last user message, or L->N when there is none. */
static size_t last_user(const struct msg_list *l)
{
    for (size_t i = l->n; i-- > 0;)
        if (l->v[i].kind == MSG_USER)
            return i;
    return l->n;
}

char *msgs_retry(struct msg_list *l, int64_t *reply_id)
{
    *reply_id = 0;
    size_t u = last_user(l);
    if (u == l->n)
        return NULL;
    char *text = strdup(l->v[u].text ? l->v[u].text : "");
    if (!text)
        return NULL;
    size_t k = u + 1;
    for (size_t i = u + 1; i < l->n; i++) {
        struct msg *m = &l->v[i];
        if (m->kind != MSG_ASSISTANT) {
            free(m->text); /* the failed attempt's notices go with it */
            continue;
        }
        if (!m->hidden && m->hist_id)
            *reply_id = m->hist_id;
        m->hidden = true;
        l->v[k++] = *m;
    }
    l->n = k;
    return text;
}

void msgs_number_variants(struct msg_list *l)
{
    size_t u = last_user(l);
    int n = 0, k = 0;
    for (size_t i = u + 1; i < l->n; i++)
        n += l->v[i].kind == MSG_ASSISTANT;
    for (size_t i = u + 1; i < l->n; i++)
        if (l->v[i].kind == MSG_ASSISTANT) {
            l->v[i].variant = n > 1 ? ++k : 0;
            l->v[i].n_variants = n > 1 ? n : 0;
        }
}

struct msg *msgs_variant_select(struct msg_list *l, int k)
{
    size_t u = last_user(l);
    struct msg *pick = NULL;
    for (size_t i = u + 1; i < l->n; i++)
        if (l->v[i].kind == MSG_ASSISTANT && l->v[i].variant == k && k > 0)
            pick = &l->v[i];
    if (!pick)
        return NULL;
    for (size_t i = u + 1; i < l->n; i++)
        if (l->v[i].kind == MSG_ASSISTANT)
            l->v[i].hidden = &l->v[i] != pick;
    return pick;
}

void msgs_variant_now(const struct msg_list *l, int *k, int *n)
{
    *k = *n = 0;
    size_t u = last_user(l);
    for (size_t i = u + 1; i < l->n; i++)
        if (l->v[i].kind == MSG_ASSISTANT && !l->v[i].hidden) {
            *k = l->v[i].variant;
            *n = l->v[i].n_variants;
        }
}

void msgs_mark_dropped(struct msg_list *l, int n)
{
    size_t last_user = l->n;
    for (size_t i = l->n; i-- > 0;)
        if (l->v[i].kind == MSG_USER) {
            last_user = i;
            break;
        }
    for (size_t i = 0; i < last_user && n > 0; i++) {
        struct msg *m = &l->v[i];
        if (m->dropped || (m->kind != MSG_USER && m->kind != MSG_ASSISTANT))
            continue;
        m->dropped = true;
        /* the turn ends at the next user message, or at the live one */
        if (i + 1 >= last_user || l->v[i + 1].kind == MSG_USER)
            n--;
    }
}

int64_t msgs_last_user_id(const struct msg_list *l)
{
    for (size_t i = l->n; i > 0; i--)
        if (l->v[i - 1].kind == MSG_USER)
            return l->v[i - 1].hist_id;
    return 0;
}

bool msgs_split_thinking(const char **text, size_t *len, const char **think, size_t *tlen)
{
    static const char open[] = "<think>", close[] = "</think>";
    const char *t = *text, *end = *text + *len;
    while (t < end && (*t == ' ' || *t == '\n'))
        t++;
    if ((size_t)(end - t) < sizeof open - 1 || memcmp(t, open, sizeof open - 1) != 0)
        return false;
    t += sizeof open - 1;
    const char *c = t;
    while (c + sizeof close - 1 <= end && memcmp(c, close, sizeof close - 1) != 0)
        c++;
    bool closed = c + sizeof close - 1 <= end;
    const char *tend = closed ? c : end;
    while (t < tend && *t == '\n')
        t++;
    while (tend > t && tend[-1] == '\n')
        tend--;
    *think = t;
    *tlen = (size_t)(tend - t);
    const char *a = closed ? c + sizeof close - 1 : end;
    while (a < end && *a == '\n')
        a++;
    *text = a;
    *len = (size_t)(end - a);
    return true;
}

char *msgs_copy_target(const struct msg_list *l, int64_t nth)
{
    for (size_t i = l->n; i > 0; i--) {
        const struct msg *m = &l->v[i - 1];
        if (m->kind != MSG_ASSISTANT || !m->text || m->hidden)
            continue;
        if (nth == 0)
            return strdup(m->text);
        /* the blocks of the answer, as the screen numbers them */
        const char *a = m->text, *think;
        size_t len = strlen(a), tlen;
        msgs_split_thinking(&a, &len, &think, &tlen);
        return md_code_block(a, len, nth);
    }
    return NULL;
}
