/* engine.c - the public wrappers of engine.h and engine_tools.h over the
 * implementation table (engine_impl.h), and the names and defaults every
 * implementation shares. */
#include "engine_impl.h"

#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "errmsg.h"
#include "strbuf.h"

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

/* ---- thinking told apart from the answer ----
 * One splitter for every way a reply marks its thinking: a table of markers,
 * each recognised in some states and moving the reply to another. The marker
 * that opens the reply fixes its family, and only that family's markers count
 * after it, so a Qwen3 answer that mentions "<|end|>" stays text, and so does
 * every marker in a reply that opens with plain text. Markers may arrive split over pieces (and harmony's
 * are several tokens each): text that may still begin a marker is held back
 * until it is known to be (or not to be) one. The same splitter parts a
 * stored reply (engine_split_thinking), so both always agree. */
enum split_state { SS_START, SS_THINK, SS_ANSWER, SS_KEEP };
enum split_family { SF_NONE, SF_THINK_TAGS, SF_HARMONY };

#define SS_BIT(s) (1u << (s))
#define SS_BODY (SS_BIT(SS_THINK) | SS_BIT(SS_ANSWER))

struct split_marker {
    const char *text;
    enum split_family family;
    unsigned from;         /* SS_BIT()s of the states it is recognised in */
    enum split_state to;   /* SS_KEEP: hidden, the state stays */
    bool eat_newlines;     /* newlines right after it are not the answer's */
};

static const struct split_marker split_markers[] = {
    /* Qwen3, DeepSeek-R1: a think block opening the reply (the prompt's own
     * "<think>\n" for DeepSeek-R1 is part of the reply, chat_reply_prefix) */
    {.text = "<think>", .family = SF_THINK_TAGS, .from = SS_BIT(SS_START), .to = SS_THINK},
    {.text = "</think>", .family = SF_THINK_TAGS, .from = SS_BIT(SS_THINK), .to = SS_ANSWER,
     .eat_newlines = true},
    /* gpt-oss: channel headers; commentary (tool preambles) is not the answer */
    {.text = "<|channel|>analysis<|message|>", .family = SF_HARMONY,
     .from = SS_BIT(SS_START) | SS_BODY, .to = SS_THINK},
    {.text = "<|channel|>commentary<|message|>", .family = SF_HARMONY,
     .from = SS_BIT(SS_START) | SS_BODY, .to = SS_THINK},
    {.text = "<|channel|>final<|message|>", .family = SF_HARMONY,
     .from = SS_BIT(SS_START) | SS_BODY, .to = SS_ANSWER},
    {.text = "<|end|>", .family = SF_HARMONY, .from = SS_BODY, .to = SS_KEEP},
    {.text = "<|start|>assistant", .family = SF_HARMONY, .from = SS_BODY, .to = SS_KEEP},
};
#define N_MARKERS (sizeof split_markers / sizeof *split_markers)
#define MARKER_MAX 40 /* longer than the longest marker */

/* Where split text goes: THINKING or not, S (N bytes) found at offset OFF of
 * the reply. */
typedef void split_out_fn(void *user, bool thinking, const char *s, size_t n, size_t off);

struct splitter {
    enum split_state state;
    enum split_family family;
    bool eat_newlines;
    char held[MARKER_MAX]; /* text that may be the start of a marker */
    size_t nheld;
    size_t pos; /* offset in the reply of held[0] (of the next byte when none) */
    bool entered_think;
    size_t think_at; /* offset just past the marker that opened the thinking */
    split_out_fn *out;
    void *user;
};

/* A reply that opens with plain text has no family: its markers are text. */
static bool marker_live(const struct splitter *sp, const struct split_marker *m)
{
    return (m->from & SS_BIT(sp->state)) && (sp->state == SS_START || sp->family == m->family);
}

static bool any_live(const struct splitter *sp)
{
    for (size_t i = 0; i < N_MARKERS; i++)
        if (marker_live(sp, &split_markers[i]))
            return true;
    return false;
}

