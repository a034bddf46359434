/* engine.h - the one interface the CLI and the UI use to run a model.
 *
 * An engine owns a model, a tokenizer, a chat template, a sampler and a
 * backend (CPU or CUDA) with its KV cache. It keeps the conversation: each
 * engine_chat call appends a user message and the reply, and prefills only the
 * tokens the KV cache does not already hold. When the context is full the
 * oldest turns are dropped (never the system prompt), the rest re-prefilled,
 * and the caller told.
 *
 * Thread safety: an engine is used by one thread at a time, except
 * engine_cancel, which any thread may call at any moment (it is honoured
 * within one token), and engine_info, which is immutable after load.
 * engine_stats and engine_memory may be called from another thread while a
 * turn runs: they copy a snapshot under a lock.
 */
#ifndef KVCHAT_ENGINE_H
#define KVCHAT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "sampler.h"

enum engine_backend { ENGINE_BACKEND_AUTO, ENGINE_BACKEND_CPU, ENGINE_BACKEND_CUDA };

const char *engine_backend_name(enum engine_backend b);
bool engine_backend_from_name(const char *name, enum engine_backend *out);

/* Called during loading with bytes done of total (for a progress bar). */
typedef void (*engine_progress_fn)(uint64_t done, uint64_t total, void *user);

struct engine_params {
    const char *model_path;
    /* "SHAPE:TYPE" (synth.h, e.g. "llama-1b:q8_0"): a synthetic model built
     * in memory instead of MODEL_PATH. It has no tokenizer: engine_forward
     * and the figures work, engine_chat fails with a message saying so and
     * engine_tokenize returns NULL. NULL or "" = load MODEL_PATH. */
    const char *synthetic;
    enum engine_backend backend;
    int32_t n_ctx;             /* 0 = min(model's training context, 4096) */
    int32_t n_threads;         /* CPU threads; 0 = all cores */
    const char *chat_template; /* a format name overriding detection, or NULL */
    engine_progress_fn progress;
    void *progress_user;
};

struct engine_params engine_default_params(void);

struct engine_info {
    char model_name[128];
    char model_path[4096];
    char arch[16];
    char backend[16];   /* "cpu" or "cuda" */
    char device[128];   /* CPU model or GPU name */
    char template_name[16];
    char backend_note[256]; /* why --backend auto chose what it chose, or "" */
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff;
    int32_t n_ctx;       /* context of this engine */
    int32_t n_ctx_train; /* the model's */
    int32_t n_threads;
    uint64_t n_params;
    uint64_t file_bytes;
    uint64_t weight_bytes;
    uint64_t bytes_per_token; /* weights + KV read per decoded token at empty context */
    double load_seconds;
    bool synthetic;      /* made from engine_params.synthetic */
};

/* Loads the model. NULL with a one-line message in ERR on failure. */
struct engine *engine_new(const struct engine_params *p, char *err, size_t errlen);
void engine_free(struct engine *e); /* NULL is a no-op */
const struct engine_info *engine_info(const struct engine *e);

/* Conversation. */
void engine_set_system(struct engine *e, const char *system); /* NULL = template default */
/* Forgets the conversation (the system prompt stays). */
void engine_reset(struct engine *e);
/* Replaces the conversation with MSGS (system messages set the system prompt);
 * the KV cache is rebuilt lazily at the next turn. Returns 0 or -1 (no memory). */
int engine_load_transcript(struct engine *e, const struct chat_message *msgs, size_t n);
/* After engine_load_transcript: drops the oldest turns that would not fit
 * the context with room for a reply of MAX_TOKENS (0 = the default reserve),
 * exactly as the next engine_chat would, so the caller can say so at once.
 * Returns the number of turns dropped, or -1 on failure. */
int32_t engine_fit_context(struct engine *e, int32_t max_tokens);
/* Removes the last exchange (user message and reply) for regenerate or edit;
 * returns false when there is none. */
bool engine_pop_turn(struct engine *e);

enum engine_stop {
    ENGINE_STOP_EOS,       /* the model ended its turn */
    ENGINE_STOP_LENGTH,    /* max_tokens reached, or the context is full */
    ENGINE_STOP_CANCELLED, /* engine_cancel */
    ENGINE_STOP_ERROR
};
const char *engine_stop_name(enum engine_stop s); /* "stop", "length", "cancelled", "error" */

