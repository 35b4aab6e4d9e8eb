"""The fallback transports: Server-Sent Events (one and several workflows,
resume by Last-Event-ID and ?since=, heartbeats), long-poll
(?wait_since=&timeout=) and the event history endpoint
(/history?since=&limit=)."""

import urllib.parse
import json
import socket
import threading
import time

import pytest

from fc_helpers import (HOST, SockReader, assert_beats_leave_at_their_tick, assert_error,
                        assert_update, assert_workflow, connect, http_request_bytes)
from test_tls import ctx_for, p, pki, tls_flags  # noqa: F401 (pki: the fixture)


class SSE:
    """A raw Server-Sent Events client on a blocking socket: sock, an open
    connection to server (one wrapped in TLS, say), or a new one."""

    def __init__(self, server, path, headers=None, sock=None):
        self.sock = sock or connect(server.port)
        self.rd = SockReader(self.sock)
        h = {"Accept": "text/event-stream"}
        h.update(headers or {})
        self.sock.sendall(http_request_bytes("GET", path, server.port, h))
        self.resp = self.rd.read_response(5.0, head_only=True)

    def event(self, timeout=5.0):
        """Next event as (id, data as JSON); comment-only blocks are skipped."""
        while True:
            block = self.rd.read_until(b"\n\n", timeout).decode("utf-8")
            fields = {}
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue
                k, _, v = line.partition(":")
                fields[k] = v[1:] if v.startswith(" ") else v
            if "data" in fields:
                return fields.get("id"), json.loads(fields["data"])

    def events(self, n, timeout=5.0):
        return [self.event(timeout) for _ in range(n)]

    def silent(self, duration=0.3):
        """True when no event arrives within duration seconds."""
        try:
            ev = self.event(duration)
        except (TimeoutError, OSError):
            return True
        raise AssertionError("unexpected event %r" % (ev,))

    def close(self):
        self.sock.close()


def _eid(m):
    """The SSE event id of a message: its epoch and seq ("E:N")."""
    return "%d:%d" % (m["epoch"], m["seq"])


def _sse_ok(s):
    assert s.resp.status == 200, s.resp
    assert s.resp.header("content-type", "").startswith("text/event-stream"), s.resp


def _events(wid):
    return "/api/workflows/%s/events" % wid


# ---------------------------------------------------------------- one-workflow SSE

def test_sse_first_event_is_current_state(server):
    server.create(id="a", total_steps=5)
    w = server.patch("a", status="running", current_step=2, message="two")
    s = SSE(server, _events("a"))
    _sse_ok(s)
    eid, m = s.event()
    assert_update(m, "a")
    assert eid == "%d:2" % w["epoch"]
    assert (m["seq"], m["status"], m["current_step"], m["message"]) == (2, "running", 2, "two")
    assert m["timestamp"] == w["updated_at"]
    assert "resync" not in m
    assert s.silent()
    s.close()


def test_sse_live_events_in_order(server):
    e = server.create(id="a")["epoch"]
    s = SSE(server, _events("a"))
    assert s.event()[0] == "%d:1" % e
    for i in range(1, 4):
        server.patch("a", current_step=i, message="m%d" % i)
    got = s.events(3)
    assert [e[0] for e in got] == ["%d:%d" % (e, n) for n in (2, 3, 4)]
    assert [(m["seq"], m["current_step"], m["message"]) for _, m in got] == \
        [(2, 1, "m1"), (3, 2, "m2"), (4, 3, "m3")]
    for _, m in got:
        assert_update(m, "a")
    s.close()


def test_sse_resume_with_last_event_id(server):
    """A legacy bare seq still resumes a workflow never deleted; ids are E:N."""
    e = server.create(id="a")["epoch"]
    for i in range(1, 5):
        server.patch("a", current_step=i)  # seq 5
    s = SSE(server, _events("a"), {"Last-Event-ID": "2"})
    _sse_ok(s)
    got = s.events(3)
    assert [(e[0], m["seq"], m["current_step"]) for e in got for m in [e[1]]] == \
        [("%d:3" % e, 3, 2), ("%d:4" % e, 4, 3), ("%d:5" % e, 5, 4)]
    assert s.silent()
    server.patch("a", current_step=5)
    assert s.event()[0] == "%d:6" % e
    s.close()


def test_sse_resume_with_since_query(server):
    server.create(id="a")
    for i in range(1, 4):
        server.patch("a", current_step=i)  # seq 4
    s = SSE(server, _events("a") + "?since=2")
    _sse_ok(s)
    assert [e[1]["seq"] for e in s.events(2)] == [3, 4]
    assert s.silent()
    s.close()


