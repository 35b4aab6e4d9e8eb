"""End-to-end tests of the clients across a delete and re-create of a watched
workflow (issue 8 item 1): libflowcast (through tests/client/fcc_probe.c) and
`flowcast watch --json` resume with (epoch, seq) and see the old incarnation's
deletion and the new one's state with resync, never a silent continuation;
a list of ids with repeats is one subscription (item 3)."""

import json
import time

import pytest

from fcc_helpers import LineProc, probe, recreate_while_away, restart_same_port, updates


def shape(u):
    """(epoch, seq, d|r|'') of an update line of the probe."""
    return (u["epoch"], u["seq"], "d" if u["deleted"] else "r" if u["resync"] else "")


@pytest.mark.parametrize("mode", ["single", "multi", "all"])
def test_probe_resumes_across_recreate(flowcast, server_factory, mode):
    s = server_factory()
    s.create(id="w", name="w", total_steps=10)
    s.create(id="b", name="b", total_steps=10)
    args = {"single": ["w"], "multi": ["w", "b"], "all": ["--all"]}[mode]
    p = probe(flowcast, s, "--backoff-max", "300", *args)
    try:
        p.wait_for(lambda o: o.get("state") == "open", what="open")
        if mode == "all":  # all mode knows the ids it has seen change: subscribed first
            time.sleep(0.3)
        s.patch("w", current_step=1)
        s.patch("w", current_step=2)
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "w"
                   and o["seq"] == 3, what="w at seq 3")
        before = len(updates(p.lines, "w"))
        s2, old, new = recreate_while_away(server_factory, s, "w")
        e1, e2 = old["epoch"], new["epoch"]
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "w"
                   and o["resync"], timeout=15, what="the new incarnation")
        s2.patch("w", current_step=5, message="live")
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "w"
                   and o["seq"] == 4, timeout=10, what="a live change of the new one")
        got = [shape(u) for u in updates(p.lines, "w")]
        # Before: the old incarnation, 1..3 (all mode saw only the patches).
        assert got[:before] == [(e1, q, "") for q in range(4 - before, 4)], got
        # After: its deletion (seq 4), the new one's state (seq 3) with resync,
        # then its changes; nothing of the new one as if it continued the old.
        assert got[before:] == [(e1, 4, "d"), (e2, 3, "r"), (e2, 4, "")], got
        raw = [u["raw"] for u in updates(p.lines, "w")]
        assert raw[before]["deleted"] is True and raw[before]["epoch"] == e1
        assert raw[before + 1]["epoch"] == e2 and raw[before + 1]["current_step"] == 2
        if mode == "multi":  # the other workflow is resumed as before, nothing repeated
            s2.patch("b", current_step=1)
            p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "b"
                       and o["seq"] == 2)
            assert [shape(u)[1:] for u in updates(p.lines, "b")] == [(1, ""), (2, "")]
    finally:
        p.kill()


@pytest.mark.parametrize("ids", [["w"], ["w", "b"]])
def test_probe_position_from_an_earlier_process(flowcast, server_factory, ids):
    """An application that kept (epoch, seq) resumes with both; one that kept
    only seq (no epoch) gets the current state with resync, not seq 4 of the
    new incarnation as if it continued."""
    s = server_factory()
    s.create(id="b", name="b", total_steps=10)
    old = s.create(id="w", name="w", total_steps=10)
    s.patch("w", current_step=1)
    s.patch("w", current_step=2)
    s.delete("w")
    s.create(id="w", name="w", total_steps=10)
    s.patch("w", current_step=1)
    new = s.patch("w", current_step=2)
    e1, e2 = old["epoch"], new["epoch"]
    for since, deletion in (("w=%d:3" % e1, [(e1, 4, "d")]), ("w=3", [])):
        cur = s.get("w")["seq"]
        want = deletion + [(e2, cur, "r"), (e2, cur + 1, "")]
        p = probe(flowcast, s, "--since", since, *ids[1:])
        try:
            p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "w"
                       and o["resync"], what="resync")
            s.patch("w", current_step=3)
            p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "w"
                       and not o["resync"])
            got = [shape(u) for u in updates(p.lines, "w")]
            assert got == want, (since, got)
        finally:
            p.kill()


