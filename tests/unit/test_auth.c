/* Unit tests for src/auth/auth.c: pattern and scope matching, and the checks
 * libjwt leaves to the caller (alg none, the key type fixing the algorithm,
 * exact exp, nbf/iat with leeway, aud, iss, claim shapes); and the cache of
 * verified tokens (src/auth/auth_cache.c): a hit answers what a fresh
 * verification would, at every moment. */
#include "auth/auth.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jwt.h>
#include <openssl/sha.h>

#define NOW 1800000000
#define SECRET "0123456789abcdef0123456789abcdef-unit"

static char key_path[64];

static int write_key(void **state)
{
    (void)state;
    snprintf(key_path, sizeof key_path, "/tmp/fc-auth-unit-%d.key", (int)getpid());
    FILE *f = fopen(key_path, "w");
    if (!f) return -1;
    fputs(SECRET "\n", f);
    return fclose(f);
}

static int remove_key(void **state)
{
    (void)state;
    return unlink(key_path);
}

static void test_pattern_match(void **state)
{
    (void)state;
    assert_true(fc_auth_pattern_match("deploy-*", "deploy-1"));
    assert_true(fc_auth_pattern_match("deploy-*", "deploy-"));
    assert_false(fc_auth_pattern_match("deploy-*", "deploy"));
    assert_false(fc_auth_pattern_match("deploy-*", "xdeploy-1"));
    assert_true(fc_auth_pattern_match("*", "anything"));
    assert_true(fc_auth_pattern_match("build", "build"));
    assert_false(fc_auth_pattern_match("build", "build2"));
    assert_false(fc_auth_pattern_match("build", "buil"));
    /* '*' only counts at the end: elsewhere it is a literal character. */
    assert_false(fc_auth_pattern_match("a*b", "axb"));
}

static void test_allows(void **state)
{
    (void)state;
    char p0[] = "deploy-*", p1[] = "ci";
    char *pats[] = {p0, p1};
    fc_auth_grant g = {.scope = FC_AUTH_READ, .n_patterns = 2, .patterns = pats};
    assert_true(fc_auth_allows(&g, FC_AUTH_READ, "deploy-x"));
    assert_true(fc_auth_allows(&g, FC_AUTH_READ, "ci"));
    assert_false(fc_auth_allows(&g, FC_AUTH_READ, "cia"));
    assert_false(fc_auth_allows(&g, FC_AUTH_WRITE, "deploy-x"));
    assert_false(fc_auth_allows(&g, FC_AUTH_READ, NULL)); /* limited: not every workflow */
    g.n_patterns = 0;
    assert_false(fc_auth_allows(&g, FC_AUTH_READ, "deploy-x"));
    fc_auth_grant full;
    fc_auth_grant_full(&full);
    assert_true(fc_auth_allows(&full, FC_AUTH_ALL, NULL));
    assert_true(fc_auth_allows(&full, FC_AUTH_ADMIN, "x"));
}

static void test_secret_equal(void **state)
{
    (void)state;
    assert_true(fc_auth_secret_equal("abc", "abc"));
    assert_false(fc_auth_secret_equal("abc", "abd"));
    assert_false(fc_auth_secret_equal("abc", "abcd"));
    assert_false(fc_auth_secret_equal("", "a"));
}

static fc_auth *load(int leeway, const char *aud, const char *iss)
{
    char err[256] = "";
    fc_auth *a = fc_auth_load(key_path, leeway, aud, iss, err, sizeof err);
    assert_non_null(a);
    return a;
}

static char *mint(const char *scope, const char *workflows, int64_t ttl, int64_t now)
{
    char err[256];
    char *t = fc_auth_mint(key_path, scope, workflows, NULL, ttl, now, err, sizeof err);
    assert_non_null(t);
    return t;
}

static void test_verify_minted(void **state)
{
    (void)state;
    fc_auth *a = load(30, NULL, NULL);
    char *t = mint("read write", "deploy-*,ci", 3600, NOW);
    fc_auth_grant g;
    assert_int_equal(fc_auth_verify(a, t, NOW, &g), 0);
    assert_int_equal(g.scope, FC_AUTH_READ | FC_AUTH_WRITE);
    assert_int_equal(g.n_patterns, 2);
    assert_string_equal(g.patterns[0], "deploy-*");
    assert_int_equal(g.exp, NOW + 3600);
    fc_auth_grant_clear(&g);
    /* exp is exact, whatever the leeway (it applies to nbf/iat): accepted
     * up to the second before, refused as expired from exp on. */
    assert_int_equal(fc_auth_verify(a, t, NOW + 3600 - 1, &g), 0);
    fc_auth_grant_clear(&g);
    assert_int_equal(fc_auth_verify(a, t, NOW + 3600, &g), FC_AUTH_EXPIRED);
    assert_int_equal(fc_auth_verify(a, t, NOW + 3600 + 29, &g), FC_AUTH_EXPIRED);
    /* iat in the future beyond the leeway. */
    assert_int_equal(fc_auth_verify(a, t, NOW - 31, &g), -1);
    free(t);
    fc_auth_free(a);
}

