/* local.c - the local engine (engine_impl.h): model, tokenizer, template,
 * sampler and a compute backend behind one object, and the conversation
 * bookkeeping that lets each turn prefill only what the KV cache does not
 * already hold.
 *
 * The KV cache mirrors `kv_tokens`: the ids at positions 0..n_kv-1. A turn
 * renders the whole visible conversation, tokenizes it, keeps the longest
 * prefix shared with kv_tokens and prefills the rest. Generated tokens are
 * appended as they are decoded, so the next turn usually only adds the
 * end-of-turn marker and the new user message.
 */
#include "engine_impl.h"

#include <sys/statvfs.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "chat.h"
#include "errmsg.h"
#include "gguf.h"
#include "hostmem.h"
#include "model.h"
#include "registry.h"
#include "sampler.h"
#include "synth.h"
#include "transcript.h"
#include "tokenizer.h"

/* Prefill runs in chunks of this many tokens so that a cancel is honoured
 * quickly even in a long prompt, and the backend's scratch stays bounded. */
#define PREFILL_CHUNK 256
/* Largest context accepted: beyond this the KV cache alone is absurd for the
 * models we run, and the request is almost certainly a typo. */
#define MAX_CTX (1 << 20)
/* What an engine without a vocabulary (a synthetic model, in memory or
 * written without --tokenizer-from) says when asked to chat or tokenize. */
#define NO_TOKENIZER                                                                            \
    "this synthetic model has no tokenizer: it can only be benchmarked; write it to a file "   \
    "with a real tokenizer (kvchat synth SHAPE:TYPE -o FILE --tokenizer-from MODEL) to chat"

struct local_engine {
    struct engine base; /* info lives here */
    struct model *model;         /* owned */
    bool synthetic;              /* model from engine_params.synthetic: no tokenizer */
    struct tokenizer *tok;       /* owned; NULL when synthetic or the file has no vocabulary */
    struct chat_template tmpl;
    char tmpl_default_system[2048];
    /* Control tokens that belong to the reply's text (chat_reply_controls):
     * written into it, and never the end of the turn. */
    int32_t reply_ctl[8];
    size_t n_reply_ctl;
    const struct backend_ops *bops; /* the compute backend */
    void *be;                    /* owned backend state */
    struct sampler *sampler;     /* owned */

    /* conversation */
    struct transcript conv;      /* system NULL = the template's default */
    size_t first_visible;        /* older messages were dropped to fit the context */

    /* KV cache contents */
    int32_t *kv_tokens;          /* owned, n_ctx */
    int32_t n_kv;

    float *logits;               /* owned, n_vocab */
    int32_t *prompt;             /* owned, n_ctx: scratch for the rendered prompt */

    atomic_bool cancel;
    pthread_mutex_t stats_lock;  /* guards stats */
    struct engine_stats stats;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads every page of the weights once, reporting progress, so that loading
 * shows real progress and the first turn does not stall on page faults. */
static void prefault_weights(const struct model *m, const struct engine_params *p)
{
    const struct gguf *g = m->file;
    uint64_t total = 0, done = 0;
    int64_t n = gguf_n_tensors(g);
    for (int64_t i = 0; i < n; i++)
        total += gguf_tensor(g, i)->nbytes;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        page = 4096;
    volatile uint8_t sink = 0;
    uint64_t last_report = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        const uint8_t *d = t->data;
        for (uint64_t off = 0; off < t->nbytes; off += (uint64_t)page)
            sink ^= d[off];
        done += t->nbytes;
        if (p->progress && (done - last_report >= (16u << 20) || done == total)) {
            p->progress(done, total, p->progress_user);
            last_report = done;
        }
    }
    (void)sink;
    if (p->progress && total == 0)
        p->progress(0, 0, p->progress_user);
}

/* What the engine does right before a backend is created: a backend that
 * computes from the file mapping gets its pages read first (with progress);
 * synthetic weights were just written, so they are resident already. */
struct prepare_ctx {
    const struct model *m;
    const struct engine_params *p;
    bool synthetic;
};

static void before_create(const struct backend_ops *ops, void *user)
{
    const struct prepare_ctx *c = user;
    if (ops->host_weights && !c->synthetic)
        prefault_weights(c->m, c->p);
}

static int32_t default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int32_t)n : 1;
}

/* False for a file that says it has no vocabulary (tokenizer.ggml.model
 * "none", as kvchat synth writes without --tokenizer-from): the engine then
 * runs forward passes only, like an in-memory synthetic model. A file with
 * no such key at all is damaged, and tok_new says so. */
static bool has_vocabulary(const struct gguf *g)
{
    struct gguf_str ms;
    return !gguf_get_str(g, "tokenizer.ggml.model", &ms) || !gguf_str_eq(ms, SYNTH_NO_VOCABULARY);
}

/* The tokenizer and the chat template of a model file (a synthetic model has
 * neither). Returns 0 or -1 with ERR. */
