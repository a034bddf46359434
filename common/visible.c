/* visible.c - see visible.h. */
#include "visible.h"

#include <string.h>

void kv_write_visible(FILE *f, const char *s, size_t len, bool keep_sgr_bold)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t start = 0; /* first byte not written yet: plain runs go out whole */
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        char shown[16];
        size_t n = 0; /* bytes replaced by SHOWN */
        if (c == 0x1b && keep_sgr_bold && len - i >= 4 &&
            (memcmp(p + i, "\033[1m", 4) == 0 || memcmp(p + i, "\033[0m", 4) == 0)) {
            i += 4;
            continue;
        }
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
            snprintf(shown, sizeof shown, "^%c", c == 0x7f ? '?' : c + 0x40);
            n = 1;
        } else if (c == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
            snprintf(shown, sizeof shown, "<U+%04X>", p[i + 1]);
            n = 2;
        }
        if (!n) {
            i++;
            continue;
        }
        fwrite(p + start, 1, i - start, f);
        fputs(shown, f);
        i += n;
        start = i;
    }
    fwrite(p + start, 1, len - start, f);
}
