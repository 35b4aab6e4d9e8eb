"""JWT access tokens (issue 9 section 1): every scope x endpoint x transport,
allowed and refused with the exact status, and every kind of bad token -> 401.
Tokens are minted with Debian's python3-jwt, an implementation independent of
the server's libjwt."""
import asyncio
import base64
import json
import subprocess
import time

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fc_helpers import assert_error, request_status

STATIC = "static-operator-token-0123456789"
SECRET = "k" * 20 + "-hmac-secret-for-tests-0123456789"


def mint(scope="read", workflows=None, ttl=3600, key=SECRET, alg="HS256", **claims):
    now = int(time.time())
    c = {"scope": scope, "iat": now, "exp": now + ttl}
    if workflows is not None:
        c["workflows"] = workflows
    c.update(claims)
    c = {k: v for k, v in c.items() if v is not None}
    return jwt.encode(c, key, algorithm=alg)


def status(srv, method, path, token=None, body=None, query_token=False, ws=False):
    """The status code of one request on a raw socket."""
    headers = {}
    if token and not query_token:
        headers["Authorization"] = "Bearer " + token
    if token and query_token:
        path += ("&" if "?" in path else "?") + "access_token=" + token
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(data))
    return request_status(srv.port, method, path, headers, data, ws=ws)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    hkey = d / "hmac.key"
    hkey.write_text(SECRET + "\n")
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = priv.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    rkey = d / "rsa.pub"
    rkey.write_bytes(pub)
    epriv = ec.generate_private_key(ec.SECP256R1())
    ekey = d / "ec.pub"
    ekey.write_bytes(epriv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return {"hmac": str(hkey), "rsa": str(rkey), "rsa_priv": priv, "rsa_pub": pub,
            "ec": str(ekey), "ec_priv": epriv}


@pytest.fixture(scope="module")
def srv(module_server_factory, keys):
    s = module_server_factory("--jwt-key", keys["hmac"], "--api-token", STATIC,
                              "--jwt-audience", "flowcast", "--jwt-issuer", "idp")
    for wid in ("deploy-a", "deploy-b", "build-c"):
        r = s.request("POST", "/api/workflows", {"id": wid, "name": wid, "total_steps": 5})
        assert r.status == 201, r
    return s


def tok(scope="read", workflows=None, **kw):
    kw.setdefault("aud", "flowcast")
    kw.setdefault("iss", "idp")
    return mint(scope, workflows, **kw)


# (method, path, needs, transport): needs is the scope that allows it.
READS = [
    ("GET", "/api/workflows/deploy-a", "http"),
    ("HEAD", "/api/workflows/deploy-a", "http"),
    ("GET", "/api/workflows/deploy-a/history", "http"),
    ("GET", "/api/workflows/deploy-a?wait_since=0&timeout=1", "longpoll"),
    ("GET", "/api/workflows/deploy-a/events", "sse"),
    ("GET", "/api/workflows/deploy-a/updates", "ws"),
]


@pytest.mark.parametrize("method,path,transport", READS)
def test_read_endpoints_by_scope(srv, method, path, transport):
    ws = transport == "ws"
    ok = 101 if ws else 200
    assert status(srv, method, path, ws=ws) == 401
    assert status(srv, method, path, tok("read"), ws=ws) == ok
    assert status(srv, method, path, tok("read", ["deploy-*"]), ws=ws) == ok
    assert status(srv, method, path, tok("read", ["deploy-a"]), ws=ws) == ok
    assert status(srv, method, path, tok("read", ["build-*"]), ws=ws) == 403
    assert status(srv, method, path, tok("read", []), ws=ws) == 403
    assert status(srv, method, path, tok("write"), ws=ws) == 403
    assert status(srv, method, path, tok("admin"), ws=ws) == 403
    assert status(srv, method, path, STATIC, ws=ws) == ok
    if method == "GET":
        assert status(srv, method, path, tok("read"), query_token=True, ws=ws) == ok
        assert status(srv, method, path, tok("read", ["build-*"]), query_token=True,
                      ws=ws) == 403


def test_multi_ws_needs_read(srv):
    path = "/api/updates"
    # Without any credential the upgrade is accepted: the token may come as
    # the first message (test_auth_expiry.py); a bad one is still 401.
    assert status(srv, "GET", path, ws=True) == 101
    assert status(srv, "GET", path, "not-a-token", ws=True) == 401
    assert status(srv, "GET", path, tok("read", ttl=-5), ws=True) == 401
    assert status(srv, "GET", path, tok("read"), ws=True) == 101
    assert status(srv, "GET", path, tok("read", ["deploy-*"]), ws=True) == 101
    assert status(srv, "GET", path, tok("read", ["deploy-*"]), query_token=True, ws=True) == 101
    assert status(srv, "GET", path, tok("write"), ws=True) == 403


async def _recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def test_multi_ws_subscribe_outside_scope_is_forbidden_per_id(srv):
    async def main():
        url = srv.ws_url("/api/updates")
        hdr = {"Authorization": "Bearer " + tok("read", ["deploy-*"])}
        async with websockets.connect(url, extra_headers=hdr) as ws:
            await ws.send(json.dumps({"op": "subscribe",
                                      "workflow_ids": ["build-c", "deploy-a"]}))
            m = await _recv_json(ws)
            assert m["op"] == "error" and m["code"] == "forbidden", m
            assert m["workflow_id"] == "build-c"
            assert "build-c" not in m["message"]
            m = await _recv_json(ws)
            assert m == {"op": "subscribed", "workflow_ids": ["deploy-a"]}, m
            m = await _recv_json(ws)
            assert m["workflow_id"] == "deploy-a", m
            await ws.send(json.dumps({"op": "subscribe", "workflow_ids": ["build-c"]}))
            m = await _recv_json(ws)
            assert m["code"] == "forbidden" and m["workflow_id"] == "build-c", m
            # Nothing of build-c arrives after its change.
            srv.request("PATCH", "/api/workflows/build-c", {"message": "secret"})
            srv.request("PATCH", "/api/workflows/deploy-a", {"message": "public"})
            m = await _recv_json(ws)
            assert m["workflow_id"] == "deploy-a" and m["message"] == "public", m
    asyncio.run(main())


def test_multi_ws_subscribe_all_with_scoped_token_sees_only_its_workflows(srv):
    async def main():
        url = srv.ws_url("/api/updates?access_token=" + tok("read", ["deploy-*"]))
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"op": "subscribe_all"}))
            m = await _recv_json(ws)
            assert m == {"op": "subscribed", "all": True}, m
            srv.request("PATCH", "/api/workflows/build-c", {"message": "hidden"})
            srv.request("POST", "/api/workflows", {"id": "build-later", "name": "x",
                                                   "total_steps": 1})
            srv.request("POST", "/api/workflows", {"id": "deploy-later", "name": "x",
                                                   "total_steps": 1})
            srv.request("PATCH", "/api/workflows/deploy-b", {"message": "seen"})
            got = [await _recv_json(ws), await _recv_json(ws)]
            assert [m["workflow_id"] for m in got] == ["deploy-later", "deploy-b"], got
            with pytest.raises(asyncio.TimeoutError):
                await _recv_json(ws, timeout=0.5)
    asyncio.run(main())


