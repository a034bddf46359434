/* input.c - the input line and the keys: GNU readline's callback interface
 * fed one byte at a time, bracketed paste, Alt-Enter and a trailing
 * backslash for new lines, scrolling, Esc and Ctrl-C, Tab completion, and
 * the line handler that sends a message or runs a command.
 *
 * Readline never touches the terminal: its prep/deprep hooks are no-ops,
 * keys reach it through rl_getc_function, and its redisplay is ours (the
 * input pane, draw.c).
 */
#include "ui_internal.h"

#include "sidebar.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "cli.h"
#include "commands.h"
#include "fit.h"
#include "xdg.h"

/* Readline's hooks (getc, redisplay, line handler, completion) take no user
 * pointer, so they find the one running UI here. Set by ui_input_setup,
 * cleared by ui_input_teardown. */
static struct ui *g_ui;

#define KEY_PASTE_BEGIN (KEY_MAX + 1)
#define KEY_PASTE_END (KEY_MAX + 2)

void ui_input_define_keys(void)
{
    define_key("\033[200~", KEY_PASTE_BEGIN);
    define_key("\033[201~", KEY_PASTE_END);
}

const char *ui_input_text(size_t *len, size_t *point)
{
    *len = (size_t)(rl_end > 0 ? rl_end : 0);
    *point = (size_t)(rl_point > 0 ? rl_point : 0);
    return rl_line_buffer ? rl_line_buffer : "";
}

/* Puts TEXT in the input line, cursor at the end, for the user to edit and
 * send (/edit, the editor). Inside the line handler that cannot be done at
 * once: when the handler returns, readline clears any line left in its
 * buffer, so the text waits in pending_input until feed() is back. */
void ui_set_input(struct ui *u, const char *text)
{
    if (u->in_line_handler) {
        free(u->pending_input);
        u->pending_input = strdup(text);
        return;
    }
    rl_replace_line(text, 0);
    rl_point = rl_end;
}

/* ---- readline glue ---- */

static int rl_getc_hook(FILE *f)
{
    (void)f;
    struct ui *u = g_ui;
    u->rl_avail = false;
    return u->rl_char;
}

static int rl_avail_hook(void)
{
    return g_ui->rl_avail;
}

static void rl_redisplay_hook(void)
{
    ui_draw_input_only(g_ui);
}

static void rl_noop_prep(int meta)
{
    (void)meta;
}

static void rl_noop_deprep(void)
{
}

static void on_line_run(struct ui *u, char *line);

static void on_line(char *line)
{
    struct ui *u = g_ui;
    u->in_line_handler = true;
    on_line_run(u, line);
    u->in_line_handler = false;
}

/* A message sent while a reply streams waits for it (ui_send_queued). A
 * second one is appended on a new line rather than replacing the first:
 * replacing would throw away text the user meant to send. */
static void queue_line(struct ui *u, const char *text)
{
    size_t old = u->queued ? strlen(u->queued) : 0, n = strlen(text);
    char *q = realloc(u->queued, old + n + 2);
    if (!q) {
        ui_status(u, TH_ERROR, "out of memory: the message was not queued");
        ui_set_input(u, text); /* back in the input line: nothing typed is lost */
        return;
    }
    if (old)
        q[old++] = '\n';
    memcpy(q + old, text, n + 1);
    u->queued = q;
    ui_status(u, TH_NOTICE, "queued: sent when the reply ends (Esc takes it back to edit)");
}

/* Esc with a message queued: it comes back into the input line (before what
 * is typed there) to be edited, sent again with Enter or cleared with
 * Ctrl-C; the reply goes on. */
