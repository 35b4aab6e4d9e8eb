"""Tokens expire mid-stream (issue 9 section 1): every transport opened with a
JWT ends at the token's exp (within a second) with the close code, final
event or 401 of the protocol; the multi WebSocket refreshes its token in place
({"op":"auth"}) and may authenticate with its first message. Tokens are
minted with Debian's python3-jwt, independent of the server's libjwt."""
import json
import os
import socket
import threading
import time

import jwt
import pytest

from fc_helpers import (HOST, OP_TEXT, RawWS, SockReader, assert_error, build_frame, connect,
                        http_request_bytes, parse_metrics)

STATIC = "static-operator-token-0123456789"
SECRET = "e" * 20 + "-hmac-secret-for-expiry-tests-0123"
REQUEST_TIMEOUT = 3
TTL = 3  # seconds a short token lives; exp is a whole second, so 2..3 s from now


def mint(scope="read", workflows=None, exp=None, ttl=3600):
    now = int(time.time())
    c = {"scope": scope, "iat": now, "exp": exp if exp is not None else now + ttl}
    if workflows is not None:
        c["workflows"] = workflows
    return jwt.encode(c, SECRET, algorithm="HS256"), c["exp"]


def short(scope="read", workflows=None):
    """A token expiring in TTL seconds (2..3 s from now) and its exp."""
    return mint(scope, workflows, ttl=TTL)


def bearer(token):
    return {"Authorization": "Bearer " + token}


def assert_ended_at(t_end, exp):
    """Ended at exp: not before exp - 0.5 s, not after exp + 1.5 s."""
    assert t_end >= exp - 0.5, "ended %.2f s before exp" % (exp - t_end)
    assert t_end <= exp + 1.5, "ended %.2f s after exp" % (t_end - exp)


@pytest.fixture(scope="module")
def srv(module_server_factory, tmp_path_factory):
    key = tmp_path_factory.mktemp("expkey") / "hmac.key"
    key.write_text(SECRET + "\n")
    s = module_server_factory("--jwt-key", str(key), "--api-token", STATIC,
                              "--request-timeout", REQUEST_TIMEOUT, "--log-level", "debug")
    for wid in ("deploy-a", "deploy-b", "build-c"):
        r = s.request("POST", "/api/workflows", {"id": wid, "name": wid, "total_steps": 1000})
        assert r.status == 201, r
    return s


def patch(srv, wid, **fields):
    r = srv.request("PATCH", "/api/workflows/" + wid, fields or {"message": "m"})
    assert r.status == 200, r
    return r.json()


def metrics(srv):
    r = srv.request("GET", "/metrics", headers=bearer(STATIC))
    assert r.status == 200, r
    return parse_metrics(r.body.decode())


def ws_text_or_close(ws, timeout):
    """The next text message as JSON, or ("close", code, reason, time)."""
    while True:
        f = ws.recv_frame(timeout)
        if f.opcode == OP_TEXT:
            return f.json()
        if f.opcode == 0x8:
            return ("close", f.close_code, f.payload[2:].decode(), time.time())


def sse_open(srv, path, token):
    s = connect(srv.port)
    s.sendall(http_request_bytes("GET", path, srv.port, bearer(token)))
    rd = SockReader(s)
    r = rd.read_response(head_only=True)
    assert r.status == 200, r
    return rd


# ------------------------------------------------------------ each transport ends at exp

def test_single_websocket_closes_4401_at_exp(srv):
    token, exp = short()
    ws = RawWS.open(srv, "/api/workflows/deploy-a/updates", bearer(token))
    assert ws.recv_json()["workflow_id"] == "deploy-a"
    patch(srv, "deploy-a")
    assert ws.recv_json()["workflow_id"] == "deploy-a"
    f = ws.recv_close(timeout=TTL + 3)
    t_end = time.time()
    assert f.close_code == 4401 and f.payload[2:] == b"token expired", f
    assert_ended_at(t_end, exp)
    ws.send_close(4401)
    assert ws.rd.at_eof(3)


