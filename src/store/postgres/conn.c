/* PostgreSQL store: connections with deadlines, and the up/down state.
 *
 * Every wait on the server is a poll() with a deadline, never a blocking
 * libpq call: libpq's connect_timeout has a 2 s floor, and a query on a
 * server that stopped answering (SIGSTOP, a black-holed network) blocks
 * until TCP gives up, minutes later. statement_timeout (server side) and
 * tcp_user_timeout (kernel side) are set too, so the server and the kernel
 * give up about when we do. */
#include "store/postgres/pg_internal.h"

#include "common/error.h"
#include "common/log.h"
#include "common/time.h"
#include "metrics/metrics.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

/* Waits until fd is ready for events or deadline_ms passes: 1, 0 (time is
 * up) or -1 (poll failed). */
static int wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - fc_time_now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)left);
        if (rc > 0) return 1;
        if (rc == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* libpq's messages span lines (and end with a newline): one line reads better in logs and JSON. */
static void copy_msg(char *err, size_t errlen, const char *prefix, const char *msg)
{
    snprintf(err, errlen, "%s%s", prefix, msg ? msg : "");
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\t') *p = ' ';
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == ' ')
        err[--n] = '\0';
}

PGconn *fc__pg_connect(const char *conninfo, int timeout_ms, char *err, size_t errlen)
{
    char tcp_timeout[24], options[96];
    snprintf(tcp_timeout, sizeof tcp_timeout, "%d", timeout_ms);
    snprintf(options, sizeof options, "-c statement_timeout=%d -c client_min_messages=warning",
             timeout_ms);
    /* The URL first: expand_dbname splices its parameters in at its place,
     * so the ones after it take precedence. */
    const char *const keys[] = {"dbname",
                                "keepalives",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                "tcp_user_timeout",
                                "options",
                                "application_name",
                                NULL};
    const char *const vals[] = {conninfo, "1",     "5",        "1", "3",
                                tcp_timeout, options, "flowcast", NULL};
    int64_t deadline = fc_time_now_ms() + timeout_ms;
    PGconn *c = PQconnectStartParams(keys, vals, 1);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int r = wait_fd(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (r <= 0) {
            snprintf(err, errlen, "no answer within %d ms", timeout_ms);
            PQfinish(c);
            return NULL;
        }
        st = PQconnectPoll(c);
    }
    if (PQstatus(c) != CONNECTION_OK) {
        copy_msg(err, errlen, "", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    /* Nonblocking: a send never waits for the socket; every wait is ours. */
    if (PQsetnonblocking(c, 1) != 0) {
        copy_msg(err, errlen, "", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

PGresult *fc__pg_result(PGconn *c, int64_t deadline_ms, int *failed, char *err, size_t errlen)
{
    *failed = 0;
    for (;;) {
        int f = PQflush(c);
        if (f < 0) break;
        if (f == 0 && !PQisBusy(c)) return PQgetResult(c);
        int r = wait_fd(PQsocket(c), POLLIN | (f == 1 ? POLLOUT : 0), deadline_ms);
        if (r == 0) {
            snprintf(err, errlen, "the server did not answer in time");
            *failed = 1;
            return NULL;
        }
        if (r < 0 || !PQconsumeInput(c)) break;
    }
    copy_msg(err, errlen, "", PQerrorMessage(c));
    *failed = 1;
    return NULL;
}

PGresult *fc__pg_exec(PGconn *c, const char *name, const char *sql, int n,
                      const char *const *params, int timeout_ms, int *broken, char *err,
                      size_t errlen)
{
    int64_t deadline = fc_time_now_ms() + timeout_ms;
    /* Without parameters, the simple protocol: it runs several statements. */
    int ok = name    ? PQsendQueryPrepared(c, name, n, params, NULL, NULL, 0)
             : n > 0 ? PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0)
                     : PQsendQuery(c, sql);
    *broken = 0;
    if (!ok) {
        copy_msg(err, errlen, "", PQerrorMessage(c));
        *broken = 1;
        return NULL;
    }
    PGresult *res = NULL, *r;
    int failed;
    /* Every result up to the NULL that ends the query, keeping the last. */
    while ((r = fc__pg_result(c, deadline, &failed, err, errlen))) {
        PQclear(res);
        res = r;
    }
    if (failed) {
        PQclear(res);
        *broken = 1;
        return NULL;
    }
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return res;
    copy_msg(err, errlen, "", res ? PQresultErrorMessage(res) : PQerrorMessage(c));
    /* Connection errors (class 08) and a server shutting down or starting
     * (57P01..57P03) mean the server is unavailable, not that the query is
     * wrong, even when libpq has not seen the socket close yet. */
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    *broken = PQstatus(c) != CONNECTION_OK ||
              (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0));
    PQclear(res);
    return NULL;
}

int fc__pg_prepare(PGconn *c, const char *name, const char *sql, int timeout_ms, char *err,
                   size_t errlen)
{
    int64_t deadline = fc_time_now_ms() + timeout_ms;
    if (!PQsendPrepare(c, name, sql, 0, NULL)) {
        copy_msg(err, errlen, "cannot prepare: ", PQerrorMessage(c));
        return FC_EIO;
    }
    PGresult *r;
    int failed, ok = 1;
    while ((r = fc__pg_result(c, deadline, &failed, err, errlen))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            copy_msg(err, errlen, "cannot prepare: ", PQresultErrorMessage(r));
            ok = 0;
        }
        PQclear(r);
    }
    return ok && !failed ? 0 : FC_EIO;
}

int fc__pg_retryable(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return state && (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0 ||
                     strcmp(state, "23505") == 0);
}

void fc__pg_link_close(fc__pg_link *l)
{
    if (l->conn) PQfinish(l->conn);
    l->conn = NULL;
}

void fc__pg_link_down(fc__pg_core *core, fc__pg_link *l, const char *why)
{
    int64_t now = fc_time_now_ms();
    if (l->conn) {
        /* A connection that worked: one immediate try (the server may have
         * restarted), then the back-off. */
        fc__pg_link_close(l);
        l->retry_at_ms = now;
        l->backoff_ms = FC__PG_BACKOFF_MIN_MS;
    } else {
        l->retry_at_ms = now + l->backoff_ms;
        l->backoff_ms *= 2;
        if (l->backoff_ms > FC__PG_BACKOFF_MAX_MS) l->backoff_ms = FC__PG_BACKOFF_MAX_MS;
    }
    snprintf(l->why, sizeof l->why, "%s", why);
    if (atomic_exchange(&core->up, 0) == 1) {
        fc_metrics_store_up(0);
        FC_WARN(FC__PG_TAG, "PostgreSQL is unreachable: %s", why);
    }
}

/* True when the server said something while the connection sat idle
 * between queries: in practice a shutdown's FATAL before it closes the
 * connection. A query sent into it would fail; a new connection costs
 * little, so any unexpected input counts as lost. */
static int idle_conn_lost(PGconn *c)
{
    struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

PGconn *fc__pg_link_get(fc__pg_core *core, fc__pg_link *l,
                        int (*prepare)(PGconn *c, void *arg, char *err, size_t errlen), void *arg)
{
    if (l->conn) {
        if (PQstatus(l->conn) == CONNECTION_OK && !idle_conn_lost(l->conn)) return l->conn;
        fc__pg_link_down(core, l, "connection closed by the server");
    }
    /* Waiting out the back-off, unless another connection of this store got
     * through since (core->up): the server answers again, try at once. */
    if (fc_time_now_ms() < l->retry_at_ms && !atomic_load(&core->up)) return NULL;
    char err[160] = "";
    int64_t lost_at = l->retry_at_ms;
    PGconn *c = fc__pg_connect(core->conninfo, core->timeout_ms, err, sizeof err);
    if (c && prepare(c, arg, err, sizeof err) != 0) {
        PQfinish(c);
        c = NULL;
    }
    if (!c) {
        fc__pg_link_down(core, l, err);
        return NULL;
    }
    l->conn = c;
    l->backoff_ms = FC__PG_BACKOFF_MIN_MS;
    if (lost_at != 0) fc_metrics_store_reconnect(); /* not the first connection */
    if (atomic_exchange(&core->up, 1) == 0) {
        fc_metrics_store_up(1);
        FC_INFO(FC__PG_TAG, "PostgreSQL is reachable again");
    }
    return c;
}
