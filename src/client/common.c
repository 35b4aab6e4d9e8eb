/* libflowcast basics: error texts, URL parsing, the random generator and the backoff rule. */
#include "client/internal.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char *fcc_strerror(int err)
{
    switch (err) {
    case FCC_OK:
        return "success";
    case FCC_EINVAL:
        return "invalid argument";
    case FCC_ENOMEM:
        return "out of memory";
    case FCC_ECONNECT:
        return "connection failed";
    case FCC_ETIMEOUT:
        return "timed out";
    case FCC_EPROTO:
        return "protocol error";
    case FCC_EHTTP:
        return "HTTP error";
    case FCC_ENOTFOUND:
        return "not found";
    case FCC_ERETRIES:
        return "gave up reconnecting";
    case FCC_ETLS:
        return "TLS failed";
    case FCC_EAUTH:
        return "not authorized";
    default:
        return "unknown error";
    }
}

int fcc__url_parse(const char *url, fcc__url *out)
{
    static const char plain[] = "http://", tls[] = "https://";
    const char *p;
    if (url && strncmp(url, plain, sizeof plain - 1) == 0)
        p = url + sizeof plain - 1, out->tls = 0;
    else if (url && strncmp(url, tls, sizeof tls - 1) == 0)
        p = url + sizeof tls - 1, out->tls = 1;
    else
        return FCC_EINVAL;
    size_t hl = 0;
    if (*p == '[') { /* IPv6 literal */
        const char *end = strchr(p, ']');
        if (!end) return FCC_EINVAL;
        hl = (size_t)(end - p - 1);
        if (hl == 0 || hl >= sizeof out->host) return FCC_EINVAL;
        memcpy(out->host, p + 1, hl);
        p = end + 1;
    } else {
        while (p[hl] && p[hl] != ':' && p[hl] != '/')
            hl++;
        if (hl == 0 || hl >= sizeof out->host) return FCC_EINVAL;
        memcpy(out->host, p, hl);
        p += hl;
    }
    out->host[hl] = '\0';
    strcpy(out->port, out->tls ? "443" : "80");
    if (*p == ':') {
        p++;
        size_t n = 0;
        unsigned long v = 0;
        while (isdigit((unsigned char)p[n]) && n < 6)
            v = v * 10 + (unsigned long)(p[n++] - '0');
        if (n == 0 || v == 0 || v > 65535) return FCC_EINVAL;
        snprintf(out->port, sizeof out->port, "%lu", v);
        p += n;
    }
    if (*p == '/') p++;
    if (*p != '\0') return FCC_EINVAL;
    int v6 = strchr(out->host, ':') != NULL;
    snprintf(out->hostport, sizeof out->hostport, "%s%s%s:%s", v6 ? "[" : "", out->host,
             v6 ? "]" : "", out->port);
    return 0;
}

int fcc__urls_parse(const char *list, fcc__urls *out)
{
    memset(out, 0, sizeof *out);
    if (!list) return FCC_EINVAL;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    if (n > FCC__URLS_MAX) return FCC_EINVAL;
    char *block = strdup(list);
    out->url = calloc(n, sizeof *out->url);
    out->text = calloc(n, sizeof *out->text);
    if (!block || !out->url || !out->text) {
        free(block);
        fcc__urls_free(out);
        return FCC_ENOMEM;
    }
    char *p = block;
    for (size_t i = 0; i < n; i++) {
        char *end = strchr(p, ',');
        if (end) *end = '\0';
        while (*p == ' ')
            p++;
        size_t len = strlen(p);
        while (len && p[len - 1] == ' ')
            p[--len] = '\0';
        out->text[i] = p;
        out->n = i + 1;
        if (fcc__url_parse(p, &out->url[i]) != 0) {
            fcc__urls_free(out);
            return FCC_EINVAL;
        }
        out->any_tls |= out->url[i].tls;
        p = end ? end + 1 : p + len;
    }
    return 0;
}

void fcc__urls_free(fcc__urls *u)
{
    if (u->text) free(u->text[0]); /* the block all texts point into */
    free(u->text);
    free(u->url);
    memset(u, 0, sizeof *u);
}

uint64_t fcc__rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

int fcc__token_valid(const char *token)
{
    size_t n = 0;
    for (; token[n]; n++)
        if (n == FCC__TOKEN_MAX || token[n] <= ' ' || token[n] > '~') return 0;
    return n > 0;
}

uint64_t fcc__seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s || s == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ 0x9E3779B97F4A7C15ULL;
    }
    return s ? s : 1;
}

uint64_t fcc_backoff_ceiling(uint64_t initial_ms, uint64_t max_ms, unsigned attempt)
{
    uint64_t c = initial_ms;
    /* Doubling stops at the cap, so it can never overflow. */
    for (unsigned i = 0; i < attempt && c < max_ms; i++)
        c = c > UINT64_MAX / 2 ? UINT64_MAX : c * 2;
    return c < max_ms ? c : max_ms;
}

uint64_t fcc_backoff_delay(uint64_t initial_ms, uint64_t max_ms, unsigned attempt, uint64_t *rng)
{
    uint64_t ceil = fcc_backoff_ceiling(initial_ms, max_ms, attempt);
    if (*rng == 0) *rng = 1;
    uint64_t r = fcc__rand(rng);
    return ceil == UINT64_MAX ? r : r % (ceil + 1);
}

/* Value of one base64url character, or -1. */
static int b64url_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '-') return 62;
    if (ch == '_') return 63;
    return -1;
}

int fcc__jwt_exp(const char *token, int64_t *exp)
{
    const char *p = strchr(token, '.'), *end = p ? strchr(p + 1, '.') : NULL;
    if (!end || (size_t)(end - p) > FCC__TOKEN_MAX) return -1;
    unsigned char json[FCC__TOKEN_MAX];
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (const char *s = p + 1; s < end; s++) {
        int v = b64url_value(*s);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            json[n++] = (unsigned char)(acc >> bits);
        }
    }
    json_t *j = json_loadb((const char *)json, n, 0, NULL);
    json_t *e = json_object_get(j, "exp");
    int r = -1;
    if (json_is_number(e) && json_number_value(e) > 0 && json_number_value(e) < 1e15) {
        *exp = (int64_t)json_number_value(e);
        r = 0;
    }
    json_decref(j);
    return r;
}
