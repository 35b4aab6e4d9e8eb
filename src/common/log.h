/* Leveled logging: one line per event, "time level tag: message", to stderr.
 * The macro checks the level first, so formatting costs nothing when it is off. */
#ifndef FC_COMMON_LOG_H
#define FC_COMMON_LOG_H

typedef enum { FC_LOG_DEBUG = 0, FC_LOG_INFO, FC_LOG_WARN, FC_LOG_ERROR, FC_LOG_OFF } fc_log_level;

extern fc_log_level fc_log_threshold;

/* Parses "debug|info|warn|error|off"; returns -1 when unknown. */
int fc_log_parse_level(const char *s);
void fc_log_write(fc_log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define FC_LOG(level, tag, ...)                                                                    \
    do {                                                                                           \
        if ((level) >= fc_log_threshold) fc_log_write((level), (tag), __VA_ARGS__);                \
    } while (0)
#define FC_DEBUG(tag, ...) FC_LOG(FC_LOG_DEBUG, tag, __VA_ARGS__)
#define FC_INFO(tag, ...) FC_LOG(FC_LOG_INFO, tag, __VA_ARGS__)
#define FC_WARN(tag, ...) FC_LOG(FC_LOG_WARN, tag, __VA_ARGS__)
#define FC_ERROR(tag, ...) FC_LOG(FC_LOG_ERROR, tag, __VA_ARGS__)

#endif
