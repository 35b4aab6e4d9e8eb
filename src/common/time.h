/* Clocks and RFC 3339 time formatting. */
#ifndef FC_COMMON_TIME_H
#define FC_COMMON_TIME_H

#include <stdint.h>

#define FC_TIME_RFC3339_LEN 24 /* "2026-11-27T05:00:00.000Z" */

/* Wall-clock milliseconds since the Unix epoch. */
int64_t fc_time_now_ms(void);
/* CLOCK_MONOTONIC in nanoseconds, for latency measurements. */
uint64_t fc_time_mono_ns(void);
/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC) and a NUL into out. */
void fc_time_format_rfc3339(int64_t epoch_ms, char out[FC_TIME_RFC3339_LEN + 1]);

#endif
