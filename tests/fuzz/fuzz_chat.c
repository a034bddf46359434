/* fuzz_chat.c - libFuzzer target for chat templates (backend/text/chat.c):
 * detecting the format from a model's Jinja text, then rendering a
 * conversation in it.
 *
 * Input: a Jinja template text, a NUL byte, then message text (no NUL: the
 * whole input is the template and the message is fixed). The first
 * template byte also picks the fallback format. Checks: the detected format
 * and flags are known ones, a default system prompt is NUL-terminated in
 * the buffer given; rendering system/user/assistant/user turns (with and
 * without the generation prompt) gives segments whose special ones are
 * short, non-empty and free of NUL; the message text reaches the plain
 * segments only (the reply's may be cut where the template drops earlier
 * thinking): the number of special segments is the same as for a
 * harmless message, so text that spells "<|im_end|>" or "[INST]" can never
 * become a control token.
 *
 * Build and run (from the repository root):
 *   CC=clang cmake -S . -B build-fuzz -DKVCHAT_FUZZ=ON -DKVCHAT_CUDA=OFF
 *     -DKVCHAT_ENGINE_ONLY=ON
 *   cmake --build build-fuzz --target fuzz_chat -j2
 *   mkdir -p /tmp/chat-corpus && ./build-fuzz/tests/fuzz/fuzz_chat
 *     -max_total_time=60 -max_len=8192 -artifact_prefix=/tmp/
 *     /tmp/chat-corpus tests/fuzz/corpus/chat
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

#define KNOWN_FLAGS (CHAT_FLAG_MISTRAL_V1 | CHAT_FLAG_MISTRAL_TEKKEN | CHAT_FLAG_INST_TOKENS | \
                     CHAT_FLAG_GEMMA_SEP1 | CHAT_FLAG_DROP_THINKING | CHAT_FLAG_THINK_SWITCH | \
                     CHAT_FLAG_OPENS_THINKING)

/* Renders the conversation; returns how many special segments it has. */
static size_t render(const struct chat_template *tmpl, const char *text, bool add_generation)
{
    const struct chat_message msgs[] = {
        {CHAT_ROLE_SYSTEM, text}, {CHAT_ROLE_USER, text}, {CHAT_ROLE_ASSISTANT, text}, {CHAT_ROLE_USER, text}};
    struct chat_prompt p;
    memset(&p, 0, sizeof p);
    if (chat_render(tmpl, msgs, sizeof msgs / sizeof *msgs, add_generation, &p) != 0)
        return 0; /* out of memory */
    size_t special = 0, plain = 0;
    for (size_t i = 0; i < p.n_segs; i++) {
        const struct tok_segment *s = &p.segs[i];
        if (!s->text && s->len)
            abort();
        if (s->special) {
            if (!s->len || s->len > 32 || memchr(s->text, 0, s->len))
                abort();
            special++;
        } else {
            plain += s->len;
        }
    }
    /* Every message's text is in the plain segments. Templates may trim
     * whitespace (Unicode's, as Jinja does: U+001D counts), so the check
     * holds for texts that start and end with a letter or digit. */
    size_t tl = strlen(text);
    /* a template that drops earlier thinking may cut the reply's text */
    bool cuts = (tmpl->flags & CHAT_FLAG_DROP_THINKING) || tmpl->format == CHAT_FORMAT_DEEPSEEK_R1 ||
                tmpl->format == CHAT_FORMAT_HARMONY;
    if (tl && isalnum((unsigned char)text[0]) && isalnum((unsigned char)text[tl - 1]) &&
        plain < (cuts ? 3 : 4) * tl)
        abort();
    chat_prompt_free(&p);
    return special;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1); /* template and message, each NUL-terminated */
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    buf[size] = 0;
    const char *jinja = buf;
    size_t jlen = strlen(buf);
    const char *text = jlen < size ? buf + jlen + 1 : "hello";

    enum chat_format fallback = (enum chat_format)(size ? data[0] % CHAT_FORMAT_COUNT : 0);
    struct chat_template tmpl;
    char sys[256];
    memset(sys, 0x55, sizeof sys);
    chat_detect(jinja, fallback, &tmpl, sys, sizeof sys);
    if ((unsigned)tmpl.format >= CHAT_FORMAT_COUNT || (tmpl.flags & ~(unsigned)KNOWN_FLAGS))
        abort();
    if (!chat_format_name(tmpl.format) || !chat_end_of_turn(tmpl.format))
        abort();
    if (tmpl.default_system == sys && !memchr(sys, 0, sizeof sys))
        abort();
    if (!jinja[0] && (tmpl.format != fallback || tmpl.default_system))
        abort(); /* no template: the fallback, nothing invented */

    for (int gen = 0; gen < 2; gen++)
        if (render(&tmpl, text, gen) != render(&tmpl, "x", gen))
            abort();
    free(buf);
    return 0;
}
