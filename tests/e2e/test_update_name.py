"""Update messages carry the workflow's name (issue 11), so a watcher that
sees a workflow for the first time on a stream needs no GET for it: live
updates on the multi and the single WebSocket and on SSE, the replay of a
resume, a resync, and the history's events. A deletion carries none."""

import json

from fc_helpers import DELETED_KEYS, assert_update, expect_silence, in_thread, recv_json, run, ws_connect
from test_sse_longpoll import SSE

NAME = "Nächtlicher Build · 夜间构建 \"quoted\" \\ back"


async def _send(ws, obj):
    await ws.send(json.dumps(obj))


def test_multi_stream_updates_carry_the_name(server):
    async def main():
        ws = await ws_connect(server, "/api/updates")
        await _send(ws, {"op": "subscribe_all"})
        await recv_json(ws)  # the answer to subscribe_all
        await in_thread(server.create, id="n1", name=NAME, total_steps=3)
        m = assert_update(await recv_json(ws), "n1")
        assert (m["seq"], m["name"]) == (1, NAME)
        await in_thread(server.patch, "n1", current_step=1, message="one")
        m = assert_update(await recv_json(ws), "n1")
        assert (m["seq"], m["name"], m["message"]) == (2, NAME, "one")
        await in_thread(server.delete, "n1")
        d = await recv_json(ws)
        assert d["deleted"] is True and set(d) == DELETED_KEYS, d
        await expect_silence(ws, 0.2)
        await ws.close()

    run(main())


def test_resume_replay_resync_and_single_stream_carry_the_name(server):
    server.create(id="r", name="Replayed job", total_steps=10)
    for i in range(1, 4):
        server.patch("r", current_step=i)  # seq 4

    async def main():
        ws = await ws_connect(server, "/api/updates")
        await _send(ws, {"op": "subscribe", "workflow_ids": ["r"], "since": {"r": 1}})
        await recv_json(ws)  # subscribed
        got = [assert_update(await recv_json(ws), "r") for _ in range(3)]
        assert [(m["seq"], m["name"]) for m in got] == [(s, "Replayed job") for s in (2, 3, 4)]
        await ws.close()

        # A position past the server's log: the current state as a resync.
        ws = await ws_connect(server, "/api/workflows/r/updates?since=99")
        m = assert_update(await recv_json(ws), "r")
        assert m.get("resync") is True and m["name"] == "Replayed job", m
        await in_thread(server.patch, "r", current_step=4)
        m = assert_update(await recv_json(ws), "r")
        assert (m["seq"], m["name"]) == (5, "Replayed job")
        await ws.close()

    run(main())


def test_sse_and_history_events_carry_the_name(server):
    server.create(id="h", name="History job", total_steps=5)
    server.patch("h", current_step=1)
    s = SSE(server, "/api/events?workflow_ids=h")
    try:
        _, first = s.event()
        assert assert_update(first, "h")["name"] == "History job"
        server.patch("h", current_step=2)
        _, live = s.event()
        assert (live["seq"], live["name"]) == (3, "History job")
    finally:
        s.close()
    r = server.request("GET", "/api/workflows/h/history?since=0")
    assert r.status == 200, r
    events = r.json()["events"]
    assert [(e["seq"], e["name"]) for e in events] == [(s, "History job") for s in (1, 2, 3)]
    for e in events:
        assert_update(e, "h")
