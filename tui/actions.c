/* actions.c - what slash commands do: sessions (list, resume, new, rename,
 * delete, search, export), /system and /set, /retry and /edit, /stats,
 * /copy through OSC 52, composing a message in $EDITOR, and /model's list
 * and the switch to another model. Which commands
 * may run while a reply streams, and which need the history, is the
 * commands table's (cmd_needs); what /retry pops and what /copy picks is the
 * message list's (msgs.h).
 */
#include "ui_internal.h"

#include <curses.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "launch.h"
#include "membw.h"
#include "meters.h"
#include "models.h"
#include "sidebar.h"

/* Reloads the sessions list (the sidebar's and /sessions'), the sidebar's
 * rows and the title of the conversation on screen. */
void ui_refresh_sessions(struct ui *u)
{
    hist_sessions_free(u->sessions, u->n_sessions);
    u->sessions = NULL;
    u->n_sessions = 0;
    if (u->h && hist_session_list(u->h, 200, 0, &u->sessions, &u->n_sessions) != HIST_OK) {
        u->sessions = NULL;
        u->n_sessions = 0;
    }
    u->sess_title[0] = 0;
    struct hist_session s;
    if (u->h && u->conv.sid >= 0 && hist_session_get(u->h, u->conv.sid, &s) == HIST_OK) {
        snprintf(u->sess_title, sizeof u->sess_title, "%s", s.title);
        hist_session_clear(&s);
    }
    ui_sidebar_refilter(u);
    u->dirty = true;
}

void ui_sidebar_refilter(struct ui *u)
{
    free(u->sb_idx);
    u->sb_idx = u->n_sessions ? malloc(u->n_sessions * sizeof *u->sb_idx) : NULL;
    u->sb_n = 0;
    if (!u->sb_idx)
        return;
    /* Also the sessions whose messages hold the words (the search index
     * answers in well under a millisecond for a chat history). */
    struct hist_hit *hits = NULL;
    size_t nh = 0;
    int64_t *ids = NULL;
    if (u->sb_query[0] && u->h && hist_search(u->h, u->sb_query, "", "", 200, &hits, &nh) == HIST_OK && nh)
        ids = malloc(nh * sizeof *ids);
    for (size_t i = 0; ids && i < nh; i++)
        ids[i] = hits[i].session_id;
    hist_hits_free(hits, nh);
    u->sb_n = sidebar_filter(u->sessions, u->n_sessions, u->sb_query, ids, ids ? nh : 0, u->sb_idx,
                             u->n_sessions);
    free(ids);
    if (u->sb_sel >= u->sb_n)
        u->sb_sel = u->sb_n ? u->sb_n - 1 : 0;
    u->dirty = true;
}

void ui_ask_delete(struct ui *u, int64_t sid)
{
    struct hist_session s;
    if (!u->h || hist_session_get(u->h, sid, &s) != HIST_OK) {
        ui_status(u, TH_ERROR, "cannot delete session %lld: %s", (long long)sid,
                  u->h ? hist_last_error(u->h) : "the history database is not available");
        return;
    }
    char t[64];
    sidebar_fit(sidebar_label(&s), 40, t, sizeof t);
    snprintf(u->prompt_q, sizeof u->prompt_q, "delete session %lld \"%s\" (%lld message%s)%s? y/N ",
             (long long)sid, t, (long long)s.n_messages, s.n_messages == 1 ? "" : "s",
             sid == u->conv.sid ? ", the one on screen" : "");
    hist_session_clear(&s);
    u->prompt = UI_PROMPT_DELETE;
    u->prompt_sid = sid;
    u->dirty = true;
}

void ui_ask_rename(struct ui *u, int64_t sid)
{
    snprintf(u->prompt_q, sizeof u->prompt_q, "rename session %lld to (Enter saves, Esc cancels): ",
             (long long)sid);
    u->prompt_buf[0] = 0;
    u->prompt = UI_PROMPT_RENAME;
    u->prompt_sid = sid;
    u->dirty = true;
}

void ui_rename_session(struct ui *u, int64_t sid, const char *title)
{
    if (hist_session_rename(u->h, sid, title) != HIST_OK) {
        ui_status(u, TH_ERROR, "cannot rename: %s", hist_last_error(u->h));
        return;
    }
    ui_status(u, TH_NOTICE, "renamed session %lld to \"%s\"", (long long)sid, title);
    ui_refresh_sessions(u);
}


/* ---- sessions ---- */

/* The next turn reads the whole conversation in again, for WHY (a static
 * string its progress shows), when there is a conversation to read. */
static void reread_next(struct ui *u, const char *why)
{
    u->reread_why = NULL;
    for (size_t i = 0; i < u->msgs.n; i++)
        if (u->msgs.v[i].kind == MSG_USER) {
            u->reread_why = why;
            return;
        }
}

