/* cli.c - parsing kvchat's command line.
 *
 * Numbers are parsed strictly (the whole argument, in range), so a typo is a
 * usage error that names the option rather than a silent default.
 */
#include "cli.h"

#include "config.h"
#include "xdg.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"
/* --kv-type's help, one text for every mode that takes it */
#define KV_TYPE_HELP                                                                               \
    "      --kv-type T         KV cache element type: f16 (default), f32 (exact) or\n"             \
    "                          q8_0 (17/32 of f16's memory; lossy)\n"

void kv_options_init(struct kv_options *o)
{
    memset(o, 0, sizeof *o);
    o->mode = KV_MODE_UI;
    o->backend = ENGINE_BACKEND_AUTO;
    o->sampling = engine_sampling_defaults();
    o->resume = KV_RESUME_NONE;
    snprintf(o->format, sizeof o->format, "md");
    o->bench_depth = 4096;
}

void kv_models_dir(char *buf, size_t cap)
{
    char dir[4000];
    if (kv_xdg_dir(KV_XDG_DATA, dir, sizeof dir) != 0)
        snprintf(dir, sizeof dir, "./.local/share/kvchat"); /* no HOME: relative, as before */
    snprintf(buf, cap, "%s/models", dir);
}

void kv_default_model_path(char *buf, size_t cap)
{
    char dir[4096];
    kv_models_dir(dir, sizeof dir);
    snprintf(buf, cap, "%s/%s", dir, DEFAULT_MODEL_FILE);
}

void kv_model_path(const struct kv_options *o, char *buf, size_t cap)
{
    if (o->model[0])
        snprintf(buf, cap, "%s", o->model);
    else
        kv_default_model_path(buf, cap);
}

int kv_check_option_text(const struct kv_options *o, char *err, size_t errlen)
{
    if (o->system_set && !kv_check_text("the system prompt", o->system, err, errlen))
        return 0;
    if (o->mode == KV_MODE_SEARCH && !kv_check_text("the search text", o->text, err, errlen))
        return 0;
    return 1;
}

uint64_t kv_random_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    }
    return s;
}

/* Each subcommand's own usage (kvchat SUB --help), one row each. */
static const char *const SUB_USAGE[] = {
    [KV_MODE_TOKENIZE] =
        "usage: kvchat tokenize [-m MODEL] [--no-bos] [--pieces] TEXT|-\n"
        "\n"
        "Prints the token ids of TEXT (- reads standard input) as the model's tokenizer\n"
        "splits it, with the BOS token the model adds.\n"
        "  -m, --model FILE        GGUF model (default: the SmolLM2-135M-Instruct Q4_1 model)\n"
        "      --no-bos            leave out the BOS token\n"
        "      --pieces            print each token's text beside its id\n",
    [KV_MODE_BENCH] =
        "usage: kvchat bench [-m MODEL | --synthetic SHAPE:TYPE] [--backend B] [-t N]\n"
        "                    [-c N] [--kv-type T] [--depth N] [--json]\n"
        "\n"
        "Prefill and decode throughput against the memory-bandwidth roofline.\n"
        "  -m, --model FILE        GGUF model (default: the SmolLM2-135M-Instruct Q4_1 model)\n"
        "      --synthetic S:T     a synthetic model built in memory, e.g. llama-1b:q8_0\n"
        "      --backend B         auto (default), cpu or cuda\n"
        "  -t, --threads N         CPU threads (default: all cores)\n"
        "  -c, --ctx-size N        context size in tokens\n"
        KV_TYPE_HELP
        "      --depth N           context of the second decode figure (default 4096, 0 = skip)\n"
        "      --mem-bandwidth GBS the device's bandwidth instead of measuring it\n"
        "      --json              one JSON object on standard output\n",
    [KV_MODE_SYNTH] =
        "usage: kvchat synth SHAPE:TYPE -o FILE.gguf [--tokenizer-from MODEL]\n"
        "\n"
        "Writes a synthetic model of a real shape (random weights) as a GGUF file.\n"
        "  -o FILE                 where to write it\n"
        "      --tokenizer-from M  copy the tokenizer of model file M (its vocabulary\n"
        "                          must have the shape's size)\n",
    [KV_MODE_PERPLEXITY] =
        "usage: kvchat perplexity [-m MODEL] -f TEXT [-c N] [--json]\n"
        "\n"
        "The model's perplexity on the text file TEXT, as llama-perplexity computes it:\n"
        "the text is tokenised whole and cut into chunks of N tokens (each starting with\n"
        "BOS when the model adds one); every chunk is run from scratch and only its second\n"
        "half is scored. Running values per chunk go to standard error, the final\n"
        "estimate \"PPL = X +/- Y\" (its standard error) to standard output.\n"
        "  -m, --model FILE        GGUF model (default: the SmolLM2-135M-Instruct Q4_1 model)\n"
        "  -f, --file TEXT         the text to score\n"
        "  -c, --ctx-size N        tokens per chunk (default 512)\n"
        "      --backend B         auto (default), cpu or cuda\n"
        "  -t, --threads N         CPU threads (default: all cores)\n"
        KV_TYPE_HELP
        "      --json              the result as one JSON object on standard output\n",
};

