"""docs/openapi.json, the OpenAPI 3.1 description of the REST API: served by
the binary at /api/openapi.json without a credential, well-formed (every
$ref resolves, every schema is a valid draft 2020-12 schema, path templates
and parameters agree), and true: every documented route and method is
exercised here against a real server, and every answer is validated against
the document (fc_helpers validates every answer of the whole suite the same
way, through openapi_check)."""
import json
import re

import jsonschema
import pytest

import openapi_check
from fc_helpers import HOST, RawWS, SockReader, connect, http_request_bytes

TOKEN = "openapi-test-token"
STATUS_RE = re.compile(r"^[1-5][0-9][0-9]$")


@pytest.fixture(scope="module")
def spec():
    return openapi_check.Spec()


@pytest.fixture(scope="module")
def srv(module_server_factory):
    return module_server_factory("--api-token", TOKEN, "--enable-echo")


def test_served_document_is_the_file_and_needs_no_credential(srv):
    with open(openapi_check.SPEC_PATH, "rb") as f:
        text = f.read()
    r = srv.request("GET", "/api/openapi.json", auth=False)
    assert r.status == 200, r
    assert r.header("content-type") == "application/json", r
    assert r.body == text  # embedded at build time: rebuild after editing docs/openapi.json
    h = srv.request("HEAD", "/api/openapi.json", auth=False)
    assert h.status == 200 and h.body == b"", h
    assert int(h.header("content-length")) == len(text), h


def walk(node, path=""):
    """Every dict in node with its JSON pointer."""
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, path + "/" + str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + "/" + str(i))


