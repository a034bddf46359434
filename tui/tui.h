/* tui.h - the full-screen chat: ncurses panes, readline input, live meters.
 *
 * main.c calls tui_run when no -p or subcommand is given. It loads the engine
 * itself (showing a progress bar), opens the history (a failure shows "not
 * saving" and chatting goes on), and restores the terminal on every way out:
 * normal exit, errors, SIGTERM/SIGHUP, and crashes where possible.
 */
#ifndef KVCHAT_TUI_H
#define KVCHAT_TUI_H

#include <stddef.h>

#include "options.h"

/* Runs the chat until the user leaves. Returns the process exit status: 0,
 * 1 with a one-line message in ERR (model failed to load, no terminal), or
 * 128 + the signal number when ended by SIGTERM/SIGHUP. */
int tui_run(const struct kv_options *opt, char *err, size_t errlen);

#endif
