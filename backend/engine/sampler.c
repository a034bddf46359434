/* sampler.c - the next token from a row of logits: repetition penalty, then
 * greedy or top-k / temperature / top-p / min-p and a seeded draw.
 *
 * Speed matters at Gemma's 262144-entry vocabulary, where a full sort per
 * token would cost more than a small model's forward pass. With top_k set we
 * select the k best with a bounded min-heap (one pass, almost every logit
 * rejected by a single compare). With top_k off we softmax everything once,
 * then sort only the candidates above a probability floor that is lowered
 * until they hold the top-p mass (usually a few hundred tokens).
 *
 * top-p and min-p each keep a prefix of the candidates in descending order,
 * and min-p's cut is relative to the top probability, which top-p never
 * removes; so the result is the shorter prefix and the order of the two steps
 * does not matter.
 *
 * The RNG is xoshiro256** seeded through splitmix64, owned by the sampler:
 * the same seed and the same logits give the same tokens. A seed is used as
 * given (0 included); callers wanting variety pass a random seed.
 */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct cand {
    float logit; /* after penalty; becomes a probability after softmax */
    int32_t id;
};

struct sampler {
    int32_t n_vocab;
    struct engine_sampling p;
    uint64_t rng[4];      /* xoshiro256** state */
    struct cand *cands;   /* (n_vocab) scratch, allocated once */
    uint32_t *stamp;      /* (n_vocab) last penalty pass that touched each id */
    uint32_t stamp_now;
    int32_t *hist;        /* (hist_cap) ring of accepted ids, for the penalty */
    int32_t hist_cap, hist_len, hist_pos;
    /* The last sampler_sample saw a NaN or infinite logit. Found by the pass
     * that already reads every logit (argmax or the top-k scan): x - x is 0
     * for every finite x and NaN otherwise, so one running sum says it. */
    bool nonfinite;
};

/* The defaults of the public settings live with their implementation. */
struct engine_sampling engine_sampling_defaults(void)
{
    return (struct engine_sampling){
        .temperature = 0.7f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.1f,
        .repeat_last_n = 64,
        .seed = 0,
    };
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct sampler *s)
{
    uint64_t *st = s->rng;
    uint64_t r = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return r;
}

