/* fuzz_model.c - libFuzzer target for the model loader (backend/model).
 *
 * The input is opened with gguf_open_memory and handed to model_from_gguf,
 * which checks the architecture, the hyperparameters and every tensor's
 * shape and type. A refusal must be a non-empty single line; an accepted
 * model must hold what model.h promises, checked here where cheap: positive
 * sizes, every weight present where required with the shape its role
 * implies (rows of NE0 elements, NBYTES = NE1 rows of its type) and lying
 * inside the input. Every weight byte is read so ASan sees the extent.
 *
 * Build and run (from the repository root):
 *   CC=clang cmake -S . -B build-fuzz -DKVCHAT_FUZZ=ON -DKVCHAT_CUDA=OFF
 *     -DKVCHAT_ENGINE_ONLY=ON
 *   cmake --build build-fuzz --target fuzz_model -j2
 *   mkdir -p /tmp/model-corpus && ./build-fuzz/tests/fuzz/fuzz_model
 *     -max_total_time=60 -malloc_limit_mb=64 -artifact_prefix=/tmp/
 *     /tmp/model-corpus tests/fuzz/corpus/model
 * The seeds are tiny models of each architecture (make_model_corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"
#include "quant.h"

static const uint8_t *in_lo, *in_hi;
static volatile unsigned sink;

/* A present tensor: in the input, NE1 rows of NE0 elements of its type. */
static void check_tensor(const struct model_tensor *t, int64_t ne0, bool required)
{
    if (!t->data) {
        if (required)
            abort();
        return;
    }
    if (t->ne0 <= 0 || t->ne1 <= 0 || (ne0 && t->ne0 != ne0))
        abort();
    if (quant_row_size(t->type, t->ne0) * (size_t)t->ne1 != t->nbytes)
        abort();
    const uint8_t *p = t->data;
    if (p < in_lo || t->nbytes > (size_t)(in_hi - in_lo) || p - in_lo > in_hi - in_lo - (ptrdiff_t)t->nbytes)
        abort();
    unsigned s = 0;
    for (size_t i = 0; i < t->nbytes; i++)
        s += ((const volatile uint8_t *)p)[i];
    sink += s;
}

static void check_model(const struct model *m)
{
    const struct model_hparams *hp = &m->hp;
    if ((unsigned)hp->arch >= MODEL_ARCH_COUNT || !model_arch_name(hp->arch))
        abort();
    /* a mixture of experts may have no dense FFN size */
    if (hp->n_vocab <= 0 || hp->n_embd <= 0 || hp->n_layer <= 0 ||
        (hp->n_expert > 0 ? hp->n_ff < 0 : hp->n_ff <= 0) ||
        hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->head_dim <= 0 || hp->n_rot < 0 ||
        hp->n_rot > hp->head_dim || hp->n_head % hp->n_head_kv != 0)
        abort();
    if (!memchr(m->name, 0, sizeof m->name) || !m->layers)
        abort();
    check_tensor(&m->tok_embd, hp->n_embd, true);
    if (m->tok_embd.ne1 != hp->n_vocab)
        abort();
    check_tensor(&m->output_norm, hp->n_embd, true);
    check_tensor(&m->output, hp->n_embd, true);
    check_tensor(&m->rope_freqs, 0, false);
    int64_t q = (int64_t)hp->n_head * hp->head_dim, kv = (int64_t)hp->n_head_kv * hp->head_dim;
    for (int32_t i = 0; i < hp->n_layer; i++) {
        const struct model_layer *l = &m->layers[i];
        check_tensor(&l->attn_norm, hp->n_embd, true);
        check_tensor(&l->wq, hp->n_embd, true);
        check_tensor(&l->wk, hp->n_embd, true);
        check_tensor(&l->wv, hp->n_embd, true);
        if (l->wq.ne1 != q || l->wk.ne1 != kv || l->wv.ne1 != kv)
            abort();
        check_tensor(&l->bq, 0, false);
        check_tensor(&l->bk, 0, false);
        check_tensor(&l->bv, 0, false);
        check_tensor(&l->q_norm, 0, false);
        check_tensor(&l->k_norm, 0, false);
        check_tensor(&l->wo, q, true);
        check_tensor(&l->bo, hp->n_embd, false);
        check_tensor(&l->attn_sinks, hp->n_head, hp->attn_sinks);
        check_tensor(&l->post_attn_norm, 0, false);
        check_tensor(&l->ffn_norm, hp->n_embd, true);
        bool moe = hp->n_expert > 0;
        check_tensor(&l->ffn_gate, hp->n_embd, !moe);
        check_tensor(&l->ffn_up, hp->n_embd, !moe);
        check_tensor(&l->ffn_down, hp->n_ff, !moe);
        if (moe && (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert))
            abort();
        check_tensor(&l->ffn_gate_inp, hp->n_embd, moe);
        check_tensor(&l->ffn_gate_exps, hp->n_embd, moe);
        check_tensor(&l->ffn_up_exps, hp->n_embd, moe);
        check_tensor(&l->ffn_down_exps, hp->n_ff_exp, moe);
        if (moe && (l->ffn_gate_inp.ne1 != hp->n_expert ||
                    l->ffn_gate_exps.ne1 != (int64_t)hp->n_ff_exp * hp->n_expert ||
                    l->ffn_down_exps.ne1 != (int64_t)hp->n_embd * hp->n_expert))
            abort();
        /* gpt-oss's biases: a row per expert */
        check_tensor(&l->ffn_gate_inp_b, hp->n_expert, false);
        check_tensor(&l->ffn_gate_exps_b, hp->n_ff_exp, false);
        check_tensor(&l->ffn_up_exps_b, hp->n_ff_exp, false);
        check_tensor(&l->ffn_down_exps_b, hp->n_embd, false);
        if (l->ffn_gate_exps_b.data && l->ffn_gate_exps_b.ne1 != hp->n_expert)
            abort();
        check_tensor(&l->ffn_gate_inp_shexp, 0, false);
        check_tensor(&l->ffn_gate_shexp, 0, false);
        check_tensor(&l->ffn_up_shexp, 0, false);
        check_tensor(&l->ffn_down_shexp, 0, false);
        check_tensor(&l->post_ffw_norm, 0, false);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so any read past the input is caught. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    in_lo = copy;
    in_hi = copy + size;
    char err[512];
    err[0] = 0;
    struct gguf *g = gguf_open_memory(copy, size, "fuzz.gguf", err, sizeof err);
    if (!g) {
        free(copy);
        return 0; /* the reader's refusals are fuzz_gguf's business */
    }
    struct model *m = model_from_gguf(g, err, sizeof err); /* owns G from here */
    if (!m) {
        if (!err[0] || strchr(err, '\n'))
            abort();
    } else {
        check_model(m);
        model_free(m);
    }
    free(copy);
    return 0;
}
