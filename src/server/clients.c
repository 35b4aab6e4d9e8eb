#include "server/clients.h"

#include "common/bucket.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Loops look up clients at once: the table is split into shards, each with
 * its own lock and hash chains, so two loops rarely wait on each other. */
#define N_SHARDS 16
#define N_CHAINS (FC_CLIENTS_CHAINS / N_SHARDS) /* per shard */
#define SHARD_MAX (FC_CLIENTS_MAX / N_SHARDS)

struct fc_client {
    fc_client *next;
    fc_client_key key;
    uint8_t shard;
    uint32_t streams;
    uint64_t tat; /* token bucket state (common/bucket.h) */
};

typedef struct shard {
    pthread_mutex_t lock;
    int count;
    fc_client *chains[N_CHAINS];
} shard;

struct fc_clients {
    int max_streams;
    int rate_on;
    fc_bucket_rate rate;
    atomic_int count;
    atomic_uint_fast64_t evicted;
    unsigned sweep_at; /* the next chain fc_clients_sweep looks at */
    shard shards[N_SHARDS];
};

fc_clients *fc_clients_new(int max_streams, double rate, int burst)
{
    fc_clients *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->max_streams = max_streams;
    t->rate_on = rate > 0;
    if (t->rate_on) t->rate = fc_bucket_rate_make(rate, burst);
    for (int i = 0; i < N_SHARDS; i++)
        pthread_mutex_init(&t->shards[i].lock, NULL);
    return t;
}

void fc_clients_free(fc_clients *t)
{
    if (!t) return;
    for (int i = 0; i < N_SHARDS; i++) {
        for (int j = 0; j < N_CHAINS; j++) {
            fc_client *e = t->shards[i].chains[j];
            while (e) {
                fc_client *next = e->next;
                free(e);
                e = next;
            }
        }
        pthread_mutex_destroy(&t->shards[i].lock);
    }
    free(t);
}

int fc_clients_max_streams(const fc_clients *t)
{
    return t->max_streams;
}

int fc_clients_rate_on(const fc_clients *t)
{
    return t->rate_on;
}

int fc_clients_count(fc_clients *t)
{
    return atomic_load_explicit(&t->count, memory_order_relaxed);
}

uint64_t fc_clients_evicted(fc_clients *t)
{
    return atomic_load_explicit(&t->evicted, memory_order_relaxed);
}

void fc_clients_key_subject(const uint8_t sub[16], fc_client_key *key)
{
    memset(key, 0, sizeof *key);
    key->kind = FC_CLIENT_SUBJECT;
    memcpy(key->id, sub, sizeof key->id);
}