/* Uniform in [0, 1). */
static double rng_unit(struct sampler *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Bad values become the nearest meaningful setting rather than an error: the
 * options layer validates what the user typed, this keeps the maths safe. */
static struct engine_sampling sanitize(const struct engine_sampling *in)
{
    struct engine_sampling p = *in;
    if (!(p.temperature > 0.0f)) /* negative or NaN too */
        p.temperature = 0.0f;
    if (p.top_k < 0)
        p.top_k = 0;
    if (!(p.top_p < 1.0f))
        p.top_p = 1.0f;
    if (!(p.top_p > 0.0f))
        p.top_p = 0.0f; /* keeps just the most likely token */
    if (!(p.min_p > 0.0f))
        p.min_p = 0.0f;
    if (p.min_p > 1.0f)
        p.min_p = 1.0f;
    if (!(p.repeat_penalty > 0.0f))
        p.repeat_penalty = 1.0f;
    if (p.repeat_last_n < 0)
        p.repeat_last_n = 0;
    return p;
}

static void reseed(struct sampler *s)
{
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
}

/* Makes the history ring hold N ids; keeps the newest ones already recorded.
 * On allocation failure the window is clamped to what fits and it returns
 * -1, so the caller can refuse to sample with other settings than asked. */
static int hist_resize(struct sampler *s, int32_t n)
{
    if (n <= s->hist_cap)
        return 0;
    int32_t *h = malloc((size_t)n * sizeof *h);
    if (!h) {
        s->p.repeat_last_n = s->hist_cap;
        return -1;
    }
    for (int32_t i = 0; i < s->hist_len; i++) {
        int32_t src = (s->hist_pos - s->hist_len + i + s->hist_cap) % s->hist_cap;
        h[i] = s->hist[src];
    }
    free(s->hist);
    s->hist = h;
    s->hist_cap = n;
    s->hist_pos = s->hist_len % n;
    return 0;
}

struct sampler *sampler_new(int32_t n_vocab, const struct engine_sampling *p)
{
    if (n_vocab <= 0 || !p)
        return NULL;
    struct sampler *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n_vocab = n_vocab;
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->stamp = calloc((size_t)n_vocab, sizeof *s->stamp);
    if (!s->cands || !s->stamp || sampler_set_params(s, p) != 0) {
        sampler_free(s);
        return NULL;
    }
    return s;
}

void sampler_free(struct sampler *s)
{
    if (!s)
        return;
    free(s->cands);
    free(s->stamp);
    free(s->hist);
    free(s);
}

int sampler_set_params(struct sampler *s, const struct engine_sampling *p)
{
    s->p = sanitize(p);
    int rc = hist_resize(s, s->p.repeat_last_n);
    reseed(s);
    return rc;
}

void sampler_accept(struct sampler *s, int32_t id)
{
    if (s->hist_cap == 0)
        return;
    s->hist[s->hist_pos] = id;
    s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
    if (s->hist_len < s->hist_cap)
        s->hist_len++;
}

void sampler_reset_history(struct sampler *s)
{
    s->hist_len = 0;
    s->hist_pos = 0;
}

/* The penalty's walk over the history: the distinct ids among the last
 * repeat_last_n accepted, newest first, each once (stamped). pen_begin gives
 * how many entries to look at (0: no penalty applies); pen_next, with I
 * counting from 0, the next id not seen yet, or -1 past the end. */
static int32_t pen_begin(struct sampler *s)
{
    int32_t n = s->hist_len < s->p.repeat_last_n ? s->hist_len : s->p.repeat_last_n;
    if (s->p.repeat_penalty == 1.0f || n == 0)
        return 0;
    if (++s->stamp_now == 0) { /* wrapped: old stamps could collide */
        memset(s->stamp, 0, (size_t)s->n_vocab * sizeof *s->stamp);
        s->stamp_now = 1;
    }
    return n;
}

static int32_t pen_next(struct sampler *s, int32_t n, int32_t *i)
{
    while (*i < n) {
        int32_t id = s->hist[(s->hist_pos - 1 - (*i)++ + s->hist_cap) % s->hist_cap];
        if (id < 0 || id >= s->n_vocab || s->stamp[id] == s->stamp_now)
            continue;
        s->stamp[id] = s->stamp_now;
        return id;
    }
    return -1;
}

/* llama.cpp's penalty: each distinct id among the last repeat_last_n accepted
 * has its logit divided by the penalty when positive, multiplied when not. */
static void apply_penalty(struct sampler *s, float *logits)
{
    float pen = s->p.repeat_penalty;
    int32_t n = pen_begin(s), i = 0, id;
    while ((id = pen_next(s, n, &i)) >= 0)
        logits[id] = logits[id] > 0.0f ? logits[id] / pen : logits[id] * pen;
}

/* Candidate order: higher logit first, then lower id (so ties resolve the way
 * greedy does). NaN logits were mapped to -INFINITY before we get here. */
static bool better(const struct cand *a, const struct cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* The best id of X[0..N); sets *NONFINITE when any X is NaN or infinite. */
static int32_t argmax(const float *x, int32_t n, bool *nonfinite)
{
    int32_t best = 0;
    float bv = -INFINITY, z = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        z += x[i] - x[i];
        if (x[i] > bv) { /* strict: ties keep the lowest id; NaN never wins */
            bv = x[i];
            best = i;
        }
    }
    *nonfinite = z != 0.0f; /* NaN compares unequal */
    return best;
}

/* Min-heap on "better" (worst at the root) of the K best candidates. */
static void sift_down(struct cand *h, int32_t k, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && better(&h[w], &h[l]))
            w = l;
        if (r < k && better(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        struct cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* The K best logits into C[0..K), sorted best first; sets *NONFINITE when
 * any logit is NaN or infinite. */
static void select_top_k(const float *logits, int32_t n, int32_t k, struct cand *c,
                         bool *nonfinite)
{
    float z = 0.0f;
    for (int32_t i = 0; i < k; i++) {
        z += logits[i] - logits[i];
        c[i] = (struct cand){.logit = isnan(logits[i]) ? -INFINITY : logits[i], .id = i};
    }
    for (int32_t i = k / 2 - 1; i >= 0; i--)
        sift_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        float v = logits[i];
        z += v - v;
        /* ids only grow, so an equal logit never beats the root */
        if (v > c[0].logit) {
            c[0] = (struct cand){.logit = v, .id = i};
            sift_down(c, k, 0);
        }
    }
    *nonfinite = z != 0.0f;
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
}

/* Softmax of C[0..N) at temperature T, in place (logit -> probability);
 * C[0] holds the largest logit. */
static void softmax(struct cand *c, int32_t n, float t)
{
    float mx = c[0].logit;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        float e = isinf(c[i].logit) && c[i].logit < 0 ? 0.0f : expf((c[i].logit - mx) / t);
        c[i].logit = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int32_t i = 0; i < n; i++)
        c[i].logit *= inv;
}

/* How many of the sorted probabilities C[0..N) top-p and min-p keep (>= 1). */
static int32_t cut(const struct cand *c, int32_t n, float top_p, float min_p)
{
    float floor_p = min_p * c[0].logit;
    double cum = 0.0;
    int32_t keep = 0;
    while (keep < n) {
        if (keep > 0 && c[keep].logit < floor_p)
            break;
        cum += c[keep].logit;
        keep++;
        if (cum >= top_p)
            break;
    }
    return keep > 0 ? keep : 1;
}

static int32_t draw(struct sampler *s, const struct cand *c, int32_t n)
{
    double total = 0.0;
    for (int32_t i = 0; i < n; i++)
        total += c[i].logit;
    double r = rng_unit(s) * total, acc = 0.0;
    for (int32_t i = 0; i < n; i++) {
        acc += c[i].logit;
        if (r < acc)
            return c[i].id;
    }
    return c[n - 1].id; /* r landed on the rounding slack at the end */
}

/* top_k off: softmax over the whole vocabulary, then sort only what can
 * survive top-p and min-p. */
static int32_t sample_full(struct sampler *s, const float *logits)
{
    int32_t n = s->n_vocab;
    struct cand *c = s->cands;
    int32_t best = argmax(logits, n, &s->nonfinite);
    float mx = logits[best], t = s->p.temperature;
    if (!(mx > -INFINITY) || isinf(mx))
        return best; /* nothing finite to weigh, or one infinite favourite */
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        float v = logits[i];
        float e = v > -INFINITY ? expf((v - mx) / t) : 0.0f; /* NaN compares false */
        c[i] = (struct cand){.logit = e, .id = i};
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int32_t i = 0; i < n; i++)
        c[i].logit *= inv;
    float pmax = inv; /* the best token's e is exactly 1 */
    float min_floor = s->p.min_p * pmax;
    if (s->p.top_p >= 1.0f && min_floor <= 0.0f)
        return draw(s, c, n); /* no cut at all: no order needed */
    /* Move candidates at or above FLOOR to the front; lower FLOOR until they
     * hold the top-p mass, or until min-p's own floor is the limit. */
    float floor_p = pmax * 1e-3f;
    int32_t m;
    for (;;) {
        if (floor_p <= min_floor)
            floor_p = min_floor;
        double mass = 0.0;
        m = 0;
        for (int32_t i = 0; i < n; i++) {
            if (c[i].logit >= floor_p && c[i].logit > 0.0f) {
                mass += c[i].logit;
                struct cand tmp = c[i];
                c[i] = c[m];
                c[m++] = tmp;
            }
        }
        if (mass >= s->p.top_p || floor_p <= min_floor || floor_p == 0.0f)
            break;
        floor_p = floor_p > 1e-30f ? floor_p * 1e-3f : 0.0f;
    }
    if (s->p.top_p >= 1.0f)
        return draw(s, c, m); /* min-p alone: the set is final, order irrelevant */
    qsort(c, (size_t)m, sizeof *c, cmp_cand);
    return draw(s, c, cut(c, m, s->p.top_p, s->p.min_p));
}

