"""Several server URLs in libflowcast and the flowcast CLI (issue 10 §3):
the watch and the REST calls move on to the next URL of "URL,URL" when a
server cannot be reached or is lost, a watch resumes by (epoch, seq) there
exactly as on one server, and the backoff delay comes once per full round.

The second "node" is real: two flowcast processes cannot share one SQLite
file at once (its lock refuses the second), so after server A is killed
with kill -9 the same database is opened by a new process on URL B's port.
Nothing is lost, nothing repeated, and the watch ends up on B."""

import json
import threading
import time

import pytest

from fc_helpers import free_port
from fcc_helpers import LineProc, LosingGateway, cli, cli_json, probe, restart_same_port, updates

ECONNECT = -3


def _url(port):
    return "http://127.0.0.1:%d" % port


def _states(lines):
    return [o for o in map(json.loads, lines) if o["event"] == "state"]


def _patch_retrying(ref, wid, step, deadline):
    """PATCHes through whichever server ref[0] is until one acknowledges."""
    while time.monotonic() < deadline:
        try:
            r = ref[0].request("PATCH", "/api/workflows/" + wid,
                               {"current_step": step, "message": "step %d" % step}, timeout=2)
            if r.status == 200:
                return r.json()["seq"]
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError("PATCH %s step %d never acknowledged" % (wid, step))


def test_watch_skips_a_dead_first_url_without_waiting(flowcast, server_factory):
    s = server_factory()
    s.create(id="a", name="a", total_steps=10)
    dead = free_port()  # nothing listens: connection refused
    # A long backoff: were the move to the second URL delayed by it, the
    # watch would not open within the test's bounds.
    p = probe(flowcast, s, "--backoff-max", "60000", "a",
              url="%s,%s" % (_url(dead), _url(s.port)))
    try:
        opened = p.wait_for(lambda o: o.get("state") == "open", what="open")
        assert opened["url"] == _url(s.port)
        first = p.wait_for(lambda o: o.get("event") == "update", what="state of a")
        assert first["seq"] == 1
        for i in range(1, 4):
            s.patch("a", current_step=i)
        p.wait_for(lambda o: o.get("event") == "update" and o["seq"] == 4, what="seq 4")
        rec = [o for o in _states(p.lines) if o["state"] == "reconnecting"]
        # One refused connect, then straight on to the next URL: mid-round, no delay.
        assert len(rec) == 1, rec
        assert rec[0]["error"] == ECONNECT and rec[0]["delay_ms"] == 0, rec
        assert "127.0.0.1:%d" % dead in rec[0]["reason"], rec
        assert rec[0]["url"] == _url(s.port)
        assert rec[0]["last_error"] == ECONNECT and rec[0]["last_message"] == rec[0]["reason"]
        assert [u["seq"] for u in updates(p.lines, "a")] == [1, 2, 3, 4]
    finally:
        p.kill()


@pytest.mark.parametrize("mode", ["single", "multi", "all"])
def test_watch_fails_over_to_the_next_url_after_kill9(flowcast, server_factory, mode):
    """A (first URL) dies with kill -9 mid-stream; B (second URL) is the same
    database opened by a new process on another port once A is gone. The
    watch moves to B and resumes by (epoch, seq): every seq once, in order."""
    a = server_factory()
    b_port = free_port()
    ids = ["a", "b"] if mode != "single" else ["a"]
    for wid in ids:
        a.create(id=wid, name=wid, total_steps=1000)
    args = ["--backoff-max", "400"]
    if mode == "all":
        args += ["--all"] + [x for wid in ids for x in ("--since", "%s=1" % wid)]
    else:
        args += ids
    p = probe(flowcast, a, *args, url="%s,%s" % (_url(a.port), _url(b_port)))
    try:
        p.wait_for(lambda o: o.get("state") == "open", what="open")
        if mode != "all":
            for wid in ids:
                p.wait_for(lambda o, w=wid: o.get("event") == "update" and o["workflow_id"] == w,
                           what="state of " + wid)
        ref = [a]
        acked = {wid: [] for wid in ids}
        stop = threading.Event()

        def producer():
            deadline = time.monotonic() + 40
            for step in range(1, 61):
                if stop.is_set():
                    return
                for wid in ids:
                    acked[wid].append(_patch_retrying(ref, wid, step, deadline))
                time.sleep(0.005)

        t = threading.Thread(target=producer)
        t.start()
        time.sleep(0.15)  # mid-stream
        a.kill9()
        p.wait_for(lambda o: o.get("state") == "reconnecting", what="reconnecting")
        time.sleep(0.3)  # the watch goes round both dead URLs meanwhile
        b = restart_same_port(server_factory, a, port=b_port)
        ref[0] = b
        t.join(45)
        stop.set()
        assert not t.is_alive()
        final = {wid: b.get(wid)["seq"] for wid in ids}
        for wid in ids:
            p.wait_for(lambda o, w=wid: o.get("event") == "update" and o["workflow_id"] == w
                       and o["seq"] == final[w], timeout=20, what="last seq of " + wid)
            ups = updates(p.lines, wid)
            assert len({u["epoch"] for u in ups}) == 1
            first = 2 if mode == "all" else 1
            got = [u["seq"] for u in ups]
            assert got == list(range(first, final[wid] + 1)), got  # no gap, no repeat
            assert set(acked[wid]) <= set(got)
        states = _states(p.lines)
        opens = [o for o in states if o["state"] == "open"]
        assert opens[0]["url"] == _url(a.port) and opens[-1]["url"] == _url(b_port), opens
        # Backoff per full round: moving from A (where the failures began)
        # to B is immediate; only coming round to A again waits.
        rec = [o for o in states if o["state"] == "reconnecting"]
        assert rec and rec[0]["url"] == _url(b_port) and rec[0]["delay_ms"] == 0, rec
        assert all(o["delay_ms"] == 0 for o in rec if o["url"] == _url(b_port)), rec
        assert all(o["delay_ms"] <= 400 for o in rec), rec
    finally:
        p.kill()


