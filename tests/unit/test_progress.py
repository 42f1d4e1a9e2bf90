"""Long work shows how far it is at a terminal, one line rewritten in place, and leaves
nothing behind: plan and apply over many hosts, import of many projects. Elsewhere (a pipe,
a log) nothing of it is written."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from allmende.actions.plan import Seams
from allmende.cli.main import main
from allmende.cli.output import ERASE
from allmende.connectors.base import Ran
from tests.memory import MemoryHost
from tests.unit.test_refusals import hosts, inventory, seams  # noqa: F401  (the fixtures)


class Terminal(io.StringIO):
    """What stderr shows at a terminal: ``screen`` plays the carriage returns back."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        """The lines as a terminal shows them, trailing spaces kept."""
        lines: list[list[str]] = [[]]
        column = 0
        text = self.getvalue()
        at = 0
        while at < len(text):
            if text.startswith(ERASE, at):
                del lines[-1][column:]
                at += len(ERASE)
                continue
            char = text[at]
            at += 1
            if char == "\n":
                lines.append([])
                column = 0
            elif char == "\r":
                column = 0
            else:
                line = lines[-1]
                line[column : column + 1] = [char]
                column += 1
        return ["".join(line) for line in lines]

    def shown(self, what: str) -> list[str]:
        """Every state the progress line of ``what`` was drawn in, in order (once each: it is
        drawn again below every line printed above it)."""
        drawn = re.findall(
            rf"\r({re.escape(what)}: [^\r\x1b]*){re.escape(ERASE)}\r", self.getvalue()
        )
        return list(dict.fromkeys(drawn))


@pytest.fixture
def checked(hosts: dict[str, MemoryHost]) -> None:  # noqa: F811
    """The edge has HAProxy to check its configuration with."""
    hosts["gateway"].answer(["haproxy", "-c"], Ran(0, b"Configuration file is valid\n", b""))


def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    """Make stderr a terminal, for the rest of the test (in its body: pytest puts its own
    stderr back between a test's fixtures and its body)."""
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "1")  # no colour, but the progress line all the same
    shown = Terminal()
    monkeypatch.setattr(sys, "stderr", shown)
    return shown


def test_plan_and_apply_count_the_hosts_and_leave_only_what_they_say(
    inventory: Path,  # noqa: F811
    hosts: dict[str, MemoryHost],  # noqa: F811
    seams: Seams,  # noqa: F811
    checked: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = terminal(monkeypatch)
    assert main(["plan", "-C", str(inventory)], seams=seams) == 3
    assert stderr.shown("reading hosts") == [
        "reading hosts: 0 of 3 hosts",
        "reading hosts: 1 of 3 hosts",
        "reading hosts: 2 of 3 hosts",
    ]
    assert stderr.screen()[-2].startswith("Plan: ")  # the line is gone, the summary stays

    stderr.seek(0)
    stderr.truncate()
    assert main(["apply", "-C", str(inventory), "--yes"], seams=seams) == 0
    # The hosts with something to do.
    assert stderr.shown("applying") == ["applying: 0 of 2 hosts", "applying: 1 of 2 hosts"]
    screen = stderr.screen()
    # Each step on a line of its own, whole, the progress line never left among them.
    assert "  rack: 14 files in place" in screen
    assert not [line for line in screen if "applying" in line or "reading" in line]
    assert screen[-3:] == ["Applied gateway.", "Applied rack.", ""]


def test_without_a_terminal_there_is_no_progress_line(
    inventory: Path,  # noqa: F811
    seams: Seams,  # noqa: F811
    checked: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["apply", "-C", str(inventory), "--yes"], seams=seams) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    assert "reading hosts" not in err and "applying" not in err
    assert "Applied rack." in err


def test_import_counts_the_projects(
    inventory: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    projects = []
    for name in ("one", "two", "three"):
        project = tmp_path / name
        project.mkdir()
        image = f"docker.io/library/{name}:1.0"
        (project / "compose.yaml").write_text(f"services:\n  {name}:\n    image: {image}\n")
        projects.append(str(project))
    argv = ["import", "compose", *projects, "--host", "rack", "-C", str(inventory), "--dry-run"]
    screen = terminal(monkeypatch)
    assert main(argv) == 0
    assert screen.shown("importing") == [
        "importing: 0 of 3 projects",
        "importing: 1 of 3 projects",
        "importing: 2 of 3 projects",
    ]
    assert not [line for line in screen.screen() if "importing" in line]
