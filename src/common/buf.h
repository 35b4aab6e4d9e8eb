/* fc_buf: an immutable, reference-counted byte buffer shared by every
 * connection that writes it (one encoded frame, many subscribers).
 * The creator holds one reference; each holder calls fc_buf_unref once;
 * the last unref frees it. Not thread-safe: a buffer lives on one loop. */
#ifndef FC_COMMON_BUF_H
#define FC_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct fc_buf {
    uint32_t refs;
    uint32_t len;
    uint64_t commit_ns; /* monotonic time the change was committed; 0 if not a change */
    int64_t seq;        /* the change's seq; 0 if not a change */
    int64_t epoch;      /* the change's incarnation (fc_workflow.epoch); 0 if not a change */
    const char *key;    /* workflow id the change belongs to (stored after data); NULL if none */
    struct fc_buf *alt; /* the same change encoded for another transport (SSE), owned */
    uint8_t data[];
} fc_buf;

/* Allocates a buffer of len bytes (contents uninitialised), refcount 1. NULL on OOM. */
fc_buf *fc_buf_new(size_t len);
/* Like fc_buf_new, with a copy of key stored in the same allocation. */
fc_buf *fc_buf_new_keyed(size_t len, const char *key);
/* Allocates a copy of data, refcount 1. NULL on OOM. */
fc_buf *fc_buf_copy(const void *data, size_t len);

static inline fc_buf *fc_buf_ref(fc_buf *b)
{
    b->refs++;
    return b;
}

void fc_buf_unref(fc_buf *b);

#endif
