/* JWT verification through libjwt, with the checks libjwt 1.10 leaves to the
 * caller: jwt_decode accepts "alg":"none" without a signature and verifies an
 * HS* token with whatever key it is given (a PEM public key as an HMAC secret),
 * so the header's algorithm is checked against the key's type after decoding,
 * and every claim (exp, nbf, iat, aud, iss) is checked here. */
#include "auth/auth.h"

#include "auth/auth_cache.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX (64 * 1024)
#define HMAC_MIN 32
#define PATTERNS_MAX 256

typedef enum { KEY_HMAC, KEY_RSA, KEY_EC } key_kind;

struct fc_auth {
    key_kind kind;
    unsigned char *key;
    int key_len;
    int leeway;
    char *audience, *issuer; /* NULL = not checked */
    fc__auth_cache *cache;   /* verified tokens; NULL = off */
};

/* Reads a whole small file; NULL after writing why to err. */
static unsigned char *read_key(const char *path, int *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open key file %s", path);
        return NULL;
    }
    unsigned char *buf = malloc(KEY_MAX + 1);
    size_t n = buf ? fread(buf, 1, KEY_MAX + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n == 0 || n > KEY_MAX) {
        snprintf(err, errlen, "key file %s is unreadable, empty or larger than %d bytes", path,
                 KEY_MAX);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = (int)n;
    return buf;
}

/* The key type decides the algorithms; a PEM that is not a public key is refused. */
static int classify(fc_auth *a, const char *path, char *err, size_t errlen)
{
    if (!strstr((const char *)a->key, "-----BEGIN")) {
        if (a->key_len > 0 && a->key[a->key_len - 1] == '\n') a->key[--a->key_len] = '\0';
        if (a->key_len > 0 && a->key[a->key_len - 1] == '\r') a->key[--a->key_len] = '\0';
        if (a->key_len < HMAC_MIN) {
            snprintf(err, errlen, "HMAC key in %s is shorter than %d bytes", path, HMAC_MIN);
            return -1;
        }
        a->kind = KEY_HMAC;
        return 0;
    }
    BIO *bio = BIO_new_mem_buf(a->key, a->key_len);
    EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    int type = pk ? EVP_PKEY_get_base_id(pk) : 0;
    EVP_PKEY_free(pk);
    BIO_free(bio);
    if (type == EVP_PKEY_RSA) {
        a->kind = KEY_RSA;
    } else if (type == EVP_PKEY_EC) {
        a->kind = KEY_EC;
    } else {
        snprintf(err, errlen,
                 "%s: not a PEM RSA or EC public key (private keys and EdDSA, which "
                 "libjwt 1.10 lacks, are refused)",
                 path);
        return -1;
    }
    return 0;
}

fc_auth *fc_auth_load(const char *path, int leeway, const char *audience, const char *issuer,
                      char *err, size_t errlen)
{
    fc_auth *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->leeway = leeway;
    a->key = read_key(path, &a->key_len, err, errlen);
    if (!a->key || classify(a, path, err, errlen) != 0 ||
        (audience && !(a->audience = strdup(audience))) ||
        (issuer && !(a->issuer = strdup(issuer)))) {
        if (a->key && !err[0]) snprintf(err, errlen, "out of memory");
        fc_auth_free(a);
        return NULL;
    }
    return a;
}

void fc_auth_free(fc_auth *a)
{
    if (!a) return;
    if (a->key) OPENSSL_cleanse(a->key, (size_t)a->key_len);
    free(a->key);
    free(a->audience);
    free(a->issuer);
    fc__auth_cache_free(a->cache);
    free(a);
}

static int alg_allowed(key_kind kind, jwt_alg_t alg)
{
    switch (kind) {
    case KEY_HMAC:
        return alg == JWT_ALG_HS256 || alg == JWT_ALG_HS384 || alg == JWT_ALG_HS512;
    case KEY_RSA:
        return alg == JWT_ALG_RS256 || alg == JWT_ALG_RS384 || alg == JWT_ALG_RS512;
    case KEY_EC:
        return alg == JWT_ALG_ES256 || alg == JWT_ALG_ES384 || alg == JWT_ALG_ES512;
    }
    return 0;
}

/* Only the JWT alphabet (three base64url parts), so nothing odd reaches libjwt. */
static int token_shape_ok(const char *t)
{
    size_t n = strlen(t), dots = 0;
    if (n == 0 || n > FC_AUTH_TOKEN_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (ch == '.')
            dots++;
        else if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
            return 0;
    }
    return dots == 2;
}