def test_multi_sse_needs_read_on_each_listed_workflow(srv):
    p = "/api/events?workflow_ids=deploy-a,deploy-b"
    assert status(srv, "GET", p) == 401
    assert status(srv, "GET", p, tok("read")) == 200
    assert status(srv, "GET", p, tok("read", ["deploy-*"])) == 200
    assert status(srv, "GET", p, tok("read", ["deploy-*"]), query_token=True) == 200
    assert status(srv, "GET", p, tok("read", ["deploy-a"])) == 403
    assert status(srv, "GET", p + ",build-c", tok("read", ["deploy-*"])) == 403
    assert status(srv, "GET", p, tok("write", ["deploy-*"])) == 403


def test_writes_by_scope(srv):
    body = {"current_step": 1}
    p = "/api/workflows/deploy-b"
    assert status(srv, "PATCH", p, body=body) == 401
    assert status(srv, "PATCH", p, tok("read"), body=body) == 403
    assert status(srv, "PATCH", p, tok("write", ["build-*"]), body=body) == 403
    assert status(srv, "PATCH", p, tok("write", ["deploy-*"]), body=body) == 200
    assert status(srv, "PATCH", p, tok("read write"), body=body) == 200
    new = {"id": "deploy-new", "name": "n", "total_steps": 2}
    assert status(srv, "POST", "/api/workflows", tok("write", ["build-*"]), body=new) == 403
    assert status(srv, "POST", "/api/workflows", tok("read"), body=new) == 403
    assert status(srv, "POST", "/api/workflows", tok("write", ["deploy-*"]), body=new) == 201
    assert status(srv, "DELETE", "/api/workflows/deploy-new", tok("write", ["build-*"])) == 403
    assert status(srv, "DELETE", "/api/workflows/deploy-new", tok("write", ["deploy-new"])) == 204


