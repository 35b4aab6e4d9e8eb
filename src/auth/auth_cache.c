/* The cache of verified tokens: verifying a token signed with an RSA or EC
 * key costs ~0.6 ms (libjwt 1.10 decodes the PEM key on every call), and
 * clients that reconnect, or many connections of one service, present the
 * same token again and again. An entry is keyed by the SHA-256 of the exact
 * token text and holds what the verification produced (the grant, exp and
 * the nbf/iat bound), so a hit re-applies the time checks at its own moment
 * and answers exactly what a fresh verification would: only the signature,
 * base64 and JSON work is skipped, all of which depend on the token bytes
 * and the key alone (the key never changes for an fc_auth).
 *
 * Set-associative (8 ways, least recently used evicted within a set): a
 * lookup touches 8 entries, there is no list to keep, and SHA-256 spreads
 * tokens evenly over the sets. One mutex serves every I/O thread: it is held
 * for a scan of 8 entries and a copy of the grant, well under a microsecond
 * next to the hundreds it saves. */
#include "auth/auth_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define WAYS 8

typedef struct entry {
    unsigned char key[FC__AUTH_CACHE_KEY];
    int used;
    uint64_t tick; /* last use, for the eviction */
    int64_t not_before;
    fc_auth_grant g;
} entry;

struct fc__auth_cache {
    pthread_mutex_t mu;
    int n_sets, ways, entries;
    uint64_t tick, hits, misses;
    entry *slots;
};

fc__auth_cache *fc__auth_cache_new(int capacity)
{
    fc__auth_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    /* Never more than capacity: small caches are one set of that many ways. */
    c->ways = capacity < WAYS ? capacity : WAYS;
    c->n_sets = capacity / c->ways;
    c->slots = calloc((size_t)c->n_sets * (size_t)c->ways, sizeof *c->slots);
    if (!c->slots || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->slots);
        free(c);
        return NULL;
    }
    return c;
}

static void drop(fc__auth_cache *c, entry *e)
{
    fc_auth_grant_clear(&e->g);
    memset(e, 0, sizeof *e);
    c->entries--;
}

void fc__auth_cache_free(fc__auth_cache *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_sets * c->ways; i++)
        if (c->slots[i].used) drop(c, &c->slots[i]);
    pthread_mutex_destroy(&c->mu);
    free(c->slots);
    free(c);
}

static entry *set_of(fc__auth_cache *c, const unsigned char *key)
{
    uint32_t h;
    memcpy(&h, key, sizeof h);
    return &c->slots[(size_t)(h % (uint32_t)c->n_sets) * (size_t)c->ways];
}

/* A grant with its own copy of the patterns; -1 (dst empty) when out of memory. */
static int grant_copy(fc_auth_grant *dst, const fc_auth_grant *src)
{
    *dst = *src;
    dst->patterns = NULL;
    if (src->n_patterns < 0) return 0;
    dst->n_patterns = 0;
    dst->patterns = calloc((size_t)src->n_patterns + 1, sizeof *dst->patterns);
    if (!dst->patterns) goto fail;
    for (int i = 0; i < src->n_patterns; i++) {
        if (!(dst->patterns[i] = strdup(src->patterns[i]))) goto fail;
        dst->n_patterns++;
    }
    return 0;
fail:
    fc_auth_grant_clear(dst);
    return -1;
}

int fc__auth_cache_get(fc__auth_cache *c, const unsigned char *key, int64_t now, fc_auth_grant *g,
                       int *r)
{
    pthread_mutex_lock(&c->mu);
    entry *set = set_of(c, key), *e = NULL;
    for (int i = 0; i < c->ways && !e; i++)
        if (set[i].used && memcmp(set[i].key, key, FC__AUTH_CACHE_KEY) == 0) e = &set[i];
    if (!e) {
        c->misses++;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    c->hits++;
    e->tick = ++c->tick;
    /* The order of check_claims in auth.c: nbf/iat first, then exp. */
    if (e->not_before > now) {
        *r = -1;
    } else if (now >= e->g.exp) {
        drop(c, e); /* never valid again: its slot is free for another */
        *r = FC_AUTH_EXPIRED;
    } else {
        *r = grant_copy(g, &e->g);
    }
    pthread_mutex_unlock(&c->mu);
    return 1;
}

void fc__auth_cache_put(fc__auth_cache *c, const unsigned char *key, int64_t not_before,
                        const fc_auth_grant *g)
{
    fc_auth_grant copy;
    if (grant_copy(&copy, g) != 0) return;
    pthread_mutex_lock(&c->mu);
    entry *set = set_of(c, key), *victim = &set[0];
    for (int i = 0; i < c->ways; i++) {
        entry *e = &set[i];
        /* Two threads verifying one token both put it: keep one entry. */
        if (e->used && memcmp(e->key, key, FC__AUTH_CACHE_KEY) == 0) {
            victim = e;
            break;
        }
        if (!e->used) {
            if (victim->used) victim = e;
        } else if (victim->used && e->tick < victim->tick) {
            victim = e;
        }
    }
    if (victim->used) drop(c, victim);
    memcpy(victim->key, key, FC__AUTH_CACHE_KEY);
    victim->used = 1;
    victim->tick = ++c->tick;
    victim->not_before = not_before;
    victim->g = copy;
    c->entries++;
    pthread_mutex_unlock(&c->mu);
}

void fc__auth_cache_stats(fc__auth_cache *c, uint64_t *hits, uint64_t *misses, int *entries)
{
    pthread_mutex_lock(&c->mu);
    *hits = c->hits;
    *misses = c->misses;
    *entries = c->entries;
    pthread_mutex_unlock(&c->mu);
}