def test_sse_resume_at_current_seq_waits_for_next_change(server):
    server.create(id="a")
    server.patch("a", current_step=1)
    s = SSE(server, _events("a"), {"Last-Event-ID": "2"})
    _sse_ok(s)
    assert s.silent(0.4)
    server.patch("a", current_step=2)
    eid, m = s.event()
    assert (eid, m["seq"], m["current_step"]) == (_eid(m), 3, 2)
    assert eid.endswith(":3")
    s.close()


def test_sse_since_zero_replays_from_create(server):
    server.create(id="a", total_steps=3)
    server.patch("a", current_step=1)
    s = SSE(server, _events("a") + "?since=0")
    got = s.events(2)
    assert [(m["seq"], m["current_step"]) for _, m in got] == [(1, 0), (2, 1)]
    s.close()


def test_sse_unknown_workflow_404(server):
    assert_error(server.request("GET", _events("nope")), 404, "not_found")
    assert_error(server.request("GET", "/api/events?workflow_ids=nope"), 404, "not_found")


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "99999999999999999999999"])
def test_sse_bad_last_event_id_400(server, value):
    server.create(id="a")
    r = server.request("GET", _events("a"), headers={"Last-Event-ID": value})
    assert_error(r, 400, "bad_request")


def test_sse_bad_since_query_400(server):
    server.create(id="a")
    assert_error(server.request("GET", _events("a") + "?since=x"), 400, "bad_request")
    assert_error(server.request("GET", _events("a") + "?since=-3"), 400, "bad_request")


def test_sse_delete_ends_single_stream(server):
    server.create(id="a")
    server.patch("a", current_step=1)
    e = server.get("a")["epoch"]
    s = SSE(server, _events("a"))
    assert s.event()[0] == "%d:2" % e
    server.delete("a")
    eid, m = s.event()
    assert m["workflow_id"] == "a" and m["deleted"] is True and m["seq"] == 3, m
    assert m["epoch"] == e
    assert eid == "%d:3" % e
    assert s.rd.at_eof(5.0), "the stream must end after the deletion"
    s.close()


HEARTBEAT = b": keep-alive\n\n"


def test_sse_heartbeat_every_interval(server_factory):
    """A quiet stream gets a ": keep-alive" comment every --sse-heartbeat
    seconds: three at 1 s come each within 5 s (the default, 15 s, would
    not), and the last two intervals take about 2 s, not a wheel tick's
    50 ms each."""
    s = server_factory("--sse-heartbeat", "1")
    sse = SSE(s, _events(s.create(name="quiet")["id"]))
    _sse_ok(sse)
    assert sse.event()[1]["seq"] == 1
    arrived = []
    for _ in range(3):
        assert sse.rd.read_until(b"\n\n", 5.0) == HEARTBEAT
        arrived.append(time.monotonic())
    assert arrived[2] - arrived[0] > 1.5, arrived
    sse.close()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_heartbeats_leave_at_their_tick_not_at_the_next_sweep(server_factory, pki, transport):
    """A heartbeat is queued from the heartbeat wheel's timer, which runs
    before poll, not in the poll phase whose output the loop writes before
    sleeping again: it must still leave in that loop turn or the next, not
    when the next timer wakes the loop (regression, fixed at dc4a629: it
    waited for the 250 ms sweep), in clear as over TLS (the server and CA
    of test_tls.py). A stream's first heartbeat is due one --sse-heartbeat
    after it opened, at the wheel tick that ends its slot's round: up to one
    tick (interval / 20) before open + interval. At 5 s a tick is 250 ms, in
    step with the sweep, so a heartbeat that waits for the sweep leaves a
    whole tick late: over streams opened at random phases the median
    lateness must be below 0 (assert_beats_leave_at_their_tick). Measured:
    medians -172 (TCP) and -176 ms (TLS); without the fix every sample was
    late, medians +156, +89, +174 (TCP) and +80, +123, +173 ms (TLS)."""
    flags, ca = ("--sse-heartbeat", "5", "--io-threads", "1"), None
    if transport == "tls":
        flags, ca = flags + tls_flags(pki), p(pki, "ca.pem")
    s = server_factory(*flags, tls_ca=ca)
    path = _events(s.create(name="beating")["id"])

    def start():
        sock = None
        if transport == "tls":
            raw = socket.create_connection((HOST, s.port), timeout=10)
            sock = ctx_for(pki).wrap_socket(raw, server_hostname=HOST)
        sse = SSE(s, path, sock=sock)
        return sse, time.monotonic()

    def first_heartbeat(sse):
        _sse_ok(sse)
        assert sse.event()[1]["seq"] == 1
        assert sse.rd.read_until(b"\n\n", 10.0) == HEARTBEAT

    assert_beats_leave_at_their_tick(start, first_heartbeat, 5.0)


