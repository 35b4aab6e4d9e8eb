/* RFC 6455 §5 frame header parser/encoder, payload unmasking and close payload checks. */
#include "ws/frame.h"

#include <string.h>

#include "ws/utf8.h"

#define RSV_BITS 0x70u
#define OPCODE_BITS 0x0Fu
#define CONTROL_BIT 0x08u
#define MAX_CONTROL_PAYLOAD 125u

static int opcode_known(uint8_t op)
{
    switch (op) {
    case FC_WS_OP_CONT:
    case FC_WS_OP_TEXT:
    case FC_WS_OP_BINARY:
    case FC_WS_OP_CLOSE:
    case FC_WS_OP_PING:
    case FC_WS_OP_PONG:
        return 1;
    default:
        return 0;
    }
}

static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static void store_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

/* Checks everything the first two bytes decide, so a bad frame is refused
 * before we wait for (possibly never arriving) extended length bytes. */
static int check_first_bytes(uint8_t b0, uint8_t b1, int require_mask)
{
    uint8_t op = b0 & OPCODE_BITS;
    if ((b0 & RSV_BITS) || !opcode_known(op)) return -FC_WS_CLOSE_PROTOCOL;
    if (require_mask && !(b1 & 0x80)) return -FC_WS_CLOSE_PROTOCOL;
    if (op & CONTROL_BIT) {
        /* §5.5: control frames are never fragmented and carry <= 125 bytes,
         * which also means they never use an extended length. */
        if (!(b0 & 0x80) || (b1 & 0x7F) > MAX_CONTROL_PAYLOAD) return -FC_WS_CLOSE_PROTOCOL;
    }
    return 0;
}

/* Decodes the payload length starting after the 2 fixed bytes. Returns the
 * bytes used by the length (0, 2 or 8), -1 if more input is needed, or the
 * negated close code for a non-minimal or out-of-range encoding. */
static int parse_length(const uint8_t *buf, size_t len, uint64_t *out)
{
    uint8_t len7 = buf[1] & 0x7F;
    if (len7 < 126) {
        *out = len7;
        return 0;
    }
    size_t n = len7 == 126 ? 2 : 8;
    if (len < 2 + n) return -1;
    uint64_t v = load_be(buf + 2, n);
    /* §5.2: "the minimal number of bytes MUST be used", and the 64-bit form
     * has its most significant bit clear. */
    if (n == 2 && v < 126) return -FC_WS_CLOSE_PROTOCOL;
    if (n == 8 && (v >> 63 || v < 65536)) return -FC_WS_CLOSE_PROTOCOL;
    *out = v;
    return (int)n;
}

int fc_ws_header_parse(const uint8_t *buf, size_t len, int require_mask, uint64_t max_payload,
                       fc_ws_header *h)
{
    if (len < 2) return 0;
    int rc = check_first_bytes(buf[0], buf[1], require_mask);
    if (rc < 0) return rc;

    uint64_t plen;
    rc = parse_length(buf, len, &plen);
    if (rc == -1) return 0;
    if (rc < 0) return rc;
    /* All protocol checks are done; the size limit can be enforced before
     * the mask arrives. */
    if (plen > max_payload) return -FC_WS_CLOSE_TOO_BIG;

    size_t hlen = 2 + (size_t)rc;
    int masked = (buf[1] & 0x80) != 0;
    if (masked) {
        if (len < hlen + 4) return 0;
        memcpy(h->mask, buf + hlen, 4);
        hlen += 4;
    } else {
        memset(h->mask, 0, 4);
    }
    h->fin = buf[0] >> 7;
    h->opcode = buf[0] & OPCODE_BITS;
    h->masked = (uint8_t)masked;
    h->header_len = (uint8_t)hlen;
    h->payload_len = plen;
    return (int)hlen;
}

void fc_ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    /* Rotate the mask so m[0] applies to data[0]; 8 is a multiple of 4, so
     * the same 8-byte pattern then fits every aligned 8-byte block of data. */
    uint8_t m[8];
    for (size_t i = 0; i < 8; i++)
        m[i] = mask[(offset + i) & 3];
    uint64_t m64;
    memcpy(&m64, m, sizeof m64);

    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, sizeof w);
        w ^= m64;
        memcpy(data + i, &w, sizeof w);
    }
    for (; i < len; i++)
        data[i] ^= m[i & 7];
}

size_t fc_ws_header_size(uint64_t payload_len)
{
    if (payload_len < 126) return 2;
    if (payload_len <= 0xFFFF) return 4;
    return 10;
}

size_t fc_ws_header_encode(uint8_t out[FC_WS_MAX_HEADER], uint8_t opcode, uint64_t payload_len)
{
    size_t n = fc_ws_header_size(payload_len);
    out[0] = (uint8_t)(0x80 | (opcode & OPCODE_BITS));
    if (n == 2) {
        out[1] = (uint8_t)payload_len;
    } else if (n == 4) {
        out[1] = 126;
        store_be(out + 2, payload_len, 2);
    } else {
        out[1] = 127;
        store_be(out + 2, payload_len, 8);
    }
    return n;
}

/* §7.4: codes a peer may legitimately put on the wire. 1004-1006 and 1015
 * are reserved or local-only; 1012-1014 are IANA-registered since the RFC. */
static int close_code_valid(uint16_t code)
{
    if (code >= 1000 && code <= 1003) return 1;
    if (code >= 1007 && code <= 1014) return 1;
    return code >= 3000 && code <= 4999;
}

int fc_ws_close_parse(const uint8_t *payload, size_t len, uint16_t *code)
{
    if (len == 0) {
        *code = FC_WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (len == 1) return -FC_WS_CLOSE_PROTOCOL;
    uint16_t c = (uint16_t)load_be(payload, 2);
    if (!close_code_valid(c)) return -FC_WS_CLOSE_PROTOCOL;
    if (fc_utf8_validate(FC_UTF8_ACCEPT, payload + 2, len - 2) != FC_UTF8_ACCEPT)
        return -FC_WS_CLOSE_INVALID_DATA;
    *code = c;
    return 0;
}
