/* ui.c - the full-screen chat: ncurses drawing, GNU readline's callback
 * interface for the input line, and a worker thread running engine_chat.
 *
 * Threads: the UI thread owns ncurses, readline, the history connection and
 * the message list. The worker only runs engine_chat; its on_piece appends to
 * a buffer under a mutex and wakes the UI through a self-pipe. The UI redraws
 * at most about 10 times a second whatever the token rate, so the engine pays
 * one mutex and (at most) one pipe write per token.
 *
 * Readline never touches the terminal: its prep/deprep hooks are no-ops,
 * keys reach it one byte at a time through rl_getc_function, and its
 * redisplay is ours (the input pane). Geometry, wrapping, Markdown, meter
 * arithmetic and themes are the pure modules (layout, meters, theme,
 * commands, config); this file only draws and dispatches.
 */
#include "tui.h"
#include "xdg.h"

#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "engine.h"
#include "history.h"
#include "layout.h"
#include "membw.h"
#include "meters.h"
#include "gpu.h"
#include "conversation.h"
#include "launch.h"
#include "theme.h"

/* The only globals. Signal handlers can reach nothing else: the flag, and
 * the terminal state to put back when the process crashes. */
static volatile sig_atomic_t g_signal;
static struct termios g_saved_tio;
static volatile sig_atomic_t g_tio_saved;
/* Readline's hooks (getc, redisplay, line handler, completion) take no user
 * pointer, so they find the one running UI here. Set and cleared by
 * tui_run only. */
static struct ui *g_ui;

#define FRAME_S 0.1         /* at most ~10 frames (and meter samples) a second */
#define IDLE_METER_S 1.0    /* meters refresh once a second when idle */
#define KEY_PASTE_BEGIN (KEY_MAX + 1)
#define KEY_PASTE_END (KEY_MAX + 2)

enum msg_kind { MSG_USER, MSG_ASSISTANT, MSG_SYSTEM, MSG_NOTICE, MSG_ERROR };

struct msg {
    enum msg_kind kind;
    char *text; /* owned; NULL for the reply being streamed (see ui.stream) */
    enum hist_end end; /* how a reply ended (NONE while streaming) */
    int64_t hist_id;   /* its row in the history, 0 = not saved; /retry and /edit delete from it */
};

struct dline {           /* one display line of the conversation */
    size_t off, len;     /* bytes in ui.arena */
    int elem;            /* theme element when no per-byte style */
    bool styled;         /* per-byte md styles in ui.arena_sty */
    bool fill;           /* paint the whole width (code blocks) */
    int indent;
};

struct ui {
    struct kv_options o; /* copy: /set and /system change it */
    struct engine *e;
    const struct engine_info *info;
    struct hist *h;      /* NULL: not saving */
    int64_t sid;         /* current session, -1 = not created yet */
    int64_t reply_id;
    bool saving;         /* the current reply is being saved */
    struct theme theme;
    bool color;
    struct gpu_mon *gpu;
    double bandwidth;    /* bytes/s for the roofline, 0 = unknown */

    /* Host memory bandwidth probe (CPU backend, no configured figure): run
     * once on its own thread while the engine is idle, called off the moment
     * a turn starts and tried again after it, so it never competes with the
     * engine for memory. */
    bool bw_wanted;      /* no figure yet and one should be measured */
    bool bw_running;     /* bw_thread exists (joined by bw_collect) */
    double bw_after;     /* monotonic time before which not to start */
    pthread_t bw_thread;
    atomic_int bw_cancel;
    double bw_result;    /* bytes/s, 0 = cancelled or failed; guarded by mu */
    bool bw_done;        /* bw_result is final; guarded by mu */

    struct msg *msgs;
    size_t n_msgs, cap_msgs;

    /* worker */
    pthread_t thread;
    bool busy;
    pthread_mutex_t mu;
    char *stream;        /* reply so far; guarded by mu */
    size_t stream_len, stream_cap;
    char notice[512];    /* dropped-turns notice from the engine; guarded by mu */
    bool notice_new, worker_done, wake_pending; /* guarded by mu */
    int worker_rc;
    char worker_err[512];
    char *worker_reply;
    char *job_text;
    int wake[2];         /* self-pipe: worker -> UI */

    /* view */
    int rows, cols;
    struct layout lay;
    bool sidebar;
    int scroll;          /* lines up from the bottom; 0 follows the reply */
    int input_lines;
    char status[512];
    int status_elem;
    double status_until;
    double last_frame, last_meter, last_save;
    bool dirty, quit;

    /* meters */
    struct engine_stats st;
    struct engine_memory mem;
    struct gpu_sample gs;
    double energy0;      /* energy counter at the turn's start, J (NaN = n/a) */
    double jpt;          /* J/token of the running or last turn */

    /* input */
    int rl_char;
    bool rl_avail, in_paste;
    bool paste_cr;        /* the last pasted byte was CR: a LF after it is the same line break */
    bool in_line_handler; /* inside on_line: see set_input */
    char *pending_input;  /* owned; text for the input line once on_line returns */
    char *paste;
    size_t paste_len, paste_cap;
    char *cands[64];
    size_t n_cands;
    char *themes[32];    /* completion names: built-in and user themes */
    size_t n_themes;
    char hist_file[4096];

    struct hist_session *sessions;
    size_t n_sessions;

