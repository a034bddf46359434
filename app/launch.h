/* launch.h - starting the engine the settings name, the same way for every
 * mode: the model path (the default model when none is given, with a clear
 * message when it has not been downloaded), backend, context, threads and
 * template from struct kv_options; or, with a server, the remote engine with
 * its URL, model name, API key variable, TLS check and timeouts. */
#ifndef KVCHAT_LAUNCH_H
#define KVCHAT_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>

#include "engine.h"
#include "options.h"

/* Loads the engine O names with PROGRESS/USER as the load progress callback
 * (may be NULL). PATH (CAP bytes) receives the model path it resolved. NULL
 * with a one-line message in ERR. */
struct engine *kv_engine_open(const struct kv_options *o, engine_progress_fn progress,
                              void *user, char *path, size_t cap, char *err, size_t errlen);

/* kv_engine_open for the modes that print and exit: a progress line on
 * stderr when PROGRESS, and the backend note when asked for (--verbose or an
 * explicit --backend). */
struct engine *kv_load_engine(const struct kv_options *o, bool progress, char *err, size_t errlen);

/* The remote engine's parameters from O's server settings (borrowing O's
 * strings): for engine_new and engine_list_server_models alike. */
struct engine_params kv_remote_params(const struct kv_options *o);

/* The environment variable the API key is read from: --api-key-env, else
 * KVCHAT_API_KEY or OPENAI_API_KEY, whichever is set first; NULL = none. */
const char *kv_api_key_env(const struct kv_options *o);

/* The notice for a --think (or config think) the engine cannot honour: its
 * template has no thinking switch (or a server applies its own). Writes it
 * into BUF and returns true, or returns false when there is nothing to say.
 * Said once after loading: on stderr (-p) and on the chat screen. */
bool kv_think_note(const struct kv_options *o, const struct engine_info *in, char *buf, size_t cap);

/* Said on stderr (-p) and on the chat screen when --insecure is in force. */
#define KV_INSECURE_WARNING "warning: --insecure: the server's TLS certificate is not checked"

#endif
