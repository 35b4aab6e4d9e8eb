/* libFuzzer driver for the token path (src/auth/auth.c): a first byte of 0
 * sends the rest as a token, as a client would; otherwise the rest is a
 * claims object, signed here with the server's HMAC key, so the claim checks
 * behind the signature are reached too. Whatever verifies must be a sane grant,
 * and a second fc_auth with the cache of verified tokens must answer the
 * same (result and grant) at a few moments, before and after its exp. */
#include "auth/auth.h"

#include <jwt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"

#define SECRET "fuzz-secret-0123456789abcdef0123456789"
#define NOW 1800000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fc_auth *load(void)
{
    fc_auth *a;
    char path[64], err[256] = "";
    snprintf(path, sizeof path, "/tmp/fc-fuzz-auth-%d.key", (int)getpid());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(SECRET, f);
    fclose(f);
    a = fc_auth_load(path, 30, "aud", NULL, err, sizeof err);
    unlink(path);
    CHECK(a);
    return a;
}

static fc_auth *auth(void)
{
    static fc_auth *a;
    if (!a) a = load();
    return a;
}

static fc_auth *cached(void)
{
    static fc_auth *a;
    if (!a) {
        a = load();
        CHECK(fc_auth_set_cache(a, 8) == 0);
    }
    return a;
}

/* The cached answer equals the uncached one at now. */
static void same_answer(const char *token, int64_t now)
{
    fc_auth_grant g, c;
    int r = fc_auth_verify(auth(), token, now, &g);
    CHECK(fc_auth_verify(cached(), token, now, &c) == r);
    CHECK(c.scope == g.scope && c.exp == g.exp && c.n_patterns == g.n_patterns);
    CHECK(c.has_sub == g.has_sub && memcmp(c.sub, g.sub, sizeof c.sub) == 0);
    for (int i = 0; i < g.n_patterns; i++)
        CHECK(strcmp(c.patterns[i], g.patterns[i]) == 0);
    fc_auth_grant_clear(&g);
    fc_auth_grant_clear(&c);
}

/* A token over claims (NUL-terminated JSON), or NULL when libjwt refuses them. */
static char *sign(const char *claims)
{
    jwt_t *jwt = NULL;
    char *token = NULL;
    if (jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, claims) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)SECRET, strlen(SECRET)) == 0)
        token = jwt_encode_str(jwt);
    jwt_free(jwt);
    return token;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    char *text = malloc(size);
    CHECK(text);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    char *token = data[0] == 0 ? text : sign(text);
    fc_auth_grant g;
    if (token && fc_auth_verify(auth(), token, NOW, &g) == 0) {
        CHECK((g.scope & ~(unsigned)FC_AUTH_ALL) == 0);
        CHECK(g.exp > NOW - 30);
        CHECK(g.n_patterns >= -1 && (g.n_patterns <= 0 || g.patterns));
        for (int i = 0; i < g.n_patterns; i++)
            CHECK(g.patterns[i] && g.patterns[i][0]);
        fc_auth_allows(&g, FC_AUTH_READ, "deploy-1");
        int64_t exp = g.exp;
        fc_auth_grant_clear(&g);
        static const int64_t at[] = {NOW, NOW, NOW - 40, NOW + 1};
        for (size_t i = 0; i < sizeof at / sizeof *at; i++)
            same_answer(token, at[i]);
        if (exp > NOW + 1) {
            same_answer(token, exp - 1);
            same_answer(token, exp);
            same_answer(token, exp - 1);
        }
    }
    if (token != text) free(token);
    free(text);
    return 0;
}
