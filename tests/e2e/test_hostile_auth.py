"""Hostile and unlucky token holders against stream expiry (issue 9): tokens
whose exp is far in the future, huge, a float, negative or not a number;
nbf in the future on {"op":"auth"}; a refresh for another subject; refresh
floods; a token expiring in the middle of a burst of updates. Tokens are
minted with Debian's python3-jwt."""
import json
import threading
import time

import jwt
import pytest

from fc_helpers import OP_TEXT, KeepAliveClient, RawWS, build_frame

STATIC = "static-operator-token-0123456789"
SECRET = "h" * 20 + "-hmac-secret-for-hostile-auth-0123"
# The expiry wheel keeps a deadline in 32 bits of 250 ms ticks, compared
# across the wrap: 2**29 s (17 years) and 2**30 s (34 years) from now are
# where a deadline used to look past (or wrap) and end the stream at once.
HALF_WRAP_S = 2**31 // 4
WRAP_S = 2**32 // 4


def mint(exp, scope="read", **claims):
    c = {"scope": scope, "exp": exp}
    c.update(claims)
    return jwt.encode(c, SECRET, algorithm="HS256")


def bearer(token):
    return {"Authorization": "Bearer " + token}


@pytest.fixture(scope="module")
def srv(module_server_factory, tmp_path_factory):
    key = tmp_path_factory.mktemp("hkey") / "hmac.key"
    key.write_text(SECRET + "\n")
    s = module_server_factory("--jwt-key", str(key), "--api-token", STATIC,
                              "--request-timeout", 3)
    for wid in ("deploy-a", "build-b"):
        r = s.request("POST", "/api/workflows", {"id": wid, "name": wid, "total_steps": 100000})
        assert r.status == 201, r
    return s


def patch(srv, wid):
    r = srv.request("PATCH", "/api/workflows/" + wid, {"message": "m"})
    assert r.status == 200, r
    return r.json()["seq"]


def next_update(ws, timeout=5):
    """The next update (skipping op replies); fails on a close frame."""
    while True:
        f = ws.recv_frame(timeout)
        assert f.opcode == OP_TEXT, (f.opcode, f.payload)
        m = f.json()
        if "seq" in m:
            return m


# ---------------------------------------------------------------- exp far away

def test_exp_17_or_34_years_away_does_not_end_streams_early(srv):
    """A deadline past 31 or 32 bits of wheel ticks looked past or wrapped
    and ended the stream within seconds (4401 token expired with a token
    good for 17 or 34 years)."""
    exp = int(time.time()) + WRAP_S - 5
    token = mint(exp)
    single = RawWS.open(srv, "/api/workflows/deploy-a/updates", bearer(token))
    single.recv_json()
    multi = RawWS.open(srv, "/api/updates", bearer(mint(int(time.time()) + HALF_WRAP_S + 5)))
    multi.send_json({"op": "subscribe", "workflow_ids": ["deploy-a"]})
    assert multi.recv_json()["op"] == "subscribed"
    multi.recv_json()
    refreshed = RawWS.open(srv, "/api/updates", bearer(STATIC))
    refreshed.send_json({"op": "auth", "token": mint(exp + 7)})
    assert refreshed.recv_json() == {"op": "authenticated", "exp": exp + 7}
    refreshed.send_json({"op": "subscribe", "workflow_ids": ["deploy-a"]})
    assert refreshed.recv_json()["op"] == "subscribed"
    refreshed.recv_json()
    time.sleep(6.5)  # more than one round of the wheel (20 ticks of 250 ms)
    seq = patch(srv, "deploy-a")
    for ws in (single, multi, refreshed):
        assert next_update(ws)["seq"] == seq
        ws.send_close()


@pytest.mark.parametrize("exp", [1e17, 2**62, 9.1e18, 9999999999.5])
def test_huge_or_float_exp_is_a_long_lived_token_not_a_crash(srv, exp):
    """exp * 1000 overflowed int64 (UBSan: signed integer overflow, the
    server aborted) on the upgrade and on op auth."""
    token = mint(exp)
    ws = RawWS.open(srv, "/api/workflows/deploy-a/updates", bearer(token))
    ws.recv_json()
    multi = RawWS.open(srv, "/api/updates", bearer(STATIC))
    multi.send_json({"op": "auth", "token": token})
    m = multi.recv_json()
    assert m["op"] == "authenticated" and m["exp"] == int(exp), m
    multi.send_json({"op": "subscribe", "workflow_ids": ["deploy-a"]})
    assert multi.recv_json()["op"] == "subscribed"
    multi.recv_json()
    seq = patch(srv, "deploy-a")
    assert next_update(ws)["seq"] == seq
    assert next_update(multi)["seq"] == seq
    ws.send_close()
    multi.send_close()
    assert srv.alive()