def test_multi_websocket_says_token_expired_then_closes_4401(srv):
    token, exp = short()
    ws = RawWS.open(srv, "/api/updates", bearer(token))
    ws.send_json({"op": "subscribe", "workflow_ids": ["deploy-a"]})
    assert ws.recv_json()["op"] == "subscribed"
    assert ws.recv_json()["workflow_id"] == "deploy-a"
    m = ws.recv_json(timeout=TTL + 3)
    t_end = time.time()
    assert m["op"] == "error" and m["code"] == "token_expired", m
    assert_ended_at(t_end, exp)
    f = ws.recv_close(timeout=2)
    assert f.close_code == 4401 and f.payload[2:] == b"token expired", f


@pytest.mark.parametrize("path", ["/api/workflows/deploy-a/events",
                                  "/api/events?workflow_ids=deploy-a,deploy-b"])
def test_sse_ends_with_error_event_at_exp(srv, path):
    token, exp = short()
    rd = sse_open(srv, path, token)
    rd.read_until(b"\n\n")  # the current state
    final = b'event: error\ndata: {"code":"token_expired"}\n\n'
    got = rd.read_until(final, timeout=TTL + 3)
    t_end = time.time()
    assert_ended_at(t_end, exp)
    assert b"token_expired" not in got[:-len(final)]
    assert rd.read_to_eof(2) == b""  # the response ends right after it


def test_long_poll_held_across_exp_is_answered_401_at_exp(srv):
    token, exp = short()
    seq = srv.request("GET", "/api/workflows/deploy-b", headers=bearer(STATIC)).json()["seq"]
    s = connect(srv.port)
    s.sendall(http_request_bytes("GET", "/api/workflows/deploy-b?wait_since=%d&timeout=30" % seq,
                                 srv.port, bearer(token)))
    rd = SockReader(s)
    r = rd.read_response(timeout=TTL + 3)
    t_end = time.time()
    assert_ended_at(t_end, exp)
    assert_error(r, 401, "token_expired")
    assert r.header("www-authenticate") == 'Bearer error="invalid_token"'
    # The connection stays usable: the next request with a fresh token is served.
    s.sendall(http_request_bytes("GET", "/api/workflows/deploy-b", srv.port,
                                 bearer(mint()[0])))
    assert rd.read_response().status == 200
    s.close()


def test_rest_with_expired_token_is_401_token_expired(srv):
    token, _ = mint(exp=int(time.time()) - 1)
    r = srv.request("GET", "/api/workflows/deploy-a", headers=bearer(token))
    assert_error(r, 401, "token_expired")
    assert r.header("www-authenticate") == 'Bearer error="invalid_token"'
    assert "deploy" not in r.body.decode()
    # Any other bad token stays a bare "unauthorized".
    r = srv.request("GET", "/api/workflows/deploy-a", headers=bearer(token[:-3] + "AAA"))
    assert_error(r, 401, "unauthorized")
    assert r.header("www-authenticate") == "Bearer"


def test_static_token_streams_never_expire(srv):
    ws = RawWS.open(srv, "/api/updates", bearer(STATIC))
    ws.send_json({"op": "auth", "token": STATIC})
    assert ws.recv_json() == {"op": "authenticated", "exp": None}
    ws.send_json({"op": "subscribe", "workflow_ids": ["deploy-a"]})
    assert ws.recv_json()["op"] == "subscribed"
    ws.recv_json()
    ws.send_close()


# ------------------------------------------------------------ multi WebSocket: op auth

def test_refresh_in_place_before_exp_keeps_the_stream_and_loses_nothing(srv):
    token, exp = short()
    ws = RawWS.open(srv, "/api/updates", bearer(token))
    ws.send_json({"op": "subscribe", "workflow_ids": ["deploy-b"]})
    assert ws.recv_json()["op"] == "subscribed"
    last = ws.recv_json()["seq"]
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            patch(srv, "deploy-b")
            time.sleep(0.05)

    th = threading.Thread(target=writer)
    th.start()
    refreshed = False
    new_exp = None
    try:
        while time.time() < exp + 2:
            if not refreshed and time.time() > exp - 1.5:
                new_token, new_exp = mint(ttl=120)
                ws.send_json({"op": "auth", "token": new_token})
                refreshed = True
            m = ws.recv_json(timeout=3)
            if m.get("op") == "authenticated":
                assert m["exp"] == new_exp, m
                continue
            assert "op" not in m, m
            assert m["seq"] == last + 1, (m["seq"], last)  # nothing lost, nothing repeated
            last = m["seq"]
    finally:
        stop.set()
        th.join()
    assert refreshed
    # Still open, still delivering, past the old exp.
    seq = patch(srv, "deploy-b")["seq"]
    while last < seq:
        m = ws.recv_json()
        assert m["seq"] == last + 1
        last = m["seq"]
    ws.send_close()


