"""End-to-end tests of the flowcast client subcommands: create, update, step,
get, list (output and error exits), and `watch --json` with --exit-on-done."""

import json
import subprocess
import threading
import time

from fc_helpers import assert_workflow, free_port
from fcc_helpers import LineProc, cli, cli_json


def test_create_update_get_list(flowcast, server):
    w = assert_workflow(cli_json(flowcast, server, "create", "Nightly build", "--steps", 4,
                                 "--id", "nb-1", "--message", "queued"))
    assert (w["id"], w["name"], w["total_steps"], w["message"], w["seq"]) == \
        ("nb-1", "Nightly build", 4, "queued", 1)
    gen = cli_json(flowcast, server, "create", "other", "--steps", 2)
    assert len(gen["id"]) == 26
    u = cli_json(flowcast, server, "update", "nb-1", "--status", "running", "--step", 2,
                 "--message", "linking")
    assert (u["status"], u["current_step"], u["message"], u["seq"]) == ("running", 2, "linking", 2)
    assert cli_json(flowcast, server, "get", "nb-1") == u
    r = cli(flowcast, server, "list")
    assert r.returncode == 0, r
    listed = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["id"] for x in listed] == [gen["id"], "nb-1"]  # newest first
    r = cli(flowcast, server, "list", "--status", "running")
    assert [json.loads(x)["id"] for x in r.stdout.splitlines()] == ["nb-1"]
    r = cli(flowcast, server, "list", "--limit", 1)
    assert len(r.stdout.splitlines()) == 1


