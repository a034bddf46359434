/* engine.h - the one interface the front-ends (app/, tui/) use to chat with a
 * model. It speaks in turns and text: messages in, pieces of the reply out,
 * a stop reason, and readings for the meters (stats, memory). Nothing here
 * names a tensor, a token template or a compute backend, so the same
 * interface can be implemented by the local engine (backend/engine/local.c:
 * a model file run on the CPU or CUDA backend) and by an engine that talks to
 * a remote server.
 *
 * An engine keeps the conversation: each engine_chat call appends a user
 * message and the reply. A local engine prefills only the tokens its KV cache
 * does not already hold; when the context is full the oldest turns are
 * dropped (never the system prompt) and the caller told.
 *
 * Rules every function follows:
 * - Ownership: engine_new returns an owned engine, engine_free(NULL) is a
 *   no-op. Strings passed in are borrowed for the call; strings handed out
 *   through engine_piece_fn are valid only during the callback.
 * - Errors: a function that can fail returns 0 / non-NULL on success and -1 /
 *   NULL with a one-line message in ERR (ERRLEN bytes) that names the thing
 *   and says what to do.
 * - Threads: an engine is used by one thread at a time, except engine_cancel,
 *   which any thread may call at any moment (honoured within one token), and
 *   engine_stats and engine_memory, which copy a snapshot under a lock so
 *   another thread can read them while a turn runs. engine_info is immutable
 *   after engine_new.
 * - Unknown values: a reading the engine cannot know is ENGINE_UNKNOWN (sizes)
 *   or negative (rates, times), never 0.
 *
 * Benchmarks, tests and `kvchat synth` need raw access below the turn level:
 * that is engine_tools.h, not this header.
 */
#ifndef KVCHAT_ENGINE_H
#define KVCHAT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- choosing where the model runs ---- */

enum engine_backend { ENGINE_BACKEND_AUTO, ENGINE_BACKEND_CPU, ENGINE_BACKEND_CUDA };

const char *engine_backend_name(enum engine_backend b); /* "auto", "cpu", "cuda" */
bool engine_backend_from_name(const char *name, enum engine_backend *out);

/* Chat template names accepted by engine_params.chat_template. */
bool engine_chat_template_known(const char *name);
const char *engine_chat_template_names(void); /* "chatml, llama3, ..." for messages */

/* How the KV cache stores keys and values. AUTO is f16, as llama.cpp's
 * default: half the memory and the bytes a long-context token reads, for an
 * error far below the weights' quantisation (scores agree to about 1e-3).
 * F32 keeps the CPU backend's exact path (its reference for the tests).
 * The CUDA backend stores f16 only; Q8_0 is not implemented yet (both refuse
 * with a message rather than silently storing something else). */
enum engine_kv_type { ENGINE_KV_AUTO, ENGINE_KV_F32, ENGINE_KV_F16, ENGINE_KV_Q8_0 };

const char *engine_kv_type_name(enum engine_kv_type t); /* "auto", "f32", "f16", "q8_0" */
bool engine_kv_type_from_name(const char *name, enum engine_kv_type *out);

/* ---- sampling ---- */

/* How the next token is chosen. Order of the chain: repetition penalty, then
 * (temperature 0) greedy argmax, else top-k, temperature, top-p, min-p, and a
 * draw from a generator seeded with SEED, so the same seed repeats a reply. */
struct engine_sampling {
    float temperature;    /* 0 = greedy */
    int32_t top_k;        /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off; applied to the last REPEAT_LAST_N tokens */
    int32_t repeat_last_n;
    uint64_t seed;
};

/* temperature 0.7, top_k 40, top_p 0.95, min_p 0.05, repeat 1.1 over 64, seed 0 */
struct engine_sampling engine_sampling_defaults(void);

/* ---- creating an engine ---- */

/* Called during loading with bytes done of total (for a progress bar). */
typedef void (*engine_progress_fn)(uint64_t done, uint64_t total, void *user);

