/* headless.c - the modes that print and exit: -p (answer one message),
 * tokenize, --list-models, and the history commands (--list-sessions, --search, --export,
 * --delete).
 *
 * Output contract: the reply (or the requested listing) goes to stdout and
 * nothing else does; messages and --verbose statistics go to stderr.
 */
#include "headless.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "engine.h"
#include "history.h"
#include "conversation.h"
#include "launch.h"
#include "visible.h"
#include "models.h"
#include "membw.h"
#include "monitor.h"

/* Set by SIGINT/SIGTERM during a reply: the reply stops and what was
 * generated is kept (and saved as cancelled). The handler also writes a byte
 * to G_WAKE_FD, a pipe whose reader thread calls engine_cancel: an engine
 * waiting on a slow server hears of it at once, not at its next token. */
static volatile sig_atomic_t g_interrupted;
static volatile sig_atomic_t g_wake_fd = -1;

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
    int fd = g_wake_fd;
    if (fd >= 0) {
        char c = 1;
        ssize_t n = write(fd, &c, 1); /* async-signal-safe; a full pipe has woken already */
        (void)n;
    }
}

struct cancel_watch {
    struct engine *e;
    int fds[2];
    pthread_t thread;
    bool running;
};

static void *cancel_watch_main(void *arg)
{
    struct cancel_watch *w = arg;
    char c;
    /* A byte: a signal came. End of file: the turn is over. The signal
     * itself may land on this thread and interrupt the read. */
    for (;;) {
        ssize_t n = read(w->fds[0], &c, 1);
        if (n == 1)
            engine_cancel(w->e);
        else if (n < 0 && errno == EINTR)
            continue;
        else
            return NULL;
    }
}

/* Starts the watcher; without a pipe or a thread, cancelling still works at
 * the next token through g_interrupted. */
static void cancel_watch_start(struct cancel_watch *w, struct engine *e)
{
    w->e = e;
    w->running = false;
    if (pipe(w->fds) != 0)
        return;
    if (pthread_create(&w->thread, NULL, cancel_watch_main, w) != 0) {
        close(w->fds[0]);
        close(w->fds[1]);
        return;
    }
    w->running = true;
    g_wake_fd = w->fds[1];
}

static void cancel_watch_stop(struct cancel_watch *w)
{
    if (!w->running)
        return;
    g_wake_fd = -1;
    close(w->fds[1]);
    pthread_join(w->thread, NULL);
    close(w->fds[0]);
}

#define MAX_PROMPT_BYTES (64u << 20)

/* Reads all of standard input into a malloc'd string. */
static char *read_stdin(char *err, size_t errlen)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        goto nomem;
    for (;;) {
        if (len + 1 == cap) {
            if (cap >= MAX_PROMPT_BYTES) {
                free(buf);
                snprintf(err, errlen, "standard input holds more than %u MiB: too long for a prompt",
                         MAX_PROMPT_BYTES >> 20);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                goto nomem;
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, stdin);
        len += n;
        if (n == 0) {
            if (ferror(stdin)) {
                free(buf);
                snprintf(err, errlen, "cannot read standard input: %s", strerror(errno));
                return NULL;
            }
            break;
        }
    }
    buf[len] = 0;
    if (strlen(buf) != len) {
        free(buf);
        snprintf(err, errlen, "standard input contains a NUL byte: not text");
        return NULL;
    }
    return buf;
nomem:
    free(buf);
    snprintf(err, errlen, "out of memory reading standard input");
    return NULL;
}

/* The text an argument stands for: itself, or standard input for "-" (then
 * *OWNED holds it). NULL after printing why stdin could not be read. */
static const char *arg_text(const char *arg, char **owned)
{
    if (strcmp(arg, "-") != 0)
        return arg;
    char err[256];
    *owned = read_stdin(err, sizeof err);
    if (!*owned)
        fprintf(stderr, "kvchat: %s\n", err);
    return *owned;
}

static bool on_piece(const char *s, size_t n, void *user)
{
    (void)user;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
    return !g_interrupted;
}

/* The reply's token ids, for --show-ids and -v (engine_turn_params.on_token). */
struct ids {
    int32_t *v;
    size_t n, cap;
};

/* What the -p hooks share (engine_turn_params.user). */
struct prompt_run {
    struct ids ids;
    const struct conv *c;
};

