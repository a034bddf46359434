/* engine.c - the public wrappers of engine.h and engine_tools.h over the
 * implementation table (engine_impl.h), and the names and defaults every
 * implementation shares. */
#include "engine_impl.h"

#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "errmsg.h"

const char *engine_backend_name(enum engine_backend b)
{
    switch (b) {
    case ENGINE_BACKEND_AUTO: return "auto";
    case ENGINE_BACKEND_CPU: return "cpu";
    case ENGINE_BACKEND_CUDA: return "cuda";
    }
    return "?";
}

bool engine_backend_from_name(const char *name, enum engine_backend *out)
{
    for (int b = ENGINE_BACKEND_AUTO; b <= ENGINE_BACKEND_CUDA; b++) {
        if (strcmp(name, engine_backend_name((enum engine_backend)b)) == 0) {
            *out = (enum engine_backend)b;
            return true;
        }
    }
    return false;
}

bool engine_chat_template_known(const char *name)
{
    enum chat_format f;
    return chat_format_from_name(name, &f);
}

const char *engine_chat_template_names(void) { return chat_format_names(); }

const char *engine_stop_name(enum engine_stop s)
{
    switch (s) {
    case ENGINE_STOP_EOS: return "stop";
    case ENGINE_STOP_LENGTH: return "length";
    case ENGINE_STOP_CANCELLED: return "cancelled";
    case ENGINE_STOP_ERROR: return "error";
    }
    return "?";
}

struct engine_params engine_default_params(void)
{
    struct engine_params p = {0};
    p.backend = ENGINE_BACKEND_AUTO;
    return p;
}

struct engine *engine_new(const struct engine_params *p, char *err, size_t errlen)
{
    if (p->server && *p->server)
        return remote_engine_new(p, err, errlen);
    return local_engine_new(p, err, errlen);
}

int engine_list_server_models(const struct engine_params *p, char ***names, size_t *n, char *err,
                              size_t errlen)
{
    *names = NULL;
    *n = 0;
    if (!p->server || !*p->server) {
        kv_seterr(err, errlen, "listing a server's models needs its URL");
        return -1;
    }
    return remote_list_models(p, names, n, err, errlen);
}

void engine_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

void engine_free(struct engine *e)
{
    if (e)
        e->ops->free(e);
}

const struct engine_info *engine_info(const struct engine *e) { return &e->info; }

int engine_set_system(struct engine *e, const char *system) { return e->ops->set_system(e, system); }

void engine_reset(struct engine *e) { e->ops->reset(e); }

int engine_load_transcript(struct engine *e, const struct engine_message *msgs, size_t n)
{
    return e->ops->load_transcript(e, msgs, n);
}

int32_t engine_fit_context(struct engine *e, int32_t max_tokens)
{
    return e->ops->fit_context(e, max_tokens);
}

bool engine_pop_turn(struct engine *e) { return e->ops->pop_turn(e); }

bool engine_split_thinking(const char *reply, size_t len, size_t *think_off, size_t *think_len,
                           size_t *answer_off)
{
    size_t tl = 0;
    size_t a = chat_answer_offset(reply, len, &tl);
    *think_off = a ? 7 : 0;
    *think_len = tl;
    *answer_off = a;
    return a != 0;
}

int engine_set_think(struct engine *e, bool on, char *err, size_t errlen)
{
    if (!e->ops->set_think || !e->info.think_switch || e->ops->set_think(e, on) != 0) {
        kv_seterr(err, errlen, "this model's chat template (%s) has no thinking switch",
                  e->info.template_name);
        return -1;
    }
    return 0;
}

/* ---- thinking told apart while it streams ----
 * The tags may arrive split over pieces: up to a tag's length of text is
 * held back until it is known to be (or not to be) part of one. */
enum think_state { TS_START, TS_THINK, TS_NEWLINES, TS_ANSWER };

struct think_tap {
    const struct engine_turn_params *tp;
    enum think_state state;
    char held[16]; /* text that may be the start of a tag */
    size_t nheld;
    bool go_on;
};

static void tap_out(struct think_tap *t, bool thinking, const char *s, size_t n)
{
    if (!n)
        return;
    engine_piece_fn f = thinking ? t->tp->on_thinking : t->tp->on_piece;
    if (f && !f(s, n, t->tp->user))
        t->go_on = false;
}