static int load_tokenizer(struct local_engine *e, const struct engine_params *p, char *err,
                          size_t errlen)
{
    const struct model_hparams *hp = &e->model->hp;
    e->tok = tok_new(e->model->file, err, errlen);
    if (!e->tok)
        return -1;
    if (tok_n_vocab(e->tok) != hp->n_vocab) {
        kv_seterr(err, errlen, "%s: the tokenizer has %d tokens but the embedding table has %d",
               p->model_path, tok_n_vocab(e->tok), hp->n_vocab);
        return -1;
    }

    /* chat template: detected from the file, or forced by name */
    {
        struct gguf_str js = {0};
        char *jinja = NULL;
        if (gguf_get_str(e->model->file, "tokenizer.chat_template", &js)) {
            jinja = malloc(js.len + 1);
            if (!jinja) {
                kv_seterr(err, errlen, "out of memory");
                return -1;
            }
            gguf_str_copy(js, jinja, js.len + 1);
        }
        enum chat_format fallback = hp->arch == MODEL_ARCH_GEMMA3 ? CHAT_FORMAT_GEMMA
                                                                  : CHAT_FORMAT_CHATML;
        chat_detect(jinja, fallback, &e->tmpl, e->tmpl_default_system,
                    sizeof e->tmpl_default_system);
        e->base.info.template_guessed = !jinja || !*jinja;
        free(jinja);
        if (p->chat_template && *p->chat_template) {
            enum chat_format f;
            if (!chat_format_from_name(p->chat_template, &f)) {
                kv_seterr(err, errlen, "unknown chat template '%s' (known: %s)", p->chat_template,
                       chat_format_names());
                return -1;
            }
            if (f != e->tmpl.format) {
                /* a default prompt and variant flags belong to the detected template */
                e->tmpl.default_system = NULL;
                e->tmpl.flags = 0;
            }
            e->tmpl.format = f;
            e->base.info.template_guessed = false;
        }
        chat_template_bind(&e->tmpl, e->tok);
        e->n_reply_ctl = 0;
        const char *const *ctl = chat_reply_controls(e->tmpl.format);
        size_t cap = sizeof e->reply_ctl / sizeof *e->reply_ctl;
        for (size_t i = 0; ctl && ctl[i] && e->n_reply_ctl < cap; i++) {
            int32_t id = tok_lookup(e->tok, ctl[i]);
            if (id >= 0)
                e->reply_ctl[e->n_reply_ctl++] = id;
        }
        e->base.info.think_switch = (e->tmpl.flags & CHAT_FLAG_THINK_SWITCH) != 0;
        if (e->base.info.think_switch && p->think == ENGINE_THINK_OFF)
            e->tmpl.flags |= CHAT_FLAG_THINK_OFF;
    }
    return 0;
}

static void local_free(struct engine *eng);
static const struct engine_ops local_ops;

static bool is_reply_control(const struct local_engine *e, int32_t id)
{
    for (size_t i = 0; i < e->n_reply_ctl; i++)
        if (e->reply_ctl[i] == id)
            return true;
    return false;
}

#define GIB 1073741824.0

/* The context a model gets: WANT, or min(its training context, 4096). */
static int32_t resolve_ctx(int32_t want, int32_t n_ctx_train)
{
    if (want)
        return want;
    return n_ctx_train > 0 && n_ctx_train < 4096 ? n_ctx_train : 4096;
}

/* Bytes of one KV cache element of type T (AUTO is the default, f16), by
 * engine_kv_type: q8_0 is ggml's block of 32 int8 and one f16 scale. The
 * figure used where a backend cannot say what it allocated. */
static double kv_elem_bytes(enum engine_kv_type t)
{
    static const double bytes[] = {
        [ENGINE_KV_AUTO] = 2,
        [ENGINE_KV_F32] = 4,
        [ENGINE_KV_F16] = 2,
        [ENGINE_KV_Q8_0] = 34.0 / 32,
    };
    return (unsigned)t < sizeof bytes / sizeof bytes[0] ? bytes[t] : 2;
}

/* The element bytes of E's cache, from the type it reports (f16 if none). */
static double info_kv_elem_bytes(const struct engine_info *in)
{
    enum engine_kv_type t = ENGINE_KV_AUTO;
    engine_kv_type_from_name(in->kv_type, &t);
    return kv_elem_bytes(t);
}

/* Weighs the synthetic model S as P would run it (weights, and the KV cache
 * at its context) against the memory this process can still take, before a
 * byte of it is made: the weights are all written at once, so a model that
 * does not fit would fill memory first and fail (or be killed) later. The
 * backend's own check (registry.c) then weighs the KV cache and scratch
 * space again against what is left. */
static int synth_fits_memory(const struct synth_spec *s, const struct engine_params *p,
                             char *err, size_t errlen)
{
    uint64_t weights, avail;
    if (synth_weight_bytes(s, &weights, err, errlen) != 0)
        return -1;
    if (hostmem_available(p->mem_root, &avail) != 0)
        return 0; /* unknown: nothing to weigh against */
    const struct synth_shape *sh = &s->shape;
    int32_t n_ctx = resolve_ctx(p->n_ctx, sh->n_ctx_train);
    double esz = kv_elem_bytes(p->kv_type);
    uint64_t kv = (uint64_t)(2.0 * sh->n_layer * n_ctx * sh->n_head_kv * sh->head_dim * esz);
    if (weights + kv <= avail)
        return 0;
    kv_seterr(err, errlen,
              "the synthetic model %s needs %.1f GiB (weights %.1f, KV cache %.1f at %d tokens) "
              "but %.1f GiB is available: choose a smaller shape or type (shapes: %s) or lower "
              "--ctx-size",
              s->name, (double)(weights + kv) / GIB, (double)weights / GIB, (double)kv / GIB,
              n_ctx, (double)avail / GIB, synth_shape_list());
    return -1;
}

struct engine *local_engine_new(const struct engine_params *p, char *err, size_t errlen)
{
    double t0 = now_s();
    bool synthetic = p->synthetic && *p->synthetic;
    if (!synthetic && (!p->model_path || !*p->model_path)) {
        kv_seterr(err, errlen, "no model given: pass -m FILE.gguf");
        return NULL;
    }
    if (p->n_ctx < 0 || p->n_ctx > MAX_CTX) {
        kv_seterr(err, errlen, "context size %d is out of range: use 1..%d tokens", p->n_ctx,
               MAX_CTX);
        return NULL;
    }
    if (p->n_threads < 0 || p->n_threads > 1024) {
        kv_seterr(err, errlen, "thread count %d is out of range: use 0 (all cores) to 1024",
               p->n_threads);
        return NULL;
    }