/* Shows session SID's saved messages in place of the conversation. */
static void show_session(struct ui *u, int64_t sid)
{
    struct hist_message *ms = NULL;
    size_t n = 0;
    ui_clear_msgs(u);
    if (hist_messages(u->h, sid, &ms, &n) != HIST_OK) {
        ui_notice(u, MSG_ERROR, "cannot read session %lld: %s", (long long)sid, hist_last_error(u->h));
        return;
    }
    if (u->o.system_set && u->o.system[0])
        ui_add_msg(u, MSG_SYSTEM, u->o.system);
    for (size_t i = 0; i < n; i++) {
        enum msg_kind k = ms[i].role == HIST_ROLE_USER        ? MSG_USER
                          : ms[i].role == HIST_ROLE_ASSISTANT ? MSG_ASSISTANT
                                                              : MSG_SYSTEM;
        /* The thinking is shown as the model wrote it: compose.c dims a
         * think block opening a reply. */
        char *joined = NULL;
        if (ms[i].thinking && asprintf(&joined, "<think>%s</think>\n\n%s", ms[i].thinking,
                                       ms[i].content ? ms[i].content : "") < 0)
            joined = NULL;
        struct msg *m = ui_add_msg(u, k, joined ? joined : ms[i].content ? ms[i].content : "");
        free(joined);
        if (m) {
            m->end = ms[i].end == HIST_END_STOP ? HIST_END_NONE : ms[i].end;
            m->hist_id = ms[i].id;
            m->created_ms = ms[i].created_ms;
            m->hidden = ms[i].variant_off;
        }
    }
    /* Each turn's variants numbered in order, for the badge. */
    for (size_t i = 0; i < n; i++) {
        if (ms[i].role != HIST_ROLE_ASSISTANT)
            continue;
        int64_t head = ms[i].variant_of ? ms[i].variant_of : ms[i].id;
        int cnt = 0, idx = 0;
        for (size_t j = 0; j < n; j++)
            if (ms[j].role == HIST_ROLE_ASSISTANT &&
                (ms[j].variant_of ? ms[j].variant_of : ms[j].id) == head) {
                cnt++;
                idx += j <= i;
            }
        for (size_t j = 0; cnt > 1 && j < u->msgs.n; j++)
            if (u->msgs.v[j].hist_id == ms[i].id) {
                u->msgs.v[j].variant = idx;
                u->msgs.v[j].n_variants = cnt;
            }
    }
    hist_messages_free(ms, n);
}

int ui_resume_session(struct ui *u, int64_t sid, bool own_system)
{
    char err[512];
    struct kv_options o = u->o;
    /* The session's own system prompt (or none), not the one this screen
     * last set with /system for another conversation: what the model saw
     * when the session was written is what it sees again. */
    if (own_system) {
        o.system_set = false;
        o.system[0] = 0;
    }
    int32_t dropped;
    if (conv_resume(&u->conv, sid, &o, &dropped, err, sizeof err) != 0) {
        ui_notice(u, MSG_ERROR, "%s", err);
        return -1;
    }
    u->o = o;
    u->scroll = 0;
    show_session(u, sid);
    reread_next(u, "session resumed");
    if (dropped > 0) {
        msgs_mark_dropped(&u->msgs, dropped);
        ui_notice(u, MSG_NOTICE,
               "the %d oldest turn%s of this session do not fit the context of %d tokens: "
               "the model sees the rest (raise --ctx-size to keep them)",
               dropped, dropped == 1 ? "" : "s", engine_info(u->e)->n_ctx);
    }
    struct hist_session s;
    if (hist_session_get(u->h, sid, &s) == HIST_OK) {
        ui_status(u, TH_NOTICE, "resumed session %lld: %s", (long long)sid, s.title);
        hist_session_clear(&s);
    }
    ui_refresh_sessions(u);
    return 0;
}

static void new_conversation(struct ui *u)
{
    conv_new(&u->conv);
    ui_clear_msgs(u);
    u->reread_why = NULL;
    u->scroll = 0;
    u->sess_title[0] = 0;
    if (u->o.system_set && u->o.system[0])
        ui_add_msg(u, MSG_SYSTEM, u->o.system);
    ui_status(u, TH_NOTICE, "new conversation");
}

void ui_delete_session(struct ui *u, int64_t sid)
{
    if (sid == u->conv.sid && u->busy) {
        ui_status(u, TH_ERROR, "cannot delete the conversation on screen while its reply is generated");
        return;
    }
    if (hist_session_delete(u->h, sid) != HIST_OK) {
        ui_status(u, TH_ERROR, "cannot delete session %lld: %s", (long long)sid, hist_last_error(u->h));
        return;
    }
    bool current = sid == u->conv.sid;
    if (current)
        new_conversation(u);
    ui_status(u, TH_NOTICE, "deleted session %lld%s", (long long)sid,
              current ? "; this is a new conversation" : "");
    ui_refresh_sessions(u);
}