    /* frame composition buffers, reused */
    struct dline *dl;
    size_t n_dl, cap_dl;
    char *arena;
    uint8_t *arena_sty;
    size_t arena_len, arena_cap;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- terminal restore on every way out ---- */

static void restore_terminal_raw(void)
{
    /* Async-signal-safe: leave the alternate screen, show the cursor, end
     * mouse reporting and bracketed paste, put the tty modes back. */
    static const char seq[] = "\033[?1000l\033[?1002l\033[?1006l\033[?2004l\033[?25h\033[?1049l\r\n";
    ssize_t r = write(STDOUT_FILENO, seq, sizeof seq - 1);
    (void)r;
    if (g_tio_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tio);
}

static void on_crash(int sig)
{
    restore_terminal_raw();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_quit_signal(int sig)
{
    g_signal = sig;
}

static void install_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_quit_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- colours ---- */

static attr_t elem_attr(struct ui *u, int el)
{
    const struct theme_style *s = &u->theme.s[el];
    attr_t a = 0;
    if (s->attrs & THA_BOLD)
        a |= A_BOLD;
    if (s->attrs & THA_DIM)
        a |= A_DIM;
#ifdef A_ITALIC
    if (s->attrs & THA_ITALIC)
        a |= A_ITALIC;
#endif
    if (s->attrs & THA_UNDERLINE)
        a |= A_UNDERLINE;
    if (s->attrs & THA_REVERSE)
        a |= A_REVERSE;
    if (u->color)
        return a | COLOR_PAIR(el + 1);
    /* Without colour, bars of the frame need reverse video to stand out. */
    if (el == TH_TITLE || el == TH_STATUS || el == TH_SIDEBAR_CURRENT || el == TH_CODE)
        a |= A_REVERSE;
    return a;
}

static int reduce_color(int c)
{
    if (c < 0 || COLORS >= 256)
        return c;
    if (COLORS >= 16 && c < 16)
        return c;
    return theme_color_to8(c);
}

static void apply_theme(struct ui *u)
{
    u->color = false;
    const char *nc = getenv("NO_COLOR");
    if ((nc && *nc) || !has_colors())
        return;
    start_color();
    use_default_colors();
    if (COLOR_PAIRS < TH_COUNT + 1)
        return;
    u->color = true;
    for (int i = 0; i < TH_COUNT; i++)
        init_pair((short)(i + 1), (short)reduce_color(u->theme.s[i].fg), (short)reduce_color(u->theme.s[i].bg));
    bkgdset(' ' | elem_attr(u, TH_NORMAL));
}

/* ---- messages ---- */

static struct msg *add_msg(struct ui *u, enum msg_kind kind, const char *text)
{
    if (u->n_msgs == u->cap_msgs) {
        size_t cap = u->cap_msgs ? u->cap_msgs * 2 : 32;
        struct msg *m = realloc(u->msgs, cap * sizeof *m);
        if (!m)
            return NULL;
        u->msgs = m;
        u->cap_msgs = cap;
    }
    struct msg *m = &u->msgs[u->n_msgs];
    m->kind = kind;
    m->text = text ? strdup(text) : NULL;
    m->end = HIST_END_NONE;
    m->hist_id = 0;
    if (text && !m->text)
        return NULL;
    u->n_msgs++;
    u->dirty = true;
    return m;
}

static void clear_msgs(struct ui *u)
{
    for (size_t i = 0; i < u->n_msgs; i++)
        free(u->msgs[i].text);
    u->n_msgs = 0;
    u->scroll = 0;
    u->dirty = true;
}

static void set_status(struct ui *u, int elem, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_status(struct ui *u, int elem, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->status, sizeof u->status, fmt, ap);
    va_end(ap);
    u->status_elem = elem;
    u->status_until = now_s() + 8;
    u->dirty = true;
}

/* A notice in the conversation and on the status line. */
static void notice(struct ui *u, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void notice(struct ui *u, int kind, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    add_msg(u, (enum msg_kind)kind, buf);
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    set_status(u, kind == MSG_ERROR ? TH_ERROR : TH_NOTICE, "%s", buf);
    u->scroll = 0;
}

/* ---- composing the conversation ---- */

static bool arena_reserve(struct ui *u, size_t more)
{
    if (u->arena_len + more <= u->arena_cap)
        return true;
    size_t cap = u->arena_cap ? u->arena_cap : 1 << 16;
    while (cap < u->arena_len + more)
        cap *= 2;
    char *a = realloc(u->arena, cap);
    if (!a)
        return false;
    u->arena = a;
    uint8_t *s = realloc(u->arena_sty, cap);
    if (!s)
        return false;
    u->arena_sty = s;
    u->arena_cap = cap;
    return true;
}

static void push_dline(struct ui *u, struct dline d)
{
    if (u->n_dl == u->cap_dl) {
        size_t cap = u->cap_dl ? u->cap_dl * 2 : 256;
        struct dline *n = realloc(u->dl, cap * sizeof *n);
        if (!n)
            return;
        u->dl = n;
        u->cap_dl = cap;
    }
    u->dl[u->n_dl++] = d;
}

/* Adds arena bytes [OFF, OFF+LEN) wrapped to WIDTH as display lines. */
static void push_wrapped(struct ui *u, size_t off, size_t len, int width, int elem, bool styled, bool fill,
                         int indent)
{
    struct wrap_line wl[64];
    size_t n = layout_wrap(u->arena + off, len, width, wl, 64);
    struct wrap_line *w = wl;
    if (n > 64) {
        w = malloc(n * sizeof *w);
        if (!w)
            return;
        layout_wrap(u->arena + off, len, width, w, n);
    }
    for (size_t i = 0; i < n; i++)
        push_dline(u, (struct dline){off + w[i].start, w[i].len, elem, styled, fill, indent});
    if (w != wl)
        free(w);
}

/* Copies a message line into the arena with tabs expanded and returns its
 * offset; the arena must not move between this and the use of the offset. */
static size_t arena_put(struct ui *u, const char *s, size_t n, size_t *out_len)
{
    size_t tabs = 0;
    for (size_t i = 0; i < n; i++)
        tabs += s[i] == '\t';
    if (!arena_reserve(u, n + tabs * 3 + 16)) {
        *out_len = 0;
        return u->arena_len;
    }
    size_t off = u->arena_len, o = off;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\t') {
            memcpy(u->arena + o, "    ", 4);
            o += 4;
        } else if (s[i] != '\r') {
            u->arena[o++] = s[i];
        }
    }
    *out_len = o - off;
    u->arena_len = o;
    return off;
}

static void compose_text(struct ui *u, const char *text, size_t len, bool markdown, int elem, int width)
{
    struct md_state md = {0};
    size_t pos = 0;
    while (pos <= len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t e = nl ? (size_t)(nl - text) : len;
        size_t ll, off = arena_put(u, text + pos, e - pos, &ll);
        if (markdown && arena_reserve(u, ll + 8)) {
            size_t mo = u->arena_len;
            size_t ml = md_render_line(&md, u->arena + off, ll, u->arena + mo, u->arena_sty + mo);
            u->arena_len += ml;
            bool block = ml && (u->arena_sty[mo] & (MD_BLOCK | MD_FENCE));
            push_wrapped(u, mo, ml, width - (block ? 2 : 0), elem, true, block, block ? 4 : 2);
        } else {
            push_wrapped(u, off, ll, width, elem, false, false, 2);
        }
        if (!nl)
            break;
        pos = e + 1;
    }
}

static void compose_conversation(struct ui *u, int width)
{
    u->n_dl = 0;
    u->arena_len = 0;
    int tw = width - 3 > 8 ? width - 3 : 8; /* text width after the indent */
    pthread_mutex_lock(&u->mu);
    for (size_t i = 0; i < u->n_msgs; i++) {
        struct msg *m = &u->msgs[i];
        const char *text = m->text ? m->text : u->stream;
        size_t len = m->text ? strlen(m->text) : u->stream_len;
        if (!text)
            text = "", len = 0;
        while (len && text[len - 1] == '\n')
            len--;
        static const char *const heads[] = {"You", "Assistant", "System prompt", NULL, NULL};
        static const int head_elem[] = {TH_USER, TH_ASSISTANT, TH_SYSTEM, TH_NOTICE, TH_ERROR};
        size_t hl;
        if (heads[m->kind]) {
            size_t off = arena_put(u, heads[m->kind], strlen(heads[m->kind]), &hl);
            push_dline(u, (struct dline){off, hl, head_elem[m->kind], false, false, 0});
            compose_text(u, text, len, m->kind == MSG_ASSISTANT, m->kind == MSG_SYSTEM ? TH_SYSTEM : TH_NORMAL,
                         tw);
        } else {
            size_t first = u->n_dl; /* notices run flush left, full width */
            compose_text(u, text, len, false, head_elem[m->kind], tw + 2);
            for (size_t k = first; k < u->n_dl; k++)
                u->dl[k].indent = 0;
        }
        const char *mark = NULL;
        if (m->kind == MSG_ASSISTANT && !m->text)
            mark = "\xE2\x96\x8C"; /* a block cursor while streaming */
        else if (m->end == HIST_END_CANCELLED)
            mark = "[cancelled]";
        else if (m->end == HIST_END_LENGTH)
            mark = "[cut: length limit or full context]";
        else if (m->end == HIST_END_ERROR)
            mark = "[error: reply incomplete]";
        else if (m->end == HIST_END_INTERRUPTED)
            mark = "[interrupted: kvchat stopped mid-reply]";
        if (mark) {
            size_t off = arena_put(u, mark, strlen(mark), &hl);
            push_dline(u, (struct dline){off, hl, TH_MARKER, false, false, 2});
        }
        push_dline(u, (struct dline){0, 0, TH_NORMAL, false, false, 0});
    }
    pthread_mutex_unlock(&u->mu);
}

/* ---- drawing ---- */

static int md_elem(uint8_t s)
{
    if (s & (MD_BLOCK | MD_FENCE))
        return TH_CODE_BLOCK;
    if (s & MD_CODE)
        return TH_CODE;
    if (s & MD_HEADING)
        return TH_HEADING;
    if (s & MD_BULLET)
        return TH_BULLET;
    if (s & MD_QUOTE)
        return TH_QUOTE;
    return TH_NORMAL;
}

static attr_t md_attr(struct ui *u, uint8_t s)
{
    attr_t a = elem_attr(u, md_elem(s));
    if (s & MD_BOLD)
        a |= A_BOLD;
#ifdef A_ITALIC
    if (s & MD_ITALIC)
        a |= A_ITALIC;
#endif
    return a;
}

/* Draws LEN bytes of UTF-8 at (Y, X), at most MAXW columns, with one
 * attribute or per-byte Markdown styles. Control characters and invalid
 * bytes become '?' so nothing the model emits can move the cursor. Returns
 * the columns used. */
static int draw_text(struct ui *u, int y, int x, int maxw, const char *s, size_t len, attr_t attr,
                     const uint8_t *sty)
{
    int cols = 0;
    move(y, x);
    size_t i = 0;
    while (i < len) {
        attr_t a = sty ? md_attr(u, sty[i]) : attr;
        size_t j = i;
        int w = 0;
        while (j < len && (!sty || sty[j] == sty[i])) {
            uint32_t cp;
            size_t l = utf8_decode(s + j, len - j, &cp);
            int cw = cp_width(cp);
            if (cols + w + cw > maxw)
                break;
            if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || cp == 0xFFFD)
                break;
            w += cw;
            j += l;
        }
        attrset(a);
        if (j > i) {
            addnstr(s + i, (int)(j - i));
            cols += w;
            i = j;
            continue;
        }
        if (i >= len)
            break;
        uint32_t cp;
        size_t l = utf8_decode(s + i, len - i, &cp);
        if (cols + 1 > maxw)
            break;
        addch('?');
        cols++;
        i += l;
    }
    return cols;
}

