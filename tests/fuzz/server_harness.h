/* A whole flowcast loop in the fuzzer's process, for the fuzz_server_*
 * drivers: one fc_server (hub, SQLite store in a temporary directory, the
 * real connection code from src/server and the API from src/api) and a
 * loopback client socket. A session sends bytes in reads of the caller's
 * choosing, runs the loop until the server has answered, and closes. */
#ifndef FC_FUZZ_SERVER_HARNESS_H
#define FC_FUZZ_SERVER_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* The workflows every session can count on: created at the first session and
 * re-created when an input deleted them. */
#define FZH_IDS                                                                                    \
    {                                                                                              \
        "w1", "w2", "w-3"                                                                          \
    }

/* The static --api-token of a JWT loop (the harness's own writes use it). */
#define FZH_STATIC_TOKEN "fuzz-static-token-0123456789abcdef"

/* Makes the loop verify JWTs (--jwt-key) with this HMAC secret, as a
 * --jwt-key server does: every request then needs a credential, and the
 * multi WebSocket may authenticate with {"op":"auth"}. Call it before the
 * first session. */
void fzh_use_jwt(const char *secret);

/* Runs one connection: sends data[0..len) in reads cut at cuts[0..ncuts)
 * (increasing offsets), letting the server work through each before the next;
 * then half-closes and waits until the server has closed too. Returns the
 * number of bytes the server wrote. */
size_t fzh_session(const uint8_t *data, size_t len, const size_t *cuts, size_t ncuts);

/* Appends a masked client frame (mask key 0, so the payload stays readable
 * for the fuzzer) of opcode with payload to out; returns its length. out must
 * hold len + 14 bytes. */
size_t fzh_frame(uint8_t *out, uint8_t opcode, int fin, const uint8_t *payload, size_t len);

/* Writes the WebSocket upgrade request for path into out; returns its length. */
size_t fzh_upgrade(char *out, size_t cap, const char *path);

/* One multi WebSocket (/api/updates, no credential) sending data as text
 * messages separated by NUL bytes, each one text frame (at most 16); a
 * message starting with 0x01 is sent in two fragments. Returns the bytes
 * the server wrote. */
size_t fzh_ops_session(const uint8_t *data, size_t size);

#endif
