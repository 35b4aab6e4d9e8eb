/* Cross-origin access (see cors.h). */
#include "http/cors.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int fc_http_origin_allowed(const char *origin, const char *host, const char *const *allow, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(allow[i], "*") == 0 || strcasecmp(allow[i], origin) == 0) return 1;
    /* Same host: the origin's host[:port] equals the Host header. */
    const char *p = strstr(origin, "://");
    return host && p && strcasecmp(p + 3, host) == 0;
}

size_t fc_http_cors_headers(char *out, size_t outlen, const char *origin)
{
    /* The value is echoed, never "*": a page sending credentials (an
     * Authorization header) is refused a wildcard by the browser. Clients
     * read Location (create), Idempotent-Replayed (retries), Retry-After
     * and WWW-Authenticate (refusals): without the expose list a page sees
     * only the CORS-safelisted headers. */
    int len = snprintf(out, outlen,
                       "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                       "Access-Control-Expose-Headers: Location, Idempotent-Replayed, "
                       "Retry-After, WWW-Authenticate\r\n",
                       origin);
    if (len < 0 || (size_t)len >= outlen) return 0;
    return (size_t)len;
}
