"""Several I/O threads (--io-threads): connections spread over the loops,
every subscriber on every loop sees every change once and in order even when
producers on different loops change one workflow at the same time, metrics
add up over the loops, and a shutdown closes every loop's streams."""

import asyncio
import json
import subprocess
import threading

import websockets

from fc_helpers import (KeepAliveClient, in_thread, recv_json, run, wait_for, ws_connect)


def _producers(server, wid, n_producers, per_producer):
    """n_producers threads, each on its own keep-alive connection (so on
    different loops), PATCHing wid per_producer times, all at once."""
    errors = []
    start = threading.Barrier(n_producers)

    def produce(p):
        c = KeepAliveClient(server)
        try:
            start.wait()
            for i in range(per_producer):
                status, body = c.patch(wid, message="p%d-%d" % (p, i))
                if status != 200:
                    errors.append((status, body))
        finally:
            c.close()

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(n_producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]


async def _watchers(server, wid, n):
    """n single-workflow streams of wid, each past its first state."""
    conns = [await ws_connect(server, "/api/workflows/%s/updates" % wid) for _ in range(n)]
    for ws in conns:
        await recv_json(ws)
    return conns


def test_every_loop_sees_every_change_in_order(server_factory):
    # A backlog this large never coalesces, so every seq must arrive.
    server = server_factory("--io-threads", "3", "--backlog", "100000")
    assert "3 I/O threads" in server.log_tail()
    server.create(id="race", total_steps=10)
    n_producers, per_producer = 4, 50
    last = 1 + n_producers * per_producer

    async def single(ws):
        seqs = [(await recv_json(ws, 10))["seq"] for _ in range(last)]
        await ws.close()
        return seqs

    async def multi(ws):
        seqs = [(await recv_json(ws, 10))["seq"] for _ in range(last)]
        await ws.close()
        return seqs

    async def main():
        singles = [await ws_connect(server, "/api/workflows/race/updates") for _ in range(24)]
        multis = [await ws_connect(server, "/api/updates") for _ in range(6)]
        # Every subscription is in place before the first change (a sleep
        # stood in for this: a change before a late one made its first
        # state seq 2 or later).
        for ws in multis:
            await ws.send(json.dumps({"op": "subscribe", "workflow_ids": ["race"]}))
            assert (await recv_json(ws, 10))["op"] == "subscribed"
        readers = [asyncio.ensure_future(single(ws)) for ws in singles]
        readers += [asyncio.ensure_future(multi(ws)) for ws in multis]
        await in_thread(_producers, server, "race", n_producers, per_producer)
        return await asyncio.gather(*readers)

    for seqs in run(main(), timeout=90):
        assert seqs == list(range(1, last + 1)), seqs[:10]
    assert server.get("race")["seq"] == last


def test_metrics_add_up_over_loops(server_factory):
    server = server_factory("--io-threads", "2")
    server.create(id="m", total_steps=3)

    async def main():
        conns = await _watchers(server, "m", 7)
        # ws_connections is counted as it changes; subscriptions every 250 ms per loop.
        await in_thread(wait_for, lambda: server.metrics()["flowcast_ws_connections"] == 7,
                        what="7 WebSockets counted")
        await in_thread(wait_for, lambda: server.metrics()["flowcast_subscriptions"] == 7,
                        what="7 subscriptions counted")
        for ws in conns:
            await ws.close()
        await in_thread(wait_for, lambda: server.metrics()["flowcast_ws_connections"] == 0,
                        what="all WebSockets gone")

    run(main(), timeout=30)
    server.patch("m", current_step=1)
    assert server.metrics()["flowcast_changes_committed_total"] == 2


def test_shutdown_closes_every_loop(server_factory):
    server = server_factory("--io-threads", "4")
    server.create(id="s", total_steps=3)

    async def main():
        conns = await _watchers(server, "s", 8)
        await in_thread(server.stop)
        for ws in conns:
            await ws.wait_closed()
        return [ws.close_code for ws in conns]

    assert run(main(), timeout=30) == [1001] * 8
    assert server.proc.returncode == 0