struct engine_params {
    const char *model_path;
    /* "SHAPE:TYPE" (e.g. "llama-1b:q8_0"): a synthetic model built in memory
     * instead of MODEL_PATH, for benchmarks. It has no tokenizer: engine_chat
     * fails with a message saying so and engine_tokenize returns NULL.
     * NULL or "" = load MODEL_PATH. */
    const char *synthetic;
    enum engine_backend backend;
    int32_t n_ctx;             /* 0 = min(model's training context, 4096) */
    int32_t n_threads;         /* CPU threads; 0 = all cores */
    /* A template name overriding detection, or NULL. "none" is raw
     * completion: no template, the turns' texts are concatenated as they are
     * (control-token spellings stay text) after the model's BOS, and the
     * reply continues the text (the right thing for a base model). */
    const char *chat_template;
    enum engine_kv_type kv_type; /* ENGINE_KV_AUTO (0) = f16 */
    /* Prefix of /proc and /sys for reading the memory there is (tests fake
     * them); NULL = the real ones. */
    const char *mem_root;
    /* Thinking where the template has a switch (engine_info.think_switch):
     * ENGINE_THINK_DEFAULT (0) leaves the template's default (on). Elsewhere
     * ON and OFF are ignored; a front-end says the template has no switch. */
    enum engine_think { ENGINE_THINK_DEFAULT, ENGINE_THINK_ON, ENGINE_THINK_OFF } think;
    engine_progress_fn progress;
    void *progress_user;

    /* A remote engine: SERVER set (not NULL or "") means the model runs on an
     * OpenAI-compatible server (vLLM, SGLang, llama-server, Ollama) and the
     * fields above are ignored. Its info says backend "remote", arch "remote",
     * template "server", device = the server's host, model_path its origin
     * (scheme://host:port), and n_ctx 0 (info
     * is fixed when engine_new returns, before the server's context can be
     * read): engine_fit_context drops nothing and an overlong conversation
     * is the server's error. engine_memory is all ENGINE_UNKNOWN;
     * engine_tokenize has no tokenizer to use (NULL). In engine_stats,
     * kv_capacity is the server's per-request context once engine_server
     * knows it (else 0) and prefill_tok_s negative (unknown); token counts
     * come from the server's usage report at the end of the reply. What the
     * server itself publishes is in engine_server. */
    const char *server;       /* base URL ending in /v1, e.g. "http://gpu-box:8000/v1" */
    const char *server_model; /* the model's name there; NULL = the first of GET /v1/models */
    /* Name of the environment variable holding the API key, sent as a Bearer
     * token; NULL = none. The key is read from the environment at each
     * request and appears in no info field and no error message. */
    const char *api_key_env;
    bool insecure;             /* https without verifying the server's certificate */
    int32_t connect_timeout_s; /* connecting, TLS included; 0 = 10 s */
    int32_t idle_timeout_s;    /* longest wait between two bytes of an answer; 0 = 300 s */
};

struct engine_params engine_default_params(void);

struct engine_info {
    char model_name[128];
    char model_path[4096];
    char arch[16];
    char backend[16];   /* "cpu" or "cuda" */
    char device[128];   /* CPU model or GPU name */
    char template_name[16]; /* "none" for raw completion */
    /* The model file has no chat template: the format was chosen by
     * architecture (Gemma's for gemma3, else ChatML), which a base model
     * may not follow; a front-end suggests --raw. */
    bool template_guessed;
    char kv_type[8];    /* the KV cache's element type, "f16" or "f32" ("" remote) */
    char backend_note[256]; /* why --backend auto chose what it chose, or "" */
    /* Something the user should see even without -v, or "": the context is
     * longer than the model was trained for (it runs, but past the trained
     * length the replies degrade). Front-ends print it once after loading. */
    char warning[256];
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
    bool no_vocabulary;  /* no tokenizer (synthetic, or a file written without one): bench only */
    /* The template has a switch for a reasoning model's thinking (Qwen3's
     * enable_thinking): engine_params.think and engine_set_think work. */
    bool think_switch;
};

/* Loads the model and chooses where it runs. Under ENGINE_BACKEND_AUTO a GPU
 * that is missing, too small or fails to start means the CPU, with the reason
 * in engine_info()->backend_note. */
struct engine *engine_new(const struct engine_params *p, char *err, size_t errlen);
void engine_free(struct engine *e);
const struct engine_info *engine_info(const struct engine *e);

/* ---- the conversation ---- */

enum engine_role { ENGINE_ROLE_SYSTEM, ENGINE_ROLE_USER, ENGINE_ROLE_ASSISTANT };

struct engine_message {
    enum engine_role role;
    const char *content; /* borrowed, UTF-8 */
    /* A reply's thinking, kept apart from CONTENT (its answer); borrowed,
     * NULL = none. The engine renders it again where the model's template
     * keeps earlier thinking, and leaves it out where the template drops it
     * (Qwen3's, DeepSeek-R1's), as in the turn that produced it. */
    const char *thinking;
};

/* NULL = the template's default. Returns 0, or -1 when out of memory (the
 * previous system prompt stays). */