/* Receives reply text as it is generated: whole UTF-8 characters only. Return
 * false to cancel. */
typedef bool (*engine_piece_fn)(const char *text, size_t len, void *user);
/* Told when older turns were dropped to fit the context. */
typedef void (*engine_notice_fn)(const char *message, void *user);

struct engine_turn_params {
    struct sampler_params sampling;
    int32_t max_tokens; /* 0 = until the context is full */
    engine_piece_fn on_piece;
    engine_notice_fn on_notice;
    void *user;
};

struct engine_stats {
    int32_t prompt_tokens;  /* tokens of the whole prompt */
    int32_t prefill_tokens; /* tokens actually prefilled this turn (new ones) */
    int32_t gen_tokens;
    double prefill_tok_s;
    double decode_tok_s;
    double ttft_s;       /* time to first token */
    double total_s;
    int32_t kv_used;     /* tokens in the KV cache */
    int32_t kv_capacity; /* n_ctx */
    int32_t turns_dropped; /* older turns dropped to fit, this turn */
    enum engine_stop stop;
    bool running;        /* a turn is in progress (live figures) */
};

/* Runs one turn: appends USER_TEXT, generates the reply, appends it (also when
 * cancelled, with what was generated). REPLY, if non-NULL, receives a malloc'd
 * copy of the reply text. Returns 0, or -1 with a message in ERR. */
int engine_chat(struct engine *e, const char *user_text, const struct engine_turn_params *tp,
                char **reply, char *err, size_t errlen);

/* Thread-safe: asks the running turn to stop after the current token. */
void engine_cancel(struct engine *e);

/* Thread-safe snapshot of the last (or running) turn's figures. */
void engine_stats(struct engine *e, struct engine_stats *out);

/* Memory in bytes. A field a backend cannot know is ENGINE_UNKNOWN. */
#define ENGINE_UNKNOWN UINT64_MAX
struct engine_memory {
    uint64_t weights;
    uint64_t kv_cache;
    uint64_t scratch;
    uint64_t device_total; /* GPU memory, or host RAM on the CPU backend */
    uint64_t device_free;
    bool on_gpu;
};
void engine_memory(struct engine *e, struct engine_memory *out);

/* Tokenizes TEXT as user text (special-token spellings stay text). Returns a
 * malloc'd array of *N ids, or NULL when out of memory or the engine has no
 * tokenizer (a synthetic model). */
int32_t *engine_tokenize(const struct engine *e, const char *text, bool add_bos, int64_t *n);
/* The text of token ID, as decoding would give it. */
size_t engine_token_piece(const struct engine *e, int32_t id, char *buf, size_t cap);

/* Raw access for benchmarks and tests: runs tokens through the model at
 * positions POS.. and writes the last token's logits (n_vocab) to LOGITS, or
 * every token's (n x n_vocab) when ALL_LOGITS. Does not touch the conversation
 * bookkeeping (call engine_reset afterwards). Returns 0 or -1 with ERR. */
int engine_forward(struct engine *e, const int32_t *tokens, int32_t n, int32_t pos,
                   float *logits, bool all_logits, char *err, size_t errlen);

/* Bytes one decode step reads at a context of N_PAST earlier tokens: the
 * weights (model bytes_per_token) plus the K and V of every position each
 * layer attends to (sliding-window layers no more than their window), at the
 * backend's KV cache element size. The bandwidth roofline's numerator. */
uint64_t engine_bytes_per_token(struct engine *e, int32_t n_past);

/* kvchat synth: builds the synthetic model SPEC ("SHAPE:TYPE") and writes it
 * to PATH as a GGUF file other engines load too, with the tokenizer copied
 * from the model file TOKENIZER_FROM (NULL: none). The tokenizer must have
 * the shape's vocabulary size (the message names the shapes that would
 * fit). Returns 0 or -1 with ERR. */
int engine_write_synthetic(const char *spec, const char *tokenizer_from, const char *path,
                           char *err, size_t errlen);

#endif
