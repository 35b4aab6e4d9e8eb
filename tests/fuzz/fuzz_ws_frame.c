/* libFuzzer driver for the WebSocket codec: frame stream parsing, unmasking, UTF-8, close payloads.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The codec is compiled into this driver rather than taken from fccore:
 * fccore is built without -fsanitize=fuzzer, so its code would give libFuzzer
 * no coverage feedback. The linker then never pulls these objects from the
 * archive because every symbol is already defined here. */
#include "ws/frame.c"
#include "ws/utf8.c"

#define MAX_PAYLOAD (UINT64_C(1) << 20)

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* xorshift32: deterministic per input, so crashes reproduce. */
static uint32_t next_rand(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9E3779B9u;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return *s = x;
}

/* A complete header must not produce an error or a result on any shorter prefix. */
static void check_prefixes(const uint8_t *buf, int hlen)
{
    fc_ws_header h;
    for (int k = 0; k < hlen; k++)
        CHECK(fc_ws_header_parse(buf, (size_t)k, 1, MAX_PAYLOAD, &h) == 0);
}

static void check_header(const fc_ws_header *h, int rc)
{
    CHECK(rc == 2 || rc == 6 || rc == 8 || rc == 14 || rc == 4 || rc == 10);
    CHECK(h->header_len == rc);
    CHECK(h->masked == 1);
    CHECK(h->opcode <= 2 || (h->opcode >= 8 && h->opcode <= 0xA));
    CHECK(h->payload_len <= MAX_PAYLOAD);
    if (h->opcode >= 8) CHECK(h->fin && h->payload_len <= 125);
}

/* Unmasking in random pieces must equal one-shot unmasking and a bytewise reference. */
static void check_unmask(const uint8_t *p, size_t n, const uint8_t mask[4], uint32_t *rnd,
                         uint8_t *whole)
{
    uint8_t *pieces = malloc(n ? n : 1);
    CHECK(pieces);
    memcpy(whole, p, n);
    memcpy(pieces, p, n);
    fc_ws_unmask(whole, n, mask, 0);
    for (size_t off = 0; off < n;) {
        size_t step = 1 + next_rand(rnd) % 19;
        if (step > n - off) step = n - off;
        fc_ws_unmask(pieces + off, step, mask, off);
        off += step;
    }
    CHECK(memcmp(whole, pieces, n) == 0);
    for (size_t i = 0; i < n; i++)
        CHECK(whole[i] == (p[i] ^ mask[i & 3]));
    free(pieces);
}

/* Whole and two-piece validation must end in the same state. */
static void check_utf8(const uint8_t *p, size_t n, uint32_t *rnd)
{
    uint32_t whole = fc_utf8_validate(FC_UTF8_ACCEPT, p, n);
    size_t cut = n ? next_rand(rnd) % (n + 1) : 0;
    uint32_t st = fc_utf8_validate(FC_UTF8_ACCEPT, p, cut);
    st = fc_utf8_validate(st, p + cut, n - cut);
    CHECK(st == whole);
}

static void check_close(const uint8_t *p, size_t n)
{
    uint16_t code = 0;
    int rc = fc_ws_close_parse(p, n, &code);
    CHECK(rc == 0 || rc == -FC_WS_CLOSE_PROTOCOL || rc == -FC_WS_CLOSE_INVALID_DATA);
    if (rc != 0) return;
    if (n == 0) {
        CHECK(code == FC_WS_CLOSE_NO_STATUS);
        return;
    }
    CHECK((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
          (code >= 3000 && code <= 4999));
    CHECK(fc_utf8_validate(FC_UTF8_ACCEPT, p + 2, n - 2) == FC_UTF8_ACCEPT);
}

/* Encoding then parsing (unmasked allowed) gives back the same frame, or
 * exactly the protocol error the encoded header deserves. */
static void check_roundtrip(uint8_t opcode, uint64_t len)
{
    uint8_t out[FC_WS_MAX_HEADER];
    fc_ws_header h;
    size_t n = fc_ws_header_encode(out, opcode, len);
    CHECK(n == fc_ws_header_size(len));
    int rc = fc_ws_header_parse(out, n, 0, UINT64_MAX, &h);
    int known = opcode <= 2 || (opcode >= 8 && opcode <= 0xA);
    if (!known || (len >> 63) || (opcode >= 8 && len > 125)) {
        CHECK(rc == -FC_WS_CLOSE_PROTOCOL);
        return;
    }
    CHECK(rc == (int)n);
    CHECK(h.fin == 1 && h.opcode == opcode && h.masked == 0 && h.payload_len == len);
}

static void roundtrip_from_input(const uint8_t *data, size_t size)
{
    uint64_t len = 0;
    size_t n = size < 8 ? size : 8;
    for (size_t i = 0; i < n; i++)
        len = (len << 8) | data[i];
    /* Shift by a data-chosen amount so all three size classes are common. */
    uint8_t sel = size > 8 ? data[8] : 0;
    len >>= sel & 63;
    check_roundtrip((uint8_t)(sel >> 4) & 0x0F, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t rnd = (uint32_t)size;
    for (size_t i = 0; i < size && i < 4; i++)
        rnd = rnd * 31u + data[i];
    roundtrip_from_input(data, size);

    size_t pos = 0;
    while (pos < size) {
        fc_ws_header h;
        int rc = fc_ws_header_parse(data + pos, size - pos, 1, MAX_PAYLOAD, &h);
        if (rc == 0) break; /* a server would wait for more bytes */
        if (rc < 0) {
            CHECK(rc == -FC_WS_CLOSE_PROTOCOL || rc == -FC_WS_CLOSE_TOO_BIG);
            break; /* a server would close the connection */
        }
        check_header(&h, rc);
        check_prefixes(data + pos, rc);
        check_roundtrip(h.opcode, h.payload_len);
        pos += (size_t)rc;

        /* Work on what has arrived, as a server does with a partial payload. */
        size_t n = h.payload_len < size - pos ? (size_t)h.payload_len : size - pos;
        uint8_t *payload = malloc(n ? n : 1);
        CHECK(payload);
        check_unmask(data + pos, n, h.mask, &rnd, payload);
        check_utf8(payload, n, &rnd);
        check_close(payload, n);
        free(payload);
        pos += n;
    }
    return 0;
}