void kv_print_mode_usage(FILE *out, enum kv_mode mode)
{
    if ((size_t)mode < sizeof SUB_USAGE / sizeof *SUB_USAGE && SUB_USAGE[mode])
        fputs(SUB_USAGE[mode], out);
    else
        kv_print_usage(out);
}

void kv_print_usage(FILE *out)
{
    fputs("usage: kvchat [OPTIONS]                 chat in the terminal\n"
          "       kvchat -p TEXT|- [OPTIONS]       answer one message on stdout\n"
          "       kvchat tokenize [-m MODEL] [--no-bos] [--pieces] TEXT|-\n"
          "       kvchat bench [-m MODEL | --synthetic SHAPE:TYPE] [--backend B] [-t N]\n"
          "                    [--depth N] [--json]\n"
          "       kvchat synth SHAPE:TYPE -o FILE.gguf [--tokenizer-from MODEL]\n"
          "       kvchat perplexity [-m MODEL] -f TEXT [-c N] [--json]\n"
          "       kvchat --list-sessions | --search TEXT | --export ID [--format md|json] [-o FILE]\n"
          "       kvchat --delete ID | --repair [--db FILE]\n"
          "       kvchat --list-models [--server URL]\n"
          "\n"
          "model and engine:\n"
          "  -m, --model FILE        GGUF model (default: the SmolLM2-135M-Instruct Q4_1 model);\n"
          "                          with --server, the model's name there (default: its first)\n"
          "      --server URL        chat with an OpenAI-compatible server (vLLM, SGLang,\n"
          "                          llama-server, Ollama), e.g. http://gpu-box:8000/v1\n"
          "      --api-key-env VAR   the variable holding its API key (default: KVCHAT_API_KEY,\n"
          "                          else OPENAI_API_KEY, whichever is set)\n"
          "      --insecure          https without checking the server's certificate\n"
          "      --backend B         auto (default), cpu or cuda\n"
          "  -c, --ctx-size N        context size in tokens (default: min(model's, 4096))\n"
          "  -t, --threads N         CPU threads (default: all cores)\n"
          "      --chat-template T   chatml, llama3, llama2, mistral, gemma, deepseek-r1, gpt-oss\n"
          "                          or none\n"
          "                          (default: detect)\n"
          "      --raw               no chat template (--chat-template none): the prompt is\n"
          "                          tokenised as given and the reply continues it\n"
          KV_TYPE_HELP
          "      --think on|off      a reasoning model's thinking, where its template has a\n"
          "                          switch (default: the template's own)\n"
          "      --list-models       list the models folder (file, size, architecture,\n"
          "                          quantisation, context, parameters), or the server's models\n"
          "conversation:\n"
          "  -p, --prompt TEXT       answer TEXT (- reads standard input) and exit\n"
          "      --system TEXT       system prompt (default: the template's own, if any)\n"
          "  -n, --max-tokens N      reply length limit (default: until the context is full)\n"
          "      --temp X            temperature, 0 = greedy (default 0.7)\n"
          "      --top-k N           keep the N likeliest tokens, 0 = off (default 40)\n"
          "      --top-p X           nucleus sampling, 1 = off (default 0.95)\n"
          "      --min-p X           drop tokens below X times the top probability (default 0.05)\n"
          "      --repeat-penalty X  penalise repeats of the last 64 tokens, 1 = off (default 1.1)\n"
          "      --seed N            random seed (default: a new one each run)\n"
          "history:\n"
          "      --db FILE           history database (default: $XDG_DATA_HOME/kvchat/history.db)\n"
          "      --no-history        do not save this conversation\n"
          "      --resume[=ID]       continue the latest session, or session ID\n"
          "      --list-sessions     list saved sessions, newest first\n"
          "      --search TEXT       search all saved messages\n"
          "      --export ID         print session ID (--format md|json, -o FILE)\n"
          "      --delete ID         delete session ID\n"
          "      --repair            mend a damaged history database (the damaged file is kept)\n"
          "interface:\n"
          "      --theme NAME        colour theme (dark, light, high-contrast or your own)\n"
          "      --mem-bandwidth GBS memory bandwidth in GB/s for the roofline meter\n"
          "                          (default: NVML's peak on CUDA, measured on the CPU)\n"
          "      --monitor-log FILE  memory and speed once a second into FILE (.csv or .jsonl)\n"
          "  -v, --verbose           print statistics to standard error\n"
          "      --show-ids          with -p: the reply's token ids on standard error\n"
          "  -h, --help              this text\n"
          "      --version           print the version\n"
          "\n"
          "Each subcommand has its own --help (kvchat bench --help).\n"
          "See kvchat(1) for commands, keys and files.\n",
          out);
}