static void test_alg_none_and_tampering_refused(void **state)
{
    (void)state;
    fc_auth *a = load(30, NULL, NULL);
    char *t = mint("read", NULL, 3600, NOW);
    fc_auth_grant g;
    /* {"alg":"none"} with the real payload and no signature: libjwt accepts it. */
    char none[2048];
    const char *payload = strchr(t, '.') + 1;
    snprintf(none, sizeof none, "eyJhbGciOiJub25lIn0.%.*s.", (int)(strrchr(t, '.') - payload),
             payload);
    assert_int_equal(fc_auth_verify(a, none, NOW, &g), -1);
    assert_int_equal(g.scope, 0);
    char bad[2048];
    snprintf(bad, sizeof bad, "%s", t);
    char *last = bad + strlen(bad) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    assert_int_equal(fc_auth_verify(a, bad, NOW, &g), -1);
    /* Past its exp a tampered token is still just invalid, never "expired". */
    assert_int_equal(fc_auth_verify(a, bad, NOW + 7200, &g), -1);
    const char *junk[] = {"", ".", "..", "a.b.c", "a b.c.d", "a.b.c.d", "\xff.\xff.\xff"};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++)
        assert_int_equal(fc_auth_verify(a, junk[i], NOW, &g), -1);
    free(t);
    fc_auth_free(a);
}

static void test_audience_and_issuer(void **state)
{
    (void)state;
    fc_auth *a = load(0, "flowcast", "idp");
    char *t = mint("read", NULL, 60, NOW); /* minted tokens carry neither */
    fc_auth_grant g;
    assert_int_equal(fc_auth_verify(a, t, NOW, &g), -1);
    assert_int_equal(fc_auth_verify(a, t, NOW + 120, &g), -1); /* not "expired" either */
    free(t);
    fc_auth_free(a);
}

/* An HS256 token with the given claims (JSON), signed with SECRET. */
static char *sign(const char *claims)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
    assert_int_equal(
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    char *t = jwt_encode_str(jwt);
    jwt_free(jwt);
    assert_non_null(t);
    return t;
}

/* "sub" keys the per-subject limits: hashed to its SHA-256 prefix; absent or
 * empty = no subject; any other type makes the token invalid. */
static void test_subject(void **state)
{
    (void)state;
    fc_auth *a = load(0, NULL, NULL);
    fc_auth_grant g;
    char *t = sign("{\"scope\":\"read\",\"exp\":1800003600,\"sub\":\"alice\"}");
    assert_int_equal(fc_auth_verify(a, t, NOW, &g), 0);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)"alice", 5, md);
    assert_int_equal(g.has_sub, 1);
    assert_memory_equal(g.sub, md, FC_AUTH_SUB_LEN);
    fc_auth_grant_clear(&g);
    free(t);
    const char *none[] = {"{\"scope\":\"read\",\"exp\":1800003600}",
                          "{\"scope\":\"read\",\"exp\":1800003600,\"sub\":\"\"}"};
    for (size_t i = 0; i < 2; i++) {
        t = sign(none[i]);
        assert_int_equal(fc_auth_verify(a, t, NOW, &g), 0);
        assert_int_equal(g.has_sub, 0);
        fc_auth_grant_clear(&g);
        free(t);
    }
    const char *bad[] = {"{\"exp\":1800003600,\"sub\":7}", "{\"exp\":1800003600,\"sub\":[\"a\"]}",
                         "{\"exp\":1800003600,\"sub\":null}"};
    for (size_t i = 0; i < 3; i++) {
        t = sign(bad[i]);
        assert_int_equal(fc_auth_verify(a, t, NOW, &g), -1);
        assert_int_equal(g.has_sub, 0);
        free(t);
    }
    /* flowcast token --sub */
    char err[256];
    t = fc_auth_mint(key_path, "read", NULL, "alice", 60, NOW, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(fc_auth_verify(a, t, NOW, &g), 0);
    assert_int_equal(g.has_sub, 1);
    assert_memory_equal(g.sub, md, FC_AUTH_SUB_LEN);
    fc_auth_grant_clear(&g);
    free(t);
    fc_auth_grant_full(&g);
    assert_int_equal(g.has_sub, 0); /* the static --api-token has no subject */
    fc_auth_free(a);
}

