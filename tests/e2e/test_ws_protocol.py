"""WebSocket wire protocol with a raw client: handshake errors (plain HTTP),
close codes for protocol violations, ping/pong, fragmentation, close
handshake, keep-alive timeout, connection limit and the echo endpoint."""

import asyncio
import base64
import json
import os
import socket
import time

import pytest
from fc_helpers import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS, SockReader,
                        assert_error, build_frame, close_payload, connect, http_request_bytes,
                        recv_json, run, send_in_two, wait_for, ws_connect)

SINGLE = "/api/workflows/wf/updates"
MULTI = "/api/updates"
ECHO = "/ws/echo"


@pytest.fixture(scope="module")
def wsserver(module_server_factory):
    """Shared by the tests of this module (so each protocol error also shows
    that it does not disturb the server): echo enabled, 1 KiB message limit,
    one workflow "wf"."""
    s = module_server_factory("--enable-echo", "--max-message", "1024")
    s.create(id="wf")
    return s


@pytest.fixture(autouse=True)
def _server_still_healthy(request):
    yield
    if "wsserver" in request.fixturenames:
        s = request.getfixturevalue("wsserver")
        assert s.alive(), "server died"
        assert s.request("GET", "/healthz").status == 200


def open_ws(server, path):
    ws = RawWS.open(server, path)
    if path == SINGLE:
        first = ws.recv_json()
        assert first["workflow_id"] == "wf"
    return ws


# ---------------------------------------------------------------- handshake

def hs(server, path, headers=None, key=None, version="13"):
    ws = RawWS(server.port)
    r = ws.handshake(path, headers, key=key, version=version)
    return r, ws


@pytest.mark.parametrize("path", [SINGLE, MULTI, ECHO])
def test_handshake_ok(wsserver, path):
    r, ws = hs(wsserver, path)
    assert r.status == 101, r
    # header names and tokens are case-insensitive; Connection may list several tokens
    r, ws = hs(wsserver, path, {"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade"})
    assert r.status == 101, r


@pytest.mark.parametrize("headers,key", [
    ({"Sec-WebSocket-Key": None}, None),
    ({}, "not-base64!!"),
    ({}, base64.b64encode(b"short").decode()),
    ({"Upgrade": None}, None),
    ({"Upgrade": "h2c"}, None),
    ({"Connection": None}, None),
    ({"Connection": "keep-alive"}, None),
    ({"Upgrade": None, "Connection": None}, None),
])
@pytest.mark.parametrize("path", [SINGLE, MULTI])
def test_handshake_bad_request_400(wsserver, path, headers, key):
    r, ws = hs(wsserver, path, headers, key=key)
    assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("path", [SINGLE, MULTI, ECHO])
@pytest.mark.parametrize("version", ["8", "12", "14"])
def test_handshake_version_426(wsserver, path, version):
    r, ws = hs(wsserver, path, version=version)
    assert_error(r, 426, "upgrade_required")
    assert r.header("sec-websocket-version") == "13", r


def test_handshake_unknown_workflow_404(wsserver):
    r, ws = hs(wsserver, "/api/workflows/nope/updates")
    assert_error(r, 404, "not_found")


def test_handshake_post_not_allowed(wsserver):
    req = http_request_bytes("POST", SINGLE, wsserver.port, {
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Content-Length": "0"})
    rd = SockReader(connect(wsserver.port))
    rd.sock.sendall(req)
    r = rd.read_response()
    assert_error(r, 405, "method_not_allowed")


@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "", "1e3", "0x10"])
def test_handshake_bad_since_400(wsserver, since):
    r, ws = hs(wsserver, SINGLE + "?since=" + since)
    assert_error(r, 400, "bad_request")


