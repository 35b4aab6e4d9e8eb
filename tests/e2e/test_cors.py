"""CORS (issue 9, section 3): --allow-origin drives CORS on REST, SSE,
long-poll, history and /flowcast.js. Preflights of an allowed origin are
answered; every answer (errors and stream starts too) to a request with an
allowed Origin echoes it with Vary: Origin and the exposed headers; another
origin or no Origin gets no CORS header, and the request itself works as
before (the browser enforces CORS, not the server)."""

import threading
import time

import pytest

from fc_helpers import SockReader, connect

API = "/api/workflows"
GOOD = "https://app.example"
GOOD2 = "http://other.example:8080"
BAD = "https://evil.example"
TOKEN = "cors-test-token"

# Every route a page may call, with the methods its preflight names.
ROUTES = [
    (API, "GET, HEAD, POST"),
    (API + "/wf", "GET, HEAD, PATCH, DELETE"),
    (API + "/wf/history", "GET, HEAD"),
    (API + "/wf/events", "GET, HEAD"),
    ("/api/events", "GET, HEAD"),
    ("/flowcast.js", "GET, HEAD"),
    ("/", "GET, HEAD"),
    ("/healthz", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
]


@pytest.fixture(scope="module")
def srv(module_server_factory):
    s = module_server_factory("--allow-origin", GOOD, "--allow-origin", GOOD2,
                              "--api-token", TOKEN)
    s.create(id="wf")
    return s


def cors_headers(r):
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def assert_cors(r, origin):
    assert r.header("access-control-allow-origin") == origin, r
    assert "Origin" in [v.strip() for v in r.header("vary", "").split(",")], r
    exposed = [v.strip().lower() for v in r.header("access-control-expose-headers", "").split(",")]
    for h in ("idempotent-replayed", "location", "retry-after", "www-authenticate"):
        assert h in exposed, (h, r)


def assert_no_cors(r):
    assert cors_headers(r) == {}, r
    assert "vary" not in r.headers, r


def raw(port, text, timeout=5.0):
    rd = SockReader(connect(port))
    rd.sock.sendall(text.encode("latin-1"))
    return rd, rd.read_response(timeout, head_only=True)


# ---------------------------------------------------------------- preflight

@pytest.mark.parametrize("path,methods", ROUTES)
@pytest.mark.parametrize("origin", [GOOD, GOOD2])
def test_preflight_allowed_origin(srv, path, methods, origin):
    r = srv.request("OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": methods.split(", ")[-1],
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key"})
    assert r.status == 204, r
    assert r.body == b""
    assert_cors(r, origin)
    assert r.header("access-control-allow-methods") == methods
    assert r.header("allow") == methods
    allowed = [h.strip().lower() for h in r.header("access-control-allow-headers").split(",")]
    for h in ("authorization", "content-type", "idempotency-key", "last-event-id"):
        assert h in allowed, (h, r)
    assert int(r.header("access-control-max-age")) > 0


@pytest.mark.parametrize("path,methods", ROUTES)
@pytest.mark.parametrize("origin", [BAD, "null", "http://app.example", None])
def test_preflight_other_origin_gets_no_cors(srv, path, methods, origin):
    headers = {"Access-Control-Request-Method": "GET"}
    if origin:
        headers["Origin"] = origin
    r = srv.request("OPTIONS", path, headers=headers)
    assert r.status == 204, r
    assert r.header("allow") == methods
    assert_no_cors(r)


@pytest.mark.parametrize("path", [API + "/wf/updates", "/api/updates", API + "/wf/nope",
                                  API + "/bad%20id", "/nope"])
def test_preflight_elsewhere_is_not_answered(srv, path):
    r = srv.request("OPTIONS", path, headers={"Origin": GOOD})
    assert 400 <= r.status < 500, r
    assert "access-control-allow-methods" not in r.headers
    assert_cors(r, GOOD)  # an error answer to an allowed origin still says so


# ---------------------------------------------------------------- actual answers

def requests_of_every_kind(srv):
    """(name, method, path, body, headers, expected status) for REST answers,
    success and error alike."""
    auth = {"Authorization": "Bearer " + TOKEN}
    # With --api-token every request but the dashboard's files and /healthz
    # carries it (reads too), and the 401s carry CORS like any answer.
    return [
        ("list", "GET", API, None, auth, 200),
        ("get", "GET", API + "/wf", None, auth, 200),
        ("head", "HEAD", API + "/wf", None, auth, 200),
        ("history", "GET", API + "/wf/history?since=0", None, auth, 200),
        ("script", "GET", "/flowcast.js", None, {}, 200),
        ("health", "GET", "/healthz", None, {}, 200),
        ("longpoll now", "GET", API + "/wf?wait_since=0&timeout=1", None, auth, 200),
        ("patch", "PATCH", API + "/wf", {"message": "m"}, auth, 200),
        ("not found", "GET", API + "/missing", None, auth, 404),
        ("bad query", "GET", API + "?limit=0", None, auth, 400),
        ("bad history", "GET", API + "/wf/history?since=x", None, auth, 400),
        ("no token", "POST", API, {"name": "x"}, {}, 401),
        ("no token read", "GET", API + "/wf", None, {}, 401),
        ("bad body", "POST", API, {"name": 5}, auth, 400),
        ("method", "PUT", API, None, auth, 405),
        ("seq conflict", "PATCH", API + "/wf", {"message": "m", "if_seq": 0}, auth, 409),
    ]


@pytest.mark.parametrize("origin", [GOOD, GOOD2])
def test_every_answer_to_allowed_origin_carries_cors(srv, origin):
    for name, method, path, body, headers, status in requests_of_every_kind(srv):
        r = srv.request(method, path, body=body, headers=dict(headers, Origin=origin),
                        auth=False)
        assert r.status == status, (name, r)
        assert_cors(r, origin)
        assert "access-control-allow-methods" not in r.headers, name


@pytest.mark.parametrize("origin", [BAD, "null", None])
def test_other_origins_get_no_cors_and_still_work(srv, origin):
    for name, method, path, body, headers, status in requests_of_every_kind(srv):
        h = dict(headers)
        if origin:
            h["Origin"] = origin
        r = srv.request(method, path, body=body, headers=h, auth=False)
        assert r.status == status, (name, r)
        assert_no_cors(r)


def test_create_delete_and_replay_expose_their_headers(srv):
    h = {"Origin": GOOD, "Idempotency-Key": "cors-k1"}
    r = srv.request("POST", API, {"id": "made", "name": "m", "total_steps": 3}, headers=h)
    assert r.status == 201, r
    assert_cors(r, GOOD)
    assert r.header("location") == API + "/made"
    r = srv.request("POST", API, {"id": "made", "name": "m", "total_steps": 3}, headers=h)
    assert r.status == 201 and r.header("idempotent-replayed") == "true", r
    assert_cors(r, GOOD)
    r = srv.request("DELETE", API + "/made", headers={"Origin": GOOD2})
    assert r.status == 204, r
    assert_cors(r, GOOD2)
    r = srv.request("DELETE", API + "/made", headers={"Origin": BAD})
    assert r.status == 404, r
    assert_no_cors(r)


def test_deferred_answers_keep_their_own_origin(srv):
    """Changes are answered after the store commits, when the request is
    gone: each keeps its request's Origin, on one keep-alive connection."""
    rd = SockReader(connect(srv.port))
    body = '{"message":"k"}'
    for origin in (GOOD, None, GOOD2, BAD, GOOD):
        rd.sock.sendall(("PATCH %s/wf HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s"
                         "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                         "Content-Length: %d\r\n\r\n%s"
                         % (API, srv.port, "Origin: %s\r\n" % origin if origin else "",
                            TOKEN, len(body), body)).encode())
        r = rd.read_response()
        assert r.status == 200, r
        if origin in (GOOD, GOOD2):
            assert_cors(r, origin)
        else:
            assert_no_cors(r)
    rd.sock.close()


# ---------------------------------------------------------------- streams

@pytest.mark.parametrize("path", [API + "/wf/events", "/api/events?workflow_ids=wf"])
def test_sse_start_carries_cors(srv, path):
    for origin, ok in ((GOOD, True), (BAD, False), (None, False)):
        rd, r = raw(srv.port, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s"
                    "Authorization: Bearer %s\r\n\r\n"
                    % (path, srv.port, "Origin: %s\r\n" % origin if origin else "", TOKEN))
        assert r.status == 200 and r.header("content-type") == "text/event-stream", r
        if ok:
            assert_cors(r, origin)
        else:
            assert_no_cors(r)
        assert rd.read_until(b"\n\n")  # the stream itself runs
        rd.sock.close()
    rd, r = raw(srv.port, "HEAD %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: %s\r\n"
                "Authorization: Bearer %s\r\n\r\n" % (path, srv.port, GOOD2, TOKEN))
    assert r.status == 200, r
    assert_cors(r, GOOD2)
    rd.sock.close()


def test_longpoll_woken_answer_carries_cors(srv):
    seq = srv.get("wf")["seq"]
    out = {}

    def wait(origin):
        out[origin] = srv.request("GET", API + "/wf?wait_since=%d&timeout=20" % seq,
                                  headers={"Origin": origin}, timeout=30)

    threads = [threading.Thread(target=wait, args=(o,)) for o in (GOOD, BAD)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    srv.patch("wf", message="wake")
    for t in threads:
        t.join(30)
    assert out[GOOD].status == 200 and out[GOOD].json()["seq"] == seq + 1, out
    assert_cors(out[GOOD], GOOD)
    assert out[BAD].status == 200 and out[BAD].json()["seq"] == seq + 1, out
    assert_no_cors(out[BAD])


# ---------------------------------------------------------------- configuration

def test_wildcard_echoes_the_origin_never_star(server_factory):
    s = server_factory("--allow-origin", "*")
    for origin in (GOOD, BAD, "null"):
        r = s.request("GET", API, headers={"Origin": origin})
        assert r.status == 200, r
        assert_cors(r, origin)
        r = s.request("OPTIONS", API, headers={"Origin": origin})
        assert r.status == 204 and r.header("access-control-allow-origin") == origin, r


def test_without_allow_origin_only_same_host(server_factory):
    s = server_factory()
    same = "http://127.0.0.1:%d" % s.port
    r = s.request("GET", API, headers={"Origin": same})
    assert_cors(r, same)
    for origin in (GOOD, "http://127.0.0.1:%d" % (s.port + 1)):
        r = s.request("GET", API, headers={"Origin": origin})
        assert r.status == 200, r
        assert_no_cors(r)
        r = s.request("OPTIONS", API, headers={"Origin": origin})
        assert r.status == 204, r
        assert_no_cors(r)
