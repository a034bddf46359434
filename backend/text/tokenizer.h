/* tokenizer.h - SentencePiece (`llama`) and byte-level BPE (`gpt2`) tokenizers
 * read from a GGUF file's tokenizer.ggml.* metadata, and a streaming
 * detokeniser that only ever emits whole, valid UTF-8.
 *
 * Exactness is the contract: for every vocabulary in the conformance fixtures
 * and every supported model, tok_encode gives the ids the reference produces.
 *
 * Text a user typed is encoded with tok_encode: spellings of control tokens in
 * it (such as "<|im_end|>") stay plain text. Control tokens enter a prompt only
 * through tok_encode_segments, where the chat template marks them.
 *
 * Thread safety: a tokenizer is immutable after tok_new; a tok_stream belongs
 * to one thread.
 */
#ifndef KVCHAT_TOKENIZER_H
#define KVCHAT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf;
struct tokenizer;

enum tok_kind { TOK_KIND_SPM, TOK_KIND_BPE };

/* token_type values from the file */
enum tok_attr {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_NORMAL = 1,
    TOK_ATTR_UNKNOWN = 2,
    TOK_ATTR_CONTROL = 3,
    TOK_ATTR_USER_DEFINED = 4,
    TOK_ATTR_UNUSED = 5,
    TOK_ATTR_BYTE = 6
};

/* Builds the tokenizer from G (which may be closed afterwards: everything is
 * copied). NULL with a one-line message in ERR for a missing or inconsistent
 * vocabulary or an unsupported tokenizer.ggml.model / .pre. */
struct tokenizer *tok_new(const struct gguf *g, char *err, size_t errlen);
void tok_free(struct tokenizer *t); /* NULL is a no-op */

enum tok_kind tok_kind(const struct tokenizer *t);
const char *tok_pre_name(const struct tokenizer *t); /* "llama3", "smollm", ... or "" */
int32_t tok_n_vocab(const struct tokenizer *t);
int32_t tok_bos(const struct tokenizer *t); /* -1 when none */
int32_t tok_eos(const struct tokenizer *t); /* -1 when none */
bool tok_add_bos(const struct tokenizer *t); /* the file's (or the default) add_bos */
/* True for ids that end generation: eos, eot, eom and the end-of-turn tokens
 * recognised by their text (<|im_end|>, <|eot_id|>, <end_of_turn>, ...). */
bool tok_is_eog(const struct tokenizer *t, int32_t id);
enum tok_attr tok_attr(const struct tokenizer *t, int32_t id);
/* The id whose text is exactly TEXT (any type), -1 when none. */
int32_t tok_lookup(const struct tokenizer *t, const char *text);
/* The token's text as stored in the vocabulary (NUL-terminated). */
const char *tok_text(const struct tokenizer *t, int32_t id);

/* Encodes LEN bytes of TEXT as plain text (no special-token parsing), with BOS
 * first when ADD_BOS and the vocabulary has one. Writes at most CAP ids to OUT
 * and returns the number of ids the whole text needs (call again with a larger
 * buffer when that is more than CAP), or -1 on invalid input (message in ERR if
 * non-NULL). Invalid UTF-8 is encoded byte-wise, never rejected silently. */
int64_t tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_bos,
                   int32_t *out, int64_t cap);

/* A prompt as the chat template lays it out: runs of plain text and control
 * tokens named by their text. Adjacent plain runs are encoded as one fragment,
 * exactly as the reference encodes the rendered template. */
struct tok_segment {
    const char *text; /* borrowed */
    size_t len;
    bool special; /* true: TEXT must be exactly one token's text */
};
/* Same contract as tok_encode, except that a special segment naming no token
 * returns TOK_ENC_NO_TOKEN rather than -1, so a caller can tell a template
 * that does not fit the vocabulary from running out of memory. */
#define TOK_ENC_NO_TOKEN (-2)
int64_t tok_encode_segments(const struct tokenizer *t, const struct tok_segment *segs, size_t n,
                            bool add_bos, int32_t *out, int64_t cap);

/* As tok_encode and tok_encode_segments, with the reason for a -1 written as
 * one line into ERR (ERRLEN bytes; ERR may be NULL). The tokenizer is shared
 * between threads, so errors come back here rather than being kept on it. */
int64_t tok_encode_e(const struct tokenizer *t, const char *text, size_t len, bool add_bos,
                     int32_t *out, int64_t cap, char *err, size_t errlen);
int64_t tok_encode_segments_e(const struct tokenizer *t, const struct tok_segment *segs, size_t n,
                              bool add_bos, int32_t *out, int64_t cap, char *err, size_t errlen);

/* As tok_encode, into an array it allocates: returns the ids (owned by the
 * caller, free()d) with their number in *N, or NULL (message in ERR) when out
 * of memory or on invalid input. Memory stays linear in LEN: the ids, grown by
 * half at a time, and scratch space of a fixed size for ordinary text. */
int32_t *tok_encode_alloc(const struct tokenizer *t, const char *text, size_t len, bool add_bos,
                          int64_t *n, char *err, size_t errlen);

/* Bytes of the longest token text: no token covers more bytes of input. */
uint32_t tok_longest(const struct tokenizer *t);
/* The fewest tokens LEN bytes of plain TEXT can encode to (BOS aside): no
 * token covers more than tok_longest bytes, so ceil(B / tok_longest), B being
 * the bytes that surely land in some token (all of them, in most vocabularies;
 * not those without a byte token). One pass over the bytes and no
 * tokenizing, so a text that cannot fit a context is refused before the work.
 * 0 when no bound holds (BPE merges into texts that are no token). */
int64_t tok_min_tokens(const struct tokenizer *t, const char *text, size_t len);

/* The bytes a token stands for when decoding (byte tokens give one byte; SPM's
 * U+2581 becomes a space; BPE text goes back through the byte map). Control
 * tokens give "". Writes at most CAP bytes, returns the full length. */
size_t tok_piece(const struct tokenizer *t, int32_t id, char *buf, size_t cap);

/* Streaming detokeniser: feed ids one by one, get back only complete UTF-8
 * characters. Invalid sequences become U+FFFD. */
struct tok_stream;
struct tok_stream *tok_stream_new(const struct tokenizer *t);
void tok_stream_free(struct tok_stream *s); /* NULL is a no-op */
/* Appends the text of ID; returns the number of bytes now ready in *OUT (a
 * buffer owned by the stream, valid until the next call). */
size_t tok_stream_push(struct tok_stream *s, int32_t id, const char **out);
/* Flushes whatever is pending at the end of a reply (an incomplete character
 * becomes U+FFFD). */
size_t tok_stream_flush(struct tok_stream *s, const char **out);
/* True once a push or flush lost text for want of memory (both then return
 * 0, which alone looks like "nothing ready yet"); the reply is incomplete.
 * tok_stream_reset clears it. */
bool tok_stream_failed(const struct tok_stream *s);
void tok_stream_reset(struct tok_stream *s);

#endif
