/* chat.c - chat templates: which built-in format a model's Jinja template
 * means, and rendering a conversation in that format as tokenizer segments.
 *
 * We never run Jinja. Like llama.cpp's simple path we sniff the template text
 * (model-formats.md §6.1) and render with a built-in formatter. Each formatter
 * follows the model family's official Jinja template character for character
 * (which messages are trimmed, where spaces go), because the rendered prompt
 * must tokenize exactly as the model's own template does.
 *
 * BOS rule: templates that start with {{ bos_token }} (Gemma, Llama 2/3,
 * Mistral) do not get a "<bos>"/"<s>" segment at the start from us. The
 * tokenizer puts BOS first itself when the file's add_bos is true; emitting it
 * here as well would give two. A BOS inside the history (Llama 2's "<s>" before
 * every later turn) is part of the format and is emitted.
 *
 * Plain text is copied into the prompt's arena, so a prompt does not depend on
 * the messages staying alive; control tokens point at static strings.
 *
 * Reasoning formats: a reply is handed to us as the engine kept it, the
 * model's whole turn (a "<think>" block, or harmony's header tokens as text),
 * and each formatter takes from it what its template would be given (the
 * text after "</think>"; harmony's final and, for a last reply, analysis
 * messages). Harmony's system message states today's date, so its prompt
 * changes at midnight (the KV cache is then reused only up to the date).
 */
#include "chat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- whitespace as Python's str.strip() sees it ----
 *
 * Jinja's trim filter and Python's strip() remove Unicode whitespace, not just
 * ASCII: the official templates use them, so we must remove the same set. */

/* Length of the whitespace character at S (N bytes available), or 0. */
static size_t ws_len_at(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f))
        return 1;
    if (c == 0xc2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xa0))
        return 2; /* U+0085, U+00A0 */
    if (n >= 3) {
        unsigned cp = 0;
        if ((c & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80)
            cp = ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
        if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
            cp == 0x202f || cp == 0x205f || cp == 0x3000)
            return 3;
    }
    return 0;
}

/* Length of a whitespace character ending at S[N-1], or 0. */
static size_t ws_len_before(const unsigned char *s, size_t n)
{
    if (n >= 1 && ws_len_at(s + n - 1, 1) == 1)
        return 1;
    if (n >= 2 && ws_len_at(s + n - 2, 2) == 2)
        return 2;
    if (n >= 3 && ws_len_at(s + n - 3, 3) == 3)
        return 3;
    return 0;
}

static void trim_span(const char **p, size_t *n)
{
    const unsigned char *s = (const unsigned char *)*p;
    size_t len = *n, k;
    while ((k = ws_len_at(s, len)) > 0) {
        s += k;
        len -= k;
    }
    while ((k = ws_len_before(s, len)) > 0)
        len -= k;
    *p = (const char *)s;
    *n = len;
}

/* ---- prompt builder ----
 *
 * Plain text accumulates in the arena; adjacent plain pieces form one segment
 * (the tokenizer encodes them as one fragment anyway). Segments record arena
 * offsets while building, since the arena moves when it grows. */

struct seg_rec {
    size_t off, len;  /* plain: bytes of the arena */
    const char *text; /* special: static token text; NULL for plain */
};

struct builder {
    struct seg_rec *segs;
    size_t n, cap;
    char *arena;
    size_t used, acap;
    bool oom;
};

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem)
            return false;
        nc *= 2;
    }
    void *q = realloc(*p, nc * elem);
    if (!q)
        return false;
    *p = q;
    *cap = nc;
    return true;
}

static void put_text(struct builder *b, const char *s, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (n > SIZE_MAX - b->used - 1 || !grow((void **)&b->arena, &b->acap, b->used + n + 1, 1)) {
        b->oom = true;
        return;
    }
    if (b->n > 0 && !b->segs[b->n - 1].text) {
        b->segs[b->n - 1].len += n;
    } else {
        if (!grow((void **)&b->segs, &b->cap, b->n + 1, sizeof *b->segs)) {
            b->oom = true;
            return;
        }
        b->segs[b->n++] = (struct seg_rec){.off = b->used, .len = n, .text = NULL};
    }
    memcpy(b->arena + b->used, s, n);
    b->used += n;
}

static void put_str(struct builder *b, const char *s)
{
    put_text(b, s, strlen(s));
}

static void put_trimmed(struct builder *b, const char *s)
{
    size_t n = strlen(s);
    trim_span(&s, &n);
    put_text(b, s, n);
}

/* A control token, named by its exact text (a string literal). */
static void put_special(struct builder *b, const char *tok)
{
    if (b->oom)
        return;
    if (!grow((void **)&b->segs, &b->cap, b->n + 1, sizeof *b->segs)) {
        b->oom = true;
        return;
    }
    b->segs[b->n++] = (struct seg_rec){.off = 0, .len = strlen(tok), .text = tok};
}

