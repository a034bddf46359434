/* headless.h - kvchat's modes that print and exit (no terminal UI). Each
 * returns the process exit status: 0 success, 1 runtime error. */
#ifndef KVCHAT_HEADLESS_H
#define KVCHAT_HEADLESS_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"

/* -p: answers one message on stdout (saved to history unless --no-history). */
int kv_run_prompt(struct kv_options *o);
/* kvchat tokenize */
int kv_run_tokenize(struct kv_options *o);
/* --list-models: the models folder, or with a server its models, on stdout */
int kv_run_list_models(const struct kv_options *o);
/* --list-sessions, --search, --export, --delete */
int kv_run_history(const struct kv_options *o);

#endif