    struct local_engine *e = calloc(1, sizeof *e);
    if (!e) {
        kv_seterr(err, errlen, "out of memory");
        return NULL;
    }
    e->base.ops = &local_ops;
    pthread_mutex_init(&e->stats_lock, NULL);
    atomic_init(&e->cancel, false);

    e->synthetic = synthetic;
    if (synthetic) {
        struct synth_spec spec;
        if (synth_parse(p->synthetic, &spec, err, errlen) == 0 &&
            synth_fits_memory(&spec, p, err, errlen) == 0)
            e->model = model_new_synthetic(&spec, err, errlen);
    } else {
        e->model = model_load(p->model_path, err, errlen);
    }
    if (!e->model)
        goto fail;
    const struct model_hparams *hp = &e->model->hp;

    if (!e->synthetic && has_vocabulary(e->model->file) && load_tokenizer(e, p, err, errlen) != 0)
        goto fail;

    int32_t n_ctx = resolve_ctx(p->n_ctx, hp->n_ctx_train);
    int32_t n_threads = p->n_threads ? p->n_threads : default_threads();
    /* resolved here, so a backend's own default (AUTO in its config) is only
     * what tests that build a config by hand get */
    enum engine_kv_type kv_type = p->kv_type == ENGINE_KV_AUTO ? ENGINE_KV_F16 : p->kv_type;
    if ((unsigned)kv_type > ENGINE_KV_Q8_0) {
        kv_seterr(err, errlen, "unknown KV cache type %d: use f32, f16 or q8_0", (int)kv_type);
        goto fail;
    }

    struct engine_info *in = &e->base.info;
    struct prepare_ctx prep = {.m = e->model, .p = p, .synthetic = synthetic};
    struct backend_request rq = {
        .want = p->backend,
        .model = e->model,
        .cfg = {.n_ctx = n_ctx, .n_threads = n_threads, .kv_type = kv_type},
        .before_create = before_create,
        .user = &prep,
        .mem_root = p->mem_root,
    };
    struct backend_opened bo;
    if (backend_open(&rq, &bo, err, errlen) != 0)
        goto fail;
    e->bops = bo.ops;
    e->be = bo.state;
    snprintf(in->backend_note, sizeof in->backend_note, "%s", bo.note);
    if (hp->n_ctx_train > 0 && n_ctx > hp->n_ctx_train)
        snprintf(in->warning, sizeof in->warning,
                 "--ctx-size %d is longer than the %d tokens this model was trained for: "
                 "replies past that length may degrade",
                 n_ctx, hp->n_ctx_train);

    e->sampler = sampler_new(hp->n_vocab, &(struct engine_sampling){0});
    e->kv_tokens = malloc(sizeof *e->kv_tokens * (size_t)n_ctx);
    e->prompt = malloc(sizeof *e->prompt * (size_t)n_ctx);
    e->logits = malloc(sizeof *e->logits * (size_t)hp->n_vocab);
    if (!e->sampler || !e->kv_tokens || !e->prompt || !e->logits) {
        kv_seterr(err, errlen, "out of memory");
        goto fail;
    }

    snprintf(in->model_name, sizeof in->model_name, "%s", e->model->name);
    if (synthetic)
        snprintf(in->model_path, sizeof in->model_path, "synthetic:%s", p->synthetic);
    else
        snprintf(in->model_path, sizeof in->model_path, "%s", p->model_path);
    in->synthetic = synthetic;
    in->no_vocabulary = !e->tok;
    snprintf(in->arch, sizeof in->arch, "%s", model_arch_name(hp->arch));
    snprintf(in->backend, sizeof in->backend, "%s", e->bops->name);
    snprintf(in->device, sizeof in->device, "%s", e->bops->device_name(e->be));
    snprintf(in->template_name, sizeof in->template_name, "%s",
             e->tok ? chat_format_name(e->tmpl.format) : "none");
    snprintf(in->kv_type, sizeof in->kv_type, "%s", engine_kv_type_name(kv_type));
    in->n_vocab = hp->n_vocab;
    in->n_embd = hp->n_embd;
    in->n_layer = hp->n_layer;
    in->n_head = hp->n_head;
    in->n_head_kv = hp->n_head_kv;
    in->n_ff = hp->n_ff;
    in->n_ctx = n_ctx;
    in->n_ctx_train = hp->n_ctx_train;
    in->n_threads = n_threads;
    in->n_params = e->model->n_params;
    in->file_bytes = e->model->file ? gguf_file_size(e->model->file) : 0;
    in->weight_bytes = e->model->weight_bytes;
    in->bytes_per_token = e->model->bytes_per_token;
    in->load_seconds = now_s() - t0;

    e->stats.kv_capacity = n_ctx;
    return &e->base;

fail:
    local_free(&e->base);
    return NULL;
}

static void local_free(struct engine *eng)
{
    struct local_engine *e = (struct local_engine *)eng;
    if (e->be)
        e->bops->destroy(e->be);
    sampler_free(e->sampler);
    tok_free(e->tok);
    model_free(e->model);
    transcript_free(&e->conv);
    free(e->kv_tokens);
    free(e->prompt);
    free(e->logits);
    pthread_mutex_destroy(&e->stats_lock);
    free(e);
}

static int local_set_system(struct engine *eng, const char *system)
{
    return transcript_set_system(&((struct local_engine *)eng)->conv, system);
}

static void local_reset(struct engine *eng)
{
    struct local_engine *e = (struct local_engine *)eng;
    transcript_clear(&e->conv);
    e->first_visible = 0;
    /* The KV cache keeps its contents: a new conversation with the same system
     * prompt reuses the shared prefix. */
}

static int local_load_transcript(struct engine *eng, const struct engine_message *msgs, size_t n)
{
    struct local_engine *e = (struct local_engine *)eng;
    e->first_visible = 0;
    return transcript_load_as(&e->conv, msgs, n, e->tmpl.format);
}