def test_handshake_origin_default(wsserver):
    p = wsserver.port
    r, _ = hs(wsserver, SINGLE)  # no Origin
    assert r.status == 101
    r, _ = hs(wsserver, SINGLE, {"Origin": "http://127.0.0.1:%d" % p})  # same host:port
    assert r.status == 101, r
    for origin in ("http://evil.example", "http://127.0.0.1:%d" % (p + 1), "null",
                   "http://127.0.0.1.evil.example:%d" % p):
        for path in (SINGLE, MULTI):
            r, _ = hs(wsserver, path, {"Origin": origin})
            assert_error(r, 403, "forbidden")
        # The echo endpoint (only with --enable-echo) serves conformance suites,
        # which send arbitrary origins: it accepts any.
        r, _ = hs(wsserver, ECHO, {"Origin": origin})
        assert r.status == 101, (origin, r)


def test_handshake_origin_allow_list(server_factory):
    s = server_factory("--allow-origin", "https://app.example",
                       "--allow-origin", "http://other.example:8080")
    s.create(id="wf")
    for origin in ("https://app.example", "http://other.example:8080"):
        r, _ = hs(s, SINGLE, {"Origin": origin})
        assert r.status == 101, (origin, r)
    for origin in ("https://evil.example", "http://app.example", "http://other.example"):
        r, _ = hs(s, SINGLE, {"Origin": origin})
        assert_error(r, 403, "forbidden")
    r, _ = hs(s, SINGLE)
    assert r.status == 101


def test_handshake_origin_any(server_factory):
    s = server_factory("--allow-origin", "*")
    s.create(id="wf")
    for origin in ("https://evil.example", "null", "http://localhost:3000"):
        r, _ = hs(s, SINGLE, {"Origin": origin})
        assert r.status == 101, r


def test_upgrade_needs_the_token(server_factory):
    """--api-token guards reads too: the upgrade without it is 401 (RawWS.open
    sends the server's token unless told not to)."""
    s = server_factory("--api-token", "tok")
    s.create(id="wf")
    ws = RawWS(s.port)
    r = ws.handshake(SINGLE, {"Authorization": None})
    assert r.status == 401 and r.header("www-authenticate") == "Bearer", r
    ws.close()
    ws = RawWS.open(s, SINGLE)
    assert ws.recv_json()["seq"] == 1


