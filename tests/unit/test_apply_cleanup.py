"""What apply leaves on a host when it cannot finish: nothing it did not find there. Images
are fetched before anything changes; a rollback removes stand-in certificates, the directories
the apply created and the previous copies it made, and keeps those it found. The demo inventory
on an in-memory host whose engine fails where the test says."""

from __future__ import annotations

import json
from pathlib import Path

from allmende.actions.apply import Outcome, plan_and_apply
from allmende.actions.plan import Seams, prepare
from allmende.connectors.base import PREVIOUS, Ran
from allmende.errors import ApplyFailed
from allmende.plan.changes import Plan
from tests.conftest import EXAMPLES
from tests.memory import MemoryHost

DEMO = EXAMPLES / "demo"
KEY = EXAMPLES / "demo-age.key"
WATCHED = ("/srv", "/etc")


class Host(MemoryHost):
    """The demo's machine: no HAProxy master answers, no systemd, every image is there, and
    the engine shows what ``running`` says; ``podman-compose ... up`` fails when ``broken``."""

    def __init__(self) -> None:
        super().__init__("local")
        self.running: list[tuple[str, str]] = []
        self.broken = True
        self.answer(["podman", "ps"], self.ps)
        self.answer(["python3"], Ran(3, b"", b"nothing listens"))
        self.answer(["test", "-d"], Ran(1, b"", b""))
        self.answer(["podman", "image", "exists"], Ran(0, b"", b""))
        self.answer(["haproxy", "-c"], Ran(0, b"Configuration file is valid\n", b""))
        self.answer(["podman-compose"], self.compose)

    def ps(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        rows = [
            {
                "Labels": {"org.allmende.service": s, "org.allmende.component": c},
                "State": "running",
                "Status": "Up 3 seconds (healthy)",
                "Names": [f"{s}_{c}_1"],
            }
            for s, c in self.running
        ]
        return Ran(0, json.dumps(rows).encode(), b"")

    def compose(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        if self.broken and "up" in command:
            return Ran(1, b"", b"Error: the engine broke")
        return Ran(0, b"", b"")

    def snapshot(self) -> tuple[dict[str, tuple[bytes, int]], set[str]]:
        files = {p: f for p, f in self.files.items() if p.startswith(WATCHED)}
        return files, {d for d in self.dirs if d.startswith(WATCHED)}


ENV = {"ALLMENDE_AGE_KEY": str(KEY), "USER": "tester"}


def apply(host: MemoryHost, tmp_path: Path) -> tuple[Plan, Outcome]:
    shown: list[Plan] = []
    KEY.chmod(0o600)
    outcome = plan_and_apply(
        DEMO,
        {**ENV, "ALLMENDE_STATE": str(tmp_path / "state.sqlite")},
        show=shown.append,
        confirm=lambda plan: True,
        seams=Seams(connect=lambda inventory, name, env: host),
    )
    return shown[0], outcome


def failure(outcome: Outcome) -> ApplyFailed:
    error = outcome.results["local"].error
    assert isinstance(error, ApplyFailed), outcome.results
    return error


def test_a_first_apply_that_fails_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    host = Host()
    before = host.snapshot()
    plan, outcome = apply(host, tmp_path)
    assert "/srv/wiki/compose.yaml" in {c.path for c in plan.changes}
    error = failure(outcome)
    assert error.rolled_back and not error.problems
    assert "up database" in str(error) and "the engine broke" in str(error)
    # HAProxy's check ran with stand-in certificates for both domains; they are gone again,
    # as are the directories the apply made (/srv/wiki/secrets, /etc/haproxy/certs, ...)
    assert any(c[:2] == ("haproxy", "-c") for c in host.ran)
    assert host.snapshot() == before


def test_a_failed_change_keeps_the_previous_copies_it_found(tmp_path: Path) -> None:
    host = Host()
    KEY.chmod(0o600)
    wanted = prepare(DEMO, ENV, seams=Seams(connect=lambda inventory, name, env: host)).wanted
    for path, rendered in wanted["local"].items():
        host.files[path] = (rendered.content, rendered.mode)
        host.owners[path] = rendered.owner or (0, 0)
        for parent in Path(path).parents:
            host.dirs.add(str(parent))
    host.running = [("database", "server"), ("pad", "app"), ("wiki", "app")]
    compose = "/srv/wiki/compose.yaml"
    # A copy from an earlier apply, which a failed apply must not lose, and a hand edit.
    host.files[compose + PREVIOUS] = (b"the version before\n", 0o644)
    host.files[compose] = (host.files[compose][0] + b"# edited by hand\n", 0o644)
    before = host.snapshot()
    plan, outcome = apply(host, tmp_path)
    assert [c.path for c in plan.changes] == [compose]
    assert failure(outcome).rolled_back
    assert host.snapshot() == before


def test_an_image_that_cannot_be_pulled_stops_the_apply_before_anything_changes(
    tmp_path: Path,
) -> None:
    host = Host()
    pad = "docker.io/etherpad/etherpad:2.2.5"
    host.answer(["podman", "image", "exists", pad], Ran(1, b"", b""))
    host.answer(["podman", "pull"], Ran(125, b"", b"Error: initializing source: no route to host"))
    before = host.snapshot()
    plan, outcome = apply(host, tmp_path)
    pulls = [a for a in plan.actions if a.verb == "pull"]
    assert [(a.subject, a.commands) for a in pulls] == [(pad, (("podman", "pull", pad),))]
    error = failure(outcome)
    assert not error.rolled_back
    assert str(error).startswith(
        f"local: the image {pad} cannot be pulled from docker.io (not on local; pad needs "
        "it); nothing on this host was changed"
    )
    assert "no route to host" in str(error)
    assert host.snapshot() == before
    assert not any(c[0] == "podman-compose" for c in host.ran)
