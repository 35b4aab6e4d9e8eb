"""The Python client package (clients/python, `flowcast`) against the real
server, under Debian's /usr/bin/python3 and python3-websockets: the sync and
async REST helpers (if_seq, idempotent retries of lost answers, retries
across a restart and a rate limit), and the async watch (single, multi,
all; kill -9 and restart mid-stream; delete and re-create; resync; since
positions; backoff bounds)."""

import asyncio
import os
import random
import socket
import sys
import threading

import pytest

from fc_helpers import HOST, run
from fcc_helpers import recreate_while_away, restart_same_port

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))
import flowcast  # noqa: E402


def url(s):
    return "http://127.0.0.1:%d" % s.port


# ---------------------------------------------------------------- helpers

class AnswerDropper:
    """A proxy of one request per connection that loses the first answer
    to each Idempotency-Key: the server commits, the client sees its
    connection close without an answer. Records (method, key) of every
    request it forwarded."""

    def __init__(self, port):
        self.port = port
        self.seen = []
        self.dropped = 0
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.listen_port = self.lsock.getsockname()[1]
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def close(self):
        self.stop.set()
        self.t.join(5)
        self.lsock.close()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    @staticmethod
    def _read_message(sock):
        """One HTTP message (head + Content-Length body), or None at EOF."""
        data = b""
        while b"\r\n\r\n" not in data:
            d = sock.recv(65536)
            if not d:
                return None
            data += d
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            d = sock.recv(65536)
            if not d:
                return None
            body += d
        return head, body

    def _one(self, c):
        try:
            c.settimeout(30)
            req = self._read_message(c)
            if req is None:
                return
            head, body = req
            method = head.split(b" ", 1)[0].decode()
            key = None
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"idempotency-key":
                    key = v.strip().decode()
            up = socket.create_connection((HOST, self.port), timeout=30)
            up.sendall(head + b"\r\n\r\n" + body)
            resp = self._read_message(up)
            up.close()
            with self.lock:
                first = key is not None and all(k != key for _, k in self.seen)
                self.seen.append((method, key))
                if first:
                    self.dropped += 1
            if resp is not None and not first:
                rhead, rbody = resp
                c.sendall(rhead + b"\r\nConnection: close\r\n\r\n" + rbody)
        except OSError:
            pass
        finally:
            c.close()


async def collect(watch, until, timeout=60, events=None):
    """Events of watch (appended to `events` when given, so that they are
    there when the watch raises) until until(events) is true; closes it."""
    events = [] if events is None else events

    async def go():
        async for ev in watch:
            events.append(ev)
            if until(events):
                break

    try:
        await asyncio.wait_for(go(), timeout)
    finally:
        await watch.close()
    return events


