/* GET/HEAD /readyz: whether this server should get traffic now. */
#ifndef FC_API_READY_H
#define FC_API_READY_H

#include "server/conn.h"

/* Answers 200 {"status":"ready"} when every readiness check passes, else 503
 * {"status":"not_ready","check":NAME,"reason":TEXT} naming the first that
 * failed. Needs no credential, like /healthz. */
void fc__api_readyz(fc_conn *c);

#endif
