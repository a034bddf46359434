/* cli.h - kvchat's command line: parsing argv into struct kv_options, the
 * usage text, and the defaults the front-end shares (model path, random seed).
 */
#ifndef KVCHAT_CLI_H
#define KVCHAT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "options.h"
#include "utf8.h" /* kv_check_text: the one rule for text */

/* Built-in defaults (before the config file and the command line). */
void kv_options_init(struct kv_options *o);

/* Parses ARGV over the values already in O. Returns 0, or 2 (usage error) with
 * a one-line message in ERR. */
int kv_parse_args(struct kv_options *o, int argc, char **argv, char *err, size_t errlen);

void kv_print_usage(FILE *out);
/* MODE's own usage for a subcommand (kvchat bench --help), else the general. */
void kv_print_mode_usage(FILE *out, enum kv_mode mode);

/* The default model: ${XDG_DATA_HOME:-~/.local/share}/kvchat/models/
 * SmolLM2-135M-Instruct.Q4_1.gguf (fetched by scripts/run). */
void kv_default_model_path(char *buf, size_t cap);
/* The models folder itself. */
void kv_models_dir(char *buf, size_t cap);

/* Resolves o->model ("" = the default) into BUF. */
void kv_model_path(const struct kv_options *o, char *buf, size_t cap);

/* kv_check_text over the texts O carries from the command line and the
 * config file (the system prompt, --search); prompts and tokenize text are
 * checked where they are read, standard input included. */
int kv_check_option_text(const struct kv_options *o, char *err, size_t errlen);

/* A seed from the system's entropy, for runs without --seed. */
uint64_t kv_random_seed(void);

#endif
