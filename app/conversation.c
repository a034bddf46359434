/* conversation.c - the one path between the engine and the history: turns
 * saved as they stream, sessions created on their first message and
 * restored into an engine. See conversation.h. */
#include "conversation.h"

#include "strbuf.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* FNV-1a, 64 bits: the digest identifies a file, it does not defend against
 * forgery, so a fast non-cryptographic hash is enough. */
static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void kv_model_digest(const char *path, char *buf, size_t cap)
{
    buf[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    enum { PART = 1 << 20 };
    uint8_t *b = malloc(PART);
    if (fstat(fd, &st) != 0 || !b) {
        free(b);
        close(fd);
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint64_t h = fnv1a(0xcbf29ce484222325ull, (const uint8_t *)&size, sizeof size);
    off_t offs[2] = {0, st.st_size > PART ? st.st_size - PART : 0};
    for (int i = 0; i < 2; i++) {
        ssize_t n = pread(fd, b, PART, offs[i]);
        if (n > 0)
            h = fnv1a(h, b, (size_t)n);
    }
    free(b);
    close(fd);
    snprintf(buf, cap, "fnv1a64:%016llx:%llu", (unsigned long long)h, (unsigned long long)size);
}

struct hist_sampling kv_to_hist_sampling(const struct kv_options *o)
{
    struct hist_sampling h = {
        .temperature = o->sampling.temperature,
        .top_k = o->sampling.top_k,
        .top_p = o->sampling.top_p,
        .min_p = o->sampling.min_p,
        .repeat_penalty = o->sampling.repeat_penalty,
        .repeat_last_n = o->sampling.repeat_last_n,
        .seed = o->sampling.seed,
        .max_tokens = o->max_tokens > 0 ? o->max_tokens : -1,
    };
    return h;
}

void kv_from_hist_sampling(const struct hist_sampling *h, struct kv_options *o)
{
    o->sampling.temperature = h->temperature;
    o->sampling.top_k = h->top_k;
    o->sampling.top_p = h->top_p;
    o->sampling.min_p = h->min_p;
    o->sampling.repeat_penalty = h->repeat_penalty;
    o->sampling.repeat_last_n = h->repeat_last_n;
    o->max_tokens = h->max_tokens > 0 ? h->max_tokens : 0;
    /* The seed is not restored: a resumed session continues with fresh
     * randomness unless --seed is given. */
}

enum hist_end kv_hist_end(enum engine_stop s)
{
    switch (s) {
    case ENGINE_STOP_EOS: return HIST_END_STOP;
    case ENGINE_STOP_LENGTH: return HIST_END_LENGTH;
    case ENGINE_STOP_CANCELLED: return HIST_END_CANCELLED;
    case ENGINE_STOP_ERROR: break;
    }
    return HIST_END_ERROR;
}

int64_t kv_session_resolve(struct hist *h, const struct kv_options *o, char *err, size_t errlen)
{
    int64_t id = o->resume;
    if (id == KV_RESUME_LATEST) {
        if (hist_session_latest(h, &id) != HIST_OK) {
            snprintf(err, errlen, "no saved session to resume in %s", hist_path(h));
            return -1;
        }
        return id;
    }
    struct hist_session s;
    if (hist_session_get(h, id, &s) != HIST_OK) {
        snprintf(err, errlen, "no session %lld in %s (see kvchat --list-sessions)", (long long)id,
                 hist_path(h));
        return -1;
    }
    hist_session_clear(&s);
    return id;
}

int kv_session_restore(struct hist *h, int64_t id, struct engine *e, struct kv_options *o,
                       int32_t *dropped, char *err, size_t errlen)
{
    *dropped = 0;
    struct hist_session s;
    if (hist_session_get(h, id, &s) != HIST_OK) {
        snprintf(err, errlen, "%s", hist_last_error(h));
        return -1;
    }
    if (!o->system_set) {
        if (s.system_prompt)
            snprintf(o->system, sizeof o->system, "%s", s.system_prompt);
        o->system_set = s.system_prompt != NULL;
    }
    if (!o->sampling_set && s.has_sampling)
        kv_from_hist_sampling(&s.sampling, o);
    hist_session_clear(&s);

    struct hist_message *msgs = NULL;
    size_t n = 0;
    if (hist_messages(h, id, &msgs, &n) != HIST_OK) {
        snprintf(err, errlen, "%s", hist_last_error(h));
        return -1;
    }
    struct engine_message *cm = calloc(n ? n : 1, sizeof *cm);
    if (!cm) {
        hist_messages_free(msgs, n);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        /* A reply that was never written (an error before the first token)
         * carries nothing for the model to see. */
        if (msgs[i].role == HIST_ROLE_ASSISTANT && msgs[i].content_len == 0 && !msgs[i].thinking)
            continue;
        /* Of a turn's variants the model sees the chosen one only. */
        if (msgs[i].variant_off)
            continue;
        enum engine_role r = msgs[i].role == HIST_ROLE_SYSTEM ? ENGINE_ROLE_SYSTEM
                           : msgs[i].role == HIST_ROLE_USER   ? ENGINE_ROLE_USER
                                                              : ENGINE_ROLE_ASSISTANT;
        cm[k++] = (struct engine_message){.role = r, .content = msgs[i].content,
                                          .thinking = msgs[i].thinking};
    }
    int rc = engine_load_transcript(e, cm, k);
    free(cm);
    hist_messages_free(msgs, n);
    engine_set_system(e, o->system_set ? o->system : NULL);
    if (rc == 0)
        *dropped = engine_fit_context(e, o->max_tokens);
    if (rc != 0 || *dropped < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

struct hist *conv_open_history(const struct kv_options *o, char *err, size_t errlen)
{
    err[0] = 0;
    if (o->no_history)
        return NULL;
    char path[4096];
    if (o->db[0])
        snprintf(path, sizeof path, "%s", o->db);
    else if (hist_default_path(path, sizeof path) != HIST_OK) {
        snprintf(err, errlen, "neither XDG_DATA_HOME nor HOME is set (pass --db FILE)");
        return NULL;
    }
    return hist_open(path, err, errlen);
}

void conv_init(struct conv *c, struct engine *e, struct hist *h)
{
    memset(c, 0, sizeof *c);
    c->e = e;
    c->h = h;
    c->sid = -1;
    c->reply_id = -1;
}

static void conv_failed(struct conv *c, const char *what)
{
    snprintf(c->err, sizeof c->err, "%s%s%s", what, c->h ? ": " : "",
             c->h ? hist_last_error(c->h) : "");
    c->saving = false;
}

int conv_resume(struct conv *c, int64_t sid, struct kv_options *o, int32_t *dropped, char *err,
                size_t errlen)
{
    if (!c->h) {
        snprintf(err, errlen, "resuming a session needs the history database, which is not "
                              "available");
        return -1;
    }
    if (kv_session_restore(c->h, sid, c->e, o, dropped, err, errlen) != 0)
        return -1;
    c->sid = sid;
    return 0;
}

void conv_new(struct conv *c)
{
    engine_reset(c->e);
    c->sid = -1;
}

static bool is_remote(const struct engine_info *in)
{
    return strcmp(in->backend, "remote") == 0;
}

/* The model as the store names it: a local model file's base name, or a
 * server's "NAME@host:port" (a name alone does not say which server
 * answered). A remote engine's model_path is its origin, scheme://host:port,
 * which always carries the port (and brackets an IPv6 host); its device is
 * the host, used when the origin is not there. */
static void store_model_name(const struct engine_info *in, char *buf, size_t cap)
{
    if (is_remote(in)) {
        const char *sep = strstr(in->model_path, "://");
        snprintf(buf, cap, "%s@%s", in->model_name, sep ? sep + 3 : in->device);
        return;
    }
    const char *base = strrchr(in->model_path, '/');
    snprintf(buf, cap, "%s", base ? base + 1 : in->model_path);
}

/* Creates the session row on the first message of a conversation, with the
 * model that answers it and the settings it was asked with. A server's
 * model has no file to digest: its digest is "". */
static int ensure_session(struct conv *c, const struct kv_options *o)
{
    if (c->sid >= 0)
        return HIST_OK;
    const struct engine_info *in = engine_info(c->e);
    char digest[128] = "", model[sizeof in->model_name + sizeof in->model_path + 2];
    if (!is_remote(in))
        kv_model_digest(in->model_path, digest, sizeof digest);
    store_model_name(in, model, sizeof model);
    struct hist_sampling hs = kv_to_hist_sampling(o);
    int64_t sid;
    int rc = hist_session_create(c->h, NULL, o->system_set ? o->system : NULL, &sid);
    if (rc != HIST_OK)
        return rc;
    c->sid = sid;
    rc = hist_session_set_model(c->h, sid, model, digest);
    if (rc == HIST_OK)
        rc = hist_session_set_sampling(c->h, sid, &hs);
    return rc;
}

int conv_ensure_session(struct conv *c, const struct kv_options *o)
{
    if (!c->h) {
        snprintf(c->err, sizeof c->err, "cannot create the session: no history database");
        return -1;
    }
    if (ensure_session(c, o) != HIST_OK) {
        snprintf(c->err, sizeof c->err, "cannot create the session: %s", hist_last_error(c->h));
        return -1;
    }
    return 0;
}

int conv_begin_turn(struct conv *c, const char *text, const struct kv_options *o,
                    int64_t *user_id)
{
    c->saving = false;
    c->reply_id = -1;
    c->err[0] = 0;
    if (user_id)
        *user_id = 0;
    if (!c->h)
        return 0;
    /* Each reply names the engine and model that produce it: a resumed
     * session may be continued on another engine than it began on. */
    const struct engine_info *in = engine_info(c->e);
    char model[sizeof in->model_name + sizeof in->model_path + 2];
    store_model_name(in, model, sizeof model);
    if (ensure_session(c, o) != HIST_OK)
        conv_failed(c, "cannot create the session");
    else if (hist_message_add(c->h, c->sid, HIST_ROLE_USER, text, (size_t)-1, -1, user_id) !=
             HIST_OK)
        conv_failed(c, "cannot save your message");
    else if (hist_reply_begin_from(c->h, c->sid, in->backend, model, &c->reply_id) != HIST_OK)
        conv_failed(c, "cannot save the reply");
    else
        c->saving = true;
    return c->saving ? 0 : -1;
}

int conv_begin_retry(struct conv *c, int64_t of_reply, const struct kv_options *o)
{
    (void)o;
    c->saving = false;
    c->reply_id = -1;
    c->err[0] = 0;
    if (!c->h || c->sid < 0 || of_reply <= 0)
        return 0;
    const struct engine_info *in = engine_info(c->e);
    char model[sizeof in->model_name + sizeof in->model_path + 2];
    store_model_name(in, model, sizeof model);
    if (hist_reply_begin_variant(c->h, c->sid, of_reply, in->backend, model, &c->reply_id) !=
        HIST_OK) {
        conv_failed(c, "cannot save the new reply");
        return -1;
    }
    c->saving = true;
    return 0;
}

int conv_choose_variant(struct conv *c, int64_t reply_id, struct kv_options *o)
{
    if (!c->h || c->sid < 0 || reply_id <= 0)
        return 1;
    if (hist_variant_choose(c->h, reply_id) != HIST_OK) {
        conv_failed(c, "cannot save the choice");
        return -1;
    }
    /* The engine gets the session again with the chosen reply; its KV cache
     * keeps the prefix before it, so only that reply is read in again. */
    struct kv_options ro = *o;
    ro.sampling_set = true;
    int32_t dropped;
    char err[512];
    if (kv_session_restore(c->h, c->sid, c->e, &ro, &dropped, err, sizeof err) != 0) {
        snprintf(c->err, sizeof c->err, "%s", err);
        return -1;
    }
    return 0;
}

int conv_save_progress(struct conv *c, const char *text, size_t len)
{
    if (!c->saving)
        return 0;
    return hist_reply_progress(c->h, c->reply_id, text, len, 0) < 0 ? -1 : 0;
}

enum hist_end conv_end(int rc, const struct engine_stats *st)
{
    return rc != 0 ? HIST_END_ERROR : kv_hist_end(st->stop);
}

int conv_finish_turn(struct conv *c, const char *reply, const struct engine_stats *st,
                     enum hist_end end)
{
    if (!c->saving)
        return 0;
    c->saving = false;
    struct hist_reply_stats hs = {
        .n_tokens = st->gen_tokens,
        .n_prompt = st->prefill_tokens,
        .prefill_tps = st->prefill_tok_s,
        .decode_tps = st->gen_tokens > 1 ? st->decode_tok_s : -1,
        .ttft_ms = st->gen_tokens > 0 ? st->ttft_s * 1000.0 : -1,
    };
    const char *r = reply ? reply : "";
    /* The thinking is stored apart: content is the answer alone. */
    size_t toff, tlen, aoff;
    bool think = engine_split_thinking(r, strlen(r), &toff, &tlen, &aoff);
    if (hist_reply_finish(c->h, c->reply_id, r + aoff, strlen(r + aoff), &hs, end) != HIST_OK ||
        (think && hist_reply_set_thinking(c->h, c->reply_id, r + toff, tlen) != HIST_OK)) {
        conv_failed(c, "cannot save the reply");
        return -1;
    }
    return 0;
}

/* conv_turn's piece hook: the caller's, then the reply so far to the store. */
struct turn_tap {
    struct conv *c;
    const struct engine_turn_params *tp;
    struct kv_strbuf text; /* the reply so far, for progress saves */
    bool warned;
    conv_warn_fn warn;
};

static bool tap_piece(const char *s, size_t n, void *user)
{
    struct turn_tap *t = user;
    bool go_on = t->tp->on_piece ? t->tp->on_piece(s, n, t->tp->user) : true;
    if (!t->c->saving)
        return go_on;
    if (kv_strbuf_append(&t->text, s, n) != 0)
        return go_on; /* the final save still has the whole reply */
    if (conv_save_progress(t->c, t->text.p, t->text.len) != 0 && !t->warned) {
        t->warned = true;
        if (t->warn)
            t->warn(hist_last_error(t->c->h), t->tp->user);
    }
    return go_on;
}

static void tap_notice(const char *msg, void *user)
{
    struct turn_tap *t = user;
    if (t->tp->on_notice)
        t->tp->on_notice(msg, t->tp->user);
}

static void tap_token(int32_t id, const char *piece, size_t len, void *user)
{
    struct turn_tap *t = user;
    t->tp->on_token(id, piece, len, t->tp->user);
}

int conv_turn(struct conv *c, const char *text, const struct kv_options *o,
              const struct engine_turn_params *tp, conv_warn_fn warn, char **reply, char *err,
              size_t errlen)
{
    if (conv_begin_turn(c, text, o, NULL) != 0 && warn)
        warn(c->err, tp->user);
    struct turn_tap t = {.c = c, .tp = tp, .warn = warn};
    struct engine_turn_params wrapped = *tp;
    wrapped.on_piece = tap_piece;
    wrapped.on_notice = tap_notice;
    wrapped.on_token = tp->on_token ? tap_token : NULL;
    wrapped.user = &t;
    char *r = NULL;
    int rc = engine_chat(c->e, text, &wrapped, &r, err, errlen);
    free(t.text.p);
    struct engine_stats st;
    engine_stats(c->e, &st);
    if (conv_finish_turn(c, r, &st, conv_end(rc, &st)) != 0 && warn)
        warn(c->err, tp->user);
    if (reply)
        *reply = r;
    else
        free(r);
    return rc;
}

int conv_pop_turn(struct conv *c, int64_t user_id)
{
    if (!engine_pop_turn(c->e))
        return 1;
    if (c->h && c->sid >= 0 && user_id > 0 &&
        hist_messages_truncate(c->h, c->sid, user_id, NULL) != HIST_OK) {
        conv_failed(c, "cannot remove the previous attempt");
        return -1;
    }
    return 0;
}

int conv_set_system(struct conv *c, const char *system)
{
    const char *s = system && *system ? system : NULL;
    if (engine_set_system(c->e, s) != 0) {
        snprintf(c->err, sizeof c->err, "out of memory: the system prompt is unchanged");
        return -1;
    }
    if (c->h && c->sid >= 0 && hist_session_set_system(c->h, c->sid, s) != HIST_OK) {
        conv_failed(c, "cannot save the system prompt");
        return -1;
    }
    return 0;
}

int conv_set_sampling(struct conv *c, const struct kv_options *o)
{
    if (!c->h || c->sid < 0)
        return 0;
    struct hist_sampling hs = kv_to_hist_sampling(o);
    if (hist_session_set_sampling(c->h, c->sid, &hs) != HIST_OK) {
        conv_failed(c, "cannot save the settings");
        return -1;
    }
    return 0;
}
