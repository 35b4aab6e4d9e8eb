/* libflowcast wire helpers: masked WebSocket frames, handshake keys, HTTP response heads and error
 * bodies. */
#include "client/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

size_t fcc__ws_frame_encode(uint8_t *out, uint8_t opcode, const void *payload, size_t len,
                            const uint8_t mask[4])
{
    size_t n = 0;
    out[n++] = (uint8_t)(0x80u | (opcode & 0x0Fu));
    if (len < 126) {
        out[n++] = (uint8_t)(0x80u | len);
    } else if (len <= 0xFFFF) {
        out[n++] = 0x80u | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = 0x80u | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + n, mask, 4);
    n += 4;
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        out[n + i] = src[i] ^ mask[i & 3];
    return n + len;
}

void fcc__ws_key(uint64_t *rng, char key[25])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t raw[18] = {0}; /* 16 random bytes, padded to a multiple of 3 */
    uint64_t a = fcc__rand(rng), b = fcc__rand(rng);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    size_t o = 0;
    for (size_t i = 0; i < 18; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        key[o++] = b64[(v >> 18) & 63];
        key[o++] = b64[(v >> 12) & 63];
        key[o++] = b64[(v >> 6) & 63];
        key[o++] = b64[v & 63];
    }
    key[22] = '=';
    key[23] = '=';
    key[24] = '\0';
}

/* Copies the value of header line [p, end) into out when its name matches. */
static int header_value(const char *p, const char *end, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if ((size_t)(end - p) <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':') return 0;
    p += nl + 1;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t n = (size_t)(end - p);
    if (n >= cap) n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 1;
}

int fcc__http_head_parse(const char *buf, size_t len, fcc__http_head *h)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) return len > 65536 ? FCC_EPROTO : 0;
    memset(h, 0, sizeof *h);
    h->head_len = (size_t)(end - buf) + 4;
    h->content_length = -1;
    if (h->head_len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') return FCC_EPROTO;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') return FCC_EPROTO;
        st = st * 10 + (buf[i] - '0');
    }
    h->status = st;
    const char *p = (const char *)memchr(buf, '\n', h->head_len) + 1;
    while (p < end + 2) {
        const char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        if (!eol) break;
        char v[64];
        if (header_value(p, eol, "Content-Length", v, sizeof v)) {
            char *e;
            long long cl = strtoll(v, &e, 10);
            if (*e || cl < 0) return FCC_EPROTO;
            h->content_length = cl;
        } else {
            header_value(p, eol, "Sec-WebSocket-Accept", h->accept, sizeof h->accept);
        }
        p = eol + 2;
    }
    return 1;
}

void fcc__error_from_body(int status, const char *body, size_t len, fcc_error *err)
{
    if (!err) return;
    err->http_status = status;
    err->code[0] = '\0';
    snprintf(err->message, sizeof err->message, "server answered HTTP %d", status);
    json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    /* {"error":{"code":..,"message":..}}, or the short {"error":"code"}. */
    const char *code =
        json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code) snprintf(err->code, sizeof err->code, "%s", code);
    if (msg && *msg) snprintf(err->message, sizeof err->message, "%s", msg);
    json_decref(j);
}
