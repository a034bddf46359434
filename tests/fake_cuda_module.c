/* fake_cuda_module.c - a stand-in for kvchat-cuda.so, loaded by test_registry
 * through KVCHAT_CUDA_MODULE. What it does is set by its environment:
 *   FAKE_CUDA_FREE_MIB  free memory its probe reports (default 8192)
 *   FAKE_CUDA_ABI       the ABI it accepts (default BACKEND_ABI)
 * Its create always fails, with "fake create failed", so the test sees the
 * registry fall back from a device that passed every check before create.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model.h"

static void fake_probe(struct backend_device *out)
{
    memset(out, 0, sizeof *out);
    const char *mib = getenv("FAKE_CUDA_FREE_MIB");
    snprintf(out->name, sizeof out->name, "Fake GPU");
    out->total = (uint64_t)8 << 30;
    out->free = (mib ? strtoull(mib, NULL, 10) : 8192) << 20;
    out->usable = true;
}

static int fake_estimate(const struct model *m, const struct backend_config *cfg,
                         struct backend_estimate *out, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    memset(out, 0, sizeof *out);
    out->weights = m->weight_bytes;
    out->kv_cache = 2ull * (uint64_t)m->hp.n_layer * (uint64_t)cfg->n_ctx *
                    (uint64_t)m->hp.n_head_kv * (uint64_t)m->hp.head_dim * 2;
    out->reserve = 64ull << 20;
    out->total = out->weights + out->kv_cache + out->reserve;
    return 0;
}

static void *fake_create(const struct model *m, const struct backend_config *cfg, char *err,
                         size_t errlen)
{
    (void)m;
    (void)cfg;
    snprintf(err, errlen, "fake create failed");
    return NULL;
}

static void fake_destroy(void *b) { (void)b; }

static int fake_forward(void *b, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                        bool all, char *err, size_t errlen)
{
    (void)b, (void)tokens, (void)n, (void)pos, (void)logits, (void)all;
    snprintf(err, errlen, "fake backend");
    return -1;
}

static void fake_memory(void *b, struct engine_memory *out)
{
    (void)b;
    (void)out;
}

static const char *fake_name(void *b)
{
    (void)b;
    return "Fake GPU";
}

static const struct backend_ops fake_ops = {
    .name = "cuda",
    .probe = fake_probe,
    .estimate = fake_estimate,
    .create = fake_create,
    .destroy = fake_destroy,
    .forward = fake_forward,
    .memory = fake_memory,
    .device_name = fake_name,
};

const struct backend_ops *kvchat_backend_entry(uint32_t abi)
{
    const char *want = getenv("FAKE_CUDA_ABI");
    uint32_t accept = want ? (uint32_t)strtoul(want, NULL, 10) : BACKEND_ABI;
    return abi == accept ? &fake_ops : NULL;
}