static void unqueue(struct ui *u)
{
    size_t len, point;
    const char *cur = ui_input_text(&len, &point);
    size_t n = strlen(u->queued) + len + 2;
    char *t = malloc(n);
    if (!t)
        return;
    snprintf(t, n, "%s%s%.*s", u->queued, len ? "\n" : "", (int)len, cur);
    free(u->queued);
    u->queued = NULL;
    ui_set_input(u, t);
    free(t);
    ui_status(u, TH_NOTICE, "unqueued: edit and press Enter to queue it again, Ctrl-C clears it");
    u->dirty = true;
}

static void on_line_run(struct ui *u, char *line)
{
    if (!line) { /* Ctrl-D on an empty line */
        u->quit = true;
        return;
    }
    bool blank = true;
    for (const char *p = line; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n')
            blank = false;
    if (blank) {
        free(line);
        return;
    }
    char uerr[128];
    if (!kv_check_text("the line", line, uerr, sizeof uerr)) {
        ui_status(u, TH_ERROR, "%s", uerr);
        ui_set_input(u, line); /* back in the input line: nothing typed is lost */
        free(line);
        return;
    }
    add_history(line);
    static struct command cmd; /* 12 KiB: kept off the stack of a readline callback */
    size_t off;
    char err[256];
    enum cmd_parse_result r = cmd_parse(line, &cmd, &off, err, sizeof err);
    if (r == CMD_ERROR)
        ui_status(u, TH_ERROR, "%s", err);
    else if (r == CMD_OK)
        ui_run_command(u, &cmd);
    else if (u->busy)
        queue_line(u, line + off);
    else
        ui_start_turn(u, line + off);
    free(line);
    u->dirty = true;
}

static char *complete_gen(const char *text, int state)
{
    static size_t i;
    (void)text;
    if (!state)
        i = 0;
    return i < g_ui->n_cands ? strdup(g_ui->cands[i++]) : NULL;
}

static char **complete_hook(const char *text, int start, int end)
{
    struct ui *u = g_ui;
    rl_attempted_completion_over = 1; /* never complete file names */
    for (size_t i = 0; i < u->n_cands; i++)
        free(u->cands[i]);
    u->n_cands = 0;
    const char *out[64];
    size_t ws;
    size_t n = cmd_complete(rl_line_buffer, (size_t)end, (const char *const *)u->themes, u->n_themes, out, 64, &ws);
    if (!n && strncmp(rl_line_buffer, "/model ", 7) == 0) {
        char err[512];
        if (!u->models_read)
            ui_models_read(u, err, sizeof err); /* a server asked once, not at every Tab */
        n = cmd_complete_model(rl_line_buffer, (size_t)end, (const char *const *)u->model_names,
                               u->n_models, out, 64, &ws);
    }
    if (n > 64)
        n = 64;
    /* Readline's word starts at START; ours may be later (after the '/'),
     * or earlier (a model's name with a space in it). */
    size_t pre = ws > (size_t)start ? ws - (size_t)start : 0;
    size_t skip = ws < (size_t)start ? (size_t)start - ws : 0;
    for (size_t i = 0; i < n; i++) {
        if (strlen(out[i]) < skip)
            continue;
        char *c = malloc(pre + strlen(out[i]) + 1);
        if (!c)
            break;
        memcpy(c, rl_line_buffer + start, pre);
        strcpy(c + pre, out[i] + skip);
        u->cands[u->n_cands++] = c;
    }
    if (!u->n_cands)
        return NULL;
    return rl_completion_matches(text, complete_gen);
}

/* The matches on the status line: as many as its width holds, then
 * "+N more", never a name cut in half. */
static void show_matches_hook(char **matches, int num, int max)
{
    (void)max;
    char head[32], buf[512];
    snprintf(head, sizeof head, "%d matches:", num);
    int width = (g_ui->lay.status.w ? g_ui->lay.status.w : g_ui->cols) - 1; /* draw_status starts one in */
    fit_list(head, (const char *const *)matches + 1, num > 0 ? (size_t)num : 0, width, buf, sizeof buf);
    ui_status(g_ui, TH_NOTICE, "%s", buf);
    ui_draw_frame(g_ui);
}

static void feed(struct ui *u, int c)
{
    u->rl_char = c;
    u->rl_avail = true;
    rl_callback_read_char();
    u->rl_avail = false;
    if (u->pending_input) {
        char *t = u->pending_input;
        u->pending_input = NULL;
        ui_set_input(u, t);
        free(t);
        rl_redisplay_hook();
    }
}

static void feed_str(struct ui *u, const char *s)
{
    while (*s)
        feed(u, (unsigned char)*s++);
}

void ui_input_setup(struct ui *u)
{
    g_ui = u;
    rl_readline_name = "kvchat";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_prep_term_function = rl_noop_prep;
    rl_deprep_term_function = rl_noop_deprep;
    rl_getc_function = rl_getc_hook;
    rl_input_available_hook = rl_avail_hook;
    rl_redisplay_function = rl_redisplay_hook;
    rl_attempted_completion_function = complete_hook;
    rl_completion_display_matches_hook = show_matches_hook;
    rl_outstream = fopen("/dev/null", "w"); /* nothing readline prints may reach the screen */
    rl_instream = stdin;
    using_history();
    stifle_history(1000);
    char dir[4096] = "";
    if (kv_xdg_dir(KV_XDG_STATE, dir, sizeof dir) == 0) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", dir);
        char *sl = strrchr(parent, '/');
        if (sl) {
            *sl = 0;
            mkdir(parent, 0700);
        }
        mkdir(dir, 0700);
        snprintf(u->hist_file, sizeof u->hist_file, "%s/input_history", dir);
        read_history(u->hist_file);
    }
    rl_callback_handler_install("", on_line);
    rl_variable_bind("bell-style", "none");
    rl_variable_bind("show-all-if-ambiguous", "on");
    rl_variable_bind("enable-bracketed-paste", "off"); /* we handle paste ourselves */
}