static void test_load_refuses_short_and_missing_keys(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(fc_auth_load("/nonexistent/key", 30, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
    char path[64];
    snprintf(path, sizeof path, "/tmp/fc-auth-short-%d.key", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("short\n", f);
    fclose(f);
    err[0] = '\0';
    assert_null(fc_auth_load(path, 30, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "shorter"));
    unlink(path);
}

static void stats(const fc_auth *a, uint64_t hits, uint64_t misses, int entries)
{
    uint64_t h, m;
    int n;
    fc_auth_cache_stats(a, &h, &m, &n);
    assert_int_equal(h, hits);
    assert_int_equal(m, misses);
    assert_int_equal(n, entries);
}

/* A second verification of a token is a hit and gives the same grant as a
 * verification without the cache: its own copy, scope, patterns, sub, exp. */
static void test_cache_hit_same_result(void **state)
{
    (void)state;
    fc_auth *plain = load(30, NULL, NULL), *a = load(30, NULL, NULL);
    assert_int_equal(fc_auth_set_cache(a, 16), 0);
    char *t = sign("{\"scope\":\"read admin\",\"sub\":\"svc\",\"workflows\":[\"ci-*\",\"x\"],"
                   "\"iat\":1800000000,\"exp\":1800003600}");
    fc_auth_grant want, g1, g2;
    assert_int_equal(fc_auth_verify(plain, t, NOW, &want), 0);
    assert_int_equal(fc_auth_verify(a, t, NOW, &g1), 0);
    stats(a, 0, 1, 1);
    assert_int_equal(fc_auth_verify(a, t, NOW + 5, &g2), 0);
    stats(a, 1, 1, 1);
    fc_auth_grant_clear(&g1); /* the hit's patterns are its own */
    assert_int_equal(g2.scope, want.scope);
    assert_int_equal(g2.exp, want.exp);
    assert_int_equal(g2.has_sub, 1);
    assert_memory_equal(g2.sub, want.sub, FC_AUTH_SUB_LEN);
    assert_int_equal(g2.n_patterns, 2);
    assert_string_equal(g2.patterns[0], "ci-*");
    assert_string_equal(g2.patterns[1], "x");
    assert_true(fc_auth_allows(&g2, FC_AUTH_READ, "ci-7"));
    fc_auth_grant_clear(&g2);
    fc_auth_grant_clear(&want);
    free(t);
    fc_auth_free(plain);
    fc_auth_free(a);
}

/* Around nbf (with the leeway) and exp, second by second, a cached token
 * answers what an uncached verification answers; from exp exactly it is
 * expired and its entry is gone (a hit never extends a token's life). */
static void test_cache_times_exact(void **state)
{
    (void)state;
    fc_auth *plain = load(30, NULL, NULL), *a = load(30, NULL, NULL);
    assert_int_equal(fc_auth_set_cache(a, 16), 0);
    char *t = sign("{\"scope\":\"read\",\"nbf\":1800000100,\"exp\":1800000200}");
    fc_auth_grant g;
    assert_int_equal(fc_auth_verify(a, t, NOW + 70, &g), 0); /* nbf - leeway: the first second */
    fc_auth_grant_clear(&g);
    stats(a, 0, 1, 1);
    for (int64_t now = NOW + 60; now < NOW + 200; now++) {
        int want = fc_auth_verify(plain, t, now, &g);
        fc_auth_grant_clear(&g);
        assert_int_equal(fc_auth_verify(a, t, now, &g), want);
        assert_int_equal(want, now < NOW + 70 ? -1 : 0);
        fc_auth_grant_clear(&g);
    }
    stats(a, 140, 1, 1);
    assert_int_equal(fc_auth_verify(a, t, NOW + 200, &g), FC_AUTH_EXPIRED);
    assert_int_equal(g.scope, 0);
    stats(a, 141, 1, 0);
    /* Dropped: the next look is a miss, and libjwt says expired too. */
    assert_int_equal(fc_auth_verify(a, t, NOW + 200, &g), FC_AUTH_EXPIRED);
    stats(a, 141, 2, 0);
    free(t);
    fc_auth_free(plain);
    fc_auth_free(a);
}

/* A token one byte away from a cached one (signature or payload) is a miss
 * and is refused: the key is the hash of the exact text. */
static void test_cache_one_byte_off_is_a_miss(void **state)
{
    (void)state;
    fc_auth *a = load(30, NULL, NULL);
    assert_int_equal(fc_auth_set_cache(a, 16), 0);
    char *t = mint("read", NULL, 3600, NOW);
    fc_auth_grant g;
    assert_int_equal(fc_auth_verify(a, t, NOW, &g), 0);
    fc_auth_grant_clear(&g);
    char bad[2048];
    snprintf(bad, sizeof bad, "%s", t);
    char *sig = bad + strlen(bad) - 2, *pay = strchr(bad, '.') + 3;
    *sig = *sig == 'A' ? 'B' : 'A';
    assert_int_equal(fc_auth_verify(a, bad, NOW, &g), -1);
    *sig = t[sig - bad];
    *pay = *pay == 'A' ? 'B' : 'A';
    assert_int_equal(fc_auth_verify(a, bad, NOW, &g), -1);
    assert_int_equal(g.scope, 0);
    stats(a, 0, 3, 1); /* refused tokens are not remembered */
    free(t);
    fc_auth_free(a);
}

static char *token_n(int i)
{
    char claims[128];
    snprintf(claims, sizeof claims, "{\"scope\":\"read\",\"sub\":\"s%d\",\"exp\":1800003600}", i);
    return sign(claims);
}

/* Never more entries than the capacity; a full set evicts its least
 * recently used entry, which then verifies again through libjwt. */
static void test_cache_capacity_and_eviction(void **state)
{
    (void)state;
    fc_auth *a = load(30, NULL, NULL);
    assert_int_equal(fc_auth_set_cache(a, 8), 0); /* one set of 8 */
    char *t[9];
    fc_auth_grant g;
    for (int i = 0; i < 9; i++)
        t[i] = token_n(i);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(fc_auth_verify(a, t[i], NOW, &g), 0);
        fc_auth_grant_clear(&g);
    }
    assert_int_equal(fc_auth_verify(a, t[0], NOW, &g), 0); /* t[1] is now the oldest */
    fc_auth_grant_clear(&g);
    assert_int_equal(fc_auth_verify(a, t[8], NOW, &g), 0);
    fc_auth_grant_clear(&g);
    stats(a, 1, 9, 8);
    assert_int_equal(fc_auth_verify(a, t[0], NOW, &g), 0);
    fc_auth_grant_clear(&g);
    stats(a, 2, 9, 8);
    assert_int_equal(fc_auth_verify(a, t[1], NOW, &g), 0); /* evicted: a miss, still good */
    fc_auth_grant_clear(&g);
    stats(a, 2, 10, 8);
    /* A larger cache holds at most its capacity, whatever comes. */
    assert_int_equal(fc_auth_set_cache(a, 20), 0);
    for (int i = 0; i < 60; i++) {
        char *x = token_n(100 + i);
        assert_int_equal(fc_auth_verify(a, x, NOW, &g), 0);
        fc_auth_grant_clear(&g);
        free(x);
    }
    uint64_t h, m;
    int n;
    fc_auth_cache_stats(a, &h, &m, &n);
    assert_true(n > 0 && n <= 20);
    assert_int_equal(m, 60);
    for (int i = 0; i < 9; i++)
        free(t[i]);
    fc_auth_free(a);
}

/* 0 turns the cache off (and fc_auth_load starts without one). */
static void test_cache_zero_disables(void **state)
{
    (void)state;
    fc_auth *a = load(30, NULL, NULL);
    char *t = mint("read", NULL, 3600, NOW);
    fc_auth_grant g;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 3; i++) {
            assert_int_equal(fc_auth_verify(a, t, NOW, &g), 0);
            fc_auth_grant_clear(&g);
        }
        stats(a, 0, 0, 0);
        assert_int_equal(fc_auth_set_cache(a, 16), 0);
        assert_int_equal(fc_auth_set_cache(a, 0), 0);
    }
    free(t);
    fc_auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_match),
        cmocka_unit_test(test_allows),
        cmocka_unit_test(test_secret_equal),
        cmocka_unit_test(test_verify_minted),
        cmocka_unit_test(test_alg_none_and_tampering_refused),
        cmocka_unit_test(test_audience_and_issuer),
        cmocka_unit_test(test_subject),
        cmocka_unit_test(test_load_refuses_short_and_missing_keys),
        cmocka_unit_test(test_cache_hit_same_result),
        cmocka_unit_test(test_cache_times_exact),
        cmocka_unit_test(test_cache_one_byte_off_is_a_miss),
        cmocka_unit_test(test_cache_capacity_and_eviction),
        cmocka_unit_test(test_cache_zero_disables),
    };
    return cmocka_run_group_tests(tests, write_key, remove_key);
}