static bool local_pop_turn(struct engine *eng)
{
    struct local_engine *e = (struct local_engine *)eng;
    if (!transcript_pop_turn(&e->conv))
        return false;
    if (e->first_visible > e->conv.n)
        e->first_visible = e->conv.n;
    return true;
}

/* Renders messages FROM..conv.n (with the system prompt) and tokenizes them
 * into e->prompt. Returns the token count, which may exceed n_ctx (then only
 * the count is meaningful), or -1 on failure. */
static int64_t render_prompt(struct local_engine *e, size_t from, char *err, size_t errlen)
{
    if (!e->tok) {
        kv_seterr(err, errlen, NO_TOKENIZER);
        return -1;
    }
    size_t n = e->conv.n - from + 1;
    struct chat_message *cm = malloc(n * sizeof *cm);
    if (!cm) {
        kv_seterr(err, errlen, "out of memory");
        return -1;
    }
    size_t k = 0;
    const char *sys = e->conv.system ? e->conv.system : e->tmpl.default_system;
    if (sys && *sys)
        cm[k++] = (struct chat_message){CHAT_ROLE_SYSTEM, sys};
    for (size_t i = from; i < e->conv.n; i++) {
        const struct transcript_msg *m = &e->conv.msgs[i];
        enum chat_role r = m->role == ENGINE_ROLE_USER ? CHAT_ROLE_USER : CHAT_ROLE_ASSISTANT;
        cm[k++] = (struct chat_message){r, m->content};
    }

    /* An explicit empty system prompt means "none": the template must not put
     * its default back, so render with a template that has no default. */
    struct chat_template t = e->tmpl;
    if (e->conv.system)
        t.default_system = NULL;

    struct chat_prompt cp;
    if (chat_render(&t, cm, k, true, &cp) != 0) {
        free(cm);
        kv_seterr(err, errlen, "out of memory rendering the prompt");
        return -1;
    }
    int32_t cap = e->base.info.n_ctx;
    char why[256] = "";
    int64_t nt = tok_encode_segments_e(e->tok, cp.segs, cp.n_segs, tok_add_bos(e->tok),
                                       e->prompt, cap, why, sizeof why);
    chat_prompt_free(&cp);
    free(cm);
    if (nt == TOK_ENC_NO_TOKEN)
        kv_seterr(err, errlen, "the %s chat template names a token this model does not have "
                  "(%s); choose another with --chat-template", chat_format_name(t.format), why);
    else if (nt < 0)
        kv_seterr(err, errlen, "could not tokenize the prompt (%s)", why);
    return nt < 0 ? -1 : nt;
}

static void notice(const struct engine_turn_params *tp, const char *fmt, ...)
{
    if (!tp->on_notice)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    tp->on_notice(buf, tp->user);
}

static void stats_update(struct local_engine *e, const struct engine_stats *s)
{
    pthread_mutex_lock(&e->stats_lock);
    e->stats = *s;
    pthread_mutex_unlock(&e->stats_lock);
}

/* Runs prompt tokens FROM..N through the backend in chunks, leaving the last
 * token's logits in e->logits. Returns 0, 1 when cancelled, -1 on error. */
static int prefill(struct local_engine *e, int32_t from, int32_t n,
                   const struct engine_turn_params *tp, char *err, size_t errlen)
{
    if (tp && tp->on_prefill && n > from)
        tp->on_prefill(0, (uint64_t)(n - from), tp->user);
    for (int32_t pos = from; pos < n;) {
        if (atomic_load(&e->cancel))
            return 1;
        int32_t chunk = n - pos < PREFILL_CHUNK ? n - pos : PREFILL_CHUNK;
        if (e->bops->forward(e->be, e->prompt + pos, chunk, pos, e->logits, false, err, errlen) != 0)
            return -1;
        memcpy(e->kv_tokens + pos, e->prompt + pos, sizeof(int32_t) * (size_t)chunk);
        pos += chunk;
        e->n_kv = pos;
        /* the context meter follows the prompt as it is read in, not the
         * count of a cache this prompt replaces */
        pthread_mutex_lock(&e->stats_lock);
        e->stats.kv_used = pos;
        pthread_mutex_unlock(&e->stats_lock);
        if (tp && tp->on_prefill)
            tp->on_prefill((uint64_t)(pos - from), (uint64_t)(n - from), tp->user);
    }
    return 0;
}

/* Appends text to a growing reply buffer. */
struct strbuf {
    char *p;
    size_t len, cap;
};

