/* Helpers shared by the files of libflowcast (src/client/); not installed. */
#ifndef FC_CLIENT_INTERNAL_H
#define FC_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "flowcast/client.h"

/* A parsed "http[s]://host[:port][/]" URL. */
typedef struct fcc__url {
    char host[256]; /* without the brackets of an IPv6 literal */
    char port[8];
    char hostport[272]; /* "host:port" for the Host header */
    int tls;            /* https: TLS with certificate and host name verification */
} fcc__url;

/* 0, or FCC_EINVAL for anything but http[s]://host[:port] with an optional
 * "/" (the port defaults to 80, or 443 for https). */
int fcc__url_parse(const char *url, fcc__url *out);

/* Most URLs in one list ("URL,URL,..."). */
#define FCC__URLS_MAX 16

/* The servers of a watch or REST client: every URL of a comma-separated
 * list, tried in turn (round robin) when one cannot be reached. */
typedef struct fcc__urls {
    fcc__url *url; /* n entries */
    char **text;   /* n pointers into one block: each URL as the user wrote it */
    size_t n;
    int any_tls; /* some URL is https */
} fcc__urls;

/* Parses "URL[,URL...]" (spaces around the commas are ignored; 1 to
 * FCC__URLS_MAX URLs, each as fcc__url_parse takes it). 0, FCC_EINVAL or
 * FCC_ENOMEM; on failure *out is left empty. */
int fcc__urls_parse(const char *list, fcc__urls *out);
void fcc__urls_free(fcc__urls *u);

/* Longest bearer token the clients send (a JWT with many claims fits). */
#define FCC__TOKEN_MAX FCC_TOKEN_MAX
/* Whether token can go into an Authorization header as it is: 1 to
 * FCC__TOKEN_MAX visible ASCII characters (no CR/LF that would end the
 * header, no spaces). */
int fcc__token_valid(const char *token);

/* Reads the exp claim (Unix seconds) from a JWT's payload without verifying
 * anything: when to refresh a token is the client's guess, the server decides.
 * 0 and *exp set, or -1 when token is not a JWT with a numeric exp. */
int fcc__jwt_exp(const char *token, int64_t *exp);

/* Next value of a xorshift64* generator; *state must be non-zero. */
uint64_t fcc__rand(uint64_t *state);
/* A non-zero seed from the system's random source (or the clock). */
uint64_t fcc__seed(void);

/* Largest frame header a client writes: 2 + 8 (length) + 4 (mask). */
#define FCC__WS_MAX_HEADER 14

/* Writes a masked client frame (FIN set) of opcode and payload into out,
 * which must hold len + FCC__WS_MAX_HEADER bytes; returns the frame length. */
size_t fcc__ws_frame_encode(uint8_t *out, uint8_t opcode, const void *payload, size_t len,
                            const uint8_t mask[4]);

/* Writes the base64 of 16 random bytes (a Sec-WebSocket-Key) into key[25]. */
void fcc__ws_key(uint64_t *rng, char key[25]);

/* The head of an HTTP response. */
typedef struct fcc__http_head {
    int status;
    size_t head_len;        /* bytes up to and including the blank line */
    int64_t content_length; /* -1 when absent */
    char accept[64];        /* Sec-WebSocket-Accept, "" when absent */
} fcc__http_head;

/* Parses a response head from buf. Returns 1 when complete (*h filled), 0 when
 * more bytes are needed, FCC_EPROTO when it is not an HTTP/1.x response. */
int fcc__http_head_parse(const char *buf, size_t len, fcc__http_head *h);

/* Reads {"error":{"code","message"}} from body into err (falls back to the
 * status line text when the body is something else). */
void fcc__error_from_body(int status, const char *body, size_t len, fcc_error *err);

#endif
