/* chat.h - chat templates: detecting the format from tokenizer.chat_template
 * and rendering a conversation into the segments the tokenizer encodes.
 *
 * Rendering keeps control tokens apart from text (see tok_segment), so a user
 * who types "<|im_end|>" gets plain text, never a control token. The rendered
 * prompt is token-identical to the model's own Jinja template.
 */
#ifndef KVCHAT_CHAT_H
#define KVCHAT_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "tokenizer.h"

enum chat_format {
    CHAT_FORMAT_CHATML,  /* <|im_start|>role ... <|im_end|> */
    CHAT_FORMAT_LLAMA3,  /* <|start_header_id|>role<|end_header_id|> ... <|eot_id|> */
    CHAT_FORMAT_LLAMA2,  /* [INST] <<SYS>> ... [/INST] */
    CHAT_FORMAT_MISTRAL, /* [INST] ... [/INST] with the system text in the first turn */
    CHAT_FORMAT_GEMMA,   /* <start_of_turn>user ... <end_of_turn> */
    /* DeepSeek-R1 and its distills: {system}<｜User｜>...<｜Assistant｜>...
     * (fullwidth bars, U+2581 for spaces); with CHAT_FLAG_OPENS_THINKING the
     * generation prompt opens the reply's think block ("<think>\n"). */
    CHAT_FORMAT_DEEPSEEK_R1,
    /* gpt-oss's harmony: <|start|>role<|message|>...<|end|>, replies in
     * channels (analysis = thinking, final = the answer). */
    CHAT_FORMAT_HARMONY,
    /* No template: raw completion. The messages' texts are concatenated as
     * they are, all plain text, with nothing between or after them; the
     * system text (if any) is simply the first. Never detected: only chosen
     * by name ("none"). */
    CHAT_FORMAT_NONE,
    CHAT_FORMAT_COUNT
};

enum chat_role { CHAT_ROLE_SYSTEM, CHAT_ROLE_USER, CHAT_ROLE_ASSISTANT };

struct chat_message {
    enum chat_role role;
    const char *content; /* borrowed, UTF-8 */
};

/* A template: the format plus the system prompt the model's own template
 * inserts when the conversation has none (SmolLM2's does), or NULL. */
struct chat_template {
    enum chat_format format;
    const char *default_system; /* borrowed (static or owned by the engine) */
    unsigned flags;             /* CHAT_FLAG_* variant bits; 0 = the format's usual form */
    /* The date a template states (harmony's "Current date: "), as
     * "YYYY-MM-DD" (borrowed); NULL = today, local time, when rendered. */
    const char *today;
};

/* Variants within a format, found by chat_detect (and chat_template_bind).
 * A template built by hand with flags 0 gets: Mistral v3 spacing, "[INST]"
 * as plain text, Gemma's "\n\n" after the folded system text. */
enum chat_flag {
    CHAT_FLAG_MISTRAL_V1 = 1u << 0,     /* " [INST] {user} [/INST] {reply}</s>" */
    CHAT_FLAG_MISTRAL_TEKKEN = 1u << 1, /* "[INST]{user}[/INST]{reply}</s>" */
    /* "[INST]" and "[/INST]" are control tokens of the vocabulary (Mistral v3)
     * rather than plain text (Llama 2, Mistral v1): emit them as special. */
    CHAT_FLAG_INST_TOKENS = 1u << 2,
    CHAT_FLAG_GEMMA_SEP1 = 1u << 3, /* system text followed by one "\n", not two */
    /* The template renders earlier replies without their thinking: what
     * follows the last "</think>", leading newlines stripped (Qwen3's does;
     * found by the "</think>" in the template text). DeepSeek-R1 and harmony
     * always drop it by their own rules, flag or not (chat.c). */
    CHAT_FLAG_DROP_THINKING = 1u << 4,
    /* The template has a switch for thinking (Qwen3's enable_thinking). */
    CHAT_FLAG_THINK_SWITCH = 1u << 5,
    /* The switch is off: the generation prompt holds an empty think block
     * ("<think>\n\n</think>\n\n"), as the template renders enable_thinking
     * false. Set by the caller, only where CHAT_FLAG_THINK_SWITCH is. */
    CHAT_FLAG_THINK_OFF = 1u << 6,
    /* The generation prompt opens the reply's think block: DeepSeek's later
     * R1 templates end it "<｜Assistant｜><think>\n"; the one inside the
     * R1-Distill GGUF files ends at "<｜Assistant｜>" and the model writes
     * "<think>" itself. Found by "<｜Assistant｜><think>" in the text. */
    CHAT_FLAG_OPENS_THINKING = 1u << 7,
};

