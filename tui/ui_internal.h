/* ui_internal.h - what the files of the chat screen share: struct ui and the
 * functions each file offers the others. Not a public header: main.c sees
 * only tui.h.
 *
 *   ui.c       tui_run: setup, the main loop, teardown; status and notices
 *   draw.c     composing and drawing a frame: panes, meters, status, input,
 *              the load progress and fatal screens; the theme's colour pairs
 *   input.c    readline's callback interface, keys, paste, completion
 *   worker.c   the generation thread and a turn's start and finish, the
 *              host bandwidth probe thread
 *   actions.c  slash commands, sessions, export, /retry and /edit,
 *              /copy (OSC 52), the $EDITOR, /model's list and the switch
 *   term.c     signals and the terminal restore on every way out
 *
 * Threads: the UI thread owns ncurses, readline, the history connection, the
 * conversation (struct conv) and the message list. The generation worker
 * only runs engine_chat; its on_piece appends to ui.stream under ui.mu and
 * wakes the UI through a self-pipe. The UI redraws at most 1/FRAME_S times a
 * second whatever the token rate, so the engine pays one mutex and (at most)
 * one pipe write per token. The bandwidth probe thread only measures and
 * hands its figure over under ui.mu.
 */
#ifndef KVCHAT_TUI_UI_INTERNAL_H
#define KVCHAT_TUI_UI_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "compose.h"
#include "conversation.h"
#include "engine.h"
#include "history.h"
#include "layout.h"
#include "meters.h"
#include "msgs.h"
#include "monitor.h"
#include "inspect.h"
#include "overlay.h"
#include "gpu.h"
#include "options.h"
#include "theme.h"

#define FRAME_S 0.1      /* at most ~10 frames (and meter samples) a second */
#define IDLE_METER_S 1.0 /* meters refresh once a second when idle */
#define SAVE_S 1.0       /* the streaming reply is saved about this often */
#define BW_DELAY_S 1.0   /* idle time, after startup or a turn, before probing */

struct command;

enum ui_prompt {
    UI_PROMPT_NONE = 0,
    UI_PROMPT_DELETE, /* y/N: delete session prompt_sid */
    UI_PROMPT_RENAME, /* a line: the new title of session prompt_sid */
};

struct ui {
    struct kv_options o; /* copy: /set and /system change it */
    struct engine *e;    /* owned */
    const struct engine_info *info; /* borrowed from e */
    struct hist *h;      /* owned; NULL: not saving */
    struct conv conv;    /* the conversation with its history (borrows e and h) */
    struct theme theme;
    bool color;
    struct gpu_mon *gpu; /* owned; NULL off CUDA */
    double bandwidth;    /* bytes/s for the roofline, 0 = unknown */

    /* Host memory bandwidth probe (CPU backend, no configured figure): run
     * once on its own thread while the engine is idle, called off the moment
     * a turn starts and tried again after it, so it never competes with the
     * engine for memory. */
    bool bw_wanted;      /* no figure yet and one should be measured */
    bool bw_running;     /* bw_thread exists (joined by ui_bw_collect) */
    double bw_after;     /* monotonic time before which not to start */
    pthread_t bw_thread;
    atomic_int bw_cancel;
    double bw_result;    /* bytes/s, 0 = cancelled or failed; guarded by mu */
    bool bw_done;        /* bw_result is final; guarded by mu */

    struct msg_list msgs;

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
    /* The prompt being read in (engine on_prefill): PF_LIVE is the worker's,
     * guarded by mu (PF_T0: monotonic time of its first report); PF the UI's
     * copy from the last meter sample, which the meters and the status line
     * draw. */
    struct prefill_view pf_live, pf;
    double pf_t0;
    /* Why the next turn reads the whole conversation again (/system, a
     * resume, /model), shown with its progress; a static string, NULL = it
     * does not. Cleared once a turn has read its prompt. */
    const char *reread_why;

    /* view */
    int rows, cols;
    struct layout lay;
    bool sidebar;
    int scroll;          /* lines up from the bottom; 0 follows the reply */
    int conv_lines, conv_width; /* the last frame's display lines and pane width: a
                                   view scrolled up holds still while lines arrive */
    int input_lines;
    char status[512];
    int status_elem;
    double status_until;
    double last_frame, last_meter, last_save;
    bool dirty, quit;

