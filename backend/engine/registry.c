/* registry.c - the compute backends, one row each, and how --backend picks
 * one (registry.h).
 *
 * A row says how to find its device cheaply (before anything is loaded) and
 * how to get its table; the table itself (backend.h) then probes the device
 * for real, estimates the memory a model needs and creates. Under
 * ENGINE_BACKEND_AUTO the rows are tried in order and the last one, the CPU,
 * is where every failure lands; a backend named on the command line is
 * tried alone and its failure is the error.
 */
#include "registry.h"

#include <stdio.h>
#include <string.h>

#include "errmsg.h"
#include "gguf.h"
#include "hostmem.h"
#include "model.h"

struct backend_row {
    enum engine_backend kind;
    const char *name;
    /* A device backend: its memory is checked against the estimate, and
     * under auto it falls back to the next row. */
    bool device;
    /* Cheap presence check before load; NULL: always present. */
    void (*find)(struct backend_device *out);
    /* The backend's table, NULL with ERR when it cannot be had. */
    const struct backend_ops *(*load)(char *err, size_t errlen);
    /* What to do instead, for the error when this backend was asked for. */
    const char *instead;
};

static const struct backend_ops *cpu_load(char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    return &backend_cpu_ops;
}

#ifdef KVCHAT_HAVE_CUDA
#define CUDA_FIND cuda_host_find
#define CUDA_LOAD cuda_host_load
#define CUDA_INSTEAD "use --backend cpu"
#else
static void cuda_unbuilt(struct backend_device *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->reason, sizeof out->reason, "this kvchat was built without CUDA");
}
#define CUDA_FIND cuda_unbuilt
#define CUDA_LOAD NULL /* never reached: find fails first */
#define CUDA_INSTEAD "use --backend cpu or rebuild with the CUDA toolkit installed"
#endif

/* In order of preference; the CPU last, as the fallback of auto. */
static const struct backend_row rows[] = {
    {
        .kind = ENGINE_BACKEND_CUDA,
        .name = "cuda",
        .device = true,
        .find = CUDA_FIND,
        .load = CUDA_LOAD,
        .instead = CUDA_INSTEAD,
    },
    {
        .kind = ENGINE_BACKEND_CPU,
        .name = "cpu",
        .load = cpu_load,
    },
};
#define N_ROWS (sizeof rows / sizeof rows[0])

/* engine.h's KV cache types, by name (--kv-type, config key kv_type). */
static const char *const kv_type_names[] = {
    [ENGINE_KV_AUTO] = "auto",
    [ENGINE_KV_F32] = "f32",
    [ENGINE_KV_F16] = "f16",
    [ENGINE_KV_Q8_0] = "q8_0",
};
#define N_KV_TYPES (sizeof kv_type_names / sizeof kv_type_names[0])

const char *engine_kv_type_name(enum engine_kv_type t)
{
    return (unsigned)t < N_KV_TYPES ? kv_type_names[t] : "unknown";
}

bool engine_kv_type_from_name(const char *name, enum engine_kv_type *out)
{
    for (size_t i = 0; name && i < N_KV_TYPES; i++) {
        if (strcmp(name, kv_type_names[i]) == 0) {
            if (out)
                *out = (enum engine_kv_type)i;
            return true;
        }
    }
    return false;
}

/* A size for a message: GiB with one decimal, or MiB below 1 GiB. */
struct size_text {
    char s[24];
};

static struct size_text size_text(uint64_t x)
{
    struct size_text t;
    if (x >= (1ull << 30))
        snprintf(t.s, sizeof t.s, "%.1f GiB", (double)x / 1073741824.0);
    else
        snprintf(t.s, sizeof t.s, "%.0f MiB", (double)x / 1048576.0);
    return t;
}

/* A host backend's estimate against the memory this process can still take
 * (hostmem.h), before anything is allocated: past it the kernel kills the
 * process as the KV cache fills, with no word. The weights of a file
 * mapping count (every token reads them all, so they must stay resident);
 * a synthetic model's are allocated already and so are in the reading. */