def test_metrics_needs_admin_health_and_assets_stay_open(srv):
    assert status(srv, "GET", "/metrics") == 401
    assert status(srv, "GET", "/metrics", tok("read write")) == 403
    assert status(srv, "GET", "/metrics", tok("admin")) == 200
    assert status(srv, "GET", "/metrics", STATIC) == 200
    assert status(srv, "GET", "/healthz") == 200
    assert status(srv, "GET", "/") == 200
    assert status(srv, "GET", "/flowcast.js") == 200


def test_unauthorized_answers_say_bearer_and_little_else(srv):
    # An expired token is told apart (token_expired, test_auth_expiry.py);
    # every other bad one stays a bare "unauthorized".
    r = srv.request("GET", "/api/workflows/deploy-a",
                    headers={"Authorization": "Bearer " + tok("read", iss="someone-else")})
    assert_error(r, 401, "unauthorized")
    assert r.header("www-authenticate") == "Bearer"
    assert "deploy" not in r.body.decode()
    r = srv.request("GET", "/api/workflows/deploy-a",
                    headers={"Authorization": "Bearer " + tok("read", ["build-*"])})
    assert_error(r, 403, "forbidden")


def test_list_shows_only_readable_workflows(srv):
    def ids(token):
        r = srv.request("GET", "/api/workflows", headers={"Authorization": "Bearer " + token})
        assert r.status == 200, r
        return sorted(w["id"] for w in r.json()["workflows"])
    every = ids(STATIC)
    assert {"deploy-a", "deploy-b", "build-c"} <= set(every)
    assert ids(tok("read")) == every
    assert ids(tok("read", ["deploy-*"])) == [i for i in every if i.startswith("deploy-")]
    assert ids(tok("read", ["build-c"])) == ["build-c"]
    assert ids(tok("read", ["deploy-a", "build-c"])) == ["build-c", "deploy-a"]
    assert ids(tok("read", [])) == []
    assert status(srv, "GET", "/api/workflows", tok("write")) == 403
    assert status(srv, "GET", "/api/workflows") == 401


def _b64(d):
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def bad_tokens(keys):
    now = int(time.time())
    good = tok("read")
    h, p, s = good.split(".")
    yield "expired", tok("read", ttl=-120)
    yield "no exp", jwt.encode(
        {"scope": "read", "aud": "flowcast", "iss": "idp"}, SECRET, algorithm="HS256")
    yield "not yet valid", tok("read", nbf=now + 600)
    yield "issued in the future", tok("read", iat=now + 600)
    yield "wrong aud", tok("read", aud="other")
    yield "no aud", tok("read", aud=None)
    yield "wrong iss", tok("read", iss="evil")
    yield "tampered payload", h + "." + _b64({"scope": "read admin", "exp": now + 999,
                                              "aud": "flowcast", "iss": "idp"}) + "." + s
    yield "tampered signature", h + "." + p + "." + ("A" if s[0] != "A" else "B") + s[1:]
    yield "alg none", _b64({"alg": "none", "typ": "JWT"}) + "." + p + "."
    yield "alg none with sig", _b64({"alg": "none", "typ": "JWT"}) + "." + p + "." + s
    yield "wrong secret", tok("read", key="another-secret-of-enough-length-123456")
    yield "rsa token vs hmac key", tok("read", key=keys["rsa_priv"], alg="RS256")
    yield "HS512 wrong key", tok("read", key="x" * 40, alg="HS512")
    yield "scope not a string", tok(["read"])
    yield "workflows not a list", tok("read", "deploy-*")
    yield "workflows with a number", tok("read", ["deploy-a", 3])
    for junk in ("", "a", "a.b", "a.b.c", "..", "a.b.c.d", "x" * 5000 + ".a.b", "%00.%00.%00",
                 "eyJ.eyJ.", good + "==", good.replace(".", "!"), h + "." + h + "." + s,
                 _b64([1]) + "." + p + "." + s, _b64({"alg": 1}) + "." + p + "." + s,
                 _b64({"alg": "HS256"}) + "." + _b64([]) + "." + s):
        yield "junk %r" % junk[:20], junk


