/* engine_impl.h - what an engine implementation (the local engine in
 * local.c, the remote one in backend/remote/) fills in behind engine.h. Internal to
 * backend/: only engine.c calls through the table.
 *
 * An implementation embeds struct engine as its first member, fills info
 * once in its constructor, and provides every entry not marked optional. The
 * wrappers in engine.c handle an optional entry left NULL with a message (or
 * ENGINE_UNKNOWN), so front-ends never test for it.
 */
#ifndef KVCHAT_ENGINE_IMPL_H
#define KVCHAT_ENGINE_IMPL_H

#include "engine.h"
#include "engine_tools.h"

struct engine_ops {
    const char *kind; /* "local": for messages */
    void (*free)(struct engine *e);
    int (*set_system)(struct engine *e, const char *system);
    void (*reset)(struct engine *e);
    int (*load_transcript)(struct engine *e, const struct engine_message *msgs, size_t n);
    int32_t (*fit_context)(struct engine *e, int32_t max_tokens);
    bool (*pop_turn)(struct engine *e);
    int (*chat)(struct engine *e, const char *user_text, const struct engine_turn_params *tp,
                char **reply, char *err, size_t errlen);
    void (*cancel)(struct engine *e);
    /* Optional (NULL: the engine has no thinking switch). */
    int (*set_think)(struct engine *e, bool on);
    void (*stats)(struct engine *e, struct engine_stats *out);
    void (*memory)(struct engine *e, struct engine_memory *out);
    /* optional: where the memory goes (engine_memory_map); absent = not known */
    void (*memory_map)(struct engine *e, struct engine_memory_map *out);
    /* optional: a server's own figures (engine_server); absent = all unknown */
    void (*server)(struct engine *e, struct engine_server *out);
    /* optional: an engine without a tokenizer of its own */
    int32_t *(*tokenize)(const struct engine *e, const char *text, bool add_bos, int64_t *n);
    size_t (*token_piece)(const struct engine *e, int32_t id, char *buf, size_t cap);
    /* optional: raw model access (engine_tools.h) */
    int (*forward)(struct engine *e, const int32_t *tokens, int32_t n, int32_t pos,
                   float *logits, bool all_logits, char *err, size_t errlen);
    uint64_t (*bytes_per_token)(struct engine *e, int32_t n_past);
    /* optional: the device's ceilings (engine_measure_roofs) */
    int (*measure_roofs)(struct engine *e, const struct engine_roofs_params *p,
                         struct engine_roofs *out, char *err, size_t errlen);
};

struct engine {
    const struct engine_ops *ops;
    struct engine_info info; /* filled by the constructor, immutable after */
};

/* The local engine (local.c): a model file, or a synthetic model, on a
 * compute backend. */
struct engine *local_engine_new(const struct engine_params *p, char *err, size_t errlen);
/* The remote engine (backend/remote/): a model served by an OpenAI-compatible
 * server at engine_params.server. */
struct engine *remote_engine_new(const struct engine_params *p, char *err, size_t errlen);
/* engine_list_server_models, there. */
int remote_list_models(const struct engine_params *p, char ***names, size_t *n, char *err,
                       size_t errlen);

#endif
