/* Readiness (/readyz): a short list of checks, each naming what it looks at.
 * /healthz says the process answers; /readyz says it can do its job, so a
 * balancer or an orchestrator can hold traffic back from it. Each check is
 * one row in the table. */
#include "api/ready.h"

#include "store/store.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct ready_check {
    const char *name;
    /* 0 when ready, else -1 with a reason in why. Runs on the connection's loop. */
    int (*run)(fc_server *srv, char *why, size_t whylen);
} ready_check;

static int check_listener(fc_server *srv, char *why, size_t whylen)
{
    if (fc_server_accepting(srv)) return 0;
    snprintf(why, whylen, "shutting down: no longer accepting connections");
    return -1;
}

static int check_store(fc_server *srv, char *why, size_t whylen)
{
    return fc_store_health(fc_server_store(srv), why, whylen);
}

/* End to end: this node's own probe message came back through the bus. */
static int check_bus(fc_server *srv, char *why, size_t whylen)
{
    return fc_server_bus_health(srv, why, whylen);
}

static const ready_check checks[] = {
    {.name = "listener", .run = check_listener},
    {.name = "store", .run = check_store},
    {.name = "bus", .run = check_bus},
};

void fc__api_readyz(fc_conn *c)
{
    fc_server *srv = fc_conn_server(c);
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        char why[256] = "";
        if (checks[i].run(srv, why, sizeof why) == 0) continue;
        json_t *o = json_pack("{s:s, s:s, s:s}", "status", "not_ready", "check", checks[i].name,
                              "reason", why);
        char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (body)
            fc_conn_respond(c, 503, "Retry-After: 1\r\n", "application/json", body, strlen(body));
        else
            fc_conn_respond_error(c, 503, NULL, "not_ready", "not ready");
        free(body);
        return;
    }
    fc_conn_respond(c, 200, NULL, "application/json", "{\"status\":\"ready\"}", 18);
}