def _read_503(port):
    """Opens a TCP connection over the limit and returns the server's answer."""
    rd = SockReader(connect(port))
    req = http_request_bytes("GET", SINGLE, port, {
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
    # the server may answer before reading the request; do not send into a closed socket
    send_in_two(rd, b"", req, wait=0.5)
    r = rd.read_response()
    return r, rd


def test_max_connections_503(server_factory):
    s = server_factory("--max-connections", "3")
    s.create(id="wf")
    time.sleep(0.3)  # let the server notice that the earlier HTTP connections closed
    held = [open_ws(s, SINGLE) for _ in range(3)]
    r, rd = _read_503(s.port)
    assert_error(r, 503, "unavailable")
    assert rd.at_eof(5.0)
    # an SSE stream counts as well
    r = s.request("GET", "/api/workflows/wf/events")
    assert_error(r, 503, "unavailable")
    # plain requests are short-lived and never refused for the limit
    assert s.request("GET", "/healthz").status == 200
    assert s.request("PATCH", "/api/workflows/wf", {"message": "still served"}).status == 200
    held[0].close()

    def one_more():
        ws = RawWS(s.port)
        try:
            r = ws.handshake(SINGLE)
        except (EOFError, OSError):
            return False
        if r.status == 101:
            held.append(ws)
            return True
        assert r.status == 503, r
        return False

    wait_for(one_more, 5.0, 0.1, "a slot frees after a close")
    assert held[-1].recv_json()["seq"] == 2  # the state after the PATCH above


# ---------------------------------------------------------------- close codes

ALL = [SINGLE, MULTI, ECHO]

PROTOCOL_ERRORS = {
    "unmasked": build_frame(OP_TEXT, b"hello", mask=False),
    "rsv1": build_frame(OP_TEXT, b"hello", rsv=4),
    "rsv2": build_frame(OP_TEXT, b"hello", rsv=2),
    "rsv3": build_frame(OP_PING, b"", rsv=1),
    "opcode3": build_frame(0x3, b"x"),
    "opcode7": build_frame(0x7, b""),
    "opcodeB": build_frame(0xB, b""),
    "opcodeF": build_frame(0xF, b"x"),
    "fragmented_ping": build_frame(OP_PING, b"x", fin=False),
    "fragmented_close": build_frame(OP_CLOSE, close_payload(1000), fin=False),
    "ping_126": build_frame(OP_PING, b"p" * 126),
    "pong_126": build_frame(OP_PONG, b"p" * 126),
    "close_126": build_frame(OP_CLOSE, close_payload(1000, b"r" * 124)),
    "cont_without_start": build_frame(OP_CONT, b"x"),
    "text_inside_fragmented": build_frame(OP_TEXT, b"{", fin=False) + build_frame(OP_TEXT, b"}"),
    "close_1_byte": build_frame(OP_CLOSE, b"\x03"),
}


@pytest.mark.parametrize("path", ALL)
@pytest.mark.parametrize("name", sorted(PROTOCOL_ERRORS))
def test_protocol_error_1002(wsserver, path, name):
    ws = open_ws(wsserver, path)
    ws.send_raw(PROTOCOL_ERRORS[name])
    ws.expect_close(1002)


@pytest.mark.parametrize("path", ALL)
@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_code_1002(wsserver, path, code):
    ws = open_ws(wsserver, path)
    ws.send_close(code)
    ws.expect_close(1002)


INVALID_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"ok \xe2\x82", b"\xf4\x90\x80\x80"]


@pytest.mark.parametrize("path", ALL)
@pytest.mark.parametrize("bad", INVALID_UTF8)
def test_invalid_utf8_text_1007(wsserver, path, bad):
    ws = open_ws(wsserver, path)
    ws.send_text(b'{"op":"' + bad + b'"}')
    ws.expect_close(1007)


@pytest.mark.parametrize("path", ALL)
def test_invalid_utf8_across_fragments_1007(wsserver, path):
    ws = open_ws(wsserver, path)
    ws.send_frame(OP_TEXT, b"abc\xe2", fin=False)
    ws.send_frame(OP_CONT, b"\x28\xa1", fin=True)
    ws.expect_close(1007)


@pytest.mark.parametrize("path", ALL)
def test_invalid_utf8_close_reason_1007(wsserver, path):
    ws = open_ws(wsserver, path)
    ws.send_close(1000, b"bye \xff")
    ws.expect_close(1007)


@pytest.mark.parametrize("path", ALL)
def test_message_too_big_1009(wsserver, path):
    ws = open_ws(wsserver, path)
    frame = build_frame(OP_TEXT, b"a" * 2000)
    hdr_len = 2 + 2 + 4
    send_in_two(ws.rd, frame[:hdr_len], frame[hdr_len:], wait=0.5)
    ws.expect_close(1009)


@pytest.mark.parametrize("path", ALL)
def test_fragmented_message_too_big_1009(wsserver, path):
    ws = open_ws(wsserver, path)
    ws.send_frame(OP_TEXT, b"a" * 600, fin=False)
    frame = build_frame(OP_CONT, b"b" * 600)
    send_in_two(ws.rd, frame[:8], frame[8:], wait=0.5)
    ws.expect_close(1009)


@pytest.mark.parametrize("path", [SINGLE, MULTI])
def test_binary_message_1003(wsserver, path):
    ws = open_ws(wsserver, path)
    ws.send_frame(OP_BINARY, b"\x00\x01")
    ws.expect_close(1003)


def test_default_max_message_64k(server_factory):
    s = server_factory("--enable-echo")
    ws = RawWS.open(s, ECHO)
    ws.send_text(b"x" * 65536)
    m = ws.recv_message()
    assert len(m.payload) == 65536
    frame = build_frame(OP_TEXT, b"x" * 65537)
    send_in_two(ws.rd, frame[:14], frame[14:], wait=0.5)
    ws.expect_close(1009)


def test_protocol_error_does_not_disturb_others(wsserver):
    good = [open_ws(wsserver, SINGLE) for _ in range(3)]
    bad = [open_ws(wsserver, p) for p in ALL]
    for b in bad:
        b.send_raw(build_frame(OP_TEXT, b"x", mask=False))
    for b in bad:
        b.expect_close(1002)
    p = wsserver.patch("wf", message="after")
    for g in good:
        m = g.recv_json()
        assert m["seq"] == p["seq"] and m["message"] == "after"
    assert wsserver.request("GET", "/healthz").status == 200


def test_text_on_single_stream_is_ignored(wsserver):
    ws = open_ws(wsserver, SINGLE)
    ws.send_text('{"op":"subscribe_all"}')
    ws.send_text("not json at all")
    p = wsserver.patch("wf", current_step=1)
    m = ws.recv_json()
    assert m["seq"] == p["seq"] and "op" not in m


# ---------------------------------------------------------------- ping / pong / close

@pytest.mark.parametrize("path", ALL)
@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125))])
def test_ping_pong_same_payload(wsserver, path, payload):
    ws = open_ws(wsserver, path)
    ws.send_frame(OP_PING, payload)
    f = ws.recv_frame()
    assert f.opcode == OP_PONG and f.fin == 1, f
    assert f.payload == payload


