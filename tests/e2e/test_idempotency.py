"""End-to-end tests of Idempotency-Key (issue 8, item 7): a retried POST,
PATCH or DELETE gets the first answer back and commits nothing; the key with
another request is 422, a malformed key 400; keys expire after
--idempotency-window; the CLI (libflowcast) resends lost requests with their
key, so steps apply exactly once through a connection that loses answers and
across kill -9 of the server."""

import json
import os
import socket
import subprocess
import threading
import time

from fc_helpers import HOST, assert_error, raw_http, read_http_message
from fcc_helpers import cli, restart_same_port


def _send(server, method, path, body=None, key=None, raw=None):
    headers = {"Idempotency-Key": key} if key is not None else None
    return server.request(method, path, raw if raw is not None else body, headers=headers)


def _history_seqs(server, wid):
    r = server.request("GET", "/api/workflows/%s/history?limit=1000" % wid)
    assert r.status == 200, r
    return [e["seq"] for e in r.json()["events"]], r.json()["events"]


def test_retry_gets_first_answer_and_commits_nothing(server):
    body = {"id": "r1", "name": "build", "total_steps": 5}
    a = _send(server, "POST", "/api/workflows", body, key="create-r1")
    b = _send(server, "POST", "/api/workflows", body, key="create-r1")
    assert (a.status, b.status) == (201, 201)
    assert b.body == a.body and b.header("location") == a.header("location")
    assert a.header("idempotent-replayed") is None and b.header("idempotent-replayed") == "true"

    p1 = _send(server, "PATCH", "/api/workflows/r1", {"current_step": 1}, key="step-1")
    server.patch("r1", message="someone else")  # seq 3
    p2 = _send(server, "PATCH", "/api/workflows/r1", {"current_step": 1}, key="step-1")
    assert (p1.status, p2.status) == (200, 200)
    assert p2.body == p1.body and p1.json()["seq"] == 2
    assert server.get("r1")["seq"] == 3
    assert _history_seqs(server, "r1")[0] == [1, 2, 3]

    # Refusals are outcomes too: the same 409, byte for byte.
    c1 = _send(server, "PATCH", "/api/workflows/r1", {"current_step": 9, "if_seq": 1}, key="cas")
    c2 = _send(server, "PATCH", "/api/workflows/r1", {"current_step": 9, "if_seq": 1}, key="cas")
    assert_error(c1, 409, "seq_mismatch")
    assert (c2.status, c2.body) == (c1.status, c1.body)

    d1 = _send(server, "DELETE", "/api/workflows/r1", key="del-r1")
    d2 = _send(server, "DELETE", "/api/workflows/r1", key="del-r1")
    assert (d1.status, d2.status, d2.body) == (204, 204, b"")
    assert _send(server, "DELETE", "/api/workflows/r1").status == 404  # without a key: gone
    # The creation's key still answers with the creation, not a second workflow.
    again = _send(server, "POST", "/api/workflows", body, key="create-r1")
    assert (again.status, again.body) == (201, a.body)
    assert server.request("GET", "/api/workflows/r1").status == 404
    m = server.metrics()
    assert m["flowcast_idempotent_replays_total"] == 5
    assert m["flowcast_changes_committed_total"] == 4  # create, 2 patches, delete


def test_concurrent_retries_on_several_threads_apply_once(server_factory):
    """The same keyed PATCH sent at once on many connections (spread over
    two I/O threads): one is applied, every other gets its answer."""
    s = server_factory("--io-threads", "2")
    s.create(id="c", total_steps=100)
    for round_ in range(5):
        key = "burst-%d" % round_
        go = threading.Event()
        out = []

        def send():
            go.wait(5)
            out.append(_send(s, "PATCH", "/api/workflows/c", {"current_step": round_ + 1}, key=key))

        ts = [threading.Thread(target=send) for _ in range(8)]
        for t in ts:
            t.start()
        go.set()
        for t in ts:
            t.join(30)
        assert [r.status for r in out] == [200] * 8, out
        assert len({r.body for r in out}) == 1, out
        assert sum(r.header("idempotent-replayed") is None for r in out) == 1, out
    assert s.get("c")["seq"] == 6
    assert _history_seqs(s, "c")[0] == [1, 2, 3, 4, 5, 6]