def test_io_threads_flag_is_checked(flowcast):
    for bad in ("-1", "65", "two"):
        p = subprocess.run([flowcast, "serve", "--io-threads", bad], capture_output=True,
                           text=True, timeout=10)
        assert p.returncode == 2, (bad, p.stderr)
        assert "--io-threads" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_accepting_pauses_when_out_of_descriptors(flowcast, tmp_path):
    """With the open-file limit reached, the listener pauses instead of
    spinning on a readable socket, and accepts again once sockets close."""
    import resource
    import socket
    import time

    from fc_helpers import free_port

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([flowcast, "serve", "--listen", "127.0.0.1:%d" % port,
                                 "--db", str(tmp_path / "x.db"), "--io-threads", "2"],
                                stdout=logf, stderr=logf, preexec_fn=low_limit)
    try:
        wait_for(lambda: _healthy(port), 10, what="server up")
        socks = []
        for _ in range(150):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(c)
        wait_for(lambda: b"pausing accepts" in log.read_bytes(), 10, what="accepts paused")
        cpu0 = _cpu_seconds(proc.pid)
        time.sleep(1.0)
        assert _cpu_seconds(proc.pid) - cpu0 < 0.5, "the server spins while out of descriptors"
        for c in socks:
            c.close()
        wait_for(lambda: _healthy(port), 10, what="accepting again")
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def _healthy(port):
    import http.client
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/healthz")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def test_churn_across_loops(server_factory):
    """Streams of every kind open and close (some abruptly) on three loops
    while producers change workflows, one of them deleted and re-created
    over and over: each stream sees every workflow's seqs only go up, the
    server stays healthy, and it exits 0 without leaks (ASan) at the end."""
    import random
    import time

    server = server_factory("--io-threads", "3")
    ids = ["c%d" % i for i in range(8)]
    for wid in ids:
        server.create(id=wid, total_steps=10)
    deadline = time.monotonic() + 4.0
    rng = random.Random(7)

    def produce():
        c = KeepAliveClient(server)
        n = 0
        try:
            while time.monotonic() < deadline:
                status, _ = c.patch(rng.choice(ids), message="m%d" % n)
                assert status == 200, status
                n += 1
        finally:
            c.close()

    def delete_and_recreate():
        while time.monotonic() < deadline:
            server.create(id="gone", total_steps=3)
            server.patch("gone", current_step=1)
            assert server.delete("gone").status == 204
        return True

    async def watch_once(multi):
        ws = await ws_connect(server, "/api/updates" if multi else
                              "/api/workflows/%s/updates" % rng.choice(ids))
        if multi:
            op = ({"op": "subscribe_all"} if rng.random() < 0.3 else
                  {"op": "subscribe", "workflow_ids": rng.sample(ids, 3) + ["gone"]})
            await ws.send(json.dumps(op))
        last = {}  # id -> (epoch, seq, deleted) of its last message
        for _ in range(rng.randint(1, 30)):
            try:
                m = await recv_json(ws, 1.0)
            except asyncio.TimeoutError:
                break
            if "seq" not in m:
                assert m.get("op") in ("subscribed", "error"), m
                continue
            wid = m["workflow_id"]
            if wid in last:
                epoch, seq, deleted = last[wid]
                if m["epoch"] == epoch:
                    assert not deleted and m["seq"] > seq, (wid, m, last[wid])
                else:
                    # "gone" comes back with another epoch, only after its
                    # deletion; its first seqs may be coalesced away (a
                    # reader this slow has a backlog), its deletion never.
                    assert deleted, (wid, m, last[wid])
            last[wid] = (m["epoch"], m["seq"], bool(m.get("deleted")))
        if rng.random() < 0.5:
            ws.transport.abort()  # no close handshake
        else:
            await ws.close()

    async def sse_once():
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(("GET /api/workflows/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" %
                 rng.choice(ids)).encode())
        await w.drain()
        try:
            await asyncio.wait_for(r.read(2000), 1.0)
        except asyncio.TimeoutError:
            pass
        w.transport.abort()

    async def churn(kind):
        while time.monotonic() < deadline:
            if kind == "sse":
                await sse_once()
            else:
                await watch_once(kind == "multi")

    async def main():
        work = [in_thread(produce) for _ in range(3)] + [in_thread(delete_and_recreate)]
        work += [churn("single") for _ in range(6)] + [churn("multi") for _ in range(4)]
        work += [churn("sse") for _ in range(2)]
        await asyncio.gather(*work)

    run(main(), timeout=60)
    assert server.request("GET", "/healthz").status == 200
    wait_for(lambda: server.metrics()["flowcast_connections"] <= 1, 10, what="streams closed")
    m = server.metrics()
    print("churn: %d WebSockets, %d changes, %d messages written" % (
        m["flowcast_ws_connections_opened_total"], m["flowcast_changes_committed_total"],
        m["flowcast_messages_written_total"]))
    assert m["flowcast_ws_connections_opened_total"] >= 50, m  # the churn really churned
    assert m["flowcast_changes_committed_total"] >= 200, m


def test_stream_limit_is_exact_across_loops(server_factory):
    """--max-connections holds exactly when streams open on several loops at
    the same moment: of 40 concurrent upgrades with a limit of 20, exactly
    20 are accepted and 20 refused with 503, round after round."""
    server = server_factory("--io-threads", "2", "--max-connections", "20")
    server.create(id="lim", total_steps=3)

    async def attempt():
        try:
            ws = await ws_connect(server, "/api/workflows/lim/updates")
        except websockets.exceptions.InvalidStatusCode as e:
            assert e.status_code == 503, e.status_code
            return None
        return ws

    async def main():
        for _ in range(5):
            got = await asyncio.gather(*(attempt() for _ in range(40)))
            opened = [ws for ws in got if ws is not None]
            assert len(opened) == 20, len(opened)
            for ws in opened:
                await ws.close()
            await in_thread(wait_for, lambda: server.metrics()["flowcast_ws_connections"] == 0,
                            what="all closed")

    run(main(), timeout=60)
