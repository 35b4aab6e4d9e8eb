"""The Python client with tokens and TLS against the real server: refresh
on 401/token_expired and before exp, 4401 on the single stream, in-place
{"op":"auth"} on the multi stream, token errors; https and wss through a
TLS front and through the server's own TLS."""

import asyncio
import ssl
import time

import pytest

from fc_helpers import parse_metrics, run
from pyclient_helpers import (STATIC, Minter, TLSFront, all_watch_ready, assert_exact, at,
                              cert_pair, collect, flowcast, jwt_server, seqs_of, until, url)

__all__ = ["cert_pair", "jwt_server"]  # fixtures


def test_rest_refreshes_an_expired_token(jwt_server):
    s = jwt_server
    admin = flowcast.Client(url(s), STATIC)
    admin.create("t", 10, id="t")
    expired = Minter(ttl=-5)()
    with pytest.raises(flowcast.TokenExpiredError) as ei:
        flowcast.Client(url(s), expired).get("t")
    assert (ei.value.status, ei.value.code) == (401, "token_expired")
    with pytest.raises(flowcast.UnauthorizedError) as ei:
        flowcast.Client(url(s), "not-a-token").get("t")
    assert (ei.value.status, ei.value.code) == (401, "unauthorized")
    # A provider whose first token is expired: the 401 makes the client ask
    # again and send the same call (same key) with the new one.
    m = Minter(ttls=[-5])
    c = flowcast.Client(url(s), m)
    assert c.step("t", "refreshed").seq == 2 and m.calls == 2
    # A held token past its exp is replaced before the call, without a 401.
    m2 = Minter(ttls=[2])
    c2 = flowcast.Client(url(s), m2)
    assert c2.get("t").seq == 2 and m2.calls == 1
    time.sleep(2.2)
    before = s.request("GET", "/metrics", headers={"Authorization": "Bearer " + STATIC})
    assert c2.get("t").seq == 2 and m2.calls == 2
    after = s.request("GET", "/metrics", headers={"Authorization": "Bearer " + STATIC})
    key = "flowcast_auth_unauthorized_total"
    assert parse_metrics(after.body.decode())[key] == parse_metrics(before.body.decode())[key]

    async def coroutine_provider():
        am = Minter(ttls=[-5])

        async def token():
            await asyncio.sleep(0)
            return am()

        ac = flowcast.AsyncClient(url(s), token)
        w = await ac.update("t", message="async refresh")
        assert w.seq == 3 and am.calls == 2
        with pytest.raises(TypeError):
            flowcast.Client(url(s), token).get("t")

    run(coroutine_provider())


def test_watch_resumes_across_token_expiry(jwt_server):
    """Short-lived tokens: the single stream is closed 4401 at each exp and
    the watch reconnects at once with a fresh token; the multi stream and a
    watch of all refresh in place ({"op":"auth"}) and never reconnect. A
    producer keeps stepping meanwhile: every watch sees every seq once."""
    s = jwt_server
    admin = flowcast.AsyncClient(url(s), STATIC)
    n = 45

    async def main():
        await admin.create("a", n, id="a")
        await admin.create("b", n, id="b")
        minters = {k: Minter(ttl=3) for k in ("single", "multi", "all")}
        states = {k: [] for k in minters}
        watches = {
            "single": flowcast.Watch(url(s), ["a"], token=minters["single"],
                                     on_state=states["single"].append),
            "multi": flowcast.Watch(url(s), ["a", "b"], token=minters["multi"],
                                    on_state=states["multi"].append),
            "all": flowcast.Watch(url(s), all=True, token=minters["all"],
                                  on_state=states["all"].append),
        }
        done = {"single": ["a"], "multi": ["a", "b"], "all": ["a", "b"]}
        got = {k: [] for k in watches}
        tasks = {k: asyncio.ensure_future(collect(
            w, lambda evs, ids=done[k]: all(any(e.workflow_id == i and e.seq == n + 1
                                                for e in evs) for i in ids), timeout=60,
            events=got[k])) for k, w in watches.items()}
        await until(lambda: len(got["single"]) == 1 and len(got["multi"]) == 2)
        for i in range(n):  # ~9 s: three expiries of each watch's token
            await admin.step("a")
            await admin.step("b")
            await asyncio.sleep(0.2)
        return {k: await t for k, t in tasks.items()}, states, minters

    evs, states, minters = run(main(), 90)
    assert_exact(evs["single"], "a", n + 1) and seqs_of(evs["single"], "a")[0] == 1
    for k in ("multi", "all"):
        assert_exact(evs[k], "a", n + 1) and assert_exact(evs[k], "b", n + 1)
    single = [x for x in states["single"] if x.state == "reconnecting"]
    assert len(single) >= 2 and all("4401" in x.reason and x.delay == 0 for x in single), single
    assert minters["single"].calls >= 3
    for k in ("multi", "all"):
        names = [x.state for x in states[k]]
        assert names.count("open") == 1 and "reconnecting" not in names, (k, names)
        assert minters[k].calls >= 3, k
    m = parse_metrics(s.request("GET", "/metrics",
                                headers={"Authorization": "Bearer " + STATIC}).body.decode())
    assert m['flowcast_auth_refreshes_total{result="ok"}'] >= 4