static void list_sessions(struct ui *u)
{
    ui_refresh_sessions(u);
    if (!u->n_sessions) {
        ui_notice(u, MSG_NOTICE, "no saved conversations");
        return;
    }
    size_t cap = 64 + u->n_sessions * 160, o = 0;
    char *buf = malloc(cap);
    if (!buf)
        return;
    o += (size_t)snprintf(buf, cap, "Saved conversations (newest first; /resume ID):");
    for (size_t i = 0; i < u->n_sessions && o < cap; i++) {
        struct hist_session *s = &u->sessions[i];
        time_t t = (time_t)(s->updated_ms / 1000);
        struct tm tm;
        char when[32] = "";
        if (localtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        o += (size_t)snprintf(buf + o, cap - o, "\n%6lld  %s  %3lld msgs  %.80s%s", (long long)s->id, when,
                              (long long)s->n_messages, s->title[0] ? s->title : "(untitled)",
                              s->id == u->conv.sid ? "  \xE2\x86\x90 this one" : "");
    }
    ui_notice(u, MSG_NOTICE, "%s", buf);
    free(buf);
}

/* Sends TEXT to the terminal's clipboard with OSC 52 (works over SSH, and
 * through tmux when its set-clipboard option allows). */
static void osc52_copy(const char *text)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(text), o = 0;
    char *out = malloc(n / 3 * 4 + 16 + 16);
    if (!out)
        return;
    o += (size_t)sprintf(out, "\033]52;c;");
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)text[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)text[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)text[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o++] = '\a';
    fflush(stdout);
    ssize_t r = write(STDOUT_FILENO, out, o);
    (void)r;
    free(out);
}

/* ---- /copy and the editor ---- */

/* Composes a message in $EDITOR (or vi), starting from INITIAL; the result
 * replaces the input line. */
static void run_editor(struct ui *u, const char *initial)
{
    char path[] = "/tmp/kvchat-msg-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        ui_status(u, TH_ERROR, "cannot create a temporary file: %s", strerror(errno));
        return;
    }
    size_t il = strlen(initial);
    if (write(fd, initial, il) != (ssize_t)il) {
        close(fd);
        unlink(path);
        ui_status(u, TH_ERROR, "cannot write the temporary file");
        return;
    }
    close(fd);
    const char *ed = getenv("VISUAL");
    if (!ed || !*ed)
        ed = getenv("EDITOR");
    if (!ed || !*ed)
        ed = "vi";
    def_prog_mode();
    endwin();
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "exec $KVCHAT_EDITOR \"$1\"", "sh", path, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid > 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    reset_prog_mode();
    clearok(curscr, TRUE);
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ui_status(u, TH_ERROR, "the editor (%s) failed; the message is unchanged", ed);
        unlink(path);
        return;
    }
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t cap = 0;
    if (f) {
        ssize_t n = getdelim(&text, &cap, 0, f);
        fclose(f);
        if (n >= 0) {
            while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
                text[--n] = 0;
            ui_set_input(u, text);
        }
    }
    free(text);
    unlink(path);
    u->dirty = true;
}

void ui_editor_command(struct ui *u)
{
    const char *ed = getenv("VISUAL");
    if (!ed || !*ed)
        ed = getenv("EDITOR");
    setenv("KVCHAT_EDITOR", ed && *ed ? ed : "vi", 1);
    size_t len, point;
    const char *in = ui_input_text(&len, &point);
    /* From /editor the input line is the command: the file starts empty
     * (or with what followed the command), not with "/editor". */
    if (strncmp(in, "/editor", 7) == 0 && (in[7] == 0 || in[7] == ' '))
        in += in[7] ? 8 : 7;
    char *cur = strdup(in);
    run_editor(u, cur ? cur : "");
    free(cur);
}

/* The last turn's stop reason; "length" says which limit it was. */
static const char *stop_reason(const struct ui *u)
{
    if (u->st.stop != ENGINE_STOP_LENGTH)
        return engine_stop_name(u->st.stop);
    return u->o.max_tokens > 0 && u->st.gen_tokens >= u->o.max_tokens ? "length (the reply limit, max_tokens)"
                                                                       : "length (the context is full)";
}

static void show_stats(struct ui *u)
{
    ui_sample_meters(u);
    const struct engine_stats *s = &u->st;
    const struct engine_info *in = u->info;
    char mem[5][32];
    fmt_bytes(u->mem.weights, mem[0], 32);
    fmt_bytes(u->mem.kv_cache, mem[1], 32);
    fmt_bytes(u->mem.scratch, mem[2], 32);
    fmt_bytes(u->mem.device_total, mem[3], 32);
    fmt_bytes(u->mem.device_free, mem[4], 32);
    struct meter_values v;
    ui_meter_values(u, &v);
    ui_notice(u, MSG_NOTICE,
           "Last turn: prompt %d tokens (%d prefilled at %.1f tok/s), reply %d tokens at %.1f tok/s, "
           "first token after %.3f s, total %.2f s, stop: %s, turns dropped: %d\n"
           "KV cache %d of %d tokens. Roofline %s. GPU %s, power %s, temp %s, energy %s\n"
           "Model %s (%s, %llu params, %s), template %s, %d layers, ctx %d (trained %d)\n"
           "Backend %s on %s, %d threads; memory: weights %s, KV %s, scratch %s; device %s, %s free\n"
           "Sampling: temp %.2f top_k %d top_p %.2f min_p %.2f repeat_penalty %.2f seed %llu max_tokens %d",
           s->prompt_tokens, s->prefill_tokens, s->prefill_tok_s, s->gen_tokens, s->decode_tok_s, s->ttft_s,
           s->total_s, stop_reason(u), s->turns_dropped, s->kv_used, s->kv_capacity, v.roof, v.util,
           v.pow, v.temp, v.jpt, in->model_name, in->arch, (unsigned long long)in->n_params, in->model_path,
           in->template_name, in->n_layer, in->n_ctx, in->n_ctx_train, in->backend, in->device, in->n_threads,
           mem[0], mem[1], mem[2], mem[3], mem[4], u->o.sampling.temperature, u->o.sampling.top_k,
           u->o.sampling.top_p, u->o.sampling.min_p, u->o.sampling.repeat_penalty,
           (unsigned long long)u->o.sampling.seed, u->o.max_tokens);
}

