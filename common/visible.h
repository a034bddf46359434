/* visible.h - stored text written to a terminal with its control characters
 * made visible, so a pasted message holding ESC or OSC sequences cannot
 * retitle, recolour or clear the user's terminal when it is listed, searched
 * or exported. Newlines and tabs pass; other C0 controls and DEL are shown
 * in caret notation (ESC as "^["), and C1 controls (U+0080..U+009F, which
 * some terminals obey too) as "<U+009B>". Everything else, including
 * invalid UTF-8, is written as it is. */
#ifndef KVCHAT_VISIBLE_H
#define KVCHAT_VISIBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Writes LEN bytes of S to F. With KEEP_SGR_BOLD, the two sequences
 * "\033[1m" and "\033[0m" pass as they are (search results mark their hits
 * with them; bold and reset are harmless whoever wrote them). */
void kv_write_visible(FILE *f, const char *s, size_t len, bool keep_sgr_bold);

#endif