/* A failed progress save comes while the reply is still being saved
 * (c->saving): it is retried a second later and the final save writes the
 * whole reply, so a lock held for a moment is no reason to say "not saving".
 * Only a failed start or final save loses the reply. */
static void on_save_warning(const char *msg, void *user)
{
    const struct prompt_run *run = user;
    if (run->c && run->c->saving)
        return;
    fprintf(stderr, "kvchat: not saving: %s\n", msg);
}

static void on_notice(const char *msg, void *user)
{
    (void)user;
    fprintf(stderr, "kvchat: %s\n", msg);
}

static void on_token(int32_t id, const char *piece, size_t len, void *user)
{
    (void)piece;
    (void)len;
    struct ids *ids = &((struct prompt_run *)user)->ids;
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v)
            return; /* the list is a diagnostic: a short one is said below */
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
}

static void print_ids(const struct ids *ids, int32_t gen_tokens)
{
    fputs("kvchat: ids:", stderr);
    for (size_t i = 0; i < ids->n; i++)
        fprintf(stderr, " %d", ids->v[i]);
    if ((int64_t)ids->n < gen_tokens)
        fputs(" (out of memory: list cut short)", stderr);
    fputc('\n', stderr);
}

static void print_stats(const struct engine *e, const struct engine_stats *s)
{
    const struct engine_info *in = engine_info(e);
    double gbps = s->decode_tok_s * (double)in->bytes_per_token / 1e9;
    fprintf(stderr,
            "kvchat: model %s (%s, %s), backend %s on %s, %d threads, loaded in %.2f s "
            "(%.0f MiB/s)\n"
            "kvchat: prompt %d tokens (%d prefilled, %.1f tok/s), reply %d tokens "
            "(%.1f tok/s, %.2f GB/s of weights), first token after %.3f s, stop: %s\n"
            "kvchat: KV cache %d of %d tokens (%s)\n",
            in->model_name, in->arch, in->template_name, in->backend, in->device, in->n_threads,
            in->load_seconds, in->load_seconds > 0 ? in->file_bytes / 1048576.0 / in->load_seconds : 0.0,
            s->prompt_tokens, s->prefill_tokens, s->prefill_tok_s, s->gen_tokens, s->decode_tok_s,
            gbps, s->ttft_s, engine_stop_name(s->stop), s->kv_used, s->kv_capacity,
            in->kv_type[0] ? in->kv_type : "the server's");
}