int fc_clients_key_of(const uv_tcp_t *tcp, fc_client_key *key)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0) return -1;
    memset(key, 0, sizeof *key);
    key->kind = FC_CLIENT_ADDR;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        key->id[10] = key->id[11] = 0xff; /* ::ffff:a.b.c.d */
        memcpy(key->id + 12, &in->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        memcpy(key->id, &((const struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    } else {
        return -1;
    }
    return 0;
}

/* FNV-1a: the key is not secret, and a client picks only its own address. */
static uint32_t key_hash(const fc_client_key *k)
{
    uint32_t h = 2166136261u ^ k->kind;
    for (size_t i = 0; i < sizeof k->id; i++)
        h = (h ^ k->id[i]) * 16777619u;
    return h;
}

static int idle(const fc_client *e, uint64_t now_ns)
{
    return e->streams == 0 && fc_bucket_full(e->tat, now_ns);
}

/* Frees the chain's entries that hold nothing (under the shard's lock). */
static void prune_chain(fc_clients *t, shard *s, fc_client **link, uint64_t now_ns)
{
    while (*link) {
        fc_client *e = *link;
        if (idle(e, now_ns)) {
            *link = e->next;
            free(e);
            s->count--;
            atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
        } else {
            link = &e->next;
        }
    }
}

/* Chains an eviction looks at first: a sample, as Redis samples keys for its
 * approximate LRU, so a flood of new keys costs a few dozen entries each. */
#define EVICT_SAMPLE 8

/* The link to the entry without streams whose bucket is nearest to full (the
 * least debt forgotten) in chains from..from+n-1 (mod N_CHAINS), or NULL. */
static fc_client **evict_pick(shard *s, int from, int n)
{
    fc_client **victim = NULL;
    for (int j = 0; j < n; j++)
        for (fc_client **link = &s->chains[(from + j) % N_CHAINS]; *link; link = &(*link)->next)
            if ((*link)->streams == 0 && (!victim || (*link)->tat < (*victim)->tat)) victim = link;
    return victim;
}

/* Frees one entry without streams of a full shard, from a sample of chains
 * after chain (else from the whole shard); 0, or -1 when every entry holds
 * streams. */
static int evict_one(fc_clients *t, shard *s, int chain)
{
    fc_client **victim = evict_pick(s, chain, EVICT_SAMPLE);
    if (!victim) victim = evict_pick(s, 0, N_CHAINS);
    if (!victim) return -1;
    fc_client *e = *victim;
    *victim = e->next;
    free(e);
    s->count--;
    atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->evicted, 1, memory_order_relaxed);
    return 0;
}

/* Finds or makes key's entry (under the shard's lock); NULL with *res set. */
static fc_client *lookup(fc_clients *t, shard *s, int si, const fc_client_key *key, uint32_t h,
                         uint64_t now_ns, fc_clients_result *res)
{
    int ci = (int)((h / N_SHARDS) % N_CHAINS);
    fc_client **chain = &s->chains[ci];
    for (fc_client *e = *chain; e; e = e->next)
        if (memcmp(&e->key, key, sizeof *key) == 0) return e;
    prune_chain(t, s, chain, now_ns);
    /* Bounded: SHARD_MAX entries at most. A full shard first frees what is
     * idle in a few chains, then evicts. */
    for (int j = 1; j < EVICT_SAMPLE && s->count >= SHARD_MAX; j++)
        prune_chain(t, s, &s->chains[(ci + j) % N_CHAINS], now_ns);
    if (s->count >= SHARD_MAX && evict_one(t, s, ci) != 0) {
        *res = FC_CLIENTS_FULL;
        return NULL;
    }
    fc_client *e = calloc(1, sizeof *e);
    if (!e) {
        *res = FC_CLIENTS_NOMEM;
        return NULL;
    }
    e->key = *key;
    e->shard = (uint8_t)si;
    e->next = *chain;
    *chain = e;
    s->count++;
    atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
    return e;
}

void fc_clients_sweep(fc_clients *t, int n, uint64_t now_ns)
{
    for (int i = 0; i < n; i++) {
        unsigned at = t->sweep_at++ % FC_CLIENTS_CHAINS;
        shard *s = &t->shards[at % N_SHARDS];
        pthread_mutex_lock(&s->lock);
        prune_chain(t, s, &s->chains[at / N_SHARDS], now_ns);
        pthread_mutex_unlock(&s->lock);
    }
}

static uint64_t now_ns_mono(void)
{
    return uv_hrtime();
}

fc_clients_result fc_clients_stream_take(fc_clients *t, const fc_client_key *key, fc_client **out)
{
    uint32_t h = key_hash(key);
    int si = (int)(h % N_SHARDS);
    shard *s = &t->shards[si];
    fc_clients_result res = FC_CLIENTS_OK;
    pthread_mutex_lock(&s->lock);
    fc_client *e = lookup(t, s, si, key, h, now_ns_mono(), &res);
    if (e && t->max_streams > 0 && e->streams >= (uint32_t)t->max_streams) {
        res = FC_CLIENTS_LIMIT;
        e = NULL;
    }
    if (e) e->streams++;
    pthread_mutex_unlock(&s->lock);
    *out = e;
    return res;
}

const fc_client_key *fc_clients_entry_key(const fc_client *e)
{
    return &e->key;
}

void fc_clients_stream_release(fc_clients *t, fc_client *e)
{
    shard *s = &t->shards[e->shard];
    pthread_mutex_lock(&s->lock);
    /* The entry stays until a later lookup in its chain finds it idle. */
    e->streams--;
    pthread_mutex_unlock(&s->lock);
}

fc_clients_result fc_clients_write_take(fc_clients *t, const fc_client_key *key, uint64_t now_ns,
                                        uint64_t *wait_ns)
{
    uint32_t h = key_hash(key);
    int si = (int)(h % N_SHARDS);
    shard *s = &t->shards[si];
    fc_clients_result res = FC_CLIENTS_OK;
    pthread_mutex_lock(&s->lock);
    fc_client *e = lookup(t, s, si, key, h, now_ns, &res);
    if (e) {
        *wait_ns = fc_bucket_take(&t->rate, &e->tat, now_ns);
        if (*wait_ns) res = FC_CLIENTS_LIMIT;
    }
    pthread_mutex_unlock(&s->lock);
    return res;
}