/* /show: what the conversation runs with, in an overlay: the model and
 * where it runs, the context and its use, the KV type, the sampling, the
 * system prompt, the template and the session. */
static void show_params(struct ui *u)
{
    ui_sample_meters(u);
    const struct engine_info *in = u->info;
    const struct engine_sampling *sp = &u->o.sampling;
    struct meter_values v;
    ui_meter_values(u, &v);
    char title[600] = "(new conversation, not saved yet)";
    if (u->conv.sid >= 0 && u->h) {
        struct hist_session hs;
        if (hist_session_get(u->h, u->conv.sid, &hs) == HIST_OK) {
            snprintf(title, sizeof title, "%lld \"%.500s\"", (long long)u->conv.sid, hs.title);
            hist_session_clear(&hs);
        } else {
            snprintf(title, sizeof title, "%lld", (long long)u->conv.sid);
        }
    } else if (!u->h) {
        snprintf(title, sizeof title, "(not saving: history is off)");
    }
    char trained[32] = "unknown";
    if (in->n_ctx_train > 0)
        snprintf(trained, sizeof trained, "%d", in->n_ctx_train);
    const char *sys = u->o.system_set && u->o.system[0] ? u->o.system : "(the template's default)";
    size_t cap = strlen(sys) + 8192;
    char *buf = malloc(cap);
    if (!buf) {
        ui_status(u, TH_ERROR, "out of memory: cannot show the settings");
        return;
    }
    int o = snprintf(buf, cap,
                     "Model\n"
                     "  file           %s\n"
                     "  name           %s (%s)\n"
                     "  backend        %s on %s, %d threads\n"
                     "Context\n"
                     "  size           %d tokens (trained for %s)%s%s\n"
                     "  in use         %s, %s left\n"
                     "  KV type        %s\n"
                     "Sampling\n"
                     "  temp           %.2f\n"
                     "  top_k          %d\n"
                     "  top_p          %.2f\n"
                     "  min_p          %.2f\n"
                     "  repeat_penalty %.2f over the last %d tokens\n"
                     "  seed           %llu\n"
                     "  max_tokens     %d%s\n"
                     "Conversation\n"
                     "  template       %s%s\n"
                     "  session        %s\n"
                     "  system prompt  ",
                     in->model_path, in->model_name, in->arch, in->backend, in->device, in->n_threads, in->n_ctx,
                     trained, v.ctx_warn[0] ? ": " : "", v.ctx_warn, v.kv, v.left,
                     in->kv_type[0] ? in->kv_type : "(the server's)", sp->temperature, sp->top_k, sp->top_p,
                     sp->min_p, sp->repeat_penalty, sp->repeat_last_n, (unsigned long long)sp->seed,
                     u->o.max_tokens, u->o.max_tokens ? "" : " (until the context is full)", in->template_name,
                     in->template_guessed ? " (guessed: the file names none)" : "", title);
    /* the system prompt last, its lines indented under its label */
    size_t k = o > 0 ? (size_t)o : 0;
    for (const char *p = sys; *p && k + 20 < cap; p++) {
        buf[k++] = *p;
        if (*p == '\n')
            for (int i = 0; i < 17; i++)
                buf[k++] = ' ';
    }
    buf[k] = 0;
    if (overlay_open(&u->ov, "Settings in use (/show)", buf) != 0)
        ui_status(u, TH_ERROR, "out of memory: cannot show the settings");
    free(buf);
}

/* Removes the last exchange for /retry and /edit from the engine, the
 * screen and the history, so a resumed session replays what the model saw
 * last and not both attempts; returns the user's text (malloc'd) or NULL.
 * The history rows go from the user message's own id on: a message that
 * was never saved (id 0) leaves the history alone rather than guess. */
