/* xdg.h - kvchat's folders under the XDG base directories, one rule for all
 * of them: $XDG_<KIND>_HOME/kvchat when that variable is an absolute path
 * (the spec says a relative one is invalid and must be ignored), else the
 * spec's default under $HOME. Config files and themes, the history database
 * and models, readline's history, and the measured host bandwidth each live
 * in one of them. */
#ifndef KVCHAT_XDG_H
#define KVCHAT_XDG_H

#include <stddef.h>

enum kv_xdg {
    KV_XDG_CONFIG, /* ~/.config/kvchat: config, themes */
    KV_XDG_DATA,   /* ~/.local/share/kvchat: history.db, models/ */
    KV_XDG_STATE,  /* ~/.local/state/kvchat: input history */
    KV_XDG_CACHE   /* ~/.cache/kvchat: measurements worth keeping */
};

/* The folder into BUF (not created); -1 when neither the variable nor HOME
 * is set, or BUF is too small. */
int kv_xdg_dir(enum kv_xdg which, char *buf, size_t cap);

#endif