static void fill_rect(struct ui *u, struct rect r, int elem)
{
    attrset(elem_attr(u, elem));
    for (int y = r.y; y < r.y + r.h; y++)
        mvhline(y, r.x, ' ', r.w);
}

/* A border drawn with U+2502 itself: ACS line drawing depends on terminfo
 * details that differ between terminals and multiplexers. */
static void draw_vline(struct ui *u, int y, int x, int h)
{
    attrset(elem_attr(u, TH_BORDER));
    for (int i = 0; i < h; i++)
        mvaddstr(y + i, x, "\xE2\x94\x82");
}

static void draw_title(struct ui *u)
{
    struct rect r = u->lay.title;
    fill_rect(u, r, TH_TITLE);
    char buf[1024], sess[128] = "new conversation";
    if (u->sid >= 0)
        snprintf(sess, sizeof sess, "session %lld", (long long)u->sid);
    snprintf(buf, sizeof buf, " kvchat \xC2\xB7 %s \xC2\xB7 %s (%s) \xC2\xB7 %s%s", u->info->model_name,
             u->info->backend, u->info->device, sess, u->h ? "" : " \xC2\xB7 not saving");
    draw_text(u, r.y, r.x, r.w, buf, strlen(buf), elem_attr(u, TH_TITLE), NULL);
    const char *hint = "F2 sessions \xC2\xB7 /help ";
    int hw = text_width(hint, strlen(hint));
    if (r.w - hw > text_width(buf, strlen(buf)) + 2)
        draw_text(u, r.y, r.x + r.w - hw, hw, hint, strlen(hint), elem_attr(u, TH_TITLE), NULL);
}

static void draw_conversation(struct ui *u)
{
    struct rect r = u->lay.conv;
    compose_conversation(u, r.w);
    int total = (int)u->n_dl;
    int max_scroll = total > r.h ? total - r.h : 0;
    if (u->scroll > max_scroll)
        u->scroll = max_scroll;
    int first = total - r.h - u->scroll;
    if (first < 0)
        first = 0;
    for (int row = 0; row < r.h && first + row < total; row++) {
        struct dline *d = &u->dl[first + row];
        int y = r.y + row;
        if (d->fill) {
            attrset(elem_attr(u, TH_CODE_BLOCK));
            mvhline(y, r.x + 2, ' ', r.w - 3);
        }
        draw_text(u, y, r.x + 1 + d->indent, r.w - 2 - d->indent, u->arena + d->off, d->len,
                  elem_attr(u, d->elem), d->styled ? u->arena_sty + d->off : NULL);
    }
    if (u->scroll > 0) {
        char buf[64];
        snprintf(buf, sizeof buf, " \xE2\x86\x93 %d more lines (PgDn) ", u->scroll);
        int w = text_width(buf, strlen(buf));
        draw_text(u, r.y + r.h - 1, r.x + r.w - w - 1, w, buf, strlen(buf), elem_attr(u, TH_STATUS), NULL);
    }
}

static void draw_sidebar(struct ui *u)
{
    struct rect r = u->lay.sidebar;
    if (!r.w)
        return;
    fill_rect(u, r, TH_SIDEBAR);
    const char *t = " Sessions (F2 hides)";
    draw_text(u, r.y, r.x, r.w, t, strlen(t), elem_attr(u, TH_SIDEBAR) | A_BOLD, NULL);
    if (!u->h) {
        const char *m = " history not available";
        draw_text(u, r.y + 2, r.x, r.w, m, strlen(m), elem_attr(u, TH_SIDEBAR), NULL);
        return;
    }
    for (size_t i = 0; i < u->n_sessions && (int)i + 1 < r.h; i++) {
        struct hist_session *s = &u->sessions[i];
        char buf[256];
        snprintf(buf, sizeof buf, " %lld %s", (long long)s->id,
                 s->title[0] ? s->title : (s->preview && s->preview[0] ? s->preview : "(untitled)"));
        int el = s->id == u->sid ? TH_SIDEBAR_CURRENT : TH_SIDEBAR;
        if (el == TH_SIDEBAR_CURRENT) {
            attrset(elem_attr(u, el));
            mvhline(r.y + 1 + (int)i, r.x, ' ', r.w);
        }
        draw_text(u, r.y + 1 + (int)i, r.x, r.w - 1, buf, strlen(buf), elem_attr(u, el), NULL);
    }
    draw_vline(u, r.y, r.x + r.w - 1, r.h);
}

static void refresh_sessions(struct ui *u)
{
    hist_sessions_free(u->sessions, u->n_sessions);
    u->sessions = NULL;
    u->n_sessions = 0;
    if (u->h && hist_session_list(u->h, 200, 0, &u->sessions, &u->n_sessions) != HIST_OK) {
        u->sessions = NULL;
        u->n_sessions = 0;
    }
}

/* Samples the engine and the GPU; called at most once per frame. */
static void sample_meters(struct ui *u)
{
    engine_stats(u->e, &u->st);
    engine_memory(u->e, &u->mem);
    gpu_mon_sample(u->gpu, &u->gs);
    if (u->busy && u->gs.energy_valid && !isnan(u->energy0))
        u->jpt = meters_joules_per_token(u->gs.energy_j - u->energy0, u->st.gen_tokens);
    u->last_meter = now_s();
}

/* A "label value" cell for the meters; returns the columns used. */
static int meter_cell(struct ui *u, int y, int x, int maxw, const char *label, const char *value)
{
    if (maxw <= 0)
        return 0;
    int n = draw_text(u, y, x, maxw, label, strlen(label), elem_attr(u, TH_METER_LABEL), NULL);
    if (n < maxw) {
        addch(' ');
        n++;
    }
    n += draw_text(u, y, x + n, maxw - n, value, strlen(value), elem_attr(u, TH_METER_VALUE), NULL);
    return n;
}

static void draw_mem_bar(struct ui *u, int y, int x, int w)
{
    struct mem_split sp;
    meters_mem_split(&u->mem, w, &sp);
    if (!sp.valid) {
        draw_text(u, y, x, w, "n/a", 3, elem_attr(u, TH_METER_VALUE), NULL);
        return;
    }
    static const int el[MEM_SEG_COUNT] = {TH_BAR_WEIGHTS, TH_BAR_KV, TH_BAR_SCRATCH, TH_BAR_OTHER, TH_BAR_FREE};
    static const char *glyph[MEM_SEG_COUNT] = {"\xE2\x96\x88", "\xE2\x96\x88", "\xE2\x96\x88", "\xE2\x96\x93",
                                               "\xE2\x96\x91"};
    move(y, x);
    for (int s = 0; s < MEM_SEG_COUNT; s++) {
        attrset(elem_attr(u, el[s]));
        for (int c = 0; c < sp.cols[s]; c++)
            addstr(glyph[s]);
    }
}

struct meter_values {
    char mem[80], kv[64], left[32], dec[48], pre[48], ttft[32], roof[64], util[16], pow[32], temp[32], jpt[40];
    double kv_frac;
};

static void meter_values(struct ui *u, struct meter_values *v)
{
    char a[32], b[32];
    uint64_t used = u->mem.device_total != ENGINE_UNKNOWN && u->mem.device_free != ENGINE_UNKNOWN
                        ? u->mem.device_total - u->mem.device_free
                        : ENGINE_UNKNOWN;
    fmt_bytes(used, a, sizeof a);
    fmt_bytes(u->mem.device_total, b, sizeof b);
    snprintf(v->mem, sizeof v->mem, "%s / %s", a, b);
    int32_t cap = u->st.kv_capacity > 0 ? u->st.kv_capacity : u->info->n_ctx;
    snprintf(v->kv, sizeof v->kv, "%d / %d tok", u->st.kv_used, cap);
    snprintf(v->left, sizeof v->left, "%d tok", cap - u->st.kv_used);
    v->kv_frac = cap > 0 ? (double)u->st.kv_used / cap : 0;
    bool any = u->st.gen_tokens > 0 || u->st.running;
    fmt_rate(any && u->st.gen_tokens > 1 ? u->st.decode_tok_s : NAN, a, sizeof a);
    snprintf(v->dec, sizeof v->dec, "%s tok/s", a);
    fmt_rate(any ? u->st.prefill_tok_s : NAN, a, sizeof a);
    snprintf(v->pre, sizeof v->pre, "%s tok/s", a);
    fmt_duration(any && u->st.gen_tokens > 0 ? u->st.ttft_s : NAN, v->ttft, sizeof v->ttft);
    double pct = meters_roofline_pct(u->info->bytes_per_token, u->st.gen_tokens > 1 ? u->st.decode_tok_s : NAN,
                                     u->bandwidth);
    if (isnan(pct))
        snprintf(v->roof, sizeof v->roof, "n/a");
    else
        snprintf(v->roof, sizeof v->roof, "%.0f%% of %.0f GB/s", pct, u->bandwidth / 1e9);
    if (u->gs.util_valid)
        snprintf(v->util, sizeof v->util, "%u%%", u->gs.util_pct);
    else
        snprintf(v->util, sizeof v->util, "n/a");
    fmt_unit(u->gs.power_w, u->gs.power_valid, "W", v->pow, sizeof v->pow);
    fmt_unit(u->gs.temp_c, u->gs.temp_valid, "C", v->temp, sizeof v->temp);
    if (isnan(u->jpt))
        snprintf(v->jpt, sizeof v->jpt, "n/a");
    else
        snprintf(v->jpt, sizeof v->jpt, "%.3f J/tok", u->jpt);
}