static int usage_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return 2;
}

static int parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out,
                     char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return usage_err(err, errlen, "%s: '%s' is not a whole number", opt, s);
    if (v < lo || v > hi)
        return usage_err(err, errlen, "%s: %lld is out of range (%lld..%lld)", opt, v,
                         (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

static int parse_i32(const char *opt, const char *s, int32_t lo, int32_t hi, int32_t *out,
                     char *err, size_t errlen)
{
    int64_t v;
    int rc = parse_i64(opt, s, lo, hi, &v, err, errlen);
    if (rc == 0)
        *out = (int32_t)v;
    return rc;
}

static int parse_f(const char *opt, const char *s, double lo, double hi, float *out, char *err,
                   size_t errlen)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return usage_err(err, errlen, "%s: '%s' is not a number", opt, s);
    if (v < lo || v > hi)
        return usage_err(err, errlen, "%s: %g is out of range (%g..%g)", opt, v, lo, hi);
    *out = (float)v;
    return 0;
}

static int copy_opt(const char *opt, char *dst, size_t cap, const char *s, char *err,
                    size_t errlen)
{
    if (strlen(s) >= cap)
        return usage_err(err, errlen, "%s: value is too long (at most %zu bytes)", opt, cap - 1);
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

enum {
    OPT_BACKEND = 256,
    OPT_CHAT_TEMPLATE,
    OPT_SYSTEM,
    OPT_TEMP,
    OPT_TOP_K,
    OPT_TOP_P,
    OPT_MIN_P,
    OPT_REPEAT,
    OPT_SEED,
    OPT_DB,
    OPT_NO_HISTORY,
    OPT_RESUME,
    OPT_LIST,
    OPT_SEARCH,
    OPT_EXPORT,
    OPT_FORMAT,
    OPT_DELETE,
    OPT_REPAIR,
    OPT_THEME,
    OPT_VERSION,
    OPT_NO_BOS,
    OPT_PIECES,
    OPT_JSON,
    OPT_MEM_BW,
    OPT_MONITOR_LOG,
    OPT_SYNTHETIC,
    OPT_DEPTH,
    OPT_TOKENIZER_FROM,
    OPT_SERVER,
    OPT_API_KEY_ENV,
    OPT_INSECURE,
    OPT_RAW,
    OPT_KV_TYPE,
    OPT_SHOW_IDS,
    OPT_LIST_MODELS,
    OPT_THINK,
};

/* Options that pick how a model runs here, and why a server makes them moot. */
static const struct {
    int c;
    const char *name, *why;
} LOCAL_ONLY[] = {
    {'c', "--ctx-size", "the server sets the context"},
    {'t', "--threads", "the server has its own"},
    {OPT_BACKEND, "--backend", "the model runs on the server"},
    {OPT_CHAT_TEMPLATE, "--chat-template", "the server applies its own"},
    {OPT_RAW, "--raw", "the server applies its own template"},
    {OPT_KV_TYPE, "--kv-type", "the server has its own cache"},
};

int kv_parse_args(struct kv_options *o, int argc, char **argv, char *err, size_t errlen)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"ctx-size", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"chat-template", required_argument, NULL, OPT_CHAT_TEMPLATE},
        {"raw", no_argument, NULL, OPT_RAW},
        {"kv-type", required_argument, NULL, OPT_KV_TYPE},
        {"file", required_argument, NULL, 'f'},
        {"prompt", required_argument, NULL, 'p'},
        {"system", required_argument, NULL, OPT_SYSTEM},
        {"max-tokens", required_argument, NULL, 'n'},
        {"temp", required_argument, NULL, OPT_TEMP},
        {"top-k", required_argument, NULL, OPT_TOP_K},
        {"top-p", required_argument, NULL, OPT_TOP_P},
        {"min-p", required_argument, NULL, OPT_MIN_P},
        {"repeat-penalty", required_argument, NULL, OPT_REPEAT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"db", required_argument, NULL, OPT_DB},
        {"no-history", no_argument, NULL, OPT_NO_HISTORY},
        {"resume", optional_argument, NULL, OPT_RESUME},
        {"list-sessions", no_argument, NULL, OPT_LIST},
        {"search", required_argument, NULL, OPT_SEARCH},
        {"export", required_argument, NULL, OPT_EXPORT},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"output", required_argument, NULL, 'o'},
        {"delete", required_argument, NULL, OPT_DELETE},
        {"repair", no_argument, NULL, OPT_REPAIR},
        {"theme", required_argument, NULL, OPT_THEME},
        {"verbose", no_argument, NULL, 'v'},
        {"show-ids", no_argument, NULL, OPT_SHOW_IDS},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {"no-bos", no_argument, NULL, OPT_NO_BOS},
        {"pieces", no_argument, NULL, OPT_PIECES},
        {"json", no_argument, NULL, OPT_JSON},
        {"mem-bandwidth", required_argument, NULL, OPT_MEM_BW},
        {"monitor-log", required_argument, NULL, OPT_MONITOR_LOG},
        {"synthetic", required_argument, NULL, OPT_SYNTHETIC},
        {"depth", required_argument, NULL, OPT_DEPTH},
        {"tokenizer-from", required_argument, NULL, OPT_TOKENIZER_FROM},
        {"server", required_argument, NULL, OPT_SERVER},
        {"api-key-env", required_argument, NULL, OPT_API_KEY_ENV},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"list-models", no_argument, NULL, OPT_LIST_MODELS},
        {"think", required_argument, NULL, OPT_THINK},
        {NULL, 0, NULL, 0},
    };

    /* A subcommand comes first: kvchat tokenize ..., kvchat bench ... */
    int first = 1;
    enum kv_mode sub = KV_MODE_UI;
    if (argc > 1 && strcmp(argv[1], "tokenize") == 0)
        sub = KV_MODE_TOKENIZE;
    else if (argc > 1 && strcmp(argv[1], "bench") == 0)
        sub = KV_MODE_BENCH;
    else if (argc > 1 && strcmp(argv[1], "synth") == 0)
        sub = KV_MODE_SYNTH;
    else if (argc > 1 && strcmp(argv[1], "perplexity") == 0)
        sub = KV_MODE_PERPLEXITY;
    if (sub != KV_MODE_UI) {
        o->mode = sub;
        first = 2;
    }

    int rc = 0;
    optind = first;
    opterr = 0;
    int c;
    const char *modes_seen = NULL;
    /* given here rather than in the config file: those that clash with a
     * server are errors only when given here */
    bool model_cli = false, server_cli = false, remote_cli = false;
    size_t local_opt = SIZE_MAX; /* a row of LOCAL_ONLY given here */