    /* meters */
    struct engine_stats st;
    struct engine_memory mem;
    struct engine_server srv; /* a server's own figures (all unknown for a local engine) */
    struct gpu_sample gs;
    double energy0;      /* energy counter at the turn's start, J (NaN = n/a) */
    double jpt;          /* J/token of the running or last turn */

    /* input */
    int rl_char;
    bool rl_avail, in_paste;
    bool paste_cr;        /* the last pasted byte was CR: a LF after it is the same line break */
    bool in_line_handler; /* inside the line handler: see ui_set_input */
    char *pending_input;  /* owned; text for the input line once the handler returns */
    char *paste;
    size_t paste_len, paste_cap;
    char *cands[64];
    size_t n_cands;
    char *themes[32];    /* completion names: built-in and user themes */
    size_t n_themes;
    char hist_file[4096];

    struct hist_session *sessions; /* owned: the sidebar's and /sessions' list */
    size_t n_sessions;
    char sess_title[256]; /* the title of session conv.sid, for the title line ("" none) */

    /* The F2 sidebar takes the keys while it is open (sidebar above):
     * typing filters, arrows move, Enter opens, r renames, d deletes. */
    size_t *sb_idx;      /* owned: indexes into sessions of the rows that match sb_query */
    size_t sb_n, sb_sel, sb_top;
    char sb_query[128];

    /* A question on the status line; it takes the keys until answered. */
    enum ui_prompt prompt;
    int64_t prompt_sid;  /* the session it is about */
    char prompt_q[400];  /* the question */
    char prompt_buf[256]; /* UI_PROMPT_RENAME: the title typed so far */

    /* The title line's model: its name, quantisation (the file's), for
     * the model file model_for; read again when the model changes. */
    char model_for[4096];
    char model_shown[160];
    char model_quant[16];

    struct compose comp; /* the conversation's display lines, reused per frame */

    /* /model: what there is to choose from (the models folder's files, or
     * the server's models), read again for each picker, and the picker over
     * it while pick_open. */
    char **model_names; /* owned: what /model NAME takes */
    char **model_rows;  /* owned: the picker's lines (size, quantisation, ...) */
    size_t n_models;
    bool models_read;   /* the list has been read once (completion reuses it) */
    bool pick_open;
    size_t pick_sel;

    /* the inspector (F3, /inspect): a reading a second, kept also while it
     * is closed so it opens with the last minutes; MON also writes
     * --monitor-log */
    struct monitor *mon;  /* owned; NULL when out of memory */
    struct inspect *insp; /* owned */
    bool insp_open;
    double last_mon;      /* monotonic time of the last reading */

    /* The help (F1, ?, /help) or /show panel over the conversation; it
     * takes the keys while open. */
    struct overlay ov;

    /* A message typed and sent while a reply streams: shown above the input
     * as "queued: ...", sent when the reply ends. A second Enter appends to
     * it on a new line (nothing typed is thrown away); Esc takes it back
     * into the input line to edit or drop. Owned, NULL = none. */
    char *queued;

    /* The live token count of the input (meters.h, input_count); counted on
     * the UI thread only while no turn runs (an engine is used by one thread
     * at a time). count_shown: its cells on the status line, 0 = none. */
    struct input_count icount;
    int count_shown;

    bool timestamps;     /* times on the messages' headers (F4, /timestamps) */
    bool fold_thinking;  /* finished replies' thinking folded to one line (F5) */
};

/* The model answers from a server (the remote engine): the title names it,
 * and the meters add its own figures. */
static inline bool ui_remote(const struct ui *u)
{
    return u->info && strcmp(u->info->backend, "remote") == 0;
}

