/* Unit tests for src/bus/url.c: the bus's URLs with their credentials
 * masked, for logs, /readyz and error messages. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masks_every_form),
        cmocka_unit_test(test_truncation_never_shows_a_credential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
