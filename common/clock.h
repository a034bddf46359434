/* clock.h - the monotonic clock every figure is timed with (tokens per
 * second, time to first token, save intervals, bandwidth passes): seconds as
 * a double, never affected by the wall clock being set. */
#ifndef KVCHAT_CLOCK_H
#define KVCHAT_CLOCK_H

#include <time.h>

static inline double kv_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