def test_bad_tokens_are_401_never_a_crash(srv, keys):
    for name, t in bad_tokens(keys):
        for path in ("/api/workflows/deploy-a", "/api/workflows/deploy-a/events"):
            st = status(srv, "GET", path, t)
            assert st == 401, (name, path, st)
    assert srv.alive()
    assert status(srv, "GET", "/api/workflows/deploy-a", tok("read")) == 200


def test_leeway_accepts_small_skew_on_nbf_but_exp_is_exact(srv):
    now = int(time.time())
    # exp has no leeway (a stream ends at exp): 5 s past it is expired.
    assert status(srv, "GET", "/api/workflows/deploy-a", tok("read", ttl=-5)) == 401
    assert status(srv, "GET", "/api/workflows/deploy-a", tok("read", nbf=now + 10)) == 200
    assert status(srv, "GET", "/api/workflows/deploy-a", tok("read", iat=now + 10)) == 200


def test_hmac_token_against_a_public_key_is_refused(server_factory, keys):
    s = server_factory("--jwt-key", keys["rsa"])
    r_ok = mint("read", key=keys["rsa_priv"], alg="RS256")
    assert status(s, "GET", "/api/workflows", r_ok) == 200
    # The classic confusion: the public key's bytes used as an HMAC secret.
    now = int(time.time())
    head = _b64({"alg": "HS256", "typ": "JWT"})
    body = _b64({"scope": "read admin", "exp": now + 600})
    import hashlib
    import hmac
    sig = base64.urlsafe_b64encode(hmac.new(keys["rsa_pub"], (head + "." + body).encode(),
                                            hashlib.sha256).digest()).rstrip(b"=").decode()
    assert status(s, "GET", "/api/workflows", head + "." + body + "." + sig) == 401
    assert status(s, "GET", "/api/workflows", _b64({"alg": "none"}) + "." + body + ".") == 401
    assert status(s, "GET", "/api/workflows", mint("read", key=SECRET)) == 401
    es = mint("read", key=keys["ec_priv"], alg="ES256")
    assert status(s, "GET", "/api/workflows", es) == 401


def test_ec_key_accepts_es256(server_factory, keys):
    s = server_factory("--jwt-key", keys["ec"])
    assert status(s, "GET", "/api/workflows", mint("read", key=keys["ec_priv"], alg="ES256")) == 200
    assert status(s, "GET", "/api/workflows", mint("read", key=keys["rsa_priv"], alg="RS256")) == 401


def test_access_token_never_in_the_log(server_factory, keys):
    s = server_factory("--jwt-key", keys["hmac"], "--log-level", "debug")
    t = mint("read")
    for path in ("/api/workflows/nope?access_token=" + t, "/nope?access_token=" + t,
                 "/api/workflows/deploy-a/events?access_token=" + t + "&since=x"):
        status(s, "GET", path)
    status(s, "GET", "/api/workflows", t)
    time.sleep(0.3)
    with open(s.log_path, "rb") as f:
        log = f.read().decode("utf-8", "replace")
    assert t not in log and t.split(".")[2] not in log


def test_bad_key_files_refused_at_start(flowcast, tmp_path):
    short = tmp_path / "short"
    short.write_text("tooshort")
    for key in (str(short), str(tmp_path / "missing")):
        p = subprocess.run([flowcast, "serve", "--listen", "127.0.0.1:0", "--db",
                            str(tmp_path / "x.db"), "--jwt-key", key],
                           capture_output=True, timeout=20)
        assert p.returncode != 0
        assert b"jwt-key" in p.stderr


