/* Unit tests for src/bus/nkey.c: a user nkey seed file to its public key
 * (the vector made by Python's cryptography, see svc_nats.make_nkey), and
 * the files it refuses. */
#include "bus/internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#define SEED "SUAD5HIB7Z2Q2K6EHGFDRMT6Q3W7DCTPNBM5OPXIAK757QBM44RLVPF6WQ"
#define PUB "UB2KCHLAPMZZDSFVC6TW64Y5UYJBEOK5T7M2MAO3IFRFV6R4NCURCNGM"

static char path[64];

static int public_of(const char *text, char *pub, char *err, size_t errlen)
{
    snprintf(path, sizeof path, "/tmp/fc-nkey-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    int rc = fc__bus_nkey_public(path, pub, err, errlen);
    unlink(path);
    return rc;
}

static void test_public_key(void **state)
{
    (void)state;
    char pub[FC__BUS_NKEY_LEN + 1], err[128] = "";
    assert_int_equal(public_of(SEED "\n", pub, err, sizeof err), 0);
    assert_string_equal(pub, PUB);
    /* nk writes the seed alone; a file may carry comments around it. */
    assert_int_equal(public_of("# node a\n" SEED "\n# end\n", pub, err, sizeof err), 0);
    assert_string_equal(pub, PUB);
}

static void test_refusals(void **state)
{
    (void)state;
    char pub[FC__BUS_NKEY_LEN + 1], err[128];
    assert_int_equal(public_of("nothing here\n", pub, err, sizeof err), -1);
    assert_non_null(strstr(err, "no user nkey seed"));
    /* One character changed: the checksum no longer matches. */
    char bad[] = SEED;
    bad[20] = bad[20] == 'A' ? 'B' : 'A';
    assert_int_equal(public_of(bad, pub, err, sizeof err), -1);
    assert_non_null(strstr(err, "checksum"));
    assert_null(strstr(err, "SU")); /* the seed is never echoed */
    /* Truncated. */
    assert_int_equal(public_of("SUAD5HIB7Z2Q2K6EHGFD", pub, err, sizeof err), -1);
    assert_int_equal(fc__bus_nkey_public("/nonexistent/seed.nk", pub, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot read"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_key),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
