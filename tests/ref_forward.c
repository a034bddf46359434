/* ref_forward.c - the naive reference forward pass (see ref_forward.h).
 *
 * Written to be obviously right rather than fast: the architecture rules are
 * decided here from the architecture id (not from the flags model.c derives)
 * and the router's keys read from the file here too, every sum is in
 * double, and attention builds the full masked score row for every query
 * over the whole sequence.
 */
#include "ref_forward.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"
#include "quant.h"

struct ref_layer {
    float *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *q_norm, *k_norm, *wo, *bo, *sinks;
    float *post_attn_norm, *ffn_norm, *gate, *up, *down, *post_ffw_norm;
    /* mixture of experts: router, stacked experts, shared expert */
    float *router, *gate_x, *up_x, *down_x, *sh_gate_inp, *sh_gate, *sh_up, *sh_down;
    /* gpt-oss: the router's bias, and the experts' (a row per expert) */
    float *router_b, *gate_xb, *up_xb, *down_xb;
};

struct ref_model {
    const struct model *m;
    float *tok_embd, *output_norm, *output, *rope_freqs;
    struct ref_layer *layers;
};

static float *deq(const struct model_tensor *t, bool *oom)
{
    if (!t->data)
        return NULL;
    size_t n = (size_t)(t->ne0 * t->ne1);
    float *p = malloc(n * sizeof *p);
    if (!p) {
        *oom = true;
        return NULL;
    }
    size_t row_bytes = quant_row_size(t->type, t->ne0);
    for (int64_t r = 0; r < t->ne1; r++)
        quant_dequantize_row(t->type, (const unsigned char *)t->data + (size_t)r * row_bytes,
                             p + (size_t)r * t->ne0, t->ne0);
    return p;
}

void ref_free(struct ref_model *r)
{
    if (!r)
        return;
    if (r->layers) {
        for (int il = 0; il < r->m->hp.n_layer; il++) {
            struct ref_layer *l = &r->layers[il];
            float *all[] = {l->attn_norm, l->wq, l->wk, l->wv, l->bq, l->bk, l->bv, l->q_norm,
                            l->k_norm, l->wo, l->post_attn_norm, l->ffn_norm, l->gate, l->up,
                            l->down, l->post_ffw_norm, l->router, l->gate_x, l->up_x,
                            l->down_x, l->sh_gate_inp, l->sh_gate, l->sh_up, l->sh_down,
                            l->bo, l->sinks, l->router_b, l->gate_xb, l->up_xb, l->down_xb};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                free(all[i]);
        }
        free(r->layers);
    }
    if (r->output != r->tok_embd)
        free(r->output);
    free(r->tok_embd);
    free(r->output_norm);
    free(r->rope_freqs);
    free(r);
}

struct ref_model *ref_new(const struct model *m)
{
    struct ref_model *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->m = m;
    bool oom = false;
    r->tok_embd = deq(&m->tok_embd, &oom);
    r->output_norm = deq(&m->output_norm, &oom);
    r->output = m->output.data == m->tok_embd.data ? r->tok_embd : deq(&m->output, &oom);
    r->rope_freqs = deq(&m->rope_freqs, &oom);
    r->layers = calloc((size_t)m->hp.n_layer, sizeof *r->layers);
    if (!r->layers) {
        ref_free(r);
        return NULL;
    }
    for (int il = 0; il < m->hp.n_layer; il++) {
        const struct model_layer *s = &m->layers[il];
        struct ref_layer *l = &r->layers[il];
        l->attn_norm = deq(&s->attn_norm, &oom);
        l->wq = deq(&s->wq, &oom);
        l->wk = deq(&s->wk, &oom);
        l->wv = deq(&s->wv, &oom);
        l->bq = deq(&s->bq, &oom);
        l->bk = deq(&s->bk, &oom);
        l->bv = deq(&s->bv, &oom);
        l->q_norm = deq(&s->q_norm, &oom);
        l->k_norm = deq(&s->k_norm, &oom);
        l->wo = deq(&s->wo, &oom);
        l->post_attn_norm = deq(&s->post_attn_norm, &oom);
        l->ffn_norm = deq(&s->ffn_norm, &oom);
        l->gate = deq(&s->ffn_gate, &oom);
        l->up = deq(&s->ffn_up, &oom);
        l->down = deq(&s->ffn_down, &oom);
        l->post_ffw_norm = deq(&s->post_ffw_norm, &oom);
        l->router = deq(&s->ffn_gate_inp, &oom);
        l->gate_x = deq(&s->ffn_gate_exps, &oom);
        l->up_x = deq(&s->ffn_up_exps, &oom);
        l->down_x = deq(&s->ffn_down_exps, &oom);
        l->sh_gate_inp = deq(&s->ffn_gate_inp_shexp, &oom);
        l->sh_gate = deq(&s->ffn_gate_shexp, &oom);
        l->sh_up = deq(&s->ffn_up_shexp, &oom);
        l->sh_down = deq(&s->ffn_down_shexp, &oom);
        l->bo = deq(&s->bo, &oom);
        l->sinks = deq(&s->attn_sinks, &oom);
        l->router_b = deq(&s->ffn_gate_inp_b, &oom);
        l->gate_xb = deq(&s->ffn_gate_exps_b, &oom);
        l->up_xb = deq(&s->ffn_up_exps_b, &oom);
        l->down_xb = deq(&s->ffn_down_exps_b, &oom);
    }
    if (oom) {
        ref_free(r);
        return NULL;
    }
    return r;
}

