"""Containers on Incus hosts reached through their parent, snapshots and rollback, and the
monitors an unplanned edge holds back; the parent is an in-memory host answering ``incus``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from allmende.actions.plan import Seams
from allmende.apply.snapshots import choose, roll_back
from allmende.apply.verify import only_unplanned
from allmende.cli.main import main
from allmende.connectors.base import Ran
from allmende.connectors.local import LocalConnector
from allmende.engines import connect, find_driver
from allmende.engines.base import Snapshot
from allmende.engines.incus.reach import IncusExecConnector
from allmende.errors import Unreachable, UserError
from allmende.inventory.load import load
from allmende.inventory.models import Monitor
from tests.conftest import EXAMPLES
from tests.memory import MemoryHost


def parent(status: str | None) -> MemoryHost:
    host = MemoryHost("box")
    answer = Ran(0, json.dumps({"status": status}).encode(), b"") if status else Ran(1, b"", b"")
    host.answer(["incus", "query", "/1.0/instances/edge"], answer)
    return host


def test_a_container_not_made_yet_says_which_host_makes_it() -> None:
    reached = IncusExecConnector(parent(None), "edge")
    with pytest.raises(Unreachable, match="there is no container edge on box yet: apply box"):
        asyncio.run(reached.open())
    with pytest.raises(Unreachable, match=r"the container is stopped; start it \(`incus start"):
        asyncio.run(IncusExecConnector(parent("Stopped"), "edge").open())


def test_programs_and_files_go_through_incus_exec_on_the_parent() -> None:
    box = parent("Running")
    box.answer(["incus", "exec", "edge", "--", "python3"], Ran(127, b"", b"not found"))
    box.answer(
        ["incus", "exec", "edge", "--", "sh", "-c"],
        lambda command, input: (
            Ran(0, b"644 0 0 abc\nabsent\n", b"") if "stat -c" in command[6] else Ran(3, b"", b"")
        ),
    )
    reached = IncusExecConnector(box, "edge")

    async def go() -> tuple[object, object]:
        async with reached:
            return await reached.stat_many(["/etc/a", "/etc/b"]), await reached.read("/etc/c")

    stats, missing = asyncio.run(go())
    assert [s.sha256 if s else None for s in stats] == ["abc", None]  # type: ignore[attr-defined]
    assert stats[0].mode == 0o644  # type: ignore[index]
    assert missing is None
    assert box.ran[1][:5] == ("incus", "exec", "edge", "--", "python3")


def test_a_container_without_ssh_on_an_incus_host_is_reached_through_it() -> None:
    inventory = load(EXAMPLES / "klankschool", {})
    reached = connect(inventory, "gateway", {})
    assert isinstance(reached, IncusExecConnector)
    assert reached.where == "incus exec gateway on macpro"
    assert not isinstance(connect(inventory, "macpro", {}), IncusExecConnector)


SNAPSHOTS = [
    Snapshot("app", "auto-1", "2026-12-01T03:00:00Z"),
    Snapshot("app", "before-apply-2", "2026-12-02T10:00:00Z"),
    Snapshot("worker", "auto-1", "2026-12-01T03:00:01Z"),
]


def test_a_rollback_goes_to_each_latest_or_to_the_name_asked_for() -> None:
    assert choose(SNAPSHOTS, ["app", "worker"], None) == {
        "app": "before-apply-2",
        "worker": "auto-1",
    }
    assert choose(SNAPSHOTS, ["app", "worker"], "auto-1") == {"app": "auto-1", "worker": "auto-1"}
    with pytest.raises(UserError, match="no snapshot gone to go back to"):
        choose(SNAPSHOTS, ["app"], "gone")
    with pytest.raises(UserError, match=r"no snapshot to go back to \(it has none yet\)"):
        choose([], ["app"], None)


def snapshot_host() -> MemoryHost:
    box = MemoryHost("box")
    listed = [
        {
            "name": "auto-1",
            "created_at": "2026-12-01T03:00:00Z",
            "expires_at": "0001-01-01T00:00:00Z",
        }
    ]
    box.answer(["incus", "query", "/1.0"], Ran(0, b"{}", b""))
    box.answer(
        ["incus", "query", "/1.0/instances/wiki-app/snapshots?recursion=1"],
        Ran(0, json.dumps(listed).encode(), b""),
    )
    box.answer(["incus", "snapshot"], Ran(0, b"", b""))
    return box


def test_a_rollback_keeps_the_moment_before_and_restores() -> None:
    box = snapshot_host()

    async def go() -> object:
        driver = await find_driver(box, "incus", "docker")
        assert driver is not None
        return await roll_back(box, driver, "wiki", ["app"])

    rolled = asyncio.run(go())
    assert rolled.restored == {"app": "auto-1"}  # type: ignore[attr-defined]
    taken, restored = box.ran[-2:]
    assert taken[:4] == ("incus", "snapshot", "create", "wiki-app")
    assert taken[4].startswith("before-rollback-") and taken[5] == "--reuse"
    assert restored == ("incus", "snapshot", "restore", "wiki-app", "auto-1")


def test_engines_without_snapshots_say_so(tmp_path: Path) -> None:
    async def go() -> None:
        async with LocalConnector("rack", str(tmp_path)) as connector:
            driver = await find_driver(connector, "compose", "podman")
            assert driver is not None
            await roll_back(connector, driver, "wiki", ["app"])

    with pytest.raises(UserError, match="engine compose keeps no snapshots of wiki"):
        asyncio.run(go())


def test_rollback_lists_asks_and_goes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALLMENDE_STATE", str(tmp_path / "state.sqlite"))
    box = snapshot_host()
    box.answer(
        ["incus", "query", "/1.0/instances/music-app/snapshots?recursion=1"],
        box.programs[("incus", "query", "/1.0/instances/wiki-app/snapshots?recursion=1")],
    )
    seams = Seams(connect=lambda inventory, name, env: box)
    school = ["--inventory", str(EXAMPLES / "klankschool")]

    assert main(["rollback", "music", "--list", *school], seams) == 0
    assert capsys.readouterr().out == "app: auto-1 (taken 2026-12-01T03:00:00Z)\n"
    assert main(["rollback", "music", *school], seams) == 1  # no terminal to ask at
    assert "No terminal to ask at" in capsys.readouterr().err
    assert not any(c[:3] == ("incus", "snapshot", "restore") for c in box.ran)
    assert main(["rollback", "music", "--to", "auto-1", "--yes", *school], seams) == 0
    said = capsys.readouterr().err
    assert "macpro: music: app goes back to auto-1" in said
    assert "to undo it: allmende rollback music --to before-rollback-" in said
    assert box.ran[-1] == ("incus", "snapshot", "restore", "music-app", "auto-1")
    assert main(["rollback", "nothing", *school], seams) == 2
    assert "unknown service `nothing`" in capsys.readouterr().err


def test_monitors_only_an_unplanned_edge_could_pass_wait() -> None:
    inventory = load(EXAMPLES / "klankschool", {})
    music = Monitor(http="https://funk.klank.school/")
    assert only_unplanned(inventory, music, {"gateway"})
    assert not only_unplanned(inventory, music, set())
    assert not only_unplanned(inventory, Monitor(tcp="database-server.incus:5432"), {"gateway"})
    assert only_unplanned(inventory, Monitor(tls="mail.klank.school:993"), {"gateway"})
