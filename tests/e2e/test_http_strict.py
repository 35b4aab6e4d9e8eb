"""HTTP strictness (issue 8, items 5 and 8): Host as RFC 9112 §3.2 wants it,
the allowed-hosts list against DNS rebinding, WebSocket upgrades only over
HTTP/1.1 GET (RFC 6455 §4.1), Expect: 100-continue, HEAD on read routes."""

import base64
import json
import os
import subprocess

import pytest

from fc_helpers import (SockReader, assert_error, connect, free_port, http_request_bytes,
                        raw_http)

API = "/api/workflows"
UPGRADE_ROUTES = ["/api/updates", API + "/wf/updates", "/ws/echo"]
WS_HEADERS = ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
              % base64.b64encode(os.urandom(16)).decode())


@pytest.fixture(scope="module")
def srv(module_server_factory):
    s = module_server_factory("--enable-echo")
    s.create(id="wf")
    return s


def raw(port, text, timeout=5.0):
    """Sends one request (str with \\r\\n) on a new connection; returns the response."""
    rd = SockReader(connect(port))
    rd.sock.sendall(text.encode("latin-1"))
    return rd.read_response(timeout, head_only=text.startswith("HEAD "))


# ---------------------------------------------------------------- Host (RFC 9112 §3.2)

@pytest.mark.parametrize("path", ["/healthz", API, API + "/wf"] + UPGRADE_ROUTES)
@pytest.mark.parametrize("host_lines", ["", "Host:\r\n", "Host: \r\n",
                                        "Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n",
                                        "Host: a b\r\n", "Host: 127.0.0.1:80x\r\n"])
def test_host_missing_empty_or_repeated_400(srv, path, host_lines):
    extra = WS_HEADERS if path in UPGRADE_ROUTES else ""
    r = raw(srv.port, "GET %s HTTP/1.1\r\n%s%s\r\n" % (path, host_lines, extra))
    assert_error(r, 400, "bad_request")


def test_host_problem_does_not_change_anything(srv):
    srv.create(id="keep")
    body = '{"message":"x"}'
    r = raw(srv.port, "PATCH %s/keep HTTP/1.1\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n%s" % (API, len(body), body))
    assert_error(r, 400, "bad_request")
    assert srv.get("keep")["seq"] == 1


def test_http10_may_omit_host(srv):
    r = raw(srv.port, "GET /healthz HTTP/1.0\r\n\r\n")
    assert r.status == 200, r


# ---------------------------------------------------------------- upgrades (RFC 6455 §4.1)

@pytest.mark.parametrize("path", UPGRADE_ROUTES)
def test_upgrade_over_http10_refused(srv, path):
    for host in ("Host: 127.0.0.1:%d\r\n" % srv.port, ""):
        r = raw(srv.port, "GET %s HTTP/1.0\r\n%s%s\r\n" % (path, host, WS_HEADERS))
        assert 400 <= r.status < 500, r
        assert r.status != 101


@pytest.mark.parametrize("path", UPGRADE_ROUTES)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"])
def test_upgrade_with_other_method_refused(srv, path, method):
    r = raw(srv.port, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n%s\r\n"
            % (method, path, srv.port, WS_HEADERS))
    assert 400 <= r.status < 500, r


def test_upgrade_with_proper_request_still_works(srv):
    for path in UPGRADE_ROUTES:
        s = connect(srv.port)
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost:%d\r\n%s\r\n"
                   % (path, srv.port, WS_HEADERS)).encode())
        r = SockReader(s).read_response()
        assert r.status == 101, (path, r)
        s.close()


# ---------------------------------------------------------------- allowed hosts (DNS rebinding)

def test_rebinding_host_421(srv):
    p = srv.port
    srv.create(id="victim")
    for host in ("evil.example", "evil.example:%d" % p, "127.0.0.1.evil.example",
                 "localhost.evil.example", "10.1.2.3:%d" % p):
        hdr = {"Host": host, "Origin": "http://" + host}
        for method, path in (("GET", API), ("GET", API + "/victim"), ("DELETE", API + "/victim"),
                             ("GET", "/metrics"), ("GET", "/flowcast.js")):
            (r,), _ = raw_http(p, http_request_bytes(method, path, p, hdr))
            err = assert_error(r, 421, "host_not_allowed")
            assert "--allow-host" in err["message"]
        for path in UPGRADE_ROUTES:
            r = raw(p, "GET %s HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\n%s\r\n"
                    % (path, host, host, WS_HEADERS))
            assert_error(r, 421, "host_not_allowed")
    assert srv.get("victim")["seq"] == 1  # the rebound DELETE changed nothing


