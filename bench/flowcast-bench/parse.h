/* Allocation-free parsers used on flowcast-bench's hot path: the fields the
 * tool needs from a delivered message (seq, send time, publisher slot,
 * resync) and HTTP/1.1 responses (status, body) on keep-alive connections.
 * No JSON library: the fields are found by key and read as digits. */
#ifndef FCB_PARSE_H
#define FCB_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* What the tool reads from one delivered message. Payloads look like
 * flowcast's update object:
 *   {"workflow_id":"w","status":"running",...,"message":"<send ns>",...,"seq":N}
 * The peers (ws, nchan) are sent the same shape plus "p":K, the index of the
 * publishing connection, because their sequence is the tool's own. */
typedef struct fcb_msg {
    uint64_t seq;
    uint64_t sent_ns; /* CLOCK_MONOTONIC at publish, from "message" */
    uint32_t pub;     /* "p", 0 when absent */
    uint8_t has_seq;
    uint8_t has_sent;
} fcb_msg;

/* Fills m from a text payload. Returns 0 when a seq was found, -1 if not
 * (m is still filled with what was found). */
int fcb_msg_parse(const char *buf, size_t len, fcb_msg *m);
/* 1 when the payload carries "resync":true (flowcast's current state sent
 * instead of a resume); looked for only when seq jumps, as it is rare. */
int fcb_msg_resync(const char *buf, size_t len);

/* Finds "key": in buf and reads the unsigned integer after it, also when it
 * is a JSON string of digits ("key":"123"). key is given without quotes.
 * Returns 0 and sets *out, or -1 when absent or not a number. */
int fcb_json_u64(const char *buf, size_t len, const char *key, uint64_t *out);

/* One parsed HTTP response. */
typedef struct fcb_http_resp {
    int status;
    size_t head_len; /* status line and headers, including the blank line */
    size_t body_off; /* where the body (de-chunked: the first chunk) starts */
    size_t body_len; /* Content-Length, or the first chunk's size */
    size_t total;    /* bytes this response occupies in the stream */
} fcb_http_resp;

/* Parses the response at the start of buf (a response to a request that is
 * not HEAD). Returns 1 when a whole response is in buf (r filled), 0 when
 * more bytes are needed, -1 when it is malformed. Bodies are framed by
 * Content-Length or chunked encoding; 1xx, 204 and 304 have none. With
 * head_only the body is not waited for (for the 101 of an upgrade). */
int fcb_http_resp_parse(const char *buf, size_t len, int head_only, fcb_http_resp *r);

#endif
