/* Per-connection output queues in pooled chunks, with same-workflow coalescing. */
#include "server/outq.h"
#include "common/error.h"
#include "common/list.h"
#include "common/map.h"

#include <stdlib.h>

/* Chunks kept for reuse per thread (about 1 MB); more are freed, so that a
 * burst of long queues does not stay resident. */
#define POOL_MAX 4096

/* Per loop thread: a chunk is taken and returned on the thread that owns its connection. */
static _Thread_local fc_outq_chunk *pool;
static _Thread_local unsigned pool_len;
/* Bytes of buffers (and chunks) this thread's queues freed. */
static _Thread_local size_t freed;

/* Drops the queue's reference to b, counting the bytes when that frees it. */
static void release(fc_buf *b)
{
    if (b->refs == 1) freed += sizeof *b + b->len;
    fc_buf_unref(b);
}

size_t fc_outq_take_freed(void)
{
    size_t n = freed;
    freed = 0;
    return n;
}

static fc_outq_chunk *chunk_get(void)
{
    fc_outq_chunk *c = pool;
    if (c) {
        pool = c->next;
        pool_len--;
    } else if (!(c = malloc(sizeof *c))) {
        return NULL;
    }
    c->next = NULL;
    return c;
}

static void chunk_put(fc_outq_chunk *c)
{
    if (pool_len == POOL_MAX) {
        free(c);
        freed += sizeof *c;
        return;
    }
    c->next = pool;
    pool = c;
    pool_len++;
}

void fc_outq_pool_trim(void)
{
    while (pool) {
        fc_outq_chunk *c = pool;
        pool = c->next;
        free(c);
    }
    pool_len = 0;
}

/* A position in the queue: chunk and slot. */
typedef struct pos {
    fc_outq_chunk *chunk;
    unsigned idx;
} pos;

static void pos_next(pos *p)
{
    if (++p->idx == FC_OUTQ_CHUNK) {
        p->chunk = p->chunk->next;
        p->idx = 0;
    }
}

/* --- the coalescing index ------------------------------------------------- */

/* Where the newest queued entry of one workflow is. Entries never move while
 * queued (only the head advances), so a slot stays valid until the entry is
 * taken off the head or the queue is filtered (which frees the index). */
typedef struct idx_node {
    fc_map_node node; /* key: the queued buffer's key */
    fc_outq_chunk *chunk;
    uint32_t slot;
    uint32_t num; /* entry number (popped + position), to tell pinned entries */
} idx_node;

struct fc_outq_index {
    fc_map map;
    uint32_t floor; /* the index is freed when the queue gets shorter than this */
};

static void index_free(fc_outq *q)
{
    struct fc_outq_index *ix = q->index;
    if (!ix) return;
    for (size_t i = 0; i < ix->map.n_buckets; i++) {
        fc_map_node *n = ix->map.buckets[i];
        while (n) {
            fc_map_node *next = n->next;
            free(fc_container_of(n, idx_node, node));
            n = next;
        }
    }
    fc_map_destroy(&ix->map);
    free(ix);
    q->index = NULL;
}

/* Records that entry num, at chunk[slot], is the newest of its key. Out of
 * memory drops the whole index (coalescing then appends until it is rebuilt). */
static void index_note(fc_outq *q, fc_outq_chunk *chunk, unsigned slot, uint32_t num)
{
    fc_buf *b = chunk->bufs[slot];
    fc_map_node *n = fc_map_get(&q->index->map, b->key);
    idx_node *e = n ? fc_container_of(n, idx_node, node) : calloc(1, sizeof *e);
    if (!e) {
        index_free(q);
        return;
    }
    e->node.key = b->key; /* the same string, now owned by the newer buffer */
    e->chunk = chunk;
    e->slot = slot;
    e->num = num;
    if (!n) fc_map_put(&q->index->map, &e->node);
}