def test_token_command_mints_what_python_jwt_verifies(flowcast, srv, keys):
    p = subprocess.run([flowcast, "token", "--key", keys["hmac"], "--scope", "read write",
                        "--workflows", "deploy-*,build-c", "--ttl", "2h"],
                       capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    t = p.stdout.decode().strip()
    c = jwt.decode(t, SECRET, algorithms=["HS256"])
    assert c["scope"] == "read write" and c["workflows"] == ["deploy-*", "build-c"]
    assert 7100 < c["exp"] - time.time() <= 7200
    for bad in (["--scope", "reed"], ["--ttl", "0"], ["--ttl", "5y"], []):
        args = [flowcast, "token"] + (["--key", keys["hmac"]] if bad else []) + bad
        assert subprocess.run(args, capture_output=True, timeout=20).returncode == 2
    assert subprocess.run([flowcast, "token", "--key", keys["rsa"]], capture_output=True,
                          timeout=20).returncode == 1


def test_cors_preflight_needs_no_credential_but_the_request_does(server_factory, keys):
    s = server_factory("--jwt-key", keys["hmac"], "--allow-origin", "http://app.example")
    origin = {"Origin": "http://app.example"}
    r = s.request("OPTIONS", "/api/workflows", headers=dict(origin, **{
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"}))
    assert r.status == 204, r
    assert "Authorization" in r.header("access-control-allow-headers", "")
    r = s.request("GET", "/api/workflows", headers=origin)
    assert r.status == 401
    r = s.request("GET", "/api/workflows",
                  headers=dict(origin, Authorization="Bearer " + mint("read")))
    assert r.status == 200
    assert r.header("access-control-allow-origin") == "http://app.example"


def test_flowcast_watch_sends_its_token(flowcast, srv):
    """`flowcast watch` (the C client's WebSocket handshake) carries the token
    of $FLOWCAST_API_TOKEN, as its REST requests do: a read token scoped to the
    workflow sees its state and its changes."""
    from fcc_helpers import LineProc
    env = {"FLOWCAST_URL": "http://127.0.0.1:%d" % srv.port,
           "FLOWCAST_API_TOKEN": tok("read", ["deploy-*"])}
    p = LineProc([flowcast, "watch", "--json", "deploy-a"], env=env)
    try:
        first = p.wait_for(lambda o: o.get("workflow_id") == "deploy-a")
        r = srv.request("PATCH", "/api/workflows/deploy-a", {"message": "watched with a token"},
                        headers={"Authorization": "Bearer " + STATIC}, auth=False)
        assert r.status == 200, r
        p.wait_for(lambda o: o.get("message") == "watched with a token" and
                   o["seq"] == first["seq"] + 1)
    finally:
        p.kill()


def _cache_figures(s, want_hits):
    """(hits, misses, entries) from /metrics, waiting out the 250 ms the
    loops take to publish them until hits reach want_hits."""
    deadline = time.time() + 10
    while True:
        m = s.metrics()
        got = (m['flowcast_jwt_cache_lookups_total{result="hit"}'],
               m['flowcast_jwt_cache_lookups_total{result="miss"}'],
               m["flowcast_jwt_cache_entries"])
        if got[0] >= want_hits or time.time() > deadline:
            return got
        time.sleep(0.1)


def test_jwt_cache_counts_hits_and_never_outlives_exp(server_factory, keys):
    """An RS256 token presented again is a cache hit (counted in /metrics),
    one byte off it is a miss and 401, and the cached token is refused from
    its exp on like any other."""
    s = server_factory("--jwt-key", keys["rsa"], "--api-token", STATIC, "--jwt-cache", "64")
    t = mint("read", key=keys["rsa_priv"], alg="RS256", ttl=3)
    for _ in range(5):
        assert status(s, "GET", "/api/workflows", t) == 200
    hits, misses, entries = _cache_figures(s, 4)
    assert (hits, misses, entries) == (4, 1, 1)
    off = t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1]
    assert status(s, "GET", "/api/workflows", off) == 401
    assert status(s, "GET", "/api/workflows", t + "x") == 401
    # time() in the server reads a coarse clock, a tick behind: wait 0.2 s more.
    exp = json.loads(base64.urlsafe_b64decode(t.split(".")[1] + "=="))["exp"]
    while time.time() < exp + 0.2:
        time.sleep(0.05)
    assert status(s, "GET", "/api/workflows", t) == 401  # a hit, expired: dropped
    hits, misses, entries = _cache_figures(s, 5)
    assert (hits, entries) == (5, 0)
    assert misses == 3


def test_jwt_cache_zero_turns_it_off(server_factory, keys):
    s = server_factory("--jwt-key", keys["hmac"], "--api-token", STATIC, "--jwt-cache", "0")
    t = mint("read")
    for _ in range(3):
        assert status(s, "GET", "/api/workflows", t) == 200
    time.sleep(0.6)
    assert _cache_figures(s, 0) == (0, 0, 0)
