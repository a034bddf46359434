/* launch.c - see launch.h. */
#include "launch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* The API key's variable: the one named, else the first of these that is set
 * (KVCHAT_API_KEY first, so a key meant for kvchat wins over a general one),
 * else none. */
static const char *const KEY_ENV_DEFAULTS[] = {"KVCHAT_API_KEY", "OPENAI_API_KEY"};

const char *kv_api_key_env(const struct kv_options *o)
{
    if (o->api_key_env[0])
        return o->api_key_env;
    for (size_t i = 0; i < sizeof KEY_ENV_DEFAULTS / sizeof *KEY_ENV_DEFAULTS; i++) {
        const char *v = getenv(KEY_ENV_DEFAULTS[i]);
        if (v && *v)
            return KEY_ENV_DEFAULTS[i];
    }
    return NULL;
}

struct engine_params kv_remote_params(const struct kv_options *o)
{
    struct engine_params p = engine_default_params();
    p.server = o->server;
    p.server_model = o->server_model[0] ? o->server_model : NULL;
    p.api_key_env = kv_api_key_env(o);
    p.insecure = o->insecure;
    p.connect_timeout_s = o->connect_timeout_s;
    p.idle_timeout_s = o->idle_timeout_s;
    return p;
}

static struct engine *open_remote(const struct kv_options *o, char *path, size_t cap, char *err,
                                  size_t errlen)
{
    snprintf(path, cap, "%s", o->server);
    struct engine_params p = kv_remote_params(o);
    return engine_new(&p, err, errlen);
}

struct engine *kv_engine_open(const struct kv_options *o, engine_progress_fn progress,
                              void *user, char *path, size_t cap, char *err, size_t errlen)
{
    if (o->server[0])
        return open_remote(o, path, cap, err, errlen);
    kv_model_path(o, path, cap);
    if (!o->model[0] && !o->synthetic[0] && access(path, R_OK) != 0) {
        snprintf(err, errlen, "the default model %s is missing: run scripts/run (or "
                              "scripts/fetch-models) to download it, or pass -m FILE.gguf", path);
        return NULL;
    }
    struct engine_params p = engine_default_params();
    p.model_path = path;
    p.synthetic = o->synthetic[0] ? o->synthetic : NULL;
    p.backend = o->backend;
    p.n_ctx = o->ctx_size;
    p.n_threads = o->threads;
    p.chat_template = o->chat_template[0] ? o->chat_template : NULL;
    p.kv_type = o->kv_type;
    p.think = o->think;
    p.progress = progress;
    p.progress_user = user;
    return engine_new(&p, err, errlen);
}

bool kv_think_note(const struct kv_options *o, const struct engine_info *in, char *buf, size_t cap)
{
    if (o->think == ENGINE_THINK_DEFAULT || in->think_switch)
        return false;
    const char *v = o->think == ENGINE_THINK_ON ? "on" : "off";
    if (strcmp(in->backend, "remote") == 0)
        snprintf(buf, cap, "--think %s is ignored: the server applies its own chat template", v);
    else
        snprintf(buf, cap, "--think %s is ignored: the %s chat template has no thinking switch", v,
                 in->template_name);
    return true;
}

static void on_progress(uint64_t done, uint64_t total, void *user)
{
    (void)user;
    if (total)
        fprintf(stderr, "\rkvchat: loading %.0f%% (%.1f of %.1f MiB)", 100.0 * done / total,
                done / 1048576.0, total / 1048576.0);
    if (done == total)
        fputc('\n', stderr);
}

struct engine *kv_load_engine(const struct kv_options *o, bool progress, char *err, size_t errlen)
{
    char path[4096];
    struct engine *e =
        kv_engine_open(o, progress ? on_progress : NULL, NULL, path, sizeof path, err, errlen);
    if (e && engine_info(e)->backend_note[0] && (o->verbose || o->backend != ENGINE_BACKEND_AUTO))
        fprintf(stderr, "kvchat: %s\n", engine_info(e)->backend_note);
    if (e && o->server[0] && o->insecure)
        fprintf(stderr, "kvchat: %s\n", KV_INSECURE_WARNING);
    if (e && engine_info(e)->warning[0])
        fprintf(stderr, "kvchat: warning: %s\n", engine_info(e)->warning);
    char note[256];
    if (e && (o->mode == KV_MODE_PROMPT || o->mode == KV_MODE_UI) &&
        kv_think_note(o, engine_info(e), note, sizeof note))
        fprintf(stderr, "kvchat: %s\n", note);
    return e;
}