int32_t sampler_sample(struct sampler *s, float *logits)
{
    apply_penalty(s, logits);
    int32_t n = s->n_vocab;
    if (s->p.temperature <= 0.0f)
        return argmax(logits, n, &s->nonfinite);
    int32_t k = s->p.top_k;
    if (k == 0 || k >= n)
        return sample_full(s, logits);
    struct cand *c = s->cands;
    select_top_k(logits, n, k, c, &s->nonfinite);
    if (!isfinite(c[0].logit))
        return c[0].id; /* nothing finite to weigh, or one infinite favourite */
    softmax(c, k, s->p.temperature);
    int32_t keep = cut(c, k, s->p.top_p, s->p.min_p);
    return draw(s, c, keep);
}

int sampler_plan(struct sampler *s, struct backend_sample *out)
{
    const bool greedy = s->p.temperature <= 0.0f;
    int32_t k = greedy ? 1 : s->p.top_k;
    if (k <= 0 || k > BACKEND_SAMPLE_MAX_K || (!greedy && k >= s->n_vocab))
        return -1;
    /* the ids apply_penalty would touch, in its order */
    int32_t n = pen_begin(s), i = 0, id, np = 0;
    while ((id = pen_next(s, n, &i)) >= 0) {
        if (np == BACKEND_SAMPLE_MAX_PEN)
            return -1; /* the stamps are only a scratch: nothing else changed */
        out->pen[np++] = id;
    }
    out->temperature = greedy ? 0.0f : s->p.temperature;
    out->top_k = k;
    out->top_p = s->p.top_p;
    out->min_p = s->p.min_p;
    out->repeat_penalty = s->p.repeat_penalty;
    out->n_pen = np;
    out->u = greedy ? 0.0 : rng_unit(s);
    return 0;
}

bool sampler_saw_nonfinite(const struct sampler *s)
{
    return s->nonfinite;
}
