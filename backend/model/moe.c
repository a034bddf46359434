/* moe.c - a mixture of experts' router for one token, the one rule the
 * CPU backend runs and the device router (kernels/moe.cu) is tested
 * against. */
#include <math.h>

#include "model.h"

/* A renormalisation's sum is at least this (2^-14, f16's smallest normal:
 * llama.cpp clamps there), so K sigmoids all near 0 give small weights
 * rather than 0/0. A softmax's top-k sum never gets near it. */
#define MOE_MIN_WSUM 6.103515625e-5

void model_moe_select(const float *logits, int n_expert, int k, enum model_gating gating,
                      bool norm, float scale, int32_t *sel, float *w)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n_expert; e++) {
            bool taken = false;
            for (int i = 0; i < j && !taken; i++)
                taken = sel[i] == e;
            if (!taken && (best < 0 || logits[e] > logits[best]))
                best = e;
        }
        sel[j] = best;
    }
    /* the softmaxes' max and denominator; sel[0] holds the largest logit */
    float ref = 0.0f;
    double den = 1.0;
    if (gating == MODEL_GATING_SOFTMAX) {
        ref = logits[0];
        for (int e = 1; e < n_expert; e++)
            ref = logits[e] > ref ? logits[e] : ref;
        den = 0;
        for (int e = 0; e < n_expert; e++)
            den += exp((double)(logits[e] - ref));
    } else if (gating == MODEL_GATING_SOFTMAX_TOPK) {
        ref = logits[sel[0]];
        den = 0;
        for (int j = 0; j < k; j++)
            den += exp((double)(logits[sel[j]] - ref));
    }
    double wsum = 0;
    for (int j = 0; j < k; j++) {
        float l = logits[sel[j]];
        w[j] = gating == MODEL_GATING_SIGMOID ? (float)(1.0 / (1.0 + exp(-(double)l)))
                                              : (float)(exp((double)(l - ref)) / den);
        wsum += w[j];
    }
    if (norm) {
        double d = wsum > MOE_MIN_WSUM ? wsum : MOE_MIN_WSUM;
        for (int j = 0; j < k; j++)
            w[j] = (float)(w[j] / d);
    }
    for (int j = 0; j < k; j++)
        w[j] *= scale;
}
