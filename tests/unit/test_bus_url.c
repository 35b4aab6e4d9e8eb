/* Unit tests for src/bus/url.c: the bus's URLs with their credentials
 * masked, for logs, /readyz and error messages, and checked before use. */
#include "bus/bus.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

static void check(const char *in, const char *want)
{
    char out[256];
    fc_bus_urls_mask(in, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_masks_every_form(void **state)
{
    (void)state;
    check("nats://127.0.0.1:4222", "nats://127.0.0.1:4222");
    check("nats://node:s3cret@127.0.0.1:4222", "nats://***@127.0.0.1:4222");
    check("tls://t0ken@nats.example:4222", "tls://***@nats.example:4222");
    check("node:s3cret@127.0.0.1:4222", "***@127.0.0.1:4222"); /* nats.c adds nats:// */
    check("nats://a:p@ss@h:1,nats://h2:2, tls://u:v@h3:3",
          "nats://***@h:1,nats://h2:2, tls://***@h3:3");
    /* nats.c takes the last '@' of a URL: a password may hold '/' and ' '. */
    check("nats://u:pa/s s@h:1", "nats://***@h:1");
    check("", "");
    /* nats.c's error texts go through it too: no URL, nothing changed. */
    check("SSL handshake error: 62:hostname mismatch", "SSL handshake error: 62:hostname mismatch");
}

static void test_truncation_never_shows_a_credential(void **state)
{
    (void)state;
    const char *in = "nats://node:s3cret@127.0.0.1:4222";
    for (size_t len = 1; len < 40; len++) {
        char out[40];
        memset(out, 'x', sizeof out);
        fc_bus_urls_mask(in, out, len);
        assert_true(strlen(out) < len);
        assert_null(strstr(out, "s3"));
        assert_null(strstr(out, "node"));
    }
}

static void refused(const char *urls, const char *want)
{
    char why[256];
    assert_int_equal(fc_bus_urls_check(urls, why, sizeof why), -1);
    assert_string_equal(why, want);
}

static void test_check_takes_what_nats_c_can_reach(void **state)
{
    (void)state;
    char why[64];
    const char *good[] = {"nats://127.0.0.1:4222",
                          "tls://u:p@ss/w rd@h.example:1",
                          "127.0.0.1:4222",
                          "NATS://h",
                          "nats://a:1, tls://[::1]:65535",
                          "nats://t0ken@h_1-x.y:4222"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(fc_bus_urls_check(good[i], why, sizeof why), 0);
}

static void test_check_says_which_url_and_why(void **state)
{
    (void)state;
    refused("nats://", "URL 1: no host: nats://");
    refused("nats://h:1,http://u:pw@h:1",
            "URL 2: the scheme must be nats:// or tls://: http://***@h:1");
    refused("nats://h:0", "URL 1: the port must be a number from 1 to 65535: nats://h:0");
    refused("nats://h:65536", "URL 1: the port must be a number from 1 to 65535: nats://h:65536");
    refused("nats://h:1/x", "URL 1: the port must be a number from 1 to 65535, and nothing may "
                            "follow it: nats://h:1/x");
    refused("nats://[::1:1", "URL 1: an IPv6 address without its closing ']': nats://[::1:1");
    refused("nats://[::1]x", "URL 1: text after the IPv6 address: only :port may follow: "
                             "nats://[::1]x");
    refused("nats://u:secret@a b:1", "URL 1: a host may hold only letters, digits, '.', '-', '_' "
                                     "(or an IPv6 address in []): nats://***@a b:1");
    refused("nats://h:1,", "URL 2 is empty (give 1 to 16 URLs separated by commas)");
    refused("nats://h:1\nforged log line", "URL 1 holds a control character");
    refused("h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1,h:1",
            "more than 16 URLs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masks_every_form),
        cmocka_unit_test(test_truncation_never_shows_a_credential),
        cmocka_unit_test(test_check_takes_what_nats_c_can_reach),
        cmocka_unit_test(test_check_says_which_url_and_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
