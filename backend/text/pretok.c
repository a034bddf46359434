/* pretok.c - the byte-level BPE pre-tokenizers: the regexes that cut text
 * into pieces before merging, chosen by tokenizer.ggml.pre.
 *
 * One table row per pre-tokenizer (all the names llama.cpp gives it, its
 * regexes in the order they apply, and the flags it implies); tok_new finds
 * the row through tok_pre_setup, and tok_bpe_encode cuts each fragment with
 * tok_pre_split, which hands each piece on as soon as it is cut. Adding a pre-tokenizer is one row here.
 */
#include "tokenizer_internal.h"

#include "errmsg.h"

#include <stdio.h>

/* Unicode White_Space contains U+0085, which PCRE2's \s (\p{Xsp}) does not;
 * llama.cpp counts it as whitespace, so the patterns below use these. */
#define WS "[\\s\\x{85}]"
#define NWS "[^\\s\\x{85}]"
#define WS_IN "\\s\\x{85}"

/* ---- pre-tokenizer regexes (llama.cpp src/llama-vocab.cpp) ---- */

#define RE_GPT2                                                                                    \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS_IN "\\p{L}\\p{N}]+|" WS "+(?!" NWS ")"
#define RE_LLAMA3                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"      \
    "\\p{N}{1,3}| ?[^" WS_IN "\\p{L}\\p{N}]+[\\r\\n]*|" WS "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+"
#define RE_QWEN2                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"      \
    "\\p{N}| ?[^" WS_IN "\\p{L}\\p{N}]+[\\r\\n]*|" WS "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+"

/* GPT-4o's o200k_base (tokenizer.json of gpt-oss too): a word is an optional
 * non-letter, then upper-case letters and lower-case ones in either order of
 * emphasis (so "HelloWorld" is two words, "CASEWord" one), with a
 * contraction as its suffix; digits in threes; punctuation runs take the
 * newlines and slashes after them. This is the tokenizer.json pattern
 * itself: llama.cpp rewrites the case classes with lookaheads because
 * std::regex lacks \p{Lu}, and PCRE2 has them. */
#define RE_O200K_CONTRACTION "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
#define RE_O200K_UPPER "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]"
#define RE_O200K_LOWER "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
#define RE_O200K                                                                                   \
    "[^\\r\\n\\p{L}\\p{N}]?" RE_O200K_UPPER "*" RE_O200K_LOWER "+" RE_O200K_CONTRACTION "|"       \
    "[^\\r\\n\\p{L}\\p{N}]?" RE_O200K_UPPER "+" RE_O200K_LOWER "*" RE_O200K_CONTRACTION "|"       \
    "\\p{N}{1,3}| ?[^" WS_IN "\\p{L}\\p{N}]+[\\r\\n/]*|" WS "*[\\r\\n]+|" WS "+(?!" NWS ")|" WS "+"

/* DeepSeek LLM's letter class from llama.cpp (the cased letters), written
 * with escapes: several of its code points (U+1F7D, U+1FBE, U+1FD3, U+1FDB,
 * U+2126, U+212A) have canonical singleton decompositions that an editor or
 * NFC normalisation would silently change. */
#define RE_DEEPSEEK_LLM_LETTERS                                                                    \
    WS "?[" \
    "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}" \
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-" \
    "\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-" \
    "\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}" \
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}" \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}" \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}" \
    "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-" \
    "\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}" \
    "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}" \
    "\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}" \
    "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-" \
    "\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}" \
    "\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}" \
    "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}" \
    "\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}" \
    "\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-" \
    "\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}" \
    "\\x{1E900}-\\x{1E943}" \
    "]+"

struct pre_def {
    const char *names[12]; /* tokenizer.ggml.pre values, NULL-terminated */
    const char *regex[TOK_MAX_REGEX];
    bool ignore_merges;
    bool add_bos;
};

static const struct pre_def PRE_DEFS[] = {
    {
        .names = {"default", NULL},
        .regex = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
    },
    {
        .names = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                  "midm-2.0", "lfm2", "dbrx", "smaug-bpe", NULL},
        .regex = {RE_LLAMA3},
        .ignore_merges = true,
        .add_bos = true,
    },
    {
        .names = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan", NULL},
        .regex = {RE_QWEN2},
    },
    {
        /* llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT4O: gpt-oss, GPT-4o-style
         * vocabularies (no BOS, merges applied as usual) */
        .names = {"gpt-4o", NULL},
        .regex = {RE_O200K},
    },
    {
        .names = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                  "minerva-7b", NULL},
        .regex = {"\\p{N}", RE_GPT2},
    },
    {
        .names = {"gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de", "jina-v2-es",
                  "jina-v2-de", "exaone4", "trillion", NULL},
        .regex = {RE_GPT2},
    },
    {
        .names = {"falcon", NULL},
        .regex = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"},
    },
    {
        .names = {"deepseek-llm", NULL},
        .regex = {"[\r\n]", RE_DEEPSEEK_LLM_LETTERS,
                  WS "?[!-/:-~！-／：-～‘-‟　-。]+", WS "+$",
                  "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
    },
    {
        .names = {"deepseek-coder", NULL},
        .regex = {"[\r\n]", WS "?\\p{L}+", WS "?\\p{P}+",
                  "[一-龥ࠀ-一가-퟿]+", "\\p{N}"},
    },
};
#define N_PRE_DEFS (sizeof PRE_DEFS / sizeof PRE_DEFS[0])