def test_document_is_well_formed_openapi_3_1(spec):
    doc = spec.doc
    assert re.match(r"^3\.1\.\d+$", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["jsonSchemaDialect"] == "https://json-schema.org/draft/2020-12/schema"
    # Every reference resolves.
    for where, obj in walk(doc):
        if "$ref" in obj and isinstance(obj["$ref"], str):
            assert obj["$ref"].startswith("#/"), where
            spec.resolver.resolve(obj["$ref"])
    # Every schema, wherever it is, is a valid draft 2020-12 schema.
    schemas = list(doc["components"]["schemas"].items())
    for where, obj in walk(doc):
        if "schema" in obj and isinstance(obj["schema"], dict):
            schemas.append((where, obj["schema"]))
    for where, schema in schemas:
        jsonschema.Draft202012Validator.check_schema(schema)
    schemes = doc["components"]["securitySchemes"]
    tags = {t["name"] for t in doc["tags"]}
    for req in doc["security"]:
        assert set(req) <= set(schemes), req
    for tmpl, item in doc["paths"].items():
        assert tmpl.startswith("/"), tmpl
        names = set(re.findall(r"{([^}]+)}", tmpl))
        declared = {spec.deref(p)["name"] for p in item.get("parameters", [])
                    if spec.deref(p)["in"] == "path"}
        ops = {m: o for m, o in item.items() if m in openapi_check.METHODS}
        assert ops, tmpl
        for method, op in ops.items():
            where = "%s %s" % (method, tmpl)
            params = [spec.deref(p) for p in op.get("parameters", [])]
            in_path = declared | {p["name"] for p in params if p["in"] == "path"}
            assert in_path == names, where
            for p in params + [spec.deref(p) for p in item.get("parameters", [])]:
                assert p["in"] in ("query", "header", "path", "cookie"), where
                assert p["in"] != "path" or p["required"] is True, where
            assert op["responses"], where
            for code, resp in op["responses"].items():
                assert STATUS_RE.match(code), where
                assert spec.deref(resp)["description"], (where, code)
                if method == "head":
                    assert "content" not in spec.deref(resp), (where, code)
            assert set(op.get("tags", [])) <= tags, where
            for req in op.get("security", []):
                assert set(req) <= set(schemes), where
            # HEAD is taken wherever GET is, with the same statuses.
            if method == "get":
                assert "head" in ops, where
                assert set(ops["head"]["responses"]) <= set(op["responses"]) | {"400"}, where
    for block in ("x-flowcast-any-request", "x-flowcast-unrouted"):
        for code in doc[block]:
            assert STATUS_RE.match(code), (block, code)


def stream_head(port, method, path, headers):
    """Status and headers of a streaming answer (SSE), read up to the blank
    line; the connection is closed after."""
    s = connect(port)
    try:
        s.sendall(http_request_bytes(method, path, port, headers))
        head = SockReader(s).read_until(b"\r\n\r\n").decode("latin-1")
    finally:
        s.close()
    lines = head.split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        if k:
            hdrs[k.strip().lower()] = v.strip()
    return status, hdrs


def test_every_documented_route_answers_as_documented(srv, spec):
    """Each (path, method) of the document, exercised with a request that
    should succeed; Server.request validates each answer, the streams are
    checked here. A route added to the document without a line here fails."""
    seen = set()
    auth = {"Authorization": "Bearer " + TOKEN}

    def call(method, target, body=None, headers=None, want=None, public=False):
        r = srv.request(method, target, body, headers=headers, auth=not public)
        tmpl, _ = spec.route(target.split("?")[0])
        seen.add((tmpl, method.lower()))
        if want is not None:
            assert r.status == want, r
        return r

    w = call("POST", "/api/workflows", {"name": "openapi", "total_steps": 3},
             headers={"Idempotency-Key": "openapi-1"}, want=201).json()
    wid = w["id"]
    call("GET", "/api/workflows?limit=5", want=200)
    call("HEAD", "/api/workflows", want=200)
    call("OPTIONS", "/api/workflows", want=204)
    call("GET", "/api/workflows/" + wid, want=200)
    call("HEAD", "/api/workflows/" + wid, want=200)
    call("PATCH", "/api/workflows/" + wid, {"current_step": 1, "status": "running"}, want=200)
    call("GET", "/api/workflows/%s?wait_since=1&epoch=%d&timeout=5" % (wid, w["epoch"]), want=200)
    call("GET", "/api/workflows/%s/history?since=0" % wid, want=200)
    call("HEAD", "/api/workflows/%s/history" % wid, want=200)
    call("OPTIONS", "/api/workflows/%s/history" % wid, want=204)
    call("OPTIONS", "/api/workflows/" + wid, want=204)
    call("HEAD", "/api/workflows/%s/events" % wid, want=200)
    call("OPTIONS", "/api/workflows/%s/events" % wid, want=204)
    call("HEAD", "/api/events?workflow_ids=" + wid, want=200)
    call("OPTIONS", "/api/events", want=204)
    call("HEAD", "/api/workflows/%s/updates" % wid, want=400)  # HEAD cannot upgrade
    call("HEAD", "/api/updates", want=400)
    call("HEAD", "/ws/echo", want=400)
    for p in ("/healthz", "/readyz", "/api/openapi.json", "/", "/flowcast.js"):
        call("GET", p, want=200, public=True)
        call("HEAD", p, want=200, public=True)
        call("OPTIONS", p, want=204, public=True)
    call("GET", "/metrics", want=200)
    call("HEAD", "/metrics", want=200)
    call("OPTIONS", "/metrics", want=204)
    # The streams: SSE answers are read up to their head, WebSockets upgrade.
    for target in ("/api/workflows/%s/events?since=0" % wid, "/api/events?workflow_ids=" + wid):
        status, hdrs = stream_head(srv.port, "GET", target, auth)
        resp, tmpl = spec.response_for("GET", target.split("?")[0], status)
        assert status == 200, (target, status)
        assert hdrs["content-type"].split(";")[0] in resp["content"], hdrs
        seen.add((tmpl, "get"))
    for target in ("/api/workflows/%s/updates?since=0" % wid, "/api/updates", "/ws/echo"):
        ws = RawWS(srv.port)
        try:
            r = ws.handshake(target, auth)  # validated through openapi_check
        finally:
            ws.sock.close()
        assert r.status == 101, r
        seen.add((spec.route(target.split("?")[0])[0], "get"))
    call("DELETE", "/api/workflows/" + wid, want=204)
    documented = {(t, m) for t, item in spec.doc["paths"].items()
                  for m in item if m in openapi_check.METHODS}
    assert documented - seen == set(), "documented but not exercised here"


@pytest.mark.parametrize("case", [
    ("GET", "/api/workflows/nope", None, True, 404),
    ("PUT", "/api/workflows/nope", None, True, 405),
    ("GET", "/no/such/thing", None, True, 404),
    ("GET", "/api/workflows", None, False, 401),
    ("GET", "/api/workflows?limit=0", None, True, 400),
    ("POST", "/api/workflows", {"name": "x"}, True, 400),
    ("POST", "/api/workflows", "not json", True, 400),
    ("PATCH", "/api/workflows/nope", {"message": "m"}, True, 404),
    ("GET", "/api/workflows/x/history?since=oops", None, True, 400),
    ("GET", "/api/events", None, True, 400),
    ("GET", "/api/updates", None, True, 400),
])
def test_error_answers_are_documented(srv, case):
    """Error answers, validated by Server.request like every other."""
    method, target, body, with_auth, status = case
    r = srv.request(method, target, body, auth=with_auth)
    assert r.status == status, r
    assert json.loads(r.body)["error"]["code"]


def test_conflicts_and_idempotency_are_documented(srv):
    srv.request("POST", "/api/workflows", {"id": "oa-dup", "name": "d", "total_steps": 1})
    r = srv.request("POST", "/api/workflows", {"id": "oa-dup", "name": "d", "total_steps": 1})
    assert r.status == 409, r
    r = srv.request("PATCH", "/api/workflows/oa-dup", {"message": "m", "if_seq": 99})
    assert r.status == 409, r
    key = {"Idempotency-Key": "oa-key"}
    first = srv.request("PATCH", "/api/workflows/oa-dup", {"message": "a"}, headers=key)
    again = srv.request("PATCH", "/api/workflows/oa-dup", {"message": "a"}, headers=key)
    assert first.status == again.status == 200 and again.header("idempotent-replayed") == "true"
    other = srv.request("PATCH", "/api/workflows/oa-dup", {"message": "b"}, headers=key)
    assert other.status == 422, other
    r = srv.request("POST", "/api/workflows", b"{}", headers={"Content-Type": "text/plain"})
    assert r.status == 415, r


def test_validator_rejects_what_the_document_does_not_say(spec):
    """The checker itself: a wrong body, an unlisted status, an unlisted
    media type and a body on HEAD all fail."""
    ok = {"content-type": "application/json"}
    bad = [
        ("GET", "/api/workflows/x", 200, ok, b'{"id":"x"}'),
        ("GET", "/api/workflows/x", 418, ok, b"{}"),
        ("GET", "/healthz", 401, ok, b'{"error":{"code":"unauthorized","message":"m"}}'),
        ("GET", "/healthz", 200, {"content-type": "text/plain"}, b"ok"),
        ("HEAD", "/healthz", 200, ok, b'{"status":"ok"}'),
        ("GET", "/api/workflows", 200, ok, b'{"workflows":[],"next_cursor":null,"extra":1}'),
    ]
    for args in bad:
        with pytest.raises(openapi_check.SpecError):
            spec.check(*args)
    spec.check("GET", "/healthz", 200, ok, b'{"status":"ok"}')
    spec.check("PUT", "/healthz", 405, ok, b'{"error":{"code":"method_not_allowed","message":"m"}}')
    assert HOST
