/* options.h - kvchat's settings, as gathered from the config file and the
 * command line (the command line wins), and handed to the headless mode, the
 * benchmark and the UI.
 */
#ifndef KVCHAT_OPTIONS_H
#define KVCHAT_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

enum kv_mode {
    KV_MODE_UI,       /* full-screen chat */
    KV_MODE_PROMPT,   /* -p: answer one message on stdout */
    KV_MODE_TOKENIZE, /* kvchat tokenize */
    KV_MODE_BENCH,    /* kvchat bench */
    KV_MODE_SYNTH,    /* kvchat synth: write a synthetic model to a GGUF file */
    KV_MODE_PERPLEXITY, /* kvchat perplexity: the model's perplexity on a text file */
    KV_MODE_LIST,     /* --list-sessions */
    KV_MODE_MODELS,   /* --list-models: the models folder, or a server's models */
    KV_MODE_SEARCH,   /* --search */
    KV_MODE_EXPORT,   /* --export */
    KV_MODE_DELETE,   /* --delete */
    KV_MODE_REPAIR,   /* --repair: mend a damaged history database */
    KV_MODE_HELP,
    KV_MODE_VERSION
};

#define KV_RESUME_NONE 0
#define KV_RESUME_LATEST (-1)

struct kv_options {
    enum kv_mode mode;
    /* model and engine */
    char model[4096];         /* path; "" = the default model */
    enum engine_backend backend;
    int32_t ctx_size;         /* 0 = engine default */
    int32_t threads;          /* 0 = all cores */
    char chat_template[32];   /* "" = detect; "none" = raw completion (--raw) */
    enum engine_kv_type kv_type; /* --kv-type, config kv_type; AUTO = the engine's (f16) */
    /* --think on|off, config think: a reasoning model's thinking where the
     * template has a switch (engine_params.think); DEFAULT leaves the
     * template's own. Elsewhere kvchat says once that there is no switch. */
    enum engine_think think;
    char synthetic[64];       /* --synthetic SHAPE:TYPE (bench), or synth's SHAPE:TYPE; "" = none */
    /* a server instead (the remote engine): then the fields above are not used */
    char server[2048];        /* --server URL ending in /v1; "" = run the model here */
    char server_model[256];   /* the model's name there (-m with a server); "" = its first */
    char api_key_env[128];    /* the API key's variable; "" = KVCHAT_API_KEY, then
                                 OPENAI_API_KEY, whichever is set (the key itself is never
                                 an option: it would show in ps) */
    bool insecure;            /* https without checking the certificate */
    int32_t connect_timeout_s; /* 0 = the engine's default (10 s) */
    int32_t idle_timeout_s;    /* 0 = the engine's default (300 s) */
    /* conversation */
    char system[8192];        /* "" = the template's default */
    bool system_set;          /* --system given (even empty) */
    struct engine_sampling sampling;
    bool seed_set;            /* --seed given; else a random seed per run */
    bool sampling_set;        /* a sampling option was given (a resumed session's
                                 parameters are restored only when none was) */
    int32_t max_tokens;       /* 0 = until the context is full */
    /* history */
    char db[4096];            /* "" = default path */
    bool no_history;
    int64_t resume;           /* KV_RESUME_NONE, KV_RESUME_LATEST or a session id */
    /* UI */
    char theme[64];           /* "" = default theme */
    bool timestamps;          /* the chat screen shows the messages' times (config timestamps) */
    double mem_bandwidth_gbs; /* roofline meter's device bandwidth, GB/s (config, --mem-bandwidth);
                               * 0 = NVML's peak on CUDA, measured on the CPU */
    char monitor_log[4096];   /* --monitor-log, config monitor_log: a reading a second into this
                               * .csv or .jsonl file (app/monitor.h); "" = none */
    /* modes' arguments */
    const char *prompt;       /* -p TEXT ("-" = stdin); borrowed from argv */
    const char *text;         /* tokenize TEXT / --search TEXT; borrowed */
    int64_t session_id;       /* --export / --delete */
    char format[8];           /* --export format: "md" or "json" */
    const char *output;       /* -o FILE; borrowed */
    bool verbose;
    bool show_ids;            /* -p --show-ids: the reply's token ids on stderr */
    enum kv_mode help_mode;   /* -h: the subcommand it was given after (usage of that one) */
    const char *text_file;    /* perplexity -f FILE; borrowed */
    bool no_bos;              /* tokenize --no-bos */
    bool pieces;              /* tokenize --pieces */
    bool json;                /* bench --json */
    int32_t bench_depth;      /* bench --depth: context of the second decode figure, tokens;
                                 0 = skip it; default 4096 */
    const char *tokenizer_from; /* synth --tokenizer-from MODEL; borrowed */
};

#endif
