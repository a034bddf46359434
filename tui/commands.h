/* commands.h - the chat screen's slash commands: parsing a typed line into a
 * command with checked arguments, the /help text, and Tab completion.
 *
 * Pure: the chat screen (actions.c) executes what cmd_parse returns once
 * cmd_needs allows it; tests/test_tui.c checks parsing, completion and the
 * policy without a terminal.
 */
#ifndef KVCHAT_TUI_COMMANDS_H
#define KVCHAT_TUI_COMMANDS_H

#include <stddef.h>
#include <stdint.h>

enum cmd_id {
    CMD_HELP,
    CMD_NEW,
    CMD_SESSIONS,
    CMD_RESUME,   /* num = session id */
    CMD_RENAME,   /* arg = title */
    CMD_DELETE,   /* num = session id */
    CMD_SEARCH,   /* arg = text */
    CMD_EXPORT,   /* arg = "md" | "json", arg2 = file */
    CMD_SYSTEM,   /* arg = text ("" = the template's default) */
    CMD_SET,      /* arg = key (canonical config name), arg2 = value */
    CMD_MODEL,    /* arg = a model's name or number in the list, "" = the picker */
    CMD_RETRY,
    CMD_EDIT,
    CMD_VARIANT,  /* num = which of the last turn's replies (1-based) */
    CMD_THINK,    /* arg = "on" | "off" */
    CMD_THEME,    /* arg = name */
    CMD_STATS,
    CMD_INSPECT,  /* the memory and speed inspector, open or closed */
    CMD_COPY,     /* num = code block (1-based), 0 = the whole reply */
    CMD_EDITOR,
    CMD_CLEAR,
    CMD_SHOW,
    CMD_TIMESTAMPS, /* arg = "on" | "off" | "" (toggle) */
    CMD_QUIT,
    CMD_COUNT
};

struct command {
    enum cmd_id id;
    int64_t num;
    char arg[8192];
    char arg2[4096];
};

enum cmd_parse_result {
    CMD_TEXT = 0,   /* not a command: send the line as a message */
    CMD_OK = 1,     /* OUT holds a command */
    CMD_ERROR = -1, /* a command with bad arguments: message in ERR */
};

/* Parses LINE. A line starting with "//" is text starting with "/" (the
 * first slash is dropped: *TEXT_OFFSET is set to 1, else 0). */
enum cmd_parse_result cmd_parse(const char *line, struct command *out, size_t *text_offset, char *err,
                                size_t errlen);

const char *cmd_name(enum cmd_id id); /* "new", "resume", ... */

/* What a command needs before it may run. */
enum cmd_need {
    /* No reply streaming: it changes the conversation the reply belongs to
     * or the settings it is generated with, or makes the engine work. */
    CMD_NEEDS_IDLE = 1,
    CMD_NEEDS_HISTORY = 2, /* the history database */
};
unsigned cmd_needs(enum cmd_id id); /* enum cmd_need bits */

/* The help overlay's text (F1, ?, /help): one line per command from the
 * command table, then one line per key from the key table. Static storage,
 * built once. */
const char *cmd_help_text(void);

/* Completion candidates for the word that ends at CURSOR in LINE: command
 * names after a leading '/', then /set keys, /export formats and theme names
 * (THEMES, N_THEMES) for those commands' first argument. Writes up to CAP
 * borrowed strings to OUT and returns how many matched. *WORD_START gets the
 * byte offset of the word being completed. */
size_t cmd_complete(const char *line, size_t cursor, const char *const *themes, size_t n_themes,
                    const char **out, size_t cap, size_t *word_start);
/* The same for /model's argument, from the model names MODELS (N_MODELS):
 * the local folder's files or a server's models. 0 for any other line. */
size_t cmd_complete_model(const char *line, size_t cursor, const char *const *models,
                          size_t n_models, const char **out, size_t cap, size_t *word_start);

#endif
