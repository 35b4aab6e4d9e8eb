/* The Idempotency-Key header: checked here, remembered by the store. */
#include "api/idempotency.h"

#include <openssl/evp.h>
#include <string.h>

/* Trailing blanks are optional whitespace around the field value (RFC 9110
 * §5.5), not part of the key. */
static size_t trimmed_len(const char *v)
{
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n;
}

/* The fingerprint: SHA-256 of "METHOD\npath\n" and the body bytes, so a key
 * names one request exactly (the same JSON written differently is another
 * request; clients resend the same bytes). */
static int fingerprint(const fc_http_req *req, const char *path, unsigned char out[FC_IDEM_FP_LEN])
{
    const char *method = http_method_str((enum http_method)req->parser.method);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, method, strlen(method)) && EVP_DigestUpdate(ctx, "\n", 1) &&
             EVP_DigestUpdate(ctx, path, strlen(path)) && EVP_DigestUpdate(ctx, "\n", 1) &&
             (!req->body_len || EVP_DigestUpdate(ctx, req->body, req->body_len)) &&
             EVP_DigestFinal_ex(ctx, out, &len) && len == FC_IDEM_FP_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

int fc__idem_take(fc_conn *c, const fc_http_req *req, const char *path, fc_change *ch)
{
    const char *v = fc_http_header(req, FC_H_IDEMPOTENCY_KEY);
    if (!v) return 0;
    size_t n = trimmed_len(v);
    if (n == 0 || n > FC_IDEM_KEY_MAX) {
        fc_conn_respond_error(c, 400, NULL, "bad_request",
                              "Idempotency-Key must be 1..%d visible ASCII characters, not %zu",
                              FC_IDEM_KEY_MAX, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch8 = (unsigned char)v[i];
        if (ch8 < 0x21 || ch8 > 0x7e) {
            /* A repeated header arrives joined with ", ": one request, one key. */
            fc_conn_respond_error(c, 400, NULL, "bad_request",
                                  "Idempotency-Key must be one header of visible ASCII "
                                  "characters; byte %zu is 0x%02x",
                                  i + 1, ch8);
            return -1;
        }
    }
    if (fingerprint(req, path, ch->idem_fp) != 0) {
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
        return -1;
    }
    memcpy(ch->idem_key, v, n);
    ch->idem_key[n] = '\0';
    return 0;
}