/* "[INST]"-like markers: control tokens in some vocabularies, text in others. */
static void put_marker(struct builder *b, const char *tok, bool special)
{
    if (special)
        put_special(b, tok);
    else
        put_str(b, tok);
}

/* Drops trailing whitespace of the plain run being built, for templates that
 * strip() a string assembled from several pieces. */
static void rstrip_current(struct builder *b)
{
    if (b->oom || b->n == 0 || b->segs[b->n - 1].text)
        return;
    struct seg_rec *r = &b->segs[b->n - 1];
    size_t k;
    while ((k = ws_len_before((const unsigned char *)b->arena + r->off, r->len)) > 0) {
        r->len -= k;
        b->used -= k;
    }
    if (r->len == 0)
        b->n--;
}

static const char *role_name(enum chat_role r)
{
    switch (r) {
    case CHAT_ROLE_SYSTEM:
        return "system";
    case CHAT_ROLE_USER:
        return "user";
    default:
        return "assistant";
    }
}

static const char *content_of(const struct chat_message *m)
{
    return m->content ? m->content : "";
}

/* ---- formatters ---- */

/* ChatML, as SmolLM2's template and the plain ChatML template render it:
 * content untrimmed; the template's default system message first when the
 * conversation does not open with one. */
static void render_chatml(struct builder *b, const struct chat_template *t,
                          const struct chat_message *m, size_t n, bool gen)
{
    if (n > 0 && m[0].role != CHAT_ROLE_SYSTEM && t->default_system) {
        put_special(b, "<|im_start|>");
        put_str(b, "system\n");
        put_str(b, t->default_system);
        put_special(b, "<|im_end|>");
        put_str(b, "\n");
    }
    for (size_t i = 0; i < n; i++) {
        put_special(b, "<|im_start|>");
        put_str(b, role_name(m[i].role));
        put_str(b, "\n");
        put_str(b, content_of(&m[i]));
        put_special(b, "<|im_end|>");
        put_str(b, "\n");
    }
    if (gen) {
        put_special(b, "<|im_start|>");
        put_str(b, "assistant\n");
        if (t->flags & CHAT_FLAG_THINK_OFF)
            put_str(b, "<think>\n\n</think>\n\n");
    }
}

/* Llama 3: header, blank line, trimmed content, <|eot_id|>. Meta's template
 * prepends bos_token to the first message: left to the tokenizer. */
static void render_llama3(struct builder *b, const struct chat_template *t,
                          const struct chat_message *m, size_t n, bool gen)
{
    for (size_t i = 0; i <= n; i++) {
        bool dflt = i == 0 && n > 0 && m[0].role != CHAT_ROLE_SYSTEM && t->default_system;
        if (i == n && !dflt)
            break;
        put_special(b, "<|start_header_id|>");
        put_str(b, dflt ? "system" : role_name(m[i].role));
        put_special(b, "<|end_header_id|>");
        put_str(b, "\n\n");
        put_trimmed(b, dflt ? t->default_system : content_of(&m[i]));
        put_special(b, "<|eot_id|>");
        if (dflt)
            i--; /* the real first message still follows */
    }
    if (gen) {
        put_special(b, "<|start_header_id|>");
        put_str(b, "assistant");
        put_special(b, "<|end_header_id|>");
        put_str(b, "\n\n");
    }
}

/* Llama 2 (Meta's template): every user turn is
 * bos + "[INST] " + strip(content) + " [/INST]", where the first turn's content
 * is "<<SYS>>\n{system}\n<</SYS>>\n\n{user}"; every reply is
 * " " + strip(reply) + " " + eos. The first bos is the tokenizer's. A system
 * message later in the conversation is folded into the next user turn the
 * same way (the official template would refuse it). */
static void render_llama2(struct builder *b, const struct chat_template *t,
                          const struct chat_message *m, size_t n, bool gen)
{
    bool inst = t->flags & CHAT_FLAG_INST_TOKENS;
    bool first_turn = true;
    const char *pending_sys = NULL;
    if (n > 0 && m[0].role != CHAT_ROLE_SYSTEM && t->default_system)
        pending_sys = t->default_system;
    (void)gen; /* the prompt already ends in "[/INST]": the reply follows directly */
    for (size_t i = 0; i < n; i++) {
        const char *c = content_of(&m[i]);
        if (m[i].role == CHAT_ROLE_SYSTEM) {
            pending_sys = c;
            continue;
        }
        if (m[i].role == CHAT_ROLE_USER) {
            if (!first_turn)
                put_special(b, "<s>");
            first_turn = false;
            put_marker(b, "[INST]", inst);
            put_str(b, " ");
            if (pending_sys) {
                /* strip() of the assembled "<<SYS>>..." string: it starts with
                 * "<<", so only trailing space goes, from the user text (or,
                 * when that is blank, from the system block too). */
                put_str(b, "<<SYS>>\n");
                put_str(b, pending_sys);
                put_str(b, "\n<</SYS>>\n\n");
                put_str(b, c);
                rstrip_current(b);
                pending_sys = NULL;
            } else {
                put_trimmed(b, c);
            }
            put_str(b, " ");
            put_marker(b, "[/INST]", inst);
        } else {
            put_str(b, " ");
            put_trimmed(b, c);
            put_str(b, " ");
            put_special(b, "</s>");
        }
    }
}