static int host_check(const struct backend_request *rq, const struct backend_estimate *est,
                      char *why, size_t whycap)
{
    uint64_t avail;
    if (hostmem_available(rq->mem_root, &avail) != 0)
        return 0; /* unknown: nothing to weigh against */
    uint64_t weights = rq->model->file ? est->weights : 0;
    uint64_t need = est->total - est->weights + weights;
    if (need <= avail)
        return 0;
    const double gib = 1073741824.0;
    kv_seterr(why, whycap,
              "the model needs %.1f GiB (weights %.1f, KV cache %.1f at %d tokens, scratch %.1f) "
              "but %.1f GiB is available: lower --ctx-size (this model was trained for %d) or "
              "use a smaller quantisation",
              (double)need / gib, (double)weights / gib, (double)est->kv_cache / gib,
              rq->cfg.n_ctx, (double)est->scratch / gib, (double)avail / gib,
              rq->model->hp.n_ctx_train);
    return -1;
}

/* Finds, loads, checks and creates ROW's backend. Returns 0 with OUT's ops
 * and state, or -1 with the reason in WHY (no "--backend" prefix: the
 * caller words it as a note or an error). */
static int try_row(const struct backend_row *row, const struct backend_request *rq,
                   struct backend_opened *out, char *why, size_t whycap)
{
    struct backend_device dev;
    why[0] = 0;
    if (row->find) {
        row->find(&dev);
        if (!dev.usable) {
            kv_seterr(why, whycap, "%s", dev.reason);
            return -1;
        }
    }
    const struct backend_ops *ops = row->load(why, whycap);
    if (!ops)
        return -1;
    ops->probe(&dev);
    if (!dev.usable) {
        kv_seterr(why, whycap, "%s", dev.reason);
        return -1;
    }
    struct backend_estimate est;
    if (ops->estimate(rq->model, &rq->cfg, &est, why, whycap) != 0)
        return -1;
    if (row->device && dev.free > 0 && est.total > dev.free) {
        kv_seterr(why, whycap,
                  "the model needs about %s on %s (weights %s, KV cache %s for %d tokens) but "
                  "%s is free; lower --ctx-size or use a smaller quantisation",
                  size_text(est.total).s, dev.name, size_text(est.weights).s,
                  size_text(est.kv_cache).s, rq->cfg.n_ctx, size_text(dev.free).s);
        return -1;
    }
    if (!row->device && host_check(rq, &est, why, whycap) != 0)
        return -1;
    if (rq->before_create)
        rq->before_create(ops, rq->user);
    void *state = ops->create(rq->model, &rq->cfg, why, whycap);
    if (!state)
        return -1;
    out->ops = ops;
    out->state = state;
    return 0;
}

int backend_open(const struct backend_request *rq, struct backend_opened *out, char *err,
                 size_t errlen)
{
    memset(out, 0, sizeof *out);
    char why[512];
    for (size_t i = 0; i < N_ROWS; i++) {
        const struct backend_row *row = &rows[i];
        bool fallback = i + 1 == N_ROWS;
        if (rq->want != ENGINE_BACKEND_AUTO && row->kind != rq->want)
            continue;
        if (try_row(row, rq, out, why, sizeof why) == 0)
            return 0;
        if (rq->want != ENGINE_BACKEND_AUTO || fallback) {
            if (row->instead)
                kv_seterr(err, errlen, "--backend %s: %s; %s", row->name, why, row->instead);
            else
                kv_seterr(err, errlen, "%s", why);
            return -1;
        }
        /* Auto: the reason of the last device that failed is the note. */
        snprintf(out->note, sizeof out->note, "%s: running on the CPU", why);
    }
    kv_seterr(err, errlen, "no compute backend for --backend %s", engine_backend_name(rq->want));
    return -1;
}
