/* Leveled logging to stderr, one line per event with an RFC 3339 timestamp, as text or as one
 * JSON object per line. */
#include "common/log.h"
#include "common/time.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

fc_log_level fc_log_threshold = FC_LOG_INFO;
fc_log_format fc_log_output = FC_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int fc_log_parse_level(const char *s)
{
    for (int i = 0; i <= FC_LOG_OFF; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    return -1;
}

int fc_log_parse_format(const char *s)
{
    return strcmp(s, "text") == 0 ? FC_LOG_TEXT : strcmp(s, "json") == 0 ? FC_LOG_JSON : -1;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF), or 0, so a JSON reader never meets a byte it cannot decode. */
static size_t utf8_len(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    if (n == 0 || n > avail) return 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

/* Appends s as a JSON string to out[*len..cap); stops short rather than overflow, leaving
 * room for the closing quote. Bytes that are not UTF-8 become U+FFFD. */
static void put_json_string(char *out, size_t *len, size_t cap, const char *s)
{
    size_t o = *len;
    const unsigned char *p = (const unsigned char *)s;
    size_t avail = strlen(s);
    if (o + 1 < cap) out[o++] = '"';
    while (avail > 0 && o + 8 < cap) {
        unsigned char c = *p;
        size_t n = 1;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7F) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else if (c < 0x80) {
            out[o++] = (char)c;
        } else if ((n = utf8_len(p, avail)) > 0) {
            memcpy(out + o, p, n);
            o += n;
        } else {
            n = 1;
            o += (size_t)snprintf(out + o, cap - o, "\\ufffd");
        }
        p += n;
        avail -= n;
    }
    if (o < cap) out[o++] = '"';
    *len = o;
}

static void put_raw(char *out, size_t *len, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n < cap) {
        memcpy(out + *len, s, n);
        *len += n;
    }
}

static void write_line(fc_log_level level, const char *tag, const fc_log_field *fields, size_t n,
                       const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

static void write_line(fc_log_level level, const char *tag, const fc_log_field *fields, size_t n,
                       const char *fmt, va_list ap)
{
    char ts[FC_TIME_RFC3339_LEN + 1];
    char msg[1024];
    char line[8192]; /* the message escaped at worst 6 bytes a byte */
    fc_time_format_rfc3339(fc_time_now_ms(), ts);
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (fc_log_output == FC_LOG_TEXT) {
        snprintf(line, sizeof line, "%s %-5s %s: %s\n", ts, level_names[level], tag, msg);
    } else {
        size_t len = 0, cap = sizeof line - 2; /* room for "}\n" */
        put_raw(line, &len, cap, "{\"time\":\"");
        put_raw(line, &len, cap, ts);
        put_raw(line, &len, cap, "\",\"level\":\"");
        put_raw(line, &len, cap, level_names[level]);
        put_raw(line, &len, cap, "\",\"subsystem\":");
        put_json_string(line, &len, cap, tag);
        put_raw(line, &len, cap, ",\"message\":");
        put_json_string(line, &len, cap, msg);
        for (size_t i = 0; i < n; i++) {
            char num[32];
            /* A field that might not fit whole is left out, so the line stays valid JSON. */
            size_t worst =
                6 * (strlen(fields[i].key) + (fields[i].str ? strlen(fields[i].str) : 0));
            if (len + worst + sizeof num + 8 > cap) continue;
            put_raw(line, &len, cap, ",");
            put_json_string(line, &len, cap, fields[i].key);
            put_raw(line, &len, cap, ":");
            if (fields[i].str) {
                put_json_string(line, &len, cap, fields[i].str);
            } else {
                snprintf(num, sizeof num, "%lld", fields[i].num);
                put_raw(line, &len, cap, num);
            }
        }
        line[len++] = '}';
        line[len++] = '\n';
        line[len] = '\0';
    }
    /* One fputs per line keeps lines whole when several threads log. */
    fputs(line, stderr);
}

void fc_log_write(fc_log_level level, const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line(level, tag, NULL, 0, fmt, ap);
    va_end(ap);
}

void fc_log_writev(fc_log_level level, const char *tag, const fc_log_field *fields, size_t n,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line(level, tag, fields, n, fmt, ap);
    va_end(ap);
}