int kv_run_prompt(struct kv_options *o)
{
    char err[1024];
    char *owned = NULL;
    const char *text = arg_text(o->prompt, &owned);
    if (!text)
        return 1;
    if (!kv_check_text("the prompt", text, err, sizeof err)) {
        fprintf(stderr, "kvchat: %s\n", err);
        free(owned);
        return 1;
    }
    if (!o->seed_set)
        o->sampling.seed = kv_random_seed();

    char herr[512];
    struct hist *h = conv_open_history(o, herr, sizeof herr);
    if (!h && herr[0])
        fprintf(stderr, "kvchat: not saving: %s\n", herr);
    int64_t sid = -1;
    if (o->resume != KV_RESUME_NONE) {
        sid = h ? kv_session_resolve(h, o, err, sizeof err) : -1;
        if (sid < 0) {
            if (!h)
                fprintf(stderr, "kvchat: --resume needs the history database, which is not "
                                "available\n");
            else
                fprintf(stderr, "kvchat: %s\n", err);
            hist_close(h);
            free(owned);
            return 1;
        }
    }

    struct engine *e = kv_load_engine(o, o->verbose && isatty(2), err, sizeof err);
    if (!e) {
        fprintf(stderr, "kvchat: %s\n", err);
        hist_close(h);
        free(owned);
        return 1;
    }

    /* A base model wrapped in a guessed chat format tends to babble: say so
     * once, and how to get plain completion. */
    if (engine_info(e)->template_guessed)
        fprintf(stderr, "kvchat: %s has no chat template: the prompt is wrapped in the %s "
                        "format, which a base model may not follow; pass --raw to continue the "
                        "text as it is\n", engine_info(e)->model_name,
                engine_info(e)->template_name);

    struct conv c;
    conv_init(&c, e, h);
    if (sid >= 0) {
        int32_t dropped;
        if (conv_resume(&c, sid, o, &dropped, err, sizeof err) != 0) {
            fprintf(stderr, "kvchat: %s\n", err);
            engine_free(e);
            hist_close(h);
            free(owned);
            return 1;
        }
        if (dropped > 0)
            fprintf(stderr,
                    "kvchat: the %d oldest turn%s of session %lld do not fit the context of %d "
                    "tokens: the model sees the rest (raise --ctx-size to keep them)\n",
                    dropped, dropped == 1 ? "" : "s", (long long)sid, engine_info(e)->n_ctx);
    } else {
        engine_set_system(e, o->system_set ? o->system : NULL);
    }

    /* --monitor-log: a thread of its own samples once a second, since this
     * one is inside engine_chat until the reply ends. */
    struct gpu_mon *gpu = NULL;
    struct monitor *mon = NULL;
    if (o->monitor_log[0]) {
        if (strcmp(engine_info(e)->backend, "cuda") == 0 || gpu_mon_recorded())
            gpu = gpu_mon_new(0);
        double bw = o->mem_bandwidth_gbs > 0 ? o->mem_bandwidth_gbs * 1e9 : gpu_mon_bandwidth(gpu);
        if (bw <= 0 && !gpu) /* the chat screen's measured figure, if it has one */
            bw = membw_cache_get(engine_info(e)->device, engine_info(e)->n_threads);
        mon = monitor_new(e, gpu, bw);
        if (!mon || monitor_log_open(mon, o->monitor_log, err, sizeof err) != 0 ||
            monitor_start(mon, err, sizeof err) != 0) {
            fprintf(stderr, "kvchat: %s\n", mon ? err : "out of memory");
            monitor_free(mon);
            gpu_mon_free(gpu);
            engine_free(e);
            hist_close(h);
            free(owned);
            return 1;
        }
    }

    struct cancel_watch watch;
    cancel_watch_start(&watch, e);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct prompt_run run = {.c = &c};
    struct engine_turn_params tp = {
        .sampling = o->sampling,
        .max_tokens = o->max_tokens,
        .on_piece = on_piece,
        .on_notice = on_notice,
        .on_token = o->show_ids || o->verbose ? on_token : NULL,
        .user = &run,
    };
    char *reply = NULL;
    int rc = conv_turn(&c, text, o, &tp, on_save_warning, &reply, err, sizeof err);
    cancel_watch_stop(&watch);
    monitor_free(mon); /* stops its thread after one last reading */
    gpu_mon_free(gpu);
    if (!reply || !*reply || reply[strlen(reply) - 1] != '\n')
        fputc('\n', stdout);
    fflush(stdout);
    if (rc != 0)
        fprintf(stderr, "kvchat: %s\n", err);
    if (o->verbose || o->show_ids) {
        struct engine_stats st;
        engine_stats(e, &st);
        if (o->verbose)
            print_stats(e, &st);
        print_ids(&run.ids, st.gen_tokens);
    }

    free(run.ids.v);
    free(reply);
    engine_free(e);
    hist_close(h);
    free(owned);
    return rc == 0 ? 0 : 1;
}

int kv_run_tokenize(struct kv_options *o)
{
    char err[1024];
    char *owned = NULL;
    const char *text = arg_text(o->text, &owned);
    if (!text)
        return 1;
    if (!kv_check_text("the text", text, err, sizeof err)) {
        fprintf(stderr, "kvchat: %s\n", err);
        free(owned);
        return 1;
    }
    /* Tokenizing needs no compute backend beyond loading: the CPU one maps
     * the file without copying it. */
    struct kv_options lo = *o;
    lo.backend = ENGINE_BACKEND_CPU;
    lo.ctx_size = 16;
    lo.threads = 1;
    struct engine *e = kv_load_engine(&lo, false, err, sizeof err);
    if (!e) {
        fprintf(stderr, "kvchat: %s\n", err);
        free(owned);
        return 1;
    }
    if (engine_info(e)->no_vocabulary) {
        fprintf(stderr, "kvchat: %s has no tokenizer (a synthetic model written without "
                "--tokenizer-from): nothing to tokenize with\n", engine_info(e)->model_path);
        engine_free(e);
        free(owned);
        return 1;
    }
    int64_t n = 0;
    int32_t *ids = engine_tokenize(e, text, !o->no_bos, &n);
    if (!ids) {
        fprintf(stderr, "kvchat: out of memory tokenizing\n");
        engine_free(e);
        free(owned);
        return 1;
    }
    for (int64_t i = 0; i < n; i++) {
        if (i)
            fputc(' ', stdout);
        printf("%d", ids[i]);
        if (o->pieces) {
            char piece[256];
            size_t len = engine_token_piece(e, ids[i], piece, sizeof piece);
            if (len >= sizeof piece)
                len = sizeof piece - 1;
            /* quoted so spaces and newlines in pieces stay visible */
            fputs(":\"", stdout);
            for (size_t k = 0; k < len; k++) {
                unsigned char c = (unsigned char)piece[k];
                if (c == '"' || c == '\\')
                    printf("\\%c", c);
                else if (c == '\n')
                    fputs("\\n", stdout);
                else if (c == '\t')
                    fputs("\\t", stdout);
                else if (c < 0x20 || c == 0x7f)
                    printf("\\x%02x", c);
                else
                    fputc(c, stdout);
            }
            fputc('"', stdout);
        }
    }
    fputc('\n', stdout);
    free(ids);
    engine_free(e);
    free(owned);
    return 0;
}