/* Forgets entry num (of buffer b) when the index points at it. */
static void index_forget(fc_outq *q, const fc_buf *b, uint32_t num)
{
    fc_map_node *n = fc_map_get(&q->index->map, b->key);
    if (!n || fc_container_of(n, idx_node, node)->num != num) return;
    fc_map_remove(&q->index->map, n);
    free(fc_container_of(n, idx_node, node));
}

/* Builds the index over the queue: one pass when the queue reaches its limit. */
static void index_build(fc_outq *q, uint32_t limit)
{
    q->index = calloc(1, sizeof *q->index);
    if (!q->index) return;
    if (fc_map_init(&q->index->map) != 0) {
        free(q->index);
        q->index = NULL;
        return;
    }
    q->index->floor = limit / 2;
    pos p = {q->head, q->head_idx};
    for (uint32_t i = 0; i < q->count && q->index; i++, pos_next(&p))
        if (p.chunk->bufs[p.idx]->key) index_note(q, p.chunk, p.idx, q->popped + i);
}

static void link_chunk(fc_outq *q, fc_outq_chunk *c)
{
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c, q->head_idx = 0;
    q->tail = c;
    q->tail_idx = 0;
}

int fc_outq_push(fc_outq *q, fc_buf *buf)
{
    if (!q->tail || q->tail_idx == FC_OUTQ_CHUNK) {
        fc_outq_chunk *c = chunk_get();
        if (!c) {
            fc_buf_unref(buf);
            return FC_ENOMEM;
        }
        link_chunk(q, c);
    }
    q->tail->bufs[q->tail_idx] = buf;
    if (q->index && buf->key) index_note(q, q->tail, q->tail_idx, q->popped + q->count);
    q->tail_idx++;
    q->count++;
    q->bytes += buf->len;
    return 0;
}

/* Frees the chunks after the one holding the last kept entry and sets the tail. */
static void truncate_at(fc_outq *q, pos end, uint32_t kept)
{
    q->count = kept;
    if (kept == 0) {
        fc_outq_chunk *c = q->head;
        while (c) {
            fc_outq_chunk *next = c->next;
            chunk_put(c);
            c = next;
        }
        q->head = q->tail = NULL;
        q->head_idx = q->tail_idx = 0;
        return;
    }
    /* end is the slot after the last kept entry. */
    fc_outq_chunk *last = end.chunk;
    unsigned idx = end.idx;
    if (idx == 0) { /* the last kept entry filled its chunk: find that chunk */
        fc_outq_chunk *c = q->head;
        while (c->next != end.chunk)
            c = c->next;
        last = c;
        idx = FC_OUTQ_CHUNK;
    }
    fc_outq_chunk *c = last->next;
    while (c) {
        fc_outq_chunk *next = c->next;
        chunk_put(c);
        c = next;
    }
    last->next = NULL;
    q->tail = last;
    q->tail_idx = (uint16_t)idx;
}

/* The entries that must stay: locked by an in-flight write, or partly written. */
static uint32_t pinned(const fc_outq *q)
{
    return q->locked ? q->locked : (q->head_off ? 1u : 0u);
}

/* Keeps the pinned entries and, after them, those keep() accepts (in order);
 * releases the others. Returns how many were released. */
static uint32_t filter(fc_outq *q, int (*keep)(const fc_buf *b, const void *arg), const void *arg)
{
    index_free(q); /* entries move */
    uint32_t n = q->count, fixed = pinned(q);
    if (n <= fixed) return 0;
    pos rd = {q->head, q->head_idx};
    size_t bytes = 0;
    for (uint32_t i = 0; i < fixed; i++, pos_next(&rd))
        bytes += rd.chunk->bufs[rd.idx]->len;
    pos wr = rd;
    uint32_t kept = fixed;
    for (uint32_t i = fixed; i < n; i++, pos_next(&rd)) {
        fc_buf *b = rd.chunk->bufs[rd.idx];
        if (keep && keep(b, arg)) {
            wr.chunk->bufs[wr.idx] = b;
            pos_next(&wr);
            kept++;
            bytes += b->len;
        } else {
            release(b);
        }
    }
    truncate_at(q, wr, kept);
    q->bytes = bytes - q->head_off;
    return n - kept;
}

