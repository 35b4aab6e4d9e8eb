/* libFuzzer driver for the token path (src/auth/auth.c): a first byte of 0
 * sends the rest as a token, as a client would; otherwise the rest is a
 * claims object, signed here with the server's HMAC key, so the claim checks
 * behind the signature are reached too. Whatever verifies must be a sane grant. */
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

static fc_auth *auth(void)
{
    static fc_auth *a;
    if (a) return a;
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
        fc_auth_grant_clear(&g);
    }
    if (token != text) free(token);
    free(text);
    return 0;
}