static void draw_meters(struct ui *u)
{
    struct rect r = u->lay.meters;
    fill_rect(u, r, TH_NORMAL);
    struct meter_values v;
    meter_values(u, &v);
    const char *memname = u->mem.on_gpu ? "VRAM" : "RAM";
    char bar[256];
    if (u->lay.meters_side) {
        int x = r.x + 1, w = r.w - 2, y = r.y;
        draw_vline(u, r.y, r.x, r.h);
        int bottom = r.y + r.h;
#define ROW(label, value)                                                                                  \
    do {                                                                                                   \
        if (y < bottom)                                                                                    \
            meter_cell(u, y++, x + 1, w - 1, label, value);                                                \
    } while (0)
        ROW(memname, v.mem);
        if (y < bottom)
            draw_mem_bar(u, y++, x + 1, w - 1);
        static const char *seg_names[MEM_SEG_COUNT] = {"weights", "KV cache", "scratch", "other", "free"};
        static const int seg_el[MEM_SEG_COUNT] = {TH_BAR_WEIGHTS, TH_BAR_KV, TH_BAR_SCRATCH, TH_BAR_OTHER,
                                                  TH_BAR_FREE};
        struct mem_split sp;
        meters_mem_split(&u->mem, 10, &sp);
        for (int k = 0; k < MEM_SEG_COUNT && sp.valid && y < bottom; k++, y++) {
            char b[32];
            fmt_bytes(sp.bytes[k], b, sizeof b);
            attrset(elem_attr(u, seg_el[k]));
            mvaddstr(y, x + 1, "\xE2\x96\xA0");
            meter_cell(u, y, x + 3, w - 3, seg_names[k], b);
        }
        y++;
        ROW("KV cache", v.kv);
        if (y < bottom) {
            meter_bar(v.kv_frac, w - 1, bar, sizeof bar);
            draw_text(u, y++, x + 1, w - 1, bar, strlen(bar), elem_attr(u, TH_BAR_KV), NULL);
        }
        ROW("context left", v.left);
        y++;
        ROW("decode  ", v.dec);
        ROW("prefill ", v.pre);
        ROW("TTFT    ", v.ttft);
        ROW("roofline", v.roof);
        y++;
        ROW("GPU util", v.util);
        ROW("power   ", v.pow);
        ROW("temp    ", v.temp);
        ROW("energy  ", v.jpt);
#undef ROW
        return;
    }
    /* Narrow: three dense rows. */
    int x = r.x + 1, w = r.w - 2;
    int n = meter_cell(u, r.y, x, w, memname, "");
    int bw = w / 3;
    draw_mem_bar(u, r.y, x + n, bw);
    n += bw + 1;
    n += meter_cell(u, r.y, x + n, w - n, "", v.mem);
    n += 2;
    char kv[160];
    snprintf(kv, sizeof kv, "%d/%d (%s left)", u->st.kv_used, u->st.kv_capacity > 0 ? u->st.kv_capacity : u->info->n_ctx, v.left);
    meter_cell(u, r.y, x + n, w - n, "KV", kv);
    n = meter_cell(u, r.y + 1, x, w, "decode", v.dec);
    n += 2 + meter_cell(u, r.y + 1, x + n + 2, w - n - 2, "prefill", v.pre);
    n += 2 + meter_cell(u, r.y + 1, x + n + 2, w - n - 2, "TTFT", v.ttft);
    meter_cell(u, r.y + 1, x + n + 2, w - n - 2, "roofline", v.roof);
    n = meter_cell(u, r.y + 2, x, w, "GPU", v.util);
    n += 2 + meter_cell(u, r.y + 2, x + n + 2, w - n - 2, "power", v.pow);
    n += 2 + meter_cell(u, r.y + 2, x + n + 2, w - n - 2, "temp", v.temp);
    meter_cell(u, r.y + 2, x + n + 2, w - n - 2, "energy", v.jpt);
}

static void draw_status(struct ui *u)
{
    struct rect r = u->lay.status;
    fill_rect(u, r, TH_STATUS);
    const char *s;
    int el = TH_STATUS;
    char buf[600];
    if (u->status[0] && now_s() < u->status_until) {
        s = u->status;
        el = u->status_elem;
    } else if (u->busy) {
        snprintf(buf, sizeof buf, " generating\xE2\x80\xA6 Esc or Ctrl-C stops the reply");
        s = buf;
    } else {
        s = " Enter send \xC2\xB7 Alt-Enter newline \xC2\xB7 Esc stop \xC2\xB7 PgUp/PgDn scroll \xC2\xB7 Tab "
            "complete \xC2\xB7 Ctrl-D quit";
    }
    attr_t a = el == TH_STATUS ? elem_attr(u, TH_STATUS) : (elem_attr(u, el) | A_BOLD);
    if (el != TH_STATUS) {
        attrset(a);
        mvhline(r.y, r.x, ' ', r.w);
    }
    draw_text(u, r.y, r.x + (s[0] == ' ' ? 0 : 1), r.w - 1, s, strlen(s), a, NULL);
}

/* Draws the input pane from readline's buffer and puts the cursor there. */
static void draw_input(struct ui *u)
{
    struct rect r = u->lay.input;
    fill_rect(u, r, TH_INPUT);
    const char *buf = rl_line_buffer ? rl_line_buffer : "";
    size_t len = (size_t)(rl_end > 0 ? rl_end : 0);
    size_t point = (size_t)(rl_point > 0 ? rl_point : 0);
    int width = r.w - 3;
    struct wrap_line wl[256];
    size_t n = layout_wrap(buf, len, width, wl, 256);
    if (n > 256)
        n = 256;
    /* The line that holds the cursor: the last one starting at or before it. */
    size_t cl = 0;
    for (size_t i = 0; i < n; i++)
        if (wl[i].start <= point)
            cl = i;
    int first = (int)cl - r.h + 1 > 0 ? (int)cl - r.h + 1 : 0;
    attr_t a = elem_attr(u, TH_INPUT);
    attrset(a | A_BOLD);
    mvaddstr(r.y, r.x, u->busy ? "\xE2\x80\xA6 " : "> ");
    for (int row = 0; row < r.h && first + row < (int)n; row++) {
        struct wrap_line *w = &wl[first + row];
        draw_text(u, r.y + row, r.x + 2, width, buf + w->start, w->len, a, NULL);
    }
    int cx = r.x + 2 + text_width(buf + wl[cl].start, point - wl[cl].start);
    if (cx >= r.x + r.w)
        cx = r.x + r.w - 1;
    move(r.y + (int)cl - first, cx);
}

/* Lines the input needs at the current width. */
static int input_lines_needed(struct ui *u)
{
    size_t len = (size_t)(rl_end > 0 ? rl_end : 0);
    return (int)layout_wrap(rl_line_buffer ? rl_line_buffer : "", len, u->cols - 3, NULL, 0);
}

static void draw_frame(struct ui *u)
{
    getmaxyx(stdscr, u->rows, u->cols);
    u->input_lines = input_lines_needed(u);
    layout_compute(u->rows, u->cols, u->sidebar, u->input_lines, &u->lay);
    attrset(elem_attr(u, TH_NORMAL));
    erase();
    if (u->lay.too_small) {
        char msg[128];
        snprintf(msg, sizeof msg, "terminal too small: %dx%d, kvchat needs at least %dx%d", u->cols, u->rows,
                 LAYOUT_MIN_COLS, LAYOUT_MIN_ROWS);
        for (int y = 0, off = 0; y < u->rows && off < (int)strlen(msg); y++, off += u->cols)
            mvaddnstr(y, 0, msg + off, u->cols);
        refresh();
        u->last_frame = now_s();
        u->dirty = false;
        return;
    }
    if (now_s() - u->last_meter >= (u->busy ? FRAME_S : IDLE_METER_S))
        sample_meters(u);
    draw_title(u);
    draw_sidebar(u);
    draw_conversation(u);
    draw_meters(u);
    draw_status(u);
    draw_input(u);
    refresh();
    u->last_frame = now_s();
    u->dirty = false;
}