def test_probe_deleted_while_away_ends_single_watch(flowcast, server_factory):
    s = server_factory()
    s.create(id="w", name="w", total_steps=10)
    p = probe(flowcast, s, "--backoff-max", "300", "w")
    try:
        first = p.wait_for(lambda o: o.get("event") == "update")
        assert s.stop() == 0
        p.wait_for(lambda o: o.get("state") == "reconnecting")
        other = server_factory(db=s.db)
        other.delete("w")
        assert other.stop() == 0
        restart_same_port(server_factory, s)
        d = p.wait_for(lambda o: o.get("event") == "update" and o["deleted"], timeout=15)
        assert (d["epoch"], d["seq"]) == (first["epoch"], 2), d
        closed = p.wait_for(lambda o: o.get("state") == "closed")
        assert closed["error"] == 0, closed
        assert p.finish() == 0
        assert len(updates(p.lines)) == 2
    finally:
        p.kill()


@pytest.mark.parametrize("ids", [["a", "a"], ["a", "a", "b", "a"]])
def test_probe_repeated_ids_are_one_subscription(flowcast, server_factory, ids):
    s = server_factory()
    s.create(id="a", name="a", total_steps=10)
    s.create(id="b", name="b", total_steps=10)
    p = probe(flowcast, s, *ids)
    try:
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "a")
        s.patch("a", current_step=1)
        s.patch("a", current_step=2)
        s.patch("b", current_step=1)
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "a"
                   and o["seq"] == 3)
        if "b" in ids:
            p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "b"
                       and o["seq"] == 2)
        time.sleep(0.3)  # room for a duplicate to show up
        p.kill()
        assert [u["seq"] for u in updates(p.lines, "a")] == [1, 2, 3]
        assert [u["seq"] for u in updates(p.lines, "b")] == ([1, 2] if "b" in ids else [])
    finally:
        p.kill()


def test_watch_json_resumes_across_recreate(flowcast, server_factory):
    s = server_factory()
    s.create(id="w", name="w", total_steps=10)
    s.patch("w", current_step=1)
    env = {"FLOWCAST_URL": "http://127.0.0.1:%d" % s.port}
    p = LineProc([flowcast, "watch", "--json", "w", "w"], env=env)
    try:
        p.wait_for(lambda o: o["seq"] == 2)
        s.patch("w", current_step=2)
        p.wait_for(lambda o: o["seq"] == 3)
        s2, old, new = recreate_while_away(server_factory, s, "w")
        p.wait_for(lambda o: o.get("resync"), timeout=15, what="the new incarnation")
        s2.patch("w", current_step=9)
        p.wait_for(lambda o: o["epoch"] == new["epoch"] and o["seq"] == 4, timeout=10)
        lines = [json.loads(x) for x in p.lines]
        got = [(o["epoch"], o["seq"], "d" if o.get("deleted") else "r" if o.get("resync") else "")
               for o in lines]
        e1, e2 = old["epoch"], new["epoch"]
        assert got == [(e1, 2, ""), (e1, 3, ""), (e1, 4, "d"), (e2, 3, "r"), (e2, 4, "")], got
        assert lines[3]["current_step"] == 2 and lines[4]["current_step"] == 9
    finally:
        p.kill()


def test_watch_json_plain_reconnect_resumes(flowcast, server_factory):
    """A restart without a re-creation: `flowcast watch` resumes with (epoch,
    seq); every change once, in order, no resync."""
    s = server_factory()
    s.create(id="w", name="w", total_steps=10)
    env = {"FLOWCAST_URL": "http://127.0.0.1:%d" % s.port}
    p = LineProc([flowcast, "watch", "--json", "w"], env=env)
    try:
        p.wait_for(lambda o: o["seq"] == 1)
        s.patch("w", current_step=1)
        p.wait_for(lambda o: o["seq"] == 2)
        s.kill9()
        s2 = restart_same_port(server_factory, s)
        for i in range(2, 5):
            s2.patch("w", current_step=i)
        p.wait_for(lambda o: o["seq"] == 5, timeout=15)
        lines = [json.loads(x) for x in p.lines]
        assert [o["seq"] for o in lines] == [1, 2, 3, 4, 5]
        assert len({o["epoch"] for o in lines}) == 1
        assert not any(o.get("resync") or o.get("deleted") for o in lines)
    finally:
        p.kill()
