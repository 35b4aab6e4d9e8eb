/* The bus's URLs without their credentials: what may be logged or shown. */
#include "bus/bus.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void fc_bus_urls_mask(const char *urls, char *out, size_t len)
{
    size_t o = 0;
    if (len == 0) return;
    out[0] = '\0';
    for (const char *item = urls; *item;) {
        size_t n = strcspn(item, ",");
        /* nats.c takes "user:pass@host:port" without a scheme too. */
        const char *host = item;
        for (const char *q = item; q + 3 <= item + n; q++)
            if (memcmp(q, "://", 3) == 0) {
                host = q + 3;
                break;
            }
        /* The userinfo ends at the URL's last '@', as nats.c reads it: a
         * password may hold '@', ':' or '/' unescaped. */
        const char *at = NULL;
        for (const char *q = host; q < item + n; q++)
            if (*q == '@') at = q;
        int w = at ? snprintf(out + o, len - o, "%.*s***%.*s", (int)(host - item), item,
                              (int)(item + n - at), at)
                   : snprintf(out + o, len - o, "%.*s", (int)n, item);
        if (w < 0 || (size_t)w >= len - o) return; /* truncated: out is still terminated */
        o += (size_t)w;
        item += n;
        size_t sep = strspn(item, ",");
        w = snprintf(out + o, len - o, "%.*s", (int)sep, item);
        if (w < 0 || (size_t)w >= len - o) return;
        o += (size_t)w;
        item += sep;
    }
}

/* Why the host:port part of one URL (h, n bytes, after any credentials) is
 * unusable, or NULL. nats.c would take most of these and then retry an
 * address that can never answer, for ever, with the node up and unready. */
static const char *host_port_error(const char *h, size_t n)
{
    const char *end = h + n, *colon;
    if (n > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', n);
        if (!close) return "an IPv6 address without its closing ']'";
        if (close == h + 1) return "an empty IPv6 address";
        colon = close + 1 < end ? close + 1 : NULL;
        if (colon && *colon != ':') return "text after the IPv6 address: only :port may follow";
    } else {
        colon = memchr(h, ':', n);
        if (colon == h || n == 0) return "no host";
    }
    for (const char *q = h; q < (colon ? colon : end); q++)
        if (!isalnum((unsigned char)*q) && !strchr(".-_[]:", *q))
            return "a host may hold only letters, digits, '.', '-', '_' (or an IPv6 address in [])";
    if (!colon) return NULL;
    size_t digits = (size_t)(end - colon - 1);
    if (digits == 0 || digits > 5 || strspn(colon + 1, "0123456789") < digits)
        return "the port must be a number from 1 to 65535, and nothing may follow it";
    unsigned port = 0;
    for (const char *q = colon + 1; q < end; q++)
        port = port * 10 + (unsigned)(*q - '0');
    return port >= 1 && port <= 65535 ? NULL : "the port must be a number from 1 to 65535";
}

int fc_bus_urls_check(const char *urls, char *why, size_t len)
{
    int i = 0;
    for (const char *item = urls;; item++) {
        size_t n = strcspn(item, ",");
        const char *problem = NULL;
        i++;
        while (n > 0 && *item == ' ') { /* "a, b", as nats.c reads it */
            item++;
            n--;
        }
        const char *host = item;
        for (const char *q = item; q + 3 <= item + n; q++)
            if (memcmp(q, "://", 3) == 0) {
                host = q + 3;
                break;
            }
        if (i > FC_BUS_URLS_MAX) {
            snprintf(why, len, "more than %d URLs", FC_BUS_URLS_MAX);
            return -1;
        }
        if (n == 0) {
            snprintf(why, len, "URL %d is empty (give 1 to %d URLs separated by commas)", i,
                     FC_BUS_URLS_MAX);
            return -1;
        }
        for (const char *q = item; q < item + n; q++)
            if (iscntrl((unsigned char)*q)) { /* not shown: it could break the line */
                snprintf(why, len, "URL %d holds a control character", i);
                return -1;
            }
        if (host != item && !((host - item == 7 && strncasecmp(item, "nats://", 7) == 0) ||
                              (host - item == 6 && strncasecmp(item, "tls://", 6) == 0)))
            problem = "the scheme must be nats:// or tls://";
        if (!problem) {
            const char *at = NULL;
            for (const char *q = host; q < item + n; q++)
                if (*q == '@') at = q;
            if (at) host = at + 1;
            problem = host_port_error(host, (size_t)(item + n - host));
        }
        if (problem) {
            char one[512], shown[512];
            snprintf(one, sizeof one, "%.*s", (int)(n < sizeof one ? n : sizeof one - 1), item);
            fc_bus_urls_mask(one, shown, sizeof shown);
            snprintf(why, len, "URL %d: %s: %s", i, problem, shown);
            return -1;
        }
        item += n;
        if (!*item) return 0;
    }
}
