"""Operating flowcast (issue 11 §4): --log-format json, GET/HEAD /readyz,
global client options before or after the command, a bare host:port meaning
http://, and a busy port failing before the database file is created."""

import json
import os
import re
import socket
import subprocess
import time

from fc_helpers import RawWS, check_store_commit_histogram
from fcc_helpers import cli

API = "/api/workflows"
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SECRET = "s3cret-token-never-logged"


def _log_lines(server):
    with open(server.log_path, "rb") as f:
        return f.read().decode("utf-8").splitlines()


# ---------------------------------------------------------------- --log-format json

def test_json_logs_one_object_per_line(server_factory):
    s = server_factory("--log-format", "json", "--log-level", "debug", "--api-token", SECRET,
                       "--request-timeout", "0.5")
    s.create(id="j1", name="naïve ✓ 名前")
    assert s.request("PATCH", API + "/j1", {"current_step": 1}, auth=False).status == 401
    assert s.request("GET", API + "/nope?access_token=" + SECRET).status == 404
    assert s.request("GET", API + "/j1", headers={"Authorization": "Bearer " + SECRET}).status == 200
    ws = RawWS.open(s, API + "/j1/updates?access_token=" + SECRET)
    ws.close()
    idle = socket.create_connection(("127.0.0.1", s.port))  # times out: a debug line
    time.sleep(1.0)
    idle.close()
    assert s.stop() == 0
    lines = _log_lines(s)
    assert len(lines) >= 5, lines
    objs = []
    for line in lines:
        o = json.loads(line)  # every line, not only most
        assert isinstance(o, dict), line
        assert RFC3339_MS.match(o["time"]), line
        assert o["level"] in ("debug", "info", "warn", "error"), line
        assert isinstance(o["subsystem"], str) and o["subsystem"], line
        assert isinstance(o["message"], str) and o["message"], line
        objs.append(o)
    listening = [o for o in objs if o["message"].startswith("listening on")]
    assert len(listening) == 1, objs
    assert listening[0]["port"] == s.port and listening[0]["host"] == "127.0.0.1"
    assert listening[0]["db"] == s.db and listening[0]["tls"] == 0
    opened = [o for o in objs if o["subsystem"] == "store.sqlite" and "opened" in o["message"]]
    assert opened and opened[0]["path"] == s.db and opened[0]["retention"] == 1000, objs
    stopping = [o for o in objs if o["message"].startswith("shutting down")]
    assert stopping and isinstance(stopping[0]["connections"], int), objs
    assert any(o["level"] == "debug" for o in objs), objs
    text = "\n".join(lines)
    assert SECRET not in text and "access_token" not in text


def test_text_logs_stay_the_default(server):
    server.create(id="t")
    assert server.stop() == 0
    for line in _log_lines(server):
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info |warn |error) \S+: ",
                        line), line


def test_log_format_from_the_environment(server_factory):
    s = server_factory(env={"FLOWCAST_LOG_FORMAT": "json"})
    s.create(id="e")
    assert s.stop() == 0
    lines = _log_lines(s)
    assert lines and all(json.loads(x)["time"] for x in lines), lines


