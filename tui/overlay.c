/* overlay.c - the help and /show panel's text and scrolling. See overlay.h. */
#include "overlay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void overlay_close(struct overlay *o)
{
    free(o->text);
    free(o->line);
    *o = (struct overlay){0};
}

int overlay_open(struct overlay *o, const char *title, const char *text)
{
    overlay_close(o);
    size_t len = strlen(text);
    while (len && text[len - 1] == '\n') /* no empty last line to scroll to */
        len--;
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    o->text = malloc(len + 1);
    o->line = malloc(n * sizeof *o->line);
    if (!o->text || !o->line) {
        overlay_close(o);
        return -1;
    }
    memcpy(o->text, text, len);
    o->text[len] = 0;
    o->line[0] = 0;
    size_t k = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            o->line[k++] = i + 1;
    o->n_lines = n;
    o->top = 0;
    snprintf(o->title, sizeof o->title, "%s", title);
    o->open = true;
    return 0;
}

const char *overlay_line(const struct overlay *o, size_t i, size_t *len)
{
    if (!o->open || i >= o->n_lines) {
        *len = 0;
        return "";
    }
    const char *s = o->text + o->line[i];
    const char *nl = strchr(s, '\n');
    *len = nl ? (size_t)(nl - s) : strlen(s);
    return s;
}

bool overlay_key(struct overlay *o, enum overlay_key key, int rows)
{
    if (!o->open)
        return false;
    size_t vis = rows > 0 ? (size_t)rows : 1;
    size_t max_top = o->n_lines > vis ? o->n_lines - vis : 0;
    size_t page = vis > 1 ? vis - 1 : 1; /* a page keeps one line of the last in sight */
    switch (key) {
    case OVK_UP: o->top = o->top > 0 ? o->top - 1 : 0; break;
    case OVK_DOWN: o->top++; break;
    case OVK_PAGE_UP: o->top = o->top > page ? o->top - page : 0; break;
    case OVK_PAGE_DOWN: o->top += page; break;
    case OVK_HOME: o->top = 0; break;
    case OVK_END: o->top = max_top; break;
    case OVK_CLOSE: overlay_close(o); return false;
    case OVK_OTHER: break;
    }
    if (o->top > max_top)
        o->top = max_top;
    return true;
}
