/* Per-client limits shared by every loop: open streams per client and a write
 * rate (token bucket) per client. A client is an IP address today; the key
 * has a kind byte so a token subject (JWT "sub", hashed) can key it later
 * without changing the table. Entries live while they hold a stream or a
 * bucket that is not yet full again, and the table has a fixed cap, so its
 * memory is bounded whatever the number of addresses. */
#ifndef FC_SERVER_CLIENTS_H
#define FC_SERVER_CLIENTS_H

#include <stdint.h>
#include <uv.h>

/* Entries at most (64 bytes each with malloc's header: at most 4 MB). */
#define FC_CLIENTS_MAX 65536

typedef enum { FC_CLIENT_ADDR = 1 } fc_client_kind;

typedef struct fc_client_key {
    uint8_t kind;   /* fc_client_kind */
    uint8_t id[16]; /* the IPv6 address, or an IPv4 one mapped into it */
} fc_client_key;

typedef struct fc_clients fc_clients;
typedef struct fc_client fc_client;

typedef enum {
    FC_CLIENTS_OK = 0,
    FC_CLIENTS_LIMIT, /* the client is over its limit */
    FC_CLIENTS_FULL,  /* the table is at FC_CLIENTS_MAX with nothing to expire */
    FC_CLIENTS_NOMEM,
} fc_clients_result;

/* max_streams 0 = no stream limit; rate 0 = no write rate (burst as in
 * fc_bucket_rate_make). NULL when out of memory. */
fc_clients *fc_clients_new(int max_streams, double rate, int burst);
void fc_clients_free(fc_clients *t);
int fc_clients_max_streams(const fc_clients *t);
int fc_clients_rate_on(const fc_clients *t);

/* The key of the peer of a connected socket; 0, or -1 when it has none. */
int fc_clients_key_of(const uv_tcp_t *tcp, fc_client_key *key);

/* Counts one more stream for key: on FC_CLIENTS_OK, *out is the entry to
 * give fc_clients_stream_release when the stream ends. Any thread. */
fc_clients_result fc_clients_stream_take(fc_clients *t, const fc_client_key *key, fc_client **out);
void fc_clients_stream_release(fc_clients *t, fc_client *e);

/* Takes one write from key's bucket at now_ns (monotonic). FC_CLIENTS_LIMIT
 * sets *wait_ns to the time until the next token. */
fc_clients_result fc_clients_write_take(fc_clients *t, const fc_client_key *key, uint64_t now_ns,
                                        uint64_t *wait_ns);

/* Entries in the table now (tests, metrics). */
int fc_clients_count(fc_clients *t);

#endif
