/* session.h - what the headless mode and the UI share about saved
 * conversations: the model's digest, converting sampling settings to and from
 * the store, and restoring a saved session into an engine.
 */
#ifndef KVCHAT_SESSION_H
#define KVCHAT_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "history.h"
#include "options.h"

/* A short digest identifying a model file: "fnv1a64:<hex>:<size>" over its
 * size, its header (first 1 MiB) and its last 1 MiB. Reading the whole file
 * would cost seconds per start for large models; these parts change whenever
 * the metadata or the tensor layout does. "" when the file cannot be read. */
void kv_model_digest(const char *path, char *buf, size_t cap);

struct hist_sampling kv_to_hist_sampling(const struct kv_options *o);
void kv_from_hist_sampling(const struct hist_sampling *h, struct kv_options *o);

/* The end reason the store records for an engine stop. */
enum hist_end kv_hist_end(enum engine_stop s);

/* Loads session ID from H into E: its messages become the engine's
 * conversation (the KV cache is rebuilt at the next turn), its system prompt
 * is restored unless O->system_set, and its sampling settings unless
 * O->sampling_set. *DROPPED gets the number of older turns that do not fit
 * the context (the model will not see them; tell the user). Returns 0, or -1
 * with a message in ERR. */
int kv_session_restore(struct hist *h, int64_t id, struct engine *e, struct kv_options *o,
                       int32_t *dropped, char *err, size_t errlen);

/* Resolves O->resume (latest or an id) to a session id; -1 with ERR when there
 * is none. */
int64_t kv_session_resolve(struct hist *h, const struct kv_options *o, char *err, size_t errlen);

#endif