int engine_set_system(struct engine *e, const char *system);
/* Forgets the conversation (the system prompt stays). */
void engine_reset(struct engine *e);
/* Replaces the conversation with MSGS (system messages set the system prompt);
 * a local engine rebuilds its KV cache lazily at the next turn. Returns 0 or
 * -1 (no memory). */
int engine_load_transcript(struct engine *e, const struct engine_message *msgs, size_t n);
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
 * false to cancel. A remote engine passes a server's separate reasoning text
 * (delta.reasoning_content) in the same stream, between "<think>" and
 * "</think>", so it reads like a reasoning model's own output; the reply text
 * keeps them, and the next request sends the reply without that block. */
typedef bool (*engine_piece_fn)(const char *text, size_t len, void *user);
/* Told when older turns were dropped to fit the context. */
typedef void (*engine_notice_fn)(const char *message, void *user);
/* Told each generated token as it is sampled: its id in the model's
 * vocabulary and its own text (PIECE, LEN bytes, possibly part of a UTF-8
 * character; valid during the call), for comparing a reply token by token
 * with another engine. The end-of-turn token is not told. A remote engine
 * sees text, not ids, and never calls it. */
typedef void (*engine_token_fn)(int32_t id, const char *piece, size_t len, void *user);

struct engine_turn_params {
    struct engine_sampling sampling;
    int32_t max_tokens; /* 0 = until the context is full */
    engine_piece_fn on_piece;
    engine_notice_fn on_notice;
    engine_token_fn on_token; /* NULL = not wanted */
    /* A reasoning model's thinking (a "<think>...</think>" block opening
     * the reply, or gpt-oss's analysis channel) told apart: set, the
     * thinking's text goes here without the tags, and ON_PIECE gets the
     * answer alone (newlines after "</think>" skipped, harmony's channel
     * headers never). NULL = the thinking reaches ON_PIECE as the model
     * wrote it; a harmony reply's as a "<think>...</think>\n\n" block before
     * its answer, its headers never (and REPLY is in that same form).
     * REPLY is the whole text either way (engine_split_thinking parts it). */
    engine_piece_fn on_thinking;
    /* Told while the prompt is read in (prefill): prompt tokens done of the
     * total to read this turn, once with 0 before the first chunk and then
     * after each chunk. NULL = not wanted; a remote engine never calls it. */
    engine_progress_fn on_prefill;
    void *user;
};

/* Parts REPLY (LEN bytes, as engine_chat gives it) into thinking and
 * answer as the streaming split does (on_thinking): *THINK_OFF and
 * *THINK_LEN the text between an opening "<think>" and "</think>", or a
 * harmony reply's analysis message (all the rest while it is still open),
 * *ANSWER_OFF where the answer starts (past a harmony reply's headers, so
 * REPLY + *ANSWER_OFF is the answer alone). False (thinking 0, 0) when there
 * is no thinking. */
bool engine_split_thinking(const char *reply, size_t len, size_t *think_off, size_t *think_len,
                           size_t *answer_off);

/* Turns the template's thinking switch (engine_info.think_switch) on or off
 * from the next turn. Returns 0, or -1 with a message in ERR when the
 * model's template has no switch. */
int engine_set_think(struct engine *e, bool on, char *err, size_t errlen);

/* Runs one turn: appends USER_TEXT, generates the reply, appends it (also when
 * cancelled, with what was generated). REPLY, if non-NULL, receives a malloc'd
 * copy of the reply text (a harmony reply's analysis as a "<think>" block
 * before its answer, as on_thinking says). Returns 0, or -1 with a message in
 * ERR. */
int engine_chat(struct engine *e, const char *user_text, const struct engine_turn_params *tp,
                char **reply, char *err, size_t errlen);

/* Thread-safe: asks the running turn to stop after the current token. */
void engine_cancel(struct engine *e);

/* ---- readings for the meters ---- */

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

/* Thread-safe snapshot of the last (or running) turn's figures. */
void engine_stats(struct engine *e, struct engine_stats *out);

/* Memory in bytes. A field the engine cannot know is ENGINE_UNKNOWN. */
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

/* Where the engine's memory goes, for the memory inspector: the weights as
 * the model file holds them, by tensor type and by group of layers, and the
 * KV cache per layer, reserved against used. Sizes are the file's tensors:
 * a backend that converts weights on upload (CUDA) may hold a different
 * total, which engine_memory's weights field reports; the shares are the
 * same. A remote engine knows none of this: KNOWN is false and the rest 0.
 * Thread-safe like engine_memory (the model is immutable, the KV fill is
 * read under the stats lock). */
