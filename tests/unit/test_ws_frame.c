/* Unit tests for src/ws/frame.c: header parse/encode, unmasking, close payloads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ws/frame.h"

#define MAXP (UINT64_C(1) << 20)

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

static int parse(const uint8_t *buf, size_t len, int require_mask, fc_ws_header *h)
{
    return fc_ws_header_parse(buf, len, require_mask, MAXP, h);
}

static void test_parse_rfc_examples(void **state)
{
    (void)state;
    fc_ws_header h;
    /* RFC 6455 §5.7: single-frame masked text "Hello". */
    const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    assert_int_equal(parse(masked, sizeof masked, 1, &h), 6);
    assert_int_equal(h.fin, 1);
    assert_int_equal(h.opcode, FC_WS_OP_TEXT);
    assert_int_equal(h.masked, 1);
    assert_int_equal(h.header_len, 6);
    assert_int_equal(h.payload_len, 5);
    assert_memory_equal(h.mask, MASK, 4);
    uint8_t payload[5];
    memcpy(payload, masked + 6, 5);
    fc_ws_unmask(payload, 5, h.mask, 0);
    assert_memory_equal(payload, "Hello", 5);

    /* Unmasked "Hel" first fragment, accepted when masks are not required. */
    const uint8_t frag[] = {0x01, 0x03, 'H', 'e', 'l'};
    assert_int_equal(parse(frag, sizeof frag, 0, &h), 2);
    assert_int_equal(h.fin, 0);
    assert_int_equal(h.opcode, FC_WS_OP_TEXT);
    assert_int_equal(h.masked, 0);
    assert_int_equal(h.payload_len, 3);
}