/* ---- loading ---- */

struct load_progress {
    struct ui *u;
    double t0, last;
    const char *name;
};

static void on_load_progress(uint64_t done, uint64_t total, void *user)
{
    struct load_progress *p = user;
    double t = now_s();
    if (t - p->last < 0.05 && done != total)
        return;
    p->last = t;
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    erase();
    char line[512], a[32], b[32], rate[32], bar[512];
    fmt_bytes(done, a, sizeof a);
    fmt_bytes(total, b, sizeof b);
    double el = t - p->t0;
    fmt_bytes(el > 0.01 ? (uint64_t)(done / el) : ENGINE_UNKNOWN, rate, sizeof rate);
    snprintf(line, sizeof line, "Loading %s", p->name);
    int y = rows / 2 - 1;
    draw_text(p->u, y, 2, cols - 4, line, strlen(line), A_BOLD, NULL);
    int bw = cols - 6 < 120 ? cols - 6 : 120;
    meter_bar(total ? (double)done / total : 0, bw, bar, sizeof bar);
    attrset(elem_attr(p->u, TH_BAR_WEIGHTS));
    mvaddstr(y + 1, 2, "[");
    draw_text(p->u, y + 1, 3, bw, bar, strlen(bar), elem_attr(p->u, TH_BAR_WEIGHTS), NULL);
    mvaddstr(y + 1, 3 + bw, "]");
    snprintf(line, sizeof line, "%s of %s  %s/s  %.0f%%", a, b, rate, total ? 100.0 * done / total : 0.0);
    draw_text(p->u, y + 2, 2, cols - 4, line, strlen(line), elem_attr(p->u, TH_METER_VALUE), NULL);
    refresh();
}

/* Shows a fatal message until a key is pressed. */
static void show_fatal(struct ui *u, const char *what, const char *msg)
{
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    erase();
    draw_text(u, rows / 2 - 1, 2, cols - 4, what, strlen(what), elem_attr(u, TH_ERROR) | A_BOLD, NULL);
    struct wrap_line wl[8];
    size_t n = layout_wrap(msg, strlen(msg), cols - 4, wl, 8);
    for (size_t i = 0; i < n && i < 8; i++)
        draw_text(u, rows / 2 + (int)i, 2, cols - 4, msg + wl[i].start, wl[i].len, elem_attr(u, TH_NORMAL), NULL);
    const char *k = "Press any key to leave.";
    draw_text(u, rows / 2 + (int)(n < 8 ? n : 8) + 1, 2, cols - 4, k, strlen(k), A_DIM, NULL);
    refresh();
    timeout(-1);
    while (getch() == KEY_RESIZE && !g_signal)
        ;
}

/* ---- the worker ---- */

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

#define BW_DELAY_S 1.0 /* idle time, after startup or a turn, before probing */

static void *bw_main(void *arg)
{
    struct ui *u = arg;
    double bw = membw_measure(MEMBW_DEFAULT_BYTES, u->info->n_threads, MEMBW_DEFAULT_REPS, &u->bw_cancel);
    pthread_mutex_lock(&u->mu);
    u->bw_result = bw;
    u->bw_done = true;
    wake_ui(u);
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

/* Starts the probe if a figure is wanted and the engine has been idle for
 * BW_DELAY_S. */
static void bw_maybe_start(struct ui *u)
{
    if (!u->bw_wanted || u->bw_running || u->busy || now_s() < u->bw_after)
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
static void bw_collect(struct ui *u, bool cancel)
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
        u->bw_after = now_s() + BW_DELAY_S;
    } else {
        u->bw_wanted = false;
    }
}

static void hist_failed(struct ui *u, const char *what)
{
    notice(u, MSG_ERROR, "not saving: %s%s%s", what, u->h ? ": " : "", u->h ? hist_last_error(u->h) : "");
    u->saving = false;
}

/* Creates the session row on the first message of a conversation. */
static bool ensure_session(struct ui *u)
{
    if (!u->h)
        return false;
    if (u->sid >= 0)
        return true;
    char digest[128];
    kv_model_digest(u->info->model_path, digest, sizeof digest);
    struct hist_sampling hs = kv_to_hist_sampling(&u->o);
    const char *base = strrchr(u->info->model_path, '/');
    int64_t sid;
    if (hist_session_create(u->h, NULL, u->o.system_set ? u->o.system : NULL, &sid) != HIST_OK)
        return false;
    u->sid = sid;
    hist_session_set_model(u->h, sid, base ? base + 1 : u->info->model_path, digest);
    hist_session_set_sampling(u->h, sid, &hs);
    return true;
}

static void start_turn(struct ui *u, const char *text)
{
    if (u->busy)
        return;
    bw_collect(u, true);
    u->saving = false;
    int64_t user_id = 0;
    if (u->h) {
        if (!ensure_session(u))
            hist_failed(u, "cannot create the session");
        else if (hist_message_add(u->h, u->sid, HIST_ROLE_USER, text, (size_t)-1, -1, &user_id) != HIST_OK)
            hist_failed(u, "cannot save your message");
        else if (hist_reply_begin(u->h, u->sid, &u->reply_id) != HIST_OK)
            hist_failed(u, "cannot save the reply");
        else
            u->saving = true;
    }
    struct msg *um = add_msg(u, MSG_USER, text);
    if (um)
        um->hist_id = user_id;
    free(u->job_text);
    u->job_text = strdup(text);
    pthread_mutex_lock(&u->mu);
    u->stream_len = 0;
    if (u->stream)
        u->stream[0] = 0;
    u->worker_done = false;
    u->worker_reply = NULL;
    pthread_mutex_unlock(&u->mu);
    add_msg(u, MSG_ASSISTANT, NULL);
    u->scroll = 0;
    u->last_save = now_s();
    struct gpu_sample g;
    gpu_mon_sample(u->gpu, &g);
    u->energy0 = g.energy_valid ? g.energy_j : NAN;
    u->jpt = NAN;
    if (!u->job_text || pthread_create(&u->thread, NULL, worker_main, u) != 0) {
        u->msgs[u->n_msgs - 1].text = strdup("");
        u->msgs[u->n_msgs - 1].end = HIST_END_ERROR;
        notice(u, MSG_ERROR, "cannot start the generation thread");
        return;
    }
    u->busy = true;
    sample_meters(u);
}

/* Joins a finished worker and commits the reply. */
static void finish_turn(struct ui *u)
{
    pthread_join(u->thread, NULL);
    u->busy = false;
    u->bw_after = now_s() + BW_DELAY_S;
    pthread_mutex_lock(&u->mu);
    char *reply = u->worker_reply;
    u->worker_reply = NULL;
    int rc = u->worker_rc;
    char err[512];
    snprintf(err, sizeof err, "%s", u->worker_err);
    if (!reply)
        reply = strndup(u->stream ? u->stream : "", u->stream_len);
    pthread_mutex_unlock(&u->mu);
    sample_meters(u);
    struct msg *m = &u->msgs[u->n_msgs - 1];
    m->text = reply ? reply : strdup("");
    m->end = rc != 0 ? HIST_END_ERROR : kv_hist_end(u->st.stop);
    if (u->gs.energy_valid && !isnan(u->energy0))
        u->jpt = meters_joules_per_token(u->gs.energy_j - u->energy0, u->st.gen_tokens);
    if (u->saving) {
        struct hist_reply_stats hs = {
            .n_tokens = u->st.gen_tokens,
            .n_prompt = u->st.prefill_tokens,
            .prefill_tps = u->st.prefill_tok_s,
            .decode_tps = u->st.gen_tokens > 1 ? u->st.decode_tok_s : -1,
            .ttft_ms = u->st.gen_tokens > 0 ? u->st.ttft_s * 1000.0 : -1,
        };
        const char *t = m->text ? m->text : "";
        if (hist_reply_finish(u->h, u->reply_id, t, strlen(t), &hs, m->end) != HIST_OK)
            hist_failed(u, "cannot save the reply");
        u->saving = false;
        if (u->sidebar)
            refresh_sessions(u);
    }
    if (rc != 0)
        notice(u, MSG_ERROR, "generation failed: %s", err[0] ? err : "unknown error");
    else if (m->end == HIST_END_CANCELLED)
        set_status(u, TH_NOTICE, "reply stopped; what was generated is kept");
    u->dirty = true;
}