#define SET_MODE(m, name)                                                                       \
    do {                                                                                        \
        if (modes_seen && strcmp(modes_seen, name) != 0)                                        \
            return usage_err(err, errlen, "%s cannot be combined with %s", name, modes_seen);   \
        modes_seen = name;                                                                      \
        o->mode = (m);                                                                          \
    } while (0)

    while ((c = getopt_long(argc, argv, ":m:c:t:p:n:o:f:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            rc = copy_opt("--model", o->model, sizeof o->model, optarg, err, errlen);
            model_cli = true;
            break;
        case OPT_SERVER:
            rc = copy_opt("--server", o->server, sizeof o->server, optarg, err, errlen);
            server_cli = true;
            break;
        case OPT_API_KEY_ENV:
            rc = copy_opt("--api-key-env", o->api_key_env, sizeof o->api_key_env, optarg, err,
                          errlen);
            remote_cli = true;
            break;
        case OPT_INSECURE:
            o->insecure = true;
            remote_cli = true;
            break;
        case OPT_BACKEND:
            if (!engine_backend_from_name(optarg, &o->backend))
                return usage_err(err, errlen, "--backend: '%s' is not one of auto, cpu, cuda",
                                 optarg);
            break;
        case 'c': rc = parse_i32("--ctx-size", optarg, 16, 1 << 20, &o->ctx_size, err, errlen); break;
        case 't': rc = parse_i32("--threads", optarg, 1, 1024, &o->threads, err, errlen); break;
        case OPT_CHAT_TEMPLATE: {
            if (!engine_chat_template_known(optarg))
                return usage_err(err, errlen, "--chat-template: '%s' is not one of %s", optarg,
                                 engine_chat_template_names());
            rc = copy_opt("--chat-template", o->chat_template, sizeof o->chat_template, optarg,
                          err, errlen);
            break;
        }
        case OPT_RAW: snprintf(o->chat_template, sizeof o->chat_template, "none"); break;
        case OPT_THINK:
            if (!kv_think_from_name(optarg, &o->think))
                return usage_err(err, errlen, "--think: '%s' is not on or off", optarg);
            break;
        case OPT_KV_TYPE:
            if (!engine_kv_type_from_name(optarg, &o->kv_type) || o->kv_type == ENGINE_KV_AUTO)
                return usage_err(err, errlen, "--kv-type: '%s' is not one of f16, f32, q8_0",
                                 optarg);
            break;
        case 'f':
            if (sub != KV_MODE_PERPLEXITY)
                return usage_err(err, errlen, "-f belongs to 'kvchat perplexity'");
            o->text_file = optarg;
            break;
        case 'p':
            if (sub != KV_MODE_UI)
                return usage_err(err, errlen, "-p cannot be used with '%s'", argv[1]);
            SET_MODE(KV_MODE_PROMPT, "-p");
            o->prompt = optarg;
            break;
        case OPT_SYSTEM:
            rc = copy_opt("--system", o->system, sizeof o->system, optarg, err, errlen);
            o->system_set = true;
            break;
        case 'n': rc = parse_i32("--max-tokens", optarg, 1, 1 << 20, &o->max_tokens, err, errlen); break;
        case OPT_TEMP: rc = parse_f("--temp", optarg, 0, 100, &o->sampling.temperature, err, errlen); break;
        case OPT_TOP_K: rc = parse_i32("--top-k", optarg, 0, 1 << 24, &o->sampling.top_k, err, errlen); break;
        case OPT_TOP_P: rc = parse_f("--top-p", optarg, 0, 1, &o->sampling.top_p, err, errlen); break;
        case OPT_MIN_P: rc = parse_f("--min-p", optarg, 0, 1, &o->sampling.min_p, err, errlen); break;
        case OPT_REPEAT:
            rc = parse_f("--repeat-penalty", optarg, 0.01, 100, &o->sampling.repeat_penalty, err,
                         errlen);
            break;
        case OPT_SEED: {
            int64_t v;
            rc = parse_i64("--seed", optarg, 0, INT64_MAX, &v, err, errlen);
            o->sampling.seed = (uint64_t)v;
            o->seed_set = true;
            break;
        }
        case OPT_DB: rc = copy_opt("--db", o->db, sizeof o->db, optarg, err, errlen); break;
        case OPT_NO_HISTORY: o->no_history = true; break;
        case OPT_RESUME:
            if (optarg) {
                rc = parse_i64("--resume", optarg, 1, INT64_MAX, &o->resume, err, errlen);
            } else if (optind < argc && argv[optind][0] && strspn(argv[optind], "0123456789") == strlen(argv[optind])) {
                /* "--resume 12": a following word of digits only is the ID
                 * (a prompt is never digits alone in practice; -p TEXT is) */
                rc = parse_i64("--resume", argv[optind++], 1, INT64_MAX, &o->resume, err, errlen);
            } else {
                o->resume = KV_RESUME_LATEST;
            }
            break;
        case OPT_LIST: SET_MODE(KV_MODE_LIST, "--list-sessions"); break;
        case OPT_LIST_MODELS:
            if (sub != KV_MODE_UI)
                return usage_err(err, errlen, "--list-models cannot be used with '%s'", argv[1]);
            SET_MODE(KV_MODE_MODELS, "--list-models");
            break;
        case OPT_SEARCH:
            SET_MODE(KV_MODE_SEARCH, "--search");
            o->text = optarg;
            break;
        case OPT_EXPORT:
            SET_MODE(KV_MODE_EXPORT, "--export");
            rc = parse_i64("--export", optarg, 1, INT64_MAX, &o->session_id, err, errlen);
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "md") != 0 && strcmp(optarg, "json") != 0)
                return usage_err(err, errlen, "--format: '%s' is not md or json", optarg);
            snprintf(o->format, sizeof o->format, "%s", optarg);
            break;
        case 'o': o->output = optarg; break;
        case OPT_DELETE:
            SET_MODE(KV_MODE_DELETE, "--delete");
            rc = parse_i64("--delete", optarg, 1, INT64_MAX, &o->session_id, err, errlen);
            break;
        case OPT_REPAIR: SET_MODE(KV_MODE_REPAIR, "--repair"); break;
        case OPT_THEME: rc = copy_opt("--theme", o->theme, sizeof o->theme, optarg, err, errlen); break;
        case 'v': o->verbose = true; break;
        case OPT_SHOW_IDS: o->show_ids = true; break;
        case 'h':
            o->mode = KV_MODE_HELP;
            o->help_mode = sub;
            return 0;
        case OPT_VERSION: o->mode = KV_MODE_VERSION; return 0;
        case OPT_NO_BOS: o->no_bos = true; break;
        case OPT_PIECES: o->pieces = true; break;
        case OPT_JSON: o->json = true; break;
        case OPT_MEM_BW: {
            float gbs;
            if (!(rc = parse_f("--mem-bandwidth", optarg, 0, 1e6, &gbs, err, errlen)))
                o->mem_bandwidth_gbs = gbs; /* 0: back to NVML or measuring */
            break;
        }
        case OPT_MONITOR_LOG:
            rc = copy_opt("--monitor-log", o->monitor_log, sizeof o->monitor_log, optarg, err, errlen);
            break;
        case OPT_SYNTHETIC:
            rc = copy_opt("--synthetic", o->synthetic, sizeof o->synthetic, optarg, err, errlen);
            break;
        case OPT_DEPTH: rc = parse_i32("--depth", optarg, 0, 1 << 20, &o->bench_depth, err, errlen); break;
        case OPT_TOKENIZER_FROM: o->tokenizer_from = optarg; break;
        case ':': return usage_err(err, errlen, "%s needs a value", argv[optind - 1]);
        default: return usage_err(err, errlen, "unknown option '%s' (see kvchat --help)", argv[optind - 1]);
        }
        if (rc)
            return rc;
        for (size_t i = 0; i < sizeof LOCAL_ONLY / sizeof *LOCAL_ONLY; i++)
            if (c == LOCAL_ONLY[i].c && !(c == OPT_BACKEND && o->backend == ENGINE_BACKEND_AUTO))
                local_opt = i;
        if (c == OPT_TEMP || c == OPT_TOP_K || c == OPT_TOP_P || c == OPT_MIN_P ||
            c == OPT_REPEAT || c == OPT_SEED || c == 'n')
            o->sampling_set = true;
    }