static char *pop_exchange(struct ui *u)
{
    int64_t user_id = msgs_last_user_id(&u->msgs);
    int rc = conv_pop_turn(&u->conv, user_id);
    if (rc == 1) {
        ui_status(u, TH_ERROR, "nothing to redo yet");
        return NULL;
    }
    char *user = msgs_pop_exchange(&u->msgs, &user_id);
    if (rc < 0)
        ui_notice(u, MSG_ERROR, "not saving: %s", u->conv.err);
    else if (u->sidebar)
        ui_refresh_sessions(u);
    u->dirty = true;
    return user ? user : strdup("");
}

static int replay_from_screen(struct ui *u, struct engine *e, int32_t *dropped);

/* /retry: the last reply is kept as a variant and a new one generated to
 * the same message. At temperature > 0 each retry draws a new seed, or the
 * sampler would repeat the reply exactly; a --seed given by the user is
 * kept (the same reply is then what was asked for). */
static void retry(struct ui *u)
{
    int64_t of_reply = 0;
    if (!engine_pop_turn(u->e)) {
        ui_status(u, TH_ERROR, "nothing to redo yet");
        return;
    }
    char *text = msgs_retry(&u->msgs, &of_reply);
    if (!text) {
        ui_status(u, TH_ERROR, "nothing to redo yet");
        return;
    }
    if (!u->o.seed_set)
        u->o.sampling.seed = kv_random_seed();
    if (conv_begin_retry(&u->conv, of_reply, &u->o) != 0)
        ui_notice(u, MSG_ERROR, "not saving: %s", u->conv.err);
    ui_start_retry(u, text);
    free(text);
}

void ui_variant_show(struct ui *u, int k)
{
    int cur, n;
    msgs_variant_now(&u->msgs, &cur, &n);
    if (n < 2) {
        ui_status(u, TH_ERROR, "the last reply has no other variants (/retry makes one)");
        return;
    }
    struct msg *m = msgs_variant_select(&u->msgs, k);
    if (!m) {
        ui_status(u, TH_ERROR, "/variant: %d is not between 1 and %d", k, n);
        return;
    }
    /* The model goes on from the reply on screen. */
    int rc = conv_choose_variant(&u->conv, m->hist_id, &u->o);
    int32_t dropped = 0;
    if (rc == 1)
        rc = replay_from_screen(u, u->e, &dropped);
    if (rc != 0)
        ui_notice(u, MSG_ERROR, "cannot switch the reply: %s",
                  u->conv.err[0] ? u->conv.err : "out of memory");
    else
        ui_status(u, TH_NOTICE, "reply %d of %d: later turns build on it", k, n);
    u->dirty = true;
}

/* ---- /model ---- */

/* The picker's mark for the model in use, first on its row so a narrow
 * pane never cuts it off. */
#define IN_USE "\xE2\x97\x8F "

void ui_models_free(struct ui *u)
{
    engine_names_free(u->model_names, u->n_models);
    engine_names_free(u->model_rows, u->n_models);
    u->model_names = u->model_rows = NULL;
    u->n_models = 0;
    u->pick_open = false;
}

int ui_models_read(struct ui *u, char *err, size_t errlen)
{
    ui_models_free(u);
    u->models_read = true;
    if (ui_remote(u)) {
        struct engine_params p = kv_remote_params(&u->o);
        char **names;
        size_t n;
        if (engine_list_server_models(&p, &names, &n, err, errlen) != 0)
            return -1;
        char **rows = calloc(n ? n : 1, sizeof *rows);
        for (size_t i = 0; rows && i < n; i++)
            if (asprintf(&rows[i], "%s%s", strcmp(names[i], u->info->model_name) == 0 ? IN_USE : "  ",
                         names[i]) < 0)
                rows[i] = NULL;
        u->model_names = names;
        u->model_rows = rows;
        u->n_models = rows ? n : 0;
        return 0;
    }
    char dir[4096];
    kv_models_dir(dir, sizeof dir);
    struct kv_model_entry *v;
    size_t n;
    if (kv_models_list(dir, &v, &n, err, errlen) != 0)
        return -1;
    u->model_names = calloc(n ? n : 1, sizeof *u->model_names);
    u->model_rows = calloc(n ? n : 1, sizeof *u->model_rows);
    for (size_t i = 0; u->model_names && u->model_rows && i < n; i++) {
        char row[2048];
        kv_model_row(&v[i], row, sizeof row);
        bool in_use = strcmp(v[i].path, u->info->model_path) == 0;
        u->model_names[i] = strdup(v[i].file);
        if (asprintf(&u->model_rows[i], "%s%s", in_use ? IN_USE : "  ", row) < 0)
            u->model_rows[i] = NULL;
        u->n_models = i + 1;
    }
    kv_models_free(v);
    return 0;
}

/* The conversation on the screen as engine messages, for a session that
 * is not in the history (--no-history, or saving failed): what the user
 * sees is what the new model gets. Texts are borrowed from the list. */
