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

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "cli.h"
#include "commands.h"
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
        ui_status(u, TH_ERROR, "a reply is being generated: Esc stops it");
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

static void show_matches_hook(char **matches, int num, int max)
{
    (void)max;
    char buf[512];
    size_t o = (size_t)snprintf(buf, sizeof buf, "%d matches:", num);
    for (int i = 1; i <= num && o < sizeof buf; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, " %s", matches[i]);
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
        if (u->busy) {
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

void ui_handle_key(struct ui *u, int ch)
{
    /* A key ends the notice on the status line: the hints come back; what
     * the key itself does may set a new one. */
    if (ch != KEY_RESIZE && ch != KEY_MOUSE && u->status_until > 0 && !u->in_paste) {
        u->status_until = 0;
        u->dirty = true;
    }
    if (u->pick_open && !u->in_paste && ch != KEY_PASTE_BEGIN) {
        pick_key(u, ch);
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
            if (ev.bstate & BUTTON4_PRESSED)
                scroll_by(u, 3);
#ifdef BUTTON5_PRESSED
            else if (ev.bstate & BUTTON5_PRESSED)
                scroll_by(u, -3);
#endif
        }
        return;
    }
    case KEY_F(2):
        u->sidebar = !u->sidebar;
        if (u->sidebar)
            ui_refresh_sessions(u);
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

