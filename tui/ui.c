/* ui.c - the full-screen chat: tui_run sets the screen up, loads the model
 * with a progress bar, opens the history and runs the main loop, which
 * waits on the terminal and the worker's pipe, dispatches keys and worker
 * events, saves the streaming reply and redraws at most 1/FRAME_S times a
 * second; then it tears everything down and restores the terminal. Status
 * and notices live here too. How the files of the chat screen divide the
 * work, and the thread rules, are in ui_internal.h; geometry, wrapping,
 * Markdown, meter arithmetic, commands and themes are the pure modules
 * (layout, compose, msgs, meters, commands, theme, config).
 */
#include "tui.h"
#include "ui_internal.h"

#include <curses.h>
#include <term.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "launch.h"
#include "membw.h"

double ui_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- messages and the status line ---- */

struct msg *ui_add_msg(struct ui *u, enum msg_kind kind, const char *text)
{
    struct msg *m = msgs_add(&u->msgs, kind, text);
    if (m) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts); /* a resumed message gets its stored time instead */
        m->created_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        u->dirty = true;
    }
    return m;
}

void ui_clear_msgs(struct ui *u)
{
    msgs_clear(&u->msgs);
    u->scroll = 0;
    u->dirty = true;
}

/* One reading a second for the inspector and the monitor log, whether the
 * inspector is open or not (a reading is a few /proc and NVML reads, tens of
 * microseconds), so it opens with the last minutes already drawn. */
void ui_monitor_tick(struct ui *u)
{
    double t = ui_now();
    if (!u->mon || !u->insp || t - u->last_mon < 1.0)
        return;
    u->last_mon = t;
    struct mon_reading r;
    monitor_set_bandwidth(u->mon, u->bandwidth); /* the probe may have measured it since */
    monitor_sample(u->mon, &r);
    insp_push(u->insp, &r);
    if (u->insp_open)
        u->dirty = true;
}

void ui_toggle_inspector(struct ui *u)
{
    u->insp_open = !u->insp_open && u->mon && u->insp;
    if (u->insp_open && u->insp->n == 0) {
        u->last_mon = 0; /* a first reading at once */
        ui_monitor_tick(u);
    }
    u->dirty = true;
}

void ui_status(struct ui *u, int elem, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->status, sizeof u->status, fmt, ap);
    va_end(ap);
    u->status_elem = elem;
    u->status_until = ui_now() + 5; /* or until the next key (ui_handle_key) */
    u->dirty = true;
}

void ui_notice(struct ui *u, enum msg_kind kind, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ui_add_msg(u, kind, buf);
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    ui_status(u, kind == MSG_ERROR ? TH_ERROR : TH_NOTICE, "%s", buf);
    u->scroll = 0;
}

/* ---- setup and the loop ---- */

/* Whether the terminal is gone, after poll reported REVENTS on it and
 * getch found no key: a hang-up or error without POLLIN, or "readable" with
 * nothing to read (end of input: a closed pty reads 0 or EIO, and a
 * terminal that vanished without SIGHUP, such as a pty whose holder was
 * killed, would otherwise wake poll at once forever). */
static bool terminal_gone(short revents)
{
    if (revents & POLLNVAL)
        return true;
    if (!(revents & (POLLIN | POLLHUP | POLLERR)))
        return false;
    int pending = 0;
    if (ioctl(STDIN_FILENO, FIONREAD, &pending) != 0)
        return true;
    return pending == 0;
}

static void load_theme_names(struct ui *u)
{
    const char *const *b = theme_builtin_names();
    for (size_t i = 0; b[i] && u->n_themes < 16; i++)
        u->themes[u->n_themes++] = strdup(b[i]);
    u->n_themes = theme_user_names(NULL, u->themes, u->n_themes, 32);
}

static void ui_free(struct ui *u)
{
    for (size_t i = 0; i < u->n_cands; i++)
        free(u->cands[i]);
    for (size_t i = 0; i < u->n_themes; i++)
        free(u->themes[i]);
    msgs_free(&u->msgs);
    free(u->stream);
    free(u->job_text);
    free(u->paste);
    free(u->pending_input);
    free(u->queued);
    overlay_close(&u->ov);
    compose_free(&u->comp);
    hist_sessions_free(u->sessions, u->n_sessions);
    free(u->sb_idx);
    ui_models_free(u);
    monitor_free(u->mon); /* before the GPU monitor it borrows */
    free(u->insp);
    gpu_mon_free(u->gpu);
    engine_free(u->e);
    hist_close(u->h);
    if (u->wake[0] >= 0)
        close(u->wake[0]);
    if (u->wake[1] >= 0)
        close(u->wake[1]);
    pthread_mutex_destroy(&u->mu);
    free(u);
}

