/* hist_writer.c - a second process for test_history: appends to a history
 * database concurrently with others, or streams a reply until it is killed.
 *
 *   hist_writer append DB SESSION COUNT TAG
 *       COUNT exchanges: user "TAG user I", then a streamed reply
 *       "TAG reply I"; retries a write that finds the database locked.
 *   hist_writer stream DB SESSION
 *       commits a user message, begins a reply, prints "reply ID", then adds
 *       one word every 20 ms forever, calling hist_reply_progress per word and
 *       printing "saved LEN" after each save that really wrote.
 */
#include "history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Retries F while the database is locked: the point of the test is that
 * concurrent writers lose nothing, and a caller may always retry a write. */
#define RETRY(F)                                                                                   \
    do {                                                                                           \
        int r_, n_ = 0;                                                                            \
        while ((r_ = (F)) == HIST_E_LOCKED && n_++ < 100)                                          \
            ;                                                                                      \
        if (r_ < 0) {                                                                              \
            fprintf(stderr, "hist_writer: %s\n", hist_last_error(h));                              \
            hist_close(h);                                                                         \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static int append(struct hist *h, int64_t sid, int count, const char *tag)
{
    char text[256];
    for (int i = 0; i < count; i++) {
        int64_t id;
        snprintf(text, sizeof text, "%s user %d", tag, i);
        RETRY(hist_message_add(h, sid, HIST_ROLE_USER, text, (size_t)-1, -1, &id));
        RETRY(hist_reply_begin(h, sid, &id));
        snprintf(text, sizeof text, "%s reply %d", tag, i);
        RETRY(hist_reply_progress(h, id, text, 5, 1));
        struct hist_reply_stats st = {.n_tokens = 3, .n_prompt = 5, .prefill_tps = 100,
                                      .decode_tps = 50, .ttft_ms = 12};
        RETRY(hist_reply_finish(h, id, text, (size_t)-1, &st, HIST_END_STOP));
    }
    hist_close(h);
    return 0;
}

static int stream(struct hist *h, int64_t sid)
{
    int64_t id;
    RETRY(hist_message_add(h, sid, HIST_ROLE_USER, "stream question", (size_t)-1, -1, &id));
    RETRY(hist_reply_begin(h, sid, &id));
    printf("reply %lld\n", (long long)id);
    fflush(stdout);
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    if (!text)
        return 1;
    for (int w = 0; len + 32 < cap; w++) {
        len += (size_t)snprintf(text + len, cap - len, "w%d ", w);
        int r = hist_reply_progress(h, id, text, len, 0);
        if (r < 0) {
            fprintf(stderr, "hist_writer: %s\n", hist_last_error(h));
            return 1;
        }
        if (r == 1) {
            printf("saved %zu\n", len);
            fflush(stdout);
        }
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000}, NULL);
    }
    free(text);
    hist_close(h);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: hist_writer append DB SESSION COUNT TAG | stream DB SESSION\n");
        return 2;
    }
    char err[1024];
    struct hist *h = hist_open(argv[2], err, sizeof err);
    if (!h) {
        fprintf(stderr, "hist_writer: %s\n", err);
        return 1;
    }
    int64_t sid = strtoll(argv[3], NULL, 10);
    if (strcmp(argv[1], "append") == 0 && argc == 6)
        return append(h, sid, atoi(argv[4]), argv[5]);
    if (strcmp(argv[1], "stream") == 0)
        return stream(h, sid);
    fprintf(stderr, "hist_writer: unknown mode %s\n", argv[1]);
    hist_close(h);
    return 2;
}
