/* libFuzzer driver for the multi-workflow stream ops (src/api/stream.c:
 * subscribe, unsubscribe, subscribe_all, their ids and since maps) from the
 * real entry point: a WebSocket on /api/updates of the in-process server.
 *
 * Input: text messages separated by NUL bytes, each sent as one text frame
 * (at most 16); a message starting with 0x01 is sent in two fragments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "server_harness.h"

#define MAX_MESSAGES 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char head[256];
    size_t hlen = fzh_upgrade(head, sizeof head, "/api/updates");
    uint8_t *buf = malloc(hlen + size + 2 * 14 * (MAX_MESSAGES + 1));
    CHECK(buf);
    memcpy(buf, head, hlen);
    size_t n = hlen;
    const uint8_t *p = data, *end = data + size;
    for (int m = 0; m < MAX_MESSAGES && p <= end; m++) {
        const uint8_t *z = memchr(p, 0, (size_t)(end - p));
        size_t len = (size_t)((z ? z : end) - p);
        if (len && p[0] == 0x01) { /* two fragments */
            size_t half = len / 2;
            n += fzh_frame(buf + n, 0x1, 0, p + 1, half ? half - 1 : 0);
            n += fzh_frame(buf + n, 0x0, 1, p + (half ? half : 1), len - (half ? half : 1));
        } else {
            n += fzh_frame(buf + n, 0x1, 1, p, len);
        }
        if (!z) break;
        p = z + 1;
    }
    fzh_session(buf, n, NULL, 0);
    free(buf);
    return 0;
}
