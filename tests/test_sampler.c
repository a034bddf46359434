/* test_sampler.c - the sampling chain: greedy, seeds, top-k, top-p, min-p,
 * repetition penalty, and speed at Gemma's vocabulary size.
 *
 * Distribution checks draw many samples from crafted logits and compare each
 * kept token's frequency with its renormalised probability, allowing six
 * standard deviations, so a correct sampler fails about once in 10^8 runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <time.h>

#include "testutil.h"

#include "sampler.h"

static struct engine_sampling plain(float temp)
{
    struct engine_sampling p = {
        .temperature = temp, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
        .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 42,
    };
    return p;
}

/* Logits whose softmax at temperature 1 is PROBS (N of them) followed by
 * NPAD impossible tokens. */
static void logits_from_probs(float *out, const double *probs, int n, int npad)
{
    for (int i = 0; i < n; i++)
        out[i] = (float)log(probs[i]);
    for (int i = 0; i < npad; i++)
        out[n + i] = -INFINITY;
}

/* Samples DRAWS times and checks that only ids with WANT[id] > 0 appear, each
 * with frequency WANT[id] (a probability) within six standard deviations. */
static void check_distribution(struct sampler *s, const float *logits, int n_vocab,
                               const double *want, int n_want, int draws)
{
    float *work = malloc(sizeof(float) * (size_t)n_vocab);
    int *count = calloc((size_t)n_vocab, sizeof(int));
    assert_non_null(work);
    assert_non_null(count);
    for (int d = 0; d < draws; d++) {
        memcpy(work, logits, sizeof(float) * (size_t)n_vocab);
        int32_t id = sampler_sample(s, work);
        assert_true(id >= 0 && id < n_vocab);
        count[id]++;
    }
    for (int i = 0; i < n_vocab; i++) {
        double p = i < n_want ? want[i] : 0.0;
        if (p == 0.0) {
            if (count[i] != 0)
                fail_msg("id %d drawn %d times but should be cut", i, count[i]);
            continue;
        }
        double mean = p * draws, sd = sqrt(draws * p * (1 - p));
        if (fabs(count[i] - mean) > 6 * sd + 1)
            fail_msg("id %d drawn %d times, expected %.1f +- %.1f", i, count[i], mean, sd);
    }
    free(work);
    free(count);
}

static void test_greedy(void **state)
{
    (void)state;
    struct engine_sampling p = plain(0.0f);
    struct sampler *s = sampler_new(6, &p);
    assert_non_null(s);
    float a[6] = {0.1f, 3.0f, -2.0f, 2.9f, 3.0f, 1.0f};
    assert_int_equal(sampler_sample(s, a), 1); /* tie 1/4: lowest id */
    float b[6] = {NAN, -1.0f, -0.5f, -INFINITY, -0.7f, -3.0f};
    assert_int_equal(sampler_sample(s, b), 2);
    /* negative temperature is greedy too */
    p.temperature = -1.0f;
    sampler_set_params(s, &p);
    float c[6] = {0, 0, 0, 0, 0, 9};
    assert_int_equal(sampler_sample(s, c), 5);
    sampler_free(s);
    sampler_free(NULL);
    assert_null(sampler_new(0, &p));
    assert_null(sampler_new(-5, &p));
}

static void fill_random(float *x, int n, uint32_t seed)
{
    uint32_t r = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)((r >> 8) % 10000) / 1000.0f; /* 0..10 */
    }
}

static void draw_seq(uint64_t seed, int32_t *out, int n)
{
    struct engine_sampling p = engine_sampling_defaults();
    p.seed = seed;
    p.top_k = 0;
    p.min_p = 0.0f;
    p.top_p = 1.0f;
    p.temperature = 5.0f; /* flat enough that seeds matter */
    struct sampler *s = sampler_new(200, &p);
    assert_non_null(s);
    float logits[200];
    for (int i = 0; i < n; i++) {
        fill_random(logits, 200, 7);
        out[i] = sampler_sample(s, logits);
        sampler_accept(s, out[i]);
    }
    sampler_free(s);
}

static void test_seeds(void **state)
{
    (void)state;
    int32_t a[64], b[64], c[64];
    draw_seq(1234, a, 64);
    draw_seq(1234, b, 64);
    draw_seq(1235, c, 64);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);

    /* set_params reseeds: the sequence starts over */
    struct engine_sampling p = plain(1.0f);
    p.seed = 99;
    struct sampler *s = sampler_new(200, &p);
    float l[200];
    int32_t first[16], again[16];
    for (int i = 0; i < 16; i++) {
        fill_random(l, 200, 3);
        first[i] = sampler_sample(s, l);
    }
    sampler_set_params(s, &p);
    for (int i = 0; i < 16; i++) {
        fill_random(l, 200, 3);
        again[i] = sampler_sample(s, l);
    }
    assert_memory_equal(first, again, sizeof first);
    sampler_free(s);
}

