/* tools.h - kvchat's subcommands for measuring and making models: `kvchat
 * bench` (throughput against the bandwidth roofline), `kvchat synth`
 * (synthetic models of real shapes written as GGUF files) and `kvchat
 * perplexity` (quality on a text, comparable with llama-perplexity). They speak
 * engine_tools.h, below the chat interface. Each returns the process exit
 * status: 0 success, 1 runtime error. */
#ifndef KVCHAT_TOOLS_H
#define KVCHAT_TOOLS_H

#include "options.h"

int kv_run_bench(const struct kv_options *o);
int kv_run_synth(const struct kv_options *o);
int kv_run_perplexity(const struct kv_options *o);

#endif
