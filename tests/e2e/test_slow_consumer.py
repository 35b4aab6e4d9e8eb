"""Slow consumers: coalescing to the latest state past --backlog, and the
close (1008 or a TCP drop) of a subscriber stuck past --slow-timeout."""

import asyncio
import json
import threading
import time

from fc_helpers import (OP_CLOSE, OP_TEXT, KeepAliveClient, RawWS, SockReader, connect,
                        http_request_bytes, in_thread, recv_json, run,
                        ws_connect)

MSG = "x" * 3990  # with the "%05d " prefix: just under the 4096-byte limit
MAX_PATCHES = 3000
# The kernel's send buffer autotunes up to net.ipv4.tcp_wmem max (4 MB by
# default), so a fixed ~300 x 3 KB burst can vanish into the kernel without
# ever building a backlog in the server. The producer therefore goes on until
# the server reports what is being tested (or MAX_PATCHES), then a bit more.


def _produce(server, wid, until, extra=50):
    """PATCHes wid until until(metrics) is true (checked every 50 changes),
    then `extra` more. Returns the last acknowledged workflow."""
    c = KeepAliveClient(server)
    last = None
    i = 0
    stop_at = MAX_PATCHES
    try:
        while i < stop_at:
            i += 1
            st, body = c.patch(wid, current_step=i, message="%05d %s" % (i, MSG))
            assert st == 200, (st, body)
            last = json.loads(body)
            if stop_at == MAX_PATCHES and i % 50 == 0 and until(server.metrics()):
                stop_at = i + extra
    finally:
        c.close()
    return last