def test_scope_shrink_ends_out_of_scope_subscriptions_only(srv):
    token, _ = mint(ttl=60)
    ws = RawWS.open(srv, "/api/updates", bearer(token))
    ws.send_json({"op": "subscribe", "workflow_ids": ["deploy-a", "build-c"]})
    assert ws.recv_json()["op"] == "subscribed"
    ws.recv_json()
    ws.recv_json()
    narrow, nexp = mint(workflows=["deploy-*"], ttl=60)
    ws.send_json({"op": "auth", "token": narrow})
    assert ws.recv_json() == {"op": "authenticated", "exp": nexp}
    m = ws.recv_json()
    assert m["op"] == "error" and m["code"] == "forbidden" and m["workflow_id"] == "build-c", m
    patch(srv, "build-c", message="secret")
    patch(srv, "deploy-a", message="public")
    m = ws.recv_json()
    assert m["workflow_id"] == "deploy-a" and m["message"] == "public", m
    # Subscribing it again is refused under the new token.
    ws.send_json({"op": "subscribe", "workflow_ids": ["build-c"]})
    m = ws.recv_json()
    assert m["code"] == "forbidden" and m["workflow_id"] == "build-c", m
    ws.send_close()


def test_subscribe_all_after_a_shrink_sees_only_the_new_scope(srv):
    token, _ = mint(ttl=60)
    ws = RawWS.open(srv, "/api/updates", bearer(token))
    ws.send_json({"op": "subscribe_all"})
    assert ws.recv_json() == {"op": "subscribed", "all": True}
    patch(srv, "build-c", message="before")
    assert ws.recv_json()["workflow_id"] == "build-c"
    narrow, nexp = mint(workflows=["deploy-*"], ttl=60)
    ws.send_json({"op": "auth", "token": narrow})
    assert ws.recv_json() == {"op": "authenticated", "exp": nexp}
    patch(srv, "build-c", message="after")
    r = srv.request("POST", "/api/workflows", {"id": "build-new", "name": "x", "total_steps": 1})
    assert r.status == 201
    r = srv.request("POST", "/api/workflows", {"id": "deploy-new", "name": "x", "total_steps": 1})
    assert r.status == 201
    patch(srv, "deploy-a", message="seen")
    got = [ws.recv_json()["workflow_id"], ws.recv_json()["workflow_id"]]
    assert got == ["deploy-new", "deploy-a"], got
    with pytest.raises(socket.timeout):
        ws.recv_json(timeout=0.5)


def test_bad_refresh_keeps_the_old_token_until_its_own_exp(srv):
    token, exp = short()
    ws = RawWS.open(srv, "/api/updates", bearer(token))
    ws.send_json({"op": "subscribe", "workflow_ids": ["deploy-a"]})
    assert ws.recv_json()["op"] == "subscribed"
    ws.recv_json()
    other = jwt.encode({"scope": "read", "exp": int(time.time()) + 60}, "x" * 40,
                       algorithm="HS256")
    expired, _ = mint(exp=int(time.time()) - 1)
    for bad in ("garbage", other, expired, 42, None):
        ws.send_json({"op": "auth", "token": bad})
        m = ws.recv_json()
        assert m["op"] == "error" and m["code"] == "unauthorized", m
    write_only, _ = mint(scope="write", ttl=60)
    ws.send_json({"op": "auth", "token": write_only})
    m = ws.recv_json()
    assert m["op"] == "error" and m["code"] == "forbidden" and "workflow_id" not in m, m
    # The old token is still in force: changes arrive ...
    patch(srv, "deploy-a", message="still")
    assert ws.recv_json()["message"] == "still"
    # ... until its own exp.
    m = ws.recv_json(timeout=TTL + 3)
    assert_ended_at(time.time(), exp)
    assert m["code"] == "token_expired", m
    assert ws.recv_close(2).close_code == 4401
    # Even at debug level no token of an auth op reaches the log.
    log = open(srv.log_path, "rb").read()
    for t in (token, other, expired, write_only):
        assert t.encode() not in log and t.split(".")[2].encode() not in log