def test_loopback_hosts_allowed_by_default(srv):
    p = srv.port
    for host in ("127.0.0.1", "127.0.0.1:%d" % p, "localhost", "LOCALHOST:%d" % p,
                 "localhost.", "app.localhost:%d" % p, "[::1]", "[::1]:%d" % p, "127.1.2.3",
                 "ip6-localhost"):
        (r,), _ = raw_http(p, http_request_bytes("GET", "/healthz", p, {"Host": host}))
        assert r.status == 200, (host, r)


def test_allow_host_flag(server_factory):
    s = server_factory("--allow-host", "flowcast.internal", "--allow-host", "Other.Example:9000")
    for host in ("flowcast.internal", "FLOWCAST.internal:%d" % s.port, "other.example:9000",
                 "localhost", "127.0.0.1:%d" % s.port):
        (r,), _ = raw_http(s.port, http_request_bytes("GET", API, s.port, {"Host": host}))
        assert r.status == 200, (host, r)
    for host in ("evil.example", "internal", "flowcast.internal.evil"):
        (r,), _ = raw_http(s.port, http_request_bytes("GET", API, s.port, {"Host": host}))
        assert_error(r, 421, "host_not_allowed")


def test_allow_host_any_and_env(server_factory):
    s = server_factory("--allow-host", "*")
    (r,), _ = raw_http(s.port, http_request_bytes("GET", API, s.port, {"Host": "evil.example"}))
    assert r.status == 200, r
    s.stop()
    s = server_factory(env={"FLOWCAST_ALLOW_HOST": "a.example, b.example"})
    for host, status in (("a.example", 200), ("b.example", 200), ("c.example", 421)):
        (r,), _ = raw_http(s.port, http_request_bytes("GET", API, s.port, {"Host": host}))
        assert r.status == status, (host, r)


def test_wildcard_listen_allows_ip_literals_not_names(server_factory):
    port = free_port()
    # A later --listen wins over the factory's own.
    s = server_factory("--listen", "0.0.0.0:%d" % port, ready=False)
    s.port = port
    s.wait_ready()
    for host, status in (("192.0.2.7:%d" % port, 200), ("[2001:db8::1]", 200),
                         ("evil.example", 421)):
        (r,), _ = raw_http(port, http_request_bytes("GET", "/healthz", port, {"Host": host}))
        assert r.status == status, (host, r)


# ---------------------------------------------------------------- Expect: 100-continue

def test_expect_100_continue_before_body(srv):
    body = json.dumps({"id": "cont", "name": "c", "total_steps": 2}).encode()
    head = http_request_bytes("POST", API, srv.port, {
        "Content-Type": "application/json", "Content-Length": str(len(body)),
        "Expect": "100-continue"})
    rd = SockReader(connect(srv.port))
    rd.sock.sendall(head)
    # The interim answer comes while the body has not been sent.
    assert rd.read_until(b"\r\n\r\n", timeout=5.0) == b"HTTP/1.1 100 Continue\r\n\r\n"
    rd.sock.sendall(body)
    r = rd.read_response()
    assert r.status == 201, r
    # the connection stays usable
    rd.sock.sendall(http_request_bytes("GET", API + "/cont", srv.port))
    assert rd.read_response().status == 200


def test_expect_100_continue_behind_pipelined_answers(srv):
    """The 100 must not overtake the answers to earlier pipelined requests:
    it follows them, still before the body is sent."""
    srv.create(id="pipe100")
    patch = b'{"message":"p"}'
    body = json.dumps({"id": "cont2", "name": "c", "total_steps": 2}).encode()
    head = http_request_bytes("POST", API, srv.port, {
        "Content-Type": "application/json", "Content-Length": str(len(body)),
        "Expect": "100-continue"})
    rd = SockReader(connect(srv.port))
    rd.sock.sendall(http_request_bytes("PATCH", API + "/pipe100", srv.port, {
        "Content-Type": "application/json", "Content-Length": str(len(patch))}, patch) + head)
    first = rd.read_response()
    assert first.status == 200 and first.json()["seq"] == 2, first
    assert rd.read_until(b"\r\n\r\n", timeout=5.0) == b"HTTP/1.1 100 Continue\r\n\r\n"
    rd.sock.sendall(body)
    assert rd.read_response().status == 201


