/* The Idempotency-Key request header (draft-ietf-httpapi-idempotency-key-header)
 * of POST, PATCH and DELETE: its syntax, and the fingerprint of the request
 * it names, handed to the store with the change (src/api only). */
#ifndef FC_API_IDEMPOTENCY_H
#define FC_API_IDEMPOTENCY_H

#include "http/request.h"
#include "server/conn.h"
#include "store/store.h"

/* Copies the request's Idempotency-Key into ch->idem_key and the SHA-256 of
 * its method, path and body into ch->idem_fp. 0 when there is no key or it
 * was taken; -1 after answering 400 (malformed key) or 500. */
int fc__idem_take(fc_conn *c, const fc_http_req *req, const char *path, fc_change *ch);

#endif