# ---------------------------------------------------------------- several-workflow SSE

def test_sse_multi_initial_states_then_live(server):
    server.create(id="a")
    server.create(id="b", total_steps=3)
    server.patch("a", current_step=1)
    s = SSE(server, "/api/events?workflow_ids=a,b")
    _sse_ok(s)
    got = {m["workflow_id"]: m["seq"] for _, m in s.events(2)}
    assert got == {"a": 2, "b": 1}
    server.patch("b", current_step=1)
    eid, m = s.event()
    assert (m["workflow_id"], m["seq"]) == ("b", 2)
    assert eid and eid not in ("1", "2")  # an opaque cursor, not a bare seq
    s.close()


def _resume_multi(server, header):
    server.create(id="a")
    server.create(id="b")
    s = SSE(server, "/api/events?workflow_ids=a,b")
    s.events(2)
    server.patch("a", current_step=1)  # a:2
    server.patch("b", current_step=1)  # b:2
    cursor, m = s.event()
    assert (m["workflow_id"], m["seq"]) == ("a", 2)
    cursor, m = s.event()
    assert (m["workflow_id"], m["seq"]) == ("b", 2)
    s.close()
    # Missed while away:
    server.patch("a", current_step=2)  # a:3
    server.patch("b", current_step=2)  # b:3
    server.patch("a", current_step=3)  # a:4
    if header:
        s2 = SSE(server, "/api/events?workflow_ids=a,b", {"Last-Event-ID": cursor})
    else:
        s2 = SSE(server, "/api/events?workflow_ids=a,b&since=" + cursor)
    _sse_ok(s2)
    got = [(m["workflow_id"], m["seq"]) for _, m in s2.events(3)]
    assert sorted(got) == [("a", 3), ("a", 4), ("b", 3)]
    assert [x for x in got if x[0] == "a"] == [("a", 3), ("a", 4)]  # per-workflow order
    assert s2.silent()
    server.patch("b", current_step=3)
    _, m = s2.event()
    assert (m["workflow_id"], m["seq"]) == ("b", 4)
    s2.close()


def test_sse_multi_resume_with_last_event_id_cursor(server):
    _resume_multi(server, header=True)


def test_sse_multi_resume_with_since_cursor(server):
    _resume_multi(server, header=False)


def test_sse_multi_needs_workflow_ids(server):
    assert_error(server.request("GET", "/api/events"), 400, "bad_request")
    assert_error(server.request("GET", "/api/events?workflow_ids=bad%20id"), 400, "bad_request")


@pytest.mark.parametrize("cursor", ["garbage", "a:", ":3", "a:x", "a:1,,b", "a b:1"])
def test_sse_multi_malformed_cursor_400(server, cursor):
    server.create(id="a")
    r = server.request("GET", "/api/events?workflow_ids=a", headers={"Last-Event-ID": cursor})
    assert_error(r, 400, "bad_request")
    q = urllib.parse.quote(cursor)
    assert_error(server.request("GET", "/api/events?workflow_ids=a&since=" + q), 400, "bad_request")


def test_sse_multi_delete_keeps_stream_open(server):
    server.create(id="a")
    server.create(id="b")
    s = SSE(server, "/api/events?workflow_ids=a,b")
    s.events(2)
    server.delete("a")
    _, m = s.event()
    assert m == {**m, "workflow_id": "a", "deleted": True, "seq": 2}
    server.patch("b", current_step=1)
    _, m = s.event()
    assert (m["workflow_id"], m["seq"]) == ("b", 2)
    s.close()


# ---------------------------------------------------------------- long-poll

def _wait(wid, since, timeout=None):
    p = "/api/workflows/%s?wait_since=%s" % (wid, since)
    return p + ("" if timeout is None else "&timeout=%s" % timeout)


def test_longpoll_answers_at_once_when_seq_is_past(server):
    server.create(id="a")
    server.patch("a", current_step=1)
    t0 = time.monotonic()
    r = server.request("GET", _wait("a", 1, 30))
    assert time.monotonic() - t0 < 1.0
    assert r.status == 200, r
    w = assert_workflow(r.json())
    assert (w["id"], w["seq"], w["current_step"]) == ("a", 2, 1)


