/* Private to the store backends (sqlite/, postgres/): the checks of a list
 * query (fc_store_ops.list) both make before they read. */
#ifndef FC_STORE_LIST_INTERNAL_H
#define FC_STORE_LIST_INTERNAL_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

/* Clears next_cursor, checks q (limit 1..1000) and the room for a next
 * cursor (the decimal pk of a page's last row: at least 21 bytes), and reads
 * the cursor of an earlier page into *before (INT64_MAX for the first page:
 * rows are listed by pk, below it). 0 or FC_EINVAL. */
int fc__store_list_args(const fc_list_query *q, char *next_cursor, size_t cursor_len,
                        int64_t *before);

#endif
