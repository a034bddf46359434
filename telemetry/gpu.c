/* gpu.c - the GPU monitor over the vendor table (gpu_vendor.h). Adding a
 * vendor is one row here plus its file beside nvml.c. */
#include "gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_vendor.h"

/* Tried in order: the first vendor that opens the device wins. Recorded
 * readings come first, so a trace named in the environment replaces even a
 * real driver (that is what it is named for). */
static const struct gpu_vendor *const vendors[] = {
    &gpu_vendor_trace,
    &gpu_vendor_nvml,
};

bool gpu_mon_recorded(void)
{
    const char *p = getenv(GPU_TRACE_ENV);
    return p && *p;
}

struct gpu_mon {
    const struct gpu_vendor *v; /* NULL: no vendor opened the device */
    void *state;                /* owned by V */
    char note[160];
};

struct gpu_mon *gpu_mon_new(unsigned index)
{
    struct gpu_mon *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    /* With no vendor, the note is the first vendor's reason: the one a
     * user of that hardware needs. */
    for (size_t i = 0; i < sizeof vendors / sizeof vendors[0]; i++) {
        char note[160] = "";
        void *st = vendors[i]->open(index, note, sizeof note);
        if (st) {
            g->v = vendors[i];
            g->state = st;
            snprintf(g->note, sizeof g->note, "%s", note);
            return g;
        }
        if (!g->note[0])
            snprintf(g->note, sizeof g->note, "%s", note);
    }
    return g;
}

void gpu_mon_free(struct gpu_mon *g)
{
    if (!g)
        return;
    if (g->v)
        g->v->close(g->state);
    free(g);
}

bool gpu_mon_ok(const struct gpu_mon *g) { return g && g->v; }

const char *gpu_mon_note(const struct gpu_mon *g)
{
    return g ? g->note : "no GPU monitor";
}

const char *gpu_mon_vendor(const struct gpu_mon *g) { return g && g->v ? g->v->name : ""; }

double gpu_mon_bandwidth(const struct gpu_mon *g)
{
    return g && g->v ? g->v->bandwidth(g->state) : 0;
}

void gpu_mon_sample(struct gpu_mon *g, struct gpu_sample *s)
{
    memset(s, 0, sizeof *s);
    if (g && g->v)
        g->v->sample(g->state, s);
}