def test_first_message_auth(srv):
    ws = RawWS.open(srv, "/api/updates", {"Authorization": None})  # no credential: accepted
    for op in ({"op": "subscribe", "workflow_ids": ["deploy-a"]}, {"op": "subscribe_all"},
               {"op": "unsubscribe", "workflow_ids": ["deploy-a"]}):
        ws.send_json(op)
        m = ws.recv_json()
        assert m["op"] == "error" and m["code"] == "unauthorized", m
    ws.send_json({"op": "auth", "token": "garbage"})
    assert ws.recv_json()["code"] == "unauthorized"
    patch(srv, "deploy-a", message="unseen")  # nothing is delivered before auth
    token, exp = mint(workflows=["deploy-*"], ttl=60)
    ws.send_json({"op": "auth", "token": token})
    assert ws.recv_json() == {"op": "authenticated", "exp": exp}
    ws.send_json({"op": "subscribe", "workflow_ids": ["deploy-a", "build-c"]})
    m = ws.recv_json()
    assert m["code"] == "forbidden" and m["workflow_id"] == "build-c", m
    assert ws.recv_json() == {"op": "subscribed", "workflow_ids": ["deploy-a"]}
    m = ws.recv_json()
    assert m["workflow_id"] == "deploy-a" and m["message"] == "unseen", m
    # Authenticated past --request-timeout: the deadline is gone.
    time.sleep(REQUEST_TIMEOUT + 1)
    patch(srv, "deploy-a", message="later")
    assert ws.recv_json()["message"] == "later"
    ws.send_close()


def test_no_auth_within_request_timeout_closes_4401(srv):
    t0 = time.time()
    ws = RawWS.open(srv, "/api/updates", {"Authorization": None})
    f = ws.recv_close(timeout=REQUEST_TIMEOUT + 3)
    took = time.time() - t0
    assert f.close_code == 4401, f
    assert REQUEST_TIMEOUT - 0.5 <= took <= REQUEST_TIMEOUT + 1.5, took


def test_a_credential_that_fails_is_still_refused_at_the_upgrade(srv):
    for hdr in (bearer("garbage"), bearer(mint(exp=int(time.time()) - 1)[0])):
        ws = RawWS(srv.port)
        r = ws.handshake("/api/updates", hdr)
        assert r.status == 401, r


@pytest.fixture
def flood_srv(server_factory, tmp_path):
    """Its own server, with ASan's quarantine off so freed memory is not
    held back and RSS shows what the server keeps."""
    key = tmp_path / "hmac.key"
    key.write_text(SECRET + "\n")
    s = server_factory("--jwt-key", str(key), "--api-token", STATIC,
                       env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:"
                                            "quarantine_size_mb=0"})
    r = s.request("POST", "/api/workflows", {"id": "deploy-a", "name": "a", "total_steps": 9})
    assert r.status == 201, r
    return s


def test_auth_op_flood_stays_bounded_and_others_are_served(flood_srv):
    srv = flood_srv
    token, _ = mint(ttl=600)
    rss0 = _rss_kb(srv)
    ws = RawWS.open(srv, "/api/updates", {"Authorization": None})
    frame = build_frame(OP_TEXT, json.dumps({"op": "auth", "token": token}).encode())
    done = threading.Event()

    def flood():
        try:
            for _ in range(10):
                ws.send_raw(frame * 1000)
        finally:
            done.set()

    th = threading.Thread(target=flood)
    th.start()
    # A second client is served promptly meanwhile.
    worst = 0.0
    while not done.is_set():
        t = time.monotonic()
        r = srv.request("GET", "/api/workflows/deploy-a", headers=bearer(token), timeout=5)
        assert r.status == 200
        worst = max(worst, time.monotonic() - t)
    th.join()
    other = RawWS.open(srv, "/api/updates", bearer(token))
    other.send_json({"op": "subscribe", "workflow_ids": ["deploy-a"]})
    t = time.monotonic()
    assert other.recv_json()["op"] == "subscribed"
    worst = max(worst, time.monotonic() - t)
    assert worst < 2.0, worst
    # Every auth was answered, in order, on the flooding connection.
    for _ in range(10000):
        m = ws.recv_json(timeout=10)
        assert m["op"] == "authenticated", m
    ws.send_close()
    other.send_close()
    assert _rss_kb(srv) - rss0 < 64 * 1024, (rss0, _rss_kb(srv))
    assert srv.alive()


