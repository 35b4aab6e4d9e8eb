"""REST API: workflow CRUD, validation, listing, errors, auth, HTTP/1.1 framing."""

import json
import time

import pytest

from fc_helpers import (GEN_ID_RE, TIME_RE, SockReader, assert_error, assert_workflow, connect,
                        http_request_bytes, raw_http, send_in_two)

API = "/api/workflows"


def test_healthz(server):
    r = server.request("GET", "/healthz")
    assert r.status == 200
    assert r.header("content-type", "").startswith("application/json")
    assert r.json() == {"status": "ok"}


def test_create_defaults_and_get(server):
    r = server.request("POST", API, {"name": "build #1", "total_steps": 5})
    assert r.status == 201, r
    w = assert_workflow(r.json())
    assert GEN_ID_RE.match(w["id"]), w
    assert r.header("location") == API + "/" + w["id"]
    assert r.header("content-type", "").startswith("application/json")
    assert w["name"] == "build #1"
    assert w["status"] == "pending"
    assert w["current_step"] == 0
    assert w["total_steps"] == 5
    assert w["message"] == ""
    assert w["seq"] == 1
    assert w["created_at"] == w["updated_at"]
    assert server.get(w["id"]) == w


def test_create_all_fields(server):
    body = {"id": "job_A-1", "name": "n", "total_steps": 7, "current_step": 3,
            "status": "running", "message": "héllo ✓"}
    r = server.request("POST", API, body)
    assert r.status == 201, r
    w = r.json()
    for k, v in body.items():
        assert w[k] == v
    assert r.header("location") == API + "/job_A-1"
    assert server.get("job_A-1") == w


