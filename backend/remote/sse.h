/* sse.h - framing of a server-sent event stream (the text/event-stream body
 * an OpenAI-compatible server streams a chat reply in): bytes in, the data of
 * each event out. Used by remote.c over curl's write callback; the JSON inside
 * each event is the caller's business.
 *
 * Rules every function follows:
 * - Framing follows the HTML living standard: lines end in LF, CRLF or CR
 *   (also split across feeds); a blank line ends an event; "data:" lines are
 *   joined with LF; lines starting with ':' are comments; other fields (event,
 *   id, retry) are ignored. An event still open at the end of the stream is
 *   delivered by sse_finish (lenient: some servers omit the last blank line).
 * - Limits: a line, and an event's joined data, longer than SSE_MAX_LINE bytes
 *   is an error (SSE_TOO_LONG), not an allocation without bound.
 * - Ownership: the parser owns its buffers; the data handed to the callback is
 *   valid only during the call and is NUL-terminated. sse_free on a zeroed or
 *   freed parser is a no-op.
 */
#ifndef KVCHAT_SSE_H
#define KVCHAT_SSE_H

#include <stddef.h>

#define SSE_MAX_LINE (1u << 20)

enum { SSE_OK = 0, SSE_TOO_LONG = -1, SSE_NOMEM = -2 };

/* Receives one event's data (LEN bytes). Returns 0 to go on; any other value
 * stops the feed and is returned by sse_feed / sse_finish. */
typedef int (*sse_event_fn)(const char *data, size_t len, void *user);

struct sse {
    sse_event_fn on_event;
    void *user;
    char *line; /* owned: the line being read, len of cap */
    size_t len, cap;
    char *data; /* owned: the event's joined data, dlen of dcap */
    size_t dlen, dcap;
    int has_data; /* a data field was seen in this event */
    int after_cr; /* the last byte was CR: a following LF belongs to it */
};

void sse_init(struct sse *s, sse_event_fn on_event, void *user);
/* Feeds N bytes. Returns SSE_OK, SSE_TOO_LONG, SSE_NOMEM or the callback's value. */
int sse_feed(struct sse *s, const char *buf, size_t n);
/* At the end of the stream: delivers an event left open. Same returns. */
int sse_finish(struct sse *s);
void sse_free(struct sse *s);

#endif
