/* Per-client limits shared by every loop: open streams per client and a write
 * rate (token bucket) per client. A client is an IP address or a token
 * subject (JWT "sub", hashed): the key's kind byte keeps the two apart in one
 * table. Entries live while they hold a stream or a bucket that is not yet
 * full again; the table has a fixed cap, and when it is full a new key
 * evicts the rate-only entry that owes least (its bucket is nearest to
 * full: it loses at most that debt), as nginx's limit_req zone drops its
 * least recently used state. Entries that hold streams are never evicted, so
 * the table's memory is bounded whatever the number of addresses or
 * subjects. */
#ifndef FC_SERVER_CLIENTS_H
#define FC_SERVER_CLIENTS_H

#include <stdint.h>
#include <uv.h>

/* Entries at most (64 bytes each with malloc's header: at most 4 MB). */
#define FC_CLIENTS_MAX 65536
/* Hash chains in all (fc_clients_sweep). */
#define FC_CLIENTS_CHAINS 8192

typedef enum { FC_CLIENT_ADDR = 1, FC_CLIENT_SUBJECT = 2 } fc_client_kind;

typedef struct fc_client_key {
    uint8_t kind;   /* fc_client_kind */
    uint8_t id[16]; /* the IPv6 address, or an IPv4 one mapped into it; or
                     * the subject's hash (fc_auth_grant.sub) */
} fc_client_key;

typedef struct fc_clients fc_clients;
typedef struct fc_client fc_client;

typedef enum {
    FC_CLIENTS_OK = 0,
    FC_CLIENTS_LIMIT, /* the client is over its limit */
    FC_CLIENTS_FULL,  /* the table is at FC_CLIENTS_MAX, every entry holding streams */
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
/* The key of a token subject from its 16-byte hash. */
void fc_clients_key_subject(const uint8_t sub[16], fc_client_key *key);

/* Counts one more stream for key: on FC_CLIENTS_OK, *out is the entry to
 * give fc_clients_stream_release when the stream ends. Any thread. */
fc_clients_result fc_clients_stream_take(fc_clients *t, const fc_client_key *key, fc_client **out);
void fc_clients_stream_release(fc_clients *t, fc_client *e);
/* The key of an entry held by a stream (it never changes: no lock needed). */
const fc_client_key *fc_clients_entry_key(const fc_client *e);

/* Takes one write from key's bucket at now_ns (monotonic). FC_CLIENTS_LIMIT
 * sets *wait_ns to the time until the next token. */
fc_clients_result fc_clients_write_take(fc_clients *t, const fc_client_key *key, uint64_t now_ns,
                                        uint64_t *wait_ns);

/* Frees the idle entries of the next n hash chains (of FC_CLIENTS_CHAINS,
 * round-robin), so a flood's entries go soon after they are idle even if no
 * lookup touches their chains again. One caller at a time. */
void fc_clients_sweep(fc_clients *t, int n, uint64_t now_ns);

/* Entries in the table now, and entries evicted so far (tests, metrics). */
int fc_clients_count(fc_clients *t);
uint64_t fc_clients_evicted(fc_clients *t);

#endif