/* A NumericDate claim: absent = 1 (ok) when optional, else it must be a number. */
static int num_claim(json_t *claims, const char *name, int required, int64_t *out)
{
    json_t *v = json_object_get(claims, name);
    if (!v) return !required;
    if (!json_is_number(v)) return 0;
    double d = json_number_value(v);
    if (!(d > -9.2e18 && d < 9.2e18)) return 0;
    *out = (int64_t)d;
    return 1;
}

static int aud_ok(json_t *claims, const char *want)
{
    if (!want) return 1;
    json_t *aud = json_object_get(claims, "aud");
    if (json_is_string(aud)) return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0) return 1;
    }
    return 0;
}

static unsigned parse_scope(const char *s)
{
    unsigned bits = 0;
    while (s && *s) {
        size_t n = strcspn(s, " ");
        if (n == 4 && strncmp(s, "read", 4) == 0) bits |= FC_AUTH_READ;
        if (n == 5 && strncmp(s, "write", 5) == 0) bits |= FC_AUTH_WRITE;
        if (n == 5 && strncmp(s, "admin", 5) == 0) bits |= FC_AUTH_ADMIN;
        s += n;
        s += strspn(s, " ");
    }
    return bits;
}

/* The "workflows" claim: absent = all; else an array of non-empty strings. */
static int parse_workflows(json_t *claims, fc_auth_grant *g)
{
    json_t *list = json_object_get(claims, "workflows");
    g->n_patterns = -1;
    if (!list) return 0;
    if (!json_is_array(list) || json_array_size(list) > PATTERNS_MAX) return -1;
    g->n_patterns = 0;
    g->patterns = calloc(json_array_size(list) + 1, sizeof *g->patterns);
    if (!g->patterns) return -1;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0) return -1;
        if (!(g->patterns[g->n_patterns] = strdup(json_string_value(v)))) return -1;
        g->n_patterns++;
    }
    return 0;
}

/* The "sub" claim: absent or empty = no subject; else a string, hashed so
 * subjects of any length key the per-subject limits in a fixed size. */
static int parse_sub(json_t *claims, fc_auth_grant *g)
{
    json_t *sub = json_object_get(claims, "sub");
    if (!sub) return 0;
    if (!json_is_string(sub)) return -1;
    if (json_string_length(sub) == 0) return 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(json_string_value(sub), json_string_length(sub), md, &md_len, EVP_sha256(),
                    NULL) ||
        md_len < FC_AUTH_SUB_LEN)
        return -1;
    memcpy(g->sub, md, FC_AUTH_SUB_LEN);
    g->has_sub = 1;
    return 0;
}

/* *not_before: the first second nbf and iat allow, for the cache to check again. */
static int check_claims(const fc_auth *a, json_t *claims, int64_t now, fc_auth_grant *g,
                        int64_t *not_before)
{
    int64_t exp = 0, nbf = 0, iat = 0;
    if (!json_is_object(claims) || !num_claim(claims, "exp", 1, &exp) ||
        !num_claim(claims, "nbf", 0, &nbf) || !num_claim(claims, "iat", 0, &iat))
        return -1;
    *not_before = (nbf > iat ? nbf : iat) - a->leeway;
    /* exp is exact: a stream ends at exp (the server arms it), so a token
     * accepted past it would outlive itself. Skew is allowed on nbf/iat only. */
    if (nbf > now + a->leeway || iat > now + a->leeway) return -1;
    if (!aud_ok(claims, a->audience)) return -1;
    if (a->issuer) {
        json_t *iss = json_object_get(claims, "iss");
        if (!json_is_string(iss) || strcmp(json_string_value(iss), a->issuer) != 0) return -1;
    }
    /* Only a token good in every other way is told apart as expired. */
    if (now >= exp) return FC_AUTH_EXPIRED;
    json_t *scope = json_object_get(claims, "scope");
    if (scope && !json_is_string(scope)) return -1;
    g->scope = parse_scope(json_string_value(scope));
    g->exp = exp;
    if (parse_sub(claims, g) != 0) return -1;
    return parse_workflows(claims, g);
}

static int verify_fresh(const fc_auth *a, const char *token, int64_t now, fc_auth_grant *g,
                        int64_t *not_before)
{
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, a->key, a->key_len) != 0 || !jwt) return -1;
    int r = -1;
    if (alg_allowed(a->kind, jwt_get_alg(jwt))) {
        char *text = jwt_get_grants_json(jwt, NULL);
        json_t *claims = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
        r = check_claims(a, claims, now, g, not_before);
        json_decref(claims);
        free(text);
    }
    jwt_free(jwt);
    if (r != 0) fc_auth_grant_clear(g);
    return r;
}

