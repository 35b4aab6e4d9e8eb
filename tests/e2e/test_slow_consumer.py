"""Slow consumers: coalescing to the latest state past --backlog, and the
close (1008 or a TCP drop) of a subscriber stuck past --slow-timeout."""

import asyncio
import json
import threading
import time

from fc_helpers import (OP_CLOSE, OP_TEXT, KeepAliveClient, RawWS, in_thread, recv_json, run,
                        ws_connect)

N_PATCHES = 300
MSG = "x" * 3000


def _produce(server, wid, n=N_PATCHES):
    c = KeepAliveClient(server)
    last = None
    try:
        for i in range(1, n + 1):
            st, body = c.patch(wid, current_step=i, message="%05d %s" % (i, MSG))
            assert st == 200, (st, body)
            last = json.loads(body)
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
        if m["seq"] >= until_seq:
            return out


def test_slow_consumer_coalesced_to_latest(server_factory):
    s = server_factory("--backlog", "10")
    s.create(id="slow", total_steps=N_PATCHES)
    slow = RawWS.open(s, "/api/workflows/slow/updates", rcvbuf=4096)
    multi_slow = RawWS.open(s, "/api/updates", rcvbuf=4096)
    multi_slow.send_json({"op": "subscribe", "workflow_ids": ["slow"]})
    time.sleep(0.2)  # let the subscribe land; nothing is read from here on

    async def fast_reader(ready):
        ws = await ws_connect(s, "/api/workflows/slow/updates")
        await recv_json(ws)
        ready.set()
        seqs = []
        while True:
            m = await recv_json(ws, 15)
            seqs.append(m["seq"])
            if m["seq"] == N_PATCHES + 1:
                break
        await ws.close()
        return seqs

    async def main():
        ready = asyncio.Event()
        reader = asyncio.ensure_future(fast_reader(ready))
        await asyncio.wait_for(ready.wait(), 10)
        t0 = time.monotonic()
        last = await in_thread(_produce, s, "slow")
        produce_time = time.monotonic() - t0
        fast = await reader
        return last, fast, produce_time

    last, fast, produce_time = run(main(), timeout=60)
    assert last["seq"] == N_PATCHES + 1
    # a fast reader (default flow) sees every change
    assert fast == list(range(2, N_PATCHES + 2))
    # the stuck readers did not slow the producer down to a crawl
    assert produce_time < 30, produce_time
    m = s.metrics()
    assert m["flowcast_backlog_max"] >= 1

    for ws, first_is_state in ((slow, True), (multi_slow, False)):
        msgs = _read_all(ws, N_PATCHES + 1)
        if not first_is_state:
            assert msgs[0].get("op") == "subscribed", msgs[0]
            msgs = msgs[1:]
        seqs = [x["seq"] for x in msgs]
        assert all(a < b for a, b in zip(seqs, seqs[1:])), seqs
        assert seqs[0] == 1
        assert seqs[-1] == N_PATCHES + 1
        assert len(seqs) < N_PATCHES + 1, "nothing was coalesced"
        final = msgs[-1]
        assert final["current_step"] == N_PATCHES
        assert final["message"] == "%05d %s" % (N_PATCHES, MSG)
        assert final["workflow_id"] == "slow"

    m = s.metrics()
    assert m["flowcast_messages_coalesced_total"] > 0
    # reading resumed: the connections are still open and live
    p = s.patch("slow", message="after")
    for ws in (slow, multi_slow):
        m = ws.recv_json(5)
        assert m["seq"] == p["seq"] and m["message"] == "after"


def test_stuck_consumer_closed(server_factory):
    s = server_factory("--backlog", "5", "--slow-timeout", "1")
    s.create(id="stuck", total_steps=N_PATCHES)
    s.create(id="other")
    stuck = RawWS.open(s, "/api/workflows/stuck/updates", rcvbuf=4096)
    healthy = RawWS.open(s, "/api/workflows/other/updates")
    assert healthy.recv_json()["seq"] == 1

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("last", _produce(s, "stuck")))
    t.start()
    t.join(45)
    assert not t.is_alive()
    assert result["last"]["seq"] == N_PATCHES + 1
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
