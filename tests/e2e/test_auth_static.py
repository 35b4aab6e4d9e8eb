"""The static --api-token alone (no --jwt-key) is auth configured (issue 9,
section 1): every read (REST GET and HEAD, list, history, long-poll, SSE,
both WebSockets, /metrics) needs it as well as every change, in the
Authorization header or the access_token parameter; only /healthz and the
dashboard's files answer without it. The CLI and the C client send it with
every command."""
import asyncio
import json

import pytest
import websockets

from fc_helpers import assert_error, request_status

TOKEN = "static-only-operator-token-0123"
API = "/api/workflows"

# (method, path, transport, status when allowed)
READS = [
    ("GET", API, "http", 200),
    ("HEAD", API, "http", 200),
    ("GET", API + "/wf", "http", 200),
    ("HEAD", API + "/wf", "http", 200),
    ("GET", API + "/wf/history", "http", 200),
    ("GET", API + "/wf?wait_since=0&timeout=1", "http", 200),
    ("GET", API + "/wf/events", "sse", 200),
    ("GET", "/api/events?workflow_ids=wf", "sse", 200),
    ("GET", API + "/wf/updates", "ws", 101),
    ("GET", "/api/updates", "ws", 101),
    ("GET", "/metrics", "http", 200),
]


def status(srv, method, path, auth=None, query=None, ws=False):
    """The status of one request on a raw socket."""
    headers = {}
    if auth is not None:
        headers["Authorization"] = auth
    if query is not None:
        path += ("&" if "?" in path else "?") + "access_token=" + query
    return request_status(srv.port, method, path, headers, ws=ws)


@pytest.fixture(scope="module")
def srv(module_server_factory):
    s = module_server_factory("--api-token", TOKEN)
    s.create(id="wf")
    return s


@pytest.mark.parametrize("method,path,transport,ok", READS)
def test_every_read_needs_the_static_token(srv, method, path, transport, ok):
    ws = transport == "ws"
    assert status(srv, method, path, ws=ws) == 401
    assert status(srv, method, path, auth="Bearer wrong-" + TOKEN, ws=ws) == 401
    assert status(srv, method, path, auth="Bearer " + TOKEN[:-1], ws=ws) == 401
    assert status(srv, method, path, auth=TOKEN, ws=ws) == 401  # no "Bearer "
    assert status(srv, method, path, auth="Bearer " + TOKEN, ws=ws) == ok
    if method == "GET":
        assert status(srv, method, path, query=TOKEN, ws=ws) == ok
        assert status(srv, method, path, query="nope", ws=ws) == 401


def test_the_401_says_bearer_and_no_more(srv):
    r = srv.request("GET", API + "/wf", auth=False)
    assert_error(r, 401, "unauthorized")
    assert r.header("www-authenticate") == "Bearer"
    assert b"wf" not in r.body and TOKEN.encode() not in r.body


def test_health_and_dashboard_stay_open(srv):
    for path in ("/healthz", "/", "/flowcast.js"):
        assert status(srv, "GET", path) == 200, path


def test_changes_need_it_too(srv):
    body = {"id": "other", "name": "o", "total_steps": 1}
    assert srv.request("POST", API, body, auth=False).status == 401
    assert srv.request("PATCH", API + "/wf", {"current_step": 1}, auth=False).status == 401
    assert srv.request("DELETE", API + "/wf", auth=False).status == 401
    assert srv.get("wf")["current_step"] == 0


def test_websocket_client_with_and_without_the_token(srv):
    async def main():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect(srv.ws_url(API + "/wf/updates"))
        assert e.value.status_code == 401
        async with websockets.connect(srv.ws_url(API + "/wf/updates"),
                                      extra_headers={"Authorization": "Bearer " + TOKEN}) as ws:
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert m["workflow_id"] == "wf"
    asyncio.run(main())
