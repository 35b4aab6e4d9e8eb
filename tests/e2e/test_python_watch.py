"""The Python client's async watch against the real server: single, multi
and all streams; since positions; kill -9 and restart mid-stream; a
workflow deleted and created again; resync; errors, backoff bounds and
close(); the README examples."""

import asyncio
import os
import random
import threading

import pytest

from fc_helpers import run
from fcc_helpers import recreate_while_away, restart_same_port
from pyclient_helpers import (all_watch_ready, assert_three_exact, at, collect, flowcast,
                              seqs_of, start_three_watches, step_randomly, until, url)


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


def test_updates_carry_the_name_and_a_deletion_none(server):
    """Issue 11 §1: Update.name is the workflow's name, from the update
    itself (the stream's first state, a live change, the history's events),
    so nothing needs a GET; a Deletion has no name."""
    name = 'Nächtlicher Build "q" \\ 夜间'
    c = flowcast.Client(url(server))
    c.create(name, 3, id="n")

    async def main():
        ac = flowcast.AsyncClient(url(server))
        evs = []
        task = asyncio.ensure_future(collect(ac.watch(["n"]), lambda e: len(e) == 3, timeout=30,
                                             events=evs))
        await until(lambda: len(evs) == 1)
        await ac.step("n")
        hist = await ac.history("n")
        await until(lambda: len(evs) == 2)
        await ac.delete("n")
        return await task, hist

    evs, hist = run(main(), 60)
    assert [(type(e).__name__, e.seq, getattr(e, "name", "-")) for e in evs] == \
        [("Update", 1, name), ("Update", 2, name), ("Deletion", 3, "-")], evs
    assert [(e.seq, e.name) for e in hist.events] == [(1, name), (2, name)]
    assert flowcast.Update.from_json({"workflow_id": "o", "seq": 1, "status": "running",
                                      "current_step": 0, "total_steps": 1}).name is None


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

    async def main():
        ac = flowcast.AsyncClient(url(s), retries=60, backoff_max=0.3)
        tasks, states = await start_three_watches(ac, n + 1)
        producers = [asyncio.ensure_future(step_randomly(ac, w, n)) for w in ("a", "b", "c")]
        await asyncio.sleep(0.4)  # mid-stream
        if how == "kill9":
            await asyncio.to_thread(s.kill9)
        else:
            assert await asyncio.to_thread(s.stop) == 0
        await asyncio.sleep(0.5)
        holder["s"] = await asyncio.to_thread(restart_same_port, server_factory, s)
        await asyncio.gather(*producers)
        return [await t for t in tasks], states

    events, states = run(main(), 120)
    s2 = holder["s"]
    for wid in ("a", "b", "c"):
        assert s2.get(wid)["seq"] == n + 1
    assert_three_exact(events, n + 1)
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


def test_watch_add_and_remove_while_running(server):
    """add() on a single stream reopens it as a multi stream, resuming by
    position (nothing lost); add() on a multi stream subscribes at once;
    remove() unsubscribes; removing the last id ends the watch."""
    for wid in ("a", "b", "c"):
        server.create(id=wid, total_steps=50)

    async def main():
        ac = flowcast.AsyncClient(url(server))
        states, got = [], []
        w = ac.watch(["a"], on_state=states.append)
        t = asyncio.ensure_future(collect(w, lambda ev: False, events=got))
        await until(lambda: len(got) == 1)
        await ac.step("a")  # seq 2
        await until(lambda: at("a", 2)(got))
        await w.add(["b", "a"])  # a is watched already
        await ac.step("a")  # seq 3: on whichever stream, exactly once
        await until(lambda: at("a", 3)(got) and at("b", 1)(got))
        assert w._conn_single is None  # reopened as a multi stream
        await w.add(["c"], since={"c": (0, 0)})  # whole history of c: its seq 1
        await until(lambda: at("c", 1)(got))
        await w.remove(["a"])
        await ac.step("a")  # seq 4: not delivered
        await ac.step("b")  # seq 2
        await until(lambda: at("b", 2)(got))
        await w.remove(["b", "c"])
        await asyncio.wait_for(t, 10)  # nothing left: the watch ended
        return got, states

    got, states = run(main(), 40)
    assert seqs_of(got, "a") == [1, 2, 3] and seqs_of(got, "b") == [1, 2]
    assert seqs_of(got, "c") == [1]
    names = [x.state for x in states]
    assert names.count("open") == 2 and names[-1] == "closed", names
    assert [x.reason for x in states if x.state == "reconnecting"] == \
        ["the watched set changed: reopening"]
