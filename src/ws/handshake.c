/* RFC 6455 §4.2 server handshake helpers: key check, accept key, header token match. */
#include "ws/handshake.h"

#include <string.h>

#include <openssl/evp.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_GUID_LEN (sizeof WS_GUID - 1)
#define WS_KEY_LEN 24 /* base64 of 16 bytes: 22 data chars + "==" */
#define SHA1_LEN 20

static int is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int fc_ws_key_valid(const char *key, size_t len)
{
    if (len != WS_KEY_LEN || key[22] != '=' || key[23] != '=') return 0;
    /* The unused low 4 bits of the last data char are not required to be
     * zero: common base64 decoders ignore them, and refusing a client over
     * them would buy nothing since the key is only echoed back hashed. */
    for (size_t i = 0; i < 22; i++)
        if (!is_base64_char(key[i])) return 0;
    return 1;
}

/* SHA-1 of key followed by the GUID, streamed because the key is too long
 * for the stack buffer of the common path. Returns 1 on success. */
static int sha1_key_streamed(const char *key, size_t len, unsigned char md[SHA1_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) && EVP_DigestUpdate(ctx, key, len) &&
             EVP_DigestUpdate(ctx, WS_GUID, WS_GUID_LEN) && EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    return ok;
}

static int sha1_key(const char *key, size_t len, unsigned char md[SHA1_LEN])
{
    /* Room for a valid key with slack; real keys always fit. */
    unsigned char buf[64 + WS_GUID_LEN];
    if (len > sizeof buf - WS_GUID_LEN) return sha1_key_streamed(key, len, md);
    memcpy(buf, key, len);
    memcpy(buf + len, WS_GUID, WS_GUID_LEN);
    return EVP_Digest(buf, len + WS_GUID_LEN, md, NULL, EVP_sha1(), NULL);
}

void fc_ws_accept_key(const char *key, size_t len, char out[FC_WS_ACCEPT_LEN + 1])
{
    unsigned char md[SHA1_LEN];
    /* Only fails when OpenSSL cannot allocate; an empty accept value makes
     * the client abort the handshake, which is the safe outcome. */
    if (!sha1_key(key, len, md)) {
        out[0] = '\0';
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, md, SHA1_LEN); /* writes 28 chars + NUL */
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive, locale-independent comparison of n bytes. */
static int ascii_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return 0;
    return 1;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int fc_header_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    if (tlen == 0) return 0;
    size_t i = 0;
    while (i <= len) {
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        while (start < end && is_ows(value[start]))
            start++;
        while (end > start && is_ows(value[end - 1]))
            end--;
        if (end - start == tlen && ascii_ieq(value + start, token, tlen)) return 1;
        i++; /* skip the comma (or step past the end) */
    }
    return 0;
}
