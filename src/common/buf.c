/* Reference-counted shared byte buffers. */
#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

static fc_buf *alloc_buf(size_t len, size_t extra)
{
    if (len > UINT32_MAX) return NULL;
    fc_buf *b = malloc(sizeof *b + len + extra);
    if (!b) return NULL;
    b->refs = 1;
    b->len = (uint32_t)len;
    b->commit_ns = 0;
    b->seq = 0;
    b->epoch = 0;
    b->key = NULL;
    b->alt = NULL;
    return b;
}

fc_buf *fc_buf_new(size_t len)
{
    return alloc_buf(len, 0);
}

fc_buf *fc_buf_new_keyed(size_t len, const char *key)
{
    size_t klen = strlen(key) + 1;
    fc_buf *b = alloc_buf(len, klen);
    if (b) {
        memcpy(b->data + len, key, klen);
        b->key = (const char *)b->data + len;
    }
    return b;
}

fc_buf *fc_buf_copy(const void *data, size_t len)
{
    fc_buf *b = fc_buf_new(len);
    if (b && len) memcpy(b->data, data, len);
    return b;
}

void fc_buf_unref(fc_buf *b)
{
    if (b && --b->refs == 0) {
        fc_buf_unref(b->alt);
        free(b);
    }
}