/* Handles what the worker signalled through the pipe. */
static void worker_events(struct ui *u)
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
    if (msg[0] && u->n_msgs > 0) {
        /* Show it above the reply it concerns, at the moment it happens. */
        struct msg live = u->msgs[u->n_msgs - 1];
        u->n_msgs--;
        notice(u, MSG_NOTICE, "context full: %s", msg);
        struct msg *m = add_msg(u, live.kind, NULL);
        if (m)
            *m = live;
    }
    u->dirty = true;
    if (done && u->busy)
        finish_turn(u);
    bw_collect(u, false);
}

/* Saves the streaming reply about once a second (hist_reply_progress
 * decides), copying it out of the lock so the worker never waits on SQLite. */
static void save_progress(struct ui *u)
{
    if (!u->busy || !u->saving || now_s() - u->last_save < 1.0)
        return;
    u->last_save = now_s();
    pthread_mutex_lock(&u->mu);
    char *copy = strndup(u->stream ? u->stream : "", u->stream_len);
    pthread_mutex_unlock(&u->mu);
    if (copy && hist_reply_progress(u->h, u->reply_id, copy, strlen(copy), 0) < 0)
        set_status(u, TH_ERROR, "not saving the reply: %s (will retry)", hist_last_error(u->h));
    free(copy);
}

static void cancel_and_wait(struct ui *u)
{
    if (!u->busy)
        return;
    engine_cancel(u->e);
    finish_turn(u);
}

/* ---- sessions and commands ---- */

static void show_session(struct ui *u, int64_t sid)
{
    struct hist_message *ms = NULL;
    size_t n = 0;
    clear_msgs(u);
    if (hist_messages(u->h, sid, &ms, &n) != HIST_OK) {
        notice(u, MSG_ERROR, "cannot read session %lld: %s", (long long)sid, hist_last_error(u->h));
        return;
    }
    if (u->o.system[0])
        add_msg(u, MSG_SYSTEM, u->o.system);
    for (size_t i = 0; i < n; i++) {
        enum msg_kind k = ms[i].role == HIST_ROLE_USER        ? MSG_USER
                          : ms[i].role == HIST_ROLE_ASSISTANT ? MSG_ASSISTANT
                                                              : MSG_SYSTEM;
        struct msg *m = add_msg(u, k, ms[i].content ? ms[i].content : "");
        if (m) {
            m->end = ms[i].end == HIST_END_STOP ? HIST_END_NONE : ms[i].end;
            m->hist_id = ms[i].id;
        }
    }
    hist_messages_free(ms, n);
}

static int resume_session(struct ui *u, int64_t sid)
{
    char err[512];
    struct kv_options o = u->o;
    int32_t dropped;
    if (kv_session_restore(u->h, sid, u->e, &o, &dropped, err, sizeof err) != 0) {
        notice(u, MSG_ERROR, "%s", err);
        return -1;
    }
    u->o = o;
    u->sid = sid;
    show_session(u, sid);
    if (dropped > 0)
        notice(u, MSG_NOTICE,
               "the %d oldest turn%s of this session do not fit the context of %d tokens: "
               "the model sees the rest (raise --ctx-size to keep them)",
               dropped, dropped == 1 ? "" : "s", engine_info(u->e)->n_ctx);
    struct hist_session s;
    if (hist_session_get(u->h, sid, &s) == HIST_OK) {
        set_status(u, TH_NOTICE, "resumed session %lld: %s", (long long)sid, s.title);
        hist_session_clear(&s);
    }
    refresh_sessions(u);
    return 0;
}

static void new_conversation(struct ui *u)
{
    engine_reset(u->e);
    clear_msgs(u);
    u->sid = -1;
    if (u->o.system_set && u->o.system[0])
        add_msg(u, MSG_SYSTEM, u->o.system);
    set_status(u, TH_NOTICE, "new conversation");
}

static void list_sessions(struct ui *u)
{
    refresh_sessions(u);
    if (!u->n_sessions) {
        notice(u, MSG_NOTICE, "no saved conversations");
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
                              s->id == u->sid ? "  \xE2\x86\x90 this one" : "");
    }
    notice(u, MSG_NOTICE, "%s", buf);
    free(buf);
}

/* The last reply's text, or its Nth fenced code block, into a malloc'd
 * string (NULL when there is none). */
static char *copy_target(struct ui *u, int64_t nth)
{
    for (size_t i = u->n_msgs; i > 0; i--) {
        struct msg *m = &u->msgs[i - 1];
        if (m->kind != MSG_ASSISTANT || !m->text)
            continue;
        if (nth == 0)
            return strdup(m->text);
        int64_t block = 0;
        const char *p = m->text, *start = NULL;
        while (p && *p) {
            const char *eol = strchr(p, '\n');
            size_t ll = eol ? (size_t)(eol - p) : strlen(p);
            const char *q = p;
            while (*q == ' ' && q - p < 3)
                q++;
            if (ll >= 3 && strncmp(q, "```", 3) == 0) {
                if (!start) {
                    start = eol ? eol + 1 : p + ll;
                    block++;
                } else {
                    if (block == nth)
                        return strndup(start, (size_t)(p - start));
                    start = NULL;
                }
            }
            p = eol ? eol + 1 : NULL;
        }
        if (start && block == nth)
            return strdup(start);
        return NULL;
    }
    return NULL;
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

/* Composes a message in $EDITOR (or vi), starting from INITIAL; the result
 * replaces the input line. */
/* Puts TEXT in the input line, cursor at the end, for the user to edit and
 * send (/edit, the editor). Inside the line handler that cannot be done at
 * once: when the handler returns, readline clears any line left in its
 * buffer, so the text waits in pending_input until feed() is back. */
static void set_input(struct ui *u, const char *text)
{
    if (u->in_line_handler) {
        free(u->pending_input);
        u->pending_input = strdup(text);
        return;
    }
    rl_replace_line(text, 0);
    rl_point = rl_end;
}

static void run_editor(struct ui *u, const char *initial)
{
    char path[] = "/tmp/kvchat-msg-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        set_status(u, TH_ERROR, "cannot create a temporary file: %s", strerror(errno));
        return;
    }
    size_t il = strlen(initial);
    if (write(fd, initial, il) != (ssize_t)il) {
        close(fd);
        unlink(path);
        set_status(u, TH_ERROR, "cannot write the temporary file");
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
        set_status(u, TH_ERROR, "the editor (%s) failed; the message is unchanged", ed);
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
            set_input(u, text);
        }
    }
    free(text);
    unlink(path);
    u->dirty = true;
}

static void editor_command(struct ui *u)
{
    const char *ed = getenv("VISUAL");
    if (!ed || !*ed)
        ed = getenv("EDITOR");
    setenv("KVCHAT_EDITOR", ed && *ed ? ed : "vi", 1);
    char *cur = strdup(rl_line_buffer ? rl_line_buffer : "");
    run_editor(u, cur ? cur : "");
    free(cur);
}

static void show_stats(struct ui *u)
{
    sample_meters(u);
    const struct engine_stats *s = &u->st;
    const struct engine_info *in = u->info;
    char mem[5][32];
    fmt_bytes(u->mem.weights, mem[0], 32);
    fmt_bytes(u->mem.kv_cache, mem[1], 32);
    fmt_bytes(u->mem.scratch, mem[2], 32);
    fmt_bytes(u->mem.device_total, mem[3], 32);
    fmt_bytes(u->mem.device_free, mem[4], 32);
    struct meter_values v;
    meter_values(u, &v);
    notice(u, MSG_NOTICE,
           "Last turn: prompt %d tokens (%d prefilled at %.1f tok/s), reply %d tokens at %.1f tok/s, "
           "first token after %.3f s, total %.2f s, stop: %s, turns dropped: %d\n"
           "KV cache %d of %d tokens. Roofline %s. GPU %s, power %s, temp %s, energy %s\n"
           "Model %s (%s, %llu params, %s), template %s, %d layers, ctx %d (trained %d)\n"
           "Backend %s on %s, %d threads; memory: weights %s, KV %s, scratch %s; device %s, %s free\n"
           "Sampling: temp %.2f top_k %d top_p %.2f min_p %.2f repeat_penalty %.2f seed %llu max_tokens %d",
           s->prompt_tokens, s->prefill_tokens, s->prefill_tok_s, s->gen_tokens, s->decode_tok_s, s->ttft_s,
           s->total_s, engine_stop_name(s->stop), s->turns_dropped, s->kv_used, s->kv_capacity, v.roof, v.util,
           v.pow, v.temp, v.jpt, in->model_name, in->arch, (unsigned long long)in->n_params, in->model_path,
           in->template_name, in->n_layer, in->n_ctx, in->n_ctx_train, in->backend, in->device, in->n_threads,
           mem[0], mem[1], mem[2], mem[3], mem[4], u->o.sampling.temperature, u->o.sampling.top_k,
           u->o.sampling.top_p, u->o.sampling.min_p, u->o.sampling.repeat_penalty,
           (unsigned long long)u->o.sampling.seed, u->o.max_tokens);
}

