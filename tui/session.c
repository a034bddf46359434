/* session.c - glue between saved sessions (history/) and the engine. */
#include "session.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* FNV-1a, 64 bits: the digest identifies a file, it does not defend against
 * forgery, so a fast non-cryptographic hash is enough. */
static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void kv_model_digest(const char *path, char *buf, size_t cap)
{
    buf[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    enum { PART = 1 << 20 };
    uint8_t *b = malloc(PART);
    if (fstat(fd, &st) != 0 || !b) {
        free(b);
        close(fd);
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint64_t h = fnv1a(0xcbf29ce484222325ull, (const uint8_t *)&size, sizeof size);
    off_t offs[2] = {0, st.st_size > PART ? st.st_size - PART : 0};
    for (int i = 0; i < 2; i++) {
        ssize_t n = pread(fd, b, PART, offs[i]);
        if (n > 0)
            h = fnv1a(h, b, (size_t)n);
    }
    free(b);
    close(fd);
    snprintf(buf, cap, "fnv1a64:%016llx:%llu", (unsigned long long)h, (unsigned long long)size);
}

struct hist_sampling kv_to_hist_sampling(const struct kv_options *o)
{
    struct hist_sampling h = {
        .temperature = o->sampling.temperature,
        .top_k = o->sampling.top_k,
        .top_p = o->sampling.top_p,
        .min_p = o->sampling.min_p,
        .repeat_penalty = o->sampling.repeat_penalty,
        .repeat_last_n = o->sampling.repeat_last_n,
        .seed = o->sampling.seed,
        .max_tokens = o->max_tokens > 0 ? o->max_tokens : -1,
    };
    return h;
}

void kv_from_hist_sampling(const struct hist_sampling *h, struct kv_options *o)
{
    o->sampling.temperature = h->temperature;
    o->sampling.top_k = h->top_k;
    o->sampling.top_p = h->top_p;
    o->sampling.min_p = h->min_p;
    o->sampling.repeat_penalty = h->repeat_penalty;
    o->sampling.repeat_last_n = h->repeat_last_n;
    o->max_tokens = h->max_tokens > 0 ? h->max_tokens : 0;
    /* The seed is not restored: a resumed session continues with fresh
     * randomness unless --seed is given. */
}

enum hist_end kv_hist_end(enum engine_stop s)
{
    switch (s) {
    case ENGINE_STOP_EOS: return HIST_END_STOP;
    case ENGINE_STOP_LENGTH: return HIST_END_LENGTH;
    case ENGINE_STOP_CANCELLED: return HIST_END_CANCELLED;
    case ENGINE_STOP_ERROR: break;
    }
    return HIST_END_ERROR;
}

int64_t kv_session_resolve(struct hist *h, const struct kv_options *o, char *err, size_t errlen)
{
    int64_t id = o->resume;
    if (id == KV_RESUME_LATEST) {
        if (hist_session_latest(h, &id) != HIST_OK) {
            snprintf(err, errlen, "no saved session to resume in %s", hist_path(h));
            return -1;
        }
        return id;
    }
    struct hist_session s;
    if (hist_session_get(h, id, &s) != HIST_OK) {
        snprintf(err, errlen, "no session %lld in %s (see kvchat --list-sessions)", (long long)id,
                 hist_path(h));
        return -1;
    }
    hist_session_clear(&s);
    return id;
}

int kv_session_restore(struct hist *h, int64_t id, struct engine *e, struct kv_options *o,
                       int32_t *dropped, char *err, size_t errlen)
{
    *dropped = 0;
    struct hist_session s;
    if (hist_session_get(h, id, &s) != HIST_OK) {
        snprintf(err, errlen, "%s", hist_last_error(h));
        return -1;
    }
    if (!o->system_set) {
        if (s.system_prompt)
            snprintf(o->system, sizeof o->system, "%s", s.system_prompt);
        o->system_set = s.system_prompt != NULL;
    }
    if (!o->sampling_set && s.has_sampling)
        kv_from_hist_sampling(&s.sampling, o);
    hist_session_clear(&s);

    struct hist_message *msgs = NULL;
    size_t n = 0;
    if (hist_messages(h, id, &msgs, &n) != HIST_OK) {
        snprintf(err, errlen, "%s", hist_last_error(h));
        return -1;
    }
    struct chat_message *cm = calloc(n ? n : 1, sizeof *cm);
    if (!cm) {
        hist_messages_free(msgs, n);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        /* A reply that was never written (an error before the first token)
         * carries nothing for the model to see. */
        if (msgs[i].role == HIST_ROLE_ASSISTANT && msgs[i].content_len == 0)
            continue;
        enum chat_role r = msgs[i].role == HIST_ROLE_SYSTEM ? CHAT_ROLE_SYSTEM
                         : msgs[i].role == HIST_ROLE_USER   ? CHAT_ROLE_USER
                                                            : CHAT_ROLE_ASSISTANT;
        cm[k++] = (struct chat_message){r, msgs[i].content};
    }
    int rc = engine_load_transcript(e, cm, k);
    free(cm);
    hist_messages_free(msgs, n);
    engine_set_system(e, o->system_set ? o->system : NULL);
    if (rc == 0)
        *dropped = engine_fit_context(e, o->max_tokens);
    if (rc != 0 || *dropped < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}