/* The live marker S (N bytes) is, or begins (*WHOLE false); NULL if none. */
static const struct split_marker *marker_at(const struct splitter *sp, const char *s, size_t n,
                                            bool *whole)
{
    const struct split_marker *prefix = NULL;
    for (size_t i = 0; i < N_MARKERS; i++) {
        const struct split_marker *m = &split_markers[i];
        size_t ml = strlen(m->text);
        if (!marker_live(sp, m) || n > ml || memcmp(s, m->text, n) != 0)
            continue;
        if (n == ml) {
            *whole = true;
            return m;
        }
        prefix = m;
    }
    *whole = false;
    return prefix;
}

/* Text of the reply at offset OFF, in the current state. */
static void split_text(struct splitter *sp, const char *s, size_t n, size_t off)
{
    if (sp->state == SS_START)
        sp->state = SS_ANSWER;
    if (sp->state == SS_ANSWER && sp->eat_newlines) {
        while (n > 0 && (*s == '\n' || *s == '\r')) {
            s++;
            n--;
            off++;
        }
        if (n == 0)
            return;
        sp->eat_newlines = false;
    }
    if (n)
        sp->out(sp->user, sp->state == SS_THINK, s, n, off);
}

/* Settles the held text: applies a whole marker, or lets go of the bytes that
 * can no longer begin one. */
static void split_settle(struct splitter *sp)
{
    while (sp->nheld > 0) {
        bool whole;
        const struct split_marker *m = marker_at(sp, sp->held, sp->nheld, &whole);
        if (m && whole) {
            sp->family = m->family;
            if (m->to != SS_KEEP)
                sp->state = m->to;
            sp->eat_newlines = m->eat_newlines;
            sp->pos += sp->nheld;
            sp->nheld = 0;
            if (sp->state == SS_THINK && !sp->entered_think) {
                sp->entered_think = true;
                sp->think_at = sp->pos;
            }
            return;
        }
        if (m)
            return; /* may still become one */
        size_t k = 1;
        bool w;
        while (k < sp->nheld && !marker_at(sp, sp->held + k, sp->nheld - k, &w))
            k++;
        char text[MARKER_MAX];
        memcpy(text, sp->held, k);
        memmove(sp->held, sp->held + k, sp->nheld - k);
        sp->nheld -= k;
        size_t at = sp->pos;
        sp->pos += k;
        split_text(sp, text, k, at); /* may change the state: the rest is looked at again */
    }
}

static void split_feed(struct splitter *sp, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (sp->nheld == 0 && !any_live(sp)) {
            size_t at = sp->pos;
            sp->pos += n - i;
            split_text(sp, s + i, n - i, at);
            return;
        }
        sp->held[sp->nheld++] = s[i];
        split_settle(sp);
    }
}

/* The end of the reply: what is still held is text, not a marker. */
static void split_finish(struct splitter *sp)
{
    size_t n = sp->nheld;
    sp->nheld = 0;
    split_text(sp, sp->held, n, sp->pos);
    sp->pos += n;
}

/* ---- stored replies ---- */

struct split_spans {
    size_t think_end;
    bool have_answer;
    size_t answer_off;
};

static void spans_out(void *user, bool thinking, const char *s, size_t n, size_t off)
{
    struct split_spans *sp = user;
    (void)s;
    if (thinking)
        sp->think_end = off + n;
    else if (!sp->have_answer) {
        sp->have_answer = true;
        sp->answer_off = off;
    }
}

