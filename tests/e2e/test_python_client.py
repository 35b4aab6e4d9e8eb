"""The Python client package (clients/python, `flowcast`) against the real
server, under Debian's /usr/bin/python3: the package installs with pip;
the watch's dedupe rule; the sync and async REST helpers (if_seq,
idempotent retries of lost answers, retries across a restart, a closed
keep-alive connection and a rate limit). Watches: test_python_watch.py;
tokens and TLS: test_python_auth.py."""

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from fc_helpers import run
from fcc_helpers import restart_same_port
from pyclient_helpers import AnswerDropper, flowcast, url


# ---------------------------------------------------------------- package

def test_package_installs_with_pip_and_imports(tmp_path):
    """clients/python is a standard package: pip builds and installs it
    from pyproject.toml (offline, Debian's setuptools), with py.typed."""
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
    with pytest.raises(ValueError):
        c.update(w.id, message="x", idempotency_key="has space")
    for bad in ("", "two words", "x" * 4097):
        with pytest.raises(ValueError):
            flowcast.Client(url(server), bad)
    with pytest.raises(ValueError):
        flowcast.Client("ftp://127.0.0.1")
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
    # Retries outlast the restart (up to 15 s in restart_same_port under load).
    c = flowcast.Client(url(s), retries=200, backoff_max=0.3)
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
        time.sleep(0.8)  # the server closes the idle connection meanwhile
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
