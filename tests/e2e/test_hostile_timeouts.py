"""Connections that hold a slot without doing anything (issue 8, item 2) and
keep-alive that counts what the peer sends (item 4): an HTTP request must be
complete within --request-timeout of its start (a fresh connection within
--request-timeout of connecting), a keep-alive connection may wait
--idle-timeout for its next request, accepted sockets use TCP keepalive, and
a WebSocket peer that is visibly sending is never dropped as silent."""

import os
import subprocess
import time

from fc_helpers import (OP_PING, OP_PONG, OP_TEXT, RawWS, Server, SockReader, build_frame, connect,
                        free_port)


def _closed_within(sock, seconds):
    """True when the server closes sock within seconds (what it sent is dropped)."""
    return SockReader(sock).at_eof(seconds)


def test_connections_that_never_send_are_closed(server_factory):
    s = server_factory("--request-timeout", "1")
    socks = [connect(s.port) for _ in range(50)]
    t0 = time.monotonic()
    for sock in socks:
        assert _closed_within(sock, 5), "a silent connection was kept open"
        sock.close()
    assert time.monotonic() - t0 < 4
    m = s.metrics()
    assert m["flowcast_http_request_timeouts_total"] >= 50
    assert m["flowcast_connections"] == 1  # the scrape itself


def test_dribbled_request_gets_408_and_close(server_factory):
    """One header byte every 0.2 s: progress that never completes a request
    does not extend --request-timeout."""
    s = server_factory("--request-timeout", "1")
    sock = connect(s.port)
    rd = SockReader(sock)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    t0 = time.monotonic()
    answered = None
    for b in head:
        try:
            sock.sendall(bytes([b]))
        except OSError:
            break
        if rd.wait_readable(0.2):
            answered = rd.read_response(5)
            break
    assert answered is not None, "the dribbling request was never cut off"
    assert answered.status == 408, answered
    assert answered.json()["error"]["code"] == "request_timeout"
    assert time.monotonic() - t0 < 4
    assert rd.at_eof(5)
    sock.close()


def test_request_completed_in_time_is_served(server_factory):
    """A request sent in pieces within the timeout is answered normally, and
    the keep-alive connection gets a fresh deadline for the next one."""
    s = server_factory("--request-timeout", "1.5")
    sock = connect(s.port)
    rd = SockReader(sock)
    for _ in range(2):
        for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(0.3)
        assert rd.read_response(5).status == 200
    sock.close()


def test_idle_keepalive_connection_is_closed(server_factory):
    s = server_factory("--idle-timeout", "1")
    sock = connect(s.port)
    rd = SockReader(sock)
    # requests every 0.6 s keep it open past the timeout
    for _ in range(4):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert rd.read_response(5).status == 200
        time.sleep(0.6)
    t0 = time.monotonic()
    assert rd.at_eof(5), "an idle keep-alive connection was kept open"
    assert time.monotonic() - t0 < 3
    assert s.metrics()["flowcast_http_idle_closed_total"] >= 1
    sock.close()


def test_accepted_sockets_use_tcp_keepalive(server_factory):
    """Half-open sockets (a peer gone without FIN or RST) are reaped by TCP
    keepalive: the server's side of a connection runs a keepalive timer."""
    s = server_factory("--tcp-keepalive", "30")
    sock = connect(s.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert SockReader(sock).read_response(5).status == 200
    out = subprocess.run(["ss", "-tnoH", "state", "established", "( sport = :%d )" % s.port],
                         capture_output=True, text=True, timeout=10).stdout
    assert "timer:(keepalive" in out, out
    sock.close()


def test_slow_large_frame_keeps_the_connection_alive(server_factory):
    """--ping-interval 0.5 and a 40 KB message sent 2 KB every 100 ms (two
    seconds, four ping intervals) without answering a ping: the bytes prove
    the peer is alive, so the connection is not dropped mid-frame."""
    s = server_factory("--ping-interval", "0.5", "--enable-echo")
    ws = RawWS.open(s, "/ws/echo")
    payload = bytes(range(32, 127)) * 431  # 40,945 bytes of ASCII
    frame = build_frame(OP_TEXT, payload)
    for i in range(0, len(frame), 2048):
        ws.send_raw(frame[i:i + 2048])
        time.sleep(0.1)
    got = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        f = ws.recv_frame(5)
        if f.opcode == OP_PING:
            ws.send_frame(OP_PONG, f.payload)
            continue
        assert f.opcode == OP_TEXT, f
        got = f.payload
        break
    assert got == payload
    ws.close()


def test_silent_websocket_is_still_dropped(server_factory):
    """Only silence ends a connection: a peer that sends nothing at all is
    dropped after a ping interval without an answer."""
    s = server_factory("--ping-interval", "0.5")
    ws = RawWS.open(s, "/api/updates")
    ws.sock.settimeout(5)
    t0 = time.monotonic()
    assert ws.rd.at_eof(5)
    assert time.monotonic() - t0 < 3
    ws.close()


def test_idle_sockets_do_not_starve_new_clients(flowcast, tmp_path):
    """With a low descriptor limit, sockets that never send used to fill it
    for good, and a normal request then timed out. They are closed after
    --request-timeout, so the normal request gets through."""
    port = free_port()
    args = ["--nofile=128:128", flowcast, "serve", "--listen", "127.0.0.1:%d" % port,
            "--db", str(tmp_path / "x.db"), "--request-timeout", "1"]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    s = Server("prlimit", port, str(tmp_path / "x.db"), str(tmp_path / "server.log"), args, env)
    s.start()
    try:
        s.wait_ready(10)
        idle = [connect(port) for _ in range(200)]  # more than the server can hold
        t0 = time.monotonic()
        r = s.request("GET", "/healthz", timeout=8)
        took = time.monotonic() - t0
        print("a normal request behind 200 idle sockets: %.2f s" % took)
        assert r.status == 200, r
        assert took < 6, took
        for sock in idle:
            sock.close()
        assert s.stop() == 0
    finally:
        if s.alive():
            s.kill9()
        s.logf.close()
