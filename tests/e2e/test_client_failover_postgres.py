"""Client failover between two flowcast nodes on ONE PostgreSQL database
(issue 10 §3): both nodes run at once; a libflowcast watch (fcc_probe), the
CLI and the Python client get "A,B"; A is killed with kill -9 mid-stream;
the watch moves to B and resumes by (epoch, seq) from the shared store:
every seq once, in order. (The full 3-node cluster with the bus and a proxy is tested in the
cluster suites.)"""

import asyncio
import json
import threading
import time

import pytest

from conftest import ServerFactory
from fc_helpers import run
from fcc_helpers import cli_json, probe, updates
from pyclient_helpers import assert_exact, collect, flowcast, until


def _url(s):
    return "http://127.0.0.1:%d" % s.port


@pytest.fixture
def nodes(flowcast, tmp_path, pg):
    """Two flowcast nodes at once on a fresh database of the module's PostgreSQL."""
    dsn = pg.fresh_database("failover")
    f = ServerFactory(flowcast, str(tmp_path))
    yield [f(db=dsn), f(db=dsn)]
    f.teardown()


def _patch_any(servers, wid, step, deadline):
    """PATCHes through the first live node that acknowledges."""
    while time.monotonic() < deadline:
        for s in servers:
            if not s.alive():
                continue
            try:
                r = s.request("PATCH", "/api/workflows/" + wid, {"current_step": step}, timeout=2)
                if r.status == 200:
                    return r.json()["seq"]
            except OSError:
                pass
        time.sleep(0.02)
    raise AssertionError("PATCH %s step %d never acknowledged" % (wid, step))


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_watch_fails_over_between_two_nodes_on_one_postgres(flowcast, nodes, mode):
    a, b = nodes
    ids = ["pa", "pb"] if mode == "multi" else ["pa"]
    for wid in ids:
        a.create(id=wid, name=wid, total_steps=1000)
    p = probe(flowcast, a, "--backoff-max", "400", *ids, url="%s,%s" % (_url(a), _url(b)))
    try:
        for wid in ids:
            p.wait_for(lambda o, w=wid: o.get("event") == "update" and o["workflow_id"] == w,
                       what="state of " + wid)
        acked = {wid: [] for wid in ids}

        def producer():
            deadline = time.monotonic() + 40
            for step in range(1, 41):
                for wid in ids:
                    acked[wid].append(_patch_any([a, b], wid, step, deadline))
                time.sleep(0.005)

        t = threading.Thread(target=producer)
        t.start()
        time.sleep(0.15)
        a.kill9()
        t.join(45)
        assert not t.is_alive()
        final = {wid: b.get(wid)["seq"] for wid in ids}
        for wid in ids:
            p.wait_for(lambda o, w=wid: o.get("event") == "update" and o["workflow_id"] == w
                       and o["seq"] == final[w], timeout=20, what="last seq of " + wid)
            got = [u["seq"] for u in updates(p.lines, wid)]
            assert got == list(range(1, final[wid] + 1)), got
            assert set(acked[wid]) <= set(got)
        opens = [o for o in map(json.loads, p.lines) if o.get("state") == "open"]
        assert opens[0]["url"] == _url(a) and opens[-1]["url"] == _url(b), opens
    finally:
        p.kill()


def test_cli_changes_go_to_the_live_node(flowcast, nodes):
    a, b = nodes
    a.create(id="c1", name="c1", total_steps=5)
    a.kill9()
    w = cli_json(flowcast, b, "--server", "%s,%s" % (_url(a), _url(b)), "step", "c1")
    assert w["seq"] == 2 and w["current_step"] == 1
    assert b.get("c1")["seq"] == 2


def test_python_watch_and_rest_fail_over_between_two_nodes(nodes):
    """The Python client with servers=[A, B]: producers (the same
    AsyncClient) and a multi watch; A is killed -9 mid-stream; REST calls
    and the watch go on at B, every seq once."""
    a, b = nodes
    n = 25
    for wid in ("qa", "qb"):
        a.create(id=wid, name=wid, total_steps=n)

    async def main():
        ac = flowcast.AsyncClient(servers=[_url(a), _url(b)], retries=60, backoff_max=0.3)
        states = []
        w = ac.watch(["qa", "qb"], on_state=states.append, backoff_initial=0.05,
                     backoff_max=0.5)
        got = []
        def done(evs):
            return all(any(e.workflow_id == i and e.seq == n + 1 for e in evs)
                       for i in ("qa", "qb"))

        task = asyncio.ensure_future(collect(w, done, events=got))
        await until(lambda: len(got) == 2)

        async def produce(wid):
            for i in range(n):
                await ac.step(wid)
                await asyncio.sleep(0.01)

        producers = [asyncio.ensure_future(produce(x)) for x in ("qa", "qb")]
        await asyncio.sleep(0.2)
        await asyncio.to_thread(a.kill9)
        await asyncio.gather(*producers)
        return await task, states, str(ac.base)

    events, states, base = run(main(), 90)
    assert base == _url(b)
    for wid in ("qa", "qb"):
        assert b.get(wid)["seq"] == n + 1
        assert_exact(events, wid, n + 1)
    opens = [x for x in states if x.state == "open"]
    assert opens[0].url == _url(a) and opens[-1].url == _url(b), opens