/* Removes the last exchange for /retry and /edit from the engine, the
 * screen and the history, so a resumed session replays what the model saw
 * last and not both attempts; returns the user's text (malloc'd) or NULL.
 * The history rows go from the user message's own id on: a message that
 * was never saved (id 0) leaves the history alone rather than guess. */
static char *pop_exchange(struct ui *u)
{
    if (!engine_pop_turn(u->e)) {
        set_status(u, TH_ERROR, "nothing to redo yet");
        return NULL;
    }
    char *user = NULL;
    int64_t user_id = 0;
    while (u->n_msgs > 0) {
        struct msg *m = &u->msgs[--u->n_msgs];
        if (m->kind == MSG_USER) {
            user = m->text;
            user_id = m->hist_id;
            break;
        }
        free(m->text);
    }
    if (u->h && u->sid >= 0 && user_id > 0 && hist_messages_truncate(u->h, u->sid, user_id, NULL) != HIST_OK)
        hist_failed(u, "cannot remove the previous attempt");
    else if (u->sidebar)
        refresh_sessions(u);
    u->dirty = true;
    return user ? user : strdup("");
}

static void run_command(struct ui *u, const struct command *c)
{
    bool need_idle = c->id == CMD_NEW || c->id == CMD_RESUME || c->id == CMD_RETRY || c->id == CMD_EDIT ||
                     c->id == CMD_DELETE || c->id == CMD_SYSTEM || c->id == CMD_SET;
    if (need_idle && u->busy) {
        set_status(u, TH_ERROR, "/%s: a reply is being generated (Esc stops it)", cmd_name(c->id));
        return;
    }
    if (need_idle) {
        /* These may make the engine work here (/resume rebuilds the KV
         * cache): not alongside the bandwidth probe. */
        bw_collect(u, true);
        u->bw_after = now_s() + BW_DELAY_S;
    }
    bool need_hist = c->id == CMD_SESSIONS || c->id == CMD_RESUME || c->id == CMD_RENAME ||
                     c->id == CMD_DELETE || c->id == CMD_SEARCH || c->id == CMD_EXPORT;
    if (need_hist && !u->h) {
        set_status(u, TH_ERROR, "/%s: the history database is not available", cmd_name(c->id));
        return;
    }
    char err[512];
    switch (c->id) {
    case CMD_HELP:
        notice(u, MSG_NOTICE, "%s", cmd_help_text());
        break;
    case CMD_NEW:
        new_conversation(u);
        break;
    case CMD_SESSIONS:
        list_sessions(u);
        break;
    case CMD_RESUME:
        resume_session(u, c->num);
        break;
    case CMD_RENAME:
        if (!ensure_session(u))
            hist_failed(u, "cannot create the session");
        else if (hist_session_rename(u->h, u->sid, c->arg) != HIST_OK)
            set_status(u, TH_ERROR, "cannot rename: %s", hist_last_error(u->h));
        else {
            set_status(u, TH_NOTICE, "renamed to \"%s\"", c->arg);
            refresh_sessions(u);
        }
        break;
    case CMD_DELETE:
        if (hist_session_delete(u->h, c->num) != HIST_OK) {
            set_status(u, TH_ERROR, "cannot delete session %lld: %s", (long long)c->num, hist_last_error(u->h));
            break;
        }
        if (c->num == u->sid)
            new_conversation(u);
        set_status(u, TH_NOTICE, "deleted session %lld", (long long)c->num);
        refresh_sessions(u);
        break;
    case CMD_SEARCH: {
        struct hist_hit *hits = NULL;
        size_t n = 0;
        if (hist_search(u->h, c->arg, "\xC2\xBB", "\xC2\xAB", 20, &hits, &n) != HIST_OK) {
            set_status(u, TH_ERROR, "search failed: %s", hist_last_error(u->h));
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
            notice(u, MSG_NOTICE, "%s", buf);
            free(buf);
        }
        hist_hits_free(hits, n);
        break;
    }
    case CMD_EXPORT: {
        if (u->sid < 0) {
            set_status(u, TH_ERROR, "/export: nothing saved in this conversation yet");
            break;
        }
        enum hist_format fmt;
        hist_format_parse(c->arg, &fmt);
        FILE *f = fopen(c->arg2, "w");
        if (!f) {
            set_status(u, TH_ERROR, "/export: %s: %s", c->arg2, strerror(errno));
            break;
        }
        int rc = hist_export(u->h, u->sid, fmt, f);
        if (fclose(f) != 0 || rc != HIST_OK)
            set_status(u, TH_ERROR, "/export: %s: %s", c->arg2, rc != HIST_OK ? hist_last_error(u->h) : strerror(errno));
        else
            set_status(u, TH_NOTICE, "exported session %lld to %s", (long long)u->sid, c->arg2);
        break;
    }
    case CMD_SYSTEM:
        snprintf(u->o.system, sizeof u->o.system, "%s", c->arg);
        u->o.system_set = c->arg[0] != 0;
        engine_set_system(u->e, c->arg[0] ? c->arg : NULL);
        if (u->h && u->sid >= 0)
            hist_session_set_system(u->h, u->sid, c->arg[0] ? c->arg : NULL);
        if (c->arg[0])
            add_msg(u, MSG_SYSTEM, c->arg);
        set_status(u, TH_NOTICE, c->arg[0] ? "system prompt set" : "system prompt back to the model's default");
        break;
    case CMD_SET:
        if (config_set(&u->o, c->arg, c->arg2, err, sizeof err) != 0) {
            set_status(u, TH_ERROR, "/set %s", err);
            break;
        }
        if (u->h && u->sid >= 0) {
            struct hist_sampling hs = kv_to_hist_sampling(&u->o);
            hist_session_set_sampling(u->h, u->sid, &hs);
        }
        set_status(u, TH_NOTICE, "%s = %s (from the next reply)", c->arg, c->arg2);
        break;
    case CMD_RETRY: {
        char *text = pop_exchange(u);
        if (text)
            start_turn(u, text);
        free(text);
        break;
    }
    case CMD_EDIT: {
        char *text = pop_exchange(u);
        if (text) {
            set_input(u, text);
            set_status(u, TH_NOTICE, "edit the message and press Enter to resend it");
        }
        free(text);
        break;
    }
    case CMD_THEME: {
        struct theme t;
        if (theme_load(c->arg, NULL, &t, err, sizeof err) != 0) {
            set_status(u, TH_ERROR, "%s", err);
            break;
        }
        u->theme = t;
        apply_theme(u);
        clearok(curscr, TRUE);
        set_status(u, TH_NOTICE, "theme %s", t.name);
        break;
    }
    case CMD_STATS:
        show_stats(u);
        break;
    case CMD_COPY: {
        char *t = copy_target(u, c->num);
        if (!t) {
            set_status(u, TH_ERROR, c->num ? "no code block %lld in the last reply" : "no reply to copy yet",
                       (long long)c->num);
            break;
        }
        osc52_copy(t);
        set_status(u, TH_NOTICE, "copied %zu bytes to the clipboard (OSC 52)", strlen(t));
        free(t);
        break;
    }
    case CMD_EDITOR:
        editor_command(u);
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
    struct ui *u = g_ui;
    /* A change in the number of input lines moves every pane. */
    if (input_lines_needed(u) != u->input_lines || u->lay.too_small) {
        draw_frame(u);
        return;
    }
    draw_input(u);
    refresh();
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
    add_history(line);
    static struct command cmd; /* 12 KiB: kept off the stack of a readline callback */
    size_t off;
    char err[256];
    enum cmd_parse_result r = cmd_parse(line, &cmd, &off, err, sizeof err);
    if (r == CMD_ERROR)
        set_status(u, TH_ERROR, "%s", err);
    else if (r == CMD_OK)
        run_command(u, &cmd);
    else if (u->busy)
        set_status(u, TH_ERROR, "a reply is being generated: Esc stops it");
    else {
        size_t bad;
        if (!kv_utf8_valid(line + off, strlen(line + off), &bad))
            set_status(u, TH_ERROR, "the message is not valid UTF-8 (byte %zu)", bad);
        else
            start_turn(u, line + off);
    }
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
    if (n > 64)
        n = 64;
    /* Readline's word starts at START; ours may be later (after the '/'). */
    size_t pre = ws > (size_t)start ? ws - (size_t)start : 0;
    for (size_t i = 0; i < n; i++) {
        char *c = malloc(pre + strlen(out[i]) + 1);
        if (!c)
            break;
        memcpy(c, rl_line_buffer + start, pre);
        strcpy(c + pre, out[i]);
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
    set_status(g_ui, TH_NOTICE, "%s", buf);
    draw_frame(g_ui);
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
        set_input(u, t);
        free(t);
        rl_redisplay_hook();
    }
}

static void feed_str(struct ui *u, const char *s)
{
    while (*s)
        feed(u, (unsigned char)*s++);
}

static void setup_readline(struct ui *u)
{
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

/* ---- keys ---- */

static void handle_key(struct ui *u, int ch);

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
            set_status(u, TH_NOTICE, "stopping\xE2\x80\xA6");
        }
        return;
    }
    if (next == '\r' || next == '\n' || next == KEY_ENTER) {
        rl_insert_text("\n");
        rl_redisplay_hook();
        return;
    }
    if (next > 255) {
        handle_key(u, next);
        return;
    }
    feed(u, 27);
    feed(u, next);
}