static int replay_from_screen(struct ui *u, struct engine *e, int32_t *dropped)
{
    struct engine_message *cm = calloc(u->msgs.n ? u->msgs.n : 1, sizeof *cm);
    if (!cm)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < u->msgs.n; i++) {
        const struct msg *m = &u->msgs.v[i];
        if (!m->text || (m->kind != MSG_USER && m->kind != MSG_ASSISTANT))
            continue; /* the system prompt is set below; notices are the screen's own */
        if (m->hidden)
            continue; /* a variant not chosen */
        cm[k++] = (struct engine_message){
            .role = m->kind == MSG_USER ? ENGINE_ROLE_USER : ENGINE_ROLE_ASSISTANT,
            .content = m->text};
    }
    int rc = engine_load_transcript(e, cm, k);
    free(cm);
    engine_set_system(e, u->o.system_set ? u->o.system : NULL);
    if (rc == 0)
        *dropped = engine_fit_context(e, u->o.max_tokens);
    return rc == 0 && *dropped >= 0 ? 0 : -1;
}

/* The meters' device after a switch that changed the backend: the GPU
 * monitor and the roofline's bandwidth, as at startup. */
static void new_device(struct ui *u)
{
    gpu_mon_free(u->gpu);
    u->gpu = strcmp(u->info->backend, "cuda") == 0 || gpu_mon_recorded() ? gpu_mon_new(0) : NULL;
    u->bandwidth = u->o.mem_bandwidth_gbs > 0 ? u->o.mem_bandwidth_gbs * 1e9 : gpu_mon_bandwidth(u->gpu);
    u->bw_wanted = u->bandwidth <= 0 && strcmp(u->info->backend, "cuda") != 0;
    if (u->bw_wanted) {
        double cached = membw_cache_get(u->info->device, u->info->n_threads);
        if (cached > 0) {
            u->bandwidth = cached;
            u->bw_wanted = false;
        }
    }
}

void ui_model_switch(struct ui *u, size_t i)
{
    u->pick_open = false;
    u->dirty = true;
    if (i >= u->n_models)
        return;
    char name[512];
    snprintf(name, sizeof name, "%s", u->model_names[i]);
    struct kv_options o = u->o;
    char dir[4096];
    kv_models_dir(dir, sizeof dir);
    int len = ui_remote(u) ? snprintf(o.server_model, sizeof o.server_model, "%s", name)
                           : snprintf(o.model, sizeof o.model, "%s/%s", dir, name);
    if (len < 0 || (size_t)len >= (ui_remote(u) ? sizeof o.server_model : sizeof o.model)) {
        ui_notice(u, MSG_ERROR, "cannot switch to %s: the name is too long", name);
        return;
    }
    /* The new engine loads beside the old one, so a failure leaves the chat
     * as it was; the load progress takes the screen meanwhile. */
    char path[4096], err[5200] = "";
    struct load_progress lp = {u, ui_now(), 0, name};
    ui_load_progress(0, 0, &lp);
    struct engine *e = kv_engine_open(&o, ui_load_progress, &lp, path, sizeof path, err, sizeof err);
    if (!e) {
        ui_notice(u, MSG_ERROR, "cannot switch to %s: %s (still %s)", name, err,
                  u->info->model_name);
        return;
    }
    /* The conversation goes on in the new engine: replayed the way a resume
     * does it when the session is saved, else from the screen. */
    int32_t dropped = 0;
    struct kv_options ro = o;
    int rc = u->h && u->conv.sid >= 0
                 ? kv_session_restore(u->h, u->conv.sid, e, &ro, &dropped, err, sizeof err)
                 : replay_from_screen(u, e, &dropped);
    if (rc != 0) {
        ui_notice(u, MSG_ERROR, "cannot switch to %s: the conversation could not be replayed "
                  "into it: %s (still %s)", name, err[0] ? err : "out of memory",
                  u->info->model_name);
        engine_free(e);
        return;
    }
    char old_backend[sizeof u->info->backend];
    snprintf(old_backend, sizeof old_backend, "%s", u->info->backend);
    engine_free(u->e);
    u->e = e;
    u->info = engine_info(e);
    u->conv.e = e; /* the session continues; its replies record the new model */
    u->o = o;
    u->last_meter = 0; /* the meters read the new engine at the next frame */
    if (strcmp(old_backend, u->info->backend) != 0)
        new_device(u);
    if (u->mon) /* the inspector's readings borrow the engine and the GPU monitor */
        monitor_rebind(u->mon, u->e, u->gpu);
    ui_notice(u, MSG_NOTICE, "now chatting with %s (%s, %s%s%s)", u->info->model_name, name,
              u->info->backend, u->info->backend_note[0] ? ": " : "", u->info->backend_note);
    if (u->info->warning[0])
        ui_notice(u, MSG_NOTICE, "warning: %s", u->info->warning);
    char think_note[256];
    if (kv_think_note(&u->o, u->info, think_note, sizeof think_note))
        ui_notice(u, MSG_NOTICE, "%s", think_note);
    reread_next(u, "model changed");
    if (dropped > 0) {
        msgs_mark_dropped(&u->msgs, dropped);
        ui_notice(u, MSG_NOTICE,
                  "the %d oldest turn%s do not fit the context of %d tokens: the model sees "
                  "the rest", dropped, dropped == 1 ? "" : "s", u->info->n_ctx);
    }
    ui_models_free(u); /* "in use" moved */
}