def test_create_charset_param_accepted(server):
    r = server.request("POST", API, {"name": "x", "total_steps": 1},
                       headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 201, r


def test_generated_ids_sortable_by_creation(server):
    ids = []
    for _ in range(5):
        ids.append(server.create()["id"])
        time.sleep(0.003)
    assert len(set(ids)) == 5
    assert ids == sorted(ids)


def test_create_existing_id_409(server):
    server.create(id="dup")
    r = server.request("POST", API, {"id": "dup", "name": "again", "total_steps": 1})
    assert_error(r, 409, "already_exists")
    assert server.get("dup")["name"] == "wf"


@pytest.mark.parametrize("body,needle", [
    ({"total_steps": 1}, "name"),
    ({"name": "", "total_steps": 1}, "name"),
    ({"name": "x" * 257, "total_steps": 1}, "name"),
    ({"name": 5, "total_steps": 1}, "name"),
    ({"name": None, "total_steps": 1}, "name"),
    ({"name": "x"}, "total_steps"),
    ({"name": "x", "total_steps": -1}, "total_steps"),
    ({"name": "x", "total_steps": 1000000001}, "total_steps"),
    ({"name": "x", "total_steps": "5"}, "total_steps"),
    ({"name": "x", "total_steps": 1.5}, "total_steps"),
    ({"name": "x", "total_steps": True}, "total_steps"),
    ({"name": "x", "total_steps": 3, "current_step": 4}, "current_step"),
    ({"name": "x", "total_steps": 3, "current_step": -1}, "current_step"),
    ({"name": "x", "total_steps": 3, "current_step": "1"}, "current_step"),
    ({"name": "x", "total_steps": 3, "status": "done"}, "status"),
    ({"name": "x", "total_steps": 3, "status": 1}, "status"),
    ({"name": "x", "total_steps": 3, "message": "m" * 4097}, "message"),
    ({"name": "x", "total_steps": 3, "message": 7}, "message"),
    ({"name": "x", "total_steps": 3, "id": "a b"}, "id"),
    ({"name": "x", "total_steps": 3, "id": "a/b"}, "id"),
    ({"name": "x", "total_steps": 3, "id": ""}, "id"),
    ({"name": "x", "total_steps": 3, "id": "i" * 65}, "id"),
    ({"name": "x", "total_steps": 3, "id": 12}, "id"),
    ({"name": "x", "total_steps": 3, "colour": "red"}, "colour"),
    ({"name": "x", "total_steps": 3, "seq": 4}, "seq"),
])
def test_create_validation_400(server, body, needle):
    r = server.request("POST", API, body)
    err = assert_error(r, 400, "bad_request")
    assert needle in err["message"], err


@pytest.mark.parametrize("raw", ["[]", "\"x\"", "42", "null", ""])
def test_create_body_not_object_400(server, raw):
    r = server.request("POST", API, raw)
    assert_error(r, 400, "bad_request")


def test_create_limits_inclusive(server):
    w = server.create(name="n" * 256, total_steps=1000000000, current_step=1000000000,
                      message="m" * 4096, id="i" * 64)
    assert w["id"] == "i" * 64 and len(w["message"]) == 4096
    # byte limits, not character limits: 128 two-byte characters = 256 bytes
    server.create(name="é" * 128)
    r = server.request("POST", API, {"name": "é" * 129, "total_steps": 1})
    assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("status", ["pending", "running", "paused", "completed", "failed",
                                    "cancelled"])
def test_create_every_status(server, status):
    assert server.create(status=status)["status"] == status


def test_bad_json_reports_line_and_column(server):
    body = '{\n  "name": "x",\n  "total_steps": }\n'
    r = server.request("POST", API, body)
    err = assert_error(r, 400, "bad_request")
    assert "line 3, column" in err["message"], err
    w = server.create(id="pj")
    r = server.request("PATCH", API + "/pj", '{"message": "x",,}')
    err = assert_error(r, 400, "bad_request")
    assert "line 1, column" in err["message"], err
    assert server.get("pj")["seq"] == w["seq"]


def test_patch_updates_and_seq(server):
    w = server.create(total_steps=10)
    seq = w["seq"]
    p = server.patch(w["id"], status="running", current_step=2, message="step 2")
    assert p["seq"] == seq + 1
    assert (p["status"], p["current_step"], p["message"]) == ("running", 2, "step 2")
    assert p["created_at"] == w["created_at"] and p["name"] == w["name"]
    p2 = server.patch(w["id"], total_steps=20)
    assert p2["seq"] == seq + 2 and p2["total_steps"] == 20 and p2["message"] == "step 2"
    p3 = server.patch(w["id"], current_step=20)
    assert p3["seq"] == seq + 3
    assert server.get(w["id"]) == p3
    p4 = server.patch(w["id"], status="paused")
    assert p4["status"] == "paused" and p4["seq"] == seq + 4
    assert p4["updated_at"] >= p3["updated_at"]


@pytest.mark.parametrize("body,needle", [
    ({}, None),
    ({"status": "bogus"}, "status"),
    ({"current_step": -1}, "current_step"),
    ({"current_step": "3"}, "current_step"),
    ({"total_steps": 1000000001}, "total_steps"),
    ({"message": "m" * 4097}, "message"),
    ({"message": None}, "message"),
    ({"name": "new name"}, "name"),
    ({"id": "other"}, "id"),
    ({"colour": "red", "message": "x"}, "colour"),
    ({"if_seq": "1", "message": "x"}, "if_seq"),
    ({"if_seq": 1}, None),
])
def test_patch_validation_400(server, body, needle):
    w = server.create(id="pv", total_steps=10, current_step=5)
    r = server.request("PATCH", API + "/pv", body)
    err = assert_error(r, 400, "bad_request")
    if needle:
        assert needle in err["message"], err
    assert server.get("pv") == w


def test_patch_step_beyond_total_400(server):
    w = server.create(id="st", total_steps=10, current_step=5)
    assert_error(server.request("PATCH", API + "/st", {"current_step": 11}), 400, "bad_request")
    assert_error(server.request("PATCH", API + "/st", {"total_steps": 4}), 400, "bad_request")
    assert_error(server.request("PATCH", API + "/st", {"total_steps": 3, "current_step": 4}),
                 400, "bad_request")
    assert server.get("st") == w
    p = server.patch("st", total_steps=3, current_step=3)
    assert p["seq"] == w["seq"] + 1


def test_patch_if_seq(server):
    w = server.create(id="cas")
    p = server.patch("cas", if_seq=w["seq"], message="a")
    assert p["seq"] == w["seq"] + 1
    r = server.request("PATCH", API + "/cas", {"if_seq": w["seq"], "message": "b"})
    assert_error(r, 409, "seq_mismatch")
    assert server.get("cas")["message"] == "a"


@pytest.mark.parametrize("terminal", ["completed", "failed", "cancelled"])
def test_terminal_status_409(server, terminal):
    server.create(id="t", status="running")
    server.patch("t", status=terminal)
    for body in ({"message": "late"}, {"status": "running"}, {"current_step": 1},
                 {"status": terminal}):
        r = server.request("PATCH", API + "/t", body)
        assert_error(r, 409, "terminal_status")
    server.delete("t")
    assert_error(server.request("GET", API + "/t"), 404, "not_found")


def test_unknown_workflow_404(server):
    assert_error(server.request("GET", API + "/nope"), 404, "not_found")
    assert_error(server.request("PATCH", API + "/nope", {"message": "x"}), 404, "not_found")
    assert_error(server.request("DELETE", API + "/nope"), 404, "not_found")


def test_unknown_path_404(server):
    assert_error(server.request("GET", "/nope"), 404, "not_found")
    assert_error(server.request("GET", "/api/workflows/a/b/c"), 404, "not_found")


def test_delete_204(server):
    server.create(id="d1")
    r = server.request("DELETE", API + "/d1")
    assert r.status == 204 and r.body == b""
    assert_error(server.request("GET", API + "/d1"), 404, "not_found")
    assert_error(server.request("DELETE", API + "/d1"), 404, "not_found")
    assert "d1" not in [w["id"] for w in server.request("GET", API).json()["workflows"]]
    # the id can be used again
    assert server.create(id="d1")["seq"] == 1


def test_method_not_allowed_405(server):
    server.create(id="m")
    r = server.request("PUT", API + "/m", {"name": "x"})
    assert_error(r, 405, "method_not_allowed")
    allow = {a.strip() for a in r.header("allow", "").split(",")}
    assert {"GET", "PATCH", "DELETE"} <= allow, r
    r = server.request("DELETE", API)
    assert_error(r, 405, "method_not_allowed")
    allow = {a.strip() for a in r.header("allow", "").split(",")}
    assert {"GET", "POST"} <= allow, r
    r = server.request("POST", "/healthz", {})
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.header("allow", "")


def test_list_order_filter_pagination(server):
    ids = []
    for i in range(7):
        ids.append(server.create(id="w%d" % i, status="running" if i % 2 else "pending")["id"])
        time.sleep(0.002)
    r = server.request("GET", API)
    assert r.status == 200, r
    body = r.json()
    assert set(body) == {"workflows", "next_cursor"}
    assert [w["id"] for w in body["workflows"]] == ids[::-1]
    assert body["next_cursor"] is None
    for w in body["workflows"]:
        assert_workflow(w)

    r = server.request("GET", API + "?status=running")
    assert [w["id"] for w in r.json()["workflows"]] == ["w5", "w3", "w1"]

    seen, cursor, pages = [], None, 0
    while True:
        q = API + "?limit=3" + ("&cursor=" + cursor if cursor else "")
        r = server.request("GET", q)
        assert r.status == 200, r
        body = r.json()
        assert len(body["workflows"]) <= 3
        seen += [w["id"] for w in body["workflows"]]
        pages += 1
        cursor = body["next_cursor"]
        assert cursor is None or isinstance(cursor, str)
        if cursor is None:
            break
        assert pages < 10
    assert seen == ids[::-1]
    assert pages >= 3

    r = server.request("GET", API + "?status=pending&limit=2")
    body = r.json()
    assert [w["id"] for w in body["workflows"]] == ["w6", "w4"]
    r = server.request("GET", API + "?status=pending&limit=2&cursor=" + body["next_cursor"])
    assert [w["id"] for w in r.json()["workflows"]] == ["w2", "w0"]


def test_list_default_limit_100(server):
    for i in range(101):
        server.create(id="x%03d" % i)
    body = server.request("GET", API).json()
    assert len(body["workflows"]) == 100
    assert isinstance(body["next_cursor"], str)
    rest = server.request("GET", API + "?cursor=" + body["next_cursor"]).json()
    assert [w["id"] for w in rest["workflows"]] == ["x000"]
    assert rest["next_cursor"] is None
    body = server.request("GET", API + "?limit=1000").json()
    assert len(body["workflows"]) == 101


@pytest.mark.parametrize("q", ["limit=0", "limit=1001", "limit=abc", "limit=-1", "status=bogus",
                               "cursor=%%%garbage"])
def test_list_bad_query_400(server, q):
    server.create()
    assert_error(server.request("GET", API + "?" + q), 400, "bad_request")


# ---------------------------------------------------------------- auth

def test_api_token_401(server_factory):
    s = server_factory("--api-token", "s3cret")
    body = {"name": "x", "total_steps": 1, "id": "a"}
    for hdrs in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                 {"Authorization": "Basic czNjcmV0"}):
        r = s.request("POST", API, body, headers=hdrs, auth=False)
        err = assert_error(r, 401, "unauthorized")
        assert r.header("www-authenticate", "").startswith("Bearer"), r
        assert err
    r = s.request("POST", API, body)
    assert r.status == 201, r
    assert_error(s.request("PATCH", API + "/a", {"message": "m"}, auth=False), 401, "unauthorized")
    assert_error(s.request("DELETE", API + "/a", auth=False), 401, "unauthorized")
    # reads need it too (issue 9: --api-token alone is auth configured);
    # /healthz and the dashboard's files stay open
    for path in (API + "/a", API, API + "/a/history", "/metrics"):
        assert_error(s.request("GET", path, auth=False), 401, "unauthorized")
        assert s.request("GET", path).status == 200, path
    assert s.request("GET", "/healthz", auth=False).status == 200
    assert s.request("GET", "/flowcast.js", auth=False).status == 200
    assert s.request("PATCH", API + "/a", {"message": "m"}).status == 200
    assert s.request("DELETE", API + "/a").status == 204