def test_list_follows_cursors(flowcast, server):
    for i in range(5):
        server.create(id="w%d" % i)
    r = subprocess.run([flowcast, "list", "--server", "http://127.0.0.1:%d" % server.port],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r
    assert len(r.stdout.splitlines()) == 5


def test_step_advances_and_completes(flowcast, server):
    server.create(id="s", total_steps=3)
    a = cli_json(flowcast, server, "step", "s", "--message", "one")
    assert (a["current_step"], a["status"], a["message"]) == (1, "running", "one")
    cli_json(flowcast, server, "step", "s")
    c = cli_json(flowcast, server, "step", "s")
    assert (c["current_step"], c["status"]) == (3, "completed")
    r = cli(flowcast, server, "step", "s")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "flowcast: workflow 's' is completed and can no longer change\n", r


def test_concurrent_steps_all_count(flowcast, server):
    server.create(id="c", total_steps=100)
    results = []

    def one():
        results.append(cli(flowcast, server, "step", "c", timeout=60).returncode)

    ts = [threading.Thread(target=one) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert results == [0] * 8
    assert server.get("c")["current_step"] == 8  # if_seq retries: no step lost


def test_errors_are_one_line(flowcast, server):
    r = cli(flowcast, server, "get", "missing")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == 'flowcast: no workflow with id "missing"\n', r
    server.create(id="dup")
    r = cli(flowcast, server, "create", "x", "--steps", 1, "--id", "dup")
    assert r.returncode == 1 and r.stderr.startswith("flowcast: ") and r.stderr.count("\n") == 1
    r = cli(flowcast, server, "update", "dup", "--step", 99)
    assert r.returncode == 1 and "current_step" in r.stderr, r
    port = free_port()
    r = cli(flowcast, server, "get", "dup", url="http://127.0.0.1:%d" % port)
    assert r.returncode == 1
    assert r.stderr == "flowcast: cannot connect to http://127.0.0.1:%d: connection refused\n" % port


def test_usage_errors_exit_2(flowcast, server):
    for args in (["create", "x"], ["create", "--steps", "3"], ["create", "x", "--steps", "-1"],
                 ["update", "a"], ["update", "a", "--step", "x"], ["get"], ["get", "a", "b"],
                 ["list", "--bogus"], ["watch"], ["step", "a", "--message"],
                 ["get", "a", "--server", "ftp://x"]):
        r = cli(flowcast, server, *args)
        assert r.returncode == 2, (args, r)
        assert r.stderr.count("\n") == 1 and r.stdout == "", (args, r)
    r = cli(flowcast, server, "--help")
    assert r.returncode == 0 and "watch ID" in r.stdout and "serve" in r.stdout


def test_token_from_environment(flowcast, server_factory):
    s = server_factory("--api-token", "sekret")
    r = cli(flowcast, s, "create", "x", "--steps", 1)
    assert r.returncode == 1 and r.stderr.startswith("flowcast: ") and r.stdout == "", r
    w = cli_json(flowcast, s, "create", "x", "--steps", 1, env={"FLOWCAST_API_TOKEN": "sekret"})
    assert w["name"] == "x"


def test_reads_send_the_token_too(flowcast, server_factory):
    """--api-token guards reads as well (issue 9): get, list and watch (its
    REST lookups and its WebSocket) send $FLOWCAST_API_TOKEN, and fail
    plainly without it."""
    s = server_factory("--api-token", "sekret")
    s.create(id="r", total_steps=1, status="completed")
    env = {"FLOWCAST_API_TOKEN": "sekret"}
    for args in (["get", "r"], ["list"]):
        r = cli(flowcast, s, *args)
        assert r.returncode == 1 and r.stdout == "", (args, r)
        assert r.stderr == "flowcast: a credential is required (Authorization: Bearer or " \
            "access_token)\n", (args, r.stderr)
    assert cli_json(flowcast, s, "get", "r", env=env)["status"] == "completed"
    assert "r" in cli(flowcast, s, "list", env=env).stdout
    url = {"FLOWCAST_URL": "http://127.0.0.1:%d" % s.port}
    for e, ok in (({}, False), (env, True)):
        p = LineProc([flowcast, "watch", "r", "--exit-on-done"], env=dict(url, **e))
        try:
            rc = p.finish()
            if ok:
                assert rc == 0 and json.loads(p.lines[0])["status"] == "completed", p.stderr
            else:
                assert rc == 1 and p.lines == [] and "credential is required" in p.stderr, \
                    p.stderr
        finally:
            p.kill()


def _watch(flowcast, server, *args):
    env = {"FLOWCAST_URL": "http://127.0.0.1:%d" % server.port}
    return LineProc([flowcast, "watch"] + [str(a) for a in args], env=env)


def test_watch_json_exit_on_done(flowcast, server):
    server.create(id="j", total_steps=2)
    p = _watch(flowcast, server, "j", "--exit-on-done")
    try:
        first = p.wait_for(lambda o: True)
        assert (first["workflow_id"], first["seq"]) == ("j", 1)
        server.patch("j", status="running", current_step=1, message="half")
        server.patch("j", status="completed", current_step=2)
        assert p.finish() == 0
        seqs = [json.loads(x)["seq"] for x in p.lines]
        assert seqs == [1, 2, 3]
        last = json.loads(p.lines[-1])
        assert set(last) == {"workflow_id", "epoch", "name", "status", "current_step", "total_steps",
                             "message", "timestamp", "seq"}
        assert last["status"] == "completed"
    finally:
        p.kill()


def test_watch_several_exit_1_when_one_fails(flowcast, server):
    server.create(id="x1", total_steps=1)
    server.create(id="x2", total_steps=1)
    p = _watch(flowcast, server, "--json", "--exit-on-done", "x1", "x2")
    try:
        p.wait_for(lambda o: o["workflow_id"] == "x2")
        server.patch("x1", status="completed", current_step=1)
        p.wait_for(lambda o: o["workflow_id"] == "x1" and o["status"] == "completed")
        assert p.proc.poll() is None  # x2 still running
        server.patch("x2", status="failed")
        assert p.finish() == 1
    finally:
        p.kill()


def test_watch_already_terminal_exits_at_once(flowcast, server):
    server.create(id="done", total_steps=1, status="cancelled")
    p = _watch(flowcast, server, "done", "--exit-on-done")
    try:
        assert p.finish() == 1
        assert json.loads(p.lines[0])["status"] == "cancelled"
    finally:
        p.kill()


def test_watch_all_json(flowcast, server):
    p = _watch(flowcast, server, "--all")
    try:
        time.sleep(1.0)  # JSON mode prints nothing until the first change
        server.create(id="n1", total_steps=2)
        server.patch("n1", current_step=1)
        a = p.wait_for(lambda o: o["workflow_id"] == "n1" and o["seq"] == 2)
        assert a["current_step"] == 1
        assert [json.loads(x)["seq"] for x in p.lines] == [1, 2]
    finally:
        p.kill()


def test_watch_unknown_id_fails(flowcast, server):
    p = _watch(flowcast, server, "ghost")
    try:
        assert p.finish() == 1
        assert p.stderr == 'flowcast: no workflow with id "ghost"\n'
    finally:
        p.kill()
