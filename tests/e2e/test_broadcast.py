"""Broadcast over WebSocket, with the named tests from the original design."""

import asyncio
import json
import time

import websockets

from fc_helpers import (DELETED_KEYS, RawWS, assert_update, build_frame, connect, expect_silence,
                        http_request_bytes, in_thread, recv_json, recv_until_closed, run,
                        ws_connect, wait_for, OP_TEXT)


def _updates(wid):
    return "/api/workflows/%s/updates" % wid


def _same_state(msg, wf):
    for k in ("status", "current_step", "total_steps", "message", "seq"):
        assert msg[k] == wf[k], (k, msg, wf)
    assert msg["timestamp"] == wf["updated_at"], (msg, wf)


def test_broadcast_basic(server):
    w = server.create(id="basic", total_steps=4, message="queued")

    async def main():
        ws = await ws_connect(server, _updates("basic"))
        first = assert_update(await recv_json(ws), "basic")
        _same_state(first, w)
        assert "resync" not in first
        t0 = time.monotonic()
        p = await in_thread(server.patch, "basic", status="running", current_step=1,
                            message="compiling")
        m = assert_update(await recv_json(ws, 5), "basic")
        assert time.monotonic() - t0 < 2.0
        _same_state(m, p)
        assert m["seq"] == first["seq"] + 1
        await expect_silence(ws, 0.2)
        await ws.close()
        assert ws.close_code == 1000

    run(main())


def test_broadcast_multiple_subscribers(server):
    server.create(id="multi", total_steps=20)

    async def main():
        clients = [await ws_connect(server, _updates("multi")) for _ in range(10)]
        # plus one multi-stream subscriber
        mc = await ws_connect(server, "/api/updates")
        await mc.send('{"op":"subscribe","workflow_ids":["multi"]}')
        assert await recv_json(mc) == {"op": "subscribed", "workflow_ids": ["multi"]}
        clients.append(mc)
        for c in clients:
            assert (await recv_json(c))["seq"] == 1
        patches = []
        for i in range(1, 6):
            patches.append(await in_thread(server.patch, "multi", current_step=i,
                                           status="running", message="step %d" % i))
        for c in clients:
            got = [assert_update(await recv_json(c), "multi") for _ in patches]
            assert [g["seq"] for g in got] == [2, 3, 4, 5, 6]
            for g, p in zip(got, patches):
                _same_state(g, p)
            await expect_silence(c, 0.05)
        await asyncio.gather(*(c.close() for c in clients))

    run(main())


def test_broadcast_filtering(server):
    server.create(id="A")
    server.create(id="B")

    async def main():
        sa = [await ws_connect(server, _updates("A")) for _ in range(3)]
        sb = await ws_connect(server, _updates("B"))
        ma = await ws_connect(server, "/api/updates")
        await ma.send('{"op":"subscribe","workflow_ids":["A"]}')
        assert (await recv_json(ma))["op"] == "subscribed"
        for c in sa + [sb, ma]:
            await recv_json(c)
        for i in range(5):
            await in_thread(server.patch, "B", current_step=i + 1, message="b%d" % i)
        await in_thread(server.patch, "A", current_step=1, message="a")
        for c in sa + [ma]:
            m = await recv_json(c)
            assert m["workflow_id"] == "A" and m["message"] == "a", m
            await expect_silence(c, 0.2)
        for i in range(5):
            m = await recv_json(sb)
            assert m["workflow_id"] == "B" and m["message"] == "b%d" % i
        await expect_silence(sb, 0.2)
        for c in sa + [sb, ma]:
            await c.close()

    run(main())


def test_websocket_full_lifecycle(server):
    server.create(id="life", total_steps=3)

    async def main():
        ws = await ws_connect(server, _updates("life"))
        m = await recv_json(ws)
        assert (m["status"], m["current_step"], m["seq"]) == ("pending", 0, 1)
        steps = [dict(status="running", current_step=1, message="one"),
                 dict(current_step=2, message="two"),
                 dict(status="paused"),
                 dict(status="running", current_step=3, message="three"),
                 dict(status="completed", message="done")]
        seq = 1
        for st in steps:
            p = await in_thread(server.patch, "life", **st)
            m = assert_update(await recv_json(ws), "life")
            seq += 1
            assert m["seq"] == seq
            _same_state(m, p)
        assert m["status"] == "completed" and m["current_step"] == 3
        await in_thread(server.delete, "life")
        msgs, code = await recv_until_closed(ws, 5)
        assert len(msgs) == 1, msgs
        d = json.loads(msgs[0])
        assert set(d) == DELETED_KEYS, d
        assert d["workflow_id"] == "life" and d["deleted"] is True and d["seq"] > seq
        assert code == 1000
        # the workflow is gone: the handshake now fails with 404
        try:
            await ws_connect(server, _updates("life"))
            raise AssertionError("handshake to a deleted workflow succeeded")
        except websockets.InvalidStatusCode as e:
            assert e.status_code == 404

    run(main())