/* Mistral, as llama.cpp's v1/v3/v3-tekken built-ins lay it out: turn opener
 * "[INST]" with variant spacing; system text "{system}\n\n" inside the turn
 * (we fold it into the first user turn, as llama.cpp does; Mistral's v0.3 Jinja
 * puts it in the last one); reply then "</s>". v3 trims replies. */
static void render_mistral(struct builder *b, const struct chat_template *t,
                           const struct chat_message *m, size_t n, bool gen)
{
    bool inst = t->flags & CHAT_FLAG_INST_TOKENS;
    bool v1 = t->flags & CHAT_FLAG_MISTRAL_V1;
    bool tekken = !v1 && (t->flags & CHAT_FLAG_MISTRAL_TEKKEN);
    const char *lead = v1 ? " " : "";
    const char *trail = tekken ? "" : " ";
    bool inside = false;
    (void)gen; /* the prompt already ends in "[/INST]" */
    for (size_t i = 0; i <= n; i++) {
        bool dflt = i == 0 && n > 0 && m[0].role != CHAT_ROLE_SYSTEM && t->default_system;
        if (i == n && !dflt)
            break;
        enum chat_role role = dflt ? CHAT_ROLE_SYSTEM : m[i].role;
        const char *c = dflt ? t->default_system : content_of(&m[i]);
        if (!inside) {
            put_str(b, lead);
            put_marker(b, "[INST]", inst);
            put_str(b, trail);
            inside = true;
        }
        if (role == CHAT_ROLE_SYSTEM) {
            put_str(b, c);
            put_str(b, "\n\n");
        } else if (role == CHAT_ROLE_USER) {
            put_str(b, c);
            put_str(b, lead);
            put_marker(b, "[/INST]", inst);
        } else {
            put_str(b, trail);
            if (!v1 && !tekken)
                put_trimmed(b, c);
            else
                put_str(b, c);
            put_special(b, "</s>");
            inside = false;
        }
        if (dflt)
            i--;
    }
}

/* Gemma 3 (Google's template): no system role; a leading system message
 * becomes "{system}\n\n" (untrimmed) at the start of the first turn; roles
 * user and model; contents trimmed. A later system message is folded into the
 * next user turn the same way (the official template would refuse it). */
static void render_gemma(struct builder *b, const struct chat_template *t,
                         const struct chat_message *m, size_t n, bool gen)
{
    const char *sep = (t->flags & CHAT_FLAG_GEMMA_SEP1) ? "\n" : "\n\n";
    const char *prefix = NULL;
    size_t start = 0;
    if (n > 0 && m[0].role == CHAT_ROLE_SYSTEM) {
        prefix = content_of(&m[0]);
        start = 1;
    } else if (n > 0 && t->default_system) {
        prefix = t->default_system;
    }
    for (size_t i = start; i < n; i++) {
        if (m[i].role == CHAT_ROLE_SYSTEM) {
            prefix = content_of(&m[i]);
            continue;
        }
        bool user = m[i].role == CHAT_ROLE_USER;
        put_special(b, "<start_of_turn>");
        put_str(b, user ? "user\n" : "model\n");
        /* the template attaches the prefix to the first turn whatever its role */
        if (prefix && (user || i == start)) {
            put_str(b, prefix);
            put_str(b, sep);
            prefix = NULL;
        }
        put_trimmed(b, content_of(&m[i]));
        put_special(b, "<end_of_turn>");
        put_str(b, "\n");
    }
    if (gen) {
        put_special(b, "<start_of_turn>");
        put_str(b, "model\n");
    }
}

/* No template: the texts back to back, untrimmed, so a prompt continues
 * exactly where its text stops (a reply, appended by the engine, is the
 * next text). ADD_GENERATION adds nothing: the model simply goes on. */
static void render_none(struct builder *b, const struct chat_template *t,
                        const struct chat_message *m, size_t n, bool gen)
{
    (void)t;
    (void)gen;
    for (size_t i = 0; i < n; i++)
        put_str(b, content_of(&m[i]));
}

