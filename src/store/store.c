/* Backend-independent helpers of the store interface. */
#include "store/list_internal.h"
#include "store/store.h"

#include "common/error.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A cursor is the decimal pk of the last row returned: at most 19 digits + NUL. */
#define CURSOR_MIN_LEN 21
#define LIST_MAX 1000

void fc_change_clear(fc_change *c)
{
    fc_workflow_clear(&c->wf);
    fc_patch_clear(&c->patch);
}

int fc_store_is_postgres(const char *path)
{
    return path && (strncmp(path, "postgres://", 11) == 0 || strncmp(path, "postgresql://", 13) == 0);
}

int fc_store_path_check(const char *path, char *why, size_t len)
{
    const char *scheme_end = strstr(path, "://");
    if (!scheme_end || fc_store_is_postgres(path)) return 0;
    int n = (int)(scheme_end - path);
    int shown = n > 0 && n <= 32;
    for (int i = 0; shown && i < n; i++)
        shown = isalnum((unsigned char)path[i]) || strchr("+.-", path[i]);
    snprintf(why, len,
             "the scheme \"%.*s://\" is not one flowcast opens: a PostgreSQL URL starts "
             "postgres:// or postgresql:// (lower case), anything else is a SQLite file path",
             shown ? n : 1, shown ? path : "?");
    return -1;
}

fc_store *fc_store_open(uv_loop_t *loop, const fc_store_config *cfg, char *err, size_t errlen)
{
    if (cfg && fc_store_is_postgres(cfg->path)) return fc_store_pg_open(loop, cfg, err, errlen);
    return fc_store_sqlite_open(loop, cfg, err, errlen);
}

/* A cursor from an earlier page: a positive decimal pk, nothing else. */
static int parse_cursor(const char *cursor, int64_t *pk)
{
    size_t n = strlen(cursor);
    if (n == 0 || n > 19 || strspn(cursor, "0123456789") != n) return FC_EINVAL;
    errno = 0;
    long long v = strtoll(cursor, NULL, 10);
    if (errno != 0 || v < 1) return FC_EINVAL;
    *pk = v;
    return 0;
}

int fc__store_list_args(const fc_list_query *q, char *next_cursor, size_t cursor_len,
                        int64_t *before)
{
    *before = INT64_MAX;
    if (next_cursor && cursor_len > 0) next_cursor[0] = '\0';
    if (!q || q->limit < 1 || q->limit > LIST_MAX) return FC_EINVAL;
    if (next_cursor && cursor_len < CURSOR_MIN_LEN) return FC_EINVAL;
    if (q->cursor && parse_cursor(q->cursor, before) != 0) return FC_EINVAL;
    return 0;
}