bool engine_split_thinking(const char *reply, size_t len, size_t *think_off, size_t *think_len,
                           size_t *answer_off)
{
    struct split_spans spans = {0};
    struct splitter sp = {.out = spans_out, .user = &spans};
    split_feed(&sp, reply, reply ? len : 0);
    split_finish(&sp);
    /* no answer yet: it starts at the end, past any marker */
    *answer_off = spans.have_answer ? spans.answer_off : sp.family != SF_NONE ? len : 0;
    *think_off = 0;
    *think_len = 0;
    if (!sp.entered_think)
        return false;
    *think_off = sp.think_at;
    *think_len = spans.think_end > sp.think_at ? spans.think_end - sp.think_at : 0;
    return true;
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

/* ---- while it streams ---- */

struct think_tap {
    const struct engine_turn_params *tp;
    struct splitter sp;
    bool go_on;
    /* No on_thinking, but headers that must not reach the screen (harmony):
     * the thinking goes to on_piece as a "<think>" block, the convention
     * front-ends already read, and the answer after it. */
    bool as_tags;
    bool tag_open, tag_closed;
};

static void tap_emit(struct think_tap *t, engine_piece_fn f, const char *s, size_t n)
{
    if (f && t->go_on && !f(s, n, t->tp->user))
        t->go_on = false;
}

static void tap_out(void *user, bool thinking, const char *s, size_t n, size_t off)
{
    struct think_tap *t = user;
    (void)off;
    if (!t->as_tags) {
        tap_emit(t, thinking ? t->tp->on_thinking : t->tp->on_piece, s, n);
        return;
    }
    if (thinking && !t->tag_open) {
        t->tag_open = true;
        tap_emit(t, t->tp->on_piece, "<think>", 7);
    } else if (!thinking && t->tag_open && !t->tag_closed) {
        t->tag_closed = true;
        tap_emit(t, t->tp->on_piece, "</think>\n\n", 10);
    }
    tap_emit(t, t->tp->on_piece, s, n);
}

static bool think_piece(const char *s, size_t n, void *user)
{
    struct think_tap *t = user;
    split_feed(&t->sp, s, n);
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

/* The harmony reply R as front-ends read replies: its analysis as a
 * "<think>" block, then its final answer, no headers (what the stream gave
 * on_piece without on_thinking). A malloc'd string, or NULL without memory. */
static bool append_piece(const char *s, size_t n, void *user)
{
    return kv_strbuf_append(user, s, n) == 0;
}

static char *harmony_as_tags(const char *r)
{
    struct kv_strbuf b = {0};
    struct engine_turn_params tp = {.on_piece = append_piece, .user = &b};
    struct think_tap t = {.tp = &tp, .go_on = true, .as_tags = true};
    t.sp = (struct splitter){.out = tap_out, .user = &t};
    if (kv_strbuf_append(&b, "", 0) != 0)
        return NULL;
    split_feed(&t.sp, r, strlen(r));
    split_finish(&t.sp);
    if (!t.go_on) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

int engine_chat(struct engine *e, const char *user_text, const struct engine_turn_params *tp,
                char **reply, char *err, size_t errlen)
{
    bool headers = strcmp(e->info.template_name, chat_format_name(CHAT_FORMAT_HARMONY)) == 0;
    if (!tp->on_thinking && !headers)
        return e->ops->chat(e, user_text, tp, reply, err, errlen);
    struct think_tap t = {.tp = tp, .go_on = true, .as_tags = !tp->on_thinking};
    t.sp = (struct splitter){.out = tap_out, .user = &t};
    struct engine_turn_params w = *tp;
    w.on_piece = think_piece;
    w.on_notice = think_notice;
    w.on_token = tp->on_token ? think_token : NULL;
    w.on_prefill = tp->on_prefill ? think_prefill : NULL;
    w.user = &t;
    int rc = e->ops->chat(e, user_text, &w, reply, err, errlen);
    split_finish(&t.sp);
    /* The engine keeps the reply with its headers (its template reads them);
     * the caller gets it in the form every front-end reads. Without memory
     * the caller keeps the headers: nothing is lost. */
    if (headers && reply && *reply) {
        char *tags = harmony_as_tags(*reply);
        if (tags) {
            free(*reply);
            *reply = tags;
        }
    }
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