def _rss_kb(srv):
    with open("/proc/%d/status" % srv.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_metrics_count_expiries_refreshes_and_timeouts(srv):
    """Each counter moves by what this test itself causes, so it holds when
    run alone or in any order."""
    before = metrics(srv)
    token, exp = short()
    single = RawWS.open(srv, "/api/workflows/build-c/updates", bearer(token))
    sse = sse_open(srv, "/api/workflows/build-c/events", token)
    seq = srv.request("GET", "/api/workflows/build-c", headers=bearer(STATIC)).json()["seq"]
    poll = connect(srv.port)
    poll.sendall(http_request_bytes("GET", "/api/workflows/build-c?wait_since=%d&timeout=30" % seq,
                                    srv.port, bearer(token)))
    multi = RawWS.open(srv, "/api/updates", bearer(mint(ttl=60)[0]))
    multi.send_json({"op": "auth", "token": mint(ttl=120)[0]})
    assert multi.recv_json()["op"] == "authenticated"
    multi.send_json({"op": "auth", "token": "garbage"})
    assert multi.recv_json()["code"] == "unauthorized"
    silent = RawWS.open(srv, "/api/updates", {"Authorization": None})
    assert silent.recv_close(timeout=REQUEST_TIMEOUT + 3).close_code == 4401
    assert single.recv_close(timeout=TTL + 3).close_code == 4401
    sse.read_until(b'event: error\ndata: {"code":"token_expired"}\n\n', timeout=TTL + 3)
    assert_error(SockReader(poll).read_response(timeout=TTL + 3), 401, "token_expired")
    assert time.time() >= exp - 0.5
    after = metrics(srv)

    def grew(name):
        return after.get(name, 0) - before.get(name, 0)
    assert grew('flowcast_auth_expired_streams_total{transport="websocket"}') >= 1
    assert grew('flowcast_auth_expired_streams_total{transport="sse"}') >= 1
    assert grew('flowcast_auth_expired_streams_total{transport="longpoll"}') >= 1
    assert grew('flowcast_auth_refreshes_total{result="ok"}') >= 1
    assert grew('flowcast_auth_refreshes_total{result="refused"}') >= 1
    assert grew("flowcast_auth_timeouts_total") >= 1
    multi.send_close()
    poll.close()


def test_without_jwt_key_nothing_expires_and_auth_only_checks_the_static_token(server_factory,
                                                                             tmp_path):
    s = server_factory("--api-token", STATIC)
    s.create(id="plain")
    token, _ = mint(ttl=1)
    ws = RawWS.open(s, "/api/updates")  # accepted without a credential: first-message auth
    ws.send_json({"op": "auth", "token": token})  # not a credential without --jwt-key
    assert ws.recv_json()["code"] == "unauthorized"
    ws.send_json({"op": "auth", "token": STATIC})
    assert ws.recv_json() == {"op": "authenticated", "exp": None}
    ws.send_json({"op": "subscribe", "workflow_ids": ["plain"]})
    assert ws.recv_json()["op"] == "subscribed"
    ws.recv_json()
    time.sleep(2.5)  # past the JWT's exp: nothing ends
    s.patch("plain", message="still")
    assert ws.recv_json()["message"] == "still"
    ws.send_close()
    open_ = server_factory(db=str(tmp_path / "open.db"))
    ws = RawWS.open(open_, "/api/updates")
    ws.send_json({"op": "auth", "token": "anything"})
    assert ws.recv_json() == {"op": "authenticated", "exp": None}
    ws.send_close()
