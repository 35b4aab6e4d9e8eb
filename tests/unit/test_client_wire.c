/* Unit tests for libflowcast's wire helpers (src/client/wire.c): masked frames, keys, HTTP heads,
 * error bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/internal.h"
#include "ws/frame.h"
#include "ws/handshake.h"

/* Encodes a payload, then parses it as a server would (mask required). */
static void roundtrip(size_t len)
{
    uint8_t *payload = malloc(len + 1), *frame = malloc(len + FCC__WS_MAX_HEADER);
    assert_non_null(payload);
    assert_non_null(frame);
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    const uint8_t mask[4] = {0xA1, 0x02, 0xFF, 0x5C};
    size_t n = fcc__ws_frame_encode(frame, FC_WS_OP_TEXT, payload, len, mask);
    fc_ws_header h;
    int r = fc_ws_header_parse(frame, n, 1, UINT64_MAX >> 1, &h);
    assert_true(r > 0);
    assert_int_equal(h.fin, 1);
    assert_int_equal(h.opcode, FC_WS_OP_TEXT);
    assert_int_equal(h.masked, 1);
    assert_int_equal(h.payload_len, len);
    assert_int_equal(n, (size_t)r + len);
    assert_memory_equal(h.mask, mask, 4);
    if (len) {
        assert_memory_not_equal(frame + r, payload, len < 4 ? len : 4);
        fc_ws_unmask(frame + r, len, h.mask, 0);
        assert_memory_equal(frame + r, payload, len);
    }
    free(payload);
    free(frame);
}

static void frames_are_masked_with_minimal_lengths(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        roundtrip(sizes[i]);
}

static void websocket_key_is_base64_of_16_bytes(void **state)
{
    (void)state;
    uint64_t rng = 99;
    char a[25], b[25];
    fcc__ws_key(&rng, a);
    fcc__ws_key(&rng, b);
    assert_int_equal(strlen(a), 24);
    assert_true(fc_ws_key_valid(a, strlen(a)));
    assert_string_not_equal(a, b);
}

static void http_head_parse(void **state)
{
    (void)state;
    fcc__http_head h;
    const char *partial = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n";
    assert_int_equal(fcc__http_head_parse(partial, strlen(partial), &h), 0);
    const char *ok = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                     "sec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo= \r\n\r\nXX";
    assert_int_equal(fcc__http_head_parse(ok, strlen(ok), &h), 1);
    assert_int_equal(h.status, 101);
    assert_string_equal(h.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(h.head_len, strlen(ok) - 2);
    assert_int_equal(h.content_length, -1);
    const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n";
    assert_int_equal(fcc__http_head_parse(nf, strlen(nf), &h), 1);
    assert_int_equal(h.status, 404);
    assert_int_equal(h.content_length, 12);
    const char *junk = "SSH-2.0-OpenSSH\r\n\r\n";
    assert_int_equal(fcc__http_head_parse(junk, strlen(junk), &h), FCC_EPROTO);
    const char *badlen = "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n";
    assert_int_equal(fcc__http_head_parse(badlen, strlen(badlen), &h), FCC_EPROTO);
}

static void error_body_gives_code_and_message(void **state)
{
    (void)state;
    fcc_error e;
    const char *body =
        "{\"error\":{\"code\":\"not_found\",\"message\":\"no workflow with id \\\"x\\\"\"}}";
    fcc__error_from_body(404, body, strlen(body), &e);
    assert_int_equal(e.http_status, 404);
    assert_string_equal(e.code, "not_found");
    assert_string_equal(e.message, "no workflow with id \"x\"");
    fcc__error_from_body(502, "<html>", 6, &e);
    assert_string_equal(e.code, "");
    assert_string_equal(e.message, "server answered HTTP 502");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_are_masked_with_minimal_lengths),
        cmocka_unit_test(websocket_key_is_base64_of_16_bytes),
        cmocka_unit_test(http_head_parse),
        cmocka_unit_test(error_body_gives_code_and_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