static int sb_append(struct strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

/* Room a reply needs: what the caller allows, capped at a quarter of the
 * context so that long conversations keep most of their history. */
static int32_t reply_reserve(const struct local_engine *e, int32_t max_tokens)
{
    int32_t reserve = e->base.info.n_ctx / 4;
    if (max_tokens > 0 && max_tokens < reserve)
        reserve = max_tokens;
    return reserve < 1 ? 1 : reserve;
}

/* Drops the oldest visible exchanges (never the system prompt, never the
 * last KEEP messages) until the rendered conversation and RESERVE tokens of
 * reply fit the context, counting them in *DROPPED. Returns the prompt's
 * token count (the prompt is in e->prompt), or -1 when rendering fails
 * (message in ERR). *FITS is false when even the kept messages do not fit. */
static int64_t fit_visible(struct local_engine *e, int32_t reserve, size_t keep, int32_t *dropped,
                           bool *fits, char *err, size_t errlen)
{
    int32_t n_ctx = e->base.info.n_ctx;
    for (;;) {
        int64_t n_prompt = render_prompt(e, e->first_visible, err, errlen);
        if (n_prompt < 0)
            return -1;
        *fits = n_prompt + reserve <= n_ctx;
        size_t fv = e->first_visible;
        if (*fits || fv + keep >= e->conv.n)
            return n_prompt;
        size_t drop = 1;
        if (e->conv.msgs[fv].role == ENGINE_ROLE_USER && fv + 1 + keep < e->conv.n &&
            e->conv.msgs[fv + 1].role == ENGINE_ROLE_ASSISTANT)
            drop = 2;
        e->first_visible += drop;
        (*dropped)++;
    }
}

static int32_t local_fit_context(struct engine *eng, int32_t max_tokens)
{
    struct local_engine *e = (struct local_engine *)eng;
    int32_t dropped = 0;
    bool fits;
    char err[256];
    if (fit_visible(e, reply_reserve(e, max_tokens), 0, &dropped, &fits, err, sizeof err) < 0)
        return -1;
    return dropped;
}

static int local_chat(struct engine *eng, const char *user_text, const struct engine_turn_params *tp,
                char **reply, char *err, size_t errlen)
{
    struct local_engine *e = (struct local_engine *)eng;
    if (reply)
        *reply = NULL;
    if (!e->tok) {
        kv_seterr(err, errlen, NO_TOKENIZER);
        return -1;
    }
    atomic_store(&e->cancel, false);
    struct engine_stats st = {0};
    st.kv_capacity = e->base.info.n_ctx;
    st.running = true;
    st.kv_used = e->n_kv;
    stats_update(e, &st);
    double t_start = now_s();

    /* No token covers more than the longest token's bytes, so a message too
     * long for the context shows it by its length alone: refuse it before
     * the template copies it and the tokenizer spends seconds on it. */
    int32_t n_ctx = e->base.info.n_ctx;
    size_t msg_bytes = strlen(user_text);
    int64_t least = tok_min_tokens(e->tok, user_text, msg_bytes);
    int32_t room = n_ctx - reply_reserve(e, tp->max_tokens);
    if (least > room) {
        kv_seterr(err, errlen,
                  "the message is too long for the context: its %zu bytes make at least %lld "
                  "tokens (no token is longer than %u bytes) and the context of %d holds %d "
                  "beside the reply: shorten it or raise --ctx-size",
                  msg_bytes, (long long)least, tok_longest(e->tok), n_ctx, room);
        goto fail_nomsg;
    }

    if (transcript_push(&e->conv, ENGINE_ROLE_USER, user_text) != 0) {
        kv_seterr(err, errlen, "out of memory");
        goto fail_nomsg;
    }

    bool fits;
    int64_t n_prompt = fit_visible(e, reply_reserve(e, tp->max_tokens), 1, &st.turns_dropped,
                                   &fits, err, errlen);
    if (n_prompt < 0)
        goto fail;
    if (!fits) {
        kv_seterr(err, errlen,
                  "the message is too long for the context (%lld tokens, context %d): shorten "
                  "it or raise --ctx-size",
                  (long long)n_prompt, n_ctx);
        transcript_drop_last(&e->conv);
        goto fail_nomsg;
    }
    if (st.turns_dropped)
        notice(tp,
               "context full: dropped the %d oldest turn%s to fit %d tokens (the system "
               "prompt is kept)",
               st.turns_dropped, st.turns_dropped == 1 ? "" : "s", n_ctx);

    /* Reuse the cached prefix; always recompute at least the last token so
     * there are logits to sample from. */
    int32_t common = 0;
    while (common < e->n_kv && common < n_prompt && e->kv_tokens[common] == e->prompt[common])
        common++;
    if (common == n_prompt && common > 0)
        common--;
    st.prompt_tokens = (int32_t)n_prompt;
    st.prefill_tokens = (int32_t)n_prompt - common;
    e->n_kv = common;

    if (sampler_set_params(e->sampler, &tp->sampling) != 0) {
        kv_seterr(err, errlen, "out of memory for the repetition penalty's window");
        goto fail;
    }
    sampler_reset_history(e->sampler);
    for (int32_t i = 0; i < n_prompt; i++)
        sampler_accept(e->sampler, e->prompt[i]);

    double t_prefill = now_s();
    int rc = prefill(e, common, (int32_t)n_prompt, tp, err, errlen);
    if (rc < 0)
        goto fail;
    double t_prefill_end = now_s();
    if (st.prefill_tokens > 0 && t_prefill_end > t_prefill)
        st.prefill_tok_s = st.prefill_tokens / (t_prefill_end - t_prefill);
    st.kv_used = e->n_kv;
    stats_update(e, &st);

    struct strbuf out = {0};
    struct tok_stream *ts = tok_stream_new(e->tok);
    if (!ts || sb_append(&out, "", 0) != 0) {
        tok_stream_free(ts);
        free(out.p);
        kv_seterr(err, errlen, "out of memory");
        goto fail;
    }
    /* the reply goes on from what the generation prompt left open */
    const char *opened = chat_reply_prefix(&e->tmpl);
    if (*opened && rc == 0) {
        if (sb_append(&out, opened, strlen(opened)) != 0) {
            tok_stream_free(ts);
            free(out.p);
            kv_seterr(err, errlen, "out of memory");
            goto fail;
        }
        if (tp->on_piece && !tp->on_piece(opened, strlen(opened), tp->user))
            atomic_store(&e->cancel, true);
    }
    st.stop = rc == 1 ? ENGINE_STOP_CANCELLED : ENGINE_STOP_LENGTH;
    double t_first = 0, t_decode = now_s();
    bool failed = false;
    /* A backend that samples on its device returns the next id with the
     * forward pass (backend.h, sample): no logits cross to the host. */
    int32_t next = -1;
    bool have_next = false, next_nonfinite = false;
    while (rc == 0) {
        if (atomic_load(&e->cancel)) {
            st.stop = ENGINE_STOP_CANCELLED;
            break;
        }
        if (tp->max_tokens > 0 && st.gen_tokens >= tp->max_tokens) {
            st.stop = ENGINE_STOP_LENGTH;
            break;
        }
        int32_t id = have_next ? next : sampler_sample(e->sampler, e->logits);
        if (have_next ? next_nonfinite : sampler_saw_nonfinite(e->sampler)) {
            kv_seterr(err, errlen, "%s: the model produced non-finite logits: the file is "
                      "damaged (re-download it)", e->base.info.model_path);
            failed = true;
            break;
        }
        if (st.gen_tokens == 0) {
            t_first = now_s();
            st.ttft_s = t_first - t_start;
            t_decode = t_first;
        }
        bool in_reply = is_reply_control(e, id);
        if (tok_is_eog(e->tok, id) && !in_reply) {
            st.stop = ENGINE_STOP_EOS;
            break;
        }
        st.gen_tokens++;
        sampler_accept(e->sampler, id);
        if (tp->on_token) {
            char own[128];
            size_t no = tok_piece(e->tok, id, own, sizeof own);
            tp->on_token(id, own, no < sizeof own ? no : sizeof own - 1, tp->user);
        }
        const char *piece;
        size_t np = tok_stream_push(ts, id, &piece);
        if (tok_stream_failed(ts)) {
            kv_seterr(err, errlen, "out of memory");
            failed = true;
            break;
        }
        if (in_reply) {
            /* a control token's text is empty to the stream: the header's
             * text is the piece (after what the stream had ready) */
            if (np && sb_append(&out, piece, np) != 0) {
                kv_seterr(err, errlen, "out of memory");
                failed = true;
                break;
            }
            if (np && tp->on_piece && !tp->on_piece(piece, np, tp->user))
                atomic_store(&e->cancel, true);
            piece = tok_text(e->tok, id);
            np = strlen(piece);
        }
        if (np) {
            if (sb_append(&out, piece, np) != 0) {
                kv_seterr(err, errlen, "out of memory");
                failed = true;
                break;
            }
            if (tp->on_piece && !tp->on_piece(piece, np, tp->user)) {
                atomic_store(&e->cancel, true);
            }
        }
        if (e->n_kv >= n_ctx) {
            st.stop = ENGINE_STOP_LENGTH;
            break;
        }
        struct backend_sample plan;
        have_next = e->bops->sample && sampler_plan(e->sampler, &plan) == 0;
        if (have_next ? e->bops->sample(e->be, id, e->n_kv, &plan, &next, &next_nonfinite, err,
                                        errlen) != 0
                      : e->bops->forward(e->be, &id, 1, e->n_kv, e->logits, false, err,
                                         errlen) != 0) {
            failed = true;
            break;
        }
        e->kv_tokens[e->n_kv++] = id;
        double t = now_s();
        st.kv_used = e->n_kv;
        if (st.gen_tokens > 1 && t > t_decode)
            st.decode_tok_s = (st.gen_tokens - 1) / (t - t_decode);
        stats_update(e, &st);
    }
    const char *tail;
    size_t nt = tok_stream_flush(ts, &tail);
    if (nt && sb_append(&out, tail, nt) == 0) {
        if (tp->on_piece)
            tp->on_piece(tail, nt, tp->user);
    } else if (nt || tok_stream_failed(ts)) {
        if (!failed)
            kv_seterr(err, errlen, "out of memory");
        failed = true;
    }
    tok_stream_free(ts);

    /* The reply joins the conversation even when cut short, so the next turn
     * sees what the user saw. */
    if (transcript_push(&e->conv, ENGINE_ROLE_ASSISTANT, out.p) != 0) {
        kv_seterr(err, errlen, "out of memory");
        failed = true;
    }
    if (reply)
        *reply = out.p;
    else
        free(out.p);

    st.total_s = now_s() - t_start;
    st.kv_used = e->n_kv;
    st.running = false;
    if (failed)
        st.stop = ENGINE_STOP_ERROR;
    stats_update(e, &st);
    return failed ? -1 : 0;

fail:
    /* the user message stays out of the conversation if nothing was generated */
    transcript_drop_last(&e->conv);
fail_nomsg:
    st.running = false;
    st.stop = ENGINE_STOP_ERROR;
    st.total_s = now_s() - t_start;
    stats_update(e, &st);
    return -1;
}

static void local_cancel(struct engine *eng)
{
    struct local_engine *e = (struct local_engine *)eng;
    atomic_store(&e->cancel, true);
}

static void local_stats(struct engine *eng, struct engine_stats *out)
{
    struct local_engine *e = (struct local_engine *)eng;
    pthread_mutex_lock(&e->stats_lock);
    *out = e->stats;
    pthread_mutex_unlock(&e->stats_lock);
}

static void local_memory(struct engine *eng, struct engine_memory *out)
{
    struct local_engine *e = (struct local_engine *)eng;
    e->bops->memory(e->be, out);
}

/* Adds tensor T's bytes to its type's slot of BY_TYPE (GGML_TYPE_COUNT). */
static void map_add_type(uint64_t *by_type, const struct model_tensor *t)
{
    if (t->data && (unsigned)t->type < GGML_TYPE_COUNT)
        by_type[t->type] += t->nbytes;
}

static uint64_t layer_bytes(const struct model_layer *l, uint64_t *by_type)
{
    const struct model_tensor *ts[] = {&l->attn_norm, &l->wq, &l->wk, &l->wv, &l->bq, &l->bk,
                                       &l->bv, &l->q_norm, &l->k_norm, &l->wo,
                                       &l->post_attn_norm, &l->ffn_norm, &l->ffn_gate,
                                       &l->ffn_up, &l->ffn_down, &l->post_ffw_norm,
                                       &l->ffn_gate_inp, &l->ffn_gate_exps, &l->ffn_up_exps,
                                       &l->ffn_down_exps, &l->ffn_gate_inp_shexp,
                                       &l->ffn_gate_shexp, &l->ffn_up_shexp, &l->ffn_down_shexp};
    uint64_t sum = 0;
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        if (!ts[i]->data)
            continue;
        sum += ts[i]->nbytes;
        map_add_type(by_type, ts[i]);
    }
    return sum;
}

