#include "common/bucket.h"

#include <math.h>

#define NS_PER_S 1000000000ull

fc_bucket_rate fc_bucket_rate_make(double rate, int burst)
{
    fc_bucket_rate r;
    double iv = (double)NS_PER_S / rate;
    r.interval_ns = iv < 1 ? 1 : (uint64_t)iv;
    uint64_t b = burst > 0 ? (uint64_t)burst : (uint64_t)ceil(rate);
    if (b < 1) b = 1;
    r.burst_ns = b * r.interval_ns;
    return r;
}

uint64_t fc_bucket_take(const fc_bucket_rate *r, uint64_t *tat, uint64_t now_ns)
{
    uint64_t start = *tat > now_ns ? *tat : now_ns;
    uint64_t next = start + r->interval_ns;
    /* The bucket holds burst tokens: a take is allowed while tat stays
     * within burst intervals of now. */
    if (next - now_ns > r->burst_ns) return next - now_ns - r->burst_ns;
    *tat = next;
    return 0;
}

uint64_t fc_bucket_retry_after_s(uint64_t wait_ns)
{
    uint64_t s = (wait_ns + NS_PER_S - 1) / NS_PER_S;
    return s ? s : 1;
}
