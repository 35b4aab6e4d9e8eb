"""Per-client limits (issue 9, section 4): --max-streams-per-client refuses
the N+1-th WebSocket, SSE or held long-poll stream of one client address, and
of one token subject (JWT "sub") wherever it connects from, with 503 while
another address (127.0.0.2) or subject is still served; --write-rate answers
changes over the rate with 429 and Retry-After, per token subject when the
request has one, per address otherwise. Every refusal is counted by reason
in flowcast_refused_total, and the per-client table stays bounded."""

import base64
import json
import os
import socket
import threading
import time

import jwt
import pytest

from fc_helpers import HOST, RawWS, SockReader, assert_error, http_request_bytes, wait_for

SINGLE = "/api/workflows/wf/updates"
EVENTS = "/api/workflows/wf/events"


def _connect_from(src, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect((HOST, port))
    return s


def open_stream(port, kind, src="127.0.0.1", token=None):
    """Opens a WebSocket ("ws") or SSE ("sse") stream from address src (with
    a bearer token when given); returns (response, reader). The reader's
    socket stays open."""
    rd = SockReader(_connect_from(src, port))
    auth = {"Authorization": "Bearer " + token} if token else {}
    if kind == "ws":
        req = http_request_bytes("GET", SINGLE, port, dict(auth, **{
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}))
    else:
        req = http_request_bytes("GET", EVENTS, port, dict(auth, Accept="text/event-stream"))
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


# ---------------------------------------------------------------- per token subject

SECRET = "subject-limits-hmac-secret-0123456789abcdef"


def mint(sub=None, scope="read write admin"):
    now = int(time.time())
    claims = {"scope": scope, "iat": now, "exp": now + 3600}
    if sub is not None:
        claims["sub"] = sub
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def jwt_server(server_factory, tmp_path):
    """start(*flags) -> a --jwt-key server with workflow "wf" (start.key:
    the key file)."""
    key = tmp_path / "hmac.key"
    key.write_text(SECRET)

    def start(*flags):
        s = server_factory("--jwt-key", str(key), *flags)
        s.token = mint("operator")
        s.create(id="wf")
        return s
    start.key = str(key)
    return start


def send(port, method, path, token=None, body=None, src="127.0.0.1", read=True):
    """One request from address src on its own connection; returns the
    response (read=True) or the reader, its answer not read yet."""
    rd = SockReader(_connect_from(src, port))
    h = {"Authorization": "Bearer " + token} if token else {}
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        h.update({"Content-Type": "application/json", "Content-Length": str(len(data))})
    rd.sock.sendall(http_request_bytes(method, path, port, h, data))
    if not read:
        return rd
    try:
        return rd.read_response()
    finally:
        rd.sock.close()


def test_streams_per_subject_from_two_addresses(jwt_server):
    """A subject's N streams count together whichever address they come
    from: the N+1-th is refused though neither address is at its limit,
    while another subject and a token without sub are served."""
    s = jwt_server("--max-streams-per-client", "3")
    alice = mint("alice")
    held = []
    for kind, src in (("ws", "127.0.0.1"), ("sse", "127.0.0.2"), ("ws", "127.0.0.2")):
        r, rd = open_stream(s.port, kind, src, alice)
        assert r.status in (101, 200), r
        held.append(rd)
    for kind in ("ws", "sse"):
        r, rd = open_stream(s.port, kind, "127.0.0.1", alice)  # 127.0.0.1 holds one
        err = assert_error(r, 503, "too_many_streams")
        assert "subject" in err["message"] and "--max-streams-per-client" in err["message"], err
        assert rd.at_eof(5.0)
    for tok, src in ((mint("bob"), "127.0.0.1"), (mint(None), "127.0.0.1"),
                     (mint(""), "127.0.0.3")):
        r, rd = open_stream(s.port, "ws", src, tok)
        assert r.status == 101, r
        held.append(rd)
    # 127.0.0.1 now holds 3 (alice's, bob's, one without sub): its own limit
    r, rd = open_stream(s.port, "ws", "127.0.0.1", mint("carol"))
    err = assert_error(r, 503, "too_many_streams")
    assert "address" in err["message"], err
    m = s.metrics()
    assert m['flowcast_refused_total{reason="streams_per_subject"}'] == 2
    assert m['flowcast_refused_total{reason="streams_per_client"}'] == 1
    # a closed stream gives the subject's slot back
    held.pop(1).sock.close()

    def alice_again():
        r, rd = open_stream(s.port, "sse", "127.0.0.2", alice)
        if r.status == 200:
            held.append(rd)
            return True
        rd.sock.close()
        return False
    wait_for(alice_again, 5.0, 0.1, "the subject's slot is given back")
    for rd in held:
        rd.sock.close()


def test_flowcast_token_sub_names_the_client(flowcast, jwt_server):
    """`flowcast token --sub NAME` mints a token whose subject the limits
    count: its second stream is refused from another address too."""
    import subprocess
    s = jwt_server("--max-streams-per-client", "1")

    def cli_token(*args):
        return subprocess.run([flowcast, "token", "--key", jwt_server.key, "--scope", "read"] +
                              list(args), capture_output=True, text=True, timeout=20)
    p = cli_token("--sub", "ci-runner")
    assert p.returncode == 0, p.stderr
    tok = p.stdout.strip()
    assert jwt.decode(tok, SECRET, algorithms=["HS256"])["sub"] == "ci-runner"
    r, rd = open_stream(s.port, "ws", "127.0.0.1", tok)
    assert r.status == 101, r
    r, other = open_stream(s.port, "ws", "127.0.0.2", tok)
    assert "subject" in assert_error(r, 503, "too_many_streams")["message"]
    rd.sock.close()
    assert cli_token("--sub", "").returncode == 2


def test_multi_ws_auth_op_counts_the_new_subject(jwt_server):
    """A multi WebSocket opened without a credential counts against its
    subject once {"op":"auth"} names one: over the subject's limit it gets
    too_many_streams and closes 1013; an authenticated stream whose refresh
    names a full subject keeps its old token (and slot); a refresh with the
    same subject keeps its own slot."""
    s = jwt_server("--max-streams-per-client", "2")
    alice, bob = mint("alice"), mint("bob")
    held = []
    for _ in range(2):
        r, rd = open_stream(s.port, "sse", "127.0.0.2", alice)
        assert r.status == 200, r
        held.append(rd)
    anon = RawWS.open(s, "/api/updates", {"Authorization": None})
    anon.send_json({"op": "auth", "token": alice})
    m = anon.recv_json()
    assert m["op"] == "error" and m["code"] == "too_many_streams", m
    f = anon.expect_close(1013)
    assert f.payload[2:] == b"too many streams", f
    ws = RawWS.open(s, "/api/updates", {"Authorization": None})
    for tok in (bob, bob):  # the refresh with the same subject needs no second slot
        ws.send_json({"op": "auth", "token": tok})
        assert ws.recv_json()["op"] == "authenticated"
    r, other = open_stream(s.port, "sse", "127.0.0.3", bob)  # bob's second
    assert r.status == 200, r
    ws.send_json({"op": "auth", "token": alice})
    m = ws.recv_json()
    assert m["op"] == "error" and m["code"] == "too_many_streams", m
    ws.send_json({"op": "subscribe", "workflow_ids": ["wf"]})  # still bob's, still open
    assert ws.recv_json() == {"op": "subscribed", "workflow_ids": ["wf"]}
    assert ws.recv_json()["workflow_id"] == "wf"
    held.pop().sock.close()  # alice has room again: the move frees bob's slot

    def move_to_alice():
        ws.send_json({"op": "auth", "token": alice})
        return ws.recv_json()["op"] == "authenticated"
    wait_for(move_to_alice, 5.0, 0.2, "alice's slot is given back")
    r, rd = open_stream(s.port, "sse", "127.0.0.3", bob)  # bob's slot came back
    assert r.status == 200, r
    assert s.metrics()['flowcast_refused_total{reason="streams_per_subject"}'] >= 2
    for x in held + [other, rd, ws.rd]:
        x.sock.close()


def test_held_longpoll_counts_as_a_stream(jwt_server):
    """A long-poll holds one of its client's slots while it waits (and only
    then): at the limit a long-poll that would wait is refused 503, one
    that answers at once is not, and the slot comes back with the answer."""
    s = jwt_server("--max-streams-per-client", "2")
    alice = mint("alice")
    seq = s.get("wf")["seq"]
    wait = "/api/workflows/wf?wait_since=%d&timeout=%s"
    r, ws = open_stream(s.port, "ws", "127.0.0.1", alice)
    assert r.status == 101
    lp = send(s.port, "GET", wait % (seq, 2), alice, src="127.0.0.2", read=False)
    assert not lp.wait_readable(0.5)  # held: the subject's second stream
    r, rd = open_stream(s.port, "sse", "127.0.0.3", alice)
    assert_error(r, 503, "too_many_streams")
    err = assert_error(send(s.port, "GET", wait % (seq, 2), alice, src="127.0.0.3"), 503,
                       "too_many_streams")
    assert "subject" in err["message"], err
    # a long-poll answered at once takes no slot
    assert send(s.port, "GET", wait % (0, 2), alice, src="127.0.0.3").status == 200
    r = lp.read_response(timeout=10)  # the 2 s wait ends: its slot is free again
    assert r.status == 200 and r.json()["seq"] == seq, r
    lp.sock.close()
    r, rd = open_stream(s.port, "sse", "127.0.0.3", alice)
    assert r.status == 200, r
    rd.sock.close()
    ws.sock.close()


def test_write_rate_per_subject(jwt_server):
    """With a token that names a subject, the write rate is the subject's
    wherever it writes from; another subject on the same address is served,
    and requests without a subject keep the per-address bucket."""
    s = jwt_server("--write-rate", "0.1", "--write-burst", "2")
    alice, bob = mint("alice"), mint("bob")
    patch = ("PATCH", "/api/workflows/wf")
    assert send(s.port, *patch, alice, {"message": "a1"}, src="127.0.0.1").status == 200
    assert send(s.port, *patch, alice, {"message": "a2"}, src="127.0.0.2").status == 200
    r = send(s.port, *patch, alice, {"message": "a3"}, src="127.0.0.3")
    err = assert_error(r, 429, "rate_limited")
    assert "subject" in err["message"], err
    assert 1 <= int(r.headers["retry-after"]) <= 11, r
    for body in ({"message": "b1"}, {"message": "b2"}):
        assert send(s.port, *patch, bob, body, src="127.0.0.3").status == 200
    assert_error(send(s.port, *patch, bob, {"message": "b3"}), 429, "rate_limited")
    # no subject: the address's bucket, untouched by alice and bob so far
    nosub = mint(None)
    for i in range(2):
        assert send(s.port, *patch, nosub, {"message": "n%d" % i}, src="127.0.0.3").status == 200
    err = assert_error(send(s.port, *patch, nosub, {"message": "n"}, src="127.0.0.3"), 429,
                       "rate_limited")
    assert "address" in err["message"], err
    m = s.metrics()
    assert m['flowcast_refused_total{reason="write_rate_subject"}'] == 2
    assert m['flowcast_refused_total{reason="write_rate"}'] == 1


def test_hostile_subject_does_not_starve_another(jwt_server):
    """Mallory holds all her streams and writes as fast as she can from the
    same address as Bob; Bob still opens his streams, gets every change of
    his own writes, and is never refused."""
    s = jwt_server("--max-streams-per-client", "4", "--write-rate", "5", "--write-burst", "5")
    mallory, bob = mint("mallory"), mint("bob")
    held = []
    for i in range(4):
        r, rd = open_stream(s.port, "sse", "127.0.0.2", mallory)
        assert r.status == 200, r
        held.append(rd)
    stop = threading.Event()
    codes = []

    def flood():
        while not stop.is_set():
            codes.append(send(s.port, "PATCH", "/api/workflows/wf", mallory,
                              {"message": "flood"}).status)
    t = threading.Thread(target=flood)
    t.start()
    try:
        wait_for(lambda: 429 in codes, 10.0, 0.05, "mallory is rate-limited")
        r, bob_ws = open_stream(s.port, "ws", "127.0.0.1", bob)
        assert r.status == 101, r
        held.append(bob_ws)
        r, rd = open_stream(s.port, "sse", "127.0.0.3", mallory)
        assert_error(r, 503, "too_many_streams")
        for i in range(5):
            r = send(s.port, "PATCH", "/api/workflows/wf", bob, {"message": "bob %d" % i})
            assert r.status == 200, r
    finally:
        stop.set()
        t.join(10)
    assert set(codes) <= {200, 429} and codes.count(429) > 0, codes
    for rd in held:
        rd.sock.close()


def test_client_table_bounded_and_swept(jwt_server):
    """A flood of distinct subjects costs one table entry each while their
    buckets refill, and the entries go once idle (the table is swept a slice
    at a time, all of it in about 8 s); the table is capped at 65,536 entries
    besides, where a new key evicts the rate-only entry that owes least
    (tests/unit/test_bucket.c floods it past the cap)."""
    # A 10 s refill: at 10/s an entry could go idle and be swept before the
    # 200th write landed on a loaded machine, and the count never reached n.
    s = jwt_server("--write-rate", "0.1", "--write-burst", "1")
    n = 200
    for i in range(n):
        tok = mint("flood-%d" % i)
        assert send(s.port, "PATCH", "/api/workflows/wf", tok, {"message": "x"}).status == 200
    wait_for(lambda: s.metrics()["flowcast_clients_tracked"] >= n, 5.0, 0.3, "entries seen")
    wait_for(lambda: s.metrics()["flowcast_clients_tracked"] <= 1, 45.0, 0.5,
             "idle entries swept")
    assert s.metrics()["flowcast_clients_evicted_total"] == 0
