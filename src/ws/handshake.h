/* The server side of the RFC 6455 §4 opening handshake. */
#ifndef FC_WS_HANDSHAKE_H
#define FC_WS_HANDSHAKE_H

#include <stddef.h>

#define FC_WS_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1 */

/* True when key is a valid Sec-WebSocket-Key: base64 of exactly 16 bytes. */
int fc_ws_key_valid(const char *key, size_t len);

/* Computes Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) into out (NUL-terminated). */
void fc_ws_accept_key(const char *key, size_t len, char out[FC_WS_ACCEPT_LEN + 1]);

/* True when a comma-separated header value (e.g. Connection: keep-alive, Upgrade)
 * contains token, compared case-insensitively. */
int fc_header_has_token(const char *value, size_t len, const char *token);

#endif