@pytest.mark.parametrize("exp", [-1, 0, -9.1e18, "9999999999", None, [1], 1e300, float("nan")])
def test_odd_exp_is_refused_everywhere(srv, exp):
    claims = {"scope": "read", "exp": exp}
    try:
        token = jwt.encode(claims, SECRET, algorithm="HS256")
    except (TypeError, ValueError):
        pytest.skip("python3-jwt cannot encode %r" % (exp,))
    r = srv.request("GET", "/api/workflows/deploy-a", headers=bearer(token))
    assert r.status == 401, r
    ws = RawWS(srv.port)
    assert ws.handshake("/api/workflows/deploy-a/updates", bearer(token)).status == 401
    multi = RawWS.open(srv, "/api/updates", bearer(STATIC))
    multi.send_json({"op": "auth", "token": token})
    m = multi.recv_json()
    assert m["op"] == "error" and m["code"] == "unauthorized", m
    multi.send_close()
    assert srv.alive()


# ---------------------------------------------------------------- op auth edge cases

def test_op_auth_with_nbf_in_the_future_is_refused_and_the_old_token_stays(srv):
    now = int(time.time())
    multi = RawWS.open(srv, "/api/updates", bearer(mint(now + 3600)))
    multi.send_json({"op": "auth", "token": mint(now + 7200, nbf=now + 600)})
    m = multi.recv_json()
    assert m["op"] == "error" and m["code"] == "unauthorized", m
    multi.send_json({"op": "subscribe", "workflow_ids": ["deploy-a"]})
    assert multi.recv_json()["op"] == "subscribed"
    multi.send_close()


def test_op_auth_for_another_subject_replaces_the_grant(srv):
    """The server checks what a token allows, not who holds it: a refresh
    with another subject's token is a new grant (its scope and exp), as a
    reconnect with it would be. Documented in docs/security.md."""
    now = int(time.time())
    multi = RawWS.open(srv, "/api/updates", bearer(mint(now + 3600, sub="alice")))
    multi.send_json({"op": "subscribe", "workflow_ids": ["deploy-a", "build-b"]})
    assert multi.recv_json()["op"] == "subscribed"
    multi.recv_json(), multi.recv_json()
    multi.send_json({"op": "auth", "token": mint(now + 60, sub="bob",
                                                 workflows=["build-*"])})
    got = [multi.recv_json(), multi.recv_json()]
    assert got[0] == {"op": "authenticated", "exp": now + 60}, got
    assert got[1]["op"] == "error" and got[1]["code"] == "forbidden", got
    assert got[1]["workflow_id"] == "deploy-a", got
    seq_a = patch(srv, "deploy-a")
    seq_b = patch(srv, "build-b")
    m = next_update(multi)
    assert (m["workflow_id"], m["seq"]) == ("build-b", seq_b), (m, seq_a)
    multi.send_close()


def test_op_auth_flood_is_answered_in_order_and_bounded(srv):
    """A thousand refreshes in one write: each answered, in order, the
    last one in force; the server stays responsive."""
    now = int(time.time())
    multi = RawWS.open(srv, "/api/updates", bearer(mint(now + 3600)))
    frames = []
    for i in range(1000):
        tok = mint(now + 100 + i) if i % 3 else "not.a.token"
        frames.append(json.dumps({"op": "auth", "token": tok}))
    multi.send_raw(b"".join(build_frame(OP_TEXT, f.encode()) for f in frames))
    for i in range(1000):
        m = multi.recv_json(timeout=20)
        if i % 3:
            assert m == {"op": "authenticated", "exp": now + 100 + i}, (i, m)
        else:
            assert m["op"] == "error" and m["code"] == "unauthorized", (i, m)
    assert srv.request("GET", "/healthz").status == 200
    multi.send_close()


# ---------------------------------------------------------------- expiry mid-burst

