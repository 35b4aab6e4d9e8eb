/* Clocks and RFC 3339 UTC formatting with milliseconds. */
#include "common/time.h"

#include <string.h>
#include <time.h>

int64_t fc_time_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t fc_time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The seconds part of the last timestamp this thread formatted: timestamps
 * come in runs within one second (every answer and update carries
 * updated_at = now), and gmtime_r + strftime per call were 1-2% of the loop
 * thread under ingest. */
static _Thread_local struct {
    int valid;
    time_t secs;
    char text[20];
} last_second;

void fc_time_format_rfc3339(int64_t epoch_ms, char out[FC_TIME_RFC3339_LEN + 1])
{
    time_t secs = (time_t)(epoch_ms / 1000);
    if (!last_second.valid || last_second.secs != secs) {
        struct tm tm;
        gmtime_r(&secs, &tm);
        /* strftime bounds every field, which snprintf's truncation check cannot see. */
        if (strftime(last_second.text, sizeof last_second.text, "%Y-%m-%dT%H:%M:%S", &tm) != 19) {
            last_second.valid = 0;
            out[0] = '\0';
            return;
        }
        last_second.secs = secs;
        last_second.valid = 1;
    }
    int ms = (int)(epoch_ms % 1000);
    memcpy(out, last_second.text, 19);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = '\0';
}
