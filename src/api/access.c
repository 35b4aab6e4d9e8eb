/* The credential of a request and the rights it grants. Answers stay terse:
 * 401 says only that a valid credential is needed (never why a token failed,
 * which would help forge one), 403 only that this one does not allow it. */
#include "api/access.h"

#include "cli/config.h"
#include "common/time.h"
#include "common/log.h"
#include "ws/frame.h"
#include "metrics/metrics.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define UNAUTHORIZED_HEADER "WWW-Authenticate: Bearer\r\n"

static void unauthorized(fc_conn *c, const char *why)
{
    FC_METRIC_ADD(auth_refused_401, 1);
    fc_conn_respond_error(c, 401, UNAUTHORIZED_HEADER, "unauthorized", "%s", why);
}

int fc__access_identify(fc_conn *c, const fc_http_req *req, int public, fc_auth_grant *g)
{
    fc_server *srv = fc_conn_server(c);
    const fc_auth *a = fc_server_auth(srv);
    const char *api_token = fc_server_config(srv)->api_token;
    int static_on = api_token && *api_token;
    fc_auth_grant_full(g);
    if ((!a && !static_on) || public) return 1;
    char token[FC_AUTH_TOKEN_MAX + 1];
    const char *hdr = fc_http_header(req, FC_H_AUTHORIZATION);
    if (hdr) {
        if (strncasecmp(hdr, "Bearer ", 7) != 0 || strlen(hdr + 7) > FC_AUTH_TOKEN_MAX) {
            unauthorized(c, "invalid credential");
            return 0;
        }
        strcpy(token, hdr + 7);
    } else if (fc_http_query(req, "access_token", token, sizeof token) != 1 || !token[0]) {
        unauthorized(c, "a credential is required (Authorization: Bearer or access_token)");
        return 0;
    }
    if (static_on && fc_auth_secret_equal(token, api_token)) return 1;
    int r = a ? fc_auth_verify(a, token, (int64_t)time(NULL), g) : -1;
    if (r == FC_AUTH_EXPIRED) {
        fc__access_expired(c);
        return 0;
    }
    if (r != 0) {
        unauthorized(c, a ? "invalid or expired credential" : "invalid API token");
        return 0;
    }
    return 1;
}

void fc__access_expired(fc_conn *c)
{
    FC_METRIC_ADD(auth_refused_401, 1);
    fc_conn_respond_error(c, 401, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n",
                          "token_expired", "the token has expired: get a fresh one");
}

int fc__access_anonymous_upgrade(const fc_conn *c, const fc_http_req *req)
{
    char probe[2];
    return fc_server_auth(fc_conn_server(c)) && fc_http_header(req, FC_H_UPGRADE) &&
           !fc_http_header(req, FC_H_AUTHORIZATION) &&
           fc_http_query(req, "access_token", probe, sizeof probe) == 0;
}

void fc__access_await(fc_conn *c)
{
    if (fc_conn_kind(c) != FC_WS_MULTI) return;
    fc_conn_set_unauthenticated(c, 1);
    double wait_s = fc_server_config(fc_conn_server(c))->request_timeout;
    fc_conn_set_expiry(c, fc_time_now_ms() + (int64_t)(wait_s * 1000.0));
}

void fc__access_arm(fc_conn *c, int64_t exp)
{
    fc_stream_kind k = fc_conn_kind(c);
    /* exp may be any number below 9.2e18 (a signed "never"): saturate, not overflow. */
    if (exp > 0 && k != FC_STREAM_NONE && k != FC_WS_ECHO)
        fc_conn_set_expiry(c, exp < INT64_MAX / 1000 ? exp * 1000 : INT64_MAX);
}

static void forbidden(fc_conn *c)
{
    FC_METRIC_ADD(auth_refused_403, 1);
    fc_conn_respond_error(c, 403, NULL, "forbidden", "the credential does not allow this");
}

int fc__access_need(fc_conn *c, const fc_auth_grant *g, unsigned need, const char *id)
{
    if (id ? fc_auth_allows(g, need, id) : (g->scope & need) == need) return 1;
    forbidden(c);
    return 0;
}

int fc__access_need_listed(fc_conn *c, const fc_http_req *req, const fc_auth_grant *g,
                           unsigned need, const char *param)
{
    if (fc_auth_allows(g, need, NULL)) return 1;
    /* Room for more ids than any stream takes: a longer list is refused whole. */
    char list[16384];
    int r = fc_http_query(req, param, list, sizeof list);
    int ok = r == 1 && list[0] && (g->scope & need) == need;
    for (char *save = NULL, *id = ok ? strtok_r(list, ",", &save) : NULL; id;
         id = strtok_r(NULL, ",", &save))
        ok = ok && fc_auth_allows(g, need, id);
    if (ok) return 1;
    forbidden(c);
    return 0;
}

void fc__access_keep(fc_conn *c, fc_auth_grant *g)
{
    if (fc_conn_kind(c) != FC_WS_MULTI || g->n_patterns < 0) return;
    fc_auth_grant *kept = malloc(sizeof *kept);
    if (!kept) {
        /* Without its grant the stream could not be limited: it must not run. */
        fc_conn_ws_close(c, FC_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    *kept = *g;
    memset(g, 0, sizeof *g);
    fc_conn_set_ext(c, kept);
}

const fc_auth_grant *fc__access_grant(const fc_conn *c)
{
    return fc_conn_kind(c) == FC_WS_MULTI ? fc_conn_ext(c) : NULL;
}

void fc__access_release(fc_conn *c)
{
    fc_auth_grant *kept = fc_conn_kind(c) == FC_WS_MULTI ? fc_conn_ext(c) : NULL;
    if (!kept) return;
    fc_auth_grant_clear(kept);
    free(kept);
    fc_conn_set_ext(c, NULL);
}
