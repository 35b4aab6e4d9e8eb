/* The transactions this process has every change of (the bus brought them
 * whole, or it committed them itself), by transaction id, for the
 * catch-up to leave out of its reads of the store's log (relay.c). A
 * transaction is whole once as many of its changes were heard as it
 * committed (each change travels with its transaction's count).
 * At most `max` transactions are kept (an open-addressing table, no
 * allocation per entry); past it new ones are not recorded, which costs
 * their rows in the next read, never a change. One thread at a time: the
 * relay holds a lock around every call. */
#ifndef FC_FEED_HEARD_H
#define FC_FEED_HEARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct fc__heard_entry {
    int64_t txid; /* 0: a free slot */
    uint32_t got, of;
} fc__heard_entry;

typedef struct fc__heard {
    fc__heard_entry *slots;
    size_t cap; /* a power of two, at least twice count */
    size_t count, max;
    uint64_t full; /* changes not recorded: the table held max transactions */
} fc__heard;

/* An empty table for at most max (>= 1) transactions. 0, or -1 on OOM. */
int fc__heard_init(fc__heard *h, size_t max);
void fc__heard_free(fc__heard *h);
/* One change of transaction txid (> 0), which committed `of` (>= 1) changes. */
void fc__heard_add(fc__heard *h, int64_t txid, uint32_t of);
/* Whether every change of txid was heard. */
int fc__heard_whole(const fc__heard *h, int64_t txid);
/* Forgets every transaction below txid (the catch-up has read past them). */
void fc__heard_forget_below(fc__heard *h, int64_t txid);

#endif
