/* The allowed-hosts check against DNS rebinding: a page on evil.example whose
 * name resolves to 127.0.0.1 reaches the server with "Host: evil.example"
 * (and a matching Origin), so only Host tells it apart from a real client. */
#ifndef FC_HTTP_HOST_H
#define FC_HTTP_HOST_H

/* True when host (a well-formed Host header value: name or IP literal, with
 * or without a port) may be served. Allowed are: every name in allow[0..n)
 * (case-insensitive; "*" allows any host), the loopback names (localhost,
 * *.localhost, ip6-localhost, ip6-loopback), loopback IP literals (127/8,
 * [::1]) and listen_host, the address the server listens on (without
 * brackets; a wildcard 0.0.0.0 or :: allows every IP literal, since the
 * server then answers on all of the machine's addresses). An IP literal can
 * never be rebound: the client connected to that very address. */
int fc_http_host_allowed(const char *host, const char *listen_host, const char *const *allow,
                         int n);

#endif