void ui_input_teardown(struct ui *u)
{
    rl_callback_handler_remove();
    /* A message still queued at the end (kvchat left mid-reply) is kept
     * where Up finds it next time, not lost. */
    if (u->queued)
        add_history(u->queued);
    if (u->hist_file[0])
        write_history(u->hist_file);
    if (rl_outstream && rl_outstream != stdout)
        fclose(rl_outstream);
    rl_outstream = NULL;
    g_ui = NULL;
}

/* ---- keys ---- */

static void scroll_by(struct ui *u, int n)
{
    u->scroll += n;
    if (u->scroll < 0)
        u->scroll = 0;
    u->dirty = true; /* draw_conversation clamps the top */
}

/* Terminals paste line breaks as CR; text copied from a CRLF file may
 * arrive as CR LF. Either way, one LF in the message. */
static void paste_add(struct ui *u, int ch)
{
    bool lf_after_cr = ch == '\n' && u->paste_cr;
    u->paste_cr = ch == '\r';
    if (lf_after_cr)
        return;
    if (u->paste_len + 2 > u->paste_cap) {
        size_t cap = u->paste_cap ? u->paste_cap * 2 : 4096;
        char *p = realloc(u->paste, cap);
        if (!p)
            return;
        u->paste = p;
        u->paste_cap = cap;
    }
    u->paste[u->paste_len++] = ch == '\r' ? '\n' : (char)ch;
}

static void handle_escape(struct ui *u)
{
    /* ncurses hands an unknown escape sequence over as ESC then the rest:
     * look at what follows to tell Alt-Enter and Alt-keys from a lone Esc. */
    nodelay(stdscr, TRUE);
    int next = getch();
    if (next == ERR) {
        if (u->insp_open) { /* Esc closes the inspector first */
            ui_toggle_inspector(u);
            return;
        }
        if (u->queued) {
            unqueue(u);
        } else if (u->busy) {
            engine_cancel(u->e);
            ui_status(u, TH_NOTICE, "stopping\xE2\x80\xA6");
        }
        return;
    }
    if (next == '\r' || next == '\n' || next == KEY_ENTER) {
        rl_insert_text("\n");
        rl_redisplay_hook();
        return;
    }
    if (next > 255) {
        ui_handle_key(u, next);
        return;
    }
    feed(u, 27);
    feed(u, next);
}

