"""Operational faults (issue 8, item 8): signals (SIGHUP, SIGTERM under load),
one server per database, a corrupt database, a full disk, and the
configuration mistakes that used to pass silently."""

import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from fc_helpers import (assert_error, connect, http_request_bytes, raw_http)

API = "/api/workflows"


def _run(flowcast, args, env=None, timeout=10):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([flowcast] + args, capture_output=True, timeout=timeout, env=e,
                          stdin=subprocess.DEVNULL)


def _wait_exit(s, timeout=15.0):
    """Waits for a server that must fail to start; returns (exit code, log)."""
    s.expect_exit = True
    try:
        rc = s.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        s.proc.wait(5)
        raise AssertionError("server still running; log:\n" + s.log_tail())
    return rc, s.log_tail()


def _fill_workflows(s, n, msg_len=400):
    """Creates n workflows with pipelined POSTs (100 per connection)."""
    ids = []
    for start in range(0, n, 100):
        reqs = b""
        for i in range(start, min(n, start + 100)):
            body = json.dumps({"id": "w%05d" % i, "name": "n" * 100, "total_steps": 10,
                               "message": "m" * msg_len}).encode()
            reqs += http_request_bytes("POST", API, s.port, {
                "Content-Type": "application/json", "Content-Length": str(len(body))}, body)
            ids.append("w%05d" % i)
        rs, _ = raw_http(s.port, reqs, timeout=30, n=min(n, start + 100) - start)
        assert all(r.status == 201 for r in rs), rs[0]
    return ids


# ---------------------------------------------------------------- configuration

def test_empty_api_token_env_is_an_error(flowcast, tmp_path):
    r = _run(flowcast, ["serve", "--db", str(tmp_path / "t.db"), "--listen", "127.0.0.1:0"],
             env={"FLOWCAST_API_TOKEN": ""})
    assert r.returncode == 2, r
    err = r.stderr.decode()
    assert "FLOWCAST_API_TOKEN" in err and "empty" in err, err
    assert not (tmp_path / "t.db").exists()  # refused before anything is opened


def test_help_says_what_the_token_guards(flowcast):
    out = _run(flowcast, ["serve", "--help"]).stdout.decode()
    text = " ".join(out.split())
    assert "every request but /healthz and the dashboard's files must carry it" in text, out
    assert "reads" in text and "changes alike" in text, out
    assert "--allow-host" in out and "--startup-check" in out


def test_max_header_capped_at_parser_limit(flowcast, server_factory, tmp_path):
    r = _run(flowcast, ["serve", "--db", str(tmp_path / "t.db"), "--max-header", "81921"])
    assert r.returncode == 2, r
    assert "libhttp-parser" in r.stderr.decode(), r.stderr
    r = _run(flowcast, ["serve", "--db", str(tmp_path / "t.db"), "--max-header", "1M"])
    assert r.returncode == 2 and "81920" in r.stderr.decode(), r.stderr
    # The largest allowed value works end to end.
    s = server_factory("--max-header", "80K")
    (r,), _ = raw_http(s.port, http_request_bytes("GET", "/healthz", s.port,
                                                  {"X-Big": "a" * 70000}))
    assert r.status == 200, r


# ---------------------------------------------------------------- signals

def test_sighup_does_not_stop_the_server(server):
    server.create(id="h")
    for _ in range(3):
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)
    assert server.alive()
    assert server.request("GET", "/healthz").status == 200
    assert server.get("h")["seq"] == 1
    deadline = time.monotonic() + 5
    while "SIGHUP" not in server.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "SIGHUP" in server.log_tail()
    # teardown: SIGTERM still exits 0 within 5 s


