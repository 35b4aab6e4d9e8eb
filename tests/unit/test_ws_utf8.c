/* Unit tests for src/ws/utf8.c: Autobahn 6.x cases, fail-fast and split validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ws/utf8.h"

enum { VALID, INVALID, PARTIAL };

/* Verdict of the validator on a whole buffer, collapsing mid-character states. */
static int verdict(uint32_t st)
{
    return st == FC_UTF8_ACCEPT ? VALID : st == FC_UTF8_REJECT ? INVALID : PARTIAL;
}

static int validate(const void *p, size_t len)
{
    return verdict(fc_utf8_validate(FC_UTF8_ACCEPT, p, len));
}

/* Same input fed in two calls split at cut. */
static int validate_split(const uint8_t *p, size_t len, size_t cut)
{
    uint32_t st = fc_utf8_validate(FC_UTF8_ACCEPT, p, cut);
    return verdict(fc_utf8_validate(st, p + cut, len - cut));
}

/* Asserts a text message gives want whole, split at every byte, and fed one byte at a time. */
static void expect(const char *s, size_t len, int want)
{
    const uint8_t *p = (const uint8_t *)s;
    assert_int_equal(validate(p, len), want);
    for (size_t cut = 0; cut <= len; cut++)
        assert_int_equal(validate_split(p, len, cut), want);
    uint32_t st = FC_UTF8_ACCEPT;
    for (size_t i = 0; i < len; i++)
        st = fc_utf8_validate(st, p + i, 1);
    assert_int_equal(verdict(st), want);
}

/* A complete message is valid only when it ends in ACCEPT. */
#define VALID_MSG(lit) expect(lit, sizeof(lit) - 1, VALID)
#define INVALID_MSG(lit) assert_int_not_equal(validate(lit, sizeof(lit) - 1), VALID)
#define REJECTED(lit) expect(lit, sizeof(lit) - 1, INVALID)