static void test_top_k_one_is_greedy(void **state)
{
    (void)state;
    struct engine_sampling p = plain(1.0f);
    p.top_k = 1;
    struct sampler *s = sampler_new(1000, &p);
    float l[1000];
    for (uint32_t t = 0; t < 200; t++) {
        fill_random(l, 1000, t);
        if (t % 5 == 0) { /* plant a tie with a later id */
            l[10] = 20.0f;
            l[500] = 20.0f;
        }
        int32_t want = 0;
        for (int i = 1; i < 1000; i++)
            if (l[i] > l[want])
                want = i;
        assert_int_equal(sampler_sample(s, l), want);
    }
    sampler_free(s);
}

/* top-k keeps exactly the K best, renormalised. */
static void test_top_k(void **state)
{
    (void)state;
    double probs[6] = {0.05, 0.3, 0.1, 0.25, 0.2, 0.1};
    float l[6];
    logits_from_probs(l, probs, 6, 0);
    struct engine_sampling p = plain(1.0f);
    p.top_k = 3;
    struct sampler *s = sampler_new(6, &p);
    double want[6] = {0, 0.3 / 0.75, 0, 0.25 / 0.75, 0.2 / 0.75, 0};
    check_distribution(s, l, 6, want, 6, 20000);
    sampler_free(s);
}

/* top-p keeps the smallest prefix reaching P: 0.5 + 0.2 + 0.15 >= 0.8. */
static void test_top_p(void **state)
{
    (void)state;
    double probs[5] = {0.5, 0.2, 0.15, 0.1, 0.05};
    double want[5] = {0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0};
    float l[105];
    logits_from_probs(l, probs, 5, 100);
    for (int k = 0; k <= 10; k += 10) { /* full-vocabulary path and top-k path */
        struct engine_sampling p = plain(1.0f);
        p.top_p = 0.8f;
        p.top_k = k;
        struct sampler *s = sampler_new(105, &p);
        check_distribution(s, l, 105, want, 5, 20000);
        /* top_p 0 keeps only the most likely token */
        p.top_p = 0.0f;
        sampler_set_params(s, &p);
        double only[1] = {1.0};
        check_distribution(s, l, 105, only, 1, 500);
        sampler_free(s);
    }
}

/* min-p keeps p >= 0.12 * 0.4 = 0.048: ids 0-3, not 4. */
static void test_min_p(void **state)
{
    (void)state;
    double probs[5] = {0.4, 0.3, 0.2, 0.06, 0.04};
    double want[5] = {0.4 / 0.96, 0.3 / 0.96, 0.2 / 0.96, 0.06 / 0.96, 0};
    float l[5];
    logits_from_probs(l, probs, 5, 0);
    for (int k = 0; k <= 4; k += 4) {
        struct engine_sampling p = plain(1.0f);
        p.min_p = 0.12f;
        p.top_k = k;
        struct sampler *s = sampler_new(5, &p);
        check_distribution(s, l, 5, want, 5, 20000);
        /* with top-p too the shorter prefix wins: top-p 0.55 keeps 0 and 1 */
        p.top_p = 0.55f;
        sampler_set_params(s, &p);
        double both[2] = {0.4 / 0.7, 0.3 / 0.7};
        check_distribution(s, l, 5, both, 2, 20000);
        sampler_free(s);
    }
}

/* Temperature reshapes the distribution: at T = 2 probabilities go as sqrt. */
static void test_temperature(void **state)
{
    (void)state;
    double probs[3] = {0.64, 0.32, 0.04};
    float l[3];
    logits_from_probs(l, probs, 3, 0);
    double z = 0.8 + sqrt(0.32) + 0.2;
    double want[3] = {0.8 / z, sqrt(0.32) / z, 0.2 / z};
    struct engine_sampling p = plain(2.0f);
    struct sampler *s = sampler_new(3, &p);
    check_distribution(s, l, 3, want, 3, 20000);
    sampler_free(s);
}

