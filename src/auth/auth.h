/* Access tokens: JWTs verified with libjwt against one key (--jwt-key), and
 * the scope they grant (which rights, on which workflows). Knows nothing of
 * the network: the API layer asks it whether a credential allows an action. */
#ifndef FC_AUTH_AUTH_H
#define FC_AUTH_AUTH_H

#include <stddef.h>
#include <stdint.h>

/* Rights a token grants ("scope" claim, space-separated words). */
enum { FC_AUTH_READ = 1, FC_AUTH_WRITE = 2, FC_AUTH_ADMIN = 4, FC_AUTH_ALL = 7 };

/* Longest token accepted: a header line is already capped, this bounds the work. */
#define FC_AUTH_TOKEN_MAX 8192

/* Bytes of a hashed subject (fc_auth_grant.sub). */
#define FC_AUTH_SUB_LEN 16

typedef struct fc_auth fc_auth;

/* What a verified credential allows. patterns: the "workflows" claim, each an
 * exact id or a prefix ending in '*'; n_patterns < 0 = every workflow. */
typedef struct fc_auth_grant {
    unsigned scope;
    int n_patterns;
    char **patterns;
    int64_t exp; /* seconds since the epoch; 0 = never (the static --api-token) */
    /* The "sub" claim, hashed (SHA-256, first 16 bytes): the key of the
     * per-subject limits. has_sub 0 = no subject (the static --api-token, or
     * a token without "sub" or with an empty one). */
    int has_sub;
    uint8_t sub[FC_AUTH_SUB_LEN];
} fc_auth_grant;

/* Loads the key: a PEM public key (RSA -> RS256/384/512, EC -> ES256/384/512)
 * or else an HMAC secret of at least 32 bytes (HS256/384/512; one trailing
 * newline is dropped). The key type fixes the algorithms accepted. Returns
 * NULL after writing why to err. */
fc_auth *fc_auth_load(const char *path, int leeway, const char *audience, const char *issuer,
                      char *err, size_t errlen);
void fc_auth_free(fc_auth *a);

/* What fc_auth_verify returns for a token whose signature and claims are
 * good but whose exp has passed (a client refreshes it; anything else is -1). */
#define FC_AUTH_EXPIRED (-2)

/* Verifies token at time now (seconds): signature with an algorithm the key
 * allows, exp required and exact (refused from exp on: the leeway applies to
 * nbf/iat only), aud/iss checked, scope, workflows and sub (a string when
 * present) parsed into g. Returns 0, FC_AUTH_EXPIRED, or -1 for any other
 * invalid token (g is left empty unless 0). */
int fc_auth_verify(const fc_auth *a, const char *token, int64_t now, fc_auth_grant *g);

/* The cache of verified tokens (--jwt-cache): at most entries tokens
 * remembered by the SHA-256 of their text, so verifying one again skips the
 * signature (and libjwt's PEM decode) while every time check (exp exact,
 * nbf/iat with the leeway) runs again at that moment; the answer is always
 * the one a fresh verification would give. 0 = off (the default of
 * fc_auth_load). Call before any thread verifies; -1 when out of memory. */
int fc_auth_set_cache(fc_auth *a, int entries);
/* Lookups that found the token, lookups that did not (and verified it), and
 * entries held; all 0 with the cache off. Any thread. */
void fc_auth_cache_stats(const fc_auth *a, uint64_t *hits, uint64_t *misses, int *entries);

/* The full grant of the static --api-token. */
void fc_auth_grant_full(fc_auth_grant *g);
void fc_auth_grant_clear(fc_auth_grant *g);

/* Whether g holds every right in need on workflow id (id NULL: on every
 * workflow, i.e. the token is not limited to some). */
int fc_auth_allows(const fc_auth_grant *g, unsigned need, const char *id);
/* Whether pattern ("deploy-*" prefix or exact id) matches id. */
int fc_auth_pattern_match(const char *pattern, const char *id);

/* Mints an HS256 token with an HMAC key file (flowcast token): scope words,
 * workflows (comma-separated patterns or NULL = all), sub (the subject, or
 * NULL for none), lifetime in seconds. Returns a malloc'd token or NULL
 * after writing why to err. */
char *fc_auth_mint(const char *key_path, const char *scope, const char *workflows, const char *sub,
                   int64_t ttl, int64_t now, char *err, size_t errlen);

/* Constant-time string comparison for secrets. */
int fc_auth_secret_equal(const char *a, const char *b);

#endif