/* Opens the history (conv_open_history); a failure shows "not saving" and
 * chatting goes on. */
static void open_history(struct ui *u)
{
    char err[1024];
    u->h = conv_open_history(&u->o, err, sizeof err);
    if (u->h)
        return;
    if (!err[0])
        ui_status(u, TH_NOTICE, "history is off (--no-history): this conversation is not saved");
    else
        ui_notice(u, MSG_ERROR, "not saving: %s", err);
}

/* Whether TERM names a terminal that can address the cursor (terminfo's
 * cup): without it (TERM=dumb, an Emacs shell buffer) ncurses would draw
 * every pane on one scrolling line. */
static bool terminal_addressable(void)
{
    int terr = 0;
    if (setupterm(NULL, STDOUT_FILENO, &terr) != OK)
        return false;
    const char *cup = tigetstr("cup");
    bool ok = cup && cup != (const char *)-1;
    del_curterm(cur_term);
    return ok;
}

int tui_run(const struct kv_options *opt, char *err, size_t errlen)
{
    err[0] = 0;
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        snprintf(err, errlen, "the chat screen needs a terminal (use -p TEXT for scripts)");
        return 1;
    }
    if (!terminal_addressable()) {
        const char *t = getenv("TERM");
        snprintf(err, errlen, "TERM=%s cannot move the cursor: the chat screen needs it; use -p TEXT",
                 t && *t ? t : "(unset)");
        return 1;
    }
    struct ui *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    u->o = *opt;
    u->timestamps = opt->timestamps;
    u->wake[0] = u->wake[1] = -1;
    u->energy0 = u->jpt = NAN;
    pthread_mutex_init(&u->mu, NULL);
    if (pipe(u->wake) != 0) {
        snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
        ui_free(u);
        return 1;
    }
    fcntl(u->wake[0], F_SETFL, O_NONBLOCK);
    fcntl(u->wake[1], F_SETFL, O_NONBLOCK);
    if (!u->o.seed_set)
        u->o.sampling.seed = kv_random_seed();

    char theme_err[512] = "";
    if (theme_load(u->o.theme, NULL, &u->theme, theme_err, sizeof theme_err) != 0)
        theme_default(&u->theme); /* shown once the screen is up */
    load_theme_names(u);

    /* Wide characters need a UTF-8 locale (ncursesw and wcwidth); where the
     * environment names none, C.UTF-8 is the safe bet on any current terminal. */
    setlocale(LC_ALL, "");
    if (MB_CUR_MAX == 1)
        setlocale(LC_CTYPE, "C.UTF-8");
    term_save();
    term_install_signals();
    set_escdelay(25);
    if (!initscr()) {
        snprintf(err, errlen, "cannot start the terminal screen (is TERM set?)");
        ui_free(u);
        return 1;
    }
    raw();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    ui_input_define_keys();
    mousemask(BUTTON1_CLICKED | BUTTON1_PRESSED | BUTTON4_PRESSED
#ifdef BUTTON5_PRESSED
                  | BUTTON5_PRESSED
#endif
              ,
              NULL);
    mouseinterval(0);
    ui_apply_theme(u);
    fputs("\033[?2004h", stdout); /* bracketed paste */
    fflush(stdout);

    /* Load the model with a progress bar. */
    char path[4096], lerr[5200] = "";
    if (u->o.server[0])
        snprintf(path, sizeof path, "%s", u->o.server); /* the label while connecting */
    else
        kv_model_path(&u->o, path, sizeof path);
    struct load_progress lp = {u, ui_now(), 0, strrchr(path, '/') ? strrchr(path, '/') + 1 : path};
    ui_load_progress(0, 0, &lp);
    u->e = kv_engine_open(&u->o, ui_load_progress, &lp, path, sizeof path, lerr, sizeof lerr);
    int rc = 0;
    if (!u->e) {
        ui_show_fatal(u, "The model could not be loaded", lerr);
        snprintf(err, errlen, "%s", lerr);
        rc = 1;
        goto out;
    }
    u->info = engine_info(u->e);
    if (strcmp(u->info->backend, "cuda") == 0 || gpu_mon_recorded())
        u->gpu = gpu_mon_new(0);
    u->bandwidth = u->o.mem_bandwidth_gbs > 0 ? u->o.mem_bandwidth_gbs * 1e9 : gpu_mon_bandwidth(u->gpu);
    u->mon = monitor_new(u->e, u->gpu, u->bandwidth);
    u->insp = calloc(1, sizeof *u->insp);
    if (u->mon && u->o.monitor_log[0]) {
        char merr[4300];
        if (monitor_log_open(u->mon, u->o.monitor_log, merr, sizeof merr) != 0)
            ui_notice(u, MSG_ERROR, "%s", merr);
    }
    /* On the CPU the host's memory is the device: measure it, once the
     * screen is up and the engine idle (see ui_bw_collect). */
    u->bw_wanted = u->bandwidth <= 0 && strcmp(u->info->backend, "cuda") != 0;
    if (u->bw_wanted) {
        double cached = membw_cache_get(u->info->device, u->info->n_threads);
        if (cached > 0) {
            u->bandwidth = cached;
            u->bw_wanted = false;
        }
    }
    u->bw_after = ui_now() + BW_DELAY_S;

    open_history(u);
    conv_init(&u->conv, u->e, u->h);
    if (theme_err[0])
        ui_notice(u, MSG_ERROR, "%s (using the default theme)", theme_err);
    if (u->info->backend_note[0])
        ui_status(u, TH_NOTICE, "%s", u->info->backend_note);
    if (ui_remote(u) && u->o.insecure)
        ui_status(u, TH_ERROR, "%s", KV_INSECURE_WARNING);
    if (u->info->warning[0])
        ui_notice(u, MSG_NOTICE, "warning: %s", u->info->warning);
    char think_note[256];
    if (kv_think_note(&u->o, u->info, think_note, sizeof think_note))
        ui_notice(u, MSG_NOTICE, "%s", think_note);
    if (u->o.resume != KV_RESUME_NONE) {
        if (!u->h) {
            ui_notice(u, MSG_ERROR, "cannot resume: the history database is not available");
        } else {
            char rerr[512];
            int64_t sid = kv_session_resolve(u->h, &u->o, rerr, sizeof rerr);
            if (sid < 0)
                ui_notice(u, MSG_ERROR, "%s", rerr);
            else
                ui_resume_session(u, sid, false); /* --system on the command line wins */
        }
    } else {
        engine_set_system(u->e, u->o.system_set ? u->o.system : NULL);
        if (u->o.system_set && u->o.system[0])
            ui_add_msg(u, MSG_SYSTEM, u->o.system);
    }

    ui_input_setup(u);
    ui_draw_frame(u);

    bool hung_up = false;
    while (!u->quit && !term_signal()) {
        double t = ui_now();
        double wait = u->busy ? FRAME_S : IDLE_METER_S;
        if (u->dirty)
            wait = u->last_frame + FRAME_S - t;
        double count_at = u->busy ? -1 : input_count_next(&u->icount);
        if (count_at >= 0 && count_at - t < wait)
            wait = count_at - t; /* a token count held back by the rate limit */
        if (wait < 0)
            wait = 0;
        struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {u->wake[0], POLLIN, 0}};
        int pr = poll(fds, 2, (int)(wait * 1000));
        if (pr < 0 && errno != EINTR)
            break;
        if (pr > 0 && (fds[1].revents & POLLIN))
            ui_worker_events(u);
        /* Keys (and KEY_RESIZE after SIGWINCH interrupted poll). */
        nodelay(stdscr, TRUE);
        int ch;
        bool keyed = false;
        while (!u->quit && (ch = getch()) != ERR) {
            ui_handle_key(u, ch);
            keyed = true;
            nodelay(stdscr, TRUE);
        }
        if (pr > 0 && !keyed && terminal_gone(fds[0].revents)) {
            hung_up = true; /* as SIGHUP: the reply so far is saved below */
            break;
        }
        ui_save_progress(u);
        ui_bw_maybe_start(u);
        ui_monitor_tick(u);
        t = ui_now();
        count_at = u->busy ? -1 : input_count_next(&u->icount);
        if (count_at >= 0 && t >= count_at)
            ui_input_count_tick(u);
        if (keyed && u->dirty)
            ui_draw_frame(u); /* answer keys at once */
        else if (t - u->last_frame >= FRAME_S && (u->dirty || u->busy || t - u->last_meter >= IDLE_METER_S))
            ui_draw_frame(u);
    }
    if (term_signal())
        rc = 128 + term_signal();
    else if (hung_up)
        rc = 128 + SIGHUP;
    ui_cancel_and_wait(u);
    ui_bw_collect(u, true);
    ui_input_teardown(u);
out:
    fputs("\033[?2004l", stdout);
    fflush(stdout);
    endwin();
    term_restore();
    ui_free(u);
    return rc;
}
