"""End-to-end tests of libflowcast (driven through tests/client/fcc_probe.c):
reconnect and resume across a server restart on the same database with no
change lost, duplicated or reordered; backoff states; dead-server detection
by ping timeout (SIGSTOP); deletion; unknown workflows."""

import json
import signal
import threading
import time

import pytest

from fcc_helpers import probe, restart_same_port, updates


def _patch_retrying(server_ref, wid, step, deadline):
    """PATCHes until the server acknowledges (it may be down for a while)."""
    while time.monotonic() < deadline:
        try:
            r = server_ref[0].request("PATCH", "/api/workflows/" + wid,
                                      {"current_step": step, "message": "step %d" % step},
                                      timeout=2)
            if r.status == 200:
                return r.json()["seq"]
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError("PATCH %s step %d never acknowledged" % (wid, step))


@pytest.mark.parametrize("mode", ["single", "multi", "all"])
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_resume_across_restart_loses_nothing(flowcast, server_factory, mode, how):
    s = server_factory()
    ids = ["a", "b"] if mode != "single" else ["a"]
    for wid in ids:
        s.create(id=wid, name=wid, total_steps=1000)
    args = ["--backoff-max", "300"]
    if mode == "all":  # resume from the creation: seq 1 is known, history starts at 2
        args += ["--all"] + [x for wid in ids for x in ("--since", "%s=1" % wid)]
    else:
        args += ids
    p = probe(flowcast, s, *args)
    try:
        p.wait_for(lambda o: o.get("state") == "open", what="open")
        if mode != "all":  # subscribed: the initial states are seq 1, before any change
            for wid in ids:
                p.wait_for(lambda o, w=wid: o.get("event") == "update" and o["workflow_id"] == w,
                           what="state of " + wid)
        ref = [s]
        stop = threading.Event()
        acked = {wid: [] for wid in ids}

        def producer():
            deadline = time.monotonic() + 30
            step = 0
            while not stop.is_set() and step < 60:
                step += 1
                for wid in ids:
                    acked[wid].append(_patch_retrying(ref, wid, step, deadline))
                time.sleep(0.005)

        t = threading.Thread(target=producer)
        t.start()
        time.sleep(0.15)  # mid-stream
        if how == "kill9":
            s.kill9()
        else:
            assert s.stop() == 0
        p.wait_for(lambda o: o.get("state") == "reconnecting", what="reconnecting")
        time.sleep(0.3)
        ref[0] = restart_same_port(server_factory, s)
        t.join(40)
        assert not t.is_alive()
        final = {wid: ref[0].get(wid)["seq"] for wid in ids}
        for wid in ids:
            p.wait_for(lambda o, w=wid: o.get("event") == "update" and o["workflow_id"] == w
                       and o["seq"] == final[w], timeout=15, what="last seq of " + wid)
            got = [u["seq"] for u in updates(p.lines, wid)]
            # One incarnation throughout, resumed by (epoch, seq).
            assert len({u["epoch"] for u in updates(p.lines, wid)}) == 1
            first = 2 if mode == "all" else 1
            # Every change once, in order: the seqs are exactly first..final.
            assert got == list(range(first, final[wid] + 1)), got
            assert set(acked[wid]) <= set(got)
            # The content follows the producer: steps never go back and every
            # step arrived. (Not "step N is seq N+1": a PATCH whose answer was
            # lost in the kill may have been committed, and its retry then
            # commits the same step again under the next seq.)
            steps = [u["current_step"] for u in updates(p.lines, wid) if u["seq"] > 1]
            assert steps == sorted(steps), steps
            assert set(steps) == set(range(1, max(steps) + 1)), steps
        states = [o for o in map(json.loads, p.lines) if o["event"] == "state"]
        assert sum(1 for o in states if o["state"] == "open") >= 2
        rec = [o for o in states if o["state"] == "reconnecting"]
        assert rec[0]["attempt"] == 1 and 0 <= rec[0]["delay_ms"] <= 100, rec
    finally:
        p.kill()


