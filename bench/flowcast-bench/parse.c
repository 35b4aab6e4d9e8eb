/* Message-field and HTTP response parsers for flowcast-bench (see parse.h). */
#include "parse.h"

#include <string.h>
#include <strings.h>

static const char *find_key(const char *buf, size_t len, const char *key, size_t klen)
{
    /* Looks for "key": ; klen + 3 bytes. */
    const char *p = buf, *end = buf + len;
    while (p + klen + 3 <= end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (q == NULL || q + klen + 3 > end) return NULL;
        if (memcmp(q + 1, key, klen) == 0 && q[klen + 1] == '"' && q[klen + 2] == ':')
            return q + klen + 3;
        p = q + 1;
    }
    return NULL;
}

static int read_u64(const char *p, const char *end, uint64_t *out)
{
    while (p < end && (*p == ' ' || *p == '"'))
        p++;
    if (p >= end || *p < '0' || *p > '9') return -1;
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    *out = v;
    return 0;
}

int fcb_json_u64(const char *buf, size_t len, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    const char *v = find_key(buf, len, key, klen);
    if (v == NULL) return -1;
    return read_u64(v, buf + len, out);
}

/* The last "key": in buf (keys near the end are found in a few steps). */
static const char *rfind_key(const char *buf, size_t len, const char *key, size_t klen)
{
    if (len < klen + 3) return NULL;
    for (const char *q = buf + len - klen - 3; q >= buf; q--) {
        if (*q == '"' && q[klen + 1] == '"' && q[klen + 2] == ':' && memcmp(q + 1, key, klen) == 0)
            return q + klen + 3;
    }
    return NULL;
}

/* Hot path: memmem for "message": (after the leading fields) and a backward
 * scan for "seq": and "p": (the last fields of both payload shapes). The
 * rare "resync" flag is looked for only by fcb_msg_resync. */
int fcb_msg_parse(const char *buf, size_t len, fcb_msg *m)
{
    memset(m, 0, sizeof(*m));
    const char *end = buf + len;
    uint64_t v;
    const char *p = memmem(buf, len, "\"message\":", 10);
    if (p != NULL && read_u64(p + 10, end, &v) == 0) {
        m->sent_ns = v;
        m->has_sent = 1;
    }
    /* Payloads end with ...,"seq":N} (flowcast) or ...,"seq":N,"p":K} (peers). */
    size_t tail = len > 48 ? 48 : len;
    const char *t = end - tail;
    p = rfind_key(t, tail, "p", 1);
    if (p != NULL && read_u64(p, end, &v) == 0) m->pub = (uint32_t)v;
    p = rfind_key(t, tail, "seq", 3);
    if (p == NULL) p = rfind_key(buf, len, "seq", 3);
    if (p != NULL && read_u64(p, end, &v) == 0) {
        m->seq = v;
        m->has_seq = 1;
        return 0;
    }
    return -1;
}

int fcb_msg_resync(const char *buf, size_t len)
{
    return memmem(buf, len, "\"resync\":true", 13) != NULL;
}

static const char *find_crlfcrlf(const char *buf, size_t len)
{
    if (len < 4) return NULL;
    const char *p = buf, *end = buf + len;
    while (p + 4 <= end) {
        const char *q = memchr(p, '\r', (size_t)(end - p));
        if (q == NULL || q + 4 > end) return NULL;
        if (q[1] == '\n' && q[2] == '\r' && q[3] == '\n') return q;
        p = q + 1;
    }
    return NULL;
}

static int parse_size(const char *p, const char *end, int hex, size_t *out)
{
    size_t v = 0;
    int n = 0;
    for (; p < end; p++, n++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (hex && *p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (hex && *p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            break;
        if (v > (SIZE_MAX >> 4)) return -1;
        v = v * (hex ? 16u : 10u) + (size_t)d;
    }
    if (n == 0) return -1;
    *out = v;
    return n;
}

/* Walks a chunked body starting at p; returns 1 and the total body bytes
 * on the wire in *wire when the terminating chunk and trailer are there,
 * 0 when more bytes are needed, -1 when malformed. */
static int chunked_len(const char *p, const char *end, size_t *wire, size_t *first_off,
                       size_t *first_len)
{
    const char *start = p;
    int first = 1;
    for (;;) {
        size_t sz;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) return 0;
        if (parse_size(p, nl, 1, &sz) < 0) return -1;
        const char *data = nl + 1;
        if (first) {
            *first_off = (size_t)(data - start);
            *first_len = sz;
            first = 0;
        }
        if (sz == 0) {
            /* Trailer section ends with an empty line. */
            const char *q = data;
            for (;;) {
                const char *e = memchr(q, '\n', (size_t)(end - q));
                if (e == NULL) return 0;
                if (e == q || (e == q + 1 && *q == '\r')) {
                    *wire = (size_t)(e + 1 - start);
                    return 1;
                }
                q = e + 1;
            }
        }
        if ((size_t)(end - data) < sz + 2) return 0;
        p = data + sz + 2;
    }
}

int fcb_http_resp_parse(const char *buf, size_t len, int head_only, fcb_http_resp *r)
{
    memset(r, 0, sizeof(*r));
    if (len >= 5 && memcmp(buf, "HTTP/", 5) != 0) return -1;
    const char *hend = find_crlfcrlf(buf, len);
    if (hend == NULL) return len > 65536 ? -1 : 0;
    const char *end = hend + 4;
    r->head_len = (size_t)(end - buf);
    /* Status line: HTTP/1.x NNN reason */
    const char *sp = memchr(buf, ' ', r->head_len);
    if (sp == NULL || sp + 4 > hend) return -1;
    size_t status;
    if (parse_size(sp + 1, sp + 4, 0, &status) != 3) return -1;
    r->status = (int)status;
    r->body_off = r->head_len;
    if (head_only || r->status < 200 || r->status == 204 || r->status == 304) {
        r->total = r->head_len;
        return 1;
    }
    int have_len = 0, chunked = 0;
    size_t clen = 0;
    const char *line = (const char *)memchr(buf, '\n', r->head_len) + 1;
    while (line < hend) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL) break;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon != NULL) {
            size_t nlen = (size_t)(colon - line);
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            if (nlen == 14 && strncasecmp(line, "content-length", 14) == 0) {
                if (parse_size(v, eol, 0, &clen) < 0) return -1;
                have_len = 1;
            } else if (nlen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
                if ((size_t)(eol - v) >= 7 && strncasecmp(v, "chunked", 7) == 0) chunked = 1;
            }
        }
        line = eol + 1;
    }
    if (chunked) {
        size_t wire, foff = 0, flen = 0;
        int rc = chunked_len(end, buf + len, &wire, &foff, &flen);
        if (rc <= 0) return rc;
        r->body_off = r->head_len + foff;
        r->body_len = flen;
        r->total = r->head_len + wire;
        return 1;
    }
    if (!have_len) return -1; /* keep-alive responses must be framed */
    if (len - r->head_len < clen) return 0;
    r->body_len = clen;
    r->total = r->head_len + clen;
    return 1;
}