def test_longpoll_wakes_up_on_change(server):
    server.create(id="a")
    out = {}

    def poll():
        t0 = time.monotonic()
        out["r"] = server.request("GET", _wait("a", 1, 20), timeout=25)
        out["t"] = time.monotonic() - t0

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    assert "r" not in out, "answered before any change"
    server.patch("a", current_step=4, message="woke")
    th.join(10)
    assert not th.is_alive()
    r = out["r"]
    assert r.status == 200, r
    w = assert_workflow(r.json())
    assert (w["seq"], w["current_step"], w["message"]) == (2, 4, "woke")
    assert 0.4 < out["t"] < 5.0, out["t"]


def test_longpoll_timeout_returns_unchanged_state(server):
    w0 = server.create(id="a")
    t0 = time.monotonic()
    r = server.request("GET", _wait("a", 1, 1))
    dt = time.monotonic() - t0
    assert r.status == 200, r
    assert r.json() == w0
    assert 0.9 <= dt < 3.0, dt


def test_longpoll_fractional_and_zero_timeout(server):
    server.create(id="a")
    t0 = time.monotonic()
    assert server.request("GET", _wait("a", 1, 0)).status == 200
    assert server.request("GET", _wait("a", 1, "0.3")).status == 200
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("query", [
    "wait_since=-1", "wait_since=abc", "wait_since=", "wait_since=1.5",
    "wait_since=0&timeout=61", "wait_since=0&timeout=-1", "wait_since=0&timeout=abc",
    "wait_since=0&timeout=",
])
def test_longpoll_bad_params_400(server, query):
    server.create(id="a")
    assert_error(server.request("GET", "/api/workflows/a?" + query), 400, "bad_request")


def test_longpoll_unknown_workflow_404(server):
    assert_error(server.request("GET", _wait("nope", 0, 1)), 404, "not_found")


def test_longpoll_delete_while_waiting_404(server):
    server.create(id="a")
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", server.request("GET", _wait("a", 1, 20), timeout=25)))
    th.start()
    time.sleep(0.3)
    server.delete("a")
    th.join(10)
    assert not th.is_alive()
    assert_error(out["r"], 404, "not_found")


# ---------------------------------------------------------------- history

def _history(wid, q=""):
    return "/api/workflows/%s/history%s" % (wid, q)


def test_history_all_since_limit(server):
    server.create(id="a", total_steps=10)
    for i in range(1, 6):
        server.patch("a", current_step=i, message="s%d" % i)  # seq 6
    r = server.request("GET", _history("a"))
    assert r.status == 200, r
    h = r.json()
    assert set(h) == {"workflow_id", "epoch", "events", "oldest_seq"}
    assert h["workflow_id"] == "a" and h["oldest_seq"] == 1
    assert h["epoch"] == server.get("a")["epoch"]
    assert [e["seq"] for e in h["events"]] == [1, 2, 3, 4, 5, 6]
    for e in h["events"]:
        assert_update(e, "a")
        assert "resync" not in e
    assert [e["current_step"] for e in h["events"]] == [0, 1, 2, 3, 4, 5]
    assert h["events"][-1]["timestamp"] == server.get("a")["updated_at"]

    h = server.request("GET", _history("a", "?since=2&limit=2")).json()
    assert [e["seq"] for e in h["events"]] == [3, 4]
    assert h["oldest_seq"] == 1
    assert server.request("GET", _history("a", "?since=6")).json()["events"] == []
    # Ahead of the log: a position this database never had (issue 8: it used
    # to answer [] as if up to date); the log from its start, marked resync.
    h = server.request("GET", _history("a", "?since=100")).json()
    assert h["resync"] is True and [e["seq"] for e in h["events"]] == [1, 2, 3, 4, 5, 6]


def test_history_oldest_seq_follows_retention(server_factory):
    s = server_factory("--retention", "3")
    s.create(id="a")
    for i in range(1, 10):
        s.patch("a", current_step=i)  # seq 10
    h = s.request("GET", _history("a", "?since=0&limit=1000")).json()
    seqs = [e["seq"] for e in h["events"]]
    assert seqs and seqs[-1] == 10
    assert seqs == list(range(seqs[0], 11))
    assert h["oldest_seq"] == seqs[0]
    assert 1 < h["oldest_seq"] <= 8  # at least the last 3 are kept


def test_history_unknown_404_and_bad_params_400(server):
    assert_error(server.request("GET", _history("nope")), 404, "not_found")
    server.create(id="a")
    for q in ("?since=-1", "?since=x", "?limit=0", "?limit=1001", "?limit=x"):
        assert_error(server.request("GET", _history("a", q)), 400, "bad_request")
    assert_error(server.request("POST", _history("a"), {}), 405, "method_not_allowed")


def test_history_of_deleted_workflow_404(server):
    server.create(id="a")
    server.delete("a")
    assert_error(server.request("GET", _history("a")), 404, "not_found")
