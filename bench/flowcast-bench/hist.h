/* Latency histogram for flowcast-bench: log-linear buckets (128 per power
 * of two, so every recorded value is known to within 0.8%), fixed size, no
 * allocation after init, O(1) record. Values are unsigned 64-bit (the tool
 * records nanoseconds). */
#ifndef FCB_HIST_H
#define FCB_HIST_H

#include <stddef.h>
#include <stdint.h>

#define FCB_HIST_SUB_BITS 7
#define FCB_HIST_SUB (1u << FCB_HIST_SUB_BITS)
/* Index of UINT64_MAX is (64 - SUB_BITS - 1) * SUB + 2 * SUB - 1. */
#define FCB_HIST_BUCKETS ((64 - FCB_HIST_SUB_BITS + 1) * FCB_HIST_SUB)

typedef struct fcb_hist {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    double sum;
    uint64_t buckets[FCB_HIST_BUCKETS];
} fcb_hist;

/* Clears h (it is then empty). */
void fcb_hist_init(fcb_hist *h);
/* Adds one value. */
void fcb_hist_record(fcb_hist *h, uint64_t v);
/* Adds n occurrences of value v. */
void fcb_hist_record_n(fcb_hist *h, uint64_t v, uint64_t n);
/* Adds every value of src to dst. */
void fcb_hist_merge(fcb_hist *dst, const fcb_hist *src);
/* The value at quantile q (0..1): the highest value of the bucket holding
 * the ceil(q*count)-th smallest value, clamped to [min, max]; q >= 1 gives
 * the exact max. 0 for an empty histogram. */
uint64_t fcb_hist_quantile(const fcb_hist *h, double q);
/* Mean of the recorded values (exact), 0 when empty. */
double fcb_hist_mean(const fcb_hist *h);

/* Bucket arithmetic, exposed for the unit test. */
size_t fcb_hist_index(uint64_t v);
uint64_t fcb_hist_bucket_low(size_t idx);
uint64_t fcb_hist_bucket_high(size_t idx);

#endif
