"""libflowcast: changing the watched set of a running watch (fcc_watch_add /
fcc_watch_remove from the update callback, through tests/client/fcc_probe.c
--then-add / --then-remove), and the errors a watch keeps
(fcc_watch_last_error, with the server's own message)."""

import json
import time

from fcc_helpers import probe, updates

EINVAL, ENOTFOUND = -1, -7


def _events(lines, kind):
    return [o for o in map(json.loads, lines) if o["event"] == kind]


def test_add_to_a_running_single_watch_moves_it_to_the_multi_stream(flowcast, server_factory):
    s = server_factory()
    s.create(id="a", name="a", total_steps=10)
    s.create(id="b", name="b", total_steps=10)
    s.patch("b", current_step=1)
    # One id: the single-workflow stream; after a's state, add b.
    p = probe(flowcast, s, "--then-add", "1:b", "a")
    try:
        added = p.wait_for(lambda o: o["event"] == "added", what="added")
        assert added["result"] == 0
        # b's current state arrives (seq 2), from the multi stream the watch moved to.
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "b",
                   what="state of b")
        for i in range(1, 4):
            s.patch("a", current_step=i)
            s.patch("b", current_step=i + 1)
        # Committed in that order (a's last change before b's), so delivered so.
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "a"
                   and o["seq"] == 4, what="a seq 4")
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "b"
                   and o["seq"] == 5, what="b seq 5")
        # a resumed by position across the move: every seq once, in order.
        assert [u["seq"] for u in updates(p.lines, "a")] == [1, 2, 3, 4]
        assert [u["seq"] for u in updates(p.lines, "b")] == [2, 3, 4, 5]
        st = _events(p.lines, "state")
        assert [o["state"] for o in st] == ["connecting", "open", "reconnecting", "connecting",
                                            "open"], st
        assert st[2]["error"] == 0 and st[2]["delay_ms"] == 0 and "multi" in st[2]["reason"]
    finally:
        p.kill()


def test_remove_and_add_again_on_a_running_multi_watch(flowcast, server_factory):
    s = server_factory()
    for wid in ("a", "b"):
        s.create(id=wid, name=wid, total_steps=10)
    # After both states: drop a. After b's next update (3rd): watch a again.
    p = probe(flowcast, s, "--then-remove", "2:a", "--then-add", "3:a", "a", "b")
    try:
        removed = p.wait_for(lambda o: o["event"] == "removed", what="removed")
        assert removed["result"] == 0
        n_before = len(p.lines)
        s.patch("a", current_step=1)  # a is not watched now: never delivered
        s.patch("b", current_step=1)
        p.wait_for(lambda o: o["event"] == "added", what="added")
        # Watched again: a's current state (seq 2), then live changes.
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "a",
                   what="state of a")
        s.patch("a", current_step=2)
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "a"
                   and o["seq"] == 3, what="a seq 3")
        after = updates(p.lines[n_before:], "a")
        assert [u["seq"] for u in after] == [2, 3], after
        assert [u["seq"] for u in updates(p.lines, "b")] == [1, 2]
        # No reconnect: the ops went on the open multi stream.
        assert [o["state"] for o in _events(p.lines, "state")] == ["connecting", "open"]
    finally:
        p.kill()


def test_another_thread_adds_through_an_async_handle_on_the_watch_loop(flowcast, server_factory):
    """The documented way for another thread: a uv_async_t on
    fcc_watch_loop(w) (here the private loop of fcc_watch_run), whose
    callback calls fcc_watch_add on the loop's thread."""
    s = server_factory()
    s.create(id="a", name="a", total_steps=10)
    s.create(id="b", name="b", total_steps=10)
    p = probe(flowcast, s, "--thread-add", "300:b", "--count", "4", "a")
    try:
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "a", what="a")
        added = p.wait_for(lambda o: o["event"] == "added", what="added")
        assert added["result"] == 0 and added["thread"] is True
        p.wait_for(lambda o: o.get("event") == "update" and o["workflow_id"] == "b", what="b")
        s.patch("a", current_step=1)
        s.patch("b", current_step=1)
        # The 4th update closes the watch; fcc_watch_run returns once the
        # application's own handle closed too (in the CLOSED callback).
        assert p.finish(15) == 0
        assert [u["seq"] for u in updates(p.lines, "a")] == [1, 2]
        assert [u["seq"] for u in updates(p.lines, "b")] == [1, 2]
    finally:
        p.kill()


def test_a_running_watch_emptied_by_remove_stays_open(flowcast, server_factory):
    s = server_factory()
    s.create(id="a", name="a", total_steps=10)
    p = probe(flowcast, s, "--then-remove", "1:a", "--then-remove", "1:zz", "a")
    try:
        rm = [p.wait_for(lambda o: o["event"] == "removed", what="removed") for _ in range(2)]
        assert [r["result"] for r in rm] == [0, 0]  # an id not watched: nothing to do
        s.patch("a", current_step=1)
        time.sleep(1.0)
        assert p.proc.poll() is None  # not closed: it waits for fcc_watch_add
        assert updates(p.lines, "a") == [updates(p.lines, "a")[0]]
        assert not [o for o in _events(p.lines, "state") if o["state"] == "closed"]
    finally:
        p.kill()


def test_remove_from_a_watch_of_all_is_refused(flowcast, server_factory):
    s = server_factory()
    p = probe(flowcast, s, "--all", "--then-remove", "1:a")
    try:
        p.wait_for(lambda o: o.get("state") == "open", what="open")
        s.create(id="a", name="a", total_steps=100)
        # subscribe_all may still be on its way: change a until one arrives.
        for i in range(1, 40):
            if any(json.loads(x)["event"] == "update" for x in p.lines):
                break
            s.patch("a", current_step=i)
            try:
                p.wait_for(lambda o: o["event"] == "update", timeout=0.5, what="an update")
            except AssertionError:
                pass
        assert p.wait_for(lambda o: o["event"] == "removed", what="removed")["result"] == EINVAL
    finally:
        p.kill()


def test_watch_keeps_the_servers_error_message(flowcast, server_factory):
    s = server_factory()
    p = probe(flowcast, s, "nope")
    try:
        closed = p.wait_for(lambda o: o.get("state") == "closed", what="closed")
        assert closed["error"] == ENOTFOUND
        assert closed["last_error"] == ENOTFOUND
        # The server's JSON error text, not just the code's name.
        assert "nope" in closed["last_message"], closed
        assert closed["last_message"] == closed["reason"]
        assert p.finish() == 1
    finally:
        p.kill()
