/* A token bucket kept as one timestamp (the generic cell rate algorithm):
 * each take costs one interval, and the bucket is full when its theoretical
 * arrival time (tat) is not after now. Integer nanoseconds, so no rounding
 * drifts, and one 8-byte field per client. */
#ifndef FC_COMMON_BUCKET_H
#define FC_COMMON_BUCKET_H

#include <stdint.h>

typedef struct fc_bucket_rate {
    uint64_t interval_ns; /* 1 s / rate: the cost of one take */
    uint64_t burst_ns;    /* burst * interval_ns: how far tat may run ahead of now */
} fc_bucket_rate;

/* rate > 0 per second; burst 0 means ceil(rate), at least 1. */
fc_bucket_rate fc_bucket_rate_make(double rate, int burst);

/* Takes one token at now_ns from the bucket whose state is *tat (0 = never
 * used: full). Returns 0 and advances *tat, or the nanoseconds until a
 * token is free (*tat unchanged). */
uint64_t fc_bucket_take(const fc_bucket_rate *r, uint64_t *tat, uint64_t now_ns);

/* Whole seconds to wait for wait_ns, rounded up, at least 1 (Retry-After). */
uint64_t fc_bucket_retry_after_s(uint64_t wait_ns);

/* True when the bucket is full at now_ns: its state says nothing and may go. */
static inline int fc_bucket_full(uint64_t tat, uint64_t now_ns)
{
    return tat <= now_ns;
}

#endif