static void rms(double *out, const double *x, const float *w, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * s * w[i];
}

/* y (rows) = W (rows x cols, row-major) x (cols) + b */
static void matvec(double *y, const float *w, const float *b, const double *x, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double s = b ? b[r] : 0.0;
        for (int i = 0; i < cols; i++)
            s += (double)w[(size_t)r * cols + i] * x[i];
        y[r] = s;
    }
}

/* YaRN (Peng et al. 2023, as ggml's rope_yarn computes it): for pair I the
 * angle THETA (unscaled) and its interpolation SCALE * THETA are mixed by a
 * ramp that is 1 (keep THETA) below the pair that turns beta_fast times in
 * the original context and 0 (interpolate) above the one that turns
 * beta_slow times; *MAG is the magnitude factor on cos and sin. */
static double yarn_angle(const struct model_hparams *hp, int i, double theta, double base,
                         double scale, double *mag)
{
    *mag = 1.0;
    if (!hp->rope_yarn || hp->yarn_ext_factor == 0)
        return theta * scale;
    int n = hp->n_rot;
    double orig = hp->yarn_n_ctx_orig;
    /* dimension d turns pos / base^(d/n) / (2 pi) times: beta turns in orig
     * tokens at d = n ln(orig / (2 pi beta)) / ln base, pair d/2 */
    double lo = floor(n * log(orig / (2 * M_PI * hp->yarn_beta_fast)) / (2 * log(base)));
    double hi = ceil(n * log(orig / (2 * M_PI * hp->yarn_beta_slow)) / (2 * log(base)));
    if (lo < 0)
        lo = 0;
    if (hi > n - 1)
        hi = n - 1;
    double y = (i - lo) / fmax(0.001, hi - lo);
    double ramp = (1 - fmin(1, fmax(0, y))) * hp->yarn_ext_factor;
    *mag = hp->yarn_attn_factor * (1 + 0.1 * log(1 / scale));
    return theta * scale * (1 - ramp) + theta * ramp;
}

/* Rotates one head V (head_dim) at position POS. */
static void rotate(double *v, const struct model_hparams *hp, double pos, double base,
                   double freq_scale, const float *factors, bool neox)
{
    int n_rot = hp->n_rot;
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        double theta = pos * pow(base, -2.0 * i / n_rot);
        if (factors)
            theta /= factors[i];
        double mag;
        theta = yarn_angle(hp, i, theta, base, freq_scale, &mag);
        double c = cos(theta) * mag, s = sin(theta) * mag;
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x1 * c + x0 * s;
    }
}

/* y (E) = down(silu(gate(x)) * up(x)) for one SwiGLU FFN of F hidden units
 * whose matrices start at GATE, UP (F x E) and DOWN (E x F). */
static void swiglu(double *y, const float *gate, const float *up, const float *down,
                   const double *x, int E, int F, double *g, double *u)
{
    matvec(g, gate, NULL, x, F, E);
    matvec(u, up, NULL, x, F, E);
    for (int i = 0; i < F; i++)
        g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
    matvec(y, down, NULL, g, E, F);
}

/* gpt-oss's expert (HF GptOssExperts): biased products, the gate clamped
 * to at most 7 and up to [-7, 7], glu = gate * sigmoid(1.702 gate), and
 * (up + 1) * glu into the biased down product. */
