/* engine_tools.h - raw access below the turn level, for `kvchat bench`,
 * `kvchat synth` (tools/) and the tests. The chat front-ends never need it:
 * they speak engine.h.
 *
 * Entries that only a local engine can serve (raw forward passes, the bytes a
 * decode step reads) fail with a message on an engine that has no model of
 * its own, rather than being absent from the interface.
 */
#ifndef KVCHAT_ENGINE_TOOLS_H
#define KVCHAT_ENGINE_TOOLS_H

#include "engine.h"

/* Runs tokens through the model at positions POS.. and writes the last
 * token's logits (n_vocab) to LOGITS, or every token's (n x n_vocab) when
 * ALL_LOGITS. Does not touch the conversation bookkeeping (call engine_reset
 * afterwards). Returns 0 or -1 with ERR. */
int engine_forward(struct engine *e, const int32_t *tokens, int32_t n, int32_t pos,
                   float *logits, bool all_logits, char *err, size_t errlen);

/* Bytes one decode step reads at a context of N_PAST earlier tokens: the
 * weights (the model's bytes per token) plus the K and V of every position
 * each layer attends to (sliding-window layers no more than their window), at
 * the backend's KV cache element size. The bandwidth roofline's numerator; 0
 * when the engine cannot know it. */
uint64_t engine_bytes_per_token(struct engine *e, int32_t n_past);

/* kvchat synth: builds the synthetic model SPEC ("SHAPE:TYPE") and writes it
 * to PATH as a GGUF file other engines load too, with the tokenizer copied
 * from the model file TOKENIZER_FROM (NULL: none). The tokenizer must have
 * the shape's vocabulary size (the message names the shapes that would
 * fit). Memory (read under MEM_ROOT, a prefix of /proc and /sys that tests
 * fake; NULL = the real ones) and disk space are weighed first, and too
 * little of either is an error naming both sizes. Returns 0 or -1 with ERR. */
int engine_write_synthetic(const char *spec, const char *tokenizer_from, const char *path,
                           const char *mem_root,
                           char *err, size_t errlen);

#endif