def test_expect_100_continue_with_curl(srv):
    body = json.dumps({"id": "curl100", "name": "c", "total_steps": 2})
    out = subprocess.run(
        ["curl", "-sS", "-v", "--max-time", "20", "-H", "Expect: 100-continue",
         "-H", "Content-Type: application/json", "--data-binary", body,
         "http://127.0.0.1:%d%s" % (srv.port, API)],
        capture_output=True, text=True, timeout=30)
    assert "< HTTP/1.1 100 Continue" in out.stderr, out.stderr
    assert "< HTTP/1.1 201 Created" in out.stderr, out.stderr
    assert srv.get("curl100")["seq"] == 1


def test_expect_other_417(srv):
    rd = SockReader(connect(srv.port))
    rd.sock.sendall(http_request_bytes("POST", API, srv.port, {
        "Content-Type": "application/json", "Content-Length": "2", "Expect": "teapot"}))
    assert_error(rd.read_response(), 417, "expectation_failed")


def test_expect_100_without_body_and_http10_get_no_interim(srv):
    rd = SockReader(connect(srv.port))
    rd.sock.sendall(http_request_bytes("GET", "/healthz", srv.port, {"Expect": "100-continue"}))
    r = rd.read_response()
    assert r.status == 200, r
    body = b'{"name":"x","total_steps":1}'
    (r,), _ = raw_http(srv.port, b"POST " + API.encode() + b" HTTP/1.0\r\nExpect: 100-continue\r\n"
                       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                       % (len(body), body))
    assert r.status == 201, r


# ---------------------------------------------------------------- HEAD (RFC 9110 §9.3.2)

@pytest.mark.parametrize("path", ["/healthz", API, API + "?limit=1", API + "/wf",
                                  API + "/wf/history", API + "/nope", API + "?limit=0",
                                  "/metrics", "/flowcast.js", "/", "/readyz", "/style.css", "/app.js",
                                  API + "/wf?wait_since=999&timeout=30"] + UPGRADE_ROUTES)
def test_head_answers_get_status_and_headers_without_body(srv, path):
    p = srv.port
    (g,), _ = raw_http(p, http_request_bytes("GET", path.replace("wait_since=999&", ""), p))
    rd = SockReader(connect(p))
    # HEAD then GET pipelined: if HEAD sent a body, the second answer would be garbage.
    rd.sock.sendall(http_request_bytes("HEAD", path, p) + http_request_bytes("GET", "/healthz", p))
    h = rd.read_response(timeout=5.0, head_only=True)
    assert h.status == g.status, (h, g)
    assert h.header("content-type") == g.header("content-type")
    if path != "/metrics":  # the metrics text changes between the two requests
        assert h.header("content-length") == g.header("content-length"), (h, g)
    after = rd.read_response()
    assert after.status == 200 and after.json() == {"status": "ok"}, after


def test_head_in_allow_and_other_methods_still_405(srv):
    r = srv.request("PUT", API + "/wf", {"name": "x"})
    assert_error(r, 405, "method_not_allowed")
    assert "HEAD" in r.header("allow")


@pytest.mark.parametrize("path,status", [
    (API + "/wf/events", 200), ("/api/events?workflow_ids=wf", 200),
    (API + "/nope/events", 404), ("/api/events?workflow_ids=nope", 404), ("/api/events", 400)])
def test_head_on_event_streams(srv, path, status):
    """HEAD on an SSE route: the stream's status and headers, then the end
    of the (connection-delimited) body at once; no stream is opened."""
    rd = SockReader(connect(srv.port))
    rd.sock.sendall(http_request_bytes("HEAD", path, srv.port))
    h = rd.read_response(timeout=5.0, head_only=True)
    assert h.status == status, h
    if status == 200:
        assert h.header("content-type") == "text/event-stream", h
        assert rd.read_to_eof(timeout=5.0) == b""  # closed, nothing after the head