def test_same_key_other_request_is_422(server):
    server.create(id="m", total_steps=10)
    assert _send(server, "PATCH", "/api/workflows/m", {"current_step": 1}, key="k").status == 200
    for method, path, body in (("PATCH", "/api/workflows/m", {"current_step": 2}),
                               ("PATCH", "/api/workflows/m", '{"current_step":1}'),  # other bytes
                               ("PATCH", "/api/workflows/other", {"current_step": 1}),
                               ("DELETE", "/api/workflows/m", None),
                               ("POST", "/api/workflows", {"name": "x", "total_steps": 1})):
        r = _send(server, method, path, body, key="k")
        assert_error(r, 422, "idempotency_key_reused")
        assert '"k"' in r.json()["error"]["message"], r
    w = server.get("m")
    assert (w["seq"], w["current_step"]) == (2, 1)
    assert server.request("GET", "/api/workflows?limit=10").json()["workflows"] == [w]


def test_malformed_key_is_400_and_applies_nothing(server):
    server.create(id="b", total_steps=10)
    bad = ["", " ", "a b", "x" * 129, "tab\there", "\"sf string\""]
    for key in bad:
        r = _send(server, "PATCH", "/api/workflows/b", {"current_step": 1}, key=key)
        assert_error(r, 400, "bad_request")
        assert "Idempotency-Key" in r.json()["error"]["message"], (key, r)
    # Two headers are two keys for one request: refused.
    req = (b"PATCH /api/workflows/b HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Idempotency-Key: a\r\nIdempotency-Key: a\r\nContent-Length: 18\r\n"
           b"Connection: close\r\n\r\n{\"current_step\":1}")
    # Non-ASCII bytes in the key.
    req2 = req.replace(b"Idempotency-Key: a\r\nIdempotency-Key: a", b"Idempotency-Key: \xc3\xa9")
    for raw in (req, req2):
        (r,), rd = raw_http(server.port, raw)
        rd.sock.close()
        assert_error(r, 400, "bad_request")
        assert "Idempotency-Key" in r.json()["error"]["message"], r
    assert server.get("b")["seq"] == 1
    # The longest key, and the draft's quoted form (quotes are part of the key).
    for key in ("x" * 128, '"8e03978e-40d5-43e8-bc93-6894a57f9324"'):
        r = _send(server, "PATCH", "/api/workflows/b", {"message": key[:8]}, key=key)
        assert r.status == 200, r
    assert server.get("b")["seq"] == 3


def test_keys_expire_after_the_window(server_factory):
    s = server_factory("--idempotency-window", "2")
    s.create(id="e", total_steps=10)
    a = _send(s, "PATCH", "/api/workflows/e", {"current_step": 1}, key="w")
    assert _send(s, "PATCH", "/api/workflows/e", {"current_step": 1}, key="w").body == a.body
    time.sleep(2.3)
    c = _send(s, "PATCH", "/api/workflows/e", {"current_step": 2}, key="w")
    assert c.status == 200 and c.json()["seq"] == 3, c


