"""The multi-workflow stream (/api/updates) and resuming with since."""

import asyncio
import json

from fc_helpers import (DELETED_KEYS, assert_update, expect_silence, in_thread, recv_json,
                        recv_until_closed, run, ws_connect)

MULTI = "/api/updates"


def _updates(wid, since=None):
    return "/api/workflows/%s/updates" % wid + ("" if since is None else "?since=%s" % since)


async def _send(ws, obj):
    await ws.send(json.dumps(obj))


# ---------------------------------------------------------------- multi stream

def test_multi_subscribe_initial_states_and_since(server):
    server.create(id="a")
    server.create(id="b", total_steps=3)
    for i in range(1, 6):
        server.patch("a", current_step=i)  # a is at seq 6

    async def main():
        ws = await ws_connect(server, MULTI)
        await _send(ws, {"op": "subscribe", "workflow_ids": ["a", "b"], "since": {"a": 3}})
        assert await recv_json(ws) == {"op": "subscribed", "workflow_ids": ["a", "b"]}
        got = [assert_update(await recv_json(ws)) for _ in range(4)]
        a = [(m["seq"], m["current_step"]) for m in got if m["workflow_id"] == "a"]
        b = [m for m in got if m["workflow_id"] == "b"]
        assert a == [(4, 3), (5, 4), (6, 5)]
        assert len(b) == 1 and b[0]["seq"] == 1 and b[0]["total_steps"] == 3
        assert not any(m.get("resync") for m in got)
        await expect_silence(ws, 0.2)
        await in_thread(server.patch, "b", current_step=1)
        await in_thread(server.patch, "a", current_step=6)
        m1, m2 = await recv_json(ws), await recv_json(ws)
        assert (m1["workflow_id"], m1["seq"]) == ("b", 2)
        assert (m2["workflow_id"], m2["seq"]) == ("a", 7)
        await ws.close()

    run(main())


def test_multi_subscribe_many_ids(server):
    ids = ["m%03d" % i for i in range(100)]
    for wid in ids:
        server.create(id=wid)

    async def main():
        ws = await ws_connect(server, MULTI)
        await _send(ws, {"op": "subscribe", "workflow_ids": ids})
        assert await recv_json(ws) == {"op": "subscribed", "workflow_ids": ids}
        got = sorted([(await recv_json(ws))["workflow_id"] for _ in ids])
        assert got == ids
        await in_thread(server.patch, "m050", current_step=1)
        m = await recv_json(ws)
        assert (m["workflow_id"], m["seq"]) == ("m050", 2)
        m = await in_thread(server.metrics)
        assert m["flowcast_subscriptions"] >= 100
        await ws.close()

    run(main())


def test_multi_unsubscribe(server):
    server.create(id="a")
    server.create(id="b")

    async def main():
        ws = await ws_connect(server, MULTI)
        await _send(ws, {"op": "subscribe", "workflow_ids": ["a", "b"]})
        assert (await recv_json(ws))["op"] == "subscribed"
        await recv_json(ws)
        await recv_json(ws)
        await _send(ws, {"op": "unsubscribe", "workflow_ids": ["a"]})
        assert await recv_json(ws) == {"op": "unsubscribed", "workflow_ids": ["a"]}
        await in_thread(server.patch, "a", message="hidden")
        await in_thread(server.patch, "b", message="shown")
        m = await recv_json(ws)
        assert (m["workflow_id"], m["message"]) == ("b", "shown")
        await expect_silence(ws, 0.2)
        # subscribing again works; twice is harmless (one copy per change)
        await _send(ws, {"op": "subscribe", "workflow_ids": ["a"]})
        assert (await recv_json(ws))["op"] == "subscribed"
        assert (await recv_json(ws))["message"] == "hidden"
        await _send(ws, {"op": "subscribe", "workflow_ids": ["b"]})
        assert (await recv_json(ws))["op"] == "subscribed"
        assert (await recv_json(ws))["workflow_id"] == "b"
        await in_thread(server.patch, "b", message="once")
        assert (await recv_json(ws))["message"] == "once"
        await expect_silence(ws, 0.2)
        await ws.close()

    run(main())