def test_watch_token_errors(jwt_server):
    """A fixed token that expires ends the watch with TokenExpiredError
    (after what it delivered); a handshake 401 makes a provider's watch ask
    again; a refresh that no longer covers a workflow is ForbiddenError."""
    s = jwt_server
    admin = flowcast.AsyncClient(url(s), STATIC)

    async def main():
        await admin.create("a", 9, id="a")
        await admin.create("b", 9, id="b")
        fixed = flowcast.Watch(url(s), ["a"], token=Minter(ttl=2)())
        with pytest.raises(flowcast.TokenExpiredError):
            got = []
            await collect(fixed, lambda ev: False, timeout=10, events=got)
        assert [e.seq for e in got] == [1]
        with pytest.raises(flowcast.TokenExpiredError):  # refused at the handshake
            await collect(flowcast.Watch(url(s), ["a"], token=Minter(ttl=-1)()),
                          lambda ev: False, timeout=10)
        with pytest.raises(flowcast.UnauthorizedError) as ei:  # no credential at all
            await collect(flowcast.Watch(url(s), ["a", "b"]), lambda ev: False, timeout=10)
        assert ei.value.code == "unauthorized"
        m = Minter(ttls=[-5])
        first = await collect(flowcast.Watch(url(s), ["a", "b"], token=m),
                              lambda ev: len(ev) == 2, timeout=10)
        assert len(first) == 2 and m.calls == 2
        m2 = Minter(ttls=[2])

        def narrowing():  # the refresh no longer covers b
            if m2.calls:
                m2.workflows = ["a"]
            return m2()

        w = flowcast.Watch(url(s), ["a", "b"], token=narrowing, refresh_lead=1.0)
        got2 = []
        with pytest.raises(flowcast.ForbiddenError) as ei:
            await collect(w, lambda ev: False, timeout=10, events=got2)
        return ei.value, got2

    err, got2 = run(main(), 40)
    assert err.workflow_id == "b" and err.status == 403 and err.code == "forbidden"
    assert sorted(e.workflow_id for e in got2) == ["a", "b"]


@pytest.mark.parametrize("front", ["proxy", "server"])
def test_https_and_wss(server_factory, cert_pair, front):
    """https:// REST and wss:// watches verified against ca_file or an
    ssl.SSLContext; an untrusted certificate fails at once (not retried)."""
    cert, key = cert_pair
    proxy = None
    if front == "server":
        s = server_factory("--tls-cert", cert, "--tls-key", key, ready=False)
        port = s.port
    else:
        s = server_factory()
        proxy = TLSFront(s.port, cert, key)
        port = proxy.listen_port
    base = "https://127.0.0.1:%d" % port
    try:
        c = flowcast.Client(base, ca_file=cert, retries=20, backoff_max=0.2)
        w = c.create("tls", 5, id="t")  # retried while a server with TLS starts
        assert c.step("t", "over tls").seq == 2 and c.get("t").message == "over tls"
        with pytest.raises(flowcast.ConnectionFailed) as ei:
            flowcast.Client(base, retries=3).get("t")  # the system store does not know it
        assert ei.value.attempts == 1 and "certificate" in str(ei.value)

        async def main():
            ac = flowcast.AsyncClient(base, ssl=ssl.create_default_context(cafile=cert))
            assert (await ac.get("t")).seq == 2
            with pytest.raises(flowcast.ConnectionFailed):
                await flowcast.AsyncClient(base, retries=3).get("t")
            await ac.create("u", 5, id="u")
            watches = [ac.watch(["t"]), ac.watch(["t", "u"]),
                       flowcast.Watch(base, all=True, ca_file=cert)]
            got = [[], [], []]
            tasks = [asyncio.ensure_future(collect(x, at("t", 4), timeout=30, events=g))
                     for x, g in zip(watches, got)]
            await until(lambda: len(got[0]) == 1 and len(got[1]) == 2)
            await all_watch_ready(ac, got[2])
            await ac.step("t")
            await ac.step("t")
            with pytest.raises(flowcast.ConnectionFailed):
                await collect(flowcast.Watch(base, ["t"]), lambda ev: False, timeout=10)
            return [await t for t in tasks]

        single, multi, every = run(main(), 60)
    finally:
        if proxy:
            proxy.close()
    assert seqs_of(single, "t") == [2, 3, 4] and seqs_of(multi, "t") == [2, 3, 4]
    assert seqs_of(multi, "u") == [1] and seqs_of(every, "t") == [3, 4]
    assert w.epoch == single[0].epoch
