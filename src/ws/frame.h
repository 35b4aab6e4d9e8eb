/* RFC 6455 §5 frame codec: a strict, allocation-free header parser and
 * encoder. Payload bytes are never copied here; the caller owns buffers. */
#ifndef FC_WS_FRAME_H
#define FC_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
    FC_WS_OP_CONT = 0x0,
    FC_WS_OP_TEXT = 0x1,
    FC_WS_OP_BINARY = 0x2,
    FC_WS_OP_CLOSE = 0x8,
    FC_WS_OP_PING = 0x9,
    FC_WS_OP_PONG = 0xA,
};

/* Close codes (RFC 6455 §7.4.1). */
enum {
    FC_WS_CLOSE_NORMAL = 1000,
    FC_WS_CLOSE_GOING_AWAY = 1001,
    FC_WS_CLOSE_PROTOCOL = 1002,
    FC_WS_CLOSE_UNSUPPORTED = 1003,
    FC_WS_CLOSE_NO_STATUS = 1005,
    FC_WS_CLOSE_INVALID_DATA = 1007,
    FC_WS_CLOSE_POLICY = 1008,
    FC_WS_CLOSE_TOO_BIG = 1009,
    FC_WS_CLOSE_INTERNAL = 1011,
    FC_WS_CLOSE_TRY_AGAIN = 1013, /* a limit is reached for now (IANA "Try Again Later") */
    /* Private use (4000-4999): the stream's token expired, or a multi
     * WebSocket opened without one was not authenticated in time. */
    FC_WS_CLOSE_UNAUTHORIZED = 4401,
};

/* Largest header: 2 + 8 (64-bit length) + 4 (mask). */
#define FC_WS_MAX_HEADER 14

typedef struct fc_ws_header {
    uint8_t fin;
    uint8_t opcode;
    uint8_t masked;
    uint8_t mask[4];
    uint8_t header_len; /* bytes the header occupies */
    uint64_t payload_len;
} fc_ws_header;

/* Parses a frame header from a client (frames must be masked when
 * require_mask). Returns:
 *   > 0  the header length; *h is filled;
 *   0    more bytes are needed;
 *   < 0  a protocol violation: the negated close code to send
 *        (-FC_WS_CLOSE_PROTOCOL for RSV bits, unknown opcode, unmasked frame,
 *        fragmented or >125-byte control frame, non-minimal length encoding
 *        or a 64-bit length with the top bit set;
 *        -FC_WS_CLOSE_TOO_BIG when payload_len > max_payload). */
int fc_ws_header_parse(const uint8_t *buf, size_t len, int require_mask, uint64_t max_payload,
                       fc_ws_header *h);

/* XORs data in place with mask, starting at mask position offset % 4
 * (so a payload can be unmasked in pieces). */
void fc_ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* Writes an unmasked server frame header (FIN set) for a payload of
 * payload_len bytes into out; returns its length (2, 4 or 10). */
size_t fc_ws_header_encode(uint8_t out[FC_WS_MAX_HEADER], uint8_t opcode, uint64_t payload_len);

/* Size of the header fc_ws_header_encode writes for payload_len. */
size_t fc_ws_header_size(uint64_t payload_len);

/* Checks a received close payload: empty, or a 2-byte code valid on the
 * wire (1000-1003, 1007-1014, 3000-4999) followed by UTF-8 reason.
 * Returns 0 and sets *code (FC_WS_CLOSE_NO_STATUS when empty), or
 * -FC_WS_CLOSE_PROTOCOL (bad length or code) / -FC_WS_CLOSE_INVALID_DATA (bad UTF-8). */
int fc_ws_close_parse(const uint8_t *payload, size_t len, uint16_t *code);

#endif