def test_multi_subscribe_all(server):
    server.create(id="a")
    server.create(id="b")

    async def main():
        ws = await ws_connect(server, MULTI)
        await _send(ws, {"op": "subscribe_all"})
        assert await recv_json(ws) == {"op": "subscribed", "all": True}
        await expect_silence(ws, 0.2)  # no initial states
        await in_thread(server.patch, "a", current_step=1)
        await in_thread(server.patch, "b", current_step=2)
        m1, m2 = await recv_json(ws), await recv_json(ws)
        assert (m1["workflow_id"], m1["seq"]) == ("a", 2)
        assert (m2["workflow_id"], m2["seq"]) == ("b", 2)
        c = await in_thread(server.create, id="c")
        m = assert_update(await recv_json(ws), "c")
        assert m["seq"] == 1 and m["status"] == c["status"]
        await in_thread(server.delete, "b")
        d = await recv_json(ws)
        assert d["workflow_id"] == "b" and d["deleted"] is True
        await ws.close()

    run(main())


def test_multi_errors_keep_connection_open(server):
    server.create(id="a")
    server.create(id="b")

    async def main():
        ws = await ws_connect(server, MULTI)
        bad = ["not json", "[1,2]", '{"op":"dance"}', '{"workflow_ids":["a"]}',
               '{"op":"subscribe"}', '{"op":"subscribe","workflow_ids":"a"}',
               '{"op":"subscribe","workflow_ids":[1]}',
               '{"op":"subscribe","workflow_ids":["a"],"since":{"a":-1}}',
               '{"op":"subscribe","workflow_ids":["a"],"since":{"a":"x"}}',
               '{"op":"subscribe","workflow_ids":["bad id!"]}',
               '{"op":"unsubscribe"}']
        for text in bad:
            await ws.send(text)
            m = await recv_json(ws)
            assert m["op"] == "error" and m["code"] == "bad_request", (text, m)
            assert isinstance(m["message"], str) and m["message"], m
        # one unknown id: nothing from that op is subscribed
        await _send(ws, {"op": "subscribe", "workflow_ids": ["a", "nope"]})
        m = await recv_json(ws)
        assert m["op"] == "error" and m["code"] == "not_found", m
        assert "nope" in m["message"] and m["workflow_id"] == "nope", m
        await expect_silence(ws, 0.2)
        await _send(ws, {"op": "subscribe", "workflow_ids": ["b"]})
        assert (await recv_json(ws))["op"] == "subscribed"
        assert (await recv_json(ws))["workflow_id"] == "b"
        await in_thread(server.patch, "a", message="not for me")
        await in_thread(server.patch, "b", message="for me")
        m = await recv_json(ws)
        assert (m["workflow_id"], m["message"]) == ("b", "for me")
        await expect_silence(ws, 0.2)
        await ws.close()

    run(main())


def test_multi_delete_keeps_connection(server):
    server.create(id="a")
    server.create(id="b")

    async def main():
        ws = await ws_connect(server, MULTI)
        await _send(ws, {"op": "subscribe", "workflow_ids": ["a", "b"]})
        await recv_json(ws)
        await recv_json(ws)
        await recv_json(ws)
        await in_thread(server.delete, "a")
        d = await recv_json(ws)
        assert set(d) == DELETED_KEYS, d
        assert d["workflow_id"] == "a" and d["deleted"] is True and d["seq"] >= 2
        await in_thread(server.patch, "b", message="alive")
        m = await recv_json(ws)
        assert (m["workflow_id"], m["message"]) == ("b", "alive")
        # the id can be re-created; the old subscription is gone
        await in_thread(server.create, id="a")
        await expect_silence(ws, 0.2)
        await ws.close()

    run(main())


def test_single_stream_closed_1000_on_delete(server):
    server.create(id="x")

    async def main():
        s1 = await ws_connect(server, _updates("x"))
        s2 = await ws_connect(server, _updates("x"))
        for s in (s1, s2):
            await recv_json(s)
        await in_thread(server.delete, "x")
        for s in (s1, s2):
            msgs, code = await recv_until_closed(s)
            assert code == 1000
            assert [json.loads(m)["deleted"] for m in msgs] == [True]

    run(main())


# ---------------------------------------------------------------- resume with since

