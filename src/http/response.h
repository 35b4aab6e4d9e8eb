/* HTTP/1.1 response encoding into one buffer (status line, headers, body). */
#ifndef FC_HTTP_RESPONSE_H
#define FC_HTTP_RESPONSE_H

#include "common/buf.h"

#include <stddef.h>

/* Reason phrase for a status code ("OK", "Not Found", ...). */
const char *fc_http_reason(int status);

/* Builds a response. extra_headers is NULL or preformatted "Name: value\r\n"
 * lines; content_type NULL means no body headers (e.g. 101, 204). Adds
 * Content-Length and "Connection: close" when !keep_alive. NULL on OOM. */
fc_buf *fc_http_response(int status, const char *extra_headers, const char *content_type,
                         const char *body, size_t body_len, int keep_alive);

#endif
