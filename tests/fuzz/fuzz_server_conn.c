/* libFuzzer driver for a whole connection: bytes in from a loopback client,
 * through the real read path (src/server/conn.c: stash, pipelining, the
 * switch to WebSocket or SSE), the HTTP parser, the API (REST, upgrades,
 * stream ops, SSE, long-poll) and the store, to the bytes written back.
 *
 * Input: byte 0 seeds where the stream is cut into separate reads; the rest
 * is what the client sends (seeds: tests/fuzz/corpus/fuzz_server_conn). */
#include <stddef.h>
#include <stdint.h>

#include "server_harness.h"

#define MAX_CUTS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const uint8_t *in = data + 1;
    size_t len = size - 1, cuts[MAX_CUTS], n = 0;
    uint32_t x = data[0] | 0x100u;
    for (size_t at = 0; n < MAX_CUTS && data[0] & 0x80;) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        at += 1 + x % 257;
        if (at >= len) break;
        cuts[n++] = at;
    }
    fzh_session(in, len, cuts, n);
    return 0;
}