/* ---- ui.c ---- */
double ui_now(void); /* monotonic seconds */
/* Shows a message on the status line for a few seconds. */
void ui_status(struct ui *u, int elem, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A notice (KIND MSG_NOTICE or MSG_ERROR) in the conversation and, its first
 * line, on the status line. */
void ui_notice(struct ui *u, enum msg_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct msg *ui_add_msg(struct ui *u, enum msg_kind kind, const char *text);
void ui_clear_msgs(struct ui *u);

/* ---- draw.c ---- */
void ui_apply_theme(struct ui *u);
void ui_draw_frame(struct ui *u);
/* Redraws only the input pane, or the whole frame when the input's height
 * changed (it moves every pane). */
void ui_draw_input_only(struct ui *u);
void ui_sample_meters(struct ui *u); /* at most once per frame */
struct meter_values;
void ui_meter_values(struct ui *u, struct meter_values *v); /* from the last sample */
struct load_progress {
    struct ui *u;
    double t0, last;
    const char *name; /* the model file's name */
};
void ui_load_progress(uint64_t done, uint64_t total, void *user); /* a kv_engine_open callback */
void ui_show_fatal(struct ui *u, const char *what, const char *msg); /* until a key */

/* A theme element's curses attributes (attr_t), for the drawing files
 * beside draw.c. */
unsigned long ui_elem_attr(struct ui *u, int elem);

/* ---- inspect_draw.c ---- */
struct rect;
void ui_draw_inspector(struct ui *u, struct rect r);
/* ---- ui.c: the inspector's once-a-second reading ---- */
void ui_monitor_tick(struct ui *u);
void ui_toggle_inspector(struct ui *u);

/* ---- input.c ---- */
void ui_input_define_keys(void);     /* bracketed paste's keys, right after initscr */
void ui_input_setup(struct ui *u);    /* readline's callback interface, input history */
void ui_input_teardown(struct ui *u); /* saves the input history */
void ui_handle_key(struct ui *u, int ch);
/* The input line: readline's buffer, its length and the cursor (bytes). */
const char *ui_input_text(size_t *len, size_t *point);
void ui_set_input(struct ui *u, const char *text);
/* The token count of the input is due (ui.c's loop calls it when
 * input_count_next passes): recounts and redraws the input. */
void ui_input_count_tick(struct ui *u);
/* The queued message, if any, once a reply has ended (OK: it ended without
 * an error): sends it, or puts it back in the input line. */
void ui_send_queued(struct ui *u, bool ok);
/* Opens the help overlay. */
void ui_open_help(struct ui *u);

/* ---- worker.c ---- */
void ui_start_turn(struct ui *u, const char *text);
void ui_start_retry(struct ui *u, const char *text);
/* Shows reply K of the last turn and makes it the one later turns build on. */
void ui_variant_show(struct ui *u, int k);
void ui_worker_events(struct ui *u); /* what the worker signalled through the pipe */
void ui_save_progress(struct ui *u); /* about once every SAVE_S while a reply streams */
void ui_cancel_and_wait(struct ui *u);
void ui_bw_maybe_start(struct ui *u);
void ui_bw_collect(struct ui *u, bool cancel);

/* ---- actions.c ---- */
void ui_run_command(struct ui *u, const struct command *c);
/* Shows and continues session SID. OWN_SYSTEM: with the system prompt
 * stored with it (/resume, the sidebar); else the options' one when they
 * set one (--system with --resume). */
int ui_resume_session(struct ui *u, int64_t sid, bool own_system);
void ui_refresh_sessions(struct ui *u); /* also the sidebar's rows and the title line's title */
void ui_sidebar_refilter(struct ui *u);  /* the sidebar's rows for sb_query */
/* Asks on the status line before deleting session SID (naming its title and
 * messages); ui_delete_session does it once answered y. */
void ui_ask_delete(struct ui *u, int64_t sid);
void ui_delete_session(struct ui *u, int64_t sid);
void ui_ask_rename(struct ui *u, int64_t sid);
void ui_rename_session(struct ui *u, int64_t sid, const char *title);
void ui_editor_command(struct ui *u); /* Ctrl-G, /editor */
/* /model: reads the list of models (0, or -1 with ERR); switches to model I
 * of it, keeping the conversation, or says in one line why not; frees it. */
int ui_models_read(struct ui *u, char *err, size_t errlen);
void ui_model_switch(struct ui *u, size_t i);
void ui_models_free(struct ui *u);

/* ---- term.c ---- */
void term_save(void);            /* the tty modes to put back */
void term_install_signals(void); /* quit signals set a flag; crashes restore, then die */
void term_restore(void);         /* the saved tty modes back (after endwin) */
int term_signal(void);           /* the quit signal received, 0 = none */

#endif