static void test_parse_needs_more(void **state)
{
    (void)state;
    fc_ws_header h;
    const uint8_t m7[] = {0x82, 0x85, 1, 2, 3, 4};
    const uint8_t m16[] = {0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4};
    const uint8_t m64[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
    assert_int_equal(parse(m7, 0, 1, &h), 0);
    for (size_t n = 1; n < sizeof m7; n++)
        assert_int_equal(parse(m7, n, 1, &h), 0);
    assert_int_equal(parse(m7, sizeof m7, 1, &h), 6);
    for (size_t n = 1; n < sizeof m16; n++)
        assert_int_equal(parse(m16, n, 1, &h), 0);
    assert_int_equal(parse(m16, sizeof m16, 1, &h), 8);
    assert_int_equal(h.payload_len, 256);
    for (size_t n = 1; n < sizeof m64; n++)
        assert_int_equal(parse(m64, n, 1, &h), 0);
    assert_int_equal(parse(m64, sizeof m64, 1, &h), 14);
    assert_int_equal(h.payload_len, 65536);
}

static void test_parse_rsv_bits(void **state)
{
    (void)state;
    fc_ws_header h;
    for (uint8_t rsv = 0x10; rsv <= 0x70; rsv += 0x10) {
        const uint8_t b[] = {(uint8_t)(0x81 | rsv), 0x80, 1, 2, 3, 4};
        assert_int_equal(parse(b, sizeof b, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    }
}

static void test_parse_opcodes(void **state)
{
    (void)state;
    fc_ws_header h;
    for (uint8_t op = 0; op < 16; op++) {
        const uint8_t b[] = {(uint8_t)(0x80 | op), 0x80, 1, 2, 3, 4};
        int known = op <= 2 || (op >= 8 && op <= 0xA);
        int rc = parse(b, sizeof b, 1, &h);
        if (known) {
            assert_int_equal(rc, 6);
            assert_int_equal(h.opcode, op);
        } else {
            assert_int_equal(rc, -FC_WS_CLOSE_PROTOCOL);
        }
    }
}

static void test_parse_unmasked(void **state)
{
    (void)state;
    fc_ws_header h;
    const uint8_t b[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    assert_int_equal(parse(b, sizeof b, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(parse(b, 2, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(parse(b, sizeof b, 0, &h), 2);
}

static void test_parse_control_frames(void **state)
{
    (void)state;
    fc_ws_header h;
    const uint8_t ping_nofin[] = {0x09, 0x80, 1, 2, 3, 4};
    const uint8_t close_nofin[] = {0x08, 0x80, 1, 2, 3, 4};
    const uint8_t ping125[] = {0x89, 0x80 | 125, 1, 2, 3, 4};
    const uint8_t pong126[] = {0x8A, 0x80 | 126, 0, 126, 1, 2, 3, 4};
    const uint8_t close127[] = {0x88, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
    assert_int_equal(parse(ping_nofin, sizeof ping_nofin, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(parse(close_nofin, sizeof close_nofin, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(parse(ping125, sizeof ping125, 1, &h), 6);
    assert_int_equal(h.payload_len, 125);
    assert_int_equal(parse(pong126, sizeof pong126, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    /* Rejected from the first two bytes, without waiting for the length. */
    assert_int_equal(parse(pong126, 2, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(parse(close127, sizeof close127, 1, &h), -FC_WS_CLOSE_PROTOCOL);
}

static void test_parse_boundary_lengths(void **state)
{
    (void)state;
    fc_ws_header h;
    const uint8_t l125[] = {0x82, 0x80 | 125, 1, 2, 3, 4};
    const uint8_t l126[] = {0x82, 0x80 | 126, 0x00, 0x7E, 1, 2, 3, 4};
    const uint8_t l65535[] = {0x82, 0x80 | 126, 0xFF, 0xFF, 1, 2, 3, 4};
    const uint8_t l65536[] = {0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
    assert_int_equal(parse(l125, sizeof l125, 1, &h), 6);
    assert_int_equal(h.payload_len, 125);
    assert_int_equal(parse(l126, sizeof l126, 1, &h), 8);
    assert_int_equal(h.payload_len, 126);
    assert_int_equal(parse(l65535, sizeof l65535, 1, &h), 8);
    assert_int_equal(h.payload_len, 65535);
    assert_int_equal(parse(l65536, sizeof l65536, 1, &h), 14);
    assert_int_equal(h.payload_len, 65536);
    assert_int_equal(h.header_len, 14);
    assert_memory_equal(h.mask, ((uint8_t[]){1, 2, 3, 4}), 4);
}

static void test_parse_non_minimal(void **state)
{
    (void)state;
    fc_ws_header h;
    const uint8_t l16_0[] = {0x82, 0xFE, 0x00, 0x00, 1, 2, 3, 4};
    const uint8_t l16_125[] = {0x82, 0xFE, 0x00, 0x7D, 1, 2, 3, 4};
    const uint8_t l64_125[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x7D, 1, 2, 3, 4};
    const uint8_t l64_65535[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4};
    assert_int_equal(parse(l16_0, sizeof l16_0, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(parse(l16_125, sizeof l16_125, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(parse(l64_125, sizeof l64_125, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(parse(l64_65535, sizeof l64_65535, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    /* Decided once the length is complete, before the mask arrives. */
    assert_int_equal(parse(l16_125, 4, 1, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(parse(l64_65535, 10, 1, &h), -FC_WS_CLOSE_PROTOCOL);
}

static void test_parse_msb_length(void **state)
{
    (void)state;
    fc_ws_header h;
    const uint8_t msb[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    const uint8_t all[] = {0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4};
    /* Even with no limit, the top bit is a protocol error, not "too big". */
    assert_int_equal(fc_ws_header_parse(msb, sizeof msb, 1, UINT64_MAX, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(fc_ws_header_parse(all, sizeof all, 1, UINT64_MAX, &h), -FC_WS_CLOSE_PROTOCOL);
    assert_int_equal(fc_ws_header_parse(msb, sizeof msb, 1, 10, &h), -FC_WS_CLOSE_PROTOCOL);
}

static void test_parse_too_big(void **state)
{
    (void)state;
    fc_ws_header h;
    const uint8_t l126[] = {0x82, 0xFE, 0x00, 0x7E, 1, 2, 3, 4};
    const uint8_t l_max64[] = {0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF,
                               0xFF, 0xFF, 0xFF, 1,    2,    3,    4};
    assert_int_equal(fc_ws_header_parse(l126, sizeof l126, 1, 126, &h), 8);
    assert_int_equal(fc_ws_header_parse(l126, sizeof l126, 1, 125, &h), -FC_WS_CLOSE_TOO_BIG);
    /* Known once the length is complete, even before the mask. */
    assert_int_equal(fc_ws_header_parse(l126, 4, 1, 125, &h), -FC_WS_CLOSE_TOO_BIG);
    assert_int_equal(fc_ws_header_parse(l_max64, sizeof l_max64, 1, MAXP, &h),
                     -FC_WS_CLOSE_TOO_BIG);
    assert_int_equal(fc_ws_header_parse(l_max64, sizeof l_max64, 1, UINT64_MAX, &h), 14);
    assert_int_equal(h.payload_len, INT64_MAX);
    /* Protocol errors take precedence over the size limit. */
    const uint8_t bad[] = {0x82, 0xFE, 0x00, 0x7D, 1, 2, 3, 4};
    assert_int_equal(fc_ws_header_parse(bad, sizeof bad, 1, 0, &h), -FC_WS_CLOSE_PROTOCOL);
    const uint8_t rsv[] = {0xC2, 0x85, 1, 2, 3, 4};
    assert_int_equal(fc_ws_header_parse(rsv, sizeof rsv, 1, 0, &h), -FC_WS_CLOSE_PROTOCOL);
}

static void check_encode(uint64_t len, size_t want_size, const uint8_t *want)
{
    uint8_t out[FC_WS_MAX_HEADER];
    fc_ws_header h;
    assert_int_equal(fc_ws_header_size(len), want_size);
    assert_int_equal(fc_ws_header_encode(out, FC_WS_OP_BINARY, len), want_size);
    assert_memory_equal(out, want, want_size);
    assert_int_equal(fc_ws_header_parse(out, want_size, 0, UINT64_MAX, &h), (int)want_size);
    assert_int_equal(h.payload_len, len);
    assert_int_equal(h.fin, 1);
    assert_int_equal(h.masked, 0);
    assert_int_equal(h.opcode, FC_WS_OP_BINARY);
}

static void test_encode_sizes(void **state)
{
    (void)state;
    check_encode(0, 2, (const uint8_t[]){0x82, 0});
    check_encode(125, 2, (const uint8_t[]){0x82, 125});
    check_encode(126, 4, (const uint8_t[]){0x82, 126, 0x00, 0x7E});
    check_encode(65535, 4, (const uint8_t[]){0x82, 126, 0xFF, 0xFF});
    check_encode(65536, 10, (const uint8_t[]){0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0});
    check_encode(UINT64_C(0x0102030405060708), 10,
                 (const uint8_t[]){0x82, 127, 1, 2, 3, 4, 5, 6, 7, 8});

    uint8_t out[FC_WS_MAX_HEADER];
    assert_int_equal(fc_ws_header_encode(out, FC_WS_OP_TEXT, 5), 2);
    assert_memory_equal(out, ((uint8_t[]){0x81, 0x05}), 2);
    assert_int_equal(fc_ws_header_encode(out, FC_WS_OP_CLOSE, 2), 2);
    assert_memory_equal(out, ((uint8_t[]){0x88, 0x02}), 2);
}

static void unmask_ref(uint8_t *d, size_t len, const uint8_t mask[4], uint64_t off)
{
    for (size_t i = 0; i < len; i++)
        d[i] ^= mask[(off + i) % 4];
}

static void test_unmask_matches_reference(void **state)
{
    (void)state;
    uint8_t buf[64 + 1], ref[64 + 1];
    for (size_t len = 0; len <= 64; len++) {
        for (uint64_t off = 0; off < 8; off++) {
            for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = (uint8_t)(i * 7 + len);
            memcpy(ref, buf, sizeof buf);
            /* Start one byte in so the 8-byte loads are unaligned. */
            fc_ws_unmask(buf + 1, len, MASK, off);
            unmask_ref(ref + 1, len, MASK, off);
            assert_memory_equal(buf, ref, sizeof buf);
        }
    }
}

static void test_unmask_in_pieces(void **state)
{
    (void)state;
    uint8_t whole[100], pieces[100];
    for (size_t i = 0; i < sizeof whole; i++)
        whole[i] = (uint8_t)(i ^ 0x5A);
    memcpy(pieces, whole, sizeof whole);
    fc_ws_unmask(whole, sizeof whole, MASK, 0);
    const size_t cuts[] = {0, 1, 4, 11, 12, 29, 30, 63, 100};
    for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++)
        fc_ws_unmask(pieces + cuts[c], cuts[c + 1] - cuts[c], MASK, cuts[c]);
    assert_memory_equal(whole, pieces, sizeof whole);
    /* Large offsets only matter modulo 4. */
    uint8_t a[9] = {0}, b[9] = {0};
    fc_ws_unmask(a, sizeof a, MASK, UINT64_C(0xFFFFFFFFFFFFFFFD));
    fc_ws_unmask(b, sizeof b, MASK, 1);
    assert_memory_equal(a, b, sizeof a);
}

static void test_unmask_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[37];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)i;
    fc_ws_unmask(buf, sizeof buf, MASK, 3);
    fc_ws_unmask(buf, sizeof buf, MASK, 3);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], i);
}

static int close_parse(const void *p, size_t len, uint16_t *code)
{
    return fc_ws_close_parse(p, len, code);
}

static void test_close_empty_and_short(void **state)
{
    (void)state;
    uint16_t code = 0;
    assert_int_equal(close_parse("", 0, &code), 0);
    assert_int_equal(code, FC_WS_CLOSE_NO_STATUS);
    assert_int_equal(close_parse("\x03", 1, &code), -FC_WS_CLOSE_PROTOCOL);
}

static int close_code_result(unsigned c)
{
    uint8_t p[2] = {(uint8_t)(c >> 8), (uint8_t)c};
    uint16_t code = 0;
    int rc = fc_ws_close_parse(p, 2, &code);
    if (rc == 0) assert_int_equal(code, c);
    return rc;
}

static void test_close_codes(void **state)
{
    (void)state;
    const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                           1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    const unsigned bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                            1016, 1100, 2000, 2999, 5000, 6000, 65535};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_int_equal(close_code_result(ok[i]), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(close_code_result(bad[i]), -FC_WS_CLOSE_PROTOCOL);
    /* Exhaustive: exactly the documented ranges are accepted. */
    for (unsigned c = 0; c <= 0xFFFF; c++) {
        int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
        assert_int_equal(close_code_result(c), want ? 0 : -FC_WS_CLOSE_PROTOCOL);
    }
}

static void test_close_reason(void **state)
{
    (void)state;
    uint16_t code = 0;
    assert_int_equal(close_parse("\x03\xE8ok", 4, &code), 0);
    assert_int_equal(code, 1000);
    assert_int_equal(close_parse("\x03\xE8\xCE\xBA\xE1\xBD\xB9", 7, &code), 0);
    assert_int_equal(close_parse("\x03\xE8\xCE", 3, &code), -FC_WS_CLOSE_INVALID_DATA);
    assert_int_equal(close_parse("\x03\xE8\xC0\x80", 4, &code), -FC_WS_CLOSE_INVALID_DATA);
    assert_int_equal(close_parse("\x03\xE8\xED\xA0\x80", 5, &code), -FC_WS_CLOSE_INVALID_DATA);
    /* A bad code wins over a bad reason. */
    assert_int_equal(close_parse("\x03\xED\xFF", 3, &code), -FC_WS_CLOSE_PROTOCOL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rfc_examples),
        cmocka_unit_test(test_parse_needs_more),
        cmocka_unit_test(test_parse_rsv_bits),
        cmocka_unit_test(test_parse_opcodes),
        cmocka_unit_test(test_parse_unmasked),
        cmocka_unit_test(test_parse_control_frames),
        cmocka_unit_test(test_parse_boundary_lengths),
        cmocka_unit_test(test_parse_non_minimal),
        cmocka_unit_test(test_parse_msb_length),
        cmocka_unit_test(test_parse_too_big),
        cmocka_unit_test(test_encode_sizes),
        cmocka_unit_test(test_unmask_matches_reference),
        cmocka_unit_test(test_unmask_in_pieces),
        cmocka_unit_test(test_unmask_roundtrip),
        cmocka_unit_test(test_close_empty_and_short),
        cmocka_unit_test(test_close_codes),
        cmocka_unit_test(test_close_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
