/* The bus message: one committed change as JSON, the workflow in its REST
 * shape so a message is readable with `nats sub` and any JSON tool. */
#include "bus/bus.h"
#include "common/time.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" back to Unix ms; -1 when malformed. */
static int64_t parse_rfc3339(const char *s)
{
    struct tm tm = {0};
    int ms = 0, n = 0;
    if (!s ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &n) != 7 ||
        s[n] != '\0')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t * 1000 + ms;
}

static json_t *workflow_object(const fc_workflow *w)
{
    char created[FC_TIME_RFC3339_LEN + 1], updated[FC_TIME_RFC3339_LEN + 1];
    fc_time_format_rfc3339(w->created_at_ms, created);
    fc_time_format_rfc3339(w->updated_at_ms, updated);
    return json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:s, s:I, s:s, s:s}", "id", w->id, "epoch",
                     (json_int_t)w->epoch, "name", w->name ? w->name : "", "status",
                     fc_status_name(w->status), "current_step", (json_int_t)w->current_step,
                     "total_steps", (json_int_t)w->total_steps, "message",
                     w->message ? w->message : "", "seq", (json_int_t)w->seq, "created_at", created,
                     "updated_at", updated);
}

char *fc_bus_encode(const char *node, uint64_t sent_ns, const fc_workflow *state, int deleted,
                    int64_t deleted_at_ms, size_t *len)
{
    json_t *wo = workflow_object(state);
    char *wjson = wo ? json_dumps(wo, JSON_COMPACT) : NULL;
    json_decref(wo);
    if (!wjson) return NULL;
    char at[24] = "null";
    if (deleted) snprintf(at, sizeof at, "%" PRId64, deleted_at_ms);
    /* The node comes first, so a node can skip its own messages unparsed. */
    size_t cap = strlen(node) + strlen(wjson) + 128;
    char *out = malloc(cap);
    if (out) {
        int n = snprintf(out, cap,
                         "{\"v\":1,\"node\":\"%s\",\"sent_ns\":%" PRIu64
                         ",\"deleted\":%s,\"deleted_at\":%s,\"workflow\":%s}",
                         node, sent_ns, deleted ? "true" : "false", at, wjson);
        *len = (size_t)n;
    }
    free(wjson);
    return out;
}

int fc_bus_from(const char *data, size_t len, const char *node)
{
    static const char pre[] = "{\"v\":1,\"node\":\"";
    size_t pl = sizeof pre - 1, nl = strlen(node);
    return len > pl + nl && memcmp(data, pre, pl) == 0 && memcmp(data + pl, node, nl) == 0 &&
           data[pl + nl] == '"';
}

/* Fills w from the REST object; -1 when a field is missing or wrong. */
static int read_workflow(json_t *o, fc_workflow *w)
{
    const char *id = NULL, *name = NULL, *status = NULL, *msg = NULL, *created = NULL,
               *updated = NULL;
    json_int_t epoch, cur, total, seq;
    if (json_unpack(o, "{s:s, s:I, s:s, s:s, s:I, s:I, s:s, s:I, s:s, s:s}", "id", &id, "epoch",
                    &epoch, "name", &name, "status", &status, "current_step", &cur, "total_steps",
                    &total, "message", &msg, "seq", &seq, "created_at", &created, "updated_at",
                    &updated) != 0)
        return -1;
    if (!fc_id_valid(id) || epoch < 1 || epoch > FC_EPOCH_MAX || seq < 1 ||
        fc_status_parse(status, &w->status) != 0)
        return -1;
    w->created_at_ms = parse_rfc3339(created);
    w->updated_at_ms = parse_rfc3339(updated);
    if (w->created_at_ms < 0 || w->updated_at_ms < 0) return -1;
    snprintf(w->id, sizeof w->id, "%s", id);
    w->epoch = epoch;
    w->seq = seq;
    w->current_step = cur;
    w->total_steps = total;
    w->name = strdup(name);
    w->message = strdup(msg);
    if (w->name && w->message) return 0;
    fc_workflow_clear(w);
    return -1;
}

int fc_bus_node_valid(const char *node)
{
    size_t n = strlen(node);
    return n >= 1 && n <= FC_BUS_NODE_MAX &&
           strspn(node, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n;
}

int fc_bus_decode(const char *data, size_t len, fc_bus_change *out)
{
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
    const char *node = NULL;
    json_int_t v = 0, sent = 0;
    int deleted = 0;
    json_t *at = NULL, *wo = NULL;
    fc_bus_change c;
    memset(&c, 0, sizeof c);
    int rc = -1;
    if (root &&
        json_unpack(root, "{s:I, s:s, s:I, s:b, s:o, s:o}", "v", &v, "node", &node, "sent_ns",
                    &sent, "deleted", &deleted, "deleted_at", &at, "workflow", &wo) == 0 &&
        v == 1 && fc_bus_node_valid(node) && sent >= 0 &&
        (json_is_null(at) || json_is_integer(at)) && read_workflow(wo, &c.state) == 0) {
        snprintf(c.node, sizeof c.node, "%s", node);
        c.sent_ns = (uint64_t)sent;
        c.deleted = deleted;
        c.deleted_at_ms = json_is_integer(at) ? json_integer_value(at) : 0;
        *out = c;
        rc = 0;
    }
    json_decref(root);
    return rc;
}