/* /think on|off (and /set think): the engine's switch, kept in the options
 * so a /model switch loads the next model with it. */
static void think_command(struct ui *u, const char *arg)
{
    char err[512];
    enum engine_think t;
    if (!kv_think_from_name(arg, &t)) {
        ui_status(u, TH_ERROR, "/think: say on or off");
        return;
    }
    if (engine_set_think(u->e, t == ENGINE_THINK_ON, err, sizeof err) != 0) {
        ui_status(u, TH_ERROR, "/think: %s", err);
        return;
    }
    u->o.think = t;
    ui_status(u, TH_NOTICE, "thinking %s (from the next reply)", arg);
}

/* /model ARG: a number in the list or a name in it; no argument opens the
 * picker. */
static void model_command(struct ui *u, const char *arg)
{
    char err[1024];
    if (ui_models_read(u, err, sizeof err) != 0) {
        ui_notice(u, MSG_ERROR, "/model: %s", err);
        return;
    }
    if (!arg[0]) {
        if (!u->n_models) {
            ui_notice(u, MSG_NOTICE, "/model: there are no models to choose from");
            return;
        }
        u->pick_open = true;
        u->pick_sel = 0;
        for (size_t i = 0; i < u->n_models; i++)
            if (u->model_rows[i] && strncmp(u->model_rows[i], IN_USE, strlen(IN_USE)) == 0)
                u->pick_sel = i;
        u->dirty = true;
        return;
    }
    char *end;
    unsigned long long k = strtoull(arg, &end, 10);
    if (arg[0] >= '0' && arg[0] <= '9' && !*end) {
        if (k < 1 || k > u->n_models) {
            ui_notice(u, MSG_ERROR, "/model: %s is not between 1 and %zu (see /model)", arg,
                      u->n_models);
            return;
        }
        ui_model_switch(u, (size_t)(k - 1));
        return;
    }
    for (size_t i = 0; i < u->n_models; i++)
        if (strcmp(u->model_names[i], arg) == 0) {
            ui_model_switch(u, i);
            return;
        }
    ui_notice(u, MSG_ERROR, "/model: no model '%s' %s (/model lists them)", arg,
              ui_remote(u) ? "on the server" : "in the models folder");
}