/* /model's picker takes the keys while it is open: arrows, PgUp/PgDn,
 * Home/End move, Enter switches, Esc or Ctrl-C closes it. */
static void pick_key(struct ui *u, int ch)
{
    size_t n = u->n_models, page = u->lay.conv.h > 2 ? (size_t)u->lay.conv.h - 2 : 1;
    u->dirty = true;
    switch (ch) {
    case KEY_UP: u->pick_sel = u->pick_sel > 0 ? u->pick_sel - 1 : 0; return;
    case KEY_DOWN: u->pick_sel = u->pick_sel + 1 < n ? u->pick_sel + 1 : u->pick_sel; return;
    case KEY_PPAGE: u->pick_sel = u->pick_sel > page ? u->pick_sel - page : 0; return;
    case KEY_NPAGE: u->pick_sel = u->pick_sel + page < n ? u->pick_sel + page : (n ? n - 1 : 0); return;
    case KEY_HOME: u->pick_sel = 0; return;
    case KEY_END: u->pick_sel = n ? n - 1 : 0; return;
    case '\r':
    case '\n':
    case KEY_ENTER: ui_model_switch(u, u->pick_sel); return;
    case 3: u->pick_open = false; return;
    case 27:
        /* a lone Esc closes; Esc starting an Alt-key is swallowed whole */
        nodelay(stdscr, TRUE);
        if (getch() == ERR)
            u->pick_open = false;
        return;
    case KEY_RESIZE: ui_draw_frame(u); return;
    default: return;
    }
}

/* A lone Esc, or Esc starting an Alt-key (swallowed whole)? */
static bool lone_escape(void)
{
    nodelay(stdscr, TRUE);
    return getch() == ERR;
}

/* The question on the status line takes the keys: y/N for a delete; a line
 * for a new title (Enter saves, Esc or Ctrl-C cancels, Backspace edits). */
static void prompt_key(struct ui *u, int ch)
{
    u->dirty = true;
    if (ch == KEY_RESIZE) {
        ui_draw_frame(u);
        return;
    }
    if (u->prompt == UI_PROMPT_DELETE) {
        u->prompt = UI_PROMPT_NONE;
        if (ch == 'y' || ch == 'Y')
            ui_delete_session(u, u->prompt_sid);
        else
            ui_status(u, TH_NOTICE, "nothing deleted");
        if (ch == 27)
            lone_escape();
        return;
    }
    size_t n = strlen(u->prompt_buf);
    switch (ch) {
    case '\r':
    case '\n':
    case KEY_ENTER:
        u->prompt = UI_PROMPT_NONE;
        if (u->prompt_buf[0])
            ui_rename_session(u, u->prompt_sid, u->prompt_buf);
        else
            ui_status(u, TH_NOTICE, "not renamed");
        return;
    case 27:
        if (!lone_escape())
            return;
        /* fall through */
    case 3:
        u->prompt = UI_PROMPT_NONE;
        ui_status(u, TH_NOTICE, "not renamed");
        return;
    case KEY_BACKSPACE:
    case 8:
    case 127:
        sidebar_backspace(u->prompt_buf);
        return;
    default:
        /* bytes of UTF-8 as they come; controls are no part of a title */
        if (ch >= 0x20 && ch < 256 && ch != 127 && n + 1 < sizeof u->prompt_buf) {
            u->prompt_buf[n] = (char)ch;
            u->prompt_buf[n + 1] = 0;
        }
        return;
    }
}

