/* The bus's URLs without their credentials: what may be logged or shown. */
#include "bus/bus.h"

#include <stdio.h>
#include <string.h>

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
