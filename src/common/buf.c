/* Reference-counted shared byte buffers. */
#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

fc_buf *fc_buf_new(size_t len)
{
    if (len > UINT32_MAX) return NULL;
    fc_buf *b = malloc(sizeof *b + len);
    if (!b) return NULL;
    b->refs = 1;
    b->len = (uint32_t)len;
    b->commit_ns = 0;
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
    if (b && --b->refs == 0) free(b);
}
