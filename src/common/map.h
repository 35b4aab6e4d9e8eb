/* fc_map: a string-keyed hash table with intrusive nodes. The node and its
 * key live inside the caller's struct, so insertion never allocates a node;
 * the table grows its bucket array by doubling. Not thread-safe. */
#ifndef FC_COMMON_MAP_H
#define FC_COMMON_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fc_map_node {
    struct fc_map_node *next;
    uint64_t hash;
    const char *key; /* must stay valid while the node is in a map */
} fc_map_node;

typedef struct fc_map {
    fc_map_node **buckets;
    size_t n_buckets; /* power of two */
    size_t count;
} fc_map;

uint64_t fc_map_hash(const char *key);
/* 0 or FC_ENOMEM. */
int fc_map_init(fc_map *m);
/* Frees the bucket array; the nodes belong to their owners. */
void fc_map_destroy(fc_map *m);
fc_map_node *fc_map_get(const fc_map *m, const char *key);
/* Inserts node (key set by the caller; must not be present). 0 or FC_ENOMEM. */
int fc_map_put(fc_map *m, fc_map_node *node);
void fc_map_remove(fc_map *m, fc_map_node *node);

#endif
