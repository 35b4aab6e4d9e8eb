"""The cluster bus (--nats) on a store only one process writes: refused.

A SQLite file belongs to one process, so there is nothing to relay; a node
started with --nats on it must say so and exit 2 (like a bad flag), not run
as if it were part of a cluster. The clusters themselves (PostgreSQL + NATS)
are in test_cluster_feed.py."""

import os
import subprocess

from conftest import flowcast_bin
from fc_helpers import free_port
from svc_nats import NatsServer


def _serve(tmp_path, *flags, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [flowcast_bin(), "serve", "--listen", "127.0.0.1:%d" % free_port(),
         "--db", str(tmp_path / "x.db"), *flags],
        env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)


def test_nats_refused_with_sqlite(tmp_path):
    with NatsServer() as nats:
        r = _serve(tmp_path, "--nats", nats.url)
    assert r.returncode == 2, r.stderr
    err = r.stderr.decode()
    assert "--nats needs a store that several nodes share" in err
    assert "listening" not in err
    assert not (tmp_path / "x.db").exists(), "refused only after creating the database file"


def test_nats_refused_with_sqlite_from_environment(tmp_path):
    r = _serve(tmp_path, env={"FLOWCAST_NATS": "nats://127.0.0.1:1"})
    assert r.returncode == 2, r.stderr
    assert "--nats needs a store that several nodes share" in r.stderr.decode()
    assert not (tmp_path / "x.db").exists()


def test_bad_node_id_refused(tmp_path):
    r = _serve(tmp_path, "--node-id", "a b")
    assert r.returncode == 2
    assert "--node-id" in r.stderr.decode()


def test_sqlite_node_ready_without_bus(server):
    """Without --nats the bus row passes: one node, nothing to prove."""
    r = server.request("GET", "/readyz")
    assert r.status == 200, r.body
