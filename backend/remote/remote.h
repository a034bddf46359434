/* remote.h - the remote engine's constructor, for engine.c's dispatch: an
 * engine (engine_impl.h row "remote") whose model runs on an OpenAI-compatible
 * server named by engine_params.server. */
#ifndef KVCHAT_REMOTE_H
#define KVCHAT_REMOTE_H

#include "engine_impl.h"

struct engine *remote_engine_new(const struct engine_params *p, char *err, size_t errlen);

#endif