def _read_all(ws, until_seq, timeout=15.0):
    """Reads updates until seq until_seq; returns the list of messages."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        f = ws.recv_frame(max(0.01, deadline - time.monotonic()))
        if f.opcode != OP_TEXT:
            assert f.opcode != OP_CLOSE, "closed while reading the backlog: %r" % f
            continue
        m = f.json()
        out.append(m)
        if m.get("seq", 0) >= until_seq:
            return out


def test_slow_consumer_coalesced_to_latest(server_factory):
    s = server_factory("--backlog", "10")
    s.create(id="slow", total_steps=MAX_PATCHES)
    slow = RawWS.open(s, "/api/workflows/slow/updates", rcvbuf=4096)
    multi_slow = RawWS.open(s, "/api/updates", rcvbuf=4096)
    multi_slow.send_json({"op": "subscribe", "workflow_ids": ["slow"]})
    # subscribed before the first change (a 0.2 s sleep stood in for this);
    # nothing is read from here on
    assert multi_slow.recv_json(10)["op"] == "subscribed"

    async def fast_reader(ready):
        ws = await ws_connect(s, "/api/workflows/slow/updates")
        await recv_json(ws)
        ready.set()
        seqs = []
        while not done.is_set() or not seqs or seqs[-1] < final[0]:
            try:
                m = await recv_json(ws, 0.5)
            except asyncio.TimeoutError:
                continue
            seqs.append(m["seq"])
        await ws.close()
        return seqs

    async def main():
        ready = asyncio.Event()
        reader = asyncio.ensure_future(fast_reader(ready))
        await asyncio.wait_for(ready.wait(), 10)
        t0 = time.monotonic()
        last = await in_thread(_produce, s, "slow",
                               lambda m: m["flowcast_messages_coalesced_total"] > 0)
        produce_time = time.monotonic() - t0
        final[0] = last["seq"]
        backlog = await in_thread(s.metrics)
        done.set()
        fast = await asyncio.wait_for(reader, 20)
        return last, fast, produce_time, backlog

    done = asyncio.Event()
    final = [None]
    last, fast, produce_time, m = run(main(), timeout=90)
    n = last["current_step"]
    assert last["seq"] == n + 1
    # a fast reader sees every change
    assert fast == list(range(2, n + 2))
    # the stuck readers did not slow the producer down to a crawl
    assert produce_time < 60, produce_time
    assert m["flowcast_messages_coalesced_total"] > 0, "no coalescing after %d changes" % n
    assert m["flowcast_backlog_max"] >= 1
    assert m["flowcast_backlog_total"] >= m["flowcast_backlog_max"]

    for ws in (slow, multi_slow):
        msgs = _read_all(ws, n + 1)
        seqs = [x["seq"] for x in msgs]
        assert all(a < b for a, b in zip(seqs, seqs[1:])), seqs
        assert seqs[0] == 1
        assert seqs[-1] == n + 1
        assert len(seqs) < n + 1, "nothing was coalesced"
        latest = msgs[-1]
        assert latest["current_step"] == n
        assert latest["message"] == "%05d %s" % (n, MSG)
        assert latest["workflow_id"] == "slow"

    # reading resumed: the connections are still open and live
    p = s.patch("slow", message="after")
    for ws in (slow, multi_slow):
        m = ws.recv_json(5)
        assert m["seq"] == p["seq"] and m["message"] == "after"


def test_stuck_consumer_closed(server_factory):
    s = server_factory("--backlog", "5", "--slow-timeout", "1")
    s.create(id="stuck", total_steps=MAX_PATCHES)
    s.create(id="other")
    stuck = RawWS.open(s, "/api/workflows/stuck/updates", rcvbuf=4096)
    healthy = RawWS.open(s, "/api/workflows/other/updates")
    assert healthy.recv_json()["seq"] == 1

    result = {}
    until = lambda m: m["flowcast_slow_consumers_closed_total"] >= 1  # noqa: E731
    t = threading.Thread(target=lambda: result.setdefault("last", _produce(s, "stuck", until)))
    t.start()
    t.join(60)
    assert not t.is_alive()
    assert result["last"]["seq"] == result["last"]["current_step"] + 1
    time.sleep(2.5)  # > --slow-timeout with a backlog that makes no progress

    # read what arrived: some updates, then a 1008 close frame or just EOF
    close_code = None
    seqs = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            f = stuck.recv_frame(5)
        except (EOFError, ConnectionResetError):
            break
        if f.opcode == OP_TEXT:
            seqs.append(f.json()["seq"])
        elif f.opcode == OP_CLOSE:
            close_code = f.close_code
            assert stuck.rd.at_eof(5)
            break
    else:
        raise AssertionError("stuck consumer was not closed")
    assert close_code in (None, 1008), close_code
    assert all(a < b for a, b in zip(seqs, seqs[1:]))

    m = s.metrics()
    assert m["flowcast_slow_consumers_closed_total"] >= 1
    # the others are untouched
    p = s.patch("other", message="fine")
    assert healthy.recv_json()["seq"] == p["seq"]
    assert s.request("GET", "/healthz").status == 200


def test_reader_that_keeps_up_sees_every_change_of_a_large_commit(server_factory):
    """A group commit can hand a subscriber more changes in one loop turn than
    --backlog; a reader whose socket takes them is not slow and must see each
    one (coalescing used to start on the queue's length alone)."""
    s = server_factory("--backlog", "2")
    s.create(id="burst", total_steps=1000)
    fast = RawWS.open(s, "/api/workflows/burst/updates")
    assert fast.recv_frame(5).json()["seq"] == 1
    producer = connect(s.port)
    rounds, per_round = 5, 30
    try:
        for r in range(rounds):
            body = lambda i: json.dumps({"current_step": r * per_round + i}).encode()
            producer.sendall(b"".join(
                http_request_bytes("PATCH", "/api/workflows/burst", s.port,
                                   {"Content-Type": "application/json",
                                    "Content-Length": str(len(body(i)))}, body(i))
                for i in range(1, per_round + 1)))
            rd = SockReader(producer)
            for _ in range(per_round):
                assert rd.read_response(10).status == 200
    finally:
        producer.close()
    last = rounds * per_round + 1
    seqs = [m["seq"] for m in _read_all(fast, last)]
    assert seqs == list(range(2, last + 1)), seqs
    assert s.metrics()["flowcast_messages_coalesced_total"] == 0
