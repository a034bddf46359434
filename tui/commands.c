/* commands.c - slash-command parsing, help and completion. See commands.h. */
#include "commands.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum arg_kind { ARG_NONE, ARG_ID, ARG_TEXT, ARG_OPT_TEXT, ARG_EXPORT, ARG_SET, ARG_NAME, ARG_OPT_NUM, ARG_ON_OFF };

/* One row per command: its name, arguments, /help line and what it needs
 * before it runs (cmd_needs). */
static const struct {
    const char *name;
    enum arg_kind arg;
    const char *usage;
    unsigned needs;
} cmds[CMD_COUNT] = {
    [CMD_HELP] = {"help", ARG_NONE, "/help                 this list (also F1, or ? on an empty line)", 0},
    [CMD_NEW] = {"new", ARG_NONE, "/new                  start a new conversation", CMD_NEEDS_IDLE},
    [CMD_SESSIONS] = {"sessions", ARG_NONE, "/sessions             list saved conversations",
                      CMD_NEEDS_HISTORY},
    [CMD_RESUME] = {"resume", ARG_ID, "/resume ID            continue saved conversation ID",
                    CMD_NEEDS_IDLE | CMD_NEEDS_HISTORY},
    [CMD_RENAME] = {"rename", ARG_TEXT, "/rename TITLE         rename this conversation", CMD_NEEDS_HISTORY},
    [CMD_DELETE] = {"delete", ARG_ID, "/delete ID            delete saved conversation ID",
                    CMD_NEEDS_IDLE | CMD_NEEDS_HISTORY},
    [CMD_SEARCH] = {"search", ARG_TEXT, "/search TEXT          search all saved messages", CMD_NEEDS_HISTORY},
    [CMD_EXPORT] = {"export", ARG_EXPORT, "/export md|json FILE  write this conversation to FILE",
                    CMD_NEEDS_HISTORY},
    [CMD_SYSTEM] = {"system", ARG_OPT_TEXT, "/system TEXT          set the system prompt (empty: default)",
                    CMD_NEEDS_IDLE},
    [CMD_SET] = {"set", ARG_SET,
                 "/set KEY VALUE        temp top_k top_p min_p repeat_penalty seed max_tokens", CMD_NEEDS_IDLE},
    [CMD_MODEL] = {"model", ARG_OPT_TEXT,
                   "/model [NAME|N]       switch the model (no argument: choose from a list)",
                   CMD_NEEDS_IDLE},
    [CMD_RETRY] = {"retry", ARG_NONE, "/retry, /variant N    new reply (old ones kept); show reply N, or [ ]",
                   CMD_NEEDS_IDLE},
    [CMD_EDIT] = {"edit", ARG_NONE, "/edit                 edit and resend the last message", CMD_NEEDS_IDLE},
    [CMD_VARIANT] = {"variant", ARG_ID, NULL, CMD_NEEDS_IDLE}, /* on /retry's help line */
    [CMD_THINK] = {"think", ARG_NAME, "/think on|off         a reasoning model's thinking (templates with a switch)",
                   CMD_NEEDS_IDLE},
    [CMD_THEME] = {"theme", ARG_NAME, "/theme NAME           switch colours (dark light high-contrast)", 0},
    [CMD_STATS] = {"stats", ARG_NONE, "/stats                statistics of the last reply", 0},
    [CMD_INSPECT] = {"inspect", ARG_NONE, "/inspect              memory and speed inspector (F3)", 0},
    [CMD_COPY] = {"copy", ARG_OPT_NUM, "/copy [N]             copy the last reply (or its Nth code block)",
                  0},
    [CMD_EDITOR] = {"editor", ARG_NONE, "/editor               compose the message in $EDITOR", 0},
    [CMD_CLEAR] = {"clear", ARG_NONE, "/clear                clear the screen (the conversation stays)", 0},
    [CMD_SHOW] = {"show", ARG_NONE, "/show                 the model, context and sampling settings in use", 0},
    [CMD_TIMESTAMPS] = {"timestamps", ARG_ON_OFF, "/timestamps [on|off]  times on the messages (no argument: toggle; F4)",
                        0},
    [CMD_QUIT] = {"quit", ARG_NONE, "/quit                 leave", 0},
};

/* /set keys as typed, and the config key each means. */
static const struct {
    const char *name, *key;
} set_keys[] = {
    {"temp", "temperature"},     {"top_k", "top_k"}, {"top_p", "top_p"},           {"min_p", "min_p"},
    {"repeat_penalty", "repeat_penalty"}, {"seed", "seed"}, {"max_tokens", "max_tokens"},
    {"temperature", "temperature"},
};
#define N_SET_KEYS (sizeof set_keys / sizeof *set_keys)

static const char *export_formats[] = {"md", "json"};

unsigned cmd_needs(enum cmd_id id)
{
    return (unsigned)id < CMD_COUNT ? cmds[id].needs : 0;
}

const char *cmd_name(enum cmd_id id)
{
    return (unsigned)id < CMD_COUNT ? cmds[id].name : "?";
}