def test_window_flag_is_checked(flowcast, tmp_path):
    import subprocess
    for bad in ("0", "abc", "700000"):
        r = subprocess.run([flowcast, "serve", "--db", str(tmp_path / "x.db"),
                            "--idempotency-window", bad], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 2, r
        assert "--idempotency-window" in r.stderr and r.stderr.count("\n") == 1, r


def test_key_survives_kill9(server_factory):
    s = server_factory()
    s.create(id="k9", total_steps=10)
    a = _send(s, "PATCH", "/api/workflows/k9", {"current_step": 4}, key="durable")
    s.kill9()
    s2 = restart_same_port(server_factory, s)
    b = _send(s2, "PATCH", "/api/workflows/k9", {"current_step": 4}, key="durable")
    assert (b.status, b.body) == (200, a.body)
    assert s2.get("k9")["seq"] == 2


def test_storage_full_stores_no_key(server_factory, tmp_path):
    """A change that fails for a full disk (507, rolled back) leaves its key
    unused: once there is room, the same request is applied, not replayed."""
    s = server_factory(db=str(tmp_path / "fsize.db"))
    s.create(id="f")
    limit = os.path.getsize(s.db + "-wal") + 256 * 1024
    subprocess.run(["prlimit", "--pid", str(s.proc.pid), "--fsize=%d:unlimited" % limit],
                   check=True)
    r = None
    for i in range(400):
        body = {"message": "x" * 4000, "current_step": i % 10}
        r = _send(s, "PATCH", "/api/workflows/f", body, key="fill-%d" % i)
        if r.status != 200:
            break
    assert_error(r, 507, "storage_full")
    before = s.get("f")["seq"]
    subprocess.run(["prlimit", "--pid", str(s.proc.pid), "--fsize=unlimited:unlimited"],
                   check=True)
    again = _send(s, "PATCH", "/api/workflows/f", body, key="fill-%d" % i)
    assert again.status == 200 and again.header("idempotent-replayed") is None, again
    assert again.json()["seq"] == before + 1


class LossyProxy:
    """Forwards one-request connections to the server on port. It can lose
    the answers of changes (POST/PATCH/DELETE) after the server sent them,
    so the client sees its connection close after the commit: every other
    one (drop_alternate), or every one while holding, kept until
    release_held() closes them unanswered."""

    def __init__(self, port, drop_alternate=False):
        self.port = port
        self.drop_alternate = drop_alternate
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.listen_port = self.lsock.getsockname()[1]
        self.changes = 0
        self.dropped = 0
        self.held = 0
        self.lock = threading.Lock()
        self.holding = threading.Event()
        self.released = threading.Event()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            c.settimeout(30)
            req = read_http_message(c)
            if req is None:
                return
            head, body = req
            s = socket.create_connection((HOST, self.port), timeout=30)
            s.sendall(head + b"\r\n\r\n" + body)
            resp = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                resp += d
            s.close()
            drop = False
            if head.split(b" ", 1)[0] in (b"POST", b"PATCH", b"DELETE") and resp:
                with self.lock:
                    self.changes += 1
                    if self.holding.is_set():
                        self.held += 1
                        drop = "hold"
                    elif self.drop_alternate and self.changes % 2 == 1:
                        self.dropped += 1
                        drop = True
            if drop == "hold":
                self.released.wait(60)
            elif not drop:
                c.sendall(resp)
        except OSError:
            pass
        finally:
            c.close()

    def wait_held(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while self.held < n:
            assert time.monotonic() < deadline, "no answer to hold within %ss" % timeout
            time.sleep(0.01)

    def release_held(self):
        """Closes the held connections unanswered; forwards answers again."""
        self.holding.clear()
        self.released.set()

    def close(self):
        self.stop.set()
        self.released.set()
        self.t.join(5)
        self.lsock.close()


def test_lost_answers_are_resent_and_applied_once(flowcast, server):
    """Every other change's answer is lost after its commit; the CLI resends
    it with the same key and the server answers from the key: each `step`
    and `update` counts once (without keys, a resent step would be applied
    twice or a resent update would bump seq again)."""
    server.create(id="lossy", total_steps=6)
    proxy = LossyProxy(server.port, drop_alternate=True)
    try:
        url = "http://127.0.0.1:%d" % proxy.listen_port
        for i in range(4):
            r = cli(flowcast, server, "step", "lossy", "--message", "s%d" % i, url=url)
            assert r.returncode == 0, r
            assert json.loads(r.stdout)["current_step"] == i + 1
        r = cli(flowcast, server, "update", "lossy", "--message", "done", url=url)
        assert r.returncode == 0, r
        assert proxy.dropped >= 2
    finally:
        proxy.close()
    w = server.get("lossy")
    assert (w["current_step"], w["seq"], w["message"]) == (4, 6, "done")
    seqs, events = _history_seqs(server, "lossy")
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert [e["current_step"] for e in events] == [0, 1, 2, 3, 4, 4]
    assert server.metrics()["flowcast_idempotent_replays_total"] >= 2


def test_cli_keys_and_retries(flowcast, server):
    """--idempotency-key makes a change safe to repeat across runs of the
    CLI; a bad key or --retries value is refused before anything is sent;
    --retries 0 gives up on the first lost answer."""
    server.create(id="c", total_steps=10)
    args = ("update", "c", "--step", 3, "--idempotency-key", "job-7-step-3")
    a = cli(flowcast, server, *args)
    b = cli(flowcast, server, *args)
    assert (a.returncode, b.returncode) == (0, 0), (a, b)
    assert a.stdout == b.stdout and json.loads(a.stdout)["seq"] == 2
    r = cli(flowcast, server, "update", "c", "--step", 4, "--idempotency-key", "job-7-step-3")
    assert r.returncode == 1 and "idempotency_key_reused" not in r.stderr, r
    assert r.stderr.startswith('flowcast: Idempotency-Key "job-7-step-3" was already used'), r
    c1 = cli(flowcast, server, "create", "n", "--steps", 2, "--idempotency-key", "mk-n")
    c2 = cli(flowcast, server, "create", "n", "--steps", 2, "--idempotency-key", "mk-n")
    assert c1.returncode == 0 and c2.stdout == c1.stdout, (c1, c2)  # one workflow, same id
    r = cli(flowcast, server, "update", "c", "--step", 5, "--idempotency-key", "a b")
    assert r.returncode == 1 and "invalid idempotency key" in r.stderr, r
    for bad in ("x", "-1", "1001"):
        r = cli(flowcast, server, "step", "c", "--retries", bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r
    assert server.get("c")["seq"] == 2
    proxy = LossyProxy(server.port, drop_alternate=True)
    try:
        url = "http://127.0.0.1:%d" % proxy.listen_port
        r = cli(flowcast, server, "update", "c", "--message", "lost", "--retries", 0, url=url)
    finally:
        proxy.close()
    assert r.returncode == 1, r
    assert r.stderr == "flowcast: %s closed the connection without an answer\n" % url, r
    assert server.get("c")["message"] == "lost"  # applied, answer lost: why keys matter


def test_kill9_while_producers_retry_applies_every_step_once(flowcast, server_factory):
    """The issue's test: producers step their workflows through the CLI
    (libflowcast, which resends with the same key) while the server is killed
    with -9 and restarted on the same database. The answers of the changes
    committed just before the kill are lost for sure (a proxy holds them and
    then closes those connections), so their retries meet the new server.
    Every step the producers ran is applied exactly once, and each history
    is 1..N with no gap or repeat."""
    s = server_factory()
    producers, steps = 4, 20
    for i in range(producers):
        s.create(id="p%d" % i, total_steps=steps)
    proxy = LossyProxy(s.port)
    url = "http://127.0.0.1:%d" % proxy.listen_port
    results = {i: [] for i in range(producers)}

    def produce(i):
        for n in range(steps):
            r = cli(flowcast, s, "step", "p%d" % i, "--message", "step %d" % (n + 1),
                    "--retries", "40", url=url, timeout=120)
            results[i].append((r.returncode, r.stdout, r.stderr))

    ts = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    try:
        for t in ts:
            t.start()
        time.sleep(0.5)  # some steps done
        proxy.holding.set()
        proxy.wait_held(2)  # committed, answers not delivered
        s.kill9()
        held = proxy.held
        proxy.release_held()
        done_before = sum(len(r) for r in results.values())
        assert done_before < producers * steps  # the kill cut production short
        time.sleep(0.5)  # retries meet a closed port for a while
        s2 = restart_same_port(server_factory, s)
        for t in ts:
            t.join(240)
            assert not t.is_alive()
    finally:
        proxy.close()
    for i in range(producers):
        assert [rc for rc, _, _ in results[i]] == [0] * steps, results[i]
        w = s2.get("p%d" % i)
        assert (w["current_step"], w["seq"], w["status"]) == (steps, steps + 1, "completed"), w
        seqs, events = _history_seqs(s2, "p%d" % i)
        assert seqs == list(range(1, steps + 2))
        assert [e["current_step"] for e in events] == list(range(0, steps + 1))
        assert [e["message"] for e in events[1:]] == ["step %d" % n for n in range(1, steps + 1)]
    # The held changes were committed before the kill: their retries were replays.
    assert s2.metrics()["flowcast_idempotent_replays_total"] >= held >= 2
