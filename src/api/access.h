/* Who may do what (src/api/access.c): the credential of a request, from the
 * static --api-token or a JWT (--jwt-key), and the checks the routes make. */
#ifndef FC_API_ACCESS_H
#define FC_API_ACCESS_H

#include "auth/auth.h"
#include "http/request.h"
#include "server/conn.h"

/* Fills g with what the request's credential (Authorization: Bearer, else the
 * access_token query parameter) grants: the static --api-token everything, a
 * JWT (--jwt-key) its claims. Without either flag, and for public paths, g
 * is the full grant. Answers 401 and returns 0 for a missing or invalid
 * credential. */
int fc__access_identify(fc_conn *c, const fc_http_req *req, int public, fc_auth_grant *g);

/* Answers 401 token_expired with WWW-Authenticate: Bearer error="invalid_token"
 * (REST with an expired token, a long-poll held past its token's exp). */
void fc__access_expired(fc_conn *c);

/* Whether req may open the multi WebSocket without a credential, to
 * authenticate with its first message: --jwt-key is set, req is an upgrade
 * and carries neither Authorization nor access_token. */
int fc__access_anonymous_upgrade(const fc_conn *c, const fc_http_req *req);
/* After such an upgrade: c refuses every op but auth, and closes 4401 when
 * none succeeds within --request-timeout. */
void fc__access_await(fc_conn *c);
/* After a request opened a stream with a token expiring at exp (seconds;
 * 0 = never): the stream ends then (fc_stream_on_expiry). */
void fc__access_arm(fc_conn *c, int64_t exp);

/* Whether g holds need on workflow id (id NULL: the scope alone); else
 * answers 403 and returns 0. */
int fc__access_need(fc_conn *c, const fc_auth_grant *g, unsigned need, const char *id);
/* For a stream naming its workflows in query parameter param (comma-
 * separated): g must hold need on each of them (or on every workflow). */
int fc__access_need_listed(fc_conn *c, const fc_http_req *req, const fc_auth_grant *g,
                           unsigned need, const char *param);

/* After a multi WebSocket opened with g limited to some workflows: moves g
 * into the connection (g is left empty), for its subscriptions to check. */
void fc__access_keep(fc_conn *c, fc_auth_grant *g);
/* The grant a multi WebSocket keeps; NULL = every workflow. */
const fc_auth_grant *fc__access_grant(const fc_conn *c);
/* The connection closes: frees its grant. */
void fc__access_release(fc_conn *c);

#endif
