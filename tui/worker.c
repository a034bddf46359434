/* worker.c - the generation thread and a turn around it, and the host
 * memory bandwidth probe thread.
 *
 * A turn: ui_start_turn (UI thread) saves your message through the
 * conversation (conv_begin_turn) and starts the worker, which only runs
 * engine_chat, streaming into ui.stream; the UI saves the reply as it grows
 * (ui_save_progress, about once a second) and, when the worker is done,
 * joins it and commits the reply with its figures (conv_finish_turn).
 */
#include "ui_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "membw.h"
#include "meters.h"

/* ---- the generation worker ---- */

static void wake_ui(struct ui *u)
{
    /* Called with mu held. One byte per wakeup, not per token. */
    if (!u->wake_pending) {
        u->wake_pending = true;
        ssize_t r = write(u->wake[1], "x", 1);
        (void)r;
    }
}

static bool on_piece(const char *text, size_t len, void *user)
{
    struct ui *u = user;
    pthread_mutex_lock(&u->mu);
    if (u->stream_len + len + 1 > u->stream_cap) {
        size_t cap = u->stream_cap ? u->stream_cap * 2 : 4096;
        while (cap < u->stream_len + len + 1)
            cap *= 2;
        char *s = realloc(u->stream, cap);
        if (!s) {
            pthread_mutex_unlock(&u->mu);
            return false; /* out of memory: stop, keep what there is */
        }
        u->stream = s;
        u->stream_cap = cap;
    }
    memcpy(u->stream + u->stream_len, text, len);
    u->stream_len += len;
    u->stream[u->stream_len] = 0;
    /* No wake-up per token: while a reply runs the UI wakes every frame
     * anyway, and a wake-up per token would preempt an engine thread on
     * machines whose cores the CPU backend keeps busy. */
    pthread_mutex_unlock(&u->mu);
    return true;
}

/* The engine's prefill report: tokens read of the total. No wake-up: the
 * UI samples it with the meters, every frame while a turn runs. */
static void on_prefill(uint64_t done, uint64_t total, void *user)
{
    struct ui *u = user;
    double t = ui_now();
    pthread_mutex_lock(&u->mu);
    if (done == 0)
        u->pf_t0 = t;
    u->pf_live.done = done;
    u->pf_live.total = total;
    u->pf_live.elapsed_s = t - u->pf_t0;
    u->pf_live.active = done < total;
    pthread_mutex_unlock(&u->mu);
}

static void on_engine_notice(const char *message, void *user)
{
    struct ui *u = user;
    pthread_mutex_lock(&u->mu);
    snprintf(u->notice, sizeof u->notice, "%s", message);
    u->notice_new = true;
    wake_ui(u);
    pthread_mutex_unlock(&u->mu);
}

