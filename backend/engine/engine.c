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

int engine_chat(struct engine *e, const char *user_text, const struct engine_turn_params *tp,
                char **reply, char *err, size_t errlen)
{
    return e->ops->chat(e, user_text, tp, reply, err, errlen);
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