static void handle_key(struct ui *u, int ch)
{
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
        draw_frame(u);
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
            refresh_sessions(u);
        u->dirty = true;
        return;
    case 3: /* Ctrl-C: raw mode delivers it as a key */
        if (u->busy) {
            engine_cancel(u->e);
            set_status(u, TH_NOTICE, "stopping\xE2\x80\xA6");
        } else if (rl_end == 0) {
            set_status(u, TH_NOTICE, "to leave, press Ctrl-D or type /quit");
        } else {
            rl_replace_line("", 0);
            rl_point = 0;
            rl_redisplay_hook();
        }
        return;
    case 7: /* Ctrl-G */
        editor_command(u);
        return;
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

/* ---- setup and the loop ---- */

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
    clear_msgs(u);
    free(u->msgs);
    free(u->stream);
    free(u->job_text);
    free(u->paste);
    free(u->pending_input);
    free(u->dl);
    free(u->arena);
    free(u->arena_sty);
    hist_sessions_free(u->sessions, u->n_sessions);
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

static void open_history(struct ui *u)
{
    if (u->o.no_history) {
        set_status(u, TH_NOTICE, "history is off (--no-history): this conversation is not saved");
        return;
    }
    char path[4096], err[1024];
    if (u->o.db[0])
        snprintf(path, sizeof path, "%s", u->o.db);
    else if (hist_default_path(path, sizeof path) != HIST_OK) {
        notice(u, MSG_ERROR, "not saving: neither XDG_DATA_HOME nor HOME is set");
        return;
    }
    u->h = hist_open(path, err, sizeof err);
    if (!u->h)
        notice(u, MSG_ERROR, "not saving: %s", err);
}

int tui_run(const struct kv_options *opt, char *err, size_t errlen)
{
    err[0] = 0;
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        snprintf(err, errlen, "the chat screen needs a terminal (use -p TEXT for scripts)");
        return 1;
    }
    struct ui *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    u->o = *opt;
    u->sid = -1;
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
    if (tcgetattr(STDIN_FILENO, &g_saved_tio) == 0)
        g_tio_saved = 1;
    g_signal = 0;
    install_signals();
    set_escdelay(25);
    if (!initscr()) {
        snprintf(err, errlen, "cannot start the terminal screen (is TERM set?)");
        ui_free(u);
        return 1;
    }
    g_ui = u;
    raw();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    define_key("\033[200~", KEY_PASTE_BEGIN);
    define_key("\033[201~", KEY_PASTE_END);
    mousemask(BUTTON4_PRESSED
#ifdef BUTTON5_PRESSED
                  | BUTTON5_PRESSED
#endif
              ,
              NULL);
    mouseinterval(0);
    apply_theme(u);
    fputs("\033[?2004h", stdout); /* bracketed paste */
    fflush(stdout);

    /* Load the model with a progress bar. */
    char path[4096], lerr[5200] = "";
    kv_model_path(&u->o, path, sizeof path);
    struct load_progress lp = {u, now_s(), 0, strrchr(path, '/') ? strrchr(path, '/') + 1 : path};
    on_load_progress(0, 0, &lp);
    u->e = kv_engine_open(&u->o, on_load_progress, &lp, path, sizeof path, lerr, sizeof lerr);
    int rc = 0;
    if (!u->e) {
        show_fatal(u, "The model could not be loaded", lerr);
        snprintf(err, errlen, "%s", lerr);
        rc = 1;
        goto out;
    }
    u->info = engine_info(u->e);
    if (strcmp(u->info->backend, "cuda") == 0)
        u->gpu = gpu_mon_new(0);
    u->bandwidth = u->o.mem_bandwidth_gbs > 0 ? u->o.mem_bandwidth_gbs * 1e9 : gpu_mon_bandwidth(u->gpu);
    /* On the CPU the host's memory is the device: measure it, once the
     * screen is up and the engine idle (see bw_collect). */
    u->bw_wanted = u->bandwidth <= 0 && strcmp(u->info->backend, "cuda") != 0;
    if (u->bw_wanted) {
        double cached = membw_cache_get(u->info->device, u->info->n_threads);
        if (cached > 0) {
            u->bandwidth = cached;
            u->bw_wanted = false;
        }
    }
    u->bw_after = now_s() + BW_DELAY_S;

    open_history(u);
    if (theme_err[0])
        notice(u, MSG_ERROR, "%s (using the default theme)", theme_err);
    if (u->info->backend_note[0])
        set_status(u, TH_NOTICE, "%s", u->info->backend_note);
    if (u->o.resume != KV_RESUME_NONE) {
        if (!u->h) {
            notice(u, MSG_ERROR, "cannot resume: the history database is not available");
        } else {
            char rerr[512];
            int64_t sid = kv_session_resolve(u->h, &u->o, rerr, sizeof rerr);
            if (sid < 0)
                notice(u, MSG_ERROR, "%s", rerr);
            else
                resume_session(u, sid);
        }
    } else {
        engine_set_system(u->e, u->o.system_set ? u->o.system : NULL);
        if (u->o.system_set && u->o.system[0])
            add_msg(u, MSG_SYSTEM, u->o.system);
    }

    setup_readline(u);
    draw_frame(u);

    while (!u->quit && !g_signal) {
        double t = now_s();
        double wait = u->busy ? FRAME_S : IDLE_METER_S;
        if (u->dirty)
            wait = u->last_frame + FRAME_S - t;
        if (wait < 0)
            wait = 0;
        struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {u->wake[0], POLLIN, 0}};
        int pr = poll(fds, 2, (int)(wait * 1000));
        if (pr < 0 && errno != EINTR)
            break;
        if (pr > 0 && (fds[1].revents & POLLIN))
            worker_events(u);
        if (pr > 0 && (fds[0].revents & (POLLHUP | POLLERR)) && !(fds[0].revents & POLLIN))
            break; /* the terminal went away */
        /* Keys (and KEY_RESIZE after SIGWINCH interrupted poll). */
        nodelay(stdscr, TRUE);
        int ch;
        bool keyed = false;
        while (!u->quit && (ch = getch()) != ERR) {
            handle_key(u, ch);
            keyed = true;
            nodelay(stdscr, TRUE);
        }
        save_progress(u);
        bw_maybe_start(u);
        t = now_s();
        if (keyed && u->dirty)
            draw_frame(u); /* answer keys at once */
        else if (t - u->last_frame >= FRAME_S && (u->dirty || u->busy || t - u->last_meter >= IDLE_METER_S))
            draw_frame(u);
    }
    if (g_signal)
        rc = 128 + g_signal;
    cancel_and_wait(u);
    bw_collect(u, true);
    rl_callback_handler_remove();
    if (u->hist_file[0])
        write_history(u->hist_file);
    if (rl_outstream && rl_outstream != stdout)
        fclose(rl_outstream);
    rl_outstream = NULL;
out:
    fputs("\033[?2004l", stdout);
    fflush(stdout);
    endwin();
    if (g_tio_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_tio);
    g_ui = NULL;
    ui_free(u);
    return rc;
}