int fc_outq_push_coalesce(fc_outq *q, fc_buf *buf, uint32_t limit)
{
    if (q->count < limit || !buf->key) return fc_outq_push(q, buf);
    if (!q->index) index_build(q, limit);
    fc_map_node *n = q->index ? fc_map_get(&q->index->map, buf->key) : NULL;
    if (n) {
        idx_node *e = fc_container_of(n, idx_node, node);
        fc_buf *old = e->chunk->bufs[e->slot];
        /* Only an unsent, older state of the same incarnation is replaced:
         * never bytes already in a write, never a later seq, and never a
         * state of another epoch (a re-created workflow, whose states must
         * stay after the old one's deletion, which has no key). */
        if (e->num - q->popped >= pinned(q) && old->epoch == buf->epoch && old->seq < buf->seq) {
            e->chunk->bufs[e->slot] = buf;
            e->node.key = buf->key;
            q->bytes = q->bytes - old->len + buf->len;
            release(old);
            return 1;
        }
    }
    return fc_outq_push(q, buf);
}

uint32_t fc_outq_drop_unlocked(fc_outq *q)
{
    return filter(q, NULL, NULL);
}

int fc_outq_iov(const fc_outq *q, uv_buf_t *iov, int max, size_t max_bytes, size_t *bytes)
{
    int n = 0;
    size_t total = 0;
    uint32_t off = q->head_off;
    pos p = {q->head, q->head_idx};
    for (uint32_t i = 0; i < q->count && n < max; i++, pos_next(&p)) {
        const fc_buf *b = p.chunk->bufs[p.idx];
        size_t len = b->len - off;
        if (n > 0 && total + len > max_bytes) break;
        iov[n++] = uv_buf_init((char *)b->data + off, (unsigned)len);
        total += len;
        off = 0;
    }
    *bytes = total;
    return n;
}

/* Removes the head entry (its reference is the caller's now). */
static fc_buf *pop_head(fc_outq *q)
{
    fc_buf *b = q->head->bufs[q->head_idx++];
    if (q->index && b->key) index_forget(q, b, q->popped);
    q->popped++;
    q->count--;
    if (q->locked) q->locked--;
    q->head_off = 0;
    if (q->index && q->count < q->index->floor) index_free(q);
    if (q->count == 0 || q->head_idx == FC_OUTQ_CHUNK) {
        fc_outq_chunk *c = q->head;
        q->head = c->next;
        q->head_idx = 0;
        chunk_put(c);
        if (!q->head) {
            q->tail = NULL;
            q->tail_idx = 0;
        }
    }
    return b;
}

void fc_outq_consume(fc_outq *q, size_t n, void (*on_done)(const fc_buf *buf))
{
    while (q->count && n > 0) {
        const fc_buf *head = q->head->bufs[q->head_idx];
        size_t left = head->len - q->head_off;
        if (n < left) {
            q->head_off += (uint32_t)n;
            q->bytes -= n;
            return;
        }
        n -= left;
        q->bytes -= left;
        fc_buf *b = pop_head(q);
        if (on_done && b->seq) on_done(b);
        release(b);
    }
}

void fc_outq_clear(fc_outq *q)
{
    q->locked = q->head_off = 0;
    filter(q, NULL, NULL);
}

fc_buf *fc_outq_first(const fc_outq *q)
{
    return q->count ? q->head->bufs[q->head_idx] : NULL;
}

fc_buf *fc_outq_last(const fc_outq *q)
{
    return q->count ? q->tail->bufs[q->tail_idx - 1] : NULL;
}