static void swiglu_oai(double *y, const float *gate, const float *gb, const float *up,
                       const float *ub, const float *down, const float *db, const double *x,
                       int E, int F, double *g, double *u)
{
    const double alpha = 1.702, limit = 7.0;
    matvec(g, gate, gb, x, F, E);
    matvec(u, up, ub, x, F, E);
    for (int i = 0; i < F; i++) {
        double a = fmin(g[i], limit), b = fmax(-limit, fmin(u[i], limit));
        g[i] = a / (1.0 + exp(-alpha * a)) * (b + 1.0);
    }
    matvec(y, down, db, g, E, F);
}

/* The router as llama.cpp's build_moe_ffn computes it: GATING in the
 * file's numbering (1 softmax over all experts, 2 sigmoid of each, 3 the
 * logits as they are and a softmax over the chosen), the top-k of those
 * probabilities, NORM dividing the chosen weights by their sum (at least
 * 2^-14, llama.cpp's clamp), then SCALE. */
struct ref_router {
    int gating;
    bool norm;
    double scale;
};

/* The architecture's router, then the file's keys over it, read here from
 * the file itself (a synthetic model has none: the defaults then). */
static struct ref_router router_of(const struct model *m)
{
    enum model_arch a = m->hp.arch;
    struct ref_router rt = {.gating = a == MODEL_ARCH_GPT_OSS ? 3 : 1,
                            .norm = a == MODEL_ARCH_QWEN3MOE,
                            .scale = 1.0};
    if (!m->file)
        return rt;
    char key[96];
    int64_t g;
    snprintf(key, sizeof key, "%s.expert_gating_func", model_arch_name(a));
    if (gguf_get_int(m->file, key, &g) && g != 0)
        rt.gating = (int)g;
    snprintf(key, sizeof key, "%s.expert_weights_norm", model_arch_name(a));
    bool b;
    if (gguf_get_bool(m->file, key, &b))
        rt.norm = b;
    snprintf(key, sizeof key, "%s.expert_weights_scale", model_arch_name(a));
    double sc;
    if (gguf_get_float(m->file, key, &sc) && sc != 0.0) /* 0: no scale */
        rt.scale = sc;
    return rt;
}

/* The mixture-of-experts FFN of layer L on the normed input X (E) into Y:
 * RT's weights of the K most probable experts (ties to the lower index),
 * their SwiGLU outputs (gpt-oss's clamped, biased one when OSS) summed with
 * those weights, plus the shared expert times the sigmoid of its gate when
 * the layer has one. */
static int moe(double *y, const struct ref_layer *l, const struct model_hparams *hp,
               const double *x, const struct ref_router *rt, bool oss)
{
    int E = hp->n_embd, NE = hp->n_expert, K = hp->n_expert_used, FX = hp->n_ff_exp;
    int FS = hp->n_ff_shexp, FM = FX > FS ? FX : FS;
    double *lg = calloc((size_t)NE, sizeof *lg), *p = calloc((size_t)NE, sizeof *p);
    double *ye = calloc((size_t)E, sizeof *ye), *wt = calloc((size_t)K, sizeof *wt);
    double *g = calloc((size_t)FM, sizeof *g), *u = calloc((size_t)FM, sizeof *u);
    bool *taken = calloc((size_t)NE, sizeof *taken);
    int *sel = calloc((size_t)K, sizeof *sel);
    int rc = -1;
    if (!lg || !p || !ye || !wt || !g || !u || !taken || !sel)
        goto out;
    matvec(lg, l->router, l->router_b, x, NE, E);
    /* the probabilities the experts are chosen by */
    double mx = -INFINITY, sum = 0;
    for (int e = 0; e < NE; e++)
        mx = lg[e] > mx ? lg[e] : mx;
    for (int e = 0; e < NE; e++) {
        if (rt->gating == 1)
            sum += p[e] = exp(lg[e] - mx);
        else if (rt->gating == 2)
            p[e] = 1.0 / (1.0 + exp(-lg[e]));
        else
            p[e] = lg[e];
    }
    if (rt->gating == 1)
        for (int e = 0; e < NE; e++)
            p[e] /= sum;
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int e = 0; e < NE; e++)
            if (!taken[e] && (best < 0 || p[e] > p[best]))
                best = e;
        taken[best] = true;
        sel[k] = best;
        wt[k] = p[best];
    }
    if (rt->gating == 3) {
        double ksum = 0;
        for (int k = 0; k < K; k++)
            ksum += exp(p[sel[k]] - p[sel[0]]);
        for (int k = 0; k < K; k++)
            wt[k] = exp(p[sel[k]] - p[sel[0]]) / ksum;
    }
    if (rt->norm) {
        double ws = 0;
        for (int k = 0; k < K; k++)
            ws += wt[k];
        ws = ws > 6.103515625e-5 ? ws : 6.103515625e-5;
        for (int k = 0; k < K; k++)
            wt[k] /= ws;
    }
    for (int i = 0; i < E; i++)
        y[i] = 0;
    for (int k = 0; k < K; k++) {
        int e = sel[k];
        size_t mat = (size_t)FX * E;
        if (oss)
            swiglu_oai(ye, l->gate_x + e * mat, l->gate_xb + (size_t)e * FX, l->up_x + e * mat,
                       l->up_xb + (size_t)e * FX, l->down_x + e * mat, l->down_xb + (size_t)e * E,
                       x, E, FX, g, u);
        else
            swiglu(ye, l->gate_x + e * mat, l->up_x + e * mat, l->down_x + e * mat, x, E, FX, g,
                   u);
        for (int i = 0; i < E; i++)
            y[i] += wt[k] * rt->scale * ye[i];
    }
    if (l->sh_gate) {
        double z = 0;
        for (int i = 0; i < E; i++)
            z += l->sh_gate_inp[i] * x[i];
        swiglu(ye, l->sh_gate, l->sh_up, l->sh_down, x, E, FS, g, u);
        for (int i = 0; i < E; i++)
            y[i] += ye[i] / (1.0 + exp(-z));
    }
    rc = 0;