def test_sigterm_under_load_within_5s(server_factory):
    """Clients pipeline list requests (about 0.5 MB of answer each) without
    reading: the loops stay busy with a large backlog. SIGTERM must still end
    the server, with status 0, within the 5 s promise."""
    s = server_factory("--io-threads", "2")
    _fill_workflows(s, 1000)
    one = http_request_bytes("GET", API + "?limit=1000", s.port)
    stop = threading.Event()

    def flood():
        try:
            c = connect(s.port)
            c.settimeout(2)
            data = one * (65536 // len(one))
            while not stop.is_set():
                c.sendall(data)
        except OSError:
            pass

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    assert s.alive()
    t0 = time.monotonic()
    try:
        rc = s.stop(signal.SIGTERM, timeout=5.0)
    finally:
        stop.set()
    took = time.monotonic() - t0
    assert rc == 0, (rc, s.log_tail())
    print("exit after %.2f s" % took)
    for t in threads:
        t.join(5)


# ---------------------------------------------------------------- one server per database

def test_second_server_on_same_db_refused(server_factory):
    s1 = server_factory()
    s1.create(id="a")
    s2 = server_factory(db=s1.db, ready=False)
    rc, log = _wait_exit(s2)
    assert rc != 0
    assert "in use by another flowcast process" in log, log
    assert "pid %d" % s1.proc.pid in log, log
    assert s1.request("GET", "/healthz").status == 200
    s1.patch("a", current_step=1)
    assert s1.stop() == 0
    assert not os.path.exists(s1.db + ".lock")  # a clean stop removes it
    # Once the first is gone, the next one starts and sees every change.
    s3 = server_factory(db=s1.db)
    assert s3.get("a")["seq"] == 2


def test_lock_does_not_outlive_a_killed_server(server_factory):
    s1 = server_factory()
    s1.create(id="k")
    s1.kill9()
    s2 = server_factory(db=s1.db)  # the kernel dropped the flock with the process
    assert s2.get("k")["seq"] == 1


# ---------------------------------------------------------------- corrupt database

def test_corrupt_pages_fail_the_start(server_factory, tmp_path):
    db = str(tmp_path / "c.db")
    s = server_factory(db=db)
    _fill_workflows(s, 600, msg_len=1000)
    assert s.stop() == 0  # the final checkpoint folds the WAL into the file
    size = os.path.getsize(db)
    page = 4096
    assert size > 40 * page, size
    # The header (page 1) stays intact; pages in the second half get garbage.
    with open(db, "r+b") as f:
        for pno in range(size // page // 2, size // page // 2 + 6):
            f.seek(pno * page)
            f.write(os.urandom(page))
    s2 = server_factory(db=db, ready=False)
    rc, log = _wait_exit(s2)
    assert rc != 0, log
    assert "corrupt" in log, log


def test_integrity_check_reported_and_skippable(server_factory, tmp_path):
    db = str(tmp_path / "big.db")
    s = server_factory(db=db)
    _fill_workflows(s, 2000, msg_len=2000)
    assert s.stop() == 0
    t0 = time.monotonic()
    s2 = server_factory(db=db)
    took = time.monotonic() - t0
    m = re.search(r"integrity check ok \(([0-9.]+) s\)", s2.log_tail())
    assert m, s2.log_tail()
    assert took < 10, took  # generous: the check itself takes a fraction of a second here
    assert s2.stop() == 0
    # --startup-check 0 skips the check.
    s4 = server_factory("--startup-check", "0", db=db)
    assert "integrity check" not in s4.log_tail()


# ---------------------------------------------------------------- disk full

@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MiB tmpfs; unmounted at teardown even when the test fails."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode().strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill_disk(path):
    """Writes path until the file system has no block left."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (65536, 4096, 512):
            while True:
                try:
                    if os.write(fd, b"\0" * chunk) < chunk:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)


def test_disk_full_507_and_reads_keep_working(server_factory, tiny_fs):
    s = server_factory(db=str(tiny_fs / "full.db"))
    s.create(id="r", message="before")
    _fill_disk(tiny_fs / "filler")
    statuses = []
    for i in range(200):
        r = s.request("PATCH", API + "/r", {"message": "x" * 4000, "current_step": i % 10})
        statuses.append(r.status)
        if r.status != 200:
            break
    assert statuses[-1] == 507, statuses
    assert_error(r, 507, "storage_full")
    r = s.request("POST", API, {"id": "new", "name": "n", "total_steps": 1})
    assert_error(r, 507, "storage_full")
    # reads keep working
    assert s.request("GET", "/healthz").status == 200
    w = s.get("r")
    assert s.request("GET", API).status == 200
    assert s.request("GET", API + "/r/history").status == 200
    assert s.request("GET", API + "/new").status == 404
    # once there is room again, changes go through and seq continues
    os.unlink(tiny_fs / "filler")
    w2 = s.patch("r", message="after")
    assert w2["seq"] == w["seq"] + 1
    assert s.stop() == 0


def test_file_size_limit_507_and_server_survives(server_factory, tmp_path):
    """RLIMIT_FSIZE: a write past it fails with EFBIG (and would raise SIGXFSZ,
    which used to end the process); it is the same fault as a full disk."""
    s = server_factory(db=str(tmp_path / "fsize.db"))
    s.create(id="r")
    limit = os.path.getsize(s.db + "-wal") + 256 * 1024
    subprocess.run(["prlimit", "--pid", str(s.proc.pid), "--fsize=%d:unlimited" % limit], check=True)
    r = None
    for i in range(400):
        r = s.request("PATCH", API + "/r", {"message": "x" * 4000, "current_step": i % 10})
        if r.status != 200:
            break
    assert_error(r, 507, "storage_full")
    assert s.alive()
    assert s.request("GET", API + "/r").status == 200
    subprocess.run(["prlimit", "--pid", str(s.proc.pid), "--fsize=unlimited:unlimited"], check=True)
    s.patch("r", message="after")