async def until(cond, timeout=20):
    """Waits (polling) until cond() is true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met within %ss" % timeout
        await asyncio.sleep(0.05)


async def all_watch_ready(ac, events, wid="ready"):
    """A watch of all sends nothing until a change: creates wid and waits
    until the watch collecting into events delivered it."""
    await ac.create(wid, 1, id=wid)
    await until(lambda: any(e.workflow_id == wid for e in events))


def at(wid, seq):
    """until-condition of collect: an event of wid at seq arrived."""
    return lambda evs: any(e.workflow_id == wid and e.seq == seq for e in evs)


def seqs_of(events, wid):
    return [e.seq for e in events if e.workflow_id == wid]


def assert_exact(events, wid, last):
    """The updates of wid are consecutive seqs ending at last: nothing lost
    or repeated across whatever happened to the connection."""
    s = seqs_of(events, wid)
    assert s, events
    assert s == list(range(s[0], last + 1)), (wid, s)


# ---------------------------------------------------------------- package

def test_package_installs_with_pip_and_imports(tmp_path):
    """clients/python is a standard package: pip builds and installs it
    from pyproject.toml (offline, Debian's setuptools), with py.typed."""
    import shutil
    import subprocess
    src = os.path.dirname(os.path.dirname(os.path.abspath(flowcast.__file__)))
    shutil.copytree(src, tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                        "--no-deps", "--no-index", "--target", str(tmp_path / "site"),
                        str(tmp_path / "src")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "flowcast" / "py.typed").exists()
    r = subprocess.run([sys.executable, "-c", "import flowcast, importlib.metadata as m; "
                        "print(m.version('flowcast'), flowcast.__version__, flowcast.__file__)"],
                       capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")),
                       cwd=str(tmp_path))
    v = flowcast.__version__
    assert r.returncode == 0 and r.stdout.startswith("%s %s %s" % (v, v, tmp_path / "site")), r


# ---------------------------------------------------------------- dedupe

def test_dedupe_rule_table():
    """The watch's check of each message against the last position it
    delivered (libflowcast's fcc__sub_fresh), case by case."""
    from flowcast.watch import _Sub

    def sub(epoch, last, retired=0, gone=False):
        s = _Sub("w", epoch, last)
        s.retired, s.gone = retired, gone
        return s

    E, F, G = 11, 22, 33
    cases = [  # (sub, (epoch, seq, resync, deleted), fresh?)
        (sub(E, -1), (E, 1, False, False), True),      # first message
        (sub(E, 5), (E, 6, False, False), True),       # next
        (sub(E, 5), (E, 5, False, False), False),      # repeat
        (sub(E, 5), (E, 3, False, False), False),      # old
        (sub(E, 5), (E, 3, True, False), True),        # resync below: the server lost changes
        (sub(E, 5), (E, 5, True, False), False),       # resync at the same seq: nothing new
        (sub(E, 5), (F, 1, False, False), True),       # another incarnation, lower seq
        (sub(E, 5), (F, 3, True, False), True),        # its resync state
        (sub(F, 3, retired=E), (E, 9, False, False), False),  # late message of the replaced one
        (sub(0, 5), (E, 6, False, False), True),       # epoch unknown: by seq
        (sub(0, 5), (E, 5, False, False), False),
        (sub(E, 5), (0, 6, False, False), True),       # message without epoch: by seq
        (sub(E, 6, gone=True), (E, 6, False, True), False),   # the deletion again
        (sub(E, 6, gone=True), (E, 7, False, False), False),  # the deleted incarnation
        (sub(E, 6, gone=True), (G, 1, True, False), True),    # a new incarnation revives it
        (sub(E, 6, gone=True), (G, 4, False, True), False),   # never a second deletion
        (sub(E, 5), (E, 6, False, True), True),        # a deletion of the tracked one
    ]
    for s, args, want in cases:
        assert s.fresh(*args) is want, (s.epoch, s.last_seq, s.retired, s.gone, args)


# ---------------------------------------------------------------- REST

def test_rest_helpers_sync(server):
    c = flowcast.Client(url(server))
    w = c.create("nightly build", 3, message="queued")
    assert isinstance(w, flowcast.Workflow)
    assert len(w.id) == 26 and w.seq == 1 and w.status == "pending" and w.message == "queued"
    assert 1 <= w.epoch <= flowcast.EPOCH_MAX and w.position == flowcast.Position(w.epoch, 1)
    assert flowcast.parse_time(w.created_at).year >= 2026
    g = c.get(w.id)
    assert g == w and g.raw["name"] == "nightly build"
    with pytest.raises(flowcast.AlreadyExistsError) as ei:
        c.create("again", 1, id=w.id)
    assert (ei.value.status, ei.value.code) == (409, "already_exists")
    # Fields left None are not sent: the stored values stay.
    u = c.update(w.id, current_step=1, status="running")
    assert (u.current_step, u.total_steps, u.message, u.seq) == (1, 3, "queued", 2)
    # if_seq: compare-and-set.
    with pytest.raises(flowcast.SeqMismatchError) as ei:
        c.update(w.id, message="stale", if_seq=1)
    e = ei.value
    assert isinstance(e, flowcast.ConflictError) and isinstance(e, flowcast.ApiError)
    assert (e.status, e.code) == (409, "seq_mismatch") and "seq" in e.message
    assert c.get(w.id).seq == 2 and c.get(w.id).message == "queued"
    assert c.update(w.id, message="fresh", if_seq=2).seq == 3
    with pytest.raises(flowcast.BadRequestError) as ei:
        c.update(w.id, current_step=9)
    assert (ei.value.status, ei.value.code) == (400, "bad_request")
    with pytest.raises(ValueError):
        c.update(w.id)
    with pytest.raises(ValueError):
        c.get("no/slash")
    s = c.step(w.id, "two")
    assert (s.current_step, s.status, s.message, s.seq) == (2, "running", "two", 4)
    s = c.step(w.id, "three")
    assert (s.current_step, s.status) == (3, "completed")
    with pytest.raises(flowcast.TerminalStatusError):
        c.step(w.id)
    other = c.create("full", 1, id="full-1", current_step=1, status="running")
    with pytest.raises(flowcast.AtLastStepError):
        c.step(other.id)
    h = c.history(w.id)
    assert [x.seq for x in h.events] == [1, 2, 3, 4, 5] and h.epoch == w.epoch and not h.resync
    assert all(isinstance(x, flowcast.Update) for x in h.events)
    assert [x.seq for x in c.history(w.id, (w.epoch, 3)).events] == [4, 5]
    assert [x.seq for x in c.history(w.id, flowcast.Position(w.epoch, 1), limit=2).events] == [2, 3]
    assert c.history(w.id, (w.epoch, 99)).resync
    ids = {c.create("w%d" % i, 1, id="page-%d" % i).id for i in range(5)}
    page = c.list(limit=2)
    assert len(page.workflows) == 2 and page.next_cursor
    every = [x.id for x in c.iter_workflows(limit=2)]
    assert len(every) == len(set(every)) == 7 and ids <= set(every)
    assert {x.id for x in c.iter_workflows(status="completed")} == {w.id}
    c.delete(w.id)
    with pytest.raises(flowcast.NotFoundError) as ei:
        c.get(w.id)
    assert (ei.value.status, ei.value.code) == (404, "not_found")
    with pytest.raises(flowcast.NotFoundError):
        c.delete(w.id)
    c.close()


def test_rest_helpers_async(server):
    async def main():
        c = flowcast.AsyncClient(url(server))
        w = await c.create("async", 2, id="a1")
        assert (w.id, w.seq, w.total_steps) == ("a1", 1, 2)
        assert (await c.get("a1")) == w
        with pytest.raises(flowcast.SeqMismatchError) as ei:
            await c.update("a1", message="x", if_seq=7)
        assert (ei.value.status, ei.value.code) == (409, "seq_mismatch")
        s = await c.step("a1", "one")
        assert (s.current_step, s.status, s.seq) == (1, "running", 2)
        # Concurrent steppers: if_seq makes each step count once.
        await c.create("race", 20, id="race")
        await asyncio.gather(*[c.step("race") for _ in range(20)])
        r = await c.get("race")
        assert (r.current_step, r.status, r.seq) == (20, "completed", 21)
        ids = [x.id async for x in c.iter_workflows(limit=1)]
        assert sorted(ids) == ["a1", "race"]
        h = await c.history("race", (r.epoch, 19))
        assert [x.seq for x in h.events] == [20, 21]
        await c.delete("a1")
        with pytest.raises(flowcast.NotFoundError):
            await c.get("a1")

    run(main(), 60)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_lost_answers_are_retried_with_the_same_key(server, mode):
    """Every change's first answer is lost after the commit: the client
    sends it again with the same Idempotency-Key, gets the first answer
    replayed, and each change is applied exactly once."""
    server.create(id="k", total_steps=10)
    proxy = AnswerDropper(server.port)
    purl = "http://127.0.0.1:%d" % proxy.listen_port
    try:
        if mode == "sync":
            c = flowcast.Client(purl, backoff_max=0.05)
            made = c.create("made", 5, id="made")
            steps = [c.step("k", "s%d" % i) for i in range(3)]
            upd = c.update("k", message="explicit", idempotency_key="my-key-1")
            c.delete("made")
        else:
            async def main():
                c = flowcast.AsyncClient(purl, backoff_max=0.05)
                made = await c.create("made", 5, id="made")
                steps = [await c.step("k", "s%d" % i) for i in range(3)]
                upd = await c.update("k", message="explicit", idempotency_key="my-key-1")
                await c.delete("made")
                return made, steps, upd
            made, steps, upd = run(main(), 60)
    finally:
        proxy.close()
    assert made.seq == 1 and [s.seq for s in steps] == [2, 3, 4] and upd.seq == 5
    w = server.get("k")
    assert (w["seq"], w["current_step"], w["message"]) == (5, 3, "explicit")
    assert server.request("GET", "/api/workflows/made").status == 404
    changes = [(m, k) for m, k in proxy.seen if m != "GET"]
    # create, 3 steps, update, delete: each sent twice with one key.
    assert len(changes) == 12 and proxy.dropped == 6, changes
    keys = [k for _, k in changes]
    assert all(keys.count(k) == 2 for k in keys) and "my-key-1" in keys
    assert len({k for k in keys if k != "my-key-1"}) == 5
    assert server.metrics()["flowcast_idempotent_replays_total"] == 6


def test_retries_across_a_restart_and_give_up_precisely(server_factory):
    s = server_factory()
    s.create(id="r", total_steps=5)
    c = flowcast.Client(url(s), retries=40, backoff_max=0.3)
    assert s.stop() == 0
    t = threading.Timer(0.8, lambda: restart_same_port(server_factory, s))
    t.start()
    try:
        w = c.step("r", "after restart")  # refused while down, answered after
    finally:
        t.join()
    assert (w.current_step, w.seq) == (1, 2)
    dead = flowcast.Client("http://127.0.0.1:1", retries=2, backoff_max=0.01)
    with pytest.raises(flowcast.ConnectionFailed) as ei:
        dead.get("r")
    assert ei.value.attempts == 3 and isinstance(ei.value.__cause__, OSError)

    async def adead():
        with pytest.raises(flowcast.ConnectionFailed) as ei:
            await flowcast.AsyncClient("http://127.0.0.1:1", retries=1,
                                       backoff_max=0.01).get("r")
        assert ei.value.attempts == 2

    run(adead())


def test_keep_alive_connection_closed_by_the_server_is_not_a_failure(server_factory):
    """The blocking client keeps connections alive; one the server closed
    for idleness is replaced at once, without spending a retry."""
    s = server_factory("--idle-timeout", "0.3")
    c = flowcast.Client(url(s), retries=0)
    c.create("ka", 5, id="ka")
    for i in range(3):
        import time as _t
        _t.sleep(0.8)  # the server closes the idle connection meanwhile
        assert c.step("ka").current_step == i + 1
    assert s.metrics()["flowcast_http_idle_closed_total"] >= 3


def test_rate_limited_changes_wait_for_retry_after(server_factory):
    s = server_factory("--write-rate", "2/s", "--write-burst", "1")
    c = flowcast.Client(url(s), retries=10, backoff_max=1.0)
    made = [c.create("rl", 1, id="rl%d" % i) for i in range(4)]
    assert [w.id for w in made] == ["rl0", "rl1", "rl2", "rl3"]
    assert s.metrics()['flowcast_refused_total{reason="write_rate"}'] >= 1
    strict = flowcast.Client(url(s), retries=0)
    with pytest.raises(flowcast.RateLimitedError) as ei:
        for i in range(5):
            strict.create("rl", 1, id="x%d" % i)
    assert ei.value.status == 429 and ei.value.retry_after >= 1


# ---------------------------------------------------------------- watch

def test_watch_single_multi_all_and_since(server):
    c = flowcast.Client(url(server))
    a = c.create("a", 100, id="a")
    c.create("b", 100, id="b")

    async def main():
        ac = flowcast.AsyncClient(url(server))
        single = ac.watch(["a"])
        multi = ac.watch(["a", "b", "a"])  # a set: a once
        every = ac.watch(all=True)
        resumed = ac.watch(["a"], since={"a": (a.epoch, 1)})
        evs = [[], [], [], []]
        ends = [at("a", 6), lambda e: at("a", 6)(e) and at("b", 6)(e), at("c", 2), at("a", 6)]
        tasks = [asyncio.ensure_future(collect(w, end, timeout=30, events=ev))
                 for w, end, ev in zip((single, multi, every, resumed), ends, evs)]
        await until(lambda: len(evs[0]) == 1 and len(evs[1]) == 2 and resumed.state == "open")
        await all_watch_ready(ac, evs[2])
        for i in range(1, 6):
            await ac.step("a", "a%d" % i)
            await ac.step("b", "b%d" % i)
        await ac.create("c", 3, id="c")
        await ac.step("c")
        return [await t for t in tasks], single.positions(), multi.positions()

    (s_ev, m_ev, all_ev, r_ev), s_pos, m_pos = run(main(), 60)
    assert seqs_of(s_ev, "a") == [1, 2, 3, 4, 5, 6] and not seqs_of(s_ev, "b")
    assert seqs_of(m_ev, "a") == [1, 2, 3, 4, 5, 6] and seqs_of(m_ev, "b") == [1, 2, 3, 4, 5, 6]
    assert seqs_of(all_ev, "a") == [2, 3, 4, 5, 6] and seqs_of(all_ev, "c") == [1, 2]
    assert seqs_of(r_ev, "a") == [2, 3, 4, 5, 6] and not any(e.resync for e in r_ev)
    assert all(isinstance(e, flowcast.Update) and e.epoch == a.epoch
               for e in s_ev + r_ev)
    assert [e.message for e in s_ev[1:]] == ["a1", "a2", "a3", "a4", "a5"]
    assert s_pos == {"a": flowcast.Position(a.epoch, 6)}
    assert set(m_pos) == {"a", "b"} and m_pos["b"].seq == 6


def test_watch_resumes_from_positions_of_an_earlier_watch(server):
    """A second watch started from positions() gets exactly the changes the
    first one did not see, on the single and the multi stream."""
    c = flowcast.Client(url(server))
    c.create("p", 50, id="p")
    c.create("q", 50, id="q")

    async def main():
        ac = flowcast.AsyncClient(url(server))
        first = ac.watch(["p", "q"])
        ev1 = await collect(first, lambda ev: len(ev) == 2)  # the two states
        pos = first.positions()
        for _ in range(3):
            await ac.step("p")
            await ac.step("q")
        ev2 = await collect(ac.watch(["p", "q"], since=pos), lambda ev: len(ev) == 6)
        ev3 = await collect(ac.watch(["p"], since={"p": pos["p"]}), lambda ev: len(ev) == 3)
        return ev1, ev2, ev3

    ev1, ev2, ev3 = run(main(), 60)
    assert sorted((e.workflow_id, e.seq) for e in ev1) == [("p", 1), ("q", 1)]
    assert seqs_of(ev2, "p") == [2, 3, 4] and seqs_of(ev2, "q") == [2, 3, 4]
    assert seqs_of(ev3, "p") == [2, 3, 4]


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_watch_survives_server_restart_mid_stream(server_factory, how):
    """Producers step three workflows while single, multi and all watches
    follow; the server is killed (-9, or stopped) mid-stream and restarted
    on the same port and database. Each watch resumes by (epoch, seq): the
    seqs it delivers per workflow are consecutive up to the last change,
    nothing lost, nothing repeated."""
    s = server_factory()
    n = 40
    for wid in ("a", "b", "c"):
        s.create(id=wid, total_steps=n)
    holder = {"s": s}

    def done_at(ids):
        return lambda evs: all(any(e.workflow_id == i and e.seq == n + 1 for e in evs)
                               for i in ids)

    async def main():
        ac = flowcast.AsyncClient(url(s), retries=60, backoff_max=0.3)
        states = {k: [] for k in ("single", "multi", "all")}
        opts = dict(backoff_initial=0.05, backoff_max=0.5)
        single = ac.watch(["a"], on_state=states["single"].append, **opts)
        multi = ac.watch(["a", "b"], on_state=states["multi"].append, **opts)
        every = ac.watch(all=True, on_state=states["all"].append, **opts)
        got = [[], [], []]
        tasks = [asyncio.ensure_future(collect(single, done_at(["a"]), events=got[0])),
                 asyncio.ensure_future(collect(multi, done_at(["a", "b"]), events=got[1])),
                 asyncio.ensure_future(collect(every, done_at(["a", "b", "c"]), events=got[2]))]
        await until(lambda: len(got[0]) == 1 and len(got[1]) == 2)
        await all_watch_ready(ac, got[2])

        async def produce(wid):
            for i in range(n):
                await ac.step(wid, "%s%d" % (wid, i + 1))
                await asyncio.sleep(random.random() * 0.02)

        producers = [asyncio.ensure_future(produce(w)) for w in ("a", "b", "c")]
        await asyncio.sleep(0.4)  # mid-stream
        if how == "kill9":
            await asyncio.to_thread(s.kill9)
        else:
            assert await asyncio.to_thread(s.stop) == 0
        await asyncio.sleep(0.5)
        holder["s"] = await asyncio.to_thread(restart_same_port, server_factory, s)
        await asyncio.gather(*producers)
        return [await t for t in tasks], states

    (s_ev, m_ev, all_ev), states = run(main(), 120)
    s2 = holder["s"]
    for wid in ("a", "b", "c"):
        assert s2.get(wid)["seq"] == n + 1
    assert_exact(s_ev, "a", n + 1) and seqs_of(s_ev, "a")[0] == 1
    assert_exact(m_ev, "a", n + 1) and assert_exact(m_ev, "b", n + 1)
    for wid in ("a", "b", "c"):
        assert_exact(all_ev, wid, n + 1)
    for k, st in states.items():
        names = [x.state for x in st]
        assert names[:2] == ["connecting", "open"], (k, names)
        assert "reconnecting" in names and names.count("open") >= 2, (k, names)
        assert names[-1] == "closed", (k, names)


def test_watch_tells_a_deleted_and_recreated_workflow(server_factory):
    """While the watchers are away, x is deleted and created again: on the
    resume they get the old incarnation's Deletion, then the new one's state
    (resync, new_incarnation), then its live changes. A live deletion ends a
    watch of that id; a watch of all sees the deletion and the creation."""
    s = server_factory()
    s.create(id="x", total_steps=10)
    s.create(id="y", total_steps=10)
    old_epoch = s.get("x")["epoch"]
    holder = {}

    async def main():
        ac = flowcast.AsyncClient(url(s))
        opts = dict(backoff_initial=0.05, backoff_max=0.3)
        single = ac.watch(["x"], **opts)
        multi = ac.watch(["x", "y"], **opts)
        got = [[], []]
        live = [asyncio.ensure_future(collect(w, lambda ev: len(ev) >= 4 and ev[-1].seq == 4
                                              and ev[-1].workflow_id == "x", events=g))
                for w, g in zip((single, multi), got)]
        await until(lambda: len(got[0]) == 1 and len(got[1]) == 2)
        await ac.step("x")  # seq 2 of the old incarnation
        await until(lambda: at("x", 2)(got[0]) and at("x", 2)(got[1]))
        s2, old, new = await asyncio.to_thread(recreate_while_away, server_factory, s, "x")
        holder["s2"] = s2
        await until(lambda: all(any(e.epoch == new["epoch"] for e in g) for g in got))
        await flowcast.AsyncClient(url(s2)).step("x", "live")  # seq 4 of the new one
        evs = [await t for t in live]
        # A watch of all, then a live delete and re-create.
        every = ac.watch(all=True)
        gone = ac.watch(["x"])
        got_all, got_gone = [], []
        t_all = asyncio.ensure_future(collect(
            every, lambda ev: len([e for e in ev if e.workflow_id == "x"]) == 3, events=got_all))
        t_gone = asyncio.ensure_future(collect(gone, lambda ev: False, events=got_gone))
        await until(lambda: len(got_gone) == 1)
        await all_watch_ready(ac, got_all)
        await ac.step("x")  # seq 5: the watch of all learns x
        await ac.delete("x")
        await ac.create("x again", 5, id="x")
        return evs, await t_all, await t_gone, new

    (s_ev, m_ev), all_ev, gone_ev, new = run(main(), 60)
    for evs in (s_ev, [e for e in m_ev if e.workflow_id == "x"]):
        kinds = [(type(e).__name__, e.epoch, e.seq) for e in evs]
        assert kinds == [("Update", old_epoch, 1), ("Update", old_epoch, 2),
                         ("Deletion", old_epoch, 3), ("Update", new["epoch"], 3),
                         ("Update", new["epoch"], 4)], kinds
        assert evs[3].resync and evs[3].new_incarnation and not evs[4].new_incarnation
        assert evs[4].message == "live"
    assert seqs_of(m_ev, "y") == [1]
    all_ev = [e for e in all_ev if e.workflow_id == "x"]
    assert [(type(e).__name__, e.seq) for e in all_ev] == \
        [("Update", 5), ("Deletion", 6), ("Update", 1)]
    assert all_ev[1].epoch == new["epoch"] and all_ev[2].epoch != new["epoch"]
    assert not all_ev[2].new_incarnation  # a creation: all forgot x at its deletion
    # The watch of x ended by itself after the live deletion.
    assert [(type(e).__name__, e.seq) for e in gone_ev] == \
        [("Update", 4), ("Update", 5), ("Deletion", 6)]


def test_watch_resync_when_the_log_no_longer_reaches(server_factory):
    s = server_factory("--retention", "5")
    w = s.create(id="r", total_steps=100)
    for i in range(20):
        s.patch("r", current_step=i + 1)

    async def main():
        ac = flowcast.AsyncClient(url(s))
        out = []
        for since in ({"r": (w["epoch"], 2)}, {"r": 2}, {"r": (w["epoch"] + 1, 2)}):
            for ids in (["r"], ["r", "other"]):
                if "other" in ids and not out:
                    await ac.create("other", 1, id="other")
                out.append(await collect(ac.watch(ids, since=since),
                                         lambda ev: any(e.workflow_id == "r" for e in ev)))
        near = await collect(ac.watch(["r"], since={"r": (w["epoch"], 18)}),
                             lambda ev: len(ev) == 3)
        return out, near

    out, near = run(main(), 60)
    for evs in out:
        r = [e for e in evs if e.workflow_id == "r"]
        assert r[0].seq == 21 and r[0].resync and r[0].current_step == 20, r
    assert [(e.seq, e.resync) for e in near] == [(19, False), (20, False), (21, False)]


def test_watch_errors_and_backoff_bounds(server):
    server.create(id="here", total_steps=1)

    async def main():
        ac = flowcast.AsyncClient(url(server))
        with pytest.raises(flowcast.NotFoundError) as ei:
            await collect(ac.watch(["nope"]), lambda ev: False, timeout=10)
        assert ei.value.workflow_id == "nope"
        with pytest.raises(flowcast.NotFoundError) as ei:
            await collect(ac.watch(["here", "nope"]), lambda ev: False, timeout=10)
        assert ei.value.workflow_id == "nope" and ei.value.status == 404
        states = []
        dead = flowcast.Watch("http://127.0.0.1:1", ["here"], max_retries=6,
                              backoff_initial=0.01, backoff_max=0.04, on_state=states.append)
        with pytest.raises(flowcast.RetriesExhausted) as ei:
            await collect(dead, lambda ev: False, timeout=10)
        assert ei.value.attempts == 6
        # close() from another task ends a watch waiting out a long backoff.
        waiting = flowcast.Watch("http://127.0.0.1:1", ["here"], backoff_initial=60,
                                 backoff_max=60, seed=2)  # waits 57 s
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        loop.call_later(0.5, lambda: asyncio.ensure_future(waiting.close()))
        assert await collect(waiting, lambda ev: False, timeout=20) == []
        assert loop.time() - t0 < 10 and waiting.state == "closed"
        return states

    states = run(main(), 30)
    waits = [(x.attempt, x.delay) for x in states if x.state == "reconnecting"]
    assert [a for a, _ in waits] == [1, 2, 3, 4, 5, 6]
    for a, d in waits:
        assert 0 <= d <= flowcast.backoff_ceiling(0.01, 0.04, a - 1)
    assert [flowcast.backoff_ceiling(0.1, 30, k) for k in (0, 1, 2, 8, 9, 50)] == \
        [0.1, 0.2, 0.4, 25.6, 30, 30]
    rng = random.Random(7)
    assert all(0 <= flowcast.backoff_delay(0.1, 2.0, k, rng) <= min(2.0, 0.1 * 2**k)
               for k in range(20) for _ in range(50))
    assert states[-1].state == "closed" and isinstance(states[-1].error, flowcast.RetriesExhausted)


def test_readme_examples_run(server):
    """The two examples of clients/python/README.md, as written (the URL
    pointed at the test server, no token)."""
    path = os.path.join(os.path.dirname(flowcast.__file__), "..", "README.md")
    text = open(path, encoding="utf-8").read()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert len(blocks) >= 3
    fix = {"http://127.0.0.1:8001": url(server), 'token="…"': "token=None"}
    for i in (0, 2):
        for k, v in fix.items():
            blocks[i] = blocks[i].replace(k, v)
    ns = {}
    exec(compile(blocks[0], "README-report", "exec"), ns)
    exec(compile(blocks[1], "README-errors", "exec"), ns)  # catches its SeqMismatchError
    w = ns["c"].get(ns["w"].id)
    assert (w.current_step, w.status, w.message, w.seq) == (3, "completed", "done", 5)
    server.create(id="deploy-42", total_steps=2)
    t = threading.Timer(1.5, lambda: server.delete("deploy-42"))
    t.start()
    try:
        exec(compile(blocks[2], "README-watch", "exec"), {"__name__": "readme"})
    finally:
        t.join()


# ---------------------------------------------------------------- tokens

STATIC = "static-operator-token-0123456789"
SECRET = "p" * 20 + "-hmac-secret-for-python-client"


class Minter:
    """A token provider: each call mints a fresh HS256 JWT (python3-jwt)
    valid ttl seconds (or the next of `ttls`); counts the calls."""

    def __init__(self, ttl=3600, scope="read write", ttls=(), workflows=None):
        self.ttl, self.scope, self.ttls, self.workflows = ttl, scope, list(ttls), workflows
        self.calls = 0

    def __call__(self):
        import time as _t
        import jwt
        self.calls += 1
        ttl = self.ttls.pop(0) if self.ttls else self.ttl
        now = int(_t.time())
        claims = {"scope": self.scope, "iat": now - 1, "exp": now + ttl}
        if self.workflows is not None:
            claims["workflows"] = self.workflows
        return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def jwt_server(server_factory, tmp_path):
    key = tmp_path / "jwt.key"
    key.write_text(SECRET)
    return server_factory("--jwt-key", str(key), "--api-token", STATIC)


def test_rest_refreshes_an_expired_token(jwt_server):
    s = jwt_server
    admin = flowcast.Client(url(s), STATIC)
    admin.create("t", 10, id="t")
    expired = Minter(ttl=-5)()
    with pytest.raises(flowcast.TokenExpiredError) as ei:
        flowcast.Client(url(s), expired).get("t")
    assert (ei.value.status, ei.value.code) == (401, "token_expired")
    with pytest.raises(flowcast.UnauthorizedError) as ei:
        flowcast.Client(url(s), "not-a-token").get("t")
    assert (ei.value.status, ei.value.code) == (401, "unauthorized")
    # A provider whose first token is expired: the 401 makes the client ask
    # again and send the same call (same key) with the new one.
    m = Minter(ttls=[-5])
    c = flowcast.Client(url(s), m)
    assert c.step("t", "refreshed").seq == 2 and m.calls == 2
    # A held token past its exp is replaced before the call, without a 401.
    m2 = Minter(ttls=[2])
    c2 = flowcast.Client(url(s), m2)
    assert c2.get("t").seq == 2 and m2.calls == 1
    import time as _t
    _t.sleep(2.2)
    before = s.request("GET", "/metrics", headers={"Authorization": "Bearer " + STATIC})
    assert c2.get("t").seq == 2 and m2.calls == 2
    after = s.request("GET", "/metrics", headers={"Authorization": "Bearer " + STATIC})
    from fc_helpers import parse_metrics
    key = "flowcast_auth_unauthorized_total"
    assert parse_metrics(after.body.decode())[key] == parse_metrics(before.body.decode())[key]

    async def coroutine_provider():
        am = Minter(ttls=[-5])

        async def token():
            await asyncio.sleep(0)
            return am()

        ac = flowcast.AsyncClient(url(s), token)
        w = await ac.update("t", message="async refresh")
        assert w.seq == 3 and am.calls == 2
        with pytest.raises(TypeError):
            flowcast.Client(url(s), token).get("t")

    run(coroutine_provider())


def test_watch_resumes_across_token_expiry(jwt_server):
    """Short-lived tokens: the single stream is closed 4401 at each exp and
    the watch reconnects at once with a fresh token; the multi stream and a
    watch of all refresh in place ({"op":"auth"}) and never reconnect. A
    producer keeps stepping meanwhile: every watch sees every seq once."""
    s = jwt_server
    admin = flowcast.AsyncClient(url(s), STATIC)
    n = 45

    async def main():
        await admin.create("a", n, id="a")
        await admin.create("b", n, id="b")
        minters = {k: Minter(ttl=3) for k in ("single", "multi", "all")}
        states = {k: [] for k in minters}
        watches = {
            "single": flowcast.Watch(url(s), ["a"], token=minters["single"],
                                     on_state=states["single"].append),
            "multi": flowcast.Watch(url(s), ["a", "b"], token=minters["multi"],
                                    on_state=states["multi"].append),
            "all": flowcast.Watch(url(s), all=True, token=minters["all"],
                                  on_state=states["all"].append),
        }
        done = {"single": ["a"], "multi": ["a", "b"], "all": ["a", "b"]}
        got = {k: [] for k in watches}
        tasks = {k: asyncio.ensure_future(collect(
            w, lambda evs, ids=done[k]: all(any(e.workflow_id == i and e.seq == n + 1
                                                for e in evs) for i in ids), timeout=60,
            events=got[k])) for k, w in watches.items()}
        await until(lambda: len(got["single"]) == 1 and len(got["multi"]) == 2)
        for i in range(n):  # ~9 s: three expiries of each watch's token
            await admin.step("a")
            await admin.step("b")
            await asyncio.sleep(0.2)
        return {k: await t for k, t in tasks.items()}, states, minters

    evs, states, minters = run(main(), 90)
    assert_exact(evs["single"], "a", n + 1) and seqs_of(evs["single"], "a")[0] == 1
    for k in ("multi", "all"):
        assert_exact(evs[k], "a", n + 1) and assert_exact(evs[k], "b", n + 1)
    single = [x for x in states["single"] if x.state == "reconnecting"]
    assert len(single) >= 2 and all("4401" in x.reason and x.delay == 0 for x in single), single
    assert minters["single"].calls >= 3
    for k in ("multi", "all"):
        names = [x.state for x in states[k]]
        assert names.count("open") == 1 and "reconnecting" not in names, (k, names)
        assert minters[k].calls >= 3, k
    from fc_helpers import parse_metrics
    m = parse_metrics(s.request("GET", "/metrics",
                                headers={"Authorization": "Bearer " + STATIC}).body.decode())
    assert m['flowcast_auth_refreshes_total{result="ok"}'] >= 4


def test_watch_token_errors(jwt_server):
    """A fixed token that expires ends the watch with TokenExpiredError
    (after what it delivered); a handshake 401 makes a provider's watch ask
    again; a refresh that no longer covers a workflow is ForbiddenError."""
    s = jwt_server
    admin = flowcast.AsyncClient(url(s), STATIC)

    async def main():
        await admin.create("a", 9, id="a")
        await admin.create("b", 9, id="b")
        fixed = flowcast.Watch(url(s), ["a"], token=Minter(ttl=2)())
        with pytest.raises(flowcast.TokenExpiredError):
            got = []
            await collect(fixed, lambda ev: False, timeout=10, events=got)
        assert [e.seq for e in got] == [1]
        with pytest.raises(flowcast.TokenExpiredError):  # refused at the handshake
            await collect(flowcast.Watch(url(s), ["a"], token=Minter(ttl=-1)()),
                          lambda ev: False, timeout=10)
        with pytest.raises(flowcast.UnauthorizedError) as ei:  # no credential at all
            await collect(flowcast.Watch(url(s), ["a", "b"]), lambda ev: False, timeout=10)
        assert ei.value.code == "unauthorized"
        m = Minter(ttls=[-5])
        first = await collect(flowcast.Watch(url(s), ["a", "b"], token=m),
                              lambda ev: len(ev) == 2, timeout=10)
        assert len(first) == 2 and m.calls == 2
        m2 = Minter(ttls=[2])

        def narrowing():  # the refresh no longer covers b
            if m2.calls:
                m2.workflows = ["a"]
            return m2()

        w = flowcast.Watch(url(s), ["a", "b"], token=narrowing, refresh_lead=1.0)
        got2 = []
        with pytest.raises(flowcast.ForbiddenError) as ei:
            await collect(w, lambda ev: False, timeout=10, events=got2)
        return ei.value, got2

    err, got2 = run(main(), 40)
    assert err.workflow_id == "b" and err.status == 403 and err.code == "forbidden"
    assert sorted(e.workflow_id for e in got2) == ["a", "b"]


# ---------------------------------------------------------------- TLS

class TLSFront:
    """Terminates TLS with cert/key on a loopback port and pipes each
    connection to the plain server on port (asyncio, in a thread of its
    own): the client's https and wss paths, independent of the server's."""

    def __init__(self, port, cert, key):
        import ssl
        self.port = port
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, ctx: None)  # refused handshakes
        ready = threading.Event()

        def main():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._handle, HOST, 0, ssl=ctx))
            self.listen_port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.t = threading.Thread(target=main, daemon=True)
        self.t.start()
        assert ready.wait(5)

    async def _handle(self, r, w):
        try:
            ur, uw = await asyncio.open_connection(HOST, self.port)
        except OSError:
            w.close()
            return

        async def pipe(a, b):
            try:
                while True:
                    d = await a.read(65536)
                    if not d:
                        break
                    b.write(d)
                    await b.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                b.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    async def _shutdown(self):
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self):
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.t.join(5)
        self.loop.close()