def test_token_expiring_during_a_burst_sends_nothing_after_the_close(srv):
    """Updates stream as fast as a writer can make them while the token
    expires: the multi WebSocket ends with token_expired then 4401; every
    frame before is a whole update (nothing half-sent) and none follows."""
    exp = int(time.time()) + 2
    ws = RawWS.open(srv, "/api/updates", bearer(mint(exp)))
    ws.send_json({"op": "subscribe_all"})
    assert ws.recv_json()["op"] == "subscribed"
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            try:
                patch(srv, "build-b")
            except AssertionError:
                return

    th = threading.Thread(target=writer)
    th.start()
    try:
        seen, last = 0, 0
        while True:
            f = ws.recv_frame(timeout=exp - time.time() + 5)
            if f.opcode == 0x8:
                assert f.close_code == 4401, f
                break
            m = f.json()
            if m.get("op") == "error":
                assert m["code"] == "token_expired", m
                f = ws.recv_frame(timeout=3)
                assert f.opcode == 0x8 and f.close_code == 4401, (f.opcode, f.payload)
                break
            assert m["seq"] > last, m
            last = m["seq"]
            seen += 1
        assert time.time() < exp + 3
        assert seen > 0
        ws.send_close(4401)
        assert ws.rd.read_to_eof(3) == b""  # nothing after the close frame
    finally:
        stop.set()
        th.join(10)


def test_scope_shrink_while_subscribe_all_delivers_a_burst(srv):
    """op auth narrowing the scope in the middle of a burst on two
    workflows: once "authenticated" is read, no update of a workflow
    outside the new scope follows; the allowed one goes on."""
    now = int(time.time())
    ws = RawWS.open(srv, "/api/updates", bearer(mint(now + 3600)))
    ws.send_json({"op": "subscribe_all"})
    assert ws.recv_json()["op"] == "subscribed"
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            for wid in ("deploy-a", "build-b"):
                try:
                    patch(srv, wid)
                except AssertionError:
                    return

    th = threading.Thread(target=writer)
    th.start()
    try:
        time.sleep(0.3)
        ws.send_json({"op": "auth", "token": mint(now + 3600, workflows=["build-*"])})
        after, build_seen = False, 0
        deadline = time.time() + 3
        while time.time() < deadline:
            m = ws.recv_json(timeout=5)
            if m.get("op") == "authenticated":
                after = True
                continue
            assert "op" not in m, m
            if after:
                assert m["workflow_id"] == "build-b", m
                build_seen += 1
        assert after and build_seen > 0
    finally:
        stop.set()
        th.join(10)
    ws.send_close()


def output_pending(srv):
    r = srv.request("GET", "/metrics", headers=bearer(STATIC))
    for line in r.body.decode().splitlines():
        if line.startswith("flowcast_output_bytes "):
            return float(line.split()[1]) > 0
    raise AssertionError("no flowcast_output_bytes")


def test_nothing_follows_the_close_frame_while_it_waits_to_be_written(srv):
    """A subscriber that stopped reading sends its close; the echo waits
    behind the queued changes. A change of a workflow with nothing queued,
    then the token's exp, came after the close frame (an update, then
    token_expired): RFC 6455 allows no data frame after a close."""
    ids = ["cl-%d" % i for i in range(60)]
    for wid in ids + ["cl-fresh"]:
        r = srv.request("POST", "/api/workflows", {"id": wid, "name": wid, "total_steps": 10**9})
        assert r.status == 201, r
    exp = int(time.time()) + 9
    ws = RawWS.open(srv, "/api/updates", bearer(mint(exp)), rcvbuf=4096)
    ws.send_json({"op": "subscribe", "workflow_ids": ids + ["cl-fresh"]})
    kc = KeepAliveClient(srv)
    n = 0
    deadline = time.time() + 6
    while not (n % 50 == 0 and n and output_pending(srv)):  # the socket takes no more
        assert time.time() < deadline, "the subscriber's output never backed up"
        status, body = kc.patch(ids[n % len(ids)], message="y" * 3000)
        assert status == 200, body
        n += 1
    kc.close()
    ws.send_close(1000)
    time.sleep(0.5)  # the server has read it and queued its echo
    patch(srv, "cl-fresh")
    time.sleep(max(0.0, exp - time.time()) + 1)  # and the token has expired
    frames = []
    try:
        while True:
            frames.append(ws.recv_frame(3))
    except (EOFError, OSError):
        pass
    ops = [f.opcode for f in frames]
    assert 0x8 in ops, ops[-5:]
    i = ops.index(0x8)
    assert frames[i].close_code == 1000, frames[i].payload
    assert frames[i + 1:] == [], [(f.opcode, f.payload[:60]) for f in frames[i + 1:]]
