/* flowcast-jwt-verify: what fc_auth_verify costs per call for one HS256,
 * RS256 (RSA 2048) and ES256 (P-256) token, split into its parts: the PEM
 * key decode libjwt 1.10 repeats on every jwt_decode, jwt_decode itself (key
 * decode + signature check + base64/JSON), and the whole verify (plus the
 * claims). The same token is verified again and again, as when clients of one
 * service reconnect with one token, so the cache of verified tokens
 * (--jwt-cache) is measured on and off, and its lock with two threads
 * (the machine's two cores) taking hits at once.
 *
 *   flowcast-jwt-verify [ROUNDS]
 *
 * Keys are made here with OpenSSL, tokens signed with libjwt; CPU time per
 * call (CLOCK_PROCESS_CPUTIME_ID) is printed in microseconds. */
#include "auth/auth.h"

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* A fresh key pair as PEM texts (private, public); HMAC: 32 random bytes. */
static int make_key(const char *alg, char **priv, char **pub)
{
    EVP_PKEY *pk = NULL;
    if (alg[0] == 'R')
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *b1 = BIO_new(BIO_s_mem()), *b2 = BIO_new(BIO_s_mem());
    if (!pk || !b1 || !b2 || !PEM_write_bio_PrivateKey(b1, pk, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_PUBKEY(b2, pk))
        return -1;
    char *p;
    long n = BIO_get_mem_data(b1, &p);
    *priv = strndup(p, (size_t)n);
    n = BIO_get_mem_data(b2, &p);
    *pub = strndup(p, (size_t)n);
    BIO_free(b1);
    BIO_free(b2);
    EVP_PKEY_free(pk);
    return 0;
}

typedef struct hammer {
    fc_auth *a;
    const char *token;
    int64_t now;
    int rounds;
} hammer;

static void *hit_loop(void *arg)
{
    hammer *h = arg;
    fc_auth_grant g;
    for (int i = 0; i < h->rounds; i++) {
        if (fc_auth_verify(h->a, h->token, h->now, &g) != 0) exit(1);
        fc_auth_grant_clear(&g);
    }
    return NULL;
}

static double wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Wall time per hit with n threads hitting the one cache at once. */
static double contended(fc_auth *a, const char *token, int64_t now, int rounds, int n)
{
    hammer h = {a, token, now, rounds * 20};
    pthread_t t[2];
    double t0 = wall_us();
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, hit_loop, &h) != 0) exit(1);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    return (wall_us() - t0) / h.rounds;
}

static void run(const char *name, jwt_alg_t alg, const char *sign_key, const char *verify_key,
                int rounds)
{
    char path[] = "/tmp/fc-jwt-verify-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, verify_key, strlen(verify_key)) != (ssize_t)strlen(verify_key)) exit(1);
    close(fd);
    int64_t now = (int64_t)time(NULL);
    jwt_t *jwt = NULL;
    char claims[256];
    snprintf(claims, sizeof claims,
             "{\"scope\":\"read write\",\"sub\":\"svc\",\"iat\":%lld,\"exp\":%lld}", (long long)now,
             (long long)now + 3600);
    if (jwt_new(&jwt) || jwt_add_grants_json(jwt, claims) ||
        jwt_set_alg(jwt, alg, (const unsigned char *)sign_key, (int)strlen(sign_key)))
        exit(1);
    char *token = jwt_encode_str(jwt);
    jwt_free(jwt);
    char err[256] = "";
    fc_auth *a = fc_auth_load(path, 30, NULL, NULL, err, sizeof err);
    if (!token || !a) {
        fprintf(stderr, "%s: %s\n", name, err);
        exit(1);
    }
    fc_auth_grant g;
    double t0 = cpu_us();
    for (int i = 0; i < rounds && alg != JWT_ALG_HS256; i++) {
        BIO *bio = BIO_new_mem_buf(verify_key, -1);
        EVP_PKEY_free(PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL));
        BIO_free(bio);
    }
    double t1 = cpu_us();
    for (int i = 0; i < rounds; i++) {
        jwt_t *j = NULL;
        if (jwt_decode(&j, token, (const unsigned char *)verify_key, (int)strlen(verify_key)))
            exit(1);
        jwt_free(j);
    }
    double t2 = cpu_us();
    fc_auth_set_cache(a, 0);
    for (int i = 0; i < rounds; i++) {
        if (fc_auth_verify(a, token, now, &g) != 0) exit(1);
        fc_auth_grant_clear(&g);
    }
    double t3 = cpu_us();
    fc_auth_set_cache(a, 4096);
    for (int i = 0; i < rounds; i++) {
        if (fc_auth_verify(a, token, now, &g) != 0) exit(1);
        fc_auth_grant_clear(&g);
    }
    double t4 = cpu_us();
    double one = contended(a, token, now, rounds, 1), two = contended(a, token, now, rounds, 2);
    printf("%-6s PEM decode %7.1f  jwt_decode %7.1f  fc_auth_verify uncached %7.1f  cached %5.2f"
           "  (wall per hit: 1 thread %5.2f, each of 2 threads %5.2f)\n",
           name, alg == JWT_ALG_HS256 ? 0.0 : (t1 - t0) / rounds, (t2 - t1) / rounds,
           (t3 - t2) / rounds, (t4 - t3) / rounds, one, two);
    fc_auth_free(a);
    free(token);
    unlink(path);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
    if (rounds < 1) rounds = 1;
    const char *hmac = "0123456789abcdef0123456789abcdef-bench-secret";
    char *rpriv, *rpub, *epriv, *epub;
    if (make_key("RSA", &rpriv, &rpub) || make_key("EC", &epriv, &epub)) return 1;
    printf("CPU microseconds per call, %d calls each\n", rounds);
    run("HS256", JWT_ALG_HS256, hmac, hmac, rounds);
    run("RS256", JWT_ALG_RS256, rpriv, rpub, rounds);
    run("ES256", JWT_ALG_ES256, epriv, epub, rounds);
    free(rpriv);
    free(rpub);
    free(epriv);
    free(epub);
    return 0;
}