static void local_memory_map(struct engine *eng, struct engine_memory_map *out)
{
    struct local_engine *e = (struct local_engine *)eng;
    const struct model *m = e->model;
    const struct model_hparams *hp = &m->hp;
    uint64_t by_type[GGML_TYPE_COUNT] = {0};
    out->known = true;
    out->n_layer = hp->n_layer;
    out->n_ctx = e->base.info.n_ctx;
    out->swa_window = hp->swa_window;
    snprintf(out->kv_type, sizeof out->kv_type, "%s", e->base.info.kv_type);

    out->embeddings = m->tok_embd.data ? m->tok_embd.nbytes : 0;
    map_add_type(by_type, &m->tok_embd);
    bool tied = m->output.data == m->tok_embd.data;
    out->output = (tied ? 0 : m->output.nbytes) + (m->output_norm.data ? m->output_norm.nbytes : 0) +
                  (m->rope_freqs.data ? m->rope_freqs.nbytes : 0);
    if (!tied)
        map_add_type(by_type, &m->output);
    map_add_type(by_type, &m->output_norm);
    map_add_type(by_type, &m->rope_freqs);
    out->weights = out->embeddings + out->output;

    /* Groups of 8 layers, or wider so that ENGINE_MAP_GROUPS cover them all. */
    int32_t per = 8;
    while ((hp->n_layer + per - 1) / per > ENGINE_MAP_GROUPS)
        per *= 2;
    for (int32_t il = 0; il < hp->n_layer; il++) {
        int32_t g = il / per;
        if (g >= out->n_groups) {
            out->n_groups = g + 1;
            out->groups[g].first = il;
        }
        out->groups[g].last = il;
        uint64_t b = layer_bytes(&m->layers[il], by_type);
        out->groups[g].bytes += b;
        out->weights += b;
    }

    /* Types, largest first; what does not fit is the last row, "other". */
    for (;;) {
        int best = -1;
        for (int t = 0; t < GGML_TYPE_COUNT; t++)
            if (by_type[t] && (best < 0 || by_type[t] > by_type[best]))
                best = t;
        if (best < 0)
            break;
        int32_t k = out->n_types;
        if (k == ENGINE_MAP_TYPES - 1 && by_type[best]) {
            uint64_t rest = 0;
            int n_rest = 0;
            for (int t = 0; t < GGML_TYPE_COUNT; t++)
                if (by_type[t])
                    rest += by_type[t], n_rest++;
            snprintf(out->by_type[k].type, sizeof out->by_type[k].type, "%s",
                     n_rest == 1 ? quant_type_name((enum ggml_type)best) : "other");
            out->by_type[k].bytes = rest;
            out->n_types = k + 1;
            break;
        }
        snprintf(out->by_type[k].type, sizeof out->by_type[k].type, "%s",
                 quant_type_name((enum ggml_type)best));
        out->by_type[k].bytes = by_type[best];
        out->n_types = k + 1;
        by_type[best] = 0;
    }

    /* The KV cache: from the backend's own size, so the type is the one it
     * really stores. */
    struct engine_memory mem;
    e->bops->memory(e->be, &mem);
    out->kv_pos_elems = 2ull * (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim;
    out->kv_pos_bytes = mem.kv_cache != ENGINE_UNKNOWN && mem.kv_cache > 0 && out->n_ctx > 0
                            ? mem.kv_cache / ((uint64_t)out->n_ctx * (uint64_t)hp->n_layer)
                            : (uint64_t)((double)out->kv_pos_elems *
                                         info_kv_elem_bytes(&e->base.info));
    pthread_mutex_lock(&e->stats_lock);
    out->kv_tokens = e->stats.kv_used;
    pthread_mutex_unlock(&e->stats_lock);
    for (int32_t il = 0; il < hp->n_layer; il++) {
        bool swa = m->layers[il].swa && hp->swa_window > 0;
        int32_t used = out->kv_tokens;
        if (swa && used > hp->swa_window)
            used = hp->swa_window;
        out->n_swa_layers += swa;
        int32_t k = il < ENGINE_MAP_LAYERS ? il : ENGINE_MAP_LAYERS - 1;
        out->layers[k].reserved += (uint64_t)out->n_ctx * out->kv_pos_bytes;
        out->layers[k].used += (uint64_t)used * out->kv_pos_bytes;
        out->layers[k].swa = swa;
    }
}

static int32_t *local_tokenize(const struct engine *eng, const char *text, bool add_bos, int64_t *n)
{
    const struct local_engine *e = (const struct local_engine *)eng;
    if (!e->tok)
        return NULL;
    /* sized as it goes: a guess from the length would be wrong one way or the
     * other (four bytes of ids per byte of text, or too few for byte tokens) */
    return tok_encode_alloc(e->tok, text, strlen(text), add_bos && tok_add_bos(e->tok), n, NULL, 0);
}

static size_t local_token_piece(const struct engine *eng, int32_t id, char *buf, size_t cap)
{
    const struct local_engine *e = (const struct local_engine *)eng;
    if (!e->tok || id < 0 || id >= e->base.info.n_vocab) {
        if (cap)
            buf[0] = 0;
        return 0;
    }
    return tok_piece(e->tok, id, buf, cap);
}

static int local_forward(struct engine *eng, const int32_t *tokens, int32_t n, int32_t pos,
                   float *logits, bool all_logits, char *err, size_t errlen)
{
    struct local_engine *e = (struct local_engine *)eng;
    if (n <= 0 || pos < 0 || pos + n > e->base.info.n_ctx) {
        kv_seterr(err, errlen, "%d tokens at position %d do not fit the context of %d", n, pos,
               e->base.info.n_ctx);
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= e->base.info.n_vocab) {
            kv_seterr(err, errlen, "token id %d is outside the vocabulary (0..%d)", tokens[i],
                   e->base.info.n_vocab - 1);
            return -1;
        }
    }
    /* raw use invalidates the conversation's view of the cache */
    e->n_kv = 0;
    return e->bops->forward(e->be, tokens, n, pos, logits, all_logits, err, errlen);
}

