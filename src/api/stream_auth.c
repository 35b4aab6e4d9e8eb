/* Streams and the life of their token: every stream opened with a JWT
 * that has exp ends at exp (the server's expiry wheel calls
 * fc_stream_on_expiry), each transport in its own way; the multi WebSocket
 * may instead replace its token in place with {"op":"auth","token":...}, or
 * authenticate with that first message when it was opened without one.
 * Tokens are never logged: neither the op nor its failures are. */
#include "api/access.h"
#include "api/api.h"
#include "api/stream.h"
#include "cli/config.h"
#include "metrics/metrics.h"
#include "ws/frame.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char sse_expired[] = "event: error\ndata: {\"code\":\"token_expired\"}\n\n";

void fc_stream_on_expiry(fc_conn *c)
{
    fc_stream_kind kind = fc_conn_kind(c);
    if (kind == FC_LONGPOLL) {
        FC_METRIC_ADD(auth_expired_longpoll, 1);
        fc_longpoll_expire(c);
        return;
    }
    if (kind == FC_WS_MULTI && fc_conn_unauthenticated(c)) {
        FC_METRIC_ADD(auth_timeouts, 1);
        fc_conn_ws_close(c, FC_WS_CLOSE_UNAUTHORIZED, "authentication required");
        return;
    }
    if (kind != FC_WS_UPDATES && kind != FC_WS_MULTI && !fc_stream_is_sse(kind)) return;
    /* Nothing more is delivered under the expired token, even what the
     * closing handshake or the last writes leave time for. */
    fc__stream_unsubscribe(c);
    if (fc_stream_is_sse(kind)) {
        FC_METRIC_ADD(auth_expired_sse, 1);
        fc_buf *b = fc_buf_copy(sse_expired, sizeof sse_expired - 1);
        if (b) fc_conn_send(c, b);
        fc_conn_close_when_written(c);
        return;
    }
    FC_METRIC_ADD(auth_expired_ws, 1);
    if (kind == FC_WS_MULTI)
        fc__stream_op_error(c, NULL, "token_expired",
                            "the token has expired: reconnect with a fresh one, or send "
                            "{\"op\":\"auth\"} before exp");
    fc_conn_ws_close(c, FC_WS_CLOSE_UNAUTHORIZED, "token expired");
}

/* Verifies an op's token into g: 0, or -1 (g empty). Without --jwt-key only
 * the static --api-token is a credential, and with neither any token is
 * good (nothing is checked): the op then just confirms. */
static int verify(fc_conn *c, const char *token, fc_auth_grant *g)
{
    fc_server *srv = fc_conn_server(c);
    const fc_auth *a = fc_server_auth(srv);
    const char *api_token = fc_server_config(srv)->api_token;
    int has_static = api_token && *api_token;
    fc_auth_grant_full(g);
    if (!token) return -1;
    if (has_static && fc_auth_secret_equal(token, api_token)) return 0;
    if (!a) return has_static ? -1 : 0;
    return fc_auth_verify(a, token, (int64_t)time(NULL), g) == 0 ? 0 : -1;
}

/* The new token may read less: each subscription outside it ends with its
 * own error (an all-subscription stays: delivery filters it by the grant). */
static void end_out_of_scope(fc_conn *c)
{
    const fc_auth_grant *g = fc__access_grant(c);
    if (!g) return;
    fc_list *subs = fc_conn_multi_subs(c);
    for (fc_list *it = subs->next; it != subs;) {
        fc_stream_sub *s = fc_container_of(it, fc_stream_sub, conn_link);
        it = it->next;
        if (s->sub.all || !s->sub.topic) continue;
        char id[FC_ID_MAX + 1];
        snprintf(id, sizeof id, "%s", fc_hub_topic_id(s->sub.topic));
        if (fc_auth_allows(g, FC_AUTH_READ, id)) continue;
        fc__stream_drop_sub(c, s);
        fc__stream_op_error(c, id, "forbidden", "the new token does not allow reading it");
    }
}

void fc__stream_op_auth(fc_conn *c, json_t *msg)
{
    fc_auth_grant g;
    if (verify(c, json_string_value(json_object_get(msg, "token")), &g) != 0) {
        FC_METRIC_ADD(auth_refresh_refused, 1);
        fc__stream_op_error(c, NULL, "unauthorized",
                            "invalid or expired token: the previous one stays in force");
        return;
    }
    if (!(g.scope & FC_AUTH_READ)) {
        FC_METRIC_ADD(auth_refresh_refused, 1);
        fc_auth_grant_clear(&g);
        fc__stream_op_error(c, NULL, "forbidden",
                            "the token does not allow reading: the previous one stays in force");
        return;
    }
    /* The stream now counts against the new token's subject (one opened
     * without a credential, for the first time). Over that subject's limit
     * the old token stays in force, as for a bad one; a stream without one
     * has nothing to go on with. */
    if (fc_conn_move_subject_slot(c, g.has_sub ? g.sub : NULL) != 0) {
        fc_auth_grant_clear(&g);
        fc__stream_op_error(c, NULL, "too_many_streams",
                            "too many streams open with this token's subject: the "
                            "--max-streams-per-client limit is reached");
        if (fc_conn_unauthenticated(c))
            fc_conn_ws_close(c, FC_WS_CLOSE_TRY_AGAIN, "too many streams");
        return;
    }
    FC_METRIC_ADD(auth_refresh_ok, 1);
    int64_t exp = g.exp;
    int limited = g.n_patterns >= 0;
    fc__access_release(c);
    fc__access_keep(c, &g);
    fc_auth_grant_clear(&g);
    if (limited && !fc__access_grant(c)) { /* out of memory: keep closed it */
        fc__stream_unsubscribe(c);
        return;
    }
    fc_conn_set_unauthenticated(c, 0);
    fc_conn_set_expiry(c, exp <= 0 ? 0 : exp < INT64_MAX / 1000 ? exp * 1000 : INT64_MAX);
    char reply[64];
    if (exp > 0)
        snprintf(reply, sizeof reply, "{\"op\":\"authenticated\",\"exp\":%lld}", (long long)exp);
    else
        snprintf(reply, sizeof reply, "{\"op\":\"authenticated\",\"exp\":null}");
    fc__stream_send_text(c, reply);
    end_out_of_scope(c);
}
