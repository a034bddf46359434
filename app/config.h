/* config.h - the config file, ${XDG_CONFIG_HOME:-~/.config}/kvchat/config:
 * defaults for the model, backend, theme, sampling and context size, applied
 * to struct kv_options by main before the command line (which wins).
 *
 * Format: one KEY = VALUE per line, '#' starts a comment, a value may be in
 * double quotes (to keep leading or trailing spaces or a '#'), "~/" at the
 * start of a path means $HOME. Keys:
 *
 *   model PATH          backend auto|cpu|cuda    ctx_size N    threads N
 *   chat_template NAME  system TEXT              theme NAME    db PATH
 *   history on|off      temperature X  top_k N   top_p X       min_p X
 *   repeat_penalty X    repeat_last_n N          seed N        max_tokens N
 *   timestamps on|off   (times on the chat screen's messages; off by default)
 *   think on|off        (a reasoning model's thinking, where the template has
 *                        a switch; --think overrides)
 *   mem_bandwidth_gbs X (the device's memory bandwidth for the roofline
 *                        meter, instead of NVML's peak or, on the CPU, the
 *                        measured read bandwidth; --mem-bandwidth overrides)
 *
 * Pure apart from reading the file: tested by tests/test_tui.c.
 */
#ifndef KVCHAT_TUI_CONFIG_H
#define KVCHAT_TUI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"

/* The default config file path into BUF; -1 when neither XDG_CONFIG_HOME nor
 * HOME is set. */
int config_default_path(char *buf, size_t cap);

/* Reads the config file at PATH (NULL = the default path, where a missing
 * file is not an error; a missing explicit PATH is) and applies it to OPT.
 * Returns 0, or -1 with "FILE:LINE: what is wrong" in ERR; settings before
 * the bad line stay applied. */
int config_load(const char *path, struct kv_options *opt, char *err, size_t errlen);

/* Parses config TEXT (LEN bytes) as if read from FILE. */
int config_parse(const char *text, size_t len, const char *file, struct kv_options *opt, char *err,
                 size_t errlen);

/* "on" or "off" (config think, --think) as the engine's thinking switch;
 * false for anything else. */
bool kv_think_from_name(const char *s, enum engine_think *out);

/* Sets one KEY to VALUE (the same keys and checks as the file; also used by
 * the /set command). Returns 0 or -1 with a one-line message naming the key. */
int config_set(struct kv_options *opt, const char *key, const char *value, char *err, size_t errlen);

#endif