static void *worker_main(void *arg)
{
    struct ui *u = arg;
    struct engine_turn_params tp = {
        .sampling = u->o.sampling,
        .max_tokens = u->o.max_tokens,
        .on_piece = on_piece,
        .on_notice = on_engine_notice,
        .on_prefill = on_prefill,
        .user = u,
    };
    char *reply = NULL;
    char err[512] = "";
    int rc = engine_chat(u->e, u->job_text, &tp, &reply, err, sizeof err);
    pthread_mutex_lock(&u->mu);
    u->worker_rc = rc;
    snprintf(u->worker_err, sizeof u->worker_err, "%s", err);
    u->worker_reply = reply;
    u->worker_done = true;
    wake_ui(u);
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

/* ---- the memory bandwidth probe ---- */

static void *bw_main(void *arg)
{
    struct ui *u = arg;
    struct membw_figure bw;
    bool ok = membw_measure(MEMBW_DEFAULT_BYTES, u->info->n_threads, MEMBW_DEFAULT_PASSES,
                            &u->bw_cancel, &bw);
    pthread_mutex_lock(&u->mu);
    u->bw_result = ok ? bw.median : 0;
    u->bw_done = true;
    wake_ui(u);
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

/* Starts the probe if a figure is wanted and the engine has been idle for
 * BW_DELAY_S. */
void ui_bw_maybe_start(struct ui *u)
{
    if (!u->bw_wanted || u->bw_running || u->busy || ui_now() < u->bw_after)
        return;
    atomic_store(&u->bw_cancel, 0);
    u->bw_done = false; /* no probe thread exists to race with */
    if (pthread_create(&u->bw_thread, NULL, bw_main, u) != 0) {
        u->bw_wanted = false; /* the meter stays n/a */
        return;
    }
    u->bw_running = true;
}

/* Joins a probe that has finished, or with CANCEL calls a running one off
 * and joins it (its threads stop within a 1 MiB copy, well under a
 * millisecond), so the engine about to work has the memory to itself. A
 * called-off probe runs again once the engine has been idle BW_DELAY_S; one
 * that failed on its own (no memory for the buffers) is not retried. */
void ui_bw_collect(struct ui *u, bool cancel)
{
    if (!u->bw_running)
        return;
    pthread_mutex_lock(&u->mu);
    bool done = u->bw_done;
    pthread_mutex_unlock(&u->mu);
    if (!done && !cancel)
        return;
    if (!done)
        atomic_store(&u->bw_cancel, 1);
    pthread_join(u->bw_thread, NULL);
    u->bw_running = false;
    if (u->bw_result > 0) {
        u->bandwidth = u->bw_result;
        u->bw_wanted = false;
        u->dirty = true;
        membw_cache_put(u->info->device, u->info->n_threads, u->bw_result);
    } else if (!done) {
        u->bw_after = ui_now() + BW_DELAY_S;
    } else {
        u->bw_wanted = false;
    }
}

/* ---- a turn ---- */

static void start_worker(struct ui *u, const char *text);

/* Saves TEXT as your message, shows it with an empty reply and starts the
 * worker on it; a failure to save only warns ("not saving: ..."). */
void ui_start_turn(struct ui *u, const char *text)
{
    if (u->busy)
        return;
    ui_bw_collect(u, true);
    int64_t user_id = 0;
    if (conv_begin_turn(&u->conv, text, &u->o, &user_id) != 0)
        ui_notice(u, MSG_ERROR, "not saving: %s", u->conv.err);
    struct msg *um = ui_add_msg(u, MSG_USER, text);
    if (um)
        um->hist_id = user_id;
    start_worker(u, text);
}

/* /retry: the user's message is on screen already and the reply row opened
 * (conv_begin_retry); the new reply joins the turn's variants. */
void ui_start_retry(struct ui *u, const char *text)
{
    if (u->busy)
        return;
    ui_bw_collect(u, true);
    start_worker(u, text);
}

static void start_worker(struct ui *u, const char *text)
{
    free(u->job_text);
    u->job_text = strdup(text);
    pthread_mutex_lock(&u->mu);
    u->stream_len = 0;
    if (u->stream)
        u->stream[0] = 0;
    u->worker_done = false;
    u->worker_reply = NULL;
    u->pf_live = (struct prefill_view){.why = u->reread_why};
    u->pf = u->pf_live;
    pthread_mutex_unlock(&u->mu);
    struct msg *rm = ui_add_msg(u, MSG_ASSISTANT, NULL);
    if (rm)
        rm->hist_id = u->conv.saving ? u->conv.reply_id : 0;
    msgs_number_variants(&u->msgs);
    u->scroll = 0;
    u->last_save = ui_now();
    struct gpu_sample g;
    gpu_mon_sample(u->gpu, &g);
    u->energy0 = g.energy_valid ? g.energy_j : NAN;
    u->jpt = NAN;
    if (!u->job_text || pthread_create(&u->thread, NULL, worker_main, u) != 0) {
        struct msg *m = &u->msgs.v[u->msgs.n - 1];
        m->text = strdup("");
        m->end = HIST_END_ERROR;
        ui_notice(u, MSG_ERROR, "cannot start the generation thread");
        return;
    }
    u->busy = true;
    ui_sample_meters(u);
}

/* Joins a finished worker and commits the reply. */
/* Returns whether the turn ended without an error. */
static bool finish_turn(struct ui *u)
{
    pthread_join(u->thread, NULL);
    u->busy = false;
    u->bw_after = ui_now() + BW_DELAY_S;
    pthread_mutex_lock(&u->mu);
    char *reply = u->worker_reply;
    u->worker_reply = NULL;
    int rc = u->worker_rc;
    char err[512];
    snprintf(err, sizeof err, "%s", u->worker_err);
    if (!reply)
        reply = strndup(u->stream ? u->stream : "", u->stream_len);
    /* A prompt read to its end has taken the re-read in; one cut short
     * (cancelled, failed) is read again, for the same reason, next time. */
    bool read_in = u->pf_live.total > 0 && u->pf_live.done >= u->pf_live.total;
    u->pf_live.active = false;
    pthread_mutex_unlock(&u->mu);
    if (read_in)
        u->reread_why = NULL;
    ui_sample_meters(u);
    struct msg *m = &u->msgs.v[u->msgs.n - 1];
    m->text = reply ? reply : strdup("");
    m->end = conv_end(rc, &u->st);
    /* The engine stops with LENGTH for both limits: the reply's own
     * (max_tokens) or a full context; the marker says which. */
    if (m->end == HIST_END_LENGTH)
        m->cut = u->o.max_tokens > 0 && u->st.gen_tokens >= u->o.max_tokens ? MSG_CUT_MAX_TOKENS : MSG_CUT_CONTEXT;
    if (u->st.turns_dropped > 0)
        msgs_mark_dropped(&u->msgs, u->st.turns_dropped);
    if (u->gs.energy_valid && !isnan(u->energy0))
        u->jpt = meters_joules_per_token(u->gs.energy_j - u->energy0, u->st.gen_tokens);
    if (u->conv.saving) {
        if (conv_finish_turn(&u->conv, m->text, &u->st, m->end) != 0)
            ui_notice(u, MSG_ERROR, "not saving: %s", u->conv.err);
        ui_refresh_sessions(u); /* the first message titles the session */
    }
    if (rc != 0)
        ui_notice(u, MSG_ERROR, "generation failed: %s", err[0] ? err : "unknown error");
    else if (m->end == HIST_END_CANCELLED)
        ui_status(u, TH_NOTICE, "reply stopped; what was generated is kept");
    u->dirty = true;
    return rc == 0;
}

void ui_send_queued(struct ui *u, bool ok)
{
    if (!u->queued || u->busy)
        return;
    char *q = u->queued;
    u->queued = NULL;
    u->dirty = true;
    if (ok) {
        ui_start_turn(u, q);
    } else {
        /* after a failed turn the next would likely fail too: the text goes
         * back where it can be edited or sent again, not lost */
        size_t len, point;
        const char *cur = ui_input_text(&len, &point);
        size_t n = strlen(q) + len + 2;
        char *t = malloc(n);
        if (t) {
            snprintf(t, n, "%s%s%.*s", q, len ? "\n" : "", (int)len, cur);
            ui_set_input(u, t);
            free(t);
        }
        ui_status(u, TH_ERROR, "the queued message was not sent (the reply failed): it is back in the input line");
    }
    free(q);
}

/* Handles what the worker signalled through the pipe. */
void ui_worker_events(struct ui *u)
{
    char buf[64];
    while (read(u->wake[0], buf, sizeof buf) > 0)
        ;
    pthread_mutex_lock(&u->mu);
    u->wake_pending = false;
    bool done = u->worker_done;
    char msg[512] = "";
    if (u->notice_new) {
        snprintf(msg, sizeof msg, "%s", u->notice);
        u->notice_new = false;
    }
    pthread_mutex_unlock(&u->mu);
    if (msg[0] && u->msgs.n > 0) {
        /* Show it above the reply it concerns, at the moment it happens. */
        struct msg live = u->msgs.v[u->msgs.n - 1];
        u->msgs.n--;
        ui_notice(u, MSG_NOTICE, "%s", msg); /* the engine names the cause */
        struct msg *m = ui_add_msg(u, live.kind, NULL);
        if (m)
            *m = live;
    }
    u->dirty = true;
    bool ended = done && u->busy, ok = ended && finish_turn(u);
    ui_bw_collect(u, false);
    if (ended)
        ui_send_queued(u, ok);
}

/* Saves the streaming reply about once every SAVE_S (hist_reply_progress
 * decides), copying it out of the lock so the worker never waits on SQLite.
 * A failed save is retried at the next one. */
void ui_save_progress(struct ui *u)
{
    if (!u->busy || !u->conv.saving || ui_now() - u->last_save < SAVE_S)
        return;
    u->last_save = ui_now();
    pthread_mutex_lock(&u->mu);
    char *copy = strndup(u->stream ? u->stream : "", u->stream_len);
    pthread_mutex_unlock(&u->mu);
    if (copy && conv_save_progress(&u->conv, copy, strlen(copy)) != 0)
        ui_status(u, TH_ERROR, "not saving the reply: %s (will retry)", hist_last_error(u->h));
    free(copy);
}

void ui_cancel_and_wait(struct ui *u)
{
    if (!u->busy)
        return;
    engine_cancel(u->e);
    finish_turn(u);
}