static void test_repetition_penalty(void **state)
{
    (void)state;
    struct engine_sampling p = plain(0.0f);
    p.repeat_penalty = 1.1f;
    p.repeat_last_n = 3;
    struct sampler *s = sampler_new(4, &p);

    /* positive logit divided: 2.0 / 1.1 = 1.82 < 1.9 */
    float a[4] = {2.0f, 1.9f, -1.0f, -1.05f};
    assert_int_equal(sampler_sample(s, a), 0);
    sampler_accept(s, 0);
    float b[4] = {2.0f, 1.9f, -1.0f, -1.05f};
    assert_int_equal(sampler_sample(s, b), 1);
    assert_true(fabsf(b[0] - 2.0f / 1.1f) < 1e-6f);

    /* negative logit multiplied: -1.0 * 1.1 = -1.1 < -1.05 */
    sampler_reset_history(s);
    sampler_accept(s, 2);
    float c[4] = {-5.0f, -5.0f, -1.0f, -1.05f};
    assert_int_equal(sampler_sample(s, c), 3);

    /* once per distinct id: 2.0 / 1.1 = 1.82 > 1.7, twice would be 1.65 */
    sampler_reset_history(s);
    sampler_accept(s, 0);
    sampler_accept(s, 0);
    float d[4] = {2.0f, 1.7f, 0, 0};
    assert_int_equal(sampler_sample(s, d), 0);

    /* out of the window (last 3) no longer penalised */
    sampler_accept(s, 2);
    sampler_accept(s, 3);
    sampler_accept(s, 2);
    float e[4] = {2.0f, 1.9f, 0, 0};
    assert_int_equal(sampler_sample(s, e), 0);

    /* widening keeps what the ring held (2, 3, 2) and then holds more */
    p.repeat_last_n = 5;
    sampler_set_params(s, &p);
    float f[4] = {2.0f, 1.9f, 0, 0};
    assert_int_equal(sampler_sample(s, f), 0);
    sampler_accept(s, 0);
    float f2[4] = {2.0f, 1.9f, 0, 0};
    assert_int_equal(sampler_sample(s, f2), 1);
    assert_true(f2[2] == 0.0f && f2[3] == 0.0f); /* 0 stays 0 under the penalty */

    /* penalty 1 is off; out-of-range ids are ignored */
    p.repeat_penalty = 1.0f;
    sampler_set_params(s, &p);
    sampler_accept(s, 99);
    sampler_accept(s, -3);
    float g[4] = {2.0f, 1.9f, 0, 0};
    assert_int_equal(sampler_sample(s, g), 0);
    sampler_free(s);
}

static double now_s(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Gemma's vocabulary: default settings must stay far below a forward pass. */
static void test_speed_262k(void **state)
{
    (void)state;
    enum { NV = 262144, ROUNDS = 50 };
    float *base = malloc(sizeof(float) * NV), *work = malloc(sizeof(float) * NV);
    assert_non_null(base);
    assert_non_null(work);
    fill_random(base, NV, 11);
    for (int i = 0; i < NV; i++)
        base[i] = base[i] * 2.0f - 10.0f;
    struct engine_sampling p = engine_sampling_defaults();
    struct sampler *s = sampler_new(NV, &p);
    assert_non_null(s);
    double t = 0.0;
    for (int r = 0; r < ROUNDS; r++) {
        memcpy(work, base, sizeof(float) * NV);
        double t0 = now_s();
        int32_t id = sampler_sample(s, work);
        t += now_s() - t0;
        assert_true(id >= 0 && id < NV);
        sampler_accept(s, id);
    }
    printf("top_k 40: %.3f ms per sample over %d\n", 1e3 * t / ROUNDS, NV);
    assert_true(t / ROUNDS < 5e-3);

    /* top_k off, top-p 0.95 over a flat tail: the slow path, reported */
    p.top_k = 0;
    sampler_set_params(s, &p);
    t = 0.0;
    for (int r = 0; r < 10; r++) {
        memcpy(work, base, sizeof(float) * NV);
        double t0 = now_s();
        (void)sampler_sample(s, work);
        t += now_s() - t0;
    }
    printf("top_k 0, top_p 0.95: %.3f ms per sample\n", 1e3 * t / 10);
    assert_true(t / 10 < 0.5);
    sampler_free(s);
    free(base);
    free(work);
}

/* top-p over the full vocabulary when the kept set reaches deep into a flat
 * tail: three heavy tokens hold half the mass, the rest share the other half
 * equally, and top-p 0.6 needs the first ~52k tail tokens (lowest ids first on
 * equal probability). */
static void test_top_p_deep_tail(void **state)
{
    (void)state;
    enum { NV = 262144 };
    float *l = malloc(sizeof(float) * NV), *work = malloc(sizeof(float) * NV);
    assert_non_null(l);
    assert_non_null(work);
    double q = 0.5 / (NV - 3);
    for (int i = 0; i < NV; i++)
        l[i] = (float)log(q);
    l[7000] = (float)log(0.3);
    l[123] = (float)log(0.15);
    l[250000] = (float)log(0.05);
    struct engine_sampling p = plain(1.0f);
    p.top_p = 0.6f;
    struct sampler *s = sampler_new(NV, &p);
    int need = (int)ceil(0.1 / q); /* tail tokens top-p must keep */
    int heavy = 0, tail = 0;
    for (int d = 0; d < 200; d++) {
        memcpy(work, l, sizeof(float) * NV);
        int32_t id = sampler_sample(s, work);
        if (id == 7000 || id == 123 || id == 250000) {
            heavy++;
            continue;
        }
        tail++;
        /* rank of ID in the tail order (by id, skipping the heavy ones) */
        int rank = id - (id > 123) - (id > 7000) - (id > 250000);
        if (rank > need + 64)
            fail_msg("tail id %d (rank %d) is beyond the top-p cut at %d", id, rank, need);
    }
    /* kept mass 0.5 heavy vs 0.1 tail */
    assert_true(heavy > 200 * 0.70 && heavy < 200 * 0.95);
    assert_true(tail > 0);
    sampler_free(s);
    free(l);
    free(work);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_top_k_one_is_greedy),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_top_p_deep_tail),
        cmocka_unit_test(test_speed_262k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