static void fmt_time(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M", &tm);
}

/* Stored text to stdout: with control characters made visible when stdout
 * is a terminal (TTY), as it is otherwise. */
static void put_stored_n(const char *s, size_t len, bool tty, bool search_marks)
{
    if (tty)
        kv_write_visible(stdout, s, len, search_marks);
    else
        fwrite(s, 1, len, stdout);
}

static void put_stored(const char *s, bool tty, bool search_marks)
{
    put_stored_n(s, strlen(s), tty, search_marks);
}

/* --list-models. Exit status 1 only when nothing could be listed: a corrupt
 * file is a row with its error, an empty folder a note on stderr. */
int kv_run_list_models(const struct kv_options *o)
{
    char err[1024];
    if (o->server[0]) {
        struct engine_params p = kv_remote_params(o);
        char **names;
        size_t n;
        if (engine_list_server_models(&p, &names, &n, err, sizeof err) != 0) {
            fprintf(stderr, "kvchat: %s\n", err);
            return 1;
        }
        for (size_t i = 0; i < n; i++)
            printf("%s\n", names[i]);
        if (!n)
            fprintf(stderr, "kvchat: the server lists no models\n");
        engine_names_free(names, n);
        return 0;
    }
    char dir[4096];
    kv_models_dir(dir, sizeof dir);
    struct kv_model_entry *v;
    size_t n;
    if (kv_models_list(dir, &v, &n, err, sizeof err) != 0) {
        fprintf(stderr, "kvchat: %s (scripts/fetch-models downloads the default model there)\n",
                err);
        return 1;
    }
    if (!n) {
        fprintf(stderr, "kvchat: no .gguf files in %s\n", dir);
    } else {
        char line[2048];
        kv_model_header(line, sizeof line);
        printf("%s\n", line);
        for (size_t i = 0; i < n; i++) {
            kv_model_row(&v[i], line, sizeof line);
            printf("%s\n", line);
        }
    }
    kv_models_free(v);
    return 0;
}