# ---------------------------------------------------------------- HTTP framing

def test_length_required_411(server):
    req = http_request_bytes("POST", API, server.port, {"Content-Type": "application/json"})
    (r,), _ = raw_http(server.port, req)
    assert_error(r, 411, "length_required")
    server.create(id="lr")
    req = http_request_bytes("PATCH", API + "/lr", server.port, {"Content-Type": "application/json"})
    (r,), _ = raw_http(server.port, req)
    assert_error(r, 411, "length_required")


def test_chunked_request_body(server):
    body = json.dumps({"id": "ch", "name": "chunked", "total_steps": 4}).encode()
    chunks = [body[:5], body[5:17], body[17:]]
    enc = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    req = http_request_bytes("POST", API, server.port, {"Content-Type": "application/json",
                                                        "Transfer-Encoding": "chunked"}, enc)
    (r,), _ = raw_http(server.port, req)
    assert r.status == 201, r
    assert json.loads(r.body)["name"] == "chunked"
    parts = [b'{"mess', b'age": "hi"}']
    enc = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in parts) + b"0\r\n\r\n"
    req = http_request_bytes("PATCH", API + "/ch", server.port,
                             {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                             enc)
    (r,), _ = raw_http(server.port, req)
    assert r.status == 200, r
    assert json.loads(r.body)["message"] == "hi"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonx"])
def test_unsupported_media_type_415(server, ctype):
    r = server.request("POST", API, {"name": "x", "total_steps": 1},
                       headers={"Content-Type": ctype})
    assert_error(r, 415, "unsupported_media_type")
    server.create(id="mt")
    r = server.request("PATCH", API + "/mt", {"message": "x"}, headers={"Content-Type": ctype})
    assert_error(r, 415, "unsupported_media_type")


def _expect_closed(rd):
    assert rd.at_eof(5.0), "server kept the connection open"


def test_payload_too_large_413(server):
    body = json.dumps({"name": "x", "total_steps": 1, "message": "m" * 70000}).encode()
    head = http_request_bytes("POST", API, server.port, {"Content-Type": "application/json",
                                                         "Content-Length": str(len(body))})
    rd = SockReader(connect(server.port))
    send_in_two(rd, head, body)
    r = rd.read_response()
    assert_error(r, 413, "payload_too_large")
    _expect_closed(rd)


def test_payload_too_large_chunked_413(server):
    head = http_request_bytes("POST", API, server.port, {"Content-Type": "application/json",
                                                         "Transfer-Encoding": "chunked"})
    rd = SockReader(connect(server.port))
    rd.sock.sendall(head)
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    got = False
    for _ in range(8):  # 128 KiB, well over the 64 KiB default
        if rd.wait_readable(0.2):
            got = True
            break
        try:
            rd.sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
    if not got:
        try:
            rd.sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
    r = rd.read_response()
    assert_error(r, 413, "payload_too_large")
    _expect_closed(rd)


def test_max_body_flag_413(server_factory):
    s = server_factory("--max-body", "1024")
    assert s.request("POST", API, {"name": "x", "total_steps": 1, "message": "m" * 900}).status == 201
    body = json.dumps({"name": "x", "total_steps": 1, "message": "m" * 1100}).encode()
    head = http_request_bytes("POST", API, s.port, {"Content-Type": "application/json",
                                                    "Content-Length": str(len(body))})
    rd = SockReader(connect(s.port))
    send_in_two(rd, head, body)
    assert_error(rd.read_response(), 413, "payload_too_large")
    _expect_closed(rd)


def test_headers_too_large_431(server):
    # The default --max-header is 32 KiB.
    req = http_request_bytes("GET", "/healthz", server.port, {"X-Big": "a" * 40000})
    rd = SockReader(connect(server.port))
    send_in_two(rd, req[:4000], req[4000:])
    r = rd.read_response()
    assert_error(r, 431, "headers_too_large")
    _expect_closed(rd)
    # many small headers count too
    hdrs = {"X-H%d" % i: "v" * 60 for i in range(600)}
    req = http_request_bytes("GET", "/healthz", server.port, hdrs)
    rd = SockReader(connect(server.port))
    send_in_two(rd, req[:4000], req[4000:])
    assert_error(rd.read_response(), 431, "headers_too_large")
    _expect_closed(rd)
    # just under the limit is fine
    req = http_request_bytes("GET", "/healthz", server.port, {"X-Big": "a" * 32000})
    (r,), _ = raw_http(server.port, req)
    assert r.status == 200


def test_max_header_flag_431(server_factory):
    s = server_factory("--max-header", "1024")
    (r,), _ = raw_http(s.port, http_request_bytes("GET", "/healthz", s.port, {"X-A": "a" * 600}))
    assert r.status == 200
    req = http_request_bytes("GET", "/healthz", s.port, {"X-A": "a" * 2000})
    rd = SockReader(connect(s.port))
    send_in_two(rd, req[:500], req[500:])
    assert_error(rd.read_response(), 431, "headers_too_large")
    _expect_closed(rd)


def test_malformed_request_400(server):
    (r,), rd = raw_http(server.port, b"THIS IS NOT HTTP\r\n\r\n")
    assert r.status == 400, r
    _expect_closed(rd)


def test_keepalive_and_pipelining(server):
    p = server.port
    body = json.dumps({"id": "pipe", "name": "p", "total_steps": 3}).encode()
    reqs = (http_request_bytes("GET", "/healthz", p)
            + http_request_bytes("POST", API, p, {"Content-Type": "application/json",
                                                  "Content-Length": str(len(body))}, body)
            + http_request_bytes("GET", API + "/pipe", p)
            + http_request_bytes("GET", API + "/missing", p)
            + http_request_bytes("PATCH", API + "/pipe", p, {"Content-Type": "application/json",
                                                             "Content-Length": "19"},
                                 b'{"current_step": 2}'))
    rs, rd = raw_http(p, reqs, n=5)
    assert [r.status for r in rs] == [200, 201, 200, 404, 200]
    assert json.loads(rs[2].body)["id"] == "pipe"
    assert json.loads(rs[4].body)["seq"] == 2
    # 100 pipelined requests in one send
    rd.sock.sendall(b"".join(http_request_bytes("GET", "/healthz" if i % 2 else API + "/pipe", p)
                             for i in range(100)))
    for i in range(100):
        r = rd.read_response()
        assert r.status == 200
        if not i % 2:
            assert json.loads(r.body)["id"] == "pipe"
    # the connection is still usable
    rd.sock.sendall(http_request_bytes("GET", "/healthz", p))
    assert rd.read_response().status == 200
    # Connection: close is honoured
    rd.sock.sendall(http_request_bytes("GET", API + "/pipe", p, {"Connection": "close"}))
    r = rd.read_response()
    assert r.status == 200 and json.loads(r.body)["current_step"] == 2
    _expect_closed(rd)


def _patch_bytes(p, wid, body):
    return http_request_bytes("PATCH", API + "/" + wid, p,
                              {"Content-Type": "application/json",
                               "Content-Length": str(len(body))}, body)


def test_pipelined_changes_answered_in_order(server):
    """Many changes in one send are in flight together (group commit), yet
    every answer comes back in request order, including synchronous errors
    between them and reads that must see every earlier change."""
    p = server.port
    server.create(id="pp", total_steps=1000)
    reqs = b""
    expect = []
    for i in range(1, 61):
        if i == 20:
            reqs += _patch_bytes(p, "pp", b'{"bogus": 1}')  # 400 at once, between async answers
            expect.append(400)
        if i == 40:
            reqs += http_request_bytes("GET", API + "/pp", p)  # waits for the 39 before it
            expect.append(200)
        reqs += _patch_bytes(p, "pp", b'{"current_step": %d}' % i)
        expect.append(200)
    reqs += http_request_bytes("DELETE", API + "/nope", p)
    expect.append(404)
    reqs += http_request_bytes("GET", API + "/pp", p, {"Connection": "close"})
    expect.append(200)
    rs, rd = raw_http(p, reqs, n=len(expect), timeout=10.0)
    assert [r.status for r in rs] == expect
    # PATCH answers carry seq 2..61 in request order
    patch_idx = [i for i in range(len(expect) - 2) if expect[i] == 200 and i != 40]
    assert [json.loads(rs[i].body)["seq"] for i in patch_idx] == list(range(2, 62))
    # the GET in the middle saw exactly the 39 changes sent before it
    get_mid = json.loads(rs[40].body)
    assert get_mid["current_step"] == 39 and get_mid["seq"] == 40, get_mid
    assert json.loads(rs[-1].body)["seq"] == 61 and json.loads(rs[-1].body)["current_step"] == 60
    _expect_closed(rd)


def test_http10_and_split_request(server):
    s = connect(server.port)
    rd = SockReader(s)
    req = http_request_bytes("GET", "/healthz", server.port)
    for i in range(0, len(req), 3):
        s.sendall(req[i:i + 3])
        time.sleep(0.005)
    assert rd.read_response().status == 200
    s.close()


def test_times_are_rfc3339_millis(server):
    w = server.create()
    for k in ("created_at", "updated_at"):
        assert TIME_RE.match(w[k])
        assert w[k].startswith(time.strftime("%Y-", time.gmtime()))
