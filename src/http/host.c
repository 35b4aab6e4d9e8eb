/* The allowed-hosts check (see host.h). */
#include "http/host.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* Copies the name part of host (without port and brackets, one trailing dot
 * dropped) into out; *ip6 tells a bracketed literal. 0, or -1 when too long. */
static int host_name(const char *host, char *out, size_t outlen, int *ip6)
{
    const char *start = host, *end;
    *ip6 = host[0] == '[';
    if (*ip6) {
        start++;
        end = strchr(start, ']');
        if (!end) return -1;
    } else {
        end = strchr(host, ':');
        if (!end) end = host + strlen(host);
    }
    size_t n = (size_t)(end - start);
    if (n > 0 && !*ip6 && start[n - 1] == '.') n--;
    if (n == 0 || n >= outlen) return -1;
    memcpy(out, start, n);
    out[n] = '\0';
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

static int loopback_name(const char *name)
{
    return strcasecmp(name, "localhost") == 0 || ends_with(name, ".localhost") ||
           strcasecmp(name, "ip6-localhost") == 0 || strcasecmp(name, "ip6-loopback") == 0;
}

/* Decides for an IP literal: loopback, the listen address, or any behind a wildcard. */
static int ip_allowed(const char *name, int ip6, const char *listen_host)
{
    unsigned char a[16], l[16];
    int family = ip6 ? AF_INET6 : AF_INET;
    if (inet_pton(family, name, a) != 1) return -1; /* not an IP literal: a name */
    static const unsigned char v6_loop[16] = {[15] = 1};
    static const unsigned char v6_any[16] = {0};
    if (!ip6 && a[0] == 127) return 1;
    if (ip6 && memcmp(a, v6_loop, 16) == 0) return 1;
    int lfamily = strchr(listen_host, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(lfamily, listen_host, l) != 1) return 0;
    if (lfamily == AF_INET ? memcmp(l, v6_any, 4) == 0 : memcmp(l, v6_any, 16) == 0) return 1;
    return lfamily == family && memcmp(a, l, family == AF_INET ? 4 : 16) == 0;
}

int fc_http_host_allowed(const char *host, const char *listen_host, const char *const *allow, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(allow[i], "*") == 0) return 1;
    char name[256];
    int ip6;
    if (!host || host_name(host, name, sizeof name, &ip6) != 0) return 0;
    int ip = ip_allowed(name, ip6, listen_host);
    if (ip == 1 || (ip < 0 && loopback_name(name))) return 1;
    for (int i = 0; i < n; i++)
        if (strcasecmp(allow[i], name) == 0 || strcasecmp(allow[i], host) == 0) return 1;
    return 0;
}