int kv_run_history(const struct kv_options *o)
{
    bool tty = isatty(1);
    char path[4096], err[1024];
    if (o->db[0])
        snprintf(path, sizeof path, "%s", o->db);
    else if (hist_default_path(path, sizeof path) != HIST_OK) {
        fprintf(stderr, "kvchat: neither XDG_DATA_HOME nor HOME is set: pass --db FILE\n");
        return 1;
    }
    if (o->mode == KV_MODE_REPAIR) {
        int rc = hist_repair(path, err, sizeof err);
        fprintf(stderr, "kvchat: %s\n", err);
        return rc == HIST_OK ? 0 : 1;
    }
    /* Listing, searching and exporting must never create or change a
     * database; only --delete writes. */
    unsigned flags = o->mode == KV_MODE_DELETE ? 0 : HIST_OPEN_READONLY;
    struct stat sb;
    bool empty = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0;
    if (flags && (o->mode == KV_MODE_LIST || o->mode == KV_MODE_SEARCH) &&
        (access(path, F_OK) != 0 || empty)) {
        /* no history yet (a 0-byte file is a valid empty database): nothing
         * to list, and a read-only listing creates no tables */
        return 0;
    }
    if (flags && empty) { /* --export of an empty database */
        fprintf(stderr, "kvchat: no such session (see kvchat --list-sessions)\n");
        return 1;
    }
    struct hist *h = hist_open_ex(path, flags, NULL, err, sizeof err);
    if (!h) {
        fprintf(stderr, "kvchat: %s\n", err);
        return 1;
    }
    int status = 0;
    switch (o->mode) {
    case KV_MODE_LIST: {
        struct hist_session *ss = NULL;
        size_t n = 0;
        if (hist_session_list(h, 0, 0, &ss, &n) != HIST_OK) {
            fprintf(stderr, "kvchat: %s\n", hist_last_error(h));
            status = 1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            char when[32];
            fmt_time(ss[i].updated_ms, when, sizeof when);
            printf("%6lld  %s  %4lld msgs  ", (long long)ss[i].id, when,
                   (long long)ss[i].n_messages);
            put_stored(ss[i].title[0] ? ss[i].title : "(untitled)", tty, false);
            putchar('\n');
        }
        hist_sessions_free(ss, n);
        break;
    }
    case KV_MODE_SEARCH: {
        struct hist_hit *hits = NULL;
        size_t n = 0;
        const char *mo = tty ? "\033[1m" : "[";
        const char *mc = tty ? "\033[0m" : "]";
        if (hist_search(h, o->text, mo, mc, 0, &hits, &n) != HIST_OK) {
            fprintf(stderr, "kvchat: %s\n", hist_last_error(h));
            status = 1;
            break;
        }
        if (n == 0) /* an empty answer would look like a failure */
            fprintf(stderr, "kvchat: no matches for '%s'\n", o->text);
        for (size_t i = 0; i < n; i++) {
            char when[32];
            fmt_time(hits[i].created_ms, when, sizeof when);
            printf("%6lld  %s  %-9s ", (long long)hits[i].session_id, when,
                   hist_role_str(hits[i].role));
            put_stored(hits[i].session_title[0] ? hits[i].session_title : "(untitled)", tty,
                       false);
            fputs(": ", stdout);
            put_stored(hits[i].snippet, tty, true);
            putchar('\n');
        }
        hist_hits_free(hits, n);
        break;
    }
    case KV_MODE_EXPORT: {
        enum hist_format fmt;
        hist_format_parse(o->format, &fmt);
        FILE *out = stdout;
        char tmp[4200];
        if (o->output) {
            /* write beside the target and rename, so a failed export never
             * leaves a half-written file under the requested name */
            snprintf(tmp, sizeof tmp, "%s.tmp%ld", o->output, (long)getpid());
            out = fopen(tmp, "w");
            if (!out) {
                fprintf(stderr, "kvchat: cannot write %s: %s\n", o->output, strerror(errno));
                status = 1;
                break;
            }
        }
        /* To a terminal, the export goes through kv_write_visible; to a
         * file or a pipe, byte for byte. */
        char *mem = NULL;
        size_t memlen = 0;
        if (!o->output && tty) {
            out = open_memstream(&mem, &memlen);
            if (!out) {
                fprintf(stderr, "kvchat: out of memory exporting\n");
                status = 1;
                break;
            }
        }
        int rc = hist_export(h, o->session_id, fmt, out);
        if (!o->output && tty) {
            fclose(out);
            if (rc == HIST_OK)
                put_stored_n(mem, memlen, true, false);
            free(mem);
        } else if (o->output) {
            if (fclose(out) != 0 && rc == HIST_OK)
                rc = HIST_E_IO;
            if (rc == HIST_OK && rename(tmp, o->output) != 0) {
                fprintf(stderr, "kvchat: cannot write %s: %s\n", o->output, strerror(errno));
                status = 1;
            }
            if (rc != HIST_OK || status)
                unlink(tmp);
        }
        if (rc != HIST_OK) {
            fprintf(stderr, "kvchat: %s\n", rc == HIST_E_NOTFOUND
                                                 ? "no such session (see kvchat --list-sessions)"
                                                 : hist_last_error(h));
            status = 1;
        }
        break;
    }
    case KV_MODE_DELETE:
        if (hist_session_delete(h, o->session_id) != HIST_OK) {
            fprintf(stderr, "kvchat: %s\n", hist_last_error(h));
            status = 1;
        } else {
            fprintf(stderr, "kvchat: deleted session %lld\n", (long long)o->session_id);
        }
        break;
    default:
        status = 2;
    }
    hist_close(h);
    return status;
}
