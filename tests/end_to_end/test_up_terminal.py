"""`allmende up` on the demo at a real terminal (tmux): what a person sees and types.

The demo is the one of ``test_apply_demo`` (its services on the test busybox image, applied to
the ``remote_host`` over SSH, HAProxy on free ports of 127.0.0.1). tmux runs on a socket of
the test's own and is stopped by its PID; the screen is read with ``capture-pane``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.end_to_end.test_apply_demo import DEMO_STEPS, Demo, demo  # noqa: F401  (the fixture)

from allmende.cli.main import main

PROGRAM = Path(sys.executable).parent / "allmende"


class Screen:
    """A tmux server and session of the test's own, 120 columns wide."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is missing: run `script/bootstrap test`", pytrace=False)
        self.socket = directory / "tmux.sock"
        self.env = env

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def start(self, command: str) -> int:
        self.tmux("new-session", "-d", "-s", "up", "-x", "120", "-y", "50", command)
        return int(self.tmux("display-message", "-p", "-t", "up", "#{pid}").strip())

    def text(self, escapes: bool = False) -> str:
        """Everything the session showed, scrolled off or not (with colour escapes)."""
        flags = ["-e"] if escapes else []
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "up", *flags)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.text()
            if text in shown:
                return shown
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} did not appear within {timeout} s:\n{shown}", pytrace=False)
            time.sleep(0.2)

    def type(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "up", *keys)


@pytest.fixture
def screen(tmp_path: Path, demo: Demo) -> Iterator[Screen]:  # noqa: F811
    shown = Screen(tmp_path, {k: v for k, v in demo.env.items() if k != "NO_COLOR"})
    pid = None
    try:
        yield shown
    finally:
        try:
            pid = int(shown.tmux("display-message", "-p", "#{pid}").strip())
        except subprocess.SubprocessError:
            pid = None
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


def test_up_on_the_demo_shows_a_summary_asks_and_says_what_it_did(
    screen: Screen,
    demo: Demo,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = tmp_path / "site"
    line = shlex.join([str(PROGRAM), "up", "-C", str(demo.inventory), "--port", "0"])
    line += f' --out {shlex.quote(str(site))}; echo "[exit $?]"; read'
    screen.start(f"bash -c {shlex.quote(line)}")

    # The summary, then the question.
    before = screen.wait_for("Apply this plan? [y/N]:", timeout=120)
    asked = before[: before.index("Apply this plan?")].rstrip().splitlines()
    assert "Create local:/srv/wiki/compose.yaml" in asked
    assert "Create local:/etc/haproxy/haproxy.cfg" in asked
    assert "Then on local: up database: its files change" in asked
    assert any(
        re.fullmatch(
            r"Plan: \d+ to create, 0 to update, 0 to delete, 4 engine actions on 1 host "
            r"\(checksum [0-9a-f]{16}; --diff shows the diffs and commands\)\.",
            shown,
        )
        for shown in asked
    ), asked
    assert not [shown for shown in asked if shown.startswith(("    ", "@@", "+++", "---"))]
    assert len(asked) < 40

    # The answer, and the outcome.
    screen.type("y", "Enter")
    after = screen.wait_for("Serving the docs of nordlicht at http://127.0.0.1:", timeout=240)
    told = after[after.index("Apply this plan?") :].splitlines()
    steps = [shown.strip() for shown in told if shown.startswith("  local: ")]
    assert steps == DEMO_STEPS
    assert "Applied local." in told
    assert not [shown for shown in told if "WARNING" in shown or "local: local:" in shown]
    # What the person then sees: the wiki through the edge, the docs where `up` says.
    status, body = demo.get("wiki.nordlicht.example", "/cgi-bin/env")
    assert status == 200 and "DB_NAME=wiki" in body
    port = re.search(r"http://127\.0\.0\.1:(\d+)/", after)
    assert port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/", timeout=10) as page:
        assert b"nordlicht" in page.read()
    # Colour at the terminal: the outcome in green.
    assert "\x1b[32mApplied local." in screen.text(escapes=True)

    screen.type("C-c")
    screen.wait_for("[exit 0]", timeout=30)
    assert "Stopped." in screen.text()

    # Not at a terminal, with NO_COLOR: no escape at all, the same words.
    os.environ["NO_COLOR"] = "1"
    try:
        code = main(["apply", "-C", str(demo.inventory), "--yes"])
    finally:
        del os.environ["NO_COLOR"]
    out, err = capsys.readouterr()
    assert code == 0 and "Nothing to do." in err
    assert "\x1b" not in out + err