void ui_run_command(struct ui *u, const struct command *c)
{
    unsigned needs = cmd_needs(c->id);
    bool need_idle = needs & CMD_NEEDS_IDLE;
    if (need_idle && u->busy) {
        ui_status(u, TH_ERROR, "/%s: a reply is being generated (Esc stops it)", cmd_name(c->id));
        return;
    }
    if (need_idle) {
        /* These may make the engine work here (/resume rebuilds the KV
         * cache): not alongside the bandwidth probe. */
        ui_bw_collect(u, true);
        u->bw_after = ui_now() + BW_DELAY_S;
    }
    if ((needs & CMD_NEEDS_HISTORY) && !u->h) {
        ui_status(u, TH_ERROR, "/%s: the history database is not available", cmd_name(c->id));
        return;
    }
    char err[512];
    switch (c->id) {
    case CMD_HELP:
        ui_open_help(u);
        break;
    case CMD_SHOW:
        show_params(u);
        break;
    case CMD_TIMESTAMPS:
        u->timestamps = c->arg[0] ? strcmp(c->arg, "on") == 0 : !u->timestamps;
        ui_status(u, TH_NOTICE, "timestamps %s", u->timestamps ? "on" : "off");
        break;
    case CMD_NEW:
        new_conversation(u);
        break;
    case CMD_SESSIONS:
        list_sessions(u);
        break;
    case CMD_RESUME:
        ui_resume_session(u, c->num, true);
        break;
    case CMD_RENAME:
        if (conv_ensure_session(&u->conv, &u->o) != 0)
            ui_notice(u, MSG_ERROR, "not saving: %s", u->conv.err);
        else
            ui_rename_session(u, u->conv.sid, c->arg);
        break;
    case CMD_DELETE:
        /* Nothing is deleted until the question on the status line is
         * answered y (ui_delete_session). */
        ui_ask_delete(u, c->num);
        break;
    case CMD_SEARCH: {
        struct hist_hit *hits = NULL;
        size_t n = 0;
        if (hist_search(u->h, c->arg, "\xC2\xBB", "\xC2\xAB", 20, &hits, &n) != HIST_OK) {
            ui_status(u, TH_ERROR, "search failed: %s", hist_last_error(u->h));
            break;
        }
        size_t cap = 128 + n * 400, o = 0;
        char *buf = malloc(cap);
        if (buf) {
            o += (size_t)snprintf(buf, cap, "%zu match%s for \"%.100s\"%s", n, n == 1 ? "" : "es", c->arg,
                                  n ? " (/resume ID):" : "");
            for (size_t i = 0; i < n && o < cap; i++)
                o += (size_t)snprintf(buf + o, cap - o, "\n%6lld  %.40s: %.300s", (long long)hits[i].session_id,
                                      hits[i].session_title, hits[i].snippet);
            ui_notice(u, MSG_NOTICE, "%s", buf);
            free(buf);
        }
        hist_hits_free(hits, n);
        break;
    }
    case CMD_EXPORT: {
        if (u->conv.sid < 0) {
            ui_status(u, TH_ERROR, "/export: nothing saved in this conversation yet");
            break;
        }
        enum hist_format fmt;
        hist_format_parse(c->arg, &fmt);
        char path[4096];
        const char *home = getenv("HOME");
        if (c->arg2[0] == '~' && (c->arg2[1] == '/' || !c->arg2[1]) && home && *home)
            snprintf(path, sizeof path, "%s%s", home, c->arg2 + 1); /* as the shell would */
        else
            snprintf(path, sizeof path, "%s", c->arg2);
        FILE *f = fopen(path, "w");
        if (!f) {
            ui_status(u, TH_ERROR, "/export: %s: %s", path, strerror(errno));
            break;
        }
        int rc = hist_export(u->h, u->conv.sid, fmt, f);
        if (fclose(f) != 0 || rc != HIST_OK)
            ui_status(u, TH_ERROR, "/export: %s: %s", path, rc != HIST_OK ? hist_last_error(u->h) : strerror(errno));
        else
            ui_status(u, TH_NOTICE, "exported session %lld to %s", (long long)u->conv.sid, path);
        break;
    }
    case CMD_SYSTEM:
        snprintf(u->o.system, sizeof u->o.system, "%s", c->arg);
        u->o.system_set = c->arg[0] != 0;
        if (conv_set_system(&u->conv, c->arg) != 0)
            ui_notice(u, MSG_ERROR, "not saving: %s", u->conv.err);
        if (c->arg[0])
            ui_add_msg(u, MSG_SYSTEM, c->arg);
        reread_next(u, "system prompt changed"); /* it opens the prompt: nothing cached is kept */
        ui_status(u, TH_NOTICE, c->arg[0] ? "system prompt set" : "system prompt back to the model's default");
        break;
    case CMD_SET:
        if (!c->arg[0]) { /* the current values */
            const struct engine_sampling *sp = &u->o.sampling;
            ui_notice(u, MSG_NOTICE,
                      "temp %.2f top_k %d top_p %.2f min_p %.2f repeat_penalty %.2f seed %llu max_tokens %d",
                      sp->temperature, sp->top_k, sp->top_p, sp->min_p, sp->repeat_penalty,
                      (unsigned long long)sp->seed, u->o.max_tokens);
            break;
        }
        if (strcmp(c->arg, "think") == 0) { /* the engine's switch, not only the option */
            think_command(u, c->arg2);
            break;
        }
        if (config_set(&u->o, c->arg, c->arg2, err, sizeof err) != 0) {
            ui_status(u, TH_ERROR, "/set %s", err);
            break;
        }
        if (conv_set_sampling(&u->conv, &u->o) != 0)
            ui_notice(u, MSG_ERROR, "not saving: %s", u->conv.err);
        ui_status(u, TH_NOTICE, "%s = %s (from the next reply)", c->arg, c->arg2);
        break;
    case CMD_MODEL:
        model_command(u, c->arg);
        break;
    case CMD_RETRY:
        retry(u);
        break;
    case CMD_VARIANT:
        ui_variant_show(u, c->num > INT32_MAX ? 0 : (int)c->num);
        break;
    case CMD_THINK:
        think_command(u, c->arg);
        break;
    case CMD_EDIT: {
        char *text = pop_exchange(u);
        if (text) {
            ui_set_input(u, text);
            ui_status(u, TH_NOTICE, "edit the message and press Enter to resend it");
        }
        free(text);
        break;
    }
    case CMD_THEME: {
        struct theme t;
        if (theme_load(c->arg, NULL, &t, err, sizeof err) != 0) {
            ui_status(u, TH_ERROR, "%s", err);
            break;
        }
        u->theme = t;
        ui_apply_theme(u);
        clearok(curscr, TRUE);
        ui_status(u, TH_NOTICE, "theme %s", t.name);
        break;
    }
    case CMD_STATS:
        show_stats(u);
        break;
    case CMD_INSPECT:
        ui_toggle_inspector(u);
        break;
    case CMD_COPY: {
        char *t = msgs_copy_target(&u->msgs, c->num);
        if (!t) {
            ui_status(u, TH_ERROR, c->num ? "no code block %lld in the last reply" : "no reply to copy yet",
                       (long long)c->num);
            break;
        }
        osc52_copy(t);
        ui_status(u, TH_NOTICE, "copied %zu bytes to the clipboard (OSC 52)", strlen(t));
        free(t);
        break;
    }
    case CMD_EDITOR:
        ui_editor_command(u);
        break;
    case CMD_CLEAR:
        clearok(curscr, TRUE);
        break;
    case CMD_QUIT:
        u->quit = true;
        break;
    case CMD_COUNT:
        break;
    }
    u->dirty = true;
}

