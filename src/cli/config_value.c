/* One option's value: the parsers for integers, byte counts, seconds, rates, booleans and the
 * listen address, and fc__config_set, which checks a value against its row's type and range
 * and stores it in its field. */
#include "cli/config_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"

/* Accepts an optional '-' and decimal digits only: strtoll alone would also take leading
 * spaces, '+' and trailing garbage. */
static bool parse_int(const char *s, long long *out)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    if (!isdigit((unsigned char)d[0])) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = v;
    return true;
}

/* Decimal digits with an optional K or M suffix meaning KiB or MiB. */
static bool parse_bytes(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0])) return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0) return false;
    uint64_t mult = 1;
    if (*end == 'K' || *end == 'k') {
        mult = 1024;
        end++;
    } else if (*end == 'M' || *end == 'm') {
        mult = 1024 * 1024;
        end++;
    }
    if (*end != '\0' || v > UINT64_MAX / mult) return false;
    *out = (uint64_t)v * mult;
    return true;
}

/* Plain decimals only ("20", "0.5", ".5"): strtod would also accept hex, "inf" and "nan". */
static bool parse_seconds(const char *s, double *out)
{
    const char *p = s;
    size_t digits = 0;
    for (; isdigit((unsigned char)*p); p++)
        digits++;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            digits++;
    if (*p != '\0' || digits == 0) return false;
    *out = strtod(s, NULL);
    return true;
}

/* Accepts "A.B.C.D:PORT", "localhost:PORT" and "[IPv6]:PORT". The host is stored without
 * brackets, and localhost as 127.0.0.1, so the server can hand it straight to
 * uv_ip4_addr/uv_ip6_addr (an IPv6 host is the one containing ':'). */
static bool parse_listen(fc_config *cfg, const char *s)
{
    char host[sizeof cfg->listen_host];
    const char *port;
    int family;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') return false;
        hlen = (size_t)(close - s - 1);
        port = close + 2;
        s++;
        family = AF_INET6;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) return false;
        hlen = (size_t)(colon - s);
        port = colon + 1;
        family = AF_INET;
    }
    if (hlen == 0 || hlen >= sizeof host) return false;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (family == AF_INET && strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    unsigned char addr[16];
    if (inet_pton(family, host, addr) != 1) return false;

    long long p;
    if (!isdigit((unsigned char)port[0]) || !parse_int(port, &p) || p > 65535) return false;
    memcpy(cfg->listen_host, host, strlen(host) + 1);
    cfg->listen_port = (int)p;
    return true;
}

static bool parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) return (*out = 1), true;
        if (strcasecmp(s, no[i]) == 0) return (*out = 0), true;
    }
    return false;
}

int *fc__config_list_count(fc_config *cfg, const fc__config_opt *o)
{
    return (int *)(void *)((char *)cfg + o->count_offset);
}

bool fc__config_list_add(fc_config *cfg, const fc__config_opt *o, const char *item)
{
    int *n = fc__config_list_count(cfg, o);
    if (o->size != (size_t)o->list_max * sizeof(const char *)) abort(); /* table mismatch */
    if (*n >= o->list_max) return false;
    ((const char **)(void *)((char *)cfg + o->offset))[(*n)++] = item;
    return true;
}

/* Copies a parsed value into its field; a size mismatch means the table names a field of
 * another type, which would silently corrupt the struct, so it is fatal. */
static void store(void *field, const fc__config_opt *o, const void *v, size_t size)
{
    if (o->size != size) abort();
    memcpy(field, v, size);
}

int fc__config_set(fc_config *cfg, const fc__config_opt *o, const char *val, char *why,
                   size_t whylen)
{
    void *field = (char *)cfg + o->offset;
    switch (o->type) {
    case FC__CONFIG_INT: {
        long long v;
        if (!parse_int(val, &v) || v < o->min || v > o->max) {
            snprintf(why, whylen, "is not an integer in %.0f..%.0f", o->min, o->max);
            return -1;
        }
        int iv = (int)v;
        store(field, o, &iv, sizeof iv);
        return 0;
    }
    case FC__CONFIG_BYTES_U64:
    case FC__CONFIG_BYTES_SIZE: {
        uint64_t v;
        if (parse_bytes(val, &v) && (double)v > o->max && o->over_max) {
            snprintf(why, whylen, "%s", o->over_max);
            return -1;
        }
        if (!parse_bytes(val, &v) || (double)v < o->min || (double)v > o->max) {
            snprintf(why, whylen, "is not a byte count in %.0f..%.0f (K and M suffixes allowed)",
                     o->min, o->max);
            return -1;
        }
        if (o->type == FC__CONFIG_BYTES_U64) {
            store(field, o, &v, sizeof v);
        } else {
            size_t sv = (size_t)v;
            store(field, o, &sv, sizeof sv);
        }
        return 0;
    }
    case FC__CONFIG_SECONDS: {
        double v;
        if (!parse_seconds(val, &v) || v < o->min || v > o->max) {
            snprintf(why, whylen, "is not a number of seconds in %g..%g", o->min, o->max);
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case FC__CONFIG_RATE: {
        char num[32];
        size_t n = strlen(val);
        if (n >= 2 && strcmp(val + n - 2, "/s") == 0) n -= 2;
        double v;
        if (n >= sizeof num) n = sizeof num - 1; /* too long to be a valid number anyway */
        memcpy(num, val, n);
        num[n] = '\0';
        if (!parse_seconds(num, &v) || v < o->min || v > o->max) {
            snprintf(why, whylen, "is not a rate per second in %g..%g", o->min, o->max);
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case FC__CONFIG_STRING:
        if (val[0] == '\0') {
            snprintf(why, whylen, "is empty");
            return -1;
        }
        store(field, o, &val, sizeof val);
        return 0;
    case FC__CONFIG_LIST:
        if (val[0] == '\0') {
            snprintf(why, whylen, "is empty");
            return -1;
        }
        if (!fc__config_list_add(cfg, o, val)) {
            snprintf(why, whylen, "is past the limit of %d %s", o->list_max, o->noun);
            return -1;
        }
        return 0;
    case FC__CONFIG_BOOL: {
        int v;
        if (!parse_bool(val, &v)) {
            snprintf(why, whylen, "is not a boolean (1/true/yes or 0/false/no)");
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case FC__CONFIG_LISTEN:
        if (!parse_listen(cfg, val)) {
            snprintf(why, whylen, "is not ADDR:PORT (IPv4, localhost or [IPv6]; port 0..65535)");
            return -1;
        }
        return 0;
    case FC__CONFIG_SYNC: {
        int v = strcmp(val, "full") == 0 ? 1 : strcmp(val, "normal") == 0 ? 0 : -1;
        if (v < 0) {
            snprintf(why, whylen, "is not one of normal|full");
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case FC__CONFIG_LOG_LEVEL: {
        int v = fc_log_parse_level(val);
        if (v < 0) {
            snprintf(why, whylen, "is not one of debug|info|warn|error|off");
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case FC__CONFIG_LOG_FORMAT: {
        int v = fc_log_parse_format(val);
        if (v < 0) {
            snprintf(why, whylen, "is not one of text|json");
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    }
    snprintf(why, whylen, "has an unknown option type");
    return -1;
}

/* Long values are cut so the line stays readable in a terminal. */
void fc__config_report(const char *prefix, const char *label, const char *val, const char *why)
{
    int max = 80;
    fprintf(stderr, "flowcast: %s%s: \"%.*s%s\" %s\n", prefix, label, max, val,
            strlen(val) > (size_t)max ? "..." : "", why);
}
