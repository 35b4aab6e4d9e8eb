/* SQLite store: the writer's cache of current workflow states.
 *
 * The writer is the only thread that changes the database, so the state it
 * wrote last is the stored state: an update reads it from here instead of
 * running a SELECT (an index seek by id and a row decode per change). The
 * cache holds the most recently written workflows, up to a byte budget:
 * a name can take 256 bytes and a message 4 KiB, so a count alone would not
 * bound the memory. */
#include "store/sqlite/sqlite_internal.h"

#include "common/error.h"

#include <stdlib.h>
#include <string.h>

struct fc__wc_entry {
    fc_map_node node; /* key: wf.id */
    fc_list lru;      /* most recently used at the tail */
    int64_t pk;
    size_t cost;    /* bytes counted against the budget */
    fc_workflow wf; /* owns its strings */
};

int fc__wcache_init(fc__wcache *wc, size_t budget)
{
    fc_list_init(&wc->lru);
    wc->bytes = 0;
    wc->budget = budget;
    return fc_map_init(&wc->map);
}

static void entry_free(fc__wcache *wc, fc__wc_entry *e)
{
    fc_map_remove(&wc->map, &e->node);
    fc_list_remove(&e->lru);
    wc->bytes -= e->cost;
    fc_workflow_clear(&e->wf);
    free(e);
}

void fc__wcache_clear(fc__wcache *wc)
{
    while (!fc_list_empty(&wc->lru))
        entry_free(wc, fc_container_of(wc->lru.next, fc__wc_entry, lru));
}

void fc__wcache_destroy(fc__wcache *wc)
{
    fc__wcache_clear(wc);
    fc_map_destroy(&wc->map);
}

static fc__wc_entry *find(fc__wcache *wc, const char *id)
{
    fc_map_node *n = fc_map_get(&wc->map, id);
    return n ? fc_container_of(n, fc__wc_entry, node) : NULL;
}

int fc__wcache_get(fc__wcache *wc, const char *id, int64_t *pk, fc_workflow *out)
{
    fc__wc_entry *e = find(wc, id);
    if (!e) return FC_ENOTFOUND;
    fc_workflow copy;
    if (fc_workflow_copy(&copy, &e->wf) != 0) return FC_ENOMEM;
    fc_list_remove(&e->lru);
    fc_list_insert_tail(&wc->lru, &e->lru);
    fc_workflow_clear(out);
    *out = copy;
    *pk = e->pk;
    return 0;
}

/* Replaces e's state with w's, reusing e's strings when they did not change
 * (the name never does; the message often does not). */
static int entry_set(fc__wc_entry *e, const fc_workflow *w)
{
    char *name = e->wf.name, *msg = e->wf.message;
    if (!name || strcmp(name, w->name) != 0) name = strdup(w->name);
    if (!msg || strcmp(msg, w->message) != 0) msg = strdup(w->message);
    if (!name || !msg) {
        if (name != e->wf.name) free(name);
        if (msg != e->wf.message) free(msg);
        return FC_ENOMEM;
    }
    if (name != e->wf.name) free(e->wf.name);
    if (msg != e->wf.message) free(e->wf.message);
    e->wf = *w;
    e->wf.name = name;
    e->wf.message = msg;
    e->node.key = e->wf.id;
    return 0;
}

int fc__wcache_put(fc__wcache *wc, int64_t pk, const fc_workflow *w)
{
    size_t cost = sizeof(fc__wc_entry) + strlen(w->name) + strlen(w->message) + 2;
    if (cost > wc->budget) {
        fc__wcache_drop(wc, w->id); /* an older state must not stay */
        return 0;
    }
    fc__wc_entry *e = find(wc, w->id);
    if (!e) {
        if (!(e = calloc(1, sizeof *e))) return FC_ENOMEM;
        fc_list_init(&e->lru);
        memcpy(e->wf.id, w->id, sizeof e->wf.id);
        e->node.key = e->wf.id;
        if (fc_map_put(&wc->map, &e->node) != 0) {
            free(e);
            return FC_ENOMEM;
        }
    } else {
        fc_list_remove(&e->lru);
    }
    fc_list_insert_tail(&wc->lru, &e->lru);
    e->pk = pk;
    if (entry_set(e, w) != 0) {
        /* Better no entry than a stale one. */
        entry_free(wc, e);
        return FC_ENOMEM;
    }
    wc->bytes += cost - e->cost;
    e->cost = cost;
    /* e is the most recently used: the least recently used go first. */
    while (wc->bytes > wc->budget)
        entry_free(wc, fc_container_of(wc->lru.next, fc__wc_entry, lru));
    return 0;
}

void fc__wcache_drop(fc__wcache *wc, const char *id)
{
    fc__wc_entry *e = find(wc, id);
    if (e) entry_free(wc, e);
}
