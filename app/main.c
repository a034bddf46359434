/* main.c - kvchat's entry point: settings from the config file, then the
 * command line, then the mode they ask for.
 *
 * Exit status: 0 success, 1 runtime error, 2 usage error.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "headless.h"
#include "tools.h"
#include "tui.h"

int main(int argc, char **argv)
{
    struct kv_options o;
    char err[1024];
    kv_options_init(&o);

    if (config_load(NULL, &o, err, sizeof err) != 0) {
        fprintf(stderr, "kvchat: %s\n", err);
        return 2;
    }
    if (kv_parse_args(&o, argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "kvchat: %s\n", err);
        return 2;
    }
    if (!kv_check_option_text(&o, err, sizeof err)) {
        fprintf(stderr, "kvchat: %s\n", err);
        return 1;
    }

    switch (o.mode) {
    case KV_MODE_HELP:
        kv_print_mode_usage(stdout, o.help_mode);
        return 0;
    case KV_MODE_VERSION:
        printf("kvchat %s\n", KVCHAT_VERSION);
        return 0;
    case KV_MODE_PROMPT:
        return kv_run_prompt(&o);
    case KV_MODE_TOKENIZE:
        return kv_run_tokenize(&o);
    case KV_MODE_BENCH:
        return kv_run_bench(&o);
    case KV_MODE_SYNTH:
        return kv_run_synth(&o);
    case KV_MODE_PERPLEXITY:
        return kv_run_perplexity(&o);
    case KV_MODE_MODELS:
        return kv_run_list_models(&o);
    case KV_MODE_LIST:
    case KV_MODE_SEARCH:
    case KV_MODE_EXPORT:
    case KV_MODE_DELETE:
    case KV_MODE_REPAIR:
        return kv_run_history(&o);
    case KV_MODE_UI:
        break;
    }
    int rc = tui_run(&o, err, sizeof err);
    if (rc != 0 && err[0])
        fprintf(stderr, "kvchat: %s\n", err);
    return rc;
}