static void test_autobahn_valid(void **state)
{
    (void)state;
    VALID_MSG("");                                                                        /* 6.1 */
    VALID_MSG("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"); /* 6.2 */
    VALID_MSG("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"); /* 6.3/6.5 kosme */
    VALID_MSG("\x00");                                         /* 6.7 first of each len */
    VALID_MSG("\xc2\x80");
    VALID_MSG("\xe0\xa0\x80");
    VALID_MSG("\xf0\x90\x80\x80");
    VALID_MSG("\x7f"); /* 6.9 last of each length */
    VALID_MSG("\xdf\xbf");
    VALID_MSG("\xef\xbf\xbf");
    VALID_MSG("\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    VALID_MSG("\xed\x9f\xbf");     /* 6.11 boundaries: U+D7FF */
    VALID_MSG("\xee\x80\x80");     /* U+E000 */
    VALID_MSG("\xef\xbf\xbd");     /* U+FFFD */
    VALID_MSG("\xef\xbf\xbe");     /* 6.22 noncharacters are valid */
    VALID_MSG("\xf0\x9f\xbf\xbe");
    VALID_MSG("\xf3\xbf\xbf\xbf");
    VALID_MSG("\xf4\x8f\xbf\xbe");
    /* Mixed ASCII runs long enough for the 8-byte path, with multibyte
     * characters straddling 8-byte block boundaries. */
    VALID_MSG("abcdefg\xce\xba"
              "abcdef\xe1\xbd\xb9"
              "0123456789abcdef\xf0\x9f\x98\x80xyz01234567");
}

static void test_autobahn_invalid(void **state)
{
    (void)state;
    REJECTED(
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"); /* 6.3.1
                                                                                              */
    REJECTED("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65"
             "\x64");                 /* 6.4 */
    REJECTED("\xf8\x88\x80\x80\x80"); /* 6.8: 5- and 6-byte forms */
    REJECTED("\xfc\x84\x80\x80\x80\x80");
    REJECTED("\xf7\xbf\xbf\xbf"); /* 6.10 */
    REJECTED("\xfb\xbf\xbf\xbf\xbf");
    REJECTED("\xfd\xbf\xbf\xbf\xbf\xbf");
    REJECTED("\xf4\x90\x80\x80"); /* 6.11.5: U+110000 */
    REJECTED("\x80");             /* 6.12 unexpected continuation */
    REJECTED("\xbf");
    REJECTED("\x80\xbf");
    REJECTED("\x80\xbf\x80\xbf");
    REJECTED("\xc0\x20\xc1\x20"); /* 6.13 lonely start bytes */
    REJECTED("\xc2\x20");
    REJECTED("\xe0\x20");
    REJECTED("\xef\xbf\x20");
    REJECTED("\xf0\x20");
    REJECTED("\xf4\x8f\xbf\x20");
    REJECTED("\xfe"); /* 6.16 impossible bytes */
    REJECTED("\xff");
    REJECTED("\xfe\xfe\xff\xff");
    REJECTED("\xc0\xaf"); /* 6.17 overlong '/' */
    REJECTED("\xe0\x80\xaf");
    REJECTED("\xf0\x80\x80\xaf");
    REJECTED("\xf8\x80\x80\x80\xaf");
    REJECTED("\xfc\x80\x80\x80\x80\xaf");
    REJECTED("\xc1\xbf"); /* 6.18 maximum overlongs */
    REJECTED("\xe0\x9f\xbf");
    REJECTED("\xf0\x8f\xbf\xbf");
    REJECTED("\xc0\x80"); /* 6.19 overlong NUL */
    REJECTED("\xe0\x80\x80");
    REJECTED("\xf0\x80\x80\x80");
    REJECTED("\xed\xa0\x80"); /* 6.20 lone surrogates */
    REJECTED("\xed\xad\xbf");
    REJECTED("\xed\xae\x80");
    REJECTED("\xed\xaf\xbf");
    REJECTED("\xed\xb0\x80");
    REJECTED("\xed\xbe\x80");
    REJECTED("\xed\xbf\xbf");
    REJECTED("\xed\xa0\x80\xed\xb0\x80"); /* 6.21 surrogate pairs */
    REJECTED("\xed\xaf\xbf\xed\xbf\xbf");
    REJECTED("abcdefgh\xff"
             "abcdefgh"); /* invalid byte after an ASCII block */
}

static void test_autobahn_truncated(void **state)
{
    (void)state;
    /* 6.6 / 6.14 / 6.15: messages ending mid-character are not valid, but
     * are not rejected early either (more bytes could complete them). */
    const char *kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    for (size_t n = 1; n <= 11; n++) {
        int want = (n == 2 || n == 5 || n == 7 || n == 9 || n == 11) ? VALID : PARTIAL;
        expect(kosme, n, want);
    }
    expect("\xc2", 1, PARTIAL);
    expect("\xdf", 1, PARTIAL);
    expect("\xe0\xa0", 2, PARTIAL);
    expect("\xef\xbf", 2, PARTIAL);
    expect("\xf0\x90\x80", 3, PARTIAL);
    expect("\xf4\x8f\xbf", 3, PARTIAL);
    INVALID_MSG("\xc0"); /* 6.14 with impossible leads: rejected outright */
    INVALID_MSG("\xe0\x80");
    INVALID_MSG("\xf0\x80\x80");
    INVALID_MSG("\xf7\xbf\xbf");
    INVALID_MSG("\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80"); /* 6.15 */
    INVALID_MSG("\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf");
}

static void test_fail_fast(void **state)
{
    (void)state;
    /* Each prefix is rejected at the first byte that rules out every completion. */
    assert_int_equal(fc_utf8_validate(0, (const uint8_t *)"\xf4\x90", 2), FC_UTF8_REJECT);
    assert_int_equal(fc_utf8_validate(0, (const uint8_t *)"\xed\xa0", 2), FC_UTF8_REJECT);
    assert_int_equal(fc_utf8_validate(0, (const uint8_t *)"\xe0\x9f", 2), FC_UTF8_REJECT);
    assert_int_equal(fc_utf8_validate(0, (const uint8_t *)"\xf0\x8f", 2), FC_UTF8_REJECT);
    assert_int_equal(fc_utf8_validate(0, (const uint8_t *)"\xc0", 1), FC_UTF8_REJECT);
    assert_int_equal(fc_utf8_validate(0, (const uint8_t *)"\xc1", 1), FC_UTF8_REJECT);
    assert_int_equal(fc_utf8_validate(0, (const uint8_t *)"\xf5", 1), FC_UTF8_REJECT);
    /* A rejection sticks whatever follows. */
    assert_int_equal(fc_utf8_validate(FC_UTF8_REJECT, (const uint8_t *)"a", 1), FC_UTF8_REJECT);
    assert_int_equal(fc_utf8_validate(FC_UTF8_REJECT, NULL, 0), FC_UTF8_REJECT);
    /* Prefixes that can still complete are not rejected. */
    uint32_t st = fc_utf8_validate(0, (const uint8_t *)"\xf4", 1);
    assert_true(st != FC_UTF8_ACCEPT && st != FC_UTF8_REJECT);
    st = fc_utf8_validate(st, (const uint8_t *)"\x8f", 1);
    assert_true(st != FC_UTF8_ACCEPT && st != FC_UTF8_REJECT);
    /* Unknown state values (caller bug) are refused, not used as an index. */
    assert_int_equal(fc_utf8_validate(0xDEADu, (const uint8_t *)"a", 1), FC_UTF8_REJECT);
}

/* Straightforward decode-based reference: VALID, INVALID, or PARTIAL when the
 * input ends in a prefix that some continuation could still make valid. */
static int ref_verdict(const uint8_t *s, size_t n)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t L = b < 0x80             ? 1
                   : (b & 0xE0) == 0xC0 ? 2
                   : (b & 0xF0) == 0xE0 ? 3
                   : (b & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (L == 0) return INVALID;
        size_t avail = n - i < L ? n - i : L;
        uint32_t cp = L == 1 ? b : (uint32_t)(b & (0x7F >> L));
        for (size_t k = 1; k < avail; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return INVALID;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        uint32_t lo = cp << (6 * (L - avail));
        uint32_t hi = lo | ((1u << (6 * (L - avail))) - 1);
        uint32_t a = lo > min_cp[L] ? lo : min_cp[L];
        uint32_t z = hi < 0x10FFFF ? hi : 0x10FFFF;
        if (a > z || (a >= 0xD800 && z <= 0xDFFF)) return INVALID;
        if (avail < L) return PARTIAL;
        i += L;
    }
    return VALID;
}

static void check_against_ref(const uint8_t *s, size_t n)
{
    int want = ref_verdict(s, n);
    if (validate(s, n) != want)
        fail_msg("mismatch on %zu bytes %02x %02x %02x %02x", n, s[0], n > 1 ? s[1] : 0,
                 n > 2 ? s[2] : 0, n > 3 ? s[3] : 0);
}

static void test_exhaustive_short(void **state)
{
    (void)state;
    uint8_t s[3];
    for (uint32_t v = 0; v < (1u << 24); v++) {
        s[0] = (uint8_t)(v >> 16), s[1] = (uint8_t)(v >> 8), s[2] = (uint8_t)v;
        check_against_ref(s, 3);
        if ((v & 0xFFFF) == 0) check_against_ref(s, 1);
        if ((v & 0xFF) == 0) check_against_ref(s, 2);
    }
}

static void test_four_byte_boundaries(void **state)
{
    (void)state;
    static const uint8_t pick[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                   0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEE, 0xEF,
                                   0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF7, 0xF8, 0xFF};
    const size_t np = sizeof pick;
    uint8_t s[4];
    for (size_t a = 0; a < np; a++)
        for (size_t b = 0; b < np; b++)
            for (size_t c = 0; c < np; c++)
                for (size_t d = 0; d < np; d++) {
                    s[0] = pick[a], s[1] = pick[b], s[2] = pick[c], s[3] = pick[d];
                    check_against_ref(s, 4);
                    for (size_t cut = 0; cut <= 4; cut++)
                        assert_int_equal(validate_split(s, 4, cut), ref_verdict(s, 4));
                }
}

static void test_every_code_point(void **state)
{
    (void)state;
    /* Encode every scalar value (and every surrogate) and check the verdict. */
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t s[4];
        size_t n;
        if (cp < 0x80) {
            s[0] = (uint8_t)cp, n = 1;
        } else if (cp < 0x800) {
            s[0] = (uint8_t)(0xC0 | cp >> 6), s[1] = (uint8_t)(0x80 | (cp & 0x3F)), n = 2;
        } else if (cp < 0x10000) {
            s[0] = (uint8_t)(0xE0 | cp >> 12), s[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            s[2] = (uint8_t)(0x80 | (cp & 0x3F)), n = 3;
        } else {
            s[0] = (uint8_t)(0xF0 | cp >> 18), s[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            s[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)), s[3] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 4;
        }
        int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        assert_int_equal(validate(s, n), surrogate ? INVALID : VALID);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_autobahn_valid),     cmocka_unit_test(test_autobahn_invalid),
        cmocka_unit_test(test_autobahn_truncated), cmocka_unit_test(test_fail_fast),
        cmocka_unit_test(test_exhaustive_short),   cmocka_unit_test(test_four_byte_boundaries),
        cmocka_unit_test(test_every_code_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