/* The rows of the sidebar's list (below its heading and filter line). */
static size_t sidebar_rows(const struct ui *u)
{
    return u->lay.sidebar.h > 2 ? (size_t)u->lay.sidebar.h - 2 : 1;
}

static void sidebar_open_selected(struct ui *u)
{
    if (!u->sb_n)
        return;
    if (u->busy) {
        ui_status(u, TH_ERROR, "a reply is being generated: Esc stops it, then open the session");
        return;
    }
    int64_t sid = u->sessions[u->sb_idx[u->sb_sel]].id;
    ui_bw_collect(u, true); /* resuming makes the engine work: not beside the probe */
    u->bw_after = ui_now() + BW_DELAY_S;
    u->sidebar = false;
    if (ui_resume_session(u, sid, true) != 0)
        u->sidebar = true;
}

/* The sidebar takes the keys while open: arrows, PgUp/PgDn, Home/End move,
 * Enter opens, r renames and d deletes the selected session (once a filter
 * is being typed they are letters of it: start it with / to filter by r or
 * d), other characters filter, Backspace edits, Esc clears the filter and
 * then closes, as F2 does. */
static void sidebar_key(struct ui *u, int ch)
{
    size_t page = sidebar_rows(u);
    u->dirty = true;
    enum sidebar_move mv;
    switch (ch) {
    case KEY_UP: mv = SB_UP; break;
    case KEY_DOWN: mv = SB_DOWN; break;
    case KEY_PPAGE: mv = SB_PAGE_UP; break;
    case KEY_NPAGE: mv = SB_PAGE_DOWN; break;
    case KEY_HOME: mv = SB_HOME; break;
    case KEY_END: mv = SB_END; break;
    case KEY_RESIZE: ui_draw_frame(u); return;
    case '\r':
    case '\n':
    case KEY_ENTER: sidebar_open_selected(u); return;
    case KEY_F(2):
    case 3: u->sidebar = false; return;
    case 27:
        if (!lone_escape())
            return;
        if (u->sb_query[0]) {
            u->sb_query[0] = 0;
            ui_sidebar_refilter(u);
        } else {
            u->sidebar = false;
        }
        return;
    case KEY_BACKSPACE:
    case 8:
    case 127:
        sidebar_backspace(u->sb_query);
        ui_sidebar_refilter(u);
        return;
    default:
        if (!u->sb_query[0] && (ch == 'r' || ch == 'd')) {
            if (!u->sb_n)
                return;
            int64_t sid = u->sessions[u->sb_idx[u->sb_sel]].id;
            if (ch == 'r')
                ui_ask_rename(u, sid);
            else if (u->busy)
                ui_status(u, TH_ERROR, "a reply is being generated: Esc stops it, then delete");
            else
                ui_ask_delete(u, sid);
            return;
        }
        if (!u->sb_query[0] && ch == '/')
            return; /* starts a filter that may begin with r or d */
        size_t n = strlen(u->sb_query);
        if (ch >= 0x20 && ch < 256 && ch != 127 && n + 1 < sizeof u->sb_query) {
            u->sb_query[n] = (char)ch;
            u->sb_query[n + 1] = 0;
            /* refilter once the character is whole */
            if (ch < 0x80 || (ch & 0xC0) == 0x80)
                ui_sidebar_refilter(u);
            u->sb_sel = 0;
        }
        return;
    }
    u->sb_sel = sidebar_move(u->sb_sel, u->sb_n, mv, page);
}

/* A click on a sidebar row selects it; a click on the selected row opens
 * it. Returns whether the click was the sidebar's. */
static bool sidebar_click(struct ui *u, const MEVENT *ev)
{
    struct rect r = u->lay.sidebar;
    if (!u->sidebar || !r.w || ev->x < r.x || ev->x >= r.x + r.w || ev->y < r.y + 2 || ev->y >= r.y + r.h)
        return false;
    size_t row = u->sb_top + (size_t)(ev->y - r.y - 2);
    if (row >= u->sb_n)
        return true;
    u->dirty = true;
    if (row == u->sb_sel)
        sidebar_open_selected(u);
    else
        u->sb_sel = row;
    return true;
}

