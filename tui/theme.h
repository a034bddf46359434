/* theme.h - colour themes for the chat screen.
 *
 * A theme file is plain text, one setting per line:
 *
 *     # comment
 *     user       = 75 default bold
 *     code_block = 252 236
 *
 * ELEMENT = FOREGROUND [BACKGROUND] [ATTRIBUTES...], where a colour is a
 * name (default black red green yellow blue magenta cyan white) or a number
 * 0-255, and attributes are bold dim italic underline reverse. Elements not
 * named keep the default theme's style. Built-in themes (dark, light,
 * high-contrast; sources in themes/NAME.theme) are compiled in; user themes are
 * ${XDG_CONFIG_HOME:-~/.config}/kvchat/themes/NAME.theme and win over a
 * built-in of the same name.
 *
 * Pure: parsing and colour reduction are tested without a terminal; draw.c
 * turns a theme into ncurses colour pairs.
 */
#ifndef KVCHAT_TUI_THEME_H
#define KVCHAT_TUI_THEME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum theme_elem {
    TH_NORMAL,      /* conversation text and background */
    TH_TITLE,       /* top line */
    TH_USER,        /* "You" header */
    TH_ASSISTANT,   /* assistant header */
    TH_SYSTEM,      /* system messages and the system prompt */
    TH_NOTICE,      /* notices: turns dropped, saved, hints */
    TH_ERROR,
    TH_MARKER,      /* [cancelled] / [cut by length] */
    TH_HEADING,
    TH_CODE,        /* inline code */
    TH_CODE_BLOCK,  /* fenced block */
    TH_QUOTE,
    TH_BULLET,
    TH_METER_LABEL,
    TH_METER_VALUE,
    TH_BAR_WEIGHTS,
    TH_BAR_KV,
    TH_BAR_SCRATCH,
    TH_BAR_OTHER,
    TH_BAR_FREE,
    TH_SIDEBAR,
    TH_SIDEBAR_CURRENT,
    TH_STATUS,
    TH_INPUT,
    TH_BORDER,
    TH_THINKING,    /* a reasoning model's thinking, apart from its answer */
    TH_COUNT
};

#define THEME_DEFAULT_COLOR (-1) /* the terminal's own colour */

enum theme_attr {
    THA_BOLD = 1,
    THA_DIM = 2,
    THA_ITALIC = 4,
    THA_UNDERLINE = 8,
    THA_REVERSE = 16,
};

struct theme_style {
    int16_t fg, bg; /* 0..255 or THEME_DEFAULT_COLOR */
    uint8_t attrs;  /* enum theme_attr bits */
};

struct theme {
    char name[64];
    struct theme_style s[TH_COUNT];
};

const char *theme_elem_name(enum theme_elem e);

/* The built-in dark theme. */
void theme_default(struct theme *t);

/* Parses theme text over a copy of the default theme. On error returns -1
 * with "FILE:LINE: what is wrong" in ERR and leaves T as the default theme. */
int theme_parse(const char *text, size_t len, const char *file, struct theme *t, char *err, size_t errlen);

/* Names of the compiled-in themes, NULL-terminated. */
const char *const *theme_builtin_names(void);

/* Loads theme NAME: the user's file if present, else a built-in. On error
 * returns -1 with a one-line message: for an unknown name or a malformed
 * file with T set to the default theme, so the caller can show the message
 * and carry on; for a file that could not be read (out of memory, I/O,
 * permissions) with T left as it was. CONFIG_DIR is the kvchat config
 * folder (NULL = the XDG default). */
int theme_load(const char *name, const char *config_dir, struct theme *t, char *err, size_t errlen);

/* Appends the user's theme names found in CONFIG_DIR/themes to NAMES (up to
 * CAP, strdup'd, caller frees); returns the new count. */
size_t theme_user_names(const char *config_dir, char **names, size_t n, size_t cap);

/* A 256-colour index reduced to the nearest of the 8 basic colours, for
 * terminals that have only 8 (or 16: the bright half maps to its base). */
int theme_color_to8(int c);

/* A style's foreground and background (0..255 or THEME_DEFAULT_COLOR)
 * reduced to 8 colours as a pair: where both would land on the same colour
 * (a dark grey border on the dark theme's background, both black) the
 * foreground turns white on a dark background and black on a light one, so
 * nothing is drawn invisibly. A default background counts as black: themes
 * that leave it to the terminal are written for a dark one (the light theme
 * paints its own). */
void theme_pair_to8(int fg, int bg, int *out_fg, int *out_bg);

#endif