size_t chat_answer_offset(const char *reply, size_t len, size_t *think_len)
{
    static const char open[] = "<think>", close[] = "</think>";
    if (think_len)
        *think_len = 0;
    if (!reply || len < sizeof open - 1 || memcmp(reply, open, sizeof open - 1) != 0)
        return 0;
    size_t i = sizeof open - 1;
    for (; i + sizeof close - 1 <= len; i++)
        if (memcmp(reply + i, close, sizeof close - 1) == 0)
            break;
    if (i + sizeof close - 1 > len) {
        if (think_len)
            *think_len = len - (sizeof open - 1);
        return len;
    }
    if (think_len)
        *think_len = i - (sizeof open - 1);
    i += sizeof close - 1;
    while (i < len && (reply[i] == '\n' || reply[i] == '\r'))
        i++;
    return i;
}

/* Qwen3's content.split('</think>')[-1].lstrip('\n'): the text after the
 * last "</think>" (content as it is without one). */
static const char *after_thinking(const char *c)
{
    const char *last = NULL;
    for (const char *p = c; (p = strstr(p, "</think>")); p += 8)
        last = p;
    if (!last)
        return c;
    last += 8;
    while (*last == '\n')
        last++;
    return last;
}

/* ---- reasoning formats ----
 *
 * Both templates drop the thinking of earlier replies by a rule of their own,
 * so their formatters apply it themselves (own_thinking in the table). */

/* DeepSeek-R1's content.split('</think>')[-1]: the text after the last
 * "</think>", newlines kept (unlike Qwen3's template). */
static const char *after_last_close(const char *c)
{
    const char *last = NULL;
    for (const char *p = c; (p = strstr(p, "</think>")); p += 8)
        last = p;
    return last ? last + 8 : c;
}

/* DeepSeek-R1 (its distills' template): the last system message's text
 * first, right after BOS (the tokenizer's), then "<｜User｜>{user}" and
 * "<｜Assistant｜>{reply}<｜end▁of▁sentence｜>", nothing trimmed. The
 * generation prompt may open the think block the reply then fills. */
static void render_deepseek_r1(struct builder *b, const struct chat_template *t,
                               const struct chat_message *m, size_t n, bool gen)
{
    (void)t;
    const char *sys = NULL;
    for (size_t i = 0; i < n; i++)
        if (m[i].role == CHAT_ROLE_SYSTEM)
            sys = content_of(&m[i]);
    if (sys)
        put_str(b, sys);
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == CHAT_ROLE_USER) {
            put_special(b, "<｜User｜>");
            put_str(b, content_of(&m[i]));
        } else if (m[i].role == CHAT_ROLE_ASSISTANT) {
            put_special(b, "<｜Assistant｜>");
            put_str(b, after_last_close(content_of(&m[i])));
            put_special(b, "<｜end▁of▁sentence｜>");
        }
    }
    if (gen) {
        put_special(b, "<｜Assistant｜>");
        put_str(b, chat_reply_prefix(t));
    }
}

#define HARMONY_ANALYSIS "<|channel|>analysis<|message|>"
#define HARMONY_FINAL "<|channel|>final<|message|>"

/* The analysis and final texts of a reply as the engine keeps it (harmony
 * headers as text, see chat_reply_controls), as spans of C. The final text
 * follows the last final header; a reply with no channel header at all is
 * all final text (or a "<think>" block and its answer, from a history kept
 * for another model); one cut short before its final message has none. */
static void harmony_parts(const char *c, const char **think, size_t *tlen, const char **ans,
                          size_t *alen)
{
    size_t n = strlen(c);
    *think = NULL;
    *tlen = 0;
    const char *last = NULL;
    for (const char *p = c; (p = strstr(p, HARMONY_FINAL)); p += strlen(HARMONY_FINAL))
        last = p;
    const char *a = strstr(c, HARMONY_ANALYSIS);
    if (a && (!last || a < last)) {
        a += strlen(HARMONY_ANALYSIS);
        const char *e = strstr(a, "<|end|>");
        if (!e || (last && e > last))
            e = last ? last : c + n;
        *think = a;
        *tlen = (size_t)(e - a);
    }
    if (last) {
        *ans = last + strlen(HARMONY_FINAL);
        *alen = n - (size_t)(*ans - c);
    } else if (strncmp(c, "<|channel|>", 11) == 0) {
        *ans = c + n;
        *alen = 0;
    } else {
        size_t tl, off = chat_answer_offset(c, n, &tl);
        if (off) {
            *think = c + 7;
            *tlen = tl;
        }
        *ans = c + off;
        *alen = n - off;
    }
}

static void harmony_open(struct builder *b, const char *role)
{
    put_special(b, "<|start|>");
    put_str(b, role);
}