#define ENGINE_MAP_TYPES 8   /* tensor types listed; the rest fold into the last row */
#define ENGINE_MAP_GROUPS 16 /* layer groups */
#define ENGINE_MAP_LAYERS 256 /* layers listed one by one (KV); deeper ones are summed into the last */
struct engine_memory_map {
    bool known;
    struct {
        char type[12];  /* "Q4_K", "F32", ...; "other" on the folded last row */
        uint64_t bytes;
    } by_type[ENGINE_MAP_TYPES];   /* largest first */
    int32_t n_types;
    struct {
        int32_t first, last;       /* layers, inclusive */
        uint64_t bytes;
    } groups[ENGINE_MAP_GROUPS];
    int32_t n_groups;
    uint64_t embeddings;           /* token embedding table */
    uint64_t output;               /* output head (0 when tied to the embeddings) and final norm */
    uint64_t weights;              /* all tensors: embeddings + output + the groups */
    int32_t n_layer, n_ctx;
    int32_t kv_tokens;             /* positions the cache holds now */
    int32_t swa_window;            /* tokens a sliding-window layer attends to; 0 = none */
    int32_t n_swa_layers;          /* how many layers slide */
    char kv_type[8];               /* "f16", "f32" */
    /* K and V bytes of one position in one layer at the cache's type, and
     * the elements behind them (for what another --kv-type would take). */
    uint64_t kv_pos_bytes;
    uint64_t kv_pos_elems;
    struct {
        uint64_t reserved;         /* n_ctx positions: every layer reserves the whole context */
        uint64_t used;             /* positions it attends to now: a sliding layer at most its window */
        bool swa;
    } layers[ENGINE_MAP_LAYERS];
};
void engine_memory_map(struct engine *e, struct engine_memory_map *out);

/* The serving side's own figures, as a server publishes them for all its
 * requests (a remote engine: vLLM's and SGLang's GET /metrics, llama-server's
 * GET /metrics and GET /slots, Ollama's GET /api/ps; see
 * backend/remote/README.md). A remote engine samples them in a thread of its
 * own every few seconds, never on the path of a token; a local engine and a
 * server that publishes nothing leave every field unknown: negative, never 0.
 */
struct engine_server {
    double kv_frac;         /* the server's KV cache in use, 0..1 */
    int64_t kv_tokens;      /* tokens in the server's KV cache */
    int32_t n_ctx;          /* the context one request may use */
    int32_t reqs_running;   /* requests being generated */
    int32_t reqs_waiting;   /* requests queued */
    double prefix_hit_rate; /* share of prompt tokens found in the prefix cache, 0..1 */
    int64_t vram_bytes;     /* GPU memory the model holds */
    double age_s;           /* seconds since these figures were read */
    char source[48];        /* where they came from, e.g. "vllm /metrics"; "" = nowhere */
};

/* Thread-safe snapshot of the server's figures (all unknown for a local
 * engine). */
void engine_server(struct engine *e, struct engine_server *out);

/* ---- text ---- */

/* Tokenizes TEXT as user text (special-token spellings stay text). Returns a
 * malloc'd array of *N ids, or NULL when out of memory or the engine has no
 * tokenizer (a synthetic model). */
int32_t *engine_tokenize(const struct engine *e, const char *text, bool add_bos, int64_t *n);
/* The text of token ID, as decoding would give it. */
size_t engine_token_piece(const struct engine *e, int32_t id, char *buf, size_t cap);

/* ---- choosing a model ---- */

/* What a model file says about itself, read from its GGUF metadata and
 * tensor table without loading the weights (for --list-models and /model). */
struct engine_file_info {
    char name[128];      /* general.name, else the file's base name */
    char arch[32];       /* general.architecture, e.g. "llama" */
    char quant[16];      /* the tensor type holding most of the weights, e.g. "Q4_1" */
    uint64_t n_params;   /* elements of all tensors */
    int32_t n_ctx_train; /* {arch}.context_length; 0 = the file does not say */
    uint64_t file_bytes;
};

/* Describes the model file PATH. Returns 0, or -1 with a one-line message
 * naming the file (not a GGUF file, truncated, no architecture). */
int engine_describe_file(const char *path, struct engine_file_info *out, char *err, size_t errlen);

/* The models a server offers (GET {server}/models), in its order: P's server,
 * API key variable, TLS check and connect timeout apply as for chatting.
 * *NAMES is a malloc'd array of *N malloc'd strings (engine_names_free).
 * Returns 0, or -1 with a one-line message that starts with the server's
 * origin. */
int engine_list_server_models(const struct engine_params *p, char ***names, size_t *n, char *err,
                              size_t errlen);
void engine_names_free(char **names, size_t n);

#endif
