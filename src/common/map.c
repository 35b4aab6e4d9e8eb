/* String-keyed intrusive hash table (FNV-1a, separate chaining). */
#include "common/map.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

uint64_t fc_map_hash(const char *key)
{
    uint64_t h = 1469598103934665603u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211u;
    }
    return h;
}

int fc_map_init(fc_map *m)
{
    m->n_buckets = 64;
    m->count = 0;
    m->buckets = calloc(m->n_buckets, sizeof *m->buckets);
    return m->buckets ? 0 : FC_ENOMEM;
}

void fc_map_destroy(fc_map *m)
{
    free(m->buckets);
    m->buckets = NULL;
    m->n_buckets = m->count = 0;
}

fc_map_node *fc_map_get(const fc_map *m, const char *key)
{
    uint64_t h = fc_map_hash(key);
    for (fc_map_node *n = m->buckets[h & (m->n_buckets - 1)]; n; n = n->next)
        if (n->hash == h && strcmp(n->key, key) == 0) return n;
    return NULL;
}

static int grow(fc_map *m)
{
    size_t nb = m->n_buckets * 2;
    fc_map_node **b = calloc(nb, sizeof *b);
    if (!b) return FC_ENOMEM;
    for (size_t i = 0; i < m->n_buckets; i++) {
        fc_map_node *n = m->buckets[i];
        while (n) {
            fc_map_node *next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = nb;
    return 0;
}

int fc_map_put(fc_map *m, fc_map_node *node)
{
    /* A failed grow only makes chains longer; the insert still succeeds. */
    if (m->count >= m->n_buckets) (void)grow(m);
    node->hash = fc_map_hash(node->key);
    fc_map_node **slot = &m->buckets[node->hash & (m->n_buckets - 1)];
    node->next = *slot;
    *slot = node;
    m->count++;
    return 0;
}

void fc_map_remove(fc_map *m, fc_map_node *node)
{
    fc_map_node **p = &m->buckets[node->hash & (m->n_buckets - 1)];
    while (*p && *p != node)
        p = &(*p)->next;
    if (*p) {
        *p = node->next;
        m->count--;
    }
    node->next = NULL;
}