def test_unsolicited_pong_ignored(wsserver):
    ws = open_ws(wsserver, ECHO)
    ws.send_frame(OP_PONG, b"unsolicited")
    ws.send_text("still here")
    m = ws.recv_message()
    assert m.payload == b"still here"


@pytest.mark.parametrize("path", ALL)
@pytest.mark.parametrize("code,reason", [(1000, b""), (1000, b"bye"), (1001, b""), (4000, b"app"),
                                         (3000, "é".encode())])
def test_client_close_echoed(wsserver, path, code, reason):
    ws = open_ws(wsserver, path)
    ws.send_close(code, reason)
    f = ws.recv_close()
    assert f.close_code == code, f
    assert ws.rd.at_eof(5.0)


@pytest.mark.parametrize("path", ALL)
def test_client_close_empty_payload(wsserver, path):
    ws = open_ws(wsserver, path)
    ws.send_frame(OP_CLOSE, b"")
    f = ws.recv_close()
    assert f.close_code in (None, 1000), f
    assert ws.rd.at_eof(5.0)


def test_websockets_client_close(wsserver):
    async def main():
        ws = await ws_connect(wsserver, SINGLE)
        await recv_json(ws)
        await ws.close(1000, "done")
        assert ws.close_code == 1000
    run(main())


# ---------------------------------------------------------------- fragmentation

def test_fragmented_subscribe_reassembled(wsserver):
    ws = open_ws(wsserver, MULTI)
    msg = json.dumps({"op": "subscribe", "workflow_ids": ["wf"]}).encode()
    ws.send_frame(OP_TEXT, msg[:5], fin=False)
    ws.send_frame(OP_PING, b"mid")  # control frames may be interleaved
    ws.send_frame(OP_CONT, msg[5:12], fin=False)
    ws.send_frame(OP_CONT, b"", fin=False)
    ws.send_frame(OP_CONT, msg[12:], fin=True)
    f = ws.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"mid"
    assert ws.recv_json() == {"op": "subscribed", "workflow_ids": ["wf"]}
    assert ws.recv_json()["workflow_id"] == "wf"


def test_frame_split_across_tcp_segments(wsserver):
    ws = open_ws(wsserver, ECHO)
    frame = build_frame(OP_TEXT, b"split me " * 20)
    for i in range(len(frame)):
        ws.send_raw(frame[i:i + 1])
        if i % 20 == 0:
            time.sleep(0.002)
    assert ws.recv_message().payload == b"split me " * 20


def test_many_frames_in_one_segment(wsserver):
    ws = open_ws(wsserver, ECHO)
    ws.send_raw(b"".join(build_frame(OP_TEXT, ("m%d" % i).encode()) for i in range(50)))
    for i in range(50):
        assert ws.recv_message().payload == ("m%d" % i).encode()