/* One row per key of the chat screen, for the help overlay. input.c binds
 * the keys; a key added there gets its row here. */
static const struct {
    const char *keys, *what;
} key_rows[] = {
    {"Enter", "send the message (while a reply streams: queue it)"},
    {"Alt-Enter, trailing \\", "new line in the message"},
    {"Esc", "stop the reply; with a queued message, take it back to edit"},
    {"Ctrl-C", "stop the reply, or clear the input line"},
    {"PgUp / PgDn, wheel", "scroll the conversation"},
    {"Up / Down", "earlier lines typed (input history)"},
    {"Tab", "complete a command, /set key, theme or model"},
    {"F1, ? (empty line)", "this help (Esc, q or F1 closes; arrows scroll)"},
    {"F2", "the sessions sidebar: arrows move, typing filters, Enter opens, r renames, d deletes"},
    {"F3", "the memory and speed inspector (F3 or Esc closes)"},
    {"F4", "times on the messages"},
    {"F5", "fold or unfold the replies' thinking"},
    {"[ / ] (empty line)", "the previous or next variant of the last reply (after /retry)"},
    {"Ctrl-G", "compose the message in $EDITOR"},
    {"Ctrl-D", "quit (on an empty line)"},
    {"//text", "send text that starts with /"},
};

const char *cmd_help_text(void)
{
    static char buf[8192];
    if (!buf[0]) {
        size_t o = (size_t)snprintf(buf, sizeof buf, "Commands\n");
        for (int i = 0; i < CMD_COUNT; i++)
            if (cmds[i].usage)
                o += (size_t)snprintf(buf + o, sizeof buf - o, "  %s\n", cmds[i].usage);
        o += (size_t)snprintf(buf + o, sizeof buf - o, "\nKeys\n");
        for (size_t i = 0; i < sizeof key_rows / sizeof *key_rows; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "  %-22s%s\n", key_rows[i].keys, key_rows[i].what);
    }
    return buf;
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static int copy_arg(char *dst, size_t cap, const char *s, size_t n, const char *what, char *err, size_t errlen)
{
    if (n >= cap) {
        snprintf(err, errlen, "%s is too long (at most %zu bytes)", what, cap - 1);
        return -1;
    }
    memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

enum cmd_parse_result cmd_parse(const char *line, struct command *out, size_t *text_offset, char *err,
                                size_t errlen)
{
    *text_offset = 0;
    if (line[0] != '/')
        return CMD_TEXT;
    if (line[1] == '/') {
        *text_offset = 1;
        return CMD_TEXT;
    }
    const char *p = line + 1;
    size_t nl = 0;
    while (p[nl] && !isspace((unsigned char)p[nl]))
        nl++;
    out->num = 0;
    out->arg[0] = out->arg2[0] = 0;
    int found = -1;
    for (int i = 0; i < CMD_COUNT; i++)
        if (strlen(cmds[i].name) == nl && strncmp(cmds[i].name, p, nl) == 0)
            found = i;
    if (found < 0) {
        snprintf(err, errlen, "unknown command /%.*s (try /help)", (int)(nl > 40 ? 40 : nl), p);
        return CMD_ERROR;
    }
    out->id = (enum cmd_id)found;
    const char *a = skip_ws(p + nl);
    size_t alen = strlen(a);
    while (alen && isspace((unsigned char)a[alen - 1]))
        alen--;
    const char *name = cmds[found].name;
    switch (cmds[found].arg) {
    case ARG_NONE:
        if (alen) {
            snprintf(err, errlen, "/%s takes no arguments", name);
            return CMD_ERROR;
        }
        return CMD_OK;
    case ARG_ID:
    case ARG_OPT_NUM: {
        if (!alen && cmds[found].arg == ARG_OPT_NUM)
            return CMD_OK;
        char *end;
        errno = 0;
        long long v = strtoll(a, &end, 10);
        if (!alen || !isdigit((unsigned char)a[0]) || (size_t)(end - a) != alen || errno || v <= 0) {
            if (!alen)
                snprintf(err, errlen, "/%s needs a session ID (see /sessions)", name);
            else
                snprintf(err, errlen, "/%s: '%.*s' is not a positive number", name, (int)(alen > 30 ? 30 : alen), a);
            return CMD_ERROR;
        }
        out->num = v;
        return CMD_OK;
    }
    case ARG_TEXT:
    case ARG_OPT_TEXT:
        if (!alen && cmds[found].arg == ARG_TEXT) {
            snprintf(err, errlen, "/%s needs %s", name, found == CMD_RENAME ? "a title" : "some text");
            return CMD_ERROR;
        }
        return copy_arg(out->arg, sizeof out->arg, a, alen, "the text", err, errlen) ? CMD_ERROR : CMD_OK;
    case ARG_NAME:
        if (!alen || memchr(a, ' ', alen)) {
            snprintf(err, errlen, "/%s needs one name", name);
            return CMD_ERROR;
        }
        return copy_arg(out->arg, sizeof out->arg, a, alen, "the name", err, errlen) ? CMD_ERROR : CMD_OK;
    case ARG_EXPORT: {
        size_t fl = 0;
        while (fl < alen && !isspace((unsigned char)a[fl]))
            fl++;
        const char *file = skip_ws(a + fl);
        size_t filen = alen - (size_t)(file - a);
        bool fmt_ok = (fl == 2 && strncmp(a, "md", 2) == 0) || (fl == 4 && strncmp(a, "json", 4) == 0);
        if (!fmt_ok || !filen) {
            snprintf(err, errlen, "usage: /export md|json FILE");
            return CMD_ERROR;
        }
        if (copy_arg(out->arg, sizeof out->arg, a, fl, "the format", err, errlen) ||
            copy_arg(out->arg2, sizeof out->arg2, file, filen, "the file name", err, errlen))
            return CMD_ERROR;
        return CMD_OK;
    }
    case ARG_ON_OFF:
        if (alen && !(alen == 2 && strncmp(a, "on", 2) == 0) && !(alen == 3 && strncmp(a, "off", 3) == 0)) {
            snprintf(err, errlen, "/%s takes on, off or nothing (toggle)", name);
            return CMD_ERROR;
        }
        return copy_arg(out->arg, sizeof out->arg, a, alen, "the value", err, errlen) ? CMD_ERROR : CMD_OK;
    case ARG_SET: {
        size_t kl = 0;
        while (kl < alen && !isspace((unsigned char)a[kl]))
            kl++;
        if (kl == 0)
            return CMD_OK; /* /set alone: show the values (arg empty) */
        const char *v = skip_ws(a + kl);
        size_t vl = alen - (size_t)(v - a);
        const char *key = NULL;
        for (size_t i = 0; i < N_SET_KEYS; i++)
            if (strlen(set_keys[i].name) == kl && strncmp(set_keys[i].name, a, kl) == 0)
                key = set_keys[i].key;
        if (!key) {
            snprintf(err, errlen, "/set: unknown key '%.*s' (temp top_k top_p min_p repeat_penalty seed max_tokens)",
                     (int)(kl > 30 ? 30 : kl), a);
            return CMD_ERROR;
        }
        if (!vl || memchr(v, ' ', vl)) {
            snprintf(err, errlen, "/set %s needs one value", key);
            return CMD_ERROR;
        }
        snprintf(out->arg, sizeof out->arg, "%s", key);
        return copy_arg(out->arg2, sizeof out->arg2, v, vl, "the value", err, errlen) ? CMD_ERROR : CMD_OK;
    }
    }
    return CMD_ERROR;
}

static size_t add_matches(const char *const *names, size_t n, const char *word, size_t wl, const char **out,
                          size_t cap, size_t k)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(names[i], word, wl) == 0) {
            if (k < cap)
                out[k] = names[i];
            k++;
        }
    return k;
}

