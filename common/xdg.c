/* xdg.c - see xdg.h. */
#include "xdg.h"

#include <stdio.h>
#include <stdlib.h>

int kv_xdg_dir(enum kv_xdg which, char *buf, size_t cap)
{
    static const struct {
        const char *var, *fallback;
    } kinds[] = {
        [KV_XDG_CONFIG] = {"XDG_CONFIG_HOME", ".config"},
        [KV_XDG_DATA] = {"XDG_DATA_HOME", ".local/share"},
        [KV_XDG_STATE] = {"XDG_STATE_HOME", ".local/state"},
        [KV_XDG_CACHE] = {"XDG_CACHE_HOME", ".cache"},
    };
    const char *x = getenv(kinds[which].var), *home = getenv("HOME");
    int n;
    if (x && x[0] == '/')
        n = snprintf(buf, cap, "%s/kvchat", x);
    else if (home && *home)
        n = snprintf(buf, cap, "%s/%s/kvchat", home, kinds[which].fallback);
    else
        return -1;
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}