def test_log_format_unknown_is_a_usage_error(flowcast, tmp_path):
    r = subprocess.run([flowcast, "serve", "--log-format", "xml", "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r
    assert r.stderr == 'flowcast: --log-format: "xml" is not one of text|json\n', r
    assert not (tmp_path / "x.db").exists()


# ---------------------------------------------------------------- /readyz

JWT_KEY = b"k" * 40


def test_store_commit_histogram(server):
    check_store_commit_histogram(server)


def test_readyz_ready_without_credential(server_factory, tmp_path):
    key = tmp_path / "jwt.key"
    key.write_bytes(JWT_KEY)
    s = server_factory("--jwt-key", str(key))
    assert s.request("GET", API).status == 401  # a credential is needed elsewhere
    r = s.request("GET", "/readyz")
    assert r.status == 200, r
    assert r.header("content-type") == "application/json"
    assert r.json() == {"status": "ready"}
    h = s.request("HEAD", "/readyz")
    assert h.status == 200 and h.body == b"" and h.header("content-length") == "18", h
    r = s.request("POST", "/readyz", {})
    assert r.status == 405 and r.header("allow") == "GET, HEAD", r


def test_readyz_503_while_writes_fail_then_ready_again(server_factory, tmp_path):
    """A write past RLIMIT_FSIZE fails (507) as on a full disk: the store is
    not ready, /healthz still says the process is alive; once a write goes
    through again, ready."""
    s = server_factory(db=str(tmp_path / "ready.db"))
    s.create(id="r")
    # refused changes are the client's fault, not the store's
    assert s.request("PATCH", API + "/nope", {"current_step": 1}).status == 404
    assert s.request("POST", API, {"id": "r", "name": "n", "total_steps": 1}).status == 409
    assert s.request("PATCH", API + "/r", {"current_step": 99}).status == 400
    assert s.request("GET", "/readyz").status == 200
    limit = os.path.getsize(s.db + "-wal") + 256 * 1024
    subprocess.run(["prlimit", "--pid", str(s.proc.pid), "--fsize=%d:unlimited" % limit],
                   check=True)
    r = None
    for i in range(400):
        r = s.request("PATCH", API + "/r", {"message": "x" * 4000, "current_step": i % 10})
        if r.status != 200:
            break
    assert r.status == 507, r
    r = s.request("GET", "/readyz")
    assert r.status == 503, r
    body = r.json()
    assert body["status"] == "not_ready" and body["check"] == "store", body
    assert "last write failed" in body["reason"] and "storage" in body["reason"], body
    assert r.header("retry-after") == "1"
    h = s.request("HEAD", "/readyz")
    assert h.status == 503 and h.body == b"", h
    assert s.request("GET", "/healthz").status == 200
    subprocess.run(["prlimit", "--pid", str(s.proc.pid), "--fsize=unlimited:unlimited"],
                   check=True)
    s.patch("r", message="after")
    r = s.request("GET", "/readyz")
    assert r.status == 200 and r.json() == {"status": "ready"}, r


# ---------------------------------------------------------------- busy port

def test_busy_port_fails_before_creating_the_database(flowcast, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    db = tmp_path / "never.db"
    try:
        r = subprocess.run([flowcast, "serve", "--listen", "127.0.0.1:%d" % port, "--db", str(db)],
                           capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
    assert r.returncode != 0, r
    assert "cannot listen on 127.0.0.1:%d" % port in r.stderr, r
    assert sorted(os.listdir(tmp_path)) == [], os.listdir(tmp_path)


# ---------------------------------------------------------------- client global options

def test_global_options_before_or_after_the_command(flowcast, server_factory):
    s = server_factory("--api-token", SECRET)
    bare = "127.0.0.1:%d" % s.port
    env = {"FLOWCAST_URL": "http://127.0.0.1:1"}  # wrong on purpose: the flags must win
    r = cli(flowcast, s, "--server", bare, "--token", SECRET, "create", "a", "--steps", 2,
            "--id", "g1", env=env)
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["id"] == "g1"
    r = cli(flowcast, s, "--token", SECRET, "update", "g1", "--step", 1, "--server", bare,
            env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["current_step"] == 1, r
    r = cli(flowcast, s, "step", "g1", "--server", bare, "--token", SECRET, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "completed", r
    # --api-token guards reads too: get carries the token like the changes
    r = cli(flowcast, s, "--server", bare, "get", "g1", env=env)
    assert r.returncode == 1 and "credential is required" in r.stderr, r
    r = cli(flowcast, s, "--server", bare, "get", "g1", "--token", SECRET, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == "g1", r
    # the token given is the one sent: a wrong one is refused
    r = cli(flowcast, s, "--server", bare, "--token", "wrong", "create", "b", "--steps", 1,
            env=env)
    assert r.returncode == 1 and "invalid API token" in r.stderr, r
    # --token-command is global too; of it and --token, the one given last wins
    r = cli(flowcast, s, "--token-command", "echo " + SECRET, "--server", bare, "create", "c",
            "--steps", 1, "--token", "wrong", env=env)
    assert r.returncode == 1 and "invalid API token" in r.stderr, r
    r = cli(flowcast, s, "--token", "wrong", "--token-command", "echo " + SECRET, "--server", bare,
            "create", "c", "--steps", 1, "--id", "g2", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == "g2", r
    # FLOWCAST_URL without a scheme means http:// too
    r = cli(flowcast, s, "list", url=bare, env={"FLOWCAST_API_TOKEN": SECRET})
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1])["id"] == "g1", r


def test_global_option_without_a_command_is_a_usage_error(flowcast, server):
    r = cli(flowcast, server, "--server", "127.0.0.1:%d" % server.port)
    assert r.returncode == 2, r
    r = cli(flowcast, server, "--server", "127.0.0.1:%d" % server.port, "--token")
    assert r.returncode == 2, r


def test_bare_host_port_in_watch(flowcast, server):
    server.create(id="wd", total_steps=1)
    server.patch("wd", status="completed", current_step=1)
    r = cli(flowcast, server, "--server", "127.0.0.1:%d" % server.port, "watch", "wd", "--json",
            "--exit-on-done", url="http://127.0.0.1:1")
    assert r.returncode == 0, r
    assert json.loads(r.stdout.splitlines()[-1])["status"] == "completed", r