size_t cmd_complete(const char *line, size_t cursor, const char *const *themes, size_t n_themes,
                    const char **out, size_t cap, size_t *word_start)
{
    size_t ws = cursor;
    while (ws > 0 && !isspace((unsigned char)line[ws - 1]))
        ws--;
    *word_start = ws;
    if (line[0] != '/')
        return 0;
    const char *word = line + ws;
    size_t wl = cursor - ws;
    if (ws == 0) { /* the command name itself, after the slash */
        *word_start = 1;
        const char *names[CMD_COUNT];
        for (int i = 0; i < CMD_COUNT; i++)
            names[i] = cmds[i].name;
        return add_matches(names, CMD_COUNT, word + 1, wl - 1, out, cap, 0);
    }
    /* Only the first argument completes: the command word, then spaces. */
    size_t cl = 1;
    while (cl < cursor && !isspace((unsigned char)line[cl]))
        cl++;
    size_t a = cl;
    while (a < cursor && isspace((unsigned char)line[a]))
        a++;
    if (a != ws)
        return 0;
    if (cl == 4 && strncmp(line, "/set", 4) == 0) {
        const char *names[N_SET_KEYS - 1]; /* "temperature" is an alias, not offered */
        for (size_t i = 0; i + 1 < N_SET_KEYS; i++)
            names[i] = set_keys[i].name;
        return add_matches(names, N_SET_KEYS - 1, word, wl, out, cap, 0);
    }
    if (cl == 7 && strncmp(line, "/export", 7) == 0)
        return add_matches(export_formats, 2, word, wl, out, cap, 0);
    if (cl == 6 && strncmp(line, "/theme", 6) == 0)
        return add_matches(themes, n_themes, word, wl, out, cap, 0);
    return 0;
}

size_t cmd_complete_model(const char *line, size_t cursor, const char *const *models,
                          size_t n_models, const char **out, size_t cap, size_t *word_start)
{
    /* the whole argument is the word: a file name may hold spaces */
    size_t a = 6;
    if (cursor < a || strncmp(line, "/model", 6) != 0 || !isspace((unsigned char)line[6]))
        return 0;
    while (a < cursor && isspace((unsigned char)line[a]))
        a++;
    *word_start = a;
    return add_matches(models, n_models, line + a, cursor - a, out, cap, 0);
}