# ---------------------------------------------------------------- echo

def test_echo_text_and_binary(wsserver):
    ws = open_ws(wsserver, ECHO)
    for op, payload in [(OP_TEXT, "héllo ✓".encode()), (OP_BINARY, bytes(range(256)) * 3),
                        (OP_TEXT, b""), (OP_BINARY, b""), (OP_TEXT, b"x" * 1024)]:
        ws.send_frame(op, payload)
        m = ws.recv_message()
        assert (m.opcode, m.payload) == (op, payload)


def test_echo_fragmented_as_one_message(wsserver):
    ws = open_ws(wsserver, ECHO)
    ws.send_frame(OP_BINARY, b"\x00\x01", fin=False)
    ws.send_frame(OP_CONT, b"\x02", fin=False)
    ws.send_frame(OP_CONT, b"\x03\x04", fin=True)
    f = ws.recv_frame()
    assert (f.fin, f.opcode, f.payload) == (1, OP_BINARY, b"\x00\x01\x02\x03\x04")
    # a multibyte character split between fragments is valid UTF-8
    ws.send_frame(OP_TEXT, b"\xe2\x82", fin=False)
    ws.send_frame(OP_CONT, b"\xac", fin=True)
    f = ws.recv_frame()
    assert (f.fin, f.opcode, f.payload) == (1, OP_TEXT, "€".encode())


def test_echo_with_websockets_client(server_factory):
    s = server_factory("--enable-echo", "--max-message", str(16 * 1024 * 1024))

    async def main():
        ws = await ws_connect(s, ECHO)
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 5) == "hello"
        big = os.urandom(2 * 1024 * 1024)
        await ws.send(big)
        assert await asyncio.wait_for(ws.recv(), 10) == big
        await ws.send(["frag", "mented"])
        assert await asyncio.wait_for(ws.recv(), 5) == "fragmented"
        await ws.close()
    run(main())


def test_echo_disabled_404(server):
    r, _ = hs(server, ECHO)
    assert_error(r, 404, "not_found")


# ---------------------------------------------------------------- keep-alive

def test_server_pings_and_drops_silent_client(server_factory):
    s = server_factory("--ping-interval", "0.5")
    s.create(id="wf")
    ws = open_ws(s, SINGLE)
    t0 = time.monotonic()
    pings, closes = 0, 0
    while True:
        try:
            f = ws.recv_frame(timeout=max(0.01, 6.0 - (time.monotonic() - t0)))
        except (EOFError, ConnectionResetError):
            break
        if f.opcode == OP_PING:
            pings += 1
            if pings == 1:
                assert time.monotonic() - t0 < 3.0
        elif f.opcode == OP_CLOSE:
            closes += 1
    elapsed = time.monotonic() - t0
    assert pings >= 1
    assert closes == 0, "keep-alive drop sends no close frame"
    assert 0.5 <= elapsed < 5.0, elapsed


def test_client_answering_pings_stays_connected(server_factory):
    s = server_factory("--ping-interval", "0.5")
    s.create(id="wf")
    ws = open_ws(s, SINGLE)
    pings = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:
        try:
            f = ws.recv_frame(timeout=0.2)
        except socket.timeout:
            continue
        assert f.opcode == OP_PING, f
        pings += 1
        ws.send_frame(OP_PONG, f.payload)
    assert pings >= 3
    p = s.patch("wf", message="still alive")
    m = ws.recv_message(answer_pings=True)
    assert json.loads(m.payload)["seq"] == p["seq"]

    async def lib_client():  # the websockets client answers pings by itself
        c = await ws_connect(s, SINGLE)
        await recv_json(c)
        await asyncio.sleep(2.5)
        p = await asyncio.get_running_loop().run_in_executor(None, lambda: s.patch("wf", current_step=1))
        assert (await recv_json(c))["seq"] == p["seq"]
        await c.close()
    run(lib_client())
