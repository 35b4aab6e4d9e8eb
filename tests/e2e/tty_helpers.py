"""A real terminal for the `flowcast watch` tests: a command in a tmux pane of
a given size, read with `capture-pane -p`, resized with `resize-window`, and
every byte the command writes copied to a file with `pipe-pane`."""

import os
import subprocess
import time

import pytest


class Pane:
    def __init__(self, name, command, env, width=140, height=30, log=None):
        self.name = name
        self.log = log
        exports = " ".join("%s=%s" % kv for kv in env.items())
        # -u: UTF-8 whatever the locale of the test run; the command then
        # finds its own locale in env (LANG / LC_ALL given by the test).
        self.tmux("-u", "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                  "env %s %s; sleep 60" % (exports, command))
        if log:
            # pipe-pane starts a moment after the command: bytes written before
            # it are not counted (the tests measure a later period).
            self.tmux("pipe-pane", "-t", name, "-O", "cat >> %s" % log)

    def tmux(self, *args):
        r = subprocess.run(["tmux", "-L", self.name] + list(args), capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout

    def text(self):
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def history(self):
        """The lines scrolled off the top of the normal screen."""
        n = int(self.tmux("display-message", "-p", "-t", self.name, "#{history_size}"))
        if n == 0:  # -E -1 of an empty history would give the first screen line
            return ""
        return self.tmux("capture-pane", "-p", "-S", "-%d" % n, "-E", "-1", "-t", self.name)

    def send_keys(self, *keys):
        """Types keys into the pane as tmux send-keys names them ("q", "C-c")."""
        self.tmux("send-keys", "-t", self.name, *keys)

    def resize(self, width, height):
        self.tmux("resize-window", "-t", self.name, "-x", str(width), "-y", str(height))

    def size(self):
        w, h = self.tmux("display-message", "-p", "-t", self.name,
                         "#{pane_width} #{pane_height}").split()
        return int(w), int(h)

    def wait(self, pred, timeout=10.0, what="screen"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.text()
            if pred(t):
                return t
            time.sleep(0.1)
        raise AssertionError("%s not shown within %ss; screen:\n%s" % (what, timeout, self.text()))

    def command_pid(self, timeout=10.0):
        """The pid of the pane's command (the child of the pane's shell)."""
        shell = int(self.tmux("display-message", "-p", "-t", self.name, "#{pane_pid}"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open("/proc/%d/task/%d/children" % (shell, shell)) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
            time.sleep(0.05)
        raise AssertionError("no command under the pane's shell %d" % shell)

    def log_bytes(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def kill(self):
        subprocess.run(["tmux", "-L", self.name, "kill-server"], timeout=10, capture_output=True)


@pytest.fixture
def pane_factory(tmp_path):
    panes = []

    def make(command, env, **kw):
        p = Pane("fc-tty-%d-%d" % (os.getpid(), len(panes)), command, env, **kw)
        panes.append(p)
        return p

    yield make
    for p in panes:
        p.kill()
