"""Per-client limits (issue 9, section 4): --max-streams-per-client refuses
the N+1-th WebSocket or SSE stream of one client address with 503 while
another address (127.0.0.2) is still served; --write-rate answers changes
over the rate with 429 and Retry-After. Every refusal is counted by reason
in flowcast_refused_total."""

import base64
import os
import socket
import time

from fc_helpers import HOST, SockReader, assert_error, http_request_bytes, wait_for

SINGLE = "/api/workflows/wf/updates"
EVENTS = "/api/workflows/wf/events"


def _connect_from(src, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect((HOST, port))
    return s


def open_stream(port, kind, src="127.0.0.1"):
    """Opens a WebSocket ("ws") or SSE ("sse") stream from address src;
    returns (response, reader). The reader's socket stays open."""
    rd = SockReader(_connect_from(src, port))
    if kind == "ws":
        req = http_request_bytes("GET", SINGLE, port, {
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
    else:
        req = http_request_bytes("GET", EVENTS, port, {"Accept": "text/event-stream"})
    rd.sock.sendall(req)
    r = rd.read_response(head_only=True)
    if r.status not in (101, 200):  # the head is read; the error's body follows
        r.body = rd.read_exact(int(r.headers["content-length"]))
    return r, rd


def _refused_total(s, reason):
    m = s.metrics()
    return m.get('flowcast_refused_total{reason="%s"}' % reason, 0)


def _stream_limit(server_factory, kind):
    s = server_factory("--max-streams-per-client", "3", "--io-threads", "2")
    s.create(id="wf")
    held = []
    for _ in range(3):
        r, rd = open_stream(s.port, kind)
        assert r.status in (101, 200), r
        held.append(rd)
    r, rd = open_stream(s.port, kind)
    assert_error(r, 503, "too_many_streams")
    assert "--max-streams-per-client" in r.json()["error"]["message"]
    assert rd.at_eof(5.0)
    # another client address is served meanwhile
    r, other = open_stream(s.port, kind, src="127.0.0.2")
    assert r.status in (101, 200), r
    # plain requests from the full client are not refused
    assert s.request("GET", "/api/workflows/wf").status == 200
    assert _refused_total(s, "streams_per_client") == 1
    # closing one frees a slot for the same client
    held.pop(0).sock.close()

    def one_more():
        r, rd = open_stream(s.port, kind)
        if r.status in (101, 200):
            held.append(rd)
            return True
        assert r.status == 503, r
        rd.sock.close()
        return False

    wait_for(one_more, 5.0, 0.1, "a slot frees after a close")
    for rd in held + [other]:
        rd.sock.close()


def test_streams_per_client_ws(server_factory):
    _stream_limit(server_factory, "ws")


def test_streams_per_client_sse(server_factory):
    _stream_limit(server_factory, "sse")


def test_ws_and_sse_share_the_client_limit(server_factory):
    s = server_factory("--max-streams-per-client", "2")
    s.create(id="wf")
    r1, a = open_stream(s.port, "ws")
    r2, b = open_stream(s.port, "sse")
    assert (r1.status, r2.status) == (101, 200)
    r, c = open_stream(s.port, "sse")
    assert_error(r, 503, "too_many_streams")
    for rd in (a, b, c):
        rd.sock.close()


def test_no_stream_limit_by_default(server_factory):
    s = server_factory()
    s.create(id="wf")
    held = [open_stream(s.port, "ws") for _ in range(20)]
    assert all(r.status == 101 for r, _ in held)
    for _, rd in held:
        rd.sock.close()


def test_write_rate_429_with_retry_after(server_factory):
    s = server_factory("--write-rate", "1/s", "--write-burst", "3")
    s.create(id="wf")  # one token of the burst of 3
    codes = [s.request("PATCH", "/api/workflows/wf", {"message": "m%d" % i}).status
             for i in range(2)]
    assert codes == [200, 200]
    r = s.request("PATCH", "/api/workflows/wf", {"message": "over"})
    assert_error(r, 429, "rate_limited")
    ra = int(r.headers["retry-after"])
    assert 1 <= ra <= 2, ra
    for method, path, body in (("POST", "/api/workflows", {"name": "x", "total_steps": 1}),
                               ("DELETE", "/api/workflows/wf", None)):
        assert_error(s.request(method, path, body), 429, "rate_limited")
    # reads are never rate-limited
    assert s.get("wf")["message"] == "m1"
    assert _refused_total(s, "write_rate") == 3
    # writes resume after waiting Retry-After
    time.sleep(ra + 0.2)
    assert s.request("PATCH", "/api/workflows/wf", {"message": "again"}).status == 200


def test_write_rate_is_per_client_address(server_factory):
    s = server_factory("--write-rate", "0.1", "--write-burst", "1")
    s.create(id="wf")
    assert_error(s.request("PATCH", "/api/workflows/wf", {"message": "x"}), 429, "rate_limited")
    rd = SockReader(_connect_from("127.0.0.2", s.port))
    body = b'{"message":"from another address"}'
    rd.sock.sendall(http_request_bytes("PATCH", "/api/workflows/wf", s.port, {
        "Content-Type": "application/json", "Content-Length": str(len(body))}, body))
    assert rd.read_response().status == 200
    rd.sock.close()
    r = s.request("PATCH", "/api/workflows/wf", {"message": "y"})
    assert int(r.headers["retry-after"]) >= 9  # 0.1/s: a token every 10 s


def test_write_rate_flags_parse(flowcast):
    import subprocess
    for bad in ("abc", "-1", "1/m", "2000000"):
        p = subprocess.run([flowcast, "serve", "--write-rate", bad], capture_output=True, text=True)
        assert p.returncode == 2, (bad, p.stderr)
        assert "--write-rate" in p.stderr


def test_streams_per_client_exact_across_loops(server_factory):
    """The per-client count is shared by the I/O threads: of 40 concurrent
    upgrades from one address with a limit of 20, exactly 20 open, round
    after round, and the closes give every slot back."""
    from concurrent.futures import ThreadPoolExecutor
    s = server_factory("--io-threads", "2", "--max-streams-per-client", "20")
    s.create(id="wf")
    with ThreadPoolExecutor(max_workers=40) as pool:
        for _ in range(3):
            got = list(pool.map(lambda _: open_stream(s.port, "ws"), range(40)))
            statuses = sorted(r.status for r, _ in got)
            assert statuses == [101] * 20 + [503] * 20, statuses
            for _, rd in got:
                rd.sock.close()
            wait_for(lambda: s.metrics()["flowcast_ws_connections"] == 0, 10.0, 0.1, "all closed")
    assert _refused_total(s, "streams_per_client") == 60
