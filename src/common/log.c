/* Leveled logging to stderr, one line per event with an RFC 3339 timestamp. */
#include "common/log.h"
#include "common/time.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

fc_log_level fc_log_threshold = FC_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int fc_log_parse_level(const char *s)
{
    for (int i = 0; i <= FC_LOG_OFF; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    return -1;
}

void fc_log_write(fc_log_level level, const char *tag, const char *fmt, ...)
{
    char ts[FC_TIME_RFC3339_LEN + 1];
    char line[1024];
    fc_time_format_rfc3339(fc_time_now_ms(), ts);
    int n = snprintf(line, sizeof line, "%s %-5s %s: ", ts, level_names[level], tag);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line keeps lines whole when several threads log. */
    fputs(line, stderr);
    fputc('\n', stderr);
}