/* gpt-oss's template without tools: its system message (identity,
 * knowledge cutoff, the date, reasoning effort, the valid channels), a
 * developer message with the user's system prompt where there is one, then
 * the turns. Earlier replies keep their final message only; the last one,
 * rendered without a generation prompt, keeps its analysis and ends with
 * "<|return|>" as the template writes it for training. */
static void render_harmony(struct builder *b, const struct chat_template *t,
                           const struct chat_message *m, size_t n, bool gen)
{
    char today[32];
    if (t->today) {
        snprintf(today, sizeof today, "%s", t->today);
    } else {
        time_t now = time(NULL);
        struct tm tm;
        if (!localtime_r(&now, &tm) || strftime(today, sizeof today, "%Y-%m-%d", &tm) == 0)
            snprintf(today, sizeof today, "1970-01-01");
    }
    harmony_open(b, "system");
    put_special(b, "<|message|>");
    put_str(b, "You are ChatGPT, a large language model trained by OpenAI.\n"
               "Knowledge cutoff: 2024-06\nCurrent date: ");
    put_str(b, today);
    put_str(b, "\n\nReasoning: medium\n\n"
               "# Valid channels: analysis, commentary, final. Channel must be included for "
               "every message.");
    put_special(b, "<|end|>");
    size_t start = 0;
    if (n > 0 && m[0].role == CHAT_ROLE_SYSTEM) {
        start = 1;
        if (*content_of(&m[0])) {
            harmony_open(b, "developer");
            put_special(b, "<|message|>");
            put_str(b, "# Instructions\n\n");
            put_str(b, content_of(&m[0]));
            put_str(b, "\n\n");
            put_special(b, "<|end|>");
        }
    }
    for (size_t i = start; i < n; i++) {
        if (m[i].role == CHAT_ROLE_USER) {
            harmony_open(b, "user");
            put_special(b, "<|message|>");
            put_str(b, content_of(&m[i]));
            put_special(b, "<|end|>");
        } else if (m[i].role == CHAT_ROLE_ASSISTANT) {
            const char *think, *ans;
            size_t tlen, alen;
            harmony_parts(content_of(&m[i]), &think, &tlen, &ans, &alen);
            bool last = i + 1 == n && !gen;
            if (last && think) {
                harmony_open(b, "assistant");
                put_special(b, "<|channel|>");
                put_str(b, "analysis");
                put_special(b, "<|message|>");
                put_text(b, think, tlen);
                put_special(b, "<|end|>");
            }
            harmony_open(b, "assistant");
            put_special(b, "<|channel|>");
            put_str(b, "final");
            put_special(b, "<|message|>");
            put_text(b, ans, alen);
            put_special(b, last ? "<|return|>" : "<|end|>");
        }
        /* a later system message: the template renders none */
    }
    if (gen)
        harmony_open(b, "assistant");
}

/* ---- the formats ---- */

typedef void render_fn(struct builder *b, const struct chat_template *t,
                       const struct chat_message *m, size_t n, bool gen);

struct format_row {
    const char *name;        /* --chat-template NAME */
    const char *end_of_turn; /* see chat_end_of_turn */
    render_fn *render;
    /* The formatter drops earlier thinking by its template's own rule, so
     * CHAT_FLAG_DROP_THINKING's generic rule must not run first. */
    bool own_thinking;
    const char *reply_prefix;          /* see chat_reply_prefix */
    const char *const *reply_controls; /* see chat_reply_controls */
};

static const char *const harmony_controls[] = {"<|channel|>", "<|message|>", "<|start|>",
                                               "<|end|>", "<|constrain|>", NULL};

static const struct format_row formats[CHAT_FORMAT_COUNT] = {
    [CHAT_FORMAT_CHATML] = {.name = "chatml", .end_of_turn = "<|im_end|>",
                            .render = render_chatml},
    [CHAT_FORMAT_LLAMA3] = {.name = "llama3", .end_of_turn = "<|eot_id|>",
                            .render = render_llama3},
    [CHAT_FORMAT_LLAMA2] = {.name = "llama2", .end_of_turn = "</s>", .render = render_llama2},
    [CHAT_FORMAT_MISTRAL] = {.name = "mistral", .end_of_turn = "</s>",
                             .render = render_mistral},
    [CHAT_FORMAT_GEMMA] = {.name = "gemma", .end_of_turn = "<end_of_turn>",
                           .render = render_gemma},
    [CHAT_FORMAT_DEEPSEEK_R1] = {.name = "deepseek-r1", .end_of_turn = "<｜end▁of▁sentence｜>",
                                 .render = render_deepseek_r1, .own_thinking = true,
                                 .reply_prefix = "<think>\n"},
    [CHAT_FORMAT_HARMONY] = {.name = "gpt-oss", .end_of_turn = "<|return|>",
                             .render = render_harmony, .own_thinking = true,
                             .reply_controls = harmony_controls},
    [CHAT_FORMAT_NONE] = {.name = "none", .end_of_turn = "", .render = render_none},
};