out:
    free(lg);
    free(p);
    free(ye);
    free(wt);
    free(g);
    free(u);
    free(taken);
    free(sel);
    return rc;
}

int ref_forward(const struct ref_model *r, const int32_t *tokens, int n, float *logits)
{
    const struct model *m = r->m;
    const struct model_hparams *hp = &m->hp;
    bool gemma = hp->arch == MODEL_ARCH_GEMMA3;
    bool neox = hp->arch != MODEL_ARCH_LLAMA;
    bool oss = hp->arch == MODEL_ARCH_GPT_OSS;
    bool is_moe = hp->arch == MODEL_ARCH_QWEN3MOE || hp->arch == MODEL_ARCH_QWEN2MOE || oss;
    struct ref_router rt = router_of(m);
    int E = hp->n_embd, HD = hp->head_dim, NH = hp->n_head, NKV = hp->n_head_kv;
    int QD = NH * HD, KVD = NKV * HD, F = hp->n_ff, V = hp->n_vocab;
    double eps = hp->norm_eps;

    double *X = calloc((size_t)n * E, sizeof *X);
    double *Q = calloc((size_t)n * QD, sizeof *Q);
    double *K = calloc((size_t)n * KVD, sizeof *K);
    double *Vv = calloc((size_t)n * KVD, sizeof *Vv);
    double *att = calloc((size_t)QD, sizeof *att);
    double *xb = calloc((size_t)E, sizeof *xb);
    double *o = calloc((size_t)E, sizeof *o);
    double *g = calloc((size_t)F + 1, sizeof *g);
    double *u = calloc((size_t)F + 1, sizeof *u);
    double *sc = calloc((size_t)n, sizeof *sc);
    double *y = calloc((size_t)V, sizeof *y);
    int rc = -1;
    if (!X || !Q || !K || !Vv || !att || !xb || !o || !g || !u || !sc || !y)
        goto out;

    for (int t = 0; t < n; t++)
        for (int i = 0; i < E; i++)
            X[(size_t)t * E + i] = r->tok_embd[(size_t)tokens[t] * E + i] * (gemma ? sqrt((double)E) : 1.0);

    for (int il = 0; il < hp->n_layer; il++) {
        const struct ref_layer *l = &r->layers[il];
        /* gemma3: five local layers, then a global one, local ones with
         * base 10000 unscaled; gpt-oss: even layers local, scaled alike */
        bool local = hp->swa_window > 0 && ((gemma && il % 6 != 5) || (oss && il % 2 == 0));
        double base = local ? (gemma ? 10000.0 : hp->rope_base_local) : hp->rope_base;
        double fscale = local && gemma ? 1.0 : hp->rope_freq_scale;
        for (int t = 0; t < n; t++) {
            rms(xb, X + (size_t)t * E, l->attn_norm, E, eps);
            double *q = Q + (size_t)t * QD, *k = K + (size_t)t * KVD;
            matvec(q, l->wq, l->bq, xb, QD, E);
            matvec(k, l->wk, l->bk, xb, KVD, E);
            matvec(Vv + (size_t)t * KVD, l->wv, l->bv, xb, KVD, E);
            for (int h = 0; h < NH; h++) {
                if (l->q_norm)
                    rms(q + h * HD, q + h * HD, l->q_norm, HD, eps);
                rotate(q + h * HD, hp, t, base, fscale, r->rope_freqs, neox);
            }
            for (int h = 0; h < NKV; h++) {
                if (l->k_norm)
                    rms(k + h * HD, k + h * HD, l->k_norm, HD, eps);
                rotate(k + h * HD, hp, t, base, fscale, r->rope_freqs, neox);
            }
        }
        /* Every query over every key, masked: future keys, and on local
         * layers keys at distance >= window. */
        double scale = 1.0 / sqrt((double)HD);
        if (gemma && hp->n_layer == 62)
            scale = 1.0 / sqrt((double)E / NH);
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < NH; h++) {
                int kh = h / (NH / NKV);
                double mx = -INFINITY;
                for (int s = 0; s < n; s++) {
                    bool hidden = s > t || (local && t - s >= hp->swa_window);
                    if (hidden) {
                        sc[s] = -INFINITY;
                        continue;
                    }
                    double d = 0;
                    for (int i = 0; i < HD; i++)
                        d += Q[(size_t)t * QD + h * HD + i] * K[(size_t)s * KVD + kh * HD + i];
                    sc[s] = d * scale;
                    if (sc[s] > mx)
                        mx = sc[s];
                }
                /* a sink is one more logit in the softmax, with no value */
                double sink = l->sinks ? l->sinks[h] : -INFINITY;
                if (sink > mx)
                    mx = sink;
                double sum = l->sinks ? exp(sink - mx) : 0.0;
                for (int s = 0; s < n; s++) {
                    sc[s] = sc[s] == -INFINITY ? 0.0 : exp(sc[s] - mx);
                    sum += sc[s];
                }
                for (int i = 0; i < HD; i++) {
                    double a = 0;
                    for (int s = 0; s < n; s++)
                        a += sc[s] / sum * Vv[(size_t)s * KVD + kh * HD + i];
                    att[h * HD + i] = a;
                }
            }
            /* The residual of token t is only read by token t from here on,
             * and K/V of this layer are complete, so it can be updated now. */
            double *x = X + (size_t)t * E;
            matvec(o, l->wo, l->bo, att, E, QD);
            if (l->post_attn_norm)
                rms(o, o, l->post_attn_norm, E, eps);
            for (int i = 0; i < E; i++)
                x[i] += o[i];
            rms(xb, x, l->ffn_norm, E, eps);
            if (is_moe) {
                if (moe(o, l, hp, xb, &rt, oss))
                    goto out;
                for (int i = 0; i < E; i++)
                    x[i] += o[i];
                continue;
            }
            matvec(g, l->gate, NULL, xb, F, E);
            matvec(u, l->up, NULL, xb, F, E);
            for (int i = 0; i < F; i++) {
                double a = g[i];
                double act = gemma ? 0.5 * a * (1.0 + tanh(sqrt(2.0 / M_PI) * (a + 0.044715 * a * a * a)))
                                   : a / (1.0 + exp(-a));
                g[i] = act * u[i];
            }
            matvec(o, l->down, NULL, g, E, F);
            if (l->post_ffw_norm)
                rms(o, o, l->post_ffw_norm, E, eps);
            for (int i = 0; i < E; i++)
                x[i] += o[i];
        }
    }
    for (int t = 0; t < n; t++) {
        rms(xb, X + (size_t)t * E, r->output_norm, E, eps);
        matvec(y, r->output, NULL, xb, V, E);
        for (int i = 0; i < V; i++)
            logits[(size_t)t * V + i] = (float)y[i];
    }
    rc = 0;
out:
    free(X);
    free(Q);
    free(K);
    free(Vv);
    free(att);
    free(xb);
    free(o);
    free(g);
    free(u);
    free(sc);
    free(y);
    return rc;
}
