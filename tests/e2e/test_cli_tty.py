"""The terminal view of `flowcast watch`, checked in a real terminal: the
command runs in a tmux pane; the test changes workflows through the API and
reads the screen with `tmux capture-pane -p`."""

import re

from fcc_helpers import recreate_while_away, restart_same_port
from tty_helpers import pane_factory  # noqa: F401 (a fixture)


def _bar_line(screen, name):
    lines = [ln for ln in screen.splitlines() if ln.startswith(name)]
    assert len(lines) <= 1, screen  # redrawn in place, never repeated
    return lines[0] if lines else ""


def test_watch_bar_shows_the_current_step(flowcast, server_factory, pane_factory):
    s = server_factory()
    s.create(id="deploy", name="Deploy web", total_steps=10)
    s.create(id="tests", name="Test suite", total_steps=4)
    env = {"FLOWCAST_URL": "http://127.0.0.1:%d" % s.port, "ASAN_OPTIONS": "detect_leaks=0"}
    pane = pane_factory("%s watch deploy tests" % flowcast, env)
    pane.wait(lambda t: "Test suite" in t and "Deploy web" in t, what="both bars")
    s.patch("deploy", status="running", current_step=3, message="copying assets")
    screen = pane.wait(lambda t: "3/10" in _bar_line(t, "Deploy web"), what="step 3/10")
    line = _bar_line(screen, "Deploy web")
    assert re.search(r"\[#{6}\.{14}\] 3/10 +30% running", line), line
    assert "copying assets" in line
    assert "0/4" in _bar_line(screen, "Test suite") and "pending" in _bar_line(screen, "Test suite")
    s.patch("deploy", current_step=7)
    screen = pane.wait(lambda t: "7/10" in _bar_line(t, "Deploy web"), what="step 7/10")
    assert " 70% " in _bar_line(screen, "Deploy web")

    # A restart shows a reconnect line above the bars, then the missed change.
    s.stop()
    pane.wait(lambda t: "reconnecting in" in t, what="reconnect line")
    s2 = restart_same_port(server_factory, s)
    s2.patch("tests", status="completed", current_step=4)
    screen = pane.wait(lambda t: "4/4" in _bar_line(t, "Test suite"), timeout=15, what="4/4")
    assert "100% completed" in _bar_line(screen, "Test suite")
    assert "reconnected to" in screen
    assert "7/10" in _bar_line(screen, "Deploy web")


def test_watch_bar_starts_afresh_for_a_recreated_workflow(flowcast, server_factory, pane_factory):
    """Issue 8 item 1 on a terminal: deleted and created again while the
    watcher was away, the workflow shows as new (its own name, a note), not
    as the old bar carrying on."""
    s = server_factory()
    s.create(id="deploy", name="Deploy web", total_steps=10)
    s.patch("deploy", status="running", current_step=2)
    env = {"FLOWCAST_URL": "http://127.0.0.1:%d" % s.port, "ASAN_OPTIONS": "detect_leaks=0"}
    pane = pane_factory("%s watch deploy" % flowcast, env)
    pane.wait(lambda t: "2/10" in _bar_line(t, "Deploy web"), what="the first bar")
    s2, _, _ = recreate_while_away(server_factory, s, "deploy", name="Deploy v2", steps=1)
    screen = pane.wait(lambda t: "1/10" in _bar_line(t, "Deploy v2"), timeout=15,
                       what="the new workflow's bar")
    assert "deploy was deleted and created again" in screen
    assert _bar_line(screen, "Deploy web") == ""
    s2.patch("deploy", current_step=5)
    pane.wait(lambda t: "5/10" in _bar_line(t, "Deploy v2"), what="its next change")
