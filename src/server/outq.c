/* Per-connection output queues with pooled entries and same-workflow coalescing. */
#include "server/outq.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

static fc_outq_entry *pool;

static fc_outq_entry *entry_get(void)
{
    fc_outq_entry *e = pool;
    if (e) {
        pool = e->next;
        return e;
    }
    return malloc(sizeof *e);
}

static void entry_put(fc_outq_entry *e)
{
    e->next = pool;
    pool = e;
}

void fc_outq_pool_trim(void)
{
    while (pool) {
        fc_outq_entry *e = pool;
        pool = e->next;
        free(e);
    }
}

int fc_outq_push(fc_outq *q, fc_buf *buf)
{
    fc_outq_entry *e = entry_get();
    if (!e) {
        fc_buf_unref(buf);
        return FC_ENOMEM;
    }
    e->buf = buf;
    e->next = NULL;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->count++;
    return 0;
}

/* Drops unlocked, unstarted entries whose key equals key; returns how many. */
static int drop_same_key(fc_outq *q, const char *key)
{
    int dropped = 0;
    uint32_t keep = q->locked ? q->locked : (q->head_off ? 1u : 0u);
    fc_outq_entry **link = &q->head, *prev = NULL;
    for (uint32_t i = 0; *link && i < keep; i++) {
        prev = *link;
        link = &(*link)->next;
    }
    while (*link) {
        fc_outq_entry *e = *link;
        if (e->buf->key && strcmp(e->buf->key, key) == 0) {
            *link = e->next;
            fc_buf_unref(e->buf);
            entry_put(e);
            q->count--;
            dropped++;
        } else {
            prev = e;
            link = &e->next;
        }
    }
    q->tail = prev;
    if (!q->head) q->tail = NULL;
    return dropped;
}

int fc_outq_push_coalesce(fc_outq *q, fc_buf *buf, uint32_t limit)
{
    int dropped = 0;
    if (q->count >= limit && buf->key) dropped = drop_same_key(q, buf->key);
    int rc = fc_outq_push(q, buf);
    return rc < 0 ? rc : dropped;
}

int fc_outq_iov(const fc_outq *q, uv_buf_t *iov, int max, size_t max_bytes, size_t *bytes)
{
    int n = 0;
    size_t total = 0;
    uint32_t off = q->head_off;
    for (fc_outq_entry *e = q->head; e && n < max; e = e->next) {
        size_t len = e->buf->len - off;
        if (n > 0 && total + len > max_bytes) break;
        iov[n++] = uv_buf_init((char *)e->buf->data + off, (unsigned)len);
        total += len;
        off = 0;
    }
    *bytes = total;
    return n;
}

void fc_outq_consume(fc_outq *q, size_t n, void (*on_done)(const fc_buf *buf))
{
    while (q->head && n > 0) {
        fc_outq_entry *e = q->head;
        size_t left = e->buf->len - q->head_off;
        if (n < left) {
            q->head_off += (uint32_t)n;
            return;
        }
        n -= left;
        q->head_off = 0;
        q->head = e->next;
        if (!q->head) q->tail = NULL;
        q->count--;
        if (q->locked) q->locked--;
        if (on_done && e->buf->seq) on_done(e->buf);
        fc_buf_unref(e->buf);
        entry_put(e);
    }
}

uint32_t fc_outq_drop_unlocked(fc_outq *q)
{
    uint32_t keep = q->locked ? q->locked : (q->head_off ? 1u : 0u);
    fc_outq_entry **link = &q->head, *last = NULL;
    for (uint32_t i = 0; *link && i < keep; i++) {
        last = *link;
        link = &(*link)->next;
    }
    uint32_t dropped = 0;
    while (*link) {
        fc_outq_entry *e = *link;
        *link = e->next;
        fc_buf_unref(e->buf);
        entry_put(e);
        dropped++;
    }
    q->tail = last;
    q->count -= dropped;
    return dropped;
}

void fc_outq_clear(fc_outq *q)
{
    while (q->head) {
        fc_outq_entry *e = q->head;
        q->head = e->next;
        fc_buf_unref(e->buf);
        entry_put(e);
    }
    q->tail = NULL;
    q->count = q->locked = q->head_off = 0;
}

size_t fc_outq_bytes(const fc_outq *q)
{
    size_t total = 0;
    for (fc_outq_entry *e = q->head; e; e = e->next) total += e->buf->len;
    return total - q->head_off;
}