/* An unknown format renders as ChatML, the most common one. */
static const struct format_row *format_row(enum chat_format f)
{
    return (unsigned)f < CHAT_FORMAT_COUNT ? &formats[f] : &formats[CHAT_FORMAT_CHATML];
}

const char *chat_format_name(enum chat_format f)
{
    return (unsigned)f < CHAT_FORMAT_COUNT ? formats[f].name : "unknown";
}

bool chat_format_from_name(const char *name, enum chat_format *out)
{
    if (!name)
        return false;
    for (int f = 0; f < CHAT_FORMAT_COUNT; f++) {
        if (strcmp(name, formats[f].name) == 0) {
            if (out)
                *out = (enum chat_format)f;
            return true;
        }
    }
    return false;
}

const char *chat_format_names(void)
{
    return "chatml,llama3,llama2,mistral,gemma,deepseek-r1,gpt-oss,none";
}

const char *chat_end_of_turn(enum chat_format f)
{
    return (unsigned)f < CHAT_FORMAT_COUNT ? formats[f].end_of_turn : "";
}

const char *chat_reply_prefix(const struct chat_template *t)
{
    const char *p = t ? format_row(t->format)->reply_prefix : NULL;
    return p && (t->flags & CHAT_FLAG_OPENS_THINKING) ? p : "";
}

const char *const *chat_reply_controls(enum chat_format f)
{
    return (unsigned)f < CHAT_FORMAT_COUNT ? formats[f].reply_controls : NULL;
}

char *chat_join_reply(enum chat_format f, const char *thinking, const char *answer)
{
    const char *fmt = f == CHAT_FORMAT_HARMONY
                          ? HARMONY_ANALYSIS "%s<|end|><|start|>assistant" HARMONY_FINAL "%s"
                          : "<think>%s</think>\n\n%s";
    char *s = NULL;
    if (asprintf(&s, fmt, thinking ? thinking : "", answer ? answer : "") < 0)
        return NULL;
    return s;
}

int chat_render(const struct chat_template *tmpl, const struct chat_message *msgs, size_t n,
                bool add_generation, struct chat_prompt *out)
{
    struct builder b = {0};
    out->segs = NULL;
    out->n_segs = 0;
    out->arena = NULL;
    if (n > 0 && !msgs)
        return -1;
    /* Earlier replies without their thinking, where the template drops it:
     * a copy of the list pointing past each reply's think block. */
    struct chat_message *dropped = NULL;
    if ((tmpl->flags & CHAT_FLAG_DROP_THINKING) && !format_row(tmpl->format)->own_thinking &&
        n > 0) {
        dropped = malloc(n * sizeof *dropped);
        if (!dropped)
            return -1;
        for (size_t i = 0; i < n; i++) {
            dropped[i] = msgs[i];
            if (msgs[i].role == CHAT_ROLE_ASSISTANT && msgs[i].content)
                dropped[i].content = after_thinking(msgs[i].content);
        }
        msgs = dropped;
    }
    format_row(tmpl->format)->render(&b, tmpl, msgs, n, add_generation);
    free(dropped);
    struct tok_segment *segs = b.oom ? NULL : malloc((b.n ? b.n : 1) * sizeof *segs);
    if (!segs) {
        free(b.segs);
        free(b.arena);
        return -1;
    }
    for (size_t i = 0; i < b.n; i++) {
        const struct seg_rec *r = &b.segs[i];
        segs[i] = (struct tok_segment){
            .text = r->text ? r->text : b.arena + r->off,
            .len = r->len,
            .special = r->text != NULL,
        };
    }
    if (b.arena)
        b.arena[b.used] = 0;
    free(b.segs);
    out->segs = segs;
    out->n_segs = b.n;
    out->arena = b.arena;
    return 0;
}

void chat_prompt_free(struct chat_prompt *p)
{
    if (!p)
        return;
    free(p->segs);
    free(p->arena);
    p->segs = NULL;
    p->arena = NULL;
    p->n_segs = 0;
}

/* ---- detection ---- */

static bool has(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

/* Reads the Jinja string literal at *P (opening quote ' or "), decoding the
 * escapes Jinja's lexer knows, into BUF. Advances *P past the closing quote.
 * False when it is not a complete literal or does not fit. */
static bool read_literal(const char **p, char *buf, size_t cap)
{
    const char *s = *p;
    char q = *s++;
    size_t n = 0;
    if (q != '\'' && q != '"')
        return false;
    for (; *s && *s != q; s++) {
        char c = *s;
        if (c == '\\') {
            s++;
            switch (*s) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case '\\': c = '\\'; break;
            case '\'': c = '\''; break;
            case '"': c = '"'; break;
            default: return false; /* \u, \x...: rare in templates; do not guess */
            }
        }
        if (n + 1 >= cap)
            return false;
        buf[n++] = c;
    }
    if (*s != q)
        return false;
    buf[n] = 0;
    *p = s + 1;
    return true;
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    return s;
}