@pytest.fixture
def cert_pair(tmp_path):
    import subprocess
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("front", ["proxy", "server"])
def test_https_and_wss(server_factory, cert_pair, front):
    """https:// REST and wss:// watches verified against ca_file or an
    ssl.SSLContext; an untrusted certificate fails at once (not retried)."""
    import ssl
    cert, key = cert_pair
    proxy = None
    if front == "server":
        s = server_factory("--tls-cert", cert, "--tls-key", key, ready=False)
        port = s.port
    else:
        s = server_factory()
        proxy = TLSFront(s.port, cert, key)
        port = proxy.listen_port
    base = "https://127.0.0.1:%d" % port
    try:
        c = flowcast.Client(base, ca_file=cert, retries=20, backoff_max=0.2)
        w = c.create("tls", 5, id="t")  # retried while a server with TLS starts
        assert c.step("t", "over tls").seq == 2 and c.get("t").message == "over tls"
        with pytest.raises(flowcast.ConnectionFailed) as ei:
            flowcast.Client(base, retries=3).get("t")  # the system store does not know it
        assert ei.value.attempts == 1 and "certificate" in str(ei.value)

        async def main():
            ac = flowcast.AsyncClient(base, ssl=ssl.create_default_context(cafile=cert))
            assert (await ac.get("t")).seq == 2
            with pytest.raises(flowcast.ConnectionFailed):
                await flowcast.AsyncClient(base, retries=3).get("t")
            await ac.create("u", 5, id="u")
            watches = [ac.watch(["t"]), ac.watch(["t", "u"]),
                       flowcast.Watch(base, all=True, ca_file=cert)]
            got = [[], [], []]
            tasks = [asyncio.ensure_future(collect(x, at("t", 4), timeout=30, events=g))
                     for x, g in zip(watches, got)]
            await until(lambda: len(got[0]) == 1 and len(got[1]) == 2)
            await all_watch_ready(ac, got[2])
            await ac.step("t")
            await ac.step("t")
            with pytest.raises(flowcast.ConnectionFailed):
                await collect(flowcast.Watch(base, ["t"]), lambda ev: False, timeout=10)
            return [await t for t in tasks]

        single, multi, every = run(main(), 60)
    finally:
        if proxy:
            proxy.close()
    assert seqs_of(single, "t") == [2, 3, 4] and seqs_of(multi, "t") == [2, 3, 4]
    assert seqs_of(multi, "u") == [1] and seqs_of(every, "t") == [3, 4]
    assert w.epoch == single[0].epoch
