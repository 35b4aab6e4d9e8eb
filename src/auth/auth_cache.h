/* Internal to src/auth: the cache of verified tokens behind fc_auth_verify. */
#ifndef FC_AUTH_AUTH_CACHE_H
#define FC_AUTH_AUTH_CACHE_H

#include "auth/auth.h"

#define FC__AUTH_CACHE_KEY 32 /* SHA-256 of the token */

typedef struct fc__auth_cache fc__auth_cache;

/* A cache of at most capacity entries (> 0); NULL when out of memory. */
fc__auth_cache *fc__auth_cache_new(int capacity);
void fc__auth_cache_free(fc__auth_cache *c);

/* Looks key up at time now. A hit returns 1 with *r what a fresh verify
 * would give now: -1 while not_before (the later of nbf and iat, minus the
 * leeway) is still ahead, FC_AUTH_EXPIRED from exp on (the entry is dropped),
 * else 0 with a copy of the grant in g (-1 if that copy runs out of memory).
 * A miss returns 0. */
int fc__auth_cache_get(fc__auth_cache *c, const unsigned char *key, int64_t now, fc_auth_grant *g,
                       int *r);
/* Remembers the grant of a token that verified; evicts the least recently
 * used entry of its set when full. Out of memory = not remembered. */
void fc__auth_cache_put(fc__auth_cache *c, const unsigned char *key, int64_t not_before,
                        const fc_auth_grant *g);
void fc__auth_cache_stats(fc__auth_cache *c, uint64_t *hits, uint64_t *misses, int *entries);

#endif
