/* libflowcast TLS for https:// URLs: an OpenSSL context that verifies the
 * server (certificate chain and host name), and precise reasons when it fails. */
#include "client/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "client/internal.h"

/* Reads ca_file ourselves first: OpenSSL's own message for a missing file
 * or a file without a certificate says neither. */
static int load_ca_file(SSL_CTX *ctx, const char *ca_file, char *msg, size_t cap)
{
    FILE *f = fopen(ca_file, "r");
    if (!f) {
        snprintf(msg, cap, "cannot read CA file %s: %s", ca_file, strerror(errno));
        return -1;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1) n++;
        X509_free(x);
    }
    fclose(f);
    ERR_clear_error(); /* the read that ended the loop always fails */
    if (n == 0) {
        snprintf(msg, cap, "CA file %s holds no PEM certificate", ca_file);
        return -1;
    }
    return 0;
}

SSL_CTX *fcc__tls_ctx_new(const char *ca_file, char *msg, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(msg, cap, "cannot create a TLS context (out of memory)");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* The server closes after an answer without close_notify; the REST
     * client checks Content-Length, the watch the WebSocket close. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    int r = ca_file ? load_ca_file(ctx, ca_file, msg, cap)
                    : (SSL_CTX_set_default_verify_paths(ctx) == 1 ? 0 : -1);
    if (r != 0) {
        if (!ca_file) snprintf(msg, cap, "cannot load the system's CA certificates");
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    return ctx;
}

SSL *fcc__tls_new(SSL_CTX *ctx, const char *host, SSL_SESSION *resume)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return NULL;
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    /* SNI carries names only (RFC 6066); an IP literal is matched against
     * the certificate's IP addresses instead of its DNS names. */
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1
                   : SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
    if (ok && resume) ok = SSL_set_session(ssl, resume) == 1;
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

int fcc__tls_error(SSL *ssl, int ssl_err, int sys_errno, const char *url, char *msg, size_t cap)
{
    long v = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_error();
    int code = FCC_ETLS;
    if (ssl_err == SSL_ERROR_SSL && v != X509_V_OK) {
        const char *why = X509_verify_cert_error_string(v);
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            snprintf(msg, cap, "TLS: certificate of %s not trusted: %s (it names another server)",
                     url, why);
        else
            snprintf(msg, cap, "TLS: certificate of %s not trusted: %s", url, why);
    } else if (ssl_err == SSL_ERROR_SSL && e) {
        char text[256];
        const char *reason = ERR_reason_error_string(e);
        if (!reason) {
            ERR_error_string_n(e, text, sizeof text);
            reason = text;
        }
        snprintf(msg, cap, "TLS handshake with %s failed: %s%s", url, reason,
                 ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
                         ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG
                     ? " (is the server serving TLS on that port?)"
                     : "");
    } else {
        code = FCC_ECONNECT;
        snprintf(msg, cap, "TLS connection to %s broke: %s", url,
                 sys_errno ? strerror(sys_errno) : "closed by the server");
    }
    ERR_clear_error();
    return code;
}

SSL_SESSION *fcc__tls_session(SSL *ssl)
{
    SSL_SESSION *s = SSL_get1_session(ssl);
    if (s && !SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(s);
        s = NULL;
    }
    return s;
}