static bool compile_regexes(struct tokenizer *t, const struct pre_def *d, char *err, size_t errlen)
{
    for (int i = 0; i < TOK_MAX_REGEX && d->regex[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        t->re[i] = pcre2_compile((PCRE2_SPTR)d->regex[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF |
                                     PCRE2_DOLLAR_ENDONLY,
                                 &ec, &eo, NULL);
        if (!t->re[i]) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(ec, msg, sizeof msg);
            kv_seterr(err, errlen, "tokenizer: pre-tokenizer '%s' regex %d: %s at offset %zu",
                    t->pre, i, (const char *)msg, (size_t)eo);
            return false;
        }
        /* JIT is an optimisation only: the interpreter is used without it. */
        (void)pcre2_jit_compile(t->re[i], PCRE2_JIT_COMPLETE);
        t->n_re = i + 1;
    }
    return true;
}

static const struct pre_def *find_pre(const char *name)
{
    for (size_t i = 0; i < N_PRE_DEFS; i++)
        for (int k = 0; PRE_DEFS[i].names[k]; k++)
            if (strcmp(PRE_DEFS[i].names[k], name) == 0)
                return &PRE_DEFS[i];
    return NULL;
}

static void list_pres(char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_PRE_DEFS; i++)
        for (int j = 0; PRE_DEFS[i].names[j]; j++) {
            int w = snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", PRE_DEFS[i].names[j]);
            if (w < 0 || (size_t)w >= cap - k)
                return;
            k += (size_t)w;
        }
}

bool tok_pre_setup(struct tokenizer *t, char *err, size_t errlen)
{
    const struct pre_def *d = find_pre(t->pre);
    if (!d) {
        char names[600];
        list_pres(names, sizeof names);
        kv_seterr(err, errlen, "tokenizer: unsupported tokenizer.ggml.pre '%s' (supported: %s)",
                t->pre, names);
        return false;
    }
    t->ignore_merges = d->ignore_merges;
    t->add_bos = d->add_bos;
    return compile_regexes(t, d, err, errlen);
}

static size_t utf8_len_lead(unsigned char c)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Cuts the piece [PS, PS + PL) of TEXT with regex R: matches and the gaps
 * between them both become pieces, as llama.cpp's unicode_regex_split, and
 * each goes on to the next regex, or to EMIT after the last one. Depth-first,
 * so pieces reach EMIT in text order, as the reference's list would hold
 * them, while no more than one piece per regex is pending. */
static void split_piece(struct tok_enc *e, const char *text, size_t ps, size_t pl, int r,
                        void (*emit)(struct tok_enc *, const unsigned char *, size_t))
{
    const struct tokenizer *t = e->t;
    if (e->failed)
        return;
    if (r == t->n_re) {
        emit(e, (const unsigned char *)text + ps, pl);
        return;
    }
    if (!e->md[r]) {
        e->md[r] = pcre2_match_data_create_from_pattern(t->re[r], NULL);
        if (!e->md[r]) {
            tok_enc_fail(e, "out of memory");
            return;
        }
    }
    PCRE2_SPTR subj = (PCRE2_SPTR)(text + ps);
    size_t pos = 0, gap = 0;
    while (pos <= pl && !e->failed) {
        int rc = pcre2_match(t->re[r], subj, pl, pos, 0, e->md[r], NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(t->re[r], subj, pl, pos, PCRE2_NO_JIT, e->md[r], NULL);
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            char m[200];
            pcre2_get_error_message(rc, msg, sizeof msg);
            snprintf(m, sizeof m, "pre-tokenizer regex failed: %s", (const char *)msg);
            tok_enc_fail(e, m);
            return;
        }
        /* read before recursing: the next levels use their own match data,
         * but keep nothing of this one across the calls */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md[r]);
        size_t ms = ov[0], me = ov[1];
        if (ms > gap)
            split_piece(e, text, ps + gap, ms - gap, r + 1, emit);
        if (me > ms)
            split_piece(e, text, ps + ms, me - ms, r + 1, emit);
        gap = me;
        if (me == ms) {
            /* empty match: step over one character */
            if (me >= pl)
                break;
            size_t cl = utf8_len_lead(subj[me]);
            pos = me + (cl > pl - me ? pl - me : cl);
        } else
            pos = me;
        if (pos >= pl)
            break;
    }
    if (gap < pl)
        split_piece(e, text, ps + gap, pl - gap, r + 1, emit);
}

void tok_pre_split(struct tok_enc *e, const char *text, size_t len,
                   void (*emit)(struct tok_enc *e, const unsigned char *piece, size_t n))
{
    split_piece(e, text, 0, len, 0, emit);
}