/* Where the answer of REPLY (LEN bytes) starts once an opening
 * "<think>...</think>" block and the newlines after it are skipped (0 when
 * the reply does not open with one); *THINK_LEN (may be NULL) gets the
 * length of the thinking between the tags, which starts at offset 7. A block
 * still open is all thinking: the answer starts at LEN. */
size_t chat_answer_offset(const char *reply, size_t len, size_t *think_len);

const char *chat_format_name(enum chat_format f); /* "chatml", "llama3", ... */
/* Parses a --chat-template NAME; false when unknown. */
bool chat_format_from_name(const char *name, enum chat_format *out);
/* Comma-separated list of the names chat_format_from_name accepts. */
const char *chat_format_names(void);

/* Detects the template from the Jinja text in the file (NULL or "" when the file
 * has none: FALLBACK is used). Fills OUT, with a default system prompt when the
 * template text supplies one (the string is copied into DEFAULT_BUF, CAP bytes). */
void chat_detect(const char *jinja, enum chat_format fallback, struct chat_template *out,
                 char *default_buf, size_t cap);

/* Settles what only the vocabulary knows: whether "[INST]"/"[/INST]" are
 * control tokens (CHAT_FLAG_INST_TOKENS). The reference tokenizes the rendered
 * text with special parsing on, so they are control tokens exactly when the
 * vocabulary has them as such. Call after chat_detect (or after setting the
 * format by name) once the tokenizer is loaded. */
void chat_template_bind(struct chat_template *t, const struct tokenizer *tok);

/* A rendered prompt: segments pointing into strings it owns. */
struct chat_prompt {
    struct tok_segment *segs; /* owned */
    size_t n_segs;
    char *arena; /* owned: backing storage for template text */
};

/* Renders MSGS (N of them) in the template's format. With ADD_GENERATION the
 * opening of an assistant turn follows. Returns 0, or -1 when out of memory.
 * Message contents are copied into the prompt's arena, so the prompt does not
 * depend on MSGS afterwards. */
int chat_render(const struct chat_template *tmpl, const struct chat_message *msgs, size_t n,
                bool add_generation, struct chat_prompt *out);
void chat_prompt_free(struct chat_prompt *p);

/* Text the model emits at the end of its turn in this format, which ends
 * generation when seen as a token ("<|im_end|>", "<end_of_turn>", ...). */
const char *chat_end_of_turn(enum chat_format f);

/* What the generation prompt leaves open for the reply to continue: the
 * reply as kept (and streamed) starts with it, so it reads as the model's
 * whole turn and its thinking is told apart like any other ("<think>\n"
 * where DeepSeek-R1's prompt opens the think block); "" otherwise. */
const char *chat_reply_prefix(const struct chat_template *t);

/* Control tokens that are part of a reply's text in this format (harmony's
 * channel headers: "<|channel|>", "<|message|>", ...), NULL-terminated, or
 * NULL. The engine writes them into the reply, and none of them ends the
 * turn even where the vocabulary counts it as an end of generation:
 * harmony's "<|end|>" closes the analysis message and the final answer
 * follows; "<|return|>" ends the reply (llama.cpp drops "<|end|>" from its
 * end-of-generation set for the same reason). */
const char *const *chat_reply_controls(enum chat_format f);

/* A stored reply put back together as the model wrote it in this format,
 * from its THINKING and ANSWER (NULL = ""): harmony's analysis and final
 * messages, a "<think>" block otherwise. Returns a malloc'd string, or NULL
 * when out of memory. */
char *chat_join_reply(enum chat_format f, const char *thinking, const char *answer);

#endif
