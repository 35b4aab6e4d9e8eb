"""Node.js for the tests of the JavaScript client (clients/js): its npm
dependencies (ws, typescript; `npm ci` once when missing) and the node
command line (Node 20 has a global WebSocket only with
--experimental-websocket; Node 22 and later have it by default)."""

import os
import signal
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JS_DIR = os.path.join(ROOT, "clients", "js")


def node_cmd():
    """The node command with the flags the client's tests need."""
    try:
        out = subprocess.run(["node", "-e", "process.stdout.write(typeof WebSocket)"],
                             capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.fail("node is missing (scripts/setup installs it)")
    return ["node"] if out.stdout == "function" else ["node", "--experimental-websocket"]


def run_node_group(args, cwd, env, timeout):
    """Runs node in a process group of its own and returns (returncode,
    stdout, stderr). The servers a node test starts are its children: when
    the run ends in any way other than node's own exit (a timeout, pytest
    stopping after a failure elsewhere), the whole group is killed, so no
    server outlives it (node's exit handlers do not run on SIGKILL)."""
    p = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def ensure_node_modules():
    """Installs clients/js's pinned dev dependencies when they are missing."""
    if os.path.exists(os.path.join(JS_DIR, "node_modules", "ws", "package.json")) and \
            os.path.exists(os.path.join(JS_DIR, "node_modules", "typescript", "package.json")):
        return
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, "npm ci in clients/js failed:\n" + r.stdout + r.stderr