static uint64_t local_bytes_per_token(struct engine *eng, int32_t n_past)
{
    struct local_engine *e = (struct local_engine *)eng;
    const struct model *m = e->model;
    const struct model_hparams *hp = &m->hp;
    struct engine_memory mem;
    e->bops->memory(e->be, &mem);
    /* K and V bytes of one position of one layer: from the backend's own
     * cache size when it reports one, else from the element type */
    double per_pos = mem.kv_cache != ENGINE_UNKNOWN && mem.kv_cache > 0
                         ? (double)mem.kv_cache / ((double)e->base.info.n_ctx * hp->n_layer)
                         : 2.0 * hp->n_head_kv * hp->head_dim *
                               info_kv_elem_bytes(&e->base.info);
    int64_t seen = (int64_t)n_past + 1; /* the new token's own K/V included */
    double kv = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        int64_t nread = seen;
        if (m->layers[il].swa && hp->swa_window > 0 && nread > hp->swa_window)
            nread = hp->swa_window;
        kv += per_pos * (double)nread;
    }
    return m->bytes_per_token + (uint64_t)kv;
}

static int local_measure_roofs(struct engine *eng, const struct engine_roofs_params *p,
                               struct engine_roofs *out, char *err, size_t errlen)
{
    struct local_engine *e = (struct local_engine *)eng;
    if (!e->bops->measure_roofs) {
        kv_seterr(err, errlen,
                  "the %s backend has no device probe; its bandwidth is measured from the host "
                  "(or give --mem-bandwidth)",
                  e->bops->name);
        return -1;
    }
    return e->bops->measure_roofs(e->be, p, out, err, errlen);
}