#undef SET_MODE

    /* Options that only make sense in one mode. */
    if ((o->no_bos || o->pieces) && o->mode != KV_MODE_TOKENIZE)
        return usage_err(err, errlen, "--no-bos and --pieces belong to 'kvchat tokenize'");
    if (o->json && o->mode != KV_MODE_BENCH && o->mode != KV_MODE_PERPLEXITY)
        return usage_err(err, errlen, "--json belongs to 'kvchat bench' and 'kvchat perplexity'");
    if (o->show_ids && o->mode != KV_MODE_PROMPT)
        return usage_err(err, errlen, "--show-ids belongs to -p");
    if (o->output && o->mode != KV_MODE_EXPORT && o->mode != KV_MODE_SYNTH)
        return usage_err(err, errlen, "-o belongs to --export and 'kvchat synth'");
    if (o->synthetic[0] && o->mode != KV_MODE_BENCH)
        return usage_err(err, errlen, "--synthetic belongs to 'kvchat bench' (a synthetic model "
                                      "has no tokenizer; 'kvchat synth' writes one that has)");
    if (o->synthetic[0] && o->model[0])
        return usage_err(err, errlen, "bench: give -m MODEL or --synthetic SHAPE:TYPE, not both");
    if (o->bench_depth != 4096 && o->mode != KV_MODE_BENCH)
        return usage_err(err, errlen, "--depth belongs to 'kvchat bench'");
    if (o->tokenizer_from && o->mode != KV_MODE_SYNTH)
        return usage_err(err, errlen, "--tokenizer-from belongs to 'kvchat synth'");

    /* A server: the modes that need a model file of their own refuse one named
     * here and ignore one from the config file. */
    bool needs_file = o->mode == KV_MODE_TOKENIZE || o->mode == KV_MODE_BENCH ||
                      o->mode == KV_MODE_SYNTH || o->mode == KV_MODE_PERPLEXITY;
    if (o->server[0] && needs_file) {
        if (server_cli)
            return usage_err(err, errlen, "--server: '%s' works on a model file, not a server",
                             argv[1]);
        o->server[0] = 0;
    }
    if (o->server[0]) {
        if (local_opt != SIZE_MAX)
            return usage_err(err, errlen, "%s does not apply with --server: %s",
                             LOCAL_ONLY[local_opt].name, LOCAL_ONLY[local_opt].why);
        if (model_cli)
            rc = copy_opt("--model (a server's model name)", o->server_model,
                          sizeof o->server_model, o->model, err, errlen);
        if (rc)
            return rc;
    } else if (remote_cli) {
        return usage_err(err, errlen, "--api-key-env and --insecure belong to --server");
    }
    int rest = argc - optind;
    if (o->mode == KV_MODE_TOKENIZE) {
        if (rest != 1)
            return usage_err(err, errlen, "usage: kvchat tokenize [-m MODEL] [--no-bos] [--pieces] TEXT|-");
        o->text = argv[optind];
    } else if (o->mode == KV_MODE_SYNTH) {
        if (rest != 1 || !o->output)
            return usage_err(err, errlen,
                             "usage: kvchat synth SHAPE:TYPE -o FILE.gguf [--tokenizer-from MODEL]");
        rc = copy_opt("synth", o->synthetic, sizeof o->synthetic, argv[optind], err, errlen);
        if (rc)
            return rc;
    } else if (o->mode == KV_MODE_PERPLEXITY) {
        if (rest != 0 || !o->text_file)
            return usage_err(err, errlen, "usage: kvchat perplexity [-m MODEL] -f TEXT [-c N]");
    } else if (rest > 0) {
        return usage_err(err, errlen, "unexpected argument '%s' (quote a prompt: -p \"...\")",
                         argv[optind]);
    }
    return 0;
}
