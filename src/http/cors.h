/* Cross-origin access: the one "is this Origin allowed" decision (the
 * WebSocket Origin check and CORS both ask it) and the CORS response
 * headers a browser needs to hand a cross-origin answer to its page. */
#ifndef FC_HTTP_CORS_H
#define FC_HTTP_CORS_H

#include <stddef.h>

/* Every preflight may be cached this long (s) by the browser: short enough
 * that a changed --allow-origin takes effect soon. */
#define FC_CORS_MAX_AGE 600

/* True when origin (an Origin header value) may use this server: it is in
 * allow[0..n) (case-insensitive; "*" allows any origin), or its host[:port]
 * equals host (the Host header; NULL when absent), i.e. the same site. */
int fc_http_origin_allowed(const char *origin, const char *host, const char *const *allow, int n);

/* Writes the CORS headers of an actual answer for a request whose Origin,
 * allowed, is origin into out ("Name: value\r\n" lines):
 * Access-Control-Allow-Origin echoing it, Vary: Origin and
 * Access-Control-Expose-Headers. Returns the length written, 0 (nothing)
 * when it does not fit: no real origin is that long. */
size_t fc_http_cors_headers(char *out, size_t outlen, const char *origin);

#endif