def test_cli_rest_and_watch_take_a_list_of_servers(flowcast, server_factory):
    s = server_factory()
    dead = free_port()
    servers = "127.0.0.1:%d,127.0.0.1:%d" % (dead, s.port)  # bare host:port means http://
    w = cli_json(flowcast, s, "--server", servers, "create", "job", "--steps", "3", "--id", "j")
    assert w["seq"] == 1
    env = {"FLOWCAST_URL": "%s, %s" % (_url(dead), _url(s.port))}
    w = cli_json(flowcast, s, "update", "j", "--step", "1", env=env)
    assert w["current_step"] == 1 and w["seq"] == 2
    w = cli_json(flowcast, s, "step", "j", "--server", servers)
    assert w["current_step"] == 2
    assert cli_json(flowcast, s, "get", "j", env=env)["seq"] == 3
    # The watch: JSON lines of the state, then a change, from the second URL.
    e = {"FLOWCAST_URL": "%s,%s" % (_url(dead), _url(s.port))}
    p = LineProc([flowcast, "watch", "j", "--json"], env=e)
    try:
        first = p.wait_for(lambda o: o.get("workflow_id") == "j", what="state of j")
        assert first["seq"] == 3
        s.patch("j", current_step=3, status="completed")
        p.wait_for(lambda o: o.get("seq") == 4, what="seq 4")
    finally:
        p.kill()
    # A list may mix https and http: TLS only for the https URLs.
    mixed = "https://127.0.0.1:%d,%s" % (dead, _url(s.port))
    assert cli_json(flowcast, s, "--server", mixed, "get", "j")["seq"] == 4
    p = LineProc([flowcast, "watch", "j", "--json", "--server", mixed])
    try:
        assert p.wait_for(lambda o: o.get("workflow_id") == "j", what="j")["seq"] == 4
    finally:
        p.kill()
    r = cli(flowcast, s, "--server", "http://127.0.0.1:%d,ftp://x" % s.port, "get", "j")
    assert r.returncode == 2 and "invalid server URL" in r.stderr, r


def test_rest_change_lost_at_a_gateway_is_applied_once_via_the_next_url(flowcast, server_factory):
    s = server_factory()
    s.create(id="w", name="w", total_steps=10)
    gw = LosingGateway(s.port)
    try:
        servers = "%s,%s" % (gw.url, _url(s.port))
        w = cli_json(flowcast, s, "--server", servers, "update", "w", "--step", "5",
                     "--idempotency-key", "k-gw-1")
        # The gateway's forward committed seq 2; the retry on the server is
        # answered with that first answer: applied once.
        assert w["seq"] == 2 and w["current_step"] == 5, w
        assert s.get("w")["seq"] == 2
        assert len(gw.requests) == 1
        assert b"Idempotency-Key: k-gw-1" in gw.requests[0]
        # A 503 moves a read and a change on to the next URL as well.
        assert cli_json(flowcast, s, "--server", servers, "get", "w")["seq"] == 2
        w = cli_json(flowcast, s, "--server", servers, "update", "w", "--step", "6")
        assert w["seq"] == 3 and len(gw.requests) == 3
    finally:
        gw.close()


def test_rest_gives_up_after_its_retries_over_every_url(flowcast, server_factory):
    s = server_factory()
    d1, d2 = free_port(), free_port()
    t0 = time.monotonic()
    r = cli(flowcast, s, "--server", "%s,%s" % (_url(d1), _url(d2)), "create", "x",
            "--steps", "1", "--retries", "3")
    assert r.returncode == 1
    assert "cannot connect to" in r.stderr and ("127.0.0.1:%d" % d2 in r.stderr
                                                or "127.0.0.1:%d" % d1 in r.stderr), r
    assert time.monotonic() - t0 < 15