static void tap_feed(struct think_tap *t, const char *s, size_t n)
{
    static const char open[] = "<think>", close[] = "</think>";
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (t->state) {
        case TS_START:
            t->held[t->nheld++] = c;
            if (t->nheld == sizeof open - 1 && memcmp(t->held, open, t->nheld) == 0) {
                t->state = TS_THINK;
                t->nheld = 0;
            } else if (memcmp(t->held, open, t->nheld) != 0) {
                t->state = TS_ANSWER;
                tap_out(t, false, t->held, t->nheld);
                t->nheld = 0;
            }
            break;
        case TS_THINK:
            t->held[t->nheld++] = c;
            if (t->nheld == sizeof close - 1 && memcmp(t->held, close, t->nheld) == 0) {
                t->state = TS_NEWLINES;
                t->nheld = 0;
            } else {
                /* keep the longest tail that may still begin "</think>" */
                size_t k = 0;
                while (k < t->nheld && memcmp(t->held + k, close, t->nheld - k) != 0)
                    k++;
                tap_out(t, true, t->held, k);
                memmove(t->held, t->held + k, t->nheld - k);
                t->nheld -= k;
            }
            break;
        case TS_NEWLINES:
            if (c == '\n' || c == '\r')
                break;
            t->state = TS_ANSWER;
            /* fall through */
        case TS_ANSWER:
            tap_out(t, false, s + i, n - i);
            return;
        }
    }
}

static bool think_piece(const char *s, size_t n, void *user)
{
    struct think_tap *t = user;
    tap_feed(t, s, n);
    return t->go_on;
}

static void think_notice(const char *m, void *user)
{
    struct think_tap *t = user;
    if (t->tp->on_notice)
        t->tp->on_notice(m, t->tp->user);
}

static void think_token(int32_t id, const char *piece, size_t len, void *user)
{
    struct think_tap *t = user;
    t->tp->on_token(id, piece, len, t->tp->user);
}

static void think_prefill(uint64_t done, uint64_t total, void *user)
{
    struct think_tap *t = user;
    t->tp->on_prefill(done, total, t->tp->user);
}

int engine_chat(struct engine *e, const char *user_text, const struct engine_turn_params *tp,
                char **reply, char *err, size_t errlen)
{
    if (!tp->on_thinking)
        return e->ops->chat(e, user_text, tp, reply, err, errlen);
    struct think_tap t = {.tp = tp, .go_on = true};
    struct engine_turn_params w = *tp;
    w.on_piece = think_piece;
    w.on_notice = think_notice;
    w.on_token = tp->on_token ? think_token : NULL;
    w.on_prefill = tp->on_prefill ? think_prefill : NULL;
    w.user = &t;
    int rc = e->ops->chat(e, user_text, &w, reply, err, errlen);
    /* what was held back at the end is text, not a tag */
    tap_out(&t, t.state == TS_THINK, t.held, t.nheld);
    return rc;
}

void engine_cancel(struct engine *e) { e->ops->cancel(e); }

void engine_stats(struct engine *e, struct engine_stats *out) { e->ops->stats(e, out); }

void engine_memory(struct engine *e, struct engine_memory *out) { e->ops->memory(e, out); }

void engine_memory_map(struct engine *e, struct engine_memory_map *out)
{
    memset(out, 0, sizeof *out);
    if (e->ops->memory_map)
        e->ops->memory_map(e, out);
}

void engine_server(struct engine *e, struct engine_server *out)
{
    *out = (struct engine_server){.kv_frac = -1, .kv_tokens = -1, .n_ctx = -1,
                                  .reqs_running = -1, .reqs_waiting = -1,
                                  .prefix_hit_rate = -1, .vram_bytes = -1, .age_s = -1};
    if (e->ops->server)
        e->ops->server(e, out);
}

int32_t *engine_tokenize(const struct engine *e, const char *text, bool add_bos, int64_t *n)
{
    return e->ops->tokenize ? e->ops->tokenize(e, text, add_bos, n) : NULL;
}

size_t engine_token_piece(const struct engine *e, int32_t id, char *buf, size_t cap)
{
    if (e->ops->token_piece)
        return e->ops->token_piece(e, id, buf, cap);
    if (cap)
        buf[0] = 0;
    return 0;
}

int engine_forward(struct engine *e, const int32_t *tokens, int32_t n, int32_t pos,
                   float *logits, bool all_logits, char *err, size_t errlen)
{
    if (!e->ops->forward) {
        kv_seterr(err, errlen, "a %s engine has no model of its own to run token by token",
                  e->ops->kind);
        return -1;
    }
    return e->ops->forward(e, tokens, n, pos, logits, all_logits, err, errlen);
}

uint64_t engine_bytes_per_token(struct engine *e, int32_t n_past)
{
    return e->ops->bytes_per_token ? e->ops->bytes_per_token(e, n_past) : 0;
}

int engine_measure_roofs(struct engine *e, const struct engine_roofs_params *p,
                         struct engine_roofs *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!e->ops->measure_roofs) {
        kv_seterr(err, errlen, "a %s engine has no device of its own to measure", e->ops->kind);
        return -1;
    }
    struct engine_roofs_params d = {0};
    return e->ops->measure_roofs(e, p ? p : &d, out, err, errlen);
}