def test_backoff_attempts_grow_and_max_retries_closes(flowcast, server_factory):
    s = server_factory()
    s.create(id="w", total_steps=5)
    p = probe(flowcast, s, "--max-retries", "4", "--backoff-max", "400", "w")
    try:
        p.wait_for(lambda o: o.get("state") == "open")
        s.kill9()
        rec = []
        while len(rec) < 4:
            rec.append(p.wait_for(lambda o: o.get("state") == "reconnecting", timeout=5))
        assert [r["attempt"] for r in rec] == [1, 2, 3, 4]
        for r in rec:
            ceiling = min(400, 100 * 2 ** (r["attempt"] - 1))
            assert 0 <= r["delay_ms"] <= ceiling, r
        closed = p.wait_for(lambda o: o.get("state") == "closed", timeout=5)
        assert closed["error"] == -8 and "gave up after 4 retries" in closed["reason"], closed
        assert p.finish() == 1
    finally:
        p.kill()


def test_dead_server_detected_by_ping_timeout(flowcast, server_factory):
    s = server_factory()
    s.create(id="w", total_steps=5)
    p = probe(flowcast, s, "--ping", "300", "--pong", "400", "--connect-timeout", "500",
              "--backoff-max", "200", "w")
    try:
        p.wait_for(lambda o: o.get("state") == "open")
        p.wait_for(lambda o: o.get("event") == "update" and o["seq"] == 1)
        s.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            rec = p.wait_for(lambda o: o.get("state") == "reconnecting", timeout=5)
            took = time.monotonic() - t0
            assert rec["error"] == -4 and "after a ping" in rec["reason"], rec
            assert took < 2.0, took
            # While stopped, connects hang in the handshake and time out too.
            rec2 = p.wait_for(lambda o: o.get("state") == "reconnecting", timeout=5)
            assert rec2["error"] == -4 and rec2["attempt"] >= 2, rec2
        finally:
            s.proc.send_signal(signal.SIGCONT)
        p.wait_for(lambda o: o.get("state") == "open", timeout=10)
        s.patch("w", current_step=1)
        u = p.wait_for(lambda o: o.get("event") == "update" and o["seq"] == 2, timeout=5)
        assert u["current_step"] == 1
        assert [x["seq"] for x in updates(p.lines, "w")] == [1, 2]
    finally:
        p.kill()


def test_idle_connection_stays_open_with_client_pings(flowcast, server_factory):
    s = server_factory()
    s.create(id="w", total_steps=5)
    p = probe(flowcast, s, "--ping", "100", "--pong", "300", "w")
    try:
        p.wait_for(lambda o: o.get("state") == "open")
        time.sleep(1.5)  # many ping/pong rounds, no data
        s.patch("w", current_step=2)
        p.wait_for(lambda o: o.get("event") == "update" and o["seq"] == 2)
        assert not [x for x in p.lines if '"reconnecting"' in x]
    finally:
        p.kill()


def test_deleted_workflow_ends_single_watch(flowcast, server_factory):
    s = server_factory()
    s.create(id="w", total_steps=5)
    p = probe(flowcast, s, "w")
    try:
        p.wait_for(lambda o: o.get("event") == "update")
        s.delete("w")
        d = p.wait_for(lambda o: o.get("event") == "update" and o["deleted"])
        assert d["seq"] == 2
        closed = p.wait_for(lambda o: o.get("state") == "closed")
        assert closed["error"] == 0
        assert p.finish() == 0
    finally:
        p.kill()


def test_multi_watch_deleted_while_away(flowcast, server_factory):
    s = server_factory()
    s.create(id="a", total_steps=5)
    s.create(id="b", total_steps=5)
    p = probe(flowcast, s, "--backoff-max", "200", "a", "b")
    try:
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "b")
        s.stop()
        p.wait_for(lambda o: o.get("state") == "reconnecting")
        s2 = restart_same_port(server_factory, s)
        # Whether these happen before or after the reconnect, the result is the same.
        s2.delete("a")
        s2.patch("b", current_step=3)
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "a" and o["deleted"])
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "b" and o["seq"] == 2)
        assert [u["seq"] for u in updates(p.lines, "b")] == [1, 2]
    finally:
        p.kill()


def test_unknown_workflow_closes_with_not_found(flowcast, server_factory):
    s = server_factory()
    s.create(id="a", total_steps=5)
    for ids in (["nope"], ["a", "nope"]):
        p = probe(flowcast, s, *ids)
        try:
            closed = p.wait_for(lambda o: o.get("state") == "closed")
            assert closed["error"] == -7 and 'no workflow with id "nope"' in closed["reason"], closed
            assert p.finish() == 1
        finally:
            p.kill()
