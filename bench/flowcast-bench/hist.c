/* Log-linear latency histogram (see hist.h). */
#include "hist.h"

#include <string.h>

void fcb_hist_init(fcb_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

/* Values below 2*SUB map to themselves; above, shift = the number of low
 * bits dropped so that v >> shift lies in [SUB, 2*SUB), and the index is
 * shift*SUB + (v >> shift), which makes consecutive octaves contiguous. */
size_t fcb_hist_index(uint64_t v)
{
    if (v < 2 * FCB_HIST_SUB) return (size_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - FCB_HIST_SUB_BITS;
    return (size_t)shift * FCB_HIST_SUB + (size_t)(v >> shift);
}

uint64_t fcb_hist_bucket_low(size_t idx)
{
    if (idx < 2 * FCB_HIST_SUB) return idx;
    size_t shift = idx / FCB_HIST_SUB - 1;
    uint64_t mant = idx - shift * FCB_HIST_SUB;
    return mant << shift;
}

uint64_t fcb_hist_bucket_high(size_t idx)
{
    if (idx < 2 * FCB_HIST_SUB) return idx;
    size_t shift = idx / FCB_HIST_SUB - 1;
    uint64_t low = fcb_hist_bucket_low(idx);
    return low + ((UINT64_C(1) << shift) - 1);
}

void fcb_hist_record_n(fcb_hist *h, uint64_t v, uint64_t n)
{
    if (n == 0) return;
    h->buckets[fcb_hist_index(v)] += n;
    h->count += n;
    h->sum += (double)v * (double)n;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
}

void fcb_hist_record(fcb_hist *h, uint64_t v)
{
    fcb_hist_record_n(h, v, 1);
}

void fcb_hist_merge(fcb_hist *dst, const fcb_hist *src)
{
    if (src->count == 0) return;
    for (size_t i = 0; i < FCB_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
}

uint64_t fcb_hist_quantile(const fcb_hist *h, double q)
{
    if (h->count == 0) return 0;
    if (q >= 1.0) return h->max;
    if (q < 0) q = 0;
    double r = q * (double)h->count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r) rank++;
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < FCB_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = fcb_hist_bucket_high(i);
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}

double fcb_hist_mean(const fcb_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
