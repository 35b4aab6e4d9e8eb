/* The heard transactions: see heard.h. Linear probing on a table at most
 * half full; forgetting rebuilds it (once per catch-up read), so no
 * deletion marks are needed. */
#include "feed/heard.h"

#include <stdlib.h>
#include <string.h>

#define CAP_MIN 64

static size_t slot_of(const fc__heard *h, int64_t txid)
{
    /* Fibonacci hashing: transaction ids are consecutive integers. */
    return (size_t)(((uint64_t)txid * 0x9E3779B97F4A7C15ull) >> 32) & (h->cap - 1);
}

static fc__heard_entry *find(const fc__heard *h, int64_t txid)
{
    for (size_t i = slot_of(h, txid);; i = (i + 1) & (h->cap - 1))
        if (h->slots[i].txid == txid || h->slots[i].txid == 0) return &h->slots[i];
}

int fc__heard_init(fc__heard *h, size_t max)
{
    memset(h, 0, sizeof *h);
    h->max = max ? max : 1;
    h->cap = CAP_MIN;
    h->slots = calloc(h->cap, sizeof *h->slots);
    return h->slots ? 0 : -1;
}

void fc__heard_free(fc__heard *h)
{
    free(h->slots);
    memset(h, 0, sizeof *h);
}

/* Moves the entries at or above keep into a table of cap slots (NULL
 * table: out of memory, the old one stays). */
static int rebuild(fc__heard *h, size_t cap, int64_t keep)
{
    fc__heard_entry *old = h->slots;
    size_t old_cap = h->cap;
    h->slots = calloc(cap, sizeof *h->slots);
    if (!h->slots) {
        h->slots = old;
        return -1;
    }
    h->cap = cap;
    h->count = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].txid != 0 && old[i].txid >= keep) {
            *find(h, old[i].txid) = old[i];
            h->count++;
        }
    free(old);
    return 0;
}

void fc__heard_add(fc__heard *h, int64_t txid, uint32_t of)
{
    fc__heard_entry *e = find(h, txid);
    if (e->txid == 0) {
        if (h->count >= h->max ||
            (2 * (h->count + 1) > h->cap && rebuild(h, h->cap * 2, INT64_MIN) != 0)) {
            h->full++;
            return;
        }
        e = find(h, txid);
        *e = (fc__heard_entry){.txid = txid};
        h->count++;
    }
    e->got++;
    if (of > e->of) e->of = of;
}

int fc__heard_whole(const fc__heard *h, int64_t txid)
{
    const fc__heard_entry *e = find(h, txid);
    return e->txid != 0 && e->of > 0 && e->got >= e->of;
}

void fc__heard_forget_below(fc__heard *h, int64_t txid)
{
    size_t cap = h->cap;
    /* Shrink back after a burst: the table stays at most a quarter full. */
    while (cap > CAP_MIN && 4 * h->count < cap)
        cap /= 2;
    if (rebuild(h, cap, txid) != 0 && rebuild(h, h->cap, txid) != 0) {
        /* No memory even to rebuild: forgetting everything only costs reads. */
        memset(h->slots, 0, h->cap * sizeof *h->slots);
        h->count = 0;
    }
}
