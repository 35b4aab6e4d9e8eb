/* Backend-independent helpers of the store interface. */
#include "store/store.h"

void fc_change_clear(fc_change *c)
{
    fc_workflow_clear(&c->wf);
    fc_patch_clear(&c->patch);
}

#include <string.h>

int fc_store_is_postgres(const char *path)
{
    return path && (strncmp(path, "postgres://", 11) == 0 || strncmp(path, "postgresql://", 13) == 0);
}

fc_store *fc_store_open(uv_loop_t *loop, const fc_store_config *cfg, char *err, size_t errlen)
{
    if (cfg && fc_store_is_postgres(cfg->path)) return fc_store_pg_open(loop, cfg, err, errlen);
    return fc_store_sqlite_open(loop, cfg, err, errlen);
}
