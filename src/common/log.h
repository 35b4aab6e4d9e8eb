/* Leveled logging: one line per event to stderr, either text ("time level tag: message") or
 * one JSON object (--log-format json). The macro checks the level first, so formatting costs
 * nothing when it is off. Never pass a credential or a query string to a log call. */
#ifndef FC_COMMON_LOG_H
#define FC_COMMON_LOG_H

#include <stddef.h>

typedef enum { FC_LOG_DEBUG = 0, FC_LOG_INFO, FC_LOG_WARN, FC_LOG_ERROR, FC_LOG_OFF } fc_log_level;
typedef enum { FC_LOG_TEXT = 0, FC_LOG_JSON } fc_log_format;

extern fc_log_level fc_log_threshold;
extern fc_log_format fc_log_output; /* set once at start, before any thread */

/* A structured field of a log line: a string (str != NULL) or an integer. Text lines leave
 * them out (the message already says it in words); JSON lines carry them as members. */
typedef struct fc_log_field {
    const char *key;
    const char *str;
    long long num;
} fc_log_field;

#define FC_LOG_STR(k, v) ((fc_log_field){.key = (k), .str = (v)})
#define FC_LOG_INT(k, v) ((fc_log_field){.key = (k), .num = (long long)(v)})

/* Parses "debug|info|warn|error|off"; returns -1 when unknown. */
int fc_log_parse_level(const char *s);
/* Parses "text|json"; returns -1 when unknown. */
int fc_log_parse_format(const char *s);
void fc_log_write(fc_log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* fc_log_write with n structured fields. */
void fc_log_writev(fc_log_level level, const char *tag, const fc_log_field *fields, size_t n,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define FC_LOG(level, tag, ...)                                                                    \
    do {                                                                                           \
        if ((level) >= fc_log_threshold) fc_log_write((level), (tag), __VA_ARGS__);                \
    } while (0)
#define FC_DEBUG(tag, ...) FC_LOG(FC_LOG_DEBUG, tag, __VA_ARGS__)
#define FC_INFO(tag, ...) FC_LOG(FC_LOG_INFO, tag, __VA_ARGS__)
#define FC_WARN(tag, ...) FC_LOG(FC_LOG_WARN, tag, __VA_ARGS__)
#define FC_ERROR(tag, ...) FC_LOG(FC_LOG_ERROR, tag, __VA_ARGS__)

/* With fields: FC_LOGF(FC_LOG_INFO, "server", ((fc_log_field[]){FC_LOG_INT("port", p)}), 1,
 * "listening on %d", p). The compound literal is only built when the level is on. */
#define FC_LOGF(level, tag, fields, n, ...)                                                        \
    do {                                                                                           \
        if ((level) >= fc_log_threshold)                                                           \
            fc_log_writev((level), (tag), (fields), (n), __VA_ARGS__);                             \
    } while (0)

#endif