/* Weighs writing the synthetic model S to PATH: the weights twice in memory
 * (the model and the writer's copy) against what this process can still
 * take, and the file against the free space of PATH's file system, before
 * anything is built or written. */
static int synth_fits_writing(const struct synth_spec *s, const char *path, const char *mem_root,
                              char *err, size_t errlen)
{
    uint64_t weights, avail;
    if (synth_weight_bytes(s, &weights, err, errlen) != 0)
        return -1;
    if (hostmem_available(mem_root, &avail) == 0 && 2 * weights > avail) {
        kv_seterr(err, errlen,
                  "writing the synthetic model %s needs %.1f GiB of memory (its %.1f GiB of "
                  "weights twice: the model and the file's copy) but %.1f GiB is available: "
                  "choose a smaller shape or type (shapes: %s)",
                  s->name, (double)(2 * weights) / GIB, (double)weights / GIB,
                  (double)avail / GIB, synth_shape_list());
        return -1;
    }
    char dir[4096]; /* the folder PATH goes in */
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash == path ? 1 : slash - path), path);
    struct statvfs fs;
    if (statvfs(dir, &fs) == 0) {
        uint64_t free_bytes = (uint64_t)fs.f_bavail * (uint64_t)fs.f_frsize;
        if (weights > free_bytes) {
            kv_seterr(err, errlen,
                      "%s: the synthetic model %s needs %.1f GiB of disk but %s has %.1f GiB "
                      "free: choose a smaller shape or type, or write it elsewhere",
                      path, s->name, (double)weights / GIB, dir, (double)free_bytes / GIB);
            return -1;
        }
    }
    return 0;
}

int engine_write_synthetic(const char *spec_text, const char *tokenizer_from, const char *path,
                           const char *mem_root, char *err, size_t errlen)
{
    struct synth_spec spec;
    if (synth_parse(spec_text, &spec, err, errlen) != 0)
        return -1;
    if (synth_fits_writing(&spec, path, mem_root, err, errlen) != 0)
        return -1;
    struct gguf *tok = NULL;
    if (tokenizer_from && *tokenizer_from) {
        tok = gguf_open(tokenizer_from, err, errlen);
        if (!tok)
            return -1;
        /* check before building gigabytes of weights */
        if (synth_check_tokenizer(&spec, tok, err, errlen) != 0) {
            gguf_close(tok);
            return -1;
        }
    }
    struct model *m = model_new_synthetic(&spec, err, errlen);
    int rc = -1;
    if (m)
        rc = synth_write_gguf(m, &spec, tok, path, err, errlen);
    model_free(m);
    gguf_close(tok);
    return rc;
}

static int local_set_think(struct engine *eng, bool on)
{
    struct local_engine *e = (struct local_engine *)eng;
    if (!(e->tmpl.flags & CHAT_FLAG_THINK_SWITCH))
        return -1;
    if (on)
        e->tmpl.flags &= ~(unsigned)CHAT_FLAG_THINK_OFF;
    else
        e->tmpl.flags |= CHAT_FLAG_THINK_OFF;
    return 0;
}

static const struct engine_ops local_ops = {
    .kind = "local",
    .set_think = local_set_think,
    .free = local_free,
    .set_system = local_set_system,
    .reset = local_reset,
    .load_transcript = local_load_transcript,
    .fit_context = local_fit_context,
    .pop_turn = local_pop_turn,
    .chat = local_chat,
    .cancel = local_cancel,
    .stats = local_stats,
    .memory = local_memory,
    .memory_map = local_memory_map,
    .tokenize = local_tokenize,
    .token_piece = local_token_piece,
    .forward = local_forward,
    .bytes_per_token = local_bytes_per_token,
    .measure_roofs = local_measure_roofs,
};
