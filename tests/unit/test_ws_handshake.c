/* Unit tests for src/ws/handshake.c: key validation, accept key, header tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ws/handshake.h"

static int key_valid(const char *k)
{
    return fc_ws_key_valid(k, strlen(k));
}

static void test_key_valid(void **state)
{
    (void)state;
    assert_true(key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_true(key_valid("x3JJHMbDL1EzLkh9GBhXDw=="));
    assert_true(key_valid("AAAAAAAAAAAAAAAAAAAAAA=="));
    assert_true(key_valid("+/+/+/+/+/+/+/+/+/+/+w=="));
    assert_true(key_valid("dGhlIHNhbXBsZSBub25jZR==")); /* non-zero padding bits tolerated */
}

static void test_key_invalid(void **state)
{
    (void)state;
    assert_false(key_valid(""));
    assert_false(key_valid("dGhlIHNhbXBsZSBub25jZQ="));   /* 23 chars */
    assert_false(key_valid("dGhlIHNhbXBsZSBub25jZQ===")); /* 25 chars */
    assert_false(key_valid("dGhlIHNhbXBsZSBub25jZQAA"));  /* no padding: 18 bytes */
    assert_false(key_valid("dGhlIHNhbXBsZSBub25jZQA="));  /* one '=': 17 bytes */
    assert_false(key_valid("dGhlIHNhbXBsZSBub25j=Q=="));  /* '=' inside */
    assert_false(key_valid("dGhlIHNhbXBsZSBub25jZ-=="));  /* base64url alphabet */
    assert_false(key_valid("dGhlIHNhbXBsZSBub25jZ_=="));
    assert_false(key_valid("dGhlIHNhbXBsZSBub 25jZ=="));
    assert_false(key_valid("dGhlIHNhbXBsZSBub25jZ\xc3\xa9="));
    /* len is authoritative, even when the buffer continues. */
    assert_false(fc_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 23));
    assert_true(fc_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==xyz", 24));
}

static void test_accept_key_rfc(void **state)
{
    (void)state;
    char out[FC_WS_ACCEPT_LEN + 1];
    memset(out, 'x', sizeof out);
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    fc_ws_accept_key(key, strlen(key), out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(strlen(out), FC_WS_ACCEPT_LEN);
}

static void test_accept_key_other(void **state)
{
    (void)state;
    char out[FC_WS_ACCEPT_LEN + 1];
    /* The handshake example on Wikipedia's WebSocket page. */
    fc_ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out);
    assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    /* Only len bytes of the key count. */
    fc_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==trailing", 24, out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* Oversized keys take the streamed path and still give 28 chars. */
    char big[300];
    memset(big, 'A', sizeof big);
    fc_ws_accept_key(big, sizeof big, out);
    assert_int_equal(strlen(out), FC_WS_ACCEPT_LEN);
    char again[FC_WS_ACCEPT_LEN + 1];
    fc_ws_accept_key(big, sizeof big, again);
    assert_string_equal(out, again);
}

static int has(const char *value, const char *token)
{
    return fc_header_has_token(value, strlen(value), token);
}

static void test_header_tokens(void **state)
{
    (void)state;
    assert_true(has("Upgrade", "upgrade"));
    assert_true(has("keep-alive, Upgrade", "upgrade"));
    assert_true(has("keep-alive,Upgrade", "Upgrade"));
    assert_true(has("UPGRADE , keep-alive", "upgrade"));
    assert_true(has(" \tupgrade\t ", "upgrade"));
    assert_true(has("a,,upgrade,", "upgrade"));
    assert_true(has("websocket", "WebSocket"));
    assert_false(has("", "upgrade"));
    assert_false(has("keep-alive", "upgrade"));
    assert_false(has("upgrades", "upgrade"));
    assert_false(has("x-upgrade", "upgrade"));
    assert_false(has("upgrade-x", "upgrade"));
    assert_false(has("up grade", "upgrade"));
    assert_false(has("upgrade", ""));
    assert_false(has(",,", ""));
    /* len bounds the value: the token past it does not count. */
    assert_false(fc_header_has_token("keep-alive, upgrade", 12, "upgrade"));
    assert_true(fc_header_has_token("keep-alive, upgrade", 19, "upgrade"));
    assert_false(fc_header_has_token("upgrade", 6, "upgrade"));
    assert_false(fc_header_has_token(NULL, 0, "upgrade"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_valid),      cmocka_unit_test(test_key_invalid),
        cmocka_unit_test(test_accept_key_rfc), cmocka_unit_test(test_accept_key_other),
        cmocka_unit_test(test_header_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