def test_since_zero_full_history_then_live(server):
    server.create(id="h", total_steps=10)
    for i in range(1, 8):
        server.patch("h", current_step=i, message="m%d" % i)

    async def main():
        ws = await ws_connect(server, _updates("h", 0))
        got = [assert_update(await recv_json(ws), "h") for _ in range(8)]
        assert [m["seq"] for m in got] == list(range(1, 9))
        assert [m["current_step"] for m in got] == list(range(0, 8))
        assert got[3]["message"] == "m3"
        ts = [m["timestamp"] for m in got]
        assert ts == sorted(ts)
        assert not any("resync" in m for m in got)
        await expect_silence(ws, 0.2)
        await in_thread(server.patch, "h", current_step=9)
        assert (await recv_json(ws))["seq"] == 9
        await ws.close()

    run(main())


def test_since_middle_and_current(server):
    server.create(id="h")
    for i in range(1, 6):
        server.patch("h", current_step=i)  # seq 6

    async def main():
        ws = await ws_connect(server, _updates("h", 4))
        assert [(await recv_json(ws))["seq"] for _ in range(2)] == [5, 6]
        await expect_silence(ws, 0.2)
        ws2 = await ws_connect(server, _updates("h", 6))  # nothing until the next change
        await expect_silence(ws2, 0.3)
        await ws2.close()
        ws3 = await ws_connect(server, _updates("h", 6))
        await in_thread(server.patch, "h", current_step=6)
        assert (await recv_json(ws))["seq"] == 7
        m = await recv_json(ws3)
        assert m["seq"] == 7 and "resync" not in m
        await ws.close()
        await ws3.close()

    run(main())


def test_since_beyond_current_seq_resyncs(server):
    """A client claiming a seq the server never had (a restored database, a
    workflow deleted and created again) must not keep its stale view: it is
    told to resync with the current state, then gets live changes."""
    server.create(id="h")
    server.patch("h", current_step=1)  # seq 2

    async def main():
        ws = await ws_connect(server, _updates("h", 100))
        m = await recv_json(ws)
        assert m["seq"] == 2 and m.get("resync") is True, m
        await in_thread(server.patch, "h", current_step=2)
        m = await recv_json(ws)
        assert m["seq"] == 3 and "resync" not in m
        await ws.close()

    run(main())


def test_since_resync_after_retention(server_factory):
    s = server_factory("--retention", "5")
    s.create(id="r", total_steps=100)
    for i in range(1, 21):
        s.patch("r", current_step=i, message="m%d" % i)  # seq 21

    async def main():
        ws = await ws_connect(s, _updates("r", 1))
        m = assert_update(await recv_json(ws), "r")
        assert m.get("resync") is True, m
        assert (m["seq"], m["current_step"], m["message"]) == (21, 20, "m20")
        await expect_silence(ws, 0.2)
        # the last 5 changes are still in the log: no resync
        ws2 = await ws_connect(s, _updates("r", 16))
        got = [await recv_json(ws2) for _ in range(5)]
        assert [g["seq"] for g in got] == [17, 18, 19, 20, 21]
        assert not any("resync" in g for g in got)
        await expect_silence(ws2, 0.2)
        # live updates continue after a resync
        await in_thread(s.patch, "r", current_step=21)
        m = await recv_json(ws)
        assert m["seq"] == 22 and "resync" not in m
        assert (await recv_json(ws2))["seq"] == 22
        # the multi stream resyncs the same way
        mc = await ws_connect(s, MULTI)
        await _send(mc, {"op": "subscribe", "workflow_ids": ["r"], "since": {"r": 2}})
        assert (await recv_json(mc))["op"] == "subscribed"
        m = await recv_json(mc)
        assert m["resync"] is True and m["seq"] == 22
        await expect_silence(mc, 0.2)
        for c in (ws, ws2, mc):
            await c.close()

    run(main())


def test_many_subscribers_resume_concurrently(server):
    server.create(id="c")
    for i in range(1, 11):
        server.patch("c", current_step=i)

    async def one(since):
        ws = await ws_connect(server, _updates("c", since))
        got = [(await recv_json(ws))["seq"] for _ in range(11 - since)]
        assert got == list(range(since + 1, 12))
        await ws.close()

    async def main():
        await asyncio.gather(*(one(k % 11) for k in range(50)))

    run(main())
