/* test_threadpool.c - backend/cpu/threadpool.c: every share of every call
 * runs exactly once with its own index, and threadpool_run returns only
 * after all of them have finished, whoever (worker or caller) ran them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "threadpool.h"

#define MAX_T 4
#define CALLS 20000

struct counts {
    atomic_int runs[MAX_T];   /* shares run this call, by ith */
    atomic_int bad_nth;       /* calls that saw the wrong nth */
    int nth;
    unsigned call;            /* odd calls give share ith some work */
    volatile float sink;
};

static void count_share(void *arg, int ith, int nth)
{
    struct counts *c = arg;
    if (nth != c->nth || ith < 0 || ith >= MAX_T) {
        atomic_fetch_add(&c->bad_nth, 1);
        return;
    }
    /* Uneven work, so that sometimes the caller and sometimes a worker is
     * late: a join that returned early would miss this share's count. */
    unsigned spin = (c->call + (unsigned)ith) % 3 == 0 ? 2000 : 0;
    float s = 0.0f;
    for (unsigned i = 0; i < spin; i++)
        s = s * 0.5f + 1.0f;
    c->sink = s;
    atomic_fetch_add(&c->runs[ith], 1);
}

static void test_every_share_once(void **state)
{
    (void)state;
    for (int nt = 1; nt <= MAX_T; nt++) {
        struct threadpool *p = threadpool_new(nt);
        assert_non_null(p);
        assert_int_equal(threadpool_size(p), nt);
        struct counts c = {.nth = nt};
        for (unsigned call = 0; call < CALLS; call++) {
            c.call = call;
            for (int i = 0; i < MAX_T; i++)
                atomic_store(&c.runs[i], 0);
            threadpool_run(p, count_share, &c);
            for (int i = 0; i < MAX_T; i++)
                if (atomic_load(&c.runs[i]) != (i < nt ? 1 : 0))
                    fail_msg("threads %d, call %u: share %d ran %d times", nt, call, i,
                             atomic_load(&c.runs[i]));
        }
        assert_int_equal(atomic_load(&c.bad_nth), 0);
        threadpool_free(p);
    }
}

static void test_free_null(void **state)
{
    (void)state;
    threadpool_free(NULL);
    assert_int_equal(threadpool_size(NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_share_once),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