int fc_auth_verify(const fc_auth *a, const char *token, int64_t now, fc_auth_grant *g)
{
    memset(g, 0, sizeof *g);
    if (!a || !token || !token_shape_ok(token)) return -1;
    unsigned char key[EVP_MAX_MD_SIZE];
    unsigned int key_len = 0;
    int r, cached = a->cache &&
                    EVP_Digest(token, strlen(token), key, &key_len, EVP_sha256(), NULL) == 1 &&
                    key_len == FC__AUTH_CACHE_KEY;
    if (cached && fc__auth_cache_get(a->cache, key, now, g, &r)) return r;
    int64_t not_before = 0;
    r = verify_fresh(a, token, now, g, &not_before);
    /* Only good tokens: a flood of bad ones cannot push them out. */
    if (r == 0 && cached) fc__auth_cache_put(a->cache, key, not_before, g);
    return r;
}

int fc_auth_set_cache(fc_auth *a, int entries)
{
    fc__auth_cache_free(a->cache);
    a->cache = entries > 0 ? fc__auth_cache_new(entries) : NULL;
    return entries > 0 && !a->cache ? -1 : 0;
}

void fc_auth_cache_stats(const fc_auth *a, uint64_t *hits, uint64_t *misses, int *entries)
{
    *hits = *misses = 0;
    *entries = 0;
    if (a && a->cache) fc__auth_cache_stats(a->cache, hits, misses, entries);
}

void fc_auth_grant_full(fc_auth_grant *g)
{
    memset(g, 0, sizeof *g);
    g->scope = FC_AUTH_ALL;
    g->n_patterns = -1;
}

void fc_auth_grant_clear(fc_auth_grant *g)
{
    for (int i = 0; g->patterns && i < g->n_patterns; i++)
        free(g->patterns[i]);
    free(g->patterns);
    memset(g, 0, sizeof *g);
}

int fc_auth_pattern_match(const char *pattern, const char *id)
{
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*') return strncmp(pattern, id, n - 1) == 0;
    return strcmp(pattern, id) == 0;
}

int fc_auth_allows(const fc_auth_grant *g, unsigned need, const char *id)
{
    if ((g->scope & need) != need) return 0;
    if (g->n_patterns < 0) return 1;
    if (!id) return 0;
    for (int i = 0; i < g->n_patterns; i++)
        if (fc_auth_pattern_match(g->patterns[i], id)) return 1;
    return 0;
}

int fc_auth_secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* The claims of a minted token: scope, iat, exp and, when given, workflows
 * and sub. */
static char *mint_claims(const char *scope, const char *workflows, const char *sub, int64_t ttl,
                         int64_t now)
{
    json_t *c = json_pack("{s:s, s:I, s:I}", "scope", scope, "iat", (json_int_t)now, "exp",
                          (json_int_t)(now + ttl));
    if (c && sub && json_object_set_new(c, "sub", json_string(sub)) != 0) {
        json_decref(c);
        return NULL;
    }
    json_t *list = c && workflows ? json_array() : NULL;
    for (const char *p = workflows; list && *p;) {
        size_t n = strcspn(p, ",");
        if (n > 0) json_array_append_new(list, json_stringn(p, n));
        p += n + (p[n] == ',');
    }
    if (list) json_object_set_new(c, "workflows", list);
    char *text = c ? json_dumps(c, JSON_COMPACT) : NULL;
    json_decref(c);
    return text;
}

char *fc_auth_mint(const char *key_path, const char *scope, const char *workflows, const char *sub,
                   int64_t ttl, int64_t now, char *err, size_t errlen)
{
    err[0] = '\0';
    fc_auth *a = fc_auth_load(key_path, 0, NULL, NULL, err, errlen);
    if (!a) return NULL;
    char *token = NULL, *claims = NULL;
    jwt_t *jwt = NULL;
    if (a->kind != KEY_HMAC) {
        /* A public key cannot sign: minting needs the HMAC secret itself. */
        snprintf(err, errlen, "%s is a public key; flowcast token signs with an HMAC key only",
                 key_path);
    } else if (!(claims = mint_claims(scope, workflows, sub, ttl, now)) || jwt_new(&jwt) != 0 ||
               jwt_add_grants_json(jwt, claims) != 0 ||
               jwt_set_alg(jwt, JWT_ALG_HS256, a->key, a->key_len) != 0 ||
               !(token = jwt_encode_str(jwt))) {
        snprintf(err, errlen, "cannot sign the token");
    }
    jwt_free(jwt);
    free(claims);
    fc_auth_free(a);
    return token;
}