def test_websocket_disconnection_handling(server):
    server.create(id="dis")

    async def main():
        keep = [await ws_connect(server, _updates("dis")) for _ in range(10)]
        drop = [await ws_connect(server, _updates("dis")) for _ in range(5)]
        for c in keep + drop:
            await recv_json(c)
        raws = [RawWS.open(server, _updates("dis")) for _ in range(5)]
        half_hs = []
        for _ in range(3):  # half a handshake, then gone
            s = connect(server.port)
            s.sendall(http_request_bytes("GET", _updates("dis"), server.port,
                                         {"Upgrade": "websocket"})[:30])
            half_hs.append(s)
        half_frame = [RawWS.open(server, _updates("dis")) for _ in range(2)]
        for r in half_frame:  # half a frame, then gone
            r.send_raw(build_frame(OP_TEXT, b"x" * 300)[:7])
        assert (await in_thread(server.metrics))["flowcast_ws_connections"] >= 22

        for c in drop:
            c.transport.abort()
        for r in raws:
            r.abort()  # RST
        for s in half_hs:
            s.close()
        for r in half_frame:
            r.close()
        # changes right after the disconnects (writes to dead sockets)
        for i in range(1, 4):
            await in_thread(server.patch, "dis", current_step=i)
        for c in keep:
            got = [(await recv_json(c))["seq"] for _ in range(3)]
            assert got == [2, 3, 4]
        assert server.alive()
        assert (await in_thread(server.request, "GET", "/healthz")).status == 200
        await in_thread(wait_for, lambda: server.metrics()["flowcast_ws_connections"] == 10,
                        5.0, 0.1, "ws_connections back to 10")
        # new clients still work
        c = await ws_connect(server, _updates("dis"))
        assert (await recv_json(c))["seq"] == 4
        await c.close()
        await asyncio.gather(*(c.close() for c in keep))

    run(main())


def test_websocket_concurrent_connections(server):
    N = 1000
    server.create(id="many", total_steps=N)

    async def open_one():
        ws = await ws_connect(server, _updates("many"))
        m = await recv_json(ws, 10)
        assert m["seq"] == 1
        return ws

    async def main():
        clients = []
        for i in range(0, N, 100):
            clients += await asyncio.gather(*(open_one() for _ in range(100)))
        assert len(clients) == N
        m = await in_thread(server.metrics)
        assert m["flowcast_ws_connections"] >= N
        assert m["flowcast_subscriptions"] >= N
        written0 = m["flowcast_messages_written_total"]
        t0 = time.monotonic()
        p = await in_thread(server.patch, "many", status="running", current_step=7)
        got = await asyncio.gather(*(recv_json(c, 10) for c in clients))
        elapsed = time.monotonic() - t0
        for g in got:
            assert g["seq"] == p["seq"] and g["current_step"] == 7
        assert elapsed < 10.0, elapsed
        m = await in_thread(server.metrics)
        assert m["flowcast_messages_written_total"] - written0 >= N
        for i in range(0, N, 200):
            await asyncio.gather(*(c.close() for c in clients[i:i + 200]))
        await in_thread(wait_for, lambda: server.metrics()["flowcast_ws_connections"] == 0,
                        10.0, 0.1, "all connections closed")

    run(main(), timeout=60)


def test_concurrent_producers_keep_seq_order(server):
    """Changes from parallel producers get unique, gap-free seqs (group commit)
    and every subscriber sees them in seq order."""
    import threading
    from fc_helpers import KeepAliveClient
    server.create(id="par", total_steps=1000)
    per, threads_n = 50, 4
    seqs, errors = [], []

    def producer(k):
        c = KeepAliveClient(server)
        try:
            for i in range(per):
                st, body = c.patch("par", message="p%d-%d" % (k, i))
                if st != 200:
                    errors.append((st, body))
                    return
                seqs.append(json.loads(body)["seq"])
        finally:
            c.close()

    async def main():
        subs = [await ws_connect(server, _updates("par")) for _ in range(3)]
        for c in subs:
            await recv_json(c)
        ts = [threading.Thread(target=producer, args=(k,)) for k in range(threads_n)]
        for t in ts:
            t.start()
        for t in ts:
            await in_thread(t.join, 30)
        assert not errors, errors[:3]
        total = per * threads_n
        assert sorted(seqs) == list(range(2, total + 2))
        for c in subs:
            got = [(await recv_json(c))["seq"] for _ in range(total)]
            assert got == list(range(2, total + 2))
        await asyncio.gather(*(c.close() for c in subs))
        assert (await in_thread(server.get, "par"))["seq"] == total + 1

    run(main(), timeout=60)