void ui_open_help(struct ui *u)
{
    if (overlay_open(&u->ov, "Help", cmd_help_text()) != 0)
        ui_status(u, TH_ERROR, "out of memory: cannot show the help");
    u->dirty = true;
}

/* The help or /show overlay takes the keys while it is open. */
static void overlay_key_in(struct ui *u, int ch)
{
    static const struct {
        int key;
        enum overlay_key what;
    } keys[] = {
        {KEY_UP, OVK_UP},          {KEY_DOWN, OVK_DOWN}, {'k', OVK_UP},          {'j', OVK_DOWN},
        {KEY_PPAGE, OVK_PAGE_UP},  {KEY_NPAGE, OVK_PAGE_DOWN}, {' ', OVK_PAGE_DOWN},
        {KEY_HOME, OVK_HOME},      {KEY_END, OVK_END},   {'q', OVK_CLOSE},       {KEY_F(1), OVK_CLOSE},
        {3, OVK_CLOSE},
    };
    if (ch == KEY_RESIZE) {
        ui_draw_frame(u);
        return;
    }
    enum overlay_key k = OVK_OTHER;
    if (ch == 27 && lone_escape())
        k = OVK_CLOSE; /* Esc starting an Alt-key is swallowed whole */
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (keys[i].key == ch)
            k = keys[i].what;
    overlay_key(&u->ov, k, u->lay.conv.h > 1 ? u->lay.conv.h - 1 : 1);
    u->dirty = true;
}

