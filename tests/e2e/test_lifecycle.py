"""Process lifecycle: command line, environment variables, graceful shutdown
(1001), restart durability after kill -9, metrics and health."""

import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from fc_helpers import (KeepAliveClient, RawWS, free_port, in_thread, parse_metrics, recv_json,
                        recv_until_closed, run, ws_connect)


# ---------------------------------------------------------------- command line

def _run(flowcast, args, env=None, timeout=5):
    e = dict(os.environ)
    if env:
        e.update(env)
    try:
        return subprocess.run([flowcast] + args, capture_output=True, timeout=timeout, env=e,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError("flowcast %s did not exit within %ss" % (" ".join(args), timeout))


def test_cli_help(flowcast):
    r = _run(flowcast, ["--help"])
    assert r.returncode == 0, r
    assert "serve" in (r.stdout + r.stderr).decode()
    r = _run(flowcast, ["serve", "--help"])
    assert r.returncode == 0, r
    out = (r.stdout + r.stderr).decode()
    for flag in ("--listen", "--db", "--api-token", "--allow-origin", "--max-connections",
                 "--max-message", "--backlog", "--ping-interval", "--sync", "--enable-echo",
                 "--log-level", "--retention", "--max-body", "--max-header", "--slow-timeout"):
        assert flag in out, flag


def test_cli_version(flowcast):
    r = _run(flowcast, ["--version"])
    assert r.returncode == 0, r
    assert re.search(r"\d+\.\d+\.\d+", r.stdout.decode()), r


@pytest.mark.parametrize("args", [
    ["serve", "--bogus"],
    ["serve", "--max-connections", "abc"],
    ["serve", "--max-connections", "-1"],
    ["serve", "--max-message", "12x"],
    ["serve", "--backlog", "abc"],
    ["serve", "--ping-interval", "abc"],
    ["serve", "--ping-interval", "-1"],
    ["serve", "--sse-heartbeat", "0"],
    ["serve", "--sse-heartbeat", "3601"],
    ["serve", "--slow-timeout", "soon"],
    ["serve", "--sync", "maybe"],
    ["serve", "--log-level", "loud"],
    ["serve", "--retention", "many"],
    ["serve", "--max-body", "-5"],
    ["serve", "--max-header", "big"],
    ["serve", "--listen", "127.0.0.1:99999"],
    ["serve", "--listen", "nonsense"],
    ["serve", "--db"],
    ["--bogus"],
])
def test_cli_bad_flag_exit_2(flowcast, tmp_path, args):
    full = list(args)
    if "--listen" not in full and full[0] == "serve" and full[-1] != "--db":
        full += ["--listen", "127.0.0.1:%d" % free_port(), "--db", str(tmp_path / "x.db")]
    r = _run(flowcast, full)
    assert r.returncode == 2, r
    err = r.stderr.decode().strip()
    assert err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("var,val", [("FLOWCAST_BACKLOG", "abc"), ("FLOWCAST_SYNC", "maybe"),
                                     ("FLOWCAST_PING_INTERVAL", "x")])
def test_cli_bad_env_exit_2(flowcast, tmp_path, var, val):
    r = _run(flowcast, ["serve", "--listen", "127.0.0.1:%d" % free_port(), "--db",
                        str(tmp_path / "x.db")], env={var: val})
    assert r.returncode == 2, r
    assert len(r.stderr.decode().strip().splitlines()) == 1, r


def test_env_vars_configure_server(server_factory):
    s = server_factory(via_env=True, env={"FLOWCAST_API_TOKEN": "envtok",
                                          "FLOWCAST_MAX_BODY": "1024",
                                          "FLOWCAST_ENABLE_ECHO": "1"})
    r = s.request("POST", "/api/workflows", {"name": "x", "total_steps": 1}, auth=False)
    assert r.status == 401
    assert s.request("POST", "/api/workflows", {"name": "x", "total_steps": 1}).status == 201
    r = s.request("POST", "/api/workflows", {"name": "x", "total_steps": 1, "message": "m" * 1100})
    assert r.status == 413
    ws = RawWS.open(s, "/ws/echo")
    ws.send_text("env")
    assert ws.recv_message().payload == b"env"
    assert os.path.exists(s.db)


def test_env_allow_origin_list(server_factory):
    s = server_factory(env={"FLOWCAST_ALLOW_ORIGIN": "https://a.example,https://b.example"})
    s.create(id="wf")
    for origin, status in (("https://a.example", 101), ("https://b.example", 101),
                           ("https://c.example", 403)):
        ws = RawWS(s.port)
        assert ws.handshake("/api/workflows/wf/updates", {"Origin": origin}).status == status
        ws.close()


def test_log_levels(server_factory):
    s = server_factory("--log-level", "error")
    s.create()
    s.request("GET", "/nope")
    assert s.stop() == 0
    with open(s.log_path) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    assert not [ln for ln in lines if re.search(r"\b(info|debug)\b", ln)], lines
    s2 = server_factory("--log-level", "debug", db=s.db)
    s2.create()
    assert s2.stop() == 0
    with open(s2.log_path) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    assert any(re.search(r"\binfo\b", ln) for ln in lines), lines


def test_flags_override_env(server_factory):
    s = server_factory("--api-token", "flagtok", env={"FLOWCAST_API_TOKEN": "envtok"})
    r = s.request("POST", "/api/workflows", {"name": "x", "total_steps": 1},
                  headers={"Authorization": "Bearer envtok"}, auth=False)
    assert r.status == 401
    assert s.request("POST", "/api/workflows", {"name": "x", "total_steps": 1}).status == 201


@pytest.mark.parametrize("flags", [["--sync", "full"], ["--sync", "normal"],
                                   ["--log-level", "debug"], ["--log-level", "error"],
                                   ["--ping-interval", "0.5", "--slow-timeout", "2.5"]])
def test_server_starts_with_flags(server_factory, flags):
    s = server_factory(*flags)
    w = s.create()
    assert s.get(w["id"]) == w


def test_listen_port_in_use_fails(server_factory, flowcast, tmp_path):
    s = server_factory()
    r = _run(flowcast, ["serve", "--listen", "127.0.0.1:%d" % s.port, "--db",
                        str(tmp_path / "y.db")])
    assert r.returncode != 0
    assert r.stderr.strip()


# ---------------------------------------------------------------- shutdown

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_sends_1001(server_factory, sig):
    s = server_factory("--enable-echo")
    s.create(id="a")

    async def main():
        single = await ws_connect(s, "/api/workflows/a/updates")
        await recv_json(single)
        multi = await ws_connect(s, "/api/updates")
        await multi.send('{"op":"subscribe_all"}')
        await recv_json(multi)
        echo = await ws_connect(s, "/ws/echo")
        raw = RawWS.open(s, "/api/workflows/a/updates")
        raw.recv_json()
        t0 = time.monotonic()
        s.expect_exit = True
        s.proc.send_signal(sig)
        for c in (single, multi, echo):
            _, code = await recv_until_closed(c, 5)
            assert code == 1001
        f = await in_thread(raw.recv_close, 5)
        assert f.close_code == 1001
        rc = await in_thread(s.proc.wait, 5)
        assert rc == 0
        assert time.monotonic() - t0 < 5

    run(main())


def test_sigpipe_is_ignored(server):
    """A write to a peer that vanished must fail with EPIPE, not raise SIGPIPE
    (whose default action ends the process): libuv leaves this to us."""
    with open("/proc/%d/status" % server.proc.pid) as f:
        ignored = int(next(l for l in f if l.startswith("SigIgn:")).split()[1], 16)
    assert ignored & (1 << (13 - 1)), "SIGPIPE (13) is not ignored: %x" % ignored


def test_shutdown_idle_exits_0(server_factory):
    s = server_factory()
    s.create()
    assert s.stop(signal.SIGTERM, 5) == 0


def test_restart_keeps_data(server_factory):
    s = server_factory()
    w = s.create(id="keep", total_steps=5)
    p = s.patch("keep", current_step=3, message="half")
    assert s.stop() == 0
    s2 = server_factory(db=s.db)
    assert s2.get("keep") == p
    assert s2.patch("keep", current_step=4)["seq"] == p["seq"] + 1
    assert s2.get("keep")["created_at"] == w["created_at"]


# ---------------------------------------------------------------- durability

@pytest.mark.parametrize("sync", ["normal", "full"])
def test_restart_durability_after_kill9(server_factory, sync):
    s = server_factory("--sync", sync)
    wids = ["d%d" % i for i in range(3)]
    for wid in wids:
        s.create(id=wid, total_steps=1000000)
    acked = {wid: [] for wid in wids}  # (seq, current_step, message) that got 200
    created = []
    enough = threading.Event()
    stop = threading.Event()

    def producer(wid):
        c = KeepAliveClient(s, timeout=5)
        i = 0
        try:
            while not stop.is_set() and i < 300:
                i += 1
                st, body = c.patch(wid, current_step=i, message="m%d" % i)
                if st != 200:
                    break
                w = json.loads(body)
                acked[wid].append((w["seq"], w["current_step"], w["message"]))
                if sum(len(v) for v in acked.values()) >= 150:
                    enough.set()
        except Exception:
            pass
        finally:
            c.close()

    def creator():
        i = 0
        try:
            while not stop.is_set() and i < 100:
                r = s.request("POST", "/api/workflows", {"name": "c", "total_steps": 1,
                                                         "id": "c%d" % i}, timeout=5)
                if r.status != 201:
                    break
                created.append("c%d" % i)
                i += 1
        except Exception:
            pass

    threads = [threading.Thread(target=producer, args=(w,)) for w in wids]
    threads.append(threading.Thread(target=creator))
    for t in threads:
        t.start()
    enough.wait(20)
    s.kill9()  # mid-stream
    stop.set()
    for t in threads:
        t.join(10)
    assert sum(len(v) for v in acked.values()) >= 150

    s2 = server_factory(db=s.db)
    for wid in wids:
        if not acked[wid]:
            continue
        last_seq, last_step, last_msg = acked[wid][-1]
        w = s2.get(wid)
        # a change that was committed but not yet acknowledged may also be there
        assert w["seq"] >= last_seq, (wid, w, acked[wid][-1])
        assert w["seq"] <= last_seq + 1
        if w["seq"] == last_seq:
            assert (w["current_step"], w["message"]) == (last_step, last_msg)
        p = s2.patch(wid, message="after restart")
        assert p["seq"] == w["seq"] + 1

        async def history(wid=wid, upto=p["seq"]):
            ws = await ws_connect(s2, "/api/workflows/%s/updates?since=0" % wid)
            out = []
            while True:
                m = await recv_json(ws, 5)
                out.append(m)
                if m["seq"] == upto:
                    break
            await ws.close()
            return out

        hist = run(history())
        seqs = [m["seq"] for m in hist]
        assert seqs == list(range(1, p["seq"] + 1))
        by_seq = {m["seq"]: (m["seq"], m["current_step"], m["message"]) for m in hist}
        for a in acked[wid]:
            assert by_seq[a[0]] == a
    for cid in created:
        assert s2.get(cid)["seq"] == 1


# ---------------------------------------------------------------- metrics

REQUIRED_METRICS = [
    "flowcast_ws_connections", "flowcast_ws_connections_opened_total", "flowcast_subscriptions",
    "flowcast_messages_written_total", "flowcast_messages_coalesced_total",
    "flowcast_slow_consumers_closed_total", "flowcast_backlog_max", "flowcast_backlog_total",
    "flowcast_commit_to_write_seconds_sum", "flowcast_commit_to_write_seconds_count",
]


def test_metrics(server):
    r = server.request("GET", "/metrics")
    assert r.status == 200
    ctype = r.header("content-type", "").replace(" ", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    m0 = parse_metrics(r.body.decode())
    for name in REQUIRED_METRICS:
        assert name in m0, name
    assert m0['flowcast_http_requests_total{code="200"}'] >= 1  # the readiness probe

    server.create(id="m")
    server.request("GET", "/api/workflows/none")

    async def main():
        a = await ws_connect(server, "/api/workflows/m/updates")
        b = await ws_connect(server, "/api/updates")
        await b.send('{"op":"subscribe","workflow_ids":["m"]}')
        await recv_json(a)
        await recv_json(b)
        await recv_json(b)
        m1 = await in_thread(server.metrics)
        assert m1["flowcast_ws_connections"] == 2
        assert m1["flowcast_ws_connections_opened_total"] - m0["flowcast_ws_connections_opened_total"] == 2
        assert m1["flowcast_subscriptions"] == 2
        for i in range(3):
            await in_thread(server.patch, "m", current_step=i + 1)
        for _ in range(3):
            await recv_json(a)
            await recv_json(b)
        m2 = await in_thread(server.metrics)
        assert m2["flowcast_messages_written_total"] - m1["flowcast_messages_written_total"] >= 6
        assert m2["flowcast_commit_to_write_seconds_count"] >= 3
        assert m2["flowcast_commit_to_write_seconds_sum"] >= 0
        await a.close()
        await b.close()
        return m2

    m2 = run(main())
    text = server.request("GET", "/metrics").body.decode()
    m3 = parse_metrics(text)
    assert m3['flowcast_http_requests_total{code="201"}'] >= 1
    assert m3['flowcast_http_requests_total{code="404"}'] >= 1
    # histogram: cumulative buckets ending in +Inf == count
    buckets = []
    for line in text.splitlines():
        mm = re.match(r'^flowcast_commit_to_write_seconds_bucket\{le="([^"]+)"\} (\S+)$', line)
        if mm:
            buckets.append((mm.group(1), float(mm.group(2))))
    assert len(buckets) >= 2
    assert buckets[-1][0] == "+Inf"
    assert buckets[-1][1] == m3["flowcast_commit_to_write_seconds_count"]
    counts = [c for _, c in buckets]
    assert counts == sorted(counts)
    les = [float(le) for le, _ in buckets[:-1]]
    assert les == sorted(les)
    assert "# TYPE flowcast_commit_to_write_seconds histogram" in text
    assert m3["flowcast_ws_connections"] in (0, 1, 2)
    assert m2["flowcast_backlog_total"] >= 0 and m2["flowcast_backlog_max"] >= 0
