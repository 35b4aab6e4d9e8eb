#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz drivers: tests/fuzz/corpus/<driver>/<seed>.

libhttp-parser and jansson are not built with coverage instrumentation, so
the fuzzer gets no feedback inside them and, from nothing, never gets past a
request line or a JSON brace; these seeds start it from valid input of every
kind (every route, upgrades, bodies, frames, ops, cursors, server answers).
The files are committed; rerun this after changing it:
    python3 tests/fuzz/make_corpus.py
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def req(method, path, headers=None, body=b""):
    h = {"Host": "127.0.0.1:8001"}
    h.update(headers or {})
    if body and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body))
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in h.items())
    return (head + "\r\n").encode() + body


def upgrade(path, extra=None):
    h = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": KEY}
    h.update(extra or {})
    return req("GET", path, h)


def jbody(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def frame(op, payload=b"", fin=True, mask=b"\0\0\0\0", rsv=0):
    """A client frame (masked; key 0 keeps the payload readable unless given)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask is None:
        return hdr + payload
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def sframe(op, payload=b"", fin=True):
    """A server frame (unmasked)."""
    return frame(op, payload, fin, mask=None)


def close(code, reason=b""):
    return struct.pack("!H", code) + reason


TEXT, BIN, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 0xA

CREATE = jbody({"id": "fz", "name": "fuzz build", "total_steps": 10, "status": "running",
                "current_step": 2, "message": "compiling"})
PATCH = jbody({"status": "running", "current_step": 3, "message": "linking", "if_seq": 1})

REQUESTS = {
    "get_healthz": req("GET", "/healthz"),
    "get_metrics": req("GET", "/metrics"),
    "get_dashboard": req("GET", "/"),
    "get_flowcast_js": req("GET", "/flowcast.js", {"Accept-Encoding": "gzip"}),
    "list": req("GET", "/api/workflows?status=running&limit=10&cursor=MTIzNDU2Nzg5MA"),
    "get_one": req("GET", "/api/workflows/w1"),
    "longpoll": req("GET", "/api/workflows/w1?wait_since=0&timeout=1"),
    "history": req("GET", "/api/workflows/w1/history?since=1&limit=5"),
    "create": req("POST", "/api/workflows", {"Content-Type": "application/json",
                                             "Authorization": "Bearer tok"}, CREATE),
    "create_chunked": req("POST", "/api/workflows",
                          {"Content-Type": "application/json; charset=utf-8",
                           "Transfer-Encoding": "chunked"},
                          b"%x\r\n%s\r\n0\r\n\r\n" % (len(CREATE), CREATE)),
    "create_expect": req("POST", "/api/workflows", {"Content-Type": "application/json",
                                                    "Expect": "100-continue"}, CREATE),
    "patch": req("PATCH", "/api/workflows/fz", {"Content-Type": "application/json",
                                                "Idempotency-Key": "k-123"}, PATCH),
    "delete": req("DELETE", "/api/workflows/fz"),
    "head": req("HEAD", "/api/workflows/w1"),
    "options": req("OPTIONS", "/api/workflows"),
    "sse_one": req("GET", "/api/workflows/w1/events", {"Last-Event-ID": "1",
                                                       "Accept": "text/event-stream"}),
    "sse_multi": req("GET", "/api/events?workflow_ids=w1,w2&since=w1:1,w2:0"),
    "sse_multi_last_id": req("GET", "/api/events?workflow_ids=w1,w-3",
                             {"Last-Event-ID": "w1:2,w-3:1"}),
    "upgrade_single": upgrade("/api/workflows/w1/updates?since=1",
                              {"Origin": "http://127.0.0.1:8001"}),
    "upgrade_multi": upgrade("/api/updates"),
    "upgrade_echo": upgrade("/ws/echo", {"Origin": "http://evil.example",
                                         "Sec-WebSocket-Protocol": "chat"}),
    "http10_keepalive": b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "host_forms": req("GET", "/healthz", {"Host": "[::1]:8001"}) +
    req("GET", "/healthz", {"Host": "flowcast.internal"}) + b"GET / HTTP/1.1\r\n\r\n",
    "pipelined": req("GET", "/healthz") + req("GET", "/api/workflows?limit=1") +
    req("GET", "/api/workflows/w2", {"Connection": "close"}),
}

JSON_BODIES = {
    "create_min": jbody({"name": "n", "total_steps": 0}),
    "create_full": CREATE,
    "create_unicode": '{"name":"caf\\u00e9 \u2603 \\ud83d\\ude00","total_steps":1000000000,'
                      '"message":"\\"quoted\\"\\n","status":"paused"}'.encode(),
    "patch_each": PATCH,
    "patch_status": jbody({"status": "completed"}),
    "patch_steps": jbody({"current_step": 0, "total_steps": 5}),
    "patch_message": jbody({"message": "x" * 100}),
    "bad_type": b'{"name":5,"total_steps":"5"}',
    "bad_float": b'{"name":"n","total_steps":5.0}',
    "unknown_field": b'{"name":"n","total_steps":1,"extra":[1,{"a":null}]}',
    "nested_deep": b'{"name":' + b"[" * 40 + b"]" * 40 + b"}",
    "not_object": b"[1,2,3]",
}

WS_FRAMES = {
    "text": frame(TEXT, "hello", mask=b"\x37\xfa\x21\x3d"),
    "binary_126": frame(BIN, bytes(range(200)), mask=b"\x01\x02\x03\x04"),
    "len64_partial": frame(TEXT, b"a" * 70000)[:200],
    "ping_pong": frame(PING, "p") + frame(PONG, ""),
    "close_reason": frame(CLOSE, close(1000, "bye \u00e9".encode())),
    "fragmented": frame(TEXT, "frag", fin=False) + frame(PING, "mid") + frame(CONT, "ment"),
    "utf8_split": frame(TEXT, b"\xe2\x82", fin=False) + frame(CONT, b"\xac"),
}

SESSION = {
    "echo_text": frame(TEXT, "hello") + frame(CLOSE, close(1000)),
    "echo_fragments": frame(TEXT, "\u03ba\u1f79".encode()[:3], fin=False) + frame(PING, "p") +
    frame(CONT, "\u03ba\u1f79".encode()[3:], fin=False) + frame(CONT, b"", fin=True),
    "binary_then_close": frame(BIN, b"\0\1\2") + frame(CLOSE, close(4000, b"app")),
    "invalid_utf8": frame(TEXT, b"ok \xf4\x90\x80\x80 rest"),
    "invalid_close_reason": frame(CLOSE, close(1000, b"\xff")),
    "pong_then_text_126": frame(PONG, "x") + frame(TEXT, "y" * 130, mask=b"\x11\x22\x33\x44"),
    "subscribe": frame(TEXT, jbody({"op": "subscribe", "workflow_ids": ["w1"]})),
}
# byte 0: stream kind (bit 0: multi) and --max-message (bits 1-3); byte 1: cut seed.
SESSION = {k: bytes([(i % 2) | (4 << 1), 7 * i + 1]) + v for i, (k, v) in enumerate(SESSION.items())}

CONN = {
    "get_and_list": req("GET", "/api/workflows/w1") + req("GET", "/api/workflows?limit=2"),
    "write_cycle": req("POST", "/api/workflows", {"Content-Type": "application/json"}, CREATE) +
    req("PATCH", "/api/workflows/fz", {"Content-Type": "application/json"},
        jbody({"current_step": 3, "message": "m"})) +
    req("GET", "/api/workflows/fz/history?since=0") + req("DELETE", "/api/workflows/fz"),
    "longpoll_ready": req("GET", "/api/workflows/w2?wait_since=0&timeout=1"),
    "ws_single": upgrade("/api/workflows/w1/updates?since=1") + frame(PING, "hi") +
    frame(TEXT, "ignored") + frame(CLOSE, close(1000)),
    "ws_multi": upgrade("/api/updates") +
    frame(TEXT, jbody({"op": "subscribe", "workflow_ids": ["w1", "w2"], "since": {"w1": 1}})) +
    frame(TEXT, jbody({"op": "unsubscribe", "workflow_ids": ["w2"]})) +
    frame(TEXT, jbody({"op": "subscribe_all"})) + frame(CLOSE, close(1001)),
    "ws_echo": upgrade("/ws/echo") + frame(TEXT, "a" * 300, fin=False) +
    frame(CONT, "b" * 300) + frame(BIN, b"\xff" * 10),
    "sse_multi": req("GET", "/api/events?workflow_ids=w1,w-3&since=w1:1,w-3:0"),
    "sse_one": req("GET", "/api/workflows/w2/events?since=1"),
    "metrics_health": req("GET", "/metrics") + req("GET", "/healthz") + req("GET", "/flowcast.js"),
    "bad_then_more": b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: zz\r\n\r\n" +
    req("GET", "/"),
    "hosts": req("GET", "/healthz", {"Host": "fuzz.example:8001"}) +
    req("GET", "/healthz", {"Host": "evil.example"}),
    "expect_head": req("HEAD", "/api/workflows/w1") + req("HEAD", "/api/events?workflow_ids=w1") +
    req("PATCH", "/api/workflows/w2", {"Content-Type": "application/json", "Expect": "100-continue"},
        jbody({"message": "m"})),
}
# byte 0: bit 7 on: the stream is cut into reads.
CONN = {k: bytes([0x80 | (i * 37 % 128) if i % 2 else 0]) + v for i, (k, v) in enumerate(CONN.items())}

OPS = {
    "subscribe_since": jbody({"op": "subscribe", "workflow_ids": ["w1", "w2"],
                              "since": {"w1": 1, "w2": 0}}),
    "subscribe_twice": jbody({"op": "subscribe", "workflow_ids": ["w1", "w1", "w-3"]}) + b"\0" +
    jbody({"op": "subscribe", "workflow_ids": ["w1"], "since": {"w1": 99}}),
    "unsubscribe": jbody({"op": "subscribe", "workflow_ids": ["w2"]}) + b"\0" +
    jbody({"op": "unsubscribe", "workflow_ids": ["w2", "nope"]}),
    "subscribe_all": jbody({"op": "subscribe_all"}) + b"\0" +
    jbody({"op": "subscribe", "workflow_ids": ["w-3"]}),
    "fragmented": b"\x01" + jbody({"op": "subscribe", "workflow_ids": ["w1"]}),
    "subscribe_epoch": jbody({"op": "subscribe", "workflow_ids": ["w1", "w2", "w1"],
                              "since": {"w1": {"epoch": 5, "seq": 1},
                                        "w2": {"epoch": 9007199254740991, "seq": 0}}}),
    "auth": jbody({"op": "auth", "token": "eyJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6InJlYWQifQ.c2ln"}) +
    b"\0" + jbody({"op": "subscribe", "workflow_ids": ["w1"]}) + b"\0" +
    jbody({"op": "auth", "token": "x"}) + b"\0" + jbody({"op": "subscribe_all"}),
    "auth_odd": b'{"op":"auth"}\0{"op":"auth","token":7}\0{"op":"auth","token":null}\0' +
    b'{"op":"auth","token":"a.b.c","token":"d"}\0{"op":"auth","token":"' + b"A" * 9000 + b'"}',
    "errors": b'{"op":"subscribe","workflow_ids":[]}\0{"op":"dance"}\0[1]\0{"op":1}\0' +
    b'{"op":"subscribe","workflow_ids":["w1"],"since":{"w1":-1}}\0{"op":"subscribe","workflow_ids":["bad id"]}',
}

FUZZ_JWT_SECRET = b"fuzz-jwt-secret-for-the-auth-ops-driver-0123456789"


def hs256(claims):
    """An HS256 JWT signed with FUZZ_JWT_SECRET (fuzz_server_auth_ops.c)."""
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(FUZZ_JWT_SECRET, head + b"." + body, hashlib.sha256).digest()
    return (head + b"." + body + b"." + b64(sig)).decode()


FZH_STATIC = "fuzz-static-token-0123456789abcdef"  # server_harness.h: FZH_STATIC_TOKEN
FAR = 4102444800  # 2100-01-01: the seeds stay valid
TOK_ALL = hs256({"scope": "read", "exp": FAR})
TOK_W1 = hs256({"scope": "read", "workflows": ["w1"], "exp": FAR})
TOK_PREFIX = hs256({"scope": "read write", "workflows": ["w-*"], "exp": FAR})
TOK_WRITE = hs256({"scope": "write", "exp": FAR})
TOK_OLD = hs256({"scope": "read", "exp": 1000000000})


def ops(*msgs):
    return b"\0".join(m if isinstance(m, bytes) else jbody(m) for m in msgs)


AUTH_OPS = {
    "auth_then_subscribe": ops({"op": "auth", "token": TOK_ALL},
                               {"op": "subscribe", "workflow_ids": ["w1", "w2", "w-3"]}),
    "shrink": ops({"op": "auth", "token": TOK_ALL},
                  {"op": "subscribe", "workflow_ids": ["w1", "w2"]},
                  {"op": "auth", "token": TOK_W1},
                  {"op": "subscribe", "workflow_ids": ["w2", "w1"]}),
    "shrink_all": ops({"op": "auth", "token": TOK_ALL}, {"op": "subscribe_all"},
                      {"op": "auth", "token": TOK_PREFIX},
                      {"op": "subscribe", "workflow_ids": ["w-3"], "since": {"w-3": 0}},
                      {"op": "unsubscribe", "workflow_ids": ["w-3"]}),
    "before_auth": ops({"op": "subscribe", "workflow_ids": ["w1"]}, {"op": "subscribe_all"},
                       {"op": "auth", "token": TOK_OLD}, {"op": "auth", "token": TOK_WRITE},
                       {"op": "auth", "token": TOK_W1}, {"op": "subscribe_all"}),
    "refresh_bad": ops({"op": "auth", "token": TOK_W1},
                       {"op": "subscribe", "workflow_ids": ["w1"]},
                       {"op": "auth", "token": TOK_W1[:-2] + "xx"},
                       {"op": "auth", "token": TOK_ALL + "."},
                       {"op": "auth", "token": FZH_STATIC}, {"op": "auth"}),
    "fragmented": b"\x01" + jbody({"op": "auth", "token": TOK_ALL}),
}

SSE = {
    "multi_cursor": b"workflow_ids=w1,w2&since=w1:1,w2:2\nw1:1,w2:2",
    "multi_header": b"workflow_ids=w1,w-3\nw1:0,w-3:1",
    "ids_only": b"workflow_ids=w2",
    "list_query": b"status=running&limit=2&cursor=abc%3D&workflow_ids=w1",
    "history_query": b"since=1&limit=1&workflow_ids=w1,w1",
    "escapes": b"workflow_ids=w%31,w%2D3&since=w1%3A1\n",
    "epoch_cursor": b"workflow_ids=w1,w2&since=w1:5:1,w2:7:0\nw1:5:1,w2:9007199254740991:2",
    "epoch_query": b"since=3&epoch=42&workflow_ids=w1\n42:3",
}

WORKFLOW = {"id": "w1", "name": "n", "status": "running", "current_step": 1, "total_steps": 10,
            "message": "m", "seq": 2, "created_at": "2026-11-27T05:00:00.000Z",
            "updated_at": "2026-11-27T05:00:01.250Z"}


def resp(status, body=b"", headers=None, length=True):
    reason = {200: "OK", 201: "Created", 404: "Not Found", 409: "Conflict", 101: "Switching Protocols",
              500: "Internal Server Error"}.get(status, "X")
    h = {"Content-Type": "application/json", "Connection": "close"}
    h.update(headers or {})
    if length:
        h["Content-Length"] = str(len(body))
    return ("HTTP/1.1 %d %s\r\n" % (status, reason) + "".join("%s: %s\r\n" % kv for kv in h.items()) +
            "\r\n").encode() + body


CLIENT_HTTP = {
    "workflow": resp(200, jbody(WORKFLOW)),
    "page": resp(200, jbody({"workflows": [WORKFLOW, dict(WORKFLOW, id="w2")], "next_cursor": "c2"})),
    "last_page": resp(200, jbody({"workflows": [], "next_cursor": None})),
    "not_found": resp(404, jbody({"error": {"code": "not_found", "message": "no workflow"}})),
    "seq_mismatch": resp(409, jbody({"error": {"code": "seq_mismatch", "message": "seq is 3"}})),
    "no_length": resp(200, jbody(WORKFLOW), length=False),
    "extra_bytes": resp(200, jbody(WORKFLOW)) + b"HTTP/1.1 200 OK\r\n\r\n",
    "http10": b"HTTP/1.0 500 X\r\n\r\noops",
    "token_expired": resp(401, jbody({"error": {"code": "token_expired", "message": "expired"}})),
}
CLIENT_HTTP = {k: bytes([0x35 * i % 256]) + v for i, (k, v) in enumerate(CLIENT_HTTP.items())}


def update(wid, seq, **kw):
    m = dict(WORKFLOW, workflow_id=wid, seq=seq)
    del m["id"]
    m.update(kw)
    return sframe(TEXT, jbody(m))


HS = resp(101, headers={"Upgrade": "websocket", "Connection": "Upgrade",
                        "Sec-WebSocket-Accept": ACCEPT}, length=False)
CLIENT_WS = {
    "single_updates": HS + update("w1", 1) + update("w1", 2) + update("w1", 2) + update("w1", 3),
    "resync_and_delete": HS + update("w1", 5) + update("w1", 4, resync=True) +
    sframe(TEXT, jbody({"workflow_id": "w1", "deleted": True, "seq": 6})),
    "multi_ops": HS + sframe(TEXT, jbody({"op": "subscribed", "workflow_ids": ["w1"]})) +
    sframe(TEXT, jbody({"op": "error", "code": "not_found", "workflow_id": "w2",
                        "message": "no workflow"})) + update("w1", 3) + update("w-3", 1),
    "fragments_and_control": HS + sframe(TEXT, b'{"workflow_id":"w1",', fin=False) +
    sframe(PING, b"p") + sframe(CONT, b'"seq":7,"status":"running"}') + sframe(CLOSE, close(1001)),
    "refused": resp(404, jbody({"error": {"code": "not_found", "message": "gone"}})),
    "binary_and_bad": HS + sframe(BIN, b"\0") + sframe(CONT, b"x") + sframe(TEXT, b"{"),
    "token_ops": HS + sframe(TEXT, jbody({"op": "authenticated", "exp": 1764547200})) +
    sframe(TEXT, jbody({"op": "error", "code": "unauthorized", "message": "bad token"})) +
    sframe(TEXT, jbody({"op": "error", "code": "forbidden", "workflow_id": "w1",
                        "message": "the credential does not allow reading it"})) +
    sframe(TEXT, jbody({"op": "error", "code": "token_expired", "message": "expired"})) +
    sframe(CLOSE, close(4401, b"token expired")),
}
# byte 0: bits 0-1 how many workflows, 2 resume, 3 all, 7 cut into reads.
CLIENT_WS = {k: bytes([(i * 0x29) % 256]) + v for i, (k, v) in enumerate(CLIENT_WS.items())}

def tls_hello(**kw):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if kw.get("alpn"):
        ctx.set_alpn_protocols(kw["alpn"])
    if kw.get("tls12"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def tls_script(*ops):
    """fuzz_tls_session mode 1: ("c"|"s", bytes) writes, ("in"|"out", n) moves."""
    b = b""
    for op, arg in ops:
        if op in ("c", "s"):
            b += bytes([0 if op == "c" else 2, len(arg)]) + arg
        elif op == "in":
            b += bytes([1 | (arg[1] << 2), arg[0]])
        else:
            b += bytes([3 | (4 if arg[1] else 0), arg[0]])
    return b


TLS = {
    # mode 0 (first byte even): a first flight cut into pieces of byte 1 + 1
    "hello13": b"\x00\xff" + tls_hello(alpn=["http/1.1"]),
    "hello13_bytewise": b"\x02\x00" + tls_hello(),
    "hello12": b"\x04\x10" + tls_hello(tls12=True),
    "hello_h2_only": b"\x06\xff" + tls_hello(alpn=["h2"]),
    "plain_http": b"\x00\xff" + req("GET", "/healthz"),
    # mode 1 (first byte odd): scripts after a real handshake
    "request_and_answer": b"\x01" + tls_script(
        ("c", req("GET", "/healthz")), ("in", (255, 0)),
        ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), ("out", (255, 0))),
    "split_small_cap": b"\x03" + tls_script(
        ("c", b"a" * 200), ("c", b"b" * 100), ("in", (1, 2)), ("in", (255, 15)),
        ("s", b"x" * 200), ("out", (1, 0)), ("out", (255, 1))),
    "frames_big_cap": b"\x07" + tls_script(
        ("c", frame(1, '{"op":"subscribe_all"}', mask=b"abcd")), ("in", (3, 63)),
        ("s", sframe(1, '{"op":"subscribed","all":true}')), ("out", (255, 1))),
}


def bus_msg(node="node-a", deleted=False, **wf):
    w = {"id": "build-42", "epoch": 4208911635522374, "name": "nightly", "status": "running",
         "current_step": 3, "total_steps": 10, "message": "linking", "seq": 4,
         "created_at": "2026-11-27T05:00:00.000Z", "updated_at": "2026-11-27T05:00:01.250Z"}
    w.update(wf)
    return json.dumps({"v": 1, "node": node, "sent_ns": 1764547201250000000, "deleted": deleted,
                       "deleted_at": 1764547209999 if deleted else None, "workflow": w},
                      separators=(",", ":")).encode()


BUS = {
    "update": bus_msg(),
    "deleted": bus_msg(deleted=True),
    "unicode": bus_msg(node="h:8001-ab12", name="caf\u00e9 \"x\"", message="\u2028\n"),
    "big": bus_msg(seq=9007199254740991, current_step=10, status="completed"),
    # Hostile: what anything on NATS may publish (refused, or decoded and re-encoded).
    "node_quote": bus_msg(node='a"b\\'),
    "node_empty": bus_msg(node=""),
    "seq_huge": bus_msg(seq=2 ** 63 - 1, epoch=2 ** 62),
    "seq_negative": bus_msg(seq=-1, current_step=-5, total_steps=-1),
    "surrogate": bus_msg(message="\ud800"),
    "nested": b'{"v":1,"node":"n","workflow":' + b"[" * 5000,
}

CORPORA = {
    "fuzz_http_request": {k: bytes([len(v) // 3 % 256]) + v for k, v in REQUESTS.items()},
    "fuzz_workflow_json": JSON_BODIES,
    "fuzz_ws_frame": WS_FRAMES,
    "fuzz_ws_session": SESSION,
    "fuzz_server_conn": CONN,
    "fuzz_server_ops": OPS,
    "fuzz_server_auth_ops": AUTH_OPS,
    "fuzz_server_sse": SSE,
    "fuzz_client_http": CLIENT_HTTP,
    "fuzz_client_ws": CLIENT_WS,
    "fuzz_tls_session": TLS,
    "fuzz_bus_codec": BUS,
}


def main():
    for driver, seeds in CORPORA.items():
        d = os.path.join(ROOT, driver)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    print("wrote %d seeds for %d drivers under %s" %
          (sum(len(s) for s in CORPORA.values()), len(CORPORA), ROOT))


if __name__ == "__main__":
    main()
