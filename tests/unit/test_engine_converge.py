"""An engine that judges for itself what differs (``Engine.converge``, ``Engine.prepare``,
``Step.undo``), added by another package: plan shows its steps, apply runs them, and a failed
apply runs their undo, last first, with nothing else changed. The host is an in-memory one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from allmende.actions.apply import plan_and_apply
from allmende.actions.plan import Seams
from allmende.connectors.base import Ran
from allmende.errors import ApplyFailed
from allmende.plan.changes import Plan
from allmende.render.output import Rendered
from tests.engine_package import installed
from tests.memory import MemoryHost

JUDGE = '''
    """A judging engine: ``boxctl`` keeps boxes, each with a size read from its project file."""

    import json

    from allmende.engines.base import Engine, Running, Step


    class Judge(Engine):
        name = "judge"
        project_file = "box.json"
        runtimes = ("docker",)

        def up(self, site, service, secrets=()):
            return (("boxctl", "start", service),)

        def down(self, site, service):
            return (("boxctl", "remove", service),)

        def observe(self, site):
            return ("boxctl", "list")

        def parse(self, site, output):
            sizes = json.loads(output or b"{}")
            return {s: Running({"box": "running"}, observed={s: {"size": n}})
                    for s, n in sizes.items()}

        def converge(self, site, service, project, running):
            want = json.loads(project)["size"]
            have = running.observed.get(service, {}).get("size") if running else None
            if have == want:
                return Step("")
            if have is None:
                return Step(f"make {service}", (("boxctl", "make", service, str(want)),),
                            (("boxctl", "remove", service),))
            return Step(f"resize {service} {have} -> {want}",
                        (("boxctl", "resize", service, str(want)),),
                        (("boxctl", "resize", service, str(have)),))

        def owns(self, path):
            return path == "/etc/judge.conf"

        def prepare(self, site, wanted, changes, running):
            if "/etc/judge.conf" not in changes:
                return []
            return [("prepare", "judge", Step("its shelf changes", (("boxctl", "shelf"),)))]


    ENGINE = Judge()
'''


@pytest.fixture
def judging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with installed(tmp_path, monkeypatch, "judge", JUDGE):
        yield


class Shelf:
    """The in-memory host ``box`` whose ``boxctl`` keeps boxes by size."""

    def __init__(self) -> None:
        self.host = MemoryHost("box")
        self.sizes: dict[str, int] = {}
        self.refuse = 0
        self.host.answer(["boxctl", "list"], self.list)
        self.host.answer(["boxctl", "make"], self.make)
        self.host.answer(["boxctl", "resize"], self.make)
        self.host.answer(["boxctl", "remove"], self.remove)
        self.host.answer(["boxctl", "shelf"], Ran(0, b"", b""))

    def list(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        import json

        return Ran(0, json.dumps(self.sizes).encode(), b"")

    def make(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        if int(command[3]) == self.refuse:
            return Ran(1, b"", f"boxctl: no box of size {self.refuse}".encode())
        self.sizes[command[2]] = int(command[3])
        return Ran(0, b"", b"")

    def remove(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        self.sizes.pop(command[2], None)
        return Ran(0, b"", b"")


def apply(root: Path, shelf: Shelf, files: dict[str, bytes], tmp_path: Path) -> tuple[Plan, object]:
    def render(inventory: object) -> dict[str, Rendered]:
        return {f"box{p}": Rendered(c, ("services/notes.yaml",)) for p, c in files.items()}

    shown: list[Plan] = []
    env = {"ALLMENDE_STATE": str(tmp_path / "state.sqlite"), "USER": "tester"}
    seams = Seams(render=render, connect=lambda inventory, name, env: shelf.host)
    outcome = plan_and_apply(root, env, show=shown.append, confirm=lambda plan: True, seams=seams)
    return shown[0], outcome


def test_a_judging_engine_is_planned_applied_and_undone(judging: None, tmp_path: Path) -> None:
    root = tmp_path / "inventory"
    (root / "hosts").mkdir(parents=True)
    (root / "services").mkdir()
    (root / "allmende.yaml").write_text("name: shelves\n")
    (root / "hosts" / "box.yaml").write_text("engine: judge\n")
    (root / "services" / "notes.yaml").write_text(
        "description: Notes\nhost: box\ncomponents:\n  box: {image: 'n:1.0'}\nmonitor: []\n"
    )
    shelf = Shelf()
    files = {"/srv/notes/box.json": b'{"size": 2}', "/etc/judge.conf": b"shelf 1\n"}

    plan, _ = apply(root, shelf, files, tmp_path)
    assert [(a.verb, a.subject, a.reason) for a in plan.actions] == [
        ("prepare", "judge", "its shelf changes"),
        ("up", "notes", "make notes"),
    ]
    assert shelf.sizes == {"notes": 2}

    # Nothing differs: nothing to do, even though the engine was asked.
    plan, outcome = apply(root, shelf, files, tmp_path)
    assert plan.empty

    # The engine's own judgement, with its undo in the plan's checksum.
    files["/srv/notes/box.json"] = b'{"size": 3}'
    plan, _ = apply(root, shelf, files, tmp_path)
    (action,) = plan.actions
    assert action.reason == "resize notes 2 -> 3"
    assert action.canonical()["undo"] == [["boxctl", "resize", "notes", "2"]]
    assert shelf.sizes == {"notes": 3}

    # A step that fails is undone, and the files are put back.
    files["/srv/notes/box.json"] = b'{"size": 4}'
    shelf.refuse = 4
    plan, outcome = apply(root, shelf, files, tmp_path)
    error = outcome.results["box"].error  # type: ignore[attr-defined]
    assert isinstance(error, ApplyFailed) and error.rolled_back and not error.problems
    assert "boxctl: no box of size 4" in str(error)
    assert shelf.sizes == {"notes": 3}
    assert shelf.host.text("/srv/notes/box.json") == '{"size": 3}'
    assert shelf.host.ran[-1] == ("boxctl", "resize", "notes", "3")