/* If S is an output tag holding one string literal ("{{ 'text' }}", with
 * optional whitespace control), decodes it into BUF. */
static bool literal_output(const char *s, char *buf, size_t cap)
{
    s = skip_ws(s);
    if (strncmp(s, "{{", 2) != 0)
        return false;
    s += 2;
    if (*s == '-' || *s == '+')
        s++;
    s = skip_ws(s);
    if (!read_literal(&s, buf, cap))
        return false;
    s = skip_ws(s);
    if (*s == '-')
        s++;
    return strncmp(s, "}}", 2) == 0;
}

/* The end of the tag starting at S ("{%" ... "%}"), just past it, or NULL. */
static const char *tag_end(const char *s)
{
    const char *e = strstr(s, "%}");
    return e ? e + 2 : NULL;
}

/* The keyword of the statement tag at S ("if", "else", "endif", ...) into KW. */
static void tag_keyword(const char *s, char *kw, size_t cap)
{
    s += 2;
    if (*s == '-' || *s == '+')
        s++;
    s = skip_ws(s);
    size_t n = 0;
    while (*s >= 'a' && *s <= 'z' && n + 1 < cap)
        kw[n++] = *s++;
    kw[n] = 0;
}

/* From just after an if tag, the position just past the matching "else" tag
 * at the same depth, or NULL when the block has none. */
static const char *find_else(const char *s)
{
    int depth = 0;
    while ((s = strstr(s, "{%")) != NULL) {
        char kw[16];
        tag_keyword(s, kw, sizeof kw);
        const char *e = tag_end(s);
        if (!e)
            return NULL;
        if (strcmp(kw, "if") == 0 || strcmp(kw, "for") == 0) {
            depth++;
        } else if (strcmp(kw, "endif") == 0 || strcmp(kw, "endfor") == 0) {
            if (depth == 0)
                return NULL;
            depth--;
        } else if (strcmp(kw, "else") == 0 && depth == 0) {
            return e;
        }
        s = e;
    }
    return NULL;
}

/* Strips the format's system-turn wrapping from the literal LIT, leaving the
 * system text; false when LIT is not exactly one system turn. */
static bool unwrap_system_turn(enum chat_format f, char *lit)
{
    const char *pre, *post;
    switch (f) {
    case CHAT_FORMAT_CHATML:
        pre = "<|im_start|>system\n";
        post = "<|im_end|>\n";
        break;
    case CHAT_FORMAT_LLAMA3:
        pre = "<|start_header_id|>system<|end_header_id|>\n\n";
        post = "<|eot_id|>";
        break;
    default:
        return false;
    }
    size_t n = strlen(lit), a = strlen(pre), z = strlen(post);
    if (n < a + z || strncmp(lit, pre, a) != 0 || strcmp(lit + n - z, post) != 0)
        return false;
    memmove(lit, lit + a, n - a - z);
    lit[n - a - z] = 0;
    return true;
}

/* Finds a system message the template writes when the conversation has none:
 *   {% if ... messages[0]['role'] != 'system' %}{{ '<system turn>' }}
 *   {% if messages[0]['role'] == 'system' %}...{% else %}{{ '<system turn>' }}
 * (any quoting, messages[0].role or ['role'], with whitespace control). The
 * literal must be one whole system turn of the detected format. */
static bool find_default_system(const char *jinja, enum chat_format f, char *buf, size_t cap)
{
    static const char *const subjects[] = {"messages[0]['role']", "messages[0][\"role\"]",
                                           "messages[0].role"};
    for (size_t si = 0; si < sizeof subjects / sizeof *subjects; si++) {
        const char *s = jinja;
        size_t sl = strlen(subjects[si]);
        while ((s = strstr(s, subjects[si])) != NULL) {
            const char *p = skip_ws(s + sl);
            s += sl;
            bool neq;
            if (strncmp(p, "!=", 2) == 0)
                neq = true;
            else if (strncmp(p, "==", 2) == 0)
                neq = false;
            else
                continue;
            p = skip_ws(p + 2);
            if (strncmp(p, "'system'", 8) != 0 && strncmp(p, "\"system\"", 8) != 0)
                continue;
            /* the enclosing tag must be an if statement */
            const char *open = NULL;
            for (const char *q = s; q > jinja + 1; q--) {
                if (q[-2] == '{' && q[-1] == '%') {
                    open = q - 2;
                    break;
                }
                if (q[-2] == '%' && q[-1] == '}')
                    break;
            }
            if (!open)
                continue;
            char kw[16];
            tag_keyword(open, kw, sizeof kw);
            if (strcmp(kw, "if") != 0 && strcmp(kw, "elif") != 0)
                continue;
            const char *body = tag_end(p);
            if (!body)
                continue;
            if (!neq)
                body = find_else(body);
            if (body && literal_output(body, buf, cap) && unwrap_system_turn(f, buf))
                return true;
        }
    }
    return false;
}