void ui_handle_key(struct ui *u, int ch)
{
    /* A key ends the notice on the status line: the hints come back; what
     * the key itself does may set a new one. */
    if (ch != KEY_RESIZE && ch != KEY_MOUSE && u->status_until > 0 && !u->in_paste) {
        u->status_until = 0;
        u->dirty = true;
    }
    /* Too small, neither the input nor the picker is on screen: Enter, which
     * would send or switch unseen, waits (the text stays in the input). */
    if (u->lay.too_small && !u->in_paste && (ch == '\r' || ch == '\n' || ch == KEY_ENTER))
        return;
    if (u->pick_open && !u->in_paste && ch != KEY_PASTE_BEGIN) {
        pick_key(u, ch);
        return;
    }
    if (u->ov.open && !u->in_paste && ch != KEY_PASTE_BEGIN) {
        overlay_key_in(u, ch);
        return;
    }
    if (u->prompt && !u->in_paste && ch != KEY_PASTE_BEGIN && ch != KEY_MOUSE) {
        prompt_key(u, ch);
        return;
    }
    if (u->sidebar && !u->in_paste && ch != KEY_PASTE_BEGIN && ch != KEY_MOUSE) {
        sidebar_key(u, ch);
        return;
    }
    if (u->in_paste) {
        if (ch == KEY_PASTE_END) {
            u->in_paste = false;
            if (u->paste_len) {
                u->paste[u->paste_len] = 0;
                rl_insert_text(u->paste);
                u->paste_len = 0;
            }
            rl_redisplay_hook();
        } else if (ch >= 0 && ch < 256) {
            paste_add(u, ch);
        }
        return;
    }
    switch (ch) {
    case KEY_PASTE_BEGIN:
        u->in_paste = true;
        u->paste_len = 0;
        u->paste_cr = false;
        return;
    case KEY_PASTE_END:
        return;
    case KEY_RESIZE:
        u->dirty = true;
        ui_draw_frame(u);
        return;
    case KEY_PPAGE:
        scroll_by(u, u->lay.conv.h > 2 ? u->lay.conv.h - 2 : 1);
        return;
    case KEY_NPAGE:
        scroll_by(u, -(u->lay.conv.h > 2 ? u->lay.conv.h - 2 : 1));
        return;
    case KEY_MOUSE: {
        MEVENT ev;
        if (getmouse(&ev) == OK) {
            if (ev.bstate & (BUTTON1_CLICKED | BUTTON1_PRESSED)) {
                if (!u->prompt)
                    sidebar_click(u, &ev);
            } else if (ev.bstate & BUTTON4_PRESSED)
                scroll_by(u, 3);
#ifdef BUTTON5_PRESSED
            else if (ev.bstate & BUTTON5_PRESSED)
                scroll_by(u, -3);
#endif
        }
        return;
    }
    case KEY_F(3):
        ui_toggle_inspector(u);
        return;
    case KEY_F(1):
        ui_open_help(u);
        return;
    case '?':
        if (rl_end == 0) {
            ui_open_help(u);
            return;
        }
        feed(u, ch);
        return;
    case KEY_F(4):
        u->timestamps = !u->timestamps;
        ui_status(u, TH_NOTICE, "timestamps %s", u->timestamps ? "on" : "off");
        return;
    case KEY_F(5):
        u->fold_thinking = !u->fold_thinking;
        ui_status(u, TH_NOTICE, "thinking %s", u->fold_thinking ? "folded" : "unfolded");
        u->dirty = true;
        return;
    case KEY_F(2):
        u->sidebar = true;
        u->sb_query[0] = 0;
        u->sb_sel = u->sb_top = 0;
        ui_refresh_sessions(u);
        /* start on the conversation on screen */
        for (size_t i = 0; i < u->sb_n; i++)
            if (u->sessions[u->sb_idx[i]].id == u->conv.sid)
                u->sb_sel = i;
        u->dirty = true;
        return;
    case 3: /* Ctrl-C: raw mode delivers it as a key */
        if (u->busy) {
            engine_cancel(u->e);
            ui_status(u, TH_NOTICE, "stopping\xE2\x80\xA6");
        } else if (rl_end == 0) {
            ui_status(u, TH_NOTICE, "to leave, press Ctrl-D or type /quit");
        } else {
            rl_replace_line("", 0);
            rl_point = 0;
            rl_redisplay_hook();
        }
        return;
    case 7: /* Ctrl-G */
        ui_editor_command(u);
        return;
    case '[':
    case ']': {
        /* On an empty line, the last turn's other replies (/variant); typed
         * text keeps its brackets. */
        int k, n;
        msgs_variant_now(&u->msgs, &k, &n);
        if (rl_end == 0 && n > 1 && !u->busy) {
            ui_variant_show(u, ch == '[' ? (k > 1 ? k - 1 : n) : (k < n ? k + 1 : 1));
            return;
        }
        break;
    }
    case 27:
        handle_escape(u);
        return;
    case '\r':
    case '\n':
    case KEY_ENTER:
        if (rl_end > 0 && rl_line_buffer[rl_end - 1] == '\\') {
            rl_point = rl_end;
            rl_delete_text(rl_end - 1, rl_end);
            rl_point = rl_end;
            rl_insert_text("\n");
            rl_redisplay_hook();
            return;
        }
        feed(u, '\r');
        return;
    case KEY_BACKSPACE:
    case 8:
        feed(u, 127);
        return;
    case KEY_LEFT:
        feed_str(u, "\033[D");
        return;
    case KEY_RIGHT:
        feed_str(u, "\033[C");
        return;
    case KEY_UP:
        feed_str(u, "\033[A");
        return;
    case KEY_DOWN:
        feed_str(u, "\033[B");
        return;
    case KEY_HOME:
        feed(u, 1);
        return;
    case KEY_END:
        feed(u, 5);
        return;
    case KEY_DC:
        feed_str(u, "\033[3~");
        return;
    default:
        if (ch >= 0 && ch < 256)
            feed(u, ch);
        return;
    }
}

