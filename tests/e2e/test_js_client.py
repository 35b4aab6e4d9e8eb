"""The JavaScript client (clients/js) in Node against the real server: its
own node --test files (Node's WebSocket and the ws package, long-poll, a
kill -9 and restart, deletion, REST helpers; multi-URL failover across two
servers sharing one SQLite file; flowcast.d.ts against the code and tsc),
and /flowcast.js serving that same source."""

import os

import pytest

from fc_helpers import port_range
from js_helpers import JS_DIR, ensure_node_modules, node_cmd, run_node_group

TEST_FILES = sorted(f for f in os.listdir(os.path.join(JS_DIR, "test")) if f.endswith(".test.mjs"))


@pytest.mark.parametrize("name", TEST_FILES)
def test_node_suite(flowcast, name):
    ensure_node_modules()
    # Its servers' ports come from this worker's range, as free_port's do.
    env = dict(os.environ, FLOWCAST_BIN=flowcast, FLOWCAST_TEST_PORTS="%d-%d" % port_range())
    rc, out, err = run_node_group(node_cmd() + ["--test", "--test-concurrency=1",
                                                "--test-timeout=90000", os.path.join("test", name)],
                                  cwd=JS_DIR, env=env, timeout=300)
    assert rc == 0, out[-8000:] + err[-4000:]


def test_served_client_is_the_package_source(server):
    """One source of truth: /flowcast.js and the modules it imports are the
    files in clients/js, byte for byte."""
    for name in ("flowcast.js", "flowcast-auth.js", "flowcast-eventsource.js", "flowcast-transports.js"):
        r = server.request("GET", "/" + name)
        assert r.status == 200, name
        assert r.header("Content-Type").startswith("text/javascript")
        with open(os.path.join(JS_DIR, name), "rb") as f:
            assert r.body == f.read(), name