/* Mistral variants, after llama.cpp's detection rules. */
static unsigned mistral_flags(const char *j)
{
    if (has(j, " [INST]"))
        return CHAT_FLAG_MISTRAL_V1;
    if (has(j, "\"[INST]\""))
        return CHAT_FLAG_MISTRAL_TEKKEN | CHAT_FLAG_INST_TOKENS;
    /* v3 vocabularies hold [INST] as a control token; chat_template_bind checks */
    return CHAT_FLAG_INST_TOKENS;
}

/* Gemma copies differ in what follows the folded system text: Google's
 * writes '\n\n', some GGUF-embedded copies '\n'. Read it off the template. */
static unsigned gemma_flags(const char *j)
{
    const char *p = strstr(j, "first_user_prefix = messages[0]['content']");
    if (!p)
        return 0;
    p = strchr(p, '+');
    if (!p)
        return 0;
    p = skip_ws(p + 1);
    char lit[8];
    if (read_literal(&p, lit, sizeof lit) && strcmp(lit, "\n") == 0)
        return CHAT_FLAG_GEMMA_SEP1;
    return 0;
}

void chat_detect(const char *jinja, enum chat_format fallback, struct chat_template *out,
                 char *default_buf, size_t cap)
{
    out->format = fallback;
    out->default_system = NULL;
    out->flags = 0;
    out->today = NULL;
    if (!jinja || !*jinja)
        return;
    enum chat_format f;
    if (chat_format_from_name(jinja, &f)) {
        out->format = f;
        return;
    }
    /* First match wins, in llama.cpp's order (model-formats.md §6.1). Formats
     * we have no formatter for (phi3, zephyr, granite, ...) fall back. */
    if (has(jinja, "<|im_start|>")) {
        out->format = CHAT_FORMAT_CHATML;
    } else if (strncmp(jinja, "mistral", 7) == 0 || has(jinja, "[INST]")) {
        if (has(jinja, "' [INST] ' + system_message") || has(jinja, "[AVAILABLE_TOOLS]")) {
            out->format = CHAT_FORMAT_MISTRAL;
            out->flags = mistral_flags(jinja);
        } else {
            out->format = CHAT_FORMAT_LLAMA2;
        }
    } else if (has(jinja, "<|assistant|>") || has(jinja, "<|user|>")) {
        return; /* phi3, falcon3, glmedge, zephyr: not ours */
    } else if (has(jinja, "<start_of_turn>")) {
        out->format = CHAT_FORMAT_GEMMA;
        out->flags = gemma_flags(jinja);
    } else if (has(jinja, "<|start_header_id|>") && has(jinja, "<|end_header_id|>")) {
        out->format = CHAT_FORMAT_LLAMA3;
    } else if (has(jinja, "<｜Assistant｜>") && has(jinja, "<｜User｜>")) {
        out->format = CHAT_FORMAT_DEEPSEEK_R1;
        if (has(jinja, "<｜Assistant｜><think>"))
            out->flags |= CHAT_FLAG_OPENS_THINKING;
    } else if (has(jinja, "<|channel|>")) {
        out->format = CHAT_FORMAT_HARMONY;
    } else {
        return;
    }
    if (has(jinja, "</think>"))
        out->flags |= CHAT_FLAG_DROP_THINKING;
    if (has(jinja, "enable_thinking") && out->format == CHAT_FORMAT_CHATML)
        out->flags |= CHAT_FLAG_THINK_SWITCH;
    if (default_buf && cap > 0 && find_default_system(jinja, out->format, default_buf, cap))
        out->default_system = default_buf;
}

void chat_template_bind(struct chat_template *t, const struct tokenizer *tok)
{
    if (!t || !tok)
        return;
    int32_t a = tok_lookup(tok, "[INST]"), z = tok_lookup(tok, "[/INST]");
    bool ctl = a >= 0 && z >= 0 && tok_attr(tok, a) == TOK_ATTR_CONTROL &&
               tok_attr(tok, z) == TOK_ATTR_CONTROL;
    if (ctl)
        t->flags |= CHAT_FLAG_INST_TOKENS;
    else
        t->flags &= ~(unsigned)CHAT_FLAG_INST_TOKENS;
}
